//! The processes the agent traces, and the kernel's `traced_pids` map that mirrors them.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use libbpf_rs::{MapCore, MapFlags, MapHandle};

use super::AttachError;
use crate::discover::ServiceId;
use crate::kube::K8sMeta;

// Flags in traced_pids; match bpf/include/maps/traced_pids.h.
const TRACED_BY_AGENT: u32 = 1;

#[derive(Debug, Clone)]
pub struct TracedProcess {
    pub pid: u32,
    pub exe: PathBuf,
    pub service: ServiceId,
    /// Set for a child the kernel started tracing because its parent was traced.
    pub parent: Option<u32>,
    /// Kubernetes metadata of its container (`attributes.kubernetes`), when known.
    pub k8s: Option<Arc<K8sMeta>>,
    /// `telemetry.sdk.language` (see [`sdk_language_of`]).
    pub language: &'static str,
}

impl TracedProcess {
    /// `telemetry.sdk.language`, which the OTLP resource and `target_info` both say.
    pub fn sdk_language(&self) -> &'static str {
        self.language
    }
}

/// The runtime of the executable at `exe`: from its name (as the `languages` selector detects
/// it), else `go` for a Go program (from its ELF section headers), else `unknown`.
pub fn sdk_language_of(exe: &std::path::Path) -> &'static str {
    let exe_name = exe.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    match crate::discover::selector::language_of(exe_name) {
        Some(l) => l,
        None if crate::discover::golang::is_go(exe) => "go",
        None => "unknown",
    }
}

/// What the table holds, behind one lock: the attach stage writes, the others read.
#[derive(Default)]
struct Table {
    procs: HashMap<u32, Arc<TracedProcess>>,
    /// Processes discovery found gone, kept (with the time) so that their requests still in
    /// the pipeline get reported; purged after `RETIRED_FOR`.
    retired: HashMap<u32, (Arc<TracedProcess>, Instant)>,
    /// Processes that ran another program: what they were before (purged after `RETIRED_FOR`).
    execed: HashMap<u32, Execed>,
}

/// The identity a pid had until it ran another program. Its requests can reach the table's
/// readers after discovery has seen the new program (exec events and socket events come on
/// different ring buffers, and a response may be decoded late): a request is the old
/// program's if it began before the exec.
#[derive(Debug)]
struct Execed {
    /// When it ran the other program (kernel clock). Until the kernel's exec event is read, the
    /// time discovery saw the new program, which is later (`provisional`).
    at_ns: u64,
    provisional: bool,
    before: Arc<TracedProcess>,
    since: Instant,
}

impl Table {
    fn get(&self, pid: u32) -> Option<Arc<TracedProcess>> {
        self.procs.get(&pid).or_else(|| self.retired.get(&pid).map(|(p, _)| p)).cloned()
    }

    /// Discovery's identity for `p.pid`, found at `now_ns` (kernel clock).
    fn insert(&mut self, p: Arc<TracedProcess>, now_ns: u64) {
        let pid = p.pid;
        // Discovery may have found it gone in between (the new program not yet listening on
        // the port it was selected by).
        let retired = self.retired.remove(&pid).map(|(old, _)| old);
        let exe = p.exe.clone();
        let Some(old) = self.procs.insert(pid, p).or(retired).filter(|old| old.exe != exe) else { return };
        // Discovery saw the exec before the kernel's event was read: the boundary is this
        // moment until the event's time comes.
        if !self.execed.get(&pid).is_some_and(|e| Arc::ptr_eq(&e.before, &old)) {
            let e = Execed { at_ns: now_ns, provisional: true, before: old, since: Instant::now() };
            self.execed.insert(pid, e);
        }
    }

    /// Discovery found `pid` gone (see [`Traced::retire`]).
    fn retire(&mut self, pid: u32) {
        if let Some(p) = self.procs.remove(&pid) {
            self.retired.insert(pid, (p, Instant::now()));
        }
    }

