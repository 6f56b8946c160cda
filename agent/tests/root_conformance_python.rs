//! Conformance on Python servers and clients nobody here wrote, decoded by the agent on this
//! kernel (needs root):
//!
//! - Python's own `http.server` (ThreadingHTTPServer, HTTP/1.1): pipelined requests (three in
//!   one write, answered one write each), and `curl` uploads with `Expect: 100-continue` (the
//!   server sends `100 Continue` before the body, then its answer). Before the decoder read
//!   each direction on its own, 1 of 3 pipelined requests was counted and the uploads' body
//!   sizes summed to 5.3 MB instead of 3.1.
//! - uvicorn + FastAPI (one asyncio event loop) whose handler awaits an `httpx` call: calls
//!   made while the loop serves several requests at once are not linked to any (counted in
//!   `beyla_unlinked_client_calls_total`); calls made while it serves one are its children.
//!   Before, 19 of 20 concurrent calls were linked to the wrong request.
//!
//! - grpcio (Python's gRPC, its own HTTP/2 in C) as server and client on one channel, calls one
//!   after another and ten at once: grpcio writes a request in 22 pieces (one sendmsg), so
//!   before vectored transfers were copied across 64 pieces (4, then 16) both sides counted 0
//!   of 40 (`http2_desync`). Five calls carry 200 KB messages each way (16 KiB DATA frames,
//!   read and written many to a transfer): before the capture followed HTTP/2 frames, the
//!   frames after the first 2 KiB of a transfer were lost, and the connection with them.
//!
//! The PyPI packages (pinned) are installed under `.cache/` by `scripts/py-install.sh`.
mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::otlp::{attr, hex, Proto, Receiver};
use common::*;

const PYPI: &[&str] = &["uvicorn==0.55.0", "fastapi==0.165.0", "httpx==0.29.0", "grpcio==1.85.4"];

fn script(name: &str) -> PathBuf {
    repo().join("agent/tests/conformance").join(name)
}

/// Python with the pinned PyPI packages on `PYTHONPATH` (installed on first use).
fn python_with_packages() -> (String, PathBuf) {
    python_with("conformance-py", PYPI)
}

/// Starts `args` and waits until something listens on `port`.
fn start_server(name: &str, cmd: &mut Command, port: u16) -> Proc {
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap_or_else(|e| panic!("{name}: {e}"));
    let proc = Proc { child, name: name.to_string() };
    // Importing FastAPI or grpcio takes a second here, and over 30 s in a TCG guest.
    let up = wait_for(Duration::from_secs(180), || TcpStream::connect(("127.0.0.1", port)).is_ok());
    assert!(up, "{name} did not listen on {port}");
    proc
}

fn stdlib_server(port: u16) -> Proc {
    start_server("http.server", Command::new(python3()).arg(script("stdlib_server.py")).arg(port.to_string()), port)
}

/// The agent instrumenting `services` (port, name; port 0: the process whose arguments match
/// the name's `cmd_args` glob `*<name>*`) and exporting to Prometheus on `mport`
/// (and OTLP traces to `otlp`, if given).
fn agent(services: &[(u16, &str)], mport: u16, otlp: Option<&Receiver>, tag: &str) -> (Proc, PathBuf) {
    let mut yaml = String::from("discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n  instrument:\n");
    for (port, name) in services {
        yaml += &match port {
            0 => format!("    - {{ cmd_args: \"*{name}*\", name: {name} }}\n"),
            _ => format!("    - {{ open_ports: \"{port}\", name: {name} }}\n"),
        };
    }
    yaml += &format!(
        "prometheus_export:\n  port: {mport}\nroutes:\n  patterns: [\"/item/{{n}}\", \"/call/{{i}}\", \"/down/{{i}}\"]\n"
    );
    if let Some(r) = otlp {
        yaml +=
            &format!("otel_traces_export:\n  endpoint: {}\n  protocol: grpc\n  batch_timeout: 200ms\n", r.endpoint());
    }
    start_agent(&yaml, &[], tag)
}

