//! The Go probes (`bpf/go.bpf.c`): attached per process to the Go executables discovery
//! selects, at the function starts (past the stack check) and RET sites `discover::golang`
//! found, with the struct offsets it resolved written to the `go_offsets` map first.
//!
//! Everything runs on one dedicated thread that owns the skeleton (libbpf objects are not
//! `Send`); the attach stage sends it commands. A binary the probes cannot serve is logged
//! once and left to the generic socket probes, which capture every Go process anyway.
use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags};
use prometheus_client::metrics::gauge::Gauge;
use tracing::{debug, info, warn};

use super::skel::go::types::{go_offsets, h2_meta_offsets, h2_server_offsets};
use super::skel::go::{GoSkel, GoSkelBuilder};
use super::AttachError;
use crate::discover::golang::{self, GoBinary, GoSupport};

/// Where a probe goes in its function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Site {
    /// The function's start, past its stack check, which sends the goroutine back to the
    /// entry when the stack grows or the scheduler preempts it there (an entry probe fired
    /// twice for one call, now and then: a second trace id made up for a request whose
    /// incoming one the first had taken).
    Entry,
    /// Every RET instruction (never a uretprobe: Go moves stacks).
    Returns,
    /// The call of `callee` inside the function.
    CallOf(&'static str),
}

/// A struct offset a probe reads: the name of a `golang::Offsets` field.
type Need = &'static str;

macro_rules! needs {
    ($($field:ident),* $(,)?) => { &[$(stringify!($field)),*] };
}

/// One Go probe. [`PROBES`] is the whole list; `attach` walks it in order.
struct Probe {
    /// The program in `bpf/go.bpf.c` (names are unique within the kernel's 15 characters).
    program: &'static str,
    function: &'static str,
    site: Site,
    /// Offsets that must all be known in the binary.
    needs: &'static [Need],
    /// Offsets that must be unknown (a fallback for older Go versions).
    unless: &'static [Need],
    /// Only with `ebpf.context_propagation: headers`: the program writes user memory and is
    /// not even loaded otherwise.
    propagation: bool,
    /// Only when one of these programs (earlier rows) was attached to the process.
    after_any: &'static [&'static str],
    /// Rows of one group are attached all together or not at all.
    group: Option<&'static str>,
}

const fn probe(program: &'static str, function: &'static str, site: Site, needs: &'static [Need]) -> Probe {
    Probe { program, function, site, needs, unless: &[], propagation: false, after_any: &[], group: None }
}

impl Probe {
    const fn propagation(self) -> Probe {
        Probe { propagation: true, ..self }
    }
    const fn after_any(self, programs: &'static [&'static str]) -> Probe {
        Probe { after_any: programs, ..self }
    }
    const fn group(self, group: &'static str) -> Probe {
        Probe { group: Some(group), ..self }
    }
    const fn unless(self, unless: &'static [Need]) -> Probe {
        Probe { unless, ..self }
    }
}

const SERVE_HTTP: &str = "net/http.serverHandler.ServeHTTP";
const HTTP_CLIENT: &str = "net/http.(*persistConn).roundTrip";
const H2_CLIENT: &str = "net/http.(*http2ClientConn).writeHeaders";
const GRPC_CLIENT: &str = "google.golang.org/grpc/internal/transport.(*http2Client).Write";
const GRPC_HEADER_FIELDS: &str = "google.golang.org/grpc/internal/transport.(*http2Client).createHeaderFields";
const GRPC_WRITE_HEADER: &str = "google.golang.org/grpc/internal/transport.(*loopyWriter).writeHeader";
const TLS_READ: &str = "crypto/tls.(*Conn).Read";
const SERVERS: &[&str] = &["go_serve_http", "go_grpc_server", "go_h2_serve", "go_xh2_serve"];

