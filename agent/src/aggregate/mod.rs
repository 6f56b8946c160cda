//! Stage `aggregate`: folds spans into the application metrics (RED histograms per service,
//! method, status and route) with Beyla's names, labels and default buckets.
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt};
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::attach::TracedProcess;
use crate::decode::{Operation, Role};
use crate::enrich::Span;

pub mod definitions;
pub mod service_graph;
pub mod span_metrics;

use definitions::{AttributeSelection, METRICS};

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
    /// By index of [`METRICS`].
    families: Vec<HistFamily>,
    selection: Arc<AttributeSelection>,
    /// The selection reads `url.path` / `client.address`: they decide series too.
    keyed_by_path: bool,
    keyed_by_client: bool,
    target_info: Family<Labels, Gauge>,
    /// The series each kind of span was last recorded in, by a hash of what decides its labels:
    /// a span that hits only hashes a few fields, instead of building its label sets and
    /// hashing them (SipHash) once per family (most of the agent's CPU per request at saturation).
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
    path: Option<String>,
    client: Option<IpAddr>,
    operation: Option<Box<Operation>>,
    /// The metrics this kind of span feeds: index in [`METRICS`], labels, histogram.
    handles: Vec<(usize, Labels, Histogram)>,
    last: Instant,
}

/// The span fields that decide a series, borrowed. Every field an attribute of [`METRICS`]
/// reads is here (`path` and `client` only when selected, so that they do not split the cache
/// otherwise).
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
    path: Option<&'a str>,
    client: Option<IpAddr>,
    /// A non-HTTP operation's attributes decide its labels.
    operation: Option<&'a Operation>,
}

impl CachedSeries {
    fn observe(&mut self, span: &Span, now: Instant) {
        self.last = now;
        for (m, _, h) in &self.handles {
            if let Some(v) = (METRICS[*m].value)(span) {
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
            path: self.path.as_deref(),
            client: self.client,
            operation: self.operation.as_deref(),
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
    keys: impl Fn(&E) -> Vec<K>,
    last: impl Fn(&E) -> Instant,
    now: Instant,
    ttl: Duration,
) -> Vec<K> {
    let fresh = |t: Instant| now.saturating_duration_since(t) <= ttl;
    let mut live: HashMap<K, bool> = HashMap::new();
    for e in entries.iter() {
        for k in keys(e) {
            *live.entry(k).or_insert(false) |= fresh(last(e));
        }
    }
    entries.retain(|e| fresh(last(e)));
    live.into_iter().filter(|(_, l)| !l).map(|(k, _)| k).collect()
}

impl AppMetrics {
    /// Creates the metric families of [`METRICS`] and registers them in `registry`; `buckets`
    /// by [`definitions::BucketList`].
    pub fn new(
        registry: &mut Registry,
        buckets: [Buckets; 3],
        selection: Arc<AttributeSelection>,
        ttl: Duration,
    ) -> Self {
        let families: Vec<HistFamily> =
            METRICS.iter().map(|d| Family::new_with_constructor(buckets[d.buckets as usize].clone())).collect();
        for (d, f) in METRICS.iter().zip(&families) {
            registry.register_with_unit(d.prom, d.help, d.unit.prometheus(), f.clone());
        }
        let target_info = Family::default();
        // prometheus-client appends `_info` to info metrics; target_info is a gauge fixed at 1.
        registry.register("target_info", "Target metadata", target_info.clone());
        AppMetrics {
            families,
            keyed_by_path: selection.reports("url.path"),
            keyed_by_client: selection.reports("client.address"),
            selection,
            target_info,
            series: HashMap::new(),
            info: HashMap::new(),
            hasher: Default::default(),
            ttl,
        }
    }

    fn key_of<'a>(&self, span: &'a Span) -> SeriesKey<'a> {
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
            path: self.keyed_by_path.then(|| r.path()),
            client: self.keyed_by_client.then(|| definitions::client_ip(span)),
            operation: r.operation.as_deref(),
        }
    }

    pub fn record(&mut self, span: &Span) {
        let now = Instant::now();
        let r = &span.request;
        let key = Arc::as_ptr(&span.process) as usize;
        match self.info.get_mut(&key) {
            Some(i) => i.last = now,
            None => {
                let mut labels = base_labels(span, |_| true);
                labels.push(("telemetry_sdk_language", span.process.sdk_language().into()));
                labels.push(("telemetry_sdk_name", "beyla".into()));
                labels.push(("process_pid", span.process.pid.to_string()));
                self.target_info.get_or_create(&labels).set(1);
                self.info.insert(key, CachedInfo { _process: span.process.clone(), labels, last: now });
            }
        }

        let skey = self.key_of(span);
        let hash = self.hasher.hash_one(&skey);
        if let Some(c) = self.series.get_mut(&hash).and_then(|b| b.iter_mut().find(|c| c.key() == skey)) {
            c.observe(span, now);
            return;
        }
        let mut c = CachedSeries {
            process: span.process.clone(),
            role: r.role,
            grpc_status: r.grpc_status,
            method: skey.method.to_string(),
            status: r.status,
            route: span.route.clone(),
            tls: r.tls,
            host: r.host.clone(),
            sock: skey.sock,
            path: skey.path.map(String::from),
            client: skey.client,
            operation: r.operation.clone(),
            handles: self.create_series(span),
            last: now,
        };
        c.observe(span, now);
        self.series.entry(hash).or_default().push(c);
    }

