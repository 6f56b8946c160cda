//! TODO(owner): stage `kernel`.
