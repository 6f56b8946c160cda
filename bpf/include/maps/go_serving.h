/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* (tgid, goid) -> the request a goroutine serves: set by the Go probes when its handler
 * starts, inherited by the goroutines it starts; read by the Go probes at client calls and by
 * the capture family at every write of a Go process (goroutine.h). LRU: goroutines end without
 * a probe telling us. Created by the capture family, shared with the Go probes. */
#ifndef BEYLA_MAP_GO_SERVING_H
#define BEYLA_MAP_GO_SERVING_H

struct goroutine_key {
	__u32 tgid;
	__u32 _pad;
	__u64 goid;
};

/* The request a goroutine serves: its server connection (struct sock), when its handler
 * started (which request on that connection it is) and, with context propagation on, its
 * trace id and W3C flags. */
struct go_request {
	__u64 sock;
	__u64 handler_ns;
	__u8 trace_id[16];
	__u32 stream; /* HTTP/2 stream id (gRPC servers); 0 for HTTP/1.x */
	__u8 flags;
	__u8 traced; /* trace_id and flags are set */
	__u8 _pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct goroutine_key);
	__type(value, struct go_request);
} go_serving SEC(".maps");

#endif
