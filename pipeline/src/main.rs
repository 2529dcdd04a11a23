//! `tidemark`: the commerce-analytics backend's binary.
//!
//! `tidemark serve` runs the server, `tidemark demo` a self-contained demonstration on embedded
//! defaults, `tidemark bench …` the benchmarks (JSON on stdout).

mod api;
mod bench;
mod config;
mod demo;
mod metrics;
mod render;
mod runtime;
mod sender;
mod server;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Parser)]
#[command(
    name = "tidemark",
    version,
    about = "Commerce-analytics backend: alerts, reports and dashboards"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// TOML configuration file (defaults are built in; TIDEMARK_* variables override both).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Dataflow worker threads (overrides engine.workers).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Run a self-contained demo: a shop, its rules, a synthetic producer and a webhook receiver.
    Demo {
        /// Data directory (kept between runs: a second run resumes).
        #[arg(long, default_value = "tidemark-demo")]
        data_dir: PathBuf,
        /// Listen address of the API.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Stop after this many seconds (runs until Ctrl-C when absent).
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// Run a benchmark and print its results as JSON.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TIDEMARK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve { config, workers } => {
            let mut config = match Config::load(config.as_deref()) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("tidemark: {e}");
                    std::process::exit(2);
                }
            };
            if let Some(workers) = workers {
                config.engine.workers = workers;
                if let Err(e) = config.validate() {
                    eprintln!("tidemark: {e}");
                    std::process::exit(2);
                }
            }
            runtime.block_on(async move {
                let server = server::Server::start(config).await?;
                wait_for_signal().await;
                tracing::info!("shutting down");
                server.shutdown().await;
                Ok(())
            })
        }
        Command::Demo {
            data_dir,
            listen,
            seconds,
        } => runtime.block_on(demo::run(data_dir, listen, seconds)),
        Command::Bench { which } => runtime.block_on(bench::run(which)),
    }
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
