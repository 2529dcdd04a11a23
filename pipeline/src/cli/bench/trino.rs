//! The dashboard queries over Trino three ways: (a) through Tidemark with whole-subplan
//! pushdown, (b) sent to Trino directly, (c) through Tidemark with pushdown off (Trino only
//! projects and filters by tenant; DataFusion aggregates). Reports p50/p95 latencies, the
//! ratio a/b (target ≤ 1.2) and the rows and bytes Trino sent in (a) and (c).
//!
//! Needs a Trino seeded with the demo tables: `bash .ci/trino.sh start` prints the URL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;
use sql::trino::dashboards::{DASHBOARD_QUERIES, direct_sql};
use sql::trino::{TrinoSource, TrinoSourceConfig};
use sql::{DashboardEngine, EngineConfig};

/// Parameters.
pub struct TrinoBenchArgs {
    /// Coordinator URL.
    pub url: String,
    /// Catalog and schema of the demo tables.
    pub catalog: String,
    pub schema: String,
    /// Tenant whose dashboards run.
    pub tenant: String,
    /// Timed runs per query and way.
    pub iterations: usize,
    /// Untimed runs before them.
    pub warmup: usize,
}

struct Way {
    name: &'static str,
    times: Vec<Duration>,
    rows: u64,
    bytes: u64,
    result_rows: usize,
}

impl Way {
    fn new(name: &'static str) -> Way {
        Way {
            name,
            times: Vec::new(),
            rows: 0,
            bytes: 0,
            result_rows: 0,
        }
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        let mut t: Vec<f64> = self.times.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        t.sort_by(f64::total_cmp);
        if t.is_empty() {
            return f64::NAN;
        }
        let i = ((t.len() - 1) as f64 * p).round() as usize;
        t[i]
    }
}

/// Runs the benchmark and returns its JSON report.
pub async fn run(args: TrinoBenchArgs) -> anyhow::Result<serde_json::Value> {
    let config = TrinoSourceConfig::new(&args.url, "tidemark-bench", &args.catalog, &args.schema);
    let tenant_column = config.tenant_column.clone();
    let pushed = Arc::new(
        TrinoSource::connect(config)
            .await
            .with_context(|| format!("connecting to Trino at {}", args.url))?,
    );
    let scanned = Arc::new(pushed.with_pushdown(false));
    let dir = std::env::temp_dir().join(format!("tidemark-bench-trino-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let engine = |source: Arc<TrinoSource>| {
        let dir = dir.clone();
        async move {
            DashboardEngine::new(EngineConfig {
                warehouse: dir,
                models: vec![],
                cache_ttl: Duration::ZERO,
                cache_entries: 0,
                sources: vec![source],
                limits: sql::QueryLimits::default(),
                live: None,
            })
            .await
        }
    };
    let pushed_engine = engine(Arc::clone(&pushed)).await?;
    let scanned_engine = engine(Arc::clone(&scanned)).await?;
    let tables: Vec<String> =
        sql::source::ExternalSource::table_names(pushed.as_ref(), &args.tenant);
    let tables: Vec<&str> = tables.iter().map(String::as_str).collect();

    let mut queries = Vec::new();
    let mut ratios = Vec::new();
    let (mut a_rows, mut a_bytes, mut c_rows, mut c_bytes) = (0u64, 0u64, 0u64, 0u64);
    for (name, query) in DASHBOARD_QUERIES {
        let direct = direct_sql(
            query,
            &tables,
            &args.catalog,
            &args.schema,
            &tenant_column,
            &args.tenant,
        );
        let mut ways = [Way::new("a"), Way::new("b"), Way::new("c")];
        for i in 0..args.warmup + args.iterations {
            let timed = i >= args.warmup;
            // Interleaved, so drift in the machine's load hits all three alike.
            for way in ways.iter_mut() {
                let source = match way.name {
                    "a" => &pushed,
                    _ => &scanned,
                };
                let before = source.transfer();
                let start = Instant::now();
                let rows = match way.name {
                    "a" => pushed_engine.sql(&args.tenant, query).await?.num_rows(),
                    "b" => {
                        let (_, batches) = pushed.client().query_all(&direct).await?;
                        batches.iter().map(|b| b.num_rows()).sum()
                    }
                    _ => scanned_engine.sql(&args.tenant, query).await?.num_rows(),
                };
                let elapsed = start.elapsed();
                let transfer = source.transfer().since(&before);
                if timed {
                    way.times.push(elapsed);
                    way.rows = transfer.rows;
                    way.bytes = transfer.bytes;
                    way.result_rows = rows;
                }
            }
        }
        let [a, b, c] = &ways;
        anyhow::ensure!(
            a.result_rows == b.result_rows && a.result_rows == c.result_rows,
            "{name}: the three ways disagree on the row count ({} / {} / {})",
            a.result_rows,
            b.result_rows,
            c.result_rows
        );
        let ratio = a.percentile_ms(0.5) / b.percentile_ms(0.5);
        ratios.push(ratio);
        a_rows += a.rows;
        a_bytes += a.bytes;
        c_rows += c.rows;
        c_bytes += c.bytes;
        queries.push(json!({
            "query": name,
            "result_rows": a.result_rows,
            "a_pushdown_ms": {"p50": a.percentile_ms(0.5), "p95": a.percentile_ms(0.95)},
            "b_trino_direct_ms": {"p50": b.percentile_ms(0.5), "p95": b.percentile_ms(0.95)},
            "c_no_pushdown_ms": {"p50": c.percentile_ms(0.5), "p95": c.percentile_ms(0.95)},
            "ratio_a_b_p50": ratio,
            "a_transfer": {"rows": a.rows, "bytes": a.bytes},
            "c_transfer": {"rows": c.rows, "bytes": c.bytes},
        }));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let geomean = (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp();
    let worst = ratios.iter().copied().fold(f64::NAN, f64::max);
    Ok(json!({
        "benchmark": "trino",
        "trino": args.url,
        "tenant": args.tenant,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "queries": queries,
        "summary": {
            "ratio_a_b_p50_geomean": geomean,
            "ratio_a_b_p50_worst": worst,
            "target_ratio": 1.2,
            "per_run_transfer_a": {"rows": a_rows, "bytes": a_bytes},
            "per_run_transfer_c": {"rows": c_rows, "bytes": c_bytes},
        },
    }))
}
