//! Metrics, and webhook secrets named from the secrets store.

use std::time::Duration;

use axum::http::StatusCode;
use connectors::sinks::webhook::WebhookSigner;
use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_events_and_deliveries_and_time_them() {
    let server = Tidemark::start().await;
    let receiver = Receiver::start().await;
    receiver.script("/hook", &[Reply::status(503).retry_after("0")]);
    server
        .webhook(KEY_A, "hook", &receiver.url("/hook"), None)
        .await;
    server
        .rule(
            KEY_A,
            json!({"id": "all", "kind": "match", "event_type": "order", "destinations": ["hook"]}),
        )
        .await;
    let (_, body) = server
        .post_text(
            KEY_A,
            "/v1/events",
            &ndjson(&[
                event("o1", "order", json!({})),
                event("o2", "order", json!({})),
                event("o1", "order", json!({})),
                json!({"id": "bad"}),
            ]),
        )
        .await;
    assert_eq!(
        (&body["accepted"], &body["duplicates"]),
        (&json!(2), &json!(1)),
        "{body}"
    );
    let (_, body) = server
        .post_text(
            KEY_A,
            "/v1/events",
            &ndjson(&[event("o2", "order", json!({}))]),
        )
        .await;
    assert_eq!(body["duplicates"], 1, "{body}");
    for id in ["o1", "o2"] {
        let n = server.notification_for(KEY_A, "all", id).await;
        server
            .settled(KEY_A, n["id"].as_str().unwrap(), "delivered")
            .await;
    }

    let (content_type, text) = server.metrics_text().await;
    assert!(content_type.contains("text"), "{content_type}");
    let expect = |name: &str, value: f64| {
        assert_eq!(sample(&text, name), Some(value), "{name} in:\n{text}");
    };
    expect("tidemark_events_accepted_total", 2.0);
    expect("tidemark_events_duplicate_total", 2.0);
    expect("tidemark_events_rejected_total{reason=\"invalid\"}", 1.0);
    expect("tidemark_notifications_total{kind=\"match\"}", 2.0);
    expect("tidemark_deliveries_total{outcome=\"delivered\"}", 2.0);
    expect("tidemark_deliveries_total{outcome=\"retry\"}", 1.0);
    expect("tidemark_delivery_seconds_count", 3.0);
    expect("tidemark_deliveries_pending", 0.0);
    expect("tidemark_deliveries_dead", 0.0);
    assert!(
        text.contains("# TYPE tidemark_delivery_seconds histogram"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("tidemark_delivery_seconds_bucket{le=\"+Inf\"} 3")),
        "{text}"
    );
    for histogram in [
        "ingest_commit_seconds",
        "event_to_enqueue_seconds",
        "engine_step_seconds",
        "outbox_commit_seconds",
    ] {
        let count = sample(&text, &format!("tidemark_{histogram}_count"));
        assert!(count.is_some_and(|c| c >= 1.0), "{histogram}: {text}");
        assert!(
            text.contains(&format!("tidemark_{histogram}_sum ")),
            "{histogram}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_sign_with_secrets_named_from_the_tenants_secrets_store() {
    const ROTATED: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let server = Tidemark::start().await;
    let receiver = Receiver::start().await;
    let config = json!({"url": receiver.url("/stored"),
        "secret": {"secret": "shop-hook"},
        "headers": {"authorization": {"secret": "shop-token"}}});
    let destination = json!({"id": "stored", "kind": "webhook", "config": config});

    // Naming a secret that does not exist is refused, naming the field.
    let (status, body) = server
        .post(KEY_A, "/v1/destinations", destination.clone())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_field(&body), "config.secret", "{body}");

    for (name, value) in [("shop-hook", SECRET), ("shop-token", "Bearer t0ken")] {
        let (status, body) = server
            .put(
                KEY_A,
                &format!("/v1/secrets/{name}"),
                json!({ "value": value }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["version"], 1, "{body}");
    }
    // Another tenant's secret of the same name is not this tenant's.
    let (status, body) = server.get(KEY_B, "/v1/secrets/shop-hook").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = server
        .post(KEY_B, "/v1/destinations", destination.clone())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, body) = server.post(KEY_A, "/v1/destinations", destination).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["config"]["secret"],
        json!({"secret": "shop-hook"}),
        "{body}"
    );
    // Values never come back out of the API.
    let (status, listed) = server.get(KEY_A, "/v1/secrets").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let text = listed.to_string();
    assert!(
        text.contains("shop-hook") && text.contains("shop-token"),
        "{text}"
    );
    assert!(
        !text.contains("t0ken") && !text.contains("MfKQ9r8"),
        "{text}"
    );

    server
        .rule(
            KEY_A,
            json!({"id": "any", "name": "Any order", "kind": "match", "event_type": "order",
                "template": "order {{ event.id }}", "destinations": ["stored"]}),
        )
        .await;
    server
        .send_events(KEY_A, &[event("s1", "order", json!({"amount": 1}))])
        .await;
    let first = receiver.wait_for("/stored", 1).await;
    WebhookSigner::new(SECRET)
        .unwrap()
        .verify(&first[0].headers, &first[0].body, Duration::from_secs(300))
        .expect("signed with the stored secret");
    assert_eq!(first[0].headers["authorization"], "Bearer t0ken");

    // A new version takes effect on the next delivery, with no change to the destination.
    let (status, body) = server
        .put(KEY_A, "/v1/secrets/shop-hook", json!({ "value": ROTATED }))
        .await;
    assert_eq!(
        (status, body["version"].clone()),
        (StatusCode::OK, json!(2))
    );
    server
        .send_events(KEY_A, &[event("s2", "order", json!({"amount": 2}))])
        .await;
    let both = receiver.wait_for("/stored", 2).await;
    let second = both
        .iter()
        .find(|r| r.json()["event"]["id"] == "s2")
        .expect("the second delivery");
    WebhookSigner::new(ROTATED)
        .unwrap()
        .verify(&second.headers, &second.body, Duration::from_secs(300))
        .expect("signed with the new version");

    // A deleted secret makes the delivery dead with a reason naming it, not a panic or a hang.
    let (status, _) = server.delete(KEY_A, "/v1/secrets/shop-token").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    server
        .send_events(KEY_A, &[event("s3", "order", json!({"amount": 3}))])
        .await;
    let s3 = server.notification_for(KEY_A, "any", "s3").await;
    let s3 = server
        .settled(KEY_A, s3["id"].as_str().unwrap(), "dead")
        .await;
    let error = s3["deliveries"][0]["attempt_log"][0]["error"].to_string();
    assert!(error.contains("shop-token"), "{s3}");
    assert_eq!(receiver.requests("/stored").len(), 2);
}
