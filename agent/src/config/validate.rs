//! After the merge: normalisation of deprecated keys, cross-field rules, and warnings about
//! features that are accepted but not built yet.

use super::error::{ConfigError, ConfigWarning, Origin};
use super::provenance::Provenance;
use super::sections::discovery::SelectorOf;
use super::sections::prometheus::{Buckets, InternalMetricsExporter, MetricFeature};
use super::{Config, ContextPropagation, KubeEnable, TracePrinter};
use crate::aggregate::definitions::AttributeSelection;

/// Normalises `config`, checks the rules that span keys (reporting every one that fails), and
/// returns the warnings.
pub(crate) fn finish(config: &mut Config, prov: &Provenance) -> Result<Vec<ConfigWarning>, ConfigError> {
    normalise(config, prov)?;
    let mut errs = check(config, prov);
    match errs.len() {
        0 => Ok(warnings(config, prov)),
        1 => Err(errs.remove(0)),
        _ => Err(ConfigError::Many(errs)),
    }
}

fn invalid(prov: &Provenance, key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), message: message.into(), origin: prov.origin_of(key) }
}

fn normalise(config: &mut Config, prov: &Provenance) -> Result<(), ConfigError> {
    // Beyla: a port of 0 means "disabled".
    for port in [
        &mut config.prometheus_export.port,
        &mut config.internal_metrics.prometheus.port,
        &mut config.health_check.port,
        &mut config.profile_port,
    ] {
        if *port == Some(0) {
            *port = None;
        }
    }
    if config.print_traces == Some(true) && config.trace_printer == TracePrinter::Disabled {
        config.trace_printer = TracePrinter::Text;
    }
    if config.ebpf.enable_context_propagation {
        if config.ebpf.context_propagation.is_enabled() {
            return Err(invalid(
                prov,
                "ebpf.enable_context_propagation",
                "cannot be combined with ebpf.context_propagation; set only context_propagation",
            ));
        }
        config.ebpf.context_propagation = ContextPropagation::ALL;
    }
    Ok(())
}

/// Every rule that fails, in the order of the checks.
fn check(config: &Config, prov: &Provenance) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    if config.auto_target_exe.is_some() && config.executable_name.is_some() {
        errs.push(invalid(
            prov,
            "auto_target_exe",
            "cannot be combined with executable_name (deprecated); set only one of them",
        ));
    }
    let rb = config.ebpf.ring_buffer_size;
    if !rb.is_power_of_two() || !(64 << 10..=1 << 30).contains(&rb) {
        errs.push(invalid(
            prov,
            "ebpf.ring_buffer_size",
            "must be a power of two from 65536 (64 KiB) to 1073741824 (1 GiB)",
        ));
    }
    if config.ebpf.batch_length == 0 {
        errs.push(invalid(prov, "ebpf.batch_length", "must be at least 1"));
    }
    if config.ebpf.batch_timeout.is_zero() {
        errs.push(invalid(prov, "ebpf.batch_timeout", "must be greater than 0"));
    }
    for (name, size) in config.ebpf.buffer_sizes.entries() {
        if size > 8192 {
            let key = format!("ebpf.buffer_sizes.{name}");
            errs.push(invalid(prov, &key, format!("{size} is larger than the maximum, 8192")));
        }
    }
    if let Err((key, message)) = AttributeSelection::new(&config.attributes.select) {
        errs.push(invalid(prov, &key, message));
    }
    if let Err((key, message)) = crate::export::otlp::OtlpOptions::from_config(config) {
        errs.push(invalid(prov, &key, message));
    }
    let key = "prometheus_export.instrumentations";
    if let Err((key, message)) = crate::export::Instrumentations::new(&config.prometheus_export.instrumentations, key) {
        errs.push(invalid(prov, &key, message));
    }
    if config.channel_buffer_len == 0 {
        errs.push(invalid(prov, "channel_buffer_len", "must be at least 1"));
    }
    if config.discovery.poll_interval.is_zero() {
        errs.push(invalid(prov, "discovery.poll_interval", "must be greater than 0"));
    }
    for (key, path) in [
        ("prometheus_export.path", &config.prometheus_export.path),
        ("internal_metrics.prometheus.path", &config.internal_metrics.prometheus.path),
    ] {
        if !path.starts_with('/') {
            errs.push(invalid(prov, key, format!("{path:?} must start with `/`")));
        }
    }
    for (section, buckets) in [
        ("prometheus_export", &config.prometheus_export.buckets),
        ("otel_metrics_export", &config.otel_metrics_export.buckets),
    ] {
        check_buckets(prov, section, buckets, &mut errs);
    }
    if config.internal_metrics.exporter == Some(InternalMetricsExporter::Otel)
        && config.internal_metrics.prometheus.port.is_some()
    {
        errs.push(invalid(
            prov,
            "internal_metrics.exporter",
            "`otel` cannot be combined with internal_metrics.prometheus.port",
        ));
    }
    let d = &config.discovery;
    check_selectors(prov, "discovery.instrument", &d.instrument, &mut errs);
    check_selectors(prov, "discovery.exclude_instrument", &d.exclude_instrument, &mut errs);
    check_selectors(prov, "discovery.default_exclude_instrument", &d.default_exclude_instrument, &mut errs);
    check_selectors(prov, "discovery.survey", &d.survey, &mut errs);
    check_selectors(prov, "discovery.services", &d.services, &mut errs);
    check_selectors(prov, "discovery.exclude_services", &d.exclude_services, &mut errs);
    check_selectors(prov, "discovery.default_exclude_services", &d.default_exclude_services, &mut errs);
    errs
}

