//! Authentication and tenant walls.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_key_are_refused() {
    let server = Tidemark::start().await;

    let (status, body) = server.call(Method::GET, "/v1/rules", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthenticated", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("API key")),
        "{body}"
    );

    let (status, body) = server
        .call(
            Method::POST,
            "/v1/events",
            None,
            Some(ndjson(&[event("e1", "order", json!({}))])),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    let (status, body) = server
        .call(
            Method::GET,
            "/v1/rules",
            Some("not-a-key-of-anyone-at-all"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthenticated", "{body}");

    // Both documented ways of sending the key work, and a wrong one in X-Api-Key is refused too.
    let (status, _) = server.get(KEY_A, "/v1/rules").await;
    assert_eq!(status, StatusCode::OK);
    for (key, expected) in [
        (KEY_B, StatusCode::OK),
        ("wrong-key-0123456789", StatusCode::UNAUTHORIZED),
    ] {
        let response = server
            .http
            .get(format!("{}/v1/rules", server.base))
            .header("x-api-key", key)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), expected, "x-api-key {key}");
    }
    // Unknown endpoints and methods answer JSON errors too.
    let (status, body) = server.get(KEY_A, "/v1/rule").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    let (status, body) = server.delete(KEY_A, "/v1/events").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");

    // Nothing was ingested by the refused request.
    assert_eq!(event_count(&server, KEY_A).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_cannot_see_or_change_each_others_objects() {
    let server = Tidemark::start().await;
    let receiver = Receiver::start().await;
    server
        .webhook(KEY_A, "a-hook", &receiver.url("/a"), None)
        .await;
    let rule =
        json!({"id": "a-rule", "kind": "match", "event_type": "order", "destinations": ["a-hook"]});
    server.rule(KEY_A, rule.clone()).await;

    for (method, path) in [
        (Method::GET, "/v1/rules/a-rule"),
        (Method::PUT, "/v1/rules/a-rule"),
        (Method::DELETE, "/v1/rules/a-rule"),
        (Method::POST, "/v1/rules/a-rule/disable"),
        (Method::POST, "/v1/rules/a-rule/enable"),
        (Method::GET, "/v1/destinations/a-hook"),
        (Method::PUT, "/v1/destinations/a-hook"),
        (Method::DELETE, "/v1/destinations/a-hook"),
    ] {
        let body = if method != Method::PUT {
            None
        } else if path.contains("rules") {
            Some(rule.to_string())
        } else {
            Some(
                json!({"kind": "webhook", "config": {"url": "http://127.0.0.1:9/stolen"}})
                    .to_string(),
            )
        };
        // Another tenant's object is indistinguishable from an absent one: the same 404 and
        // the same message as for an id nobody uses.
        let (status, body) = server
            .call(method.clone(), path, Some(KEY_B), body.clone())
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
        assert_eq!(
            body["error"]["code"], "not_found",
            "{method} {path}: {body}"
        );
        let unused = path
            .replace("a-rule", "zz-rule")
            .replace("a-hook", "zz-hook");
        let (_, absent) = server
            .call(method.clone(), &unused, Some(KEY_B), None)
            .await;
        let message = |b: &serde_json::Value| {
            b["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .replace("zz-", "a-")
        };
        if method != Method::PUT {
            assert_eq!(message(&body), message(&absent), "{method} {path}");
        }
    }
    for path in [
        "/v1/rules/no-such-rule",
        "/v1/destinations/no-such-destination",
        "/v1/notifications/ntf_00000000000000000000000000000000",
    ] {
        let (status, body) = server.get(KEY_B, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
    }
    let (status, _) = server.delete(KEY_A, "/v1/rules/no-such-rule").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // B sees none of A's objects and cannot point its own rules at A's destination.
    let (_, rules) = server.get(KEY_B, "/v1/rules").await;
    assert_eq!(rules["rules"], json!([]));
    let (_, destinations) = server.get(KEY_B, "/v1/destinations").await;
    assert_eq!(destinations["destinations"], json!([]));
    let (status, body) = server
        .post(
            KEY_B,
            "/v1/rules",
            json!({"kind": "match", "event_type": "order", "destinations": ["a-hook"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_field(&body), "destinations[0]", "{body}");

    // A's objects are untouched by B's attempts.
    let (status, body) = server.get(KEY_A, "/v1/rules/a-rule").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["version"].clone(), body["enabled"].clone()),
        (json!(1), json!(true))
    );
    let (_, body) = server.get(KEY_A, "/v1/destinations/a-hook").await;
    assert_eq!(body["config"]["url"], json!(receiver.url("/a")), "{body}");

    // The tenant comes from the key: a line naming another tenant is refused, the rest accepted.
    let body = ndjson(&[
        event("mine", "order", json!({})),
        json!({"id": "theirs", "tenant": "shop-b", "type": "order", "ts": now_ms()}),
        json!({"id": "explicit", "tenant": "shop-a", "type": "order", "ts": now_ms()}),
    ]);
    let (status, body) = server.post_text(KEY_A, "/v1/events", &body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 2, "{body}");
    assert_eq!(body["rejected"], 1, "{body}");
    assert_eq!(body["errors"][0]["line"], 2, "{body}");
    assert_eq!(body["errors"][0]["field"], "tenant", "{body}");
    assert_eq!(event_count(&server, KEY_A).await, 2);
    assert_eq!(event_count(&server, KEY_B).await, 0);

    // A's notifications are A's alone.
    let notification = server.notification_for(KEY_A, "a-rule", "mine").await;
    let id = notification["id"].as_str().expect("notification id");
    let (status, body) = server.get(KEY_B, &format!("/v1/notifications/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(server.notifications(KEY_B, "").await.is_empty());
    let (status, _) = server.get(KEY_A, &format!("/v1/notifications/{id}")).await;
    assert_eq!(status, StatusCode::OK);
}

/// Ids are scoped per tenant: B may use the ids A uses, and each tenant sees its own object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_may_use_the_same_ids() {
    let server = Tidemark::start().await;
    let receiver = Receiver::start().await;
    server
        .webhook(KEY_A, "hook", &receiver.url("/a"), None)
        .await;
    server
        .webhook(KEY_B, "hook", &receiver.url("/b"), None)
        .await;
    for (key, event_type) in [(KEY_A, "order"), (KEY_B, "refund")] {
        server
            .rule(
                key,
                json!({"id": "big", "kind": "match", "event_type": event_type, "destinations": ["hook"]}),
            )
            .await;
    }
    let (_, a) = server.get(KEY_A, "/v1/rules/big").await;
    let (_, b) = server.get(KEY_B, "/v1/rules/big").await;
    assert_eq!(a["event_type"], "order", "{a}");
    assert_eq!(b["event_type"], "refund", "{b}");
    let (_, a) = server.get(KEY_A, "/v1/destinations/hook").await;
    assert_eq!(a["config"]["url"], json!(receiver.url("/a")), "{a}");

    // Creating an id the tenant already uses is still a conflict, within the tenant.
    let (status, body) = server
        .post(
            KEY_B,
            "/v1/rules",
            json!({"id": "big", "kind": "match", "event_type": "order", "destinations": ["hook"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // Each tenant's rule fires for its own events and delivers to its own destination.
    server
        .post_text(
            KEY_A,
            "/v1/events",
            &ndjson(&[event("a1", "order", json!({}))]),
        )
        .await;
    server
        .post_text(
            KEY_B,
            "/v1/events",
            &ndjson(&[event("b1", "refund", json!({}))]),
        )
        .await;
    let a = server.notification_for(KEY_A, "big", "a1").await;
    let b = server.notification_for(KEY_B, "big", "b1").await;
    assert_ne!(a["id"], b["id"]);

    // Deleting B's rule leaves A's.
    let (status, _) = server.delete(KEY_B, "/v1/rules/big").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server.get(KEY_A, "/v1/rules/big").await;
    assert_eq!(status, StatusCode::OK);
}
