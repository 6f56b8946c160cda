//! PostgreSQL, frontend/backend protocol v3: one operation per executed statement.
//!
//! The simple protocol (`Query`, several statements in one text: one operation each, in the
//! order their `CommandComplete` come; an error ends the text's execution) and the extended
//! one (`Parse`/`Bind`/`Execute`/`Sync`, named and unnamed statements, pipelined batches: one
//! operation per `Execute` that completes; preparing alone is not an operation). `COPY` is
//! one operation whatever data flows. An `ErrorResponse` fails the statement it answers (its
//! SQLSTATE is `error.type` and `db.response.status_code`). The `SSLRequest` answered `N`
//! continues in plaintext (answered `S`, the connection is TLS and not decoded); a
//! `CancelRequest` connection carries no operation.
//!
//! A statement prepared before the agent saw it has no text: its executions are reported with
//! the operation its `CommandComplete` tag names, without `db.query.text` or a table, and
//! counted (`unknown_statement`). A read that ends with a large value's last bytes and the
//! messages after it (`CommandComplete`, `ReadyForQuery`) holds them past what the capture
//! copies (2 KiB and an 8-byte tail): when its last bytes are the `ReadyForQuery`, the
//! operations it answered are counted as `uncaptured` and decoding goes on after it;
//! otherwise the connection is counted as `desync` and not decoded further. The client's
//! messages past the copy (COPY data written in large pieces) are skipped likewise, counted
//! as `uncaptured`, until the server has answered all it was sent. Statements remembered per connection are capped
//! (`MAX_STATEMENTS`, the oldest forgotten and counted as `evicted`). Passwords (`PasswordMessage`,
//! SASL) are skipped by their length, never read; of the startup parameters only `database` is
//! kept (`db.namespace`). Message bodies beyond `MAX_KEPT` bytes (rows, COPY data) cost
//! nothing: they are skipped by length.
use std::collections::{HashMap, VecDeque};

use super::{emit_statement, operation, split_statements, Statement};
use crate::decode::context::TraceContext;
use crate::decode::proto::{Ctx, Detect, Parser, Protocol, Transfer, Verdict};
use crate::decode::{DecodeError, Role};
use crate::events::{Direction, SockData};

const PROTOCOL_3: u32 = 196_608;
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
/// Bytes kept of a message's body (a query text, a tag, an error's fields).
const MAX_KEPT: usize = 4096;
/// A message longer than this is not PostgreSQL (the server's own limit is 1 GiB).
const MAX_MESSAGE: u64 = 1 << 30;
/// Prepared statements and portals remembered per connection.
const MAX_STATEMENTS: usize = 256;
/// Messages awaiting their answer per connection.
const MAX_QUEUE: usize = 4096;
/// Statements followed in one query text.
const MAX_SPLIT: usize = 64;

pub const PROTOCOL: Protocol = Protocol { name: "postgresql", detect, parser: || Box::<Postgres>::default() };

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A startup-phase request (startup, SSL, GSS encryption, cancel), or a `Query`/`Parse` on a
/// connection joined after its start.
fn detect(direction: Direction, data: &[u8]) -> Detect {
    let claim = Detect::Claim(Some(if direction == Direction::Recv { Role::Server } else { Role::Client }));
    if data.len() < 8 {
        return if data.first().is_some_and(|b| *b == 0 || *b == b'Q' || *b == b'P') {
            Detect::Unsure
        } else {
            Detect::No
        };
    }
    let (len, code) = (be32(&data[..4]), be32(&data[4..8]));
    let startup = match code {
        SSL_REQUEST | GSSENC_REQUEST => len == 8,
        CANCEL_REQUEST => len == 16,
        PROTOCOL_3 => (9..=10_000).contains(&len),
        _ => false,
    };
    if startup {
        return claim;
    }
    if matches!(data[0], b'Q' | b'P') && typed_query(data) {
        return claim;
    }
    Detect::No
}

/// A whole `Query` or `Parse` message at the start of `data` whose text reads as SQL.
fn typed_query(data: &[u8]) -> bool {
    let len = be32(&data[1..5]) as usize;
    if len < 6 || 1 + len > data.len() || data[len] != 0 {
        return false;
    }
    let body = &data[5..1 + len];
    let text = match data[0] {
        b'Q' => &body[..body.len() - 1],
        _ => {
            // Parse: statement name, query, parameter types.
            let Some(name_end) = body.iter().position(|b| *b == 0) else { return false };
            let rest = &body[name_end + 1..];
            let Some(q_end) = rest.iter().position(|b| *b == 0) else { return false };
            &rest[..q_end]
        }
    };
    let Ok(text) = std::str::from_utf8(text) else { return false };
    !text.contains('\0') && operation(text).is_some()
}

