//! Helpers for the decoder's unit tests: transfers as the capture sends them, decoded by a
//! tracker that knows every protocol.
use std::net::SocketAddr;

use super::{DecodeOptions, Decoded, Tracker, TrackerLimits};
use crate::events::{Direction, SockData};

/// What one transfer's copy holds (`CAPTURE_MAX` in bpf/include/events.h).
pub const CAP: usize = 2048;

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// An event as the BPF side would send it: the first CAP bytes plus an 8-byte tail.
pub fn ev(sock: u64, dir: Direction, ts: u64, bytes: &[u8]) -> SockData {
    let tail = if bytes.len() > CAP { bytes[bytes.len() - 8..].to_vec() } else { Vec::new() };
    SockData {
        pid: 7,
        tid: 70,
        sock_id: sock,
        ts_ns: ts,
        start_ns: ts,
        direction: dir,
        len: bytes.len() as u32,
        local: addr("127.0.0.1:8080"),
        remote: addr("127.0.0.1:50000"),
        data: bytes[..bytes.len().min(CAP)].to_vec(),
        tail,
        tls: false,
        capture: Default::default(),
        goroutine: None,
    }
}

/// The events decoded in order by a tracker with the default protocols.
pub fn run(events: &[SockData]) -> Decoded {
    run_with(DecodeOptions::default(), events)
}

/// [`run`], decoding as `options` say.
pub fn run_with(options: DecodeOptions, events: &[SockData]) -> Decoded {
    let mut t = Tracker::new(TrackerLimits::default()).with_options(options);
    let mut out = Decoded::default();
    for e in events {
        t.on_data(e, &mut out);
    }
    out
}
