//! Facts about the host that are read, not probed: kernel release, lockdown mode,
//! capabilities, sysctls.

use std::ffi::CStr;
use std::fs;
use std::path::PathBuf;

use nix::mount::{MntFlags, MsFlags};

const LOCKDOWN: &str = "/sys/kernel/security/lockdown";

/// Lockdown mode from securityfs. If securityfs is not mounted and we may mount, it is
/// mounted on a private temporary directory just long enough to read one file.
pub(crate) fn lockdown() -> (Option<String>, String) {
    if let Some(mode) = read_trimmed(LOCKDOWN).and_then(|s| parse_lockdown(&s)) {
        return (Some(mode), LOCKDOWN.to_string());
    }
    let Ok(dir) = tempdir("beyla-securityfs") else {
        return (None, "unknown: securityfs not mounted".into());
    };
    let mounted = nix::mount::mount(Some("securityfs"), &dir, Some("securityfs"), MsFlags::empty(), None::<&str>);
    let result = match mounted {
        Ok(()) => {
            let mode = fs::read_to_string(dir.join("lockdown")).ok().and_then(|s| parse_lockdown(&s));
            let _ = nix::mount::umount2(&dir, MntFlags::MNT_DETACH);
            match mode {
                Some(m) => (Some(m), "securityfs not mounted; read through a temporary mount".into()),
                None => (None, "no lockdown LSM".into()),
            }
        }
        Err(e) => (None, format!("unknown: securityfs not mounted and cannot mount it ({e:?})")),
    };
    let _ = fs::remove_dir(&dir);
    result
}

/// Creates a fresh directory under the temp dir.
fn tempdir(prefix: &str) -> std::io::Result<PathBuf> {
    let base = std::env::temp_dir();
    for n in 0..16u32 {
        let dir = base.join(format!("{prefix}-{}-{n}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::ErrorKind::AlreadyExists.into())
}

/// `/sys/kernel/security/lockdown` reads like `none [integrity] confidentiality`.
pub(crate) fn parse_lockdown(text: &str) -> Option<String> {
    let start = text.find('[')? + 1;
    let end = start + text[start..].find(']')?;
    Some(text[start..end].to_string())
}

/// Effective capability mask from `/proc/self/status`.
pub(crate) fn cap_eff() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

/// Reads a small sysfs/procfs file as a trimmed string.
pub(crate) fn read_trimmed(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// uname(2) release, e.g. `6.18.44-fc-v595`.
pub(crate) fn kernel_release() -> String {
    // SAFETY: utsname is plain old data; uname fills it with NUL-terminated strings.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut uts) } == 0 {
        // SAFETY: release is NUL-terminated after a successful uname.
        let release = unsafe { CStr::from_ptr(uts.release.as_ptr()) };
        return release.to_string_lossy().into_owned();
    }
    read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default()
}

/// The kernel host name (`/proc/sys/kernel/hostname`), or `localhost`.
pub fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockdown_is_the_bracketed_word() {
        assert_eq!(parse_lockdown("none [integrity] confidentiality\n").as_deref(), Some("integrity"));
        assert_eq!(parse_lockdown("[none] integrity confidentiality").as_deref(), Some("none"));
        assert_eq!(parse_lockdown("none integrity"), None);
    }
}
