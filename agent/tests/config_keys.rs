//! Every documented key: its default, that YAML sets it, precedence of the layers, the
//! effective selectors, and that `docs/config.md` documents it.

use std::path::{Path, PathBuf};

use beyla::config::{
    self, aliases, Config, ContextPropagation, HookMode, IgnoreMode, InternalMetricsExporter, KubeEnable, LogFormat,
    LogLevel, MetricFeature, Origin, QueryText, Sources, TcBackend, TracePrinter, Unmatched,
};

fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("config.yml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn secs(s: u64) -> std::time::Duration {
    std::time::Duration::from_secs(s)
}

#[test]
fn defaults_match_beyla() {
    let c = Config::default();
    assert_eq!(c.log_level, LogLevel::Info);
    assert_eq!(c.log_format, LogFormat::Text);
    assert_eq!(c.trace_printer, TracePrinter::Disabled);
    assert_eq!(c.shutdown_timeout.as_std(), secs(10));
    assert_eq!(c.channel_buffer_len, 10);
    assert!(!c.enforce_sys_caps);
    assert!(c.open_port.is_none() && c.executable_name.is_none() && c.auto_target_exe.is_none());
    assert!(c.service_name.is_none() && c.service_namespace.is_none());

    let d = &c.discovery;
    assert!(d.instrument.is_empty() && d.exclude_instrument.is_empty() && d.services.is_empty());
    assert_eq!(d.default_exclude_instrument.len(), 2);
    assert_eq!(
        d.default_exclude_instrument[0].exe_path.as_ref().map(|m| m.as_str()),
        Some(config::DEFAULT_EXCLUDE_EXE_GLOB)
    );
    assert_eq!(
        d.default_exclude_instrument[1].k8s_namespace.as_ref().map(|m| m.as_str()),
        Some(config::DEFAULT_EXCLUDE_K8S_NAMESPACES)
    );
    assert_eq!(d.poll_interval.as_std(), secs(5));
    assert_eq!(d.min_process_age.as_std(), secs(5));
    assert!(!d.skip_go_specific_tracers);
    assert!(d.exclude_otel_instrumented_services);

    let r = &c.routes;
    assert!(r.patterns.is_empty() && r.ignored_patterns.is_empty());
    assert_eq!(r.ignore_mode, IgnoreMode::All);
    assert_eq!(r.unmatched, Unmatched::Heuristic);
    assert_eq!(r.wildcard_char, '*');
    assert_eq!(r.max_path_segment_cardinality, 10);

    let p = &c.prometheus_export;
    assert_eq!(p.port, None);
    assert!(!p.enabled());
    assert_eq!(p.path, "/metrics");
    assert_eq!(p.features, vec![MetricFeature::Application]);
    assert_eq!(p.ttl.as_std(), secs(300));
    assert_eq!(
        p.buckets.duration_histogram,
        vec![0.0, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]
    );
    assert_eq!(
        p.buckets.request_size_histogram,
        vec![0.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0]
    );
    assert_eq!(p.buckets.response_size_histogram, p.buckets.request_size_histogram);
    assert!(!p.allow_service_graph_self_references);

    let i = &c.internal_metrics;
    assert_eq!(i.prometheus.port, None);
    assert_eq!(i.prometheus.path, "/internal/metrics");
    assert_eq!(i.effective_exporter(), InternalMetricsExporter::Disabled);

    let e = &c.ebpf;
    assert_eq!(e.wakeup_len, 500);
    assert_eq!(e.batch_length, 100);
    assert_eq!(e.batch_timeout.as_std(), secs(1));
    assert!(e.http_request_timeout.is_zero());
    assert!(!e.track_request_headers);
    assert_eq!(e.context_propagation, ContextPropagation::DISABLED);
    assert_eq!(e.traffic_control_backend, TcBackend::Auto);
    assert_eq!(e.hook_mode, HookMode::Auto);
    assert_eq!(e.db_query_text, QueryText::Obfuscated);
    assert_eq!(e.buffer_sizes.http, 0);

    assert_eq!(c.attributes.kubernetes.enable, KubeEnable::False);
    assert!(c.attributes.instance_id.dns);
    assert_eq!(c.otel_metrics_export.interval.as_std(), secs(60));
    assert!(!c.network.enable);
    assert!(c.selectors().is_empty());
    assert_eq!(c.exclusions().len(), 2);
}

