//! Dashboard queries on the demo warehouse: Tidemark's engine (result cache off, then on) against
//! DuckDB over the same Parquet files, in the same run.
//!
//! The four queries are what a commerce dashboard asks most: revenue by day and channel for a
//! month; top products with their ABC class; the channel quadrant of ROAS against spend; revenue
//! by category this month against last month. Tidemark answers the dashboard spec (the path
//! `/v1/query` takes, without HTTP); DuckDB answers hand-written SQL that computes the same
//! thing, run by `pipeline/bench/dashboard_duckdb.py` (embedded here) with `python3`. Both sides'
//! answers are checked against each other (row count and the sum of one measure column).
//!
//! Latency is per query: `warmup` untimed runs, then `iterations` timed runs; p50 and p95 in
//! milliseconds. "cold" is the engine with the result cache off (the files are in the OS page
//! cache for both engines) and the spec's optimized plan re-used, as when a dashboard is asked
//! again; "cold_planned" is the same with the plan cache off too, every run optimized from
//! scratch, as when a spec is asked for the first time; "cached" is the same spec answered from
//! the result cache. DuckDB's runs alternate with the "cold" ones, one of each in turn (the
//! runner stays up between them), so a drift in the machine's speed reaches both engines alike
//! and the ratio of their p50s compares the engines, not two stretches of the machine.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde_json::{Value, json};
use sql::arrow::array::{Array, AsArray};
use sql::arrow::compute::cast;
use sql::arrow::datatypes::DataType;
use sql::{DashboardEngine, EngineConfig, QueryResult};

use crate::server::dashboards::built_in_model;

/// The DuckDB runner, written next to the plan at run time so the binary works from any directory.
const DUCKDB_SCRIPT: &str = include_str!("../../../bench/dashboard_duckdb.py");
const TENANT: &str = "demo-shop";

/// Parameters.
pub struct DashboardBenchArgs {
    /// Warehouse root; generated there when the tenant's tables are missing.
    pub warehouse: Option<PathBuf>,
    /// Orders to generate when the warehouse is missing.
    pub orders: usize,
    /// Timed runs per query and engine.
    pub iterations: usize,
    /// Untimed runs before them.
    pub warmup: usize,
    /// Python interpreter with the `duckdb` package; `None` skips DuckDB.
    pub python: Option<String>,
    /// Print each spec's physical plan with run-time metrics (EXPLAIN ANALYZE) to stderr.
    pub explain: bool,
}

