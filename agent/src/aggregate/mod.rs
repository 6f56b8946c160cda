//! Stage `aggregate`: folds spans into the application metrics (RED histograms per service,
//! method, status and route) with Beyla's names, labels and default buckets.
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt};
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::attach::TracedProcess;
use crate::decode::Role;
use crate::enrich::Span;

pub mod service_graph;
pub mod span_metrics;

pub type Labels = Vec<(&'static str, String)>;

/// Histogram buckets, from `prometheus_export.buckets`.
#[derive(Debug, Clone)]
pub struct Buckets(pub Vec<f64>);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

pub(crate) type HistFamily = Family<Labels, Histogram, Buckets>;

/// When each series was last updated, for `prometheus_export.ttl`.
pub(crate) struct LastSeen<K> {
    at: HashMap<K, Instant>,
    ttl: Duration,
}

impl<K: Clone + Eq + std::hash::Hash> LastSeen<K> {
    pub(crate) fn new(ttl: Duration) -> Self {
        LastSeen { at: HashMap::new(), ttl }
    }

    /// Marks `key` updated; true when it was not known.
    pub(crate) fn touch(&mut self, key: K, now: Instant) -> bool {
        self.at.insert(key, now).is_none()
    }

    /// Forgets and returns the keys not updated within the TTL.
    pub(crate) fn take_stale(&mut self, now: Instant) -> Vec<K> {
        let ttl = self.ttl;
        let stale: Vec<K> =
            self.at.iter().filter(|(_, t)| now.saturating_duration_since(**t) > ttl).map(|(k, _)| k.clone()).collect();
        for k in &stale {
            self.at.remove(k);
        }
        stale
    }
}

/// Prometheus `job`: `namespace/name`, or `name` without a namespace.
pub(crate) fn job(svc: &crate::discover::ServiceId) -> String {
    if svc.namespace.is_empty() {
        svc.name.clone()
    } else {
        format!("{}/{}", svc.namespace, svc.name)
    }
}

pub struct AppMetrics {
    server_duration: HistFamily,
    client_duration: HistFamily,
    server_request_size: HistFamily,
    server_response_size: HistFamily,
    client_request_size: HistFamily,
    client_response_size: HistFamily,
    rpc_server_duration: HistFamily,
    rpc_client_duration: HistFamily,
    target_info: Family<Labels, Gauge>,
    /// The series each kind of span was last recorded in, by a hash of what decides its labels:
    /// a span that hits only hashes a few fields, instead of building its label set and
    /// hashing it (SipHash) once per family (most of the agent's CPU per request at saturation).
    series: HashMap<u64, Vec<CachedSeries>>,
    /// `target_info` of each process description recorded, by its address.
    info: HashMap<usize, CachedInfo>,
    hasher: foldhash::fast::RandomState,
    ttl: Duration,
}

/// A cached series: the span fields that decide it, the metric handles, when it was last updated.
struct CachedSeries {
    /// Kept alive so that its address (the key) is not reused by another description.
    process: Arc<TracedProcess>,
    role: Role,
    grpc_status: Option<u32>,
    /// gRPC: the full method; HTTP: the method.
    method: String,
    status: u16,
    route: Option<String>,
    tls: bool,
    host: Option<String>,
    sock: SocketAddr,
    labels: Labels,
    /// duration; HTTP: request and response body sizes.
    handles: [Option<Histogram>; 3],
    last: Instant,
}

/// The span fields that decide a series, borrowed.
#[derive(Hash, PartialEq, Eq)]
struct SeriesKey<'a> {
    process: *const TracedProcess,
    role: Role,
    grpc_status: Option<u32>,
    method: &'a str,
    status: u16,
    route: Option<&'a str>,
    tls: bool,
    host: Option<&'a str>,
    sock: SocketAddr,
}

