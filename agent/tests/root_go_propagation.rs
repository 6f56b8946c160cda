//! Context propagation (`ebpf.context_propagation: headers`) through the Go probes on the real
//! kernel (needs root; `bash testapps/build.sh` and `bash testapps/build-go.sh 1.23` build the
//! apps). An instrumented go-http calls, on `/call`, a plain HTTP server in this test that the
//! agent does not trace and that records every request head it gets.
//!
//! Where the kernel lets BPF programs write user memory (no lockdown: the VM kernels), every
//! outgoing request carries one well-formed `Traceparent` header, after `Host` and
//! `User-Agent`, naming the client span the agent exports (its trace id and span id); a
//! request that came in with a `traceparent` passes its trace id on. Under lockdown
//! (`integrity` or `confidentiality`, this host), the agent says in its log that headers
//! cannot be written, the requests go out unchanged, and the spans are linked as before.
//!
//! The same for gRPC: the demo's backend, instrumented, calls a demo worker the agent does not
//! trace, which counts the `traceparent` metadata of every call it gets.
mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::otlp::{hex, res_attr, Got, Proto, Receiver};
use common::*;

/// A plain HTTP/1.1 server answering `ok` to anything; returns its port and the request heads.
fn recording_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            seen.lock().unwrap().push(String::from_utf8_lossy(&buf).into_owned());
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    (port, heads)
}

/// `GET /call` on the front, with an incoming `traceparent` when given; returns the body.
fn call(port: u16, traceparent: Option<&str>) -> String {
    get(port, "/call", traceparent)
}

/// `GET path` on the port, with an incoming `traceparent` when given; returns the body.
fn get(port: u16, path: &str, traceparent: Option<&str>) -> String {
    fetch(&format!("http://127.0.0.1:{port}{path}"), traceparent)
}

/// `GET url` with an incoming `traceparent` when given; returns the body. An `https` URL is
/// fetched over HTTP/2 (checked), accepting the test apps' self-signed certificates.
fn fetch(url: &str, traceparent: Option<&str>) -> String {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "10"]);
    let h2 = url.starts_with("https:");
    if h2 {
        cmd.args(["-k", "--http2", "-w", "\n%{http_version}"]);
    }
    if let Some(tp) = traceparent {
        cmd.args(["-H", &format!("traceparent: {tp}")]);
    }
    let out = cmd.arg(url).output().expect("running curl");
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    if !h2 {
        return body;
    }
    let (body, version) = body.rsplit_once('\n').unwrap_or_else(|| panic!("curl printed {body:?}"));
    assert_eq!(version, "2", "not HTTP/2: {url}");
    body.to_string()
}

/// The `Traceparent` values of a request head, checking the head is well formed around them.
fn traceparents(head: &str) -> Vec<String> {
    let lines: Vec<&str> = head.split("\r\n").collect();
    assert!(lines[0].starts_with("GET /ping HTTP/1.1"), "request line: {head:?}");
    assert!(head.ends_with("\r\n\r\n"), "head not terminated: {head:?}");
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate().skip(1).filter(|(_, l)| !l.is_empty()) {
        let (name, value) = l.split_once(": ").unwrap_or_else(|| panic!("malformed header line {l:?} in {head:?}"));
        if name.eq_ignore_ascii_case("traceparent") {
            // Written after the request line, Host and User-Agent, before the others.
            assert!(lines[1].starts_with("Host: ") && lines[2].starts_with("User-Agent: ") && i == 3, "{head:?}");
            out.push(value.to_string());
        }
    }
    out
}

/// The agent's configuration: `headers` propagation, the given (port, service name) pairs
/// instrumented, spans to `receiver`.
fn agent_yaml(instrument: &[(u16, &str)], mport: u16, receiver: &Receiver) -> String {
    let targets: String =
        instrument.iter().map(|(port, name)| format!("    - {{ open_ports: \"{port}\", name: {name} }}\n")).collect();
    format!(
        "discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n  instrument:\n{targets}\
         ebpf:\n  context_propagation: headers\n\
         prometheus_export:\n  port: {mport}\n\
         otel_traces_export:\n  endpoint: {ep}\n  protocol: grpc\n  batch_timeout: 200ms\n",
        ep = receiver.endpoint(),
    )
}

