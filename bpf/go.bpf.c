// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Hook family "go": uprobes in Go executables that tell the agent which request a goroutine
 * is serving when it makes an HTTP or gRPC client call (bpf/include/events.h,
 * struct go_event). The socket capture families still capture the bytes.
 *
 * Attached per process by the agent (agent/src/attach/go.rs) at function entries and, for
 * returns, at the RET instructions it found by disassembly: never uretprobes, which break
 * when Go moves a goroutine's stack. Go's register ABI (go1.17+, amd64): arguments in
 * RAX, RBX, RCX, ..., results in RAX, ...; the current goroutine's g in R14. */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "events.h"
#include "maps/events.h"
#include "helpers.h"
#include "sock_emit.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Forces the type into BTF so the skeleton generates a Rust type for the agent to fill. */
struct go_offsets _go_offsets = {};

/* tgid -> offsets; only processes the agent instrumented with the Go probes are present. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct go_offsets);
} go_offsets SEC(".maps");

struct goroutine_key {
	__u32 tgid;
	__u32 _pad;
	__u64 goid;
};

/* A crypto/tls read in progress, entry to return: the connection and the caller's buffer. */
struct tls_read {
	__u64 conn;
	__u64 buf;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct goroutine_key);
	__type(value, struct tls_read);
} go_tls_reads SEC(".maps");

/* The request a goroutine serves: its server connection (struct sock) and, with context
 * propagation on, its trace id and W3C flags. */
struct go_request {
	__u64 sock;
	__u8 trace_id[16];
	__u32 stream; /* HTTP/2 stream id (gRPC servers); 0 for HTTP/1.x */
	__u8 flags;
	__u8 traced; /* trace_id and flags are set */
	__u8 _pad[2];
};

/* (tgid, goid) -> the request the goroutine serves: set when its net/http handler starts,
 * inherited by the goroutines it starts. LRU: goroutines end without a probe telling us. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct goroutine_key);
	__type(value, struct go_request);
} go_serving SEC(".maps");

/* Set by the agent before load: ebpf.context_propagation includes headers and the kernel
 * lets programs write user memory (no lockdown). */
const volatile __u8 propagate_headers = 0;

/* A traceparent to write into an HTTP/1.x request a net/http client connection is about to
 * write, keyed by (tgid, the connection's *bufio.Writer); from the call (persistConn.roundTrip,
 * on the caller's goroutine) to the header write (on the connection's writeLoop goroutine). */
struct inject_key {
	__u32 tgid;
	__u32 _pad;
	__u64 bw;
};

struct inject {
	__u8 trace_id[16];
	__u8 span_id[8];
	__u8 flags;
	__u8 _pad[7];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct inject_key);
	__type(value, struct inject);
} go_injects SEC(".maps");

/* Bytes of the server connection's read buffer searched for an incoming traceparent: the
 * end of the request head, which ends where the reader stopped. */
#define TP_WINDOW 1024
/* "traceparent:" */
#define TP_NAME_LEN 12
/* 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags> */
#define TP_VALUE_LEN 55
/* "Traceparent: " value "\r\n" */
#define TP_HEADER_LEN (TP_NAME_LEN + 1 + TP_VALUE_LEN + 2)

/* The window searched, and where the value found starts: kept in map memory, whose contents
 * the verifier does not track, so the search loop's states do not multiply with every
 * position it could have found. */
struct tp_search {
	char w[TP_WINDOW];
	__s32 at;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tp_search);
} tp_scratch SEC(".maps");

static __always_inline __u64 goid_of(const struct go_offsets *o, __u64 g)
{
	__u64 goid = 0;
	if (g)
		bpf_probe_read_user(&goid, sizeof(goid), (void *)(g + o->g_goid));
	return goid;
}

/* The TCP socket behind a net.Conn interface value at user address iface holding a
 * *net.TCPConn: TCPConn.conn.fd -> netFD.pfd.Sysfd -> the fd's struct sock (0 if anything
 * on the way does not look like a TCP socket of this process). */