impl<'a> SeriesKey<'a> {
    fn of(span: &'a Span) -> Self {
        let r = &span.request;
        SeriesKey {
            process: Arc::as_ptr(&span.process),
            role: r.role,
            grpc_status: r.grpc_status,
            method: if r.grpc_status.is_some() { &r.target } else { &r.method },
            status: r.status,
            route: span.route.as_deref(),
            tls: r.tls,
            host: r.host.as_deref(),
            sock: series_sock(r),
        }
    }
}

impl CachedSeries {
    fn observe(&mut self, r: &crate::decode::Request, now: Instant) {
        self.last = now;
        let values = [r.duration_ns() as f64 / 1e9, r.request_body_size as f64, r.response_body_size as f64];
        // Body sizes of a message whose head was cut short are unknown: not observed.
        let known = if r.body_sizes_unknown { 1 } else { values.len() };
        for (h, v) in self.handles.iter().zip(values).take(known) {
            if let Some(h) = h {
                h.observe(v);
            }
        }
    }

    fn key(&self) -> SeriesKey<'_> {
        SeriesKey {
            process: Arc::as_ptr(&self.process),
            role: self.role,
            grpc_status: self.grpc_status,
            method: &self.method,
            status: self.status,
            route: self.route.as_deref(),
            tls: self.tls,
            host: self.host.as_deref(),
            sock: self.sock,
        }
    }
}

struct CachedInfo {
    /// Kept alive so that its address (the key) is not reused by another description.
    _process: Arc<TracedProcess>,
    labels: Labels,
    last: Instant,
}

/// The socket end that names the server (`server.address` without a Host header).
fn series_sock(r: &crate::decode::Request) -> SocketAddr {
    match r.role {
        Role::Server => r.local,
        Role::Client => r.remote,
    }
}

/// Removes stale cache entries; returns the label sets none of the remaining entries use (a
/// series can be shared by several entries, e.g. a process described again).
fn expire_cached<K: Clone + Eq + std::hash::Hash, E>(
    entries: &mut Vec<E>,
    key: impl Fn(&E) -> K,
    last: impl Fn(&E) -> Instant,
    now: Instant,
    ttl: Duration,
) -> Vec<K> {
    let fresh = |t: Instant| now.saturating_duration_since(t) <= ttl;
    let mut live: HashMap<K, bool> = HashMap::new();
    for e in entries.iter() {
        *live.entry(key(e)).or_insert(false) |= fresh(last(e));
    }
    entries.retain(|e| fresh(last(e)));
    live.into_iter().filter(|(_, l)| !l).map(|(k, _)| k).collect()
}

impl AppMetrics {
    /// Creates the metric families and registers them in `registry`.
    pub fn new(
        registry: &mut Registry,
        duration: Buckets,
        request_size: Buckets,
        response_size: Buckets,
        ttl: Duration,
    ) -> Self {
        let m = AppMetrics {
            server_duration: Family::new_with_constructor(duration.clone()),
            client_duration: Family::new_with_constructor(duration.clone()),
            server_request_size: Family::new_with_constructor(request_size.clone()),
            server_response_size: Family::new_with_constructor(response_size.clone()),
            rpc_server_duration: Family::new_with_constructor(duration.clone()),
            rpc_client_duration: Family::new_with_constructor(duration.clone()),
            client_request_size: Family::new_with_constructor(request_size),
            client_response_size: Family::new_with_constructor(response_size),
            target_info: Family::default(),
            series: HashMap::new(),
            info: HashMap::new(),
            hasher: Default::default(),
            ttl,
        };
        let s = Unit::Seconds;
        let b = Unit::Bytes;
        registry.register_with_unit(
            "http_server_request_duration",
            "Duration of HTTP service calls from the server side",
            s.clone(),
            m.server_duration.clone(),
        );
        registry.register_with_unit(
            "http_client_request_duration",
            "Duration of HTTP service calls from the client side",
            s,
            m.client_duration.clone(),
        );
        registry.register_with_unit(
            "http_server_request_body_size",
            "Size of the HTTP request body as received at the server side",
            b.clone(),
            m.server_request_size.clone(),
        );
        registry.register_with_unit(
            "http_server_response_body_size",
            "Size of the HTTP response body as sent from the server side",
            b.clone(),
            m.server_response_size.clone(),
        );
        registry.register_with_unit(
            "http_client_request_body_size",
            "Size of the HTTP request body as sent from the client side",
            b.clone(),
            m.client_request_size.clone(),
        );
        registry.register_with_unit(
            "http_client_response_body_size",
            "Size of the HTTP response body as received at the client side",
            b,
            m.client_response_size.clone(),
        );
        registry.register_with_unit(
            "rpc_server_call_duration",
            "Duration of RPC service calls from the server side",
            Unit::Seconds,
            m.rpc_server_duration.clone(),
        );
        registry.register_with_unit(
            "rpc_client_call_duration",
            "Duration of RPC service calls from the client side",
            Unit::Seconds,
            m.rpc_client_duration.clone(),
        );
        // prometheus-client appends `_info` to info metrics; target_info is a gauge fixed at 1.
        registry.register("target_info", "Target metadata", m.target_info.clone());
        m
    }

