//! `tidemark bench …`: benchmarks that print JSON. Targets live here and in BENCHMARKS.md,
//! never in timed tests.

pub mod audiences;
pub mod console;
mod cpu;
pub mod dashboard;
pub mod fluvio;
pub mod ingest;
pub mod isolation;
pub mod live;
pub mod matching;
pub mod reports;
pub mod secrets;
pub mod trino;

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
        /// Local processes of one timely cluster to split the workload over.
        #[arg(long, default_value_t = 1)]
        processes: usize,
        /// This process's index in a cluster run (set by the run for the processes it starts).
        #[arg(long, hide = true)]
        process: Option<usize>,
        /// The cluster's addresses, comma-separated (set by the run for the processes it starts).
        #[arg(long, hide = true, value_delimiter = ',')]
        addresses: Vec<String>,
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
        /// Live tables (`[dashboard.live]`): `on` (the default, as in `serve`) or `off`.
        #[arg(long, default_value = "on", value_parser = ["on", "off"])]
        live: String,
        /// The store: a `postgres://` URL of a server on which the benchmark creates a scratch
        /// database (dropped at the end); by default the embedded SQLite file.
        #[arg(long)]
        store: Option<String>,
    },
    /// Live tables: the dashboard queries over the demo warehouse plus the live tail, without
    /// and with 50,000 events/s of ingest (goal ≤ 1.25× p50), and compaction's lag behind the
    /// log at 100,000 events/s (goal < 10 s).
    Live {
        /// Warehouse root (generated there when missing; default: a directory under $TMPDIR).
        #[arg(long)]
        warehouse: Option<std::path::PathBuf>,
        /// Orders to generate when the warehouse is missing.
        #[arg(long, default_value_t = 1_000_000)]
        orders: usize,
        /// Ingest rate while the queries run, events/s.
        #[arg(long, default_value_t = 50_000)]
        rate: usize,
        /// Ingest rate of the compaction phase, events/s.
        #[arg(long, default_value_t = 100_000)]
        compact_rate: usize,
        /// Length of the compaction phase, seconds.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Timed runs per query and phase.
        #[arg(long, default_value_t = 15)]
        iterations: usize,
        /// Live tables `on` (the default) or `off`: the same queries and ingest over the
        /// warehouse files alone, without the compaction phase.
        #[arg(long, default_value = "on", value_parser = ["on", "off"])]
        live: String,
    },
    /// Secrets store: decrypt throughput with a cached KEK, end-to-end gets, bulk puts, and
    /// the re-wrap rate of a KEK rotation over every stored secret.
    Secrets {
        /// Secrets stored, then re-wrapped.
        #[arg(long, default_value_t = 1_000_000)]
        secrets: usize,
        /// Decrypting threads (the get phase runs 8× this many tasks).
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Bytes per value.
        #[arg(long, default_value_t = 64)]
        value_bytes: usize,
        /// Gets in the end-to-end phase.
        #[arg(long, default_value_t = 200_000)]
        gets: usize,
        /// Rows per re-wrap transaction.
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
    },
    /// Dashboard queries on the demo warehouse: p50/p95 with the result cache off and on, and
    /// the same queries in DuckDB (Python package `duckdb`) over the same Parquet files.
    Dashboard {
        /// Warehouse root (generated there when missing; default: a directory under $TMPDIR).
        #[arg(long)]
        warehouse: Option<std::path::PathBuf>,
        /// Orders to generate when the warehouse is missing.
        #[arg(long, default_value_t = 1_000_000)]
        orders: usize,
        /// Timed runs per query and engine.
        #[arg(long, default_value_t = 30)]
        iterations: usize,
        /// Untimed runs before them.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// Python interpreter that has the `duckdb` package.
        #[arg(long, default_value = "python3")]
        python: String,
        /// Skip the DuckDB comparison.
        #[arg(long)]
        no_duckdb: bool,
        /// Print each query's plan with run-time metrics (EXPLAIN ANALYZE) to stderr.
        #[arg(long)]
        explain: bool,
    },
    /// One tenant's latency while another runs heavy queries, a template that burns its
    /// rendering budget and webhooks that never answer (goal: ingest p99 ≤ 100 ms, every
    /// delivery within 1 s).
    Isolation {
        /// Length of each phase (alone, then with the noise), seconds.
        #[arg(long, default_value_t = 15)]
        seconds: u64,
        /// The quiet tenant's events per second, one per request.
        #[arg(long, default_value_t = 20)]
        rate: u32,
        /// The noisy tenant's concurrent heavy-query loops.
        #[arg(long, default_value_t = 4)]
        queries: usize,
        /// The noisy tenant's webhooks to a tarpit.
        #[arg(long, default_value_t = 9)]
        tarpits: usize,
        /// Orders in the noisy tenant's warehouse.
        #[arg(long, default_value_t = 200_000)]
        orders: usize,
    },
    /// The Fluvio source: records/s from a topic into the log and through matching, against
    /// `fluvio consume` reading the same topic raw (goal ≥ 200,000 events/s and ≥ 0.8× raw).
    Fluvio {
        /// The Fluvio controller, host:port.
        #[arg(long, env = "FLUVIO_SC")]
        endpoint: String,
        /// Events produced to the topic.
        #[arg(long, default_value_t = 500_000)]
        events: usize,
        /// Partitions of the topic.
        #[arg(long, default_value_t = 2)]
        partitions: u32,
        /// Dataflow workers.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// The `fluvio` CLI, for the raw consume.
        #[arg(long, default_value = "fluvio")]
        fluvio_bin: String,
        /// Events/s streamed while a server is killed and restarted.
        #[arg(long, default_value_t = 50_000)]
        stream_rate: usize,
        /// Live tables (`[dashboard.live]`): `on` (the default, as in `serve`) or `off`.
        #[arg(long, default_value = "on", value_parser = ["on", "off"])]
        live: String,
    },
    /// Scheduled reports: a 6-block weekly report generated over the demo warehouse (goal p50
    /// ≤ 500 ms, p95 ≤ 1 s, ≤ 200 MB added), charts alone (≤ 20 ms each), and 100,000 report
    /// schedules in the dataflow (due runs out ≤ 50 ms p99 after their instant; changes O(log n)).
    Reports {
        /// Warehouse root (generated there when missing; default: a directory under $TMPDIR).
        #[arg(long)]
        warehouse: Option<std::path::PathBuf>,
        /// Orders to generate when the warehouse is missing.
        #[arg(long, default_value_t = 1_000_000)]
        orders: usize,
        /// Timed report runs.
        #[arg(long, default_value_t = 20)]
        iterations: usize,
        /// Untimed runs before them.
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// Report schedules in the schedule phase.
        #[arg(long, default_value_t = 100_000)]
        schedules: usize,
        /// Tenants they belong to.
        #[arg(long, default_value_t = 1_000)]
        tenants: usize,
        /// Length of the real-time schedule phase, seconds.
        #[arg(long, default_value_t = 150)]
        seconds: u64,
    },
    /// CRM audiences on differential-dataflow: 1,000,000 contacts, one audience per tenant,
    /// a stream of events and contact updates (goal ≥ 200,000 updates/s, update → membership
    /// change p99 ≤ 250 ms), memory per contact-in-audience, and the same audiences recomputed
    /// from scratch by DataFusion (they must agree) as a cost ratio.
    Audiences {
        /// Contacts, spread over the tenants.
        #[arg(long, default_value_t = 1_000_000)]
        contacts: usize,
        /// Tenants, one audience each.
        #[arg(long, default_value_t = 100)]
        tenants: usize,
        /// Events over the last 100 days loaded before the stream.
        #[arg(long, default_value_t = 3_000_000)]
        history: usize,
        /// Updates in the throughput phase.
        #[arg(long, default_value_t = 4_000_000)]
        updates: usize,
        /// Updates per step in the throughput phase.
        #[arg(long, default_value_t = 20_000)]
        batch: usize,
        /// Share of updates that change a contact (the rest are events).
        #[arg(long, default_value_t = 0.2)]
        contact_share: f64,
        /// Rate of the latency phase, updates/s.
        #[arg(long, default_value_t = 200_000)]
        rate: usize,
        /// Length of the latency phase, seconds.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// A step every this many ms in the latency phase.
        #[arg(long, default_value_t = 50)]
        tick_ms: u64,
        /// Timely worker threads of the audience dataflow.
        #[arg(long, default_value_t = 2)]
        workers: usize,
    },
    /// The web console: the demo's main dashboard page, server time cold and warm, the complete
    /// page in headless Chromium (DOMContentLoaded, through chromedriver) and bytes transferred.
    Console {
        /// Warehouse root (generated there when missing; default: a directory under $TMPDIR).
        #[arg(long)]
        warehouse: Option<std::path::PathBuf>,
        /// Orders to generate when the warehouse is missing.
        #[arg(long, default_value_t = 1_000_000)]
        orders: usize,
        /// Timed warm loads, over HTTP and in the browser each.
        #[arg(long, default_value_t = 30)]
        iterations: usize,
        /// The WebDriver server for Chromium.
        #[arg(long, default_value = "/usr/bin/chromedriver")]
        chromedriver: std::path::PathBuf,
        /// The Chromium binary.
        #[arg(long, default_value = "/usr/bin/chromium")]
        chromium: std::path::PathBuf,
    },
    /// Dashboard queries over Trino: through Tidemark with pushdown, in Trino directly, and
    /// with pushdown off; latency ratio and rows/bytes transferred (needs a seeded Trino:
    /// `bash .ci/trino.sh start`).
    Trino {
        /// Trino coordinator URL.
        #[arg(long, env = "TRINO_URL")]
        url: String,
        /// Catalog of the demo tables.
        #[arg(long, default_value = "memory")]
        catalog: String,
        /// Schema of the demo tables.
        #[arg(long, default_value = "demo")]
        schema: String,
        /// Tenant whose dashboards run.
        #[arg(long, default_value = "acme")]
        tenant: String,
        /// Timed runs per query and way.
        #[arg(long, default_value_t = 20)]
        iterations: usize,
        /// Untimed runs before them.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
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
            processes,
            process,
            addresses,
        } => {
            let args = matching::MatchBenchArgs {
                workers,
                tenants,
                rules,
                events,
                batch,
                rule_updates_per_sec,
                processes,
                process,
                addresses,
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
            live,
            store,
        } => {
            ingest::run(ingest::IngestBenchArgs {
                workers,
                events,
                batch,
                clients,
                rate,
                seconds,
                live: live == "on",
                store,
            })
            .await?
        }
        Which::Live {
            warehouse,
            orders,
            rate,
            compact_rate,
            seconds,
            iterations,
            live,
        } => {
            live::run(live::LiveBenchArgs {
                warehouse,
                orders,
                rate,
                compact_rate,
                seconds,
                iterations,
                live: live == "on",
            })
            .await?
        }
        Which::Secrets {
            secrets,
            threads,
            value_bytes,
            gets,
            batch,
        } => {
            secrets::run(secrets::SecretsBenchArgs {
                secrets,
                threads,
                value_bytes,
                gets,
                batch,
            })
            .await?
        }
        Which::Dashboard {
            warehouse,
            orders,
            iterations,
            warmup,
            python,
            no_duckdb,
            explain,
        } => {
            dashboard::run(dashboard::DashboardBenchArgs {
                warehouse,
                orders,
                iterations,
                warmup,
                python: (!no_duckdb).then_some(python),
                explain,
            })
            .await?
        }
        Which::Isolation {
            seconds,
            rate,
            queries,
            tarpits,
            orders,
        } => {
            isolation::run(isolation::IsolationBenchArgs {
                seconds,
                rate,
                queries,
                tarpits,
                orders,
            })
            .await?
        }
        Which::Fluvio {
            endpoint,
            events,
            partitions,
            workers,
            fluvio_bin,
            stream_rate,
            live,
        } => {
            fluvio::run(fluvio::FluvioBenchArgs {
                endpoint,
                events,
                partitions,
                workers,
                fluvio_bin,
                stream_rate,
                live: live == "on",
            })
            .await?
        }
        Which::Reports {
            warehouse,
            orders,
            iterations,
            warmup,
            schedules,
            tenants,
            seconds,
        } => {
            reports::run(reports::ReportsBenchArgs {
                warehouse,
                orders,
                iterations,
                warmup,
                schedules,
                tenants,
                seconds,
            })
            .await?
        }
        Which::Audiences {
            contacts,
            tenants,
            history,
            updates,
            batch,
            contact_share,
            rate,
            seconds,
            tick_ms,
            workers,
        } => {
            audiences::run(audiences::AudienceBenchArgs {
                contacts,
                tenants,
                history,
                updates,
                batch,
                contact_share,
                rate,
                seconds,
                tick_ms,
                workers,
            })
            .await?
        }
        Which::Console {
            warehouse,
            orders,
            iterations,
            chromedriver,
            chromium,
        } => {
            console::run(console::ConsoleBenchArgs {
                warehouse,
                orders,
                iterations,
                chromedriver,
                chromium,
            })
            .await?
        }
        Which::Trino {
            url,
            catalog,
            schema,
            tenant,
            iterations,
            warmup,
        } => {
            trino::run(trino::TrinoBenchArgs {
                url,
                catalog,
                schema,
                tenant,
                iterations,
                warmup,
            })
            .await?
        }
    };
    let mut result = result;
    if let Some(object) = result.as_object_mut() {
        object.insert("machine".into(), machine());
    }
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

