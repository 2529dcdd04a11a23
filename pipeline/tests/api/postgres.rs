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
    // The pool and the writes show in /metrics.
    let (_, metrics) = server.metrics_text().await;
    assert_eq!(
        sample(&metrics, "tidemark_store_pool_max_connections"),
        Some(16.0),
        "{metrics}"
    );
    let in_use = sample(
        &metrics,
        "tidemark_store_pool_connections{state=\"in_use\"}",
    );
    let idle = sample(&metrics, "tidemark_store_pool_connections{state=\"idle\"}");
    assert!(
        in_use.unwrap_or(0.0) + idle.unwrap_or(0.0) >= 1.0,
        "{metrics}"
    );
    let writes = sample(&metrics, "tidemark_store_writes_total").unwrap_or(0.0);
    assert!(
        writes >= 4.0,
        "rules, events, notifications, deliveries: {metrics}"
    );
    assert!(
        sample(&metrics, "tidemark_store_write_lock_wait_seconds_total").is_some(),
        "{metrics}"
    );

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

/// A PostgreSQL server of one test's own (`.ci/postgres.sh`), to stop and start under a running
/// Tidemark; stopped and removed when dropped.
struct PrivateServer {
    env: Vec<(String, String)>,
    url: String,
}

impl PrivateServer {
    const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../.ci/postgres.sh");

