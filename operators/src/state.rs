//! Alert state: turns window conditions and matches into notification intents.
//!
//! Per rule and group key, Alertmanager-style: FIRING once when a closed window's condition holds
//! and the previous window's did not, RESOLVED once when it stops holding. A window is judged when
//! the watermark passes its end, so every event it will ever count (within the allowed lateness)
//! is in. Throttle and quiet hours apply to every notification. This is plain sequential state,
//! run inside a timely operator on the worker that owns the tenant.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::intent::{Intent, IntentKind, intent_id};
use crate::rule::{Evaluation, Rule, RuleKind, WindowSpec, group_label};
use crate::time::{deliver_at, first_open_window};
use crate::value::{AttrValue, Num};

/// Identifies one window of one rule version for one group: the key of windowed aggregates.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WindowKey {
    /// Tenant.
    pub tenant: String,
    /// Rule id.
    pub rule_id: String,
    /// Rule version.
    pub version: u64,
    /// How the aggregate is judged (travels with the key so the reduce needs no lookup).
    pub eval: Evaluation,
    /// Group key values.
    pub group: Vec<AttrValue>,
    /// Window start, epoch ms.
    pub start: i64,
}

/// A window whose condition holds, with its aggregate (and baseline for `change` rules).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Holding {
    /// Aggregate of the window.
    pub value: Num,
    /// Aggregate one period earlier.
    pub baseline: Option<Num>,
}

/// A firing alert restored from the store after a restart.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OpenAlert {
    /// Tenant.
    pub tenant: String,
    /// Rule id.
    pub rule_id: String,
    /// Group key values.
    pub group: Vec<AttrValue>,
    /// Start of the window where it began firing.
    pub since_window: i64,
}

/// Everything the alert-state operator consumes, in one stream.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StateInput {
    /// A rule is new or changed.
    Upsert(Rule),
    /// A rule was deleted or disabled.
    Remove {
        /// Tenant.
        tenant: String,
        /// Rule id.
        rule_id: String,
    },
    /// An alert that was firing before a restart.
    Restore(OpenAlert),
    /// A window started (`diff > 0`) or stopped (`diff < 0`) holding.
    Holding {
        /// The window.
        key: WindowKey,
        /// Its aggregate.
        holding: Holding,
        /// +1 or -1.
        diff: i64,
    },
    /// An event matched a `match` rule.
    Match {
        /// Rule id.
        rule_id: String,
        /// Rule version.
        version: u64,
        /// Group key values.
        group: Vec<AttrValue>,
        /// The event.
        event: Event,
    },
    /// The watermark advanced; `route` addresses the worker that should see it.
    Clock {
        /// Worker index this message is for.
        route: u64,
        /// Event time below which all events are in, epoch ms.
        watermark_ms: i64,
    },
}

impl StateInput {
    /// The exchange route: tenant hash, or the addressed worker for clock messages.
    pub fn route(&self) -> u64 {
        match self {
            StateInput::Upsert(rule) => tenant_hash(&rule.tenant),
            StateInput::Remove { tenant, .. } => tenant_hash(tenant),
            StateInput::Restore(alert) => tenant_hash(&alert.tenant),
            StateInput::Holding { key, .. } => tenant_hash(&key.tenant),
            StateInput::Match { event, .. } => tenant_hash(&event.tenant),
            StateInput::Clock { route, .. } => *route,
        }
    }

    fn order(&self) -> u8 {
        match self {
            StateInput::Upsert(_) | StateInput::Remove { .. } => 0,
            StateInput::Restore(_) => 1,
            StateInput::Holding { .. } => 2,
            StateInput::Match { .. } => 3,
            StateInput::Clock { .. } => 4,
        }
    }
}

