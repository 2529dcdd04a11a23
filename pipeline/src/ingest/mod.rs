//! The runtime: the ingest path from "events accepted" to "notifications enqueued".
//!
//! ```text
//! HTTP handlers ─ingest()─► committer thread ─(one transaction per batch, then ack)─►
//!     engine thread ─ Engine::step (timely workers) ─► outbox thread ─ render ─► outbox (store)
//! rule API ─rule_changed()───────────────────────────────► engine thread
//! ```
//!
//! Group commit: the committer takes every request waiting (up to `engine.max_batch` events)
//! and appends them in one transaction; producers are answered only after it is durable. The
//! engine thread steps the dataflow once per batch (or per tick when idle, to move the clock) and
//! hands the intents to the outbox thread, which renders them (templates run there, bounded, never
//! on the engine thread) and enqueues them with the last event sequence number the step fully
//! processed. On start
//! the state is rebuilt from the store: rules, open alerts, the events still inside some window
//! (as history), and the events after the checkpoint (as new: their notification ids are
//! deterministic, so re-enqueueing them adds nothing).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self as std_mpsc, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use connectors::store::{
    AppendOutcome, NewEvent, NewNotification, NewReportRun, SourceProgress, Store, StoreError,
    StoreResult,
};
use operators::engine::EngineStats;
use operators::{
    AttrValue, ClusterConfig, Engine, EngineConfig, Event, OpenAlert, StepInput, StepOutput,
};
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::generate;
use crate::metrics::Metrics;

mod cluster;
mod commit;
mod engine;
pub mod event_body;
mod outbox;
mod recovery;
mod rules;

use cluster::ClusterProgress;
pub use commit::{CommitFeed, EventFeed};
use commit::{Committed, IngestRequest, commit_loop};
use engine::EngineThread;
use event_body::{event_from_stored, stored_body};
use outbox::{OutboxThread, Step};
use rules::ActiveRules;
pub use rules::{RuleUpdate, StoredRuleError};

/// Meta key of the last event sequence number whose notifications are enqueued.
const PROCESSED_SEQ: &str = "engine.processed_seq";

pub use connectors::clock::now_ms;

/// Why ingest failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The runtime is shutting down.
    #[error("the server is shutting down; retry against another instance or later")]
    ShuttingDown,
    /// The store refused the batch; nothing was accepted.
    #[error("events could not be stored: {0}")]
    Store(#[source] Arc<StoreError>),
    /// The store answered for fewer events than the batch held; the producer should retry
    /// (ids make a retry safe).
    #[error("events could not be stored: the store answered for {answered} of {sent} events")]
    Incomplete {
        /// Events in the batch.
        sent: usize,
        /// Outcomes the store returned.
        answered: usize,
    },
}

/// The running ingest and dataflow threads.
pub struct Runtime {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    ingest_tx: Mutex<Option<mpsc::Sender<IngestRequest>>>,
    rule_tx: Mutex<std_mpsc::Sender<RuleUpdate>>,
    schedule_tx: Mutex<std_mpsc::Sender<operators::ScheduleChange>>,
    report_wake: Arc<tokio::sync::Notify>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stats: Arc<Mutex<EngineStats>>,
    stopping: Arc<AtomicBool>,
    latencies: Arc<Mutex<Vec<f64>>>,
    event_times: operators::EventTimeRange,
    templates: generate::TemplateLimits,
    progress: Arc<ClusterProgress>,
    /// Where the committer hands each commit's new events, once set.
    feeds: Arc<commit::Feeds>,
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
        let lateness = config.engine.allowed_lateness.as_millis();
        let tick = config.engine.tick.get();
        let max_batch = config.engine.max_batch;
        let cluster = match &config.cluster {
            Some(settings) => {
                let hosts = settings.read_hosts()?;
                tracing::info!(
                    process = settings.process,
                    processes = hosts.len(),
                    "joining the dataflow cluster; waiting until every process has connected"
                );
                Some(ClusterConfig {
                    process: settings.process,
                    addresses: hosts.into_iter().map(|host| host.exchange).collect(),
                })
            }
            None => None,
        };
        let clustered = cluster.is_some();
        let mut engine = Engine::start(EngineConfig {
            workers: config.engine.workers,
            allowed_lateness_ms: lateness,
            cluster,
        })?;
        let progress = Arc::new(ClusterProgress::default());
        if let Some(settings) = &config.cluster {
            tracing::info!("the dataflow cluster is formed");
            progress.watch(settings.stall_timeout.get())?;
        }

