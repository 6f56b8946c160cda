//! Stage `attach`: loads the BPF hook families chosen by the kernel probe, attaches their
//! programs, and keeps the kernel's set of traced processes (`traced_pids`) in step with
//! discovery.
mod go;

mod kretprobe;
mod openssl;
pub mod stage;
mod traced;

use std::fmt::Debug;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, MapHandle, MapImpl, OpenObject};
use thiserror::Error;

pub use go::{GoProbes, SharedMaps};
pub use openssl::{TlsMaps, TlsProbes, TlsStats};
pub use traced::{sdk_language_of, Traced, TracedProcess, TracedView};

pub(crate) mod skel {
    pub mod process {
        include!(concat!(env!("OUT_DIR"), "/process.skel.rs"));
    }
    pub mod tracepoint_net {
        include!(concat!(env!("OUT_DIR"), "/tracepoint_net.skel.rs"));
    }
    pub mod kprobe_net {
        include!(concat!(env!("OUT_DIR"), "/kprobe_net.skel.rs"));
    }
    pub mod fentry_net {
        include!(concat!(env!("OUT_DIR"), "/fentry_net.skel.rs"));
    }
    pub mod socket_net {
        include!(concat!(env!("OUT_DIR"), "/socket_net.skel.rs"));
    }
    pub mod go {
        include!(concat!(env!("OUT_DIR"), "/go.skel.rs"));
    }
    pub mod openssl {
        include!(concat!(env!("OUT_DIR"), "/openssl.skel.rs"));
    }
    pub mod rustls {
        include!(concat!(env!("OUT_DIR"), "/rustls.skel.rs"));
    }
}

use crate::kernel::HookFamily;
use skel::fentry_net::{FentryNetSkel, FentryNetSkelBuilder};
use skel::kprobe_net::{KprobeNetSkel, KprobeNetSkelBuilder};
use skel::process::{ProcessSkel, ProcessSkelBuilder};
use skel::socket_net::{SocketNetSkel, SocketNetSkelBuilder};
use skel::tracepoint_net::{TracepointNetSkel, TracepointNetSkelBuilder};

#[derive(Debug, Error)]
pub enum AttachError {
    #[error("opening BPF family {family}")]
    Open {
        family: &'static str,
        #[source]
        source: libbpf_rs::Error,
    },
    #[error("loading BPF family {family} into the kernel: the verifier rejected it (see the libbpf log above) or the agent lacks CAP_BPF + CAP_PERFMON with an unlimited RLIMIT_MEMLOCK")]
    Load {
        family: &'static str,
        #[source]
        source: libbpf_rs::Error,
    },
    #[error("attaching BPF program {program} of family {family}")]
    Attach {
        family: &'static str,
        program: String,
        #[source]
        source: libbpf_rs::Error,
    },
    #[error("no BPF hook family to load on this kernel")]
    NoFamily,
    #[error("BPF family {family} has no program {program}")]
    MissingProgram { family: &'static str, program: &'static str },
    #[error("accessing BPF map {map}")]
    Map {
        map: &'static str,
        #[source]
        source: libbpf_rs::Error,
    },
}

/// The knobs written into the capture family before load.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// `ebpf.wakeup_len`: events per CPU between ring-buffer wake-ups.
    pub wakeup_len: u32,
    /// `ebpf.ring_buffer_size`: bytes of the socket events ring buffer.
    pub ring_buffer_size: u32,
    /// Keep in-flight syscall arguments in task storage (the kernel probe's `task_storage`);
    /// else in an LRU hash. The socket family keeps none.
    pub task_storage: bool,
    /// Load the uprobe programs (Go, TLS) for uprobe.multi links instead of perf-event uprobes:
    /// where the kernel creates perf uprobes for `CAP_SYS_ADMIN` alone and the agent lacks it,
    /// but lets it create uprobe.multi links (6.6+).
    pub uprobe_multi: bool,
}

