//! A small Debian root file system with systemd, for booting systemd as PID 1 (`--systemd`):
//! made once with `debootstrap` from Debian's packages, configured for a serial-console guest,
//! turned into an ext4 image with `mkfs.ext4 -d` (no loop mount), and cached under
//! `<cache>/rootfs/`, keyed on the suite and package list. QEMU boots it with `snapshot=on`, so
//! the cached image is never written and concurrent runs share it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::fetch::{CacheLock, KEYRING};

/// Where the guest sees the host's root (read-only 9p).
pub const HOST_MOUNT: &str = "/host";

/// Bumped when the configuration below changes, so cached images are rebuilt.
const FORMAT: u32 = 1;

/// Size of the (sparse) image: the base system is ~250 MB, the rest is room for the test.
const IMAGE_SIZE: &str = "2G";

/// Units that would only cost CPU under TCG or wait for a console login.
const MASKED: &[&str] = &[
    "getty.target",
    "serial-getty@ttyS0.service",
    "console-getty.service",
    "systemd-firstboot.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
];

/// What to bootstrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsSpec {
    /// Debian suite, e.g. `bookworm`.
    pub suite: String,
    /// debootstrap variant, e.g. `minbase`.
    pub variant: String,
    /// Packages added with `--include` (their dependencies follow, not their recommendations).
    pub packages: Vec<String>,
}

