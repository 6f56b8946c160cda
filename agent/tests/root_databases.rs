//! Databases and caches nobody here wrote, decoded by the agent on this kernel (needs root):
//! Debian's `redis-server` and `memcached`, started on free loopback ports, called by
//!
//! - a Python web app (`databases/db_app.py`: `http.server`, redis-py and pymemcache from
//!   PyPI) running a known script of operations per request: pipelines, a transaction, a
//!   RESP3 connection, a 100 kB value, errors, a multi-key get, `noreply`;
//! - `redis-cli` (C, hiredis), fed commands on its standard input over a connection it opened
//!   before the agent traced it.
//!
//! Exact counts by `db.operation.name` and `error.type` in `db_client_operation_duration_seconds`,
//! the cache calls as children of the HTTP request that made them, `redis-server`'s own SERVER
//! spans, and no password, key or value in anything exported.
mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::otlp::{attr, hex, Proto, Receiver};
use common::*;

const PYPI: &[&str] = &["redis==8.2.0", "pymemcache==4.0.0"];

fn redis_server(port: u16) -> Proc {
    let dir = std::env::temp_dir().join(format!("beyla-redis-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--requirepass", "s3cret-pw-1"])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("starting redis-server (scripts/setup.sh installs it)");
    let p = Proc { child, name: "redis-server".into() };
    assert!(wait_for(Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()));
    p
}

fn memcached(port: u16) -> Proc {
    let child = Command::new("memcached")
        .args(["-p", &port.to_string(), "-U", "0", "-l", "127.0.0.1", "-u", "root"])
        .spawn()
        .expect("starting memcached (scripts/setup.sh installs it)");
    let p = Proc { child, name: "memcached".into() };
    assert!(wait_for(Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()));
    p
}

/// Operations in `db_client_operation_duration_seconds` of `job` named `op` (with `error_type`
/// `err`, or without any).
fn count(m: &[Sample], job: &str, op: &str, err: Option<&str>) -> f64 {
    let name = "db_client_operation_duration_seconds_count";
    let all = sum(m, name, &[("job", job), ("db_operation_name", op)]);
    match err {
        Some(e) => sum(m, name, &[("job", job), ("db_operation_name", op), ("error_type", e)]),
        None => {
            all - m
                .iter()
                .filter(|s| {
                    s.name == name
                        && s.labels.get("job").map(String::as_str) == Some(job)
                        && s.labels.get("db_operation_name").map(String::as_str) == Some(op)
                        && s.labels.contains_key("error_type")
                })
                .map(|s| s.value)
                .sum::<f64>()
        }
    }
}

