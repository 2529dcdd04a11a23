//! Events: bad lines reported, duplicates counted once.

use axum::http::StatusCode;
use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_report_bad_lines_and_count_duplicates_once() {
    let server = Tidemark::start().await;
    let ts = now_ms();
    let body = [
        json!({"id": "e1", "type": "order", "ts": ts, "attrs": {"amount": 1}}).to_string(),
        "{not json".to_string(),
        json!({"id": "e2", "type": "order", "ts": ts}).to_string(),
        String::new(),
        json!({"id": "e3", "type": "order"}).to_string(),
        json!({"id": "e1", "type": "order", "ts": ts}).to_string(),
        json!({"id": "e4", "type": "order", "ts": ts, "colour": "red"}).to_string(),
    ]
    .join("\n");
    let (status, body) = server.post_text(KEY_A, "/v1/events", &body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 2, "{body}");
    assert_eq!(body["duplicates"], 1, "{body}");
    assert_eq!(body["rejected"], 3, "{body}");
    let errors = body["errors"].as_array().expect("errors");
    let found: Vec<(i64, &str)> = errors
        .iter()
        .map(|e| {
            assert!(
                e["message"].as_str().is_some_and(|m| m.len() > 10),
                "an error needs a message: {e}"
            );
            (
                e["line"].as_i64().unwrap_or(-1),
                e["field"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(found, [(2, "event"), (5, "ts"), (7, "colour")], "{body}");

    // A JSON array: positions are indexes; e2 is already in the log.
    let array = json!([
        {"id": "e2", "type": "order", "ts": ts},
        {"id": "e5", "type": "order", "ts": "2026-11-25T09:00:00+09:00"},
        {"id": "e6", "type": "order", "ts": "yesterday"},
    ]);
    let (status, body) = server.post(KEY_A, "/v1/events", array).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["accepted"], &body["duplicates"], &body["rejected"]),
        (&json!(1), &json!(1), &json!(1)),
        "{body}"
    );
    assert_eq!(body["errors"][0]["index"], 2, "{body}");
    assert_eq!(body["errors"][0]["field"], "ts", "{body}");

    // Sending the same events again changes nothing.
    let again = ndjson(&[
        json!({"id": "e1", "type": "order", "ts": ts}),
        json!({"id": "e5", "type": "order", "ts": ts}),
    ]);
    let (status, body) = server.post_text(KEY_A, "/v1/events", &again).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["accepted"], &body["duplicates"]),
        (&json!(0), &json!(2)),
        "{body}"
    );
    assert_eq!(event_count(&server, KEY_A).await, 3);

    // Event ids are per tenant: B may use A's ids.
    server
        .send_events(KEY_B, &[event("e1", "order", json!({}))])
        .await;
    assert_eq!(event_count(&server, KEY_B).await, 1);

    // A body with nothing valid is a 400 that still lists every problem.
    let (status, body) = server
        .post_text(KEY_A, "/v1/events", "{\"id\": \"x\"}\n")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        (&body["accepted"], &body["rejected"]),
        (&json!(0), &json!(1)),
        "{body}"
    );
    assert_eq!(body["errors"][0]["field"], "type", "{body}");
    let (status, body) = server.post_text(KEY_A, "/v1/events", "[{\"id\":").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_json", "{body}");
    assert_eq!(event_count(&server, KEY_A).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_bad_lines_gets_a_small_answer_with_the_counts() {
    let server = Tidemark::start().await;
    // 500,000 lines of 11 bytes: 5.5 MB, every line refused.
    let body = "{\"x\": 123}\n".repeat(500_000);
    let response = server
        .http
        .post(format!("{}/v1/events", server.base))
        .bearer_auth(KEY_A)
        .body(body)
        .send()
        .await
        .expect("request reaches tidemark");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let text = response.text().await.expect("response body");
    assert!(text.len() < 64 * 1024, "the answer is {} bytes", text.len());
    let answer: serde_json::Value = serde_json::from_str(&text).expect("JSON answer");
    assert_eq!(answer["accepted"], 0, "{answer}");
    assert_eq!(answer["rejected"], 500_000, "{answer}");
    assert_eq!(answer["errors"].as_array().map(Vec::len), Some(100));
    assert_eq!(answer["errors_omitted"], 500_000 - 100, "{answer}");
    assert_eq!(answer["errors"][0]["line"], 1, "{answer}");
    assert_eq!(answer["errors"][0]["field"], "x", "{answer}");

    // A good event among them is still accepted, and the counts are the same.
    let body = format!(
        "{}\n{}",
        json!({"id": "good", "type": "order", "ts": now_ms()}),
        "{\"x\": 123}\n".repeat(1_000)
    );
    let (status, answer) = server.post_text(KEY_A, "/v1/events", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        (
            &answer["accepted"],
            &answer["rejected"],
            &answer["errors_omitted"]
        ),
        (&json!(1), &json!(1_000), &json!(900)),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_times_outside_the_plausible_range_are_refused_per_line() {
    let server = Tidemark::start().await;
    let now = now_ms();
    let events = [
        json!({"id": "year-1", "type": "order", "ts": "0001-01-01T00:00:00Z"}),
        json!({"id": "1969", "type": "order", "ts": "1969-07-20T20:17:00Z"}),
        json!({"id": "backfill", "type": "order", "ts": "2019-03-01T09:00:00+09:00"}),
        json!({"id": "year-9999", "type": "order", "ts": "9999-12-31T23:59:59Z"}),
        json!({"id": "now", "type": "order", "ts": now}),
        json!({"id": "in-two-days", "type": "order", "ts": now + 2 * 86_400_000}),
    ];
    let (status, body) = server
        .post_text(KEY_A, "/v1/events", &ndjson(&events))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["accepted"], &body["rejected"]),
        (&json!(2), &json!(4)),
        "{body}"
    );
    let errors: Vec<(i64, &str, &str)> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["line"].as_i64().unwrap_or(-1),
                e["field"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let lines: Vec<(i64, &str)> = errors.iter().map(|&(l, f, _)| (l, f)).collect();
    assert_eq!(
        lines,
        [(1, "ts"), (2, "ts"), (4, "ts"), (6, "ts")],
        "{body}"
    );
    for (line, _, message) in &errors {
        let reason = if *line <= 2 {
            "is before 2000-01-01T00:00:00Z, the earliest accepted event time"
        } else {
            "is more than 1d ahead of the server's clock"
        };
        assert!(message.contains(reason), "line {line}: {message}");
    }
    assert!(
        errors[0]
            .2
            .starts_with("ts: 0001-01-01T00:00:00Z is before"),
        "{body}"
    );
    assert_eq!(event_count(&server, KEY_A).await, 2);
}
