//! `tidemark demo`: a shop on embedded defaults.
//!
//! Creates (or reopens) a data directory, a tenant `demo-shop` (Asia/Seoul) with destinations and
//! rules set up through the real HTTP API, starts a local webhook receiver that verifies each
//! signature, and runs a synthetic commerce producer: orders, refunds, ad spend and sign-ups at a
//! realistic rate with bursts, the odd very large order, and a revenue dip every few minutes.
//! Notifications print as the receiver gets them, and go to `notifications.jsonl` as well. A
//! weekly report over the demo warehouse (charts, ABC classes, CSV answers) is defined too and
//! run once at start into a file destination: its page is printed, to open in a browser.
//! Ctrl-C stops cleanly; a second run resumes with the same data.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use connectors::sinks::webhook::WebhookSigner;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::config::{Config, TenantConfig};
use crate::server::Server;

const TENANT: &str = "demo-shop";
const API_KEY: &str = "demo-shop-key-change-me";
const WEBHOOK_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// Runs the demo until Ctrl-C (or for `seconds`). The first run also writes a year of the shop's
/// history (`warehouse_orders` orders) as Parquet for dashboards, SQL and psql.
pub async fn run(
    data_dir: PathBuf,
    listen: String,
    seconds: Option<u64>,
    warehouse_orders: usize,
) -> anyhow::Result<()> {
    let receiver = start_receiver().await?;
    let mut config = Config {
        data_dir: data_dir.clone(),
        ..Config::default()
    };
    config.server.listen = listen.clone();
    config.engine.allowed_lateness = Duration::from_secs(5).into();
    // The demo's webhook receiver listens on loopback, which destinations may not reach
    // unless the operator allows it.
    config.outbound.allow_private_networks = vec!["127.0.0.1/32".into()];
    config.tenants = vec![TenantConfig {
        id: TENANT.into(),
        name: Some("Demo Shop".into()),
        time_zone: "Asia/Seoul".into(),
        api_key: API_KEY.into(),
        previous_api_keys: Vec::new(),
        locale: "ko-KR".into(),
        currency: "KRW".into(),
    }];
    config.dashboard.pgwire_listen = "127.0.0.1:5433".into();
    let warehouse = config.warehouse_dir();
    if !crate::cli::warehouse::exists(&warehouse, TENANT) {
        println!(
            "Writing a year of {TENANT}'s history ({warehouse_orders} orders) to {} …",
            warehouse.display()
        );
        let root = warehouse.clone();
        let summary = tokio::task::spawn_blocking(move || {
            crate::cli::warehouse::generate(&root, TENANT, warehouse_orders, 42)
        })
        .await??;
        println!("  done in {:.1} s", summary.elapsed_seconds);
    }
    let server = match Server::start(config.clone()).await {
        Ok(server) => server,
        Err(e) if format!("{e:#}").contains("cannot listen") => {
            eprintln!("{listen} or 127.0.0.1:5433 is busy; using free ports instead");
            config.server.listen = "127.0.0.1:0".into();
            config.dashboard.pgwire_listen = "127.0.0.1:0".into();
            Server::start(config).await?
        }
        Err(e) => return Err(e),
    };
    let base = format!("http://{}", server.addr);
    let client = connectors::http::client();
    setup(&client, &base, &receiver)
        .await
        .context("setting up the demo tenant")?;

    let files = data_dir.join("files").join(TENANT);
    let report_page = run_report_once(&client, &base, &files)
        .await
        .context("running the demo report")?;

    println!();
    println!("Tidemark demo is running.");
    println!(
        "  console:        {base}/dashboards/{DASHBOARD}   (open it in a browser; sign in with the API key)"
    );
    println!("  API:            {base}   (API key: {API_KEY})");
    println!("  data directory: {}", data_dir.display());
    println!(
        "  notifications:  {}",
        data_dir
            .join("files")
            .join(TENANT)
            .join("notifications.jsonl")
            .display()
    );
    println!(
        "  weekly report:  {}   (open it in a browser; every Monday 09:00 Asia/Seoul it runs again)",
        report_page.display()
    );
    println!(
        "  try:            curl -H 'Authorization: Bearer {API_KEY}' {base}/v1/notifications?limit=5"
    );
    println!("                  curl {base}/metrics");
    println!(
        "  dashboards:     curl -H 'Authorization: Bearer {API_KEY}' {base}/v1/query -d '{{\"measures\": [\"orders.revenue\"], \"dimensions\": [\"orders.channel\"], \"time\": {{\"dimension\": \"orders.date\", \"grain\": \"month\", \"range\": [\"2025-10-01\", \"2025-12-31\"]}}}}'"
    );
    println!(
        "                  curl -H 'Authorization: Bearer {API_KEY}' '{base}/v1/sql?format=csv' -d 'SELECT channel, sum(revenue) FROM orders GROUP BY channel'"
    );
    println!(
        "  live orders:    curl -H 'Authorization: Bearer {API_KEY}' {base}/v1/query -d '{{\"measures\": [\"orders.revenue\", \"orders.orders\"], \"dimensions\": [\"orders.channel\"], \"time\": {{\"dimension\": \"orders.date\", \"range\": \"today\"}}}}'"
    );
    if let Some(pg) = server.pgwire_addr {
        println!(
            "  psql:           psql 'postgres://{TENANT}:{API_KEY}@{}:{}/tidemark' -c 'SELECT status, count(*) FROM orders GROUP BY status'",
            pg.ip(),
            pg.port()
        );
    }
    println!(
        "Producing orders, refunds, ad spend and sign-ups; notifications appear below. Ctrl-C stops."
    );
    println!();

    let producer = tokio::spawn(produce(client.clone(), base.clone()));
    match seconds {
        Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
        None => crate::cli::wait_for_signal().await,
    }
    producer.abort();
    println!("\nstopping…");
    server.shutdown().await;
    let received = receiver.received.lock().map(|r| r.len()).unwrap_or(0);
    println!(
        "stopped cleanly; the webhook receiver got {received} notifications this run. Run `tidemark demo` again to resume."
    );
    Ok(())
}

