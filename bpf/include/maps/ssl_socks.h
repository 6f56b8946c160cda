/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* (tgid, SSL *) -> the TCP socket an OpenSSL connection's encrypted bytes go through: named by
 * the capture family, from a transfer inside one of its calls (ssl_claim) or from its
 * ciphertext leaving a memory BIO (ssl_cipher_sent, both sock_capture.h); read by the OpenSSL
 * probes for the calls that move nothing themselves. Removed at SSL_free (its address is
 * reused for the next connection); LRU for a process that never frees. Created by the capture
 * family, shared with the OpenSSL probes. */
#ifndef BEYLA_MAP_SSL_SOCKS_H
#define BEYLA_MAP_SSL_SOCKS_H

struct ssl_key {
	__u32 tgid;
	__u32 _pad;
	__u64 ssl;
};

struct ssl_sock {
	__u64 sk;          /* struct sock * */
	__u8 write_retry;  /* its last write failed after its plaintext was sent */
	__u8 _pad[7];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ssl_key);
	__type(value, struct ssl_sock);
} ssl_socks SEC(".maps");

#endif