fn check_buckets(prov: &Provenance, section: &str, b: &Buckets, errs: &mut Vec<ConfigError>) {
    let lists = [
        ("duration_histogram", Some(&b.duration_histogram)),
        ("request_size_histogram", Some(&b.request_size_histogram)),
        ("response_size_histogram", Some(&b.response_size_histogram)),
        ("gen_ai_client_token_usage_histogram", b.gen_ai_client_token_usage_histogram.as_ref()),
        ("gen_ai_client_operation_duration_histogram", b.gen_ai_client_operation_duration_histogram.as_ref()),
    ];
    for (name, list) in lists {
        let Some(list) = list else { continue };
        if list.iter().any(|v| !v.is_finite()) || list.windows(2).any(|w| w[0] >= w[1]) {
            let key = format!("{section}.buckets.{name}");
            errs.push(invalid(prov, &key, "bucket boundaries must be finite and strictly increasing"));
        }
    }
}

fn check_selectors<P>(prov: &Provenance, list: &str, selectors: &[SelectorOf<P>], errs: &mut Vec<ConfigError>) {
    for (i, s) in selectors.iter().enumerate() {
        if !s.has_criteria() {
            errs.push(invalid(
                prov,
                &format!("{list}[{i}]"),
                "the entry selects nothing: set at least one of open_ports, exe_path, cmd_args, \
                 languages, target_pids or a k8s_* key",
            ));
        }
    }
}

/// The warning (key, message) for a key set by the user, if any.
fn rule(config: &Config, path: &str) -> Option<(String, String)> {
    let top = path.split(['.', '[']).next().unwrap_or(path);
    let section = |key: &str, what: &str| {
        let verb = if what.ends_with("metrics") { "are" } else { "is" };
        Some((key.to_string(), format!("{what} {verb} not implemented yet; the section is accepted and ignored")))
    };
    let ignored = |key: &str| Some((key.to_string(), "not implemented yet; the value is ignored".to_string()));
    let deprecated = |key: &str, instead: &str| Some((key.to_string(), format!("deprecated; use {instead}")));
    match top {
        "grafana" => return section(top, "Grafana Cloud OTLP export"),
        "filter" => return section(top, "attribute filtering"),
        "name_resolver" => return section(top, "name resolution"),
        "health_check" => return section(top, "the health check endpoint"),
        "metrics" => {
            let message = "the per-application `metrics` section is not implemented yet; it is accepted and \
                           ignored (use prometheus_export.features)";
            return Some((top.to_string(), message.to_string()));
        }
        "network" if path == "network.enable" && !config.network.enable => return None,
        "network" => return section(top, "network metrics"),
        "profile_port" | "log_config" => return ignored(top),
        "print_traces" => return deprecated(top, "trace_printer: text"),
        "executable_name" => return deprecated(top, "auto_target_exe (a glob) or discovery.instrument[].exe_path"),
        _ => {}
    }
    let parts: Vec<&str> = path.splitn(3, '.').collect();
    match parts.as_slice() {
        ["attributes", "kubernetes", rest] => {
            let key = rest.split(['.', '[']).next().unwrap_or(rest);
            match key {
                "enable"
                | "kubeconfig_path"
                | "informers_sync_timeout"
                | "meta_restrict_local_node"
                | "cluster_name"
                | "resource_labels" => None,
                _ => ignored(&format!("attributes.kubernetes.{key}")),
            }
        }
        ["attributes", "kubernetes"] => None,
        ["attributes", "select", ..] => None,
        ["attributes", name, ..] if *name != "instance_id" => ignored(&format!("attributes.{name}")),
        ["otel_metrics_export", key, rest @ ..] => {
            let key = key.split('[').next().unwrap_or(key);
            let gen_ai = rest.first().is_some_and(|r| r.starts_with("gen_ai_"));
            match key {
                "exponential_histogram"
                | "extra_span_resource_attributes"
                | "otel_sdk_log_level"
                | "reporters_cache_len" => ignored(&format!("otel_metrics_export.{key}")),
                "buckets" if gen_ai => ignored(&format!("otel_metrics_export.buckets.{}", rest.join("."))),
                _ => None,
            }
        }
        ["otel_traces_export", key, ..] => {
            let key = key.split('[').next().unwrap_or(key);
            match key {
                "backoff_max_elapsed_time" | "reporters_cache_len" | "compression" | "otel_sdk_log_level" => {
                    ignored(&format!("otel_traces_export.{key}"))
                }
                _ => None,
            }
        }
        ["ebpf", "payload_extraction", ..] => section("ebpf.payload_extraction", "payload extraction"),
        ["ebpf", "heuristic_sql_detect"] if !config.ebpf.heuristic_sql_detect => None,
        ["ebpf", name @ ("instrument_gpu" | "use_otel_sdk_for_java" | "redis_db_cache" | "heuristic_sql_detect"), ..] => {
            ignored(&format!("ebpf.{name}"))
        }
        ["ebpf", "enable_context_propagation", ..] => {
            deprecated("ebpf.enable_context_propagation", "ebpf.context_propagation: all")
        }
        ["discovery", rest @ ..] => discovery_rule(rest.join(".").as_str()),
        _ => None,
    }
}

