/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Events sent from the BPF programs to the agent. Single source of truth: the agent uses the
 * skeleton-generated Rust types, never a hand-written mirror. Built with -Wpadded: every hole
 * is an explicit _pad field. */
#ifndef BEYLA_EVENTS_H
#define BEYLA_EVENTS_H

/* Bytes of payload copied per syscall. Enough for the request line and headers of nearly every
 * real HTTP/1.x message; longer headers are reassembled by the agent across syscalls. */
#define CAPTURE_MAX 2048
/* Bytes copied from the end of each buffer, so the agent sees a chunked body's terminator
 * even when the middle of a large write was not captured. */
#define TAIL_LEN 8

enum event_kind {
	EVENT_SOCK_DATA = 1,
	EVENT_SOCK_CLOSE = 2,
	EVENT_PROC_FORK = 3,
	EVENT_PROC_EXEC = 4,
	EVENT_PROC_EXIT = 5,
	EVENT_GO_CLIENT = 6,
	EVENT_GO_HANDLER_START = 7,
};

enum direction {
	DIR_RECV = 0,
	DIR_SEND = 1,
};

/* TCP endpoints as the socket sees them: local (this process) and remote. IPv4 addresses are
 * stored IPv4-mapped in the 16-byte fields. Ports in host byte order. */
struct conn_tuple {
	__u8 local_addr[16];
	__u8 remote_addr[16];
	__u16 local_port;
	__u16 remote_port;
	__u16 family;
	__u8 _pad[2];
};

/* One read or write on a TCP socket of a traced process, or its close (len = 0). */
/* sock_event.flags */
enum sock_flag {
	SOCK_FLAG_TLS = 1, /* plaintext of a TLS connection (Go crypto/tls probes), not its bytes */
	SOCK_FLAG_H2_FRAMES = 2, /* data: the transfer's HTTP/2 frames without DATA payloads (h2_walk.h) */
	SOCK_FLAG_H2_LOST = 4, /* the HTTP/2 frame walk lost its place in this transfer */
	SOCK_FLAG_GOROUTINE = 8, /* a write of a Go thread whose goroutine is known (go_server_*) */
};

struct sock_event {
	__u8 kind;      /* enum event_kind */
	__u8 direction; /* enum direction */
	__u8 tail_len;  /* valid bytes in tail */
	__u8 flags;     /* SOCK_FLAG_* */
	__u32 pid;      /* tgid */
	__u32 tid;
	__u32 len;      /* bytes the syscall transferred */
	__u64 ts_ns;    /* CLOCK_MONOTONIC at syscall exit */
	__u64 start_ns; /* CLOCK_MONOTONIC at syscall entry (= ts_ns when not from a syscall;
			 * 0 when the hook does not see the entry: the socket family) */
	__u64 sock_id;  /* kernel address of struct sock: stable per connection while it lives */
	struct conn_tuple conn;
	/* SOCK_FLAG_GOROUTINE: the request the writing goroutine serves (goroutine.h): its
	 * server connection (0: none), its handler's start and its HTTP/2 stream. */
	__u64 go_server_sock;
	__u64 go_handler_ns;
	__u32 go_server_stream;
	__u32 captured; /* valid bytes in data */
	__u8 tail[TAIL_LEN];
	__u8 data[CAPTURE_MAX];
};

/* Process lifecycle of a traced process (fork of a traced parent, exec, exit). */
struct process_event {
	__u8 kind; /* enum event_kind */
	__u8 _pad0[3];
	__u32 pid;
	__u32 ppid;
	__u32 _pad1;
	__u64 ts_ns;
};

/* From the Go uprobes (bpf/go.bpf.c), which see goroutines where the socket capture sees
 * threads. EVENT_GO_CLIENT: an HTTP or gRPC client call is about to go out on client_sock
 * (HTTP/2: on that stream) from a goroutine serving the request read on server_sock (0: none),
 * directly or from a goroutine the serving one started; the agent makes the call a child of
 * that request (Go writes from other goroutines and threads than the handler's).
 * EVENT_GO_HANDLER_START: the net/http handler of the request on server_sock, or the gRPC
 * or net/http HTTP/2 handler of stream server_stream on it, starts (the request was "in queue" until then,
 * "processing" after). */