/// The demo warehouse a benchmark reads: `given`, or a directory under $TMPDIR named by its
/// size; `tenant`'s `orders` orders are generated there (seed 42) when missing, and the summary
/// of that generation is returned with it.
pub(crate) async fn bench_warehouse(
    given: Option<std::path::PathBuf>,
    tenant: &'static str,
    orders: usize,
) -> anyhow::Result<(std::path::PathBuf, Option<crate::cli::warehouse::Summary>)> {
    let root = given
        .unwrap_or_else(|| std::env::temp_dir().join(format!("tidemark-bench-warehouse-{orders}")));
    if crate::cli::warehouse::exists(&root, tenant) {
        return Ok((root, None));
    }
    eprintln!(
        "generating a {orders}-order warehouse in {} …",
        root.display()
    );
    let dir = root.clone();
    let summary = tokio::task::spawn_blocking(move || {
        crate::cli::warehouse::generate(&dir, tenant, orders, 42)
    })
    .await??;
    Ok((root, Some(summary)))
}

/// The machine a figure was measured on: CPU model, logical CPUs, and the build profile. A
/// virtual machine's model name can be as vague as `Intel(R) Xeon(R) Processor` for CPUs of
/// different generations, so the family, model number and stepping, the clock and the cache
/// sizes are recorded beside it.
fn machine() -> serde_json::Value {
    machine_from(
        &std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default(),
        std::path::Path::new("/sys/devices/system/cpu/cpu0/cache"),
    )
}

