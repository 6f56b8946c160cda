//! PostgreSQL as the capture sends it, through the tracker.
use super::*;
use crate::decode::testing::{ev, run};
use crate::decode::Decoded;
use Direction::{Recv, Send};

/// A typed message.
fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = PROTOCOL_3.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = (body.len() as u32 + 4).to_be_bytes().to_vec();
    out.extend(body);
    out
}

fn q(text: &str) -> Vec<u8> {
    msg(b'Q', format!("{text}\0").as_bytes())
}
fn complete(tag: &str) -> Vec<u8> {
    msg(b'C', format!("{tag}\0").as_bytes())
}
fn ready() -> Vec<u8> {
    msg(b'Z', b"I")
}
fn error(code: &str) -> Vec<u8> {
    msg(b'E', format!("SERROR\0VERROR\0C{code}\0Mboom\0\0").as_bytes())
}
fn parse(name: &str, query: &str) -> Vec<u8> {
    msg(b'P', format!("{name}\0{query}\0\0\0").as_bytes())
}
fn bind(portal: &str, stmt: &str) -> Vec<u8> {
    msg(b'B', format!("{portal}\0{stmt}\0\0\0\0\0\0\0").as_bytes())
}
fn execute(portal: &str) -> Vec<u8> {
    msg(b'E', format!("{portal}\0\0\0\0\0").as_bytes())
}
fn row() -> Vec<u8> {
    msg(b'D', b"\0\x01\0\0\0\x011")
}

/// (name, db.operation.name, db.collection.name, db.query.text, error, start, end).
type Op = (String, Option<String>, Option<String>, Option<String>, Option<String>, u64, u64);

fn ops(out: &Decoded) -> Vec<Op> {
    out.requests
        .iter()
        .map(|r| {
            let op = r.operation.as_ref().expect("an operation");
            assert_eq!(r.attribute("db.system.name").map(|v| v.to_string()).as_deref(), Some("postgresql"));
            let a = |k| r.attribute(k).map(|v| v.to_string());
            (
                op.name.clone(),
                a("db.operation.name"),
                a("db.collection.name"),
                a("db.query.text"),
                op.error.clone(),
                r.start_ns,
                r.end_ns,
            )
        })
        .collect()
}

fn op(name: &str, o: Option<&str>, c: Option<&str>, t: Option<&str>, e: Option<&str>, s: u64, end: u64) -> Op {
    let f = |x: Option<&str>| x.map(String::from);
    (name.into(), f(o), f(c), f(t), f(e), s, end)
}

#[test]
fn detects_startup_ssl_cancel_and_joined_queries() {
    assert_eq!(detect(Send, &startup(&[("user", "u")])), Detect::Claim(Some(Role::Client)));
    assert_eq!(detect(Recv, &startup(&[("user", "u")])), Detect::Claim(Some(Role::Server)));
    assert_eq!(detect(Send, b"\0\0\0\x08\x04\xd2\x16\x2f"), Detect::Claim(Some(Role::Client)));
    assert_eq!(detect(Send, b"\0\0\0\x10\x04\xd2\x16\x2e\0\0\0\x01\0\0\0\x02"), Detect::Claim(Some(Role::Client)));
    assert_eq!(detect(Send, &q("SELECT 1")), Detect::Claim(Some(Role::Client)));
    assert_eq!(detect(Send, &parse("", "select $1")), Detect::Claim(Some(Role::Client)));
    assert_eq!(detect(Send, b"\0\0"), Detect::Unsure);
    assert_eq!(detect(Send, b"POST /x HTTP/1.1\r\n"), Detect::No);
    assert_eq!(detect(Send, &q("'not sql")), Detect::No);
    assert_eq!(detect(Send, b"*1\r\n$4\r\nPING\r\n"), Detect::No);
}

#[test]
fn startup_ssl_refused_auth_and_a_simple_query_with_several_statements() {
    let mut login = msg(b'R', b"\0\0\0\0");
    login.extend(msg(b'S', b"server_version\x0015\0"));
    login.extend(msg(b'K', b"\0\0\0\x01\0\0\0\x02"));
    login.extend(ready());
    let mut results = complete("BEGIN");
    results.extend(msg(b'T', b"\0\x01a\0\0\0\0\0\0\0\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0"));
    results.extend(row());
    results.extend(complete("SELECT 1"));
    results.extend(complete("INSERT 0 1"));
    results.extend(complete("COMMIT"));
    results.extend(ready());
    let out = run(&[
        ev(1, Send, 10, b"\0\0\0\x08\x04\xd2\x16\x2f"),
        ev(1, Recv, 20, b"N"),
        ev(1, Send, 30, &startup(&[("user", "app"), ("database", "shop")])),
        ev(1, Recv, 40, &msg(b'R', b"\0\0\0\x05salt")),
        ev(1, Send, 50, &msg(b'p', b"md5secretsecretsecret\0")),
        ev(1, Recv, 60, &login),
        ev(1, Send, 70, &q("BEGIN; SELECT a FROM users WHERE id = 7; INSERT INTO logs VALUES ('x'); COMMIT")),
        ev(1, Recv, 80, &results[..40]),
        ev(1, Recv, 90, &results[40..]),
    ]);
    assert_eq!(
        ops(&out),
        [
            op("BEGIN", Some("BEGIN"), None, Some("BEGIN"), None, 70, 80),
            op("SELECT users", Some("SELECT"), Some("users"), Some("SELECT a FROM users WHERE id = ?"), None, 80, 90),
            op("INSERT logs", Some("INSERT"), Some("logs"), Some("INSERT INTO logs VALUES (?)"), None, 90, 90),
            op("COMMIT", Some("COMMIT"), None, Some("COMMIT"), None, 90, 90),
        ]
    );
    assert_eq!(out.requests[0].attribute("db.namespace").map(|v| v.to_string()).as_deref(), Some("shop"));
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert!(!format!("{:?}", out.requests).contains("secret"));
}

