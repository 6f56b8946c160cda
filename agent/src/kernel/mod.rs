//! Kernel setup and capabilities: mounts the pseudo-filesystems the agent needs, probes
//! what eBPF can do on the running kernel, and picks the hook family.
//!
//! Start-up order: [`ensure_mounts`] → [`probe`] → [`choose`]; log
//! [`Features::summary_line`]. `beyla doctor` prints [`doctor_report`].

pub mod features;
mod host;
pub mod mounts;
pub mod plan;
mod probes;

use std::path::PathBuf;

pub use features::{probe, Features};
pub use mounts::{ensure_mounts, find_mounts, CgroupLayout, FoundMounts, Mounts};
pub use plan::{choose, families_to_try, HookFamily, HookMode, HookPlan};

/// Errors of the `kernel` stage.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("cannot read {}", path.display())]
    MountInfo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot mount {fs} at {}: {hint}", target.display())]
    Mount {
        fs: &'static str,
        target: PathBuf,
        hint: String,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("cannot mount {fs}: {} does not exist (kernel built without it?); {hint}", target.display())]
    MountPointMissing { fs: &'static str, target: PathBuf, hint: String },
    #[error("{fs} was mounted at {} but does not show up in /proc/self/mountinfo", target.display())]
    NotMounted { fs: &'static str, target: PathBuf },
    #[error("ebpf.hook_mode: unknown value {value:?}, expected auto, socket, tracepoints, kprobes or fentry")]
    UnknownHookMode { value: String },
    #[error("ebpf.hook_mode: {family} requested but this kernel ({kernel_release}) {reason}")]
    HookFamilyUnavailable { family: HookFamily, kernel_release: String, reason: String },
    #[error("no eBPF hook family works on this kernel ({kernel_release}): {reason}")]
    NoHookFamily { kernel_release: String, reason: String },
    #[error("this kernel ({kernel_release}) lacks {feature}, which beyla requires: {reason}")]
    RequiredFeatureMissing { feature: &'static str, kernel_release: String, reason: String },
}

/// The `beyla doctor` report: the feature table, then the hook plan (or why there is none).
pub fn doctor_report(f: &Features, plan: &Result<HookPlan, KernelError>) -> String {
    let mut out = f.to_string();
    out.push('\n');
    match plan {
        Ok(p) => out.push_str(&p.to_string()),
        Err(e) => {
            out.push_str("PLAN  none\n");
            out.push_str(&format!("error: {e}\n"));
        }
    }
    out.push_str(&format!("\nsummary: {}\n", f.summary_line()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doctor_report_has_table_and_plan() {
        let mut f = Features {
            kernel_release: "6.18.44".into(),
            btf: true,
            ringbuf: true,
            tracepoints: true,
            syscall_tracepoints: true,
            raw_tp: true,
            tracefs: Some("/sys/kernel/tracing".into()),
            ..Default::default()
        };
        f.notes.insert("kprobes", "no kprobe PMU".into());
        let report = doctor_report(&f, &choose(&f, HookMode::Auto));
        assert!(report.contains("FEATURE"), "{report}");
        let words = |key: &str| {
            let line = report.lines().find(|l| l.starts_with(&format!("{key} "))).unwrap_or_default();
            line.split_whitespace().map(str::to_string).collect::<Vec<_>>()
        };
        assert_eq!(words("kprobes"), ["kprobes", "no", "no", "kprobe", "PMU"], "{report}");
        assert_eq!(words("family"), ["family", "tracepoints"], "{report}");
        // Columns are aligned: every feature row has its value at the same offset.
        let col = |l: &str| l.find("  ").map(|i| i + l[i..].find(|c: char| c != ' ').unwrap_or(0));
        let offsets: Vec<_> = report.lines().skip(2).take_while(|l| !l.is_empty()).map(col).collect();
        assert!(offsets.windows(2).all(|w| w[0] == w[1]), "{report}");
        let err = choose(&f, HookMode::Kprobes);
        let report = doctor_report(&f, &err);
        assert!(report.contains("error: ebpf.hook_mode: kprobes requested"), "{report}");
        assert!(f.summary_line().starts_with("kernel=6.18.44 btf=yes kprobes=no"), "{}", f.summary_line());
        assert!(f.summary_line().ends_with("hook=tracepoints"), "{}", f.summary_line());
    }
}
