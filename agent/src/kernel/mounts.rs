//! Pseudo-filesystems the agent needs: bpffs (pinning), tracefs (tracepoint ids) and
//! cgroup2 (cgroup-attached programs, container ids).
//!
//! [`find_mounts`] only looks; [`ensure_mounts`] mounts bpffs and tracefs where missing.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::mount::{mount, MsFlags};
use tracing::info;

use super::KernelError;

const MOUNTINFO: &str = "/proc/self/mountinfo";
pub const BPFFS_DIR: &str = "/sys/fs/bpf";
pub const TRACEFS_DIR: &str = "/sys/kernel/tracing";
const DEBUGFS_DIR: &str = "/sys/kernel/debug";

/// One line of `/proc/self/mountinfo` (fields we use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Where it is mounted (octal escapes such as `\040` decoded).
    pub mount_point: PathBuf,
    /// Filesystem type, e.g. `bpf`, `tracefs`, `cgroup2`.
    pub fs_type: String,
    /// Mount source, e.g. `bpf`, `nodev`.
    pub source: String,
}

/// How cgroups are mounted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CgroupLayout {
    /// Pure cgroup v2 (cgroup2 at `/sys/fs/cgroup`).
    Unified,
    /// v1 controllers plus a cgroup2 mount (usually `/sys/fs/cgroup/unified`).
    Hybrid,
    /// Only cgroup v1.
    Legacy,
    /// No cgroup filesystem at all.
    #[default]
    None,
}

impl std::fmt::Display for CgroupLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Unified => "unified (v2)",
            Self::Hybrid => "hybrid (v1 + v2)",
            Self::Legacy => "legacy (v1 only)",
            Self::None => "none",
        })
    }
}

/// What is mounted right now; `None` means not found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundMounts {
    pub bpffs: Option<PathBuf>,
    pub tracefs: Option<PathBuf>,
    pub cgroup2: Option<PathBuf>,
    pub cgroup_layout: CgroupLayout,
}

/// Result of [`ensure_mounts`]: bpffs and tracefs are guaranteed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounts {
    pub bpffs: PathBuf,
    pub tracefs: PathBuf,
    /// cgroup2 mount, if any (never mounted by the agent).
    pub cgroup2: Option<PathBuf>,
    pub cgroup_layout: CgroupLayout,
    /// Filesystems this call mounted (empty when everything was already there).
    pub mounted_now: Vec<PathBuf>,
}

/// Decodes the octal escapes the kernel uses in mountinfo (`\040` for space, ...).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let oct = bytes.get(i + 1..i + 4).filter(|o| o.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let (b'\\', Some(oct)) = (bytes[i], oct) {
            let v = oct.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text (see proc(5)); malformed lines are skipped.
///
/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let mount_point = pre.split(' ').nth(4)?;
            let mut post = post.split(' ');
            let fs_type = post.next()?;
            let source = post.next().unwrap_or("");
            Some(MountEntry {
                mount_point: PathBuf::from(unescape(mount_point)),
                fs_type: fs_type.to_string(),
                source: unescape(source),
            })
        })
        .collect()
}

/// Picks the mount of `fs_type`, preferring `preferred`, else the last one listed
/// (later mounts shadow earlier ones).
fn pick(entries: &[MountEntry], fs_type: &str, preferred: &[&str]) -> Option<PathBuf> {
    let of_type = || entries.iter().filter(|e| e.fs_type == fs_type);
    preferred
        .iter()
        .find_map(|p| of_type().find(|e| e.mount_point == Path::new(p)))
        .or_else(|| of_type().next_back())
        .map(|e| e.mount_point.clone())
}

