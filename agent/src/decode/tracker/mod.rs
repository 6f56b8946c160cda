//! The connection table: each traced connection's parser (the protocol that claimed its first
//! bytes, see [`proto`](super::proto)), the reads held back until their turn, idle expiry and
//! eviction. State is freed on close, expired when idle, and bounded in count, so a flood of
//! connections cannot grow memory without limit.
use foldhash::{HashMap, HashMapExt};

use std::collections::VecDeque;
use std::net::SocketAddr;

use super::context::{ConnRef, Correlator, Finished};
use super::proto::{ConnInfo, Ctx, Detect, Parser, Protocol, Verdict, PROTOCOLS};
use super::reorder::Held;
use super::{DecodeError, DecodeOptions, Decoded, Request, Role};
use crate::events::{Direction, Goroutine, SockData};

/// While no protocol can tell what a connection carries, its short transfers (a header read
/// alone) are kept to be asked again joined with the next ones: at most this many bytes each
/// and in all, so that a connection sniffed for ever (a protocol nobody claims that starts
/// like one) costs little (the connection table holds up to 16k).
const MAX_SNIFF_TRANSFER: usize = 64;
const MAX_SNIFF_BYTES: usize = 256;

/// How long (event time after its end) a server request waits for the call of its client, a
/// process traced on this host, to be reported (see `Correlator::finish_or_wait`): far more
/// than a syscall's return takes, even on a loaded machine.
const LATE_WAIT_NS: u64 = 1_000_000_000;
/// Server requests waiting so at most; the oldest goes unlinked beyond it.
const MAX_LATE: usize = 4096;

#[derive(Debug, Clone, Copy)]
pub struct TrackerLimits {
    /// Connections followed at once; the least recently active is dropped beyond it.
    pub max_connections: usize,
    /// A connection idle this long is forgotten (its request, if any, is reported as timed out).
    pub idle_timeout_ns: u64,
}

impl Default for TrackerLimits {
    fn default() -> Self {
        TrackerLimits { max_connections: 16_384, idle_timeout_ns: 60_000_000_000 }
    }
}

enum State {
    /// No protocol claimed the connection yet; `rejected`: a bit per protocol that said no;
    /// `unsure`: the transfers a protocol could not tell yet (a header read alone), asked
    /// again joined with the next ones of their direction.
    Sniffing {
        rejected: u64,
        unsure: Vec<SockData>,
    },
    Parsing(Box<dyn Parser>),
    /// No protocol's (or no longer decodable): ignored until the connection closes.
    Ignored,
}

struct Conn {
    info: ConnInfo,
    role: Option<Role>,
    state: State,
    last_ns: u64,
    held: Held,
    /// Go programs: the request the goroutine of the last write serves.
    goroutine: Option<Goroutine>,
}

impl Conn {
    fn new(ev: &SockData) -> Self {
        Conn {
            info: ConnInfo { pid: ev.pid, sock: ev.sock_id, local: ev.local, remote: ev.remote, tls: ev.tls },
            role: None,
            state: State::Sniffing { rejected: 0, unsure: Vec::new() },
            last_ns: ev.ts_ns,
            held: Held::default(),
            goroutine: None,
        }
    }
}

pub struct Tracker {
    conns: HashMap<(u32, u64), Conn>,
    /// Each followed connection by its (local, remote) endpoints: whether the other end of a
    /// server's connection is a traced client.
    endpoints: HashMap<(SocketAddr, SocketAddr), (u32, u64)>,
    /// Server requests that ended before their traced client's call was reported, oldest
    /// first (see `Correlator::finish_or_wait`).
    late: VecDeque<Request>,
    limits: TrackerLimits,
    correlator: Correlator,
    protocols: &'static [Protocol],
    options: DecodeOptions,
}

impl Tracker {
    pub fn new(limits: TrackerLimits) -> Self {
        Tracker::with_protocols(limits, PROTOCOLS)
    }

    /// A tracker that knows `protocols` (detection order), instead of [`PROTOCOLS`].
    pub fn with_protocols(limits: TrackerLimits, protocols: &'static [Protocol]) -> Self {
        assert!(protocols.len() <= 64, "one rejection bit per protocol");
        Tracker {
            conns: HashMap::new(),
            endpoints: HashMap::new(),
            late: VecDeque::new(),
            limits,
            correlator: Correlator::default(),
            protocols,
            options: DecodeOptions::default(),
        }
    }

    /// The tracker, decoding as `options` say.
    pub fn with_options(mut self, options: DecodeOptions) -> Self {
        self.options = options;
        self
    }

