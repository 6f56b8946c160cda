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
}

impl Table {
    fn get(&self, pid: u32) -> Option<Arc<TracedProcess>> {
        self.procs.get(&pid).or_else(|| self.retired.get(&pid).map(|(p, _)| p)).cloned()
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
        {
            let mut t = self.table();
            t.retired.remove(&pid);
            t.procs.insert(pid, Arc::new(p));
        }
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

    /// An inherited child that runs another program is no longer its parent's service;
    /// discovery decides afresh on its next scan.
    pub fn on_exec(&mut self, pid: u32) {
        if self.get(pid).is_some_and(|p| p.parent.is_some()) {
            self.remove(pid);
        }
    }

    /// Discovery found `pid` gone: stop tracing it, but keep its identity (see `retired`).
    pub fn retire(&mut self, pid: u32) {
        let _ = self.map.delete(&pid.to_ne_bytes());
        let mut t = self.table();
        if let Some(p) = t.procs.remove(&pid) {
            t.retired.insert(pid, (p, Instant::now()));
        }
    }

    /// Drops retired identities older than `RETIRED_FOR`.
    pub fn purge_retired(&mut self) {
        self.table().retired.retain(|_, (_, at)| at.elapsed() < RETIRED_FOR);
    }

    /// The process exited (the kernel already dropped it from traced_pids), and the requests
    /// decoded before its exit went through.
    pub fn on_exit(&mut self, pid: u32) -> Option<Arc<TracedProcess>> {
        let mut t = self.table();
        t.retired.remove(&pid);
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

    #[test]
    fn sdk_language_from_name_then_elf() {
        assert_eq!(sdk_language_of(std::path::Path::new("/opt/py/bin/python3.11")), "python");
        assert_eq!(sdk_language_of(std::path::Path::new("/usr/lib/jvm/bin/java")), "java");
        // This test binary: an ELF file without Go's build info.
        assert_eq!(sdk_language_of(std::path::Path::new("/proc/self/exe")), "unknown");
        assert_eq!(sdk_language_of(std::path::Path::new("/nonexistent/server")), "unknown");
    }
}