/// One message: its type (0 for the untyped startup-phase ones), its body's first bytes.
#[derive(Debug)]
struct Msg {
    kind: u8,
    body: Vec<u8>,
    /// The body was kept whole.
    whole: bool,
    start_ns: u64,
    tid: u32,
}

/// One direction's bytes cut into messages.
#[derive(Debug, Default)]
struct Frames {
    /// The next message has no type byte (the client's startup-phase requests).
    untyped: bool,
    /// The next message is a single byte (the server's answer to an SSL or GSS request).
    single: bool,
    head: Vec<u8>,
    kind: u8,
    body: Vec<u8>,
    /// Body bytes still to come.
    left: u64,
    lost_body: bool,
    start_ns: u64,
    tid: u32,
}

/// The stream cannot be followed further.
#[derive(Debug)]
struct Lost;

/// Bytes with message headers in them were not captured, and the transfer ends with a
/// `ReadyForQuery`: what it answered is unknown, but the stream is followed again after it.
#[derive(Debug)]
struct Resync;

/// A `ReadyForQuery` message (`Z`, length 5, a transaction status).
fn is_ready(b: &[u8]) -> bool {
    b.len() == 6 && b[..5] == *b"Z\0\0\0\x05" && matches!(b[5], b'I' | b'T' | b'E')
}

impl Frames {
    fn feed(&mut self, t: &Transfer<'_>, ts: u64, tid: u32, out: &mut Vec<Msg>) -> Result<(), Result<Resync, Lost>> {
        self.known(t.data, ts, tid, out).map_err(Err)?;
        if t.missing > 0 {
            // Only a body's bytes can be skipped: headers are needed to follow.
            if self.left < t.missing {
                if t.tail.len() >= 6 && is_ready(&t.tail[t.tail.len() - 6..]) {
                    *self = Frames::default();
                    return Err(Ok(Resync));
                }
                return Err(Err(Lost));
            }
            self.left -= t.missing;
            self.lost_body = true;
            if self.left == 0 {
                self.finish(out);
            }
        }
        self.known(t.tail, ts, tid, out).map_err(Err)
    }

