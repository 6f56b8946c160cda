//! Environment variables: Beyla's flat names mapped onto dotted keys by one explicit table.

use serde_yaml::Value;

use super::error::{ConfigError, ConfigWarning, Origin};
use super::keys::{probe, ProbeError};
use super::Config;

/// How a variable's text becomes a configuration value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvConversion {
    /// Read as a YAML scalar (`9400` is a number, `true` a boolean), or as plain text when
    /// that does not fit the key.
    Value,
    /// Comma-separated list (`a,b,c`).
    List,
    /// Integer milliseconds, converted to a duration (`OTEL_METRIC_EXPORT_INTERVAL`).
    Millis,
}

/// One environment variable and the key it sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvAlias {
    /// Variable name.
    pub var: &'static str,
    /// Dotted key path it sets.
    pub key: &'static str,
    /// How the text is converted.
    pub conversion: EnvConversion,
    /// An example value (used by the reference documentation and the tests).
    pub example: &'static str,
    /// The key cannot be written in YAML (Beyla keeps these in the environment only).
    pub env_only: bool,
}

const fn v(var: &'static str, key: &'static str, example: &'static str) -> EnvAlias {
    EnvAlias { var, key, conversion: EnvConversion::Value, example, env_only: false }
}

const fn list(var: &'static str, key: &'static str, example: &'static str) -> EnvAlias {
    EnvAlias { var, key, conversion: EnvConversion::List, example, env_only: false }
}

const fn env_only(var: &'static str, key: &'static str, example: &'static str) -> EnvAlias {
    EnvAlias { var, key, conversion: EnvConversion::Value, example, env_only: true }
}

/// Variable naming the configuration file; read by [`load`](super::load), sets no key.
pub const CONFIG_PATH_VAR: &str = "BEYLA_CONFIG_PATH";

