//! Kubernetes metadata end to end (needs root): real test apps placed in cgroups shaped like
//! kubelet's (cgroup v2 with the systemd driver and containerd, cgroup v1 with the cgroupfs
//! driver), an in-process fake API server the agent's real `kube` client lists and watches
//! through a generated kubeconfig, real eBPF capture, real scrapes.
mod common;
#[path = "common/fake_kube.rs"]
mod fake_kube;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use fake_kube::{node, pod, replicaset, FakeKube, Kind, PodSpec};

const DUR: &str = "http_server_request_duration_seconds_count";

/// A cgroup made for a test, removed (deepest first) when dropped.
struct FakeCgroup {
    /// Directories created, outermost first.
    dirs: Vec<PathBuf>,
}

impl FakeCgroup {
    /// Creates `root/<rel>` (each level) and moves `pid` into it.
    fn enter(root: &Path, rel: &str, pid: u32) -> FakeCgroup {
        assert!(root.join("cgroup.procs").exists(), "{} is not a cgroup hierarchy", root.display());
        let mut dirs = Vec::new();
        let mut cur = root.to_path_buf();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            cur = cur.join(part);
            if !cur.exists() {
                std::fs::create_dir(&cur).unwrap_or_else(|e| panic!("creating {}: {e}", cur.display()));
                dirs.push(cur.clone());
            }
        }
        std::fs::write(cur.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("moving {pid} to {}: {e}", cur.display()));
        FakeCgroup { dirs }
    }

    /// A containerd container of a BestEffort pod, systemd driver, cgroup v2.
    fn v2_containerd(pod_uid: &str, container_id: &str, pid: u32) -> FakeCgroup {
        let u = pod_uid.replace('-', "_");
        let rel = format!(
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/cri-containerd-{container_id}.scope"
        );
        FakeCgroup::enter(&v2_root(), &rel, pid)
    }

    /// A container of a BestEffort pod, cgroupfs driver, cgroup v1 (pids hierarchy). On a
    /// host without cgroup v1 (pure v2, as some VM kernels boot) the same cgroupfs layout goes
    /// under the v2 hierarchy.
    fn v1_cgroupfs(pod_uid: &str, container_id: &str, pid: u32) -> FakeCgroup {
        let rel = format!("kubepods/besteffort/pod{pod_uid}/{container_id}");
        let v1 = Path::new("/sys/fs/cgroup/pids");
        if v1.join("cgroup.procs").exists() {
            FakeCgroup::enter(v1, &rel, pid)
        } else {
            eprintln!("no cgroup v1 pids hierarchy here: using the cgroupfs layout under cgroup v2");
            FakeCgroup::enter(&v2_root(), &rel, pid)
        }
    }
}

