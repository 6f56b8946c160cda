//! HTTP/2 (and gRPC over it) from a connection's captured bytes: frames cut from each
//! direction's byte stream, header blocks decoded with HPACK (`httlib-hpack`), streams followed
//! from their request HEADERS to the END_STREAM of their response.
//!
//! HPACK is stateful: a connection is only decodable from its start (the client preface), and
//! a header block that was not captured desynchronises the connection for good. Both cases are
//! reported, not guessed around. The capture follows the frames of a connection that began
//! with the preface and copies all of them but DATA payloads ([`Connection::feed_frames`]), so
//! header blocks are lost only where it says it lost its place.
use foldhash::{HashMap, HashMapExt};
use httlib_hpack as hpack;

mod parser;

pub use parser::PROTOCOL;

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A header block larger than this is not reassembled.
const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// Streams followed at once per connection; beyond it the oldest is dropped.
const MAX_STREAMS: usize = 1024;
/// Responses held per connection while their request is not seen yet (see `EarlyResponse`).
const MAX_EARLY_RESPONSES: usize = 64;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// Bytes were lost where they mattered: the connection cannot be decoded further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desync;

#[derive(Debug, Clone, PartialEq, Eq)]
enum FrameEvent {
    Headers { stream: u32, end_stream: bool, block: Vec<u8> },
    Data { stream: u32, len: usize, end_stream: bool },
    Reset { stream: u32 },
}

/// Cuts one direction's byte stream into the frames that matter.
#[derive(Debug, Default)]
struct FrameReader {
    /// Bytes of a frame header not complete yet.
    header: Vec<u8>,
    /// The frame being read: (type, flags, stream, payload bytes left).
    frame: Option<(u8, u8, u32, usize)>,
    /// Payload of a HEADERS/CONTINUATION frame being read.
    payload: Vec<u8>,
    /// A header block spanning CONTINUATION frames: (stream, end_stream, bytes).
    block: Option<(u32, bool, Vec<u8>)>,
    /// Payload length of the current frame.
    frame_len: usize,
}

impl FrameReader {
    /// `data` was captured; `missing` more bytes followed it on the wire but were not. `frames`:
    /// `data` is the byte stream without DATA payloads (the capture's frame walk).
    fn feed(&mut self, mut data: &[u8], missing: usize, frames: bool, out: &mut Vec<FrameEvent>) -> Result<(), Desync> {
        while !data.is_empty() {
            match self.frame {
                None => {
                    let need = 9 - self.header.len();
                    let n = need.min(data.len());
                    self.header.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if self.header.len() == 9 {
                        let h = std::mem::take(&mut self.header);
                        let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
                        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                        if len > MAX_HEADER_BLOCK && matches!(h[3], HEADERS | CONTINUATION) {
                            return Err(Desync);
                        }
                        let on_wire = if frames && h[3] == DATA { 0 } else { len };
                        self.frame = Some((h[3], h[4], stream, on_wire));
                        self.frame_len = len;
                        if on_wire == 0 {
                            self.end_frame(out)?;
                        }
                    }
                }
                Some((ty, flags, stream, left)) => {
                    let n = left.min(data.len());
                    if matches!(ty, HEADERS | CONTINUATION) {
                        self.payload.extend_from_slice(&data[..n]);
                    }
                    data = &data[n..];
                    self.frame = Some((ty, flags, stream, left - n));
                    if left == n {
                        self.end_frame(out)?;
                    }
                }
            }
        }
        if missing == 0 {
            return Ok(());
        }
        // Uncaptured bytes are harmless only inside a payload we skip anyway.
        match self.frame {
            Some((ty, flags, stream, left)) if !matches!(ty, HEADERS | CONTINUATION) && missing <= left => {
                self.frame = Some((ty, flags, stream, left - missing));
                if left == missing {
                    self.end_frame(out)?;
                }
                Ok(())
            }
            _ => Err(Desync),
        }
    }

