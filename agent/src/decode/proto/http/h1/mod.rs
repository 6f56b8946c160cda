//! HTTP/1.x message heads, parsed with `httparse`, and the framing rules (RFC 9112 §6) that say
//! where a message body ends.

pub mod chunked;
pub mod conn;
mod parser;

pub use parser::PROTOCOL;

/// Heads larger than this are not reassembled: such traffic is counted as an error.
pub const MAX_HEAD: usize = 16 * 1024;
/// Header lines parsed per head (browsers and API gateways send 90-100).
const MAX_HEADERS: usize = 160;

/// How the body of a message is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body follows the head.
    Empty,
    /// `Content-Length` bytes follow.
    Length(u64),
    /// `Transfer-Encoding: chunked`; ends with the zero-length chunk.
    Chunked,
    /// Responses without a length: the body ends when the connection closes.
    UntilClose,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    pub target: String,
    pub host: Option<String>,
    pub traceparent: Option<String>,
    pub framing: Framing,
    /// Bytes of the head, including the blank line.
    pub len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub framing: Framing,
    pub len: usize,
}

/// Why bytes could not be read as HTTP/1.x.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// More bytes are needed.
    Partial,
    /// Not a valid HTTP/1.x head.
    Malformed,
}

const METHODS: &[&[u8]] =
    &[b"GET ", b"POST ", b"PUT ", b"DELETE ", b"HEAD ", b"PATCH ", b"OPTIONS ", b"CONNECT ", b"TRACE "];

/// Whether `data` can begin an HTTP/1.x request line: it starts with a known method and a
/// space, or is a prefix of one. Runtimes do read a single byte: Go's server reads one byte
/// ahead to notice a closed connection, which splits the method of the next request.
pub fn is_request_start(data: &[u8]) -> bool {
    !data.is_empty()
        && METHODS.iter().any(|m| {
            let n = m.len().min(data.len());
            data[..n] == m[..n]
        })
}

/// Whether `data` begins like an HTTP/1.x status line.
pub fn is_response_start(data: &[u8]) -> bool {
    let n = data.len().min(7);
    n >= 5 && data[..n] == b"HTTP/1."[..n]
}

fn header<'a>(headers: &'a [httparse::Header<'a>], name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
}

fn body_framing(headers: &[httparse::Header<'_>]) -> Result<Option<Framing>, HeadError> {
    if let Some(te) = header(headers, "transfer-encoding") {
        let te = String::from_utf8_lossy(te).to_ascii_lowercase();
        if te.rsplit(',').next().map(str::trim) == Some("chunked") {
            return Ok(Some(Framing::Chunked));
        }
    }
    match header(headers, "content-length") {
        Some(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(|n| Some(if n == 0 { Framing::Empty } else { Framing::Length(n) }))
            .ok_or(HeadError::Malformed),
        None => Ok(None),
    }
}

pub fn parse_request(buf: &[u8]) -> Result<RequestHead, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let framing = body_framing(req.headers)?.unwrap_or(Framing::Empty);
            let text = |name| header(req.headers, name).map(|v| String::from_utf8_lossy(v).into_owned());
            Ok(RequestHead {
                method: req.method.unwrap_or_default().to_string(),
                target: req.path.unwrap_or_default().to_string(),
                host: text("host"),
                traceparent: text("traceparent"),
                framing,
                len,
            })
        }
        Ok(httparse::Status::Partial) => Err(HeadError::Partial),
        Err(_) => Err(HeadError::Malformed),
    }
}

/// Parses a response head; `request_method` decides whether a body may follow.
pub fn parse_response(buf: &[u8], request_method: &str) -> Result<ResponseHead, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let status = resp.code.unwrap_or(0);
            let no_body = request_method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304;
            let framing =
                if no_body { Framing::Empty } else { body_framing(resp.headers)?.unwrap_or(Framing::UntilClose) };
            Ok(ResponseHead { status, framing, len })
        }
        Ok(httparse::Status::Partial) => Err(HeadError::Partial),
        Err(_) => Err(HeadError::Malformed),
    }
}

/// The complete lines of a head cut short (by the capture, or past [`MAX_HEAD`]), ended as a
/// head of their own: `None` unless the first line is whole. What follows the cut (headers,
/// the blank line, the body's framing) is unknown.
fn whole_lines(buf: &[u8]) -> Option<Vec<u8>> {
    let end = buf.windows(2).rposition(|w| w == b"\r\n")? + 2;
    let mut head = buf[..end].to_vec();
    head.extend_from_slice(b"\r\n");
    Some(head)
}

