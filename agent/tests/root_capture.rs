//! The capture families on the real kernel (needs root): load the real skeletons,
//! trace this test process, trigger syscalls on loopback TCP sockets, and assert exactly
//! what comes out of the ring buffer.
mod common;

use std::io::{IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use beyla::attach::{self, Traced, TracedProcess};
use beyla::decode::{Decoded, Role, Tracker, TrackerLimits};
use beyla::discover::ServiceId;
use beyla::events::{spawn_reader, Batching, Direction, RawEvent, ReaderMaps, ReaderStats, SockData};

/// The capture families under test, as the agent would try them here, or the one forced with
/// `BEYLA_EBPF_HOOK_MODE` (the VM matrix runs these tests once per family); and whether the
/// kernel has task storage (the argument store the agent would pick).
fn families() -> (Vec<beyla::kernel::HookFamily>, bool) {
    use beyla::kernel::{choose, ensure_mounts, probe, HookMode};
    let mode: HookMode =
        std::env::var("BEYLA_EBPF_HOOK_MODE").map(|m| m.parse().expect("BEYLA_EBPF_HOOK_MODE")).unwrap_or_default();
    ensure_mounts().expect("mounting bpffs and tracefs");
    let f = probe();
    (choose(&f, mode).expect("a hook family for this kernel").families(), f.task_storage)
}

/// (type, name) of the BPF maps in the kernel whose ids are not in `before`.
fn new_maps(before: &[u32]) -> Vec<(libbpf_rs::MapType, String)> {
    libbpf_rs::query::MapInfoIter::default()
        .filter(|m| !before.contains(&m.id))
        .map(|m| (m.ty, m.name.to_string_lossy().into_owned()))
        .collect()
}

/// The tests trace this very process, so they must not run at the same time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Capture {
    _serial: std::sync::MutexGuard<'static, ()>,
    rx: tokio::sync::mpsc::Receiver<Vec<RawEvent>>,
    _probes: attach::Probes,
    _traced: Traced,
    stats: ReaderStats,
    /// The events ring buffer's size as the kernel reports it.
    ring_size: u32,
    proc_changes: libbpf_rs::MapHandle,
}

fn start(wakeup_len: u32) -> Capture {
    start_with(wakeup_len, beyla::config::Config::default().ebpf.ring_buffer_size, None)
}

/// `task_storage`: force the argument store (None: what the agent would pick here).
fn start_with(wakeup_len: u32, ring_buffer_size: u32, task_storage: Option<bool>) -> Capture {
    start_polling(wakeup_len, ring_buffer_size, task_storage, every(Duration::from_millis(20)))
}

/// The reader forwards whatever it read on each wake-up, and drains the ring at least every `poll`.
fn every(poll: Duration) -> Batching {
    Batching { length: 1, timeout: poll }
}

fn start_polling(wakeup_len: u32, ring_buffer_size: u32, task_storage: Option<bool>, batching: Batching) -> Capture {
    common::require_root();
    let (families, has_task_storage) = families();
    start_on(&families, wakeup_len, ring_buffer_size, task_storage.unwrap_or(has_task_storage), batching)
}

/// The socket family (Linux 6.3+), whatever `BEYLA_EBPF_HOOK_MODE` says; None on an older
/// kernel, which must then be older than 6.3 (not a skip: a newer kernel without the socket
/// tracepoints fails here).
fn start_socket_family() -> Option<Capture> {
    common::require_root();
    beyla::kernel::ensure_mounts().expect("mounting bpffs and tracefs");
    let f = beyla::kernel::probe();
    if !f.sock_tracepoints {
        assert!(
            common::kernel_version() < (6, 3),
            "kernel {:?} has no socket tracepoints: {}",
            common::kernel_version(),
            f.note("sock_tracepoints")
        );
        return None;
    }
    let ring = beyla::config::Config::default().ebpf.ring_buffer_size;
    Some(start_on(&[beyla::kernel::HookFamily::Socket], 0, ring, f.task_storage, every(Duration::from_millis(20))))
}

