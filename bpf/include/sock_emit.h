/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Builds and sends sock_events: shared by the syscall capture (sock_capture.h) and the Go TLS
 * probes (go.bpf.c), which report the plaintext of crypto/tls reads and writes as data of
 * the underlying socket. */
#ifndef BEYLA_SOCK_EMIT_H
#define BEYLA_SOCK_EMIT_H

#include "events.h"
#include "maps/events.h"
#include "helpers.h"

/* How a transfer's bytes are laid out in the caller's memory. */
enum buf_kind {
	BUF_PLAIN = 0, /* read/write/recvfrom/sendto: buf, len */
	BUF_IOVEC = 1, /* readv/writev: iov, iovcnt */
	BUF_MSGHDR = 2, /* recvmsg/sendmsg: struct user_msghdr * */
	BUF_NONE = 3, /* bytes the program cannot read (sendfile, splice, io_uring): length only */
};

/* A load the compiler cannot replace by a value it kept in a register (see struct iovec_walk). */
#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))

/* Copies up to `want` bytes from user address src to e->data[off..]; returns bytes copied. */
static __always_inline __u32 copy_user(struct sock_event *e, __u32 off, __u64 src, __u64 want)
{
	barrier_var(off);
	if (off >= CAPTURE_MAX)
		return 0;
	/* 64-bit, so that the bounds checked are those of the register the helper gets (a 32-bit
	 * n was checked on a zero-extended copy in some programs, which the verifier rejects). */
	__u64 n = want > CAPTURE_MAX ? CAPTURE_MAX : want;
	__u64 room = CAPTURE_MAX - off;
	if (n > room)
		n = room;
	barrier_var(n);
	if (n == 0 || n > CAPTURE_MAX)
		return 0;
	/* A no-op (off < CAPTURE_MAX, a power of two) that keeps the verifier's bound on off when
	 * it comes from a sum over iovecs; the scratch's spare bytes cover off + n. */
	barrier_var(off);
	__u64 at = off & (CAPTURE_MAX - 1);
	if (bpf_probe_read_user(&e->data[at], n, (void *)src))
		return 0;
	return n;
}

/* The scratch event with its header filled in; payload fields are the caller's. */
static __always_inline struct sock_event *new_event(__u8 kind, __u8 dir, __u64 pid_tgid, struct sock *sk)
{
	__u32 zero = 0;
	struct event_scratch *scratch = bpf_map_lookup_elem(&event_scratch, &zero);
	if (!scratch)
		return 0;
	struct sock_event *e = &scratch->ev;
	e->kind = kind;
	e->direction = dir;
	e->flags = 0;
	e->tail_len = 0;
	e->pid = pid_tgid >> 32;
	e->tid = (__u32)pid_tgid;
	e->len = 0;
	e->captured = 0;
	e->ts_ns = bpf_ktime_get_ns();
	e->start_ns = e->ts_ns;
	e->sock_id = (__u64)sk;
	e->go_server_sock = 0;
	e->go_handler_ns = 0;
	e->go_server_stream = 0;
	read_conn_tuple(sk, &e->conn);
	return e;
}

/* Copies the first CAPTURE_MAX bytes of a plain buffer of len bytes, and its last TAIL_LEN
 * when the copy does not reach its end; returns the bytes copied. */
static __always_inline __u32 copy_plain(struct sock_event *e, __u64 buf, __u64 len)
{
	__u32 captured = copy_user(e, 0, buf, len);
	if (len > captured && len >= TAIL_LEN && !bpf_probe_read_user(e->tail, TAIL_LEN, (void *)(buf + len - TAIL_LEN)))
		e->tail_len = TAIL_LEN;
	return captured;
}

/* iovecs walked per vectored transfer (writev, sendmsg, readv, recvmsg) for its payload, copied
 * in order, and for its tail. Real servers write a message in pieces: nginx a chunked response
 * as head, chunk size, data, CRLF and last chunk, and its HTTP/2 frames as a header and a
 * payload each (the first response's header block is the fifth piece); grpcio a gRPC request
 * in 22 pieces; libuv headers apart from the body. A walk costs the verifier a fixed amount per
 * iovec (about 480 instructions; see struct iovec_walk). */
#define MAX_IOVECS 64

