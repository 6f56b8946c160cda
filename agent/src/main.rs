//! The `beyla` binary: runs the agent, or `doctor` / `config check`.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing::{error, info, warn};

use beyla::config::{self, Config, ConfigWarning, LogLevel, Sources};
use beyla::kernel::{self, HookMode};
use beyla::pipeline::{self, PipelineConfig};

/// Zero-code eBPF auto-instrumentation: RED metrics for HTTP services, Beyla-compatible.
#[derive(Parser)]
#[command(name = "beyla", version)]
struct Cli {
    /// YAML configuration file (also `-config FILE` and `BEYLA_CONFIG_PATH`).
    #[arg(short = 'c', long = "config", global = true)]
    config: Option<PathBuf>,
    /// Override one configuration key, e.g. `--set prometheus_export.port=9400` (repeatable;
    /// wins over the file and the environment).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Print the kernel feature table and the hook plan, then exit (same as `beyla doctor`).
    #[arg(long)]
    check: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print what this kernel offers, the hook family the agent would use, and exit.
    Doctor,
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Validate a configuration file (no environment applied) and exit: 0 if valid.
    Check { file: PathBuf },
}

fn main() -> ExitCode {
    // Beyla takes `-config FILE`; clap wants `--config`.
    let args = std::env::args().map(|a| if a == "-config" { "--config".to_string() } else { a });
    let cli = Cli::parse_from(args);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Some(Command::Config { action: ConfigAction::Check { file } }) => config_check(&file),
        Some(Command::Doctor) => doctor(&cli.config, &cli.set),
        None if cli.check => doctor(&cli.config, &cli.set),
        None => agent(&cli.config, &cli.set),
    }
}

fn config_check(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    match config::check_file(file) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                println!("warning: {w}");
            }
            println!("{}: valid", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

fn load_config(file: &Option<PathBuf>, set: &[String]) -> anyhow::Result<(Config, Vec<ConfigWarning>)> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let mut cli = Vec::new();
    for s in set {
        let (k, v) = s.split_once('=').with_context(|| format!("--set {s}: expected KEY=VALUE"))?;
        cli.push((k.trim().to_string(), v.to_string()));
    }
    let loaded = config::load(&Sources { file: file.as_deref(), env: &env, cli })?;
    Ok((loaded.config, loaded.warnings))
}

fn doctor(file: &Option<PathBuf>, set: &[String]) -> anyhow::Result<ExitCode> {
    let cfg = load_config(file, set).ok().map(|(cfg, _)| cfg);
    let mode = cfg.as_ref().map_or(HookMode::Auto, |c| c.ebpf.hook_mode);
    let mounts = kernel::ensure_mounts();
    if let Err(e) = &mounts {
        println!("mounts: {e}");
    }
    let features = kernel::probe();
    let plan = kernel::choose(&features, mode);
    print!("{}", kernel::doctor_report(&features, &plan));
    if let Some(cfg) = &cfg {
        print!("\n{}", tls_report(cfg));
    }
    Ok(if plan.is_ok() && mounts.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The processes the configuration selects now, and their TLS libraries.
fn tls_report(cfg: &beyla::config::Config) -> String {
    let opts = beyla::discover::DiscoverOptions { min_process_age: std::time::Duration::ZERO, ..Default::default() };
    let found = beyla::discover::selection(cfg, false)
        .map_err(anyhow::Error::from)
        .and_then(|sel| beyla::discover::scan_once(&sel, &opts).map_err(anyhow::Error::from));
    match found {
        Ok(procs) => {
            let procs: Vec<(u32, String)> = procs.iter().map(|p| (p.info.pid, p.service.name.clone())).collect();
            beyla::discover::tls::doctor_report(&procs)
        }
        Err(e) => format!("TLS libraries: cannot select processes: {e:#}\n"),
    }
}

fn init_logging(level: LogLevel) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BEYLA_LOG_FILTER")
        // kube-client logs every failed API request at error level; the agent reports an
        // unreachable API itself, once per outage (see `kube`).
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!("{},kube_client=off", level.to_tracing().as_str()))
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

fn agent(file: &Option<PathBuf>, set: &[String]) -> anyhow::Result<ExitCode> {
    let (cfg, warnings) = load_config(file, set)?;
    init_logging(cfg.log_level);
    for w in &warnings {
        warn!("{w}");
    }
    let mounts = kernel::ensure_mounts().context("preparing bpffs and tracefs")?;
    let _ = mounts;
    let features = kernel::probe();
    for lost in features.capability_check().map_err(anyhow::Error::msg)? {
        warn!("{lost}");
    }
    let plan = kernel::choose(&features, cfg.ebpf.hook_mode)?;
    info!(summary = %features.summary_line(), family = %plan.family, "Kernel probed.");
    let pcfg = PipelineConfig::from_config(&cfg, &plan, &features).context("building process selectors")?;
    if pcfg.selection.include.is_empty() {
        warn!("No process selector configured (open_port, auto_target_exe, discovery.instrument): nothing will be instrumented.");
    }

    // One worker: the pipeline's stages hand each batch on to the next, and a second worker
    // only adds cross-thread wake-ups (10% of the agent's CPU at saturation, docs/benchmarks.md);
    // blocking work (/proc scans, Go binary inspection, the ring-buffer reader) has its own threads.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("beyla")
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let running = pipeline::start(pcfg).await?;
        info!("Agent running.");
        wait_for_shutdown().await;
        info!("Shutting down.");
        running.shutdown().await;
        Ok::<_, anyhow::Error>(())
    })
    .map_err(|e| {
        error!("{e:#}");
        e
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
