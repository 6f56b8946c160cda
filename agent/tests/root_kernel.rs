//! Root-only checks of `beyla::kernel` against independent ground truth on the running
//! kernel. Each probe result is compared with a second method: libbpf-rs loading and
//! attaching a clang-compiled program the way the agent would, sysfs/tracefs files, or
//! mountinfo. Nothing here hard-codes what this host supports.
//!
//! Run with `cargo test -p beyla --test root_kernel -- --nocapture` to see the doctor report.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use beyla::kernel::{self, choose, doctor_report, ensure_mounts, Features, HookFamily, HookMode, KernelError};
use libbpf_rs::{AsRawLibbpf, Link, MapCore, Object, ObjectBuilder};

/// Ground-truth programs, one per feature; each test loads only the one it needs.
const GROUND_TRUTH_C: &str = r#"
#define SEC(n) __attribute__((section(n), used))
static void *(*bpf_get_current_task_btf)(void) = (void *) 158;
static void *(*bpf_task_storage_get)(void *map, void *task, void *value, unsigned long flags) = (void *) 156;
/* BPF_MAP_TYPE_TASK_STORAGE (29), BPF_F_NO_PREALLOC; created only for gt_task_storage. */
struct { int (*type)[29]; int (*map_flags)[1]; int *key; long *value; } gt_task_map SEC(".maps");
static long (*bpf_msg_push_data)(void *msg, unsigned int start, unsigned int len, unsigned long long flags) = (void *) 90;
static unsigned long long (*bpf_get_current_pid_tgid)(void) = (void *) 14;
static long (*bpf_reserve_hdr_opt)(void *skops, unsigned int len, unsigned long long flags) = (void *) 144;
/* BPF_MAP_TYPE_SOCKHASH (18); created only for the sk_msg programs. */
struct { int (*type)[18]; int (*max_entries)[1]; unsigned long long *key; unsigned long long *value; } gt_sockhash SEC(".maps");

/* What the fentry family does on x86: read the syscall wrapper's pt_regs argument (5.10's
 * verifier refuses it; the BTF there declares struct pt_regs only forward). */
SEC("fentry/__x64_sys_recvfrom") int gt_fentry(unsigned long long *ctx)
{
	volatile unsigned long long regs = ctx[0];
	(void)regs;
	return 0; /* the only return value fentry programs may have */
}
SEC("tp_btf/sched_process_exec") int gt_tp_btf(void *ctx) { return 0; }
SEC("tp_btf/sock_send_length") int gt_sock_send(void *ctx) { return 0; }
SEC("tp_btf/sock_recv_length") int gt_sock_recv(void *ctx) { return 0; }
SEC("kprobe/vprintk") int gt_kprobe(void *ctx) { return 0; }
SEC("uprobe.multi") int gt_uprobe_multi(void *ctx) { return 0; }
SEC("tcx/ingress") int gt_tcx(void *ctx) { return -1; }
SEC("raw_tp/sched_process_exec") int gt_raw_tp(void *ctx) { return 0; }
SEC("tracepoint/syscalls/sys_enter_getpid") int gt_tracepoint(void *ctx) { return 0; }
SEC("tracepoint/syscalls/sys_enter_getppid") int gt_task_btf(void *ctx)
{
	return bpf_get_current_task_btf() != 0;
}
SEC("tracepoint/syscalls/sys_enter_getppid") int gt_task_storage(void *ctx)
{
	long *v = bpf_task_storage_get(&gt_task_map, bpf_get_current_task_btf(), 0, 1);
	if (v)
		*v += 1;
	return 0;
}
/* Propagation: socket selection, TCP header options, a header written into a message. */
SEC("sockops") int gt_sockops(void *ctx) { return 1; }
SEC("sockops") int gt_hdr_opt(void *ctx) { bpf_reserve_hdr_opt(ctx, 0, 0); return 1; }
SEC("sk_msg") int gt_sk_msg(void *msg) { bpf_msg_push_data(msg, 0, 0, 0); return 1; }
SEC("sk_msg") int gt_sk_msg_pid(void *msg) { return bpf_get_current_pid_tgid() != 0; }
SEC("sk_skb/verdict") int gt_skb_verdict(void *skb) { return 1; }
char LICENSE[] SEC("license") = "GPL";
"#;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "root_* tests need root: they mount bpffs/tracefs and load BPF programs (run as root, e.g. `sudo -E cargo test -p beyla --test root_kernel`)"
    );
}

