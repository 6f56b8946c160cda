//! Stage `enrich`: attaches the service identity and the route to each decoded request.
pub mod routes;
pub mod stage;

use std::sync::Arc;

use crate::attach::{TracedProcess, TracedView};
use crate::decode::Request;
use routes::RouteMatcher;

/// What `enrich` hands to the exporters: spans, and the event time up to which the pipeline
/// has delivered everything (`RawEvent::Drained`), so that waits can run on event time.
#[derive(Debug, Default)]
pub struct SpanBatch {
    pub spans: Vec<Span>,
    pub drained_ns: Option<u64>,
}

/// A request with everything the exporters need.
#[derive(Debug, Clone)]
pub struct Span {
    pub process: Arc<TracedProcess>,
    pub request: Request,
    /// `http.route`; `None` when routes leave it unset.
    pub route: Option<String>,
}

impl Span {
    /// The instrumentation that reported it, by Beyla's name (what the exporters'
    /// `instrumentations` lists select): `http`, `grpc`, `redis`, `memcached`, `sql`, ...
    pub fn instrumentation(&self) -> &'static str {
        use crate::decode::Family;
        match self.request.family() {
            Family::Http => "http",
            Family::Rpc => "grpc",
            Family::Messaging => match self.request.attribute("messaging.system").map(|v| v.to_string()).as_deref() {
                Some("mqtt") => "mqtt",
                Some("nats") => "nats",
                Some("rabbitmq") => "amqp",
                _ => "kafka",
            },
            Family::Db => match self.request.attribute("db.system.name").map(|v| v.to_string()).as_deref() {
                Some("redis") => "redis",
                Some("memcached") => "memcached",
                Some("mongodb") => "mongo",
                _ => "sql",
            },
        }
    }

    /// The span name as Beyla gives it: `METHOD route`, or `METHOD` without a route; gRPC
    /// spans by their full method (`/pkg.Service/Method`).
    pub fn name(&self) -> String {
        if let Some(op) = &self.request.operation {
            return op.name.clone();
        }
        if self.request.grpc_status.is_some() {
            return self.request.target.clone();
        }
        match &self.route {
            Some(route) => format!("{} {route}", self.request.method),
            None => self.request.method.clone(),
        }
    }

    /// OTel semantic conventions: a server span fails on 5xx, a client span on 4xx and 5xx;
    /// a gRPC server span on UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE or
    /// DATA_LOSS, a gRPC client span on any code but OK.
    pub fn is_error(&self) -> bool {
        if let Some(op) = &self.request.operation {
            return op.error.is_some();
        }
        if let Some(code) = self.request.grpc_status {
            return match self.request.role {
                crate::decode::Role::Server => matches!(code, 2 | 4 | 12 | 13 | 14 | 15),
                crate::decode::Role::Client => code != 0,
            };
        }
        match self.request.role {
            crate::decode::Role::Server => self.request.status >= 500,
            crate::decode::Role::Client => self.request.status >= 400,
        }
    }
}

pub struct Enricher {
    traced: TracedView,
    routes: RouteMatcher,
}

impl Enricher {
    pub fn new(traced: TracedView, routes: RouteMatcher) -> Self {
        Enricher { traced, routes }
    }

    /// The span, or why the request is dropped. The process is the program that ran when the
    /// request began (a process may have run another program since).
    pub fn enrich(&mut self, request: Request) -> Result<Span, Dropped> {
        let process = self.traced.get_at(request.pid, request.start_ns).ok_or(Dropped::UnknownProcess)?;
        if request.operation.is_some() {
            // Routes are HTTP's.
            return Ok(Span { process, request, route: None });
        }
        let path = request.path();
        if self.routes.ignored(path) {
            return Err(Dropped::Ignored);
        }
        // gRPC methods are already low-cardinality names, not paths to group.
        let route = if request.grpc_status.is_some() { None } else { self.routes.route(path) };
        Ok(Span { process, request, route })
    }
}

/// Why [`Enricher::enrich`] dropped a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Its path matches `routes.ignored_patterns`.
    Ignored,
    /// Its process is not known: it had run another program that discovery had not seen yet,
    /// or it was forgotten (gone for longer than any backlog).
    UnknownProcess,
}

/// A server span of service `shop` (pid 42) for unit tests of the stages after this one.
#[cfg(test)]
pub(crate) fn test_span() -> Span {
    use crate::decode::Role;
    use crate::discover::ServiceId;
    let service = ServiceId { name: "shop".into(), namespace: "".into(), instance_id: "h:42".into() };
    Span {
        process: Arc::new(TracedProcess {
            pid: 42,
            exe: "/usr/bin/shop".into(),
            service,
            parent: None,
            k8s: None,
            language: "unknown",
        }),
        request: Request {
            pid: 42,
            tid: 42,
            role: Role::Server,
            method: "GET".into(),
            target: "/users/7?x=1".into(),
            status: 200,
            body_sizes_unknown: false,
            operation: None,
            start_ns: 1_000,
            end_ns: 1_501_000,
            request_body_size: 0,
            response_body_size: 12,
            local: "127.0.0.1:8080".parse().expect("address"),
            remote: "127.0.0.1:5000".parse().expect("address"),
            host: None,
            traceparent: None,
            trace: Default::default(),
            grpc_status: None,
            stream: 0,
            tls: false,
            handler: None,
        },
        route: Some("/users/*".into()),
    }
}
