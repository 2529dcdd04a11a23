//! Threshold rules: one FIRING, one RESOLVED.

use std::time::Duration;

use connectors::sinks::webhook::WebhookSigner;
use serde_json::{Value, json};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threshold_rule_fires_once_and_resolves_once() {
    let server = Tidemark::start().await;
    let receiver = Receiver::start().await;
    server
        .webhook(KEY_A, "hook", &receiver.url("/hook"), Some(SECRET))
        .await;
    server
        .webhook(KEY_A, "ping", &receiver.url("/ping"), None)
        .await;
    server
        .rule(
            KEY_A,
            json!({"id": "busy", "name": "Busy shop", "kind": "threshold", "event_type": "order",
                "aggregate": {"fn": "count"}, "window": {"size": "2s"},
                "condition": {"op": ">=", "value": 3}, "destinations": ["hook"]}),
        )
        .await;
    server
        .rule(
            KEY_A,
            json!({"id": "ping", "kind": "match", "event_type": "ping", "destinations": ["ping"]}),
        )
        .await;

    // Keep the three orders well inside one 2 s window, whatever the time is now.
    let into_window = now_ms() % 2_000;
    if into_window > 1_200 {
        tokio::time::sleep(Duration::from_millis((2_050 - into_window) as u64)).await;
    }
    let ts = now_ms();
    let orders: Vec<Value> = (1..=3)
        .map(|i| json!({"id": format!("o{i}"), "type": "order", "ts": ts}))
        .collect();
    server.send_events(KEY_A, &orders).await;

    let firing = receiver.wait_for("/hook", 1).await[0].json();
    assert_eq!(firing["kind"], "firing", "{firing}");
    assert_eq!(firing["value"].as_f64(), Some(3.0), "{firing}");
    assert_eq!(firing["rule"]["id"], "busy", "{firing}");
    let (start, end) = (
        firing["window"]["start_ms"].as_i64().expect("window start"),
        firing["window"]["end_ms"].as_i64().expect("window end"),
    );
    assert_eq!(end - start, 2_000, "{firing}");
    assert!(
        (start..end).contains(&ts),
        "the window holding the orders: {firing}"
    );
    assert!(
        firing["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("[FIRING] Busy shop")),
        "{firing}"
    );

    let requests = receiver.wait_for("/hook", 2).await;
    let resolved = requests[1].json();
    assert_eq!(resolved["kind"], "resolved", "{resolved}");
    assert!(
        resolved["window"]["start_ms"].as_i64() >= Some(end),
        "resolved by a later window: {resolved}"
    );
    assert!(resolved.get("firing_since").is_some(), "{resolved}");
    assert!(
        resolved["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("[RESOLVED] Busy shop")),
        "{resolved}"
    );
    let signer = WebhookSigner::new(SECRET).expect("secret");
    for request in &requests {
        signer
            .verify(&request.headers, &request.body, Duration::from_secs(300))
            .expect("signed");
    }

    // One more window closes with nothing in it: still one FIRING and one RESOLVED. The ping
    // is processed only once the clock has passed that window's close.
    let quiet_end = resolved["window"]["end_ms"].as_i64().expect("window end") + 2_000;
    let wait = (quiet_end + 400 - now_ms()).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    server
        .send_events(KEY_A, &[event("p1", "ping", json!({}))])
        .await;
    server.notification_for(KEY_A, "ping", "p1").await;
    let kinds: Vec<Value> = server
        .notifications(KEY_A, "rule_id=busy")
        .await
        .iter()
        .map(|n| n["kind"].clone())
        .collect();
    assert_eq!(kinds, [json!("resolved"), json!("firing")], "newest first");
    assert_eq!(receiver.requests("/hook").len(), 2);
}
