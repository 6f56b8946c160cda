/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* pid_tgid -> the OpenSSL read or write the thread is in (openssl.bpf.c), from the entry
 * uprobe to the return one, or where it is in a rustls read or write (rustls.bpf.c). The capture family notes in it the socket the call's encrypted
 * bytes went through (ssl_claim, sock_capture.h), which ties the SSL object to its connection
 * without reading OpenSSL's structs, and drops those bytes: the call's plaintext replaces
 * them. A write's plaintext is sent by the capture itself when its first encrypted bytes go
 * out (then `emitted`), so that it comes before the peer's read of them.
 * LRU: a thread killed inside a call never reaches its return probe. Created by the capture
 * family, shared with the OpenSSL and rustls probes. */
#ifndef BEYLA_MAP_SSL_CALLS_H
#define BEYLA_MAP_SSL_CALLS_H

/* ssl_call.direction of a handshake (SSL_do_handshake): no plaintext, only its socket. */
#define SSL_CALL_HANDSHAKE 2

/* rustls (rustls.bpf.c) does no I/O inside the calls that carry plaintext, so its states
 * outlive them: the thread's transfers just before a read and just after a write are that
 * connection's encrypted bytes. */
#define RUSTLS_FILL 3    /* in DeframerVecBuffer::read: its reads from a socket are records */
#define RUSTLS_FILLED 4  /* after it: `sk` is the socket the thread's next Reader::read is about */
#define RUSTLS_WRITE 5   /* in Writer::write (moves nothing) */
#define RUSTLS_WRITTEN 6 /* after it: the thread's next send carries its records out */

struct ssl_call {
	__u64 ssl;     /* SSL * */
	__u64 buf;     /* the caller's plaintext buffer */
	__u64 len_out; /* SSL_read_ex/SSL_write_ex: where the byte count goes; 0: the return value is it.
			* A rustls vectored write: the number of slices at buf */
	__u64 len;     /* a write's plaintext length (its num argument) */
	__u64 sk;      /* struct sock * the call moved encrypted bytes through; 0: none (yet) */
	__u8 direction; /* enum direction, SSL_CALL_HANDSHAKE or a RUSTLS_ state */
	__u8 emitted;  /* a write whose plaintext was sent (or must not be: a retry) */
	__u8 buf_kind; /* rustls writes: enum buf_kind of buf (OpenSSL's are BUF_PLAIN, 0) */
	__u8 _pad[5];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct ssl_call);
} ssl_calls SEC(".maps");

#endif