    /// The metrics the span feeds, with its labels in each and their histograms (created in
    /// the families if new).
    fn create_series(&self, span: &Span) -> Vec<(usize, Labels, Histogram)> {
        let mut out: Vec<(usize, Labels, Histogram)> = Vec::new();
        for (m, _) in METRICS.iter().enumerate().filter(|(_, d)| (d.feeds)(span)) {
            let mut labels = base_labels(span, |prom| self.selection.reports_k8s(m, prom));
            labels.extend(self.selection.attrs(m).filter_map(|a| (a.value)(span).map(|v| (a.prom, v))));
            let h = self.families[m].get_or_create(&labels).clone();
            out.push((m, labels, h));
        }
        out
    }

    /// Removes the series not updated within the TTL; returns how many label sets went.
    pub fn expire(&mut self, now: Instant) -> usize {
        let ttl = self.ttl;
        let mut entries: Vec<CachedSeries> = self.series.drain().flat_map(|(_, b)| b).collect();
        let keys = |c: &CachedSeries| c.handles.iter().map(|(m, l, _)| (*m, l.clone())).collect();
        let old = expire_cached(&mut entries, keys, |c| c.last, now, ttl);
        for c in entries {
            let hash = self.hasher.hash_one(c.key());
            self.series.entry(hash).or_default().push(c);
        }
        let mut gone: Vec<&Labels> = Vec::new();
        for (m, labels) in &old {
            self.families[*m].remove(labels);
            if !gone.contains(&labels) {
                gone.push(labels);
            }
        }
        let mut infos: Vec<(usize, CachedInfo)> = self.info.drain().collect();
        let stale = expire_cached(&mut infos, |(_, i)| vec![i.labels.clone()], |(_, i)| i.last, now, ttl);
        self.info.extend(infos);
        for labels in stale {
            self.target_info.remove(&labels);
        }
        gone.len()
    }
}

/// instance, job, service name and namespace, and the non-empty `k8s_*` attributes
/// (`attributes.kubernetes`) that `k8s` keeps.
fn base_labels(span: &Span, k8s: impl Fn(&str) -> bool) -> Labels {
    let svc = &span.process.service;
    let mut base: Labels = vec![
        ("instance", svc.instance_id.clone()),
        ("job", job(svc)),
        ("service_name", svc.name.clone()),
        ("service_namespace", svc.namespace.clone()),
    ];
    if let Some(meta) = &span.process.k8s {
        base.extend(meta.attributes().filter(|(_, prom, _)| k8s(prom)).map(|(_, prom, v)| (prom, v.to_string())));
    }
    base
}

/// The aggregate stage's options (`prometheus_export`, `attributes.select`).
#[derive(Debug, Clone)]
pub struct AggregateOptions {
    /// `prometheus_export.buckets`: duration, request size, response size.
    pub buckets: [Buckets; 3],
    /// `attributes.select`: the attributes of each application metric (Prometheus and OTLP).
    pub attributes: Arc<AttributeSelection>,
    /// `prometheus_export.ttl`: series not updated for this long disappear.
    pub ttl: Duration,
    /// `prometheus_export.instrumentations`.
    pub instrumentations: crate::export::Instrumentations,
    /// `prometheus_export.features` holds `application_span`.
    pub span_metrics: bool,
    /// `prometheus_export.features` holds `application_service_graph`.
    pub service_graph: bool,
    /// `otel_metrics_export.allow_service_graph_self_references`.
    pub service_graph_self_references: bool,
}

impl AggregateOptions {
    /// From the validated configuration (what could fail was checked when it was loaded).
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        use crate::config::MetricFeature;
        let p = &cfg.prometheus_export;
        let b = &p.buckets;
        AggregateOptions {
            buckets: [
                Buckets(b.duration_histogram.clone()),
                Buckets(b.request_size_histogram.clone()),
                Buckets(b.response_size_histogram.clone()),
            ],
            attributes: Arc::new(AttributeSelection::new(&cfg.attributes.select).unwrap_or_default()),
            ttl: p.ttl.as_std(),
            instrumentations: crate::export::Instrumentations::new(
                &p.instrumentations,
                "prometheus_export.instrumentations",
            )
            .unwrap_or_default(),
            span_metrics: p.has_feature(MetricFeature::ApplicationSpan),
            service_graph: p.has_feature(MetricFeature::ApplicationServiceGraph),
            service_graph_self_references: cfg.otel_metrics_export.allow_service_graph_self_references,
        }
    }
}

