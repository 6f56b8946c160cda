/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The frames of an HTTP/2 connection, followed across its transfers. One event copies the
 * first CAPTURE_MAX bytes of a transfer: enough for an HTTP/1.x head, but a write of HTTP/2
 * frames holds a 16 KiB DATA frame as easily as a header block, and what follows it (another
 * stream's HEADERS, the END_STREAM of a response) would be lost, with the HPACK state that
 * decodes every later header block. So on a connection that began with the client preface
 * the program walks the frames itself, keeping its place per direction between transfers
 * (map h2_walks), and copies every frame except DATA payloads: the event's data is the
 * connection's byte stream without them (SOCK_FLAG_H2_FRAMES). A walk that cannot follow a
 * transfer (bytes it cannot read, more than H2_WALK_STEPS pieces, more than CAPTURE_MAX bytes
 * to copy) says so (SOCK_FLAG_H2_LOST) and stops following the connection. */
#ifndef BEYLA_H2_WALK_H
#define BEYLA_H2_WALK_H

#include "events.h"
#include "maps/events.h"
#include "maps/h2_walks.h"
#include "sock_emit.h"

/* Steps per transfer: one per frame mostly (its header, and the rest of the previous frame's
 * payload in the same piece), plus one per iovec. */
#define H2_WALK_STEPS 256
#define H2_FRAME_DATA 0

static const char h2_preface[24] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* The walk's cursor in the scratch map (read with READ_ONCE, as struct iovec_walk). */
static __always_inline struct h2_cursor *h2_cursor(void)
{
	__u32 zero = 0;
	struct event_scratch *scratch = bpf_map_lookup_elem(&event_scratch, &zero);
	return scratch ? &scratch->h2 : 0;
}

/* Appends n bytes at user address src to the event; 0 if they do not fit or cannot be read. */
static __always_inline int h2_out(struct sock_event *e, struct h2_cursor *c, __u64 src, __u64 n)
{
	__u64 out = READ_ONCE(c->out);
	if (out >= CAPTURE_MAX || n > CAPTURE_MAX - out)
		return 0;
	if (copy_user(e, out, src, n) != n)
		return 0;
	c->out = out + n;
	return 1;
}

/* One step of the walk of a transfer (c->len bytes, in the direction whose place is c->d):
 * the next iovec, or what the current piece holds of the current frame's payload and of the
 * next frame's header. 0: more to walk; 1: walked to the end; -1: lost. */
static __always_inline int h2_step(struct sock_event *e, struct h2_cursor *c)
{
	struct h2_dir_walk *d = &c->d;
	__u64 pos = READ_ONCE(c->pos), len = READ_ONCE(c->len);
	if (pos >= len)
		return 1;
	__u64 seg = READ_ONCE(c->seg_left);
	if (seg == 0) {
		/* The next iovec (a plain buffer is one piece, set up front). */
		__u64 k = READ_ONCE(c->iov_next);
		if (!READ_ONCE(c->iov_ptr) || k >= READ_ONCE(c->iov_cnt) || k >= MAX_IOVECS)
			return -1;
		struct iovec iov;
		if (bpf_probe_read_user(&iov, sizeof(iov), (void *)(READ_ONCE(c->iov_ptr) + k * sizeof(iov))))
			return -1;
		c->iov_next = k + 1;
		c->seg_base = (__u64)iov.iov_base;
		c->seg_left = iov.iov_len < len - pos ? iov.iov_len : len - pos;
		return 0;
	}
	__u64 base = READ_ONCE(c->seg_base);
	/* The rest of the current frame's payload, or as much of it as this piece holds. */
	__u64 left = READ_ONCE(d->left);
	__u64 n = left < seg ? left : seg;
	if (n && READ_ONCE(d->copy) && !h2_out(e, c, base, n))
		return -1;
	d->left = left - n;
	base += n;
	seg -= n;
	pos += n;
	/* Then the next frame header, or as much of it as this piece holds. */
	if (seg && left == n) {
		__u64 have = READ_ONCE(d->hdr_have);
		if (have > 8)
			return -1;
		__u64 m = 9 - have < seg ? 9 - have : seg;
		barrier_var(m);
		if (m == 0 || m > 9)
			return -1;
		if (bpf_probe_read_user(&d->hdr[have & 15], m, (void *)base))
			return -1;
		if (!h2_out(e, c, base, m))
			return -1;
		have += m;
		if (have == 9) {
			d->left = ((__u32)d->hdr[0] << 16) | ((__u32)d->hdr[1] << 8) | d->hdr[2];
			d->copy = d->hdr[3] != H2_FRAME_DATA;
			have = 0;
		}
		d->hdr_have = have;
		base += m;
		seg -= m;
		pos += m;
	}
	c->pos = pos;
	c->seg_base = base;
	c->seg_left = seg;
	return 0;
}

/* h2_step on the scratch's event and cursor. A global function: the verifier checks it once,
 * on its own, and each call only against its signature, so a walk of H2_WALK_STEPS steps
 * costs it one step's instructions (inlined, 256 steps took 250k instructions per program
 * and 14 s to load the tracepoint family). */
__attribute__((noinline)) int h2_walk_step(void)
{
	__u32 zero = 0;
	struct event_scratch *scratch = bpf_map_lookup_elem(&event_scratch, &zero);
	if (!scratch)
		return -1;
	return h2_step(&scratch->ev, &scratch->h2);
}

/* Walks one transfer from where the last one in its direction ended: 0 when it reached the
 * end, -1 when it lost its place. */
static __always_inline int h2_walk_transfer(void)
{
	for (int i = 0; i < H2_WALK_STEPS; i++) {
		int r = h2_walk_step();
		if (r)
			return r > 0 ? 0 : -1;
	}
	return -1;
}

/* Whether the event's copy starts with the client preface. */
static __always_inline int starts_with_preface(struct sock_event *e)
{
	if (e->captured < sizeof(h2_preface))
		return 0;
	for (int i = 0; i < sizeof(h2_preface); i++)
		if (e->data[i] != h2_preface[i])
			return 0;
	return 1;
}

/* Refills the event with the frames of its transfer (of e->len bytes: a plain buffer at buf,
 * or iov_cnt iovecs at iov_ptr) on a followed connection. */
static __always_inline void h2_capture(struct sock_event *e, struct h2_walk *w, __u64 buf, __u64 iov_ptr,
				       __u64 iov_cnt)
{
	struct h2_cursor *c = h2_cursor();
	if (!c)
		return;
	c->iov_ptr = iov_ptr;
	c->iov_cnt = iov_cnt;
	c->iov_next = 0;
	c->seg_base = buf;
	c->seg_left = iov_ptr ? 0 : e->len;
	c->len = e->len;
	c->pos = 0;
	c->out = 0;
	e->tail_len = 0;
	struct h2_dir_walk *d = &w->dir[e->direction & 1];
	c->d = *d;
	int lost = h2_walk_transfer() < 0;
	*d = c->d;
	if (lost) {
		e->flags |= SOCK_FLAG_H2_LOST;
		__u64 sk = e->sock_id;
		bpf_map_delete_elem(&h2_walks, &sk);
	} else {
		e->flags |= SOCK_FLAG_H2_FRAMES;
	}
	__u64 out = READ_ONCE(c->out);
	e->captured = out > CAPTURE_MAX ? 0 : out;
}

/* The walk of a followed connection, or 0. */
static __always_inline struct h2_walk *h2_walk_of(__u64 sk)
{
	return bpf_map_lookup_elem(&h2_walks, &sk);
}

/* Follows the connection if the event's transfer (copied the usual way) starts with the client
 * preface: the preface is copied as it is, and both directions' frames start after it. */
static __always_inline struct h2_walk *h2_start(struct sock_event *e)
{
	if (!starts_with_preface(e))
		return 0;
	__u64 sk = e->sock_id;
	struct h2_walk init = {};
	init.dir[e->direction & 1].left = sizeof(h2_preface);
	init.dir[e->direction & 1].copy = 1;
	bpf_map_update_elem(&h2_walks, &sk, &init, BPF_ANY);
	return bpf_map_lookup_elem(&h2_walks, &sk);
}

/* Fills the event of a transfer on a followed connection with its frames: buf_kind and buf as
 * struct syscall_args has them, with a msghdr's iovecs at iov_ptr. */
static __always_inline void h2_follow(struct sock_event *e, struct h2_walk *w, __u8 buf_kind, __u64 buf,
				      __u64 iov_ptr, __u64 iov_cnt)
{
	if (buf_kind == BUF_NONE) {
		e->captured = 0;
		e->flags |= SOCK_FLAG_H2_LOST;
		__u64 sk = e->sock_id;
		bpf_map_delete_elem(&h2_walks, &sk);
		return;
	}
	h2_capture(e, w, buf_kind == BUF_PLAIN ? buf : 0, buf_kind == BUF_PLAIN ? 0 : iov_ptr, iov_cnt);
}

/* A followed connection ends. */
static __always_inline void h2_forget(__u64 sk)
{
	bpf_map_delete_elem(&h2_walks, &sk);
}

#endif
