//! Windowed aggregates, kept incrementally: per rule, pane and group key, what the counted events
//! contribute, so that an event costs O(1) and judging a group costs O(1) per pane in the common
//! case. A pane is one slide of the rule's window grid (a tumbling window is one pane, a window
//! sliding every fifth of its size is five), so an event counts once however many sliding
//! windows it falls in. Each pane of a rule is an arena of group entries, found by scanning their
//! hashes or, past a few groups, through a hash index; a window is judged once, when it closes,
//! from its panes, and its first pane then goes as a whole.
//!
//! Judging gives exactly what aggregating the window's values from scratch gives, whatever the
//! order they arrived or were taken back in: a sum is the exact sum of the values, rounded once
//! (so 0.1 + 0.2 + 1e16 − 1e16 is 0.30000000000000004, the rounded 0.1 + 0.2, and not 0.0; an
//! exact sum beyond the largest float is an infinity); min and max fold the distinct values in
//! ascending order. Whole numbers up to 2^53 — amounts, quantities, counts — are summed in an
//! inline 128-bit integer, so a sum or an average needs no memory beyond its entry; only other
//! values (fractions, −0.0, infinities, NaN) are kept, to be summed exactly when the window is
//! judged.

use std::hash::{BuildHasher, Hash, Hasher};

use fsum::FSum;
use smallvec::SmallVec;

use crate::rule::{AggFn, Evaluation, WindowSpec};
use crate::state::Holding;
use crate::time::pane_of;
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

/// The values one side of one window holds for one group. Counts, the sum of whole numbers and
/// a single distinct value are inline; what only some aggregates need beyond that is boxed, so
/// the window table's entries stay small and most need no memory of their own.
#[derive(Debug, Default)]
struct Values {
    /// Values of any kind, with multiplicity.
    count: i64,
    /// Sum and avg: the numeric values; count_distinct: how often the one value in
    /// [`Held::One`] was counted.
    counted: i64,
    held: Held,
}

/// What an aggregate holds beyond counts.
#[derive(Debug, Default)]
enum Held {
    /// Nothing yet.
    #[default]
    Nothing,
    /// Sum and avg: the sum of the values that are whole numbers within 2^53 (as two halves of
    /// an `i128`, so an entry needs no 16-byte alignment), and the other values, in no order.
    Sum { whole: [u64; 2], odd: OddValues },
    /// count_distinct while every non-null value counted is this one.
    One(AttrValue),
    /// count_distinct once there are two distinct values or more.
    Distinct(Box<Distinct>),
    /// Min and max: every numeric value.
    Extremes(Box<Extremes>),
}

/// The values of a sum that are not whole numbers within 2^53, in no order; `None` until the
/// first.
type OddValues = Option<Box<SmallVec<[f64; 2]>>>;

/// Past this many distinct values, a window's count_distinct set becomes a hash map.
const FEW_DISTINCT: usize = 8;

/// The distinct values of one side of one window, with multiplicity: a short list while there
/// are few (a group of one SKU sees a customer or two per window), a hash map beyond.
#[derive(Debug)]
enum Distinct {
    Few(SmallVec<[(AttrValue, i64); 2]>),
    Many(crate::HashMap<AttrValue, i64>),
}

impl Default for Distinct {
    fn default() -> Distinct {
        Distinct::Few(SmallVec::new())
    }
}

impl Distinct {
    /// Counts `value` `times` more times.
    fn add(&mut self, value: &AttrValue, times: i64) {
        match self {
            Distinct::Few(few) => {
                if let Some((_, n)) = few.iter_mut().find(|(v, _)| v == value) {
                    *n += times;
                } else if few.len() < FEW_DISTINCT {
                    few.push((value.clone(), times));
                } else {
                    let mut many: crate::HashMap<AttrValue, i64> = few.drain(..).collect();
                    many.insert(value.clone(), times);
                    *self = Distinct::Many(many);
                }
            }
            // Clone the value only the first time it is seen in this window.
            Distinct::Many(many) => match many.get_mut(value) {
                Some(n) => *n += times,
                None => {
                    many.insert(value.clone(), times);
                }
            },
        }
    }

    /// Every distinct value with its multiplicity.
    fn for_each(&self, mut f: impl FnMut(&AttrValue, i64)) {
        match self {
            Distinct::Few(few) => few.iter().for_each(|(v, n)| f(v, *n)),
            Distinct::Many(many) => many.iter().for_each(|(v, n)| f(v, *n)),
        }
    }

