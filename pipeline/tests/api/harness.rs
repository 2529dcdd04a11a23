//! The server under test, the webhook receiver and the helpers every API test uses.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub(crate) const KEY_A: &str = "key-for-shop-a-0123456789";
pub(crate) const KEY_B: &str = "key-for-shop-b-0123456789";
/// A Standard Webhooks secret (`whsec_` + base64).
pub(crate) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Longest any single wait may take.
pub(crate) const DEADLINE: Duration = Duration::from_secs(20);

// ---- the server under test ----

/// Settings that differ between tests; the rest are fixed in [`Settings::toml`].
pub(crate) struct Settings {
    pub(crate) allowed_lateness: &'static str,
    pub(crate) max_attempts: u32,
    /// `[outbound] allow_private_networks`. The receivers listen on loopback, which the server
    /// refuses unless allowed, so the tests allow 127.0.0.1 as an operator would allow their
    /// own network; the guard's own tests allow nothing.
    pub(crate) allow_private_networks: &'static [&'static str],
    /// `store`: a `postgres://` URL, or none for the SQLite file in the data directory.
    pub(crate) store: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            allowed_lateness: "200ms",
            max_attempts: 3,
            allow_private_networks: &["127.0.0.1/32"],
            store: None,
        }
    }
}

impl Settings {
    pub(crate) fn toml(&self, data_dir: &Path, port: u16) -> String {
        format!(
            r#"data_dir = "{data_dir}"
{store}
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

[outbound]
allow_private_networks = {allowed:?}

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
            allowed = self.allow_private_networks,
            store = match &self.store {
                Some(url) => format!("store = {url:?}\n"),
                None => String::new(),
            },
        )
    }
}

/// A running `tidemark serve`; killed when dropped (its log is printed if the test failed).
pub(crate) struct Tidemark {
    pub(crate) child: Child,
    pub(crate) base: String,
    pub(crate) log: PathBuf,
    pub(crate) http: reqwest::Client,
    pub(crate) _dir: tempfile::TempDir,
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

/// Starts `tidemark serve` on `config`, appending its log to `log`.
fn spawn(config: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidemark"));
    command
        .arg("serve")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // Only the file configures the server; variables of the calling shell must not leak in.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TIDEMARK_") {
            command.env_remove(name);
        }
    }
    command.spawn().expect("start tidemark serve")
}

#[path = "../support/ports.rs"]
mod ports;
pub(crate) use ports::free_port;

impl Tidemark {
    pub(crate) async fn start() -> Tidemark {
        Tidemark::start_with(Settings::default()).await
    }

    pub(crate) async fn start_with(settings: Settings) -> Tidemark {
        let dir = tempfile::tempdir().expect("temp dir");
        Tidemark::start_in(dir, settings).await
    }

    /// Stops this server and starts another on the same data directory with `settings`.
    pub(crate) async fn restart_with(mut self, settings: Settings) -> Tidemark {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().expect("temp dir");
        let old = std::mem::replace(&mut self._dir, dir);
        drop(self);
        Tidemark::start_in(old, settings).await
    }

    async fn start_in(dir: tempfile::TempDir, settings: Settings) -> Tidemark {
        let mut server = Tidemark::spawn_in(dir, settings);
        server.wait_healthy().await;
        server
    }

    /// Starts a server without waiting for it to answer (one standing by answers nothing).
    pub(crate) fn spawn_with(settings: Settings) -> Tidemark {
        Tidemark::spawn_in(tempfile::tempdir().expect("temp dir"), settings)
    }

    fn spawn_in(dir: tempfile::TempDir, settings: Settings) -> Tidemark {
        let port = free_port();
        let config = dir.path().join("tidemark.toml");
        std::fs::write(&config, settings.toml(dir.path(), port)).expect("write config");
        let log = dir.path().join("tidemark.log");
        let child = spawn(&config, &log);
        Tidemark {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
            http: connectors::http::client_builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client"),
            _dir: dir,
        }
    }

