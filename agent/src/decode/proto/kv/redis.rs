//! Redis (RESP2 and RESP3): one operation per command, answered by the next reply in order.
//!
//! Commands are arrays of bulk strings (what every client library and `redis-cli` send; the
//! inline form typed into telnet is not decoded). Replies are matched to commands in order,
//! so N commands pipelined in one write are N operations with their own replies. RESP3 push
//! messages (`>`) are not replies and are skipped. Within `MULTI` each command is reported
//! when it is queued (its reply is `QUEUED`), and `EXEC` when the transaction ran.
//!
//! Connection set-up is not reported: `AUTH`, `HELLO`, and `CLIENT` `SETINFO`, `SETNAME`,
//! `MAINT_NOTIFICATIONS`, `TRACKING`, `NO-EVICT`, `NO-TOUCH` (what client libraries send on
//! connect; arguments, passwords among them, are never reported). A RESP2 connection that
//! subscribes (`SUBSCRIBE`, `PSUBSCRIBE`, `SSUBSCRIBE`) carries only messages from then on:
//! it is not decoded further; on RESP3 the subscriptions' messages are pushes, skipped.
//!
//! Only a command's name, its first argument's length and its argument count are kept:
//! `db.query.text` is the command with each argument replaced by `?` (`SET ? ?`). A command
//! whose framing was not captured (pipelines of more than a transfer's copy, 2 KiB) makes the
//! replies unmatchable: the connection is counted (`desync`) and not decoded further. Large
//! values are fine: their bytes are skipped by their declared length.
use std::collections::VecDeque;

use super::command_name;
use crate::decode::context::TraceContext;
use crate::decode::proto::Transfer;
use crate::decode::proto::{Ctx, Detect, Parser, Protocol, Verdict};
use crate::decode::{AttrValue, DecodeError, Family, Operation, Role};
use crate::events::{Direction, SockData};

/// A line (a simple string, an error, a length) longer than this is not RESP.
const MAX_LINE: usize = 4096;
/// Aggregates nested deeper than this are not a command or a reply a client sent for.
const MAX_DEPTH: usize = 32;
/// Commands sent and not answered yet, per connection (a pipeline of more is not followed).
const MAX_PENDING: usize = 1024;
/// Top-level elements kept of a message (a command's name and subcommand).
const KEEP_ARGS: usize = 2;
/// Bytes kept of each of them.
const KEEP_ARG_BYTES: usize = 64;
/// `?` placeholders written in `db.query.text` before `...`.
const MAX_PLACEHOLDERS: u64 = 8;

pub const PROTOCOL: Protocol = Protocol { name: "redis", detect, parser: || Box::<Redis>::default() };

/// A command written (we call) or read (we serve) claims the connection; a reply first (the
/// agent joined between a command and its reply) leaves it to the next transfer.
fn detect(direction: Direction, data: &[u8]) -> Detect {
    match command_start(data) {
        Some(true) => Detect::Claim(Some(if direction == Direction::Recv { Role::Server } else { Role::Client })),
        Some(false) if data.first().is_some_and(|b| b"+-:$*_,#(!=%~>|".contains(b)) => Detect::Unsure,
        Some(false) => Detect::No,
        None => Detect::Unsure,
    }
}

/// Whether `data` starts with a RESP command (`*<n>\r\n$<len>\r\n<NAME>\r\n`); `None` when it
/// is too short to tell.
fn command_start(data: &[u8]) -> Option<bool> {
    fn number(data: &[u8], at: usize) -> Option<Result<(u64, usize), ()>> {
        let digits = data[at.min(data.len())..].iter().take_while(|b| b.is_ascii_digit()).count();
        let end = at + digits;
        if end >= data.len() {
            return if digits > 10 { Some(Err(())) } else { None };
        }
        if digits == 0 || digits > 10 || data[end] != b'\r' {
            return Some(Err(()));
        }
        let n = std::str::from_utf8(&data[at..end]).ok()?.parse().ok()?;
        Some(Ok((n, end)))
    }
    let expect = |at: usize, what: &[u8]| -> Option<bool> {
        let have = &data[at.min(data.len())..];
        let n = have.len().min(what.len());
        if have[..n] != what[..n] {
            Some(false)
        } else if n < what.len() {
            None
        } else {
            Some(true)
        }
    };
    if !expect(0, b"*")? {
        return Some(false);
    }
    let Ok((count, end)) = number(data, 1)? else { return Some(false) };
    if count == 0 || !expect(end, b"\r\n$")? {
        return Some(false);
    }
    let Ok((len, end)) = number(data, end + 3)? else { return Some(false) };
    if len == 0 || len > 32 || !expect(end, b"\r\n")? {
        return Some(false);
    }
    let name = end + 2;
    let have = &data[name.min(data.len())..];
    let n = have.len().min(len as usize);
    if command_name(&have[..n]).is_none() && n > 0 {
        return Some(false);
    }
    if n < len as usize {
        return None;
    }
    expect(name + len as usize, b"\r\n")
}

