//! The server on a PostgreSQL store (`store = "postgres://…"`): events, rules and deliveries
//! live in the database, survive a SIGKILL, and are delivered once.
//!
//! These tests need a PostgreSQL server: `POSTGRES_URL` names a database on it that
//! may create databases (the test command starts one; by hand:
//! `eval "$(bash .ci/postgres.sh start)"`). Each test works in a database of its own.

use std::process::{Command, Stdio};
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;

use crate::harness::*;

/// A database of its own on the test server, dropped by [`ScratchDatabase::drop_now`].
struct ScratchDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    async fn create(test: &str) -> ScratchDatabase {
        let admin_url = std::env::var("POSTGRES_URL").unwrap_or_else(|_| {
            panic!(
                "POSTGRES_URL is not set: this test needs a PostgreSQL server. The \
                 test command starts one; by hand: eval \"$(bash .ci/postgres.sh start)\""
            )
        });
        let name = format!("tidemark_api_{test}_{}", std::process::id());
        execute(
            &admin_url,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .await;
        execute(&admin_url, &format!("CREATE DATABASE {name}")).await;
        let url = match admin_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("POSTGRES_URL has no database part: {admin_url}"),
        };
        ScratchDatabase {
            admin_url,
            name,
            url,
        }
    }

    /// One number the database answers `sql` with.
    async fn count(&self, sql: &str) -> i64 {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect to the scratch database");
        tokio::spawn(connection);
        client
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    async fn drop_now(self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        execute(&self.admin_url, &sql).await;
    }
}

async fn execute(url: &str, sql: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(connection);
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_on_a_postgres_store_survive_a_kill_and_are_delivered_once() {
    let database = ScratchDatabase::create("alerts").await;
    let mut server = Tidemark::start_with(Settings {
        store: Some(database.url.clone()),
        ..Settings::default()
    })
    .await;
    let receiver = Receiver::start().await;
    server
        .webhook(KEY_A, "hook", &receiver.url("/hook"), None)
        .await;
    server
        .rule(
            KEY_A,
            json!({"id": "big", "name": "Big orders", "kind": "match", "event_type": "order",
                "filter": {"attr": "amount", "op": ">=", "value": 100000},
                "template": "Order {{ event.id }}", "destinations": ["hook"]}),
        )
        .await;
    server
        .send_events(
            KEY_A,
            &[
                event("o1", "order", json!({"amount": 250000})),
                event("o2", "order", json!({"amount": 5000})),
                event("o3", "order", json!({"amount": 100000})),
            ],
        )
        .await;
    for id in ["o1", "o3"] {
        let notification = server.notification_for(KEY_A, "big", id).await;
        server
            .settled(KEY_A, notification["id"].as_str().unwrap(), "delivered")
            .await;
    }
    assert_eq!(receiver.wait_for("/hook", 2).await.len(), 2);
    // Everything is in the database, nothing in a SQLite file beside the data directory.
    assert_eq!(database.count("SELECT count(*) FROM events").await, 3);
    assert_eq!(
        database
            .count("SELECT count(*) FROM deliveries WHERE status = 'delivered'")
            .await,
        2
    );
    assert!(!server._dir.path().join("data/tidemark.db").exists());

    server.restart(|_| {}).await;
    // The rule and the destination came back from the database; o1 again is a duplicate.
    let (status, body) = server
        .post_text(
            KEY_A,
            "/v1/events",
            &ndjson(&[
                event("o1", "order", json!({"amount": 250000})),
                event("o4", "order", json!({"amount": 700000})),
            ]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["accepted"], &body["duplicates"]),
        (&json!(1), &json!(1))
    );
    let o4 = server.notification_for(KEY_A, "big", "o4").await;
    server
        .settled(KEY_A, o4["id"].as_str().unwrap(), "delivered")
        .await;
    // Give a second delivery of anything a moment to show up: there is none.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ids: Vec<String> = receiver
        .requests("/hook")
        .iter()
        .map(|r| r.webhook_id())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "one POST per matching event across the kill");
    assert_eq!(receiver.requests("/hook").len(), 3);
    assert_eq!(event_count(&server, KEY_A).await, 4);
    assert_eq!(server.notifications(KEY_A, "rule_id=big").await.len(), 3);
    drop(server);
    database.drop_now().await;
}

/// A database that is not there: the server says which store it could not open (without the
/// password) and exits, instead of starting without its data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_store_that_cannot_be_reached_stops_the_server_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let settings = Settings {
        store: Some(format!(
            "postgres://tidemark:hunter2@127.0.0.1:{}/tidemark?connect_timeout=2",
            free_port()
        )),
        ..Settings::default()
    };
    let config = dir.path().join("tidemark.toml");
    std::fs::write(&config, settings.toml(dir.path(), port)).expect("write config");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env_remove("TIDEMARK_STORE")
            .stdin(Stdio::null())
            .output()
            .expect("run tidemark serve")
    })
    .await
    .expect("join");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot open store postgres://tidemark:***@127.0.0.1"),
        "{stderr}"
    );
    assert!(stderr.contains("migrate schema"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the password leaked: {stderr}");
}
