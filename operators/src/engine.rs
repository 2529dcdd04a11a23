//! The engine: runs the dataflow on timely worker threads and feeds it one epoch at a time.
//!
//! Each [`Engine::step`] is one epoch (a coarse timestamp): a batch of events, rule changes,
//! restored alerts and a clock reading go in together; the call returns once every worker has
//! finished the epoch, with the intents it produced. Tenants are partitioned across workers by a
//! stable hash, and the alert state is exchanged by tenant.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use crate::dataflow::{EventRecord, TypeKey, WorkerOutput, build};
use crate::event::Event;
use crate::intent::Intent;
use crate::rule::Rule;
use crate::state::{OpenAlert, StateInput, StateStats, tenant_hash};

/// Engine settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Timely worker threads.
    pub workers: usize,
    /// How far behind the clock an event may be and still count in its windows, ms.
    pub allowed_lateness_ms: i64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 1,
            allowed_lateness_ms: 60_000,
        }
    }
}

/// Engine failures.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Timely could not start its workers.
    #[error("could not start {workers} dataflow workers: {reason}")]
    Start {
        /// Requested workers.
        workers: usize,
        /// Timely's message.
        reason: String,
    },
    /// A worker thread stopped (it panicked or its channel closed).
    #[error("dataflow worker stopped unexpectedly")]
    WorkerGone,
    /// Bad configuration.
    #[error("{0}")]
    Config(String),
}

/// A change to the rule set.
// Rule changes are rare and short-lived; boxing the rule would only add noise at every call site.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleChange {
    /// A new or changed (or re-enabled) rule.
    Upsert(Rule),
    /// A deleted or disabled rule.
    Remove {
        /// Tenant.
        tenant: String,
        /// Rule id.
        rule_id: String,
    },
}

/// One epoch's input.
#[derive(Clone, Debug, Default)]
pub struct StepInput {
    /// New events.
    pub events: Vec<Event>,
    /// Events replayed from the log after a restart: they rebuild windows but trigger no match.
    pub history: Vec<Event>,
    /// Rule changes, applied before this epoch's events are matched.
    pub rules: Vec<RuleChange>,
    /// Alerts that were firing before a restart.
    pub restore: Vec<OpenAlert>,
    /// Current time, epoch ms; the watermark is this minus the allowed lateness.
    pub clock_ms: Option<i64>,
}

/// An event that arrived after the allowed lateness: matched, but not counted in any window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LateEvent {
    /// Tenant.
    pub tenant: String,
    /// Event id.
    pub id: String,
    /// Event time.
    pub ts_ms: i64,
    /// The watermark it missed.
    pub watermark_ms: i64,
}

/// One epoch's output.
#[derive(Clone, Debug, Default)]
pub struct StepOutput {
    /// The epoch.
    pub epoch: u64,
    /// Intents, ordered by event time and id.
    pub intents: Vec<Intent>,
    /// Events too late for their windows.
    pub late: Vec<LateEvent>,
}

/// Counters since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Events fed.
    pub events: u64,
    /// Events too late for their windows.
    pub late: u64,
    /// Events retired from window state.
    pub retired: u64,
    /// Events currently held for windows.
    pub retained: u64,
    /// Active rules.
    pub rules: u64,
    /// Alert-state counters, summed over workers.
    pub state: StateStats,
}

struct Retiring {
    at: i64,
    seq: u64,
    worker: usize,
    record: (TypeKey, EventRecord),
}

