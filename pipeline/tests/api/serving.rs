//! What the server does with hostile or careless clients, whatever the route: keys that left
//! the configuration, oversized and dripping requests, failed-login floods, and SIGTERM while a
//! request is half sent. Each test runs its own `tidemark serve` with the configuration it
//! needs, restarted on the same data directory where the test says so.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{DEADLINE, event, free_port, ndjson};

const KEY_OLD: &str = "serving-old-key-0123456789";
const KEY_NEW: &str = "serving-new-key-0123456789";
const KEY_B: &str = "serving-key-of-b-0123456789";

/// A `tidemark serve` on a data directory that outlives restarts.
struct Process {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    pg_port: u16,
    http: reqwest::Client,
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                let log = std::fs::read_to_string(self.dir.join("tidemark.log"));
                eprintln!("---- tidemark server log ----\n{}", log.unwrap_or_default());
            }
        }
    }
}

impl Process {
    fn new(dir: &Path) -> Process {
        Process {
            child: None,
            dir: dir.to_path_buf(),
            port: free_port(),
            pg_port: free_port(),
            http: connectors::http::client_builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client"),
        }
    }

    /// Starts the server with `server` (the `[server]` lines besides `listen`) and `tenants`
    /// (TOML), and waits until it is healthy.
    async fn start(&mut self, server: &str, tenants: &str) {
        let config = format!(
            "data_dir = \"{data}\"\n\n[server]\nlisten = \"127.0.0.1:{port}\"\n{server}\n\n\
             [dashboard]\npgwire_listen = \"127.0.0.1:{pg_port}\"\n\n{tenants}\n",
            data = self.dir.join("data").display(),
            port = self.port,
            pg_port = self.pg_port,
        );
        let path = self.dir.join("tidemark.toml");
        std::fs::write(&path, config).expect("write config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tidemark.log"))
            .expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_tidemark"));
        command
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TIDEMARK_") {
                command.env_remove(name);
            }
        }
        self.child = Some(command.spawn().expect("start tidemark serve"));
        let deadline = Instant::now() + DEADLINE;
        loop {
            let health = self
                .http
                .get(format!("{}/healthz", self.base()))
                .send()
                .await;
            if health.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("tidemark serve exited with {status} before it was healthy");
            }
            assert!(Instant::now() < deadline, "tidemark never became healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn get(&self, key: &str, path: &str) -> (StatusCode, Option<String>, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base()))
            .bearer_auth(key)
            .send()
            .await
            .expect("request");
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.json().await.unwrap_or(Value::Null);
        (status, retry_after, body)
    }

    async fn pg_login(&self, user: &str, password: &str) -> Result<(), String> {
        let connected = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.pg_port)
            .user(user)
            .password(password)
            .dbname("tidemark")
            .connect(tokio_postgres::NoTls)
            .await;
        match connected {
            Ok(_) => Ok(()),
            Err(e) => Err(e
                .as_db_error()
                .map(|db| format!("{} {}", db.code().code(), db.message()))
                .unwrap_or_else(|| e.to_string())),
        }
    }

    /// Opens a raw connection and writes `bytes`.
    async fn raw(&self, bytes: &[u8]) -> TcpStream {
        let mut socket = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect");
        socket.write_all(bytes).await.expect("write");
        socket
    }
}

fn tenant(id: &str, key: &str, previous: &[&str]) -> String {
    format!("[[tenants]]\nid = \"{id}\"\napi_key = \"{key}\"\nprevious_api_keys = {previous:?}\n")
}

/// Reads until the peer closes (or `limit` passes); the text read.
async fn read_until_closed(socket: &mut TcpStream, limit: Duration) -> Result<String, String> {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(String::from_utf8_lossy(&answer).into_owned()),
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {
                return Err(format!(
                    "still open after {limit:?}; read so far: {:?}",
                    String::from_utf8_lossy(&answer)
                ));
            }
        }
    }
}

/// After a restart, keys and tenants that left the configuration stop working at once over
/// HTTP and pgwire; `previous_api_keys` keeps an old key valid during a rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_follow_the_configuration() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Process::new(dir.path());
    let both = format!(
        "{}\n{}",
        tenant("shop-a", KEY_OLD, &[]),
        tenant("shop-b", KEY_B, &[])
    );
    server.start("", &both).await;
    for key in [KEY_OLD, KEY_B] {
        assert_eq!(server.get(key, "/v1/rules").await.0, StatusCode::OK);
    }
    server.pg_login("shop-b", KEY_B).await.expect("b logs in");
    server.kill();

    // Rotation: the new key is the key, the old one stays valid beside it; shop-b is removed.
    server
        .start("", &tenant("shop-a", KEY_NEW, &[KEY_OLD]))
        .await;
    for key in [KEY_NEW, KEY_OLD] {
        assert_eq!(
            server.get(key, "/v1/rules").await.0,
            StatusCode::OK,
            "{key}"
        );
    }
    server
        .pg_login("shop-a", KEY_OLD)
        .await
        .expect("old key during the grace period");
    let (status, _, body) = server.get(KEY_B, "/v1/rules").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "removed tenant: {body}");
    let refused = server
        .pg_login("shop-b", KEY_B)
        .await
        .expect_err("removed tenant");
    assert!(refused.starts_with("28P01"), "{refused}");
    server.kill();

    // The rotation ends: only the new key works.
    server.start("", &tenant("shop-a", KEY_NEW, &[])).await;
    assert_eq!(server.get(KEY_NEW, "/v1/rules").await.0, StatusCode::OK);
    let (status, _, body) = server.get(KEY_OLD, "/v1/rules").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "old key: {body}");
    let refused = server
        .pg_login("shop-a", KEY_OLD)
        .await
        .expect_err("old key");
    assert!(refused.starts_with("28P01"), "{refused}");
    server.pg_login("shop-a", KEY_NEW).await.expect("new key");
}

