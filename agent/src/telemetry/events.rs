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

    pub fn batch_dropped(&self, channel: &'static str) {
        tracing::warn!(channel, "Pipeline channel full; batch dropped.");
        self.channel_drops.get_or_create(&vec![("channel", channel.to_string())]).inc();
    }

    pub fn export_failed(&self, exporter: &'static str, error: &dyn std::fmt::Display) {
        tracing::warn!(exporter, %error, "Export failed.");
        self.export_errors.get_or_create(&vec![("exporter", exporter.to_string())]).inc();
    }

    pub fn processes_instrumented(&self, n: usize) {
        self.instrumented_processes.set(n as i64);
    }
}
