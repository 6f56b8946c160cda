//! The enrich stage's loop: decoded requests in, spans (with service and route) out.
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Dropped, Enricher, SpanBatch};
use crate::attach::stage::{Lifecycle, ProcessChange};
use crate::decode::Decoded;
use crate::telemetry::Internal;

/// Runs the stage on the current runtime until `rx` closes.
pub fn spawn(
    rx: mpsc::Receiver<Decoded>,
    tx: mpsc::Sender<SpanBatch>,
    lifecycle: mpsc::Sender<Lifecycle>,
    enricher: Enricher,
    tel: Internal,
) -> JoinHandle<()> {
    tokio::spawn(run(rx, tx, lifecycle, enricher, tel))
}

async fn run(
    mut rx: mpsc::Receiver<Decoded>,
    tx: mpsc::Sender<SpanBatch>,
    lifecycle: mpsc::Sender<Lifecycle>,
    mut enricher: Enricher,
    tel: Internal,
) {
    while let Some(decoded) = rx.recv().await {
        let spans = decoded
            .requests
            .into_iter()
            .filter_map(|r| match enricher.enrich(r) {
                Ok(span) => Some(span),
                Err(Dropped::UnknownProcess) => {
                    tel.unattributed_requests.inc();
                    None
                }
                Err(Dropped::Ignored) => None,
            })
            .collect();
        // The requests decoded before these exits are enriched: the table's owner may forget them.
        if !decoded.exited.is_empty() {
            let changes = decoded.exited.iter().map(|&pid| ProcessChange::Exit { pid }).collect();
            let _ = lifecycle.send(Lifecycle { changes, applied: None }).await;
        }
        let batch = SpanBatch { spans, drained_ns: decoded.drained_ns };
        let worth_sending = !batch.spans.is_empty() || batch.drained_ns.is_some();
        if worth_sending && tx.send(batch).await.is_err() {
            tel.batch_dropped("enrich_to_export");
            return;
        }
    }
}
