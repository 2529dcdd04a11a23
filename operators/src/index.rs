//! The rules of one (tenant, event type), compiled for the per-event path.
//!
//! Every attribute the rules mention gets a number; an event's values for them are looked up once
//! (each of its attributes probes a small table of the rules' names, keyed by a name's length and
//! first eight bytes, so most names are told apart without reading them as strings), and the
//! filters, compiled into one flat program per (tenant, type), read them by number. A `match`
//! rule whose filter requires a string attribute to equal one of a few values (`=` or `in`, alone
//! or inside an `and`) is filed under those values, and only events carrying one of them test it.
//! One that requires a number to exceed a bound (`>` or `>=`, alone or inside an `and`: "orders
//! over 500,000") is filed by its bound, and only events above it test it. Every other rule is
//! tested against every event.
//! The filing only narrows the candidates: each candidate's whole filter is still evaluated, with
//! the same semantics as [`Predicate::eval`].

use crate::HashMap;
use crate::predicate::{CmpOp, Predicate, compare};
use crate::rule::{AggFn, Rule, RuleKind, WindowSpec};
use crate::value::{AttrValue, Attrs, Num};

/// Marks "no filter" / "no attribute".
const NONE: u32 = u32::MAX;

/// One node of a compiled filter, in prefix order; combinators know where their children end.
#[derive(Debug)]
enum Step {
    /// A comparison with a number: the common case, without the general comparison's dispatch.
    CmpNum {
        attr: u32,
        op: CmpOp,
        value: f64,
    },
    /// `=` (or `!=` when `negate`) with a string (held as plain text: compared with an event's
    /// value without decoding two small strings' representations).
    EqStr {
        attr: u32,
        value: Box<str>,
        negate: bool,
    },
    /// `in` with strings only.
    InStr {
        attr: u32,
        values: Vec<Box<str>>,
    },
    Cmp {
        attr: u32,
        op: CmpOp,
        value: AttrValue,
    },
    In {
        attr: u32,
        values: Vec<AttrValue>,
    },
    Contains {
        attr: u32,
        value: AttrValue,
    },
    Exists {
        attr: u32,
    },
    And {
        end: u32,
    },
    Or {
        end: u32,
    },
    Not {
        end: u32,
    },
}

fn step_end(steps: &[Step], at: usize) -> usize {
    match steps[at] {
        Step::And { end } | Step::Or { end } | Step::Not { end } => end as usize,
        _ => at + 1,
    }
}

/// Evaluates the filter rooted at `at` against an event's `values` (by attribute number).
fn eval(steps: &[Step], at: usize, values: &[Option<&AttrValue>]) -> bool {
    match &steps[at] {
        // A value of another type compares as `compare` has it: only `!=` holds.
        Step::CmpNum { attr, op, value } => match values[*attr as usize] {
            Some(AttrValue::Num(actual)) => op.test_f64(actual.0, *value),
            Some(_) => *op == CmpOp::Ne,
            None => false,
        },
        Step::EqStr {
            attr,
            value,
            negate,
        } => match values[*attr as usize] {
            Some(AttrValue::Str(actual)) => (actual.as_str() == &**value) != *negate,
            Some(_) => *negate,
            None => false,
        },
        Step::InStr { attr, values: set } => match values[*attr as usize] {
            Some(AttrValue::Str(actual)) => {
                let actual = actual.as_str();
                set.iter().any(|v| &**v == actual)
            }
            _ => false,
        },
        Step::Cmp { attr, op, value } => {
            values[*attr as usize].is_some_and(|actual| compare(actual, *op, value))
        }
        Step::In { attr, values: set } => values[*attr as usize]
            .is_some_and(|actual| set.iter().any(|v| compare(actual, CmpOp::Eq, v))),
        Step::Contains { attr, value } => match (values[*attr as usize], value) {
            (Some(AttrValue::Str(s)), AttrValue::Str(needle)) => s.contains(needle.as_str()),
            (Some(AttrValue::List(items)), needle) => {
                items.iter().any(|item| compare(item, CmpOp::Eq, needle))
            }
            _ => false,
        },
        Step::Exists { attr } => values[*attr as usize].is_some(),
        Step::And { end } => {
            let mut i = at + 1;
            while i < *end as usize {
                if !eval(steps, i, values) {
                    return false;
                }
                i = step_end(steps, i);
            }
            true
        }
        Step::Or { end } => {
            let mut i = at + 1;
            while i < *end as usize {
                if eval(steps, i, values) {
                    return true;
                }
                i = step_end(steps, i);
            }
            false
        }
        Step::Not { .. } => !eval(steps, at + 1, values),
    }
}

