/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The socket family's mark on each socket it captured, in the socket's own storage (freed with
 * the socket): whose it is, so that its end is reported for that process whatever context the
 * kernel ends it in, and only for captured sockets. */
#ifndef BEYLA_MAP_TRACED_SOCKS_H
#define BEYLA_MAP_TRACED_SOCKS_H

struct sock_mark {
	__u64 pid_tgid; /* the thread whose transfer first captured the socket */
	__u32 ended;    /* the end came inside the owner's own transfer: report it after that */
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sock_mark);
} traced_socks SEC(".maps");

#endif
