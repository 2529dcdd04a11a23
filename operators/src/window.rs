//! Windowed aggregates, kept incrementally: per rule, window start and group key, what the
//! counted events contribute, so that an event costs O(1) per window and judging a window costs
//! O(1) in the common case. A worker's aggregates live in one arena of entries, found through a
//! small hash index per rule, so an update is one probe into a table that is in cache while the
//! rule's events are matched.
//!
//! Judging gives exactly what aggregating the window's values from scratch gives (the values in
//! ascending order, each distinct value times its multiplicity, as
//! [`judge`] spells out): sums of whole numbers up to 2^53 are exact in any order, so they are
//! kept as integers; anything else (fractions, -0.0, NaN, infinities) takes the ordered path.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

use smallvec::SmallVec;

use crate::rule::{AggFn, Evaluation};
use crate::state::Holding;
use crate::value::{AttrValue, Num};

/// Largest magnitude below which every whole `f64` is exact.
const EXACT_LIMIT: f64 = 9_007_199_254_740_992.0;

/// Which side of a window a value counts toward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// The window's own aggregate.
    Current,
    /// The baseline (the window one period earlier) of a `change` rule.
    Baseline,
}

/// The values one side of one window holds for one group. Only a count is kept inline; what
/// other aggregates need is boxed, so the window table's entries stay small.
#[derive(Debug, Default)]
struct Values {
    /// Values of any kind, with multiplicity.
    count: i64,
    /// Numeric values (sum, avg, min, max); `None` until the first one.
    numbers: Option<Box<Numbers>>,
    /// Distinct non-null values with multiplicity (count_distinct); `None` until the first one.
    distinct: Option<Box<crate::HashMap<AttrValue, i64>>>,
}

/// The numeric values of one side of one window.
#[derive(Debug, Default)]
struct Numbers {
    /// With multiplicity, in no order.
    nums: SmallVec<[f64; 4]>,
    /// Sum of `nums` while `odd == 0`.
    int_sum: i128,
    /// Sum of the magnitudes of `nums` while `odd == 0`; integer sums are exact while it stays
    /// within 2^53.
    abs_sum: u128,
    /// Values in `nums` that are not whole numbers within 2^53 (or are -0.0).
    odd: u32,
    /// NaN and zero values in `nums`: their min/max depend on order, so they take the slow path.
    special: u32,
    /// Least and greatest of `nums` (by total order) unless `extremes_stale`.
    min: f64,
    max: f64,
    extremes_stale: bool,
}

fn is_odd(x: f64) -> bool {
    !(x.fract() == 0.0 && x.abs() <= EXACT_LIMIT && !(x == 0.0 && x.is_sign_negative()))
}

fn is_special(x: f64) -> bool {
    x.is_nan() || x == 0.0
}

/// What `Iterator::sum` gives for no values (the aggregate of an empty side).
fn empty_sum() -> f64 {
    std::iter::empty::<f64>().sum()
}

/// Distinct values in ascending total order, with multiplicity.
fn sorted_distinct(nums: &[f64]) -> Vec<(f64, i64)> {
    let mut sorted = nums.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut out: Vec<(f64, i64)> = Vec::new();
    for x in sorted {
        match out.last_mut() {
            Some((last, d)) if last.to_bits() == x.to_bits() => *d += 1,
            _ => out.push((x, 1)),
        }
    }
    out
}

impl Numbers {
    fn add(&mut self, x: f64) {
        if is_odd(x) {
            self.odd += 1;
        } else {
            self.int_sum += x as i128;
            self.abs_sum += x.abs() as u128;
        }
        if is_special(x) {
            self.special += 1;
        }
        if self.nums.is_empty() {
            (self.min, self.max) = (x, x);
        } else if !self.extremes_stale {
            if x.total_cmp(&self.min).is_lt() {
                self.min = x;
            }
            if x.total_cmp(&self.max).is_gt() {
                self.max = x;
            }
        }
        self.nums.push(x);
    }

