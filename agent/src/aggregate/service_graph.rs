//! `features: [application_service_graph]`: service graph edges (`traces_service_graph_*`), as
//! Tempo's metrics generator names them. [`Pairing`] finds the edges; [`ServiceGraph`] counts
//! them for Prometheus, and the OTLP exporter (`export/otlp/metrics.rs`) counts the same edges.
//!
//! An edge is counted once per request. When both ends are instrumented by this agent, the
//! client span and the server span of a request are paired by their connection (the client's
//! local address is the server's peer and vice versa), the request target and, for HTTP/2, the
//! stream; the edge names both services. The target keeps one late or lost side from shifting
//! the pairs of every later request on a keep-alive connection. A span
//! whose other end is not seen within `PAIR_WAIT` is an edge to an uninstrumented peer
//! (`connection_type="virtual_node"`), named by the Host header or the peer address.
//!
//! The wait runs on event time (the kernel's timestamps, advanced by the reader's
//! watermark), not on the wall clock: an agent that falls behind its ring buffer, as a slow
//! machine under load does, must not declare a side alone while its partner is still queued.
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};

use super::{Buckets, HistFamily, Labels, LastSeen};
use crate::attach::TracedProcess;
use crate::decode::Role;
use crate::enrich::Span;

/// How long (in event time) one side of a request waits for the other before it counts alone.
pub const PAIR_WAIT: Duration = Duration::from_secs(10);
/// (client address, server address, HTTP/2 stream or 0, method and target).
type Key = (SocketAddr, SocketAddr, u32, String);

/// Unpaired spans held at most (per side); beyond it the oldest count alone.
const MAX_PENDING: usize = 10_000;

struct Side {
    service: String,
    namespace: String,
    /// The other end's name if it turns out not to be instrumented.
    peer_name: String,
    seconds: f64,
    failed: bool,
    /// Event time when this side was recorded.
    at_ns: u64,
    process: Arc<TracedProcess>,
}

/// One request between two services.
pub struct Edge {
    /// `client`, `client_service_namespace`, `connection_type`, `server`,
    /// `server_service_namespace`, `source`.
    pub labels: Labels,
    pub client_seconds: Option<f64>,
    pub server_seconds: Option<f64>,
    pub failed: bool,
    /// The traced process the edge is reported for: the client's when traced, else the server's.
    pub process: Arc<TracedProcess>,
}

/// Pairs the client and server spans of each request into one [`Edge`].
pub struct Pairing {
    /// Unpaired sides by `Key`.
    servers: HashMap<Key, VecDeque<Side>>,
    clients: HashMap<Key, VecDeque<Side>>,
    pending: usize,
    /// Event time reached: the newest span end or reader watermark seen.
    clock_ns: u64,
    allow_self_references: bool,
}

pub struct ServiceGraph {
    pairing: Pairing,
    total: Family<Labels, Counter>,
    failed: Family<Labels, Counter>,
    server_seconds: HistFamily,
    client_seconds: HistFamily,
    seen: LastSeen<Labels>,
}

impl ServiceGraph {
    pub fn new(registry: &mut Registry, duration: Buckets, ttl: Duration, allow_self_references: bool) -> Self {
        let g = ServiceGraph {
            pairing: Pairing::new(allow_self_references),
            total: Family::default(),
            failed: Family::default(),
            server_seconds: Family::new_with_constructor(duration.clone()),
            client_seconds: Family::new_with_constructor(duration),
            seen: LastSeen::new(ttl),
        };
        registry.register("traces_service_graph_request", "Requests between two services", g.total.clone());
        registry.register(
            "traces_service_graph_request_failed",
            "Failed requests between two services",
            g.failed.clone(),
        );
        registry.register_with_unit(
            "traces_service_graph_request_server",
            "Request duration seen by the server side of an edge",
            Unit::Seconds,
            g.server_seconds.clone(),
        );
        registry.register_with_unit(
            "traces_service_graph_request_client",
            "Request duration seen by the client side of an edge",
            Unit::Seconds,
            g.client_seconds.clone(),
        );
        g
    }

    pub fn record(&mut self, span: &Span, now: Instant) {
        let mut edges = Vec::new();
        self.pairing.record(span, &mut edges);
        self.count(edges, now);
    }

    /// Every event before `drained_ns` went through the pipeline: sides that have waited
    /// `PAIR_WAIT` of event time count alone.
    pub fn advance(&mut self, drained_ns: u64, now: Instant) {
        let mut edges = Vec::new();
        self.pairing.advance(drained_ns, &mut edges);
        self.count(edges, now);
    }

