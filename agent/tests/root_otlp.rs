//! OTLP export end to end on the real kernel (needs root): the five language test apps get a
//! known set of requests; a real OTLP receiver (gRPC or HTTP/protobuf) must receive exactly
//! one span per request with Beyla's names, kinds, attributes, status and parent links, and
//! the application histograms with exact counts. Then a collector outage: capture goes on,
//! drops are counted, export resumes.
mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::otlp::{attr, hex, res_attr, Got, Proto, Received, Receiver};
use common::*;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

/// An incoming trace context for the `/call` requests.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// (language, expected service name, whether its /call downstream request can be linked:
/// made on the thread that read the incoming request, or announced by the Go probes).
const APPS: [(&str, &str, bool); 5] = [
    ("python", "python-http", true),
    ("node", "node-http", true),
    ("java", "App", true),
    ("go", "go-http", true),
    ("rust", "rust-http", true),
];

/// gRPC is configured in YAML; HTTP/protobuf with the standard variables only (the shared
/// endpoint gets `/v1/traces` and `/v1/metrics` appended; headers are sent).
fn config(ports: &[u16], metrics_port: u16, receiver: &Receiver) -> (String, Vec<(&'static str, String)>) {
    let ports: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
    let mut yaml = format!(
        "open_port: {}\n\
         prometheus_export:\n  port: {metrics_port}\n\
         discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n\
         routes:\n  unmatched: heuristic\n",
        ports.join(","),
    );
    let ep = receiver.endpoint();
    match receiver.proto {
        Proto::Grpc => {
            yaml += &format!(
                "otel_traces_export:\n  endpoint: {ep}\n  protocol: grpc\n  batch_timeout: 200ms\n\
                 otel_metrics_export:\n  endpoint: {ep}\n  protocol: grpc\n  interval: 500ms\n"
            );
            (yaml, vec![("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=acme".into())])
        }
        Proto::Http | Proto::Https => {
            yaml += "otel_traces_export:\n  batch_timeout: 200ms\n";
            let env = vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", ep),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
                ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=acme".into()),
                ("OTEL_METRIC_EXPORT_INTERVAL", "500".into()),
            ];
            (yaml, env)
        }
    }
}

fn get_with_traceparent(port: u16, path: &str) -> String {
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\ntraceparent: 00-{TRACE}-{PARENT}-01\r\nConnection: close\r\n\r\n"
    );
    // No half-close: Node closes a half-closed connection before an asynchronous reply.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    std::io::Write::write_all(&mut s, head.as_bytes()).unwrap();
    let (status, body) = read_response(&mut s);
    format!("{status} {}", String::from_utf8_lossy(&body))
}

