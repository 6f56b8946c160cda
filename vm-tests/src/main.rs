//! `cargo run -p vm-tests -- --kernel 6.1 -- <command> [args...]`

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};

use vm_tests::fetch::{self, KernelTree};
use vm_tests::initramfs::{self, CgroupLayout, GuestCommand};
use vm_tests::kernels::KernelsFile;
use vm_tests::qemu::{self, Accel, Boot, Ending};
use vm_tests::rootfs::{self, RootfsSpec, HOST_MOUNT};
use vm_tests::{EXIT_NO_RESULT, EXIT_TIMEOUT};

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum CgroupChoice {
    /// cgroup2 alone on /sys/fs/cgroup.
    Unified,
    /// v1 controllers on /sys/fs/cgroup/<name>, cgroup2 on /sys/fs/cgroup/unified (like the
    /// build machine).
    Hybrid,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum AccelChoice {
    /// KVM when /dev/kvm exists and a probe boot of this kernel succeeds, else TCG.
    Auto,
    Kvm,
    Tcg,
}

/// Runs a command inside a Debian kernel under QEMU. The host's `/` is the guest's root
/// (read-only 9p with a tmpfs overlay); the guest runs as root with bpffs, tracefs, cgroup2
/// mounted and `lo` up. With `--systemd`, a Debian image with systemd as PID 1 instead. Exits with the command's exit code, 124 on timeout, 125 when the
/// guest gave no exit code (crash, init failure) or the harness failed.
#[derive(Debug, Parser)]
#[command(name = "vm-tests", version)]
struct Cli {
    /// Kernel short name from kernels.toml (`5.10`, `6.1`, `6.12`).
    #[arg(long, default_value = "6.1")]
    kernel: String,

    /// The kernels file.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/kernels.toml"))]
    kernels_file: PathBuf,

    /// Cache for the private apt lists, .debs, extracted kernels and KVM probe results.
    #[arg(long, env = "VM_TESTS_CACHE", default_value = "/var/cache/beyla-vm-tests")]
    cache: PathBuf,

    /// Accelerator.
    #[arg(long, value_enum, env = "VM_TESTS_ACCEL", default_value = "auto")]
    accel: AccelChoice,

    /// Seconds before QEMU is killed (exit code 124).
    #[arg(long, default_value_t = 900)]
    timeout: u64,

    /// Guest environment entry `KEY=VALUE`, or `KEY` to copy the host's value. Repeatable.
    /// The guest starts from PATH (/usr/bin first), HOME=/root, USER, LOGNAME, TERM=dumb, LANG.
    #[arg(long = "env", value_name = "KEY[=VALUE]")]
    env: Vec<String>,

    /// Guest working directory (a host path); default: the current directory.
    #[arg(long)]
    cwd: Option<PathBuf>,

    /// cgroup layout under /sys/fs/cgroup.
    #[arg(long, value_enum, env = "VM_TESTS_CGROUP", default_value = "unified")]
    cgroup: CgroupChoice,

    /// Guest memory in MiB.
    #[arg(long, default_value_t = 2048)]
    memory: u32,

    /// Guest CPUs.
    #[arg(long, default_value_t = 2)]
    cpus: u32,

    /// Extra kernel module to load in the initramfs (with its dependencies). Repeatable.
    #[arg(long = "module", value_name = "NAME")]
    modules: Vec<String>,

    /// Extra kernel command-line word. Repeatable.
    #[arg(long = "append", value_name = "WORD")]
    append: Vec<String>,

    /// Boot a cached Debian bookworm image (debootstrap, built on first use) with systemd as
    /// PID 1 instead of the host root; the host root is read-only on /host. The command runs
    /// as root in a systemd service after multi-user.target, in /host/<cwd>; its words are guest
    /// paths (host files are under /host).
    #[arg(long)]
    systemd: bool,

    /// Do not echo the guest console (the tail is still printed on failure).
    #[arg(long)]
    quiet: bool,

    /// Download and extract the kernel and build the initramfs, then exit.
    #[arg(long)]
    fetch_only: bool,

    /// List the kernels in the kernels file and exit.
    #[arg(long)]
    list: bool,

    /// Show the versions of this kernel series the private apt lists have, and exit.
    #[arg(long)]
    available: bool,

    /// The guest command and its arguments.
    #[arg(last = true)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("vm-tests: error: {e:#}");
            ExitCode::from(EXIT_NO_RESULT as u8)
        }
    }
}

