//! `network` and `health_check` sections.

use serde::{Deserialize, Serialize};

use crate::config::types::Duration;

/// `network` section: network flow metrics. Accepted, not implemented yet; Beyla's defaults
/// are given for the unset (`None`) values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Network {
    /// Enable network metrics (deprecated in Beyla: add `network` to the exporter's
    /// `features`). Default false. Env: `BEYLA_NETWORK_METRICS`.
    pub enable: bool,
    /// Event source: `socket_filter` or `tc`. Default: unset (`socket_filter`).
    /// Env: `BEYLA_NETWORK_SOURCE`.
    pub source: Option<String>,
    /// CIDRs reported as `src.cidr`/`dst.cidr`. Default: unset. Env: `BEYLA_NETWORK_CIDRS`.
    pub cidrs: Option<Vec<String>>,
    /// Reported agent IP. Default: unset (detected). Env: `BEYLA_NETWORK_AGENT_IP`.
    pub agent_ip: Option<String>,
    /// Interface to take the agent IP from: `external`, `local` or `name:<iface>`.
    /// Default: unset (`external`). Env: `BEYLA_NETWORK_AGENT_IP_IFACE`.
    pub agent_ip_iface: Option<String>,
    /// `any`, `ipv4` or `ipv6`. Default: unset (`any`). Env: `BEYLA_NETWORK_AGENT_IP_TYPE`.
    pub agent_ip_type: Option<String>,
    /// Interfaces to capture (names, or `/regex/`). Default: unset (all).
    /// Env: `BEYLA_NETWORK_INTERFACES`.
    pub interfaces: Option<Vec<String>>,
    /// Interfaces to skip. Default: unset (`[lo]`). Env: `BEYLA_NETWORK_EXCLUDE_INTERFACES`.
    pub exclude_interfaces: Option<Vec<String>>,
    /// Keep only these transport protocols. Default: unset. Env: `BEYLA_NETWORK_PROTOCOLS`.
    pub protocols: Option<Vec<String>>,
    /// Drop these transport protocols. Default: unset. Env: `BEYLA_NETWORK_EXCLUDE_PROTOCOLS`.
    pub exclude_protocols: Option<Vec<String>>,
    /// Flows kept before a flush. Default: unset (5000). Env: `BEYLA_NETWORK_CACHE_MAX_FLOWS`.
    pub cache_max_flows: Option<u32>,
    /// Longest time a flow is kept before a flush. Default: unset (`5s`).
    /// Env: `BEYLA_NETWORK_CACHE_ACTIVE_TIMEOUT`.
    pub cache_active_timeout: Option<Duration>,
    /// Deduplication: `none` or `first_come`. Default: unset (`first_come`).
    /// Env: `BEYLA_NETWORK_DEDUPER`.
    pub deduper: Option<String>,
    /// Expiry of the `first_come` deduper. Default: unset. Env: `BEYLA_NETWORK_DEDUPER_FC_TTL`.
    pub deduper_fc_ttl: Option<Duration>,
    /// `ingress`, `egress` or `both`. Default: unset (`both`). Env: `BEYLA_NETWORK_DIRECTION`.
    pub direction: Option<String>,
    /// Sample one packet in N; 0 disables sampling. Default: unset (0).
    /// Env: `BEYLA_NETWORK_SAMPLING`.
    pub sampling: Option<u32>,
    /// `watch` or `poll` for interface changes. Default: unset (`watch`).
    /// Env: `BEYLA_NETWORK_LISTEN_INTERFACES`.
    pub listen_interfaces: Option<String>,
    /// Poll period for `listen_interfaces: poll`. Default: unset (`10s`).
    /// Env: `BEYLA_NETWORK_LISTEN_POLL_PERIOD`.
    pub listen_poll_period: Option<Duration>,
    /// Reverse DNS decoration. Default: unset.
    pub reverse_dns: Option<serde_yaml::Value>,
    /// Print flows to standard output. Default false. Env: `BEYLA_NETWORK_PRINT_FLOWS`.
    pub print_flows: bool,
}

/// `health_check` section: a `/healthz` endpoint. Accepted, not implemented yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthCheck {
    /// TCP port; unset or 0 disables it. Default: unset. Env: `BEYLA_HEALTH_CHECK_PORT`.
    pub port: Option<u16>,
    /// Listen address. Default: unset (`127.0.0.1`). Env: `BEYLA_HEALTH_CHECK_LISTEN_ADDRESS`.
    pub listen_address: Option<String>,
    /// Unix socket path (overrides the TCP settings). Default: unset.
    /// Env: `BEYLA_HEALTH_CHECK_UNIX_SOCKET_PATH`.
    pub unix_socket_path: Option<String>,
}
