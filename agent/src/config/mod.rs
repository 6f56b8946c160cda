//! The agent's single configuration tree, with Beyla's YAML keys and `BEYLA_*` variables.
//!
//! Layers, lowest first: [`Config::default()`] < YAML file (`--config` or
//! `BEYLA_CONFIG_PATH`) < environment ([`env::aliases`]) < command-line overrides
//! (`--set key=value`). See [`load`] and [`check_file`].
//!
//! Every section is `#[serde(default, deny_unknown_fields)]`: a misspelt key is an error that
//! names the key path and its `file:line:column`. Sections of features that are not built yet
//! are accepted (so Beyla's documented configurations load) and reported as
//! [`ConfigWarning`]s, which the binary logs. `docs/config.md` is the user-facing reference.

mod env;
mod error;
mod keys;
mod load;
mod locate;
mod provenance;
pub mod sections;
mod types;
mod validate;

use serde::{Deserialize, Serialize};

pub use env::{aliases, EnvAlias, EnvConversion};
pub use error::{ConfigError, ConfigWarning, Origin};
pub use load::{check_file, load, load_str, Loaded, Sources};
pub use sections::attributes::{
    AttributeFilter, Attributes, Filter, HostId, InclusionLists, InstanceId, KubeEnable, Kubernetes, NameResolver,
    SensitiveQueryParams,
};
pub use sections::discovery::{
    Discovery, ExportSignal, RegexSelector, Sampler, Selector, SelectorMetrics, SelectorOf, SelectorRoutes,
    DEFAULT_EXCLUDE_EXE_GLOB, DEFAULT_EXCLUDE_K8S_NAMESPACES,
};
pub use sections::ebpf::{BufferSizes, ContextPropagation, Ebpf, HookMode, QueryText, RedisDbCache, TcBackend};
pub use sections::network::{HealthCheck, Network};
pub use sections::otel::{
    Grafana, GrafanaOtlp, HistogramAggregation, Metrics, OtelMetricsExport, OtelTracesExport, OtlpProtocol,
};
pub use sections::prometheus::{
    Buckets, InternalMetrics, InternalMetricsExporter, InternalPrometheus, MetricFeature, PrometheusExport,
    DEFAULT_DURATION_BUCKETS, DEFAULT_SIZE_BUCKETS,
};
pub use sections::routes::{IgnoreMode, RoutePattern, Routes, Unmatched};
pub use types::{Duration, GlobPattern, LogFormat, LogLevel, Matcher, PortRange, PortSet, RegexPattern, TracePrinter};

/// Format of the startup configuration dump (`log_config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogConfigFormat {
    /// YAML.
    Yaml,
    /// JSON.
    Json,
}