/// The (attribute, accepted string values) a filter requires, if it requires one.
fn required_values(filter: &Predicate) -> Option<(&str, Vec<&str>)> {
    match filter {
        Predicate::Cmp {
            attr,
            op: CmpOp::Eq,
            value: AttrValue::Str(value),
        } => Some((attr, vec![value.as_str()])),
        Predicate::In { attr, values } => {
            let mut strings = Vec::with_capacity(values.len());
            for value in values {
                let AttrValue::Str(s) = value else {
                    return None;
                };
                if !strings.contains(&s.as_str()) {
                    strings.push(s.as_str());
                }
            }
            Some((attr, strings))
        }
        // The narrowest requirement of any conjunct; the first of equals, so the choice is stable.
        Predicate::And(items) => items
            .iter()
            .filter_map(required_values)
            .reduce(|best, next| {
                if next.1.len() < best.1.len() {
                    next
                } else {
                    best
                }
            }),
        _ => None,
    }
}

/// The (attribute, bound, inclusive) of a lower bound (`>` or `>=` a number) a filter
/// requires, if it requires one. NaN bounds are left out: nothing exceeds them, but they would
/// not sort.
fn required_lower_bound(filter: &Predicate) -> Option<(&str, f64, bool)> {
    match filter {
        Predicate::Cmp {
            attr,
            op: op @ (CmpOp::Gt | CmpOp::Ge),
            value: AttrValue::Num(bound),
        } if !bound.0.is_nan() => Some((attr, bound.0, *op == CmpOp::Ge)),
        Predicate::And(items) => items.iter().find_map(required_lower_bound),
        _ => None,
    }
}

/// The rules filed under attribute `attr` in `filing`, a new empty filing if none are yet.
fn filed_under<'f, T: Default>(filing: &'f mut Vec<(String, T)>, attr: &str) -> &'f mut T {
    let at = match filing.iter().position(|(a, _)| a == attr) {
        Some(at) => at,
        None => {
            filing.push((attr.to_string(), T::default()));
            filing.len() - 1
        }
    };
    &mut filing[at].1
}

/// A `match` rule: its slot and the root of its filter.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Matcher {
    /// The rule's slot in the alert state.
    pub(crate) slot: u32,
    filter: u32,
}

/// A windowed rule, with what its contributions need.
#[derive(Clone, Debug)]
pub(crate) struct WindowedRule {
    /// The rule's slot in the alert state.
    pub(crate) slot: u32,
    filter: u32,
    /// Range of `Compiled::groups` holding the group key's attribute numbers.
    group: (u32, u32),
    /// The aggregated attribute.
    value: u32,
    /// The panes its events count in (see [`crate::time::pane_of`]).
    pub(crate) pane: WindowSpec,
    pub(crate) agg: AggFn,
    pub(crate) relative: bool,
    pub(crate) period_ms: i64,
    /// How long after an event its last window of this rule closes.
    pub(crate) retention_ms: i64,
}

/// `match` rules filed by the lower bound their filter requires of one numeric attribute.
#[derive(Debug)]
struct Bounded {
    attr: u32,
    /// By bound, ascending; an inclusive bound before a strict one of the same value, so the
    /// rules an event's value passes are always a prefix.
    by_bound: Vec<Bound>,
}