    fn end_frame(&mut self, out: &mut Vec<FrameEvent>) -> Result<(), Desync> {
        let Some((ty, flags, stream, _)) = self.frame.take() else { return Ok(()) };
        let payload = std::mem::take(&mut self.payload);
        match ty {
            HEADERS => {
                let mut p = &payload[..];
                let pad = if flags & PADDED != 0 {
                    let (&n, rest) = p.split_first().ok_or(Desync)?;
                    p = rest;
                    usize::from(n)
                } else {
                    0
                };
                if flags & PRIORITY != 0 {
                    p = p.get(5..).ok_or(Desync)?;
                }
                let p = p.get(..p.len().checked_sub(pad).ok_or(Desync)?).ok_or(Desync)?;
                let end_stream = flags & END_STREAM != 0;
                if flags & END_HEADERS != 0 {
                    out.push(FrameEvent::Headers { stream, end_stream, block: p.to_vec() });
                } else {
                    self.block = Some((stream, end_stream, p.to_vec()));
                }
            }
            CONTINUATION => {
                let Some((s, end_stream, mut block)) = self.block.take() else { return Err(Desync) };
                if s != stream || block.len() + payload.len() > MAX_HEADER_BLOCK {
                    return Err(Desync);
                }
                block.extend_from_slice(&payload);
                if flags & END_HEADERS != 0 {
                    out.push(FrameEvent::Headers { stream, end_stream, block });
                } else {
                    self.block = Some((stream, end_stream, block));
                }
            }
            DATA => out.push(FrameEvent::Data { stream, len: self.frame_len, end_stream: flags & END_STREAM != 0 }),
            RST_STREAM => out.push(FrameEvent::Reset { stream }),
            _ => {}
        }
        Ok(())
    }
}

/// One request/response exchange on a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub stream: u32,
    pub tid: u32,
    pub method: String,
    pub path: String,
    pub authority: Option<String>,
    pub traceparent: Option<String>,
    /// `content-type: application/grpc...`.
    pub grpc: bool,
    pub start_ns: u64,
    pub end_ns: u64,
    pub status: u16,
    /// `grpc-status` from the response headers or trailers.
    pub grpc_status: Option<u32>,
    pub request_body_size: u64,
    pub response_body_size: u64,
    /// Set by the caller when the stream starts.
    pub trace: Option<crate::decode::TraceContext>,
    /// Server side: when the handler started (the Go probes on a gRPC server), set by the
    /// caller.
    pub handler_start: Option<u64>,
}

/// What a batch of bytes did to the connection's streams.
#[derive(Debug, Default)]
pub struct Progress {
    /// Streams whose request headers were just read (server) or written (client).
    pub started: Vec<u32>,
    /// Exchanges whose response ended.
    pub done: Vec<Exchange>,
    /// Streams reset or dropped before their response ended.
    pub abandoned: usize,
}

/// A client's response read before its request's HEADERS were reported: the writing and the
/// reading thread differ (Go's loopy writer and reader goroutines), and the write's event is
/// sent when the syscall returns, by which time the answer may have been read and reported.
/// Kept until the request comes, then applied to it.
#[derive(Debug, Default)]
struct EarlyResponse {
    status: u16,
    grpc_status: Option<u32>,
    body: u64,
    end_ns: Option<u64>,
}

/// The HTTP/2 state of one connection.
pub struct Connection {
    requests: FrameReader,
    responses: FrameReader,
    /// HPACK contexts: one per direction.
    request_hpack: hpack::Decoder<'static>,
    response_hpack: hpack::Decoder<'static>,
    /// Open streams, by id; `Exchange::end_ns` is 0 until the response ends.
    streams: HashMap<u32, Exchange>,
    /// Responses to streams whose request is not seen yet, by stream id.
    early: HashMap<u32, EarlyResponse>,
    /// The highest stream id a request was seen on (client streams only grow).
    last_request_stream: u32,
    /// Preface bytes still expected at the start of the request direction.
    preface_left: usize,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("http2::Connection").field("streams", &self.streams.len()).finish()
    }
}

impl Default for Connection {
    fn default() -> Self {
        Connection {
            requests: FrameReader::default(),
            responses: FrameReader::default(),
            request_hpack: hpack_decoder(),
            response_hpack: hpack_decoder(),
            streams: HashMap::new(),
            early: HashMap::new(),
            last_request_stream: 0,
            preface_left: PREFACE.len(),
        }
    }
}

