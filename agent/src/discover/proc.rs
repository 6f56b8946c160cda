//! Process table reader.
//!
//! Everything is read relative to an injectable proc root (normally `/proc`) so tests can
//! build a fake tree in a temporary directory. The text parsers are separate pure functions.
//!
//! `/proc/net/tcp{,6}` is per network namespace, so listening sockets are read through
//! `/proc/<pid>/net/tcp{,6}` and cached per netns inode within one scan ([`ListenCache`]);
//! in the agent's own namespace they come from sock_diag instead ([`super::sockdiag`]).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::kube::{ContainerRef, K8sMeta};

use super::DiscoverError;

/// OpenTelemetry settings found in a process's environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OtelEnv {
    /// `OTEL_SERVICE_NAME`, else `service.name` from `OTEL_RESOURCE_ATTRIBUTES`.
    pub service_name: Option<String>,
    /// `service.namespace` from `OTEL_RESOURCE_ATTRIBUTES`.
    pub service_namespace: Option<String>,
    /// All pairs of `OTEL_RESOURCE_ATTRIBUTES`, percent-decoded, in order.
    pub resource_attributes: Vec<(String, String)>,
    /// Heuristic: the environment loads an OpenTelemetry SDK or agent.
    pub sdk_instrumented: bool,
}

/// One process as seen in the proc filesystem.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    /// Target of `/proc/<pid>/exe`, without the ` (deleted)` suffix.
    pub exe: PathBuf,
    pub comm: String,
    pub cmdline: Vec<String>,
    /// Clock ticks since boot (field 22 of `/proc/<pid>/stat`).
    pub start_time: u64,
    /// Ports of TCP sockets in LISTEN state held by this process, sorted, deduplicated.
    /// Only read when some criteria uses `open_ports`; empty otherwise.
    pub listen_ports: Vec<u16>,
    pub env: OtelEnv,
    /// The container the process runs in (from `/proc/<pid>/cgroup`); only read when
    /// Kubernetes metadata is enabled.
    pub container: Option<ContainerRef>,
    /// The Kubernetes metadata of that container, as known at the last scan.
    pub k8s: Option<Arc<K8sMeta>>,
    /// The runtime, detected once when the process is first read (see
    /// [`detect`](super::selector::detect_language)): from the executable's name, else `go`
    /// from its ELF sections.
    pub language: Option<&'static str>,
}

/// The language of process `pid` whose executable is `exe`: by name, else Go by its
/// `.go.buildinfo` section (read through `/proc/<pid>/exe`, so in the process's own mount
/// namespace).
pub fn read_language(root: &Path, pid: u32, exe: &Path) -> Option<&'static str> {
    let name = exe.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    super::selector::language_of(name).or_else(|| super::golang::is_go(&pid_path(root, pid, "exe")).then_some("go"))
}

/// The fields of `/proc/<pid>/stat` discovery needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    pub comm: String,
    pub ppid: u32,
    pub start_time: u64,
}

/// Parses `/proc/<pid>/stat`. `comm` may contain spaces and parentheses, so it spans from
/// the first `(` to the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = text[..open].trim().parse().ok()?;
    let comm = text[open + 1..close].to_string();
    // After ")": field 3 (state) is index 0, so field N is index N - 3.
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let ppid = rest.get(1)?.parse().ok()?;
    let start_time = rest.get(19)?.parse().ok()?;
    Some(Stat { pid, comm, ppid, start_time })
}

/// Splits `/proc/<pid>/cmdline` on NUL. A process that rewrote its title into a single
/// space-separated string (e.g. `gunicorn: master [app:app]`) keeps it as one element.
pub fn parse_cmdline(raw: &[u8]) -> Vec<String> {
    let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
    if raw.is_empty() {
        return Vec::new();
    }
    raw.split(|b| *b == 0).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
}

/// Extracts the OpenTelemetry settings from `/proc/<pid>/environ` (NUL-separated `K=V`).
pub fn parse_environ(raw: &[u8]) -> OtelEnv {
    let mut env = OtelEnv::default();
    let mut otel_service_name = None;
    for entry in raw.split(|b| *b == 0) {
        let entry = String::from_utf8_lossy(entry);
        let Some((key, value)) = entry.split_once('=') else {
            continue;
        };
        match key {
            "OTEL_SERVICE_NAME" if !value.trim().is_empty() => {
                otel_service_name = Some(value.trim().to_string());
            }
            "OTEL_RESOURCE_ATTRIBUTES" => env.resource_attributes = parse_resource_attributes(value),
            _ => {}
        }
        if sdk_marker(key, value) {
            env.sdk_instrumented = true;
        }
    }
    let attr =
        |name: &str| env.resource_attributes.iter().find(|(k, v)| k == name && !v.is_empty()).map(|(_, v)| v.clone());
    env.service_name = otel_service_name.or_else(|| attr("service.name"));
    env.service_namespace = attr("service.namespace");
    env
}

