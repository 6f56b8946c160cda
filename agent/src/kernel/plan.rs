//! Choosing the hook family (`ebpf.hook_mode`) from the probed [`Features`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::features::Features;
use super::KernelError;

/// A family of kernel hooks the agent's BPF programs are written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookFamily {
    /// The socket layer's tracepoints (`sock_send_length`, `sock_recv_length`,
    /// `inet_sock_set_state`) through tp_btf: one program per socket transfer (Linux 6.3+).
    Socket,
    /// Syscall tracepoints (`syscalls/*`): present on every kernel, but they put every task
    /// on the traced-syscall path.
    Tracepoints,
    /// kprobes/kretprobes on kernel functions (`tcp_sendmsg`, ...).
    Kprobes,
    /// fentry/fexit through BPF trampolines.
    Fentry,
}

impl HookFamily {
    /// Best first: what `auto` prefers. The socket family runs one program per socket
    /// transfer; the syscall families an entry and a return per syscall, files included.
    pub const PREFERENCE: [HookFamily; 4] =
        [HookFamily::Socket, HookFamily::Fentry, HookFamily::Kprobes, HookFamily::Tracepoints];

    pub fn as_str(&self) -> &'static str {
        match self {
            HookFamily::Socket => "socket",
            HookFamily::Tracepoints => "tracepoints",
            HookFamily::Kprobes => "kprobes",
            HookFamily::Fentry => "fentry",
        }
    }

    /// `Ok` if `f` can run this family, else why not (completes "this kernel (x) ...").
    pub fn availability(&self, f: &Features) -> Result<(), String> {
        match self {
            HookFamily::Socket | HookFamily::Fentry if !f.btf => {
                Err("has no BTF at /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF not set?)".into())
            }
            HookFamily::Socket if !f.sock_tracepoints => {
                Err(format!("cannot attach to the socket tracepoints ({})", f.note("sock_tracepoints")))
            }
            HookFamily::Socket if !f.get_current_task_btf => {
                Err(format!("has no bpf_get_current_task_btf() ({})", f.note("get_current_task_btf")))
            }
            HookFamily::Fentry if !f.fentry => Err(format!("cannot load fentry programs ({})", f.note("fentry"))),
            HookFamily::Kprobes if !f.kprobes => {
                if f.note("kprobes").contains("no kprobe PMU") {
                    Err("has no kprobes (CONFIG_KPROBES not set?)".into())
                } else {
                    Err(format!("cannot attach kprobes ({})", f.note("kprobes")))
                }
            }
            HookFamily::Tracepoints if f.tracefs.is_none() => {
                Err("has no tracefs mounted (mount -t tracefs nodev /sys/kernel/tracing)".into())
            }
            HookFamily::Tracepoints if !f.tracepoints => {
                Err(format!("cannot attach tracepoints ({})", f.note("tracepoints")))
            }
            HookFamily::Tracepoints if !f.syscall_tracepoints => Err(format!(
                "has no syscall tracepoints (CONFIG_FTRACE_SYSCALLS not set?): {}",
                f.note("syscall_tracepoints")
            )),
            HookFamily::Tracepoints if !f.raw_tp => {
                Err(format!("cannot attach raw tracepoints ({})", f.note("raw_tp")))
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for HookFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `ebpf.hook_mode`: `auto` or a forced family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookMode {
    /// Best family the kernel supports (socket > fentry > kprobes > tracepoints).
    #[default]
    Auto,
    Socket,
    Tracepoints,
    Kprobes,
    Fentry,
}

impl HookMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            HookMode::Auto => "auto",
            HookMode::Socket => "socket",
            HookMode::Tracepoints => "tracepoints",
            HookMode::Kprobes => "kprobes",
            HookMode::Fentry => "fentry",
        }
    }

    /// The forced family, `None` for `auto`.
    pub fn family(&self) -> Option<HookFamily> {
        match self {
            HookMode::Auto => None,
            HookMode::Socket => Some(HookFamily::Socket),
            HookMode::Tracepoints => Some(HookFamily::Tracepoints),
            HookMode::Kprobes => Some(HookFamily::Kprobes),
            HookMode::Fentry => Some(HookFamily::Fentry),
        }
    }
}

