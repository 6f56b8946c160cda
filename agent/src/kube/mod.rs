//! Kubernetes metadata (`attributes.kubernetes`): which container and pod a process runs in
//! ([`cgroup`]), and the pods' metadata from the API server ([`store`], filled by watches of
//! pods and ReplicaSets through the `kube` client).
//!
//! Capture never waits on the API: [`start`] returns at once; the pipeline waits for the
//! first lists at most `informers_sync_timeout`, then runs undecorated until metadata
//! arrives. When the API is unreachable the watchers log once, retry with exponential
//! backoff (kube-runtime's default: 0.8 s doubling to 30 s, with jitter), and the store keeps
//! the last known metadata; decoration resumes with the next list.

pub mod cgroup;
pub mod meta;
pub mod store;

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

pub use cgroup::ContainerRef;
pub use meta::K8sMeta;
pub use store::{PodInfo, Store};

/// Errors setting up the Kubernetes client.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("reading kubeconfig {}", path.display())]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("no Kubernetes configuration (in-cluster service account or KUBECONFIG)")]
    Infer(#[source] kube::config::InferConfigError),
    #[error("creating the Kubernetes client")]
    Client(#[source] kube::Error),
}

/// What the Kubernetes side needs, from `attributes.kubernetes`.
#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// `kubeconfig_path`; unset: in-cluster service account, then `KUBECONFIG`/`~/.kube/config`.
    pub kubeconfig_path: Option<PathBuf>,
    /// `cluster_name` (`k8s.cluster.name`).
    pub cluster_name: Option<String>,
    /// `informers_sync_timeout`: longest wait for the first lists at start-up.
    pub sync_timeout: Duration,
    /// Only this node's pods (`meta_restrict_local_node`): the node name.
    pub local_node: Option<String>,
    /// Pod labels naming the service (`resource_labels["service.name"]`).
    pub name_labels: Vec<String>,
    /// Pod labels naming the service namespace (`resource_labels["service.namespace"]`).
    pub namespace_labels: Vec<String>,
}

impl KubeOptions {
    /// The Kubernetes options of `attributes.kubernetes`, or `None` when metadata is off:
    /// `enable: false`, or `autodetect` outside a cluster (no `KUBERNETES_SERVICE_HOST` in the
    /// environment and no `kubeconfig_path`).
    pub fn from_config(k: &crate::config::Kubernetes, in_cluster: bool) -> Option<KubeOptions> {
        use crate::config::KubeEnable;
        let on = match k.enable {
            KubeEnable::False => false,
            KubeEnable::True => true,
            KubeEnable::Autodetect => in_cluster || k.kubeconfig_path.is_some(),
        };
        if !on {
            return None;
        }
        let labels = |key: &str| k.resource_labels.as_ref().and_then(|m| m.get(key)).cloned().unwrap_or_default();
        Some(KubeOptions {
            kubeconfig_path: k.kubeconfig_path.as_ref().map(std::path::PathBuf::from),
            cluster_name: k.cluster_name.clone().filter(|c| !c.is_empty()),
            sync_timeout: k.informers_sync_timeout.as_std(),
            local_node: k.meta_restrict_local_node.then(local_node_name),
            name_labels: labels("service.name"),
            namespace_labels: labels("service.namespace"),
        })
    }
}

/// The node this agent runs on: `NODE_NAME` (the DaemonSet sets it from `spec.nodeName`),
/// else the host name.
pub fn local_node_name() -> String {
    std::env::var("NODE_NAME").ok().filter(|n| !n.trim().is_empty()).unwrap_or_else(crate::kernel::local_hostname)
}

type Labels = Vec<(&'static str, String)>;

/// The metadata source's own metrics, registered on `/internal/metrics` by the pipeline.
#[derive(Clone, Default)]
pub struct KubeStats {
    /// `beyla_kube_api_errors_total{kind}`: failed list/watch attempts, by resource kind.
    pub api_errors: Family<Labels, Counter>,
    /// `beyla_kube_objects{kind}`: objects known, by resource kind.
    pub objects: Family<Labels, Gauge>,
}

impl KubeStats {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "beyla_kube_api_errors",
            "Failed Kubernetes API list or watch attempts, by resource kind",
            self.api_errors.clone(),
        );
        registry.register("beyla_kube_objects", "Kubernetes objects known, by resource kind", self.objects.clone());
    }

    fn kind(kind: &'static str) -> Labels {
        vec![("kind", kind.to_string())]
    }
}

