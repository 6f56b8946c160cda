/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Ring buffer of socket events, with wake-ups batched by the wakeup_len knob. */
#ifndef BEYLA_MAP_EVENTS_H
#define BEYLA_MAP_EVENTS_H

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22); /* ebpf.ring_buffer_size, set at load */
} events SEC(".maps");

/* Events submitted since the last forced wake-up, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} pending_wakeup SEC(".maps");

/* Scratch space to build one sock_event (too large for the 512-byte BPF stack). The spare
 * bytes after it let the verifier accept a copy of up to CAPTURE_MAX bytes at any offset
 * below CAPTURE_MAX; what is sent never goes past the event. */
/* A vectored transfer's walk over its iovecs (sock_emit.h: copy_iovecs), kept in map memory
 * and read with READ_ONCE: the verifier does not track values there, so every way through one
 * iteration reaches the next, and the code after the loop, in the same state, and is verified
 * once (64 iovecs: 31k instructions). Kept in registers, each combination of earlier branches
 * was a state of its own (4 iovecs: 177k; 6 exceeded the verifier's million). */
struct iovec_walk {
	__u64 iov_ptr;
	__u64 iov_cnt;
	__u64 len;
	__u64 pos;      /* bytes of the transfer in the iovecs walked so far */
	__u64 captured; /* bytes copied so far */
};

/* Where one direction of a followed HTTP/2 connection stands between its transfers (map
 * h2_walks, h2_walk.h). */
struct h2_dir_walk {
	__u32 left;   /* bytes of the current frame's payload (or of the preface) still to come */
	__u8 copy;    /* 1: they are copied (every frame but DATA); 0: skipped */
	__u8 hdr_have; /* bytes of the next frame header read so far (they end the last transfer) */
	__u8 _pad[2];
	__u8 hdr[24]; /* those bytes (9 used; 24 so that any read at hdr[have & 15] is in bounds) */
};

/* An HTTP/2 frame walk's place in one transfer (h2_walk.h), kept like struct iovec_walk. */
struct h2_cursor {
	__u64 iov_ptr;  /* the iovecs; 0: a plain buffer, the one piece at seg_base */
	__u64 iov_cnt;
	__u64 iov_next; /* the next iovec to read */
	__u64 seg_base; /* user address of the current piece's bytes not walked yet */
	__u64 seg_left; /* their count */
	__u64 len;      /* bytes the transfer moved */
	__u64 pos;      /* of them, walked */
	__u64 out;      /* bytes copied to the event */
	struct h2_dir_walk d; /* the direction's place, copied from h2_walks and back */
};

struct event_scratch {
	struct iovec_walk walk;
	struct h2_cursor h2;
	struct sock_event ev;
	__u8 spare[CAPTURE_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct event_scratch);
} event_scratch SEC(".maps");

/* Events the ring buffer had no room for, per CPU (the agent sums them). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} events_lost SEC(".maps");

#endif
