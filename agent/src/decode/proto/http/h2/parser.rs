//! HTTP/2 behind the decoder's protocol interface: each direction's frames into
//! [`Connection`], a stream given its trace context when its request headers are seen, each
//! exchange emitted as a [`Request`] when its response ends. Lost bytes where they mattered
//! (`http2_desync`) stop the connection's decoding.
use super::{Connection, Desync, Exchange, Progress};
use crate::decode::proto::http::h1::conn::request_direction;
use crate::decode::proto::{Ctx, Detect, Parser, Protocol, Verdict};
use crate::decode::{DecodeError, Request, Role};
use crate::events::{Capture, Direction, SockData};

/// Claims a connection that starts with the client preface (read: we serve; written: we call),
/// or with the SETTINGS a server sends first (sent: we serve; received: we call).
pub const PROTOCOL: Protocol = Protocol {
    name: "http2",
    detect: |direction, data| {
        let ours = |d: Direction| Detect::Claim(Some(if direction == d { Role::Server } else { Role::Client }));
        if super::is_preface(data) {
            ours(Direction::Recv)
        } else if super::is_server_settings(data) {
            ours(Direction::Send)
        } else {
            Detect::No
        }
    },
    parser: || Box::<Connection>::default(),
};

impl Parser for Connection {
    fn feed(&mut self, ev: &SockData, cx: &mut Ctx<'_>) -> Verdict {
        let request = ev.direction == request_direction(*cx.role);
        let data = ev.data.as_slice();
        let mut progress = Progress::default();
        let fed = match ev.capture {
            Capture::H2Frames => self.feed_frames(request, data, ev.ts_ns, ev.tid, &mut progress),
            Capture::Prefix => {
                let missing = (ev.len as usize).saturating_sub(data.len());
                Connection::feed(self, request, data, missing, ev.ts_ns, ev.tid, &mut progress)
            }
            Capture::H2Lost => Err(Desync),
        };
        for stream in progress.started {
            if let Some(ex) = self.exchange_mut(stream) {
                ex.trace = Some(cx.begin(ex.tid, stream, ex.traceparent.as_deref()));
            }
        }
        let mut done = progress.done;
        for ex in done.iter_mut().filter(|ex| ex.trace.is_none()) {
            // Begun and ended in one feed (its response was reported before it).
            ex.trace = Some(cx.begin(ex.tid, ex.stream, ex.traceparent.as_deref()));
        }
        let verdict = if fed.is_err() {
            cx.error(DecodeError::Http2Desync);
            let traces: Vec<_> = self.traces().collect();
            for trace in traces {
                cx.abandon(&trace);
            }
            Verdict::Stop
        } else {
            Verdict::Continue
        };
        for ex in done {
            emit(ex, cx);
        }
        verdict
    }

    fn close(&mut self, cx: &mut Ctx<'_>) {
        if self.open_streams() > 0 {
            cx.error(DecodeError::ClosedMidMessage);
        }
        let traces: Vec<_> = self.traces().collect();
        for trace in traces {
            cx.abandon(&trace);
        }
    }

    fn busy(&self) -> bool {
        self.open_streams() > 0
    }

    fn handler_started(&mut self, stream: u32, ts_ns: u64) {
        if let Some(ex) = self.exchange_mut(stream).filter(|_| stream != 0) {
            ex.handler_start = Some(ts_ns);
        }
    }
}

fn emit(ex: Exchange, cx: &mut Ctx<'_>) {
    let c = cx.conn;
    let r = Request {
        pid: c.pid,
        tid: ex.tid,
        role: cx.role(),
        method: ex.method,
        target: ex.path,
        // A gRPC response without `:status` (trailers only) is still HTTP 200.
        status: if ex.status == 0 && ex.grpc_status.is_some() { 200 } else { ex.status },
        start_ns: ex.start_ns,
        end_ns: ex.end_ns,
        request_body_size: ex.request_body_size,
        response_body_size: ex.response_body_size,
        local: c.local,
        remote: c.remote,
        host: ex.authority,
        traceparent: ex.traceparent,
        trace: ex.trace.unwrap_or_default(),
        // gRPC without a grpc-status (a broken call) is reported as UNKNOWN (2).
        grpc_status: ex.grpc.then(|| ex.grpc_status.unwrap_or(2)),
        stream: ex.stream,
        tls: c.tls,
        handler: ex.handler_start,
        body_sizes_unknown: false,
        operation: None,
    };
    cx.emit(r);
}
