//! The enrich stage's loop: decoded requests in, spans (with service and route) out.
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Enricher, SpanBatch};
use crate::decode::Decoded;
use crate::telemetry::Internal;

/// Runs the stage on the current runtime until `rx` closes.
pub fn spawn(
    rx: mpsc::Receiver<Decoded>,
    tx: mpsc::Sender<SpanBatch>,
    enricher: Enricher,
    tel: Internal,
) -> JoinHandle<()> {
    tokio::spawn(run(rx, tx, enricher, tel))
}

async fn run(mut rx: mpsc::Receiver<Decoded>, tx: mpsc::Sender<SpanBatch>, mut enricher: Enricher, tel: Internal) {
    while let Some(decoded) = rx.recv().await {
        let spans = decoded.requests.into_iter().filter_map(|r| enricher.enrich(r)).collect();
        for pid in decoded.exited {
            enricher.forget(pid);
        }
        let batch = SpanBatch { spans, drained_ns: decoded.drained_ns };
        let worth_sending = !batch.spans.is_empty() || batch.drained_ns.is_some();
        if worth_sending && tx.send(batch).await.is_err() {
            tel.batch_dropped("enrich_to_export");
            return;
        }
    }
}