static __always_inline __u64 sock_of_net_conn(const struct go_offsets *o, __u64 iface)
{
	__u64 data = 0, netfd = 0;
	__s64 sysfd = -1;
	if (bpf_probe_read_user(&data, sizeof(data), (void *)(iface + 8)) || !data)
		return 0;
	if (bpf_probe_read_user(&netfd, sizeof(netfd), (void *)(data + o->tcp_conn_conn + o->net_conn_fd)) || !netfd)
		return 0;
	if (bpf_probe_read_user(&sysfd, sizeof(sysfd), (void *)(netfd + o->netfd_pfd + o->poll_fd_sysfd)))
		return 0;
	if (sysfd < 0 || sysfd > 0x7fffffff)
		return 0;
	return (__u64)tcp_sock_of_fd((int)sysfd);
}

/* The TCP socket behind a net.Conn that is either a *net.TCPConn or a *crypto/tls.Conn over
 * one (HTTPS servers and clients). Read as a TCPConn, a tls.Conn yields an itab's 32-bit hash
 * as the descriptor, which lies beyond the process's fd table (so no socket) unless the hash
 * happens to be tiny; then the inner connection is tried. */
static __always_inline __u64 sock_of_conn(const struct go_offsets *o, __u64 iface)
{
	__u64 sk = sock_of_net_conn(o, iface);
	if (sk)
		return sk;
	__u64 data = 0;
	if (bpf_probe_read_user(&data, sizeof(data), (void *)(iface + 8)) || !data)
		return 0;
	return sock_of_net_conn(o, data + o->tls_conn_conn);
}

static __always_inline struct go_request *serving(__u32 tgid, __u64 goid)
{
	struct goroutine_key k = { .tgid = tgid, .goid = goid };
	return bpf_map_lookup_elem(&go_serving, &k);
}

/* What the goroutine g serves, or failing that (go1.21+, which records it) its creator. */
static __always_inline struct go_request *serving_of(const struct go_offsets *o, __u32 tgid, __u64 g, __u64 goid)
{
	struct go_request *r = serving(tgid, goid);
	if (r || !o->g_parent_goid || !g)
		return r;
	__u64 parent = 0;
	if (bpf_probe_read_user(&parent, sizeof(parent), (void *)(g + o->g_parent_goid)) || !parent)
		return 0;
	return serving(tgid, parent);
}

/* Sends a go_event of `kind` for goroutine goid (serving `req`, 0: nothing) with the trace
 * context `tp` (0: none). */
static __always_inline void emit_go(__u8 kind, __u64 goid, const struct go_request *req, __u64 client_sock,
				    __u32 stream, const struct inject *tp)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct go_event e = {
		.kind = kind,
		.pid = id >> 32,
		.stream = stream,
		.goid = goid,
		.server_sock = req ? req->sock : 0,
		.server_stream = req ? req->stream : 0,
		.client_sock = client_sock,
		.ts_ns = bpf_ktime_get_ns(),
	};
	if (client_sock)
		read_conn_tuple((struct sock *)client_sock, &e.conn);
	if (tp) {
		__builtin_memcpy(e.trace_id, tp->trace_id, sizeof(e.trace_id));
		__builtin_memcpy(e.span_id, tp->span_id, sizeof(e.span_id));
	}
	if (bpf_ringbuf_output(&events, &e, sizeof(e), ringbuf_flags()))
		count_lost();
}

/* The current goroutine serves req from here (its handler starts): what the client probes
 * look up, and the agent's handler-start event. */
static __always_inline void start_serving(const struct go_offsets *o, struct pt_regs *ctx, __u32 tgid,
					  const struct go_request *req, const struct inject *tp)
{
	struct goroutine_key k = { .tgid = tgid, .goid = goid_of(o, ctx->r14) };
	bpf_map_update_elem(&go_serving, &k, req, BPF_ANY);
	emit_go(EVENT_GO_HANDLER_START, k.goid, req, 0, 0, tp);
}

