//! Stage `discover`: finds the processes to instrument and names their services.
//!
//! [`spawn`] polls the proc filesystem ([`scan::Scanner`]), matches processes against a
//! [`Selection`] and sends only the differences as [`ProcessEvent`] batches. Rules:
//!
//! - the agent never instruments itself nor its descendants;
//! - a descendant of a matched process running the same executable (gunicorn workers, Node
//!   cluster) is matched with that ancestor's criteria and service name/namespace, even if it
//!   does not satisfy the selector itself (Beyla only checks the direct parent, any exe);
//! - once matched, a process stays matched until it exits or execs another executable
//!   (Beyla's `ProcessHistory`), so it is not re-read on every poll;
//! - processes younger than `min_process_age` are left for a later poll;
//! - a pid reused by another process (different start time) is reported gone, then new;
//! - with a [`ChangeCounter`] (the kernel counts forks, execs, exits and listening sockets) a
//!   poll reads `/proc` only after the counter moved ([`Scanner::poll`]).

#[cfg(test)]
mod fake;
pub mod from_config;
pub mod golang;
pub mod proc;
pub mod scan;
pub mod selector;
pub mod service;
pub mod sockdiag;
pub mod tls;

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tracing::{debug, error, info, warn};

pub use from_config::selection;
pub use proc::{OtelEnv, ProcessInfo};
pub use scan::Scanner;
pub use selector::{Criteria, Selection};
pub use service::{identify, ServiceId};

/// Errors of the discover stage.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("reading {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("malformed {}: {reason}", path.display())]
    Malformed { path: PathBuf, reason: &'static str },
    #[error("invalid glob {pattern:?}")]
    InvalidGlob {
        pattern: String,
        #[source]
        source: globset::Error,
    },
    #[error("invalid regex {pattern:?}")]
    InvalidRegex {
        pattern: String,
        #[source]
        source: regex::Error,
    },
}

impl DiscoverError {
    /// The process (or the file) no longer exists: `ENOENT` or `ESRCH`.
    pub fn is_vanished(&self) -> bool {
        match self {
            DiscoverError::Io { source, .. } => {
                source.kind() == io::ErrorKind::NotFound || source.raw_os_error() == Some(libc::ESRCH)
            }
            _ => false,
        }
    }
}

/// Reads a counter that grows whenever something a scan could see changes: a process forks,
/// execs or exits, or a TCP socket starts or stops listening (the process family's
/// `proc_changes` map). `None` when it cannot be read: every poll then scans.
#[derive(Clone)]
pub struct ChangeCounter(Arc<dyn Fn() -> Option<u64> + Send + Sync>);

impl ChangeCounter {
    pub fn new(read: impl Fn() -> Option<u64> + Send + Sync + 'static) -> Self {
        ChangeCounter(Arc::new(read))
    }

    pub fn read(&self) -> Option<u64> {
        (self.0)()
    }
}

impl std::fmt::Debug for ChangeCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChangeCounter")
    }
}

/// A process selected for instrumentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessMatch {
    pub info: ProcessInfo,
    pub service: ServiceId,
    /// Index into [`Selection::include`] of the criteria that selected it (or its ancestor).
    pub criteria_index: usize,
}

impl ProcessMatch {
    /// Same process: pid, start time and executable.
    fn same_process(&self, other: &ProcessMatch) -> bool {
        self.info.pid == other.info.pid
            && self.info.start_time == other.info.start_time
            && self.info.exe == other.info.exe
    }

    /// Same process, but what it is reported as changed (Kubernetes metadata or service).
    fn relabelled(&self, other: &ProcessMatch) -> bool {
        self.info.k8s != other.info.k8s || self.service != other.service
    }
}

// Events are rare (process starts and exits), so the size difference does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessEvent {
    Instrumented(ProcessMatch),
    /// An instrumented process's Kubernetes metadata or service identity changed.
    Updated(ProcessMatch),
    Gone {
        pid: u32,
    },
}