/// A running metadata source.
pub struct Kube {
    pub store: Arc<Store>,
    pub stats: KubeStats,
    /// Number of resource kinds whose first list completed.
    synced: watch::Receiver<usize>,
    pub tasks: Vec<JoinHandle<()>>,
}

/// Resource kinds watched (pods, ReplicaSets).
const KINDS: usize = 2;

impl Kube {
    /// Waits until every watch has listed once, or `timeout`. Returns whether it synced.
    pub async fn wait_synced(&mut self, timeout: Duration) -> bool {
        let wait = self.synced.wait_for(|n| *n >= KINDS);
        matches!(tokio::time::timeout(timeout, wait).await, Ok(Ok(_)))
    }
}

async fn client(opts: &KubeOptions) -> Result<kube::Client, KubeError> {
    let config = match &opts.kubeconfig_path {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|source| KubeError::Kubeconfig { path: path.clone(), source })?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|source| KubeError::Kubeconfig { path: path.clone(), source })?
        }
        // In a pod: its service account. Elsewhere: KUBECONFIG or ~/.kube/config.
        None => match kube::Config::incluster() {
            Ok(c) => c,
            Err(_) => kube::Config::infer().await.map_err(KubeError::Infer)?,
        },
    };
    kube::Client::try_from(config).map_err(KubeError::Client)
}

/// Starts the watches in the background; never blocks on the API.
pub fn start(opts: KubeOptions) -> Kube {
    let store = Arc::new(
        Store::new(opts.cluster_name.clone())
            .with_service_labels(opts.name_labels.clone(), opts.namespace_labels.clone()),
    );
    let (tx, rx) = watch::channel(0usize);
    let tx = Arc::new(tx);
    let s = store.clone();
    let stats = KubeStats::default();
    let st = stats.clone();
    let task = tokio::spawn(async move {
        let client = match client(&opts).await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %crate::telemetry::error_chain(&e), "Kubernetes metadata disabled: no usable API configuration.");
                return;
            }
        };
        let mut pods_cfg = watcher::Config::default();
        if let Some(node) = &opts.local_node {
            pods_cfg = pods_cfg.fields(&format!("spec.nodeName={node}"));
        }
        info!(node = opts.local_node.as_deref().unwrap_or("*"), "Watching Kubernetes pods and ReplicaSets.");
        tokio::join!(
            watch_pods(Api::<Pod>::all(client.clone()), pods_cfg, s.clone(), tx.clone(), st.clone()),
            watch_replicasets(Api::<ReplicaSet>::all(client), s, tx, st),
        );
    });
    Kube { store, stats, synced: rx, tasks: vec![task] }
}

/// Drives one watch: logs the first failure of an outage and the recovery, counts the
/// first completed list, and hands events to `on`.
async fn drive<K>(
    api: Api<K>,
    cfg: watcher::Config,
    kind: &'static str,
    synced: Arc<watch::Sender<usize>>,
    stats: &KubeStats,
    mut on: impl FnMut(Event<K>),
) where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut stream = watcher::watcher(api, cfg).default_backoff().boxed();
    let mut healthy = true;
    let mut listed = false;
    while let Some(item) = stream.next().await {
        match item {
            Ok(ev) => {
                // `Init` is emitted before the list request is even sent: not a sign of life.
                if !healthy && !matches!(ev, Event::Init) {
                    info!(kind, "Kubernetes API reachable again; metadata decoration resumes.");
                    healthy = true;
                }
                let done = matches!(ev, Event::InitDone);
                on(ev);
                if done && !listed {
                    listed = true;
                    synced.send_modify(|n| *n += 1);
                    debug!(kind, "Kubernetes objects listed.");
                }
            }
            Err(e) => {
                stats.api_errors.get_or_create(&KubeStats::kind(kind)).inc();
                if healthy {
                    warn!(kind, error = %crate::telemetry::error_chain(&e), "Kubernetes API unreachable; capture goes on with the last known metadata, retrying with backoff.");
                    healthy = false;
                } else {
                    debug!(kind, error = %crate::telemetry::error_chain(&e), "Kubernetes API still unreachable.");
                }
            }
        }
    }
}

async fn watch_pods(
    api: Api<Pod>,
    cfg: watcher::Config,
    store: Arc<Store>,
    synced: Arc<watch::Sender<usize>>,
    stats: KubeStats,
) {
    let mut relist: Vec<PodInfo> = Vec::new();
    let count = stats.objects.get_or_create(&KubeStats::kind("pods")).clone();
    drive(api, cfg, "pods", synced, &stats, |ev| {
        on_pod(&store, &mut relist, ev);
        count.set(store.pod_count() as i64);
    })
    .await
}