    pub fn record(&mut self, span: &Span) {
        let now = Instant::now();
        let r = &span.request;
        let key = Arc::as_ptr(&span.process) as usize;
        match self.info.get_mut(&key) {
            Some(i) => i.last = now,
            None => {
                let mut labels = base_labels(span);
                labels.push(("telemetry_sdk_language", span.process.sdk_language().into()));
                labels.push(("telemetry_sdk_name", "beyla".into()));
                labels.push(("process_pid", span.process.pid.to_string()));
                self.target_info.get_or_create(&labels).set(1);
                self.info.insert(key, CachedInfo { _process: span.process.clone(), labels, last: now });
            }
        }

        let hash = self.hasher.hash_one(SeriesKey::of(span));
        if let Some(c) = self.series.get_mut(&hash).and_then(|b| b.iter_mut().find(|c| c.key() == SeriesKey::of(span)))
        {
            c.observe(r, now);
            return;
        }
        let (labels, handles) = self.create_series(span);
        let mut c = CachedSeries {
            process: span.process.clone(),
            role: r.role,
            grpc_status: r.grpc_status,
            method: if r.grpc_status.is_some() { r.target.clone() } else { r.method.clone() },
            status: r.status,
            route: span.route.clone(),
            tls: r.tls,
            host: r.host.clone(),
            sock: series_sock(r),
            labels,
            handles,
            last: now,
        };
        c.observe(r, now);
        self.series.entry(hash).or_default().push(c);
    }

    /// The labels of the span's series and its histograms (created in the families if new).
    fn create_series(&self, span: &Span) -> (Labels, [Option<Histogram>; 3]) {
        let r = &span.request;
        let (server_addr, server_port) = server_endpoint(span);
        let mut labels = base_labels(span);
        if let Some(code) = r.grpc_status {
            labels.push(("rpc_grpc_status_code", code.to_string()));
            labels.push(("rpc_method", r.target.clone()));
            labels.push(("rpc_system", "grpc".into()));
            labels.push(("server_address", server_addr));
            labels.push(("server_port", server_port.to_string()));
            let fam = match r.role {
                Role::Server => &self.rpc_server_duration,
                Role::Client => &self.rpc_client_duration,
            };
            let h = fam.get_or_create(&labels).clone();
            return (labels, [Some(h), None, None]);
        }
        labels.push(("http_request_method", r.method.clone()));
        labels.push(("http_response_status_code", r.status.to_string()));
        if let Some(route) = &span.route {
            labels.push(("http_route", route.clone()));
        }
        labels.push(("server_address", server_addr));
        labels.push(("server_port", server_port.to_string()));
        labels.push(("url_scheme", r.scheme().into()));
        let (dur, req, resp) = match r.role {
            Role::Server => (&self.server_duration, &self.server_request_size, &self.server_response_size),
            Role::Client => (&self.client_duration, &self.client_request_size, &self.client_response_size),
        };
        let handles = [dur, req, resp].map(|f| Some(f.get_or_create(&labels).clone()));
        (labels, handles)
    }

