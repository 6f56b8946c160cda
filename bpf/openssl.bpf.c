// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Hook family "openssl": uprobes on OpenSSL's SSL_read, SSL_write and their _ex forms (libssl
 * 1.1 and 3.x, shared or linked into the executable), which report the plaintext of a TLS
 * connection as data of its TCP socket, flagged SOCK_FLAG_TLS: the agent decodes it instead
 * of the encrypted bytes. SSL_do_handshake, SSL_free and BIO_write help name the socket.
 *
 * The SSL object is tied to its socket by what the capture family sees inside the call: the
 * call is entered in ssl_calls at its entry, and the read or write of encrypted bytes that the
 * same thread makes before the call returns names the socket (ssl_claim, maps/ssl_calls.h).
 * That holds for every SSL whose BIO does its I/O inside the call (socket and fd BIOs, libpq's
 * and the PostgreSQL server's own). One with a memory BIO (Node's TLS, Python's asyncio, puma)
 * moves its encrypted bytes later, outside the call: its socket is named by its records' first
 * bytes instead (ssl_bio_write below, ssl_cipher_sent in sock_capture.h). A call that
 * moves no encrypted bytes (a read served from OpenSSL's buffer) uses the socket an earlier
 * call of the same SSL named (ssl_socks).
 *
 * A read's plaintext is sent at its return, when it is in the buffer. A write's is sent by the
 * capture family when the call's first encrypted bytes go out (ssl_claim, sock_capture.h),
 * before the peer can read them; here only when the call sent nothing itself. A write that
 * fails after that (non-blocking: SSL_ERROR_WANT_WRITE) is retried by the application with the
 * same bytes, which are not sent twice (write_retry).
 *
 * Attached per process by the agent (agent/src/attach/openssl.rs); C functions, so returns
 * are uretprobes. Program names are ssl_<what>, unique within the kernel's 15 characters. */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "events.h"
#include "maps/events.h"
#include "maps/traced_pids.h"
#include "maps/ssl_calls.h"
#include "maps/ssl_socks.h"
#include "maps/ssl_ciphers.h"
#include "helpers.h"
#include "tls_plaintext.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

enum ssl_stat {
	SSL_STAT_UNLINKED = 0, /* plaintext transfers of an SSL no socket was seen for */
	SSL_STAT_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SSL_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} ssl_stats SEC(".maps");

static __always_inline void enter(__u64 ssl, __u64 buf, __u64 len, __u64 len_out, __u8 dir)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!pid_traced(id >> 32))
		return;
	struct ssl_call c = { .ssl = ssl, .buf = buf, .len = len, .len_out = len_out, .direction = dir };
	if (dir == DIR_SEND) {
		struct ssl_key k = { .tgid = id >> 32, .ssl = ssl };
		struct ssl_sock *known = bpf_map_lookup_elem(&ssl_socks, &k);
		if (known && known->write_retry) {
			known->write_retry = 0;
			c.emitted = 1;
		}
	}
	bpf_map_update_elem(&ssl_calls, &id, &c, BPF_ANY);
}

/* The return of a call entered by enter(): ret is SSL_read/SSL_write's byte count, or the _ex
 * forms' 1 (success) with the count at len_out. */
static __always_inline void leave(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct ssl_call *p = bpf_map_lookup_elem(&ssl_calls, &id);
	if (!p)
		return;
	struct ssl_call c = *p;
	bpf_map_delete_elem(&ssl_calls, &id);

	struct ssl_key k = { .tgid = id >> 32, .ssl = c.ssl };
	__u64 sk = c.sk;
	if (sk) {
		/* A failed write whose plaintext went out is retried with the same bytes. */
		struct ssl_sock v = { .sk = sk, .write_retry = c.emitted && ret <= 0 };
		bpf_map_update_elem(&ssl_socks, &k, &v, BPF_ANY);
	} else {
		struct ssl_sock *known = bpf_map_lookup_elem(&ssl_socks, &k);
		sk = known ? known->sk : 0;
		if (known && c.emitted && ret <= 0)
			known->write_retry = 1;
	}
	if (c.emitted || c.direction == SSL_CALL_HANDSHAKE)
		return;

	__u64 len = 0;
	if (c.len_out) {
		if (ret == 1 && bpf_probe_read_user(&len, sizeof(len), (void *)c.len_out))
			len = 0;
	} else if (ret > 0) {
		len = ret;
	}
	if (len == 0)
		return;
	if (!sk) {
		__u32 stat = SSL_STAT_UNLINKED;
		__u64 *n = bpf_map_lookup_elem(&ssl_stats, &stat);
		if (n)
			*n += 1;
		return;
	}
	emit_plaintext(id, sk, c.buf, len, c.direction);
}

