//! The HTTP API end to end: every test runs the real `tidemark serve` binary on a free port with
//! its own data directory, talks to it over HTTP as a tenant would, and receives its webhooks on a
//! local axum server that records every request and answers as the test tells it to.
//!
//! Waits poll with short sleeps under one overall deadline; the only timing asserted is the
//! order "a fast destination is served before a slow one finishes".

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use connectors::sinks::webhook::WebhookSigner;
use serde_json::{Value, json};

const KEY_A: &str = "key-for-shop-a-0123456789";
const KEY_B: &str = "key-for-shop-b-0123456789";
/// A Standard Webhooks secret (`whsec_` + base64).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Longest any single wait may take.
const DEADLINE: Duration = Duration::from_secs(20);

// ---- the server under test ----

/// Settings that differ between tests; the rest are fixed in [`Settings::toml`].
struct Settings {
    allowed_lateness: &'static str,
    max_attempts: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            allowed_lateness: "200ms",
            max_attempts: 3,
        }
    }
}

impl Settings {
    fn toml(&self, data_dir: &Path, port: u16) -> String {
        format!(
            r#"data_dir = "{data_dir}"

[server]
listen = "127.0.0.1:{port}"

[engine]
workers = 2
allowed_lateness = "{lateness}"
tick = "50ms"

[sender]
retry_base = "50ms"
retry_max = "200ms"
max_attempts = {max_attempts}
poll = "50ms"

[[tenants]]
id = "shop-a"
time_zone = "Asia/Seoul"
api_key = "{KEY_A}"

[[tenants]]
id = "shop-b"
api_key = "{KEY_B}"
"#,
            data_dir = data_dir.join("data").display(),
            lateness = self.allowed_lateness,
            max_attempts = self.max_attempts,
        )
    }
}

/// A running `tidemark serve`; killed when dropped (its log is printed if the test failed).
struct Tidemark {
    child: Child,
    base: String,
    log: PathBuf,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Tidemark {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("---- tidemark server log ----\n{log}");
        }
    }
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

impl Tidemark {
    async fn start() -> Tidemark {
        Tidemark::start_with(Settings::default()).await
    }