/// A complete top-level RESP value.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Msg {
    /// Its type byte (`*` for a command).
    kind: u8,
    /// Its first top-level elements (bulk or simple strings), at most `KEEP_ARG_BYTES` each.
    args: Vec<Vec<u8>>,
    /// Elements of a top-level aggregate.
    count: u64,
    /// The first word of an error reply (`ERR`, `WRONGTYPE`).
    error: Option<String>,
    /// Bytes on the wire.
    bytes: u64,
    /// When its first byte came.
    start_ns: u64,
    /// Its first byte came in a transfer of this thread.
    tid: u32,
    /// A RESP3-only type was seen in it.
    resp3: bool,
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    left: u64,
    /// An attribute (`|`): the value it annotates is still to come.
    attr: bool,
}

/// One direction's byte stream cut into RESP values.
#[derive(Debug, Default)]
struct Reader {
    line: Vec<u8>,
    stack: Vec<Frame>,
    /// Bytes of a bulk payload (with its CRLF) still to come.
    payload: u64,
    /// The payload's bytes being kept (a top-level element, an error), if it is kept.
    keep: Option<Vec<u8>>,
    /// The type of the bulk being read (`$`, `!`, `=`).
    bulk: u8,
    msg: Option<Msg>,
}

/// The stream cannot be followed further.
#[derive(Debug)]
struct Lost;

impl Reader {
    fn feed(&mut self, t: &Transfer<'_>, ts_ns: u64, tid: u32, out: &mut Vec<Msg>) -> Result<(), Lost> {
        self.known(t.data, ts_ns, tid, out)?;
        if t.missing > 0 {
            // Only a payload's bytes can be skipped: framing is needed to follow.
            if self.payload < t.missing {
                return Err(Lost);
            }
            if let Some(m) = &mut self.msg {
                m.bytes += t.missing;
            }
            self.payload -= t.missing;
            if let Some(k) = &mut self.keep {
                k.truncate(KEEP_ARG_BYTES);
            }
            if self.payload == 0 {
                self.payload_done(out);
            }
        }
        self.known(t.tail, ts_ns, tid, out)
    }

    fn known(&mut self, mut data: &[u8], ts_ns: u64, tid: u32, out: &mut Vec<Msg>) -> Result<(), Lost> {
        while !data.is_empty() {
            if self.msg.is_none() {
                self.msg = Some(Msg { start_ns: ts_ns, tid, ..Msg::default() });
            }
            let took = if self.payload > 0 { self.take_payload(data, out) } else { self.take_line(data, out)? };
            data = &data[took..];
        }
        Ok(())
    }

    fn take_payload(&mut self, data: &[u8], out: &mut Vec<Msg>) -> usize {
        let n = (self.payload as usize).min(data.len());
        if let Some(k) = &mut self.keep {
            let room = (KEEP_ARG_BYTES + 2).saturating_sub(k.len());
            k.extend_from_slice(&data[..n.min(room)]);
        }
        self.payload -= n as u64;
        if let Some(m) = &mut self.msg {
            m.bytes += n as u64;
        }
        if self.payload == 0 {
            self.payload_done(out);
        }
        n
    }

    fn payload_done(&mut self, out: &mut Vec<Msg>) {
        let mut kept = self.keep.take();
        if let Some(k) = &mut kept {
            // The CRLF, if it was kept (a value of KEEP_ARG_BYTES or less).
            if k.ends_with(b"\r\n") {
                k.truncate(k.len() - 2);
            }
            k.truncate(KEEP_ARG_BYTES);
        }
        let bulk = self.bulk;
        self.value(bulk, kept, out);
    }

