//! The decode stage's loop: socket and process events in, decoded requests out, in batches;
//! the tracker's connections expire on event time.
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

use super::context::ConnRef;
use super::{DecodeOptions, Decoded, Tracker, TrackerLimits};
use crate::attach::stage::{Lifecycle, ProcessChange};
use crate::attach::TracedView;
use crate::events::RawEvent;
use crate::telemetry::Internal;

/// Runs the stage on the current runtime until `rx` closes.
pub fn spawn(
    rx: mpsc::Receiver<Vec<RawEvent>>,
    tx: mpsc::Sender<Decoded>,
    lifecycle: mpsc::Sender<Lifecycle>,
    traced: TracedView,
    options: DecodeOptions,
    tel: Internal,
) -> JoinHandle<()> {
    tokio::spawn(run(rx, tx, lifecycle, traced, options, tel))
}

/// `BEYLA_DEBUG_RECORD_EVENTS=<file>`: the socket events decode reads are appended to the
/// file as decode fixtures (`decode::fixture`). A debugging aid: it writes on the stage's
/// thread.
fn recorder() -> Option<std::io::BufWriter<std::fs::File>> {
    let path = std::env::var_os("BEYLA_DEBUG_RECORD_EVENTS")?;
    match std::fs::OpenOptions::new().create(true).append(true).open(&path) {
        Ok(f) => {
            warn!(path = %std::path::Path::new(&path).display(), "Recording socket events (BEYLA_DEBUG_RECORD_EVENTS).");
            Some(std::io::BufWriter::new(f))
        }
        Err(error) => {
            warn!(path = %std::path::Path::new(&path).display(), %error, "Cannot record socket events.");
            None
        }
    }
}

fn record_batch(w: &mut std::io::BufWriter<std::fs::File>, batch: &[RawEvent]) {
    use std::io::Write;
    for l in batch.iter().filter_map(crate::decode::fixture::line) {
        let _ = writeln!(w, "{l}");
    }
    let _ = w.flush();
}

async fn run(
    mut rx: mpsc::Receiver<Vec<RawEvent>>,
    tx: mpsc::Sender<Decoded>,
    lifecycle: mpsc::Sender<Lifecycle>,
    traced: TracedView,
    options: DecodeOptions,
    tel: Internal,
) {
    let mut tracker = Tracker::new(TrackerLimits::default()).with_options(options);
    let table = traced.clone();
    tracker.set_go_oracle(Box::new(move |pid| table.get(pid).is_some_and(|p| p.language == "go")));
    tracker.set_pool_oracle(pool_oracle());
    let mut expiry = tokio::time::interval(Duration::from_secs(5));
    // Idle connections expire on event time too, so a lagging agent does not drop live ones.
    let mut watermark_ns = 0;
    let mut exits: Vec<(u32, u64)> = Vec::new();
    let mut record = recorder();
    loop {
        let mut out = Decoded::default();
        let mut changes = Vec::new();
        tokio::select! {
            batch = rx.recv() => {
                let Some(batch) = batch else {
                    // Nothing more comes: what waits for a call that will not be reported goes.
                    let mut out = Decoded::default();
                    tracker.flush(&mut out);
                    if !out.requests.is_empty() {
                        let _ = tx.send(out).await;
                    }
                    return;
                };
                if let Some(w) = &mut record {
                    record_batch(w, &batch);
                }
                for ev in batch {
                    match ev {
                        RawEvent::Data(d) => tracker.on_data(&d, &mut out),
                        RawEvent::Close { pid, sock_id, .. } => tracker.on_close(pid, sock_id, &mut out),
                        RawEvent::Fork { pid, ppid } => changes.push(ProcessChange::Fork { pid, ppid }),
                        RawEvent::Exec { pid, ts_ns } => changes.push(ProcessChange::Exec { pid, ts_ns }),
                        // Process events come on their own ring buffer: the exit can be read
                        // before the process's last socket events. It is applied once the
                        // watermark passes it, when all of those have been decoded.
                        RawEvent::Exit { pid, ts_ns } => exits.push((pid, ts_ns)),
                        RawEvent::GoClient {
                            pid,
                            server_sock,
                            server_stream,
                            client_sock,
                            stream,
                            local,
                            remote,
                            written,
                        } => {
                            let client = ConnRef { pid, tid: 0, sock: client_sock, stream, local, remote };
                            tracker.on_go_client((server_sock, server_stream), client, written)
                        }
                        RawEvent::GoHandlerStart { pid, server_sock, server_stream, ts_ns, trace_id } => {
                            tracker.on_go_handler_start(pid, (server_sock, server_stream), ts_ns, trace_id)
                        }
                        RawEvent::Drained { ts_ns } => {
                            watermark_ns = ts_ns;
                            tracker.on_watermark(ts_ns, &mut out);
                            out.drained_ns = Some(ts_ns);
                            exits.retain(|&(pid, exit_ns)| {
                                if exit_ns > ts_ns {
                                    return true;
                                }
                                tracker.on_exit(pid, &mut out);
                                out.exited.push(pid);
                                false
                            });
                        }
                    }
                }
            }
            _ = expiry.tick() => tracker.expire(watermark_ns, &mut out),
        }
        for e in &out.errors {
            tel.decode_failed(*e);
        }
        for r in &out.requests {
            tel.request_decoded(r.role);
        }
        for p in out.claimed.drain(..) {
            tel.connection_claimed(p);
        }
        tel.trace_context_mismatched(out.trace_mismatches);
        tel.client_calls_unlinked(out.unlinked_calls);
        tel.server_requests_unlinked(out.unlinked_requests);
        // The table's owner applies forks and execs before these requests go on: a child's
        // first requests must find the identity it inherited.
        if !changes.is_empty() {
            let (applied, done) = tokio::sync::oneshot::channel();
            if lifecycle.send(Lifecycle { changes, applied: Some(applied) }).await.is_ok() {
                let _ = done.await;
            }
        }
        // Waiting here (not dropping) pushes back to the ring buffer, where the kernel
        // counts what it cannot hold: loss is never silent.
        let worth_sending = !(out.requests.is_empty() && out.exited.is_empty() && out.drained_ns.is_none());
        if worth_sending && tx.send(out).await.is_err() {
            tel.batch_dropped("decode_to_enrich");
            return;
        }
    }
}

