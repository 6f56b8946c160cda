//! OTLP trace export: spans wait in a bounded queue (the oldest are dropped, and counted, when
//! the collector is slow or down) and a task sends them in batches, retrying with back-off.
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, ResourceSpans, ScopeSpans, Status};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::resource::{int, kv, scope, ResourceBuilder};
use super::transport::Transport;
use super::TracesOptions;
use crate::decode::{AttrValue, Role};
use crate::enrich::Span;
use crate::telemetry::Internal;

pub struct SpanQueue {
    spans: Mutex<VecDeque<Span>>,
    cap: usize,
    /// Spans dropped since the exporter last looked.
    dropped: AtomicU64,
    ready: Notify,
}

impl SpanQueue {
    pub fn new(cap: usize) -> Self {
        SpanQueue { spans: Mutex::new(VecDeque::new()), cap, dropped: AtomicU64::new(0), ready: Notify::new() }
    }

    /// Never waits: beyond the bound, the oldest spans make room.
    pub fn push(&self, spans: impl Iterator<Item = Span>) {
        let mut q = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        let mut dropped = 0;
        for s in spans {
            if q.len() >= self.cap {
                q.pop_front();
                dropped += 1;
            }
            q.push_back(s);
        }
        let len = q.len();
        drop(q);
        self.dropped.fetch_add(dropped, Ordering::Relaxed);
        if len > 0 {
            self.ready.notify_one();
        }
    }

    /// A failed batch goes back to the front, ahead of newer spans, within the bound.
    fn requeue(&self, batch: Vec<Span>) {
        let mut q = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        let room = self.cap.saturating_sub(q.len());
        let lost = batch.len().saturating_sub(room);
        for s in batch.into_iter().skip(lost).rev() {
            q.push_front(s);
        }
        drop(q);
        self.dropped.fetch_add(lost as u64, Ordering::Relaxed);
    }

    fn take(&self, n: usize) -> Vec<Span> {
        let mut q = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        let n = n.min(q.len());
        q.drain(..n).collect()
    }

    pub fn len(&self) -> usize {
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }
}

