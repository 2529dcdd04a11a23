//! The engine: runs the dataflow on timely worker threads and feeds it one epoch at a time.
//!
//! Each [`Engine::step`] is one epoch (a coarse timestamp): a batch of events, rule changes,
//! restored alerts and a clock reading go in together; the call returns once every worker has
//! finished the epoch, with the intents and report runs it produced. Tenants are partitioned
//! across workers by a stable hash: the engine splits the epoch's input by owner, its workers
//! feed the shares into the dataflow, and a timely `Exchange` on the owner takes each share to
//! the worker that keeps that tenant's rules, windows, alert state and report schedules.
//!
//! In a cluster ([`ClusterConfig`]) N processes, each with its own engine, form one timely
//! computation over TCP: the owner is chosen among all the cluster's workers, so an event
//! ingested by any process is matched by the one worker that owns its tenant, and the intents
//! come out of the owner's process. The processes step in lockstep: epoch `e` completes
//! everywhere once every process has fed it. Every process sends every worker a share each
//! epoch (empty or not), carrying its clock and the latest epoch whose output it has made
//! durable, so each step also returns the epoch the whole cluster has made durable
//! ([`StepOutput::cluster_committed`]).

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::dataflow::{Arrival, EpochInput, EventSlot, WorkerOutput, WorkerStats, build};
use crate::event::Event;
use crate::exchange::ShareEvents;
use crate::intent::Intent;
use crate::rule::Rule;
use crate::schedule::{DueRun, Schedule};
use crate::state::{OpenAlert, StateStats, tenant_hash};
use crate::{HashSet, WorkerChannels};

/// Engine settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Timely worker threads (in a cluster: in this process).
    pub workers: usize,
    /// How far behind the clock an event may be and still count in its windows, ms.
    pub allowed_lateness_ms: i64,
    /// The timely cluster this engine is one process of; `None` for a single process.
    pub cluster: Option<ClusterConfig>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 1,
            allowed_lateness_ms: 60_000,
            cluster: None,
        }
    }
}

/// The worker that owns `tenant` among `peers` workers (a cluster's workers are numbered
/// process by process, so the owning process is this divided by its workers per process).
pub fn owner(tenant: &str, peers: usize) -> usize {
    (tenant_hash(tenant) % peers.max(1) as u64) as usize
}

/// One process's place in a timely cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This process's index, `0..addresses.len()`.
    pub process: usize,
    /// Every process's `host:port` for timely's exchange, in process order; each process must
    /// run the same number of workers.
    pub addresses: Vec<String>,
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// A change to the report schedules.
// Like rule changes: rare, so boxing the schedule would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScheduleChange {
    /// A new or changed schedule; a change applies from this epoch's clock reading on.
    Upsert(Schedule),
    /// A deleted or paused schedule: it runs no more.
    Remove {
        /// Tenant.
        tenant: String,
        /// Report id.
        report_id: String,
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
    /// Report schedule changes, applied before this epoch's clock reading.
    pub schedules: Vec<ScheduleChange>,
    /// Current time, epoch ms; the watermark is this minus the allowed lateness. Report runs
    /// come due by this wall clock, not by the watermark.
    pub clock_ms: Option<i64>,
    /// The latest epoch whose output (intents, due runs) this process has made durable, all
    /// earlier ones included: the cluster's [`StepOutput::cluster_committed`] is the least of
    /// these over its processes.
    pub committed: Option<u64>,
    /// How far back this process's rules need events, ms (the longest window plus period of
    /// the rules it feeds): the cluster's [`StepOutput::cluster_horizon_ms`] is the longest of
    /// these, so a process that owns no rule still knows how much history to replay.
    pub horizon_ms: i64,
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
    /// Report runs whose slots this epoch's clock passed, by slot, tenant and report.
    pub due_runs: Vec<DueRun>,
    /// The latest epoch every process of the cluster had made durable when it fed this one
    /// (the least [`StepInput::committed`] any process gave with this epoch); a single process
    /// gets back its own.
    pub cluster_committed: Option<u64>,
    /// The longest [`StepInput::horizon_ms`] any process gave with this epoch.
    pub cluster_horizon_ms: i64,
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
    /// Active report schedules.
    pub schedules: u64,
    /// Alert-state counters, summed over workers.
    pub state: StateStats,
}

