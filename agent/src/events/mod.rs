//! Stage `events`: reads the BPF ring buffers and hands raw events on in batches.
mod reader;
mod types;

pub use reader::{
    monotonic_ns, parse_process_event, parse_sock_event, spawn_reader, Batching, ReaderMaps, ReaderStats, SockScratch,
};
pub use types::*;
