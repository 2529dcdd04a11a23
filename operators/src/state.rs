//! Alert state: turns window conditions and matches into notification intents.
//!
//! Per rule and group key, Alertmanager-style: FIRING once when a closed window's condition holds
//! and the previous window's did not, RESOLVED once when it stops holding. A window is judged when
//! the watermark passes its end, so every event it will ever count (within the allowed lateness)
//! is in. Throttle and quiet hours apply to every notification. This is plain sequential state,
//! run inside a timely operator on the worker that owns the tenant; rules live in numbered slots so
//! the per-event path never builds a string key.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::intent::{Intent, IntentKind, intent_id};
use crate::rule::{Rule, RuleKind, WindowSpec, group_label};
use crate::time::{deliver_at, first_open_window};
use crate::value::{AttrValue, Num};
use crate::window::WindowTable;
use crate::{HashMap, HashSet};

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
    /// Group keys the rules' throttles remember now (a gauge, kept up to date as keys are
    /// remembered and forgotten, not a total).
    pub throttle_keys: u64,
}

#[derive(Debug)]
struct Firing {
    since_window: i64,
    /// Whether the FIRING was sent (not throttled); a RESOLVED is only sent for a sent FIRING.
    notified: bool,
}

/// One active rule and everything the worker keeps for it.
#[derive(Debug)]
pub(crate) struct RuleState {
    pub(crate) rule: Rule,
    /// The rule's time zone, parsed once.
    tz: chrono_tz::Tz,
    /// Tells this rule's entries in the closing schedule from those of an earlier rule in the slot.
    generation: u64,
    /// Start of the next window to judge (windowed rules).
    next_window: i64,
    firing: HashMap<Vec<AttrValue>, Firing>,
    /// When a notification was last sent per group key, for the throttle.
    last_sent: Throttle,
}

/// How long past the watermark a throttle remembers a group's last notification. Events that
/// arrive later than this after the watermark passed their time (beyond any allowed lateness)
/// are no longer throttled against what was sent before; without a horizon, a rule grouped by a
/// high-cardinality key (customer, SKU) would keep one entry per key forever.
const THROTTLE_MEMORY_MS: i64 = 24 * 60 * 60 * 1000;

/// Entries a rule's throttle holds before it first looks for forgotten ones.
const THROTTLE_PRUNE_MIN: usize = 1024;

/// When a notification was last sent per group key of one rule.
#[derive(Debug, Default)]
struct Throttle {
    sent: HashMap<Vec<AttrValue>, i64>,
    /// Size at which the next pruning pass runs (doubles with what survives, so pruning costs
    /// O(1) amortized per notification).
    prune_at: usize,
}

impl Throttle {
    /// Whether a notification for `group` at `at_ms` may go out under `rule`'s throttle; records
    /// it if so. `watermark_ms` bounds what may be forgotten.
    fn allows(
        &mut self,
        rule: &Rule,
        group: &[AttrValue],
        at_ms: i64,
        watermark_ms: i64,
        stats: &mut StateStats,
    ) -> bool {
        if rule.throttle_ms <= 0 {
            return true;
        }
        // One lookup; the group key is copied only for a key not seen before.
        match self.sent.get_mut(group) {
            Some(last) if at_ms - *last < rule.throttle_ms => {
                stats.throttled += 1;
                return false;
            }
            Some(last) => {
                *last = at_ms;
                return true;
            }
            None => {
                self.sent.insert(group.to_vec(), at_ms);
                stats.throttle_keys += 1;
            }
        }
        if self.sent.len() >= self.prune_at.max(THROTTLE_PRUNE_MIN) {
            let horizon = watermark_ms
                .saturating_sub(rule.throttle_ms)
                .saturating_sub(THROTTLE_MEMORY_MS);
            let before = self.sent.len();
            self.sent.retain(|_, last| *last > horizon);
            stats.throttle_keys -= (before - self.sent.len()) as u64;
            self.prune_at = (2 * self.sent.len()).max(THROTTLE_PRUNE_MIN);
        }
        true
    }
}

/// The alert state of the tenants one worker owns.
#[derive(Debug, Default)]
pub(crate) struct AlertState {
    rules: Vec<Option<RuleState>>,
    free: Vec<u32>,
    by_id: HashMap<(String, String), u32>,
    /// (window end, slot, generation): when each windowed rule's next window closes.
    closing: BinaryHeap<Reverse<(i64, u32, u64)>>,
    /// Scratch: the schedule entries due at the watermark being advanced to.
    due: Vec<(i64, u32, u64)>,
    generations: u64,
    watermark_ms: i64,
    /// Totals since start.
    pub(crate) stats: StateStats,
}

fn window_of(rule: &Rule) -> Option<WindowSpec> {
    match &rule.kind {
        RuleKind::Windowed { window, .. } => Some(*window),
        RuleKind::Match => None,
    }
}

