//! Shared helpers for the root end-to-end tests: real test apps, a real agent, real scrapes.
#![allow(dead_code)]

pub mod otlp;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "root_* tests load BPF programs and need root (run them with sudo, or as root in CI)"
    );
}

/// (major, minor) of the running kernel.
pub fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("kernel release");
    let mut n = release.trim().split(|c: char| !c.is_ascii_digit()).map(|x| x.parse::<u32>().unwrap_or(0));
    (n.next().unwrap_or(0), n.next().unwrap_or(0))
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A port nothing listens on, never one this test process handed out before: the kernel may
/// give the same ephemeral port to two `bind(:0)` calls once the first is closed, and two apps
/// of one test then fight over it (seen in root_demo: a worker's stats port was the backend's).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap();
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server's master process, stopped with SIGTERM when dropped (then killed after 10 s), so
/// that it stops its workers: SIGKILL leaves them running, still listening (nginx, php-fpm,
/// apache2).
pub struct Master(pub Child);

impl Drop for Master {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        if !wait_for(Duration::from_secs(10), || matches!(self.0.try_wait(), Ok(Some(_)))) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `testapps/build/run-<lang> <port>` and waits for its `listening on` line.
pub fn start_app(lang: &str, port: u16, env: &[(&str, &str)]) -> Proc {
    let launcher = repo().join("testapps/build").join(format!("run-{lang}"));
    assert!(launcher.exists(), "{} missing: run testapps/build.sh first", launcher.display());
    start_launcher(&launcher, lang, port, env)
}

/// Starts a test app launcher (`<launcher> <port>`) and waits for its `listening on` line.
/// The go-http launcher built with `go` ("go1.19": Debian's, by `testapps/build.sh`; "go1.23":
/// by `testapps/build-go.sh 1.23`); fails the test when it was not built.
pub fn go_launcher(go: &str) -> PathBuf {
    let launcher = match go {
        "go1.19" => repo().join("testapps/build/run-go"),
        other => repo().join(format!("testapps/build/{other}/run-go")),
    };
    assert!(launcher.exists(), "{} missing: run testapps/build.sh and testapps/build-go.sh 1.23", launcher.display());
    launcher
}

pub fn start_launcher(launcher: &Path, lang: &str, port: u16, env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(launcher);
    cmd.arg(port.to_string()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("starting {}: {e}", launcher.display()));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(l)) = lines.next() {
            let _ = tx.send(l);
        }
        for _ in lines {}
    });
    let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("{lang} app did not start"));
    assert_eq!(line, format!("listening on {port}"));
    Proc { child, name: lang.to_string() }
}

pub fn agent_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_beyla"))
}

/// Starts the agent with a YAML config and environment; its output goes to a log file.
pub fn start_agent(yaml: &str, env: &[(&str, &str)], tag: &str) -> (Proc, PathBuf) {
    start_agent_under(&[], yaml, env, tag)
}

/// [`start_agent`] run by `wrapper` (a command that execs the rest of its arguments, such as
/// `setpriv` with its options): the agent keeps the child's pid.
pub fn start_agent_under(wrapper: &[&str], yaml: &str, env: &[(&str, &str)], tag: &str) -> (Proc, PathBuf) {
    let dir = std::env::temp_dir().join(format!("beyla-test-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("config.yml");
    std::fs::write(&cfg, yaml).unwrap();
    let log = dir.join("agent.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(agent_bin());
            c
        }
        None => Command::new(agent_bin()),
    };
    cmd.arg("--config").arg(&cfg).stdout(out.try_clone().unwrap()).stderr(out);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Decode fixtures (agent/tests/decode_fixtures.rs): the socket events, one file per agent.
    if let Some(fixtures) = std::env::var_os("BEYLA_RECORD_FIXTURES") {
        cmd.env("BEYLA_DEBUG_RECORD_EVENTS", Path::new(&fixtures).join(format!("{tag}.events")));
    }
    let child = cmd.spawn().expect("starting the agent");
    (Proc { child, name: "beyla".into() }, log)
}

pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some(body)
}

