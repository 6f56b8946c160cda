//! The application metrics, defined once. Each row says a metric's names (OpenTelemetry and
//! Prometheus), unit, help, buckets, which spans feed it and with what value, and the
//! attributes it can carry (reported by default or only when selected). The Prometheus
//! registry ([`super::AppMetrics`]) and the OTLP exporter both read [`METRICS`], and
//! `attributes.select` ([`AttributeSelection`]) picks each metric's attributes from its row, so a new
//! metric is one row here and nothing in either exporter.
use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::config::sections::attributes::InclusionLists;
use crate::config::GlobPattern;
use crate::decode::{Family, Role};
use crate::enrich::Span;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Bytes,
}

impl Unit {
    /// UCUM, as OTLP wants it.
    pub fn otel(self) -> &'static str {
        match self {
            Unit::Seconds => "s",
            Unit::Bytes => "By",
        }
    }

    /// The suffix Prometheus names get (`_seconds`, `_bytes`).
    pub fn prometheus(self) -> prometheus_client::registry::Unit {
        match self {
            Unit::Seconds => prometheus_client::registry::Unit::Seconds,
            Unit::Bytes => prometheus_client::registry::Unit::Bytes,
        }
    }
}

/// Which of the configured bucket lists (`*_export.buckets`) a histogram uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketList {
    Duration = 0,
    RequestSize = 1,
    ResponseSize = 2,
}

/// One attribute a metric can carry.
pub struct Attr {
    pub otel: &'static str,
    pub prom: &'static str,
    /// Reported unless `attributes.select` removes it; the others only when selected.
    pub default: bool,
    /// An integer in OTLP (status codes, ports); Prometheus labels are all strings.
    pub int: bool,
    /// Its value for a span; `None` leaves the attribute out (`http.route` without routes).
    pub value: fn(&Span) -> Option<String>,
}

/// One metric.
pub struct MetricDef {
    pub otel: &'static str,
    /// Without the unit suffix, which the Prometheus registry appends.
    pub prom: &'static str,
    pub unit: Unit,
    pub help: &'static str,
    pub buckets: BucketList,
    /// Whether a span is recorded in this metric.
    pub feeds: fn(&Span) -> bool,
    /// The value a span records; `None` records nothing (a body size that is not known).
    pub value: fn(&Span) -> Option<f64>,
    /// In the order labels are written.
    pub attrs: &'static [Attr],
}

fn fed(s: &Span, family: Family, role: Role) -> bool {
    s.request.role == role && s.request.family() == family
}

/// An attribute the operation's parser set (protocols other than HTTP/gRPC).
fn reported(s: &Span, otel: &str) -> Option<String> {
    s.request.attribute(otel).map(|v| v.to_string())
}

fn duration(s: &Span) -> Option<f64> {
    Some(s.request.duration_ns() as f64 / 1e9)
}

/// Body sizes of a message whose head was cut short are unknown: not recorded.
fn request_body(s: &Span) -> Option<f64> {
    (!s.request.body_sizes_unknown).then_some(s.request.request_body_size as f64)
}

fn response_body(s: &Span) -> Option<f64> {
    (!s.request.body_sizes_unknown).then_some(s.request.response_body_size as f64)
}

fn server_address(s: &Span) -> Option<String> {
    Some(super::server_endpoint(s).0)
}

fn server_port(s: &Span) -> Option<String> {
    Some(super::server_endpoint(s).1.to_string())
}

/// The client's address: the peer of a server, the local end of a client.
fn client_address(s: &Span) -> Option<String> {
    Some(client_ip(s).to_string())
}

pub(crate) fn client_ip(s: &Span) -> IpAddr {
    match s.request.role {
        Role::Server => s.request.remote.ip(),
        Role::Client => s.request.local.ip(),
    }
}

