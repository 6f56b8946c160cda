//! What trace-context propagation below the application needs from the kernel: sockops
//! programs on cgroup v2 (socket selection, TCP header options) and sk_msg programs that may
//! grow a message (`bpf_msg_push_data`, for a `traceparent` header), and who else already
//! uses those hooks (a socket takes one sk_msg program only, so another user such as Cilium's
//! socket acceleration means the header path must stay off).
//!
//! As the other probes, each loads a minimal program and, where the feature is about
//! attaching, attaches it for real and detaches it at once: the sockops link goes on a cgroup
//! made for the probe (no socket of the host runs it), the sk_msg program on a sockhash that
//! holds no socket.

use std::ffi::CStr;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use libbpf_sys as sys;
use nix::errno::Errno;

use super::{
    insn, link_create, link_opts, owned_fd, prog_load, ret_imm, Outcome, OP_CALL, OP_EXIT, OP_MOV64_IMM, PROG_NAME,
};

/// `r2..r(1+n) = 0; call helper; r0 = ret; exit`: a helper whose first argument is the context
/// (in r1 at entry) and the others plain integers.
fn call_ctx_helper(helper: sys::bpf_func_id, int_args: u8, ret: i32) -> Vec<sys::bpf_insn> {
    let mut insns: Vec<_> = (0..int_args).map(|i| insn(OP_MOV64_IMM, 2 + i, 0)).collect();
    insns.push(insn(OP_CALL, 0, helper as i32));
    insns.push(insn(OP_MOV64_IMM, 0, ret));
    insns.push(insn(OP_EXIT, 0, 0));
    insns
}

/// A cgroup made beside the root's children for the probe, removed when dropped.
struct ProbeCgroup {
    path: std::path::PathBuf,
    dir: fs::File,
}

impl ProbeCgroup {
    fn create(cgroup2: &Path) -> std::io::Result<Self> {
        let path = cgroup2.join(format!("beyla-probe-{}", std::process::id()));
        fs::create_dir(&path)?;
        match fs::File::open(&path) {
            Ok(dir) => Ok(Self { path, dir }),
            Err(e) => {
                let _ = fs::remove_dir(&path);
                Err(e)
            }
        }
    }
}

impl Drop for ProbeCgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.path);
    }
}

/// A sockops program attached to a cgroup with a BPF link (5.7+): a link goes away with the
/// agent's process, where `BPF_PROG_ATTACH` on a cgroup would outlive a SIGKILL.
pub(crate) fn cgroup_sockops(cgroup2: Option<&Path>) -> Outcome {
    let Some(cgroup2) = cgroup2 else {
        return Outcome::no("no cgroup v2 mount");
    };
    // Returns 1 (ok) and sets no reply: the kernel's defaults stand, even if it ran.
    let prog = match prog_load(sys::BPF_PROG_TYPE_SOCK_OPS, &ret_imm(1), sys::BPF_CGROUP_SOCK_OPS, 0) {
        Ok(p) => p,
        Err(e) => return Outcome::no(format!("sockops program load: {e:?}")),
    };
    // A read-only cgroup tree (systemd's ProtectControlGroups, a container) has no room for a
    // probe cgroup: then the agent's own cgroup, where the no-op program meets only the
    // agent's sockets.
    let (target, _made, where_) = match ProbeCgroup::create(cgroup2) {
        Ok(cg) => match cg.dir.try_clone() {
            Ok(dir) => (dir, Some(cg), "a probe cgroup".to_string()),
            Err(e) => return Outcome::no(format!("probe cgroup: {e}")),
        },
        Err(made) => match own_cgroup(cgroup2).and_then(|p| fs::File::open(&p).map(|d| (d, p))) {
            Ok((dir, p)) => (dir, None, format!("the agent's cgroup {} (no probe cgroup: {made})", p.display())),
            Err(e) => return Outcome::no(format!("sockops program loads; no cgroup to attach it to: {made}; {e}")),
        },
    };
    match link_create(&prog, target.as_raw_fd(), sys::BPF_CGROUP_SOCK_OPS, &link_opts()) {
        Ok(_link) => Outcome::yes(format!("sockops link on {where_}")),
        Err(Errno::EINVAL) => Outcome::no("sockops program loads; cgroup BPF links unsupported (Linux 5.7+)"),
        Err(e) => Outcome::no(format!("sockops cgroup link: {e:?}")),
    }
}

