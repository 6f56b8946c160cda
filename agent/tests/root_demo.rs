//! The demo system under the agent on the real kernel (needs root; `bash testapps/build.sh`
//! builds it): loadgen -> frontend (HTTP) -> backend (HTTP) -> 3 workers (gRPC over HTTP/2),
//! with random failures. Every count the agent reports must equal what the apps counted
//! themselves: HTTP routes and statuses, gRPC calls by status code on both ends, service graph
//! edges, and the spans received over OTLP.
mod common;

use std::collections::HashMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::otlp::{attr, res_attr, Proto, Receiver};
use common::*;
use serde_json::Value;

/// Requests of the main run; the other builds need fewer to show their offsets work (each
/// run takes ~100 s in the TCG guests of the VM matrix).
const FULL_RUN: u64 = 400;
const SHORT_RUN: u64 = 150;

/// Which build of the demo runs, and how the agent sees it.
#[derive(Clone, Copy, PartialEq)]
enum Variant {
    /// Debian's go1.19 build (testapps/build.sh), with DWARF: offsets from DWARF.
    Go119,
    /// The go1.23 build (testapps/build-go.sh 1.23): another runtime and struct layout. With
    /// `ebpf.context_propagation: headers`: where the kernel allows it (the VM kernels; not
    /// under this host's lockdown) every HTTP and gRPC call carries a `traceparent` the probes wrote,
    /// and the traces must come out the same as when this host links the hops alone.
    Go123,
    /// The go1.19 build with loadgen, frontend and worker stripped of their symbol table and
    /// DWARF: functions from .gopclntab, offsets from the agent's per-version table. The
    /// backend keeps its symbols: a GOPATH build records no grpc version, so a stripped
    /// backend's grpc offsets cannot be looked up and its gRPC calls would not be linked
    /// (documented in docs/architecture.md; `go_inspect` checks that it says so).
    Stripped,
    /// go1.19 with `discovery.skip_go_specific_tracers`: the generic probes alone.
    SkipGo,
}

