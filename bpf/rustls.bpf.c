// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Hook family "rustls": uprobes on the plaintext side of rustls (0.23) in a Rust executable
 * that keeps its symbol table, which report the plaintext as data of the connection's TCP
 * socket, flagged SOCK_FLAG_TLS, as the OpenSSL probes do (openssl.bpf.c).
 *
 * rustls does no I/O itself: the application moves the records between the connection and
 * the socket (read_tls, write_tls; rustls::Stream does it around each read and write). So the
 * socket is named by what the same thread does around the plaintext calls, in maps/ssl_calls.h:
 *   - <rustls::conn::connection::Reader as std::io::Read>::read copies out plaintext that
 *     rustls::msgs::deframer::buffers::DeframerVecBuffer::read (read_tls's reading of records
 *     from the socket) brought in: the socket that the thread's last such read read from is
 *     the connection's. A read served from plaintext already buffered uses the socket that an
 *     earlier read of the same Reader named (ssl_socks, keyed by the Reader's buffer).
 *   - rustls::common_state::CommonState::buffer_plaintext (what Writer::write does; the
 *     Writer itself is inlined in builds with LTO) encrypts into the connection's send buffer;
 *     the thread's next send writes those records out, and the capture family sends the
 *     plaintext in its place (rustls_claim, sock_capture.h), before the peer can read them.
 * The reads inside DeframerVecBuffer::read are records, not sent to the agent.
 *
 * Rust ABI as rustc 1.7x-1.9x builds it on x86_64: `&mut self` in rdi (a Reader's first field
 * is its &mut ChunkVecBuffer of plaintext: the connection's identity here), a slice as pointer
 * and length in rsi and rdx, an argument wider than two words by reference, io::Result<usize>
 * returned in rax (0: Ok) and rdx (the count). Uretprobes are safe in Rust code (its stacks do not move). Attached per process by
 * the agent (agent/src/attach/openssl.rs). Program names are rtls_<what>. */
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
#include "maps/tls_conns.h"
#include "helpers.h"
#include "tls_plaintext.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

enum rustls_stat {
	RUSTLS_STAT_UNLINKED = 0, /* plaintext transfers whose socket was not seen */
	RUSTLS_STAT_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RUSTLS_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} rustls_stats SEC(".maps");

static __always_inline void count_unlinked(void)
{
	__u32 stat = RUSTLS_STAT_UNLINKED;
	__u64 *n = bpf_map_lookup_elem(&rustls_stats, &stat);
	if (n)
		*n += 1;
}

/* Puts thread `id` in `c`'s state. A write whose records the thread never sent loses its
 * plaintext then (an application that buffers several writes before write_tls). */
static __always_inline void set_state(__u64 id, struct ssl_call *c)
{
	struct ssl_call *old = bpf_map_lookup_elem(&ssl_calls, &id);
	if (old && old->direction == RUSTLS_WRITTEN)
		count_unlinked();
	bpf_map_update_elem(&ssl_calls, &id, c, BPF_ANY);
}

/* The first field of the Reader or Writer at `self`: what identifies its connection. */
static __always_inline __u64 first_field(__u64 self)
{
	__u64 v = 0;
	bpf_probe_read_user(&v, sizeof(v), (void *)self);
	return v;
}

/* io::Result<usize> of a return: the count, or 0 for an error. */
static __always_inline __u64 ok_count(struct pt_regs *ctx)
{
	return ctx->ax == 0 ? ctx->dx : 0;
}

/* fn read(&mut self, rd: &mut dyn io::Read, in_handshake: bool) -> io::Result<usize> */
SEC("uprobe")
int rtls_fill(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!pid_traced(id >> 32))
		return 0;
	struct ssl_call c = { .direction = RUSTLS_FILL };
	/* A fill that reads nothing from the socket (tokio knows it has nothing to read) keeps
	 * the socket of the thread's last records. */
	struct ssl_call *old = bpf_map_lookup_elem(&ssl_calls, &id);
	if (old && old->direction == RUSTLS_FILLED)
		c.sk = old->sk;
	set_state(id, &c);
	return 0;
}

SEC("uretprobe")
int rtls_fill_ret(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct ssl_call *c = bpf_map_lookup_elem(&ssl_calls, &id);
	if (!c || c->direction != RUSTLS_FILL)
		return 0;
	if (c->sk)
		c->direction = RUSTLS_FILLED;
	else
		bpf_map_delete_elem(&ssl_calls, &id);
	return 0;
}

/* The socket of a plaintext read of the connection `conn` (a Reader's buffer, a TlsStream) by
 * thread `id`: `inner`, the socket that the thread read records from in the same call, which
 * `conn` is then known by (and forgotten at the socket's close: tls_conns); else the one an
 * earlier read of `conn` named; else `before`, the socket of the thread's last records before
 * the call (a handshake that read the first request with its last records). */
static __always_inline __u64 read_socket(__u64 id, __u64 conn, __u64 inner, __u64 before)
{
	struct ssl_key k = { .tgid = id >> 32, .ssl = conn };
	if (!inner) {
		struct ssl_sock *known = bpf_map_lookup_elem(&ssl_socks, &k);
		if (known)
			return known->sk;
		inner = before;
	}
	if (inner) {
		struct ssl_sock v = { .sk = inner };
		bpf_map_update_elem(&ssl_socks, &k, &v, BPF_ANY);
		bpf_map_update_elem(&tls_conns, &inner, &k, BPF_ANY);
	}
	return inner;
}

/* Takes the thread's RUSTLS_FILLED state: the socket its last records were read from. */
static __always_inline __u64 take_filled(__u64 id)
{
	struct ssl_call *c = bpf_map_lookup_elem(&ssl_calls, &id);
	if (!c || c->direction != RUSTLS_FILLED)
		return 0;
	__u64 sk = c->sk;
	bpf_map_delete_elem(&ssl_calls, &id);
	return sk;
}

/* <Reader as io::Read>::read(&mut self, buf: &mut [u8]) -> io::Result<usize> */
SEC("uprobe")
int rtls_read(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!pid_traced(id >> 32))
		return 0;
	struct ssl_call c = { .ssl = first_field(ctx->di), .buf = ctx->si, .direction = DIR_RECV };
	struct ssl_call *filled = bpf_map_lookup_elem(&ssl_calls, &id);
	if (filled && filled->direction == RUSTLS_FILLED)
		c.sk = filled->sk;
	set_state(id, &c);
	return 0;
}

