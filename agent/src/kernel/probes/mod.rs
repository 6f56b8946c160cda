//! Individual kernel feature probes.
//!
//! Each probe loads a two- or three-instruction program (`r0 = 0; exit`) and, where the
//! feature is about attaching, really attaches it and closes every fd again, so nothing
//! stays behind. A probe never fails: it returns an [`Outcome`] with a short note that
//! the doctor shows. The approach follows libbpf's `features.c`/`libbpf_probes.c` and
//! cilium/ebpf's `features` package.

use std::ffi::{CStr, CString};
use std::fs;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use libbpf_sys as sys;
use nix::errno::Errno;

mod sockops;
pub(crate) use sockops::{cgroup_sockops, sk_msg, sock_users, sockmap_fionread, tcp_hdr_opt};

/// Result of one probe: whether the feature works, and why (shown by `beyla doctor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub ok: bool,
    pub note: String,
}

impl Outcome {
    fn yes(note: impl Into<String>) -> Self {
        Self { ok: true, note: note.into() }
    }
    fn no(note: impl Into<String>) -> Self {
        Self { ok: false, note: note.into() }
    }
}

/// Kernel functions used as kprobe / fentry targets, most stable first.
const KPROBE_SYMBOLS: &[&CStr] = &[c"vprintk", c"do_sys_openat2", c"ksys_read"];
/// The fentry family hooks the syscall wrappers and reads their `pt_regs *` argument: probe
/// exactly that first (5.10's BTF declares that argument's type only forward, and its verifier
/// then refuses the read), the others only where the wrapper is missing (non-x86).
const FENTRY_FUNCS: &[&CStr] = &[c"__x64_sys_recvfrom", c"do_sys_openat2", c"vprintk", c"ksys_read"];
const OP_LDX_DW: u8 = 0x01 | 0x60 | 0x18; // BPF_LDX | BPF_MEM | BPF_DW
/// The tracepoint the tp_btf probe attaches to (its `btf_trace_<tp>` typedef names it).
const TP_BTF_PROBE: &str = "sched_process_exec";
/// The socket layer's tracepoints the socket family attaches to (Linux 6.3+).
pub(crate) const SOCK_TRACEPOINTS: [&str; 2] = ["sock_send_length", "sock_recv_length"];
const RAW_TP_NAME: &CStr = c"sched_process_exec";

const PROG_NAME: &CStr = c"beyla_feature";
const LICENSE: &CStr = c"GPL";

// Opcodes (linux/bpf.h, linux/bpf_common.h).
const OP_MOV64_IMM: u8 = 0x07 | 0xb0; // BPF_ALU64 | BPF_MOV | BPF_K
const OP_CALL: u8 = 0x05 | 0x80; // BPF_JMP | BPF_CALL
const OP_EXIT: u8 = 0x05 | 0x90; // BPF_JMP | BPF_EXIT

/// `_IOW('$', 8, __u32)` from linux/perf_event.h.
const PERF_EVENT_IOC_SET_BPF: u64 = 0x4004_2408;
const PERF_TYPE_TRACEPOINT: u32 = 2;

fn insn(code: u8, dst: u8, imm: i32) -> sys::bpf_insn {
    let mut i = sys::bpf_insn { code, imm, ..Default::default() };
    i.set_dst_reg(dst);
    i
}

/// `r0 = imm; exit`.
fn ret_imm(imm: i32) -> [sys::bpf_insn; 2] {
    [insn(OP_MOV64_IMM, 0, imm), insn(OP_EXIT, 0, 0)]
}

/// `call helper; r0 = 0; exit`.
fn call_ret0(helper: sys::bpf_func_id) -> [sys::bpf_insn; 3] {
    [insn(OP_CALL, 0, helper as i32), insn(OP_MOV64_IMM, 0, 0), insn(OP_EXIT, 0, 0)]
}