#[test]
fn root_databases_redis_and_memcached_from_python_and_redis_cli() {
    require_root();
    let py = python_with("dbs-py", PYPI);
    let (rport, mcport, app_port, mport) = (free_port(), free_port(), free_port(), free_port());
    let _redis = redis_server(rport);
    let _memcached = memcached(mcport);
    // redis-cli connects (and authenticates) before the agent traces it.
    let mut cli = Command::new("redis-cli")
        .args(["-p", &rport.to_string(), "--no-auth-warning", "-a", "s3cret-pw-1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting redis-cli");
    let mut cli_in = cli.stdin.take().unwrap();
    let mut cli_out = BufReader::new(cli.stdout.take().unwrap());
    let mut line = String::new();
    writeln!(cli_in, "PING").unwrap();
    cli_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "PONG");

    let receiver = Receiver::start(Proto::Grpc, free_port());
    let yaml = format!(
        "discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n  instrument:\n    - {{ open_ports: \"{app_port}\", name: dbapp }}\n    - {{ exe_path: \"*redis-cli\", name: rediscli }}\n    - {{ open_ports: \"{rport}\", name: redis }}\nprometheus_export:\n  port: {mport}\n  instrumentations: [redis, memcached]\notel_traces_export:\n  endpoint: {}\n  protocol: grpc\n  batch_timeout: 200ms\n",
        receiver.endpoint()
    );
    let (_agent, log) = start_agent(&yaml, &[], "databases");
    let app = Command::new(&py.0)
        .arg(repo().join("agent/tests/databases/db_app.py"))
        .args([app_port, rport, mcport].map(|p| p.to_string()))
        .env("PYTHONPATH", &py.1)
        .env("REDIS_PASSWORD", "s3cret-pw-1")
        .spawn()
        .expect("starting db_app.py");
    let _app = Proc { child: app, name: "db_app.py".into() };
    assert!(wait_for(Duration::from_secs(30), || std::net::TcpStream::connect(("127.0.0.1", app_port)).is_ok()));
    wait_pid_instrumented(_app.pid(), &log);
    wait_pid_instrumented(cli.id(), &log);
    wait_pid_instrumented(_redis.pid(), &log);

    // redis-py sends AUTH (RESP2) or HELLO 3 AUTH (RESP3) with the password on connect.
    for path in ["/redis", "/memcached"] {
        let body = http_get(app_port, path).unwrap_or_default();
        assert_eq!(body, "ok", "GET {path}");
    }
    for cmd in ["SET clik v", "GET clik", "HSET h f v", "HGET h f", "DEL clik h"] {
        writeln!(cli_in, "{cmd}").unwrap();
        line.clear();
        cli_out.read_line(&mut line).unwrap();
    }

    let dump = || agent_dump(mport, &log);
    let want: &[(&str, &str, Option<&str>, f64)] = &[
        ("dbapp", "SET", None, 3.0),
        ("dbapp", "GET", None, 3.0),
        // redis-py's incr() sends INCRBY.
        ("dbapp", "INCRBY", None, 5.0),
        ("dbapp", "MULTI", None, 1.0),
        ("dbapp", "EXEC", None, 1.0),
        ("dbapp", "LPUSH", Some("WRONGTYPE"), 1.0),
        ("dbapp", "DEL", None, 1.0),
        ("dbapp", "set", None, 2.0),
        ("dbapp", "get", None, 2.0),
        ("dbapp", "incr", Some("CLIENT_ERROR"), 1.0),
        ("dbapp", "add", None, 1.0),
        ("dbapp", "delete", None, 1.0),
        ("rediscli", "SET", None, 1.0),
        ("rediscli", "GET", None, 1.0),
        ("rediscli", "HSET", None, 1.0),
        ("rediscli", "HGET", None, 1.0),
        ("rediscli", "DEL", None, 1.0),
    ];
    let total: f64 = want.iter().map(|w| w.3).sum();
    let done = wait_for(Duration::from_secs(20), || {
        sum(&scrape(mport, "/metrics"), "db_client_operation_duration_seconds_count", &[]) >= total
    });
    std::thread::sleep(Duration::from_secs(1));
    let m = scrape(mport, "/metrics");
    assert!(done, "not all counted:\n{}", dump());
    for (job, op, err, n) in want {
        assert_eq!(count(&m, job, op, *err), *n, "{job} {op} {err:?}\n{}", dump());
    }
    assert_eq!(sum(&m, "db_client_operation_duration_seconds_count", &[]), total, "{}", dump());
    for (system, ops) in [("redis", 20.0), ("memcached", 7.0)] {
        let n = sum(&m, "db_client_operation_duration_seconds_count", &[("db_system_name", system)]);
        assert_eq!(n, ops, "{system}\n{}", dump());
    }
    let internal = scrape(mport, "/internal/metrics");
    assert_eq!(sum(&internal, "beyla_decode_errors_total", &[("reason", "desync")]), 0.0, "{}", dump());
    // prometheus_export.instrumentations leaves HTTP out of Prometheus (not out of the OTLP
    // traces: the two HTTP server spans are checked below).
    assert_eq!(sum(&m, "http_server_request_duration_seconds_count", &[]), 0.0, "{}", dump());

    // Spans: each cache call of the app is a child of the HTTP request that made it;
    // redis-server reports each command it served (the app's and redis-cli's) as a SERVER span.
    let db_client = |s: &opentelemetry_proto::tonic::trace::v1::Span| {
        s.kind == 3 && attr(&s.attributes, "db.system.name").is_some()
    };
    let done = wait_for(Duration::from_secs(20), || receiver.count_spans(db_client) >= total as usize);
    let spans = receiver.spans();
    assert!(done, "{} spans\n{}", spans.len(), dump());
    let servers: Vec<_> = spans
        .iter()
        .filter(|g| g.span.kind == 2 && attr(&g.span.attributes, "http.request.method").is_some())
        .collect();
    assert_eq!(servers.len(), 2, "{}", dump());
    for g in spans.iter().filter(|g| db_client(&g.span)) {
        let job = common::otlp::res_attr(Some(&g.resource), "service.name").unwrap_or_default();
        if job != "dbapp" {
            assert!(g.span.parent_span_id.is_empty(), "redis-cli's calls have no parent");
            continue;
        }
        let parent = servers.iter().find(|s| s.span.span_id == g.span.parent_span_id);
        let parent = parent.unwrap_or_else(|| panic!("{} has no HTTP parent\n{}", g.span.name, dump()));
        assert_eq!(hex(&parent.span.trace_id), hex(&g.span.trace_id));
        let system = attr(&g.span.attributes, "db.system.name").unwrap();
        let path = attr(&parent.span.attributes, "url.path").unwrap_or_default();
        assert_eq!(format!("/{system}"), path, "{} under {path}", g.span.name);
    }
    let redis_served = spans
        .iter()
        .filter(|g| g.span.kind == 2 && attr(&g.span.attributes, "db.system.name").as_deref() == Some("redis"))
        .count();
    assert_eq!(redis_served, 20, "redis-server's SERVER spans\n{}", dump());
    // Secrets, keys and values never leave the host.
    let everything = format!("{:?}\n{}", spans, dump());
    for secret in ["s3cret-pw-1", "hello", "clik"] {
        assert!(!everything.contains(secret), "{secret} exported");
    }
    drop(cli_in);
    let _ = cli.wait();
}
