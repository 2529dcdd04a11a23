//! The dataflow one timely worker runs.
//!
//! ```text
//! events ─arrange by (tenant, type)─┐
//!                                   ├─ join_core ─┬─ matches (positive changes only) ─┐
//! rules ──arrange by (tenant, type)─┘             └─ window contributions              │
//!                                                     └─ reduce per window → holding ──┤
//! control (rule state, restores, clock) ───────────────────────────────────────────────┤
//!                                          exchange by tenant → alert state → intents ─┘
//! ```
//!
//! Events stay in the `events` collection only as long as some windowed rule can still use them
//! (the [`crate::engine::Engine`] retracts them), so a rule change costs work proportional to the
//! retained events of its (tenant, type), never to history. A `match` rule only sees events that
//! arrived at or after its `since_epoch`, so adding a rule does not replay old matches.

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use differential_dataflow::input::{Input, InputSession};
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Concat, Inspect, Probe};
use timely::dataflow::{InputHandleVec, ProbeHandle};
use timely::worker::Worker;

use crate::event::Event;
use crate::intent::Intent;
use crate::rule::{AggFn, Evaluation, Rule, RuleKind};
use crate::state::{AlertState, Holding, StateInput, StateStats, WindowKey};
use crate::time::window_starts;
use crate::value::{AttrValue, Num};

/// The (tenant, event type) join key.
pub type TypeKey = (String, String);

/// An event as fed to the dataflow.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventRecord {
    /// Engine epoch the event arrived in.
    pub epoch: u64,
    /// Counted by windowed rules (false for events later than the allowed lateness).
    pub for_windows: bool,
    /// Seen by `match` rules (false for history replayed after a restart).
    pub for_matches: bool,
    /// The event.
    pub event: Event,
}

/// One event's value as seen by one window.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Contribution {
    /// Counts toward the window's own aggregate.
    Current(AttrValue),
    /// Counts toward the baseline (the window one period earlier) of a `change` rule.
    Baseline(AttrValue),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Hit {
    Match {
        rule_id: String,
        version: u64,
        group: Vec<AttrValue>,
        event: Event,
    },
    Window(WindowKey, Contribution),
}

/// What a worker reports to the engine.
#[derive(Debug)]
pub enum WorkerOutput {
    /// Intents produced at an epoch.
    Intents(Vec<Intent>),
    /// The worker finished the epoch.
    Done {
        /// Worker index.
        worker: usize,
        /// Epoch.
        epoch: u64,
    },
}

/// Handles a worker uses to feed its dataflow.
pub struct WorkerInputs {
    /// Events by (tenant, type).
    pub events: InputSession<u64, (TypeKey, EventRecord), isize>,
    /// Rules by (tenant, type).
    pub rules: InputSession<u64, (TypeKey, Rule), isize>,
    /// Control messages for the alert state.
    pub control: InputHandleVec<u64, StateInput>,
    /// Passes an epoch once all its intents were reported.
    pub probe: ProbeHandle<u64>,
}