/// Converts a libbpf return value (fd or `-errno`) into an owned fd.
fn owned_fd(ret: libc::c_int) -> Result<OwnedFd, Errno> {
    if ret < 0 {
        Err(Errno::from_raw(-ret))
    } else {
        // SAFETY: libbpf returned a fresh fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(ret) })
    }
}

fn prog_load(
    prog_type: sys::bpf_prog_type,
    insns: &[sys::bpf_insn],
    expected_attach_type: sys::bpf_attach_type,
    attach_btf_id: u32,
) -> Result<OwnedFd, Errno> {
    let mut opts = sys::bpf_prog_load_opts {
        sz: size_of::<sys::bpf_prog_load_opts>() as _,
        expected_attach_type,
        attach_btf_id,
        ..Default::default()
    };
    // SAFETY: all pointers are valid for the call; `opts` is fully initialised.
    let ret = unsafe {
        sys::bpf_prog_load(prog_type, PROG_NAME.as_ptr(), LICENSE.as_ptr(), insns.as_ptr(), insns.len() as _, &mut opts)
    };
    owned_fd(ret)
}

fn link_opts() -> sys::bpf_link_create_opts {
    // SAFETY: an all-zero bpf_link_create_opts is valid (plain integers and null pointers).
    let mut o: sys::bpf_link_create_opts = unsafe { std::mem::zeroed() };
    o.sz = size_of::<sys::bpf_link_create_opts>() as _;
    o
}

fn link_create(
    prog: &OwnedFd,
    target: libc::c_int,
    attach_type: sys::bpf_attach_type,
    opts: &sys::bpf_link_create_opts,
) -> Result<OwnedFd, Errno> {
    // SAFETY: `opts` and everything it points to outlive the call.
    owned_fd(unsafe { sys::bpf_link_create(prog.as_raw_fd(), target, attach_type, opts) })
}

/// vmlinux BTF loaded once and shared by the fentry and tp_btf probes.
pub(crate) struct VmlinuxBtf(*mut sys::btf);

impl VmlinuxBtf {
    pub(crate) fn load() -> Option<Self> {
        // SAFETY: plain constructor; a null/error pointer is checked below.
        let ptr = unsafe { sys::btf__load_vmlinux_btf() };
        // libbpf 1.x returns NULL on error (errno set).
        (!ptr.is_null()).then_some(Self(ptr))
    }

    fn find(&self, name: &CStr, kind: u32) -> Option<u32> {
        // SAFETY: self.0 is a live btf object, `name` is NUL-terminated.
        let id = unsafe { sys::btf__find_by_name_kind(self.0, name.as_ptr(), kind) };
        u32::try_from(id).ok().filter(|id| *id > 0)
    }
}

impl Drop for VmlinuxBtf {
    fn drop(&mut self) {
        // SAFETY: self.0 came from btf__load_vmlinux_btf and is freed once.
        unsafe { sys::btf__free(self.0) }
    }
}

/// Reads the dynamic PMU type of `pmu` ("kprobe", "uprobe") from sysfs.
fn pmu_type(pmu: &str) -> Option<u32> {
    let path = format!("/sys/bus/event_source/devices/{pmu}/type");
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn perf_event_open(attr: &sys::perf_event_attr) -> Result<OwnedFd, Errno> {
    // pid = -1, cpu = 0: all tasks on CPU 0, as libbpf does for kprobes and tracepoints.
    // SAFETY: `attr` is a valid, fully initialised perf_event_attr.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr as *const sys::perf_event_attr,
            -1 as libc::pid_t,
            0 as libc::c_int,
            -1 as libc::c_int,
            sys::PERF_FLAG_FD_CLOEXEC as libc::c_ulong,
        )
    };
    if ret < 0 {
        Err(Errno::last())
    } else {
        // SAFETY: the syscall returned a new fd.
        Ok(unsafe { OwnedFd::from_raw_fd(ret as libc::c_int) })
    }
}