static __always_inline void random_bytes(__u8 *out, int words)
{
	for (int i = 0; i < words; i++) {
		__u32 r = bpf_get_prandom_u32();
		__builtin_memcpy(out + 4 * i, &r, 4);
	}
}

/* The value of a lowercase hex digit, or -1 (W3C trace context: lowercase only). */
static __always_inline int unhex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* The trace id and flags of a traceparent value (TP_VALUE_LEN bytes at v) into req; returns 1
 * when it is well formed (version 00, lowercase hex, a non-zero trace id). */
static __always_inline int parse_traceparent(const char *v, struct go_request *req)
{
	if (v[0] != '0' || v[1] != '0' || v[2] != '-' || v[35] != '-' || v[52] != '-')
		return 0;
	__u8 any = 0;
	for (int i = 0; i < 16; i++) {
		int hi = unhex(v[3 + 2 * i]), lo = unhex(v[4 + 2 * i]);
		if (hi < 0 || lo < 0)
			return 0;
		req->trace_id[i] = (__u8)(hi << 4 | lo);
		any |= req->trace_id[i];
	}
	int fhi = unhex(v[53]), flo = unhex(v[54]);
	if (!any || fhi < 0 || flo < 0)
		return 0;
	req->flags = (__u8)(fhi << 4 | flo);
	return 1;
}

/* The trace id and flags of the traceparent header in the request head net/http just read on
 * the server connection conn (a *http.conn): its bufio.Reader still holds the bytes, and the
 * head ends where the reader stopped (bufr.r). Searches the last TP_WINDOW bytes before it.
 * Returns 1 when found. */
static __always_inline int incoming_traceparent(const struct go_offsets *o, __u64 conn, struct go_request *req)
{
	__u64 br = 0, buf = 0;
	__s64 r = 0;
	if (!o->http_conn_bufr || bpf_probe_read_user(&br, sizeof(br), (void *)(conn + o->http_conn_bufr)) || !br)
		return 0;
	if (bpf_probe_read_user(&buf, sizeof(buf), (void *)(br + o->bufio_reader_buf)) || !buf)
		return 0;
	if (bpf_probe_read_user(&r, sizeof(r), (void *)(br + o->bufio_reader_r)) || r < 4)
		return 0;
	__u32 zero = 0;
	struct tp_search *sr = bpf_map_lookup_elem(&tp_scratch, &zero);
	if (!sr)
		return 0;
	char *w = sr->w;
	/* A fixed-size read: from the buffer's start when the head is shorter than the window
	 * (the reader's buffer is 4 KiB, never smaller than the window). */
	__s64 start = r > TP_WINDOW ? r - TP_WINDOW : 0;
	__s64 len = r - start;
	if (bpf_probe_read_user(w, TP_WINDOW, (void *)(buf + start)))
		return 0;
	/* The last "\ntraceparent:" of this request's head: a blank line before the final one
	 * ends an earlier (pipelined) request whose headers do not count. */
	/* Volatile: the compiler must not keep a copy of the position in a register or on the
	 * stack, where the verifier would track it (and every possible value would be a state). */
	volatile __s32 *found = &sr->at;
	*found = -1;
	for (int i = 0; i < TP_WINDOW - TP_NAME_LEN - TP_VALUE_LEN - 4; i++) {
		if (i + 3 >= len)
			break;
		/* Branch-free matching (c | 0x20 is the lowercase letter exactly when c is that
		 * letter in either case): two branches per byte keep the verifier's work linear. */
		const char *c = w + i;
		int blank = (c[0] ^ '\n') | (c[1] ^ '\r') | (c[2] ^ '\n');
		int name = (c[0] ^ '\n') | ((c[1] | 0x20) ^ 't') | ((c[2] | 0x20) ^ 'r') | ((c[3] | 0x20) ^ 'a') |
			   ((c[4] | 0x20) ^ 'c') | ((c[5] | 0x20) ^ 'e') | ((c[6] | 0x20) ^ 'p') |
			   ((c[7] | 0x20) ^ 'a') | ((c[8] | 0x20) ^ 'r') | ((c[9] | 0x20) ^ 'e') |
			   ((c[10] | 0x20) ^ 'n') | ((c[11] | 0x20) ^ 't') | (c[12] ^ ':');
		if (!blank)
			*found = -1;
		if (!name)
			*found = i + TP_NAME_LEN + 1;
	}
	int at = *found;
	if (at < 0 || at >= TP_WINDOW - TP_VALUE_LEN)
		return 0;
	/* Optional whitespace, then "00-" and the trace id. */
	if (w[at] == ' ')
		at++;
	if (at + TP_VALUE_LEN > len || at > TP_WINDOW - TP_VALUE_LEN)
		return 0;
	return parse_traceparent(w + at, req);
}

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

