//! `prometheus_export` and `internal_metrics` sections, plus the metric features and
//! histogram buckets shared with `otel_metrics_export`.

use serde::{Deserialize, Serialize};

use crate::config::types::{de_list, Duration};

/// A metric family that an exporter can produce (`features` lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MetricFeature {
    /// Application RED metrics (`http_server_request_duration_seconds`, ...). Implemented.
    #[serde(rename = "application")]
    Application,
    /// Span metrics (`traces_spanmetrics_*`). Implemented.
    #[serde(rename = "application_span")]
    ApplicationSpan,
    /// OpenTelemetry-style span metrics. Not implemented yet.
    #[serde(rename = "application_span_otel")]
    ApplicationSpanOtel,
    /// Span size metrics. Not implemented yet.
    #[serde(rename = "application_span_sizes")]
    ApplicationSpanSizes,
    /// Service graph metrics (`traces_service_graph_*`). Implemented.
    #[serde(rename = "application_service_graph")]
    ApplicationServiceGraph,
    /// Process metrics (`process_cpu_time_seconds_total`, ...). Not implemented yet.
    #[serde(rename = "application_process")]
    ApplicationProcess,
    /// Host info metrics. Not implemented yet.
    #[serde(rename = "application_host")]
    ApplicationHost,
    /// Network flow metrics (`beyla_network_flow_bytes_total`). Not implemented yet.
    #[serde(rename = "network")]
    Network,
    /// Inter-zone network metrics. Not implemented yet.
    #[serde(rename = "network_inter_zone")]
    NetworkInterZone,
    /// Metrics about the eBPF programs. Not implemented yet.
    #[serde(rename = "ebpf")]
    Ebpf,
    /// Every feature (`all` or `*`).
    #[serde(rename = "all", alias = "*")]
    All,
}

impl MetricFeature {
    /// The name as written in YAML.
    pub fn as_str(&self) -> &'static str {
        match self {
            MetricFeature::Application => "application",
            MetricFeature::ApplicationSpan => "application_span",
            MetricFeature::ApplicationSpanOtel => "application_span_otel",
            MetricFeature::ApplicationSpanSizes => "application_span_sizes",
            MetricFeature::ApplicationServiceGraph => "application_service_graph",
            MetricFeature::ApplicationProcess => "application_process",
            MetricFeature::ApplicationHost => "application_host",
            MetricFeature::Network => "network",
            MetricFeature::NetworkInterZone => "network_inter_zone",
            MetricFeature::Ebpf => "ebpf",
            MetricFeature::All => "all",
        }
    }

    /// Whether beyla-rs produces this feature today.
    pub fn is_implemented(&self) -> bool {
        matches!(
            self,
            MetricFeature::Application | MetricFeature::ApplicationSpan | MetricFeature::ApplicationServiceGraph
        )
    }
}

/// Histogram bucket boundaries (`buckets` of `prometheus_export` and `otel_metrics_export`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Buckets {
    /// Duration histograms, in seconds. Default
    /// `[0, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]`.
    pub duration_histogram: Vec<f64>,
    /// Request body size histograms, in bytes. Default
    /// `[0, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]`.
    pub request_size_histogram: Vec<f64>,
    /// Response body size histograms, in bytes. Default
    /// `[0, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]`.
    pub response_size_histogram: Vec<f64>,
    /// GenAI token usage histograms. Accepted, not implemented yet. Default: unset.
    pub gen_ai_client_token_usage_histogram: Option<Vec<f64>>,
    /// GenAI operation duration histograms. Accepted, not implemented yet. Default: unset.
    pub gen_ai_client_operation_duration_histogram: Option<Vec<f64>>,
}

/// Beyla's default duration buckets, in seconds.
pub const DEFAULT_DURATION_BUCKETS: [f64; 15] =
    [0.0, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];

/// Beyla's default body size buckets, in bytes.
pub const DEFAULT_SIZE_BUCKETS: [f64; 10] = [0.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0];

impl Default for Buckets {
    fn default() -> Self {
        Buckets {
            duration_histogram: DEFAULT_DURATION_BUCKETS.to_vec(),
            request_size_histogram: DEFAULT_SIZE_BUCKETS.to_vec(),
            response_size_histogram: DEFAULT_SIZE_BUCKETS.to_vec(),
            gen_ai_client_token_usage_histogram: None,
            gen_ai_client_operation_duration_histogram: None,
        }
    }
}