impl AlertState {
    /// The latest watermark the state advanced to.
    pub(crate) fn watermark_ms(&self) -> i64 {
        self.watermark_ms
    }

    /// The rule in `slot`, if any.
    pub(crate) fn get(&self, slot: u32) -> Option<&RuleState> {
        self.rules.get(slot as usize).and_then(Option::as_ref)
    }

    /// The rule in `slot`, if any.
    pub(crate) fn rule(&self, slot: u32) -> Option<&Rule> {
        self.get(slot).map(|state| &state.rule)
    }

    /// Adds or changes a rule; returns its slot and the version it replaced. New rules start
    /// judging at the first window still open under `watermark`: no event of an earlier window
    /// can reach them any more.
    pub(crate) fn upsert(&mut self, rule: Rule, watermark: i64) -> (u32, Option<Rule>) {
        let window = window_of(&rule);
        let tz = rule.tz();
        if let Some(&slot) = self.by_id.get(&(rule.tenant.clone(), rule.id.clone()))
            && let Some(state) = self.rules[slot as usize].as_mut()
        {
            if window_of(&state.rule) != window {
                state.firing.clear();
                if let Some(w) = &window {
                    state.next_window = first_open_window(watermark, w);
                    self.closing.push(Reverse((
                        state.next_window + w.size_ms,
                        slot,
                        state.generation,
                    )));
                }
            }
            state.tz = tz;
            let previous = std::mem::replace(&mut state.rule, rule);
            return (slot, Some(previous));
        }
        let next_window = window
            .map(|w| first_open_window(watermark, &w))
            .unwrap_or(0);
        self.generations += 1;
        let generation = self.generations;
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.rules.push(None);
                (self.rules.len() - 1) as u32
            }
        };
        if let Some(w) = &window {
            self.closing
                .push(Reverse((next_window + w.size_ms, slot, generation)));
        }
        self.by_id
            .insert((rule.tenant.clone(), rule.id.clone()), slot);
        self.rules[slot as usize] = Some(RuleState {
            rule,
            tz,
            generation,
            next_window,
            firing: HashMap::default(),
            last_sent: Throttle::default(),
        });
        (slot, None)
    }

    /// Removes a rule, its alerts and its throttle; returns its slot and the rule.
    pub(crate) fn remove(&mut self, tenant: &str, rule_id: &str) -> Option<(u32, Rule)> {
        let slot = self
            .by_id
            .remove(&(tenant.to_string(), rule_id.to_string()))?;
        let state = self.rules.get_mut(slot as usize)?.take()?;
        self.stats.throttle_keys -= state.last_sent.sent.len() as u64;
        self.free.push(slot);
        Some((slot, state.rule))
    }

    /// Marks an alert that was firing before a restart as firing again.
    pub(crate) fn restore(&mut self, alert: OpenAlert) {
        if let Some(&slot) = self.by_id.get(&(alert.tenant, alert.rule_id))
            && let Some(state) = self.rules.get_mut(slot as usize).and_then(Option::as_mut)
        {
            state.firing.insert(
                alert.group,
                Firing {
                    since_window: alert.since_window,
                    notified: true,
                },
            );
        }
    }

    /// An event matched the `match` rule in `slot`.
    pub(crate) fn on_match(&mut self, slot: u32, event: &Event, out: &mut Vec<Intent>) {
        let Some(state) = self.rules.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        let rule = &state.rule;
        let group = rule.group_of(&event.attrs);
        if !state.last_sent.allows(
            rule,
            &group,
            event.ts_ms,
            self.watermark_ms,
            &mut self.stats,
        ) {
            return;
        }
        let deliver = deliver_at(event.ts_ms, rule.quiet_hours.as_ref(), state.tz);
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
            event: Some(event.clone()),
        };
        push_counting_deferral(out, &mut self.stats, intent);
    }

    /// Moves the watermark and judges every window that closed; their aggregates are dropped
    /// from `windows`.
    pub(crate) fn advance(
        &mut self,
        watermark_ms: i64,
        windows: &mut WindowTable,
        out: &mut Vec<Intent>,
    ) {
        if watermark_ms <= self.watermark_ms {
            return;
        }
        self.watermark_ms = watermark_ms;
        // Everything due, in schedule order; a rule judged here is scheduled again after the
        // watermark, so nothing joins the list while it is worked through.
        let mut due = std::mem::take(&mut self.due);
        while let Some(Reverse((end, _, _))) = self.closing.peek() {
            if *end > watermark_ms {
                break;
            }
            let Some(Reverse(entry)) = self.closing.pop() else {
                break;
            };
            due.push(entry);
        }
        for k in 0..due.len() {
            self.prefetch_due(&due[k + 1..], windows);
            let (end, slot, generation) = due[k];
            let Some(state) = self.rules.get_mut(slot as usize).and_then(Option::as_mut) else {
                continue;
            };
            if state.generation != generation {
                continue; // an entry of a rule removed since
            }
            let Some(window) = window_of(&state.rule) else {
                continue;
            };
            if state.next_window + window.size_ms != end {
                continue; // a stale schedule entry from before a rule change
            }
            judge_windows(
                state,
                slot,
                windows,
                &window,
                watermark_ms,
                &mut self.stats,
                out,
            );
            windows.drop_before(slot, state.next_window);
            self.closing.push(Reverse((
                state.next_window + window.size_ms,
                slot,
                generation,
            )));
        }
        due.clear();
        self.due = due;
    }

    /// Asks the CPU to start loading the state of the rules judged next, `next` (from the one
    /// after the rule being judged now), in steps that each need the step before, one rule
    /// earlier: a rule's windows close about once per slide, long after they were last touched.
    fn prefetch_due(&self, next: &[(i64, u32, u64)], windows: &WindowTable) {
        if let Some(&(_, slot, _)) = next.get(3) {
            if let Some(state) = self.rules.get(slot as usize) {
                crate::prefetch_value(state);
            }
            windows.prefetch_rule(slot);
        }
        if let Some(&(_, slot, _)) = next.get(1) {
            windows.prefetch_panes(slot);
        }
        if let Some(&(_, slot, _)) = next.first() {
            windows.prefetch_oldest(slot);
        }
    }
}

