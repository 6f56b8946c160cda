//! `prometheus_export.features: [application_span]`: Tempo-style span metrics
//! (`traces_spanmetrics_*`), one series per service, span name, kind and status.
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::{job, Buckets, HistFamily, Labels, LastSeen};
use crate::decode::Role;
use crate::enrich::Span;

pub struct SpanMetrics {
    latency: HistFamily,
    calls: Family<Labels, Counter>,
    size: Family<Labels, Counter>,
    seen: LastSeen<Labels>,
}

impl SpanMetrics {
    pub fn new(registry: &mut Registry, duration: Buckets, ttl: Duration) -> Self {
        let m = SpanMetrics {
            latency: Family::new_with_constructor(duration),
            calls: Family::default(),
            size: Family::default(),
            seen: LastSeen::new(ttl),
        };
        // Tempo's names: the latency histogram has no unit suffix.
        registry.register(
            "traces_spanmetrics_latency",
            "Span duration, by span name, kind and status",
            m.latency.clone(),
        );
        registry.register("traces_spanmetrics_calls", "Spans, by span name, kind and status", m.calls.clone());
        registry.register(
            "traces_spanmetrics_size",
            "Request body bytes of the spans, by span name, kind and status",
            m.size.clone(),
        );
        m
    }

    pub fn record(&mut self, span: &Span) {
        let svc = &span.process.service;
        let labels: Labels = vec![
            ("instance", svc.instance_id.clone()),
            ("job", job(svc)),
            ("service", svc.name.clone()),
            ("service_namespace", svc.namespace.clone()),
            ("source", "beyla".into()),
            ("span_kind", kind(span.request.role).into()),
            ("span_name", span.name()),
            ("status_code", if span.is_error() { "STATUS_CODE_ERROR" } else { "STATUS_CODE_UNSET" }.into()),
        ];
        self.latency.get_or_create(&labels).observe(span.request.duration_ns() as f64 / 1e9);
        self.calls.get_or_create(&labels).inc();
        let size = self.size.get_or_create(&labels);
        if !span.request.body_sizes_unknown {
            size.inc_by(span.request.request_body_size);
        }
        self.seen.touch(labels, Instant::now());
    }

    pub fn expire(&mut self, now: Instant) {
        for l in self.seen.take_stale(now) {
            self.latency.remove(&l);
            self.calls.remove(&l);
            self.size.remove(&l);
        }
    }
}

pub fn kind(role: Role) -> &'static str {
    match role {
        Role::Server => "SPAN_KIND_SERVER",
        Role::Client => "SPAN_KIND_CLIENT",
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;
    use crate::enrich::test_span;

    #[test]
    fn counts_by_name_kind_and_status() {
        let mut reg = Registry::default();
        let mut m = SpanMetrics::new(&mut reg, Buckets(vec![0.001, 0.01]), Duration::from_secs(60));
        let mut s = test_span();
        s.request.request_body_size = 10;
        m.record(&s);
        m.record(&s);
        s.request.status = 503;
        m.record(&s);
        let mut out = String::new();
        encode(&mut out, &reg).unwrap();
        let ok = r#"service="shop",service_namespace="",source="beyla",span_kind="SPAN_KIND_SERVER",span_name="GET /users/*",status_code="STATUS_CODE_UNSET""#;
        assert!(
            out.contains(&format!("traces_spanmetrics_calls_total{{instance=\"h:42\",job=\"shop\",{ok}}} 2")),
            "{out}"
        );
        assert!(
            out.contains(&format!("traces_spanmetrics_size_total{{instance=\"h:42\",job=\"shop\",{ok}}} 20")),
            "{out}"
        );
        assert!(out.contains("status_code=\"STATUS_CODE_ERROR\"} 1"), "{out}");
        assert!(
            out.contains(&format!(
                "traces_spanmetrics_latency_bucket{{le=\"0.01\",instance=\"h:42\",job=\"shop\",{ok}}} 2"
            )),
            "{out}"
        );
        m.expire(Instant::now() + Duration::from_secs(61));
        let mut out = String::new();
        encode(&mut out, &reg).unwrap();
        assert!(!out.contains("traces_spanmetrics_calls_total{"), "{out}");
    }
}