fn start_on(
    families: &[beyla::kernel::HookFamily],
    wakeup_len: u32,
    ring_buffer_size: u32,
    task_storage: bool,
    batching: Batching,
) -> Capture {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let opts = attach::LoadOptions { wakeup_len, ring_buffer_size, task_storage, uprobe_multi: false };
    let maps_before: Vec<u32> = libbpf_rs::query::MapInfoIter::default().map(|m| m.id).collect();
    let (probes, maps) = attach::load_first(families, opts).expect("loading the BPF families");
    // The first family, the one the agent would use here: a verifier rejecting it would
    // otherwise go unnoticed behind the fallback.
    assert_eq!(probes.family, families[0].as_str(), "a family failed to load; see the libbpf log above");
    // Exactly one argument store exists, the one asked for (map names are cut at 15 bytes);
    // none for the socket family, which keeps no arguments between hooks.
    let stores: Vec<_> = new_maps(&maps_before).into_iter().filter(|(_, n)| n.starts_with("syscall_args")).collect();
    let want = if probes.family == "socket" {
        vec![]
    } else if opts.task_storage {
        vec![(libbpf_rs::MapType::TaskStorage, "syscall_args_ta".to_string())]
    } else {
        vec![(libbpf_rs::MapType::LruHash, "syscall_args".to_string())]
    };
    assert_eq!(stores, want, "argument store of family {} with task_storage={}", probes.family, opts.task_storage);
    let ring_size = libbpf_rs::MapCore::info(&maps.sock_events).expect("events map info").info.max_entries;
    let mut traced = Traced::new(maps.traced_pids, None);
    let pid = std::process::id();
    traced
        .add(TracedProcess {
            pid,
            exe: "/proc/self/exe".into(),
            service: ServiceId::default(),
            parent: None,
            k8s: None,
            language: "rust",
        })
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let stats = ReaderStats::default();
    let proc_changes = maps.proc_changes;
    let maps = ReaderMaps {
        sock_events: maps.sock_events,
        process_events: maps.process_events,
        events_lost: maps.events_lost,
    };
    spawn_reader(maps, tx, stats.clone(), batching, Arc::new(AtomicBool::new(false))).unwrap();
    Capture { _serial: serial, rx, _probes: probes, _traced: traced, stats, ring_size, proc_changes }
}

impl Capture {
    /// Data events on sockets with `port` at either end, collected for `wait`.
    fn collect(&mut self, port: u16, wait: Duration) -> Vec<SockData> {
        self.collect_all(wait)
            .into_iter()
            .filter_map(|ev| match ev {
                RawEvent::Data(d) if d.local.port() == port || d.remote.port() == port => Some(d),
                _ => None,
            })
            .collect()
    }