/// A file setting every key (non-default values).
const EVERY_KEY: &str = r##"
log_level: error
log_format: json
log_config: yaml
trace_printer: json_indent
open_port: 8080-8089
auto_target_exe: "*/api"
auto_target_language: go
target_pids: [42]
service_name: api
service_namespace: shop
shutdown_timeout: 1m30s
channel_buffer_len: 64
channel_send_timeout: 2s
channel_send_timeout_panic: true
enforce_sys_caps: true
profile_port: 6061
print_traces: false
discovery:
  instrument:
    - name: web
      namespace: shop
      open_ports: 80,443
      exe_path: "*nginx*"
      cmd_args: "*--serve*"
      languages: "{go,java}"
      target_pids: 1,2
      containers_only: true
  exclude_instrument:
    - exe_path: "*prometheus"
  default_exclude_instrument: []
  services:
    - exe_path: "^/usr/bin/ruby$"
  exclude_services:
    - exe_path: "sidecar"
  default_exclude_services:
    - exe_path: "beyla$"
  survey:
    - languages: python
  poll_interval: 500ms
  min_process_age: 1s
  skip_go_specific_tracers: true
  exclude_otel_instrumented_services: false
  exclude_otel_instrumented_services_span_metrics: true
  bpf_pid_filter_off: true
  default_otlp_grpc_port: 14317
  route_harvester_timeout: 3s
  disabled_route_harvesters: [java]
  route_harvester_advanced: {java_harvest_delay: 5s}
  excluded_linux_system_paths: [/sbin/]
routes:
  patterns: ["/user/{id}", "/item/:id/*"]
  ignored_patterns: [/health]
  ignore_mode: metrics
  unmatched: wildcard
  wildcard_char: "#"
  max_path_segment_cardinality: 20
prometheus_export:
  port: 9400
  path: /prom
  features: [application]
  instrumentations: [http]
  buckets:
    duration_histogram: [0, 1]
    request_size_histogram: [0, 100]
    response_size_histogram: [0, 200]
    gen_ai_client_token_usage_histogram: [1, 2]
    gen_ai_client_operation_duration_histogram: [1, 2]
  ttl: 1m
  service_cache_size: 5
  allow_service_graph_self_references: true
  extra_resource_attributes: [deployment.environment]
  extra_span_resource_attributes: [k8s.namespace.name]
  disable_build_info: true
internal_metrics:
  exporter: prometheus
  prometheus:
    port: 6060
    path: /internal
  bpf_metric_scrape_interval: 30s
ebpf:
  wakeup_len: 16
  batch_length: 10
  batch_timeout: 10ms
  http_request_timeout: 30s
  track_request_headers: true
  context_propagation: headers
  enable_context_propagation: false
  traffic_control_backend: tc
  high_request_volume: true
  heuristic_sql_detect: true
  bpf_debug: true
  protocol_debug_print: true
  buffer_sizes: {http: 1, mysql: 2, postgres: 3, kafka: 4, mssql: 5, tcp: 6, aerospike: 7}
  redis_db_cache: {enabled: true, max_size: 10}
  mysql_prepared_statements_cache_size: 1
  postgres_prepared_statements_cache_size: 2
  mongo_requests_cache_size: 3
  kafka_topic_uuid_cache_size: 4
  couchbase_db_cache_size: 5
  stats_wakeup_data_bytes: 6
  bpf_fs_path: /run/bpf/
  max_transaction_time: 1m
  dns_request_timeout: 1s
  override_bpfloop_enabled: true
  disable_black_box_cp: true
  instrument_gpu: true
  use_otel_sdk_for_java: true
  payload_extraction: {http: {graphql: {enabled: true}}}
  hook_mode: tracepoints
  db_query_text: full
otel_metrics_export:
  endpoint: http://collector:4318/v1/metrics
  protocol: http/protobuf
  insecure_skip_verify: true
  interval: 15s
  features: [application, application_span, network]
  instrumentations: [http]
  buckets: {duration_histogram: [0, 1]}
  histogram_aggregation: base2_exponential_bucket_histogram
  exponential_histogram: {max_size: 128}
  ttl: 1m
  allow_service_graph_self_references: true
  reporters_cache_len: 10
  otel_sdk_log_level: info
  extra_span_resource_attributes: [a]