/* google.golang.org/grpc.(*Server).handleStream(s, t ServerTransport, stream *Stream, ...),
 * entry: the goroutine grpc started for the stream serves it from here, and its handler
 * starts. t is an *http2Server (the interface's data word, RCX) unless grpc is served through
 * net/http (ServeHTTP), whose transport yields no socket here and is left alone. */
SEC("uprobe")
int go_grpc_server(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct go_offsets *o = bpf_map_lookup_elem(&go_offsets, &tgid);
	if (!o)
		return 0;
	struct go_request req = {};
	if (bpf_probe_read_user(&req.stream, sizeof(req.stream), (void *)(ctx->di + o->grpc_stream_id)) || !req.stream)
		return 0;
	req.sock = sock_of_conn(o, ctx->cx + o->grpc_http2_server_conn);
	if (!req.sock)
		return 0;
	/* Context propagation: the call's trace continues in the calls its handler makes. */
	struct inject tp = {};
	if (propagate_headers)
		take_incoming(tgid, ctx->cx, &req, &tp);
	start_serving(o, ctx, tgid, &req, propagate_headers ? &tp : 0);
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

/* runtime.newproc1 returns (RET sites) the new goroutine: it inherits what its creator
 * serves. newproc1 runs on the system stack (R14 is the thread's g0), so the creator is the
 * goroutine the thread runs, g0.m.curg. Only attached before go1.21, where g has no
 * parentGoid; one hit per goroutine started. */
SEC("uprobe")
int go_newproc1_ret(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct go_offsets *o = bpf_map_lookup_elem(&go_offsets, &tgid);
	if (!o)
		return 0;
	__u64 m = 0, curg = 0;
	if (bpf_probe_read_user(&m, sizeof(m), (void *)(ctx->r14 + o->g_m)) || !m)
		return 0;
	if (bpf_probe_read_user(&curg, sizeof(curg), (void *)(m + o->m_curg)) || !curg)
		return 0;
	struct go_request *r = serving(tgid, goid_of(o, curg));
	if (!r)
		return 0;
	struct go_request req = *r;
	struct goroutine_key k = { .tgid = tgid, .goid = goid_of(o, ctx->ax) };
	if (k.goid)
		bpf_map_update_elem(&go_serving, &k, &req, BPF_ANY);
	return 0;
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

static __always_inline void put_hex(char *out, const __u8 *in, int n)
{
	const char digits[] = "0123456789abcdef";
	for (int i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
}

/* The W3C traceparent value of tp (TP_VALUE_LEN bytes) at out. */
static __always_inline void put_traceparent(char *out, const struct inject *tp)
{
	out[0] = '0';
	out[1] = '0';
	out[2] = '-';
	put_hex(out + 3, tp->trace_id, 16);
	out[35] = '-';
	put_hex(out + 36, tp->span_id, 8);
	out[52] = '-';
	put_hex(out + 53, &tp->flags, 1);
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

/* google.golang.org/grpc/internal/transport.(*http2Client).Write(t, s *Stream, ...): a gRPC
 * message goes out on stream s.id of t.conn (written by the transport's loopy goroutine). */
SEC("uprobe")
int go_grpc_client(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct go_offsets *o = bpf_map_lookup_elem(&go_offsets, &tgid);
	if (!o)
		return 0;
	__u32 stream = 0;
	if (bpf_probe_read_user(&stream, sizeof(stream), (void *)(ctx->bx + o->grpc_stream_id)) || !stream)
		return 0;
	__u64 sk = sock_of_conn(o, ctx->ax + o->grpc_http2_client_conn);
	if (sk) {
		__u64 g = ctx->r14, goid = goid_of(o, g);
		emit_go(EVENT_GO_CLIENT, goid, serving_of(o, tgid, g, goid), sk, stream, 0);
	}
	return 0;
}

/* gRPC client calls with context propagation: the header block of a call is encoded and
 * written by the transport's loopy goroutine, not the caller's. The caller's header field
 * slice travels with the call, so it carries the trace context from one to the other; the
 * header itself goes in as a CONTINUATION frame after the call's HEADERS frame, while both
 * still sit in the transport's write buffer. */
struct grpc_inject {
	struct inject tp;
	__u64 server_sock; /* the request the caller serves (0: none) */
	__u32 server_stream;
	__u32 _pad;
};

/* (tgid, the call's []hpack.HeaderField array) -> its trace context, from
 * createHeaderFields' return (caller) to loopyWriter.writeHeader (loopy goroutine). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct inject_key);
	__type(value, struct grpc_inject);
} go_grpc_injects SEC(".maps");

/* An HTTP/2 header write in progress on a goroutine (grpc's loopy goroutine in
 * loopyWriter.writeHeader, or a net/http HTTP/2 client request's in
 * http2ClientConn.writeHeaders), for finish_header_write. The write buffer is a byte slice
 * and a fill count (grpc's bufWriter.buf/offset, bufio.Writer.buf/n). */
struct header_write {
	struct inject tp;
	__u64 buf_addr; /* address of the buffer's slice header */
	__u64 fill_addr; /* address of its fill count */
	__s64 start; /* the fill when the write began */
	__u32 stream;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct goroutine_key);
	__type(value, struct header_write);
} go_header_writes SEC(".maps");

/* HTTP/2 frame header (9) + HPACK "literal without indexing, new name" (RFC 7541 6.2.2):
 * 0x00, name length, "traceparent", value length, value. No dynamic table entry, so the
 * encoder's and decoder's tables stay in step. */
#define H2_FRAME_HEADER 9
#define TP_HPACK_LEN (1 + 1 + 11 + 1 + TP_VALUE_LEN)
#define TP_CONTINUATION_LEN (H2_FRAME_HEADER + TP_HPACK_LEN)

/* RET sites of grpc/internal/transport.(*http2Client).createHeaderFields(t, ctx, callHdr)
 * ([]hpack.HeaderField, error), on the caller's goroutine: the call gets its span id, and its
 * context waits for the loopy goroutine under the returned slice's array (RAX). */
SEC("uprobe")
int go_grpc_client_headers(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct go_offsets *o = bpf_map_lookup_elem(&go_offsets, &tgid);
	if (!o || !ctx->ax)
		return 0;
	__u64 g = ctx->r14;
	struct go_request *req = serving_of(o, tgid, g, goid_of(o, g));
	struct grpc_inject v = {};
	if (req && req->traced) {
		__builtin_memcpy(v.tp.trace_id, req->trace_id, sizeof(v.tp.trace_id));
		v.tp.flags = req->flags;
	} else {
		random_bytes(v.tp.trace_id, 4);
		v.tp.flags = 1;
	}
	random_bytes(v.tp.span_id, 2);
	if (req) {
		v.server_sock = req->sock;
		v.server_stream = req->stream;
	}
	struct inject_key k = { .tgid = tgid, .bw = ctx->ax };
	bpf_map_update_elem(&go_grpc_injects, &k, &v, BPF_ANY);
	return 0;
}

/* grpc/internal/transport.(*loopyWriter).writeHeader(l, streamID uint32, endStream bool,
 * hf []hpack.HeaderField, onWrite func()), entry, on the loopy goroutine: if hf is a client
 * call's (RDI), the call is announced with its stream id and trace context, and the write
 * buffer's fill noted for the return. */
SEC("uprobe")
int go_grpc_write_header(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct go_offsets *o = bpf_map_lookup_elem(&go_offsets, &tgid);
	if (!o)
		return 0;
	struct inject_key k = { .tgid = tgid, .bw = ctx->di };
	struct grpc_inject *q = bpf_map_lookup_elem(&go_grpc_injects, &k);
	if (!q)
		return 0;
	struct grpc_inject v = *q;
	bpf_map_delete_elem(&go_grpc_injects, &k);
	struct header_write w = { .tp = v.tp, .stream = (__u32)ctx->bx };
	__u64 fr = 0, bw = 0;
	if (bpf_probe_read_user(&fr, sizeof(fr), (void *)(ctx->ax + o->grpc_loopy_framer)) || !fr)
		return 0;
	if (bpf_probe_read_user(&bw, sizeof(bw), (void *)(fr + o->grpc_framer_writer)) || !bw)
		return 0;
	w.buf_addr = bw + o->grpc_buf_writer_buf;
	w.fill_addr = bw + o->grpc_buf_writer_offset;
	if (bpf_probe_read_user(&w.start, sizeof(w.start), (void *)w.fill_addr))
		return 0;
	__u64 sk = sock_of_conn(o, bw + o->grpc_buf_writer_conn);
	if (!sk || !w.stream)
		return 0;
	struct go_request req = { .sock = v.server_sock, .stream = v.server_stream };
	__u64 goid = goid_of(o, ctx->r14);
	emit_go(EVENT_GO_CLIENT, goid, v.server_sock ? &req : 0, sk, w.stream, &v.tp);
	struct goroutine_key gk = { .tgid = tgid, .goid = goid };
	bpf_map_update_elem(&go_header_writes, &gk, &w, BPF_ANY);
	return 0;
}

/* The end of the current goroutine's header write (header_write): when the call's header
 * block went into the write buffer as one HEADERS frame that is still there (nothing flushed
 * since), the frame loses END_HEADERS and a CONTINUATION frame with the traceparent follows
 * it. Skipped, the call unchanged, when the buffer has no room or the frame is not as
 * expected. */
static __always_inline void finish_header_write(const struct go_offsets *o, struct pt_regs *ctx, __u32 tgid)
{
	struct goroutine_key gk = { .tgid = tgid, .goid = goid_of(o, ctx->r14) };
	struct header_write *p = bpf_map_lookup_elem(&go_header_writes, &gk);
	if (!p)
		return;
	struct header_write w = *p;
	bpf_map_delete_elem(&go_header_writes, &gk);
	__u64 buf = 0;
	__s64 size = 0, end = 0;
	if (bpf_probe_read_user(&buf, sizeof(buf), (void *)w.buf_addr) || !buf)
		return;
	if (bpf_probe_read_user(&size, sizeof(size), (void *)(w.buf_addr + 8)))
		return;
	if (bpf_probe_read_user(&end, sizeof(end), (void *)w.fill_addr))
		return;
	if (w.start < 0 || end < w.start + H2_FRAME_HEADER || end + TP_CONTINUATION_LEN > size)
		return;
	__u8 fh[H2_FRAME_HEADER];
	if (bpf_probe_read_user(fh, sizeof(fh), (void *)(buf + w.start)))
		return;
	__u32 len = (__u32)fh[0] << 16 | (__u32)fh[1] << 8 | fh[2];
	__u32 stream = ((__u32)fh[5] << 24 | (__u32)fh[6] << 16 | (__u32)fh[7] << 8 | fh[8]) & 0x7fffffff;
	/* One HEADERS frame with END_HEADERS (0x4), this stream's, ending where the buffer does. */
	if (fh[3] != 0x1 || !(fh[4] & 0x4) || stream != w.stream || w.start + H2_FRAME_HEADER + len != end)
		return;
	char c[TP_CONTINUATION_LEN] = {};
	c[2] = TP_HPACK_LEN;
	c[3] = 0x9; /* CONTINUATION */
	c[4] = 0x4; /* END_HEADERS */
	c[5] = fh[5];
	c[6] = fh[6];
	c[7] = fh[7];
	c[8] = fh[8];
	c[9] = 0x00;
	c[10] = 11;
	__builtin_memcpy(c + 11, "traceparent", 11);
	c[22] = TP_VALUE_LEN;
	put_traceparent(c + 23, &w.tp);
	if (bpf_probe_write_user((void *)(buf + end), c, sizeof(c)))
		return;
	__u8 flags = fh[4] & ~0x4;
	if (bpf_probe_write_user((void *)(buf + w.start + 4), &flags, 1))
		return;
	end += TP_CONTINUATION_LEN;
	bpf_probe_write_user((void *)w.fill_addr, &end, sizeof(end));
}

/* RET sites of loopyWriter.writeHeader. */
SEC("uprobe")
int go_grpc_write_header_ret(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct go_offsets *o = bpf_map_lookup_elem(&go_offsets, &tgid);
	if (o)
		finish_header_write(o, ctx, tgid);
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

/* Reports len bytes of plaintext at buf, read or written on the crypto/tls.Conn c, as data of
 * the TCP socket under it (flagged SOCK_FLAG_TLS: the agent decodes these instead of the
 * socket's encrypted bytes). */
static __always_inline void emit_tls(const struct go_offsets *o, __u64 c, __u64 buf, __s64 len, __u8 dir)
{
	if (len <= 0)
		return;
	__u64 sk = sock_of_net_conn(o, c + o->tls_conn_conn);
	if (!sk)
		return;
	struct sock_event *e = new_event(EVENT_SOCK_DATA, dir, bpf_get_current_pid_tgid(), (struct sock *)sk);
	if (!e)
		return;
	e->flags = SOCK_FLAG_TLS;
	e->len = (__u32)len;
	e->captured = copy_plain(e, buf, (__u64)len);
	send_sock_event(e);
}

/* crypto/tls.(*Conn).Write(c, b []byte): the plaintext is all of b (Write writes it all or
 * fails, and a failed write's bytes never reach the peer's application either). */
SEC("uprobe")
int go_tls_write(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct go_offsets *o = bpf_map_lookup_elem(&go_offsets, &tgid);
	if (o)
		emit_tls(o, ctx->ax, ctx->bx, (__s64)ctx->cx, DIR_SEND);
	return 0;
}

/* crypto/tls.(*Conn).Read(c, b []byte) (n int, err error), entry: remember c and b. */
SEC("uprobe")
int go_tls_read(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct go_offsets *o = bpf_map_lookup_elem(&go_offsets, &tgid);
	if (!o)
		return 0;
	struct goroutine_key k = { .tgid = tgid, .goid = goid_of(o, ctx->r14) };
	struct tls_read r = { .conn = ctx->ax, .buf = ctx->bx };
	bpf_map_update_elem(&go_tls_reads, &k, &r, BPF_ANY);
	return 0;
}

/* RET sites of crypto/tls.(*Conn).Read: n plaintext bytes are in the buffer. */
SEC("uprobe")
int go_tls_read_ret(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct go_offsets *o = bpf_map_lookup_elem(&go_offsets, &tgid);
	if (!o)
		return 0;
	struct goroutine_key k = { .tgid = tgid, .goid = goid_of(o, ctx->r14) };
	struct tls_read *r = bpf_map_lookup_elem(&go_tls_reads, &k);
	if (!r)
		return 0;
	struct tls_read saved = *r;
	bpf_map_delete_elem(&go_tls_reads, &k);
	emit_tls(o, saved.conn, saved.buf, (__s64)ctx->ax, DIR_RECV);
	return 0;
}