/// The whole configuration. Field docs give each key's default and environment variable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Process discovery: which processes to instrument.
    pub discovery: Discovery,
    /// HTTP route decoration.
    pub routes: Routes,
    /// Attribute decoration and selection.
    pub attributes: Attributes,
    /// OTLP metrics export. Accepted, not implemented yet.
    pub otel_metrics_export: OtelMetricsExport,
    /// OTLP traces export. Accepted, not implemented yet.
    pub otel_traces_export: OtelTracesExport,
    /// Prometheus scrape endpoint.
    pub prometheus_export: PrometheusExport,
    /// The agent's own metrics.
    pub internal_metrics: InternalMetrics,
    /// Print spans to standard output: `disabled`, `text`, `json` or `json_indent`.
    /// Default `disabled`. Env: `BEYLA_TRACE_PRINTER`.
    pub trace_printer: TracePrinter,
    /// eBPF tracer knobs.
    pub ebpf: Ebpf,
    /// Network flow metrics. Accepted, not implemented yet.
    pub network: Network,
    /// Attribute-value filters. Accepted, not implemented yet.
    pub filter: Filter,
    /// Peer/host name resolution. Accepted, not implemented yet.
    pub name_resolver: NameResolver,
    /// Grafana Cloud OTLP shortcut. Accepted, not implemented yet.
    pub grafana: Grafana,
    /// Beyla 3 per-application metric features. Accepted, not implemented yet.
    pub metrics: Metrics,
    /// `/healthz` endpoint. Accepted, not implemented yet.
    pub health_check: HealthCheck,
    /// Agent log verbosity: `DEBUG`, `INFO`, `WARN` or `ERROR` (case-insensitive).
    /// Default `INFO`. Env: `BEYLA_LOG_LEVEL`.
    pub log_level: LogLevel,
    /// Agent log format: `text` or `json`. Default `text`. Env: `BEYLA_LOG_FORMAT`.
    pub log_format: LogFormat,
    /// Dump the effective configuration at startup as `yaml` or `json`. Accepted, not
    /// implemented yet. Default: unset. Env: `BEYLA_LOG_CONFIG`.
    pub log_config: Option<LogConfigFormat>,
    /// Select processes listening on any of these ports (`80,443,8000-8999`); ANDed with
    /// `auto_target_exe`/`executable_name` into one selector. Default: unset.
    /// Env: `BEYLA_OPEN_PORT`.
    pub open_port: Option<PortSet>,
    /// Deprecated: regex over the executable path; use `auto_target_exe`. Default: unset.
    /// Env: `BEYLA_EXECUTABLE_NAME`.
    pub executable_name: Option<RegexPattern>,
    /// Glob over the full executable path (Beyla reads it from the environment only; beyla-rs
    /// also accepts it in YAML). Default: unset. Env: `BEYLA_AUTO_TARGET_EXE`, falling back to
    /// `OTEL_GO_AUTO_TARGET_EXE`.
    pub auto_target_exe: Option<GlobPattern>,
    /// Glob over the detected language (`go`, `java`, ...); ANDed into the top-level selector.
    /// Default: unset. Env: `BEYLA_AUTO_TARGET_LANGUAGE`.
    pub auto_target_language: Option<GlobPattern>,
    /// Process ids to instrument; ANDed into the top-level selector. Default: empty.
    /// Env: `BEYLA_TARGET_PID` (`1234,5678`).
    #[serde(deserialize_with = "types::de_pids")]
    pub target_pids: Vec<u32>,
    /// Service name of the processes selected by the top-level keys (deprecated in Beyla).
    /// Default: unset. Env: `OTEL_SERVICE_NAME`, else `BEYLA_SERVICE_NAME`.
    pub service_name: Option<String>,
    /// Service namespace of the processes selected by the top-level keys. Default: unset.
    /// Env: `BEYLA_SERVICE_NAMESPACE`.
    pub service_namespace: Option<String>,
    /// Graceful shutdown timeout. Default `10s`. Env: `BEYLA_SHUTDOWN_TIMEOUT`.
    pub shutdown_timeout: Duration,
    /// Capacity (in batches) of the channels between pipeline stages. Default 10.
    /// Env: `BEYLA_CHANNEL_BUFFER_LEN`.
    pub channel_buffer_len: u32,
    /// How long a stage may block sending to the next one before dropping. Default `1m`.
    /// Env: `BEYLA_CHANNEL_SEND_TIMEOUT`.
    pub channel_send_timeout: Duration,
    /// Panic instead of dropping when `channel_send_timeout` expires (debugging). Default false.
    /// Env: `BEYLA_CHANNEL_SEND_TIMEOUT_PANIC`.
    pub channel_send_timeout_panic: bool,
    /// Abort at startup when required capabilities are missing (otherwise only log them).
    /// Default false. Env: `BEYLA_ENFORCE_SYS_CAPS`.
    pub enforce_sys_caps: bool,
    /// Port of a profiling endpoint. Accepted, not implemented yet. Default: unset.
    /// Env: `BEYLA_PROFILE_PORT`.
    pub profile_port: Option<u16>,
    /// Deprecated (Beyla 1.x): `true` means `trace_printer: text`. Default: unset.
    /// Env: `BEYLA_PRINT_TRACES`.
    pub print_traces: Option<bool>,
    /// Resource attributes added to all exported telemetry (`k=v,k2=v2`). Env-only:
    /// `OTEL_RESOURCE_ATTRIBUTES`.
    #[serde(skip)]
    pub otel_resource_attributes: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            discovery: Discovery::default(),
            routes: Routes::default(),
            attributes: Attributes::default(),
            otel_metrics_export: OtelMetricsExport::default(),
            otel_traces_export: OtelTracesExport::default(),
            prometheus_export: PrometheusExport::default(),
            internal_metrics: InternalMetrics::default(),
            trace_printer: TracePrinter::Disabled,
            ebpf: Ebpf::default(),
            network: Network::default(),
            filter: Filter::default(),
            name_resolver: NameResolver::default(),
            grafana: Grafana::default(),
            metrics: Metrics::default(),
            health_check: HealthCheck::default(),
            log_level: LogLevel::Info,
            log_format: LogFormat::Text,
            log_config: None,
            open_port: None,
            executable_name: None,
            auto_target_exe: None,
            auto_target_language: None,
            target_pids: Vec::new(),
            service_name: None,
            service_namespace: None,
            shutdown_timeout: Duration::from_secs(10),
            channel_buffer_len: 10,
            channel_send_timeout: Duration::from_secs(60),
            channel_send_timeout_panic: false,
            enforce_sys_caps: false,
            profile_port: None,
            print_traces: None,
            otel_resource_attributes: None,
        }
    }
}