/// A bound, whether it is inclusive, and the rule that requires it.
type Bound = (f64, bool, Matcher);

#[derive(Debug)]
struct Keyed {
    attr: u32,
    by_value: HashMap<String, Vec<Matcher>>,
}

/// The rules of one (tenant, type), compiled.
#[derive(Debug, Default)]
pub(crate) struct Compiled {
    /// Attribute names by number (ranges of `text`).
    names: Vec<(u32, u32)>,
    text: String,
    /// The names' numbers by [`NameKey`], open addressing (see [`Compiled::with_values`]).
    lookup: Vec<NameSlot>,
    steps: Vec<Step>,
    scan: Vec<Matcher>,
    keyed: Vec<Keyed>,
    bounded: Vec<Bounded>,
    /// Windowed rules.
    pub(crate) windowed: Vec<WindowedRule>,
    groups: Vec<u32>,
}

/// A name's length and first eight bytes: equal for equal names, and for names of eight bytes
/// or fewer, equal only for equal names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct NameKey {
    head: u64,
    len: u32,
}

impl NameKey {
    fn of(name: &[u8]) -> NameKey {
        let head = match name.first_chunk::<8>() {
            Some(first) => u64::from_le_bytes(*first),
            None => name
                .iter()
                .rev()
                .fold(0u64, |head, byte| (head << 8) | u64::from(*byte)),
        };
        NameKey {
            head,
            // Longer names than u32::MAX bytes do not exist in events (bodies are capped far
            // below); saturating keeps the key total.
            len: u32::try_from(name.len()).unwrap_or(u32::MAX),
        }
    }

    /// Where the key's probe starts (before masking).
    fn slot(self) -> usize {
        let mixed =
            (self.head ^ u64::from(self.len).rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (mixed >> 40) as usize
    }
}

/// One slot of the name table: a name's key and number, or empty (`n == NONE`).
#[derive(Clone, Copy, Debug)]
struct NameSlot {
    key: NameKey,
    n: u32,
}

impl NameSlot {
    /// The table of `c`'s names: a power of two at least twice their count, so probes are short
    /// and always reach an empty slot.
    fn table(c: &Compiled) -> Vec<NameSlot> {
        let size = (c.names.len() * 2).next_power_of_two().max(4);
        let mut table = vec![
            NameSlot {
                key: NameKey::default(),
                n: NONE,
            };
            size
        ];
        for n in 0..c.names.len() as u32 {
            let key = NameKey::of(c.name(n).as_bytes());
            let mut at = key.slot() & (size - 1);
            while table[at].n != NONE {
                at = (at + 1) & (size - 1);
            }
            table[at] = NameSlot { key, n };
        }
        table
    }
}

/// The value of a missing attribute, for group keys.
static NULL: AttrValue = AttrValue::Null;

impl Compiled {
    fn compile(match_rules: &[(u32, &Rule)], windowed_rules: &[(u32, &Rule)]) -> Compiled {
        let mut c = Compiled::default();
        let mut numbers: HashMap<String, u32> = HashMap::default();
        let mut keyed: Vec<(String, HashMap<String, Vec<Matcher>>)> = Vec::new();
        let mut bounded: Vec<(String, Vec<Bound>)> = Vec::new();
        for (slot, rule) in match_rules {
            let matcher = Matcher {
                slot: *slot,
                filter: c.emit_filter(rule, &mut numbers),
            };
            let filter = rule.filter.as_ref();
            match filter.and_then(required_values) {
                None => match filter.and_then(required_lower_bound) {
                    None => c.scan.push(matcher),
                    Some((attr, bound, inclusive)) => {
                        filed_under(&mut bounded, attr).push((bound, inclusive, matcher));
                    }
                },
                Some((attr, values)) => {
                    let by_value = filed_under(&mut keyed, attr);
                    for value in values {
                        by_value.entry(value.to_string()).or_default().push(matcher);
                    }
                }
            }
        }
        for (slot, rule) in windowed_rules {
            let RuleKind::Windowed {
                window,
                attr,
                eval,
                period_ms,
            } = &rule.kind
            else {
                continue;
            };
            let filter = c.emit_filter(rule, &mut numbers);
            let start = c.groups.len() as u32;
            for name in &rule.group_by {
                let n = c.number(name, &mut numbers);
                c.groups.push(n);
            }
            let value = attr.as_ref().map_or(NONE, |a| c.number(a, &mut numbers));
            c.windowed.push(WindowedRule {
                slot: *slot,
                filter,
                group: (start, c.groups.len() as u32),
                value,
                pane: crate::time::pane_of(window),
                agg: eval.agg,
                relative: eval.relative,
                period_ms: *period_ms,
                retention_ms: rule.retention_ms(),
            });
        }
        for (attr, by_value) in keyed {
            let attr = c.number(&attr, &mut numbers);
            c.keyed.push(Keyed { attr, by_value });
        }
        for (attr, mut by_bound) in bounded {
            let attr = c.number(&attr, &mut numbers);
            // No NaN bounds (see `required_lower_bound`), so `partial_cmp` always answers.
            by_bound.sort_by(|a, b| {
                a.0.partial_cmp(&b.0)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(b.1.cmp(&a.1))
            });
            c.bounded.push(Bounded { attr, by_bound });
        }
        c.lookup = NameSlot::table(&c);
        c
    }

