//! The Fluvio sink against a real Fluvio cluster (the one `.ci/fluvio.sh` starts; `FLUVIO_SC`):
//! notifications delivered as the sender delivers them — a stored destination parsed, checked
//! and resolved, then `Sinks::deliver` — and read back with a consumer and with the `fluvio`
//! CLI; a missing topic; topics a tenant may not name; a cluster that cannot be reached.

#[path = "support/fluvio.rs"]
mod fluvio_cluster;

use std::path::Path;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use connectors::secrets::{SecretRef, SecretValue, SecretsError};
use connectors::sinks::{
    DeliveryOutcome, DeliveryResult, Destination, FluvioSettings, OutgoingNotification,
    SecretLookup, SinkError, SinkSettings, Sinks,
};
use serde_json::{Value, json};

const TENANT: &str = "acme";

/// A Fluvio destination holds no credentials: resolving it never asks for a secret.
struct NoSecrets;

#[async_trait]
impl SecretLookup for NoSecrets {
    async fn value(
        &self,
        tenant: &str,
        reference: &SecretRef,
    ) -> Result<SecretValue, SecretsError> {
        panic!("a Fluvio destination asked for secret {reference:?} of {tenant}")
    }

    async fn names(&self, _tenant: &str) -> Result<Vec<String>, SecretsError> {
        Ok(Vec::new())
    }
}

/// Sink settings with the cluster at `endpoint` (default prefix `{tenant}-`), `acme-orders`
/// reserved.
fn settings(endpoint: &str, timeout: Duration) -> SinkSettings {
    let mut fluvio = FluvioSettings::new(endpoint);
    fluvio.timeout = timeout;
    SinkSettings {
        fluvio: Some(fluvio),
        reserved_topics: vec!["acme-orders".to_owned()],
        ..SinkSettings::default()
    }
}

fn cluster_settings() -> SinkSettings {
    settings(&fluvio_cluster::sc_address(), Duration::from_secs(10))
}

/// A stored `{"topic": …}` destination of `TENANT`, checked and resolved as the API and the
/// sender do.
async fn destination(topic: &str, settings: &SinkSettings) -> Destination {
    let stored = json!({ "topic": topic }).to_string();
    let mut destination = Destination::parse("fluvio", &stored).expect("parsed");
    destination.validate(TENANT, settings).expect("valid");
    destination
        .resolve(TENANT, Path::new("/nonexistent"), &NoSecrets)
        .await
        .expect("resolved");
    destination
}

async fn deliver(
    sinks: &Sinks,
    destination: &Destination,
    id: &str,
    payload: &str,
) -> DeliveryResult {
    let notification = OutgoingNotification {
        tenant: TENANT,
        id,
        payload,
    };
    sinks.deliver(destination, &notification).await
}

fn payload(n: u32) -> String {
    // Key order and number spelling as the generator writes them: the value carries these
    // bytes unchanged.
    format!(
        r#"{{"id":"ntf_{n}","tenant":"acme","kind":"firing","rule":{{"id":"big-order","name":"Big order","version":1}},"value":{n}250.50}}"#
    )
}

