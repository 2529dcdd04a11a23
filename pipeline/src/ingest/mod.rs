//! The runtime: the ingest path from "events accepted" to "notifications enqueued".
//!
//! ```text
//! HTTP handlers ─ingest()─► committer thread ─(one transaction per batch, then ack)─►
//!     engine thread ─ Engine::step (timely workers) ─► render ─► outbox (store)
//! rule API ─rule_changed()───────────────────────────────► engine thread
//! ```
//!
//! Group commit: the committer takes every request waiting (up to `engine.max_batch` events)
//! and appends them in one transaction; producers are answered only after it is durable. The
//! engine thread steps the dataflow once per batch (or per tick when idle, to move the clock),
//! enqueues the intents and records the last event sequence number it fully processed. On start
//! the state is rebuilt from the store: rules, open alerts, the events still inside some window
//! (as history), and the events after the checkpoint (as new: their notification ids are
//! deterministic, so re-enqueueing them adds nothing).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self as std_mpsc, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use connectors::store::{AppendOutcome, NewEvent, NewNotification, Store, StoreResult, StoredRule};
use operators::engine::EngineStats;
use operators::{
    AttrValue, Engine, EngineConfig, Event, OpenAlert, Rule, RuleChange, RuleSpec, StepInput,
};
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::render;

/// Meta key of the last event sequence number whose notifications are enqueued.
const PROCESSED_SEQ: &str = "engine.processed_seq";

/// Wall-clock now, epoch ms.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// What the engine thread needs to know about a rule besides its dataflow form.
#[derive(Clone, Debug, Default)]
pub struct RuleMeta {
    /// Display name.
    pub name: String,
    /// Message template.
    pub template: Option<String>,
    /// Destination ids.
    pub destinations: Vec<String>,
}

/// A rule change for the engine thread.
#[derive(Clone, Debug)]
pub struct RuleUpdate {
    /// The dataflow change.
    pub change: RuleChange,
    /// Metadata for upserts.
    pub meta: Option<RuleMeta>,
}

/// Compiles a stored rule; `Ok(None)` when it is disabled.
pub fn rule_update(stored: &StoredRule, time_zone: &str) -> anyhow::Result<RuleUpdate> {
    let spec: RuleSpec = serde_json::from_str(&stored.body).with_context(|| {
        format!(
            "stored rule {}/{} is not valid JSON",
            stored.tenant, stored.id
        )
    })?;
    if !stored.enabled || !spec.enabled {
        return Ok(RuleUpdate {
            change: RuleChange::Remove {
                tenant: stored.tenant.clone(),
                rule_id: stored.id.clone(),
            },
            meta: None,
        });
    }
    let rule = Rule::compile(&spec, &stored.tenant, &stored.id, stored.version, time_zone)
        .with_context(|| format!("stored rule {}/{}", stored.tenant, stored.id))?;
    Ok(RuleUpdate {
        change: RuleChange::Upsert(rule),
        meta: Some(RuleMeta {
            name: spec.name.clone().unwrap_or_else(|| stored.id.clone()),
            template: spec.template.clone(),
            destinations: spec.destinations.clone(),
        }),
    })
}

struct IngestRequest {
    events: Vec<NewEvent>,
    parsed: Vec<Event>,
    reply: oneshot::Sender<Result<Vec<AppendOutcome>, String>>,
}

struct Committed {
    events: Vec<Event>,
    max_seq: u64,
    accepted_at: Instant,
}

/// Why ingest failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The runtime is shutting down.
    #[error("the server is shutting down; retry against another instance or later")]
    ShuttingDown,
    /// The store refused the batch; nothing was accepted.
    #[error("events could not be stored: {0}")]
    Store(String),
}

/// The running ingest and dataflow threads.
pub struct Runtime {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    ingest_tx: Mutex<Option<mpsc::Sender<IngestRequest>>>,
    rule_tx: Mutex<std_mpsc::Sender<RuleUpdate>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stats: Arc<Mutex<EngineStats>>,
    stopping: Arc<AtomicBool>,
    latencies: Arc<Mutex<Vec<f64>>>,
}

/// Most acceptance-to-enqueue latency samples kept for benchmarks.
const MAX_LATENCY_SAMPLES: usize = 1_000_000;

