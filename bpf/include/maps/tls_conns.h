/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* struct sock * -> the (tgid, connection) ssl_socks names it for, for the rustls probes'
 * connections (rustls.bpf.c), whose end they cannot see: the capture family forgets that
 * ssl_socks entry when the socket closes (send_close, sock_capture.h), before the connection's
 * memory can hold the next one, which would otherwise inherit the closed socket. LRU: a close
 * the capture missed. Created by the capture family, shared with the rustls probes. */
#ifndef BEYLA_MAP_TLS_CONNS_H
#define BEYLA_MAP_TLS_CONNS_H

#include "maps/ssl_socks.h"

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct ssl_key);
} tls_conns SEC(".maps");

#endif