/// probe() and the ground-truth loads run one at a time (they count programs by name).
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Mounts what is needed and probes once for the whole binary.
fn features() -> &'static Features {
    static F: OnceLock<Features> = OnceLock::new();
    F.get_or_init(|| {
        require_root();
        ensure_mounts().expect("ensure_mounts");
        let _g = serial();
        kernel::probe()
    })
}

/// The clang-compiled ground-truth object (compiled once).
fn object_path() -> &'static Path {
    static OBJ: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &OBJ.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("gt.bpf.c");
        let obj = dir.path().join("gt.bpf.o");
        fs::write(&src, GROUND_TRUTH_C).expect("write source");
        let out = Command::new("clang")
            .args(["-O2", "-g", "-target", "bpf", "-c"])
            .arg(&src)
            .arg("-o")
            .arg(&obj)
            .output()
            .expect("clang is needed to build the ground-truth BPF object");
        assert!(out.status.success(), "clang failed: {}", String::from_utf8_lossy(&out.stderr));
        (dir, obj)
    })
    .1
}

/// Opens the ground-truth object with only `prog` enabled and loads it.
fn load_only(prog: &str) -> Result<Object, libbpf_rs::Error> {
    let mut open = ObjectBuilder::default().open_file(object_path())?;
    for mut p in open.progs_mut() {
        let keep = p.name() == prog;
        p.set_autoload(keep);
    }
    for mut m in open.maps_mut() {
        if m.name() == "gt_task_map" {
            m.set_autocreate(prog == "gt_task_storage")?;
        }
        if m.name() == "gt_sockhash" {
            m.set_autocreate(prog.starts_with("gt_sk_msg") || prog == "gt_skb_verdict")?;
        }
    }
    open.load()
}

/// Loads `prog` alone and attaches it with `attach`; Ok(()) if both worked.
fn load_and_attach(
    prog: &str,
    attach: impl FnOnce(&libbpf_rs::ProgramMut<'_>) -> Result<Link, libbpf_rs::Error>,
) -> Result<(), String> {
    let obj = load_only(prog).map_err(|e| format!("load {prog}: {e}"))?;
    let p = obj.progs_mut().find(|p| p.name() == prog).ok_or("program missing")?;
    attach(&p).map(drop).map_err(|e| format!("attach {prog}: {e}"))
}

fn check(name: &str, probed: bool, truth: &Result<(), String>, note: &str) {
    assert_eq!(probed, truth.is_ok(), "{name}: probe says {probed} ({note}) but ground truth says {truth:?}");
    println!("{name:<22} probe={probed:<5} truth={truth:?}");
}

/// Reads the lockdown mode through our own securityfs mount on a temporary directory.
fn lockdown_ground_truth() -> Option<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    nix::mount::mount(Some("securityfs"), dir.path(), Some("securityfs"), nix::mount::MsFlags::empty(), None::<&str>)
        .expect("mount securityfs");
    let text = fs::read_to_string(dir.path().join("lockdown")).ok();
    nix::mount::umount2(dir.path(), nix::mount::MntFlags::MNT_DETACH).expect("umount securityfs");
    let text = text?;
    let word = text.split_whitespace().find(|w| w.starts_with('['))?;
    Some(word.trim_matches(|c| c == '[' || c == ']').to_string())
}

#[no_mangle]
#[inline(never)]
pub extern "C" fn beyla_root_kernel_uprobe_target() -> u64 {
    std::hint::black_box(42)
}