otel_traces_export:
  endpoint: http://collector:4317
  protocol: grpc
  insecure_skip_verify: true
  sampler: {name: traceidratio, arg: "0.5"}
  instrumentations: [http, grpc]
  max_queue_size: 1
  max_export_batch_size: 2
  batch_max_size: 3
  queue_size: 4
  batch_timeout: 5s
  export_timeout: 6s
  backoff_initial_interval: 1s
  backoff_max_interval: 2s
  backoff_max_elapsed_time: 3s
  reporters_cache_len: 7
  compression: gzip
  otel_sdk_log_level: debug
grafana:
  otlp: {cloud_submit: [metrics], cloud_zone: prod-eu-west-0, cloud_instance_id: "123", cloud_api_key: k}
metrics:
  features: [application]
  instrumentations: ["*"]
attributes:
  kubernetes:
    enable: autodetect
    kubeconfig_path: /k
    informers_sync_timeout: 10s
    informers_resync_period: 10m
    disable_informers: [node]
    meta_restrict_local_node: true
    cluster_name: c
    resource_labels: {service.name: [app]}
    meta_source_labels: {service_name: app}
    service_name_template: "{{.Meta.Name}}"
    meta_cache_address: cache:50055
    reconnect_initial_interval: 1s
  instance_id: {dns: false, override_hostname: node-1}
  select:
    http_*: {include: ["*"], exclude: [http.path]}
  host_id: {override: h, fetch_timeout: 1s}
  extra_group_attributes: {k8s_app_meta: [k8s.app.version]}
  sensitive_query_params: {add: [token], remove: [sig]}
  rename_unresolved_hosts: u
  rename_unresolved_hosts_outgoing: o
  rename_unresolved_hosts_incoming: i
  metric_span_names_limit: 5
  metadata_retry: {attempts: 3}
name_resolver: {sources: [k8s, dns], cache_len: 10, cache_expiry: 1m}
filter:
  application: {http.route: {match: "/api/*"}}
  network: {transport: {not_match: UDP}}
network:
  enable: true
  source: tc
  cidrs: [10.0.0.0/8]
  agent_ip: 10.0.0.1
  agent_ip_iface: local
  agent_ip_type: ipv4
  interfaces: [eth0]
  exclude_interfaces: [lo]
  protocols: [TCP]
  exclude_protocols: [UDP]
  cache_max_flows: 10
  cache_active_timeout: 1s
  deduper: none
  deduper_fc_ttl: 2s
  direction: egress
  sampling: 2
  listen_interfaces: poll
  listen_poll_period: 3s
  reverse_dns: {type: local}
  print_flows: true
health_check: {port: 8081, listen_address: 0.0.0.0, unix_socket_path: /run/h.sock}
"##;

#[test]
fn every_key_is_accepted_and_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(&dir, EVERY_KEY);
    let loaded = config::check_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let c = &loaded.config;
    assert_eq!(c.log_level, LogLevel::Error);
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.trace_printer, TracePrinter::JsonIndent);
    assert_eq!(c.shutdown_timeout.as_std(), secs(90));
    assert_eq!(c.target_pids, vec![42]);
    let web = &c.discovery.instrument[0];
    assert_eq!(web.target_pids, vec![1, 2]);
    assert!(web.containers_only);
    assert!(web.languages.as_ref().is_some_and(|m| m.is_match("java")));
    assert!(web.cmd_args.as_ref().is_some_and(|m| m.is_match("-c x --serve now")));
    assert!(c.discovery.default_exclude_instrument.is_empty());
    assert!(c.discovery.services[0].exe_path.as_ref().is_some_and(|r| r.is_match("/usr/bin/ruby")));
    assert_eq!(c.routes.wildcard_char, '#');
    assert_eq!(c.routes.unmatched, Unmatched::Wildcard);
    assert_eq!(c.prometheus_export.port, Some(9400));
    assert_eq!(c.internal_metrics.prometheus.path, "/internal");
    assert_eq!(c.ebpf.buffer_sizes.aerospike, 7);
    assert_eq!(c.ebpf.hook_mode, HookMode::Tracepoints);
    assert_eq!(c.ebpf.db_query_text, QueryText::Full);
    assert_eq!(c.ebpf.traffic_control_backend, TcBackend::Tc);
    assert_eq!(c.attributes.kubernetes.enable, KubeEnable::Autodetect);
    assert_eq!(c.attributes.instance_id.override_hostname.as_deref(), Some("node-1"));
    assert_eq!(c.health_check.port, Some(8081));

    // effective selectors: instrument, services (as regex), then the top-level one
    let selectors = c.selectors();
    assert_eq!(selectors.len(), 3);
    assert!(selectors[1].exe_path.as_ref().is_some_and(|m| m.is_regex()));
    let top = &selectors[2];
    assert_eq!(top.name.as_deref(), Some("api"));
    assert_eq!(top.namespace.as_deref(), Some("shop"));
    assert!(top.open_ports.as_ref().is_some_and(|p| p.contains(8085)));
    assert_eq!(top.exe_path.as_ref().map(|m| m.as_str()), Some("*/api"));
    assert_eq!(top.target_pids, vec![42]);
    // exclusions: exclude_instrument, exclude_services, (default_exclude_instrument: []), default_exclude_services
    assert_eq!(c.exclusions().len(), 3);

    // features not built yet are named
    let keys: Vec<&str> = loaded.warnings.iter().map(|w| w.key.as_str()).collect();
    for key in [
        "otel_metrics_export.features",
        "grafana",
        "metrics",
        "network",
        "filter",
        "name_resolver",
        "health_check",
        "attributes.kubernetes.service_name_template",
        "attributes.kubernetes.meta_cache_address",
        "ebpf.payload_extraction",
        "profile_port",
        "log_config",
        "print_traces",
        "discovery.services",
        "discovery.survey",
        "ebpf.heuristic_sql_detect",
    ] {
        assert!(keys.contains(&key), "no warning for {key}: {keys:?}");
    }
    // Built: `http_*` selects the HTTP metrics' attributes, without a warning.
    assert!(!keys.iter().any(|k| k.starts_with("attributes.select")), "{keys:?}");
    for w in &loaded.warnings {
        assert!(matches!(w.origin, Origin::File { line: Some(_), .. }), "{w}");
    }
}