    async fn start_with(settings: Settings) -> Tidemark {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = dir.path().join("tidemark.toml");
        std::fs::write(&config, settings.toml(dir.path(), port)).expect("write config");
        let log = dir.path().join("tidemark.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_tidemark"));
        command
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        // Only the file configures the server; variables of the calling shell must not leak in.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TIDEMARK_") {
                command.env_remove(name);
            }
        }
        let child = command.spawn().expect("start tidemark serve");
        let mut server = Tidemark {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
            http: connectors::http::client_builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client"),
            _dir: dir,
        };
        let deadline = Instant::now() + DEADLINE;
        loop {
            let health = server
                .http
                .get(format!("{}/healthz", server.base))
                .send()
                .await;
            if health.is_ok_and(|r| r.status() == StatusCode::OK) {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("tidemark serve exited with {status} before it was healthy");
            }
            assert!(Instant::now() < deadline, "tidemark never became healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends a request with `key` as a bearer token; returns the status and the JSON body
    /// (`null` when empty).
    async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<String>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.expect("request reaches tidemark");
        let status = response.status();
        let text = response.text().await.expect("response body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{path} answered non-JSON ({e}): {text}"))
        };
        (status, body)
    }

    async fn get(&self, key: &str, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(key), None).await
    }

    async fn post(&self, key: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(key), Some(body.to_string()))
            .await
    }

    async fn post_text(&self, key: &str, path: &str, body: &str) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(key), Some(body.to_string()))
            .await
    }

    async fn put(&self, key: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(key), Some(body.to_string()))
            .await
    }

    async fn delete(&self, key: &str, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(key), None).await
    }

    /// Creates a webhook destination; panics unless it is created.
    async fn webhook(&self, key: &str, id: &str, url: &str, secret: Option<&str>) {
        let mut config = json!({ "url": url });
        if let Some(secret) = secret {
            config["secret"] = json!(secret);
        }
        let (status, body) = self
            .post(
                key,
                "/v1/destinations",
                json!({"id": id, "kind": "webhook", "config": config}),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "create destination {id}: {body}"
        );
    }

    /// Creates a rule; panics unless it is created. Returns it as shown by the API.
    async fn rule(&self, key: &str, spec: Value) -> Value {
        let (status, body) = self.post(key, "/v1/rules", spec.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "create rule {spec}: {body}");
        body
    }

    /// Posts events as NDJSON; panics unless every one is accepted as new.
    async fn send_events(&self, key: &str, events: &[Value]) {
        let (status, body) = self.post_text(key, "/v1/events", &ndjson(events)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["accepted"], json!(events.len()), "{body}");
    }

    /// `GET /v1/notifications?{query}`.
    async fn notifications(&self, key: &str, query: &str) -> Vec<Value> {
        let (status, body) = self.get(key, &format!("/v1/notifications?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["notifications"]
            .as_array()
            .expect("a notifications array")
            .clone()
    }

    /// The notification of `rule_id` about event `event_id`, once it exists.
    async fn notification_for(&self, key: &str, rule_id: &str, event_id: &str) -> Value {
        let query = format!("rule_id={rule_id}");
        eventually(
            &format!("a notification of {rule_id} for {event_id}"),
            async || {
                self.notifications(key, &query)
                    .await
                    .into_iter()
                    .find(|n| n["payload"]["event"]["id"] == json!(event_id))
            },
        )
        .await
    }

    /// Notification `id`, once every one of its deliveries is in `status`.
    async fn settled(&self, key: &str, id: &str, status: &str) -> Value {
        eventually(&format!("notification {id} {status}"), async || {
            let (code, body) = self.get(key, &format!("/v1/notifications/{id}")).await;
            assert_eq!(code, StatusCode::OK, "{body}");
            let deliveries = body["deliveries"].as_array()?;
            (!deliveries.is_empty() && deliveries.iter().all(|d| d["status"] == json!(status)))
                .then_some(body)
        })
        .await
    }

    async fn metrics_text(&self) -> (String, String) {
        let response = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics");
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (content_type, response.text().await.expect("metrics body"))
    }
}

// ---- the webhook receiver ----

/// How the receiver answers one request.
#[derive(Clone, Copy, Debug)]
struct Reply {
    status: u16,
    retry_after: Option<&'static str>,
    delay: Duration,
}

impl Reply {
    const NO_CONTENT: Reply = Reply::status(204);

    const fn status(status: u16) -> Reply {
        Reply {
            status,
            retry_after: None,
            delay: Duration::ZERO,
        }
    }

    const fn retry_after(self, seconds: &'static str) -> Reply {
        Reply {
            retry_after: Some(seconds),
            ..self
        }
    }

    const fn after(self, delay: Duration) -> Reply {
        Reply { delay, ..self }
    }
}

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
    at: Instant,
    /// When the receiver finished handling it (after any delay); `None` while in progress.
    finished: Option<Instant>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("webhook body is JSON")
    }

    fn webhook_id(&self) -> String {
        self.headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .expect("webhook-id header")
            .to_string()
    }
}

#[derive(Default)]
struct Inbox {
    received: Vec<(String, Received)>,
    scripts: HashMap<String, VecDeque<Reply>>,
    answers: HashMap<String, Reply>,
}

