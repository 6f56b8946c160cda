//! The TLS probes: OpenSSL's (`bpf/openssl.bpf.c`), attached per process to the files that
//! define `SSL_read` and `SSL_write` among those it maps, and rustls's (`bpf/rustls.bpf.c`),
//! attached to a Rust executable whose symbols name rustls's plaintext reader and writer
//! (`discover::tls`). They report TLS plaintext as data of the connection's socket.
//!
//! Runs on one dedicated thread that owns the skeletons (libbpf objects are not `Send`), like
//! the Go probes. A process that maps no libssl yet (Python imports `ssl` on first use) is
//! looked at again every few seconds while it is traced, every 50 ms in its first 2 s (one
//! found as it starts has not mapped its libraries yet). Children a traced process forks are
//! attached as the agent learns of the fork (`Traced::inherit`): uprobes do not follow a fork,
//! so what such a child does in the first milliseconds is not read (a socket-BIO connection is
//! named by its next read or write after that).
use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tracing::{debug, info, warn};

use super::skel::openssl::{OpensslSkel, OpensslSkelBuilder};
use super::skel::rustls::{RustlsSkel, RustlsSkelBuilder};
use super::AttachError;
use crate::discover::tls::{self, FileFunctions, RustlsFunctions, SslFunctions};

/// How often processes without OpenSSL are looked at again, and the unlinked count read.
const RECHECK: Duration = Duration::from_secs(2);
/// A process found as it starts maps its libraries in its first milliseconds, and a short-lived
/// client (curl) makes its requests soon after: during its first FRESH it is looked at again
/// every FRESH_RECHECK.
const FRESH: Duration = Duration::from_secs(2);
const FRESH_RECHECK: Duration = Duration::from_millis(50);

enum Command {
    Attach { pid: u32 },
    Detach { pid: u32 },
}

/// Handle to the OpenSSL probes' thread.
#[derive(Clone)]
pub struct TlsProbes {
    tx: mpsc::Sender<Command>,
}

/// The capture family's maps the TLS probes share: its ring buffer and loss count, the traced
/// processes, the calls in progress and memory-BIO records it names sockets from, the sockets
/// it named (and, for rustls's connections, forgets at close: `tls_conns`), and its HTTP/2
/// frame walks (a TLS connection's plaintext is walked like a cleartext one's, and forgotten at
/// close).
pub struct TlsMaps {
    pub events: OwnedFd,
    pub events_lost: OwnedFd,
    pub traced_pids: OwnedFd,
    pub ssl_calls: OwnedFd,
    pub ssl_socks: OwnedFd,
    pub ssl_ciphers: OwnedFd,
    pub tls_conns: OwnedFd,
    pub h2_walks: OwnedFd,
}

/// What the thread reports: processes probed, and plaintext transfers without a socket.
pub struct TlsStats {
    pub processes: Gauge,
    pub unlinked: Counter,
}

