//! Kernel setup and capabilities: mounts the pseudo-filesystems the agent needs, probes
//! what eBPF can do on the running kernel, and picks the hook family.
//!
//! Start-up order: [`ensure_mounts`] → [`probe`] → [`choose`]; log
//! [`Features::summary_line`]. `beyla doctor` prints [`doctor_report`].

mod doctor;
pub mod features;
mod host;
pub mod mounts;
pub mod plan;
mod probes;

use std::path::PathBuf;

pub use doctor::doctor_report;
pub use features::{probe, Features};
pub use host::local_hostname;
pub use mounts::{ensure_mounts, find_mounts, CgroupLayout, FoundMounts, Mounts};
pub use plan::{choose, HookFamily, HookMode, HookPlan};

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
