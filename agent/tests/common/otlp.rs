//! A real OTLP receiver for the tests, built on the official protobuf definitions
//! (`opentelemetry-proto`): gRPC (tonic) or HTTP/protobuf (hyper), recording what it gets.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Grpc,
    Http,
    /// HTTP/protobuf over TLS with a self-signed certificate.
    Https,
}

#[derive(Default)]
pub struct Received {
    pub traces: Vec<ExportTraceServiceRequest>,
    pub metrics: Vec<ExportMetricsServiceRequest>,
    /// Request headers seen (lowercase name, value), for header propagation checks.
    pub headers: Vec<(String, String)>,
}

/// A span with the resource it came with.
#[derive(Debug, Clone)]
pub struct Got {
    pub resource: Resource,
    pub span: Span,
}

pub struct Receiver {
    pub port: u16,
    pub proto: Proto,
    pub received: Arc<Mutex<Received>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    pub fn start(proto: Proto, port: u16) -> Receiver {
        Self::start_with(proto, port, Arc::new(Mutex::new(Received::default())))
    }

    /// Starts on `port` recording into `received` (so a restarted receiver keeps the log).
    pub fn start_with(proto: Proto, port: u16, received: Arc<Mutex<Received>>) -> Receiver {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let rec = received.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            rt.block_on(async move {
                let addr: SocketAddr = ([127, 0, 0, 1], port).into();
                let listener = loop {
                    match tokio::net::TcpListener::bind(addr).await {
                        Ok(l) => break l,
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                };
                ready_tx.send(()).unwrap();
                match proto {
                    Proto::Grpc => {
                        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
                        tonic::transport::Server::builder()
                            .add_service(TraceServiceServer::new(Sink(rec.clone())))
                            .add_service(MetricsServiceServer::new(Sink(rec)))
                            .serve_with_incoming_shutdown(incoming, async {
                                let _ = stop_rx.await;
                            })
                            .await
                            .unwrap();
                    }
                    Proto::Http => serve_http(listener, rec, stop_rx, None).await,
                    Proto::Https => serve_http(listener, rec, stop_rx, Some(self_signed())).await,
                }
            });
        });
        ready_rx.recv_timeout(Duration::from_secs(30)).expect("OTLP receiver did not start");
        Receiver { port, proto, received, stop: Some(stop_tx), thread: Some(thread) }
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.proto == Proto::Https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Spans received that satisfy `f`, counted under the lock without copying them (a
    /// polling test must not hold the lock the receiving handler needs for long: a client
    /// that times out resends).
    pub fn count_spans(&self, f: impl Fn(&Span) -> bool) -> usize {
        let r = self.received.lock().unwrap();
        r.traces
            .iter()
            .flat_map(|t| t.resource_spans.iter())
            .flat_map(|rs| rs.scope_spans.iter())
            .flat_map(|ss| ss.spans.iter())
            .filter(|s| f(s))
            .count()
    }

    pub fn spans(&self) -> Vec<Got> {
        let r = self.received.lock().unwrap();
        r.traces
            .iter()
            .flat_map(|t| t.resource_spans.iter())
            .flat_map(|rs| {
                let res = rs.resource.clone().unwrap_or_default();
                rs.scope_spans.iter().flat_map(move |ss| {
                    let res = res.clone();
                    ss.spans.iter().map(move |s| Got { resource: res.clone(), span: s.clone() })
                })
            })
            .collect()
    }

    /// The newest cumulative count of histogram `name` (or value of sum `name`), summed over
    /// the data points whose resource has `service.name` = `service` and whose attributes
    /// include `want`.
    pub fn histogram_count(&self, service: &str, name: &str, want: &[(&str, &str)]) -> u64 {
        let r = self.received.lock().unwrap();
        let Some(last) = r.metrics.iter().rev().find(|m| {
            m.resource_metrics
                .iter()
                .any(|rm| res_attr(rm.resource.as_ref(), "service.name").as_deref() == Some(service))
        }) else {
            return 0;
        };
        let mut total = 0;
        for rm in &last.resource_metrics {
            if res_attr(rm.resource.as_ref(), "service.name").as_deref() != Some(service) {
                continue;
            }
            for m in rm.scope_metrics.iter().flat_map(|s| s.metrics.iter()).filter(|m| m.name == name) {
                let matches =
                    |attrs: &[KeyValue]| want.iter().all(|(k, v)| attrs.iter().any(|a| a.key == *k && value(a) == *v));
                total += match &m.data {
                    Some(Data::Histogram(h)) => {
                        h.data_points.iter().filter(|p| matches(&p.attributes)).map(|p| p.count).sum::<u64>()
                    }
                    Some(Data::ExponentialHistogram(h)) => {
                        h.data_points.iter().filter(|p| matches(&p.attributes)).map(|p| p.count).sum::<u64>()
                    }
                    Some(Data::Sum(s)) => s
                        .data_points
                        .iter()
                        .filter(|p| matches(&p.attributes))
                        .map(|p| match p.value {
                            Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(n)) => {
                                n as u64
                            }
                            _ => 0,
                        })
                        .sum::<u64>(),
                    _ => 0,
                };
            }
        }
        total
    }

    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An attribute's value as text (ints in decimal).
pub fn value(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

pub fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|a| a.key == key).map(value)
}