    fn take_line(&mut self, data: &[u8], out: &mut Vec<Msg>) -> Result<usize, Lost> {
        let (took, complete) = match data.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (data.len(), false),
        };
        if self.line.len() + took > MAX_LINE {
            return Err(Lost);
        }
        self.line.extend_from_slice(&data[..took]);
        if let Some(m) = &mut self.msg {
            m.bytes += took as u64;
        }
        if complete {
            let mut line = std::mem::take(&mut self.line);
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            self.on_line(&line, out)?;
            self.line = line;
            self.line.clear();
        }
        Ok(took)
    }

    fn on_line(&mut self, line: &[u8], out: &mut Vec<Msg>) -> Result<(), Lost> {
        let Some((&t, rest)) = line.split_first() else { return Err(Lost) };
        if matches!(t, b'_' | b',' | b'#' | b'(' | b'!' | b'=' | b'%' | b'~' | b'>' | b'|') {
            if let Some(m) = &mut self.msg {
                m.resp3 = true;
            }
        }
        let top = self.stack.iter().all(|f| f.attr);
        match t {
            b'*' | b'%' | b'~' | b'>' | b'|' => {
                let n = int(rest)?;
                if top && t != b'|' {
                    if let Some(m) = &mut self.msg {
                        m.kind = t;
                        m.count = n.max(0) as u64;
                    }
                }
                let n = if matches!(t, b'%' | b'|') { n.saturating_mul(2) } else { n };
                if n <= 0 {
                    if t != b'|' {
                        self.element_done(out);
                    }
                } else {
                    if self.stack.len() >= MAX_DEPTH {
                        return Err(Lost);
                    }
                    self.stack.push(Frame { left: n as u64, attr: t == b'|' });
                }
            }
            b'$' | b'!' | b'=' => {
                let n = int(rest)?;
                if n < 0 {
                    self.value(t, None, out);
                } else {
                    self.bulk = t;
                    self.payload = n as u64 + 2;
                    self.keep = (self.keeping() || (top && t == b'!')).then(Vec::new);
                }
            }
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {
                let kept = self.keeping().then(|| rest[..rest.len().min(KEEP_ARG_BYTES)].to_vec());
                let kept = if t == b'-' && top { Some(rest.to_vec()) } else { kept };
                self.value(t, kept, out);
            }
            _ => return Err(Lost),
        }
        Ok(())
    }

    /// Whether the value starting now is one of the first top-level elements of an array.
    fn keeping(&self) -> bool {
        self.stack.len() == 1 && !self.stack[0].attr && self.msg.as_ref().is_some_and(|m| m.args.len() < KEEP_ARGS)
    }

    /// A bulk or simple value of type `t` ended (`kept`: its bytes, if kept).
    fn value(&mut self, t: u8, kept: Option<Vec<u8>>, out: &mut Vec<Msg>) {
        let top = self.stack.iter().all(|f| f.attr);
        if let Some(m) = &mut self.msg {
            if top {
                m.kind = t;
                if matches!(t, b'-' | b'!') {
                    let text = kept.as_deref().unwrap_or_default();
                    let word = text.split(|b| *b == b' ').next().unwrap_or_default();
                    m.error = Some(String::from_utf8_lossy(word).into_owned());
                }
            } else if let Some(k) = kept {
                m.args.push(k);
            }
        }
        self.element_done(out);
    }

    fn element_done(&mut self, out: &mut Vec<Msg>) {
        loop {
            let Some(f) = self.stack.last_mut() else {
                out.extend(self.msg.take());
                return;
            };
            f.left -= 1;
            if f.left > 0 {
                return;
            }
            let attr = f.attr;
            self.stack.pop();
            if attr {
                // The attribute is done; the value it annotates follows.
                return;
            }
        }
    }
}

fn int(s: &[u8]) -> Result<i64, Lost> {
    std::str::from_utf8(s).ok().and_then(|s| s.parse().ok()).ok_or(Lost)
}

/// A command sent and not answered yet.
#[derive(Debug)]
struct Pending {
    tid: u32,
    start_ns: u64,
    name: String,
    /// Arguments after the name.
    args: u64,
    bytes: u64,
    /// Reported (connection set-up and subscriptions are not).
    trace: Option<TraceContext>,
    /// A RESP2 subscription: after its reply the connection carries messages only.
    subscribes: bool,
}

/// One Redis connection.
#[derive(Debug, Default)]
pub struct Redis {
    /// Commands (index 0) and replies (index 1).
    readers: [Reader; 2],
    pending: VecDeque<Pending>,
    resp3: bool,
}

impl Redis {
    fn lost(&mut self, why: DecodeError, cx: &mut Ctx<'_>) -> Verdict {
        cx.error(why);
        self.abandon_all(cx);
        Verdict::Stop
    }

    fn abandon_all(&mut self, cx: &mut Ctx<'_>) {
        for p in self.pending.drain(..) {
            if let Some(t) = &p.trace {
                cx.abandon(t);
            }
        }
    }

