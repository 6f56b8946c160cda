//! TODO(owner): stage `export`.
