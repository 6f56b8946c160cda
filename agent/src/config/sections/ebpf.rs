//! `ebpf` section: knobs of the kernel-side tracer.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use crate::config::types::Duration;

/// Trace context propagation (`ebpf.context_propagation`): `disabled`, `all`, or a
/// comma-separated combination of `headers` (alias `http`), `tcp` and `ip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContextPropagation {
    /// Inject `traceparent` into outgoing HTTP headers.
    pub headers: bool,
    /// Carry the context in TCP options.
    pub tcp: bool,
    /// Carry the context in IP options.
    pub ip: bool,
}

impl ContextPropagation {
    /// Everything enabled (`all`).
    pub const ALL: ContextPropagation = ContextPropagation { headers: true, tcp: true, ip: true };
    /// Nothing enabled (`disabled`, the default).
    pub const DISABLED: ContextPropagation = ContextPropagation { headers: false, tcp: false, ip: false };

    /// Whether any propagation is enabled.
    pub fn is_enabled(&self) -> bool {
        self.headers || self.tcp || self.ip
    }

    /// Parses `all`, `disabled` or a comma-separated list of `headers|http`, `tcp`, `ip`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "all" => return Ok(Self::ALL),
            "disabled" | "" => return Ok(Self::DISABLED),
            _ => {}
        }
        let mut out = Self::DISABLED;
        for part in text.split(',').map(str::trim) {
            match part {
                "headers" | "http" => out.headers = true,
                "tcp" => out.tcp = true,
                "ip" => out.ip = true,
                _ => {
                    return Err(format!(
                        "invalid context propagation {part:?}: expected `all`, `disabled`, or a \
                         comma-separated list of `headers`, `tcp`, `ip`"
                    ))
                }
            }
        }
        Ok(out)
    }
}

impl fmt::Display for ContextPropagation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Self::ALL {
            return f.write_str("all");
        }
        if !self.is_enabled() {
            return f.write_str("disabled");
        }
        let parts: Vec<&str> = [(self.headers, "headers"), (self.tcp, "tcp"), (self.ip, "ip")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl Serialize for ContextPropagation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ContextPropagation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        ContextPropagation::parse(&text).map_err(de::Error::custom)
    }
}

/// Traffic-control attachment backend (`ebpf.traffic_control_backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TcBackend {
    /// Netlink `clsact` qdisc.
    Tc,
    /// TCX links (Linux >= 6.6).
    Tcx,
    /// TCX when the kernel has it, else `tc` (default).
    #[default]
    Auto,
}

/// What database spans say of their statement in `db.query.text` (`ebpf.db_query_text`,
/// beyla-rs extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryText {
    /// The statement with its literals (numbers, strings) replaced by `?`, comments dropped:
    /// no value the application sends leaves the host (default).
    #[default]
    Obfuscated,
    /// The statement as sent, literals included (cut at 1024 bytes).
    Full,
    /// No `db.query.text` at all.
    Off,
}

/// How kernel functions are hooked (`ebpf.hook_mode`, beyla-rs extension): the kernel
/// module's type, so the configuration and the hook plan cannot disagree.
pub use crate::kernel::HookMode;

/// Per-protocol payload capture sizes (`ebpf.buffer_sizes`), in bytes; 0 disables the
/// capture; at most 8192.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BufferSizes {
    /// HTTP. Default 0. Env: `BEYLA_BPF_BUFFER_SIZE_HTTP`.
    pub http: u32,
    /// MySQL. Default 0. Env: `BEYLA_BPF_BUFFER_SIZE_MYSQL`.
    pub mysql: u32,
    /// PostgreSQL. Default 0. Env: `BEYLA_BPF_BUFFER_SIZE_POSTGRES`.
    pub postgres: u32,
    /// Kafka. Default 0. Env: `BEYLA_BPF_BUFFER_SIZE_KAFKA`.
    pub kafka: u32,
    /// Microsoft SQL Server. Default 0.
    pub mssql: u32,
    /// Generic TCP. Default 0.
    pub tcp: u32,
    /// Aerospike. Default 0.
    pub aerospike: u32,
}

impl BufferSizes {
    /// `(key, value)` pairs, for validation and reporting.
    pub fn entries(&self) -> [(&'static str, u32); 7] {
        [
            ("http", self.http),
            ("mysql", self.mysql),
            ("postgres", self.postgres),
            ("kafka", self.kafka),
            ("mssql", self.mssql),
            ("tcp", self.tcp),
            ("aerospike", self.aerospike),
        ]
    }
}

/// `ebpf.redis_db_cache` subsection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisDbCache {
    /// Track the selected Redis database per connection. Default false.
    /// Env: `BEYLA_BPF_REDIS_DB_CACHE_ENABLED`.
    pub enabled: bool,
    /// Connections tracked. Default 1000. Env: `BEYLA_BPF_REDIS_DB_CACHE_MAX_SIZE`.
    pub max_size: u32,
}