/// Judges the windows of the rule in `slot` that closed by `watermark_ms`, in order, and drops
/// them from `windows`.
fn judge_windows(
    state: &mut RuleState,
    slot: u32,
    windows: &mut WindowTable,
    window: &WindowSpec,
    watermark_ms: i64,
    stats: &mut StateStats,
    out: &mut Vec<Intent>,
) {
    let RuleKind::Windowed { eval, .. } = &state.rule.kind else {
        return;
    };
    while state.next_window + window.size_ms <= watermark_ms {
        if state.firing.is_empty() {
            // Nothing can resolve: jump straight to the next window that counts anything, but
            // never past the first one still open: an on-time event can still reach it.
            let open = first_open_window(watermark_ms, window);
            let skip_to = windows
                .first_start_from(slot, state.next_window)
                .map_or(open, |pane| first_open_window(pane, window).min(open));
            if skip_to > state.next_window {
                state.next_window = skip_to;
                continue;
            }
        }
        let start = state.next_window;
        let end = start + window.size_ms;
        let holding = windows.judge_and_drop(slot, start, window, eval);
        stats.windows_closed += 1;
        let rule = &state.rule;
        let holds = |group: &[AttrValue]| {
            holding
                .binary_search_by(|(g, _)| g.as_slice().cmp(group))
                .is_ok()
        };
        let resolved: Vec<Vec<AttrValue>> =
            state.firing.keys().filter(|g| !holds(g)).cloned().collect();
        for group in resolved {
            let Some(firing) = state.firing.remove(&group) else {
                continue;
            };
            if !firing.notified {
                continue;
            }
            if !state
                .last_sent
                .allows(rule, &group, end, watermark_ms, stats)
            {
                continue;
            }
            stats.resolved += 1;
            let mut intent = window_intent(
                rule,
                state.tz,
                IntentKind::Resolved,
                group,
                start,
                end,
                None,
            );
            intent.firing_since_ms = Some(firing.since_window);
            push_counting_deferral(out, stats, intent);
        }
        // In group order, as `judge_and_drop` returns them.
        let started = holding
            .iter()
            .filter(|(g, _)| !state.firing.contains_key(g.as_slice()));
        let mut newly_firing = HashSet::default();
        for (group, value) in started {
            let notified = state
                .last_sent
                .allows(rule, group, end, watermark_ms, stats);
            if notified {
                stats.firing += 1;
                let intent = window_intent(
                    rule,
                    state.tz,
                    IntentKind::Firing,
                    group.to_vec(),
                    start,
                    end,
                    Some(value),
                );
                push_counting_deferral(out, stats, intent);
            }
            newly_firing.insert((group.to_vec(), notified));
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
}

fn push_counting_deferral(out: &mut Vec<Intent>, stats: &mut StateStats, intent: Intent) {
    if intent.deliver_at_ms > intent.at_ms {
        stats.deferred += 1;
    }
    out.push(intent);
}

fn window_intent(
    rule: &Rule,
    tz: chrono_tz::Tz,
    kind: IntentKind,
    group: Vec<AttrValue>,
    start: i64,
    end: i64,
    holding: Option<&Holding>,
) -> Intent {
    let label = group_label(&rule.group_by, &group);
    let deliver = deliver_at(end, rule.quiet_hours.as_ref(), tz);
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