fn run(proto: Proto) {
    require_root();
    let receiver = Receiver::start(proto, free_port());
    let down_port = free_port();
    let _down = start_app("python", down_port, &[]);
    // A credential in the query: exported as REDACTED, never as itself.
    let downstream = format!("http://127.0.0.1:{down_port}/ping?user=ann&access_token=s3cr3t");
    let ports: Vec<u16> = APPS.iter().map(|_| free_port()).collect();
    let apps: Vec<Proc> = APPS
        .iter()
        .zip(&ports)
        .map(|((lang, _, _), p)| start_app(lang, *p, &[("DOWNSTREAM_URL", &downstream)]))
        .collect();
    let metrics_port = free_port();
    let tag = format!("otlp-{proto:?}");
    let (yaml, env) = config(&ports, metrics_port, &receiver);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (_agent, log) = start_agent(&yaml, &env, &tag);
    wait_instrumented(metrics_port, APPS.len() as f64, &log);
    // The Go probes add each Go server span's `in queue` and `processing` phases: wait for
    // them, or the count depends on whether the first requests beat the probes.
    wait_go_instrumented(metrics_port, 1.0, &log);

    for port in &ports {
        assert_eq!(http_get(*port, "/ping").as_deref(), Some("pong"));
        assert_eq!(http_get(*port, "/users/42").as_deref(), Some("{\"id\":\"42\"}"));
        assert_eq!(http_get(*port, "/error").as_deref(), Some("boom"));
        let reply = get_with_traceparent(*port, "/call");
        assert!(reply.ends_with("called:200"), "port {port}: {reply}");
    }
    // Four server spans and one client span per app, and two phases per Go server span.
    let spans_of = |lang: &str| if lang == "go" { 5 + 4 * 2 } else { 5 };
    let expected: usize = APPS.iter().map(|a| spans_of(a.0)).sum();
    let dump = |spans: &[Got]| {
        let lines: Vec<String> = spans
            .iter()
            .map(|g| {
                format!(
                    "{} {} kind={} trace={} span={} parent={}",
                    res_attr(Some(&g.resource), "service.name").unwrap_or_default(),
                    g.span.name,
                    g.span.kind,
                    hex(&g.span.trace_id),
                    hex(&g.span.span_id),
                    hex(&g.span.parent_span_id)
                )
            })
            .collect();
        format!("{}\n--- agent log:\n{}", lines.join("\n"), agent_log(&log))
    };
    let arrived = wait_for(Duration::from_secs(30), || receiver.spans().len() >= expected);
    std::thread::sleep(Duration::from_millis(700)); // late extras, if any, would show now
    let spans = receiver.spans();
    assert!(arrived, "{} of {expected} spans arrived:\n{}", spans.len(), dump(&spans));
    assert_eq!(spans.len(), expected, "{}", dump(&spans));
    let leaked: Vec<&Got> = spans.iter().filter(|g| format!("{:?}", g.span).contains("s3cr3t")).collect();
    assert!(leaked.is_empty(), "a credential was exported: {:?}", leaked.iter().map(|g| &g.span).collect::<Vec<_>>());
    assert!(!http_get(metrics_port, "/metrics").unwrap_or_default().contains("s3cr3t"));

    for ((lang, service, linked), app) in APPS.iter().zip(&apps) {
        let mine: Vec<&Got> =
            spans.iter().filter(|g| res_attr(Some(&g.resource), "service.name").as_deref() == Some(*service)).collect();
        assert_eq!(mine.len(), spans_of(lang), "{lang}:\n{}", dump(&spans));
        let res = &mine[0].resource;
        assert_eq!(res_attr(Some(res), "process.pid"), Some(app.pid().to_string()), "{lang}");
        assert_eq!(res_attr(Some(res), "telemetry.sdk.name").as_deref(), Some("beyla"));
        assert!(res_attr(Some(res), "host.name").is_some_and(|h| !h.is_empty()));
        assert!(res_attr(Some(res), "service.instance.id").is_some_and(|i| i.ends_with(&format!(":{}", app.pid()))));

        let by_name: HashMap<(String, i32), &Got> =
            mine.iter().map(|g| ((g.span.name.clone(), g.span.kind), *g)).collect();
        let server = |name: &str| {
            *by_name
                .get(&(name.to_string(), SpanKind::Server as i32))
                .unwrap_or_else(|| panic!("{lang}: no server span {name:?}:\n{}", dump(&spans)))
        };
        for (name, status, path) in [
            ("GET /ping", 200, "/ping"),
            ("GET /users/*", 200, "/users/42"),
            ("GET /error", 500, "/error"),
            ("GET /call", 200, "/call"),
        ] {
            let s = &server(name).span;
            let want: &[&str] = if *lang == "go" { &["in queue", "processing"] } else { &[] };
            assert_eq!(common::otlp::phases(&spans, server(name)), want, "{lang} {name}:\n{}", dump(&spans));
            let a = &s.attributes;
            assert_eq!(attr(a, "http.request.method").as_deref(), Some("GET"), "{lang} {name}");
            assert_eq!(attr(a, "http.response.status_code"), Some(status.to_string()), "{lang} {name}");
            assert_eq!(attr(a, "url.path").as_deref(), Some(path), "{lang} {name}");
            assert_eq!(
                attr(a, "server.port"),
                Some(ports[APPS.iter().position(|x| x.0 == *lang).unwrap()].to_string())
            );
            let code = s.status.as_ref().map(|st| st.code).unwrap_or_default();
            let want = if status >= 500 { StatusCode::Error } else { StatusCode::Unset };
            assert_eq!(code, want as i32, "{lang} {name}");
            assert!(s.end_time_unix_nano > s.start_time_unix_nano, "{lang} {name}");
            // Times are wall-clock: within the last 10 minutes.
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
            assert!(now - s.start_time_unix_nano < 600_000_000_000, "{lang} {name}: start {}", s.start_time_unix_nano);
        }
        // Requests without a traceparent start their own traces.
        assert!(server("GET /ping").span.parent_span_id.is_empty(), "{lang}");
        assert_ne!(hex(&server("GET /ping").span.trace_id), TRACE);
        // The incoming traceparent is honoured.
        let call = &server("GET /call").span;
        assert_eq!((hex(&call.trace_id), hex(&call.parent_span_id)), (TRACE.to_string(), PARENT.to_string()), "{lang}");
        // The app's own downstream call.
        let client: Vec<&&Got> = mine.iter().filter(|g| g.span.kind == SpanKind::Client as i32).collect();
        assert_eq!(client.len(), 1, "{lang}");
        let c = &client[0].span;
        let url = format!("http://127.0.0.1:{down_port}/ping?user=ann&access_token=REDACTED");
        assert_eq!(attr(&c.attributes, "url.full"), Some(url), "{lang}");
        assert_eq!(attr(&c.attributes, "http.response.status_code").as_deref(), Some("200"));
        if *linked {
            assert_eq!(hex(&c.trace_id), TRACE, "{lang}: client span not in the incoming trace:\n{}", dump(&spans));
            assert_eq!(c.parent_span_id, call.span_id, "{lang}: client span not the child of /call");
        }

        // Metrics: exact cumulative counts per route.
        let count = |name: &str, want: &[(&str, &str)]| receiver.histogram_count(service, name, want);
        let server_total = || count("http.server.request.duration", &[]);
        assert!(wait_for(Duration::from_secs(10), || server_total() == 4), "{lang}: {} server points", server_total());
        assert_eq!(count("http.server.request.duration", &[("http.route", "/users/*")]), 1, "{lang}");
        assert_eq!(count("http.server.request.duration", &[("http.response.status_code", "500")]), 1, "{lang}");
        assert_eq!(count("http.server.response.body.size", &[]), 4, "{lang}");
        assert_eq!(count("http.client.request.duration", &[("server.port", &down_port.to_string())]), 1, "{lang}");
    }
    let headers = receiver.received.lock().unwrap().headers.clone();
    assert!(headers.contains(&("x-tenant".to_string(), "acme".to_string())), "OTEL_EXPORTER_OTLP_HEADERS not sent");
    let internal = scrape(metrics_port, "/internal/metrics");
    assert_eq!(sum(&internal, "beyla_otel_trace_spans_exported_total", &[]), expected as f64);
    assert_eq!(sum(&internal, "beyla_otel_trace_spans_dropped_total", &[]), 0.0);
    assert_eq!(sum(&internal, "beyla_otel_trace_export_errors_total", &[]), 0.0);
    assert!(sum(&internal, "beyla_otel_metric_exports_total", &[]) >= 1.0);
}