#[tokio::test]
async fn notifications_arrive_keyed_by_id_carrying_the_webhook_body() {
    let fluvio = fluvio_cluster::connect().await;
    let topic = fluvio_cluster::create_topic(&fluvio, "acme-alerts-").await;
    let settings = cluster_settings();
    let sinks = Sinks::new(&settings).expect("sinks");
    let destination = destination(&topic, &settings).await;

    let before = connectors::clock::now_secs();
    let ids = ["ntf_1", "ntf_2", "ntf_3"];
    for (n, id) in (1..).zip(ids) {
        let result = deliver(&sinks, &destination, id, &payload(n)).await;
        assert_eq!(result.outcome, DeliveryOutcome::Delivered, "{result:?}");
        assert_eq!(result.error, None);
    }
    // A retry after a lost outcome writes the same notification again, under the same key.
    let again = deliver(&sinks, &destination, "ntf_2", &payload(2)).await;
    assert!(again.is_delivered(), "{again:?}");
    let after = connectors::clock::now_secs();

    let records = fluvio_cluster::read_records(&fluvio, &topic, 4).await;
    let keys: Vec<_> = records.iter().map(|r| r.key.as_deref()).collect();
    assert_eq!(
        keys,
        [Some("ntf_1"), Some("ntf_2"), Some("ntf_3"), Some("ntf_2")]
    );
    for (record, n) in records.iter().zip([1, 2, 3, 2]) {
        let value: Value = serde_json::from_str(&record.value).expect("the value is JSON");
        assert_eq!(value["id"], format!("ntf_{n}"));
        let timestamp = value["timestamp"].as_i64().expect("timestamp in seconds");
        assert!((before..=after).contains(&timestamp), "{timestamp}");
        let sent: Value = serde_json::from_str(&payload(n)).expect("payload");
        assert_eq!(value["payload"], sent);
        assert!(
            record
                .value
                .ends_with(&format!(r#""payload":{}}}"#, payload(n))),
            "the payload's bytes are kept: {}",
            record.value
        );
    }
    let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [0, 1, 2, 3]);
    // De-duplicating by key, a consumer sees each notification once.
    let mut seen: Vec<&str> = records.iter().filter_map(|r| r.key.as_deref()).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, ids);

    // The CLI an operator or a tenant would use reads the same records.
    let printed = fluvio_cluster::consume_with_cli(&topic);
    let lines: Vec<&str> = printed.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(lines.len(), 4, "{printed}");
    for (line, n) in lines.iter().zip([1, 2, 3, 2]) {
        let expected = format!("[ntf_{n}] {{\"id\":\"ntf_{n}\",\"timestamp\":");
        assert!(line.starts_with(&expected), "{line}");
        assert!(
            line.ends_with(&format!("\"payload\":{}}}", payload(n))),
            "{line}"
        );
    }
}

#[tokio::test]
async fn a_missing_topic_is_a_permanent_failure_naming_it() {
    let fluvio = fluvio_cluster::connect().await;
    let settings = cluster_settings();
    let sinks = Sinks::new(&settings).expect("sinks");
    let missing = fluvio_cluster::unique_topic("acme-missing-");
    let result = deliver(
        &sinks,
        &destination(&missing, &settings).await,
        "ntf_1",
        &payload(1),
    )
    .await;
    assert_eq!(result.outcome, DeliveryOutcome::Permanent, "{result:?}");
    assert_eq!(
        result.error.as_deref(),
        Some(
            format!(
                "Fluvio topic '{missing}' does not exist; create it (fluvio topic create \
                 {missing}) or change the destination"
            )
            .as_str()
        )
    );

    // The same sink goes on delivering to topics that exist.
    let topic = fluvio_cluster::create_topic(&fluvio, "acme-alerts-").await;
    let result = deliver(
        &sinks,
        &destination(&topic, &settings).await,
        "ntf_2",
        &payload(2),
    )
    .await;
    assert!(result.is_delivered(), "{result:?}");
    let records = fluvio_cluster::read_records(&fluvio, &topic, 1).await;
    assert_eq!(records[0].key.as_deref(), Some("ntf_2"));
}

/// Why a stored destination of `tenant` is refused when it is defined.
fn refusal(config: &str, tenant: &str, settings: &SinkSettings) -> SinkError {
    Destination::parse("fluvio", config)
        .and_then(|d| d.validate(tenant, settings))
        .expect_err(config)
}

