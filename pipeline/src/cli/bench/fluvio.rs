//! The Fluvio source: records/s from a topic into the durable log and through matching, against
//! the `fluvio` CLI reading the same topic raw in the same run.
//!
//! A fresh topic gets `events` order events (spread over its partitions by key), then:
//! 1. raw: `fluvio consume <topic> -B -d` per partition, one after the other, output counted and
//!    thrown away (the rate a plain consumer reaches on this machine);
//! 2. Tidemark: a server with 20 rules whose `[[sources.fluvio]]` reads the topic from the
//!    beginning; the clock runs from start-up until every partition's stored position reached
//!    the end (`logged`) and until the engine processed every event (`matched`);
//! 3. after a SIGKILL: `tidemark serve` as a child process with the same data directory, a
//!    producer streaming at `stream_rate` events/s; the child is killed with SIGKILL, started
//!    again a second later, and the clock runs from that restart until the lag — the age of the
//!    oldest produced record not yet logged — is under 1 s (goal: within 5 s). The log must
//!    then hold every event produced, once.
//!
//! Needs a Fluvio cluster: `--endpoint` or `FLUVIO_SC` (`eval "$(bash .ci/fluvio.sh start)"`
//! starts one and puts the `fluvio` CLI on PATH).

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use connectors::sources::fluvio::{FluvioSourceConfig, StartPosition};
use fluvio::metadata::topic::TopicSpec;
use fluvio::{Fluvio, FluvioClusterConfig};
use serde_json::json;
use tokio::io::AsyncBufReadExt;

use crate::config::{Config, TenantConfig};
use crate::server::Server;

/// Parameters.
pub struct FluvioBenchArgs {
    /// The Fluvio controller, `host:port`.
    pub endpoint: String,
    /// Events produced.
    pub events: usize,
    /// Partitions of the topic.
    pub partitions: u32,
    /// Dataflow workers.
    pub workers: usize,
    /// The `fluvio` CLI.
    pub fluvio_bin: String,
    /// Events/s the producer streams while the server is killed and restarted.
    pub stream_rate: usize,
    /// Live tables on (events read into `raw_events`/`orders` and compacted into Parquet).
    pub live: bool,
}

const TENANT: &str = "bench";
const KEY: &str = "bench-key-fluvio-0000";

fn order(n: usize, now_ms: i64) -> String {
    let channels = ["naver", "kakao", "google", "meta", "direct"];
    json!({
        "id": format!("e{n:012}"),
        "type": if n.is_multiple_of(10) { "refund" } else { "order" },
        "ts": now_ms,
        "attrs": {"amount": (n * 7919 % 2_000_000) as f64, "channel": channels[n % 5], "country": "KR"}
    })
    .to_string()
}

fn config(dir: &std::path::Path, args: &FluvioBenchArgs) -> Config {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    config.server.listen = "127.0.0.1:0".into();
    config.engine.workers = args.workers;
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
    config
}