impl Runtime {
    /// Rebuilds the dataflow state from the store and starts the threads.
    pub fn start(
        config: &Config,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Runtime>> {
        let lateness = Config::duration(&config.engine.allowed_lateness).as_millis() as i64;
        let tick = Config::duration(&config.engine.tick);
        let max_batch = config.engine.max_batch;
        let mut engine = Engine::start(EngineConfig {
            workers: config.engine.workers,
            allowed_lateness_ms: lateness,
        })?;

        // Rebuild: rules, open alerts, history, and what came after the checkpoint.
        let time_zones: HashMap<String, String> = store
            .list_tenants()?
            .into_iter()
            .map(|t| (t.id, t.time_zone))
            .collect();
        let mut metas = HashMap::new();
        let mut rules = Vec::new();
        let mut max_retention = 0;
        for stored in store.list_rules(None)? {
            let tz = time_zones
                .get(&stored.tenant)
                .map(String::as_str)
                .unwrap_or("UTC");
            match rule_update(&stored, tz) {
                Ok(update) => {
                    if let RuleChange::Upsert(rule) = &update.change {
                        max_retention = max_retention.max(rule.retention_ms());
                        rules.push(update.change.clone());
                        metas.insert(
                            (stored.tenant.clone(), stored.id.clone()),
                            update.meta.unwrap_or_default(),
                        );
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "skipping a stored rule that no longer compiles")
                }
            }
        }
        let mut restore = Vec::new();
        for alert in store.open_alerts(None)? {
            let group = serde_json::from_str::<Vec<serde_json::Value>>(&alert.group_key)
                .map(|values| values.iter().map(AttrValue::from_json).collect::<Vec<_>>());
            let since = store
                .get_notification(&alert.tenant, &alert.notification_id)?
                .and_then(|n| {
                    n.payload
                        .pointer("/window/start_ms")
                        .and_then(|v| v.as_i64())
                });
            if let (Ok(group), Some(since_window)) = (group, since) {
                restore.push(OpenAlert {
                    tenant: alert.tenant,
                    rule_id: alert.rule_id,
                    group,
                    since_window,
                });
            }
        }
        let processed: u64 = store
            .get_meta(PROCESSED_SEQ)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let clock = now_ms();
        let mut history = Vec::new();
        if max_retention > 0 {
            let since = clock - max_retention - lateness;
            let mut after = 0;
            loop {
                let page = store.events_since_ts(since, after, 10_000)?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                for stored in page.into_iter().filter(|e| e.seq <= processed) {
                    if let Some(event) = parse_stored(&stored.body, &stored.tenant) {
                        history.push(event);
                    }
                }
                if after >= processed {
                    break;
                }
            }
        }
        let mut pending = Vec::new();
        let mut after = processed;
        loop {
            let page = store.events_after(after, 10_000)?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            pending.extend(
                page.into_iter()
                    .filter_map(|e| parse_stored(&e.body, &e.tenant)),
            );
        }
        tracing::info!(
            rules = rules.len(),
            open_alerts = restore.len(),
            history = history.len(),
            unprocessed = pending.len(),
            "rebuilding dataflow state from the store"
        );
        let first = engine.step(StepInput {
            events: pending,
            history,
            rules,
            restore,
            clock_ms: Some(clock),
        })?;
        let engine_thread = EngineThread {
            engine,
            store: store.clone(),
            metrics: metrics.clone(),
            metas,
            stats: Arc::new(Mutex::new(EngineStats::default())),
            latencies: Arc::new(Mutex::new(Vec::new())),
        };
        metrics.events_late.inc_by(first.late.len() as u64);
        engine_thread.commit(
            &engine_thread.notifications(&first.intents),
            (after > processed).then_some(after),
        )?;

        let (ingest_tx, ingest_rx) = mpsc::channel::<IngestRequest>(1024);
        let (batch_tx, batch_rx) = std_mpsc::sync_channel::<Committed>(4);
        let (rule_tx, rule_rx) = std_mpsc::channel::<RuleUpdate>();
        let stopping = Arc::new(AtomicBool::new(false));
        let stats = engine_thread.stats.clone();
        let latencies = engine_thread.latencies.clone();

        let committer = {
            let store = store.clone();
            let metrics = metrics.clone();
            std::thread::Builder::new()
                .name("tidemark-commit".into())
                .spawn(move || commit_loop(ingest_rx, batch_tx, store, metrics, max_batch))?
        };
        let stepper = std::thread::Builder::new()
            .name("tidemark-engine".into())
            .spawn(move || engine_thread.run(batch_rx, rule_rx, tick, max_batch))?;
        Ok(Arc::new(Runtime {
            store,
            metrics,
            ingest_tx: Mutex::new(Some(ingest_tx)),
            rule_tx: Mutex::new(rule_tx),
            threads: Mutex::new(vec![committer, stepper]),
            stats,
            stopping,
            latencies,
        }))
    }

    /// Appends events durably; returns once they are committed, one outcome per event.
    pub async fn ingest(
        &self,
        tenant: &str,
        parsed: Vec<Event>,
    ) -> Result<Vec<AppendOutcome>, IngestError> {
        let sender = self
            .ingest_tx
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .ok_or(IngestError::ShuttingDown)?;
        let events = parsed
            .iter()
            .map(|e| NewEvent {
                id: e.id.to_string(),
                tenant: tenant.to_string(),
                event_type: e.event_type.to_string(),
                ts_ms: e.ts_ms,
                body: e.to_json().to_string(),
            })
            .collect();
        let (reply, answer) = oneshot::channel();
        sender
            .send(IngestRequest {
                events,
                parsed,
                reply,
            })
            .await
            .map_err(|_| IngestError::ShuttingDown)?;
        answer
            .await
            .map_err(|_| IngestError::ShuttingDown)?
            .map_err(IngestError::Store)
    }

    /// Tells the dataflow about a stored rule change; it applies from the next epoch.
    pub fn rule_changed(&self, update: RuleUpdate) {
        if let Ok(tx) = self.rule_tx.lock() {
            let _ = tx.send(update);
        }
    }

    /// Engine counters.
    pub fn stats(&self) -> EngineStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }

