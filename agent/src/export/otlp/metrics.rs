//! OTLP metrics: the application histograms (`http.server.request.duration`, ...), the span
//! metrics (`application_span`) and the service graph (`application_service_graph`, the edges
//! [`Pairing`] finds, as the Prometheus exporter counts them), aggregated per process and
//! attribute set, exported cumulatively every `otel_metrics_export.interval`. A failed export
//! loses nothing: the next one carries the running totals.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets as ExpBuckets, metric::Data, number_data_point, AggregationTemporality,
    ExponentialHistogram, ExponentialHistogramDataPoint, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use tracing::{info, warn};

use super::resource::{int, kv, scope, ResourceBuilder};
use super::transport::Transport;
use super::MetricsOptions;
use crate::aggregate::definitions::{AttributeSelection, MetricDef, METRICS};
use crate::aggregate::service_graph::{Edge, Pairing};
use crate::attach::TracedProcess;
use crate::enrich::Span;
use crate::telemetry::Internal;

type Attrs = Vec<(&'static str, String)>;

/// A metric of the export: a row of [`METRICS`], or one derived from spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Series {
    App(usize),
    Derived(Derived),
}

/// The span metrics and service graph metrics, under the names Beyla exports over OTLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Derived {
    SpanLatency,
    SpanCalls,
    GraphTotal,
    GraphFailed,
    GraphServer,
    GraphClient,
}

impl Derived {
    const ALL: [Derived; 6] = [
        Derived::SpanLatency,
        Derived::SpanCalls,
        Derived::GraphTotal,
        Derived::GraphFailed,
        Derived::GraphServer,
        Derived::GraphClient,
    ];

    /// (name, unit, description, a counter rather than a histogram).
    fn meta(self) -> (&'static str, &'static str, &'static str, bool) {
        match self {
            // Tempo's names; the latency histogram has no unit (its values are seconds).
            Derived::SpanLatency => {
                ("traces_spanmetrics_latency", "", "Span duration, by span name, kind and status", false)
            }
            Derived::SpanCalls => ("traces_spanmetrics_calls_total", "", "Spans, by span name, kind and status", true),
            Derived::GraphTotal => ("traces_service_graph_request_total", "", "Requests between two services", true),
            Derived::GraphFailed => {
                ("traces_service_graph_request_failed_total", "", "Failed requests between two services", true)
            }
            Derived::GraphServer => (
                "traces_service_graph_request_server",
                "s",
                "Request duration seen by the server side of an edge",
                false,
            ),
            Derived::GraphClient => (
                "traces_service_graph_request_client",
                "s",
                "Request duration seen by the client side of an edge",
                false,
            ),
        }
    }
}

pub struct OtlpMetrics {
    procs: HashMap<u32, ProcMetrics>,
    /// `features: application`: the metrics of [`METRICS`].
    application: bool,
    /// `features: application_span`.
    span_metrics: bool,
    /// `features: application_service_graph`.
    graph: Option<Pairing>,
    /// By [`BucketList`](crate::aggregate::definitions::BucketList).
    buckets: [Arc<Vec<f64>>; 3],
    attributes: Arc<AttributeSelection>,
    exponential: bool,
    ttl: Duration,
}

struct ProcMetrics {
    process: Arc<TracedProcess>,
    /// By metric and attributes.
    points: HashMap<(Series, Attrs), Point>,
}

struct Point {
    start_unix_ns: u64,
    last: Instant,
    hist: Hist,
}

enum Hist {
    Explicit {
        bounds: Arc<Vec<f64>>,
        counts: Vec<u64>,
        count: u64,
        sum: f64,
        min: f64,
        max: f64,
    },
    Exponential(ExpHist),
    /// A monotonic counter (the value added each time).
    Counter(u64),
}

impl Hist {
    fn observe(&mut self, v: f64) {
        match self {
            Hist::Counter(n) => *n += v as u64,
            Hist::Explicit { bounds, counts, count, sum, min, max } => {
                // Upper-inclusive buckets, as OTLP and Prometheus define them.
                let i = bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
                counts[i] += 1;
                *count += 1;
                *sum += v;
                *min = min.min(v);
                *max = max.max(v);
            }
            Hist::Exponential(e) => e.observe(v),
        }
    }
}

