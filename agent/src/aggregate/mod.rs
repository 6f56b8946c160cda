//! Stage `aggregate`: folds spans into the application metrics (RED histograms per service,
//! method, status and route) with Beyla's names, labels and default buckets.
use std::collections::HashSet;

use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::decode::Role;
use crate::enrich::Span;

pub type Labels = Vec<(&'static str, String)>;

/// Histogram buckets, from `prometheus_export.buckets`.
#[derive(Debug, Clone)]
pub struct Buckets(pub Vec<f64>);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

type HistFamily = Family<Labels, Histogram, Buckets>;

pub struct AppMetrics {
    server_duration: HistFamily,
    client_duration: HistFamily,
    server_request_size: HistFamily,
    server_response_size: HistFamily,
    client_request_size: HistFamily,
    client_response_size: HistFamily,
    target_info: Family<Labels, Gauge>,
    services_seen: HashSet<Labels>,
}

impl AppMetrics {
    /// Creates the metric families and registers them in `registry`.
    pub fn new(registry: &mut Registry, duration: Buckets, request_size: Buckets, response_size: Buckets) -> Self {
        let m = AppMetrics {
            server_duration: Family::new_with_constructor(duration.clone()),
            client_duration: Family::new_with_constructor(duration),
            server_request_size: Family::new_with_constructor(request_size.clone()),
            server_response_size: Family::new_with_constructor(response_size.clone()),
            client_request_size: Family::new_with_constructor(request_size),
            client_response_size: Family::new_with_constructor(response_size),
            target_info: Family::default(),
            services_seen: HashSet::new(),
        };
        let s = Unit::Seconds;
        let b = Unit::Bytes;
        registry.register_with_unit("http_server_request_duration", "Duration of HTTP service calls from the server side", s.clone(), m.server_duration.clone());
        registry.register_with_unit("http_client_request_duration", "Duration of HTTP service calls from the client side", s, m.client_duration.clone());
        registry.register_with_unit("http_server_request_body_size", "Size of the HTTP request body as received at the server side", b.clone(), m.server_request_size.clone());
        registry.register_with_unit("http_server_response_body_size", "Size of the HTTP response body as sent from the server side", b.clone(), m.server_response_size.clone());
        registry.register_with_unit("http_client_request_body_size", "Size of the HTTP request body as sent from the client side", b.clone(), m.client_request_size.clone());
        registry.register_with_unit("http_client_response_body_size", "Size of the HTTP response body as received at the client side", b, m.client_response_size.clone());
        // prometheus-client appends `_info` to info metrics; target_info is a gauge fixed at 1.
        registry.register("target_info", "Target metadata", m.target_info.clone());
        m
    }

    pub fn record(&mut self, span: &Span) {
        let svc = &span.process.service;
        let job = if svc.namespace.is_empty() { svc.name.clone() } else { format!("{}/{}", svc.namespace, svc.name) };
        let base: Labels = vec![
            ("instance", svc.instance_id.clone()),
            ("job", job),
            ("service_name", svc.name.clone()),
            ("service_namespace", svc.namespace.clone()),
        ];
        if !self.services_seen.contains(&base) {
            let mut info = base.clone();
            info.push(("telemetry_sdk_language", "unknown".into()));
            info.push(("telemetry_sdk_name", "beyla".into()));
            info.push(("process_pid", span.process.pid.to_string()));
            self.target_info.get_or_create(&info).set(1);
            self.services_seen.insert(base.clone());
        }

        let r = &span.request;
        let mut labels = base;
        labels.push(("http_request_method", r.method.clone()));
        labels.push(("http_response_status_code", r.status.to_string()));
        if let Some(route) = &span.route {
            labels.push(("http_route", route.clone()));
        }
        let (server_addr, server_port) = server_endpoint(span);
        labels.push(("server_address", server_addr));
        labels.push(("server_port", server_port.to_string()));
        labels.push(("url_scheme", "http".into()));

        let secs = r.duration_ns() as f64 / 1e9;
        let (dur, req, resp) = match r.role {
            Role::Server => (&self.server_duration, &self.server_request_size, &self.server_response_size),
            Role::Client => (&self.client_duration, &self.client_request_size, &self.client_response_size),
        };
        dur.get_or_create(&labels).observe(secs);
        req.get_or_create(&labels).observe(r.request_body_size as f64);
        resp.get_or_create(&labels).observe(r.response_body_size as f64);
    }
}

/// `server.address`/`server.port`: the Host header when present, else the socket's server end.
fn server_endpoint(span: &Span) -> (String, u16) {
    let r = &span.request;
    let sock = match r.role {
        Role::Server => r.local,
        Role::Client => r.remote,
    };
    if let Some(host) = r.host.as_deref().filter(|h| !h.is_empty()) {
        let (name, port) = match host.rsplit_once(':') {
            Some((n, p)) if !n.ends_with(']') || host.starts_with('[') => (n, p.parse().unwrap_or(sock.port())),
            _ => (host, sock.port()),
        };
        return (name.trim_matches(['[', ']']).to_string(), port);
    }
    (sock.ip().to_string(), sock.port())
}