fn discovery_rule(rest: &str) -> Option<(String, String)> {
    let list = rest.split(['.', '[']).next().unwrap_or(rest);
    let key = format!("discovery.{list}");
    match list {
        "survey" => Some((key, "survey mode is not implemented yet; the selectors are ignored".to_string())),
        "services" | "exclude_services" | "default_exclude_services" => {
            let instead = list.replace("services", "instrument");
            Some((key, format!("deprecated (regex patterns); use discovery.{instead} (glob patterns)")))
        }
        "route_harvester_timeout"
        | "disabled_route_harvesters"
        | "route_harvester_advanced"
        | "excluded_linux_system_paths" => Some((key, "not implemented yet; the value is ignored".to_string())),
        _ => None,
    }
}

/// Warnings for selector keys whose feature is not built yet.
fn selector_warnings<P>(list: &str, selectors: &[SelectorOf<P>], kube: bool, out: &mut Vec<(String, String)>) {
    for (i, s) in selectors.iter().enumerate() {
        for field in s.unimplemented_keys() {
            let message = match field {
                "container_name" => {
                    "container name selectors are not implemented yet; this entry matches no process".to_string()
                }
                "exports" | "sampler" | "routes" | "metrics" => {
                    format!("per-selector `{field}` is not implemented yet; the value is ignored")
                }
                _ if kube => continue,
                _ => "Kubernetes selectors need attributes.kubernetes.enable (true or autodetect); \
                      this entry matches no process"
                    .to_string(),
            };
            out.push((format!("discovery.{list}[{i}].{field}"), message));
        }
    }
}

fn warnings(config: &Config, prov: &Provenance) -> Vec<ConfigWarning> {
    let mut out: Vec<ConfigWarning> = Vec::new();
    let mut push = |key: String, message: String, origin: Origin| {
        if !out.iter().any(|w| w.key == key && w.message == message) {
            out.push(ConfigWarning { key, origin, message });
        }
    };
    for (path, layer) in prov.set_keys() {
        if let Some((key, message)) = rule(config, path) {
            let origin = prov.origin(layer, &key);
            push(key, message, origin);
        }
    }
    let d = &config.discovery;
    let mut selector_notes = Vec::new();
    let kube = config.attributes.kubernetes.enable != KubeEnable::False;
    selector_warnings("instrument", &d.instrument, kube, &mut selector_notes);
    selector_warnings("exclude_instrument", &d.exclude_instrument, kube, &mut selector_notes);
    // The built-in namespace exclusion is silently inert without Kubernetes metadata.
    if d.default_exclude_instrument != super::Discovery::default().default_exclude_instrument {
        selector_warnings("default_exclude_instrument", &d.default_exclude_instrument, kube, &mut selector_notes);
    }
    selector_warnings("survey", &d.survey, kube, &mut selector_notes);
    selector_warnings("services", &d.services, kube, &mut selector_notes);
    selector_warnings("exclude_services", &d.exclude_services, kube, &mut selector_notes);
    selector_warnings("default_exclude_services", &d.default_exclude_services, kube, &mut selector_notes);
    for metric in AttributeSelection::unmatched_keys(&config.attributes.select) {
        let message = if metric == "traces" {
            "selecting span attributes is not implemented yet; spans carry their default attributes"
        } else {
            "matches none of the metrics this agent exports (http_*, rpc_*, db_client_*); the entry is ignored"
        };
        selector_notes.push((format!("attributes.select.{metric}"), message.to_string()));
    }
    for (key, message) in selector_notes {
        let origin = prov.origin_of(&key);
        push(key, message, origin);
    }
    let lists = [
        ("prometheus_export.features", &config.prometheus_export.features),
        ("otel_metrics_export.features", &config.otel_metrics_export.features),
    ];
    for (key, features) in lists {
        for f in features.iter().filter(|f| !f.is_implemented()) {
            let message = if *f == MetricFeature::All {
                "`all` includes features that are not implemented yet; only `application`, `application_span` \
                 and `application_service_graph` metrics are exported"
                    .to_string()
            } else {
                format!("feature `{}` is not implemented yet; the others listed are exported", f.as_str())
            };
            push(key.to_string(), message, prov.origin_of(key));
        }
    }
    if config.internal_metrics.exporter == Some(InternalMetricsExporter::Otel) {
        push(
            "internal_metrics.exporter".to_string(),
            "OTLP export of internal metrics is not implemented yet; internal metrics are disabled".to_string(),
            prov.origin_of("internal_metrics.exporter"),
        );
    }
    out
}