#[test]
fn db_query_text_keeps_or_drops_the_text_as_configured() {
    use crate::config::QueryText;
    use crate::decode::testing::run_with;
    use crate::decode::DecodeOptions;
    let mut results = complete("SELECT 1");
    results.extend(ready());
    let text = |mode| {
        let events = [
            ev(1, Send, 70, &q("SELECT a FROM users WHERE email = 'ann@example.org' -- why\n")),
            ev(1, Recv, 80, &results),
        ];
        let out = run_with(DecodeOptions { query_text: mode }, &events);
        assert_eq!(out.requests.len(), 1);
        assert_eq!(out.requests[0].operation.as_ref().unwrap().name, "SELECT users");
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        out.requests[0].attribute("db.query.text").map(|v| v.to_string())
    };
    assert_eq!(text(QueryText::Obfuscated).as_deref(), Some("SELECT a FROM users WHERE email = ?"));
    assert_eq!(text(QueryText::Full).as_deref(), Some("SELECT a FROM users WHERE email = 'ann@example.org' -- why"));
    assert_eq!(text(QueryText::Off), None);
    // Cut at 1024 bytes, on a character boundary.
    let long = format!("SELECT 'x{}'", "é".repeat(600));
    let events = [ev(1, Send, 70, &q(&long)), ev(1, Recv, 80, &results)];
    let out = run_with(DecodeOptions { query_text: QueryText::Full }, &events);
    let got = out.requests[0].attribute("db.query.text").map(|v| v.to_string()).unwrap();
    assert_eq!(got.len(), 1023);
    assert!(long.starts_with(&got));
}

#[test]
fn an_error_ends_the_text_and_fails_its_statement() {
    let mut answer = complete("SELECT 1");
    answer.extend(error("42P01"));
    answer.extend(ready());
    let out = run(&[
        ev(1, Send, 10, &q("SELECT 1; SELECT * FROM nope; SELECT 2")),
        ev(1, Recv, 20, &answer),
        ev(1, Send, 30, &q("SELECT 3")),
        ev(1, Recv, 40, &[complete("SELECT 1"), ready()].concat()),
    ]);
    assert_eq!(
        ops(&out),
        [
            op("SELECT", Some("SELECT"), None, Some("SELECT ?"), None, 10, 20),
            op("SELECT nope", Some("SELECT"), Some("nope"), Some("SELECT * FROM nope"), Some("42P01"), 20, 20),
            op("SELECT", Some("SELECT"), None, Some("SELECT ?"), None, 30, 40),
        ]
    );
    assert_eq!(out.requests[1].attribute("db.response.status_code").map(|v| v.to_string()).as_deref(), Some("42P01"));
}

