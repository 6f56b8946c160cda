//! Builds the discovery [`Selection`] from the configuration's selectors.
use super::selector::{exe_glob, Criteria, Selection};
use super::DiscoverError;
use crate::config::{Config, Matcher, Selector};

/// Language names `languages` patterns are matched against.
const LANGUAGES: &[&str] = &["go", "java", "python", "nodejs", "ruby", "dotnet", "rust", "cpp", "php"];

pub fn selection(cfg: &Config) -> Result<Selection, DiscoverError> {
    let include = cfg.selectors().iter().map(criteria).collect::<Result<_, _>>()?;
    let exclude = cfg.exclusions().iter().map(criteria).collect::<Result<_, _>>()?;
    Ok(Selection { include, exclude })
}

fn criteria(s: &Selector) -> Result<Criteria, DiscoverError> {
    let k8s = s.k8s_namespace.is_some()
        || s.k8s_pod_name.is_some()
        || s.k8s_deployment_name.is_some()
        || s.k8s_replicaset_name.is_some()
        || s.k8s_statefulset_name.is_some()
        || s.k8s_daemonset_name.is_some()
        || s.k8s_owner_name.is_some()
        || s.k8s_container_name.is_some()
        || s.k8s_job_name.is_some()
        || s.k8s_cronjob_name.is_some()
        || !s.k8s_pod_labels.is_empty()
        || !s.k8s_pod_annotations.is_empty()
        || s.container_name.is_some();
    if k8s {
        // Kubernetes metadata is not available yet: such a selector matches nothing (the
        // configuration loader already warned), rather than everything its other keys match.
        return Ok(Criteria::default());
    }
    let mut c = Criteria::default();
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
