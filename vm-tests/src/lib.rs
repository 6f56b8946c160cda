//! vm-tests: runs a command inside Debian kernels under QEMU, with the host's root shared
//! read-only over 9p (plus a tmpfs overlay), and reports the command's exit code. With
//! `--systemd` the root is instead a cached Debian image (debootstrap) booting systemd as PID 1.

pub mod fetch;
pub mod initramfs;
pub mod kernels;
pub mod modules;
pub mod qemu;
pub mod rootfs;

/// Exit code when the timeout passed.
pub const EXIT_TIMEOUT: i32 = 124;
/// Exit code when the guest gave no exit code (crash, init failure, setup error).
pub const EXIT_NO_RESULT: i32 = 125;