/// Environment variables that show an OpenTelemetry SDK or agent is loaded.
fn sdk_marker(key: &str, value: &str) -> bool {
    match key {
        "JAVA_TOOL_OPTIONS" | "JDK_JAVA_OPTIONS" | "_JAVA_OPTIONS" => value.contains("opentelemetry-javaagent"),
        "NODE_OPTIONS" => value.contains("@opentelemetry/"),
        "PYTHONPATH" => value.contains("opentelemetry"),
        "CORECLR_PROFILER" => value.eq_ignore_ascii_case("{918728DD-259F-4A6A-AC2B-B85E1B658318}"),
        "OTEL_DOTNET_AUTO_HOME" => !value.is_empty(),
        _ => false,
    }
}

/// Parses `OTEL_RESOURCE_ATTRIBUTES`: comma-separated `key=value`, values percent-encoded.
pub fn parse_resource_attributes(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let k = k.trim();
            (!k.is_empty()).then(|| (k.to_string(), percent_decode(v.trim())))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/net/tcp` or `tcp6` and returns `(inode, port)` of sockets in LISTEN (`0A`).
pub fn parse_net_tcp_listen(text: &str) -> Vec<(u64, u16)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.get(3) != Some(&"0A") {
                return None;
            }
            let (_, port) = f.get(1)?.rsplit_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let inode: u64 = f.get(9)?.parse().ok()?;
            (inode != 0).then_some((inode, port))
        })
        .collect()
}

/// Parses an fd link target `socket:[12345]`.
pub fn parse_socket_link(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// Parses a namespace link target such as `net:[4026531840]`.
pub fn parse_ns_link(link: &str) -> Option<u64> {
    let (_, rest) = link.split_once(":[")?;
    rest.strip_suffix(']')?.parse().ok()
}

/// Strips the ` (deleted)` suffix the kernel appends to unlinked executables.
pub fn clean_exe(target: PathBuf) -> PathBuf {
    match target.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(stripped) => PathBuf::from(stripped),
        None => target,
    }
}

fn io_err(path: PathBuf) -> impl FnOnce(io::Error) -> DiscoverError {
    move |source| DiscoverError::Io { path, source }
}

fn pid_path(root: &Path, pid: u32, file: &str) -> PathBuf {
    root.join(pid.to_string()).join(file)
}

/// Numeric entries of the proc root.
pub fn list_pids(root: &Path) -> Result<Vec<u32>, DiscoverError> {
    let dir = std::fs::read_dir(root).map_err(io_err(root.to_path_buf()))?;
    let mut pids: Vec<u32> = dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    pids.sort_unstable();
    Ok(pids)
}

pub fn read_stat(root: &Path, pid: u32) -> Result<Stat, DiscoverError> {
    let path = pid_path(root, pid, "stat");
    let text = std::fs::read_to_string(&path).map_err(io_err(path.clone()))?;
    parse_stat(&text).ok_or(DiscoverError::Malformed { path, reason: "unparsable stat line" })
}

pub fn read_exe(root: &Path, pid: u32) -> Result<PathBuf, DiscoverError> {
    let path = pid_path(root, pid, "exe");
    std::fs::read_link(&path).map(clean_exe).map_err(io_err(path))
}

pub fn read_cmdline(root: &Path, pid: u32) -> Result<Vec<String>, DiscoverError> {
    let path = pid_path(root, pid, "cmdline");
    std::fs::read(&path).map(|b| parse_cmdline(&b)).map_err(io_err(path))
}

/// Reads the environment; an unreadable environ (no ptrace access) yields the default.
pub fn read_env(root: &Path, pid: u32) -> Result<OtelEnv, DiscoverError> {
    let path = pid_path(root, pid, "environ");
    match std::fs::read(&path) {
        Ok(raw) => Ok(parse_environ(&raw)),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Ok(OtelEnv::default()),
        Err(source) => Err(DiscoverError::Io { path, source }),
    }
}

/// Inodes of the sockets a process holds open.
pub fn read_socket_inodes(root: &Path, pid: u32) -> Result<Vec<u64>, DiscoverError> {
    let dir = pid_path(root, pid, "fd");
    let entries = std::fs::read_dir(&dir).map_err(io_err(dir.clone()))?;
    Ok(entries
        .filter_map(|e| {
            let link = std::fs::read_link(e.ok()?.path()).ok()?;
            parse_socket_link(link.to_str()?)
        })
        .collect())
}

/// Listening sockets per network namespace, filled lazily during one scan.
#[derive(Debug, Default)]
pub struct ListenCache {
    by_netns: HashMap<u64, HashMap<u64, u16>>,
    /// The agent's own network namespace, read once per scan (outer None: not yet).
    own_netns: Option<Option<u64>>,
}

impl ListenCache {
    /// Listening `inode -> port` map of the network namespace `pid` lives in.
    fn table(&mut self, root: &Path, pid: u32) -> Result<&HashMap<u64, u16>, DiscoverError> {
        let ns_of = |pid: &str| {
            std::fs::read_link(root.join(pid).join("ns/net")).ok().and_then(|l| l.to_str().and_then(parse_ns_link))
        };
        let Some(ns) = ns_of(&pid.to_string()) else {
            // Unknown namespace: nothing to share the table with.
            return Ok(self.by_netns.entry(0).insert_entry(read_net_tcp(root, pid)?).into_mut());
        };
        if !self.by_netns.contains_key(&ns) {
            // sock_diag answers for the agent's own namespace only (and the real /proc).
            let own =
                *self.own_netns.get_or_insert_with(|| if root == Path::new("/proc") { ns_of("self") } else { None });
            let diag = if own == Some(ns) { super::sockdiag::listening_tcp().ok() } else { None };
            let table = match diag {
                Some(sockets) => sockets.into_iter().collect(),
                None => read_net_tcp(root, pid)?,
            };
            self.by_netns.insert(ns, table);
        }
        Ok(&self.by_netns[&ns])
    }

    /// Ports the process listens on, sorted and deduplicated.
    pub fn listen_ports(&mut self, root: &Path, pid: u32) -> Result<Vec<u16>, DiscoverError> {
        let inodes = read_socket_inodes(root, pid)?;
        if inodes.is_empty() {
            return Ok(Vec::new());
        }
        let table = self.table(root, pid)?;
        let mut ports: Vec<u16> = inodes.iter().filter_map(|i| table.get(i).copied()).collect();
        ports.sort_unstable();
        ports.dedup();
        Ok(ports)
    }
}

/// Listening `inode -> port` from `/proc/<pid>/net/tcp{,6}` (the namespace of `pid`).
fn read_net_tcp(root: &Path, pid: u32) -> Result<HashMap<u64, u16>, DiscoverError> {
    let mut table = HashMap::new();
    for file in ["net/tcp", "net/tcp6"] {
        let path = pid_path(root, pid, file);
        match std::fs::read_to_string(&path) {
            Ok(text) => table.extend(parse_net_tcp_listen(&text)),
            // tcp6 is absent when IPv6 is disabled.
            Err(e) if e.kind() == io::ErrorKind::NotFound && file == "net/tcp6" => {}
            Err(source) => return Err(DiscoverError::Io { path, source }),
        }
    }
    Ok(table)
}

/// Reads one process. `Ok(None)` for kernel threads (no exe or empty cmdline); errors of
/// vanished processes satisfy [`DiscoverError::is_vanished`].
pub fn read_process(
    root: &Path,
    pid: u32,
    with_ports: bool,
    cache: &mut ListenCache,
) -> Result<Option<ProcessInfo>, DiscoverError> {
    let stat = read_stat(root, pid)?;
    let exe = match read_exe(root, pid) {
        Ok(exe) => exe,
        Err(e) if e.is_vanished() && pid_path(root, pid, "stat").exists() => return Ok(None),
        Err(e) => return Err(e),
    };
    let cmdline = read_cmdline(root, pid)?;
    if cmdline.is_empty() {
        return Ok(None);
    }
    let env = read_env(root, pid)?;
    let listen_ports = if with_ports { cache.listen_ports(root, pid)? } else { Vec::new() };
    Ok(Some(ProcessInfo {
        pid,
        ppid: stat.ppid,
        language: read_language(root, pid, &exe),
        exe,
        comm: stat.comm,
        cmdline,
        start_time: stat.start_time,
        listen_ports,
        env,
        container: None,
        k8s: None,
    }))
}

/// Reads the whole process table, skipping kernel threads and processes that vanish or
/// cannot be read.
pub fn read_all(root: &Path, with_ports: bool) -> Result<Vec<ProcessInfo>, DiscoverError> {
    let mut cache = ListenCache::default();
    let mut out = Vec::new();
    for pid in list_pids(root)? {
        match read_process(root, pid, with_ports, &mut cache) {
            Ok(Some(p)) => out.push(p),
            Ok(None) => {}
            Err(e) if e.is_vanished() => {}
            Err(e) => tracing::trace!(pid, error = %e, "Process skipped."),
        }
    }
    Ok(out)
}

/// Seconds since boot, from `<root>/uptime`.
pub fn read_uptime(root: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(root.join("uptime")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Kernel clock ticks per second (`USER_HZ`).
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions and only reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::{FakeProc, TCP, TCP6};
    use super::*;

    #[test]
    fn stat_with_spaces_and_parens_in_comm() {
        let line = "4242 (my (weird) app) S 17 4242 4242 0 -1 4194560 1 0 0 0 3 4 0 0 20 0 7 0 \
                    987654 123 45 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.pid, 4242);
        assert_eq!(s.comm, "my (weird) app");
        assert_eq!(s.ppid, 17);
        assert_eq!(s.start_time, 987654);
    }

    #[test]
    fn stat_truncated_is_rejected() {
        assert!(parse_stat("12 (x) S 1 2 3").is_none());
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn cmdline_split() {
        assert_eq!(parse_cmdline(b"python3\0app.py\0--port\08080\0"), ["python3", "app.py", "--port", "8080"]);
        assert!(parse_cmdline(b"").is_empty());
        assert_eq!(parse_cmdline(b"gunicorn: master [app:app]"), ["gunicorn: master [app:app]"]);
        assert_eq!(parse_cmdline(b"a\0\0b\0"), ["a", "", "b"]);
    }

    #[test]
    fn environ_service_name_precedence() {
        let env = parse_environ(
            b"PATH=/bin\0OTEL_RESOURCE_ATTRIBUTES=service.name=fromattrs,service.namespace=shop%2Feu\0OTEL_SERVICE_NAME=checkout\0",
        );
        assert_eq!(env.service_name.as_deref(), Some("checkout"));
        assert_eq!(env.service_namespace.as_deref(), Some("shop/eu"));
        assert_eq!(env.resource_attributes.len(), 2);
        assert!(!env.sdk_instrumented);

        let env = parse_environ(b"OTEL_RESOURCE_ATTRIBUTES= service.name = cart , deployment.environment=prod\0");
        assert_eq!(env.service_name.as_deref(), Some("cart"));
        assert_eq!(env.service_namespace, None);
        assert_eq!(env.resource_attributes[1], ("deployment.environment".into(), "prod".into()));

        let env = parse_environ(b"OTEL_SERVICE_NAME=\0");
        assert_eq!(env, OtelEnv::default());
    }

    #[test]
    fn environ_sdk_heuristic() {
        let env = parse_environ(b"JAVA_TOOL_OPTIONS=-javaagent:/otel/opentelemetry-javaagent.jar\0");
        assert!(env.sdk_instrumented);
        let env = parse_environ(b"NODE_OPTIONS=--require @opentelemetry/auto-instrumentations-node/register\0");
        assert!(env.sdk_instrumented);
        assert!(!parse_environ(b"NODE_OPTIONS=--max-old-space-size=4096\0").sdk_instrumented);
    }

    #[test]
    fn resource_attribute_edge_cases() {
        assert!(parse_resource_attributes("").is_empty());
        assert_eq!(
            parse_resource_attributes("a=1,junk,=2,b=x%3Dy%"),
            [("a".into(), "1".into()), ("b".into(), "x=y%".into())]
        );
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }

    #[test]
    fn net_tcp_listen_only() {
        assert_eq!(parse_net_tcp_listen(TCP), [(11111, 8080), (22222, 3306)]);
        assert_eq!(parse_net_tcp_listen(TCP6), [(44444, 8081)]);
        assert!(parse_net_tcp_listen("header only\n").is_empty());
    }

    #[test]
    fn links() {
        assert_eq!(parse_socket_link("socket:[12345]"), Some(12345));
        assert_eq!(parse_socket_link("pipe:[12345]"), None);
        assert_eq!(parse_socket_link("/dev/null"), None);
        assert_eq!(parse_ns_link("net:[4026531840]"), Some(4026531840));
        assert_eq!(clean_exe("/usr/bin/app (deleted)".into()), PathBuf::from("/usr/bin/app"));
        assert_eq!(clean_exe("/usr/bin/app".into()), PathBuf::from("/usr/bin/app"));
    }

    #[test]
    fn reads_fake_proc_tree() {
        let fp = FakeProc::new();
        fp.add(1, 0, Some("/sbin/init"), &["/sbin/init"], 1, &[], &[], 1);
        fp.add(2, 0, None, &[], 1, &[], &[], 1); // kernel thread
        fp.add(
            100,
            1,
            Some("/usr/bin/python3.11 (deleted)"),
            &["python3", "app.py"],
            5000,
            &["OTEL_SERVICE_NAME=pay"],
            &[11111, 44444, 99999],
            1,
        );
        fp.add(200, 1, Some("/usr/bin/node"), &["node", "s.js"], 6000, &[], &[11111], 2);
        std::fs::create_dir_all(fp.root().join("self")).unwrap();

        let all = read_all(fp.root(), true).unwrap();
        let pids: Vec<u32> = all.iter().map(|p| p.pid).collect();
        assert_eq!(pids, [1, 100, 200]);
        let py = &all[1];
        assert_eq!(py.exe, PathBuf::from("/usr/bin/python3.11"));
        assert_eq!(py.comm, "python3.11 (deleted)");
        assert_eq!(py.ppid, 1);
        assert_eq!(py.start_time, 5000);
        assert_eq!(py.cmdline, ["python3", "app.py"]);
        assert_eq!(py.listen_ports, [8080, 8081]);
        assert_eq!(py.env.service_name.as_deref(), Some("pay"));
        // pid 200 holds inode 11111 but lives in another netns where it is not listening.
        assert!(all[2].listen_ports.is_empty());

        let none = read_all(fp.root(), false).unwrap();
        assert!(none[1].listen_ports.is_empty());
    }

    #[test]
    fn vanished_process_is_reported_as_such() {
        let fp = FakeProc::new();
        let mut cache = ListenCache::default();
        let err = read_process(fp.root(), 777, true, &mut cache).unwrap_err();
        assert!(err.is_vanished());
        assert!(read_all(&fp.root().join("missing"), false).is_err());
    }

    /// A process that exits while it is being read loses its files one read at a time: the
    /// scan skips it, whichever file went first, and keeps the others.
    #[test]
    fn process_vanishing_mid_scan_is_skipped_and_the_rest_kept() {
        for gone in ["stat", "exe", "cmdline", "environ", "fd", "ns", "net"] {
            let fp = FakeProc::new();
            fp.add(10, 1, Some("/a"), &["a"], 1, &[], &[11111], 1);
            fp.add(20, 1, Some("/b"), &["b"], 1, &[], &[22222], 1);
            fp.add(30, 1, Some("/c"), &["c"], 1, &[], &[], 1);
            let path = fp.root().join("20").join(gone);
            if path.is_dir() {
                std::fs::remove_dir_all(&path).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
            let all = read_all(fp.root(), true).unwrap_or_else(|e| panic!("{gone} gone: {e}"));
            let pids: Vec<u32> = all.iter().map(|p| p.pid).collect();
            assert!(pids.starts_with(&[10]) && pids.ends_with(&[30]), "{gone} gone: {pids:?}");
            assert_eq!(all[0].listen_ports, [8080], "{gone} gone");
            // Without its fds, no ports are claimed for it.
            if let Some(p) = all.iter().find(|p| p.pid == 20) {
                assert!(gone != "fd" || p.listen_ports.is_empty(), "{gone}: {p:?}");
            }
        }
    }

    #[test]
    fn netns_cache_is_shared() {
        let fp = FakeProc::new();
        fp.add(10, 1, Some("/a"), &["a"], 1, &[], &[11111], 1);
        fp.add(11, 1, Some("/b"), &["b"], 1, &[], &[22222], 1);
        let mut cache = ListenCache::default();
        assert_eq!(cache.listen_ports(fp.root(), 10).unwrap(), [8080]);
        // Remove pid 11's tables: the cached netns table must be used.
        std::fs::remove_file(fp.root().join("11/net/tcp")).unwrap();
        assert_eq!(cache.listen_ports(fp.root(), 11).unwrap(), [3306]);
        assert_eq!(cache.by_netns.len(), 1);
    }

    #[test]
    fn uptime_and_ticks() {
        let fp = FakeProc::new();
        assert_eq!(read_uptime(fp.root()), Some(100000.0));
        assert!(clock_ticks() > 0);
    }
}
