//! The dataflow one timely worker runs: one operator that owns the worker's tenants.
//!
//! ```text
//! epoch input (rule changes, restores, events, clock) ─► TenantState ─► intents ─► engine
//!   rule changes    → rule index per (tenant, type) and alert state
//!   schedule changes → schedule index, by next slot
//!   each event      ⋈ the rules of its (tenant, type): index lookup, filter → match intents
//!                   → window aggregates of the windowed rules it counts for
//!   clock           → windows closed → FIRING / RESOLVED
//!                   → schedules whose slot it passed → due report runs
//! ```
//!
//! The engine (outside the dataflow, see [`crate::engine`]) splits every epoch's input into one
//! share per owning worker, and the operator reads the shares through an `Exchange` pact on
//! that owner (between threads of a process, or over TCP between the processes of a cluster),
//! so the events ⋈ rules join is a lookup in the worker's own rule index, and window
//! aggregates are kept incrementally beside the alert state that judges them. A worker merges
//! the shares it gets for an epoch (one from each process of a cluster) in process order. An epoch is processed once the input frontier has
//! passed it, in a fixed order: rule changes, schedule changes, restores, retirements, events,
//! matches (by event time), recomputed windows, clock (windows, then report schedules).
//!
//! Report schedules are consulted once per epoch, never per event: the clock reading pops the
//! schedules whose next slot it passed from the worker's [`ScheduleIndex`].
//!
//! Events stay in the worker only as long as some windowed rule can still use them (retained for
//! the longest window of their (tenant, type)), so the rule changes of an epoch cost one pass over
//! the retained events, never over history. A `match` rule only sees events that arrive while it
//! is active, so adding a rule does not replay old matches.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Capability, Probe};
use timely::dataflow::{InputHandleVec, ProbeHandle};
use timely::worker::Worker;

use crate::engine::{RuleChange, ScheduleChange};
use crate::event::Event;
use crate::exchange::ShareEvents;
use crate::index::{Compiled, TypeRules, WindowedRule};
use crate::intent::Intent;
use crate::retained::{PackedEvent, PackedEvents, RetireQueue};
use crate::rule::RuleKind;
use crate::schedule::{DueRun, ScheduleIndex};
use crate::state::{AlertState, OpenAlert, StateStats};
use crate::time::window_starts;
use crate::value::{AttrValue, SmolStr};
use crate::window::{Side, WindowTable};

/// How many events ahead of the one being matched the worker prefetches attributes.
pub(crate) const PREFETCH_AHEAD: usize = 4;

/// How an event reached the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Arrival {
    /// A new event within the allowed lateness: matched and counted.
    OnTime,
    /// A new event later than the allowed lateness: matched, not counted in windows.
    Late,
    /// Replayed from the log after a restart: counted in the windows it can still reach, never
    /// matched.
    History,
}

/// An event as it waits in an epoch's input. The worker takes each one out as it goes, so the
/// emptied buffer can go back to the engine for the next epoch, its memory already mapped and warm.
pub(crate) type EventSlot = Option<(Event, Arrival)>;

/// One worker's share of one epoch, from one process.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct EpochInput {
    /// The epoch.
    pub(crate) epoch: u64,
    /// The worker (among the whole cluster's) that owns the share's tenants.
    pub(crate) target: usize,
    /// The process that fed it.
    pub(crate) source: usize,
    /// The latest epoch the feeding process had made durable.
    pub(crate) committed: Option<u64>,
    /// How far back the feeding process's rules keep events, ms.
    pub(crate) horizon_ms: i64,
    /// The engine's watermark for this epoch.
    pub(crate) watermark_ms: i64,
    /// The clock reading that came with the epoch, if any (only then are windows judged and
    /// report runs due).
    pub(crate) clock_ms: Option<i64>,
    /// Rule changes, in order.
    pub(crate) rules: Vec<RuleChange>,
    /// Report schedule changes, in order.
    pub(crate) schedules: Vec<ScheduleChange>,
    /// Alerts that were firing before a restart.
    pub(crate) restore: Vec<OpenAlert>,
    /// Events and how they arrived (all `Some`); in their own compact form when they cross to
    /// another process (see [`crate::exchange`]).
    pub(crate) events: ShareEvents,
}