impl Default for RootfsSpec {
    /// Bookworm minbase plus systemd as init, curl for the tests, and the shared libraries a
    /// dynamically linked agent built on a bookworm host needs (libelf, zlib).
    fn default() -> Self {
        RootfsSpec {
            suite: "bookworm".into(),
            variant: "minbase".into(),
            packages: ["systemd", "systemd-sysv", "libnss-systemd", "curl", "libelf1", "zlib1g", "procps"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

/// 64-bit FNV-1a: a hash that is stable across Rust versions (unlike `DefaultHasher`).
pub fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

impl RootfsSpec {
    /// Directory name under `<cache>/rootfs/`: suite, variant and a hash of everything that
    /// shapes the image (sorted package list, configuration format).
    pub fn key(&self) -> String {
        let mut pkgs = self.packages.clone();
        pkgs.sort();
        pkgs.dedup();
        let text =
            format!("format={FORMAT}\nsuite={}\nvariant={}\npackages={}\n", self.suite, self.variant, pkgs.join(","));
        format!("debian-{}-{}-{:016x}", self.suite, self.variant, fnv1a(text.as_bytes()))
    }

    /// Checks names before they reach a command line.
    pub fn validate(&self) -> Result<()> {
        let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-+.".contains(&b));
        for (what, v) in [("suite", &self.suite), ("variant", &self.variant)] {
            if !ok(v) {
                bail!("rootfs {what}: invalid value {v:?}");
            }
        }
        if let Some(p) = self.packages.iter().find(|p| !ok(p)) {
            bail!("rootfs package: invalid name {p:?}");
        }
        Ok(())
    }
}

/// A cached root file system image.
#[derive(Debug, Clone)]
pub struct RootfsImage {
    /// The raw ext4 image (boot it with `snapshot=on`: it must stay unchanged).
    pub image: PathBuf,
    pub key: String,
}

/// Checks the host tools the image build needs.
pub fn check_tools() -> Result<()> {
    for (tool, pkg) in [("debootstrap", "debootstrap"), ("mkfs.ext4", "e2fsprogs")] {
        let found = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].iter().any(|d| Path::new(d).join(tool).exists());
        if !found {
            bail!("{tool} not found: apt-get install {pkg} (scripts/setup.sh installs it)");
        }
    }
    if !Path::new(KEYRING).exists() {
        bail!("{KEYRING} is missing: apt-get install debian-archive-keyring");
    }
    Ok(())
}

/// Makes sure the image for `spec` exists under `cache`; builds it (debootstrap from `mirror`,
/// e.g. `http://deb.debian.org/debian`) when it doesn't. Later runs touch no network.
pub fn ensure_rootfs(cache: &Path, spec: &RootfsSpec, mirror: &str) -> Result<RootfsImage> {
    spec.validate()?;
    let key = spec.key();
    let dir = cache.join("rootfs").join(&key);
    let image = dir.join("rootfs.ext4");
    if image.exists() {
        return Ok(RootfsImage { image, key });
    }
    check_tools()?;
    fs::create_dir_all(cache.join("rootfs")).with_context(|| format!("creating {}", cache.join("rootfs").display()))?;
    let _lock = CacheLock::acquire(&cache.join("lock"))?;
    if image.exists() {
        return Ok(RootfsImage { image, key }); // another run built it while we waited
    }
    let tmp = cache.join("rootfs").join(format!(".{key}.tmp"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("removing stale {}", tmp.display()))?;
    }
    let tree = tmp.join("tree");
    fs::create_dir_all(&tree).with_context(|| format!("creating {}", tree.display()))?;
    // Downloaded .debs are kept, so a changed package list re-downloads only what is new.
    let debs = cache.join("rootfs").join("debs");
    fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;

    let t0 = Instant::now();
    eprintln!(
        "vm-tests: debootstrap --variant={} {} from {mirror} with {} (first use; about a minute)",
        spec.variant,
        spec.suite,
        spec.packages.join(",")
    );
    let log_path = tmp.join("debootstrap.log");
    let log = fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let status = Command::new("debootstrap")
        .arg(format!("--variant={}", spec.variant))
        .arg(format!("--include={}", spec.packages.join(",")))
        .arg(format!("--keyring={KEYRING}"))
        .arg(format!("--cache-dir={}", debs.display()))
        .arg(&spec.suite)
        .arg(&tree)
        .arg(mirror)
        .stdout(log.try_clone().context("duplicating the log file")?)
        .stderr(log)
        .status()
        .context("running debootstrap (apt-get install debootstrap)")?;
    if !status.success() {
        let text = fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect();
        bail!("debootstrap failed ({status}); last lines of {}:\n{}", log_path.display(), tail.join("\n"));
    }
    let boot_s = t0.elapsed().as_secs_f64();
    configure(&tree, &key)?;

    let raw = tmp.join("rootfs.ext4");
    let t1 = Instant::now();
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "vm-tests-root", "-d"])
        .arg(&tree)
        .arg(&raw)
        .arg(IMAGE_SIZE)
        .output()
        .context("running mkfs.ext4 (apt-get install e2fsprogs)")?;
    if !out.status.success() {
        bail!("mkfs.ext4 -d {} failed: {}", tree.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    fs::remove_dir_all(&tree).with_context(|| format!("removing {}", tree.display()))?;
    fs::write(tmp.join("packages.txt"), format!("{}\n", spec.packages.join("\n")))
        .with_context(|| format!("writing {}", tmp.join("packages.txt").display()))?;
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing incomplete {}", dir.display()))?;
    }
    fs::rename(&tmp, &dir).with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    eprintln!(
        "vm-tests: root file system {key}: debootstrap {boot_s:.1} s, mkfs.ext4 {:.1} s",
        t1.elapsed().as_secs_f64()
    );
    Ok(RootfsImage { image, key })
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(d) = path.parent() {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn symlink(target: &str, link: &Path) -> Result<()> {
    if let Some(d) = link.parent() {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let _ = fs::remove_file(link);
    std::os::unix::fs::symlink(target, link).with_context(|| format!("linking {} -> {target}", link.display()))
}

/// Configures the bootstrapped tree for a headless, network-less guest on a serial console.
fn configure(tree: &Path, key: &str) -> Result<()> {
    write(&tree.join("etc/hostname"), "vm-tests\n")?;
    write(&tree.join("etc/hosts"), "127.0.0.1 localhost\n127.0.1.1 vm-tests\n::1 localhost\n")?;
    // The initramfs mounts the root read-write; nothing else is mounted from fstab.
    write(&tree.join("etc/fstab"), "# vm-tests: / is /dev/vda (ext4), mounted by the initramfs\n")?;
    // A fixed machine id: every boot of the snapshot is then not a "first boot" (no
    // systemd-firstboot prompts on the console).
    write(&tree.join("etc/machine-id"), &format!("{:032x}\n", fnv1a(key.as_bytes()) as u128 | 1 << 64))?;
    let sys = tree.join("etc/systemd/system");
    symlink("/lib/systemd/system/multi-user.target", &sys.join("default.target"))?;
    for unit in MASKED {
        symlink("/dev/null", &sys.join(unit))?;
    }
    fs::create_dir_all(tree.join(HOST_MOUNT.trim_start_matches('/')))
        .with_context(|| format!("creating {HOST_MOUNT} in {}", tree.display()))?;
    Ok(())
}
