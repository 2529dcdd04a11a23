//! Rule templates under limits: a runaway template is refused when the rule is created or
//! replaced; one that runs away only on real data costs its own rule's message (a fallback that
//! says why), never another tenant's notification, never the server's start-up.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;

/// Two nested loops of 100,000 turns: ten billion steps.
const NESTED: &str =
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";

/// The same, but only as many turns as the event's `n` says: harmless on the sample
/// notification a rule is checked against, runaway on an event with a large `n`.
const NESTED_ON_DATA: &str = "{% for i in range(event.attrs.n) %}{% for j in range(event.attrs.n) %}{% endfor %}{% endfor %}looped";

/// A message as long as the event's `n` says, in one expression.
const LONG_ON_DATA: &str = "{{ 'ab' * event.attrs.n }}";

const MAX_MESSAGE_BYTES: usize = 64 * 1024;
const TRUNCATED_MARKER: &str = "… [truncated]";

fn match_rule(id: &str, template: &str, destination: &str) -> Value {
    json!({"id": id, "kind": "match", "event_type": "order", "template": template,
        "destinations": [destination]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_template_is_refused_when_a_rule_is_created_or_replaced() {
    let server = Tidemark::start().await;
    server
        .webhook(KEY_A, "hook", "http://127.0.0.1:9/hook", None)
        .await;
    let printing =
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}";
    for (template, says) in [
        (NESTED, "ran out of fuel"),
        (printing, "longer than 65536 bytes"),
        ("{% for i in range(10) %}unclosed", "template: "),
    ] {
        let started = Instant::now();
        let (status, body) = server
            .post(KEY_A, "/v1/rules", match_rule("runaway", template, "hook"))
            .await;
        assert!(started.elapsed() < Duration::from_secs(5), "{template}");
        assert_eq!(status, StatusCode::BAD_REQUEST, "{template}: {body}");
        assert_eq!(body["error"]["code"], "invalid_rule", "{body}");
        assert_eq!(error_field(&body), "template", "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("template: ") && message.contains(says),
            "{body}"
        );
    }
    // Replacing a rule's template with a runaway one is refused the same way and keeps the old.
    server
        .rule(KEY_A, match_rule("fine", "order {{ event.id }}", "hook"))
        .await;
    let (status, body) = server
        .put(KEY_A, "/v1/rules/fine", match_rule("fine", NESTED, "hook"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_field(&body), "template", "{body}");
    let (_, rule) = server.get(KEY_A, "/v1/rules/fine").await;
    assert_eq!(
        (&rule["template"], &rule["version"]),
        (&json!("order {{ event.id }}"), &json!(1)),
        "{rule}"
    );
    // A template that runs away only on real data passes the check.
    server
        .rule(KEY_A, match_rule("on-data", NESTED_ON_DATA, "hook"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_that_runs_away_on_real_data_costs_only_its_own_message() {
    let server = Tidemark::start().await;
    let receiver = Receiver::start().await;
    server
        .webhook(KEY_A, "hook-a", &receiver.url("/a"), None)
        .await;
    server
        .webhook(KEY_B, "hook-b", &receiver.url("/b"), None)
        .await;
    server
        .rule(KEY_A, match_rule("loops", NESTED_ON_DATA, "hook-a"))
        .await;
    server
        .rule(KEY_A, match_rule("long", LONG_ON_DATA, "hook-a"))
        .await;
    server
        .rule(KEY_B, match_rule("plain", "B got {{ event.id }}", "hook-b"))
        .await;

    server
        .send_events(KEY_A, &[event("big-n", "order", json!({"n": 100_000}))])
        .await;
    server
        .send_events(KEY_B, &[event("b1", "order", json!({}))])
        .await;

    // The other tenant's notification goes out as usual.
    let b = server.notification_for(KEY_B, "plain", "b1").await;
    assert_eq!(b["payload"]["message"], "B got b1", "{b}");
    let delivered = receiver.wait_for("/b", 1).await;
    assert_eq!(delivered[0].json()["message"], "B got b1");

    // The runaway rule's notification goes out with a fallback message saying why.
    let looped = server.notification_for(KEY_A, "loops", "big-n").await;
    let payload = &looped["payload"];
    let message = payload["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("[loops] order big-n matched (the rule's template failed: "),
        "{payload}"
    );
    assert!(message.contains("fuel"), "{payload}");
    assert!(
        payload["template_error"]
            .as_str()
            .is_some_and(|e| e.contains("fuel")),
        "{payload}"
    );

    // The long message is cut at the limit, with the marker.
    let long = server.notification_for(KEY_A, "long", "big-n").await;
    let message = long["payload"]["message"].as_str().unwrap_or_default();
    assert!(message.len() <= MAX_MESSAGE_BYTES, "{}", message.len());
    assert!(message.len() > MAX_MESSAGE_BYTES - 100, "{}", message.len());
    assert!(
        message.ends_with(TRUNCATED_MARKER),
        "{}",
        &message[message.len() - 40..]
    );
    assert!(message.starts_with("abab"));
    assert!(long["payload"].get("template_error").is_none());

    // Both are delivered.
    let delivered = receiver.wait_for("/a", 2).await;
    assert_eq!(delivered.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_event_with_a_runaway_template_does_not_stop_start_up() {
    let mut server = Tidemark::start().await;
    let receiver = Receiver::start().await;
    server
        .webhook(KEY_A, "hook-a", &receiver.url("/a"), None)
        .await;
    server
        .webhook(KEY_B, "hook-b", &receiver.url("/b"), None)
        .await;
    server
        .rule(KEY_A, match_rule("loops", NESTED_ON_DATA, "hook-a"))
        .await;
    server
        .rule(KEY_B, match_rule("plain", "B got {{ event.id }}", "hook-b"))
        .await;
    server
        .send_events(KEY_A, &[event("big-n", "order", json!({"n": 100_000}))])
        .await;
    server.notification_for(KEY_A, "loops", "big-n").await;

    // Killed, and its checkpoint put back to before the event: on start it must render the
    // runaway template again, before it listens.
    server
        .restart(|data| {
            let store = connectors::store::open(data.join("tidemark.db")).expect("open the store");
            store
                .set_meta("engine.processed_seq", "0")
                .expect("reset the checkpoint");
        })
        .await;

    // It listens, and notifications flow for everyone.
    server
        .send_events(KEY_B, &[event("b-after", "order", json!({}))])
        .await;
    let b = server.notification_for(KEY_B, "plain", "b-after").await;
    assert_eq!(b["payload"]["message"], "B got b-after", "{b}");
    let looped = server.notification_for(KEY_A, "loops", "big-n").await;
    assert!(looped["payload"]["template_error"].is_string(), "{looped}");
}