    fn count(&mut self, edges: Vec<Edge>, now: Instant) {
        for e in edges {
            self.total.get_or_create(&e.labels).inc();
            if e.failed {
                self.failed.get_or_create(&e.labels).inc();
            }
            if let Some(s) = e.server_seconds {
                self.server_seconds.get_or_create(&e.labels).observe(s);
            }
            if let Some(c) = e.client_seconds {
                self.client_seconds.get_or_create(&e.labels).observe(c);
            }
            self.seen.touch(e.labels, now);
        }
    }

    pub fn expire(&mut self, now: Instant) {
        for l in self.seen.take_stale(now) {
            self.total.remove(&l);
            self.failed.remove(&l);
            self.server_seconds.remove(&l);
            self.client_seconds.remove(&l);
        }
    }
}

impl Pairing {
    pub fn new(allow_self_references: bool) -> Self {
        Pairing { servers: HashMap::new(), clients: HashMap::new(), pending: 0, clock_ns: 0, allow_self_references }
    }

    /// Pairs `span` with the other side of its request if that was seen; edges found go to `out`.
    pub fn record(&mut self, span: &Span, out: &mut Vec<Edge>) {
        let r = &span.request;
        self.clock_ns = self.clock_ns.max(r.end_ns);
        let at_ns = self.clock_ns;
        let svc = &span.process.service;
        let side = |peer_name: String| Side {
            service: svc.name.clone(),
            namespace: svc.namespace.clone(),
            peer_name,
            seconds: r.duration_ns() as f64 / 1e9,
            failed: span.is_error(),
            at_ns,
            process: span.process.clone(),
        };
        match r.role {
            Role::Server => {
                let key = (r.remote, r.local, r.stream, pair_name(r));
                let me = side(r.remote.ip().to_string());
                match pop(&mut self.clients, &key) {
                    Some(client) => {
                        self.pending -= 1;
                        out.extend(self.edge(Some(client), Some(me)));
                    }
                    None => self.hold(Role::Server, key, me, out),
                }
            }
            Role::Client => {
                let key = (r.local, r.remote, r.stream, pair_name(r));
                let host = r.host.as_deref().map(|h| h.rsplit_once(':').map_or(h, |(n, _)| n).to_string());
                let me = side(host.filter(|h| !h.is_empty()).unwrap_or_else(|| r.remote.ip().to_string()));
                match pop(&mut self.servers, &key) {
                    Some(server) => {
                        self.pending -= 1;
                        out.extend(self.edge(Some(me), Some(server)));
                    }
                    None => self.hold(Role::Client, key, me, out),
                }
            }
        }
    }

    fn hold(&mut self, role: Role, key: Key, side: Side, out: &mut Vec<Edge>) {
        if self.pending >= MAX_PENDING {
            self.flush(true, out);
        }
        let map = if role == Role::Server { &mut self.servers } else { &mut self.clients };
        map.entry(key).or_default().push_back(side);
        self.pending += 1;
    }

    /// Every event before `drained_ns` went through the pipeline: sides that have waited
    /// `PAIR_WAIT` of event time count alone.
    pub fn advance(&mut self, drained_ns: u64, out: &mut Vec<Edge>) {
        self.clock_ns = self.clock_ns.max(drained_ns);
        self.flush(false, out);
    }

    /// The sides that waited longer than `PAIR_WAIT` (all of them with `all`), as edges to
    /// uninstrumented peers.
    fn flush(&mut self, all: bool, out: &mut Vec<Edge>) {
        let wait_ns = PAIR_WAIT.as_nanos() as u64;
        let clock_ns = self.clock_ns;
        let due = |s: &Side| all || clock_ns.saturating_sub(s.at_ns) >= wait_ns;
        let mut lone: Vec<(Role, Side)> = Vec::new();
        for (role, map) in [(Role::Server, &mut self.servers), (Role::Client, &mut self.clients)] {
            map.retain(|_, q| {
                while q.front().is_some_and(due) {
                    lone.push((role, q.pop_front().expect("front")));
                }
                !q.is_empty()
            });
        }
        self.pending -= lone.len();
        for (role, s) in lone {
            out.extend(match role {
                Role::Server => self.edge(None, Some(s)),
                Role::Client => self.edge(Some(s), None),
            });
        }
    }