impl LoadOptions {
    pub fn from_config(cfg: &crate::config::Config, plan: &crate::kernel::HookPlan) -> Self {
        LoadOptions {
            wakeup_len: cfg.ebpf.wakeup_len,
            ring_buffer_size: cfg.ebpf.ring_buffer_size,
            task_storage: plan.use_task_storage,
            uprobe_multi: false,
        }
    }

    /// Bytes waiting in the ring that wake the reader whatever `wakeup_len` says (a quarter of
    /// the ring), so that no `wakeup_len` can fill it; every program writing to it uses this.
    pub fn wakeup_bytes(&self) -> u32 {
        self.ring_buffer_size / 4
    }
}

/// The loaded socket capture family; all share `bpf/include/sock_capture.h` and its maps.
/// Held only to keep the programs loaded (their links are in `Probes`).
#[allow(dead_code)]
enum NetSkel {
    Socket(SocketNetSkel<'static>),
    Tracepoints(TracepointNetSkel<'static>),
    Kprobes(KprobeNetSkel<'static>),
    Fentry(FentryNetSkel<'static>),
}

/// Loaded, attached hook families. Dropping it detaches everything.
pub struct Probes {
    _process: ProcessSkel<'static>,
    _net: NetSkel,
    _attached: Attached,
    /// Name of the capture family in use (`socket`, `tracepoints`, `kprobes` or `fentry`).
    pub family: &'static str,
    /// Programs attached, for the log and `/internal/metrics`.
    pub programs: usize,
}

/// Owned handles to the maps the other stages use; `Send`, unlike the skeletons.
pub struct MapHandles {
    pub traced_pids: MapHandle,
    pub sock_events: MapHandle,
    pub process_events: MapHandle,
    pub events_lost: MapHandle,
    /// What discovery's change counter reads ([`read_proc_changes`]).
    pub proc_changes: MapHandle,
    /// The Go probes' maps, created with the capture family, which reads them at every write
    /// of a Go process (`bpf/include/goroutine.h`); the Go probes reuse them.
    pub go_offsets: MapHandle,
    pub go_serving: MapHandle,
    /// The TLS probes' calls in progress (OpenSSL's and rustls's), in which the capture names
    /// their sockets (`bpf/include/maps/ssl_calls.h`), and the HTTP/2 frame walks they continue.
    pub ssl_calls: MapHandle,
    pub ssl_socks: MapHandle,
    pub ssl_ciphers: MapHandle,
    pub tls_conns: MapHandle,
    pub h2_walks: MapHandle,
}

/// What the per-process uprobes (Go and TLS libraries) are started with.
#[derive(Debug, Clone, Copy)]
pub struct UprobeOptions {
    /// `discovery.skip_go_specific_tracers`: no Go probes, the generic ones serve Go too.
    pub skip_go_specific_tracers: bool,
    /// The Go probes write `traceparent` headers (`ebpf.context_propagation` decided it).
    pub propagate_headers: bool,
    /// The kernel creates uprobes for the agent, as perf events or as uprobe.multi links (the
    /// start-up check said why not otherwise).
    pub available: bool,
    /// Only as uprobe.multi links ([`LoadOptions::uprobe_multi`]).
    pub via_multi: bool,
}

impl UprobeOptions {
    pub fn from_config(cfg: &crate::config::Config, features: &crate::kernel::Features) -> Self {
        let skip = cfg.discovery.skip_go_specific_tracers;
        UprobeOptions {
            skip_go_specific_tracers: skip,
            propagate_headers: context_propagation(cfg.ebpf.context_propagation, features, skip),
            available: features.uprobes || features.uprobe_multi,
            via_multi: !features.uprobes && features.uprobe_multi,
        }
    }
}

/// Whether `ebpf.context_propagation` (`cp`) can write `traceparent` headers here, said once
/// in the log either way: it takes the Go probes and a kernel that lets BPF programs write
/// user memory (`bpf_probe_write_user`, refused under lockdown).
fn context_propagation(
    cp: crate::config::ContextPropagation,
    features: &crate::kernel::Features,
    skip_go_specific_tracers: bool,
) -> bool {
    if cp.tcp || cp.ip {
        tracing::warn!(
            context_propagation = %cp,
            "ebpf.context_propagation: `tcp` and `ip` are not implemented; only `headers` is (Go net/http and gRPC clients)."
        );
    }
    if !cp.headers {
        return false;
    }
    if skip_go_specific_tracers {
        tracing::warn!("ebpf.context_propagation: headers needs the Go probes, and discovery.skip_go_specific_tracers is set: no traceparent is written.");
        return false;
    }
    if !features.probe_write_user {
        let why = match features.lockdown.as_deref() {
            Some(l @ ("integrity" | "confidentiality")) => format!("kernel lockdown={l} forbids bpf_probe_write_user"),
            _ => "this kernel does not let BPF programs write user memory (bpf_probe_write_user)".to_string(),
        };
        tracing::warn!(
            "ebpf.context_propagation: headers is unavailable: {why}. Outgoing requests carry no traceparent; spans are still linked between processes on this host."
        );
        return false;
    }
    tracing::info!(
        "Context propagation: traceparent headers are written into outgoing Go net/http requests and gRPC calls."
    );
    true
}

/// Starts the Go probes and the TLS probes on the capture family's ring buffer and maps, each
/// on its own thread. Either may be unavailable: the agent says why and goes on without it
/// (the generic probes still serve those processes).
pub fn start_uprobes(
    maps: &MapHandles,
    load: LoadOptions,
    o: UprobeOptions,
    tel: &crate::telemetry::Internal,
) -> (Option<GoProbes>, Option<TlsProbes>) {
    use std::os::fd::AsFd;
    if !o.available {
        return (None, None);
    }
    if o.via_multi {
        tracing::info!("This kernel creates perf-event uprobes for CAP_SYS_ADMIN alone: the Go and TLS probes attach through uprobe.multi links.");
    }
    let load = LoadOptions { uprobe_multi: o.via_multi, ..load };
    let map_error = |e: std::io::Error| AttachError::Map { map: "events", source: libbpf_rs::Error::from(e) };
    let go = if o.skip_go_specific_tracers {
        tracing::info!(
            "discovery.skip_go_specific_tracers is set: Go programs are served by the generic probes alone."
        );
        None
    } else {
        let fds = (|| {
            let shared = SharedMaps {
                go_offsets: maps.go_offsets.as_fd().try_clone_to_owned()?,
                go_serving: maps.go_serving.as_fd().try_clone_to_owned()?,
            };
            Ok((maps.sock_events.as_fd().try_clone_to_owned()?, maps.events_lost.as_fd().try_clone_to_owned()?, shared))
        })();
        match fds.map_err(map_error).and_then(|(ev, lost, shared)| {
            GoProbes::start(ev, lost, shared, load, o.propagate_headers, tel.go_processes.clone())
        }) {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::warn!(error = %crate::telemetry::error_chain(&e), "Go probes unavailable; Go programs are served by the generic probes alone (no goroutine-aware trace links).");
                None
            }
        }
    };

    // TLS plaintext of OpenSSL and rustls users, whatever the capture family.
    let tls = (|| {
        Ok(TlsMaps {
            events: maps.sock_events.as_fd().try_clone_to_owned()?,
            events_lost: maps.events_lost.as_fd().try_clone_to_owned()?,
            traced_pids: maps.traced_pids.as_fd().try_clone_to_owned()?,
            ssl_calls: maps.ssl_calls.as_fd().try_clone_to_owned()?,
            ssl_socks: maps.ssl_socks.as_fd().try_clone_to_owned()?,
            ssl_ciphers: maps.ssl_ciphers.as_fd().try_clone_to_owned()?,
            tls_conns: maps.tls_conns.as_fd().try_clone_to_owned()?,
            h2_walks: maps.h2_walks.as_fd().try_clone_to_owned()?,
        })
    })()
    .map_err(map_error)
    .and_then(|m| {
        let stats = TlsStats { processes: tel.tls_processes.clone(), unlinked: tel.tls_unlinked.clone() };
        TlsProbes::start(m, load, stats)
    });
    let tls = match tls {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(error = %crate::telemetry::error_chain(&e), "TLS probes unavailable; TLS traffic of programs using OpenSSL or rustls stays opaque.");
            None
        }
    };
    (go, tls)
}

/// The process family's count of forks, execs, exits and listening-socket changes.
pub fn read_proc_changes(map: &MapHandle) -> Option<u64> {
    let value = libbpf_rs::MapCore::lookup(map, &0u32.to_ne_bytes(), libbpf_rs::MapFlags::ANY).ok()??;
    Some(u64::from_ne_bytes(value.get(..8)?.try_into().ok()?))
}

fn storage() -> &'static mut MaybeUninit<OpenObject> {
    // The skeletons live as long as the agent; leaking their storage gives them 'static.
    Box::leak(Box::new(MaybeUninit::uninit()))
}

/// Prepares an opened uprobe program for how [`attach_uprobe`] will attach it.
pub(crate) fn set_uprobe_mode(prog: &mut libbpf_rs::OpenProgramMut<'_>, load: &LoadOptions) {
    if load.uprobe_multi {
        prog.set_attach_type(libbpf_rs::ProgramAttachType::TraceUprobeMulti);
    }
}

/// Attaches `prog` at `offset` (a file offset) of `path` for process `pid`, on entry or on
/// return: a perf-event uprobe, or a one-site uprobe.multi link if the program was loaded for
/// those ([`set_uprobe_mode`]).
pub(crate) fn attach_uprobe(
    prog: &libbpf_rs::ProgramMut<'_>,
    ret: bool,
    pid: u32,
    path: &std::path::Path,
    offset: u64,
) -> libbpf_rs::Result<Link> {
    if matches!(prog.attach_type(), libbpf_rs::ProgramAttachType::TraceUprobeMulti) {
        let opts = libbpf_rs::UprobeMultiOpts { offsets: vec![offset as usize], retprobe: ret, ..Default::default() };
        prog.attach_uprobe_multi_with_opts(pid as i32, path, "", opts)
    } else {
        prog.attach_uprobe(ret, pid as i32, path, offset as usize)
    }
}

fn handle<T: Debug>(map: &MapImpl<'_, T>, name: &'static str) -> Result<MapHandle, AttachError> {
    MapHandle::try_from(map).map_err(|source| AttachError::Map { map: name, source })
}

/// Links, and the tracefs kretprobe events behind some of them; the links go first.
#[derive(Default)]
struct Attached {
    links: Vec<Link>,
    kretprobes: Vec<kretprobe::KretprobeEvent>,
}

/// Attaches every program of a loaded object. All programs of these families are required:
/// each exists on every supported kernel, so a failure is a real problem to report.
/// `kretsyscall/` programs go through [`kretprobe`] for enough concurrent instances (libbpf's
/// kretprobes, with the kernel's default, where tracefs is not writable).
fn attach_all(family: &'static str, obj: &libbpf_rs::Object, att: &mut Attached) -> Result<(), AttachError> {
    // Looked up once, and only for a family with kretsyscall programs.
    let mut tracefs: Option<std::path::PathBuf> = None;
    let mut kretprobe_fallback_said = false;
    for prog in obj.progs_mut() {
        let name = prog.name().to_string_lossy().into_owned();
        let section = prog.section().to_string_lossy().into_owned();
        if let Some(syscall) = section.strip_prefix("kretsyscall/") {
            let tracefs = tracefs.get_or_insert_with(|| {
                let tracefs = crate::kernel::find_mounts()
                    .ok()
                    .and_then(|m| m.tracefs)
                    .unwrap_or_else(|| "/sys/kernel/tracing".into());
                let removed = kretprobe::remove_stale(&tracefs, std::path::Path::new("/proc"));
                if removed > 0 {
                    tracing::info!(removed, "Removed the kretprobe events of agents that ended without cleaning up.");
                }
                tracefs
            });
            let func = format!("__x64_sys_{syscall}");
            match kretprobe::attach(&prog, &func, tracefs) {
                Ok((link, event)) => {
                    att.links.push(link);
                    att.kretprobes.push(event);
                }
                // Creating the event in tracefs takes write access to it (root, or
                // CAP_DAC_OVERRIDE, which the documented capability set leaves out).
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    if !kretprobe_fallback_said {
                        kretprobe_fallback_said = true;
                        tracing::warn!(error = %crate::telemetry::error_chain(&e), "kretprobes with room for many concurrent calls need write access to tracefs; using the kernel's default instances (returns of more concurrent blocked syscalls than that are missed).");
                    }
                    let link = prog.attach_kprobe(true, &func).map_err(|source| AttachError::Attach {
                        family,
                        program: name,
                        source,
                    })?;
                    att.links.push(link);
                }
                Err(e) => return Err(AttachError::Attach { family, program: name, source: libbpf_rs::Error::from(e) }),
            }
            continue;
        }
        let link = prog.attach().map_err(|source| AttachError::Attach { family, program: name, source })?;
        att.links.push(link);
    }
    Ok(())
}

