//! CRM contacts and audiences over the API: contacts checked field by field and stored one by
//! one or in bulk; audiences refused when they name what the tenant does not have; members that
//! follow events, contact changes (over the API and by `customer.*` events) and deletions, also
//! as tables of the dashboard engine; and a SIGKILL that loses no member.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;

fn day_ms() -> i64 {
    86_400_000
}

async fn members(server: &Tidemark, key: &str, audience: &str) -> BTreeSet<String> {
    let (status, body) = server
        .get(key, &format!("/v1/audiences/{audience}/members"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["contact"].as_str().expect("contact").to_string())
        .collect()
}

async fn members_become(server: &Tidemark, key: &str, audience: &str, expected: &[&str]) {
    let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
    eventually(&format!("{audience} = {expected:?}"), async || {
        (members(server, key, audience).await == expected).then_some(())
    })
    .await;
}

/// Waits until the audience engine has read an `order` event of shop A from the log: until an
/// audience counting orders is accepted (it is deleted again).
async fn order_known(server: &Tidemark) {
    eventually("order known as an event type", async || {
        let (status, _) = server
            .post(
                KEY_A,
                "/v1/audiences",
                json!({"id": "probe", "where": {"event": "order", "in_last_days": 1, "op": ">=", "value": 1}}),
            )
            .await;
        (status == StatusCode::CREATED).then_some(())
    })
    .await;
    assert_eq!(
        server.delete(KEY_A, "/v1/audiences/probe").await.0,
        StatusCode::NO_CONTENT
    );
}

fn order(id: &str, customer: &str, amount: i64, days_ago: i64) -> Value {
    json!({"id": id, "type": "order", "ts": now_ms() - days_ago * day_ms(),
           "attrs": {"customer_id": customer, "amount": amount}})
}

#[tokio::test]
async fn contacts_are_checked_stored_in_bulk_and_scoped_to_their_tenant() {
    let server = Tidemark::start().await;
    let (status, body) = server
        .put(
            KEY_A,
            "/v1/contacts/c1",
            json!({"email": "kim@example.com", "locale": "ko-KR", "time_zone": "Asia/Seoul",
                   "consent": {"email": true}, "attributes": {"tier": "vip"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server.get(KEY_A, "/v1/contacts/c1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["email"], "kim@example.com");
    assert_eq!(body["attributes"]["tier"], "vip");
    assert_eq!(
        server.get(KEY_B, "/v1/contacts/c1").await.0,
        StatusCode::NOT_FOUND
    );

    for (doc, field) in [
        (json!({"email": "kim at example"}), "email"),
        (json!({"time_zone": "Asia/Nowhere"}), "time_zone"),
        (json!({"consent": {"email": "yes"}}), "consent.email"),
        (
            json!({"attributes": {"consent.sms": true}}),
            "attributes.consent.sms",
        ),
    ] {
        let (status, body) = server.put(KEY_A, "/v1/contacts/c2", doc.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{doc}: {body}");
        assert_eq!(error_field(&body), field, "{doc}: {body}");
    }
    assert_eq!(
        server.get(KEY_A, "/v1/contacts/c2").await.0,
        StatusCode::NOT_FOUND
    );

    let bulk = [
        json!({"id": "b1", "email": "b1@example.com"}).to_string(),
        "{not json".to_string(),
        json!({"id": "b2", "email": "broken"}).to_string(),
        json!({"email": "no-id@example.com"}).to_string(),
        json!({"id": "b3", "attributes": {"tier": "gold"}}).to_string(),
        json!({"id": "b1", "email": "b1-new@example.com"}).to_string(),
    ]
    .join("\n");
    let (status, body) = server.post_text(KEY_A, "/v1/contacts/bulk", &bulk).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["upserted"], 2, "{body}");
    let bad_lines: Vec<i64> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["line"].as_i64().expect("line"))
        .collect();
    assert_eq!(bad_lines, [2, 3, 4], "{body}");
    assert_eq!(
        server.get(KEY_A, "/v1/contacts/b1").await.1["email"],
        "b1-new@example.com",
        "the last line for an id wins"
    );
    let (_, listed) = server.get(KEY_A, "/v1/contacts").await;
    assert_eq!(listed["total"], 3, "{listed}");
    assert_eq!(
        server.delete(KEY_B, "/v1/contacts/b1").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        server.delete(KEY_A, "/v1/contacts/b1").await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        server.get(KEY_A, "/v1/contacts/b1").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn audience_members_follow_events_contacts_and_a_restart() {
    let mut server = Tidemark::start().await;
    for (id, tier) in [("c1", "vip"), ("c2", "vip"), ("c3", "standard")] {
        let (status, body) = server
            .put(
                KEY_A,
                &format!("/v1/contacts/{id}"),
                json!({"email": format!("{id}@example.com"), "attributes": {"tier": tier}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    server
        .send_events(
            KEY_A,
            &[
                order("o1", "c1", 80, 3),
                order("o2", "c1", 50, 1),
                order("o3", "c2", 30, 2),
                order("o4", "c3", 500, 1),
                order("o5", "c2", 90, 45),
            ],
        )
        .await;
    // The engine learns the tenant's event types from the log.
    order_known(&server).await;

    let vip_spenders = json!({"id": "vip-spenders", "name": "VIPs who spent 100+ in 30 days",
        "where": {"and": [
            {"contact": {"attr": "tier", "op": "=", "value": "vip"}},
            {"event": "order", "in_last_days": 30, "measure": "sum", "attr": "amount",
             "op": ">=", "value": 100}]}});
    for (bad, path) in [
        (
            json!({"id": "x", "where": {"contact": {"attr": "loyalty", "op": "=", "value": 1}}}),
            "where",
        ),
        (
            json!({"id": "x", "where": {"event": "refund", "in_last_days": 7, "op": ">=", "value": 1}}),
            "where",
        ),
        (
            json!({"id": "x", "where": {"event": "order", "in_last_days": 7, "op": "~", "value": 1}}),
            "where.op",
        ),
    ] {
        let (status, body) = server.post(KEY_A, "/v1/audiences", bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(error_field(&body).starts_with(path), "{bad}: {body}");
    }
    // Another tenant has neither the attribute nor the events.
    let (status, body) = server
        .post(KEY_B, "/v1/audiences", vip_spenders.clone())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, body) = server.post(KEY_A, "/v1/audiences", vip_spenders).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // c1: vip, 130 in 30 days; c2: vip, 30 in 30 days (the 90 is older); c3: not vip.
    members_become(&server, KEY_A, "vip-spenders", &["c1"]).await;
    assert_eq!(
        server
            .get(KEY_B, "/v1/audiences/vip-spenders/members")
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // c2 orders again: in. c3 becomes vip by a customer event: in.
    server
        .send_events(
            KEY_A,
            &[
                order("o6", "c2", 75, 0),
                event(
                    "u1",
                    "customer.updated",
                    json!({"customer_id": "c3", "tier": "vip"}),
                ),
            ],
        )
        .await;
    members_become(&server, KEY_A, "vip-spenders", &["c1", "c2", "c3"]).await;
    assert_eq!(
        server.get(KEY_A, "/v1/contacts/c3").await.1["attributes"]["tier"],
        "vip",
        "the customer event changed the stored contact"
    );

    // c1 is downgraded over the API, c2 is deleted: both leave.
    server
        .put(
            KEY_A,
            "/v1/contacts/c1",
            json!({"attributes": {"tier": "standard"}}),
        )
        .await;
    assert_eq!(
        server.delete(KEY_A, "/v1/contacts/c2").await.0,
        StatusCode::NO_CONTENT
    );
    members_become(&server, KEY_A, "vip-spenders", &["c3"]).await;
    let (_, contact) = server.get(KEY_A, "/v1/contacts/c1").await;
    let history: Vec<&str> = contact["membership_changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["change"].as_str().expect("change"))
        .collect();
    assert_eq!(history, ["left", "entered"], "{contact}");

    // A SIGKILL: the rebuilt engine has the same members, and keeps following events.
    server.restart(|_| {}).await;
    assert_eq!(
        members(&server, KEY_A, "vip-spenders").await,
        BTreeSet::from(["c3".to_string()])
    );
    server
        .put(
            KEY_A,
            "/v1/contacts/c1",
            json!({"attributes": {"tier": "vip"}}),
        )
        .await;
    members_become(&server, KEY_A, "vip-spenders", &["c1", "c3"]).await;
    let (status, sizes) = server.get(KEY_A, "/v1/audiences/vip-spenders/sizes").await;
    assert_eq!(status, StatusCode::OK, "{sizes}");
    let last = sizes["sizes"].as_array().expect("sizes").last().cloned();
    assert_eq!(last.map(|s| s["size"].clone()), Some(json!(2)), "{sizes}");

    // The same members and sizes as tables of the dashboard engine, never a stale cached answer.
    let sql = "SELECT audience, contact FROM audience_members ORDER BY contact";
    let (status, body) = server.post_text(KEY_A, "/v1/sql", sql).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["rows"],
        json!([{"audience": "vip-spenders", "contact": "c1"},
               {"audience": "vip-spenders", "contact": "c3"}]),
        "{body}"
    );
    let (_, body) = server
        .post_text(
            KEY_A,
            "/v1/sql",
            "SELECT size FROM audience_sizes WHERE audience = 'vip-spenders' ORDER BY at DESC LIMIT 1",
        )
        .await;
    assert_eq!(body["rows"], json!([{"size": 2}]), "{body}");
    let (_, body) = server.post_text(KEY_B, "/v1/sql", sql).await;
    assert_eq!(body["rows"], json!([]), "another tenant sees none: {body}");

    // Deleting the audience removes it and its members.
    assert_eq!(
        server.delete(KEY_A, "/v1/audiences/vip-spenders").await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        server
            .get(KEY_A, "/v1/audiences/vip-spenders/members")
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

/// Events from before a restart count for an audience defined after it: the engine reads the
/// log back as far as the new audience's window reaches.
#[tokio::test]
async fn an_audience_defined_after_a_restart_counts_the_events_before_it() {
    let mut server = Tidemark::start().await;
    for id in ["c1", "c2"] {
        let (status, body) = server
            .put(
                KEY_A,
                &format!("/v1/contacts/{id}"),
                json!({"attributes": {"tier": "vip"}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    server
        .send_events(
            KEY_A,
            &[order("o1", "c1", 10, 5), order("o2", "c2", 10, 60)],
        )
        .await;
    // The engine has seen the events (their type is known) before the server goes down.
    order_known(&server).await;
    server.restart(|_| {}).await;
    let (status, body) = server
        .post(
            KEY_A,
            "/v1/audiences",
            json!({"id": "recent", "where": {"event": "order", "in_last_days": 30, "op": ">=", "value": 1}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    members_become(&server, KEY_A, "recent", &["c1"]).await;
    let (status, body) = server
        .post(
            KEY_A,
            "/v1/audiences",
            json!({"id": "quarter", "where": {"event": "order", "in_last_days": 90, "op": ">=", "value": 1}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    members_become(&server, KEY_A, "quarter", &["c1", "c2"]).await;
}
