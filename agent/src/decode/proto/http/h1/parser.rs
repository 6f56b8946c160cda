//! HTTP/1.x behind the decoder's protocol interface: [`Http1`] fed one transfer at a time,
//! each request given its trace context as soon as its head is read, each exchange emitted as
//! a [`Request`] when its response ends.
use super::conn::{Exchange, Fed, Http1, Output};
use crate::decode::proto::{Ctx, Detect, Parser, Protocol, Verdict};
use crate::decode::{Request, Role};
use crate::events::SockData;

/// Claims what starts like a request or a response; the first request read sets the role
/// (a response first: the connection was joined mid-exchange, counted by the parser).
pub const PROTOCOL: Protocol = Protocol {
    name: "http1",
    detect: |_, data| {
        if super::is_request_start(data) || super::is_response_start(data) {
            Detect::Claim(None)
        } else {
            Detect::No
        }
    },
    parser: || Box::<Http1>::default(),
};

impl Parser for Http1 {
    fn feed(&mut self, ev: &SockData, cx: &mut Ctx<'_>) -> Verdict {
        let mut step = Output::default();
        let fed = Http1::feed(self, ev, cx.role, &mut step, &mut cx.out.errors);
        // Answered in this same transfer (pipelined, or held): begun first, in order, so that
        // a call the serving thread makes next finds its server request.
        for ex in step.done.iter_mut().filter(|ex| ex.req.trace.is_none()) {
            ex.req.trace = Some(cx.begin(ex.req.tid, 0, ex.req.traceparent.as_deref()));
        }
        for req in self.waiting().filter(|r| r.trace.is_none()) {
            req.trace = Some(cx.begin(req.tid, 0, req.traceparent.as_deref()));
        }
        settle(step, cx);
        match fed {
            Fed::Http => Verdict::Continue,
            Fed::NotHttp | Fed::Upgraded => Verdict::Stop,
        }
    }

    fn close(&mut self, cx: &mut Ctx<'_>) {
        let mut step = Output::default();
        std::mem::take(self).close(&mut step, &mut cx.out.errors);
        settle(step, cx);
    }

    fn busy(&self) -> bool {
        !self.is_idle()
    }

    /// Go's server answers a connection's requests in order: the oldest is being handled.
    fn handler_started(&mut self, _stream: u32, ts_ns: u64) {
        if let Some(req) = self.oldest() {
            req.handler_start = Some(ts_ns);
        }
    }

    /// Events arrive in the order their syscalls returned, and two threads of one process can
    /// share a connection (Go reads with one goroutine while another writes): a read can be
    /// reported before the write it follows. A server that reads the next request before its
    /// response to the previous one is reported, or a client that reads a response before its
    /// request is reported, would otherwise lose a request (or, for a server, link calls to
    /// the wrong one).
    fn read_too_early(&self, role: Option<Role>, ev: &SockData) -> bool {
        match role {
            Some(Role::Server) => self.owes_response(),
            Some(Role::Client) | None => !self.has_waiting() && super::is_response_start(&ev.data),
        }
    }

    fn takes_held(&self, role: Option<Role>) -> bool {
        match role {
            Some(Role::Server) => !self.has_waiting(),
            _ => self.has_waiting(),
        }
    }
}

/// What a step finished: its exchanges reported, its dropped requests let go of.
fn settle(step: Output, cx: &mut Ctx<'_>) {
    for ex in step.done {
        emit(ex, cx);
    }
    for req in step.dropped {
        cx.abandon(&req.trace.unwrap_or_default());
    }
}

fn emit(ex: Exchange, cx: &mut Ctx<'_>) {
    let req = ex.req;
    let c = cx.conn;
    let r = Request {
        pid: c.pid,
        tid: req.tid,
        role: cx.role(),
        method: req.method,
        target: req.target,
        status: ex.status,
        start_ns: req.start_ns,
        end_ns: ex.end_ns,
        request_body_size: req.body_size,
        response_body_size: ex.response_body_size,
        local: c.local,
        remote: c.remote,
        host: req.host,
        traceparent: req.traceparent,
        trace: req.trace.unwrap_or_default(),
        grpc_status: None,
        stream: 0,
        tls: c.tls,
        handler: req.handler_start.map(|start| start.clamp(req.start_ns, ex.end_ns)),
        body_sizes_unknown: req.truncated,
        operation: None,
    };
    cx.emit(r);
}
