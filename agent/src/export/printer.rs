//! `trace_printer`: one line per captured request on stdout, as text or JSON.
use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

use crate::decode::context::hex;
use crate::decode::{Family, Role};
use crate::enrich::Span;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrintFormat {
    Text,
    Json,
    JsonIndent,
}

impl PrintFormat {
    /// `trace_printer`; `None` when disabled.
    pub fn from_config(cfg: &crate::config::Config) -> Option<PrintFormat> {
        use crate::config::TracePrinter;
        match cfg.trace_printer {
            TracePrinter::Disabled => None,
            TracePrinter::Text => Some(PrintFormat::Text),
            TracePrinter::Json => Some(PrintFormat::Json),
            TracePrinter::JsonIndent => Some(PrintFormat::JsonIndent),
        }
    }
}

#[derive(Serialize)]
struct Line<'a> {
    service: &'a str,
    service_namespace: &'a str,
    pid: u32,
    kind: Role,
    method: &'a str,
    path: &'a str,
    route: Option<&'a str>,
    status: u16,
    duration_us: u64,
    start_ns: u64,
    request_body_size: u64,
    response_body_size: u64,
    local: String,
    peer: String,
    host: Option<&'a str>,
    traceparent: Option<&'a str>,
    trace_id: String,
    span_id: String,
    /// Empty for a root span.
    parent_span_id: String,
    /// Kubernetes attributes by OTel name (`k8s.pod.name`, ...); absent outside Kubernetes.
    #[serde(skip_serializing_if = "Option::is_none")]
    k8s: Option<BTreeMap<&'static str, &'a str>>,
    /// A non-HTTP operation: its family, span name, attributes and error.
    #[serde(skip_serializing_if = "Option::is_none")]
    operation: Option<OperationLine<'a>>,
}

#[derive(Serialize)]
struct OperationLine<'a> {
    family: &'static str,
    name: &'a str,
    attributes: BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

pub struct Printer {
    format: PrintFormat,
}

impl Printer {
    pub fn new(format: PrintFormat) -> Self {
        Printer { format }
    }

    pub fn line(&self, span: &Span) -> String {
        let r = &span.request;
        let l = Line {
            service: &span.process.service.name,
            service_namespace: &span.process.service.namespace,
            pid: r.pid,
            kind: r.role,
            method: &r.method,
            path: r.path(),
            route: span.route.as_deref(),
            status: r.status,
            duration_us: r.duration_ns() / 1000,
            start_ns: r.start_ns,
            request_body_size: r.request_body_size,
            response_body_size: r.response_body_size,
            local: r.local.to_string(),
            peer: r.remote.to_string(),
            host: r.host.as_deref(),
            traceparent: r.traceparent.as_deref(),
            trace_id: hex(&r.trace.trace_id),
            span_id: hex(&r.trace.span_id),
            parent_span_id: if r.trace.has_parent() { hex(&r.trace.parent_span_id) } else { String::new() },
            k8s: span.process.k8s.as_ref().map(|k| k.attributes().map(|(otel, _, v)| (otel, v)).collect()),
            operation: r.operation.as_deref().map(|op| OperationLine {
                family: match op.family {
                    Family::Http => "http",
                    Family::Rpc => "rpc",
                    Family::Db => "db",
                    Family::Messaging => "messaging",
                },
                name: &op.name,
                attributes: op.attributes.iter().map(|(k, v)| (*k, v.to_string())).collect(),
                error: op.error.as_deref(),
            }),
        };
        match self.format {
            PrintFormat::Json => serde_json::to_string(&l).unwrap_or_default(),
            PrintFormat::JsonIndent => serde_json::to_string_pretty(&l).unwrap_or_default(),
            PrintFormat::Text => format!(
                "{kind} {svc} pid={pid} {method} {path} route={route} status={status} dur={dur}us req={req}B resp={resp}B local={local} peer={peer} trace={trace} span={span} parent={parent}",
                kind = match r.role { Role::Server => "SERVER", Role::Client => "CLIENT" },
                svc = l.service,
                pid = l.pid,
                method = l.operation.as_ref().map_or(l.method, |o| o.name),
                path = match &l.operation {
                    Some(o) => o.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "),
                    None => l.path.to_string(),
                },
                route = l.route.unwrap_or("-"),
                status = l.status,
                dur = l.duration_us,
                req = l.request_body_size,
                resp = l.response_body_size,
                local = l.local,
                peer = l.peer,
                trace = l.trace_id,
                span = l.span_id,
                parent = if l.parent_span_id.is_empty() { "-" } else { &l.parent_span_id },
            ),
        }
    }

    pub fn print(&self, spans: &[Span]) {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for s in spans {
            let _ = writeln!(out, "{}", self.line(s));
        }
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::test_span;

    fn span() -> Span {
        let mut s = test_span();
        let p = std::sync::Arc::make_mut(&mut s.process);
        p.service.namespace = "demo".into();
        s.request.host = Some("shop:8080".into());
        s.request.trace.trace_id[15] = 1;
        s.request.trace.span_id[7] = 2;
        s
    }
    #[test]
    fn text_line() {
        assert_eq!(
            Printer::new(PrintFormat::Text).line(&span()),
            "SERVER shop pid=42 GET /users/7 route=/users/* status=200 dur=1500us req=0B resp=12B local=127.0.0.1:8080 peer=127.0.0.1:5000 trace=00000000000000000000000000000001 span=0000000000000002 parent=-"
        );
    }

    #[test]
    fn json_line() {
        let v: serde_json::Value = serde_json::from_str(&Printer::new(PrintFormat::Json).line(&span())).unwrap();
        assert_eq!(v["service"], "shop");
        assert_eq!(v["kind"], "server");
        assert_eq!(v["route"], "/users/*");
        assert_eq!(v["duration_us"], 1500);
        assert_eq!(v["peer"], "127.0.0.1:5000");
        assert_eq!(v["trace_id"], "00000000000000000000000000000001");
        assert_eq!(v["span_id"], "0000000000000002");
        assert_eq!(v["parent_span_id"], "");
        assert!(v.get("k8s").is_none());
    }

    #[test]
    fn json_line_with_kubernetes_attributes() {
        let mut s = span();
        let mut meta =
            crate::kube::K8sMeta { namespace: "demo".into(), pod_name: "backend-1".into(), ..Default::default() };
        meta.owners.deployment = Some("backend".into());
        std::sync::Arc::make_mut(&mut s.process).k8s = Some(std::sync::Arc::new(meta));
        let v: serde_json::Value = serde_json::from_str(&Printer::new(PrintFormat::Json).line(&s)).unwrap();
        assert_eq!(
            v["k8s"],
            serde_json::json!({"k8s.namespace.name": "demo", "k8s.pod.name": "backend-1", "k8s.deployment.name": "backend", "k8s.owner.name": "backend"})
        );
    }
}