/// Threads named by a runtime whose workers steal each other's tasks: a task (and the request
/// it serves) may resume on any of them, so the thread that writes a call says nothing about
/// which request made it. tokio's multi-threaded runtime (`tokio-rt-worker`, before tokio
/// 1.44 `tokio-runtime-worker`), Java's ForkJoinPool (virtual threads' carriers, the common
/// pool) and .NET's thread pool. The kernel keeps 15 bytes of a thread's name.
const POOL_THREAD_PREFIXES: &[&str] =
    &["tokio-rt-worker", "tokio-runtime-w", "ForkJoinPool", ".NET TP Worker", ".NET ThreadPool"];

fn is_pool_thread_name(comm: &str) -> bool {
    POOL_THREAD_PREFIXES.iter().any(|p| comm.starts_with(p))
}

/// Tells pool workers by their name (`/proc/<pid>/task/<tid>/comm`), read once per thread
/// (asked only when a call would be linked by thread).
fn pool_oracle() -> super::context::PoolOracle {
    let mut seen: foldhash::HashMap<(u32, u32), bool> = Default::default();
    Box::new(move |pid, tid| {
        if seen.len() >= 65_536 {
            seen.clear();
        }
        *seen.entry((pid, tid)).or_insert_with(|| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                .is_ok_and(|c| is_pool_thread_name(c.trim_end()))
        })
    })
}

#[cfg(test)]
mod pool_tests {
    use super::*;

    #[test]
    fn pool_workers_are_told_by_name() {
        for name in ["tokio-rt-worker", "tokio-runtime-w", "ForkJoinPool-1-", "ForkJoinPool.co", ".NET TP Worker"] {
            assert!(is_pool_thread_name(name), "{name}");
        }
        for name in ["python3", "http-nio-8080-e", "node", "tokio-rt", "pool-1-thread-1"] {
            assert!(!is_pool_thread_name(name), "{name}");
        }
        // This test's own thread is not one.
        let tid = unsafe { libc::gettid() } as u32;
        assert!(!pool_oracle()(std::process::id(), tid));
    }
}
