//! Every configuration example of Beyla's documentation loads (`beyla config check`), with
//! warnings for features that are not built yet.

use std::path::{Path, PathBuf};

use beyla::config::{self, Loaded, LogLevel, MetricFeature, TracePrinter, Unmatched};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/beyla-doc-configs")
}

fn check(name: &str) -> Loaded {
    let path = fixtures_dir().join(name);
    config::check_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn warned(loaded: &Loaded, key: &str, needle: &str) -> bool {
    loaded.warnings.iter().any(|w| w.key == key && w.message.contains(needle))
}

#[test]
fn every_documented_config_loads() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 55, "expected Beyla's 55 documented configurations");
    let mut failures = Vec::new();
    for path in &files {
        match config::check_file(path) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    // warnings carry the file position of the key
                    assert!(w.to_string().contains(&*path.to_string_lossy()), "{w}");
                }
            }
            Err(e) => failures.push(format!("{}: {e}", path.display())),
        }
    }
    assert!(failures.is_empty(), "configurations rejected:\n{}", failures.join("\n"));
}

#[test]
fn example_config_values() {
    let l = check("configure_example_0.yml");
    let c = &l.config;
    assert_eq!(c.log_level, LogLevel::Debug);
    assert_eq!(c.ebpf.wakeup_len, 100);
    assert_eq!(c.prometheus_export.port, Some(8999));
    assert_eq!(c.prometheus_export.path, "/metrics");
    let selectors = c.selectors();
    assert_eq!(selectors.len(), 1);
    assert!(selectors[0].open_ports.as_ref().is_some_and(|p| p.contains(443)));
    assert_eq!(c.otel_traces_export.endpoint.as_deref(), Some("https://otlp-gateway-prod-eu-west-0.grafana.net/otlp"));
    // OTLP export is implemented: the endpoint is used as given.
    assert!(!l.warnings.iter().any(|w| w.key.starts_with("otel_")), "{:?}", l.warnings);
    let o = beyla::export::otlp::OtlpOptions::from_config(c).unwrap();
    assert_eq!(o.traces.unwrap().target.endpoint, "https://otlp-gateway-prod-eu-west-0.grafana.net/otlp");
}

#[test]
fn global_options() {
    let c = check("configure_options_0.yml").config;
    assert_eq!(c.trace_printer, TracePrinter::Json);
    assert_eq!(c.shutdown_timeout.to_string(), "30s");
    assert_eq!(c.channel_buffer_len, 33);
}

