//! One module per group of configuration sections.

pub mod attributes;
pub mod discovery;
pub mod ebpf;
pub mod network;
pub mod otel;
pub mod prometheus;
pub mod routes;