/// Applied in order: when two variables set the same key, the later entry wins (so a
/// fallback such as `OTEL_GO_AUTO_TARGET_EXE` comes before `BEYLA_AUTO_TARGET_EXE`).
static ALIASES: &[EnvAlias] = &[
    // top level
    v("BEYLA_OPEN_PORT", "open_port", "8080-8089"),
    v("OTEL_GO_AUTO_TARGET_EXE", "auto_target_exe", "*/server"),
    v("BEYLA_AUTO_TARGET_EXE", "auto_target_exe", "*/api"),
    v("BEYLA_AUTO_TARGET_LANGUAGE", "auto_target_language", "java"),
    v("BEYLA_TARGET_PID", "target_pids", "1234,5678"),
    v("BEYLA_EXECUTABLE_NAME", "executable_name", "^/usr/bin/(node|python3)$"),
    v("BEYLA_SERVICE_NAME", "service_name", "checkout"),
    v("OTEL_SERVICE_NAME", "service_name", "payments"),
    v("BEYLA_SERVICE_NAMESPACE", "service_namespace", "shop"),
    v("BEYLA_LOG_LEVEL", "log_level", "debug"),
    v("BEYLA_LOG_FORMAT", "log_format", "json"),
    v("BEYLA_LOG_CONFIG", "log_config", "yaml"),
    v("BEYLA_TRACE_PRINTER", "trace_printer", "text"),
    v("BEYLA_PRINT_TRACES", "print_traces", "true"),
    v("BEYLA_SHUTDOWN_TIMEOUT", "shutdown_timeout", "30s"),
    v("BEYLA_ENFORCE_SYS_CAPS", "enforce_sys_caps", "true"),
    v("BEYLA_CHANNEL_BUFFER_LEN", "channel_buffer_len", "50"),
    v("BEYLA_CHANNEL_SEND_TIMEOUT", "channel_send_timeout", "10s"),
    v("BEYLA_CHANNEL_SEND_TIMEOUT_PANIC", "channel_send_timeout_panic", "true"),
    v("BEYLA_PROFILE_PORT", "profile_port", "6060"),
    env_only("OTEL_RESOURCE_ATTRIBUTES", "otel_resource_attributes", "deployment.environment=prod"),
    // discovery
    v("BEYLA_DISCOVERY_POLL_INTERVAL", "discovery.poll_interval", "500ms"),
    v("BEYLA_MIN_PROCESS_AGE", "discovery.min_process_age", "1s"),
    v("BEYLA_SKIP_GO_SPECIFIC_TRACERS", "discovery.skip_go_specific_tracers", "true"),
    v("BEYLA_EXCLUDE_OTEL_INSTRUMENTED_SERVICES", "discovery.exclude_otel_instrumented_services", "false"),
    v(
        "BEYLA_EXCLUDE_OTEL_INSTRUMENTED_SERVICES_SPAN_METRICS",
        "discovery.exclude_otel_instrumented_services_span_metrics",
        "true",
    ),
    v("BEYLA_BPF_PID_FILTER_OFF", "discovery.bpf_pid_filter_off", "true"),
    v("BEYLA_DEFAULT_OTLP_GRPC_PORT", "discovery.default_otlp_grpc_port", "14317"),
    // routes (beyla-rs extension: Beyla reads routes from YAML only)
    v("BEYLA_ROUTES_UNMATCHED", "routes.unmatched", "path"),
    // ebpf
    v("BEYLA_BPF_WAKEUP_LEN", "ebpf.wakeup_len", "100"),
    v("BEYLA_BPF_RING_BUFFER_SIZE", "ebpf.ring_buffer_size", "8388608"),
    v("BEYLA_BPF_BATCH_LENGTH", "ebpf.batch_length", "50"),
    v("BEYLA_BPF_BATCH_TIMEOUT", "ebpf.batch_timeout", "100ms"),
    v("BEYLA_BPF_HTTP_REQUEST_TIMEOUT", "ebpf.http_request_timeout", "30s"),
    v("BEYLA_BPF_TRACK_REQUEST_HEADERS", "ebpf.track_request_headers", "true"),
    v("BEYLA_BPF_ENABLE_CONTEXT_PROPAGATION", "ebpf.enable_context_propagation", "true"),
    v("BEYLA_BPF_CONTEXT_PROPAGATION", "ebpf.context_propagation", "headers"),
    v("BEYLA_BPF_TC_BACKEND", "ebpf.traffic_control_backend", "tcx"),
    v("BEYLA_BPF_HIGH_REQUEST_VOLUME", "ebpf.high_request_volume", "true"),
    v("BEYLA_HEURISTIC_SQL_DETECT", "ebpf.heuristic_sql_detect", "true"),
    v("BEYLA_BPF_DEBUG", "ebpf.bpf_debug", "true"),
    v("BEYLA_PROTOCOL_DEBUG_PRINT", "ebpf.protocol_debug_print", "true"),
    v("BEYLA_BPF_BUFFER_SIZE_HTTP", "ebpf.buffer_sizes.http", "1024"),
    v("BEYLA_BPF_BUFFER_SIZE_MYSQL", "ebpf.buffer_sizes.mysql", "512"),
    v("BEYLA_BPF_BUFFER_SIZE_POSTGRES", "ebpf.buffer_sizes.postgres", "512"),
    v("BEYLA_BPF_BUFFER_SIZE_KAFKA", "ebpf.buffer_sizes.kafka", "256"),
    v("BEYLA_BPF_REDIS_DB_CACHE_ENABLED", "ebpf.redis_db_cache.enabled", "true"),
    v("BEYLA_BPF_REDIS_DB_CACHE_MAX_SIZE", "ebpf.redis_db_cache.max_size", "500"),
    v("BEYLA_MYSQL_PREPARED_STATEMENTS_CACHE_SIZE", "ebpf.mysql_prepared_statements_cache_size", "2048"),
    v("BEYLA_POSTGRES_PREPARED_STATEMENTS_CACHE_SIZE", "ebpf.postgres_prepared_statements_cache_size", "2048"),
    v("BEYLA_MONGO_REQUESTS_CACHE_SIZE", "ebpf.mongo_requests_cache_size", "2048"),
    v("BEYLA_STATS_WAKEUP_DATA_BYTES", "ebpf.stats_wakeup_data_bytes", "8192"),
    v("BEYLA_BPF_FS_PATH", "ebpf.bpf_fs_path", "/run/bpf/"),
    v("BEYLA_BPF_MAX_TRANSACTION_TIME", "ebpf.max_transaction_time", "1m"),
    v("BEYLA_BPF_DNS_REQUEST_TIMEOUT", "ebpf.dns_request_timeout", "2s"),
    v("BEYLA_OVERRIDE_BPF_LOOP_ENABLED", "ebpf.override_bpfloop_enabled", "true"),
    v("BEYLA_BPF_DISABLE_BLACK_BOX_CP", "ebpf.disable_black_box_cp", "true"),
    v("BEYLA_EBPF_HOOK_MODE", "ebpf.hook_mode", "tracepoints"),
    v("BEYLA_DB_QUERY_TEXT", "ebpf.db_query_text", "full"),
    // prometheus_export
    v("BEYLA_PROMETHEUS_PORT", "prometheus_export.port", "9400"),
    v("BEYLA_PROMETHEUS_PATH", "prometheus_export.path", "/prom"),
    list("BEYLA_PROMETHEUS_FEATURES", "prometheus_export.features", "application,application_span"),
    list("BEYLA_PROMETHEUS_INSTRUMENTATIONS", "prometheus_export.instrumentations", "http,grpc"),
    v("BEYLA_PROMETHEUS_TTL", "prometheus_export.ttl", "1m"),
    v(
        "BEYLA_PROMETHEUS_ALLOW_SERVICE_GRAPH_SELF_REFERENCES",
        "prometheus_export.allow_service_graph_self_references",
        "true",
    ),
    list(
        "BEYLA_PROMETHEUS_EXTRA_RESOURCE_ATTRIBUTES",
        "prometheus_export.extra_resource_attributes",
        "deployment.environment",
    ),
    v("BEYLA_PROMETHEUS_DISABLE_BUILD_INFO", "prometheus_export.disable_build_info", "true"),
    // internal_metrics
    v("BEYLA_INTERNAL_METRICS_EXPORTER", "internal_metrics.exporter", "prometheus"),
    v("BEYLA_INTERNAL_METRICS_PROMETHEUS_PORT", "internal_metrics.prometheus.port", "6060"),
    v("BEYLA_INTERNAL_METRICS_PROMETHEUS_PATH", "internal_metrics.prometheus.path", "/internal"),
    v("BEYLA_BPF_METRIC_SCRAPE_INTERVAL", "internal_metrics.bpf_metric_scrape_interval", "30s"),
    // otel_metrics_export / otel_traces_export (not implemented yet)
    env_only("OTEL_EXPORTER_OTLP_ENDPOINT", "otel_metrics_export.common_endpoint", "http://collector:4318"),
    env_only("OTEL_EXPORTER_OTLP_ENDPOINT", "otel_traces_export.common_endpoint", "http://collector:4318"),
    v("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "otel_metrics_export.endpoint", "http://collector:4318/v1/metrics"),
    v("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "otel_traces_export.endpoint", "http://collector:4318/v1/traces"),
    v("OTEL_EXPORTER_OTLP_PROTOCOL", "otel_metrics_export.protocol", "grpc"),
    v("OTEL_EXPORTER_OTLP_PROTOCOL", "otel_traces_export.protocol", "grpc"),
    v("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "otel_metrics_export.protocol", "http/protobuf"),
    v("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "otel_traces_export.protocol", "http/protobuf"),
    env_only("OTEL_EXPORTER_OTLP_HEADERS", "otel_metrics_export.headers", "authorization=Basic xyz"),
    env_only("OTEL_EXPORTER_OTLP_HEADERS", "otel_traces_export.headers", "authorization=Basic xyz"),
    env_only("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "otel_metrics_export.headers", "x-tenant=a"),
    env_only("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "otel_traces_export.headers", "x-tenant=a"),
    v("BEYLA_OTEL_INSECURE_SKIP_VERIFY", "otel_metrics_export.insecure_skip_verify", "true"),
    v("BEYLA_OTEL_INSECURE_SKIP_VERIFY", "otel_traces_export.insecure_skip_verify", "true"),
    EnvAlias {
        var: "OTEL_METRIC_EXPORT_INTERVAL",
        key: "otel_metrics_export.interval",
        conversion: EnvConversion::Millis,
        example: "15000",
        env_only: false,
    },
    v("BEYLA_METRICS_INTERVAL", "otel_metrics_export.interval", "30s"),
    list("BEYLA_OTEL_METRICS_FEATURES", "otel_metrics_export.features", "application,network"),
    list("BEYLA_OTEL_METRICS_INSTRUMENTATIONS", "otel_metrics_export.instrumentations", "http,sql"),
    v(
        "BEYLA_OTEL_ALLOW_SERVICE_GRAPH_SELF_REFERENCES",
        "otel_metrics_export.allow_service_graph_self_references",
        "true",
    ),
    v(
        "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
        "otel_metrics_export.histogram_aggregation",
        "base2_exponential_bucket_histogram",
    ),
    v("BEYLA_METRICS_TTL", "otel_metrics_export.ttl", "10m"),
    v("BEYLA_METRICS_REPORT_CACHE_LEN", "otel_metrics_export.reporters_cache_len", "512"),
    list("BEYLA_OTEL_TRACES_INSTRUMENTATIONS", "otel_traces_export.instrumentations", "http,grpc"),
    v("OTEL_TRACES_SAMPLER", "otel_traces_export.sampler.name", "traceidratio"),
    v("OTEL_TRACES_SAMPLER_ARG", "otel_traces_export.sampler.arg", "0.1"),
    // grafana (not implemented yet)
    list("GRAFANA_CLOUD_SUBMIT", "grafana.otlp.cloud_submit", "metrics,traces"),
    v("GRAFANA_CLOUD_ZONE", "grafana.otlp.cloud_zone", "prod-eu-west-0"),
    v("GRAFANA_CLOUD_INSTANCE_ID", "grafana.otlp.cloud_instance_id", "123456"),
    v("GRAFANA_CLOUD_API_KEY", "grafana.otlp.cloud_api_key", "glc_secret"),
    // attributes
    v("BEYLA_KUBE_METADATA_ENABLE", "attributes.kubernetes.enable", "autodetect"),
    v("BEYLA_KUBE_INFORMERS_SYNC_TIMEOUT", "attributes.kubernetes.informers_sync_timeout", "1m"),
    v("BEYLA_KUBE_INFORMERS_RESYNC_PERIOD", "attributes.kubernetes.informers_resync_period", "1h"),
    list("BEYLA_KUBE_DISABLE_INFORMERS", "attributes.kubernetes.disable_informers", "node,service"),
    v("BEYLA_KUBE_META_RESTRICT_LOCAL_NODE", "attributes.kubernetes.meta_restrict_local_node", "true"),
    v("BEYLA_KUBE_CLUSTER_NAME", "attributes.kubernetes.cluster_name", "prod-1"),
    v("BEYLA_SERVICE_NAME_TEMPLATE", "attributes.kubernetes.service_name_template", "{{.Meta.Name}}"),
    v("BEYLA_HOSTNAME_DNS_RESOLUTION", "attributes.instance_id.dns", "false"),
    v("BEYLA_HOSTNAME", "attributes.instance_id.override_hostname", "node-7"),
    v("BEYLA_HOST_ID", "attributes.host_id.override", "host-7"),
    v("BEYLA_RENAME_UNRESOLVED_HOSTS", "attributes.rename_unresolved_hosts", "unknown"),
    v("BEYLA_RENAME_UNRESOLVED_HOSTS_OUTGOING", "attributes.rename_unresolved_hosts_outgoing", "out"),
    v("BEYLA_RENAME_UNRESOLVED_HOSTS_INCOMING", "attributes.rename_unresolved_hosts_incoming", "in"),
    v("BEYLA_METRIC_SPAN_NAMES_LIMIT", "attributes.metric_span_names_limit", "50"),
    // name_resolver (not implemented yet)
    list("BEYLA_NAME_RESOLVER_SOURCES", "name_resolver.sources", "k8s,dns"),
    v("BEYLA_NAME_RESOLVER_CACHE_LEN", "name_resolver.cache_len", "2048"),
    v("BEYLA_NAME_RESOLVER_CACHE_TTL", "name_resolver.cache_expiry", "10m"),
    // network (not implemented yet)
    v("BEYLA_NETWORK_METRICS", "network.enable", "true"),
    v("BEYLA_NETWORK_SOURCE", "network.source", "tc"),
    list("BEYLA_NETWORK_CIDRS", "network.cidrs", "10.0.0.0/8,192.168.0.0/16"),
    v("BEYLA_NETWORK_AGENT_IP", "network.agent_ip", "10.1.2.3"),
    v("BEYLA_NETWORK_AGENT_IP_IFACE", "network.agent_ip_iface", "name:eth0"),
    v("BEYLA_NETWORK_AGENT_IP_TYPE", "network.agent_ip_type", "ipv4"),
    list("BEYLA_NETWORK_INTERFACES", "network.interfaces", "eth0,/^veth/"),
    list("BEYLA_NETWORK_EXCLUDE_INTERFACES", "network.exclude_interfaces", "lo,docker0"),
    list("BEYLA_NETWORK_PROTOCOLS", "network.protocols", "TCP,UDP"),
    list("BEYLA_NETWORK_EXCLUDE_PROTOCOLS", "network.exclude_protocols", "ICMP"),
    v("BEYLA_NETWORK_CACHE_MAX_FLOWS", "network.cache_max_flows", "1000"),
    v("BEYLA_NETWORK_CACHE_ACTIVE_TIMEOUT", "network.cache_active_timeout", "10s"),
    v("BEYLA_NETWORK_DEDUPER", "network.deduper", "none"),
    v("BEYLA_NETWORK_DEDUPER_FC_TTL", "network.deduper_fc_ttl", "20s"),
    v("BEYLA_NETWORK_DIRECTION", "network.direction", "ingress"),
    v("BEYLA_NETWORK_SAMPLING", "network.sampling", "100"),
    v("BEYLA_NETWORK_LISTEN_INTERFACES", "network.listen_interfaces", "poll"),
    v("BEYLA_NETWORK_LISTEN_POLL_PERIOD", "network.listen_poll_period", "30s"),
    v("BEYLA_NETWORK_PRINT_FLOWS", "network.print_flows", "true"),
    // health_check (not implemented yet)
    v("BEYLA_HEALTH_CHECK_PORT", "health_check.port", "8081"),
    v("BEYLA_HEALTH_CHECK_LISTEN_ADDRESS", "health_check.listen_address", "0.0.0.0"),
    v("BEYLA_HEALTH_CHECK_UNIX_SOCKET_PATH", "health_check.unix_socket_path", "/run/beyla.sock"),
];

/// The alias table, in the order it is applied.
pub fn aliases() -> &'static [EnvAlias] {
    ALIASES
}

/// A value read from the environment and validated against its key.
#[derive(Debug)]
pub(crate) struct EnvValue {
    pub key: &'static str,
    pub value: Value,
    pub origin: Origin,
}

/// The environment layer.
#[derive(Debug, Default)]
pub(crate) struct EnvLayer {
    /// Values for YAML-visible keys, in table order.
    pub values: Vec<EnvValue>,
    /// Values of env-only keys, in table order.
    pub env_only: Vec<(&'static str, String, Origin)>,
    /// Unknown `BEYLA_*` variables.
    pub warnings: Vec<ConfigWarning>,
}

/// Reads every known variable from `env` (the last occurrence of a name wins), converts and
/// validates it against its key.
pub(crate) fn read(env: &[(String, String)]) -> Result<EnvLayer, ConfigError> {
    let lookup = |name: &str| env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let mut layer = EnvLayer::default();
    for alias in ALIASES {
        let Some(raw) = lookup(alias.var) else {
            continue;
        };
        if raw.trim().is_empty() {
            // As in Beyla (caarlos0/env), an empty variable counts as unset.
            continue;
        }
        let origin = Origin::Env { var: alias.var.to_string() };
        let env_error = |message: String| ConfigError::Env {
            var: alias.var.to_string(),
            key: alias.key.to_string(),
            value: raw.to_string(),
            message,
        };
        if alias.env_only {
            layer.env_only.push((alias.key, raw.to_string(), origin));
            continue;
        }
        let candidates = convert(alias.conversion, raw).map_err(env_error)?;
        let value = probe(alias.key, &candidates).map_err(|e| match e {
            ProbeError::Invalid(message) => env_error(message),
            ProbeError::UnknownKey { expected, .. } => {
                env_error(format!("key {} is unknown; expected {expected}", alias.key))
            }
        })?;
        layer.values.push(EnvValue { key: alias.key, value, origin });
    }
    let mut unknown: Vec<&str> = env
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with("BEYLA_") && *k != CONFIG_PATH_VAR && !ALIASES.iter().any(|a| a.var == *k))
        .collect();
    unknown.sort_unstable();
    unknown.dedup();
    layer.warnings = unknown
        .into_iter()
        .map(|var| ConfigWarning {
            key: var.to_string(),
            origin: Origin::Env { var: var.to_string() },
            message: "not a known beyla variable; ignored".to_string(),
        })
        .collect();
    Ok(layer)
}

/// Candidate values for `raw`, most specific first.
fn convert(conversion: EnvConversion, raw: &str) -> Result<Vec<Value>, String> {
    match conversion {
        EnvConversion::Value => Ok(scalar_candidates(raw)),
        EnvConversion::List => Ok(vec![Value::Sequence(
            raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.to_string())).collect(),
        )]),
        EnvConversion::Millis => match raw.trim().parse::<u64>() {
            Ok(ms) => Ok(vec![Value::String(format!("{ms}ms"))]),
            Err(_) => Err("expected an integer number of milliseconds".to_string()),
        },
    }
}

/// `raw` read as a YAML scalar, then as plain text.
pub(crate) fn scalar_candidates(raw: &str) -> Vec<Value> {
    let text = Value::String(raw.to_string());
    match serde_yaml::from_str::<Value>(raw) {
        Ok(parsed @ (Value::Bool(_) | Value::Number(_))) => vec![parsed, text],
        _ => vec![text],
    }
}

/// Sets an env-only key; returns false for a key this function does not know.
pub(crate) fn apply_env_only(config: &mut Config, key: &str, value: &str) -> bool {
    let append = |slot: &mut Option<String>| {
        *slot = Some(match slot.take() {
            Some(prev) => format!("{prev},{value}"),
            None => value.to_string(),
        });
    };
    match key {
        "otel_resource_attributes" => config.otel_resource_attributes = Some(value.to_string()),
        "otel_metrics_export.common_endpoint" => config.otel_metrics_export.common_endpoint = Some(value.to_string()),
        "otel_traces_export.common_endpoint" => config.otel_traces_export.common_endpoint = Some(value.to_string()),
        "otel_metrics_export.headers" => append(&mut config.otel_metrics_export.headers),
        "otel_traces_export.headers" => append(&mut config.otel_traces_export.headers),
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_env_only_alias_is_applied() {
        for alias in ALIASES.iter().filter(|a| a.env_only) {
            let mut c = Config::default();
            assert!(apply_env_only(&mut c, alias.key, alias.example), "{}", alias.key);
            assert_ne!(c, Config::default(), "{}", alias.var);
        }
    }

    #[test]
    fn every_alias_key_accepts_its_example() {
        for alias in ALIASES.iter().filter(|a| !a.env_only) {
            let candidates = convert(alias.conversion, alias.example).expect(alias.var);
            assert!(probe(alias.key, &candidates).is_ok(), "{} -> {}", alias.var, alias.key);
        }
    }

    #[test]
    fn scalars_prefer_yaml_types() {
        assert_eq!(scalar_candidates("9400")[0], Value::Number(9400.into()));
        assert_eq!(scalar_candidates("true")[0], Value::Bool(true));
        assert_eq!(scalar_candidates("abc"), vec![Value::String("abc".into())]);
        assert_eq!(scalar_candidates("*/api"), vec![Value::String("*/api".into())]);
    }
}
