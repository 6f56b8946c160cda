//! Polls the ring buffers on a dedicated thread: the callbacks only copy bytes into
//! `RawEvent`s, and each poll's batch goes on to `decode` in one channel send.
use std::cell::RefCell;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use libbpf_rs::{MapCore, MapFlags, MapHandle, RingBufferBuilder};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc::Sender;

use super::{Capture, Direction, Goroutine, RawEvent, SockData};
use crate::attach::skel::tracepoint_net::types::{
    conn_tuple, direction, event_kind, go_event, process_event, sock_event, sock_flag,
};

// SAFETY: generated from C structs of plain integers and byte arrays, with explicit padding.
unsafe impl plain::Plain for sock_event {}
unsafe impl plain::Plain for process_event {}
unsafe impl plain::Plain for go_event {}

// The enums of bpf/include/events.h, as the skeleton generates them (events carry them in a u8).
const EVENT_SOCK_DATA: u8 = event_kind::EVENT_SOCK_DATA.0 as u8;
const EVENT_SOCK_CLOSE: u8 = event_kind::EVENT_SOCK_CLOSE.0 as u8;
const EVENT_PROC_FORK: u8 = event_kind::EVENT_PROC_FORK.0 as u8;
const EVENT_PROC_EXEC: u8 = event_kind::EVENT_PROC_EXEC.0 as u8;
const EVENT_PROC_EXIT: u8 = event_kind::EVENT_PROC_EXIT.0 as u8;
const EVENT_GO_CLIENT: u8 = event_kind::EVENT_GO_CLIENT.0 as u8;
const EVENT_GO_HANDLER_START: u8 = event_kind::EVENT_GO_HANDLER_START.0 as u8;
const DIR_SEND: u8 = direction::DIR_SEND.0 as u8;
const SOCK_FLAG_TLS: u8 = sock_flag::SOCK_FLAG_TLS.0 as u8;
const SOCK_FLAG_H2_FRAMES: u8 = sock_flag::SOCK_FLAG_H2_FRAMES.0 as u8;
const SOCK_FLAG_H2_LOST: u8 = sock_flag::SOCK_FLAG_H2_LOST.0 as u8;
const SOCK_FLAG_GOROUTINE: u8 = sock_flag::SOCK_FLAG_GOROUTINE.0 as u8;
const AF_INET: u16 = 2;

/// Counters the reader keeps; `telemetry` registers them.
#[derive(Debug, Default, Clone)]
pub struct ReaderStats {
    pub sock_events_read: Counter,
    pub process_events_read: Counter,
    /// Events the kernel could not put in the ring buffer (sum over CPUs).
    pub sock_events_lost: Counter,
}

pub struct ReaderMaps {
    pub sock_events: MapHandle,
    pub process_events: MapHandle,
    pub events_lost: MapHandle,
}

/// Copies a variable-length event (the kernel sends only the captured bytes) into a full struct.
fn copy_prefix<T: plain::Plain + Default>(bytes: &[u8]) -> T {
    let mut v = T::default();
    // SAFETY: T is Plain (any byte pattern is valid) and we write at most size_of::<T>() bytes.
    let dst = unsafe { plain::as_mut_bytes(&mut v) };
    let n = dst.len().min(bytes.len());
    dst[..n].copy_from_slice(&bytes[..n]);
    v
}

/// Bytes of a `sock_event` before its payload: the kernel sends these and then only the
/// captured bytes.
const SOCK_HEAD_LEN: usize = std::mem::offset_of!(sock_event, data);

/// The reader's one `sock_event`, reused for every record: zeroing and moving the full
/// struct (2 KiB of payload room) per event was a tenth of the reader thread's time.
#[derive(Default)]
pub struct SockScratch(Box<sock_event>);

impl SockScratch {
    /// Copies a record in; returns the struct and how many of its payload bytes this record
    /// wrote (the rest still holds an earlier record's).
    fn load(&mut self, bytes: &[u8]) -> (&sock_event, usize) {
        // SAFETY: sock_event is Plain (any byte pattern is valid).
        let dst = unsafe { plain::as_mut_bytes(&mut *self.0) };
        let n = dst.len().min(bytes.len());
        dst[..n].copy_from_slice(&bytes[..n]);
        if n < SOCK_HEAD_LEN {
            dst[n..SOCK_HEAD_LEN].fill(0);
        }
        (&self.0, n.saturating_sub(SOCK_HEAD_LEN))
    }
}