/// The running dataflow.
pub struct Engine {
    config: EngineConfig,
    /// One channel per worker of this process.
    senders: Vec<Sender<Vec<EpochInput>>>,
    /// This process's index in the cluster (0 alone).
    process: usize,
    /// Workers in the whole cluster.
    peers: usize,
    outputs: Receiver<WorkerOutput>,
    guards: Option<timely::communication::WorkerGuards<()>>,
    worker_stats: Vec<Arc<Mutex<WorkerStats>>>,
    epoch: u64,
    watermark_ms: i64,
    /// Active rules, by (tenant, rule id).
    rules: HashSet<(String, String)>,
    /// Active report schedules, by (tenant, report id).
    schedules: HashSet<(String, String)>,
    stats: EngineStats,
    /// Event buffers the workers emptied, to fill again.
    spare: Vec<Vec<EventSlot>>,
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
        if let Some(cluster) = &config.cluster
            && cluster.process >= cluster.addresses.len()
        {
            return Err(EngineError::Config(format!(
                "cluster: process {} is not among the {} addresses (processes are numbered from 0)",
                cluster.process,
                cluster.addresses.len()
            )));
        }
        let workers = config.workers;
        let (process, processes) = config
            .cluster
            .as_ref()
            .map_or((0, 1), |c| (c.process, c.addresses.len()));
        let (out_tx, outputs) = mpsc::channel();
        let (senders, receivers) = WorkerChannels::<Vec<EpochInput>>::new(workers);
        let worker_stats: Vec<_> = (0..workers)
            .map(|_| Arc::new(Mutex::new(WorkerStats::default())))
            .collect();
        let shared_stats = worker_stats.clone();
        let out_tx = Mutex::new(out_tx);
        let timely_config = match &config.cluster {
            Some(cluster) => timely::Config {
                communication: timely::CommunicationConfig::Cluster {
                    threads: workers,
                    process: cluster.process,
                    addresses: cluster.addresses.clone(),
                    report: false,
                    zerocopy: false,
                },
                worker: timely::WorkerConfig::default(),
            },
            None if workers == 1 => timely::Config::thread(),
            None => timely::Config::process(workers),
        };
        let guards = timely::execute(timely_config, move |worker| {
            // Worker indexes run over the whole cluster; this process's are contiguous.
            let index = worker.index() - process * workers;
            let Some(epochs) = receivers.take(index) else {
                return;
            };
            let Some(output) = out_tx.lock().ok().map(|tx| tx.clone()) else {
                return;
            };
            let mut inputs = build(worker, output.clone(), shared_stats[index].clone());
            while let Ok(shares) = epochs.recv() {
                let Some(epoch) = shares.first().map(|share| share.epoch) else {
                    return;
                };
                let next = epoch + 1;
                for mut share in shares {
                    // A share for another process's worker is encoded here, each event dropped
                    // as soon as it is written, rather than when timely asks for its bytes
                    // and again when the message is dropped (see `ShareEvents::seal`).
                    if share.target / workers != process {
                        share.events.seal();
                    }
                    inputs.epochs.send(share);
                }
                inputs.epochs.advance_to(next);
                // Waiting for the other workers' progress, a worker polls briefly and then
                // parks until a message wakes it: on a machine with as many cores as workers,
                // stepping without parking burns the cores the commit thread and the sources need.
                worker.step_or_park_while(None, || inputs.probe.less_than(&next));
                if output.send(WorkerOutput::Done { epoch }).is_err() {
                    return;
                }
            }
        })
        .map_err(|reason| EngineError::Start { workers, reason })?;
        Ok(Engine {
            config,
            senders,
            process,
            peers: workers * processes,
            outputs,
            guards: Some(guards),
            worker_stats,
            epoch: 0,
            watermark_ms: 0,
            rules: HashSet::default(),
            schedules: HashSet::default(),
            stats: EngineStats::default(),
            spare: Vec::new(),
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
        stats.schedules = self.schedules.len() as u64;
        for shared in &self.worker_stats {
            if let Ok(w) = shared.lock() {
                stats.retired += w.retired;
                stats.retained += w.retained;
                let s = &w.state;
                stats.state.matches += s.matches;
                stats.state.firing += s.firing;
                stats.state.resolved += s.resolved;
                stats.state.throttled += s.throttled;
                stats.state.deferred += s.deferred;
                stats.state.windows_closed += s.windows_closed;
                stats.state.throttle_keys += s.throttle_keys;
            }
        }
        stats
    }

    /// The earliest instant at which a report schedule comes due, as of the last step: a
    /// caller that steps only when there is work steps by then, so due runs are not late by
    /// its idle interval.
    pub fn next_due_ms(&self) -> Option<i64> {
        self.worker_stats
            .iter()
            .filter_map(|shared| shared.lock().ok().and_then(|w| w.next_due_ms))
            .min()
    }

    /// Whether a rule is active.
    pub fn has_rule(&self, tenant: &str, rule_id: &str) -> bool {
        self.rules
            .contains(&(tenant.to_string(), rule_id.to_string()))
    }

    /// Whether a report schedule is active.
    pub fn has_schedule(&self, tenant: &str, report_id: &str) -> bool {
        self.schedules
            .contains(&(tenant.to_string(), report_id.to_string()))
    }

    /// The worker, among all the cluster's, that owns a tenant.
    fn worker_of(&self, tenant: &str) -> usize {
        owner(tenant, self.peers)
    }

    /// Runs one epoch.
    pub fn step(&mut self, input: StepInput) -> Result<StepOutput, EngineError> {
        let epoch = self.epoch;
        let workers = self.senders.len();
        let peers = self.peers;
        if let Some(clock) = input.clock_ms {
            self.watermark_ms = self
                .watermark_ms
                .max(clock - self.config.allowed_lateness_ms);
        }
        let watermark = self.watermark_ms;
        let share = (input.events.len() + input.history.len()) / peers + 1;
        let mut shares: Vec<EpochInput> = (0..peers)
            .map(|target| {
                let mut events = self.spare.pop().unwrap_or_default();
                events.reserve(share + share / 4);
                EpochInput {
                    epoch,
                    target,
                    source: self.process,
                    committed: input.committed,
                    horizon_ms: input.horizon_ms,
                    watermark_ms: watermark,
                    clock_ms: input.clock_ms,
                    events: ShareEvents::new(events),
                    ..Default::default()
                }
            })
            .collect();

        for change in input.rules {
            match change {
                RuleChange::Upsert(mut rule) => {
                    rule.since_epoch = epoch;
                    let worker = self.worker_of(&rule.tenant);
                    self.rules.insert((rule.tenant.clone(), rule.id.clone()));
                    shares[worker].rules.push(RuleChange::Upsert(rule));
                }
                RuleChange::Remove { tenant, rule_id } => {
                    let worker = self.worker_of(&tenant);
                    self.rules.remove(&(tenant.clone(), rule_id.clone()));
                    shares[worker]
                        .rules
                        .push(RuleChange::Remove { tenant, rule_id });
                }
            }
        }
        for change in input.schedules {
            match change {
                ScheduleChange::Upsert(schedule) => {
                    let worker = self.worker_of(&schedule.tenant);
                    self.schedules
                        .insert((schedule.tenant.clone(), schedule.report_id.clone()));
                    shares[worker]
                        .schedules
                        .push(ScheduleChange::Upsert(schedule));
                }
                ScheduleChange::Remove { tenant, report_id } => {
                    let worker = self.worker_of(&tenant);
                    self.schedules.remove(&(tenant.clone(), report_id.clone()));
                    shares[worker]
                        .schedules
                        .push(ScheduleChange::Remove { tenant, report_id });
                }
            }
        }
        for alert in input.restore {
            let worker = self.worker_of(&alert.tenant);
            shares[worker].restore.push(alert);
        }

        let mut late = Vec::new();
        for event in input.events {
            let worker = self.worker_of(&event.tenant);
            let arrival = if event.ts_ms >= watermark {
                Arrival::OnTime
            } else {
                self.stats.late += 1;
                late.push(LateEvent {
                    tenant: event.tenant.to_string(),
                    id: event.id.to_string(),
                    ts_ms: event.ts_ms,
                    watermark_ms: watermark,
                });
                Arrival::Late
            };
            self.stats.events += 1;
            shares[worker].events.push(Some((event, arrival)));
        }
        for event in input.history {
            let worker = self.worker_of(&event.tenant);
            shares[worker].events.push(Some((event, Arrival::History)));
        }

        // Each of this process's workers feeds the shares of the workers with its index modulo
        // the process's workers; the dataflow's exchange takes each share to its owner.
        let mut feeds: Vec<Vec<EpochInput>> = (0..workers).map(|_| Vec::new()).collect();
        for share in shares {
            feeds[share.target % workers].push(share);
        }
        for (sender, feed) in self.senders.iter().zip(feeds) {
            sender.send(feed).map_err(|_| EngineError::WorkerGone)?;
        }
        let mut intents = Vec::new();
        let mut due_runs = Vec::new();
        let mut cluster_committed = input.committed;
        let mut cluster_horizon_ms = input.horizon_ms;
        let mut done = 0;
        while done < workers {
            match self.outputs.recv() {
                Ok(WorkerOutput::Intents(batch)) => intents.extend(batch),
                Ok(WorkerOutput::DueRuns(batch)) => due_runs.extend(batch),
                Ok(WorkerOutput::Agreed {
                    committed,
                    horizon_ms,
                }) => {
                    cluster_committed = cluster_committed.min(committed);
                    cluster_horizon_ms = cluster_horizon_ms.max(horizon_ms);
                }
                Ok(WorkerOutput::Spare(events)) => {
                    if self.spare.len() < 2 * peers {
                        self.spare.push(events);
                    }
                }
                Ok(WorkerOutput::Done { epoch: e }) if e == epoch => done += 1,
                Ok(WorkerOutput::Done { .. }) => {}
                Err(_) => return Err(EngineError::WorkerGone),
            }
        }
        // Each worker's batch is already in delivery order, and a stable sort merges such runs
        // in linear time.
        intents.sort_by(Intent::delivery_order);
        due_runs.sort_by(DueRun::delivery_order);
        self.epoch += 1;
        Ok(StepOutput {
            epoch,
            intents,
            late,
            due_runs,
            cluster_committed,
            cluster_horizon_ms,
        })
    }
}

impl Drop for Engine {
    /// Closes the workers' input and waits for them. A cluster's workers finish only once every
    /// process has closed its input, so a process of a cluster does not wait: it leaves its
    /// workers to end with the process.
    fn drop(&mut self) {
        self.senders.clear();
        if let Some(guards) = self.guards.take() {
            if self.config.cluster.is_some() {
                std::mem::forget(guards);
            } else {
                let _ = guards.join();
            }
        }
    }
}
