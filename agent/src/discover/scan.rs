//! Stateful process scanner used by [`super::spawn`].
//!
//! A scan reads every `/proc/<pid>/stat` (for ancestry) and `exe` link. Processes already
//! matched with the same start time and executable are kept without further reads; known
//! unmatched ones reuse their cached command line and environment, and only re-read their
//! sockets (when a criteria uses `open_ports`), since a port may open late.
//!
//! A poll scans only when the kernel's [`ChangeCounter`] says something a scan could see may
//! have changed: that is most of an idle agent's CPU otherwise (2 ms every 5 s for ~70 host
//! processes, measured in docs/benchmarks.md).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tracing::trace;

use super::proc::{self, ListenCache, ProcessInfo, Stat};
use super::selector::Selection;
use super::service::{identify_with_k8s, instance_id, K8sNames, ServiceId};
use super::{ChangeCounter, DiscoverError, DiscoverOptions, ProcessMatch};
use crate::kube::cgroup;

/// Guards ancestry walks against cycles in a racy process table.
const MAX_DEPTH: usize = 256;

/// A poll scans at least this often, change counter or not: for what the kernel does not count
/// (an executable replaced by `prctl`, a listening socket passed over a Unix socket).
const FULL_SCAN_INTERVAL: Duration = Duration::from_secs(60);

pub struct Scanner {
    sel: Selection,
    opts: DiscoverOptions,
    /// Processes read in the last scan, matched or not.
    known: HashMap<u32, ProcessInfo>,
    /// Current matches, kept while the process lives.
    matched: HashMap<u32, ProcessMatch>,
    ticks_per_sec: u64,
    /// The change counter read before the last scan.
    last_count: Option<u64>,
    /// The last scan read the same counter as the one before it: nothing changed in between,
    /// so that scan saw every change that was counted before it settled.
    settled: bool,
    /// The last scan left a process for being younger than `min_process_age`.
    young_left: bool,
    last_scan: Option<Instant>,
    full_scan_interval: Duration,
}

/// True if `pid` is `root` or one of its descendants.
fn in_tree(stats: &BTreeMap<u32, Stat>, pid: u32, root: u32) -> bool {
    let mut cur = pid;
    for _ in 0..MAX_DEPTH {
        if cur == root {
            return true;
        }
        match stats.get(&cur) {
            Some(s) if s.ppid != 0 && s.ppid != cur => cur = s.ppid,
            _ => return false,
        }
    }
    false
}

/// Nearest ancestor of `pid` matched with the same executable.
fn matched_ancestor<'a>(
    stats: &BTreeMap<u32, Stat>,
    pid: u32,
    exe: &Path,
    matched: &'a HashMap<u32, ProcessMatch>,
) -> Option<&'a ProcessMatch> {
    let mut cur = stats.get(&pid)?.ppid;
    for _ in 0..MAX_DEPTH {
        if cur == 0 || cur == pid {
            return None;
        }
        if let Some(m) = matched.get(&cur).filter(|m| m.info.exe == exe) {
            return Some(m);
        }
        cur = stats.get(&cur)?.ppid;
    }
    None
}

impl Scanner {
    pub fn new(sel: Selection, opts: DiscoverOptions) -> Self {
        Scanner {
            sel,
            opts,
            known: HashMap::new(),
            matched: HashMap::new(),
            ticks_per_sec: proc::clock_ticks(),
            last_count: None,
            settled: false,
            young_left: false,
            last_scan: None,
            full_scan_interval: FULL_SCAN_INTERVAL,
        }
    }

    /// The current matches, as [`scan`](Self::scan) would return them, if nothing a scan could
    /// see has changed; scans otherwise. Unchanged means: the change counter stands where it
    /// stood for the last two scans (a change is trusted only once a later scan confirmed it
    /// had settled: the kernel counts a listening socket just before it can be listed), no
    /// process was left for its age, Kubernetes metadata is off (it changes without a
    /// process changing), and the last scan is younger than [`FULL_SCAN_INTERVAL`].
    pub fn poll(&mut self) -> Result<Vec<ProcessMatch>, DiscoverError> {
        let count = self.opts.changes.as_ref().and_then(ChangeCounter::read);
        let quiet = count.is_some()
            && count == self.last_count
            && self.settled
            && !self.young_left
            && self.opts.kube.is_none()
            && self.last_scan.is_some_and(|t| t.elapsed() < self.full_scan_interval);
        if quiet {
            return Ok(self.current());
        }
        let out = self.scan()?;
        self.settled = count.is_some() && count == self.last_count;
        self.last_count = count;
        self.last_scan = Some(Instant::now());
        Ok(out)
    }

