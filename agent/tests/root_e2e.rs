//! End-to-end on the real kernel (needs root): the agent instruments each language's test app
//! through the tracepoint hook family; a known mix of requests must show up on `/metrics`
//! with exact counts.
mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::*;

const DUR: &str = "http_server_request_duration_seconds_count";

fn config(app_port: u16, metrics_port: u16) -> String {
    format!(
        "open_port: {app_port}\n\
         prometheus_export:\n  port: {metrics_port}\n\
         discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n\
         routes:\n  patterns: [/echo]\n  unmatched: heuristic\n\
         log_level: debug\n"
    )
}

/// The request mix every app gets. Returns nothing; counts are asserted from the scrape.
fn send_mix(port: u16) {
    // Three requests on one keep-alive connection.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for _ in 0..3 {
        write!(s, "GET /ping HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").unwrap();
        let (status, body) = read_response(&mut s);
        assert_eq!((status, body.as_slice()), (200, &b"pong"[..]));
    }
    drop(s);
    // Two more, one connection each.
    for _ in 0..2 {
        assert_eq!(http_get(port, "/ping").as_deref(), Some("pong"));
    }
    assert_eq!(http_get(port, "/users/42").as_deref(), Some("{\"id\":\"42\"}"));
    assert_eq!(http_get(port, "/users/1234").as_deref(), Some("{\"id\":\"1234\"}"));
    assert_eq!(http_get(port, "/error").as_deref(), Some("boom"));
    assert_eq!(http_get(port, "/nope").as_deref(), Some("not found"));
    // A POST whose head and 1000-byte body arrive in four writes.
    let body = vec![b'x'; 1000];
    let head =
        format!("POST /echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n");
    let (h1, h2) = head.as_bytes().split_at(10);
    let reply = send_raw(port, &[h1, h2, &body[..400], &body[400..]], Duration::from_millis(150));
    assert!(reply.ends_with(&body), "echo reply did not carry the body");
    // One request that makes the app call its downstream (client side).
    assert_eq!(http_get(port, "/call").as_deref(), Some("called:200"));
}

fn run_language(lang: &str, expected_service: &str) {
    run_language_with(lang, expected_service, &[]);
}

