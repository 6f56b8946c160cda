//! A real Prometheus server (Debian's `prometheus`) scrapes the agent, and PromQL through its
//! HTTP API returns the request count (needs root for the agent).
mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn root_prometheus_scrapes_agent() {
    require_root();
    let prom = std::path::Path::new("/usr/bin/prometheus");
    assert!(prom.exists(), "/usr/bin/prometheus missing: run scripts/setup.sh");
    let (app_port, metrics_port, prom_port) = (free_port(), free_port(), free_port());
    let _app = start_app("python", app_port, &[]);
    let yaml = format!(
        "open_port: {app_port}\nprometheus_export:\n  port: {metrics_port}\n\
         discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\nroutes:\n  unmatched: heuristic\n"
    );
    let (_agent, log) = start_agent(&yaml, &[], "prom");
    wait_instrumented(metrics_port, 1.0, &log);
    for _ in 0..7 {
        assert_eq!(http_get(app_port, "/ping").as_deref(), Some("pong"));
    }

    let dir = std::env::temp_dir().join(format!("beyla-prom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: beyla\n    \
             static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
        ),
    )
    .unwrap();
    let child = Command::new(prom)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting prometheus");
    let _prom = Proc { child, name: "prometheus".into() };

    let query =
        urlencode(r#"sum(http_server_request_duration_seconds_count{http_route="/ping",http_request_method="GET"})"#);
    let mut last = String::new();
    let ok = wait_for(Duration::from_secs(60), || {
        last = http_get(prom_port, &format!("/api/v1/query?query={query}")).unwrap_or_default();
        last.contains("\"7\"]")
    });
    assert!(ok, "PromQL did not return 7; last answer: {last}\nagent log:\n{}", agent_log(&log));
}

/// `attributes.select` on the real agent: every HTTP metric keeps its defaults minus
/// `server_*` (the broader entry, first), and the server duration also gets the path (the more
/// specific entry adds it), with the query cut, one series per path (needs root for the agent).
#[test]
fn root_attribute_selection() {
    require_root();
    let (app_port, metrics_port) = (free_port(), free_port());
    let _app = start_app("python", app_port, &[]);
    let yaml = format!(
        "open_port: {app_port}\nprometheus_export:\n  port: {metrics_port}\n\
         discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\nroutes:\n  unmatched: heuristic\n\
         attributes:\n  select:\n    http_*:\n      exclude: [\"server_*\"]\n    \
         http_server_request_duration_seconds:\n      include: [\"http.request.method\", \"url.path\"]\n"
    );
    let (_agent, log) = start_agent(&yaml, &[], "select");
    wait_instrumented(metrics_port, 1.0, &log);
    for path in ["/users/1?a=b", "/users/1", "/users/2", "/ping"] {
        assert!(http_get(app_port, path).is_some(), "GET {path}");
    }
    let dur = "http_server_request_duration_seconds_count";
    let want = [("/users/1", 2.0), ("/users/2", 1.0), ("/ping", 1.0)];
    let mut samples = Vec::new();
    let done = wait_for(Duration::from_secs(20), || {
        samples = scrape(metrics_port, "/metrics");
        want.iter().all(|(p, n)| sum(&samples, dur, &[("url_path", p)]) == *n)
    });
    let ours: Vec<_> = samples.iter().filter(|s| s.name.starts_with("http_server_")).collect();
    assert!(done, "{ours:#?}\n{}", agent_log(&log));
    let labels = |name: &str| -> Vec<Vec<String>> {
        let mut l: Vec<Vec<String>> =
            ours.iter().filter(|s| s.name == name).map(|s| s.labels.keys().cloned().collect()).collect();
        l.dedup();
        l
    };
    let base = ["instance", "job", "service_name", "service_namespace"];
    let defaults = ["http_request_method", "http_response_status_code", "http_route", "url_scheme"];
    let mut expected: Vec<String> = base.iter().chain(&defaults).chain(&["url_path"]).map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(labels(dur), vec![expected], "{ours:#?}");
    // Body sizes: the defaults without server_address/server_port, every request in one route.
    let size = "http_server_response_body_size_bytes_count";
    let mut expected: Vec<String> = base.iter().chain(&defaults).map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(labels(size), vec![expected], "{ours:#?}");
    assert_eq!(sum(&samples, size, &[("http_route", "/users/*")]), 3.0, "{ours:#?}");
}
