// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Go probes: W3C traceparent read from incoming requests and written into outgoing ones. */
#ifndef __GO_TRACEPARENT_H
#define __GO_TRACEPARENT_H

/* Bytes of the server connection's read buffer searched for an incoming traceparent: the
 * end of the request head, which ends where the reader stopped. */
#define TP_WINDOW 1024
/* "traceparent:" */
#define TP_NAME_LEN 12
/* 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags> */
#define TP_VALUE_LEN 55
/* "Traceparent: " value "\r\n" */
#define TP_HEADER_LEN (TP_NAME_LEN + 1 + TP_VALUE_LEN + 2)

/* The window searched, and where the value found starts: kept in map memory, whose contents
 * the verifier does not track, so the search loop's states do not multiply with every
 * position it could have found. */
struct tp_search {
	char w[TP_WINDOW];
	__s32 at;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tp_search);
} tp_scratch SEC(".maps");

static __always_inline void random_bytes(__u8 *out, int words)
{
	for (int i = 0; i < words; i++) {
		__u32 r = bpf_get_prandom_u32();
		__builtin_memcpy(out + 4 * i, &r, 4);
	}
}

/* The value of a lowercase hex digit, or -1 (W3C trace context: lowercase only). */
static __always_inline int unhex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* The trace id and flags of a traceparent value (TP_VALUE_LEN bytes at v) into req; returns 1
 * when it is well formed (version 00, lowercase hex, a non-zero trace id). */
static __always_inline int parse_traceparent(const char *v, struct go_request *req)
{
	if (v[0] != '0' || v[1] != '0' || v[2] != '-' || v[35] != '-' || v[52] != '-')
		return 0;
	__u8 any = 0;
	for (int i = 0; i < 16; i++) {
		int hi = unhex(v[3 + 2 * i]), lo = unhex(v[4 + 2 * i]);
		if (hi < 0 || lo < 0)
			return 0;
		req->trace_id[i] = (__u8)(hi << 4 | lo);
		any |= req->trace_id[i];
	}
	int fhi = unhex(v[53]), flo = unhex(v[54]);
	if (!any || fhi < 0 || flo < 0)
		return 0;
	req->flags = (__u8)(fhi << 4 | flo);
	return 1;
}

/* The trace id and flags of the traceparent header in the request head net/http just read on
 * the server connection conn (a *http.conn): its bufio.Reader still holds the bytes, and the
 * head ends where the reader stopped (bufr.r). Searches the last TP_WINDOW bytes before it.
 * Returns 1 when found. */
static __always_inline int incoming_traceparent(const struct go_offsets *o, __u64 conn, struct go_request *req)
{
	__u64 br = 0, buf = 0;
	__s64 r = 0;
	if (!o->http_conn_bufr || bpf_probe_read_user(&br, sizeof(br), (void *)(conn + o->http_conn_bufr)) || !br)
		return 0;
	if (bpf_probe_read_user(&buf, sizeof(buf), (void *)(br + o->bufio_reader_buf)) || !buf)
		return 0;
	if (bpf_probe_read_user(&r, sizeof(r), (void *)(br + o->bufio_reader_r)) || r < 4)
		return 0;
	__u32 zero = 0;
	struct tp_search *sr = bpf_map_lookup_elem(&tp_scratch, &zero);
	if (!sr)
		return 0;
	char *w = sr->w;
	/* A fixed-size read: from the buffer's start when the head is shorter than the window
	 * (the reader's buffer is 4 KiB, never smaller than the window). */
	__s64 start = r > TP_WINDOW ? r - TP_WINDOW : 0;
	__s64 len = r - start;
	if (bpf_probe_read_user(w, TP_WINDOW, (void *)(buf + start)))
		return 0;
	/* The last "\ntraceparent:" of this request's head: a blank line before the final one
	 * ends an earlier (pipelined) request whose headers do not count. */
	/* Volatile: the compiler must not keep a copy of the position in a register or on the
	 * stack, where the verifier would track it (and every possible value would be a state). */
	volatile __s32 *found = &sr->at;
	*found = -1;
	for (int i = 0; i < TP_WINDOW - TP_NAME_LEN - TP_VALUE_LEN - 4; i++) {
		if (i + 3 >= len)
			break;
		/* Branch-free matching (c | 0x20 is the lowercase letter exactly when c is that
		 * letter in either case): two branches per byte keep the verifier's work linear. */
		const char *c = w + i;
		int blank = (c[0] ^ '\n') | (c[1] ^ '\r') | (c[2] ^ '\n');
		int name = (c[0] ^ '\n') | ((c[1] | 0x20) ^ 't') | ((c[2] | 0x20) ^ 'r') | ((c[3] | 0x20) ^ 'a') |
			   ((c[4] | 0x20) ^ 'c') | ((c[5] | 0x20) ^ 'e') | ((c[6] | 0x20) ^ 'p') |
			   ((c[7] | 0x20) ^ 'a') | ((c[8] | 0x20) ^ 'r') | ((c[9] | 0x20) ^ 'e') |
			   ((c[10] | 0x20) ^ 'n') | ((c[11] | 0x20) ^ 't') | (c[12] ^ ':');
		if (!blank)
			*found = -1;
		if (!name)
			*found = i + TP_NAME_LEN + 1;
	}
	int at = *found;
	if (at < 0 || at >= TP_WINDOW - TP_VALUE_LEN)
		return 0;
	/* Optional whitespace, then "00-" and the trace id. */
	if (w[at] == ' ')
		at++;
	if (at + TP_VALUE_LEN > len || at > TP_WINDOW - TP_VALUE_LEN)
		return 0;
	return parse_traceparent(w + at, req);
}

static __always_inline void put_hex(char *out, const __u8 *in, int n)
{
	const char digits[] = "0123456789abcdef";
	for (int i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
}

/* The W3C traceparent value of tp (TP_VALUE_LEN bytes) at out. */
static __always_inline void put_traceparent(char *out, const struct inject *tp)
{
	out[0] = '0';
	out[1] = '0';
	out[2] = '-';
	put_hex(out + 3, tp->trace_id, 16);
	out[35] = '-';
	put_hex(out + 36, tp->span_id, 8);
	out[52] = '-';
	put_hex(out + 53, &tp->flags, 1);
}

#endif /* __GO_TRACEPARENT_H */
