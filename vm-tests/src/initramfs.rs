//! The initramfs: a newc cpio (gzip) with a static busybox, the kernel's own modules and the
//! two init scripts from `vm-tests/init/`; or, for `--systemd`, the init that mounts the cached
//! Debian image and starts systemd, with the unit that runs the command.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::modules;
use crate::rootfs::HOST_MOUNT;

const STAGE1: &str = include_str!("../init/stage1.sh");
const STAGE2: &str = include_str!("../init/stage2.sh");
const SYSTEMD_STAGE1: &str = include_str!("../init/systemd-stage1.sh");
const SYSTEMD_COMMAND: &str = include_str!("../init/systemd-command.sh");
const SYSTEMD_UNIT: &str = include_str!("../init/vm-tests-command.service");

/// The unit that runs the command under `--systemd` (in the guest's `/etc/systemd/system`).
pub const SYSTEMD_UNIT_NAME: &str = "vm-tests-command.service";

/// Where the static busybox comes from (Debian package `busybox-static`).
pub const BUSYBOX: &str = "/bin/busybox";

/// Minimal newc ("070701") cpio writer.
#[derive(Default)]
pub struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn header(&mut self, name: &str, mode: u32, size: usize, rdev: (u32, u32)) {
        self.ino += 1;
        let namesize = name.len() + 1;
        let fields = [self.ino, mode, 0, 0, 1, 0, size as u32, 0, 0, rdev.0, rdev.1, namesize as u32, 0];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    pub fn dir(&mut self, name: &str) {
        self.header(name, 0o040755, 0, (0, 0));
    }

    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.header(name, 0o100000 | mode, data.len(), (0, 0));
        self.buf.extend_from_slice(data);
        self.pad();
    }

    pub fn symlink(&mut self, name: &str, target: &str) {
        self.header(name, 0o120777, target.len(), (0, 0));
        self.buf.extend_from_slice(target.as_bytes());
        self.pad();
    }

    pub fn char_dev(&mut self, name: &str, mode: u32, major: u32, minor: u32) {
        self.header(name, 0o020000 | mode, 0, (major, minor));
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.header("TRAILER!!!", 0, 0, (0, 0));
        while !self.buf.len().is_multiple_of(512) {
            self.buf.push(0);
        }
        self.buf
    }
}

/// Quotes a word for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// What the guest runs.
#[derive(Debug, Clone)]
pub struct GuestCommand {
    /// Working directory (a host path, visible through the 9p root).
    pub cwd: PathBuf,
    /// The complete environment of the command, `KEY=VALUE`.
    pub env: Vec<(String, String)>,
    pub argv: Vec<String>,
    /// How cgroups are mounted under /sys/fs/cgroup.
    pub cgroup: CgroupLayout,
}

/// The guest's cgroup layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CgroupLayout {
    /// cgroup2 alone on /sys/fs/cgroup.
    #[default]
    Unified,
    /// Every v1 controller on /sys/fs/cgroup/<name> (plus name=systemd), cgroup2 on
    /// /sys/fs/cgroup/unified: a systemd host in hybrid mode, like the build machine.
    Hybrid,
}

impl CgroupLayout {
    pub fn name(self) -> &'static str {
        match self {
            CgroupLayout::Unified => "unified",
            CgroupLayout::Hybrid => "hybrid",
        }
    }
}