    fn remove(&mut self, x: f64) {
        let Some(at) = self.nums.iter().position(|n| n.to_bits() == x.to_bits()) else {
            return;
        };
        self.nums.swap_remove(at);
        if is_odd(x) {
            self.odd -= 1;
        } else {
            self.int_sum -= x as i128;
            self.abs_sum -= x.abs() as u128;
        }
        if is_special(x) {
            self.special -= 1;
        }
        if x.to_bits() == self.min.to_bits() || x.to_bits() == self.max.to_bits() {
            self.extremes_stale = true;
        }
    }

    /// Whole-number sums are exact, so any order gives the same result.
    fn sum_is_exact(&self) -> bool {
        self.odd == 0 && self.abs_sum <= EXACT_LIMIT as u128
    }

    fn extremes(&mut self) -> (f64, f64) {
        if self.extremes_stale {
            let mut it = self.nums.iter().copied();
            if let Some(first) = it.next() {
                let (mut min, mut max) = (first, first);
                for x in it {
                    if x.total_cmp(&min).is_lt() {
                        min = x;
                    }
                    if x.total_cmp(&max).is_gt() {
                        max = x;
                    }
                }
                (self.min, self.max) = (min, max);
            }
            self.extremes_stale = false;
        }
        (self.min, self.max)
    }

    /// The sum, folded from `from` in the order [`judge`](Aggregate::judge) promises.
    fn sum(&self, from: f64) -> f64 {
        if self.sum_is_exact() {
            self.int_sum as f64
        } else {
            sorted_distinct(&self.nums)
                .into_iter()
                .fold(from, |s, (x, d)| s + x * d as f64)
        }
    }

    /// Min or max (`min` says which) of at least one value.
    fn extreme(&mut self, min: bool) -> f64 {
        if self.special > 0 {
            let distinct = sorted_distinct(&self.nums).into_iter().map(|(x, _)| x);
            let folded = if min {
                distinct.reduce(f64::min)
            } else {
                distinct.reduce(f64::max)
            };
            return folded.unwrap_or(f64::NAN);
        }
        // Distinct, ordered, no NaN and no zero: folding min/max in ascending order keeps the
        // first (min) or takes the last (max).
        let (lo, hi) = self.extremes();
        if min { lo } else { hi }
    }
}

impl Values {
    fn add(&mut self, agg: AggFn, value: &AttrValue) {
        self.count += 1;
        match agg {
            AggFn::Count => {}
            AggFn::Sum | AggFn::Avg | AggFn::Min | AggFn::Max => {
                if let AttrValue::Num(Num(x)) = *value {
                    self.numbers.get_or_insert_default().add(x);
                }
            }
            AggFn::CountDistinct => {
                if *value != AttrValue::Null {
                    let distinct = self.distinct.get_or_insert_default();
                    // Clone the value only the first time it is seen in this window.
                    match distinct.get_mut(value) {
                        Some(n) => *n += 1,
                        None => {
                            distinct.insert(value.clone(), 1);
                        }
                    }
                }
            }
        }
    }

    fn remove(&mut self, agg: AggFn, value: &AttrValue) {
        self.count -= 1;
        match agg {
            AggFn::Count => {}
            AggFn::Sum | AggFn::Avg | AggFn::Min | AggFn::Max => {
                if let (AttrValue::Num(Num(x)), Some(numbers)) = (value, self.numbers.as_mut()) {
                    numbers.remove(*x);
                }
            }
            AggFn::CountDistinct => {
                if let Some(distinct) = self.distinct.as_mut()
                    && let Some(n) = distinct.get_mut(value)
                {
                    *n -= 1;
                    if *n == 0 {
                        distinct.remove(value);
                    }
                }
            }
        }
    }

    /// The aggregate of this side, `None` when undefined (avg/min/max of nothing).
    fn aggregate(&mut self, agg: AggFn) -> Option<f64> {
        let numbers = self.numbers.as_deref_mut().filter(|n| !n.nums.is_empty());
        match agg {
            // Σ multiplicities, from an empty sum: exact for any realistic count.
            AggFn::Count => Some(if self.count == 0 {
                empty_sum()
            } else {
                self.count as f64
            }),
            // `Iterator::sum` starts from `empty_sum()`; the average's sum from 0.0.
            AggFn::Sum => Some(numbers.map_or_else(empty_sum, |n| n.sum(empty_sum()))),
            AggFn::Avg => numbers.map(|n| n.sum(0.0) / n.nums.len() as f64),
            AggFn::Min | AggFn::Max => numbers.map(|n| n.extreme(agg == AggFn::Min)),
            AggFn::CountDistinct => Some(self.distinct.as_ref().map_or(0, |d| d.len()) as f64),
        }
    }
}

