//! TODO(owner): stage `discover`.