impl EpochInput {
    /// One epoch's shares for one worker as one input, in the order of the processes that fed
    /// them (so every layout of the same cluster applies them alike): their changes and events
    /// one after the other, the latest clock and watermark, the least durable epoch.
    fn merge(mut shares: Vec<EpochInput>) -> Option<EpochInput> {
        if shares.len() <= 1 {
            return shares.pop();
        }
        shares.sort_by_key(|share| share.source);
        let mut shares = shares.into_iter();
        let mut merged = shares.next()?;
        for share in shares {
            merged.watermark_ms = merged.watermark_ms.max(share.watermark_ms);
            merged.clock_ms = merged.clock_ms.max(share.clock_ms);
            merged.committed = merged.committed.min(share.committed);
            merged.horizon_ms = merged.horizon_ms.max(share.horizon_ms);
            merged.rules.extend(share.rules);
            merged.schedules.extend(share.schedules);
            merged.restore.extend(share.restore);
            merged.events.append(share.events);
        }
        Some(merged)
    }
}

/// Counters a worker shares with the engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct WorkerStats {
    /// Alert-state counters.
    pub(crate) state: StateStats,
    /// Events retired from window state.
    pub(crate) retired: u64,
    /// Events currently held for windows (or to be retired next epoch).
    pub(crate) retained: u64,
    /// The earliest next slot of the worker's report schedules.
    pub(crate) next_due_ms: Option<i64>,
}

/// What a worker reports to the engine.
#[derive(Debug)]
pub(crate) enum WorkerOutput {
    /// Intents produced at an epoch, in delivery order.
    Intents(Vec<Intent>),
    /// Report runs that came due at an epoch, in delivery order.
    DueRuns(Vec<DueRun>),
    /// An emptied event buffer, for the engine to fill again.
    Spare(Vec<EventSlot>),
    /// The least durable epoch among the processes that fed an epoch.
    Agreed {
        /// The least durable epoch of the processes.
        committed: Option<u64>,
        /// The longest horizon of the processes, ms.
        horizon_ms: i64,
    },
    /// The worker finished the epoch.
    Done {
        /// Epoch.
        epoch: u64,
    },
}

/// Handles a worker uses to feed its dataflow.
pub(crate) struct WorkerInputs {
    /// One [`EpochInput`] per epoch.
    pub(crate) epochs: InputHandleVec<u64, EpochInput>,
    /// Passes an epoch once all its intents were reported.
    pub(crate) probe: ProbeHandle<u64>,
}

/// Builds the dataflow on `worker`; intents go to `output`, counters into `stats`.
pub(crate) fn build(
    worker: &mut Worker,
    output: Sender<WorkerOutput>,
    stats: Arc<Mutex<WorkerStats>>,
) -> WorkerInputs {
    let mut epochs = InputHandleVec::new();
    let probe = ProbeHandle::new();
    worker.dataflow::<u64, _, _>(|scope| {
        epochs
            .to_stream(scope)
            // Intents go straight to the engine from here; the (empty) output stream only carries
            // progress, which the probe watches.
            .unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
                Exchange::new(|share: &EpochInput| share.target as u64),
                "TenantState",
                move |_capability, _info| {
                    let mut tenants = TenantState::default();
                    let mut pending: BTreeMap<u64, (Capability<u64>, Vec<EpochInput>)> =
                        BTreeMap::new();
                    move |(input, frontier), output_handle| {
                        input.for_each_stamp(|cap, data| {
                            // Hold the capability until the epoch is processed, so the probe
                            // cannot pass it before its intents are out.
                            if let Some(cap) = cap.retain_least(output_handle.output_index()) {
                                let entry = pending
                                    .entry(*cap.time())
                                    .or_insert_with(|| (cap, Vec::new()));
                                for batch in data {
                                    entry.1.append(batch);
                                }
                            }
                        });
                        while let Some(time) = pending.keys().next().copied() {
                            if frontier.less_equal(&time) {
                                break;
                            }
                            let Some((_cap, inputs)) = pending.remove(&time) else {
                                break;
                            };
                            let mut intents = Vec::new();
                            let mut due_runs = Vec::new();
                            let Some(epoch) = EpochInput::merge(inputs) else {
                                continue;
                            };
                            let _ = output.send(WorkerOutput::Agreed {
                                committed: epoch.committed,
                                horizon_ms: epoch.horizon_ms,
                            });
                            let spare = tenants.apply(epoch, &mut intents, &mut due_runs);
                            let _ = output.send(WorkerOutput::Spare(spare));
                            if let Ok(mut shared) = stats.lock() {
                                *shared = tenants.stats();
                            }
                            if !intents.is_empty() {
                                // Sorted here, in parallel and while in cache; the engine only
                                // merges the workers' batches.
                                intents.sort_by(Intent::delivery_order);
                                let _ = output.send(WorkerOutput::Intents(intents));
                            }
                            if !due_runs.is_empty() {
                                let _ = output.send(WorkerOutput::DueRuns(due_runs));
                            }
                        }
                    }
                },
            )
            .probe_with(&probe);
    });
    WorkerInputs { epochs, probe }
}