impl OtlpMetrics {
    pub fn new(o: &MetricsOptions) -> Self {
        OtlpMetrics {
            procs: HashMap::new(),
            application: o.application,
            span_metrics: o.span_metrics,
            graph: o.service_graph.then(|| Pairing::new(o.service_graph_self_references)),
            buckets: [
                Arc::new(o.duration_buckets.clone()),
                Arc::new(o.size_buckets.0.clone()),
                Arc::new(o.size_buckets.1.clone()),
            ],
            attributes: o.attributes.clone(),
            exponential: o.exponential,
            ttl: o.ttl,
        }
    }

    pub fn record(&mut self, s: &Span) {
        if self.application {
            for (m, def) in METRICS.iter().enumerate().filter(|(_, d)| (d.feeds)(s)) {
                let Some(v) = (def.value)(s) else { continue };
                let attrs: Attrs = self.attributes.attrs(m).filter_map(|a| (a.value)(s).map(|v| (a.otel, v))).collect();
                self.observe(&s.process, Series::App(m), attrs, v, def.buckets as usize);
            }
        }
        if self.span_metrics {
            let svc = &s.process.service;
            let attrs: Attrs = vec![
                ("service.name", svc.name.clone()),
                ("service.instance.id", svc.instance_id.clone()),
                ("service.namespace", svc.namespace.clone()),
                ("span.kind", crate::aggregate::span_metrics::kind(s.request.role).into()),
                ("span.name", s.name()),
                ("status.code", if s.is_error() { "STATUS_CODE_ERROR" } else { "STATUS_CODE_UNSET" }.into()),
                ("source", "beyla".into()),
            ];
            let seconds = s.request.duration_ns() as f64 / 1e9;
            self.observe(&s.process, Series::Derived(Derived::SpanLatency), attrs.clone(), seconds, 0);
            self.observe(&s.process, Series::Derived(Derived::SpanCalls), attrs, 1.0, 0);
        }
        if let Some(g) = &mut self.graph {
            let mut edges = Vec::new();
            g.record(s, &mut edges);
            self.count_edges(edges);
        }
    }

    /// Every event before `drained_ns` went through the pipeline: service graph sides that
    /// waited long enough count alone.
    pub fn advance(&mut self, drained_ns: u64) {
        if let Some(g) = &mut self.graph {
            let mut edges = Vec::new();
            g.advance(drained_ns, &mut edges);
            self.count_edges(edges);
        }
    }

    fn count_edges(&mut self, edges: Vec<Edge>) {
        for e in edges {
            let attrs: Attrs = e.labels.clone();
            let series = |d| Series::Derived(d);
            self.observe(&e.process, series(Derived::GraphTotal), attrs.clone(), 1.0, 0);
            if e.failed {
                self.observe(&e.process, series(Derived::GraphFailed), attrs.clone(), 1.0, 0);
            }
            if let Some(v) = e.server_seconds {
                self.observe(&e.process, series(Derived::GraphServer), attrs.clone(), v, 0);
            }
            if let Some(v) = e.client_seconds {
                self.observe(&e.process, series(Derived::GraphClient), attrs, v, 0);
            }
        }
    }

    /// One value into `series` of `process` (a histogram with `buckets[bucket]` as explicit
    /// bounds, or a counter).
    fn observe(&mut self, process: &Arc<TracedProcess>, series: Series, attrs: Attrs, v: f64, bucket: usize) {
        let now = Instant::now();
        let (buckets, exponential) = (&self.buckets, self.exponential);
        let p = self
            .procs
            .entry(process.pid)
            .or_insert_with(|| ProcMetrics { process: process.clone(), points: HashMap::new() });
        p.process = process.clone();
        let counter = matches!(series, Series::Derived(d) if d.meta().3);
        let point = p.points.entry((series, attrs)).or_insert_with(|| Point {
            start_unix_ns: unix_ns(),
            last: now,
            hist: if counter {
                Hist::Counter(0)
            } else if exponential {
                Hist::Exponential(ExpHist::new(MAX_SIZE, MAX_SCALE))
            } else {
                let bounds = buckets[bucket].clone();
                let n = bounds.len() + 1;
                Hist::Explicit { bounds, counts: vec![0; n], count: 0, sum: 0.0, min: f64::MAX, max: f64::MIN }
            },
        });
        point.last = now;
        point.hist.observe(v);
    }

