//! The engine thread: steps the dataflow once per committed batch (or per tick when idle, to
//! move the clock), renders the intents and enqueues them with the processed event position.

use super::*;

pub(super) struct EngineThread {
    pub(super) engine: Engine,
    pub(super) store: Arc<dyn Store>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) rules: ActiveRules,
    pub(super) stats: Arc<Mutex<EngineStats>>,
    pub(super) latencies: Arc<Mutex<Vec<f64>>>,
}

impl EngineThread {
    pub(super) fn run(
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
                changes.push(self.rules.apply(update));
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
    pub(super) fn commit(
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
    pub(super) fn notifications(
        &self,
        intents: &[operators::Intent],
    ) -> Vec<(i64, Vec<NewNotification>)> {
        let now = now_ms();
        // An intent whose rule is no longer active is rendered with empty metadata.
        let gone = operators::RuleMeta::default();
        let mut by_time: std::collections::BTreeMap<i64, Vec<NewNotification>> = Default::default();
        for intent in intents {
            let meta = self
                .rules
                .meta(&intent.tenant, &intent.rule_id)
                .unwrap_or(&gone);
            let payload = generate::payload(intent, &meta.name, meta.template.as_deref());
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