    /// Every family a series of this side may be in (HTTP or RPC; removing an absent series is
    /// a no-op).
    fn families(&self, role: Role) -> [&HistFamily; 4] {
        match role {
            Role::Server => [
                &self.server_duration,
                &self.server_request_size,
                &self.server_response_size,
                &self.rpc_server_duration,
            ],
            Role::Client => [
                &self.client_duration,
                &self.client_request_size,
                &self.client_response_size,
                &self.rpc_client_duration,
            ],
        }
    }

    /// Removes the series not updated within the TTL; returns how many HTTP/RPC series went.
    pub fn expire(&mut self, now: Instant) -> usize {
        let ttl = self.ttl;
        let mut entries: Vec<CachedSeries> = self.series.drain().flat_map(|(_, b)| b).collect();
        let old = expire_cached(&mut entries, |c| (c.role, c.labels.clone()), |c| c.last, now, ttl);
        for c in entries {
            let hash = self.hasher.hash_one(c.key());
            self.series.entry(hash).or_default().push(c);
        }
        for (role, labels) in &old {
            for fam in self.families(*role) {
                fam.remove(labels);
            }
        }
        let mut infos: Vec<(usize, CachedInfo)> = self.info.drain().collect();
        let gone = expire_cached(&mut infos, |(_, i)| i.labels.clone(), |(_, i)| i.last, now, ttl);
        self.info.extend(infos);
        for labels in gone {
            self.target_info.remove(&labels);
        }
        old.len()
    }
}

/// instance, job, service name and namespace, and the non-empty `k8s_*` attributes
/// (`attributes.kubernetes`).
fn base_labels(span: &Span) -> Labels {
    let svc = &span.process.service;
    let mut base: Labels = vec![
        ("instance", svc.instance_id.clone()),
        ("job", job(svc)),
        ("service_name", svc.name.clone()),
        ("service_namespace", svc.namespace.clone()),
    ];
    if let Some(k8s) = &span.process.k8s {
        base.extend(k8s.attributes().map(|(_, prom, v)| (prom, v.to_string())));
    }
    base
}

/// Everything the Prometheus exporter serves for the applications: the RED metrics, and the
/// span metrics and service graph when their features are on.
pub struct Aggregates {
    pub app: AppMetrics,
    pub spans: Option<span_metrics::SpanMetrics>,
    pub graph: Option<service_graph::ServiceGraph>,
}

impl Aggregates {
    pub fn record(&mut self, span: &Span, now: Instant) {
        self.app.record(span);
        if let Some(s) = &mut self.spans {
            s.record(span);
        }
        if let Some(g) = &mut self.graph {
            g.record(span, now);
        }
    }

    /// The pipeline delivered every event before `drained_ns`: service graph sides that
    /// waited long enough in event time count alone.
    pub fn advance(&mut self, drained_ns: u64, now: Instant) {
        if let Some(g) = &mut self.graph {
            g.advance(drained_ns, now);
        }
    }

    pub fn expire(&mut self, now: Instant) {
        self.app.expire(now);
        if let Some(s) = &mut self.spans {
            s.expire(now);
        }
        if let Some(g) = &mut self.graph {
            g.expire(now);
        }
    }
}