impl Config {
    /// The effective list of instrument selectors, ORed: `discovery.instrument`, then the
    /// deprecated `discovery.services` (regex patterns), then the selector built from the
    /// top-level keys ([`Config::top_level_selector`]). Empty means nothing is selected.
    pub fn selectors(&self) -> Vec<Selector> {
        let mut out = self.discovery.instrument.clone();
        out.extend(self.discovery.services.iter().cloned().map(Selector::from));
        out.extend(self.top_level_selector());
        out
    }

    /// The effective exclusions, ORed: `discovery.exclude_instrument`, `exclude_services`,
    /// `default_exclude_instrument` and `default_exclude_services`. A process matching any of
    /// them is never instrumented, even if a selector matches it.
    pub fn exclusions(&self) -> Vec<Selector> {
        let d = &self.discovery;
        let mut out = d.exclude_instrument.clone();
        out.extend(d.exclude_services.iter().cloned().map(Selector::from));
        out.extend(d.default_exclude_instrument.iter().cloned());
        out.extend(d.default_exclude_services.iter().cloned().map(Selector::from));
        out
    }

    /// The selector built, as in Beyla, from `open_port`, `auto_target_exe` (or the deprecated
    /// `executable_name`), `auto_target_language` and `target_pids`, all ANDed, named by
    /// `service_name`/`service_namespace`. `None` when none of those keys is set.
    pub fn top_level_selector(&self) -> Option<Selector> {
        let exe_path = match (&self.auto_target_exe, &self.executable_name) {
            (Some(glob), _) => Some(Matcher::Glob(glob.clone())),
            (None, Some(regex)) => Some(Matcher::Regex(regex.clone())),
            (None, None) => None,
        };
        if self.open_port.is_none()
            && exe_path.is_none()
            && self.auto_target_language.is_none()
            && self.target_pids.is_empty()
        {
            return None;
        }
        Some(Selector {
            name: self.service_name.clone(),
            namespace: self.service_namespace.clone(),
            open_ports: self.open_port.clone(),
            exe_path,
            languages: self.auto_target_language.clone().map(Matcher::Glob),
            target_pids: self.target_pids.clone(),
            ..Selector::default()
        })
    }
}
