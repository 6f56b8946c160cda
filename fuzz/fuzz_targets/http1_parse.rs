//! HTTP/1.x heads and chunked bodies: the input's first byte chooses how the chunked walker's
//! spans are cut (0: one whole span), the rest is the message.
//!
//! Every head parser runs on the message; the chunked walker runs on the message itself and on
//! what follows a head that parsed, as the connection code feeds it.
use beyla::decode::proto::http::h1::chunked::{Chunked, Span};
use beyla::decode::proto::http::h1::{
    is_request_start, is_response_start, parse_request, parse_response, parse_truncated_request,
    parse_truncated_response,
};

/// A small deterministic generator, so that one control byte gives a whole split pattern.
struct Lcg(u32);

impl Lcg {
    fn next(&mut self, bound: u32) -> u32 {
        self.0 = self.0.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (self.0 >> 16) % bound.max(1)
    }
}

/// Walks `body` in spans cut as `ctl` says: each span's first bytes captured, maybe bytes that
/// were not captured after them, and the transfer's last bytes as its tail.
fn walk(ctl: u8, body: &[u8]) {
    let mut c = Chunked::default();
    if ctl == 0 {
        let _ = c.feed(Span { captured: body, len: body.len() as u64, tail: &[] });
        let _ = c.lost();
        return;
    }
    let mut rng = Lcg(u32::from(ctl));
    let mut rest = body;
    while !rest.is_empty() {
        let n = (1 + rng.next(64) as usize).min(rest.len());
        let (piece, next) = rest.split_at(n);
        rest = next;
        // Mostly whole; sometimes only a prefix, and bytes on the wire past the piece.
        let cap = if rng.next(4) == 0 { rng.next(n as u32 + 1) as usize } else { n };
        let extra = if rng.next(8) == 0 { u64::from(rng.next(100_000)) } else { 0 };
        let len = n as u64 + extra;
        let captured = &piece[..cap];
        let tail = if cap < n || extra > 0 { &piece[n.saturating_sub(8).max(cap)..] } else { &[][..] };
        if let Some(used) = c.feed(Span { captured, len, tail }) {
            assert!(used <= len, "chunked body ends past its span: {used} > {len}");
            return;
        }
    }
    let _ = c.lost();
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Some((&ctl, msg)) = data.split_first() else { return };
        let _ = is_request_start(msg);
        let _ = is_response_start(msg);
        if let Ok(h) = parse_request(msg) {
            assert!(h.len <= msg.len());
            walk(ctl, &msg[h.len..]);
        }
        for method in ["GET", "HEAD"] {
            if let Ok(h) = parse_response(msg, method) {
                assert!(h.len <= msg.len());
                walk(ctl, &msg[h.len..]);
            }
            let _ = parse_truncated_response(msg, method);
        }
        let _ = parse_truncated_request(msg);
        walk(ctl, msg);
    });
}
