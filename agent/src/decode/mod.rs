//! TODO(owner): stage `decode`.
