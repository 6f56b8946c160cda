//! OTLP export: spans (`otel_traces_export`) and the application metrics
//! (`otel_metrics_export`) to an OpenTelemetry collector, over gRPC or HTTP/protobuf.
//!
//! Built on the protocol types of `opentelemetry-proto` rather than the SDK's pipeline: the
//! agent reports for many services at once (one OTLP resource each), sets its own trace and
//! span ids and timestamps, and must never block capture, so it owns the batching, the
//! bounded queue and the aggregation.
pub mod metrics;
pub mod resource;
pub mod sampler;
pub mod traces;
pub mod transport;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::aggregate::definitions::AttributeSelection;
use crate::config::{Config, HistogramAggregation, MetricFeature, OtlpProtocol};
use crate::enrich::Span;
use crate::export::Instrumentations;
use crate::telemetry::Internal;
pub use sampler::Sampler;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// Where one signal goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub endpoint: String,
    pub protocol: Protocol,
    /// Raw `k=v,...` headers.
    pub headers: Option<String>,
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone)]
pub struct TracesOptions {
    pub target: Target,
    pub sampler: Sampler,
    /// `otel_traces_export.instrumentations`.
    pub instrumentations: Instrumentations,
    /// Spans held while the collector is slow or down; the oldest go beyond it.
    pub queue_len: usize,
    pub batch_len: usize,
    pub batch_timeout: Duration,
    pub export_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

#[derive(Debug, Clone)]
pub struct MetricsOptions {
    pub target: Target,
    /// `otel_metrics_export.instrumentations`.
    pub instrumentations: Instrumentations,
    pub interval: Duration,
    pub export_timeout: Duration,
    pub duration_buckets: Vec<f64>,
    pub size_buckets: (Vec<f64>, Vec<f64>),
    pub exponential: bool,
    pub ttl: Duration,
    /// `attributes.select`.
    pub attributes: Arc<AttributeSelection>,
    /// `features`: `application`, `application_span`, `application_service_graph`.
    pub application: bool,
    pub span_metrics: bool,
    pub service_graph: bool,
    /// `allow_service_graph_self_references`.
    pub service_graph_self_references: bool,
}

#[derive(Debug, Clone, Default)]
pub struct OtlpOptions {
    pub traces: Option<TracesOptions>,
    pub metrics: Option<MetricsOptions>,
    /// `OTEL_RESOURCE_ATTRIBUTES` of the agent, added to every resource.
    pub resource_attributes: Vec<(String, String)>,
}

/// Picks the endpoint and protocol of one signal. The signal's own endpoint is used as given;
/// the shared one (`OTEL_EXPORTER_OTLP_ENDPOINT`) gets `signal_path` appended for HTTP. With no
/// protocol set, port 4317 means gRPC and anything else HTTP/protobuf (the OTel default).
pub fn target(
    endpoint: Option<&str>,
    common: Option<&str>,
    protocol: Option<OtlpProtocol>,
    signal_path: &str,
) -> Result<Option<(String, Protocol)>, String> {
    let (chosen, shared) = match (endpoint.filter(|e| !e.is_empty()), common.filter(|e| !e.is_empty())) {
        (Some(e), _) => (e.trim(), false),
        (None, Some(c)) => (c.trim(), true),
        (None, None) => return Ok(None),
    };
    let uri: hyper::Uri = chosen.parse().map_err(|e| format!("{chosen:?} is not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(format!("{chosen:?} must be an http:// or https:// URL with a host"));
    }
    let protocol = match protocol {
        Some(OtlpProtocol::Grpc) => Protocol::Grpc,
        Some(OtlpProtocol::HttpProtobuf) => Protocol::HttpProtobuf,
        Some(OtlpProtocol::HttpJson) => {
            return Err("protocol http/json is not supported; use grpc or http/protobuf".to_string())
        }
        None if uri.port_u16() == Some(4317) => Protocol::Grpc,
        None => Protocol::HttpProtobuf,
    };
    let endpoint = if shared && protocol == Protocol::HttpProtobuf {
        format!("{}{signal_path}", chosen.trim_end_matches('/'))
    } else {
        chosen.to_string()
    };
    Ok(Some((endpoint, protocol)))
}

/// `k=v,k2=v2` pairs of `OTEL_RESOURCE_ATTRIBUTES`.
pub fn resource_attributes(raw: Option<&str>) -> Vec<(String, String)> {
    transport::parse_headers(raw.unwrap_or("")).unwrap_or_default()
}

impl OtlpOptions {
    /// The OTLP settings of `cfg`; errors name the key at fault.
    pub fn from_config(cfg: &Config) -> Result<Self, (String, String)> {
        let t = &cfg.otel_traces_export;
        let traces = target(t.endpoint.as_deref(), t.common_endpoint.as_deref(), t.protocol, "/v1/traces")
            .map_err(|e| ("otel_traces_export.endpoint".to_string(), e))?;
        let m = &cfg.otel_metrics_export;
        let metrics = target(m.endpoint.as_deref(), m.common_endpoint.as_deref(), m.protocol, "/v1/metrics")
            .map_err(|e| ("otel_metrics_export.endpoint".to_string(), e))?;
        for (key, h) in [("otel_traces_export.headers", &t.headers), ("otel_metrics_export.headers", &m.headers)] {
            transport::parse_headers(h.as_deref().unwrap_or("")).map_err(|e| (key.to_string(), e.to_string()))?;
        }
        let sampler = Sampler::from_config(&t.sampler).map_err(|e| ("otel_traces_export.sampler".to_string(), e))?;
        let ms = |d: Option<crate::config::Duration>, default: u64| {
            d.map(|d| d.as_std()).unwrap_or(Duration::from_millis(default))
        };
        let attributes = Arc::new(AttributeSelection::new(&cfg.attributes.select)?);
        let traces_instr = Instrumentations::new(&t.instrumentations, "otel_traces_export.instrumentations")?;
        let metrics_instr = Instrumentations::new(&m.instrumentations, "otel_metrics_export.instrumentations")?;
        let has = |f: MetricFeature| m.features.iter().any(|x| *x == f || *x == MetricFeature::All);
        let queue_len = t.queue_size.or(t.max_queue_size).unwrap_or(4096).max(1) as usize;
        Ok(OtlpOptions {
            traces: traces.map(|(endpoint, protocol)| TracesOptions {
                target: Target {
                    endpoint,
                    protocol,
                    headers: t.headers.clone(),
                    insecure_skip_verify: t.insecure_skip_verify,
                },
                sampler,
                instrumentations: traces_instr,
                queue_len,
                batch_len: (t.batch_max_size.or(t.max_export_batch_size).unwrap_or(4096).max(1) as usize)
                    .min(queue_len),
                batch_timeout: ms(t.batch_timeout, 5_000),
                export_timeout: ms(t.export_timeout, 10_000),
                backoff_initial: ms(t.backoff_initial_interval, 500),
                backoff_max: ms(t.backoff_max_interval, 5_000),
            }),
            metrics: metrics.map(|(endpoint, protocol)| MetricsOptions {
                target: Target {
                    endpoint,
                    protocol,
                    headers: m.headers.clone(),
                    insecure_skip_verify: m.insecure_skip_verify,
                },
                instrumentations: metrics_instr,
                interval: m.interval.as_std().max(Duration::from_millis(100)),
                export_timeout: Duration::from_secs(10),
                duration_buckets: m.buckets.duration_histogram.clone(),
                size_buckets: (m.buckets.request_size_histogram.clone(), m.buckets.response_size_histogram.clone()),
                exponential: m.histogram_aggregation == HistogramAggregation::Base2ExponentialBucketHistogram,
                ttl: m.ttl.as_std(),
                attributes,
                application: has(MetricFeature::Application),
                span_metrics: has(MetricFeature::ApplicationSpan),
                service_graph: has(MetricFeature::ApplicationServiceGraph),
                service_graph_self_references: m.allow_service_graph_self_references,
            }),
            resource_attributes: resource_attributes(cfg.otel_resource_attributes.as_deref()),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.traces.is_some() || self.metrics.is_some()
    }
}

/// The running OTLP exporters; `record` is called with every batch of spans and never waits.
pub struct Otlp {
    traces: Option<(Arc<traces::SpanQueue>, Sampler, Instrumentations)>,
    metrics: Option<(Arc<Mutex<metrics::OtlpMetrics>>, Instrumentations)>,
}

impl Otlp {
    pub fn start(opts: OtlpOptions, tel: Internal) -> Result<(Self, Vec<JoinHandle<()>>), transport::TransportError> {
        let mut tasks = Vec::new();
        let resource = Arc::new(resource::ResourceBuilder::new(opts.resource_attributes.clone()));
        let traces = match opts.traces {
            Some(t) => {
                let tr = transport::Transport::new(&t.target, t.export_timeout)?;
                let queue = Arc::new(traces::SpanQueue::new(t.queue_len));
                let (sampler, instr) = (t.sampler.clone(), t.instrumentations.clone());
                tasks.push(tokio::spawn(traces::run(queue.clone(), tr, t, resource.clone(), tel.clone())));
                Some((queue, sampler, instr))
            }
            None => None,
        };
        let metrics = match opts.metrics {
            Some(m) => {
                let tr = transport::Transport::new(&m.target, m.export_timeout)?;
                let agg = Arc::new(Mutex::new(metrics::OtlpMetrics::new(&m)));
                let instr = m.instrumentations.clone();
                tasks.push(tokio::spawn(metrics::run(agg.clone(), tr, m, resource, tel)));
                Some((agg, instr))
            }
            None => None,
        };
        Ok((Otlp { traces, metrics }, tasks))
    }

    pub fn record(&self, spans: &[Span]) {
        if let Some((queue, sampler, instr)) = &self.traces {
            queue.push(spans.iter().filter(|s| instr.selects(s) && sampler.should_sample(&s.request.trace)).cloned());
        }
        if let Some((m, instr)) = &self.metrics {
            let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
            for s in spans.iter().filter(|s| instr.selects(s)) {
                m.record(s);
            }
        }
    }

    /// Every event before `drained_ns` went through the pipeline (see `Pairing::advance`).
    pub fn advance(&self, drained_ns: u64) {
        if let Some((m, _)) = &self.metrics {
            m.lock().unwrap_or_else(|e| e.into_inner()).advance(drained_ns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_and_protocol_resolution() {
        let g = Some(OtlpProtocol::Grpc);
        let h = Some(OtlpProtocol::HttpProtobuf);
        let t = |e, c, p| target(e, c, p, "/v1/traces").unwrap();
        // The shared endpoint gets the signal path for HTTP only.
        assert_eq!(
            t(None, Some("http://c:4318"), None),
            Some(("http://c:4318/v1/traces".into(), Protocol::HttpProtobuf))
        );
        assert_eq!(
            t(None, Some("http://c:4318/otlp/"), None),
            Some(("http://c:4318/otlp/v1/traces".into(), Protocol::HttpProtobuf))
        );
        assert_eq!(t(None, Some("http://c:4317"), None), Some(("http://c:4317".into(), Protocol::Grpc)));
        assert_eq!(t(None, Some("https://c:443"), g), Some(("https://c:443".into(), Protocol::Grpc)));
        // A signal's own endpoint is used as given and wins over the shared one.
        assert_eq!(
            t(Some("http://t:9999/custom"), Some("http://c:4317"), h),
            Some(("http://t:9999/custom".into(), Protocol::HttpProtobuf))
        );
        assert_eq!(t(Some("http://t:4317"), None, None), Some(("http://t:4317".into(), Protocol::Grpc)));
        assert_eq!(t(None, None, g), None);
        assert!(target(Some("c:4317"), None, None, "/v1/traces").is_err());
        let json = target(Some("http://c:4318"), None, Some(OtlpProtocol::HttpJson), "/v1/traces").unwrap_err();
        assert!(json.contains("http/json"), "{json}");
    }

    #[test]
    fn options_from_config() {
        let mut cfg = Config::default();
        assert!(!OtlpOptions::from_config(&cfg).unwrap().is_enabled());
        cfg.otel_traces_export.common_endpoint = Some("http://c:4318".into());
        cfg.otel_metrics_export.common_endpoint = Some("http://c:4318".into());
        cfg.otel_metrics_export.histogram_aggregation = HistogramAggregation::Base2ExponentialBucketHistogram;
        cfg.otel_resource_attributes = Some("deployment.environment=prod".into());
        let o = OtlpOptions::from_config(&cfg).unwrap();
        assert_eq!(o.traces.as_ref().unwrap().target.endpoint, "http://c:4318/v1/traces");
        let m = o.metrics.as_ref().unwrap();
        assert_eq!(m.target.endpoint, "http://c:4318/v1/metrics");
        assert!(m.exponential);
        assert_eq!(m.interval, Duration::from_secs(60));
        assert_eq!(o.resource_attributes, [("deployment.environment".to_string(), "prod".to_string())]);
        cfg.otel_traces_export.sampler.name = Some("sometimes".into());
        assert_eq!(OtlpOptions::from_config(&cfg).unwrap_err().0, "otel_traces_export.sampler");
        cfg.otel_traces_export.sampler.name = None;
        cfg.otel_traces_export.headers = Some("oops".into());
        assert_eq!(OtlpOptions::from_config(&cfg).unwrap_err().0, "otel_traces_export.headers");
    }
}
