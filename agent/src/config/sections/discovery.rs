//! `discovery` section: which processes to instrument.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::types::{de_list, de_null_default, de_pids, Duration, GlobPattern, Matcher, PortSet, RegexPattern};

/// One process selector. Keys inside one selector are ANDed; entries of a selector list are
/// ORed. `name` and `namespace` only name the service, they select nothing.
///
/// The pattern type `P` is [`Matcher`] (a glob) for `discovery.instrument` and friends, and
/// [`RegexPattern`] for the deprecated `discovery.services` lists; see [`Selector`] and
/// [`RegexSelector`].
///
/// Kubernetes keys (`k8s_*`) match the metadata of the process's pod and need
/// `attributes.kubernetes.enable`; without it (and always for `container_name`, not built
/// yet) a selector that sets any of them matches no process (the loader warns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, bound(serialize = "P: Serialize", deserialize = "P: Deserialize<'de>"))]
pub struct SelectorOf<P> {
    /// Service name given to matching processes (deprecated in Beyla). Default: unset.
    pub name: Option<String>,
    /// Service namespace given to matching processes (deprecated in Beyla). Default: unset.
    pub namespace: Option<String>,
    /// Ports the process listens on (`80,443,8000-8999`); any one matches. Default: unset.
    pub open_ports: Option<PortSet>,
    /// Pattern over the full executable path (`/proc/<pid>/exe`). Default: unset.
    pub exe_path: Option<P>,
    /// beyla-rs extension: pattern over the process arguments (`argv[1..]` joined by single
    /// spaces). Default: unset.
    pub cmd_args: Option<P>,
    /// Pattern over the detected language name, lowercase (`go`, `java`, `python`, `nodejs`,
    /// `ruby`, `dotnet`, `rust`, `cpp`, `php`). Default: unset.
    pub languages: Option<P>,
    /// Process ids; a list, a single number, or `1234,5678`. Default: empty (any).
    #[serde(deserialize_with = "de_pids")]
    pub target_pids: Vec<u32>,
    /// Only processes in another network namespace than the agent (containers). Default false.
    pub containers_only: bool,
    /// OCI container name. Accepted, not implemented yet. Default: unset.
    pub container_name: Option<P>,
    /// Kubernetes namespace (needs `attributes.kubernetes.enable`). Default: unset.
    pub k8s_namespace: Option<P>,
    /// Kubernetes Pod name (needs `attributes.kubernetes.enable`). Default: unset.
    pub k8s_pod_name: Option<P>,
    /// Kubernetes Deployment name (needs `attributes.kubernetes.enable`). Default: unset.
    pub k8s_deployment_name: Option<P>,
    /// Kubernetes ReplicaSet name (needs `attributes.kubernetes.enable`). Default: unset.
    pub k8s_replicaset_name: Option<P>,
    /// Kubernetes StatefulSet name (needs `attributes.kubernetes.enable`). Default: unset.
    pub k8s_statefulset_name: Option<P>,
    /// Kubernetes DaemonSet name (needs `attributes.kubernetes.enable`). Default: unset.
    pub k8s_daemonset_name: Option<P>,
    /// Kubernetes Pod owner name (needs `attributes.kubernetes.enable`). Default: unset.
    pub k8s_owner_name: Option<P>,
    /// Kubernetes container name (needs `attributes.kubernetes.enable`). Default: unset.
    pub k8s_container_name: Option<P>,
    /// Kubernetes Job name (needs `attributes.kubernetes.enable`). Default: unset.
    pub k8s_job_name: Option<P>,
    /// Kubernetes CronJob name (needs `attributes.kubernetes.enable`). Default: unset.
    pub k8s_cronjob_name: Option<P>,
    /// Kubernetes Pod labels (label -> pattern; the label must exist). Default: empty.
    #[serde(deserialize_with = "de_null_default")]
    pub k8s_pod_labels: BTreeMap<String, P>,
    /// Kubernetes Pod annotations (annotation -> pattern; the annotation must exist).
    /// Default: empty.
    #[serde(deserialize_with = "de_null_default")]
    pub k8s_pod_annotations: BTreeMap<String, P>,
    /// Signals to export for matching processes (`metrics`, `traces`); unset = all, empty = none.
    /// Accepted, not implemented yet.
    pub exports: Option<Vec<ExportSignal>>,
    /// Per-selector trace sampler. Accepted, not implemented yet. Default: unset.
    pub sampler: Option<Sampler>,
    /// Per-selector route patterns. Accepted, not implemented yet. Default: unset.
    pub routes: Option<SelectorRoutes>,
    /// Per-selector metric features. Accepted, not implemented yet. Default: unset.
    pub metrics: Option<SelectorMetrics>,
}