/// One step of prefetching a windowed rule's panes (see [`TenantState::prefetch_visits`]).
type PrefetchStep = fn(&WindowTable, u32);

/// An event held for the windows it counts in.
#[derive(Debug)]
struct Retained {
    event: PackedEvent,
    /// How long it was to be retained when it arrived.
    span_ms: i64,
    /// Its (tenant, type).
    types: u32,
}

/// What a worker keeps per (tenant, event type).
#[derive(Debug, Default)]
struct TypeState {
    /// How long events are retained for windows: the longest span of any rule ever seen here.
    span_ms: i64,
    rules: TypeRules,
}

/// Counts (`add`) or takes back an event's value in the pane of a windowed rule it falls in (and
/// the baseline pane one period later, for a `change` rule).
fn contribute(
    windows: &mut WindowTable,
    compiled: &Compiled,
    rule: &WindowedRule,
    values: &[Option<&AttrValue>],
    ts_ms: i64,
    add: bool,
) {
    if !compiled.counts(rule, values) {
        return;
    }
    compiled.with_group(rule, values, |group, value| {
        let hash = windows.group_hash(group);
        for start in window_starts(ts_ms, &rule.pane) {
            windows.update(
                rule.slot,
                start,
                hash,
                group,
                Side::Current,
                rule.agg,
                value,
                add,
            );
        }
        if rule.relative {
            for start in window_starts(ts_ms + rule.period_ms, &rule.pane) {
                windows.update(
                    rule.slot,
                    start,
                    hash,
                    group,
                    Side::Baseline,
                    rule.agg,
                    value,
                    add,
                );
            }
        }
    });
}

/// Everything a worker keeps for the tenants it owns.
#[derive(Debug, Default)]
pub(crate) struct TenantState {
    alerts: AlertState,
    /// The tenants' report schedules, by next slot.
    schedules: ScheduleIndex,
    windows: WindowTable,
    /// (tenant, event type, index into `types`), found by [`TenantState::type_hash`]: one
    /// lookup per event.
    type_ids: hashbrown::HashTable<(SmolStr, SmolStr, u32)>,
    type_hasher: foldhash::fast::RandomState,
    types: Vec<TypeState>,
    /// Per rule slot: its windows are to be recomputed from the retained events this epoch.
    rebuilding: Vec<bool>,
    rebuild: Vec<u32>,
    /// Retained events, by when they retire.
    retire_at: RetireQueue<Retained>,
    /// Retained events to retire at the next epoch, so the closing of their last window is
    /// judged first.
    retire_next: Vec<Retained>,
    /// Events no window needs, retired (only counted) at the next epoch.
    retire_next_unheld: u64,
    retired: u64,
    /// Scratch: (event, rule slot) matches found this epoch, and the events they refer to.
    matches: Vec<(u32, u32)>,
    matched: Vec<Event>,
    /// The packed attributes of the retained events.
    packed: PackedEvents,
}

impl TenantState {
    fn stats(&self) -> WorkerStats {
        WorkerStats {
            state: self.alerts.stats,
            retired: self.retired,
            retained: (self.retire_at.len() + self.retire_next.len()) as u64
                + self.retire_next_unheld,
            next_due_ms: self.schedules.first_due_ms(),
        }
    }

    fn type_hash(&self, tenant: &str, event_type: &str) -> u64 {
        self.type_hasher.hash_one((tenant, event_type))
    }