struct Receiver {
    url: String,
    received: Arc<Mutex<HashSet<String>>>,
}

/// A local webhook endpoint that checks Standard Webhooks signatures and prints what arrives.
async fn start_receiver() -> anyhow::Result<Receiver> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let received: Arc<Mutex<HashSet<String>>> = Default::default();
    let signer = Arc::new(WebhookSigner::new(WEBHOOK_SECRET)?);
    let seen = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (seen, signer) = (seen.clone(), signer.clone());
            async move {
                if let Err(e) = signer.verify(&headers, &body, Duration::from_secs(300)) {
                    eprintln!("  webhook receiver: rejected a delivery with a bad signature: {e}");
                    return StatusCode::UNAUTHORIZED;
                }
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let first = seen
                    .lock()
                    .map(|mut s| s.insert(id.clone()))
                    .unwrap_or(false);
                if first {
                    let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let kind = payload["kind"].as_str().unwrap_or("?").to_uppercase();
                    let message = payload["message"].as_str().unwrap_or("");
                    println!("  ← webhook {kind:<8} {message}   (signature ok, {id})");
                }
                StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Receiver { url, received })
}

async fn put(client: &reqwest::Client, url: String, body: Value) -> anyhow::Result<()> {
    // Create, or replace when it exists from an earlier run.
    let collection = url
        .rsplit_once('/')
        .map(|(c, _)| c.to_string())
        .unwrap_or_default();
    let created = client
        .post(&collection)
        .bearer_auth(API_KEY)
        .json(&body)
        .send()
        .await?;
    if created.status() == StatusCode::CONFLICT {
        let updated = client
            .put(&url)
            .bearer_auth(API_KEY)
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(
            updated.status().is_success(),
            "PUT {url}: {}",
            updated.text().await?
        );
    } else {
        anyhow::ensure!(
            created.status().is_success(),
            "POST {collection}: {}",
            created.text().await?
        );
    }
    Ok(())
}

