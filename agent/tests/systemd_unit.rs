//! The systemd unit has one source of truth, `deploy/systemd/hardening.json`: the NixOS module
//! reads it, `deploy/systemd/render.sh` renders `deploy/systemd/beyla.service` from it. These
//! tests fail when the plain unit drifts from the JSON (a directive missing, extra, or with another
//! value), when the JSON breaks a rule the agent depends on (never `ProtectProc=invisible`, no
//! system call filter that blocks `bpf`/`perf_event_open`, `LimitMEMLOCK=infinity`, ...), and when
//! the NixOS module's example settings (`nixos-module/example-settings.yml`) stop passing
//! `beyla config check`. No privileges needed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn hardening() -> Value {
    serde_json::from_str(&read("deploy/systemd/hardening.json"))
        .expect("deploy/systemd/hardening.json is not valid JSON (Nix reads it with builtins.fromJSON)")
}

/// Directive -> values in order, one per line (`Key=a` twice gives `[a, a]`).
type Section = BTreeMap<String, Vec<String>>;

/// Parses a unit file into its sections. Comments (`#`, `;`) and blank lines are skipped;
/// continuation lines are rejected (the renderer never writes them).
fn parse_unit(text: &str) -> BTreeMap<String, Section> {
    let mut sections: BTreeMap<String, Section> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        assert!(!line.ends_with('\\'), "line {}: continuation lines are not expected: {raw}", n + 1);
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            assert!(!sections.contains_key(name), "line {}: section [{name}] appears twice", n + 1);
            sections.insert(name.to_string(), Section::new());
            current = Some(name.to_string());
            continue;
        }
        let (key, value) =
            line.split_once('=').unwrap_or_else(|| panic!("line {}: expected Key=value, got {raw}", n + 1));
        let section = current.as_ref().unwrap_or_else(|| panic!("line {}: directive before any section", n + 1));
        sections.get_mut(section).unwrap().entry(key.trim().to_string()).or_default().push(value.trim().to_string());
    }
    sections
}

/// A JSON section as the unit lines NixOS (and render.sh) write: lists become one line per
/// item, booleans `true`/`false`.
fn json_section(value: &Value, name: &str) -> Section {
    let obj = value
        .get(name)
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("hardening.json: `{name}` must be an object"));
    obj.iter()
        .map(|(key, v)| {
            let items: Vec<&Value> = match v {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            let values = items
                .into_iter()
                .map(|item| match item {
                    Value::String(s) => s.clone(),
                    Value::Bool(b) => b.to_string(),
                    Value::Number(n) => n.to_string(),
                    other => panic!("hardening.json: {name}.{key}: unsupported value {other}"),
                })
                .collect();
            (key.clone(), values)
        })
        .collect()
}

/// Every difference between the expected (JSON) and the actual (unit) section.
fn drift(section: &str, expected: &Section, actual: &Section) -> Vec<String> {
    let mut out = Vec::new();
    for (key, want) in expected {
        match actual.get(key) {
            None => out.push(format!("[{section}] {key}: missing from beyla.service (hardening.json has {want:?})")),
            Some(got) if got != want => {
                out.push(format!("[{section}] {key}: beyla.service has {got:?}, hardening.json has {want:?}"))
            }
            Some(_) => {}
        }
    }
    for (key, got) in actual {
        if !expected.contains_key(key) {
            out.push(format!("[{section}] {key}: in beyla.service ({got:?}) but not in hardening.json"));
        }
    }
    out
}

/// Directives of the plain unit that are not in the JSON, because the NixOS module writes its
/// own (the store path of the agent and of the generated configuration; its own secrets file).
const PLAIN_UNIT_ONLY: &[&str] = &["ExecStart", "EnvironmentFile"];

