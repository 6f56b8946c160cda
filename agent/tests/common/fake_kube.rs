//! An in-process fake Kubernetes API server for the end-to-end tests: list and watch of
//! pods, ReplicaSets and nodes with real-shaped JSON, over plain HTTP, so the agent's real
//! `kube` client talks to it through a generated kubeconfig.
//!
//! Lists return `{kind}List` documents with a `resourceVersion`; `?watch=true` answers with a
//! chunked stream of newline-delimited `{"type": "ADDED|MODIFIED|DELETED", "object": ...}`
//! events, first replaying the recorded events newer than the requested `resourceVersion`,
//! then live ones. `fieldSelector=spec.nodeName=<node>` filters pods. [`FakeKube::stop`]
//! closes the listener and every open connection, as an API server going away does.
#![allow(dead_code)]

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::mpsc;

type Body = UnsyncBoxBody<Bytes, Infallible>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Pods,
    ReplicaSets,
    Nodes,
}

impl Kind {
    fn from_path(path: &str) -> Option<Kind> {
        match path {
            "/api/v1/pods" => Some(Kind::Pods),
            "/apis/apps/v1/replicasets" => Some(Kind::ReplicaSets),
            "/api/v1/nodes" => Some(Kind::Nodes),
            _ => None,
        }
    }
    fn list_kind(self) -> (&'static str, &'static str) {
        match self {
            Kind::Pods => ("PodList", "v1"),
            Kind::ReplicaSets => ("ReplicaSetList", "apps/v1"),
            Kind::Nodes => ("NodeList", "v1"),
        }
    }
}

struct Watcher {
    kind: Kind,
    node: Option<String>,
    tx: mpsc::UnboundedSender<String>,
}

#[derive(Default)]
struct State {
    rv: u64,
    /// Current objects by (kind, namespace/name).
    objects: Vec<(Kind, String, Value)>,
    /// Every change, for watches that resume from a resourceVersion.
    log: Vec<(u64, Kind, &'static str, Value)>,
    watchers: Vec<Watcher>,
    /// Watches from a resourceVersion older than this get `410 Gone` (history compacted).
    compacted: u64,
    /// Requests served, by path (for assertions).
    requests: Vec<String>,
}

fn key(v: &Value) -> String {
    format!("{}/{}", v["metadata"]["namespace"].as_str().unwrap_or(""), v["metadata"]["name"].as_str().unwrap_or(""))
}

fn node_of(v: &Value) -> Option<&str> {
    v["spec"]["nodeName"].as_str()
}

fn visible(kind: Kind, node: &Option<String>, v: &Value) -> bool {
    kind != Kind::Pods || node.as_deref().is_none_or(|n| node_of(v) == Some(n))
}

impl State {
    fn change(&mut self, kind: Kind, kind_type: &'static str, mut obj: Value) {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let k = key(&obj);
        self.objects.retain(|(kk, name, _)| !(*kk == kind && *name == k));
        if kind_type != "DELETED" {
            self.objects.push((kind, k, obj.clone()));
        }
        self.log.push((self.rv, kind, kind_type, obj.clone()));
        let line = format!("{}\n", json!({"type": kind_type, "object": obj}));
        self.watchers.retain(|w| {
            if w.kind != kind || !visible(kind, &w.node, &obj) {
                return !w.tx.is_closed();
            }
            w.tx.send(line.clone()).is_ok()
        });
    }
}

pub struct FakeKube {
    rt: tokio::runtime::Runtime,
    state: Arc<Mutex<State>>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    server: Option<tokio::task::JoinHandle<()>>,
    pub port: u16,
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(q: &str, name: &str) -> Option<String> {
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn full(status: u16, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed_unsync())
        .unwrap()
}

fn handle(state: &Arc<Mutex<State>>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let q = req.uri().query().unwrap_or("").to_string();
    let mut st = state.lock().unwrap();
    st.requests.push(format!("{path}?{q}"));
    let Some(kind) = Kind::from_path(&path) else {
        let status =
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404});
        return full(404, status.to_string());
    };
    let node = query(&q, "fieldSelector").and_then(|f| f.strip_prefix("spec.nodeName=").map(String::from));
    let watch = matches!(query(&q, "watch").as_deref(), Some("true" | "1"));
    if !watch {
        let (list_kind, api_version) = kind.list_kind();
        let items: Vec<Value> = st
            .objects
            .iter()
            .filter(|(k, _, v)| *k == kind && visible(kind, &node, v))
            .map(|(_, _, v)| v.clone())
            .collect();
        let body = json!({"kind": list_kind, "apiVersion": api_version, "metadata": {"resourceVersion": st.rv.to_string()}, "items": items});
        return full(200, body.to_string());
    }
    let from: u64 = query(&q, "resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    if from < st.compacted {
        // As the API server does once etcd compacted the history: one ERROR event with a
        // 410 Status, then the end of the stream; the client must list again.
        let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("too old resource version: {from} ({})", st.compacted), "reason": "Expired", "code": 410});
        let _ = tx.send(format!("{}\n", json!({"type": "ERROR", "object": status})));
        drop(tx);
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|line| (Ok::<_, Infallible>(Frame::data(Bytes::from(line))), rx))
        });
        return Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(StreamBody::new(stream).boxed_unsync())
            .unwrap();
    }
    for (rv, k, t, obj) in &st.log {
        if *rv > from && *k == kind && visible(kind, &node, obj) {
            let _ = tx.send(format!("{}\n", json!({"type": t, "object": obj})));
        }
    }
    st.watchers.push(Watcher { kind, node, tx });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|line| (Ok::<_, Infallible>(Frame::data(Bytes::from(line))), rx))
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(StreamBody::new(stream).boxed_unsync())
        .unwrap()
}