/* Copies n (<= TAIL_LEN - off) bytes from user address src to e->tail[off..]; 1 on success. */
static __always_inline int copy_tail(struct sock_event *e, __u32 off, __u64 src, __u64 n)
{
	off &= TAIL_LEN - 1;
	if (n == 0 || n > TAIL_LEN - off)
		return 0;
	barrier_var(n);
	if (n > TAIL_LEN)
		return 0;
	return !bpf_probe_read_user(&e->tail[off], n, (void *)src);
}

/* The scratch's iovec walk state (see struct iovec_walk). */
static __always_inline struct iovec_walk *iovec_walk(void)
{
	__u32 zero = 0;
	struct event_scratch *scratch = bpf_map_lookup_elem(&event_scratch, &zero);
	return scratch ? &scratch->walk : 0;
}

/* Fills e->tail with the last TAIL_LEN of the w->len bytes a vectored transfer moved through
 * its iovecs (they may span iovecs), unless its end lies past MAX_IOVECS iovecs or cannot be
 * read. */
static __always_inline void copy_iovec_tail(struct sock_event *e, struct iovec_walk *w)
{
	w->pos = 0;
	for (int i = 0; i < MAX_IOVECS; i++) {
		__u64 pos = READ_ONCE(w->pos), len = READ_ONCE(w->len);
		if (i >= READ_ONCE(w->iov_cnt) || pos >= len)
			break;
		struct iovec iov;
		if (bpf_probe_read_user(&iov, sizeof(iov), (void *)(READ_ONCE(w->iov_ptr) + i * sizeof(iov))))
			return;
		__u64 n = iov.iov_len < len - pos ? iov.iov_len : len - pos;
		__u64 tail_from = len - TAIL_LEN;
		if (n && pos + n > tail_from) {
			__u64 start = pos > tail_from ? pos : tail_from;
			if (!copy_tail(e, start - tail_from, (__u64)iov.iov_base + (start - pos), pos + n - start))
				return;
		}
		w->pos = pos + n;
	}
	if (w->pos >= w->len)
		e->tail_len = TAIL_LEN;
}

/* Copies the first CAPTURE_MAX of the len bytes a vectored transfer moved through the iov_cnt
 * iovecs at iov_ptr, in order across them (up to MAX_IOVECS, and up to an unreadable one), and
 * its tail when the copy does not reach its end; returns the bytes copied. */
static __always_inline __u32 copy_iovecs(struct sock_event *e, __u64 iov_ptr, __u64 iov_cnt, __u64 len)
{
	struct iovec_walk *w = iovec_walk();
	if (!w)
		return 0;
	w->iov_ptr = iov_ptr;
	w->iov_cnt = iov_cnt;
	w->len = len;
	w->pos = 0;
	w->captured = 0;
	for (int i = 0; i < MAX_IOVECS; i++) {
		__u64 captured = READ_ONCE(w->captured), pos = READ_ONCE(w->pos), len = READ_ONCE(w->len);
		if (i >= READ_ONCE(w->iov_cnt) || pos >= len || captured >= CAPTURE_MAX)
			break;
		struct iovec iov;
		if (bpf_probe_read_user(&iov, sizeof(iov), (void *)(READ_ONCE(w->iov_ptr) + i * sizeof(iov))))
			break;
		__u64 left = len - pos;
		__u64 want = iov.iov_len < left ? iov.iov_len : left;
		__u32 got = copy_user(e, captured, (__u64)iov.iov_base, want);
		w->captured = captured + got;
		w->pos = pos + want;
		if (got < want)
			break;
	}
	__u64 captured = READ_ONCE(w->captured);
	if (captured > CAPTURE_MAX)
		return 0;
	if (READ_ONCE(w->len) > captured && READ_ONCE(w->len) >= TAIL_LEN)
		copy_iovec_tail(e, w);
	return captured;
}

/* Sends the event with its e->captured bytes of payload. */
static __always_inline void send_sock_event(struct sock_event *e)
{
	__u64 size = offsetof(struct sock_event, data) + e->captured;
	barrier_var(size);
	if (size > sizeof(*e))
		return;
	if (bpf_ringbuf_output(&events, e, size, ringbuf_flags()))
		count_lost();
}

#endif