    /// The kernel's exec event (see [`Traced::on_exec`]); true for an inherited child, which
    /// stops being traced.
    fn exec(&mut self, pid: u32, ts_ns: u64, runs: Option<&std::path::Path>) -> bool {
        let Some(cur) = self.get(pid) else { return false };
        let inherited = cur.parent.is_some();
        if let Some(e) = self.execed.get_mut(&pid).filter(|e| e.provisional) {
            e.at_ns = e.at_ns.min(ts_ns);
            e.provisional = false;
            return inherited;
        }
        // The same executable again (a re-exec) is the same service, as discovery sees it.
        if !inherited && runs == Some(cur.exe.as_path()) {
            return false;
        }
        self.execed.insert(pid, Execed { at_ns: ts_ns, provisional: false, before: cur, since: Instant::now() });
        inherited
    }

    /// `pid`'s identity for a request that began at `ts_ns` (kernel clock): the program it ran
    /// then. `None` for a request of a program that discovery has not seen yet.
    fn get_at(&self, pid: u32, ts_ns: u64) -> Option<Arc<TracedProcess>> {
        let now = self.get(pid);
        match self.execed.get(&pid) {
            Some(e) if ts_ns < e.at_ns => Some(e.before.clone()),
            Some(e) if now.as_ref().is_some_and(|p| Arc::ptr_eq(p, &e.before)) => None,
            _ => now,
        }
    }
}

/// The traced-process table and the kernel's `traced_pids` map that mirrors it. It has one
/// owner, the attach stage ([`super::stage`]), which applies what discovery finds and the
/// kernel's fork, exec and exit events (sent to it as [`super::stage::Lifecycle`]); the
/// other stages look processes up through a [`TracedView`].
pub struct Traced {
    map: MapHandle,
    /// The table, through the same handle the readers get.
    table: TracedView,
    /// The TLS probes, told of each inherited child: uprobes are per process, and a child
    /// forked with them (an nginx worker, a PostgreSQL backend) is not probed by its parent's.
    tls: Option<super::TlsProbes>,
}

/// A read-only handle on the traced-process table.
#[derive(Clone)]
pub struct TracedView(Arc<RwLock<Table>>);

impl TracedView {
    pub fn get(&self, pid: u32) -> Option<Arc<TracedProcess>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).get(pid)
    }

    /// `pid`'s identity when a request began at `ts_ns` (kernel clock): across an exec, the
    /// program that served it; `None` for a program not discovered yet.
    pub fn get_at(&self, pid: u32, ts_ns: u64) -> Option<Arc<TracedProcess>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).get_at(pid, ts_ns)
    }

    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(|e| e.into_inner()).procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How long a retired process's identity is kept: far longer than any pipeline backlog.
const RETIRED_FOR: std::time::Duration = std::time::Duration::from_secs(60);

impl Traced {
    pub fn new(map: MapHandle, tls: Option<super::TlsProbes>) -> Self {
        Traced { map, table: TracedView(Arc::new(RwLock::new(Table::default()))), tls }
    }

    /// A read-only handle for the stages that look processes up.
    pub fn view(&self) -> TracedView {
        self.table.clone()
    }

