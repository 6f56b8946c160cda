//! Sends OTLP requests to a collector over gRPC or HTTP/protobuf, with TLS for `https://`
//! endpoints (system roots, or none checked with `insecure_skip_verify`).
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use super::{Protocol, Target};

type Client = HttpClient<HttpsConnector<HttpConnector>, Full<Bytes>>;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("invalid OTLP endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("invalid OTLP header {0:?} (OTEL_EXPORTER_OTLP_*HEADERS takes key=value pairs separated by commas)")]
    Header(String),
}

/// One signal's connection to the collector. Connections are made lazily: a collector that
/// is down at start-up is retried at each export, never fatal.
#[allow(clippy::large_enum_variant)] // two per agent, made once
pub enum Transport {
    Grpc { channel: Channel, headers: MetadataMap, timeout: Duration },
    Http { client: Client, url: hyper::Uri, headers: Vec<(String, String)>, timeout: Duration },
}

impl Transport {
    pub fn new(target: &Target, timeout: Duration) -> Result<Self, TransportError> {
        let bad = |reason: String| TransportError::Endpoint { endpoint: target.endpoint.clone(), reason };
        let uri: hyper::Uri = target.endpoint.parse().map_err(|e: hyper::http::uri::InvalidUri| bad(e.to_string()))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(bad("the scheme must be http:// or https://".into())),
        }
        let headers = parse_headers(target.headers.as_deref().unwrap_or(""))?;
        let connector = connector(uri.scheme_str() == Some("https"), target.insecure_skip_verify);
        Ok(match target.protocol {
            Protocol::Grpc => {
                let endpoint = Endpoint::from_shared(target.endpoint.clone())
                    .map_err(|e| bad(e.to_string()))?
                    .timeout(timeout)
                    .connect_timeout(timeout);
                let mut map = MetadataMap::new();
                for (k, v) in headers {
                    let key = MetadataKey::from_bytes(k.as_bytes()).map_err(|_| TransportError::Header(k.clone()))?;
                    let val = MetadataValue::try_from(v.as_str()).map_err(|_| TransportError::Header(k.clone()))?;
                    map.insert(key, val);
                }
                Transport::Grpc { channel: endpoint.connect_with_connector_lazy(connector), headers: map, timeout }
            }
            Protocol::HttpProtobuf => Transport::Http {
                client: HttpClient::builder(TokioExecutor::new()).build(connector),
                url: uri,
                headers,
                timeout,
            },
        })
    }

    pub async fn export_traces(&self, req: ExportTraceServiceRequest) -> Result<(), String> {
        match self {
            Transport::Grpc { channel, headers, .. } => {
                let mut r = tonic::Request::new(req);
                *r.metadata_mut() = headers.clone();
                TraceServiceClient::new(channel.clone()).export(r).await.map(|_| ()).map_err(grpc_error)
            }
            Transport::Http { client, url, headers, timeout } => {
                post(client, url, headers, *timeout, req.encode_to_vec()).await
            }
        }
    }

    pub async fn export_metrics(&self, req: ExportMetricsServiceRequest) -> Result<(), String> {
        match self {
            Transport::Grpc { channel, headers, .. } => {
                let mut r = tonic::Request::new(req);
                *r.metadata_mut() = headers.clone();
                MetricsServiceClient::new(channel.clone()).export(r).await.map(|_| ()).map_err(grpc_error)
            }
            Transport::Http { client, url, headers, timeout } => {
                post(client, url, headers, *timeout, req.encode_to_vec()).await
            }
        }
    }
}

/// One OTLP/HTTP request with a protobuf body.
async fn post(
    client: &Client,
    url: &hyper::Uri,
    headers: &[(String, String)],
    timeout: Duration,
    body: Vec<u8>,
) -> Result<(), String> {
    let mut req = hyper::Request::post(url.clone()).header("content-type", "application/x-protobuf");
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req.body(Full::new(Bytes::from(body))).map_err(|e| e.to_string())?;
    let send = async {
        let resp = client.request(req).await.map_err(|e| crate::telemetry::error_chain(&e))?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        if status.is_success() {
            Ok(())
        } else {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            Err(format!("HTTP {status}: {text}"))
        }
    };
    tokio::time::timeout(timeout, send).await.map_err(|_| format!("timed out after {timeout:?}"))?
}

fn grpc_error(s: tonic::Status) -> String {
    let src = std::error::Error::source(&s).map(|e| format!(": {e}")).unwrap_or_default();
    format!("gRPC {:?}: {}{src}", s.code(), s.message())
}

/// `k=v,k2=v2`, values percent-decoded (the OTel environment variable format).
pub fn parse_headers(raw: &str) -> Result<Vec<(String, String)>, TransportError> {
    let mut out = Vec::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| TransportError::Header(pair.to_string()))?;
        let k = k.trim().to_ascii_lowercase();
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            return Err(TransportError::Header(pair.to_string()));
        }
        // A later pair wins (OTEL_EXPORTER_OTLP_<SIGNAL>_HEADERS come after the shared ones).
        out.retain(|(key, _): &(String, String)| *key != k);
        out.push((k, percent_decode(v.trim())));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `tls`: the endpoint is https://. Only then are the system's roots loaded (parsing them
/// takes seconds on a slow machine, for nothing when the collector speaks plain HTTP).
fn connector(tls: bool, insecure: bool) -> HttpsConnector<HttpConnector> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions");
    let config = if insecure {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider))).with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        if tls {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http)
}

/// `insecure_skip_verify`: accepts any server certificate (signatures are still checked so the
/// handshake is well formed).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_pairs_with_percent_decoded_values() {
        let h = parse_headers("Authorization=Basic%20eHl6, x-tenant = a ,").unwrap();
        assert_eq!(h, [("authorization".to_string(), "Basic eHl6".to_string()), ("x-tenant".into(), "a".into())]);
        assert!(parse_headers("").unwrap().is_empty());
        assert!(matches!(parse_headers("novalue"), Err(TransportError::Header(p)) if p == "novalue"));
        assert!(parse_headers("bad key=v").is_err());
        assert_eq!(parse_headers("k=100%").unwrap()[0].1, "100%");
        assert_eq!(
            parse_headers("a=1,b=2,a=3").unwrap(),
            [("b".to_string(), "2".to_string()), ("a".into(), "3".into())]
        );
    }
}
