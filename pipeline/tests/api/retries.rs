//! Retries, dead letters and slow destinations.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_are_retried_then_dead_lettered() {
    let server = Tidemark::start_with(Settings {
        max_attempts: 3,
        ..Settings::default()
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.script(
        "/flaky",
        &[
            Reply::status(503).retry_after("0"),
            Reply::status(503).retry_after("1"),
        ],
    );
    receiver.answer("/broken", Reply::status(500));
    receiver.answer("/gone", Reply::status(410));
    for (name, event_type) in [("flaky", "a"), ("broken", "b"), ("gone", "c")] {
        server
            .webhook(KEY_A, name, &receiver.url(&format!("/{name}")), None)
            .await;
        server
            .rule(
                KEY_A,
                json!({"id": name, "kind": "match", "event_type": event_type, "destinations": [name]}),
            )
            .await;
    }
    server
        .send_events(
            KEY_A,
            &[
                event("a1", "a", json!({})),
                event("b1", "b", json!({})),
                event("c1", "c", json!({})),
            ],
        )
        .await;

    // 503, 503, then 204: delivered on the third attempt, each attempt logged.
    let flaky = server.notification_for(KEY_A, "flaky", "a1").await;
    let flaky_id = flaky["id"].as_str().unwrap().to_string();
    let flaky = server.settled(KEY_A, &flaky_id, "delivered").await;
    let delivery = &flaky["deliveries"][0];
    assert_eq!(delivery["attempts"], 3, "{flaky}");
    let log: Vec<(Value, Value, Value)> = delivery["attempt_log"]
        .as_array()
        .expect("attempt log")
        .iter()
        .map(|a| {
            (
                a["attempt"].clone(),
                a["outcome"].clone(),
                a["status_code"].clone(),
            )
        })
        .collect();
    assert_eq!(
        log,
        [
            (json!(1), json!("retry"), json!(503)),
            (json!(2), json!("retry"), json!(503)),
            (json!(3), json!("delivered"), json!(204)),
        ],
        "{flaky}"
    );
    let requests = receiver.requests("/flaky");
    assert_eq!(requests.len(), 3);
    assert!(
        requests.iter().all(|r| r.webhook_id() == flaky_id),
        "same idempotency key"
    );

    // Always 500: dead after max_attempts; 410: dead at once.
    let dead = eventually("two dead notifications", async || {
        let dead = server.notifications(KEY_A, "status=dead").await;
        (dead.len() == 2).then_some(dead)
    })
    .await;
    let broken = dead
        .iter()
        .find(|n| n["rule_id"] == "broken")
        .expect("broken is dead");
    let delivery = &broken["deliveries"][0];
    assert_eq!(delivery["status"], "dead", "{broken}");
    assert_eq!(delivery["attempts"], 3, "{broken}");
    let log = delivery["attempt_log"].as_array().expect("attempt log");
    assert_eq!(log.len(), 3, "{broken}");
    assert!(log.iter().all(|a| a["status_code"] == 500), "{broken}");
    assert_eq!(log[2]["outcome"], "dead", "{broken}");
    assert!(
        delivery["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("500")),
        "{broken}"
    );
    assert_eq!(receiver.requests("/broken").len(), 3);
    let gone = dead
        .iter()
        .find(|n| n["rule_id"] == "gone")
        .expect("gone is dead");
    assert_eq!(gone["deliveries"][0]["attempts"], 1, "{gone}");
    assert_eq!(receiver.requests("/gone").len(), 1);

    let delivered = server.notifications(KEY_A, "status=delivered").await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0]["id"], json!(flaky_id));
    assert!(
        server
            .notifications(KEY_A, "status=pending")
            .await
            .is_empty()
    );
}

/// The earliest time any request to `path` finished, if one has.
fn first_finished(receiver: &Receiver, path: &str) -> Option<Instant> {
    receiver
        .requests(path)
        .iter()
        .filter_map(|r| r.finished)
        .min()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_destination_does_not_hold_up_a_fast_one() {
    let server = Tidemark::start().await;
    let receiver = Receiver::start().await;
    receiver.answer("/slow", Reply::NO_CONTENT.after(Duration::from_secs(5)));
    server
        .webhook(KEY_A, "slow", &receiver.url("/slow"), None)
        .await;
    server
        .webhook(KEY_A, "fast", &receiver.url("/fast"), None)
        .await;
    server
        .rule(
            KEY_A,
            json!({"id": "both", "kind": "match", "event_type": "order", "destinations": ["slow", "fast"]}),
        )
        .await;

    server
        .send_events(KEY_A, &[event("o1", "order", json!({}))])
        .await;
    let fast = receiver.wait_for("/fast", 1).await;
    receiver.wait_for("/slow", 1).await;
    // While the slow receiver still works on o1, o2 reaches the fast one.
    server
        .send_events(KEY_A, &[event("o2", "order", json!({}))])
        .await;
    let fast2 = receiver.wait_for("/fast", 2).await;
    let slow_done = first_finished(&receiver, "/slow");
    for request in [&fast[0], &fast2[1]] {
        assert!(
            slow_done.is_none_or(|done| request.at < done),
            "the fast destination waited for the slow one"
        );
    }
    let notification = server.notification_for(KEY_A, "both", "o2").await;
    let id = notification["id"].as_str().unwrap();
    assert_eq!(fast2[1].webhook_id(), id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_at_a_slow_destination_does_not_hold_up_a_fast_one() {
    // Default sender limits: 64 deliveries in flight overall, 8 per destination.
    let server = Tidemark::start().await;
    let receiver = Receiver::start().await;
    receiver.answer("/slow", Reply::NO_CONTENT.after(Duration::from_secs(5)));
    for name in ["slow", "fast"] {
        server
            .webhook(KEY_A, name, &receiver.url(&format!("/{name}")), None)
            .await;
        server
            .rule(
                KEY_A,
                json!({"id": name, "kind": "match", "event_type": name, "destinations": [name]}),
            )
            .await;
    }
    let backlog: Vec<Value> = (0..80)
        .map(|i| event(&format!("s{i}"), "slow", json!({})))
        .collect();
    server.send_events(KEY_A, &backlog).await;
    receiver.wait_for("/slow", 8).await;
    server
        .send_events(KEY_A, &[event("f1", "fast", json!({}))])
        .await;
    let fast = receiver.wait_for("/fast", 1).await;
    let slow_done = first_finished(&receiver, "/slow");
    assert!(
        slow_done.is_none_or(|done| fast[0].at < done),
        "the fast destination waited for the slow one's backlog"
    );
}