/// [`machine`] from the text of `/proc/cpuinfo` and the first CPU's cache directory.
fn machine_from(cpuinfo: &str, cache_dir: &std::path::Path) -> serde_json::Value {
    let field = |name: &str| {
        cpuinfo.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_string())
        })
    };
    let model = field("model name").unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let number = |name: &str| field(name).and_then(|v| v.parse::<u64>().ok());
    serde_json::json!({
        "cpu": model,
        "cpu_family": number("cpu family"),
        "cpu_model": number("model"),
        "cpu_stepping": number("stepping"),
        "cpu_mhz": field("cpu MHz").and_then(|v| v.parse::<f64>().ok()),
        "cpu_caches": caches(cache_dir),
        "logical_cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}

/// The caches in `dir` as the kernel lists a CPU's, e.g. `{"L1d": "48K", "L2": "2048K"}`.
fn caches(dir: &std::path::Path) -> serde_json::Map<String, serde_json::Value> {
    let read = |index: &std::path::Path, name: &str| {
        std::fs::read_to_string(index.join(name))
            .ok()
            .map(|v| v.trim().to_string())
    };
    let mut caches = serde_json::Map::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let index = entry.path();
        let (Some(level), Some(kind), Some(size)) = (
            read(&index, "level"),
            read(&index, "type"),
            read(&index, "size"),
        ) else {
            continue;
        };
        let suffix = match kind.as_str() {
            "Data" => "d",
            "Instruction" => "i",
            _ => "",
        };
        caches.insert(format!("L{level}{suffix}"), size.into());
    }
    caches
}

/// The `p`-th percentile of sorted samples (nearest rank).
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// n, p50, p95, p99 and max of samples.
pub(crate) fn summary(mut samples: Vec<f64>) -> serde_json::Value {
    samples.sort_by(f64::total_cmp);
    serde_json::json!({
        "n": samples.len(),
        "p50": percentile(&samples, 50.0),
        "p95": percentile(&samples, 95.0),
        "p99": percentile(&samples, 99.0),
        "max": samples.last().copied().unwrap_or(0.0),
    })
}

/// A `/proc/self/status` field in MiB (`VmRSS`, `VmHWM`).
pub(crate) fn memory_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_cpus_with_the_same_vague_name_are_told_apart() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 207\n\
                       model name\t: Intel(R) Xeon(R) Processor\nstepping\t: 2\ncpu MHz\t\t: 2100.000\n\
                       \nprocessor\t: 1\ncpu family\t: 6\nmodel\t\t: 207\n";
        let dir = tempfile::tempdir().unwrap();
        for (index, level, kind, size) in [
            ("index0", "1", "Data", "48K"),
            ("index1", "1", "Instruction", "32K"),
            ("index2", "2", "Unified", "2048K"),
            ("index3", "3", "Unified", "307200K"),
        ] {
            let at = dir.path().join(index);
            std::fs::create_dir(&at).unwrap();
            for (name, text) in [("level", level), ("type", kind), ("size", size)] {
                std::fs::write(at.join(name), format!("{text}\n")).unwrap();
            }
        }
        // An entry that is not a cache index (the kernel lists a `uevent` file beside them) is
        // passed over.
        std::fs::write(dir.path().join("uevent"), "").unwrap();
        let machine = machine_from(cpuinfo, dir.path());
        assert_eq!(machine["cpu"], "Intel(R) Xeon(R) Processor");
        assert_eq!(machine["cpu_family"], 6);
        assert_eq!(machine["cpu_model"], 207);
        assert_eq!(machine["cpu_stepping"], 2);
        assert_eq!(machine["cpu_mhz"], 2100.0);
        assert_eq!(
            machine["cpu_caches"],
            serde_json::json!({"L1d": "48K", "L1i": "32K", "L2": "2048K", "L3": "307200K"})
        );
        // Nothing known about the CPU: the architecture stands for its name, the rest is null.
        let bare = machine_from("", &dir.path().join("missing"));
        assert_eq!(bare["cpu"], std::env::consts::ARCH);
        assert!(bare["cpu_model"].is_null());
        assert_eq!(bare["cpu_caches"], serde_json::json!({}));
    }
}