    fn known(&mut self, mut data: &[u8], ts: u64, tid: u32, out: &mut Vec<Msg>) -> Result<(), Lost> {
        while !data.is_empty() {
            if self.left > 0 {
                let n = (self.left as usize).min(data.len());
                let room = MAX_KEPT.saturating_sub(self.body.len());
                self.body.extend_from_slice(&data[..n.min(room)]);
                if n > room {
                    self.lost_body = true;
                }
                self.left -= n as u64;
                data = &data[n..];
                if self.left == 0 {
                    self.finish(out);
                }
                continue;
            }
            if self.head.is_empty() {
                self.start_ns = ts;
                self.tid = tid;
            }
            if self.single {
                self.single = false;
                out.push(Msg { kind: data[0], body: Vec::new(), whole: true, start_ns: ts, tid });
                data = &data[1..];
                continue;
            }
            let need = if self.untyped { 4 } else { 5 };
            let n = (need - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.head.len() < need {
                continue;
            }
            self.kind = if self.untyped { 0 } else { self.head[0] };
            let len = u64::from(be32(&self.head[need - 4..]));
            self.untyped = false;
            self.head.clear();
            if !(4..=MAX_MESSAGE).contains(&len) {
                return Err(Lost);
            }
            self.left = len - 4;
            if self.left == 0 {
                self.finish(out);
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<Msg>) {
        out.push(Msg {
            kind: self.kind,
            body: std::mem::take(&mut self.body),
            whole: !std::mem::take(&mut self.lost_body),
            start_ns: self.start_ns,
            tid: self.tid,
        });
    }
}

/// A statement of a query text, or the statement an `Execute` runs, while it runs.
#[derive(Debug)]
struct Running {
    /// Its text, when the agent saw it.
    text: Option<String>,
    trace: TraceContext,
}

/// What the client sent that the server answers, in order.
#[derive(Debug)]
enum Item {
    /// A simple query: its statements not finished yet, and when the next one started.
    Query {
        statements: VecDeque<Running>,
        start_ns: u64,
        tid: u32,
    },
    Parse,
    Bind,
    Describe,
    Close,
    Execute {
        run: Running,
        start_ns: u64,
        tid: u32,
    },
    Sync,
    /// A function call (answered by `FunctionCallResponse`).
    Function,
}

/// One PostgreSQL connection.
#[derive(Debug, Default)]
pub struct Postgres {
    /// The client's messages (index 0) and the server's (index 1).
    frames: [Frames; 2],
    started: bool,
    queue: VecDeque<Item>,
    /// Prepared statements by name (`""`: the unnamed one), in the order they were prepared.
    statements: HashMap<Vec<u8>, Option<String>>,
    order: VecDeque<Vec<u8>>,
    /// Bound portals by name: the text of their statement, if known.
    portals: HashMap<Vec<u8>, Option<String>>,
    /// `database` of the startup message.
    database: Option<String>,
    /// The client's framing was lost (COPY data past the copy): its bytes are skipped until
    /// the server has answered all it was sent.
    client_lost: bool,
}

/// The NUL-terminated string at the start of `b`, and what follows it.
fn cstr(b: &[u8]) -> (&[u8], &[u8]) {
    match b.iter().position(|c| *c == 0) {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &[]),
    }
}

impl Postgres {
    fn abandon(cx: &mut Ctx<'_>, item: Item) {
        match item {
            Item::Query { statements, .. } => statements.iter().for_each(|r| cx.abandon(&r.trace)),
            Item::Execute { run, .. } => cx.abandon(&run.trace),
            _ => {}
        }
    }

    fn abandon_all(&mut self, cx: &mut Ctx<'_>) {
        while let Some(item) = self.queue.pop_front() {
            Self::abandon(cx, item);
        }
    }

    fn push(&mut self, item: Item, cx: &mut Ctx<'_>) -> Result<(), DecodeError> {
        if self.queue.len() >= MAX_QUEUE {
            Self::abandon(cx, item);
            return Err(DecodeError::Evicted);
        }
        self.queue.push_back(item);
        Ok(())
    }

    fn on_client(&mut self, m: Msg, cx: &mut Ctx<'_>) -> Result<(), DecodeError> {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match m.kind {
            0 => {
                let code = if m.body.len() >= 4 { be32(&m.body) } else { 0 };
                match code {
                    SSL_REQUEST | GSSENC_REQUEST => {
                        self.frames[1].single = true;
                        self.frames[0].untyped = true;
                    }
                    PROTOCOL_3 => {
                        self.started = true;
                        let mut rest = &m.body[4..];
                        while !rest.is_empty() {
                            let (k, r) = cstr(rest);
                            let (v, r) = cstr(r);
                            // The database is the user's own unless named.
                            if k == b"database" || (k == b"user" && self.database.is_none()) {
                                self.database = Some(text(v));
                            }
                            rest = r;
                        }
                    }
                    _ => {}
                }
            }
            b'Q' => {
                let body = m.body.strip_suffix(&[0]).unwrap_or(&m.body);
                let statements = split_statements(&text(body), MAX_SPLIT)
                    .into_iter()
                    .map(|s| Running { text: Some(s), trace: cx.begin(m.tid, 0, None) })
                    .collect();
                self.push(Item::Query { statements, start_ns: m.start_ns, tid: m.tid }, cx)?;
            }
            b'P' => {
                let (name, rest) = cstr(&m.body);
                let (query, _) = cstr(rest);
                // A text cut short is not guessed at.
                let known = (m.whole || rest.contains(&0)).then(|| text(query));
                self.remember(name.to_vec(), known, cx);
                self.push(Item::Parse, cx)?;
            }
            b'B' => {
                let (portal, rest) = cstr(&m.body);
                let (stmt, _) = cstr(rest);
                let known = self.statements.get(stmt).cloned().flatten();
                if self.portals.len() >= MAX_STATEMENTS && !self.portals.contains_key(portal) {
                    self.portals.clear();
                }
                self.portals.insert(portal.to_vec(), known);
                self.push(Item::Bind, cx)?;
            }
            b'E' => {
                let (portal, _) = cstr(&m.body);
                let text = self.portals.get(portal).cloned().flatten();
                let run = Running { text, trace: cx.begin(m.tid, 0, None) };
                self.push(Item::Execute { run, start_ns: m.start_ns, tid: m.tid }, cx)?;
            }
            b'D' => self.push(Item::Describe, cx)?,
            b'C' => {
                let (what, name) = m.body.split_first().map_or((0, &[][..]), |(w, r)| (*w, cstr(r).0));
                if what == b'S' {
                    self.statements.remove(name);
                    self.order.retain(|n| n != name);
                } else {
                    self.portals.remove(name);
                }
                self.push(Item::Close, cx)?;
            }
            b'S' => self.push(Item::Sync, cx)?,
            b'F' => self.push(Item::Function, cx)?,
            // Flush, Terminate, COPY data from the client, passwords and SASL: no answer to wait for.
            b'H' | b'X' | b'd' | b'c' | b'f' | b'p' => {}
            _ => return Err(DecodeError::Desync),
        }
        Ok(())
    }

    fn remember(&mut self, name: Vec<u8>, text: Option<String>, cx: &mut Ctx<'_>) {
        if !self.statements.contains_key(&name) {
            if self.statements.len() >= MAX_STATEMENTS {
                if let Some(old) = self.order.pop_front() {
                    self.statements.remove(&old);
                    cx.error(DecodeError::Evicted);
                }
            }
            self.order.push_back(name.clone());
        }
        self.statements.insert(name, text);
    }

    fn emit(
        &self,
        cx: &mut Ctx<'_>,
        run: Running,
        tid: u32,
        span: (u64, u64),
        tag: Option<&[u8]>,
        error: Option<String>,
    ) {
        let tag = tag.map(|t| String::from_utf8_lossy(t).into_owned());
        let st = Statement {
            system: "postgresql",
            text: run.text.as_deref(),
            completed_as: tag.as_deref(),
            namespace: self.database.as_deref(),
            error,
        };
        emit_statement(cx, st, tid, span, run.trace);
    }

    fn on_server(&mut self, m: Msg, cx: &mut Ctx<'_>) -> Result<Verdict, DecodeError> {
        let end = m.start_ns;
        match m.kind {
            // The answer to an SSL or GSS encryption request (single bytes).
            b'N' if m.body.is_empty() && !self.started => {}
            b'S' | b'G' if m.body.is_empty() && !self.started => return Ok(Verdict::Stop),
            b'C' | b'I' => {
                let tag = (m.kind == b'C').then(|| cstr(&m.body).0);
                let done = match self.queue.front_mut() {
                    Some(Item::Query { statements, start_ns, tid }) => {
                        let (start, tid) = (*start_ns, *tid);
                        *start_ns = end;
                        (statements.pop_front(), start, tid)
                    }
                    Some(Item::Execute { .. }) => match self.queue.pop_front() {
                        Some(Item::Execute { run, start_ns, tid }) => (Some(run), start_ns, tid),
                        _ => return Err(DecodeError::Desync),
                    },
                    _ => return Err(DecodeError::Desync),
                };
                match (done, tag) {
                    ((Some(run), start, tid), Some(tag)) => self.emit(cx, run, tid, (start, end), Some(tag), None),
                    ((Some(run), _, _), None) => cx.abandon(&run.trace),
                    // More statements ran than the text showed (it was cut): by the tag.
                    ((None, start, tid), Some(tag)) => {
                        let run = Running { text: None, trace: cx.begin(tid, 0, None) };
                        self.emit(cx, run, tid, (start, end), Some(tag), None);
                    }
                    ((None, _, _), None) => {}
                }
            }
            b'E' => self.on_error(&m.body, end, cx),
            b'Z' => {
                // Ends a query, or the batch up to its Sync.
                while let Some(item) = self.queue.pop_front() {
                    let last = matches!(item, Item::Sync | Item::Query { .. });
                    Self::abandon(cx, item);
                    if last {
                        break;
                    }
                }
                // The client, answered everything, starts its next write with a message.
                if self.client_lost && self.queue.is_empty() {
                    self.client_lost = false;
                    self.frames[0] = Frames::default();
                }
            }
            b'1' => self.expect(|i| matches!(i, Item::Parse))?,
            b'2' => self.expect(|i| matches!(i, Item::Bind))?,
            b'3' => self.expect(|i| matches!(i, Item::Close))?,
            b'V' => self.expect(|i| matches!(i, Item::Function))?,
            b'n' | b'T' => {
                if matches!(self.queue.front(), Some(Item::Describe)) {
                    self.queue.pop_front();
                }
            }
            b's' => {
                // A portal suspended: that Execute is done; the one that completes it counts.
                if let Some(Item::Execute { .. }) = self.queue.front() {
                    if let Some(item) = self.queue.pop_front() {
                        Self::abandon(cx, item);
                    }
                }
            }
            // Rows, notices, parameters, keys, authentication, COPY, notifications.
            b'D' | b'N' | b'S' | b'K' | b'R' | b't' | b'A' | b'G' | b'H' | b'W' | b'd' | b'c' | b'v' => {
                self.started = true;
            }
            _ => return Err(DecodeError::Desync),
        }
        Ok(Verdict::Continue)
    }

    /// The front of the queue answered by a message only `is` answers.
    fn expect(&mut self, is: impl Fn(&Item) -> bool) -> Result<(), DecodeError> {
        match self.queue.front() {
            Some(i) if is(i) => {
                self.queue.pop_front();
                Ok(())
            }
            _ => Err(DecodeError::Desync),
        }
    }

    /// An `ErrorResponse`: the statement it answers failed; in the extended protocol the
    /// server skips the rest of the batch until its `Sync`.
    fn on_error(&mut self, body: &[u8], end: u64, cx: &mut Ctx<'_>) {
        let mut code = None;
        let mut rest = body;
        while let Some((&field, r)) = rest.split_first() {
            if field == 0 {
                break;
            }
            let (value, r) = cstr(r);
            if field == b'C' {
                code = Some(String::from_utf8_lossy(value).into_owned());
            }
            rest = r;
        }
        let code = code.unwrap_or_else(|| "unknown".to_string());
        match self.queue.front_mut() {
            Some(Item::Query { statements, start_ns, tid }) => {
                let (start, tid) = (*start_ns, *tid);
                let failed = statements.pop_front();
                // The rest of the text does not run.
                statements.drain(..).for_each(|r| cx.abandon(&r.trace));
                if let Some(run) = failed {
                    self.emit(cx, run, tid, (start, end), None, Some(code));
                }
            }
            Some(_) => {
                let mut failed = None;
                while let Some(item) = self.queue.front() {
                    if matches!(item, Item::Sync) {
                        break;
                    }
                    match self.queue.pop_front() {
                        Some(Item::Execute { run, start_ns, tid }) if failed.is_none() => {
                            failed = Some((run, start_ns, tid))
                        }
                        Some(other) => Self::abandon(cx, other),
                        None => break,
                    }
                }
                if let Some((run, start, tid)) = failed {
                    self.emit(cx, run, tid, (start, end), None, Some(code));
                }
            }
            // An error outside any statement (authentication failed).
            None => {}
        }
    }
}

impl Parser for Postgres {
    fn feed(&mut self, ev: &SockData, cx: &mut Ctx<'_>) -> Verdict {
        let client = (ev.direction == Direction::Recv) == (cx.role() == Role::Server);
        if client && self.client_lost {
            return Verdict::Continue;
        }
        if self.queue.is_empty() && !self.started && client && ev.data.first() == Some(&0) {
            // A connection followed from its start: startup-phase requests first.
            self.frames[0].untyped = true;
        }
        let mut msgs = Vec::new();
        let t = Transfer::of(ev);
        match self.frames[usize::from(!client)].feed(&t, ev.ts_ns, ev.tid, &mut msgs) {
            Ok(()) => {}
            Err(Ok(Resync)) if !client => {
                // What the server answered up to its ReadyForQuery was not seen: those
                // operations are not reported (counted), the ones after them are.
                for m in msgs.drain(..) {
                    if self.on_server(m, cx).is_err() {
                        break;
                    }
                }
                cx.error(DecodeError::Uncaptured);
                let _ = self.on_server(
                    Msg { kind: b'Z', body: b"I".to_vec(), whole: true, start_ns: ev.ts_ns, tid: ev.tid },
                    cx,
                );
                return Verdict::Continue;
            }
            Err(_) if client && !self.queue.is_empty() => {
                // What the client sent is answered in order anyway: followed again once the
                // server answered it all (COPY data, many messages in one write).
                cx.error(DecodeError::Uncaptured);
                self.client_lost = true;
            }
            Err(_) => {
                cx.error(DecodeError::Desync);
                self.abandon_all(cx);
                return Verdict::Stop;
            }
        }
        for m in msgs {
            let r = if client { self.on_client(m, cx).map(|_| Verdict::Continue) } else { self.on_server(m, cx) };
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
        let running = self.queue.iter().any(|i| match i {
            Item::Query { statements, .. } => !statements.is_empty(),
            Item::Execute { .. } => true,
            _ => false,
        });
        if running {
            cx.error(DecodeError::ClosedMidMessage);
        }
        self.abandon_all(cx);
    }

    fn busy(&self) -> bool {
        !self.queue.is_empty()
    }

    fn read_too_early(&self, role: Option<Role>, ev: &SockData) -> bool {
        // A reply read before the event of the write that sent its query.
        // Only what answers a query: the server's own messages after start-up ('R', 'S', 'K',
        // 'Z', notices) come unasked.
        let server = &self.frames[1];
        let at_boundary = server.head.is_empty() && server.left == 0 && !server.single;
        role == Some(Role::Client)
            && self.queue.is_empty()
            && self.started
            && at_boundary
            && ev.data.first().is_some_and(|b| b"TC12In3sD".contains(b))
    }

    fn takes_held(&self, role: Option<Role>) -> bool {
        role != Some(Role::Client) || !self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests;