/// The agent's own cgroup v2 directory (`0::<path>` in `/proc/self/cgroup`).
fn own_cgroup(cgroup2: &Path) -> std::io::Result<std::path::PathBuf> {
    let text = fs::read_to_string("/proc/self/cgroup")?;
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| std::io::Error::other("no cgroup v2 line in /proc/self/cgroup"))?;
    Ok(cgroup2.join(rel.trim().trim_start_matches('/')))
}

/// An sk_msg program that calls `bpf_msg_push_data` (4.20+), attached to an empty sockhash;
/// and, apart, whether sk_msg programs may call `bpf_get_current_pid_tgid` (to keep to the
/// traced processes' messages). `(sk_msg, sk_msg_pid)`.
pub(crate) fn sk_msg() -> (Outcome, Outcome) {
    let pid =
        match prog_load(sys::BPF_PROG_TYPE_SK_MSG, &call_ctx_helper(sys::BPF_FUNC_get_current_pid_tgid, 0, 1), 0, 0) {
            Ok(_) => Outcome::yes("bpf_get_current_pid_tgid accepted in sk_msg"),
            Err(e) => Outcome::no(format!("bpf_get_current_pid_tgid in sk_msg: {e:?}")),
        };
    // SK_PASS (1): the message goes on unchanged.
    let prog = match prog_load(sys::BPF_PROG_TYPE_SK_MSG, &call_ctx_helper(sys::BPF_FUNC_msg_push_data, 3, 1), 0, 0) {
        Ok(p) => p,
        Err(e) => return (Outcome::no(format!("sk_msg program with bpf_msg_push_data: {e:?}")), pid),
    };
    let msg = match sockhash_with(&prog) {
        Ok(_map) => Outcome::yes("sk_msg program with bpf_msg_push_data attached to a sockhash"),
        Err(e) => Outcome::no(e),
    };
    (msg, pid)
}

/// An empty sockhash with the sk_msg program `prog` attached. The map owns the attachment:
/// closing it (the agent's exit) detaches the program.
fn sockhash_with(prog: &OwnedFd) -> Result<OwnedFd, String> {
    // SAFETY: the name is NUL-terminated; no options.
    let map = owned_fd(unsafe {
        sys::bpf_map_create(sys::BPF_MAP_TYPE_SOCKHASH, PROG_NAME.as_ptr(), 8, 8, 1, std::ptr::null())
    })
    .map_err(|e| format!("sockhash map: {e:?}"))?;
    // SAFETY: both fds are live.
    let ret = unsafe { sys::bpf_prog_attach(prog.as_raw_fd(), map.as_raw_fd(), sys::BPF_SK_MSG_VERDICT, 0) };
    if ret != 0 {
        return Err(format!("sk_msg attach to a sockhash: {:?}", Errno::from_raw(-ret)));
    }
    Ok(map)
}

