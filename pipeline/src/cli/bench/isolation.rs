//! One tenant's noise against another tenant's latency: a quiet tenant posts single events at a
//! steady pace and has each one delivered to a fast webhook receiver, first alone, then while a
//! noisy tenant runs heavy SQL queries without pause, fires a rule whose template burns its
//! whole rendering budget, and delivers to webhooks that accept connections and never answer
//! (with the longest timeout the server allows).
//!
//! Reported per phase: the quiet tenant's `POST /v1/events` latency (request to answer, p50 /
//! p99 / max) and its delivery latency (request sent to webhook received, p50 / p99 / max), and
//! in the noisy phase how many of the noisy tenant's queries were answered, refused or timed
//! out. Goal: ingest p99 ≤ 100 ms and every delivery within 1 s while the noise runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use serde_json::{Value, json};

use crate::cli::warehouse;
use crate::config::{Config, TenantConfig};
use crate::server::Server;

/// Parameters.
pub struct IsolationBenchArgs {
    /// Length of each phase, seconds.
    pub seconds: u64,
    /// Quiet tenant's events per second (one event per request).
    pub rate: u32,
    /// Noisy tenant's concurrent query loops.
    pub queries: usize,
    /// Noisy tenant's tarpit webhooks.
    pub tarpits: usize,
    /// Orders in the noisy tenant's warehouse.
    pub orders: usize,
}

const QUIET: &str = "quiet-shop";
const NOISY: &str = "noisy-shop";
const QUIET_KEY: &str = "bench-isolation-quiet-key-0001";
const NOISY_KEY: &str = "bench-isolation-noisy-key-0001";

/// A query that keeps a core busy for seconds on the demo warehouse.
const HEAVY_SQL: &str = "SELECT a.channel, count(*), sum(a.revenue * b.revenue) \
     FROM orders a JOIN orders b ON a.channel = b.channel AND a.order_id % 97 = b.order_id % 89 \
     GROUP BY a.channel";

/// A template that spends its whole rendering budget (or, without one, holds the renderer) on
/// the noisy tenant's events, which carry `burn`. The check at rule creation renders samples
/// without attributes, so it lets this one through, as it would a template whose cost depends
/// on the data.
const BURNING_TEMPLATE: &str = "{% if event.attrs.burn %}{% for i in range(100000) %}\
     {% for j in range(100000) %}{{ i * j }}{% endfor %}{% endfor %}{% endif %}";

