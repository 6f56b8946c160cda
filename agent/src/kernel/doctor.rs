//! The `beyla doctor` printer and the start-up summary line: what the kernel probe found
//! ([`Features`]) and what the agent will use ([`HookPlan`]), as aligned tables.

use std::fmt;
use std::path::PathBuf;

use super::features::Features;
use super::plan::{choose, HookFamily, HookMode, HookPlan};
use super::KernelError;

/// The `beyla doctor` report: the feature table, then the hook plan (or why there is none).
pub fn doctor_report(f: &Features, plan: &Result<HookPlan, KernelError>) -> String {
    let mut out = f.to_string();
    out.push('\n');
    match plan {
        Ok(p) => out.push_str(&p.to_string()),
        Err(e) => {
            out.push_str("PLAN  none\n");
            out.push_str(&format!("error: {e}\n"));
        }
    }
    out.push_str(&format!("\nsummary: {}\n", f.summary_line()));
    out
}

fn yn(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

impl Features {
    /// One line for the start-up log, with the hook family `auto` picks.
    pub fn summary_line(&self) -> String {
        let hook = match choose(self, HookMode::Auto) {
            Ok(p) => p.family.to_string(),
            Err(_) => "none".to_string(),
        };
        format!(
            "kernel={} btf={} kprobes={} kprobe_multi={} fentry={} tp_btf={} sock_tracepoints={} raw_tp={} tracepoints={} \
             ringbuf={} tcx={} clsact={} sockops={} sk_msg={} tcp_hdr_opt={} uprobes={} uprobe_multi={} task_btf={} task_storage={} lockdown={} hook={}",
            self.kernel_release,
            yn(self.btf),
            yn(self.kprobes),
            yn(self.kprobe_multi),
            yn(self.fentry),
            yn(self.tp_btf),
            yn(self.sock_tracepoints),
            yn(self.raw_tp),
            yn(self.tracepoints && self.syscall_tracepoints),
            yn(self.ringbuf),
            yn(self.tcx),
            yn(self.clsact),
            yn(self.cgroup_sockops),
            yn(self.sk_msg && self.sk_msg_pid),
            yn(self.tcp_hdr_opt),
            yn(self.uprobes),
            yn(self.uprobe_multi),
            yn(self.get_current_task_btf),
            yn(self.task_storage),
            self.lockdown.as_deref().unwrap_or("unknown"),
            hook,
        )
    }

    /// (feature, value, note) rows of the doctor table.
    pub(crate) fn rows(&self) -> Vec<(String, String, String)> {
        let mut rows = Vec::new();
        let mut flag = |name: &'static str, v: bool| {
            rows.push((name.to_string(), yn(v).to_string(), self.note(name).to_string()));
        };
        flag("btf", self.btf);
        flag("kprobes", self.kprobes);
        flag("kprobe_multi", self.kprobe_multi);
        flag("fentry", self.fentry);
        flag("tp_btf", self.tp_btf);
        flag("sock_tracepoints", self.sock_tracepoints);
        flag("raw_tp", self.raw_tp);
        flag("tracepoints", self.tracepoints);
        flag("syscall_tracepoints", self.syscall_tracepoints);
        flag("ringbuf", self.ringbuf);
        flag("tcx", self.tcx);
        flag("clsact", self.clsact);
        flag("cgroup_sockops", self.cgroup_sockops);
        flag("sk_msg", self.sk_msg);
        flag("sk_msg_pid", self.sk_msg_pid);
        flag("sockmap_fionread", self.sockmap_fionread);
        flag("sockmap_fionread_verdict", self.sockmap_fionread_verdict);
        flag("tcp_hdr_opt", self.tcp_hdr_opt);
        flag("uprobes", self.uprobes);
        flag("uprobe_multi", self.uprobe_multi);
        flag("get_current_task_btf", self.get_current_task_btf);
        flag("task_storage", self.task_storage);
        flag("probe_write_user", self.probe_write_user);
        let users = match &self.sock_users {
            None => "unknown".to_string(),
            Some(u) if u.is_empty() => "none".to_string(),
            Some(u) => u.len().to_string(),
        };
        rows.push(("sock_users".into(), users, self.note("sock_users").to_string()));
        let path = |p: &Option<PathBuf>, missing: &str| match p {
            Some(p) => (p.display().to_string(), String::new()),
            None => ("-".to_string(), missing.to_string()),
        };
        rows.push((
            "lockdown".into(),
            self.lockdown.clone().unwrap_or_else(|| "unknown".into()),
            self.note("lockdown").to_string(),
        ));
        let (v, n) = path(&self.bpffs, "not mounted (ensure_mounts mounts it at /sys/fs/bpf)");
        rows.push(("bpffs".into(), v, n));
        let (v, n) = path(&self.tracefs, "not mounted (ensure_mounts mounts it at /sys/kernel/tracing)");
        rows.push(("tracefs".into(), v, n));
        let (v, _) = path(&self.cgroup2, "");
        rows.push(("cgroup2".into(), v, format!("cgroups {}", self.cgroup_layout)));
        let missing = self.missing_caps();
        let caps = match (self.cap_eff, missing.is_empty()) {
            (None, _) => ("unknown".to_string(), String::new()),
            (Some(eff), true) => ("all".to_string(), format!("CapEff={eff:016x}")),
            (Some(eff), false) => ("missing".to_string(), format!("{} (CapEff={eff:016x})", missing.join(" "))),
        };
        rows.push(("capabilities".into(), caps.0, format!("euid={} {}", self.euid, caps.1)));
        rows.push((
            "perf_event_paranoid".into(),
            self.perf_event_paranoid.map_or("unknown".into(), |p| p.to_string()),
            String::new(),
        ));
        rows
    }
}

