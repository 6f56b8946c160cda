//! golang.org/x/net/http2's server (h2c: HTTP/2 over cleartext, prior knowledge) under the
//! agent on the real kernel (needs root; `bash testapps/build.sh` builds `go-h2c`): every
//! request is counted by route and status, and every server span is timed by the Go probe on
//! x/net's `(*serverConn).runHandler`, with an `in queue` and a `processing` child. Without
//! that probe the requests are still counted, with no children.
mod common;

use std::process::Command;
use std::time::Duration;

use common::otlp::{phases, res_attr, Proto, Receiver};
use common::*;

/// `<status>` of a GET over h2c with prior knowledge, checking curl spoke HTTP/2.
fn curl_h2c(port: u16, path: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "--http2-prior-knowledge",
            "-w",
            "%{http_code} %{http_version}",
            "--max-time",
            "10",
        ])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("running curl");
    let got = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, version) = got.split_once(' ').unwrap_or_else(|| panic!("curl printed {got:?}"));
    assert_eq!(version, "2", "not HTTP/2: {got}");
    status.to_string()
}

#[test]
fn root_go_h2c_server_phases() {
    require_root();
    let launcher = repo().join("testapps/build/run-go-h2c");
    assert!(launcher.exists(), "{} missing: run testapps/build.sh", launcher.display());
    let receiver = Receiver::start(Proto::Grpc, free_port());
    let (port, mport) = (free_port(), free_port());
    let yaml = format!(
        "discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n  instrument:\n\
         \x20   - {{ open_ports: \"{port}\", name: h2c }}\n\
         prometheus_export:\n  port: {mport}\n\
         otel_traces_export:\n  endpoint: {ep}\n  protocol: grpc\n  batch_timeout: 200ms\n\
         routes:\n  unmatched: heuristic\n",
        ep = receiver.endpoint(),
    );
    let (_agent, log) = start_agent(&yaml, &[], "h2c");
    let _app = start_launcher(&launcher, "go-h2c", port, &[]);
    wait_instrumented(mport, 1.0, &log);
    wait_go_instrumented(mport, 1.0, &log);
    assert!(agent_log(&log).contains("probes="), "no Go probes attached to go-h2c:\n{}", agent_log(&log));

    for i in 0..6 {
        assert_eq!(curl_h2c(port, &format!("/users/{i}")), "200");
    }
    for _ in 0..2 {
        assert_eq!(curl_h2c(port, "/error"), "500");
    }

    let server = |m: &[Sample], route: &str, status: &str| {
        let l = [("service_name", "h2c"), ("http_route", route), ("http_response_status_code", status)];
        sum(m, "http_server_request_duration_seconds_count", &l) as u64
    };
    let done = wait_for(Duration::from_secs(30), || {
        sum(&scrape(mport, "/metrics"), "http_server_request_duration_seconds_count", &[]) >= 8.0
    });
    std::thread::sleep(Duration::from_secs(1));
    let m = scrape(mport, "/metrics");
    let dump = || format!("{}\n--- agent log:\n{}", http_get(mport, "/metrics").unwrap_or_default(), agent_log(&log));
    assert!(done, "requests not all counted:\n{}", dump());
    assert_eq!(server(&m, "/users/*", "200"), 6, "{}", dump());
    assert_eq!(server(&m, "/error", "500"), 2, "{}", dump());
    assert_eq!(sum(&m, "http_server_request_duration_seconds_count", &[]), 8.0, "{}", dump());

    // Each server span has exactly an `in queue` and a `processing` child: the handler's
    // start came from the x/net runHandler probe (nothing else times HTTP/2 handlers here).
    let got = wait_for(Duration::from_secs(20), || receiver.spans().iter().filter(|g| g.span.kind == 1).count() >= 16);
    let all = receiver.spans();
    let servers: Vec<_> = all.iter().filter(|g| g.span.kind == 2).collect();
    assert!(got, "{} spans, {} server spans\n{}", all.len(), servers.len(), agent_log(&log));
    assert_eq!(servers.len(), 8);
    for s in servers {
        assert_eq!(res_attr(Some(&s.resource), "service.name").as_deref(), Some("h2c"));
        assert_eq!(phases(&all, s), ["in queue", "processing"], "{}", s.span.name);
    }
}
