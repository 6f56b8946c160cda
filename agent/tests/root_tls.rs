//! TLS through the OpenSSL probes (`bpf/openssl.bpf.c`) on real servers and clients nobody
//! here wrote, on the real kernel (needs root; nginx, curl, h2load and Python from
//! `scripts/setup.sh`); certificates are self-signed, made by the test with `openssl req`.
//!
//! - Debian's nginx (libssl 3, socket BIO) over HTTPS: HTTP/1.1 keep-alive (several URLs in
//!   one curl), one-shot connections (`Connection: close`), HTTP/2 negotiated by ALPN from curl,
//!   and h2load with 10 streams at once on each of 2 connections, whose responses nginx writes
//!   several frames to an `SSL_write` (the plaintext's HTTP/2 frames are walked like cleartext).
//! - Python's `ssl` (`SSL_read_ex`/`SSL_write_ex`): an `http.server` wrapped in TLS whose
//!   handler calls nginx over HTTPS with urllib: client spans with `url.scheme=https`, each the
//!   child of its server span, and nginx's server span the child of that client span.
//!
//! Exact counts per route, status and `url_scheme`; the encrypted bytes are never decoded
//! (each TLS connection's handshake is `not_http` once, nothing else fails).
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::otlp::{attr, hex, res_attr, Proto, Receiver};
use common::*;

/// A self-signed certificate and its key in `dir`.
fn make_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("running openssl (Debian package openssl)");
    assert!(out.status.success(), "openssl req: {}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}

/// nginx serving `dir/www` over HTTPS (HTTP/1.1 and h2 by ALPN) on `port`; `/missing/` is 404.
fn start_nginx(dir: &Path, port: u16, cert: &Path, key: &Path) -> Master {
    let nginx = ["/usr/sbin/nginx", "/sbin/nginx"].iter().map(PathBuf::from).find(|p| p.exists());
    let nginx = nginx.unwrap_or_else(|| panic!("nginx missing: run scripts/setup.sh (Debian package nginx)"));
    for sub in ["www/ok", "tmp", "logs"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    for i in 0..10 {
        std::fs::write(dir.join(format!("www/ok/{i}")), format!("ok {i}\n").repeat(50 * (i + 1))).unwrap();
    }
    let d = dir.display();
    let conf = format!(
        "worker_processes 1;\nerror_log {d}/logs/error.log;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  default_type text/plain;\n  keepalive_requests 1000;\n\
         \x20 client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
         \x20 fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n\
         \x20 server {{\n    listen 127.0.0.1:{port} ssl http2;\n    root {d}/www;\n\
         \x20   ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
         \x20   location /missing/ {{ return 404; }}\n  }}\n}}\n",
        cert = cert.display(),
        key = key.display(),
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
    Master(child)
}

/// `curl -k` with `args`; returns one `<status> <version>` line per URL.
fn curl(args: &[&str], urls: &[String]) -> Vec<String> {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "20", "-w", "%{http_code} %{http_version}\n"])
        .args(args)
        .args(urls.iter().flat_map(|u| ["-o", "/dev/null", u.as_str()]))
        .output()
        .expect("running curl");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// Waits until the OpenSSL probes are attached to `n` processes.
fn wait_tls_probed(mport: u16, n: f64, log: &Path) {
    let probed = wait_for(Duration::from_secs(30), || {
        sum(&scrape(mport, "/internal/metrics"), "beyla_instrumented_tls_processes", &[]) >= n
    });
    assert!(probed, "OpenSSL probes not attached to {n} process(es):\n{}", agent_log(log));
}

/// Server requests of `svc` counted with `route`, `status` and scheme https.
fn https_served(m: &[Sample], svc: &str, route: &str, status: &str) -> u64 {
    let l =
        [("service_name", svc), ("http_route", route), ("http_response_status_code", status), ("url_scheme", "https")];
    sum(m, "http_server_request_duration_seconds_count", &l) as u64
}

/// The agent's metrics, its own counters that are not 0, and its log, for assertion messages.
fn metrics_dump(mport: u16, log: &Path) -> String {
    let internal = http_get(mport, "/internal/metrics").unwrap_or_default();
    let internal: Vec<&str> = internal.lines().filter(|l| !l.starts_with('#') && !l.ends_with(" 0")).collect();
    format!(
        "{}\n--- internal metrics (not 0):\n{}\n--- agent log:\n{}",
        http_get(mport, "/metrics").unwrap_or_default(),
        internal.join("\n"),
        agent_log(log)
    )
}

/// One line per span (service, kind, name, ids, peer port): what a failed link assertion shows.
fn span_table(spans: &[common::otlp::Got]) -> String {
    let mut rows: Vec<String> = spans
        .iter()
        .map(|g| {
            let s = &g.span;
            format!(
                "{:<10} kind {} {:<22} trace {} span {} parent {} start {} server.port {:?}",
                res_attr(Some(&g.resource), "service.name").unwrap_or_default(),
                s.kind,
                s.name,
                hex(&s.trace_id),
                hex(&s.span_id),
                hex(&s.parent_span_id),
                s.start_time_unix_nano,
                attr(&s.attributes, "server.port"),
            )
        })
        .collect();
    rows.sort_by_key(|r| r.rsplit(" start ").next().map(str::to_owned));
    rows.join("\n")
}

/// Only TLS handshakes failed to decode (`not_http`, once per connection at most), never
/// plaintext, and every plaintext transfer had its socket.
fn assert_plaintext_all_decoded(mport: u16) {
    let internal = scrape(mport, "/internal/metrics");
    let errors = sum(&internal, "beyla_decode_errors_total", &[]);
    let not_http = sum(&internal, "beyla_decode_errors_total", &[("reason", "not_http")]);
    assert_eq!(errors, not_http, "{}", http_get(mport, "/internal/metrics").unwrap_or_default());
    assert_eq!(sum(&internal, "beyla_tls_unlinked_transfers_total", &[]), 0.0);
}

