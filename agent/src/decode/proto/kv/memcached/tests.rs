//! Memcached as the capture sends it, through the tracker.
use super::*;
use crate::decode::testing::{ev, run};
use crate::decode::Decoded;
use Direction::{Recv, Send};

/// (role, operation name, db.query.text, error, start, end) of each operation.
fn ops(out: &Decoded) -> Vec<(Role, String, String, Option<String>, u64, u64)> {
    out.requests
        .iter()
        .map(|r| {
            let op = r.operation.as_ref().expect("a memcached operation");
            assert_eq!(r.attribute("db.system.name").map(|v| v.to_string()).as_deref(), Some("memcached"));
            let text = r.attribute("db.query.text").map(|v| v.to_string()).unwrap_or_default();
            (r.role, op.name.clone(), text, op.error.clone(), r.start_ns, r.end_ns)
        })
        .collect()
}

fn op(
    role: Role,
    name: &str,
    text: &str,
    err: Option<&str>,
    s: u64,
    e: u64,
) -> (Role, String, String, Option<String>, u64, u64) {
    (role, name.into(), text.into(), err.map(String::from), s, e)
}

#[test]
fn detects_command_lines() {
    assert_eq!(detect(Send, b"get foo\r\n"), Detect::Claim(Some(Role::Client)));
    assert_eq!(detect(Recv, b"set foo 0 0 3\r\nbar\r\n"), Detect::Claim(Some(Role::Server)));
    assert_eq!(detect(Send, b"get fo"), Detect::Unsure);
    assert_eq!(detect(Send, b"ge"), Detect::Unsure);
    assert_eq!(detect(Send, b"GET / HTTP/1.1\r\n"), Detect::No);
    assert_eq!(detect(Send, b"getaway now\r\n"), Detect::No);
    assert_eq!(detect(Send, b"set foo 0 0 notanumber\r\n"), Detect::No);
    assert_eq!(detect(Send, b"version\r\n"), Detect::No);
}

#[test]
fn retrieval_storage_and_counters() {
    let out = run(&[
        ev(1, Send, 10, b"set k 0 60 5\r\nhello\r\n"),
        ev(1, Recv, 20, b"STORED\r\n"),
        // A multi-key get: one operation; values cut across reads.
        ev(1, Send, 30, b"get k other k2\r\n"),
        ev(1, Recv, 40, b"VALUE k 0 5\r\nhel"),
        ev(1, Recv, 50, b"lo\r\nVALUE k2 3 2\r\nhi\r\nEND\r\n"),
        ev(1, Send, 60, b"incr n 5\r\n"),
        ev(1, Recv, 70, b"NOT_FOUND\r\n"),
        ev(1, Send, 80, b"delete k\r\nadd k 0 0 1 noreply\r\nx\r\ntouch k 10\r\n"),
        ev(1, Recv, 90, b"DELETED\r\nTOUCHED\r\n"),
        ev(1, Send, 100, b"bogus\r\n"),
    ]);
    assert_eq!(
        ops(&out),
        [
            op(Role::Client, "set", "set ?", None, 10, 20),
            op(Role::Client, "get", "get ? ? ?", None, 30, 50),
            op(Role::Client, "incr", "incr ?", None, 60, 70),
            // noreply: reported as it is written.
            op(Role::Client, "add", "add ?", None, 80, 80),
            op(Role::Client, "delete", "delete ?", None, 80, 90),
            op(Role::Client, "touch", "touch ?", None, 80, 90),
        ]
    );
    assert_eq!(out.requests[1].response_body_size, 13 + 7 + 14 + 4 + 5);
    // A line that is no command after the claim.
    assert_eq!(out.errors, [DecodeError::Desync]);
    assert!(!format!("{:?}", out.requests).contains("hello"));
}

#[test]
fn errors_and_the_server_side() {
    let out = run(&[
        ev(1, Recv, 10, b"get a\r\n"),
        ev(1, Send, 20, b"SERVER_ERROR out of memory\r\n"),
        ev(1, Recv, 30, b"stats\r\n"),
        ev(1, Send, 40, b"STAT pid 1\r\nSTAT uptime 5\r\nEND\r\n"),
        ev(1, Recv, 50, b"cas k 0 0 1 99\r\nz\r\n"),
        ev(1, Send, 60, b"EXISTS\r\n"),
    ]);
    assert_eq!(
        ops(&out),
        [
            op(Role::Server, "get", "get ?", Some("SERVER_ERROR"), 10, 20),
            op(Role::Server, "stats", "stats", None, 30, 40),
            op(Role::Server, "cas", "cas ?", None, 50, 60),
        ]
    );
}

#[test]
fn large_values_are_skipped_by_length() {
    let value = vec![b'v'; 500_000];
    let mut set = b"set big 0 0 500000\r\n".to_vec();
    set.extend_from_slice(&value);
    set.extend_from_slice(b"\r\n");
    let mut reply = b"VALUE big 0 500000\r\n".to_vec();
    reply.extend_from_slice(&value);
    reply.extend_from_slice(b"\r\nEND\r\n");
    // The value written in two writes, read in two reads.
    let out = run(&[
        ev(1, Send, 10, &set[..100_000]),
        ev(1, Send, 11, &set[100_000..]),
        ev(1, Recv, 20, b"STORED\r\n"),
        ev(1, Send, 30, b"get big\r\n"),
        ev(1, Recv, 40, &reply[..300_000]),
        ev(1, Recv, 50, &reply[300_000..]),
    ]);
    assert_eq!(ops(&out).len(), 2, "{:?}", out.errors);
    assert_eq!(out.requests[1].end_ns, 50);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
}