/// Runs the benchmark.
pub async fn run(args: FluvioBenchArgs) -> anyhow::Result<serde_json::Value> {
    let fluvio = Fluvio::connect_with_config(&FluvioClusterConfig::new(&args.endpoint))
        .await
        .with_context(|| format!("cannot connect to Fluvio at {}", args.endpoint))?;
    let topic = format!("tidemark-bench-{}", std::process::id());
    let admin = fluvio.admin().await;
    let _ = admin.delete::<TopicSpec>(topic.clone()).await;
    admin
        .create(
            topic.clone(),
            false,
            TopicSpec::new_computed(args.partitions, 1, None),
        )
        .await
        .context("cannot create the benchmark topic")?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Produce.
    let now = chrono::Utc::now().timestamp_millis();
    let producer = fluvio.topic_producer(topic.clone()).await?;
    let started = Instant::now();
    let mut outputs = Vec::with_capacity(args.events);
    for n in 0..args.events {
        outputs.push(producer.send(format!("k{}", n % 97), order(n, now)).await?);
    }
    producer.flush().await?;
    let mut ends = vec![0i64; args.partitions as usize];
    for output in outputs {
        let stored = output.wait().await?;
        let end = &mut ends[stored.partition_id() as usize];
        *end = (*end).max(stored.offset() + 1);
    }
    let produce_seconds = started.elapsed().as_secs_f64();

    // Raw: the CLI reads each partition to its end.
    let started = Instant::now();
    let mut raw_records = 0u64;
    let mut raw_first_lines = Vec::new();
    for partition in 0..args.partitions {
        let mut child = tokio::process::Command::new(&args.fluvio_bin)
            .args(["consume", &topic, "-B", "-d", "-p", &partition.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot run {}", args.fluvio_bin))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let spawned = Instant::now();
        while lines.next_line().await?.is_some() {
            if raw_first_lines.len() <= partition as usize {
                raw_first_lines.push(spawned.elapsed().as_secs_f64());
            }
            raw_records += 1;
        }
        child.wait().await?;
    }
    let raw_seconds = started.elapsed().as_secs_f64();

    // Tidemark: rules first, then a server whose source reads the topic.
    let dir = std::env::temp_dir().join(format!("tidemark-bench-fluvio-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let server = Server::start(config(&dir, &args)).await?;
        let client = connectors::http::client();
        let base = format!("http://{}", server.addr);
        for r in 0..20 {
            let rule = if r % 5 == 4 {
                json!({"id": format!("rev{r}"), "kind": "threshold", "event_type": "order",
                       "aggregate": {"fn": "sum", "attr": "amount"}, "window": {"size": "1h", "slide": "10m"},
                       "group_by": ["channel"], "condition": {"op": ">", "value": 1e12}})
            } else {
                json!({"id": format!("big{r}"), "kind": "match", "event_type": "order",
                       "filter": {"and": [{"attr": "amount", "op": ">=", "value": 1_990_000 + r * 500},
                                          {"attr": "channel", "op": "in", "value": ["naver", "kakao"]}]}})
            };
            let response = client
                .post(format!("{base}/v1/rules"))
                .bearer_auth(KEY)
                .json(&rule)
                .send()
                .await?;
            anyhow::ensure!(
                response.status().is_success(),
                "creating a rule failed: {}",
                response.text().await?
            );
        }
        server.shutdown().await;
    }
    let mut with_source = config(&dir, &args);
    let source = FluvioSourceConfig {
        name: None,
        endpoint: args.endpoint.clone(),
        topic: topic.clone(),
        partitions: None,
        tenant: Some(TENANT.into()),
        multi_tenant: false,
        tenant_field: None,
        tenants: Vec::new(),
        start: StartPosition::Beginning,
        max_record_bytes: 1 << 20,
        max_record_events: 10_000,
        max_batch_records: 4_096,
    };
    let name = source.name();
    with_source.sources.fluvio = vec![source];
    let sources = with_source.sources.clone();
    let started = Instant::now();
    let server = Server::start(with_source).await?;
    let store = server.runtime.store().clone();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first_logged: Option<(Duration, i64)> = None;
    let logged = loop {
        let positions = {
            let (store, name) = (store.clone(), name.clone());
            tokio::task::spawn_blocking(move || store.source_positions(&name)).await??
        };
        let so_far: i64 = positions.iter().map(|s| s.next_offset).sum();
        if first_logged.is_none() && so_far > 0 {
            first_logged = Some((started.elapsed(), so_far));
        }
        let done = ends.iter().enumerate().all(|(p, end)| {
            positions
                .iter()
                .any(|s| s.partition as usize == p && s.next_offset >= *end)
        });
        if done {
            break started.elapsed();
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the source did not reach the end in 600 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    until(deadline, "the engine did not process every event", || {
        server.runtime.stats().events >= args.events as u64
    })
    .await?;
    let matched = started.elapsed();
    let logged_count = store.event_count(TENANT)?;
    // Live tables read the log behind the committer, on a thread that yields to it: when their
    // tail reaches the log's end.
    let mut live_read = None;
    if let Some(live) = &server.live {
        let log_end = store.last_event_seq()?;
        until(deadline, "the live tables did not read every event", || {
            live.status().applied >= log_end
        })
        .await?;
        live_read = Some(started.elapsed());
    }
    let mut child_config = config(&dir, &args);
    child_config.sources = sources;
    server.shutdown().await;

    let recovery = kill_and_recover(&fluvio, &topic, child_config, &dir, &args).await;
    let _ = std::fs::remove_dir_all(&dir);
    let _ = admin.delete::<TopicSpec>(topic.clone()).await;
    let recovery = recovery?;

    let rate = |n: f64, seconds: f64| (n / seconds).round();
    let raw_rate = rate(raw_records as f64, raw_seconds);
    let logged_rate = rate(args.events as f64, logged.as_secs_f64());
    Ok(json!({
        "benchmark": "fluvio",
        "events": args.events,
        "partitions": args.partitions,
        "workers": args.workers,
        "live_tables": args.live,
        "produce_events_per_sec": rate(args.events as f64, produce_seconds),
        "raw_consume": {"records": raw_records, "seconds": raw_seconds, "records_per_sec": raw_rate},
        "tidemark": {
            "events_logged": logged_count,
            "logged_seconds": logged.as_secs_f64(),
            "logged_events_per_sec": logged_rate,
            "matched_seconds": matched.as_secs_f64(),
            "matched_events_per_sec": rate(args.events as f64, matched.as_secs_f64()),
            "live_read_seconds": live_read.map(|d| d.as_secs_f64()),
        },
        // How long each side took to its first record (the CLI for each partition from its
        // start, the server from its start to its first commit), so a start-up cost shows
        // apart from the rate.
        "startup": {"raw_first_line_seconds": raw_first_lines,
            "first_logged_seconds": first_logged.map(|(d, _)| d.as_secs_f64()),
            "first_logged_records": first_logged.map(|(_, n)| n)},
        "vs_raw": (logged_rate / raw_rate * 100.0).round() / 100.0,
        "after_sigkill": recovery,
        "goal": "logged and matched >= 200,000 events/s and >= 0.8x the raw consume rate; \
                 after a SIGKILL, lag under 1 s within 5 s of the restart",
    }))
}

/// Waits, checking every 5 ms, until `done()`; fails with `failure` at `deadline`.
async fn until(
    deadline: Instant,
    failure: &str,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    while !done() {
        anyhow::ensure!(Instant::now() < deadline, "{failure}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// The records one partition received while streaming: the instant each was acknowledged,
/// by offset (from `first`).
#[derive(Default)]
struct Produced {
    first: Option<i64>,
    acked: Vec<Instant>,
}

impl Produced {
    /// When the record at `offset` was acknowledged, if it was.
    fn at(&self, offset: i64) -> Option<Instant> {
        let first = self.first?;
        usize::try_from(offset - first)
            .ok()
            .and_then(|i| self.acked.get(i).copied())
    }
}

/// Phase 3: `tidemark serve` streaming from the topic, killed with SIGKILL and started again;
/// how long until its lag is under 1 s.
async fn kill_and_recover(
    fluvio: &Fluvio,
    topic: &str,
    mut config: Config,
    dir: &std::path::Path,
    args: &FluvioBenchArgs,
) -> anyhow::Result<serde_json::Value> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    config.server.listen = format!("127.0.0.1:{port}");
    let file = dir.join("bench-serve.toml");
    std::fs::write(
        &file,
        toml::to_string(&config).context("the child's configuration")?,
    )?;
    let base = format!("http://127.0.0.1:{port}");
    let exe = std::env::current_exe()?;
    let log = dir.join("bench-serve.log");
    let spawn = || -> anyhow::Result<tokio::process::Child> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        Ok(tokio::process::Command::new(&exe)
            .arg("serve")
            .arg("--config")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()?)
    };
    let client = connectors::http::client();
    let partitions = args.partitions as usize;
    let produced: Arc<Mutex<Vec<Produced>>> = Arc::new(Mutex::new(
        (0..partitions).map(|_| Produced::default()).collect(),
    ));
    let stop = Arc::new(AtomicBool::new(false));

    // The producer: `stream_rate` events/s in 10 ms steps, each record's acknowledgement
    // recorded by another task in the order they were sent.
    let producer = Arc::new(fluvio.topic_producer(topic.to_owned()).await?);
    let (acks_tx, mut acks_rx) = tokio::sync::mpsc::unbounded_channel::<fluvio::ProduceOutput>();
    let acks = {
        let produced = produced.clone();
        tokio::spawn(async move {
            while let Some(output) = acks_rx.recv().await {
                let Ok(stored) = output.wait().await else {
                    continue;
                };
                let mut produced = produced.lock().expect("lock");
                let p = &mut produced[stored.partition_id() as usize];
                let first = *p.first.get_or_insert(stored.offset());
                let i = (stored.offset() - first) as usize;
                if p.acked.len() <= i {
                    p.acked.resize(i + 1, Instant::now());
                }
                p.acked[i] = Instant::now();
            }
        })
    };
    let streaming = {
        let (producer, stop) = (producer.clone(), stop.clone());
        let (rate, first_id) = (args.stream_rate, args.events);
        tokio::spawn(async move {
            let step = Duration::from_millis(10);
            let per_step = (rate / 100).max(1);
            let mut n = first_id;
            let mut tick = tokio::time::interval(step);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let now = chrono::Utc::now().timestamp_millis();
                for _ in 0..per_step {
                    let output = producer.send(format!("k{}", n % 97), order(n, now)).await?;
                    let _ = acks_tx.send(output);
                    n += 1;
                }
                producer.flush().await?;
            }
            anyhow::Ok(n - first_id)
        })
    };

    // The lag: the age of the oldest acknowledged record the child has not logged, from its
    // partitions' next offsets in /healthz (updated at every commit).
    let lag = || async {
        let health: serde_json::Value = client
            .get(format!("{base}/healthz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let source = health["sources"].as_object()?.values().next()?.clone();
        let now = Instant::now();
        let produced = produced.lock().expect("lock");
        let mut worst = Duration::ZERO;
        for (p, records) in produced.iter().enumerate() {
            let next = source["partitions"][p.to_string()]["next_offset"].as_i64()?;
            if let Some(at) = records.at(next) {
                worst = worst.max(now.saturating_duration_since(at));
            }
        }
        Some(worst)
    };
    let wait_lag_under = |limit: Duration, within: Duration| async move {
        let started = Instant::now();
        loop {
            if let Some(lag) = lag().await
                && lag < limit
            {
                return Ok(started.elapsed());
            }
            anyhow::ensure!(
                started.elapsed() < within,
                "the lag stayed over {limit:?} for {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };

    let outcome = async {
        let mut child = spawn()?;
        wait_lag_under(Duration::from_secs(1), Duration::from_secs(60)).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        child.kill().await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut child = spawn()?;
        let recovered = wait_lag_under(Duration::from_secs(1), Duration::from_secs(60)).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        let streamed = streaming.await??;
        drop(producer);
        acks.await?;
        let total = (args.events + streamed) as u64;
        let started = Instant::now();
        let logged = loop {
            let stats: serde_json::Value = client
                .get(format!("{base}/v1/stats"))
                .bearer_auth(KEY)
                .send()
                .await?
                .json()
                .await?;
            let logged = stats["events"].as_u64().unwrap_or(0);
            if logged >= total || started.elapsed() > Duration::from_secs(60) {
                break logged;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        child.kill().await?;
        anyhow::ensure!(
            logged == total,
            "after the SIGKILL the log holds {logged} events; {total} were produced"
        );
        anyhow::Ok(json!({
            "stream_events_per_sec": args.stream_rate,
            "streamed_events": streamed,
            "events_logged_total": logged,
            "lag_under_1s_after_restart_seconds": recovered.as_secs_f64(),
        }))
    }
    .await;
    stop.store(true, Ordering::Relaxed);
    outcome.with_context(|| format!("the SIGKILL phase (the server's log: {})", log.display()))
}