/// A local HTTP server recording every request, per path.
#[derive(Clone)]
struct Receiver {
    base: String,
    inbox: Arc<Mutex<Inbox>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let base = format!(
            "http://{}",
            listener.local_addr().expect("receiver address")
        );
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(inbox.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { base, inbox }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Answers every request to `path` with `reply` (after any scripted replies).
    fn answer(&self, path: &str, reply: Reply) {
        self.inbox
            .lock()
            .unwrap()
            .answers
            .insert(path.to_string(), reply);
    }

    /// Answers the next requests to `path` with `replies`, in order.
    fn script(&self, path: &str, replies: &[Reply]) {
        self.inbox
            .lock()
            .unwrap()
            .scripts
            .insert(path.to_string(), replies.iter().copied().collect());
    }

    fn requests(&self, path: &str) -> Vec<Received> {
        self.inbox
            .lock()
            .unwrap()
            .received
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// The requests to `path`, once there are at least `n`.
    async fn wait_for(&self, path: &str, n: usize) -> Vec<Received> {
        eventually(&format!("{n} request(s) to {path}"), async || {
            let got = self.requests(path);
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

async fn receive(
    State(inbox): State<Arc<Mutex<Inbox>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let (index, reply) = {
        let mut inbox = inbox.lock().unwrap();
        let reply = inbox
            .scripts
            .get_mut(&path)
            .and_then(VecDeque::pop_front)
            .or_else(|| inbox.answers.get(&path).copied())
            .unwrap_or(Reply::NO_CONTENT);
        inbox.received.push((
            path,
            Received {
                headers,
                body,
                at: Instant::now(),
                finished: None,
            },
        ));
        (inbox.received.len() - 1, reply)
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    inbox.lock().unwrap().received[index].1.finished = Some(Instant::now());
    let mut response = StatusCode::from_u16(reply.status)
        .expect("valid status")
        .into_response();
    if let Some(seconds) = reply.retry_after {
        response
            .headers_mut()
            .insert("retry-after", seconds.parse().expect("header value"));
    }
    response
}

// ---- helpers ----

/// Polls `check` until it yields a value; fails after [`DEADLINE`].
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// An event happening now.
fn event(id: &str, event_type: &str, attrs: Value) -> Value {
    json!({"id": id, "type": event_type, "ts": now_ms(), "attrs": attrs})
}

fn ndjson(events: &[Value]) -> String {
    events.iter().map(|e| format!("{e}\n")).collect()
}

fn error_field(body: &Value) -> &str {
    body["error"]["field"].as_str().unwrap_or_default()
}

async fn event_count(server: &Tidemark, key: &str) -> u64 {
    let (status, stats) = server.get(key, "/v1/stats").await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    stats["events"].as_u64().expect("events count")
}

/// The value of the sample `name` (name and labels exactly as exposed).
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|value| value.split_whitespace().next())
            .and_then(|value| value.parse().ok())
    })
}

// ---- 1. authentication and tenant walls ----

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
        let (status, body) = server.call(method.clone(), path, Some(KEY_B), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        assert_eq!(
            body["error"]["code"], "forbidden",
            "{method} {path}: {body}"
        );
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
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(server.notifications(KEY_B, "").await.is_empty());
    let (status, _) = server.get(KEY_A, &format!("/v1/notifications/{id}")).await;
    assert_eq!(status, StatusCode::OK);
}

// ---- 2. events ----

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

// ---- 3. rules and destinations ----

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

// ---- 4. delivery ----

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

// ---- 5. threshold rules ----

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

// ---- 6. retries, dead letters, slow destinations ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_are_retried_then_dead_lettered() {
    let server = Tidemark::start_with(Settings {
        max_attempts: 3,
        ..Settings::default()
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.script(
        "/flaky",
        &[
            Reply::status(503).retry_after("0"),
            Reply::status(503).retry_after("1"),
        ],
    );
    receiver.answer("/broken", Reply::status(500));
    receiver.answer("/gone", Reply::status(410));
    for (name, event_type) in [("flaky", "a"), ("broken", "b"), ("gone", "c")] {
        server
            .webhook(KEY_A, name, &receiver.url(&format!("/{name}")), None)
            .await;
        server
            .rule(
                KEY_A,
                json!({"id": name, "kind": "match", "event_type": event_type, "destinations": [name]}),
            )
            .await;
    }
    server
        .send_events(
            KEY_A,
            &[
                event("a1", "a", json!({})),
                event("b1", "b", json!({})),
                event("c1", "c", json!({})),
            ],
        )
        .await;

    // 503, 503, then 204: delivered on the third attempt, each attempt logged.
    let flaky = server.notification_for(KEY_A, "flaky", "a1").await;
    let flaky_id = flaky["id"].as_str().unwrap().to_string();
    let flaky = server.settled(KEY_A, &flaky_id, "delivered").await;
    let delivery = &flaky["deliveries"][0];
    assert_eq!(delivery["attempts"], 3, "{flaky}");
    let log: Vec<(Value, Value, Value)> = delivery["attempt_log"]
        .as_array()
        .expect("attempt log")
        .iter()
        .map(|a| {
            (
                a["attempt"].clone(),
                a["outcome"].clone(),
                a["status_code"].clone(),
            )
        })
        .collect();
    assert_eq!(
        log,
        [
            (json!(1), json!("retry"), json!(503)),
            (json!(2), json!("retry"), json!(503)),
            (json!(3), json!("delivered"), json!(204)),
        ],
        "{flaky}"
    );
    let requests = receiver.requests("/flaky");
    assert_eq!(requests.len(), 3);
    assert!(
        requests.iter().all(|r| r.webhook_id() == flaky_id),
        "same idempotency key"
    );

    // Always 500: dead after max_attempts; 410: dead at once.
    let dead = eventually("two dead notifications", async || {
        let dead = server.notifications(KEY_A, "status=dead").await;
        (dead.len() == 2).then_some(dead)
    })
    .await;
    let broken = dead
        .iter()
        .find(|n| n["rule_id"] == "broken")
        .expect("broken is dead");
    let delivery = &broken["deliveries"][0];
    assert_eq!(delivery["status"], "dead", "{broken}");
    assert_eq!(delivery["attempts"], 3, "{broken}");
    let log = delivery["attempt_log"].as_array().expect("attempt log");
    assert_eq!(log.len(), 3, "{broken}");
    assert!(log.iter().all(|a| a["status_code"] == 500), "{broken}");
    assert_eq!(log[2]["outcome"], "dead", "{broken}");
    assert!(
        delivery["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("500")),
        "{broken}"
    );
    assert_eq!(receiver.requests("/broken").len(), 3);
    let gone = dead
        .iter()
        .find(|n| n["rule_id"] == "gone")
        .expect("gone is dead");
    assert_eq!(gone["deliveries"][0]["attempts"], 1, "{gone}");
    assert_eq!(receiver.requests("/gone").len(), 1);

    let delivered = server.notifications(KEY_A, "status=delivered").await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0]["id"], json!(flaky_id));
    assert!(
        server
            .notifications(KEY_A, "status=pending")
            .await
            .is_empty()
    );
}

/// The earliest time any request to `path` finished, if one has.
fn first_finished(receiver: &Receiver, path: &str) -> Option<Instant> {
    receiver
        .requests(path)
        .iter()
        .filter_map(|r| r.finished)
        .min()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_destination_does_not_hold_up_a_fast_one() {
    let server = Tidemark::start().await;
    let receiver = Receiver::start().await;
    receiver.answer("/slow", Reply::NO_CONTENT.after(Duration::from_secs(5)));
    server
        .webhook(KEY_A, "slow", &receiver.url("/slow"), None)
        .await;
    server
        .webhook(KEY_A, "fast", &receiver.url("/fast"), None)
        .await;
    server
        .rule(
            KEY_A,
            json!({"id": "both", "kind": "match", "event_type": "order", "destinations": ["slow", "fast"]}),
        )
        .await;

    server
        .send_events(KEY_A, &[event("o1", "order", json!({}))])
        .await;
    let fast = receiver.wait_for("/fast", 1).await;
    receiver.wait_for("/slow", 1).await;
    // While the slow receiver still works on o1, o2 reaches the fast one.
    server
        .send_events(KEY_A, &[event("o2", "order", json!({}))])
        .await;
    let fast2 = receiver.wait_for("/fast", 2).await;
    let slow_done = first_finished(&receiver, "/slow");
    for request in [&fast[0], &fast2[1]] {
        assert!(
            slow_done.is_none_or(|done| request.at < done),
            "the fast destination waited for the slow one"
        );
    }
    let notification = server.notification_for(KEY_A, "both", "o2").await;
    let id = notification["id"].as_str().unwrap();
    assert_eq!(fast2[1].webhook_id(), id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_at_a_slow_destination_does_not_hold_up_a_fast_one() {
    // Default sender limits: 64 deliveries in flight overall, 8 per destination.
    let server = Tidemark::start().await;
    let receiver = Receiver::start().await;
    receiver.answer("/slow", Reply::NO_CONTENT.after(Duration::from_secs(5)));
    for name in ["slow", "fast"] {
        server
            .webhook(KEY_A, name, &receiver.url(&format!("/{name}")), None)
            .await;
        server
            .rule(
                KEY_A,
                json!({"id": name, "kind": "match", "event_type": name, "destinations": [name]}),
            )
            .await;
    }
    let backlog: Vec<Value> = (0..80)
        .map(|i| event(&format!("s{i}"), "slow", json!({})))
        .collect();
    server.send_events(KEY_A, &backlog).await;
    receiver.wait_for("/slow", 8).await;
    server
        .send_events(KEY_A, &[event("f1", "fast", json!({}))])
        .await;
    let fast = receiver.wait_for("/fast", 1).await;
    let slow_done = first_finished(&receiver, "/slow");
    assert!(
        slow_done.is_none_or(|done| fast[0].at < done),
        "the fast destination waited for the slow one's backlog"
    );
}

// ---- 7. metrics ----

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