    fn type_id(&self, tenant: &str, event_type: &str) -> Option<u32> {
        self.type_ids
            .find(self.type_hash(tenant, event_type), |(t, e, _)| {
                t == tenant && e == event_type
            })
            .map(|(_, _, id)| *id)
    }

    fn type_id_or_new(&mut self, tenant: &str, event_type: &str) -> u32 {
        if let Some(id) = self.type_id(tenant, event_type) {
            return id;
        }
        let id = self.types.len() as u32;
        self.types.push(TypeState::default());
        let hash = self.type_hash(tenant, event_type);
        let hasher = &self.type_hasher;
        self.type_ids
            .insert_unique(hash, (tenant.into(), event_type.into(), id), |(t, e, _)| {
                hasher.hash_one((t.as_str(), e.as_str()))
            });
        id
    }

    fn set_rebuilding(&mut self, slot: u32, on: bool) {
        if self.rebuilding.len() <= slot as usize {
            self.rebuilding.resize(slot as usize + 1, false);
        }
        self.rebuilding[slot as usize] = on;
    }

    fn change_rules(&mut self, changes: Vec<RuleChange>, watermark: i64) {
        for change in changes {
            match change {
                RuleChange::Upsert(rule) => {
                    let types = self.type_id_or_new(&rule.tenant, &rule.event_type);
                    let span = &mut self.types[types as usize].span_ms;
                    *span = (*span).max(rule.retention_ms());
                    let windowed = matches!(rule.kind, RuleKind::Windowed { .. });
                    let (slot, previous) = self.alerts.upsert(rule, watermark);
                    if let Some(previous) = previous {
                        let old = self.type_id_or_new(&previous.tenant, &previous.event_type);
                        self.types[old as usize].rules.remove(slot);
                    }
                    self.windows.clear_rule(slot);
                    if let Some(rule) = self.alerts.rule(slot) {
                        self.types[types as usize].rules.add(slot, rule);
                    }
                    self.set_rebuilding(slot, windowed);
                    if windowed {
                        self.rebuild.push(slot);
                    }
                }
                RuleChange::Remove { tenant, rule_id } => {
                    if let Some((slot, previous)) = self.alerts.remove(&tenant, &rule_id) {
                        let old = self.type_id_or_new(&previous.tenant, &previous.event_type);
                        self.types[old as usize].rules.remove(slot);
                        self.windows.clear_rule(slot);
                        self.set_rebuilding(slot, false);
                    }
                }
            }
        }
    }

    /// Keeps a packed event for the windows of its (tenant, type) for `span_ms`.
    fn hold(&mut self, types: u32, span_ms: i64, event: PackedEvent) {
        let retire_at = event.ts_ms.saturating_add(span_ms);
        let retained = Retained {
            event,
            span_ms,
            types,
        };
        self.retire_at.push(retire_at, retained);
    }

    /// Takes back the values of the events due for retirement.
    fn retire(&mut self) {
        self.retired += self.retire_next_unheld + self.retire_next.len() as u64;
        self.retire_next_unheld = 0;
        for retained in std::mem::take(&mut self.retire_next) {
            let types = &mut self.types[retained.types as usize];
            // The windows of rules that were known when the event arrived have all closed (the
            // event was retained for the longest of them) and were dropped when judged; only a
            // rule with longer windows, added since, can still have one open.
            let attrs =
                (types.span_ms > retained.span_ms).then(|| self.packed.attrs(&retained.event));
            self.packed.release(&retained.event);
            let Some(attrs) = attrs else {
                continue;
            };
            let alerts = &self.alerts;
            let compiled = types.rules.compiled(|s| alerts.rule(s));
            let rebuilding = &self.rebuilding;
            let open = |rule: &&WindowedRule| {
                rule.retention_ms > retained.span_ms
                    && !rebuilding.get(rule.slot as usize).copied().unwrap_or(false)
            };
            if !compiled.windowed.iter().any(|r| open(&r)) {
                continue;
            }
            let windows = &mut self.windows;
            compiled.with_values(&attrs, |values| {
                for rule in compiled.windowed.iter().filter(open) {
                    contribute(windows, compiled, rule, values, retained.event.ts_ms, false);
                }
            });
        }
    }

