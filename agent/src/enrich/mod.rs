//! Stage `enrich`: attaches the service identity and the route to each decoded request.
pub mod routes;

use std::sync::Arc;

use crate::attach::{Traced, TracedProcess};
use crate::decode::Request;
use routes::RouteMatcher;

/// A request with everything the exporters need.
#[derive(Debug, Clone)]
pub struct Span {
    pub process: Arc<TracedProcess>,
    pub request: Request,
    /// `http.route`; `None` when routes leave it unset.
    pub route: Option<String>,
}

pub struct Enricher {
    traced: Arc<Traced>,
    routes: RouteMatcher,
}

impl Enricher {
    pub fn new(traced: Arc<Traced>, routes: RouteMatcher) -> Self {
        Enricher { traced, routes }
    }

    /// `None` when the request is to be dropped: its process is no longer known, or its path
    /// matches `routes.ignored_patterns`.
    pub fn enrich(&mut self, request: Request) -> Option<Span> {
        let process = self.traced.get(request.pid)?;
        let path = request.path();
        if self.routes.ignored(path) {
            return None;
        }
        let route = self.routes.route(path);
        Some(Span { process, request, route })
    }
}