fn perf_attr(type_: u32, config: u64) -> sys::perf_event_attr {
    let mut attr =
        sys::perf_event_attr { type_, size: size_of::<sys::perf_event_attr>() as u32, config, ..Default::default() };
    // Created disabled: the program is never run, the attach path is still checked.
    attr.set_disabled(1);
    attr
}

fn set_bpf(perf: &OwnedFd, prog: &OwnedFd) -> Result<(), Errno> {
    // SAFETY: both fds are live; the ioctl takes the prog fd by value.
    let ret = unsafe { libc::ioctl(perf.as_raw_fd(), PERF_EVENT_IOC_SET_BPF as _, prog.as_raw_fd()) };
    Errno::result(ret).map(drop)
}

/// A kprobe perf event on a stable symbol through the kprobe PMU, with a KPROBE program
/// attached to it (`PERF_EVENT_IOC_SET_BPF`), then closed.
pub(crate) fn kprobes(keep: &mut Vec<OwnedFd>) -> Outcome {
    let Some(pmu) = pmu_type("kprobe") else {
        return Outcome::no("no kprobe PMU in /sys/bus/event_source/devices (CONFIG_KPROBES not set?)");
    };
    let prog = match prog_load(sys::BPF_PROG_TYPE_KPROBE, &ret_imm(0), 0, 0) {
        Ok(p) => p,
        Err(e) => return Outcome::no(format!("kprobe program load: {e:?}")),
    };
    let mut last = Errno::ENOENT;
    for sym in KPROBE_SYMBOLS {
        let mut attr = perf_attr(pmu, 0);
        attr.__bindgen_anon_3.kprobe_func = sym.as_ptr() as u64;
        attr.__bindgen_anon_4.probe_offset = 0;
        match perf_event_open(&attr) {
            Ok(perf) => {
                return match set_bpf(&perf, &prog) {
                    Ok(()) => {
                        keep.push(perf);
                        Outcome::yes(format!("kprobe on {}", sym.to_string_lossy()))
                    }
                    Err(e) => Outcome::no(format!("attach to kprobe event: {e:?}")),
                }
            }
            Err(e) => last = e,
        }
    }
    Outcome::no(format!("perf_event_open(kprobe): {last:?}"))
}

/// A uprobe perf event (the uprobe PMU, as libbpf attaches the Go and TLS probes) on this
/// executable's first byte, created disabled with the agent's own credentials, then closed:
/// some kernels let only CAP_SYS_ADMIN create one, whatever CAP_PERFMON allows elsewhere.
pub(crate) fn uprobes() -> Outcome {
    let Some(pmu) = pmu_type("uprobe") else {
        return Outcome::no("no uprobe PMU in /sys/bus/event_source/devices (CONFIG_UPROBE_EVENTS not set?)");
    };
    let path = c"/proc/self/exe";
    let mut attr = perf_attr(pmu, 0);
    attr.__bindgen_anon_3.uprobe_path = path.as_ptr() as u64;
    attr.__bindgen_anon_4.probe_offset = 0;
    match perf_event_open(&attr) {
        Ok(_) => Outcome::yes("uprobe perf event on the agent's executable"),
        Err(e @ (Errno::EACCES | Errno::EPERM)) => {
            Outcome::no(format!("perf_event_open(uprobe): {e:?}: refused with these credentials"))
        }
        Err(e) => Outcome::no(format!("perf_event_open(uprobe): {e:?}")),
    }
}

/// cilium/ebpf's `haveBPFLinkKprobeMulti`: a kprobe.multi link on `vprintk`, closed at once.
pub(crate) fn kprobe_multi(keep: &mut Vec<OwnedFd>) -> Outcome {
    let prog = match prog_load(sys::BPF_PROG_TYPE_KPROBE, &ret_imm(0), sys::BPF_TRACE_KPROBE_MULTI, 0) {
        Ok(p) => p,
        Err(e) => return Outcome::no(format!("kprobe.multi program load: {e:?}")),
    };
    let syms = [c"vprintk".as_ptr()];
    let mut opts = link_opts();
    opts.__bindgen_anon_1.kprobe_multi = sys::bpf_link_create_opts__bindgen_ty_1__bindgen_ty_2 {
        cnt: 1,
        syms: syms.as_ptr() as *mut _,
        ..Default::default()
    };
    match link_create(&prog, 0, sys::BPF_TRACE_KPROBE_MULTI, &opts) {
        Ok(link) => {
            keep.push(link);
            Outcome::yes("kprobe.multi link on vprintk")
        }
        Err(e) => Outcome::no(format!("kprobe.multi link: {e:?}")),
    }
}