#[test]
fn service_discovery_examples() {
    let c = check("configure_service-discovery_0.yml").config;
    let ports = c.discovery.instrument[0].open_ports.as_ref().expect("open_ports");
    assert!(ports.contains(80) && ports.contains(443) && ports.contains(8123) && !ports.contains(9000));

    let k = check("quickstart_kubernetes_0.yml").config;
    assert_eq!(k.discovery.instrument.len(), 3);
    assert!(k.discovery.instrument[1].exe_path.as_ref().is_some_and(|g| g.is_match("/usr/bin/httpd")));
    assert!(k.discovery.instrument[2].exe_path.as_ref().is_some_and(|g| g.is_match("/usr/sbin/nginx")));

    let l = check("configure_service-discovery_2.yml");
    // Without attributes.kubernetes.enable, k8s selectors cannot match: warned.
    assert!(warned(
        &l,
        "discovery.instrument[0].k8s_namespace",
        "Kubernetes selectors need attributes.kubernetes.enable"
    ));
    assert!(warned(
        &l,
        "discovery.instrument[0].k8s_pod_labels",
        "Kubernetes selectors need attributes.kubernetes.enable"
    ));
    assert!(l.config.discovery.instrument[0].uses_kubernetes());

    let l = check("configure_service-discovery_1.yml");
    assert!(warned(&l, "discovery.instrument[0].container_name", "container name selectors"));

    let l = check("configure_service-discovery_4.yml");
    assert!(warned(&l, "discovery.instrument[2].exports", "per-selector `exports`"));
    assert_eq!(l.config.discovery.instrument[2].exports.as_deref(), Some(&[][..]));

    let l = check("configure_service-discovery_8.yml");
    assert!(l.config.discovery.exclude_instrument[0].exe_path.as_ref().is_some_and(|g| g.is_match("/bin/prometheus")));
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

#[test]
fn routes_examples() {
    let c = check("configure_routes-decorator_0.yml").config;
    assert_eq!(c.routes.unmatched, Unmatched::Path);
    assert_eq!(c.routes.patterns[0].as_str(), "/basic/:rnd");
    assert_eq!(c.routes.ignored_patterns[0].as_str(), "/metrics");
    assert_eq!(c.routes.ignore_mode, config::IgnoreMode::Traces);
    assert_eq!(check("quickstart_rust_0.yml").config.routes.unmatched, Unmatched::Heuristic);
}

#[test]
fn export_examples() {
    let l = check("configure_internal-metrics-reporter_0.yml");
    assert_eq!(l.config.internal_metrics.prometheus.port, Some(6060));
    assert_eq!(l.config.internal_metrics.effective_exporter(), config::InternalMetricsExporter::Prometheus);

    let c = check("configure_metrics-histograms_1.yml").config;
    assert_eq!(c.prometheus_export.buckets.request_size_histogram, vec![0.0, 10.0, 20.0, 22.0]);
    assert_eq!(c.prometheus_export.buckets.duration_histogram, config::DEFAULT_DURATION_BUCKETS.to_vec());

    let l = check("configure_export-data_1.yml");
    assert_eq!(l.config.otel_metrics_export.features, vec![MetricFeature::Network, MetricFeature::NetworkInterZone]);
    assert!(warned(&l, "otel_metrics_export.features", "feature `network` is not implemented yet"));

    let l = check("configure_controlling-instrumentation_0.yml");
    let cp = l.config.ebpf.context_propagation;
    assert!(cp.headers && cp.tcp && !cp.ip);
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);

    let l = check("configure_controlling-instrumentation_2.yml");
    assert_eq!(l.config.ebpf.buffer_sizes.http, 8192);
    assert!(warned(&l, "ebpf.payload_extraction", "payload extraction is not implemented yet"));
    assert!(warned(&l, "attributes.select.traces", "selecting span attributes is not implemented yet"));

    // Selection of metric attributes: entries for metrics this agent does not export warn.
    let l = check("configure_metrics-traces-attributes_0.yml");
    let unmatched = "matches none of the metrics this agent exports";
    assert!(warned(&l, "attributes.select.beyla_network_flow_bytes", unmatched));
    // Defined in the metric table (its protocols feed it): no warning.
    assert!(!l.warnings.iter().any(|w| w.key == "attributes.select.db_client_operation_duration"), "{:?}", l.warnings);
    assert!(!l.warnings.iter().any(|w| w.key.contains("http_client_request_duration")), "{:?}", l.warnings);
    let l = check("configure_metrics-traces-attributes_1.yml");
    assert!(!l.warnings.iter().any(|w| w.key.starts_with("attributes.select")), "{:?}", l.warnings);
}

#[test]
fn accepted_sections_warn_naming_the_feature() {
    let cases = [
        ("network_quickstart_0.yml", "network", "network metrics are not implemented yet"),
        ("configure_filter-metrics-traces_1.yml", "filter", "attribute filtering is not implemented yet"),
        ("configure_metrics-traces-attributes_5.yml", "attributes.extra_group_attributes", "not implemented yet"),
        ("configure_metrics-traces-attributes_6.yml", "attributes.sensitive_query_params", "not implemented yet"),
        ("configure_service-discovery_5.yml", "metrics", "per-application `metrics` section"),
    ];
    for (file, key, needle) in cases {
        let l = check(file);
        assert!(warned(&l, key, needle), "{file}: no warning {key}: {needle}; got {:?}", l.warnings);
    }
    // The sampler is implemented.
    let l = check("configure_sample-traces_0.yml");
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let sampler = beyla::export::otlp::Sampler::from_config(&l.config.otel_traces_export.sampler).unwrap();
    assert_eq!(sampler, beyla::export::otlp::Sampler::TraceIdRatio(0.1));
    // instance_id is implemented: no warning
    let l = check("configure_metrics-traces-attributes_3.yml");
    assert!(!l.config.attributes.instance_id.dns);
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    // Kubernetes decoration is implemented: `enable: true` alone does not warn.
    let l = check("network_quickstart_1.yml");
    assert!(!l.warnings.iter().any(|w| w.key.starts_with("attributes.kubernetes")), "{:?}", l.warnings);
}
