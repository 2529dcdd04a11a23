//! The Fluvio source against a real Fluvio cluster (the test command starts one and exports
//! `FLUVIO_SC`; by hand: `eval "$(bash .ci/fluvio.sh start)"`). `tidemark serve` runs as a
//! child process so it can be killed with SIGKILL; topics are produced with the official client.
//!
//! - 100,000 events over 2 partitions are logged each once, each partition in offset order;
//! - SIGKILLs while a producer streams: the log holds exactly the produced events and every
//!   matching notification reaches a real receiver once by id;
//! - malformed records are dead-lettered with their offsets, the good ones around them logged;
//! - a cluster stopped and started again under a running server: the source recovers by itself;
//! - events in on one topic, their notifications out on another (a `fluvio` destination), keyed
//!   by notification id; a destination naming the source's topic or another tenant's is refused.

#[path = "support/served.rs"]
mod served;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use connectors::store::Store;
use fluvio::metadata::topic::TopicSpec;
use fluvio::{Fluvio, FluvioClusterConfig, Offset, RecordKey};
use futures::StreamExt;
use serde_json::{Value, json};

use served::{Server, free_port};

const KEY: &str = "fluvio-test-key-0001";
const OTHER_KEY: &str = "fluvio-test-key-0002";

/// The cluster's controller address, or a failure saying how to start one.
fn fluvio_sc() -> String {
    std::env::var("FLUVIO_SC").unwrap_or_else(|_| {
        panic!(
            "FLUVIO_SC is not set: these tests need a Fluvio cluster. The test command starts one; \
             by hand run `eval \"$(bash .ci/fluvio.sh start)\"` from the repository root"
        )
    })
}

async fn connect(sc: &str) -> Fluvio {
    Fluvio::connect_with_config(&FluvioClusterConfig::new(sc))
        .await
        .expect("connect to Fluvio")
}

