//! The Kubernetes manifests in deploy/kubernetes/ fit the agent: the ConfigMap's
//! configuration loads without warnings, and the DaemonSet runs it the way docs/kubernetes.md
//! says (hostPID, the minimal capabilities, the mounts, the config path, port 9400).
//! Schema validation of every document is `scripts/check-manifests.sh`.
use std::path::{Path, PathBuf};

use serde_yaml::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

fn doc(file: &str, kind: &str) -> Value {
    let text = std::fs::read_to_string(dir().join(file)).unwrap();
    let found = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .find(|v| v["kind"].as_str() == Some(kind));
    found.unwrap_or_else(|| panic!("no {kind} in {file}"))
}

use serde::Deserialize;

#[test]
fn configmap_config_loads_without_warnings() {
    let cm = doc("configmap.yaml", "ConfigMap");
    let text = cm["data"]["beyla-config.yml"].as_str().expect("beyla-config.yml");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("beyla-config.yml");
    std::fs::write(&path, text).unwrap();
    let loaded = beyla::config::check_file(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(c.attributes.kubernetes.enable, beyla::config::KubeEnable::True);
    assert!(c.attributes.kubernetes.meta_restrict_local_node);
    assert_eq!(c.prometheus_export.port, Some(9400));
    let sel = &c.discovery.instrument[0];
    assert!(sel.k8s_namespace.as_ref().is_some_and(|m| m.is_match("demo")));
    let deploy = sel.k8s_deployment_name.as_ref().unwrap();
    for d in ["loadgen", "frontend", "backend", "worker"] {
        assert!(deploy.is_match(d), "{d}");
    }
    assert!(!deploy.is_match("other"));
}

#[test]
fn daemonset_runs_the_agent_unprivileged_with_host_pids() {
    let ds = doc("daemonset.yaml", "DaemonSet");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["hostPID"].as_bool(), Some(true));
    assert_eq!(spec["serviceAccountName"].as_str(), Some("beyla"));
    let c = &spec["containers"][0];
    assert_eq!(c["image"].as_str(), Some("beyla:0.1.0"));
    let sc = &c["securityContext"];
    assert!(sc["privileged"].is_null(), "privileged is only the documented variant");
    let caps: Vec<&str> = sc["capabilities"]["add"].as_sequence().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(caps, ["BPF", "PERFMON", "SYS_PTRACE", "DAC_READ_SEARCH", "SYS_RESOURCE"]);
    let mounts: Vec<(&str, bool)> = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| (m["mountPath"].as_str().unwrap(), m["readOnly"].as_bool().unwrap_or(false)))
        .collect();
    for (path, ro) in
        [("/sys/kernel/tracing", false), ("/sys/fs/bpf", false), ("/sys/fs/cgroup", true), ("/etc/beyla", true)]
    {
        assert!(mounts.contains(&(path, ro)), "{path} (read-only {ro}) not mounted: {mounts:?}");
    }
    let args: Vec<&str> = c["args"].as_sequence().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(args, ["--config", "/etc/beyla/beyla-config.yml"]);
    assert_eq!(c["ports"][0]["containerPort"].as_u64(), Some(9400));
    assert_eq!(c["env"][0]["name"].as_str(), Some("NODE_NAME"));
    assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"].as_str(), Some("spec.nodeName"));

    let svc = doc("service.yaml", "Service");
    assert_eq!(svc["spec"]["ports"][0]["port"].as_u64(), Some(9400));
    let role = doc("rbac.yaml", "ClusterRole");
    let rules = serde_yaml::to_string(&role["rules"]).unwrap();
    for r in ["pods", "replicasets", "nodes", "services", "list", "watch"] {
        assert!(rules.contains(r), "{r} missing from the ClusterRole: {rules}");
    }
}

#[test]
fn demo_deployments_match_the_configured_selector() {
    for name in ["loadgen", "frontend", "backend", "worker"] {
        let d = doc(&format!("demo/{name}.yaml"), "Deployment");
        assert_eq!(d["metadata"]["namespace"].as_str(), Some("demo"));
        assert_eq!(d["metadata"]["name"].as_str(), Some(name));
        let image = d["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap();
        assert_eq!(image, format!("ghcr.io/beyla-rs/demo-{name}:0.1.0"));
    }
}