/// Every Go probe, in attach order. A uprobe hit costs microseconds: the per-request ones are
/// the handler starts and the client calls; the rest serve propagation or older Go versions.
const PROBES: &[Probe] = &[
    // The handler's start: the goroutine serves that connection's request, which was "in
    // queue" until then.
    probe("go_serve_http", SERVE_HTTP, Site::Entry, needs!(http_conn_rwc, http_response_req, http_response_conn)),
    probe("go_http_client", HTTP_CLIENT, Site::Entry, needs!(http_persist_conn_conn)),
    probe("go_grpc_client", GRPC_CLIENT, Site::Entry, needs!(grpc_stream_id, grpc_http2_client_conn)),
    // A gRPC handler's start (the goroutine grpc starts per stream): as ServeHTTP for HTTP/1.x.
    probe(
        "go_grpc_server",
        "google.golang.org/grpc.(*Server).handleStream",
        Site::Entry,
        needs!(grpc_stream_id, grpc_http2_server_conn),
    ),
    // Its incoming traceparent, from the decoded header fields.
    probe(
        "go_xh2_server_headers",
        "google.golang.org/grpc/internal/transport.(*http2Server).operateHeaders",
        Site::Entry,
        needs!(xh2_meta_headers_frame, xh2_meta_fields, xh2_frame_header, xh2_frame_stream_id),
    )
    .propagation()
    .after_any(&["go_grpc_server"]),
    // The same for net/http's bundled HTTP/2 server (HTTPS with h2): a goroutine per stream.
    probe(
        "go_h2_serve",
        "net/http.(*http2serverConn).runHandler",
        Site::Entry,
        needs!(h2_server_conn_conn, h2_response_writer_rws, h2_rws_stream, h2_stream_id),
    ),
    // And for golang.org/x/net/http2's server (h2c, or an explicitly configured http2.Server).
    probe(
        "go_xh2_serve",
        "golang.org/x/net/http2.(*serverConn).runHandler",
        Site::Entry,
        needs!(xh2_server_conn_conn, xh2_response_writer_rws, xh2_rws_stream, xh2_stream_id),
    ),
    // Their incoming traceparent, from the decoded header frames.
    probe(
        "go_h2_server_headers",
        "net/http.(*http2serverConn).processHeaders",
        Site::Entry,
        needs!(h2_meta_headers_frame, h2_meta_fields, h2_frame_header, h2_frame_stream_id),
    )
    .propagation()
    .after_any(&["go_h2_serve"]),
    probe(
        "go_xh2_server_headers",
        "golang.org/x/net/http2.(*serverConn).processHeaders",
        Site::Entry,
        needs!(xh2_meta_headers_frame, xh2_meta_fields, xh2_frame_header, xh2_frame_stream_id),
    )
    .propagation()
    .after_any(&["go_xh2_serve"]),
    // The outgoing header goes in where Request.write calls Header.writeSubset.
    probe(
        "go_inject_traceparent",
        "net/http.(*Request).write",
        Site::CallOf("net/http.Header.writeSubset"),
        needs!(http_persist_conn_bw, bufio_writer_buf, bufio_writer_n),
    )
    .propagation(),
    // net/http's HTTP/2 client: each call announced at writeHeaders; with propagation its
    // traceparent follows the HEADERS frame (Framer.WriteHeaders' return, before the flush).
    probe("go_h2_client", H2_CLIENT, Site::Entry, needs!(h2_client_conn_tconn)),
    probe(
        "go_h2_client_headers_ret",
        "net/http.(*http2Framer).WriteHeaders",
        Site::Returns,
        needs!(h2_client_conn_tconn, h2_client_conn_bw, bufio_writer_buf, bufio_writer_n),
    )
    .propagation()
    .after_any(&["go_h2_client"]),
    // gRPC client calls: the caller's header fields carry the context to the loopy goroutine,
    // which announces the call and writes the header after its HEADERS frame.
    probe("go_grpc_client_headers", GRPC_HEADER_FIELDS, Site::Returns, GRPC_WRITES).propagation().group("grpc_inject"),
    probe("go_grpc_write_header", GRPC_WRITE_HEADER, Site::Entry, GRPC_WRITES).propagation().group("grpc_inject"),
    probe("go_grpc_whdr_ret", GRPC_WRITE_HEADER, Site::Returns, GRPC_WRITES).propagation().group("grpc_inject"),
    // HTTPS: the plaintext of crypto/tls reads and writes, as data of the socket under them.
    probe("go_tls_write", "crypto/tls.(*Conn).Write", Site::Entry, needs!(tls_conn_conn)).group("tls"),
    probe("go_tls_read", TLS_READ, Site::Entry, needs!(tls_conn_conn)).group("tls"),
    probe("go_tls_read_ret", TLS_READ, Site::Returns, needs!(tls_conn_conn)).group("tls"),
    // Goroutines a handler starts serve its request too. go1.21+ records a goroutine's creator
    // (g.parentGoid); before, the returns of runtime.newproc1 are probed (a hit per goroutine
    // started: the server starts one per request to watch the connection).
    probe("go_newproc1_ret", "runtime.newproc1", Site::Returns, needs!(runtime_g_m, runtime_m_curg))
        .unless(needs!(runtime_g_parent_goid))
        .after_any(SERVERS),
];