    /// Asks `is_go` whether a process runs a Go program before linking its client calls by
    /// thread (see [`Correlator`]).
    pub fn set_go_oracle(&mut self, is_go: super::context::GoOracle) {
        self.correlator.set_go_oracle(is_go);
    }

    /// Asks `is_pooled` whether a thread is a work-stealing pool's worker before linking a
    /// call by thread (see [`Correlator`]).
    pub fn set_pool_oracle(&mut self, is_pooled: super::context::PoolOracle) {
        self.correlator.set_pool_oracle(is_pooled);
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    pub fn on_data(&mut self, ev: &SockData, out: &mut Decoded) {
        let key = (ev.pid, ev.sock_id);
        if !self.conns.contains_key(&key) && self.conns.len() >= self.limits.max_connections {
            self.evict_oldest(out);
        }
        let conn = self.conns.entry(key).or_insert_with(|| {
            self.endpoints.insert((ev.local, ev.remote), key);
            Conn::new(ev)
        });
        let reset = if !same_connection(conn, ev) {
            // The kernel reused the socket for another connection whose close we missed.
            true
        } else if ev.tls != conn.info.tls {
            if !ev.tls {
                return; // the encrypted bytes of a connection whose plaintext we have
            }
            // The first plaintext: decode from here (the handshake was counted as not HTTP).
            true
        } else {
            false
        };
        if reset {
            let old = std::mem::replace(conn, Conn::new(ev));
            self.let_go(old, out);
            self.endpoints.insert((ev.local, ev.remote), key);
        }
        let protocols = self.protocols;
        let conn = self.conns.get_mut(&key).expect("inserted above");
        conn.last_ns = ev.ts_ns;
        let emitted = out.requests.len();
        if let State::Sniffing { rejected, unsure } = &mut conn.state {
            // What this direction sent so far, whole, then this transfer.
            let earlier: Vec<&SockData> = unsure.iter().filter(|e| e.direction == ev.direction).collect();
            let joined;
            let data: &[u8] = if earlier.is_empty() || earlier.iter().any(|e| e.data.len() != e.len as usize) {
                &ev.data
            } else {
                joined = [earlier.iter().flat_map(|e| e.data.iter().copied()).collect::<Vec<u8>>(), ev.data.clone()]
                    .concat();
                &joined
            };
            match sniff(protocols, rejected, ev.direction, data) {
                Some((p, role)) => {
                    // The transfers of this direction it could not tell from go first.
                    let direction = ev.direction;
                    let backlog: Vec<SockData> =
                        std::mem::take(unsure).into_iter().filter(|e| e.direction == direction).collect();
                    conn.role = conn.role.or(role);
                    conn.state = State::Parsing((p.parser)());
                    out.claimed.push(p.name);
                    for e in &backlog {
                        self.on_data(e, out);
                    }
                }
                None if *rejected == all_rejected(protocols) => {
                    out.errors.push(DecodeError::NotHttp);
                    conn.state = State::Ignored;
                }
                None => {
                    // Asked again at the next transfer, with this one.
                    let kept: usize = unsure.iter().map(|e| e.data.len()).sum();
                    if ev.data.len() > MAX_SNIFF_TRANSFER || kept + ev.data.len() > MAX_SNIFF_BYTES {
                        unsure.clear();
                    } else {
                        unsure.push(ev.clone());
                    }
                }
            }
        }
        let Some(conn) = self.conns.get_mut(&key) else { return };
        let State::Parsing(parser) = &conn.state else { return };
        if conn.held.wants(ev, || parser.read_too_early(conn.role, ev)) {
            if conn.held.hold(ev).is_ok() {
                return;
            }
            // Too much to be a reordering: decode in arrival order.
            self.replay_held(key, out);
        }
        // An event entered before the held reads returned came first: it goes first, then
        // they follow. Otherwise they really came first.
        if self.conns.get(&key).is_some_and(|c| c.held.came_first(ev)) {
            self.replay_held(key, out);
        }
        self.step(key, ev, out);
        let ready = self.conns.get(&key).is_some_and(|c| match &c.state {
            State::Parsing(p) => p.takes_held(c.role),
            _ => true,
        });
        if ready {
            self.replay_held(key, out);
        }
        self.ended(out, emitted);
    }

    /// Decodes the reads held back on a connection.
    fn replay_held(&mut self, key: (u32, u64), out: &mut Decoded) {
        let held = self.conns.get_mut(&key).map(|c| c.held.take()).unwrap_or_default();
        for e in held {
            self.step(key, &e, out);
        }
    }

    /// One event through the connection's parser.
    fn step(&mut self, key: (u32, u64), ev: &SockData, out: &mut Decoded) {
        let Some(conn) = self.conns.get_mut(&key) else { return };
        let State::Parsing(parser) = &mut conn.state else { return };
        if ev.direction == Direction::Send {
            conn.goroutine = ev.goroutine;
            if conn.role == Some(Role::Server) {
                self.correlator.server_wrote(ev.pid, ev.sock_id, ev.tid);
            }
        }
        let mut cx = Ctx::new(&conn.info, &mut conn.role, &mut self.correlator, out, self.options);
        cx.goroutine = conn.goroutine;
        if parser.feed(ev, &mut cx) == Verdict::Stop {
            conn.state = State::Ignored;
        }
    }

    pub fn on_close(&mut self, pid: u32, sock_id: u64, out: &mut Decoded) {
        let emitted = out.requests.len();
        if let Some(conn) = self.conns.remove(&(pid, sock_id)) {
            self.let_go(conn, out);
        }
        self.ended(out, emitted);
    }

    /// Forgets every connection of a process that exited.
    pub fn on_exit(&mut self, pid: u32, out: &mut Decoded) {
        let emitted = out.requests.len();
        let keys: Vec<_> = self.conns.keys().filter(|k| k.0 == pid).copied().collect();
        for k in keys {
            if let Some(conn) = self.conns.remove(&k) {
                self.let_go(conn, out);
            }
        }
        self.ended(out, emitted);
        self.release_late(|r| r.pid == pid, out);
        self.correlator.forget_process(pid);
    }

    /// Drops connections idle since before `now_ns - idle_timeout`.
    pub fn expire(&mut self, now_ns: u64, out: &mut Decoded) {
        let emitted = out.requests.len();
        let deadline = now_ns.saturating_sub(self.limits.idle_timeout_ns);
        let stale: Vec<_> = self.conns.iter().filter(|(_, c)| c.last_ns < deadline).map(|(k, _)| *k).collect();
        for k in stale {
            if let Some(conn) = self.conns.remove(&k) {
                self.let_go(conn, out);
            }
        }
        self.ended(out, emitted);
    }

    /// A Go client call announced by the Go probes (`RawEvent::GoClient`).
    pub fn on_go_client(&mut self, server: (u64, u32), client: ConnRef, written: Option<([u8; 16], [u8; 8])>) {
        self.correlator.go_client(server, client, written);
    }

    /// The Go handler of the request in flight on `server` (its socket, and HTTP/2 stream for
    /// gRPC) started (`trace_id`: the trace id the probes propagate for it, with context
    /// propagation).
    pub fn on_go_handler_start(&mut self, pid: u32, server: (u64, u32), ts_ns: u64, trace_id: Option<[u8; 16]>) {
        if let Some(t) = trace_id {
            self.correlator.go_server_trace(pid, server, t);
        }
        self.correlator.go_handler_started(pid, server, ts_ns);
        let Some(conn) = self.conns.get_mut(&(pid, server.0)) else { return };
        if conn.role != Some(Role::Server) {
            return;
        }
        if let State::Parsing(p) = &mut conn.state {
            p.handler_started(server.1, ts_ns);
        }
    }

    /// Requests emitted since index `from` get their final trace context (links found while
    /// they ran count) and no longer parent new calls. A server request whose client is traced
    /// here but not yet seen waits in `late` instead; those a call adopted meanwhile go out.
    fn ended(&mut self, out: &mut Decoded, from: usize) {
        let mut i = from;
        while let Some(r) = out.requests.get_mut(i) {
            // (A request linked when it began is no root: nothing to wait for.)
            let client_traced =
                r.role == Role::Server && !r.trace.has_parent() && self.endpoints.contains_key(&(r.remote, r.local));
            match self.correlator.finish_or_wait(r.pid, r.tid, r.role, &r.trace, client_traced) {
                Finished::Done(trace) => {
                    r.trace = trace;
                    i += 1;
                }
                // Rare (a race on a loaded machine): the shift is cheap then.
                Finished::Late => self.late.push_back(out.requests.remove(i)),
            }
        }
        let adopted = self.correlator.take_adopted();
        if !adopted.is_empty() {
            self.release_late(|r| adopted.contains(&r.trace.span_id), out);
        }
        while self.late.len() > MAX_LATE {
            self.release_oldest(out);
        }
        out.trace_mismatches += self.correlator.take_mismatches();
        out.unlinked_calls += self.correlator.take_unlinked();
        out.unlinked_requests += self.correlator.take_ambiguous();
    }

    /// Event time reached `watermark_ns`: late server requests whose client's call was not
    /// reported in time go out unlinked (counted), and those a Go call adopted go out linked.
    pub fn on_watermark(&mut self, watermark_ns: u64, out: &mut Decoded) {
        let adopted = self.correlator.take_adopted();
        if !adopted.is_empty() {
            self.release_late(|r| adopted.contains(&r.trace.span_id), out);
        }
        // Oldest first (they were queued as they ended).
        while self.late.front().is_some_and(|r| r.end_ns.saturating_add(LATE_WAIT_NS) <= watermark_ns) {
            self.release_oldest(out);
        }
        out.unlinked_requests += self.correlator.take_ambiguous();
    }

    fn release_oldest(&mut self, out: &mut Decoded) {
        if let Some(r) = self.late.pop_front() {
            let trace = self.correlator.release(&r.trace, r.local, r.remote, r.stream);
            out.requests.push(Request { trace, ..r });
        }
    }

    /// Everything still waiting goes out (the agent stops).
    pub fn flush(&mut self, out: &mut Decoded) {
        self.release_late(|_| true, out);
    }

    /// The late server requests `which` picks (visited oldest first) get their final context
    /// and go out.
    fn release_late(&mut self, mut which: impl FnMut(&Request) -> bool, out: &mut Decoded) {
        if self.late.is_empty() {
            return;
        }
        for r in std::mem::take(&mut self.late) {
            if which(&r) {
                let trace = self.correlator.release(&r.trace, r.local, r.remote, r.stream);
                out.requests.push(Request { trace, ..r });
            } else {
                self.late.push_back(r);
            }
        }
        out.unlinked_requests += self.correlator.take_ambiguous();
    }

    /// A connection that ended (closed, expired, evicted, its socket reused): what it still
    /// carried is reported if complete, counted if not, and its requests let go of.
    fn let_go(&mut self, mut conn: Conn, out: &mut Decoded) {
        let ends = (conn.info.local, conn.info.remote);
        if self.endpoints.get(&ends) == Some(&(conn.info.pid, conn.info.sock)) {
            self.endpoints.remove(&ends);
        }
        if let State::Parsing(mut parser) = std::mem::replace(&mut conn.state, State::Ignored) {
            let mut cx = Ctx::new(&conn.info, &mut conn.role, &mut self.correlator, out, self.options);
            parser.close(&mut cx);
        }
    }

    fn evict_oldest(&mut self, out: &mut Decoded) {
        // Linear scan: only runs when the table is full, which is the pathological case.
        if let Some(k) = self.conns.iter().min_by_key(|(_, c)| c.last_ns).map(|(k, _)| *k) {
            if let Some(conn) = self.conns.remove(&k) {
                if matches!(&conn.state, State::Parsing(p) if p.busy()) {
                    out.errors.push(DecodeError::Evicted);
                }
                let mut ignored = Decoded::default();
                self.let_go(conn, &mut ignored);
            }
        }
    }
}

/// The first protocol (in detection order, skipping those that said no before) that claims
/// the connection from `ev`'s bytes, and the role it saw; the ones saying no are remembered.
fn sniff(
    protocols: &'static [Protocol],
    rejected: &mut u64,
    direction: Direction,
    data: &[u8],
) -> Option<(&'static Protocol, Option<Role>)> {
    for (i, p) in protocols.iter().enumerate() {
        if *rejected & (1 << i) != 0 {
            continue;
        }
        match (p.detect)(direction, data) {
            Detect::Claim(role) => return Some((p, role)),
            Detect::No => *rejected |= 1 << i,
            Detect::Unsure => {}
        }
    }
    None
}

fn all_rejected(protocols: &[Protocol]) -> u64 {
    if protocols.len() >= 64 {
        u64::MAX
    } else {
        (1u64 << protocols.len()) - 1
    }
}

/// Whether `ev` belongs to the connection `conn` follows. A closing socket loses its local
/// port (the kernel unhashes it), so a zero port matches any.
fn same_connection(conn: &Conn, ev: &SockData) -> bool {
    let port_ok = |a: u16, b: u16| a == b || a == 0 || b == 0;
    let c = &conn.info;
    c.remote.ip() == ev.remote.ip()
        && port_ok(c.remote.port(), ev.remote.port())
        && port_ok(c.local.port(), ev.local.port())
}

#[cfg(test)]
mod tests;
