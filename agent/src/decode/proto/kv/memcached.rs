//! Memcached, text protocol: one operation per command line, answered in order.
//!
//! Retrieval (`get`, `gets`, `gat`, `gats`: one operation however many keys, answered by
//! `VALUE` blocks and `END`), storage (`set`, `add`, `replace`, `append`, `prepend`, `cas`,
//! followed by their data block), `delete`, `incr`, `decr`, `touch`, `flush_all`, `stats`,
//! `version`, `verbosity`. A command sent with `noreply` gets no answer: it is reported when
//! it was written, with no duration. `ERROR`, `CLIENT_ERROR` and `SERVER_ERROR` are errors; a
//! miss (`NOT_FOUND`, `NOT_STORED`, `EXISTS`) is not. Keys and values are never kept:
//! `db.query.text` is the command with each key replaced by `?`. The meta protocol (`mg`,
//! `ms`, ...) and the binary protocol are not decoded.
use std::collections::VecDeque;

use crate::decode::context::TraceContext;
use crate::decode::proto::Transfer;
use crate::decode::proto::{Ctx, Detect, Parser, Protocol, Verdict};
use crate::decode::{AttrValue, DecodeError, Family, Operation, Role};
use crate::events::{Direction, SockData};

/// A command or reply line longer than this is not followed (a multi-key `get` of ~100 keys
/// fits; what one transfer's copy holds, 2 KiB, is the practical bound).
const MAX_LINE: usize = 8192;
/// Commands sent and not answered yet, per connection.
const MAX_PENDING: usize = 1024;
/// `?` placeholders written in `db.query.text` before `...`.
const MAX_PLACEHOLDERS: usize = 8;

pub const PROTOCOL: Protocol = Protocol { name: "memcached", detect, parser: || Box::<Memcached>::default() };

/// What answers a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// `VALUE` blocks, then `END`.
    Values,
    /// `STAT` lines, then `END`.
    Stats,
    /// One line.
    Line,
}

/// The command of a request line: its name, what answers it, whether a data block follows
/// (its length), how many keys it names, and `noreply`.
struct Command<'a> {
    name: &'a str,
    answer: Answer,
    data: Option<u64>,
    keys: usize,
    noreply: bool,
}

fn parse_command(line: &[u8]) -> Option<Command<'_>> {
    let text = std::str::from_utf8(line).ok()?;
    if !text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return None;
    }
    let mut words = text.split(' ').filter(|w| !w.is_empty());
    let name = words.next()?;
    let args: Vec<&str> = words.collect();
    let noreply = args.last() == Some(&"noreply");
    let number = |i: usize| args.get(i).and_then(|a| a.parse::<u64>().ok());
    let (answer, data, keys) = match name {
        "get" | "gets" if !args.is_empty() => (Answer::Values, None, args.len()),
        "gat" | "gats" if args.len() >= 2 => (Answer::Values, None, args.len() - 1),
        "set" | "add" | "replace" | "append" | "prepend" if args.len() >= 4 => (Answer::Line, Some(number(3)?), 1),
        "cas" if args.len() >= 5 => (Answer::Line, Some(number(3)?), 1),
        "delete" if !args.is_empty() => (Answer::Line, None, 1),
        "incr" | "decr" if args.len() >= 2 => (Answer::Line, None, 1),
        "touch" if args.len() >= 2 => (Answer::Line, None, 1),
        "flush_all" | "version" | "verbosity" | "quit" => (Answer::Line, None, 0),
        "stats" => (Answer::Stats, None, 0),
        _ => return None,
    };
    Some(Command { name, answer, data, keys, noreply })
}

/// The commands that can start a connection's first line (see `detect`).
const COMMANDS: &[&[u8]] = &[
    b"get", b"gets", b"gat", b"gats", b"set", b"add", b"replace", b"append", b"prepend", b"cas", b"delete", b"incr",
    b"decr", b"touch", b"stats",
];

