//! Discovery on the real kernel (needs root): processes started after the agent, children
//! forked by an instrumented process (traced by the kernel from their first instruction), exits,
//! and a clear error when the metrics port is taken.
mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const DUR: &str = "http_server_request_duration_seconds_count";

fn yaml(app_port: u16, metrics_port: u16, poll: &str) -> String {
    format!(
        "open_port: {app_port}\nprometheus_export:\n  port: {metrics_port}\n\
         discovery:\n  poll_interval: {poll}\n  min_process_age: 0s\n"
    )
}

fn instrumented(metrics_port: u16) -> f64 {
    sum(&scrape(metrics_port, "/internal/metrics"), "beyla_instrumented_processes", &[])
}

#[test]
fn root_app_started_after_agent_and_its_exit() {
    require_root();
    let (app_port, metrics_port) = (free_port(), free_port());
    let (_agent, log) = start_agent(&yaml(app_port, metrics_port, "200ms"), &[], "late");
    assert!(
        wait_for(Duration::from_secs(30), || http_get(metrics_port, "/internal/metrics").is_some()),
        "agent did not serve metrics"
    );
    assert_eq!(instrumented(metrics_port), 0.0);

    let app = start_app("node", app_port, &[]);
    wait_instrumented(metrics_port, 1.0, &log);
    for _ in 0..4 {
        assert_eq!(http_get(app_port, "/ping").as_deref(), Some("pong"));
    }
    assert!(
        wait_for(Duration::from_secs(10), || sum(&scrape(metrics_port, "/metrics"), DUR, &[]) == 4.0),
        "expected 4 requests; log:\n{}",
        agent_log(&log)
    );
    drop(app); // kills it
    assert!(
        wait_for(Duration::from_secs(10), || instrumented(metrics_port) == 0.0),
        "exited app still counted as instrumented; log:\n{}",
        agent_log(&log)
    );
}