#[test]
fn default_config_round_trips_through_yaml() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = serde_yaml::to_string(&Config::default()).expect("serialise");
    let path = write(&dir, &yaml);
    let loaded = config::check_file(&path).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(loaded.config, Config::default());

    // and a non-default one
    let path = write(&dir, EVERY_KEY);
    let every = config::check_file(&path).expect("load").config;
    let path = write(&dir, &serde_yaml::to_string(&every).expect("serialise"));
    assert_eq!(config::check_file(&path).expect("reload").config, every);
}

#[test]
fn cli_overrides_every_key_set_by_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(&dir, EVERY_KEY);
    let from_file = serde_json::to_value(config::check_file(&path).expect("load").config).expect("json");
    let default = serde_json::to_value(Config::default()).expect("json");
    let mut keys = Vec::new();
    leaf_keys(&default, "", &mut keys);
    let mut checked = 0;
    for key in keys {
        let pointer = format!("/{}", key.replace('.', "/"));
        let (Some(want), Some(file_value)) = (default.pointer(&pointer), from_file.pointer(&pointer)) else {
            panic!("{key} missing from the serialised config");
        };
        // maps merge key by key across layers, so an empty map cannot clear one: skip those
        if want.is_null() || want.is_object() || want == file_value {
            continue;
        }
        let raw = match want {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let loaded = config::load(&Sources { file: Some(&path), env: &[], cli: vec![(key.clone(), raw.clone())] })
            .unwrap_or_else(|e| panic!("--set {key}={raw}: {e}"));
        let got = serde_json::to_value(loaded.config).expect("json");
        assert_eq!(got.pointer(&pointer), Some(want), "--set {key}={raw} did not override the file");
        checked += 1;
    }
    assert!(checked >= 95, "only {checked} keys checked");
}

#[test]
fn file_env_cli_precedence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(&dir, "prometheus_export:\n  port: 1111\n  path: /file\nlog_level: debug\n");
    let env = vec![
        ("BEYLA_PROMETHEUS_PORT".to_string(), "2222".to_string()),
        ("BEYLA_LOG_LEVEL".to_string(), "warn".to_string()),
    ];
    let only_file = config::load(&Sources { file: Some(&path), env: &[], cli: Vec::new() }).expect("file");
    assert_eq!(only_file.config.prometheus_export.port, Some(1111));
    assert_eq!(only_file.config.log_level, LogLevel::Debug);

    let with_env = config::load(&Sources { file: Some(&path), env: &env, cli: Vec::new() }).expect("env");
    assert_eq!(with_env.config.prometheus_export.port, Some(2222));
    assert_eq!(with_env.config.prometheus_export.path, "/file", "env must not reset other file keys");
    assert_eq!(with_env.config.log_level, LogLevel::Warn);

    let cli = vec![("prometheus_export.port".to_string(), "3333".to_string())];
    let with_cli = config::load(&Sources { file: Some(&path), env: &env, cli }).expect("cli");
    assert_eq!(with_cli.config.prometheus_export.port, Some(3333));
    assert_eq!(with_cli.config.log_level, LogLevel::Warn);
}