/// A conformance app (`conformance/<script>`, run by `interpreter`) serving HTTPS on `port` with
/// the certificate, calling `downstream`.
fn start_script(interpreter: &str, script: &str, port: u16, cert: &Path, key: &Path, downstream: &str) -> Proc {
    let child = Command::new(interpreter)
        .arg(repo().join("agent/tests/conformance").join(script))
        .arg(port.to_string())
        .arg(cert)
        .arg(key)
        .arg(downstream)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {interpreter} {script}: {e}"));
    let p = Proc { child, name: script.into() };
    let up = wait_for(Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    assert!(up, "{script} did not listen on {port}");
    p
}

/// The Python HTTPS app (`conformance/tls_app.py`) on `port`, calling `downstream`.
fn start_python(port: u16, cert: &Path, key: &Path, downstream: &str) -> Proc {
    start_script(&python3(), "tls_app.py", port, cert, key, downstream)
}

#[test]
fn root_tls_openssl_nginx_and_python() {
    require_root();
    let dir = std::env::temp_dir().join(format!("beyla-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = make_cert(&dir);
    let receiver = Receiver::start(Proto::Grpc, free_port());
    let (port, py, mport) = (free_port(), free_port(), free_port());
    let yaml = format!(
        "discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n  instrument:\n\
         \x20   - {{ open_ports: \"{port}\", name: nginx }}\n\
         \x20   - {{ open_ports: \"{py}\", name: pytls }}\n\
         prometheus_export:\n  port: {mport}\n\
         otel_traces_export:\n  endpoint: {ep}\n  protocol: grpc\n  batch_timeout: 200ms\n\
         routes:\n  patterns: [\"/ok/{{n}}\", \"/missing/{{n}}\", \"/call/{{n}}\", \"/hello/{{n}}\"]\n",
        ep = receiver.endpoint(),
    );
    let (_agent, log) = start_agent(&yaml, &[], "tls-openssl");
    let nginx = start_nginx(&dir, port, &cert, &key);
    let base = format!("https://127.0.0.1:{port}");
    let python = start_python(py, &cert, &key, &base);
    // nginx's master and worker, and Python; the probes attach to all three (libssl.so.3).
    wait_instrumented(mport, 3.0, &log);
    wait_tls_probed(mport, 3.0, &log);

    // nginx: 6 keep-alive HTTP/1.1 requests on one connection, 3 one-shot 404s, 4 HTTP/2
    // requests on one connection, then h2load: 40 requests, 2 connections, 10 streams at once.
    let urls = |path: &str, n: usize| (1..=n).map(|i| format!("{base}{path}{i}")).collect::<Vec<_>>();
    assert_eq!(curl(&["--http1.1"], &urls("/ok/", 6)), vec!["200 1.1"; 6]);
    for u in urls("/missing/", 3) {
        assert_eq!(curl(&["--http1.1", "-H", "Connection: close"], &[u]), ["404 1.1"]);
    }
    assert_eq!(curl(&["--http2"], &urls("/ok/", 4)), vec!["200 2"; 4]);
    let h2load = Command::new("h2load")
        .args(["-n", "40", "-c", "2", "-m", "10"])
        .arg(format!("{base}/ok/9"))
        .output()
        .expect("running h2load (Debian package nghttp2-client)");
    let h2text = String::from_utf8_lossy(&h2load.stdout);
    assert!(h2text.contains("40 succeeded") && h2text.contains("TLS Protocol"), "h2load:\n{h2text}");

    // What is not TLS on the HTTPS port: a plain HTTP request, which nginx answers in the clear
    // (400, "The plain HTTP request was sent to HTTPS port", counted as such with scheme http),
    // and a client that gives up in the handshake (TLS 1.0, which nginx refuses): no request.
    let plain = Command::new("curl")
        .args(["-s", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}/ok/1"))
        .output()
        .expect("running curl");
    assert_eq!(String::from_utf8_lossy(&plain.stdout), "400");
    let refused = Command::new("curl")
        .args(["-sk", "--max-time", "10", "--tlsv1.0", "--tls-max", "1.0", "-o", "/dev/null"])
        .arg(format!("{base}/ok/1"))
        .status()
        .expect("running curl");
    assert!(!refused.success(), "nginx accepted TLS 1.0?");

    // Python: 5 requests to its own routes, 2 misses, 3 calls to nginx over HTTPS.
    let py_base = format!("https://127.0.0.1:{py}");
    let py_urls = |path: &str, n: usize| (1..=n).map(|i| format!("{py_base}{path}{i}")).collect::<Vec<_>>();
    assert_eq!(curl(&[], &py_urls("/hello/", 5)), vec!["200 1.1"; 5]);
    assert_eq!(curl(&[], &py_urls("/missing/", 2)), vec!["404 1.1"; 2]);
    for u in py_urls("/call/", 3) {
        assert_eq!(curl(&[], &[u]), ["200 1.1"]);
    }

    let total = 6 + 3 + 4 + 40 + 1 + 3 + 5 + 2 + 3;
    let done = wait_for(Duration::from_secs(30), || {
        let m = scrape(mport, "/metrics");
        sum(&m, "http_server_request_duration_seconds_count", &[]) >= total as f64
            && sum(&m, "http_client_request_duration_seconds_count", &[]) >= 3.0
    });
    std::thread::sleep(Duration::from_secs(1));
    let m = scrape(mport, "/metrics");
    let dump = || metrics_dump(mport, &log);
    assert!(done, "requests not all counted:\n{}", dump());
    assert_eq!(https_served(&m, "nginx", "/ok/{n}", "200"), 6 + 4 + 40 + 3, "{}", dump());
    assert_eq!(https_served(&m, "nginx", "/missing/{n}", "404"), 3, "{}", dump());
    let plain = [("service_name", "nginx"), ("http_response_status_code", "400"), ("url_scheme", "http")];
    assert_eq!(sum(&m, "http_server_request_duration_seconds_count", &plain), 1.0, "{}", dump());
    assert_eq!(https_served(&m, "pytls", "/hello/{n}", "200"), 5, "{}", dump());
    assert_eq!(https_served(&m, "pytls", "/missing/{n}", "404"), 2, "{}", dump());
    assert_eq!(https_served(&m, "pytls", "/call/{n}", "200"), 3, "{}", dump());
    assert_eq!(sum(&m, "http_server_request_duration_seconds_count", &[]), total as f64, "{}", dump());
    let client = [("service_name", "pytls"), ("http_response_status_code", "200"), ("url_scheme", "https")];
    assert_eq!(sum(&m, "http_client_request_duration_seconds_count", &client), 3.0, "{}", dump());
    assert_eq!(sum(&m, "http_client_request_duration_seconds_count", &[]), 3.0, "{}", dump());
    // Response sizes are the plaintext's: /ok/9 is 50 * 10 lines of "ok 9\n".
    let sizes = [("service_name", "nginx"), ("http_route", "/ok/{n}"), ("http_response_status_code", "200")];
    let body = sum(&m, "http_server_response_body_size_bytes_sum", &sizes);
    let want: u64 = (1..=6).chain(1..=4).chain(1..=3).map(|i| 250 * (i + 1)).sum::<u64>() + 40 * 2500;
    assert_eq!(body as u64, want, "{}", dump());

    assert_plaintext_all_decoded(mport);

    // Traces: each /call's client span is its child, and nginx's span the client span's child.
    let got =
        wait_for(Duration::from_secs(20), || receiver.spans().iter().filter(|g| g.span.kind != 1).count() >= total + 3);
    let spans: Vec<_> = receiver.spans().into_iter().filter(|g| g.span.kind != 1).collect();
    assert!(got, "{} spans", spans.len());
    let svc = |g: &common::otlp::Got| res_attr(Some(&g.resource), "service.name").unwrap_or_default();
    let calls: Vec<_> = spans.iter().filter(|g| svc(g) == "pytls" && g.span.name == "GET /call/{n}").collect();
    assert_eq!(calls.len(), 3);
    for call in calls {
        assert_eq!(attr(&call.span.attributes, "url.scheme").as_deref(), Some("https"));
        let client = spans
            .iter()
            .find(|g| g.span.kind == 3 && g.span.parent_span_id == call.span.span_id)
            .unwrap_or_else(|| panic!("no client span under a /call"));
        assert_eq!(client.span.trace_id, call.span.trace_id);
        let full = attr(&client.span.attributes, "url.full").unwrap_or_default();
        assert!(full.starts_with(&format!("{base}/ok/")), "{full}");
        let back = spans
            .iter()
            .find(|g| svc(g) == "nginx" && g.span.parent_span_id == client.span.span_id)
            .unwrap_or_else(|| {
                let nginx: Vec<String> = spans
                    .iter()
                    .filter(|g| svc(g) == "nginx" && g.span.parent_span_id.len() == 8)
                    .map(|g| {
                        format!(
                            "{} parent {} trace {}",
                            g.span.name,
                            common::otlp::hex(&g.span.parent_span_id),
                            common::otlp::hex(&g.span.trace_id)
                        )
                    })
                    .collect();
                panic!(
                    "no nginx span under the call {} (trace {}); nginx spans with a parent: {nginx:?}",
                    common::otlp::hex(&client.span.span_id),
                    common::otlp::hex(&client.span.trace_id)
                )
            });
        assert_eq!(back.span.trace_id, call.span.trace_id);
    }

    // `beyla doctor` lists each selected process's OpenSSL and says it is probed.
    let cfg = dir.join("doctor.yml");
    std::fs::write(&cfg, &yaml).unwrap();
    let out = Command::new(agent_bin()).arg("doctor").arg("--config").arg(&cfg).output().expect("beyla doctor");
    let text = String::from_utf8_lossy(&out.stdout);
    for (pid, service) in [(nginx.0.id(), "nginx"), (python.pid(), "pytls")] {
        let row = text.lines().find(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.first() == Some(&pid.to_string().as_str()) && w.get(2).is_some_and(|l| l.ends_with("/libssl.so.3"))
        });
        let row = row.unwrap_or_else(|| panic!("no doctor row for {service} ({pid}):\n{text}"));
        let words: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(words[1], service, "{row}");
        assert_eq!(words[3], "yes", "{row}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// TLS through memory BIOs, where the program encrypts into memory and writes the records to
/// the socket itself, outside any OpenSSL call: Node's https (the official node binary, with
/// OpenSSL linked in and its own BIO) and Python's asyncio (`ssl.SSLObject` on `MemoryBIO`s),
/// each as a server and as a client of nginx over HTTPS. Their sockets are named by the records'
/// first bytes (`bpf/include/maps/ssl_ciphers.h`); before, all of it was encrypted bytes.
#[test]
fn root_tls_memory_bios_node_and_asyncio() {
    require_root();
    let dir = std::env::temp_dir().join(format!("beyla-tls-membio-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = make_cert(&dir);
    let receiver = Receiver::start(Proto::Grpc, free_port());
    let (port, node, aio, mport) = (free_port(), free_port(), free_port(), free_port());
    let yaml = format!(
        "discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n  instrument:\n\
         \x20   - {{ open_ports: \"{port}\", name: nginx }}\n\
         \x20   - {{ open_ports: \"{node}\", name: nodetls }}\n\
         \x20   - {{ open_ports: \"{aio}\", name: aiotls }}\n\
         prometheus_export:\n  port: {mport}\n\
         otel_traces_export:\n  endpoint: {ep}\n  protocol: grpc\n  batch_timeout: 200ms\n\
         routes:\n  patterns: [\"/ok/{{n}}\", \"/missing/{{n}}\", \"/call/{{n}}\", \"/hello/{{n}}\"]\n",
        ep = receiver.endpoint(),
    );
    let (_agent, log) = start_agent(&yaml, &[], "tls-membio");
    let _nginx = start_nginx(&dir, port, &cert, &key);
    let base = format!("https://127.0.0.1:{port}");
    let _node = start_script("node", "tls_app.js", node, &cert, &key, &base);
    let _aio = start_script(&python3(), "tls_asyncio.py", aio, &cert, &key, &base);
    wait_instrumented(mport, 4.0, &log);
    wait_tls_probed(mport, 4.0, &log);

    for app in [node, aio] {
        let b = format!("https://127.0.0.1:{app}");
        let urls = |path: &str, n: usize| (1..=n).map(|i| format!("{b}{path}{i}")).collect::<Vec<_>>();
        assert_eq!(curl(&[], &urls("/hello/", 5)), vec!["200 1.1"; 5]);
        assert_eq!(curl(&[], &urls("/missing/", 2)), vec!["404 1.1"; 2]);
        for u in urls("/call/", 3) {
            assert_eq!(curl(&[], &[u]), ["200 1.1"]);
        }
    }

    let total = 2 * (5 + 2 + 3) + 6;
    let done = wait_for(Duration::from_secs(30), || {
        let m = scrape(mport, "/metrics");
        sum(&m, "http_server_request_duration_seconds_count", &[]) >= total as f64
            && sum(&m, "http_client_request_duration_seconds_count", &[]) >= 6.0
    });
    std::thread::sleep(Duration::from_secs(1));
    let m = scrape(mport, "/metrics");
    let dump = || metrics_dump(mport, &log);
    assert!(done, "requests not all counted:\n{}", dump());
    for svc in ["nodetls", "aiotls"] {
        assert_eq!(https_served(&m, svc, "/hello/{n}", "200"), 5, "{svc}\n{}", dump());
        assert_eq!(https_served(&m, svc, "/missing/{n}", "404"), 2, "{svc}\n{}", dump());
        assert_eq!(https_served(&m, svc, "/call/{n}", "200"), 3, "{svc}\n{}", dump());
        let client = [("service_name", svc), ("http_response_status_code", "200"), ("url_scheme", "https")];
        assert_eq!(sum(&m, "http_client_request_duration_seconds_count", &client), 3.0, "{svc}\n{}", dump());
    }
    assert_eq!(https_served(&m, "nginx", "/ok/{n}", "200"), 6, "{}", dump());
    assert_eq!(sum(&m, "http_server_request_duration_seconds_count", &[]), total as f64, "{}", dump());
    assert_eq!(sum(&m, "http_client_request_duration_seconds_count", &[]), 6.0, "{}", dump());
    assert_plaintext_all_decoded(mport);

    // Each /call's client span is its child, and nginx's span the client span's child.
    let got =
        wait_for(Duration::from_secs(20), || receiver.spans().iter().filter(|g| g.span.kind != 1).count() >= total + 6);
    let spans: Vec<_> = receiver.spans().into_iter().filter(|g| g.span.kind != 1).collect();
    assert!(got, "{} spans", spans.len());
    let svc = |g: &common::otlp::Got| res_attr(Some(&g.resource), "service.name").unwrap_or_default();
    for app in ["nodetls", "aiotls"] {
        let calls: Vec<_> = spans.iter().filter(|g| svc(g) == app && g.span.name == "GET /call/{n}").collect();
        assert_eq!(calls.len(), 3, "{app}");
        for call in calls {
            let client = spans
                .iter()
                .find(|g| g.span.kind == 3 && g.span.parent_span_id == call.span.span_id)
                .unwrap_or_else(|| panic!("{app}: no client span under a /call"));
            assert_eq!(client.span.trace_id, call.span.trace_id);
            let full = attr(&client.span.attributes, "url.full").unwrap_or_default();
            assert!(full.starts_with(&format!("{base}/ok/")), "{app}: {full}");
            let back = spans.iter().find(|g| svc(g) == "nginx" && g.span.parent_span_id == client.span.span_id);
            assert!(back.is_some_and(|b| b.span.trace_id == call.span.trace_id), "{app}: no nginx span under the call");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// curl (libcurl on the shared libssl) as a traced client of nginx over HTTPS. curl is found by
/// its executable once it runs (discovery polls), so what it sends in its first milliseconds
/// is not read: it reads a local file twice first, then five URLs at one a second on one connection,
/// which are all counted, as client spans with `url.scheme` https, each the parent of nginx's.
#[test]
fn root_tls_curl_client() {
    require_root();
    let dir = std::env::temp_dir().join(format!("beyla-tls-curl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = make_cert(&dir);
    let receiver = Receiver::start(Proto::Grpc, free_port());
    let (port, mport) = (free_port(), free_port());
    let yaml = format!(
        "discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n  instrument:\n\
         \x20   - {{ open_ports: \"{port}\", name: nginx }}\n\
         \x20   - {{ exe_path: \"*/curl\", name: curlclient }}\n\
         prometheus_export:\n  port: {mport}\n\
         otel_traces_export:\n  endpoint: {ep}\n  protocol: grpc\n  batch_timeout: 200ms\n\
         routes:\n  patterns: [\"/ok/{{n}}\", \"/missing/{{n}}\"]\n",
        ep = receiver.endpoint(),
    );
    let (_agent, log) = start_agent(&yaml, &[], "tls-curl");
    let _nginx = start_nginx(&dir, port, &cert, &key);
    wait_instrumented(mport, 1.0, &log);
    wait_tls_probed(mport, 1.0, &log);

    let base = format!("https://127.0.0.1:{port}");
    let local = vec!["file:///dev/null".to_string(); 2];
    let urls: Vec<String> = local.into_iter().chain((1..=5).map(|i| format!("{base}/ok/{i}"))).collect();
    let got = curl(&["--http1.1", "--rate", "1/s"], &urls);
    assert_eq!(got, [vec!["000 0"; 2], vec!["200 1.1"; 5]].concat());

    let client = |route: &str| {
        let m = scrape(mport, "/metrics");
        let l = [("service_name", "curlclient"), ("http_route", route), ("url_scheme", "https")];
        sum(&m, "http_client_request_duration_seconds_count", &l)
    };
    let done = wait_for(Duration::from_secs(30), || client("/ok/{n}") >= 5.0);
    std::thread::sleep(Duration::from_secs(1));
    let dump = || metrics_dump(mport, &log);
    assert!(done, "curl's requests not counted:\n{}", dump());
    assert_eq!(client("/ok/{n}"), 5.0, "{}", dump());
    let m = scrape(mport, "/metrics");
    assert_eq!(sum(&m, "http_client_request_duration_seconds_count", &[]), 5.0, "{}", dump());
    assert_eq!(https_served(&m, "nginx", "/ok/{n}", "200"), 5, "{}", dump());
    assert_plaintext_all_decoded(mport);

    // Each of curl's /ok requests is the parent of nginx's.
    let spans_of = |kind: i32| -> Vec<common::otlp::Got> {
        let svc = |g: &common::otlp::Got| res_attr(Some(&g.resource), "service.name").unwrap_or_default();
        receiver.spans().into_iter().filter(|g| g.span.kind == kind && (kind != 3 || svc(g) == "curlclient")).collect()
    };
    let got = wait_for(Duration::from_secs(20), || spans_of(3).len() >= 5 && spans_of(2).len() >= 5);
    assert!(got, "{} client and {} server spans", spans_of(3).len(), spans_of(2).len());
    let servers = spans_of(2);
    let oks: Vec<_> = spans_of(3).into_iter().filter(|g| g.span.name == "GET /ok/{n}").collect();
    assert_eq!(oks.len(), 5);
    for c in oks {
        assert!(attr(&c.span.attributes, "url.full").is_some_and(|u| u.starts_with(&format!("{base}/ok/"))));
        let served = servers.iter().find(|s| s.span.parent_span_id == c.span.span_id);
        assert!(served.is_some_and(|s| s.span.trace_id == c.span.trace_id), "no nginx span under a curl request");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Debian's own Node.js (18, `testapps/fetch-debian-node.sh`), which uses the system's shared
/// libssl where the official binaries link OpenSSL in: its https server and client (memory
/// BIOs, here libcrypto's `BIO_write`) against nginx, exact counts and links, and `beyla doctor`
/// naming the shared libssl.
#[test]
fn root_tls_debian_node_shared_libssl() {
    require_root();
    let node = repo().join("testapps/build/debian-node/node");
    assert!(node.exists(), "{} missing: run testapps/build.sh", node.display());
    let dir = std::env::temp_dir().join(format!("beyla-tls-debnode-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = make_cert(&dir);
    let receiver = Receiver::start(Proto::Grpc, free_port());
    let (port, app, mport) = (free_port(), free_port(), free_port());
    let yaml = format!(
        "discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n  instrument:\n\
         \x20   - {{ open_ports: \"{port}\", name: nginx }}\n\
         \x20   - {{ open_ports: \"{app}\", name: debnode }}\n\
         prometheus_export:\n  port: {mport}\n\
         otel_traces_export:\n  endpoint: {ep}\n  protocol: grpc\n  batch_timeout: 200ms\n\
         routes:\n  patterns: [\"/ok/{{n}}\", \"/missing/{{n}}\", \"/call/{{n}}\", \"/hello/{{n}}\"]\n",
        ep = receiver.endpoint(),
    );
    let (_agent, log) = start_agent(&yaml, &[], "tls-debnode");
    let _nginx = start_nginx(&dir, port, &cert, &key);
    let base = format!("https://127.0.0.1:{port}");
    let node_app = start_script(node.to_str().unwrap(), "tls_app.js", app, &cert, &key, &base);
    // nginx's master and worker, and node: waiting for two let the requests beat node's probes.
    wait_instrumented(mport, 3.0, &log);
    wait_tls_probed(mport, 3.0, &log);

    let b = format!("https://127.0.0.1:{app}");
    let urls = |path: &str, n: usize| (1..=n).map(|i| format!("{b}{path}{i}")).collect::<Vec<_>>();
    assert_eq!(curl(&[], &urls("/hello/", 5)), vec!["200 1.1"; 5]);
    assert_eq!(curl(&[], &urls("/missing/", 2)), vec!["404 1.1"; 2]);
    for u in urls("/call/", 3) {
        assert_eq!(curl(&[], &[u]), ["200 1.1"]);
    }

    let done = wait_for(Duration::from_secs(30), || {
        let m = scrape(mport, "/metrics");
        sum(&m, "http_server_request_duration_seconds_count", &[]) >= 13.0
            && sum(&m, "http_client_request_duration_seconds_count", &[]) >= 3.0
    });
    std::thread::sleep(Duration::from_secs(1));
    let m = scrape(mport, "/metrics");
    let dump = || metrics_dump(mport, &log);
    assert!(done, "requests not all counted:\n{}", dump());
    assert_eq!(https_served(&m, "debnode", "/hello/{n}", "200"), 5, "{}", dump());
    assert_eq!(https_served(&m, "debnode", "/missing/{n}", "404"), 2, "{}", dump());
    assert_eq!(https_served(&m, "debnode", "/call/{n}", "200"), 3, "{}", dump());
    assert_eq!(https_served(&m, "nginx", "/ok/{n}", "200"), 3, "{}", dump());
    assert_eq!(sum(&m, "http_server_request_duration_seconds_count", &[]), 13.0, "{}", dump());
    let client = [("service_name", "debnode"), ("http_response_status_code", "200"), ("url_scheme", "https")];
    assert_eq!(sum(&m, "http_client_request_duration_seconds_count", &client), 3.0, "{}", dump());
    assert_eq!(sum(&m, "http_client_request_duration_seconds_count", &[]), 3.0, "{}", dump());
    assert_plaintext_all_decoded(mport);

    // Each /call's client span is its child, and nginx's span the client span's child.
    let got = wait_for(Duration::from_secs(20), || receiver.spans().iter().filter(|g| g.span.kind != 1).count() >= 16);
    let spans: Vec<_> = receiver.spans().into_iter().filter(|g| g.span.kind != 1).collect();
    assert!(got, "{} spans", spans.len());
    let svc = |g: &common::otlp::Got| res_attr(Some(&g.resource), "service.name").unwrap_or_default();
    let calls: Vec<_> = spans.iter().filter(|g| svc(g) == "debnode" && g.span.name == "GET /call/{n}").collect();
    assert_eq!(calls.len(), 3);
    for call in calls {
        let client = spans
            .iter()
            .find(|g| g.span.kind == 3 && g.span.parent_span_id == call.span.span_id)
            .expect("no client span under a /call");
        assert_eq!(client.span.trace_id, call.span.trace_id);
        let back = spans.iter().find(|g| svc(g) == "nginx" && g.span.parent_span_id == client.span.span_id);
        assert!(back.is_some_and(|b| b.span.trace_id == call.span.trace_id), "no nginx span under the call");
    }

    // `beyla doctor`: this node's OpenSSL is the shared libssl, probed there.
    let cfg = dir.join("doctor.yml");
    std::fs::write(&cfg, &yaml).unwrap();
    let out = Command::new(agent_bin()).arg("doctor").arg("--config").arg(&cfg).output().expect("beyla doctor");
    let text = String::from_utf8_lossy(&out.stdout);
    let pid = node_app.pid().to_string();
    let rows: Vec<&str> = text.lines().filter(|l| l.split_whitespace().next() == Some(pid.as_str())).collect();
    assert!(
        rows.iter().any(|r| r.contains("/libssl.so.3") && r.split_whitespace().nth(3) == Some("yes")),
        "no probed libssl row for debnode ({pid}):\n{text}"
    );
    assert!(!rows.iter().any(|r| r.contains("/usr/bin/node")), "its executable has no OpenSSL:\n{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Debian's puma (Ruby) over TLS: its MiniSSL engine runs OpenSSL on memory BIOs, injecting
/// what Ruby read from the socket and extracting what Ruby writes to it. Lengths, chunked
/// streams and 404s on keep-alive and one-shot connections, exact counts and sizes.
#[test]
fn root_tls_puma() {
    require_root();
    let puma = ["/usr/bin/puma"].iter().map(PathBuf::from).find(|p| p.exists());
    let puma = puma.unwrap_or_else(|| panic!("puma missing: run scripts/setup.sh (Debian package puma)"));
    let dir = std::env::temp_dir().join(format!("beyla-tls-puma-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = make_cert(&dir);
    let (port, mport) = (free_port(), free_port());
    let yaml = format!(
        "discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n  instrument:\n\
         \x20   - {{ open_ports: \"{port}\", name: puma }}\n\
         prometheus_export:\n  port: {mport}\n\
         routes:\n  patterns: [\"/item/{{n}}\", \"/stream/{{n}}\", \"/missing/{{n}}\"]\n",
    );
    let (_agent, log) = start_agent(&yaml, &[], "tls-puma");
    let bind = format!("ssl://127.0.0.1:{port}?key={}&cert={}&verify_mode=none", key.display(), cert.display());
    let child = Command::new(&puma)
        .args(["-e", "production", "-t", "1:4", "-b", &bind])
        .arg(repo().join("agent/tests/conformance/puma_app.ru"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting puma");
    let _puma = Proc { child, name: "puma".into() };
    let up = wait_for(Duration::from_secs(60), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    assert!(up, "puma did not listen on {port}");
    wait_instrumented(mport, 1.0, &log);
    wait_tls_probed(mport, 1.0, &log);

    let base = format!("https://127.0.0.1:{port}");
    let items: Vec<String> = [10, 3000, 20000, 7].iter().map(|n| format!("{base}/item/{n}")).collect();
    let streams: Vec<String> = [5, 300].iter().map(|n| format!("{base}/stream/{n}")).collect();
    // One keep-alive connection, then one-shot ones.
    let keepalive: Vec<String> = items.iter().chain(&streams).cloned().chain([format!("{base}/missing/1")]).collect();
    let want: Vec<&str> = ["200 1.1"; 6].into_iter().chain(["404 1.1"]).collect();
    assert_eq!(curl(&[], &keepalive), want);
    for u in items.iter().take(2) {
        assert_eq!(curl(&["-H", "Connection: close"], std::slice::from_ref(u)), ["200 1.1"]);
    }

    let count = |m: &[Sample], route: &str, status: &str| https_served(m, "puma", route, status);
    let done = wait_for(Duration::from_secs(30), || {
        sum(&scrape(mport, "/metrics"), "http_server_request_duration_seconds_count", &[]) >= 9.0
    });
    std::thread::sleep(Duration::from_secs(1));
    let m = scrape(mport, "/metrics");
    let dump = || metrics_dump(mport, &log);
    assert!(done, "requests not all counted:\n{}", dump());
    assert_eq!(count(&m, "/item/{n}", "200"), 6, "{}", dump());
    assert_eq!(count(&m, "/stream/{n}", "200"), 2, "{}", dump());
    assert_eq!(count(&m, "/missing/{n}", "404"), 1, "{}", dump());
    assert_eq!(sum(&m, "http_server_request_duration_seconds_count", &[]), 9.0, "{}", dump());
    let item_sizes = [("service_name", "puma"), ("http_route", "/item/{n}")];
    let sizes = sum(&m, "http_server_response_body_size_bytes_sum", &item_sizes) as u64;
    assert_eq!(sizes, 10 + 3000 + 20000 + 7 + 10 + 3000, "{}", dump());
    assert_plaintext_all_decoded(mport);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A keep-alive client (`conformance/tls_client.py`) that connected and made a request before
/// the agent started, then makes `n` more on the same connection.
struct EarlyClient {
    proc: Proc,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl EarlyClient {
    fn start(port: u16, prefix: &str) -> EarlyClient {
        let mut child = Command::new(python3())
            .arg(repo().join("agent/tests/conformance/tls_client.py"))
            .args(["127.0.0.1", &port.to_string(), prefix])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting tls_client.py");
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        EarlyClient { proc: Proc { child, name: "tls_client.py".into() }, out }
    }

    /// Statuses of `n` more requests on the connection.
    fn more(&mut self, n: usize) -> String {
        use std::io::Write;
        writeln!(self.proc.child.stdin.as_mut().unwrap(), "{n}").unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut self.out, &mut line).unwrap();
        line.trim().to_string()
    }
}

/// The agent attaches while TLS connections are open. nginx (socket BIO): the next read on the
/// connection goes through the socket inside SSL_read, which names it, and every later request
/// is counted exactly. Node (memory BIO): the connection's handshake is over, so the first
/// request read after the agent attached has no socket (its plaintext is counted as unlinked,
/// not guessed at), nor has its response (written to memory); that response's records, sent
/// to the socket, name it, and every later request is counted exactly. A connection opened
/// after the agent is decoded from its first request.
#[test]
fn root_tls_attach_mid_connection() {
    require_root();
    let dir = std::env::temp_dir().join(format!("beyla-tls-mid-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = make_cert(&dir);
    let (port, node, mport) = (free_port(), free_port(), free_port());
    let _nginx = start_nginx(&dir, port, &cert, &key);
    let base = format!("https://127.0.0.1:{port}");
    let _node = start_script("node", "tls_app.js", node, &cert, &key, &base);
    let mut to_nginx = EarlyClient::start(port, "/ok/");
    let mut to_node = EarlyClient::start(node, "/hello/");

    let yaml = format!(
        "discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n  instrument:\n\
         \x20   - {{ open_ports: \"{port}\", name: nginx }}\n\
         \x20   - {{ open_ports: \"{node}\", name: nodetls }}\n\
         prometheus_export:\n  port: {mport}\n\
         routes:\n  patterns: [\"/ok/{{n}}\", \"/hello/{{n}}\"]\n",
    );
    let (_agent, log) = start_agent(&yaml, &[], "tls-mid");
    wait_instrumented(mport, 3.0, &log);
    wait_tls_probed(mport, 3.0, &log);

    assert_eq!(to_nginx.more(5), "200 200 200 200 200");
    assert_eq!(to_node.more(4), "200 200 200 200");
    // A connection to Node opened now: decoded.
    let fresh: Vec<String> = (1..=3).map(|i| format!("https://127.0.0.1:{node}/hello/{i}")).collect();
    assert_eq!(curl(&[], &fresh), vec!["200 1.1"; 3]);

    let count = |m: &[Sample], svc: &str, route: &str| https_served(m, svc, route, "200");
    let unlinked = || sum(&scrape(mport, "/internal/metrics"), "beyla_tls_unlinked_transfers_total", &[]);
    let done = wait_for(Duration::from_secs(30), || {
        sum(&scrape(mport, "/metrics"), "http_server_request_duration_seconds_count", &[]) >= 11.0 && unlinked() >= 2.0
    });
    std::thread::sleep(Duration::from_secs(3));
    let m = scrape(mport, "/metrics");
    let dump =
        || format!("{}\n--- agent log:\n{}", http_get(mport, "/internal/metrics").unwrap_or_default(), agent_log(&log));
    assert!(done, "requests not all counted:\n{}", dump());
    assert_eq!(count(&m, "nginx", "/ok/{n}"), 5, "{}", dump());
    assert_eq!(count(&m, "nodetls", "/hello/{n}"), 3 + 3, "{}", dump());
    assert_eq!(sum(&m, "http_server_request_duration_seconds_count", &[]), 11.0, "{}", dump());
    // The early Node connection's first request and response after the agent attached.
    assert_eq!(unlinked(), 2.0, "{}", dump());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The PostgreSQL server's programs (`initdb`, `postgres`, `psql`): Debian's newest.
fn pg_bin(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("/usr/lib/postgresql (scripts/setup.sh installs postgresql)")
        .flatten()
        .map(|e| e.path().join("bin"))
        .collect();
    dirs.sort();
    dirs.pop().expect("a PostgreSQL version under /usr/lib/postgresql").join(name)
}

/// PostgreSQL over TLS (`ssl = on`, libpq's `sslmode=require`): psql and the server's backends
/// both use OpenSSL with a BIO of their own that reads and writes the socket inside the call.
/// The backends are forked per connection by the traced postmaster and get the probes when the
/// agent learns of the fork. Exact counts per statement on the client, and the server's SERVER
/// span of each, the child of the client's.
#[test]
fn root_tls_postgresql() {
    use std::io::{BufRead, Write};
    require_root();
    let dir = std::env::temp_dir().join(format!("beyla-tls-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = make_cert(&dir);
    std::fs::write(dir.join("pw"), "s3cret-admin-pw\n").unwrap();
    let chown = Command::new("chown").args(["-R", "postgres"]).arg(&dir).status().unwrap();
    assert!(chown.success());
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let as_postgres = |prog: PathBuf| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=postgres", "--regid=postgres", "--init-groups", "--"]).arg(prog);
        c
    };
    let out = as_postgres(pg_bin("initdb"))
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-U", "postgres", "--auth=scram-sha-256"])
        .arg(format!("--pwfile={}", dir.join("pw").display()))
        .output()
        .expect("running initdb");
    assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
    let (pg, mport) = (free_port(), free_port());
    let child = as_postgres(pg_bin("postgres"))
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-p", &pg.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "ssl=on"])
        .arg("-c")
        .arg(format!("ssl_cert_file={}", cert.display()))
        .arg("-c")
        .arg(format!("ssl_key_file={}", key.display()))
        .arg("-k")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting postgres");
    let _pg = Proc { child, name: "postgres".into() };
    assert!(wait_for(Duration::from_secs(30), || std::net::TcpStream::connect(("127.0.0.1", pg)).is_ok()));

    let receiver = Receiver::start(Proto::Grpc, free_port());
    let yaml = format!(
        "discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n  instrument:\n\
         \x20   - {{ open_ports: \"{pg}\", name: pgserver }}\n\
         \x20   - {{ exe_path: \"*/bin/psql\", name: psql }}\n\
         prometheus_export:\n  port: {mport}\n\
         otel_traces_export:\n  endpoint: {ep}\n  protocol: grpc\n  batch_timeout: 200ms\n",
        ep = receiver.endpoint(),
    );
    let (_agent, log) = start_agent(&yaml, &[], "tls-pg");
    wait_instrumented(mport, 1.0, &log);
    let mut psql = Command::new(pg_bin("psql"))
        .args(["-h", "127.0.0.1", "-p", &pg.to_string(), "-U", "postgres", "-qAt"])
        .env("PGPASSWORD", "s3cret-admin-pw")
        .env("PGSSLMODE", "require")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting psql");
    let mut psql_in = psql.stdin.take().unwrap();
    let mut psql_out = std::io::BufReader::new(psql.stdout.take().unwrap());
    wait_pid_instrumented(psql.id(), &log);
    // The postmaster, the backend it forked for psql, and psql.
    wait_tls_probed(mport, 3.0, &log);
    let mut line = String::new();
    writeln!(psql_in, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid();").unwrap();
    psql_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "t", "psql's connection is not TLS");

    let script = "SELECT 1;\nCREATE TEMP TABLE t (a int);\nINSERT INTO t VALUES (1), (2);\nSELECT count(*) FROM t;\nSELECT * FROM nope;\n\\echo done\n";
    psql_in.write_all(script.as_bytes()).unwrap();
    loop {
        line.clear();
        assert!(psql_out.read_line(&mut line).unwrap() > 0, "psql ended early");
        if line.trim() == "done" {
            break;
        }
    }
    let name = "db_client_operation_duration_seconds_count";
    let count = |m: &[Sample], op: &str, err: Option<&str>| {
        let mut l = vec![("job", "psql"), ("db_operation_name", op)];
        if let Some(e) = err {
            l.push(("error_type", e));
        }
        sum(m, name, &l)
    };
    // The first SELECT (pg_stat_ssl) and the 5 of the script.
    let done = wait_for(Duration::from_secs(30), || sum(&scrape(mport, "/metrics"), name, &[]) >= 6.0);
    std::thread::sleep(Duration::from_secs(1));
    let m = scrape(mport, "/metrics");
    let dump = || agent_dump(mport, &log);
    assert!(done, "statements not all counted:\n{}", dump());
    assert_eq!(count(&m, "SELECT", None) - count(&m, "SELECT", Some("42P01")), 3.0, "{}", dump());
    assert_eq!(count(&m, "SELECT", Some("42P01")), 1.0, "{}", dump());
    assert_eq!(count(&m, "CREATE", None), 1.0, "{}", dump());
    assert_eq!(count(&m, "INSERT", None), 1.0, "{}", dump());
    assert_eq!(sum(&m, name, &[]), 6.0, "{}", dump());

    // The backend's SERVER spans: one per statement, each the child of psql's.
    let got = wait_for(Duration::from_secs(20), || {
        receiver
            .spans()
            .iter()
            .filter(|g| g.span.kind == 2 && attr(&g.span.attributes, "db.system.name").is_some())
            .count()
            >= 6
    });
    let spans = receiver.spans();
    let served: Vec<_> =
        spans.iter().filter(|g| g.span.kind == 2 && attr(&g.span.attributes, "db.system.name").is_some()).collect();
    assert!(got && served.len() == 6, "{} SERVER spans\n{}", served.len(), dump());
    for s in served {
        assert_eq!(res_attr(Some(&s.resource), "service.name").as_deref(), Some("pgserver"));
        let client = spans.iter().find(|c| c.span.kind == 3 && c.span.span_id == s.span.parent_span_id);
        assert!(client.is_some_and(|c| c.span.name == s.span.name), "{} has no psql parent", s.span.name);
    }
    drop(psql_in);
    let _ = psql.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Debian's Apache httpd with mod_ssl (`mpm_event`, master and one child running as www-data):
/// mod_ssl's BIOs hand OpenSSL's records to Apache's filter chain, which writes them to the
/// socket inside the call or later. Keep-alive and one-shot connections from curl, then
/// ApacheBench over HTTPS (`ab -k`, 4 connections); exact counts, checked against Apache's own
/// access log, and sizes.
#[test]
fn root_tls_apache2_mod_ssl() {
    require_root();
    let apache = PathBuf::from("/usr/sbin/apache2");
    assert!(apache.exists(), "apache2 missing: run scripts/setup.sh (Debian package apache2)");
    let modules = Path::new("/usr/lib/apache2/modules");
    let dir = std::env::temp_dir().join(format!("beyla-tls-apache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("www/static")).unwrap();
    let (cert, key) = make_cert(&dir);
    let small = "s".repeat(600);
    let large: String = (0..20_000).map(|i| format!("{i:09}\n")).collect();
    std::fs::write(dir.join("www/static/small.txt"), &small).unwrap();
    std::fs::write(dir.join("www/static/large.txt"), &large).unwrap();
    // The child runs as www-data: it reads the files through the test's directory.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (port, mport) = (free_port(), free_port());
    let d = dir.display();
    let load = |m: &str| format!("LoadModule {m}_module {}/mod_{m}.so\n", modules.display());
    let conf = [
        load("mpm_event"),
        load("authz_core"),
        load("mime"),
        load("socache_shmcb"),
        load("ssl"),
        format!(
            "ServerRoot {d}\nServerName 127.0.0.1\nListen 127.0.0.1:{port}\nPidFile {d}/httpd.pid\n\
             ErrorLog {d}/error.log\nLogFormat \"%m %U %>s %B\" short\nCustomLog {d}/access.log short\n\
             User www-data\nGroup www-data\n\
             StartServers 1\nServerLimit 1\nThreadsPerChild 8\nMaxRequestWorkers 8\n\
             MinSpareThreads 1\nMaxSpareThreads 16\n\
             KeepAlive On\nMaxKeepAliveRequests 1000\nTypesConfig /etc/mime.types\n\
             SSLSessionCache shmcb:{d}/ssl_scache(512000)\n\
             SSLEngine on\nSSLCertificateFile {cert}\nSSLCertificateKeyFile {key}\n\
             DocumentRoot {d}/www\n<Directory />\n  Require all granted\n</Directory>\n",
            cert = cert.display(),
            key = key.display(),
        ),
    ]
    .concat();
    std::fs::write(dir.join("httpd.conf"), conf).unwrap();
    let yaml = format!(
        "discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n  instrument:\n\
         \x20   - {{ open_ports: \"{port}\", name: apache }}\n\
         prometheus_export:\n  port: {mport}\n\
         routes:\n  patterns: [\"/static/{{file}}\", \"/missing/{{n}}\"]\n",
    );
    let (_agent, log) = start_agent(&yaml, &[], "tls-apache");
    let child = Command::new(&apache)
        .arg("-f")
        .arg(dir.join("httpd.conf"))
        .arg("-DFOREGROUND")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting apache2");
    let _apache = Master(child);
    let up = wait_for(Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    assert!(up, "apache2 did not listen: {}", std::fs::read_to_string(dir.join("error.log")).unwrap_or_default());
    wait_instrumented(mport, 2.0, &log);
    wait_tls_probed(mport, 2.0, &log);

    let base = format!("https://127.0.0.1:{port}");
    let keepalive: Vec<String> =
        ["small.txt", "large.txt", "small.txt", "large.txt"].iter().map(|f| format!("{base}/static/{f}")).collect();
    let keepalive: Vec<String> = keepalive.into_iter().chain([format!("{base}/missing/1")]).collect();
    let want: Vec<&str> = ["200 1.1"; 4].into_iter().chain(["404 1.1"]).collect();
    assert_eq!(curl(&["--http1.1"], &keepalive), want);
    for f in ["small.txt", "large.txt"] {
        assert_eq!(curl(&["--http1.1", "-H", "Connection: close"], &[format!("{base}/static/{f}")]), ["200 1.1"]);
    }
    let ab = Command::new("ab")
        .args(["-q", "-k", "-n", "100", "-c", "4"])
        .arg(format!("{base}/static/small.txt"))
        .output()
        .expect("ab missing: run scripts/setup.sh (Debian package apache2-utils)");
    let ab_out = String::from_utf8_lossy(&ab.stdout);
    assert!(ab_out.contains("Complete requests:      100") && ab_out.contains("Failed requests:        0"), "{ab_out}");

    let count = |m: &[Sample], route: &str, status: &str| https_served(m, "apache", route, status);
    let total = 5 + 2 + 100;
    let done = wait_for(Duration::from_secs(30), || {
        sum(&scrape(mport, "/metrics"), "http_server_request_duration_seconds_count", &[]) >= total as f64
    });
    std::thread::sleep(Duration::from_secs(1));
    let m = scrape(mport, "/metrics");
    let dump = || metrics_dump(mport, &log);
    assert!(done, "requests not all counted:\n{}", dump());
    assert_eq!(count(&m, "/static/{file}", "200"), 4 + 2 + 100, "{}", dump());
    assert_eq!(count(&m, "/missing/{n}", "404"), 1, "{}", dump());
    assert_eq!(sum(&m, "http_server_request_duration_seconds_count", &[]), total as f64, "{}", dump());
    // Apache's own count of what it served.
    let access = std::fs::read_to_string(dir.join("access.log")).unwrap_or_default();
    assert_eq!(access.lines().count(), total, "{access}");
    let sizes = [("service_name", "apache"), ("http_route", "/static/{file}")];
    let body = sum(&m, "http_server_response_body_size_bytes_sum", &sizes) as usize;
    assert_eq!(body, 3 * large.len() + 103 * small.len(), "{}", dump());
    assert_plaintext_all_decoded(mport);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Our Rust app (testapps/rust-http) serving HTTPS through rustls's blocking API (thread per
/// connection, `StreamOwned`) and calling a second one over HTTPS with rustls's client.
#[test]
fn root_tls_rustls_blocking() {
    require_root();
    rustls_front_and_back("rust", "/rust-http", true);
}

/// The same on hyper, tokio and tokio-rustls (testapps/rust-https, a release build with LTO):
/// async reads (`poll_read`, rustls's reader inlined into it), hyper's vectored writes, many
/// connections per thread. tokio's workers hand tasks between threads, so a call is not tied to
/// the request it serves (decode/context.rs): no in-process links, the rest as above.
#[test]
fn root_tls_rustls_tokio() {
    require_root();
    rustls_front_and_back("rust-https", "/rust-https", false);
}

/// Two instances of a Rust HTTPS test app (`launcher`, whose executable ends with `exe`), the
/// front calling the back: exact counts on keep-alive and one-shot connections, a 40 KB body
/// each way (many records, reads served from rustls's buffer), client spans and the trace
/// links across both (from the front's request to its call only if `in_process`), and
/// `beyla doctor`'s rows.
fn rustls_front_and_back(launcher: &str, exe: &str, in_process: bool) {
    let dir = std::env::temp_dir().join(format!("beyla-tls-{launcher}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = make_cert(&dir);
    let receiver = Receiver::start(Proto::Grpc, free_port());
    let (front, back, mport) = (free_port(), free_port(), free_port());
    let yaml = format!(
        "discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n  instrument:\n\
         \x20   - {{ open_ports: \"{front}\", name: rustfront }}\n\
         \x20   - {{ open_ports: \"{back}\", name: rustback }}\n\
         prometheus_export:\n  port: {mport}\n\
         otel_traces_export:\n  endpoint: {ep}\n  protocol: grpc\n  batch_timeout: 200ms\n\
         routes:\n  patterns: [\"/users/{{id}}\"]\n",
        ep = receiver.endpoint(),
    );
    let (_agent, log) = start_agent(&yaml, &[], &format!("tls-{launcher}"));
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let tls = [("TLS_CERT", cert_s), ("TLS_KEY", key_s)];
    let back_app = start_app(launcher, back, &tls);
    let downstream = format!("https://127.0.0.1:{back}/users/42");
    let front_app = start_app(launcher, front, &[tls[0], tls[1], ("DOWNSTREAM_URL", downstream.as_str())]);
    wait_instrumented(mport, 2.0, &log);
    wait_tls_probed(mport, 2.0, &log);

    let b = format!("https://127.0.0.1:{front}");
    let users: Vec<String> = (1..=5).map(|i| format!("{b}/users/{i}")).collect();
    assert_eq!(curl(&[], &users), vec!["200 1.1"; 5]);
    let body = dir.join("body");
    std::fs::write(&body, vec![b'x'; 40_000]).unwrap();
    let data = format!("@{}", body.display());
    let echo = curl(
        &["-X", "POST", "--data-binary", &data, "-H", "Content-Type: application/octet-stream"],
        &[format!("{b}/echo")],
    );
    assert_eq!(echo, ["200 1.1"]);
    for path in ["/error", "/error", "/nope", "/call", "/call", "/call"] {
        let want = match path {
            "/error" => "500 1.1",
            "/nope" => "404 1.1",
            _ => "200 1.1",
        };
        assert_eq!(curl(&[], &[format!("{b}{path}")]), [want], "{path}");
    }
    // Many connections at once: 200 requests over 10 keep-alive connections.
    let h2load = Command::new("h2load")
        .args(["--h1", "-n", "200", "-c", "10"])
        .arg(format!("{b}/users/9"))
        .output()
        .expect("running h2load (Debian package nghttp2-client)");
    let h2text = String::from_utf8_lossy(&h2load.stdout);
    assert!(h2text.contains("200 succeeded") && h2text.contains("TLS Protocol"), "h2load:\n{h2text}");

    let done = wait_for(Duration::from_secs(30), || {
        let m = scrape(mport, "/metrics");
        sum(&m, "http_server_request_duration_seconds_count", &[]) >= 215.0
            && sum(&m, "http_client_request_duration_seconds_count", &[]) >= 3.0
    });
    std::thread::sleep(Duration::from_secs(1));
    let m = scrape(mport, "/metrics");
    let dump = || metrics_dump(mport, &log);
    assert!(done, "requests not all counted:\n{}", dump());
    assert_eq!(https_served(&m, "rustfront", "/users/{id}", "200"), 205, "{}", dump());
    assert_eq!(https_served(&m, "rustfront", "/echo", "200"), 1, "{}", dump());
    assert_eq!(https_served(&m, "rustfront", "/error", "500"), 2, "{}", dump());
    assert_eq!(https_served(&m, "rustfront", "/call", "200"), 3, "{}", dump());
    assert_eq!(sum(&m, "http_server_request_duration_seconds_count", &[("http_response_status_code", "404")]), 1.0);
    assert_eq!(https_served(&m, "rustback", "/users/{id}", "200"), 3, "{}", dump());
    assert_eq!(sum(&m, "http_server_request_duration_seconds_count", &[]), 215.0, "{}", dump());
    let client = [("service_name", "rustfront"), ("http_response_status_code", "200"), ("url_scheme", "https")];
    assert_eq!(sum(&m, "http_client_request_duration_seconds_count", &client), 3.0, "{}", dump());
    assert_eq!(sum(&m, "http_client_request_duration_seconds_count", &[]), 3.0, "{}", dump());
    // The 40 KB both ways, as the plaintext's sizes.
    let echo = [("service_name", "rustfront"), ("http_route", "/echo")];
    assert_eq!(sum(&m, "http_server_request_body_size_bytes_sum", &echo), 40_000.0, "{}", dump());
    assert_eq!(sum(&m, "http_server_response_body_size_bytes_sum", &echo), 40_000.0, "{}", dump());
    assert_plaintext_all_decoded(mport);

    // Each /call's client span is its child (in_process), and rustback's span the client
    // span's child.
    let got = wait_for(Duration::from_secs(20), || receiver.spans().iter().filter(|g| g.span.kind != 1).count() >= 18);
    let spans: Vec<_> = receiver.spans().into_iter().filter(|g| g.span.kind != 1).collect();
    assert!(got, "{} spans", spans.len());
    let svc = |g: &common::otlp::Got| res_attr(Some(&g.resource), "service.name").unwrap_or_default();
    let calls: Vec<_> = spans.iter().filter(|g| svc(g) == "rustfront" && g.span.name == "GET /call").collect();
    assert_eq!(calls.len(), 3);
    let clients: Vec<_> = spans.iter().filter(|g| svc(g) == "rustfront" && g.span.kind == 3).collect();
    assert_eq!(clients.len(), 3);
    for client in clients {
        assert_eq!(attr(&client.span.attributes, "url.full").as_deref(), Some(downstream.as_str()));
        let parent = calls.iter().find(|c| c.span.span_id == client.span.parent_span_id);
        if in_process {
            assert!(parent.is_some_and(|c| c.span.trace_id == client.span.trace_id), "a client span not under a /call");
        } else {
            assert!(parent.is_none(), "a tokio worker's call linked to a request");
        }
        let back = spans.iter().find(|g| svc(g) == "rustback" && g.span.parent_span_id == client.span.span_id);
        assert!(
            back.is_some_and(|b| b.span.trace_id == client.span.trace_id),
            "no rustback span under the call {}:\n{}\n{}",
            hex(&client.span.span_id),
            span_table(&spans),
            metrics_dump(mport, &log)
        );
    }

    // `beyla doctor` says where the executables' rustls is probed.
    let cfg = dir.join("doctor.yml");
    std::fs::write(&cfg, &yaml).unwrap();
    let out = Command::new(agent_bin()).arg("doctor").arg("--config").arg(&cfg).output().expect("beyla doctor");
    let text = String::from_utf8_lossy(&out.stdout);
    for (pid, service) in [(front_app.pid(), "rustfront"), (back_app.pid(), "rustback")] {
        let row = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(pid.to_string().as_str()) && l.contains("rustls"));
        let row = row.unwrap_or_else(|| panic!("no rustls doctor row for {service} ({pid}):\n{text}"));
        let words: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(words[1..4], [service, words[2], "yes"], "{row}");
        assert!(words[2].ends_with(exe), "{row}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