#[test]
fn root_otlp_grpc() {
    run(Proto::Grpc);
}

#[test]
fn root_otlp_http_protobuf() {
    run(Proto::Http);
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The collector goes away under load and comes back: capture continues (Prometheus counts
/// every request), the queue drops the oldest spans and counts them, export resumes, memory
/// stays bounded.
#[test]
fn root_otlp_collector_outage() {
    require_root();
    let otlp_port = free_port();
    let log_of = std::sync::Arc::new(std::sync::Mutex::new(Received::default()));
    let mut receiver = Receiver::start_with(Proto::Http, otlp_port, log_of.clone());
    let app_port = free_port();
    let _app = start_app("rust", app_port, &[]);
    let metrics_port = free_port();
    let yaml = format!(
        "open_port: {app_port}\n\
         prometheus_export:\n  port: {metrics_port}\n\
         otel_traces_export:\n  endpoint: {ep}/v1/traces\n  protocol: http/protobuf\n  batch_timeout: 100ms\n  \
         max_queue_size: 200\n  max_export_batch_size: 100\n  export_timeout: 1s\n  backoff_max_interval: 500ms\n\
         discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n",
        ep = receiver.endpoint()
    );
    let (agent, log) = start_agent(&yaml, &[], "otlp-outage");
    wait_instrumented(metrics_port, 1.0, &log);
    let internal = || scrape(metrics_port, "/internal/metrics");
    let ping = |n: usize| {
        for _ in 0..n {
            assert_eq!(http_get(app_port, "/ping").as_deref(), Some("pong"));
        }
    };

    ping(50);
    assert!(wait_for(Duration::from_secs(10), || receiver.spans().len() == 50), "before: {}", receiver.spans().len());
    let rss_before = rss_kib(agent.pid());

    receiver.stop();
    ping(1000);
    let served = || sum(&scrape(metrics_port, "/metrics"), "http_server_request_duration_seconds_count", &[]);
    assert!(wait_for(Duration::from_secs(20), || served() == 1050.0), "capture stopped: {}", served());
    assert!(
        wait_for(Duration::from_secs(10), || sum(&internal(), "beyla_otel_trace_export_errors_total", &[]) >= 1.0),
        "no export error counted:\n{}",
        agent_log(&log)
    );
    // 1000 spans into a queue of 200: at least 800 dropped, oldest first.
    let dropped = || sum(&internal(), "beyla_otel_trace_spans_dropped_total", &[]);
    assert!(wait_for(Duration::from_secs(10), || dropped() >= 800.0), "dropped {}", dropped());
    let rss_during = rss_kib(agent.pid());

    let receiver = Receiver::start_with(Proto::Http, otlp_port, log_of);
    let exported_before = sum(&internal(), "beyla_otel_trace_spans_exported_total", &[]);
    ping(20);
    let delivered = || receiver.spans().len();
    // Every span is either delivered (the held ones and the 20 new) or counted as dropped.
    let accounted = || delivered() + dropped() as usize;
    assert!(
        wait_for(Duration::from_secs(20), || accounted() >= 1070),
        "delivered {} dropped {}",
        delivered(),
        dropped()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(accounted(), 1070, "delivered {} dropped {}", delivered(), dropped());
    let dropped = dropped() as usize;
    assert!(sum(&internal(), "beyla_otel_trace_spans_exported_total", &[]) > exported_before, "export did not resume");
    assert!(delivered() >= 50 + 20, "the spans held during the outage and the new ones: {}", delivered());
    let spans = receiver.spans();
    let last_trace_ids: std::collections::HashSet<Vec<u8>> = spans.iter().map(|g| g.span.trace_id.clone()).collect();
    assert_eq!(last_trace_ids.len(), spans.len(), "a span was delivered twice");
    let rss_after = rss_kib(agent.pid());
    println!(
        "agent RSS: {rss_before} KiB before the outage, {rss_during} KiB during (1000 requests, queue 200), \
         {rss_after} KiB after; dropped {dropped}, delivered {}",
        delivered()
    );
    assert!(rss_during < rss_before + 64 * 1024, "RSS grew from {rss_before} to {rss_during} KiB");
}

/// TLS: a collector with a self-signed certificate is refused (the failure is counted), unless
/// `insecure_skip_verify` is set; then spans arrive over HTTPS.
#[test]
fn root_otlp_https_and_insecure_skip_verify() {
    require_root();
    let receiver = Receiver::start(Proto::Https, free_port());
    let app_port = free_port();
    let _app = start_app("python", app_port, &[]);
    for (insecure, tag) in [(false, "otlp-tls-verify"), (true, "otlp-tls-insecure")] {
        let metrics_port = free_port();
        let yaml = format!(
            "open_port: {app_port}\n\
             prometheus_export:\n  port: {metrics_port}\n\
             otel_traces_export:\n  endpoint: {ep}/v1/traces\n  protocol: http/protobuf\n  batch_timeout: 100ms\n  \
             insecure_skip_verify: {insecure}\n  export_timeout: 2s\n\
             discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n",
            ep = receiver.endpoint()
        );
        let (agent, log) = start_agent(&yaml, &[], tag);
        wait_instrumented(metrics_port, 1.0, &log);
        let before = receiver.spans().len();
        for _ in 0..3 {
            assert_eq!(http_get(app_port, "/ping").as_deref(), Some("pong"));
        }
        let internal = || scrape(metrics_port, "/internal/metrics");
        if insecure {
            assert!(
                wait_for(Duration::from_secs(15), || receiver.spans().len() == before + 3),
                "{} spans over TLS:\n{}",
                receiver.spans().len() - before,
                agent_log(&log)
            );
            assert_eq!(sum(&internal(), "beyla_otel_trace_export_errors_total", &[]), 0.0);
        } else {
            let failed = wait_for(Duration::from_secs(15), || {
                sum(&internal(), "beyla_otel_trace_export_errors_total", &[]) >= 1.0
            });
            assert!(failed, "an untrusted certificate was accepted:\n{}", agent_log(&log));
            assert_eq!(receiver.spans().len(), before, "spans delivered despite the certificate");
            assert!(agent_log(&log).contains("OTLP trace export failed"), "{}", agent_log(&log));
        }
        drop(agent);
    }
}