/// Loads an fentry program against a vmlinux function and attaches it (BPF trampoline).
pub(crate) fn fentry(btf: Option<&VmlinuxBtf>, keep: &mut Vec<OwnedFd>) -> Outcome {
    let Some(btf) = btf else {
        return Outcome::no("no vmlinux BTF");
    };
    let Some((func, id)) = FENTRY_FUNCS.iter().find_map(|f| btf.find(f, sys::BTF_KIND_FUNC).map(|id| (f, id))) else {
        return Outcome::no("no fentry target function in vmlinux BTF");
    };
    let func = func.to_string_lossy();
    // `r1 = ctx[0]; r0 = 0; exit`: reading the first argument is what the family does.
    let mut load_arg0 = insn(OP_LDX_DW, 1, 0);
    load_arg0.set_src_reg(1);
    let read_arg = [load_arg0, insn(OP_MOV64_IMM, 0, 0), insn(OP_EXIT, 0, 0)];
    let code: &[sys::bpf_insn] = if func.starts_with("__x64_sys_") { &read_arg } else { &ret_imm(0) };
    let prog = match prog_load(sys::BPF_PROG_TYPE_TRACING, code, sys::BPF_TRACE_FENTRY, id) {
        Ok(p) => p,
        Err(e) => return Outcome::no(format!("fentry load on {func}: {e:?}")),
    };
    // SAFETY: NULL name is how tracing programs are attached; prog fd is live.
    let link = owned_fd(unsafe { sys::bpf_raw_tracepoint_open(std::ptr::null(), prog.as_raw_fd()) });
    match link {
        Ok(link) => {
            keep.push(link);
            Outcome::yes(format!("fentry on {func}"))
        }
        Err(e) => Outcome::no(format!("fentry attach on {func}: {e:?}")),
    }
}

/// Loads a `tp_btf` program (BPF_TRACE_RAW_TP against `btf_trace_sched_process_exec`) and
/// attaches it.
pub(crate) fn tp_btf(btf: Option<&VmlinuxBtf>, keep: &mut Vec<OwnedFd>) -> Outcome {
    tp_btf_on(btf, TP_BTF_PROBE, keep)
}

/// The socket family's tracepoints ([`SOCK_TRACEPOINTS`]) take a `tp_btf` program each.
pub(crate) fn sock_tracepoints(btf: Option<&VmlinuxBtf>, keep: &mut Vec<OwnedFd>) -> Outcome {
    for tp in SOCK_TRACEPOINTS {
        let o = tp_btf_on(btf, tp, keep);
        if !o.ok {
            return o;
        }
    }
    Outcome::yes(format!("tp_btf/{} and tp_btf/{}", SOCK_TRACEPOINTS[0], SOCK_TRACEPOINTS[1]))
}

fn tp_btf_on(btf: Option<&VmlinuxBtf>, tp: &str, keep: &mut Vec<OwnedFd>) -> Outcome {
    let Some(btf) = btf else {
        return Outcome::no("no vmlinux BTF");
    };
    let Ok(typedef) = CString::new(format!("btf_trace_{tp}")) else {
        return Outcome::no(format!("bad tracepoint name {tp:?}"));
    };
    let Some(id) = btf.find(&typedef, sys::BTF_KIND_TYPEDEF) else {
        return Outcome::no(format!("no tracepoint {tp} (btf_trace_{tp} not in vmlinux BTF)"));
    };
    let prog = match prog_load(sys::BPF_PROG_TYPE_TRACING, &ret_imm(0), sys::BPF_TRACE_RAW_TP, id) {
        Ok(p) => p,
        Err(e) => return Outcome::no(format!("tp_btf/{tp} load: {e:?}")),
    };
    // SAFETY: see `fentry`.
    match owned_fd(unsafe { sys::bpf_raw_tracepoint_open(std::ptr::null(), prog.as_raw_fd()) }) {
        Ok(link) => {
            keep.push(link);
            Outcome::yes(format!("tp_btf/{tp}"))
        }
        Err(e) => Outcome::no(format!("tp_btf/{tp} attach: {e:?}")),
    }
}