#[test]
fn root_ensure_mounts_mounts_bpffs_and_tracefs_idempotently() {
    require_root();
    let first = ensure_mounts().expect("ensure_mounts");
    let second = ensure_mounts().expect("second ensure_mounts");
    assert!(second.mounted_now.is_empty(), "second call mounted again: {second:?}");
    assert_eq!((&first.bpffs, &first.tracefs), (&second.bpffs, &second.tracefs));

    // Independent check: statfs magic numbers (linux/magic.h).
    let magic = |p: &Path| nix::sys::statfs::statfs(p).expect("statfs").filesystem_type().0 as u64;
    assert_eq!(magic(&first.bpffs), 0xcafe_4a11, "{} is not bpffs", first.bpffs.display());
    assert_eq!(magic(&first.tracefs), 0x7472_6163, "{} is not tracefs", first.tracefs.display());
    assert!(first.tracefs.join("events").is_dir());

    // Exactly one mount per fs at the chosen place: no stacking from repeated calls.
    let info = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    for (fs_type, at) in [("bpf", &first.bpffs), ("tracefs", &first.tracefs)] {
        let needle = format!(" {} ", at.display());
        let n = info.lines().filter(|l| l.contains(&needle) && l.contains(&format!(" - {fs_type} "))).count();
        assert_eq!(n, 1, "{fs_type} at {} mounted {n} times:\n{info}", at.display());
    }

    // cgroup2 location agrees with mountinfo.
    let cg2 = info
        .lines()
        .filter(|l| l.contains(" - cgroup2 "))
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .collect::<Vec<_>>();
    match &first.cgroup2 {
        Some(p) => assert!(cg2.contains(p), "{p:?} not among {cg2:?}"),
        None => assert!(cg2.is_empty()),
    }
}