    /// Drops series not updated within the TTL, and processes left with none.
    pub fn expire(&mut self, now: Instant) {
        let ttl = self.ttl;
        for p in self.procs.values_mut() {
            p.points.retain(|_, pt| now.saturating_duration_since(pt.last) <= ttl);
        }
        self.procs.retain(|_, p| !p.points.is_empty());
    }

    /// The cumulative state as one export request, a resource per process.
    pub fn request(&self, res: &ResourceBuilder) -> ExportMetricsServiceRequest {
        let now = unix_ns();
        let mut out = Vec::new();
        for p in self.procs.values() {
            let mut metrics: Vec<Metric> = Vec::new();
            let points_of = |series: Series| {
                let mut points: Vec<(&Attrs, &Point)> =
                    p.points.iter().filter(|((s, _), _)| *s == series).map(|((_, a), pt)| (a, pt)).collect();
                points.sort_by(|a, b| a.0.cmp(b.0));
                points
            };
            for (idx, def) in METRICS.iter().enumerate() {
                let points = points_of(Series::App(idx));
                if points.is_empty() {
                    continue;
                }
                let attrs = |a: &Attrs| a.iter().map(|(k, v)| attribute(def, k, v)).collect::<Vec<KeyValue>>();
                metrics.push(Metric {
                    name: def.otel.to_string(),
                    description: def.help.to_string(),
                    unit: def.unit.otel().to_string(),
                    metadata: Vec::new(),
                    data: Some(self.histogram(&points, now, attrs)),
                });
            }
            for d in Derived::ALL {
                let points = points_of(Series::Derived(d));
                if points.is_empty() {
                    continue;
                }
                let attrs = |a: &Attrs| a.iter().map(|(k, v)| kv(k, v)).collect::<Vec<KeyValue>>();
                let (name, unit, help, counter) = d.meta();
                let data = if counter {
                    Data::Sum(Sum {
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                        data_points: points
                            .iter()
                            .filter_map(|(a, pt)| match pt.hist {
                                Hist::Counter(n) => Some(NumberDataPoint {
                                    attributes: attrs(a),
                                    start_time_unix_nano: pt.start_unix_ns,
                                    time_unix_nano: now,
                                    exemplars: Vec::new(),
                                    flags: 0,
                                    value: Some(number_data_point::Value::AsInt(n as i64)),
                                }),
                                _ => None,
                            })
                            .collect(),
                    })
                } else {
                    self.histogram(&points, now, attrs)
                };
                metrics.push(Metric {
                    name: name.to_string(),
                    description: help.to_string(),
                    unit: unit.to_string(),
                    metadata: Vec::new(),
                    data: Some(data),
                });
            }
            out.push(ResourceMetrics {
                resource: Some(res.resource(&p.process)),
                scope_metrics: vec![ScopeMetrics { scope: Some(scope()), metrics, schema_url: String::new() }],
                schema_url: String::new(),
            });
        }
        ExportMetricsServiceRequest { resource_metrics: out }
    }
}