/// HPACK starts every connection with a 4,096-byte dynamic table (RFC 7541 §4.2); a peer's
/// SETTINGS may let the encoder grow it, which we cannot see, so any size update up to
/// `MAX_HPACK_TABLE` is accepted. (`httlib-hpack` decodes Huffman strings with a lookup
/// table; `fluke-hpack` rebuilt a hash map per string, ~80x slower per header block.)
fn hpack_decoder() -> hpack::Decoder<'static> {
    let mut d = hpack::Decoder::with_dynamic_size(4_096);
    d.set_max_dynamic_size(MAX_HPACK_TABLE);
    d
}

/// Largest HPACK dynamic table a connection may ask for.
const MAX_HPACK_TABLE: u32 = 1 << 20;

/// Whether every field representation in a header block is complete (RFC 7541 §6).
/// `httlib-hpack` indexes past the end of a block cut inside a field (a panic, in the
/// agent), so broken blocks are turned away here; the decoder reports everything else.
fn well_formed(block: &[u8]) -> bool {
    /// An integer with an N-bit prefix (§5.1), at most 5 bytes as the decoder accepts.
    fn int(b: &[u8], i: &mut usize, prefix: u8) -> Option<u32> {
        let max = (1u32 << prefix) - 1;
        let first = u32::from(*b.get(*i)?) & max;
        *i += 1;
        if first < max {
            return Some(first);
        }
        let mut v = first;
        for shift in [0, 7, 14, 21] {
            let c = *b.get(*i)?;
            *i += 1;
            v += u32::from(c & 0x7f) << shift;
            if c & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    /// A string literal (§5.2): its length, then that many bytes.
    fn string(b: &[u8], i: &mut usize) -> Option<()> {
        let len = int(b, i, 7)? as usize;
        *i = i.checked_add(len).filter(|&end| end <= b.len())?;
        Some(())
    }
    let mut i = 0;
    while let Some(&c) = block.get(i) {
        let ok = if c & 0x80 != 0 {
            int(block, &mut i, 7).map(drop) // indexed field
        } else if c & 0xe0 == 0x20 {
            int(block, &mut i, 5).map(drop) // dynamic table size update
        } else {
            // Literal, with an indexed name or (index 0) a literal one.
            let prefix = if c & 0x40 != 0 { 6 } else { 4 };
            int(block, &mut i, prefix).and_then(|name| {
                if name == 0 {
                    string(block, &mut i)?;
                }
                string(block, &mut i)
            })
        };
        if ok.is_none() {
            return false;
        }
    }
    true
}

/// Whether `data` starts (or, if shorter, is the start of) the client preface.
pub fn is_preface(data: &[u8]) -> bool {
    let n = data.len().min(PREFACE.len());
    n >= 3 && data[..n] == PREFACE[..n]
}

/// Whether `data` starts with a SETTINGS frame, as an HTTP/2 server sends one before it reads
/// the client preface (gRPC-go does).
pub fn is_server_settings(data: &[u8]) -> bool {
    data.len() >= 9 && {
        let len = (usize::from(data[0]) << 16) | (usize::from(data[1]) << 8) | usize::from(data[2]);
        data[3] == 4 && data[4] == 0 && data[5..9] == [0, 0, 0, 0] && len % 6 == 0 && len <= 6 * 16
    }
}

impl Connection {
    /// Bytes of one direction: `request` for the client-to-server side.
    pub fn feed(
        &mut self,
        request: bool,
        data: &[u8],
        missing: usize,
        ts_ns: u64,
        tid: u32,
        progress: &mut Progress,
    ) -> Result<(), Desync> {
        self.feed_as(request, data, missing, false, ts_ns, tid, progress)
    }

    /// `feed` for a transfer the capture copied frame by frame: its frames without the
    /// payloads of DATA frames (whose headers still give their length).
    pub fn feed_frames(
        &mut self,
        request: bool,
        data: &[u8],
        ts_ns: u64,
        tid: u32,
        progress: &mut Progress,
    ) -> Result<(), Desync> {
        self.feed_as(request, data, 0, true, ts_ns, tid, progress)
    }

    #[allow(clippy::too_many_arguments)]
    fn feed_as(
        &mut self,
        request: bool,
        data: &[u8],
        missing: usize,
        frames: bool,
        ts_ns: u64,
        tid: u32,
        progress: &mut Progress,
    ) -> Result<(), Desync> {
        let mut data = data;
        if request && self.preface_left > 0 {
            let off = PREFACE.len() - self.preface_left;
            let n = self.preface_left.min(data.len());
            if data[..n] != PREFACE[off..off + n] {
                return Err(Desync);
            }
            self.preface_left -= n;
            data = &data[n..];
        }
        let reader = if request { &mut self.requests } else { &mut self.responses };
        let mut events = Vec::new();
        let fed = reader.feed(data, missing, frames, &mut events);
        for f in events {
            self.on_frame(request, f, ts_ns, tid, progress)?;
        }
        fed
    }

    fn on_frame(
        &mut self,
        request: bool,
        f: FrameEvent,
        ts_ns: u64,
        tid: u32,
        progress: &mut Progress,
    ) -> Result<(), Desync> {
        match f {
            FrameEvent::Headers { stream, end_stream, block } => {
                let hpack = if request { &mut self.request_hpack } else { &mut self.response_hpack };
                if !well_formed(&block) {
                    return Err(Desync);
                }
                let mut block = block;
                let mut headers = Vec::new();
                hpack.decode(&mut block, &mut headers).map_err(|_| Desync)?;
                let get = |name: &[u8]| {
                    headers.iter().find(|(k, _, _)| k == name).map(|(_, v, _)| String::from_utf8_lossy(v).into_owned())
                };
                if request {
                    if self.streams.contains_key(&stream) {
                        return Ok(()); // request trailers
                    }
                    if self.streams.len() >= MAX_STREAMS {
                        let oldest = self.streams.values().min_by_key(|e| e.start_ns).map(|e| e.stream);
                        if let Some(s) = oldest {
                            self.streams.remove(&s);
                            progress.abandoned += 1;
                        }
                    }
                    let grpc = get(b"content-type").is_some_and(|c| c.starts_with("application/grpc"));
                    self.streams.insert(
                        stream,
                        Exchange {
                            stream,
                            tid,
                            method: get(b":method").unwrap_or_default(),
                            path: get(b":path").unwrap_or_default(),
                            authority: get(b":authority"),
                            traceparent: get(b"traceparent"),
                            grpc,
                            start_ns: ts_ns,
                            end_ns: 0,
                            status: 0,
                            grpc_status: None,
                            request_body_size: 0,
                            response_body_size: 0,
                            trace: None,
                            handler_start: None,
                        },
                    );
                    progress.started.push(stream);
                    self.last_request_stream = self.last_request_stream.max(stream);
                    // Earlier streams' responses can no longer meet their request.
                    self.early.retain(|s, _| *s >= stream);
                    if let Some(r) = self.early.remove(&stream) {
                        let ex = self.streams.get_mut(&stream).expect("inserted above");
                        (ex.status, ex.grpc_status, ex.response_body_size) = (r.status, r.grpc_status, r.body);
                        if let Some(end) = r.end_ns {
                            self.finish(stream, end.max(ts_ns), progress);
                        }
                    }
                } else {
                    let status = get(b":status").and_then(|s| s.parse().ok());
                    let grpc_status = get(b"grpc-status").and_then(|s| s.trim().parse().ok());
                    if let Some(ex) = self.streams.get_mut(&stream) {
                        ex.status = status.unwrap_or(ex.status);
                        ex.grpc_status = grpc_status.or(ex.grpc_status);
                        if end_stream {
                            self.finish(stream, ts_ns, progress);
                        }
                    } else if let Some(r) = self.early_response(stream) {
                        r.status = status.unwrap_or(r.status);
                        r.grpc_status = grpc_status.or(r.grpc_status);
                        if end_stream {
                            r.end_ns = Some(ts_ns);
                        }
                    }
                }
            }
            FrameEvent::Data { stream, len, end_stream } => {
                if let Some(ex) = self.streams.get_mut(&stream) {
                    let size = if request { &mut ex.request_body_size } else { &mut ex.response_body_size };
                    *size += len as u64;
                } else if let Some(r) = self.early.get_mut(&stream).filter(|_| !request) {
                    r.body += len as u64;
                    if end_stream {
                        r.end_ns = Some(ts_ns);
                    }
                }
                if !request && end_stream {
                    self.finish(stream, ts_ns, progress);
                }
            }
            FrameEvent::Reset { stream } => {
                self.early.remove(&stream);
                if self.streams.remove(&stream).is_some() {
                    progress.abandoned += 1;
                }
            }
        }
        Ok(())
    }

    /// Where a response to a stream with no request yet is kept: only a client-initiated
    /// (odd) stream newer than every request seen, so a connection joined mid-way does not
    /// keep the responses of requests sent before the agent looked.
    fn early_response(&mut self, stream: u32) -> Option<&mut EarlyResponse> {
        let fresh = stream % 2 == 1 && stream > self.last_request_stream;
        if !fresh || (self.early.len() >= MAX_EARLY_RESPONSES && !self.early.contains_key(&stream)) {
            return None;
        }
        Some(self.early.entry(stream).or_default())
    }

    fn finish(&mut self, stream: u32, ts_ns: u64, progress: &mut Progress) {
        if let Some(mut ex) = self.streams.remove(&stream) {
            ex.end_ns = ts_ns;
            progress.done.push(ex);
        }
    }

    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// The trace contexts of the streams still open.
    pub fn traces(&self) -> impl Iterator<Item = crate::decode::TraceContext> + '_ {
        self.streams.values().filter_map(|ex| ex.trace)
    }

    pub fn exchange_mut(&mut self, stream: u32) -> Option<&mut Exchange> {
        self.streams.get_mut(&stream)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// A header block as Go and grpc-go write them: Huffman strings, indexed as they go.
    pub fn encode(enc: &mut hpack::Encoder<'_>, h: &[(&str, &str)]) -> Vec<u8> {
        let flags = hpack::Encoder::HUFFMAN_NAME
            | hpack::Encoder::HUFFMAN_VALUE
            | hpack::Encoder::WITH_INDEXING
            | hpack::Encoder::BEST_FORMAT;
        let mut block = Vec::new();
        for (k, v) in h {
            enc.encode((k.as_bytes().to_vec(), v.as_bytes().to_vec(), flags), &mut block).expect("encodable");
        }
        block
    }

    pub fn headers(enc: &mut hpack::Encoder<'_>, stream: u32, end_stream: bool, h: &[(&str, &str)]) -> Vec<u8> {
        let block = encode(enc, h);
        frame(HEADERS, END_HEADERS | if end_stream { END_STREAM } else { 0 }, stream, &block)
    }

    /// A unary gRPC call: (client bytes, server bytes).
    pub fn grpc_call(
        req_enc: &mut hpack::Encoder<'_>,
        resp_enc: &mut hpack::Encoder<'_>,
        stream: u32,
        code: u32,
    ) -> (Vec<u8>, Vec<u8>) {
        let mut c = headers(
            req_enc,
            stream,
            false,
            &[
                (":method", "POST"),
                (":scheme", "http"),
                (":path", "/demo.Multiplier/Multiply"),
                (":authority", "127.0.0.1:5001"),
                ("content-type", "application/grpc"),
            ],
        );
        c.extend(frame(DATA, END_STREAM, stream, &[0, 0, 0, 0, 2, 8, 1]));
        let mut s = headers(resp_enc, stream, false, &[(":status", "200"), ("content-type", "application/grpc")]);
        s.extend(frame(DATA, 0, stream, &[0, 0, 0, 0, 2, 8, 1]));
        s.extend(headers(resp_enc, stream, true, &[("grpc-status", &code.to_string())]));
        (c, s)
    }

    #[test]
    fn unary_grpc_calls_on_one_connection() {
        let (mut qe, mut re) = (hpack::Encoder::default(), hpack::Encoder::default());
        let mut conn = Connection::default();
        let mut p = Progress::default();
        let settings = frame(4, 0, 0, &[]);
        let mut first = PREFACE.to_vec();
        first.extend(&settings);
        conn.feed(true, &first, 0, 1, 7, &mut p).unwrap();
        conn.feed(false, &settings, 0, 2, 7, &mut p).unwrap();
        for (i, code) in [(1u32, 0u32), (3, 13)] {
            let (c, s) = grpc_call(&mut qe, &mut re, i, code);
            conn.feed(true, &c, 0, 10 * u64::from(i), 7, &mut p).unwrap();
            assert_eq!(p.started.last(), Some(&i));
            // The server's reply arrives split at an arbitrary byte.
            let (a, b) = s.split_at(13);
            conn.feed(false, a, 0, 10 * u64::from(i) + 1, 8, &mut p).unwrap();
            conn.feed(false, b, 0, 10 * u64::from(i) + 5, 8, &mut p).unwrap();
        }
        assert_eq!(p.done.len(), 2);
        let e = &p.done[1];
        assert_eq!((e.method.as_str(), e.path.as_str(), e.grpc), ("POST", "/demo.Multiplier/Multiply", true));
        assert_eq!((e.status, e.grpc_status, e.start_ns, e.end_ns, e.tid), (200, Some(13), 30, 35, 7));
        assert_eq!(p.done[0].grpc_status, Some(0));
        // Body sizes are the DATA payloads (the gRPC message with its 5-byte prefix).
        assert_eq!((e.request_body_size, e.response_body_size), (7, 7));
        assert_eq!(conn.open_streams(), 0);
    }

    #[test]
    fn a_response_reported_before_its_request_still_completes_the_call() {
        let (mut qe, mut re) = (hpack::Encoder::default(), hpack::Encoder::default());
        let mut conn = Connection::default();
        let mut p = Progress::default();
        let mut first = PREFACE.to_vec();
        first.extend(frame(4, 0, 0, &[]));
        conn.feed(true, &first, 0, 1, 7, &mut p).unwrap();
        let (c1, s1) = grpc_call(&mut qe, &mut re, 1, 0);
        let (c3, s3) = grpc_call(&mut qe, &mut re, 3, 13);
        conn.feed(true, &c1, 0, 10, 7, &mut p).unwrap();
        conn.feed(false, &s1, 0, 12, 8, &mut p).unwrap();
        // Stream 3's answer is reported first (the write's event came late).
        conn.feed(false, &s3, 0, 20, 8, &mut p).unwrap();
        assert_eq!(p.done.len(), 1);
        conn.feed(true, &c3, 0, 21, 7, &mut p).unwrap();
        assert_eq!(p.started, vec![1, 3]);
        assert_eq!(p.done.len(), 2);
        let e = &p.done[1];
        assert_eq!((e.stream, e.status, e.grpc_status, e.response_body_size), (3, 200, Some(13), 7));
        assert_eq!((e.start_ns, e.end_ns), (21, 21), "never a negative duration");
        assert_eq!(conn.open_streams(), 0);
        // An answer to a stream older than the requests seen (a connection joined mid-way) is
        // not kept, and a request that never comes does not keep one for ever.
        let (_, s_old) = grpc_call(&mut qe, &mut re, 1, 0);
        conn.feed(false, &s_old, 0, 30, 8, &mut p).unwrap();
        assert!(conn.early.is_empty());
        let (_, s7) = grpc_call(&mut qe, &mut re, 7, 0);
        conn.feed(false, &s7, 0, 31, 8, &mut p).unwrap();
        let (c9, _) = grpc_call(&mut qe, &mut re, 9, 0);
        conn.feed(true, &c9, 0, 32, 7, &mut p).unwrap();
        assert!(conn.early.is_empty());
        assert_eq!(p.done.len(), 2);
    }

    #[test]
    fn header_block_across_continuation_and_uncaptured_data() {
        let mut qe = hpack::Encoder::default();
        let block = encode(&mut qe, &[(":method", "GET"), (":path", "/big"), (":authority", "x")]);
        let (a, b) = block.split_at(3);
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(HEADERS, END_STREAM, 1, a));
        bytes.extend(frame(CONTINUATION, END_HEADERS, 1, b));
        let mut conn = Connection::default();
        let mut p = Progress::default();
        conn.feed(true, &bytes, 0, 1, 1, &mut p).unwrap();
        assert_eq!(p.started, [1]);
        // A response whose 10,000-byte DATA payload was mostly not captured.
        let mut re = hpack::Encoder::default();
        let mut resp = headers(&mut re, 1, false, &[(":status", "200")]);
        let data = frame(DATA, END_STREAM, 1, &vec![b'x'; 10_000]);
        resp.extend_from_slice(&data[..100]);
        conn.feed(false, &resp, data.len() - 100, 9, 1, &mut p).unwrap();
        assert_eq!(p.done.len(), 1);
        assert_eq!((p.done[0].path.as_str(), p.done[0].status, p.done[0].grpc), ("/big", 200, false));
        assert_eq!(p.done[0].response_body_size, 10_000);
    }

    #[test]
    fn frames_without_data_payloads_as_the_capture_walks_them() {
        // nginx answering two streams in one write: HEADERS, a 16 KiB and a 13 KiB DATA frame
        // each; the capture copies the frames without the DATA payloads, here split at an
        // arbitrary byte (a frame header across two transfers).
        let (mut qe, mut re) = (hpack::Encoder::default(), hpack::Encoder::default());
        let mut conn = Connection::default();
        let mut p = Progress::default();
        let mut req = PREFACE.to_vec();
        for s in [1, 3] {
            req.extend(headers(&mut qe, s, true, &[(":method", "GET"), (":path", "/30k"), (":authority", "x")]));
        }
        conn.feed_frames(true, &req, 1, 1, &mut p).unwrap();
        let mut resp = Vec::new();
        for s in [1, 3] {
            resp.extend(headers(&mut re, s, false, &[(":status", "200")]));
            // DATA frame headers alone: 16384 and 13616 bytes of payload left out.
            resp.extend([0, 0x40, 0, DATA, 0, 0, 0, 0, s as u8]);
            resp.extend([0, 0x35, 0x30, DATA, END_STREAM, 0, 0, 0, s as u8]);
        }
        let (a, b) = resp.split_at(resp.len() - 20);
        conn.feed_frames(false, a, 5, 1, &mut p).unwrap();
        assert_eq!(p.done.len(), 1);
        conn.feed_frames(false, b, 6, 1, &mut p).unwrap();
        assert_eq!(p.done.len(), 2);
        for (ex, s) in p.done.iter().zip([1, 3]) {
            assert_eq!((ex.stream, ex.status, ex.path.as_str()), (s, 200, "/30k"));
            assert_eq!(ex.response_body_size, 16384 + 13616);
        }
    }

    #[test]
    fn garbage_header_blocks_are_a_desync_never_a_panic() {
        // A literal with an indexed name and no value: the HPACK crate alone would panic.
        let mut conn = Connection::default();
        let mut p = Progress::default();
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(HEADERS, END_HEADERS, 1, &[0x03]));
        assert_eq!(conn.feed(true, &bytes, 0, 1, 1, &mut p), Err(Desync));
        // Random and mutated blocks, through a fresh connection each.
        let mut enc = hpack::Encoder::default();
        let valid = encode(&mut enc, &[(":method", "POST"), (":path", "/a.B/C"), ("content-type", "application/grpc")]);
        assert!(well_formed(&valid));
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for i in 0..20_000 {
            let block: Vec<u8> = if i % 2 == 0 {
                (0..rnd() % 14).map(|_| rnd() as u8).collect()
            } else {
                let mut b = valid.clone();
                let k = (rnd() % b.len() as u64) as usize;
                b[k] = rnd() as u8;
                b.truncate(b.len() - (rnd() % 3) as usize);
                b
            };
            let mut bytes = PREFACE.to_vec();
            bytes.extend(frame(HEADERS, END_HEADERS, 1, &block));
            let _ = Connection::default().feed(true, &bytes, 0, 1, 1, &mut Progress::default());
        }
    }

    #[test]
    fn lost_header_bytes_desync_and_reset_abandons() {
        let mut qe = hpack::Encoder::default();
        let mut conn = Connection::default();
        let mut p = Progress::default();
        let mut bytes = PREFACE.to_vec();
        bytes.extend(headers(&mut qe, 1, true, &[(":method", "GET"), (":path", "/a")]));
        conn.feed(true, &bytes, 0, 1, 1, &mut p).unwrap();
        conn.feed(false, &frame(RST_STREAM, 0, 1, &[0, 0, 0, 8]), 0, 2, 1, &mut p).unwrap();
        assert_eq!((p.abandoned, conn.open_streams()), (1, 0));
        // Bytes missing right where a frame header would be.
        assert_eq!(conn.feed(true, &[], 5, 3, 1, &mut p), Err(Desync));
        assert!(!is_preface(b"GET / HTTP/1.1"));
        assert!(is_server_settings(&frame(4, 0, 0, &[0, 3, 0, 0, 0, 100])));
        assert!(!is_server_settings(&frame(4, 1, 0, &[])), "an ACK is not a first frame");
        assert!(!is_server_settings(b"HTTP/1.1 200 OK\r\n"));
        assert!(is_preface(b"PRI * HTTP/2.0\r\n"));
        let mut other = Connection::default();
        assert_eq!(other.feed(true, b"PRX * HTTP/2.0", 0, 1, 1, &mut p), Err(Desync));
    }
}