    fn remove(&mut self, value: &AttrValue) {
        match self {
            Distinct::Few(few) => {
                if let Some(at) = few.iter().position(|(v, _)| v == value) {
                    few[at].1 -= 1;
                    if few[at].1 == 0 {
                        few.swap_remove(at);
                    }
                }
            }
            Distinct::Many(many) => {
                if let Some(n) = many.get_mut(value) {
                    *n -= 1;
                    if *n == 0 {
                        many.remove(value);
                    }
                }
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Distinct::Few(few) => few.len(),
            Distinct::Many(many) => many.len(),
        }
    }
}

/// The numeric values of one side of one window, for min and max.
#[derive(Debug, Default)]
struct Extremes {
    /// With multiplicity, in no order.
    nums: SmallVec<[f64; 4]>,
    /// NaN and zero values in `nums`: their min/max depend on order, so they take the slow path.
    special: u32,
    /// Least and greatest of `nums` (by total order) unless `stale`.
    min: f64,
    max: f64,
    stale: bool,
}

/// Whether `x` is summed as an integer: a whole number within 2^53, and not −0.0.
fn is_whole(x: f64) -> bool {
    x.fract() == 0.0 && x.abs() <= EXACT_LIMIT && !(x == 0.0 && x.is_sign_negative())
}

fn is_special(x: f64) -> bool {
    x.is_nan() || x == 0.0
}

/// What `Iterator::sum` gives for no values (the aggregate of an empty side).
fn empty_sum() -> f64 {
    std::iter::empty::<f64>().sum()
}

/// The exact sum of `wholes` whole numbers summing to `whole` and the `odd` values, rounded once.
/// Like a sum from `empty_sum()`, it is −0.0 only when every value is −0.0 (or there are none);
/// NaN, or infinities of both signs, give NaN.
fn exact_sum(wholes: i64, whole: i128, odd: &[f64]) -> f64 {
    let (mut nan, mut pos_inf, mut neg_inf) = (false, false, false);
    let mut all_neg_zero = wholes == 0;
    for &x in odd {
        nan |= x.is_nan();
        pos_inf |= x == f64::INFINITY;
        neg_inf |= x == f64::NEG_INFINITY;
        all_neg_zero &= x == 0.0 && x.is_sign_negative();
    }
    if nan || (pos_inf && neg_inf) {
        return f64::NAN;
    }
    if pos_inf || neg_inf {
        return if pos_inf {
            f64::INFINITY
        } else {
            f64::NEG_INFINITY
        };
    }
    if odd.is_empty() && wholes == 0 {
        return empty_sum();
    }
    if odd.is_empty() {
        // i128 → f64 rounds to nearest, ties to even: the exact sum, rounded once.
        return whole as f64;
    }
    // Both halves are exact: `high` holds the top bits, `whole - high` fits in 2^53.
    let high = whole as f64;
    let low = (whole - high as i128) as f64;
    let fsum = |scale: f64| {
        let mut acc = FSum::new();
        acc += high * scale;
        acc += low * scale;
        for &x in odd {
            acc += x * scale;
        }
        acc.value()
    };
    let mut sum = fsum(1.0);
    if !sum.is_finite() {
        // A partial sum passed the largest float. Scaled down by 2^600 (exact for every value
        // above 2^-422) none can, and scaling the rounded result back up is exact, or overflows
        // to an infinity exactly when the exact sum rounds to one.
        let scale = 2f64.powi(600);
        sum = fsum(1.0 / scale) * scale;
    }
    match (sum == 0.0, all_neg_zero) {
        (true, true) => -0.0,
        (true, false) => 0.0,
        (false, _) => sum,
    }
}

/// Distinct values in ascending total order.
fn sorted_distinct(nums: &[f64]) -> Vec<f64> {
    let mut sorted = nums.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.dedup_by(|a, b| a.to_bits() == b.to_bits());
    sorted
}

impl Extremes {
    fn add(&mut self, x: f64) {
        if is_special(x) {
            self.special += 1;
        }
        if self.nums.is_empty() {
            (self.min, self.max) = (x, x);
        } else if !self.stale {
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
        if is_special(x) {
            self.special -= 1;
        }
        if x.to_bits() == self.min.to_bits() || x.to_bits() == self.max.to_bits() {
            self.stale = true;
        }
    }

    /// Min or max (`min` says which), `None` without values.
    fn extreme(&mut self, min: bool) -> Option<f64> {
        if self.nums.is_empty() {
            return None;
        }
        if self.special > 0 {
            let distinct = sorted_distinct(&self.nums).into_iter();
            let folded = if min {
                distinct.reduce(f64::min)
            } else {
                distinct.reduce(f64::max)
            };
            return folded;
        }
        if self.stale {
            let (mut lo, mut hi) = (self.nums[0], self.nums[0]);
            for &x in &self.nums[1..] {
                if x.total_cmp(&lo).is_lt() {
                    lo = x;
                }
                if x.total_cmp(&hi).is_gt() {
                    hi = x;
                }
            }
            (self.min, self.max, self.stale) = (lo, hi, false);
        }
        // Distinct, ordered, no NaN and no zero: folding min/max in ascending order keeps the
        // first (min) or takes the last (max).
        Some(if min { self.min } else { self.max })
    }
}

fn whole_sum(whole: &[u64; 2]) -> i128 {
    (i128::from(whole[0] as i64) << 64) | i128::from(whole[1])
}

fn set_whole_sum(whole: &mut [u64; 2], sum: i128) {
    *whole = [(sum >> 64) as u64, sum as u64];
}

impl Values {
    fn add(&mut self, agg: AggFn, value: &AttrValue) {
        self.count += 1;
        match (agg, value) {
            (AggFn::Sum | AggFn::Avg, AttrValue::Num(Num(x))) => {
                self.counted += 1;
                if let Some((whole, odd)) = self.sum_mut() {
                    if is_whole(*x) {
                        set_whole_sum(whole, whole_sum(whole) + *x as i128);
                    } else {
                        odd.get_or_insert_default().push(*x);
                    }
                }
            }
            (AggFn::Min | AggFn::Max, AttrValue::Num(Num(x))) => {
                if let Some(extremes) = self.extremes_mut() {
                    extremes.add(*x);
                }
            }
            (AggFn::CountDistinct, value) if *value != AttrValue::Null => {
                self.count_distinct(value, 1);
            }
            _ => {}
        }
    }