async fn setup(client: &reqwest::Client, base: &str, receiver: &Receiver) -> anyhow::Result<()> {
    put(
        client,
        format!("{base}/v1/destinations/ops-webhook"),
        json!({"id": "ops-webhook", "kind": "webhook", "config": {"url": receiver.url, "secret": WEBHOOK_SECRET}}),
    )
    .await?;
    put(
        client,
        format!("{base}/v1/destinations/ops-file"),
        json!({"id": "ops-file", "kind": "file", "config": {"path": "notifications.jsonl"}}),
    )
    .await?;
    let destinations = json!(["ops-webhook", "ops-file"]);
    let rules = [
        json!({"id": "big-order", "name": "Order over 1,000,000 KRW", "kind": "match", "event_type": "order",
               "filter": {"attr": "amount", "op": ">=", "value": 1_000_000}, "destinations": destinations,
               "template": "Big order {{ event.id }}: {{ event.attrs.amount | int }} KRW via {{ event.attrs.channel }}"}),
        json!({"id": "refund-burst", "name": "Refund burst", "kind": "threshold", "event_type": "refund",
               "aggregate": {"fn": "count"}, "window": {"size": "1m"}, "group_by": ["channel"],
               "condition": {"op": ">=", "value": 6}, "throttle": "2m", "destinations": destinations,
               "template": "{% if kind == 'firing' %}{{ value | int }} refunds in a minute on {{ group.channel }}{% else %}refunds back to normal on {{ group.channel }}{% endif %}"}),
        json!({"id": "revenue-dip", "name": "Revenue down 30% vs 5 minutes earlier", "kind": "change", "event_type": "order",
               "aggregate": {"fn": "sum", "attr": "amount"}, "window": {"size": "1m"}, "period": "5m",
               "condition": {"op": "<=", "value": -30}, "destinations": destinations,
               "template": "{% if kind == 'firing' %}Revenue {{ change_percent | round(1) }}% against the same minute 5 minutes earlier ({{ value | int }} vs {{ baseline | int }} KRW){% else %}Revenue recovered{% endif %}"}),
        json!({"id": "ad-overspend", "name": "Ad spend over 400,000 KRW a minute", "kind": "threshold", "event_type": "ad_spend",
               "aggregate": {"fn": "sum", "attr": "cost"}, "window": {"size": "1m"}, "group_by": ["channel"],
               "condition": {"op": ">", "value": 400_000}, "destinations": destinations}),
    ];
    for rule in rules {
        let id = rule["id"].as_str().unwrap_or_default().to_string();
        put(client, format!("{base}/v1/rules/{id}"), rule).await?;
    }
    put(
        client,
        format!("{base}/v1/destinations/reports-file"),
        json!({"id": "reports-file", "kind": "file", "config": {"path": "reports.jsonl"}}),
    )
    .await?;
    put(
        client,
        format!("{base}/v1/reports/{REPORT}"),
        weekly_report(),
    )
    .await?;
    put(
        client,
        format!("{base}/v1/dashboards/{DASHBOARD}"),
        shop_dashboard(),
    )
    .await?;
    Ok(())
}

/// The demo's main dashboard, the console's first page for the shop.
const DASHBOARD: &str = "shop";

/// The shop's dashboard over 2025: the monthly trend per channel, revenue by channel, the ABC
/// classes of brands and the countries' orders × order value quadrant.
pub(crate) fn shop_dashboard() -> Value {
    let year = json!({"dimension": "orders.date", "range": ["2025-01-01", "2025-12-31"]});
    json!({
        "id": DASHBOARD,
        "title": "Shop overview 2025",
        "panels": [
            {"title": "Revenue by month and channel",
             "spec": {"measures": ["orders.revenue"], "dimensions": ["orders.channel"],
                      "time": {"dimension": "orders.date", "grain": "month",
                               "range": ["2025-01-01", "2025-12-31"]}}},
            {"title": "Revenue by channel",
             "spec": {"measures": ["orders.revenue"], "dimensions": ["orders.channel"], "time": year,
                      "order": [{"member": "orders.revenue", "direction": "desc"}]}},
            {"title": "ABC classes of brands",
             "spec": {"measures": ["order_items.revenue"], "dimensions": ["order_items.brand"],
                      "analysis": {"type": "abc", "measure": "order_items.revenue"},
                      "order": [{"member": "order_items.revenue", "direction": "desc"}]}},
            {"title": "Countries: orders against order value",
             "spec": {"measures": ["orders.orders", "orders.aov"], "dimensions": ["orders.country"],
                      "time": year,
                      "analysis": {"type": "quadrant", "x": "orders.orders", "y": "orders.aov"}}}
        ]
    })
}

/// The demo's report id.
const REPORT: &str = "weekly-revenue";

/// A weekly report over the demo warehouse (the calendar year 2025, so its ranges are fixed):
/// revenue by channel, the monthly trend per channel, the ABC classes of products and the
/// channels' ROAS quadrant, every Monday 09:00 in the shop's zone.
fn weekly_report() -> Value {
    json!({
        "id": REPORT,
        "name": "Weekly revenue",
        "schedule": {"cron": "0 9 * * MON", "catch_up": "latest"},
        "title": "Revenue 2025: {{ blocks.revenue.total }} KRW",
        "intro": "{{ blocks.revenue.row_count }} channels, {{ blocks.orders.total }} paid orders; \
                  {{ blocks.products.row_count }} products ranked by revenue.",
        "blocks": [
            {"name": "revenue", "title": "Revenue by channel, 2025",
             "query": {"measures": ["orders.revenue"], "dimensions": ["orders.channel"],
                       "time": {"dimension": "orders.date", "range": ["2025-01-01", "2025-12-31"]},
                       "order": [{"member": "orders.revenue", "direction": "desc"}]}},
            {"name": "trend", "title": "Revenue by month and channel",
             "query": {"measures": ["orders.revenue"], "dimensions": ["orders.channel"],
                       "time": {"dimension": "orders.date", "grain": "month",
                                "range": ["2025-01-01", "2025-12-31"]}}},
            {"name": "products", "title": "ABC classes of products",
             "query": {"measures": ["order_items.revenue"], "dimensions": ["order_items.product"],
                       "analysis": {"type": "abc", "measure": "order_items.revenue"},
                       "order": [{"member": "order_items.revenue", "direction": "desc"}],
                       "limit": 40}},
            {"name": "orders", "title": "Paid orders by channel", "chart": "none",
             "query": {"measures": ["orders.orders"], "dimensions": ["orders.channel"],
                       "time": {"dimension": "orders.date", "range": ["2025-01-01", "2025-12-31"]}}}
        ],
        "destinations": ["reports-file"]
    })
}