impl OtlpMetrics {
    /// The histogram data of `points` (explicit or exponential, as configured).
    fn histogram(&self, points: &[(&Attrs, &Point)], now: u64, attrs: impl Fn(&Attrs) -> Vec<KeyValue>) -> Data {
        let cumulative = AggregationTemporality::Cumulative as i32;
        if self.exponential {
            return Data::ExponentialHistogram(ExponentialHistogram {
                aggregation_temporality: cumulative,
                data_points: points
                    .iter()
                    .filter_map(|(a, pt)| match &pt.hist {
                        Hist::Exponential(e) => Some(e.data_point(attrs(a), pt.start_unix_ns, now)),
                        _ => None,
                    })
                    .collect(),
            });
        }
        Data::Histogram(Histogram {
            aggregation_temporality: cumulative,
            data_points: points
                .iter()
                .filter_map(|(a, pt)| match &pt.hist {
                    Hist::Explicit { bounds, counts, count, sum, min, max } => Some(HistogramDataPoint {
                        attributes: attrs(a),
                        start_time_unix_nano: pt.start_unix_ns,
                        time_unix_nano: now,
                        count: *count,
                        sum: Some(*sum),
                        bucket_counts: counts.clone(),
                        explicit_bounds: bounds.to_vec(),
                        exemplars: Vec::new(),
                        flags: 0,
                        min: Some(*min),
                        max: Some(*max),
                    }),
                    _ => None,
                })
                .collect(),
        })
    }
}

/// Status codes and ports are integers in the semantic conventions.
fn attribute(def: &MetricDef, k: &str, v: &str) -> KeyValue {
    if def.attrs.iter().any(|a| a.otel == k && a.int) {
        if let Ok(n) = v.parse() {
            return int(k, n);
        }
    }
    kv(k, v)
}

fn unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

pub async fn run(
    agg: Arc<Mutex<OtlpMetrics>>,
    transport: Transport,
    opts: MetricsOptions,
    res: Arc<ResourceBuilder>,
    tel: Internal,
) {
    info!(endpoint = %opts.target.endpoint, protocol = ?opts.target.protocol, interval = ?opts.interval, "Exporting metrics over OTLP.");
    let mut tick = tokio::time::interval(opts.interval);
    tick.tick().await;
    let mut failing = false;
    loop {
        tick.tick().await;
        let req = {
            let mut m = agg.lock().unwrap_or_else(|e| e.into_inner());
            m.expire(Instant::now());
            if m.procs.is_empty() {
                continue;
            }
            m.request(&res)
        };
        match transport.export_metrics(req).await {
            Ok(()) => {
                tel.otel_metric_exported();
                if failing {
                    info!(endpoint = %opts.target.endpoint, "OTLP metric export recovered.");
                    failing = false;
                }
            }
            Err(e) => {
                tel.otel_metric_export_failed();
                if !failing {
                    warn!(endpoint = %opts.target.endpoint, error = %e, "OTLP metric export failed; the next export carries the totals.");
                    failing = true;
                }
            }
        }
    }
}

/// The OTel SDK defaults for base-2 exponential histograms.
const MAX_SIZE: usize = 160;
const MAX_SCALE: i32 = 20;

/// A base-2 exponential histogram of non-negative values: bucket `i` holds
/// (2^(i / 2^scale), 2^((i+1) / 2^scale)]; the scale drops as the range widens so that at
/// most `max_size` buckets are used.
#[derive(Debug, Clone)]
pub struct ExpHist {
    scale: i32,
    offset: i32,
    counts: Vec<u64>,
    zero_count: u64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    max_size: usize,
}

impl ExpHist {
    pub fn new(max_size: usize, max_scale: i32) -> Self {
        ExpHist {
            scale: max_scale,
            offset: 0,
            counts: Vec::new(),
            zero_count: 0,
            count: 0,
            sum: 0.0,
            min: f64::MAX,
            max: f64::MIN,
            max_size: max_size.max(2),
        }
    }

    fn index(v: f64, scale: i32) -> i32 {
        // ceil(log2(v) * 2^scale) - 1, exact for powers of two at every scale.
        let (mantissa, exp) = frexp(v);
        if mantissa == 0.5 {
            // v = 2^k (k = exp-1) is the upper bound of bucket k*2^scale - 1; at negative
            // scales, of bucket ceil(k / 2^-scale) - 1 = (k-1) >> -scale.
            let k = exp - 1;
            return if scale >= 0 { (k << scale) - 1 } else { (k - 1) >> -scale };
        }
        if scale > 0 {
            ((v.log2() * f64::from(1u32 << scale)).ceil() as i32) - 1
        } else {
            // Floor division of the exponent: 2^(-scale) powers of two per bucket.
            (exp - 1) >> -scale
        }
    }

