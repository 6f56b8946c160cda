//! What this kernel can do, probed for real at start-up (and by `beyla doctor`).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::host;
use super::mounts::{find_mounts, CgroupLayout};
use super::probes::{self, Outcome, VmlinuxBtf};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Capabilities the agent uses (Beyla `docs/sources/security.md`), with their bit numbers.
pub const AGENT_CAPS: &[(&str, u32)] = &[
    ("CAP_BPF", 39),
    ("CAP_PERFMON", 38),
    ("CAP_DAC_READ_SEARCH", 2),
    ("CAP_SYS_PTRACE", 19),
    ("CAP_NET_ADMIN", 12),
    ("CAP_SYS_ADMIN", 21),
];

/// Result of [`probe`]. Every `bool` is the outcome of a real load/attach on this kernel;
/// `notes` says why (keyed by the field name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// `uname -r`.
    pub kernel_release: String,
    /// `/sys/kernel/btf/vmlinux` is readable.
    pub btf: bool,
    /// kprobe perf events (kprobe PMU) accept a BPF program.
    pub kprobes: bool,
    /// `kprobe.multi` links (5.18+, needs CONFIG_FPROBE).
    pub kprobe_multi: bool,
    /// fentry/fexit programs load and attach (BPF trampolines).
    pub fentry: bool,
    /// `tp_btf` programs load and attach.
    pub tp_btf: bool,
    /// The socket layer's tracepoints (`sock_send_length`, `sock_recv_length`, Linux 6.3+)
    /// take `tp_btf` programs: what the socket family hooks.
    pub sock_tracepoints: bool,
    /// Raw tracepoint programs attach.
    pub raw_tp: bool,
    /// Tracepoint perf events (`sched/sched_process_exec`) accept a BPF program.
    pub tracepoints: bool,
    /// Syscall tracepoints (`syscalls/sys_enter_getpid`) accept a BPF program.
    pub syscall_tracepoints: bool,
    /// `BPF_MAP_TYPE_RINGBUF` exists.
    pub ringbuf: bool,
    /// tcx links (6.6+).
    pub tcx: bool,
    /// The clsact qdisc (classic TC attach).
    pub clsact: bool,
    /// sockops programs attach to a cgroup v2 with a BPF link (5.7+): socket selection for
    /// context propagation.
    pub cgroup_sockops: bool,
    /// sk_msg programs may grow a message (`bpf_msg_push_data`) and attach to a sockhash: a
    /// `traceparent` header written below the application.
    pub sk_msg: bool,
    /// sk_msg programs may call `bpf_get_current_pid_tgid`.
    pub sk_msg_pid: bool,
    /// A socket in a sockmap still counts its received bytes in `FIONREAD` (false on kernels
    /// with the sockmap FIONREAD regression, where the header path would stall applications).
    pub sockmap_fionread: bool,
    /// The same with a pass-through SK_SKB verdict program beside the sk_msg one.
    pub sockmap_fionread_verdict: bool,
    /// sockops programs may write TCP header options (5.10+): ids carried in a TCP option.
    pub tcp_hdr_opt: bool,
    /// Programs already on those hooks (`sockops:<name>` on the cgroup v2 root, `sk_msg:<name>`
    /// anywhere); `None` when they could not be listed (the note says why).
    pub sock_users: Option<Vec<String>>,
    /// uprobe perf events can be created with the agent's credentials (the Go and TLS probes).
    pub uprobes: bool,
    /// uprobe.multi links with working PID filtering.
    pub uprobe_multi: bool,
    /// `bpf_get_current_task_btf()` helper.
    pub get_current_task_btf: bool,
    /// Task local storage usable from tracing programs (5.11+).
    pub task_storage: bool,
    /// `bpf_probe_write_user()` allowed (helper present and no lockdown).
    pub probe_write_user: bool,
    /// Lockdown mode (`none`, `integrity`, `confidentiality`), if securityfs is readable.
    pub lockdown: Option<String>,
    pub cgroup2: Option<PathBuf>,
    pub cgroup_layout: CgroupLayout,
    pub bpffs: Option<PathBuf>,
    pub tracefs: Option<PathBuf>,
    pub euid: u32,
    /// Effective capability mask (`CapEff` in `/proc/self/status`).
    pub cap_eff: Option<u64>,
    pub perf_event_paranoid: Option<i32>,
    /// One short note per probed feature, keyed by field name.
    pub notes: BTreeMap<&'static str, String>,
    /// Wall time of [`probe`].
    pub probe_duration: Duration,
}

