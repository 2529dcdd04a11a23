//! Durable ingest over HTTP, end to end into the outbox.
//!
//! Phase 1 (throughput): `clients` tasks post NDJSON batches as fast as the server answers;
//! the clock stops when the engine has processed every event and enqueued its notifications.
//! Phase 2 (latency): batches paced to `rate` events/s; the server records, per committed batch,
//! the time from durable acceptance to its notifications being enqueued. It starts once phase 1's
//! writes are checkpointed out of the WAL, as they would be on a server running at that rate.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::config::{Config, TenantConfig};
use crate::server::Server;

/// Parameters.
pub struct IngestBenchArgs {
    /// Dataflow workers.
    pub workers: usize,
    /// Events in the throughput phase.
    pub events: usize,
    /// Events per request.
    pub batch: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Latency-phase rate, events/s.
    pub rate: usize,
    /// Latency-phase length, s.
    pub seconds: u64,
    /// Live tables on (events read into `raw_events`/`orders` and compacted into Parquet).
    pub live: bool,
    /// A PostgreSQL server's URL to run on (in a scratch database), instead of SQLite.
    pub store: Option<String>,
}

/// A database created on the given server for one run, dropped at the end.
struct ScratchDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    async fn create(admin_url: &str) -> anyhow::Result<ScratchDatabase> {
        let name = format!("tidemark_bench_ingest_{}", std::process::id());
        let (server, _) = admin_url.rsplit_once('/').ok_or_else(|| {
            anyhow::anyhow!("--store {admin_url}: expected postgres://user@host:port/database")
        })?;
        let url = format!("{server}/{name}");
        postgres_execute(
            admin_url,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .await?;
        postgres_execute(admin_url, &format!("CREATE DATABASE {name}")).await?;
        Ok(ScratchDatabase {
            admin_url: admin_url.to_owned(),
            name,
            url,
        })
    }

    async fn drop_now(self) -> anyhow::Result<()> {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        postgres_execute(&self.admin_url, &sql).await
    }
}

async fn postgres_execute(url: &str, sql: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("cannot connect to the benchmark's PostgreSQL server: {sql}"))?;
    let driver = tokio::spawn(connection);
    client
        .batch_execute(sql)
        .await
        .with_context(|| sql.to_owned())?;
    drop(client);
    let _ = driver.await;
    Ok(())
}

const TENANTS: usize = 10;
const KEY_PREFIX: &str = "bench-key-000000-";

fn ndjson(tenant_index: usize, first: usize, count: usize, now_ms: i64) -> String {
    let channels = ["naver", "kakao", "google", "meta", "direct"];
    let mut body = String::with_capacity(count * 120);
    for n in first..first + count {
        let amount = (n * 7919 % 2_000_000) as f64;
        let line = json!({
            "id": format!("t{tenant_index}-e{n:012}"),
            "type": if n % 10 == 0 { "refund" } else { "order" },
            "ts": now_ms,
            "attrs": {"amount": amount, "channel": channels[n % 5], "country": "KR"}
        });
        body.push_str(&line.to_string());
        body.push('\n');
    }
    body
}