    fn current(&self) -> Vec<ProcessMatch> {
        let mut out: Vec<ProcessMatch> = self.matched.values().cloned().collect();
        out.sort_by_key(|m| m.info.pid);
        out
    }

    /// Reads one process, reusing the cached command line and environment when the
    /// process is known. `Ok(None)` for kernel threads.
    fn load(
        &self,
        root: &Path,
        st: &Stat,
        exe: PathBuf,
        with_ports: bool,
        listen: &mut ListenCache,
    ) -> Result<Option<ProcessInfo>, DiscoverError> {
        let mut info = match self.known.get(&st.pid) {
            Some(k) if k.start_time == st.start_time && k.exe == exe => {
                ProcessInfo { ppid: st.ppid, listen_ports: Vec::new(), ..k.clone() }
            }
            _ => {
                let cmdline = proc::read_cmdline(root, st.pid)?;
                if cmdline.is_empty() {
                    return Ok(None);
                }
                ProcessInfo {
                    pid: st.pid,
                    ppid: st.ppid,
                    language: proc::read_language(root, st.pid, &exe),
                    exe,
                    comm: st.comm.clone(),
                    cmdline,
                    start_time: st.start_time,
                    listen_ports: Vec::new(),
                    env: proc::read_env(root, st.pid)?,
                    container: None,
                    k8s: None,
                }
            }
        };
        if with_ports {
            info.listen_ports = listen.listen_ports(root, st.pid)?;
        }
        if let Some(store) = &self.opts.kube {
            // Re-read each time: a process may be moved into its container's cgroup after
            // it started, and a candidate's pod may become known later.
            info.container = cgroup::read(root, st.pid);
            info.k8s = info.container.as_ref().and_then(|c| store.lookup(c));
        }
        Ok(Some(info))
    }

    fn identify(&self, p: &ProcessInfo, criteria_index: usize) -> ServiceId {
        let k8s = match (&self.opts.kube, &p.k8s) {
            (Some(store), Some(meta)) => {
                Some(K8sNames { name: store.service_name(meta), namespace: store.service_namespace(meta) })
            }
            _ => None,
        };
        identify_with_k8s(
            p,
            self.sel.include.get(criteria_index),
            self.opts.global_name.as_deref(),
            self.opts.global_namespace.as_deref(),
            &self.opts.hostname,
            k8s.as_ref(),
        )
    }

    /// Whether the Kubernetes metadata of a matched process changed since it was matched
    /// (a relabelled pod, a pod known only now, or one forgotten): it is then evaluated
    /// afresh, so its selection and service name follow.
    fn k8s_changed(&self, m: &ProcessMatch) -> bool {
        let Some(store) = &self.opts.kube else { return false };
        let now = m.info.container.as_ref().and_then(|c| store.lookup(c));
        now != m.info.k8s
    }

    /// Start time (in ticks) after which a process is too young to be considered.
    fn youngest_start(&self, root: &Path) -> Option<u64> {
        if self.opts.min_process_age.is_zero() {
            return None;
        }
        let uptime = proc::read_uptime(root)?;
        let age = self.opts.min_process_age.as_secs_f64();
        Some(((uptime - age).max(0.0) * self.ticks_per_sec as f64) as u64)
    }