    /// Recomputes the windows of the rules that changed from the retained events, in one pass
    /// over them.
    fn rebuild_windows(&mut self) {
        // (type, slot) of every rule still to be rebuilt, by type.
        let mut rebuild: Vec<(u32, u32)> = Vec::new();
        for slot in std::mem::take(&mut self.rebuild) {
            if !self.rebuilding.get(slot as usize).copied().unwrap_or(false) {
                continue;
            }
            self.rebuilding[slot as usize] = false;
            let Some(rule) = self.alerts.rule(slot) else {
                continue;
            };
            if let Some(types) = self.type_id(&rule.tenant, &rule.event_type) {
                rebuild.push((types, slot));
            }
        }
        if rebuild.is_empty() {
            return;
        }
        rebuild.sort_unstable();
        rebuild.dedup();
        // Each rule found once among its type's compiled windowed rules: (type, place there).
        let alerts = &self.alerts;
        let rebuild: Vec<(u32, usize)> = rebuild
            .into_iter()
            .filter_map(|(types, slot)| {
                let compiled = self.types[types as usize]
                    .rules
                    .compiled(|s| alerts.rule(s));
                let at = compiled.windowed.iter().position(|w| w.slot == slot)?;
                Some((types, at))
            })
            .collect();
        for retained in self.retire_next.iter().chain(self.retire_at.iter()) {
            let first = rebuild.partition_point(|(t, _)| *t < retained.types);
            let end = rebuild.partition_point(|(t, _)| *t <= retained.types);
            let rules = &rebuild[first..end];
            if rules.is_empty() {
                continue;
            }
            let compiled = self.types[retained.types as usize]
                .rules
                .compiled(|s| alerts.rule(s));
            let windows = &mut self.windows;
            compiled.with_values(&self.packed.attrs(&retained.event), |values| {
                for (_, at) in rules {
                    let windowed = &compiled.windowed[*at];
                    contribute(
                        windows,
                        compiled,
                        windowed,
                        values,
                        retained.event.ts_ms,
                        true,
                    );
                }
            });
        }
    }

    /// Asks the CPU to start loading the state of the (tenant, type)s about to be visited, `next`
    /// (from the one starting now): each step needs what the step before, one visit earlier,
    /// loaded. A (tenant, type) is typically visited once per epoch, long after its state left
    /// the cache, and fetching it one pointer at a time would stall the worker at every visit.
    fn prefetch_visits(&self, next: &[u32]) {
        let compiled = |at: usize| {
            let t = *next.get(at)?;
            self.types.get(t as usize)?.rules.compiled_now()
        };
        if let Some(state) = next.get(4).and_then(|t| self.types.get(*t as usize)) {
            crate::prefetch_value(state);
        }
        if let Some(c) = compiled(3) {
            c.prefetch();
        }
        // (visits ahead, what to load for each windowed rule of that visit)
        let window_steps: [(usize, PrefetchStep); 3] = [
            (2, WindowTable::prefetch_rule),
            (1, WindowTable::prefetch_panes),
            (0, WindowTable::prefetch_latest),
        ];
        for (ahead, step) in window_steps {
            if let Some(c) = compiled(ahead) {
                c.windowed.iter().for_each(|w| step(&self.windows, w.slot));
            }
        }
    }

    fn change_schedules(&mut self, changes: Vec<ScheduleChange>) {
        for change in changes {
            match change {
                ScheduleChange::Upsert(schedule) => self.schedules.upsert(schedule),
                ScheduleChange::Remove { tenant, report_id } => {
                    self.schedules.remove(&tenant, &report_id);
                }
            }
        }
    }