    pub fn observe(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        if v <= 0.0 || !v.is_finite() {
            self.zero_count += 1;
            return;
        }
        let mut idx = Self::index(v, self.scale);
        if self.counts.is_empty() {
            self.offset = idx;
            self.counts.push(1);
            return;
        }
        let (mut lo, mut hi) = (self.offset.min(idx), (self.offset + self.counts.len() as i32 - 1).max(idx));
        while (hi - lo + 1) as usize > self.max_size {
            self.downscale(1);
            idx >>= 1;
            lo = self.offset.min(idx);
            hi = (self.offset + self.counts.len() as i32 - 1).max(idx);
        }
        if idx < self.offset {
            let grow = (self.offset - idx) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = idx;
        }
        let pos = (idx - self.offset) as usize;
        if pos >= self.counts.len() {
            self.counts.resize(pos + 1, 0);
        }
        self.counts[pos] += 1;
    }

    fn downscale(&mut self, by: i32) {
        let new_offset = self.offset >> by;
        let last = (self.offset + self.counts.len() as i32 - 1) >> by;
        let mut merged = vec![0u64; (last - new_offset + 1) as usize];
        for (i, c) in self.counts.iter().enumerate() {
            merged[(((self.offset + i as i32) >> by) - new_offset) as usize] += c;
        }
        self.counts = merged;
        self.offset = new_offset;
        self.scale -= by;
    }

    fn data_point(&self, attributes: Vec<KeyValue>, start: u64, now: u64) -> ExponentialHistogramDataPoint {
        ExponentialHistogramDataPoint {
            attributes,
            start_time_unix_nano: start,
            time_unix_nano: now,
            count: self.count,
            sum: Some(self.sum),
            scale: self.scale,
            zero_count: self.zero_count,
            positive: Some(ExpBuckets { offset: self.offset, bucket_counts: self.counts.clone() }),
            negative: Some(ExpBuckets { offset: 0, bucket_counts: Vec::new() }),
            flags: 0,
            exemplars: Vec::new(),
            min: (self.count > 0).then_some(self.min),
            max: (self.count > 0).then_some(self.max),
            zero_threshold: 0.0,
        }
    }
}