#[test]
fn root_probe_leaves_nothing_loaded() {
    require_root();
    ensure_mounts().expect("ensure_mounts");
    let _g = serial();
    // How long probing takes is for benchmarks, not a test assertion (it is printed).
    let start = Instant::now();
    let f = kernel::probe();
    println!("probe() took {:?}", start.elapsed());
    // Closed programs are freed after an RCU grace period: allow a little time.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<u32> = libbpf_rs::query::ProgInfoIter::default()
            .filter(|p| p.name.to_string_lossy() == "beyla_feature")
            .map(|p| p.id)
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "probe programs still loaded: {left:?} ({})", f.summary_line());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Nor the sk_msg probe's sockhash, nor the sockops probe's cgroup.
    let deadline = Instant::now() + Duration::from_secs(5);
    while libbpf_rs::query::MapInfoIter::default().any(|m| m.name.to_string_lossy() == "beyla_feature") {
        assert!(Instant::now() < deadline, "probe map still there");
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(cg) = &f.cgroup2 {
        let left: Vec<_> = fs::read_dir(cg)
            .expect("cgroup2 dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("beyla-probe-"))
            .collect();
        assert!(left.is_empty(), "probe cgroups left: {left:?}");
    }
}

#[test]
fn root_probe_basics_match_the_system() {
    let f = features();
    assert!(f.ringbuf, "ringbuf: {}", f.note("ringbuf"));
    assert!(f.tracepoints, "tracepoints: {}", f.note("tracepoints"));
    assert!(f.raw_tp, "raw_tp: {}", f.note("raw_tp"));
    assert_eq!(f.btf, fs::File::open("/sys/kernel/btf/vmlinux").is_ok());
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    assert_eq!(f.kernel_release, release.trim());
    let found = kernel::find_mounts().expect("find_mounts");
    assert_eq!((&f.bpffs, &f.tracefs, &f.cgroup2), (&found.bpffs, &found.tracefs, &found.cgroup2));
    assert_eq!(f.lockdown, lockdown_ground_truth());
    if f.probe_write_user {
        assert!(matches!(f.lockdown.as_deref(), None | Some("none")));
    }
}

/// kprobes: the PMU exists and tracefs `kprobe_events` accepts a probe; and libbpf-rs
/// (which falls back to `kprobe_events` itself) attaches a kprobe program.
#[test]
fn root_kprobes_match_pmu_kprobe_events_and_libbpf() {
    let f = features();
    let tracefs = f.tracefs.as_ref().expect("tracefs mounted");
    let pmu = Path::new("/sys/bus/event_source/devices/kprobe").is_dir();
    let name = format!("beyla_gt_{}", std::process::id());
    let events = tracefs.join("kprobe_events");
    let write =
        |line: &str| OpenOptions::new().append(true).open(&events).and_then(|mut fd| fd.write_all(line.as_bytes()));
    let kprobe_events = write(&format!("p:{name} vprintk\n")).map_err(|e| format!("{}: {e}", events.display()));
    if kprobe_events.is_ok() {
        write(&format!("-:{name}\n")).expect("remove ground-truth kprobe");
    }
    let truth = if pmu { kprobe_events } else { Err("no kprobe PMU".to_string()) };
    check("kprobes (pmu+events)", f.kprobes, &truth, f.note("kprobes"));
    let _g = serial();
    let libbpf = load_and_attach("gt_kprobe", |p| p.attach_kprobe(false, "vprintk"));
    check("kprobes (libbpf-rs)", f.kprobes, &libbpf, f.note("kprobes"));
}

#[test]
fn root_fentry_matches_libbpf() {
    let f = features();
    let _g = serial();
    let truth = load_and_attach("gt_fentry", |p| p.attach_trace());
    check("fentry", f.fentry, &truth, f.note("fentry"));
}

#[test]
fn root_tp_btf_matches_libbpf() {
    let f = features();
    let _g = serial();
    let truth = load_and_attach("gt_tp_btf", |p| p.attach_trace());
    check("tp_btf", f.tp_btf, &truth, f.note("tp_btf"));
}

/// The socket family's tracepoints (Linux 6.3+: a newer kernel without them fails here).
#[test]
fn root_sock_tracepoints_match_libbpf() {
    let f = features();
    let _g = serial();
    let truth = load_and_attach("gt_sock_send", |p| p.attach_trace())
        .and_then(|()| load_and_attach("gt_sock_recv", |p| p.attach_trace()));
    check("sock_tracepoints", f.sock_tracepoints, &truth, f.note("sock_tracepoints"));
    let version = common::kernel_version();
    assert!(f.sock_tracepoints || version < (6, 3), "kernel {version:?} has no socket tracepoints");
}

#[test]
fn root_tracepoints_and_raw_tp_match_libbpf() {
    let f = features();
    let _g = serial();
    let truth = load_and_attach("gt_tracepoint", |p| p.attach());
    check("syscall_tracepoints", f.syscall_tracepoints, &truth, f.note("syscall_tracepoints"));
    let truth = load_and_attach("gt_raw_tp", |p| p.attach_raw_tracepoint("sched_process_exec"));
    check("raw_tp", f.raw_tp, &truth, f.note("raw_tp"));
}

#[test]
fn root_task_btf_matches_libbpf() {
    let f = features();
    let _g = serial();
    let truth = load_only("gt_task_btf").map(drop).map_err(|e| e.to_string());
    check("get_current_task_btf", f.get_current_task_btf, &truth, f.note("get_current_task_btf"));
}

/// Task storage as the capture programs use it: created, got with F_CREATE for the current
/// task, from a tracepoint program.
#[test]
fn root_task_storage_matches_libbpf() {
    let f = features();
    let _g = serial();
    let truth = load_and_attach("gt_task_storage", |p| p.attach());
    check("task_storage", f.task_storage, &truth, f.note("task_storage"));
}

#[test]
fn root_uprobe_multi_matches_libbpf() {
    let f = features();
    assert_eq!(beyla_root_kernel_uprobe_target(), 42);
    let _g = serial();
    let exe = std::env::current_exe().expect("current_exe");
    let pid = std::process::id() as i32;
    let truth = load_and_attach("gt_uprobe_multi", |p| {
        p.attach_uprobe_multi(pid, &exe, "beyla_root_kernel_uprobe_target", false, false)
    });
    check("uprobe_multi", f.uprobe_multi, &truth, f.note("uprobe_multi"));
}

/// tcx through libbpf's `bpf_program__attach_tcx`, on `lo` of a private network namespace.
#[test]
fn root_tcx_matches_libbpf() {
    let f = features();
    let _g = serial();
    let truth = std::thread::spawn(|| {
        // SAFETY: only this thread moves to the new network namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(format!("unshare: {}", std::io::Error::last_os_error()));
        }
        let obj = load_only("gt_tcx").map_err(|e| format!("load gt_tcx: {e}"))?;
        let prog = obj.progs_mut().find(|p| p.name() == "gt_tcx").ok_or("program missing")?;
        // SAFETY: the program is loaded and outlives the call; NULL opts are allowed.
        let link =
            unsafe { libbpf_sys::bpf_program__attach_tcx(prog.as_libbpf_object().as_ptr(), 1, std::ptr::null()) };
        let ptr =
            std::ptr::NonNull::new(link).ok_or_else(|| format!("attach_tcx: {}", std::io::Error::last_os_error()))?;
        // SAFETY: libbpf returned an owned, valid link.
        drop(unsafe { Link::from_ptr(ptr) });
        Ok(())
    })
    .join()
    .expect("tcx thread");
    check("tcx", f.tcx, &truth, f.note("tcx"));
}

