//! The result cache: answers keyed by tenant + the plan's text + the freshness of the files it
//! reads. A changed file changes the key, so a stale answer is never served for new data; the TTL
//! bounds how long anything else (e.g. `now()`) can be stale. Bounded by entry count (least
//! recently used goes first) and by the size of a single answer.
//!
//! Beside it, the plan cache: optimized logical plans under the same key, so a dashboard that is
//! asked again once its answer has expired (or with the result cache off) skips DataFusion's
//! logical optimizer. The key holds the freshness of the files, so a plan is never reused across
//! a change of the data or its schema.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::logical_expr::LogicalPlan;

/// Answers bigger than this are not cached: they would crowd out many small dashboard answers.
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// Counters of the result cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that had to run the query.
    pub misses: u64,
    /// Answers held now.
    pub entries: usize,
}

/// What identifies an answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The tenant: part of every key, so no answer is ever shared between tenants.
    pub tenant: String,
    /// The logical plan, printed with its schema (every table, column, literal and type).
    pub plan: String,
    /// Fingerprint of the names, sizes and mtimes of the files behind the plan's tables.
    pub freshness: u64,
}

/// Values under [`CacheKey`]s, bounded by count (least recently used goes first), with hit and
/// miss counters: what the result cache and the plan cache have in common.
#[derive(Debug)]
struct Bounded<V> {
    capacity: usize,
    entries: Mutex<HashMap<CacheKey, Slot<V>>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Debug)]
struct Slot<V> {
    value: V,
    inserted: Instant,
    last_used: Instant,
}

impl<V: Clone> Bounded<V> {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The value under `key` unless it is `max_age` old (then it is dropped); counts a hit or a
    /// miss.
    fn get(&self, key: &CacheKey, max_age: Duration) -> Option<V> {
        let now = Instant::now();
        let found = self.entries.lock().ok().and_then(|mut entries| {
            let expired = entries
                .get(key)
                .is_some_and(|e| now.duration_since(e.inserted) >= max_age);
            if expired {
                entries.remove(key);
                return None;
            }
            entries.get_mut(key).map(|e| {
                e.last_used = now;
                e.value.clone()
            })
        });
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Stores `value`, dropping entries `max_age` old and then the least recently used ones to
    /// make room.
    fn insert(&self, key: CacheKey, value: V, max_age: Duration) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let now = Instant::now();
        if entries.len() >= self.capacity {
            entries.retain(|_, e| now.duration_since(e.inserted) < max_age);
        }
        while entries.len() >= self.capacity {
            let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            entries.remove(&oldest);
        }
        entries.insert(
            key,
            Slot {
                value,
                inserted: now,
                last_used: now,
            },
        );
    }

    fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }

    fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.entries.lock().map(|e| e.len()).unwrap_or(0),
        }
    }
}

/// A bounded, expiring map from [`CacheKey`] to query answers.
#[derive(Debug)]
pub struct ResultCache {
    ttl: Duration,
    answers: Bounded<(SchemaRef, Vec<RecordBatch>)>,
}

impl ResultCache {
    /// A cache of at most `capacity` answers, each kept at most `ttl`. A zero capacity or TTL
    /// disables caching (every lookup is a miss).
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            answers: Bounded::new(capacity),
        }
    }

    /// The cached answer for `key`, if there is a fresh one.
    pub fn get(&self, key: &CacheKey) -> Option<(SchemaRef, Vec<RecordBatch>)> {
        self.answers.get(key, self.ttl)
    }

    /// Stores an answer, evicting expired and then least recently used entries to make room.
    pub fn insert(&self, key: CacheKey, schema: SchemaRef, batches: Vec<RecordBatch>) {
        if self.answers.capacity == 0 || self.ttl.is_zero() {
            return;
        }
        let bytes: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
        if bytes > MAX_ANSWER_BYTES {
            return;
        }
        self.answers.insert(key, (schema, batches), self.ttl);
    }

    /// Current counters.
    pub fn stats(&self) -> CacheStats {
        self.answers.stats()
    }
}

