// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Go probes, net/http: HTTP/1.x and HTTP/2 servers and clients. */
#ifndef __GO_NET_HTTP_H
#define __GO_NET_HTTP_H

/* net/http.serverHandler.ServeHTTP(sh, rw ResponseWriter, req *Request), entry: the
 * goroutine serves the request on rw's connection from here, and its handler starts. One
 * probe per request: a uprobe hit costs microseconds. rw is an *http.response (HTTP/1.x) when
 * its req field is req; the bundled HTTP/2 server passes another type, left alone. */
SEC("uprobe")
int go_serve_http(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct go_offsets *o = bpf_map_lookup_elem(&go_offsets, &tgid);
	if (!o)
		return 0;
	__u64 w = ctx->cx, wreq = 0, conn = 0;
	if (bpf_probe_read_user(&wreq, sizeof(wreq), (void *)(w + o->http_response_req)) || wreq != ctx->di)
		return 0;
	if (bpf_probe_read_user(&conn, sizeof(conn), (void *)(w + o->http_response_conn)) || !conn)
		return 0;
	struct go_request req = { .sock = sock_of_conn(o, conn + o->http_conn_rwc) };
	if (!req.sock)
		return 0;
	/* Context propagation: the request's trace continues in the calls it makes. */
	struct inject tp = {};
	if (propagate_headers) {
		if (!incoming_traceparent(o, conn, &req)) {
			random_bytes(req.trace_id, 4);
			req.flags = 1;
		}
		req.traced = 1;
		__builtin_memcpy(tp.trace_id, req.trace_id, sizeof(tp.trace_id));
	}
	start_serving(o, ctx, tgid, &req, propagate_headers ? &tp : 0);
	return 0;
}

/* An HTTP/2 stream of a connection (grpc's *http2Server, net/http's or x/net's server or
 * client connection). */
struct h2_stream_key {
	__u32 tgid;
	__u32 stream;
	__u64 conn;
};

/* An incoming call's trace context (its traceparent), from the server's reader goroutine,
 * which decodes the headers (grpc operateHeaders, net/http and x/net processHeaders), to the
 * goroutine serving the stream (handleStream, runHandler). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct h2_stream_key);
	__type(value, struct go_request);
} go_h2_incoming SEC(".maps");

/* hpack.HeaderField{Name, Value string; Sensitive bool}: 40 bytes on 64-bit, unchanged since
 * the package began. Header fields searched per call. */
#define HPACK_FIELD_SIZE 40
#define H2_MAX_FIELDS 24

/* Context propagation: the decoded header fields of a new stream of conn (frame, a
 * MetaHeadersFrame; x/net's layout or net/http's bundled copy's) are searched for
 * traceparent, kept for the goroutine that will serve the stream (take_incoming). */
static __always_inline void stash_incoming(__u32 tgid, __u64 conn, __u64 frame, const struct h2_meta_offsets *m)
{
	__u64 hf = 0, fields = 0;
	__s64 n = 0;
	struct h2_stream_key k = { .tgid = tgid, .conn = conn };
	if (bpf_probe_read_user(&hf, sizeof(hf), (void *)(frame + m->headers_frame)) || !hf)
		return;
	if (bpf_probe_read_user(&k.stream, sizeof(k.stream), (void *)(hf + m->frame_header + m->stream_id)))
		return;
	if (bpf_probe_read_user(&fields, sizeof(fields), (void *)(frame + m->fields)) || !fields)
		return;
	if (bpf_probe_read_user(&n, sizeof(n), (void *)(frame + m->fields + 8)) || n <= 0)
		return;
	for (int i = 0; i < H2_MAX_FIELDS; i++) {
		if (i >= n)
			break;
		struct {
			__u64 name;
			__s64 name_len;
			__u64 value;
			__s64 value_len;
		} f;
		if (bpf_probe_read_user(&f, sizeof(f), (void *)(fields + i * HPACK_FIELD_SIZE)))
			return;
		if (f.name_len != 11 || f.value_len != TP_VALUE_LEN)
			continue;
		char name[12] = {};
		if (bpf_probe_read_user(name, 11, (void *)f.name))
			continue;
		__u64 head = 0;
		__u32 tail = 0;
		__builtin_memcpy(&head, name, 8);
		__builtin_memcpy(&tail, name + 8, 4);
		/* "traceparent" as little-endian words: "tracepar", "ent\0". */
		if (head != 0x7261706563617274ULL || tail != 0x00746e65)
			continue;
		char v[TP_VALUE_LEN];
		struct go_request req = {};
		if (bpf_probe_read_user(v, sizeof(v), (void *)f.value) || !parse_traceparent(v, &req))
			return;
		req.traced = 1;
		bpf_map_update_elem(&go_h2_incoming, &k, &req, BPF_ANY);
		return;
	}
}

