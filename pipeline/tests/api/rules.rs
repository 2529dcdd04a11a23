//! Rules and destinations: validation, round trips, versions, hidden secrets.

use axum::http::StatusCode;
use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_rules_and_destinations_are_refused_naming_the_field() {
    let server = Tidemark::start().await;
    server
        .webhook(KEY_A, "hook", "http://127.0.0.1:9/hook", None)
        .await;

    let rules = [
        (
            json!({"kind": "match", "event_type": "order", "filter": {"attr": "amount", "op": "=>", "value": 1}}),
            "filter.op",
        ),
        (
            json!({"kind": "match", "event_type": "order", "filter": {"and": [{"attr": "a", "op": "exists"}, {"attr": "b", "op": "~", "value": 1}]}}),
            "filter.and[1].op",
        ),
        (
            json!({"kind": "threshold", "event_type": "order", "aggregate": {"fn": "count"}, "condition": {"op": ">", "value": 1}}),
            "window",
        ),
        (
            json!({"kind": "threshold", "event_type": "order", "aggregate": {"fn": "count"}, "window": {"size": "1 hour"}, "condition": {"op": ">", "value": 1}}),
            "window.size",
        ),
        (
            json!({"kind": "match", "event_type": "order", "destinations": ["hook", "nowhere"]}),
            "destinations[1]",
        ),
        (
            json!({"kind": "match", "event_type": "order", "template": "{% if kind %}unclosed"}),
            "template",
        ),
        (json!({"kind": "alert", "event_type": "order"}), "kind"),
        (
            json!({"kind": "match", "event_type": "order", "colour": "red"}),
            "rule",
        ),
    ];
    for (spec, field) in rules {
        let (status, body) = server.post(KEY_A, "/v1/rules", spec.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{spec}: {body}");
        assert_eq!(body["error"]["code"], "invalid_rule", "{spec}: {body}");
        assert_eq!(error_field(&body), field, "{spec}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.len() > 10),
            "{body}"
        );
    }
    let (status, body) = server.post_text(KEY_A, "/v1/rules", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let destinations = [
        (
            json!({"kind": "webhook", "config": {"url": "ftp://example.com/hook"}}),
            "config.url",
        ),
        (
            json!({"kind": "webhook", "config": {"url": "http://127.0.0.1:9/", "secret": "whsec_not base64!"}}),
            "config.secret",
        ),
        (
            json!({"kind": "webhook", "config": {"url": "http://127.0.0.1:9/", "colour": "red"}}),
            "config",
        ),
        (json!({"kind": "pigeon", "config": {}}), "config"),
    ];
    for (spec, field) in destinations {
        let (status, body) = server.post(KEY_A, "/v1/destinations", spec.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{spec}: {body}");
        assert_eq!(
            body["error"]["code"], "invalid_destination",
            "{spec}: {body}"
        );
        assert_eq!(error_field(&body), field, "{spec}: {body}");
    }

    // Nothing invalid was stored.
    let (_, rules) = server.get(KEY_A, "/v1/rules").await;
    assert_eq!(rules["rules"], json!([]));
    let (_, destinations) = server.get(KEY_A, "/v1/destinations").await;
    assert_eq!(
        destinations["destinations"].as_array().map(Vec::len),
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_destinations_round_trip_with_versions_and_hidden_secrets() {
    let server = Tidemark::start().await;
    let (status, created) = server
        .post(
            KEY_A,
            "/v1/destinations",
            json!({"id": "hook", "kind": "webhook", "config": {
                "url": "http://127.0.0.1:9/hook",
                "secret": SECRET,
                "headers": {"authorization": "Bearer hunter2-token"}
            }}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (_, one) = server.get(KEY_A, "/v1/destinations/hook").await;
    let (_, all) = server.get(KEY_A, "/v1/destinations").await;
    for shown in [&created, &one, &all] {
        let text = shown.to_string();
        assert!(
            !text.contains("MfKQ9r8G") && !text.contains("hunter2"),
            "a secret was returned: {text}"
        );
    }
    assert_eq!(one["config"]["secret"], "(set)", "{one}");
    assert_eq!(one["config"]["url"], "http://127.0.0.1:9/hook", "{one}");
    assert_eq!(all["destinations"][0]["id"], "hook", "{all}");
    let (status, _) = server
        .post(
            KEY_A,
            "/v1/destinations",
            json!({"id": "hook", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Rules: create, read, update (version bumps), disable/enable, delete.
    let spec = json!({"id": "big", "name": "Big orders", "kind": "match", "event_type": "order",
        "filter": {"attr": "amount", "op": ">=", "value": 1000000}, "destinations": ["hook"]});
    let created = server.rule(KEY_A, spec.clone()).await;
    assert_eq!(
        (&created["id"], &created["version"], &created["enabled"]),
        (&json!("big"), &json!(1), &json!(true)),
        "{created}"
    );
    let (status, _) = server.post(KEY_A, "/v1/rules", spec.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, got) = server.get(KEY_A, "/v1/rules/big").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["filter"], spec["filter"], "{got}");
    assert_eq!(got["name"], "Big orders", "{got}");

    let mut changed = spec.clone();
    changed["filter"]["value"] = json!(500000);
    let (status, updated) = server.put(KEY_A, "/v1/rules/big", changed).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["version"], 2, "{updated}");
    let (_, got) = server.get(KEY_A, "/v1/rules/big").await;
    assert_eq!(
        (&got["version"], &got["filter"]["value"]),
        (&json!(2), &json!(500000))
    );

    let mut renamed = spec.clone();
    renamed["id"] = json!("other");
    let (status, body) = server.put(KEY_A, "/v1/rules/big", renamed).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_field(&body), "id", "{body}");
    let (status, body) = server.put(KEY_A, "/v1/rules/missing", spec.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let (status, disabled) = server
        .post(KEY_A, "/v1/rules/big/disable", json!(null))
        .await;
    assert_eq!(status, StatusCode::OK, "{disabled}");
    assert_eq!(
        (&disabled["enabled"], &disabled["version"]),
        (&json!(false), &json!(3))
    );
    let (_, got) = server.get(KEY_A, "/v1/rules/big").await;
    assert_eq!(got["enabled"], false, "{got}");
    let (status, enabled) = server
        .post(KEY_A, "/v1/rules/big/enable", json!(null))
        .await;
    assert_eq!(status, StatusCode::OK, "{enabled}");
    assert_eq!(
        (&enabled["enabled"], &enabled["version"]),
        (&json!(true), &json!(4))
    );

    // A rule without an id gets one.
    let generated = server
        .rule(KEY_A, json!({"kind": "match", "event_type": "refund"}))
        .await;
    let generated_id = generated["id"].as_str().expect("generated id");
    assert!(generated_id.starts_with("rule_"), "{generated}");
    let (_, list) = server.get(KEY_A, "/v1/rules").await;
    assert_eq!(list["rules"].as_array().map(Vec::len), Some(2), "{list}");

    let (status, body) = server
        .put(
            KEY_A,
            "/v1/destinations/hook",
            json!({"id": "other", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/"}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_field(&body), "id", "{body}");

    // Updating a destination keeps its secret hidden.
    let (status, updated) = server
        .put(
            KEY_A,
            "/v1/destinations/hook",
            json!({"kind": "webhook", "config": {"url": "http://127.0.0.1:9/new", "secret": SECRET}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["config"]["secret"], "(set)", "{updated}");
    assert_eq!(
        updated["config"]["url"], "http://127.0.0.1:9/new",
        "{updated}"
    );

    let (status, _) = server.delete(KEY_A, "/v1/rules/big").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server.get(KEY_A, "/v1/rules/big").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server.delete(KEY_A, "/v1/rules/big").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server.delete(KEY_A, "/v1/destinations/hook").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server.get(KEY_A, "/v1/destinations/hook").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = server.get(KEY_A, "/v1/rules").await;
    assert_eq!(list["rules"][0]["id"], json!(generated_id), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_whose_destination_was_deleted_can_still_be_disabled() {
    let server = Tidemark::start().await;
    server
        .webhook(KEY_A, "hook", "http://127.0.0.1:9/hook", None)
        .await;
    server
        .rule(
            KEY_A,
            json!({"id": "r", "kind": "match", "event_type": "order", "destinations": ["hook"]}),
        )
        .await;
    let (status, _) = server.delete(KEY_A, "/v1/destinations/hook").await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Turning a rule off must always work; turning it back on names the missing destination.
    let (status, body) = server.post(KEY_A, "/v1/rules/r/disable", json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["enabled"], false, "{body}");
    let (status, body) = server.post(KEY_A, "/v1/rules/r/enable", json!(null)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_field(&body), "destinations[0]", "{body}");
    let (_, got) = server.get(KEY_A, "/v1/rules/r").await;
    assert_eq!(got["enabled"], false, "{got}");
}
