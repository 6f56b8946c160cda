//! HTTPS in Go through the Go probes on the real kernel (needs root; `bash testapps/build.sh`
//! and `bash testapps/build-go.sh 1.23` build the apps): two go-http instances serving HTTPS
//! (`GO_HTTP_TLS=1`), the first calling the second over HTTPS, and a third serving HTTP/2 over
//! TLS (`GO_HTTP_TLS=h2`, net/http's bundled h2 server) to curl. The crypto/tls probes give the
//! agent the plaintext: exact counts by route and status with `url_scheme="https"`, the client
//! calls, and one trace per `/call` across both. Without the Go probes the same traffic is
//! encrypted bytes: nothing is counted (so the probes, not the socket capture, are what work).
mod common;

use std::process::Command;
use std::time::Duration;

use common::otlp::{attr, phases, res_attr, Proto, Receiver};
use common::*;

/// `<status> <HTTP version>` of a GET over HTTPS (curl negotiates HTTP/2 when offered).
fn curl_https(port: u16, path: &str) -> String {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code} %{http_version}"])
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("running curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tls(go: &str, skip_go: bool) {
    require_root();
    let launcher = go_launcher(go);
    let receiver = Receiver::start(Proto::Grpc, free_port());
    let (a, b, h2, mport) = (free_port(), free_port(), free_port(), free_port());
    let yaml = format!(
        "discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n  skip_go_specific_tracers: {skip_go}\n  instrument:\n\
         \x20   - {{ open_ports: \"{a}\", name: tls-front }}\n\
         \x20   - {{ open_ports: \"{b}\", name: tls-back }}\n\
         \x20   - {{ open_ports: \"{h2}\", name: tls-h2 }}\n\
         prometheus_export:\n  port: {mport}\n\
         otel_traces_export:\n  endpoint: {ep}\n  protocol: grpc\n  batch_timeout: 200ms\n\
         routes:\n  unmatched: heuristic\n",
        ep = receiver.endpoint(),
    );
    let (_agent, log) = start_agent(&yaml, &[], &format!("tls-{go}-{skip_go}"));
    let _back = start_launcher(&launcher, "go-http", b, &[("GO_HTTP_TLS", "1")]);
    let down = format!("https://127.0.0.1:{b}/ping");
    let _front = start_launcher(&launcher, "go-http", a, &[("GO_HTTP_TLS", "1"), ("DOWNSTREAM_URL", &down)]);
    let _h2 = start_launcher(&launcher, "go-http", h2, &[("GO_HTTP_TLS", "h2")]);
    wait_instrumented(mport, 3.0, &log);
    if !skip_go {
        wait_go_instrumented(mport, 3.0, &log);
    }

    for i in 0..5 {
        assert_eq!(curl_https(a, &format!("/users/{i}")), "200 1.1");
    }
    for _ in 0..2 {
        assert_eq!(curl_https(a, "/error"), "500 1.1");
    }
    for _ in 0..3 {
        assert_eq!(curl_https(a, "/call"), "200 1.1");
    }
    for i in 0..4 {
        assert_eq!(curl_https(h2, &format!("/users/{i}")), "200 2");
    }

    let server = |m: &[Sample], svc: &str, route: &str, status: &str| {
        let l = [
            ("service_name", svc),
            ("http_route", route),
            ("http_response_status_code", status),
            ("url_scheme", "https"),
        ];
        sum(m, "http_server_request_duration_seconds_count", &l) as u64
    };
    if skip_go {
        // Give the agent the time the probed run needs, then check it decoded nothing.
        std::thread::sleep(Duration::from_secs(3));
        let m = scrape(mport, "/metrics");
        assert_eq!(
            sum(&m, "http_server_request_duration_seconds_count", &[]),
            0.0,
            "TLS decoded without the Go probes?"
        );
        let not_http = sum(&scrape(mport, "/internal/metrics"), "beyla_decode_errors_total", &[("reason", "not_http")]);
        assert!(not_http >= 1.0, "the encrypted connections should count as not HTTP");
        return;
    }
    let done = wait_for(Duration::from_secs(30), || {
        let m = scrape(mport, "/metrics");
        sum(&m, "http_server_request_duration_seconds_count", &[]) >= 17.0
            && sum(&m, "http_client_request_duration_seconds_count", &[]) >= 3.0
    });
    std::thread::sleep(Duration::from_secs(1));
    let m = scrape(mport, "/metrics");
    let dump = || format!("{}\n--- agent log:\n{}", http_get(mport, "/metrics").unwrap_or_default(), agent_log(&log));
    assert!(done, "requests not all counted:\n{}", dump());
    assert_eq!(server(&m, "tls-front", "/users/*", "200"), 5, "{}", dump());
    assert_eq!(server(&m, "tls-front", "/error", "500"), 2, "{}", dump());
    assert_eq!(server(&m, "tls-front", "/call", "200"), 3, "{}", dump());
    assert_eq!(server(&m, "tls-back", "/ping", "200"), 3, "{}", dump());
    assert_eq!(server(&m, "tls-h2", "/users/*", "200"), 4, "HTTP/2 over TLS:\n{}", dump());
    assert_eq!(sum(&m, "http_server_request_duration_seconds_count", &[]), 17.0, "{}", dump());
    let client = [("service_name", "tls-front"), ("http_response_status_code", "200"), ("url_scheme", "https")];
    assert_eq!(sum(&m, "http_client_request_duration_seconds_count", &client), 3.0, "{}", dump());
    assert_eq!(sum(&m, "http_client_request_duration_seconds_count", &[]), 3.0, "{}", dump());

    // One trace per /call: front server -> front client -> back server.
    let got = wait_for(Duration::from_secs(20), || receiver.spans().iter().filter(|g| g.span.kind != 1).count() >= 20);
    let spans: Vec<_> = receiver.spans().into_iter().filter(|g| g.span.kind != 1).collect();
    assert!(got, "{} spans", spans.len());
    let svc = |g: &common::otlp::Got| res_attr(Some(&g.resource), "service.name").unwrap_or_default();
    let calls: Vec<_> = spans.iter().filter(|g| svc(g) == "tls-front" && g.span.name == "GET /call").collect();
    assert_eq!(calls.len(), 3);
    for call in calls {
        let client = spans
            .iter()
            .find(|g| g.span.kind == 3 && g.span.parent_span_id == call.span.span_id)
            .unwrap_or_else(|| panic!("no client span under a /call"));
        assert_eq!(client.span.trace_id, call.span.trace_id);
        assert_eq!(attr(&client.span.attributes, "url.full"), Some(down.clone()));
        let back = spans
            .iter()
            .find(|g| svc(g) == "tls-back" && g.span.parent_span_id == client.span.span_id)
            .unwrap_or_else(|| panic!("no tls-back server span under the call"));
        assert_eq!((back.span.trace_id.clone(), back.span.name.as_str()), (call.span.trace_id.clone(), "GET /ping"));
        assert_eq!(attr(&back.span.attributes, "url.scheme").as_deref(), Some("https"));
    }

    // Every handler is timed, HTTP/1.x (ServeHTTP) and HTTP/2 (net/http's bundled server,
    // runHandler): each of the 17 server spans has an `in queue` and a `processing` child.
    let all = receiver.spans();
    let servers: Vec<_> = spans.iter().filter(|g| g.span.kind == 2).collect();
    assert_eq!(servers.len(), 17);
    for s in servers {
        assert_eq!(phases(&all, s), ["in queue", "processing"], "{} {}", svc(s), s.span.name);
    }
}

