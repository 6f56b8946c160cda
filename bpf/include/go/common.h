// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Go probes, shared: the per-process struct offsets, the request each goroutine serves and
 * how it is inherited (goroutine.h, shared with the socket capture), the events sent to the
 * agent. */
#ifndef __GO_COMMON_H
#define __GO_COMMON_H

#include "goroutine.h"

/* Forces the type into BTF so the skeleton generates a Rust type for the agent to fill. */
struct go_offsets _go_offsets = {};

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
		.ts_ns = kind == EVENT_GO_HANDLER_START && req ? req->handler_ns : bpf_ktime_get_ns(),
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
	struct go_request r = *req;
	r.handler_ns = bpf_ktime_get_ns();
	bpf_map_update_elem(&go_serving, &k, &r, BPF_ANY);
	emit_go(EVENT_GO_HANDLER_START, k.goid, &r, 0, 0, tp);
}

#endif /* __GO_COMMON_H */
