//! Redis as the capture sends it, through the tracker.
use super::*;
use crate::decode::testing::{ev, run};
use crate::decode::{Decoded, Request};
use Direction::{Recv, Send};

/// A command as clients write it.
fn cmd(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// (role, operation name, db.query.text, error, start, end) of each operation.
fn ops(out: &Decoded) -> Vec<(Role, String, String, Option<String>, u64, u64)> {
    out.requests
        .iter()
        .map(|r: &Request| {
            let op = r.operation.as_ref().expect("a redis operation");
            assert_eq!(r.attribute("db.system.name").map(|v| v.to_string()).as_deref(), Some("redis"));
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
fn detects_commands_not_replies_or_other_protocols() {
    let set = cmd(&["SET", "k", "v"]);
    assert_eq!(detect(Send, &set), Detect::Claim(Some(Role::Client)));
    assert_eq!(detect(Recv, &set), Detect::Claim(Some(Role::Server)));
    for cut in 1..set.len() - 1 {
        assert_ne!(detect(Send, &set[..cut]), Detect::No, "cut at {cut}");
    }
    assert_eq!(detect(Recv, b"+OK\r\n"), Detect::Unsure);
    assert_eq!(detect(Recv, b"*2\r\n:1\r\n:2\r\n"), Detect::Unsure);
    assert_eq!(detect(Send, b"GET / HTTP/1.1\r\n"), Detect::No);
    // Not a command, but an array could be a reply: asked again.
    assert_eq!(detect(Send, b"*1\r\n$4\r\nP NG\r\n"), Detect::Unsure);
    assert_eq!(detect(Send, b"hello\r\n"), Detect::No);
    assert_eq!(detect(Recv, b"SSH-2.0-OpenSSH_9.2\r\n"), Detect::No);
}

#[test]
fn pipelined_commands_each_get_their_own_reply() {
    let mut batch = cmd(&["SET", "a", "1"]);
    batch.extend(cmd(&["GET", "a"]));
    batch.extend(cmd(&["INCR", "a"]));
    batch.extend(cmd(&["LPUSH", "a", "x"]));
    let out = run(&[
        ev(1, Send, 10, &batch),
        // The replies cut at awkward places across reads.
        ev(1, Recv, 20, b"+OK\r\n$1\r"),
        ev(1, Recv, 30, b"\n1\r\n:2\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    ]);
    assert_eq!(
        ops(&out),
        [
            op(Role::Client, "SET", "SET ? ?", None, 10, 20),
            op(Role::Client, "GET", "GET ?", None, 10, 30),
            op(Role::Client, "INCR", "INCR ?", None, 10, 30),
            op(Role::Client, "LPUSH", "LPUSH ? ?", Some("WRONGTYPE"), 10, 30),
        ]
    );
    assert_eq!(
        out.requests[3].attribute("db.response.status_code").map(|v| v.to_string()).as_deref(),
        Some("WRONGTYPE")
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
}

#[test]
fn set_up_and_secrets_are_not_reported_nor_kept() {
    let mut setup = cmd(&["HELLO", "3", "AUTH", "default", "s3cret-pw"]);
    setup.extend(cmd(&["CLIENT", "SETINFO", "LIB-NAME", "redis-py"]));
    let out = run(&[
        ev(1, Send, 10, &cmd(&["AUTH", "s3cret-pw"])),
        ev(1, Recv, 20, b"+OK\r\n"),
        ev(1, Send, 30, &setup),
        // HELLO 3 answers with a map (RESP3), then CLIENT SETINFO with +OK.
        ev(1, Recv, 40, b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n+OK\r\n"),
        ev(1, Send, 50, &cmd(&["GET", "s3cret-pw"])),
        ev(1, Recv, 60, b"_\r\n"),
    ]);
    assert_eq!(ops(&out), [op(Role::Client, "GET", "GET ?", None, 50, 60)]);
    assert!(!format!("{:?}", out.requests).contains("s3cret"), "{:?}", out.requests);
}

#[test]
fn nested_replies_resp3_types_attributes_and_pushes() {
    let out = run(&[
        ev(1, Send, 10, &cmd(&["HELLO", "3"])),
        ev(1, Recv, 20, b"%1\r\n$5\r\nproto\r\n:3\r\n"),
        ev(1, Send, 30, &[cmd(&["HGETALL", "h"]), cmd(&["SMEMBERS", "s"]), cmd(&["GET", "k"])].concat()),
        // A map of arrays, a push (not a reply) between replies, a set, an attribute before
        // a blob string.
        ev(1, Recv, 40, b"%1\r\n$1\r\nf\r\n*2\r\n,1.5\r\n#t\r\n>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"),
        ev(
            1,
            Recv,
            50,
            b"~2\r\n(123456789012345678901234567890\r\n=8\r\ntxt:abcd\r\n|1\r\n$3\r\nttl\r\n:5\r\n$2\r\nvv\r\n",
        ),
    ]);
    assert_eq!(
        ops(&out),
        [
            op(Role::Client, "HGETALL", "HGETALL ?", None, 30, 40),
            op(Role::Client, "SMEMBERS", "SMEMBERS ?", None, 30, 50),
            op(Role::Client, "GET", "GET ?", None, 30, 50),
        ]
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
}

#[test]
fn multi_exec_and_blob_errors() {
    let out = run(&[
        ev(1, Send, 10, &[cmd(&["MULTI"]), cmd(&["INCR", "a"]), cmd(&["INCR", "b"]), cmd(&["EXEC"])].concat()),
        ev(1, Recv, 20, b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n:1\r\n:1\r\n"),
        ev(1, Send, 30, &cmd(&["FCALL", "f", "0"])),
        ev(1, Recv, 40, b"!21\r\nSYNTAX invalid syntax\r\n"),
    ]);
    let names: Vec<_> = ops(&out).into_iter().map(|o| (o.1, o.3)).collect();
    let want = [("MULTI", None), ("INCR", None), ("INCR", None), ("EXEC", None), ("FCALL", Some("SYNTAX"))];
    assert_eq!(names, want.map(|(n, e)| (n.to_string(), e.map(String::from))));
}

#[test]
fn large_values_are_skipped_by_length_and_lost_framing_is_counted() {
    let big = "v".repeat(100_000);
    let mut set = cmd(&["SET", "k", &big]);
    let out = run(&[ev(1, Send, 10, &set), ev(1, Recv, 20, b"+OK\r\n"), ev(1, Send, 30, &cmd(&["GET", "k"])), {
        // The reply: a bulk of 100 000 bytes in one read, mostly not captured.
        let mut reply = format!("${}\r\n", big.len()).into_bytes();
        reply.extend_from_slice(big.as_bytes());
        reply.extend_from_slice(b"\r\n");
        ev(1, Recv, 40, &reply)
    }]);
    assert_eq!(
        ops(&out),
        [op(Role::Client, "SET", "SET ? ?", None, 10, 20), op(Role::Client, "GET", "GET ?", None, 30, 40)]
    );
    assert_eq!((out.requests[0].request_body_size, out.requests[1].response_body_size), (set.len() as u64, 100_011));

    // 300 pipelined commands in one write: past the copy, their framing is not seen.
    set.clear();
    for i in 0..300 {
        set.extend(cmd(&["INCR", &format!("key{i}")]));
    }
    let out = run(&[ev(1, Send, 10, &set), ev(1, Recv, 20, b":1\r\n")]);
    assert!(out.requests.is_empty());
    assert_eq!(out.errors, [DecodeError::Desync]);
}

#[test]
fn resp2_subscriptions_end_decoding_without_an_endless_span() {
    let out = run(&[
        ev(1, Send, 10, &cmd(&["GET", "a"])),
        ev(1, Recv, 20, b"$-1\r\n"),
        ev(1, Send, 30, &cmd(&["SUBSCRIBE", "news"])),
        ev(1, Recv, 40, b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"),
        ev(1, Recv, 50, b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n"),
        ev(1, Send, 60, &cmd(&["PING"])),
        ev(1, Recv, 70, b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"),
    ]);
    assert_eq!(ops(&out), [op(Role::Client, "GET", "GET ?", None, 10, 20)]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
}

#[test]
fn the_server_side_and_a_reply_before_its_command() {
    // redis-server traced: commands read, replies written.
    let out = run(&[ev(1, Recv, 10, &cmd(&["DEL", "a", "b", "c"])), ev(1, Send, 20, b":2\r\n")]);
    assert_eq!(ops(&out), [op(Role::Server, "DEL", "DEL ? ? ?", None, 10, 20)]);
    // A client whose reply was read before the event of its write came: held, then matched.
    let out = run(&[
        ev(1, Send, 10, &cmd(&["GET", "a"])),
        ev(1, Recv, 20, b"$1\r\nx\r\n"),
        ev(1, Recv, 35, b"$1\r\ny\r\n"),
        ev(1, Send, 30, &cmd(&["GET", "b"])),
    ]);
    assert_eq!(
        ops(&out),
        [op(Role::Client, "GET", "GET ?", None, 10, 20), op(Role::Client, "GET", "GET ?", None, 30, 35)]
    );
}

#[test]
fn garbage_after_a_claim_is_a_desync_never_a_panic() {
    let out = run(&[ev(1, Send, 10, &cmd(&["GET", "a"])), ev(1, Recv, 20, b"?what\r\n")]);
    assert!(out.requests.is_empty());
    assert_eq!(out.errors, [DecodeError::Desync]);
    // Deep nesting and absurd lengths.
    let deep = "*1\r\n".repeat(100);
    let out = run(&[ev(1, Send, 10, &cmd(&["GET", "a"])), ev(1, Recv, 20, deep.as_bytes())]);
    assert_eq!(out.errors, [DecodeError::Desync]);
    let out = run(&[ev(1, Send, 10, &cmd(&["GET", "a"])), ev(1, Recv, 20, b"$99999999999999999999999\r\n")]);
    assert_eq!(out.errors, [DecodeError::Desync]);
}