    /// Every event, collected for `wait`.
    fn collect_all(&mut self, wait: Duration) -> Vec<RawEvent> {
        let deadline = std::time::Instant::now() + wait;
        let mut out = Vec::new();
        while std::time::Instant::now() < deadline {
            while let Ok(batch) = self.rx.try_recv() {
                out.extend(batch);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        out
    }
}

fn pair() -> (TcpStream, TcpStream, u16) {
    pair_on("127.0.0.1")
}

fn pair_on(ip: &str) -> (TcpStream, TcpStream, u16) {
    let l = TcpListener::bind((ip, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let c = TcpStream::connect((ip, port)).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s, port)
}

#[test]
fn root_capture_request_response_both_sides() {
    request_response_both_sides(start(0));
}

/// Both argument stores carry the same events: the LRU hash (kernels before 5.11, and the
/// fallback everywhere) and task storage (5.11+; what the agent picks on this machine and on
/// every kernel of the VM matrix but 5.10).
#[test]
fn root_capture_both_argument_stores() {
    let ring = beyla::config::Config::default().ebpf.ring_buffer_size;
    request_response_both_sides(start_with(0, ring, Some(false)));
    if families().1 {
        request_response_both_sides(start_with(0, ring, Some(true)));
    } else {
        // Not a skip: only kernels older than 5.11 may lack it.
        let version = common::kernel_version();
        assert!(version < (5, 11), "kernel {version:?} lacks task storage for tracing programs, which 5.11+ has");
    }
}

/// `ebpf.ring_buffer_size` reaches the kernel, and a small ring still carries the events.
#[test]
fn root_capture_ring_buffer_size_is_applied() {
    let cap = start_with(0, 256 << 10, None);
    assert_eq!(cap.ring_size, 256 << 10);
    request_response_both_sides(cap);
    assert_eq!(start(0).ring_size, beyla::config::Config::default().ebpf.ring_buffer_size);
}

/// A `wakeup_len` larger than a small ring holds loses nothing: the programs also wake the
/// reader when a quarter of the ring is waiting. The reader polls rarely here, so only
/// wake-ups drain the ring while the traffic runs (1.7 MB of events through 512 KiB; the
/// three quarters left when the reader is woken leave room for a slow guest to schedule it).
#[test]
fn root_capture_small_ring_wakes_before_it_fills() {
    let mut cap = start_polling(500, 512 << 10, None, every(Duration::from_millis(300)));
    let (mut client, mut server, port) = pair();
    const N: usize = 400;
    let echo = std::thread::spawn(move || {
        let mut buf = vec![0u8; 2048];
        for _ in 0..N {
            server.read_exact(&mut buf).unwrap();
            server.write_all(b"k").unwrap();
        }
    });
    let (chunk, mut ack) = (vec![b'q'; 2048], [0u8; 1]);
    for _ in 0..N {
        client.write_all(&chunk).unwrap();
        client.read_exact(&mut ack).unwrap();
    }
    echo.join().unwrap();
    // Longer than the poll plus the reader's 1 s refresh of the kernel's lost counter.
    let events = cap.collect(port, Duration::from_millis(1800));
    let sends = events.iter().filter(|e| e.direction == Direction::Send && e.len == 2048).count();
    let lost = cap.stats.sock_events_lost.get();
    assert_eq!((sends, lost), (N, 0), "client sends seen, events lost");
}

/// `ebpf.batch_timeout` holds a short batch back until it is due, `ebpf.batch_length` lets a
/// long one go at once. Every event wakes the reader here (`wakeup_len` 0), so only the
/// batching decides when events leave it.
#[test]
fn root_capture_batches_by_length_and_timeout() {
    let ring = beyla::config::Config::default().ebpf.ring_buffer_size;
    let mut cap = start_polling(0, ring, None, Batching { length: 1 << 20, timeout: Duration::from_secs(3) });
    let (mut client, mut server, port) = pair();
    exchange(&mut client, &mut server, 1);
    assert_eq!(cap.collect(port, Duration::from_millis(500)).len(), 0, "events forwarded before the batch was due");
    assert_eq!(cap.collect(port, Duration::from_secs(4)).len(), 4, "events forwarded when the batch was due");
    drop(cap);

    let mut cap = start_polling(0, ring, None, Batching { length: 200, timeout: Duration::from_secs(600) });
    let (mut client, mut server, port) = pair();
    exchange(&mut client, &mut server, 100);
    let seen = cap.collect(port, Duration::from_secs(2)).len();
    assert!((200..=400).contains(&seen), "{seen} of 400 events forwarded in full batches of 200 or more");
}

/// `n` one-byte requests and responses, each four data events: two sends, two receives.
fn exchange(client: &mut TcpStream, server: &mut TcpStream, n: usize) {
    let mut b = [0u8; 1];
    for _ in 0..n {
        client.write_all(b"q").unwrap();
        server.read_exact(&mut b).unwrap();
        server.write_all(b"k").unwrap();
        client.read_exact(&mut b).unwrap();
    }
}

fn request_response_both_sides(cap: Capture) {
    request_response_on(cap, "127.0.0.1")
}

fn request_response_on(mut cap: Capture, ip: &str) {
    let (mut client, mut server, port) = pair_on(ip);
    let req = b"GET /hello?x=1 HTTP/1.1\r\nHost: test\r\n\r\n";
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    client.write_all(req).unwrap();
    let mut buf = [0u8; 256];
    let n = server.read(&mut buf).unwrap();
    assert_eq!(n, req.len());
    server.write_all(resp).unwrap();
    let mut got = [0u8; 256];
    let n = client.read(&mut got).unwrap();
    assert_eq!(&got[..n], resp);

    let events = cap.collect(port, Duration::from_millis(500));
    // Exactly four payload events: client send, server recv, server send, client recv.
    assert_eq!(events.len(), 4, "{events:#?}");
    let find = |dir: Direction, local_is_server: bool| {
        events.iter().find(|e| e.direction == dir && (e.local.port() == port) == local_is_server).unwrap_or_else(|| {
            panic!("no {dir:?} event on the {} side", if local_is_server { "server" } else { "client" })
        })
    };
    let c_send = find(Direction::Send, false);
    assert_eq!((c_send.len as usize, c_send.data.as_slice()), (req.len(), &req[..]));
    assert_eq!(c_send.pid, std::process::id());
    let (c_addr, s_addr) = (client.local_addr().unwrap(), server.local_addr().unwrap());
    assert_eq!((c_send.local, c_send.remote), (c_addr, s_addr));
    let s_recv = find(Direction::Recv, true);
    assert_eq!(s_recv.data.as_slice(), &req[..]);
    assert_eq!((s_recv.local, s_recv.remote), (s_addr, c_addr));
    let s_send = find(Direction::Send, true);
    assert_eq!(s_send.data.as_slice(), &resp[..]);
    assert!(s_send.ts_ns >= s_recv.ts_ns);

    let mut tracker = Tracker::new(TrackerLimits::default());
    let mut out = Decoded::default();
    let mut sorted = events.clone();
    sorted.sort_by_key(|e| e.ts_ns);
    for e in &sorted {
        tracker.on_data(e, &mut out);
    }
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let mut roles: Vec<_> = out.requests.iter().map(|r| (r.role, r.target.clone(), r.status)).collect();
    roles.sort_by_key(|r| r.0 == Role::Client);
    assert_eq!(roles, vec![(Role::Server, "/hello?x=1".into(), 200), (Role::Client, "/hello?x=1".into(), 200)]);
}

/// IPv6 connections carry their 16-byte addresses (IPv4 ones come as IPv4-mapped).
/// Discovery's change counter (the process family) moves for what a /proc scan would see
/// differently: processes forked, exec'd and exited, and sockets entering or leaving LISTEN.
/// Other processes on the machine can only add to it, so each step asks for at least its own.
#[test]
fn root_capture_counts_process_and_listener_changes() {
    let cap = start(0);
    let read = || attach::read_proc_changes(&cap.proc_changes).expect("reading proc_changes");
    let n = 20;

    let before = read();
    for _ in 0..n {
        // fork, exec and exit: three changes each.
        let status = std::process::Command::new("/bin/true").status().expect("running /bin/true");
        assert!(status.success());
    }
    let after_procs = read();
    assert!(after_procs - before >= 3 * n, "{n} short-lived processes moved the counter by {}", after_procs - before);

    for _ in 0..n {
        // Enters LISTEN, then leaves it when dropped: two changes each.
        drop(std::net::TcpListener::bind("127.0.0.1:0").expect("binding a listener"));
    }
    let after_listeners = read();
    assert!(
        after_listeners - after_procs >= 2 * n,
        "{n} listeners opened and closed moved the counter by {}",
        after_listeners - after_procs
    );

    // A connected socket's own state changes (SYN_SENT, ESTABLISHED, ...) are not counted: a
    // listener that lives through n connections adds its one LISTEN and nothing per connection.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a listener");
    let port = listener.local_addr().unwrap().port();
    let start_conns = read();
    for _ in 0..n {
        let c = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
        let (s, _) = listener.accept().expect("accepting");
        drop((c, s));
    }
    let conns = read() - start_conns;
    assert!(conns < n, "{n} connections moved the counter by {conns}: connection states are counted");
}

#[test]
fn root_capture_ipv6_addresses() {
    request_response_on(start(0), "::1");
}

#[test]
fn root_capture_every_syscall_family() {
    let mut cap = start(0);
    let (client, server, port) = pair();
    let (cfd, sfd) = (client.as_raw_fd(), server.as_raw_fd());
    let mut buf = [0u8; 64];
    // write/read
    assert_eq!(nix::unistd::write(&client, b"aaaa").unwrap(), 4);
    assert_eq!(nix::unistd::read(sfd, &mut buf).unwrap(), 4);
    // writev/readv
    assert_eq!((&client).write_vectored(&[IoSlice::new(b"bb"), IoSlice::new(b"cc")]).unwrap(), 4);
    std::thread::sleep(Duration::from_millis(20));
    let mut a = [0u8; 2];
    let mut b = [0u8; 30];
    let mut iov = [std::io::IoSliceMut::new(&mut a), std::io::IoSliceMut::new(&mut b)];
    assert_eq!(nix::sys::uio::readv(&server, &mut iov).unwrap(), 4);
    // sendto/recvfrom (what std uses)
    (&client).write_all(b"dddd").unwrap();
    assert_eq!((&server).read(&mut buf).unwrap(), 4);
    // sendmsg/recvmsg
    use nix::sys::socket::{recvmsg, sendmsg, MsgFlags};
    let iov = [IoSlice::new(b"ee"), IoSlice::new(b"ff")];
    assert_eq!(sendmsg::<()>(cfd, &iov, &[], MsgFlags::empty(), None).unwrap(), 4);
    std::thread::sleep(Duration::from_millis(20));
    let mut r = [0u8; 16];
    let mut riov = [std::io::IoSliceMut::new(&mut r)];
    assert_eq!(recvmsg::<()>(sfd, &mut riov, None, MsgFlags::empty()).unwrap().bytes, 4);

    let events = cap.collect(port, Duration::from_millis(500));
    let mut seen: Vec<(Direction, Vec<u8>)> = events.iter().map(|e| (e.direction, e.data.clone())).collect();
    seen.sort();
    let mut want = vec![
        (Direction::Send, b"aaaa".to_vec()),
        (Direction::Recv, b"aaaa".to_vec()),
        (Direction::Send, b"bbcc".to_vec()),
        (Direction::Recv, b"bbcc".to_vec()),
        (Direction::Send, b"dddd".to_vec()),
        (Direction::Recv, b"dddd".to_vec()),
        (Direction::Send, b"eeff".to_vec()),
        (Direction::Recv, b"eeff".to_vec()),
    ];
    want.sort();
    assert_eq!(seen, want);
    // Reads of non-socket fds by a traced process produce no event at all.
    let before = cap.stats.sock_events_read.get();
    for _ in 0..10 {
        std::fs::read("/proc/self/status").unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cap.stats.sock_events_read.get(), before);
}

/// Vectored writes as real servers make them: nginx sends a chunked response in one writev of
/// five pieces (head, chunk size, data, CRLF, last chunk). The payload is copied in order
/// across the first pieces and, when the copy stops before the end, the tail holds the
/// transfer's last 8 bytes, across the pieces they lie in: the chunked terminator the decoder
/// looks for. (Before, only two pieces were copied and a vectored transfer had no tail.)
#[test]
fn root_capture_vectored_writes_keep_order_and_tail() {
    let mut cap = start(0);
    let (client, mut server, port) = pair();
    let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    let data = vec![b'g'; 3000];
    let size = format!("{:x}\r\n", data.len());
    let pieces: [&[u8]; 5] = [head, size.as_bytes(), &data, b"\r\n", b"0\r\n\r\n"];
    let total: usize = pieces.iter().map(|p| p.len()).sum();
    let iov: Vec<IoSlice> = pieces.iter().map(|p| IoSlice::new(p)).collect();
    assert_eq!(nix::sys::uio::writev(&client, &iov).unwrap(), total);
    // sendmsg of four small pieces: all copied, in order, no tail needed.
    use nix::sys::socket::{sendmsg, MsgFlags};
    let small =
        [IoSlice::new(b"GET /a"), IoSlice::new(b" HTTP/1.1\r\n"), IoSlice::new(b"Host: x\r\n"), IoSlice::new(b"\r\n")];
    assert_eq!(sendmsg::<()>(client.as_raw_fd(), &small, &[], MsgFlags::empty(), None).unwrap(), 28);
    // Forty pieces (nginx writes HTTP/2 frames as a header and a payload each, five pieces
    // before a response's header block; grpcio a request in 22): all copied, in order.
    let many: Vec<Vec<u8>> = (0..40u8).map(|i| vec![b'0' + i; 1 + usize::from(i)]).collect();
    let many_iov: Vec<IoSlice> = many.iter().map(|p| IoSlice::new(p)).collect();
    let many_total: usize = many.iter().map(Vec::len).sum();
    assert!(many_total < 2048);
    assert_eq!(nix::sys::uio::writev(&client, &many_iov).unwrap(), many_total);
    let mut got = vec![0u8; total + 28 + many_total];
    server.read_exact(&mut got).unwrap();

    let events = cap.collect(port, Duration::from_millis(500));
    let sends: Vec<_> = events.iter().filter(|e| e.direction == Direction::Send).collect();
    assert_eq!(sends.len(), 3, "{:?}", sends.iter().map(|e| e.len).collect::<Vec<_>>());
    assert_eq!(sends[2].data, many.concat(), "forty pieces, in order");
    let (big, small) = (sends[0], sends[1]);
    assert_eq!(big.len as usize, total);
    let mut want = Vec::new();
    for p in pieces {
        want.extend_from_slice(p);
    }
    assert_eq!(big.data, want[..2048], "the first 2048 bytes, across the pieces, in order");
    assert_eq!(big.tail, b"g\r\n0\r\n\r\n", "the last 8 bytes, from the last three pieces");
    assert_eq!((small.len, small.data.as_slice()), (28, &b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"[..]));
    assert!(small.tail.is_empty(), "a transfer copied whole has no tail");
}

#[test]
fn root_capture_is_bounded_and_counts_everything() {
    // With batched wake-ups, every event still arrives: seen + lost == sent.
    let mut cap = start(16);
    let (mut client, mut server, port) = pair();
    let big = vec![b'z'; 10_000];
    const N: usize = 200;
    let reader = std::thread::spawn(move || {
        let mut total = 0;
        let mut reads = Vec::new();
        let mut buf = vec![0u8; 65536];
        while total < N * 10_000 {
            let n = server.read(&mut buf).unwrap();
            reads.push(n);
            total += n;
        }
        (total, reads)
    });
    for _ in 0..N {
        client.write_all(&big).unwrap();
    }
    let (total, reads) = reader.join().unwrap();
    assert_eq!(total, N * 10_000);
    // Longer than the reader's 1 s refresh of the kernel's lost counter.
    let events = cap.collect(port, Duration::from_millis(1500));
    let sends: Vec<_> = events.iter().filter(|e| e.direction == Direction::Send).collect();
    let lost = cap.stats.sock_events_lost.get() as usize;
    assert_eq!(sends.len() + lost, N, "seen {} + lost {lost} != sent {N}", sends.len());
    // 400 events of ~2 KiB fit the default 4 MiB ring buffer several times over: nothing may be lost.
    assert_eq!(lost, 0);
    // Payload copies are capped, lengths are not.
    let odd: Vec<_> = sends
        .iter()
        .filter(|e| !(e.len == 10_000 && e.data.len() == 2048 && e.tail == b"zzzzzzzz"))
        .map(|e| (e.len, e.data.len(), e.tail.clone()))
        .collect();
    assert!(odd.is_empty(), "{odd:?}");
    let recv_bytes: u64 = events.iter().filter(|e| e.direction == Direction::Recv).map(|e| e.len as u64).sum();
    let recv_lens: Vec<u32> = events.iter().filter(|e| e.direction == Direction::Recv).map(|e| e.len).collect();
    assert_eq!(recv_bytes as usize, N * 10_000, "reads {reads:?}\nevents {recv_lens:?}");
}

/// The end of each traced connection is reported once per socket, for the process whose data
/// it carried: a close from either side, and a reset. A shutdown of one direction is not an
/// end (the process still reads the reply), and what moves after it is still captured.
#[test]
fn root_capture_reports_each_connection_end_once() {
    let mut cap = start(0);
    // Both connections exist before either ends: the kernel reuses a freed socket's memory,
    // and with it the socket id.
    let (mut c1, mut s1, port1) = pair();
    let (mut c2, mut s2, port2) = pair();
    // The client closes first, then the server.
    exchange(&mut c1, &mut s1, 1);
    drop(c1);
    let mut eof = [0u8; 1];
    assert_eq!(s1.read(&mut eof).unwrap(), 0);
    drop(s1);
    // The client shuts its sending side, reads the reply, then resets the connection.
    c2.write_all(b"q").unwrap();
    c2.shutdown(std::net::Shutdown::Write).unwrap();
    let mut req = Vec::new();
    s2.read_to_end(&mut req).unwrap();
    assert_eq!(req, b"q");
    s2.write_all(b"reply").unwrap();
    let mut reply = [0u8; 5];
    c2.read_exact(&mut reply).unwrap();
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: a live socket fd, and a pointer to an initialised linger of the size given.
    let rc = unsafe {
        libc::setsockopt(
            c2.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
    drop(c2);
    std::thread::sleep(Duration::from_millis(50));
    drop(s2);

    let events = cap.collect_all(Duration::from_millis(500));
    let data: Vec<&SockData> = events
        .iter()
        .filter_map(|e| match e {
            RawEvent::Data(d) if [port1, port2].iter().any(|p| d.local.port() == *p || d.remote.port() == *p) => {
                Some(d)
            }
            _ => None,
        })
        .collect();
    let sock_of = |port: u16, server: bool| {
        data.iter()
            .find(|d| (d.local.port() == port) == server && (d.local.port() == port || d.remote.port() == port))
            .map(|d| d.sock_id)
            .unwrap_or_else(|| {
                panic!("no data event on the {} side of port {port}", if server { "server" } else { "client" })
            })
    };
    let mut want = vec![sock_of(port1, false), sock_of(port1, true), sock_of(port2, false), sock_of(port2, true)];
    want.sort();
    let mut closed: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            RawEvent::Close { pid, sock_id, .. } if want.contains(sock_id) => {
                assert_eq!(*pid, std::process::id(), "close of {sock_id:#x}");
                Some(*sock_id)
            }
            _ => None,
        })
        .collect();
    closed.sort();
    assert_eq!(closed, want, "one close per socket (client 1, server 1, client 2, server 2)");
    let after_shutdown = data
        .iter()
        .any(|d| d.direction == Direction::Recv && d.remote.port() == port2 && d.data.as_slice() == b"reply");
    assert!(after_shutdown, "the reply read after shutdown(SHUT_WR) was not captured: {data:#?}");
}

/// The events of the client socket connected to `port` (found by its first write), in ring
/// order: each data event's bytes, and `<close>`.
fn client_socket_events(events: &[RawEvent], port: u16) -> Vec<String> {
    let sock = events
        .iter()
        .find_map(|e| match e {
            RawEvent::Data(d) if d.remote.port() == port && d.direction == Direction::Send => Some(d.sock_id),
            _ => None,
        })
        .expect("the client's writes were captured");
    events
        .iter()
        .filter_map(|e| match e {
            RawEvent::Data(d) if d.sock_id == sock => Some(String::from_utf8_lossy(&d.data).into_owned()),
            RawEvent::Close { sock_id, .. } if *sock_id == sock => Some("<close>".into()),
            _ => None,
        })
        .collect()
}

/// A client that shuts its sending side, then reads an answer the server sent together with
/// its FIN: the client's socket closes (TIME_WAIT) before the read. The answer is captured,
/// and the end comes after it, once.
#[test]
fn root_capture_answer_read_after_the_connection_closed() {
    let mut cap = start(0);
    let (mut client, mut server, port) = pair();
    client.write_all(b"question").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut req = Vec::new();
    server.read_to_end(&mut req).unwrap();
    server.write_all(b"answer").unwrap();
    drop(server);
    // The answer and the FIN arrive; the client's socket goes to TIME_WAIT meanwhile.
    std::thread::sleep(Duration::from_millis(100));
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, b"answer");
    drop(client);

    let order = client_socket_events(&cap.collect_all(Duration::from_millis(500)), port);
    assert_eq!(order, vec!["question", "answer", "<close>"], "the client socket's events in ring order");
}

/// The socket family (Linux 6.3+): bytes peeked at (MSG_PEEK) come once, with the read that
/// takes them; bytes it cannot read (sendfile from a file) still count in the lengths, so a
/// body sent that way is not lost to the framing.
#[test]
fn root_capture_socket_family_peek_and_sendfile() {
    // None only on a kernel older than 6.3 (start_socket_family asserts that).
    let Some(mut cap) = start_socket_family() else { return };
    let (mut client, server, port) = pair();
    client.write_all(b"peekaboo").unwrap();
    let mut buf = [0u8; 8];
    // SAFETY: buf is valid for writes of its length.
    let n = unsafe { libc::recv(server.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_PEEK) };
    assert_eq!(n, 8, "recv(MSG_PEEK): {}", std::io::Error::last_os_error());
    (&server).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"peekaboo");

    const FILE_LEN: usize = 5000;
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&[b'f'; FILE_LEN]).unwrap();
    let mut offset: libc::off_t = 0;
    let mut sent = 0;
    while sent < FILE_LEN {
        // SAFETY: live fds and a valid offset pointer.
        let n = unsafe { libc::sendfile(server.as_raw_fd(), file.as_raw_fd(), &mut offset, FILE_LEN - sent) };
        assert!(n > 0, "sendfile: {}", std::io::Error::last_os_error());
        sent += n as usize;
    }
    let mut got = vec![0u8; FILE_LEN];
    client.read_exact(&mut got).unwrap();

    let events = cap.collect(port, Duration::from_millis(500));
    let server_side = |dir: Direction| -> Vec<&SockData> {
        events.iter().filter(|e| e.direction == dir && e.local.port() == port).collect()
    };
    let recvs: Vec<&[u8]> = server_side(Direction::Recv).iter().map(|e| e.data.as_slice()).collect();
    assert_eq!(recvs, vec![&b"peekaboo"[..]], "server reads");
    let sends = server_side(Direction::Send);
    assert_eq!(sends.iter().map(|e| e.len as usize).sum::<usize>(), FILE_LEN, "sendfile lengths {sends:#?}");
    assert!(sends.iter().all(|e| e.data.is_empty() && e.start_ns == 0), "{sends:#?}");
    let client_bytes: usize = events
        .iter()
        .filter(|e| e.direction == Direction::Recv && e.remote.port() == port)
        .map(|e| e.len as usize)
        .sum();
    assert_eq!(client_bytes, FILE_LEN);
}

/// A write to a peer that is gone (it draws a reset), then the close: the socket's events come
/// in the order they happened, its end last, so the decoder sees a connection's bytes before
/// it forgets it. (The socket family reports an end that a reset brings inside the owner's own
/// write or read after that transfer's event; that interleaving depends on timing and is not
/// forced here.)
#[test]
fn root_capture_write_after_the_peer_closed_then_close() {
    let mut cap = start(0);
    let (mut client, mut server, port) = pair();
    client.write_all(b"hello").unwrap();
    let mut got = [0u8; 5];
    server.read_exact(&mut got).unwrap();
    // Closed with nothing unread: a FIN, not a reset.
    drop(server);
    client.set_nodelay(true).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    // The server's socket is closed: this write draws a reset.
    client.write_all(b"late").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let mut buf = [0u8; 8];
    let _ = client.read(&mut buf); // the reset (or EOF)
    drop(client);

    let order = client_socket_events(&cap.collect_all(Duration::from_millis(500)), port);
    assert_eq!(order, vec!["hello", "late", "<close>"], "the client socket's events in ring order");
}
