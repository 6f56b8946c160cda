// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Go probes, crypto/tls: plaintext of Conn.Read and Conn.Write as the socket's data. */
#ifndef __GO_TLS_H
#define __GO_TLS_H

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

/* Reports len bytes of plaintext at buf, read or written on the crypto/tls.Conn c by goroutine
 * g, as data of the TCP socket under it (flagged SOCK_FLAG_TLS: the agent decodes these
 * instead of the socket's encrypted bytes). */
static __always_inline void emit_tls(const struct go_offsets *o, __u64 g, __u64 c, __u64 buf, __s64 len, __u8 dir)
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
	if (dir == DIR_SEND)
		note_goroutine(e, o, g);
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
		emit_tls(o, ctx->r14, ctx->ax, ctx->bx, (__s64)ctx->cx, DIR_SEND);
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
	emit_tls(o, ctx->r14, saved.conn, saved.buf, (__s64)ctx->ax, DIR_RECV);
	return 0;
}

#endif /* __GO_TLS_H */