/// Loads the process family and the capture `family`; returns them with map handles.
pub fn load(family: HookFamily, opts: LoadOptions) -> Result<(Probes, MapHandles), AttachError> {
    raise_memlock();
    let mut att = Attached::default();

    let open = ProcessSkelBuilder::default()
        .open(storage())
        .map_err(|source| AttachError::Open { family: "process", source })?;
    let process = open.load().map_err(|source| AttachError::Load { family: "process", source })?;
    attach_all("process", process.object(), &mut att)?;

    // The same source of maps and knobs in every family, so one macro opens, wires and
    // attaches whichever was chosen.
    macro_rules! load_net {
        ($builder:ty, $variant:ident, $name:literal, $keeps_args:literal) => {{
            let mut open =
                <$builder>::default().open(storage()).map_err(|source| AttachError::Open { family: $name, source })?;
            open.maps
                .traced_pids
                .reuse_fd(process.maps.traced_pids.as_fd())
                .map_err(|source| AttachError::Map { map: "traced_pids", source })?;
            if let Some(rodata) = open.maps.rodata_data.as_deref_mut() {
                rodata.wakeup_len = opts.wakeup_len;
                rodata.wakeup_bytes = opts.wakeup_bytes();
                rodata.args_in_task = opts.task_storage;
            }
            // Only the argument store in use is created (the other's code is dead to the
            // verifier); the socket family, which keeps no arguments, creates neither.
            open.maps
                .syscall_args
                .set_autocreate($keeps_args && !opts.task_storage)
                .and_then(|_| open.maps.syscall_args_task.set_autocreate($keeps_args && opts.task_storage))
                .map_err(|source| AttachError::Map { map: "syscall_args", source })?;
            open.maps
                .events
                .set_max_entries(opts.ring_buffer_size)
                .map_err(|source| AttachError::Map { map: "events", source })?;
            let net = open.load().map_err(|source| AttachError::Load { family: $name, source })?;
            attach_all($name, net.object(), &mut att)?;
            let sock_events = handle(&net.maps.events, "events")?;
            let events_lost = handle(&net.maps.events_lost, "events_lost")?;
            let go = (handle(&net.maps.go_offsets, "go_offsets")?, handle(&net.maps.go_serving, "go_serving")?);
            let tls = (
                handle(&net.maps.ssl_calls, "ssl_calls")?,
                handle(&net.maps.ssl_socks, "ssl_socks")?,
                handle(&net.maps.ssl_ciphers, "ssl_ciphers")?,
                handle(&net.maps.tls_conns, "tls_conns")?,
                handle(&net.maps.h2_walks, "h2_walks")?,
            );
            (NetSkel::$variant(net), sock_events, events_lost, go, tls)
        }};
    }
    let (
        net,
        sock_events,
        events_lost,
        (go_offsets, go_serving),
        (ssl_calls, ssl_socks, ssl_ciphers, tls_conns, h2_walks),
    ) = match family {
        HookFamily::Socket => load_net!(SocketNetSkelBuilder, Socket, "socket", false),
        HookFamily::Tracepoints => load_net!(TracepointNetSkelBuilder, Tracepoints, "tracepoints", true),
        HookFamily::Kprobes => load_net!(KprobeNetSkelBuilder, Kprobes, "kprobes", true),
        HookFamily::Fentry => load_net!(FentryNetSkelBuilder, Fentry, "fentry", true),
    };

    let handles = MapHandles {
        traced_pids: handle(&process.maps.traced_pids, "traced_pids")?,
        sock_events,
        process_events: handle(&process.maps.process_events, "process_events")?,
        events_lost,
        proc_changes: handle(&process.maps.proc_changes, "proc_changes")?,
        go_offsets,
        go_serving,
        ssl_calls,
        ssl_socks,
        ssl_ciphers,
        tls_conns,
        h2_walks,
    };
    let programs = att.links.len();
    Ok((Probes { _process: process, _net: net, _attached: att, family: family.as_str(), programs }, handles))
}