#[test]
fn plain_unit_matches_hardening_json() {
    let spec = hardening();
    let unit = parse_unit(&read("deploy/systemd/beyla.service"));
    let names: Vec<&str> = unit.keys().map(String::as_str).collect();
    assert_eq!(names, ["Install", "Service", "Unit"], "beyla.service sections");

    let mut problems = Vec::new();
    for (section, key) in [("Unit", "unit"), ("Service", "service"), ("Install", "install")] {
        let mut actual = unit[section].clone();
        if section == "Service" {
            for only in PLAIN_UNIT_ONLY {
                assert!(actual.remove(*only).is_some(), "beyla.service: [Service] {only} is missing");
            }
        }
        let mut expected = json_section(&spec, key);
        if section == "Service" {
            // The plain unit always carries the capabilities of plainUnitFeatures.
            for feature in strings(&spec["plainUnitFeatures"], "plainUnitFeatures") {
                let caps = strings(&spec["featureCapabilities"][&feature], &format!("featureCapabilities.{feature}"));
                for directive in ["AmbientCapabilities", "CapabilityBoundingSet"] {
                    expected.get_mut(directive).expect("capabilities in hardening.json").extend(caps.iter().cloned());
                }
            }
        }
        problems.extend(drift(section, &expected, &actual));
    }
    assert!(
        problems.is_empty(),
        "deploy/systemd/beyla.service drifted from deploy/systemd/hardening.json \
         (rerun deploy/systemd/render.sh):\n  {}",
        problems.join("\n  ")
    );

    let service = &unit["Service"];
    assert_eq!(service["ExecStart"], ["/usr/local/bin/beyla --config /etc/beyla/config.yml"]);
}

#[test]
fn drift_is_detected() {
    // The comparison itself: a missing, an extra and a changed directive are all reported.
    let expected: Section = [("A".to_string(), vec!["1".to_string()]), ("B".to_string(), vec!["x".into(), "y".into()])]
        .into_iter()
        .collect();
    let unit = parse_unit("[Service]\nB=x\nB=z\nC=extra\n");
    let problems = drift("Service", &expected, &unit["Service"]);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems[0].contains("A: missing"));
    assert!(problems[1].contains("B: beyla.service has [\"x\", \"z\"]"));
    assert!(problems[2].contains("C: in beyla.service"));
}

fn strings(v: &Value, what: &str) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("hardening.json: {what} must be a list"))
        .iter()
        .map(|s| s.as_str().unwrap_or_else(|| panic!("hardening.json: {what}: strings only")).to_string())
        .collect()
}