impl fmt::Display for HookMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HookMode {
    type Err = KernelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(HookMode::Auto),
            "socket" => Ok(HookMode::Socket),
            "tracepoints" => Ok(HookMode::Tracepoints),
            "kprobes" => Ok(HookMode::Kprobes),
            "fentry" => Ok(HookMode::Fentry),
            _ => Err(KernelError::UnknownHookMode { value: s.to_string() }),
        }
    }
}

/// What the agent will use on this kernel, decided once at start-up and handed to the
/// pipeline as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookPlan {
    /// The configured mode.
    pub mode: HookMode,
    /// The family to load.
    pub family: HookFamily,
    /// With `auto`, the other families this kernel offers, best first: tried in turn if a
    /// verifier rejects `family` (the probe cannot see everything a verifier will reject, e.g.
    /// fentry on 5.10's syscall wrappers). Empty when a family is forced.
    pub fallbacks: Vec<HookFamily>,
    /// The best family this kernel supports (differs from `family` when one is forced).
    pub best_available: HookFamily,
    /// Attach TC programs with tcx links (else clsact).
    pub use_tcx: bool,
    /// Programs may call `bpf_get_current_task_btf()` (else `bpf_get_current_task()`).
    pub use_task_btf: bool,
    /// Socket syscall arguments wait for sys_exit in task storage (else an LRU hash).
    pub use_task_storage: bool,
    /// Use `tp_btf` programs where the family offers them (else plain tracepoints).
    pub use_tp_btf: bool,
    /// Attach uprobes with one uprobe.multi link per binary.
    pub use_uprobe_multi: bool,
    /// Attach kprobes with kprobe.multi links (kprobes family only).
    pub use_kprobe_multi: bool,
}

impl HookPlan {
    /// The capture families to try, best first: `family`, then the fallbacks.
    pub fn families(&self) -> Vec<HookFamily> {
        std::iter::once(self.family).chain(self.fallbacks.iter().copied()).collect()
    }
}