/// Probes the running kernel. Never fails: a probe that cannot run reports `false`.
/// Looks at mounts but does not mount anything (call
/// [`ensure_mounts`](super::ensure_mounts) first so that tracepoints can be tested).
pub fn probe() -> Features {
    let start = Instant::now();
    let mut f = Features { kernel_release: host::kernel_release(), ..Default::default() };
    if let Ok(m) = find_mounts() {
        f.bpffs = m.bpffs;
        f.tracefs = m.tracefs;
        f.cgroup2 = m.cgroup2;
        f.cgroup_layout = m.cgroup_layout;
    }
    let mut set = |name: &'static str, o: Outcome| {
        f.notes.insert(name, o.note);
        o.ok
    };

    // The netns probe runs concurrently; everything attached is closed in the background.
    let net = probes::NetProbe::start();
    let mut keep = Vec::new();
    let btf_readable = File::open(VMLINUX_BTF).is_ok();
    let vmlinux = if btf_readable { VmlinuxBtf::load() } else { None };
    let btf_note = match (btf_readable, vmlinux.is_some()) {
        (true, true) => "/sys/kernel/btf/vmlinux readable",
        (true, false) => "/sys/kernel/btf/vmlinux readable but libbpf cannot parse it",
        (false, _) => "no /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF not set?)",
    };
    let btf = set("btf", Outcome { ok: btf_readable, note: btf_note.into() });
    let kprobes = set("kprobes", probes::kprobes(&mut keep));
    let kprobe_multi = set("kprobe_multi", probes::kprobe_multi(&mut keep));
    let fentry = set("fentry", probes::fentry(vmlinux.as_ref(), &mut keep));
    let tp_btf = set("tp_btf", probes::tp_btf(vmlinux.as_ref(), &mut keep));
    let sock_tracepoints = set("sock_tracepoints", probes::sock_tracepoints(vmlinux.as_ref(), &mut keep));
    drop(vmlinux);
    let raw_tp = set("raw_tp", probes::raw_tp(&mut keep));
    let tracefs = f.tracefs.clone();
    let tracepoints =
        set("tracepoints", probes::tracepoint(tracefs.as_deref(), "sched", "sched_process_exec", &mut keep));
    let syscall_tracepoints =
        set("syscall_tracepoints", probes::tracepoint(tracefs.as_deref(), "syscalls", "sys_enter_getpid", &mut keep));
    probes::close_later(keep);
    let cgroup2 = f.cgroup2.clone();
    let cgroup_sockops = set("cgroup_sockops", probes::cgroup_sockops(cgroup2.as_deref()));
    let (msg, msg_pid) = probes::sk_msg();
    let sk_msg = set("sk_msg", msg);
    let sk_msg_pid = set("sk_msg_pid", msg_pid);
    let (fionread, fionread_verdict) = if sk_msg {
        probes::sockmap_fionread()
    } else {
        (Outcome { ok: false, note: "needs sk_msg".into() }, Outcome { ok: false, note: "needs sk_msg".into() })
    };
    let sockmap_fionread = set("sockmap_fionread", fionread);
    let sockmap_fionread_verdict = set("sockmap_fionread_verdict", fionread_verdict);
    let tcp_hdr_opt = set("tcp_hdr_opt", probes::tcp_hdr_opt());
    let sock_users = match probes::sock_users(cgroup2.as_deref()) {
        Ok((users, note)) => {
            let listed = if users.is_empty() {
                "no other sockops program on the cgroup v2 root, no sk_msg program loaded".to_string()
            } else {
                users.join(" ")
            };
            set("sock_users", Outcome { ok: true, note: note.map_or(listed.clone(), |n| format!("{listed}; {n}")) });
            Some(users)
        }
        Err(e) => {
            set("sock_users", Outcome { ok: false, note: e });
            None
        }
    };
    let ringbuf = set("ringbuf", probes::ringbuf());
    let uprobes = set("uprobes", probes::uprobes());
    let uprobe_multi = set("uprobe_multi", probes::uprobe_multi());
    let task_btf = probes::get_current_task_btf();
    let task_storage = set("task_storage", probes::task_storage(&task_btf));
    let get_current_task_btf = set("get_current_task_btf", task_btf);

    let (lockdown, lockdown_note) = host::lockdown();
    let locked = matches!(lockdown.as_deref(), Some("integrity" | "confidentiality"));
    let mut pwu = probes::probe_write_user();
    if locked {
        let why = format!("kernel lockdown={} forbids it", lockdown.as_deref().unwrap_or_default());
        pwu = Outcome { ok: false, note: if pwu.ok { why } else { format!("{}; {why}", pwu.note) } };
    }
    let probe_write_user = set("probe_write_user", pwu);
    set("lockdown", Outcome { ok: true, note: lockdown_note });
    let (tcx, clsact) = net.wait();
    let tcx = set("tcx", tcx);
    let clsact = set("clsact", clsact);

    f.btf = btf;
    f.kprobes = kprobes;
    f.kprobe_multi = kprobe_multi;
    f.fentry = fentry;
    f.tp_btf = tp_btf;
    f.sock_tracepoints = sock_tracepoints;
    f.raw_tp = raw_tp;
    f.tracepoints = tracepoints;
    f.syscall_tracepoints = syscall_tracepoints;
    f.ringbuf = ringbuf;
    f.tcx = tcx;
    f.clsact = clsact;
    f.cgroup_sockops = cgroup_sockops;
    f.sk_msg = sk_msg;
    f.sk_msg_pid = sk_msg_pid;
    f.sockmap_fionread = sockmap_fionread;
    f.sockmap_fionread_verdict = sockmap_fionread_verdict;
    f.tcp_hdr_opt = tcp_hdr_opt;
    f.sock_users = sock_users;
    f.uprobes = uprobes;
    f.uprobe_multi = uprobe_multi;
    f.get_current_task_btf = get_current_task_btf;
    f.task_storage = task_storage;
    f.probe_write_user = probe_write_user;
    f.lockdown = lockdown;
    f.euid = nix::unistd::geteuid().as_raw();
    f.cap_eff = host::cap_eff();
    f.perf_event_paranoid = host::read_trimmed("/proc/sys/kernel/perf_event_paranoid").and_then(|s| s.parse().ok());
    f.probe_duration = start.elapsed();
    f
}