/// Runs the benchmark on a fresh data directory.
pub async fn run(args: IsolationBenchArgs) -> anyhow::Result<Value> {
    let dir = std::env::temp_dir().join(format!("tidemark-bench-isolation-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = Config {
        data_dir: dir.join("data"),
        ..Config::default()
    };
    config.server.listen = "127.0.0.1:0".into();
    config.tenants = [(QUIET, QUIET_KEY), (NOISY, NOISY_KEY)]
        .into_iter()
        .map(|(id, key)| TenantConfig {
            id: id.into(),
            name: None,
            time_zone: "Asia/Seoul".into(),
            api_key: key.into(),
            previous_api_keys: Vec::new(),
            locale: "en-US".into(),
            currency: "USD".into(),
        })
        .collect();
    config.dashboard.warehouse = Some(dir.join("warehouse"));
    config.dashboard.query_timeout = Duration::from_secs(10).into();
    // The receiver and the tarpit listen on loopback, which deliveries may reach only when an
    // operator allows it.
    config.outbound.allow_private_networks = vec!["127.0.0.1/32".into()];
    eprintln!(
        "generating the noisy tenant's warehouse ({} orders) …",
        args.orders
    );
    {
        let root = config.warehouse_dir();
        let orders = args.orders;
        tokio::task::spawn_blocking(move || warehouse::generate(&root, NOISY, orders, 7)).await??;
    }
    // The longest timeout a destination may ask for.
    let max_timeout_ms = config.outbound.max_timeout.get().as_millis() as u64;
    let server = Server::start(config).await?;
    let base = format!("http://{}", server.addr);
    let client = connectors::http::client_builder()
        .timeout(Duration::from_secs(120))
        .build()?;

    let (receiver, arrivals) = fast_receiver().await?;
    let tarpit = tarpit().await?;
    setup(
        &client,
        &base,
        QUIET_KEY,
        &[("fast", &receiver, 5_000)],
        None,
    )
    .await?;
    let tarpits: Vec<(String, String, u64)> = (0..args.tarpits)
        .map(|i| (format!("tarpit-{i}"), tarpit.clone(), max_timeout_ms))
        .collect();
    let tarpits: Vec<(&str, &str, u64)> = tarpits
        .iter()
        .map(|(id, url, t)| (id.as_str(), url.as_str(), *t))
        .collect();
    setup(&client, &base, NOISY_KEY, &tarpits, Some(BURNING_TEMPLATE)).await?;

    let seconds = Duration::from_secs(args.seconds);
    eprintln!("phase 1: the quiet tenant alone for {seconds:?} …");
    let alone = quiet_phase(&client, &base, &arrivals, args.rate, seconds, "alone").await?;

    eprintln!("phase 2: with the noisy tenant for {seconds:?} …");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut noise = tokio::task::JoinSet::new();
    for _ in 0..args.queries {
        noise.spawn(query_loop(client.clone(), base.clone(), stop.clone()));
    }
    noise.spawn(noisy_events(client.clone(), base.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await; // let the noise build up
    let noisy = quiet_phase(&client, &base, &arrivals, args.rate, seconds, "noisy").await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut outcomes: HashMap<String, u64> = HashMap::new();
    while let Some(done) = noise.join_next().await {
        for (outcome, n) in done? {
            *outcomes.entry(outcome).or_default() += n;
        }
    }
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({
        "benchmark": "isolation",
        "seconds_per_phase": args.seconds,
        "quiet_rate_per_s": args.rate,
        "noisy_query_loops": args.queries,
        "noisy_tarpit_webhooks": args.tarpits,
        "noisy_orders": args.orders,
        "alone": alone,
        "with_noise": noisy,
        "noisy_outcomes": outcomes,
        "goal": "with_noise: ingest p99 <= 100 ms, every delivery within 1000 ms",
    }))
}

/// Creates destinations and an `order` rule sending to them for `key`'s tenant.
async fn setup(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    destinations: &[(&str, &str, u64)],
    template: Option<&str>,
) -> anyhow::Result<()> {
    for (id, url, timeout_ms) in destinations {
        let body =
            json!({"id": id, "kind": "webhook", "config": {"url": url, "timeout_ms": timeout_ms}});
        post_ok(client, &format!("{base}/v1/destinations"), key, &body).await?;
    }
    let mut rule = json!({
        "id": "every-order", "kind": "match", "event_type": "order",
        "destinations": destinations.iter().map(|d| d.0).collect::<Vec<_>>(),
    });
    if let Some(template) = template {
        rule["template"] = json!(template);
    }
    post_ok(client, &format!("{base}/v1/rules"), key, &rule).await
}

async fn post_ok(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    body: &Value,
) -> anyhow::Result<()> {
    let response = client.post(url).bearer_auth(key).json(body).send().await?;
    let status = response.status();
    if !status.is_success() {
        anyhow::bail!("POST {url}: {status}: {}", response.text().await?);
    }
    Ok(())
}

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

/// A webhook receiver answering at once; records when each event's notification arrived.
async fn fast_receiver() -> anyhow::Result<(String, Arrivals)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let arrivals: Arrivals = Arc::default();
    let seen = arrivals.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: Bytes| {
            let seen = seen.clone();
            async move {
                let at = Instant::now();
                if let Ok(payload) = serde_json::from_slice::<Value>(&body)
                    && let Some(id) = payload["event"]["id"].as_str()
                {
                    seen.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(id.to_string())
                        .or_insert(at);
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, arrivals))
}

/// A listener that accepts connections and never answers, holding them open.
async fn tarpit() -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    Ok(url)
}

/// The quiet tenant's paced events: one per request; latency of each answer and delivery.
async fn quiet_phase(
    client: &reqwest::Client,
    base: &str,
    arrivals: &Arrivals,
    rate: u32,
    length: Duration,
    phase: &str,
) -> anyhow::Result<Value> {
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut sent: Vec<(String, Instant)> = Vec::new();
    let mut requests = tokio::task::JoinSet::new();
    let mut n = 0;
    while started.elapsed() < length {
        ticker.tick().await;
        let id = format!("{phase}-{n}");
        n += 1;
        let body = json!({"id": id, "type": "order", "ts": chrono::Utc::now().timestamp_millis(), "attrs": {"amount": 1}});
        let at = Instant::now();
        sent.push((id, at));
        let request = client
            .post(format!("{base}/v1/events"))
            .bearer_auth(QUIET_KEY)
            .body(body.to_string())
            .send();
        requests.spawn(async move {
            let answered = request.await.map(|r| r.status().is_success());
            (answered, at.elapsed())
        });
    }
    let mut ingest = Vec::new();
    let mut failed = 0;
    while let Some(done) = requests.join_next().await {
        let (answered, took) = done?;
        match answered {
            Ok(true) => ingest.push(took),
            _ => failed += 1,
        }
    }
    // Wait for the deliveries (up to 10 s past the last event).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let delivered = {
            let seen = arrivals.lock().unwrap_or_else(|e| e.into_inner());
            sent.iter().filter(|(id, _)| seen.contains_key(id)).count()
        };
        if delivered == sent.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = arrivals.lock().unwrap_or_else(|e| e.into_inner());
    let mut delivery = Vec::new();
    let mut undelivered = 0;
    for (id, at) in &sent {
        match seen.get(id) {
            Some(arrived) => delivery.push(arrived.saturating_duration_since(*at)),
            None => undelivered += 1,
        }
    }
    Ok(json!({
        "events": sent.len(),
        "ingest_failed": failed,
        "ingest_ms": percentiles(&mut ingest),
        "delivery_ms": percentiles(&mut delivery),
        "undelivered_after_10s": undelivered,
    }))
}