    /// The edge between two sides (one may be missing: an uninstrumented peer), unless it is
    /// a self reference that is not wanted.
    fn edge(&self, client: Option<Side>, server: Option<Side>) -> Option<Edge> {
        let name = |mine: Option<&Side>, other: Option<&Side>| match (mine, other) {
            (Some(s), _) => (s.service.clone(), s.namespace.clone()),
            (None, Some(o)) => (o.peer_name.clone(), String::new()),
            (None, None) => unreachable!("an edge has a side"),
        };
        let (client_name, client_ns) = name(client.as_ref(), server.as_ref());
        let (server_name, server_ns) = name(server.as_ref(), client.as_ref());
        if client_name == server_name && client_ns == server_ns && !self.allow_self_references {
            return None;
        }
        let virtual_node = client.is_none() || server.is_none();
        let labels: Labels = vec![
            ("client", client_name),
            ("client_service_namespace", client_ns),
            ("connection_type", if virtual_node { "virtual_node" } else { "" }.into()),
            ("server", server_name),
            ("server_service_namespace", server_ns),
            ("source", "beyla".into()),
        ];
        let failed = client.as_ref().is_some_and(|s| s.failed) || server.as_ref().is_some_and(|s| s.failed);
        let process = match (&client, &server) {
            (Some(c), _) => c.process.clone(),
            (None, Some(s)) => s.process.clone(),
            (None, None) => unreachable!("an edge has a side"),
        };
        Some(Edge {
            labels,
            client_seconds: client.map(|c| c.seconds),
            server_seconds: server.map(|s| s.seconds),
            failed,
            process,
        })
    }
}

fn pop(map: &mut HashMap<Key, VecDeque<Side>>, key: &Key) -> Option<Side> {
    let q = map.get_mut(key)?;
    let s = q.pop_front();
    if q.is_empty() {
        map.remove(key);
    }
    s
}