impl Features {
    /// The note recorded for `feature` (a field name), or "".
    pub fn note(&self, feature: &str) -> &str {
        self.notes.get(feature).map(String::as_str).unwrap_or("")
    }

    /// What the agent's capabilities allow, said at start-up: an error naming what is
    /// missing when no BPF program can be loaded, else one line per capability whose absence
    /// turns a part of the agent off (docs/reliability.md, "Least privilege").
    pub fn capability_check(&self) -> Result<Vec<String>, String> {
        let Some(eff) = self.cap_eff else { return Ok(Vec::new()) };
        let has = |name: &str| AGENT_CAPS.iter().any(|(n, bit)| *n == name && eff & (1u64 << bit) != 0);
        let admin = has("CAP_SYS_ADMIN");
        let load: Vec<&str> = ["CAP_BPF", "CAP_PERFMON"].into_iter().filter(|c| !has(c)).collect();
        if !load.is_empty() && !admin {
            return Err(format!(
                "missing capability {}: the agent cannot load or attach BPF programs without CAP_BPF and \
                 CAP_PERFMON (or CAP_SYS_ADMIN); grant CAP_BPF CAP_PERFMON CAP_SYS_PTRACE CAP_DAC_READ_SEARCH \
                 (deploy/systemd/beyla.service and deploy/kubernetes/daemonset.yaml list them)",
                load.join(" and ")
            ));
        }
        if let (Some(level @ 3..), false) = (self.perf_event_paranoid, admin) {
            return Err(format!(
                "missing capability CAP_SYS_ADMIN: kernel.perf_event_paranoid is {level}, and above 2 (Debian's and \
                 Ubuntu's patch) perf events, which attach tracepoints, kprobes and uprobes, are opened for \
                 CAP_SYS_ADMIN alone; grant it, or set the sysctl to 2"
            ));
        }
        let mut lost = Vec::new();
        // Perf uprobes refused but uprobe.multi links allowed (6.6+): the Go and TLS probes
        // attach through those, nothing is lost.
        if !self.uprobes && !self.uprobe_multi {
            let why = match (admin, self.note("uprobes").contains("refused")) {
                (false, true) => format!(
                    "missing capability CAP_SYS_ADMIN: this kernel creates uprobes for it alone ({})",
                    self.note("uprobes")
                ),
                _ => format!("uprobes are unavailable ({})", self.note("uprobes")),
            };
            lost.push(format!(
                "{why}; the Go and TLS probes are off: TLS traffic stays opaque and Go programs are served by \
                 the generic probes"
            ));
        }
        if !has("CAP_SYS_PTRACE") {
            lost.push("missing capability CAP_SYS_PTRACE: other users' processes cannot be inspected (/proc/<pid>/exe, environ, fd), so they are not instrumented".to_string());
        }
        if !has("CAP_DAC_READ_SEARCH") {
            lost.push("missing capability CAP_DAC_READ_SEARCH: files of other users (their executables, /proc entries, tracefs) cannot be read".to_string());
        }
        Ok(lost)
    }