/// Both sides of one window for one group.
#[derive(Debug, Default)]
pub(crate) struct Aggregate {
    current: Values,
    /// Only `change` rules have one: boxed, so the common entry stays small and cache-friendly.
    baseline: Option<Box<Values>>,
}

impl Aggregate {
    /// Whether the window's condition holds, and with what values: what aggregating the window's
    /// values from scratch gives.
    pub(crate) fn judge(&mut self, eval: &Evaluation) -> Option<Holding> {
        let current = self.current.aggregate(eval.agg)?;
        if eval.relative {
            let baseline = self.baseline.as_deref_mut()?;
            let base = baseline.aggregate(eval.agg)?;
            if base == 0.0 || baseline.count == 0 {
                return None; // no baseline: a change is undefined
            }
            let percent = (current - base) / base.abs() * 100.0;
            eval.op.test_f64(percent, eval.value.0).then_some(Holding {
                value: Num(current),
                baseline: Some(Num(base)),
            })
        } else {
            (self.current.count > 0 && eval.op.test_f64(current, eval.value.0)).then_some(Holding {
                value: Num(current),
                baseline: None,
            })
        }
    }
}

/// A `Hasher` for keys that already are hashes.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Marks the end of a hash chain and a free entry.
const NONE: u32 = u32::MAX;

#[derive(Debug)]
struct Entry {
    /// Hash of (rule, start, group).
    key: u64,
    /// Next entry with the same `key` (a hash collision), or `NONE`.
    next: u32,
    /// The rule's slot; `NONE` for a free entry.
    slot: u32,
    start: i64,
    /// Inline for the usual one-attribute group key, so comparing it reads no other memory.
    group: SmallVec<[AttrValue; 1]>,
    aggregate: Aggregate,
    /// Changed since its holding was last brought up to date.
    dirty: bool,
}

/// The windows of one rule.
#[derive(Debug, Default)]
struct RuleWindows {
    /// Entry by key (the first of its hash chain). One small table per rule rather than one
    /// for the worker: the events of a (tenant, type) are matched together, so its rules'
    /// tables stay in cache while they are, where probes into one large table missed it.
    index: HashMap<u64, u32, BuildHasherDefault<PreHashed>>,
    /// Window start → its entries.
    starts: BTreeMap<i64, Vec<u32>>,
}

/// Every window aggregate of one worker: (rule slot, window start, group key) → aggregate.
#[derive(Debug, Default)]
pub(crate) struct WindowTable {
    hasher: foldhash::fast::RandomState,
    entries: Vec<Entry>,
    free: Vec<u32>,
    /// By rule slot.
    by_rule: Vec<RuleWindows>,
    /// Entries changed since the last [`WindowTable::take_dirty`].
    dirty: Vec<u32>,
}

