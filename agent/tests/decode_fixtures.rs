//! Golden decode fixtures (no root): the socket events recorded from real servers by the
//! conformance tests (`agent/tests/fixtures/decode/<proto>/<case>.events`, see
//! `beyla::decode::fixture`) replayed through the decoder, whose requests, errors and trace
//! links must equal `<case>.expected`. A change in what the decoder makes of any of them shows
//! here, without a kernel.
//!
//! Regenerate the expected files after an intended change with `BEYLA_UPDATE_FIXTURES=1`
//! (and read the diff); record new fixtures with `BEYLA_RECORD_FIXTURES=<dir>` on a
//! conformance test (the agent writes one file per test there).
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use beyla::decode::{fixture, Decoded, Role, Tracker, TrackerLimits};
use beyla::events::RawEvent;

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/decode");
    let mut all = Vec::new();
    for proto in std::fs::read_dir(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display())).flatten() {
        for f in std::fs::read_dir(proto.path()).unwrap().flatten() {
            if f.path().extension().is_some_and(|e| e == "events") {
                all.push(f.path());
            }
        }
    }
    all.sort();
    all
}

/// What the decoder made of the events: one line per request (in the order reported), with
/// its parent as the index of another request of the fixture (`-` for none, `remote` for a
/// `traceparent` from outside), then the errors by reason.
fn summary(events: &[RawEvent]) -> String {
    let mut t = Tracker::new(TrackerLimits::default());
    let mut out = Decoded::default();
    for ev in events {
        match ev {
            RawEvent::Data(d) => t.on_data(d, &mut out),
            RawEvent::Close { pid, sock_id, .. } => t.on_close(*pid, *sock_id, &mut out),
            _ => {}
        }
    }
    let pids: Vec<u32> = {
        let mut p: Vec<u32> = out.requests.iter().map(|r| r.pid).collect();
        p.sort();
        p.dedup();
        p
    };
    for pid in &pids {
        t.on_exit(*pid, &mut out);
    }
    let index: HashMap<[u8; 8], usize> = out.requests.iter().enumerate().map(|(i, r)| (r.trace.span_id, i)).collect();
    let mut s = String::new();
    for (i, r) in out.requests.iter().enumerate() {
        let parent = if !r.trace.has_parent() {
            "-".to_string()
        } else {
            index.get(&r.trace.parent_span_id).map_or("remote".to_string(), |p| format!("#{p}"))
        };
        let process = pids.iter().position(|p| *p == r.pid).unwrap_or(0);
        let side = if r.role == Role::Server { "server" } else { "client" };
        let sizes = if r.body_sizes_unknown {
            "sizes unknown".to_string()
        } else {
            format!("req {} resp {}", r.request_body_size, r.response_body_size)
        };
        let grpc = r.grpc_status.map(|g| format!(" grpc {g}")).unwrap_or_default();
        let stream = if r.stream > 0 { format!(" stream {}", r.stream) } else { String::new() };
        let what = match &r.operation {
            Some(op) => {
                let attrs: Vec<String> = op.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let error = op.error.as_deref().map(|e| format!(" error {e}")).unwrap_or_default();
                format!("{} [{}]{error}", op.name, attrs.join(" "))
            }
            None => format!("{} {} {}", r.method, r.target, r.status),
        };
        let _ = writeln!(s, "#{i} p{process} {side} {what}{grpc}{stream} {sizes} parent {parent}");
    }
    let mut errors: HashMap<&str, usize> = HashMap::new();
    for e in &out.errors {
        *errors.entry(e.as_str()).or_default() += 1;
    }
    let mut errors: Vec<_> = errors.into_iter().collect();
    errors.sort();
    for (reason, n) in errors {
        let _ = writeln!(s, "error {reason} {n}");
    }
    let _ = writeln!(s, "unlinked calls {}", out.unlinked_calls);
    if out.unlinked_requests > 0 {
        let _ = writeln!(s, "unlinked requests {}", out.unlinked_requests);
    }
    s
}

#[test]
fn decode_fixtures_match_their_expected_output() {
    let all = fixtures();
    assert!(!all.is_empty(), "no fixtures found");
    let update = std::env::var_os("BEYLA_UPDATE_FIXTURES").is_some();
    let mut failed = Vec::new();
    for path in &all {
        let text = std::fs::read_to_string(path).unwrap();
        let events = fixture::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let got = summary(&events);
        let expected_path = path.with_extension("expected");
        if update {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e} (BEYLA_UPDATE_FIXTURES=1 writes it)", expected_path.display()));
        if got != want {
            failed.push(format!("{}:\n--- expected\n{want}--- got\n{got}", path.display()));
        }
    }
    assert!(failed.is_empty(), "{} of {} fixtures differ:\n{}", failed.len(), all.len(), failed.join("\n"));
}
