//! Process selection criteria (`discovery.instrument`, `exclude_instrument`, `open_port`,
//! `auto_target_exe`, ...), with Beyla's semantics:
//!
//! - keys inside one [`Criteria`] are ANDed, entries of a list are ORed;
//! - a criteria without any selection key (`exe_path`, `executable_name`, `open_ports`,
//!   `cmd_args`, `target_pids`, `languages`) matches nothing; `name`/`namespace` only name
//!   the service and are not selection keys;
//! - `exe_path` is a glob over the **full executable path** (`/proc/<pid>/exe`), and `*`
//!   also matches `/`: `*node*` and `*/python3*` both match `/usr/bin/python3.11`'s kin.
//!   Beyla compiles it with `gobwas/glob` without separators (OBI
//!   `pkg/appolly/services/attr_glob.go`, matched by `Matcher.matchByExecutable` against
//!   `ProcessInfo.ExePath`). Build it with [`exe_glob`].
//! - the deprecated `executable_name` regex is matched (unanchored) against the full path;
//! - `open_ports` matches if any listening port of the process is in any range;
//! - `cmd_args` is a glob over the arguments (`argv[1..]`) joined by single spaces;
//! - `target_pids` matches the pid; `languages` matches [`detect_language`] (ORed,
//!   case-insensitive);
//! - the `k8s_*` keys match the metadata of the process's pod ([`K8sCriteria`]); a process
//!   whose pod is not known yet does not match, and is evaluated again on the next scan.
//!
//! A process is selected by the first include criteria that matches, unless any exclude
//! criteria matches it.

use std::ops::RangeInclusive;

use globset::{GlobBuilder, GlobMatcher};
use regex::Regex;

use super::proc::ProcessInfo;
use super::DiscoverError;
use crate::config::Matcher;
use crate::kube::K8sMeta;

/// One selector entry.
#[derive(Debug, Clone, Default)]
pub struct Criteria {
    /// Service name given to matching processes (not a selection key).
    pub name: Option<String>,
    /// Service namespace given to matching processes (not a selection key).
    pub namespace: Option<String>,
    /// Listening port ranges; empty means any.
    pub open_ports: Vec<RangeInclusive<u16>>,
    /// Glob over the full executable path.
    pub exe_glob: Option<GlobMatcher>,
    /// Regex over the full executable path (deprecated `executable_name`).
    pub exe_regex: Option<Regex>,
    /// Glob over the space-joined arguments.
    pub cmd_args_glob: Option<GlobMatcher>,
    pub target_pids: Vec<u32>,
    /// Lowercase language names: go, java, python, nodejs, ruby, dotnet, rust, cpp, php.
    pub languages: Vec<String>,
    /// `k8s_*` keys, matched against the metadata of the process's pod.
    pub k8s: K8sCriteria,
}

/// The Kubernetes keys of a selector (`k8s_namespace`, `k8s_deployment_name`, ...). Each set
/// key must match the corresponding attribute of the process's pod ([`K8sMeta::attribute`]);
/// a process whose pod is not known (yet) matches none of them.
#[derive(Debug, Clone, Default)]
pub struct K8sCriteria {
    /// (OTel attribute name, pattern): `k8s.namespace.name`, `k8s.pod.name`, ...
    pub attributes: Vec<(&'static str, Matcher)>,
    /// Pod label -> pattern; the label must exist.
    pub pod_labels: Vec<(String, Matcher)>,
    /// Pod annotation -> pattern; the annotation must exist.
    pub pod_annotations: Vec<(String, Matcher)>,
}

impl K8sCriteria {
    pub fn is_set(&self) -> bool {
        !self.attributes.is_empty() || !self.pod_labels.is_empty() || !self.pod_annotations.is_empty()
    }

    pub fn matches(&self, m: &K8sMeta) -> bool {
        let map = |pairs: &[(String, Matcher)], values: &std::collections::BTreeMap<String, String>| {
            pairs.iter().all(|(k, pat)| values.get(k).is_some_and(|v| pat.is_match(v)))
        };
        self.attributes.iter().all(|(name, pat)| pat.is_match(m.attribute(name)))
            && map(&self.pod_labels, &m.labels)
            && map(&self.pod_annotations, &m.annotations)
    }
}

/// Compiles a glob the way Beyla does: `*` and `?` also match `/`.
pub fn exe_glob(pattern: &str) -> Result<GlobMatcher, DiscoverError> {
    GlobBuilder::new(pattern)
        .literal_separator(false)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|source| DiscoverError::InvalidGlob { pattern: pattern.to_string(), source })
}