const GRPC_WRITES: &[Need] =
    needs!(grpc_loopy_framer, grpc_framer_writer, grpc_buf_writer_buf, grpc_buf_writer_offset, grpc_buf_writer_conn);

enum Command {
    Attach { pid: u32, exe: PathBuf },
    Detach { pid: u32 },
}

/// Handle to the Go probes' thread.
#[derive(Clone)]
pub struct GoProbes {
    tx: mpsc::Sender<Command>,
}

impl GoProbes {
    /// Loads `bpf/go.bpf.c` on its own thread, sharing the capture family's ring buffer
    /// (`events`, `events_lost`, loaded with `ring`) so that Go events and socket events
    /// arrive in one order, and its `go_offsets` and `go_serving` maps (`shared`), which the
    /// capture reads to tell which request a Go write serves.
    /// `propagate`: write `traceparent` headers into outgoing HTTP/1.x requests (the caller
    /// checked that the kernel allows `bpf_probe_write_user`; the program using it is not even
    /// loaded otherwise).
    pub fn start(
        events: OwnedFd,
        events_lost: OwnedFd,
        shared: SharedMaps,
        ring: super::LoadOptions,
        propagate: bool,
        attached: Gauge,
    ) -> Result<GoProbes, AttachError> {
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("beyla-go-probes".into())
            .spawn(move || {
                let skel = match load(&events, &events_lost, &shared, ring, propagate) {
                    Ok(s) => {
                        let _ = ready_tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                run(skel, rx, propagate, attached);
            })
            .expect("spawning the Go probes thread");
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(GoProbes { tx }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(AttachError::NoFamily),
        }
    }

    /// Instruments `pid` if its executable is Go and the probes can serve it.
    pub fn attach(&self, pid: u32, exe: PathBuf) {
        let _ = self.tx.send(Command::Attach { pid, exe });
    }

    /// Removes the probes of a process that is gone.
    pub fn detach(&self, pid: u32) {
        let _ = self.tx.send(Command::Detach { pid });
    }
}

/// The capture family's maps the Go probes reuse (see [`GoProbes::start`]).
pub struct SharedMaps {
    pub go_offsets: OwnedFd,
    pub go_serving: OwnedFd,
}

fn load(
    events: &OwnedFd,
    events_lost: &OwnedFd,
    shared: &SharedMaps,
    ring: super::LoadOptions,
    propagate: bool,
) -> Result<GoSkel<'static>, AttachError> {
    let storage: &'static mut MaybeUninit<libbpf_rs::OpenObject> = Box::leak(Box::new(MaybeUninit::uninit()));
    let mut open =
        GoSkelBuilder::default().open(storage).map_err(|source| AttachError::Open { family: "go", source })?;
    open.maps.events.reuse_fd(events.as_fd()).map_err(|source| AttachError::Map { map: "events", source })?;
    open.maps
        .events_lost
        .reuse_fd(events_lost.as_fd())
        .map_err(|source| AttachError::Map { map: "events_lost", source })?;
    open.maps
        .go_offsets
        .reuse_fd(shared.go_offsets.as_fd())
        .map_err(|source| AttachError::Map { map: "go_offsets", source })?;
    open.maps
        .go_serving
        .reuse_fd(shared.go_serving.as_fd())
        .map_err(|source| AttachError::Map { map: "go_serving", source })?;
    if let Some(rodata) = open.maps.rodata_data.as_deref_mut() {
        // The same wake-up rule as the capture family's, on the same ring.
        rodata.wakeup_len = ring.wakeup_len;
        rodata.wakeup_bytes = ring.wakeup_bytes();
        rodata.propagate_headers = u8::from(propagate);
    }
    // Under kernel lockdown the verifier rejects any program calling bpf_probe_write_user.
    for mut prog in open.open_object_mut().progs_mut() {
        let propagation = PROBES.iter().any(|p| p.propagation && p.program == prog.name().to_string_lossy());
        if propagation {
            prog.set_autoload(propagate);
        }
        super::set_uprobe_mode(&mut prog, &ring);
    }
    open.load().map_err(|source| AttachError::Load { family: "go", source })
}

/// The `go_offsets` value for a binary, and the required offsets it lacks (optional ones are
/// 0 and the probes needing them are not attached).
fn offsets_of(bin: &GoBinary) -> (go_offsets, Vec<&'static str>) {
    let o = &bin.offsets;
    let mut missing = Vec::new();
    let mut get = |name: &'static str, v: Option<u64>| {
        v.unwrap_or_else(|| {
            missing.push(name);
            0
        })
    };
    let v = go_offsets {
        g_goid: get("runtime.g.goid", o.runtime_g_goid),
        g_parent_goid: o.runtime_g_parent_goid.unwrap_or(0),
        g_m: o.runtime_g_m.unwrap_or(0),
        m_curg: o.runtime_m_curg.unwrap_or(0),
        http_response_req: o.http_response_req.unwrap_or(0),
        http_response_conn: o.http_response_conn.unwrap_or(0),
        http_conn_rwc: o.http_conn_rwc.unwrap_or(0),
        persist_conn_conn: o.http_persist_conn_conn.unwrap_or(0),
        tcp_conn_conn: get("net.TCPConn.conn", o.tcp_conn_conn),
        net_conn_fd: get("net.conn.fd", o.net_conn_fd),
        netfd_pfd: get("net.netFD.pfd", o.netfd_pfd),
        poll_fd_sysfd: get("internal/poll.FD.Sysfd", o.poll_fd_sysfd),
        tls_conn_conn: o.tls_conn_conn.unwrap_or(0),
        grpc_stream_id: o.grpc_stream_id.unwrap_or(0),
        grpc_http2_client_conn: o.grpc_http2_client_conn.unwrap_or(0),
        grpc_http2_server_conn: o.grpc_http2_server_conn.unwrap_or(0),
        h2: h2_server_offsets {
            server_conn_conn: o.h2_server_conn_conn.unwrap_or(0),
            response_writer_rws: o.h2_response_writer_rws.unwrap_or(0),
            rws_stream: o.h2_rws_stream.unwrap_or(0),
            stream_id: o.h2_stream_id.unwrap_or(0),
        },
        xh2: h2_server_offsets {
            server_conn_conn: o.xh2_server_conn_conn.unwrap_or(0),
            response_writer_rws: o.xh2_response_writer_rws.unwrap_or(0),
            rws_stream: o.xh2_rws_stream.unwrap_or(0),
            stream_id: o.xh2_stream_id.unwrap_or(0),
        },
        http_conn_bufr: o.http_conn_bufr.unwrap_or(0),
        persist_conn_bw: o.http_persist_conn_bw.unwrap_or(0),
        bufio_reader_buf: o.bufio_reader_buf.unwrap_or(0),
        bufio_reader_r: o.bufio_reader_r.unwrap_or(0),
        bufio_writer_buf: o.bufio_writer_buf.unwrap_or(0),
        bufio_writer_n: o.bufio_writer_n.unwrap_or(0),
        h2_client_conn_tconn: o.h2_client_conn_tconn.unwrap_or(0),
        h2_client_conn_bw: o.h2_client_conn_bw.unwrap_or(0),
        grpc_loopy_framer: o.grpc_loopy_framer.unwrap_or(0),
        grpc_framer_writer: o.grpc_framer_writer.unwrap_or(0),
        grpc_buf_writer_buf: o.grpc_buf_writer_buf.unwrap_or(0),
        grpc_buf_writer_offset: o.grpc_buf_writer_offset.unwrap_or(0),
        grpc_buf_writer_conn: o.grpc_buf_writer_conn.unwrap_or(0),
        xh2_meta: h2_meta_offsets {
            headers_frame: o.xh2_meta_headers_frame.unwrap_or(0),
            fields: o.xh2_meta_fields.unwrap_or(0),
            frame_header: o.xh2_frame_header.unwrap_or(0),
            stream_id: o.xh2_frame_stream_id.unwrap_or(0),
        },
        h2_meta: h2_meta_offsets {
            headers_frame: o.h2_meta_headers_frame.unwrap_or(0),
            fields: o.h2_meta_fields.unwrap_or(0),
            frame_header: o.h2_frame_header.unwrap_or(0),
            stream_id: o.h2_frame_stream_id.unwrap_or(0),
        },
    };
    (v, missing)
}

