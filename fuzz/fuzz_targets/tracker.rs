//! The whole decoder (`beyla::decode::Tracker`) over a sequence of socket events, as the
//! decode stage drives it (and `agent/tests/decode_fixtures.rs` replays recorded ones): HTTP/1.x
//! and HTTP/2 (prefix captures and the frame walk), TLS plaintext, closes, socket reuse, idle
//! expiry and process exits.
//!
//! A record is `[flags][extra][misc][tid][len: u16 le][len bytes][tail bytes]`; a short last
//! record takes what is left.
//! - `flags` bit 0: send (else recv); bits 1-2: capture (0 prefix, 1 HTTP/2 frames, 2 HTTP/2
//!   lost) or 3 for a close (the record is then its first 4 bytes only); bit 3: TLS plaintext;
//!   bits 4-5: the socket (of 4); bit 6: the process (of 2); bit 7: the syscall's entry time is
//!   known (else 0).
//! - `extra`: bytes the transfer had past those captured (`len` in the event is the captured
//!   length plus this; >= 0x80 counts in 256-byte units).
//! - `misc` bits 0-3: tail length (at most 8, as the capture keeps); bit 4: the socket's peer
//!   port changes (a reused socket); bits 5-7: time since the previous event.
//! - `tid` bits 0-1: the thread; bit 2: a Go write that names the request its goroutine serves
//!   (the capture's `Goroutine`): on socket bits 3-4 of the process, its handler started at
//!   bits 5-6; bit 7: expire idle connections first.
use std::net::SocketAddr;

use beyla::decode::{Decoded, Tracker, TrackerLimits};
use beyla::events::{Capture, Direction, Goroutine, SockData};

const PIDS: [u32; 2] = [100, 200];

fn main() {
    afl::fuzz!(|data: &[u8]| {
        // Small bounds, so that eviction and expiry run too.
        let limits = TrackerLimits { max_connections: 3, idle_timeout_ns: 50_000_000 };
        let mut t = Tracker::new(limits);
        let mut out = Decoded::default();
        let mut ts = 1_000_000u64;
        let mut rest = data;
        while rest.len() >= 4 {
            let (flags, extra, misc, tid) = (rest[0], rest[1], rest[2], rest[3]);
            let kind = (flags >> 1) & 3;
            let slot = u64::from((flags >> 4) & 3);
            let pid = PIDS[usize::from((flags >> 6) & 1)];
            let sock_id = 0xffff_0000_0000_0000 | (u64::from(pid) << 8) | slot;
            ts += 1u64 << (2 * u32::from(misc >> 5) + 8);
            if tid & 0x80 != 0 {
                t.expire(ts, &mut out);
            }
            if kind == 3 {
                rest = &rest[4..];
                t.on_close(pid, sock_id, &mut out);
                continue;
            }
            if rest.len() < 6 {
                break;
            }
            let want = usize::from(u16::from_le_bytes([rest[4], rest[5]]));
            let body = &rest[6..];
            let n = want.min(body.len());
            let tail_len = usize::from(misc & 0x0f).min(8).min(body.len() - n);
            let (bytes, tail) = (&body[..n], &body[n..n + tail_len]);
            rest = &body[n + tail_len..];
            let extra = if extra < 0x80 { u32::from(extra) } else { u32::from(extra & 0x7f) << 8 };
            let local: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8000 + slot as u16));
            let remote_port = 40_000 + slot as u16 + if misc & 0x10 != 0 { 100 } else { 0 };
            let remote = SocketAddr::from(([127, 0, 0, 1], remote_port));
            let ev = SockData {
                pid,
                tid: pid + u32::from(tid & 3),
                sock_id,
                ts_ns: ts,
                start_ns: if flags & 0x80 != 0 { ts - 100 } else { 0 },
                direction: if flags & 1 == 1 { Direction::Send } else { Direction::Recv },
                len: bytes.len() as u32 + extra,
                local,
                remote,
                data: bytes.to_vec(),
                tail: if extra > 0 { tail.to_vec() } else { Vec::new() },
                tls: flags & 8 != 0,
                capture: match kind {
                    0 => Capture::Prefix,
                    1 => Capture::H2Frames,
                    _ => Capture::H2Lost,
                },
                goroutine: (tid & 4 != 0).then(|| Goroutine {
                    server_sock: 0xffff_0000_0000_0000 | (u64::from(pid) << 8) | u64::from((tid >> 3) & 3),
                    server_stream: 0,
                    handler_ns: u64::from((tid >> 5) & 3),
                }),
            };
            t.on_data(&ev, &mut out);
        }
        for pid in PIDS {
            for slot in 0..4u64 {
                t.on_close(pid, 0xffff_0000_0000_0000 | (u64::from(pid) << 8) | slot, &mut out);
            }
            t.on_exit(pid, &mut out);
        }
        for r in &out.requests {
            let _ = (r.duration_ns(), r.path(), r.scheme());
        }
    });
}
