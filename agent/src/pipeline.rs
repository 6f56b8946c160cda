//! Wires the stages together, one named bounded channel per edge:
//! `discover_to_attach`, `ringbuf_to_decode`, `decode_to_enrich`, `enrich_to_export`, and
//! `lifecycle_to_attach` (fork/exec/exit for the traced-process table's owner).
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::aggregate::{AggregateOptions, Aggregates};
use crate::attach::{self, AttachError, Traced};
use crate::decode::{self, Decoded};
use crate::discover::{self, DiscoverOptions, ProcessEvent, Selection};
use crate::enrich::routes::RouteMatcher;
use crate::enrich::{self, Enricher, SpanBatch};
use crate::events::{self, RawEvent, ReaderMaps};
use crate::export::otlp::{Otlp, OtlpOptions};
use crate::export::{self, Endpoint, PrintFormat, Printer};
use crate::kube::{self, KubeOptions};
use crate::telemetry::Internal;

/// Everything the pipeline needs, already validated (built from `Config` by the binary).
pub struct PipelineConfig {
    /// Socket capture families to try, best first: the forced one, or with `auto` every
    /// family the kernel probe found (a verifier can still reject one: the next is tried).
    pub families: Vec<crate::kernel::HookFamily>,
    pub selection: Selection,
    pub discover: DiscoverOptions,
    /// What the capture family is loaded with (`ebpf.wakeup_len`, `ebpf.ring_buffer_size`,
    /// the plan's argument store).
    pub load: attach::LoadOptions,
    /// `discovery.skip_go_specific_tracers` and whether the Go probes write `traceparent`
    /// headers (`ebpf.context_propagation` where the kernel allows it).
    pub uprobes: attach::UprobeOptions,
    /// `ebpf.batch_length` and `ebpf.batch_timeout`: when the reader forwards what it read.
    pub batching: events::Batching,
    pub routes: RouteMatcher,
    /// What the decoder reports (`ebpf.db_query_text`).
    pub decode: crate::decode::DecodeOptions,
    /// `prometheus_export.port` and `.path`.
    pub prometheus: Option<(u16, String)>,
    /// `internal_metrics.prometheus.port` (None: served beside the application metrics) and path.
    pub internal: (Option<u16>, String),
    /// The application metrics, span metrics and service graph.
    pub aggregate: AggregateOptions,
    pub printer: Option<PrintFormat>,
    pub channel_buffer_len: usize,
    /// Kubernetes metadata (`attributes.kubernetes`), when enabled.
    pub kube: Option<KubeOptions>,
    /// `otel_traces_export` and `otel_metrics_export`.
    pub otlp: OtlpOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error(transparent)]
    Bind(#[from] export::prometheus::BindError),
    #[error(transparent)]
    Otlp(#[from] export::otlp::transport::TransportError),
    #[error("starting the ring buffer reader thread")]
    Reader(#[source] std::io::Error),
}

/// A running agent; `shutdown` stops it.
pub struct Running {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    _probes: attach::Probes,
}

impl Running {
    pub async fn shutdown(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub async fn start(cfg: PipelineConfig) -> Result<Running, PipelineError> {
    // Bind first: a taken port must fail start-up before any probe is loaded.
    let app_listener = match &cfg.prometheus {
        Some((port, _)) => Some(export::bind(*port, "Prometheus metrics", "prometheus_export.port").await?),
        None => None,
    };
    let internal_listener = match cfg.internal.0 {
        Some(port) if cfg.prometheus.as_ref().map(|p| p.0) != Some(port) => {
            Some(export::bind(port, "internal metrics", "internal_metrics.prometheus.port").await?)
        }
        _ => None,
    };

    // The Kubernetes watches list while the probes load.
    let mut kube = cfg.kube.clone().map(|opts| (kube::start(opts.clone()), opts));

    let load = cfg.load;
    let (probes, maps) = attach::load_first(&cfg.families, load)?;
    info!(family = probes.family, programs = probes.programs, "BPF programs attached.");
    let mut tasks = Vec::new();

    let mut app_registry = Registry::default();
    let aggregates = Aggregates::new(&mut app_registry, &cfg.aggregate);
    let mut internal_registry = Registry::default();
    let tel = Internal::new(&mut internal_registry, probes.family);
    let (go, tls) = attach::start_uprobes(&maps, load, cfg.uprobes, &tel);
    let mut discover_opts = cfg.discover;
    let proc_changes = maps.proc_changes;
    discover_opts.changes = Some(discover::ChangeCounter::new(move || attach::read_proc_changes(&proc_changes)));

    if let Some((k, _)) = &kube {
        k.stats.register(&mut internal_registry);
    }
    let app_registry = Arc::new(app_registry);
    let internal_registry = Arc::new(internal_registry);

    let internal_ep = Endpoint { path: cfg.internal.1.clone(), registry: internal_registry };
    if let (Some(l), Some((_, path))) = (app_listener, &cfg.prometheus) {
        let mut eps = vec![Endpoint { path: path.clone(), registry: app_registry }];
        if internal_listener.is_none() {
            eps.push(internal_ep.clone());
        }
        tasks.push(tokio::spawn(export::serve(l, eps)));
    }
    if let Some(l) = internal_listener {
        tasks.push(tokio::spawn(export::serve(l, vec![internal_ep])));
    }

    let traced = Traced::new(maps.traced_pids, tls.clone());
    let view = traced.view();
    let n = cfg.channel_buffer_len.max(1);
    let (discover_to_attach_tx, discover_to_attach) = mpsc::channel::<Vec<ProcessEvent>>(n);
    let (ringbuf_to_decode_tx, ringbuf_to_decode) = mpsc::channel::<Vec<RawEvent>>(n);
    let (decode_to_enrich_tx, decode_to_enrich) = mpsc::channel::<Decoded>(n);
    let (enrich_to_export_tx, enrich_to_export) = mpsc::channel::<SpanBatch>(n);
    // Fork, exec and exit, from the stages that see them in order, to the table's owner.
    let (lifecycle_tx, lifecycle_to_attach) = mpsc::channel::<attach::stage::Lifecycle>(n);

    let stop = Arc::new(AtomicBool::new(false));
    // Not joined at shutdown: the reader sleeps up to `ebpf.batch_timeout` and ends when it
    // next wakes (it sees `stop`, or its channel closed with the tasks).
    events::spawn_reader(
        ReaderMaps {
            sock_events: maps.sock_events,
            process_events: maps.process_events,
            events_lost: maps.events_lost,
        },
        ringbuf_to_decode_tx,
        tel.reader_stats(),
        cfg.batching,
        stop.clone(),
    )
    .map_err(PipelineError::Reader)?;

    if let Some((k, opts)) = kube.as_mut() {
        // Metrics are served meanwhile. Never wait on the API longer than
        // informers_sync_timeout: then discovery starts undecorated and metadata follows
        // when it arrives.
        if k.wait_synced(opts.sync_timeout).await {
            info!(pods = k.store.pod_count(), "Kubernetes metadata synchronised.");
        } else {
            warn!(timeout = ?opts.sync_timeout, "Kubernetes metadata not synchronised within informers_sync_timeout; starting without it, it will be added when it arrives.");
        }
        discover_opts.kube = Some(k.store.clone());
        tasks.append(&mut k.tasks);
    }

    tasks.push(discover::spawn(cfg.selection, discover_opts, discover_to_attach_tx));
    tasks.push(attach::stage::spawn(discover_to_attach, lifecycle_to_attach, traced, go, tls, tel.clone()));
    tasks.push(decode::stage::spawn(
        ringbuf_to_decode,
        decode_to_enrich_tx,
        lifecycle_tx.clone(),
        view.clone(),
        cfg.decode,
        tel.clone(),
    ));
    tasks.push(enrich::stage::spawn(
        decode_to_enrich,
        enrich_to_export_tx,
        lifecycle_tx,
        Enricher::new(view, cfg.routes),
        tel.clone(),
    ));
    let printer = cfg.printer.map(Printer::new);
    let otlp = if cfg.otlp.is_enabled() {
        let (otlp, mut otlp_tasks) = Otlp::start(cfg.otlp, tel.clone())?;
        tasks.append(&mut otlp_tasks);
        Some(otlp)
    } else {
        None
    };
    tasks.push(export::stage::spawn(enrich_to_export, aggregates, printer, otlp));

    Ok(Running { stop, tasks, _probes: probes })
}

impl PipelineConfig {
    /// Maps the validated configuration onto the stages.
    /// `plan` and `features`: the start-up decisions about this kernel, taken once.
    pub fn from_config(
        cfg: &crate::config::Config,
        plan: &crate::kernel::HookPlan,
        features: &crate::kernel::Features,
    ) -> Result<Self, discover::DiscoverError> {
        let p = &cfg.prometheus_export;
        let env_in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|v| !v.is_empty());
        let kube = KubeOptions::from_config(&cfg.attributes.kubernetes, env_in_cluster);
        Ok(PipelineConfig {
            families: plan.families(),
            selection: discover::selection(cfg, kube.is_some())?,
            kube,
            discover: DiscoverOptions::from_config(cfg),
            load: attach::LoadOptions::from_config(cfg, plan),
            uprobes: attach::UprobeOptions::from_config(cfg, features),
            batching: events::Batching::from_config(cfg),
            routes: RouteMatcher::from_config(cfg),
            decode: crate::decode::DecodeOptions::from_config(cfg),
            prometheus: p.port.map(|port| (port, p.path.clone())),
            internal: (cfg.internal_metrics.prometheus.port, cfg.internal_metrics.prometheus.path.clone()),
            aggregate: AggregateOptions::from_config(cfg),
            printer: PrintFormat::from_config(cfg),
            channel_buffer_len: cfg.channel_buffer_len as usize,
            // Validated with the rest of the configuration when it was loaded.
            otlp: OtlpOptions::from_config(cfg).unwrap_or_default(),
        })
    }
}
