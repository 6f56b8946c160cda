/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* pid_tgid -> the OpenSSL read or write the thread is in (openssl.bpf.c), from the entry
 * uprobe to the return one. The capture family notes in it the socket the call's encrypted
 * bytes went through (ssl_claim, sock_capture.h), which ties the SSL object to its connection
 * without reading OpenSSL's structs, and drops those bytes: the call's plaintext replaces
 * them. A write's plaintext is sent by the capture itself when its first encrypted bytes go
 * out (then `emitted`), so that it comes before the peer's read of them.
 * LRU: a thread killed inside a call never reaches its return probe. Created by the capture
 * family, shared with the OpenSSL probes. */
#ifndef BEYLA_MAP_SSL_CALLS_H
#define BEYLA_MAP_SSL_CALLS_H

/* ssl_call.direction of a handshake (SSL_do_handshake): no plaintext, only its socket. */
#define SSL_CALL_HANDSHAKE 2

struct ssl_call {
	__u64 ssl;     /* SSL * */
	__u64 buf;     /* the caller's plaintext buffer */
	__u64 len_out; /* SSL_read_ex/SSL_write_ex: where the byte count goes; 0: the return value is it */
	__u64 len;     /* a write's plaintext length (its num argument) */
	__u64 sk;      /* struct sock * the call moved encrypted bytes through; 0: none (yet) */
	__u8 direction; /* enum direction, or SSL_CALL_HANDSHAKE */
	__u8 emitted;  /* a write whose plaintext was sent (or must not be: a retry) */
	__u8 _pad[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct ssl_call);
} ssl_calls SEC(".maps");

#endif