    /// Sum and avg: the whole-number sum and the other values held, started if nothing is held
    /// yet.
    fn sum_mut(&mut self) -> Option<(&mut [u64; 2], &mut OddValues)> {
        if let Held::Nothing = self.held {
            self.held = Held::Sum {
                whole: [0, 0],
                odd: None,
            };
        }
        match &mut self.held {
            Held::Sum { whole, odd } => Some((whole, odd)),
            _ => None,
        }
    }

    /// Min and max: the values held, started if nothing is held yet.
    fn extremes_mut(&mut self) -> Option<&mut Extremes> {
        if let Held::Nothing = self.held {
            self.held = Held::Extremes(Box::default());
        }
        match &mut self.held {
            Held::Extremes(extremes) => Some(extremes),
            _ => None,
        }
    }

    /// count_distinct: counts the non-null `value` `times` more times.
    fn count_distinct(&mut self, value: &AttrValue, times: i64) {
        match &mut self.held {
            Held::Nothing => {
                self.held = Held::One(value.clone());
                self.counted = times;
            }
            Held::One(one) if one == value => self.counted += times,
            Held::One(one) => {
                let mut distinct = Distinct::default();
                distinct.add(one, self.counted);
                distinct.add(value, times);
                self.held = Held::Distinct(Box::new(distinct));
            }
            Held::Distinct(distinct) => distinct.add(value, times),
            _ => {}
        }
    }

    /// Counts everything `other` (of the same aggregate) counts as well: the values of two panes
    /// of one window, together.
    fn absorb(&mut self, other: &Values) {
        self.count += other.count;
        match &other.held {
            Held::Nothing => {}
            Held::Sum { whole, odd } => {
                self.counted += other.counted;
                if let Some((mine, my_odd)) = self.sum_mut() {
                    set_whole_sum(mine, whole_sum(mine) + whole_sum(whole));
                    if let Some(odd) = odd {
                        my_odd.get_or_insert_default().extend_from_slice(odd);
                    }
                }
            }
            Held::One(value) => self.count_distinct(value, other.counted),
            Held::Distinct(distinct) => {
                distinct.for_each(|value, times| self.count_distinct(value, times));
            }
            Held::Extremes(extremes) => {
                if let Some(mine) = self.extremes_mut() {
                    extremes.nums.iter().for_each(|x| mine.add(*x));
                }
            }
        }
    }

