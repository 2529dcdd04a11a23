//! Scheduled reports: generating a 6-block weekly report over the demo warehouse, drawing charts
//! alone, and the dataflow's report schedules at scale.
//!
//! - **generation**: the whole run as the generator does it — six blocks answered by the
//!   dashboard engine (result cache off), five charts drawn, title and intro rendered, the HTML
//!   and text parts and attachments laid out, and the notification payload encoded — `warmup`
//!   untimed runs then `iterations` timed ones; p50/p95 in ms, and the peak resident memory the
//!   runs added (VmHWM after the runs minus VmRSS before them).
//! - **charts**: each of the report's charts drawn alone (SVG + PNG), p50/p95 in ms.
//! - **schedules**: `schedules` report schedules over `tenants` tenants in a 2-worker engine,
//!   each at a minute of the hour (about schedules/60 due per minute), stepped in real time for
//!   `seconds` the way the engine thread steps (at the next due instant, else every `tick`):
//!   how long after its instant each due run came out (p50/p99/max ms), and the cost of adding
//!   and removing schedules at 10,000 and at `schedules` held (per change, µs), which stays flat
//!   when a change costs O(log n) rather than a rescan.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sql::{DashboardEngine, EngineConfig};

use super::{memory_mib, summary};
use crate::config::QueryLimitsSettings;
use crate::generate::TemplateLimits;
use crate::generate::report::{
    ReportContext, ReportSpec, RunRef, Table, auto_chart, generate, render, run,
};
use crate::queries::QueryRuntime;
use crate::server::dashboards::built_in_model;

const TENANT: &str = "demo-shop";

/// Parameters.
pub struct ReportsBenchArgs {
    /// Warehouse root; generated there when missing.
    pub warehouse: Option<PathBuf>,
    /// Orders to generate when the warehouse is missing.
    pub orders: usize,
    /// Timed report runs.
    pub iterations: usize,
    /// Untimed runs before them.
    pub warmup: usize,
    /// Report schedules in the schedule phase.
    pub schedules: usize,
    /// Tenants they belong to.
    pub tenants: usize,
    /// Length of the real-time schedule phase, seconds.
    pub seconds: u64,
}

/// The weekly report: six blocks, five of them with a chart.
fn weekly_report() -> Value {
    json!({
        "name": "Weekly revenue",
        "schedule": {"cron": "0 9 * * MON", "timezone": "Asia/Seoul"},
        "title": "Revenue {{ blocks.revenue.total }} ({{ blocks.categories.change_percent }}% on the month before)",
        "intro": "{{ blocks.revenue.row_count }} channels; the top product made {{ blocks.products.first['order_items.revenue'] }}.",
        "blocks": [
            {"name": "revenue", "title": "Revenue by channel",
             "query": {"measures": ["orders.revenue"], "dimensions": ["orders.channel"],
                       "time": {"dimension": "orders.date", "range": ["2025-12-01", "2025-12-31"]},
                       "order": [{"member": "orders.revenue", "direction": "desc"}]}},
            {"name": "daily", "title": "Revenue by day and channel",
             "query": {"measures": ["orders.revenue"], "dimensions": ["orders.channel"],
                       "time": {"dimension": "orders.date", "grain": "day",
                                "range": ["2025-12-01", "2025-12-31"]}}},
            {"name": "products", "title": "ABC classes of products",
             "query": {"measures": ["order_items.revenue"], "dimensions": ["order_items.product"],
                       "analysis": {"type": "abc", "measure": "order_items.revenue"},
                       "order": [{"member": "order_items.revenue", "direction": "desc"}],
                       "limit": 40}},
            {"name": "roas", "title": "ROAS against spend, by channel",
             "query": {"measures": ["ad_spend.spend", "ad_spend.roas"],
                       "dimensions": ["ad_spend.channel"],
                       "time": {"dimension": "ad_spend.date", "range": ["2025-10-01", "2025-12-31"]},
                       "analysis": {"type": "quadrant", "x": "ad_spend.spend", "y": "ad_spend.roas",
                                    "labels": true}}},
            {"name": "categories", "title": "Revenue by category against the month before",
             "query": {"measures": ["order_items.revenue"], "dimensions": ["order_items.category"],
                       "time": {"dimension": "order_items.date", "range": ["2025-12-01", "2025-12-31"]},
                       "compare": "previousPeriod"}},
            {"name": "customers", "title": "Top customers", "chart": "none",
             "sql": "SELECT customer_id, count(*) AS orders, sum(revenue) AS revenue FROM orders \
                     WHERE status = 'paid' GROUP BY customer_id ORDER BY revenue DESC LIMIT 20"}
        ],
        "destinations": ["ops-email"]
    })
}

