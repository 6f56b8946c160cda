/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Sends TLS plaintext as data of its TCP socket: shared by the probes on TLS libraries
 * (openssl.bpf.c, rustls.bpf.c), whose plaintext the agent decodes instead of the socket's
 * encrypted bytes (SOCK_FLAG_TLS). */
#ifndef BEYLA_TLS_PLAINTEXT_H
#define BEYLA_TLS_PLAINTEXT_H

#include "events.h"
#include "sock_emit.h"
#include "h2_walk.h"

/* Reports `len` bytes of plaintext at buf as data of socket sk, copied as the capture copies
 * a plain buffer (an HTTP/2 connection's frames followed across transfers, h2_walk.h). */
static __always_inline void emit_plaintext(__u64 id, __u64 sk, __u64 buf, __u64 len, __u8 dir)
{
	struct sock_event *e = new_event(EVENT_SOCK_DATA, dir, id, (struct sock *)sk);
	if (!e)
		return;
	e->flags = SOCK_FLAG_TLS;
	e->len = (__u32)len;
	struct h2_walk *w = h2_walk_of(sk);
	if (!w) {
		e->captured = copy_plain(e, buf, len);
		w = h2_start(e);
	}
	if (w)
		h2_follow(e, w, BUF_PLAIN, buf, 0, 0);
	send_sock_event(e);
}

#endif