    fn remove(&mut self, agg: AggFn, value: &AttrValue) {
        self.count -= 1;
        match (agg, value, &mut self.held) {
            (AggFn::Sum | AggFn::Avg, AttrValue::Num(Num(x)), Held::Sum { whole, odd }) => {
                self.counted -= 1;
                if is_whole(*x) {
                    set_whole_sum(whole, whole_sum(whole) - *x as i128);
                } else if let Some(odd) = odd
                    && let Some(at) = odd.iter().position(|n| n.to_bits() == x.to_bits())
                {
                    odd.swap_remove(at);
                }
            }
            (AggFn::Min | AggFn::Max, AttrValue::Num(Num(x)), Held::Extremes(extremes)) => {
                extremes.remove(*x);
            }
            (AggFn::CountDistinct, value, Held::One(one)) if one == value => {
                self.counted -= 1;
                if self.counted == 0 {
                    self.held = Held::Nothing;
                }
            }
            (AggFn::CountDistinct, value, Held::Distinct(distinct)) => distinct.remove(value),
            _ => {}
        }
    }

    /// The aggregate of this side, `None` when undefined (avg/min/max of nothing).
    fn aggregate(&mut self, agg: AggFn) -> Option<f64> {
        let (whole, odd): (i128, &[f64]) = match &self.held {
            Held::Sum { whole, odd } => (whole_sum(whole), odd.as_deref().map_or(&[], |o| o)),
            _ => (0, &[]),
        };
        let sum = || exact_sum(self.counted - odd.len() as i64, whole, odd);
        match agg {
            // Σ multiplicities, from an empty sum: exact for any realistic count.
            AggFn::Count => Some(if self.count == 0 {
                empty_sum()
            } else {
                self.count as f64
            }),
            AggFn::Sum => Some(sum()),
            // Adding 0.0 turns a −0.0 sum into 0.0, as a sum from 0.0 would have it.
            AggFn::Avg => (self.counted > 0).then(|| (sum() + 0.0) / self.counted as f64),
            AggFn::Min | AggFn::Max => match &mut self.held {
                Held::Extremes(extremes) => extremes.extreme(agg == AggFn::Min),
                _ => None,
            },
            AggFn::CountDistinct => Some(match &self.held {
                Held::One(_) => 1.0,
                Held::Distinct(distinct) => distinct.len() as f64,
                _ => 0.0,
            }),
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
    /// Counts everything `other` counts as well, on both sides.
    fn absorb(&mut self, other: &Aggregate) {
        self.current.absorb(&other.current);
        if let Some(baseline) = &other.baseline {
            self.baseline.get_or_insert_default().absorb(baseline);
        }
    }

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

/// Windows kept for re-use, so opening one rarely allocates.
const SPARE_WINDOWS: usize = 256;

/// Up to this many groups a window finds a group by scanning their hashes; beyond, through a
/// hash index.
const SCAN_LIMIT: usize = 16;

/// A group key as a window keeps it: inline for the usual one-attribute key, so comparing it
/// reads no other memory.
pub(crate) type GroupKey = SmallVec<[AttrValue; 1]>;

/// One group's aggregate in one window.
#[derive(Debug)]
struct Entry {
    group: GroupKey,
    aggregate: Aggregate,
}

/// The groups of one window of one rule. A window goes as a whole when it is judged, so no
/// entry is ever unlinked. Most windows hold a few groups, found by scanning their hashes; a
/// window with many (a rule grouped by SKU or customer) also gets a hash index.
#[derive(Debug, Default)]
struct Window {
    /// Hash of each entry's group key, by entry.
    hashes: Vec<u64>,
    entries: Vec<Entry>,
    /// Entry numbers by group hash, once there are more than [`SCAN_LIMIT`].
    index: hashbrown::HashTable<u32>,
}

impl Window {
    fn find(&self, hash: u64, group: &[&AttrValue]) -> Option<usize> {
        if self.entries.len() <= SCAN_LIMIT {
            self.hashes
                .iter()
                .zip(&self.entries)
                .position(|(h, e)| *h == hash && same_group(&e.group, group))
        } else {
            let hashes = &self.hashes;
            let entries = &self.entries;
            self.index
                .find(hash, |&at| {
                    hashes[at as usize] == hash && same_group(&entries[at as usize].group, group)
                })
                .map(|&at| at as usize)
        }
    }

    fn insert(&mut self, hash: u64, group: &[&AttrValue]) -> usize {
        let at = self.entries.len();
        self.hashes.push(hash);
        self.entries.push(Entry {
            group: group.iter().map(|v| (*v).clone()).collect(),
            aggregate: Aggregate::default(),
        });
        let hashes = &self.hashes;
        if at == SCAN_LIMIT {
            // Outgrew scanning: index every entry.
            for (n, h) in hashes.iter().enumerate() {
                self.index
                    .insert_unique(*h, n as u32, |&i| hashes[i as usize]);
            }
        } else if at > SCAN_LIMIT {
            self.index
                .insert_unique(hash, at as u32, |&i| hashes[i as usize]);
        }
        at
    }

    /// Asks the CPU to start loading the first group hashes and up to `entry_bytes` of entries.
    fn prefetch(&self, entry_bytes: usize) {
        crate::prefetch_slice(&self.hashes, 128);
        crate::prefetch_slice(&self.entries, entry_bytes);
    }

    /// Counts every group of `other` (another pane of the same rule) in this one as well.
    fn absorb(&mut self, other: &Window) {
        for (hash, entry) in other.hashes.iter().zip(&other.entries) {
            let group: SmallVec<[&AttrValue; 2]> = entry.group.iter().collect();
            let at = match self.find(*hash, &group) {
                Some(at) => at,
                None => self.insert(*hash, &group),
            };
            self.entries[at].aggregate.absorb(&entry.aggregate);
        }
    }

    fn clear(&mut self) {
        self.hashes.clear();
        self.entries.clear();
        self.index.clear();
    }
}

/// Every window aggregate of one worker, kept by pane: rule slot → pane start → group key →
/// aggregate. A tumbling window is one pane; a sliding window is the panes of its slides.
#[derive(Debug, Default)]
pub(crate) struct WindowTable {
    hasher: foldhash::fast::RandomState,
    /// By rule slot: the rule's open panes, ordered by start. A rule has a few open at a time,
    /// so they sit side by side in one vector. The events of a (tenant, type) are matched
    /// together, so its rules' panes stay in cache while they are.
    by_rule: Vec<Vec<(i64, Window)>>,
    /// Emptied windows, for re-use.
    spare: Vec<Window>,
}

/// Empties `window` and keeps it in `spare` for re-use.
fn recycle(spare: &mut Vec<Window>, mut window: Window) {
    if spare.len() < SPARE_WINDOWS {
        window.clear();
        spare.push(window);
    }
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
        if self.by_rule.len() <= slot as usize {
            if !add {
                return;
            }
            self.by_rule.resize_with(slot as usize + 1, Vec::new);
        }
        let starts = &mut self.by_rule[slot as usize];
        let at = match starts.binary_search_by_key(&start, |(s, _)| *s) {
            Ok(at) => at,
            // Taking back a value from a window already judged and dropped: nothing to do.
            Err(_) if !add => return,
            Err(at) => {
                starts.insert(at, (start, self.spare.pop().unwrap_or_default()));
                at
            }
        };
        let window = &mut starts[at].1;
        let at = match window.find(group_hash, group) {
            Some(at) => at,
            None if !add => return,
            None => window.insert(group_hash, group),
        };
        let aggregate = &mut window.entries[at].aggregate;
        let values = match side {
            Side::Current => &mut aggregate.current,
            Side::Baseline => aggregate.baseline.get_or_insert_default(),
        };
        if add {
            values.add(agg, value);
        } else {
            values.remove(agg, value);
        }
    }

    /// Asks the CPU to start loading where rule `slot`'s panes are listed; a hint, the first of
    /// three steps that each need the one before to have arrived.
    pub(crate) fn prefetch_rule(&self, slot: u32) {
        if (slot as usize) < self.by_rule.len() {
            crate::prefetch(self.by_rule.as_ptr().wrapping_add(slot as usize));
        }
    }

    /// Asks the CPU to start loading rule `slot`'s list of panes.
    pub(crate) fn prefetch_panes(&self, slot: u32) {
        if let Some(panes) = self.by_rule.get(slot as usize) {
            crate::prefetch_slice(panes, 512);
        }
    }

    /// Asks the CPU to start loading the groups of rule `slot`'s two latest panes, where new
    /// events mostly count.
    pub(crate) fn prefetch_latest(&self, slot: u32) {
        if let Some(panes) = self.by_rule.get(slot as usize) {
            panes
                .iter()
                .rev()
                .take(2)
                .for_each(|(_, w)| w.prefetch(512));
        }
    }

    /// Asks the CPU to start loading the groups of rule `slot`'s two oldest panes, which the
    /// next window to close starts with (and judging reads whole).
    pub(crate) fn prefetch_oldest(&self, slot: u32) {
        if let Some(panes) = self.by_rule.get(slot as usize) {
            panes.iter().take(2).for_each(|(_, w)| w.prefetch(1024));
        }
    }

    /// Drops every window of rule `slot`.
    pub(crate) fn clear_rule(&mut self, slot: u32) {
        let Some(starts) = self.by_rule.get_mut(slot as usize) else {
            return;
        };
        for (_, window) in std::mem::take(starts) {
            recycle(&mut self.spare, window);
        }
    }

    /// Drops the windows of rule `slot` that start before `start`.
    pub(crate) fn drop_before(&mut self, slot: u32, start: i64) {
        let Some(starts) = self.by_rule.get_mut(slot as usize) else {
            return;
        };
        let before = starts.partition_point(|(s, _)| *s < start);
        for (_, window) in starts.drain(..before) {
            recycle(&mut self.spare, window);
        }
    }

    /// The first pane of rule `slot` that starts at or after `from` and counts anything.
    pub(crate) fn first_start_from(&self, slot: u32, from: i64) -> Option<i64> {
        let starts = self.by_rule.get(slot as usize)?;
        let at = starts.partition_point(|(s, _)| *s < from);
        starts.get(at).map(|(start, _)| *start)
    }

    /// Judges the window of rule `slot` starting at `start` (on the grid of `window`) from its
    /// panes: every group whose condition holds, with its values, ordered by group. The window's
    /// first pane is in no later window, so it is dropped, and the others are merged into it
    /// first; a tumbling window is its one pane, and its group keys are moved out, not copied.
    pub(crate) fn judge_and_drop(
        &mut self,
        slot: u32,
        start: i64,
        window: &WindowSpec,
        eval: &Evaluation,
    ) -> Vec<(GroupKey, Holding)> {
        let Some(panes) = self.by_rule.get_mut(slot as usize) else {
            return Vec::new();
        };
        let first = panes
            .binary_search_by_key(&start, |(s, _)| *s)
            .ok()
            .map(|at| panes.remove(at).1);
        let pane = pane_of(window);
        let later: Vec<&Window> = (1..window.size_ms / pane.size_ms)
            .filter_map(|k| {
                let at = panes
                    .binary_search_by_key(&(start + k * pane.size_ms), |(s, _)| *s)
                    .ok()?;
                Some(&panes[at].1)
            })
            .collect();
        let mut window = match first {
            Some(window) => window,
            None if later.is_empty() => return Vec::new(),
            None => self.spare.pop().unwrap_or_default(),
        };
        for pane in later {
            window.absorb(pane);
        }
        let mut holding: Vec<(GroupKey, Holding)> = window
            .entries
            .iter_mut()
            .filter_map(|e| {
                let holds = e.aggregate.judge(eval)?;
                Some((std::mem::take(&mut e.group), holds))
            })
            .collect();
        // Each group has one entry, so the order is total.
        holding.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        recycle(&mut self.spare, window);
        holding
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// The exact sum of finite `nums`, rounded once, computed in 128-bit fixed point with 60
    /// fraction bits (exact for the values these tests use), with the signs of zeros and
    /// infinities a float sum has.
    fn exact_reference_sum(nums: &[f64]) -> f64 {
        if nums.iter().any(|x| x.is_nan())
            || (nums.contains(&f64::INFINITY) && nums.contains(&f64::NEG_INFINITY))
        {
            return f64::NAN;
        }
        if let Some(inf) = nums.iter().find(|x| x.is_infinite()) {
            return *inf;
        }
        if nums.iter().all(|x| *x == 0.0 && x.is_sign_negative()) {
            return -0.0;
        }
        let scale = 2f64.powi(60);
        let fixed: i128 = nums
            .iter()
            .map(|x| {
                let scaled = x * scale;
                assert_eq!(scaled / scale, *x, "{x} is exact in fixed point");
                scaled as i128
            })
            .sum();
        // i128 → f64 rounds once; scaling by a power of two is exact.
        (fixed as f64) / scale
    }

    /// The aggregate of `values` from scratch, as the module promises: the exact sum rounded
    /// once; min and max of the distinct numeric values folded in ascending total order.
    fn from_scratch(agg: AggFn, values: &[AttrValue]) -> Option<f64> {
        let mut nums: Vec<f64> = values.iter().filter_map(AttrValue::as_f64).collect();
        nums.sort_by(f64::total_cmp);
        let mut distinct = nums.clone();
        distinct.dedup_by(|a, b| a.to_bits() == b.to_bits());
        match agg {
            AggFn::Count => Some(if values.is_empty() {
                empty_sum()
            } else {
                values.len() as f64
            }),
            AggFn::Sum => Some(exact_reference_sum(&nums)),
            AggFn::Avg => {
                (!nums.is_empty()).then(|| (exact_reference_sum(&nums) + 0.0) / nums.len() as f64)
            }
            AggFn::Min => distinct.iter().copied().reduce(f64::min),
            AggFn::Max => distinct.iter().copied().reduce(f64::max),
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

    const EVERY_AGGREGATE: [AggFn; 6] = [
        AggFn::Count,
        AggFn::Sum,
        AggFn::Avg,
        AggFn::Min,
        AggFn::Max,
        AggFn::CountDistinct,
    ];

    fn same(a: Option<f64>, b: Option<f64>) -> bool {
        match (a, b) {
            (Some(x), Some(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
            (None, None) => true,
            _ => false,
        }
    }

    #[test]
    fn groups_stay_apart_in_small_and_large_windows() {
        use crate::predicate::CmpOp;
        let mut table = WindowTable::default();
        let eval = Evaluation {
            agg: AggFn::Sum,
            op: CmpOp::Gt,
            value: Num(0.0),
            relative: false,
        };
        let one_by_one = WindowSpec {
            size_ms: 1,
            slide_ms: 1,
            offset_ms: 0,
        };
        // Window 0 has 5 groups (found by scanning), window 1 has 60 (found through the index);
        // group g gets g + 1 values of 1.0, and one is taken back from every third group.
        for (start, groups) in [(0_i64, 5_u32), (1, 60)] {
            for g in 0..groups {
                let key = AttrValue::Str(format!("sku-{g}").into());
                let hash = table.group_hash(&[&key]);
                let one = AttrValue::Num(Num(1.0));
                let taken = usize::from(g % 3 == 0);
                let changes = std::iter::repeat_n(true, g as usize + 1)
                    .chain(std::iter::repeat_n(false, taken));
                for add in changes {
                    let group = [&key];
                    table.update(7, start, hash, &group, Side::Current, AggFn::Sum, &one, add);
                }
            }
        }
        assert_eq!(table.first_start_from(7, 0), Some(0));
        for (start, groups) in [(0_i64, 5_u32), (1, 60)] {
            let mut got = table.judge_and_drop(7, start, &one_by_one, &eval);
            assert!(
                got.windows(2).all(|pair| pair[0].0 < pair[1].0),
                "holding groups come ordered by group in window {start}"
            );
            got.sort_by_key(|(_, h)| h.value);
            let want: Vec<(Vec<AttrValue>, f64)> = {
                let mut want: Vec<_> = (0..groups)
                    .map(|g| {
                        let sum = f64::from(g + 1) - if g % 3 == 0 { 1.0 } else { 0.0 };
                        (vec![AttrValue::Str(format!("sku-{g}").into())], sum)
                    })
                    .filter(|(_, sum)| *sum > 0.0)
                    .collect();
                want.sort_by(|a, b| a.1.total_cmp(&b.1));
                want
            };
            let got: Vec<(Vec<AttrValue>, f64)> = got
                .into_iter()
                .map(|(g, h)| (g.to_vec(), h.value.0))
                .collect();
            assert_eq!(got.len(), want.len(), "window {start}");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.1, w.1, "window {start}");
            }
            let mut names: Vec<_> = got.into_iter().map(|(g, _)| g).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), want.len(), "each group once in window {start}");
        }
        assert_eq!(
            table.first_start_from(7, 0),
            None,
            "judged windows are dropped"
        );
    }

    #[test]
    fn a_sliding_window_judged_from_its_panes_equals_aggregating_it_from_scratch() {
        use crate::predicate::CmpOp;
        // Windows 3 slides long, a new one every slide; a value is counted in (or taken back
        // from) the pane of its time, and each window is judged, in order, from its panes.
        let window = WindowSpec {
            size_ms: 3_000,
            slide_ms: 1_000,
            offset_ms: 0,
        };
        let pool = [
            AttrValue::Num(Num(3.0)),
            AttrValue::Num(Num(250_000.0)),
            AttrValue::Num(Num(0.1)),
            AttrValue::Num(Num(-0.0)),
            AttrValue::Num(Num(f64::NAN)),
            AttrValue::Str("naver".into()),
            AttrValue::Str("kakao".into()),
            AttrValue::Null,
        ];
        let mut rng = StdRng::seed_from_u64(11);
        for agg in EVERY_AGGREGATE {
            // Every group is judged: any value, NaN included, differs from NaN.
            let eval = Evaluation {
                agg,
                op: CmpOp::Ne,
                value: Num(f64::NAN),
                relative: false,
            };
            for _ in 0..50 {
                let mut table = WindowTable::default();
                let key = AttrValue::Str("g".into());
                let hash = table.group_hash(&[&key]);
                let mut held: Vec<(i64, AttrValue)> = Vec::new();
                for _ in 0..30 {
                    let add = held.is_empty() || rng.random_bool(0.8);
                    let (ts, value) = if add {
                        let ts = rng.random_range(0..8_000);
                        (ts, pool[rng.random_range(0..pool.len())].clone())
                    } else {
                        held.swap_remove(rng.random_range(0..held.len()))
                    };
                    let pane = crate::time::align_down(ts, &pane_of(&window));
                    let group = [&key];
                    table.update(1, pane, hash, &group, Side::Current, agg, &value, add);
                    if add {
                        held.push((ts, value));
                    }
                }
                for start in (0..6).map(|k| k * window.slide_ms) {
                    let inside: Vec<AttrValue> = held
                        .iter()
                        .filter(|(ts, _)| (start..start + window.size_ms).contains(ts))
                        .map(|(_, v)| v.clone())
                        .collect();
                    let want = if inside.is_empty() {
                        None
                    } else {
                        from_scratch(agg, &inside)
                    };
                    let got = table
                        .judge_and_drop(1, start, &window, &eval)
                        .first()
                        .map(|(_, h)| h.value.0);
                    assert!(
                        same(got, want),
                        "{agg:?} of window {start} with {inside:?}: {got:?}, want {want:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_sum_is_exact_whatever_the_order() {
        let orders: [[f64; 4]; 3] = [
            [0.1, 0.2, 1e16, -1e16],
            [1e16, 0.1, -1e16, 0.2],
            [1e16, -1e16, 0.2, 0.1],
        ];
        for order in orders {
            let mut values = Values::default();
            for x in order {
                values.add(AggFn::Sum, &AttrValue::Num(Num(x)));
            }
            // A float sum in the first order gives 0.0, in the last 0.30000000000000004.
            assert_eq!(values.aggregate(AggFn::Sum), Some(0.1 + 0.2), "{order:?}");
        }
    }

    #[test]
    fn a_sum_beyond_the_largest_float_is_infinite() {
        let max = AttrValue::Num(Num(f64::MAX));
        let mut values = Values::default();
        values.add(AggFn::Sum, &max);
        values.add(AggFn::Sum, &max);
        assert_eq!(values.aggregate(AggFn::Sum), Some(f64::INFINITY));
        // Exact: the third value brings the sum back within range.
        values.add(AggFn::Sum, &AttrValue::Num(Num(-f64::MAX)));
        assert_eq!(values.aggregate(AggFn::Sum), Some(f64::MAX));
        values.add(AggFn::Sum, &AttrValue::Num(Num(-f64::MAX)));
        assert_eq!(
            values.aggregate(AggFn::Sum).map(f64::to_bits),
            Some(0.0f64.to_bits())
        );
        let mut negative = Values::default();
        for _ in 0..2 {
            negative.add(AggFn::Sum, &AttrValue::Num(Num(f64::MIN)));
        }
        negative.add(AggFn::Sum, &AttrValue::Num(Num(1.5)));
        assert_eq!(negative.aggregate(AggFn::Sum), Some(f64::NEG_INFINITY));
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
            AttrValue::Num(Num(-1e16)),
            AttrValue::Num(Num(2.5)),
            AttrValue::Num(Num(-0.0)),
            AttrValue::Num(Num(0.0)),
            AttrValue::Num(Num(f64::NAN)),
            AttrValue::Num(Num(f64::INFINITY)),
            AttrValue::Str("naver".into()),
            AttrValue::Null,
        ];
        let mut rng = StdRng::seed_from_u64(7);
        for agg in EVERY_AGGREGATE {
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