fn percentiles(samples: &mut [Duration]) -> Value {
    if samples.is_empty() {
        return Value::Null;
    }
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        (samples[i].as_secs_f64() * 1e4).round() / 10.0
    };
    json!({"p50": at(0.5), "p99": at(0.99), "max": at(1.0)})
}

/// The noisy tenant's query loop until `stop`: outcome → count.
async fn query_loop(
    client: reqwest::Client,
    base: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> HashMap<String, u64> {
    let mut outcomes = HashMap::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let answer = client
            .post(format!("{base}/v1/sql"))
            .bearer_auth(NOISY_KEY)
            .json(&json!({"sql": HEAVY_SQL}))
            .send()
            .await;
        let outcome = match answer {
            Ok(r) if r.status().is_success() => "answered".to_string(),
            Ok(r) => format!("http_{}", r.status().as_u16()),
            Err(_) => "no_answer".to_string(),
        };
        if outcome != "answered" {
            // A refusal answers at once: do not spin on it.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        *outcomes.entry(format!("query_{outcome}")).or_insert(0) += 1;
    }
    outcomes
}

/// The noisy tenant's events, each firing the burning template towards the tarpits.
async fn noisy_events(
    client: reqwest::Client,
    base: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> HashMap<String, u64> {
    let mut outcomes = HashMap::new();
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let body = json!({"id": format!("noise-{n}"), "type": "order",
                          "ts": chrono::Utc::now().timestamp_millis(), "attrs": {"burn": true}});
        n += 1;
        let ok = client
            .post(format!("{base}/v1/events"))
            .bearer_auth(NOISY_KEY)
            .body(body.to_string())
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        *outcomes
            .entry(
                if ok {
                    "events_accepted"
                } else {
                    "events_failed"
                }
                .to_string(),
            )
            .or_insert(0) += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    outcomes
}
