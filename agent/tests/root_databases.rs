//! Databases and caches nobody here wrote, decoded by the agent on this kernel (needs root):
//! Debian's `redis-server`, `memcached`, PostgreSQL and MariaDB, each started by the test on
//! free loopback ports in temporary directories, called by
//!
//! - a Python web app (`databases/db_app.py`: `http.server` with redis-py, pymemcache,
//!   psycopg 3, PyMySQL and mysql-connector-python from PyPI) and the same app in Node.js
//!   (`databases/db_app.js`: `node:http` with ioredis, memcached, pg and mysql2 from npm) and
//!   in Java (`databases/DbApp.java`: the JDK's `com.sun.net.httpserver` with Debian's pgjdbc,
//!   MariaDB Connector/J and spymemcached) and in Go (`databases/db_app.go`: `net/http` with
//!   Debian's lib/pq, go-sql-driver/mysql, redigo and gomemcache) and in Rust
//!   (`testapps/rust-db`: axum with redis-rs and tokio-postgres), each running a known script
//!   of operations per request: pipelines, transactions, a RESP3 connection, prepared
//!   statements (named, unnamed, server-side), errors, a multi-key get, `noreply`, large values;
//! - the C clients `redis-cli`, `psql` and `mariadb`, fed statements on their standard input
//!   over connections they opened before the agent traced them.
//!
//! Exact counts by `db.operation.name` and `error.type` in `db_client_operation_duration_seconds`,
//! every call of the apps the child of the HTTP request that made it (the Go app's by the
//! goroutine that wrote it; spymemcached's, written from its own IO thread, have none: the
//! agent cannot know),
//! the servers' own SERVER spans (`redis-server`, PostgreSQL's backends, `mariadbd`), each the
//! child of its client's span unless pipelined, span metrics and service graph edges (Prometheus and
//! OTLP), and no password, key or value in anything exported.
mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::otlp::{attr, hex, Proto, Receiver};
use common::*;

const PYPI: &[&str] = &[
    "redis==8.2.0",
    "pymemcache==4.0.0",
    "psycopg==3.3.9",
    "psycopg-binary==3.3.9",
    "PyMySQL==1.2.4",
    "mysql-connector-python==26.10.0",
];

const NPM: &[&str] = &["ioredis@6.1.0", "memcached@2.2.2", "pg@8.23.1", "mysql2@3.26.1"];

/// Starts one of the web apps (`cmd`, given its ports and the databases' passwords) and waits
/// for it to listen on `ports[0]`.
fn start_app(mut cmd: Command, name: &str, ports: [u16; 5]) -> Proc {
    let child = cmd
        .args(ports.map(|p| p.to_string()))
        .env("REDIS_PASSWORD", "s3cret-pw-1")
        .env("PGPASSWORD", "s3cret-app-pw")
        .env("MYSQL_PWD", "s3cret-my-pw")
        .spawn()
        .unwrap_or_else(|e| panic!("starting {name}: {e}"));
    let p = Proc { child, name: name.into() };
    assert!(wait_for(Duration::from_secs(30), || std::net::TcpStream::connect(("127.0.0.1", ports[0])).is_ok()));
    p
}

/// `databases/db_app.py` on `port`, calling Redis, Memcached, PostgreSQL and MariaDB on the
/// others.
fn db_app(port: u16, redis: u16, memcached: u16, pg: u16, mysql: u16) -> Proc {
    let (py, path) = python_with("dbs-py", PYPI);
    let mut cmd = Command::new(py);
    cmd.arg(repo().join("agent/tests/databases/db_app.py")).env("PYTHONPATH", path);
    start_app(cmd, "db_app.py", [port, redis, memcached, pg, mysql])
}

/// `databases/db_app.js` (Node.js: ioredis, memcached, pg, mysql2) on `port`, likewise.
fn node_app(port: u16, redis: u16, memcached: u16, pg: u16, mysql: u16) -> Proc {
    let out = Command::new("bash")
        .arg(repo().join("scripts/npm-install.sh"))
        .arg(repo().join(".cache/dbs-npm"))
        .args(NPM)
        .stderr(Stdio::inherit())
        .output()
        .expect("running scripts/npm-install.sh");
    assert!(out.status.success(), "scripts/npm-install.sh failed for {NPM:?}");
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut cmd = Command::new("node");
    cmd.arg(repo().join("agent/tests/databases/db_app.js")).env("NODE_PATH", format!("{dir}/node_modules"));
    start_app(cmd, "db_app.js", [port, redis, memcached, pg, mysql])
}

/// Debian's Java drivers (`libpostgresql-jdbc-java`, `libmariadb-java`, `libspymemcached-java`).
const JARS: &[&str] =
    &["/usr/share/java/postgresql.jar", "/usr/share/java/mariadb-java-client.jar", "/usr/share/java/spymemcached.jar"];

/// `databases/DbApp.java` (JDK's `com.sun.net.httpserver`, pgjdbc, MariaDB Connector/J,
/// spymemcached) on `port`, likewise (Debian packages no Java Redis client).
fn java_app(port: u16, memcached: u16, pg: u16, mysql: u16) -> Proc {
    for jar in JARS {
        assert!(std::path::Path::new(jar).exists(), "{jar} missing (scripts/setup.sh installs it)");
    }
    let classes = repo().join(".cache/dbs-java");
    std::fs::create_dir_all(&classes).unwrap();
    let cp = JARS.join(":");
    let out = Command::new("javac")
        .arg("-d")
        .arg(&classes)
        .args(["-cp", &cp])
        .arg(repo().join("agent/tests/databases/DbApp.java"))
        .output()
        .expect("running javac (scripts/setup.sh installs default-jdk-headless)");
    assert!(out.status.success(), "javac DbApp.java: {}", String::from_utf8_lossy(&out.stderr));
    let mut cmd = Command::new("java");
    cmd.args(["-cp", &format!("{cp}:{}", classes.display()), "DbApp"]);
    start_app(cmd, "DbApp.java", [port, 0, memcached, pg, mysql])
}