/// The pre-fork app's workers outlive a SIGKILLed parent: kill them too.
struct KillOnDrop(Vec<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

#[test]
fn root_forked_workers_inherit_tracing() {
    require_root();
    let (app_port, metrics_port) = (free_port(), free_port());
    let script = repo().join("testapps/python-prefork/app.py");
    let mut child = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(app_port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the pre-fork app");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut start_workers = child.stdin.take().unwrap();
    let _parent = Proc { child, name: "prefork".into() };
    assert_eq!(lines.next().unwrap().unwrap(), format!("listening on {app_port}"));

    // A long poll interval: after the first scan, only the kernel's fork hook can trace the
    // workers the parent forks once told to.
    let (_agent, log) = start_agent(&yaml(app_port, metrics_port, "1h"), &[], "fork");
    wait_instrumented(metrics_port, 1.0, &log);
    // Only now, with the parent traced, do the workers fork.
    writeln!(start_workers, "fork").unwrap();
    let workers = lines.next().unwrap().unwrap();
    assert!(workers.starts_with("workers "), "{workers}");
    let _workers = KillOnDrop(workers.split_whitespace().skip(1).filter_map(|p| p.parse().ok()).collect());
    assert!(
        wait_for(Duration::from_secs(10), || instrumented(metrics_port) == 3.0),
        "workers not instrumented ({}); log:\n{}",
        instrumented(metrics_port),
        agent_log(&log)
    );
    for _ in 0..10 {
        assert_eq!(http_get(app_port, "/ping").as_deref(), Some("pong"));
    }
    assert!(
        wait_for(Duration::from_secs(10), || sum(&scrape(metrics_port, "/metrics"), DUR, &[("http_route", "/ping")])
            == 10.0),
        "expected 10 requests served by the workers:\n{}\nlog:\n{}",
        http_get(metrics_port, "/metrics").unwrap_or_default(),
        agent_log(&log)
    );
    // The workers report as the parent's service, each with its own instance.
    let m = scrape(metrics_port, "/metrics");
    let services: std::collections::BTreeSet<_> =
        m.iter().filter(|s| s.name == DUR).filter_map(|s| s.labels.get("service_name").cloned()).collect();
    assert_eq!(services.into_iter().collect::<Vec<_>>(), vec!["python-prefork".to_string()]);
}

#[test]
fn root_port_in_use_is_a_clear_error() {
    require_root();
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(agent_bin())
        .env("BEYLA_OPEN_PORT", "1")
        .env("BEYLA_PROMETHEUS_PORT", port.to_string())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("prometheus_export.port") && err.contains(&port.to_string()), "{err}");
}

/// `discovery.instrument` by executable glob and by port, with `exclude_instrument` winning,
/// and the process's own OTEL_SERVICE_NAME naming the service.
#[test]
fn root_selectors_exe_glob_exclude_and_service_name() {
    require_root();
    let (go_port, node_port, metrics_port) = (free_port(), free_port(), free_port());
    let _go = start_app(
        "go",
        go_port,
        &[("OTEL_SERVICE_NAME", "checkout"), ("OTEL_RESOURCE_ATTRIBUTES", "service.namespace=shop")],
    );
    let _node = start_app("node", node_port, &[]);
    let yaml = format!(
        "prometheus_export:\n  port: {metrics_port}\n\
         discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n\
         \x20 instrument:\n    - exe_path: \"*/go-http\"\n    - open_ports: {node_port}\n\
         \x20 exclude_instrument:\n    - open_ports: {node_port}\n"
    );
    let (_agent, log) = start_agent(&yaml, &[], "selectors");
    wait_instrumented(metrics_port, 1.0, &log);
    for _ in 0..3 {
        assert_eq!(http_get(go_port, "/ping").as_deref(), Some("pong"));
        assert_eq!(http_get(node_port, "/ping").as_deref(), Some("pong"));
    }
    assert!(
        wait_for(Duration::from_secs(10), || sum(&scrape(metrics_port, "/metrics"), DUR, &[]) >= 3.0),
        "go requests not measured; log:\n{}",
        agent_log(&log)
    );
    std::thread::sleep(Duration::from_millis(500));
    let m = scrape(metrics_port, "/metrics");
    assert_eq!(
        sum(&m, DUR, &[("service_name", "checkout"), ("service_namespace", "shop"), ("job", "shop/checkout")]),
        3.0
    );
    assert_eq!(sum(&m, DUR, &[]), 3.0, "the excluded node app was measured");
    assert_eq!(instrumented(metrics_port), 1.0, "{}", agent_log(&log));
}

/// A keep-alive connection opened, and used, before the agent started is measured: the socket
/// is found from the fd (or comes with the socket tracepoints), not from an accept the agent
/// saw. The app's thread was already blocked in read() when the probes attached: the
/// syscall-level families learn a buffer at syscall entry, so they miss the request that
/// completes that read (its reply counts as `missed_request`) and see every later one; the
/// socket family learns it when the read returns and sees all three.
#[test]
fn root_connection_opened_before_agent() {
    require_root();
    let (app_port, metrics_port) = (free_port(), free_port());
    let _app = start_app("rust", app_port, &[]);
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", app_port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let ping = |c: &mut std::net::TcpStream| {
        write!(c, "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(read_response(c), (200, b"pong".to_vec()));
    };
    ping(&mut conn);
    let (_agent, log) = start_agent(&yaml(app_port, metrics_port, "200ms"), &[], "before");
    wait_instrumented(metrics_port, 1.0, &log);
    let internal = scrape(metrics_port, "/internal/metrics");
    let socket_family = sum(&internal, "beyla_internal_build_info", &[("hook_family", "socket")]) == 1.0;
    let (measured, missed) = if socket_family { (3.0, 0.0) } else { (2.0, 1.0) };
    ping(&mut conn);
    ping(&mut conn);
    ping(&mut conn);
    assert!(
        wait_for(Duration::from_secs(10), || sum(&scrape(metrics_port, "/metrics"), DUR, &[("http_route", "/ping")])
            == measured),
        "expected {measured} of the 3 requests (socket family: {socket_family}):\n{}",
        http_get(metrics_port, "/metrics").unwrap_or_default()
    );
    std::thread::sleep(Duration::from_millis(300));
    let m = scrape(metrics_port, "/metrics");
    assert_eq!(sum(&m, DUR, &[("http_route", "/ping")]), measured);
    let internal = scrape(metrics_port, "/internal/metrics");
    assert_eq!(sum(&internal, "beyla_decode_errors_total", &[("reason", "missed_request")]), missed);
}

/// A traced process that execs another program keeps its pid but is a new process: its
/// requests before the exec count under the old service, those after under the new one, and
/// the new executable gets its own probes (Go's). The requests from before the exec may reach
/// enrich after discovery has seen the new program: they are the old program's by their time
/// (`attach::traced`'s `Execed`).
#[test]
fn root_exec_of_another_binary_is_a_new_process() {
    require_root();
    let (port, metrics_port) = (free_port(), free_port());
    let go = repo().join("testapps/build/go-http");
    assert!(go.exists(), "{} missing: run testapps/build.sh first", go.display());
    // As the kernel names it (/proc/<pid>/exe), without `agent/..`.
    let go = go.canonicalize().unwrap();
    let go = go.display();
    // Python serves two requests, then becomes the Go test app on the same port.
    let script = format!(
        "import http.server, os\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   n = 0\n\
         \x20   def do_GET(self):\n\
         \x20       self.send_response(200); self.send_header('Content-Length', '4'); self.end_headers()\n\
         \x20       self.wfile.write(b'pong'); H.n += 1\n\
         \x20   def log_message(self, *a): pass\n\
         s = http.server.HTTPServer(('127.0.0.1', {port}), H)\n\
         print('listening on {port}', flush=True)\n\
         while H.n < 2: s.handle_request()\n\
         s.server_close()\n\
         os.execv('{go}', ['{go}', '{port}'])\n"
    );
    let child = Command::new(python3()).args(["-c", &script]).stdout(Stdio::piped()).spawn().unwrap();
    let mut app = Proc { child, name: "python then go-http".into() };
    let pid = app.pid();
    let mut lines = BufReader::new(app.child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), format!("listening on {port}"));
    let (_agent, log) = start_agent(&yaml(port, metrics_port, "200ms"), &[], "exec");
    wait_pid_instrumented(pid, &log);
    for _ in 0..2 {
        assert_eq!(http_get(port, "/ping").as_deref(), Some("pong"));
    }
    // The Go app says it listens on the same stdout.
    assert_eq!(lines.next().unwrap().unwrap(), format!("listening on {port}"));
    let again = wait_for(Duration::from_secs(30), || {
        agent_log(&log).contains(&format!("Process instrumented. pid={pid} exe={go} "))
    });
    assert!(again, "the exec'd program was not instrumented afresh:\n{}", agent_log(&log));
    wait_go_instrumented(metrics_port, 1.0, &log);
    for _ in 0..3 {
        assert_eq!(http_get(port, "/ping").as_deref(), Some("pong"));
    }
    let m = || scrape(metrics_port, "/metrics");
    let done = wait_for(Duration::from_secs(15), || sum(&m(), DUR, &[]) >= 5.0);
    std::thread::sleep(Duration::from_millis(500));
    let dump =
        || format!("{}\n--- agent log:\n{}", http_get(metrics_port, "/metrics").unwrap_or_default(), agent_log(&log));
    assert!(done, "{}", dump());
    assert_eq!(sum(&m(), DUR, &[("service_name", "go-http")]), 3.0, "{}", dump());
    assert_eq!(sum(&m(), DUR, &[]), 5.0, "{}", dump());
    let internal = scrape(metrics_port, "/internal/metrics");
    assert_eq!(sum(&internal, "beyla_unattributed_requests_total", &[]), 0.0, "{}", dump());
}
