//! The outbox thread: renders each step's intents into notifications ([`generate`]) and commits
//! them together with the event position the step processed — one transaction, so a crash
//! leaves either both or neither, and a replay after a restart regenerates the same ids.
//!
//! Steps are committed in the order the engine thread produced them, so the recorded position
//! only ever moves forward. Rendering runs under the template limits on the renderer's worker,
//! so a runaway template costs its own notifications (a fallback message), never the others',
//! never the dataflow, never start-up.

use super::*;

/// One engine step's output, handed from the engine thread.
pub(super) struct Step {
    /// The dataflow epoch it was.
    pub(super) epoch: u64,
    /// The intents, each with its rule's metadata.
    pub(super) intents: Vec<(operators::Intent, Arc<operators::RuleMeta>)>,
    /// The last event sequence number the step processed, when it processed events.
    pub(super) processed: Option<u64>,
    /// When the step's batches were accepted, for the acceptance-to-enqueue latency.
    pub(super) accepted_at: Vec<Instant>,
    /// Report runs the schedules made due in the step.
    pub(super) due_runs: Vec<operators::DueRun>,
}

pub(super) struct OutboxThread {
    pub(super) store: Arc<dyn Store>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) renderer: generate::Renderer,
    pub(super) latencies: Arc<Mutex<Vec<f64>>>,
    /// Wakes the report generator when runs become due.
    pub(super) report_wake: Arc<tokio::sync::Notify>,
    /// Where the outbox tells which epochs it has made durable.
    pub(super) progress: Arc<ClusterProgress>,
}

impl OutboxThread {
    pub(super) fn run(mut self, steps: std_mpsc::Receiver<Step>) {
        for step in steps {
            let notifications = self.notifications(&step.intents);
            // A cluster's idle epochs come here too, only to be counted durable.
            if !notifications.is_empty() || step.processed.is_some() {
                self.commit_until_done(&notifications, step.processed);
            }
            if !step.due_runs.is_empty() {
                self.record_due_runs(&step.due_runs);
            }
            self.progress.made_durable(step.epoch);
            if let Ok(mut samples) = self.latencies.lock() {
                for accepted_at in &step.accepted_at {
                    let latency = accepted_at.elapsed().as_secs_f64();
                    self.metrics.event_to_enqueue_seconds.observe(latency);
                    if samples.len() < MAX_LATENCY_SAMPLES {
                        samples.push(latency);
                    }
                }
            }
        }
    }

    /// Commits a step's notifications and position, retrying until the store takes them: the
    /// events are durable, so their notifications must not be lost.
    fn commit_until_done(
        &self,
        notifications: &[(i64, Vec<NewNotification>)],
        processed: Option<u64>,
    ) {
        let mut retries = 0;
        loop {
            let committing = Instant::now();
            match self.commit(notifications, processed) {
                Ok(_) => {
                    self.metrics
                        .outbox_commit_seconds
                        .observe(committing.elapsed().as_secs_f64());
                    return;
                }
                Err(e) => {
                    retries += 1;
                    tracing::error!(error = %e, retries, "could not enqueue notifications; retrying");
                    std::thread::sleep(Duration::from_millis(200 * retries.min(25)));
                }
            }
        }
    }

    /// Records the runs that became due, for the report generator. A run id already recorded
    /// adds nothing, so a run emitted again after a restart is generated once. Should the
    /// store refuse for a while, the runs are retried here; were the process to die first, the
    /// schedules restart from the last recorded run and their catch-up policy emits them again.
    fn record_due_runs(&self, due: &[operators::DueRun]) {
        let now = now_ms();
        let runs: Vec<NewReportRun> = due
            .iter()
            .map(|run| NewReportRun {
                tenant: run.tenant.clone(),
                report_id: run.report_id.clone(),
                run_id: run.run_id.clone(),
                version: run.version,
                scheduled_ms: run.scheduled_ms,
                trigger: "schedule".into(),
                created_at_ms: now,
            })
            .collect();
        let mut retries = 0;
        loop {
            match self.store.add_runs(&runs) {
                Ok(added) => {
                    tracing::debug!(due = runs.len(), added, "report runs due");
                    self.report_wake.notify_one();
                    return;
                }
                Err(e) => {
                    retries += 1;
                    tracing::error!(error = %e, retries, "could not record due report runs; retrying");
                    std::thread::sleep(Duration::from_millis(200 * retries.min(25)));
                }
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
    fn notifications(
        &mut self,
        intents: &[(operators::Intent, Arc<operators::RuleMeta>)],
    ) -> Vec<(i64, Vec<NewNotification>)> {
        let now = now_ms();
        let payloads = generate::payloads(&mut self.renderer, intents);
        let mut by_time: std::collections::BTreeMap<i64, Vec<NewNotification>> = Default::default();
        for ((intent, meta), payload) in intents.iter().zip(payloads) {
            if payload.get("template_error").is_some() {
                self.metrics.templates_failed.inc();
            }
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