/// Whether a socket in a sockhash with an sk_msg program (where the header path puts a traced
/// client's sockets) still reports its received bytes to `FIONREAD`. Kernels with "bpf,
/// sockmap: Fix FIONREAD for sockmap" (929e30f93125, backported to 6.6.128+, 6.12.75+,
/// 6.18.14+) and without its follow-up (04af4efde58a) count only the psock's own queue there,
/// 0 for a socket that is only sending through sk_msg: nginx, Java NIO and .NET then stall
/// or cut responses (grafana/beyla#2941) with no byte rewritten, only because the socket is
/// in a sockmap. Tried on a loopback connection of the agent's own; `(with the sk_msg program
/// alone, with a pass-through SK_SKB verdict too)`.
pub(crate) fn sockmap_fionread() -> (Outcome, Outcome) {
    let counted = |with_verdict| match fionread_in_sockmap(with_verdict) {
        Ok(n) if n == FIONREAD_PROBE.len() => Ok(format!("{n} of {n} bytes counted")),
        Ok(n) => Err(format!("{n} of {} bytes counted", FIONREAD_PROBE.len())),
        Err(e) => Err(format!("not tested: {e}")),
    };
    // A pass-through SK_SKB verdict beside the sk_msg program moves received bytes to the
    // psock's queue, which the regressed FIONREAD does count (at a cost per received skb).
    let verdict = match counted(true) {
        Ok(n) => Outcome::yes(format!("with a pass-through SK_SKB verdict: {n}")),
        Err(e) => Outcome::no(format!("with a pass-through SK_SKB verdict: {e}")),
    };
    let plain = match counted(false) {
        Ok(n) => Outcome::yes(format!("{n} for a socket in a sockmap")),
        Err(e) => Outcome::no(format!(
            "FIONREAD on a socket in a sockmap: {e} (the kernel has 929e30f93125 without 04af4efde58a): sockets put in a sockmap would stall applications"
        )),
    };
    (plain, verdict)
}

const FIONREAD_PROBE: &[u8] = b"beyla sockmap FIONREAD probe\n";

