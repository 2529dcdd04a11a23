//! Hostile dashboard queries against the real `tidemark serve`: expressions nested thousands
//! deep, a cross join beyond its memory budget, a query past its timeout and one tenant's burst
//! of heavy queries. Each gets a clear error over HTTP and pgwire, and the server keeps serving
//! everyone else: `/healthz`, ingest and other tenants' queries.

#[path = "support/shop.rs"]
mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{KEY_A, KEY_B, Shop};
use tokio_postgres::{Client, NoTls};

/// A heavy query: 400 million joined rows computed (a plain `count(*)` would be answered from
/// statistics), many seconds in a debug build.
const HEAVY: &str = "SELECT sum(a.revenue * b.revenue) FROM orders a CROSS JOIN orders b";

async fn connect(shop: &Shop, user: &str, password: &str) -> Client {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(shop.pg_port)
        .user(user)
        .password(password)
        .dbname("tidemark")
        .connect(NoTls)
        .await
        .expect("pgwire login");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

fn http() -> reqwest::Client {
    connectors::http::client_builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("HTTP client")
}

async fn post(shop: &Shop, key: &str, path: &str, body: String) -> (StatusCode, Value) {
    let response = http()
        .post(format!("{}{path}", shop.base))
        .bearer_auth(key)
        .body(body)
        .send()
        .await
        .expect("request reaches tidemark");
    let status = response.status();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn sql(shop: &Shop, key: &str, text: &str) -> (StatusCode, Value) {
    post(shop, key, "/v1/sql", json!({ "sql": text }).to_string()).await
}

/// The SQLSTATE and message of a statement that must fail.
async fn pg_failure(client: &Client, text: &str) -> (String, String) {
    let error = client
        .simple_query(text)
        .await
        .err()
        .unwrap_or_else(|| panic!("{} succeeded", &text[..text.len().min(60)]));
    let db = error
        .as_db_error()
        .unwrap_or_else(|| panic!("no database error: {error}"));
    (db.code().code().to_string(), db.message().to_string())
}

/// `/healthz`, answered within `within`.
async fn healthy_within(shop: &Shop, within: Duration) {
    let started = Instant::now();
    let response = http()
        .get(format!("{}/healthz", shop.base))
        .timeout(within)
        .send()
        .await
        .expect("/healthz answers in time");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() <= within, "{:?}", started.elapsed());
}

/// Tenant B's count of its orders, over HTTP: another tenant's query still answered.
async fn other_tenant_answers(shop: &Shop) {
    let (status, body) = sql(shop, KEY_B, "SELECT count(*) AS n FROM orders").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"][0]["n"], json!(support::ORDERS_B), "{body}");
}

fn plus_chain(terms: usize) -> String {
    format!("SELECT {}", vec!["1"; terms].join("+"))
}

fn or_chain(terms: usize) -> String {
    let terms: Vec<String> = (0..terms).map(|i| format!("channel = 'c{i}'")).collect();
    format!("SELECT count(*) FROM orders WHERE {}", terms.join(" OR "))
}

/// CPU seconds the process has used (user + system), from `/proc`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("process stat");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat format")
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[tokio::test]
async fn deeply_nested_queries_are_refused_and_the_server_lives() {
    let mut shop = Shop::start().await;
    let pg = connect(&shop, "shop-a", KEY_A).await;
    for text in [plus_chain(3_000), or_chain(2_000)] {
        let (status, body) = sql(&shop, KEY_A, &text).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], json!("query_too_complex"), "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("max_expr_depth"), "{body}");

        let (code, message) = pg_failure(&pg, &text).await;
        assert_eq!(code, "54001", "{message}");
        assert!(message.contains("max_expr_depth"), "{message}");
        // The extended protocol parses at Parse time: refused there too.
        let error = pg.prepare(&text).await.expect_err("prepare refused");
        assert_eq!(
            error.as_db_error().map(|e| e.code().code()),
            Some("54001"),
            "{error}"
        );
    }
    // The same depth through a dashboard spec's filters.
    let filters: Vec<Value> = (0..2_000)
        .map(|i| json!({"member": "orders.channel", "operator": "equals", "values": [format!("c{i}")]}))
        .collect();
    let spec = json!({"measures": ["orders.revenue"], "filters": [{"or": filters}]});
    let (status, body) = post(&shop, KEY_A, "/v1/query", spec.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], json!("query_too_complex"), "{body}");

    // Text beyond the size limit is refused before it is parsed.
    let huge = plus_chain(200_000);
    let (status, body) = sql(&shop, KEY_A, &huge).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("max_sql_bytes"), "{body}");
    let (code, _) = pg_failure(&pg, &huge).await;
    assert_eq!(code, "54001");

    // Within the limits, the same shapes answer.
    let (status, body) = sql(&shop, KEY_A, &plus_chain(200)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["rows"][0].as_object().unwrap().values().next(),
        Some(&json!(200))
    );
    let (status, body) = sql(&shop, KEY_A, &or_chain(100)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    assert!(shop.alive(), "the server died");
    healthy_within(&shop, Duration::from_secs(2)).await;
    other_tenant_answers(&shop).await;
    let rows = pg
        .simple_query("SELECT 1")
        .await
        .expect("pgwire still answers");
    assert!(!rows.is_empty());
}

