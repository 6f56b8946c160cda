//! MySQL and MariaDB, client/server protocol (uncompressed): one operation per executed
//! statement.
//!
//! `COM_QUERY` (a text of several statements, with multi-statements on, is one operation
//! each: one result per statement, an error ends the text) and `COM_STMT_EXECUTE` (the
//! statement its `COM_STMT_PREPARE` named; preparing alone is not an operation). Commands
//! that run no statement are not operations: `COM_PING`, `COM_INIT_DB` (it sets
//! `db.namespace`), `COM_STMT_CLOSE`/`RESET`, `COM_SET_OPTION`, `COM_RESET_CONNECTION`,
//! `COM_QUIT`; SQL statements a driver sends on connect (`SET NAMES`, `SET autocommit`) are
//! statements and reported as `SET`. Results are followed packet by packet (text and binary
//! rows, with or without EOF packets) and their rows skipped by length. An `ERR` packet fails
//! the statement (its error number is `error.type` and `db.response.status_code`).
//!
//! The handshake gives `db.system.name` (`mariadb` when the server says so, else `mysql`) and
//! the database; a connection joined after it is decoded from its next command, as `mysql`.
//! Authentication data and passwords are skipped unread; a connection that switches to TLS
//! (`SSLRequest`) is not decoded further. A statement prepared before the agent saw it is
//! reported without text and counted (`unknown_statement`).
use std::collections::{HashMap, VecDeque};

use super::{emit_statement, operation, split_statements, Statement};
use crate::decode::context::TraceContext;
use crate::decode::proto::{Ctx, Detect, Parser, Protocol, Transfer, Verdict};
use crate::decode::{DecodeError, Role};
use crate::events::{Direction, SockData};

const COM_QUIT: u8 = 0x01;
const COM_INIT_DB: u8 = 0x02;
const COM_QUERY: u8 = 0x03;
const COM_PING: u8 = 0x0e;
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_EXECUTE: u8 = 0x17;
const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
const COM_STMT_CLOSE: u8 = 0x19;
/// `SERVER_MORE_RESULTS_EXISTS`: another result of the same command follows.
const MORE_RESULTS: u16 = 0x0008;
const CLIENT_CONNECT_WITH_DB: u32 = 0x0008;
const CLIENT_SSL: u32 = 0x0800;
const CLIENT_DEPRECATE_EOF: u32 = 0x0100_0000;
/// A packet of this length is continued by the next one.
const MAX_PACKET: usize = 0xff_ffff;
/// Bytes kept of a packet's payload.
const MAX_KEPT: usize = 4096;
/// Prepared statements remembered per connection.
const MAX_STATEMENTS: usize = 256;
/// Commands awaiting their answer.
const MAX_QUEUE: usize = 1024;
/// Statements followed in one query text.
const MAX_SPLIT: usize = 64;

pub const PROTOCOL: Protocol = Protocol { name: "mysql", detect, parser: || Box::<Mysql>::default() };

fn le24(b: &[u8]) -> usize {
    usize::from(b[0]) | usize::from(b[1]) << 8 | usize::from(b[2]) << 16
}

/// The server's greeting (we call when it is read), or a whole `COM_QUERY`/`COM_STMT_PREPARE`
/// of SQL on a connection joined after its start.
fn detect(direction: Direction, data: &[u8]) -> Detect {
    let role = |server_speaks: bool| {
        let read = direction == Direction::Recv;
        Detect::Claim(Some(if read == server_speaks { Role::Client } else { Role::Server }))
    };
    if data.len() < 6 {
        return if data.len() >= 4 && data[3] != 0 { Detect::No } else { Detect::Unsure };
    }
    let len = le24(data);
    if len == 0 || data[3] != 0 {
        return Detect::No;
    }
    if data[4] == 0x0a {
        // Protocol 10 greeting: a printable version string, NUL-terminated.
        let v = &data[5..data.len().min(4 + len)];
        return match v.iter().position(|b| *b == 0) {
            Some(n) if n > 0 && v[..n].iter().all(|b| (0x20..0x7f).contains(b)) => role(true),
            _ => Detect::No,
        };
    }
    if matches!(data[4], COM_QUERY | COM_STMT_PREPARE) && 4 + len == data.len() {
        let ok = std::str::from_utf8(&data[5..]).is_ok_and(|t| !t.contains('\0') && operation(t).is_some());
        return if ok { role(false) } else { Detect::No };
    }
    Detect::No
}