/// One sample of a scrape: name, labels, value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

pub fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (head, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let (name, labels) = match head.split_once('{') {
            Some((n, rest)) => (n.to_string(), rest.trim_end_matches('}').to_string()),
            None => (head.to_string(), String::new()),
        };
        let mut map = BTreeMap::new();
        // Label values here never contain `",` sequences.
        for part in labels.split("\",").filter(|p| !p.is_empty()) {
            if let Some((k, v)) = part.split_once("=\"") {
                map.insert(k.to_string(), v.trim_end_matches('"').to_string());
            }
        }
        out.push(Sample { name, labels: map, value: value.parse().unwrap_or(f64::NAN) });
    }
    out
}

pub fn scrape(port: u16, path: &str) -> Vec<Sample> {
    http_get(port, path).map(|b| parse_metrics(&b)).unwrap_or_default()
}

/// Sum of the samples named `name` whose labels include all of `want`.
pub fn sum(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && want.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
        .sum()
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

pub fn agent_log(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Waits until the agent reports `n` instrumented processes on its internal metrics.
pub fn wait_instrumented(metrics_port: u16, n: f64, log: &Path) {
    let ok = wait_for(Duration::from_secs(60), || {
        sum(&scrape(metrics_port, "/internal/metrics"), "beyla_instrumented_processes", &[]) >= n
    });
    assert!(ok, "agent did not instrument {n} process(es); log:\n{}", agent_log(log));
}

/// Waits until the agent's log says that `pid` itself is instrumented (its last
/// "Process instrumented." line comes after any "gone" one): `wait_instrumented` counts
/// processes, and cannot tell the one a test is about to drive from another that matched.
pub fn wait_pid_instrumented(pid: u32, log: &Path) {
    let on = format!("Process instrumented. pid={pid} ");
    let gone = format!("Instrumented process gone. pid={pid}");
    let ok = wait_for(Duration::from_secs(60), || {
        let text = agent_log(log);
        let last = |f: &dyn Fn(&str) -> bool| text.lines().enumerate().filter(|(_, l)| f(l)).map(|(i, _)| i).last();
        let last_on = last(&|l| l.contains(&on));
        let last_gone = last(&|l| l.trim_end().ends_with(&gone));
        last_on.is_some() && last_on > last_gone
    });
    assert!(ok, "agent did not instrument pid {pid}; log:\n{}", agent_log(log));
}

/// Waits until the Go probes are attached to `n` processes (after `wait_instrumented`: they
/// attach once the executable is inspected).
pub fn wait_go_instrumented(metrics_port: u16, n: f64, log: &Path) {
    let ok = wait_for(Duration::from_secs(120), || {
        sum(&scrape(metrics_port, "/internal/metrics"), "beyla_instrumented_go_processes", &[]) >= n
    });
    assert!(ok, "agent did not attach the Go probes to {n} process(es); log:\n{}", agent_log(log));
}

/// Sends raw bytes on a fresh connection, in the given pieces, ends the sending side, and
/// reads the whole reply.
pub fn send_raw(port: u16, pieces: &[&[u8]], pause: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for p in pieces {
        s.write_all(p).unwrap();
        s.flush().unwrap();
        std::thread::sleep(pause);
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    buf
}

/// Reads one HTTP/1.1 response with a Content-Length body from a keep-alive stream.
pub fn read_response(s: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("reading response head");
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let status: u16 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let len: usize = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (status, body)
}

/// Starts a demo binary (`testapps/demo`) from `dir` and waits until it listens on `port`.
pub fn spawn_demo(dir: &Path, name: &str, args: &[String], port: u16) -> Proc {
    let child = Command::new(dir.join(name))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {name}: {e}"));
    let up = wait_for(Duration::from_secs(30), || TcpStream::connect(("127.0.0.1", port)).is_ok());
    assert!(up, "{name} did not listen on {port}");
    Proc { child, name: name.into() }
}

/// A demo app's counters (`GET /stats`).
pub fn demo_stats(port: u16) -> serde_json::Value {
    serde_json::from_str(&http_get(port, "/stats").expect("stats")).expect("stats JSON")
}

/// `counters.<group>` of [`demo_stats`] as a map of counts.
pub fn demo_group(v: &serde_json::Value, name: &str) -> std::collections::HashMap<String, u64> {
    v["counters"][name]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0))).collect())
        .unwrap_or_default()
}

