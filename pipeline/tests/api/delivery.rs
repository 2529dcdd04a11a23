//! Delivery: signed webhooks per matching event; disabled and deleted rules.

use std::time::Duration;

use axum::http::StatusCode;
use connectors::sinks::webhook::WebhookSigner;
use serde_json::{Value, json};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_match_rule_delivers_one_signed_webhook_per_matching_event() {
    let server = Tidemark::start().await;
    let receiver = Receiver::start().await;
    server
        .webhook(KEY_A, "hook", &receiver.url("/hook"), Some(SECRET))
        .await;
    server
        .rule(
            KEY_A,
            json!({"id": "big", "name": "Big orders", "kind": "match", "event_type": "order",
                "filter": {"attr": "amount", "op": ">=", "value": 100000},
                "template": "Order {{ event.id }}: {{ event.attrs.amount }} KRW via {{ event.attrs.channel }}",
                "destinations": ["hook"]}),
        )
        .await;
    server
        .send_events(
            KEY_A,
            &[
                event("o1", "order", json!({"amount": 250000, "channel": "naver"})),
                event("o2", "order", json!({"amount": 5000, "channel": "naver"})),
                event(
                    "r1",
                    "refund",
                    json!({"amount": 990000, "channel": "naver"}),
                ),
                event("o3", "order", json!({"amount": 100000, "channel": "kakao"})),
            ],
        )
        .await;

    let o1 = server.notification_for(KEY_A, "big", "o1").await;
    let o3 = server.notification_for(KEY_A, "big", "o3").await;
    let o1 = server
        .settled(KEY_A, o1["id"].as_str().unwrap(), "delivered")
        .await;
    let o3 = server
        .settled(KEY_A, o3["id"].as_str().unwrap(), "delivered")
        .await;
    let requests = receiver.wait_for("/hook", 2).await;
    assert_eq!(requests.len(), 2, "one POST per matching event");
    assert_eq!(server.notifications(KEY_A, "rule_id=big").await.len(), 2);

    let signer = WebhookSigner::new(SECRET).expect("secret");
    for (notification, message) in [
        (&o1, "Order o1: 250000 KRW via naver"),
        (&o3, "Order o3: 100000 KRW via kakao"),
    ] {
        let id = notification["id"].as_str().unwrap();
        let request = requests
            .iter()
            .find(|r| r.webhook_id() == id)
            .unwrap_or_else(|| panic!("no POST with webhook-id {id}"));
        signer
            .verify(&request.headers, &request.body, Duration::from_secs(300))
            .expect("a valid Standard Webhooks signature");
        assert_eq!(
            request
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
        let payload = request.json();
        assert_eq!(payload["id"], json!(id), "{payload}");
        assert_eq!(payload["kind"], "match", "{payload}");
        assert_eq!(payload["tenant"], "shop-a", "{payload}");
        assert_eq!(payload["rule"]["id"], "big", "{payload}");
        assert_eq!(payload["rule"]["name"], "Big orders", "{payload}");
        assert_eq!(payload["event"]["type"], "order", "{payload}");
        assert_eq!(payload["message"], message, "{payload}");
        assert!(payload.get("template_error").is_none(), "{payload}");
        assert_eq!(
            payload, notification["payload"],
            "the API shows what was sent"
        );

        let delivery = &notification["deliveries"][0];
        assert_eq!(delivery["destination_id"], "hook", "{notification}");
        assert_eq!(delivery["attempts"], 1, "{notification}");
        let log = delivery["attempt_log"].as_array().expect("attempt log");
        assert_eq!(log.len(), 1, "{notification}");
        assert_eq!(log[0]["outcome"], "delivered", "{notification}");
        assert_eq!(log[0]["status_code"], 204, "{notification}");
    }
    assert_eq!(o1["payload"]["event"]["attrs"]["amount"], json!(250000));
    let delivered = server.notifications(KEY_A, "status=delivered").await;
    assert_eq!(delivered.len(), 2);
    assert!(
        server
            .notifications(KEY_A, "status=pending")
            .await
            .is_empty()
    );
    let (status, body) = server.get(KEY_A, "/v1/notifications?status=lost").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_field(&body), "status", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_and_deleted_rules_stop_matching_and_enabled_ones_resume() {
    let server = Tidemark::start().await;
    let receiver = Receiver::start().await;
    server
        .webhook(KEY_A, "hook", &receiver.url("/hook"), None)
        .await;
    server
        .webhook(KEY_A, "audit", &receiver.url("/audit"), None)
        .await;
    server
        .rule(
            KEY_A,
            json!({"id": "watch", "kind": "match", "event_type": "order", "destinations": ["hook"]}),
        )
        .await;
    // Matches every order in the same epoch as `watch`: once its notification for an event
    // exists, `watch` has had its chance at that event too.
    server
        .rule(
            KEY_A,
            json!({"id": "audit", "kind": "match", "event_type": "order", "destinations": ["audit"]}),
        )
        .await;
    let watched = async |event_id: &str| -> bool {
        server
            .send_events(KEY_A, &[event(event_id, "order", json!({}))])
            .await;
        server.notification_for(KEY_A, "audit", event_id).await;
        server
            .notifications(KEY_A, "rule_id=watch")
            .await
            .iter()
            .any(|n| n["payload"]["event"]["id"] == json!(event_id))
    };

    assert!(watched("o1").await, "an enabled rule matches");
    let (status, _) = server
        .post(KEY_A, "/v1/rules/watch/disable", json!(null))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!watched("o2").await, "a disabled rule matches nothing");
    let (status, _) = server
        .post(KEY_A, "/v1/rules/watch/enable", json!(null))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(watched("o3").await, "a re-enabled rule matches again");
    let (status, _) = server.delete(KEY_A, "/v1/rules/watch").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(!watched("o4").await, "a deleted rule matches nothing");

    receiver.wait_for("/audit", 4).await;
    let hook = receiver.wait_for("/hook", 2).await;
    let mut events: Vec<Value> = hook
        .iter()
        .map(|r| r.json()["event"]["id"].clone())
        .collect();
    events.sort_by_key(|e| e.to_string());
    assert_eq!(events, [json!("o1"), json!("o3")]);
}