impl Criteria {
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }
    pub fn open_ports(mut self, ranges: impl IntoIterator<Item = RangeInclusive<u16>>) -> Self {
        self.open_ports.extend(ranges);
        self
    }
    pub fn exe_glob(mut self, glob: GlobMatcher) -> Self {
        self.exe_glob = Some(glob);
        self
    }
    /// Compiles and sets the `exe_path` glob.
    pub fn exe_path(self, pattern: &str) -> Result<Self, DiscoverError> {
        Ok(self.exe_glob(exe_glob(pattern)?))
    }
    pub fn exe_regex(mut self, re: Regex) -> Self {
        self.exe_regex = Some(re);
        self
    }
    /// Compiles and sets the deprecated `executable_name` regex.
    pub fn executable_name(self, pattern: &str) -> Result<Self, DiscoverError> {
        let re = Regex::new(pattern)
            .map_err(|source| DiscoverError::InvalidRegex { pattern: pattern.to_string(), source })?;
        Ok(self.exe_regex(re))
    }
    pub fn cmd_args_glob(mut self, glob: GlobMatcher) -> Self {
        self.cmd_args_glob = Some(glob);
        self
    }
    /// Compiles and sets the `cmd_args` glob.
    pub fn cmd_args(self, pattern: &str) -> Result<Self, DiscoverError> {
        Ok(self.cmd_args_glob(exe_glob(pattern)?))
    }
    pub fn target_pids(mut self, pids: impl IntoIterator<Item = u32>) -> Self {
        self.target_pids.extend(pids);
        self
    }
    pub fn languages<S: Into<String>>(mut self, langs: impl IntoIterator<Item = S>) -> Self {
        self.languages.extend(langs.into_iter().map(|l| l.into().to_ascii_lowercase()));
        self
    }

    /// True if at least one selection key is set.
    pub fn has_keys(&self) -> bool {
        !self.open_ports.is_empty()
            || self.exe_glob.is_some()
            || self.exe_regex.is_some()
            || self.cmd_args_glob.is_some()
            || !self.target_pids.is_empty()
            || !self.languages.is_empty()
            || self.k8s.is_set()
    }

    /// All set keys match (and at least one is set).
    pub fn matches(&self, p: &ProcessInfo) -> bool {
        if !self.has_keys() {
            return false;
        }
        if let Some(g) = &self.exe_glob {
            if !g.is_match(&p.exe) {
                return false;
            }
        }
        if let Some(re) = &self.exe_regex {
            if !p.exe.to_str().is_some_and(|exe| re.is_match(exe)) {
                return false;
            }
        }
        if !self.open_ports.is_empty()
            && !p.listen_ports.iter().any(|port| self.open_ports.iter().any(|r| r.contains(port)))
        {
            return false;
        }
        if let Some(g) = &self.cmd_args_glob {
            let args = p.cmdline.get(1..).unwrap_or_default().join(" ");
            if !g.is_match(&args) {
                return false;
            }
        }
        if !self.target_pids.is_empty() && !self.target_pids.contains(&p.pid) {
            return false;
        }
        if !self.languages.is_empty() {
            let Some(lang) = detect_language(p) else {
                return false;
            };
            if !self.languages.iter().any(|l| l.eq_ignore_ascii_case(lang)) {
                return false;
            }
        }
        if self.k8s.is_set() && !p.k8s.as_deref().is_some_and(|m| self.k8s.matches(m)) {
            return false;
        }
        true
    }
}

/// Include and exclude lists.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub include: Vec<Criteria>,
    pub exclude: Vec<Criteria>,
}

impl Selection {
    /// Index of the first include criteria matching `p`, unless an exclude criteria matches.
    pub fn select(&self, p: &ProcessInfo) -> Option<usize> {
        let idx = self.include.iter().position(|c| c.matches(p))?;
        (!self.is_excluded(p)).then_some(idx)
    }

    pub fn is_excluded(&self, p: &ProcessInfo) -> bool {
        self.exclude.iter().any(|c| c.matches(p))
    }

    /// True if any criteria needs listening ports (scans can skip fd reading otherwise).
    pub fn needs_ports(&self) -> bool {
        self.include.iter().chain(&self.exclude).any(|c| !c.open_ports.is_empty())
    }
}

