/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Builds and sends sock_events: shared by the syscall capture (sock_capture.h) and the Go TLS
 * probes (go.bpf.c), which report the plaintext of crypto/tls reads and writes as data of
 * the underlying socket. */
#ifndef BEYLA_SOCK_EMIT_H
#define BEYLA_SOCK_EMIT_H

#include "events.h"
#include "maps/events.h"
#include "helpers.h"

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
 * as head, chunk size, data, CRLF and last chunk, and its HTTP/2 frames as SETTINGS, WINDOW_UPDATE,
 * SETTINGS ack, HEADERS frame header and header block (five iovecs before the first request's
 * headers); grpcio a frame header apart from its payload; libuv headers apart from the body. */
#define MAX_IOVECS 16

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

/* Fills e->tail with the last TAIL_LEN of the len bytes a vectored transfer moved through the
 * iov_cnt iovecs at iov_ptr (they may span iovecs), unless its end lies past MAX_IOVECS
 * iovecs or cannot be read. A loop of its own, whose two ways through (an iovec in the tail or
 * not) leave the same state, so the verifier's work stays linear in MAX_IOVECS. */
static __always_inline void copy_iovec_tail(struct sock_event *e, __u64 iov_ptr, __u64 iov_cnt, __u64 len)
{
	__u64 pos = 0; /* bytes of the transfer in the iovecs before this one */
	__u64 tail_from = len - TAIL_LEN;
	for (int i = 0; i < MAX_IOVECS; i++) {
		if (i >= iov_cnt || pos >= len)
			break;
		struct iovec iov;
		if (bpf_probe_read_user(&iov, sizeof(iov), (void *)(iov_ptr + i * sizeof(iov))))
			return;
		__u64 n = iov.iov_len < len - pos ? iov.iov_len : len - pos;
		if (n && pos + n > tail_from) {
			__u64 start = pos > tail_from ? pos : tail_from;
			if (!copy_tail(e, start - tail_from, (__u64)iov.iov_base + (start - pos), pos + n - start))
				return;
		}
		pos += n;
	}
	if (pos >= len)
		e->tail_len = TAIL_LEN;
}

/* Copies the first CAPTURE_MAX of the len bytes a vectored transfer moved through the iov_cnt
 * iovecs at iov_ptr, in order across them (up to MAX_IOVECS, and up to an unreadable one), and
 * its tail when the copy does not reach its end; returns the bytes copied.
 * The running counts live in the event (map memory), not in registers: the verifier does not
 * track values in map memory, so every way through an iteration reaches the next one in the same
 * state and is pruned there. Kept in registers, each combination of earlier branches was a state
 * of its own (4 iovecs loaded; 6 exceeded the verifier's million instructions). */
static __always_inline __u32 copy_iovecs(struct sock_event *e, __u64 iov_ptr, __u64 iov_cnt, __u64 len)
{
	e->captured = 0;
	e->walk_left = len;
	for (int i = 0; i < MAX_IOVECS; i++) {
		__u32 captured = e->captured;
		__u32 left = e->walk_left;
		if (i >= iov_cnt || left == 0 || captured >= CAPTURE_MAX)
			break;
		struct iovec iov;
		if (bpf_probe_read_user(&iov, sizeof(iov), (void *)(iov_ptr + i * sizeof(iov))))
			break;
		__u64 want = iov.iov_len < left ? iov.iov_len : left;
		__u32 got = copy_user(e, captured, (__u64)iov.iov_base, want);
		e->captured = captured + got;
		e->walk_left = left - want;
		if (got < want)
			break;
	}
	__u32 captured = e->captured;
	e->walk_left = 0;
	if (len > captured && len >= TAIL_LEN)
		copy_iovec_tail(e, iov_ptr, iov_cnt, len);
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
