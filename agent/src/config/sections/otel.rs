//! `otel_metrics_export`, `otel_traces_export`, `grafana` and `metrics` sections.
//!
//! OTLP export is not implemented yet: these sections are accepted (so Beyla files load and
//! typos are still caught) and the loader warns that they are ignored. Values Beyla leaves
//! unset by default are `Option`s; the doc of each field gives Beyla's default.

use serde::{Deserialize, Serialize};

use super::discovery::Sampler;
use super::prometheus::{Buckets, MetricFeature};
use crate::config::types::{de_list, Duration};

/// OTLP transport (`protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OtlpProtocol {
    /// gRPC.
    #[serde(rename = "grpc")]
    Grpc,
    /// Protobuf over HTTP.
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// JSON over HTTP.
    #[serde(rename = "http/json")]
    HttpJson,
}

/// Default histogram aggregation (`histogram_aggregation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistogramAggregation {
    /// Explicit buckets (default).
    #[default]
    ExplicitBucketHistogram,
    /// Base-2 exponential buckets.
    Base2ExponentialBucketHistogram,
}

/// `otel_metrics_export` section. Accepted, not implemented yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtelMetricsExport {
    /// Metrics endpoint, used as given. Default: unset.
    /// Env: `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`.
    pub endpoint: Option<String>,
    /// `grpc`, `http/protobuf` or `http/json`; unset guesses from the port (4317 grpc, 4318
    /// http/protobuf). Default: unset. Env: `OTEL_EXPORTER_OTLP_PROTOCOL`,
    /// `OTEL_EXPORTER_OTLP_METRICS_PROTOCOL` (the latter wins).
    pub protocol: Option<OtlpProtocol>,
    /// Skip TLS certificate verification. Default false. Env: `BEYLA_OTEL_INSECURE_SKIP_VERIFY`.
    pub insecure_skip_verify: bool,
    /// Export interval. Default `60s`. Env: `BEYLA_METRICS_INTERVAL`, or
    /// `OTEL_METRIC_EXPORT_INTERVAL` in milliseconds.
    pub interval: Duration,
    /// Metric families (deprecated in Beyla 3 in favour of top-level `metrics.features`).
    /// Default `[application]`. Env: `BEYLA_OTEL_METRICS_FEATURES`.
    #[serde(deserialize_with = "de_list")]
    pub features: Vec<MetricFeature>,
    /// Instrumentations to report. Default `["*"]`. Env: `BEYLA_OTEL_METRICS_INSTRUMENTATIONS`.
    #[serde(deserialize_with = "de_list")]
    pub instrumentations: Vec<String>,
    /// Histogram bucket boundaries. Defaults as `prometheus_export.buckets`.
    pub buckets: Buckets,
    /// `explicit_bucket_histogram` or `base2_exponential_bucket_histogram`. Default explicit.
    /// Env: `OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION`.
    pub histogram_aggregation: HistogramAggregation,
    /// Exponential histogram limits (`max_size`, `max_scale`). Default: unset.
    pub exponential_histogram: Option<serde_yaml::Value>,
    /// Time after which a series that got no update is dropped. Default `5m`.
    /// Env: `BEYLA_METRICS_TTL`.
    pub ttl: Duration,
    /// Include self-referencing services in the service graph. Default false.
    /// Env: `BEYLA_OTEL_ALLOW_SERVICE_GRAPH_SELF_REFERENCES`.
    pub allow_service_graph_self_references: bool,
    /// Reporter cache entries. Default 256. Env: `BEYLA_METRICS_REPORT_CACHE_LEN`.
    pub reporters_cache_len: u32,
    /// Log level of the OpenTelemetry SDK. Default: unset.
    pub otel_sdk_log_level: Option<String>,
    /// Extra resource attributes for span metrics. Default: empty.
    #[serde(deserialize_with = "de_list")]
    pub extra_span_resource_attributes: Vec<String>,
    /// Shared OTLP endpoint (`/v1/metrics` is appended for HTTP). Env-only:
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    #[serde(skip)]
    pub common_endpoint: Option<String>,
    /// Raw OTLP headers (`k=v,k2=v2`). Env-only: `OTEL_EXPORTER_OTLP_HEADERS`, then
    /// `OTEL_EXPORTER_OTLP_METRICS_HEADERS`.
    #[serde(skip)]
    pub headers: Option<String>,
}

impl Default for OtelMetricsExport {
    fn default() -> Self {
        OtelMetricsExport {
            endpoint: None,
            protocol: None,
            insecure_skip_verify: false,
            interval: Duration::from_secs(60),
            features: vec![MetricFeature::Application],
            instrumentations: vec!["*".to_string()],
            buckets: Buckets::default(),
            histogram_aggregation: HistogramAggregation::ExplicitBucketHistogram,
            exponential_histogram: None,
            ttl: Duration::from_secs(300),
            allow_service_graph_self_references: false,
            reporters_cache_len: 256,
            otel_sdk_log_level: None,
            extra_span_resource_attributes: Vec::new(),
            common_endpoint: None,
            headers: None,
        }
    }
}

