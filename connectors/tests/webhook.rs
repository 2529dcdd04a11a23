//! The webhook sink against a real local HTTP server: what it sends, and how it classifies
//! what comes back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use connectors::outbound::{OutboundGuard, OutboundPolicy};
use connectors::sinks::webhook::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use connectors::sinks::{
    DeliveryOutcome, Destination, OutgoingNotification, Sink, SinkSettings, Sinks, WebhookConfig,
    WebhookSigner, WebhookSink,
};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const PAYLOAD: &str = r#"{"rule":"big-order","amount":1200000}"#;

/// What the receiver saw: (headers, body) per request.
type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

async fn receive(State(seen): State<Received>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signer = WebhookSigner::new(SECRET).expect("secret");
    let verified = signer.verify(&headers, &body, Duration::from_secs(300));
    seen.lock().expect("lock").push((headers, body));
    match verified {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::UNAUTHORIZED,
    }
}

async fn busy() -> impl IntoResponse {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "7")],
        "down for maintenance ".repeat(100),
    )
}

async fn moved() -> impl IntoResponse {
    (StatusCode::FOUND, [(header::LOCATION, "/ok")])
}

async fn gone() -> StatusCode {
    StatusCode::GONE
}

async fn never_answers() -> StatusCode {
    tokio::time::sleep(Duration::from_secs(60)).await;
    StatusCode::OK
}

async fn server() -> (String, Received) {
    let seen: Received = Arc::default();
    let app = Router::new()
        .route("/ok", post(receive))
        .route("/busy", post(busy))
        .route("/moved", post(moved))
        .route("/gone", post(gone))
        .route("/slow", post(never_answers))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    (format!("http://{addr}"), seen)
}

/// The receivers here listen on loopback: the allow-list has to say so, as an operator's would.
fn loopback() -> SinkSettings {
    let policy = OutboundPolicy::allowing(&["127.0.0.1/32".to_owned()]).expect("allow-list");
    SinkSettings {
        outbound: OutboundGuard::new(policy),
        ..SinkSettings::default()
    }
}

fn notification(id: &str) -> OutgoingNotification<'_> {
    OutgoingNotification {
        tenant: "shop-a",
        id,
        payload: PAYLOAD,
    }
}

fn config(url: String) -> WebhookConfig {
    let mut config = WebhookConfig::new(url);
    config.secret = Some(SECRET.into());
    config.timeout_ms = 2_000;
    config
}

#[tokio::test]
async fn delivers_signed_request_with_idempotency_key() {
    let (base, seen) = server().await;
    let sink = WebhookSink::new(&loopback()).expect("sink");
    let mut config = config(format!("{base}/ok"));
    config
        .headers
        .insert("x-tenant-token".to_owned(), "abc".into());
    config
        .headers
        .insert(HEADER_ID.to_owned(), "spoofed".into());

    let result = sink.deliver(&notification("ntf_1"), &config).await;
    assert_eq!(result.outcome, DeliveryOutcome::Delivered, "{result:?}");
    assert_eq!(result.status_code, Some(204));

    let seen = seen.lock().expect("lock");
    let (headers, body) = &seen[0];
    assert_eq!(body.as_ref(), PAYLOAD.as_bytes());
    assert_eq!(headers[HEADER_ID], "ntf_1");
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(headers["x-tenant-token"], "abc");
    let timestamp: i64 = headers[HEADER_TIMESTAMP]
        .to_str()
        .expect("text")
        .parse()
        .expect("unix seconds");
    let signer = WebhookSigner::new(SECRET).expect("secret");
    assert_eq!(
        headers[HEADER_SIGNATURE],
        signer.sign("ntf_1", timestamp, PAYLOAD).as_str()
    );
    assert_eq!(
        signer.verify(headers, body, Duration::from_secs(300)),
        Ok(())
    );
}

#[tokio::test]
async fn unsigned_destination_sends_no_signature() {
    let (base, seen) = server().await;
    let config = WebhookConfig::new(format!("{base}/ok"));
    let result = WebhookSink::new(&loopback())
        .expect("sink")
        .deliver(&notification("ntf_2"), &config)
        .await;
    // The receiver insists on a signature, so it refuses: a permanent 401.
    assert_eq!(result.outcome, DeliveryOutcome::Permanent);
    assert_eq!(result.status_code, Some(401));
    assert!(
        seen.lock().expect("lock")[0]
            .0
            .get(HEADER_SIGNATURE)
            .is_none()
    );
}