/// A command line written (we call) or read (we serve) claims the connection.
fn detect(direction: Direction, data: &[u8]) -> Detect {
    let Some(end) = data.windows(2).position(|w| w == b"\r\n") else {
        // Too short to tell, if it starts like a command.
        let word = data.split(|b| *b == b' ').next().unwrap_or_default();
        let whole = data.len() > word.len();
        let plausible = COMMANDS.iter().any(|c| if whole { *c == word } else { c.starts_with(word) });
        return if plausible && data.len() < MAX_LINE { Detect::Unsure } else { Detect::No };
    };
    match parse_command(&data[..end]) {
        // `quit`, `version`, `verbosity` alone say too little to claim a connection.
        Some(c) if c.keys > 0 || c.answer == Answer::Stats => {
            Detect::Claim(Some(if direction == Direction::Recv { Role::Server } else { Role::Client }))
        }
        _ => Detect::No,
    }
}

/// One direction's lines, and the data blocks that follow some of them.
#[derive(Debug, Default)]
struct Lines {
    line: Vec<u8>,
    /// Bytes of a data block (with its CRLF) still to come.
    payload: u64,
}

#[derive(Debug)]
struct Lost;

impl Lines {
    /// Calls `on_line` for each complete line (without its CRLF), which returns the length
    /// of the data block that follows it (0 for none).
    fn feed(&mut self, t: &Transfer<'_>, mut on_line: impl FnMut(&[u8]) -> Result<u64, Lost>) -> Result<(), Lost> {
        self.known(t.data, &mut on_line)?;
        // Only a data block's bytes can be skipped: lines are needed to follow.
        if t.missing > self.payload {
            return Err(Lost);
        }
        self.payload -= t.missing;
        self.known(t.tail, &mut on_line)
    }

    fn known(&mut self, mut data: &[u8], on_line: &mut impl FnMut(&[u8]) -> Result<u64, Lost>) -> Result<(), Lost> {
        while !data.is_empty() {
            if self.payload > 0 {
                let n = (self.payload as usize).min(data.len());
                self.payload -= n as u64;
                data = &data[n..];
                continue;
            }
            let (took, complete) = match data.iter().position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (data.len(), false),
            };
            if self.line.len() + took > MAX_LINE {
                return Err(Lost);
            }
            self.line.extend_from_slice(&data[..took]);
            data = &data[took..];
            if complete {
                let mut line = std::mem::take(&mut self.line);
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.payload = on_line(&line)?;
                line.clear();
                self.line = line;
            }
        }
        Ok(())
    }
}

/// A command sent and not answered yet.
#[derive(Debug)]
struct Pending {
    tid: u32,
    start_ns: u64,
    name: String,
    keys: usize,
    answer: Answer,
    trace: Option<TraceContext>,
    bytes: u64,
}

/// One Memcached connection.
#[derive(Debug, Default)]
pub struct Memcached {
    /// Commands (index 0) and replies (index 1).
    lines: [Lines; 2],
    pending: VecDeque<Pending>,
    /// Bytes of the reply in progress.
    reply_bytes: u64,
}

fn emit(p: Pending, end_ns: u64, reply_bytes: u64, error: Option<String>, cx: &mut Ctx<'_>) {
    let Some(trace) = p.trace else { return };
    let mut text = p.name.clone();
    for _ in 0..p.keys.min(MAX_PLACEHOLDERS) {
        text.push_str(" ?");
    }
    if p.keys > MAX_PLACEHOLDERS {
        text.push_str(" ...");
    }
    let mut attributes = vec![
        ("db.system.name", AttrValue::Str("memcached".into())),
        ("db.operation.name", AttrValue::Str(p.name.clone())),
        ("db.query.text", AttrValue::Str(text)),
    ];
    if let Some(e) = &error {
        attributes.push(("db.response.status_code", AttrValue::Str(e.clone())));
    }
    let op = Operation { family: Family::Db, name: p.name, attributes, error };
    cx.emit_operation(p.tid, p.start_ns, end_ns, (p.bytes, reply_bytes), trace, op);
}

