//! Delivering to a Fluvio destination: one record per attempt on the operator's cluster, and
//! the classification of what happens, decided here once for every sender:
//! - the record's offset came back after the flush: delivered;
//! - the topic does not exist: permanent (`Fluvio topic 'acme-alerts' does not exist; create
//!   it …`) — the tenant creates its topics;
//! - a record larger than the cluster takes, a payload that is not JSON, a topic the checks of
//!   [`super::config`] refuse (they run again here: the cluster settings may have changed since
//!   the destination was defined): permanent;
//! - the cluster unreachable (`could not connect to the Fluvio cluster`), a send or flush that
//!   fails, or the whole attempt over `[sinks.fluvio] timeout` (`timed out after 10000 ms`):
//!   retryable. The connection is dropped and made again by the next attempt, so a cluster that
//!   restarted is picked up.
//!
//! One connection serves every delivery; it is made by the first delivery (a server whose
//! cluster is down starts anyway) and holds one producer per topic, made on first use. The
//! producer is at-least-once (it retries a failed produce request within the timeout) and waits
//! for the record to be committed (`ReadCommitted`) before the offset comes back.
//!
//! The Fluvio client runs its I/O on its own executor (async-io); each await here is bounded by
//! the delivery timeout, so a slow cluster holds up only its own deliveries.

use std::collections::HashMap;
use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::fluvio::metadata::topic::TopicSpec;
use ::fluvio::{
    DeliverySemantic, Fluvio, FluvioClusterConfig, FluvioError, Isolation, ProducerError,
    RecordKey, RetryPolicy, TopicProducerConfigBuilder, TopicProducerPool,
};
use async_trait::async_trait;
use serde::de::IgnoredAny;

use super::{FluvioConfig, FluvioSettings};
use crate::clock::now_secs;
use crate::sinks::{
    DeliveryResult, OutgoingNotification, Sink, SinkConfig, SinkError, SinkSettings, error_chain,
};

/// How long to wait for the client to learn of a topic the SC already has.
const METADATA_WAIT: Duration = Duration::from_millis(100);

/// Delivers notifications as records on the operator's Fluvio cluster.
pub struct FluvioSink {
    settings: SinkSettings,
    /// The connection and its producers; `None` until the first delivery, and again after a
    /// failure.
    cluster: tokio::sync::Mutex<Option<Connection>>,
}

impl std::fmt::Debug for FluvioSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FluvioSink")
            .field("cluster", &self.settings.fluvio)
            .finish_non_exhaustive()
    }
}

/// One connection to the cluster and a producer per topic it has written to.
struct Connection {
    fluvio: Arc<Fluvio>,
    producers: HashMap<String, Arc<TopicProducerPool>>,
}

/// Where a record went.
#[derive(Clone, Copy, Debug)]
struct Written {
    partition: u32,
    offset: i64,
}

/// Why an attempt failed, before it is told to the tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// No connection to the cluster.
    Connect,
    /// The topic does not exist.
    NoTopic,
    /// The record is larger than one produce request may be.
    TooLarge { size: usize, max: usize },
    /// Anything else on the way: a produce request, the flush, the acknowledgement.
    Send,
}