fn run_language_with(lang: &str, expected_service: &str, agent_env: &[(&str, &str)]) {
    require_root();
    let (down_port, app_port, metrics_port) = (free_port(), free_port(), free_port());
    // The downstream is a Python app on another port: it is not selected and must not appear.
    let _down = start_app("python", down_port, &[]);
    let downstream = format!("http://127.0.0.1:{down_port}/ping");
    let app = start_app(lang, app_port, &[("DOWNSTREAM_URL", &downstream)]);
    let (_agent, log) = start_agent(&config(app_port, metrics_port), agent_env, lang);
    wait_instrumented(metrics_port, 1.0, &log);

    send_mix(app_port);

    let svc = [("service_name", expected_service)];
    let total_expected = 11.0;
    let done = wait_for(Duration::from_secs(20), || sum(&scrape(metrics_port, "/metrics"), DUR, &[]) >= total_expected);
    // Give late (wrong) extra series a moment to show before asserting exact totals.
    std::thread::sleep(Duration::from_millis(500));
    let m = scrape(metrics_port, "/metrics");
    let dump =
        || format!("{}\n--- agent log:\n{}", http_get(metrics_port, "/metrics").unwrap_or_default(), agent_log(&log));
    assert!(done, "requests did not all arrive:\n{}", dump());

    let count = |method: &str, status: &str, route: &str| {
        sum(
            &m,
            DUR,
            &[svc[0], ("http_request_method", method), ("http_response_status_code", status), ("http_route", route)],
        )
    };
    assert_eq!(count("GET", "200", "/ping"), 5.0, "{}", dump());
    assert_eq!(count("GET", "200", "/users/*"), 2.0, "{}", dump());
    assert_eq!(count("GET", "500", "/error"), 1.0, "{}", dump());
    assert_eq!(count("GET", "404", "/nope"), 1.0, "{}", dump());
    assert_eq!(count("POST", "200", "/echo"), 1.0, "{}", dump());
    assert_eq!(count("GET", "200", "/call"), 1.0, "{}", dump());
    // Nothing else, and nothing from the unselected downstream.
    assert_eq!(sum(&m, DUR, &[]), total_expected, "{}", dump());
    assert_eq!(sum(&m, DUR, &[svc[0]]), total_expected, "{}", dump());

    // Body sizes: the 1000-byte POST lands in the (512, 1024] bucket, both ways.
    let post = [svc[0], ("http_request_method", "POST")];
    assert_eq!(sum(&m, "http_server_request_body_size_bytes_sum", &post), 1000.0, "{}", dump());
    assert_eq!(sum(&m, "http_server_response_body_size_bytes_sum", &post), 1000.0, "{}", dump());
    let bucket = |le: &str| sum(&m, "http_server_request_body_size_bytes_bucket", &[post[0], post[1], ("le", le)]);
    assert_eq!((bucket("512.0"), bucket("1024.0")), (0.0, 1.0), "{}", dump());
    // Durations are real and start at the first byte read: the POST spans the 450 ms of pauses
    // between its writes (300 ms after the head for the Go probes, which start at the handler),
    // less the time the server may take to wake up for a read on a loaded machine or a TCG
    // guest (with 30 ms pauses, up to 70 ms were lost there). A duration taken from the last read
    // would be near 0, well under the last 150 ms pause.
    assert!(sum(&m, "http_server_request_duration_seconds_sum", &post) >= 0.1, "{}", dump());

    // Client side: the app's call to its downstream.
    let port = down_port.to_string();
    let client =
        [svc[0], ("http_request_method", "GET"), ("http_response_status_code", "200"), ("server_port", port.as_str())];
    assert_eq!(sum(&m, "http_client_request_duration_seconds_count", &client), 1.0, "{}", dump());
    assert_eq!(sum(&m, "http_client_request_duration_seconds_count", &[]), 1.0, "{}", dump());

    // target_info names the service; the internal counters show no loss.
    assert_eq!(sum(&m, "target_info", &[svc[0], ("process_pid", &app.pid().to_string())]), 1.0, "{}", dump());
    let internal = scrape(metrics_port, "/internal/metrics");
    assert_eq!(sum(&internal, "beyla_ebpf_events_lost_total", &[]), 0.0);
    // A forced hook family (the VM matrix runs every family) is the one in use; with `auto`,
    // the best one the kernel probe found (a verifier rejecting it would fall back silently).
    let mode = std::env::var("BEYLA_EBPF_HOOK_MODE").ok().filter(|m| m != "auto").unwrap_or_else(|| {
        beyla::kernel::ensure_mounts().expect("mounting bpffs and tracefs");
        let f = beyla::kernel::probe();
        beyla::kernel::choose(&f, beyla::kernel::HookMode::Auto).expect("a hook family").family.to_string()
    });
    assert_eq!(sum(&internal, "beyla_internal_build_info", &[("hook_family", &mode)]), 1.0, "agent did not use {mode}");
    assert!(sum(&internal, "beyla_ebpf_events_read_total", &[("ringbuf", "sock_events")]) > 0.0);
}

#[test]
fn root_e2e_python() {
    run_language("python", "python-http");
}

#[test]
fn root_e2e_node() {
    run_language("node", "node-http");
}

#[test]
fn root_e2e_java() {
    run_language("java", "App");
}

#[test]
fn root_e2e_go() {
    run_language("go", "go-http");
}

#[test]
fn root_e2e_rust() {
    run_language("rust", "rust-http");
}

/// The other wake-up path: a ring-buffer wake-up per event (the default batches them).
#[test]
fn root_e2e_rust_wakeup_per_event() {
    run_language_with("rust", "rust-http", &[("BEYLA_BPF_WAKEUP_LEN", "0")]);
}
