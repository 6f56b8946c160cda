//! Conformance on a real server nobody here wrote: Debian's nginx (installed by
//! `scripts/setup.sh`), started by the test on free loopback ports with a config of its own,
//! driven by a plain HTTP/1.1 client that counts the bytes sent, decoded by the agent on this kernel (needs root). Exact counts per route and
//! status, and response sizes, for what nginx does differently from the project's test apps:
//!
//! - `gzip on`: a compressed response has no length, so nginx sends it chunked, in one writev
//!   of five pieces (head, chunk size, data, CRLF, last chunk), between plain responses on the
//!   same keep-alive connection;
//! - a reverse proxy re-chunking an upstream reply that has no `Content-Length` (the upstream
//!   closes to end it), again on one keep-alive connection.
//!
//! - request heads larger than what one event copies (2 KiB): a 2.5-8 KB `Cookie`, or 100
//!   headers, as browsers and API clients send (nginx reads a head 1 KiB first, then the rest).
//! - HTTP/2 over cleartext (`listen ... http2`, prior knowledge) from curl and `h2load` (10
//!   streams at once per connection): nginx writes its first response's header block as the
//!   fifth piece of a writev (after SETTINGS, WINDOW_UPDATE, SETTINGS ack and the frame header).
//! - PHP behind nginx over FastCGI (php-fpm on a unix socket): nginx's responses are chunked
//!   (FastCGI replies carry no length). Before, 3 of 35 were counted, with implausible
//!   durations.
//! - pipelined requests (three in one write), and `curl` uploads with `Expect: 100-continue`
//!   proxied to Python's `http.server` (nginx answers `100 Continue`, reads the body, then
//!   sends it upstream: a client call of nginx's own).
//!
//! Before the capture copied vectored writes across their pieces and kept their last bytes,
//! the agent counted 2 of 10 and 2 of 15 here, the first with the sizes of several responses;
//! the large heads were dropped (`headers_too_large`); 1 of 3 pipelined requests was counted,
//! and the uploads' body sizes summed to 6.2 MB instead of 3.1 MB. Before vectored transfers
//! were copied across 16 pieces (4 before), 0 of 40 HTTP/2 requests were counted
//! (`http2_desync`).
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// nginx's master process; dropping it stops nginx with SIGTERM, on which the master ends its
/// workers (a SIGKILL would leave the worker running, and listening).
struct Nginx(std::process::Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let stopped = wait_for(Duration::from_secs(10), || matches!(self.0.try_wait(), Ok(Some(_))));
        if !stopped {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// nginx serving `www` on `port` (gzip on, `/proxy/` to the upstream on `upstream`, and the
/// `extra` locations), master and one worker, in the foreground.
fn start_nginx(dir: &Path, port: u16, upstream: u16, extra: &str) -> Nginx {
    let nginx = ["/usr/sbin/nginx", "/sbin/nginx"].iter().map(PathBuf::from).find(|p| p.exists());
    let nginx = nginx.unwrap_or_else(|| panic!("nginx missing: run scripts/setup.sh (Debian package nginx)"));
    for sub in ["www", "tmp", "logs"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let d = dir.display();
    let conf = format!(
        "worker_processes 1;\nerror_log {d}/logs/error.log;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  default_type text/plain;\n  keepalive_requests 1000;\n\
         \x20 client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
         \x20 fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n\
         \x20 gzip on;\n  gzip_min_length 100;\n  gzip_types text/plain;\n\
         \x20 server {{\n    listen 127.0.0.1:{port};\n    root {d}/www;\n\
         \x20   location /proxy/ {{ proxy_pass http://127.0.0.1:{upstream}/; }}\n    {extra}\n  }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new(&nginx)
        .args(["-p", &d.to_string(), "-c", &format!("{d}/nginx.conf"), "-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", nginx.display()));
    let up = wait_for(Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    assert!(
        up,
        "nginx did not listen on {port}: {}",
        std::fs::read_to_string(dir.join("logs/error.log")).unwrap_or_default()
    );
    Nginx(child)
}

/// nginx on `port` under an agent (metrics on `mport`, log `log`) instrumenting it as service
/// `nginx` with route `patterns` (a YAML list); `dir` is nginx's prefix.
struct Setup {
    dir: PathBuf,
    port: u16,
    mport: u16,
    log: PathBuf,
    /// nginx first: it stops before the agent.
    _procs: (Nginx, Proc),
}

fn setup(tag: &str, patterns: &str) -> Setup {
    setup_with(tag, patterns, "")
}

/// `setup` with `extra` locations in nginx's server block.
fn setup_with(tag: &str, patterns: &str, extra: &str) -> Setup {
    require_root();
    let dir = std::env::temp_dir().join(format!("beyla-nginx-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (port, mport) = (free_port(), free_port());
    let yaml = format!(
        "discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n  instrument:\n\
         \x20   - {{ open_ports: \"{port}\", name: nginx }}\n\
         prometheus_export:\n  port: {mport}\n\
         routes:\n  patterns: {patterns}\n"
    );
    let (agent, log) = start_agent(&yaml, &[], &format!("nginx-{tag}"));
    let nginx = start_nginx(&dir, port, close_delimited_upstream(), extra);
    // Both nginx processes (master and worker) hold the listening socket.
    wait_instrumented(mport, 2.0, &log);
    Setup { dir, port, mport, log, _procs: (nginx, agent) }
}

/// An HTTP/1.0 upstream whose replies have no length (they end when it closes): `/n` gets
/// `n` bytes of text.
fn close_delimited_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut line = String::new();
            let mut r = BufReader::new(s.try_clone().unwrap());
            if r.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let n: usize = line.split(' ').nth(1).and_then(|p| p.trim_start_matches('/').parse().ok()).unwrap_or(0);
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n");
            let _ = s.write_all(&vec![b'u'; n]);
        }
    });
    port
}

/// GETs `paths` in order on one keep-alive connection to `port`, with `headers`; returns the
/// status and the body size as on the wire after the head of each (a chunked body with its
/// framing: what the agent reports as the body size, since it cannot de-chunk what it did not
/// copy). A minimal HTTP/1.1 client, so that the test knows the bytes nginx sent.
fn get_keepalive(port: u16, headers: &str, paths: &[String]) -> Vec<(u16, u64)> {
    let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut out = Vec::new();
    for p in paths {
        write!(w, "GET {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: conformance\r\n{headers}\r\n").unwrap();
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let status: u16 = line.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("{line:?}"));
        let (mut length, mut chunked) = (None, false);
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            if h == "\r\n" {
                break;
            }
            let (name, value) = h.split_once(':').unwrap();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse::<u64>().ok(),
                "transfer-encoding" => chunked = value.trim().eq_ignore_ascii_case("chunked"),
                _ => {}
            }
        }
        let size = if chunked {
            read_chunked_wire(&mut r)
        } else {
            let n = length.expect("neither Content-Length nor chunked");
            std::io::copy(&mut (&mut r).take(n), &mut std::io::sink()).unwrap();
            n
        };
        out.push((status, size));
    }
    out
}

#[test]
fn root_conformance_nginx_chunked_responses() {
    let Setup { dir, port, mport, log, _procs } = setup("chunked", "[\"/gz/{file}\", \"/proxy/{n}\"]");

    // 5 gzip-compressed (chunked) then 5 plain responses of the same 20 kB file, one connection.
    let text: String = (0..2000).map(|i| format!("line {i:05}\n")).collect();
    assert_eq!(text.len(), 22_000);
    std::fs::create_dir_all(dir.join("www/gz")).unwrap();
    std::fs::write(dir.join("www/gz/big.txt"), &text).unwrap();
    let paths: Vec<String> = (0..10).map(|_| "/gz/big.txt".to_string()).collect();
    let mut got = get_keepalive(port, "Accept-Encoding: gzip\r\n", &paths[..5]);
    got.extend(get_keepalive(port, "", &paths[5..]));
    let gz_size = got[0].1;
    assert!(got[..5].iter().all(|g| *g == got[0]) && gz_size < 22_000, "gzip responses: {got:?}");
    assert!(got[5..].iter().all(|g| *g == (200, 22_000)), "plain responses: {got:?}");

    // 15 proxied replies of 100..1500 bytes, re-chunked by nginx, one connection.
    let sizes: Vec<u64> = (1..=15).map(|i| i * 100).collect();
    let paths: Vec<String> = sizes.iter().map(|n| format!("/proxy/{n}")).collect();
    let proxied = get_keepalive(port, "", &paths);
    // Chunked by nginx: each body is its n bytes plus the chunk framing.
    for (g, n) in proxied.iter().zip(&sizes) {
        assert!(g.0 == 200 && g.1 > *n && g.1 < n + 32, "proxied /{n}: {g:?}");
    }
    let proxied_sum: u64 = proxied.iter().map(|g| g.1).sum();

    let route = |r: &'static str| [("service_name", "nginx"), ("http_route", r), ("http_response_status_code", "200")];
    let count = |m: &[Sample], r| sum(m, "http_server_request_duration_seconds_count", &route(r));
    let done = wait_for(Duration::from_secs(20), || {
        let m = scrape(mport, "/metrics");
        count(&m, "/gz/{file}") >= 10.0 && count(&m, "/proxy/{n}") >= 15.0
    });
    std::thread::sleep(Duration::from_secs(2));
    let m = scrape(mport, "/metrics");
    let dump = || agent_dump(mport, &log);
    assert!(done, "not all counted:\n{}", dump());
    assert_eq!(count(&m, "/gz/{file}"), 10.0, "{}", dump());
    assert_eq!(count(&m, "/proxy/{n}"), 15.0, "{}", dump());
    assert_eq!(sum(&m, "http_server_request_duration_seconds_count", &[]), 25.0, "{}", dump());
    // Response sizes as sent: the compressed, chunked bodies and the plain file; the proxied,
    // re-chunked bodies.
    let sizes_sum = |r| sum(&m, "http_server_response_body_size_bytes_sum", &route(r));
    assert_eq!(sizes_sum("/gz/{file}"), (5 * gz_size + 5 * 22_000) as f64, "{}", dump());
    assert_eq!(sizes_sum("/proxy/{n}"), proxied_sum as f64, "{}", dump());
    let internal = scrape(mport, "/internal/metrics");
    assert_eq!(sum(&internal, "beyla_decode_errors_total", &[]), 0.0, "{}", dump());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn root_conformance_nginx_large_request_heads() {
    let Setup { dir, port, mport, log, _procs } = setup("heads", "[\"/page/{n}\"]");
    std::fs::create_dir_all(dir.join("www/page")).unwrap();
    for n in 0..8 {
        std::fs::write(dir.join(format!("www/page/{n}")), "x".repeat(50)).unwrap();
    }

    // On one keep-alive connection: small heads around Cookies of 2.5 to 8 KB, and 100 headers.
    let mut got = Vec::new();
    for (n, cookie) in [(0, 0), (1, 2500), (2, 0), (3, 5000), (4, 8000), (5, 0)] {
        let headers = if cookie > 0 { format!("Cookie: session={}\r\n", "k".repeat(cookie)) } else { String::new() };
        got.extend(get_keepalive(port, &headers, &[format!("/page/{n}")]));
    }
    let many: String = (0..100).map(|i| format!("X-Header-{i:03}: value-{i}\r\n")).collect();
    got.extend(get_keepalive(port, &many, &["/page/6".to_string(), "/page/7".to_string()]));
    assert!(got.iter().all(|g| *g == (200, 50)), "{got:?}");

    let count = |m: &[Sample]| {
        sum(
            m,
            "http_server_request_duration_seconds_count",
            &[("http_route", "/page/{n}"), ("http_response_status_code", "200")],
        )
    };
    let done = wait_for(Duration::from_secs(20), || count(&scrape(mport, "/metrics")) >= 8.0);
    std::thread::sleep(Duration::from_secs(2));
    let m = scrape(mport, "/metrics");
    let internal = scrape(mport, "/internal/metrics");
    let dump = || agent_dump(mport, &log);
    assert!(done, "not all counted:\n{}", dump());
    assert_eq!(count(&m), 8.0, "{}", dump());
    assert_eq!(sum(&m, "http_server_request_duration_seconds_count", &[]), 8.0, "{}", dump());
    // A head cut short is counted as truncated (at most once per large head; how many depends
    // on how nginx's reads fall), never dropped.
    let reason = |r| sum(&internal, "beyla_decode_errors_total", &[("reason", r)]);
    let truncated = reason("headers_truncated");
    assert!((1.0..=3.0).contains(&truncated), "headers_truncated {truncated}\n{}", dump());
    assert_eq!(sum(&internal, "beyla_decode_errors_total", &[]), truncated, "{}", dump());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn root_conformance_nginx_pipelined_and_uploads() {
    let upstream = free_port();
    let _python = {
        let child = Command::new(python3())
            .arg(repo().join("agent/tests/conformance/stdlib_server.py"))
            .arg(upstream.to_string())
            .spawn()
            .expect("starting python3");
        let up = wait_for(Duration::from_secs(30), || std::net::TcpStream::connect(("127.0.0.1", upstream)).is_ok());
        assert!(up, "python3 http.server did not listen on {upstream}");
        Proc { child, name: "http.server".into() }
    };
    let extra = format!("location = /upload {{ client_max_body_size 8m; proxy_pass http://127.0.0.1:{upstream}; }}");
    let Setup { dir, port, mport, log, _procs } = setup_with("pipelined", "[\"/item/{n}\", \"/upload\"]", &extra);
    std::fs::create_dir_all(dir.join("www/item")).unwrap();
    let mut sizes = 0u64;
    for n in 1..=15u64 {
        std::fs::write(dir.join(format!("www/item/{n}")), "p".repeat(n as usize * 10)).unwrap();
    }

    // Five keep-alive connections, each with three requests in one write.
    for c in 0..5u64 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let n: Vec<u64> = (1..=3).map(|i| 3 * c + i).collect();
        let batch: String = n.iter().map(|n| format!("GET /item/{n} HTTP/1.1\r\nHost: nginx\r\n\r\n")).collect();
        s.write_all(batch.as_bytes()).unwrap();
        for want in &n {
            let (status, body) = read_response(&mut s);
            assert_eq!((status, body.len() as u64), (200, want * 10));
            sizes += want * 10;
        }
    }
    // Three 1 MiB uploads that wait for `100 Continue`.
    curl_uploads_1mib(&format!("http://127.0.0.1:{port}/upload"), 3);

    let server = |route| [("http_route", route)];
    let count = |m: &[Sample], name: &str, route| sum(m, name, &server(route));
    let (srv, cli) = ("http_server_request_duration_seconds_count", "http_client_request_duration_seconds_count");
    let done = wait_for(Duration::from_secs(20), || {
        let m = scrape(mport, "/metrics");
        count(&m, srv, "/item/{n}") >= 15.0 && count(&m, srv, "/upload") >= 3.0 && sum(&m, cli, &[]) >= 3.0
    });
    std::thread::sleep(Duration::from_secs(2));
    let m = scrape(mport, "/metrics");
    let dump = || agent_dump(mport, &log);
    assert!(done, "not all counted:\n{}", dump());
    assert_eq!(count(&m, srv, "/item/{n}"), 15.0, "{}", dump());
    assert_eq!(sum(&m, srv, &[("http_route", "/upload"), ("http_response_status_code", "201")]), 3.0, "{}", dump());
    assert_eq!(sum(&m, srv, &[]), 18.0, "{}", dump());
    assert_eq!(sum(&m, cli, &[("http_response_status_code", "201")]), 3.0, "{}", dump());
    assert_eq!(sum(&m, cli, &[]), 3.0, "{}", dump());
    let bytes = |name: &str, want: &[(&str, &str)]| sum(&m, name, want);
    assert_eq!(bytes("http_server_response_body_size_bytes_sum", &server("/item/{n}")), sizes as f64, "{}", dump());
    let mib3 = f64::from(3 << 20);
    assert_eq!(bytes("http_server_request_body_size_bytes_sum", &server("/upload")), mib3, "{}", dump());
    assert_eq!(bytes("http_client_request_body_size_bytes_sum", &[]), mib3, "{}", dump());
    let internal = scrape(mport, "/internal/metrics");
    assert_eq!(sum(&internal, "beyla_decode_errors_total", &[]), 0.0, "{}", dump());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `h2load` (Debian's nghttp2-client): `n` requests over `c` connections, `m` streams at once
/// on each, all answered 2xx.
fn h2load(url: &str, n: u32, c: u32, m: u32) {
    let out = Command::new("h2load")
        .args(["-n", &n.to_string(), "-c", &c.to_string(), "-m", &m.to_string(), url])
        .output()
        .unwrap_or_else(|e| panic!("h2load missing: run scripts/setup.sh (nghttp2-client): {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("status codes: {n} 2xx")), "h2load {url}:\n{text}");
}

#[test]
fn root_conformance_nginx_h2c() {
    let h2 = free_port();
    let extra = format!("listen 127.0.0.1:{h2} http2;");
    let Setup { dir, mport, log, _procs, .. } = setup_with("h2c", "[\"/h2/{file}\"]", &extra);
    std::fs::create_dir_all(dir.join("www/h2")).unwrap();
    std::fs::write(dir.join("www/h2/small.txt"), "s".repeat(300)).unwrap();
    std::fs::write(dir.join("www/h2/other.txt"), "o".repeat(1200)).unwrap();
    // Larger than one event's copy: nginx writes HEADERS and 16 KiB DATA frames in one writev,
    // and h2load's streams' responses in the same writes.
    std::fs::write(dir.join("www/h2/big.txt"), "b".repeat(30_000)).unwrap();
    std::fs::write(dir.join("www/h2/huge.txt"), "h".repeat(300_000)).unwrap();

    for _ in 0..3 {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code} %{http_version}", "--http2-prior-knowledge"])
            .arg(format!("http://127.0.0.1:{h2}/h2/small.txt"))
            .output()
            .expect("running curl");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200 2");
    }
    h2load(&format!("http://127.0.0.1:{h2}/h2/small.txt"), 30, 1, 10);
    h2load(&format!("http://127.0.0.1:{h2}/h2/other.txt"), 20, 2, 5);
    for _ in 0..3 {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", "--http2-prior-knowledge"])
            .arg(format!("http://127.0.0.1:{h2}/h2/big.txt"))
            .output()
            .expect("running curl");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200 30000");
    }
    h2load(&format!("http://127.0.0.1:{h2}/h2/big.txt"), 20, 2, 10);
    h2load(&format!("http://127.0.0.1:{h2}/h2/huge.txt"), 6, 1, 3);

    let count = |m: &[Sample]| sum(m, "http_server_request_duration_seconds_count", &[("http_route", "/h2/{file}")]);
    let total = 53.0 + 3.0 + 20.0 + 6.0;
    let done = wait_for(Duration::from_secs(20), || count(&scrape(mport, "/metrics")) >= total);
    std::thread::sleep(Duration::from_secs(2));
    let m = scrape(mport, "/metrics");
    let dump = || agent_dump(mport, &log);
    assert!(done, "not all counted:\n{}", dump());
    assert_eq!(count(&m), total, "{}", dump());
    assert_eq!(
        sum(&m, "http_server_request_duration_seconds_count", &[("http_response_status_code", "200")]),
        total,
        "{}",
        dump()
    );
    // DATA payloads: the files' bytes.
    let body = sum(&m, "http_server_response_body_size_bytes_sum", &[("http_route", "/h2/{file}")]);
    assert_eq!(body, f64::from(33 * 300 + 20 * 1200 + 23 * 30_000 + 6 * 300_000), "{}", dump());
    let internal = scrape(mport, "/internal/metrics");
    assert_eq!(sum(&internal, "beyla_decode_errors_total", &[]), 0.0, "{}", dump());
    let _ = std::fs::remove_dir_all(&dir);
}

/// php-fpm (Debian's php-fpm package) serving on the unix socket `sock`, in the foreground,
/// with two workers, as root (`-R`).
fn start_php_fpm(dir: &Path, sock: &Path) -> Master {
    let fpm = std::fs::read_dir("/usr/sbin")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("php-fpm")))
        .unwrap_or_else(|| panic!("php-fpm missing: run scripts/setup.sh (Debian package php-fpm)"));
    let conf = dir.join("php-fpm.conf");
    std::fs::write(
        &conf,
        format!(
            "[global]\nerror_log = {d}/logs/php-fpm.log\ndaemonize = no\n[www]\nlisten = {s}\nlisten.mode = 0666\n\
             pm = static\npm.max_children = 2\nuser = root\ngroup = root\n",
            d = dir.display(),
            s = sock.display()
        ),
    )
    .unwrap();
    let child = Command::new(&fpm).arg("-R").arg("-y").arg(&conf).stderr(Stdio::null()).spawn().unwrap();
    let up = wait_for(Duration::from_secs(20), || std::os::unix::net::UnixStream::connect(sock).is_ok());
    assert!(up, "{} did not listen on {}", fpm.display(), sock.display());
    Master(child)
}

#[test]
fn root_conformance_nginx_php_fpm() {
    let dir = std::env::temp_dir().join(format!("beyla-php-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let sock = dir.join("fpm.sock");
    let _fpm = start_php_fpm(&dir, &sock);
    let extra = format!(
        "location ~ \\.php$ {{ include /etc/nginx/fastcgi_params; \
         fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name; fastcgi_pass unix:{}; }}",
        sock.display()
    );
    let Setup { dir: ngx, port, mport, log, _procs } = setup_with("php", "[\"/app.php\"]", &extra);
    // 20 ms of work, then 500 + n bytes.
    std::fs::write(
        ngx.join("www/app.php"),
        "<?php usleep(20000); echo str_repeat('p', 500 + intval($_GET['n'] ?? 0));",
    )
    .unwrap();

    // 25 requests on one keep-alive connection, then 10 on connections of their own.
    let paths: Vec<String> = (0..25).map(|n| format!("/app.php?n={n}")).collect();
    let mut got = get_keepalive(port, "", &paths);
    for n in 25..35 {
        got.extend(get_keepalive(port, "Connection: close\r\n", &[format!("/app.php?n={n}")]));
    }
    assert!(got.iter().all(|g| g.0 == 200), "{got:?}");
    let wire: u64 = got.iter().map(|g| g.1).sum();

    let want = [("http_route", "/app.php"), ("http_response_status_code", "200")];
    let count = |m: &[Sample]| sum(m, "http_server_request_duration_seconds_count", &want);
    let done = wait_for(Duration::from_secs(20), || count(&scrape(mport, "/metrics")) >= 35.0);
    std::thread::sleep(Duration::from_secs(2));
    let m = scrape(mport, "/metrics");
    let dump = || agent_dump(mport, &log);
    assert!(done, "not all counted:\n{}", dump());
    assert_eq!(count(&m), 35.0, "{}", dump());
    assert_eq!(sum(&m, "http_server_request_duration_seconds_count", &[]), 35.0, "{}", dump());
    assert_eq!(sum(&m, "http_server_response_body_size_bytes_sum", &want), wire as f64, "{}", dump());
    // Each took PHP's 20 ms and less than a second: no response merged into another.
    let seconds = sum(&m, "http_server_request_duration_seconds_sum", &want);
    assert!((35.0 * 0.02..35.0).contains(&seconds), "35 requests took {seconds} s in all\n{}", dump());
    let internal = scrape(mport, "/internal/metrics");
    assert_eq!(sum(&internal, "beyla_decode_errors_total", &[]), 0.0, "{}", dump());
    let _ = std::fs::remove_dir_all(&ngx);
    let _ = std::fs::remove_dir_all(&dir);
}