fn addr(family: u16, raw: &[u8; 16], port: u16) -> SocketAddr {
    let ip = Ipv6Addr::from(*raw);
    let ip = match (family, ip.to_ipv4_mapped()) {
        (AF_INET, Some(v4)) => IpAddr::V4(v4),
        (_, Some(v4)) => IpAddr::V4(v4),
        _ => IpAddr::V6(ip),
    };
    SocketAddr::new(ip, port)
}

fn endpoints(c: &conn_tuple) -> (SocketAddr, SocketAddr) {
    (addr(c.family, &c.local_addr, c.local_port), addr(c.family, &c.remote_addr, c.remote_port))
}

pub fn parse_sock_event(bytes: &[u8], scratch: &mut SockScratch) -> Option<RawEvent> {
    // The Go probes share the ring buffer (one order for both); their events are smaller.
    if let Some(&kind @ (EVENT_GO_CLIENT | EVENT_GO_HANDLER_START)) = bytes.first() {
        let e: go_event = copy_prefix(bytes);
        let (local, remote) = endpoints(&e.conn);
        return Some(match kind {
            EVENT_GO_CLIENT => RawEvent::GoClient {
                pid: e.pid,
                server_sock: e.server_sock,
                server_stream: e.server_stream,
                client_sock: e.client_sock,
                stream: e.stream,
                local,
                remote,
                written: (e.span_id != [0; 8]).then_some((e.trace_id, e.span_id)),
            },
            _ => RawEvent::GoHandlerStart {
                pid: e.pid,
                server_sock: e.server_sock,
                server_stream: e.server_stream,
                ts_ns: e.ts_ns,
                trace_id: (e.trace_id != [0; 16]).then_some(e.trace_id),
            },
        });
    }
    let (e, written) = scratch.load(bytes);
    match e.kind {
        EVENT_SOCK_DATA => {
            let (local, remote) = endpoints(&e.conn);
            let captured = (e.captured as usize).min(written);
            Some(RawEvent::Data(SockData {
                pid: e.pid,
                tid: e.tid,
                sock_id: e.sock_id,
                ts_ns: e.ts_ns,
                start_ns: e.start_ns,
                direction: if e.direction == DIR_SEND { Direction::Send } else { Direction::Recv },
                len: e.len,
                local,
                remote,
                data: e.data[..captured].to_vec(),
                tail: e.tail[..(e.tail_len as usize).min(e.tail.len())].to_vec(),
                tls: e.flags & SOCK_FLAG_TLS != 0,
                capture: if e.flags & SOCK_FLAG_H2_LOST != 0 {
                    Capture::H2Lost
                } else if e.flags & SOCK_FLAG_H2_FRAMES != 0 {
                    Capture::H2Frames
                } else {
                    Capture::Prefix
                },
                goroutine: (e.flags & SOCK_FLAG_GOROUTINE != 0).then_some(Goroutine {
                    server_sock: e.go_server_sock,
                    server_stream: e.go_server_stream,
                    handler_ns: e.go_handler_ns,
                }),
            }))
        }
        EVENT_SOCK_CLOSE => Some(RawEvent::Close { pid: e.pid, sock_id: e.sock_id, ts_ns: e.ts_ns }),
        _ => None,
    }
}

pub fn parse_process_event(bytes: &[u8]) -> Option<RawEvent> {
    let e: process_event = copy_prefix(bytes);
    match e.kind {
        EVENT_PROC_FORK => Some(RawEvent::Fork { pid: e.pid, ppid: e.ppid }),
        EVENT_PROC_EXEC => Some(RawEvent::Exec { pid: e.pid, ts_ns: e.ts_ns }),
        EVENT_PROC_EXIT => Some(RawEvent::Exit { pid: e.pid, ts_ns: e.ts_ns }),
        _ => None,
    }
}

fn lost_total(map: &MapHandle) -> u64 {
    match map.lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY) {
        Ok(Some(per_cpu)) => {
            per_cpu.iter().filter_map(|v| v.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_ne_bytes)).sum()
        }
        _ => 0,
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock `bpf_ktime_get_ns()` stamps events with.
pub fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// When the reader hands what it has read to `decode` (`ebpf.batch_length`, `ebpf.batch_timeout`).
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Forward as soon as this many events are waiting.
    pub length: usize,
    /// Forward what is waiting, and the watermark, at least this often. Events the kernel
    /// submits without waking the reader (`ebpf.wakeup_len`) are read then too, so this
    /// bounds how long any event waits; an idle reader wakes once per period.
    pub timeout: Duration,
}

impl Batching {
    /// `ebpf.batch_length` and `ebpf.batch_timeout`.
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        Batching { length: cfg.ebpf.batch_length as usize, timeout: cfg.ebpf.batch_timeout.as_std() }
    }
}

