//! Builds the discovery [`Selection`] from the configuration's selectors.
use super::selector::{exe_glob, Criteria, K8sCriteria, Selection};
use super::DiscoverError;
use crate::config::{Config, Matcher, Selector};

/// Language names `languages` patterns are matched against.
const LANGUAGES: &[&str] = &["go", "java", "python", "nodejs", "ruby", "dotnet", "rust", "cpp", "php"];

/// The selection of `cfg`; `kube` says whether Kubernetes metadata is enabled (without it,
/// selectors using `k8s_*` keys match nothing).
pub fn selection(cfg: &Config, kube: bool) -> Result<Selection, DiscoverError> {
    let include = cfg.selectors().iter().map(|s| criteria(s, kube)).collect::<Result<_, _>>()?;
    let exclude = cfg.exclusions().iter().map(|s| criteria(s, kube)).collect::<Result<_, _>>()?;
    Ok(Selection { include, exclude })
}

fn k8s_criteria(s: &Selector) -> K8sCriteria {
    let keys = [
        ("k8s.namespace.name", &s.k8s_namespace),
        ("k8s.pod.name", &s.k8s_pod_name),
        ("k8s.deployment.name", &s.k8s_deployment_name),
        ("k8s.replicaset.name", &s.k8s_replicaset_name),
        ("k8s.statefulset.name", &s.k8s_statefulset_name),
        ("k8s.daemonset.name", &s.k8s_daemonset_name),
        ("k8s.owner.name", &s.k8s_owner_name),
        ("k8s.container.name", &s.k8s_container_name),
        ("k8s.job.name", &s.k8s_job_name),
        ("k8s.cronjob.name", &s.k8s_cronjob_name),
    ];
    let pairs =
        |m: &std::collections::BTreeMap<String, Matcher>| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    K8sCriteria {
        attributes: keys.into_iter().filter_map(|(name, m)| m.clone().map(|m| (name, m))).collect(),
        pod_labels: pairs(&s.k8s_pod_labels),
        pod_annotations: pairs(&s.k8s_pod_annotations),
    }
}

fn criteria(s: &Selector, kube: bool) -> Result<Criteria, DiscoverError> {
    // `container_name` (OCI, outside Kubernetes) is not built yet, and `k8s_*` keys need
    // Kubernetes metadata: such a selector matches nothing (the configuration loader
    // warned), rather than everything its other keys match.
    if s.container_name.is_some() || (s.uses_kubernetes() && !kube) {
        return Ok(Criteria::default());
    }
    let mut c = Criteria { k8s: k8s_criteria(s), ..Criteria::default() };
    if let Some(n) = &s.name {
        c = c.name(n.clone());
    }
    if let Some(n) = &s.namespace {
        c = c.namespace(n.clone());
    }
    if let Some(ports) = &s.open_ports {
        c = c.open_ports(ports.ranges().iter().map(|r| r.start..=r.end));
    }
    match &s.exe_path {
        Some(Matcher::Glob(g)) => c = c.exe_glob(exe_glob(g.as_str())?),
        Some(Matcher::Regex(r)) => c = c.exe_regex(r.regex().clone()),
        None => {}
    }
    match &s.cmd_args {
        Some(Matcher::Glob(g)) => c = c.cmd_args(g.as_str())?,
        Some(Matcher::Regex(r)) => {
            // Only the deprecated regex selectors get here, and Beyla has no cmd_args there.
            tracing::warn!(pattern = r.as_str(), "cmd_args regex is not supported; the selector matches nothing.");
            return Ok(Criteria::default());
        }
        None => {}
    }
    if let Some(m) = &s.languages {
        let langs: Vec<&str> = LANGUAGES.iter().copied().filter(|l| m.is_match(l)).collect();
        // A pattern that names no known language must still select nothing.
        c = c.languages(if langs.is_empty() { vec!["none"] } else { langs });
    }
    if !s.target_pids.is_empty() {
        c = c.target_pids(s.target_pids.iter().copied());
    }
    Ok(c)
}