/// The base environment of the guest command; `--env` entries are added after it.
pub fn base_env() -> Vec<(String, String)> {
    [
        ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        ("HOME", "/root"),
        ("USER", "root"),
        ("LOGNAME", "root"),
        ("TERM", "dumb"),
        ("LANG", "C.UTF-8"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Fills in stage 1: module names in load order and the 9p cache mode.
pub fn stage1(module_names: &[String]) -> String {
    STAGE1.replace("@MODULES@", &module_names.join(" ")).replace("@NINEP_CACHE@", "cache=loose")
}

/// Fills in stage 2 for one command.
pub fn stage2(cmd: &GuestCommand) -> Result<String> {
    if cmd.argv.is_empty() {
        bail!("no guest command given");
    }
    let env: Vec<String> = cmd.env.iter().map(|(k, v)| shell_quote(&format!("{k}={v}"))).collect();
    let argv: Vec<String> = cmd.argv.iter().map(|a| shell_quote(a)).collect();
    let cwd = cmd.cwd.to_str().context("working directory is not UTF-8")?;
    Ok(STAGE2
        .replace("@CWD@", &shell_quote(cwd))
        .replace("@ENV@", &env.join(" "))
        .replace("@COMMAND@", &argv.join(" "))
        .replace("@CGROUP@", cmd.cgroup.name()))
}

/// True when the ELF file has no program interpreter (a static executable).
pub fn is_static_elf(bytes: &[u8]) -> bool {
    if bytes.get(..4) != Some(b"\x7fELF") || bytes.get(4) != Some(&2) {
        return false;
    }
    let rd = |o: usize, n: usize| -> Option<u64> {
        let b = bytes.get(o..o + n)?;
        Some(b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64))
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (rd(0x20, 8), rd(0x36, 2), rd(0x38, 2)) else {
        return false;
    };
    (0..phnum).all(|i| rd((phoff + i * phentsize) as usize, 4) != Some(3)) // PT_INTERP
}

/// Fills in the `--systemd` init: module names in load order, the 9p cache mode, the host mount.
pub fn systemd_stage1(module_names: &[String]) -> String {
    SYSTEMD_STAGE1
        .replace("@MODULES@", &module_names.join(" "))
        .replace("@NINEP_CACHE@", "cache=loose")
        .replace("@HOST_MOUNT@", HOST_MOUNT)
}

/// Fills in the `--systemd` command script. The working directory is a host path, reached
/// under [`HOST_MOUNT`] in the guest; the command's words are used as given (guest paths).
pub fn systemd_command(cmd: &GuestCommand) -> Result<String> {
    if cmd.argv.is_empty() {
        bail!("no guest command given");
    }
    let env: Vec<String> = cmd.env.iter().map(|(k, v)| shell_quote(&format!("{k}={v}"))).collect();
    let argv: Vec<String> = cmd.argv.iter().map(|a| shell_quote(a)).collect();
    let cwd = cmd.cwd.to_str().context("working directory is not UTF-8")?;
    let cwd = format!("{HOST_MOUNT}{}", if cwd == "/" { "" } else { cwd });
    Ok(SYSTEMD_COMMAND
        .replace("@CWD@", &shell_quote(&cwd))
        .replace("@ENV@", &env.join(" "))
        .replace("@COMMAND@", &argv.join(" "))
        .replace("@HOST_MOUNT@", HOST_MOUNT))
}

fn busybox() -> Result<Vec<u8>> {
    let busybox = fs::read(BUSYBOX).with_context(|| {
        format!("reading {BUSYBOX}: the guest init needs a static busybox (apt-get install busybox-static)")
    })?;
    if !is_static_elf(&busybox) {
        bail!("{BUSYBOX} is not statically linked: apt-get install busybox-static");
    }
    Ok(busybox)
}

/// The common part: directories, device nodes, busybox and the modules (`wanted` plus their
/// dependencies, in load order). Returns the archive so far and the module names.
fn base(modules_dir: &Path, wanted: &[&str]) -> Result<(Cpio, Vec<String>)> {
    let busybox = busybox()?;
    let mods = modules::modules_for(modules_dir, wanted)?;
    let mut cpio = Cpio::default();
    for d in ["bin", "dev", "proc", "sys", "mnt", "mnt/lower", "mnt/rw", "newroot", "modules"] {
        cpio.dir(d);
    }
    cpio.char_dev("dev/console", 0o600, 5, 1);
    cpio.char_dev("dev/null", 0o666, 1, 3);
    cpio.file("bin/busybox", 0o755, &busybox);
    let mut names = Vec::new();
    for (name, path) in &mods {
        let data = modules::read_module(path)?;
        cpio.file(&format!("modules/{name}.ko"), 0o644, &data);
        names.push(name.clone());
    }
    Ok((cpio, names))
}

/// Writes the archive gzip'd to `dest`.
fn write_gzip(cpio: Cpio, dest: &Path) -> Result<()> {
    let raw = dest.with_extension("cpio");
    fs::write(&raw, cpio.finish()).with_context(|| format!("writing {}", raw.display()))?;
    let out = fs::File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    let status =
        Command::new("gzip").args(["-1", "-n", "-c"]).arg(&raw).stdout(out).status().context("running gzip")?;
    if !status.success() {
        bail!("gzip {} failed ({status})", raw.display());
    }
    fs::remove_file(&raw).with_context(|| format!("removing {}", raw.display()))
}

/// Builds `dest` (gzip'd newc cpio) for a kernel's modules directory and a guest command.
/// Returns the module names loaded, in order.
pub fn build(modules_dir: &Path, extra_modules: &[String], cmd: &GuestCommand, dest: &Path) -> Result<Vec<String>> {
    let mut wanted: Vec<&str> = modules::REQUIRED.to_vec();
    wanted.extend(extra_modules.iter().map(String::as_str));
    let (mut cpio, names) = base(modules_dir, &wanted)?;
    cpio.file("init", 0o755, stage1(&names).as_bytes());
    cpio.file("stage2.sh", 0o644, stage2(cmd)?.as_bytes());
    write_gzip(cpio, dest)?;
    Ok(names)
}

/// Builds the `--systemd` initramfs: the modules to mount the Debian image and the host root,
/// the init that starts systemd on it, and under `payload/` the files copied into the image's
/// root (the command unit, enabled, and its script). Returns the module names, in order.
pub fn build_systemd(
    modules_dir: &Path,
    extra_modules: &[String],
    cmd: &GuestCommand,
    dest: &Path,
) -> Result<Vec<String>> {
    let mut wanted: Vec<&str> = modules::REQUIRED.to_vec();
    wanted.extend(modules::SYSTEMD_ROOT);
    wanted.extend(extra_modules.iter().map(String::as_str));
    let (mut cpio, names) = base(modules_dir, &wanted)?;
    cpio.file("init", 0o755, systemd_stage1(&names).as_bytes());
    for d in [
        "payload",
        "payload/etc",
        "payload/etc/vm-tests",
        "payload/etc/systemd",
        "payload/etc/systemd/system",
        "payload/etc/systemd/system/multi-user.target.wants",
    ] {
        cpio.dir(d);
    }
    cpio.file("payload/etc/vm-tests/command.sh", 0o644, systemd_command(cmd)?.as_bytes());
    cpio.file(&format!("payload/etc/systemd/system/{SYSTEMD_UNIT_NAME}"), 0o644, SYSTEMD_UNIT.as_bytes());
    cpio.symlink(
        &format!("payload/etc/systemd/system/multi-user.target.wants/{SYSTEMD_UNIT_NAME}"),
        &format!("/etc/systemd/system/{SYSTEMD_UNIT_NAME}"),
    );
    write_gzip(cpio, dest)?;
    Ok(names)
}
