//! `attributes`, `name_resolver` and `filter` sections.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::config::types::{de_list, de_null_default, Duration};

/// `attributes.kubernetes.enable`: `true`, `false` or `autodetect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KubeEnable {
    /// Never decorate (default, as in Beyla).
    #[default]
    False,
    /// Always decorate.
    True,
    /// Decorate when running inside Kubernetes.
    Autodetect,
}

impl Serialize for KubeEnable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            KubeEnable::False => s.serialize_bool(false),
            KubeEnable::True => s.serialize_bool(true),
            KubeEnable::Autodetect => s.serialize_str("autodetect"),
        }
    }
}

impl<'de> Deserialize<'de> for KubeEnable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KubeEnable;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`true`, `false` or `autodetect`")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KubeEnable, E> {
                Ok(if v { KubeEnable::True } else { KubeEnable::False })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KubeEnable, E> {
                match v.trim().to_ascii_lowercase().as_str() {
                    "true" => Ok(KubeEnable::True),
                    "false" => Ok(KubeEnable::False),
                    "autodetect" => Ok(KubeEnable::Autodetect),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `attributes.kubernetes` section: Kubernetes metadata decoration and `k8s_*` selectors
/// (see `docs/kubernetes.md`). `enable`, `kubeconfig_path`, `informers_sync_timeout`,
/// `meta_restrict_local_node`, `cluster_name` and `resource_labels` are implemented; the
/// other keys are accepted with a warning and ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Kubernetes {
    /// Decorate with Kubernetes metadata: `true`, `false`, or `autodetect` (on when
    /// `KUBERNETES_SERVICE_HOST` is set or `kubeconfig_path` is given). Default `false`.
    /// Env: `BEYLA_KUBE_METADATA_ENABLE`.
    pub enable: KubeEnable,
    /// Kubeconfig path. Default: unset (in-cluster config, then `KUBECONFIG`).
    pub kubeconfig_path: Option<String>,
    /// Longest wait for the first metadata lists at start-up; capture then starts without
    /// metadata, which is added when it arrives. Default `30s`.
    /// Env: `BEYLA_KUBE_INFORMERS_SYNC_TIMEOUT`.
    pub informers_sync_timeout: Duration,
    /// Full metadata resynchronisation period. Accepted, ignored (watches are continuous).
    /// Default `30m`.
    /// Env: `BEYLA_KUBE_INFORMERS_RESYNC_PERIOD`.
    pub informers_resync_period: Duration,
    /// Informers to disable (`node`, `service`). Accepted, ignored. Default: empty.
    /// Env: `BEYLA_KUBE_DISABLE_INFORMERS`.
    #[serde(deserialize_with = "de_list")]
    pub disable_informers: Vec<String>,
    /// Only keep metadata of the local node (`NODE_NAME`, else the host name). Default false.
    /// Env: `BEYLA_KUBE_META_RESTRICT_LOCAL_NODE`.
    pub meta_restrict_local_node: bool,
    /// Cluster name (`k8s.cluster.name`). Default: unset (no attribute; Beyla detects it from
    /// cloud metadata). Env: `BEYLA_KUBE_CLUSTER_NAME`.
    pub cluster_name: Option<String>,
    /// Pod labels/annotations that name a service (`service.name: [label, ...]`).
    /// Default: unset (Beyla's `app.kubernetes.io/name`, `app.kubernetes.io/part-of`).
    pub resource_labels: Option<BTreeMap<String, Vec<String>>>,
    /// Older name of `resource_labels`. Accepted, ignored. Default: unset.
    pub meta_source_labels: Option<serde_yaml::Value>,
    /// Go template for service names. Accepted, ignored. Default: unset.
    /// Env: `BEYLA_SERVICE_NAME_TEMPLATE`.
    pub service_name_template: Option<String>,
    /// Address of a shared metadata cache service. Accepted, ignored. Default: unset.
    pub meta_cache_address: Option<String>,
    /// Initial reconnection interval to the API server. Accepted, ignored (the client backs
    /// off from 0.8 s to 30 s). Default: unset.
    pub reconnect_initial_interval: Option<Duration>,
}

impl Default for Kubernetes {
    fn default() -> Self {
        Kubernetes {
            enable: KubeEnable::False,
            kubeconfig_path: None,
            informers_sync_timeout: Duration::from_secs(30),
            informers_resync_period: Duration::from_secs(1800),
            disable_informers: Vec::new(),
            meta_restrict_local_node: false,
            cluster_name: None,
            resource_labels: None,
            meta_source_labels: None,
            service_name_template: None,
            meta_cache_address: None,
            reconnect_initial_interval: None,
        }
    }
}

/// `attributes.instance_id` section: how the `instance` / `service.instance.id` value is built
/// (`<hostname>:<pid>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InstanceId {
    /// Resolve the local hostname through DNS. Default true.
    /// Env: `BEYLA_HOSTNAME_DNS_RESOLUTION`.
    pub dns: bool,
    /// Use this host part instead of resolving it. Default: unset. Env: `BEYLA_HOSTNAME`.
    pub override_hostname: Option<String>,
}

