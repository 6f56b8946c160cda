//! Environment variables: every alias parses, overrides the file, loses to `--set`; bad
//! values name the variable; unknown `BEYLA_*` variables only warn.

use std::path::{Path, PathBuf};

use beyla::config::{self, aliases, Config, ConfigError, EnvConversion, Sources};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn write_yaml(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("config.yml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn load(file: Option<&Path>, env: &[(String, String)], cli: &[(&str, &str)]) -> Result<config::Loaded, ConfigError> {
    config::load(&Sources { file, env, cli: cli.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() })
}

/// The value at dotted `key` in the serialised configuration (`Null` when absent).
fn get(config: &Config, key: &str) -> serde_json::Value {
    let mut v = serde_json::to_value(config).expect("serialise config");
    for part in key.split('.') {
        v = v.get(part).cloned().unwrap_or(serde_json::Value::Null);
    }
    v
}

/// YAML text for `value` placed at dotted `key`.
fn yaml_at(key: &str, value: &serde_json::Value) -> String {
    let mut tree = value.clone();
    for part in key.rsplit('.') {
        let mut m = serde_json::Map::new();
        m.insert(part.to_string(), tree);
        tree = serde_json::Value::Object(m);
    }
    serde_yaml::to_string(&tree).expect("yaml")
}

#[test]
fn every_alias_parses_its_example_and_changes_its_key() {
    let default = Config::default();
    for alias in aliases() {
        let loaded = load(None, &env(&[(alias.var, alias.example)]), &[])
            .unwrap_or_else(|e| panic!("{}={}: {e}", alias.var, alias.example));
        assert!(
            !loaded.warnings.iter().any(|w| w.message.contains("not a known")),
            "{} reported as unknown",
            alias.var
        );
        if alias.env_only {
            assert_ne!(loaded.config, default, "{} changed nothing", alias.var);
            continue;
        }
        assert_ne!(
            get(&loaded.config, alias.key),
            get(&default, alias.key),
            "{}={} did not change {}",
            alias.var,
            alias.example,
            alias.key
        );
    }
}

#[test]
fn every_alias_overrides_the_file_and_loses_to_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let default = Config::default();
    for alias in aliases().iter().filter(|a| !a.env_only) {
        let default_value = get(&default, alias.key);
        if default_value.is_null() {
            continue; // no YAML text for an unset Option; covered by the targeted tests below
        }
        let file = write_yaml(&dir, &yaml_at(alias.key, &default_value));
        let vars = env(&[(alias.var, alias.example)]);

        // file < env
        let from_env = load(Some(&file), &vars, &[]).unwrap_or_else(|e| panic!("{}: {e}", alias.var));
        let env_value = get(&from_env.config, alias.key);
        assert_ne!(env_value, default_value, "{}: the file value won over the environment", alias.var);

        // env < cli: --set the default back
        let cli_value = match &default_value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let from_cli = load(Some(&file), &vars, &[(alias.key, &cli_value)])
            .unwrap_or_else(|e| panic!("{} with --set {}={cli_value}: {e}", alias.var, alias.key));
        assert_eq!(get(&from_cli.config, alias.key), default_value, "{}: --set lost to the environment", alias.var);
    }
}