/// Builds the dataflow on `worker`; intents go to `output`, counters into `stats`.
pub fn build(
    worker: &mut Worker,
    output: Sender<WorkerOutput>,
    stats: Arc<Mutex<StateStats>>,
) -> WorkerInputs {
    let mut control = InputHandleVec::new();
    let probe = ProbeHandle::new();
    let (events, rules) = worker.dataflow::<u64, _, _>(|scope| {
        let (event_input, events) = scope.new_collection::<(TypeKey, EventRecord), isize>();
        let (rule_input, rules) = scope.new_collection::<(TypeKey, Rule), isize>();
        let rules = rules.arrange_by_key();
        let hits = events
            .arrange_by_key()
            .join_core(rules, |_key, record, rule| hits(record, rule));

        // Only the start of a match matters; its end (event retired, rule removed) says nothing.
        let matches = hits.clone().inner.flat_map(|(hit, _time, diff)| match hit {
            Hit::Match {
                rule_id,
                version,
                group,
                event,
            } if diff > 0 => Some(StateInput::Match {
                rule_id,
                version,
                group,
                event,
            }),
            _ => None,
        });

        let holdings = hits
            .flat_map(|hit| match hit {
                Hit::Window(key, contribution) => Some((key, contribution)),
                Hit::Match { .. } => None,
            })
            .reduce(|key, values, out| {
                if let Some(holding) = judge(&key.eval, values) {
                    out.push((holding, 1));
                }
            })
            .inner
            .map(|((key, holding), _time, diff)| StateInput::Holding {
                key,
                holding,
                diff: diff as i64,
            });

        let state_stats = stats.clone();
        control
            .to_stream(scope)
            .concat(matches)
            .concat(holdings)
            .unary_frontier::<CapacityContainerBuilder<Vec<Intent>>, _, _, _>(
                Exchange::new(|input: &StateInput| input.route()),
                "AlertState",
                move |_capability, _info| {
                    let mut state = AlertState::new(0);
                    let mut pending: std::collections::BTreeMap<
                        u64,
                        (
                            timely::dataflow::operators::Capability<u64>,
                            Vec<StateInput>,
                        ),
                    > = Default::default();
                    move |(input, frontier), output| {
                        input.for_each_stamp(|cap, data| {
                            if let Some(cap) = cap.retain_least(output.output_index()) {
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
                            let Some((cap, inputs)) = pending.remove(&time) else {
                                break;
                            };
                            let mut intents = Vec::new();
                            state.apply(inputs, &mut intents);
                            if let Ok(mut shared) = state_stats.lock() {
                                *shared = state.stats;
                            }
                            if !intents.is_empty() {
                                output.session(&cap).give_iterator(intents.into_iter());
                            }
                        }
                    }
                },
            )
            .inspect_core(move |event| {
                if let Ok((_stamp, intents)) = event {
                    let intents: &Vec<Intent> = intents;
                    let _ = output.send(WorkerOutput::Intents(intents.clone()));
                }
            })
            .probe_with(&probe);
        (event_input, rule_input)
    });
    WorkerInputs {
        events,
        rules,
        control,
        probe,
    }
}

fn hits(record: &EventRecord, rule: &Rule) -> Vec<Hit> {
    let event = &record.event;
    if let Some(filter) = &rule.filter
        && !filter.eval(&event.attrs)
    {
        return Vec::new();
    }
    match &rule.kind {
        RuleKind::Match => {
            if record.for_matches && record.epoch >= rule.since_epoch {
                vec![Hit::Match {
                    rule_id: rule.id.clone(),
                    version: rule.version,
                    group: rule.group_of(&event.attrs),
                    event: event.clone(),
                }]
            } else {
                Vec::new()
            }
        }
        RuleKind::Windowed {
            window,
            attr,
            eval,
            period_ms,
        } => {
            if !record.for_windows {
                return Vec::new();
            }
            let value = attr
                .as_ref()
                .and_then(|a| event.attrs.get(a).cloned())
                .unwrap_or(AttrValue::Null);
            let group = rule.group_of(&event.attrs);
            let key = |start: i64| WindowKey {
                tenant: rule.tenant.clone(),
                rule_id: rule.id.clone(),
                version: rule.version,
                eval: *eval,
                group: group.clone(),
                start,
            };
            let mut out: Vec<Hit> = window_starts(event.ts_ms, window)
                .map(|start| Hit::Window(key(start), Contribution::Current(value.clone())))
                .collect();
            if eval.relative {
                out.extend(
                    window_starts(event.ts_ms + period_ms, window).map(|start| {
                        Hit::Window(key(start), Contribution::Baseline(value.clone()))
                    }),
                );
            }
            out
        }
    }
}

/// The aggregate of one side of a window, `None` when undefined (avg/min/max of nothing).
fn aggregate(agg: AggFn, values: &[(&Contribution, isize)], baseline: bool) -> Option<f64> {
    let side = values.iter().filter_map(|(c, diff)| match (c, baseline) {
        (Contribution::Current(v), false) | (Contribution::Baseline(v), true) => Some((v, *diff)),
        _ => None,
    });
    match agg {
        AggFn::Count => Some(side.map(|(_, d)| d as f64).sum()),
        AggFn::Sum => Some(
            side.filter_map(|(v, d)| v.as_f64().map(|x| x * d as f64))
                .sum(),
        ),
        AggFn::Avg => {
            let (sum, count) = side
                .filter_map(|(v, d)| v.as_f64().map(|x| (x * d as f64, d as f64)))
                .fold((0.0, 0.0), |(s, c), (x, d)| (s + x, c + d));
            (count > 0.0).then(|| sum / count)
        }
        AggFn::Min => side.filter_map(|(v, _)| v.as_f64()).reduce(f64::min),
        AggFn::Max => side.filter_map(|(v, _)| v.as_f64()).reduce(f64::max),
        AggFn::CountDistinct => Some(side.filter(|(v, _)| **v != AttrValue::Null).count() as f64),
    }
}

/// Whether a window's condition holds, and with what values.
fn judge(eval: &Evaluation, values: &[(&Contribution, isize)]) -> Option<Holding> {
    let current = aggregate(eval.agg, values, false)?;
    if eval.relative {
        let base = aggregate(eval.agg, values, true)?;
        if base == 0.0
            || !values
                .iter()
                .any(|(c, _)| matches!(c, Contribution::Baseline(_)))
        {
            return None; // no baseline: a change is undefined
        }
        let percent = (current - base) / base.abs() * 100.0;
        eval.op.test_f64(percent, eval.value.0).then_some(Holding {
            value: Num(current),
            baseline: Some(Num(base)),
        })
    } else {
        let has_current = values
            .iter()
            .any(|(c, _)| matches!(c, Contribution::Current(_)));
        (has_current && eval.op.test_f64(current, eval.value.0)).then_some(Holding {
            value: Num(current),
            baseline: None,
        })
    }
}