/// Runs the benchmark.
pub async fn run(args: ReportsBenchArgs) -> anyhow::Result<Value> {
    let (root, _) = super::bench_warehouse(args.warehouse.clone(), TENANT, args.orders).await?;
    let models_dir =
        std::env::temp_dir().join(format!("tidemark-bench-models-{}", std::process::id()));
    let model = built_in_model(&models_dir)?;
    let engine = DashboardEngine::new(EngineConfig {
        warehouse: root.clone(),
        models: vec![model],
        cache_ttl: Duration::ZERO,
        cache_entries: 0,
        sources: Vec::new(),
        limits: sql::QueryLimits::default(),
        live: None,
    })
    .await?;
    let queries = QueryRuntime::start(&QueryLimitsSettings::default(), Duration::from_secs(60))
        .context("query runtime")?;
    let context = ReportContext {
        engine,
        queries,
        templates: TemplateLimits::default(),
    };
    let spec = ReportSpec::from_json(weekly_report().to_string().as_bytes())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let at: DateTime<Utc> = "2026-01-05T00:00:00Z".parse()?;
    let run_ref = RunRef {
        tenant: TENANT,
        report_id: "weekly",
        version: 1,
        run_id: "run_bench",
        at,
        tz: chrono_tz::Asia::Seoul,
        trigger: "schedule",
    };
    let destinations = vec![connectors::store::StoredDestination {
        tenant: TENANT.into(),
        id: "ops-email".into(),
        kind: "email".into(),
        // A whole email configuration: recipients are read from it as the email sink reads it.
        config: json!({"host": "smtp.shop.example", "from": "Reports <reports@shop.example>",
                       "to": ["ceo@shop.example", "cfo@shop.example"]})
        .to_string(),
        updated_at_ms: 0,
    }];

    let rss_before = memory_mib("VmRSS");
    let mut timings = Vec::with_capacity(args.iterations);
    let mut last = None;
    for i in 0..args.warmup + args.iterations {
        let started = Instant::now();
        let generated = generate(&context, &spec, &run_ref).await;
        let notifications = run::notifications(&run_ref, &spec, &generated, &destinations, 0);
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(
            generated.errors.is_empty(),
            "the bench report failed: {:?}",
            generated.errors
        );
        anyhow::ensure!(
            notifications.len() == 2,
            "the bench report made {} notifications, not one per recipient",
            notifications.len()
        );
        if i >= args.warmup {
            timings.push(elapsed);
        }
        last = Some((generated, notifications));
    }
    let peak_added = memory_mib("VmHWM") - rss_before;
    let (generated, notifications) = last.context("no run")?;
    let payload_bytes = notifications.first().map_or(0, |n| n.payload.len());

    // Charts alone, from the last run's answers.
    let mut chart_timings = Vec::new();
    let mut charts = Vec::new();
    for block in &generated.blocks {
        if block.get("chart").is_some() {
            charts.push(block["name"].as_str().unwrap_or_default().to_string());
        }
    }
    for name in &charts {
        let block = spec
            .blocks
            .iter()
            .find(|b| &b.name == name)
            .context("block")?;
        let table = answer(&context, &run_ref, block).await?;
        let chart = auto_chart(&table).context("a chart")?;
        for i in 0..args.warmup + args.iterations {
            let started = Instant::now();
            let drawn = render(&chart, &table)?;
            let elapsed = started.elapsed().as_secs_f64() * 1000.0;
            anyhow::ensure!(!drawn.png.is_empty());
            if i >= args.warmup {
                chart_timings.push(elapsed);
            }
        }
    }

    let schedules = tokio::task::spawn_blocking({
        let (n, tenants, seconds) = (args.schedules, args.tenants, args.seconds);
        move || schedules_phase(n, tenants, seconds)
    })
    .await??;

    Ok(json!({
        "benchmark": "reports",
        "generation_ms": summary(timings),
        "generation_target": {"p50_ms": 500, "p95_ms": 1000, "peak_rss_added_mib": 200},
        "peak_rss_added_mib": peak_added,
        "blocks": spec.blocks.len(),
        "charts_per_run": charts.len(),
        "notifications_per_run": notifications.len(),
        "payload_bytes": payload_bytes,
        "chart_ms": summary(chart_timings),
        "chart_target_ms": 20,
        "schedules": schedules,
        "orders": args.orders,
    }))
}