/// Stable FNV-1a hash of a tenant id: which worker owns the tenant.
pub fn tenant_hash(tenant: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in tenant.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Counters of what the state machine did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateStats {
    /// Match intents emitted.
    pub matches: u64,
    /// Firing intents emitted.
    pub firing: u64,
    /// Resolved intents emitted.
    pub resolved: u64,
    /// Notifications withheld by a throttle.
    pub throttled: u64,
    /// Notifications whose delivery was deferred by quiet hours.
    pub deferred: u64,
    /// Windows judged.
    pub windows_closed: u64,
}

#[derive(Debug)]
struct Firing {
    since_window: i64,
    /// Whether the FIRING was sent (not throttled); a RESOLVED is only sent for a sent FIRING.
    notified: bool,
}

#[derive(Debug)]
struct RuleState {
    rule: Rule,
    /// Start of the next window to judge (windowed rules).
    next_window: i64,
    /// Holding windows of the current version: start → group → aggregate.
    holding: BTreeMap<i64, HashMap<Vec<AttrValue>, Holding>>,
    firing: HashMap<Vec<AttrValue>, Firing>,
}

/// The alert state of the tenants one worker owns.
#[derive(Debug, Default)]
pub struct AlertState {
    rules: HashMap<(String, String), RuleState>,
    /// (window end, tenant, rule id): when each windowed rule's next window closes.
    closing: BinaryHeap<Reverse<(i64, String, String)>>,
    last_sent: HashMap<(String, String, Vec<AttrValue>), i64>,
    watermark_ms: i64,
    /// Totals since start.
    pub stats: StateStats,
}

impl AlertState {
    /// A state with nothing in it; the watermark starts at `watermark_ms`.
    pub fn new(watermark_ms: i64) -> Self {
        AlertState {
            watermark_ms,
            ..Default::default()
        }
    }

    /// Applies one epoch's inputs, in a fixed order (rules, restores, window changes, matches by
    /// event time, clock), appending intents to `out`.
    pub fn apply(&mut self, mut inputs: Vec<StateInput>, out: &mut Vec<Intent>) {
        inputs.sort_by(|a, b| {
            a.order().cmp(&b.order()).then_with(|| match (a, b) {
                (StateInput::Match { event: x, .. }, StateInput::Match { event: y, .. }) => {
                    (x.ts_ms, &x.id).cmp(&(y.ts_ms, &y.id))
                }
                _ => std::cmp::Ordering::Equal,
            })
        });
        // New rules start judging at the first window still open under this epoch's watermark:
        // no event of an earlier window can reach them any more.
        let epoch_watermark = inputs
            .iter()
            .filter_map(|i| match i {
                StateInput::Clock { watermark_ms, .. } => Some(*watermark_ms),
                _ => None,
            })
            .max()
            .unwrap_or(self.watermark_ms)
            .max(self.watermark_ms);
        for input in inputs {
            match input {
                StateInput::Upsert(rule) => self.upsert(rule, epoch_watermark),
                StateInput::Remove { tenant, rule_id } => {
                    self.last_sent
                        .retain(|(t, r, _), _| !(t == &tenant && r == &rule_id));
                    self.rules.remove(&(tenant, rule_id));
                }
                StateInput::Restore(alert) => {
                    if let Some(state) = self.rules.get_mut(&(alert.tenant, alert.rule_id)) {
                        state.firing.insert(
                            alert.group,
                            Firing {
                                since_window: alert.since_window,
                                notified: true,
                            },
                        );
                    }
                }
                StateInput::Holding { key, holding, diff } => {
                    let Some(state) = self.rules.get_mut(&(key.tenant, key.rule_id)) else {
                        continue;
                    };
                    if state.rule.version != key.version || key.start < state.next_window {
                        continue;
                    }
                    let groups = state.holding.entry(key.start).or_default();
                    if diff > 0 {
                        groups.insert(key.group, holding);
                    } else if groups.get(&key.group) == Some(&holding) {
                        groups.remove(&key.group);
                    }
                }
                StateInput::Match {
                    rule_id,
                    version,
                    group,
                    event,
                } => self.on_match(rule_id, version, group, event, out),
                StateInput::Clock { watermark_ms, .. } => self.advance(watermark_ms, out),
            }
        }
    }

    fn upsert(&mut self, rule: Rule, watermark: i64) {
        let key = (rule.tenant.clone(), rule.id.clone());
        let window = match &rule.kind {
            RuleKind::Windowed { window, .. } => Some(*window),
            RuleKind::Match => None,
        };
        match self.rules.get_mut(&key) {
            Some(state) => {
                let old_window = match &state.rule.kind {
                    RuleKind::Windowed { window, .. } => Some(*window),
                    RuleKind::Match => None,
                };
                // The new version's windows arrive as fresh holdings in this same epoch.
                state.holding.clear();
                if old_window != window {
                    state.firing.clear();
                    if let Some(w) = &window {
                        state.next_window = first_open_window(watermark, w);
                        self.closing
                            .push(Reverse((state.next_window + w.size_ms, key.0, key.1)));
                    }
                }
                state.rule = rule;
            }
            None => {
                let next_window = window
                    .map(|w| first_open_window(watermark, &w))
                    .unwrap_or(0);
                if let Some(w) = &window {
                    self.closing.push(Reverse((
                        next_window + w.size_ms,
                        key.0.clone(),
                        key.1.clone(),
                    )));
                }
                self.rules.insert(
                    key,
                    RuleState {
                        rule,
                        next_window,
                        holding: BTreeMap::new(),
                        firing: HashMap::new(),
                    },
                );
            }
        }
    }

    fn on_match(
        &mut self,
        rule_id: String,
        version: u64,
        group: Vec<AttrValue>,
        event: Event,
        out: &mut Vec<Intent>,
    ) {
        let Some(state) = self.rules.get(&(event.tenant.clone(), rule_id)) else {
            return;
        };
        let rule = &state.rule;
        if rule.version != version {
            return;
        }
        if !throttle_allows(
            &mut self.last_sent,
            rule,
            &group,
            event.ts_ms,
            &mut self.stats,
        ) {
            return;
        }
        let deliver = deliver_at(event.ts_ms, rule.quiet_hours.as_ref(), rule.tz());
        self.stats.matches += 1;
        let intent = Intent {
            id: intent_id(&[&rule.tenant, &rule.id, "match", &event.id]),
            tenant: rule.tenant.clone(),
            rule_id: rule.id.clone(),
            rule_version: rule.version,
            kind: IntentKind::Match,
            group_label: group_label(&rule.group_by, &group),
            group: rule.group_by.iter().cloned().zip(group).collect(),
            at_ms: event.ts_ms,
            deliver_at_ms: deliver,
            window: None,
            firing_since_ms: None,
            value: None,
            baseline: None,
            event: Some(event),
        };
        push_counting_deferral(out, &mut self.stats, intent);
    }

    /// Moves the watermark and judges every window that closed.
    fn advance(&mut self, watermark_ms: i64, out: &mut Vec<Intent>) {
        if watermark_ms <= self.watermark_ms {
            return;
        }
        self.watermark_ms = watermark_ms;
        while let Some(Reverse((end, _, _))) = self.closing.peek() {
            if *end > watermark_ms {
                break;
            }
            let Some(Reverse((end, tenant, rule_id))) = self.closing.pop() else {
                break;
            };
            let key = (tenant, rule_id);
            let Some(state) = self.rules.get_mut(&key) else {
                continue;
            };
            let RuleKind::Windowed { window, .. } = state.rule.kind.clone() else {
                continue;
            };
            if state.next_window + window.size_ms != end {
                continue; // a stale schedule entry from before a rule change
            }
            judge_windows(
                state,
                &window,
                watermark_ms,
                &mut self.last_sent,
                &mut self.stats,
                out,
            );
            self.closing
                .push(Reverse((state.next_window + window.size_ms, key.0, key.1)));
        }
    }
}

/// Judges the rule's windows that closed by `watermark_ms`, in order.
fn judge_windows(
    state: &mut RuleState,
    window: &WindowSpec,
    watermark_ms: i64,
    last_sent: &mut HashMap<(String, String, Vec<AttrValue>), i64>,
    stats: &mut StateStats,
    out: &mut Vec<Intent>,
) {
    while state.next_window + window.size_ms <= watermark_ms {
        if state.firing.is_empty() {
            // Nothing can resolve: jump straight to the next window that holds, if it closed.
            let next_holding = state.holding.keys().next().copied();
            let skip_to = match next_holding {
                Some(start) if start > state.next_window => start,
                Some(_) => state.next_window,
                None => first_open_window(watermark_ms, window),
            };
            if skip_to > state.next_window {
                state.next_window = skip_to;
                continue;
            }
        }
        let start = state.next_window;
        let end = start + window.size_ms;
        let holding = state.holding.remove(&start).unwrap_or_default();
        stats.windows_closed += 1;
        let rule = &state.rule;
        let resolved: Vec<Vec<AttrValue>> = state
            .firing
            .keys()
            .filter(|g| !holding.contains_key(*g))
            .cloned()
            .collect();
        for group in resolved {
            let Some(firing) = state.firing.remove(&group) else {
                continue;
            };
            if !firing.notified {
                continue;
            }
            if !throttle_allows(last_sent, rule, &group, end, stats) {
                continue;
            }
            stats.resolved += 1;
            let mut intent = window_intent(rule, IntentKind::Resolved, group, start, end, None);
            intent.firing_since_ms = Some(firing.since_window);
            push_counting_deferral(out, stats, intent);
        }
        let mut started: Vec<(&Vec<AttrValue>, &Holding)> = holding
            .iter()
            .filter(|(g, _)| !state.firing.contains_key(*g))
            .collect();
        started.sort();
        let mut newly_firing = HashSet::new();
        for (group, value) in started {
            let notified = throttle_allows(last_sent, rule, group, end, stats);
            if notified {
                stats.firing += 1;
                let intent = window_intent(
                    rule,
                    IntentKind::Firing,
                    group.clone(),
                    start,
                    end,
                    Some(value),
                );
                push_counting_deferral(out, stats, intent);
            }
            newly_firing.insert((group.clone(), notified));
        }
        for (group, notified) in newly_firing {
            state.firing.insert(
                group,
                Firing {
                    since_window: start,
                    notified,
                },
            );
        }
        state.next_window += window.slide_ms;
    }
    // Holdings of windows that can no longer be judged (before the next one) are dropped.
    let next = state.next_window;
    state.holding.retain(|start, _| *start >= next);
}

fn push_counting_deferral(out: &mut Vec<Intent>, stats: &mut StateStats, intent: Intent) {
    if intent.deliver_at_ms > intent.at_ms {
        stats.deferred += 1;
    }
    out.push(intent);
}

fn throttle_allows(
    last_sent: &mut HashMap<(String, String, Vec<AttrValue>), i64>,
    rule: &Rule,
    group: &[AttrValue],
    at_ms: i64,
    stats: &mut StateStats,
) -> bool {
    if rule.throttle_ms <= 0 {
        return true;
    }
    let key = (rule.tenant.clone(), rule.id.clone(), group.to_vec());
    match last_sent.get(&key) {
        Some(last) if at_ms - last < rule.throttle_ms => {
            stats.throttled += 1;
            false
        }
        _ => {
            last_sent.insert(key, at_ms);
            true
        }
    }
}

fn window_intent(
    rule: &Rule,
    kind: IntentKind,
    group: Vec<AttrValue>,
    start: i64,
    end: i64,
    holding: Option<&Holding>,
) -> Intent {
    let label = group_label(&rule.group_by, &group);
    let deliver = deliver_at(end, rule.quiet_hours.as_ref(), rule.tz());
    Intent {
        id: intent_id(&[
            &rule.tenant,
            &rule.id,
            kind.as_str(),
            &label,
            &start.to_string(),
        ]),
        tenant: rule.tenant.clone(),
        rule_id: rule.id.clone(),
        rule_version: rule.version,
        kind,
        group: rule.group_by.iter().cloned().zip(group).collect(),
        group_label: label,
        at_ms: end,
        deliver_at_ms: deliver,
        window: Some((start, end)),
        firing_since_ms: None,
        value: holding.map(|h| h.value),
        baseline: holding.and_then(|h| h.baseline),
        event: None,
    }
}
