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

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags};
use prometheus_client::metrics::gauge::Gauge;
use tracing::{debug, info, warn};

use super::skel::go::types::{go_offsets, h2_meta_offsets, h2_server_offsets};
use super::skel::go::{GoSkel, GoSkelBuilder};
use super::AttachError;
use crate::discover::golang::{self, GoBinary, GoSupport};

const SERVE_HTTP: &str = "net/http.serverHandler.ServeHTTP";
const NEWPROC1: &str = "runtime.newproc1";
const HTTP_CLIENT: &str = "net/http.(*persistConn).roundTrip";
const H2_SERVER: &str = "net/http.(*http2serverConn).runHandler";
const H2_CLIENT: &str = "net/http.(*http2ClientConn).writeHeaders";
const H2_FRAMER_WRITE_HEADERS: &str = "net/http.(*http2Framer).WriteHeaders";
const H2_SERVER_HEADERS: &str = "net/http.(*http2serverConn).processHeaders";
const XH2_SERVER_HEADERS: &str = "golang.org/x/net/http2.(*serverConn).processHeaders";
const XH2_SERVER: &str = "golang.org/x/net/http2.(*serverConn).runHandler";
const GRPC_SERVER: &str = "google.golang.org/grpc.(*Server).handleStream";
const GRPC_CLIENT: &str = "google.golang.org/grpc/internal/transport.(*http2Client).Write";
const GRPC_SERVER_HEADERS: &str = "google.golang.org/grpc/internal/transport.(*http2Server).operateHeaders";
const GRPC_HEADER_FIELDS: &str = "google.golang.org/grpc/internal/transport.(*http2Client).createHeaderFields";
const GRPC_WRITE_HEADER: &str = "google.golang.org/grpc/internal/transport.(*loopyWriter).writeHeader";
const TLS_READ: &str = "crypto/tls.(*Conn).Read";
const TLS_WRITE: &str = "crypto/tls.(*Conn).Write";
const REQUEST_WRITE: &str = "net/http.(*Request).write";
const WRITE_SUBSET: &str = "net/http.Header.writeSubset";

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
    open.progs.go_inject_traceparent.set_autoload(propagate);
    open.progs.go_grpc_client_headers.set_autoload(propagate);
    open.progs.go_h2_server_headers.set_autoload(propagate);
    open.progs.go_xh2_server_headers.set_autoload(propagate);
    open.progs.go_h2_client_headers_ret.set_autoload(propagate);
    open.progs.go_grpc_write_header.set_autoload(propagate);
    open.progs.go_grpc_whdr_ret.set_autoload(propagate);
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
                        warn!(pid, exe = %exe.display(), error = %e, "Go probes failed to attach; the generic probes serve this process.");
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
    // Context propagation: the outgoing header goes in where Request.write calls
    // Header.writeSubset; the incoming one is read from the server connection's buffer.
    let o = &bin.offsets;
    let bufio_writes = o.bufio_writer_buf.is_some() && o.bufio_writer_n.is_some();
    let writes = o.http_persist_conn_bw.is_some() && bufio_writes;
    let inject = bin.call_site(REQUEST_WRITE, WRITE_SUBSET).filter(|_| propagate && writes);
    if propagate && inject.is_none() && bin.function(HTTP_CLIENT).is_some() {
        info!(pid, "Go binary lacks what writing traceparent headers needs; its outgoing requests carry none.");
    }
    if inject.is_none() {
        offsets.persist_conn_bw = 0;
    }
    // net/http's HTTP/2 client: after the HEADERS frame is buffered (Framer.WriteHeaders).
    let h2_client = o.h2_client_conn_tconn.is_some();
    let h2_inject = bin
        .function(H2_FRAMER_WRITE_HEADERS)
        .filter(|f| propagate && h2_client && o.h2_client_conn_bw.is_some() && bufio_writes && !f.returns.is_empty());
    if h2_inject.is_none() {
        offsets.h2_client_conn_bw = 0;
    }
    if o.http_conn_bufr.is_none() || o.bufio_reader_buf.is_none() || o.bufio_reader_r.is_none() {
        offsets.http_conn_bufr = 0;
    }
    // SAFETY: go_offsets is plain integers.
    let bytes = unsafe {
        std::slice::from_raw_parts(&offsets as *const go_offsets as *const u8, std::mem::size_of::<go_offsets>())
    };
    skel.maps
        .go_offsets
        .update(&pid.to_ne_bytes(), bytes, MapFlags::ANY)
        .map_err(|source| AttachError::Map { map: "go_offsets", source })?;

    let progs = &mut skel.progs;
    let mut links = Vec::new();
    // The handler's start: the goroutine serves that connection's request, which was "in
    // queue" until then. One probe per request (a uprobe hit costs microseconds).
    let server_offsets = o.http_conn_rwc.is_some() && o.http_response_req.is_some() && o.http_response_conn.is_some();
    let server = attach_at(&mut links, &progs.go_serve_http, pid, exe, bin, SERVE_HTTP, server_offsets)?;
    attach_at(&mut links, &progs.go_http_client, pid, exe, bin, HTTP_CLIENT, o.http_persist_conn_conn.is_some())?;
    let grpc = o.grpc_stream_id.is_some() && o.grpc_http2_client_conn.is_some();
    attach_at(&mut links, &progs.go_grpc_client, pid, exe, bin, GRPC_CLIENT, grpc)?;
    // A gRPC handler's start (the goroutine grpc starts per stream): as ServeHTTP for HTTP/1.x.
    let grpc_server = o.grpc_stream_id.is_some() && o.grpc_http2_server_conn.is_some();
    let grpc_served = attach_at(&mut links, &progs.go_grpc_server, pid, exe, bin, GRPC_SERVER, grpc_server)?;
    // Its incoming traceparent (context propagation), from the decoded header fields.
    let xnet_meta = [o.xh2_meta_headers_frame, o.xh2_meta_fields, o.xh2_frame_header, o.xh2_frame_stream_id];
    let xnet_meta = xnet_meta.iter().all(Option::is_some);
    let grpc_incoming = propagate && grpc_served && xnet_meta;
    attach_at(&mut links, &progs.go_xh2_server_headers, pid, exe, bin, GRPC_SERVER_HEADERS, grpc_incoming)?;
    // The same for net/http's bundled HTTP/2 server (HTTPS with h2): a goroutine per stream.
    let h2 = [o.h2_server_conn_conn, o.h2_response_writer_rws, o.h2_rws_stream, o.h2_stream_id];
    let h2_served =
        attach_at(&mut links, &progs.go_h2_serve, pid, exe, bin, H2_SERVER, h2.iter().all(Option::is_some))?;
    // And for golang.org/x/net/http2's server (h2c, or an explicitly configured http2.Server).
    let xh2 = [o.xh2_server_conn_conn, o.xh2_response_writer_rws, o.xh2_rws_stream, o.xh2_stream_id];
    let xh2_served =
        attach_at(&mut links, &progs.go_xh2_serve, pid, exe, bin, XH2_SERVER, xh2.iter().all(Option::is_some))?;
    // Their incoming traceparent (context propagation), from the decoded header frames.
    let bundled_meta = [o.h2_meta_headers_frame, o.h2_meta_fields, o.h2_frame_header, o.h2_frame_stream_id];
    let bundled_meta = bundled_meta.iter().all(Option::is_some);
    let h2_in = propagate && h2_served && bundled_meta;
    attach_at(&mut links, &progs.go_h2_server_headers, pid, exe, bin, H2_SERVER_HEADERS, h2_in)?;
    let xh2_in = propagate && xh2_served && xnet_meta;
    attach_at(&mut links, &progs.go_xh2_server_headers, pid, exe, bin, XH2_SERVER_HEADERS, xh2_in)?;
    let h2_served = h2_served || xh2_served;
    if let Some(site) = inject {
        let link = progs
            .go_inject_traceparent
            .attach_uprobe(false, pid as i32, exe, site.file_offset as usize)
            .map_err(|source| AttachError::Attach {
                family: "go",
                program: format!("{REQUEST_WRITE} call of {WRITE_SUBSET}"),
                source,
            })?;
        links.push(link);
    }
    // net/http's HTTP/2 client: each call announced at writeHeaders; with propagation its
    // traceparent follows the HEADERS frame (Framer.WriteHeaders' return, before the flush).
    attach_at(&mut links, &progs.go_h2_client, pid, exe, bin, H2_CLIENT, h2_client)?;
    if let (Some(f), true) = (h2_inject, bin.function(H2_CLIENT).is_some()) {
        attach_returns(&mut links, &progs.go_h2_client_headers_ret, pid, exe, H2_FRAMER_WRITE_HEADERS, &f.returns)?;
    }
    // gRPC client calls: the caller's header fields carry the context to the loopy goroutine,
    // which announces the call and writes the header after its HEADERS frame.
    let grpc_writes = [
        o.grpc_loopy_framer,
        o.grpc_framer_writer,
        o.grpc_buf_writer_buf,
        o.grpc_buf_writer_offset,
        o.grpc_buf_writer_conn,
    ];
    let grpc_inject = propagate && grpc_writes.iter().all(Option::is_some);
    let fields = bin.function(GRPC_HEADER_FIELDS).filter(|f| grpc_inject && !f.returns.is_empty());
    let write = bin.function(GRPC_WRITE_HEADER).filter(|f| grpc_inject && !f.returns.is_empty());
    if let (Some(fields), Some(write)) = (fields, write) {
        attach_returns(&mut links, &progs.go_grpc_client_headers, pid, exe, GRPC_HEADER_FIELDS, &fields.returns)?;
        attach_at(&mut links, &progs.go_grpc_write_header, pid, exe, bin, GRPC_WRITE_HEADER, true)?;
        attach_returns(&mut links, &progs.go_grpc_whdr_ret, pid, exe, GRPC_WRITE_HEADER, &write.returns)?;
    } else if propagate && bin.function(GRPC_CLIENT).is_some() {
        info!(pid, "Go binary lacks what writing traceparent into gRPC calls needs; its gRPC calls carry none.");
    }
    // HTTPS: the plaintext of crypto/tls reads and writes, as data of the socket under them.
    if o.tls_conn_conn.is_some() {
        if let Some(f) = bin.function(TLS_READ).filter(|f| !f.returns.is_empty()) {
            attach_at(&mut links, &progs.go_tls_write, pid, exe, bin, TLS_WRITE, true)?;
            attach_at(&mut links, &progs.go_tls_read, pid, exe, bin, TLS_READ, true)?;
            attach_returns(&mut links, &progs.go_tls_read_ret, pid, exe, TLS_READ, &f.returns)?;
        }
    }
    // Goroutines a handler starts serve its request too. go1.21+ records a goroutine's creator
    // (g.parentGoid); before, the returns of runtime.newproc1 are probed (a hit per goroutine
    // started: the server starts one per request to watch the connection).
    let creator = o.runtime_g_m.is_some() && o.runtime_m_curg.is_some();
    if o.runtime_g_parent_goid.is_none() && creator {
        if let Some(f) =
            bin.function(NEWPROC1).filter(|f| (server || grpc_served || h2_served) && !f.returns.is_empty())
        {
            attach_returns(&mut links, &progs.go_newproc1_ret, pid, exe, NEWPROC1, &f.returns)?;
        }
    }
    Ok(Attached { links })
}

