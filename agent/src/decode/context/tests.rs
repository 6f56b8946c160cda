//! The correlator's unit tests.
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

fn at(pid: u32, tid: u32, sock: u64, stream: u32, local: &str, remote: &str) -> ConnRef {
    ConnRef { pid, tid, sock, stream, local: local.parse().unwrap(), remote: remote.parse().unwrap() }
}

/// A server socket and a client socket of one process, on distinct connections.
fn srv(pid: u32, tid: u32) -> ConnRef {
    at(pid, tid, 100 + u64::from(pid), 0, "127.0.0.1:80", &format!("10.0.0.{pid}:5000"))
}
fn cli(pid: u32, tid: u32) -> ConnRef {
    at(pid, tid, 200 + u64::from(pid), 0, "127.0.0.1:6000", "10.9.9.9:443")
}

#[test]
fn server_honours_incoming_header_and_client_call_is_its_child() {
    let mut c = Correlator::default();
    let server = c.begin(srv(1, 10), Role::Server, Some(TP));
    assert_eq!(hex(&server.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(hex(&server.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(server.remote_sampled, Some(true));
    let client = c.begin(cli(1, 10), Role::Client, None);
    assert_eq!((client.trace_id, client.parent_span_id), (server.trace_id, server.span_id));
    assert_ne!(client.span_id, server.span_id);
    // Another thread of the same process is not serving anything.
    let other = c.begin(at(1, 11, 300, 0, "127.0.0.1:6001", "10.9.9.9:443"), Role::Client, None);
    assert!(!other.has_parent());
    assert_ne!(other.trace_id, server.trace_id);
    assert_eq!(c.finish(1, 10, Role::Server, &server), server);
    assert_eq!(c.active(), 0);
    assert!(!c.begin(at(1, 10, 301, 0, "127.0.0.1:6002", "10.9.9.9:443"), Role::Client, None).has_parent());
}

#[test]
fn new_root_without_header() {
    let mut c = Correlator::default();
    let a = c.begin(srv(1, 1), Role::Server, None);
    let b = c.begin(srv(2, 1), Role::Server, None);
    assert!(!a.has_parent() && a.remote_sampled.is_none());
    assert_ne!(a.trace_id, b.trace_id);
    c.forget_process(1);
    assert_eq!(c.active(), 1);
}

#[test]
fn client_header_set_by_the_application_names_the_span() {
    let mut c = Correlator::default();
    let server = c.begin(srv(1, 10), Role::Server, None);
    let own = server.traceparent(true).replace(&hex(&server.span_id), "1111111111111111");
    let client = c.begin(cli(1, 10), Role::Client, Some(&own));
    assert_eq!(hex(&client.span_id), "1111111111111111");
    assert_eq!(client.parent_span_id, server.span_id);
    // A header forwarded unchanged from the incoming request is not the client's own.
    let mut c = Correlator::default();
    let server = c.begin(srv(1, 10), Role::Server, Some(TP));
    let client = c.begin(cli(1, 10), Role::Client, Some(TP));
    assert_eq!(client.parent_span_id, server.span_id);
    assert_ne!(hex(&client.span_id), "00f067aa0ba902b7");
}

#[test]
fn a_process_that_hands_requests_between_threads_is_not_linked_by_thread() {
    let mut c = Correlator::default();
    let a = c.begin(srv(1, 10), Role::Server, None);
    assert_eq!(c.begin(cli(1, 10), Role::Client, None).parent_span_id, a.span_id);
    // The response of a request thread 10 read is written by thread 11: from now on a
    // thread says nothing in this process.
    c.server_wrote(1, srv(1, 10).sock, 10);
    let b = at(1, 12, 150, 0, "127.0.0.1:80", "10.0.0.2:5001");
    c.begin(b, Role::Server, None);
    c.server_wrote(1, b.sock, 11);
    let call = c.begin(at(1, 12, 301, 0, "127.0.0.1:7000", "10.9.9.9:443"), Role::Client, None);
    assert!(!call.has_parent());
    assert_eq!(c.take_unlinked(), 1);
    // Other processes keep their links.
    let other = c.begin(srv(2, 20), Role::Server, None);
    assert_eq!(c.begin(cli(2, 20), Role::Client, None).parent_span_id, other.span_id);
    // A pool worker (by its name) is not trusted either, from the first call on.
    let mut c = Correlator::default();
    c.set_pool_oracle(Box::new(|_, tid| tid == 30));
    c.begin(srv(3, 30), Role::Server, None);
    assert!(!c.begin(cli(3, 30), Role::Client, None).has_parent());
    assert_eq!(c.take_unlinked(), 1);
    let d = c.begin(srv(4, 40), Role::Server, None);
    assert_eq!(c.begin(cli(4, 40), Role::Client, None).parent_span_id, d.span_id);
}

#[test]
fn a_go_write_follows_the_request_its_goroutine_serves() {
    let mut c = Correlator::default();
    let (s1, s2) = (srv(1, 10), at(1, 11, 150, 0, "127.0.0.1:80", "10.0.0.2:5001"));
    let a = c.begin(s1, Role::Server, None);
    let b = c.begin(s2, Role::Server, None);
    c.go_handler_started(1, (s1.sock, 0), 1000);
    c.go_handler_started(1, (s2.sock, 0), 2000);
    let g = |sock: u64, handler_ns: u64| Some(Goroutine { server_sock: sock, server_stream: 0, handler_ns });
    // A database call written on thread 10 (which read `a`) by a goroutine serving `b`.
    let db = at(1, 10, 301, 0, "127.0.0.1:7000", "127.0.0.1:5432");
    let call = c.begin_from(db, Role::Client, None, g(s2.sock, 2000));
    assert_eq!((call.trace_id, call.parent_span_id), (b.trace_id, b.span_id));
    assert_eq!(c.take_unlinked(), 0);
    // A goroutine serving nothing: a root, nothing to count.
    let bg = at(1, 10, 302, 0, "127.0.0.1:7001", "127.0.0.1:5432");
    assert!(!c.begin_from(bg, Role::Client, None, g(0, 0)).has_parent());
    assert_eq!(c.take_unlinked(), 0);
    // A goroutine that an earlier request on `a`'s connection started (its handler started
    // at 500): not `a`'s child, counted.
    let stale = at(1, 10, 303, 0, "127.0.0.1:7002", "127.0.0.1:5432");
    assert!(!c.begin_from(stale, Role::Client, None, g(s1.sock, 500)).has_parent());
    assert_eq!(c.take_unlinked(), 1);
    // After `b` ended, its goroutine's writes have no parent either.
    c.finish(1, 11, Role::Server, &b);
    let late = at(1, 10, 304, 0, "127.0.0.1:7003", "127.0.0.1:5432");
    assert!(!c.begin_from(late, Role::Client, None, g(s2.sock, 2000)).has_parent());
    assert_eq!(c.take_unlinked(), 1);
    // An announced call (the Go HTTP client probes) keeps its announcement.
    let http = at(1, 10, 305, 0, "127.0.0.1:7004", "10.9.9.9:443");
    c.go_client((s1.sock, 0), http, None);
    let call = c.begin_from(http, Role::Client, None, g(0, 0));
    assert_eq!(call.parent_span_id, a.span_id);
}

#[test]
fn go_calls_follow_the_goroutine_not_the_thread() {
    let mut c = Correlator::default();
    let (s1, s2) = (srv(1, 10), at(1, 11, 150, 0, "127.0.0.1:80", "10.0.0.2:5001"));
    let a = c.begin(s1, Role::Server, None);
    let b = c.begin(s2, Role::Server, None);
    // Announced before its bytes: the call on socket 201 serves request `b`, though the
    // thread that writes it last read request `a`.
    let call_at = at(1, 10, 201, 0, "127.0.0.1:6000", "10.9.9.9:443");
    c.go_client((s2.sock, 0), call_at, None);
    let call = c.begin(call_at, Role::Client, None);
    assert_eq!((call.trace_id, call.parent_span_id), (b.trace_id, b.span_id));
    // Without an announcement a Go process's thread says nothing: a root.
    let lone = c.begin(at(1, 10, 202, 0, "127.0.0.1:6001", "10.9.9.9:443"), Role::Client, None);
    assert!(!lone.has_parent());
    // Announced after its bytes (gRPC: stream 3 on socket 203): relinked before it ends.
    let grpc_at = at(1, 12, 203, 3, "127.0.0.1:6002", "10.9.9.9:50051");
    let grpc = c.begin(grpc_at, Role::Client, None);
    assert!(!grpc.has_parent());
    c.go_client((s1.sock, 0), grpc_at, None);
    let grpc = c.finish(1, 12, Role::Client, &grpc);
    assert_eq!((grpc.trace_id, grpc.parent_span_id), (a.trace_id, a.span_id));
    // A goroutine serving nothing announces a root.
    let root_at = at(1, 10, 204, 0, "127.0.0.1:6003", "10.9.9.9:443");
    c.go_client((0, 0), root_at, None);
    let root = c.begin(root_at, Role::Client, None);
    assert!(!root.has_parent());
    let again = c.finish(1, 10, Role::Client, &root);
    assert_eq!(again.trace_id, root.trace_id, "an announced root keeps its trace");
}

#[test]
fn an_announced_go_call_meets_its_server_whatever_the_order() {
    let (cli_end, srv_end) = ("127.0.0.1:40000", "127.0.0.1:50051");
    // The server's HEADERS read is reported before the client's write and before the
    // announcement (grpc writes from its own goroutine): linked by the announcement.
    let mut c = Correlator::default();
    let root = c.begin(srv(1, 1), Role::Server, None);
    let worker = c.begin(at(2, 5, 8, 1, srv_end, cli_end), Role::Server, None);
    assert!(!worker.has_parent());
    let call_at = at(1, 3, 7, 1, cli_end, srv_end);
    c.go_client((srv(1, 1).sock, 0), call_at, None);
    let worker = c.finish(2, 5, Role::Server, &worker);
    let call = c.begin(call_at, Role::Client, None);
    assert_eq!((call.trace_id, call.parent_span_id), (root.trace_id, root.span_id));
    assert_eq!((worker.trace_id, worker.parent_span_id), (root.trace_id, call.span_id));
    // The server ends before the call's begin is reported: found at its end through the
    // announced span.
    let mut c = Correlator::default();
    let root = c.begin(srv(1, 1), Role::Server, None);
    c.go_client((srv(1, 1).sock, 0), call_at, None);
    let worker = c.begin(at(2, 5, 8, 1, srv_end, cli_end), Role::Server, None);
    let worker = c.finish(2, 5, Role::Server, &worker);
    let call = c.begin(call_at, Role::Client, None);
    assert_eq!(worker.parent_span_id, call.span_id);
    assert_eq!(worker.trace_id, root.trace_id);
}

#[test]
fn both_ends_on_this_host_are_one_trace_whichever_is_seen_first() {
    let (client_end, server_end) = ("127.0.0.1:40000", "127.0.0.1:8080");
    // Client first (the usual order).
    let mut c = Correlator::default();
    let root = c.begin(srv(1, 1), Role::Server, None);
    let call = c.begin(at(1, 1, 7, 0, client_end, server_end), Role::Client, None);
    let served = c.begin(at(2, 5, 8, 0, server_end, client_end), Role::Server, None);
    assert_eq!((served.trace_id, served.parent_span_id), (root.trace_id, call.span_id));
    // Server first (its read reported before the client's write): linked at its end, and
    // so is the call it made meanwhile.
    let mut c = Correlator::default();
    let served = c.begin(at(2, 5, 8, 0, server_end, client_end), Role::Server, None);
    let down = c.begin(at(2, 5, 9, 0, "127.0.0.1:40001", "127.0.0.1:9090"), Role::Client, None);
    assert_eq!(down.parent_span_id, served.span_id);
    let root = c.begin(srv(1, 1), Role::Server, None);
    let call = c.begin(at(1, 1, 7, 0, client_end, server_end), Role::Client, None);
    let down = c.finish(2, 5, Role::Client, &down);
    let served = c.finish(2, 5, Role::Server, &served);
    assert_eq!((served.trace_id, served.parent_span_id), (root.trace_id, call.span_id));
    assert_eq!(down.trace_id, root.trace_id);
    // HTTP/2: the stream must match too.
    let mut c = Correlator::default();
    let call = c.begin(at(1, 1, 7, 5, client_end, server_end), Role::Client, None);
    let other = c.begin(at(2, 5, 8, 7, server_end, client_end), Role::Server, None);
    let same = c.begin(at(2, 5, 8, 5, server_end, client_end), Role::Server, None);
    assert!(!other.has_parent());
    assert_eq!(same.parent_span_id, call.span_id);
}

#[test]
fn pipelined_requests_on_one_connection_are_not_linked_across_its_ends() {
    let (client_end, server_end) = ("127.0.0.1:40000", "127.0.0.1:6379");
    let mut c = Correlator::default();
    // Two commands written at once (a pipeline), then read at once by the server: which
    // client span each server span answers cannot be told from the endpoints.
    let first = c.begin(at(1, 1, 7, 0, client_end, server_end), Role::Client, None);
    let second = c.begin(at(1, 1, 7, 0, client_end, server_end), Role::Client, None);
    let a = c.begin(at(2, 5, 8, 0, server_end, client_end), Role::Server, None);
    let b = c.begin(at(2, 5, 8, 0, server_end, client_end), Role::Server, None);
    assert!(!a.has_parent() && !b.has_parent());
    assert_eq!(c.take_ambiguous(), 0, "counted when reported");
    // The first call's answer read before the server's end is reported: one client span
    // is left in flight, yet the server spans stay unlinked.
    c.finish(1, 1, Role::Client, &first);
    let a = c.finish(2, 5, Role::Server, &a);
    let b = c.finish(2, 5, Role::Server, &b);
    assert!(!a.has_parent() && !b.has_parent(), "linked at their end");
    assert_ne!(a.trace_id, b.trace_id);
    assert_eq!(c.take_ambiguous(), 2);
    c.finish(1, 1, Role::Client, &second);
    // One at a time again on the same connection: linked.
    let third = c.begin(at(1, 1, 7, 0, client_end, server_end), Role::Client, None);
    let c3 = c.begin(at(2, 5, 8, 0, server_end, client_end), Role::Server, None);
    assert_eq!(c3.parent_span_id, third.span_id);
    assert_eq!(c.take_ambiguous(), 0);
    // The server's one request reported first: the client span begun while it is the only
    // one adopts it; a second one, begun with the first in flight, does not.
    let mut c = Correlator::default();
    let served = c.begin(at(2, 5, 8, 0, server_end, client_end), Role::Server, None);
    let first = c.begin(at(1, 1, 7, 0, client_end, server_end), Role::Client, None);
    c.begin(at(1, 1, 7, 0, client_end, server_end), Role::Client, None);
    assert_eq!(c.finish(2, 5, Role::Server, &served).parent_span_id, first.span_id);
    assert_eq!(c.take_ambiguous(), 0);
    // The server read two pipelined requests before the client's write was reported:
    // neither client span adopts either, and both server spans are counted at their end.
    let mut c = Correlator::default();
    let a = c.begin(at(2, 5, 8, 0, server_end, client_end), Role::Server, None);
    let b = c.begin(at(2, 5, 8, 0, server_end, client_end), Role::Server, None);
    c.begin(at(1, 1, 7, 0, client_end, server_end), Role::Client, None);
    c.begin(at(1, 1, 7, 0, client_end, server_end), Role::Client, None);
    assert!(!c.finish(2, 5, Role::Server, &a).has_parent());
    assert!(!c.finish(2, 5, Role::Server, &b).has_parent());
    assert_eq!(c.take_ambiguous(), 2);
}

#[test]
fn an_announced_call_that_never_went_out_does_not_make_its_connection_ambiguous() {
    let (cli_end, srv_end) = ("127.0.0.1:40000", "127.0.0.1:8080");
    let mut c = Correlator::default();
    let root = c.begin(srv(1, 1), Role::Server, None);
    let call_at = at(1, 3, 7, 0, cli_end, srv_end);
    // Announced twice on the same socket: the first call's bytes never came.
    c.go_client((srv(1, 1).sock, 0), call_at, None);
    c.go_client((srv(1, 1).sock, 0), call_at, None);
    let call = c.begin(call_at, Role::Client, None);
    assert_eq!(call.parent_span_id, root.span_id);
    let served = c.begin(at(2, 5, 8, 0, srv_end, cli_end), Role::Server, None);
    assert_eq!(served.parent_span_id, call.span_id);
}

#[test]
fn a_traceparent_the_go_probes_wrote_names_the_announced_call() {
    let (cli_end, srv_end) = ("127.0.0.1:40000", "127.0.0.1:8080");
    let mut c = Correlator::default();
    // The probes picked trace T for the request (no incoming header) and wrote T and
    // span C into the call it makes.
    let root = c.begin(srv(1, 1), Role::Server, None);
    let (t, span) = ([7u8; 16], [9u8; 8]);
    c.go_server_trace(1, (srv(1, 1).sock, 0), t);
    let call_at = at(1, 3, 7, 0, cli_end, srv_end);
    c.go_client((srv(1, 1).sock, 0), call_at, Some((t, span)));
    let tp = format!("00-{}-{}-01", hex(&t), hex(&span));
    let call = c.begin(call_at, Role::Client, Some(&tp));
    assert_eq!((call.span_id, call.parent_span_id, call.trace_id), (span, root.span_id, t));
    let root = c.finish(1, 1, Role::Server, &root);
    assert_eq!(root.trace_id, t, "the request's trace is the one sent downstream");
    assert_eq!(c.finish(1, 3, Role::Client, &call).trace_id, t);
    assert_eq!(c.take_mismatches(), 0);
    // Downstream on this host: its header names the call.
    let served = c.begin(at(2, 5, 8, 0, srv_end, cli_end), Role::Server, Some(&tp));
    assert_eq!((served.trace_id, served.parent_span_id), (t, span));
}

#[test]
fn a_written_header_follows_the_trace_this_host_linked() {
    let (a_end, b_end) = ("127.0.0.1:40000", "127.0.0.1:8080");
    let (c_end, d_end) = ("127.0.0.1:40001", "127.0.0.1:9090");
    let mut c = Correlator::default();
    // A non-Go caller on this host (no header) calls the Go server: one trace by the
    // connection's endpoints, though the probes made up trace T for the request.
    let root = c.begin(srv(1, 1), Role::Server, None);
    let call = c.begin(at(1, 1, 7, 0, a_end, b_end), Role::Client, None);
    let go = c.begin(at(2, 5, 8, 0, b_end, a_end), Role::Server, None);
    c.go_server_trace(2, (8, 0), [7; 16]);
    assert_eq!(go.parent_span_id, call.span_id);
    // The Go server's call carries T; the next hop, on this host, stays in the trace.
    let down_at = at(2, 6, 9, 0, c_end, d_end);
    c.go_client((8, 0), down_at, Some(([7; 16], [9; 8])));
    let tp = format!("00-{}-{}-01", hex(&[7; 16]), hex(&[9; 8]));
    let down = c.begin(down_at, Role::Client, Some(&tp));
    let next = c.begin(at(3, 1, 10, 0, d_end, c_end), Role::Server, Some(&tp));
    for ctx in [go, down, next] {
        assert_eq!(ctx.trace_id, root.trace_id);
    }
    assert_eq!(next.parent_span_id, [9; 8]);
    // A next hop on another host continues T: counted when the call ends.
    assert_eq!(c.take_mismatches(), 0);
    assert_eq!(c.finish(2, 6, Role::Client, &down).trace_id, root.trace_id);
    assert_eq!(c.take_mismatches(), 1);
    assert_eq!(c.take_mismatches(), 0);
}

/// What a Go HTTP/2 server's handler probe firing twice for one request did (issue 25):
/// the request kept its incoming trace, the probes wrote a made-up one downstream.
#[test]
fn a_written_trace_other_than_the_exported_one_is_counted() {
    let mut c = Correlator::default();
    let incoming = format!("00-{}-{}-01", hex(&[4; 16]), hex(&[5; 8]));
    let root = c.begin(srv(1, 1), Role::Server, Some(&incoming));
    let call_at = at(1, 3, 7, 0, "127.0.0.1:40000", "127.0.0.1:8080");
    c.go_client((srv(1, 1).sock, 0), call_at, Some(([6; 16], [9; 8])));
    let written = format!("00-{}-{}-01", hex(&[6; 16]), hex(&[9; 8]));
    let call = c.begin(call_at, Role::Client, Some(&written));
    let call = c.finish(1, 3, Role::Client, &call);
    assert_eq!((call.trace_id, call.parent_span_id), ([4; 16], root.span_id));
    assert_eq!(c.take_mismatches(), 1);
}
