//! HTTP/1.1 keep-alive load generator for the benchmark suite (`bench/run`).
//!
//! Open loop at a fixed rate (`--rate R`, like wrk2): request `j` is due at `start + j / R`,
//! connections take turns (`j % connections`), and its latency is measured from when it was
//! due (or from when it was sent, if that is within the 5 ms the tokio timer and epoll may be late here), so a
//! stalled server is not hidden by the client waiting (no coordinated omission).
//! `--rate 0` is a closed loop (each connection sends as fast as answers come back).
//! Paths: `--path P`, or `--routes N` cycles through N distinct word-like paths
//! (`/ba/ce/di`) that the agent's route heuristic keeps as N distinct routes.
//! Prints one JSON object on stdout.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Args {
    port: u16,
    connections: usize,
    duration: Duration,
    rate: f64,
    paths: Vec<String>,
}

const TIMER_SLACK: Duration = Duration::from_millis(5);

const SYLLABLES: [&str; 10] = ["ba", "ce", "di", "fo", "gu", "ha", "je", "ki", "lo", "mu"];

/// Distinct paths made of short word-like segments: `/ba`, `/ba/ce`, ... never look like ids.
fn route_paths(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let mut p = String::from("/r");
            let mut x = i;
            loop {
                p.push('/');
                p.push_str(SYLLABLES[x % 10]);
                x /= 10;
                if x == 0 {
                    break;
                }
            }
            p
        })
        .collect()
}

fn parse_args() -> Result<Args> {
    let mut a = Args { port: 0, connections: 10, duration: Duration::from_secs(10), rate: 0.0, paths: vec![] };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--port" => a.port = v()?.parse().context("--port")?,
            "--connections" | "-c" => a.connections = v()?.parse().context("--connections")?,
            "--duration" | "-d" => a.duration = Duration::from_secs_f64(v()?.parse().context("--duration")?),
            "--rate" | "-R" => a.rate = v()?.parse().context("--rate")?,
            "--path" => a.paths = vec![v()?],
            "--routes" => a.paths = route_paths(v()?.parse().context("--routes")?),
            _ => bail!(
                "unknown argument {k}; usage: loadgen --port P [-c N] [-d SECS] [-R RATE] [--path P | --routes N]"
            ),
        }
    }
    if a.port == 0 || a.connections == 0 {
        bail!("--port and a non-zero --connections are required");
    }
    if a.paths.is_empty() {
        a.paths.push("/ping".into());
    }
    Ok(a)
}

#[derive(Default)]
struct Counts {
    sent: u64,
    ok: u64,
    non2xx: u64,
    errors: u64,
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

/// Reads one response (head + Content-Length body); returns its status.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("response head")?;
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("status line")?;
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed in body");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(status)
}

async fn connection(i: usize, a: std::rc::Rc<Args>, start: Instant) -> (Counts, Histogram<u64>) {
    let mut c = Counts::default();
    let mut h = new_hist();
    let mut stream: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(8192);
    let deadline = start + a.duration;
    let mut k = 0usize;
    loop {
        let j = i + k * a.connections;
        k += 1;
        let due = if a.rate > 0.0 { start + Duration::from_secs_f64(j as f64 / a.rate) } else { Instant::now() };
        if due >= deadline || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        if stream.is_none() {
            match TcpStream::connect(("127.0.0.1", a.port)).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    stream = Some(s);
                }
                Err(_) => {
                    c.errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        // tokio's timer (1 ms ticks, then epoll) fires up to a few ms late on this machine: a
        // request sent within TIMER_SLACK of its due time is timed from when it was sent, one held
        // up longer (its connection was still busy) from its due time, so queueing still counts.
        let sent_at = Instant::now();
        let t0 = if sent_at.duration_since(due) <= TIMER_SLACK { sent_at } else { due };
        let s = stream.as_mut().expect("connected above");
        let path = &a.paths[j % a.paths.len()];
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n", a.port);
        c.sent += 1;
        let res = match s.write_all(req.as_bytes()).await {
            Ok(()) => read_response(s, &mut buf).await,
            Err(e) => Err(e.into()),
        };
        match res {
            Ok(status) => {
                let us = t0.elapsed().as_micros().max(1) as u64;
                let _ = h.record(us.min(h.high()));
                if (200..300).contains(&status) || status == 404 {
                    c.ok += 1;
                } else {
                    c.non2xx += 1;
                }
            }
            Err(_) => {
                c.errors += 1;
                stream = None;
            }
        }
    }
    (c, h)
}

fn main() -> Result<()> {
    let a = std::rc::Rc::new(parse_args()?);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    let (c, h, elapsed) = local.block_on(&rt, async {
        let start = Instant::now() + Duration::from_millis(20);
        let tasks: Vec<_> =
            (0..a.connections).map(|i| tokio::task::spawn_local(connection(i, a.clone(), start))).collect();
        let mut total = Counts::default();
        let mut hist = new_hist();
        for t in tasks {
            let (c, h) = t.await.expect("connection task");
            total.sent += c.sent;
            total.ok += c.ok;
            total.non2xx += c.non2xx;
            total.errors += c.errors;
            hist.add(&h).expect("same bounds");
        }
        (total, hist, start.elapsed())
    });
    let q = |p: f64| h.value_at_quantile(p);
    let quantiles: Vec<serde_json::Value> = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9999, 1.0]
        .iter()
        .map(|&p| serde_json::json!([p, q(p)]))
        .collect();
    let done = c.ok + c.non2xx;
    let out = serde_json::json!({
        "rate": a.rate,
        "connections": a.connections,
        "paths": a.paths.len(),
        "duration_s": elapsed.as_secs_f64(),
        "sent": c.sent,
        "completed": done,
        "non2xx": c.non2xx,
        "errors": c.errors,
        "rps": done as f64 / elapsed.as_secs_f64(),
        "lat_us": {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999), "max": h.max(), "mean": h.mean()},
        "quantiles": quantiles,
    });
    println!("{out}");
    Ok(())
}
