//! Conformance on more real HTTP/1.x servers nobody here wrote, each started by the test on a
//! free loopback port with a config of its own, instrumented by its port (every process that
//! holds the listening socket, exactly), driven by real clients and decoded by the agent on
//! this kernel (needs root). Exact counts per method, route and status, the response body sizes
//! as sent (a chunked body with its framing), request body sizes, and nothing lost, dropped or
//! undecodable. What each does differently:
//!
//! - Apache httpd (Debian's apache2, `mpm_event`, master and one child): static files sent with
//!   sendfile(2) (`EnableSendfile On`); `mod_deflate` compressing a short file whole (gzip with
//!   a length) and a 300 kB one as it goes (gzip, chunked), between plain responses on the
//!   same keep-alive connection; HEAD and a 304 between full answers; load from ApacheBench
//!   (`ab -k`: HTTP/1.0 keep-alive requests), all checked against Apache's own access log.
//! - gunicorn + Flask (PyPI): `sync` workers (two processes forked from the arbiter, one
//!   request per connection, which they close) and `gthread` workers (keep-alive, four threads,
//!   four connections at once); a generator body, sent as one chunk per `yield`; HEAD of it.
//! - Express 5 on Node.js (npm): route parameters, `res.write()` streaming (chunked), a POST
//!   body, Express's 404, a handler that throws (Express's 500), a 304, and a HEAD of a
//!   streamed route, whose answer has neither a length nor chunking.
//! - Tomcat 10 (Debian's tomcat10, one JVM, `catalina.sh run` with a `CATALINA_BASE` of its
//!   own): status lines without a reason phrase (`HTTP/1.1 200 `), the Connector's gzip
//!   (chunked), a JSP flushing as it writes (chunked), files of 48 kB or more with sendfile(2),
//!   HEAD, 304, the default servlet's 404.
//! - puma (Debian's puma, cluster mode: master and two workers) running a Rack app: a body
//!   yielded line by line (chunked), a POST body, HEAD, a 404.
//!
//! All pass in the socket family and in the syscall tracepoint family. Before the syscall
//! families hooked sendfile(2), Apache's and Tomcat's static files went unseen there and the
//! requests after them on a connection were paired with the wrong responses: Apache counted
//! 54 of 211 `GET /static/{file}` 200 and 2 `GET /{static,gz}/... 404` that never happened,
//! Tomcat 18 of 60 and 3 such 404s.
//!
//! Packages: `scripts/setup.sh` (apache2, tomcat10, puma), `scripts/py-install.sh` (gunicorn,
//! Flask) and `scripts/npm-install.sh` (express), the last two into `.cache/`.
mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const PYPI: &[&str] = &["gunicorn==27.0.1", "flask==3.1.3"];
const NPM: &[&str] = &["express@5.3.0"];

