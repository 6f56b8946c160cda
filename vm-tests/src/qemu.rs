//! Booting QEMU, streaming the serial console and reading the guest's markers.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The binary and the Debian package that has it.
pub const QEMU: &str = "qemu-system-x86_64";
pub const QEMU_PACKAGE: &str = "qemu-system-x86";

/// Console lines kept for failure reports.
pub const TAIL_LINES: usize = 100;

/// Printed by stage 2 just before the command starts.
pub const START_MARKER: &str = "VM-TESTS-COMMAND-START";
/// Printed by stage 2 with the command's exit code.
pub const EXIT_MARKER: &str = "VM-TESTS-EXIT-CODE=";
/// Printed by either init stage when setting up the guest fails.
pub const INIT_FAILED_MARKER: &str = "VM-TESTS-INIT-FAILED:";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// One boot.
#[derive(Debug, Clone)]
pub struct Boot {
    pub vmlinuz: PathBuf,
    pub initrd: PathBuf,
    pub accel: Accel,
    pub memory_mb: u32,
    pub cpus: u32,
    pub timeout: Duration,
    /// Print console lines as `[guest] ...` while they arrive.
    pub echo: bool,
    /// Extra kernel command line words.
    pub extra_append: Vec<String>,
    /// A raw disk image attached as virtio `/dev/vda` with `snapshot=on` (the file is never
    /// written; the guest's writes go to a temporary file QEMU drops at exit).
    pub disk: Option<PathBuf>,
}

/// How a boot ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The guest reported the command's exit code.
    Exited(i32),
    /// The timeout passed; QEMU was killed.
    TimedOut,
    /// An init stage failed, with its message.
    InitFailed(String),
    /// QEMU ended without an exit code (guest crash, panic, QEMU error).
    NoExitCode,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub ending: Ending,
    /// From QEMU start to the command start marker.
    pub boot_to_command: Option<Duration>,
    /// From the command start to its exit code.
    pub command: Option<Duration>,
    pub total: Duration,
    /// The last console lines (guest console and QEMU's stderr).
    pub tail: Vec<String>,
}

/// What a console line tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    Start,
    Exit(i32),
    InitFailed(String),
}

/// Recognises marker lines. A marker may follow other bytes on its line (the firmware's
/// terminal escapes share the first line with the guest's first output).
pub fn parse_marker(line: &str) -> Option<Marker> {
    if let Some(i) = line.rfind(EXIT_MARKER) {
        let rest = line[i + EXIT_MARKER.len()..].trim();
        return rest.parse().ok().map(Marker::Exit);
    }
    if line.contains(START_MARKER) {
        return Some(Marker::Start);
    }
    line.find(INIT_FAILED_MARKER).map(|i| Marker::InitFailed(line[i + INIT_FAILED_MARKER.len()..].trim().to_string()))
}

/// Checks that QEMU is installed.
pub fn check_installed() -> Result<()> {
    match Command::new(QEMU).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => Ok(()),
        _ => bail!("{QEMU} not found or not working: apt-get install {QEMU_PACKAGE}"),
    }
}