/* The trace context of stream `stream` of conn for the goroutine starting to serve it: its
 * incoming traceparent's (stash_incoming), or a trace id made up here. */
static __always_inline void take_incoming(__u32 tgid, __u64 conn, struct go_request *req, struct inject *tp)
{
	struct h2_stream_key k = { .tgid = tgid, .stream = req->stream, .conn = conn };
	struct go_request *in = bpf_map_lookup_elem(&go_h2_incoming, &k);
	if (in) {
		__builtin_memcpy(req->trace_id, in->trace_id, sizeof(req->trace_id));
		req->flags = in->flags;
		bpf_map_delete_elem(&go_h2_incoming, &k);
	} else {
		random_bytes(req->trace_id, 4);
		req->flags = 1;
	}
	req->traced = 1;
	__builtin_memcpy(tp->trace_id, req->trace_id, sizeof(tp->trace_id));
}

/* net/http.(*http2serverConn).processHeaders(sc, f *http2MetaHeadersFrame), entry, with
 * context propagation on: a new request's incoming traceparent, for runHandler. */
SEC("uprobe")
int go_h2_server_headers(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct go_offsets *o = bpf_map_lookup_elem(&go_offsets, &tgid);
	if (o)
		stash_incoming(tgid, ctx->ax, ctx->bx, &o->h2_meta);
	return 0;
}

/* golang.org/x/net/http2.(*serverConn).processHeaders(sc, f *MetaHeadersFrame) likewise, and
 * grpc/internal/transport.(*http2Server).operateHeaders(t, frame *http2.MetaHeadersFrame, ...)
 * (for handleStream): both receive x/net's frame. */
SEC("uprobe")
int go_xh2_server_headers(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct go_offsets *o = bpf_map_lookup_elem(&go_offsets, &tgid);
	if (o)
		stash_incoming(tgid, ctx->ax, ctx->bx, &o->xh2_meta);
	return 0;
}

/* The goroutine an HTTP/2 server started for a stream serves it from here, and its handler
 * starts: runHandler(sc, rw, req, handler) of net/http's bundled server or of
 * golang.org/x/net/http2 (the same code; each with its own struct offsets). The stream is
 * rw.rws.stream, the connection sc.conn. */
static __always_inline int h2_serve(struct pt_regs *ctx, int xnet)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct go_offsets *o = bpf_map_lookup_elem(&go_offsets, &tgid);
	if (!o)
		return 0;
	const struct h2_server_offsets *h = xnet ? &o->xh2 : &o->h2;
	__u64 rws = 0, st = 0;
	struct go_request req = {};
	if (bpf_probe_read_user(&rws, sizeof(rws), (void *)(ctx->bx + h->response_writer_rws)) || !rws)
		return 0;
	if (bpf_probe_read_user(&st, sizeof(st), (void *)(rws + h->rws_stream)) || !st)
		return 0;
	if (bpf_probe_read_user(&req.stream, sizeof(req.stream), (void *)(st + h->stream_id)) || !req.stream)
		return 0;
	req.sock = sock_of_conn(o, ctx->ax + h->server_conn_conn);
	if (!req.sock)
		return 0;
	/* Context propagation: the request's trace continues in the calls its handler makes. */
	struct inject tp = {};
	if (propagate_headers)
		take_incoming(tgid, ctx->ax, &req, &tp);
	start_serving(o, ctx, tgid, &req, propagate_headers ? &tp : 0);
	return 0;
}