/// A RAW_TRACEPOINT program attached to `sched_process_exec`.
pub(crate) fn raw_tp(keep: &mut Vec<OwnedFd>) -> Outcome {
    let prog = match prog_load(sys::BPF_PROG_TYPE_RAW_TRACEPOINT, &ret_imm(0), 0, 0) {
        Ok(p) => p,
        Err(e) => return Outcome::no(format!("raw_tp load: {e:?}")),
    };
    // SAFETY: name is NUL-terminated, prog fd is live.
    match owned_fd(unsafe { sys::bpf_raw_tracepoint_open(RAW_TP_NAME.as_ptr(), prog.as_raw_fd()) }) {
        Ok(link) => {
            keep.push(link);
            Outcome::yes("raw_tp/sched_process_exec")
        }
        Err(e) => Outcome::no(format!("raw_tp attach: {e:?}")),
    }
}

/// A TRACEPOINT program attached to the perf event of `<tracefs>/events/<category>/<name>`.
pub(crate) fn tracepoint(tracefs: Option<&Path>, category: &str, name: &str, keep: &mut Vec<OwnedFd>) -> Outcome {
    let Some(tracefs) = tracefs else {
        return Outcome::no("tracefs not mounted");
    };
    let id_path = tracefs.join("events").join(category).join(name).join("id");
    let id: u64 = match fs::read_to_string(&id_path).map(|s| s.trim().parse()) {
        Ok(Ok(id)) => id,
        _ => return Outcome::no(format!("{} missing", id_path.display())),
    };
    let prog = match prog_load(sys::BPF_PROG_TYPE_TRACEPOINT, &ret_imm(0), 0, 0) {
        Ok(p) => p,
        Err(e) => return Outcome::no(format!("tracepoint program load: {e:?}")),
    };
    let perf = match perf_event_open(&perf_attr(PERF_TYPE_TRACEPOINT, id)) {
        Ok(p) => p,
        Err(e) => return Outcome::no(format!("perf_event_open({category}/{name}): {e:?}")),
    };
    match set_bpf(&perf, &prog) {
        Ok(()) => {
            keep.push(perf);
            Outcome::yes(format!("{category}/{name}"))
        }
        Err(e) => Outcome::no(format!("attach to {category}/{name}: {e:?}")),
    }
}

/// libbpf's `probe_uprobe_multi_link`: a uprobe.multi link on "/" must fail with EBADF
/// (the attach type is known), and with pid = -1 with EINVAL (the PID filter fix is in).
pub(crate) fn uprobe_multi() -> Outcome {
    let prog = match prog_load(sys::BPF_PROG_TYPE_KPROBE, &ret_imm(0), sys::BPF_TRACE_UPROBE_MULTI, 0) {
        Ok(p) => p,
        Err(e) => return Outcome::no(format!("uprobe.multi program load: {e:?}")),
    };
    let offset: libc::c_ulong = 0;
    let attempt = |pid: u32| {
        let mut opts = link_opts();
        opts.__bindgen_anon_1.uprobe_multi = sys::bpf_link_create_opts__bindgen_ty_1__bindgen_ty_3 {
            cnt: 1,
            path: c"/".as_ptr(),
            offsets: &offset,
            pid,
            ..Default::default()
        };
        link_create(&prog, -1, sys::BPF_TRACE_UPROBE_MULTI, &opts)
    };
    match attempt(0) {
        Err(Errno::EBADF) => {}
        Ok(_) => return Outcome::yes("uprobe.multi link accepted"),
        Err(e) => return Outcome::no(format!("uprobe.multi link: {e:?}")),
    }
    match attempt(u32::MAX) {
        Err(Errno::EINVAL) => Outcome::yes("uprobe.multi link (with pid filtering)"),
        Ok(_) => Outcome::no("uprobe.multi pid filtering not fixed"),
        Err(e) => Outcome::no(format!("uprobe.multi pid filtering not fixed ({e:?})")),
    }
}

