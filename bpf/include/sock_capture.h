/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Socket payload capture shared by the hook families. The syscall-level ones (tracepoints,
 * kprobes, fentry) only decide where the syscall's arguments and return value come from, then
 * call save_args() on entry, emit_data() on return and emit_close() on close; the socket
 * family (socket_net.bpf.c) describes each transfer itself and calls emit_transfer() and
 * send_close(). */
#ifndef BEYLA_SOCK_CAPTURE_H
#define BEYLA_SOCK_CAPTURE_H

#include "events.h"
#include "maps/traced_pids.h"
#include "maps/syscall_args.h"
#include "maps/ssl_calls.h"
#include "maps/ssl_socks.h"
#include "maps/ssl_ciphers.h"
#include "maps/tls_conns.h"
#include "maps/events.h"
#include "helpers.h"
#include "sock_emit.h"
#include "h2_walk.h"
#include "goroutine.h"

/* Forces the event types into BTF so the skeleton generates Rust types for them. */
struct sock_event _sock_event = {};
struct process_event _process_event = {};
struct go_event _go_event = {};
/* And the enums, so that the agent reads their values instead of mirroring them. */
enum event_kind _event_kind = EVENT_SOCK_DATA;
enum direction _direction = DIR_RECV;
enum sock_flag _sock_flag = SOCK_FLAG_TLS;

static __always_inline int save_args(int fd, __u64 buf, __u64 count, __u8 kind, __u8 dir)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!pid_traced(id >> 32))
		return 0;
	struct sock *sk = tcp_sock_of_fd(fd);
	if (!sk)
		return 0;
	struct syscall_args a = {
		.buf = buf,
		.count = count,
		.sk = (__u64)sk,
		.start_ns = bpf_ktime_get_ns(),
		.fd = fd,
		.buf_kind = kind,
		.direction = dir,
	};
	args_put(id, &a);
	return 0;
}

/* The event is a write of TLS records an SSL with a memory BIO encrypted earlier (its first
 * bytes are in ssl_ciphers): that SSL's socket is the event's, and its bytes are not worth
 * sending (the SSL's plaintext stands for them). Returns 1 then. */
static __always_inline int ssl_cipher_sent(__u64 id, struct sock_event *e)
{
	if (e->direction != DIR_SEND || e->captured < SSL_CIPHER_HEAD)
		return 0;
	struct cipher_key k = { .tgid = id >> 32 };
	__builtin_memcpy(k.head, e->data, SSL_CIPHER_HEAD);
	__u64 *ssl = bpf_map_lookup_elem(&ssl_ciphers, &k);
	if (!ssl)
		return 0;
	struct ssl_key sk = { .tgid = id >> 32, .ssl = *ssl };
	struct ssl_sock v = { .sk = e->sock_id };
	bpf_map_update_elem(&ssl_socks, &sk, &v, BPF_ANY);
	bpf_map_delete_elem(&ssl_ciphers, &k);
	return 1;
}

/* Sends the data event of `ret` (> 0) bytes moved on socket a->sk by thread `id`, with as
 * much of them as the buffer a describes lets the program copy. */
static __always_inline int emit_transfer(__u64 id, const struct syscall_args *a, long ret, __u8 flags)
{
	struct sock_event *e = new_event(EVENT_SOCK_DATA, a->direction, id, (struct sock *)a->sk);
	if (!e)
		return 0;
	e->flags = flags;
	e->len = (__u32)ret;
	e->start_ns = a->start_ns;
	if (a->direction == DIR_SEND)
		note_writer_goroutine(e);

	__u8 kind = a->buf_kind;
	__u64 iov_ptr = a->buf, iov_cnt = a->count;
	if (kind == BUF_MSGHDR) {
		struct user_msghdr msg = {};
		if (bpf_probe_read_user(&msg, sizeof(msg), (void *)a->buf))
			kind = BUF_NONE;
		iov_ptr = (__u64)msg.msg_iov;
		iov_cnt = msg.msg_iovlen;
	}
	/* An HTTP/2 connection's transfers are copied frame by frame (h2_walk.h). */
	struct h2_walk *w = h2_walk_of(e->sock_id);
	if (!w) {
		__u32 captured = 0;
		if (kind == BUF_PLAIN)
			captured = copy_plain(e, a->buf, ret);
		else if (kind != BUF_NONE)
			captured = copy_iovecs(e, iov_ptr, iov_cnt, ret);
		e->captured = captured;
		if (!flags && ssl_cipher_sent(id, e))
			return 0;
		w = h2_start(e);
	}
	if (w)
		h2_follow(e, w, kind, a->buf, iov_ptr, iov_cnt);
	send_sock_event(e);
	return 0;
}