/// `h2`: the front serves HTTPS with HTTP/2 (net/http's bundled server), so the incoming
/// traceparent is read from its decoded header frames instead of the HTTP/1.x head.
/// Waits for `n` exported server spans and checks each has a client span child in its trace
/// (every call is the child of the request it serves); returns the servers and, in the same
/// order, the clients' `00-<trace>-<span>-01` traceparents. The two [`INCOMING`] requests
/// must continue their trace under [`INCOMING_PARENT`].
fn calls_under_requests(receiver: &Receiver, log: &std::path::Path, n: usize) -> (Vec<Got>, Vec<String>) {
    let got = wait_for(Duration::from_secs(30), || {
        receiver.spans().iter().filter(|g| g.span.kind == 2 || g.span.kind == 3).count() >= 2 * n
    });
    let spans: Vec<Got> = receiver.spans().into_iter().filter(|g| g.span.kind == 2 || g.span.kind == 3).collect();
    let dump = || format!("{} spans\n--- agent log:\n{}", spans.len(), agent_log(log));
    assert!(got, "{}", dump());
    let servers: Vec<Got> = spans.iter().filter(|g| g.span.kind == 2).cloned().collect();
    assert_eq!(servers.len(), n, "{}", dump());
    let mut client_ids = Vec::new();
    for s in &servers {
        let c = spans
            .iter()
            .find(|g| g.span.kind == 3 && g.span.parent_span_id == s.span.span_id)
            .unwrap_or_else(|| panic!("no client span under {}: {}", hex(&s.span.span_id), dump()));
        assert_eq!(c.span.trace_id, s.span.trace_id);
        client_ids.push(format!("00-{}-{}-01", hex(&c.span.trace_id), hex(&c.span.span_id)));
    }
    for t in INCOMING {
        let s = servers.iter().find(|s| hex(&s.span.trace_id) == t).unwrap_or_else(|| panic!("trace {t} lost"));
        assert_eq!(hex(&s.span.parent_span_id), INCOMING_PARENT);
    }
    (servers, client_ids)
}

/// Sorted, the traceparents a downstream got (`seen`) are the exported client spans' (`ids`),
/// and each [`INCOMING`] trace was passed on once; the agent (metrics on `mport`) counted no
/// client span exported in another trace than the one written for it.
fn assert_written(mut seen: Vec<String>, mut ids: Vec<String>, mport: u16, log: &std::path::Path) {
    seen.sort();
    ids.sort();
    let mismatches = sum(&scrape(mport, "/internal/metrics"), "beyla_propagated_trace_mismatches_total", &[]);
    assert_eq!(
        seen,
        ids,
        "traceparents received vs client spans exported ({mismatches} mismatches counted)\n{}",
        agent_log(log)
    );
    assert_eq!(mismatches, 0.0, "beyla_propagated_trace_mismatches_total");
    for t in INCOMING {
        assert_eq!(seen.iter().filter(|v| v.contains(t)).count(), 1, "trace {t} not passed on: {seen:?}");
    }
}