/// Runs the benchmark on a fresh data directory.
pub async fn run(args: IngestBenchArgs) -> anyhow::Result<serde_json::Value> {
    let dir = std::env::temp_dir().join(format!("tidemark-bench-ingest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let scratch = match &args.store {
        Some(url) => Some(ScratchDatabase::create(url).await?),
        None => None,
    };
    let mut config = Config {
        data_dir: dir.clone(),
        store: scratch
            .as_ref()
            .map(|s| crate::config::StoreSetting::Url(s.url.clone())),
        ..Config::default()
    };
    config.server.listen = "127.0.0.1:0".into();
    config.engine.workers = args.workers;
    config.dashboard.live.enabled = args.live;
    config.tenants = (0..TENANTS)
        .map(|i| TenantConfig {
            id: format!("bench-{i}"),
            name: None,
            time_zone: "Asia/Seoul".into(),
            api_key: format!("{KEY_PREFIX}{i}"),
            previous_api_keys: Vec::new(),
            locale: "en-US".into(),
            currency: "USD".into(),
        })
        .collect();
    let server = Server::start(config).await?;
    let base = format!("http://{}", server.addr);
    let client = connectors::http::client();
    // 20 rules per tenant: big-order matches with different thresholds, and hourly revenue.
    for t in 0..TENANTS {
        let key = format!("{KEY_PREFIX}{t}");
        for r in 0..20 {
            let rule = if r % 5 == 4 {
                json!({"id": format!("t{t}-rev{r}"), "kind": "threshold", "event_type": "order",
                       "aggregate": {"fn": "sum", "attr": "amount"}, "window": {"size": "1h", "slide": "10m"},
                       "group_by": ["channel"], "condition": {"op": ">", "value": 1e12}})
            } else {
                json!({"id": format!("t{t}-big{r}"), "kind": "match", "event_type": "order",
                       "filter": {"and": [{"attr": "amount", "op": ">=", "value": 1_990_000 + r * 500},
                                          {"attr": "channel", "op": "in", "value": ["naver", "kakao"]}]}})
            };
            let response = client
                .post(format!("{base}/v1/rules"))
                .bearer_auth(&key)
                .json(&rule)
                .send()
                .await?;
            anyhow::ensure!(
                response.status().is_success(),
                "creating a rule failed: {}",
                response.text().await?
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.runtime.stats();

    // Phase 1: throughput.
    let now = chrono::Utc::now().timestamp_millis();
    let per_client = args.events / args.clients.max(1);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (client, base) = (client.clone(), base.clone());
        let batch = args.batch;
        tasks.push(tokio::spawn(async move {
            let mut sent = 0;
            let mut accepted = 0u64;
            while sent < per_client {
                let n = batch.min(per_client - sent);
                let tenant = (c + sent / batch) % TENANTS;
                let body = ndjson(tenant, c * per_client + sent, n, now);
                let response = client
                    .post(format!("{base}/v1/events"))
                    .bearer_auth(format!("{KEY_PREFIX}{tenant}"))
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()
                    .await?;
                let result: serde_json::Value = response.json().await?;
                accepted += result["accepted"].as_u64().unwrap_or(0);
                sent += n;
            }
            anyhow::Ok(accepted)
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        accepted += task.await??;
    }
    let acked = started.elapsed();
    let target = before.events + accepted;
    while server.runtime.stats().events < target {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let end_to_end = started.elapsed();
    let throughput_latencies = server.runtime.take_latencies();

    // Phase 1 leaves hundreds of megabytes in the WAL for the background checkpointer to copy;
    // a server running steadily at phase 2's rate never has such a backlog, so copy it first.
    let checkpoint_started = Instant::now();
    let checkpointed = server.runtime.store().checkpoint_log();
    let checkpoint_took = checkpoint_started.elapsed();

    // Phase 2: latency at a fixed rate.
    let interval = Duration::from_millis(20);
    let per_tick = (args.rate as f64 * interval.as_secs_f64()).round() as usize;
    let ticks = (args.seconds as f64 / interval.as_secs_f64()) as usize;
    let mut next = Instant::now();
    let mut offset = args.events + 1_000_000;
    let mut in_flight = Vec::new();
    let paced_start = Instant::now();
    for tick in 0..ticks {
        let tenant = tick % TENANTS;
        let body = ndjson(
            tenant,
            offset,
            per_tick,
            chrono::Utc::now().timestamp_millis(),
        );
        offset += per_tick;
        let (client, base) = (client.clone(), base.clone());
        in_flight.push(tokio::spawn(async move {
            client
                .post(format!("{base}/v1/events"))
                .bearer_auth(format!("{KEY_PREFIX}{tenant}"))
                .body(body)
                .send()
                .await
                .map(|_| ())
        }));
        next += interval;
        tokio::time::sleep_until(next.into()).await;
    }
    for task in in_flight {
        task.await??;
    }
    let paced_elapsed = paced_start.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut latencies = server.runtime.take_latencies();
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        latencies[((latencies.len() - 1) as f64 * q).round() as usize] * 1000.0
    };
    let stats = server.runtime.stats();
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(scratch) = scratch {
        scratch.drop_now().await?;
    }
    Ok(json!({
        "benchmark": "ingest",
        "store": if args.store.is_some() { "postgres" } else { "sqlite" },
        "workers": args.workers,
        "live_tables": args.live,
        "clients": args.clients,
        "batch": args.batch,
        "events": accepted,
        "acked_events_per_sec": accepted as f64 / acked.as_secs_f64(),
        "end_to_end_events_per_sec": accepted as f64 / end_to_end.as_secs_f64(),
        "end_to_end_seconds": end_to_end.as_secs_f64(),
        "throughput_phase_batches": throughput_latencies.len(),
        "wal_checkpoint_between_phases_seconds": checkpoint_took.as_secs_f64(),
        // Should the checkpoint fail, the latency phase still runs; its error is reported.
        "wal_checkpoint_between_phases_error": checkpointed.err().map(|e| e.to_string()),
        "latency_phase": {
            "target_events_per_sec": args.rate,
            "achieved_events_per_sec": (per_tick * ticks) as f64 / paced_elapsed.as_secs_f64(),
            "committed_batches": latencies.len(),
            "accepted_to_enqueued_p50_ms": quantile(0.50),
            "accepted_to_enqueued_p99_ms": quantile(0.99),
            "accepted_to_enqueued_max_ms": quantile(1.0),
        },
        "notifications": stats.state.matches + stats.state.firing + stats.state.resolved,
        "rules": stats.rules,
    }))
}
