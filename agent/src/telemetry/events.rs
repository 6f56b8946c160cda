//! Internal events: each logs and counts in one place.
use super::Internal;
use crate::decode::{DecodeError, Role};

impl Internal {
    pub fn decode_failed(&self, reason: DecodeError) {
        tracing::trace!(reason = reason.as_str(), "Traffic not decoded.");
        self.decode_errors.get_or_create(&vec![("reason", reason.as_str().to_string())]).inc();
    }

    pub fn request_decoded(&self, role: Role) {
        let side = match role {
            Role::Server => "server",
            Role::Client => "client",
        };
        self.requests.get_or_create(&vec![("side", side.to_string())]).inc();
    }

    pub fn connection_claimed(&self, protocol: &'static str) {
        self.connections.get_or_create(&vec![("protocol", protocol.to_string())]).inc();
    }

    pub fn trace_context_mismatched(&self, spans: u32) {
        if spans > 0 {
            tracing::debug!(spans, "Client spans exported in another trace than the traceparent written for them.");
            self.trace_mismatches.inc_by(u64::from(spans));
        }
    }

    pub fn client_calls_unlinked(&self, calls: u32) {
        if calls > 0 {
            tracing::trace!(calls, "Client calls made while their thread served several requests: not linked.");
            self.unlinked_calls.inc_by(u64::from(calls));
        }
    }

    pub fn server_requests_unlinked(&self, requests: u32) {
        if requests > 0 {
            tracing::trace!(
                requests,
                "Server requests whose client had several in flight on the connection: not linked."
            );
            self.unlinked_requests.inc_by(u64::from(requests));
        }
    }

    pub fn batch_dropped(&self, channel: &'static str) {
        tracing::warn!(channel, "Pipeline channel full; batch dropped.");
        self.channel_drops.get_or_create(&vec![("channel", channel.to_string())]).inc();
    }

    pub fn export_failed(&self, exporter: &'static str, error: &dyn std::fmt::Display) {
        tracing::warn!(exporter, %error, "Export failed.");
        self.export_errors.get_or_create(&vec![("exporter", exporter.to_string())]).inc();
    }

    pub fn otel_trace_exported(&self, spans: usize) {
        self.otel.trace_exports.inc();
        self.otel.spans_exported.inc_by(spans as u64);
    }

    pub fn otel_trace_export_failed(&self) {
        self.otel.trace_export_errors.inc();
    }

    pub fn otel_spans_dropped(&self, n: u64) {
        if n > 0 {
            tracing::debug!(spans = n, "OTLP queue full; oldest spans dropped.");
            self.otel.spans_dropped.inc_by(n);
        }
    }

    pub fn otel_metric_exported(&self) {
        self.otel.metric_exports.inc();
    }

    pub fn otel_metric_export_failed(&self) {
        self.otel.metric_export_errors.inc();
    }

    pub fn processes_instrumented(&self, n: usize) {
        self.instrumented_processes.set(n as i64);
    }
}