/// One block's answer as a table, for timing its chart alone.
async fn answer(
    context: &ReportContext,
    run_ref: &RunRef<'_>,
    block: &crate::generate::report::definition::BlockDef,
) -> anyhow::Result<Table> {
    let query = block.query.clone().context("a query block")?;
    let query = crate::generate::report::definition::with_run_time(&query, run_ref.at, run_ref.tz);
    let result = context.engine.query_spec(run_ref.tenant, &query).await?;
    Ok(Table::from_query_result(&result)?)
}

/// The schedule phase (see the module docs).
fn schedules_phase(n: usize, tenants: usize, seconds: u64) -> anyhow::Result<Value> {
    use operators::{
        CatchUp, Engine, EngineConfig as DataflowConfig, Schedule, ScheduleChange, ScheduleSpec,
        StepInput,
    };
    let zones = ["Asia/Seoul", "Europe/Berlin", "America/New_York", "UTC"];
    let schedule = |i: usize, now: i64| {
        Schedule::new(
            &format!("tenant-{}", i % tenants.max(1)),
            &format!("report-{i}"),
            1,
            &ScheduleSpec {
                cron: format!("{} * * * *", i % 60),
                timezone: zones[i % zones.len()].into(),
                catch_up: CatchUp::Latest,
            },
            now,
        )
    };
    let mut engine = Engine::start(DataflowConfig {
        workers: 2,
        allowed_lateness_ms: 60_000,
        cluster: None,
    })?;
    let now = connectors::clock::now_ms();
    // Adding everything, in steps of 10,000.
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let batch: Vec<ScheduleChange> = (i..(i + 10_000).min(n))
            .map(|j| schedule(j, now).map(ScheduleChange::Upsert))
            .collect::<Result<_, _>>()?;
        i += batch.len();
        engine.step(StepInput {
            schedules: batch,
            clock_ms: Some(connectors::clock::now_ms()),
            ..Default::default()
        })?;
    }
    let load_us_per_schedule = started.elapsed().as_secs_f64() * 1e6 / n.max(1) as f64;

    // 1,000 changes (remove one, add one) with `held` schedules in the engine.
    let change_cost = |engine: &mut Engine, base: usize| -> anyhow::Result<f64> {
        let changes: Vec<ScheduleChange> = (0..1_000)
            .flat_map(|k| {
                let id = base + k;
                [
                    ScheduleChange::Remove {
                        tenant: format!("tenant-{}", id % tenants.max(1)),
                        report_id: format!("report-{id}"),
                    },
                    ScheduleChange::Upsert(schedule(id, now).expect("valid schedule")),
                ]
            })
            .collect();
        let started = Instant::now();
        engine.step(StepInput {
            schedules: changes,
            ..Default::default()
        })?;
        Ok(started.elapsed().as_secs_f64() * 1e6 / 2_000.0)
    };
    let at_full = change_cost(&mut engine, 0)?;
    let mut small = Engine::start(DataflowConfig {
        workers: 2,
        allowed_lateness_ms: 60_000,
        cluster: None,
    })?;
    let small_n = 10_000.min(n);
    small.step(StepInput {
        schedules: (0..small_n)
            .map(|j| schedule(j, now).map(ScheduleChange::Upsert))
            .collect::<Result<_, _>>()?,
        ..Default::default()
    })?;
    let at_small = change_cost(&mut small, 0)?;
    drop(small);

    // Real time: step at the next due instant (or every 200 ms), as the engine thread does.
    let tick = Duration::from_millis(200);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut lateness = Vec::new();
    let mut steps = Vec::new();
    while Instant::now() < deadline {
        let wait = engine.next_due_ms().map_or(tick, |due| {
            let until = u64::try_from(due - connectors::clock::now_ms()).unwrap_or(0);
            tick.min(Duration::from_millis(until))
        });
        std::thread::sleep(wait);
        let clock = connectors::clock::now_ms();
        let started = Instant::now();
        let out = engine.step(StepInput {
            clock_ms: Some(clock),
            ..Default::default()
        })?;
        let emitted = connectors::clock::now_ms();
        if !out.due_runs.is_empty() {
            steps.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        lateness.extend(
            out.due_runs
                .iter()
                .map(|r| (emitted - r.scheduled_ms) as f64),
        );
    }
    let stats = engine.stats();
    drop(engine);
    Ok(json!({
        "schedules": n,
        "tenants": tenants,
        "seconds": seconds,
        "due_runs": lateness.len(),
        "emitted_after_instant_ms": summary(lateness),
        "emitted_target_p99_ms": 50,
        "due_steps_ms": summary(steps),
        "load_us_per_schedule": load_us_per_schedule,
        "change_us_at_10k": at_small,
        "change_us_at_all": at_full,
        "held": stats.schedules,
    }))
}
