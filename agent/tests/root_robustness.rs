//! The traced app is never harmed and the agent survives bad traffic (needs root).
mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::*;

fn yaml(app_port: u16, metrics_port: u16) -> String {
    format!(
        "open_port: {app_port}\nprometheus_export:\n  port: {metrics_port}\n\
         discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n"
    )
}

/// TLS bytes, garbage, a 64 KiB header, a half-sent request and a connection closed
/// mid-response: each is counted by reason, the agent keeps running, the app keeps serving,
/// and a normal request afterwards is still measured.
#[test]
fn root_bad_traffic_is_counted_not_fatal() {
    require_root();
    let (app_port, metrics_port) = (free_port(), free_port());
    // Go's server is strict: it answers a half-sent request by closing, not by guessing.
    let _app = start_app("go", app_port, &[]);
    let (mut agent, log) = start_agent(&yaml(app_port, metrics_port), &[], "bad");
    wait_instrumented(metrics_port, 1.0, &log);

    // TLS ClientHello-like bytes and binary garbage.
    send_raw(app_port, &[b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"], Duration::ZERO);
    send_raw(app_port, &[&[0u8, 159, 146, 150, 255, 1, 2, 3]], Duration::ZERO);
    // A 64 KiB header.
    let mut big = b"GET /ping HTTP/1.1\r\nConnection: close\r\nX-Big: ".to_vec();
    big.extend(vec![b'a'; 64 * 1024]);
    big.extend(b"\r\n\r\n");
    send_raw(app_port, &[&big], Duration::ZERO);
    // Half a request, then close.
    {
        let mut s = TcpStream::connect(("127.0.0.1", app_port)).unwrap();
        s.write_all(b"GET /ping HTTP/1.1\r\nHos").unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    // A large echo we abandon: whichever side gives up first (the app may stop reading or
    // fail writing), the exchange ends mid-message.
    {
        let mut s = TcpStream::connect(("127.0.0.1", app_port)).unwrap();
        s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 8000000\r\n\r\n").unwrap();
        let _ = s.write_all(&vec![b'z'; 8_000_000]);
    }
    std::thread::sleep(Duration::from_millis(200));
    // The app still serves, and the agent still measures.
    assert_eq!(http_get(app_port, "/ping").as_deref(), Some("pong"));
    let ok = wait_for(Duration::from_secs(10), || {
        sum(
            &scrape(metrics_port, "/metrics"),
            "http_server_request_duration_seconds_count",
            &[("http_request_method", "GET")],
        ) >= 1.0
    });
    assert!(ok, "normal request after bad traffic not measured; log:\n{}", agent_log(&log));
    // The app may close the abandoned connections late (slow machines, TCG guests): wait.
    let errors = |reason: &str| {
        sum(&scrape(metrics_port, "/internal/metrics"), "beyla_decode_errors_total", &[("reason", reason)])
    };
    // The 64 KiB head is longer than the capture: its request still counts (Go answers 431).
    // The half-sent head, answered (400) before it completed, counts with what was read.
    let wanted = [("not_http", 2.0), ("headers_truncated", 2.0), ("closed_mid_message", 1.0)];
    let all = wait_for(Duration::from_secs(20), || wanted.iter().all(|(r, n)| errors(r) >= *n));
    let got: Vec<_> = wanted.iter().map(|(r, _)| (*r, errors(r))).collect();
    // The abandoned echo ends mid-message.
    assert!(all, "decode errors by reason {got:?}, wanted at least {wanted:?}; log:\n{}", agent_log(&log));
    assert!(agent.child.try_wait().unwrap().is_none(), "agent exited; log:\n{}", agent_log(&log));
}

/// SIGKILL of the agent mid-traffic: every request before, during and after gets its reply.
#[test]
fn root_sigkill_agent_leaves_app_serving() {
    require_root();
    let (app_port, metrics_port) = (free_port(), free_port());
    let _app = start_app("go", app_port, &[]);
    let (mut agent, log) = start_agent(&yaml(app_port, metrics_port), &[], "kill");
    wait_instrumented(metrics_port, 1.0, &log);

    let client = std::thread::spawn(move || {
        let mut ok = 0;
        for i in 0..300 {
            let body = http_get(app_port, &format!("/users/{i}"));
            assert_eq!(body, Some(format!("{{\"id\":\"{i}\"}}")), "request {i} failed");
            ok += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        ok
    });
    std::thread::sleep(Duration::from_millis(500));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(agent.pid() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    let _ = agent.child.wait();
    assert_eq!(client.join().expect("client thread panicked"), 300);
    assert_eq!(http_get(app_port, "/ping").as_deref(), Some("pong"));
}