/// Starts the reader thread.
pub fn spawn_reader(
    maps: ReaderMaps,
    tx: Sender<Vec<RawEvent>>,
    stats: ReaderStats,
    batching: Batching,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("beyla-ringbuf".into()).spawn(move || {
        let batch: Rc<RefCell<Vec<RawEvent>>> = Rc::new(RefCell::new(Vec::with_capacity(1024)));
        let mut builder = RingBufferBuilder::new();
        let (b1, s1) = (batch.clone(), stats.clone());
        let mut scratch = SockScratch::default();
        let (b2, s2) = (batch.clone(), stats.clone());
        let built = builder
            .add(&maps.sock_events, move |bytes: &[u8]| {
                s1.sock_events_read.inc();
                if let Some(ev) = parse_sock_event(bytes, &mut scratch) {
                    b1.borrow_mut().push(ev);
                }
                0
            })
            .and_then(|b| {
                b.add(&maps.process_events, move |bytes: &[u8]| {
                    s2.process_events_read.inc();
                    if let Some(ev) = parse_process_event(bytes) {
                        b2.borrow_mut().push(ev);
                    }
                    0
                })
            })
            .map(|_| ())
            .and_then(|_| builder.build());
        let rb = match built {
            Ok(rb) => rb,
            Err(e) => {
                tracing::error!(error = %e, "Ring buffer setup failed; no events will be read.");
                return;
            }
        };
        let mut last_lost_check = Instant::now();
        let mut due = Instant::now() + batching.timeout;
        while !stop.load(Ordering::Relaxed) {
            // Sleeps until the kernel wakes us (every `wakeup_len` events, a quarter-full
            // ring, a process event) or the batch is due: a wake-up per period when idle.
            if let Err(e) = rb.poll(due.saturating_duration_since(Instant::now())) {
                if e.kind() != libbpf_rs::ErrorKind::Interrupted {
                    tracing::warn!(error = %e, "Ring buffer poll failed.");
                }
            }
            // Everything submitted before this instant is in a ring now, and read below.
            let drained = monotonic_ns();
            // poll() only reads rings that signalled a wake-up; events submitted without one
            // (ebpf.wakeup_len batching) wait until consumed here.
            if let Err(e) = rb.consume() {
                tracing::warn!(error = %e, "Ring buffer consume failed.");
            }
            let now = Instant::now();
            if now >= due || batch.borrow().len() >= batching.length {
                // The watermark rides on every batch, also an empty one, so that event time
                // advances downstream while nothing happens.
                let mut events = std::mem::take(&mut *batch.borrow_mut());
                events.push(RawEvent::Drained { ts_ns: drained });
                due = now + batching.timeout;
                if tx.blocking_send(events).is_err() {
                    return; // the pipeline stopped
                }
            }
            if last_lost_check.elapsed() >= Duration::from_secs(1) {
                let lost = lost_total(&maps.events_lost);
                let known = stats.sock_events_lost.get();
                if lost > known {
                    stats.sock_events_lost.inc_by(lost - known);
                }
                last_lost_check = Instant::now();
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as the kernel sends it: the fixed part, then `payload` only.
    fn record(payload: &[u8], claimed: u32) -> Vec<u8> {
        let mut e =
            sock_event { kind: EVENT_SOCK_DATA, len: payload.len() as u32, captured: claimed, ..Default::default() };
        e.data[..payload.len()].copy_from_slice(payload);
        // SAFETY: sock_event is Plain.
        let bytes = unsafe { plain::as_bytes(&e) };
        bytes[..SOCK_HEAD_LEN + payload.len()].to_vec()
    }

    #[test]
    fn reused_scratch_never_shows_an_earlier_payload() {
        let mut scratch = SockScratch::default();
        let data = |ev: Option<RawEvent>| match ev {
            Some(RawEvent::Data(d)) => d.data,
            other => panic!("not data: {other:?}"),
        };
        let long = b"GET /a/very/long/path HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(data(parse_sock_event(&record(long, long.len() as u32), &mut scratch)), long);
        assert_eq!(data(parse_sock_event(&record(b"pong", 4), &mut scratch)), b"pong");
        // A record claiming more than it carries yields what it carries, not the old bytes.
        assert_eq!(data(parse_sock_event(&record(b"ok", 40), &mut scratch)), b"ok");
        // A record shorter than the fixed part reads as zeros past its end.
        let head_only = &record(b"", 0)[..8];
        assert!(parse_sock_event(head_only, &mut scratch)
            .is_none_or(|e| matches!(e, RawEvent::Data(ref d) if d.data.is_empty())));
    }
}