    /// Capabilities from [`AGENT_CAPS`] missing from the effective set.
    pub fn missing_caps(&self) -> Vec<&'static str> {
        let Some(eff) = self.cap_eff else {
            return Vec::new();
        };
        AGENT_CAPS.iter().filter(|(_, bit)| eff & (1u64 << bit) == 0).map(|(name, _)| *name).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_caps(caps: &[&str], uprobes: bool) -> Features {
        let eff = caps
            .iter()
            .map(|c| AGENT_CAPS.iter().find(|(n, _)| n == c).expect("known cap").1)
            .fold(0, |a, b| a | 1 << b);
        let mut f = Features { cap_eff: Some(eff), uprobes, ..Default::default() };
        if !uprobes {
            f.notes.insert("uprobes", "perf_event_open(uprobe): EACCES: refused with these credentials".into());
        }
        f
    }

    #[test]
    fn capability_check_names_what_is_missing() {
        let base = ["CAP_BPF", "CAP_PERFMON", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"];
        assert_eq!(with_caps(&base, true).capability_check(), Ok(vec![]));
        // Unknown capabilities (no /proc/self/status): nothing said.
        assert_eq!(Features::default().capability_check(), Ok(vec![]));
        let e = with_caps(&["CAP_PERFMON", "CAP_SYS_PTRACE"], true).capability_check().unwrap_err();
        assert!(e.starts_with("missing capability CAP_BPF:"), "{e}");
        let e = with_caps(&["CAP_SYS_PTRACE"], true).capability_check().unwrap_err();
        assert!(e.starts_with("missing capability CAP_BPF and CAP_PERFMON:"), "{e}");
        // CAP_SYS_ADMIN covers loading (kernels before 5.8 have no CAP_BPF).
        assert!(with_caps(&["CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"], true)
            .capability_check()
            .is_ok());
        let lost = with_caps(&base, false).capability_check().unwrap();
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert!(lost[0].starts_with("missing capability CAP_SYS_ADMIN: this kernel creates uprobes"), "{lost:?}");
        // With CAP_SYS_ADMIN the refusal has another cause: not blamed on a capability.
        let admin = [&base[..], &["CAP_SYS_ADMIN"]].concat();
        let lost = with_caps(&admin, false).capability_check().unwrap();
        assert!(lost[0].starts_with("uprobes are unavailable"), "{lost:?}");
        // Where uprobe.multi links are allowed, the probes attach through them.
        let multi = Features { uprobe_multi: true, ..with_caps(&base, false) };
        assert_eq!(multi.capability_check(), Ok(vec![]));
        // Debian's and Ubuntu's perf_event_paranoid 3: nothing attaches without CAP_SYS_ADMIN.
        let mut debian = with_caps(&base, true);
        debian.perf_event_paranoid = Some(3);
        let e = debian.capability_check().unwrap_err();
        assert!(e.starts_with("missing capability CAP_SYS_ADMIN: kernel.perf_event_paranoid is 3"), "{e}");
        debian.perf_event_paranoid = Some(2);
        assert!(debian.capability_check().is_ok());
        assert!(with_caps(&admin, true).capability_check().is_ok());
        let lost = with_caps(&["CAP_BPF", "CAP_PERFMON"], true).capability_check().unwrap();
        assert_eq!(lost.len(), 2, "{lost:?}");
        assert!(lost[0].starts_with("missing capability CAP_SYS_PTRACE"), "{lost:?}");
        assert!(lost[1].starts_with("missing capability CAP_DAC_READ_SEARCH"), "{lost:?}");
    }
}