#[test]
fn extended_protocol_named_unnamed_pipelined_and_failed_batches() {
    // A named statement prepared once, executed twice; an unnamed one; in one pipelined write.
    let batch = [
        parse("s1", "SELECT name FROM users WHERE id = $1"),
        msg(b'D', b"Ss1\0"),
        msg(b'S', b""),
        bind("", "s1"),
        execute(""),
        bind("", "s1"),
        execute(""),
        parse("", "UPDATE users SET n = n + 1 WHERE id = $1"),
        bind("", ""),
        execute(""),
        msg(b'S', b""),
    ]
    .concat();
    let answers = [
        msg(b'1', b""),
        msg(b't', b"\0\x01\0\0\0\x17"),
        msg(b'T', b"\0\x01name\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0"),
        ready(),
        msg(b'2', b""),
        row(),
        complete("SELECT 1"),
        msg(b'2', b""),
        complete("SELECT 0"),
        msg(b'1', b""),
        msg(b'2', b""),
        complete("UPDATE 1"),
        ready(),
    ]
    .concat();
    // Then a batch whose Execute fails, and a Parse alone that fails (not an operation).
    let failing = [parse("", "INSERT INTO t VALUES ($1)"), bind("", ""), execute(""), msg(b'S', b"")].concat();
    let failed = [msg(b'1', b""), msg(b'2', b""), error("23505"), ready()].concat();
    let bad_parse = [parse("", "SELEKT"), msg(b'S', b"")].concat();
    let out = run(&[
        ev(1, Send, 10, &batch),
        ev(1, Recv, 20, &answers),
        ev(1, Send, 30, &failing),
        ev(1, Recv, 40, &failed),
        ev(1, Send, 50, &bad_parse),
        ev(1, Recv, 60, &[error("42601"), ready()].concat()),
    ]);
    let text = "SELECT name FROM users WHERE id = $1";
    assert_eq!(
        ops(&out),
        [
            op("SELECT users", Some("SELECT"), Some("users"), Some(text), None, 10, 20),
            op("SELECT users", Some("SELECT"), Some("users"), Some(text), None, 10, 20),
            op(
                "UPDATE users",
                Some("UPDATE"),
                Some("users"),
                Some("UPDATE users SET n = n + ? WHERE id = $1"),
                None,
                10,
                20
            ),
            op("INSERT t", Some("INSERT"), Some("t"), Some("INSERT INTO t VALUES ($1)"), Some("23505"), 30, 40),
        ]
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
}

#[test]
fn a_statement_prepared_before_the_agent_joined_is_reported_by_its_tag_and_counted() {
    // The agent joins a pooled connection: its first transfer is a Bind of statement "s9".
    let out = run(&[
        ev(1, Send, 10, &q("SELECT 1")),
        ev(1, Recv, 20, &[complete("SELECT 1"), ready()].concat()),
        ev(1, Send, 30, &[bind("", "s9"), execute(""), msg(b'S', b"")].concat()),
        ev(1, Recv, 40, &[msg(b'2', b""), complete("DELETE 3"), ready()].concat()),
    ]);
    assert_eq!(
        ops(&out),
        [
            op("SELECT", Some("SELECT"), None, Some("SELECT ?"), None, 10, 20),
            op("DELETE", Some("DELETE"), None, None, None, 30, 40),
        ]
    );
    assert_eq!(out.errors, [DecodeError::UnknownStatement]);
}

#[test]
fn copy_and_large_rows_cost_no_framing() {
    let big = vec![b'x'; 300_000];
    let mut row_big = vec![b'D'];
    row_big.extend_from_slice(&(big.len() as u32 + 4 + 6).to_be_bytes());
    row_big.extend_from_slice(&[0, 1]);
    row_big.extend_from_slice(&(big.len() as u32).to_be_bytes());
    row_big.extend_from_slice(&big);
    let copy_in = [q("COPY t FROM STDIN"), vec![]].concat();
    let data = [msg(b'd', &big[..50_000]), msg(b'd', b"1\n"), msg(b'c', b"")].concat();
    let out = run(&[
        // The row whose last bytes, and the CommandComplete after them, are past the copy: the
        // tail holds the ReadyForQuery only. Not reported, counted, and followed again after.
        ev(1, Send, 10, &q("SELECT blob FROM files")),
        ev(1, Recv, 20, &[row_big.clone(), complete("SELECT 1"), ready()].concat()),
        ev(1, Send, 30, &copy_in),
        ev(1, Recv, 40, &msg(b'G', b"\0\0\x01\0\0")),
        ev(1, Send, 50, &data),
        ev(1, Recv, 60, &[complete("COPY 2"), ready()].concat()),
        // The same row, with what follows it in a read of its own.
        ev(1, Send, 70, &q("SELECT blob FROM files")),
        ev(1, Recv, 80, &row_big),
        ev(1, Recv, 90, &[complete("SELECT 1"), ready()].concat()),
    ]);
    assert_eq!(
        ops(&out),
        [
            op("COPY", Some("COPY"), None, Some("COPY t FROM STDIN"), None, 30, 60),
            op("SELECT files", Some("SELECT"), Some("files"), Some("SELECT blob FROM files"), None, 70, 90),
        ]
    );
    // The row's read, and the COPY data write (a 50 kB CopyData then two more messages: their
    // headers past the copy; the client is followed again once the server answered it all).
    assert_eq!(out.errors, [DecodeError::Uncaptured, DecodeError::Uncaptured]);
    // Without a ReadyForQuery at its end, the lost framing ends decoding.
    let out = run(&[
        ev(1, Send, 10, &q("SELECT blob FROM files")),
        ev(1, Recv, 20, &[row_big, complete("SELECT 1"), ready(), msg(b'N', b"notice")].concat()),
    ]);
    assert_eq!(out.errors, [DecodeError::Desync]);
}

#[test]
fn garbage_is_a_desync_never_a_panic() {
    let out = run(&[ev(1, Send, 10, &q("SELECT 1")), ev(1, Recv, 20, b"\x07\0\0\0\x05x")]);
    assert_eq!(out.errors, [DecodeError::Desync]);
    let out = run(&[ev(1, Send, 10, &q("SELECT 1")), ev(1, Recv, 20, b"C\xff\xff\xff\xff")]);
    assert_eq!(out.errors, [DecodeError::Desync]);
    let out = run(&[ev(1, Send, 10, &q("SELECT 1")), ev(1, Recv, 20, &msg(b'1', b""))]);
    assert_eq!(out.errors, [DecodeError::Desync]);
}