fn fionread_in_sockmap(with_verdict: bool) -> Result<usize, String> {
    use std::io::Write;
    let prog =
        prog_load(sys::BPF_PROG_TYPE_SK_MSG, &ret_imm(1), 0, 0).map_err(|e| format!("sk_msg program load: {e:?}"))?;
    let map = sockhash_with(&prog)?;
    if with_verdict {
        // SK_PASS for every received skb: the bytes go through the psock's own queue.
        let skb = prog_load(sys::BPF_PROG_TYPE_SK_SKB, &ret_imm(1), sys::BPF_SK_SKB_VERDICT, 0)
            .map_err(|e| format!("sk_skb verdict program load: {e:?}"))?;
        // SAFETY: both fds are live.
        let ret = unsafe { sys::bpf_prog_attach(skb.as_raw_fd(), map.as_raw_fd(), sys::BPF_SK_SKB_VERDICT, 0) };
        if ret != 0 {
            return Err(format!("sk_skb verdict attach: {:?}", Errno::from_raw(-ret)));
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("loopback listener: {e}"))?;
    let client = std::net::TcpStream::connect(listener.local_addr().map_err(|e| e.to_string())?)
        .map_err(|e| format!("loopback connect: {e}"))?;
    let (mut server, _) = listener.accept().map_err(|e| format!("loopback accept: {e}"))?;
    let (key, fd) = (0u64, client.as_raw_fd() as u64);
    // SAFETY: key and value are 8 bytes, as the map was created with.
    let ret = unsafe {
        sys::bpf_map_update_elem(
            map.as_raw_fd(),
            (&key as *const u64).cast(),
            (&fd as *const u64).cast(),
            sys::BPF_ANY.into(),
        )
    };
    if ret != 0 {
        return Err(format!("adding a socket to the sockhash: {:?}", Errno::from_raw(-ret)));
    }
    server.write_all(FIONREAD_PROBE).map_err(|e| format!("loopback write: {e}"))?;
    let mut pfd = libc::pollfd { fd: client.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    if unsafe { libc::poll(&mut pfd, 1, 1000) } != 1 {
        return Err("the loopback bytes did not arrive within 1 s".into());
    }
    // Loopback delivers a small write at once; poll said it is there.
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    if unsafe { libc::ioctl(client.as_raw_fd(), libc::FIONREAD, &mut n) } != 0 {
        return Err(format!("FIONREAD: {}", std::io::Error::last_os_error()));
    }
    Ok(n.max(0) as usize)
}

/// sockops programs that may write TCP header options (`bpf_reserve_hdr_opt` and its
/// siblings, 5.10+).
pub(crate) fn tcp_hdr_opt() -> Outcome {
    let insns = call_ctx_helper(sys::BPF_FUNC_reserve_hdr_opt, 2, 1);
    match prog_load(sys::BPF_PROG_TYPE_SOCK_OPS, &insns, sys::BPF_CGROUP_SOCK_OPS, 0) {
        Ok(_) => Outcome::yes("sockops program with bpf_reserve_hdr_opt loads"),
        Err(e) => Outcome::no(format!("sockops program with bpf_reserve_hdr_opt: {e:?}")),
    }
}

/// The other users of these hooks: the sockops programs on the cgroup v2 root (where the
/// agent would attach; Cilium attaches its own there) and every sk_msg program loaded (each
/// socket takes one), as `sockops:<name>` and `sk_msg:<name>`. Listing the sk_msg programs
/// needs CAP_SYS_ADMIN; without it they are not listed and the note says so.
pub(crate) fn sock_users(cgroup2: Option<&Path>) -> Result<(Vec<String>, Option<String>), String> {
    let cgroup2 = cgroup2.ok_or("no cgroup v2 mount")?;
    let root = fs::File::open(cgroup2).map_err(|e| format!("{}: {e}", cgroup2.display()))?;
    let mut ids = [0u32; 64];
    let mut count = ids.len() as u32;
    let mut flags = 0u32;
    // SAFETY: `ids` holds `count` entries; the other pointers are valid for the call.
    let ret = unsafe {
        sys::bpf_prog_query(root.as_raw_fd(), sys::BPF_CGROUP_SOCK_OPS, 0, &mut flags, ids.as_mut_ptr(), &mut count)
    };
    if ret != 0 {
        return Err(format!("querying the sockops programs of {}: {:?}", cgroup2.display(), Errno::from_raw(-ret)));
    }
    let mut users: Vec<String> = ids[..count.min(64) as usize]
        .iter()
        .map(|&id| format!("sockops:{}", prog_name(id).unwrap_or(format!("id {id}"))))
        .collect();
    let mut note = None;
    let mut id = 0u32;
    loop {
        // SAFETY: `id` is valid for the call.
        if unsafe { sys::bpf_prog_get_next_id(id, &mut id) } != 0 {
            break;
        }
        match prog_info(id) {
            // The feature probes' own (freed after an RCU grace period) are not users.
            Ok((ty, name)) if ty == sys::BPF_PROG_TYPE_SK_MSG && name != PROG_NAME.to_string_lossy() => {
                users.push(format!("sk_msg:{name}"))
            }
            Ok(_) => {}
            Err(e) => {
                note = Some(format!("sk_msg programs not listed: {e:?}"));
                break;
            }
        }
    }
    Ok((users, note))
}

fn prog_name(id: u32) -> Option<String> {
    prog_info(id).ok().map(|(_, name)| name)
}

/// A loaded program's type and name, by id (needs CAP_SYS_ADMIN).
fn prog_info(id: u32) -> Result<(u32, String), Errno> {
    // SAFETY: plain syscall wrapper.
    let fd: OwnedFd = owned_fd(unsafe { sys::bpf_prog_get_fd_by_id(id) })?;
    // SAFETY: an all-zero bpf_prog_info is valid input (no output buffers requested).
    let mut info: sys::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<sys::bpf_prog_info>() as u32;
    // SAFETY: `info` is `len` bytes long.
    let ret = unsafe { sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
    if ret != 0 {
        return Err(Errno::from_raw(-ret));
    }
    // SAFETY: the kernel NUL-terminates the name within BPF_OBJ_NAME_LEN.
    let name = unsafe { CStr::from_ptr(info.name.as_ptr()) }.to_string_lossy().into_owned();
    Ok((info.type_, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_calls_zero_the_integer_arguments_and_keep_the_context() {
        let insns = call_ctx_helper(sys::BPF_FUNC_msg_push_data, 3, 1);
        let regs: Vec<_> = insns.iter().map(|i| (i.code, i.dst_reg(), i.imm)).collect();
        assert_eq!(regs, [(0xb7, 2, 0), (0xb7, 3, 0), (0xb7, 4, 0), (0x85, 0, 90), (0xb7, 0, 1), (0x95, 0, 0)]);
    }
}
