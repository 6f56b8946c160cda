//! Every error path names the key and where it was written (`file:line:column`, the
//! variable, or the `--set` override).

use std::path::PathBuf;

use beyla::config::{self, ConfigError, Origin, Sources};

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn file(text: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.yml");
    std::fs::write(&path, text).expect("write config");
    Fixture { _dir: dir, path }
}

/// Loads `text` and returns the error message with the temporary directory replaced by `DIR`.
fn error_of(text: &str) -> (String, ConfigError) {
    let f = file(text);
    let err = config::check_file(&f.path).expect_err("expected an error");
    let dir = f.path.parent().expect("parent").display().to_string();
    (err.to_string().replace(&dir, "DIR"), err)
}

#[test]
fn wrong_type_names_key_and_position() {
    let (msg, err) = error_of("log_level: info\nprometheus_export:\n  path: /metrics\n  port: abc\n");
    assert_eq!(msg, "prometheus_export.port: invalid type: string \"abc\", expected u16 (DIR/config.yml:4:9)");
    assert_eq!(err.key(), Some("prometheus_export.port"));
    match err {
        ConfigError::Invalid { origin: Origin::File { line, column, .. }, .. } => {
            assert_eq!((line, column), (Some(4), Some(9)));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn unknown_top_level_key() {
    let (msg, err) = error_of("prometheus_export:\n  port: 9400\nprometheus_exprot:\n  port: 1\n");
    assert!(
        msg.starts_with("prometheus_exprot: unknown key (DIR/config.yml:3:1); expected one of `discovery`"),
        "{msg}"
    );
    assert!(msg.ends_with("(did you mean `prometheus_export`?)"), "{msg}");
    assert!(matches!(err, ConfigError::UnknownKey { .. }));
}

#[test]
fn unknown_nested_keys() {
    let (msg, _) = error_of("discovery:\n  instrumnet:\n    - open_ports: 80\n");
    assert!(
        msg.starts_with("discovery.instrumnet: unknown key (DIR/config.yml:2:3); expected one of `instrument`"),
        "{msg}"
    );
    assert!(msg.contains("did you mean `instrument`?"), "{msg}");

    let (msg, _) = error_of("discovery:\n  instrument:\n    - open_ports: 80\n      exe_pth: \"*x*\"\n");
    assert!(
        msg.starts_with("discovery.instrument[0].exe_pth: unknown key (DIR/config.yml:4:7); expected one of"),
        "{msg}"
    );

    // accepted-with-warning sections still reject unknown keys
    let (msg, _) = error_of("otel_traces_export:\n  endpoint: http://x:4318\n  sampler:\n    nme: always_on\n");
    assert!(msg.starts_with("otel_traces_export.sampler.nme: unknown key (DIR/config.yml:4:5); expected"), "{msg}");
    let (msg, _) = error_of("network:\n  enabled: true\n");
    assert!(msg.starts_with("network.enabled: unknown key (DIR/config.yml:2:3)"), "{msg}");
    let (msg, _) = error_of("filter:\n  network:\n    transport:\n      notmatch: UDP\n");
    assert!(msg.starts_with("filter.network.transport.notmatch: unknown key (DIR/config.yml:4:7)"), "{msg}");
    let (msg, _) = error_of("attributes:\n  kubernetes:\n    enabled: true\n");
    assert!(msg.starts_with("attributes.kubernetes.enabled: unknown key (DIR/config.yml:3:5)"), "{msg}");
    let (msg, _) = error_of("ebpf:\n  wakeup_lenght: 10\n");
    assert!(msg.starts_with("ebpf.wakeup_lenght: unknown key (DIR/config.yml:2:3)"), "{msg}");
    // env-only keys are not YAML keys
    let (msg, _) = error_of("otel_metrics_export:\n  common_endpoint: http://x\n");
    assert!(msg.starts_with("otel_metrics_export.common_endpoint: unknown key"), "{msg}");
}

#[test]
fn invalid_enum_values() {
    let cases = [
        ("trace_printer: xml\n", "trace_printer: unknown variant `xml`, expected one of `disabled`, `text`, `json`, `json_indent` (DIR/config.yml:1:16)"),
        ("log_level: loud\n", "log_level: unknown variant `loud`"),
        ("routes:\n  unmatched: sometimes\n", "routes.unmatched: unknown variant `sometimes`"),
        ("routes:\n  ignore_mode: logs\n", "routes.ignore_mode: unknown variant `logs`"),
        ("ebpf:\n  hook_mode: uprobe\n", "ebpf.hook_mode: unknown variant `uprobe`"),
        ("ebpf:\n  traffic_control_backend: xdp\n", "ebpf.traffic_control_backend: unknown variant `xdp`"),
        ("ebpf:\n  context_propagation: smoke\n", "ebpf.context_propagation: invalid context propagation \"smoke\""),
        ("prometheus_export:\n  features: [application, netwrk]\n", "prometheus_export.features[1]: unknown variant `netwrk`"),
        ("internal_metrics:\n  exporter: statsd\n", "internal_metrics.exporter: unknown variant `statsd`"),
        ("attributes:\n  kubernetes:\n    enable: maybe\n", "attributes.kubernetes.enable: invalid value: string \"maybe\", expected `true`, `false` or `autodetect`"),
    ];
    for (yaml, expected) in cases {
        let (msg, _) = error_of(yaml);
        assert!(msg.starts_with(expected), "{yaml:?}:\n  got      {msg}\n  expected {expected}...");
        assert!(msg.contains("(DIR/config.yml:"), "{msg}");
    }
}

#[test]
fn invalid_ports_patterns_and_durations() {
    let cases = [
        ("open_port: 90-80\n", "open_port: invalid port set \"90-80\": range 90-80 is reversed", 1),
        ("open_port: 70000\n", "open_port: invalid port 70000: must be between 1 and 65535", 1),
        (
            "discovery:\n  instrument:\n    - open_ports: 80,abc\n",
            "discovery.instrument[0].open_ports: invalid port set \"80,abc\"",
            3,
        ),
        (
            "discovery:\n  instrument:\n    - exe_path: \"[\"\n",
            "discovery.instrument[0].exe_path: invalid glob \"[\"",
            3,
        ),
        ("discovery:\n  services:\n    - exe_path: \"(\"\n", "discovery.services[0].exe_path: invalid regex \"(\"", 3),
        ("executable_name: \"(\"\n", "executable_name: invalid regex \"(\"", 1),
        ("auto_target_exe: \"[a\"\n", "auto_target_exe: invalid glob \"[a\"", 1),
        (
            "routes:\n  patterns:\n    - /ok\n    - /user/{id\n",
            "routes.patterns[1]: invalid route pattern \"/user/{id\"",
            4,
        ),
        (
            "routes:\n  wildcard_char: \"**\"\n",
            "routes.wildcard_char: invalid value: string \"**\", expected a character",
            2,
        ),
        ("shutdown_timeout: 5\n", "shutdown_timeout: invalid duration 5: a unit is required", 1),
        ("discovery:\n  poll_interval: soon\n", "discovery.poll_interval: invalid duration \"soon\"", 2),
        ("target_pids: [12, -1]\n", "target_pids[1]: invalid pid -1", 1),
    ];
    for (yaml, expected, line) in cases {
        let (msg, _) = error_of(yaml);
        assert!(msg.starts_with(expected), "{yaml:?}:\n  got      {msg}\n  expected {expected}...");
        assert!(msg.contains(&format!("(DIR/config.yml:{line}:")), "{yaml:?}: {msg}");
    }
}

#[test]
fn cross_field_rules_name_key_and_file_line() {
    let cases = [
        ("ebpf:\n  batch_length: 0\n", "ebpf.batch_length: must be at least 1 (DIR/config.yml:2:3)"),
        ("ebpf:\n  batch_timeout: 0s\n", "ebpf.batch_timeout: must be greater than 0 (DIR/config.yml:2:3)"),
        (
            "ebpf:\n  ring_buffer_size: 5000000\n",
            "ebpf.ring_buffer_size: must be a power of two from 65536 (64 KiB) to 1073741824 (1 GiB) (DIR/config.yml:2:3)",
        ),
        ("ebpf:\n  buffer_sizes:\n    http: 9000\n", "ebpf.buffer_sizes.http: 9000 is larger than the maximum, 8192 (DIR/config.yml:3:5)"),
        (
            "auto_target_exe: \"*/a\"\nexecutable_name: b\n",
            "auto_target_exe: cannot be combined with executable_name (deprecated); set only one of them (DIR/config.yml:1:1)",
        ),
        (
            "discovery:\n  instrument:\n    - open_ports: 80\n    - name: lonely\n",
            "discovery.instrument[1]: the entry selects nothing: set at least one of open_ports, exe_path, cmd_args, languages, target_pids or a k8s_* key (DIR/config.yml:4:5)",
        ),
        (
            "prometheus_export:\n  buckets:\n    duration_histogram: [0, 2, 1]\n",
            "prometheus_export.buckets.duration_histogram: bucket boundaries must be finite and strictly increasing (DIR/config.yml:3:5)",
        ),
        ("prometheus_export:\n  path: metrics\n", "prometheus_export.path: \"metrics\" must start with `/` (DIR/config.yml:2:3)"),
        ("channel_buffer_len: 0\n", "channel_buffer_len: must be at least 1 (DIR/config.yml:1:1)"),
        ("discovery:\n  poll_interval: 0\n", "discovery.poll_interval: must be greater than 0 (DIR/config.yml:2:3)"),
        (
            "internal_metrics:\n  exporter: otel\n  prometheus:\n    port: 6060\n",
            "internal_metrics.exporter: `otel` cannot be combined with internal_metrics.prometheus.port (DIR/config.yml:2:3)",
        ),
        (
            "ebpf:\n  enable_context_propagation: true\n  context_propagation: headers\n",
            "ebpf.enable_context_propagation: cannot be combined with ebpf.context_propagation; set only context_propagation (DIR/config.yml:2:3)",
        ),
    ];
    for (yaml, expected) in cases {
        let (msg, err) = error_of(yaml);
        assert_eq!(msg, expected, "{yaml:?}");
        assert!(matches!(err, ConfigError::Invalid { .. }), "{err:?}");
    }
}

#[test]
fn cross_field_errors_from_the_environment_name_the_variable() {
    let env = vec![("BEYLA_BPF_BATCH_LENGTH".to_string(), "0".to_string())];
    let err = config::load(&Sources { file: None, env: &env, cli: Vec::new() }).expect_err("batch length 0");
    assert_eq!(err.to_string(), "ebpf.batch_length: must be at least 1 (environment variable BEYLA_BPF_BATCH_LENGTH)");
}

#[test]
fn yaml_syntax_errors_have_positions() {
    let (msg, err) = error_of("discovery:\n  instrument: [\n");
    assert!(matches!(err, ConfigError::Syntax { .. } | ConfigError::Invalid { .. }), "{err:?}");
    assert!(msg.contains("(DIR/config.yml:"), "{msg}");
    let (msg, _) = error_of("- just\n- a list\n");
    assert!(msg.contains("expected struct Config"), "{msg}");
    assert!(msg.contains("(DIR/config.yml:1:1)"), "{msg}");
}

#[test]
fn cli_errors_name_the_override() {
    let run = |cli: &[(&str, &str)]| {
        config::load(&Sources {
            file: None,
            env: &[],
            cli: cli.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        })
    };
    let err = run(&[("prometheus_export.port", "abc")]).expect_err("bad port");
    assert_eq!(err.to_string(), "--set prometheus_export.port: invalid value \"abc\": expected u16");

    let err = run(&[("prometheus_export.prot", "1")]).expect_err("unknown key");
    let msg = err.to_string();
    assert!(
        msg.starts_with("prometheus_export.prot: unknown key (--set prometheus_export.prot); expected one of"),
        "{msg}"
    );
    assert!(msg.contains("did you mean `port`?"), "{msg}");

    let err = run(&[("", "1")]).expect_err("empty key");
    assert!(err.to_string().starts_with("--set : expected a dotted key path"), "{err}");
    let err = run(&[("discovery.instrument[0].open_ports", "80")]).expect_err("index");
    assert!(
        err.to_string().starts_with("--set discovery.instrument[0].open_ports: expected a dotted key path"),
        "{err}"
    );

    let err = run(&[("ebpf.batch_length", "0")]).expect_err("cross-field");
    assert_eq!(err.to_string(), "ebpf.batch_length: must be at least 1 (--set ebpf.batch_length)");
}

#[test]
fn unreadable_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = config::check_file(dir.path()).expect_err("a directory is not a file");
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().starts_with("cannot read config file "), "{err}");
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn every_error_of_a_file_at_once() {
    let text = "log_level: info\n\
                prometheus_export:\n  port: abc\n  pathh: /m\n\
                discovery:\n  poll_interval: soon\n  instrument:\n    - open_ports: 80\n      nmae: x\n    - open_ports: 81\n      exe_path: 7\n\
                trace_printer: loud\n";
    let (msg, err) = error_of(text);
    let ConfigError::Many(errors) = &err else { panic!("expected several errors: {msg}") };
    let keys: Vec<&str> = errors.iter().map(|e| e.key().unwrap_or_default()).collect();
    // Each error once, in the file's order, each at its own line.
    assert_eq!(
        keys,
        [
            "prometheus_export.port",
            "prometheus_export.pathh",
            "discovery.poll_interval",
            "discovery.instrument[0].nmae",
            "discovery.instrument[1].exe_path",
            "trace_printer"
        ],
        "{msg}"
    );
    let lines: Vec<usize> = errors
        .iter()
        .map(|e| match e {
            ConfigError::Invalid { origin: Origin::File { line: Some(l), .. }, .. }
            | ConfigError::UnknownKey { origin: Origin::File { line: Some(l), .. }, .. } => *l,
            other => panic!("no line: {other:?}"),
        })
        .collect();
    assert_eq!(lines, [3, 4, 6, 9, 11, 12], "{msg}");
    assert!(msg.starts_with("6 errors in the configuration:\n  - prometheus_export.port: "), "{msg}");
    assert_eq!(err.key(), Some("prometheus_export.port"));
}

#[test]
fn one_error_stays_one_error() {
    let (_, err) = error_of("prometheus_export:\n  port: abc\n");
    assert!(matches!(err, ConfigError::Invalid { .. }), "{err:?}");
}

#[test]
fn every_rule_between_keys_at_once() {
    // The file reads cleanly; three rules fail, each reported at its key's line.
    let text = "ebpf:\n  batch_length: 0\n\
                discovery:\n  poll_interval: 0s\n  instrument:\n    - name: nothing\n\
                prometheus_export:\n  path: metrics\n";
    let (msg, err) = error_of(text);
    let ConfigError::Many(errors) = &err else { panic!("expected several errors: {msg}") };
    let keys: Vec<&str> = errors.iter().map(|e| e.key().unwrap_or_default()).collect();
    assert_eq!(
        keys,
        ["ebpf.batch_length", "discovery.poll_interval", "prometheus_export.path", "discovery.instrument[0]"],
        "{msg}"
    );
    let lines: Vec<Option<usize>> = errors
        .iter()
        .map(|e| match e {
            ConfigError::Invalid { origin: Origin::File { line, .. }, .. } => *line,
            other => panic!("not a file error: {other:?}"),
        })
        .collect();
    assert_eq!(lines, [Some(2), Some(4), Some(8), Some(6)], "{msg}");
}
