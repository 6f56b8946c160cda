//! beyla-rs: zero-code eBPF auto-instrumentation agent.
//!
//! The agent is a linear pipeline, one module per stage (see `docs/architecture.md`):
//! `discover` → `attach` → `events` → `decode` → `enrich` → `aggregate` → `export`,
//! wired together in `pipeline`.

pub mod aggregate;
pub mod attach;
pub mod config;
pub mod decode;
pub mod discover;
pub mod enrich;
pub mod events;
pub mod export;
pub mod kernel;
pub mod kube;
pub mod pipeline;
pub mod telemetry;