#[test]
fn topics_a_tenant_may_not_name_are_refused_when_defined() {
    let settings = settings("127.0.0.1:9003", Duration::from_secs(10));

    let other_tenant = refusal(r#"{"topic":"globex-alerts"}"#, TENANT, &settings);
    assert_eq!(other_tenant.field(), Some("config.topic"));
    assert_eq!(
        other_tenant.to_string(),
        "config.topic: 'globex-alerts' must start with 'acme-' (this tenant's topics are named \
         'acme-<name>')"
    );
    Destination::parse("fluvio", r#"{"topic":"globex-alerts"}"#)
        .and_then(|d| d.validate("globex", &settings))
        .expect("globex's own topic");

    let reserved = refusal(r#"{"topic":"acme-orders"}"#, TENANT, &settings);
    assert_eq!(reserved.field(), Some("config.topic"));
    assert!(
        reserved.to_string().contains("reads events from"),
        "{reserved}"
    );

    let invalid = refusal(r#"{"topic":"acme_Alerts"}"#, TENANT, &settings);
    assert_eq!(invalid.field(), Some("config.topic"));
    assert!(
        invalid.to_string().contains("is not a Fluvio topic name"),
        "{invalid}"
    );

    let no_cluster = refusal(
        r#"{"topic":"acme-alerts"}"#,
        TENANT,
        &SinkSettings::default(),
    );
    assert_eq!(no_cluster.field(), Some("config.topic"));
    assert!(
        no_cluster
            .to_string()
            .contains("no Fluvio cluster configured"),
        "{no_cluster}"
    );

    let unknown = refusal(
        r#"{"topic":"acme-alerts","partition":1}"#,
        TENANT,
        &settings,
    );
    assert_eq!(unknown.field(), Some("config"));
    assert!(unknown.to_string().contains("partition"), "{unknown}");
}

#[tokio::test]
async fn a_topic_outside_the_prefix_is_refused_at_delivery_too() {
    // Stored before the prefix changed: the delivery checks again, before connecting anywhere.
    let settings = settings("127.0.0.1:9", Duration::from_secs(10));
    let sinks = Sinks::new(&settings).expect("sinks");
    let stored = Destination::parse("fluvio", r#"{"topic":"globex-alerts"}"#).expect("parsed");
    let started = Instant::now();
    let result = deliver(&sinks, &stored, "ntf_1", &payload(1)).await;
    assert_eq!(result.outcome, DeliveryOutcome::Permanent, "{result:?}");
    assert!(
        result
            .error
            .as_deref()
            .is_some_and(|e| e.contains("must start with 'acme-'")),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// A loopback port nothing listens on.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    address.to_string()
}

// One thread: a connect that blocked it would also keep the delivery timeout from firing.
#[tokio::test(flavor = "current_thread")]
async fn an_unreachable_cluster_is_retryable_within_the_timeout() {
    let timeout = Duration::from_secs(2);
    let settings = settings(&closed_port(), timeout);
    let sinks = Sinks::new(&settings).expect("sinks");
    let destination = destination("acme-alerts", &settings).await;
    for attempt in ["ntf_1", "ntf_2"] {
        let started = Instant::now();
        let result = deliver(&sinks, &destination, attempt, &payload(1)).await;
        let elapsed = started.elapsed();
        assert!(
            matches!(result.outcome, DeliveryOutcome::Retryable { .. }),
            "{result:?}"
        );
        assert!(
            matches!(
                result.error.as_deref(),
                Some("could not connect to the Fluvio cluster" | "timed out after 2000 ms")
            ),
            "{result:?}"
        );
        assert!(
            elapsed < timeout + Duration::from_millis(500),
            "{elapsed:?}"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_cluster_that_never_answers_times_out_as_retryable() {
    // Accepts connections and reads nothing: the client's handshake waits forever.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let timeout = Duration::from_millis(1500);
    let settings = settings(&address, timeout);
    let sinks = Sinks::new(&settings).expect("sinks");
    let destination = destination("acme-alerts", &settings).await;
    let started = Instant::now();
    let result = deliver(&sinks, &destination, "ntf_1", &payload(1)).await;
    let elapsed = started.elapsed();
    assert!(
        matches!(result.outcome, DeliveryOutcome::Retryable { .. }),
        "{result:?}"
    );
    assert_eq!(result.error.as_deref(), Some("timed out after 1500 ms"));
    assert!(
        elapsed >= timeout && elapsed < timeout + Duration::from_millis(500),
        "{elapsed:?}"
    );
    held.abort();
}
