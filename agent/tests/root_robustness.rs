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

/// BPF objects of a kind (`prog`, `link`, `map`) as bpftool lists them: id and name.
fn bpf_objects(kind: &str) -> Vec<(u64, String)> {
    let out = std::process::Command::new("bpftool").args(["-j", kind, "show"]).output().expect("running bpftool");
    assert!(out.status.success(), "bpftool {kind} show: {}", String::from_utf8_lossy(&out.stderr));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("bpftool's JSON");
    list.iter()
        .map(|o| (o["id"].as_u64().unwrap(), o["name"].as_str().or(o["type"].as_str()).unwrap_or("").to_string()))
        .collect()
}

/// The kretprobe events in tracefs an agent with this pid created (the kprobes family).
fn kretprobe_events_of(pid: u32) -> Vec<String> {
    let text = std::fs::read_to_string("/sys/kernel/tracing/kprobe_events").unwrap_or_default();
    text.lines().filter(|l| l.contains(&format!("kprobes/beyla_{pid}_"))).map(str::to_string).collect()
}

/// SIGKILL of the agent under load, then a restart: every request before, during and after
/// gets its reply; nothing the killed agent loaded stays in the kernel (programs, links and maps,
/// listed with bpftool; its kretprobe events in tracefs are removed by the next agent); and the
/// restarted agent measures again.
#[test]
fn root_sigkill_agent_leaves_app_serving() {
    require_root();
    let (app_port, metrics_port) = (free_port(), free_port());
    let _app = start_app("go", app_port, &[]);
    let before: Vec<_> = ["prog", "link", "map"].iter().map(|k| bpf_objects(k)).collect();
    let (mut agent, log) = start_agent(&yaml(app_port, metrics_port), &[], "kill");
    wait_instrumented(metrics_port, 1.0, &log);
    let killed_pid = agent.pid();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut ok = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let i = ok;
                let body = http_get(app_port, &format!("/users/{i}"));
                assert_eq!(body, Some(format!("{{\"id\":\"{i}\"}}")), "request {i} failed");
                ok += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            ok
        }
    });
    // What the agent holds is seen: its programs, and (kprobes family) its tracefs events.
    let left = |i: usize, kind: &str| -> Vec<(u64, String)> {
        let old: std::collections::HashSet<u64> = before[i].iter().map(|(id, _)| *id).collect();
        bpf_objects(kind).into_iter().filter(|(id, _)| !old.contains(id)).collect()
    };
    assert!(left(0, "prog").len() >= 5, "the agent's programs are not listed: {:?}", left(0, "prog"));
    let events = kretprobe_events_of(killed_pid);
    let kprobes = std::fs::read_to_string(&log).unwrap().contains("family=\"kprobes\"");
    assert_eq!(!events.is_empty(), kprobes, "kretprobe events {events:?}; log:\n{}", agent_log(&log));
    std::thread::sleep(Duration::from_millis(500));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(killed_pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    let _ = agent.child.wait();

    // The kernel frees what the agent held once its file descriptors are closed (after an RCU
    // grace period): nothing new since before it started may remain.
    let clean = wait_for(Duration::from_secs(15), || {
        ["prog", "link", "map"].iter().enumerate().all(|(i, k)| left(i, k).is_empty())
    });
    assert!(
        clean,
        "BPF objects left after SIGKILL: programs {:?}, links {:?}, maps {:?}",
        left(0, "prog"),
        left(1, "link"),
        left(2, "map")
    );

    // A new agent while the load goes on: it removes the killed one's tracefs events (kprobes
    // family; none on other families) and measures the requests from then on.
    let (_agent2, log2) = start_agent(&yaml(app_port, metrics_port), &[], "kill-restart");
    wait_instrumented(metrics_port, 1.0, &log2);
    assert_eq!(kretprobe_events_of(killed_pid), Vec::<String>::new(), "log:\n{}", agent_log(&log2));
    let measured = wait_for(Duration::from_secs(20), || {
        sum(&scrape(metrics_port, "/metrics"), "http_server_request_duration_seconds_count", &[]) >= 20.0
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let replies = client.join().expect("client thread panicked");
    assert!(measured, "the restarted agent measured nothing; log:\n{}", agent_log(&log2));
    assert!(replies > 100, "only {replies} replies");
    assert_eq!(http_get(app_port, "/ping").as_deref(), Some("pong"));
}