/* net/http.(*http2serverConn).runHandler, entry. */
SEC("uprobe")
int go_h2_serve(struct pt_regs *ctx)
{
	return h2_serve(ctx, 0);
}

/* golang.org/x/net/http2.(*serverConn).runHandler, entry (e.g. h2c servers). */
SEC("uprobe")
int go_xh2_serve(struct pt_regs *ctx)
{
	return h2_serve(ctx, 1);
}

/* net/http.(*persistConn).roundTrip(pc, req): an HTTP/1.x client request goes out on pc.conn
 * (written by the connection's writeLoop goroutine, after this). With context propagation
 * on, the call gets its span id here and its traceparent is queued for go_inject_traceparent. */
SEC("uprobe")
int go_http_client(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct go_offsets *o = bpf_map_lookup_elem(&go_offsets, &tgid);
	if (!o)
		return 0;
	__u64 sk = sock_of_conn(o, ctx->ax + o->persist_conn_conn);
	if (!sk)
		return 0;
	__u64 g = ctx->r14, goid = goid_of(o, g);
	struct go_request *req = serving_of(o, tgid, g, goid);
	struct inject tp = {};
	struct inject_key k = { .tgid = tgid };
	if (propagate_headers && o->persist_conn_bw &&
	    !bpf_probe_read_user(&k.bw, sizeof(k.bw), (void *)(ctx->ax + o->persist_conn_bw)) && k.bw) {
		/* A call made outside any request starts a trace of its own. */
		if (req && req->traced) {
			__builtin_memcpy(tp.trace_id, req->trace_id, sizeof(tp.trace_id));
			tp.flags = req->flags;
		} else {
			random_bytes(tp.trace_id, 4);
			tp.flags = 1;
		}
		random_bytes(tp.span_id, 2);
		bpf_map_update_elem(&go_injects, &k, &tp, BPF_ANY);
	}
	emit_go(EVENT_GO_CLIENT, goid, req, sk, 0, k.bw ? &tp : 0);
	return 0;
}

/* The call of net/http.Header.writeSubset(h, w io.Writer, ...) inside
 * net/http.(*Request).write, after the request line, Host and User-Agent are in w, a
 * *bufio.Writer (RCX: the interface's data word). If w is a client connection's writer with a
 * traceparent queued (go_http_client), the header is appended to the buffered bytes and the
 * writer's count moved past it: the request goes out with it, the application's own headers
 * after it. Skipped when the buffer has no room (the bytes are never split or reordered). */
SEC("uprobe")
int go_inject_traceparent(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct go_offsets *o = bpf_map_lookup_elem(&go_offsets, &tgid);
	if (!o)
		return 0;
	struct inject_key k = { .tgid = tgid, .bw = ctx->cx };
	struct inject *q = bpf_map_lookup_elem(&go_injects, &k);
	if (!q)
		return 0;
	struct inject tp = *q;
	bpf_map_delete_elem(&go_injects, &k);
	__u64 buf = 0;
	__s64 size = 0, n = 0;
	if (bpf_probe_read_user(&buf, sizeof(buf), (void *)(k.bw + o->bufio_writer_buf)) || !buf)
		return 0;
	if (bpf_probe_read_user(&size, sizeof(size), (void *)(k.bw + o->bufio_writer_buf + 8)))
		return 0;
	if (bpf_probe_read_user(&n, sizeof(n), (void *)(k.bw + o->bufio_writer_n)))
		return 0;
	if (n < 0 || n + TP_HEADER_LEN > size)
		return 0;
	char h[TP_HEADER_LEN] = "Traceparent: ";
	put_traceparent(h + TP_NAME_LEN + 1, &tp);
	h[68] = '\r';
	h[69] = '\n';
	if (bpf_probe_write_user((void *)(buf + n), h, TP_HEADER_LEN))
		return 0;
	n += TP_HEADER_LEN;
	bpf_probe_write_user((void *)(k.bw + o->bufio_writer_n), &n, sizeof(n));
	return 0;
}

