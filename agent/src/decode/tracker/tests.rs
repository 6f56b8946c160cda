//! The tracker driven as the decode stage drives it, event by event.
use super::*;
use crate::decode::testing::{addr, ev, run, CAP};
use crate::events::{Capture, Direction};

use Direction::{Recv, Send};

#[test]
fn http2_frames_as_the_capture_walks_them_and_a_lost_walk() {
    use crate::decode::proto::http::h2::{tests::headers, PREFACE};
    let (mut qe, mut re) = (httlib_hpack::Encoder::default(), httlib_hpack::Encoder::default());
    let frames = |e: SockData| SockData { capture: Capture::H2Frames, ..e };
    let mut req = PREFACE.to_vec();
    req.extend(headers(&mut qe, 1, true, &[(":method", "GET"), (":path", "/a"), (":authority", "x")]));
    let mut resp = headers(&mut re, 1, false, &[(":status", "200")]);
    // A 40,000-byte DATA frame, its payload left out of the copy.
    resp.extend([0, 0x9c, 0x40, 0, 1, 0, 0, 0, 1]);
    let mut sent = ev(1, Send, 20, &resp);
    sent.len = 40_000 + resp.len() as u32;
    let out = run(&[frames(ev(1, Recv, 10, &req)), frames(sent)]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.requests.len(), 1);
    let r = &out.requests[0];
    assert_eq!((r.target.as_str(), r.status, r.response_body_size, r.end_ns), ("/a", 200, 40_000, 20));

    // The walk lost its place in the response: nothing is guessed, the loss is counted.
    let lost = SockData { capture: Capture::H2Lost, data: Vec::new(), ..ev(1, Send, 20, &[0; 100]) };
    let out = run(&[frames(ev(1, Recv, 10, &req)), lost, frames(ev(1, Recv, 30, &req))]);
    assert!(out.requests.is_empty());
    assert_eq!(out.errors, [DecodeError::Http2Desync]);
}

