//! kretprobes with room for many concurrent calls. libbpf's perf-based kretprobes keep the
//! kernel's default of max(10, 2 x CPUs) instances, so when more threads than that sit in a
//! hooked syscall (a thread pool blocked in read) their returns are missed without a trace.
//! A kretprobe event created through tracefs can ask for more (`r<maxactive>:`).
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use libbpf_rs::{Link, ProgramMut};

/// Instances per kretprobe: concurrent calls that can be followed to their return.
const MAX_ACTIVE: u32 = 1024;
const PERF_TYPE_TRACEPOINT: u32 = 2;

/// A kretprobe event in tracefs, removed when dropped (after its link).
pub struct KretprobeEvent {
    name: String,
    kprobe_events: PathBuf,
}

impl Drop for KretprobeEvent {
    fn drop(&mut self) {
        let _ = append(&self.kprobe_events, &format!("-:kprobes/{}\n", self.name));
    }
}

fn append(path: &Path, line: &str) -> std::io::Result<()> {
    OpenOptions::new().append(true).open(path)?.write_all(line.as_bytes())
}

/// Attaches `prog` as a kretprobe on `func` with [`MAX_ACTIVE`] instances.
pub fn attach(prog: &ProgramMut<'_>, func: &str, tracefs: &Path) -> std::io::Result<(Link, KretprobeEvent)> {
    let name = format!("beyla_{}_{}", std::process::id(), func.trim_start_matches('_'));
    let kprobe_events = tracefs.join("kprobe_events");
    append(&kprobe_events, &format!("r{MAX_ACTIVE}:kprobes/{name} {func}\n"))?;
    let event = KretprobeEvent { name: name.clone(), kprobe_events };
    let id: u64 = std::fs::read_to_string(tracefs.join("events/kprobes").join(&name).join("id"))?
        .trim()
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("kprobe event id: {e}")))?;

    let mut attr = libbpf_sys::perf_event_attr {
        type_: PERF_TYPE_TRACEPOINT,
        size: std::mem::size_of::<libbpf_sys::perf_event_attr>() as u32,
        config: id,
        ..Default::default()
    };
    attr.__bindgen_anon_1.sample_period = 1;
    attr.__bindgen_anon_2.wakeup_events = 1;
    // SAFETY: perf_event_open with a valid, fully initialised attribute struct; the kernel
    // does not keep the pointer.
    let pfd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const libbpf_sys::perf_event_attr,
            -1i32,
            0i32,
            -1i32,
            libbpf_sys::PERF_FLAG_FD_CLOEXEC as libc::c_ulong,
        )
    };
    if pfd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The link owns the perf fd from here on and closes it when dropped.
    let link = prog.attach_perf_event(pfd as i32).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok((link, event))
}