/// Everything the Prometheus exporter serves for the applications: the RED metrics, and the
/// span metrics and service graph when their features are on.
pub struct Aggregates {
    /// `prometheus_export.instrumentations`: the spans these metrics count.
    pub instrumentations: crate::export::Instrumentations,
    pub app: AppMetrics,
    pub spans: Option<span_metrics::SpanMetrics>,
    pub graph: Option<service_graph::ServiceGraph>,
}

impl Aggregates {
    /// Creates the metric families `o` asks for and registers them in `registry`.
    pub fn new(registry: &mut Registry, o: &AggregateOptions) -> Self {
        let duration = o.buckets[0].clone();
        Aggregates {
            instrumentations: o.instrumentations.clone(),
            spans: o.span_metrics.then(|| span_metrics::SpanMetrics::new(registry, duration.clone(), o.ttl)),
            graph: o.service_graph.then(|| {
                service_graph::ServiceGraph::new(registry, duration.clone(), o.ttl, o.service_graph_self_references)
            }),
            app: AppMetrics::new(registry, o.buckets.clone(), o.attributes.clone(), o.ttl),
        }
    }

    pub fn record(&mut self, span: &Span, now: Instant) {
        if !self.instrumentations.selects(span) {
            return;
        }
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
        let buckets = [Buckets(d), Buckets(s.clone()), Buckets(s)];
        let mut m = AppMetrics::new(&mut reg, buckets, Default::default(), Duration::from_secs(300));
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
        let mut m = AppMetrics::new(&mut reg, [b(), b(), b()], Default::default(), Duration::from_millis(50));
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
        let mut m = AppMetrics::new(&mut reg, [b(), b(), b()], Default::default(), Duration::from_millis(50));
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

    /// `attributes.select`: per-metric labels, optional ones (`url_path`, `client_address`)
    /// deciding series, Kubernetes labels selected away.
    #[test]
    fn selected_attributes_decide_labels_and_series() {
        use crate::config::sections::attributes::InclusionLists;
        let mut select = std::collections::BTreeMap::new();
        let include = |l: &[&str]| Some(l.iter().map(|s| s.to_string()).collect());
        select.insert(
            "http_server_request_duration".to_string(),
            InclusionLists {
                include: include(&["http.request.method", "url.path", "k8s.namespace.*"]),
                exclude: vec![],
            },
        );
        select.insert("*_body_size".to_string(), InclusionLists { include: None, exclude: vec!["k8s_*".into()] });
        let sel = Arc::new(AttributeSelection::new(&select).unwrap());
        let mut reg = Registry::default();
        let b = || Buckets(vec![1.0]);
        let mut m = AppMetrics::new(&mut reg, [b(), b(), b()], sel, Duration::from_secs(60));
        let mut s = span(Role::Server, None);
        let meta = crate::kube::K8sMeta { namespace: "demo".into(), pod_name: "p-1".into(), ..Default::default() };
        std::sync::Arc::make_mut(&mut s.process).k8s = Some(std::sync::Arc::new(meta));
        m.record(&s);
        m.record(&s);
        s.request.target = "/echo/2?x".into();
        m.record(&s);
        let mut text = String::new();
        encode(&mut text, &reg).unwrap();
        let base = r#"instance="h:42",job="shop",service_name="shop",service_namespace="""#;
        let dur = "http_server_request_duration_seconds_count";
        let k8s = r#"k8s_namespace_name="demo""#;
        assert!(
            text.contains(&format!(r#"{dur}{{{base},{k8s},http_request_method="POST",url_path="/echo"}} 2"#)),
            "{text}"
        );
        assert!(
            text.contains(&format!(r#"{dur}{{{base},{k8s},http_request_method="POST",url_path="/echo/2"}} 1"#)),
            "{text}"
        );
        // The body sizes keep their defaults without the Kubernetes labels, in one series.
        let size = r#"http_server_request_body_size_bytes_count{instance="h:42",job="shop",service_name="shop",service_namespace="",http_request_method="POST",http_response_status_code="201",http_route="/echo",server_address="127.0.0.1",server_port="8080",url_scheme="http"} 3"#;
        assert!(text.contains(size), "{text}");
        assert!(!text.contains("k8s_pod_name=\"p-1\",http"), "{text}");
        assert!(text.contains(r#"target_info{instance="h:42",job="shop",service_name="shop",service_namespace="",k8s_namespace_name="demo",k8s_pod_name="p-1""#), "{text}");
    }

    #[test]
    fn client_series_use_the_peer_when_there_is_no_host() {
        let text = render(&[span(Role::Client, None)]);
        assert!(text.contains(r#"http_client_request_duration_seconds_count{instance="h:42",job="shop",service_name="shop",service_namespace="",http_request_method="POST",http_response_status_code="201",http_route="/echo",server_address="10.0.0.9",server_port="9090",url_scheme="http"} 1"#), "{text}");
        assert!(!text.contains("http_server_request_duration_seconds_count{"), "{text}");
    }
}
