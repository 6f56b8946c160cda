//! The agent's own metrics (`beyla_*`), served on `/internal/metrics`. Each occurrence worth
//! counting is an event in `events` that logs and counts in one place.
pub mod events;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::decode::DecodeError;
use crate::events::ReaderStats;

pub type Labels = Vec<(&'static str, String)>;

/// OTLP exporter counters.
#[derive(Clone, Default)]
pub struct OtelStats {
    pub trace_exports: Counter,
    pub trace_export_errors: Counter,
    pub spans_exported: Counter,
    pub spans_dropped: Counter,
    pub metric_exports: Counter,
    pub metric_export_errors: Counter,
}

#[derive(Clone)]
pub struct Internal {
    pub decode_errors: Family<Labels, Counter>,
    pub instrumented_processes: Gauge,
    /// Processes with the Go probes attached (set by their thread, `attach::GoProbes`).
    pub go_processes: Gauge,
    /// Processes with the OpenSSL or rustls probes attached (set by their thread,
    /// `attach::TlsProbes`).
    pub tls_processes: Gauge,
    /// OpenSSL and rustls plaintext transfers whose socket was never seen: not decoded.
    pub tls_unlinked: Counter,
    pub requests: Family<Labels, Counter>,
    /// Connections a protocol's decoder claimed, by protocol.
    pub connections: Family<Labels, Counter>,
    /// Client spans whose written `traceparent` names another trace than the exported one.
    pub trace_mismatches: Counter,
    /// Client calls made by a thread serving several requests at once: left unlinked.
    pub unlinked_calls: Counter,
    /// Server requests whose traced client had several requests in flight on the connection
    /// (pipelined): not linked to any of them.
    pub unlinked_requests: Counter,
    /// Requests dropped because their process was not known (see `enrich::Dropped`).
    pub unattributed_requests: Counter,
    pub channel_drops: Family<Labels, Counter>,
    pub export_errors: Family<Labels, Counter>,
    pub otel: OtelStats,
    events_read: Family<Labels, Counter>,
    events_lost: Family<Labels, Counter>,
    family: String,
}

impl Internal {
    /// Registers every internal metric; `family` is the capture hook family in use.
    pub fn new(registry: &mut Registry, family: &str) -> Self {
        let t = Internal {
            decode_errors: Family::default(),
            instrumented_processes: Gauge::default(),
            go_processes: Gauge::default(),
            tls_processes: Gauge::default(),
            tls_unlinked: Counter::default(),
            requests: Family::default(),
            connections: Family::default(),
            trace_mismatches: Counter::default(),
            unlinked_calls: Counter::default(),
            unlinked_requests: Counter::default(),
            unattributed_requests: Counter::default(),
            channel_drops: Family::default(),
            export_errors: Family::default(),
            otel: OtelStats::default(),
            events_read: Family::default(),
            events_lost: Family::default(),
            family: family.to_string(),
        };
        for reason in DecodeError::ALL {
            let _ = t.decode_errors.get_or_create(&vec![("reason", reason.as_str().to_string())]);
        }
        let build_info: Family<Labels, Gauge> = Family::default();
        build_info
            .get_or_create(&vec![
                ("version", env!("CARGO_PKG_VERSION").to_string()),
                ("hook_family", family.to_string()),
            ])
            .set(1);

        registry.register("beyla_ebpf_events_read", "Events read from the BPF ring buffers", t.events_read.clone());
        registry.register(
            "beyla_ebpf_events_lost",
            "Events the kernel dropped because a ring buffer was full",
            t.events_lost.clone(),
        );
        registry.register(
            "beyla_decode_errors",
            "Traffic on traced connections that could not be decoded, by reason",
            t.decode_errors.clone(),
        );
        registry.register(
            "beyla_instrumented_processes",
            "Processes currently instrumented",
            t.instrumented_processes.clone(),
        );
        registry.register(
            "beyla_instrumented_go_processes",
            "Instrumented processes with the Go probes attached (goroutine-aware trace links)",
            t.go_processes.clone(),
        );
        registry.register(
            "beyla_instrumented_tls_processes",
            "Instrumented processes with the OpenSSL or rustls probes attached (TLS plaintext)",
            t.tls_processes.clone(),
        );
        registry.register(
            "beyla_tls_unlinked_transfers",
            "OpenSSL and rustls reads and writes whose socket the agent could not name (a memory-BIO connection whose handshake came before the agent; a rustls write taken in parts): not decoded",
            t.tls_unlinked.clone(),
        );
        registry.register("beyla_decoded_requests", "Requests decoded, by side (server or client)", t.requests.clone());
        registry.register(
            "beyla_decoded_connections",
            "Connections whose protocol was recognised, by protocol (http1, http2, redis, memcached, postgresql, mysql)",
            t.connections.clone(),
        );
        registry.register(
            "beyla_propagated_trace_mismatches",
            "Client spans exported in another trace than the traceparent the Go probes wrote into the call",
            t.trace_mismatches.clone(),
        );
        registry.register(
            "beyla_unlinked_client_calls",
            "Client calls made by a thread serving several requests at once (an event loop): not linked to any of them",
            t.unlinked_calls.clone(),
        );
        registry.register(
            "beyla_unlinked_server_requests",
            "Server requests whose client, traced on this host, had several requests in flight on the connection (pipelined): not linked to any of them",
            t.unlinked_requests.clone(),
        );
        registry.register(
            "beyla_unattributed_requests",
            "Requests dropped because their process was not known: it had run another program that discovery had not yet seen, or it was gone too long",
            t.unattributed_requests.clone(),
        );
        registry.register(
            "beyla_channel_drops",
            "Batches dropped between pipeline stages, by channel",
            t.channel_drops.clone(),
        );
        registry.register("beyla_export_errors", "Export failures, by exporter", t.export_errors.clone());
        let o = &t.otel;
        registry.register(
            "beyla_otel_trace_exports",
            "OTLP trace export requests that succeeded",
            o.trace_exports.clone(),
        );
        registry.register(
            "beyla_otel_trace_export_errors",
            "OTLP trace export requests that failed (the batch is retried)",
            o.trace_export_errors.clone(),
        );
        registry.register("beyla_otel_trace_spans_exported", "Spans delivered over OTLP", o.spans_exported.clone());
        registry.register(
            "beyla_otel_trace_spans_dropped",
            "Spans dropped because the OTLP queue was full (collector slow or down)",
            o.spans_dropped.clone(),
        );
        registry.register(
            "beyla_otel_metric_exports",
            "OTLP metric export requests that succeeded",
            o.metric_exports.clone(),
        );
        registry.register(
            "beyla_otel_metric_export_errors",
            "OTLP metric export requests that failed",
            o.metric_export_errors.clone(),
        );
        registry.register("beyla_internal_build_info", "Build and runtime information", build_info);
        t
    }

    /// Counters for the ring-buffer reader: handles to the exported series themselves
    /// (a `Counter` clone shares its value), so the reader pays one atomic add per event.
    pub fn reader_stats(&self) -> ReaderStats {
        let series = |fam: &Family<Labels, Counter>, ringbuf: &str, family: &str| {
            fam.get_or_create(&vec![("ringbuf", ringbuf.to_string()), ("family", family.to_string())]).clone()
        };
        ReaderStats {
            sock_events_read: series(&self.events_read, "sock_events", &self.family),
            process_events_read: series(&self.events_read, "process_events", "process"),
            sock_events_lost: series(&self.events_lost, "sock_events", &self.family),
        }
    }
}

/// The error and its sources, `a: b: c`: what a log line says of a failure (a wrapper's own
/// message rarely says why, the libbpf or I/O error under it does).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_chain_names_every_source() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "operation not permitted");
        let e = crate::attach::AttachError::Map { map: "traced_pids", source: libbpf_rs::Error::from(io) };
        let text = super::error_chain(&e);
        assert!(text.starts_with("accessing BPF map traced_pids: "), "{text}");
        assert!(text.contains("operation not permitted"), "{text}");
    }
}