const HTTP_ATTRS: &[Attr] = &[
    Attr {
        otel: "http.request.method",
        prom: "http_request_method",
        default: true,
        int: false,
        value: |s| Some(s.request.method.clone()),
    },
    Attr {
        otel: "http.response.status_code",
        prom: "http_response_status_code",
        default: true,
        int: true,
        value: |s| Some(s.request.status.to_string()),
    },
    Attr { otel: "http.route", prom: "http_route", default: true, int: false, value: |s| s.route.clone() },
    Attr { otel: "server.address", prom: "server_address", default: true, int: false, value: server_address },
    Attr { otel: "server.port", prom: "server_port", default: true, int: true, value: server_port },
    Attr {
        otel: "url.scheme",
        prom: "url_scheme",
        default: true,
        int: false,
        value: |s| Some(s.request.scheme().into()),
    },
    Attr {
        otel: "url.path",
        prom: "url_path",
        default: false,
        int: false,
        value: |s| Some(s.request.path().to_string()),
    },
    Attr { otel: "client.address", prom: "client_address", default: false, int: false, value: client_address },
];

const RPC_ATTRS: &[Attr] = &[
    Attr {
        otel: "rpc.grpc.status_code",
        prom: "rpc_grpc_status_code",
        default: true,
        int: true,
        value: |s| s.request.grpc_status.map(|c| c.to_string()),
    },
    Attr {
        otel: "rpc.method",
        prom: "rpc_method",
        default: true,
        int: false,
        value: |s| Some(s.request.target.clone()),
    },
    Attr { otel: "rpc.system", prom: "rpc_system", default: true, int: false, value: |_| Some("grpc".into()) },
    Attr { otel: "server.address", prom: "server_address", default: true, int: false, value: server_address },
    Attr { otel: "server.port", prom: "server_port", default: true, int: true, value: server_port },
    Attr { otel: "client.address", prom: "client_address", default: false, int: false, value: client_address },
];

const DB_ATTRS: &[Attr] = &[
    Attr {
        otel: "db.operation.name",
        prom: "db_operation_name",
        default: true,
        int: false,
        value: |s| reported(s, "db.operation.name"),
    },
    Attr {
        otel: "db.system.name",
        prom: "db_system_name",
        default: true,
        int: false,
        value: |s| reported(s, "db.system.name"),
    },
    Attr {
        otel: "error.type",
        prom: "error_type",
        default: true,
        int: false,
        value: |s| s.request.operation.as_ref().and_then(|op| op.error.clone()),
    },
    Attr { otel: "server.address", prom: "server_address", default: true, int: false, value: server_address },
    Attr { otel: "server.port", prom: "server_port", default: false, int: true, value: server_port },
    Attr {
        otel: "db.namespace",
        prom: "db_namespace",
        default: false,
        int: false,
        value: |s| reported(s, "db.namespace"),
    },
];

