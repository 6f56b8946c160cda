//! HTTP/2 connections after the client preface: the input is a sequence of records, each the
//! bytes of one transfer of either direction, fed through `Connection::feed` (with bytes that
//! followed uncaptured) or `Connection::feed_frames` (the capture's frame walk).
//!
//! A record is `[flags][missing: u16 le][len: u16 le][len bytes]` (a short last record takes
//! what is left). `flags` bit 0: the request (client-to-server) direction; bit 1: frames mode;
//! bits 2-7: the thread id. Feeding stops at the first `Desync`, as the tracker stops decoding
//! such a connection.
use beyla::decode::proto::http::h2::{Connection, Progress, PREFACE};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let mut conn = Connection::default();
        let mut progress = Progress::default();
        if conn.feed(true, PREFACE, 0, 1, 1, &mut progress).is_err() {
            panic!("the preface desynchronises");
        }
        let mut rest = data;
        let mut ts = 1u64;
        while rest.len() >= 5 {
            let flags = rest[0];
            let missing = usize::from(u16::from_le_bytes([rest[1], rest[2]]));
            let len = usize::from(u16::from_le_bytes([rest[3], rest[4]])).min(rest.len() - 5);
            let bytes = &rest[5..5 + len];
            rest = &rest[5 + len..];
            ts += 1_000;
            let (request, frames, tid) = (flags & 1 == 1, flags & 2 == 2, u32::from(flags >> 2));
            let mut progress = Progress::default();
            let fed = if frames {
                conn.feed_frames(request, bytes, ts, tid, &mut progress)
            } else {
                conn.feed(request, bytes, missing, ts, tid, &mut progress)
            };
            for stream in &progress.started {
                let _ = conn.exchange_mut(*stream);
            }
            let _ = conn.open_streams();
            if fed.is_err() {
                let _ = conn.traces().count();
                return;
            }
        }
        let _ = conn.traces().count();
    });
}