impl Default for RedisDbCache {
    fn default() -> Self {
        RedisDbCache { enabled: false, max_size: 1000 }
    }
}

/// `ebpf` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ebpf {
    /// Events accumulated (per CPU) in the ring buffer before user space is woken up; 0 or 1
    /// wakes it for every event (Beyla's "unset"). The reader also drains the ring every
    /// `batch_timeout`, so batching delays data by at most that; a wake-up per event costs the traced
    /// application a few microseconds per syscall (docs/benchmarks.md). The programs also wake
    /// it when a quarter of `ring_buffer_size` is waiting, whatever this says. Default 500 (as
    /// OpenTelemetry eBPF Instrumentation).
    /// Env: `BEYLA_BPF_WAKEUP_LEN`.
    pub wakeup_len: u32,
    /// beyla-rs extension: bytes of the ring buffer that carries socket events to user space
    /// (a power of two, 64 KiB to 1 GiB). Full, it drops events (counted in
    /// `beyla_ebpf_events_lost_total`); its pages are mapped twice into the agent, so the
    /// agent's RSS includes twice this. Default 4 MiB (4194304). Env: `BEYLA_BPF_RING_BUFFER_SIZE`.
    pub ring_buffer_size: u32,
    /// The ring-buffer reader hands its events on as soon as this many are waiting. At least
    /// 1. Default 100. Env: `BEYLA_BPF_BATCH_LENGTH`.
    pub batch_length: u32,
    /// The reader drains the rings and hands a partial batch on at least this often: the
    /// longest an event waits, and an idle agent's wake-up period. Greater than 0. Default
    /// `1s`. Env: `BEYLA_BPF_BATCH_TIMEOUT`.
    pub batch_timeout: Duration,
    /// Report an HTTP request without response after this long (status 408); `0` disables.
    /// Default `0`. Env: `BEYLA_BPF_HTTP_REQUEST_TIMEOUT`.
    pub http_request_timeout: Duration,
    /// Read incoming `traceparent` headers in the socket probes. Default false.
    /// Env: `BEYLA_BPF_TRACK_REQUEST_HEADERS`.
    pub track_request_headers: bool,
    /// Trace context propagation. Default `disabled`. Env: `BEYLA_BPF_CONTEXT_PROPAGATION`.
    pub context_propagation: ContextPropagation,
    /// Deprecated: `true` means `context_propagation: all`. Default false.
    /// Env: `BEYLA_BPF_ENABLE_CONTEXT_PROPAGATION`.
    pub enable_context_propagation: bool,
    /// Traffic-control backend: `tc`, `tcx` or `auto`. Default `auto`.
    /// Env: `BEYLA_BPF_TC_BACKEND`.
    pub traffic_control_backend: TcBackend,
    /// Send each event as soon as the response is seen (less accurate timing for large
    /// responses, fewer dropped events at high volume). Default false.
    /// Env: `BEYLA_BPF_HIGH_REQUEST_VOLUME`.
    pub high_request_volume: bool,
    /// Detect SQL clients by looking at query text, for databases without a protocol parser.
    /// Default false. Env: `BEYLA_HEURISTIC_SQL_DETECT`.
    pub heuristic_sql_detect: bool,
    /// Log from the eBPF programs (`bpf_printk`; needs a `-DBPF_DEBUG` build). Default false.
    /// Env: `BEYLA_BPF_DEBUG`.
    pub bpf_debug: bool,
    /// Print decoded protocol data. Default false. Env: `BEYLA_PROTOCOL_DEBUG_PRINT`.
    pub protocol_debug_print: bool,
    /// Per-protocol payload capture sizes. Defaults 0.
    pub buffer_sizes: BufferSizes,
    /// Redis selected-database tracking.
    pub redis_db_cache: RedisDbCache,
    /// MySQL prepared statements remembered per process. Default 1024.
    /// Env: `BEYLA_MYSQL_PREPARED_STATEMENTS_CACHE_SIZE`.
    pub mysql_prepared_statements_cache_size: u32,
    /// PostgreSQL prepared statements remembered per process. Default 1024.
    /// Env: `BEYLA_POSTGRES_PREPARED_STATEMENTS_CACHE_SIZE`.
    pub postgres_prepared_statements_cache_size: u32,
    /// MongoDB requests remembered. Default 1024. Env: `BEYLA_MONGO_REQUESTS_CACHE_SIZE`.
    pub mongo_requests_cache_size: u32,
    /// Kafka topic UUID -> name entries remembered. Default 1024.
    pub kafka_topic_uuid_cache_size: u32,
    /// Couchbase entries remembered. Default 1024.
    pub couchbase_db_cache_size: u32,
    /// Bytes in the statistics ring buffer before user space is woken up. Default 4096.
    /// Env: `BEYLA_STATS_WAKEUP_DATA_BYTES`.
    pub stats_wakeup_data_bytes: u32,
    /// Directory where bpffs is mounted; maps are pinned under `<path>/otel`.
    /// Default `/sys/fs/bpf/`. Env: `BEYLA_BPF_FS_PATH`.
    pub bpf_fs_path: String,
    /// Longest time a parent/child request pair may span before the trace is cut.
    /// Default `5m`. Env: `BEYLA_BPF_MAX_TRANSACTION_TIME`.
    pub max_transaction_time: Duration,
    /// Report a DNS request without answer as failed after this long. Default `5s`.
    /// Env: `BEYLA_BPF_DNS_REQUEST_TIMEOUT`.
    pub dns_request_timeout: Duration,
    /// Assume `bpf_loop` exists even on kernels older than 5.17. Default false.
    /// Env: `BEYLA_OVERRIDE_BPF_LOOP_ENABLED`.
    pub override_bpfloop_enabled: bool,
    /// Testing only: disable black-box context propagation. Default false.
    /// Env: `BEYLA_BPF_DISABLE_BLACK_BOX_CP`.
    pub disable_black_box_cp: bool,
    /// Instrument CUDA kernel launches. Accepted, not implemented yet. Default false.
    pub instrument_gpu: bool,
    /// Instrument Java with the OpenTelemetry Java agent. Accepted, not implemented yet.
    /// Default false.
    pub use_otel_sdk_for_java: bool,
    /// Protocol payload extraction and enrichment rules (`http.enrichment`, GraphQL, ...).
    /// Accepted, not implemented yet. Default: unset.
    pub payload_extraction: Option<serde_yaml::Value>,
    /// beyla-rs extension: kernel hook family: `auto`, `socket`, `tracepoints`, `kprobes` or
    /// `fentry`. Default `auto`. Env: `BEYLA_EBPF_HOOK_MODE`.
    pub hook_mode: HookMode,
    /// beyla-rs extension: `db.query.text` of SQL spans: `obfuscated` (literals replaced by
    /// `?`), `full` or `off`. Default `obfuscated`. Env: `BEYLA_DB_QUERY_TEXT`.
    pub db_query_text: QueryText,
}

