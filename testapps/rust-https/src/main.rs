//! HTTPS test service on hyper 1, tokio (multi-threaded) and tokio-rustls, used to exercise the
//! agent's rustls probes on an async build.
//! Routes: GET /ping, GET /users/{id}, POST /echo, GET /error, GET /call (-> $DOWNSTREAM_URL, an
//! https:// URL called through tokio-rustls and hyper's client, any certificate accepted), else 404.
//! Usage: TLS_CERT=cert.pem TLS_KEY=key.pem rust-https <port>
use std::convert::Infallible;
use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

type Body = Full<Bytes>;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn text(status: StatusCode, s: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(s.into()));
    *r.status_mut() = status;
    r
}

async fn route(req: Request<Incoming>, connector: TlsConnector) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    Ok(match (req.method().as_str(), path.as_str()) {
        ("GET", "/ping") => text(StatusCode::OK, "pong"),
        ("GET", p) if p.len() > 7 && p.starts_with("/users/") => {
            text(StatusCode::OK, format!("{{\"id\":\"{}\"}}", &p[7..]))
        }
        ("POST", "/echo") => match req.into_body().collect().await {
            Ok(body) => text(StatusCode::OK, body.to_bytes()),
            Err(e) => text(StatusCode::BAD_REQUEST, e.to_string()),
        },
        ("GET", "/error") => text(StatusCode::INTERNAL_SERVER_ERROR, "boom"),
        ("GET", "/call") => match std::env::var("DOWNSTREAM_URL") {
            Ok(url) if !url.is_empty() => match call(&url, connector).await {
                Ok(code) => text(StatusCode::OK, format!("called:{code}")),
                Err(e) => text(StatusCode::BAD_GATEWAY, format!("downstream error: {e}")),
            },
            _ => text(StatusCode::BAD_GATEWAY, "DOWNSTREAM_URL not set"),
        },
        _ => text(StatusCode::NOT_FOUND, "not found"),
    })
}

/// GET `url` (https://host:port/path) on a new connection; returns the status code.
async fn call(url: &str, connector: TlsConnector) -> Result<u16, Box<dyn std::error::Error + Send + Sync>> {
    let uri: hyper::Uri = url.parse()?;
    let host = uri.host().ok_or("no host")?.to_string();
    let port = uri.port_u16().unwrap_or(443);
    let tcp = TcpStream::connect((host.as_str(), port)).await?;
    let tls = connector.connect(ServerName::try_from(host.clone())?, tcp).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let req = Request::get(uri.path()).header("host", format!("{host}:{port}")).body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok(status)
}

fn server_config() -> rustls::ServerConfig {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| fail(name, &"not set"));
    let (cert, key) = (var("TLS_CERT"), var("TLS_KEY"));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .unwrap_or_else(|e| fail(&cert, &e))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| fail(&cert, &e));
    let key = PrivateKeyDer::from_pem_file(&key).unwrap_or_else(|e| fail(&key, &e));
    rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .unwrap_or_else(|e| fail("TLS configuration", &e))
}

fn fail(what: &str, e: &dyn std::fmt::Display) -> ! {
    eprintln!("{what}: {e}");
    std::process::exit(1)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let port: u16 = match std::env::args().nth(1).map(|p| p.parse()) {
        Some(Ok(p)) => p,
        _ => fail("usage", &"rust-https <port>"),
    };
    let acceptor = TlsAcceptor::from(Arc::new(server_config()));
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(client));
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap_or_else(|e| fail("bind", &e));
    println!("listening on {port}");
    std::io::stdout().flush().ok();
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let (acceptor, connector) = (acceptor.clone(), connector.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else { return };
            let service = hyper::service::service_fn(move |req| route(req, connector.clone()));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
        });
    }
}

/// The tests' servers have self-signed certificates: any is accepted (the handshake's
/// signatures are still checked).
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