pub async fn run(
    queue: Arc<SpanQueue>,
    transport: Transport,
    opts: TracesOptions,
    res: Arc<ResourceBuilder>,
    tel: Internal,
) {
    info!(endpoint = %opts.target.endpoint, protocol = ?opts.target.protocol, "Exporting traces over OTLP.");
    let mut backoff = opts.backoff_initial;
    let mut failing = false;
    loop {
        if queue.len() < opts.batch_len {
            let _ = tokio::time::timeout(opts.batch_timeout, queue.ready.notified()).await;
            if queue.len() < opts.batch_len {
                // A partial batch waits for batch_timeout at most.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        tel.otel_spans_dropped(queue.take_dropped());
        let batch = queue.take(opts.batch_len);
        if batch.is_empty() {
            continue;
        }
        let req = request(&batch, &res);
        // What the receiver gets: a request's `in queue` and `processing` phases are spans too.
        let n = req.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
        match transport.export_traces(req).await {
            Ok(()) => {
                tel.otel_trace_exported(n);
                if failing {
                    info!(endpoint = %opts.target.endpoint, "OTLP trace export recovered.");
                    failing = false;
                }
                backoff = opts.backoff_initial;
            }
            Err(e) => {
                tel.otel_trace_export_failed();
                if !failing {
                    warn!(endpoint = %opts.target.endpoint, error = %e, "OTLP trace export failed; retrying, spans are queued (the oldest dropped beyond the queue size).");
                    failing = true;
                }
                queue.requeue(batch);
                tel.otel_spans_dropped(queue.take_dropped());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(opts.backoff_max);
            }
        }
    }
}

/// Monotonic (BPF `ktime`) nanoseconds to Unix nanoseconds.
pub fn clock_offset_ns() -> i128 {
    let ts = |id| {
        nix::time::clock_gettime(id).map(|t| t.tv_sec() as i128 * 1_000_000_000 + t.tv_nsec() as i128).unwrap_or(0)
    };
    ts(nix::time::ClockId::CLOCK_REALTIME) - ts(nix::time::ClockId::CLOCK_MONOTONIC)
}

/// One request with a resource per process.
pub fn request(batch: &[Span], res: &ResourceBuilder) -> ExportTraceServiceRequest {
    let offset = clock_offset_ns();
    let mut by_pid: HashMap<u32, usize> = HashMap::new();
    let mut out: Vec<ResourceSpans> = Vec::new();
    for s in batch {
        let i = *by_pid.entry(s.process.pid).or_insert_with(|| {
            out.push(ResourceSpans {
                resource: Some(res.resource(&s.process)),
                scope_spans: vec![ScopeSpans { scope: Some(scope()), spans: Vec::new(), schema_url: String::new() }],
                schema_url: String::new(),
            });
            out.len() - 1
        });
        let spans = &mut out[i].scope_spans[0].spans;
        spans.push(to_otlp(s, offset));
        spans.extend(phase_spans(s, offset));
    }
    ExportTraceServiceRequest { resource_spans: out }
}

pub fn to_otlp(s: &Span, clock_offset_ns: i128) -> opentelemetry_proto::tonic::trace::v1::Span {
    let r = &s.request;
    let unix = |mono: u64| (mono as i128 + clock_offset_ns).max(0) as u64;
    let (server_address, server_port) = crate::aggregate::server_endpoint(s);
    let kind = match r.role {
        Role::Server => SpanKind::Server,
        Role::Client => SpanKind::Client,
    };
    let attrs = match r.grpc_status {
        _ if r.operation.is_some() => operation_attributes(s, &server_address, server_port),
        Some(code) => {
            let service = r.target.trim_start_matches('/').rsplit_once('/').map_or("", |(svc, _)| svc);
            vec![
                kv("rpc.system", "grpc"),
                kv("rpc.method", &r.target),
                kv("rpc.service", service),
                int("rpc.grpc.status_code", i64::from(code)),
                kv("server.address", &server_address),
                int("server.port", i64::from(server_port)),
            ]
        }
        None => http_attributes(s, &server_address, server_port),
    };
    let (code, message) =
        if s.is_error() { (StatusCode::Error, String::new()) } else { (StatusCode::Unset, String::new()) };
    opentelemetry_proto::tonic::trace::v1::Span {
        trace_id: r.trace.trace_id.to_vec(),
        span_id: r.trace.span_id.to_vec(),
        trace_state: String::new(),
        parent_span_id: if r.trace.has_parent() { r.trace.parent_span_id.to_vec() } else { Vec::new() },
        flags: 1,
        name: s.name(),
        kind: kind as i32,
        start_time_unix_nano: unix(r.start_ns),
        end_time_unix_nano: unix(r.end_ns),
        attributes: attrs,
        dropped_attributes_count: 0,
        events: Vec::new(),
        dropped_events_count: 0,
        links: Vec::new(),
        dropped_links_count: 0,
        status: Some(Status { message, code: code as i32 }),
    }
}

/// The `in queue` and `processing` children of a server span whose handler start the Go probes
/// saw, as Beyla shows them: from the first request byte read to the handler's start, and from
/// there to the response's last byte written.
pub fn phase_spans(s: &Span, clock_offset_ns: i128) -> Vec<opentelemetry_proto::tonic::trace::v1::Span> {
    let r = &s.request;
    let Some(handler_start) = r.handler.filter(|_| r.role == Role::Server) else { return Vec::new() };
    let unix = |mono: u64| (mono as i128 + clock_offset_ns).max(0) as u64;
    let child = |name: &str, start: u64, end: u64| opentelemetry_proto::tonic::trace::v1::Span {
        trace_id: r.trace.trace_id.to_vec(),
        span_id: phase_span_id(&r.trace.span_id, name).to_vec(),
        trace_state: String::new(),
        parent_span_id: r.trace.span_id.to_vec(),
        flags: 1,
        name: name.to_string(),
        kind: SpanKind::Internal as i32,
        start_time_unix_nano: unix(start),
        end_time_unix_nano: unix(end),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: Vec::new(),
        dropped_events_count: 0,
        links: Vec::new(),
        dropped_links_count: 0,
        status: Some(Status { message: String::new(), code: StatusCode::Unset as i32 }),
    };
    vec![child("in queue", r.start_ns, handler_start), child("processing", handler_start, r.end_ns)]
}

/// A phase child's span id, derived from its parent's and its name: an export that is retried
/// (delivery is at least once) sends the same ids again, so the receiver can tell repeats.
fn phase_span_id(parent: &[u8; 8], name: &str) -> [u8; 8] {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same on every call.
    let mut h = std::hash::DefaultHasher::new();
    (parent, name).hash(&mut h);
    match h.finish() {
        0 => [1; 8],
        v => v.to_be_bytes(),
    }
}

/// A non-HTTP operation: its parser's attributes as they are, its error, the server's end.
fn operation_attributes(s: &Span, server_address: &str, server_port: u16) -> Vec<KeyValue> {
    let Some(op) = &s.request.operation else { return Vec::new() };
    let mut attrs: Vec<KeyValue> = op
        .attributes
        .iter()
        .map(|(k, v)| match v {
            AttrValue::Str(text) => kv(k, text),
            AttrValue::Int(n) => int(k, *n),
        })
        .collect();
    if let Some(e) = &op.error {
        attrs.push(kv("error.type", e));
    }
    attrs.push(kv("server.address", server_address));
    attrs.push(int("server.port", i64::from(server_port)));
    attrs
}

fn http_attributes(s: &Span, server_address: &str, server_port: u16) -> Vec<KeyValue> {
    let r = &s.request;
    let mut attrs: Vec<KeyValue> = vec![
        kv("http.request.method", &r.method),
        int("http.response.status_code", i64::from(r.status)),
        kv("server.address", server_address),
        int("server.port", i64::from(server_port)),
    ];
    // Left out where a head was cut short and the body's end is unknown.
    if !r.body_sizes_unknown {
        attrs.push(int("http.request.body.size", r.request_body_size as i64));
        attrs.push(int("http.response.body.size", r.response_body_size as i64));
    }
    match r.role {
        Role::Server => {
            attrs.push(kv("url.path", r.path()));
            attrs.push(kv("url.scheme", r.scheme()));
            attrs.push(kv("client.address", &r.remote.ip().to_string()));
            if let Some(route) = &s.route {
                attrs.push(kv("http.route", route));
            }
        }
        Role::Client => {
            let default_port = if r.tls { 443 } else { 80 };
            let port = if server_port == default_port { String::new() } else { format!(":{server_port}") };
            let target = r.redacted_target();
            attrs.push(kv("url.full", &format!("{}://{server_address}{port}{target}", r.scheme())));
        }
    }
    attrs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::test_span;

    fn attr<'a>(s: &'a opentelemetry_proto::tonic::trace::v1::Span, key: &str) -> Option<&'a KeyValue> {
        s.attributes.iter().find(|a| a.key == key)
    }

    #[test]
    fn server_span_converts_with_semantic_attributes() {
        let mut s = test_span();
        s.request.trace.trace_id = [7; 16];
        s.request.trace.span_id = [8; 8];
        s.request.status = 503;
        let o = to_otlp(&s, 1_000_000);
        assert_eq!(o.name, "GET /users/*");
        assert_eq!(o.kind, SpanKind::Server as i32);
        assert_eq!((o.trace_id, o.span_id, o.parent_span_id.len()), (vec![7; 16], vec![8; 8], 0));
        assert_eq!((o.start_time_unix_nano, o.end_time_unix_nano), (1_001_000, 2_501_000));
        assert_eq!(o.status.as_ref().unwrap().code, StatusCode::Error as i32);
        let o = to_otlp(&s, 0);
        assert_eq!(attr(&o, "url.path").unwrap(), &kv("url.path", "/users/7"));
        assert_eq!(attr(&o, "http.route").unwrap(), &kv("http.route", "/users/*"));
        assert_eq!(attr(&o, "http.response.status_code").unwrap(), &int("http.response.status_code", 503));
        assert_eq!(attr(&o, "server.port").unwrap(), &int("server.port", 8080));
        assert_eq!(attr(&o, "client.address").unwrap(), &kv("client.address", "127.0.0.1"));
    }

    /// An operation of another protocol: its name, its parser's attributes, its error.
    #[test]
    fn other_protocols_spans_carry_their_own_attributes() {
        use crate::decode::{Family, Operation};
        let mut s = test_span();
        s.route = None;
        s.request.role = Role::Client;
        s.request.remote = "10.0.0.5:5432".parse().unwrap();
        s.request.operation = Some(Box::new(Operation {
            family: Family::Db,
            name: "SELECT orders".into(),
            attributes: vec![
                ("db.system.name", AttrValue::Str("postgresql".into())),
                ("db.response.returned_rows", AttrValue::Int(3)),
            ],
            error: Some("42P01".into()),
        }));
        let o = to_otlp(&s, 0);
        assert_eq!((o.name.as_str(), o.kind), ("SELECT orders", SpanKind::Client as i32));
        assert_eq!(o.status.as_ref().unwrap().code, StatusCode::Error as i32);
        let keys: Vec<&str> = o.attributes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(
            keys,
            ["db.system.name", "db.response.returned_rows", "error.type", "server.address", "server.port"]
        );
        assert_eq!(attr(&o, "db.response.returned_rows").unwrap(), &int("db.response.returned_rows", 3));
        assert_eq!(attr(&o, "server.address").unwrap(), &kv("server.address", "10.0.0.5"));
    }

    #[test]
    fn handler_timing_gives_in_queue_and_processing_children() {
        let mut s = test_span();
        s.request.trace.trace_id = [7; 16];
        s.request.trace.span_id = [8; 8];
        assert!(phase_spans(&s, 0).is_empty(), "no handler timing, no children");
        s.request.handler = Some(1_200_000);
        let [queue, work] = &phase_spans(&s, 5)[..] else { panic!("two children") };
        assert_eq!((queue.name.as_str(), work.name.as_str()), ("in queue", "processing"));
        // The same ids each time the span is exported (an export retried), distinct ones.
        let again = phase_spans(&s, 5);
        assert_eq!((&again[0].span_id, &again[1].span_id), (&queue.span_id, &work.span_id));
        assert_ne!(queue.span_id, work.span_id);
        assert_ne!(queue.span_id, s.request.trace.span_id.to_vec());
        for c in [queue, work] {
            assert_eq!((c.trace_id.clone(), c.parent_span_id.clone()), (vec![7; 16], vec![8; 8]));
            assert_eq!(c.kind, SpanKind::Internal as i32);
        }
        assert_eq!((queue.start_time_unix_nano, queue.end_time_unix_nano), (1_005, 1_200_005));
        assert_eq!((work.start_time_unix_nano, work.end_time_unix_nano), (1_200_005, 1_501_005));
        assert_ne!(queue.span_id, work.span_id);
        s.request.role = Role::Client;
        assert!(phase_spans(&s, 0).is_empty(), "client spans have none");
    }

    #[test]
    fn client_span_has_parent_and_url_and_4xx_is_an_error() {
        let mut s = test_span();
        s.request.role = Role::Client;
        s.request.status = 404;
        s.request.host = Some("backend:8081".into());
        s.request.trace.parent_span_id = [3; 8];
        s.route = None;
        let o = to_otlp(&s, 0);
        assert_eq!(o.name, "GET");
        assert_eq!(o.kind, SpanKind::Client as i32);
        assert_eq!(o.parent_span_id, vec![3; 8]);
        assert_eq!(o.status.as_ref().unwrap().code, StatusCode::Error as i32);
        assert_eq!(attr(&o, "url.full").unwrap(), &kv("url.full", "http://backend:8081/users/7?x=1"));
        assert_eq!(attr(&o, "server.address").unwrap(), &kv("server.address", "backend"));
        assert!(attr(&o, "http.route").is_none());
    }

    #[test]
    fn url_full_redacts_credentials_in_the_query() {
        let mut s = test_span();
        s.request.role = Role::Client;
        s.request.host = Some("api:80".into());
        s.request.target = "/v1/x?user=ann&Password=hunter2&sig=abc&access_token=t0k&X-Amz-Signature=s&n=1#frag".into();
        let o = to_otlp(&s, 0);
        let want = "http://api/v1/x?user=ann&Password=REDACTED&sig=REDACTED&access_token=REDACTED&X-Amz-Signature=REDACTED&n=1";
        assert_eq!(attr(&o, "url.full").unwrap(), &kv("url.full", want));
        // Nothing to redact: the target as it was (without a fragment).
        s.request.target = "/users/7?x=1&keyword=a#f".into();
        assert_eq!(attr(&to_otlp(&s, 0), "url.full").unwrap(), &kv("url.full", "http://api/users/7?x=1&keyword=a"));
    }

    #[test]
    fn grpc_span_is_named_by_method_with_rpc_attributes() {
        let mut s = test_span();
        s.request.target = "/demo.Multiplier/Multiply".into();
        s.request.grpc_status = Some(13);
        s.route = None;
        let o = to_otlp(&s, 0);
        assert_eq!(o.name, "/demo.Multiplier/Multiply");
        assert_eq!(attr(&o, "rpc.service").unwrap(), &kv("rpc.service", "demo.Multiplier"));
        assert_eq!(attr(&o, "rpc.grpc.status_code").unwrap(), &int("rpc.grpc.status_code", 13));
        assert!(attr(&o, "http.request.method").is_none());
        assert_eq!(o.status.as_ref().unwrap().code, StatusCode::Error as i32);
        s.request.grpc_status = Some(5); // NOT_FOUND is not a server error
        assert_eq!(to_otlp(&s, 0).status.unwrap().code, StatusCode::Unset as i32);
    }

    #[test]
    fn request_groups_spans_by_process() {
        let a = test_span();
        let mut b = test_span();
        std::sync::Arc::make_mut(&mut b.process).pid = 43;
        let req = request(&[a.clone(), b, a], &ResourceBuilder::new(vec![("env".into(), "prod".into())]));
        assert_eq!(req.resource_spans.len(), 2);
        assert_eq!(req.resource_spans[0].scope_spans[0].spans.len(), 2);
        let res = req.resource_spans[0].resource.as_ref().unwrap();
        assert!(res.attributes.contains(&kv("service.name", "shop")));
        assert!(res.attributes.contains(&int("process.pid", 42)));
        assert!(res.attributes.contains(&kv("env", "prod")));
    }

    #[test]
    fn queue_is_bounded_and_drops_the_oldest() {
        let q = SpanQueue::new(3);
        let span = |status| {
            let mut s = test_span();
            s.request.status = status;
            s
        };
        q.push([200, 201, 202, 203, 204].into_iter().map(span));
        assert_eq!(q.len(), 3);
        assert_eq!(q.take_dropped(), 2);
        let batch = q.take(2);
        assert_eq!(batch.iter().map(|s| s.request.status).collect::<Vec<_>>(), [202, 203]);
        q.push([205].into_iter().map(span));
        // Only one of the failed batch fits back; it goes first, the older one is dropped.
        q.requeue(batch);
        assert_eq!(q.take_dropped(), 1);
        assert_eq!(q.take(9).iter().map(|s| s.request.status).collect::<Vec<_>>(), [203, 204, 205]);
    }
}