impl FakeKube {
    /// A fake API on a free port, not serving yet.
    pub fn new() -> FakeKube {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        FakeKube {
            rt,
            state: Arc::new(Mutex::new(State::default())),
            conns: Arc::new(Mutex::new(Vec::new())),
            server: None,
            port: super::free_port(),
        }
    }

    /// Starts serving (again) on the same port.
    pub fn start(&mut self) {
        assert!(self.server.is_none(), "already serving");
        let listener = self.rt.block_on(async {
            for _ in 0..50 {
                match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                    Ok(l) => return l,
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
                }
            }
            panic!("cannot bind the fake API port {}", self.port)
        });
        let state = self.state.clone();
        let conns = self.conns.clone();
        self.server = Some(self.rt.spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else { return };
                let state = state.clone();
                let task = tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let resp = handle(&state, req);
                        async move { Ok::<_, Infallible>(resp) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(sock), svc).await;
                });
                conns.lock().unwrap().push(task.abort_handle());
            }
        }));
    }

    /// Stops serving: closes the listener, every connection and every watch.
    pub fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
            let _ = self.rt.block_on(s);
        }
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
        self.state.lock().unwrap().watchers.clear();
    }

    pub fn apply(&self, kind: Kind, obj: Value) {
        let mut st = self.state.lock().unwrap();
        let exists = st.objects.iter().any(|(k, n, _)| *k == kind && *n == key(&obj));
        st.change(kind, if exists { "MODIFIED" } else { "ADDED" }, obj);
    }

    pub fn delete(&self, kind: Kind, obj: Value) {
        self.state.lock().unwrap().change(kind, "DELETED", obj);
    }

    /// Forgets the change history: watches resuming from an older resourceVersion get
    /// `410 Gone` and must list again.
    pub fn compact(&self) {
        let mut st = self.state.lock().unwrap();
        st.compacted = st.rv;
        st.log.clear();
    }

    /// The current object `namespace/name` of `kind`.
    pub fn get(&self, kind: Kind, ns_name: &str) -> Option<Value> {
        let st = self.state.lock().unwrap();
        st.objects.iter().find(|(k, n, _)| *k == kind && n == ns_name).map(|(_, _, v)| v.clone())
    }

    /// Paths and queries of the requests served so far.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Writes a kubeconfig pointing at this server (plain HTTP, a dummy token).
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\n\
             users:\n- name: fake\n  user:\n    token: fake-token\n",
            self.port
        );
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a test pod looks like.
pub struct PodSpec<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub node: &'a str,
    /// (kind, name) of the controller owner.
    pub owner: Option<(&'a str, &'a str)>,
    pub labels: &'a [(&'a str, &'a str)],
    pub annotations: &'a [(&'a str, &'a str)],
    /// (container name, container id).
    pub container: (&'a str, &'a str),
}

fn map(pairs: &[(&str, &str)]) -> Value {
    Value::Object(pairs.iter().map(|(k, v)| (k.to_string(), json!(v))).collect())
}

/// A real-shaped Pod object (as `kubectl get pod -o json` shows, trimmed).
pub fn pod(p: &PodSpec) -> Value {
    let owners: Vec<Value> = p
        .owner
        .iter()
        .map(|(kind, name)| {
            let api = if *kind == "Job" { "batch/v1" } else { "apps/v1" };
            json!({"apiVersion": api, "kind": kind, "name": name, "uid": format!("{name}-uid"), "controller": true, "blockOwnerDeletion": true})
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": p.name,
            "namespace": p.namespace,
            "uid": p.uid,
            "creationTimestamp": "2026-01-02T03:04:00Z",
            "labels": map(p.labels),
            "annotations": map(p.annotations),
            "ownerReferences": owners,
        },
        "spec": {
            "nodeName": p.node,
            "serviceAccountName": "default",
            "containers": [{"name": p.container.0, "image": format!("ghcr.io/beyla-rs/demo-{}:0.1.0", p.container.0), "ports": [{"containerPort": 8080, "protocol": "TCP"}]}],
        },
        "status": {
            "phase": "Running",
            "podIP": "10.244.0.17",
            "hostIP": "172.18.0.2",
            "startTime": "2026-01-02T03:04:05Z",
            "containerStatuses": [{
                "name": p.container.0,
                "containerID": format!("containerd://{}", p.container.1),
                "image": format!("ghcr.io/beyla-rs/demo-{}:0.1.0", p.container.0),
                "imageID": "ghcr.io/beyla-rs/demo@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                "ready": true,
                "restartCount": 0,
                "started": true,
                "state": {"running": {"startedAt": "2026-01-02T03:04:06Z"}},
            }],
        },
    })
}

/// A ReplicaSet owned by a Deployment.
pub fn replicaset(namespace: &str, name: &str, deployment: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": format!("{name}-uid"),
            "labels": {"pod-template-hash": name.rsplit('-').next().unwrap_or("")},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment, "uid": format!("{deployment}-uid"), "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": deployment}}},
        "status": {"replicas": 1, "readyReplicas": 1},
    })
}

/// A Node.
pub fn node(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "uid": format!("{name}-uid"), "labels": {"kubernetes.io/hostname": name}},
        "status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.2"}, {"type": "Hostname", "address": name}]},
    })
}