impl Failure {
    /// What the client's `error` means for the delivery; the error itself goes to the debug
    /// log (the tenant sees the classification only).
    fn of(stage: &str, error: &(dyn Error + 'static)) -> Self {
        tracing::debug!(stage, error = %error_chain(error), "Fluvio delivery failed");
        let mut source = Some(error);
        while let Some(error) = source {
            let producer = error.downcast_ref::<ProducerError>().or_else(|| {
                match error.downcast_ref::<FluvioError>() {
                    Some(FluvioError::Producer(producer)) => Some(producer),
                    _ => None,
                }
            });
            if let Some(ProducerError::RecordTooLarge(size, max)) = producer {
                return Self::TooLarge {
                    size: *size,
                    max: *max,
                };
            }
            if let Some(FluvioError::TopicNotFound(_)) = error.downcast_ref::<FluvioError>() {
                return Self::NoTopic;
            }
            source = error.source();
        }
        Self::Send
    }

    /// A connection that could not be made; the error goes to the debug log.
    fn connect(error: &(dyn Error + 'static)) -> Self {
        tracing::debug!(error = %error_chain(error), "cannot connect to the Fluvio cluster");
        Self::Connect
    }
}

impl FluvioSink {
    /// A sink for the cluster in `settings` (none: every delivery fails permanently, as the
    /// destination checks already refuse Fluvio destinations). Nothing connects yet.
    pub fn new(settings: &SinkSettings) -> Self {
        Self {
            settings: settings.clone(),
            cluster: tokio::sync::Mutex::new(None),
        }
    }

    /// The producer for `topic`, connecting and making it if needed. Runs until it has one,
    /// or knows why not; the caller bounds it with the delivery timeout.
    async fn producer(
        &self,
        cluster: &FluvioSettings,
        topic: &str,
    ) -> Result<Arc<TopicProducerPool>, Failure> {
        loop {
            let fluvio = {
                let mut guard = self.cluster.lock().await;
                let connection = match guard.as_mut() {
                    Some(connection) => connection,
                    None => {
                        let config = FluvioClusterConfig::new(cluster.endpoint.clone());
                        let fluvio = Fluvio::connect_with_config(&config)
                            .await
                            .map_err(|e| Failure::connect(&*e))?;
                        guard.insert(Connection {
                            fluvio: Arc::new(fluvio),
                            producers: HashMap::new(),
                        })
                    }
                };
                if let Some(producer) = connection.producers.get(topic) {
                    return Ok(producer.clone());
                }
                let made = connection
                    .fluvio
                    .topic_producer_with_config(topic, producer_config(cluster.timeout))
                    .await;
                match made.map_err(|e| Failure::of("producer", &*e)) {
                    Ok(producer) => {
                        let producer = Arc::new(producer);
                        connection
                            .producers
                            .insert(topic.to_owned(), producer.clone());
                        return Ok(producer);
                    }
                    Err(Failure::NoTopic) => connection.fluvio.clone(),
                    Err(failure) => return Err(failure),
                }
            };
            // The client's copy of the cluster's metadata follows the SC a moment behind, so a
            // topic created just now may be missing from it: the SC's own answer decides.
            if !topic_exists(&fluvio, topic).await? {
                return Err(Failure::NoTopic);
            }
            tokio::time::sleep(METADATA_WAIT).await;
        }
    }

    /// Sends one record and waits until it is flushed and has its offset.
    async fn write(
        &self,
        cluster: &FluvioSettings,
        topic: &str,
        key: &str,
        value: String,
    ) -> Result<Written, Failure> {
        let producer = self.producer(cluster, topic).await?;
        let output = producer
            .send(RecordKey::from(key.to_owned()), value)
            .await
            .map_err(|e| Failure::of("send", &*e))?;
        producer
            .flush()
            .await
            .map_err(|e| Failure::of("flush", &*e))?;
        let metadata = output
            .wait()
            .await
            .map_err(|e| Failure::of("acknowledgement", &e))?;
        Ok(Written {
            partition: metadata.partition_id(),
            offset: metadata.offset(),
        })
    }

    /// Drops the connection after a failure: the next attempt connects again, with fresh
    /// producers (a producer that saw an error refuses records until its errors are cleared).
    async fn disconnect(&self) {
        self.cluster.lock().await.take();
    }
}

/// Whether the SC knows `topic`.
async fn topic_exists(fluvio: &Fluvio, topic: &str) -> Result<bool, Failure> {
    let listed = fluvio
        .admin()
        .await
        .list::<TopicSpec, String>(vec![topic.to_owned()])
        .await
        .map_err(|e| Failure::of("topic lookup", &*e))?;
    Ok(listed.iter().any(|t| t.name == topic))
}

/// How each producer sends: at once (no linger), at-least-once with retries inside `timeout`,
/// acknowledged once committed.
fn producer_config(timeout: Duration) -> ::fluvio::TopicProducerConfig {
    let retries = RetryPolicy {
        timeout,
        ..RetryPolicy::default()
    };
    let built = TopicProducerConfigBuilder::default()
        .linger(Duration::ZERO)
        .timeout(timeout)
        .isolation(Isolation::ReadCommitted)
        .delivery_semantic(DeliverySemantic::AtLeastOnce(retries))
        .build();
    // Every field has a default; the builder fails only on a missing required field.
    built.unwrap_or_default()
}

/// The record's value: the notification id and the send time (what a webhook receives as
/// `webhook-id` and `webhook-timestamp`) around the payload, unchanged, as JSON text:
/// `{"id":…,"timestamp":…,"payload":…}`. `None` when the payload is not one JSON value.
pub fn record_value(id: &str, timestamp_secs: i64, payload: &str) -> Option<String> {
    serde_json::from_str::<IgnoredAny>(payload).ok()?;
    let id = serde_json::to_string(id).ok()?;
    Some(format!(
        r#"{{"id":{id},"timestamp":{timestamp_secs},"payload":{}}}"#,
        payload.trim()
    ))
}

#[async_trait]
impl Sink for FluvioSink {
    type Config = FluvioConfig;

    fn build(settings: &SinkSettings) -> Result<Self, SinkError> {
        Ok(Self::new(settings))
    }

    /// Writes one record to `config.topic`: key = the notification id, value = the envelope
    /// of [`record_value`]; flushed, its offset awaited. See the module docs for the outcomes.
    async fn deliver(
        &self,
        notification: &OutgoingNotification<'_>,
        config: &FluvioConfig,
    ) -> DeliveryResult {
        let started = Instant::now();
        let checked = config
            .validate(&self.settings)
            .and_then(|()| config.check_tenant(notification.tenant, &self.settings));
        if let Err(e) = checked {
            return DeliveryResult::permanent(None, e.to_string(), started.elapsed());
        }
        let Some(cluster) = &self.settings.fluvio else {
            // validate refuses every topic without a cluster.
            return DeliveryResult::permanent(
                None,
                "no Fluvio cluster is configured on this server",
                started.elapsed(),
            );
        };
        let Some(value) = record_value(notification.id, now_secs(), notification.payload) else {
            return DeliveryResult::permanent(None, "payload is not JSON", started.elapsed());
        };
        let topic = config.topic.as_str();
        let attempt = self.write(cluster, topic, notification.id, value);
        let failure = match tokio::time::timeout(cluster.timeout, attempt).await {
            Ok(Ok(written)) => {
                tracing::debug!(
                    topic,
                    id = notification.id,
                    partition = written.partition,
                    offset = written.offset,
                    "delivered to Fluvio"
                );
                return DeliveryResult::delivered(None, started.elapsed());
            }
            Ok(Err(failure)) => failure,
            Err(_) => {
                self.disconnect().await;
                tracing::debug!(topic, id = notification.id, "Fluvio delivery timed out");
                return DeliveryResult::retryable(
                    None,
                    format!("timed out after {} ms", cluster.timeout.as_millis()),
                    None,
                    started.elapsed(),
                );
            }
        };
        let elapsed = started.elapsed();
        match failure {
            Failure::NoTopic => DeliveryResult::permanent(
                None,
                format!(
                    "Fluvio topic '{topic}' does not exist; create it \
                     (fluvio topic create {topic}) or change the destination"
                ),
                elapsed,
            ),
            Failure::TooLarge { size, max } => DeliveryResult::permanent(
                None,
                format!(
                    "the record ({size} bytes) is larger than the Fluvio cluster takes \
                     ({max} bytes)"
                ),
                elapsed,
            ),
            Failure::Connect => DeliveryResult::retryable(
                None,
                "could not connect to the Fluvio cluster",
                None,
                elapsed,
            ),
            Failure::Send => {
                self.disconnect().await;
                DeliveryResult::retryable(
                    None,
                    "sending to the Fluvio cluster failed",
                    None,
                    elapsed,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_wraps_the_payload_unchanged() {
        let payload = r#" {"rule":{"id":"big"},"z":1,"a":[2.50, 1e3]} "#;
        let value = record_value("ntf_1\"x", 1_700_000_000, payload).expect("JSON");
        assert_eq!(
            value,
            r#"{"id":"ntf_1\"x","timestamp":1700000000,"payload":{"rule":{"id":"big"},"z":1,"a":[2.50, 1e3]}}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&value).expect("valid JSON");
        assert_eq!(parsed["id"], "ntf_1\"x");
        assert_eq!(record_value("n", 0, "not json"), None);
        assert_eq!(record_value("n", 0, r#"{"a":1} {"b":2}"#), None);
    }
}
