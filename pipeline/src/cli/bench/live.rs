//! Live tables under ingest: the dashboard queries of `bench dashboard` over the demo warehouse
//! plus the live tail, on a running server, without and then with ingest; and how far
//! compaction trails the log at a high ingest rate.
//!
//! Phase 1: the four dashboard specs over HTTP (`/v1/query`, result cache off), no ingest; p50.
//! Phase 2: the same while `order` events are posted at `rate` events/s; p50 and the ratio to
//! phase 1 (goal ≤ 1.25). Phase 3: `compact_rate` events/s for `seconds`; every 100 ms the
//! compacted watermark is compared with the acknowledged events, and the lag is the age of the
//! newest acknowledged event the watermark covers (goal < 10 s), then the time to catch up once
//! ingest stops. Ingest throughput with compaction on and off is `bench ingest --live on|off`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::config::{Config, TenantConfig};
use crate::server::Server;

const TENANT: &str = "demo-shop";
const KEY: &str = "bench-live-key-0123456789";

/// Parameters.
pub struct LiveBenchArgs {
    /// Warehouse root (generated there when missing).
    pub warehouse: Option<PathBuf>,
    /// Orders to generate when the warehouse is missing.
    pub orders: usize,
    /// Ingest rate while the queries run, events/s.
    pub rate: usize,
    /// Ingest rate of the compaction phase, events/s.
    pub compact_rate: usize,
    /// Length of the compaction phase, seconds.
    pub seconds: u64,
    /// Timed runs per query and phase.
    pub iterations: usize,
    /// Live tables on; off measures the same queries and ingest over the warehouse files alone
    /// (and skips the compaction phase), to tell the live tail's cost from the ingest's.
    pub live: bool,
}

fn ndjson(first: u64, count: usize, now_ms: i64) -> String {
    let channels = ["naver", "kakao", "google", "meta", "direct"];
    let mut body = String::with_capacity(count * 130);
    for n in first..first + count as u64 {
        let line = json!({
            "id": format!("live-{n:012}"),
            "type": "order",
            "ts": now_ms,
            "attrs": {"amount": (n * 7919 % 200_000) as f64, "channel": channels[n as usize % 5],
                      "device": "mobile", "coupon": "W10"}
        });
        body.push_str(&line.to_string());
        body.push('\n');
    }
    body
}

/// Posts `rate` events/s in 20 ms ticks until `stop`; counts what the server acknowledged, and
/// records when the count reached each value (for the lag).
struct Pacer {
    acked: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<anyhow::Result<(u64, f64)>>,
}

impl Pacer {
    fn start(base: &str, rate: usize, first: u64, acked: Arc<AtomicU64>) -> Pacer {
        let stop = Arc::new(AtomicBool::new(false));
        let (base, stop_flag, counter) = (base.to_string(), stop.clone(), acked.clone());
        let task = tokio::spawn(async move {
            let client = connectors::http::client();
            let interval = Duration::from_millis(20);
            let per_tick = ((rate as f64) * interval.as_secs_f64()).round().max(1.0) as usize;
            let mut next = Instant::now();
            let mut offset = first;
            let started = Instant::now();
            let mut in_flight = Vec::new();
            while !stop_flag.load(Ordering::Relaxed) {
                let body = ndjson(offset, per_tick, chrono::Utc::now().timestamp_millis());
                offset += per_tick as u64;
                let (client, base, counter) = (client.clone(), base.clone(), counter.clone());
                in_flight.push(tokio::spawn(async move {
                    let response = client
                        .post(format!("{base}/v1/events"))
                        .bearer_auth(KEY)
                        .header("content-type", "application/x-ndjson")
                        .body(body)
                        .send()
                        .await?;
                    let answer: Value = response.json().await?;
                    counter.fetch_add(answer["accepted"].as_u64().unwrap_or(0), Ordering::SeqCst);
                    anyhow::Ok(())
                }));
                in_flight.retain(|t: &tokio::task::JoinHandle<_>| !t.is_finished());
                next += interval;
                tokio::time::sleep_until(next.into()).await;
            }
            for task in in_flight {
                task.await??;
            }
            let sent = offset - first;
            Ok((sent, sent as f64 / started.elapsed().as_secs_f64()))
        });
        Pacer { acked, stop, task }
    }