impl<P> Default for SelectorOf<P> {
    fn default() -> Self {
        SelectorOf {
            name: None,
            namespace: None,
            open_ports: None,
            exe_path: None,
            cmd_args: None,
            languages: None,
            target_pids: Vec::new(),
            containers_only: false,
            container_name: None,
            k8s_namespace: None,
            k8s_pod_name: None,
            k8s_deployment_name: None,
            k8s_replicaset_name: None,
            k8s_statefulset_name: None,
            k8s_daemonset_name: None,
            k8s_owner_name: None,
            k8s_container_name: None,
            k8s_job_name: None,
            k8s_cronjob_name: None,
            k8s_pod_labels: BTreeMap::new(),
            k8s_pod_annotations: BTreeMap::new(),
            exports: None,
            sampler: None,
            routes: None,
            metrics: None,
        }
    }
}

/// Selector of `discovery.instrument`, `exclude_instrument`, `default_exclude_instrument`,
/// `survey`, and the one built from the top-level keys: patterns are globs (or regexes when
/// converted from a [`RegexSelector`]).
pub type Selector = SelectorOf<Matcher>;

/// Selector of the deprecated `discovery.services`, `exclude_services` and
/// `default_exclude_services` lists: patterns are regular expressions.
pub type RegexSelector = SelectorOf<RegexPattern>;

impl<P> SelectorOf<P> {
    /// Converts every pattern with `f`.
    pub fn map_patterns<Q>(self, f: impl Fn(P) -> Q) -> SelectorOf<Q> {
        let map = |m: BTreeMap<String, P>| m.into_iter().map(|(k, v)| (k, f(v))).collect();
        SelectorOf {
            name: self.name,
            namespace: self.namespace,
            open_ports: self.open_ports,
            exe_path: self.exe_path.map(&f),
            cmd_args: self.cmd_args.map(&f),
            languages: self.languages.map(&f),
            target_pids: self.target_pids,
            containers_only: self.containers_only,
            container_name: self.container_name.map(&f),
            k8s_namespace: self.k8s_namespace.map(&f),
            k8s_pod_name: self.k8s_pod_name.map(&f),
            k8s_deployment_name: self.k8s_deployment_name.map(&f),
            k8s_replicaset_name: self.k8s_replicaset_name.map(&f),
            k8s_statefulset_name: self.k8s_statefulset_name.map(&f),
            k8s_daemonset_name: self.k8s_daemonset_name.map(&f),
            k8s_owner_name: self.k8s_owner_name.map(&f),
            k8s_container_name: self.k8s_container_name.map(&f),
            k8s_job_name: self.k8s_job_name.map(&f),
            k8s_cronjob_name: self.k8s_cronjob_name.map(&f),
            k8s_pod_labels: map(self.k8s_pod_labels),
            k8s_pod_annotations: map(self.k8s_pod_annotations),
            exports: self.exports,
            sampler: self.sampler,
            routes: self.routes,
            metrics: self.metrics,
        }
    }

    /// Whether any Kubernetes key (or `container_name`) is set: such a selector needs
    /// Kubernetes metadata (`container_name` is not built yet).
    pub fn uses_kubernetes(&self) -> bool {
        self.container_name.is_some()
            || self.k8s_namespace.is_some()
            || self.k8s_pod_name.is_some()
            || self.k8s_deployment_name.is_some()
            || self.k8s_replicaset_name.is_some()
            || self.k8s_statefulset_name.is_some()
            || self.k8s_daemonset_name.is_some()
            || self.k8s_owner_name.is_some()
            || self.k8s_container_name.is_some()
            || self.k8s_job_name.is_some()
            || self.k8s_cronjob_name.is_some()
            || !self.k8s_pod_labels.is_empty()
            || !self.k8s_pod_annotations.is_empty()
    }

    /// Keys set in this selector whose feature is not implemented yet, or (`k8s_*`) that
    /// need Kubernetes metadata.
    pub(crate) fn unimplemented_keys(&self) -> Vec<&'static str> {
        let k8s = [
            ("container_name", self.container_name.is_some()),
            ("k8s_namespace", self.k8s_namespace.is_some()),
            ("k8s_pod_name", self.k8s_pod_name.is_some()),
            ("k8s_deployment_name", self.k8s_deployment_name.is_some()),
            ("k8s_replicaset_name", self.k8s_replicaset_name.is_some()),
            ("k8s_statefulset_name", self.k8s_statefulset_name.is_some()),
            ("k8s_daemonset_name", self.k8s_daemonset_name.is_some()),
            ("k8s_owner_name", self.k8s_owner_name.is_some()),
            ("k8s_container_name", self.k8s_container_name.is_some()),
            ("k8s_job_name", self.k8s_job_name.is_some()),
            ("k8s_cronjob_name", self.k8s_cronjob_name.is_some()),
            ("k8s_pod_labels", !self.k8s_pod_labels.is_empty()),
            ("k8s_pod_annotations", !self.k8s_pod_annotations.is_empty()),
            ("exports", self.exports.is_some()),
            ("sampler", self.sampler.is_some()),
            ("routes", self.routes.is_some()),
            ("metrics", self.metrics.is_some()),
        ];
        k8s.into_iter().filter_map(|(name, set)| set.then_some(name)).collect()
    }

    /// Whether the selector sets at least one selection key (Beyla rejects entries without).
    pub fn has_criteria(&self) -> bool {
        self.open_ports.is_some()
            || self.exe_path.is_some()
            || self.cmd_args.is_some()
            || self.languages.is_some()
            || !self.target_pids.is_empty()
            || self.uses_kubernetes()
    }
}

