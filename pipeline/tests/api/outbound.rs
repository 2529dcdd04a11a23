//! The outbound guard and delivery hardening, as a tenant probing the server would meet them:
//! internal URLs refused when a destination is defined and when it is delivered to, timeouts
//! capped, one tenant's tarpit unable to hold another's notifications, and nothing of the
//! receiver's answer shown back.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;

/// No allow-list: what a default deployment does.
fn public_only() -> Settings {
    Settings {
        allow_private_networks: &[],
        ..Settings::default()
    }
}

async fn create(server: &Tidemark, id: &str, config: Value) -> (StatusCode, Value) {
    server
        .post(
            KEY_A,
            "/v1/destinations",
            json!({"id": id, "kind": "webhook", "config": config}),
        )
        .await
}

/// Asserts a 400 on `config.url` whose message names `url` and says it is refused.
fn assert_refused(status: StatusCode, body: &Value, url: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
    assert_eq!(error_field(body), "config.url", "{url}: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("'{url}'")) && message.contains("refused"),
        "{url}: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_to_internal_addresses_are_refused_naming_the_url() {
    let server = Tidemark::start_with(public_only()).await;
    let own_api = format!("{}/v1/rules", server.base);
    let mut hostile = vec![
        "http://127.0.0.1/hook".to_string(),
        "http://127.0.0.1:9/hook".into(),
        "http://localhost:9/hook".into(),
        "http://LOCALHOST./hook".into(),
        "http://127.1/hook".into(),
        "http://2130706433/hook".into(),
        "http://0x7f.0.0.1/hook".into(),
        "http://0177.0.0.1/hook".into(),
        "http://0.0.0.0/hook".into(),
        "http://[::1]/hook".into(),
        "http://[::ffff:127.0.0.1]/hook".into(),
        "http://[::ffff:7f00:1]/hook".into(),
        "http://169.254.169.254/latest/meta-data/".into(),
        "http://2852039166/latest/meta-data/".into(),
        "http://[fd00:ec2::254]/latest/meta-data/".into(),
        "http://metadata.google.internal/computeMetadata/v1/".into(),
        "http://10.0.0.1/hook".into(),
        "http://192.168.0.1/hook".into(),
        "http://172.16.0.1/hook".into(),
        "http://100.64.0.1/hook".into(),
        "http://[fe80::1]/hook".into(),
        "http://[fc00::1]/hook".into(),
        "http://user:pass@hooks.example.com/hook".into(),
        "http://hooks.example.com@127.0.0.1/hook".into(),
    ];
    hostile.push(own_api);
    for (i, url) in hostile.iter().enumerate() {
        let (status, body) = create(&server, &format!("h{i}"), json!({ "url": url })).await;
        assert_refused(status, &body, url);
    }
    let (_, listed) = server.get(KEY_A, "/v1/destinations").await;
    assert_eq!(listed["destinations"], json!([]), "nothing was stored");

    // Replacing a destination is checked the same way.
    let (status, body) = create(&server, "ok", json!({"url": "https://hooks.example.com/h"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = server
        .put(
            KEY_A,
            "/v1/destinations/ok",
            json!({"kind": "webhook", "config": {"url": "http://0x7f.0.0.1/hook"}}),
        )
        .await;
    assert_refused(status, &body, "http://0x7f.0.0.1/hook");
    let (_, shown) = server.get(KEY_A, "/v1/destinations/ok").await;
    assert_eq!(
        shown["config"]["url"], "https://hooks.example.com/h",
        "{shown}"
    );

    // A timeout above the maximum is refused, naming the maximum.
    let (status, body) = create(
        &server,
        "slow",
        json!({"url": "https://hooks.example.com/h", "timeout_ms": 3_600_000}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_field(&body), "config.timeout_ms", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("30000 ms")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allow_list_opens_the_operators_network_but_not_metadata_or_the_server_itself() {
    // The harness allows 127.0.0.1/32.
    let server = Tidemark::start().await;
    let receiver = Receiver::start().await;
    let (status, body) = create(&server, "inside", json!({"url": receiver.url("/hook")})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for url in [
        format!("{}/v1/rules", server.base),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://metadata.google.internal/".to_string(),
        "http://10.0.0.1/hook".to_string(),
        "http://[::1]/hook".to_string(),
    ] {
        let (status, body) = create(&server, "x", json!({ "url": url })).await;
        assert_refused(status, &body, &url);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_turns_internal_is_dead_at_delivery_and_nothing_is_sent() {
    // Defined while the operator allowed loopback; delivered after the allow-list was removed.
    let server = Tidemark::start().await;
    let receiver = Receiver::start().await;
    let port = receiver.base.rsplit(':').next().expect("port").to_string();
    server
        .webhook(KEY_A, "literal", &receiver.url("/literal"), None)
        .await;
    server
        .webhook(
            KEY_A,
            "named",
            &format!("http://localhost:{port}/named"),
            None,
        )
        .await;
    server
        .rule(
            KEY_A,
            json!({"id": "both", "kind": "match", "event_type": "order", "destinations": ["literal", "named"]}),
        )
        .await;
    let server = server.restart_with(public_only()).await;
    server
        .send_events(KEY_A, &[event("o1", "order", json!({}))])
        .await;
    let notification = server.notification_for(KEY_A, "both", "o1").await;
    let id = notification["id"].as_str().expect("id");
    let dead = server.settled(KEY_A, id, "dead").await;
    for delivery in dead["deliveries"].as_array().expect("deliveries") {
        assert_eq!(delivery["attempts"], 1, "dead at once: {dead}");
        let error = delivery["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains("refused") && error.contains("loopback"),
            "{dead}"
        );
    }
    // Nothing was sent, then or on a retry.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(receiver.requests("/literal").is_empty());
    assert!(receiver.requests("/named").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_show_the_status_but_not_what_the_receiver_said() {
    let server = Tidemark::start_with(Settings {
        max_attempts: 2,
        ..Settings::default()
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.answer(
        "/broken",
        Reply::status(500).with_body("stack trace: db password hunter2 at 10.1.2.3"),
    );
    let closed = free_port();
    server
        .webhook(KEY_A, "broken", &receiver.url("/broken"), None)
        .await;
    server
        .webhook(
            KEY_A,
            "closed",
            &format!("http://127.0.0.1:{closed}/hook"),
            None,
        )
        .await;
    server
        .rule(
            KEY_A,
            json!({"id": "r", "kind": "match", "event_type": "order", "destinations": ["broken", "closed"]}),
        )
        .await;
    server
        .send_events(KEY_A, &[event("o1", "order", json!({}))])
        .await;
    let notification = server.notification_for(KEY_A, "r", "o1").await;
    let id = notification["id"].as_str().expect("id");
    let dead = server.settled(KEY_A, id, "dead").await;
    let (_, listed) = server.get(KEY_A, "/v1/notifications").await;
    for shown in [dead.to_string(), listed.to_string()] {
        assert!(
            !shown.contains("hunter2") && !shown.contains("10.1.2.3"),
            "{shown}"
        );
    }
    let error_of = |destination: &str| {
        dead["deliveries"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["destination_id"] == destination))
            .and_then(|d| d["last_error"].as_str())
            .map(str::to_owned)
    };
    assert_eq!(
        error_of("broken").as_deref(),
        Some("HTTP 500 Internal Server Error")
    );
    // A closed port reads like any other unreachable receiver.
    assert_eq!(error_of("closed").as_deref(), Some("could not connect"));
}

/// A TCP listener that accepts every connection and never answers: its URL, and how many
/// connections it holds.
async fn tarpit() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind tarpit");
    let url = format!("http://{}", listener.local_addr().expect("tarpit address"));
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    (url, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_tarpits_do_not_hold_up_another_tenants_notification() {
    let server = Tidemark::start().await;
    let receiver = Receiver::start().await;
    let (tarpit, held) = tarpit().await;
    // Tenant A: nine destinations that accept and never answer, each with the longest timeout
    // allowed, and a backlog for every one of them.
    let names: Vec<String> = (0..9).map(|i| format!("pit{i}")).collect();
    for name in &names {
        let (status, body) = create(
            &server,
            name,
            json!({"url": format!("{tarpit}/{name}"), "timeout_ms": 30_000}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    server
        .rule(
            KEY_A,
            json!({"id": "pits", "kind": "match", "event_type": "order", "destinations": names}),
        )
        .await;
    let backlog: Vec<Value> = (0..10)
        .map(|i| event(&format!("a{i}"), "order", json!({})))
        .collect();
    server.send_events(KEY_A, &backlog).await;
    // As many of A's deliveries as the sender lets one tenant run are stuck in the tarpit.
    eventually("tenant A's deliveries held by the tarpit", async || {
        (held.load(Ordering::SeqCst) >= 16).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Tenant B's notification is delivered promptly all the same.
    let (status, body) = server
        .post(
            KEY_B,
            "/v1/destinations",
            json!({"id": "hook", "kind": "webhook", "config": {"url": receiver.url("/b")}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    server
        .rule(
            KEY_B,
            json!({"id": "b", "kind": "match", "event_type": "order", "destinations": ["hook"]}),
        )
        .await;
    let sent = Instant::now();
    server
        .send_events(KEY_B, &[event("b1", "order", json!({}))])
        .await;
    let notification = server.notification_for(KEY_B, "b", "b1").await;
    let id = notification["id"].as_str().expect("id");
    server.settled(KEY_B, id, "delivered").await;
    let waited = sent.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "tenant B's notification waited {waited:?} behind tenant A's tarpit"
    );
    assert_eq!(receiver.requests("/b").len(), 1);
}
