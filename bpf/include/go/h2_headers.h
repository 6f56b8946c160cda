// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Go probes, HTTP/2 header writes shared by gRPC and net/http's HTTP/2 client: a traceparent
 * appended to a HEADERS frame as it is written (context propagation). */
#ifndef __GO_H2_HEADERS_H
#define __GO_H2_HEADERS_H

/* An HTTP/2 header write in progress on a goroutine (grpc's loopy goroutine in
 * loopyWriter.writeHeader, or a net/http HTTP/2 client request's in
 * http2ClientConn.writeHeaders), for finish_header_write. The write buffer is a byte slice
 * and a fill count (grpc's bufWriter.buf/offset, bufio.Writer.buf/n). */
struct header_write {
	struct inject tp;
	__u64 buf_addr; /* address of the buffer's slice header */
	__u64 fill_addr; /* address of its fill count */
	__s64 start; /* the fill when the write began */
	__u32 stream;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct goroutine_key);
	__type(value, struct header_write);
} go_header_writes SEC(".maps");

/* HTTP/2 frame header (9) + HPACK "literal without indexing, new name" (RFC 7541 6.2.2):
 * 0x00, name length, "traceparent", value length, value. No dynamic table entry, so the
 * encoder's and decoder's tables stay in step. */
#define H2_FRAME_HEADER 9
#define TP_HPACK_LEN (1 + 1 + 11 + 1 + TP_VALUE_LEN)
#define TP_CONTINUATION_LEN (H2_FRAME_HEADER + TP_HPACK_LEN)

/* The end of the current goroutine's header write (header_write): when the call's header
 * block went into the write buffer as one HEADERS frame that is still there (nothing flushed
 * since), the frame loses END_HEADERS and a CONTINUATION frame with the traceparent follows
 * it. Skipped, the call unchanged, when the buffer has no room or the frame is not as
 * expected. */
static __always_inline void finish_header_write(const struct go_offsets *o, struct pt_regs *ctx, __u32 tgid)
{
	struct goroutine_key gk = { .tgid = tgid, .goid = goid_of(o, ctx->r14) };
	struct header_write *p = bpf_map_lookup_elem(&go_header_writes, &gk);
	if (!p)
		return;
	struct header_write w = *p;
	bpf_map_delete_elem(&go_header_writes, &gk);
	__u64 buf = 0;
	__s64 size = 0, end = 0;
	if (bpf_probe_read_user(&buf, sizeof(buf), (void *)w.buf_addr) || !buf)
		return;
	if (bpf_probe_read_user(&size, sizeof(size), (void *)(w.buf_addr + 8)))
		return;
	if (bpf_probe_read_user(&end, sizeof(end), (void *)w.fill_addr))
		return;
	if (w.start < 0 || end < w.start + H2_FRAME_HEADER || end + TP_CONTINUATION_LEN > size)
		return;
	__u8 fh[H2_FRAME_HEADER];
	if (bpf_probe_read_user(fh, sizeof(fh), (void *)(buf + w.start)))
		return;
	__u32 len = (__u32)fh[0] << 16 | (__u32)fh[1] << 8 | fh[2];
	__u32 stream = ((__u32)fh[5] << 24 | (__u32)fh[6] << 16 | (__u32)fh[7] << 8 | fh[8]) & 0x7fffffff;
	/* One HEADERS frame with END_HEADERS (0x4), this stream's, ending where the buffer does. */
	if (fh[3] != 0x1 || !(fh[4] & 0x4) || stream != w.stream || w.start + H2_FRAME_HEADER + len != end)
		return;
	char c[TP_CONTINUATION_LEN] = {};
	c[2] = TP_HPACK_LEN;
	c[3] = 0x9; /* CONTINUATION */
	c[4] = 0x4; /* END_HEADERS */
	c[5] = fh[5];
	c[6] = fh[6];
	c[7] = fh[7];
	c[8] = fh[8];
	c[9] = 0x00;
	c[10] = 11;
	__builtin_memcpy(c + 11, "traceparent", 11);
	c[22] = TP_VALUE_LEN;
	put_traceparent(c + 23, &w.tp);
	if (bpf_probe_write_user((void *)(buf + end), c, sizeof(c)))
		return;
	__u8 flags = fh[4] & ~0x4;
	if (bpf_probe_write_user((void *)(buf + w.start + 4), &flags, 1))
		return;
	end += TP_CONTINUATION_LEN;
	bpf_probe_write_user((void *)w.fill_addr, &end, sizeof(end));
}

#endif /* __GO_H2_HEADERS_H */
