//! The sender: claims due deliveries from the outbox and delivers them.
//!
//! Each claim leases the row for a while, so a crash mid-delivery only delays it. Deliveries run
//! concurrently, bounded overall and per destination, so one slow or dead destination cannot hold
//! up the others. Failures are retried with exponential backoff and full jitter (honouring
//! `Retry-After`) until the policy gives up; then the delivery is dead and shows so in the API.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use connectors::secrets::Secrets;
use connectors::sinks::retry::RetryPolicy;
use connectors::sinks::{DeliveryOutcome, Destination, OutgoingNotification, SinkError, Sinks};
use connectors::store::{
    ClaimLimits, DeliveryAttempt, DeliveryNext, DueDelivery, SecretRows, Store,
};
use tokio::sync::{Semaphore, watch};

use crate::config::SenderConfig;
use crate::ingest::now_ms;
use crate::metrics::Metrics;

/// How long a claimed delivery stays invisible to other claims.
const LEASE_MS: i64 = 60_000;

/// The secrets store destinations name their credentials in.
pub type SecretsHandle = Arc<Secrets<dyn SecretRows>>;

/// Runs until `stop` turns true; in-flight deliveries are finished first.
pub async fn run(
    config: SenderConfig,
    files_root: PathBuf,
    store: Arc<dyn Store>,
    secrets: SecretsHandle,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let sinks = Arc::new(Sinks::new()?);
    let policy = RetryPolicy {
        base_ms: config.retry_base.get().as_millis() as u64,
        max_ms: config.retry_max.get().as_millis() as u64,
        max_attempts: config.max_attempts,
    };
    let poll = config.poll.get();
    let overall = Arc::new(Semaphore::new(config.concurrency));
    let mut per_destination: HashMap<(String, String), Arc<Semaphore>> = HashMap::new();
    // Deliveries handed to a task and not yet recorded. A lease can run out while a delivery
    // waits for a busy destination; the claim that follows must not start it a second time.
    let in_flight: Arc<Mutex<HashSet<(String, String)>>> = Default::default();
    let mut tasks = tokio::task::JoinSet::new();
    // This process is the store's only sender: claims still held were left by a crash.
    let released = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.release_claims(now_ms())).await??
    };
    if released > 0 {
        tracing::info!(released, "re-queued deliveries claimed before a restart");
    }
    loop {
        if *stop.borrow() {
            break;
        }
        while tasks.try_join_next().is_some() {}
        let free = overall.available_permits();
        let claimed = if free == 0 {
            Vec::new()
        } else {
            let store = store.clone();
            tokio::task::spawn_blocking(move || {
                store.claim_due_deliveries(now_ms(), LEASE_MS, &ClaimLimits::up_to(free))
            })
            .await?
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "could not claim deliveries");
                Vec::new()
            })
        };
        let mut started = 0;
        for due in claimed {
            let key = (due.notification_id.clone(), due.destination.id.clone());
            if !in_flight
                .lock()
                .map(|mut f| f.insert(key.clone()))
                .unwrap_or(false)
            {
                continue;
            }
            started += 1;
            let gate = per_destination
                .entry((due.tenant.clone(), due.destination.id.clone()))
                .or_insert_with(|| Arc::new(Semaphore::new(config.per_destination)))
                .clone();
            let (store, metrics, sinks, policy) =
                (store.clone(), metrics.clone(), sinks.clone(), policy);
            let (overall, in_flight, mut stop) = (overall.clone(), in_flight.clone(), stop.clone());
            let (files_root, secrets) = (files_root.clone(), secrets.clone());
            tasks.spawn(async move {
                // The destination's own limit first: waiting for a busy destination must not
                // hold one of the shared permits the other destinations need.
                let permits = tokio::select! {
                    gate = gate.acquire_owned() => match gate {
                        Ok(gate) => overall.acquire_owned().await.ok().map(|p| (gate, p)),
                        Err(_) => None,
                    },
                    _ = stopped(&mut stop) => None,
                };
                if permits.is_some() {
                    let context = Context {
                        sinks: &sinks,
                        policy: &policy,
                        files_root: &files_root,
                        secrets: &secrets,
                        metrics: &metrics,
                    };
                    deliver(due, context, store).await;
                }
                // Unstarted ones stay claimed; the next start releases them.
                if let Ok(mut f) = in_flight.lock() {
                    f.remove(&key);
                }
            });
        }
        if started == 0 {
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = stop.changed() => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Resolves once the sender is told to stop.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.is_ok();
}

