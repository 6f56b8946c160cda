//! Stage `decode`: turns socket events into operations (HTTP requests, gRPC calls, and the
//! operations of any protocol in `proto::PROTOCOLS`) by following each connection.
//!
//! A connection's role comes from its first message: a request read makes it the server side,
//! a request written the client side, so connections opened before the agent started are
//! handled too. Timing: a server request runs from the first request byte read to the last
//! response byte written; a client request from the first request byte written to the last
//! response byte read.
pub mod context;
pub mod fixture;
pub mod proto;
mod reorder;
pub mod stage;
#[cfg(test)]
pub(crate) mod testing;
mod tracker;

use std::net::SocketAddr;

pub use context::TraceContext;

pub use tracker::{Tracker, TrackerLimits};

/// What the configuration asks of the decoder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeOptions {
    /// `db.query.text` of SQL statements (`ebpf.db_query_text`).
    pub query_text: crate::config::QueryText,
}

impl DecodeOptions {
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        DecodeOptions { query_text: cfg.ebpf.db_query_text }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Server,
    Client,
}

/// The protocol family of an operation: which metrics it feeds and which semantic conventions
/// its attributes follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Http,
    Rpc,
    Db,
    Messaging,
}

/// An attribute value of an [`Operation`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AttrValue {
    Str(String),
    Int(i64),
}

impl std::fmt::Display for AttrValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttrValue::Str(s) => f.write_str(s),
            AttrValue::Int(i) => write!(f, "{i}"),
        }
    }
}

/// What a parser of a protocol other than HTTP/gRPC reports about an operation, in the form
/// every exporter reads without knowing the protocol: its family, its span name and its
/// semantic-convention attributes (`db.system.name`, `db.operation.name`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Operation {
    pub family: Family,
    /// The span name, as the conventions of the family give it (`SELECT orders`, `GET`).
    pub name: String,
    /// Semantic-convention attributes, by OTel name.
    pub attributes: Vec<(&'static str, AttrValue)>,
    /// `error.type` of a failed operation (an SQLSTATE, a Redis error prefix).
    pub error: Option<String>,
}

/// One operation seen on a connection: an HTTP request and its response (with gRPC's
/// status for a gRPC call), or, with `operation` set, one of another protocol (its fields then
/// say all; `method`, `target` and `status` are left empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub pid: u32,
    pub tid: u32,
    pub role: Role,
    pub method: String,
    /// Request target as sent (path and query).
    pub target: String,
    pub status: u16,
    pub start_ns: u64,
    pub end_ns: u64,
    pub request_body_size: u64,
    pub response_body_size: u64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub host: Option<String>,
    pub traceparent: Option<String>,
    /// Trace id, span id and parent (see [`context`]).
    pub trace: TraceContext,
    /// gRPC: the `grpc-status` code (`target` is then the full method, `/pkg.Service/Method`).
    pub grpc_status: Option<u32>,
    /// HTTP/2 stream id (both ends of a connection see the same); 0 for HTTP/1.x.
    pub stream: u32,
    /// Decoded from TLS plaintext (the Go crypto/tls probes): the scheme is `https`.
    pub tls: bool,
    /// Server side, when the Go probes saw it: when the handler started. Before it the request
    /// was "in queue", then "processing" until the response's last byte was written.
    pub handler: Option<u64>,
    /// A head was cut short (`headers_truncated`): where its body ended is not known, so the
    /// body sizes are not reported (metrics skip them, spans leave them out).
    pub body_sizes_unknown: bool,
    /// An operation of a protocol other than HTTP/gRPC.
    pub operation: Option<Box<Operation>>,
}

/// Query parameters whose values never leave the agent (lower case; also any key containing
/// `token`, `secret`, `password`, `passwd`, `signature`, `credential`, `api_key` or `apikey`).
const REDACTED_QUERY_KEYS: &[&str] = &["awsaccesskeyid", "sig", "x-goog-signature", "key", "auth", "code", "pwd"];

