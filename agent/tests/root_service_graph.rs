//! Span metrics and the service graph on the real kernel (needs root): a Node app calls a
//! Python app, both instrumented; the test itself is an uninstrumented caller. Every request
//! must be one edge with exact counts: node-http -> python-http paired from both ends, and
//! 127.0.0.1 -> node-http as a virtual node.
mod common;

use std::time::Duration;

use common::*;

#[test]
fn root_span_metrics_and_service_graph() {
    require_root();
    let (node_port, py_port, metrics_port) = (free_port(), free_port(), free_port());
    let _py = start_app("python", py_port, &[]);
    let downstream = format!("http://127.0.0.1:{py_port}/error");
    let _node = start_app("node", node_port, &[("DOWNSTREAM_URL", &downstream)]);
    let yaml = format!(
        "open_port: {node_port},{py_port}\n\
         prometheus_export:\n  port: {metrics_port}\n  features: [application, application_span, application_service_graph]\n\
         discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n\
         routes:\n  unmatched: heuristic\n"
    );
    let (_agent, log) = start_agent(&yaml, &[], "service-graph");
    wait_instrumented(metrics_port, 2.0, &log);

    const N: usize = 6;
    for _ in 0..N {
        // node answers 200 "called:500": the downstream's 500 fails the client span.
        assert_eq!(http_get(node_port, "/call").as_deref(), Some("called:500"));
    }
    assert_eq!(http_get(node_port, "/ping").as_deref(), Some("pong"));

    let total = "traces_service_graph_request_total";
    let edge = [("client", "node-http"), ("server", "python-http"), ("connection_type", "")];
    let caller = [("client", "127.0.0.1"), ("server", "node-http"), ("connection_type", "virtual_node")];
    // Lone sides wait 10 s (PAIR_WAIT) for a partner before they count.
    let done = wait_for(Duration::from_secs(30), || {
        let m = scrape(metrics_port, "/metrics");
        sum(&m, total, &edge) >= N as f64 && sum(&m, total, &caller) >= (N + 1) as f64
    });
    std::thread::sleep(Duration::from_secs(3));
    let m = scrape(metrics_port, "/metrics");
    let dump =
        || format!("{}\n--- agent log:\n{}", http_get(metrics_port, "/metrics").unwrap_or_default(), agent_log(&log));
    assert!(done, "edges missing:\n{}", dump());

    // Each request is one edge, counted once although both ends are instrumented.
    assert_eq!(sum(&m, total, &edge), N as f64, "{}", dump());
    assert_eq!(sum(&m, "traces_service_graph_request_failed_total", &edge), N as f64, "{}", dump());
    assert_eq!(sum(&m, "traces_service_graph_request_server_seconds_count", &edge), N as f64);
    assert_eq!(sum(&m, "traces_service_graph_request_client_seconds_count", &edge), N as f64);
    assert_eq!(sum(&m, total, &caller), (N + 1) as f64, "{}", dump());
    assert_eq!(sum(&m, "traces_service_graph_request_failed_total", &caller), 0.0);
    assert_eq!(sum(&m, "traces_service_graph_request_client_seconds_count", &caller), 0.0);
    assert_eq!(sum(&m, total, &[]), (2 * N + 1) as f64, "no other edge:\n{}", dump());
    assert_eq!(sum(&m, total, &[("source", "beyla")]), (2 * N + 1) as f64);

    // Span metrics: one series per service, span name, kind and status.
    let calls = "traces_spanmetrics_calls_total";
    let span = |svc: &str, name: &str, kind: &str, status: &str| {
        sum(&m, calls, &[("service", svc), ("span_name", name), ("span_kind", kind), ("status_code", status)])
    };
    assert_eq!(span("node-http", "GET /call", "SPAN_KIND_SERVER", "STATUS_CODE_UNSET"), N as f64, "{}", dump());
    assert_eq!(span("node-http", "GET /ping", "SPAN_KIND_SERVER", "STATUS_CODE_UNSET"), 1.0);
    assert_eq!(span("node-http", "GET /error", "SPAN_KIND_CLIENT", "STATUS_CODE_ERROR"), N as f64, "{}", dump());
    assert_eq!(span("python-http", "GET /error", "SPAN_KIND_SERVER", "STATUS_CODE_ERROR"), N as f64);
    assert_eq!(sum(&m, calls, &[]), (3 * N + 1) as f64, "{}", dump());
    assert_eq!(sum(&m, "traces_spanmetrics_latency_count", &[]), (3 * N + 1) as f64);
    // And the RED metrics are still there.
    assert_eq!(sum(&m, "http_server_request_duration_seconds_count", &[]), (2 * N + 1) as f64);
}