impl PartialEq for Retiring {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Retiring {}
impl PartialOrd for Retiring {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Retiring {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
struct Command {
    epoch: u64,
    events: Vec<((TypeKey, EventRecord), isize)>,
    rules: Vec<((TypeKey, Rule), isize)>,
    control: Vec<StateInput>,
}

/// The running dataflow.
pub struct Engine {
    config: EngineConfig,
    senders: Vec<Sender<Command>>,
    outputs: Receiver<WorkerOutput>,
    guards: Option<timely::communication::WorkerGuards<()>>,
    worker_stats: Vec<Arc<Mutex<StateStats>>>,
    epoch: u64,
    watermark_ms: i64,
    rules: HashMap<(String, String), Rule>,
    /// Longest window span of any rule per (tenant, type): how long its events are retained.
    retention: HashMap<TypeKey, i64>,
    retire_next_epoch: Vec<(usize, (TypeKey, EventRecord))>,
    retire_at: BinaryHeap<Reverse<Retiring>>,
    seq: u64,
    stats: EngineStats,
}

impl Engine {
    /// Starts the worker threads.
    pub fn start(config: EngineConfig) -> Result<Engine, EngineError> {
        if config.workers == 0 || config.workers > 256 {
            return Err(EngineError::Config(format!(
                "workers: {} is out of range; use 1 to 256",
                config.workers
            )));
        }
        if config.allowed_lateness_ms < 0 {
            return Err(EngineError::Config(
                "allowed lateness must not be negative".into(),
            ));
        }
        let workers = config.workers;
        let (out_tx, outputs) = mpsc::channel();
        let mut senders = Vec::with_capacity(workers);
        let mut receivers = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = mpsc::channel::<Command>();
            senders.push(tx);
            receivers.push(Some(rx));
        }
        let receivers = Arc::new(Mutex::new(receivers));
        let worker_stats: Vec<_> = (0..workers)
            .map(|_| Arc::new(Mutex::new(StateStats::default())))
            .collect();
        let shared_stats = worker_stats.clone();
        let out_tx = Mutex::new(out_tx);
        let timely_config = if workers == 1 {
            timely::Config::thread()
        } else {
            timely::Config::process(workers)
        };
        let guards = timely::execute(timely_config, move |worker| {
            let index = worker.index();
            let Some(commands) = receivers.lock().ok().and_then(|mut r| r[index].take()) else {
                return;
            };
            let Some(output) = out_tx.lock().ok().map(|tx| tx.clone()) else {
                return;
            };
            let mut inputs = build(worker, output.clone(), shared_stats[index].clone());
            while let Ok(command) = commands.recv() {
                for (record, diff) in command.events {
                    inputs.events.update(record, diff);
                }
                for (rule, diff) in command.rules {
                    inputs.rules.update(rule, diff);
                }
                for control in command.control {
                    inputs.control.send(control);
                }
                let next = command.epoch + 1;
                inputs.events.advance_to(next);
                inputs.events.flush();
                inputs.rules.advance_to(next);
                inputs.rules.flush();
                inputs.control.advance_to(next);
                worker.step_while(|| inputs.probe.less_than(&next));
                if output
                    .send(WorkerOutput::Done {
                        worker: index,
                        epoch: command.epoch,
                    })
                    .is_err()
                {
                    return;
                }
            }
        })
        .map_err(|reason| EngineError::Start { workers, reason })?;
        Ok(Engine {
            config,
            senders,
            outputs,
            guards: Some(guards),
            worker_stats,
            epoch: 0,
            watermark_ms: 0,
            rules: HashMap::new(),
            retention: HashMap::new(),
            retire_next_epoch: Vec::new(),
            retire_at: BinaryHeap::new(),
            seq: 0,
            stats: EngineStats::default(),
        })
    }

    /// The current watermark: events before it are late.
    pub fn watermark_ms(&self) -> i64 {
        self.watermark_ms
    }

    /// Counters since start.
    pub fn stats(&self) -> EngineStats {
        let mut stats = self.stats;
        stats.rules = self.rules.len() as u64;
        stats.retained = self.retire_at.len() as u64 + self.retire_next_epoch.len() as u64;
        for shared in &self.worker_stats {
            if let Ok(s) = shared.lock() {
                stats.state.matches += s.matches;
                stats.state.firing += s.firing;
                stats.state.resolved += s.resolved;
                stats.state.throttled += s.throttled;
                stats.state.deferred += s.deferred;
                stats.state.windows_closed += s.windows_closed;
            }
        }
        stats
    }

    /// Whether a rule is active.
    pub fn has_rule(&self, tenant: &str, rule_id: &str) -> bool {
        self.rules
            .contains_key(&(tenant.to_string(), rule_id.to_string()))
    }

    fn worker_of(&self, tenant: &str) -> usize {
        (tenant_hash(tenant) % self.senders.len() as u64) as usize
    }

