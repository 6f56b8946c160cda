//! Trace context of each request: trace id, span id and parent, from an incoming `traceparent`
//! header or from the server request the same thread is serving (a client call made while
//! serving a request is its child).
//!
//! The socket capture layer sees threads, not goroutines or async tasks: the in-process link
//! holds for thread-per-request servers (and event loops serving one request at a time); a
//! call made from another thread, or from a thread serving several requests at once (an
//! event loop under concurrent load), starts its own trace and is counted as unlinked.
use std::net::SocketAddr;

use foldhash::HashMap;

use super::Role;
use crate::events::Goroutine;

/// W3C trace context of one span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// Zero when the span is a root.
    pub parent_span_id: [u8; 8],
    /// The parent's sampled flag when the parent came from a `traceparent` header.
    pub remote_sampled: Option<bool>,
}

impl TraceContext {
    pub fn has_parent(&self) -> bool {
        self.parent_span_id != [0; 8]
    }

    /// The `traceparent` header value naming this span as parent.
    pub fn traceparent(&self, sampled: bool) -> String {
        format!("00-{}-{}-{:02x}", hex(&self.trace_id), hex(&self.span_id), u8::from(sampled))
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A parsed `traceparent` header: (trace id, parent span id, sampled).
pub fn parse_traceparent(v: &str) -> Option<([u8; 16], [u8; 8], bool)> {
    let mut parts = v.trim().split('-');
    let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    // Version 00 has exactly four fields; later versions may append more.
    if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    let trace_id: [u8; 16] = unhex(trace)?.try_into().ok()?;
    let span_id: [u8; 8] = unhex(span)?.try_into().ok()?;
    let flags = unhex(flags)?;
    if trace_id == [0; 16] || span_id == [0; 8] || flags.len() != 1 {
        return None;
    }
    Some((trace_id, span_id, flags[0] & 1 == 1))
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

thread_local! {
    /// Span and trace ids need to be unique, not secret: a fast generator seeded from the OS
    /// (as OpenTelemetry SDKs do), instead of the CSPRNG behind `rand::random` (2% of the
    /// agent's CPU at saturation).
    static IDS: std::cell::RefCell<rand::rngs::SmallRng> =
        std::cell::RefCell::new(rand::SeedableRng::from_os_rng());
}

fn new_span_id() -> [u8; 8] {
    loop {
        let id = IDS.with(|r| rand::RngCore::next_u64(&mut *r.borrow_mut())).to_ne_bytes();
        if id != [0; 8] {
            return id;
        }
    }
}

fn new_trace_id() -> [u8; 16] {
    loop {
        let id = IDS.with(|r| {
            let mut r = r.borrow_mut();
            (u128::from(rand::RngCore::next_u64(&mut *r)) << 64 | u128::from(rand::RngCore::next_u64(&mut *r)))
                .to_ne_bytes()
        });
        if id != [0; 16] {
            return id;
        }
    }
}

/// Spans followed at once at most (in flight, plus recently ended ones a late child may still
/// name); beyond it the tables are cleared: a call then starts its own trace rather than
/// memory growing.
const MAX_SPANS: usize = 131_072;
/// Ended spans kept so that a child ending after its parent (a goroutine or thread the
/// handler left running) still finds its trace.
const KEEP_ENDED: usize = 16_384;
/// Go calls announced (`RawEvent::GoClient`) but not yet seen on their connection.
const MAX_HINTS: usize = 16_384;
/// Server requests remembered per thread (more than one already means no link).
const MAX_PER_THREAD: usize = 64;

/// The server requests one thread serves: one, without an allocation, on the common path (a
/// thread serving a request at a time).
type Serving = smallvec::SmallVec<[[u8; 8]; 2]>;
/// Longest chain of parents followed when resolving a trace (a guard, not a real limit).
const MAX_DEPTH: usize = 64;

/// Where a request travels: the process's socket, the HTTP/2 stream (0 for HTTP/1.x) and the
/// connection's endpoints as this process sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnRef {
    pub pid: u32,
    pub tid: u32,
    pub sock: u64,
    pub stream: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// One span's place in its trace. Its trace id is resolved when the span ends, by following
/// `parent` to the root: a link found after a span began (the other end of a connection seen
/// late, a Go call announced after its bytes) still counts for it and its descendants. Kept
/// small (ended spans stay in the table a while, and every request looks them up): where a
/// span in flight travels is in `Correlator::live`.
#[derive(Debug, Clone, Copy)]
struct Node {
    /// Zero for a root.
    parent: [u8; 8],
    /// The trace id for a root or a span whose context came in a `traceparent` header; for
    /// other spans the best guess when they were linked (used if the parent is forgotten).
    trace_id: [u8; 16],
    /// The context came in a header: parent and trace are final, never relinked.
    fixed: bool,
    remote_sampled: Option<bool>,
    pid: u32,
    /// A server request whose client end was seen in flight (traced on this host): if it ends
    /// without a parent, it could not be paired, and is counted.
    peer_seen: bool,
    /// A Go server request: when its handler started (the Go probes), which the writes of
    /// the goroutines serving it carry (`events::Goroutine`); 0: not seen.
    handler_ns: u64,
}

/// Trace links between the requests the decoder sees:
/// - a server request honours an incoming `traceparent`;
/// - a client call made while serving a request is its child: for Go, by the goroutine (the
///   Go probes announce HTTP and gRPC calls with the request their goroutine serves; for any
///   other call the capture names the request the writing goroutine serves, which counts
///   while that very request, told by its handler's start, is in flight; goroutines move
///   between threads, so the thread says nothing); otherwise by thread
///   (the socket capture sees threads, not async tasks: this holds for thread-per-request
///   servers and sequential event loops);
/// - a server request whose client the agent also traces (both ends on this host) is the
///   child of that client call, matched by the connection's two endpoints and HTTP/2 stream.
#[derive(Default)]
pub struct Correlator {
    /// Whether a process is a Go program (from the traced processes' table), asked for a
    /// client call the Go probes did not announce.
    is_go: Option<GoOracle>,
    /// Whether a thread belongs to a work-stealing pool, asked before a call is linked by
    /// thread.
    is_pooled: Option<PoolOracle>,
    nodes: HashMap<[u8; 8], Node>,
    /// Where each span in flight travels (its index keys), until it ends.
    live: HashMap<[u8; 8], ConnRef>,
    ended: std::collections::VecDeque<[u8; 8]>,
    /// The server requests each thread is serving, by (pid, tid), oldest first (not used in Go
    /// processes). A client call links to the request only when there is exactly one.
    by_thread: HashMap<(u32, u32), Serving>,
    /// Requests in flight by (pid, socket, stream).
    by_sock: HashMap<(u32, u64, u32, Role), [u8; 8]>,
    /// Requests in flight by (local, remote, stream), oldest first, to meet the other end of a
    /// connection: linked only while each end has one in flight (requests pipelined on one
    /// connection cannot be told apart from their endpoints).
    by_tuple: HashMap<TupleKey, Vec<[u8; 8]>>,
    /// Go calls announced before their first bytes: (pid, client socket, stream) -> parent.
    hints: HashMap<(u32, u64, u32), [u8; 8]>,
    /// Processes the Go probes speak for: their threads say nothing about requests.
    go_pids: foldhash::HashSet<u32>,
    /// Processes that answered a request from another thread than the one that read it: they
    /// hand requests between threads (a work-stealing async runtime such as tokio's, a pool
    /// behind a reactor), so there a thread says nothing about which request a call serves.
    handoff_pids: foldhash::HashSet<u32>,
    /// Trace ids the Go probes wrote downstream (context propagation), by client span, until
    /// the span ends and its exported trace id is known.
    written: HashMap<[u8; 8], [u8; 16]>,
    /// Client spans that ended in another trace than the one written downstream for them.
    mismatches: u32,
    /// Client calls made by a thread serving several requests at once: not linked.
    unlinked: u32,
    /// Server requests whose client on this host had several requests in flight on the
    /// connection (pipelined), or whose client's request never came: not linked.
    ambiguous: u32,
    /// Server requests that ended before their client's request was reported (see
    /// [`Correlator::finish`]), by the server's (local, remote, stream): the client call that
    /// comes next on the other end adopts it if it is the only one there (several cannot be
    /// told apart).
    late: HashMap<(SocketAddr, SocketAddr, u32), Vec<[u8; 8]>>,
    /// Late server requests a client call adopted since the last [`Correlator::take_adopted`].
    adopted: Vec<[u8; 8]>,
}

/// What [`Correlator::finish`] decided for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// Its final context.
    Done(TraceContext),
    /// A server request that waits for its client's call (see [`Correlator::finish`]).
    Late,
}

type TupleKey = (SocketAddr, SocketAddr, u32, Role);

/// Requests in flight on one connection end beyond which the oldest are forgotten.
const MAX_PER_TUPLE: usize = 64;

/// Tells whether process `pid` runs a Go program.
pub type GoOracle = Box<dyn Fn(u32) -> bool + Send>;

/// Tells whether thread `tid` of `pid` is a worker of a work-stealing pool (its tasks move
/// between threads).
pub type PoolOracle = Box<dyn FnMut(u32, u32) -> bool + Send>;

impl Correlator {
    /// The context of a request whose head was just read (server) or written (client). Its
    /// trace id and parent may still change until [`Correlator::finish`].
    pub fn begin(&mut self, conn: ConnRef, role: Role, traceparent: Option<&str>) -> TraceContext {
        self.begin_from(conn, role, traceparent, None)
    }

    /// [`Correlator::begin`] for a request written by a Go goroutine the capture identified
    /// (`goroutine`: the request it serves).
    pub fn begin_from(
        &mut self,
        conn: ConnRef,
        role: Role,
        traceparent: Option<&str>,
        goroutine: Option<Goroutine>,
    ) -> TraceContext {
        if self.nodes.len() >= MAX_SPANS {
            self.clear();
        }
        let incoming = traceparent.and_then(parse_traceparent);
        let (span_id, mut node) = match role {
            Role::Server => {
                let node = match incoming {
                    Some((trace_id, parent, sampled)) => Node {
                        parent,
                        trace_id,
                        fixed: true,
                        remote_sampled: Some(sampled),
                        pid: conn.pid,
                        peer_seen: false,
                        handler_ns: 0,
                    },
                    None => match self.peer_of_server(conn) {
                        Ok(peer) => Node { peer_seen: peer.is_some(), ..self.child_of(peer, conn) },
                        // Several in flight: a root of its own for good (`fixed`), never relinked
                        // to one of them later.
                        Err(()) => {
                            Node { fixed: true, trace_id: new_trace_id(), peer_seen: true, ..self.child_of(None, conn) }
                        }
                    },
                };
                (new_span_id(), node)
            }
            Role::Client => {
                let announced = self.hints.remove(&(conn.pid, conn.sock, conn.stream));
                let serving = match announced.and_then(|a| self.nodes.get(&a)) {
                    Some(a) => Some(a.parent).filter(|p| *p != [0; 8]),
                    None if goroutine.is_some() => goroutine.and_then(|g| self.served_by(conn.pid, g)),
                    // Not counted as unlinked: gRPC calls are announced after their bytes.
                    None if self.go_pids.contains(&conn.pid) || self.is_go.as_ref().is_some_and(|f| f(conn.pid)) => {
                        None
                    }
                    None if self.handoff_pids.contains(&conn.pid) => {
                        if self.by_thread.contains_key(&(conn.pid, conn.tid)) {
                            self.unlinked += 1;
                        }
                        None
                    }
                    None => self.serving(conn.pid, conn.tid),
                };
                let serving_node = serving.and_then(|s| self.nodes.get(&s));
                match incoming {
                    // The application (or an SDK in it) propagates context itself: the header
                    // names the span the callee will see as its parent, so that is this span.
                    // A header merely forwarded from the request being served is not.
                    // A header the Go probes wrote names the announced span itself.
                    Some((trace_id, span_id, sampled))
                        if announced != Some(span_id) && serving_node.is_none_or(|s| s.parent != span_id) =>
                    {
                        let parent = serving.filter(|_| serving_node.is_some_and(|s| s.trace_id == trace_id));
                        let node = Node {
                            parent: parent.unwrap_or_default(),
                            trace_id,
                            fixed: true,
                            remote_sampled: Some(sampled),
                            pid: conn.pid,
                            peer_seen: false,
                            handler_ns: 0,
                        };
                        (span_id, node)
                    }
                    // Announced by the Go probes: the span exists already.
                    _ => match announced.and_then(|a| self.nodes.get(&a).map(|n| (a, *n))) {
                        Some((id, n)) => (id, Node { pid: conn.pid, ..n }),
                        None => (new_span_id(), self.child_of(serving, conn)),
                    },
                }
            }
        };
        if node.parent == [0; 8] && !node.fixed && node.trace_id == [0; 16] {
            node.trace_id = new_trace_id();
        }
        self.nodes.insert(span_id, node);
        self.live.insert(span_id, conn);
        self.by_sock.insert((conn.pid, conn.sock, conn.stream, role), span_id);
        self.tuple_add((conn.local, conn.remote, conn.stream, role), span_id);
        match role {
            Role::Server if !self.go_pids.contains(&conn.pid) => {
                let serving = self.by_thread.entry((conn.pid, conn.tid)).or_default();
                if serving.len() >= MAX_PER_THREAD {
                    serving.remove(0);
                }
                serving.push(span_id);
            }
            Role::Server => {}
            // The other end may have been seen first (its read can be reported before this
            // write): it becomes this call's child.
            Role::Client => self.adopt_server(span_id, conn),
        }
        let (trace_id, remote_sampled) = self.resolve(&span_id, &node);
        TraceContext { trace_id, span_id, parent_span_id: node.parent, remote_sampled }
    }

    /// Thread `tid` of `pid` wrote on server socket `sock`: if another thread read the
    /// request in flight there, the process hands requests between threads, and its calls are
    /// no longer linked by thread (from now on: the calls before could not tell).
    pub fn server_wrote(&mut self, pid: u32, sock: u64, tid: u32) {
        let Some(id) = self.by_sock.get(&(pid, sock, 0, Role::Server)) else { return };
        if self.live.get(id).is_some_and(|c| c.tid != tid) && !self.go_pids.contains(&pid) {
            self.handoff_pids.insert(pid);
        }
    }

    /// The one server request thread `tid` of `pid` is serving. None when it serves none, or
    /// several at once (an event loop: which of them made the call is unknown, and a wrong
    /// parent is worse than none; counted).
    fn serving(&mut self, pid: u32, tid: u32) -> Option<[u8; 8]> {
        match self.by_thread.get(&(pid, tid)).map(|s| s.as_slice()) {
            // A pool worker may be running another request's task: the process hands requests
            // between threads.
            Some([_]) if self.is_pooled.as_mut().is_some_and(|f| f(pid, tid)) => {
                self.handoff_pids.insert(pid);
                self.unlinked += 1;
                None
            }
            Some([one]) => Some(*one),
            Some([]) | None => None,
            Some(_) => {
                self.unlinked += 1;
                None
            }
        }
    }

    /// The server request in flight that goroutine `g` of Go process `pid` serves: the one on
    /// its connection and stream whose handler started when the goroutine's did. Another one
    /// there (the goroutine outlived its request, or was started by an earlier one) or none
    /// in flight: no link, counted.
    fn served_by(&mut self, pid: u32, g: Goroutine) -> Option<[u8; 8]> {
        if g.server_sock == 0 {
            return None;
        }
        let id = self.by_sock.get(&(pid, g.server_sock, g.server_stream, Role::Server)).copied();
        let id = id.filter(|id| self.nodes.get(id).is_some_and(|n| n.handler_ns == g.handler_ns));
        if id.is_none() {
            self.unlinked += 1;
        }
        id
    }

    /// The Go handler of the server request in flight on `server` (socket, stream) of `pid`
    /// started at `ts_ns`: what its goroutines' writes will carry.
    pub fn go_handler_started(&mut self, pid: u32, server: (u64, u32), ts_ns: u64) {
        if let Some(id) = self.by_sock.get(&(pid, server.0, server.1, Role::Server)) {
            if let Some(n) = self.nodes.get_mut(id) {
                n.handler_ns = ts_ns;
            }
        }
    }

    /// A node whose parent is `parent` (a root when `None`).
    fn child_of(&self, parent: Option<[u8; 8]>, conn: ConnRef) -> Node {
        let mut node = Node {
            parent: [0; 8],
            trace_id: [0; 16],
            fixed: false,
            remote_sampled: None,
            pid: conn.pid,
            peer_seen: false,
            handler_ns: 0,
        };
        if let Some((id, p)) = parent.and_then(|id| self.nodes.get(&id).map(|p| (id, p))) {
            node.parent = id;
            (node.trace_id, node.remote_sampled) = self.resolve(&id, p);
        }
        node
    }

    /// The trace id and remote sampled flag of `node`, following its parents.
    fn resolve(&self, id: &[u8; 8], node: &Node) -> ([u8; 16], Option<bool>) {
        let (mut cur, mut n) = (*id, node);
        for _ in 0..MAX_DEPTH {
            // A header's context is final unless it names a span seen here: then the trace is
            // that span's (the same, unless the Go probes made up the id the header carries
            // before this host linked the caller into another trace).
            if n.parent == [0; 8] || (n.fixed && !self.nodes.contains_key(&n.parent)) {
                break;
            }
            match self.nodes.get(&n.parent) {
                Some(p) if n.parent != cur => {
                    cur = n.parent;
                    n = p;
                }
                _ => break,
            }
        }
        (n.trace_id, n.remote_sampled)
    }

    /// Asks `is_go` whether a process is a Go program before linking its calls by thread.
    pub fn set_go_oracle(&mut self, is_go: GoOracle) {
        self.is_go = Some(is_go);
    }

    /// Asks `is_pooled` whether a thread is a work-stealing pool's worker before linking a
    /// call it writes by thread.
    pub fn set_pool_oracle(&mut self, is_pooled: PoolOracle) {
        self.is_pooled = Some(is_pooled);
    }

    /// A Go client call is about to go out on `client` (its socket, stream and endpoints) from
    /// a goroutine serving the request on `server_sock` (0: none). Announced before its bytes
    /// (HTTP/1.x), the call's span is created now, so that the other end finds it whichever
    /// end's bytes are reported first; announced after them (gRPC writes its headers from
    /// another goroutine), the call, which has not ended yet, is relinked.
    ///
    /// `written`: the trace and span ids of the `traceparent` the probes wrote into the call
    /// (context propagation): the span takes that id, and the trace id when it is a root.
    pub fn go_client(&mut self, server: (u64, u32), client: ConnRef, written: Option<([u8; 16], [u8; 8])>) {
        let (pid, key) = (client.pid, (client.pid, client.sock, client.stream));
        self.go_pids.insert(pid);
        let parent =
            if server.0 == 0 { None } else { self.by_sock.get(&(pid, server.0, server.1, Role::Server)).copied() };
        if let Some(id) = self.by_sock.get(&(pid, client.sock, client.stream, Role::Client)).copied() {
            if let Some(w) = written {
                self.remember_written(id, w.0);
            }
            let trace = match parent.and_then(|p| self.nodes.get(&p).map(|n| self.resolve(&p, n))) {
                Some(t) => t,
                None => (new_trace_id(), None),
            };
            if let Some(c) = self.nodes.get_mut(&id).filter(|c| !c.fixed) {
                c.parent = parent.unwrap_or_default();
                (c.trace_id, c.remote_sampled) = trace;
            }
            return;
        }
        if self.hints.len() >= MAX_HINTS {
            let stale: Vec<[u8; 8]> = self.hints.drain().map(|(_, id)| id).collect();
            for id in stale {
                self.forget_hint(id);
            }
        }
        if let Some(stale) = self.hints.remove(&key) {
            self.forget_hint(stale);
        }
        let id = written.map_or_else(new_span_id, |w| w.1);
        let mut node = self.child_of(parent, client);
        if node.parent == [0; 8] {
            node.trace_id = written.map_or_else(new_trace_id, |w| w.0);
        }
        self.nodes.insert(id, node);
        self.live.insert(id, client);
        self.hints.insert(key, id);
        if let Some(w) = written {
            self.remember_written(id, w.0);
        }
        self.tuple_add((client.local, client.remote, client.stream, Role::Client), id);
        self.adopt_server(id, client);
    }

    /// The client call a server request just read answers: the one client span in flight on
    /// the other end of its connection (none when that end is not traced), while the server
    /// has no other request in flight there. Several (pipelined requests) cannot be told
    /// apart: `Err`.
    fn peer_of_server(&self, conn: ConnRef) -> Result<Option<[u8; 8]>, ()> {
        let server_busy = self.by_tuple.contains_key(&(conn.local, conn.remote, conn.stream, Role::Server));
        match self.by_tuple.get(&(conn.remote, conn.local, conn.stream, Role::Client)).map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([one]) if !server_busy => Ok(Some(*one)),
            Some(_) => Err(()),
        }
    }

    fn tuple_add(&mut self, key: TupleKey, id: [u8; 8]) {
        if key.3 == Role::Client {
            // The server spans in flight at the other end have a traced client.
            if let Some(servers) = self.by_tuple.get(&(key.1, key.0, key.2, Role::Server)) {
                for s in servers {
                    if let Some(n) = self.nodes.get_mut(s) {
                        n.peer_seen = true;
                    }
                }
            }
        }
        let ids = self.by_tuple.entry(key).or_default();
        if !ids.contains(&id) {
            if ids.len() >= MAX_PER_TUPLE {
                ids.remove(0);
            }
            ids.push(id);
        }
    }

    /// The one request in flight at `key`, if exactly one is.
    fn tuple_sole(&self, key: &TupleKey) -> Option<[u8; 8]> {
        match self.by_tuple.get(key).map(Vec::as_slice) {
            Some([one]) => Some(*one),
            _ => None,
        }
    }

    fn remember_written(&mut self, span: [u8; 8], trace_id: [u8; 16]) {
        // Bounded like the spans: a span that never ends (its process gone unseen) is dropped
        // with the rest.
        if self.written.len() >= MAX_HINTS {
            self.written.clear();
        }
        self.written.insert(span, trace_id);
    }

    /// Client calls left unlinked since the last call because their thread was serving several
    /// requests at once.
    pub fn take_unlinked(&mut self) -> u32 {
        std::mem::take(&mut self.unlinked)
    }

    /// Server requests left unlinked since the last call because their client had several
    /// requests in flight on the connection.
    pub fn take_ambiguous(&mut self) -> u32 {
        std::mem::take(&mut self.ambiguous)
    }

    /// Client spans that ended in another trace than the trace id the Go probes wrote into
    /// their `traceparent` since the last call: the downstream service continues a trace this
    /// agent does not export (counted, never silent).
    pub fn take_mismatches(&mut self) -> u32 {
        std::mem::take(&mut self.mismatches)
    }

    /// The Go probes chose `trace_id` for the request on `server_sock` (from its `traceparent`,
    /// or made up: context propagation writes it into the calls the request makes). A request
    /// that is still a root takes it, so that its trace here is the one downstream.
    pub fn go_server_trace(&mut self, pid: u32, server: (u64, u32), trace_id: [u8; 16]) {
        let Some(id) = self.by_sock.get(&(pid, server.0, server.1, Role::Server)) else { return };
        if let Some(n) = self.nodes.get_mut(id).filter(|n| !n.fixed && n.parent == [0; 8]) {
            n.trace_id = trace_id;
        }
    }

    /// The server end of `client`'s connection, if seen first and still a root, becomes the
    /// call's child: one in flight, or one that ended waiting for this call (`late`).
    fn adopt_server(&mut self, client_id: [u8; 8], client: ConnRef) {
        if self.tuple_sole(&(client.local, client.remote, client.stream, Role::Client)) != Some(client_id) {
            return;
        }
        let server = match self.tuple_sole(&(client.remote, client.local, client.stream, Role::Server)) {
            Some(s) => s,
            // Several ended there: which one this call made is unknown.
            None => match self.late.get(&(client.remote, client.local, client.stream)).map(Vec::as_slice) {
                Some(&[s]) => {
                    self.late.remove(&(client.remote, client.local, client.stream));
                    self.adopted.push(s);
                    s
                }
                _ => return,
            },
        };
        let Some(c) = self.nodes.get(&client_id) else { return };
        let trace_id = self.resolve(&client_id, c).0;
        if let Some(s) = self.nodes.get_mut(&server).filter(|s| !s.fixed && s.parent == [0; 8]) {
            s.parent = client_id;
            s.trace_id = trace_id;
        }
    }

    /// Late server requests (see [`Finished::Late`]) that a client call adopted since the last
    /// call: ready to be released.
    pub fn take_adopted(&mut self) -> Vec<[u8; 8]> {
        std::mem::take(&mut self.adopted)
    }

    /// The final context of a late server request (see [`Finished::Late`]), adopted or not;
    /// one that no call adopted is counted as unlinked.
    pub fn release(&mut self, ctx: &TraceContext, local: SocketAddr, remote: SocketAddr, stream: u32) -> TraceContext {
        if let std::collections::hash_map::Entry::Occupied(mut e) = self.late.entry((local, remote, stream)) {
            // Usually the oldest there: found first.
            if let Some(i) = e.get().iter().position(|id| *id == ctx.span_id) {
                e.get_mut().remove(i);
            }
            if e.get().is_empty() {
                e.remove();
            }
        }
        let Some(node) = self.nodes.get(&ctx.span_id).copied() else { return *ctx };
        if node.parent == [0; 8] && !node.fixed {
            self.ambiguous += 1;
        }
        let (trace_id, remote_sampled) = self.resolve(&ctx.span_id, &node);
        TraceContext { trace_id, span_id: ctx.span_id, parent_span_id: node.parent, remote_sampled }
    }

    /// The final context of a request that ended (its trace id resolved through its parents),
    /// after which it parents no new call.
    pub fn finish(&mut self, pid: u32, tid: u32, role: Role, ctx: &TraceContext) -> TraceContext {
        match self.finish_or_wait(pid, tid, role, ctx, false) {
            Finished::Done(ctx) => ctx,
            Finished::Late => *ctx,
        }
    }

    /// [`Correlator::finish`], except for a server request that ends as a root while its client
    /// is a process traced on this host (`client_traced`): the capture reports a write when
    /// its syscall returns, after the kernel has delivered the bytes, so the server may read
    /// and answer before its client's request is reported. Such a request waits (`Late`) for
    /// the client call that comes next on the other end, which adopts it.
    pub fn finish_or_wait(
        &mut self,
        pid: u32,
        tid: u32,
        role: Role,
        ctx: &TraceContext,
        client_traced: bool,
    ) -> Finished {
        let Some(mut node) = self.nodes.get(&ctx.span_id).copied() else { return Finished::Done(*ctx) };
        // Not in flight any more (ended already): only its context is wanted.
        if let Some(c) = self.live.get(&ctx.span_id).copied() {
            if role == Role::Server && !node.fixed && node.parent == [0; 8] {
                // Last chance for a call whose bytes were reported after this end's.
                let sole = self.tuple_sole(&(c.local, c.remote, c.stream, Role::Server)) == Some(ctx.span_id);
                if let Some(client) = self.tuple_sole(&(c.remote, c.local, c.stream, Role::Client)).filter(|_| sole) {
                    if let Some(cn) = self.nodes.get(&client) {
                        node.trace_id = self.resolve(&client, cn).0;
                        node.parent = client;
                        self.nodes.insert(ctx.span_id, node);
                    }
                }
            }
            let root = node.parent == [0; 8] && !node.fixed;
            if node.peer_seen && node.parent == [0; 8] {
                self.ambiguous += 1;
            }
            self.end(ctx.span_id, ConnRef { tid, pid, ..c }, role);
            if role == Role::Server && root && !node.peer_seen && client_traced {
                self.late.entry((c.local, c.remote, c.stream)).or_default().push(ctx.span_id);
                return Finished::Late;
            }
        }
        let (trace_id, remote_sampled) = self.resolve(&ctx.span_id, &node);
        if role == Role::Client && self.written.remove(&ctx.span_id).is_some_and(|w| w != trace_id) {
            self.mismatches += 1;
        }
        Finished::Done(TraceContext { trace_id, span_id: ctx.span_id, parent_span_id: node.parent, remote_sampled })
    }

    /// A request that will not be reported (its connection closed or lost its place before the
    /// response): it no longer parents new calls.
    pub fn abandon(&mut self, role: Role, ctx: &TraceContext) {
        if let Some(c) = self.live.get(&ctx.span_id).copied() {
            self.end(ctx.span_id, c, role);
        }
    }

    /// Span `id`, in flight at `c`, ended.
    /// A call the Go probes announced whose bytes never came: gone from every index (left in
    /// `by_tuple`, it would make its connection look pipelined).
    fn forget_hint(&mut self, id: [u8; 8]) {
        self.nodes.remove(&id);
        self.written.remove(&id);
        if let Some(c) = self.live.remove(&id) {
            self.tuple_remove((c.local, c.remote, c.stream, Role::Client), id);
        }
    }

    fn tuple_remove(&mut self, key: TupleKey, id: [u8; 8]) {
        if let std::collections::hash_map::Entry::Occupied(mut e) = self.by_tuple.entry(key) {
            e.get_mut().retain(|s| *s != id);
            if e.get().is_empty() {
                e.remove();
            }
        }
    }

    fn end(&mut self, id: [u8; 8], c: ConnRef, role: Role) {
        self.live.remove(&id);
        // Each index forgets the request unless a newer one took its place.
        remove_if_is(&mut self.by_sock, (c.pid, c.sock, c.stream, role), id);
        self.tuple_remove((c.local, c.remote, c.stream, role), id);
        if role == Role::Server {
            if let std::collections::hash_map::Entry::Occupied(mut e) = self.by_thread.entry((c.pid, c.tid)) {
                e.get_mut().retain(|s| *s != id);
                if e.get().is_empty() {
                    e.remove();
                }
            }
        }
        self.ended.push_back(id);
        if self.ended.len() > KEEP_ENDED {
            if let Some(old) = self.ended.pop_front() {
                self.nodes.remove(&old);
            }
        }
    }

    pub fn forget_process(&mut self, pid: u32) {
        self.by_thread.retain(|k, _| k.0 != pid);
        self.by_sock.retain(|k, _| k.0 != pid);
        self.hints.retain(|k, _| k.0 != pid);
        let gone: foldhash::HashSet<[u8; 8]> =
            self.nodes.iter().filter(|(_, n)| n.pid == pid).map(|(id, _)| *id).collect();
        self.by_tuple.retain(|_, ids| {
            ids.retain(|id| !gone.contains(id));
            !ids.is_empty()
        });
        self.written.retain(|id, _| !gone.contains(id));
        self.live.retain(|_, c| c.pid != pid);
        self.go_pids.remove(&pid);
        self.handoff_pids.remove(&pid);
    }

    fn clear(&mut self) {
        self.nodes.clear();
        self.live.clear();
        self.ended.clear();
        self.by_thread.clear();
        self.by_sock.clear();
        self.by_tuple.clear();
        self.hints.clear();
        self.written.clear();
        self.late.clear();
    }

    /// Server requests being served per thread (for tests and telemetry).
    pub fn active(&self) -> usize {
        self.by_thread.len()
    }
}

/// Removes `key` if it still names span `id` (one hash of the key).
fn remove_if_is<K: std::hash::Hash + Eq>(map: &mut HashMap<K, [u8; 8]>, key: K, id: [u8; 8]) {
    if let std::collections::hash_map::Entry::Occupied(e) = map.entry(key) {
        if *e.get() == id {
            e.remove();
        }
    }
}

#[cfg(test)]
mod tests;