/// The process's language: as detected when it was read (`ProcessInfo::language`, which also
/// knows Go binaries by their ELF sections), else from the executable and command name.
/// `None` when neither says (Rust and C++ binaries).
pub fn detect_language(p: &ProcessInfo) -> Option<&'static str> {
    if p.language.is_some() {
        return p.language;
    }
    let exe = p.exe.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    language_of(if exe.is_empty() { p.comm.as_str() } else { exe })
}

/// [`detect_language`] from an executable's file name alone.
pub fn language_of(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    let starts = |prefixes: &[&str]| prefixes.iter().any(|pre| name.starts_with(pre));
    if name == "java" || starts(&["java-"]) {
        Some("java")
    } else if starts(&["python", "pypy"]) {
        Some("python")
    } else if name == "node" || name == "nodejs" || starts(&["node-", "node2", "node1"]) {
        Some("nodejs")
    } else if starts(&["ruby"]) {
        Some("ruby")
    } else if name == "dotnet" {
        Some("dotnet")
    } else if starts(&["php"]) {
        Some("php")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn proc_(pid: u32, exe: &str, cmd: &[&str], ports: &[u16]) -> ProcessInfo {
        ProcessInfo {
            pid,
            ppid: 1,
            exe: exe.into(),
            comm: exe.rsplit('/').next().unwrap_or_default().into(),
            cmdline: cmd.iter().map(|s| s.to_string()).collect(),
            start_time: 1,
            listen_ports: ports.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn empty_criteria_matches_nothing() {
        let p = proc_(10, "/usr/bin/python3", &["python3"], &[8080]);
        assert!(!Criteria::default().matches(&p));
        assert!(!Criteria::default().name("x").namespace("y").matches(&p));
        assert_eq!(Selection { include: vec![Criteria::default()], exclude: vec![] }.select(&p), None);
    }

    #[test]
    fn exe_glob_matches_full_path_across_slashes() {
        let py = proc_(10, "/usr/bin/python3.11", &["python3"], &[]);
        let node = proc_(11, "/opt/node/bin/node", &["node"], &[]);
        let c = Criteria::default().exe_path("*/python3*").unwrap();
        assert!(c.matches(&py));
        assert!(!c.matches(&node));
        assert!(Criteria::default().exe_path("*node*").unwrap().matches(&node));
        // Full-path semantics: a bare basename does not match.
        assert!(!Criteria::default().exe_path("node").unwrap().matches(&node));
        assert!(Criteria::default().exe_path("/opt/**/node").unwrap().matches(&node));
        assert!(Criteria::default().exe_path("*").unwrap().matches(&node));
        assert!(matches!(exe_glob("a[").unwrap_err(), DiscoverError::InvalidGlob { .. }));
    }

    #[test]
    fn exe_regex_is_unanchored_over_full_path() {
        let p = proc_(10, "/srv/bin/orders-api", &["orders-api"], &[]);
        assert!(Criteria::default().executable_name("orders").unwrap().matches(&p));
        assert!(!Criteria::default().executable_name("^orders").unwrap().matches(&p));
        assert!(Criteria::default().executable_name("invalid(").is_err());
    }

    #[test]
    fn ports_any_in_any_range() {
        let p = proc_(10, "/app", &["app"], &[22, 8081]);
        assert!(Criteria::default().open_ports([8080..=8089]).matches(&p));
        assert!(Criteria::default().open_ports([80..=80, 8081..=8081]).matches(&p));
        assert!(!Criteria::default().open_ports([80..=80, 443..=443]).matches(&p));
        assert!(!Criteria::default().open_ports([80..=80]).matches(&proc_(1, "/a", &["a"], &[])));
    }

    #[test]
    fn keys_are_anded() {
        let p = proc_(10, "/usr/bin/java", &["java", "-jar", "shop.jar"], &[8080]);
        let both = Criteria::default().exe_path("*java").unwrap().open_ports([8080..=8080]);
        assert!(both.matches(&p));
        let wrong_port = Criteria::default().exe_path("*java").unwrap().open_ports([9090..=9090]);
        assert!(!wrong_port.matches(&p));
        let pid = Criteria::default().exe_path("*java").unwrap().target_pids([11]);
        assert!(!pid.matches(&p));
        assert!(Criteria::default().target_pids([9, 10]).matches(&p));
    }

    #[test]
    fn cmd_args_and_languages() {
        let p = proc_(10, "/usr/bin/python3.12", &["python3", "-m", "uvicorn", "main:app"], &[]);
        assert!(Criteria::default().cmd_args("*uvicorn*").unwrap().matches(&p));
        assert!(!Criteria::default().cmd_args("python3*").unwrap().matches(&p));
        assert!(Criteria::default().languages(["Python"]).matches(&p));
        assert!(Criteria::default().languages(["go", "python"]).matches(&p));
        assert!(!Criteria::default().languages(["java"]).matches(&p));
        let go = proc_(11, "/usr/local/bin/server", &["server"], &[]);
        assert!(!Criteria::default().languages(["go"]).matches(&go), "not known as Go by its name");
        let go = ProcessInfo { language: Some("go"), ..go };
        assert!(Criteria::default().languages(["go"]).matches(&go), "known as Go by its sections");
        // This test's own executable (Rust) has no `.go.buildinfo`.
        let me = std::env::current_exe().unwrap();
        assert_eq!(super::super::proc::read_language(Path::new("/proc"), std::process::id(), &me), None);
    }

    #[test]
    fn language_detection() {
        let lang = |exe: &str| detect_language(&proc_(1, exe, &["x"], &[]));
        assert_eq!(lang("/usr/lib/jvm/java-17/bin/java"), Some("java"));
        assert_eq!(lang("/usr/bin/python3.11"), Some("python"));
        assert_eq!(lang("/usr/bin/node"), Some("nodejs"));
        assert_eq!(lang("/usr/bin/ruby3.2"), Some("ruby"));
        assert_eq!(lang("/usr/share/dotnet/dotnet"), Some("dotnet"));
        assert_eq!(lang("/usr/sbin/php-fpm8.2"), Some("php"));
        assert_eq!(lang("/usr/bin/nodemon"), None);
        assert_eq!(lang("/srv/app"), None);
    }

    fn glob(p: &str) -> Matcher {
        Matcher::Glob(crate::config::GlobPattern::new(p).unwrap())
    }

    #[test]
    fn k8s_keys_are_anded_and_need_a_known_pod() {
        use std::sync::Arc;
        let mut p = proc_(10, "/app", &["app"], &[]);
        let c = Criteria {
            k8s: K8sCriteria {
                attributes: vec![("k8s.namespace.name", glob("demo")), ("k8s.deployment.name", glob("back*"))],
                pod_labels: vec![("tier".into(), glob("api"))],
                pod_annotations: vec![],
            },
            ..Default::default()
        };
        assert!(c.has_keys());
        assert!(!c.matches(&p), "no pod known yet");
        let mut meta = K8sMeta { namespace: "demo".into(), pod_name: "backend-1".into(), ..Default::default() };
        meta.owners.deployment = Some("backend".into());
        meta.labels.insert("tier".into(), "api".into());
        p.k8s = Some(Arc::new(meta.clone()));
        assert!(c.matches(&p));
        let mut other = meta.clone();
        other.owners.deployment = Some("frontend".into());
        p.k8s = Some(Arc::new(other));
        assert!(!c.matches(&p), "namespace AND deployment");
        let mut unlabelled = meta.clone();
        unlabelled.labels.clear();
        p.k8s = Some(Arc::new(unlabelled));
        assert!(!c.matches(&p), "a missing label does not match");
        let mut no_deploy = meta;
        no_deploy.owners.deployment = None;
        p.k8s = Some(Arc::new(no_deploy));
        assert!(!c.matches(&p));
        // With other keys, all must match.
        let mut both = c.clone().exe_path("/other").unwrap();
        both.k8s.pod_labels.clear();
        assert!(!both.matches(&p));
    }

    #[test]
    fn first_include_wins_and_exclude_overrides() {
        let sel = Selection {
            include: vec![
                Criteria::default().open_ports([9000..=9999]),
                Criteria::default().exe_path("*python*").unwrap(),
                Criteria::default().open_ports([8000..=8999]),
            ],
            exclude: vec![Criteria::default().cmd_args("*--internal*").unwrap()],
        };
        let p = proc_(10, "/usr/bin/python3", &["python3", "app.py"], &[8080]);
        assert_eq!(sel.select(&p), Some(1));
        let q = proc_(11, "/usr/bin/python3", &["python3", "app.py"], &[9090]);
        assert_eq!(sel.select(&q), Some(0));
        let excluded = proc_(12, "/usr/bin/python3", &["python3", "x.py", "--internal"], &[9090]);
        assert_eq!(sel.select(&excluded), None);
        assert!(sel.needs_ports());
        let no_ports = Selection { include: vec![Criteria::default().target_pids([1])], exclude: vec![] };
        assert!(!no_ports.needs_ports());
    }
}
