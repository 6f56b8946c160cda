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

/// Removes the kretprobe events an agent killed without cleaning up (SIGKILL, OOM) left in
/// tracefs: `beyla_<pid>_*` of a pid that no longer runs. They are inert (no program sits on
/// them) but would pile up over restarts. An event another agent still uses (in another pid
/// namespace, where its pid is not seen) cannot be removed: the kernel refuses, harmlessly.
/// Returns how many were removed.
pub fn remove_stale(tracefs: &Path, proc_root: &Path) -> usize {
    let kprobe_events = tracefs.join("kprobe_events");
    let Ok(text) = std::fs::read_to_string(&kprobe_events) else { return 0 };
    let mut removed = 0;
    for name in stale_events(&text, std::process::id(), |pid| proc_root.join(pid.to_string()).exists()) {
        if append(&kprobe_events, &format!("-:kprobes/{name}\n")).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The names of `kprobe_events` lines (`r1024:kprobes/beyla_42_x64_sys_read __x64_sys_read`) made by
/// an agent other than `own_pid` whose pid is not `alive`.
fn stale_events(text: &str, own_pid: u32, alive: impl Fn(u32) -> bool) -> Vec<&str> {
    text.lines()
        .filter_map(|line| line.split_whitespace().next()?.split_once(':')?.1.strip_prefix("kprobes/"))
        .filter(|name| {
            let pid = name.strip_prefix("beyla_").and_then(|r| r.split_once('_')).and_then(|(p, _)| p.parse().ok());
            pid.is_some_and(|pid: u32| pid != own_pid && !alive(pid))
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_events_are_other_dead_agents_only() {
        let text = "r1024:kprobes/beyla_42_x64_sys_read __x64_sys_read\n\
                    r1024:kprobes/beyla_7_x64_sys_recvfrom __x64_sys_recvfrom\n\
                    r1024:kprobes/beyla_9_x64_sys_read __x64_sys_read\n\
                    p:kprobes/myprobe do_sys_open\n\
                    r:kprobes/beyla_x_y f\n";
        // 42 is dead, 7 is this agent, 9 is alive.
        let stale = stale_events(text, 7, |pid| pid == 9);
        assert_eq!(stale, ["beyla_42_x64_sys_read"]);
        assert!(stale_events("", 7, |_| false).is_empty());
    }
}