/// Loads the first capture family of `families` that the kernel accepts.
pub fn load_first(families: &[HookFamily], opts: LoadOptions) -> Result<(Probes, MapHandles), AttachError> {
    let mut last = None;
    for (i, family) in families.iter().enumerate() {
        match load(*family, opts) {
            Ok(loaded) => return Ok(loaded),
            Err(e) if i + 1 < families.len() => {
                tracing::warn!(family = family.as_str(), error = %crate::telemetry::error_chain(&e), next = families[i + 1].as_str(), "Hook family failed to load; trying the next one.");
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(AttachError::NoFamily))
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; lift it (best effort).
fn raise_memlock() {
    let rlim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: plain syscall with a valid pointer to an initialised struct.
    unsafe {
        libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::mem::MaybeUninit;

    use libbpf_rs::skel::{OpenSkel, SkelBuilder};

    use super::skel::go::GoSkelBuilder;
    use super::skel::openssl::OpensslSkelBuilder;
    use super::skel::rustls::RustlsSkelBuilder;
    use super::*;

    /// The kernel keeps 15 characters of a program's name (`bpftool prog`, `bpf_stats`): the
    /// programs loaded together (the process family, one capture family, the Go probes) must
    /// stay distinct there. Opening a skeleton parses its object; nothing is loaded.
    #[test]
    fn program_names_are_unique_within_the_kernels_15_characters() {
        fn names<'a>(skel: &impl OpenSkel<'a>) -> Vec<String> {
            skel.open_object().progs().map(|p| p.name().to_string_lossy().into_owned()).collect()
        }
        macro_rules! open {
            ($builder:ty) => {{
                let mut storage = MaybeUninit::uninit();
                let skel = <$builder>::default().open(&mut storage).expect("open skeleton");
                names(&skel)
            }};
        }
        let shared: Vec<String> =
            [open!(ProcessSkelBuilder), open!(GoSkelBuilder), open!(OpensslSkelBuilder), open!(RustlsSkelBuilder)]
                .concat();
        let families = [
            open!(TracepointNetSkelBuilder),
            open!(KprobeNetSkelBuilder),
            open!(FentryNetSkelBuilder),
            open!(SocketNetSkelBuilder),
        ];
        assert!(shared.iter().any(|n| n == "go_grpc_whdr_ret"), "{shared:?}");
        for family in families {
            let mut seen: HashMap<String, &str> = HashMap::new();
            for name in shared.iter().chain(&family) {
                let short: String = name.chars().take(15).collect();
                if let Some(other) = seen.insert(short.clone(), name) {
                    panic!("{other} and {name} are both {short:?} in the kernel");
                }
            }
        }
    }
}