    /// Scans the process table and returns all current matches, sorted by pid.
    /// Fails only if the proc root itself cannot be listed.
    pub fn scan(&mut self) -> Result<Vec<ProcessMatch>, DiscoverError> {
        let root = self.opts.proc_root.clone();
        let mut stats = BTreeMap::new();
        for pid in proc::list_pids(&root)? {
            match proc::read_stat(&root, pid) {
                Ok(s) => {
                    stats.insert(pid, s);
                }
                Err(e) if e.is_vanished() => {}
                Err(e) => trace!(pid, error = %e, "Process skipped."),
            }
        }
        let with_ports = self.sel.needs_ports();
        let youngest = self.youngest_start(&root);
        let mut listen = ListenCache::default();
        let mut matched_now: HashMap<u32, ProcessMatch> = HashMap::new();
        let mut known_now = HashMap::new();
        let mut candidates = Vec::new();
        let mut young_left = false;

        for (&pid, st) in &stats {
            if in_tree(&stats, pid, self.opts.self_pid) {
                continue;
            }
            let exe = match proc::read_exe(&root, pid) {
                Ok(exe) => exe,
                // Kernel thread, or gone.
                Err(e) if e.is_vanished() => continue,
                Err(e) => {
                    trace!(pid, error = %e, "Process skipped.");
                    continue;
                }
            };
            if let Some(m) = self.matched.get(&pid) {
                if m.info.start_time == st.start_time && m.info.exe == exe && !self.k8s_changed(m) {
                    matched_now.insert(pid, m.clone());
                    continue;
                }
            }
            let info = match self.load(&root, st, exe, with_ports, &mut listen) {
                Ok(Some(info)) => info,
                Ok(None) => continue,
                Err(e) if e.is_vanished() => continue,
                Err(e) => {
                    trace!(pid, error = %e, "Process skipped.");
                    continue;
                }
            };
            known_now.insert(pid, info.clone());
            if youngest.is_some_and(|y| st.start_time > y) {
                young_left = true;
                continue;
            }
            candidates.push(info);
        }

        let mut rest = Vec::new();
        for info in candidates {
            match self.sel.select(&info) {
                Some(idx) => {
                    let service = self.identify(&info, idx);
                    matched_now.insert(info.pid, ProcessMatch { info, service, criteria_index: idx });
                }
                None => rest.push(info),
            }
        }
        let mut inherited = Vec::new();
        for info in rest {
            if self.sel.is_excluded(&info) {
                continue;
            }
            if let Some(anc) = matched_ancestor(&stats, info.pid, &info.exe, &matched_now) {
                let service = ServiceId {
                    name: anc.service.name.clone(),
                    namespace: anc.service.namespace.clone(),
                    instance_id: instance_id(&self.opts.hostname, info.pid),
                };
                inherited.push(ProcessMatch { info, service, criteria_index: anc.criteria_index });
            }
        }
        matched_now.extend(inherited.into_iter().map(|m| (m.info.pid, m)));

        self.known = known_now;
        self.matched = matched_now;
        self.young_left = young_left;
        Ok(self.current())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::fake::FakeProc;
    use super::super::selector::Criteria;
    use super::super::ProcessEvent;
    use super::*;

    fn opts(fp: &FakeProc) -> DiscoverOptions {
        DiscoverOptions {
            proc_root: fp.root().to_path_buf(),
            poll_interval: Duration::from_millis(10),
            min_process_age: Duration::ZERO,
            global_name: None,
            global_namespace: None,
            hostname: "host".into(),
            self_pid: 500,
            kube: None,
            changes: None,
        }
    }

    fn sel(c: Criteria) -> Selection {
        Selection { include: vec![c], exclude: vec![] }
    }

    fn pids(ms: &[ProcessMatch]) -> Vec<u32> {
        ms.iter().map(|m| m.info.pid).collect()
    }

    #[test]
    fn matches_by_port_and_skips_kernel_threads() {
        let fp = FakeProc::new();
        fp.add(1, 0, Some("/sbin/init"), &["/sbin/init"], 1, &[], &[], 1);
        fp.add(2, 0, None, &[], 1, &[], &[], 1);
        fp.add(10, 1, Some("/srv/api"), &["/srv/api"], 5, &["OTEL_SERVICE_NAME=api-svc"], &[11111], 1);
        fp.add(11, 1, Some("/srv/db"), &["/srv/db"], 5, &[], &[22222], 1);
        let s = sel(Criteria::default().open_ports([8000..=8999]).namespace("prod"));
        let out = Scanner::new(s, opts(&fp)).scan().unwrap();
        assert_eq!(pids(&out), [10]);
        assert_eq!(out[0].info.listen_ports, [8080]);
        assert_eq!(
            out[0].service,
            ServiceId { name: "api-svc".into(), namespace: "prod".into(), instance_id: "host:10".into() }
        );
    }

    #[test]
    fn never_instruments_itself_or_descendants() {
        let fp = FakeProc::new();
        fp.add(1, 0, Some("/sbin/init"), &["/sbin/init"], 1, &[], &[], 1);
        fp.add(500, 1, Some("/usr/bin/beyla"), &["beyla"], 5, &[], &[], 1);
        fp.add(501, 500, Some("/usr/bin/beyla"), &["beyla", "helper"], 6, &[], &[], 1);
        fp.add(502, 501, Some("/bin/sh"), &["sh"], 7, &[], &[], 1);
        fp.add(600, 1, Some("/bin/sh"), &["sh"], 8, &[], &[], 1);
        let s = sel(Criteria::default().exe_path("*").unwrap());
        assert_eq!(pids(&scan_once_for(s, &fp)), [1, 600]);
    }

    fn scan_once_for(s: Selection, fp: &FakeProc) -> Vec<ProcessMatch> {
        crate::discover::scan_once(&s, &opts(fp)).unwrap()
    }

    #[test]
    fn children_with_same_exe_inherit_identity() {
        let fp = FakeProc::new();
        fp.add(1, 0, Some("/sbin/init"), &["/sbin/init"], 1, &[], &[], 1);
        let py = "/usr/bin/python3.11";
        fp.add(10, 1, Some(py), &["python3", "/venv/bin/gunicorn", "-w", "2", "shop.wsgi:app"], 5, &[], &[11111], 1);
        fp.add(11, 10, Some(py), &["gunicorn: worker [shop.wsgi:app]"], 6, &[], &[], 1);
        fp.add(12, 11, Some(py), &["python3", "-c", "x"], 7, &[], &[], 1);
        fp.add(13, 10, Some("/bin/sh"), &["sh", "-c", "true"], 8, &[], &[], 1);
        fp.add(14, 13, Some(py), &["python3", "sub.py"], 9, &[], &[], 1);
        fp.add(20, 1, Some(py), &["python3", "other.py"], 9, &[], &[], 1);
        let s = Selection {
            include: vec![Criteria::default().open_ports([1..=1]), Criteria::default().open_ports([8080..=8080])],
            exclude: vec![Criteria::default().cmd_args("*sub.py*").unwrap()],
        };
        let out = scan_once_for(s, &fp);
        assert_eq!(pids(&out), [10, 11, 12]);
        for m in &out {
            assert_eq!(m.service.name, "shop");
            assert_eq!(m.criteria_index, 1);
            assert_eq!(m.service.instance_id, format!("host:{}", m.info.pid));
        }
    }

    #[test]
    fn exclude_wins() {
        let fp = FakeProc::new();
        fp.add(10, 1, Some("/usr/bin/node"), &["node", "a.js"], 5, &[], &[], 1);
        fp.add(11, 1, Some("/usr/bin/node"), &["node", "b.js"], 5, &[], &[], 1);
        let s = Selection {
            include: vec![Criteria::default().exe_path("*node").unwrap()],
            exclude: vec![Criteria::default().cmd_args("b.js").unwrap()],
        };
        assert_eq!(pids(&scan_once_for(s, &fp)), [10]);
    }

    #[test]
    fn young_processes_wait() {
        let fp = FakeProc::new();
        let ticks = proc::clock_ticks();
        // uptime is 100000s: started 1s ago vs. an hour ago.
        fp.add(10, 1, Some("/srv/new"), &["new"], (100_000 - 1) * ticks, &[], &[], 1);
        fp.add(11, 1, Some("/srv/old"), &["old"], (100_000 - 3600) * ticks, &[], &[], 1);
        let mut o = opts(&fp);
        o.min_process_age = Duration::from_secs(5);
        let s = sel(Criteria::default().exe_path("/srv/*").unwrap());
        let out = Scanner::new(s, o).scan().unwrap();
        assert_eq!(pids(&out), [11]);
    }

    #[test]
    fn matches_are_sticky_and_cache_is_used() {
        let fp = FakeProc::new();
        fp.add(10, 1, Some("/srv/api"), &["api"], 5, &[], &[11111], 1);
        fp.add(11, 1, Some("/srv/late"), &["late"], 5, &["OTEL_SERVICE_NAME=late-svc"], &[], 1);
        let mut sc = Scanner::new(sel(Criteria::default().open_ports([8080..=8080])), opts(&fp));
        assert_eq!(pids(&sc.scan().unwrap()), [10]);

        // Pid 10 closes its port: still matched. Its fd dir is not even read.
        std::fs::remove_dir_all(fp.root().join("10/fd")).unwrap();
        // Pid 11 opens the port late; its cached environ is reused.
        std::fs::remove_file(fp.root().join("11/environ")).unwrap();
        std::os::unix::fs::symlink("socket:[11111]", fp.root().join("11/fd/9")).unwrap();
        let out = sc.scan().unwrap();
        assert_eq!(pids(&out), [10, 11]);
        assert_eq!(out[1].service.name, "late-svc");

        // Exec of another executable under the same pid is re-evaluated.
        std::fs::remove_file(fp.root().join("10/exe")).unwrap();
        std::os::unix::fs::symlink("/bin/sleep", fp.root().join("10/exe")).unwrap();
        std::fs::create_dir_all(fp.root().join("10/fd")).unwrap();
        assert_eq!(pids(&sc.scan().unwrap()), [11]);

        fp.remove(11);
        assert!(sc.scan().unwrap().is_empty());
        assert!(sc.known.len() == 1 && sc.matched.is_empty());
    }

    /// A change counter the test moves by hand.
    fn counter() -> (std::sync::Arc<std::sync::atomic::AtomicU64>, ChangeCounter) {
        let n = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(7));
        let read = n.clone();
        (n, ChangeCounter::new(move || Some(read.load(std::sync::atomic::Ordering::Relaxed))))
    }

