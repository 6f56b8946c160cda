//! Minimal HTTP/1.1 test service (std only, thread per connection, hand-rolled parser with keep-alive)
//! used to exercise beyla-rs instrumentation.
//! Routes: GET /ping, GET /users/{id}, POST /echo, GET /error, GET /call (-> $DOWNSTREAM_URL), else 404.
//! Usage: rust-http <port>
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

struct Request {
    method: String,
    path: String,
    keep_alive: bool,
    body: Vec<u8>,
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Reads one request (headers + Content-Length or chunked body); Err on EOF or malformed input.
fn read_request(r: &mut BufReader<TcpStream>, out: &mut TcpStream) -> io::Result<Request> {
    let line = read_line(r)?;
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Err(bad("bad request line"));
    };
    let mut keep_alive = version == "HTTP/1.1";
    let (mut length, mut chunked, mut expect_continue) = (0usize, false, false);
    // Headers until the empty line (a line without ':' also ends them).
    while let Some((name, value)) = read_line(r)?.to_ascii_lowercase().split_once(':') {
        let value = value.trim();
        match name.trim() {
            "content-length" => length = value.parse().map_err(|_| bad("bad content-length"))?,
            "transfer-encoding" => chunked = value.contains("chunked"),
            "expect" => expect_continue = value == "100-continue",
            "connection" if value.contains("close") => keep_alive = false,
            "connection" if value.contains("keep-alive") => keep_alive = true,
            _ => {}
        }
    }
    if expect_continue {
        out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let size_line = read_line(r)?;
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                while !read_line(r)?.is_empty() {} // trailers
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            read_line(r)?; // CRLF after the chunk
        }
    } else {
        body.resize(length, 0);
        r.read_exact(&mut body)?; // loops over as many TCP segments as needed
    }
    let (method, path) = (method.into(), target.split('?').next().unwrap_or("").into());
    Ok(Request { method, path, keep_alive, body })
}

/// GET `url` (http://host[:port]/path) on a new TCP connection; returns the status code.
fn call_downstream(url: &str) -> io::Result<u16> {
    let rest = url.strip_prefix("http://").ok_or_else(|| bad("only http:// supported"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let port = if hostport.contains(':') { "" } else { ":80" };
    let mut s = TcpStream::connect(format!("{hostport}{port}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?; // Connection: close => server closes after the response
    let text = String::from_utf8_lossy(&resp);
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok());
    status.ok_or_else(|| bad("bad downstream response"))
}

fn route(req: &Request) -> (u16, &'static str, Vec<u8>) {
    let text = |status, s: &str| (status, "text/plain", s.as_bytes().to_vec());
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/ping") => text(200, "pong"),
        ("GET", p) if p.len() > 7 && p.starts_with("/users/") => {
            let json = format!("{{\"id\":\"{}\"}}", &p[7..]);
            (200, "application/json", json.into_bytes())
        }
        ("POST", "/echo") => (200, "application/octet-stream", req.body.clone()),
        ("GET", "/error") => text(500, "boom"),
        ("GET", "/call") => match std::env::var("DOWNSTREAM_URL") {
            Ok(url) if !url.is_empty() => match call_downstream(&url) {
                Ok(code) => text(200, &format!("called:{code}")),
                Err(e) => text(502, &format!("downstream error: {e}")),
            },
            _ => text(502, "DOWNSTREAM_URL not set"),
        },
        _ => text(404, "not found"),
    }
}

fn serve(stream: TcpStream) -> io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        // Malformed request or peer closed: just drop the connection.
        let req = read_request(&mut reader, &mut out)?;
        let (status, ctype, body) = route(&req);
        let reason = match status {
            200 => "OK",
            404 => "Not Found",
            500 => "Internal Server Error",
            _ => "Bad Gateway",
        };
        let conn = if req.keep_alive { "keep-alive" } else { "close" };
        let mut msg = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: {conn}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        msg.extend_from_slice(&body);
        out.write_all(&msg)?;
        if !req.keep_alive {
            return Ok(());
        }
    }
}

fn main() {
    let port: u16 = match std::env::args().nth(1).map(|p| p.parse()) {
        Some(Ok(p)) => p,
        _ => {
            eprintln!("usage: rust-http <port>");
            std::process::exit(2);
        }
    };
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| {
        eprintln!("bind 127.0.0.1:{port}: {e}");
        std::process::exit(1);
    });
    println!("listening on {port}");
    io::stdout().flush().ok();
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = serve(stream);
        });
    }
}