/// One benchmark query: the dashboard spec, the equivalent DuckDB SQL, and the column whose sum
/// both answers must agree on (Tidemark's name, DuckDB's position).
pub(crate) struct BenchQuery {
    pub(crate) name: &'static str,
    pub(crate) spec: Value,
    duckdb: &'static str,
    check: (&'static str, usize),
}

pub(crate) fn queries() -> Vec<BenchQuery> {
    vec![
        BenchQuery {
            name: "revenue_by_day_and_channel_month",
            spec: json!({
                "measures": ["orders.revenue", "orders.orders"],
                "dimensions": ["orders.channel"],
                "time": {"dimension": "orders.date", "grain": "day",
                         "range": ["2025-12-01", "2025-12-31"], "timezone": "Asia/Seoul"}
            }),
            duckdb: "SELECT order_date, channel, \
                       sum(revenue) FILTER (WHERE status = 'paid') AS revenue, \
                       count(*) FILTER (WHERE status = 'paid') AS orders \
                     FROM orders \
                     WHERE order_date BETWEEN DATE '2025-12-01' AND DATE '2025-12-31' \
                     GROUP BY order_date, channel ORDER BY order_date, channel",
            check: ("orders.revenue", 2),
        },
        BenchQuery {
            name: "top_products_abc_year",
            spec: json!({
                "measures": ["order_items.revenue"],
                "dimensions": ["order_items.product"],
                "segments": ["order_items.paid"],
                "time": {"dimension": "order_items.date", "range": ["2025-01-01", "2025-12-31"]},
                "analysis": {"type": "abc", "measure": "order_items.revenue"},
                "order": [{"member": "order_items.revenue", "direction": "desc"}],
                "limit": 50
            }),
            duckdb: "WITH p AS ( \
                       SELECT pr.name AS product, sum(oi.revenue) AS revenue \
                       FROM order_items oi JOIN orders o ON o.order_id = oi.order_id \
                       LEFT JOIN products pr ON pr.product_id = oi.product_id \
                       WHERE o.status = 'paid' \
                         AND o.order_date BETWEEN DATE '2025-01-01' AND DATE '2025-12-31' \
                       GROUP BY pr.name), \
                     s AS ( \
                       SELECT product, revenue, \
                         sum(revenue) OVER (ORDER BY revenue DESC \
                           RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) \
                         / sum(revenue) OVER () AS abc_share \
                       FROM p) \
                     SELECT product, revenue, abc_share, \
                       CASE WHEN abc_share <= 0.8 THEN 'A' WHEN abc_share <= 0.95 THEN 'B' \
                         ELSE 'C' END AS abc_class \
                     FROM s ORDER BY revenue DESC, product LIMIT 50",
            check: ("order_items.revenue", 1),
        },
        BenchQuery {
            name: "channel_quadrant_roas_vs_spend_quarter",
            spec: json!({
                "measures": ["ad_spend.spend", "ad_spend.roas"],
                "dimensions": ["ad_spend.channel"],
                "time": {"dimension": "ad_spend.date", "range": ["2025-10-01", "2025-12-31"]},
                "analysis": {"type": "quadrant", "x": "ad_spend.spend", "y": "ad_spend.roas",
                             "labels": true}
            }),
            duckdb: "WITH s AS ( \
                       SELECT channel, sum(spend) AS spend FROM ad_spend \
                       WHERE date BETWEEN DATE '2025-10-01' AND DATE '2025-12-31' \
                       GROUP BY channel), \
                     r AS ( \
                       SELECT channel, sum(revenue) FILTER (WHERE status = 'paid') AS revenue \
                       FROM orders \
                       WHERE order_date BETWEEN DATE '2025-10-01' AND DATE '2025-12-31' \
                       GROUP BY channel), \
                     j AS ( \
                       SELECT coalesce(s.channel, r.channel) AS channel, s.spend, \
                         r.revenue / nullif(s.spend, 0) AS roas \
                       FROM s FULL JOIN r ON s.channel = r.channel), \
                     q AS (SELECT *, avg(spend) OVER () AS xs, avg(roas) OVER () AS ys FROM j) \
                     SELECT channel, spend, roas, \
                       CASE WHEN spend >= xs THEN 'H' ELSE 'L' END \
                         || CASE WHEN roas >= ys THEN 'H' ELSE 'L' END AS quadrant \
                     FROM q ORDER BY spend DESC NULLS LAST, channel",
            check: ("ad_spend.spend", 1),
        },
        BenchQuery {
            name: "category_month_over_month_compare",
            spec: json!({
                "measures": ["order_items.revenue"],
                "dimensions": ["order_items.category"],
                "segments": ["order_items.paid"],
                "time": {"dimension": "order_items.date", "grain": "month",
                         "range": ["2025-11-01", "2025-11-30"]},
                "compare": "previousPeriod"
            }),
            duckdb: "SELECT category, cur AS revenue, prev AS compare, cur - prev AS change, \
                       (cur - prev) / abs(prev) AS change_pct \
                     FROM ( \
                       SELECT pr.category, \
                         sum(oi.revenue) FILTER (WHERE o.order_date >= DATE '2025-11-01') AS cur, \
                         sum(oi.revenue) FILTER (WHERE o.order_date < DATE '2025-11-01') AS prev \
                       FROM order_items oi JOIN orders o ON o.order_id = oi.order_id \
                       LEFT JOIN products pr ON pr.product_id = oi.product_id \
                       WHERE o.status = 'paid' \
                         AND o.order_date BETWEEN DATE '2025-10-01' AND DATE '2025-11-30' \
                       GROUP BY pr.category) \
                     ORDER BY revenue DESC",
            check: ("order_items.revenue", 1),
        },
    ]
}

/// p50 and p95 of samples in milliseconds (nearest rank).
fn percentiles(samples: &[f64]) -> Value {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let index = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
        (sorted[index] * 1000.0).round() / 1000.0
    };
    if sorted.is_empty() {
        return json!(null);
    }
    json!({"p50_ms": rank(0.50), "p95_ms": rank(0.95), "runs": sorted.len()})
}

