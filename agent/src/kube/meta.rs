//! The Kubernetes metadata of one container, the attributes it becomes, and the service
//! identity Kubernetes suggests for it.

use std::collections::BTreeMap;

/// The workloads that own a pod, resolved through its ReplicaSet or Job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owners {
    pub deployment: Option<String>,
    pub replicaset: Option<String>,
    pub statefulset: Option<String>,
    pub daemonset: Option<String>,
    pub cronjob: Option<String>,
    pub job: Option<String>,
}

/// Metadata of the container a process runs in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct K8sMeta {
    pub namespace: String,
    pub pod_name: String,
    pub pod_uid: String,
    /// Empty while the pod's status does not list the container yet.
    pub container_name: String,
    pub node_name: String,
    /// `status.startTime` (RFC 3339), or empty.
    pub pod_start_time: String,
    /// `attributes.kubernetes.cluster_name`, or empty.
    pub cluster_name: String,
    pub owners: Owners,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// The attributes of [`K8sMeta::attributes`]: OTel name, Prometheus label name.
pub const ATTRIBUTES: &[(&str, &str)] = &[
    ("k8s.namespace.name", "k8s_namespace_name"),
    ("k8s.pod.name", "k8s_pod_name"),
    ("k8s.pod.uid", "k8s_pod_uid"),
    ("k8s.pod.start_time", "k8s_pod_start_time"),
    ("k8s.container.name", "k8s_container_name"),
    ("k8s.deployment.name", "k8s_deployment_name"),
    ("k8s.replicaset.name", "k8s_replicaset_name"),
    ("k8s.statefulset.name", "k8s_statefulset_name"),
    ("k8s.daemonset.name", "k8s_daemonset_name"),
    ("k8s.cronjob.name", "k8s_cronjob_name"),
    ("k8s.job.name", "k8s_job_name"),
    ("k8s.node.name", "k8s_node_name"),
    ("k8s.cluster.name", "k8s_cluster_name"),
    ("k8s.owner.name", "k8s_owner_name"),
];

/// Annotations naming the service (OpenTelemetry semantic conventions).
pub const SERVICE_NAME_ANNOTATION: &str = "resource.opentelemetry.io/service.name";
pub const SERVICE_NAMESPACE_ANNOTATION: &str = "resource.opentelemetry.io/service.namespace";
/// Beyla's default `attributes.kubernetes.resource_labels`.
pub const DEFAULT_NAME_LABELS: &[&str] = &["app.kubernetes.io/name"];
pub const DEFAULT_NAMESPACE_LABELS: &[&str] = &["app.kubernetes.io/part-of"];

fn non_empty(s: &str) -> Option<&str> {
    let s = s.trim();
    (!s.is_empty()).then_some(s)
}

impl K8sMeta {
    /// The topmost owner: deployment > replicaset > statefulset > daemonset > cronjob > job,
    /// else the pod itself.
    pub fn owner_name(&self) -> &str {
        let o = &self.owners;
        [&o.deployment, &o.replicaset, &o.statefulset, &o.daemonset, &o.cronjob, &o.job]
            .into_iter()
            .find_map(|n| n.as_deref())
            .unwrap_or(&self.pod_name)
    }

    /// Value of one attribute of [`ATTRIBUTES`] by OTel name; empty when unknown.
    pub fn attribute(&self, name: &str) -> &str {
        let o = &self.owners;
        fn opt(v: &Option<String>) -> &str {
            v.as_deref().unwrap_or_default()
        }
        match name {
            "k8s.namespace.name" => &self.namespace,
            "k8s.pod.name" => &self.pod_name,
            "k8s.pod.uid" => &self.pod_uid,
            "k8s.pod.start_time" => &self.pod_start_time,
            "k8s.container.name" => &self.container_name,
            "k8s.deployment.name" => opt(&o.deployment),
            "k8s.replicaset.name" => opt(&o.replicaset),
            "k8s.statefulset.name" => opt(&o.statefulset),
            "k8s.daemonset.name" => opt(&o.daemonset),
            "k8s.cronjob.name" => opt(&o.cronjob),
            "k8s.job.name" => opt(&o.job),
            "k8s.node.name" => &self.node_name,
            "k8s.cluster.name" => &self.cluster_name,
            "k8s.owner.name" => self.owner_name(),
            _ => "",
        }
    }

    /// The non-empty attributes, in [`ATTRIBUTES`] order: (OTel name, Prometheus name, value).
    pub fn attributes(&self) -> impl Iterator<Item = (&'static str, &'static str, &str)> {
        ATTRIBUTES.iter().map(|(otel, prom)| (*otel, *prom, self.attribute(otel))).filter(|(_, _, v)| !v.is_empty())
    }

    /// `service.name` from Kubernetes: the annotation, then the first of `name_labels`
    /// present, then the owner (deployment > ... > pod).
    pub fn service_name(&self, name_labels: &[String]) -> String {
        self.annotations
            .get(SERVICE_NAME_ANNOTATION)
            .and_then(|v| non_empty(v))
            .or_else(|| name_labels.iter().find_map(|l| self.labels.get(l).and_then(|v| non_empty(v))))
            .unwrap_or_else(|| self.owner_name())
            .to_string()
    }