#[test]
fn keep_alive_server() {
    let out = run(&[
        ev(1, Recv, 100, b"GET /ping HTTP/1.1\r\nHost: h\r\n\r\n"),
        ev(1, Send, 150, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npong"),
        ev(1, Recv, 200, b"GET /users/1 HTTP/1.1\r\n\r\n"),
        ev(1, Send, 260, b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\n"),
        ev(1, Send, 290, b"not found"),
    ]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.requests.len(), 2);
    let (a, b) = (&out.requests[0], &out.requests[1]);
    assert_eq!((a.role, a.method.as_str(), a.target.as_str(), a.status), (Role::Server, "GET", "/ping", 200));
    assert_eq!((a.start_ns, a.end_ns, a.response_body_size), (100, 150, 4));
    assert_eq!(a.host.as_deref(), Some("h"));
    assert_eq!((b.status, b.start_ns, b.end_ns, b.response_body_size), (404, 200, 290, 9));
}

#[test]
fn request_split_across_reads_with_body() {
    let out = run(&[
        ev(1, Recv, 10, b"POST /echo HT"),
        ev(1, Recv, 20, b"TP/1.1\r\nContent-Le"),
        ev(1, Recv, 30, b"ngth: 11\r\n\r\nhello"),
        ev(1, Recv, 40, b" world"),
        ev(1, Send, 50, b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world"),
    ]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let r = &out.requests[0];
    assert_eq!((r.method.as_str(), r.request_body_size, r.response_body_size), ("POST", 11, 11));
    assert_eq!((r.start_ns, r.end_ns), (10, 50));
}

#[test]
fn call_made_while_serving_is_the_child_of_the_server_request() {
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let incoming = format!("GET /call HTTP/1.1\r\ntraceparent: {tp}\r\n\r\n");
    let out = run(&[
        ev(1, Recv, 1, incoming.as_bytes()),
        ev(2, Send, 2, b"GET /down HTTP/1.1\r\n\r\n"),
        ev(2, Recv, 3, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ev(1, Send, 4, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        // After the server request ended, a call on the same thread is a new trace.
        ev(4, Send, 5, b"GET /after HTTP/1.1\r\n\r\n"),
        ev(4, Recv, 6, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ]);
    let [client, server, after] = &out.requests[..] else { panic!("{:?}", out.requests) };
    assert_eq!((client.role, server.role), (Role::Client, Role::Server));
    assert_eq!(super::super::context::hex(&server.trace.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(super::super::context::hex(&server.trace.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(client.trace.trace_id, server.trace.trace_id);
    assert_eq!(client.trace.parent_span_id, server.trace.span_id);
    assert!(!after.trace.has_parent());
    assert_ne!(after.trace.trace_id, server.trace.trace_id);
}

#[test]
fn next_request_read_before_the_response_is_reported() {
    // Go's server reads the next request's first byte on another goroutine while the
    // handler's thread is still writing: the read can be reported first.
    let out = run(&[
        ev(1, Recv, 10, b"GET /a HTTP/1.1\r\n\r\n"),
        ev(1, Recv, 30, b"G"),
        ev(1, Send, 20, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        ev(1, Recv, 31, b"ET /b HTTP/1.1\r\n\r\n"),
        ev(1, Send, 40, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
    ]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let got: Vec<_> = out.requests.iter().map(|r| (r.target.as_str(), r.status, r.request_body_size)).collect();
    assert_eq!(got, vec![("/a", 200, 0), ("/b", 404, 0)]);
    assert_eq!((out.requests[1].start_ns, out.requests[1].end_ns), (30, 40));
}

#[test]
fn response_read_before_its_request_is_reported() {
    // A client writes on one thread and reads on another (Go's transport): the response
    // can be reported before the request, also on a connection's first exchange.
    let out = run(&[
        ev(2, Recv, 20, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        // Entered at 15, before the response was read: it came first.
        SockData { start_ns: 15, ..ev(2, Send, 21, b"GET /first HTTP/1.1\r\n\r\n") },
        ev(2, Send, 30, b"GET /second HTTP/1.1\r\n\r\n"),
        ev(2, Recv, 40, b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
    ]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let got: Vec<_> = out.requests.iter().map(|r| (r.role, r.target.as_str(), r.status)).collect();
    assert_eq!(got, vec![(Role::Client, "/first", 200), (Role::Client, "/second", 201)]);

    // A response read before the next request was even written is a response whose
    // request the agent never saw (it joined mid-exchange): not paired with the next one.
    let out = run(&[
        ev(2, Recv, 20, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ev(2, Send, 30, b"GET /next HTTP/1.1\r\n\r\n"),
        ev(2, Recv, 40, b"HTTP/1.1 204 No Content\r\n\r\n"),
    ]);
    assert_eq!(out.errors, vec![DecodeError::MissedRequest]);
    let got: Vec<_> = out.requests.iter().map(|r| (r.target.as_str(), r.status)).collect();
    assert_eq!(got, vec![("/next", 204)]);
}

#[test]
fn writes_without_an_entry_time_come_before_held_reads() {
    // The socket family does not see a write's syscall entry (start_ns 0): a write
    // reported after reads held for their turn came first, as it does whenever they
    // answer it; its own return time (35, after the held read's 30) does not decide.
    let no_entry = |e: SockData| SockData { start_ns: 0, ..e };
    let out = run(&[
        ev(1, Recv, 10, b"GET /a HTTP/1.1\r\n\r\n"),
        ev(1, Recv, 30, b"G"),
        no_entry(ev(1, Send, 35, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")),
        ev(1, Recv, 36, b"ET /b HTTP/1.1\r\n\r\n"),
        no_entry(ev(1, Send, 40, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")),
    ]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let got: Vec<_> = out.requests.iter().map(|r| (r.target.as_str(), r.status)).collect();
    assert_eq!(got, vec![("/a", 200), ("/b", 404)]);

    let out = run(&[
        ev(2, Recv, 20, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        no_entry(ev(2, Send, 21, b"GET /first HTTP/1.1\r\n\r\n")),
        no_entry(ev(2, Send, 30, b"GET /second HTTP/1.1\r\n\r\n")),
        ev(2, Recv, 40, b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
    ]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let got: Vec<_> = out.requests.iter().map(|r| (r.role, r.target.as_str(), r.status)).collect();
    assert_eq!(got, vec![(Role::Client, "/first", 200), (Role::Client, "/second", 201)]);
}

#[test]
fn large_chunked_response_ends_by_tail() {
    let mut body = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    body.extend(format!("{:x}\r\n", 5000).as_bytes());
    body.extend(vec![b'x'; 5000]);
    body.extend(b"\r\n0\r\n\r\n");
    let out = run(&[ev(1, Recv, 1, b"GET /big HTTP/1.1\r\n\r\n"), ev(1, Send, 9, &body)]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.requests[0].end_ns, 9);
}

#[test]
fn chunked_terminator_split_across_writes() {
    let out = run(&[
        ev(1, Recv, 1, b"GET / HTTP/1.1\r\n\r\n"),
        ev(1, Send, 2, b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nboom\r\n"),
        ev(1, Send, 3, b"0\r\n"),
        ev(1, Send, 4, b"\r\n"),
    ]);
    assert_eq!(out.requests.len(), 1);
    assert_eq!((out.requests[0].status, out.requests[0].end_ns), (500, 4));
}

#[test]
fn method_split_by_a_one_byte_read() {
    // Go's background read takes the first byte of the next keep-alive request.
    let out = run(&[
        ev(1, Recv, 1, b"GET /a HTTP/1.1\r\n\r\n"),
        ev(1, Send, 2, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ev(1, Recv, 3, b"G"),
        ev(1, Recv, 4, b"ET /b HTTP/1.1\r\n\r\n"),
        ev(1, Send, 5, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let got: Vec<_> = out.requests.iter().map(|r| (r.target.as_str(), r.start_ns, r.end_ns)).collect();
    assert_eq!(got, vec![("/a", 1, 2), ("/b", 3, 5)]);
}

#[test]
fn client_side() {
    let out = run(&[
        ev(2, Send, 5, b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1:8090\r\nConnection: close\r\n\r\n"),
        ev(2, Recv, 8, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n"),
        ev(2, Recv, 9, b"pong"),
    ]);
    let r = &out.requests[0];
    assert_eq!((r.role, r.status, r.start_ns, r.end_ns), (Role::Client, 200, 5, 9));
}

#[test]
fn not_http_counted_once_then_ignored() {
    let out = run(&[
        ev(3, Recv, 1, b"\x16\x03\x01\x02\x00\x01"),
        ev(3, Recv, 2, b"GET / HTTP/1.1\r\n\r\n"),
        ev(3, Send, 3, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ]);
    assert_eq!(out.errors, vec![DecodeError::NotHttp]);
    assert!(out.requests.is_empty());
}

#[test]
fn response_without_request_then_recovers() {
    let out = run(&[
        ev(4, Send, 1, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npong"),
        ev(4, Recv, 2, b"GET /ping HTTP/1.1\r\n\r\n"),
        ev(4, Send, 3, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npong"),
    ]);
    assert_eq!(out.errors, vec![DecodeError::MissedRequest]);
    assert_eq!(out.requests.len(), 1);
}

#[test]
fn close_ends_unframed_response_and_flags_cut_one() {
    let mut t = Tracker::new(TrackerLimits::default());
    let mut out = Decoded::default();
    t.on_data(&ev(5, Recv, 1, b"GET /a HTTP/1.0\r\n\r\n"), &mut out);
    t.on_data(&ev(5, Send, 2, b"HTTP/1.0 200 OK\r\n\r\nabc"), &mut out);
    t.on_data(&ev(5, Send, 3, b"def"), &mut out);
    t.on_close(7, 5, &mut out);
    assert_eq!(out.requests.len(), 1);
    assert_eq!((out.requests[0].end_ns, out.requests[0].response_body_size), (3, 6));

    t.on_data(&ev(6, Recv, 1, b"GET /b HTTP/1.1\r\n\r\n"), &mut out);
    t.on_data(&ev(6, Send, 2, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc"), &mut out);
    t.on_close(7, 6, &mut out);
    assert_eq!(out.errors, vec![DecodeError::ClosedMidMessage]);
    assert_eq!(t.connections(), 0);
}

#[test]
fn a_head_longer_than_captured_still_counts() {
    // A 5 KB Cookie (browsers, JWTs): only the first 2 KiB of the read are captured, and
    // the rest of the head comes in a second read before the reply.
    let cookie = "c".repeat(5000);
    let head = format!("GET /cart HTTP/1.1\r\nHost: shop\r\nCookie: {cookie}\r\nX-After: 1\r\n\r\n");
    let (first, rest) = head.as_bytes().split_at(4096);
    let out = run(&[
        ev(7, Recv, 1, first),
        ev(7, Recv, 2, rest),
        ev(7, Send, 3, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        ev(7, Recv, 4, b"GET /next HTTP/1.1\r\n\r\n"),
        ev(7, Send, 5, b"HTTP/1.1 204 No Content\r\n\r\n"),
    ]);
    assert_eq!(out.errors, vec![DecodeError::HeadersTruncated]);
    let got: Vec<_> =
        out.requests.iter().map(|r| (r.target.as_str(), r.status, r.host.as_deref(), r.body_sizes_unknown)).collect();
    assert_eq!(got, vec![("/cart", 200, Some("shop"), true), ("/next", 204, None, false)]);
    assert_eq!((out.requests[0].start_ns, out.requests[0].end_ns), (1, 3));

    // A 64 KiB header in one read, answered 431: the request the server refused counts.
    let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    big.extend(vec![b'a'; 64 * 1024]);
    big.extend(b"\r\n\r\n");
    let out = run(&[ev(7, Recv, 1, &big), ev(7, Send, 2, b"HTTP/1.1 431 Too Large\r\nContent-Length: 0\r\n\r\n")]);
    assert_eq!(out.errors, vec![DecodeError::HeadersTruncated]);
    assert_eq!(out.requests.iter().map(|r| r.status).collect::<Vec<_>>(), vec![431]);

    // A request line longer than the capture: nothing to report but the loss.
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "p".repeat(3000));
    let out = run(&[ev(7, Recv, 1, long.as_bytes()), ev(7, Send, 2, b"HTTP/1.1 414 URI Too Long\r\n\r\n")]);
    assert_eq!(out.errors, vec![DecodeError::HeadersTooLarge]);
    assert!(out.requests.is_empty());
}

#[test]
fn a_response_head_longer_than_captured_ends_at_the_next_request() {
    let cookie = "s".repeat(3000);
    let resp = format!("HTTP/1.1 302 Found\r\nSet-Cookie: {cookie}\r\nContent-Length: 3\r\n\r\nabc");
    let out = run(&[
        ev(8, Recv, 1, b"POST /login HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"),
        ev(8, Send, 2, resp.as_bytes()),
        ev(8, Recv, 3, b"GET /home HTTP/1.1\r\n\r\n"),
        ev(8, Send, 4, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ]);
    assert_eq!(out.errors, vec![DecodeError::HeadersTruncated]);
    let got: Vec<_> =
        out.requests.iter().map(|r| (r.target.as_str(), r.status, r.end_ns, r.body_sizes_unknown)).collect();
    assert_eq!(got, vec![("/login", 302, 2, true), ("/home", 200, 4, false)]);
}

#[test]
fn closing_socket_with_zeroed_local_port_is_the_same_connection() {
    let mut closing = ev(1, Send, 2, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    closing.local = addr("127.0.0.1:0");
    let out = run(&[ev(1, Recv, 1, b"GET /ping HTTP/1.1\r\n\r\n"), closing]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.requests.len(), 1);
    // Another peer on a reused socket is a new connection.
    let mut other = ev(1, Recv, 3, b"GET /b HTTP/1.1\r\n\r\n");
    other.remote = addr("127.0.0.1:50001");
    let mut reply = ev(1, Send, 4, b"HTTP/1.1 204 No Content\r\n\r\n");
    reply.remote = other.remote;
    let out = run(&[ev(1, Recv, 1, b"GET /a HTTP/1.1\r\n\r\n"), other, reply]);
    assert_eq!(out.requests.len(), 1);
    assert_eq!(out.requests[0].target, "/b");
}

#[test]
fn connection_table_is_bounded() {
    let mut t = Tracker::new(TrackerLimits { max_connections: 100, idle_timeout_ns: u64::MAX });
    let mut out = Decoded::default();
    for i in 0..1000u64 {
        t.on_data(&ev(i, Recv, i, b"GET / HTTP/1.1\r\n\r\n"), &mut out);
    }
    assert_eq!(t.connections(), 100);
    assert_eq!(out.errors.len(), 900);
    assert!(out.errors.iter().all(|e| *e == DecodeError::Evicted));
}

#[test]
fn idle_connections_expire() {
    let mut t = Tracker::new(TrackerLimits { max_connections: 10, idle_timeout_ns: 100 });
    let mut out = Decoded::default();
    t.on_data(&ev(1, Recv, 10, b"GET / HTTP/1.1\r\n\r\n"), &mut out);
    t.expire(50, &mut out);
    assert_eq!(t.connections(), 1);
    t.expire(500, &mut out);
    assert_eq!(t.connections(), 0);
    assert_eq!(out.errors, vec![DecodeError::ClosedMidMessage]);
}

fn summary(out: &Decoded) -> Vec<(String, u16, u64, u64)> {
    out.requests.iter().map(|r| (r.target.clone(), r.status, r.request_body_size, r.response_body_size)).collect()
}

fn row(t: &str, status: u16, req: u64, resp: u64) -> (String, u16, u64, u64) {
    (t.to_string(), status, req, resp)
}

#[test]
fn pipelined_requests_in_one_read() {
    // Three requests in one write; answered one write each, then all in one write.
    let reqs = b"GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyzGET /c HTTP/1.1\r\n\r\n";
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
    let out = run(&[
        ev(1, Recv, 1, reqs),
        ev(1, Send, 2, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"),
        ev(1, Send, 3, chunked),
        ev(1, Send, 4, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
    ]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(summary(&out), vec![row("/a", 200, 0, 1), row("/b", 200, 3, 12), row("/c", 404, 0, 0)]);
    let mut all = reqs.to_vec();
    all.extend_from_slice(reqs);
    let mut replies = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na".to_vec();
    replies.extend_from_slice(chunked);
    replies.extend_from_slice(b"HTTP/1.1 204 No Content\r\n\r\n");
    replies.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
    replies.extend_from_slice(chunked);
    replies.extend_from_slice(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n");
    let out = run(&[ev(1, Recv, 1, &all), ev(1, Send, 2, &replies)]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let want = [("/a", 200, 0, 1), ("/b", 200, 3, 12), ("/c", 204, 0, 0), ("/a", 200, 0, 2), ("/b", 200, 3, 12)];
    let mut want: Vec<_> = want.iter().map(|w| row(w.0, w.1, w.2, w.3)).collect();
    want.push(row("/c", 304, 0, 0));
    assert_eq!(summary(&out), want);
}

#[test]
fn pipelined_past_the_copy_is_counted_not_guessed() {
    let one = format!("GET /p HTTP/1.1\r\nUser-Agent: {}\r\n\r\n", "u".repeat(100));
    let all = one.repeat(20);
    assert!(all.len() > CAP);
    let mut t = Tracker::new(TrackerLimits::default());
    let mut out = Decoded::default();
    t.on_data(&ev(1, Recv, 1, all.as_bytes()), &mut out);
    // The requests copied whole, and the one the copy cut (reported as truncated).
    let seen = CAP / one.len() + 1;
    for i in 0..20 {
        t.on_data(&ev(1, Send, 2 + i as u64, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), &mut out);
    }
    assert_eq!(out.requests.len(), seen);
    assert_eq!(out.errors, vec![DecodeError::HeadersTruncated, DecodeError::Uncaptured]);
}

#[test]
fn expect_continue_body_counts_once() {
    let out = run(&[
        ev(1, Recv, 1, b"PUT /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n"),
        ev(1, Send, 2, b"HTTP/1.1 100 Continue\r\n\r\n"),
        ev(1, Recv, 3, b"0123456789"),
        ev(1, Send, 4, b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"),
        ev(1, Recv, 5, b"PUT /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"),
        ev(1, Send, 6, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ev(1, Recv, 7, b"abcd"),
    ]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    // The second reply came whole before its body: reported once the body was read.
    assert_eq!(summary(&out), vec![row("/up", 201, 10, 2), row("/up", 200, 4, 0)]);
}

#[test]
fn answered_before_its_body_then_the_next_request() {
    let out = run(&[
        ev(1, Recv, 1, b"POST /big HTTP/1.1\r\nContent-Length: 1000000\r\n\r\nxxxx"),
        ev(1, Send, 2, b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n"),
        ev(1, Recv, 3, b"GET /next HTTP/1.1\r\n\r\n"),
        ev(1, Send, 4, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(summary(&out), vec![row("/big", 413, 4, 0), row("/next", 200, 0, 0)]);
    // The client sends the rest of the body anyway: it counts, then the next request.
    let out = run(&[
        ev(1, Recv, 1, b"POST /big HTTP/1.1\r\nContent-Length: 10\r\n\r\nxxxx"),
        ev(1, Send, 2, b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
        ev(1, Recv, 3, b"yyyyyy"),
        ev(1, Recv, 4, b"GET /next HTTP/1.1\r\n\r\n"),
        ev(1, Send, 5, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(summary(&out), vec![row("/big", 201, 10, 0), row("/next", 200, 0, 0)]);
    assert_eq!((out.requests[0].start_ns, out.requests[0].end_ns), (1, 2));
}

#[test]
fn upgrade_ends_http_decoding() {
    let out = run(&[
        ev(1, Recv, 1, b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
        ev(1, Send, 2, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi"),
        ev(1, Recv, 3, b"\x81\x82abcdGET / HTTP/1.1\r\n\r\n"),
        ev(1, Send, 4, b"\x81\x02hi"),
    ]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(summary(&out), vec![row("/ws", 101, 0, 0)]);
}

#[test]
fn event_loop_serving_several_requests_links_no_call() {
    // One thread (an asyncio loop) reads two requests, then makes a call: which request
    // made it is unknown, so it is not linked. Once one request is answered, a call
    // belongs to the other.
    let mut t = Tracker::new(TrackerLimits::default());
    let mut out = Decoded::default();
    for e in [
        ev(1, Recv, 1, b"GET /one HTTP/1.1\r\n\r\n"),
        ev(3, Recv, 2, b"GET /two HTTP/1.1\r\n\r\n"),
        ev(2, Send, 3, b"GET /down HTTP/1.1\r\n\r\n"),
        ev(2, Recv, 4, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ev(1, Send, 5, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ev(4, Send, 6, b"GET /down HTTP/1.1\r\n\r\n"),
        ev(4, Recv, 7, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ev(3, Send, 8, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ] {
        t.on_data(&e, &mut out);
    }
    let [unknown, one, known, two] = &out.requests[..] else { panic!("{:?}", out.requests) };
    assert_eq!((one.target.as_str(), two.target.as_str()), ("/one", "/two"));
    assert!(!unknown.trace.has_parent(), "linked to one of two requests in flight");
    assert_ne!(unknown.trace.trace_id, one.trace.trace_id);
    assert_ne!(unknown.trace.trace_id, two.trace.trace_id);
    assert_eq!(out.unlinked_calls, 1);
    assert_eq!(known.trace.parent_span_id, two.trace.span_id);
    assert_eq!(known.trace.trace_id, two.trace.trace_id);
}

#[test]
fn a_request_lost_with_its_connection_does_not_hold_its_thread() {
    // A request whose connection closed unanswered no longer counts as being served.
    let mut t = Tracker::new(TrackerLimits::default());
    let mut out = Decoded::default();
    t.on_data(&ev(1, Recv, 1, b"GET /gone HTTP/1.1\r\n\r\n"), &mut out);
    t.on_close(7, 1, &mut out);
    for e in [
        ev(3, Recv, 2, b"GET /live HTTP/1.1\r\n\r\n"),
        ev(2, Send, 3, b"GET /down HTTP/1.1\r\n\r\n"),
        ev(2, Recv, 4, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ev(3, Send, 5, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ] {
        t.on_data(&e, &mut out);
    }
    let [call, live] = &out.requests[..] else { panic!("{:?}", out.requests) };
    assert_eq!(call.trace.parent_span_id, live.trace.span_id);
    assert_eq!(out.unlinked_calls, 0);
    assert_eq!(out.errors, vec![DecodeError::ClosedMidMessage]);
}

#[test]
fn a_header_read_alone_is_sniffed_again_with_what_follows_it() {
    // mysql-connector-python reads a packet's 4-byte header, then its body: the greeting
    // cannot be told from the header alone.
    let greeting = b"\x0a5.5.5-10.11.19-MariaDB\x00\x06\x00\x00\x00abcdefgh\x00";
    let mut header = (greeting.len() as u32).to_le_bytes();
    header[3] = 0;
    let query = b"\x0c\x00\x00\x00\x03SELECT 1 + 1";
    let out = run(&[
        ev(1, Recv, 10, &header),
        ev(1, Recv, 11, greeting),
        ev(1, Send, 20, b"\x20\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x21\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00app\x00"),
        ev(1, Recv, 30, b"\x07\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00"),
        ev(1, Send, 40, query),
        ev(1, Recv, 50, b"\x07\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00"),
    ]);
    assert_eq!(out.requests.len(), 1, "{:?}", out.errors);
    let op = out.requests[0].operation.as_ref().unwrap();
    assert_eq!((op.name.as_str(), out.requests[0].start_ns), ("SELECT", 40));
    assert_eq!(out.requests[0].attribute("db.system.name").map(|v| v.to_string()).as_deref(), Some("mariadb"));
}

#[test]
fn a_connection_no_protocol_claims_keeps_little() {
    // Starts like a Redis reply for ever (a POP3 server's "+OK"): Redis cannot tell, asked again
    // and again; what is kept meanwhile stays small, and large transfers are not kept at all.
    let mut t = Tracker::new(TrackerLimits::default());
    let mut out = Decoded::default();
    for i in 0..100 {
        t.on_data(&ev(1, Recv, i, b"+OK POP3 server ready\r\n"), &mut out);
        t.on_data(&ev(1, Recv, i, &[b'+'; 1500]), &mut out);
    }
    let kept: usize = t
        .conns
        .values()
        .map(|c| match &c.state {
            State::Sniffing { unsure, .. } => unsure.iter().map(|e| e.data.len()).sum(),
            _ => 0,
        })
        .sum();
    assert!(kept <= MAX_SNIFF_BYTES, "{kept} bytes kept");
    assert!(out.requests.is_empty());
}

#[test]
fn a_go_program_s_calls_are_never_linked_by_thread() {
    // A goroutine serving another request may run on the thread that read this one: without
    // the Go probes' word a Go program's call has no parent, never a guessed one.
    let events = [
        ev(1, Recv, 1, b"GET /one HTTP/1.1\r\n\r\n"),
        ev(2, Send, 2, b"GET /down HTTP/1.1\r\n\r\n"),
        ev(2, Recv, 3, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ev(1, Send, 4, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ];
    for go in [false, true] {
        let mut t = Tracker::new(TrackerLimits::default());
        t.set_go_oracle(Box::new(move |pid| go && pid == 7));
        let mut out = Decoded::default();
        for e in &events {
            t.on_data(e, &mut out);
        }
        let [call, served] = &out.requests[..] else { panic!("{:?}", out.requests) };
        assert_eq!(call.trace.has_parent(), !go, "go: {go}");
        if !go {
            assert_eq!(call.trace.parent_span_id, served.trace.span_id);
        }
        assert_eq!(out.unlinked_calls, 0);
    }
}

#[test]
fn each_claimed_connection_is_reported_once_with_its_protocol() {
    let mut t = Tracker::new(TrackerLimits::default());
    let mut out = Decoded::default();
    for e in [
        ev(1, Recv, 1, b"GET /a HTTP/1.1\r\n\r\n"),
        ev(1, Send, 2, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ev(1, Recv, 3, b"GET /b HTTP/1.1\r\n\r\n"),
        ev(2, Send, 4, b"*1\r\n$4\r\nPING\r\n"),
        ev(3, Recv, 5, b"\x00\x01 definitely nothing known"),
    ] {
        t.on_data(&e, &mut out);
    }
    assert_eq!(out.claimed, ["http1", "redis"]);
}

/// The client end of `ev`'s connection: process 8 on 127.0.0.1:50000.
fn client_ev(sock: u64, dir: Direction, ts: u64, bytes: &[u8]) -> SockData {
    SockData {
        pid: 8,
        tid: 80,
        local: addr("127.0.0.1:50000"),
        remote: addr("127.0.0.1:8080"),
        ..ev(sock, dir, ts, bytes)
    }
}

const GET: &[u8] = b"GET /users/1 HTTP/1.1\r\nHost: x\r\n\r\n";
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

/// A traced client's two calls on one connection: the first in the usual order (the client's
/// write reported first), the second answered before its write is reported (the kernel
/// delivered the bytes and the server read and answered before the client's write syscall
/// returned, when the capture reports it). The second answer waits.
fn answered_before_the_client_s_write() -> (Tracker, Decoded) {
    let mut t = Tracker::new(TrackerLimits::default());
    let mut out = Decoded::default();
    for e in [client_ev(10, Send, 1, GET), ev(1, Recv, 2, GET), ev(1, Send, 3, OK), client_ev(10, Recv, 4, OK)] {
        t.on_data(&e, &mut out);
    }
    for e in [ev(1, Recv, 12, GET), ev(1, Send, 13, OK)] {
        t.on_data(&e, &mut out);
    }
    assert_eq!(out.requests.len(), 2, "the answered request waits for its client's call");
    (t, out)
}

#[test]
fn a_server_request_answered_before_its_traced_client_s_write_is_reported_is_its_child() {
    let (mut t, mut out) = answered_before_the_client_s_write();
    for e in [client_ev(10, Send, 11, GET), client_ev(10, Recv, 14, OK)] {
        t.on_data(&e, &mut out);
    }
    let [s1, c1, s2, c2] = &out.requests[..] else { panic!("{:?}", out.requests) };
    assert_eq!((s1.role, c1.role, s2.role, c2.role), (Role::Server, Role::Client, Role::Server, Role::Client));
    assert_eq!(s1.trace.parent_span_id, c1.trace.span_id);
    assert_eq!((s2.trace.parent_span_id, s2.trace.trace_id), (c2.trace.span_id, c2.trace.trace_id));
    assert_eq!(out.unlinked_requests, 0);
}

#[test]
fn a_late_server_request_whose_call_never_comes_goes_out_unlinked_and_counted() {
    // The client's write is never reported.
    let (mut t, mut out) = answered_before_the_client_s_write();
    t.on_watermark(13 + LATE_WAIT_NS - 1, &mut out);
    assert_eq!(out.requests.len(), 2);
    t.on_watermark(13 + LATE_WAIT_NS, &mut out);
    let late = out.requests.last().expect("released");
    assert_eq!((late.role, late.start_ns, late.trace.has_parent()), (Role::Server, 12, false));
    assert_eq!(out.unlinked_requests, 1);

    // An untraced client (no connection at the other end) is never waited for.
    let out = run(&[ev(1, Recv, 1, GET), ev(1, Send, 2, OK)]);
    assert_eq!(out.requests.len(), 1);
    assert_eq!(out.unlinked_requests, 0);
}

#[test]
fn late_server_requests_go_out_when_their_process_exits_or_the_agent_stops() {
    for stop in [true, false] {
        let (mut t, mut out) = answered_before_the_client_s_write();
        if stop {
            t.flush(&mut out);
        } else {
            t.on_exit(7, &mut out);
        }
        assert_eq!(out.requests.len(), 3, "stop: {stop}");
    }
}

#[test]
fn late_server_requests_are_bounded() {
    let mut t = Tracker::new(TrackerLimits::default());
    let mut out = Decoded::default();
    // A traced client whose writes are never reported (sent by a means the capture does not
    // see): every answer waits, at most MAX_LATE of them; the oldest go out beyond.
    t.on_data(&client_ev(10, Recv, 1, OK), &mut out);
    for i in 0..(MAX_LATE as u64 + 10) {
        t.on_data(&ev(1, Recv, 10 + 2 * i, GET), &mut out);
        t.on_data(&ev(1, Send, 11 + 2 * i, OK), &mut out);
    }
    assert_eq!(t.late.len(), MAX_LATE);
    let gone: Vec<u64> = out.requests.iter().filter(|r| r.role == Role::Server).map(|r| r.start_ns).collect();
    assert_eq!(gone, (0..10).map(|i| 10 + 2 * i).collect::<Vec<_>>());
    assert_eq!(out.unlinked_requests, 10);
}