    /// Processes one epoch, appending intents to `out` and due report runs (in delivery order)
    /// to `due`; gives back the emptied event buffer.
    pub(crate) fn apply(
        &mut self,
        input: EpochInput,
        out: &mut Vec<Intent>,
        due: &mut Vec<DueRun>,
    ) -> Vec<EventSlot> {
        let watermark = input.watermark_ms;
        // New rules start judging at the first window still open under this epoch's watermark.
        let epoch_watermark = if input.clock_ms.is_some() {
            watermark.max(self.alerts.watermark_ms())
        } else {
            self.alerts.watermark_ms()
        };
        self.change_rules(input.rules, epoch_watermark);
        self.change_schedules(input.schedules);
        for alert in input.restore {
            self.alerts.restore(alert);
        }
        self.retire();

        // Match and count the new events, keep what windows need (packed), and drop the rest
        // while it is still in cache. The events of one (tenant, type) are taken together, so its
        // rules, windows and alert state are fetched from memory once per epoch rather than once
        // per event; matches are put back in event-time order below.
        let mut events = input.events.into_slots();
        let mut order: Vec<(u32, u32)> = events
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| {
                let (event, _) = slot.as_ref()?;
                let types = self.type_id(&event.tenant, &event.event_type);
                Some((types.unwrap_or(u32::MAX), i as u32))
            })
            .collect();
        order.sort_unstable();
        // The (tenant, type)s in the order they are visited.
        let mut visits: Vec<u32> = order.iter().map(|(t, _)| *t).collect();
        visits.dedup();
        let mut visit = 0;
        let mut matched = std::mem::take(&mut self.matched);
        let mut matches = std::mem::take(&mut self.matches);
        for k in 0..order.len() {
            let (types, i) = order[k];
            if k == 0 || order[k - 1].0 != types {
                self.prefetch_visits(&visits[visit..]);
                visit += 1;
            }
            // The events are visited out of input order, so each one and its attributes would be
            // cache misses: start loading the event further ahead, and its attributes (found
            // through the event) a few events ahead.
            if let Some(&(_, further)) = order.get(k + 2 * PREFETCH_AHEAD) {
                crate::prefetch_value(&events[further as usize]);
            }
            if let Some(&(_, ahead)) = order.get(k + PREFETCH_AHEAD)
                && let Some((event, _)) = &events[ahead as usize]
            {
                event.attrs.prefetch();
            }
            let Some((event, arrival)) = events[i as usize].take() else {
                continue;
            };
            let types = (types != u32::MAX).then_some(types);
            let span = types.map_or(0, |t| self.types[t as usize].span_ms);
            let (for_matches, on_time) = match arrival {
                Arrival::OnTime => (true, true),
                Arrival::Late => (true, false),
                // Replayed history was on time when it first arrived; it still counts in every
                // window that has not closed yet, and is of no use to any other.
                Arrival::History => (false, event.ts_ms.saturating_add(span) > watermark),
            };
            if !for_matches && !on_time {
                continue;
            }
            let Some(t) = types else {
                self.retire_next_unheld += 1;
                continue;
            };
            let matched_before = matches.len();
            let alerts = &self.alerts;
            let compiled = self.types[t as usize].rules.compiled(|s| alerts.rule(s));
            let (windows, rebuilding) = (&mut self.windows, &self.rebuilding);
            let at = matched.len() as u32;
            compiled.with_values(&event.attrs, |values| {
                if for_matches {
                    compiled.matches(values, |slot| matches.push((at, slot)));
                }
                if on_time {
                    for rule in &compiled.windowed {
                        if !rebuilding.get(rule.slot as usize).copied().unwrap_or(false) {
                            contribute(windows, compiled, rule, values, event.ts_ms, true);
                        }
                    }
                }
            });
            if on_time && span > 0 {
                let packed = self.packed.pack(event.ts_ms, &event.attrs);
                self.hold(t, span, packed);
            } else {
                self.retire_next_unheld += 1;
            }
            if matches.len() > matched_before {
                matched.push(event);
            }
        }

        // Matches in event-time order, so throttles see them as they happened.
        matches.sort_by(|(a, ra), (b, rb)| {
            let (x, y) = (&matched[*a as usize], &matched[*b as usize]);
            (x.ts_ms, &x.id, a, ra).cmp(&(y.ts_ms, &y.id, b, rb))
        });
        for (i, slot) in matches.drain(..) {
            self.alerts.on_match(slot, &matched[i as usize], out);
        }
        matched.clear();
        self.matches = matches;
        self.matched = matched;
        self.rebuild_windows();
        if let Some(clock_ms) = input.clock_ms {
            self.alerts.advance(watermark, &mut self.windows, out);
            due.extend(self.schedules.advance(clock_ms));
        }
        // Retire one epoch later, so the closing of their last windows is judged first.
        self.retire_at.take_due(watermark, &mut self.retire_next);
        events.clear();
        events
    }
}