pub(crate) fn ringbuf() -> Outcome {
    // SAFETY: plain libbpf probe with no options.
    match unsafe { sys::libbpf_probe_bpf_map_type(sys::BPF_MAP_TYPE_RINGBUF, std::ptr::null()) } {
        1 => Outcome::yes("BPF_MAP_TYPE_RINGBUF created"),
        0 => Outcome::no("BPF_MAP_TYPE_RINGBUF unknown"),
        e => Outcome::no(format!("ringbuf probe: {:?}", Errno::from_raw(-e))),
    }
}

/// libbpf's helper probe (verifier-log based) for a TRACEPOINT program.
fn helper(helper: sys::bpf_func_id, name: &str) -> Outcome {
    // SAFETY: plain libbpf probe with no options.
    match unsafe { sys::libbpf_probe_bpf_helper(sys::BPF_PROG_TYPE_TRACEPOINT, helper, std::ptr::null()) } {
        1 => Outcome::yes(format!("{name} accepted by the verifier")),
        0 => Outcome::no(format!("{name} unknown or not allowed")),
        e => Outcome::no(format!("{name} probe: {:?}", Errno::from_raw(-e))),
    }
}

/// `bpf_get_current_task_btf`: the libbpf helper probe, confirmed by a real load.
pub(crate) fn get_current_task_btf() -> Outcome {
    let h = helper(sys::BPF_FUNC_get_current_task_btf, "bpf_get_current_task_btf");
    if !h.ok {
        return h;
    }
    let insns = call_ret0(sys::BPF_FUNC_get_current_task_btf);
    match prog_load(sys::BPF_PROG_TYPE_TRACEPOINT, &insns, 0, 0) {
        Ok(_p) => Outcome::yes("bpf_get_current_task_btf loads"),
        Err(e) => Outcome::no(format!("bpf_get_current_task_btf load: {e:?}")),
    }
}

/// Task local storage for tracing programs (5.11+): the map type, the helper, and
/// `bpf_get_current_task_btf` to name the current task (`get_current_task` is the caller's).
pub(crate) fn task_storage(get_current_task: &Outcome) -> Outcome {
    if !get_current_task.ok {
        return Outcome::no("needs bpf_get_current_task_btf");
    }
    // SAFETY: plain libbpf probe with no options.
    match unsafe { sys::libbpf_probe_bpf_map_type(sys::BPF_MAP_TYPE_TASK_STORAGE, std::ptr::null()) } {
        1 => {}
        0 => return Outcome::no("BPF_MAP_TYPE_TASK_STORAGE unknown"),
        e => return Outcome::no(format!("task storage map probe: {:?}", Errno::from_raw(-e))),
    }
    let h = helper(sys::BPF_FUNC_task_storage_get, "bpf_task_storage_get");
    if h.ok {
        Outcome::yes("BPF_MAP_TYPE_TASK_STORAGE created, bpf_task_storage_get accepted")
    } else {
        h
    }
}

pub(crate) fn probe_write_user() -> Outcome {
    helper(sys::BPF_FUNC_probe_write_user, "bpf_probe_write_user")
}

/// tcx and clsact, tried on `lo` in a private network namespace (a throw-away thread
/// unshares its netns), so the host's interfaces are never touched. Without
/// CAP_SYS_ADMIN for `unshare`, tcx falls back to cilium's check (a tcx link on a bogus
/// ifindex fails with ENODEV only if tcx exists). Runs in the background: detaching
/// waits for an RCU grace period, so the thread reports first and cleans up after.
pub(crate) struct NetProbe(Option<mpsc::Receiver<(Outcome, Outcome)>>);

