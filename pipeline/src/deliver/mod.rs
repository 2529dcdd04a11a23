//! The sender: claims due deliveries from the outbox and delivers them.
//!
//! Each claim leases the row for a while, so a crash mid-delivery only delays it. Deliveries run
//! concurrently, bounded overall, per tenant and per destination, so one slow or dead
//! destination — or one tenant's many — cannot hold up the others: the sender claims only what
//! it could start (tenants and destinations at their limit are skipped, the rest taken
//! round-robin across tenants; see `ClaimLimits`), and gates make the limits hard. Failures are
//! retried with exponential backoff and full jitter (honouring `Retry-After`) until the policy
//! gives up; then the delivery is dead and shows so in the API. Every delivery goes through the
//! outbound guard of its sink settings (`SinkSettings`): a refused target is dead at once.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use connectors::secrets::Secrets;
use connectors::sinks::retry::RetryPolicy;
use connectors::sinks::{
    DeliveryOutcome, Destination, OutgoingNotification, SinkError, SinkSettings, Sinks,
};
use connectors::store::{
    ClaimLimits, DeliveryAttempt, DeliveryNext, DueDelivery, SecretRows, Store,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::config::SenderConfig;
use crate::ingest::now_ms;
use crate::metrics::Metrics;

/// How long a claimed delivery stays invisible to other claims.
const LEASE_MS: i64 = 60_000;

/// The secrets store destinations name their credentials in.
pub type SecretsHandle = Arc<Secrets<dyn SecretRows>>;

/// What the sender runs with.
pub struct Sender {
    /// Concurrency, retries, polling.
    pub config: SenderConfig,
    /// The outbound guard and limits every sink delivers under.
    pub sink_settings: Arc<SinkSettings>,
    /// Where file destinations write (`<files_root>/<tenant>/`).
    pub files_root: PathBuf,
}

/// One tenant's or one destination's deliveries in hand: how many, and the gate that caps how
/// many of them run at once.
struct Slot {
    count: usize,
    gate: Arc<Semaphore>,
}

/// Deliveries claimed and not yet recorded. A lease can run out while a delivery waits for a
/// busy destination; the claim that follows must not start it a second time.
#[derive(Default)]
struct InHand {
    deliveries: HashSet<(String, String)>,
    tenants: HashMap<String, Slot>,
    destinations: HashMap<(String, String), Slot>,
}

impl InHand {
    /// What the next claim may take: no more than `total`, nothing of tenants or destinations
    /// already at their limit.
    fn claim_limits(&self, config: &SenderConfig, total: usize) -> ClaimLimits {
        ClaimLimits {
            total,
            per_tenant: config.per_tenant,
            per_destination: config.per_destination,
            busy_tenants: self
                .tenants
                .iter()
                .filter(|(_, slot)| slot.count >= config.per_tenant)
                .map(|(tenant, _)| tenant.clone())
                .collect(),
            busy_destinations: self
                .destinations
                .iter()
                .filter(|(_, slot)| slot.count >= config.per_destination)
                .map(|(key, _)| key.clone())
                .collect(),
        }
    }

    /// Takes `due` in hand and returns its destination's and tenant's gates, or `None` when it
    /// is in hand already.
    fn take(
        &mut self,
        due: &DueDelivery,
        config: &SenderConfig,
    ) -> Option<(Arc<Semaphore>, Arc<Semaphore>)> {
        let key = (due.notification_id.clone(), due.destination.id.clone());
        if !self.deliveries.insert(key) {
            return None;
        }
        let destination = self
            .destinations
            .entry((due.tenant.clone(), due.destination.id.clone()))
            .or_insert_with(|| Slot {
                count: 0,
                gate: Arc::new(Semaphore::new(config.per_destination)),
            });
        destination.count += 1;
        let destination = destination.gate.clone();
        let tenant = self
            .tenants
            .entry(due.tenant.clone())
            .or_insert_with(|| Slot {
                count: 0,
                gate: Arc::new(Semaphore::new(config.per_tenant)),
            });
        tenant.count += 1;
        Some((destination, tenant.gate.clone()))
    }

    /// Lets go of a delivery [`InHand::take`] took; slots with nothing in hand are dropped.
    fn release(&mut self, tenant: &str, notification_id: &str, destination_id: &str) {
        self.deliveries
            .remove(&(notification_id.to_owned(), destination_id.to_owned()));
        let key = (tenant.to_owned(), destination_id.to_owned());
        if let Some(slot) = self.destinations.get_mut(&key) {
            slot.count = slot.count.saturating_sub(1);
            if slot.count == 0 {
                self.destinations.remove(&key);
            }
        }
        if let Some(slot) = self.tenants.get_mut(tenant) {
            slot.count = slot.count.saturating_sub(1);
            if slot.count == 0 {
                self.tenants.remove(tenant);
            }
        }
    }
}

/// Waits for the destination's, the tenant's and an overall permit, in that order: waiting for
/// a busy destination or tenant must not hold a permit the others need. `None` when stopped.
async fn permits(
    destination: Arc<Semaphore>,
    tenant: Arc<Semaphore>,
    overall: Arc<Semaphore>,
    stop: &mut watch::Receiver<bool>,
) -> Option<[OwnedSemaphorePermit; 3]> {
    let acquire = async {
        let destination = destination.acquire_owned().await.ok()?;
        let tenant = tenant.acquire_owned().await.ok()?;
        let overall = overall.acquire_owned().await.ok()?;
        Some([destination, tenant, overall])
    };
    tokio::select! {
        permits = acquire => permits,
        _ = stopped(stop) => None,
    }
}

/// Runs until `stop` turns true; in-flight deliveries are finished first.
pub async fn run(
    sender: Sender,
    store: Arc<dyn Store>,
    secrets: SecretsHandle,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let Sender {
        config,
        sink_settings,
        files_root,
    } = sender;
    let sinks = Arc::new(Sinks::new(&sink_settings)?);
    let policy = RetryPolicy {
        base_ms: config.retry_base.get().as_millis() as u64,
        max_ms: config.retry_max.get().as_millis() as u64,
        max_attempts: config.max_attempts,
    };
    let poll = config.poll.get();
    let overall = Arc::new(Semaphore::new(config.concurrency));
    let in_hand: Arc<Mutex<InHand>> = Default::default();
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
        // Never more in hand than can run at once overall.
        let limits = in_hand.lock().ok().and_then(|hand| {
            let room = config.concurrency.saturating_sub(hand.deliveries.len());
            (room > 0).then(|| hand.claim_limits(&config, room))
        });
        let claimed = match limits {
            None => Vec::new(),
            Some(limits) => {
                let store = store.clone();
                tokio::task::spawn_blocking(move || {
                    store.claim_due_deliveries(now_ms(), LEASE_MS, &limits)
                })
                .await?
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "could not claim deliveries");
                    Vec::new()
                })
            }
        };
        let mut started = 0;
        for due in claimed {
            let Some((destination_gate, tenant_gate)) = in_hand
                .lock()
                .ok()
                .and_then(|mut hand| hand.take(&due, &config))
            else {
                continue;
            };
            started += 1;
            let (store, metrics, sinks, policy) =
                (store.clone(), metrics.clone(), sinks.clone(), policy);
            let (overall, in_hand, mut stop) = (overall.clone(), in_hand.clone(), stop.clone());
            let (files_root, secrets) = (files_root.clone(), secrets.clone());
            tasks.spawn(async move {
                let (tenant, notification_id, destination_id) = (
                    due.tenant.clone(),
                    due.notification_id.clone(),
                    due.destination.id.clone(),
                );
                let permits = permits(destination_gate, tenant_gate, overall, &mut stop).await;
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
                drop(permits);
                // Unstarted ones stay claimed; the next start releases them.
                if let Ok(mut hand) = in_hand.lock() {
                    hand.release(&tenant, &notification_id, &destination_id);
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
                tenant: &due.tenant,
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
