//! One parser per protocol, grouped by family (`http/h1`, `http/h2`), behind one interface.
//!
//! A connection is sniffed from its first bytes (either direction) by each protocol of
//! [`PROTOCOLS`] in order, until one claims it; a protocol that cannot tell yet is asked again
//! at the next transfer, one that said no is not (the per-connection memory of rejections).
//! When every protocol said no, the connection is counted once (`not_http`) and ignored until
//! it closes. The claiming protocol's [`Parser`] then gets every transfer of the connection,
//! in order, and reports through [`Ctx`]: an operation gets its trace context when it begins
//! (so that calls made while it runs find it), and is emitted when it ends.
//!
//! Adding a protocol: a folder `proto/<family>/<proto>` with its parser and a [`Protocol`]
//! constant, and one row in [`PROTOCOLS`]. Its operations are [`Request`]s whose `operation`
//! ([`super::Operation`]) says its family, span name and attributes; docs/architecture.md has
//! the steps.
pub mod http;
pub mod kv;
pub mod sql;

use std::net::SocketAddr;

use super::context::{ConnRef, Correlator, TraceContext};
use super::{DecodeError, DecodeOptions, Decoded, Operation, Request, Role};
use crate::events::{Direction, Goroutine, SockData};

/// A transfer as the capture saw it: its first bytes, bytes it did not copy, its last bytes.
pub(crate) struct Transfer<'a> {
    pub data: &'a [u8],
    /// Bytes of the transfer after `data` that were not copied.
    pub missing: u64,
    /// The transfer's last bytes after the missing ones (the capture's tail, less what
    /// `data` already holds): a large value's end and what follows it in the same read.
    pub tail: &'a [u8],
}

impl<'a> Transfer<'a> {
    pub fn of(ev: &'a SockData) -> Self {
        let after = u64::from(ev.len).saturating_sub(ev.data.len() as u64);
        let tail = &ev.tail[ev.tail.len().saturating_sub(after as usize)..];
        Transfer { data: &ev.data, missing: after - tail.len() as u64, tail }
    }
}

/// What a protocol says about a connection's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detect {
    /// Its protocol; the role when the bytes tell it (a request read: the server side).
    Claim(Option<Role>),
    /// Not its protocol: it is not asked again for this connection.
    No,
    /// Cannot tell from these bytes: asked again at the next transfer.
    Unsure,
}

/// A protocol the decoder knows: how it recognises a connection and makes its parser.
pub struct Protocol {
    pub name: &'static str,
    pub detect: fn(Direction, &[u8]) -> Detect,
    pub parser: fn() -> Box<dyn Parser>,
}

/// Detection order: the most specific first (the HTTP/2 preface starts like an HTTP/1.x
/// request line with method `PRI`).
pub const PROTOCOLS: &[Protocol] = &[
    http::h2::PROTOCOL,
    http::h1::PROTOCOL,
    kv::redis::PROTOCOL,
    kv::memcached::PROTOCOL,
    sql::postgres::PROTOCOL,
    sql::mysql::PROTOCOL,
];

/// What the parser says after a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep feeding this connection.
    Continue,
    /// Nothing more can be decoded (not this protocol after all, an upgrade, lost bytes): the
    /// connection is ignored until it closes. The parser counted why.
    Stop,
}

/// One connection's decoder.
pub trait Parser: Send {
    /// One transfer of the connection, in order.
    fn feed(&mut self, ev: &SockData, cx: &mut Ctx<'_>) -> Verdict;
    /// The connection ended (closed, expired, evicted, its socket reused): report what is
    /// complete, count what is not and let go of its trace contexts.
    fn close(&mut self, cx: &mut Ctx<'_>);
    /// Operations begun and not finished (an evicted busy connection is counted).
    fn busy(&self) -> bool;
    /// Go probes: the handler of the request in flight on `stream` (0 without streams)
    /// started at `ts_ns` (server side only).
    fn handler_started(&mut self, _stream: u32, _ts_ns: u64) {}
    /// Whether `ev`, a read, came before its turn and is to be held (see `decode::reorder`).
    fn read_too_early(&self, _role: Option<Role>, _ev: &SockData) -> bool {
        false
    }
    /// Whether the reads held so far can be decoded now.
    fn takes_held(&self, _role: Option<Role>) -> bool {
        true
    }
}

/// The connection a parser decodes.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub pid: u32,
    pub sock: u64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// TLS plaintext (from the Go crypto/tls probes): `https`.
    pub tls: bool,
}

/// What a parser reports to: the connection's role, the trace correlator, the batch's output.
pub struct Ctx<'a> {
    pub conn: &'a ConnInfo,
    /// Unknown until the first message tells it; a parser sets it.
    pub role: &'a mut Option<Role>,
    pub(crate) correlator: &'a mut Correlator,
    pub out: &'a mut Decoded,
    pub options: DecodeOptions,
    /// Go programs: the request the goroutine that last wrote on the connection serves (see
    /// [`Goroutine`]), for the operations that write begins.
    pub(crate) goroutine: Option<Goroutine>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(
        conn: &'a ConnInfo,
        role: &'a mut Option<Role>,
        correlator: &'a mut Correlator,
        out: &'a mut Decoded,
        options: DecodeOptions,
    ) -> Self {
        Ctx { conn, role, correlator, out, options, goroutine: None }
    }

    /// The role, the server side while unknown.
    pub fn role(&self) -> Role {
        self.role.unwrap_or(Role::Server)
    }

    /// An operation begun by thread `tid` (on HTTP/2 stream `stream`, else 0): its trace
    /// context, linked to what this thread serves or to its incoming `traceparent`.
    pub fn begin(&mut self, tid: u32, stream: u32, traceparent: Option<&str>) -> TraceContext {
        let c = self.conn;
        let at = ConnRef { pid: c.pid, tid, sock: c.sock, stream, local: c.local, remote: c.remote };
        let role = self.role();
        self.correlator.begin_from(at, role, traceparent, self.goroutine)
    }

    /// An operation that will not be reported: its trace context is let go.
    pub fn abandon(&mut self, trace: &TraceContext) {
        let role = self.role();
        self.correlator.abandon(role, trace);
    }

    /// Emits an operation of a protocol other than HTTP (`op` says all about it): begun by
    /// thread `tid` at `start_ns` with `trace`, ended at `end_ns`, `sizes` bytes (request,
    /// response) on the wire.
    pub fn emit_operation(
        &mut self,
        tid: u32,
        start_ns: u64,
        end_ns: u64,
        sizes: (u64, u64),
        trace: TraceContext,
        op: Operation,
    ) {
        let c = self.conn;
        let r = Request {
            pid: c.pid,
            tid,
            role: self.role(),
            method: String::new(),
            target: String::new(),
            status: 0,
            start_ns,
            end_ns,
            request_body_size: sizes.0,
            response_body_size: sizes.1,
            local: c.local,
            remote: c.remote,
            host: None,
            traceparent: None,
            trace,
            grpc_status: None,
            stream: 0,
            tls: c.tls,
            handler: None,
            body_sizes_unknown: false,
            operation: Some(Box::new(op)),
        };
        self.emit(r);
    }

    pub fn emit(&mut self, r: Request) {
        self.out.requests.push(r);
    }

    pub fn error(&mut self, e: DecodeError) {
        self.out.errors.push(e);
    }
}
