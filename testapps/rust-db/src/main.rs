//! The web app of `agent/tests/root_databases.rs` in Rust: axum on a single-threaded tokio
//! runtime (every task on one thread, so the agent can tell which request made each call)
//! with redis-rs and tokio-postgres, whose connections do their IO in a task of their own.
//!
//!   REDIS_PASSWORD=... PGPASSWORD=... rust-db PORT REDIS_PORT MEMCACHED_PORT PG_PORT MYSQL_PORT
//!   (the other apps' arguments; Memcached and MySQL are not called)
//!     GET /redis       runs the Redis script below, answers 200 "ok"
//!     GET /postgresql  runs the PostgreSQL script below, answers 200 "ok"
//!
//! A failed script answers 500 with the error. Each request opens its own connection and
//! drops it before answering; each script is a known list of operations that the test counts
//! by name and error.
use std::env;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone, Copy)]
struct Ports {
    redis: u16,
    pg: u16,
}

fn check(ok: bool, what: &str) -> Result<(), Error> {
    if ok {
        Ok(())
    } else {
        Err(format!("unexpected result: {what}").into())
    }
}

async fn redis_script(port: u16) -> Result<(), Error> {
    // Keys of this request's own, so that concurrent requests do not meet.
    static REQUESTS: AtomicU64 = AtomicU64::new(0);
    let n = REQUESTS.fetch_add(1, Ordering::Relaxed);
    let (rk, rn, ra) = (format!("rk{n}"), format!("rn{n}"), format!("ra{n}"));
    let pw = env::var("REDIS_PASSWORD").unwrap_or_default();
    let client = redis::Client::open(format!("redis://:{pw}@127.0.0.1:{port}/"))?;
    // AUTH (and the library's own set-up) on connect: not reported.
    let mut c = client.get_multiplexed_async_connection().await?;
    let () = redis::cmd("SET").arg(&rk).arg("v").query_async(&mut c).await?; // SET
    let v: String = redis::cmd("GET").arg(&rk).query_async(&mut c).await?; // GET
    check(v == "v", "GET")?;
    for want in 1..=2 {
        let n: i64 = redis::cmd("INCR").arg(&rn).query_async(&mut c).await?; // INCR x2
        check(n == want, "INCR")?;
    }
    // A pipeline: three commands in one write, three operations.
    let (ok, one, two): (String, String, i64) =
        redis::pipe().cmd("SET").arg(&ra).arg("1").cmd("GET").arg(&ra).cmd("INCR").arg(&ra).query_async(&mut c).await?;
    check(ok == "OK" && one == "1" && two == 2, "pipeline")?;
    // A transaction: MULTI, INCR, INCR, EXEC in one write.
    let (a, b): (i64, i64) =
        redis::pipe().atomic().cmd("INCR").arg(&ra).cmd("INCR").arg(&ra).query_async(&mut c).await?;
    check((a, b) == (3, 4), "MULTI/EXEC")?;
    // LPUSH on a string: WRONGTYPE.
    let err = redis::cmd("LPUSH").arg(&rk).arg("x").query_async::<i64>(&mut c).await.err();
    check(err.is_some_and(|e| e.code() == Some("WRONGTYPE")), "LPUSH on a string")?;
    let n: i64 = redis::cmd("DEL").arg(&rk).arg(&ra).arg(&rn).query_async(&mut c).await?; // DEL
    check(n == 3, "DEL")?;
    Ok(())
    // SET 2, GET 2, INCR 5 (2 alone, 1 pipelined, 2 in the transaction), MULTI 1, EXEC 1,
    // LPUSH 1 (WRONGTYPE), DEL 1.
}

async fn postgresql_script(port: u16) -> Result<(), Error> {
    let pw = env::var("PGPASSWORD").unwrap_or_default();
    let conf = format!("host=127.0.0.1 port={port} user=app password={pw} dbname=shop");
    let (mut client, connection) = tokio_postgres::connect(&conf, tokio_postgres::NoTls).await?;
    let io = tokio::spawn(connection);
    // Simple query protocol.
    client.batch_execute("CREATE TABLE IF NOT EXISTS ritems (id int PRIMARY KEY, name text)").await?; // CREATE
                                                                                                      // A named prepared statement: Parse once (not an operation), Bind + Execute per call.
    let insert = client.prepare("INSERT INTO ritems (id, name) VALUES ($1, $2)").await?;
    for (id, name) in [(1, "a"), (2, "b"), (3, "c")] {
        client.execute(&insert, &[&id, &name]).await?; // INSERT x3
    }
    // A statement given as text: prepared (unnamed round trip) then executed: one SELECT.
    let row = client.query_one("SELECT count(*) FROM ritems WHERE id > $1", &[&0i32]).await?; // SELECT
    check(row.get::<_, i64>(0) == 3, "count")?;
    let tx = client.transaction().await?; // START TRANSACTION
    tx.execute("UPDATE ritems SET name = 'x' WHERE id = $1", &[&1i32]).await?; // UPDATE
    tx.commit().await?; // COMMIT
    let err = client.batch_execute("SELECT * FROM missing_table").await.err(); // SELECT: 42P01
    check(err.as_ref().and_then(|e| e.code()).is_some_and(|c| c.code() == "42P01"), "SELECT from a missing table")?;
    client.batch_execute("DELETE FROM ritems").await?; // DELETE
    client.batch_execute("DROP TABLE ritems").await?; // DROP
    drop(client);
    io.await??;
    Ok(())
    // CREATE 1, INSERT 3, SELECT 2 (1 failed, 42P01), START 1, UPDATE 1, COMMIT 1, DELETE 1,
    // DROP 1: 11.
}

fn answer(r: Result<(), Error>) -> (StatusCode, String) {
    match r {
        Ok(()) => (StatusCode::OK, "ok".into()),
        Err(e) => {
            eprintln!("rust-db: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

fn main() -> Result<(), Error> {
    let args: Vec<u16> = env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let [port, redis, _memcached, pg, _mysql] = args[..] else {
        return Err("usage: rust-db PORT REDIS_PORT MEMCACHED_PORT PG_PORT MYSQL_PORT".into());
    };
    // RUST_DB_WORKERS=N: tokio's multi-threaded runtime with N workers (tasks move between
    // them) instead of the single-threaded one.
    let workers: usize = env::var("RUST_DB_WORKERS").ok().and_then(|w| w.parse().ok()).unwrap_or(0);
    let rt = if workers > 0 {
        tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build()?
    } else {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    };
    rt.block_on(async move {
        let app = Router::new()
            .route("/redis", get(|State(p): State<Ports>| async move { answer(redis_script(p.redis).await) }))
            .route("/postgresql", get(|State(p): State<Ports>| async move { answer(postgresql_script(p.pg).await) }))
            .with_state(Ports { redis, pg });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        axum::serve(listener, app).await?;
        Ok(())
    })
}
