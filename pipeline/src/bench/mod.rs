//! `tidemark bench …`: benchmarks that print JSON. Targets live here and in BENCHMARKS.md,
//! never in timed tests.

pub mod ingest;
pub mod matching;

use clap::Subcommand;

/// Which benchmark.
#[derive(Subcommand)]
pub enum Which {
    /// Matching throughput of the dataflow alone (pre-parsed events, in memory).
    Match {
        /// Dataflow workers.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Tenants.
        #[arg(long, default_value_t = 1_000)]
        tenants: usize,
        /// Active rules across all tenants.
        #[arg(long, default_value_t = 100_000)]
        rules: usize,
        /// Events fed.
        #[arg(long, default_value_t = 5_000_000)]
        events: usize,
        /// Events per epoch.
        #[arg(long, default_value_t = 50_000)]
        batch: usize,
        /// Rule updates per second applied during the feed.
        #[arg(long, default_value_t = 0.0)]
        rule_updates_per_sec: f64,
    },
    /// Durable ingest over HTTP (NDJSON) end to end into the outbox, and latency at a fixed rate.
    Ingest {
        /// Dataflow workers.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Events sent in the throughput phase.
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// Events per HTTP request.
        #[arg(long, default_value_t = 5_000)]
        batch: usize,
        /// Concurrent HTTP clients.
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Rate of the latency phase, events/s.
        #[arg(long, default_value_t = 50_000)]
        rate: usize,
        /// Length of the latency phase, seconds.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

/// Runs one benchmark and prints its JSON result.
pub async fn run(which: Which) -> anyhow::Result<()> {
    let result = match which {
        Which::Match {
            workers,
            tenants,
            rules,
            events,
            batch,
            rule_updates_per_sec,
        } => {
            let args = matching::MatchBenchArgs {
                workers,
                tenants,
                rules,
                events,
                batch,
                rule_updates_per_sec,
            };
            tokio::task::spawn_blocking(move || matching::run(&args)).await??
        }
        Which::Ingest {
            workers,
            events,
            batch,
            clients,
            rate,
            seconds,
        } => {
            ingest::run(ingest::IngestBenchArgs {
                workers,
                events,
                batch,
                clients,
                rate,
                seconds,
            })
            .await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}