fn on_pod(store: &Store, relist: &mut Vec<PodInfo>, ev: Event<Pod>) {
    match ev {
        Event::Init => relist.clear(),
        Event::InitApply(p) => relist.extend(PodInfo::from_pod(&p)),
        Event::InitDone => store.replace_pods(std::mem::take(relist)),
        Event::Apply(p) => {
            if let Some(p) = PodInfo::from_pod(&p) {
                store.apply_pod(p);
            }
        }
        Event::Delete(p) => {
            if let Some(uid) = p.metadata.uid.as_deref() {
                store.delete_pod(uid);
            }
        }
    }
}

async fn watch_replicasets(
    api: Api<ReplicaSet>,
    store: Arc<Store>,
    synced: Arc<watch::Sender<usize>>,
    stats: KubeStats,
) {
    let mut relist = Vec::new();
    let count = stats.objects.get_or_create(&KubeStats::kind("replicasets")).clone();
    drive(api, watcher::Config::default(), "replicasets", synced, &stats, |ev| {
        on_replicaset(&store, &mut relist, ev);
        count.set(store.replicaset_count() as i64);
    })
    .await
}

fn on_replicaset(store: &Store, relist: &mut Vec<((String, String), Option<String>)>, ev: Event<ReplicaSet>) {
    match ev {
        Event::Init => relist.clear(),
        Event::InitApply(rs) => relist.extend(store::replicaset_owner(&rs)),
        Event::InitDone => store.replace_replicasets(std::mem::take(relist)),
        Event::Apply(rs) => {
            if let Some((key, dep)) = store::replicaset_owner(&rs) {
                store.apply_replicaset(key, dep);
            }
        }
        Event::Delete(rs) => {
            if let Some((key, _)) = store::replicaset_owner(&rs) {
                store.delete_replicaset(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kubeconfig: &str) -> KubeOptions {
        KubeOptions {
            kubeconfig_path: Some(kubeconfig.into()),
            cluster_name: None,
            sync_timeout: Duration::from_secs(30),
            local_node: None,
            name_labels: vec![],
            namespace_labels: vec![],
        }
    }

    #[tokio::test]
    async fn unusable_configuration_gives_up_without_waiting() {
        let mut k = start(opts("/nonexistent/kubeconfig"));
        let t = std::time::Instant::now();
        assert!(!k.wait_synced(Duration::from_secs(30)).await);
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(k.store.pod_count(), 0);
    }

    #[tokio::test]
    async fn unreachable_api_waits_at_most_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let path = dir.path().join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\n\
                 contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user: {{}}\n"
            ),
        )
        .unwrap();
        let mut k = start(opts(path.to_str().unwrap()));
        let t = std::time::Instant::now();
        assert!(!k.wait_synced(Duration::from_millis(500)).await);
        assert!(t.elapsed() < Duration::from_secs(3));
        for task in &k.tasks {
            task.abort();
        }
    }
}

#[cfg(test)]
mod options_tests {
    use super::*;
    use crate::config::{KubeEnable, Kubernetes};
    use std::time::Duration;

    #[test]
    fn kube_enable_and_autodetect() {
        let mut k = Kubernetes::default();
        assert!(KubeOptions::from_config(&k, true).is_none());
        k.enable = KubeEnable::True;
        assert!(KubeOptions::from_config(&k, false).is_some());
        k.enable = KubeEnable::Autodetect;
        assert!(KubeOptions::from_config(&k, false).is_none());
        assert!(KubeOptions::from_config(&k, true).is_some());
        k.kubeconfig_path = Some("/k".into());
        k.cluster_name = Some("prod".into());
        k.resource_labels = Some([("service.name".to_string(), vec!["app".to_string()])].into_iter().collect());
        let o = KubeOptions::from_config(&k, false).unwrap();
        assert_eq!(o.kubeconfig_path.as_deref(), Some(std::path::Path::new("/k")));
        assert_eq!(o.cluster_name.as_deref(), Some("prod"));
        assert_eq!(o.name_labels, ["app"]);
        assert!(o.namespace_labels.is_empty());
        assert_eq!(o.sync_timeout, Duration::from_secs(30));
        assert!(o.local_node.is_none());
        k.meta_restrict_local_node = true;
        assert!(KubeOptions::from_config(&k, false).unwrap().local_node.is_some());
    }
}