#[test]
fn root_conformance_python_pipelining_and_expect_continue() {
    require_root();
    let (port, mport) = (free_port(), free_port());
    let (_agent, log) = agent(&[(port, "pyserver")], mport, None, "py-pipeline");
    let _server = stdlib_server(port);
    wait_instrumented(mport, 1.0, &log);

    // Three requests in one write, on each of three keep-alive connections.
    let mut sizes = 0u64;
    for c in 0..3u64 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let n: Vec<u64> = (0..3).map(|i| 100 * (3 * c + i + 1)).collect();
        let batch: String = n.iter().map(|n| format!("GET /item/{n} HTTP/1.1\r\nHost: py\r\n\r\n")).collect();
        s.write_all(batch.as_bytes()).unwrap();
        for want in &n {
            let (status, body) = read_response(&mut s);
            assert_eq!((status, body.len() as u64), (200, *want));
            sizes += want;
        }
    }
    // Three 1 MiB uploads that wait for `100 Continue`.
    curl_uploads_1mib(&format!("http://127.0.0.1:{port}/upload"), 3);

    let count = |m: &[Sample], route: &str, status: &str| {
        sum(
            m,
            "http_server_request_duration_seconds_count",
            &[("http_route", route), ("http_response_status_code", status)],
        )
    };
    let done = wait_for(Duration::from_secs(20), || {
        let m = scrape(mport, "/metrics");
        count(&m, "/item/{n}", "200") >= 9.0 && count(&m, "/upload", "201") >= 3.0
    });
    std::thread::sleep(Duration::from_secs(1));
    let m = scrape(mport, "/metrics");
    let dump = || agent_dump(mport, &log);
    assert!(done, "not all counted:\n{}", dump());
    assert_eq!(count(&m, "/item/{n}", "200"), 9.0, "{}", dump());
    assert_eq!(count(&m, "/upload", "201"), 3.0, "{}", dump());
    assert_eq!(sum(&m, "http_server_request_duration_seconds_count", &[]), 12.0, "{}", dump());
    let route = |r| [("http_route", r)];
    assert_eq!(sum(&m, "http_server_response_body_size_bytes_sum", &route("/item/{n}")), sizes as f64, "{}", dump());
    assert_eq!(sum(&m, "http_server_request_body_size_bytes_sum", &route("/upload")), f64::from(3 << 20), "{}", dump());
    let internal = scrape(mport, "/internal/metrics");
    assert_eq!(sum(&internal, "beyla_decode_errors_total", &[]), 0.0, "{}", dump());
}

/// One client span's call number, its span id and its parent, from its `url.full` or `url.path`.
fn call_of(span: &common::otlp::Got, key: &str, prefix: &str) -> Option<u32> {
    let v = attr(&span.span.attributes, key)?;
    v.rsplit_once(prefix)?.1.parse().ok()
}

#[test]
fn root_conformance_uvicorn_links_only_what_it_knows() {
    require_root();
    let (py, pypath) = python_with_packages();
    let receiver = Receiver::start(Proto::Grpc, free_port());
    let (port, down, mport) = (free_port(), free_port(), free_port());
    let (_agent, log) = agent(&[(port, "uvicorn"), (down, "backend")], mport, Some(&receiver), "uvicorn");
    let _backend = stdlib_server(down);
    let _app = start_server(
        "uvicorn",
        Command::new(&py)
            .args(["-m", "uvicorn", "asgi_app:app", "--no-access-log", "--port"])
            .arg(port.to_string())
            .arg("--app-dir")
            .arg(script(""))
            .env("PYTHONPATH", &pypath)
            .env("DOWN_PORT", down.to_string()),
        port,
    );
    wait_instrumented(mport, 2.0, &log);

    // One at a time: the loop serves one request when its handler calls.
    for i in 0..5 {
        assert!(http_get(port, &format!("/call/{i}")).is_some_and(|b| b.contains("\"down\":200")));
    }
    // Twenty at once on the one event loop.
    let clients: Vec<_> = (100..120)
        .map(|i| std::thread::spawn(move || http_get(port, &format!("/call/{i}")).is_some_and(|b| b.contains("200"))))
        .collect();
    for c in clients {
        assert!(c.join().unwrap(), "a concurrent call failed");
    }

    let kind = |k: i32| move |s: &common::otlp::Got| s.span.kind == k;
    let (server_kind, client_kind) = (2, 3);
    let done = wait_for(Duration::from_secs(30), || {
        let spans = receiver.spans();
        spans.iter().filter(|s| kind(server_kind)(s)).count() >= 50
            && spans.iter().filter(|s| kind(client_kind)(s)).count() >= 25
    });
    let spans = receiver.spans();
    let dump = || agent_dump(mport, &log);
    assert!(done, "spans: {} received\n{}", spans.len(), dump());
    let service = |s: &common::otlp::Got| common::otlp::res_attr(Some(&s.resource), "service.name").unwrap_or_default();
    let by_call = |svc: &str, k: i32, key: &str, prefix: &str| {
        let mut m = std::collections::HashMap::new();
        for s in spans.iter().filter(|s| service(s) == svc && kind(k)(s)) {
            if let Some(i) = call_of(s, key, prefix) {
                assert!(m.insert(i, s).is_none(), "two {svc} spans for call {i}");
            }
        }
        m
    };
    let served = by_call("uvicorn", server_kind, "url.path", "/call/");
    let calls = by_call("uvicorn", client_kind, "url.full", "/down/");
    let downstream = by_call("backend", server_kind, "url.path", "/down/");
    assert_eq!((served.len(), calls.len(), downstream.len()), (25, 25, 25), "{}", dump());

    let (mut linked, mut unlinked) = (0, 0);
    for (i, call) in &calls {
        let parent = hex(&call.span.parent_span_id);
        let own = hex(&served[i].span.span_id);
        // Never another request's child.
        if parent.is_empty() || parent == "0000000000000000" {
            unlinked += 1;
        } else {
            assert_eq!(parent, own, "call {i} linked to another request than the one that made it");
            assert_eq!(call.span.trace_id, served[i].span.trace_id);
            linked += 1;
        }
        // The backend's server span is the call's child (both ends on this host).
        assert_eq!(downstream[i].span.parent_span_id, call.span.span_id, "backend span of call {i}");
    }
    for i in 0..5 {
        assert_eq!(hex(&calls[&i].span.parent_span_id), hex(&served[&i].span.span_id), "sequential call {i} unlinked");
    }
    eprintln!("uvicorn: {linked} calls linked, {unlinked} left unlinked");
    let internal = scrape(mport, "/internal/metrics");
    let counted = sum(&internal, "beyla_unlinked_client_calls_total", &[]);
    assert_eq!(counted, f64::from(unlinked), "linked {linked}, unlinked {unlinked}\n{}", dump());
    assert!(unlinked > 0, "20 concurrent calls on one event loop, all linked: not possible to know\n{}", dump());
}

