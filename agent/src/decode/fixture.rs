//! Decode fixtures: the socket events of a real exchange, one per line, so that what the
//! decoder makes of real servers' traffic can be replayed without root or a kernel
//! (`agent/tests/decode_fixtures.rs`). The agent records them with
//! `BEYLA_DEBUG_RECORD_EVENTS=<file>` (appended to, as the decode stage reads them).
//!
//! A line is `data <pid> <tid> <sock> <ts> <start> <recv|send> <len> <local> <remote> <tls>
//! <bytes> <tail> [h2frames|h2lost] [go=<server sock>:<stream>:<handler ns>]` or
//! `close <pid> <sock> <ts>`; bytes are printable ASCII with `\xHH` for everything else (and for
//! `\` and space), `-` when empty. The optional fields say what the bytes are when they are not
//! the transfer's first (`events::Capture`) and which request the writing goroutine of a Go
//! program serves (`events::Goroutine`).
use std::fmt::Write as _;

use crate::events::{Capture, Direction, Goroutine, RawEvent, SockData};

/// One recorded event as a line (without its newline); `None` for events fixtures do not keep.
pub fn line(ev: &RawEvent) -> Option<String> {
    match ev {
        RawEvent::Data(d) => Some(format!(
            "data {} {} {} {} {} {} {} {} {} {} {} {}{}{}",
            d.pid,
            d.tid,
            d.sock_id,
            d.ts_ns,
            d.start_ns,
            if d.direction == Direction::Recv { "recv" } else { "send" },
            d.len,
            d.local,
            d.remote,
            u8::from(d.tls),
            escape(&d.data),
            escape(&d.tail),
            match d.capture {
                Capture::Prefix => "",
                Capture::H2Frames => " h2frames",
                Capture::H2Lost => " h2lost",
            },
            d.goroutine
                .map_or(String::new(), |g| format!(" go={}:{}:{}", g.server_sock, g.server_stream, g.handler_ns)),
        )),
        RawEvent::Close { pid, sock_id, ts_ns } => Some(format!("close {pid} {sock_id} {ts_ns}")),
        _ => None,
    }
}

/// Reads a fixture's lines back; an unreadable line is an error naming it.
pub fn parse(text: &str) -> Result<Vec<RawEvent>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|(i, l)| parse_line(l).ok_or_else(|| format!("line {}: cannot read {:?}", i + 1, truncate(l))))
        .collect()
}

fn truncate(l: &str) -> &str {
    &l[..l.char_indices().nth(80).map_or(l.len(), |(i, _)| i)]
}

fn parse_line(l: &str) -> Option<RawEvent> {
    let f: Vec<&str> = l.split(' ').collect();
    match f.as_slice() {
        ["close", pid, sock, ts] => {
            Some(RawEvent::Close { pid: pid.parse().ok()?, sock_id: sock.parse().ok()?, ts_ns: ts.parse().ok()? })
        }
        ["data", pid, tid, sock, ts, start, dir, len, local, remote, tls, data, tail, rest @ ..] => {
            let (goroutine, rest) = match rest.split_last() {
                Some((g, rest)) if g.starts_with("go=") => (Some(parse_goroutine(&g[3..])?), rest),
                _ => (None, rest),
            };
            let capture = match rest {
                [] => Capture::Prefix,
                ["h2frames"] => Capture::H2Frames,
                ["h2lost"] => Capture::H2Lost,
                _ => return None,
            };
            Some(RawEvent::Data(SockData {
                pid: pid.parse().ok()?,
                tid: tid.parse().ok()?,
                sock_id: sock.parse().ok()?,
                ts_ns: ts.parse().ok()?,
                start_ns: start.parse().ok()?,
                direction: match *dir {
                    "recv" => Direction::Recv,
                    "send" => Direction::Send,
                    _ => return None,
                },
                len: len.parse().ok()?,
                local: local.parse().ok()?,
                remote: remote.parse().ok()?,
                tls: *tls == "1",
                data: unescape(data)?,
                tail: unescape(tail)?,
                capture,
                goroutine,
            }))
        }
        _ => None,
    }
}

/// `<server sock>:<stream>:<handler start>` (see [`Goroutine`]).
fn parse_goroutine(s: &str) -> Option<Goroutine> {
    let mut f = s.split(':');
    let g = Goroutine {
        server_sock: f.next()?.parse().ok()?,
        server_stream: f.next()?.parse().ok()?,
        handler_ns: f.next()?.parse().ok()?,
    };
    f.next().is_none().then_some(g)
}

fn escape(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "-".into();
    }
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'\\' && !(s.is_empty() && b == b'-') {
            s.push(b as char);
        } else {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    s
}

fn unescape(s: &str) -> Option<Vec<u8>> {
    if s == "-" {
        return Some(Vec::new());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            let hex = std::str::from_utf8(b.get(i + 2..i + 4)?).ok()?;
            if b.get(i + 1) != Some(&b'x') {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let d = SockData {
            pid: 1,
            tid: 2,
            sock_id: 3,
            ts_ns: 4,
            start_ns: 0,
            direction: Direction::Send,
            len: 9000,
            local: "127.0.0.1:80".parse().unwrap(),
            remote: "[::1]:5000".parse().unwrap(),
            data: b"-HTTP/1.1 200 OK\r\n\\ \x00\xff".to_vec(),
            tail: Vec::new(),
            tls: true,
            capture: Capture::H2Frames,
            goroutine: Some(Goroutine { server_sock: 7, server_stream: 3, handler_ns: 11 }),
        };
        let l = line(&RawEvent::Data(d.clone())).unwrap();
        assert!(!l.contains('\n') && !l.contains('\r'));
        let back = parse(&format!("# comment\n{l}\nclose 1 3 5\n")).unwrap();
        let RawEvent::Data(e) = &back[0] else { panic!() };
        assert_eq!(
            (e.pid, e.tid, e.sock_id, e.ts_ns, e.len, e.local, e.remote, e.tls, e.capture),
            (1, 2, 3, 4, 9000, d.local, d.remote, true, Capture::H2Frames)
        );
        assert_eq!(e.goroutine, d.goroutine);
        assert_eq!((e.data.as_slice(), e.tail.as_slice()), (d.data.as_slice(), &b""[..]));
        assert!(matches!(back[1], RawEvent::Close { pid: 1, sock_id: 3, ts_ns: 5 }));
        assert!(parse("data 1 2").unwrap_err().contains("line 1"));
    }
}