impl From<RegexSelector> for Selector {
    fn from(s: RegexSelector) -> Self {
        s.map_patterns(Matcher::Regex)
    }
}

/// A telemetry signal for a selector's `exports` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportSignal {
    /// Metrics.
    Metrics,
    /// Traces.
    Traces,
}

/// Trace sampler (`otel_traces_export.sampler`, `discovery.instrument[].sampler`).
/// Accepted, not implemented yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sampler {
    /// Sampler name (`always_on`, `always_off`, `traceidratio`, `parentbased_*`). Default: unset.
    /// Env: `OTEL_TRACES_SAMPLER`.
    pub name: Option<String>,
    /// Sampler argument, e.g. the ratio `"0.1"`. Default: unset. Env: `OTEL_TRACES_SAMPLER_ARG`.
    pub arg: Option<serde_yaml::Value>,
}

/// Per-selector route patterns. Accepted, not implemented yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelectorRoutes {
    /// Patterns for incoming (server) requests. Default: unset.
    pub incoming: Option<serde_yaml::Value>,
    /// Patterns for outgoing (client) requests. Default: unset.
    pub outgoing: Option<serde_yaml::Value>,
}

/// Per-selector metric features. Accepted, not implemented yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelectorMetrics {
    /// Metric feature names. Default: unset (global features).
    pub features: Option<serde_yaml::Value>,
}

/// `discovery` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Discovery {
    /// Selectors of processes to instrument (glob patterns). Default: empty. Use
    /// [`Config::selectors`](crate::config::Config::selectors) for the effective list.
    #[serde(deserialize_with = "de_null_default")]
    pub instrument: Vec<Selector>,
    /// Selectors of processes never to instrument (glob patterns). Default: empty.
    #[serde(deserialize_with = "de_null_default")]
    pub exclude_instrument: Vec<Selector>,
    /// Built-in exclusions; set to `[]` to let the agent instrument itself and other telemetry
    /// agents. Default: one selector with `exe_path:`
    /// `{*beyla,*alloy,*ebpf-instrument,*otelcol,*otelcol-contrib,*otelcol-contrib[!/]*}`, and
    /// one with `k8s_namespace:` [`DEFAULT_EXCLUDE_K8S_NAMESPACES`] (Kubernetes system
    /// namespaces, effective with `attributes.kubernetes.enable`).
    #[serde(deserialize_with = "de_null_default")]
    pub default_exclude_instrument: Vec<Selector>,
    /// Deprecated: regex-based selectors of processes to instrument. Default: empty.
    #[serde(deserialize_with = "de_null_default")]
    pub services: Vec<RegexSelector>,
    /// Deprecated: regex-based selectors of processes never to instrument. Default: empty.
    #[serde(deserialize_with = "de_null_default")]
    pub exclude_services: Vec<RegexSelector>,
    /// Deprecated: regex-based built-in exclusions. Default: empty (beyla-rs applies
    /// `default_exclude_instrument` instead of Beyla's regex equivalent).
    #[serde(deserialize_with = "de_null_default")]
    pub default_exclude_services: Vec<RegexSelector>,
    /// Survey mode selectors (discover and report, never instrument). Accepted, not
    /// implemented yet. Default: empty.
    #[serde(deserialize_with = "de_null_default")]
    pub survey: Vec<Selector>,
    /// Interval between two scans of the running processes. Default `5s`.
    /// Env: `BEYLA_DISCOVERY_POLL_INTERVAL`.
    pub poll_interval: Duration,
    /// Minimum age of a process before it is considered (skips short-lived processes).
    /// Default `5s`. Env: `BEYLA_MIN_PROCESS_AGE`.
    pub min_process_age: Duration,
    /// Use generic (socket-level) probes for Go programs instead of Go-specific uprobes.
    /// Default false. Env: `BEYLA_SKIP_GO_SPECIFIC_TRACERS`.
    pub skip_go_specific_tracers: bool,
    /// Skip processes already instrumented with an OpenTelemetry SDK. Default true.
    /// Env: `BEYLA_EXCLUDE_OTEL_INSTRUMENTED_SERVICES`.
    pub exclude_otel_instrumented_services: bool,
    /// Skip span and service-graph metrics of processes already instrumented with an
    /// OpenTelemetry SDK. Default false.
    /// Env: `BEYLA_EXCLUDE_OTEL_INSTRUMENTED_SERVICES_SPAN_METRICS`.
    pub exclude_otel_instrumented_services_span_metrics: bool,
    /// Debugging: filter PIDs in user space only, not in the kernel. Default false.
    /// Env: `BEYLA_BPF_PID_FILTER_OFF`.
    pub bpf_pid_filter_off: bool,
    /// OTLP gRPC port assumed for processes that export OpenTelemetry data without saying
    /// where. Default 4317. Env: `BEYLA_DEFAULT_OTLP_GRPC_PORT`.
    pub default_otlp_grpc_port: u16,
    /// Timeout of route harvesting (reading routes from binaries). Accepted, not implemented
    /// yet. Default: unset (Beyla: `10s`).
    pub route_harvester_timeout: Option<Duration>,
    /// Route harvesters to disable (`java`, `go`, ...). Accepted, not implemented yet.
    /// Default: empty.
    #[serde(deserialize_with = "de_list")]
    pub disabled_route_harvesters: Vec<String>,
    /// Advanced route harvesting options. Accepted, not implemented yet. Default: unset.
    pub route_harvester_advanced: Option<serde_yaml::Value>,
    /// Path prefixes of system executables never instrumented. Accepted, not implemented yet.
    /// Default: unset.
    pub excluded_linux_system_paths: Option<Vec<String>>,
}

