//! Minimal HTTP/1.1 test service (std and rustls only, thread per connection, hand-rolled parser with
//! keep-alive) used to exercise beyla-rs instrumentation.
//! Routes: GET /ping, GET /users/{id}, POST /echo, GET /error, GET /call (-> $DOWNSTREAM_URL), else 404.
//! Usage: rust-http <port>. With TLS_CERT and TLS_KEY (PEM files) it serves HTTPS through rustls's
//! blocking API; a `https://` DOWNSTREAM_URL is called through it too (any certificate accepted).
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
fn read_request<S: Read + Write>(r: &mut BufReader<S>) -> io::Result<Request> {
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
        r.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
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

/// GET `url` (http[s]://host[:port]/path) on a new TCP connection; returns the status code.
fn call_downstream(url: &str) -> io::Result<u16> {
    let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => return Err(bad("only http:// and https:// supported")),
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let port = match (hostport.contains(':'), tls) {
        (true, _) => "",
        (false, false) => ":80",
        (false, true) => ":443",
    };
    let s = TcpStream::connect(format!("{hostport}{port}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n");
    let mut resp = Vec::new();
    // Connection: close => server closes after the response
    if tls {
        let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h).to_string();
        let name = rustls_pki_types::ServerName::try_from(host).map_err(|_| bad("bad host name"))?;
        let conn = rustls::ClientConnection::new(tls::client_config(), name).map_err(io::Error::other)?;
        let mut s = rustls::StreamOwned::new(conn, s);
        s.write_all(req.as_bytes())?;
        match s.read_to_end(&mut resp) {
            // A server that closes without close_notify (nginx does not always send it).
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !resp.is_empty() => {}
            r => {
                r?;
            }
        }
    } else {
        let mut s = s;
        s.write_all(req.as_bytes())?;
        s.read_to_end(&mut resp)?;
    }
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

fn serve<S: Read + Write>(stream: S) -> io::Result<()> {
    let mut reader = BufReader::new(stream);
    loop {
        // Malformed request or peer closed: just drop the connection.
        let req = read_request(&mut reader)?;
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
        reader.get_mut().write_all(&msg)?;
        reader.get_mut().flush()?;
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
    let server_tls = tls::server_config();
    println!("listening on {port}");
    io::stdout().flush().ok();
    for stream in listener.incoming().flatten() {
        let server_tls = server_tls.clone();
        std::thread::spawn(move || {
            let _ = match server_tls {
                Some(config) => match rustls::ServerConnection::new(config) {
                    Ok(conn) => serve(rustls::StreamOwned::new(conn, stream)),
                    Err(e) => Err(io::Error::other(e)),
                },
                None => serve(stream),
            };
        });
    }
}

/// rustls configurations: ring as the crypto provider, TLS 1.2 and 1.3.
mod tls {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{ring, CryptoProvider};
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(ring::default_provider())
    }

    /// From TLS_CERT and TLS_KEY (PEM), if both are set; exits on a bad file.
    pub fn server_config() -> Option<Arc<rustls::ServerConfig>> {
        let (cert, key) = (std::env::var("TLS_CERT").ok()?, std::env::var("TLS_KEY").ok()?);
        let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
            eprintln!("{what}: {e}");
            std::process::exit(1)
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
            .unwrap_or_else(|e| fail(&cert, &e))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| fail(&cert, &e));
        let key = PrivateKeyDer::from_pem_file(&key).unwrap_or_else(|e| fail(&key, &e));
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
            .unwrap_or_else(|e| fail("TLS configuration", &e));
        Some(Arc::new(config))
    }

    /// For calls to the tests' servers, whose certificates are self-signed: any is accepted
    /// (the handshake's signatures are still checked).
    pub fn client_config() -> Arc<rustls::ClientConfig> {
        let verifier = Arc::new(AcceptAny(provider()));
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Arc::new(config)
    }

    #[derive(Debug)]
    struct AcceptAny(Arc<CryptoProvider>);

    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}