impl Drop for FakeCgroup {
    fn drop(&mut self) {
        for d in self.dirs.iter().rev() {
            // The process may take a moment to leave after it is killed.
            for _ in 0..50 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// The cgroup v2 hierarchy: `/sys/fs/cgroup/unified` on hybrid hosts, else `/sys/fs/cgroup`.
fn v2_root() -> PathBuf {
    let hybrid = Path::new("/sys/fs/cgroup/unified");
    if hybrid.join("cgroup.procs").exists() {
        hybrid.to_path_buf()
    } else {
        PathBuf::from("/sys/fs/cgroup")
    }
}

/// A random-looking 64-hex container id and pod UID, distinct per call.
fn ids(seed: u32) -> (String, String) {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let x = n ^ ((seed as u64) << 40) ^ ((std::process::id() as u64) << 20);
    let h = |k: u64| {
        format!("{:016x}", x.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(k.wrapping_mul(0xbf58_476d_1ce4_e5b9)))
    };
    let id = format!("{}{}{}{}", h(1), h(2), h(3), h(4));
    let u = h(5) + &h(6);
    let uid = format!("{}-{}-{}-{}-{}", &u[0..8], &u[8..12], &u[12..16], &u[16..20], &u[20..32]);
    (id, uid)
}

fn requests(port: u16, n: usize) {
    for _ in 0..n {
        assert_eq!(http_get(port, "/ping").as_deref(), Some("pong"));
    }
}

fn dump(metrics_port: u16, log: &Path) -> String {
    format!("metrics:\n{}\nlog:\n{}", http_get(metrics_port, "/metrics").unwrap_or_default(), agent_log(log))
}

/// One app in one fake pod.
struct PodApp {
    port: u16,
    uid: String,
    container_id: String,
    // Field order: the app is killed before its cgroup is removed.
    _app: Proc,
    _cgroup: FakeCgroup,
}

fn pod_app(lang: &str, seed: u32, v1: bool) -> PodApp {
    let port = free_port();
    let app = start_app(lang, port, &[]);
    let (container_id, uid) = ids(seed);
    let cg = if v1 {
        FakeCgroup::v1_cgroupfs(&uid, &container_id, app.pid())
    } else {
        FakeCgroup::v2_containerd(&uid, &container_id, app.pid())
    };
    let text = std::fs::read_to_string(format!("/proc/{}/cgroup", app.pid())).unwrap();
    assert!(text.contains(&container_id), "{text}");
    PodApp { port, uid, container_id, _app: app, _cgroup: cg }
}

fn agent_yaml(metrics_port: u16, kubeconfig: &Path, extra_k8s: &str, discovery: &str) -> String {
    format!(
        "prometheus_export:\n  port: {metrics_port}\n\
         trace_printer: json\n\
         attributes:\n  kubernetes:\n    enable: true\n    kubeconfig_path: {}\n    cluster_name: test-cluster\n{extra_k8s}\
         discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n{discovery}",
        kubeconfig.display()
    )
}

/// Decoration of every documented attribute, `k8s_namespace` AND `k8s_deployment_name`
/// selection, and the service name precedence (annotation > label > owner), with apps in
/// cgroup v2 (systemd/containerd) and cgroup v1 (cgroupfs) containers.
#[test]
fn root_kube_decoration_selectors_and_service_names() {
    require_root();
    let backend = pod_app("go", 1, false);
    let frontend = pod_app("python", 2, true);
    let worker = pod_app("node", 3, false);
    let loadgen = pod_app("go", 4, false); // namespace demo, deployment loadgen: not selected
    let other = pod_app("go", 5, false); // namespace staging, deployment backend: not selected
    let system = pod_app("go", 6, false); // kube-system, selected by port: excluded by default

    let mut api = FakeKube::new();
    api.apply(Kind::Nodes, node("node-a"));
    let deployments = [
        (&backend, "demo", "backend", "backend-v2-7d4b9c8f5d", "backend-7d4b9c8f5d-x2x7q"),
        (&frontend, "demo", "frontend", "frontend-5f6b7c8d9e", "frontend-5f6b7c8d9e-abcde"),
        (&worker, "demo", "worker", "worker-6c7d8e9f0a", "worker-6c7d8e9f0a-qwert"),
        (&loadgen, "demo", "loadgen", "loadgen-7d8e9f0a1b", "loadgen-7d8e9f0a1b-zxcvb"),
        (&other, "staging", "backend", "backend-8e9f0a1b2c", "backend-8e9f0a1b2c-poiuy"),
        (&system, "kube-system", "coredns", "coredns-5d78c9869d", "coredns-5d78c9869d-lkjhg"),
    ];
    for (app, ns, deploy, rs, pod_name) in deployments {
        api.apply(Kind::ReplicaSets, replicaset(ns, rs, deploy));
        type Pairs<'a> = Vec<(&'a str, &'a str)>;
        let (labels, annotations): (Pairs, Pairs) = match pod_name {
            // The annotation wins over the label.
            "backend-7d4b9c8f5d-x2x7q" => (
                vec![("app", "backend"), ("app.kubernetes.io/name", "backend-label")],
                vec![
                    ("resource.opentelemetry.io/service.name", "payments"),
                    ("resource.opentelemetry.io/service.namespace", "shop"),
                ],
            ),
            // The label wins over the owner.
            "frontend-5f6b7c8d9e-abcde" => {
                (vec![("app.kubernetes.io/name", "frontend-web"), ("app.kubernetes.io/part-of", "storefront")], vec![])
            }
            _ => (vec![("app", deploy)], vec![]),
        };
        api.apply(
            Kind::Pods,
            pod(&PodSpec {
                namespace: ns,
                name: pod_name,
                uid: &app.uid,
                node: "node-a",
                owner: Some(("ReplicaSet", rs)),
                labels: &labels,
                annotations: &annotations,
                container: (deploy, &app.container_id),
            }),
        );
    }
    api.start();

    let metrics_port = free_port();
    let dir = std::env::temp_dir().join(format!("beyla-test-k8s-deco-{}", std::process::id()));
    let kubeconfig = api.kubeconfig(&dir);
    let yaml = agent_yaml(
        metrics_port,
        &kubeconfig,
        "",
        &format!(
            "  instrument:\n    - k8s_namespace: demo\n      k8s_deployment_name: \"{{backend,frontend,worker}}\"\n    - open_ports: {}\n",
            system.port
        ),
    );
    let (_agent, log) = start_agent(&yaml, &[], "k8s-deco");
    wait_instrumented(metrics_port, 3.0, &log);

    for app in [&backend, &frontend, &worker, &loadgen, &other, &system] {
        requests(app.port, 3);
    }
    let ok = wait_for(Duration::from_secs(15), || sum(&scrape(metrics_port, "/metrics"), DUR, &[]) >= 9.0);
    assert!(ok, "expected 9 requests; {}", dump(metrics_port, &log));
    std::thread::sleep(Duration::from_millis(500));
    let m = scrape(metrics_port, "/metrics");
    assert_eq!(sum(&m, DUR, &[]), 9.0, "{}", dump(metrics_port, &log));
    let internal = scrape(metrics_port, "/internal/metrics");
    assert_eq!(sum(&internal, "beyla_instrumented_processes", &[]), 3.0, "{}", dump(metrics_port, &log));

    // Every attribute, with the Deployment found through the ReplicaSet's owner (its name
    // alone would say `backend-v2`).
    let uid = backend.uid.as_str();
    let backend_labels = [
        ("service_name", "payments"),
        ("service_namespace", "shop"),
        ("job", "shop/payments"),
        ("k8s_namespace_name", "demo"),
        ("k8s_pod_name", "backend-7d4b9c8f5d-x2x7q"),
        ("k8s_pod_uid", uid),
        ("k8s_pod_start_time", "2026-01-02T03:04:05Z"),
        ("k8s_container_name", "backend"),
        ("k8s_deployment_name", "backend"),
        ("k8s_replicaset_name", "backend-v2-7d4b9c8f5d"),
        ("k8s_node_name", "node-a"),
        ("k8s_cluster_name", "test-cluster"),
        ("k8s_owner_name", "backend"),
        ("http_route", "/ping"),
    ];
    assert_eq!(sum(&m, DUR, &backend_labels), 3.0, "{}", dump(metrics_port, &log));
    let info: Vec<&Sample> = m
        .iter()
        .filter(|s| s.name == "target_info" && s.labels.get("k8s_pod_uid").map(String::as_str) == Some(uid))
        .collect();
    assert_eq!(info.len(), 1, "{}", dump(metrics_port, &log));
    assert_eq!(info[0].labels.get("k8s_deployment_name").map(String::as_str), Some("backend"));
    assert_eq!(info[0].labels.get("service_name").map(String::as_str), Some("payments"));

    // cgroup v1 container; the label names the service, part-of its namespace.
    let frontend_labels = [
        ("service_name", "frontend-web"),
        ("service_namespace", "storefront"),
        ("k8s_pod_name", "frontend-5f6b7c8d9e-abcde"),
        ("k8s_pod_uid", frontend.uid.as_str()),
        ("k8s_deployment_name", "frontend"),
        ("k8s_container_name", "frontend"),
    ];
    assert_eq!(sum(&m, DUR, &frontend_labels), 3.0, "{}", dump(metrics_port, &log));
    // No annotation or label: the owner names it, the pod's namespace is its namespace.
    let worker_labels = [("service_name", "worker"), ("service_namespace", "demo"), ("k8s_deployment_name", "worker")];
    assert_eq!(sum(&m, DUR, &worker_labels), 3.0, "{}", dump(metrics_port, &log));
    // Not selected: another deployment of the namespace, the same deployment name elsewhere;
    // excluded: a system namespace (discovery.default_exclude_instrument).
    for app in [&loadgen, &other, &system] {
        assert_eq!(sum(&m, DUR, &[("server_port", &app.port.to_string())]), 0.0, "{}", dump(metrics_port, &log));
    }

    // The trace printer's JSON carries the attributes too.
    let text = agent_log(&log);
    let line = text
        .lines()
        .find(|l| l.contains("\"service\":\"payments\""))
        .unwrap_or_else(|| panic!("no printed span; log:\n{text}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["k8s"]["k8s.pod.name"], "backend-7d4b9c8f5d-x2x7q");
    assert_eq!(v["k8s"]["k8s.deployment.name"], "backend");
    assert_eq!(v["k8s"]["k8s.cluster.name"], "test-cluster");

    // Both kinds were listed and watched through the kube client.
    let reqs = api.requests();
    for path in ["/api/v1/pods?", "/apis/apps/v1/replicasets?"] {
        assert!(reqs.iter().any(|r| r.starts_with(path) && !r.contains("watch=true")), "no list of {path}: {reqs:?}");
        assert!(reqs.iter().any(|r| r.starts_with(path) && r.contains("watch=true")), "no watch of {path}: {reqs:?}");
    }
}

/// The API is down when the agent starts, comes up, goes away and comes back: capture never
/// stops, decoration starts when the API answers, keeps the last known metadata while it is
/// away, and follows watch updates (a relabelled pod renames the service).
#[test]
fn root_kube_watch_updates_and_api_outages() {
    require_root();
    let api_app = pod_app("go", 11, false);
    let mut api = FakeKube::new();
    api.apply(Kind::Nodes, node("node-a"));
    api.apply(Kind::ReplicaSets, replicaset("demo", "api-6d5c4b3a2f", "api"));
    // A pod of the same container id on another node must not be seen with
    // meta_restrict_local_node (its attributes would be wrong).
    let pod_spec = |labels: &[(&str, &str)], name: &str, node_name: &str, uid: &str| {
        let labels: Vec<(&str, &str)> = labels.to_vec();
        pod(&PodSpec {
            namespace: "demo",
            name,
            uid,
            node: node_name,
            owner: Some(("ReplicaSet", "api-6d5c4b3a2f")),
            labels: &labels,
            annotations: &[],
            container: ("api", &api_app.container_id),
        })
    };
    api.apply(
        Kind::Pods,
        pod_spec(&[("app.kubernetes.io/name", "api-v1")], "api-6d5c4b3a2f-aaaaa", "node-a", &api_app.uid),
    );
    api.apply(
        Kind::Pods,
        pod_spec(
            &[("app.kubernetes.io/name", "elsewhere")],
            "api-6d5c4b3a2f-bbbbb",
            "node-b",
            "00000000-0000-0000-0000-000000000001",
        ),
    );

    let metrics_port = free_port();
    let dir = std::env::temp_dir().join(format!("beyla-test-k8s-outage-{}", std::process::id()));
    let kubeconfig = api.kubeconfig(&dir);
    // Selected by port: capture does not depend on the API at all.
    let yaml = agent_yaml(
        metrics_port,
        &kubeconfig,
        "    informers_sync_timeout: 1s\n    meta_restrict_local_node: true\n",
        &format!("  instrument:\n    - open_ports: {}\n", api_app.port),
    );
    let started = std::time::Instant::now();
    let (_agent, log) = start_agent(&yaml, &[("NODE_NAME", "node-a")], "k8s-outage");
    wait_instrumented(metrics_port, 1.0, &log);
    assert!(started.elapsed() < Duration::from_secs(20), "start-up waited on the API");

    // 1. API down from the start: requests are counted, undecorated.
    requests(api_app.port, 3);
    let port = api_app.port.to_string();
    let by_port = |m: &[Sample], extra: &[(&str, &str)]| {
        let mut want = vec![("server_port", port.as_str())];
        want.extend_from_slice(extra);
        sum(m, DUR, &want)
    };
    assert!(
        wait_for(Duration::from_secs(10), || by_port(&scrape(metrics_port, "/metrics"), &[]) == 3.0),
        "{}",
        dump(metrics_port, &log)
    );
    let m = scrape(metrics_port, "/metrics");
    assert!(m.iter().all(|s| !s.labels.contains_key("k8s_pod_name")), "{}", dump(metrics_port, &log));
    assert!(agent_log(&log).contains("not synchronised within informers_sync_timeout"), "{}", agent_log(&log));

    // 2. The API comes up: decoration starts (the watcher retries with backoff).
    api.start();
    let v1 = [
        ("service_name", "api-v1"),
        ("k8s_pod_name", "api-6d5c4b3a2f-aaaaa"),
        ("k8s_deployment_name", "api"),
        ("k8s_node_name", "node-a"),
    ];
    let ok = wait_for(Duration::from_secs(60), || {
        requests(api_app.port, 1);
        by_port(&scrape(metrics_port, "/metrics"), &v1) >= 1.0
    });
    assert!(ok, "decoration did not start; {}", dump(metrics_port, &log));
    // Only this node's pods were asked for.
    let reqs = api.requests();
    assert!(
        reqs.iter()
            .filter(|r| r.starts_with("/api/v1/pods"))
            .all(|r| r.contains("fieldSelector=spec.nodeName%3Dnode-a")),
        "{reqs:?}"
    );

    // 3. A relabelled pod (watch MODIFIED event): new series carry the new name.
    let mut p = api.get(Kind::Pods, "demo/api-6d5c4b3a2f-aaaaa").unwrap();
    p["metadata"]["labels"]["app.kubernetes.io/name"] = serde_json::json!("api-v2");
    api.apply(Kind::Pods, p.clone());
    let v2 = [("service_name", "api-v2"), ("k8s_pod_name", "api-6d5c4b3a2f-aaaaa")];
    let ok = wait_for(Duration::from_secs(20), || {
        requests(api_app.port, 1);
        by_port(&scrape(metrics_port, "/metrics"), &v2) >= 1.0
    });
    assert!(ok, "relabel not followed; {}", dump(metrics_port, &log));

    // 4. The API goes away: capture goes on with the last known metadata.
    api.stop();
    std::thread::sleep(Duration::from_secs(2));
    let before = by_port(&scrape(metrics_port, "/metrics"), &v2);
    requests(api_app.port, 5);
    let ok = wait_for(Duration::from_secs(10), || by_port(&scrape(metrics_port, "/metrics"), &v2) == before + 5.0);
    assert!(ok, "requests lost while the API was down; {}", dump(metrics_port, &log));

    // 5. The API returns with a change made meanwhile, and its history compacted: the watch
    // gets 410 Gone, lists again, and decoration follows.
    p["metadata"]["labels"]["app.kubernetes.io/name"] = serde_json::json!("api-v3");
    api.apply(Kind::Pods, p);
    api.compact();
    api.start();
    let v3 = [("service_name", "api-v3"), ("k8s_pod_name", "api-6d5c4b3a2f-aaaaa")];
    let ok = wait_for(Duration::from_secs(60), || {
        requests(api_app.port, 1);
        by_port(&scrape(metrics_port, "/metrics"), &v3) >= 1.0
    });
    assert!(ok, "decoration did not resume; {}", dump(metrics_port, &log));
    let reqs = api.requests();
    let pod_lists = reqs.iter().filter(|r| r.starts_with("/api/v1/pods?") && !r.contains("watch=true")).count();
    assert!(pod_lists >= 2, "no relist after 410 Gone: {reqs:?}");

    // Each outage is logged once per watched kind, not once per retry.
    let text = agent_log(&log);
    let pods_down =
        text.lines().filter(|l| l.contains("Kubernetes API unreachable") && l.contains("kind=\"pods\"")).count();
    assert!((1..=2).contains(&pods_down), "{pods_down} outage lines for pods:\n{text}");
    assert!(text.contains("Kubernetes API reachable again"), "{text}");
    assert!(!m.is_empty());
    let internal = scrape(metrics_port, "/internal/metrics");
    assert_eq!(sum(&internal, "beyla_ebpf_events_lost_total", &[]), 0.0);
    // Failed attempts are counted; only this node's pod is known.
    assert!(sum(&internal, "beyla_kube_api_errors_total", &[("kind", "pods")]) >= 2.0, "{}", dump(metrics_port, &log));
    assert_eq!(sum(&internal, "beyla_kube_objects", &[("kind", "pods")]), 1.0, "{}", dump(metrics_port, &log));
    assert_eq!(sum(&internal, "beyla_kube_objects", &[("kind", "replicasets")]), 1.0, "{}", dump(metrics_port, &log));
}