/// Beyla's default `exe_path` exclusion: the agent itself, Alloy, OBI and OTel collectors.
pub const DEFAULT_EXCLUDE_EXE_GLOB: &str =
    "{*beyla,*alloy,*ebpf-instrument,*otelcol,*otelcol-contrib,*otelcol-contrib[!/]*}";

/// Beyla's default `k8s_namespace` exclusion: Kubernetes system and observability namespaces
/// (only effective with `attributes.kubernetes.enable`).
pub const DEFAULT_EXCLUDE_K8S_NAMESPACES: &str =
    "{kube-system,kube-node-lease,kube-public,local-path-storage,grafana-alloy,cert-manager,monitoring,gke-*}";

impl Default for Discovery {
    fn default() -> Self {
        // The constants are valid globs (unit-tested); keep going without them otherwise.
        let mut default_exclude_instrument = Vec::new();
        if let Ok(glob) = GlobPattern::new(DEFAULT_EXCLUDE_EXE_GLOB) {
            default_exclude_instrument.push(Selector { exe_path: Some(Matcher::Glob(glob)), ..Selector::default() });
        }
        if let Ok(glob) = GlobPattern::new(DEFAULT_EXCLUDE_K8S_NAMESPACES) {
            default_exclude_instrument
                .push(Selector { k8s_namespace: Some(Matcher::Glob(glob)), ..Selector::default() });
        }
        Discovery {
            instrument: Vec::new(),
            exclude_instrument: Vec::new(),
            default_exclude_instrument,
            services: Vec::new(),
            exclude_services: Vec::new(),
            default_exclude_services: Vec::new(),
            survey: Vec::new(),
            poll_interval: Duration::from_secs(5),
            min_process_age: Duration::from_secs(5),
            skip_go_specific_tracers: false,
            exclude_otel_instrumented_services: true,
            exclude_otel_instrumented_services_span_metrics: false,
            bpf_pid_filter_off: false,
            default_otlp_grpc_port: 4317,
            route_harvester_timeout: None,
            disabled_route_harvesters: Vec::new(),
            route_harvester_advanced: None,
            excluded_linux_system_paths: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_exclusion_is_valid_and_matches_agents() {
        assert!(GlobPattern::new(DEFAULT_EXCLUDE_EXE_GLOB).is_ok());
        let d = Discovery::default();
        let glob = d.default_exclude_instrument[0].exe_path.as_ref().expect("exe_path");
        for exe in ["/usr/local/bin/beyla", "/bin/alloy", "/otelcol-contrib", "/usr/bin/otelcol"] {
            assert!(glob.is_match(exe), "{exe}");
        }
        assert!(!glob.is_match("/usr/bin/nginx"));
        let ns = d.default_exclude_instrument[1].k8s_namespace.as_ref().expect("k8s_namespace");
        for n in ["kube-system", "kube-node-lease", "gke-managed-system", "monitoring"] {
            assert!(ns.is_match(n), "{n}");
        }
        assert!(!ns.is_match("demo") && !ns.is_match("kube-systems"));
    }
}