impl TlsProbes {
    /// Loads `bpf/openssl.bpf.c` and `bpf/rustls.bpf.c` on their own thread, on the capture
    /// family's maps.
    pub fn start(maps: TlsMaps, ring: super::LoadOptions, stats: TlsStats) -> Result<TlsProbes, AttachError> {
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("beyla-tls-probes".into())
            .spawn(move || {
                match load(&maps, ring).and_then(|o| Ok(Skels { openssl: o, rustls: load_rustls(&maps, ring)? })) {
                    Ok(skels) => {
                        let _ = ready_tx.send(Ok(()));
                        run(skels, rx, stats);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .expect("spawning the OpenSSL probes thread");
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(TlsProbes { tx }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(AttachError::NoFamily),
        }
    }

    /// Probes `pid`'s OpenSSL, now or once it maps one.
    pub fn attach(&self, pid: u32) {
        let _ = self.tx.send(Command::Attach { pid });
    }

    /// Removes the probes of a process that is gone.
    pub fn detach(&self, pid: u32) {
        let _ = self.tx.send(Command::Detach { pid });
    }
}

/// Opens a TLS probes' skeleton (`$builder`) on the capture family's maps it names, with the
/// capture's ring wake-up rule, and loads it.
macro_rules! load_on_shared_maps {
    ($builder:ty, $family:literal, $maps:expr, $ring:expr, [$($map:ident),*]) => {{
        let storage: &'static mut MaybeUninit<libbpf_rs::OpenObject> = Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open =
            <$builder>::default().open(storage).map_err(|source| AttachError::Open { family: $family, source })?;
        $(
            open.maps.$map.reuse_fd($maps.$map.as_fd())
                .map_err(|source| AttachError::Map { map: stringify!($map), source })?;
        )*
        if let Some(rodata) = open.maps.rodata_data.as_deref_mut() {
            // The same wake-up rule as the capture family's, on the same ring.
            rodata.wakeup_len = $ring.wakeup_len;
            rodata.wakeup_bytes = $ring.wakeup_bytes();
        }
        for mut prog in open.open_object_mut().progs_mut() {
            super::set_uprobe_mode(&mut prog, &$ring);
        }
        open.load().map_err(|source| AttachError::Load { family: $family, source })
    }};
}

fn load(maps: &TlsMaps, ring: super::LoadOptions) -> Result<OpensslSkel<'static>, AttachError> {
    load_on_shared_maps!(
        OpensslSkelBuilder,
        "openssl",
        maps,
        ring,
        [events, events_lost, traced_pids, ssl_calls, ssl_socks, ssl_ciphers, h2_walks]
    )
}

fn load_rustls(maps: &TlsMaps, ring: super::LoadOptions) -> Result<RustlsSkel<'static>, AttachError> {
    load_on_shared_maps!(
        RustlsSkelBuilder,
        "rustls",
        maps,
        ring,
        [events, events_lost, traced_pids, ssl_calls, ssl_socks, tls_conns, h2_walks]
    )
}

/// The two libraries' probes, owned by the thread.
struct Skels {
    openssl: OpensslSkel<'static>,
    rustls: RustlsSkel<'static>,
}

/// A file with OpenSSL, by device and inode: inspected once however many processes map it.
type FileKey = (u64, u64);
type Inspected = HashMap<FileKey, FileFunctions>;

fn run(mut skel: Skels, rx: mpsc::Receiver<Command>, stats: TlsStats) {
    let mut procs: HashMap<u32, Vec<Link>> = HashMap::new();
    // Processes without TLS probes yet, since when.
    let mut waiting: HashMap<u32, Instant> = HashMap::new();
    let mut inspected: Inspected = HashMap::new();
    let mut unlinked_seen = 0u64;
    let mut next_full = Instant::now() + RECHECK;
    let alive = |pid: u32| std::path::Path::new(&format!("/proc/{pid}")).exists();
    loop {
        let now = Instant::now();
        let fresh = waiting.values().any(|since| now.duration_since(*since) < FRESH);
        let due = if fresh { next_full.min(now + FRESH_RECHECK) } else { next_full };
        match rx.recv_timeout(due.saturating_duration_since(now)) {
            Ok(Command::Attach { pid }) => {
                if !procs.contains_key(&pid) && !try_attach(&mut skel, pid, &mut inspected, &mut procs) {
                    waiting.entry(pid).or_insert(now);
                }
            }
            Ok(Command::Detach { pid }) => {
                waiting.remove(&pid);
                if procs.remove(&pid).is_some() {
                    debug!(pid, "TLS probes detached.");
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        if now >= next_full {
            next_full = now + RECHECK;
            // Inherited children are not reported gone by discovery: their links go here.
            procs.retain(|&pid, _| alive(pid));
            waiting.retain(|&pid, _| alive(pid) && !try_attach(&mut skel, pid, &mut inspected, &mut procs));
            let total = read_unlinked(&skel);
            stats.unlinked.inc_by(total.saturating_sub(unlinked_seen));
            unlinked_seen = unlinked_seen.max(total);
        } else if fresh {
            waiting.retain(|&pid, since| {
                now.duration_since(*since) >= FRESH
                    || (alive(pid) && !try_attach(&mut skel, pid, &mut inspected, &mut procs))
            });
        }
        stats.processes.set(procs.len() as i64);
    }
}

/// The per-CPU counts of plaintext transfers without a socket, summed over both libraries.
fn read_unlinked(skel: &Skels) -> u64 {
    let sum = |map: &dyn MapCore| {
        let Ok(Some(values)) = map.lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY) else { return 0 };
        values.iter().filter_map(|v| Some(u64::from_ne_bytes(v.get(..8)?.try_into().ok()?))).sum::<u64>()
    };
    sum(&skel.openssl.maps.ssl_stats) + sum(&skel.rustls.maps.rustls_stats)
}

/// Attaches to every OpenSSL `pid` maps, and to its executable's rustls; false if it has
/// neither (yet).
fn try_attach(skels: &mut Skels, pid: u32, inspected: &mut Inspected, procs: &mut HashMap<u32, Vec<Link>>) -> bool {
    let Ok(candidates) = tls::candidates(pid) else { return false };
    let mut ssl = Vec::new();
    let mut rustls = None;
    let mut bio_write = None;
    for c in candidates {
        let Ok(meta) = std::fs::metadata(&c.path) else { continue };
        let key = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        };
        let found = inspected.entry(key).or_insert_with(|| {
            tls::inspect(&c.path).unwrap_or_else(|e| {
                debug!(file = %c.shown, error = %e, "Cannot read a candidate TLS library.");
                FileFunctions::default()
            })
        });
        if let Some(f) = found.ssl {
            ssl.push((c.clone(), f));
        }
        if let (None, Some(f)) = (&rustls, &found.rustls) {
            rustls = Some((c.clone(), f.clone()));
        }
        if let (None, Some(offset)) = (&bio_write, found.bio_write) {
            bio_write = Some((c, offset));
        }
    }
    let skel = &mut skels.openssl;
    let mut links = Vec::new();
    if let Some((c, f)) = &rustls {
        match attach_rustls(&mut skels.rustls, pid, &c.path, f) {
            Ok(l) => {
                info!(pid, executable = %c.shown, probes = l.len(), "rustls probes attached.");
                links.extend(l);
            }
            Err(e) => {
                warn!(pid, executable = %c.shown, error = %crate::telemetry::error_chain(&e), "rustls probes failed to attach; this process's TLS traffic stays opaque.")
            }
        }
    }
    for (c, f) in &ssl {
        match attach(skel, pid, &c.path, f) {
            Ok(l) => {
                info!(pid, library = %c.shown, probes = l.len(), "OpenSSL probes attached.");
                links.extend(l);
            }
            Err(e) => {
                warn!(pid, library = %c.shown, error = %crate::telemetry::error_chain(&e), "OpenSSL probes failed to attach; this process's TLS traffic stays opaque.")
            }
        }
    }
    if links.is_empty() {
        return false;
    }
    // Memory BIOs hand their records over through BIO_write (libcrypto's, or the executable's).
    if let (false, Some((c, offset))) = (ssl.is_empty(), bio_write) {
        match super::attach_uprobe(&skel.progs.ssl_bio_write, false, pid, &c.path, offset) {
            Ok(l) => links.push(l),
            Err(e) => {
                warn!(pid, library = %c.shown, error = %crate::telemetry::error_chain(&e), "BIO_write probe failed to attach; TLS through memory BIOs stays opaque.")
            }
        }
    }
    procs.insert(pid, links);
    true
}

fn attach(
    skel: &mut OpensslSkel<'static>,
    pid: u32,
    path: &std::path::Path,
    f: &SslFunctions,
) -> Result<Vec<Link>, AttachError> {
    let p = &mut skel.progs;
    let mut links = Vec::new();
    let mut at = |prog: &libbpf_rs::ProgramMut<'_>, func: &str, offset: u64, ret: bool| {
        let link = super::attach_uprobe(prog, ret, pid, path, offset).map_err(|source| AttachError::Attach {
            family: "openssl",
            program: format!("{func}{}", if ret { " return" } else { "" }),
            source,
        })?;
        links.push(link);
        Ok::<(), AttachError>(())
    };
    // Entries and returns of the same function go together: a return without its entry
    // finds no call, an entry without its return leaves one in the LRU map.
    for (prog, func, offset) in [
        (&p.ssl_read, "SSL_read", Some(f.read)),
        (&p.ssl_write, "SSL_write", Some(f.write)),
        (&p.ssl_read_ex, "SSL_read_ex", f.read_ex),
        (&p.ssl_write_ex, "SSL_write_ex", f.write_ex),
    ] {
        let Some(offset) = offset else { continue };
        at(prog, func, offset, false)?;
        at(&p.ssl_ret, func, offset, true)?;
    }
    if let Some(offset) = f.free {
        at(&p.ssl_free, "SSL_free", offset, false)?;
    }
    if let Some(offset) = f.handshake {
        at(&p.ssl_handshake, "SSL_do_handshake", offset, false)?;
        at(&p.ssl_ret, "SSL_do_handshake", offset, true)?;
    }
    Ok(links)
}

fn attach_rustls(
    skel: &mut RustlsSkel<'static>,
    pid: u32,
    path: &std::path::Path,
    f: &RustlsFunctions,
) -> Result<Vec<Link>, AttachError> {
    let p = &mut skel.progs;
    let mut links = Vec::new();
    let reads = f.reader_read.map(|o| (&p.rtls_read, &p.rtls_read_ret, "Reader::read", o));
    let polls = f.poll_reads.iter().map(|&o| (&p.rtls_poll_read, &p.rtls_poll_read_ret, "TlsStream::poll_read", o));
    let always = [
        (&p.rtls_fill, &p.rtls_fill_ret, "DeframerVecBuffer::read", f.deframer_read),
        (&p.rtls_write, &p.rtls_write_ret, "CommonState::buffer_plaintext", f.buffer_plaintext),
    ];
    let writevs =
        f.write_vectoreds.iter().map(|&o| (&p.rtls_writev, &p.rtls_writev_ret, "PlaintextSink::write_vectored", o));
    for (entry, ret, func, offset) in always.into_iter().chain(reads).chain(polls).chain(writevs) {
        for (prog, is_ret) in [(entry, false), (ret, true)] {
            let link = super::attach_uprobe(prog, is_ret, pid, path, offset).map_err(|source| AttachError::Attach {
                family: "rustls",
                program: format!("{func}{}", if is_ret { " return" } else { "" }),
                source,
            })?;
            links.push(link);
        }
    }
    Ok(links)
}