#[tokio::test]
async fn a_cross_join_beyond_its_memory_budget_is_refused() {
    let mut shop = Shop::start_with(|_| {
        (
            "limits = { query_memory_mb = 8, total_memory_mb = 64 }".into(),
            String::new(),
        )
    })
    .await;
    let text = "SELECT * FROM orders a CROSS JOIN orders b";
    let (status, body) = sql(&shop, KEY_A, text).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], json!("query_too_large"), "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("query too large") && message.contains("query_memory_mb"),
        "{body}"
    );

    let pg = connect(&shop, "shop-a", KEY_A).await;
    let (code, message) = pg_failure(&pg, text).await;
    assert_eq!(code, "53200", "{message}");
    assert!(message.contains("query_memory_mb"), "{message}");

    assert!(shop.alive(), "the server died");
    healthy_within(&shop, Duration::from_secs(2)).await;
    other_tenant_answers(&shop).await;
}

#[tokio::test]
async fn a_query_past_its_timeout_is_cancelled_and_frees_its_cpu() {
    let mut shop = Shop::start_with(|_| {
        (
            "query_timeout = \"1s\"\nlimits = { query_threads = 1 }".into(),
            String::new(),
        )
    })
    .await;
    let started = Instant::now();
    let (status, body) = sql(&shop, KEY_A, HEAVY).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["error"]["code"], json!("query_timeout"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    let pg = connect(&shop, "shop-a", KEY_A).await;
    let (code, message) = pg_failure(&pg, HEAVY).await;
    assert_eq!(code, "57014", "{message}");
    assert!(message.contains("query_timeout"), "{message}");

    // Both were stopped, not abandoned: within a second the process is idle again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = cpu_seconds(shop.pid());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_seconds(shop.pid()) - before;
    assert!(
        used < 1.0,
        "{used:.2} CPU seconds in 2 s after the queries were cancelled"
    );
    assert!(shop.alive());
    other_tenant_answers(&shop).await;
}

#[tokio::test]
async fn one_tenants_heavy_queries_do_not_starve_the_others() {
    let mut shop = Shop::start_with(|_| {
        (
            "query_timeout = \"30s\"\n\
             limits = { query_threads = 1, max_running = 3, max_running_per_tenant = 2, \
             max_queued_per_tenant = 2 }"
                .into(),
            String::new(),
        )
    })
    .await;
    // Six heavy queries from tenant A: two run, two wait, two are refused at once.
    let mut heavy = Vec::new();
    for _ in 0..6 {
        let base = shop.base.clone();
        heavy.push(tokio::spawn(async move {
            http()
                .post(format!("{base}/v1/sql"))
                .bearer_auth(KEY_A)
                .body(HEAVY)
                .send()
                .await
                .map(|r| r.status())
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut refused = 0;
    while refused < 2 {
        assert!(
            Instant::now() < deadline,
            "tenant A's excess queries were not refused"
        );
        refused = 0;
        for task in &heavy {
            if task.is_finished() {
                refused += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut statuses = Vec::new();
    let mut pending = Vec::new();
    for task in heavy {
        if task.is_finished() {
            statuses.push(task.await.unwrap().expect("an answer"));
        } else {
            pending.push(task);
        }
    }
    assert_eq!(
        statuses,
        vec![StatusCode::TOO_MANY_REQUESTS; 2],
        "only the queries beyond the tenant's limits are answered at once"
    );
    assert_eq!(pending.len(), 4);
    let (status, body) = sql(&shop, KEY_A, HEAVY).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], json!("too_many_queries"), "{body}");
    assert!(body.to_string().contains("max_queued_per_tenant"), "{body}");

    // Meanwhile everyone else is served promptly.
    for round in 0..3 {
        healthy_within(&shop, Duration::from_secs(2)).await;
        let started = Instant::now();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis() as i64;
        let event = json!({"id": format!("e-{round}"), "type": "order_paid", "ts": now_ms, "attrs": {"amount": 10}});
        let (status, body) = tokio::time::timeout(
            Duration::from_secs(2),
            post(&shop, KEY_B, "/v1/events", format!("{event}\n")),
        )
        .await
        .expect("POST /v1/events answered within 2 s");
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(started.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Tenant B's own query gets a slot of its own and answers.
    tokio::time::timeout(Duration::from_secs(20), other_tenant_answers(&shop))
        .await
        .expect("tenant B's query answered while tenant A's run");
    assert!(shop.alive());
    for task in pending {
        task.abort();
    }
}