    fn number(&mut self, name: &str, numbers: &mut HashMap<String, u32>) -> u32 {
        *numbers.entry(name.to_string()).or_insert_with(|| {
            let start = self.text.len() as u32;
            self.text.push_str(name);
            self.names.push((start, self.text.len() as u32));
            (self.names.len() - 1) as u32
        })
    }

    fn name(&self, n: u32) -> &str {
        let (start, end) = self.names[n as usize];
        &self.text[start as usize..end as usize]
    }

    fn emit_filter(&mut self, rule: &Rule, numbers: &mut HashMap<String, u32>) -> u32 {
        let Some(filter) = &rule.filter else {
            return NONE;
        };
        let root = self.steps.len() as u32;
        let mut steps = std::mem::take(&mut self.steps);
        emit(filter, &mut steps, &mut |a| self.number(a, numbers));
        self.steps = steps;
        root
    }

    /// Asks the CPU to start loading what matching an event against these rules reads first:
    /// the attribute names, the filters and the rule lists (a few KB at most of each).
    pub(crate) fn prefetch(&self) {
        crate::prefetch_slice(&self.names, 512);
        crate::prefetch_slice(self.text.as_bytes(), 512);
        crate::prefetch_slice(&self.lookup, 256);
        crate::prefetch_slice(&self.steps, 4096);
        crate::prefetch_slice(&self.scan, 1024);
        crate::prefetch_slice(&self.keyed, 256);
        crate::prefetch_slice(&self.bounded, 256);
        crate::prefetch_slice(&self.windowed, 2048);
        crate::prefetch_slice(&self.groups, 256);
    }

    /// Calls `f` with the event's value of every attribute the rules mention, by number (`None`
    /// when the event does not have it).
    pub(crate) fn with_values<R>(
        &self,
        attrs: &Attrs,
        f: impl FnOnce(&[Option<&AttrValue>]) -> R,
    ) -> R {
        let mut buffer = [None; 32];
        let mut spilled: Vec<Option<&AttrValue>>;
        let values: &mut [Option<&AttrValue>] = if self.names.len() <= buffer.len() {
            &mut buffer[..self.names.len()]
        } else {
            spilled = vec![None; self.names.len()];
            &mut spilled
        };
        if !self.names.is_empty() {
            let mask = self.lookup.len() - 1;
            for (name, value) in attrs {
                let name = name.as_bytes();
                let key = NameKey::of(name);
                let mut at = key.slot() & mask;
                loop {
                    let slot = &self.lookup[at];
                    if slot.n == NONE {
                        break;
                    }
                    // Equal keys are equal names when the names are 8 bytes or shorter.
                    if slot.key == key
                        && (name.len() <= 8 || self.name(slot.n).as_bytes()[8..] == name[8..])
                    {
                        values[slot.n as usize] = Some(value);
                        break;
                    }
                    at = (at + 1) & mask;
                }
            }
        }
        f(values)
    }

