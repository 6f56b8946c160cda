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

/* (tgid, goid) -> the server connection (struct sock) whose request the goroutine serves:
 * set when net/http reads a request on it, inherited by the goroutines it starts. LRU:
 * goroutines end without a probe telling us. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct goroutine_key);
	__type(value, __u64);
} go_serving SEC(".maps");

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

static __always_inline __u64 serving_sock(__u32 tgid, __u64 goid)
{
	struct goroutine_key k = { .tgid = tgid, .goid = goid };
	__u64 *sk = bpf_map_lookup_elem(&go_serving, &k);
	return sk ? *sk : 0;
}

/* What the goroutine g serves, or failing that (go1.21+, which records it) its creator. */
static __always_inline __u64 serving_sock_of(const struct go_offsets *o, __u32 tgid, __u64 g, __u64 goid)
{
	__u64 sk = serving_sock(tgid, goid);
	if (sk || !o->g_parent_goid || !g)
		return sk;
	__u64 parent = 0;
	if (bpf_probe_read_user(&parent, sizeof(parent), (void *)(g + o->g_parent_goid)) || !parent)
		return 0;
	return serving_sock(tgid, parent);
}

/* Sends a go_event of `kind` for the current goroutine; 0 when it serves nothing. */
static __always_inline void emit_go(__u8 kind, const struct go_offsets *o, struct pt_regs *ctx, __u64 client_sock,
				    __u32 stream)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct go_event e = {
		.kind = kind,
		.pid = id >> 32,
		.stream = stream,
		.goid = goid_of(o, ctx->r14),
		.client_sock = client_sock,
		.ts_ns = bpf_ktime_get_ns(),
	};
	e.server_sock = serving_sock_of(o, e.pid, ctx->r14, e.goid);
	if (kind != EVENT_GO_CLIENT && !e.server_sock)
		return;
	if (client_sock)
		read_conn_tuple((struct sock *)client_sock, &e.conn);
	if (bpf_ringbuf_output(&events, &e, sizeof(e), ringbuf_flags()))
		count_lost();
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
	__u64 sk = sock_of_conn(o, conn + o->http_conn_rwc);
	if (!sk)
		return 0;
	struct goroutine_key k = { .tgid = tgid, .goid = goid_of(o, ctx->r14) };
	bpf_map_update_elem(&go_serving, &k, &sk, BPF_ANY);
	emit_go(EVENT_GO_HANDLER_START, o, ctx, 0, 0);
	return 0;
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
	__u64 serving = serving_sock(tgid, goid_of(o, curg));
	if (!serving)
		return 0;
	struct goroutine_key k = { .tgid = tgid, .goid = goid_of(o, ctx->ax) };
	if (k.goid)
		bpf_map_update_elem(&go_serving, &k, &serving, BPF_ANY);
	return 0;
}

/* net/http.(*persistConn).roundTrip(pc, req): an HTTP/1.x client request goes out on pc.conn
 * (written by the connection's writeLoop goroutine, after this). */
SEC("uprobe")
int go_http_client(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct go_offsets *o = bpf_map_lookup_elem(&go_offsets, &tgid);
	if (!o)
		return 0;
	__u64 sk = sock_of_conn(o, ctx->ax + o->persist_conn_conn);
	if (sk)
		emit_go(EVENT_GO_CLIENT, o, ctx, sk, 0);
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
	if (sk)
		emit_go(EVENT_GO_CLIENT, o, ctx, sk, stream);
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