/// Formats rows as an aligned table with a header.
pub(crate) fn table(header: (&str, &str, &str), rows: &[(String, String, String)]) -> String {
    let w0 = rows.iter().map(|r| r.0.len()).chain([header.0.len()]).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.len()).chain([header.1.len()]).max().unwrap_or(0);
    let mut out = String::new();
    let lines = std::iter::once((header.0, header.1, header.2))
        .chain(rows.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())));
    for (a, b, c) in lines {
        let line = format!("{a:<w0$}  {b:<w1$}  {c}");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The doctor's feature table.
impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "kernel {} (probed in {} ms)", self.kernel_release, self.probe_duration.as_millis())?;
        writeln!(f)?;
        f.write_str(&table(("FEATURE", "RESULT", "NOTE"), &self.rows()))
    }
}

impl HookPlan {
    pub(crate) fn rows(&self) -> Vec<(String, String, String)> {
        let yn = |b: bool| if b { "yes" } else { "no" }.to_string();
        let best_note = if self.best_available == self.family { "" } else { "not selected (ebpf.hook_mode)" };
        vec![
            ("hook_mode".into(), self.mode.to_string(), "ebpf.hook_mode".into()),
            ("family".into(), self.family.to_string(), String::new()),
            ("best_available".into(), self.best_available.to_string(), best_note.into()),
            (
                "fallbacks".into(),
                if self.fallbacks.is_empty() {
                    "-".to_string()
                } else {
                    self.fallbacks.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(",")
                },
                "tried in turn if a verifier rejects the family".into(),
            ),
            ("use_tcx".into(), yn(self.use_tcx), if self.use_tcx { "tcx links" } else { "clsact qdisc" }.into()),
            ("use_task_btf".into(), yn(self.use_task_btf), String::new()),
            (
                "use_task_storage".into(),
                yn(self.use_task_storage),
                match (self.family, self.use_task_storage) {
                    (HookFamily::Socket, _) => "socket family: no syscall arguments kept",
                    (_, true) => "syscall arguments in task storage",
                    (_, false) => "syscall arguments in an LRU hash",
                }
                .into(),
            ),
            ("use_tp_btf".into(), yn(self.use_tp_btf), String::new()),
            ("use_uprobe_multi".into(), yn(self.use_uprobe_multi), String::new()),
            ("use_kprobe_multi".into(), yn(self.use_kprobe_multi), String::new()),
        ]
    }
}

impl fmt::Display for HookPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&table(("PLAN", "VALUE", "NOTE"), &self.rows()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doctor_report_has_table_and_plan() {
        let mut f = Features {
            kernel_release: "6.18.44".into(),
            btf: true,
            ringbuf: true,
            tracepoints: true,
            syscall_tracepoints: true,
            raw_tp: true,
            tracefs: Some("/sys/kernel/tracing".into()),
            ..Default::default()
        };
        f.notes.insert("kprobes", "no kprobe PMU".into());
        let report = doctor_report(&f, &choose(&f, HookMode::Auto));
        assert!(report.contains("FEATURE"), "{report}");
        let words = |key: &str| {
            let line = report.lines().find(|l| l.starts_with(&format!("{key} "))).unwrap_or_default();
            line.split_whitespace().map(str::to_string).collect::<Vec<_>>()
        };
        assert_eq!(words("kprobes"), ["kprobes", "no", "no", "kprobe", "PMU"], "{report}");
        assert_eq!(words("family"), ["family", "tracepoints"], "{report}");
        assert_eq!(words("fallbacks")[..2], ["fallbacks", "-"], "{report}");
        f.kprobes = true;
        let report = doctor_report(&f, &choose(&f, HookMode::Auto));
        let words = |key: &str| {
            let line = report.lines().find(|l| l.starts_with(&format!("{key} "))).unwrap_or_default();
            line.split_whitespace().map(str::to_string).collect::<Vec<_>>()
        };
        assert_eq!(words("fallbacks")[..2], ["fallbacks", "tracepoints"], "{report}");
        f.kprobes = false;
        // Columns are aligned: every feature row has its value at the same offset.
        let col = |l: &str| l.find("  ").map(|i| i + l[i..].find(|c: char| c != ' ').unwrap_or(0));
        let offsets: Vec<_> = report.lines().skip(2).take_while(|l| !l.is_empty()).map(col).collect();
        assert!(offsets.windows(2).all(|w| w[0] == w[1]), "{report}");
        let err = choose(&f, HookMode::Kprobes);
        let report = doctor_report(&f, &err);
        assert!(report.contains("error: ebpf.hook_mode: kprobes requested"), "{report}");
        assert!(f.summary_line().starts_with("kernel=6.18.44 btf=yes kprobes=no"), "{}", f.summary_line());
        assert!(f.summary_line().ends_with("hook=tracepoints"), "{}", f.summary_line());
    }
}
