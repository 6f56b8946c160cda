/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* (tgid, first bytes of a TLS record) -> the SSL * that encrypted it, for an SSL whose socket is
 * not known yet: set by the OpenSSL probes at each BIO_write inside one of its calls, matched by
 * the capture family against the first bytes of the process's socket writes
 * (ssl_cipher_sent, sock_capture.h). An SSL with a memory BIO (Node, Python's asyncio)
 * encrypts into memory and the program writes the records to the socket later, outside the
 * call; the records' bytes are the only thing that ties the two, and are unique (ciphertext, or
 * a hello's random). LRU: records a socket BIO sent inside the call are never matched here. */
#ifndef BEYLA_MAP_SSL_CIPHERS_H
#define BEYLA_MAP_SSL_CIPHERS_H

#define SSL_CIPHER_HEAD 16

struct cipher_key {
	__u32 tgid;
	__u8 head[SSL_CIPHER_HEAD];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct cipher_key);
	__type(value, __u64);
} ssl_ciphers SEC(".maps");

#endif