/// Runs the demo report once, now, and waits for it to be written: the path of its page.
async fn run_report_once(
    client: &reqwest::Client,
    base: &str,
    files: &std::path::Path,
) -> anyhow::Result<PathBuf> {
    let asked = client
        .post(format!("{base}/v1/reports/{REPORT}/run"))
        .bearer_auth(API_KEY)
        .send()
        .await?;
    anyhow::ensure!(asked.status().is_success(), "run: {}", asked.text().await?);
    let run_id = asked.json::<Value>().await?["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let runs: Value = client
            .get(format!("{base}/v1/reports/{REPORT}/runs?limit=5"))
            .bearer_auth(API_KEY)
            .send()
            .await?
            .json()
            .await?;
        let run = runs["runs"]
            .as_array()
            .and_then(|runs| runs.iter().find(|r| r["run_id"] == run_id.as_str()));
        if let Some(run) = run
            && let Some(delivery) = run["deliveries"]
                .as_array()
                .and_then(|d| d.iter().find(|d| d["status"] == "delivered"))
        {
            let id = delivery["notification_id"].as_str().unwrap_or_default();
            return Ok(files.join("reports").join(id).join("index.html"));
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the demo report was not delivered within two minutes: {runs}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The synthetic shop: ~40 orders/s with noise and bursts, refunds, ad spend, sign-ups.
async fn produce(client: reqwest::Client, base: String) {
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let run = chrono::Utc::now().timestamp_millis();
    let channels = ["naver", "kakao", "google", "instagram", "direct"];
    let mut seq = 0u64;
    let tick = Duration::from_millis(250);
    loop {
        let now = chrono::Utc::now();
        let ms = now.timestamp_millis();
        let minute = now.timestamp() / 60;
        // Every fifth minute sales drop sharply: the revenue-dip rule should catch it.
        let dip = minute % 5 == 4;
        let burst = rng.random_bool(0.02);
        let mut orders: f64 = if dip { 3.0 } else { 10.0 } * if burst { 3.0 } else { 1.0 };
        orders *= rng.random_range(0.7..1.3);
        let mut lines = String::new();
        let mut push = |kind: &str, attrs: Value, seq: &mut u64| {
            *seq += 1;
            let offset = rand::random_range(0..250);
            let event = json!({"id": format!("{run}-{seq}"), "type": kind, "ts": ms - offset, "attrs": attrs});
            lines.push_str(&event.to_string());
            lines.push('\n');
        };
        for _ in 0..orders.round() as usize {
            let big = rng.random_bool(0.002);
            let amount = if big {
                rng.random_range(1_000_000..3_000_000)
            } else {
                rng.random_range(9_000..180_000)
            } / 100
                * 100;
            let channel = channels[rng.random_range(0..channels.len())];
            push(
                "order",
                json!({"amount": amount, "channel": channel, "device": if rng.random_bool(0.7) {"mobile"} else {"desktop"}}),
                &mut seq,
            );
        }
        let refund_storm = minute % 7 == 3;
        let refunds = if refund_storm {
            2
        } else {
            usize::from(rng.random_bool(0.04))
        };
        for _ in 0..refunds {
            let channel = if refund_storm {
                "kakao"
            } else {
                channels[rng.random_range(0..channels.len())]
            };
            push(
                "refund",
                json!({"amount": rng.random_range(10_000..150_000), "channel": channel}),
                &mut seq,
            );
        }
        if rng.random_bool(0.4) {
            let channel = channels[rng.random_range(0..4)];
            let cost = if channel == "google" && minute % 11 == 5 {
                60_000
            } else {
                rng.random_range(2_000..20_000)
            };
            push(
                "ad_spend",
                json!({"channel": channel, "cost": cost, "campaign": format!("{channel}-winter")}),
                &mut seq,
            );
        }
        if rng.random_bool(0.3) {
            push(
                "signup",
                json!({"channel": channels[rng.random_range(0..channels.len())]}),
                &mut seq,
            );
        }
        let sent = client
            .post(format!("{base}/v1/events"))
            .bearer_auth(API_KEY)
            .header("content-type", "application/x-ndjson")
            .body(lines)
            .send()
            .await;
        if let Err(e) = sent {
            eprintln!("  producer: {e}");
        }
        tokio::time::sleep(tick).await;
    }
}
