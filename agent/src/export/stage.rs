//! The export stage's loop: spans into the metrics (Prometheus registry), the trace printer
//! and OTLP; stale series expire.
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::otlp::Otlp;
use super::Printer;
use crate::aggregate::Aggregates;
use crate::enrich::SpanBatch;

/// Runs the stage on the current runtime until `rx` closes.
pub fn spawn(
    rx: mpsc::Receiver<SpanBatch>,
    metrics: Aggregates,
    printer: Option<Printer>,
    otlp: Option<Otlp>,
) -> JoinHandle<()> {
    tokio::spawn(run(rx, metrics, printer, otlp))
}

async fn run(mut rx: mpsc::Receiver<SpanBatch>, mut metrics: Aggregates, printer: Option<Printer>, otlp: Option<Otlp>) {
    let mut expiry = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            batch = rx.recv() => {
                let Some(SpanBatch { spans, drained_ns }) = batch else { return };
                let now = std::time::Instant::now();
                for s in &spans {
                    metrics.record(s, now);
                }
                if let Some(ts) = drained_ns {
                    metrics.advance(ts, now);
                    if let Some(o) = &otlp {
                        o.advance(ts);
                    }
                }
                if spans.is_empty() {
                    continue;
                }
                if let Some(p) = &printer {
                    p.print(&spans);
                }
                if let Some(o) = &otlp {
                    o.record(&spans);
                }
            }
            _ = expiry.tick() => {
                metrics.expire(std::time::Instant::now());
            }
        }
    }
}