    /// Runs one epoch.
    pub fn step(&mut self, input: StepInput) -> Result<StepOutput, EngineError> {
        let epoch = self.epoch;
        let workers = self.senders.len();
        let mut commands: Vec<Command> = (0..workers)
            .map(|_| Command {
                epoch,
                ..Default::default()
            })
            .collect();

        // Retire events whose windows have all been judged (or that only `match` rules needed).
        for (worker, record) in std::mem::take(&mut self.retire_next_epoch) {
            commands[worker].events.push((record, -1));
            self.stats.retired += 1;
        }

        for change in input.rules {
            match change {
                RuleChange::Upsert(mut rule) => {
                    rule.since_epoch = epoch;
                    let worker = self.worker_of(&rule.tenant);
                    let key = (rule.tenant.clone(), rule.id.clone());
                    if let Some(old) = self.rules.remove(&key) {
                        commands[worker]
                            .rules
                            .push((((old.tenant.clone(), old.event_type.clone()), old), -1));
                    }
                    let type_key = (rule.tenant.clone(), rule.event_type.clone());
                    let span = rule.retention_ms();
                    let entry = self.retention.entry(type_key.clone()).or_insert(0);
                    *entry = (*entry).max(span);
                    commands[worker].rules.push(((type_key, rule.clone()), 1));
                    commands[worker]
                        .control
                        .push(StateInput::Upsert(rule.clone()));
                    self.rules.insert(key, rule);
                }
                RuleChange::Remove { tenant, rule_id } => {
                    let worker = self.worker_of(&tenant);
                    if let Some(old) = self.rules.remove(&(tenant.clone(), rule_id.clone())) {
                        commands[worker]
                            .rules
                            .push((((old.tenant.clone(), old.event_type.clone()), old), -1));
                    }
                    commands[worker]
                        .control
                        .push(StateInput::Remove { tenant, rule_id });
                }
            }
        }
        for alert in input.restore {
            let worker = self.worker_of(&alert.tenant);
            commands[worker].control.push(StateInput::Restore(alert));
        }

        if let Some(clock) = input.clock_ms {
            self.watermark_ms = self
                .watermark_ms
                .max(clock - self.config.allowed_lateness_ms);
        }
        let watermark = self.watermark_ms;
        let mut late = Vec::new();
        let history = input.history.into_iter().map(|e| (e, false));
        for (event, for_matches) in input.events.into_iter().map(|e| (e, true)).chain(history) {
            let worker = self.worker_of(&event.tenant);
            let type_key = (event.tenant.clone(), event.event_type.clone());
            let span = self.retention.get(&type_key).copied().unwrap_or(0);
            // Replayed history was on time when it first arrived; it still counts in every window
            // that has not closed yet, and is of no use to any other.
            let on_time = if for_matches {
                event.ts_ms >= watermark
            } else {
                event.ts_ms.saturating_add(span) > watermark
            };
            if !on_time && for_matches {
                self.stats.late += 1;
                late.push(LateEvent {
                    tenant: event.tenant.clone(),
                    id: event.id.clone(),
                    ts_ms: event.ts_ms,
                    watermark_ms: watermark,
                });
            }
            if !on_time && !for_matches {
                continue;
            }
            let span = if on_time { span } else { 0 };
            let record = (
                type_key,
                EventRecord {
                    epoch,
                    for_windows: on_time,
                    for_matches,
                    event,
                },
            );
            self.stats.events += u64::from(for_matches);
            commands[worker].events.push((record.clone(), 1));
            if span == 0 {
                self.retire_next_epoch.push((worker, record));
            } else {
                self.seq += 1;
                let at = record.1.event.ts_ms.saturating_add(span);
                self.retire_at.push(Reverse(Retiring {
                    at,
                    seq: self.seq,
                    worker,
                    record,
                }));
            }
        }
        while let Some(Reverse(first)) = self.retire_at.peek() {
            if first.at > watermark {
                break;
            }
            let Some(Reverse(retiring)) = self.retire_at.pop() else {
                break;
            };
            // Retract one epoch later, so the closing of its last window is judged first.
            self.retire_next_epoch
                .push((retiring.worker, retiring.record));
        }
        if input.clock_ms.is_some() {
            for (worker, command) in commands.iter_mut().enumerate() {
                command.control.push(StateInput::Clock {
                    route: worker as u64,
                    watermark_ms: watermark,
                });
            }
        }

        for (sender, command) in self.senders.iter().zip(commands) {
            sender.send(command).map_err(|_| EngineError::WorkerGone)?;
        }
        let mut intents = Vec::new();
        let mut done = 0;
        while done < workers {
            match self.outputs.recv() {
                Ok(WorkerOutput::Intents(batch)) => intents.extend(batch),
                Ok(WorkerOutput::Done { epoch: e, .. }) if e == epoch => done += 1,
                Ok(WorkerOutput::Done { .. }) => {}
                Err(_) => return Err(EngineError::WorkerGone),
            }
        }
        intents.sort_by(|a, b| (a.at_ms, &a.id).cmp(&(b.at_ms, &b.id)));
        self.epoch += 1;
        Ok(StepOutput {
            epoch,
            intents,
            late,
        })
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.senders.clear();
        if let Some(guards) = self.guards.take() {
            let _ = guards.join();
        }
    }
}