    /// `service.namespace` from Kubernetes: the annotation, then the first of
    /// `namespace_labels` present, then the pod's namespace.
    pub fn service_namespace(&self, namespace_labels: &[String]) -> String {
        self.annotations
            .get(SERVICE_NAMESPACE_ANNOTATION)
            .and_then(|v| non_empty(v))
            .or_else(|| namespace_labels.iter().find_map(|l| self.labels.get(l).and_then(|v| non_empty(v))))
            .unwrap_or(&self.namespace)
            .to_string()
    }
}

/// Deployment name from the name of a ReplicaSet it owns (`backend-7d4b9c8f5d` -> `backend`),
/// for ReplicaSets not (yet) known: Beyla's fallback.
pub fn deployment_from_replicaset(rs: &str) -> Option<String> {
    let (name, hash) = rs.rsplit_once('-')?;
    (!name.is_empty() && !hash.is_empty() && hash.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| name.to_string())
}

/// CronJob name from the name of a Job it created (`report-28934520` -> `report`).
pub fn cronjob_from_job(job: &str) -> Option<String> {
    let (name, stamp) = job.rsplit_once('-')?;
    (!name.is_empty() && stamp.len() >= 8 && stamp.bytes().all(|b| b.is_ascii_digit())).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> K8sMeta {
        K8sMeta {
            namespace: "demo".into(),
            pod_name: "backend-7d4b9c8f5d-x2x7q".into(),
            pod_uid: "u".into(),
            container_name: "app".into(),
            node_name: "node-a".into(),
            ..Default::default()
        }
    }

    fn labels() -> Vec<String> {
        DEFAULT_NAME_LABELS.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn owner_precedence() {
        let mut m = meta();
        assert_eq!(m.owner_name(), "backend-7d4b9c8f5d-x2x7q");
        m.owners.job = Some("report-28934520".into());
        assert_eq!(m.owner_name(), "report-28934520");
        m.owners.cronjob = Some("report".into());
        assert_eq!(m.owner_name(), "report");
        m.owners.daemonset = Some("ds".into());
        assert_eq!(m.owner_name(), "ds");
        m.owners.statefulset = Some("sts".into());
        assert_eq!(m.owner_name(), "sts");
        m.owners.replicaset = Some("backend-7d4b9c8f5d".into());
        assert_eq!(m.owner_name(), "backend-7d4b9c8f5d");
        m.owners.deployment = Some("backend".into());
        assert_eq!(m.owner_name(), "backend");
    }

    #[test]
    fn service_name_annotation_then_label_then_owner() {
        let mut m = meta();
        m.owners.replicaset = Some("backend-7d4b9c8f5d".into());
        m.owners.deployment = Some("backend".into());
        assert_eq!(m.service_name(&labels()), "backend");
        m.labels.insert("app.kubernetes.io/name".into(), "backend-api".into());
        assert_eq!(m.service_name(&labels()), "backend-api");
        m.annotations.insert(SERVICE_NAME_ANNOTATION.into(), "payments".into());
        assert_eq!(m.service_name(&labels()), "payments");
        // Blank values do not count.
        m.annotations.insert(SERVICE_NAME_ANNOTATION.into(), " ".into());
        assert_eq!(m.service_name(&labels()), "backend-api");
        // Configured labels replace the default ones.
        m.labels.insert("team-app".into(), "custom".into());
        assert_eq!(m.service_name(&["team-app".into()]), "custom");
        assert_eq!(m.service_name(&["missing".into()]), "backend");
    }

    #[test]
    fn service_namespace_annotation_then_label_then_namespace() {
        let ns = || DEFAULT_NAMESPACE_LABELS.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut m = meta();
        assert_eq!(m.service_namespace(&ns()), "demo");
        m.labels.insert("app.kubernetes.io/part-of".into(), "shop".into());
        assert_eq!(m.service_namespace(&ns()), "shop");
        m.annotations.insert(SERVICE_NAMESPACE_ANNOTATION.into(), "payments".into());
        assert_eq!(m.service_namespace(&ns()), "payments");
    }

    #[test]
    fn attributes_skip_empty_values() {
        let mut m = meta();
        m.owners.replicaset = Some("backend-7d4b9c8f5d".into());
        m.owners.deployment = Some("backend".into());
        m.cluster_name = "prod".into();
        let got: Vec<(&str, &str)> = m.attributes().map(|(_, p, v)| (p, v)).collect();
        assert_eq!(
            got,
            [
                ("k8s_namespace_name", "demo"),
                ("k8s_pod_name", "backend-7d4b9c8f5d-x2x7q"),
                ("k8s_pod_uid", "u"),
                ("k8s_container_name", "app"),
                ("k8s_deployment_name", "backend"),
                ("k8s_replicaset_name", "backend-7d4b9c8f5d"),
                ("k8s_node_name", "node-a"),
                ("k8s_cluster_name", "prod"),
                ("k8s_owner_name", "backend"),
            ]
        );
        for (otel, prom) in ATTRIBUTES {
            assert_eq!(otel.replace('.', "_"), *prom);
        }
    }

    #[test]
    fn name_fallbacks() {
        assert_eq!(deployment_from_replicaset("backend-7d4b9c8f5d").as_deref(), Some("backend"));
        assert_eq!(deployment_from_replicaset("my-app-5f6b7").as_deref(), Some("my-app"));
        assert_eq!(deployment_from_replicaset("plain"), None);
        assert_eq!(cronjob_from_job("report-28934520").as_deref(), Some("report"));
        assert_eq!(cronjob_from_job("migrate-db"), None);
    }
}
