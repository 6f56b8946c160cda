//! A protocol added from outside the decoder: a line-based echo protocol (`ECHO <word>\n`
//! answered by `<word>\n`), defined here and registered in the tracker's protocol table beside
//! HTTP/1.x, with nothing else touched. Its operations come out with their trace contexts, it
//! shares the connection table with HTTP, bytes no protocol claims are counted once, and its
//! operations, reported as a database client's (`Family::Db`), land in the Prometheus metric
//! the table defines for that family, `db_client_operation_duration_seconds`.
use std::collections::VecDeque;

use std::sync::Arc;
use std::time::Duration;

use beyla::aggregate::{AppMetrics, Buckets};
use beyla::attach::TracedProcess;
use beyla::decode::context::TraceContext;
use beyla::decode::proto::{http, Ctx, Detect, Parser, Protocol, Verdict};
use beyla::decode::{AttrValue, DecodeError, Decoded, Family, Operation, Request, Role, Tracker, TrackerLimits};
use beyla::discover::ServiceId;
use beyla::enrich::Span;
use beyla::events::{Direction, SockData};
use prometheus_client::registry::Registry;

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
            // A question read: we serve; written: we ask.
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
                let operation = Operation {
                    family: Family::Db,
                    name: "ECHO".into(),
                    attributes: vec![
                        ("db.system.name", AttrValue::Str("echo".into())),
                        ("db.operation.name", AttrValue::Str("ECHO".into())),
                        ("db.query.text", AttrValue::Str(word.clone())),
                    ],
                    error: (line != word).then(|| "mismatch".to_string()),
                };
                let r = Request {
                    pid: c.pid,
                    tid,
                    role: cx.role(),
                    method: String::new(),
                    target: String::new(),
                    status: 0,
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
                    operation: Some(Box::new(operation)),
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
        goroutine: None,
    }
}

#[test]
fn a_protocol_defined_outside_the_decoder_is_sniffed_parsed_and_linked() {
    use Direction::{Recv, Send};
    let mut t = Tracker::with_protocols(TrackerLimits::default(), PROTOCOLS);
    let mut out = Decoded::default();
    let events = [
        // Connection 1, we ask: three questions, the first cut after "EC" (unsure, asked
        // again), one in two writes; the answers in one read, the last one wrong.
        ev(1, Send, 10, b"EC"),
        ev(1, Send, 20, b"HO hello\nECHO wor"),
        ev(1, Send, 30, b"ld\nECHO again\n"),
        ev(1, Recv, 40, b"hello\nworld\nagian\n"),
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

    let ops: Vec<(Role, String, u64, u64)> = out
        .requests
        .iter()
        .map(|r| {
            let what = match &r.operation {
                Some(op) => {
                    format!("{} {}", op.name, r.attribute("db.query.text").map(|v| v.to_string()).unwrap_or_default())
                }
                None => format!("{} {} {}", r.method, r.target, r.status),
            };
            (r.role, what, r.start_ns, r.end_ns)
        })
        .collect();
    // "EC" could not be told alone: asked again joined with what followed it, then decoded
    // first; this parser starts a question when its line is written whole.
    let want = [
        (Role::Client, "ECHO hello", 20, 40),
        (Role::Client, "ECHO world", 30, 40),
        (Role::Client, "ECHO again", 30, 40),
        (Role::Server, "GET /x 200", 50, 60),
    ];
    assert_eq!(ops, want.map(|(r, w, s, e)| (r, w.to_string(), s, e)));
    // Each operation got its own trace context when it began.
    let spans: Vec<[u8; 8]> = out.requests.iter().map(|r| r.trace.span_id).collect();
    assert!(spans.iter().all(|s| *s != [0; 8]) && spans[0] != spans[1], "{spans:?}");
    assert_eq!(out.errors, [DecodeError::NotHttp, DecodeError::ClosedMidMessage]);
    assert_eq!(t.connections(), 3);

    // Exported without the exporters knowing the protocol: its family's metric, its span name.
    let service = ServiceId { name: "shop".into(), namespace: String::new(), instance_id: "h:7".into() };
    let process = Arc::new(TracedProcess {
        pid: 7,
        exe: "/usr/bin/shop".into(),
        service,
        parent: None,
        k8s: None,
        language: "go",
    });
    let spans: Vec<Span> =
        out.requests.into_iter().map(|request| Span { process: process.clone(), request, route: None }).collect();
    assert_eq!(spans[0].name(), "ECHO");
    assert!(!spans[1].is_error() && spans[2].is_error());
    let mut reg = Registry::default();
    let b = || Buckets(vec![0.5]);
    let mut m = AppMetrics::new(&mut reg, [b(), b(), b()], Default::default(), Duration::from_secs(60));
    for s in &spans {
        m.record(s);
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    let base = r#"instance="h:7",job="shop",service_name="shop",service_namespace="",db_operation_name="ECHO",db_system_name="echo""#;
    let ok = format!("db_client_operation_duration_seconds_count{{{base},server_address=\"127.0.0.1\"}} 2");
    let failed = format!(
        "db_client_operation_duration_seconds_count{{{base},error_type=\"mismatch\",server_address=\"127.0.0.1\"}} 1"
    );
    assert!(text.contains(&ok) && text.contains(&failed), "{text}");
    assert!(
        text.contains("http_server_request_duration_seconds_count{")
            && !text.contains("http_client_request_duration_seconds_count{"),
        "{text}"
    );
}
