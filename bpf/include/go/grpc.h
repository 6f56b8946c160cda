// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Go probes, google.golang.org/grpc: servers and clients. */
#ifndef __GO_GRPC_H
#define __GO_GRPC_H

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

/* RET sites of loopyWriter.writeHeader. */
SEC("uprobe")
int go_grpc_whdr_ret(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct go_offsets *o = bpf_map_lookup_elem(&go_offsets, &tgid);
	if (o)
		finish_header_write(o, ctx, tgid);
	return 0;
}

#endif /* __GO_GRPC_H */