impl NetProbe {
    pub(crate) fn start() -> Self {
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new().name("beyla-netprobe".into()).spawn(move || {
            let mut keep = Vec::new();
            // SAFETY: unshare only changes this thread's network namespace.
            let result = if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                let e = Errno::last();
                let clsact = Outcome::no(format!("not tested: unshare(CLONE_NEWNET): {e:?}"));
                (tcx_attach(i32::MAX, &mut keep), clsact)
            } else {
                // `lo` is always ifindex 1 in a new namespace; the qdisc and the link go
                // away with the namespace when this thread exits.
                (tcx_attach(1, &mut keep), clsact_hook(1))
            };
            let _ = tx.send(result);
            drop(keep);
        });
        Self(spawned.ok().map(|_| rx))
    }

    /// `(tcx, clsact)`.
    pub(crate) fn wait(self) -> (Outcome, Outcome) {
        let failed = |why: &str| (Outcome::no(why), Outcome::no(why));
        match self.0.map(|rx| rx.recv_timeout(Duration::from_secs(2))) {
            Some(Ok(r)) => r,
            Some(Err(_)) => failed("network probe thread timed out"),
            None => failed("cannot start the network probe thread"),
        }
    }
}

fn tcx_attach(ifindex: i32, keep: &mut Vec<OwnedFd>) -> Outcome {
    // TCX_NEXT (-1): even if it ran, the packet would go on unchanged.
    let prog = match prog_load(sys::BPF_PROG_TYPE_SCHED_CLS, &ret_imm(-1), sys::BPF_TCX_INGRESS, 0) {
        Ok(p) => p,
        Err(e) => return Outcome::no(format!("tcx program load: {e:?}")),
    };
    match link_create(&prog, ifindex, sys::BPF_TCX_INGRESS, &link_opts()) {
        Ok(link) => {
            keep.push(link);
            Outcome::yes("tcx ingress link on lo (private netns)")
        }
        Err(Errno::ENODEV) if ifindex != 1 => Outcome::yes("tcx attach type known (ENODEV on bogus ifindex)"),
        Err(e) => Outcome::no(format!("tcx link: {e:?}")),
    }
}

fn clsact_hook(ifindex: i32) -> Outcome {
    let mut hook = sys::bpf_tc_hook {
        sz: size_of::<sys::bpf_tc_hook>() as _,
        ifindex,
        attach_point: sys::BPF_TC_INGRESS,
        parent: 0,
        handle: 0,
        qdisc: std::ptr::null(),
    };
    // SAFETY: `hook` is valid for the call.
    match unsafe { sys::bpf_tc_hook_create(&mut hook) } {
        0 => Outcome::yes("clsact qdisc created on lo (private netns)"),
        e => Outcome::no(format!("clsact qdisc: {:?}", Errno::from_raw(-e))),
    }
}

/// Closes probe fds on a background thread: detaching tracepoints, trampolines and tc
/// links waits for RCU grace periods (tens of ms each), which start-up need not wait for.
pub(crate) fn close_later(fds: Vec<OwnedFd>) {
    if !fds.is_empty() {
        // If the thread cannot start, the closure (and the fds) are dropped right here.
        let _ = std::thread::Builder::new().name("beyla-probe-close".into()).spawn(move || drop(fds));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_encode_like_libbpf_macros() {
        let [mov, exit] = ret_imm(-1);
        assert_eq!((mov.code, mov.dst_reg(), mov.src_reg(), mov.imm), (0xb7, 0, 0, -1));
        assert_eq!(exit.code, 0x95);
        let [call, _, _] = call_ret0(sys::BPF_FUNC_get_current_task_btf);
        assert_eq!((call.code, call.imm), (0x85, 158));
    }
}