#[test]
fn root_go_tls_go119() {
    tls("go1.19", false);
}

#[test]
fn root_go_tls_go123() {
    tls("go1.23", false);
}

#[test]
fn root_go_tls_without_go_probes_is_opaque() {
    tls("go1.19", true);
}

/// A Go HTTPS client (`testapps/go-stackgrow`) writes 64 keep-alive requests on one
/// connection, each from a new goroutine at another stack depth, so that for some of them the
/// stack grows at `crypto/tls.(*Conn).Write`'s stack check: `morestack` then runs the function
/// again from its entry. Probed at the entry, such a write was reported twice (67 entry hits
/// for 64 writes with go1.19): the request's bytes twice, taken for a request with a body.
/// Probed past the check, each request is seen once, with its own path and no body.
fn write_at_stack_growth(go: &str) {
    require_root();
    const N: usize = 64;
    let dir = match go {
        "go1.19" => repo().join("testapps/build"),
        other => repo().join(format!("testapps/build/{other}")),
    };
    let grow_bin = dir.join("go-stackgrow");
    assert!(grow_bin.exists(), "{} missing: run testapps/build.sh and testapps/build-go.sh 1.23", grow_bin.display());
    let receiver = Receiver::start(Proto::Grpc, free_port());
    let (client, server, mport) = (free_port(), free_port(), free_port());
    let yaml = format!(
        "discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n  instrument:\n\
         \x20   - {{ open_ports: \"{client}\", name: stackgrow }}\n\
         prometheus_export:\n  port: {mport}\n\
         otel_traces_export:\n  endpoint: {ep}\n  protocol: grpc\n  batch_timeout: 200ms\n",
        ep = receiver.endpoint(),
    );
    let (_agent, log) = start_agent(&yaml, &[], &format!("stackgrow-{go}"));
    // The server is not traced: only the client's view counts.
    let _server = start_launcher(&go_launcher(go), "go-http", server, &[("GO_HTTP_TLS", "1")]);
    let _client = start_launcher(&grow_bin, "go-stackgrow", client, &[]);
    wait_instrumented(mport, 1.0, &log);
    wait_go_instrumented(mport, 1.0, &log);

    let path = format!("/grow?n={N}&url=https://127.0.0.1:{server}");
    assert_eq!(http_get(client, &path).as_deref(), Some(format!("ok {N}").as_str()));

    let dump = || format!("{}\n--- agent log:\n{}", http_get(mport, "/metrics").unwrap_or_default(), agent_log(&log));
    let clients = |m: &[Sample]| sum(m, "http_client_request_duration_seconds_count", &[]);
    let done = wait_for(Duration::from_secs(30), || clients(&scrape(mport, "/metrics")) >= N as f64);
    std::thread::sleep(Duration::from_secs(2));
    let m = scrape(mport, "/metrics");
    assert!(done, "client requests not all counted:\n{}", dump());
    let https = [("url_scheme", "https"), ("http_response_status_code", "200")];
    assert_eq!(sum(&m, "http_client_request_duration_seconds_count", &https), N as f64, "{}", dump());
    assert_eq!(clients(&m), N as f64, "{}", dump());
    // The one connection's encrypted bytes, under the plaintext the probes give, are `not_http`
    // once; nothing else may fail to decode.
    let internal = scrape(mport, "/internal/metrics");
    let errors = sum(&internal, "beyla_decode_errors_total", &[]);
    let not_http = sum(&internal, "beyla_decode_errors_total", &[("reason", "not_http")]);
    assert_eq!((errors, not_http), (1.0, 1.0), "{}", http_get(mport, "/internal/metrics").unwrap_or_default());

    // Each request once, with its own path: a write seen twice shifts every later response.
    let got = wait_for(Duration::from_secs(20), || receiver.spans().iter().filter(|g| g.span.kind == 3).count() >= N);
    let spans: Vec<_> = receiver.spans().into_iter().filter(|g| g.span.kind == 3).collect();
    let mut urls: Vec<String> =
        spans.iter().map(|g| attr(&g.span.attributes, "url.full").unwrap_or_default()).collect();
    assert!(got, "{} client spans", urls.len());
    // The decoder took a request written twice as one request with a body (its own bytes).
    let bodies: Vec<String> =
        spans.iter().filter_map(|g| attr(&g.span.attributes, "http.request.body.size")).filter(|b| b != "0").collect();
    assert!(bodies.is_empty(), "GETs without a body reported with request bodies: {bodies:?}");
    urls.sort();
    let mut want: Vec<String> = (0..N).map(|i| format!("https://127.0.0.1:{server}/users/{i}")).collect();
    want.sort();
    assert_eq!(urls, want);
}

#[test]
fn root_go_tls_write_at_stack_growth_go119() {
    write_at_stack_growth("go1.19");
}

#[test]
fn root_go_tls_write_at_stack_growth_go123() {
    write_at_stack_growth("go1.23");
}