/// `v = mantissa * 2^exp` with mantissa in [0.5, 1), for positive normal `v`.
fn frexp(v: f64) -> (f64, i32) {
    let bits = v.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 {
        // Subnormal: scale up first.
        let (m, e) = frexp(v * f64::from(1u32 << 31) * f64::from(1u32 << 23));
        return (m, e - 54);
    }
    let mantissa = f64::from_bits((bits & !(0x7ffu64 << 52)) | (1022u64 << 52));
    (mantissa, exp - 1022)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::test_span;

    fn opts(exponential: bool) -> MetricsOptions {
        MetricsOptions {
            instrumentations: Default::default(),
            target: super::super::Target {
                endpoint: "http://c:4318/v1/metrics".into(),
                protocol: super::super::Protocol::HttpProtobuf,
                headers: None,
                insecure_skip_verify: false,
            },
            interval: Duration::from_secs(1),
            export_timeout: Duration::from_secs(1),
            duration_buckets: vec![0.001, 0.01, 0.1],
            size_buckets: (vec![0.0, 100.0], vec![10.0, 1000.0]),
            exponential,
            ttl: Duration::from_secs(60),
            attributes: Default::default(),
            application: true,
            span_metrics: false,
            service_graph: false,
            service_graph_self_references: false,
        }
    }

    #[test]
    fn explicit_histograms_per_attribute_set() {
        let mut m = OtlpMetrics::new(&opts(false));
        let s = test_span(); // 1.5 ms, 0 B in, 12 B out
        m.record(&s);
        m.record(&s);
        let mut err = test_span();
        err.request.status = 500;
        m.record(&err);
        let req = m.request(&ResourceBuilder::new(Vec::new()));
        assert_eq!(req.resource_metrics.len(), 1);
        let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
        let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            ["http.server.request.duration", "http.server.request.body.size", "http.server.response.body.size"]
        );
        let Some(Data::Histogram(h)) = &metrics[0].data else { panic!("histogram") };
        assert_eq!(h.data_points.len(), 2);
        let ok = h.data_points.iter().find(|p| p.attributes.contains(&int("http.response.status_code", 200))).unwrap();
        assert_eq!((ok.count, ok.bucket_counts.clone()), (2, vec![0, 2, 0, 0]));
        assert_eq!(ok.explicit_bounds, [0.001, 0.01, 0.1]);
        assert!(ok.attributes.contains(&kv("http.route", "/users/*")));
        assert!(ok.attributes.contains(&int("server.port", 8080)));
        assert_eq!(metrics[0].unit, "s");
        let Some(Data::Histogram(resp)) = &metrics[2].data else { panic!("histogram") };
        let ok =
            resp.data_points.iter().find(|p| p.attributes.contains(&int("http.response.status_code", 200))).unwrap();
        assert_eq!((ok.sum, ok.bucket_counts.clone()), (Some(24.0), vec![0, 2, 0]));
    }

    /// `attributes.select` picks the data points' attributes as it picks the Prometheus labels.
    #[test]
    fn selected_attributes() {
        let mut select = std::collections::BTreeMap::new();
        let lists = |include: Option<Vec<String>>, exclude: Vec<String>| {
            crate::config::sections::attributes::InclusionLists { include, exclude }
        };
        select.insert("http_server_request_duration_seconds".into(), lists(Some(vec!["url.*".into()]), vec![]));
        select.insert("http.server.*.size".into(), lists(None, vec!["server_*".into()]));
        let mut o = opts(false);
        o.attributes = Arc::new(AttributeSelection::new(&select).unwrap());
        let mut m = OtlpMetrics::new(&o);
        m.record(&test_span());
        let req = m.request(&ResourceBuilder::new(Vec::new()));
        let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
        let keys = |i: usize| {
            let Some(Data::Histogram(h)) = &metrics[i].data else { panic!("histogram") };
            h.data_points[0].attributes.iter().map(|a| a.key.clone()).collect::<Vec<_>>()
        };
        assert_eq!(keys(0), ["url.scheme", "url.path"]);
        let Some(Data::Histogram(h)) = &metrics[0].data else { panic!("histogram") };
        assert!(h.data_points[0].attributes.contains(&kv("url.path", "/users/7")));
        assert_eq!(keys(1), ["http.request.method", "http.response.status_code", "http.route", "url.scheme"]);
        assert_eq!(keys(2), keys(1));
    }

    /// `application_span` and `application_service_graph` without `application`: span
    /// metrics per span, and one edge per request once both ends are seen.
    #[test]
    fn span_metrics_and_service_graph_edges() {
        let mut o = opts(false);
        (o.application, o.span_metrics, o.service_graph) = (false, true, true);
        let mut m = OtlpMetrics::new(&o);
        let server = test_span();
        let mut client = test_span();
        std::sync::Arc::make_mut(&mut client.process).service.name = "front".into();
        std::sync::Arc::make_mut(&mut client.process).pid += 1;
        client.request.role = crate::decode::Role::Client;
        (client.request.local, client.request.remote) = (server.request.remote, server.request.local);
        client.request.status = 503;
        m.record(&server);
        m.record(&client);
        let req = m.request(&ResourceBuilder::new(Vec::new()));
        let by_service = |svc: &str| {
            let rm = req
                .resource_metrics
                .iter()
                .find(|r| r.resource.as_ref().unwrap().attributes.contains(&kv("service.name", svc)))
                .unwrap_or_else(|| panic!("no resource for {svc}"));
            rm.scope_metrics[0].metrics.clone()
        };
        let names = |ms: &[Metric]| ms.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
        let front = by_service("front");
        assert_eq!(
            names(&front),
            [
                "traces_spanmetrics_latency",
                "traces_spanmetrics_calls_total",
                "traces_service_graph_request_total",
                "traces_service_graph_request_failed_total",
                "traces_service_graph_request_server",
                "traces_service_graph_request_client",
            ]
        );
        let server_name = test_span().process.service.name.clone();
        assert_eq!(names(&by_service(&server_name)), ["traces_spanmetrics_latency", "traces_spanmetrics_calls_total"]);
        let Some(Data::Sum(calls)) = &front[1].data else { panic!("sum") };
        assert!(calls.is_monotonic);
        let p = &calls.data_points[0];
        assert_eq!(p.value, Some(number_data_point::Value::AsInt(1)));
        for want in [kv("span.kind", "SPAN_KIND_CLIENT"), kv("status.code", "STATUS_CODE_ERROR"), kv("source", "beyla")]
        {
            assert!(p.attributes.contains(&want), "{want:?} not in {:?}", p.attributes);
        }
        let Some(Data::Sum(total)) = &front[2].data else { panic!("sum") };
        let edge = &total.data_points[0];
        assert_eq!(edge.value, Some(number_data_point::Value::AsInt(1)));
        assert!(edge.attributes.contains(&kv("client", "front")));
        assert!(edge.attributes.contains(&kv("server", &server_name)));
        assert!(edge.attributes.contains(&kv("connection_type", "")));
        let Some(Data::Histogram(h)) = &front[4].data else { panic!("histogram") };
        assert_eq!((h.data_points[0].count, front[4].unit.as_str()), (1, "s"));
    }

    #[test]
    fn exponential_histograms_and_expiry() {
        let mut m = OtlpMetrics::new(&opts(true));
        m.record(&test_span());
        let req = m.request(&ResourceBuilder::new(Vec::new()));
        let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
        let Some(Data::ExponentialHistogram(h)) = &metrics[0].data else { panic!("exponential") };
        assert_eq!(h.data_points[0].count, 1);
        assert_eq!(h.data_points[0].positive.as_ref().unwrap().bucket_counts, [1]);
        // The request body size is 0: the zero bucket.
        let Some(Data::ExponentialHistogram(z)) = &metrics[1].data else { panic!("exponential") };
        assert_eq!(z.data_points[0].zero_count, 1);
        m.expire(Instant::now() + Duration::from_secs(120));
        assert!(m.request(&ResourceBuilder::new(Vec::new())).resource_metrics.is_empty());
    }

    #[test]
    fn exponential_buckets_hold_their_values() {
        // At scale 0, bucket i is (2^i, 2^(i+1)].
        assert_eq!(ExpHist::index(1.0, 0), -1);
        assert_eq!(ExpHist::index(2.0, 0), 0);
        assert_eq!(ExpHist::index(3.0, 0), 1);
        assert_eq!(ExpHist::index(4.0, 0), 1);
        assert_eq!(ExpHist::index(4.0, 1), 3);
        assert_eq!(ExpHist::index(5.0, -1), 1);
        assert_eq!(ExpHist::index(4.0, -1), 0);
        for scale in [-2, 0, 3, 20] {
            for v in [0.0015, 0.3, 1.0, 7.0, 1000.0, 123456.0] {
                let i = ExpHist::index(v, scale);
                let base = 2f64.powf(2f64.powi(-scale));
                let (lo, hi) = (base.powi(i), base.powi(i + 1));
                assert!(lo < v * (1.0 + 1e-9) && v <= hi * (1.0 + 1e-9), "v={v} scale={scale} i={i} ({lo}, {hi}]");
            }
        }
        // A wide range is folded into max_size buckets by lowering the scale.
        let mut h = ExpHist::new(8, 20);
        for v in [0.001, 0.5, 3.0, 10_000.0] {
            h.observe(v);
        }
        assert!(h.counts.len() <= 8, "{h:?}");
        assert_eq!(h.counts.iter().sum::<u64>(), 4);
        let base = 2f64.powf(2f64.powi(-h.scale));
        assert!(base.powi(h.offset) < 0.001 && 10_000.0 <= base.powi(h.offset + h.counts.len() as i32));
    }
}