    /// Takes the acceptance-to-enqueue latencies (seconds, one per committed batch) recorded so far.
    pub fn take_latencies(&self) -> Vec<f64> {
        self.latencies
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Stops accepting events, lets the threads finish what was committed, and waits for them.
    pub fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Ok(mut tx) = self.ingest_tx.lock() {
            tx.take();
        }
        let threads = self
            .threads
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for thread in threads {
            let _ = thread.join();
        }
    }
}

fn parse_stored(body: &str, tenant: &str) -> Option<Event> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    Event::from_json(&value, tenant).ok()
}

fn commit_loop(
    mut requests: mpsc::Receiver<IngestRequest>,
    batches: std_mpsc::SyncSender<Committed>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    max_batch: usize,
) {
    while let Some(first) = requests.blocking_recv() {
        let mut waiting = vec![first];
        let mut count = waiting[0].events.len();
        while count < max_batch {
            match requests.try_recv() {
                Ok(request) => {
                    count += request.events.len();
                    waiting.push(request);
                }
                Err(_) => break,
            }
        }
        let sizes: Vec<usize> = waiting.iter().map(|r| r.events.len()).collect();
        let all: Vec<NewEvent> = waiting
            .iter_mut()
            .flat_map(|r| std::mem::take(&mut r.events))
            .collect();
        let started = Instant::now();
        let result = store.append_events(&all);
        metrics
            .ingest_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(outcomes) => {
                let accepted_at = Instant::now();
                let mut fresh = Vec::new();
                let mut max_seq = 0;
                let mut offset = 0;
                for (request, n) in waiting.into_iter().zip(sizes) {
                    let Some(mine) = outcomes.get(offset..offset + n).map(<[_]>::to_vec) else {
                        let _ = request
                            .reply
                            .send(Err("the store answered for fewer events than sent".into()));
                        continue;
                    };
                    offset += n;
                    for (outcome, event) in mine.iter().zip(request.parsed) {
                        max_seq = max_seq.max(outcome.seq());
                        match outcome {
                            AppendOutcome::Appended { .. } => {
                                metrics.events_accepted.inc();
                                fresh.push(event);
                            }
                            AppendOutcome::Duplicate { .. } => {
                                metrics.events_duplicate.inc();
                            }
                        }
                    }
                    let _ = request.reply.send(Ok(mine));
                }
                if batches
                    .send(Committed {
                        events: fresh,
                        max_seq,
                        accepted_at,
                    })
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = all.len(), "group commit failed");
                for request in waiting {
                    let _ = request.reply.send(Err(e.to_string()));
                }
            }
        }
    }
}

struct EngineThread {
    engine: Engine,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    metas: HashMap<(String, String), RuleMeta>,
    stats: Arc<Mutex<EngineStats>>,
    latencies: Arc<Mutex<Vec<f64>>>,
}