#[test]
fn root_conformance_grpcio_server_and_client() {
    require_root();
    let (py, pypath) = python_with_packages();
    let receiver = Receiver::start(Proto::Grpc, free_port());
    let (port, mport) = (free_port(), free_port());
    // The client is named by its arguments: "client" (the server's are "server").
    let (_agent, log) = agent(&[(port, "grpcserver"), (0, "client")], mport, Some(&receiver), "grpcio");
    let script = script("grpc_echo.py");
    let _server = start_server(
        "grpcio server",
        Command::new(&py).arg(&script).args(["server", &port.to_string()]).env("PYTHONPATH", &pypath),
        port,
    );
    let mut client = Command::new(&py)
        .arg(&script)
        .args(["client", &port.to_string()])
        .env("PYTHONPATH", &pypath)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the grpcio client");
    let mut out = std::io::BufReader::new(client.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    wait_instrumented(mport, 2.0, &log);
    wait_pid_instrumented(client.id(), &log);
    client.stdin.take().unwrap().write_all(b"go\n").unwrap();
    line.clear();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line, "done\n", "the grpcio client failed");
    assert!(client.wait().unwrap().success());

    let want = [("rpc_method", "/demo.Echo/Say"), ("rpc_grpc_status_code", "0")];
    let (srv, cli) = ("rpc_server_call_duration_seconds_count", "rpc_client_call_duration_seconds_count");
    let done = wait_for(Duration::from_secs(20), || {
        let m = scrape(mport, "/metrics");
        sum(&m, srv, &want) >= 45.0 && sum(&m, cli, &want) >= 45.0
    });
    std::thread::sleep(Duration::from_secs(1));
    let m = scrape(mport, "/metrics");
    let dump = || agent_dump(mport, &log);
    assert!(done, "not all counted:\n{}", dump());
    assert_eq!(sum(&m, srv, &want), 45.0, "{}", dump());
    assert_eq!(sum(&m, cli, &want), 45.0, "{}", dump());
    assert_eq!(sum(&m, srv, &[]) + sum(&m, cli, &[]), 90.0, "{}", dump());
    let internal = scrape(mport, "/internal/metrics");
    assert_eq!(sum(&internal, "beyla_decode_errors_total", &[]), 0.0, "{}", dump());

    // Both ends on this host: every server span is the child of its client span.
    let done = wait_for(Duration::from_secs(20), || receiver.count_spans(|s| s.kind == 2 || s.kind == 3) >= 90);
    let spans = receiver.spans();
    assert!(done, "{} spans received\n{}", spans.len(), dump());
    let clients: std::collections::HashMap<_, _> =
        spans.iter().filter(|s| s.span.kind == 3).map(|s| (s.span.span_id.clone(), s)).collect();
    assert_eq!(clients.len(), 45);
    assert_eq!(spans.iter().filter(|s| s.span.kind == 2).count(), 45);
    for s in spans.iter().filter(|s| s.span.kind == 2) {
        let parent = clients.get(&s.span.parent_span_id).unwrap_or_else(|| panic!("server span without its client"));
        assert_eq!(parent.span.trace_id, s.span.trace_id);
    }
}