impl Default for Ebpf {
    fn default() -> Self {
        Ebpf {
            wakeup_len: 500,
            ring_buffer_size: 4 << 20,
            batch_length: 100,
            batch_timeout: Duration::from_secs(1),
            http_request_timeout: Duration::ZERO,
            track_request_headers: false,
            context_propagation: ContextPropagation::DISABLED,
            enable_context_propagation: false,
            traffic_control_backend: TcBackend::Auto,
            high_request_volume: false,
            heuristic_sql_detect: false,
            bpf_debug: false,
            protocol_debug_print: false,
            buffer_sizes: BufferSizes::default(),
            redis_db_cache: RedisDbCache::default(),
            mysql_prepared_statements_cache_size: 1024,
            postgres_prepared_statements_cache_size: 1024,
            mongo_requests_cache_size: 1024,
            kafka_topic_uuid_cache_size: 1024,
            couchbase_db_cache_size: 1024,
            stats_wakeup_data_bytes: 4096,
            bpf_fs_path: "/sys/fs/bpf/".to_string(),
            max_transaction_time: Duration::from_secs(300),
            dns_request_timeout: Duration::from_secs(5),
            override_bpfloop_enabled: false,
            disable_black_box_cp: false,
            instrument_gpu: false,
            use_otel_sdk_for_java: false,
            payload_extraction: None,
            hook_mode: HookMode::Auto,
            db_query_text: QueryText::Obfuscated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_propagation_parses_combinations() {
        assert_eq!(ContextPropagation::parse("all"), Ok(ContextPropagation::ALL));
        let hp = ContextPropagation::parse("headers,tcp").expect("parse");
        assert!(hp.headers && hp.tcp && !hp.ip);
        assert_eq!(hp.to_string(), "headers,tcp");
        assert_eq!(ContextPropagation::parse("http").map(|c| c.headers), Ok(true));
        assert!(ContextPropagation::parse("smoke").is_err());
    }
}
