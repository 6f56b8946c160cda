//! Serves registries in the OpenMetrics text format over HTTP.
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// One scrape path and the registry behind it.
#[derive(Clone)]
pub struct Endpoint {
    pub path: String,
    pub registry: Arc<Registry>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for {what}: {source} (is the port in use? change {key})")]
pub struct BindError {
    pub addr: SocketAddr,
    pub what: &'static str,
    pub key: &'static str,
    #[source]
    pub source: std::io::Error,
}

/// Binds before the pipeline starts so a taken port fails start-up with a clear error.
pub async fn bind(port: u16, what: &'static str, key: &'static str) -> Result<TcpListener, BindError> {
    let addr = SocketAddr::from(([0, 0, 0, 0], port));
    TcpListener::bind(addr).await.map_err(|source| BindError { addr, what, key, source })
}

fn render(endpoints: &[Endpoint], path: &str) -> Response<Full<Bytes>> {
    let Some(ep) = endpoints.iter().find(|e| e.path == path) else {
        let mut r = Response::new(Full::new(Bytes::from_static(b"not found\n")));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    };
    let mut body = String::new();
    if encode(&mut body, &ep.registry).is_err() {
        let mut r = Response::new(Full::new(Bytes::from_static(b"encoding failed\n")));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        return r;
    }
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

/// Serves `endpoints` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, endpoints: Vec<Endpoint>) {
    let endpoints = Arc::new(endpoints);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "Metrics endpoint accept failed.");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let resp = render(&endpoints, req.uri().path());
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