#[derive(Debug, Clone)]
pub struct DiscoverOptions {
    /// Proc filesystem root. Default `/proc`.
    pub proc_root: PathBuf,
    /// Time between scans. Default 5s (`discovery.poll_interval`).
    pub poll_interval: Duration,
    /// Processes younger than this wait for a later scan. Default 5s
    /// (`discovery.min_process_age`); zero disables it.
    pub min_process_age: Duration,
    /// Global `service_name` / `BEYLA_SERVICE_NAME`.
    pub global_name: Option<String>,
    /// Global `service_namespace` / `BEYLA_SERVICE_NAMESPACE`.
    pub global_namespace: Option<String>,
    /// Host name used in instance ids (`hostname:pid`).
    pub hostname: String,
    /// The agent's own pid; it and its descendants are never instrumented.
    pub self_pid: u32,
    /// Kubernetes metadata (`attributes.kubernetes.enable`): when set, each process's
    /// container is read from its cgroup and its pod's metadata feeds the `k8s_*` selectors
    /// and the service name.
    pub kube: Option<std::sync::Arc<crate::kube::Store>>,
    /// Lets a poll skip its scan while nothing changed; `None`: scan on every poll.
    pub changes: Option<ChangeCounter>,
}

impl DiscoverOptions {
    /// `discovery.poll_interval`, `discovery.min_process_age`, `service_name` and
    /// `service_namespace`; the rest keeps its defaults (the pipeline adds the Kubernetes store
    /// and the kernel's change counter).
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        let d = &cfg.discovery;
        DiscoverOptions {
            poll_interval: d.poll_interval.as_std(),
            min_process_age: d.min_process_age.as_std(),
            global_name: cfg.service_name.clone(),
            global_namespace: cfg.service_namespace.clone(),
            ..DiscoverOptions::default()
        }
    }
}

impl Default for DiscoverOptions {
    fn default() -> Self {
        DiscoverOptions {
            proc_root: PathBuf::from("/proc"),
            poll_interval: Duration::from_secs(5),
            min_process_age: Duration::from_secs(5),
            global_name: None,
            global_namespace: None,
            hostname: crate::kernel::local_hostname(),
            self_pid: std::process::id(),
            kube: None,
            changes: None,
        }
    }
}

/// One full, stateless scan.
pub fn scan_once(sel: &Selection, opts: &DiscoverOptions) -> Result<Vec<ProcessMatch>, DiscoverError> {
    Scanner::new(sel.clone(), opts.clone()).scan()
}

/// Events turning `prev` into `now`: `Gone` first (in `prev` order), then `Instrumented`
/// and `Updated` (in `now` order). A pid whose start time or executable changed is gone and
/// new; one whose Kubernetes metadata or service changed is updated.
pub fn diff(prev: &[ProcessMatch], now: &[ProcessMatch]) -> Vec<ProcessEvent> {
    let prev_by: HashMap<u32, &ProcessMatch> = prev.iter().map(|m| (m.info.pid, m)).collect();
    let now_by: HashMap<u32, &ProcessMatch> = now.iter().map(|m| (m.info.pid, m)).collect();
    let mut events = Vec::new();
    for p in prev {
        if !now_by.get(&p.info.pid).is_some_and(|n| n.same_process(p)) {
            events.push(ProcessEvent::Gone { pid: p.info.pid });
        }
    }
    for n in now {
        match prev_by.get(&n.info.pid) {
            Some(p) if p.same_process(n) => {
                if p.relabelled(n) {
                    events.push(ProcessEvent::Updated(n.clone()));
                }
            }
            _ => events.push(ProcessEvent::Instrumented(n.clone())),
        }
    }
    events
}

