//! The private Fluvio cluster the test command starts (`.ci/fluvio.sh`): its address, fresh
//! topics made through the admin API, and what a topic holds, read back with the client and
//! with the `fluvio` CLI. Shared by the Fluvio sink's and source's tests.
//!
//! A test that needs the cluster fails when `FLUVIO_SC` is not set, saying how to start one; it
//! never skips.

#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fluvio::consumer::ConsumerConfigExtBuilder;
use fluvio::metadata::partition::PartitionSpec;
use fluvio::metadata::topic::TopicSpec;
use fluvio::{Fluvio, FluvioClusterConfig, Offset};
use futures::StreamExt;

/// How to get a cluster for these tests.
pub const START_HINT: &str = "these tests need a Fluvio cluster: run them with .ci/test, or \
     start one with `eval \"$(bash .ci/fluvio.sh start)\"` (from the checkout) and run cargo \
     test in that shell; stop it with `bash .ci/fluvio.sh stop`";

/// The longest a topic may take to be ready, or records to arrive.
const PATIENCE: Duration = Duration::from_secs(30);

/// The cluster's SC address (`FLUVIO_SC`, `host:port`).
pub fn sc_address() -> String {
    match std::env::var("FLUVIO_SC") {
        Ok(address) if !address.trim().is_empty() => address,
        _ => panic!("FLUVIO_SC is not set; {START_HINT}"),
    }
}

/// A client of the cluster.
pub async fn connect() -> Fluvio {
    let address = sc_address();
    match Fluvio::connect_with_config(&FluvioClusterConfig::new(address.clone())).await {
        Ok(fluvio) => fluvio,
        Err(e) => panic!("cannot connect to the Fluvio cluster at {address} ({e:#}); {START_HINT}"),
    }
}

/// A topic name no other test (nor an earlier run on the same cluster) uses: `prefix`, then
/// the process id, the time and a counter.
pub fn unique_topic(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates a new one-partition topic `prefix…` (see [`unique_topic`]) and waits until its
/// partition is online, so a producer can write to it at once. Topics are left in place: the
/// cluster is the test run's own, and this SC stalls creating a topic while it is still
/// removing a deleted one.
pub async fn create_topic(fluvio: &Fluvio, prefix: &str) -> String {
    let topic = unique_topic(prefix);
    let admin = fluvio.admin().await;
    admin
        .create(topic.clone(), false, TopicSpec::new_computed(1, 1, None))
        .await
        .unwrap_or_else(|e| panic!("creating topic {topic}: {e:#}"));
    let partition = format!("{topic}-0");
    let started = Instant::now();
    loop {
        let partitions = admin
            .list::<PartitionSpec, String>(vec![partition.clone()])
            .await
            .unwrap_or_else(|e| panic!("listing partitions of {topic}: {e:#}"));
        if partitions
            .iter()
            .any(|p| p.name == partition && p.status.is_online())
        {
            return topic;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "topic {topic} is not online after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One record as a consumer reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadRecord {
    pub partition: u32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: String,
}

/// The first `count` records of `topic`, from the beginning; panics if fewer arrive within
/// the patience.
pub async fn read_records(fluvio: &Fluvio, topic: &str, count: usize) -> Vec<ReadRecord> {
    let config = ConsumerConfigExtBuilder::default()
        .topic(topic)
        .offset_start(Offset::beginning())
        .build()
        .expect("consumer config");
    let mut stream = fluvio
        .consumer_with_config(config)
        .await
        .unwrap_or_else(|e| panic!("consuming {topic}: {e:#}"));
    let mut records = Vec::with_capacity(count);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while records.len() < count {
        let next = tokio::time::timeout_at(deadline, stream.next()).await;
        let record = match next {
            Ok(Some(Ok(record))) => record,
            Ok(Some(Err(code))) => panic!("consuming {topic}: {code:?}"),
            Ok(None) => break,
            Err(_) => break,
        };
        records.push(ReadRecord {
            partition: record.partition(),
            offset: record.offset(),
            key: record
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            value: String::from_utf8_lossy(record.value()).into_owned(),
        });
    }
    assert_eq!(
        records.len(),
        count,
        "{topic} holds {} records, expected {count}: {records:?}",
        records.len()
    );
    records
}

/// What `fluvio consume <topic> -B -d -k` prints: every record so far, one `[key] value` line
/// each. The CLI reads its profile from `FLV_PROFILE_PATH`, which `.ci/fluvio.sh` exports.
pub fn consume_with_cli(topic: &str) -> String {
    if std::env::var_os("FLV_PROFILE_PATH").is_none() {
        panic!("FLV_PROFILE_PATH is not set (the fluvio CLI's profile); {START_HINT}");
    }
    let cli = std::env::var("FLUVIO_BIN").unwrap_or_else(|_| "fluvio".to_owned());
    let output = Command::new(&cli)
        .args(["consume", topic, "-B", "-d", "-k"])
        .output()
        .unwrap_or_else(|e| panic!("running {cli}: {e}; {START_HINT}"));
    assert!(
        output.status.success(),
        "fluvio consume {topic} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