#[test]
fn hardening_keeps_what_the_agent_needs() {
    let spec = hardening();
    let service = &spec["service"];

    // Base capabilities (Beyla docs/sources/security.md), ambient == bounding set; the optional
    // ones only through their features.
    let ambient = strings(&service["AmbientCapabilities"], "AmbientCapabilities");
    let bounding = strings(&service["CapabilityBoundingSet"], "CapabilityBoundingSet");
    assert_eq!(ambient, bounding, "AmbientCapabilities and CapabilityBoundingSet must be the same set");
    for cap in ["CAP_BPF", "CAP_PERFMON", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"] {
        assert!(ambient.iter().any(|c| c == cap), "{cap} missing from the base capabilities");
    }
    for cap in ["CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_RESOURCE", "CAP_DAC_OVERRIDE"] {
        assert!(!ambient.iter().any(|c| c == cap), "{cap} must not be in the base capabilities");
    }
    assert_eq!(
        strings(&spec["featureCapabilities"]["network"], "featureCapabilities.network"),
        ["CAP_NET_ADMIN", "CAP_NET_RAW"]
    );
    assert_eq!(strings(&spec["featureCapabilities"]["sysAdmin"], "featureCapabilities.sysAdmin"), ["CAP_SYS_ADMIN"]);
    // The plain unit is for Debian/Ubuntu-style kernels (perf_event_paranoid > 2 needs
    // CAP_SYS_ADMIN, proven by vm-tests/run-systemd.sh); never the network capabilities.
    assert_eq!(strings(&spec["plainUnitFeatures"], "plainUnitFeatures"), ["sysAdmin"]);
    assert_eq!(strings(&spec["featureAddressFamilies"]["network"], "featureAddressFamilies.network"), ["AF_PACKET"]);

    // Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK: systemd lifts it, so the agent needs
    // no CAP_SYS_RESOURCE (its own setrlimit to infinity is then a no-op).
    assert_eq!(service["LimitMEMLOCK"], "infinity");

    // The agent reads /proc/<pid>/{exe,environ,fd,cgroup} of every process and /proc/sys.
    assert_eq!(service["ProtectProc"], "default", "ProtectProc must stay `default` (never invisible)");
    assert_eq!(service["ProcSubset"], "all", "ProcSubset=pid would hide /proc/sys");
    // Instrumented executables may live under /home: readable, never hidden.
    assert_eq!(service["ProtectHome"], "read-only");

    // bpf(2) and perf_event_open(2) are the agent's job; the filter may only deny groups that
    // contain neither (`@debug` holds perf_event_open, `@privileged` and `@system-service`-style
    // allow lists would drop bpf).
    for entry in strings(&service["SystemCallFilter"], "SystemCallFilter") {
        let group = entry
            .strip_prefix('~')
            .unwrap_or_else(|| panic!("SystemCallFilter {entry}: only deny entries (~...) are allowed"));
        assert!(
            ["@cpu-emulation", "@module", "@obsolete", "@raw-io", "@reboot", "@swap", "@clock"].contains(&group),
            "SystemCallFilter {entry}: not a group known to spare bpf/perf_event_open/setrlimit/mount"
        );
    }

    // The agent's sockets: IPv4/6 (Prometheus, OTLP), netlink (TC probes), unix (logging).
    let families = strings(&service["RestrictAddressFamilies"], "RestrictAddressFamilies");
    for family in ["AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"] {
        assert!(families.iter().any(|f| f == family), "{family} missing from RestrictAddressFamilies");
    }

    // The agent needs bpffs and tracefs mounted by the system, before it starts.
    let after = strings(&spec["unit"]["After"], "unit.After");
    assert!(after.iter().any(|u| u == "sys-kernel-tracing.mount"));
}

/// Runs `beyla config check FILE`, returning (success, stdout + stderr).
fn config_check(file: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_beyla"))
        .args(["config", "check"])
        .arg(file)
        .env_clear()
        .output()
        .expect("running beyla config check");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn module_example_settings_pass_config_check() {
    let rel = "nixos-module/example-settings.yml";
    let path = repo().join(rel);
    let text = read(rel);

    // The module imports the example with lib.importJSON, so it must be JSON (which is YAML).
    let example: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel} must be JSON: {e}"));

    // The module's typed options with defaults all appear in the example, so the module
    // generates exactly these settings for it (nulls are dropped before generation).
    for (section, key) in
        [("prometheus_export", "port"), ("prometheus_export", "path"), ("routes", "patterns"), ("routes", "unmatched")]
    {
        assert!(
            !example[section][key].is_null(),
            "{rel}: {section}.{key} must be set (the module has a default for it)"
        );
    }
    assert!(example["discovery"]["instrument"].is_array(), "{rel}: discovery.instrument must be a list");

    let (ok, out) = config_check(&path);
    assert!(ok, "beyla config check {rel} failed:\n{out}");
    assert!(out.contains("valid"), "{out}");

    // The module writes the settings with pkgs.formats.yaml (JSON -> YAML): check that form too.
    let dir = tempfile::tempdir().unwrap();
    let generated = dir.path().join("config.yml");
    std::fs::write(&generated, serde_yaml::to_string(&example).unwrap()).unwrap();
    let (ok, out) = config_check(&generated);
    assert!(ok, "the YAML the module generates from {rel} fails beyla config check:\n{out}");
}

#[test]
fn config_check_rejects_a_bad_file_naming_key_and_line() {
    // The module's build-time validation relies on a non-zero exit for a bad file.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "prometheus_export:\n  port: abc\n").unwrap();
    let (ok, out) = config_check(&bad);
    assert!(!ok, "config check accepted a bad file:\n{out}");
    assert!(out.contains("prometheus_export.port"), "{out}");
    assert!(out.contains(":2:"), "the error should name the line: {out}");
}