/// "Process instrumented." is the attach stage's to say, once the kernel traces the process.
fn log_events(events: &[ProcessEvent]) {
    for ev in events {
        match ev {
            ProcessEvent::Instrumented(m) => debug!(
                pid = m.info.pid,
                exe = %m.info.exe.display(),
                criteria = m.criteria_index,
                "Process selected."
            ),
            ProcessEvent::Updated(m) => info!(
                pid = m.info.pid,
                service = %m.service.name,
                namespace = %m.service.namespace,
                pod = m.info.k8s.as_ref().map(|k| k.pod_name.as_str()).unwrap_or(""),
                "Instrumented process metadata updated."
            ),
            ProcessEvent::Gone { pid } => info!(pid, "Instrumented process gone."),
        }
    }
}

/// Runs the stage: scans at once, then polls every `poll_interval` ([`Scanner::poll`]), and
/// sends the differences. Ends when `tx` is closed.
pub fn spawn(sel: Selection, opts: DiscoverOptions, tx: mpsc::Sender<Vec<ProcessEvent>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(opts.poll_interval.max(Duration::from_millis(10)));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut scanner = Some(Scanner::new(sel, opts));
        let mut prev: Vec<ProcessMatch> = Vec::new();
        loop {
            ticker.tick().await;
            if tx.is_closed() {
                debug!("Discover output closed.");
                return;
            }
            let Some(mut s) = scanner.take() else { return };
            let joined = tokio::task::spawn_blocking(move || {
                let r = s.poll();
                (s, r)
            })
            .await;
            let now = match joined {
                Ok((s, result)) => {
                    scanner = Some(s);
                    match result {
                        Ok(now) => now,
                        Err(e) => {
                            warn!(error = %e, "Process scan failed.");
                            continue;
                        }
                    }
                }
                Err(e) => {
                    error!(error = %e, "Process scan task failed.");
                    return;
                }
            };
            let events = diff(&prev, &now);
            prev = now;
            if events.is_empty() {
                continue;
            }
            log_events(&events);
            if tx.send(events).await.is_err() {
                debug!("Discover output closed.");
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::fake::FakeProc;
    use super::*;

    fn m(pid: u32, start: u64, exe: &str) -> ProcessMatch {
        ProcessMatch {
            info: ProcessInfo { pid, start_time: start, exe: exe.into(), ..Default::default() },
            service: ServiceId::default(),
            criteria_index: 0,
        }
    }

    fn gone(pid: u32) -> ProcessEvent {
        ProcessEvent::Gone { pid }
    }

    #[test]
    fn diff_new_gone_and_unchanged() {
        assert!(diff(&[], &[]).is_empty());
        let a = m(1, 10, "/a");
        let b = m(2, 20, "/b");
        let c = m(3, 30, "/c");
        assert_eq!(diff(&[], std::slice::from_ref(&a)), [ProcessEvent::Instrumented(a.clone())]);
        assert!(diff(&[a.clone(), b.clone()], &[b.clone(), a.clone()]).is_empty());
        assert_eq!(
            diff(&[a.clone(), b.clone()], &[b.clone(), c.clone()]),
            [gone(1), ProcessEvent::Instrumented(c.clone())]
        );
        assert_eq!(diff(&[a, b], &[]), [gone(1), gone(2)]);
    }

    #[test]
    fn diff_pid_reuse_is_gone_then_new() {
        let old = m(7, 100, "/a");
        let reused = m(7, 200, "/a");
        assert_eq!(
            diff(std::slice::from_ref(&old), std::slice::from_ref(&reused)),
            [gone(7), ProcessEvent::Instrumented(reused)]
        );
        let execd = m(7, 100, "/b");
        assert_eq!(diff(&[old], std::slice::from_ref(&execd)), [gone(7), ProcessEvent::Instrumented(execd)]);
    }

    #[test]
    fn diff_ignores_other_field_changes() {
        let a = m(1, 10, "/a");
        let mut a2 = a.clone();
        a2.info.listen_ports = vec![80];
        a2.info.cmdline = vec!["x".into()];
        assert!(diff(&[a], &[a2]).is_empty());
    }

    #[test]
    fn diff_reports_relabelled_processes() {
        let a = m(1, 10, "/a");
        let mut renamed = a.clone();
        renamed.service.name = "renamed".into();
        assert_eq!(diff(std::slice::from_ref(&a), std::slice::from_ref(&renamed)), [ProcessEvent::Updated(renamed)]);
        let mut in_pod = a.clone();
        in_pod.info.k8s =
            Some(std::sync::Arc::new(crate::kube::K8sMeta { pod_name: "p".into(), ..Default::default() }));
        assert_eq!(diff(&[a], std::slice::from_ref(&in_pod)), [ProcessEvent::Updated(in_pod)]);
    }

    #[test]
    fn vanished_classification() {
        let nf = DiscoverError::Io { path: "/x".into(), source: io::Error::from(io::ErrorKind::NotFound) };
        assert!(nf.is_vanished());
        let srch = DiscoverError::Io { path: "/x".into(), source: io::Error::from_raw_os_error(libc::ESRCH) };
        assert!(srch.is_vanished());
        let acc = DiscoverError::Io { path: "/x".into(), source: io::Error::from(io::ErrorKind::PermissionDenied) };
        assert!(!acc.is_vanished());
        assert_eq!(acc.to_string(), "reading /x");
    }

    #[test]
    fn default_options() {
        let o = DiscoverOptions::default();
        assert_eq!(o.proc_root, PathBuf::from("/proc"));
        assert_eq!(o.poll_interval, Duration::from_secs(5));
        assert_eq!(o.self_pid, std::process::id());
        assert!(!o.hostname.is_empty());
    }

    async fn recv(rx: &mut mpsc::Receiver<Vec<ProcessEvent>>) -> Vec<ProcessEvent> {
        tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn spawn_sends_differences_only() {
        let fp = FakeProc::new();
        fp.add(1, 0, Some("/sbin/init"), &["/sbin/init"], 1, &[], &[], 1);
        fp.add(100, 1, Some("/usr/bin/python3"), &["python3", "app.py"], 50, &[], &[], 1);
        let sel = Selection { include: vec![Criteria::default().exe_path("*python*").unwrap()], exclude: vec![] };
        let opts = DiscoverOptions {
            proc_root: fp.root().to_path_buf(),
            poll_interval: Duration::from_millis(20),
            min_process_age: Duration::ZERO,
            hostname: "h".into(),
            self_pid: 999_999,
            ..DiscoverOptions::default()
        };
        let (tx, mut rx) = mpsc::channel(8);
        let handle = spawn(sel, opts, tx);

        let first = recv(&mut rx).await;
        assert_eq!(first.len(), 1);
        let ProcessEvent::Instrumented(pm) = &first[0] else { panic!("{first:?}") };
        assert_eq!((pm.info.pid, pm.service.name.as_str(), pm.service.instance_id.as_str()), (100, "app", "h:100"));

        // Pid 100 exits and its pid is reused by another python process; pid 101 appears.
        fp.remove(100);
        fp.add(100, 1, Some("/usr/bin/python3"), &["python3", "other.py"], 60, &[], &[], 1);
        fp.add(101, 1, Some("/usr/bin/python3"), &["python3", "worker.py"], 70, &[], &[], 1);
        let mut events = Vec::new();
        while events.len() < 3 {
            events.extend(recv(&mut rx).await);
        }
        assert_eq!(events[0], gone(100));
        let mut new: Vec<(u32, String)> = events[1..]
            .iter()
            .map(|e| match e {
                ProcessEvent::Instrumented(m) => (m.info.pid, m.service.name.clone()),
                other => panic!("{other:?}"),
            })
            .collect();
        new.sort();
        assert_eq!(new, [(100, "other".to_string()), (101, "worker".to_string())]);

        fp.remove(101);
        assert_eq!(recv(&mut rx).await, [gone(101)]);

        drop(rx);
        tokio::time::timeout(Duration::from_secs(10), handle).await.unwrap().unwrap();
    }
}