/// Locates the mounts in parsed mountinfo, without touching the filesystem. tracefs may
/// also come from debugfs (`<debugfs>/tracing`) on kernels that mount it there.
pub fn locate(entries: &[MountEntry]) -> FoundMounts {
    let bpffs = pick(entries, "bpf", &[BPFFS_DIR]);
    let tracefs = pick(entries, "tracefs", &[TRACEFS_DIR, "/sys/kernel/debug/tracing"])
        .or_else(|| pick(entries, "debugfs", &[DEBUGFS_DIR]).map(|d| d.join("tracing")));
    let cgroup2 = pick(entries, "cgroup2", &["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]);
    let has_v1 = entries.iter().any(|e| e.fs_type == "cgroup");
    let cgroup_layout = match (&cgroup2, has_v1) {
        (Some(p), false) if p == Path::new("/sys/fs/cgroup") => CgroupLayout::Unified,
        (Some(_), true) => CgroupLayout::Hybrid,
        (Some(_), false) => CgroupLayout::Unified,
        (None, true) => CgroupLayout::Legacy,
        (None, false) => CgroupLayout::None,
    };
    FoundMounts { bpffs, tracefs, cgroup2, cgroup_layout }
}

/// Reads `/proc/self/mountinfo` and locates bpffs, tracefs and cgroup2. A tracefs
/// derived from debugfs only counts if its `events` directory exists.
pub fn find_mounts() -> Result<FoundMounts, KernelError> {
    let text =
        fs::read_to_string(MOUNTINFO).map_err(|source| KernelError::MountInfo { path: MOUNTINFO.into(), source })?;
    let mut found = locate(&parse_mountinfo(&text));
    if let Some(t) = &found.tracefs {
        if !t.join("events").is_dir() {
            found.tracefs = None;
        }
    }
    Ok(found)
}

/// Serialises mounting within this process (tests and the agent may call concurrently).
static MOUNT_LOCK: Mutex<()> = Mutex::new(());

fn mount_fs(fs_type: &'static str, source: &str, target: &str, hint: &str) -> Result<(), KernelError> {
    let target_path = PathBuf::from(target);
    if !target_path.is_dir() {
        return Err(KernelError::MountPointMissing { fs: fs_type, target: target_path, hint: hint.to_string() });
    }
    mount(Some(source), target, Some(fs_type), MsFlags::empty(), None::<&str>).map_err(|source| {
        KernelError::Mount { fs: fs_type, target: target_path.clone(), hint: hint.to_string(), source }
    })?;
    info!(fs = fs_type, target, "Mounted filesystem the agent needs.");
    Ok(())
}

/// Makes sure bpffs and tracefs are mounted (at `/sys/fs/bpf` and `/sys/kernel/tracing`
/// when missing) and locates cgroup2. Idempotent: a second call mounts nothing.
pub fn ensure_mounts() -> Result<Mounts, KernelError> {
    let _guard = MOUNT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut found = find_mounts()?;
    let mut mounted_now = Vec::new();
    if found.bpffs.is_none() {
        mount_fs(
            "bpf",
            "bpf",
            BPFFS_DIR,
            "mount it first with `mount -t bpf bpf /sys/fs/bpf`, or run beyla with CAP_SYS_ADMIN",
        )?;
        mounted_now.push(PathBuf::from(BPFFS_DIR));
    }
    if found.tracefs.is_none() {
        mount_fs(
            "tracefs",
            "nodev",
            TRACEFS_DIR,
            "mount it first with `mount -t tracefs nodev /sys/kernel/tracing`, or run beyla with CAP_SYS_ADMIN",
        )?;
        mounted_now.push(PathBuf::from(TRACEFS_DIR));
    }
    if !mounted_now.is_empty() {
        found = find_mounts()?;
    }
    let bpffs = found.bpffs.ok_or_else(|| KernelError::NotMounted { fs: "bpf", target: BPFFS_DIR.into() })?;
    let tracefs = found.tracefs.ok_or_else(|| KernelError::NotMounted { fs: "tracefs", target: TRACEFS_DIR.into() })?;
    Ok(Mounts { bpffs, tracefs, cgroup2: found.cgroup2, cgroup_layout: found.cgroup_layout, mounted_now })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This CI host: nothing mounted for BPF, hybrid cgroups.
    const HYBRID_HOST: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A systemd distro: pure v2, bpffs and tracefs mounted, debugfs too.
    const SYSTEMD_HOST: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
28 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
30 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
31 25 0:28 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:10 - bpf bpf rw,mode=700
40 25 0:7 / /sys/kernel/debug rw,nosuid,nodev,noexec,relatime shared:15 - debugfs debugfs rw
41 25 0:12 / /sys/kernel/tracing rw,nosuid,nodev,noexec,relatime shared:16 - tracefs tracefs rw
";

    #[test]
    fn parses_fields_and_escapes() {
        let e = parse_mountinfo("36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 - ext3 /dev/root rw\n");
        assert_eq!(
            e,
            vec![MountEntry {
                mount_point: PathBuf::from("/mnt two"),
                fs_type: "ext3".into(),
                source: "/dev/root".into()
            }]
        );
        // Optional fields (several, or none) before the separator.
        let e = parse_mountinfo("1 2 0:1 / /a rw shared:1 master:2 - bpf bpf rw\n1 2 0:1 / /b rw - tracefs nodev rw");
        assert_eq!(e.len(), 2);
        assert_eq!((e[1].mount_point.as_path(), e[1].source.as_str()), (Path::new("/b"), "nodev"));
    }

    #[test]
    fn skips_malformed_lines() {
        assert!(parse_mountinfo("garbage\n1 2 3\n\n").is_empty());
    }

    #[test]
    fn hybrid_host_has_only_cgroup2() {
        let f = locate(&parse_mountinfo(HYBRID_HOST));
        assert_eq!(f.bpffs, None);
        assert_eq!(f.tracefs, None);
        assert_eq!(f.cgroup2.as_deref(), Some(Path::new("/sys/fs/cgroup/unified")));
        assert_eq!(f.cgroup_layout, CgroupLayout::Hybrid);
    }

    #[test]
    fn systemd_host_has_everything() {
        let f = locate(&parse_mountinfo(SYSTEMD_HOST));
        assert_eq!(f.bpffs.as_deref(), Some(Path::new("/sys/fs/bpf")));
        assert_eq!(f.tracefs.as_deref(), Some(Path::new("/sys/kernel/tracing")));
        assert_eq!(f.cgroup2.as_deref(), Some(Path::new("/sys/fs/cgroup")));
        assert_eq!(f.cgroup_layout, CgroupLayout::Unified);
    }

    #[test]
    fn tracefs_falls_back_to_debugfs_and_preferred_paths_win() {
        let text = "\
1 0 0:1 / /sys/kernel/debug rw - debugfs debugfs rw
2 0 0:2 / /run/bpf rw - bpf bpf rw
3 0 0:3 / /sys/fs/bpf rw - bpf bpf rw
4 0 0:4 / /tmp/other-bpf rw - bpf bpf rw
";
        let f = locate(&parse_mountinfo(text));
        assert_eq!(f.tracefs.as_deref(), Some(Path::new("/sys/kernel/debug/tracing")));
        assert_eq!(f.bpffs.as_deref(), Some(Path::new("/sys/fs/bpf")));
        assert_eq!(f.cgroup_layout, CgroupLayout::None);
    }

    #[test]
    fn legacy_cgroups() {
        let f = locate(&parse_mountinfo("1 0 0:1 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu"));
        assert_eq!((f.cgroup2, f.cgroup_layout), (None, CgroupLayout::Legacy));
    }
}