    /// Calls `f` with every `match` rule whose filter the event's `values` satisfy.
    pub(crate) fn matches(&self, values: &[Option<&AttrValue>], mut f: impl FnMut(u32)) {
        let mut test = |m: &Matcher| {
            if m.filter == NONE || eval(&self.steps, m.filter as usize, values) {
                f(m.slot);
            }
        };
        self.scan.iter().for_each(&mut test);
        for bounded in &self.bounded {
            if let Some(AttrValue::Num(Num(value))) = values[bounded.attr as usize] {
                let passed = bounded.by_bound.partition_point(|(bound, inclusive, _)| {
                    *bound < *value || (*bound == *value && *inclusive)
                });
                bounded.by_bound[..passed]
                    .iter()
                    .for_each(|(_, _, m)| test(m));
            }
        }
        for keyed in &self.keyed {
            if let Some(AttrValue::Str(value)) = values[keyed.attr as usize]
                && let Some(matchers) = keyed.by_value.get(value.as_str())
            {
                matchers.iter().for_each(&mut test);
            }
        }
    }

    /// Whether the event's `values` satisfy the windowed rule's filter.
    pub(crate) fn counts(&self, rule: &WindowedRule, values: &[Option<&AttrValue>]) -> bool {
        rule.filter == NONE || eval(&self.steps, rule.filter as usize, values)
    }

    /// Calls `f` with the windowed rule's group key and aggregated value for an event (null for
    /// missing attributes).
    pub(crate) fn with_group<R>(
        &self,
        rule: &WindowedRule,
        values: &[Option<&AttrValue>],
        f: impl FnOnce(&[&AttrValue], &AttrValue) -> R,
    ) -> R {
        let names = &self.groups[rule.group.0 as usize..rule.group.1 as usize];
        let value = if rule.value == NONE {
            &NULL
        } else {
            values[rule.value as usize].unwrap_or(&NULL)
        };
        let mut buffer = [&NULL; 8];
        if names.len() <= buffer.len() {
            for (slot, n) in buffer.iter_mut().zip(names) {
                *slot = values[*n as usize].unwrap_or(&NULL);
            }
            f(&buffer[..names.len()], value)
        } else {
            let group: Vec<&AttrValue> = names
                .iter()
                .map(|n| values[*n as usize].unwrap_or(&NULL))
                .collect();
            f(&group, value)
        }
    }
}

/// The values of an `in` list, if all are strings.
fn strings(values: &[AttrValue]) -> Option<Vec<Box<str>>> {
    values
        .iter()
        .map(|v| match v {
            AttrValue::Str(s) => Some(Box::from(s.as_str())),
            _ => None,
        })
        .collect()
}

/// Compiles `filter` into `steps`, numbering attributes with `number`.
fn emit(filter: &Predicate, steps: &mut Vec<Step>, number: &mut dyn FnMut(&str) -> u32) {
    let combinator = |steps: &mut Vec<Step>,
                      items: &[Predicate],
                      make: fn(u32) -> Step,
                      number: &mut dyn FnMut(&str) -> u32| {
        let at = steps.len();
        steps.push(make(0));
        for item in items {
            emit(item, steps, number);
        }
        steps[at] = make(steps.len() as u32);
    };
    match filter {
        Predicate::Cmp {
            attr,
            op,
            value: AttrValue::Num(value),
        } => steps.push(Step::CmpNum {
            attr: number(attr),
            op: *op,
            value: value.0,
        }),
        Predicate::Cmp {
            attr,
            op: op @ (CmpOp::Eq | CmpOp::Ne),
            value: AttrValue::Str(value),
        } => steps.push(Step::EqStr {
            attr: number(attr),
            value: Box::from(value.as_str()),
            negate: *op == CmpOp::Ne,
        }),
        Predicate::Cmp { attr, op, value } => steps.push(Step::Cmp {
            attr: number(attr),
            op: *op,
            value: value.clone(),
        }),
        Predicate::In { attr, values } => match strings(values) {
            Some(strings) => steps.push(Step::InStr {
                attr: number(attr),
                values: strings,
            }),
            None => steps.push(Step::In {
                attr: number(attr),
                values: values.clone(),
            }),
        },
        Predicate::Contains { attr, value } => steps.push(Step::Contains {
            attr: number(attr),
            value: value.clone(),
        }),
        Predicate::Exists { attr } => steps.push(Step::Exists { attr: number(attr) }),
        Predicate::And(items) => combinator(steps, items, |end| Step::And { end }, number),
        Predicate::Or(items) => combinator(steps, items, |end| Step::Or { end }, number),
        Predicate::Not(inner) => combinator(
            steps,
            std::slice::from_ref(inner),
            |end| Step::Not { end },
            number,
        ),
    }
}

/// The rules of one (tenant, event type), by slot.
#[derive(Debug, Default)]
pub(crate) struct TypeRules {
    match_rules: Vec<u32>,
    windowed_rules: Vec<u32>,
    /// The compiled rules; `None` after a change, until next needed.
    compiled: Option<Compiled>,
}

impl TypeRules {
    /// Files the rule in `slot`.
    pub(crate) fn add(&mut self, slot: u32, rule: &Rule) {
        match rule.kind {
            RuleKind::Windowed { .. } => self.windowed_rules.push(slot),
            RuleKind::Match => self.match_rules.push(slot),
        }
        self.compiled = None;
    }