#[test]
fn alias_table_has_no_duplicate_var_key_pairs_and_beyla_names() {
    let mut seen = std::collections::HashSet::new();
    for a in aliases() {
        assert!(seen.insert((a.var, a.key)), "duplicate {} -> {}", a.var, a.key);
        assert!(
            a.var.starts_with("BEYLA_") || a.var.starts_with("OTEL_") || a.var.starts_with("GRAFANA_"),
            "{}",
            a.var
        );
    }
    // the variables the agent must understand, with their keys
    let required = [
        ("BEYLA_OPEN_PORT", "open_port"),
        ("BEYLA_AUTO_TARGET_EXE", "auto_target_exe"),
        ("OTEL_GO_AUTO_TARGET_EXE", "auto_target_exe"),
        ("BEYLA_EXECUTABLE_NAME", "executable_name"),
        ("BEYLA_SERVICE_NAME", "service_name"),
        ("BEYLA_SERVICE_NAMESPACE", "service_namespace"),
        ("BEYLA_PROMETHEUS_PORT", "prometheus_export.port"),
        ("BEYLA_PROMETHEUS_PATH", "prometheus_export.path"),
        ("BEYLA_TRACE_PRINTER", "trace_printer"),
        ("BEYLA_BPF_WAKEUP_LEN", "ebpf.wakeup_len"),
        ("BEYLA_BPF_BATCH_TIMEOUT", "ebpf.batch_timeout"),
        ("BEYLA_BPF_HTTP_REQUEST_TIMEOUT", "ebpf.http_request_timeout"),
        ("BEYLA_LOG_LEVEL", "log_level"),
        ("BEYLA_INTERNAL_METRICS_PROMETHEUS_PORT", "internal_metrics.prometheus.port"),
        ("BEYLA_INTERNAL_METRICS_PROMETHEUS_PATH", "internal_metrics.prometheus.path"),
        ("BEYLA_EBPF_HOOK_MODE", "ebpf.hook_mode"),
        ("BEYLA_DISCOVERY_POLL_INTERVAL", "discovery.poll_interval"),
        ("BEYLA_SKIP_GO_SPECIFIC_TRACERS", "discovery.skip_go_specific_tracers"),
        ("BEYLA_ROUTES_UNMATCHED", "routes.unmatched"),
        ("BEYLA_KUBE_METADATA_ENABLE", "attributes.kubernetes.enable"),
        ("BEYLA_BPF_CONTEXT_PROPAGATION", "ebpf.context_propagation"),
        ("BEYLA_TARGET_PID", "target_pids"),
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "otel_metrics_export.endpoint"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "otel_traces_export.endpoint"),
    ];
    for (var, key) in required {
        assert!(aliases().iter().any(|a| a.var == var && a.key == key), "missing {var} -> {key}");
    }
}

#[test]
fn typed_values_from_the_environment() {
    let loaded = load(
        None,
        &env(&[
            ("BEYLA_OPEN_PORT", "80,443,8000-8999"),
            ("BEYLA_PROMETHEUS_PORT", "9400"),
            ("BEYLA_LOG_LEVEL", "warn"),
            ("BEYLA_BPF_BATCH_TIMEOUT", "1m30s"),
            ("BEYLA_TARGET_PID", "1234,5678"),
            ("BEYLA_PROMETHEUS_FEATURES", "application"),
            ("BEYLA_BPF_CONTEXT_PROPAGATION", "headers,tcp"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "15000"),
        ]),
        &[],
    )
    .expect("load");
    let c = &loaded.config;
    let ports = c.open_port.as_ref().expect("open_port");
    assert!(ports.contains(443) && ports.contains(8500) && !ports.contains(9000));
    assert_eq!(c.prometheus_export.port, Some(9400));
    assert_eq!(c.log_level, config::LogLevel::Warn);
    assert_eq!(c.ebpf.batch_timeout.as_std(), std::time::Duration::from_secs(90));
    assert_eq!(c.target_pids, vec![1234, 5678]);
    assert!(c.ebpf.context_propagation.headers && c.ebpf.context_propagation.tcp);
    assert_eq!(c.otel_metrics_export.interval.as_std(), std::time::Duration::from_secs(15));
}

#[test]
fn otel_metric_export_interval_loses_to_beyla_metrics_interval() {
    let loaded = load(None, &env(&[("BEYLA_METRICS_INTERVAL", "30s"), ("OTEL_METRIC_EXPORT_INTERVAL", "15000")]), &[])
        .expect("load");
    assert_eq!(loaded.config.otel_metrics_export.interval.to_string(), "30s");
    let millis = aliases().iter().find(|a| a.var == "OTEL_METRIC_EXPORT_INTERVAL").expect("alias");
    assert_eq!(millis.conversion, EnvConversion::Millis);
}