/// A cgroup made for a ground-truth attach, removed when dropped.
struct TestCgroup(PathBuf);

impl TestCgroup {
    fn new(f: &Features) -> Self {
        let dir = f.cgroup2.as_ref().expect("cgroup v2 mounted").join(format!("beyla-gt-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("create a test cgroup");
        Self(dir)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

/// sockops on a cgroup (libbpf's `bpf_program__attach_cgroup`, a link), the TCP header option
/// helper, and sk_msg with `bpf_msg_push_data` on a sockhash (libbpf's `attach_sockmap`).
#[test]
fn root_propagation_hooks_match_libbpf() {
    let f = features();
    let _g = serial();
    let cg = TestCgroup::new(f);
    let dir = fs::File::open(&cg.0).expect("open the test cgroup");
    let truth = load_and_attach("gt_sockops", |p| p.attach_cgroup(dir.as_raw_fd()));
    check("cgroup_sockops", f.cgroup_sockops, &truth, f.note("cgroup_sockops"));
    let truth = load_only("gt_hdr_opt").map(drop).map_err(|e| e.to_string());
    check("tcp_hdr_opt", f.tcp_hdr_opt, &truth, f.note("tcp_hdr_opt"));
    let truth = load_only("gt_sk_msg_pid").map(drop).map_err(|e| e.to_string());
    check("sk_msg_pid", f.sk_msg_pid, &truth, f.note("sk_msg_pid"));
    let truth = (|| {
        let obj = load_only("gt_sk_msg").map_err(|e| format!("load: {e}"))?;
        let map = obj.maps().find(|m| m.name() == "gt_sockhash").ok_or("map missing")?;
        let fd = map.as_fd().as_raw_fd();
        let prog = obj.progs_mut().find(|p| p.name() == "gt_sk_msg").ok_or("program missing")?;
        prog.attach_sockmap(fd).map_err(|e| format!("attach_sockmap: {e}"))
    })();
    check("sk_msg", f.sk_msg, &truth, f.note("sk_msg"));
}

/// FIONREAD of a socket in a sockhash with an sk_msg program (and, apart, a pass-through
/// SK_SKB verdict too), done with libbpf-rs's API and std's sockets: the probe must agree.
#[test]
fn root_sockmap_fionread_matches_an_independent_try() {
    let f = features();
    assert!(f.sk_msg, "sk_msg is needed for this check: {}", f.note("sk_msg"));
    let _g = serial();
    let fionread = |with_verdict: bool| -> Result<(), String> {
        let mut open = ObjectBuilder::default().open_file(object_path()).map_err(|e| e.to_string())?;
        for mut p in open.progs_mut() {
            let keep = p.name() == "gt_sk_msg" || (with_verdict && p.name() == "gt_skb_verdict");
            p.set_autoload(keep);
        }
        for mut m in open.maps_mut() {
            m.set_autocreate(m.name() == "gt_sockhash").map_err(|e| e.to_string())?;
        }
        let obj = open.load().map_err(|e| e.to_string())?;
        let map = obj.maps().find(|m| m.name() == "gt_sockhash").ok_or("map missing")?;
        for p in obj.progs_mut().filter(|p| p.autoload()) {
            p.attach_sockmap(map.as_fd().as_raw_fd()).map_err(|e| format!("attach_sockmap: {e}"))?;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).map_err(|e| e.to_string())?;
        let (mut server, _) = listener.accept().map_err(|e| e.to_string())?;
        map.update(&0u64.to_ne_bytes(), &(client.as_raw_fd() as u64).to_ne_bytes(), libbpf_rs::MapFlags::ANY)
            .map_err(|e| format!("sockhash update: {e}"))?;
        server.write_all(&[b'x'; 100]).map_err(|e| e.to_string())?;
        // Wait for the bytes with a plain blocking read of one byte, then count the rest.
        client.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut one = [0u8; 1];
        std::io::Read::read_exact(&mut &client, &mut one).map_err(|e| format!("read: {e}"))?;
        std::thread::sleep(Duration::from_millis(50));
        let mut n: libc::c_int = -1;
        // SAFETY: FIONREAD writes one int.
        assert_eq!(unsafe { libc::ioctl(client.as_raw_fd(), libc::FIONREAD, &mut n) }, 0);
        if n == 99 {
            Ok(())
        } else {
            Err(format!("FIONREAD {n} with 99 bytes unread"))
        }
    };
    check("sockmap_fionread", f.sockmap_fionread, &fionread(false), f.note("sockmap_fionread"));
    check("sockmap_fionread_verdict", f.sockmap_fionread_verdict, &fionread(true), f.note("sockmap_fionread_verdict"));
}

/// Another user of the hooks is seen: a sockops program on the cgroup v2 root (as Cilium
/// attaches one) and an sk_msg program loaded anywhere. The sockops program returns 1 and sets
/// nothing, so the host's sockets keep the kernel's defaults while it is attached.
#[test]
fn root_other_users_of_the_propagation_hooks_are_listed() {
    let f = features();
    if !f.cgroup_sockops {
        panic!("this kernel has no cgroup sockops links ({}): the listing cannot be tested", f.note("cgroup_sockops"));
    }
    let _g = serial();
    let before = kernel::probe().sock_users.expect("sock_users listed as root");
    assert!(!before.iter().any(|u| u.contains("gt_")), "{before:?}");
    let root = fs::File::open(f.cgroup2.as_ref().expect("cgroup2")).expect("open the cgroup v2 root");
    let sockops = load_only("gt_sockops").expect("load gt_sockops");
    let _link = sockops
        .progs_mut()
        .find(|p| p.name() == "gt_sockops")
        .expect("program")
        .attach_cgroup(root.as_raw_fd())
        .expect("attach to the cgroup v2 root");
    let _msg = load_only("gt_sk_msg").expect("load gt_sk_msg");
    let users = kernel::probe().sock_users.expect("sock_users listed as root");
    assert!(users.contains(&"sockops:gt_sockops".to_string()), "{users:?}");
    assert!(users.contains(&"sk_msg:gt_sk_msg".to_string()), "{users:?}");
    assert_eq!(users.len(), before.len() + 2, "{users:?} vs {before:?}");
}

#[test]
fn root_hook_plan_is_consistent_with_features() {
    let f = features();
    let auto = choose(f, HookMode::Auto).expect("auto plan on a supported kernel");
    // auto takes the best family this kernel has: socket, else fentry, else kprobes, else
    // tracepoints.
    let best = if f.sock_tracepoints && f.btf && f.get_current_task_btf {
        HookFamily::Socket
    } else if f.fentry && f.btf {
        HookFamily::Fentry
    } else if f.kprobes {
        HookFamily::Kprobes
    } else {
        HookFamily::Tracepoints
    };
    assert_eq!(auto.family, best);
    for (mode, family, available) in [
        (HookMode::Socket, HookFamily::Socket, f.sock_tracepoints && f.btf && f.get_current_task_btf),
        (HookMode::Kprobes, HookFamily::Kprobes, f.kprobes),
        (HookMode::Fentry, HookFamily::Fentry, f.fentry && f.btf),
        (HookMode::Tracepoints, HookFamily::Tracepoints, true),
    ] {
        match choose(f, mode) {
            Ok(p) => assert!(available && p.family == family, "{mode}: {p:?}"),
            Err(e @ KernelError::HookFamilyUnavailable { .. }) => {
                assert!(!available, "{mode} unavailable: {e}");
                assert!(e.to_string().starts_with(&format!("ebpf.hook_mode: {mode} requested but this kernel (")));
            }
            Err(e) => panic!("{mode}: unexpected {e}"),
        }
    }
    let best = HookFamily::PREFERENCE.into_iter().find(|fam| fam.availability(f).is_ok());
    assert_eq!(Some(auto.best_available), best);
}

#[test]
fn root_doctor_report() {
    let f = features();
    let plan = choose(f, HookMode::Auto);
    let report = doctor_report(f, &plan);
    println!("{report}");
    assert!(report.contains(&f.kernel_release));
    assert!(report.contains(&format!("summary: {}", f.summary_line())));
}
