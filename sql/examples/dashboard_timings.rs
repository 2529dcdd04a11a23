//! Times typical dashboard specs against a warehouse, uncached and cached, and prints p50/p95.
//! A developer's quick check of the engine alone; `tidemark bench dashboard` is the benchmark of
//! record (with DuckDB alongside).
//!
//! ```text
//! cargo run --release -p sql --example dashboard_timings -- <warehouse> <tenant> [runs] [--explain]
//! ```
//!
//! `--explain` also prints each spec's physical plan with run-time metrics (EXPLAIN ANALYZE).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use sql::{DashboardEngine, EngineConfig};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: dashboard_timings <warehouse> <tenant> [runs]";
    let warehouse = PathBuf::from(args.next().ok_or(usage)?);
    let tenant = args.next().ok_or(usage)?;
    let rest: Vec<String> = args.collect();
    let explain = rest.iter().any(|a| a == "--explain");
    let runs: usize = rest
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or(Ok(20), |s| s.parse())?;
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/commerce.toml");
    let engine = |ttl: u64| {
        DashboardEngine::new(EngineConfig {
            warehouse: warehouse.clone(),
            models: vec![model.clone()],
            cache_ttl: Duration::from_secs(ttl),
            cache_entries: if ttl == 0 { 0 } else { 1000 },
            sources: Vec::new(),
            limits: sql::QueryLimits::default(),
            live: None,
        })
    };
    let uncached = engine(0).await?;
    let cached = engine(3600).await?;
    let specs = [
        (
            "revenue by day and channel, one month",
            json!({
                "measures": ["orders.revenue", "orders.orders"],
                "dimensions": ["orders.channel"],
                "time": {"dimension": "orders.date", "grain": "day",
                         "range": ["2024-06-01", "2024-06-30"], "timezone": "Asia/Seoul"}
            }),
        ),
        (
            "hourly revenue by channel, one week (timestamps)",
            json!({
                "measures": ["orders.revenue"],
                "dimensions": ["orders.channel"],
                "time": {"dimension": "orders.order_ts", "grain": "hour",
                         "range": ["2024-06-01", "2024-06-07"], "timezone": "Asia/Seoul"}
            }),
        ),
        (
            "top products with ABC, paid, one year",
            json!({
                "measures": ["order_items.revenue"],
                "dimensions": ["order_items.product"],
                "segments": ["order_items.paid"],
                "time": {"dimension": "order_items.date", "range": ["2024-01-01", "2024-12-31"]},
                "analysis": {"type": "abc", "measure": "order_items.revenue"},
                "order": [{"member": "order_items.revenue", "direction": "desc"}],
                "limit": 50
            }),
        ),
        (
            "channel quadrant: ROAS against spend",
            json!({
                "measures": ["ad_spend.spend", "ad_spend.roas"],
                "dimensions": ["ad_spend.channel"],
                "time": {"dimension": "ad_spend.date", "range": ["2024-06-01", "2024-06-30"]},
                "analysis": {"type": "quadrant", "x": "ad_spend.spend", "y": "ad_spend.roas", "labels": true}
            }),
        ),
        (
            "month-over-month by category with compare",
            json!({
                "measures": ["order_items.revenue"],
                "dimensions": ["order_items.category"],
                "segments": ["order_items.paid"],
                "time": {"dimension": "order_items.date", "grain": "month", "range": ["2024-06-01", "2024-06-30"]},
                "compare": "previousPeriod"
            }),
        ),
    ];
    println!(
        "{:<45} {:>10} {:>10} {:>10} {:>10} {:>6}",
        "query", "p50", "p95", "cached p50", "cached p95", "rows"
    );
    for (name, spec) in &specs {
        if explain {
            let ctx = uncached.session(&tenant).await?;
            for _ in 0..3 {
                let start = Instant::now();
                let parsed = sql::spec::parse(uncached.model(), spec, chrono::Utc::now())?;
                let compiled = sql::spec::compile::compile(uncached.model(), &ctx, &parsed).await?;
                let compiled_at = start.elapsed();
                let state = ctx.state();
                let optimized = state.optimize(&compiled.plan)?;
                let optimized_at = start.elapsed();
                let physical = state
                    .query_planner()
                    .create_physical_plan(&optimized, &state)
                    .await?;
                let planned_at = start.elapsed();
                sql::datafusion::physical_plan::collect(physical, ctx.task_ctx()).await?;
                println!(
                    "{name}: compiled {compiled_at:.2?}, optimized {optimized_at:.2?}, planned {planned_at:.2?}, ran {:.2?}",
                    start.elapsed()
                );
            }
            let parsed = sql::spec::parse(uncached.model(), spec, chrono::Utc::now())?;
            let compiled = sql::spec::compile::compile(uncached.model(), &ctx, &parsed).await?;
            let df = ctx.execute_logical_plan(compiled.plan).await?;
            let batches = df.explain(false, true)?.collect().await?;
            println!(
                "== {name}\n{}",
                sql::arrow::util::pretty::pretty_format_batches(&batches)?
            );
        }
        let mut cold = Vec::new();
        let mut rows = 0;
        for _ in 0..runs {
            let start = Instant::now();
            rows = uncached.query_spec(&tenant, spec).await?.num_rows();
            cold.push(start.elapsed());
        }
        cached.query_spec(&tenant, spec).await?;
        let mut warm = Vec::new();
        for _ in 0..runs {
            let start = Instant::now();
            let result = cached.query_spec(&tenant, spec).await?;
            warm.push(start.elapsed());
            assert!(result.cached);
        }
        cold.sort();
        warm.sort();
        println!(
            "{name:<45} {:>10.2?} {:>10.2?} {:>10.2?} {:>10.2?} {rows:>6}",
            percentile(&cold, 0.5),
            percentile(&cold, 0.95),
            percentile(&warm, 0.5),
            percentile(&warm, 0.95)
        );
    }
    Ok(())
}