#[tokio::test]
async fn service_unavailable_is_retryable_with_retry_after() {
    let (base, _) = server().await;
    let result = WebhookSink::new(&loopback())
        .expect("sink")
        .deliver(&notification("ntf_3"), &config(format!("{base}/busy")))
        .await;
    assert_eq!(
        result.outcome,
        DeliveryOutcome::Retryable {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert_eq!(result.status_code, Some(503));
    // The status only: what the receiver said stays out of what the tenant sees.
    assert_eq!(
        result.error.as_deref(),
        Some("HTTP 503 Service Unavailable")
    );
}

#[tokio::test]
async fn redirect_is_a_failure_and_not_followed() {
    let (base, seen) = server().await;
    let result = WebhookSink::new(&loopback())
        .expect("sink")
        .deliver(&notification("ntf_4"), &config(format!("{base}/moved")))
        .await;
    assert!(!result.is_delivered());
    assert!(matches!(result.outcome, DeliveryOutcome::Retryable { .. }));
    assert_eq!(result.status_code, Some(302));
    assert_eq!(
        result.error.as_deref(),
        Some("HTTP 302 Found (redirects are not followed)")
    );
    assert!(
        seen.lock().expect("lock").is_empty(),
        "redirect was followed"
    );
}

#[tokio::test]
async fn gone_is_permanent() {
    let (base, _) = server().await;
    let result = WebhookSink::new(&loopback())
        .expect("sink")
        .deliver(&notification("ntf_5"), &config(format!("{base}/gone")))
        .await;
    assert_eq!(result.outcome, DeliveryOutcome::Permanent);
    assert_eq!(result.status_code, Some(410));
}

#[tokio::test]
async fn server_that_never_answers_times_out_retryably() {
    let (base, _) = server().await;
    let mut config = config(format!("{base}/slow"));
    config.timeout_ms = 300;
    let result = WebhookSink::new(&loopback())
        .expect("sink")
        .deliver(&notification("ntf_6"), &config)
        .await;
    assert_eq!(
        result.outcome,
        DeliveryOutcome::Retryable { retry_after: None }
    );
    assert_eq!(result.status_code, None);
    assert!(result.error.expect("error").contains("timed out"));
    assert!(
        result.duration < Duration::from_secs(5),
        "{:?}",
        result.duration
    );
}

#[tokio::test]
async fn refused_connection_is_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let result = WebhookSink::new(&loopback())
        .expect("sink")
        .deliver(&notification("ntf_7"), &config(format!("http://{addr}/ok")))
        .await;
    assert!(
        matches!(result.outcome, DeliveryOutcome::Retryable { .. }),
        "{result:?}"
    );
    // Refused or unreachable read the same: no port-scan oracle.
    assert_eq!(result.error.as_deref(), Some("could not connect"));
}

#[tokio::test]
async fn loopback_is_refused_without_the_allow_list_and_nothing_is_sent() {
    let (base, seen) = server().await;
    let port = base.rsplit(':').next().expect("port");
    let sinks = Sinks::new(&SinkSettings::default()).expect("sinks");
    for url in [
        format!("{base}/ok"),
        format!("http://localhost:{port}/ok"),
        format!("http://127.1:{port}/ok"),
        format!("http://[::ffff:127.0.0.1]:{port}/ok"),
    ] {
        let stored = format!(r#"{{"url":"{url}","secret":"{SECRET}"}}"#);
        let destination = Destination::parse("webhook", &stored).expect("config");
        let result = sinks.deliver(&destination, &notification("ntf_10")).await;
        assert_eq!(
            result.outcome,
            DeliveryOutcome::Permanent,
            "{url}: {result:?}"
        );
        let error = result.error.expect("a reason");
        assert!(
            error.contains("refused") && error.contains("loopback"),
            "{url}: {error}"
        );
    }
    assert!(
        seen.lock().expect("lock").is_empty(),
        "a refused URL was sent to"
    );
}

#[tokio::test]
async fn the_timeout_is_held_to_the_maximum() {
    let (base, _) = server().await;
    let settings = SinkSettings {
        max_timeout: Duration::from_millis(300),
        ..loopback()
    };
    let mut config = config(format!("{base}/slow"));
    config.timeout_ms = 3_600_000;
    let result = WebhookSink::new(&settings)
        .expect("sink")
        .deliver(&notification("ntf_11"), &config)
        .await;
    assert_eq!(result.error.as_deref(), Some("timed out after 300 ms"));
    assert!(
        result.duration < Duration::from_secs(5),
        "{:?}",
        result.duration
    );
}

#[tokio::test]
async fn bad_configuration_is_permanent_without_sending() {
    let sink = WebhookSink::new(&loopback()).expect("sink");
    let mut bad_secret = config("http://127.0.0.1:9/ok".to_owned());
    bad_secret.secret = Some("whsec_???".into());
    let result = sink.deliver(&notification("ntf_8"), &bad_secret).await;
    assert_eq!(result.outcome, DeliveryOutcome::Permanent);

    let result = sink
        .deliver(
            &notification("ntf_8"),
            &config("ftp://example.com/x".to_owned()),
        )
        .await;
    assert_eq!(result.outcome, DeliveryOutcome::Permanent);

    let mut reserved = config("http://127.0.0.1:9/ok".to_owned());
    reserved
        .headers
        .insert("Content-Length".to_owned(), "1".into());
    let result = sink.deliver(&notification("ntf_8"), &reserved).await;
    assert_eq!(result.outcome, DeliveryOutcome::Permanent);
    assert!(result.error.expect("error").contains("content-length"));
}

#[tokio::test]
async fn stored_destination_dispatches_through_sinks() {
    let (base, seen) = server().await;
    let stored = format!(r#"{{"url":"{base}/ok","secret":"{SECRET}","timeout_ms":2000}}"#);
    let destination = Destination::parse("webhook", &stored).expect("config");
    let result = Sinks::new(&loopback())
        .expect("sinks")
        .deliver(&destination, &notification("ntf_9"))
        .await;
    assert!(result.is_delivered(), "{result:?}");
    assert_eq!(seen.lock().expect("lock").len(), 1);
}