struct go_event {
	__u8 kind; /* EVENT_GO_* */
	__u8 _pad0[3];
	__u32 pid;
	__u32 stream; /* client_sock's HTTP/2 stream id; 0 for HTTP/1.x */
	__u32 server_stream; /* server_sock's HTTP/2 stream id (gRPC servers); 0 for HTTP/1.x */
	__u64 goid;
	__u64 server_sock; /* struct sock address, as sock_event.sock_id */
	__u64 client_sock;
	__u64 ts_ns;
	struct conn_tuple conn; /* EVENT_GO_CLIENT: client_sock's endpoints */
	/* Context propagation on (ebpf.context_propagation: headers), else zero.
	 * EVENT_GO_HANDLER_START: the request's trace id, from its traceparent header or made up
	 * here; EVENT_GO_CLIENT: the trace id and the span id of the call, written into its
	 * traceparent header (span_id zero: no header written). */
	__u8 trace_id[16];
	__u8 span_id[8];
};

/* An HTTP/2 server's runHandler(sc, rw, ...): sc.conn, rw.rws, rws.stream, stream.id. */
struct h2_server_offsets {
	__u64 server_conn_conn;
	__u64 response_writer_rws;
	__u64 rws_stream;
	__u64 stream_id;
};

/* A MetaHeadersFrame: .HeadersFrame (embedded pointer), .Fields ([]hpack.HeaderField); the
 * HeadersFrame's .FrameHeader (embedded) and its .StreamID. */
struct h2_meta_offsets {
	__u64 headers_frame;
	__u64 fields;
	__u64 frame_header;
	__u64 stream_id;
};

/* Struct member offsets the Go probes read, per traced Go process (map go_offsets), from the
 * binary's DWARF or the agent's per-version table (agent/src/discover/golang/offsets.rs). */
struct go_offsets {
	__u64 g_goid;
	__u64 g_parent_goid; /* 0: not in this Go release (before go1.21) */
	__u64 g_m;
	__u64 m_curg;
	__u64 http_response_req;
	__u64 http_response_conn;
	__u64 http_conn_rwc;
	__u64 persist_conn_conn;
	__u64 tcp_conn_conn;
	__u64 net_conn_fd;
	__u64 netfd_pfd;
	__u64 poll_fd_sysfd;
	__u64 tls_conn_conn;
	__u64 grpc_stream_id;
	__u64 grpc_http2_client_conn;
	__u64 grpc_http2_server_conn;
	struct h2_server_offsets h2; /* net/http's bundled HTTP/2 server */
	struct h2_server_offsets xh2; /* golang.org/x/net/http2's (the same code) */
	/* Context propagation (0: unknown, no propagation in this process). */
	__u64 http_conn_bufr;
	__u64 persist_conn_bw;
	__u64 bufio_reader_buf;
	__u64 bufio_reader_r;
	__u64 bufio_writer_buf;
	__u64 bufio_writer_n;
	/* net/http's HTTP/2 client: http2ClientConn.tconn, and .bw (0: no traceparent written). */
	__u64 h2_client_conn_tconn;
	__u64 h2_client_conn_bw;
	/* gRPC client context propagation (the probes are attached only when all are known). */
	__u64 grpc_loopy_framer;
	__u64 grpc_framer_writer;
	__u64 grpc_buf_writer_buf;
	__u64 grpc_buf_writer_offset;
	__u64 grpc_buf_writer_conn;
	/* HTTP/2 servers' incoming traceparent: decoded header frames (context propagation). */
	struct h2_meta_offsets xh2_meta; /* golang.org/x/net/http2 (grpc servers, x/net servers) */
	struct h2_meta_offsets h2_meta; /* net/http's bundled copy */
};

#endif