/* int SSL_write(SSL *ssl, const void *buf, int num) */
SEC("uprobe")
int BPF_UPROBE(ssl_write, void *ssl, const void *buf, int num)
{
	enter((__u64)ssl, (__u64)buf, num > 0 ? (__u64)num : 0, 0, DIR_SEND);
	return 0;
}

/* int SSL_write_ex(SSL *ssl, const void *buf, size_t num, size_t *written) */
SEC("uprobe")
int BPF_UPROBE(ssl_write_ex, void *ssl, const void *buf, size_t num, size_t *written)
{
	enter((__u64)ssl, (__u64)buf, num, (__u64)written, DIR_SEND);
	return 0;
}

/* int SSL_read(SSL *ssl, void *buf, int num) */
SEC("uprobe")
int BPF_UPROBE(ssl_read, void *ssl, void *buf)
{
	enter((__u64)ssl, (__u64)buf, 0, 0, DIR_RECV);
	return 0;
}

/* int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes) */
SEC("uprobe")
int BPF_UPROBE(ssl_read_ex, void *ssl, void *buf, size_t num, size_t *readbytes)
{
	enter((__u64)ssl, (__u64)buf, 0, (__u64)readbytes, DIR_RECV);
	return 0;
}

/* The return of any of the four: all return an int, whose sign is in the low 32 bits. */
SEC("uretprobe")
int BPF_URETPROBE(ssl_ret, long ret)
{
	leave((long)(int)ret);
	return 0;
}

/* int SSL_do_handshake(SSL *s) (SSL_connect and SSL_accept call it): a call without plaintext,
 * whose encrypted bytes name the SSL's socket before any request goes through it. */
SEC("uprobe")
int BPF_UPROBE(ssl_handshake, void *ssl)
{
	enter((__u64)ssl, 0, 0, 0, SSL_CALL_HANDSHAKE);
	return 0;
}

/* int BIO_write(BIO *b, const void *data, int dlen), inside an OpenSSL call of an SSL whose
 * socket is not known: the record's first bytes are kept, for the capture to recognise when a
 * memory BIO's owner writes them to the socket (maps/ssl_ciphers.h). */
SEC("uprobe")
int BPF_UPROBE(ssl_bio_write, void *bio, const void *data, int dlen)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct ssl_call *c = bpf_map_lookup_elem(&ssl_calls, &id);
	if (!c || c->sk || dlen < SSL_CIPHER_HEAD)
		return 0;
	struct ssl_key k = { .tgid = id >> 32, .ssl = c->ssl };
	if (bpf_map_lookup_elem(&ssl_socks, &k))
		return 0;
	struct cipher_key ck = { .tgid = id >> 32 };
	if (bpf_probe_read_user(ck.head, SSL_CIPHER_HEAD, data))
		return 0;
	__u64 ssl = c->ssl;
	bpf_map_update_elem(&ssl_ciphers, &ck, &ssl, BPF_ANY);
	return 0;
}

/* void SSL_free(SSL *ssl): its address may be the next connection's. */
SEC("uprobe")
int BPF_UPROBE(ssl_free, void *ssl)
{
	struct ssl_key k = { .tgid = bpf_get_current_pid_tgid() >> 32, .ssl = (__u64)ssl };
	bpf_map_delete_elem(&ssl_socks, &k);
	return 0;
}