/// The kernel's lockdown mode from the agent's start-up summary, and whether BPF programs may
/// write user memory under it (context propagation).
pub fn lockdown_of(log: &Path) -> (String, bool) {
    let text = agent_log(log);
    let lockdown = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("lockdown="))
        .unwrap_or_else(|| panic!("no kernel summary in the agent log:\n{text}"))
        .to_string();
    let can_write = !matches!(lockdown.as_str(), "integrity" | "confidentiality");
    (lockdown, can_write)
}

/// The agent's metrics, internal metrics and log, for a failed assertion.
pub fn agent_dump(mport: u16, log: &Path) -> String {
    // Histogram buckets left out: the counts and sums say what was exported, and a CI report
    // that keeps only the head and the tail of a failure then still shows the agent's log.
    let metrics: String = http_get(mport, "/metrics")
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.contains("_bucket{"))
        .map(|l| format!("{l}\n"))
        .collect();
    format!(
        "{}\n{}\n--- agent log:\n{}",
        metrics,
        http_get(mport, "/internal/metrics").unwrap_or_default(),
        agent_log(log)
    )
}

/// Uploads `n` files of 1 MiB to `url` with curl, each waiting for `100 Continue`; the server
/// answers with the size it read.
pub fn curl_uploads_1mib(url: &str, n: usize) {
    let file = std::env::temp_dir().join(format!("beyla-upload-{}", std::process::id()));
    std::fs::write(&file, vec![b'u'; 1 << 20]).unwrap();
    for _ in 0..n {
        let out = Command::new("curl")
            .args(["-s", "-H", "Expect: 100-continue", "-T"])
            .arg(&file)
            .arg(url)
            .output()
            .expect("running curl");
        assert_eq!(String::from_utf8_lossy(&out.stdout), (1 << 20).to_string());
    }
    let _ = std::fs::remove_file(&file);
}

/// The Python interpreter's real executable (`python3` on `PATH` may be a launcher, such as a
/// pyenv shim, that runs as bash with the script's arguments before it execs Python).
pub fn python3() -> String {
    static PY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PY.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("running python3 (scripts/setup.sh installs it)");
        assert!(out.status.success(), "python3 -c 'import sys; ...' failed");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
    .clone()
}

/// Python with the PyPI packages `pkgs` (pinned) on `PYTHONPATH`, installed on first use under
/// `.cache/<cache>` by `scripts/py-install.sh`: (interpreter, PYTHONPATH).
pub fn python_with(cache: &str, pkgs: &[&str]) -> (String, PathBuf) {
    let dir = repo().join(".cache").join(cache);
    let out = Command::new("bash")
        .arg(repo().join("scripts/py-install.sh"))
        .arg(&dir)
        .args(pkgs)
        .stderr(Stdio::inherit())
        .output()
        .expect("running scripts/py-install.sh");
    assert!(out.status.success(), "scripts/py-install.sh failed for {pkgs:?}");
    (String::from_utf8_lossy(&out.stdout).trim().to_string(), dir)
}

/// Reads a chunked body to its end (the last chunk and its CRLF; no trailers) and returns its
/// size on the wire, framing included: what the agent reports, as it cannot de-chunk what it
/// did not copy.
pub fn read_chunked_wire(r: &mut impl BufRead) -> u64 {
    let mut wire = 0u64;
    loop {
        let mut size_line = String::new();
        wire += r.read_line(&mut size_line).unwrap() as u64;
        let n = u64::from_str_radix(size_line.trim(), 16).unwrap_or_else(|_| panic!("chunk size {size_line:?}"));
        let mut chunk = vec![0u8; n as usize + 2];
        r.read_exact(&mut chunk).unwrap();
        wire += chunk.len() as u64;
        if n == 0 {
            return wire;
        }
    }
}