/// A request head of which only `buf` was captured: the request line and the headers before
/// the cut. Its `framing` means nothing (the body is not followed), `len` is `buf`'s.
pub fn parse_truncated_request(buf: &[u8]) -> Option<RequestHead> {
    let mut h = parse_request(&whole_lines(buf)?).ok()?;
    (h.framing, h.len) = (Framing::UntilClose, buf.len());
    Some(h)
}

/// A response head of which only `buf` was captured: its status line (and headers before the
/// cut). The body is taken to end when the connection closes or the next request starts.
pub fn parse_truncated_response(buf: &[u8], request_method: &str) -> Option<ResponseHead> {
    let mut h = parse_response(&whole_lines(buf)?, request_method).ok()?;
    (h.framing, h.len) = (Framing::UntilClose, buf.len());
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_with_length() {
        let r = parse_request(b"POST /echo HTTP/1.1\r\nHost: a:1\r\nContent-Length: 12\r\n\r\nhello").unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.target, "/echo");
        assert_eq!(r.host.as_deref(), Some("a:1"));
        assert_eq!(r.framing, Framing::Length(12));
        assert_eq!(r.len, 54);
    }

    #[test]
    fn request_partial_and_malformed() {
        assert_eq!(parse_request(b"GET /ping HTTP/1.1\r\nHost: x\r\n"), Err(HeadError::Partial));
        assert_eq!(parse_request(b"GET /ping HTTP/1.1\r\nbad header\r\n\r\n"), Err(HeadError::Malformed));
        assert_eq!(parse_request(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"), Err(HeadError::Malformed));
    }

    #[test]
    fn truncated_heads_keep_their_whole_lines() {
        let cookie = "c".repeat(3000);
        let head = format!("GET /cart?id=1 HTTP/1.1\r\nHost: shop:80\r\ntraceparent: 00-x\r\nCookie: {cookie}\r\n\r\n");
        let cut = &head.as_bytes()[..2048];
        assert_eq!(parse_request(cut), Err(HeadError::Partial));
        let r = parse_truncated_request(cut).unwrap();
        assert_eq!((r.method.as_str(), r.target.as_str(), r.host.as_deref()), ("GET", "/cart?id=1", Some("shop:80")));
        assert_eq!((r.traceparent.as_deref(), r.len), (Some("00-x"), 2048));
        // Cut inside the request line: nothing to report.
        assert_eq!(parse_truncated_request(b"GET /very/long/pa"), None);
        let resp = format!("HTTP/1.1 404 Not Found\r\nSet-Cookie: {cookie}\r\n\r\n");
        let r = parse_truncated_response(&resp.as_bytes()[..2048], "GET").unwrap();
        assert_eq!((r.status, r.framing), (404, Framing::UntilClose));
    }

    #[test]
    fn a_hundred_headers() {
        let headers: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
        let r = parse_request(format!("GET / HTTP/1.1\r\n{headers}\r\n").as_bytes()).unwrap();
        assert_eq!(r.target, "/");
    }

    #[test]
    fn chunked_wins_over_length() {
        let r =
            parse_request(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n").unwrap();
        assert_eq!(r.framing, Framing::Chunked);
    }

    #[test]
    fn response_framing() {
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npong", "GET").unwrap().framing,
            Framing::Length(4)
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n", "HEAD").unwrap().framing,
            Framing::Empty
        );
        assert_eq!(parse_response(b"HTTP/1.1 204 No Content\r\n\r\n", "GET").unwrap().framing, Framing::Empty);
        assert_eq!(parse_response(b"HTTP/1.0 200 OK\r\n\r\n", "GET").unwrap().framing, Framing::UntilClose);
        let r =
            parse_response(b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n", "GET").unwrap();
        assert_eq!((r.status, r.framing), (500, Framing::Chunked));
    }

    #[test]
    fn starts() {
        assert!(is_request_start(b"GET /x HTTP/1.1"));
        assert!(is_request_start(b"DELETE /x"));
        assert!(!is_request_start(b"\x16\x03\x01\x02\x00"));
        assert!(!is_request_start(b"GETX"));
        assert!(is_request_start(b"G"));
        assert!(is_request_start(b"PO"));
        assert!(!is_request_start(b"X"));
        assert!(!is_request_start(b""));
        assert!(is_response_start(b"HTTP/1.1 200 OK"));
        assert!(!is_response_start(b"HTTP/2"));
    }
}