/// The sum of a numeric column over all rows (NULLs skipped).
fn column_sum(result: &QueryResult, column: &str) -> anyhow::Result<f64> {
    let index = result
        .schema
        .index_of(column)
        .with_context(|| format!("the answer has no column {column}"))?;
    let mut total = 0.0;
    for batch in &result.batches {
        let values = cast(batch.column(index), &DataType::Float64)?;
        let values = values.as_primitive::<sql::arrow::datatypes::Float64Type>();
        for i in 0..values.len() {
            if values.is_valid(i) {
                total += values.value(i);
            }
        }
    }
    Ok(total)
}

/// Prints the plan a spec compiles to, with the metrics of one run.
async fn explain(engine: &DashboardEngine, name: &str, spec: &Value) -> anyhow::Result<()> {
    let ctx = engine.session(TENANT).await?;
    let parsed = sql::spec::parse(engine.model(), spec, chrono::Utc::now())?;
    let compiled = sql::spec::compile::compile(engine.model(), &ctx, &parsed).await?;
    let explained = ctx
        .execute_logical_plan(compiled.plan)
        .await?
        .explain(false, true)?
        .collect()
        .await?;
    eprintln!(
        "---- {name}\n{}",
        sql::arrow::util::pretty::pretty_format_batches(&explained)?
    );
    Ok(())
}

/// One run of `spec`: its time in milliseconds and its answer, which must come from the result
/// cache exactly when `expect_cached`.
async fn timed(
    engine: &DashboardEngine,
    spec: &Value,
    expect_cached: bool,
) -> anyhow::Result<(f64, QueryResult)> {
    let started = Instant::now();
    let result = engine.query_spec(TENANT, spec).await?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(
        result.cached == expect_cached,
        "expected a {} answer",
        if expect_cached { "cached" } else { "fresh" }
    );
    Ok((ms, result))
}

/// `warmup` untimed runs of `spec` (at least one), then `iterations` timed ones: their times in
/// milliseconds and the last answer. `after_each` runs after every run, told whether it was timed.
async fn time_engine(
    engine: &DashboardEngine,
    spec: &Value,
    warmup: usize,
    iterations: usize,
    expect_cached: bool,
    mut after_each: impl AsyncFnMut(bool),
) -> anyhow::Result<(Vec<f64>, QueryResult)> {
    let warmup = warmup.max(1);
    let mut last = None;
    let mut samples = Vec::with_capacity(iterations);
    for run in 0..warmup + iterations {
        let timed_run = run >= warmup;
        if timed_run {
            let (ms, result) = timed(engine, spec, expect_cached).await?;
            samples.push(ms);
            last = Some(result);
        } else {
            last = Some(engine.query_spec(TENANT, spec).await?);
        }
        after_each(timed_run).await;
    }
    let last = last.context("no run")?;
    Ok((samples, last))
}

/// DuckDB in a Python process of its own (`pipeline/bench/dashboard_duckdb.py`), answering one
/// run of a query at a time, so its runs can alternate with Tidemark's.
struct DuckDb {
    process: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    replies: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    /// The runner's first line: DuckDB's version and thread count.
    about: Value,
    dir: PathBuf,
}