impl Request {
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }

    /// `https` for a request decoded from TLS plaintext, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    /// The path without the query string.
    pub fn path(&self) -> &str {
        self.target.split(['?', '#']).next().unwrap_or("")
    }

    /// The target with the values of credential-like query parameters replaced by `REDACTED`
    /// (OpenTelemetry's `url.full` and `url.query` rule: `AWSAccessKeyId`, `Signature`, `sig`,
    /// `X-Goog-Signature`, and the usual token and password names), and no fragment.
    pub fn redacted_target(&self) -> std::borrow::Cow<'_, str> {
        let target = self.target.split('#').next().unwrap_or("");
        let Some((path, query)) = target.split_once('?') else { return target.into() };
        let sensitive = |key: &str| {
            let key = key.to_ascii_lowercase();
            REDACTED_QUERY_KEYS.contains(&key.as_str())
                || ["token", "secret", "password", "passwd", "signature", "credential", "api_key", "apikey"]
                    .iter()
                    .any(|w| key.contains(w))
        };
        if !query.split('&').any(|pair| sensitive(pair.split('=').next().unwrap_or(""))) {
            return target.into();
        }
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if sensitive(k) => format!("{k}=REDACTED"),
                _ => pair.to_string(),
            })
            .collect();
        format!("{path}?{}", pairs.join("&")).into()
    }

    pub fn family(&self) -> Family {
        match (&self.operation, self.grpc_status) {
            (Some(op), _) => op.family,
            (None, Some(_)) => Family::Rpc,
            (None, None) => Family::Http,
        }
    }

    /// An attribute of a non-HTTP operation, by OTel name.
    pub fn attribute(&self, otel: &str) -> Option<&AttrValue> {
        self.operation.as_ref()?.attributes.iter().find(|(k, _)| *k == otel).map(|(_, v)| v)
    }
}

/// Why traffic on a traced connection was not turned into a request. Bounded: used as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DecodeError {
    /// The connection does not carry HTTP/1.x (TLS, another protocol, garbage).
    NotHttp,
    /// A request or response head that httparse rejects.
    Malformed,
    /// A head of which not even the request or status line was captured whole: dropped.
    HeadersTooLarge,
    /// A head longer than what was captured of it: the message is reported with its first
    /// line and the headers before the cut, without body sizes.
    HeadersTruncated,
    /// A response whose request the agent did not see (e.g. it started mid-request).
    MissedRequest,
    /// The connection closed before the message was complete.
    ClosedMidMessage,
    /// Connection state evicted to stay within bounds.
    Evicted,
    /// Messages sent together past what one transfer's copy holds (2 KiB): not seen, counted
    /// once per transfer.
    Uncaptured,
    /// HTTP/2 bytes lost where they mattered (a header block not captured whole, or a
    /// connection joined after its start): the connection is not decoded further.
    Http2Desync,
    /// Another protocol's framing lost (bytes it needed were not captured, or bytes that make
    /// no sense for it): the connection is not decoded further.
    Desync,
    /// An operation reported without its statement's text (a statement prepared before the
    /// agent saw its connection): the operation is counted in the metrics, without
    /// `db.query.text` or a table.
    UnknownStatement,
}

impl DecodeError {
    pub const ALL: [DecodeError; 11] = [
        DecodeError::NotHttp,
        DecodeError::Malformed,
        DecodeError::HeadersTooLarge,
        DecodeError::HeadersTruncated,
        DecodeError::MissedRequest,
        DecodeError::ClosedMidMessage,
        DecodeError::Evicted,
        DecodeError::Uncaptured,
        DecodeError::Http2Desync,
        DecodeError::Desync,
        DecodeError::UnknownStatement,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DecodeError::NotHttp => "not_http",
            DecodeError::Malformed => "malformed",
            DecodeError::HeadersTooLarge => "headers_too_large",
            DecodeError::HeadersTruncated => "headers_truncated",
            DecodeError::MissedRequest => "missed_request",
            DecodeError::ClosedMidMessage => "closed_mid_message",
            DecodeError::Evicted => "evicted",
            DecodeError::Uncaptured => "uncaptured",
            DecodeError::Http2Desync => "http2_desync",
            DecodeError::Desync => "desync",
            DecodeError::UnknownStatement => "unknown_statement",
        }
    }
}

/// What decoding a batch produced.
#[derive(Debug, Default)]
pub struct Decoded {
    pub requests: Vec<Request>,
    pub errors: Vec<DecodeError>,
    /// Processes that exited after the requests above: the stages after decode forget them
    /// only once those requests went through (a process that exits right after its last
    /// request still gets it reported).
    pub exited: Vec<u32>,
    /// The reader's event-time watermark after this batch (`RawEvent::Drained`).
    pub drained_ns: Option<u64>,
    /// Client spans of this batch whose `traceparent`, written by the Go probes, carries
    /// another trace id than the span's exported one.
    pub trace_mismatches: u32,
    /// Client calls of this batch made by a thread serving several requests at once (an
    /// event loop): left without a parent.
    pub unlinked_calls: u32,
    /// Server requests of this batch whose client on this host had several requests in
    /// flight on the connection (pipelined): left without that parent.
    pub unlinked_requests: u32,
    /// The protocol (`Protocol::name`) of each connection a parser claimed in this batch.
    pub claimed: Vec<&'static str>,
}