/// One logical packet (continuations joined): its sequence id and payload's first bytes.
#[derive(Debug)]
struct Packet {
    seq: u8,
    body: Vec<u8>,
    /// Payload length (all of it, kept or not).
    len: usize,
    start_ns: u64,
    tid: u32,
}

#[derive(Debug)]
struct Lost;

/// One direction's bytes cut into packets.
#[derive(Debug, Default)]
struct Packets {
    head: Vec<u8>,
    body: Vec<u8>,
    left: usize,
    len: usize,
    seq: u8,
    /// The packet continues in the next one (its length was the maximum).
    continued: bool,
    start_ns: u64,
    tid: u32,
}

impl Packets {
    fn feed(&mut self, t: &Transfer<'_>, ts: u64, tid: u32, out: &mut Vec<Packet>) -> Result<(), Lost> {
        self.known(t.data, ts, tid, out)?;
        if t.missing > 0 {
            if (self.left as u64) < t.missing {
                return Err(Lost);
            }
            self.left -= t.missing as usize;
            if self.left == 0 {
                self.finish(out);
            }
        }
        self.known(t.tail, ts, tid, out)
    }

    fn known(&mut self, mut data: &[u8], ts: u64, tid: u32, out: &mut Vec<Packet>) -> Result<(), Lost> {
        while !data.is_empty() {
            if self.left > 0 {
                let n = self.left.min(data.len());
                let room = MAX_KEPT.saturating_sub(self.body.len());
                self.body.extend_from_slice(&data[..n.min(room)]);
                self.left -= n;
                data = &data[n..];
                if self.left == 0 {
                    self.finish(out);
                }
                continue;
            }
            if self.head.is_empty() && !self.continued {
                self.start_ns = ts;
                self.tid = tid;
            }
            let n = (4 - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.head.len() < 4 {
                continue;
            }
            let len = le24(&self.head);
            if !self.continued {
                self.seq = self.head[3];
            }
            self.head.clear();
            self.len += len;
            self.left = len;
            self.continued = len == MAX_PACKET;
            if len == 0 {
                self.finish(out);
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<Packet>) {
        if self.continued {
            return;
        }
        out.push(Packet {
            seq: self.seq,
            body: std::mem::take(&mut self.body),
            len: std::mem::take(&mut self.len),
            start_ns: self.start_ns,
            tid: self.tid,
        });
    }
}

/// A statement while it runs.
#[derive(Debug)]
struct Running {
    text: Option<String>,
    trace: TraceContext,
}

/// Where the answer to the command at the front of the queue is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Its first packet: OK, ERR, or a result set's column count.
    Start,
    /// Column definitions still to come, then (without DEPRECATE_EOF) an EOF.
    Columns(u64),
    /// Rows, until the EOF or OK that ends them.
    Rows,
    /// A prepare's parameter and column definitions still to come (EOF packets between).
    Definitions(u64),
}

#[derive(Debug)]
enum Command {
    /// COM_QUERY: its statements not finished yet.
    Query {
        statements: VecDeque<Running>,
        start_ns: u64,
        tid: u32,
    },
    Execute {
        run: Running,
        start_ns: u64,
        tid: u32,
    },
    /// COM_STMT_PREPARE of this text (none when it was cut).
    Prepare(Option<String>),
    /// COM_INIT_DB of this database.
    InitDb(String),
    /// Answered by one OK or ERR, not an operation (PING, SET_OPTION, RESET, ...).
    Other,
}

/// One MySQL/MariaDB connection.
#[derive(Debug, Default)]
pub struct Mysql {
    /// The client's packets (index 0) and the server's (index 1).
    packets: [Packets; 2],
    queue: VecDeque<Command>,
    reading: Option<Reading>,
    statements: HashMap<u32, Option<String>>,
    order: VecDeque<u32>,
    mariadb: bool,
    database: Option<String>,
    /// The greeting was seen; the client's handshake response comes next.
    greeted: bool,
    deprecate_eof: bool,
    /// The connection's authentication is in progress (packets not commands).
    authenticating: bool,
    /// A definitions count reached: one EOF packet may still come.
    maybe_eof: bool,
}

fn lenenc(b: &[u8]) -> Option<(u64, &[u8])> {
    let (&first, rest) = b.split_first()?;
    let size = match first {
        0..=0xfa => return Some((u64::from(first), rest)),
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        _ => return None,
    };
    let bytes = rest.get(..size)?;
    let v = bytes.iter().rev().fold(0u64, |acc, b| acc << 8 | u64::from(*b));
    Some((v, &rest[size..]))
}

/// The status flags of an OK packet (0x00 or 0xFE header) or an EOF packet.
fn status(body: &[u8], len: usize) -> u16 {
    if body.first() == Some(&0xfe) && len == 5 {
        return body.get(3..5).map_or(0, |s| u16::from_le_bytes([s[0], s[1]]));
    }
    let rest = lenenc(&body[1.min(body.len())..]).and_then(|(_, r)| lenenc(r)).map(|(_, r)| r);
    rest.and_then(|r| r.get(..2)).map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

/// Whether a packet ends rows (EOF, or an OK with the EOF header).
fn is_eof(p: &Packet) -> bool {
    // A row starting with 0xFE (a value of 16 MiB or more) is longer than one packet.
    p.body.first() == Some(&0xfe) && p.len < MAX_PACKET
}

impl Mysql {
    fn system(&self) -> &'static str {
        if self.mariadb {
            "mariadb"
        } else {
            "mysql"
        }
    }

    fn abandon(cx: &mut Ctx<'_>, c: Command) {
        match c {
            Command::Query { statements, .. } => statements.iter().for_each(|r| cx.abandon(&r.trace)),
            Command::Execute { run, .. } => cx.abandon(&run.trace),
            _ => {}
        }
    }

    fn abandon_all(&mut self, cx: &mut Ctx<'_>) {
        while let Some(c) = self.queue.pop_front() {
            Self::abandon(cx, c);
        }
    }

    fn on_client(&mut self, p: Packet, cx: &mut Ctx<'_>) -> Result<Verdict, DecodeError> {
        if self.greeted {
            // The handshake response (or an SSL request).
            self.greeted = false;
            let caps = p.body.get(..4).map_or(0, |c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
            if caps & CLIENT_SSL != 0 && p.len <= 32 {
                return Ok(Verdict::Stop);
            }
            self.deprecate_eof = caps & CLIENT_DEPRECATE_EOF != 0;
            if caps & CLIENT_CONNECT_WITH_DB != 0 {
                // user\0, auth data (length-encoded, or 1-byte length, or NUL-terminated), db\0
                let rest = p.body.get(32..).unwrap_or_default();
                let user_end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
                let rest = rest.get(user_end + 1..).unwrap_or_default();
                let rest = match lenenc(rest) {
                    Some((n, r)) if (n as usize) <= r.len() => &r[n as usize..],
                    _ => &[][..],
                };
                let db_end = rest.iter().position(|b| *b == 0).unwrap_or(0);
                if db_end > 0 {
                    self.database = Some(String::from_utf8_lossy(&rest[..db_end]).into_owned());
                }
            }
            self.authenticating = true;
            return Ok(Verdict::Continue);
        }
        if self.authenticating {
            // Auth switch responses, more auth data: skipped unread.
            return Ok(Verdict::Continue);
        }
        if p.seq != 0 {
            // A continuation of a command we follow by its first packet (long data).
            return Ok(Verdict::Continue);
        }
        let Some((&cmd, body)) = p.body.split_first() else { return Err(DecodeError::Desync) };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let whole = p.len <= MAX_KEPT;
        let command = match cmd {
            COM_QUERY => {
                let t = text(body);
                if let Some(db) = use_database(&t) {
                    self.database = Some(db);
                }
                let statements = split_statements(&t, MAX_SPLIT)
                    .into_iter()
                    .map(|s| Running { text: Some(s), trace: cx.begin(p.tid, 0, None) })
                    .collect();
                Command::Query { statements, start_ns: p.start_ns, tid: p.tid }
            }
            COM_STMT_PREPARE => Command::Prepare(whole.then(|| text(body))),
            COM_STMT_EXECUTE => {
                let id = body.get(..4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                let text = self.statements.get(&id).cloned().flatten();
                Command::Execute {
                    run: Running { text, trace: cx.begin(p.tid, 0, None) },
                    start_ns: p.start_ns,
                    tid: p.tid,
                }
            }
            COM_INIT_DB => Command::InitDb(text(body)),
            COM_STMT_CLOSE => {
                if let Some(b) = body.get(..4) {
                    let id = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    self.statements.remove(&id);
                    self.order.retain(|i| *i != id);
                }
                return Ok(Verdict::Continue);
            }
            COM_QUIT | COM_STMT_SEND_LONG_DATA => return Ok(Verdict::Continue),
            COM_PING | 0x04..=0x0d | 0x0f..=0x15 | 0x1a..=0x1f => Command::Other,
            _ => return Err(DecodeError::Desync),
        };
        if self.queue.len() >= MAX_QUEUE {
            Self::abandon(cx, command);
            return Err(DecodeError::Evicted);
        }
        self.queue.push_back(command);
        Ok(Verdict::Continue)
    }

    fn emit(&self, cx: &mut Ctx<'_>, run: Running, tid: u32, span: (u64, u64), error: Option<String>) {
        let st = Statement {
            system: self.system(),
            text: run.text.as_deref(),
            completed_as: None,
            namespace: self.database.as_deref(),
            error,
        };
        emit_statement(cx, st, tid, span, run.trace);
    }

    /// The command at the front got one result (ok or failed); `more`: another follows.
    fn result(&mut self, end: u64, error: Option<String>, more: bool, cx: &mut Ctx<'_>) {
        self.reading = None;
        let Some(front) = self.queue.front_mut() else { return };
        match front {
            Command::Query { statements, start_ns, tid } => {
                let (start, tid) = (*start_ns, *tid);
                *start_ns = end;
                let run = statements.pop_front();
                let last = !more || error.is_some();
                if last {
                    statements.drain(..).for_each(|r| cx.abandon(&r.trace));
                }
                let run = run.unwrap_or_else(|| Running { text: None, trace: cx.begin(tid, 0, None) });
                self.emit(cx, run, tid, (start, end), error);
                if last {
                    self.queue.pop_front();
                } else {
                    self.reading = Some(Reading::Start);
                }
            }
            Command::Execute { .. } => {
                if let Some(Command::Execute { run, start_ns, tid }) = self.queue.pop_front() {
                    self.emit(cx, run, tid, (start_ns, end), error);
                }
            }
            Command::InitDb(db) => {
                if error.is_none() {
                    self.database = Some(std::mem::take(db));
                }
                self.queue.pop_front();
            }
            Command::Prepare(_) | Command::Other => {
                self.queue.pop_front();
            }
        }
    }

    fn on_server(&mut self, p: Packet, cx: &mut Ctx<'_>) -> Result<Verdict, DecodeError> {
        let end = p.start_ns;
        let first = p.body.first().copied();
        if p.seq == 0 && first == Some(0x0a) && self.queue.is_empty() && self.reading.is_none() {
            // The greeting.
            let version = p.body[1..].split(|b| *b == 0).next().unwrap_or_default();
            self.mariadb = String::from_utf8_lossy(version).contains("MariaDB");
            self.greeted = true;
            return Ok(Verdict::Continue);
        }
        if self.authenticating {
            match first {
                Some(0x00) => self.authenticating = false,
                Some(0xff) => return Ok(Verdict::Stop),
                _ => {}
            }
            return Ok(Verdict::Continue);
        }
        if self.maybe_eof {
            self.maybe_eof = false;
            if is_eof(&p) && p.len == 5 {
                return Ok(Verdict::Continue);
            }
        }
        if self.queue.is_empty() {
            return Err(DecodeError::Desync);
        }
        let reading = self.reading.unwrap_or(Reading::Start);
        match reading {
            Reading::Start => match first {
                Some(0x00) if matches!(self.queue.front(), Some(Command::Prepare(_))) => {
                    let b = &p.body;
                    let id = b.get(1..5).map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
                    let cols = b.get(5..7).map_or(0, |s| u16::from_le_bytes([s[0], s[1]]));
                    let params = b.get(7..9).map_or(0, |s| u16::from_le_bytes([s[0], s[1]]));
                    if let Some(Command::Prepare(text)) = self.queue.pop_front() {
                        self.remember(id, text, cx);
                    }
                    let defs = u64::from(cols) + u64::from(params);
                    self.reading = (defs > 0).then_some(Reading::Definitions(defs));
                    if defs > 0 {
                        // The definitions belong to no command in the queue: read them here.
                        self.queue.push_front(Command::Other);
                    }
                }
                Some(0x00) | Some(0xfe) if first == Some(0x00) || is_eof(&p) => {
                    let more = status(&p.body, p.len) & MORE_RESULTS != 0;
                    self.result(end, None, more, cx);
                }
                Some(0xff) => {
                    let code = p.body.get(1..3).map_or(0, |c| u16::from_le_bytes([c[0], c[1]]));
                    if matches!(self.queue.front(), Some(Command::Prepare(_))) {
                        self.queue.pop_front();
                        self.reading = None;
                    } else {
                        self.result(end, Some(code.to_string()), false, cx);
                    }
                }
                Some(0xfb) => return Err(DecodeError::Desync), // LOCAL INFILE: not followed
                Some(_) => {
                    let (n, _) = lenenc(&p.body).ok_or(DecodeError::Desync)?;
                    self.reading = Some(Reading::Columns(n));
                }
                None => return Err(DecodeError::Desync),
            },
            Reading::Columns(n) => {
                if n > 0 {
                    self.reading = Some(Reading::Columns(n - 1));
                } else if is_eof(&p) && p.len == 5 {
                    // The EOF after the column definitions (without DEPRECATE_EOF).
                    self.reading = Some(Reading::Rows);
                } else if is_eof(&p) {
                    let more = status(&p.body, p.len) & MORE_RESULTS != 0;
                    self.result(end, None, more, cx);
                } else {
                    self.reading = Some(Reading::Rows);
                }
            }
            Reading::Rows => {
                if first == Some(0xff) {
                    let code = p.body.get(1..3).map_or(0, |c| u16::from_le_bytes([c[0], c[1]]));
                    self.result(end, Some(code.to_string()), false, cx);
                } else if is_eof(&p) {
                    let more = status(&p.body, p.len) & MORE_RESULTS != 0;
                    self.result(end, None, more, cx);
                }
            }
            Reading::Definitions(n) => {
                if is_eof(&p) && p.len == 5 {
                    // Between the parameters and the columns.
                } else if n > 1 {
                    self.reading = Some(Reading::Definitions(n - 1));
                } else {
                    self.reading = None;
                    self.queue.pop_front();
                    self.maybe_eof = !self.deprecate_eof;
                }
            }
        }
        Ok(Verdict::Continue)
    }

    fn remember(&mut self, id: u32, text: Option<String>, cx: &mut Ctx<'_>) {
        if !self.statements.contains_key(&id) {
            if self.statements.len() >= MAX_STATEMENTS {
                if let Some(old) = self.order.pop_front() {
                    self.statements.remove(&old);
                    cx.error(DecodeError::Evicted);
                }
            }
            self.order.push_back(id);
        }
        self.statements.insert(id, text);
    }
}

/// The database a `USE db` statement selects.
fn use_database(text: &str) -> Option<String> {
    let t = text.trim().trim_end_matches(';').trim();
    let (kw, rest) = t.split_once(char::is_whitespace)?;
    let db = rest.trim().trim_matches('`');
    (kw.eq_ignore_ascii_case("use") && !db.is_empty() && !db.contains(char::is_whitespace)).then(|| db.to_string())
}

impl Parser for Mysql {
    fn feed(&mut self, ev: &SockData, cx: &mut Ctx<'_>) -> Verdict {
        let client = (ev.direction == Direction::Recv) == (cx.role() == Role::Server);
        let mut packets = Vec::new();
        let t = Transfer::of(ev);
        if self.packets[usize::from(!client)].feed(&t, ev.ts_ns, ev.tid, &mut packets).is_err() {
            cx.error(DecodeError::Desync);
            self.abandon_all(cx);
            return Verdict::Stop;
        }
        for p in packets {
            let r = if client { self.on_client(p, cx) } else { self.on_server(p, cx) };
            match r {
                Ok(Verdict::Continue) => {}
                Ok(Verdict::Stop) => {
                    self.abandon_all(cx);
                    return Verdict::Stop;
                }
                Err(e) => {
                    cx.error(e);
                    self.abandon_all(cx);
                    return Verdict::Stop;
                }
            }
        }
        Verdict::Continue
    }

    fn close(&mut self, cx: &mut Ctx<'_>) {
        if self.queue.iter().any(|c| matches!(c, Command::Query { .. } | Command::Execute { .. })) {
            cx.error(DecodeError::ClosedMidMessage);
        }
        self.abandon_all(cx);
    }

    fn busy(&self) -> bool {
        !self.queue.is_empty()
    }

    fn read_too_early(&self, role: Option<Role>, ev: &SockData) -> bool {
        // An answer read before the event of the write that sent its command (a greeting
        // comes unasked: sequence 0, protocol 10).
        let server = &self.packets[1];
        let at_boundary = server.head.is_empty() && server.left == 0 && !server.continued;
        role == Some(Role::Client)
            && self.queue.is_empty()
            && !self.authenticating
            && !self.greeted
            && at_boundary
            && ev.data.len() >= 5
            && !(ev.data[3] == 0 && ev.data[4] == 0x0a)
    }

    fn takes_held(&self, role: Option<Role>) -> bool {
        role != Some(Role::Client) || !self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests;
