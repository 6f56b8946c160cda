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
