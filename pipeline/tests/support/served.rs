//! What the tests that run `tidemark serve` as a process share: the process (killed when
//! dropped), free loopback ports, waiting for health, and a webhook receiver that records every
//! delivery by its `webhook-id`.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

/// A running `tidemark serve`; killed (SIGKILL) and reaped when dropped.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[path = "ports.rs"]
mod ports;
pub use ports::free_port;

/// Starts `tidemark serve --config <config>`, its log appended to `log`.
pub fn serve(config: &Path, log: &Path) -> Server {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("tidemark starts");
    Server(child)
}

/// Waits until the server at `base` answers `/healthz`; fails with `log` after a minute.
pub async fn wait_healthy(client: &reqwest::Client, base: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{base} did not become healthy; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every delivery a receiver saw: webhook-id → how many times, and the payloads.
#[derive(Default)]
pub struct Received {
    pub count: HashMap<String, usize>,
    pub payloads: BTreeMap<String, Value>,
}

/// A webhook receiver on loopback: its URL, and what it received.
pub async fn start_receiver() -> (String, Arc<Mutex<Received>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let received: Arc<Mutex<Received>> = Default::default();
    let seen = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let seen = seen.clone();
            async move {
                let id = headers["webhook-id"].to_str().unwrap().to_string();
                let payload: Value = serde_json::from_slice(&body).unwrap();
                let mut r = seen.lock().unwrap();
                *r.count.entry(id.clone()).or_default() += 1;
                r.payloads.insert(id, payload);
                StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}
