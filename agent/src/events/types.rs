//! Events as the agent holds them once copied out of the ring buffers.
use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Recv,
    Send,
}

/// One read or write of a traced process on a TCP socket.
#[derive(Debug, Clone)]
pub struct SockData {
    pub pid: u32,
    pub tid: u32,
    pub sock_id: u64,
    pub ts_ns: u64,
    /// When the syscall was entered (`ts_ns` is its return): orders a write against a read
    /// of another thread reported before it. 0 when the hook does not see the entry (the
    /// socket family): the write is taken to come before such reads, as it does whenever
    /// they answer it.
    pub start_ns: u64,
    pub direction: Direction,
    /// Bytes the syscall transferred; `data` holds the first of them.
    pub len: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub data: Vec<u8>,
    /// The last bytes of the buffer when `data` does not reach its end.
    pub tail: Vec<u8>,
    /// The plaintext of a TLS connection (the Go crypto/tls probes), not the socket's bytes.
    pub tls: bool,
    /// What `data` holds.
    pub capture: Capture,
    /// A write of a Go program whose goroutine the capture identified: the request that
    /// goroutine serves (`bpf/include/goroutine.h`).
    pub goroutine: Option<Goroutine>,
}

/// The request the goroutine behind a Go write serves, as the Go probes recorded it when its
/// handler started: the server connection (0: it serves none), the HTTP/2 stream on it (0 for
/// HTTP/1.x) and the handler's start, which tells that request from a later one on the same
/// connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Goroutine {
    pub server_sock: u64,
    pub server_stream: u32,
    pub handler_ns: u64,
}

/// What the capture copied of a transfer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Capture {
    /// Its first bytes (and its last, in `tail`).
    #[default]
    Prefix,
    /// An HTTP/2 connection followed frame by frame: its frames without the payloads of
    /// DATA frames (`bpf/include/h2_walk.h`).
    H2Frames,
    /// The frame walk of an HTTP/2 connection lost its place in this transfer.
    H2Lost,
}

#[derive(Debug, Clone)]
pub enum RawEvent {
    Data(SockData),
    Close {
        pid: u32,
        sock_id: u64,
        ts_ns: u64,
    },
    /// A traced process forked `pid`, which the kernel now traces too.
    Fork {
        pid: u32,
        ppid: u32,
    },
    /// `ts_ns`: when it ran the other program (the clock of `Drained` and of requests).
    Exec {
        pid: u32,
        ts_ns: u64,
    },
    /// `ts_ns`: when it exited (the clock of `Drained`); its own socket events all came before.
    Exit {
        pid: u32,
        ts_ns: u64,
    },
    /// A Go client call about to go out on `client_sock` (HTTP/2: `stream`) from a goroutine
    /// serving the request on `server_sock` (0: none; gRPC: its stream `server_stream`); see
    /// `struct go_event`.
    GoClient {
        pid: u32,
        server_sock: u64,
        server_stream: u32,
        client_sock: u64,
        stream: u32,
        /// `client_sock`'s endpoints.
        local: SocketAddr,
        remote: SocketAddr,
        /// The trace and span ids of the `traceparent` the probes wrote into the call.
        written: Option<([u8; 16], [u8; 8])>,
    },
    /// The Go handler of the request being served on `server_sock` (gRPC: its stream
    /// `server_stream`) started at `ts_ns`.
    GoHandlerStart {
        pid: u32,
        server_sock: u64,
        server_stream: u32,
        ts_ns: u64,
        /// With context propagation, the request's trace id as the probes know it.
        trace_id: Option<[u8; 16]>,
    },
    /// Every event the kernel submitted before `ts_ns` (CLOCK_MONOTONIC, the clock of the
    /// events' own timestamps) has been read: the event-time watermark later stages wait on.
    Drained {
        ts_ns: u64,
    },
}
