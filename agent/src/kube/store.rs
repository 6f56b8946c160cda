//! The metadata store the watchers fill and discovery reads: pods by UID, ReplicaSets by
//! namespace and name, and one resolved [`K8sMeta`] per container id.
//!
//! Nothing is ever removed because the API is unreachable: the store keeps the last known
//! state until a new list replaces it (`replace_*`) or a watch event deletes an object.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;

use super::cgroup::ContainerRef;
use super::meta::{
    cronjob_from_job, deployment_from_replicaset, K8sMeta, Owners, DEFAULT_NAMESPACE_LABELS, DEFAULT_NAME_LABELS,
};

/// The parts of a pod the store keeps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodInfo {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub node_name: String,
    pub start_time: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Controller owner: (kind, name).
    pub owner: Option<(String, String)>,
    /// (container id without the `runtime://` scheme, container name).
    pub containers: Vec<(String, String)>,
}

impl PodInfo {
    pub fn from_pod(pod: &Pod) -> Option<PodInfo> {
        let m = &pod.metadata;
        let uid = m.uid.clone()?;
        let owner = m.owner_references.as_ref().and_then(|refs| {
            refs.iter()
                .find(|r| r.controller == Some(true))
                .or_else(|| refs.first())
                .map(|r| (r.kind.clone(), r.name.clone()))
        });
        let mut containers = Vec::new();
        if let Some(status) = &pod.status {
            let lists =
                [&status.container_statuses, &status.init_container_statuses, &status.ephemeral_container_statuses];
            for cs in lists.into_iter().flatten().flatten() {
                if let Some(id) = cs.container_id.as_deref() {
                    let id = id.rsplit_once("://").map_or(id, |(_, id)| id);
                    if !id.is_empty() {
                        containers.push((id.to_ascii_lowercase(), cs.name.clone()));
                    }
                }
            }
        }
        Some(PodInfo {
            uid,
            namespace: m.namespace.clone().unwrap_or_default(),
            name: m.name.clone().unwrap_or_default(),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default(),
            start_time: pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0.to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Secs, true))
                .unwrap_or_default(),
            labels: m.labels.clone().unwrap_or_default(),
            annotations: m.annotations.clone().unwrap_or_default(),
            owner,
            containers,
        })
    }
}

/// ReplicaSet key (namespace, name) and the Deployment owning it, if any.
pub fn replicaset_owner(rs: &ReplicaSet) -> Option<((String, String), Option<String>)> {
    let m = &rs.metadata;
    let key = (m.namespace.clone().unwrap_or_default(), m.name.clone()?);
    let deployment = m.owner_references.iter().flatten().find(|r| r.kind == "Deployment").map(|r| r.name.clone());
    Some((key, deployment))
}

#[derive(Default)]
struct Inner {
    pods: HashMap<String, PodInfo>,
    replicasets: HashMap<(String, String), Option<String>>,
    /// Resolved metadata per container id.
    by_container: HashMap<String, Arc<K8sMeta>>,
    /// Resolved metadata per pod UID, without a container name (for containers the pod's
    /// status does not list yet).
    by_pod: HashMap<String, Arc<K8sMeta>>,
}

/// Shared, thread-safe metadata store.
pub struct Store {
    inner: RwLock<Inner>,
    cluster_name: String,
    /// Pod labels naming the service and its namespace (`resource_labels`).
    name_labels: Vec<String>,
    namespace_labels: Vec<String>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = self.read();
        f.debug_struct("Store").field("pods", &i.pods.len()).field("replicasets", &i.replicasets.len()).finish()
    }
}

