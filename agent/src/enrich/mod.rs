//! TODO(owner): stage `enrich`.