SEC("uretprobe")
int rtls_read_ret(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct ssl_call *p = bpf_map_lookup_elem(&ssl_calls, &id);
	if (!p || p->direction != DIR_RECV)
		return 0;
	struct ssl_call c = *p;
	bpf_map_delete_elem(&ssl_calls, &id);
	__u64 len = ok_count(ctx);
	if (len == 0)
		return 0;
	/* rustls::Stream reads the records and the plaintext in one call: the fill just before
	 * is this read's. */
	__u64 sk = read_socket(id, c.ssl, c.sk, 0);
	if (!sk) {
		count_unlinked();
		return 0;
	}
	emit_plaintext(id, sk, c.buf, len, DIR_RECV);
	return 0;
}

/* tokio's ReadBuf: the caller's buffer, how much of it is filled (and initialised). */
struct read_buf {
	__u64 buf;
	__u64 cap;
	__u64 filled;
	__u64 initialized;
};

/* A poll_read in progress (tokio-rustls), by thread: the fills inside it use the thread's
 * ssl_calls slot, so it is kept here. */
struct poll_read {
	__u64 stream;   /* the TlsStream: the connection's identity in ssl_socks */
	__u64 read_buf; /* struct read_buf * */
	__u64 buf;
	__u64 filled;   /* read_buf->filled at entry: the plaintext read goes after it */
	__u64 sk;       /* the thread's RUSTLS_FILLED socket at entry */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct poll_read);
} rustls_polls SEC(".maps");

/* <tokio_rustls::{server,client}::TlsStream<IO> as AsyncRead>::poll_read(self: Pin<&mut Self>,
 * cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>>: the async read, into
 * which rustls's Reader::read is inlined. What it read is what ReadBuf's `filled` grew by. */
SEC("uprobe")
int rtls_poll_read(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!pid_traced(id >> 32))
		return 0;
	struct read_buf rb = {};
	if (bpf_probe_read_user(&rb, sizeof(rb), (void *)ctx->dx) || rb.filled > rb.cap || rb.initialized > rb.cap)
		return 0;
	struct poll_read p = {
		.stream = ctx->di,
		.read_buf = ctx->dx,
		.buf = rb.buf,
		.filled = rb.filled,
		.sk = take_filled(id),
	};
	bpf_map_update_elem(&rustls_polls, &id, &p, BPF_ANY);
	return 0;
}

