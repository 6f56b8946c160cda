//! TODO(owner): stage `config`.