impl Store {
    pub fn new(cluster_name: Option<String>) -> Self {
        Store {
            inner: RwLock::new(Inner::default()),
            cluster_name: cluster_name.unwrap_or_default(),
            name_labels: DEFAULT_NAME_LABELS.iter().map(|s| s.to_string()).collect(),
            namespace_labels: DEFAULT_NAMESPACE_LABELS.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Pod labels naming the service and its namespace; empty lists keep the defaults
    /// (`app.kubernetes.io/name`, `app.kubernetes.io/part-of`).
    pub fn with_service_labels(mut self, name: Vec<String>, namespace: Vec<String>) -> Self {
        if !name.is_empty() {
            self.name_labels = name;
        }
        if !namespace.is_empty() {
            self.namespace_labels = namespace;
        }
        self
    }

    /// `service.name` Kubernetes suggests for `meta` (annotation, label, owner).
    pub fn service_name(&self, meta: &K8sMeta) -> String {
        meta.service_name(&self.name_labels)
    }

    /// `service.namespace` Kubernetes suggests for `meta` (annotation, label, namespace).
    pub fn service_namespace(&self, meta: &K8sMeta) -> String {
        meta.service_namespace(&self.namespace_labels)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The metadata of a container: by its id, else (container not listed yet) by its pod.
    pub fn lookup(&self, c: &ContainerRef) -> Option<Arc<K8sMeta>> {
        let i = self.read();
        i.by_container.get(&c.container_id).or_else(|| c.pod_uid.as_ref().and_then(|u| i.by_pod.get(u))).cloned()
    }

    pub fn pod_count(&self) -> usize {
        self.read().pods.len()
    }

    pub fn replicaset_count(&self) -> usize {
        self.read().replicasets.len()
    }

    pub fn apply_pod(&self, pod: PodInfo) {
        let mut i = self.write();
        unindex(&mut i, &pod.uid);
        let uid = pod.uid.clone();
        i.pods.insert(uid.clone(), pod);
        self.index(&mut i, &uid);
    }

    pub fn delete_pod(&self, uid: &str) {
        let mut i = self.write();
        unindex(&mut i, uid);
        i.pods.remove(uid);
    }

    /// Replaces every pod (after a full list).
    pub fn replace_pods(&self, pods: Vec<PodInfo>) {
        let mut i = self.write();
        i.pods = pods.into_iter().map(|p| (p.uid.clone(), p)).collect();
        self.reindex_all(&mut i);
    }

    pub fn apply_replicaset(&self, key: (String, String), deployment: Option<String>) {
        let mut i = self.write();
        if i.replicasets.get(&key) == Some(&deployment) {
            return;
        }
        i.replicasets.insert(key.clone(), deployment);
        self.reindex_owned_by(&mut i, &key);
    }

    pub fn delete_replicaset(&self, key: &(String, String)) {
        let mut i = self.write();
        if i.replicasets.remove(key).is_some() {
            self.reindex_owned_by(&mut i, key);
        }
    }

    pub fn replace_replicasets(&self, all: Vec<((String, String), Option<String>)>) {
        let mut i = self.write();
        i.replicasets = all.into_iter().collect();
        self.reindex_all(&mut i);
    }

    fn reindex_owned_by(&self, i: &mut Inner, key: &(String, String)) {
        let uids: Vec<String> = i
            .pods
            .values()
            .filter(|p| p.namespace == key.0 && matches!(&p.owner, Some((k, n)) if k == "ReplicaSet" && *n == key.1))
            .map(|p| p.uid.clone())
            .collect();
        for uid in uids {
            unindex(i, &uid);
            self.index(i, &uid);
        }
    }

    fn reindex_all(&self, i: &mut Inner) {
        i.by_container.clear();
        i.by_pod.clear();
        let uids: Vec<String> = i.pods.keys().cloned().collect();
        for uid in uids {
            self.index(i, &uid);
        }
    }

    fn index(&self, i: &mut Inner, uid: &str) {
        let Some(pod) = i.pods.get(uid) else { return };
        let base = self.resolve(pod, &i.replicasets);
        let containers = pod.containers.clone();
        for (id, name) in containers {
            let meta = K8sMeta { container_name: name, ..base.clone() };
            i.by_container.insert(id, Arc::new(meta));
        }
        i.by_pod.insert(uid.to_string(), Arc::new(base));
    }

    fn resolve(&self, pod: &PodInfo, replicasets: &HashMap<(String, String), Option<String>>) -> K8sMeta {
        let mut owners = Owners::default();
        if let Some((kind, name)) = &pod.owner {
            match kind.as_str() {
                "ReplicaSet" => {
                    owners.replicaset = Some(name.clone());
                    owners.deployment = match replicasets.get(&(pod.namespace.clone(), name.clone())) {
                        Some(d) => d.clone(),
                        None => deployment_from_replicaset(name),
                    };
                }
                "StatefulSet" => owners.statefulset = Some(name.clone()),
                "DaemonSet" => owners.daemonset = Some(name.clone()),
                "Job" => {
                    owners.job = Some(name.clone());
                    owners.cronjob = cronjob_from_job(name);
                }
                "CronJob" => owners.cronjob = Some(name.clone()),
                _ => {}
            }
        }
        K8sMeta {
            namespace: pod.namespace.clone(),
            pod_name: pod.name.clone(),
            pod_uid: pod.uid.clone(),
            container_name: String::new(),
            node_name: pod.node_name.clone(),
            pod_start_time: pod.start_time.clone(),
            cluster_name: self.cluster_name.clone(),
            owners,
            labels: pod.labels.clone(),
            annotations: pod.annotations.clone(),
        }
    }
}

fn unindex(i: &mut Inner, uid: &str) {
    if let Some(old) = i.pods.get(uid) {
        for (id, _) in &old.containers {
            i.by_container.remove(id);
        }
    }
    i.by_pod.remove(uid);
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f7d5b6c8e9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c";

    fn pod(uid: &str, owner: Option<(&str, &str)>, id: &str) -> PodInfo {
        PodInfo {
            uid: uid.into(),
            namespace: "demo".into(),
            name: format!("pod-{uid}"),
            node_name: "node-a".into(),
            owner: owner.map(|(k, n)| (k.to_string(), n.to_string())),
            containers: vec![(id.to_string(), "app".into())],
            ..Default::default()
        }
    }

    fn cref(id: &str, uid: Option<&str>) -> ContainerRef {
        ContainerRef { container_id: id.into(), pod_uid: uid.map(String::from) }
    }

    #[test]
    fn deployment_through_the_replicaset() {
        let s = Store::new(Some("prod".into()));
        s.apply_pod(pod("u1", Some(("ReplicaSet", "backend-abc12")), ID));
        // RS not known yet: Beyla's name fallback.
        let m = s.lookup(&cref(ID, None)).unwrap();
        assert_eq!(m.owners.deployment.as_deref(), Some("backend"));
        assert_eq!((m.container_name.as_str(), m.cluster_name.as_str()), ("app", "prod"));
        s.apply_replicaset(("demo".into(), "backend-abc12".into()), Some("real-backend".into()));
        let m = s.lookup(&cref(ID, None)).unwrap();
        assert_eq!(m.owners.deployment.as_deref(), Some("real-backend"));
        assert_eq!(m.owner_name(), "real-backend");
        // An RS without a Deployment owner.
        s.apply_replicaset(("demo".into(), "backend-abc12".into()), None);
        assert_eq!(s.lookup(&cref(ID, None)).unwrap().owners.deployment, None);
    }

    #[test]
    fn lookup_by_pod_uid_when_the_container_is_not_listed() {
        let s = Store::new(None);
        s.apply_pod(pod("u1", Some(("StatefulSet", "db")), ID));
        let other = "b".repeat(64);
        let m = s.lookup(&cref(&other, Some("u1"))).unwrap();
        assert_eq!((m.pod_name.as_str(), m.container_name.as_str()), ("pod-u1", ""));
        assert_eq!(m.owners.statefulset.as_deref(), Some("db"));
        assert!(s.lookup(&cref(&other, Some("u2"))).is_none());
        assert!(s.lookup(&cref(&other, None)).is_none());
    }

    #[test]
    fn updates_deletes_and_relists() {
        let s = Store::new(None);
        let mut p = pod("u1", None, ID);
        s.apply_pod(p.clone());
        p.labels.insert("app.kubernetes.io/name".into(), "v2".into());
        s.apply_pod(p.clone());
        assert_eq!(
            s.lookup(&cref(ID, None)).unwrap().labels.get("app.kubernetes.io/name").map(String::as_str),
            Some("v2")
        );
        // A restarted container gets a new id; the old one is forgotten.
        let new_id = "c".repeat(64);
        p.containers = vec![(new_id.clone(), "app".into())];
        s.apply_pod(p);
        assert!(s.lookup(&cref(ID, None)).is_none());
        assert!(s.lookup(&cref(&new_id, None)).is_some());
        s.delete_pod("u1");
        assert!(s.lookup(&cref(&new_id, Some("u1"))).is_none());
        s.apply_pod(pod("u1", None, ID));
        s.replace_pods(vec![pod("u2", Some(("DaemonSet", "agent")), &new_id)]);
        assert!(s.lookup(&cref(ID, None)).is_none());
        assert_eq!(s.lookup(&cref(&new_id, None)).unwrap().owner_name(), "agent");
        assert_eq!(s.pod_count(), 1);
    }

    #[test]
    fn from_real_shaped_json() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "backend-7d4b9c8f5d-x2x7q", "namespace": "demo", "uid": "u-1",
                "labels": {"app": "backend"},
                "annotations": {"resource.opentelemetry.io/service.name": "be"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "backend-7d4b9c8f5d", "uid": "rs-1", "controller": true}]
            },
            "spec": {"nodeName": "node-a", "containers": [{"name": "backend", "image": "x"}]},
            "status": {
                "startTime": "2026-01-02T03:04:05Z",
                "containerStatuses": [{"name": "backend", "containerID": format!("containerd://{ID}"), "image": "x", "imageID": "", "ready": true, "restartCount": 0}]
            }
        }))
        .unwrap();
        let p = PodInfo::from_pod(&pod).unwrap();
        assert_eq!(p.owner, Some(("ReplicaSet".into(), "backend-7d4b9c8f5d".into())));
        assert_eq!(p.containers, vec![(ID.to_string(), "backend".to_string())]);
        assert_eq!(p.start_time, "2026-01-02T03:04:05Z");
        assert_eq!(p.node_name, "node-a");
        let rs: ReplicaSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "backend-7d4b9c8f5d", "namespace": "demo",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "backend", "uid": "d-1", "controller": true}]}
        }))
        .unwrap();
        assert_eq!(replicaset_owner(&rs), Some((("demo".into(), "backend-7d4b9c8f5d".into()), Some("backend".into()))));
    }
}
