//! `traceparent` header values (W3C Trace Context), as they come off the wire: bytes that may
//! not be UTF-8 are read lossily, as the HTTP/1.x head parser hands them on.
use beyla::decode::context::parse_traceparent;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let v = String::from_utf8_lossy(data);
        if let Some((trace, span, _)) = parse_traceparent(&v) {
            assert!(trace != [0; 16] && span != [0; 8]);
        }
    });
}