#[test]
fn fallbacks_and_precedence_between_variables() {
    // OTEL_GO_AUTO_TARGET_EXE is only a fallback
    let only_fallback = load(None, &env(&[("OTEL_GO_AUTO_TARGET_EXE", "*/server")]), &[]).expect("load");
    assert_eq!(only_fallback.config.auto_target_exe.as_ref().map(|g| g.as_str()), Some("*/server"));
    let both = load(None, &env(&[("BEYLA_AUTO_TARGET_EXE", "*/api"), ("OTEL_GO_AUTO_TARGET_EXE", "*/server")]), &[])
        .expect("load");
    assert_eq!(both.config.auto_target_exe.as_ref().map(|g| g.as_str()), Some("*/api"));

    // OTEL_SERVICE_NAME wins over BEYLA_SERVICE_NAME, as in Beyla
    let names = load(None, &env(&[("OTEL_SERVICE_NAME", "otel"), ("BEYLA_SERVICE_NAME", "beyla")]), &[]).expect("load");
    assert_eq!(names.config.service_name.as_deref(), Some("otel"));

    // the signal-specific protocol wins over the shared one
    let protocols = load(
        None,
        &env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")]),
        &[],
    )
    .expect("load");
    assert_eq!(protocols.config.otel_traces_export.protocol, Some(config::OtlpProtocol::HttpProtobuf));
    assert_eq!(protocols.config.otel_metrics_export.protocol, Some(config::OtlpProtocol::Grpc));

    // the last occurrence of a variable wins; an empty variable is unset
    let last = load(None, &env(&[("BEYLA_PROMETHEUS_PORT", "1"), ("BEYLA_PROMETHEUS_PORT", "2")]), &[]).expect("load");
    assert_eq!(last.config.prometheus_export.port, Some(2));
    let empty = load(None, &env(&[("BEYLA_PROMETHEUS_PORT", "")]), &[]).expect("load");
    assert_eq!(empty.config.prometheus_export.port, None);
}

#[test]
fn env_only_otlp_variables() {
    let loaded = load(
        None,
        &env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "b=2"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod"),
        ]),
        &[],
    )
    .expect("load");
    let c = &loaded.config;
    assert_eq!(c.otel_metrics_export.common_endpoint.as_deref(), Some("http://collector:4318"));
    assert_eq!(c.otel_traces_export.common_endpoint.as_deref(), Some("http://collector:4318"));
    assert_eq!(c.otel_traces_export.headers.as_deref(), Some("a=1,b=2"));
    assert_eq!(c.otel_metrics_export.headers.as_deref(), Some("a=1"));
    assert_eq!(c.otel_resource_attributes.as_deref(), Some("deployment.environment=prod"));
    // OTLP export is implemented: no "ignored" warning, and the shared endpoint gets the
    // signal paths (http/protobuf guessed from port 4318).
    assert!(!loaded.warnings.iter().any(|w| w.key.starts_with("otel_")), "{:?}", loaded.warnings);
    let o = beyla::export::otlp::OtlpOptions::from_config(c).unwrap();
    assert_eq!(o.traces.unwrap().target.endpoint, "http://collector:4318/v1/traces");
    assert_eq!(o.metrics.unwrap().target.endpoint, "http://collector:4318/v1/metrics");
}