/// `prometheus_export` section: the scrape endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrometheusExport {
    /// Listen port of the scrape endpoint; unset (or 0) disables it. Default: unset.
    /// Env: `BEYLA_PROMETHEUS_PORT`.
    pub port: Option<u16>,
    /// Scrape path. Default `/metrics`. Env: `BEYLA_PROMETHEUS_PATH`.
    pub path: String,
    /// Metric families to export; only `application` is implemented, others are accepted
    /// with a warning. Default `[application]`. Env: `BEYLA_PROMETHEUS_FEATURES`
    /// (comma-separated).
    #[serde(deserialize_with = "de_list")]
    pub features: Vec<MetricFeature>,
    /// Instrumentations to report (`*`, `http`, `grpc`, `sql`, `redis`, `kafka`, ...).
    /// Default `["*"]`. Env: `BEYLA_PROMETHEUS_INSTRUMENTATIONS` (comma-separated).
    #[serde(deserialize_with = "de_list")]
    pub instrumentations: Vec<String>,
    /// Histogram bucket boundaries. Defaults: see [`Buckets`].
    pub buckets: Buckets,
    /// Time after which a series that got no update is dropped. Default `5m`.
    /// Env: `BEYLA_PROMETHEUS_TTL`.
    pub ttl: Duration,
    /// Size of the span-metrics service cache. Default 10000.
    pub service_cache_size: u32,
    /// Include self-referencing services in the service graph. Default false.
    /// Env: `BEYLA_PROMETHEUS_ALLOW_SERVICE_GRAPH_SELF_REFERENCES`.
    pub allow_service_graph_self_references: bool,
    /// Extra resource attributes to add to `target_info`. Default: empty.
    /// Env: `BEYLA_PROMETHEUS_EXTRA_RESOURCE_ATTRIBUTES` (comma-separated).
    #[serde(deserialize_with = "de_list")]
    pub extra_resource_attributes: Vec<String>,
    /// Extra resource attributes for span metrics. Default: empty.
    #[serde(deserialize_with = "de_list")]
    pub extra_span_resource_attributes: Vec<String>,
    /// Do not export `beyla_build_info`. Default false.
    /// Env: `BEYLA_PROMETHEUS_DISABLE_BUILD_INFO`.
    pub disable_build_info: bool,
}

impl Default for PrometheusExport {
    fn default() -> Self {
        PrometheusExport {
            port: None,
            path: "/metrics".to_string(),
            features: vec![MetricFeature::Application],
            instrumentations: vec!["*".to_string()],
            buckets: Buckets::default(),
            ttl: Duration::from_secs(300),
            service_cache_size: 10_000,
            allow_service_graph_self_references: false,
            extra_resource_attributes: Vec::new(),
            extra_span_resource_attributes: Vec::new(),
            disable_build_info: false,
        }
    }
}

impl PrometheusExport {
    /// Whether the scrape endpoint is enabled (a non-zero port is set).
    pub fn enabled(&self) -> bool {
        self.port.is_some_and(|p| p != 0)
    }

    /// Whether `feature` is requested (directly or through `all`).
    pub fn has_feature(&self, feature: MetricFeature) -> bool {
        self.features.iter().any(|f| *f == feature || *f == MetricFeature::All)
    }
}

/// Exporter of the agent's own metrics (`internal_metrics.exporter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InternalMetricsExporter {
    /// No internal metrics.
    Disabled,
    /// Prometheus scrape endpoint (`internal_metrics.prometheus`).
    Prometheus,
    /// OTLP, through `otel_metrics_export`. Not implemented yet.
    Otel,
}

/// `internal_metrics.prometheus` subsection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InternalPrometheus {
    /// Listen port; unset (or 0) disables it. May equal `prometheus_export.port` (one server,
    /// two paths). Default: unset. Env: `BEYLA_INTERNAL_METRICS_PROMETHEUS_PORT`.
    pub port: Option<u16>,
    /// Scrape path. Default `/internal/metrics`. Env: `BEYLA_INTERNAL_METRICS_PROMETHEUS_PATH`.
    pub path: String,
}

impl Default for InternalPrometheus {
    fn default() -> Self {
        InternalPrometheus { port: None, path: "/internal/metrics".to_string() }
    }
}

/// `internal_metrics` section: the agent's own `beyla_*` metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InternalMetrics {
    /// `disabled`, `prometheus` or `otel`. Default: unset, meaning `prometheus` when
    /// `prometheus.port` is set and `disabled` otherwise (Beyla 1.x behaviour); see
    /// [`InternalMetrics::effective_exporter`]. Env: `BEYLA_INTERNAL_METRICS_EXPORTER`.
    pub exporter: Option<InternalMetricsExporter>,
    /// Prometheus endpoint of the internal metrics.
    pub prometheus: InternalPrometheus,
    /// Interval between two reads of the eBPF programs' statistics. Default `15s`.
    /// Env: `BEYLA_BPF_METRIC_SCRAPE_INTERVAL`.
    pub bpf_metric_scrape_interval: Duration,
}

impl Default for InternalMetrics {
    fn default() -> Self {
        InternalMetrics {
            exporter: None,
            prometheus: InternalPrometheus::default(),
            bpf_metric_scrape_interval: Duration::from_secs(15),
        }
    }
}

impl InternalMetrics {
    /// The exporter in effect, resolving an unset `exporter` from `prometheus.port`.
    pub fn effective_exporter(&self) -> InternalMetricsExporter {
        match self.exporter {
            Some(e) => e,
            None if self.prometheus.port.is_some_and(|p| p != 0) => InternalMetricsExporter::Prometheus,
            None => InternalMetricsExporter::Disabled,
        }
    }
}
