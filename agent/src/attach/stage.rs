//! The attach stage's loop, sole owner of the traced-process table: what discovery found
//! becomes the table (and the kernel's `traced_pids`), Go executables get the Go probes and
//! TLS library users the TLS probes; the kernel's fork, exec and exit events arrive as
//! [`Lifecycle`] messages from the stages that see them in order.
use std::collections::HashSet;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::{GoProbes, TlsProbes, Traced, TracedProcess};
use crate::discover::ProcessEvent;
use crate::telemetry::Internal;

/// A process lifecycle change the kernel reported, for the table's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessChange {
    /// A traced process forked `pid`, which the kernel now traces: it inherits the identity.
    Fork { pid: u32, ppid: u32 },
    /// `pid` ran another program at `ts_ns` (kernel clock).
    Exec { pid: u32, ts_ns: u64 },
    /// `pid` exited and its requests decoded before the exit went through.
    Exit { pid: u32 },
}

/// Changes in the order they happened; `applied` (when set) is answered once they are in the
/// table, so that the sender can hold back the requests that depend on them (a forked
/// child's first requests must find the child's identity).
#[derive(Debug)]
pub struct Lifecycle {
    pub changes: Vec<ProcessChange>,
    pub applied: Option<oneshot::Sender<()>>,
}

/// Runs the stage on the current runtime until both inputs close.
pub fn spawn(
    discovered: mpsc::Receiver<Vec<ProcessEvent>>,
    lifecycle: mpsc::Receiver<Lifecycle>,
    traced: Traced,
    go: Option<GoProbes>,
    tls: Option<TlsProbes>,
    tel: Internal,
) -> JoinHandle<()> {
    tokio::spawn(run(discovered, lifecycle, traced, go, tls, tel))
}

async fn run(
    mut discovered: mpsc::Receiver<Vec<ProcessEvent>>,
    mut lifecycle: mpsc::Receiver<Lifecycle>,
    mut traced: Traced,
    go: Option<GoProbes>,
    tls: Option<TlsProbes>,
    tel: Internal,
) {
    let (mut discovering, mut living) = (true, true);
    while discovering || living {
        tokio::select! {
            batch = discovered.recv(), if discovering => match batch {
                Some(batch) => apply_discovered(&mut traced, batch, go.as_ref(), tls.as_ref()),
                None => discovering = false,
            },
            msg = lifecycle.recv(), if living => match msg {
                Some(msg) => {
                    apply_changes(&mut traced, &msg.changes);
                    if let Some(applied) = msg.applied {
                        let _ = applied.send(());
                    }
                }
                None => living = false,
            },
        }
        tel.processes_instrumented(traced.len());
    }
}

fn apply_changes(traced: &mut Traced, changes: &[ProcessChange]) {
    for change in changes {
        match *change {
            ProcessChange::Fork { pid, ppid } => {
                if let Some(p) = traced.inherit(pid, ppid) {
                    info!(pid, ppid, service = %p.service.name, "Child of an instrumented process instrumented.");
                }
            }
            ProcessChange::Exec { pid, ts_ns } => {
                let runs = crate::discover::proc::read_exe(std::path::Path::new("/proc"), pid).ok();
                traced.on_exec(pid, ts_ns, runs.as_deref());
            }
            ProcessChange::Exit { pid } => {
                traced.on_exit(pid);
            }
        }
    }
}

fn apply_discovered(traced: &mut Traced, batch: Vec<ProcessEvent>, go: Option<&GoProbes>, tls: Option<&TlsProbes>) {
    // A pid gone and instrumented in one batch ran exec: it stays in the kernel's map
    // throughout, or a transfer in between (an HTTP/2 preface) would be lost.
    let execed: HashSet<u32> = batch
        .iter()
        .filter_map(|ev| match ev {
            ProcessEvent::Instrumented(m) => Some(m.info.pid),
            _ => None,
        })
        .collect();
    for ev in batch {
        let new = matches!(ev, ProcessEvent::Instrumented(_));
        match ev {
            ProcessEvent::Instrumented(m) | ProcessEvent::Updated(m) => {
                let pid = m.info.pid;
                let exe = m.info.exe.clone();
                let (service, namespace, criteria) =
                    (m.service.name.clone(), m.service.namespace.clone(), m.criteria_index);
                // Reads the executable's ELF section headers: microseconds, once per process.
                let language = crate::attach::sdk_language_of(&m.info.exe);
                let p =
                    TracedProcess { pid, exe: m.info.exe, service: m.service, parent: None, k8s: m.info.k8s, language };
                match traced.add(p) {
                    Ok(()) => {
                        // Said once the kernel traces it: what follows is measured.
                        if new {
                            info!(pid, exe = %exe.display(), service = %service, namespace = %namespace, criteria, "Process instrumented.");
                        }
                        if let Some(go) = go {
                            go.attach(pid, exe);
                        }
                        if let Some(tls) = tls {
                            tls.attach(pid);
                        }
                    }
                    Err(e) => {
                        warn!(pid, error = %crate::telemetry::error_chain(&e), "Process could not be instrumented.")
                    }
                }
                traced.update_children(pid);
            }
            ProcessEvent::Gone { pid } => {
                // Stop tracing now, but keep the identity for the requests of this
                // process still in the pipeline.
                if !execed.contains(&pid) {
                    traced.retire(pid);
                }
                if let Some(go) = go {
                    go.detach(pid);
                }
                if let Some(tls) = tls {
                    tls.detach(pid);
                }
            }
        }
    }
    traced.purge_retired();
}
