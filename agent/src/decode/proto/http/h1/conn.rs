//! One HTTP/1.x connection. Its two directions are read on their own, and the requests read
//! wait in order for their responses (RFC 9112 §9.3.2), so that pipelined requests, several
//! messages in one transfer, a `100 Continue` before the body, and a response that starts
//! before its request's body ended all pair up right. Each message ends by its own framing,
//! never by the next message's arrival, except where the framing is unknown.
use std::collections::VecDeque;

use super::chunked::{Chunked, Span};
use super::{Framing, HeadError, RequestHead, MAX_HEAD};
use crate::decode::context::TraceContext;
use crate::decode::{DecodeError, Role};
use crate::events::{Direction, SockData};

/// Requests waiting for their responses at most (pipelined); beyond it the oldest is dropped.
const MAX_QUEUE: usize = 64;

/// A request whose head was read.
#[derive(Debug, Clone)]
pub struct ReqMeta {
    pub tid: u32,
    pub method: String,
    pub target: String,
    pub host: Option<String>,
    pub traceparent: Option<String>,
    /// Set right after the head is read (see `Tracker::on_data`).
    pub trace: Option<TraceContext>,
    pub start_ns: u64,
    pub body_size: u64,
    /// Handler start, from the Go probes (`Tracker::on_go_handler_start`).
    pub handler_start: Option<u64>,
    /// The request's or the response's head was cut short: body sizes unknown.
    pub truncated: bool,
}

impl ReqMeta {
    /// A request whose head was read (`truncated`: only its first part).
    fn new(h: RequestHead, tid: u32, start_ns: u64, truncated: bool) -> Self {
        ReqMeta {
            tid,
            method: h.method,
            target: h.target,
            host: h.host,
            traceparent: h.traceparent,
            trace: None,
            start_ns,
            body_size: 0,
            handler_start: None,
            truncated,
        }
    }
}

/// A request and its response, both complete.
#[derive(Debug)]
pub struct Exchange {
    pub req: ReqMeta,
    pub status: u16,
    pub response_body_size: u64,
    pub end_ns: u64,
}

/// What a transfer produced, besides decode errors.
#[derive(Debug, Default)]
pub struct Output {
    pub done: Vec<Exchange>,
    /// Requests read whose response will not be reported (their trace context is let go).
    pub dropped: Vec<ReqMeta>,
}

/// What the connection carries after a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fed {
    Http,
    /// Its first bytes are not HTTP/1.x.
    NotHttp,
    /// A `101 Switching Protocols` answered: what follows is not HTTP/1.x.
    Upgraded,
}

/// A message body being read.
#[derive(Debug)]
struct Body {
    framing: Framing,
    seen: u64,
    chunks: Chunked,
}

impl Body {
    fn new(framing: Framing) -> Self {
        Body { framing, seen: 0, chunks: Chunked::default() }
    }

    /// Feeds the next bytes; returns how many of them are the body's when it ends among them.
    fn feed(&mut self, span: Span<'_>) -> Option<u64> {
        let end = match self.framing {
            Framing::Empty => Some(0),
            Framing::Length(n) => Some(n - self.seen).filter(|left| *left <= span.len),
            Framing::Chunked => self.chunks.feed(span),
            Framing::UntilClose => None,
        };
        self.seen += end.unwrap_or(span.len);
        end
    }
}

#[derive(Debug, Default)]
enum ReqSide {
    #[default]
    Idle,
    Head {
        head: Vec<u8>,
        start_ns: u64,
        tid: u32,
    },
    /// The body of the newest request; `attached`: that request still waits for its response
    /// (otherwise it was answered before its body ended, and the next transfer may start a
    /// new request).
    Body {
        body: Body,
        attached: bool,
    },
    /// The rest of a request whose head was cut short: ignored until its response.
    Unknown,
}

#[derive(Debug, Default)]
enum RespSide {
    #[default]
    Idle,
    Head(Vec<u8>),
    Body {
        status: u16,
        body: Body,
        last_ns: u64,
    },
}

#[derive(Debug, Default)]
pub struct Http1 {
    req: ReqSide,
    resp: RespSide,
    /// Requests read and not yet answered, oldest first.
    queue: VecDeque<ReqMeta>,
    /// The last message failed to decode: its reply is expected, not a missed request.
    failed: bool,
    /// Answered before its body was all read (a `return` in nginx, a 413): reported when the
    /// body ends, the next request starts or the connection closes, so that its body size
    /// is the body's.
    answered_early: Option<Box<Exchange>>,
}