/// A fresh topic with `partitions` partitions, named after the test.
async fn create_topic(fluvio: &Fluvio, prefix: &str, partitions: u32) -> String {
    let name = format!(
        "{prefix}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 1_000_000_000
    );
    fluvio
        .admin()
        .await
        .create(
            name.clone(),
            false,
            TopicSpec::new_computed(partitions, 1, None),
        )
        .await
        .expect("create topic");
    // The SPU takes a moment to host a new partition.
    let deadline = Instant::now() + Duration::from_secs(30);
    for p in 0..partitions {
        loop {
            let producer = fluvio.topic_producer(name.clone()).await;
            let consumer = fluvio
                .consumer_with_config(
                    fluvio::consumer::ConsumerConfigExtBuilder::default()
                        .topic(name.clone())
                        .partition(p)
                        .offset_start(Offset::beginning())
                        .disable_continuous(true)
                        .build()
                        .unwrap(),
                )
                .await;
            if producer.is_ok() && consumer.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "topic {name} never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    name
}

/// What a producer stored: partition → [(offset, event id)], from the offsets the cluster
/// acknowledged for each record (not read back: the consumer is what is under test).
type Produced = BTreeMap<u32, Vec<(i64, String)>>;

/// Produces `events` orders (event time `now_ms`) spread over the partitions by key, flushing
/// and pausing `pause` every `burst` records; returns where each landed.
async fn produce_orders(
    fluvio: &Fluvio,
    topic: &str,
    events: std::ops::Range<usize>,
    now_ms: i64,
    burst: usize,
    pause: Duration,
) -> Produced {
    let producer = fluvio
        .topic_producer(topic.to_owned())
        .await
        .expect("producer");
    let mut sent = Vec::with_capacity(events.len());
    for n in events {
        let output = producer
            .send(format!("k{}", n % 97), order(n, now_ms))
            .await
            .expect("produce");
        sent.push((format!("e{n:06}"), output));
        if n % burst == burst - 1 {
            producer.flush().await.expect("flush");
            tokio::time::sleep(pause).await;
        }
    }
    producer.flush().await.expect("flush");
    let mut produced = Produced::new();
    for (id, output) in sent {
        let stored = output.wait().await.expect("record stored");
        produced
            .entry(stored.partition_id())
            .or_default()
            .push((stored.offset(), id));
    }
    for records in produced.values_mut() {
        records.sort_unstable();
    }
    produced
}

/// A server's configuration and where it lives.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    base: String,
}

impl Setup {
    /// A server reading `topic` for tenant `shop` (plus `sources` appended verbatim).
    fn new(extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("tidemark.toml");
        std::fs::write(
            &config,
            format!(
                r#"data_dir = "{data}"
[server]
listen = "127.0.0.1:{port}"
[engine]
workers = 2
tick = "20ms"
[sender]
poll = "20ms"
retry_base = "50ms"
[outbound]
allow_private_networks = ["127.0.0.1/32"]   # the receiver listens on loopback
[[tenants]]
id = "shop"
api_key = "{KEY}"
[[tenants]]
id = "other"
api_key = "{OTHER_KEY}"
{extra}
"#,
                data = dir.path().join("data").display()
            ),
        )
        .unwrap();
        Setup {
            base: format!("http://127.0.0.1:{port}"),
            dir,
            config,
        }
    }

    fn start(&self) -> Server {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("tidemark starts");
        Server(child)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The store, opened after the server stopped.
    fn store(&self) -> Arc<dyn Store> {
        connectors::store::open(self.dir.path().join("data").join("tidemark.db")).expect("store")
    }
}

fn client() -> reqwest::Client {
    connectors::http::client_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn healthz(client: &reqwest::Client, base: &str) -> Option<Value> {
    let response = client.get(format!("{base}/healthz")).send().await.ok()?;
    response.json().await.ok()
}

/// Waits until the source `name` has logged up to `ends` (partition → next offset).
async fn wait_logged(setup: &Setup, name: &str, ends: &BTreeMap<u32, i64>, within: Duration) {
    let client = client();
    let deadline = Instant::now() + within;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Some(health) = healthz(&client, &setup.base).await {
            let partitions = &health["sources"][name]["partitions"];
            if ends
                .iter()
                .all(|(p, end)| partitions[p.to_string()]["next_offset"].as_i64() == Some(*end))
            {
                return;
            }
            last = health;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "source {name} did not reach {ends:?}; last /healthz: {last}\nserver log:\n{}",
        setup.log()
    );
}

async fn wait_healthy(setup: &Setup) {
    let client = client();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if healthz(&client, &setup.base).await.is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not start:\n{}", setup.log());
}

fn source(sc: &str, topic: &str) -> String {
    format!(
        r#"[[sources.fluvio]]
endpoint = "{sc}"
topic = "{topic}"
tenant = "shop"
"#
    )
}

fn order(n: usize, now_ms: i64) -> String {
    // Every 7th order is big enough to match the test rule.
    let amount = if n.is_multiple_of(7) {
        2_000_000
    } else {
        10_000 + n as i64
    };
    json!({"id": format!("e{n:06}"), "type": "order", "ts": now_ms, "attrs": {"amount": amount}})
        .to_string()
}

/// The log's events as (id) in log order.
fn logged_ids(store: &dyn Store) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after = 0;
    loop {
        let page = store.events_after(after, 10_000).expect("read log");
        let Some(last) = page.last() else { break };
        after = last.seq;
        ids.extend(page.into_iter().map(|e| e.id));
    }
    ids
}

/// Every produced record's event id per partition, in offset order.
fn ids_by_partition(records: &Produced) -> BTreeMap<u32, Vec<String>> {
    records
        .iter()
        .map(|(p, records)| (*p, records.iter().map(|(_, id)| id.clone()).collect()))
        .collect()
}

fn ends(records: &Produced) -> BTreeMap<u32, i64> {
    records
        .iter()
        .map(|(p, r)| (*p, r.last().map_or(0, |(offset, _)| offset + 1)))
        .collect()
}

/// Checks the log holds each produced event once and each partition's events in offset order.
fn assert_logged_once_in_order(store: &dyn Store, by_partition: &BTreeMap<u32, Vec<String>>) {
    let logged = logged_ids(store);
    let produced: usize = by_partition.values().map(Vec::len).sum();
    let mut position: HashMap<&str, usize> = HashMap::new();
    for (i, id) in logged.iter().enumerate() {
        assert!(
            position.insert(id, i).is_none(),
            "event {id} is in the log twice"
        );
    }
    assert_eq!(
        logged.len(),
        produced,
        "the log holds {} events, {produced} were produced",
        logged.len()
    );
    for (partition, ids) in by_partition {
        let mut previous = None;
        for id in ids {
            let at = *position
                .get(id.as_str())
                .unwrap_or_else(|| panic!("event {id} of partition {partition} is not in the log"));
            assert!(
                previous.is_none_or(|p| p < at),
                "partition {partition}: {id} was logged before an earlier record"
            );
            previous = Some(at);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_events_on_two_partitions_are_logged_once_in_partition_order() {
    let sc = fluvio_sc();
    let fluvio = connect(&sc).await;
    let topic = create_topic(&fluvio, "orders", 2).await;
    let now = chrono::Utc::now().timestamp_millis();
    const EVENTS: usize = 100_000;
    let records = produce_orders(&fluvio, &topic, 0..EVENTS, now, EVENTS, Duration::ZERO).await;
    let by_partition = ids_by_partition(&records);
    assert!(
        by_partition.values().all(|ids| ids.len() > EVENTS / 4),
        "both partitions hold events"
    );

    let setup = Setup::new(&source(&sc, &topic));
    let server = setup.start();
    wait_logged(
        &setup,
        &format!("fluvio:{topic}"),
        &ends(&records),
        Duration::from_secs(300),
    )
    .await;
    let metrics = client()
        .get(format!("{}/metrics", setup.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "tidemark_source_records_total{{source=\"fluvio:{topic}\",partition=\"0\"}}"
        )),
        "{metrics}"
    );
    drop(server);
    assert_logged_once_in_order(setup.store().as_ref(), &by_partition);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_are_dead_lettered_with_their_offsets_and_the_stream_goes_on() {
    let sc = fluvio_sc();
    let fluvio = connect(&sc).await;
    let topic = create_topic(&fluvio, "mixed", 1).await;
    let now = chrono::Utc::now().timestamp_millis();
    let producer = fluvio
        .topic_producer(topic.clone())
        .await
        .expect("producer");
    let records: Vec<String> = vec![
        order(1, now),
        "{not json".into(),
        json!({"id": "no-type", "ts": now}).to_string(),
        order(2, now),
        format!(
            "{{\"id\":\"big\",\"type\":\"order\",\"ts\":{now},\"attrs\":{{\"note\":\"{}\"}}}}",
            "x".repeat(100_000)
        ),
        json!({"id": "elsewhere", "type": "order", "ts": now, "tenant": "other"}).to_string(),
        format!(
            "{}\n{}",
            order(3, now),
            json!({"id": "bad-ts", "type": "order", "ts": "yesterday"})
        ),
        order(4, now),
    ];
    for record in &records {
        producer
            .send(RecordKey::NULL, record.clone())
            .await
            .expect("produce");
    }
    producer.flush().await.expect("flush");

    let setup = Setup::new(&format!(
        "{}max_record_bytes = 65536\n",
        source(&sc, &topic)
    ));
    let _server = setup.start();
    wait_logged(
        &setup,
        &format!("fluvio:{topic}"),
        &BTreeMap::from([(0, 8)]),
        Duration::from_secs(60),
    )
    .await;
    let client = client();
    let page: Value = client
        .get(format!("{}/v1/sources/dead-letters", setup.base))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let letters = page["dead_letters"].as_array().expect("list");
    let offsets: Vec<i64> = letters
        .iter()
        .map(|d| d["offset"].as_i64().unwrap())
        .collect();
    assert_eq!(offsets, vec![1, 2, 4, 5, 6], "{page}");
    assert_eq!(letters[0]["raw_text"], "{not json");
    assert_eq!(letters[0]["topic"], topic.as_str());
    assert_eq!(letters[0]["partition"], 0);
    assert!(
        letters[1]["error"].as_str().unwrap().contains("type"),
        "{}",
        letters[1]
    );
    assert!(
        letters[2]["error"]
            .as_str()
            .unwrap()
            .contains("max_record_bytes"),
        "{}",
        letters[2]
    );
    assert_eq!(letters[2]["truncated"], true);
    assert_eq!(
        letters[2]["raw_bytes"].as_u64().unwrap() as usize,
        records[4].len()
    );
    assert!(
        letters[3]["error"]
            .as_str()
            .unwrap()
            .contains("'other' is not the tenant of this topic"),
        "{}",
        letters[3]
    );
    assert!(
        letters[4]["error"]
            .as_str()
            .unwrap()
            .starts_with("line 2: ts"),
        "{}",
        letters[4]
    );
    // The other tenant sees none of them.
    let other: Value = client
        .get(format!("{}/v1/sources/dead-letters", setup.base))
        .bearer_auth(OTHER_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(other["dead_letters"], json!([]));
    let stats: Value = client
        .get(format!("{}/v1/stats", setup.base))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["events"], 4, "{stats}");
}

/// Every delivery the receiver saw: webhook-id → (how many times, the matched event's id).
type Received = Arc<Mutex<HashMap<String, (usize, String)>>>;

async fn start_receiver() -> (String, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let received: Received = Default::default();
    let seen = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let seen = seen.clone();
            async move {
                let id = headers["webhook-id"].to_str().unwrap().to_string();
                let payload: Value = serde_json::from_slice(&body).unwrap();
                let event = payload["event"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                seen.lock().unwrap().entry(id).or_insert((0, event)).0 += 1;
                StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkills_while_a_producer_streams_lose_nothing_and_send_nothing_twice() {
    let sc = fluvio_sc();
    let fluvio = connect(&sc).await;
    let topic = create_topic(&fluvio, "killed", 2).await;
    let setup = Setup::new(&source(&sc, &topic));
    let (hook, received) = start_receiver().await;
    let client = client();
    let mut server = setup.start();
    wait_healthy(&setup).await;
    for (path, body) in [
        (
            "destinations",
            json!({"id": "hook", "kind": "webhook", "config": {"url": hook}}),
        ),
        (
            "rules",
            json!({"id": "big", "kind": "match", "event_type": "order",
                          "filter": {"attr": "amount", "op": ">=", "value": 1_000_000}, "destinations": ["hook"]}),
        ),
    ] {
        let created = client
            .post(format!("{}/v1/{path}", setup.base))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    }

    // The producer streams 20,000 events in 40 bursts; the server is killed mid-stream.
    const EVENTS: usize = 20_000;
    const KILLS: usize = 6;
    let now = chrono::Utc::now().timestamp_millis();
    let producing = {
        let fluvio = connect(&sc).await;
        let topic = topic.clone();
        tokio::spawn(async move {
            produce_orders(
                &fluvio,
                &topic,
                0..EVENTS,
                now,
                500,
                Duration::from_millis(40),
            )
            .await
        })
    };
    for kill in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(150 + 90 * kill as u64)).await;
        server.0.kill().unwrap();
        server.0.wait().unwrap();
        server = setup.start();
        wait_healthy(&setup).await;
    }
    let records = producing.await.unwrap();
    wait_logged(
        &setup,
        &format!("fluvio:{topic}"),
        &ends(&records),
        Duration::from_secs(120),
    )
    .await;
    let matching = (0..EVENTS).filter(|n| n.is_multiple_of(7)).count();
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.lock().unwrap().len() < matching && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give a stray duplicate the chance to show up before judging.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(server);
    let received = received.lock().unwrap().clone();
    assert_eq!(
        received.len(),
        matching,
        "one notification id per matching event"
    );
    let notified: std::collections::HashSet<&str> =
        received.values().map(|(_, event)| event.as_str()).collect();
    let expected: std::collections::HashSet<String> = (0..EVENTS)
        .filter(|n| n.is_multiple_of(7))
        .map(|n| format!("e{n:06}"))
        .collect();
    assert_eq!(
        notified,
        expected.iter().map(String::as_str).collect(),
        "every matching event notified, no other"
    );
    // A delivery the receiver acknowledged just before a kill, but not yet recorded, comes again
    // with the same webhook-id (the receiver's idempotency key); anything more is a bug.
    let again: Vec<_> = received.iter().filter(|(_, (n, _))| *n > 1).collect();
    assert!(
        again.len() <= 8 * KILLS,
        "only deliveries in flight at a kill may repeat: {again:?}"
    );
    assert_logged_once_in_order(setup.store().as_ref(), &ids_by_partition(&records));
    assert!(setup.log().matches("tidemark listening").count() > KILLS);
}

/// The distribution's folder (with `start-local.sh`), exported by `.ci/fluvio.sh`.
fn fluvio_dist() -> PathBuf {
    PathBuf::from(std::env::var("FLUVIO_DIST").unwrap_or_else(|_| {
        panic!("FLUVIO_DIST is not set: start the cluster with `eval \"$(bash .ci/fluvio.sh start)\"`, which exports it")
    }))
}

/// Starts a private cluster in `base` on fixed ports; returns its controller address.
fn start_cluster(base: &Path, port: u16) -> String {
    let out = Command::new(fluvio_dist().join("start-local.sh"))
        .arg(base)
        .env("FLUVIO_SC_PORT", port.to_string())
        .env("FLUVIO_SPU_PORT", (port + 2).to_string())
        .env_remove("FLUVIO_PORTS")
        .output()
        .expect("start-local.sh runs");
    assert!(
        out.status.success(),
        "start-local.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("127.0.0.1:{port}")
}

fn stop_cluster(base: &Path) {
    let out = Command::new(fluvio_dist().join("stop-local.sh"))
        .arg("--keep")
        .arg(base)
        .output()
        .expect("stop-local.sh runs");
    assert!(
        out.status.success(),
        "stop-local.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_stopped_and_started_again_under_a_running_server_is_read_again() {
    let base = tempfile::tempdir().unwrap();
    // Four consecutive free ports for the private cluster.
    let port = loop {
        let p = free_port();
        if p < 60_000 && (1..4).all(|i| std::net::TcpListener::bind(("127.0.0.1", p + i)).is_ok()) {
            break p;
        }
    };
    let sc = start_cluster(base.path(), port);
    let fluvio = connect(&sc).await;
    let topic = create_topic(&fluvio, "flaky", 1).await;
    let now = chrono::Utc::now().timestamp_millis();
    let producer = fluvio
        .topic_producer(topic.clone())
        .await
        .expect("producer");
    for n in 0..100 {
        producer
            .send(RecordKey::NULL, order(n, now))
            .await
            .expect("produce");
    }
    producer.flush().await.expect("flush");
    drop(producer);
    drop(fluvio);

    let setup = Setup::new(&source(&sc, &topic));
    let _server = setup.start();
    let name = format!("fluvio:{topic}");
    wait_logged(
        &setup,
        &name,
        &BTreeMap::from([(0, 100)]),
        Duration::from_secs(60),
    )
    .await;

    stop_cluster(base.path());
    let client = client();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health = healthz(&client, &setup.base).await.expect("server answers");
        if health["status"] == "degraded" {
            assert_eq!(health["sources"][&name]["state"], "unhealthy", "{health}");
            assert!(health["sources"][&name]["error"].is_string(), "{health}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the source never reported the cluster gone: {health}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let sc_again = start_cluster(base.path(), port);
    assert_eq!(sc_again, sc);
    let fluvio = connect(&sc).await;
    let producer = fluvio
        .topic_producer(topic.clone())
        .await
        .expect("producer");
    for n in 100..150 {
        producer
            .send(RecordKey::NULL, order(n, now))
            .await
            .expect("produce");
    }
    producer.flush().await.expect("flush");
    wait_logged(
        &setup,
        &name,
        &BTreeMap::from([(0, 150)]),
        Duration::from_secs(90),
    )
    .await;
    let health = healthz(&client, &setup.base).await.expect("server answers");
    assert_eq!(health["status"], "ok", "{health}");
    stop_cluster(base.path());
}

/// Every record of partition 0 of `topic` until `count` have arrived: (key, value).
async fn read_records(fluvio: &Fluvio, topic: &str, count: usize) -> Vec<(String, Value)> {
    let mut stream = fluvio
        .consumer_with_config(
            fluvio::consumer::ConsumerConfigExtBuilder::default()
                .topic(topic.to_owned())
                .partition(0)
                .offset_start(Offset::beginning())
                .build()
                .unwrap(),
        )
        .await
        .expect("consumer");
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while records.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let next = tokio::time::timeout(left, stream.next()).await;
        let record = match next {
            Ok(Some(record)) => record.expect("record"),
            _ => panic!("{} of {count} records on {topic} after 60 s", records.len()),
        };
        let key = String::from_utf8(record.key().expect("a key").to_vec()).unwrap();
        let value = serde_json::from_slice(record.value()).expect("the value is JSON");
        records.push((key, value));
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_in_on_one_topic_come_out_as_notifications_keyed_by_id_on_another() {
    let sc = fluvio_sc();
    let fluvio = connect(&sc).await;
    let orders = create_topic(&fluvio, "shop-orders", 1).await;
    let alerts = create_topic(&fluvio, "shop-alerts", 1).await;
    let setup = Setup::new(&format!(
        "{}[sinks.fluvio]\nendpoint = \"{sc}\"\n",
        source(&sc, &orders)
    ));
    let _server = setup.start();
    wait_healthy(&setup).await;
    let client = client();
    let post = |key: &'static str, path: &'static str, body: Value| {
        let request = client
            .post(format!("{}/v1/{path}", setup.base))
            .bearer_auth(key)
            .json(&body);
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.text().await.unwrap())
        }
    };

    // Writing back into the topic events come from, or into another tenant's topics: refused.
    let (status, body) = post(
        KEY,
        "destinations",
        json!({"id": "loop", "kind": "fluvio", "config": {"topic": orders}}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("reads events from"), "{body}");
    let (status, body) = post(
        OTHER_KEY,
        "destinations",
        json!({"id": "theirs", "kind": "fluvio", "config": {"topic": alerts}}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("config.topic"), "{body}");

    for (path, body) in [
        (
            "destinations",
            json!({"id": "stream", "kind": "fluvio", "config": {"topic": alerts}}),
        ),
        (
            "rules",
            json!({"id": "big", "kind": "match", "event_type": "order",
                         "filter": {"attr": "amount", "op": ">=", "value": 1_000_000},
                         "destinations": ["stream"]}),
        ),
    ] {
        let (status, body) = post(KEY, path, body).await;
        assert_eq!(status, 201, "{body}");
    }

    // 70 orders, every 7th big: 10 notifications.
    let now = chrono::Utc::now().timestamp_millis();
    produce_orders(&fluvio, &orders, 0..70, now, 1_000, Duration::ZERO).await;
    let records = read_records(&fluvio, &alerts, 10).await;

    let mut events: Vec<String> = records
        .iter()
        .map(|(_, value)| value["payload"]["event"]["id"].as_str().unwrap().to_owned())
        .collect();
    events.sort();
    let expected: Vec<String> = (0..70)
        .filter(|n: &usize| n.is_multiple_of(7))
        .map(|n| format!("e{n:06}"))
        .collect();
    assert_eq!(events, expected, "one record per matching event");
    let mut keys: Vec<&str> = records.iter().map(|(key, _)| key.as_str()).collect();
    for (key, value) in &records {
        assert_eq!(value["id"], key.as_str(), "the value carries the key");
        assert_eq!(value["payload"]["rule"]["id"], "big", "{value}");
    }
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 10, "each notification under its own key");

    // The keys are the notification ids the API shows, each delivered.
    let deadline = Instant::now() + Duration::from_secs(30);
    let delivered: Vec<String> = loop {
        let page: Value = client
            .get(format!(
                "{}/v1/notifications?status=delivered&limit=100",
                setup.base
            ))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut ids: Vec<String> = page["notifications"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_owned())
            .collect();
        if ids.len() >= 10 || Instant::now() > deadline {
            ids.sort();
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(delivered, keys);
}