struct Attached {
    links: Vec<Link>,
}

fn run(mut skel: GoSkel<'static>, rx: mpsc::Receiver<Command>, propagate: bool, attached: Gauge) {
    let mut procs: HashMap<u32, Attached> = HashMap::new();
    // Inspecting reads the whole executable: once per file, however many processes run it.
    let mut inspected: HashMap<(u64, u64, i64), Option<Arc<GoBinary>>> = HashMap::new();
    while let Ok(cmd) = rx.recv() {
        match cmd {
            Command::Attach { pid, exe } => {
                if procs.contains_key(&pid) {
                    continue;
                }
                let proc_exe = PathBuf::from(format!("/proc/{pid}/exe"));
                let Ok(meta) = std::fs::metadata(&proc_exe) else { continue };
                let key = {
                    use std::os::unix::fs::MetadataExt;
                    (meta.dev(), meta.ino(), meta.mtime())
                };
                let bin = inspected
                    .entry(key)
                    .or_insert_with(|| match golang::inspect(&proc_exe) {
                        Ok(b) => {
                            let support = b.support();
                            support.log(&exe, &b.build.go_version);
                            (!matches!(support, GoSupport::Unsupported(_))).then(|| Arc::new(b))
                        }
                        Err(e) if e.is_not_go() => None,
                        Err(e) => {
                            GoSupport::Unsupported(e.to_string()).log(&exe, "unknown");
                            None
                        }
                    })
                    .clone();
                let Some(bin) = bin else { continue };
                match attach(&mut skel, pid, &proc_exe, &bin, propagate) {
                    Ok(a) if a.links.is_empty() => {
                        // Nothing to probe in it (or offsets missing): no map entry either.
                        let _ = skel.maps.go_offsets.delete(&pid.to_ne_bytes());
                    }
                    Ok(a) => {
                        info!(pid, exe = %exe.display(), version = %bin.build.go_version, probes = a.links.len(), "Go probes attached.");
                        procs.insert(pid, a);
                    }
                    Err(e) => {
                        warn!(pid, exe = %exe.display(), error = %crate::telemetry::error_chain(&e), "Go probes failed to attach; the generic probes serve this process.");
                        let _ = skel.maps.go_offsets.delete(&pid.to_ne_bytes());
                    }
                }
            }
            Command::Detach { pid } => {
                if procs.remove(&pid).is_some() {
                    let _ = skel.maps.go_offsets.delete(&pid.to_ne_bytes());
                    debug!(pid, "Go probes detached.");
                }
            }
        }
        attached.set(procs.len() as i64);
    }
}