fn propagation(go: &str, h2: bool) {
    require_root();
    let launcher = go_launcher(go);
    let receiver = Receiver::start(Proto::Grpc, free_port());
    let (down, heads) = recording_server();
    let (front, mport) = (free_port(), free_port());
    let yaml = agent_yaml(&[(front, "cp-front")], mport, &receiver);
    let (_agent, log) = start_agent(&yaml, &[], &format!("propagation-{go}-{h2}"));
    let url = format!("http://127.0.0.1:{down}/ping");
    let mut env = vec![("DOWNSTREAM_URL", url.as_str())];
    if h2 {
        env.push(("GO_HTTP_TLS", "h2"));
    }
    let _front = start_launcher(&launcher, "go-http", front, &env);
    let scheme = if h2 { "https" } else { "http" };
    let call = |tp: Option<&str>| fetch(&format!("{scheme}://127.0.0.1:{front}/call"), tp);
    wait_instrumented(mport, 1.0, &log);
    wait_go_instrumented(mport, 1.0, &log);
    let (lockdown, can_write) = lockdown_of(&log);

    // Five calls that start a trace, two that continue one.
    for _ in 0..5 {
        assert_eq!(call(None), "called:200");
    }
    for t in INCOMING {
        assert_eq!(call(Some(&format!("00-{t}-{INCOMING_PARENT}-01"))), "called:200");
    }
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 7, "{heads:?}");

    let (servers, client_ids) = calls_under_requests(&receiver, &log, 7);
    for s in &servers {
        assert_eq!(res_attr(Some(&s.resource), "service.name").as_deref(), Some("cp-front"));
    }

    let written: Vec<Vec<String>> = heads.iter().map(|h| traceparents(h)).collect();
    let text = agent_log(&log);
    if !can_write {
        assert!(
            text.contains(&format!("ebpf.context_propagation: headers is unavailable: kernel lockdown={lockdown}")),
            "lockdown={lockdown} but the agent did not say propagation is off:\n{text}"
        );
        assert!(written.iter().all(Vec::is_empty), "a header was written under lockdown: {heads:?}");
        return;
    }
    assert!(text.contains("Context propagation: traceparent headers are written"), "{text}");
    // Each request carries exactly one header, naming the client span the agent exported.
    let mut seen = Vec::new();
    for (w, h) in written.iter().zip(&heads) {
        assert_eq!(w.len(), 1, "one traceparent per request: {h:?}");
        seen.push(w[0].clone());
    }
    let mut traces: Vec<&str> = seen.iter().map(|v| v.split('-').nth(1).unwrap_or_default()).collect();
    traces.sort();
    traces.dedup();
    assert_eq!(traces.len(), 7, "each request its own trace: {seen:?}");
    assert_written(seen, client_ids, mport, &log);
}

#[test]
fn root_go_propagation_go119() {
    propagation("go1.19", false);
}

#[test]
fn root_go_propagation_go123() {
    propagation("go1.23", false);
}

/// The same with an HTTP/2 server (HTTPS, h2) in front.
#[test]
fn root_go_propagation_h2_server_go119() {
    propagation("go1.19", true);
}

/// The demo's backend calling one worker over gRPC, under an agent with `headers`
/// propagation that instruments the backend, and the worker too when `worker_call` is given
/// (a URL the worker GETs while serving each call). The worker counts the `traceparent`
/// metadata it gets.
struct GrpcSetup {
    receiver: Receiver,
    log: std::path::PathBuf,
    back: u16,
    mport: u16,
    wstats: u16,
    _procs: Vec<Proc>,
}

fn grpc_setup(go: &str, worker_call: Option<&str>) -> GrpcSetup {
    require_root();
    let dir = match go {
        "go1.19" => repo().join("testapps/build/demo"),
        other => repo().join(format!("testapps/build/{other}/demo")),
    };
    assert!(
        dir.join("worker").exists(),
        "{} missing: run testapps/build.sh and testapps/build-go.sh 1.23",
        dir.display()
    );
    let receiver = Receiver::start(Proto::Grpc, free_port());
    let (grpc, wstats, back, mport) = (free_port(), free_port(), free_port(), free_port());
    let mut targets = vec![(back, "cp-backend")];
    if worker_call.is_some() {
        targets.push((grpc, "cp-worker"));
    }
    let yaml = agent_yaml(&targets, mport, &receiver);
    let (agent, log) = start_agent(&yaml, &[], &format!("grpc-propagation-{go}-{}", targets.len()));
    let mut worker_args: Vec<String> = vec![
        "-addr".into(),
        format!("127.0.0.1:{grpc}"),
        "-stats-addr".into(),
        format!("127.0.0.1:{wstats}"),
        "-record-traceparent".into(),
    ];
    if let Some(url) = worker_call {
        worker_args.extend(["-call-url".into(), url.to_string()]);
    }
    let worker = spawn_demo(&dir, "worker", &worker_args, grpc);
    let backend_args: Vec<String> =
        vec!["-addr".into(), format!("127.0.0.1:{back}"), "-workers".into(), format!("127.0.0.1:{grpc}")];
    let backend = spawn_demo(&dir, "backend", &backend_args, back);
    let n = targets.len() as f64;
    wait_instrumented(mport, n, &log);
    wait_go_instrumented(mport, n, &log);
    GrpcSetup { receiver, log, back, mport, wstats, _procs: vec![agent, worker, backend] }
}