/* ssl_claim() for a thread in a rustls state (maps/ssl_calls.h): the reads inside
 * DeframerVecBuffer::read are records, which name the socket of the thread's next plaintext
 * read and are not worth sending (returns 1); the thread's first send after Writer::write
 * carries that write's records, and stands for its plaintext, as a write inside an OpenSSL
 * call does (even if it failed: the plaintext is known, and still in the caller's buffer). */
static __always_inline int rustls_claim(__u64 id, struct ssl_call *c, struct syscall_args *a, long *ret,
					__u8 *flags)
{
	if (c->direction == RUSTLS_FILL) {
		c->sk = a->sk;
		return 1;
	}
	if (c->direction != RUSTLS_WRITTEN || a->direction != DIR_SEND)
		return 0;
	a->buf = c->buf;
	a->buf_kind = c->buf_kind;
	a->count = c->buf_kind == BUF_IOVEC ? c->len_out : c->len;
	*ret = c->len;
	*flags = SOCK_FLAG_TLS;
	bpf_map_delete_elem(&ssl_calls, &id);
	return 0;
}

/* Thread `id` moved `*ret` encrypted bytes (or tried to) as `a` describes: if it is inside an
 * OpenSSL call (maps/ssl_calls.h), that call's SSL object is a->sk's, and the bytes are not
 * worth sending (returns 1). But the first transfer that carries a write's bytes out stands for
 * the call's plaintext: `a`, `*ret` and `*flags` are made to describe that instead (returns 0).
 * Sent at its return, it could come after the peer had read it and answered (a server span
 * finished before its client began). */
static __always_inline int ssl_claim(__u64 id, struct syscall_args *a, long *ret, __u8 *flags)
{
	struct ssl_call *c = bpf_map_lookup_elem(&ssl_calls, &id);
	if (!c)
		return 0;
	if (c->direction >= RUSTLS_FILL)
		return rustls_claim(id, c, a, ret, flags);
	c->sk = a->sk;
	if (c->direction != DIR_SEND || a->direction != DIR_SEND || c->emitted || *ret <= 0)
		return 1;
	c->emitted = 1;
	a->buf = c->buf;
	a->count = c->len;
	a->buf_kind = BUF_PLAIN;
	*ret = c->len;
	*flags = SOCK_FLAG_TLS;
	return 0;
}

static __always_inline int emit_data(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct syscall_args a;
	if (!args_take(id, &a))
		return 0;
	__u8 flags = 0;
	if (ssl_claim(id, &a, &ret, &flags) || ret <= 0)
		return 0;
	return emit_transfer(id, &a, ret, flags);
}

/* Sends the close of socket sk by thread `id` of a traced process. */
static __always_inline int send_close(__u64 id, struct sock *sk)
{
	h2_forget((__u64)sk);
	__u64 key = (__u64)sk;
	struct ssl_key *conn = bpf_map_lookup_elem(&tls_conns, &key);
	if (conn) {
		bpf_map_delete_elem(&ssl_socks, conn);
		bpf_map_delete_elem(&tls_conns, &key);
	}
	struct sock_event *e = new_event(EVENT_SOCK_CLOSE, 0, id, sk);
	if (!e)
		return 0;
	if (bpf_ringbuf_output(&events, e, offsetof(struct sock_event, data), ringbuf_flags()))
		count_lost();
	return 0;
}

static __always_inline int emit_close(int fd)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!pid_traced(id >> 32))
		return 0;
	struct sock *sk = tcp_sock_of_fd(fd);
	if (!sk)
		return 0;
	return send_close(id, sk);
}

#endif