#[test]
fn cli_values_are_yaml_or_text() {
    let cli = |pairs: &[(&str, &str)]| {
        config::load(&Sources {
            file: None,
            env: &[],
            cli: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        })
        .expect("load")
        .config
    };
    let c = cli(&[
        ("prometheus_export.features", "[application, network]"),
        ("discovery.poll_interval", "250ms"),
        ("service_name", "123"),
        ("open_port", "443"),
        ("routes.patterns", "/a/{id},/b/:x"),
        ("discovery.instrument", "[{exe_path: '*java*', open_ports: 8080}]"),
    ]);
    assert_eq!(c.prometheus_export.features, vec![MetricFeature::Application, MetricFeature::Network]);
    assert_eq!(c.discovery.poll_interval.to_string(), "250ms");
    assert_eq!(c.service_name.as_deref(), Some("123"));
    assert!(c.open_port.is_some_and(|p| p.contains(443)));
    assert_eq!(c.routes.patterns[1].as_str(), "/b/:x");
    assert_eq!(c.discovery.instrument.len(), 1);
    // `--set key=` (YAML null) unsets an optional key
    let unset = cli(&[("prometheus_export.port", "9"), ("prometheus_export.port", "")]);
    assert_eq!(unset.prometheus_export.port, None);
}

#[test]
fn normalisation_of_deprecated_and_zero_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path =
        write(&dir, "print_traces: true\nebpf:\n  enable_context_propagation: true\nprometheus_export:\n  port: 0\n");
    let l = config::check_file(&path).expect("load");
    assert_eq!(l.config.trace_printer, TracePrinter::Text);
    assert_eq!(l.config.ebpf.context_propagation, ContextPropagation::ALL);
    assert_eq!(l.config.prometheus_export.port, None);
    assert!(l.warnings.iter().any(|w| w.key == "print_traces" && w.message.starts_with("deprecated")));
    assert!(l.warnings.iter().any(|w| w.key == "ebpf.enable_context_propagation"));

    let path = write(&dir, "prometheus_export:\n  port: 9400\n  features: [application, network, all]\n");
    let l = config::check_file(&path).expect("load");
    let msgs: Vec<String> = l.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        msgs.iter().any(|m| m.starts_with(
            "prometheus_export.features: feature `network` is not implemented yet; the others listed are exported ("
        )),
        "{msgs:?}"
    );
    assert!(msgs.iter().any(|m| m.contains("`all` includes features")), "{msgs:?}");
}

#[test]
fn executable_name_is_a_regex_selector() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(&dir, "executable_name: \"(node|python)$\"\nopen_port: 3000\n");
    let l = config::check_file(&path).expect("load");
    let top = l.config.top_level_selector().expect("top-level selector");
    let exe = top.exe_path.expect("exe");
    assert!(exe.is_regex() && exe.is_match("/usr/bin/node") && !exe.is_match("/usr/bin/nodejs"));
    assert!(l.warnings.iter().any(|w| w.key == "executable_name" && w.message.starts_with("deprecated")));
}

fn docs() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/config.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn leaf_keys(value: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                leaf_keys(v, &key, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

#[test]
fn docs_cover_every_key_and_variable() {
    let docs = docs();
    let mut keys = Vec::new();
    leaf_keys(&serde_json::to_value(Config::default()).expect("json"), "", &mut keys);
    let missing: Vec<&String> = keys.iter().filter(|k| !docs.contains(&format!("`{k}`"))).collect();
    assert!(missing.is_empty(), "docs/config.md lacks keys: {missing:?}");

    let selector = serde_json::to_value(config::Selector::default()).expect("json");
    let fields: Vec<&String> = selector.as_object().expect("object").keys().collect();
    let missing: Vec<&&String> = fields.iter().filter(|k| !docs.contains(&format!("`{k}`"))).collect();
    assert!(missing.is_empty(), "docs/config.md lacks selector keys: {missing:?}");

    let missing: Vec<&str> = aliases().iter().map(|a| a.var).filter(|v| !docs.contains(&format!("`{v}`"))).collect();
    assert!(missing.is_empty(), "docs/config.md lacks variables: {missing:?}");
    assert!(docs.contains("`BEYLA_CONFIG_PATH`"));
}