    fn on_command(&mut self, m: Msg, cx: &mut Ctx<'_>) -> Result<(), DecodeError> {
        let name = match (m.kind, m.args.first()) {
            (b'*', Some(n)) => command_name(n).ok_or(DecodeError::Desync)?,
            _ => return Err(DecodeError::Desync),
        };
        let sub = m.args.get(1).map(|s| String::from_utf8_lossy(s).to_ascii_uppercase()).unwrap_or_default();
        let setup = matches!(name.as_str(), "AUTH" | "HELLO")
            || (name == "CLIENT"
                && matches!(
                    sub.as_str(),
                    "SETINFO" | "SETNAME" | "MAINT_NOTIFICATIONS" | "TRACKING" | "NO-EVICT" | "NO-TOUCH"
                ));
        if name == "HELLO" && sub == "3" {
            self.resp3 = true;
        }
        let subscription = matches!(
            name.as_str(),
            "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE" | "UNSUBSCRIBE" | "PUNSUBSCRIBE" | "SUNSUBSCRIBE"
        );
        if subscription && self.resp3 {
            // Its confirmations are pushes: no reply to wait for.
            return Ok(());
        }
        if self.pending.len() >= MAX_PENDING {
            return Err(DecodeError::Evicted);
        }
        let trace = (!setup && !subscription).then(|| cx.begin(m.tid, 0, None));
        self.pending.push_back(Pending {
            tid: m.tid,
            start_ns: m.start_ns,
            name,
            args: m.count.saturating_sub(1),
            bytes: m.bytes,
            trace,
            subscribes: subscription && !self.resp3,
        });
        Ok(())
    }

    /// A reply; `false` when the connection carries only subscription messages from now on.
    fn on_reply(&mut self, m: Msg, end_ns: u64, cx: &mut Ctx<'_>) -> bool {
        self.resp3 |= m.resp3;
        if m.kind == b'>' {
            return true;
        }
        let Some(p) = self.pending.pop_front() else {
            cx.error(DecodeError::MissedRequest);
            return true;
        };
        if p.subscribes {
            return false;
        }
        let Some(trace) = p.trace else { return true };
        let mut text = p.name.clone();
        for _ in 0..p.args.min(MAX_PLACEHOLDERS) {
            text.push_str(" ?");
        }
        if p.args > MAX_PLACEHOLDERS {
            text.push_str(" ...");
        }
        let mut attributes = vec![
            ("db.system.name", AttrValue::Str("redis".into())),
            ("db.operation.name", AttrValue::Str(p.name.clone())),
            ("db.query.text", AttrValue::Str(text)),
        ];
        if let Some(e) = &m.error {
            attributes.push(("db.response.status_code", AttrValue::Str(e.clone())));
        }
        let op = Operation { family: Family::Db, name: p.name, attributes, error: m.error };
        cx.emit_operation(p.tid, p.start_ns, end_ns, (p.bytes, m.bytes), trace, op);
        true
    }
}

impl Parser for Redis {
    fn feed(&mut self, ev: &SockData, cx: &mut Ctx<'_>) -> Verdict {
        let commands = (ev.direction == Direction::Recv) == (cx.role() == Role::Server);
        let mut msgs = Vec::new();
        let t = Transfer::of(ev);
        if self.readers[usize::from(!commands)].feed(&t, ev.ts_ns, ev.tid, &mut msgs).is_err() {
            return self.lost(DecodeError::Desync, cx);
        }
        for m in msgs {
            if commands {
                if let Err(e) = self.on_command(m, cx) {
                    return self.lost(e, cx);
                }
            } else if !self.on_reply(m, ev.ts_ns, cx) {
                // Subscribed (RESP2): only messages from now on.
                self.abandon_all(cx);
                return Verdict::Stop;
            }
        }
        Verdict::Continue
    }

    fn close(&mut self, cx: &mut Ctx<'_>) {
        if self.pending.iter().any(|p| p.trace.is_some()) {
            cx.error(DecodeError::ClosedMidMessage);
        }
        self.abandon_all(cx);
    }

    fn busy(&self) -> bool {
        !self.pending.is_empty()
    }

    fn read_too_early(&self, role: Option<Role>, ev: &SockData) -> bool {
        super::answer_too_early(role, self.pending.is_empty(), ev)
    }

    fn takes_held(&self, role: Option<Role>) -> bool {
        super::takes_held_answers(role, self.pending.is_empty())
    }
}

#[cfg(test)]
mod tests;