#[test]
fn bad_otlp_values_name_the_key_and_variable() {
    let ep = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:4318/v1/traces");
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector:4317")], "otel_traces_export.endpoint"),
        (&[ep, ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")], "http/json is not supported"),
        (&[ep, ("OTEL_TRACES_SAMPLER", "sometimes")], "otel_traces_export.sampler"),
    ];
    for (vars, want) in cases {
        let err = load(None, &env(vars), &[]).expect_err(want).to_string();
        assert!(err.contains(want), "{err}");
    }
    // The variable that set the bad endpoint is named.
    let err = load(None, &env(cases[0].0), &[]).unwrap_err().to_string();
    assert!(err.contains("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), "{err}");
}

#[test]
fn bad_values_name_the_variable() {
    let cases = [
        (
            "BEYLA_PROMETHEUS_PORT",
            "abc",
            "BEYLA_PROMETHEUS_PORT: invalid value \"abc\": expected u16 (environment variable)",
        ),
        (
            "BEYLA_PROMETHEUS_PORT",
            "70000",
            "BEYLA_PROMETHEUS_PORT: invalid value \"70000\": expected u16 (environment variable)",
        ),
        ("BEYLA_OPEN_PORT", "80-", "BEYLA_OPEN_PORT: invalid value \"80-\": invalid port set"),
        ("BEYLA_LOG_LEVEL", "loud", "BEYLA_LOG_LEVEL: invalid value \"loud\": unknown variant `loud`"),
        ("BEYLA_TRACE_PRINTER", "yaml", "BEYLA_TRACE_PRINTER: invalid value \"yaml\": unknown variant `yaml`"),
        ("BEYLA_BPF_BATCH_TIMEOUT", "soon", "BEYLA_BPF_BATCH_TIMEOUT: invalid value \"soon\": invalid duration"),
        ("BEYLA_AUTO_TARGET_EXE", "[", "BEYLA_AUTO_TARGET_EXE: invalid value \"[\": invalid glob"),
        ("BEYLA_EXECUTABLE_NAME", "(", "BEYLA_EXECUTABLE_NAME: invalid value \"(\": invalid regex"),
        (
            "BEYLA_SKIP_GO_SPECIFIC_TRACERS",
            "yes please",
            "BEYLA_SKIP_GO_SPECIFIC_TRACERS: invalid value \"yes please\": expected a boolean",
        ),
        ("BEYLA_TARGET_PID", "12a", "BEYLA_TARGET_PID: invalid value \"12a\": invalid pid"),
        (
            "OTEL_METRIC_EXPORT_INTERVAL",
            "5s",
            "OTEL_METRIC_EXPORT_INTERVAL: invalid value \"5s\": expected an integer number of milliseconds",
        ),
        (
            "BEYLA_PROMETHEUS_FEATURES",
            "application,netwrk",
            "BEYLA_PROMETHEUS_FEATURES: invalid value \"application,netwrk\": unknown variant `netwrk`",
        ),
        (
            "BEYLA_EBPF_HOOK_MODE",
            "uprobes",
            "BEYLA_EBPF_HOOK_MODE: invalid value \"uprobes\": unknown variant `uprobes`",
        ),
    ];
    for (var, value, expected) in cases {
        let err = load(None, &env(&[(var, value)]), &[]).expect_err(var);
        let text = err.to_string();
        assert!(text.starts_with(expected), "{var}={value}:\n  got      {text}\n  expected {expected}...");
        assert!(text.ends_with("(environment variable)"), "{text}");
        assert!(matches!(err, ConfigError::Env { .. }), "{err:?}");
    }
}

#[test]
fn unknown_beyla_variables_warn_and_others_are_ignored() {
    let loaded = load(
        None,
        &env(&[
            ("BEYLA_PROMETEHUS_PORT", "9400"),
            ("HOME", "/root"),
            ("OTEL_SOMETHING", "x"),
            ("BEYLA_CONFIG_PATH", ""),
        ]),
        &[],
    )
    .expect("unknown variables are not errors");
    let keys: Vec<&str> = loaded.warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(keys, ["BEYLA_PROMETEHUS_PORT"]);
    assert_eq!(
        loaded.warnings[0].to_string(),
        "BEYLA_PROMETEHUS_PORT: not a known beyla variable; ignored (environment variable BEYLA_PROMETEHUS_PORT)"
    );
    assert_eq!(loaded.config, Config::default());
}

#[test]
fn config_path_comes_from_the_environment_unless_given() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.yml");
    let b = dir.path().join("b.yml");
    std::fs::write(&a, "prometheus_export:\n  port: 1111\n").expect("write");
    std::fs::write(&b, "prometheus_export:\n  port: 2222\n").expect("write");
    let vars = env(&[("BEYLA_CONFIG_PATH", a.to_str().expect("utf-8 path"))]);

    let from_env = load(None, &vars, &[]).expect("load");
    assert_eq!(from_env.config.prometheus_export.port, Some(1111));
    assert_eq!(from_env.file.as_deref(), Some(a.as_path()));

    let explicit = load(Some(&b), &vars, &[]).expect("load");
    assert_eq!(explicit.config.prometheus_export.port, Some(2222));
    assert_eq!(explicit.file.as_deref(), Some(b.as_path()));

    let missing = load(None, &env(&[("BEYLA_CONFIG_PATH", "/nonexistent/beyla.yml")]), &[]).expect_err("missing");
    assert_eq!(missing.to_string(), "cannot read config file /nonexistent/beyla.yml");
}

#[test]
fn open_port_and_auto_target_exe_make_one_selector() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_yaml(&dir, "discovery:\n  instrument:\n    - exe_path: \"*nginx*\"\n");
    let loaded = load(
        Some(&file),
        &env(&[("BEYLA_OPEN_PORT", "8080"), ("BEYLA_AUTO_TARGET_EXE", "*/api"), ("BEYLA_SERVICE_NAME", "api")]),
        &[],
    )
    .expect("load");
    let selectors = loaded.config.selectors();
    assert_eq!(selectors.len(), 2);
    assert_eq!(selectors[0].exe_path.as_ref().map(|m| m.as_str()), Some("*nginx*"));
    let top = &selectors[1];
    assert!(top.open_ports.as_ref().is_some_and(|p| p.contains(8080)));
    assert_eq!(top.exe_path.as_ref().map(|m| m.as_str()), Some("*/api"));
    assert_eq!(top.name.as_deref(), Some("api"));
}