/* (tgid, goroutine) -> the net/http HTTP/2 client stream (connection, stream id) whose headers
 * it wrote last: writeHeaders also writes a request's trailers, on the same goroutine (each
 * request gets its own, and goroutine ids are never reused, unlike a freed connection's
 * address), and those must not be announced or get a traceparent again. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct goroutine_key);
	__type(value, struct h2_stream_key);
} go_h2_client_streams SEC(".maps");

/* net/http.(*http2ClientConn).writeHeaders(cc, streamID uint32, endStream bool, maxFrameSize
 * int, hdrs []byte), entry, on the request's goroutine (doRequest, started by the caller): an
 * HTTP/2 call goes out on stream streamID of cc.tconn, announced before its bytes (the frames
 * are flushed at the end of writeHeaders). With context propagation the call gets its span
 * id, and the traceparent goes in when the HEADERS frame is written (Framer.WriteHeaders'
 * return, inside writeHeaders and before its flush). */
SEC("uprobe")
int go_h2_client(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct go_offsets *o = bpf_map_lookup_elem(&go_offsets, &tgid);
	if (!o)
		return 0;
	struct h2_stream_key sk_key = { .tgid = tgid, .stream = (__u32)ctx->bx, .conn = ctx->ax };
	if (!sk_key.stream)
		return 0;
	__u64 g = ctx->r14, goid = goid_of(o, g);
	struct goroutine_key gk = { .tgid = tgid, .goid = goid };
	struct h2_stream_key *last = bpf_map_lookup_elem(&go_h2_client_streams, &gk);
	if (last && last->conn == sk_key.conn && last->stream == sk_key.stream)
		return 0;
	bpf_map_update_elem(&go_h2_client_streams, &gk, &sk_key, BPF_ANY);
	__u64 sk = sock_of_conn(o, ctx->ax + o->h2_client_conn_tconn);
	if (!sk)
		return 0;
	struct go_request *req = serving_of(o, tgid, g, goid);
	struct header_write w = { .stream = sk_key.stream };
	__u64 bw = 0;
	int inject = propagate_headers && o->h2_client_conn_bw &&
		     !bpf_probe_read_user(&bw, sizeof(bw), (void *)(ctx->ax + o->h2_client_conn_bw)) && bw;
	if (inject) {
		/* A call made outside any request starts a trace of its own. */
		if (req && req->traced) {
			__builtin_memcpy(w.tp.trace_id, req->trace_id, sizeof(w.tp.trace_id));
			w.tp.flags = req->flags;
		} else {
			random_bytes(w.tp.trace_id, 4);
			w.tp.flags = 1;
		}
		random_bytes(w.tp.span_id, 2);
		w.buf_addr = bw + o->bufio_writer_buf;
		w.fill_addr = bw + o->bufio_writer_n;
		if (bpf_probe_read_user(&w.start, sizeof(w.start), (void *)w.fill_addr))
			inject = 0;
	}
	emit_go(EVENT_GO_CLIENT, goid, req, sk, sk_key.stream, inject ? &w.tp : 0);
	if (inject)
		bpf_map_update_elem(&go_header_writes, &gk, &w, BPF_ANY);
	return 0;
}

/* RET sites of net/http.(*http2Framer).WriteHeaders (context propagation only): the HEADERS
 * frame of a call go_h2_client announced is in the connection's bufio.Writer. */
SEC("uprobe")
int go_h2_client_headers_ret(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct go_offsets *o = bpf_map_lookup_elem(&go_offsets, &tgid);
	if (o)
		finish_header_write(o, ctx, tgid);
	return 0;
}

#endif /* __GO_NET_HTTP_H */
