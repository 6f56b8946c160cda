//! The attach stage's loop: what discovery found becomes the traced-process table (and the
//! kernel's `traced_pids`), Go executables get the Go probes and OpenSSL users the OpenSSL
//! probes.
use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

use super::{GoProbes, TlsProbes, Traced, TracedProcess};
use crate::discover::ProcessEvent;
use crate::telemetry::Internal;

/// Runs the stage on the current runtime until `rx` closes.
pub fn spawn(
    rx: mpsc::Receiver<Vec<ProcessEvent>>,
    traced: Arc<Traced>,
    go: Option<GoProbes>,
    tls: Option<TlsProbes>,
    tel: Internal,
) -> JoinHandle<()> {
    tokio::spawn(run(rx, traced, go, tls, tel))
}

async fn run(
    mut rx: mpsc::Receiver<Vec<ProcessEvent>>,
    traced: Arc<Traced>,
    go: Option<GoProbes>,
    tls: Option<TlsProbes>,
    tel: Internal,
) {
    while let Some(batch) = rx.recv().await {
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
            match ev {
                ProcessEvent::Instrumented(m) | ProcessEvent::Updated(m) => {
                    let pid = m.info.pid;
                    let exe = m.info.exe.clone();
                    // Reads the executable's ELF section headers: microseconds, once per process.
                    let language = crate::attach::sdk_language_of(&m.info.exe);
                    let p = TracedProcess {
                        pid,
                        exe: m.info.exe,
                        service: m.service,
                        parent: None,
                        k8s: m.info.k8s,
                        language,
                    };
                    match traced.add(p) {
                        Ok(()) => {
                            if let Some(go) = &go {
                                go.attach(pid, exe);
                            }
                            if let Some(tls) = &tls {
                                tls.attach(pid);
                            }
                        }
                        Err(e) => warn!(pid, error = %e, "Process could not be instrumented."),
                    }
                    traced.update_children(pid);
                }
                ProcessEvent::Gone { pid } => {
                    // Stop tracing now, but keep the identity for the requests of this
                    // process still in the pipeline.
                    if !execed.contains(&pid) {
                        traced.retire(pid);
                    }
                    if let Some(go) = &go {
                        go.detach(pid);
                    }
                    if let Some(tls) = &tls {
                        tls.detach(pid);
                    }
                }
            }
        }
        traced.purge_retired();
        tel.processes_instrumented(traced.len());
    }
}
