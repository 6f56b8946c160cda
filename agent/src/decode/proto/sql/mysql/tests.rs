//! MySQL as the capture sends it, through the tracker.
use super::*;
use crate::decode::testing::{ev, run};
use crate::decode::Decoded;
use Direction::{Recv, Send};

fn packet(seq: u8, body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_le_bytes().to_vec();
    out[3] = seq;
    out.extend_from_slice(body);
    out
}
fn query(text: &str) -> Vec<u8> {
    packet(0, &[&[COM_QUERY][..], text.as_bytes()].concat())
}
fn ok(seq: u8, status: u16) -> Vec<u8> {
    let s = status.to_le_bytes();
    packet(seq, &[0, 0, 0, s[0], s[1], 0, 0])
}
fn eof(seq: u8, status: u16) -> Vec<u8> {
    let s = status.to_le_bytes();
    packet(seq, &[0xfe, 0, 0, s[0], s[1]])
}
fn err(seq: u8, code: u16) -> Vec<u8> {
    let c = code.to_le_bytes();
    packet(seq, &[&[0xff, c[0], c[1]][..], b"#42S02no such table"].concat())
}
fn column(seq: u8) -> Vec<u8> {
    packet(seq, b"\x03def\x00\x00\x00\x01a\x00\x0c\x3f\x00\x0b\x00\x00\x00\x03\x00\x00\x00\x00\x00")
}
/// A result set of one column and `rows` rows, with EOF packets (no DEPRECATE_EOF).
fn result(rows: usize, status: u16) -> Vec<u8> {
    let mut out = packet(1, &[1]);
    out.extend(column(2));
    out.extend(eof(3, 0));
    for i in 0..rows {
        out.extend(packet(4 + i as u8, b"\x011"));
    }
    out.extend(eof(4 + rows as u8, status));
    out
}

/// (span name, db.query.text, error, start, end).
type Op = (String, Option<String>, Option<String>, u64, u64);

fn ops(out: &Decoded) -> Vec<Op> {
    out.requests
        .iter()
        .map(|r| {
            let op = r.operation.as_ref().unwrap();
            let text = r.attribute("db.query.text").map(|v| v.to_string());
            (op.name.clone(), text, op.error.clone(), r.start_ns, r.end_ns)
        })
        .collect()
}

fn op(
    name: &str,
    text: Option<&str>,
    err: Option<&str>,
    s: u64,
    e: u64,
) -> (String, Option<String>, Option<String>, u64, u64) {
    (name.into(), text.map(String::from), err.map(String::from), s, e)
}

#[test]
fn detects_greetings_and_joined_queries() {
    let greeting = packet(0, b"\x0a8.0.36\x00\x01\x00\x00\x00abcdefgh\x00");
    assert_eq!(detect(Recv, &greeting), Detect::Claim(Some(Role::Client)));
    assert_eq!(detect(Send, &greeting), Detect::Claim(Some(Role::Server)));
    assert_eq!(detect(Send, &query("SELECT 1")), Detect::Claim(Some(Role::Client)));
    assert_eq!(detect(Recv, &query("SELECT 1")), Detect::Claim(Some(Role::Server)));
    assert_eq!(detect(Send, &query("'x")), Detect::No);
    assert_eq!(detect(Send, b"GET / HTTP/1.1\r\n"), Detect::No);
    assert_eq!(detect(Recv, &greeting[..4]), Detect::Unsure);
}

#[test]
fn results_with_eof_packets_multi_statements_and_errors() {
    let out = run(&[
        ev(1, Send, 10, &query("SELECT a FROM t")),
        ev(1, Recv, 20, &result(3, 0)),
        // Two statements: the first result says more follow.
        ev(1, Send, 30, &query("INSERT INTO t VALUES (1); SELECT a FROM t")),
        ev(1, Recv, 40, &ok(1, MORE_RESULTS)),
        ev(1, Recv, 50, &result(1, 0)),
        ev(1, Send, 60, &query("SELECT * FROM nope")),
        ev(1, Recv, 70, &err(1, 1146)),
    ]);
    assert_eq!(
        ops(&out),
        [
            op("SELECT t", Some("SELECT a FROM t"), None, 10, 20),
            op("INSERT t", Some("INSERT INTO t VALUES (?)"), None, 30, 40),
            op("SELECT t", Some("SELECT a FROM t"), None, 40, 50),
            op("SELECT nope", Some("SELECT * FROM nope"), Some("1146"), 60, 70),
        ]
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
}

#[test]
fn prepared_statements_with_eof_packets_and_an_unknown_one() {
    let prepare = packet(0, b"\x16SELECT a FROM t WHERE id = ?");
    // OK-prepare: id 7, 1 column, 1 parameter; then the parameter, EOF, the column, EOF.
    let answer =
        [packet(1, b"\x00\x07\x00\x00\x00\x01\x00\x01\x00\x00\x00\x00"), column(2), eof(3, 0), column(4), eof(5, 0)]
            .concat();
    let execute = |id: u8| packet(0, &[0x17, id, 0, 0, 0, 0, 1, 0, 0, 0]);
    let out = run(&[
        ev(1, Send, 10, &prepare),
        ev(1, Recv, 20, &answer),
        ev(1, Send, 30, &execute(7)),
        ev(1, Recv, 40, &result(1, 0)),
        ev(1, Send, 50, &packet(0, &[COM_PING])),
        ev(1, Recv, 60, &ok(1, 0)),
        ev(1, Send, 70, &execute(9)),
        ev(1, Recv, 80, &ok(1, 0)),
    ]);
    assert_eq!(
        ops(&out),
        [op("SELECT t", Some("SELECT a FROM t WHERE id = ?"), None, 30, 40), op("mysql", None, None, 70, 80)]
    );
    assert_eq!(out.errors, [DecodeError::UnknownStatement]);
}

#[test]
fn large_rows_are_skipped_by_length() {
    let big = vec![b'x'; 200_000];
    let mut row = vec![0xfd, 0x40, 0x0d, 0x03];
    row.extend_from_slice(&big);
    let answer = [packet(1, &[1]), column(2), eof(3, 0), packet(4, &row)].concat();
    let out = run(&[
        ev(1, Send, 10, &query("SELECT blob FROM files")),
        ev(1, Recv, 20, &answer),
        ev(1, Recv, 30, &eof(5, 0)),
    ]);
    assert_eq!(ops(&out), [op("SELECT files", Some("SELECT blob FROM files"), None, 10, 30)]);
}