/// Picks the hook family for `mode`.
///
/// * ringbuf and vmlinux BTF are required by every family.
/// * `auto`: the best family the kernel supports (socket > fentry > kprobes >
///   tracepoints); `best_available` records the best supported one regardless.
/// * a forced family must be supported, else [`KernelError::HookFamilyUnavailable`]; it is
///   returned.
pub fn choose(f: &Features, mode: HookMode) -> Result<HookPlan, KernelError> {
    if !f.ringbuf {
        return Err(KernelError::RequiredFeatureMissing {
            feature: "ringbuf",
            kernel_release: f.kernel_release.clone(),
            reason: format!("BPF ring buffers need Linux 5.8+ ({})", f.note("ringbuf")),
        });
    }
    if !f.btf {
        return Err(KernelError::RequiredFeatureMissing {
            feature: "btf",
            kernel_release: f.kernel_release.clone(),
            reason: "CO-RE needs /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF=y)".into(),
        });
    }
    let available: Vec<HookFamily> =
        HookFamily::PREFERENCE.into_iter().filter(|fam| fam.availability(f).is_ok()).collect();
    let family = match mode.family() {
        Some(forced) => {
            forced.availability(f).map_err(|reason| KernelError::HookFamilyUnavailable {
                family: forced,
                kernel_release: f.kernel_release.clone(),
                reason,
            })?;
            forced
        }
        None => match available.first() {
            Some(fam) => *fam,
            None => {
                let reason = HookFamily::PREFERENCE
                    .iter()
                    .filter_map(|fam| fam.availability(f).err().map(|r| format!("{fam}: {r}")))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(KernelError::NoHookFamily { kernel_release: f.kernel_release.clone(), reason });
            }
        },
    };
    let fallbacks = match mode {
        HookMode::Auto => available.iter().copied().filter(|fam| *fam != family).collect(),
        _ => Vec::new(),
    };
    Ok(HookPlan {
        mode,
        family,
        fallbacks,
        best_available: available.first().copied().unwrap_or(family),
        use_tcx: f.tcx,
        use_task_btf: f.get_current_task_btf,
        use_task_storage: f.task_storage,
        use_tp_btf: f.tp_btf,
        use_uprobe_multi: f.uprobe_multi,
        use_kprobe_multi: family == HookFamily::Kprobes && f.kprobe_multi,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Features as measured on the 6.18 CI host.
    fn host() -> Features {
        let mut f = Features {
            kernel_release: "6.18.44".into(),
            btf: true,
            tp_btf: true,
            sock_tracepoints: true,
            raw_tp: true,
            tracepoints: true,
            syscall_tracepoints: true,
            ringbuf: true,
            tcx: true,
            clsact: true,
            uprobe_multi: true,
            get_current_task_btf: true,
            task_storage: true,
            tracefs: Some(PathBuf::from("/sys/kernel/tracing")),
            ..Default::default()
        };
        f.notes.insert("kprobes", "no kprobe PMU in /sys/bus/event_source/devices (CONFIG_KPROBES not set?)".into());
        f.notes.insert("fentry", "fentry load on do_sys_openat2: EPERM".into());
        f
    }

    /// Debian 6.1: everything but tcx, uprobe.multi and the socket tracepoints (6.3+).
    fn debian_6_1() -> Features {
        let mut f = Features {
            kprobes: true,
            fentry: true,
            tcx: false,
            uprobe_multi: false,
            sock_tracepoints: false,
            ..host()
        };
        f.notes.insert(
            "sock_tracepoints",
            "no tracepoint sock_send_length (btf_trace_sock_send_length not in vmlinux BTF)".into(),
        );
        f
    }

    #[test]
    fn auto_on_host_is_socket() {
        let p = choose(&host(), HookMode::Auto).expect("plan");
        assert_eq!((p.family, p.best_available), (HookFamily::Socket, HookFamily::Socket));
        assert!(p.use_tcx && p.use_task_btf && p.use_task_storage && p.use_uprobe_multi && !p.use_kprobe_multi);
        // Without the socket tracepoints a kprobe-less kernel falls back to syscall tracepoints.
        let f = Features { sock_tracepoints: false, ..host() };
        let p = choose(&f, HookMode::Auto).expect("plan");
        assert_eq!((p.family, p.best_available), (HookFamily::Tracepoints, HookFamily::Tracepoints));
        assert_eq!(
            choose(&host(), HookMode::Auto).expect("plan").families(),
            vec![HookFamily::Socket, HookFamily::Tracepoints]
        );
    }

    #[test]
    fn socket_is_preferred_where_the_kernel_has_everything() {
        // Debian 6.12: kprobes, fentry and the socket tracepoints.
        let f = Features { kprobes: true, fentry: true, ..host() };
        assert_eq!(choose(&f, HookMode::Auto).expect("plan").family, HookFamily::Socket);
        assert_eq!(
            choose(&f, HookMode::Auto).expect("plan").families(),
            vec![HookFamily::Socket, HookFamily::Fentry, HookFamily::Kprobes, HookFamily::Tracepoints]
        );
        // A forced family has no fallbacks: a verifier's refusal is the error.
        assert!(choose(&f, HookMode::Kprobes).expect("plan").fallbacks.is_empty());
        assert_eq!(choose(&f, HookMode::Kprobes).expect("plan").families(), vec![HookFamily::Kprobes]);
        let no_task_btf = Features { get_current_task_btf: false, ..f };
        assert_eq!(choose(&no_task_btf, HookMode::Auto).expect("plan").family, HookFamily::Fentry);
    }

    #[test]
    fn auto_picks_the_best_available() {
        let p = choose(&debian_6_1(), HookMode::Auto).expect("plan");
        assert_eq!(p.family, HookFamily::Fentry);
        assert_eq!(p.best_available, HookFamily::Fentry);
        assert!(!p.use_tcx);
        let no_fentry = Features { fentry: false, ..debian_6_1() };
        let p = choose(&no_fentry, HookMode::Auto).expect("plan");
        assert_eq!((p.family, p.best_available), (HookFamily::Kprobes, HookFamily::Kprobes));
    }

    #[test]
    fn forcing_a_missing_family_explains_why() {
        let e = choose(&host(), HookMode::Kprobes).expect_err("no kprobes here");
        assert_eq!(
            e.to_string(),
            "ebpf.hook_mode: kprobes requested but this kernel (6.18.44) has no kprobes (CONFIG_KPROBES not set?)"
        );
        let e = choose(&host(), HookMode::Fentry).expect_err("no fentry here");
        assert_eq!(
            e.to_string(),
            "ebpf.hook_mode: fentry requested but this kernel (6.18.44) cannot load fentry programs \
             (fentry load on do_sys_openat2: EPERM)"
        );
        assert!(matches!(e, KernelError::HookFamilyUnavailable { family: HookFamily::Fentry, .. }));
    }

    #[test]
    fn forcing_socket_without_its_tracepoints_explains_why() {
        let e = choose(&debian_6_1(), HookMode::Socket).expect_err("no socket tracepoints on 6.1");
        assert_eq!(
            e.to_string(),
            "ebpf.hook_mode: socket requested but this kernel (6.18.44) cannot attach to the socket tracepoints \
             (no tracepoint sock_send_length (btf_trace_sock_send_length not in vmlinux BTF))"
        );
    }

    #[test]
    fn forcing_an_available_family_returns_it() {
        let p = choose(&debian_6_1(), HookMode::Tracepoints).expect("plan");
        assert_eq!((p.family, p.best_available), (HookFamily::Tracepoints, HookFamily::Fentry));
        assert!(p.to_string().contains("not selected"));
    }

    #[test]
    fn no_tracefs_means_no_tracepoints() {
        // The socket family attaches through BTF, without tracefs.
        let f = Features { tracefs: None, ..host() };
        assert_eq!(choose(&f, HookMode::Auto).expect("plan").family, HookFamily::Socket);
        let f = Features { tracefs: None, sock_tracepoints: false, ..host() };
        let e = choose(&f, HookMode::Auto).expect_err("nothing usable");
        assert!(matches!(e, KernelError::NoHookFamily { .. }));
        assert!(e.to_string().contains("mount -t tracefs"), "{e}");
    }

    #[test]
    fn ringbuf_and_btf_are_required() {
        let e = choose(&Features { ringbuf: false, ..host() }, HookMode::Auto).expect_err("no ringbuf");
        assert!(matches!(e, KernelError::RequiredFeatureMissing { feature: "ringbuf", .. }));
        let e = choose(&Features { btf: false, ..host() }, HookMode::Tracepoints).expect_err("no btf");
        assert!(matches!(e, KernelError::RequiredFeatureMissing { feature: "btf", .. }));
    }

    #[test]
    fn hook_mode_parses_and_serializes_lowercase() {
        assert_eq!("Kprobes".parse::<HookMode>().expect("parse"), HookMode::Kprobes);
        assert_eq!("auto".parse::<HookMode>().expect("parse"), HookMode::Auto);
        assert_eq!("socket".parse::<HookMode>().expect("parse"), HookMode::Socket);
        let e = "uprobes".parse::<HookMode>().expect_err("unknown");
        assert_eq!(
            e.to_string(),
            "ebpf.hook_mode: unknown value \"uprobes\", expected auto, socket, tracepoints, kprobes or fentry"
        );
        assert_eq!(serde_json::to_string(&HookMode::Fentry).expect("json"), "\"fentry\"");
        let m: HookMode = serde_yaml::from_str("tracepoints").expect("yaml");
        assert_eq!(m, HookMode::Tracepoints);
        assert!(serde_yaml::from_str::<HookMode>("Fentry").is_err());
    }
}