impl Memcached {
    fn abandon_all(&mut self, cx: &mut Ctx<'_>) {
        for p in self.pending.drain(..) {
            if let Some(t) = &p.trace {
                cx.abandon(t);
            }
        }
    }

    fn stop(&mut self, why: DecodeError, cx: &mut Ctx<'_>) -> Verdict {
        cx.error(why);
        self.abandon_all(cx);
        Verdict::Stop
    }
}

impl Parser for Memcached {
    fn feed(&mut self, ev: &SockData, cx: &mut Ctx<'_>) -> Verdict {
        let commands = (ev.direction == Direction::Recv) == (cx.role() == Role::Server);
        let t = Transfer::of(ev);
        let mut failed = None;
        let result = if commands {
            let pending = &mut self.pending;
            self.lines[0].feed(&t, |line| {
                let Some(c) = parse_command(line) else {
                    failed = Some(DecodeError::Desync);
                    return Err(Lost);
                };
                let data = c.data.map_or(0, |n| n + 2);
                if c.name == "quit" {
                    return Ok(data);
                }
                let trace = Some(cx.begin(ev.tid, 0, None));
                let p = Pending {
                    tid: ev.tid,
                    start_ns: ev.ts_ns,
                    name: c.name.to_string(),
                    keys: c.keys,
                    answer: c.answer,
                    trace,
                    bytes: line.len() as u64 + 2 + data,
                };
                if c.noreply {
                    emit(p, ev.ts_ns, 0, None, cx);
                } else if pending.len() >= MAX_PENDING {
                    if let Some(t) = &p.trace {
                        cx.abandon(t);
                    }
                    failed = Some(DecodeError::Evicted);
                    return Err(Lost);
                } else {
                    pending.push_back(p);
                }
                Ok(data)
            })
        } else {
            let (pending, reply_bytes) = (&mut self.pending, &mut self.reply_bytes);
            self.lines[1].feed(&t, |line| {
                *reply_bytes += line.len() as u64 + 2;
                let Some(p) = pending.front() else {
                    cx.error(DecodeError::MissedRequest);
                    return Ok(0);
                };
                let word = line.split(|b| *b == b' ').next().unwrap_or_default();
                let error = match word {
                    b"ERROR" | b"CLIENT_ERROR" | b"SERVER_ERROR" => Some(String::from_utf8_lossy(word).into_owned()),
                    _ => None,
                };
                let (done, data) = match (p.answer, word) {
                    (_, _) if error.is_some() => (true, 0),
                    (Answer::Values, b"VALUE") => {
                        let len = std::str::from_utf8(line)
                            .ok()
                            .and_then(|l| l.split(' ').nth(3))
                            .and_then(|n| n.parse::<u64>().ok());
                        match len {
                            Some(n) => (false, n + 2),
                            None => {
                                failed = Some(DecodeError::Desync);
                                return Err(Lost);
                            }
                        }
                    }
                    (Answer::Stats, b"STAT") => (false, 0),
                    (Answer::Values | Answer::Stats, b"END") | (Answer::Line, _) => (true, 0),
                    _ => {
                        failed = Some(DecodeError::Desync);
                        return Err(Lost);
                    }
                };
                *reply_bytes += data;
                if done {
                    let p = pending.pop_front().expect("front checked above");
                    emit(p, ev.ts_ns, std::mem::take(reply_bytes), error, cx);
                }
                Ok(data)
            })
        };
        if result.is_err() {
            return self.stop(failed.unwrap_or(DecodeError::Desync), cx);
        }
        Verdict::Continue
    }

    fn close(&mut self, cx: &mut Ctx<'_>) {
        if !self.pending.is_empty() {
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
