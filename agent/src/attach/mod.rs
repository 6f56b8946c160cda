//! TODO(owner): stage `attach`.
