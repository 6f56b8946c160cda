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
	if (bpf_probe_read_user(&e->data[off], n, (void *)src))
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