/// Oversized heads and bodies are refused at once; a client dripping its head or body, or
/// idling on a keep-alive connection, is cut off; the server keeps serving others throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_slow_requests_are_cut_off() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Process::new(dir.path());
    server
        .start(
            "header_timeout = \"1s\"\nbody_timeout = \"2s\"\nmax_header_bytes = 16384\n\
             max_body_bytes = 1048576",
            &tenant("shop-a", KEY_NEW, &[]),
        )
        .await;

    // A 200 KB header: 431.
    let head = format!(
        "GET /v1/rules HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    let mut socket = server.raw(head.as_bytes()).await;
    let answer = read_until_closed(&mut socket, Duration::from_secs(10))
        .await
        .expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    // A declared 200 MB body on any route: 413 without sending a byte of it.
    let head = format!(
        "PUT /v1/secrets/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY_NEW}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        200 * 1024 * 1024
    );
    let mut socket = server.raw(head.as_bytes()).await;
    let answer = read_until_closed(&mut socket, Duration::from_secs(10))
        .await
        .expect("answered without the body");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("max_body_bytes"), "{answer}");

    // A head dripped one byte at a time is dropped after the header timeout.
    let mut socket = server.raw(b"POST /v1/events HTTP/1.1\r\n").await;
    let started = Instant::now();
    let mut closed = false;
    for byte in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if socket.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        let mut probe = [0u8; 256];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(1), socket.read(&mut probe)).await
        {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "a dripping head was held for {:?}",
        started.elapsed()
    );

    // A body dripped slower than the body timeout allows: 408.
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY_NEW}\r\n\
         Content-Length: 1000\r\n\r\n"
    );
    let mut socket = server.raw(head.as_bytes()).await;
    let dripping = async {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if socket.write_all(b" ").await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(4), dripping).await;
    let answer = read_until_closed(&mut socket, Duration::from_secs(10))
        .await
        .expect("answered");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // An idle keep-alive connection is closed too.
    let mut socket = server.raw(b"").await;
    read_until_closed(&mut socket, Duration::from_secs(10))
        .await
        .expect("idle connection closed");

    // Through all of it, other clients are served.
    assert_eq!(server.get(KEY_NEW, "/v1/rules").await.0, StatusCode::OK);
}

/// A client failing to authenticate is refused after the configured number of failures — over
/// HTTP and pgwire together, and with a right key as well, so the refusal tells nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_throttled() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Process::new(dir.path());
    server
        .start(
            "auth_failures_per_minute = 5",
            &tenant("shop-a", KEY_NEW, &[]),
        )
        .await;
    for i in 0..3 {
        let (status, _, _) = server
            .get(&format!("wrong-key-number-{i:04}"), "/v1/rules")
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    for _ in 0..2 {
        let refused = server
            .pg_login("shop-a", "wrong-password-0123456789")
            .await
            .expect_err("wrong password");
        assert!(refused.starts_with("28P01"), "{refused}");
    }
    // Five failures from this address: the right key is now refused too, over both protocols.
    let (status, retry_after, body) = server.get(KEY_NEW, "/v1/rules").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "too_many_failed_logins", "{body}");
    let seconds: u64 = retry_after.expect("Retry-After").parse().expect("seconds");
    assert!((1..=60).contains(&seconds), "{seconds}");
    let refused = server
        .pg_login("shop-a", KEY_NEW)
        .await
        .expect_err("throttled");
    assert!(refused.starts_with("28000"), "{refused}");
    assert!(refused.contains("too many failed logins"), "{refused}");
    // Unauthenticated routes are not throttled.
    let health = server
        .http
        .get(format!("{}/healthz", server.base()))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
}

/// SIGTERM with a request half sent: the server stops within the grace period, and every
/// event it acknowledged before is there after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_within_the_grace_period() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Process::new(dir.path());
    let tenants = tenant("shop-a", KEY_NEW, &[]);
    server
        .start("shutdown_grace = \"1s\"\nbody_timeout = \"5m\"", &tenants)
        .await;
    let events: Vec<Value> = (0..50)
        .map(|i| event(&format!("e{i}"), "order", json!({"amount": i})))
        .collect();
    let response = server
        .http
        .post(format!("{}/v1/events", server.base()))
        .bearer_auth(KEY_NEW)
        .body(ndjson(&events))
        .send()
        .await
        .expect("post events");
    assert_eq!(response.status(), StatusCode::OK);

    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY_NEW}\r\n\
         Content-Length: 1000\r\n\r\n{{\"id\": \"half"
    );
    let _half_sent = server.raw(head.as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut child = server.child.take().expect("running");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(killed.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("still running 15 s after SIGTERM with a 1 s grace period");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}");

    server.start("", &tenants).await;
    let (_, _, stats) = server.get(KEY_NEW, "/v1/stats").await;
    assert_eq!(stats["events"], 50, "{stats}");
}