/// Trace ids of requests that come in with a `traceparent`, and the parent span id they name.
const INCOMING: [&str; 2] = ["4bf92f3577b34da6a3ce929d0e0e4736", "0af7651916cd43dd8448eb211c80319c"];
const INCOMING_PARENT: &str = "00f067aa0ba902b7";

/// `GET /factorial/5` on the backend `plain` times without a traceparent, then once per
/// [`INCOMING`] trace with one.
fn factorials(back: u16, plain: usize) {
    for _ in 0..plain {
        assert_eq!(get(back, "/factorial/5", None), "120\n");
    }
    for t in INCOMING {
        assert_eq!(get(back, "/factorial/5", Some(&format!("00-{t}-{INCOMING_PARENT}-01"))), "120\n");
    }
}

/// An instrumented backend's gRPC calls to an untraced worker: each carries one `traceparent`
/// naming the client span the agent exported, in the trace of the request it serves.
fn grpc_propagation(go: &str) {
    let GrpcSetup { receiver, log, back, mport, wstats, _procs } = grpc_setup(go, None);
    let (lockdown, can_write) = lockdown_of(&log);
    factorials(back, 5);
    let received = demo_group(&demo_stats(wstats), "traceparent");
    assert_eq!(received.values().sum::<u64>(), 7, "one call per request: {received:?}");

    let (_, client_ids) = calls_under_requests(&receiver, &log, 7);
    let rpc = receiver.spans().into_iter().filter(|g| g.span.kind == 3 && g.span.name.contains("Multiply")).count();
    assert_eq!(rpc, 7, "the client spans are the gRPC calls");

    let text = agent_log(&log);
    if !can_write {
        assert!(
            text.contains(&format!("ebpf.context_propagation: headers is unavailable: kernel lockdown={lockdown}")),
            "{text}"
        );
        assert_eq!(received.get("none"), Some(&7), "metadata written under lockdown: {received:?}");
        return;
    }
    // Every call carried exactly one traceparent, the one of the client span exported.
    let seen: Vec<String> = received
        .iter()
        .map(|(k, n)| {
            assert_eq!(*n, 1, "{k} on {n} calls: {received:?}");
            k.clone()
        })
        .collect();
    assert_written(seen, client_ids, mport, &log);
}

#[test]
fn root_go_propagation_grpc_go119() {
    grpc_propagation("go1.19");
}

#[test]
fn root_go_propagation_grpc_go123() {
    grpc_propagation("go1.23");
}