    /// What the server logged so far.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the server (SIGKILL), runs `between` on its data directory while it is down, and
    /// starts it again on the same configuration and data; returns once it is healthy.
    pub(crate) async fn restart(&mut self, between: impl FnOnce(&Path)) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        between(&self._dir.path().join("data"));
        self.child = spawn(&self._dir.path().join("tidemark.toml"), &self.log);
        self.wait_healthy().await;
    }

    pub(crate) async fn wait_healthy(&mut self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let health = self.http.get(format!("{}/healthz", self.base)).send().await;
            if health.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("tidemark serve exited with {status} before it was healthy");
            }
            assert!(Instant::now() < deadline, "tidemark never became healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends a request with `key` as a bearer token; returns the status and the JSON body
    /// (`null` when empty).
    pub(crate) async fn call(
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

    pub(crate) async fn get(&self, key: &str, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(key), None).await
    }

    pub(crate) async fn post(&self, key: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(key), Some(body.to_string()))
            .await
    }

    pub(crate) async fn post_text(&self, key: &str, path: &str, body: &str) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(key), Some(body.to_string()))
            .await
    }

    pub(crate) async fn put(&self, key: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(key), Some(body.to_string()))
            .await
    }

    pub(crate) async fn delete(&self, key: &str, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(key), None).await
    }

    /// Creates a webhook destination; panics unless it is created.
    pub(crate) async fn webhook(&self, key: &str, id: &str, url: &str, secret: Option<&str>) {
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
    pub(crate) async fn rule(&self, key: &str, spec: Value) -> Value {
        let (status, body) = self.post(key, "/v1/rules", spec.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "create rule {spec}: {body}");
        body
    }

    /// Posts events as NDJSON; panics unless every one is accepted as new.
    pub(crate) async fn send_events(&self, key: &str, events: &[Value]) {
        let (status, body) = self.post_text(key, "/v1/events", &ndjson(events)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["accepted"], json!(events.len()), "{body}");
    }

    /// `GET /v1/notifications?{query}`.
    pub(crate) async fn notifications(&self, key: &str, query: &str) -> Vec<Value> {
        let (status, body) = self.get(key, &format!("/v1/notifications?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["notifications"]
            .as_array()
            .expect("a notifications array")
            .clone()
    }

    /// The notification of `rule_id` about event `event_id`, once it exists.
    pub(crate) async fn notification_for(&self, key: &str, rule_id: &str, event_id: &str) -> Value {
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
    pub(crate) async fn settled(&self, key: &str, id: &str, status: &str) -> Value {
        eventually(&format!("notification {id} {status}"), async || {
            let (code, body) = self.get(key, &format!("/v1/notifications/{id}")).await;
            assert_eq!(code, StatusCode::OK, "{body}");
            let deliveries = body["deliveries"].as_array()?;
            (!deliveries.is_empty() && deliveries.iter().all(|d| d["status"] == json!(status)))
                .then_some(body)
        })
        .await
    }

    pub(crate) async fn metrics_text(&self) -> (String, String) {
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
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<&'static str>,
    pub(crate) delay: Duration,
    pub(crate) body: &'static str,
}

impl Reply {
    pub(crate) const NO_CONTENT: Reply = Reply::status(204);

    pub(crate) const fn status(status: u16) -> Reply {
        Reply {
            status,
            retry_after: None,
            delay: Duration::ZERO,
            body: "",
        }
    }

    pub(crate) const fn retry_after(self, seconds: &'static str) -> Reply {
        Reply {
            retry_after: Some(seconds),
            ..self
        }
    }

    pub(crate) const fn after(self, delay: Duration) -> Reply {
        Reply { delay, ..self }
    }

    pub(crate) const fn with_body(self, body: &'static str) -> Reply {
        Reply { body, ..self }
    }
}

/// One request the receiver got.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) at: Instant,
    /// When the receiver finished handling it (after any delay); `None` while in progress.
    pub(crate) finished: Option<Instant>,
}

impl Received {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("webhook body is JSON")
    }

    pub(crate) fn webhook_id(&self) -> String {
        self.headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .expect("webhook-id header")
            .to_string()
    }
}

#[derive(Default)]
pub(crate) struct Inbox {
    pub(crate) received: Vec<(String, Received)>,
    pub(crate) scripts: HashMap<String, VecDeque<Reply>>,
    pub(crate) answers: HashMap<String, Reply>,
}

/// A local HTTP server recording every request, per path.
#[derive(Clone)]
pub(crate) struct Receiver {
    pub(crate) base: String,
    pub(crate) inbox: Arc<Mutex<Inbox>>,
}

impl Receiver {
    pub(crate) async fn start() -> Receiver {
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

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Answers every request to `path` with `reply` (after any scripted replies).
    pub(crate) fn answer(&self, path: &str, reply: Reply) {
        self.inbox
            .lock()
            .unwrap()
            .answers
            .insert(path.to_string(), reply);
    }

    /// Answers the next requests to `path` with `replies`, in order.
    pub(crate) fn script(&self, path: &str, replies: &[Reply]) {
        self.inbox
            .lock()
            .unwrap()
            .scripts
            .insert(path.to_string(), replies.iter().copied().collect());
    }

    pub(crate) fn requests(&self, path: &str) -> Vec<Received> {
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
    pub(crate) async fn wait_for(&self, path: &str, n: usize) -> Vec<Received> {
        eventually(&format!("{n} request(s) to {path}"), async || {
            let got = self.requests(path);
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

pub(crate) async fn receive(
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
    let mut response = (
        StatusCode::from_u16(reply.status).expect("valid status"),
        reply.body,
    )
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
pub(crate) async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
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

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// An event happening now.
pub(crate) fn event(id: &str, event_type: &str, attrs: Value) -> Value {
    json!({"id": id, "type": event_type, "ts": now_ms(), "attrs": attrs})
}

pub(crate) fn ndjson(events: &[Value]) -> String {
    events.iter().map(|e| format!("{e}\n")).collect()
}

pub(crate) fn error_field(body: &Value) -> &str {
    body["error"]["field"].as_str().unwrap_or_default()
}

pub(crate) async fn event_count(server: &Tidemark, key: &str) -> u64 {
    let (status, stats) = server.get(key, "/v1/stats").await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    stats["events"].as_u64().expect("events count")
}

/// The value of the sample `name` (name and labels exactly as exposed).
pub(crate) fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|value| value.split_whitespace().next())
            .and_then(|value| value.parse().ok())
    })
}