SEC("uretprobe")
int rtls_poll_read_ret(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct poll_read *pp = bpf_map_lookup_elem(&rustls_polls, &id);
	if (!pp)
		return 0;
	struct poll_read p = *pp;
	bpf_map_delete_elem(&rustls_polls, &id);
	__u64 sk = read_socket(id, p.stream, take_filled(id), p.sk);
	__u64 now = 0;
	if (bpf_probe_read_user(&now, sizeof(now), (void *)(p.read_buf + offsetof(struct read_buf, filled))))
		return 0;
	if (now <= p.filled)
		return 0;
	if (!sk) {
		count_unlinked();
		return 0;
	}
	emit_plaintext(id, sk, p.buf + p.filled, now - p.filled, DIR_RECV);
	return 0;
}

/* rustls's OutboundChunks as rustc lays it out: Multiple { chunks: &[&[u8]], start, end } in
 * four words, chunks first, and Single(&[u8]) with a null first word (the niche of chunks's
 * pointer) and its slice after it. */
struct outbound_chunks {
	__u64 chunks;   /* Multiple's slices (laid out as struct iovec), or 0: Single */
	__u64 n_chunks; /* or Single's pointer */
	__u64 start;    /* or Single's length */
	__u64 end;
};

/* Slices a vectored write may have (hyper writes a head and a body). */
#define RUSTLS_MAX_CHUNKS 1024

/* A vectored write in progress, by thread: the caller's IoSlices (laid out as struct iovec),
 * which outlive the call, unlike the copy of them rustls hands to buffer_plaintext. */
struct vectored_write {
	__u64 iov;
	__u64 n;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct vectored_write);
} rustls_writevs SEC(".maps");

/* <ConnectionCommon<T> as PlaintextSink>::write_vectored(&mut self, bufs: &[IoSlice<'_>])
 * -> io::Result<usize>: what Writer::write_vectored (tokio-rustls's poll_write_vectored, hyper's
 * head and body) calls. */
SEC("uprobe")
int rtls_writev(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!pid_traced(id >> 32))
		return 0;
	struct vectored_write v = { .iov = ctx->si, .n = ctx->dx };
	bpf_map_update_elem(&rustls_writevs, &id, &v, BPF_ANY);
	return 0;
}

SEC("uretprobe")
int rtls_writev_ret(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	bpf_map_delete_elem(&rustls_writevs, &id);
	return 0;
}

/* fn buffer_plaintext(&mut self, payload: OutboundChunks<'_>, sendable_plaintext: &mut
 *                     ChunkVecBuffer) -> usize */
SEC("uprobe")
int rtls_write(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!pid_traced(id >> 32))
		return 0;
	struct outbound_chunks p = {};
	if (bpf_probe_read_user(&p, sizeof(p), (void *)ctx->si)) {
		count_unlinked();
		return 0;
	}
	struct ssl_call c = { .ssl = ctx->di, .direction = RUSTLS_WRITE };
	if (p.chunks == 0) {
		c.buf = p.n_chunks;
		c.len = p.start;
		c.buf_kind = BUF_PLAIN;
	} else if (p.start == 0 && p.n_chunks <= RUSTLS_MAX_CHUNKS) {
		/* A vectored write's slices: p.chunks is freed when write_vectored returns, before
		 * the records are sent, but the caller's slices it copied are not. What a write takes
		 * is the first bytes of its slices. */
		struct vectored_write *v = bpf_map_lookup_elem(&rustls_writevs, &id);
		if (!v || v->n != p.n_chunks) {
			count_unlinked();
			return 0;
		}
		c.buf = v->iov;
		c.len_out = v->n;
		c.len = p.end;
		c.buf_kind = BUF_IOVEC;
	} else {
		/* The rest of a write rustls took in parts (a key update between records). */
		count_unlinked();
		return 0;
	}
	set_state(id, &c);
	return 0;
}

/* What the write took (all of it, unless rustls's send buffer is full) waits for the send. */
SEC("uretprobe")
int rtls_write_ret(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct ssl_call *c = bpf_map_lookup_elem(&ssl_calls, &id);
	if (!c || c->direction != RUSTLS_WRITE)
		return 0;
	__u64 len = ctx->ax;
	if (len == 0 || len > c->len) {
		bpf_map_delete_elem(&ssl_calls, &id);
		return 0;
	}
	c->len = len;
	c->direction = RUSTLS_WRITTEN;
	return 0;
}
