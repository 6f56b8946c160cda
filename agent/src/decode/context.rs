//! Trace context of each request: trace id, span id and parent, from an incoming `traceparent`
//! header or from the server request the same thread is serving (a client call made while
//! serving a request is its child).
//!
//! The socket capture layer sees threads, not goroutines or async tasks: the in-process link
//! holds for thread-per-request servers (and sequential event loops); a call made from another
//! thread starts its own trace.
use foldhash::HashMap;

use super::Role;

/// W3C trace context of one span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// Zero when the span is a root.
    pub parent_span_id: [u8; 8],
    /// The parent's sampled flag when the parent came from a `traceparent` header.
    pub remote_sampled: Option<bool>,
}

impl TraceContext {
    pub fn has_parent(&self) -> bool {
        self.parent_span_id != [0; 8]
    }

    /// The `traceparent` header value naming this span as parent.
    pub fn traceparent(&self, sampled: bool) -> String {
        format!("00-{}-{}-{:02x}", hex(&self.trace_id), hex(&self.span_id), u8::from(sampled))
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A parsed `traceparent` header: (trace id, parent span id, sampled).
pub fn parse_traceparent(v: &str) -> Option<([u8; 16], [u8; 8], bool)> {
    let mut parts = v.trim().split('-');
    let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    // Version 00 has exactly four fields; later versions may append more.
    if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    let trace_id: [u8; 16] = unhex(trace)?.try_into().ok()?;
    let span_id: [u8; 8] = unhex(span)?.try_into().ok()?;
    let flags = unhex(flags)?;
    if trace_id == [0; 16] || span_id == [0; 8] || flags.len() != 1 {
        return None;
    }
    Some((trace_id, span_id, flags[0] & 1 == 1))
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

fn new_span_id() -> [u8; 8] {
    loop {
        let id: [u8; 8] = rand::random();
        if id != [0; 8] {
            return id;
        }
    }
}

fn new_trace_id() -> [u8; 16] {
    loop {
        let id: [u8; 16] = rand::random();
        if id != [0; 16] {
            return id;
        }
    }
}

/// Threads this many server requests at once at most; beyond it the table is cleared (a
/// client call then starts its own trace rather than memory growing).
const MAX_ACTIVE: usize = 65_536;

/// The server request each thread is serving, by (pid, tid).
#[derive(Default)]
pub struct Correlator {
    active: HashMap<(u32, u32), TraceContext>,
}

impl Correlator {
    /// The context of a request whose head was just read (server) or written (client).
    pub fn begin(&mut self, pid: u32, tid: u32, role: Role, traceparent: Option<&str>) -> TraceContext {
        let incoming = traceparent.and_then(parse_traceparent);
        match role {
            Role::Server => {
                let ctx = match incoming {
                    Some((trace_id, parent, sampled)) => TraceContext {
                        trace_id,
                        span_id: new_span_id(),
                        parent_span_id: parent,
                        remote_sampled: Some(sampled),
                    },
                    None => TraceContext { trace_id: new_trace_id(), span_id: new_span_id(), ..Default::default() },
                };
                if self.active.len() >= MAX_ACTIVE {
                    self.active.clear();
                }
                self.active.insert((pid, tid), ctx);
                ctx
            }
            Role::Client => {
                let serving = self.active.get(&(pid, tid)).copied();
                match (incoming, serving) {
                    // The application (or an SDK in it) propagates context itself: the header
                    // names the span the callee will see as its parent, so that is this span.
                    // A header merely forwarded from the request being served is not.
                    (Some((trace_id, span_id, sampled)), _) if serving.is_none_or(|s| s.parent_span_id != span_id) => {
                        let parent = serving.filter(|s| s.trace_id == trace_id).map(|s| s.span_id).unwrap_or_default();
                        TraceContext { trace_id, span_id, parent_span_id: parent, remote_sampled: Some(sampled) }
                    }
                    (_, Some(s)) => TraceContext {
                        trace_id: s.trace_id,
                        span_id: new_span_id(),
                        parent_span_id: s.span_id,
                        remote_sampled: s.remote_sampled,
                    },
                    (_, None) => {
                        TraceContext { trace_id: new_trace_id(), span_id: new_span_id(), ..Default::default() }
                    }
                }
            }
        }
    }

    /// The server request `ctx` on (pid, tid) has ended.
    pub fn end(&mut self, pid: u32, tid: u32, ctx: &TraceContext) {
        if self.active.get(&(pid, tid)).is_some_and(|a| a.span_id == ctx.span_id) {
            self.active.remove(&(pid, tid));
        }
    }

    pub fn forget_process(&mut self, pid: u32) {
        self.active.retain(|k, _| k.0 != pid);
    }

    pub fn active(&self) -> usize {
        self.active.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_traceparent() {
        let (t, s, sampled) = parse_traceparent(TP).unwrap();
        assert_eq!(hex(&t), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&s), "00f067aa0ba902b7");
        assert!(sampled);
        assert!(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").is_some_and(|p| !p.2));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
        // A future version may carry more fields.
        assert!(parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x").is_some());
    }

    #[test]
    fn server_honours_incoming_header_and_client_call_is_its_child() {
        let mut c = Correlator::default();
        let server = c.begin(1, 10, Role::Server, Some(TP));
        assert_eq!(hex(&server.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&server.parent_span_id), "00f067aa0ba902b7");
        assert_eq!(server.remote_sampled, Some(true));
        let client = c.begin(1, 10, Role::Client, None);
        assert_eq!((client.trace_id, client.parent_span_id), (server.trace_id, server.span_id));
        assert_ne!(client.span_id, server.span_id);
        // Another thread of the same process is not serving anything.
        let other = c.begin(1, 11, Role::Client, None);
        assert!(!other.has_parent());
        assert_ne!(other.trace_id, server.trace_id);
        c.end(1, 10, &server);
        assert_eq!(c.active(), 0);
        assert!(!c.begin(1, 10, Role::Client, None).has_parent());
    }

    #[test]
    fn new_root_without_header() {
        let mut c = Correlator::default();
        let a = c.begin(1, 1, Role::Server, None);
        let b = c.begin(2, 1, Role::Server, None);
        assert!(!a.has_parent() && a.remote_sampled.is_none());
        assert_ne!(a.trace_id, b.trace_id);
        c.forget_process(1);
        assert_eq!(c.active(), 1);
    }

    #[test]
    fn client_header_set_by_the_application_names_the_span() {
        let mut c = Correlator::default();
        let server = c.begin(1, 10, Role::Server, None);
        let own = server.traceparent(true).replace(&hex(&server.span_id), "1111111111111111");
        let client = c.begin(1, 10, Role::Client, Some(&own));
        assert_eq!(hex(&client.span_id), "1111111111111111");
        assert_eq!(client.parent_span_id, server.span_id);
        // A header forwarded unchanged from the incoming request is not the client's own.
        let mut c = Correlator::default();
        let server = c.begin(1, 10, Role::Server, Some(TP));
        let client = c.begin(1, 10, Role::Client, Some(TP));
        assert_eq!(client.parent_span_id, server.span_id);
        assert_ne!(hex(&client.span_id), "00f067aa0ba902b7");
    }
}