impl DuckDb {
    async fn start(python: &str, root: &Path, queries: &[BenchQuery]) -> anyhow::Result<Self> {
        use tokio::io::AsyncBufReadExt;
        let dir =
            std::env::temp_dir().join(format!("tidemark-bench-duckdb-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let script = dir.join("dashboard_duckdb.py");
        std::fs::write(&script, DUCKDB_SCRIPT)?;
        let plan = json!({
            "root": root.canonicalize()?.to_string_lossy(),
            "tenant": TENANT,
            "tables": ["orders", "order_items", "products", "customers", "ad_spend", "web_sessions"],
            "queries": queries.iter().map(|q| (q.name.to_string(), json!(q.duckdb))).collect::<serde_json::Map<_, _>>(),
        });
        let plan_path = dir.join("plan.json");
        std::fs::write(&plan_path, serde_json::to_vec(&plan)?)?;
        let mut process = tokio::process::Command::new(python)
            .arg(&script)
            .arg(&plan_path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            // Its complaints (a missing package, a failed query) go where the bench's go.
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {python}"))?;
        let (Some(stdin), Some(stdout)) = (process.stdin.take(), process.stdout.take()) else {
            anyhow::bail!("the DuckDB runner has no pipes");
        };
        let mut duck = DuckDb {
            process,
            stdin,
            replies: tokio::io::BufReader::new(stdout).lines(),
            about: Value::Null,
            dir,
        };
        duck.about = duck.reply().await?;
        Ok(duck)
    }

    /// The runner's next line, or why there is none.
    async fn reply(&mut self) -> anyhow::Result<Value> {
        if let Some(line) = self.replies.next_line().await? {
            let reply: Value = serde_json::from_str(&line)
                .with_context(|| format!("the DuckDB runner wrote {line:?}"))?;
            if let Some(error) = reply["error"].as_str() {
                anyhow::bail!("the DuckDB runner: {error}");
            }
            return Ok(reply);
        }
        let status = self.process.wait().await?;
        anyhow::bail!("the DuckDB runner ended ({status}; its output above says why)")
    }

    /// One run of the query named `name`: its time in milliseconds and the runner's reply (row
    /// count and first rows).
    async fn run(&mut self, name: &str) -> anyhow::Result<(f64, Value)> {
        use tokio::io::AsyncWriteExt;
        self.stdin.write_all(format!("{name}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        let reply = self.reply().await?;
        let ms = reply["ms"]
            .as_f64()
            .with_context(|| format!("the DuckDB runner's reply has no time: {reply}"))?;
        Ok((ms, reply))
    }
}

impl Drop for DuckDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn duckdb_sum(result: &Value, column: usize) -> Option<f64> {
    let rows = result["result"].as_array()?;
    Some(
        rows.iter()
            .filter_map(|row| row.get(column)?.as_str()?.parse::<f64>().ok())
            .sum(),
    )
}

/// Runs the benchmark.
pub async fn run(args: DashboardBenchArgs) -> anyhow::Result<Value> {
    let (root, summary) =
        super::bench_warehouse(args.warehouse.clone(), TENANT, args.orders).await?;
    let generated = summary.map_or(
        Value::Null,
        |summary| json!({"seconds": summary.elapsed_seconds, "tables": summary.tables}),
    );
    let models_dir =
        std::env::temp_dir().join(format!("tidemark-bench-models-{}", std::process::id()));
    let model = built_in_model(&models_dir)?;
    let engine = |entries: usize| {
        DashboardEngine::new(EngineConfig {
            warehouse: root.clone(),
            models: vec![model.clone()],
            cache_ttl: std::time::Duration::from_secs(3600),
            cache_entries: entries,
            sources: Vec::new(),
            limits: sql::QueryLimits::default(),
            live: None,
        })
    };
    let cold = engine(0).await?;
    let cached = engine(1_000).await?;
    let queries = queries();

    let mut duckdb = match &args.python {
        Some(python) => match DuckDb::start(python, &root, &queries).await {
            Ok(duck) => Some(duck),
            Err(e) => {
                eprintln!("DuckDB side skipped: {e:#}");
                None
            }
        },
        None => None,
    };
    let about_duckdb = duckdb.as_ref().map(|duck| duck.about.clone());

    let mut tidemark = Vec::new();
    let mut duck_runs = Vec::new();
    for query in &queries {
        eprintln!("tidemark: {}", query.name);
        if args.explain {
            explain(&cold, query.name, &query.spec).await?;
        }
        // Result cache off, every run optimized from scratch: what a spec asked for the first
        // time costs.
        cold.set_plan_cache(false);
        let (planned_samples, _) = time_engine(
            &cold,
            &query.spec,
            args.warmup,
            args.iterations,
            false,
            async |_| {},
        )
        .await?;
        // Result cache off, the optimized plan re-used: a dashboard asked again. Each run is
        // followed by DuckDB's run of the same question, so the two engines' samples come from
        // the same seconds of the machine (whose speed may drift within a benchmark).
        cold.set_plan_cache(true);
        let mut duck_samples = Vec::with_capacity(args.iterations);
        let mut duck_answer = None;
        let (cold_samples, answer) = time_engine(
            &cold,
            &query.spec,
            args.warmup,
            args.iterations,
            false,
            async |timed_run| {
                let Some(duck) = duckdb.as_mut() else {
                    return;
                };
                match duck.run(query.name).await {
                    Ok((ms, reply)) => {
                        if timed_run {
                            duck_samples.push(ms);
                        }
                        duck_answer = Some(reply);
                    }
                    Err(e) => {
                        eprintln!("DuckDB side stopped at {}: {e:#}", query.name);
                        duckdb = None;
                        duck_answer = None;
                    }
                }
            },
        )
        .await?;
        let (cached_samples, cached_answer) = time_engine(
            &cached,
            &query.spec,
            args.warmup,
            args.iterations,
            true,
            async |_| {},
        )
        .await?;
        anyhow::ensure!(
            cached_answer.num_rows() == answer.num_rows(),
            "{}: the cached answer has {} rows, the fresh one {}",
            query.name,
            cached_answer.num_rows(),
            answer.num_rows()
        );
        tidemark.push((planned_samples, cold_samples, cached_samples, answer));
        duck_runs.push(duck_answer.map(|reply| (duck_samples, reply)));
    }
    let _ = std::fs::remove_dir_all(&models_dir);
    drop(duckdb);
    let compared = duck_runs.iter().all(Option::is_some);

    let mut results = serde_json::Map::new();
    let mut cold_ok = true;
    let mut cached_ok = true;
    for ((query, (planned_samples, cold_samples, cached_samples, answer)), duck) in
        queries.iter().zip(&tidemark).zip(&duck_runs)
    {
        let planned_p = percentiles(planned_samples);
        let cold_p = percentiles(cold_samples);
        let cached_p = percentiles(cached_samples);
        cached_ok &= cached_p["p50_ms"].as_f64().is_some_and(|p| p <= 2.0);
        let mut entry = json!({
            "rows": answer.num_rows(),
            "tidemark_cold_planned": planned_p,
            "tidemark_cold": cold_p,
            "tidemark_cached": cached_p,
        });
        if let Some((samples, duck)) = duck {
            let duck_p = percentiles(samples);
            let ratio_to_duckdb =
                |ours: &Value| match (ours["p50_ms"].as_f64(), duck_p["p50_ms"].as_f64()) {
                    (Some(t), Some(d)) if d > 0.0 => Some((t / d * 100.0).round() / 100.0),
                    _ => None,
                };
            let ratio = ratio_to_duckdb(&cold_p);
            let planned_ratio = ratio_to_duckdb(&planned_p);
            cold_ok &= ratio.is_some_and(|r| r <= 1.5);
            let ours = column_sum(answer, query.check.0)?;
            let theirs = duckdb_sum(duck, query.check.1);
            let agree = theirs.is_some_and(|t| (t - ours).abs() <= 1e-6 * ours.abs().max(1.0))
                && duck["rows"].as_u64() == Some(answer.num_rows() as u64);
            entry["duckdb"] = duck_p;
            entry["cold_p50_ratio_to_duckdb"] = json!(ratio);
            entry["cold_planned_p50_ratio_to_duckdb"] = json!(planned_ratio);
            entry["answers_agree"] = json!(agree);
            if !agree {
                entry["check"] = json!({"column": query.check.0, "tidemark_sum": ours,
                    "duckdb_sum": theirs, "duckdb_rows": duck["rows"]});
            }
        }
        results.insert(query.name.to_string(), entry);
    }
    Ok(json!({
        "benchmark": "dashboard",
        "warehouse": root,
        "generated": generated,
        "tenant": TENANT,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "duckdb": about_duckdb.map(|d| json!({"version": d["duckdb_version"], "threads": d["threads"],
            "runs": "each after Tidemark's cold run of the same query"})),
        "queries": results,
        "targets": {
            "cold_p50_within_1_5x_duckdb": if compared { json!(cold_ok) } else { Value::Null },
            "cached_p50_at_most_2ms": cached_ok,
        },
    }))
}