fn mix(mut x: u64) -> u64 {
    // splitmix64's finalizer
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn same_group(key: &[AttrValue], group: &[&AttrValue]) -> bool {
    key.len() == group.len() && key.iter().zip(group).all(|(a, b)| a == *b)
}

impl WindowTable {
    /// The hash of a group key, to pass to [`WindowTable::update`] for each of its windows.
    pub(crate) fn group_hash(&self, group: &[&AttrValue]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        for value in group {
            value.hash(&mut hasher);
        }
        hasher.finish()
    }

    fn key(slot: u32, start: i64, group_hash: u64) -> u64 {
        mix(group_hash ^ mix(u64::from(slot) ^ (start as u64).rotate_left(32)))
    }

    fn find(&self, key: u64, slot: u32, start: i64, group: &[&AttrValue]) -> Option<u32> {
        let mut at = *self.by_rule.get(slot as usize)?.index.get(&key)?;
        while at != NONE {
            let e = &self.entries[at as usize];
            if e.slot == slot && e.start == start && same_group(&e.group, group) {
                return Some(at);
            }
            at = e.next;
        }
        None
    }

    /// Adds (`add`) or takes back one value of one group in the window of rule `slot` starting
    /// at `start`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn update(
        &mut self,
        slot: u32,
        start: i64,
        group_hash: u64,
        group: &[&AttrValue],
        side: Side,
        agg: AggFn,
        value: &AttrValue,
        add: bool,
    ) {
        let key = Self::key(slot, start, group_hash);
        let at = match self.find(key, slot, start, group) {
            Some(at) => at,
            // Taking back a value from a window already judged and dropped: nothing to do.
            None if !add => return,
            None => self.insert(key, slot, start, group),
        };
        let entry = &mut self.entries[at as usize];
        let values = match side {
            Side::Current => &mut entry.aggregate.current,
            Side::Baseline => entry.aggregate.baseline.get_or_insert_default(),
        };
        if add {
            values.add(agg, value);
        } else {
            values.remove(agg, value);
        }
        if !entry.dirty {
            entry.dirty = true;
            self.dirty.push(at);
        }
    }

    fn insert(&mut self, key: u64, slot: u32, start: i64, group: &[&AttrValue]) -> u32 {
        if self.by_rule.len() <= slot as usize {
            self.by_rule
                .resize_with(slot as usize + 1, RuleWindows::default);
        }
        let next = self.by_rule[slot as usize]
            .index
            .get(&key)
            .copied()
            .unwrap_or(NONE);
        let entry = Entry {
            key,
            next,
            slot,
            start,
            group: group.iter().map(|v| (*v).clone()).collect(),
            aggregate: Aggregate::default(),
            dirty: false,
        };
        let at = match self.free.pop() {
            Some(at) => {
                self.entries[at as usize] = entry;
                at
            }
            None => {
                self.entries.push(entry);
                (self.entries.len() - 1) as u32
            }
        };
        let rule = &mut self.by_rule[slot as usize];
        rule.index.insert(key, at);
        rule.starts.entry(start).or_default().push(at);
        at
    }

    /// Unlinks entry `at` from its rule's index and frees it.
    fn release(&mut self, at: u32) {
        let (key, next, slot) = {
            let e = &self.entries[at as usize];
            (e.key, e.next, e.slot)
        };
        let Some(rule) = self.by_rule.get_mut(slot as usize) else {
            return;
        };
        let index = &mut rule.index;
        if index.get(&key) == Some(&at) {
            if next == NONE {
                index.remove(&key);
            } else {
                index.insert(key, next);
            }
        } else if let Some(mut prev) = index.get(&key).copied() {
            while prev != NONE {
                let p = &mut self.entries[prev as usize];
                if p.next == at {
                    p.next = next;
                    break;
                }
                prev = p.next;
            }
        }
        self.free_entry(at);
    }

    /// Frees entry `at`, already out of its rule's index.
    fn free_entry(&mut self, at: u32) {
        let e = &mut self.entries[at as usize];
        e.slot = NONE;
        e.next = NONE;
        e.group = SmallVec::new();
        e.aggregate = Aggregate::default();
        e.dirty = false;
        self.free.push(at);
    }

    /// Drops every window of rule `slot`.
    pub(crate) fn clear_rule(&mut self, slot: u32) {
        let Some(rule) = self.by_rule.get_mut(slot as usize) else {
            return;
        };
        // The rule's whole index goes with them: no entry needs unlinking.
        let windows = std::mem::take(rule);
        for at in windows.starts.into_values().flatten() {
            self.free_entry(at);
        }
    }

    /// Drops the windows of rule `slot` that start before `start`.
    pub(crate) fn drop_before(&mut self, slot: u32, start: i64) {
        let Some(rule) = self.by_rule.get_mut(slot as usize) else {
            return;
        };
        let windows = &mut rule.starts;
        if windows.first_key_value().is_none_or(|(s, _)| *s >= start) {
            return;
        }
        let kept = windows.split_off(&start);
        let dropped = std::mem::replace(windows, kept);
        for at in dropped.into_values().flatten() {
            self.release(at);
        }
    }

    /// The entries changed since the last call.
    pub(crate) fn take_dirty(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.dirty)
    }

    /// Gives back the (emptied) list from [`WindowTable::take_dirty`], to reuse its memory.
    pub(crate) fn return_dirty(&mut self, mut list: Vec<u32>) {
        list.clear();
        if self.dirty.is_empty() {
            self.dirty = list;
        }
    }

    /// A changed entry: its rule slot, window start, group key and aggregate; marks it clean.
    /// `None` if it was dropped since.
    pub(crate) fn changed(&mut self, at: u32) -> Option<(u32, i64, &[AttrValue], &mut Aggregate)> {
        let e = self.entries.get_mut(at as usize)?;
        if e.slot == NONE || !e.dirty {
            return None;
        }
        e.dirty = false;
        Some((e.slot, e.start, &e.group, &mut e.aggregate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// The aggregate of `values` from scratch, as the module promises: numeric values in
    /// ascending total order, each distinct value times its multiplicity.
    fn from_scratch(agg: AggFn, values: &[AttrValue]) -> Option<f64> {
        let mut nums: Vec<f64> = values.iter().filter_map(AttrValue::as_f64).collect();
        nums.sort_by(f64::total_cmp);
        let mut distinct: Vec<(f64, f64)> = Vec::new();
        for x in &nums {
            match distinct.last_mut() {
                Some((last, d)) if last.to_bits() == x.to_bits() => *d += 1.0,
                _ => distinct.push((*x, 1.0)),
            }
        }
        match agg {
            AggFn::Count => Some(if values.is_empty() {
                empty_sum()
            } else {
                values.len() as f64
            }),
            AggFn::Sum => Some(distinct.iter().map(|(x, d)| x * d).sum()),
            AggFn::Avg => (!nums.is_empty())
                .then(|| distinct.iter().fold(0.0, |s, (x, d)| s + x * d) / nums.len() as f64),
            AggFn::Min => distinct.iter().map(|(x, _)| *x).reduce(f64::min),
            AggFn::Max => distinct.iter().map(|(x, _)| *x).reduce(f64::max),
            AggFn::CountDistinct => {
                let mut seen: Vec<&AttrValue> = Vec::new();
                for v in values {
                    if *v != AttrValue::Null && !seen.contains(&v) {
                        seen.push(v);
                    }
                }
                Some(seen.len() as f64)
            }
        }
    }

    fn same(a: Option<f64>, b: Option<f64>) -> bool {
        match (a, b) {
            (Some(x), Some(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
            (None, None) => true,
            _ => false,
        }
    }

    #[test]
    fn incremental_aggregates_equal_aggregating_from_scratch() {
        let pool = [
            AttrValue::Num(Num(3.0)),
            AttrValue::Num(Num(250_000.0)),
            AttrValue::Num(Num(-7.0)),
            AttrValue::Num(Num(0.1)),
            AttrValue::Num(Num(0.2)),
            AttrValue::Num(Num(1e16)),
            AttrValue::Num(Num(-0.0)),
            AttrValue::Num(Num(0.0)),
            AttrValue::Num(Num(f64::NAN)),
            AttrValue::Num(Num(f64::INFINITY)),
            AttrValue::Str("naver".into()),
            AttrValue::Null,
        ];
        let mut rng = StdRng::seed_from_u64(7);
        for agg in [
            AggFn::Count,
            AggFn::Sum,
            AggFn::Avg,
            AggFn::Min,
            AggFn::Max,
            AggFn::CountDistinct,
        ] {
            for round in 0..200 {
                // Some rounds use only whole numbers (the exact integer path), the rest anything.
                let choices = if round % 2 == 0 { 3 } else { pool.len() };
                let mut values = Values::default();
                let mut held: Vec<AttrValue> = Vec::new();
                for _ in 0..40 {
                    if !held.is_empty() && rng.random_bool(0.3) {
                        let value = held.swap_remove(rng.random_range(0..held.len()));
                        values.remove(agg, &value);
                    } else {
                        let value = pool[rng.random_range(0..choices)].clone();
                        values.add(agg, &value);
                        held.push(value);
                    }
                    let (got, want) = (values.aggregate(agg), from_scratch(agg, &held));
                    assert!(
                        same(got, want),
                        "{agg:?} of {held:?}: {got:?}, want {want:?}"
                    );
                }
            }
        }
    }
}