/// What a delivery needs besides the delivery itself.
#[derive(Clone, Copy)]
struct Context<'a> {
    sinks: &'a Sinks,
    policy: &'a RetryPolicy,
    files_root: &'a Path,
    secrets: &'a SecretsHandle,
    metrics: &'a Metrics,
}

/// The stored destination of `due`, ready to deliver (see [`Destination::resolve`]).
async fn resolve(
    due: &DueDelivery,
    files_root: &Path,
    secrets: &SecretsHandle,
) -> Result<Destination, SinkError> {
    let mut destination = Destination::parse(&due.destination.kind, &due.destination.config)?;
    destination
        .resolve(&due.tenant, files_root, secrets.as_ref())
        .await?;
    Ok(destination)
}

async fn deliver(due: DueDelivery, context: Context<'_>, store: Arc<dyn Store>) {
    let Context {
        sinks,
        policy,
        files_root,
        secrets,
        metrics,
    } = context;
    let attempt = due.attempt + 1;
    let started = now_ms();
    let retry_or_dead =
        |retry_after| match policy.next_delay(attempt, retry_after, &mut rand::rng()) {
            Some(delay) => DeliveryNext::RetryAt(now_ms() + delay.as_millis() as i64),
            None => DeliveryNext::Dead,
        };
    let (next, status_code, error, duration) = match resolve(&due, files_root, secrets).await {
        // An unavailable secrets store is retried like a failed delivery; a destination that
        // stays undeliverable (bad config, unknown secret) is dead at once.
        Err(e) if e.is_transient() => (
            retry_or_dead(None),
            None,
            Some(e.to_string()),
            Duration::ZERO,
        ),
        Err(e) => (
            DeliveryNext::Dead,
            None,
            Some(e.to_string()),
            Duration::ZERO,
        ),
        Ok(destination) => {
            let notification = OutgoingNotification {
                id: &due.notification_id,
                payload: &due.payload,
            };
            let result = sinks.deliver(&destination, &notification).await;
            metrics
                .delivery_seconds
                .observe(result.duration.as_secs_f64());
            let next = match &result.outcome {
                DeliveryOutcome::Delivered => DeliveryNext::Delivered,
                DeliveryOutcome::Permanent => DeliveryNext::Dead,
                DeliveryOutcome::Retryable { retry_after } => retry_or_dead(*retry_after),
            };
            (next, result.status_code, result.error, result.duration)
        }
    };
    let outcome = match next {
        DeliveryNext::Delivered => "delivered",
        DeliveryNext::RetryAt(_) => "retry",
        DeliveryNext::Dead => "dead",
    };
    Metrics::inc(&metrics.deliveries, "outcome", outcome, 1);
    match outcome {
        "dead" => {
            tracing::warn!(notification = %due.notification_id, destination = %due.destination.id, attempt, error = ?error, "delivery dead")
        }
        "retry" => {
            tracing::info!(notification = %due.notification_id, destination = %due.destination.id, attempt, error = ?error, "delivery will be retried")
        }
        _ => {
            tracing::debug!(notification = %due.notification_id, destination = %due.destination.id, attempt, "delivered")
        }
    }
    let record = DeliveryAttempt {
        notification_id: due.notification_id.clone(),
        destination_id: due.destination.id.clone(),
        attempt,
        at_ms: started,
        outcome: outcome.to_string(),
        status_code,
        error,
        duration_ms: duration.as_millis() as u64,
    };
    let saved = tokio::task::spawn_blocking(move || store.record_attempt(&record, next)).await;
    if !matches!(saved, Ok(Ok(()))) {
        tracing::error!(notification = %due.notification_id, "could not record a delivery attempt; it will be retried after its lease");
    }
}