/// A bounded map from [`CacheKey`] to optimized logical plans (least recently used goes first;
/// plans do not expire: the key already changes with the data).
#[derive(Debug)]
pub struct PlanCache {
    enabled: AtomicBool,
    plans: Bounded<LogicalPlan>,
}

impl PlanCache {
    /// A cache of at most `capacity` plans; zero disables it.
    pub fn new(capacity: usize) -> Self {
        Self {
            enabled: AtomicBool::new(capacity > 0),
            plans: Bounded::new(capacity),
        }
    }

    /// Turns the cache on or off (off: nothing is looked up or stored, and what is held goes).
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled
            .store(enabled && self.plans.capacity > 0, Ordering::Relaxed);
        if !enabled {
            self.plans.clear();
        }
    }

    /// The optimized plan stored for `key`.
    pub fn get(&self, key: &CacheKey) -> Option<LogicalPlan> {
        if !self.enabled.load(Ordering::Relaxed) {
            return None;
        }
        self.plans.get(key, Duration::MAX)
    }

    /// Stores an optimized plan, evicting the least recently used one to make room.
    pub fn insert(&self, key: CacheKey, plan: LogicalPlan) {
        if self.enabled.load(Ordering::Relaxed) {
            self.plans.insert(key, plan, Duration::MAX);
        }
    }

    /// Current counters (`entries` is the number of plans held).
    pub fn stats(&self) -> CacheStats {
        self.plans.stats()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::Schema;

    use super::*;

    fn key(plan: &str) -> CacheKey {
        CacheKey {
            tenant: "t".into(),
            plan: plan.into(),
            freshness: 1,
        }
    }

    #[test]
    fn bounded_by_entries_least_recently_used_first() {
        let cache = ResultCache::new(Duration::from_secs(60), 2);
        let schema = Arc::new(Schema::empty());
        cache.insert(key("a"), schema.clone(), vec![]);
        cache.insert(key("b"), schema.clone(), vec![]);
        assert!(cache.get(&key("a")).is_some());
        cache.insert(key("c"), schema, vec![]);
        assert!(cache.get(&key("b")).is_none(), "b was least recently used");
        assert!(cache.get(&key("a")).is_some());
        assert!(cache.get(&key("c")).is_some());
        assert_eq!(
            cache.stats(),
            CacheStats {
                hits: 3,
                misses: 1,
                entries: 2
            }
        );
    }

    #[test]
    fn entries_expire() {
        let cache = ResultCache::new(Duration::from_millis(20), 10);
        cache.insert(key("a"), Arc::new(Schema::empty()), vec![]);
        assert!(cache.get(&key("a")).is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert!(cache.get(&key("a")).is_none());
        assert_eq!(cache.stats().entries, 0);
    }

    #[test]
    fn plan_cache_is_bounded_least_recently_used_first() {
        let cache = PlanCache::new(2);
        let plan = |n: i64| {
            datafusion::logical_expr::LogicalPlanBuilder::empty(false)
                .project(vec![datafusion::prelude::lit(n)])
                .and_then(|b| b.build())
                .expect("plan")
        };
        cache.insert(key("a"), plan(1));
        cache.insert(key("b"), plan(2));
        assert_eq!(cache.get(&key("a")), Some(plan(1)));
        cache.insert(key("c"), plan(3));
        assert_eq!(cache.get(&key("b")), None, "b was least recently used");
        assert_eq!(cache.get(&key("c")), Some(plan(3)));
        assert_eq!(
            cache.stats(),
            CacheStats {
                hits: 2,
                misses: 1,
                entries: 2
            }
        );
    }

    #[test]
    fn zero_capacity_disables() {
        let cache = ResultCache::new(Duration::from_secs(60), 0);
        cache.insert(key("a"), Arc::new(Schema::empty()), vec![]);
        assert!(cache.get(&key("a")).is_none());
    }
}