/// A gRPC server honours the `traceparent` of the calls it serves: an instrumented worker's
/// HTTP call, made while serving a call from the instrumented backend, carries the trace id of
/// the backend's request (its own incoming one, or the one its probes made up).
fn grpc_server_propagation(go: &str) {
    let (down, heads) = recording_server();
    let url = format!("http://127.0.0.1:{down}/ping");
    let GrpcSetup { receiver, log, back, mport, wstats, _procs } = grpc_setup(go, Some(&url));
    let (_, can_write) = lockdown_of(&log);
    factorials(back, 3);
    let received = demo_group(&demo_stats(wstats), "traceparent");
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 5, "one worker call per request: {heads:?}");
    let written: Vec<Vec<String>> = heads.iter().map(|h| traceparents(h)).collect();
    if !can_write {
        assert_eq!(received.get("none"), Some(&5), "metadata written under lockdown: {received:?}");
        assert!(written.iter().all(Vec::is_empty), "a header was written under lockdown: {heads:?}");
        return;
    }
    // The trace ids the worker got over gRPC are the ones its HTTP calls passed on.
    let trace_of = |tp: &str| tp.split('-').nth(1).unwrap_or_default().to_string();
    let mut grpc_traces: Vec<String> = received.keys().map(|k| trace_of(k)).collect();
    let mut http_traces: Vec<String> = written
        .iter()
        .map(|w| {
            assert_eq!(w.len(), 1, "one traceparent per request: {heads:?}");
            trace_of(&w[0])
        })
        .collect();
    grpc_traces.sort();
    http_traces.sort();
    assert_eq!(grpc_traces.len(), 5, "{received:?}");
    assert_eq!(http_traces, grpc_traces, "worker: traces in vs traces out");
    for t in INCOMING {
        assert!(http_traces.iter().any(|h| h == t), "trace {t} not passed through the worker: {http_traces:?}");
    }
    // And the agent's spans agree: each HTTP call's header names the worker's client span.
    let got = wait_for(Duration::from_secs(30), || {
        let spans = receiver.spans();
        written.iter().all(|w| {
            spans.iter().any(|g| {
                g.span.kind == 3 && format!("00-{}-{}-01", hex(&g.span.trace_id), hex(&g.span.span_id)) == w[0]
            })
        })
    });
    assert!(got, "no exported client span for some header: {written:?}\n{}", agent_log(&log));
    let mismatches = sum(&scrape(mport, "/internal/metrics"), "beyla_propagated_trace_mismatches_total", &[]);
    assert_eq!(mismatches, 0.0, "beyla_propagated_trace_mismatches_total");
}

#[test]
fn root_go_propagation_grpc_server_go119() {
    grpc_server_propagation("go1.19");
}

/// net/http's HTTP/2 client: an instrumented go-http calls, on `/call`, an untraced go-http
/// serving HTTPS with h2, which logs the `traceparent` of every `/ping`. Each call is the
/// child of the request it serves (announced by the Go probes: nothing else links a Go
/// HTTP/2 call to its goroutine), and where the kernel allows writing, its traceparent names
/// the exported client span, passing on an incoming trace.
fn h2_client_propagation(go: &str) {
    require_root();
    let launcher = go_launcher(go);
    let receiver = Receiver::start(Proto::Grpc, free_port());
    let (down, front, mport) = (free_port(), free_port(), free_port());
    let tp_log = std::env::temp_dir().join(format!("beyla-h2-traceparents-{go}-{}", std::process::id()));
    let _ = std::fs::remove_file(&tp_log);
    let yaml = agent_yaml(&[(front, "cp-front")], mport, &receiver);
    let (_agent, log) = start_agent(&yaml, &[], &format!("h2-propagation-{go}"));
    let _down = start_launcher(
        &launcher,
        "go-http",
        down,
        &[("GO_HTTP_TLS", "h2"), ("GO_HTTP_TRACEPARENT_LOG", tp_log.to_str().unwrap())],
    );
    let url = format!("https://127.0.0.1:{down}/ping");
    let _front = start_launcher(&launcher, "go-http", front, &[("DOWNSTREAM_URL", &url), ("GO_HTTP_CLIENT_H2", "1")]);
    wait_instrumented(mport, 1.0, &log);
    wait_go_instrumented(mport, 1.0, &log);
    let (_, can_write) = lockdown_of(&log);

    for _ in 0..3 {
        assert_eq!(call(front, None), "called:200");
    }
    for t in INCOMING {
        assert_eq!(call(front, Some(&format!("00-{t}-{INCOMING_PARENT}-01"))), "called:200");
    }
    let lines: Vec<String> =
        std::fs::read_to_string(&tp_log).expect("traceparent log").lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 5, "{lines:?}");

    let (_, client_ids) = calls_under_requests(&receiver, &log, 5);
    if !can_write {
        assert!(lines.iter().all(String::is_empty), "a header was written under lockdown: {lines:?}");
        return;
    }
    assert_written(lines, client_ids, mport, &log);
}

#[test]
fn root_go_propagation_h2_client_go119() {
    h2_client_propagation("go1.19");
}

#[test]
fn root_go_propagation_h2_client_go123() {
    h2_client_propagation("go1.23");
}