/// Every application metric, in OTLP export order.
pub const METRICS: &[MetricDef] = &[
    MetricDef {
        otel: "http.server.request.duration",
        prom: "http_server_request_duration",
        unit: Unit::Seconds,
        help: "Duration of HTTP service calls from the server side",
        buckets: BucketList::Duration,
        feeds: |s| fed(s, Family::Http, Role::Server),
        value: duration,
        attrs: HTTP_ATTRS,
    },
    MetricDef {
        otel: "http.server.request.body.size",
        prom: "http_server_request_body_size",
        unit: Unit::Bytes,
        help: "Size of the HTTP request body as received at the server side",
        buckets: BucketList::RequestSize,
        feeds: |s| fed(s, Family::Http, Role::Server),
        value: request_body,
        attrs: HTTP_ATTRS,
    },
    MetricDef {
        otel: "http.server.response.body.size",
        prom: "http_server_response_body_size",
        unit: Unit::Bytes,
        help: "Size of the HTTP response body as sent from the server side",
        buckets: BucketList::ResponseSize,
        feeds: |s| fed(s, Family::Http, Role::Server),
        value: response_body,
        attrs: HTTP_ATTRS,
    },
    MetricDef {
        otel: "http.client.request.duration",
        prom: "http_client_request_duration",
        unit: Unit::Seconds,
        help: "Duration of HTTP service calls from the client side",
        buckets: BucketList::Duration,
        feeds: |s| fed(s, Family::Http, Role::Client),
        value: duration,
        attrs: HTTP_ATTRS,
    },
    MetricDef {
        otel: "http.client.request.body.size",
        prom: "http_client_request_body_size",
        unit: Unit::Bytes,
        help: "Size of the HTTP request body as sent from the client side",
        buckets: BucketList::RequestSize,
        feeds: |s| fed(s, Family::Http, Role::Client),
        value: request_body,
        attrs: HTTP_ATTRS,
    },
    MetricDef {
        otel: "http.client.response.body.size",
        prom: "http_client_response_body_size",
        unit: Unit::Bytes,
        help: "Size of the HTTP response body as received at the client side",
        buckets: BucketList::ResponseSize,
        feeds: |s| fed(s, Family::Http, Role::Client),
        value: response_body,
        attrs: HTTP_ATTRS,
    },
    MetricDef {
        otel: "rpc.server.call.duration",
        prom: "rpc_server_call_duration",
        unit: Unit::Seconds,
        help: "Duration of RPC service calls from the server side",
        buckets: BucketList::Duration,
        feeds: |s| fed(s, Family::Rpc, Role::Server),
        value: duration,
        attrs: RPC_ATTRS,
    },
    MetricDef {
        otel: "rpc.client.call.duration",
        prom: "rpc_client_call_duration",
        unit: Unit::Seconds,
        help: "Duration of RPC service calls from the client side",
        buckets: BucketList::Duration,
        feeds: |s| fed(s, Family::Rpc, Role::Client),
        value: duration,
        attrs: RPC_ATTRS,
    },
    MetricDef {
        otel: "db.client.operation.duration",
        prom: "db_client_operation_duration",
        unit: Unit::Seconds,
        help: "Duration of database client operations",
        buckets: BucketList::Duration,
        feeds: |s| fed(s, Family::Db, Role::Client),
        value: duration,
        attrs: DB_ATTRS,
    },
];

/// The attributes each metric of [`METRICS`] reports, from `attributes.select`.
#[derive(Debug, Clone)]
pub struct AttributeSelection {
    /// By metric index: indices into its `attrs`, in table order.
    chosen: Vec<Vec<usize>>,
    /// By metric index: whether each Kubernetes attribute ([`K8S`]) is reported.
    k8s: Vec<Vec<bool>>,
}

/// The Kubernetes attributes (OTel and Prometheus names): every metric reports those known
/// unless selected away. Prometheus labels; OTLP carries them in the resource instead.
const K8S: &[(&str, &str)] = crate::kube::meta::ATTRIBUTES;

impl Default for AttributeSelection {
    fn default() -> Self {
        AttributeSelection::new(&BTreeMap::new()).expect("no patterns to compile")
    }
}

/// A metric name as a user writes it (Prometheus or OTel form, with or without the unit or
/// series suffix), in the OTel form the table's names are matched in:
/// `http_server_request_duration_seconds_bucket` -> `http.server.request.duration`.
fn normalize_metric(name: &str) -> String {
    let mut n = name.replace('_', ".");
    for suffix in [".bucket", ".count", ".sum", ".total", ".seconds", ".bytes"] {
        if let Some(stripped) = n.strip_suffix(suffix) {
            n = stripped.to_string();
        }
    }
    n
}

/// Attribute patterns are matched in the Prometheus form, whichever form they are written in.
fn attr_patterns(key: &str, list: &str, patterns: &[String]) -> Result<Vec<GlobPattern>, (String, String)> {
    patterns
        .iter()
        .enumerate()
        .map(|(i, p)| {
            GlobPattern::new(&p.replace('.', "_")).map_err(|e| (format!("attributes.select.{key}.{list}[{i}]"), e))
        })
        .collect()
}