/// The directory holding loadgen, frontend, backend and worker for `v`.
fn demo_dir(v: Variant) -> std::path::PathBuf {
    let built = |dir: &str, how: &str| {
        let d = repo().join(dir);
        assert!(d.join("worker").exists(), "{} missing: run {how} first", d.display());
        // Canonical, as /proc/<pid>/exe shows it (the exe_path selector matches that).
        d.canonicalize().unwrap()
    };
    match v {
        Variant::Go119 | Variant::SkipGo => built("testapps/build/demo", "testapps/build.sh"),
        Variant::Go123 => built("testapps/build/go1.23/demo", "testapps/build-go.sh 1.23"),
        Variant::Stripped => {
            let src = built("testapps/build/demo", "testapps/build.sh");
            let dir = std::env::temp_dir().join(format!("beyla-demo-stripped-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(src.join("backend"), dir.join("backend")).unwrap();
            for name in ["loadgen", "frontend", "worker"] {
                let st = Command::new("strip")
                    .arg("-o")
                    .arg(dir.join(name))
                    .arg(src.join(name))
                    .status()
                    .expect("running strip (binutils)");
                assert!(st.success(), "strip {name} failed");
                let out = Command::new("readelf").arg("-S").arg(dir.join(name)).output().expect("readelf");
                let sections = String::from_utf8_lossy(&out.stdout).into_owned();
                assert!(!sections.contains(".symtab") && !sections.contains(".debug_info"), "{name} not stripped");
            }
            dir.canonicalize().unwrap()
        }
    }
}

#[test]
fn root_demo_counts_match_the_apps() {
    demo(Variant::Go119);
}

/// The same through the Go probes of a go1.23 build (other offsets, e.g. `runtime.g.goid`).
#[test]
fn root_demo_go123() {
    demo(Variant::Go123);
}

/// Stripped binaries: functions from .gopclntab, struct offsets from the per-version table.
#[test]
fn root_demo_stripped_binaries() {
    demo(Variant::Stripped);
}

/// The generic probes alone (`discovery.skip_go_specific_tracers`) still count everything;
/// only the goroutine-aware trace links need the Go probes.
#[test]
fn root_demo_generic_path_with_skip_go_specific_tracers() {
    demo(Variant::SkipGo);
}

fn demo(variant: Variant) {
    require_root();
    let skip_go = variant == Variant::SkipGo;
    let requests = if variant == Variant::Go119 { FULL_RUN } else { SHORT_RUN };
    let dir = demo_dir(variant);
    let receiver = Receiver::start(Proto::Grpc, free_port());
    let (front, back, metrics_port) = (free_port(), free_port(), free_port());
    let workers: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let worker_list: Vec<String> = workers.iter().map(|(p, _)| format!("127.0.0.1:{p}")).collect();

    // The agent first: the backend dials its workers on its first request, after the agent
    // attached (HTTP/2 connections must be seen from their start).
    let ports: Vec<String> =
        std::iter::once(front).chain([back]).chain(workers.iter().map(|w| w.0)).map(|p| p.to_string()).collect();
    let loadgen_path = dir.join("loadgen");
    let yaml = format!(
        "discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n  skip_go_specific_tracers: {skip_go}\n  instrument:\n\
         \x20   - {{ open_ports: \"{front}\", name: frontend }}\n\
         \x20   - {{ open_ports: \"{back}\", name: backend }}\n\
         \x20   - {{ open_ports: \"{workers}\", name: worker }}\n\
         \x20   - {{ exe_path: \"{loadgen}\", name: loadgen }}\n\
         prometheus_export:\n  port: {metrics_port}\n  features: [application, application_span, application_service_graph]\n\
         otel_traces_export:\n  endpoint: {ep}\n  protocol: grpc\n  batch_timeout: 200ms\n\
         routes:\n  unmatched: heuristic\n\
         ebpf:\n  context_propagation: {propagation}\n",
        propagation = if variant == Variant::Go123 { "headers" } else { "disabled" },
        workers = ports[2..].join(","),
        loadgen = loadgen_path.display(),
        ep = receiver.endpoint(),
    );
    let (_agent, log) = start_agent(&yaml, &[], "demo");

    let mut apps = Vec::new();
    for (i, (grpc, stats_port)) in workers.iter().enumerate() {
        let mut args = vec![
            "-addr".into(),
            format!("127.0.0.1:{grpc}"),
            "-stats-addr".into(),
            format!("127.0.0.1:{stats_port}"),
            "-fail-rate".into(),
            "0.03".into(),
            "-seed".into(),
            format!("{}", 11 + i),
        ];
        if variant == Variant::Go123 {
            args.push("-record-traceparent".into());
        }
        apps.push(spawn_demo(&dir, "worker", &args, *grpc));
    }
    let backend_args = vec![
        "-addr".into(),
        format!("127.0.0.1:{back}"),
        "-workers".into(),
        worker_list.join(","),
        "-fail-rate".into(),
        "0.05".into(),
        "-seed".into(),
        "7".into(),
    ];
    apps.push(spawn_demo(&dir, "backend", &backend_args, back));
    let frontend_args =
        vec!["-addr".into(), format!("127.0.0.1:{front}"), "-backend".into(), format!("http://127.0.0.1:{back}")];
    apps.push(spawn_demo(&dir, "frontend", &frontend_args, front));

    let gate = std::env::temp_dir().join(format!("beyla-demo-gate-{}", std::process::id()));
    let _ = std::fs::remove_file(&gate);
    let loadgen = Command::new(&loadgen_path)
        .args(["-url", &format!("http://127.0.0.1:{front}"), "-n", &requests.to_string(), "-concurrency", "4"])
        .args(["-seed", "3", "-gate", gate.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting loadgen");
    let mut loadgen = Proc { child: loadgen, name: "loadgen".into() };
    // 3 workers, backend, frontend and loadgen.
    wait_instrumented(metrics_port, 6.0, &log);
    if skip_go {
        let go = sum(&scrape(metrics_port, "/internal/metrics"), "beyla_instrumented_go_processes", &[]);
        assert_eq!(go, 0.0, "Go probes attached despite skip_go_specific_tracers");
    } else {
        wait_go_instrumented(metrics_port, 6.0, &log);
    }
    std::fs::write(&gate, b"go").unwrap();
    let mut out = String::new();
    loadgen.child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(loadgen.child.wait().unwrap().success(), "loadgen failed: {out}");
    let _ = std::fs::remove_file(&gate);
    let summary: Value = serde_json::from_str(out.trim()).expect("loadgen JSON");
    assert_eq!(summary["sent"].as_u64(), Some(requests));
    let sent: HashMap<String, u64> =
        summary["by_status"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap())).collect();

    let fe = demo_stats(front);
    let be = demo_stats(back);
    let ws: Vec<Value> = workers.iter().map(|(_, s)| demo_stats(*s)).collect();
    let fanout = demo_group(&be, "fanout_calls");
    let fanout_total: u64 = fanout.values().sum();
    assert!(fanout.get("Internal").copied().unwrap_or(0) > 0, "no worker failure injected: {be}");
    assert!(sent.get("500").copied().unwrap_or(0) > 0, "no failure seen by loadgen: {summary}");

    let m_ok = || {
        let m = scrape(metrics_port, "/metrics");
        sum(&m, "rpc_server_call_duration_seconds_count", &[]) >= fanout_total as f64
            && sum(&m, "http_server_request_duration_seconds_count", &[("http_route", "/factorial/*")])
                >= 2.0 * requests as f64
    };
    let arrived = wait_for(Duration::from_secs(30), m_ok);
    std::thread::sleep(Duration::from_secs(3)); // late extras, if any, would show now
    let m = scrape(metrics_port, "/metrics");
    let dump = || {
        let get = |path| http_get(metrics_port, path).unwrap_or_default();
        format!("{}\n{}\n--- agent log:\n{}", get("/metrics"), get("/internal/metrics"), agent_log(&log))
    };
    assert!(arrived, "not everything arrived:\n{}", dump());

    // HTTP: per service, route and status, exactly the apps' own counts.
    let http = |svc: &str, status: &str| {
        sum(
            &m,
            "http_server_request_duration_seconds_count",
            &[("service_name", svc), ("http_route", "/factorial/*"), ("http_response_status_code", status)],
        ) as u64
    };
    for (status, n) in &sent {
        assert_eq!(http("frontend", status), *n, "frontend {status}:\n{}", dump());
    }
    for (status, n) in demo_group(&be, "factorial_requests") {
        assert_eq!(http("backend", &status), n, "backend {status}");
    }
    let client_calls =
        |svc: &str| sum(&m, "http_client_request_duration_seconds_count", &[("service_name", svc)]) as u64;
    assert_eq!(client_calls("loadgen"), requests, "{}", dump());
    let backend_calls: u64 = demo_group(&fe, "backend_calls").values().sum();
    assert_eq!(client_calls("frontend"), backend_calls, "{}", dump());

    // gRPC: codes by name in the apps, by number in the metrics.
    let code = |name: &str| match name {
        "OK" => "0",
        "Internal" => "13",
        other => panic!("unexpected gRPC code {other}"),
    };
    for (name, n) in &fanout {
        let c = [
            ("service_name", "backend"),
            ("rpc_grpc_status_code", code(name)),
            ("rpc_method", "/demo.Multiplier/Multiply"),
        ];
        assert_eq!(sum(&m, "rpc_client_call_duration_seconds_count", &c) as u64, *n, "backend -> {name}:\n{}", dump());
    }
    for ((grpc, _), w) in workers.iter().zip(&ws) {
        for (name, n) in demo_group(w, "multiply_calls") {
            let port = grpc.to_string();
            let c = [("service_name", "worker"), ("rpc_grpc_status_code", code(&name)), ("server_port", port.as_str())];
            assert_eq!(
                sum(&m, "rpc_server_call_duration_seconds_count", &c) as u64,
                n,
                "worker {grpc} {name}:\n{}",
                dump()
            );
        }
    }
    assert_eq!(sum(&m, "rpc_server_call_duration_seconds_count", &[]) as u64, fanout_total);
    if variant == Variant::Go123 {
        // Context propagation: every worker call carried one traceparent where the kernel
        // lets the probes write it, none under lockdown. (Its ids are checked against the
        // spans in root_go_propagation; here the trace checks below must hold with them.)
        let can_write = lockdown_of(&log).1;
        for ((grpc, _), w) in workers.iter().zip(&ws) {
            let tps = demo_group(w, "traceparent");
            let calls: u64 = demo_group(w, "multiply_calls").values().sum();
            let none = tps.get("none").copied().unwrap_or(0);
            assert_eq!(tps.values().sum::<u64>(), calls, "worker {grpc}: {tps:?}");
            assert_eq!(none, if can_write { 0 } else { calls }, "worker {grpc} calls without traceparent");
        }
    }

    // Service graph: one edge per request, both ends paired.
    let edge = |client: &str, server: &str| {
        let l = [("client", client), ("server", server), ("connection_type", "")];
        (
            sum(&m, "traces_service_graph_request_total", &l) as u64,
            sum(&m, "traces_service_graph_request_failed_total", &l) as u64,
        )
    };
    let failed = sent.get("500").copied().unwrap_or(0);
    assert_eq!(edge("loadgen", "frontend"), (requests, failed), "{}", dump());
    assert_eq!(edge("frontend", "backend"), (backend_calls, failed), "{}", dump());
    assert_eq!(edge("backend", "worker"), (fanout_total, fanout.get("Internal").copied().unwrap_or(0)), "{}", dump());

    // OTLP: every span present, named as Beyla names them.
    let want_spans = 2 * requests + 2 * backend_calls + 2 * fanout_total;
    let got = wait_for(Duration::from_secs(30), || receiver.count_spans(|s| s.kind != 1) as u64 >= want_spans + 5);
    std::thread::sleep(Duration::from_secs(1)); // late extras, if any, would show now
    let mut spans = receiver.spans();
    assert!(got, "{} of {want_spans} spans", spans.len());
    // OTLP delivery is at least once: an export the agent retried (it counts each failure)
    // may have reached the receiver before it failed. Only then do repeated span ids count once.
    let retried = sum(&scrape(metrics_port, "/internal/metrics"), "beyla_otel_trace_export_errors_total", &[]);
    if retried > 0.0 {
        let mut seen = std::collections::HashSet::new();
        let before = spans.len();
        spans.retain(|g| seen.insert(g.span.span_id.clone()));
        eprintln!("{retried} failed trace exports retried; {} repeated spans counted once", before - spans.len());
    }
    let count = |svc: &str, name: &str, kind: i32| {
        spans
            .iter()
            .filter(|g| {
                res_attr(Some(&g.resource), "service.name").as_deref() == Some(svc)
                    && g.span.name == name
                    && g.span.kind == kind
            })
            .count() as u64
    };
    let (server, client) = (2, 3);
    assert_eq!(count("frontend", "GET /factorial/*", server), requests);
    assert_eq!(count("backend", "GET /factorial/*", server), backend_calls);
    assert_eq!(count("worker", "/demo.Multiplier/Multiply", server), fanout_total);
    assert_eq!(count("backend", "/demo.Multiplier/Multiply", client), fanout_total);
    let log_tail = || format!("{retried} failed trace exports\n--- agent log:\n{}", agent_log(&log));
    assert_eq!(count("loadgen", "GET /factorial/*", client), requests, "{}", log_tail());
    assert_eq!(count("frontend", "GET /factorial/*", client), backend_calls, "{}", log_tail());
    let failed_rpc = spans
        .iter()
        .filter(|g| g.span.kind == server && attr(&g.span.attributes, "rpc.grpc.status_code").as_deref() == Some("13"))
        .count() as u64;
    assert_eq!(failed_rpc, fanout.get("Internal").copied().unwrap_or(0));
    // Plus this test's five `/stats` reads (frontend, backend, three workers).
    let stats_spans = spans.iter().filter(|g| g.span.name == "GET /stats").count() as u64;
    assert_eq!(stats_spans, 5);
    // The Go probes time each handler: every HTTP server span (frontend, backend, the five
    // /stats) and every gRPC server span of the workers gets `in queue` and `processing`
    // children; not the stripped workers' (a stripped GOPATH build records no grpc version,
    // so the grpc offsets are unknown and the gRPC handler probe is off).
    let internal = 1;
    let (phases, spans): (Vec<_>, Vec<_>) = spans.into_iter().partition(|g| g.span.kind == internal);
    if spans.len() as u64 != want_spans + stats_spans {
        // Tell an export sent twice (the same span ids) from requests decoded twice or
        // invented (new ids), by service, kind and name.
        let mut ids: HashMap<&[u8], u32> = HashMap::new();
        let mut by_kind: HashMap<(String, i32, &str), u64> = HashMap::new();
        for g in &spans {
            *ids.entry(&g.span.span_id).or_default() += 1;
            let s = res_attr(Some(&g.resource), "service.name").unwrap_or_default();
            *by_kind.entry((s, g.span.kind, g.span.name.as_str())).or_default() += 1;
        }
        let repeated = ids.values().filter(|&&n| n > 1).count();
        panic!(
            "{} spans, expected {} ({requests} requests, {backend_calls} backend calls, {fanout_total} worker \
             calls, {stats_spans} /stats); span ids sent more than once: {repeated}; by service, kind and name: \
             {by_kind:?}\n--- agent log:\n{}",
            spans.len(),
            want_spans + stats_spans,
            agent_log(&log)
        );
    }
    let grpc_servers = if variant == Variant::Stripped { 0 } else { fanout_total };
    let servers = requests + backend_calls + stats_spans + grpc_servers;
    assert_eq!(phases.len() as u64, if skip_go { 0 } else { 2 * servers });
    if skip_go {
        return;
    }

    // One trace per request, every span in it with the right parent: loadgen client ->
    // frontend server -> frontend client -> backend server -> backend client(s) -> worker
    // server(s). Across processes by the connection's two ends (all on this host); inside
    // the Go apps by goroutine (the Go probes), including the backend's fan-out goroutines.
    let svc = |g: &common::otlp::Got| res_attr(Some(&g.resource), "service.name").unwrap_or_default();
    let by_id: HashMap<Vec<u8>, &common::otlp::Got> = spans.iter().map(|g| (g.span.span_id.clone(), g)).collect();
    let expected_parent = |s: &str, kind: i32| match (s, kind) {
        ("loadgen", 3) => None,
        ("frontend", 2) => Some(("loadgen", 3)),
        ("frontend", 3) => Some(("frontend", 2)),
        ("backend", 2) => Some(("frontend", 3)),
        ("backend", 3) => Some(("backend", 2)),
        ("worker", 2) => Some(("backend", 3)),
        other => panic!("unexpected span {other:?}"),
    };
    let mut traces: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut bad = Vec::new();
    for g in spans.iter().filter(|g| g.span.name != "GET /stats") {
        let (s, kind) = (svc(g), g.span.kind);
        *traces.entry(g.span.trace_id.clone()).or_default() += 1;
        let parent = by_id.get(&g.span.parent_span_id);
        let ok = match (expected_parent(&s, kind), parent) {
            (None, _) => g.span.parent_span_id.is_empty(),
            (Some((ps, pk)), Some(p)) => svc(p) == ps && p.span.kind == pk && p.span.trace_id == g.span.trace_id,
            (Some(_), None) => false,
        };
        if !ok {
            bad.push(format!(
                "{s} kind {kind} {} parent {:?} ({} bytes) start {}",
                g.span.name,
                parent.map(|p| (svc(p), p.span.kind, p.span.name.clone())),
                g.span.parent_span_id.len(),
                g.span.start_time_unix_nano,
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} spans with a wrong parent, e.g. {:?}",
        bad.len(),
        want_spans,
        &bad[..bad.len().min(40)]
    );
    assert_eq!(traces.len() as u64, requests, "one trace per request");

    // Each phase child nests in its server span: `in queue` from the request's first byte
    // to the handler's start, `processing` from there to the response's last byte.
    for p in &phases {
        let parent =
            by_id.get(&p.span.parent_span_id).unwrap_or_else(|| panic!("{} without its server span", p.span.name));
        let (ps, pe) = (parent.span.start_time_unix_nano, parent.span.end_time_unix_nano);
        let (s0, s1) = (p.span.start_time_unix_nano, p.span.end_time_unix_nano);
        assert!(
            parent.span.kind == 2 && p.span.trace_id == parent.span.trace_id,
            "{} under {}",
            p.span.name,
            parent.span.name
        );
        assert!(ps <= s0 && s0 <= s1 && s1 <= pe, "{} [{s0}, {s1}] outside its server span [{ps}, {pe}]", p.span.name);
        match p.span.name.as_str() {
            "in queue" => assert_eq!(s0, ps, "the queue starts with the request"),
            "processing" => assert_eq!(s1, pe, "processing runs to the response's end"),
            other => panic!("unexpected internal span {other}"),
        }
    }
    let queued = |name: &str| phases.iter().filter(|p| p.span.name == name).count() as u64;
    assert_eq!((queued("in queue"), queued("processing")), (servers, servers));
    let grpc_phases = phases
        .iter()
        .filter(|p| by_id.get(&p.span.parent_span_id).is_some_and(|s| s.span.name == "/demo.Multiplier/Multiply"))
        .count() as u64;
    assert_eq!(grpc_phases, 2 * grpc_servers, "gRPC handlers timed");
}
