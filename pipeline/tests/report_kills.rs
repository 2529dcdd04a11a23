//! Scheduled reports survive SIGKILL: 100 reports fall due in the same minute, each sent to two
//! webhook destinations (two recipients), and the server is killed at random moments while it
//! generates and delivers them, then restarted on the same data directory. Afterwards every
//! (run, recipient) has exactly one notification id, every one reached the receiver with the
//! same content each time, no slot ran twice, and only deliveries in flight at a kill were
//! repeated (with the same idempotency key, `webhook-id`).

#[path = "support/shop.rs"]
mod support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use rand::Rng;
use serde_json::{Value, json};
use support::{KEY_A, Shop};

const REPORTS: usize = 100;
const KILLS: usize = 5;

/// Every delivery the receiver saw: webhook-id → (times, payloads seen).
type Received = Arc<Mutex<HashMap<String, (usize, HashSet<String>)>>>;

async fn start_receiver() -> (String, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let received: Received = Default::default();
    let seen = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let seen = seen.clone();
            async move {
                let id = headers["webhook-id"].to_str().unwrap().to_string();
                // The payload without the delivery's own timestamp header fields: the content.
                let payload: Value = serde_json::from_slice(&body).unwrap();
                let mut r = seen.lock().unwrap();
                let entry = r.entry(id).or_default();
                entry.0 += 1;
                entry.1.insert(payload.to_string());
                StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

async fn call(shop: &Shop, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let client = connectors::http::client();
    let mut request = client
        .request(method, format!("{}{path}", shop.base))
        .bearer_auth(KEY_A);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("tidemark answers");
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// The runs of every report, once every run is finished and every delivery done (or `None`
/// while some are not).
async fn settled(shop: &Shop) -> Option<Vec<(String, Value)>> {
    let mut all = Vec::with_capacity(REPORTS);
    for i in 0..REPORTS {
        let id = format!("r{i:03}");
        let runs = call(
            shop,
            reqwest::Method::GET,
            &format!("/v1/reports/{id}/runs?limit=200"),
            None,
        )
        .await;
        let runs = runs["runs"].as_array().cloned().unwrap_or_default();
        let done = !runs.is_empty()
            && runs.iter().all(|run| {
                run["status"] == "complete"
                    && run["deliveries"].as_array().is_some_and(|d| {
                        d.len() == 2 && d.iter().all(|x| x["status"] == "delivered")
                    })
            });
        if !done {
            return None;
        }
        for run in runs {
            all.push((id.clone(), run));
        }
    }
    Some(all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_due_while_the_server_is_killed_reach_each_recipient_once() {
    let (hook, received) = start_receiver().await;
    let mut shop = Shop::start_with(|_| {
        (
            String::new(),
            "[outbound]\nallow_private_networks = [\"127.0.0.1/32\"]\n".to_string(),
        )
    })
    .await;
    for name in ["ops", "finance"] {
        call(
            &shop,
            reqwest::Method::POST,
            "/v1/destinations",
            Some(json!({"id": name, "kind": "webhook", "config": {"url": hook}})),
        )
        .await;
    }
    // Due at the next whole minute, all of them; "all" catch-up, so a slot missed while the
    // server is down still runs (once).
    for i in 0..REPORTS {
        call(
            &shop,
            reqwest::Method::POST,
            "/v1/reports",
            Some(json!({
                "id": format!("r{i:03}"),
                "name": format!("Report {i}"),
                "schedule": {"cron": "* * * * *", "catch_up": "all"},
                "title": "Revenue {{ blocks.revenue.total }}",
                "blocks": [{"name": "revenue",
                            "query": {"measures": ["orders.revenue"], "dimensions": ["orders.channel"]}}],
                "destinations": ["ops", "finance"]
            })),
        )
        .await;
    }
    let now = chrono::Utc::now().timestamp_millis();
    let due = now - now.rem_euclid(60_000) + 60_000;
    let wait = Duration::from_millis((due - now) as u64);
    eprintln!("{REPORTS} reports due in {wait:?}");
    tokio::time::sleep(wait).await;

    // Kill at random moments while the runs are generated and delivered.
    let mut rng = rand::rng();
    for kill in 0..KILLS {
        let delay = rng.random_range(100..1500);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let delivered = received.lock().unwrap().len();
        eprintln!("kill {kill} after {delay} ms ({delivered} notification ids received so far)");
        shop.kill_and_restart().await;
    }

    let deadline = Instant::now() + Duration::from_secs(240);
    let runs = loop {
        if let Some(runs) = settled(&shop).await {
            break runs;
        }
        assert!(Instant::now() < deadline, "the runs did not all finish");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Give a stray duplicate the chance to show up before judging.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut slots = HashSet::new();
    let mut expected = HashSet::new();
    for (report, run) in &runs {
        assert!(
            slots.insert((report.clone(), run["scheduled_ms"].as_i64().unwrap())),
            "{report} ran the slot {} twice",
            run["scheduled_for"]
        );
        let deliveries = run["deliveries"].as_array().unwrap();
        let destinations: HashSet<&str> = deliveries
            .iter()
            .map(|d| d["destination_id"].as_str().unwrap())
            .collect();
        assert_eq!(destinations, HashSet::from(["ops", "finance"]));
        for d in deliveries {
            expected.insert(d["notification_id"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(
        expected.len(),
        2 * runs.len(),
        "one id per (run, recipient)"
    );
    // The slot every report was due at ran for all of them.
    for i in 0..REPORTS {
        assert!(
            slots.contains(&(format!("r{i:03}"), due)),
            "r{i:03} missed {due}"
        );
    }
    let received = received.lock().unwrap();
    let ids: HashSet<String> = received.keys().cloned().collect();
    assert_eq!(
        ids, expected,
        "every (run, recipient) reached, nothing else"
    );
    let repeated: Vec<(&String, usize)> = received
        .iter()
        .filter(|(_, (n, _))| *n > 1)
        .map(|(id, (n, _))| (id, *n))
        .collect();
    for (id, (_, payloads)) in received.iter() {
        assert_eq!(payloads.len(), 1, "{id} was sent with different content");
    }
    // A delivery the receiver acknowledged just before a kill, not yet recorded, goes again
    // with the same id; nothing else may repeat (the sender runs at most 64 at once).
    assert!(
        repeated.len() <= 64 * KILLS,
        "only deliveries in flight at a kill may repeat: {repeated:?}"
    );
    eprintln!(
        "{} runs, {} notifications, {} repeated across kills",
        runs.len(),
        expected.len(),
        repeated.len()
    );
}