/// A server started by the test, with its output in `log`. Dropping it sends SIGTERM, on which
/// a master ends its workers (a SIGKILL would leave them running, and listening), then SIGKILL
/// after 15 s.
struct Server {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let stopped = wait_for(Duration::from_secs(15), || matches!(self.child.try_wait(), Ok(Some(_))));
        if !stopped {
            eprintln!("{} did not stop on SIGTERM; killing it", self.name);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `cmd` (its output into `dir/<name>.log`) and waits until something listens on `port`;
/// fails at once, with that output, if it exits first.
fn start_server(name: &'static str, cmd: &mut Command, dir: &Path, port: u16, timeout: Duration) -> Server {
    let log = dir.join(format!("{name}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let child = cmd
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {name} ({:?}): {e} (run scripts/setup.sh)", cmd.get_program()));
    let mut server = Server { child, name, log };
    let mut exited = None;
    let up = wait_for(timeout, || {
        exited = server.child.try_wait().ok().flatten();
        exited.is_none() && TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let output = || std::fs::read_to_string(&server.log).unwrap_or_default();
    assert!(exited.is_none(), "{name} exited ({exited:?}) before listening on {port}:\n{}", output());
    assert!(up, "{name} did not listen on {port}:\n{}", output());
    server
}

/// A temporary directory for one test's server, empty.
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("beyla-servers-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `path`, or a failure naming the setup command that installs `package`.
fn installed(path: &str, package: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(p.exists(), "{path} missing: run scripts/setup.sh (Debian package {package})");
    p
}

/// The agent instrumenting `services` (listening port, service name), with route `patterns` (a
/// YAML list) and Prometheus on `mport`.
fn agent(services: &[(u16, &str)], patterns: &str, mport: u16, tag: &str) -> (Proc, PathBuf) {
    let mut yaml = String::from("discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n  instrument:\n");
    for (port, name) in services {
        yaml += &format!("    - {{ open_ports: \"{port}\", name: {name} }}\n");
    }
    yaml += &format!("prometheus_export:\n  port: {mport}\nroutes:\n  patterns: {patterns}\n");
    start_agent(&yaml, &[], tag)
}

/// Waits until the agent instrumented `n` processes, then checks that it keeps to exactly `n`
/// (a process more or less than those holding the port would count someone else's requests,
/// or miss some) over a few discovery polls.
fn instrumented_exactly(mport: u16, n: f64, log: &Path) {
    wait_instrumented(mport, n, log);
    std::thread::sleep(Duration::from_secs(1));
    let got = sum(&scrape(mport, "/internal/metrics"), "beyla_instrumented_processes", &[]);
    assert_eq!(got, n, "instrumented processes\n{}", agent_dump(mport, log));
}

/// One request: method, path, extra header lines, body.
struct Req {
    method: &'static str,
    path: String,
    headers: String,
    body: Vec<u8>,
}

fn get(path: impl Into<String>) -> Req {
    Req { method: "GET", path: path.into(), headers: String::new(), body: Vec::new() }
}

fn head(path: impl Into<String>) -> Req {
    Req { method: "HEAD", path: path.into(), headers: String::new(), body: Vec::new() }
}

fn post(path: impl Into<String>, body: Vec<u8>) -> Req {
    Req { method: "POST", path: path.into(), headers: String::new(), body }
}

impl Req {
    fn header(mut self, line: &str) -> Req {
        self.headers += line;
        self.headers += "\r\n";
        self
    }
}

/// One response as the client read it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Got {
    status: u16,
    /// The body's size on the wire after the head: a chunked body with its framing (what the
    /// agent reports as the body size, since it cannot de-chunk what it did not copy).
    size: u64,
    chunked: bool,
}

/// A response with a `Content-Length`.
fn length(status: u16, size: u64) -> Got {
    Got { status, size, chunked: false }
}

/// Sends `reqs` in order on one HTTP/1.1 connection to `port`, each after the previous answer,
/// and reads each response. A minimal client, so that the test knows the bytes each server
/// sent.
fn exchange(port: u16, reqs: &[Req]) -> Vec<Got> {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut out = Vec::new();
    for q in reqs {
        let length = if q.method == "POST" { format!("Content-Length: {}\r\n", q.body.len()) } else { String::new() };
        write!(
            w,
            "{} {} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: conformance\r\n{length}{}\r\n",
            q.method, q.path, q.headers
        )
        .unwrap();
        w.write_all(&q.body).unwrap();
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let status: u16 =
            line.split(' ').nth(1).and_then(|c| c.trim().parse().ok()).unwrap_or_else(|| panic!("{line:?}"));
        let (mut length, mut chunked) = (None, false);
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            if h == "\r\n" {
                break;
            }
            let (name, value) = h.split_once(':').unwrap_or_else(|| panic!("header {h:?}"));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse::<u64>().ok(),
                "transfer-encoding" => chunked = value.trim().eq_ignore_ascii_case("chunked"),
                _ => {}
            }
        }
        // No body after a HEAD, a 1xx, 204 or 304, whatever the head says.
        let size = if q.method == "HEAD" || status < 200 || status == 204 || status == 304 {
            0
        } else if chunked {
            read_chunked_wire(&mut r)
        } else if let Some(n) = length {
            std::io::copy(&mut (&mut r).take(n), &mut std::io::sink()).unwrap();
            n
        } else {
            // Neither: the body ends when the server closes.
            std::io::copy(&mut r, &mut std::io::sink()).unwrap()
        };
        out.push(Got { status, size, chunked });
    }
    out
}

/// What the test sent and got, per (method, route, status): requests and response body bytes.
#[derive(Default)]
struct Tally(BTreeMap<(&'static str, &'static str, u16), (u64, u64)>);

impl Tally {
    fn add(&mut self, method: &'static str, route: &'static str, got: &Got) {
        let e = self.0.entry((method, route, got.status)).or_default();
        e.0 += 1;
        e.1 += got.size;
    }

    fn count(&self, method: &'static str, route: &'static str, status: u16) -> u64 {
        self.0.get(&(method, route, status)).map_or(0, |e| e.0)
    }

    fn total(&self) -> u64 {
        self.0.values().map(|e| e.0).sum()
    }
}

/// Waits until the agent counted what `tally` holds for `service`, lets it settle, then
/// asserts each count and response body sum exactly, the totals (nothing extra, for this
/// service or any), `request_bodies` (route, bytes) and no lost, dropped or undecodable events.
fn verify(mport: u16, log: &Path, service: &str, tally: &Tally, request_bodies: &[(&str, u64)]) {
    const COUNT: &str = "http_server_request_duration_seconds_count";
    let labels = |(method, route, status): &(&'static str, &'static str, u16)| {
        [
            ("service_name", service.to_string()),
            ("http_request_method", method.to_string()),
            ("http_route", route.to_string()),
            ("http_response_status_code", status.to_string()),
        ]
    };
    let of = |m: &[Sample], name: &str, key: &(&'static str, &'static str, u16)| {
        let l = labels(key);
        let want: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
        sum(m, name, &want)
    };
    let done = wait_for(Duration::from_secs(30), || {
        let m = scrape(mport, "/metrics");
        tally.0.iter().all(|(k, (n, _))| of(&m, COUNT, k) >= *n as f64)
    });
    std::thread::sleep(Duration::from_secs(2));
    let m = scrape(mport, "/metrics");
    let dump = || agent_dump(mport, log);
    for (k, (n, bytes)) in &tally.0 {
        let (count, body) = (of(&m, COUNT, k), of(&m, "http_server_response_body_size_bytes_sum", k));
        eprintln!("{service} {k:?}: expected {n} requests, {bytes} body bytes; counted {count}, {body} bytes");
    }
    assert!(done, "not all counted:\n{}", dump());
    for (k, (n, bytes)) in &tally.0 {
        assert_eq!(of(&m, COUNT, k), *n as f64, "{service} {k:?}\n{}", dump());
        assert_eq!(
            of(&m, "http_server_response_body_size_bytes_sum", k),
            *bytes as f64,
            "{service} {k:?} body\n{}",
            dump()
        );
    }
    assert_eq!(sum(&m, COUNT, &[("service_name", service)]), tally.total() as f64, "{service} total\n{}", dump());
    for (route, bytes) in request_bodies {
        let want = [("service_name", service), ("http_route", route)];
        let got = sum(&m, "http_server_request_body_size_bytes_sum", &want);
        assert_eq!(got, *bytes as f64, "{service} {route} request bodies\n{}", dump());
    }
    let internal = scrape(mport, "/internal/metrics");
    for counter in ["beyla_decode_errors_total", "beyla_ebpf_events_lost_total", "beyla_channel_drops_total"] {
        assert_eq!(sum(&internal, counter, &[]), 0.0, "{counter}\n{}", dump());
    }
}

/// `n` bytes of lowercase hex text in lines, from a fixed pseudo-random sequence: it
/// compresses to about half, so a large file stays large under gzip.
fn hex_text(n: usize) -> String {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut s = String::with_capacity(n);
    while s.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s += &format!("{x:016x}");
        s.push(if s.len() % 65 == 64 { '\n' } else { ' ' });
    }
    s.truncate(n);
    s
}

/// ApacheBench (Debian's apache2-utils, installed with apache2): `n` keep-alive requests
/// (HTTP/1.0) over `c` connections, all answered; returns the body bytes it counted.
fn ab(url: &str, n: u32, c: u32) -> u64 {
    let out = Command::new("ab")
        .args(["-k", "-n", &n.to_string(), "-c", &c.to_string(), url])
        .output()
        .unwrap_or_else(|e| panic!("ab missing: run scripts/setup.sh (Debian package apache2-utils): {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("ab {url}: no {name}\n{text}"))
    };
    assert_eq!(field("Complete requests:"), u64::from(n), "ab {url}:\n{text}");
    assert_eq!(field("Failed requests:"), 0, "ab {url}:\n{text}");
    assert!(!text.contains("Non-2xx responses"), "ab {url}:\n{text}");
    field("HTML transferred:")
}

#[test]
fn root_conformance_servers_apache2() {
    require_root();
    let apache = installed("/usr/sbin/apache2", "apache2");
    let modules = Path::new("/usr/lib/apache2/modules");
    let dir = temp_dir("apache2");
    let (port, mport) = (free_port(), free_port());
    let small = "s".repeat(600);
    let short: String = (0..100).map(|i| format!("short line {i:03}\n")).collect();
    // 300 kB: mod_deflate passes on what it compressed before the end (about 140 kB), so the
    // response has no length; up to some 120 kB it compresses the whole file first and sets one.
    let data = hex_text(300_000);
    // 200 kB sent with sendfile(2) (`EnableSendfile On`: no filter in /static).
    let large = hex_text(200_000);
    let files =
        [("static/small.txt", &small), ("static/large.txt", &large), ("gz/short.txt", &short), ("gz/data.txt", &data)];
    for (path, text) in files {
        let path = dir.join("www").join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    // The child runs as www-data: it reads the files through the test's directory.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let d = dir.display();
    let load = |m: &str, file: &str| format!("LoadModule {m}_module {}/{file}\n", modules.display());
    let conf = [
        load("mpm_event", "mod_mpm_event.so"),
        load("authz_core", "mod_authz_core.so"),
        load("mime", "mod_mime.so"),
        load("filter", "mod_filter.so"),
        load("deflate", "mod_deflate.so"),
        format!(
            "ServerRoot {d}\nServerName 127.0.0.1\nListen 127.0.0.1:{port}\nPidFile {d}/httpd.pid\n\
             ErrorLog {d}/error.log\nLogFormat \"%m %U %>s %B\" short\nCustomLog {d}/access.log short\n\
             User www-data\nGroup www-data\n\
             StartServers 1\nServerLimit 1\nThreadsPerChild 8\nMaxRequestWorkers 8\n\
             MinSpareThreads 1\nMaxSpareThreads 16\n\
             KeepAlive On\nMaxKeepAliveRequests 1000\nEnableSendfile On\nTypesConfig /etc/mime.types\n\
             DocumentRoot {d}/www\n<Directory />\n  Require all granted\n</Directory>\n\
             <Directory {d}/www/gz>\n  AddOutputFilterByType DEFLATE text/plain\n</Directory>\n"
        ),
    ]
    .concat();
    std::fs::write(dir.join("httpd.conf"), conf).unwrap();

    let patterns = "[\"/static/{file}\", \"/gz/{file}\", \"/missing/{n}\"]";
    let (agent, log) = agent(&[(port, "apache")], patterns, mport, "apache2");
    let server = start_server(
        "apache2",
        Command::new(&apache).arg("-f").arg(dir.join("httpd.conf")).arg("-DFOREGROUND"),
        &dir,
        port,
        Duration::from_secs(20),
    );
    // The master (root) and its one child (www-data) hold the listening socket: 2 processes.
    instrumented_exactly(mport, 2.0, &log);

    let route = |path: &str| match path {
        p if p.starts_with("/static/") => "/static/{file}",
        p if p.starts_with("/gz/") => "/gz/{file}",
        _ => "/missing/{n}",
    };
    let mut tally = Tally::default();
    let gzip = "Accept-Encoding: gzip";
    // One keep-alive connection asking for gzip, one not, 10 requests each.
    let order = ["/static/small.txt", "/gz/data.txt", "/gz/short.txt", "/static/small.txt", "/missing/1"];
    for headers in [gzip, ""] {
        let reqs: Vec<Req> = order.iter().chain(&order).map(|p| get(*p).header(headers)).collect();
        let got = exchange(port, &reqs);
        for (q, g) in reqs.iter().zip(&got) {
            tally.add(q.method, route(&q.path), g);
        }
        let of = |p: &str| got[order.iter().position(|o| *o == p).unwrap()];
        assert_eq!(of("/static/small.txt"), length(200, 600));
        assert_eq!(of("/missing/1").status, 404);
        if headers == gzip {
            // Compressed: the large file as it goes (chunked), the short one whole.
            let (data, short_gz) = (of("/gz/data.txt"), of("/gz/short.txt"));
            assert!(data.status == 200 && data.chunked && data.size < 200_000, "{got:?}");
            assert!(!short_gz.chunked && short_gz.size < short.len() as u64, "{got:?}");
        } else {
            assert_eq!(of("/gz/data.txt"), length(200, 300_000));
            assert_eq!(of("/gz/short.txt"), length(200, short.len() as u64));
        }
    }
    // Answers without a body between others on one connection: HEAD (with the length the GET
    // would have), a 304 (`If-None-Match: *`); and the file sent with sendfile(2).
    let reqs = [
        head("/static/small.txt"),
        get("/static/large.txt"),
        get("/static/small.txt").header("If-None-Match: *"),
        head("/gz/data.txt").header(gzip),
        get("/static/small.txt"),
        head("/missing/2"),
        get("/static/large.txt"),
    ];
    let got = exchange(port, &reqs);
    for (q, g) in reqs.iter().zip(&got) {
        tally.add(q.method, route(&q.path), g);
    }
    let statuses: Vec<u16> = got.iter().map(|g| g.status).collect();
    assert_eq!(statuses, [200, 200, 304, 200, 200, 404, 200], "{got:?}");
    assert_eq!((got[1], got[6]), (length(200, 200_000), length(200, 200_000)));
    // ApacheBench: 200 HTTP/1.0 keep-alive requests over 4 connections.
    let bytes = ab(&format!("http://127.0.0.1:{port}/static/small.txt"), 200, 4);
    assert_eq!(bytes, 200 * 600);
    tally.0.entry(("GET", "/static/{file}", 200)).and_modify(|e| *e = (e.0 + 200, e.1 + bytes));
    assert_eq!(tally.count("GET", "/static/{file}", 200), 211);
    assert_eq!(tally.count("GET", "/static/{file}", 304), 1);
    assert_eq!(tally.count("HEAD", "/static/{file}", 200), 1);
    assert_eq!(tally.count("GET", "/gz/{file}", 200), 8);
    assert_eq!(tally.count("HEAD", "/gz/{file}", 200), 1);
    assert_eq!(tally.count("GET", "/missing/{n}", 404), 4);
    assert_eq!(tally.count("HEAD", "/missing/{n}", 404), 1);
    assert_eq!(tally.total(), 227);

    verify(mport, &log, "apache", &tally, &[]);
    // Apache's own count.
    let access = std::fs::read_to_string(dir.join("access.log")).unwrap();
    assert_eq!(access.lines().count(), 227, "{access}");
    drop((server, agent));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Python with gunicorn and Flask on `PYTHONPATH` (installed on first use).
fn python_with_gunicorn() -> (String, PathBuf) {
    python_with("conformance-gunicorn", PYPI)
}

/// The requests every app server here gets (its routes `/item/{n}`, `/stream/{n}`, `/echo`),
/// `k`-th round: 5 items, 2 streams, 2 uploads, one 404, and a HEAD of a stream (no length, no
/// body).
fn app_round(k: usize) -> Vec<Req> {
    let mut reqs: Vec<Req> = (0..5).map(|i| get(format!("/item/{}", 100 * (k + i) + 1))).collect();
    reqs.push(get(format!("/stream/{}", 10 + k)));
    reqs.push(post("/echo", vec![b'b'; 1000 + k]));
    reqs.push(get(format!("/missing/{k}")));
    reqs.push(get("/stream/300"));
    reqs.push(post("/echo", vec![b'c'; 20_000]));
    reqs.push(head(format!("/stream/{k}")));
    reqs
}

/// `app_round`'s route for a request path.
fn app_route(path: &str) -> &'static str {
    ["/item/", "/stream/", "/missing/", "/echo"]
        .iter()
        .zip(["/item/{n}", "/stream/{n}", "/missing/{n}", "/echo"])
        .find_map(|(p, r)| path.starts_with(p).then_some(r))
        .unwrap_or_else(|| panic!("no route for {path}"))
}

/// Adds `reqs` and their answers `got` to `tally`, with the upload bytes to `uploads`; a GET of
/// a stream must have been chunked.
fn add_all(tally: &mut Tally, uploads: &mut u64, reqs: &[Req], got: &[Got]) {
    assert_eq!(reqs.len(), got.len());
    for (q, g) in reqs.iter().zip(got) {
        if q.method == "GET" && q.path.starts_with("/stream/") {
            assert!(g.chunked, "{} {}: {g:?}", q.method, q.path);
        }
        tally.add(q.method, app_route(&q.path), g);
        *uploads += q.body.len() as u64;
    }
}

/// `app_round`'s statuses as a Rack/WSGI app answers them, checked on what the test got.
fn check_round(tally: &Tally, rounds: u64) {
    assert_eq!(tally.count("GET", "/item/{n}", 200), 5 * rounds);
    assert_eq!(tally.count("GET", "/stream/{n}", 200), 2 * rounds);
    assert_eq!(tally.count("POST", "/echo", 201), 2 * rounds);
    assert_eq!(tally.count("GET", "/missing/{n}", 404), rounds);
    assert_eq!(tally.count("HEAD", "/stream/{n}", 200), rounds);
    assert_eq!(tally.total(), 11 * rounds);
}

#[test]
fn root_conformance_servers_gunicorn() {
    require_root();
    let (py, pypath) = python_with_gunicorn();
    let dir = temp_dir("gunicorn");
    let (sync, gthread, mport) = (free_port(), free_port(), free_port());
    let patterns = "[\"/item/{n}\", \"/stream/{n}\", \"/echo\", \"/missing/{n}\"]";
    let (agent, log) = agent(&[(sync, "gunicorn-sync"), (gthread, "gunicorn-gthread")], patterns, mport, "gunicorn");
    let gunicorn = |worker: &str, workers: &str, port: u16| {
        let mut cmd = Command::new(&py);
        cmd.args(["-m", "gunicorn", "-k", worker, "-w", workers, "--threads", "4", "--chdir"])
            .arg(repo().join("agent/tests/conformance"))
            .args(["-b", &format!("127.0.0.1:{port}"), "flask_app:app"])
            .env("PYTHONPATH", &pypath);
        cmd
    };
    let servers = [
        start_server("gunicorn-sync", &mut gunicorn("sync", "2", sync), &dir, sync, Duration::from_secs(120)),
        start_server(
            "gunicorn-gthread",
            &mut gunicorn("gthread", "1", gthread),
            &dir,
            gthread,
            Duration::from_secs(120),
        ),
    ];
    // The arbiter and each worker hold the listening socket: 1 + 2 (sync) and 1 + 1 (gthread).
    instrumented_exactly(mport, 5.0, &log);

    // sync: a worker closes each connection after one answer; 3 rounds, one connection each.
    let (mut tally, mut uploads) = (Tally::default(), 0);
    for k in 0..3 {
        for q in app_round(k) {
            let got = exchange(sync, std::slice::from_ref(&q));
            add_all(&mut tally, &mut uploads, std::slice::from_ref(&q), &got);
        }
    }
    check_round(&tally, 3);
    verify(mport, &log, "gunicorn-sync", &tally, &[("/echo", uploads)]);

    // gthread: 2 rounds on one keep-alive connection, then 4 connections at once with 3 each.
    let (mut tally, mut uploads) = (Tally::default(), 0);
    let reqs: Vec<Req> = app_round(0).into_iter().chain(app_round(1)).collect();
    let got = exchange(gthread, &reqs);
    add_all(&mut tally, &mut uploads, &reqs, &got);
    let results: Vec<(Vec<Req>, Vec<Got>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|c| {
                s.spawn(move || {
                    let reqs: Vec<Req> = (2..5).flat_map(|k| app_round(10 * c + k)).collect();
                    let got = exchange(gthread, &reqs);
                    (reqs, got)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (reqs, got) in &results {
        add_all(&mut tally, &mut uploads, reqs, got);
    }
    check_round(&tally, 14);
    verify(mport, &log, "gunicorn-gthread", &tally, &[("/echo", uploads)]);
    drop((servers, agent));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The folder holding express's `node_modules` (installed on first use).
fn node_with_express() -> PathBuf {
    let dir = repo().join(".cache/conformance-node");
    let out = Command::new("bash")
        .arg(repo().join("scripts/npm-install.sh"))
        .arg(&dir)
        .args(NPM)
        .stderr(Stdio::inherit())
        .output()
        .expect("running scripts/npm-install.sh");
    assert!(out.status.success(), "scripts/npm-install.sh failed for {NPM:?}");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

#[test]
fn root_conformance_servers_express() {
    require_root();
    let prefix = node_with_express();
    let dir = temp_dir("express");
    let (port, mport) = (free_port(), free_port());
    let patterns = "[\"/user/{id}/item/{n}\", \"/stream/{n}\", \"/echo\", \"/fail/{n}\", \"/missing/{n}\"]";
    let (agent, log) = agent(&[(port, "express")], patterns, mport, "express");
    let server = start_server(
        "express",
        Command::new("node")
            .arg(repo().join("agent/tests/conformance/express_app.js"))
            .arg(port.to_string())
            .env("NODE_PATH", prefix.join("node_modules"))
            // Express's 500 page without the stack trace.
            .env("NODE_ENV", "production"),
        &dir,
        port,
        Duration::from_secs(60),
    );
    // One process: node.
    instrumented_exactly(mport, 1.0, &log);

    let route = |path: &str| {
        [("/user/", "/user/{id}/item/{n}"), ("/stream/", "/stream/{n}"), ("/echo", "/echo"), ("/fail/", "/fail/{n}")]
            .iter()
            .find_map(|(p, r)| path.starts_with(p).then_some(*r))
            .unwrap_or("/missing/{n}")
    };
    let round = |k: usize| {
        let mut reqs: Vec<Req> = (0..4).map(|i| get(format!("/user/{}/item/{}", k + i, 50 * i + k + 1))).collect();
        reqs.push(get(format!("/stream/{}", 20 + k)));
        reqs.push(post("/echo", vec![b'x'; 700 + k]));
        reqs.push(get(format!("/missing/{k}")));
        reqs.push(get(format!("/fail/{k}")));
        reqs.push(get("/stream/500"));
        reqs.push(post("/echo", vec![b'y'; 30_000]));
        // Node answers a HEAD of a streamed route with neither a length nor chunking.
        reqs.push(head(format!("/stream/{k}")));
        reqs.push(get(format!("/user/{k}/item/5")).header("If-None-Match: *"));
        reqs
    };
    let (mut tally, mut uploads) = (Tally::default(), 0u64);
    let mut add = |reqs: &[Req], got: &[Got]| {
        for (q, g) in reqs.iter().zip(got) {
            if q.method == "GET" && q.path.starts_with("/stream/") {
                assert!(g.chunked, "{} {}: {g:?}", q.method, q.path);
            }
            tally.add(q.method, route(&q.path), g);
            uploads += q.body.len() as u64;
        }
    };
    // 3 rounds on one keep-alive connection, then 3 connections at once with 2 rounds each.
    let reqs: Vec<Req> = (0..3).flat_map(round).collect();
    add(&reqs, &exchange(port, &reqs));
    let results: Vec<(Vec<Req>, Vec<Got>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|c| {
                s.spawn(move || {
                    let reqs: Vec<Req> = (0..2).flat_map(|k| round(10 * c + k + 3)).collect();
                    let got = exchange(port, &reqs);
                    (reqs, got)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (reqs, got) in &results {
        add(reqs, got);
    }
    assert_eq!(tally.count("GET", "/user/{id}/item/{n}", 200), 36);
    assert_eq!(tally.count("GET", "/stream/{n}", 200), 18);
    assert_eq!(tally.count("POST", "/echo", 201), 18);
    assert_eq!(tally.count("GET", "/missing/{n}", 404), 9);
    assert_eq!(tally.count("GET", "/fail/{n}", 500), 9);
    assert_eq!(tally.count("HEAD", "/stream/{n}", 200), 9);
    assert_eq!(tally.count("GET", "/user/{id}/item/{n}", 304), 9);
    assert_eq!(tally.total(), 108);
    verify(mport, &log, "express", &tally, &[("/echo", uploads)]);
    drop((server, agent));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn root_conformance_servers_tomcat10() {
    require_root();
    let home = installed("/usr/share/tomcat10", "tomcat10");
    let catalina = installed("/usr/share/tomcat10/bin/catalina.sh", "tomcat10");
    let base = temp_dir("tomcat10");
    let (port, mport) = (free_port(), free_port());
    for sub in ["conf", "logs", "temp", "work", "webapps/ROOT/files"] {
        std::fs::create_dir_all(base.join(sub)).unwrap();
    }
    // The default servlet, the JSP servlet and the MIME types.
    std::fs::copy(home.join("etc/web.xml"), base.join("conf/web.xml")).unwrap();
    // No shutdown port; one HTTP/1.1 connector, gzip for text of 1 kB or more (then chunked).
    let server_xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Server port=\"-1\" shutdown=\"SHUTDOWN\">\n\
         \x20 <Service name=\"Catalina\">\n\
         \x20   <Connector port=\"{port}\" address=\"127.0.0.1\" protocol=\"HTTP/1.1\" maxKeepAliveRequests=\"-1\"\n\
         \x20              compression=\"on\" compressionMinSize=\"1024\" compressibleMimeType=\"text/plain\"/>\n\
         \x20   <Engine name=\"Catalina\" defaultHost=\"localhost\">\n\
         \x20     <Host name=\"localhost\" appBase=\"webapps\" unpackWARs=\"false\" autoDeploy=\"false\"/>\n\
         \x20   </Engine>\n  </Service>\n</Server>\n"
    );
    std::fs::write(base.join("conf/server.xml"), server_xml).unwrap();
    let root = base.join("webapps/ROOT");
    std::fs::write(root.join("files/small.txt"), "t".repeat(500)).unwrap();
    // 36 kB: compressed when asked (chunked). Files of 48 kB or more (the NIO connector's
    // `sendfileSize`) go out with sendfile(2), never compressed: 120 kB.
    let big: String = (0..2000).map(|i| format!("tomcat line {i:05}\n")).collect();
    std::fs::write(root.join("files/big.txt"), &big).unwrap();
    std::fs::write(root.join("files/large.txt"), hex_text(120_000)).unwrap();
    // Writes n lines, flushing every 100: committed without a length, so chunked.
    std::fs::write(
        root.join("gen.jsp"),
        "<%@ page contentType=\"text/plain\" session=\"false\" %><% int n = Integer.parseInt(request.getParameter(\"n\")); \
         for (int i = 0; i < n; i++) { out.print(\"line \" + i + \"\\n\"); if (i % 100 == 99) out.flush(); } %>",
    )
    .unwrap();

    let patterns = "[\"/files/{file}\", \"/gen.jsp\", \"/missing/{n}\"]";
    let (agent, log) = agent(&[(port, "tomcat")], patterns, mport, "tomcat10");
    let server = start_server(
        "tomcat10",
        Command::new(&catalina).arg("run").env("CATALINA_HOME", &home).env("CATALINA_BASE", &base),
        &base,
        port,
        Duration::from_secs(120),
    );
    // One process: catalina.sh execs the JVM.
    instrumented_exactly(mport, 1.0, &log);

    let route = |path: &str| match path {
        p if p.starts_with("/files/") => "/files/{file}",
        p if p.starts_with("/gen.jsp") => "/gen.jsp",
        _ => "/missing/{n}",
    };
    let gzip = "Accept-Encoding: gzip";
    let round = |k: usize| {
        vec![
            get("/files/small.txt"),
            get("/files/big.txt").header(gzip),
            get(format!("/gen.jsp?n={}", 250 + k)),
            get("/files/big.txt"),
            get(format!("/missing/{k}")),
            get("/files/small.txt").header(gzip),
            get("/files/large.txt").header(gzip),
            head("/files/big.txt"),
            get("/files/small.txt").header("If-None-Match: *"),
        ]
    };
    let mut tally = Tally::default();
    // The first request compiles the JSP (a second or two).
    for conn in 0..3 {
        let reqs: Vec<Req> = (0..4).flat_map(|k| round(4 * conn + k)).collect();
        let got = exchange(port, &reqs);
        for (q, g) in reqs.iter().zip(&got) {
            tally.add(q.method, route(&q.path), g);
        }
        assert_eq!(got[0], length(200, 500));
        assert!(got[1].chunked && got[1].size < big.len() as u64 / 2, "gzip, chunked: {got:?}");
        assert!(got[2].chunked, "JSP: {got:?}");
        assert_eq!(got[3], length(200, big.len() as u64));
        assert_eq!(got[6], length(200, 120_000), "sendfile");
        assert_eq!((got[7].status, got[8].status), (200, 304));
    }
    assert_eq!(tally.count("GET", "/files/{file}", 200), 60);
    assert_eq!(tally.count("GET", "/gen.jsp", 200), 12);
    assert_eq!(tally.count("GET", "/missing/{n}", 404), 12);
    assert_eq!(tally.count("HEAD", "/files/{file}", 200), 12);
    assert_eq!(tally.count("GET", "/files/{file}", 304), 12);
    assert_eq!(tally.total(), 108);
    verify(mport, &log, "tomcat", &tally, &[]);
    drop((server, agent));
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn root_conformance_servers_puma() {
    require_root();
    let puma = installed("/usr/bin/puma", "puma");
    let dir = temp_dir("puma");
    let (port, mport) = (free_port(), free_port());
    let patterns = "[\"/item/{n}\", \"/stream/{n}\", \"/echo\", \"/missing/{n}\"]";
    let (agent, log) = agent(&[(port, "puma")], patterns, mport, "puma");
    let server = start_server(
        "puma",
        Command::new(&puma)
            .args(["-e", "production", "-w", "2", "-t", "1:4", "-b", &format!("tcp://127.0.0.1:{port}")])
            .arg(repo().join("agent/tests/conformance/puma_app.ru")),
        &dir,
        port,
        Duration::from_secs(60),
    );
    // Cluster mode: the master and its two workers hold the listening socket.
    instrumented_exactly(mport, 3.0, &log);

    let (mut tally, mut uploads) = (Tally::default(), 0);
    // 3 rounds on one keep-alive connection, then 4 connections at once with 3 each.
    let reqs: Vec<Req> = (0..3).flat_map(app_round).collect();
    let got = exchange(port, &reqs);
    add_all(&mut tally, &mut uploads, &reqs, &got);
    let results: Vec<(Vec<Req>, Vec<Got>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|c| {
                s.spawn(move || {
                    let reqs: Vec<Req> = (3..6).flat_map(|k| app_round(10 * c + k)).collect();
                    let got = exchange(port, &reqs);
                    (reqs, got)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (reqs, got) in &results {
        add_all(&mut tally, &mut uploads, reqs, got);
    }
    check_round(&tally, 15);
    verify(mport, &log, "puma", &tally, &[("/echo", uploads)]);
    drop((server, agent));
    let _ = std::fs::remove_dir_all(&dir);
}