/// What both ends of one request see alike: the method and target, or a non-HTTP operation's
/// span name.
fn pair_name(r: &crate::decode::Request) -> String {
    match &r.operation {
        Some(op) => op.name.clone(),
        None => format!("{} {}", r.method, r.target),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use prometheus_client::encoding::text::encode;

    use super::*;
    use crate::enrich::test_span;

    fn span(service: &str, role: Role, local: &str, remote: &str, status: u16) -> Span {
        let mut s = test_span();
        Arc::make_mut(&mut s.process).service.name = service.into();
        s.request.role = role;
        s.request.local = local.parse().unwrap();
        s.request.remote = remote.parse().unwrap();
        s.request.status = status;
        s
    }

    /// `test_span()`'s end time.
    const END_NS: u64 = 1_501_000;

    fn render(reg: &Registry) -> String {
        let mut out = String::new();
        encode(&mut out, reg).unwrap();
        out
    }

    #[test]
    fn pairs_both_ends_once_and_names_lone_ends_by_peer() {
        let mut reg = Registry::default();
        let mut g = ServiceGraph::new(&mut reg, Buckets(vec![1.0]), Duration::from_secs(60), false);
        let t0 = Instant::now();
        // frontend (client 10.0.0.1:5000) -> backend (server 10.0.0.2:8081), server side first.
        g.record(&span("backend", Role::Server, "10.0.0.2:8081", "10.0.0.1:5000", 200), t0);
        g.record(&span("frontend", Role::Client, "10.0.0.1:5000", "10.0.0.2:8081", 200), t0);
        // Client side first, and a failure.
        g.record(&span("frontend", Role::Client, "10.0.0.1:5000", "10.0.0.2:8081", 500), t0);
        g.record(&span("backend", Role::Server, "10.0.0.2:8081", "10.0.0.1:5000", 500), t0);
        // An uninstrumented caller of frontend.
        g.record(&span("frontend", Role::Server, "10.0.0.1:8080", "10.0.0.9:4000", 200), t0);
        g.advance(END_NS + 100_000_000, t0);
        let out = render(&reg);
        let edge = r#"client="frontend",client_service_namespace="",connection_type="",server="backend",server_service_namespace="",source="beyla""#;
        assert!(out.contains(&format!("traces_service_graph_request_total{{{edge}}} 2")), "{out}");
        assert!(out.contains(&format!("traces_service_graph_request_failed_total{{{edge}}} 1")), "{out}");
        assert!(out.contains(&format!("traces_service_graph_request_server_seconds_count{{{edge}}} 2")), "{out}");
        assert!(out.contains(&format!("traces_service_graph_request_client_seconds_count{{{edge}}} 2")), "{out}");
        assert!(!out.contains("10.0.0.9"), "the lone side must wait for PAIR_WAIT:\n{out}");
        g.advance(END_NS + PAIR_WAIT.as_nanos() as u64, t0);
        let out = render(&reg);
        let lone = r#"client="10.0.0.9",client_service_namespace="",connection_type="virtual_node",server="frontend""#;
        assert!(
            out.contains(&format!(
                "traces_service_graph_request_total{{{lone},server_service_namespace=\"\",source=\"beyla\"}} 1"
            )),
            "{out}"
        );
        assert_eq!(g.pairing.pending, 0);
    }

    #[test]
    fn the_wait_runs_on_event_time_so_a_lagging_pipeline_loses_no_pair() {
        let mut reg = Registry::default();
        let mut g = ServiceGraph::new(&mut reg, Buckets(vec![1.0]), Duration::from_secs(60), false);
        let t0 = Instant::now();
        g.record(&span("worker", Role::Server, "10.0.0.2:5001", "10.0.0.1:5000", 200), t0);
        // Wall-clock minutes pass (the agent is behind its ring buffer) but the watermark
        // stays just short of PAIR_WAIT after the server side: it must keep waiting.
        let late = t0 + Duration::from_secs(120);
        g.advance(END_NS + PAIR_WAIT.as_nanos() as u64 - 1, late);
        assert_eq!(g.pairing.pending, 1);
        g.record(&span("backend", Role::Client, "10.0.0.1:5000", "10.0.0.2:5001", 200), late);
        assert_eq!(g.pairing.pending, 0);
        let out = render(&reg);
        assert!(out.contains(r#"traces_service_graph_request_total{client="backend",client_service_namespace="",connection_type="",server="worker""#), "{out}");
        assert!(!out.contains("virtual_node"), "{out}");
    }

    #[test]
    fn http2_streams_pair_by_stream_id_not_by_order() {
        let mut reg = Registry::default();
        let mut g = ServiceGraph::new(&mut reg, Buckets(vec![1.0]), Duration::from_secs(60), false);
        let t0 = Instant::now();
        let call = |svc: &str, role, local: &str, remote: &str, stream, code| {
            let mut s = span(svc, role, local, remote, 200);
            s.request.stream = stream;
            s.request.grpc_status = Some(code);
            s
        };
        let (c, w) = ("10.0.0.1:5000", "10.0.0.2:5001");
        // Stream 1 fails, stream 3 succeeds; the server finishes them in the other order.
        g.record(&call("worker", Role::Server, w, c, 3, 0), t0);
        g.record(&call("worker", Role::Server, w, c, 1, 13), t0);
        g.record(&call("backend", Role::Client, c, w, 1, 13), t0);
        g.record(&call("backend", Role::Client, c, w, 3, 0), t0);
        let out = render(&reg);
        let edge = r#"client="backend",client_service_namespace="",connection_type="",server="worker",server_service_namespace="",source="beyla""#;
        assert!(out.contains(&format!("traces_service_graph_request_total{{{edge}}} 2")), "{out}");
        assert!(out.contains(&format!("traces_service_graph_request_failed_total{{{edge}}} 1")), "{out}");
    }

    #[test]
    fn client_to_uninstrumented_server_uses_host_and_self_references_are_skipped() {
        let mut reg = Registry::default();
        let mut g = ServiceGraph::new(&mut reg, Buckets(vec![1.0]), Duration::from_secs(60), false);
        let t0 = Instant::now();
        let mut c = span("shop", Role::Client, "10.0.0.1:5000", "10.0.0.7:443", 404);
        c.request.host = Some("payments.example:443".into());
        g.record(&c, t0);
        g.record(&span("shop", Role::Server, "127.0.0.1:80", "127.0.0.1:6000", 200), t0);
        g.record(&span("shop", Role::Client, "127.0.0.1:6000", "127.0.0.1:80", 200), t0);
        g.advance(END_NS + PAIR_WAIT.as_nanos() as u64, t0);
        let out = render(&reg);
        assert!(out.contains(r#"traces_service_graph_request_failed_total{client="shop",client_service_namespace="",connection_type="virtual_node",server="payments.example""#), "{out}");
        assert!(!out.contains(r#"server="shop""#), "self reference counted:\n{out}");
    }
}
