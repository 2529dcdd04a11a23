//! The engine thread: steps the dataflow once per committed batch (or per tick when idle, to
//! move the clock) and hands each step's intents, with their rules' metadata and the event
//! position the step processed, to the outbox thread ([`super::outbox`]), which renders and
//! enqueues them. No template runs here, so none can hold up the dataflow.

use super::*;

pub(super) struct EngineThread {
    pub(super) engine: Engine,
    pub(super) metrics: Arc<Metrics>,
    pub(super) rules: ActiveRules,
    pub(super) stats: Arc<Mutex<EngineStats>>,
    /// The epoch this process has made durable, and the watch on steps (in a cluster).
    pub(super) progress: Arc<ClusterProgress>,
    /// In a cluster: the log positions of the steps not yet durable in the whole cluster, by
    /// epoch (`None` for a single process, whose step's position is its own).
    pub(super) positions: Option<std::collections::VecDeque<(u64, u64)>>,
}

impl EngineThread {
    pub(super) fn run(
        mut self,
        batches: std_mpsc::Receiver<Committed>,
        rules: std_mpsc::Receiver<RuleUpdate>,
        schedules: std_mpsc::Receiver<operators::ScheduleChange>,
        outbox: std_mpsc::SyncSender<Step>,
        tick: Duration,
        max_batch: usize,
    ) {
        let mut open = true;
        while open {
            let mut committed = Vec::new();
            // Idle, the thread steps once per tick to move the clock, or at the next report
            // schedule's slot if that comes first, so a due run is not late by the tick.
            let wait = self.engine.next_due_ms().map_or(tick, |due| {
                let until = u64::try_from(due.saturating_sub(now_ms())).unwrap_or(0);
                tick.min(Duration::from_millis(until))
            });
            match batches.recv_timeout(wait) {
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
            let schedule_changes: Vec<operators::ScheduleChange> = schedules.try_iter().collect();
            let max_seq = committed.iter().map(|c| c.max_seq).max().unwrap_or(0);
            let events: Vec<Event> = committed
                .iter_mut()
                .flat_map(|c| std::mem::take(&mut c.events))
                .collect();
            let started = Instant::now();
            let input = StepInput {
                events,
                rules: changes,
                schedules: schedule_changes,
                clock_ms: Some(now_ms()),
                committed: self.progress.durable(),
                horizon_ms: self.rules.horizon_ms(),
                ..Default::default()
            };
            let output = match self.progress.step(&mut self.engine, input) {
                Ok(output) => output,
                Err(e) if self.positions.is_some() => self.progress.leave(&e.to_string()),
                Err(e) => {
                    tracing::error!(error = %e, "dataflow stopped; the server must be restarted");
                    return;
                }
            };
            self.metrics
                .engine_step_seconds
                .observe(started.elapsed().as_secs_f64());
            self.metrics.events_late.inc_by(output.late.len() as u64);
            let step = Step {
                epoch: output.epoch,
                processed: self.position(
                    output.epoch,
                    (max_seq > 0).then_some(max_seq),
                    output.cluster_committed,
                ),
                intents: self.with_meta(output.intents),
                accepted_at: committed.iter().map(|c| c.accepted_at).collect(),
                due_runs: output.due_runs,
            };
            // An idle tick with nothing to enqueue and no position to record has nothing to
            // hand over — except in a cluster, where the outbox counts every epoch it has made
            // durable, empty or not.
            let idle = step.intents.is_empty()
                && step.processed.is_none()
                && step.accepted_at.is_empty()
                && step.due_runs.is_empty()
                && self.positions.is_none();
            if !idle && outbox.send(step).is_err() {
                tracing::error!("the outbox thread stopped; the server must be restarted");
                return;
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

    /// The log position the outbox may record with the step of `epoch`, which processed this
    /// process's events up to `seq`. Alone, that is `seq`. In a cluster the step's events may
    /// have been matched by other processes, so a position is recorded only once every process
    /// has made its epoch durable (`cluster_committed`): until then a restart replays it.
    pub(super) fn position(
        &mut self,
        epoch: u64,
        seq: Option<u64>,
        cluster_committed: Option<u64>,
    ) -> Option<u64> {
        let Some(positions) = &mut self.positions else {
            return seq;
        };
        if let Some(seq) = seq {
            positions.push_back((epoch, seq));
        }
        let mut durable = None;
        while let Some(&(e, seq)) = positions.front()
            && cluster_committed.is_some_and(|c| e <= c)
        {
            durable = Some(seq);
            positions.pop_front();
        }
        durable
    }

    /// Pairs each intent with its rule's metadata; an intent whose rule is no longer active
    /// gets empty metadata.
    pub(super) fn with_meta(
        &self,
        intents: Vec<operators::Intent>,
    ) -> Vec<(operators::Intent, Arc<operators::RuleMeta>)> {
        let gone = Arc::new(operators::RuleMeta::default());
        intents
            .into_iter()
            .map(|intent| {
                let meta = self
                    .rules
                    .meta(&intent.tenant, &intent.rule_id)
                    .unwrap_or(&gone)
                    .clone();
                (intent, meta)
            })
            .collect()
    }
}