/// The direction requests travel for a connection in `role` (not yet known: either).
pub fn request_direction(role: Option<Role>) -> Direction {
    match role {
        Some(Role::Client) => Direction::Send,
        _ => Direction::Recv,
    }
}

impl Http1 {
    /// Requests read and not yet answered, oldest first.
    pub fn waiting(&mut self) -> impl Iterator<Item = &mut ReqMeta> {
        self.queue.iter_mut()
    }

    /// The oldest request not yet answered (the one a sequential server is serving).
    pub fn oldest(&mut self) -> Option<&mut ReqMeta> {
        self.queue.front_mut()
    }

    /// Nothing read that is not finished.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
            && self.answered_early.is_none()
            && matches!(self.req, ReqSide::Idle)
            && matches!(self.resp, RespSide::Idle)
    }

    pub fn has_waiting(&self) -> bool {
        !self.queue.is_empty()
    }

    /// A server that read whole requests and owes their responses (its next read comes after
    /// them, unless the response's end is only known when the next request starts).
    pub fn owes_response(&self) -> bool {
        !self.queue.is_empty()
            && matches!(self.req, ReqSide::Idle)
            && !matches!(self.resp, RespSide::Body { body: Body { framing: Framing::UntilClose, .. }, .. })
    }

    /// Decodes one transfer. `role` is set by the first request seen.
    pub fn feed(
        &mut self,
        ev: &SockData,
        role: &mut Option<Role>,
        out: &mut Output,
        errors: &mut Vec<DecodeError>,
    ) -> Fed {
        let before = errors.len();
        if role.is_none() {
            let data = ev.data.as_slice();
            if super::is_request_start(data) {
                *role = Some(if ev.direction == Direction::Recv { Role::Server } else { Role::Client });
            } else if super::is_response_start(data) {
                // Joined mid-exchange: wait for the next request.
                errors.push(DecodeError::MissedRequest);
                return Fed::Http;
            } else {
                errors.push(DecodeError::NotHttp);
                return Fed::NotHttp;
            }
        }
        let fed = if ev.direction == request_direction(*role) {
            self.read_requests(ev, out, errors);
            Fed::Http
        } else {
            self.read_responses(ev, out, errors)
        };
        if errors.len() > before {
            self.failed = true;
        }
        fed
    }

    fn read_requests(&mut self, ev: &SockData, out: &mut Output, errors: &mut Vec<DecodeError>) {
        let (data, len) = bytes(ev);
        let mut pos = 0u64;
        while pos < len {
            let captured = data.get(pos as usize..).unwrap_or_default();
            let span = Span { captured, len: len - pos, tail: &ev.tail };
            match std::mem::take(&mut self.req) {
                // Answered before its body ended, and the client moved on.
                ReqSide::Body { attached: false, .. } if pos == 0 && super::is_request_start(captured) => {
                    out.done.extend(self.answered_early.take().map(|b| *b));
                }
                ReqSide::Body { mut body, attached } => {
                    let end = body.feed(span);
                    let owner = match (attached, &mut self.answered_early) {
                        (true, _) => self.queue.back_mut(),
                        (false, early) => early.as_mut().map(|ex| &mut ex.req),
                    };
                    if let Some(r) = owner {
                        r.body_size = body.seen;
                    }
                    match end {
                        Some(used) => {
                            pos += used;
                            out.done.extend(self.answered_early.take().map(|b| *b));
                        }
                        None => {
                            self.req = ReqSide::Body { body, attached };
                            return;
                        }
                    }
                }
                ReqSide::Unknown => {
                    self.req = ReqSide::Unknown;
                    return;
                }
                ReqSide::Idle => {
                    if captured.is_empty() {
                        // Messages may follow past what the transfer copied: not seen.
                        errors.push(DecodeError::Uncaptured);
                        return;
                    }
                    if !super::is_request_start(captured) {
                        return; // body bytes of a message joined in the middle
                    }
                    // A response without a length ends when the next request starts.
                    if let RespSide::Body { status, body: Body { framing: Framing::UntilClose, seen, .. }, last_ns } =
                        self.resp
                    {
                        self.resp = RespSide::Idle;
                        self.answer(status, seen, last_ns, out);
                    }
                    self.failed = false;
                    self.req = ReqSide::Head { head: Vec::new(), start_ns: ev.ts_ns, tid: ev.tid };
                }
                ReqSide::Head { mut head, start_ns, tid } => {
                    let before = head.len();
                    head.extend_from_slice(captured);
                    match super::parse_request(&head) {
                        Ok(h) => {
                            pos += (h.len - before) as u64;
                            let framing = h.framing;
                            self.push(ReqMeta::new(h, tid, start_ns, false), out, errors);
                            if framing != Framing::Empty {
                                self.req = ReqSide::Body { body: Body::new(framing), attached: true };
                            }
                        }
                        Err(HeadError::Partial) if span.whole() && head.len() <= MAX_HEAD => {
                            self.req = ReqSide::Head { head, start_ns, tid };
                            return;
                        }
                        // More head than was captured (a large Cookie or JWT): the request
                        // still counts, with what was read; its body is not followed (its
                        // framing header may be past the cut), its response ends it.
                        Err(HeadError::Partial) => {
                            self.truncated_request(&head, tid, start_ns, out, errors);
                            if pos > 0 {
                                // Cut inside a batch of requests: more may follow unseen.
                                errors.push(DecodeError::Uncaptured);
                            }
                            return;
                        }
                        Err(HeadError::Malformed) => {
                            errors.push(DecodeError::Malformed);
                            return;
                        }
                    }
                }
            }
        }
    }

    fn truncated_request(
        &mut self,
        head: &[u8],
        tid: u32,
        start_ns: u64,
        out: &mut Output,
        errors: &mut Vec<DecodeError>,
    ) {
        match super::parse_truncated_request(head) {
            Some(h) => {
                errors.push(DecodeError::HeadersTruncated);
                self.push(ReqMeta::new(h, tid, start_ns, true), out, errors);
                self.req = ReqSide::Unknown;
            }
            None => errors.push(DecodeError::HeadersTooLarge),
        }
    }

    fn read_responses(&mut self, ev: &SockData, out: &mut Output, errors: &mut Vec<DecodeError>) -> Fed {
        let (data, len) = bytes(ev);
        let mut pos = 0u64;
        while pos < len {
            let captured = data.get(pos as usize..).unwrap_or_default();
            let span = Span { captured, len: len - pos, tail: &ev.tail };
            match std::mem::take(&mut self.resp) {
                RespSide::Idle => {
                    if captured.is_empty() {
                        if self.has_waiting() {
                            errors.push(DecodeError::Uncaptured);
                        }
                        return Fed::Http;
                    }
                    if !super::is_response_start(captured) {
                        if self.has_waiting() {
                            errors.push(DecodeError::Malformed);
                            self.drop_oldest(out);
                        }
                        return Fed::Http;
                    }
                    if self.queue.is_empty() {
                        // Answered before its head was all read (e.g. 400 or 431 for a head too
                        // large): the request counts with what was read.
                        if let ReqSide::Head { head, start_ns, tid } = std::mem::take(&mut self.req) {
                            self.truncated_request(&head, tid, start_ns, out, errors);
                        }
                    }
                    if self.queue.is_empty() {
                        // The reply to a request that could not be decoded (counted already),
                        // or the connection was joined mid-exchange.
                        if !self.failed {
                            errors.push(DecodeError::MissedRequest);
                        }
                        return Fed::Http;
                    }
                    self.resp = RespSide::Head(Vec::new());
                }
                RespSide::Head(mut head) => {
                    let Some(req) = self.queue.front_mut() else { return Fed::Http };
                    let before = head.len();
                    head.extend_from_slice(captured);
                    match super::parse_response(&head, &req.method) {
                        // An interim response (100 Continue): the final one follows.
                        Ok(h) if (100..200).contains(&h.status) && h.status != 101 => pos += (h.len - before) as u64,
                        Ok(h) if h.status == 101 => {
                            self.answer(101, 0, ev.ts_ns, out);
                            return Fed::Upgraded;
                        }
                        Ok(h) => {
                            pos += (h.len - before) as u64;
                            if h.framing == Framing::Empty {
                                self.answer(h.status, 0, ev.ts_ns, out);
                                continue;
                            }
                            self.resp =
                                RespSide::Body { status: h.status, body: Body::new(h.framing), last_ns: ev.ts_ns };
                            if self.queue.len() == 1 && matches!(self.req, ReqSide::Unknown) {
                                self.req = ReqSide::Idle;
                            }
                        }
                        Err(HeadError::Partial) if span.whole() && head.len() <= MAX_HEAD => {
                            self.resp = RespSide::Head(head);
                            return Fed::Http;
                        }
                        // A response head longer than was captured: its status counts; its body
                        // is taken to end with the connection or the next request.
                        Err(HeadError::Partial) => {
                            match super::parse_truncated_response(&head, &req.method) {
                                Some(h) => {
                                    errors.push(DecodeError::HeadersTruncated);
                                    req.truncated = true;
                                    let body = Body::new(Framing::UntilClose);
                                    self.resp = RespSide::Body { status: h.status, body, last_ns: ev.ts_ns };
                                    if self.queue.len() == 1 && matches!(self.req, ReqSide::Unknown) {
                                        self.req = ReqSide::Idle;
                                    }
                                }
                                None => {
                                    errors.push(DecodeError::HeadersTooLarge);
                                    self.drop_oldest(out);
                                }
                            }
                            return Fed::Http;
                        }
                        Err(HeadError::Malformed) => {
                            errors.push(DecodeError::Malformed);
                            self.drop_oldest(out);
                            return Fed::Http;
                        }
                    }
                }
                RespSide::Body { status, mut body, .. } => match body.feed(span) {
                    Some(used) => {
                        pos += used;
                        self.answer(status, body.seen, ev.ts_ns, out);
                    }
                    None => {
                        self.resp = RespSide::Body { status, body, last_ns: ev.ts_ns };
                        return Fed::Http;
                    }
                },
            }
        }
        Fed::Http
    }

    /// The oldest request got its whole response.
    fn answer(&mut self, status: u16, response_body_size: u64, end_ns: u64, out: &mut Output) {
        let Some(req) = self.queue.pop_front() else { return };
        let ex = Exchange { req, status, response_body_size, end_ns };
        if !self.queue.is_empty() {
            out.done.push(ex);
            return;
        }
        match &mut self.req {
            ReqSide::Body { attached: attached @ true, .. } => {
                *attached = false;
                out.done.extend(self.answered_early.replace(Box::new(ex)).map(|b| *b));
            }
            ReqSide::Unknown => {
                self.req = ReqSide::Idle;
                out.done.push(ex);
            }
            _ => out.done.push(ex),
        }
    }

    fn push(&mut self, req: ReqMeta, out: &mut Output, errors: &mut Vec<DecodeError>) {
        if self.queue.len() >= MAX_QUEUE {
            errors.push(DecodeError::Evicted);
            self.drop_oldest(out);
        }
        self.queue.push_back(req);
    }

    fn drop_oldest(&mut self, out: &mut Output) {
        if let Some(r) = self.queue.pop_front() {
            out.dropped.push(r);
        }
        if self.queue.is_empty() {
            if let ReqSide::Body { attached, .. } = &mut self.req {
                *attached = false;
            }
        }
    }

    /// The connection closed: a response without a length ends here; anything else still
    /// waiting is lost.
    pub fn close(mut self, out: &mut Output, errors: &mut Vec<DecodeError>) {
        out.done.extend(self.answered_early.take().map(|b| *b));
        if let RespSide::Body { status, body: Body { framing: Framing::UntilClose, seen, .. }, last_ns } = self.resp {
            self.resp = RespSide::Idle;
            self.answer(status, seen, last_ns, out);
        }
        if matches!(self.req, ReqSide::Head { .. }) {
            errors.push(DecodeError::ClosedMidMessage);
        }
        while let Some(r) = self.queue.pop_front() {
            errors.push(DecodeError::ClosedMidMessage);
            out.dropped.push(r);
        }
    }
}

/// The captured bytes of a transfer (never more than it moved) and how many it moved.
fn bytes(ev: &SockData) -> (&[u8], u64) {
    let len = u64::from(ev.len);
    (&ev.data[..ev.data.len().min(ev.len as usize)], len)
}