    fn bump(n: &std::sync::atomic::AtomicU64) {
        n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    #[test]
    fn polls_read_proc_only_after_the_counter_moved() {
        let fp = FakeProc::new();
        fp.add(10, 1, Some("/srv/api"), &["api"], 5, &[], &[], 1);
        let (n, changes) = counter();
        let mut o = opts(&fp);
        o.changes = Some(changes);
        let mut sc = Scanner::new(sel(Criteria::default().exe_path("/srv/*").unwrap()), o);
        // The first poll scans; the second too (the counter has not been seen to settle).
        assert_eq!(pids(&sc.poll().unwrap()), [10]);
        assert_eq!(pids(&sc.poll().unwrap()), [10]);

        // A process the kernel did not count is not seen: the poll did not read /proc.
        fp.add(11, 1, Some("/srv/worker"), &["worker"], 6, &[], &[], 1);
        assert_eq!(pids(&sc.poll().unwrap()), [10]);
        assert_eq!(pids(&sc.poll().unwrap()), [10]);

        // Counted: the next poll scans, and so does the one after it.
        bump(&n);
        assert_eq!(pids(&sc.poll().unwrap()), [10, 11]);
        fp.remove(11);
        assert_eq!(pids(&sc.poll().unwrap()), [10], "the poll after a change scans again");
        fp.add(12, 1, Some("/srv/late"), &["late"], 7, &[], &[], 1);
        assert_eq!(pids(&sc.poll().unwrap()), [10], "settled: not read again");

        // A listening socket counts the same way (open_ports).
        bump(&n);
        assert_eq!(pids(&sc.poll().unwrap()), [10, 12]);
    }

    #[test]
    fn polls_scan_without_a_counter_young_processes_or_after_the_interval() {
        let fp = FakeProc::new();
        fp.add(10, 1, Some("/srv/api"), &["api"], 5, &[], &[], 1);
        let s = sel(Criteria::default().exe_path("/srv/*").unwrap());

        // No counter (or none readable): every poll scans.
        let mut plain = Scanner::new(s.clone(), opts(&fp));
        let mut unreadable_opts = opts(&fp);
        unreadable_opts.changes = Some(ChangeCounter::new(|| None));
        let mut unreadable = Scanner::new(s.clone(), unreadable_opts);
        for sc in [&mut plain, &mut unreadable] {
            sc.poll().unwrap();
            sc.poll().unwrap();
        }
        fp.add(11, 1, Some("/srv/b"), &["b"], 6, &[], &[], 1);
        assert_eq!(pids(&plain.poll().unwrap()), [10, 11]);
        assert_eq!(pids(&unreadable.poll().unwrap()), [10, 11]);
        fp.remove(11);

        // A process left for its age is looked at again on each poll until it is old enough.
        let ticks = proc::clock_ticks();
        let young = FakeProc::new();
        young.add(20, 1, Some("/srv/new"), &["new"], (100_000 - 1) * ticks, &[], &[], 1);
        let (_n, changes) = counter();
        let mut o = opts(&young);
        o.min_process_age = Duration::from_secs(5);
        o.changes = Some(changes);
        let mut sc = Scanner::new(s.clone(), o);
        assert!(sc.poll().unwrap().is_empty());
        assert!(sc.poll().unwrap().is_empty());
        std::fs::write(young.root().join("uptime"), "100010.00 5.00\n").unwrap();
        assert_eq!(pids(&sc.poll().unwrap()), [20]);

        // Counter or not, a poll scans once the last scan is older than the interval.
        let (_n, changes) = counter();
        let mut o = opts(&fp);
        o.changes = Some(changes);
        let mut sc = Scanner::new(s, o);
        sc.full_scan_interval = Duration::from_millis(50);
        sc.poll().unwrap();
        sc.poll().unwrap();
        fp.add(13, 1, Some("/srv/c"), &["c"], 8, &[], &[], 1);
        assert_eq!(pids(&sc.poll().unwrap()), [10]);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(pids(&sc.poll().unwrap()), [10, 13]);
    }

    #[test]
    fn kubernetes_selectors_names_and_updates() {
        use crate::config::{GlobPattern, Matcher};
        use crate::discover::selector::K8sCriteria;
        use crate::kube::{PodInfo, Store};
        let id = |c: char| c.to_string().repeat(64);
        let fp = FakeProc::new();
        for (pid, c) in [(10, 'a'), (11, 'b'), (12, 'c')] {
            fp.add(pid, 1, Some("/srv/app"), &["app"], 5, &[], &[], 1);
            let line = format!("0::/kubepods.slice/kubepods-besteffort.slice/cri-containerd-{}.scope\n", id(c));
            std::fs::write(fp.root().join(format!("{pid}/cgroup")), line).unwrap();
        }
        let pod = |uid: &str, ns: &str, name: &str, c: char, label: &str| PodInfo {
            uid: uid.into(),
            namespace: ns.into(),
            name: name.into(),
            owner: Some(("ReplicaSet".into(), "api-6d5c4b3a2f".into())),
            labels: [("app.kubernetes.io/name".to_string(), label.to_string())].into_iter().collect(),
            containers: vec![(id(c), "app".into())],
            ..Default::default()
        };
        let store = std::sync::Arc::new(Store::new(None));
        store.apply_pod(pod("u10", "demo", "api-1", 'a', "v1"));
        store.apply_pod(pod("u11", "staging", "api-2", 'b', "v1"));
        let glob = |p: &str| Matcher::Glob(GlobPattern::new(p).unwrap());
        let c = Criteria {
            k8s: K8sCriteria {
                attributes: vec![("k8s.namespace.name", glob("demo")), ("k8s.deployment.name", glob("api"))],
                ..Default::default()
            },
            ..Default::default()
        };
        let mut o = opts(&fp);
        o.kube = Some(store.clone());
        let mut sc = Scanner::new(sel(c), o);
        let out = sc.scan().unwrap();
        assert_eq!(pids(&out), [10]);
        assert_eq!((out[0].service.name.as_str(), out[0].service.namespace.as_str()), ("v1", "demo"));
        assert_eq!(out[0].info.k8s.as_ref().map(|k| k.pod_name.as_str()), Some("api-1"));

        // Relabelled: same match, new name. A pod known only now: matched on this scan.
        store.apply_pod(pod("u10", "demo", "api-1", 'a', "v2"));
        store.apply_pod(pod("u12", "demo", "api-3", 'c', "v1"));
        let out2 = sc.scan().unwrap();
        assert_eq!(pids(&out2), [10, 12]);
        assert_eq!(out2[0].service.name, "v2");
        let events = crate::discover::diff(&out, &out2);
        assert!(
            matches!(&events[..], [ProcessEvent::Updated(a), ProcessEvent::Instrumented(b)] if a.info.pid == 10 && b.info.pid == 12),
            "{events:?}"
        );

        // The pod moves out of the selected namespace: no longer instrumented.
        store.apply_pod(pod("u12", "staging", "api-3", 'c', "v1"));
        assert_eq!(pids(&sc.scan().unwrap()), [10]);
    }

    #[test]
    fn unreadable_root_fails() {
        let fp = FakeProc::new();
        let mut o = opts(&fp);
        o.proc_root = fp.root().join("nope");
        assert!(Scanner::new(Selection::default(), o).scan().is_err());
    }

    #[test]
    fn ancestry_helpers_survive_cycles() {
        let mut stats = BTreeMap::new();
        for (pid, ppid) in [(5, 6), (6, 5)] {
            stats.insert(pid, Stat { pid, comm: String::new(), ppid, start_time: 0 });
        }
        assert!(!in_tree(&stats, 5, 1));
        assert!(in_tree(&stats, 5, 6));
        assert!(matched_ancestor(&stats, 5, Path::new("/x"), &HashMap::new()).is_none());
    }
}