impl Default for InstanceId {
    fn default() -> Self {
        InstanceId { dns: true, override_hostname: None }
    }
}

/// `attributes.host_id` section. Accepted, not implemented yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostId {
    /// Reported `host.id`. Default: unset (detected). Env: `BEYLA_HOST_ID`.
    #[serde(rename = "override")]
    pub override_id: Option<String>,
    /// Timeout of cloud-provider host id lookups. Default: unset (Beyla `500ms`).
    pub fetch_timeout: Option<Duration>,
}

/// Include/exclude lists of one `attributes.select` entry (attribute names or globs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InclusionLists {
    /// Attributes to report; unset reports the default set. Default: unset.
    pub include: Option<Vec<String>>,
    /// Attributes to remove from `include` or from the default set. Default: empty.
    #[serde(deserialize_with = "de_null_default")]
    pub exclude: Vec<String>,
}

/// `attributes.sensitive_query_params` section. Accepted, not implemented yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SensitiveQueryParams {
    /// Parameter names to add to the redacted set. Default: empty.
    #[serde(deserialize_with = "de_null_default")]
    pub add: Vec<String>,
    /// Parameter names to remove from the redacted set. Default: empty.
    #[serde(deserialize_with = "de_null_default")]
    pub remove: Vec<String>,
}

/// `attributes` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Attributes {
    /// Kubernetes metadata decoration.
    pub kubernetes: Kubernetes,
    /// Instance id composition. Implemented.
    pub instance_id: InstanceId,
    /// Per-metric attribute selection (metric name or glob -> include/exclude lists), applied
    /// by `aggregate::definitions::AttributeSelection`. Default: empty.
    #[serde(deserialize_with = "de_null_default")]
    pub select: BTreeMap<String, InclusionLists>,
    /// Host id. Accepted, not implemented yet.
    pub host_id: HostId,
    /// Extra attributes per attribute group (`k8s_app_meta: [k8s.app.version]`).
    /// Accepted, not implemented yet. Default: empty.
    #[serde(deserialize_with = "de_null_default")]
    pub extra_group_attributes: BTreeMap<String, Vec<String>>,
    /// Query parameters whose values are redacted. Accepted, not implemented yet.
    pub sensitive_query_params: SensitiveQueryParams,
    /// Name for unresolved peer/host addresses. Accepted, not implemented yet. Default: unset
    /// (Beyla `unresolved`). Env: `BEYLA_RENAME_UNRESOLVED_HOSTS`.
    pub rename_unresolved_hosts: Option<String>,
    /// Same, for outgoing requests. Default: unset (Beyla `outgoing`).
    /// Env: `BEYLA_RENAME_UNRESOLVED_HOSTS_OUTGOING`.
    pub rename_unresolved_hosts_outgoing: Option<String>,
    /// Same, for incoming requests. Default: unset (Beyla `incoming`).
    /// Env: `BEYLA_RENAME_UNRESOLVED_HOSTS_INCOMING`.
    pub rename_unresolved_hosts_incoming: Option<String>,
    /// Span-name cardinality limit per service for span metrics. Accepted, not implemented
    /// yet. Default: unset (Beyla 100). Env: `BEYLA_METRIC_SPAN_NAMES_LIMIT`.
    pub metric_span_names_limit: Option<i64>,
    /// Metadata lookup retries. Accepted, not implemented yet. Default: unset.
    pub metadata_retry: Option<serde_yaml::Value>,
}

/// `name_resolver` section. Accepted, not implemented yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NameResolver {
    /// Sources for reverse lookups (`k8s`, `dns`, `rdns`). Default: unset (Beyla `[k8s]`).
    /// Env: `BEYLA_NAME_RESOLVER_SOURCES`.
    pub sources: Option<Vec<String>>,
    /// Cache entries. Default: unset (Beyla 1024). Env: `BEYLA_NAME_RESOLVER_CACHE_LEN`.
    pub cache_len: Option<u32>,
    /// Cache entry lifetime. Default: unset (Beyla `5m`). Env: `BEYLA_NAME_RESOLVER_CACHE_TTL`.
    pub cache_expiry: Option<Duration>,
}

/// One attribute filter: `match` or `not_match` a glob.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttributeFilter {
    /// Keep only values matching this glob. Default: unset.
    #[serde(rename = "match")]
    pub matches: Option<String>,
    /// Drop values matching this glob. Default: unset.
    pub not_match: Option<String>,
}

/// `filter` section: keep or drop metrics by attribute value. Accepted, not implemented yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Filter {
    /// Filters of application metrics and traces (attribute -> filter). Default: unset.
    pub application: Option<BTreeMap<String, AttributeFilter>>,
    /// Filters of network metrics (attribute -> filter). Default: unset.
    pub network: Option<BTreeMap<String, AttributeFilter>>,
}