        // First the definitions, then (once the cluster agrees how much history its rules
        // need) the log.
        let definitions = recovery::recover_definitions(store.as_ref())?;
        let processed = definitions.processed;
        let horizon_ms = definitions.input.horizon_ms;
        let agreed = progress.step(&mut engine, definitions.input)?;
        let replay = recovery::replay_log(
            store.as_ref(),
            processed,
            agreed.cluster_horizon_ms,
            lateness,
        )?;
        let after = replay.after;
        let first = progress.step(
            &mut engine,
            StepInput {
                horizon_ms,
                ..replay.input
            },
        )?;
        let mut engine_thread = EngineThread {
            engine,
            metrics: metrics.clone(),
            rules: definitions.rules,
            stats: Arc::new(Mutex::new(EngineStats::default())),
            progress: progress.clone(),
            positions: clustered.then(Default::default),
        };
        metrics.events_late.inc_by(first.late.len() as u64);
        // The recovered step's notifications are rendered and enqueued by the outbox thread like
        // any other step's, so start-up never waits on a template.
        let first = Step {
            epoch: first.epoch,
            processed: engine_thread.position(
                first.epoch,
                (after > processed).then_some(after),
                first.cluster_committed,
            ),
            intents: engine_thread.with_meta(first.intents),
            accepted_at: Vec::new(),
            due_runs: first.due_runs,
        };

        let (ingest_tx, ingest_rx) = mpsc::channel::<IngestRequest>(1024);
        let (batch_tx, batch_rx) = std_mpsc::sync_channel::<Committed>(4);
        let (rule_tx, rule_rx) = std_mpsc::channel::<RuleUpdate>();
        let (schedule_tx, schedule_rx) = std_mpsc::channel::<operators::ScheduleChange>();
        let report_wake = Arc::new(tokio::sync::Notify::new());
        let (step_tx, step_rx) = std_mpsc::sync_channel::<Step>(4);
        let stopping = Arc::new(AtomicBool::new(false));
        let stats = engine_thread.stats.clone();
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let templates = config.templates.limits();