impl EngineThread {
    fn run(
        mut self,
        batches: std_mpsc::Receiver<Committed>,
        rules: std_mpsc::Receiver<RuleUpdate>,
        tick: Duration,
        max_batch: usize,
    ) {
        let mut open = true;
        while open {
            let mut committed = Vec::new();
            match batches.recv_timeout(tick) {
                Ok(batch) => committed.push(batch),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
            let mut count: usize = committed.iter().map(|c| c.events.len()).sum();
            while count < max_batch {
                match batches.try_recv() {
                    Ok(batch) => {
                        count += batch.events.len();
                        committed.push(batch);
                    }
                    Err(_) => break,
                }
            }
            let mut changes = Vec::new();
            while let Ok(update) = rules.try_recv() {
                let (tenant, id) = match &update.change {
                    RuleChange::Upsert(rule) => (rule.tenant.clone(), rule.id.clone()),
                    RuleChange::Remove { tenant, rule_id } => (tenant.clone(), rule_id.clone()),
                };
                match update.meta {
                    Some(meta) => self.metas.insert((tenant, id), meta),
                    None => self.metas.remove(&(tenant, id)),
                };
                changes.push(update.change);
            }
            let max_seq = committed.iter().map(|c| c.max_seq).max().unwrap_or(0);
            let events: Vec<Event> = committed
                .iter_mut()
                .flat_map(|c| std::mem::take(&mut c.events))
                .collect();
            let started = Instant::now();
            let output = match self.engine.step(StepInput {
                events,
                rules: changes,
                clock_ms: Some(now_ms()),
                ..Default::default()
            }) {
                Ok(output) => output,
                Err(e) => {
                    tracing::error!(error = %e, "dataflow stopped; the server must be restarted");
                    return;
                }
            };
            self.metrics
                .engine_step_seconds
                .observe(started.elapsed().as_secs_f64());
            let notifications = self.notifications(&output.intents);
            self.metrics.events_late.inc_by(output.late.len() as u64);
            let mut retries = 0;
            loop {
                let committing = Instant::now();
                match self.commit(&notifications, (max_seq > 0).then_some(max_seq)) {
                    Ok(_) => {
                        self.metrics
                            .outbox_commit_seconds
                            .observe(committing.elapsed().as_secs_f64());
                        break;
                    }
                    Err(e) => {
                        // The events are durable; keep trying rather than lose their notifications.
                        retries += 1;
                        tracing::error!(error = %e, retries, "could not enqueue notifications; retrying");
                        std::thread::sleep(Duration::from_millis(200 * retries.min(25)));
                    }
                }
            }
            if let Ok(mut samples) = self.latencies.lock() {
                for batch in &committed {
                    let latency = batch.accepted_at.elapsed().as_secs_f64();
                    self.metrics.event_to_enqueue_seconds.observe(latency);
                    if samples.len() < MAX_LATENCY_SAMPLES {
                        samples.push(latency);
                    }
                }
            }
            let stats = self.engine.stats();
            self.metrics.rules_active.set(stats.rules as i64);
            self.metrics.events_retained.set(stats.retained as i64);
            self.metrics
                .throttle_keys
                .set(stats.state.throttle_keys as i64);
            self.metrics
                .notifications_throttled
                .set(stats.state.throttled as i64);
            if let Ok(mut shared) = self.stats.lock() {
                *shared = stats;
            }
        }
    }

    /// Commits a step's notifications and, with them, the event position it processed up to:
    /// one transaction, so one fsync on the path from event to outbox.
    fn commit(
        &self,
        notifications: &[(i64, Vec<NewNotification>)],
        processed: Option<u64>,
    ) -> StoreResult<usize> {
        let processed = processed.map(|seq| seq.to_string());
        self.store.commit_step(
            notifications,
            processed.as_deref().map(|seq| (PROCESSED_SEQ, seq)),
        )
    }

    /// The notifications of a step's intents, grouped by when they are due.
    fn notifications(&self, intents: &[operators::Intent]) -> Vec<(i64, Vec<NewNotification>)> {
        let now = now_ms();
        let mut by_time: std::collections::BTreeMap<i64, Vec<NewNotification>> = Default::default();
        for intent in intents {
            let meta = self
                .metas
                .get(&(intent.tenant.clone(), intent.rule_id.clone()))
                .cloned()
                .unwrap_or_default();
            let payload = render::payload(intent, &meta.name, meta.template.as_deref());
            let group: Vec<serde_json::Value> =
                intent.group.iter().map(|(_, v)| v.to_json()).collect();
            Metrics::inc(&self.metrics.notifications, "kind", intent.kind.as_str(), 1);
            by_time
                .entry(intent.deliver_at_ms.max(now))
                .or_default()
                .push(NewNotification {
                    id: intent.id.clone(),
                    tenant: intent.tenant.clone(),
                    rule_id: intent.rule_id.clone(),
                    kind: intent.kind.as_str().to_string(),
                    group_key: serde_json::Value::Array(group).to_string(),
                    payload: payload.to_string(),
                    created_at_ms: now,
                    destination_ids: meta.destinations.clone(),
                });
        }
        by_time.into_iter().collect()
    }
}
