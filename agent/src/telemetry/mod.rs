//! TODO(owner): stage `telemetry`.