        let outbox = {
            let outbox_thread = OutboxThread {
                store: store.clone(),
                metrics: metrics.clone(),
                renderer: generate::Renderer::new(templates),
                latencies: latencies.clone(),
                report_wake: report_wake.clone(),
                progress: progress.clone(),
            };
            std::thread::Builder::new()
                .name("tidemark-outbox".into())
                .spawn(move || outbox_thread.run(step_rx))?
        };
        step_tx
            .send(first)
            .map_err(|_| anyhow::anyhow!("the outbox thread stopped at start"))?;
        let feeds = Arc::new(commit::Feeds::default());
        let committer = {
            let (store, metrics, feeds) = (store.clone(), metrics.clone(), feeds.clone());
            std::thread::Builder::new()
                .name("tidemark-commit".into())
                .spawn(move || commit_loop(ingest_rx, batch_tx, store, metrics, max_batch, feeds))?
        };
        let stepper = std::thread::Builder::new()
            .name("tidemark-engine".into())
            .spawn(move || {
                engine_thread.run(batch_rx, rule_rx, schedule_rx, step_tx, tick, max_batch)
            })?;
        Ok(Arc::new(Runtime {
            store,
            metrics,
            ingest_tx: Mutex::new(Some(ingest_tx)),
            rule_tx: Mutex::new(rule_tx),
            schedule_tx: Mutex::new(schedule_tx),
            report_wake,
            threads: Mutex::new(vec![committer, stepper, outbox]),
            stats,
            stopping,
            latencies,
            event_times: config.ingest.event_time_range(),
            templates,
            progress,
            feeds,
        }))
    }

    /// From now on, hands `feed` every commit's new events (the log's last position before
    /// them, and the events in log order) as they are committed, before their producers are
    /// answered. Only the first feed set takes effect; `false` when one was set already.
    pub fn feed_committed_to(&self, feed: CommitFeed) -> bool {
        self.feeds.stored.set(feed).is_ok()
    }

    /// From now on, hands `feed` every commit's new events as decoded (the log's last position
    /// before them, and each event with its position, in log order) as they are committed. Only
    /// the first feed set takes effect; `false` when one was set already.
    pub fn feed_events_to(&self, feed: EventFeed) -> bool {
        self.feeds.decoded.set(feed).is_ok()
    }

    /// Appends events durably; returns once they are committed, one outcome per event.
    pub async fn ingest(
        &self,
        tenant: &str,
        parsed: Vec<Event>,
    ) -> Result<Vec<AppendOutcome>, IngestError> {
        self.submit(Some(tenant), parsed, SourceProgress::default())
            .await
    }

    /// Appends a source's events (each of its own tenant) together with where the source got
    /// to and what it refused, all in one transaction; returns once committed, one outcome per
    /// event. Refused records alone (no events) still move the source's position on.
    pub async fn ingest_from_source(
        &self,
        parsed: Vec<Event>,
        progress: SourceProgress,
    ) -> Result<Vec<AppendOutcome>, IngestError> {
        self.submit(None, parsed, progress).await
    }

    /// Hands events to the committer: under `tenant`, or each under its own when `None`.
    async fn submit(
        &self,
        tenant: Option<&str>,
        parsed: Vec<Event>,
        progress: SourceProgress,
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
                tenant: tenant.unwrap_or(&e.tenant).to_string(),
                event_type: e.event_type.to_string(),
                ts_ms: e.ts_ms,
                body: stored_body(e),
            })
            .collect();
        let (reply, answer) = oneshot::channel();
        sender
            .send(IngestRequest {
                events,
                parsed,
                progress,
                reply,
            })
            .await
            .map_err(|_| IngestError::ShuttingDown)?;
        answer.await.map_err(|_| IngestError::ShuttingDown)?
    }

    /// Sets what runs before this process leaves its cluster (exit status 75) because the
    /// cluster lost a process; bounded by the caller.
    pub fn before_leaving_the_cluster(&self, leaving: impl FnOnce() + Send + 'static) {
        self.progress.before_leaving(Box::new(leaving));
    }

    /// The event times ingest accepts (`[ingest]`); sources check each event against it.
    pub fn event_time_range(&self) -> operators::EventTimeRange {
        self.event_times
    }

    /// The limits rule templates render under (`[templates]`); rule changes check against them.
    pub fn template_limits(&self) -> generate::TemplateLimits {
        self.templates
    }

    /// Tells the dataflow about a stored rule change; it applies from the next epoch.
    pub fn rule_changed(&self, update: RuleUpdate) {
        if let Ok(tx) = self.rule_tx.lock() {
            let _ = tx.send(update);
        }
    }

    /// Tells the dataflow about a report's schedule change (an upsert of its new schedule, or
    /// its removal when deleted or disabled); it applies from the next epoch.
    pub fn schedule_changed(&self, change: operators::ScheduleChange) {
        if let Ok(tx) = self.schedule_tx.lock() {
            let _ = tx.send(change);
        }
    }

    /// What wakes the report generator when runs become due (the outbox thread and
    /// `POST /v1/reports/{id}/run` notify it).
    pub fn report_wake(&self) -> Arc<tokio::sync::Notify> {
        self.report_wake.clone()
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