pub fn res_attr(r: Option<&Resource>, key: &str) -> Option<String> {
    r.and_then(|r| attr(&r.attributes, key))
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct Sink(Arc<Mutex<Received>>);

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut r = self.0.lock().unwrap();
        for kv in req.metadata().iter() {
            if let tonic::metadata::KeyAndValueRef::Ascii(k, v) = kv {
                r.headers.push((k.to_string(), v.to_str().unwrap_or_default().to_string()));
            }
        }
        r.traces.push(req.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tonic::async_trait]
impl MetricsService for Sink {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().metrics.push(req.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse { partial_success: None }))
    }
}

fn self_signed() -> tokio_rustls::TlsAcceptor {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

async fn serve_http(
    listener: tokio::net::TcpListener,
    rec: Arc<Mutex<Received>>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let (stream, _) = tokio::select! {
            c = listener.accept() => match c { Ok(c) => c, Err(_) => continue },
            _ = &mut stop => return,
        };
        let rec = rec.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let rec = rec.clone();
                async move {
                    let path = req.uri().path().to_string();
                    let ctype =
                        req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    let headers: Vec<(String, String)> = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
                        .collect();
                    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let status = if ctype != "application/x-protobuf" {
                        415
                    } else {
                        let mut r = rec.lock().unwrap();
                        r.headers.extend(headers);
                        match path.as_str() {
                            "/v1/traces" => match ExportTraceServiceRequest::decode(body) {
                                Ok(t) => {
                                    r.traces.push(t);
                                    200
                                }
                                Err(_) => 400,
                            },
                            "/v1/metrics" => match ExportMetricsServiceRequest::decode(body) {
                                Ok(m) => {
                                    r.metrics.push(m);
                                    200
                                }
                                Err(_) => 400,
                            },
                            _ => 404,
                        }
                    };
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .status(status)
                            .header("content-type", "application/x-protobuf")
                            .body(Full::new(bytes::Bytes::new()))
                            .unwrap(),
                    )
                }
            });
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                // A client that rejects the certificate ends the handshake: nothing to serve.
                Some(acceptor) => {
                    if let Ok(s) = acceptor.accept(stream).await {
                        let _ = http.serve_connection(hyper_util::rt::TokioIo::new(s), svc).await;
                    }
                }
                None => {
                    let _ = http.serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await;
                }
            }
        });
    }
}

/// The names of `server`'s internal children among `all` (its `in queue` and `processing`
/// phases when the handler's start is known), sorted.
pub fn phases<'a>(all: &'a [Got], server: &Got) -> Vec<&'a str> {
    let mut kids: Vec<&str> = all
        .iter()
        .filter(|p| p.span.kind == 1 && p.span.parent_span_id == server.span.span_id)
        .map(|p| p.span.name.as_str())
        .collect();
    kids.sort();
    kids
}
