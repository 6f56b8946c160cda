//! TODO(owner): stage `aggregate`.