    async fn stop(self) -> anyhow::Result<(u64, f64)> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = &self.acked;
        self.task.await?
    }
}

async fn p50_per_query(
    client: &reqwest::Client,
    base: &str,
    queries: &[(&'static str, Value)],
    iterations: usize,
) -> anyhow::Result<serde_json::Map<String, Value>> {
    let mut out = serde_json::Map::new();
    for (name, spec) in queries {
        let mut samples = Vec::with_capacity(iterations);
        for i in 0..iterations + 2 {
            let started = Instant::now();
            let response = client
                .post(format!("{base}/v1/query"))
                .bearer_auth(KEY)
                .body(spec.to_string())
                .send()
                .await?;
            anyhow::ensure!(
                response.status().is_success(),
                "{name}: {}",
                response.text().await?
            );
            let _ = response.bytes().await?;
            if i >= 2 {
                samples.push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        samples.sort_by(f64::total_cmp);
        out.insert(
            name.to_string(),
            json!(samples[samples.len() / 2].round_to(2)),
        );
    }
    Ok(out)
}

trait Round {
    fn round_to(self, digits: i32) -> f64;
}

impl Round for f64 {
    fn round_to(self, digits: i32) -> f64 {
        let scale = 10f64.powi(digits);
        (self * scale).round() / scale
    }
}

/// Runs the benchmark.
pub async fn run(args: LiveBenchArgs) -> anyhow::Result<Value> {
    let (root, _) = super::bench_warehouse(args.warehouse.clone(), TENANT, args.orders).await?;
    // Live files land in the warehouse: run on a copy of the tenant's directories so the shared
    // warehouse stays as generated.
    let dir = std::env::temp_dir().join(format!("tidemark-bench-live-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let copy = dir.join("warehouse");
    copy_warehouse(&root, &copy)?;
    let mut config = Config {
        data_dir: dir.join("data"),
        ..Config::default()
    };
    config.server.listen = "127.0.0.1:0".into();
    config.dashboard.warehouse = Some(copy);
    config.dashboard.cache_entries = 0;
    config.dashboard.live.enabled = args.live;
    config.tenants = vec![TenantConfig {
        id: TENANT.into(),
        name: None,
        time_zone: "Asia/Seoul".into(),
        api_key: KEY.into(),
        previous_api_keys: Vec::new(),
        locale: "en-US".into(),
        currency: "USD".into(),
    }];
    let server = Server::start(config).await?;
    let live = server.live.clone();
    let base = format!("http://{}", server.addr);
    let client = connectors::http::client();
    let queries: Vec<(&'static str, Value)> = super::dashboard::queries()
        .into_iter()
        .map(|q| (q.name, q.spec))
        .collect();

    // A tail to read: a few seconds of events before the quiet phase, compacted or not.
    let acked = Arc::new(AtomicU64::new(0));
    let warm = Pacer::start(&base, args.rate, 0, acked.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (warm_sent, _) = warm.stop().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    eprintln!("phase 1: queries without ingest");
    let quiet = p50_per_query(&client, &base, &queries, args.iterations).await?;
    eprintln!("phase 2: queries while ingesting {} events/s", args.rate);
    let pacer = Pacer::start(&base, args.rate, warm_sent, acked.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let busy = p50_per_query(&client, &base, &queries, args.iterations).await?;
    let (busy_sent, busy_rate) = pacer.stop().await?;
    let mut ratios = serde_json::Map::new();
    let mut within = true;
    for (name, quiet_p50) in &quiet {
        let ratio = (busy[name].as_f64().unwrap_or(f64::NAN)
            / quiet_p50.as_f64().unwrap_or(f64::NAN))
        .round_to(2);
        within &= ratio <= 1.25;
        ratios.insert(name.clone(), json!(ratio));
    }

    let compaction = match &live {
        Some(live) => compaction_phase(&args, &base, live, &acked, warm_sent + busy_sent).await?,
        None => Value::Null,
    };
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({
        "benchmark": "live",
        "warehouse": root,
        "queries_p50_ms_without_ingest": quiet,
        "queries_p50_ms_with_ingest": busy,
        "ratio_with_to_without": ratios,
        "ingest_during_queries": {"target_events_per_sec": args.rate,
                                  "achieved_events_per_sec": busy_rate.round(),
                                  "events": busy_sent},
        "live_tables": args.live,
        "compaction": compaction,
        "targets": {
            "queries_within_1_25x": within,
            "lag_under_10s": compaction["max_lag_seconds"].as_f64().map(|lag| lag < 10.0),
        },
    }))
}

/// Phase 3: `compact_rate` events/s for `seconds`, and how far the compacted watermark trails.
async fn compaction_phase(
    args: &LiveBenchArgs,
    base: &str,
    live: &sql::live::LiveTables,
    acked: &Arc<AtomicU64>,
    first: u64,
) -> anyhow::Result<Value> {
    eprintln!(
        "phase 3: compaction while ingesting {} events/s for {} s",
        args.compact_rate, args.seconds
    );
    // Wait for the earlier phases' events to be compacted, so the lag is this phase's own.
    let settle = Instant::now();
    while live.status().watermark < acked.load(Ordering::SeqCst)
        && settle.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let base_count = acked.load(Ordering::SeqCst);
    let pacer = Pacer::start(base, args.compact_rate, first, acked.clone());
    let started = Instant::now();
    // (seconds since start, events acknowledged then)
    let mut history: Vec<(f64, u64)> = vec![(0.0, base_count)];
    let mut max_lag: f64 = 0.0;
    let mut max_tail = 0;
    let lag_at = |history: &[(f64, u64)], now: f64, watermark: u64| -> f64 {
        // The first time the acknowledged count exceeded the watermark: events acknowledged
        // since then are not compacted yet.
        history
            .iter()
            .find(|(_, count)| *count > watermark)
            .map_or(0.0, |(t, _)| now - t)
    };
    while started.elapsed() < Duration::from_secs(args.seconds) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = started.elapsed().as_secs_f64();
        history.push((now, acked.load(Ordering::SeqCst)));
        let status = live.status();
        max_tail = max_tail.max(status.tail_events);
        max_lag = max_lag.max(lag_at(&history, now, status.watermark));
    }
    let (compact_sent, compact_rate) = pacer.stop().await?;
    let stopped = Instant::now();
    let total = acked.load(Ordering::SeqCst);
    while live.status().watermark < total && stopped.elapsed() < Duration::from_secs(120) {
        let now = started.elapsed().as_secs_f64();
        max_lag = max_lag.max(lag_at(&history, now, live.status().watermark));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let catch_up = stopped.elapsed().as_secs_f64();
    let final_status = live.status();
    Ok(json!({
        "target_events_per_sec": args.compact_rate,
        "achieved_events_per_sec": compact_rate.round(),
        "events": compact_sent,
        "seconds": args.seconds,
        "max_lag_seconds": max_lag.round_to(2),
        "max_tail_events": max_tail,
        "catch_up_after_ingest_stops_seconds": catch_up.round_to(2),
        "compacted_all": final_status.watermark >= total,
    }))
}

/// Copies `<root>/<table>/tenant=demo-shop/` for every table of the warehouse into `to`.
fn copy_warehouse(root: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    for table in std::fs::read_dir(root)? {
        let table = table?;
        let from = table.path().join(format!("tenant={TENANT}"));
        if !from.is_dir() {
            continue;
        }
        let dest = to.join(table.file_name()).join(format!("tenant={TENANT}"));
        std::fs::create_dir_all(&dest)?;
        for file in std::fs::read_dir(&from)? {
            let file = file?;
            let name = file.file_name();
            if name.to_string_lossy().ends_with(".parquet") {
                std::fs::copy(file.path(), dest.join(name))?;
            }
        }
    }
    Ok(())
}