    fn table(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.0.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts tracing a process selected by discovery.
    pub fn add(&mut self, p: TracedProcess) -> Result<(), AttachError> {
        let pid = p.pid;
        // Table first: the kernel sends events as soon as the map has the pid.
        self.table().insert(Arc::new(p), crate::events::monotonic_ns());
        if let Err(source) = self.map.update(&pid.to_ne_bytes(), &TRACED_BY_AGENT.to_ne_bytes(), MapFlags::ANY) {
            self.table().procs.remove(&pid);
            return Err(AttachError::Map { map: "traced_pids", source });
        }
        Ok(())
    }

    /// Stops tracing `pid`.
    pub fn remove(&mut self, pid: u32) -> Option<Arc<TracedProcess>> {
        // The entry may already be gone (the kernel deletes it at exit).
        let _ = self.map.delete(&pid.to_ne_bytes());
        self.table().procs.remove(&pid)
    }

    /// The kernel traced a child of `ppid`: it serves as its parent's service.
    pub fn inherit(&mut self, pid: u32, ppid: u32) -> Option<Arc<TracedProcess>> {
        let parent = self.get(ppid)?;
        let child = Arc::new(TracedProcess {
            pid,
            exe: parent.exe.clone(),
            service: ServiceId {
                instance_id: instance_for_pid(&parent.service.instance_id, ppid, pid),
                ..parent.service.clone()
            },
            parent: Some(ppid),
            k8s: parent.k8s.clone(),
            language: parent.language,
        });
        self.table().procs.insert(pid, child.clone());
        if let Some(tls) = &self.tls {
            tls.attach(pid);
        }
        Some(child)
    }

    /// `pid`'s service or Kubernetes metadata changed: the children it passed them on to
    /// (traced by the kernel at fork) follow.
    pub fn update_children(&mut self, pid: u32) {
        let Some(parent) = self.get(pid) else { return };
        let mut table = self.table();
        for child in table.procs.values_mut().filter(|c| c.parent == Some(pid)) {
            *child = Arc::new(TracedProcess {
                pid: child.pid,
                exe: child.exe.clone(),
                service: ServiceId { instance_id: child.service.instance_id.clone(), ..parent.service.clone() },
                parent: Some(pid),
                k8s: parent.k8s.clone(),
                language: child.language,
            });
        }
    }

    /// `pid` ran another program at `ts_ns` (kernel clock); `runs` is its executable now (from
    /// `/proc`). Its requests from before keep its identity; those after wait for discovery to
    /// decide on the new program (an inherited child is no longer its parent's service).
    pub fn on_exec(&mut self, pid: u32, ts_ns: u64, runs: Option<&std::path::Path>) {
        let inherited = self.table().exec(pid, ts_ns, runs);
        if inherited {
            self.remove(pid);
        }
    }

    /// Discovery found `pid` gone: stop tracing it, but keep its identity (see `retired`).
    pub fn retire(&mut self, pid: u32) {
        let _ = self.map.delete(&pid.to_ne_bytes());
        self.table().retire(pid);
    }

    /// Drops retired identities older than `RETIRED_FOR`.
    pub fn purge_retired(&mut self) {
        let mut t = self.table();
        t.retired.retain(|_, (_, at)| at.elapsed() < RETIRED_FOR);
        t.execed.retain(|_, e| e.since.elapsed() < RETIRED_FOR);
    }

    /// The process exited (the kernel already dropped it from traced_pids), and the requests
    /// decoded before its exit went through.
    pub fn on_exit(&mut self, pid: u32) -> Option<Arc<TracedProcess>> {
        let mut t = self.table();
        t.retired.remove(&pid);
        t.execed.remove(&pid);
        t.procs.remove(&pid)
    }

    pub fn get(&self, pid: u32) -> Option<Arc<TracedProcess>> {
        self.table.get(pid)
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

/// `host:1234` for the parent becomes `host:1240` for the child; any other shape is kept.
fn instance_for_pid(parent_instance: &str, ppid: u32, pid: u32) -> String {
    match parent_instance.strip_suffix(&ppid.to_string()) {
        Some(prefix) => format!("{prefix}{pid}"),
        None => parent_instance.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(pid: u32, exe: &str, parent: Option<u32>) -> Arc<TracedProcess> {
        let service = ServiceId { name: exe.rsplit('/').next().unwrap().into(), ..Default::default() };
        Arc::new(TracedProcess { pid, exe: exe.into(), service, parent, k8s: None, language: "unknown" })
    }

    fn name_at(t: &Table, pid: u32, ts_ns: u64) -> Option<String> {
        t.get_at(pid, ts_ns).map(|p| p.service.name.clone())
    }

    #[test]
    fn exec_event_before_discovery() {
        let mut t = Table::default();
        t.insert(process(7, "/usr/bin/python3", None), 100);
        assert!(!t.exec(7, 1_000, Some("/opt/go-http".as_ref())));
        // Before the exec: Python's; after it, nobody's until discovery decides.
        assert_eq!(name_at(&t, 7, 999).as_deref(), Some("python3"));
        assert_eq!(name_at(&t, 7, 1_000), None);
        t.insert(process(7, "/opt/go-http", None), 2_000);
        assert_eq!(name_at(&t, 7, 999).as_deref(), Some("python3"));
        assert_eq!(name_at(&t, 7, 1_500).as_deref(), Some("go-http"));
        assert_eq!(name_at(&t, 7, 3_000).as_deref(), Some("go-http"));
    }

    #[test]
    fn discovery_before_exec_event() {
        let mut t = Table::default();
        t.insert(process(7, "/usr/bin/python3", None), 100);
        t.insert(process(7, "/opt/go-http", None), 2_000);
        // Until the event comes, the boundary is when discovery saw the new program.
        assert_eq!(name_at(&t, 7, 1_500).as_deref(), Some("python3"));
        assert_eq!(name_at(&t, 7, 2_000).as_deref(), Some("go-http"));
        assert!(!t.exec(7, 1_000, Some("/opt/go-http".as_ref())));
        assert_eq!(name_at(&t, 7, 999).as_deref(), Some("python3"));
        assert_eq!(name_at(&t, 7, 1_000).as_deref(), Some("go-http"));
    }

    #[test]
    fn exec_with_the_process_found_gone_in_between() {
        for event_first in [true, false] {
            let mut t = Table::default();
            t.insert(process(7, "/usr/bin/python3", None), 100);
            if event_first {
                assert!(!t.exec(7, 1_000, Some("/opt/go-http".as_ref())));
            }
            // The new program does not listen yet: no longer selected, then selected again.
            t.retire(7);
            assert_eq!(name_at(&t, 7, 999).as_deref(), Some("python3"));
            t.insert(process(7, "/opt/go-http", None), 2_000);
            if !event_first {
                assert!(!t.exec(7, 1_000, Some("/opt/go-http".as_ref())));
            }
            assert_eq!(name_at(&t, 7, 999).as_deref(), Some("python3"), "event first: {event_first}");
            assert_eq!(name_at(&t, 7, 1_000).as_deref(), Some("go-http"), "event first: {event_first}");
        }
    }

    #[test]
    fn reexec_and_metadata_updates_keep_the_identity() {
        let mut t = Table::default();
        t.insert(process(7, "/usr/sbin/nginx", None), 100);
        assert!(!t.exec(7, 1_000, Some("/usr/sbin/nginx".as_ref())));
        assert_eq!(name_at(&t, 7, 2_000).as_deref(), Some("nginx"));
        // Discovery's update of the same program (new metadata) applies to every request.
        t.insert(process(7, "/usr/sbin/nginx", None), 3_000);
        assert_eq!(name_at(&t, 7, 10).as_deref(), Some("nginx"));
        assert!(t.execed.is_empty());
    }

    #[test]
    fn inherited_child_that_execs_stops_being_its_parents() {
        let mut t = Table::default();
        t.insert(process(7, "/usr/sbin/nginx", None), 100);
        t.procs.insert(8, process(8, "/usr/sbin/nginx", Some(7)));
        // Even the same executable: discovery decides afresh for a child.
        assert!(t.exec(8, 1_000, Some("/usr/sbin/nginx".as_ref())));
        t.procs.remove(&8);
        assert_eq!(name_at(&t, 8, 999).as_deref(), Some("nginx"));
        assert_eq!(name_at(&t, 8, 1_000), None);
        // A process the agent does not trace: nothing to do.
        assert!(!t.exec(9, 1_000, None));
    }

    #[test]
    fn sdk_language_from_name_then_elf() {
        assert_eq!(sdk_language_of(std::path::Path::new("/opt/py/bin/python3.11")), "python");
        assert_eq!(sdk_language_of(std::path::Path::new("/usr/lib/jvm/bin/java")), "java");
        // This test binary: an ELF file without Go's build info.
        assert_eq!(sdk_language_of(std::path::Path::new("/proc/self/exe")), "unknown");
        assert_eq!(sdk_language_of(std::path::Path::new("/nonexistent/server")), "unknown");
    }
}
