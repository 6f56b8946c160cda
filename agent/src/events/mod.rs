//! TODO(owner): stage `events`.