/// `server.address`/`server.port`: the Host header when present, else the socket's server end.
pub(crate) fn server_endpoint(span: &Span) -> (String, u16) {
    let r = &span.request;
    let sock = series_sock(r);
    if let Some(host) = r.host.as_deref().filter(|h| !h.is_empty()) {
        let (name, port) = match host.rsplit_once(':') {
            Some((n, p)) if !n.ends_with(']') || host.starts_with('[') => (n, p.parse().unwrap_or(sock.port())),
            _ => (host, sock.port()),
        };
        return (name.trim_matches(['[', ']']).to_string(), port);
    }
    (sock.ip().to_string(), sock.port())
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;
    use crate::enrich::test_span;

    fn span(role: Role, host: Option<&str>) -> Span {
        let mut s = test_span();
        let r = &mut s.request;
        r.role = role;
        r.method = "POST".into();
        r.target = "/echo".into();
        r.status = 201;
        r.start_ns = 0;
        r.end_ns = 30_000_000;
        r.request_body_size = 100;
        r.response_body_size = 3000;
        r.remote = "10.0.0.9:9090".parse().unwrap();
        r.host = host.map(String::from);
        s.route = Some("/echo".into());
        s
    }

    fn render(spans: &[Span]) -> String {
        let mut reg = Registry::default();
        let d = crate::config::DEFAULT_DURATION_BUCKETS.to_vec();
        let s = crate::config::DEFAULT_SIZE_BUCKETS.to_vec();
        let mut m = AppMetrics::new(&mut reg, Buckets(d), Buckets(s.clone()), Buckets(s), Duration::from_secs(300));
        for sp in spans {
            m.record(sp);
        }
        let mut out = String::new();
        encode(&mut out, &reg).unwrap();
        out
    }

    #[test]
    fn series_expire_after_the_ttl() {
        let mut reg = Registry::default();
        let b = || Buckets(vec![1.0]);
        let mut m = AppMetrics::new(&mut reg, b(), b(), b(), Duration::from_millis(50));
        m.record(&span(Role::Server, None));
        let mut client = span(Role::Client, None);
        m.record(&client);
        assert_eq!(m.expire(Instant::now()), 0);
        std::thread::sleep(Duration::from_millis(80));
        client.request.status = 500;
        m.record(&client); // a fresh series keeps living
        assert_eq!(m.expire(Instant::now()), 2);
        let mut out = String::new();
        encode(&mut out, &reg).unwrap();
        assert!(!out.contains("http_server_request_duration_seconds_count{"), "{out}");
        assert!(!out.contains("http_response_status_code=\"201\""), "{out}");
        assert!(out.contains("http_client_request_duration_seconds_count{"), "{out}");
        assert!(out.contains("target_info{"), "{out}");
    }

    /// A process described again (a new `Arc`, same labels) shares the series: the old
    /// description's entry going stale must not take the series away from the new one.
    #[test]
    fn a_series_shared_by_two_descriptions_lives_while_either_is_updated() {
        let mut reg = Registry::default();
        let b = || Buckets(vec![1.0]);
        let mut m = AppMetrics::new(&mut reg, b(), b(), b(), Duration::from_millis(50));
        let old = span(Role::Server, None);
        m.record(&old);
        std::thread::sleep(Duration::from_millis(80));
        let mut renewed = old.clone();
        renewed.process = Arc::new((*old.process).clone());
        m.record(&renewed);
        assert_eq!(m.expire(Instant::now()), 0);
        m.record(&renewed);
        let mut out = String::new();
        encode(&mut out, &reg).unwrap();
        assert!(out.contains("http_server_request_duration_seconds_count{instance=\"h:42\",job=\"shop\""), "{out}");
        assert!(out.contains("_count{") && out.contains("} 3\n"), "{out}");
        assert_eq!(out.matches("http_server_request_duration_seconds_count{").count(), 1, "{out}");
        assert_eq!(out.matches("target_info{").count(), 1, "{out}");
    }

    #[test]
    fn server_series_names_labels_and_buckets() {
        let text = render(&[span(Role::Server, Some("shop.local:8080")), span(Role::Server, Some("shop.local:8080"))]);
        let labels = r#"instance="h:42",job="shop",service_name="shop",service_namespace="",http_request_method="POST",http_response_status_code="201",http_route="/echo",server_address="shop.local",server_port="8080",url_scheme="http""#;
        assert!(text.contains(&format!("http_server_request_duration_seconds_count{{{labels}}} 2")), "{text}");
        assert!(
            text.contains(&format!("http_server_request_duration_seconds_bucket{{le=\"0.025\",{labels}}} 0")),
            "{text}"
        );
        assert!(
            text.contains(&format!("http_server_request_duration_seconds_bucket{{le=\"0.05\",{labels}}} 2")),
            "{text}"
        );
        assert!(
            text.contains(&format!("http_server_request_body_size_bytes_bucket{{le=\"128.0\",{labels}}} 2")),
            "{text}"
        );
        assert!(
            text.contains(&format!("http_server_response_body_size_bytes_bucket{{le=\"2048.0\",{labels}}} 0")),
            "{text}"
        );
        assert!(text.contains(&format!("http_server_response_body_size_bytes_sum{{{labels}}} 6000.0")), "{text}");
        assert!(text.contains(r#"target_info{instance="h:42",job="shop",service_name="shop",service_namespace="",telemetry_sdk_language="unknown",telemetry_sdk_name="beyla",process_pid="42"} 1"#), "{text}");
        assert!(!text.contains("http_client_request_duration_seconds_count{"), "{text}");
    }

    /// target_info says the runtime, as the OTLP resource does (nginx, a C program: unknown).
    #[test]
    fn target_info_names_the_runtime() {
        let mut s = test_span();
        let p = std::sync::Arc::make_mut(&mut s.process);
        p.exe = "/usr/bin/python3.11".into();
        p.language = crate::attach::sdk_language_of(&p.exe);
        let text = render(&[s]);
        assert!(
            text.contains(r#"telemetry_sdk_language="python",telemetry_sdk_name="beyla",process_pid="42"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn kubernetes_attributes_on_series_and_target_info() {
        let mut s = span(Role::Server, None);
        let mut meta = crate::kube::K8sMeta {
            namespace: "demo".into(),
            pod_name: "backend-7d4b9c8f5d-x2x7q".into(),
            pod_uid: "6b1e5a2c-3d4f-4a6b-8c9d-0e1f2a3b4c5d".into(),
            container_name: "backend".into(),
            node_name: "node-a".into(),
            cluster_name: "prod".into(),
            ..Default::default()
        };
        meta.owners.replicaset = Some("backend-7d4b9c8f5d".into());
        meta.owners.deployment = Some("backend".into());
        std::sync::Arc::make_mut(&mut s.process).k8s = Some(std::sync::Arc::new(meta));
        let text = render(&[s]);
        let k8s = r#"k8s_namespace_name="demo",k8s_pod_name="backend-7d4b9c8f5d-x2x7q",k8s_pod_uid="6b1e5a2c-3d4f-4a6b-8c9d-0e1f2a3b4c5d",k8s_container_name="backend",k8s_deployment_name="backend",k8s_replicaset_name="backend-7d4b9c8f5d",k8s_node_name="node-a",k8s_cluster_name="prod",k8s_owner_name="backend""#;
        let base = r#"instance="h:42",job="shop",service_name="shop",service_namespace="""#;
        let series = format!("http_server_request_duration_seconds_count{{{base},{k8s},http_request_method=\"POST\"");
        assert!(text.contains(&series), "{text}");
        assert!(text.contains(&format!("target_info{{{base},{k8s},telemetry_sdk_language=")), "{text}");
    }

    #[test]
    fn client_series_use_the_peer_when_there_is_no_host() {
        let text = render(&[span(Role::Client, None)]);
        assert!(text.contains(r#"http_client_request_duration_seconds_count{instance="h:42",job="shop",service_name="shop",service_namespace="",http_request_method="POST",http_response_status_code="201",http_route="/echo",server_address="10.0.0.9",server_port="9090",url_scheme="http"} 1"#), "{text}");
        assert!(!text.contains("http_server_request_duration_seconds_count{"), "{text}");
    }
}