fn guest_env(entries: &[String]) -> Result<Vec<(String, String)>> {
    let mut env = initramfs::base_env();
    for e in entries {
        let (k, v) = match e.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => {
                let v = std::env::var(e).with_context(|| format!("--env {e}: not set on the host"))?;
                (e.clone(), v)
            }
        };
        let valid = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            bail!("--env {e}: invalid variable name {k:?}");
        }
        env.retain(|(old, _)| *old != k);
        env.push((k, v));
    }
    Ok(env)
}

/// A per-run scratch directory under the cache, removed on drop.
struct RunDir(PathBuf);

impl RunDir {
    fn new(cache: &Path) -> Result<Self> {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let dir = cache.join("runs").join(format!("{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(RunDir(dir))
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.1}", d.as_secs_f64())).unwrap_or_else(|| "-".into())
}

/// Decides the accelerator; `auto` probes KVM once per (host kernel, guest kernel), cached.
fn choose_accel(cli: &Cli, tree: &KernelTree, run: &RunDir) -> Result<Accel> {
    match cli.accel {
        AccelChoice::Tcg => return Ok(Accel::Tcg),
        AccelChoice::Kvm => return Ok(Accel::Kvm),
        AccelChoice::Auto => {}
    }
    if !Path::new("/dev/kvm").exists() {
        eprintln!("vm-tests: no /dev/kvm: using tcg");
        return Ok(Accel::Tcg);
    }
    let cached = qemu::kvm_probe_cache(&cli.cache, &tree.release);
    if let Ok(v) = std::fs::read_to_string(&cached) {
        let ok = v.trim() == "ok";
        eprintln!("vm-tests: kvm probe (cached in {}): {}", cached.display(), v.trim());
        return Ok(if ok { Accel::Kvm } else { Accel::Tcg });
    }
    eprintln!("vm-tests: probing kvm with a 30 s boot of {}", tree.release);
    let probe_cmd = GuestCommand {
        cwd: "/".into(),
        env: initramfs::base_env(),
        argv: vec!["true".into()],
        cgroup: CgroupLayout::Unified,
    };
    let initrd = run.0.join("probe-initrd.img");
    initramfs::build(&tree.modules, &cli.modules, &probe_cmd, &initrd)?;
    let boot = Boot {
        vmlinuz: tree.vmlinuz.clone(),
        initrd,
        accel: Accel::Kvm,
        memory_mb: cli.memory,
        cpus: cli.cpus,
        timeout: Duration::from_secs(30),
        echo: false,
        extra_append: cli.append.clone(),
        disk: None,
    };
    let outcome = qemu::boot(&boot)?;
    let ok = outcome.ending == Ending::Exited(0);
    let verdict = if ok {
        "ok".to_string()
    } else {
        let why = outcome.tail.iter().rev().find(|l| !l.trim().is_empty()).cloned().unwrap_or_default();
        format!("fail ({:?}: {why})", outcome.ending)
    };
    eprintln!("vm-tests: kvm probe: {verdict}");
    if let Some(dir) = cached.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(&cached, format!("{verdict}\n"));
    Ok(if ok { Accel::Kvm } else { Accel::Tcg })
}

fn run(cli: Cli) -> Result<i32> {
    let kernels = KernelsFile::load(&cli.kernels_file)?;
    if cli.list {
        for (name, k) in &kernels.kernel {
            println!("{name}\t{}={}\t{}", k.package, k.version, k.suite);
        }
        return Ok(0);
    }
    let spec = kernels.get(&cli.kernel)?;
    if cli.available {
        let apt = fetch::PrivateApt::new(&cli.cache);
        let mirrors = fetch::system_mirrors(&kernels.mirrors);
        apt.configure(&fetch::sources_list(&kernels, &mirrors))?;
        apt.update()?;
        println!("{}", apt.similar(spec)?);
        return Ok(0);
    }
    if cli.command.is_empty() && !cli.fetch_only {
        bail!("no guest command: usage: vm-tests --kernel 6.1 -- <command> [args...]");
    }
    qemu::check_installed()?;
    let tree = fetch::ensure_kernel(&cli.cache, &kernels, spec)?;
    let cwd = match &cli.cwd {
        Some(d) => d.clone(),
        None => std::env::current_dir().context("reading the current directory")?,
    };
    if !cwd.is_absolute() {
        bail!("--cwd {}: must be an absolute path", cwd.display());
    }
    let argv = if cli.command.is_empty() { vec!["true".to_string()] } else { cli.command.clone() };
    let mut env = guest_env(&cli.env)?;
    let mut append = cli.append.clone();
    let disk = if cli.systemd {
        let mirror = fetch::system_mirrors(&kernels.mirrors).debian;
        let image = rootfs::ensure_rootfs(&cli.cache, &RootfsSpec::default(), &mirror)?;
        eprintln!("vm-tests: systemd root file system {}", image.image.display());
        env.push(("VM_TESTS_HOST_ROOT".into(), HOST_MOUNT.into()));
        if cli.cgroup == CgroupChoice::Hybrid {
            append.push("systemd.unified_cgroup_hierarchy=0".into());
        }
        Some(image.image)
    } else {
        None
    };
    let cmd = GuestCommand {
        cwd,
        env,
        argv,
        cgroup: match cli.cgroup {
            CgroupChoice::Unified => CgroupLayout::Unified,
            CgroupChoice::Hybrid => CgroupLayout::Hybrid,
        },
    };
    let run = RunDir::new(&cli.cache)?;
    let initrd = run.0.join("initrd.img");
    let mods = if cli.systemd {
        initramfs::build_systemd(&tree.modules, &cli.modules, &cmd, &initrd)?
    } else {
        initramfs::build(&tree.modules, &cli.modules, &cmd, &initrd)?
    };
    if cli.fetch_only {
        eprintln!("vm-tests: kernel {} ({}): {}", cli.kernel, tree.release, tree.vmlinuz.display());
        eprintln!("vm-tests: initramfs modules: {}", mods.join(" "));
        return Ok(0);
    }
    let accel = choose_accel(&cli, &tree, &run)?;
    eprintln!(
        "vm-tests: booting {} ({}) with {} ({} MiB, {} CPUs){}",
        cli.kernel,
        tree.release,
        accel.name(),
        cli.memory,
        cli.cpus,
        if cli.systemd { ", systemd as PID 1" } else { "" }
    );
    let boot = Boot {
        vmlinuz: tree.vmlinuz.clone(),
        initrd,
        accel,
        memory_mb: cli.memory,
        cpus: cli.cpus,
        timeout: Duration::from_secs(cli.timeout),
        echo: !cli.quiet,
        extra_append: append,
        disk,
    };
    let outcome = qemu::boot(&boot)?;
    let (code, what) = match &outcome.ending {
        Ending::Exited(c) => (*c, format!("exit={c}")),
        Ending::TimedOut => (EXIT_TIMEOUT, format!("timeout after {} s", cli.timeout)),
        Ending::InitFailed(m) => (EXIT_NO_RESULT, format!("guest init failed: {m}")),
        Ending::NoExitCode => (EXIT_NO_RESULT, "no exit code from the guest (crash or power-off)".into()),
    };
    if !matches!(outcome.ending, Ending::Exited(_)) {
        eprintln!("vm-tests: {what}; last {} console lines:", outcome.tail.len());
        for l in &outcome.tail {
            eprintln!("  | {l}");
        }
    }
    eprintln!(
        "vm-tests: summary kernel={}{} release={} accel={} boot_s={} command_s={} total_s={:.1} result={}",
        cli.kernel,
        if cli.systemd { " init=systemd" } else { "" },
        tree.release,
        accel.name(),
        secs(outcome.boot_to_command),
        secs(outcome.command),
        outcome.total.as_secs_f64(),
        match outcome.ending {
            Ending::Exited(c) => c.to_string(),
            Ending::TimedOut => "timeout".into(),
            Ending::InitFailed(_) => "init-failed".into(),
            Ending::NoExitCode => "no-exit-code".into(),
        }
    );
    Ok(code)
}
