//! The command line: `tidemark serve`, `demo`, `bench …`, `secrets …`, `store …` and
//! `warehouse generate`.

pub mod bench;
pub mod demo;
pub mod secrets;
pub mod store;
pub mod warehouse;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{ClusterSettings, Config};
use crate::server;

/// The `tidemark` command line.
#[derive(Parser)]
#[command(
    name = "tidemark",
    version,
    about = "Commerce-analytics backend: alerts, reports and dashboards"
)]
pub struct Cli {
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
        /// This process's index in a cluster of servers (with --processes and --hosts;
        /// overrides `[cluster]`).
        #[arg(long, requires_all = ["processes", "hosts"])]
        process: Option<usize>,
        /// The number of processes in the cluster.
        #[arg(long, requires_all = ["process", "hosts"])]
        processes: Option<usize>,
        /// The cluster's hosts file: per process, its exchange host:port and its API URL.
        #[arg(long, requires_all = ["process", "processes"])]
        hosts: Option<PathBuf>,
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
        /// Orders in the dashboard warehouse written on the first run.
        #[arg(long, default_value_t = 1_000_000)]
        warehouse_orders: usize,
    },
    /// Run a benchmark and print its results as JSON.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
    /// Manage tenants' stored credentials (envelope-encrypted) and rotate the KEK.
    Secrets(secrets::SecretsArgs),
    /// Move the store: copy an embedded installation into PostgreSQL.
    Store(store::StoreArgs),
    /// The demo warehouse (Parquet) the dashboard engine reads.
    #[command(hide = true)]
    Warehouse {
        #[command(subcommand)]
        action: WarehouseAction,
    },
}

#[derive(Subcommand)]
enum WarehouseAction {
    /// Write a year of a shop's orders, items, products, customers, ad spend and web sessions.
    Generate {
        /// Warehouse root (`<root>/<table>/tenant=<tenant>/*.parquet`).
        #[arg(long)]
        root: PathBuf,
        /// Tenant partition to write.
        #[arg(long, default_value = "demo-shop")]
        tenant: String,
        /// Orders over the year.
        #[arg(long, default_value_t = 1_000_000)]
        orders: usize,
        /// Random seed (the same seed writes the same rows).
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

/// Tidemark's own messages from `info` up; the Fluvio client's only from `warn` (at `info` it
/// logs every producer and socket it opens or closes). `TIDEMARK_LOG` replaces this.
const DEFAULT_LOG: &str = "info,fluvio=warn,fluvio_socket=warn";

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TIDEMARK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Runs the command the arguments name.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    init_tracing();
    // rustls' crypto provider for every TLS client in the process (the library's client
    // builders install it too; this covers anything built another way).
    connectors::http::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve {
            config,
            workers,
            process,
            processes,
            hosts,
        } => {
            let refuse = |e: anyhow::Error| -> ! {
                eprintln!("tidemark: {e:#}");
                std::process::exit(2);
            };
            let mut config = Config::load(config.as_deref()).unwrap_or_else(|e| refuse(e));
            if let Some(workers) = workers {
                config.engine.workers = workers;
            }
            if let (Some(process), Some(processes), Some(hosts)) = (process, processes, hosts) {
                config.cluster = Some(
                    ClusterSettings::from_args(process, processes, hosts)
                        .unwrap_or_else(|e| refuse(e)),
                );
            }
            config.validate().unwrap_or_else(|e| refuse(e));
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
            warehouse_orders,
        } => runtime.block_on(demo::run(data_dir, listen, seconds, warehouse_orders)),
        Command::Bench { which } => runtime.block_on(bench::run(which)),
        Command::Secrets(args) => runtime.block_on(secrets::run(args)),
        Command::Store(args) => store::run(args),
        Command::Warehouse {
            action:
                WarehouseAction::Generate {
                    root,
                    tenant,
                    orders,
                    seed,
                },
        } => {
            let summary = warehouse::generate(&root, &tenant, orders, seed)?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
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