    fn start() -> PrivateServer {
        let output = Command::new("bash")
            .args([Self::SCRIPT, "start"])
            .output()
            .expect("run .ci/postgres.sh start");
        assert!(
            output.status.success(),
            "cannot start a PostgreSQL server: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let env: Vec<(String, String)> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.strip_prefix("export "))
            .flat_map(|line| line.split_whitespace())
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let url = env
            .iter()
            .find(|(k, _)| k == "POSTGRES_URL")
            .map(|(_, v)| v.clone())
            .expect("POSTGRES_URL from .ci/postgres.sh start");
        PrivateServer { env, url }
    }

    /// `pause` (a fast shutdown, as in a restart), `resume` or `stop`.
    fn run(&self, action: &str) {
        let status = Command::new("bash")
            .args([Self::SCRIPT, action])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .status()
            .expect("run .ci/postgres.sh");
        assert!(status.success(), ".ci/postgres.sh {action} failed");
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.run("stop");
    }
}

/// The database server is stopped under a running Tidemark and started again: requests answer
/// 503 with `Retry-After` meanwhile, the server stays up, nothing acknowledged is lost, and it
/// carries on by itself afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_answers_503_and_the_server_recovers_without_a_restart() {
    let database = tokio::task::spawn_blocking(PrivateServer::start)
        .await
        .expect("join");
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
            json!({"id": "all", "kind": "match", "event_type": "order",
                "template": "Order {{ event.id }}", "destinations": ["hook"]}),
        )
        .await;
    server
        .send_events(KEY_A, &[event("before", "order", json!({}))])
        .await;
    receiver.wait_for("/hook", 1).await;

    database.run("pause");
    let body = ndjson(&[event("during", "order", json!({}))]);
    let refused = eventually(
        "events refused with 503 while the database is down",
        async || {
            let response = server
                .http
                .post(format!("{}/v1/events", server.base))
                .bearer_auth(KEY_A)
                .body(body.clone())
                .send()
                .await
                .ok()?;
            (response.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(response)
        },
    )
    .await;
    assert_eq!(
        refused.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    let refused: serde_json::Value = refused.json().await.expect("a JSON error");
    assert_eq!(refused["error"]["code"], "store_unavailable", "{refused}");
    let (status, listing) = server.get(KEY_A, "/v1/rules").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{listing}");
    assert!(
        matches!(server.child.try_wait(), Ok(None)),
        "the server stays up while the database is down"
    );

    database.run("resume");
    // Back without a restart: the refused event is sent again and goes through.
    eventually("events accepted again", async || {
        let (status, _) = server.post_text(KEY_A, "/v1/events", &body).await;
        (status == StatusCode::OK).then_some(())
    })
    .await;
    let during = server.notification_for(KEY_A, "all", "during").await;
    server
        .settled(KEY_A, during["id"].as_str().unwrap(), "delivered")
        .await;
    assert_eq!(event_count(&server, KEY_A).await, 2);
    assert_eq!(receiver.wait_for("/hook", 2).await.len(), 2);
    let (status, listing) = server.get(KEY_A, "/v1/rules").await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    drop(server);
    tokio::task::spawn_blocking(move || drop(database))
        .await
        .expect("join");
}

/// An embedded installation moves to PostgreSQL with `tidemark store migrate-from-sqlite`:
/// after the move the server on the database has its rules, destinations, delivery history and
/// events, and its secrets still open with the same key file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_installation_moves_to_postgres_with_its_history_and_secrets() {
    let database = ScratchDatabase::create("migrate").await;
    let mut server = Tidemark::start().await;
    let receiver = Receiver::start().await;
    let (status, body) = server
        .put(KEY_A, "/v1/secrets/shop-hook", json!({ "value": SECRET }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let destination = json!({"id": "hook", "kind": "webhook",
        "config": {"url": receiver.url("/hook"), "secret": {"secret": "shop-hook"}}});
    let (status, body) = server.post(KEY_A, "/v1/destinations", destination).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    server
        .rule(
            KEY_A,
            json!({"id": "all", "kind": "match", "event_type": "order",
                "template": "Order {{ event.id }}", "destinations": ["hook"]}),
        )
        .await;
    server
        .send_events(KEY_A, &[event("o1", "order", json!({}))])
        .await;
    let o1 = server.notification_for(KEY_A, "all", "o1").await;
    server
        .settled(KEY_A, o1["id"].as_str().unwrap(), "delivered")
        .await;

    let url = database.url.clone();
    server
        .restart(move |data| {
            let output = Command::new(env!("CARGO_BIN_EXE_tidemark"))
                .args(["store", "migrate-from-sqlite", "--from"])
                .arg(data)
                .args(["--to", &url])
                .env_remove("TIDEMARK_STORE")
                .output()
                .expect("run tidemark store migrate-from-sqlite");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success(), "{stderr}");
            let summary: serde_json::Value =
                serde_json::from_slice(&output.stdout).expect("a JSON summary");
            assert_eq!(summary["tables"]["events"], 1, "{summary}");
            assert_eq!(summary["tables"]["rules"], 1, "{summary}");
            assert_eq!(summary["tables"]["secrets"], 1, "{summary}");
            assert_eq!(summary["tables"]["deliveries"], 1, "{summary}");
            // From now on the server keeps its state in the database.
            let config = data.parent().expect("test dir").join("tidemark.toml");
            let text = std::fs::read_to_string(&config).expect("read config");
            std::fs::write(&config, format!("store = {url:?}\n{text}")).expect("write config");
            std::fs::remove_file(data.join("tidemark.db")).expect("remove the SQLite file");
        })
        .await;

    assert_eq!(event_count(&server, KEY_A).await, 1);
    let (status, rule) = server.get(KEY_A, "/v1/rules/all").await;
    assert_eq!(status, StatusCode::OK, "{rule}");
    let (status, history) = server
        .get(
            KEY_A,
            &format!("/v1/notifications/{}", o1["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    assert_eq!(history["deliveries"][0]["status"], "delivered", "{history}");
    // A new event is matched and signed with the secret stored before the move.
    server
        .send_events(KEY_A, &[event("o2", "order", json!({}))])
        .await;
    let o2 = server.notification_for(KEY_A, "all", "o2").await;
    server
        .settled(KEY_A, o2["id"].as_str().unwrap(), "delivered")
        .await;
    let requests = receiver.wait_for("/hook", 2).await;
    let signer = connectors::sinks::webhook::WebhookSigner::new(SECRET).expect("secret");
    for request in &requests {
        signer
            .verify(&request.headers, &request.body, Duration::from_secs(300))
            .expect("signed with the migrated secret");
    }
    assert!(database.count("SELECT count(*) FROM events").await == 2);
    drop(server);
    database.drop_now().await;
}

/// Three servers on one database, events posted round-robin to all three while the running one
/// is SIGKILLed and started again: the servers standing by forward what they get to the running
/// one, the next one takes over by itself, every acknowledged event is in the log once, every
/// notification reaches the receiver (by id: at least once, none missing, none made twice), and
/// a report due every minute is sent once per run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_on_one_database_take_over_from_a_killed_one_and_lose_nothing() {
    const EVENTS: usize = 300;
    const BATCH: usize = 10;
    let database = ScratchDatabase::create("three").await;
    let on_database = || Settings {
        store: Some(database.url.clone()),
        ..Settings::default()
    };
    let mut servers = vec![Tidemark::start_with(on_database()).await];
    for _ in 0..2 {
        servers.push(Tidemark::spawn_with(on_database()));
    }
    for standby in &servers[1..] {
        eventually("a server standing by", async || {
            standby.log_text().contains("standing by").then_some(())
        })
        .await;
        let (status, health) = standby.get(KEY_A, "/healthz").await;
        assert_eq!(
            (status, &health["role"]),
            (StatusCode::OK, &json!("standby"))
        );
    }
    // API calls made on a server standing by reach the running one.
    let receiver = Receiver::start().await;
    servers[1]
        .webhook(KEY_A, "hook", &receiver.url("/hook"), None)
        .await;
    servers[2]
        .rule(
            KEY_A,
            json!({"id": "all", "kind": "match", "event_type": "order",
                "template": "Order {{ event.id }}", "destinations": ["hook"]}),
        )
        .await;
    // A report due every minute, made on a server standing by: its runs come from whichever
    // server runs when they are due.
    servers[1]
        .webhook(KEY_A, "reports", &receiver.url("/reports"), None)
        .await;
    let (status, body) = servers[2]
        .post(
            KEY_A,
            "/v1/reports",
            json!({"id": "minutely", "name": "Every minute", "schedule": {"cron": "* * * * *"},
                "title": "Minute", "destinations": ["reports"],
                "blocks": [{"name": "one", "chart": "none", "sql": "SELECT 1 AS one"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // The producer: batches round-robin over the three, each retried until acknowledged.
    let mut acknowledged = 0;
    let mut next = 0usize;
    for batch in 0..EVENTS / BATCH {
        if batch == 10 {
            // The running server dies mid-stream.
            let _ = servers[0].child.kill();
            let _ = servers[0].child.wait();
        }
        if batch == 20 {
            // ... and comes back, to stand by behind the new one.
            servers[0] = Tidemark::spawn_with(on_database());
        }
        let events: Vec<_> = (batch * BATCH..(batch + 1) * BATCH)
            .map(|n| event(&format!("o{n}"), "order", json!({})))
            .collect();
        let body = ndjson(&events);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let server = &servers[next % servers.len()];
            next += 1;
            let answer = server
                .http
                .post(format!("{}/v1/events", server.base))
                .bearer_auth(KEY_A)
                .body(body.clone())
                .send()
                .await;
            if let Ok(answer) = answer
                && answer.status() == StatusCode::OK
            {
                let answer: serde_json::Value = answer.json().await.expect("JSON");
                let counted = answer["accepted"].as_u64().unwrap_or(0)
                    + answer["duplicates"].as_u64().unwrap_or(0);
                assert_eq!(counted, BATCH as u64, "{answer}");
                acknowledged += BATCH;
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "batch {batch} was never acknowledged"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(acknowledged, EVENTS);

    // Every acknowledged event is in the log once.
    assert_eq!(
        database.count("SELECT count(*) FROM events").await,
        EVENTS as i64
    );
    assert_eq!(
        database
            .count("SELECT count(DISTINCT id) FROM events")
            .await,
        EVENTS as i64
    );
    // Every notification reaches the receiver; each one exists once.
    let ids = eventually("every notification delivered", async || {
        let mut ids: Vec<String> = receiver
            .requests("/hook")
            .iter()
            .map(|r| r.webhook_id())
            .collect();
        ids.sort();
        ids.dedup();
        (ids.len() >= EVENTS).then_some(ids)
    })
    .await;
    assert_eq!(ids.len(), EVENTS, "one notification per event");
    assert_eq!(
        database
            .count("SELECT count(*) FROM notifications WHERE rule_id = 'all'")
            .await,
        EVENTS as i64
    );
    let mut matched: Vec<String> = receiver
        .requests("/hook")
        .iter()
        .map(|r| {
            r.json()["event"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    matched.sort();
    matched.dedup();
    assert_eq!(matched.len(), EVENTS, "every event's notification arrived");
    // The report's due runs, made by the server that took over: each delivered, once. (The
    // next whole minute may be up to a minute away.)
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let runs = loop {
        let (status, body) = servers[1].get(KEY_A, "/v1/reports/minutely/runs").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let runs: Vec<serde_json::Value> = body["runs"].as_array().cloned().unwrap_or_default();
        let finished = !runs.is_empty()
            && runs.iter().all(|run| {
                run["deliveries"]
                    .as_array()
                    .is_some_and(|d| !d.is_empty() && d.iter().all(|d| d["status"] == "delivered"))
            });
        if finished {
            break runs;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no run delivered: {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let reported: Vec<String> = receiver
        .requests("/reports")
        .iter()
        .map(|r| r.webhook_id())
        .collect();
    for run in &runs {
        assert_eq!(run["trigger"], "schedule", "{run}");
        let id = run["deliveries"][0]["notification_id"]
            .as_str()
            .unwrap_or_default();
        let sent = reported.iter().filter(|r| *r == id).count();
        assert_eq!(sent, 1, "run {} sent {sent} times", run["run_id"]);
    }

    // Exactly one of the three runs now; the one killed and started again stands by.
    eventually("the restarted server standing by", async || {
        servers[0].log_text().contains("standing by").then_some(())
    })
    .await;
    let running: Vec<bool> = {
        let mut running = Vec::new();
        for server in &servers {
            let (status, health) = server.get(KEY_A, "/healthz").await;
            running.push(status == StatusCode::OK && health["role"] != json!("standby"));
        }
        running
    };
    assert_eq!(running.iter().filter(|r| **r).count(), 1, "{running:?}");
    assert!(!running[0], "{running:?}");
    drop(servers);
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