/// `databases/db_app.go` (net/http with Debian's lib/pq, go-sql-driver/mysql, redigo and
/// gomemcache, built in GOPATH mode with toolchain `go`: "go1.19", Debian's, or "go1.23",
/// fetched by `testapps/fetch-go.sh`) on `port`, likewise. Its calls are linked by goroutine:
/// the capture reads which request the writing goroutine serves (no probe announces them),
/// and a goroutine the handler starts serves it too (go1.21+ records a goroutine's creator;
/// before, the Go probes follow `runtime.newproc1`).
fn go_app(go: &str, port: u16, redis: u16, memcached: u16, pg: u16, mysql: u16) -> Proc {
    let toolchain = match go {
        "go1.19" => PathBuf::from("go"),
        _ => {
            let out = Command::new(repo().join("testapps/fetch-go.sh"))
                .arg(go.trim_start_matches("go"))
                .output()
                .expect("running testapps/fetch-go.sh");
            assert!(out.status.success(), "fetch-go.sh: {}", String::from_utf8_lossy(&out.stderr));
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
    };
    let out_dir = repo().join(".cache/dbs-go").join(go);
    std::fs::create_dir_all(&out_dir).unwrap();
    let bin = out_dir.join("db_app");
    let out = Command::new(&toolchain)
        .args(["build", "-o"])
        .arg(&bin)
        .arg("db_app.go")
        .current_dir(repo().join("agent/tests/databases"))
        .env("GOPATH", "/usr/share/gocode")
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .output()
        .expect("running go build (scripts/setup.sh installs golang and the golang-*-dev packages)");
    assert!(out.status.success(), "{go} build db_app.go: {}", String::from_utf8_lossy(&out.stderr));
    start_app(Command::new(&bin), "db_app.go", [port, redis, memcached, pg, mysql])
}

/// `testapps/rust-db` (axum on a single-threaded tokio runtime with redis-rs and
/// tokio-postgres; built by `testapps/build.sh`) on `port`, likewise.
/// `workers`: 0 for the single-threaded runtime, else the multi-threaded one with that many.
fn rust_app(port: u16, redis: u16, pg: u16, workers: usize) -> Proc {
    let bin = repo().join("testapps/build/rust-db");
    assert!(bin.exists(), "{} missing: run testapps/build.sh first", bin.display());
    let mut cmd = Command::new(&bin);
    cmd.env("RUST_DB_WORKERS", workers.to_string());
    start_app(cmd, "rust-db", [port, redis, 0, pg, 0])
}

/// A database CLIENT span.
fn is_db_client(s: &opentelemetry_proto::tonic::trace::v1::Span) -> bool {
    s.kind == 3 && attr(&s.attributes, "db.system.name").is_some()
}

/// Every span received, once `n` database CLIENT spans have arrived (within 20 s).
fn spans_once_db_clients(receiver: &Receiver, n: usize, dump: &dyn Fn() -> String) -> Vec<common::otlp::Got> {
    let done = wait_for(Duration::from_secs(20), || receiver.count_spans(is_db_client) >= n);
    let spans = receiver.spans();
    assert!(done, "{} spans\n{}", spans.len(), dump());
    spans
}

/// Waits until `db_client_operation_duration_seconds` counts all of `want` (job, operation,
/// error, count), then checks each exactly and the total; returns the scrape and the total.
fn check_counts(mport: u16, want: &[(&str, &str, Option<&str>, f64)], dump: &dyn Fn() -> String) -> (Vec<Sample>, f64) {
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
    (m, total)
}

/// The names of the database SERVER spans without a parent, after checking that every other
/// one is the child of its client's span of the same operation, and that the agent counted
/// the unlinked ones (`beyla_unlinked_server_requests_total`).
fn unlinked_server_spans(spans: &[common::otlp::Got], mport: u16) -> Vec<&str> {
    let mut alone = Vec::new();
    for g in spans.iter().filter(|g| g.span.kind == 2 && attr(&g.span.attributes, "db.system.name").is_some()) {
        if g.span.parent_span_id.is_empty() {
            alone.push(g.span.name.as_str());
            continue;
        }
        let client = spans.iter().find(|c| c.span.kind == 3 && c.span.span_id == g.span.parent_span_id);
        let client = client.unwrap_or_else(|| panic!("SERVER {} without its client span", g.span.name));
        assert_eq!((&client.span.name, &client.span.trace_id), (&g.span.name, &g.span.trace_id));
    }
    let counted = sum(&scrape(mport, "/internal/metrics"), "beyla_unlinked_server_requests_total", &[]);
    assert_eq!(counted, alone.len() as f64, "{alone:?}");
    alone.sort();
    alone
}

/// Every database CLIENT span of the services `apps` is the child of the HTTP request of its
/// own service that made it (`/redis`, `/memcached`, `/postgresql`, `/mysql`), in its trace;
/// returns how many there are.
fn check_parents(spans: &[common::otlp::Got], apps: &[&str], dump: &dyn Fn() -> String) -> usize {
    let service = |g: &common::otlp::Got| common::otlp::res_attr(Some(&g.resource), "service.name").unwrap_or_default();
    let mut n = 0;
    for g in spans.iter().filter(|g| is_db_client(&g.span)) {
        let svc = service(g);
        if !apps.contains(&svc.as_str()) {
            continue;
        }
        let parent =
            spans.iter().find(|p| p.span.kind == 2 && p.span.span_id == g.span.parent_span_id && service(p) == svc);
        let parent = parent.unwrap_or_else(|| {
            let mine: Vec<_> = spans
                .iter()
                .filter(|o| service(o) == svc && o.span.kind != 1)
                .map(|o| {
                    (
                        o.span.kind,
                        &o.span.name,
                        hex(&o.span.span_id),
                        hex(&o.span.parent_span_id),
                        o.span.start_time_unix_nano,
                    )
                })
                .collect();
            panic!("{svc}: {} has no HTTP parent\n{mine:#?}\n{}", g.span.name, dump())
        });
        assert_eq!(hex(&parent.span.trace_id), hex(&g.span.trace_id));
        let route = match attr(&g.span.attributes, "db.system.name").unwrap().as_str() {
            "mariadb" | "mysql" => "/mysql".to_string(),
            other => format!("/{other}"),
        };
        let path = attr(&parent.span.attributes, "url.path").unwrap_or_default();
        assert_eq!(route, path, "{svc}: {} under {path}", g.span.name);
        n += 1;
    }
    n
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

/// A PostgreSQL server of its own (initdb in a temporary directory, run as user `postgres`,
/// SCRAM authentication), with role `app` (password `s3cret-app-pw`) owning database `shop`.
fn postgres(port: u16) -> Proc {
    let dir = std::env::temp_dir().join(format!("beyla-pg-{port}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pw"), "s3cret-admin-pw\n").unwrap();
    let chown = Command::new("chown").args(["-R", "postgres"]).arg(&dir).status().unwrap();
    assert!(chown.success());
    // setpriv execs the program (runuser would stay its parent, and killing it would leave
    // the server running).
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
    let child = as_postgres(pg_bin("postgres"))
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
        .arg("-k")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting postgres");
    let p = Proc { child, name: "postgres".into() };
    assert!(wait_for(Duration::from_secs(30), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()));
    for sql in ["CREATE ROLE app LOGIN PASSWORD 's3cret-app-pw'", "CREATE DATABASE shop OWNER app"] {
        let out = Command::new(pg_bin("psql"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-c", sql])
            .env("PGPASSWORD", "s3cret-admin-pw")
            .output()
            .unwrap();
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    }
    p
}

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
    let (rport, mcport, app_port, node_port, java_port, go_port, mport) =
        (free_port(), free_port(), free_port(), free_port(), free_port(), free_port(), free_port());
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
        "discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n  instrument:\n    - {{ open_ports: \"{app_port}\", name: dbapp }}\n    - {{ open_ports: \"{node_port}\", name: nodeapp }}\n    - {{ open_ports: \"{java_port}\", name: javaapp }}\n    - {{ open_ports: \"{go_port}\", name: goapp }}\n    - {{ exe_path: \"*redis-cli\", name: rediscli }}\n    - {{ open_ports: \"{rport}\", name: redis }}\nprometheus_export:\n  port: {mport}\n  instrumentations: [redis, memcached]\n  features: [application, application_span, application_service_graph]\notel_traces_export:\n  endpoint: {ep}\n  protocol: grpc\n  batch_timeout: 200ms\notel_metrics_export:\n  endpoint: {ep}\n  protocol: grpc\n  interval: 500ms\n  instrumentations: [redis, memcached]\n  features: [application, application_span, application_service_graph]\n",
        ep = receiver.endpoint()
    );
    let (_agent, log) = start_agent(&yaml, &[], "databases");
    let _app = db_app(app_port, rport, mcport, free_port(), free_port());
    let node = node_app(node_port, rport, mcport, free_port(), free_port());
    let java = java_app(java_port, mcport, free_port(), free_port());
    let go = go_app("go1.19", go_port, rport, mcport, free_port(), free_port());
    wait_pid_instrumented(_app.pid(), &log);
    wait_pid_instrumented(go.pid(), &log);
    // Its calls are linked by goroutine once the Go probes run (they record the requests).
    wait_go_instrumented(mport, 1.0, &log);
    wait_pid_instrumented(node.pid(), &log);
    wait_pid_instrumented(java.pid(), &log);
    wait_pid_instrumented(cli.id(), &log);
    wait_pid_instrumented(_redis.pid(), &log);

    // redis-py sends AUTH (RESP2) or HELLO 3 AUTH (RESP3) with the password on connect.
    for (port, path) in [
        (app_port, "/redis"),
        (app_port, "/memcached"),
        (node_port, "/redis"),
        (node_port, "/memcached"),
        (java_port, "/memcached"),
        (go_port, "/redis"),
        (go_port, "/memcached"),
    ] {
        let body = http_get(port, path).unwrap_or_default();
        assert_eq!(body, "ok", "GET {path} on {port}");
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
        // A subscribed connection: its SUBSCRIBE and messages are not operations.
        ("dbapp", "PUBLISH", None, 1.0),
        ("dbapp", "EXISTS", None, 1.0),
        ("dbapp", "set", None, 2.0),
        ("dbapp", "get", None, 2.0),
        ("dbapp", "incr", Some("CLIENT_ERROR"), 1.0),
        ("dbapp", "add", None, 1.0),
        ("dbapp", "delete", None, 1.0),
        ("nodeapp", "SET", None, 1.0),
        ("nodeapp", "GET", None, 1.0),
        ("nodeapp", "INCR", None, 2.0),
        ("nodeapp", "LPUSH", Some("WRONGTYPE"), 1.0),
        ("nodeapp", "DEL", None, 1.0),
        ("nodeapp", "set", None, 1.0),
        ("nodeapp", "get", None, 2.0),
        ("nodeapp", "incr", None, 1.0),
        ("nodeapp", "delete", None, 1.0),
        // spymemcached: its multi-get is one `get`.
        ("javaapp", "set", None, 1.0),
        ("javaapp", "get", None, 2.0),
        ("javaapp", "delete", None, 1.0),
        // redigo: AUTH on connect (not reported), a pipeline, MULTI/EXEC sent in one write.
        ("goapp", "SET", None, 2.0),
        ("goapp", "GET", None, 2.0),
        ("goapp", "INCR", None, 5.0),
        ("goapp", "MULTI", None, 1.0),
        ("goapp", "EXEC", None, 1.0),
        ("goapp", "LPUSH", Some("WRONGTYPE"), 1.0),
        ("goapp", "DEL", None, 1.0),
        // gomemcache: `gets` for Get and GetMulti; it drops its connection after the
        // CLIENT_ERROR and goes on with a new one.
        ("goapp", "gets", None, 2.0),
        ("goapp", "set", None, 1.0),
        ("goapp", "incr", Some("CLIENT_ERROR"), 1.0),
        ("goapp", "add", None, 1.0),
        ("goapp", "delete", None, 1.0),
        ("rediscli", "SET", None, 1.0),
        ("rediscli", "GET", None, 1.0),
        ("rediscli", "HSET", None, 1.0),
        ("rediscli", "HGET", None, 1.0),
        ("rediscli", "DEL", None, 1.0),
    ];
    let (m, total) = check_counts(mport, want, &dump);
    for (system, ops) in [("redis", 41.0), ("memcached", 22.0)] {
        let n = sum(&m, "db_client_operation_duration_seconds_count", &[("db_system_name", system)]);
        assert_eq!(n, ops, "{system}\n{}", dump());
    }
    let internal = scrape(mport, "/internal/metrics");
    assert_eq!(sum(&internal, "beyla_decode_errors_total", &[("reason", "desync")]), 0.0, "{}", dump());
    // prometheus_export.instrumentations leaves HTTP out of Prometheus (not out of the OTLP
    // traces: the two HTTP server spans are checked below).
    assert_eq!(sum(&m, "http_server_request_duration_seconds_count", &[]), 0.0, "{}", dump());
    // Span metrics count the calls by span name and kind, redis-server's SERVER spans too.
    let calls = |svc: &str, kind: &str, name: &str| {
        let l = [("service", svc), ("span_kind", kind), ("span_name", name)];
        sum(&m, "traces_spanmetrics_calls_total", &l)
    };
    assert_eq!(calls("dbapp", "SPAN_KIND_CLIENT", "INCRBY"), 5.0, "{}", dump());
    assert_eq!(calls("javaapp", "SPAN_KIND_CLIENT", "get"), 2.0, "{}", dump());
    let served = sum(&m, "traces_spanmetrics_calls_total", &[("service", "redis"), ("span_kind", "SPAN_KIND_SERVER")]);
    assert_eq!(served, 41.0, "{}", dump());
    // The service graph: each Redis command meets redis-server's SERVER span (both traced);
    // Memcached, not traced, is a virtual node named by its address once PAIR_WAIT passed.
    let edges: &[(&str, &str, &str, f64, f64)] = &[
        ("dbapp", "redis", "", 17.0, 1.0),
        ("nodeapp", "redis", "", 6.0, 1.0),
        ("rediscli", "redis", "", 5.0, 0.0),
        ("dbapp", "127.0.0.1", "virtual_node", 7.0, 1.0),
        ("nodeapp", "127.0.0.1", "virtual_node", 5.0, 0.0),
        ("javaapp", "127.0.0.1", "virtual_node", 4.0, 0.0),
        ("goapp", "redis", "", 13.0, 1.0),
        ("goapp", "127.0.0.1", "virtual_node", 6.0, 1.0),
    ];
    let edge = |m: &[Sample], name: &str, e: &(&str, &str, &str, f64, f64)| {
        sum(m, name, &[("client", e.0), ("server", e.1), ("connection_type", e.2)])
    };
    let all: f64 = edges.iter().map(|e| e.3).sum();
    let done = wait_for(Duration::from_secs(30), || {
        sum(&scrape(mport, "/metrics"), "traces_service_graph_request_total", &[]) >= all
    });
    let m = scrape(mport, "/metrics");
    assert!(done, "service graph edges missing\n{}", dump());
    for e in edges {
        assert_eq!(edge(&m, "traces_service_graph_request_total", e), e.3, "{e:?}\n{}", dump());
        assert_eq!(edge(&m, "traces_service_graph_request_failed_total", e), e.4, "{e:?}\n{}", dump());
    }
    assert_eq!(sum(&m, "traces_service_graph_request_total", &[]), all, "{}", dump());
    // The same over OTLP: the operations, span metrics and edges (each in its client's
    // resource).
    let otlp_edge = |e: &(&str, &str, &str, f64, f64), name| {
        receiver.histogram_count(e.0, name, &[("client", e.0), ("server", e.1), ("connection_type", e.2)]) as f64
    };
    let done = wait_for(Duration::from_secs(20), || {
        edges.iter().all(|e| otlp_edge(e, "traces_service_graph_request_total") >= e.3)
    });
    assert!(done, "OTLP service graph edges missing\n{}", dump());
    std::thread::sleep(Duration::from_secs(1));
    for e in edges {
        assert_eq!(otlp_edge(e, "traces_service_graph_request_total"), e.3, "{e:?}");
        assert_eq!(otlp_edge(e, "traces_service_graph_request_failed_total"), e.4, "{e:?}");
        assert_eq!(otlp_edge(e, "traces_service_graph_request_client"), e.3, "{e:?}");
    }
    let by_op = |svc, op| receiver.histogram_count(svc, "db.client.operation.duration", &[("db.operation.name", op)]);
    assert_eq!((by_op("dbapp", "INCRBY"), by_op("javaapp", "get")), (5, 2));
    let span_calls = |svc, kind, name| {
        let want = [("span.kind", kind), ("span.name", name)];
        receiver.histogram_count(svc, "traces_spanmetrics_calls_total", &want)
    };
    assert_eq!(span_calls("dbapp", "SPAN_KIND_CLIENT", "INCRBY"), 5);
    assert_eq!(
        receiver.histogram_count("redis", "traces_spanmetrics_calls_total", &[("span.kind", "SPAN_KIND_SERVER")]),
        41
    );
    assert_eq!(receiver.histogram_count("redis", "traces_spanmetrics_latency", &[]), 41);

    // Spans: each cache call of the app is a child of the HTTP request that made it;
    // redis-server reports each command it served (the app's and redis-cli's) as a SERVER span.
    let spans = spans_once_db_clients(&receiver, total as usize, &dump);
    let http_served =
        spans.iter().filter(|g| g.span.kind == 2 && attr(&g.span.attributes, "http.request.method").is_some());
    assert_eq!(http_served.count(), 7, "{}", dump());
    // The Go app's too: the capture names the request each goroutine serves.
    assert_eq!(check_parents(&spans, &["dbapp", "nodeapp", "goapp"], &dump), total as usize - 9);
    // spymemcached writes from its own IO thread, which serves no request: no parent (a
    // guessed one would be worse).
    let by_java: Vec<_> = spans
        .iter()
        .filter(|g| common::otlp::res_attr(Some(&g.resource), "service.name").as_deref() == Some("javaapp"))
        .filter(|g| is_db_client(&g.span))
        .collect();
    assert_eq!(by_java.len(), 4, "{}", dump());
    assert!(by_java.iter().all(|g| g.span.parent_span_id.is_empty()), "spymemcached's calls have no parent");
    let by_cli: Vec<_> = spans
        .iter()
        .filter(|g| common::otlp::res_attr(Some(&g.resource), "service.name").as_deref() == Some("rediscli"))
        .collect();
    assert_eq!(by_cli.len(), 5);
    assert!(by_cli.iter().all(|g| g.span.parent_span_id.is_empty()), "redis-cli's calls have no parent");
    let redis_served = spans
        .iter()
        .filter(|g| g.span.kind == 2 && attr(&g.span.attributes, "db.system.name").as_deref() == Some("redis"))
        .count();
    assert_eq!(redis_served, 41, "redis-server's SERVER spans\n{}", dump());
    // Each is the child of the client's span of the same command, except pipelined commands
    // (several in flight on the connection cannot be paired): no parent, counted.
    let alone = unlinked_server_spans(&spans, mport).len();
    assert!(alone >= 6, "the pipelines' commands (redis-py's, redigo's) cannot be paired: {alone}");
    // Secrets, keys and values never leave the host.
    let everything = format!("{:?}\n{}", spans, dump());
    for secret in ["s3cret-pw-1", "hello", "clik", "extra-extra"] {
        assert!(!everything.contains(secret), "{secret} exported");
    }
    drop(cli_in);
    let _ = cli.wait();
}

/// A MariaDB server of its own (`mariadb-install-db` in a temporary directory), with user
/// `app` (password `s3cret-my-pw`) owning database `shop`.
fn mariadb(port: u16) -> Proc {
    let dir = std::env::temp_dir().join(format!("beyla-mariadb-{port}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new("mariadb-install-db")
        .args(["--no-defaults", "--user=root", "--auth-root-authentication-method=normal"])
        .arg(format!("--datadir={}", dir.join("data").display()))
        .output()
        .expect("running mariadb-install-db (scripts/setup.sh installs mariadb-server)");
    assert!(out.status.success(), "mariadb-install-db: {}", String::from_utf8_lossy(&out.stderr));
    let sock = dir.join("sock");
    let child = Command::new("mariadbd")
        .args(["--no-defaults", "--user=root", "--bind-address=127.0.0.1", "--skip-log-bin"])
        .arg(format!("--port={port}"))
        .arg(format!("--datadir={}", dir.join("data").display()))
        .arg(format!("--socket={}", sock.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting mariadbd");
    let p = Proc { child, name: "mariadbd".into() };
    assert!(wait_for(Duration::from_secs(60), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()));
    let sql = "CREATE DATABASE shop; CREATE USER 'app'@'localhost' IDENTIFIED BY 's3cret-my-pw'; \
               CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY 's3cret-my-pw'; GRANT ALL ON shop.* TO 'app'@'localhost'; \
               GRANT ALL ON shop.* TO 'app'@'127.0.0.1';";
    let out = Command::new("mariadb")
        .args(["--no-defaults", "-u", "root", "-e", sql])
        .arg(format!("--socket={}", sock.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    p
}

#[test]
fn root_databases_mariadb_from_python_and_the_mariadb_client() {
    require_root();
    let (my, app_port, node_port, java_port, go_port, mport) =
        (free_port(), free_port(), free_port(), free_port(), free_port(), free_port());
    let _my = mariadb(my);
    // The mariadb client connects before the agent traces it.
    let mut cli = Command::new("mariadb")
        .args([
            "--no-defaults",
            "-h",
            "127.0.0.1",
            "-P",
            &my.to_string(),
            "-u",
            "app",
            "-ps3cret-my-pw",
            "-N",
            "--unbuffered",
            "--force",
            "-B",
            "shop",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting mariadb");
    let mut cli_in = cli.stdin.take().unwrap();
    let mut cli_out = BufReader::new(cli.stdout.take().unwrap());
    let mut line = String::new();
    writeln!(cli_in, "SELECT 'ready';").unwrap();
    cli_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");

    let receiver = Receiver::start(Proto::Grpc, free_port());
    let yaml = format!(
        "discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n  instrument:\n    - {{ open_ports: \"{app_port}\", name: dbapp }}\n    - {{ open_ports: \"{node_port}\", name: nodeapp }}\n    - {{ open_ports: \"{java_port}\", name: javaapp }}\n    - {{ open_ports: \"{go_port}\", name: goapp }}\n    - {{ open_ports: \"{my}\", name: mariadbd }}\n    - {{ exe_path: \"*/bin/mariadb\", name: mariadbcli }}\nprometheus_export:\n  port: {mport}\notel_traces_export:\n  endpoint: {}\n  protocol: grpc\n  batch_timeout: 200ms\n",
        receiver.endpoint()
    );
    let (_agent, log) = start_agent(&yaml, &[], "mariadb");
    let app = db_app(app_port, free_port(), free_port(), free_port(), my);
    let node = node_app(node_port, free_port(), free_port(), free_port(), my);
    let java = java_app(java_port, free_port(), free_port(), my);
    let go = go_app("go1.19", go_port, free_port(), free_port(), free_port(), my);
    wait_pid_instrumented(go.pid(), &log);
    // Its calls are linked by goroutine once the Go probes run (they record the requests).
    wait_go_instrumented(mport, 1.0, &log);
    wait_pid_instrumented(app.pid(), &log);
    wait_pid_instrumented(node.pid(), &log);
    wait_pid_instrumented(java.pid(), &log);
    wait_pid_instrumented(cli.id(), &log);

    assert_eq!(http_get(app_port, "/mysql").unwrap_or_default(), "ok");
    assert_eq!(http_get(node_port, "/mysql").unwrap_or_default(), "ok");
    assert_eq!(http_get(java_port, "/mysql").unwrap_or_default(), "ok");
    assert_eq!(http_get(go_port, "/mysql").unwrap_or_default(), "ok");
    for stmt in [
        "CREATE TEMPORARY TABLE t (a INT);",
        "INSERT INTO t VALUES (1), (2);",
        "SELECT COUNT(*) FROM t;",
        "SELECT * FROM nope;",
        "SELECT 'done';",
    ] {
        writeln!(cli_in, "{stmt}").unwrap();
    }
    loop {
        line.clear();
        assert!(cli_out.read_line(&mut line).unwrap() > 0, "the mariadb client ended early");
        if line.trim() == "done" {
            break;
        }
    }

    let dump = || agent_dump(mport, &log);
    let want: &[(&str, &str, Option<&str>, f64)] = &[
        ("dbapp", "CREATE", None, 1.0),
        ("dbapp", "INSERT", None, 3.0),
        ("dbapp", "SELECT", None, 5.0),
        ("dbapp", "SELECT", Some("1146"), 1.0),
        ("dbapp", "UPDATE", None, 1.0),
        ("dbapp", "DROP", None, 1.0),
        // The drivers' own on connect: PyMySQL's SET AUTOCOMMIT, mysql-connector-python's
        // SET NAMES and SET autocommit.
        ("dbapp", "SET", None, 3.0),
        // mysql2: a query, a statement prepared once and executed twice, an error.
        ("nodeapp", "SELECT", None, 3.0),
        ("nodeapp", "SELECT", Some("1146"), 1.0),
        // Connector/J: the text protocol, then a connection with server-side prepared
        // statements; on each connect its `set autocommit=1, sql_mode = ...` and
        // `SELECT @@max_allowed_packet, ...`.
        ("javaapp", "SET", None, 2.0),
        ("javaapp", "CREATE", None, 1.0),
        ("javaapp", "INSERT", None, 3.0),
        ("javaapp", "SELECT", None, 6.0),
        ("javaapp", "SELECT", Some("1146"), 1.0),
        ("javaapp", "DROP", None, 1.0),
        // go-sql-driver/mysql: server-side prepared statements for every query with
        // arguments (prepare, execute, close each time).
        ("goapp", "CREATE", None, 1.0),
        ("goapp", "INSERT", None, 3.0),
        ("goapp", "SELECT", None, 3.0),
        ("goapp", "SELECT", Some("1146"), 1.0),
        ("goapp", "DROP", None, 1.0),
        ("mariadbcli", "CREATE", None, 1.0),
        ("mariadbcli", "INSERT", None, 1.0),
        ("mariadbcli", "SELECT", None, 2.0),
        // The client sends an error's statement on, and gets ERR 1146; the batch goes on.
        ("mariadbcli", "SELECT", Some("1146"), 1.0),
    ];
    let (m, total) = check_counts(mport, want, &dump);
    // The app's connections were seen from their greeting (MariaDB's); the client's, joined
    // after it, are reported as `mysql`.
    let by = |job, system| {
        sum(&m, "db_client_operation_duration_seconds_count", &[("job", job), ("db_system_name", system)])
    };
    let apps = ["dbapp", "nodeapp", "javaapp", "goapp"];
    let seen = (apps.iter().map(|a| by(a, "mariadb")).sum::<f64>(), by("mariadbcli", "mysql"));
    assert_eq!(seen, (total - 5.0, 5.0), "{}", dump());
    let internal = scrape(mport, "/internal/metrics");
    for reason in ["desync", "unknown_statement", "uncaptured"] {
        assert_eq!(sum(&internal, "beyla_decode_errors_total", &[("reason", reason)]), 0.0, "{reason}\n{}", dump());
    }
    let spans = spans_once_db_clients(&receiver, total as usize, &dump);
    let server = spans
        .iter()
        .find(|g| {
            g.span.kind == 2 && common::otlp::res_attr(Some(&g.resource), "service.name").as_deref() == Some("dbapp")
        })
        .expect("the app's HTTP server span");
    assert_eq!(
        check_parents(&spans, &["dbapp", "nodeapp", "javaapp", "goapp"], &dump),
        total as usize - 5,
        "the client's 5 have no parent"
    );
    for g in spans.iter().filter(|g| {
        is_db_client(&g.span) && common::otlp::res_attr(Some(&g.resource), "service.name").as_deref() == Some("dbapp")
    }) {
        assert_eq!(g.span.parent_span_id, server.span.span_id, "{}", g.span.name);
        assert_eq!(attr(&g.span.attributes, "db.namespace").as_deref(), Some("shop"), "{}", g.span.name);
    }
    let prepared = spans
        .iter()
        .filter(|g| {
            g.span.kind == 3
                && attr(&g.span.attributes, "db.query.text").as_deref() == Some("SELECT name FROM items WHERE id = ?")
        })
        .count();
    assert_eq!(prepared, 5, "the text protocol's SELECT (its literal hidden) and 4 prepared executions");
    let java_prepared = spans
        .iter()
        .filter(|g| {
            g.span.kind == 3
                && attr(&g.span.attributes, "db.query.text").as_deref() == Some("SELECT name FROM jitems WHERE id = ?")
        })
        .count();
    assert_eq!(java_prepared, 4, "Connector/J's client-side prepared SELECT (its literal hidden) and 3 executions");
    let served: Vec<_> =
        spans.iter().filter(|g| g.span.kind == 2 && attr(&g.span.attributes, "db.system.name").is_some()).collect();
    // mariadbd reports every statement it ran, each the child of its client's span, except
    // what a client pipelines: Connector/J sends its two statements on connect without waiting.
    assert_eq!(served.len(), total as usize, "mariadbd's SERVER spans\n{}", dump());
    let alone = unlinked_server_spans(&spans, mport);
    assert!(alone.len() <= 4 && alone.iter().all(|n| ["SET", "SELECT"].contains(n)), "unlinked: {alone:?}");
    let everything = format!("{:?}\n{}", spans, dump());
    for secret in ["s3cret-my-pw", "secret-1", "secret-j"] {
        assert!(!everything.contains(secret), "{secret} exported");
    }
    drop(cli_in);
    let _ = cli.wait();
}

#[test]
fn root_databases_postgresql_from_python_and_psql() {
    require_root();
    let (pg, app_port, node_port, java_port, go_port, mport) =
        (free_port(), free_port(), free_port(), free_port(), free_port(), free_port());
    let _pg = postgres(pg);
    // psql (libpq) connects, and authenticates, before the agent traces it.
    let mut psql = Command::new(pg_bin("psql"))
        .args(["-h", "127.0.0.1", "-p", &pg.to_string(), "-U", "app", "-d", "shop", "-qAt"])
        .env("PGPASSWORD", "s3cret-app-pw")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting psql");
    let mut psql_in = psql.stdin.take().unwrap();
    let mut psql_out = BufReader::new(psql.stdout.take().unwrap());
    let mut line = String::new();
    writeln!(psql_in, "SELECT 'ready';").unwrap();
    psql_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");

    let receiver = Receiver::start(Proto::Grpc, free_port());
    let yaml = format!(
        "discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n  instrument:\n    - {{ open_ports: \"{app_port}\", name: dbapp }}\n    - {{ open_ports: \"{node_port}\", name: nodeapp }}\n    - {{ open_ports: \"{java_port}\", name: javaapp }}\n    - {{ open_ports: \"{go_port}\", name: goapp }}\n    - {{ open_ports: \"{pg}\", name: pgserver }}\n    - {{ exe_path: \"*/bin/psql\", name: psql }}\nprometheus_export:\n  port: {mport}\notel_traces_export:\n  endpoint: {}\n  protocol: grpc\n  batch_timeout: 200ms\n",
        receiver.endpoint()
    );
    let (_agent, log) = start_agent(&yaml, &[], "postgresql");
    let app = db_app(app_port, free_port(), free_port(), pg, free_port());
    let node = node_app(node_port, free_port(), free_port(), pg, free_port());
    let java = java_app(java_port, free_port(), pg, free_port());
    // go1.23: its goroutines' creators come from g.parentGoid.
    let go = go_app("go1.23", go_port, free_port(), free_port(), pg, free_port());
    wait_pid_instrumented(go.pid(), &log);
    // Its calls are linked by goroutine once the Go probes run (they record the requests).
    wait_go_instrumented(mport, 1.0, &log);
    wait_pid_instrumented(app.pid(), &log);
    wait_pid_instrumented(node.pid(), &log);
    wait_pid_instrumented(java.pid(), &log);
    wait_pid_instrumented(psql.id(), &log);

    assert_eq!(http_get(app_port, "/postgresql").unwrap_or_default(), "ok");
    assert_eq!(http_get(node_port, "/postgresql").unwrap_or_default(), "ok");
    assert_eq!(http_get(java_port, "/postgresql").unwrap_or_default(), "ok");
    assert_eq!(http_get(go_port, "/postgresql").unwrap_or_default(), "ok");
    // Two statements in one Query (psql's `\;`), a failing one, then a marker psql prints.
    // COPY both ways: out to psql, and in from psql's standard input (rows, then `\.`).
    let script = "SELECT 1 \\; SELECT 2;\nCREATE TEMP TABLE t (a int);\nINSERT INTO t VALUES (1), (2);\nCOPY t TO STDOUT;\nCOPY t FROM STDIN;\n3\n4\n\\.\nSELECT count(*) FROM t;\nSELECT * FROM nope;\n\\echo done\n";
    psql_in.write_all(script.as_bytes()).unwrap();
    loop {
        line.clear();
        assert!(psql_out.read_line(&mut line).unwrap() > 0, "psql ended early");
        if line.trim() == "done" {
            break;
        }
    }

    let dump = || agent_dump(mport, &log);
    let want: &[(&str, &str, Option<&str>, f64)] = &[
        ("dbapp", "CREATE", None, 1.0),
        ("dbapp", "INSERT", None, 6.0),
        ("dbapp", "SELECT", None, 6.0),
        ("dbapp", "SELECT", Some("42P01"), 1.0),
        ("dbapp", "BEGIN", None, 1.0),
        ("dbapp", "UPDATE", None, 1.0),
        ("dbapp", "COMMIT", None, 1.0),
        ("dbapp", "DELETE", None, 1.0),
        ("dbapp", "DROP", None, 1.0),
        // psycopg's own: after a DDL statement (DROP) it deallocates its prepared statements.
        ("dbapp", "DEALLOCATE", None, 1.0),
        // pg: a simple query, an unnamed and a named statement (prepared once), an error.
        ("nodeapp", "SELECT", None, 4.0),
        ("nodeapp", "SELECT", Some("42P01"), 1.0),
        // pgjdbc: the extended protocol for everything, its two SETs on connect, BEGIN sent
        // with the UPDATE in one batch, a statement named from its 5th execution, COMMIT named.
        ("javaapp", "SET", None, 2.0),
        ("javaapp", "CREATE", None, 1.0),
        ("javaapp", "INSERT", None, 3.0),
        ("javaapp", "SELECT", None, 6.0),
        ("javaapp", "SELECT", Some("42P01"), 1.0),
        ("javaapp", "BEGIN", None, 1.0),
        ("javaapp", "UPDATE", None, 1.0),
        ("javaapp", "COMMIT", None, 1.0),
        ("javaapp", "DELETE", None, 1.0),
        ("javaapp", "DROP", None, 1.0),
        // lib/pq: parameterless statements as simple queries, the others prepared in a
        // Parse-only round trip first (not an operation); `BEGIN READ WRITE`.
        ("goapp", "CREATE", None, 1.0),
        ("goapp", "INSERT", None, 3.0),
        ("goapp", "SELECT", None, 4.0),
        ("goapp", "SELECT", Some("42P01"), 1.0),
        ("goapp", "BEGIN", None, 1.0),
        ("goapp", "UPDATE", None, 1.0),
        ("goapp", "COMMIT", None, 1.0),
        ("goapp", "DELETE", None, 1.0),
        ("goapp", "DROP", None, 1.0),
        ("psql", "SELECT", None, 3.0),
        ("psql", "SELECT", Some("42P01"), 1.0),
        ("psql", "CREATE", None, 1.0),
        ("psql", "INSERT", None, 1.0),
        ("psql", "COPY", None, 2.0),
    ];
    let (m, total) = check_counts(mport, want, &dump);
    assert_eq!(
        sum(&m, "db_client_operation_duration_seconds_count", &[("db_system_name", "postgresql")]),
        total,
        "{}",
        dump()
    );
    let internal = scrape(mport, "/internal/metrics");
    for reason in ["desync", "unknown_statement", "uncaptured"] {
        assert_eq!(sum(&internal, "beyla_decode_errors_total", &[("reason", reason)]), 0.0, "{reason}\n{}", dump());
    }

    // The app's statements are children of its HTTP request, with their table and namespace.
    let spans = spans_once_db_clients(&receiver, total as usize, &dump);
    let server = spans
        .iter()
        .find(|g| {
            g.span.kind == 2 && common::otlp::res_attr(Some(&g.resource), "service.name").as_deref() == Some("dbapp")
        })
        .expect("the app's HTTP server span");
    assert_eq!(
        check_parents(&spans, &["dbapp", "nodeapp", "javaapp", "goapp"], &dump),
        total as usize - 8,
        "psql's 8 have no parent"
    );
    let app_spans: Vec<_> = spans
        .iter()
        .filter(|g| {
            is_db_client(&g.span)
                && common::otlp::res_attr(Some(&g.resource), "service.name").as_deref() == Some("dbapp")
        })
        .collect();
    assert_eq!(app_spans.len(), 20);
    for g in &app_spans {
        assert_eq!(g.span.parent_span_id, server.span.span_id, "{}", g.span.name);
        assert_eq!(attr(&g.span.attributes, "db.namespace").as_deref(), Some("shop"), "{}", g.span.name);
    }
    let names: std::collections::BTreeSet<_> = app_spans.iter().map(|g| g.span.name.as_str()).collect();
    for name in [
        "CREATE items",
        "INSERT items",
        "SELECT items",
        "SELECT missing_table",
        "UPDATE items",
        "DELETE items",
        "DROP items",
        "BEGIN",
    ] {
        assert!(names.contains(name), "{name} not in {names:?}");
    }
    let select = app_spans.iter().find(|g| g.span.name == "SELECT items").unwrap();
    assert_eq!(attr(&select.span.attributes, "db.query.text").as_deref(), Some("SELECT name FROM items WHERE id = $1"));
    let update = app_spans.iter().find(|g| g.span.name == "UPDATE items").unwrap();
    assert_eq!(
        attr(&update.span.attributes, "db.query.text").as_deref(),
        Some("UPDATE items SET name = ? WHERE id = $1")
    );
    // The server's own view: the backends of the postmaster report every statement they ran
    // as a SERVER span, each the child of the client's span of the same statement (both ends
    // traced on this host, matched by the connection's endpoints).
    let served: Vec<_> =
        spans.iter().filter(|g| g.span.kind == 2 && attr(&g.span.attributes, "db.system.name").is_some()).collect();
    // Statements pipelined on one connection (several in flight at once) cannot be paired
    // from the endpoints: those are left without parent, and counted.
    assert_eq!(served.len(), total as usize, "postgres SERVER spans\n{}", dump());
    for g in &served {
        let svc = common::otlp::res_attr(Some(&g.resource), "service.name");
        assert_eq!(svc.as_deref(), Some("pgserver"));
    }
    // Connections recognised: the five clients' and the backends' ends.
    let internal = scrape(mport, "/internal/metrics");
    let pg_conns = sum(&internal, "beyla_decoded_connections_total", &[("protocol", "postgresql")]);
    assert!(pg_conns >= 10.0, "{pg_conns} PostgreSQL connections recognised");
    // pgjdbc's BEGIN and UPDATE in one batch, psql's two SELECTs in one Query; psycopg's
    // pipelined INSERTs as its flushes fall. Nothing else.
    let mut alone = unlinked_server_spans(&spans, mport);
    let inserts = alone.iter().filter(|n| **n == "INSERT items").count();
    alone.retain(|n| *n != "INSERT items");
    assert_eq!(alone, ["BEGIN", "SELECT", "SELECT", "UPDATE jitems"], "unlinked SERVER spans");
    assert!(inserts <= 3, "{inserts} INSERTs unlinked: psycopg pipelines 3");
    let everything = format!("{:?}\n{}", spans, dump());
    for secret in ["s3cret-app-pw", "s3cret-admin-pw", "secret-1", "secret-j"] {
        assert!(!everything.contains(secret), "{secret} exported");
    }
    drop(psql_in);
    let _ = psql.wait();
}

/// The Rust clients: redis-rs (a multiplexed connection, whose IO runs in a task of its own)
/// and tokio-postgres (likewise), from an axum app on a single-threaded tokio runtime: every
/// call the child of the HTTP request that made it (the runtime's one thread serves one
/// request at a time here).
#[test]
fn root_databases_rust_clients() {
    require_root();
    let (rport, pg, app_port, mport) = (free_port(), free_port(), free_port(), free_port());
    let _redis = redis_server(rport);
    let _pg = postgres(pg);
    let receiver = Receiver::start(Proto::Grpc, free_port());
    let yaml = format!(
        "discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n  instrument:\n    - {{ open_ports: \"{app_port}\", name: rustapp }}\nprometheus_export:\n  port: {mport}\notel_traces_export:\n  endpoint: {}\n  protocol: grpc\n  batch_timeout: 200ms\n",
        receiver.endpoint()
    );
    let (_agent, log) = start_agent(&yaml, &[], "rust-clients");
    let app = rust_app(app_port, rport, pg, 0);
    wait_pid_instrumented(app.pid(), &log);
    for path in ["/redis", "/postgresql"] {
        assert_eq!(http_get(app_port, path).unwrap_or_default(), "ok", "GET {path}");
    }

    let dump = || agent_dump(mport, &log);
    let want: &[(&str, &str, Option<&str>, f64)] = &[
        // redis-rs: AUTH on connect (not reported), a pipeline, MULTI/EXEC in one write.
        ("rustapp", "SET", None, 2.0),
        ("rustapp", "GET", None, 2.0),
        ("rustapp", "INCR", None, 5.0),
        ("rustapp", "MULTI", None, 1.0),
        ("rustapp", "EXEC", None, 1.0),
        ("rustapp", "LPUSH", Some("WRONGTYPE"), 1.0),
        ("rustapp", "DEL", None, 1.0),
        // tokio-postgres: every statement with parameters is prepared (a Parse-only round
        // trip, not an operation) and executed by Bind/Execute; batch_execute is a simple Query.
        ("rustapp", "CREATE", None, 1.0),
        ("rustapp", "INSERT", None, 3.0),
        ("rustapp", "SELECT", None, 1.0),
        ("rustapp", "SELECT", Some("42P01"), 1.0),
        // transaction() sends START TRANSACTION: the statement's first keyword names it.
        ("rustapp", "START", None, 1.0),
        ("rustapp", "UPDATE", None, 1.0),
        ("rustapp", "COMMIT", None, 1.0),
        ("rustapp", "DELETE", None, 1.0),
        ("rustapp", "DROP", None, 1.0),
    ];
    let (m, total) = check_counts(mport, want, &dump);
    for (system, ops) in [("redis", 13.0), ("postgresql", 11.0)] {
        let n = sum(&m, "db_client_operation_duration_seconds_count", &[("db_system_name", system)]);
        assert_eq!(n, ops, "{system}\n{}", dump());
    }
    let spans = spans_once_db_clients(&receiver, total as usize, &dump);
    assert_eq!(check_parents(&spans, &["rustapp"], &dump), total as usize);
    assert_eq!(sum(&scrape(mport, "/internal/metrics"), "beyla_unlinked_client_calls_total", &[]), 0.0);
    let everything = format!("{:?}\n{}", spans, dump());
    for secret in ["s3cret-pw-1", "s3cret-app-pw"] {
        assert!(!everything.contains(secret), "{secret} exported");
    }
}

/// The same Redis script from tokio's multi-threaded runtime under concurrent requests: a
/// task may resume on another worker, one that is serving another request by then, so the
/// thread that writes a call does not tell which request made it. No request's span may get
/// another's calls (before the agent knew tokio's workers by name, it did, now and then).
#[test]
fn root_databases_rust_multithreaded_runtime_never_misattributes() {
    require_root();
    let (rport, app_port, mport) = (free_port(), free_port(), free_port());
    let _redis = redis_server(rport);
    let receiver = Receiver::start(Proto::Grpc, free_port());
    let yaml = format!(
        "discovery:\n  poll_interval: 200ms\n  min_process_age: 0s\n  instrument:\n    - {{ open_ports: \"{app_port}\", name: rustapp }}\nprometheus_export:\n  port: {mport}\notel_traces_export:\n  endpoint: {}\n  protocol: grpc\n  batch_timeout: 200ms\n",
        receiver.endpoint()
    );
    let (_agent, log) = start_agent(&yaml, &[], "rust-multithreaded");
    let app = rust_app(app_port, rport, 0, 2);
    wait_pid_instrumented(app.pid(), &log);
    let (clients, each) = (4, 10);
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..each {
                    assert_eq!(http_get(app_port, "/redis").unwrap_or_default(), "ok");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let dump = || agent_dump(mport, &log);
    let requests = clients * each;
    let total = 13 * requests;
    let ok = wait_for(Duration::from_secs(30), || {
        sum(&scrape(mport, "/metrics"), "db_client_operation_duration_seconds_count", &[]) >= total as f64
    });
    assert!(ok, "{}", dump());
    let spans = spans_once_db_clients(&receiver, total, &dump);
    let servers: Vec<_> = spans.iter().filter(|g| g.span.kind == 2).collect();
    assert_eq!(servers.len(), requests, "{}", dump());
    let mut linked = 0;
    for server in &servers {
        let children: Vec<_> =
            spans.iter().filter(|g| is_db_client(&g.span) && g.span.parent_span_id == server.span.span_id).collect();
        // Another request's call under this one would show: more than its 13, or one outside
        // its time.
        assert!(children.len() <= 13, "{} calls under one request", children.len());
        for c in &children {
            assert!(
                c.span.start_time_unix_nano >= server.span.start_time_unix_nano
                    && c.span.end_time_unix_nano <= server.span.end_time_unix_nano,
                "{} outside its parent",
                c.span.name
            );
        }
        linked += children.len();
    }
    // tokio's workers are known by name: no call is linked by thread there, and the links
    // refused are counted.
    assert_eq!(linked, 0, "{}", dump());
    let refused = sum(&scrape(mport, "/internal/metrics"), "beyla_unlinked_client_calls_total", &[]);
    assert!(refused >= 1.0, "{}", dump());
}