/// `otel_traces_export` section. Accepted, not implemented yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtelTracesExport {
    /// Traces endpoint, used as given. Default: unset. Env: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`.
    pub endpoint: Option<String>,
    /// `grpc`, `http/protobuf` or `http/json`; unset guesses from the port. Default: unset.
    /// Env: `OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` (the latter wins).
    pub protocol: Option<OtlpProtocol>,
    /// Skip TLS certificate verification. Default false. Env: `BEYLA_OTEL_INSECURE_SKIP_VERIFY`.
    pub insecure_skip_verify: bool,
    /// Sampler. Default: unset (parent-based always-on).
    pub sampler: Sampler,
    /// Instrumentations to report. Default `["*"]`. Env: `BEYLA_OTEL_TRACES_INSTRUMENTATIONS`.
    #[serde(deserialize_with = "de_list")]
    pub instrumentations: Vec<String>,
    /// Queue size. Default: unset (Beyla 4096).
    pub max_queue_size: Option<u32>,
    /// Maximum spans per export. Default: unset (Beyla 4096).
    pub max_export_batch_size: Option<u32>,
    /// Maximum spans per batch (newer name). Default: unset.
    pub batch_max_size: Option<u32>,
    /// Sending queue size (newer name). Default: unset.
    pub queue_size: Option<u32>,
    /// Flush a partial batch after this long. Default: unset (Beyla `15s`).
    pub batch_timeout: Option<Duration>,
    /// Export timeout. Default: unset.
    pub export_timeout: Option<Duration>,
    /// Retry back-off: first interval. Default: unset.
    pub backoff_initial_interval: Option<Duration>,
    /// Retry back-off: largest interval. Default: unset.
    pub backoff_max_interval: Option<Duration>,
    /// Retry back-off: give up after. Default: unset.
    pub backoff_max_elapsed_time: Option<Duration>,
    /// Reporter cache entries. Default: unset (Beyla 256).
    pub reporters_cache_len: Option<u32>,
    /// Payload compression (`none`, `gzip`, ...). Default: unset.
    pub compression: Option<String>,
    /// Log level of the OpenTelemetry SDK. Default: unset.
    pub otel_sdk_log_level: Option<String>,
    /// Shared OTLP endpoint (`/v1/traces` is appended for HTTP). Env-only:
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    #[serde(skip)]
    pub common_endpoint: Option<String>,
    /// Raw OTLP headers. Env-only: `OTEL_EXPORTER_OTLP_HEADERS`, then
    /// `OTEL_EXPORTER_OTLP_TRACES_HEADERS`.
    #[serde(skip)]
    pub headers: Option<String>,
}

impl Default for OtelTracesExport {
    fn default() -> Self {
        OtelTracesExport {
            endpoint: None,
            protocol: None,
            insecure_skip_verify: false,
            sampler: Sampler::default(),
            instrumentations: vec!["*".to_string()],
            max_queue_size: None,
            max_export_batch_size: None,
            batch_max_size: None,
            queue_size: None,
            batch_timeout: None,
            export_timeout: None,
            backoff_initial_interval: None,
            backoff_max_interval: None,
            backoff_max_elapsed_time: None,
            reporters_cache_len: None,
            compression: None,
            otel_sdk_log_level: None,
            common_endpoint: None,
            headers: None,
        }
    }
}

/// `grafana.otlp` subsection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrafanaOtlp {
    /// Signals to submit (`metrics`, `traces`). Default: unset (Beyla `[traces]`).
    /// Env: `GRAFANA_CLOUD_SUBMIT`.
    pub cloud_submit: Option<Vec<String>>,
    /// Grafana Cloud zone, e.g. `prod-eu-west-0`. Default: unset. Env: `GRAFANA_CLOUD_ZONE`.
    pub cloud_zone: Option<String>,
    /// Grafana Cloud instance id (a number; quote it). Default: unset.
    /// Env: `GRAFANA_CLOUD_INSTANCE_ID`.
    pub cloud_instance_id: Option<serde_yaml::Value>,
    /// Grafana Cloud API key. Default: unset. Env: `GRAFANA_CLOUD_API_KEY`.
    pub cloud_api_key: Option<String>,
}

/// `grafana` section (Grafana Cloud OTLP shortcut). Accepted, not implemented yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Grafana {
    /// Grafana Cloud OTLP settings.
    pub otlp: GrafanaOtlp,
}

/// Top-level `metrics` section (Beyla 3 per-application metrics). Accepted, not implemented
/// yet: use `prometheus_export.features`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Metrics {
    /// Metric families. Default: unset (Beyla `[application]`).
    pub features: Option<Vec<MetricFeature>>,
    /// Instrumentations to report. Default: unset.
    pub instrumentations: Option<Vec<String>>,
}