fn qemu_args(b: &Boot) -> Vec<String> {
    let (accel, cpu) = match b.accel {
        Accel::Kvm => ("kvm", "host"),
        // Single-threaded TCG: multi-threaded TCG oopsed ~2% of 6.12 boots (text patching).
        Accel::Tcg => ("tcg,thread=single", "max"),
    };
    let mut append = vec!["console=ttyS0", "panic=-1", "oops=panic", "quiet", "rdinit=/init"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    append.extend(b.extra_append.iter().cloned());
    let mut args: Vec<String> = ["-accel", accel, "-cpu", cpu, "-nographic", "-no-reboot", "-nic", "none"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend([
        "-m".into(),
        b.memory_mb.to_string(),
        "-smp".into(),
        b.cpus.to_string(),
        "-kernel".into(),
        b.vmlinuz.display().to_string(),
        "-initrd".into(),
        b.initrd.display().to_string(),
        "-append".into(),
        append.join(" "),
        "-fsdev".into(),
        "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap".into(),
        "-device".into(),
        "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot".into(),
    ]);
    if let Some(disk) = &b.disk {
        args.extend([
            "-drive".into(),
            format!("file={},format=raw,if=virtio,snapshot=on,cache=unsafe", disk.display()),
        ]);
    }
    args
}

enum Event {
    Line(String),
    Eof,
}

fn reader<R: Read + Send + 'static>(r: R, prefix: &'static str, echo: bool, tx: mpsc::Sender<(Instant, Event)>) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).replace('\r', "");
                    if echo {
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "{prefix}{line}");
                        let _ = out.flush();
                    }
                    if tx.send((Instant::now(), Event::Line(line))).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = tx.send((Instant::now(), Event::Eof));
    });
}

/// Boots once and waits for the exit marker, the timeout or QEMU's end.
pub fn boot(b: &Boot) -> Result<Outcome> {
    let args = qemu_args(b);
    let t0 = Instant::now();
    let mut child = Command::new(QEMU)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {QEMU} (apt-get install {QEMU_PACKAGE})"))?;
    let (tx, rx) = mpsc::channel();
    reader(child.stdout.take().context("qemu stdout")?, "[guest] ", b.echo, tx.clone());
    reader(child.stderr.take().context("qemu stderr")?, "[qemu] ", b.echo, tx);

    let mut tail: VecDeque<String> = VecDeque::new();
    let mut started: Option<Instant> = None;
    let mut exit: Option<(Instant, i32)> = None;
    let mut init_failed: Option<String> = None;
    let mut eofs = 0;
    let deadline = t0 + b.timeout;
    let mut kill_at: Option<Instant> = None; // grace after the exit marker for poweroff
    let mut timed_out = false;
    let mut exited = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok((at, Event::Line(line))) => {
                match parse_marker(&line) {
                    Some(Marker::Start) => started = Some(at),
                    Some(Marker::Exit(code)) => {
                        exit = Some((at, code));
                        kill_at = Some(at + Duration::from_secs(20));
                    }
                    Some(Marker::InitFailed(m)) => {
                        init_failed = Some(m);
                        kill_at.get_or_insert(at + Duration::from_secs(20));
                    }
                    None => {}
                }
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
            Ok((_, Event::Eof)) => eofs += 1,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => eofs = 2,
        }
        if !exited && child.try_wait().context("waiting for qemu")?.is_some() {
            exited = true;
        }
        if exited && eofs >= 2 {
            break;
        }
        let now = Instant::now();
        if !exited && (now >= deadline || kill_at.is_some_and(|k| now >= k)) {
            timed_out = exit.is_none() && init_failed.is_none();
            let _ = child.kill();
            let _ = child.wait();
            exited = true;
        }
        // Readers end when QEMU's pipes close; don't wait forever on a stray holder.
        if exited && now >= deadline + Duration::from_secs(5) {
            break;
        }
    }
    let total = t0.elapsed();
    let ending = match (exit, init_failed) {
        (Some((_, code)), _) => Ending::Exited(code),
        (None, Some(m)) => Ending::InitFailed(m),
        (None, None) if timed_out => Ending::TimedOut,
        (None, None) => Ending::NoExitCode,
    };
    Ok(Outcome {
        ending,
        boot_to_command: started.map(|s| s - t0),
        command: match (started, exit) {
            (Some(s), Some((e, _))) => Some(e - s),
            _ => None,
        },
        total,
        tail: tail.into(),
    })
}

/// Where the result of a KVM probe for one guest kernel on this host is cached.
pub fn kvm_probe_cache(cache: &Path, guest_release: &str) -> PathBuf {
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    cache.join("kvm-probe").join(format!("host-{}__guest-{guest_release}", host.trim()))
}
