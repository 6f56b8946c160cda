//! A protocol added from outside the decoder: a line-based echo protocol (`ECHO <word>\n`
//! answered by `<word>\n`), defined here and registered in the tracker's protocol table beside
//! HTTP/1.x, with nothing else touched. Its operations come out with their trace contexts, it
//! shares the connection table with HTTP, and bytes no protocol claims are counted once.
use std::collections::VecDeque;

use beyla::decode::context::TraceContext;
use beyla::decode::proto::{http, Ctx, Detect, Parser, Protocol, Verdict};
use beyla::decode::{DecodeError, Decoded, Request, Role, Tracker, TrackerLimits};
use beyla::events::{Direction, SockData};

#[derive(Default)]
struct Echo {
    /// Words asked and not answered yet: thread, start, word, trace context.
    asked: VecDeque<(u32, u64, String, TraceContext)>,
    /// A line cut between transfers, per direction (asked, answered).
    partial: [Vec<u8>; 2],
}

const ECHO: Protocol = Protocol {
    name: "echo",
    detect: |direction, data| {
        if data.starts_with(b"ECHO ") {
            // A question read: we serve.
            Detect::Claim(Some(if direction == Direction::Recv { Role::Server } else { Role::Client }))
        } else if b"ECHO ".starts_with(data) {
            Detect::Unsure
        } else {
            Detect::No
        }
    },
    parser: || Box::<Echo>::default(),
};

const PROTOCOLS: &[Protocol] = &[ECHO, http::h1::PROTOCOL];

impl Parser for Echo {
    fn feed(&mut self, ev: &SockData, cx: &mut Ctx<'_>) -> Verdict {
        let asking = (ev.direction == Direction::Recv) == (cx.role() == Role::Server);
        let side = usize::from(!asking);
        self.partial[side].extend_from_slice(&ev.data);
        while let Some(end) = self.partial[side].iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial[side].drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]).into_owned();
            if asking {
                let Some(word) = line.strip_prefix("ECHO ") else {
                    cx.error(DecodeError::Malformed);
                    return Verdict::Stop;
                };
                let trace = cx.begin(ev.tid, 0, None);
                self.asked.push_back((ev.tid, ev.ts_ns, word.to_string(), trace));
            } else if let Some((tid, start_ns, word, trace)) = self.asked.pop_front() {
                let c = cx.conn;
                let r = Request {
                    pid: c.pid,
                    tid,
                    role: cx.role(),
                    method: "ECHO".into(),
                    target: word.clone(),
                    status: if line == word { 0 } else { 1 },
                    start_ns,
                    end_ns: ev.ts_ns,
                    request_body_size: word.len() as u64,
                    response_body_size: line.len() as u64,
                    local: c.local,
                    remote: c.remote,
                    host: None,
                    traceparent: None,
                    trace,
                    grpc_status: None,
                    stream: 0,
                    tls: c.tls,
                    handler: None,
                    body_sizes_unknown: false,
                };
                cx.emit(r);
            } else {
                cx.error(DecodeError::MissedRequest);
            }
        }
        Verdict::Continue
    }

    fn close(&mut self, cx: &mut Ctx<'_>) {
        while let Some((_, _, _, trace)) = self.asked.pop_front() {
            cx.error(DecodeError::ClosedMidMessage);
            cx.abandon(&trace);
        }
    }

    fn busy(&self) -> bool {
        !self.asked.is_empty()
    }
}

fn ev(sock: u64, direction: Direction, ts: u64, bytes: &[u8]) -> SockData {
    SockData {
        pid: 7,
        tid: 70,
        sock_id: sock,
        ts_ns: ts,
        start_ns: ts,
        direction,
        len: bytes.len() as u32,
        local: "127.0.0.1:7000".parse().unwrap(),
        remote: format!("127.0.0.1:{}", 40000 + sock).parse().unwrap(),
        data: bytes.to_vec(),
        tail: Vec::new(),
        tls: false,
        capture: Default::default(),
    }
}

#[test]
fn a_protocol_defined_outside_the_decoder_is_sniffed_parsed_and_linked() {
    use Direction::{Recv, Send};
    let mut t = Tracker::with_protocols(TrackerLimits::default(), PROTOCOLS);
    let mut out = Decoded::default();
    let events = [
        // Connection 1: two questions, the first cut after "EC" (unsure, asked again), one
        // in two reads; the answers in one write.
        ev(1, Recv, 10, b"EC"),
        ev(1, Recv, 20, b"ECHO hello\nECHO wor"),
        ev(1, Recv, 30, b"ld\n"),
        ev(1, Send, 40, b"hello\nworld\n"),
        // Connection 2: HTTP/1.x beside it.
        ev(2, Recv, 50, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"),
        ev(2, Send, 60, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        // Connection 3: neither protocol: counted once, then ignored.
        ev(3, Recv, 70, b"\x16\x03\x01 a TLS hello"),
        ev(3, Recv, 80, b"ECHO too late\n"),
        // Connection 4: asked, then closed unanswered.
        ev(4, Recv, 90, b"ECHO lost\n"),
    ];
    for e in &events {
        t.on_data(e, &mut out);
    }
    t.on_close(7, 4, &mut out);

    let ops: Vec<(&str, &str, u64, u64)> =
        out.requests.iter().map(|r| (r.method.as_str(), r.target.as_str(), r.start_ns, r.end_ns)).collect();
    // "EC" was not decoded (unsure); a question starts when its line is read whole.
    assert_eq!(ops, [("ECHO", "hello", 20, 40), ("ECHO", "world", 30, 40), ("GET", "/x", 50, 60)]);
    assert!(out.requests.iter().all(|r| r.role == Role::Server && r.status == if r.method == "GET" { 200 } else { 0 }));
    // Each operation got its own trace context when it began.
    let spans: Vec<[u8; 8]> = out.requests.iter().map(|r| r.trace.span_id).collect();
    assert!(spans.iter().all(|s| *s != [0; 8]) && spans[0] != spans[1], "{spans:?}");
    assert_eq!(out.errors, [DecodeError::NotHttp, DecodeError::ClosedMidMessage]);
    assert_eq!(t.connections(), 3);
}