/// Attaches `prog` at the start of `func` when the binary has it and `needs` holds: past its
/// stack check, which sends the goroutine back to the entry when the stack grows or the
/// scheduler preempts it there (an entry probe fired twice for one call, now and then: a
/// second trace id made up for a request whose incoming one the first had taken).
fn attach_at(
    links: &mut Vec<Link>,
    prog: &libbpf_rs::ProgramMut<'_>,
    pid: u32,
    exe: &std::path::Path,
    bin: &GoBinary,
    func: &str,
    needs: bool,
) -> Result<bool, AttachError> {
    let Some(f) = bin.function(func).filter(|_| needs) else { return Ok(false) };
    let link = prog
        .attach_uprobe(false, pid as i32, exe, f.probe_offset as usize)
        .map_err(|source| AttachError::Attach { family: "go", program: func.to_string(), source })?;
    links.push(link);
    Ok(true)
}

/// Attaches `prog` at every RET site of `func` (never a uretprobe: Go moves stacks).
fn attach_returns(
    links: &mut Vec<Link>,
    prog: &libbpf_rs::ProgramMut<'_>,
    pid: u32,
    exe: &std::path::Path,
    func: &str,
    returns: &[u64],
) -> Result<(), AttachError> {
    for &ret in returns {
        let link = prog.attach_uprobe(false, pid as i32, exe, ret as usize).map_err(|source| AttachError::Attach {
            family: "go",
            program: format!("{func} return"),
            source,
        })?;
        links.push(link);
    }
    Ok(())
}