    /// Unfiles the rule in `slot`.
    pub(crate) fn remove(&mut self, slot: u32) {
        self.match_rules.retain(|s| *s != slot);
        self.windowed_rules.retain(|s| *s != slot);
        self.compiled = None;
    }

    /// The compiled rules, if they were compiled since the last change.
    pub(crate) fn compiled_now(&self) -> Option<&Compiled> {
        self.compiled.as_ref()
    }

    /// The compiled rules, compiling them first if they changed; `rule` finds a rule by slot.
    pub(crate) fn compiled<'r>(&mut self, rule: impl Fn(u32) -> Option<&'r Rule>) -> &Compiled {
        self.compiled.get_or_insert_with(|| {
            let collect = |slots: &[u32]| -> Vec<(u32, &'r Rule)> {
                slots
                    .iter()
                    .filter_map(|s| rule(*s).map(|r| (*s, r)))
                    .collect()
            };
            Compiled::compile(&collect(&self.match_rules), &collect(&self.windowed_rules))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::CompiledRule;
    use serde_json::json;

    fn rule(id: &str, filter: serde_json::Value) -> Rule {
        let spec = serde_json::from_value(
            json!({"kind": "match", "event_type": "order", "filter": filter}),
        )
        .unwrap();
        CompiledRule::compile(&spec, "shop", id, 1, "UTC")
            .unwrap()
            .rule
    }

    fn attrs(value: serde_json::Value) -> Attrs {
        value
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.into(), AttrValue::from_json(v)))
            .collect()
    }

    #[test]
    fn compiled_filters_agree_with_predicates() {
        let filters = [
            json!({"attr": "amount", "op": ">", "value": 5}),
            json!({"attr": "channel", "op": "=", "value": "naver"}),
            json!({"and": [{"attr": "amount", "op": ">", "value": 5},
                           {"attr": "channel", "op": "in", "value": ["kakao", "naver", "kakao"]}]}),
            json!({"attr": "channel", "op": "in", "value": ["naver", 3]}),
            json!({"or": [{"attr": "channel", "op": "=", "value": "naver"},
                          {"not": {"attr": "coupon", "op": "exists"}}]}),
            json!({"and": [{"not": {"and": [{"attr": "a", "op": "<", "value": "m"}]}},
                           {"or": []}, {"attr": "tags", "op": "contains", "value": "vip"}]}),
            json!({"and": []}),
            json!({"attr": "tags", "op": "contains", "value": "vip"}),
            json!({"attr": "note", "op": "contains", "value": "wrap"}),
            json!({"attr": "channel", "op": "!=", "value": "naver"}),
            json!({"attr": "amount", "op": "!=", "value": 7}),
            json!({"attr": "amount", "op": "<=", "value": 7}),
            // Lower bounds, alone or in an `and`, strict and inclusive, on the same value.
            json!({"attr": "amount", "op": ">=", "value": 7}),
            json!({"attr": "amount", "op": ">", "value": 7}),
            json!({"and": [{"attr": "amount", "op": ">", "value": 2.5},
                           {"attr": "coupon", "op": "exists"}]}),
            json!({"and": [{"attr": "channel", "op": "!=", "value": "x"},
                           {"attr": "amount", "op": ">=", "value": -1}]}),
            json!({"attr": "amount", "op": ">", "value": 0.0}),
            json!({"attr": "amount", "op": ">=", "value": -0.0}),
            // Names that share their first eight bytes, or are a prefix of another.
            json!({"attr": "customer_name", "op": "=", "value": "kim"}),
            json!({"and": [{"attr": "customer_id", "op": "exists"},
                           {"attr": "customer", "op": "exists"}]}),
            json!({"attr": "customer_idx", "op": "exists"}),
            // Short names, one the other's prefix; a name of exactly eight bytes.
            json!({"and": [{"attr": "ab", "op": "exists"}, {"attr": "a", "op": "=", "value": "q"}]}),
            json!({"attr": "quantity", "op": ">=", "value": 2}),
        ];
        let rules: Vec<Rule> = filters
            .iter()
            .enumerate()
            .map(|(i, f)| rule(&format!("r{i}"), f.clone()))
            .collect();
        let mut index = TypeRules::default();
        for (slot, r) in rules.iter().enumerate() {
            index.add(slot as u32, r);
        }
        let events = [
            json!({"channel": "naver", "amount": 7}),
            json!({"channel": "kakao", "amount": 3, "coupon": "X"}),
            json!({"channel": 7, "a": "z", "tags": ["vip"], "note": "gift wrap"}),
            json!({"a": "b", "tags": ["x"], "amount": "7"}),
            json!({"amount": 8, "coupon": "Y", "channel": "kakao"}),
            json!({"amount": 0.0}),
            json!({"amount": -0.5}),
            json!({"amount": 2.5, "coupon": "Z"}),
            json!({"customer": "c1", "customer_id": 7, "customer_name": "kim"}),
            json!({"customer_id": 7, "customer_idx": 1, "customer_name": "lee"}),
            json!({"customer": "c1", "customer_idx": 1, "customer_names": "kim"}),
            json!({"a": "q", "ab": 1, "abc": 2, "quantity": 3, "quantity2": 1}),
            json!({"a": "q", "abc": 2, "quantit": 3, "quantityx": 3, "customer_nome": "kim"}),
            json!({}),
        ];
        let compiled = index.compiled(|s| rules.get(s as usize));
        for event in events {
            let attrs = attrs(event.clone());
            let mut got = compiled.with_values(&attrs, |values| {
                let mut out = Vec::new();
                compiled.matches(values, |s| out.push(s));
                out
            });
            got.sort();
            let want: Vec<u32> = rules
                .iter()
                .enumerate()
                .filter(|(_, r)| r.filter.as_ref().is_none_or(|f| f.eval(&attrs)))
                .map(|(i, _)| i as u32)
                .collect();
            assert_eq!(got, want, "{event}");
        }
        for slot in 0..rules.len() {
            index.remove(slot as u32);
        }
        let compiled = index.compiled(|s| rules.get(s as usize));
        assert!(
            compiled.scan.is_empty() && compiled.keyed.is_empty() && compiled.bounded.is_empty()
        );
    }
}