impl AttributeSelection {
    /// Beyla's rules: the entries whose key (a glob) matches a metric apply from the broadest to
    /// the most specific (sorted by key). The first starts from its `include` list, or from the
    /// default attributes when it has none; each adds what its `include` matches and removes
    /// what its `exclude` matches. A metric no entry matches reports its default attributes.
    /// An invalid glob is an error naming its key.
    pub fn new(select: &BTreeMap<String, InclusionLists>) -> Result<Self, (String, String)> {
        let mut entries = Vec::new();
        for (key, lists) in select {
            let metric =
                GlobPattern::new(&normalize_metric(key)).map_err(|e| (format!("attributes.select.{key}"), e))?;
            let include = match &lists.include {
                Some(l) if !l.is_empty() => Some(attr_patterns(key, "include", l)?),
                _ => None,
            };
            let exclude = attr_patterns(key, "exclude", &lists.exclude)?;
            entries.push((normalize_metric(key), metric, include, exclude));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut chosen = Vec::new();
        let mut k8s = Vec::new();
        for def in METRICS {
            // The metric's own attributes, then the Kubernetes ones (default when known).
            let names: Vec<&str> = def.attrs.iter().map(|a| a.prom).chain(K8S.iter().map(|(_, p)| *p)).collect();
            let defaults = || def.attrs.iter().map(|a| a.default).chain(K8S.iter().map(|_| true)).collect::<Vec<_>>();
            let matches = |globs: &[GlobPattern], name: &str| globs.iter().any(|g| g.is_match(name));
            let mut on: Option<Vec<bool>> = None;
            for (_, _, include, exclude) in entries.iter().filter(|e| e.1.is_match(def.otel)) {
                let set = on.get_or_insert_with(|| match include {
                    Some(_) => vec![false; names.len()],
                    None => defaults(),
                });
                for (i, name) in names.iter().enumerate() {
                    if include.as_ref().is_some_and(|g| matches(g, name)) {
                        set[i] = true;
                    }
                    if matches(exclude, name) {
                        set[i] = false;
                    }
                }
            }
            let on = on.unwrap_or_else(defaults);
            let (own, kube) = on.split_at(def.attrs.len());
            chosen.push(own.iter().enumerate().filter(|(_, on)| **on).map(|(i, _)| i).collect());
            k8s.push(kube.to_vec());
        }
        Ok(AttributeSelection { chosen, k8s })
    }

    /// The `attributes.select` keys that match no metric of the table (network metrics, a
    /// typo): the caller warns about them.
    pub fn unmatched_keys(select: &BTreeMap<String, InclusionLists>) -> Vec<String> {
        select
            .keys()
            .filter(|k| {
                GlobPattern::new(&normalize_metric(k)).is_ok_and(|g| !METRICS.iter().any(|d| g.is_match(d.otel)))
            })
            .cloned()
            .collect()
    }

    /// The attributes metric `metric` (an index of [`METRICS`]) reports.
    pub fn attrs(&self, metric: usize) -> impl Iterator<Item = &'static Attr> + '_ {
        self.chosen[metric].iter().map(move |&i| &METRICS[metric].attrs[i])
    }

    /// Whether metric `metric` reports the Kubernetes attribute of Prometheus name `prom`.
    pub fn reports_k8s(&self, metric: usize, prom: &str) -> bool {
        K8S.iter().position(|(_, p)| *p == prom).is_some_and(|i| self.k8s[metric][i])
    }

    /// Whether any metric reports the attribute `otel`.
    pub fn reports(&self, otel: &str) -> bool {
        (0..METRICS.len()).any(|m| self.attrs(m).any(|a| a.otel == otel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lists(include: Option<&[&str]>, exclude: &[&str]) -> InclusionLists {
        InclusionLists {
            include: include.map(|l| l.iter().map(|s| s.to_string()).collect()),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn names(sel: &AttributeSelection, metric: &str) -> Vec<&'static str> {
        let m = METRICS.iter().position(|d| d.otel == metric).expect("metric");
        sel.attrs(m).map(|a| a.prom).collect()
    }

    #[test]
    fn defaults_without_selection() {
        let sel = AttributeSelection::default();
        assert_eq!(
            names(&sel, "http.server.request.duration"),
            [
                "http_request_method",
                "http_response_status_code",
                "http_route",
                "server_address",
                "server_port",
                "url_scheme"
            ]
        );
        assert_eq!(
            names(&sel, "rpc.client.call.duration"),
            ["rpc_grpc_status_code", "rpc_method", "rpc_system", "server_address", "server_port"]
        );
    }

    #[test]
    fn entries_apply_from_broadest_to_most_specific_in_either_naming() {
        let mut select = BTreeMap::new();
        select.insert("*".to_string(), lists(None, &["server.*"]));
        select.insert("http_server_request_duration_seconds".to_string(), lists(Some(&["url.path"]), &["url_scheme"]));
        select.insert("http.client.*".to_string(), lists(Some(&["client_address", "http.request.method"]), &[]));
        let sel = AttributeSelection::new(&select).unwrap();
        // `*` first: the defaults without server.*; then url.path added and url.scheme removed.
        assert_eq!(
            names(&sel, "http.server.request.duration"),
            ["http_request_method", "http_response_status_code", "http_route", "url_path"]
        );
        // Only `*` matches: the defaults without server.*.
        assert_eq!(
            names(&sel, "http.server.request.body.size"),
            ["http_request_method", "http_response_status_code", "http_route", "url_scheme"]
        );
        assert_eq!(
            names(&sel, "http.client.request.duration"),
            ["http_request_method", "http_response_status_code", "http_route", "url_scheme", "client_address"]
        );
        assert_eq!(names(&sel, "rpc.server.call.duration"), ["rpc_grpc_status_code", "rpc_method", "rpc_system"]);
    }

    #[test]
    fn an_include_list_replaces_the_defaults() {
        let mut select = BTreeMap::new();
        select.insert("http_server_request_duration".to_string(), lists(Some(&["http_route", "http.request.*"]), &[]));
        let sel = AttributeSelection::new(&select).unwrap();
        assert_eq!(names(&sel, "http.server.request.duration"), ["http_request_method", "http_route"]);
        assert!(!sel.reports("url.path"));
        assert!(sel.reports("http.route"));
    }

    #[test]
    fn kubernetes_attributes_are_reported_unless_selected_away() {
        let m = |otel: &str| METRICS.iter().position(|d| d.otel == otel).expect("metric");
        let sel = AttributeSelection::default();
        assert!(sel.reports_k8s(m("http.client.request.duration"), "k8s_pod_name"));
        let mut select = BTreeMap::new();
        select.insert("http_client_request_duration".to_string(), lists(None, &["k8s.pod.*"]));
        select.insert("rpc_server_call_duration".to_string(), lists(Some(&["rpc_method"]), &[]));
        let sel = AttributeSelection::new(&select).unwrap();
        let client = m("http.client.request.duration");
        assert!(!sel.reports_k8s(client, "k8s_pod_name") && !sel.reports_k8s(client, "k8s_pod_uid"));
        assert!(sel.reports_k8s(client, "k8s_namespace_name"));
        assert!(sel.reports_k8s(m("http.server.request.duration"), "k8s_pod_name"));
        // An include list replaces every default, the Kubernetes ones too.
        assert!(!sel.reports_k8s(m("rpc.server.call.duration"), "k8s_namespace_name"));
    }

    #[test]
    fn bad_globs_name_their_key_and_unknown_metrics_are_listed() {
        let mut select = BTreeMap::new();
        select.insert("http_*".to_string(), lists(Some(&["ok", "[bad"]), &[]));
        let (key, msg) = AttributeSelection::new(&select).unwrap_err();
        assert_eq!(key, "attributes.select.http_*.include[1]");
        assert!(msg.contains("invalid glob"), "{msg}");
        let mut select = BTreeMap::new();
        select.insert("beyla_network_flow_bytes".to_string(), lists(None, &["src_port"]));
        select.insert("rpc_*".to_string(), lists(None, &[]));
        assert_eq!(AttributeSelection::unmatched_keys(&select), ["beyla_network_flow_bytes"]);
    }

    #[test]
    fn metric_names_normalize_to_the_otel_form() {
        assert_eq!(normalize_metric("http_server_request_duration_seconds_bucket"), "http.server.request.duration");
        assert_eq!(normalize_metric("http.server.request.body.size"), "http.server.request.body.size");
        assert_eq!(normalize_metric("http_client_response_body_size_bytes"), "http.client.response.body.size");
    }
}