/// Where each probe of [`PROBES`] goes in `bin`: (row, file offsets). A pure function of
/// the binary and the propagation setting.
fn plan(bin: &GoBinary, propagate: bool) -> Vec<(&'static Probe, Vec<u64>)> {
    let known = |needs: &[Need]| needs.iter().all(|n| bin.offsets.get(n).is_some());
    let mut planned: Vec<(&'static Probe, Vec<u64>)> = Vec::new();
    for p in PROBES {
        let after = p.after_any.is_empty() || planned.iter().any(|(q, _)| p.after_any.contains(&q.program));
        if (p.propagation && !propagate)
            || !after
            || !known(p.needs)
            || p.unless.iter().any(|n| bin.offsets.get(n).is_some())
        {
            continue;
        }
        let sites = match p.site {
            Site::Entry => bin.function(p.function).map(|f| vec![f.probe_offset]),
            Site::Returns => bin.function(p.function).map(|f| f.returns.clone()).filter(|r| !r.is_empty()),
            Site::CallOf(callee) => bin.call_site(p.function, callee).map(|s| vec![s.file_offset]),
        };
        if let Some(sites) = sites {
            planned.push((p, sites));
        }
    }
    // A group is attached whole or not at all.
    let in_table = |g: &str| PROBES.iter().filter(|p| p.group == Some(g)).count();
    let in_plan = |g: &str| planned.iter().filter(|(p, _)| p.group == Some(g)).count();
    let partial: Vec<&str> = PROBES.iter().filter_map(|p| p.group).filter(|g| in_table(g) != in_plan(g)).collect();
    planned.retain(|(p, _)| p.group.is_none_or(|g| !partial.contains(&g)));
    planned
}

fn attach(
    skel: &mut GoSkel<'static>,
    pid: u32,
    exe: &std::path::Path,
    bin: &GoBinary,
    propagate: bool,
) -> Result<Attached, AttachError> {
    let (mut offsets, missing) = offsets_of(bin);
    if !missing.is_empty() {
        info!(pid, missing = %missing.join(","), "Go probes need offsets this binary lacks; the generic probes serve it.");
        return Ok(Attached { links: Vec::new() });
    }
    let planned = plan(bin, propagate);
    let has = |program: &str| planned.iter().any(|(p, _)| p.program == program);
    if propagate && !has("go_inject_traceparent") && bin.function(HTTP_CLIENT).is_some() {
        info!(pid, "Go binary lacks what writing traceparent headers needs; its outgoing requests carry none.");
    }
    if propagate && !has("go_grpc_write_header") && bin.function(GRPC_CLIENT).is_some() {
        info!(pid, "Go binary lacks what writing traceparent into gRPC calls needs; its gRPC calls carry none.");
    }
    // The probes that write headers find their buffers through these; 0 tells the others
    // (and the capture) that no header is written.
    if !has("go_inject_traceparent") {
        offsets.persist_conn_bw = 0;
    }
    if !has("go_h2_client_headers_ret") {
        offsets.h2_client_conn_bw = 0;
    }
    if bin.offsets.http_conn_bufr.is_none()
        || bin.offsets.bufio_reader_buf.is_none()
        || bin.offsets.bufio_reader_r.is_none()
    {
        offsets.http_conn_bufr = 0;
    }
    // The offsets go in before any probe can fire.
    // SAFETY: go_offsets is plain integers.
    let bytes = unsafe {
        std::slice::from_raw_parts(&offsets as *const go_offsets as *const u8, std::mem::size_of::<go_offsets>())
    };
    skel.maps
        .go_offsets
        .update(&pid.to_ne_bytes(), bytes, MapFlags::ANY)
        .map_err(|source| AttachError::Map { map: "go_offsets", source })?;

    let mut links = Vec::new();
    for (p, sites) in planned {
        let prog = skel
            .object()
            .progs_mut()
            .find(|prog| prog.name() == p.program)
            .ok_or(AttachError::MissingProgram { family: "go", program: p.program })?;
        for site in sites {
            let link = super::attach_uprobe(&prog, false, pid, exe, site).map_err(|source| AttachError::Attach {
                family: "go",
                program: format!("{} ({:?})", p.function, p.site),
                source,
            })?;
            links.push(link);
        }
    }
    Ok(Attached { links })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::golang::offsets::FIELDS;
    use crate::discover::golang::{Arch, BuildInfo, GoFunction, Offsets, PROBED_CALLS, PROBED_FUNCTIONS};

    #[test]
    fn every_probe_names_a_program_of_the_skeleton_and_every_program_is_probed() {
        let mut storage = MaybeUninit::uninit();
        let open = GoSkelBuilder::default().open(&mut storage).expect("opening the go skeleton");
        let programs: Vec<String> =
            open.open_object().progs().map(|p| p.name().to_string_lossy().into_owned()).collect();
        for p in PROBES {
            assert!(programs.iter().any(|n| n == p.program), "{} is not a program of bpf/go.bpf.c", p.program);
            assert!(PROBED_FUNCTIONS.contains(&p.function), "discovery does not look for {}", p.function);
            if let Site::CallOf(callee) = p.site {
                assert!(PROBED_CALLS.contains(&(p.function, callee)), "discovery does not look for {callee} calls");
            }
            for n in p.needs.iter().chain(p.unless) {
                assert!(FIELDS.iter().any(|f| f.name == *n), "{} needs unknown offset {n}", p.program);
            }
            for a in p.after_any {
                assert!(PROBES.iter().any(|q| q.program == *a), "{} follows unknown {a}", p.program);
            }
        }
        for name in &programs {
            assert!(PROBES.iter().any(|p| p.program == name), "program {name} is in no row of PROBES");
        }
        // The kernel keeps 15 characters of a name: bpftool and the stats must tell them apart.
        let mut short: Vec<&str> = programs.iter().map(|n| &n[..n.len().min(15)]).collect();
        short.sort();
        let before = short.len();
        short.dedup();
        assert_eq!(short.len(), before, "program names alike in their first 15 characters: {programs:?}");
    }

    fn binary(offsets: Offsets, returns: bool) -> GoBinary {
        let functions = PROBES
            .iter()
            .map(|p| GoFunction {
                name: p.function,
                address: 0x1000,
                size: 16,
                file_offset: 0x1000,
                probe_offset: 0x1004,
                returns: if returns { vec![0x100c] } else { Vec::new() },
            })
            .collect();
        GoBinary {
            path: "/x".into(),
            build: BuildInfo::default(),
            version: None,
            arch: Arch::X86_64,
            pie: false,
            segments: Vec::new(),
            symbol_source: None,
            functions,
            calls: Vec::new(),
            has_dwarf: true,
            offsets,
            offset_sources: Vec::new(),
        }
    }

    fn all_offsets() -> Offsets {
        let mut o = Offsets::default();
        // Every field known, then the ones a test takes away.
        for p in PROBES {
            for name in p.needs.iter().chain(p.unless) {
                o.set(name, 8);
            }
        }
        o
    }

    fn programs(bin: &GoBinary, propagate: bool) -> Vec<&'static str> {
        plan(bin, propagate).into_iter().map(|(p, _)| p.program).collect()
    }

    #[test]
    fn plan_follows_offsets_versions_and_propagation() {
        let bin = binary(all_offsets(), true);
        let with = programs(&bin, true);
        let without = programs(&bin, false);
        // go1.21+ (parentGoid known): no newproc1 probe.
        assert!(!with.contains(&"go_newproc1_ret"), "{with:?}");
        for p in ["go_serve_http", "go_http_client", "go_grpc_server", "go_h2_serve", "go_tls_read_ret"] {
            assert!(without.contains(&p), "{p} missing from {without:?}");
        }
        for p in PROBES.iter().filter(|p| p.propagation) {
            assert!(!without.contains(&p.program), "{} attached without propagation", p.program);
        }
        for p in ["go_grpc_client_headers", "go_grpc_write_header", "go_grpc_whdr_ret", "go_h2_client_headers_ret"] {
            assert!(with.contains(&p), "{p} missing from {with:?}");
        }
        // The call site is not in this binary: no header written into HTTP/1.x requests.
        assert!(!with.contains(&"go_inject_traceparent"));

        // Before go1.21: goroutine creators from runtime.newproc1's returns.
        let mut o = all_offsets();
        o.runtime_g_parent_goid = None;
        assert!(programs(&binary(o.clone(), true), false).contains(&"go_newproc1_ret"));
        // ... only where a server probe is attached.
        o.http_response_req = None;
        o.grpc_stream_id = None;
        o.h2_stream_id = None;
        o.xh2_stream_id = None;
        let none = programs(&binary(o, true), true);
        assert!(!none.contains(&"go_newproc1_ret") && !none.contains(&"go_xh2_server_headers"), "{none:?}");

        // Without return sites, whole groups stay off (no TLS write probe without its reads).
        let no_returns = programs(&binary(all_offsets(), false), true);
        for p in ["go_tls_write", "go_tls_read", "go_grpc_client_headers", "go_grpc_write_header"] {
            assert!(!no_returns.contains(&p), "{p} in {no_returns:?}");
        }
        assert!(no_returns.contains(&"go_serve_http"));
    }
}
