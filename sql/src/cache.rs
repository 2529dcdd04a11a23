//! The result cache: answers keyed by tenant + the plan's text + the freshness of the files it
//! reads. A changed file changes the key, so a stale answer is never served for new data; the TTL
//! bounds how long anything else (e.g. `now()`) can be stale. Bounded by entry count (least
//! recently used goes first) and by the size of a single answer.
//!
//! Beside it, the plan cache: optimized logical plans under the same key, so a dashboard that is
//! asked again once its answer has expired (or with the result cache off) skips DataFusion's
//! logical optimizer, and with them, where it can be run again, the physical plan, which skips
//! physical planning too (listing the files, the physical optimizer). The key holds the freshness
//! of the files, so a plan is never reused across a change of the data or its schema.
//!
//! A physical plan is kept only if it never ran and can run again from a reset copy
//! (DataFusion's `reset_plan_states`, as recursive queries re-run their plans): not if a dynamic
//! filter one node produces (a hash join's or a top-k's bounds) is read by another, e.g. pushed
//! into a scan (copies share the reader's filter, which a reset does not renew), and not if it
//! holds rows in memory (the live tail: each copy would stay alive in the cache).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::execution_plan::reset_plan_states;

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

/// A bounded map from [`CacheKey`] to optimized plans (least recently used goes first; plans do
/// not expire: the key already changes with the data).
#[derive(Debug)]
pub struct PlanCache {
    enabled: AtomicBool,
    plans: Bounded<CachedPlan>,
}

/// What the plan cache holds for a key.
#[derive(Debug, Clone)]
pub struct CachedPlan {
    /// The optimized logical plan.
    pub logical: LogicalPlan,
    /// Its physical plan, if it can be run again (see the module doc); it never runs itself.
    physical: Option<Arc<dyn ExecutionPlan>>,
}

impl CachedPlan {
    /// Keeps `logical` and, if it can be run again, `physical`, which must not have run.
    pub fn new(logical: LogicalPlan, physical: &Arc<dyn ExecutionPlan>) -> Self {
        let physical = runs_again(physical).then(|| Arc::clone(physical));
        Self { logical, physical }
    }

    /// A fresh copy of the physical plan to run, if one is kept.
    pub fn physical(&self) -> Option<DfResult<Arc<dyn ExecutionPlan>>> {
        self.physical
            .as_ref()
            .map(|plan| reset_plan_states(Arc::clone(plan)))
    }
}

/// Whether a copy reset by `reset_plan_states` runs `plan` as a new plan would: no scan holds
/// rows in memory, and no dynamic filter a node produces (a top-k's, a hash join's or an
/// aggregate's bounds) is read by another node, e.g. pushed into a scan. Copies share what the
/// readers hold, and a reset renews only some producers' filters (an aggregate's stays shared),
/// so one run could start from the bounds another left, or read bounds that never move.
fn runs_again(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let mut produced = HashSet::new();
    let mut unknown = false;
    let in_memory = plan.exists(|node| {
        for filter in node.dynamic_expressions_produced() {
            match filter.expression_id() {
                Some(id) => {
                    produced.insert(id);
                }
                None => unknown = true,
            }
        }
        Ok(node
            .downcast_ref::<DataSourceExec>()
            .is_some_and(|scan| scan.data_source().is::<MemorySourceConfig>()))
    });
    if !matches!(in_memory, Ok(false)) || unknown {
        return false;
    }
    if produced.is_empty() {
        return true;
    }
    // Compared by expression id, as DataFusion finds a dynamic filter's readers.
    let read_elsewhere = plan.exists(|node| {
        let own: HashSet<u64> = node
            .dynamic_expressions_produced()
            .iter()
            .filter_map(|filter| filter.expression_id())
            .collect();
        let mut read = false;
        node.apply_expressions(&mut |root| {
            root.apply(|expr| {
                read = expr
                    .expression_id()
                    .is_some_and(|id| produced.contains(&id) && !own.contains(&id));
                Ok(if read {
                    TreeNodeRecursion::Stop
                } else {
                    TreeNodeRecursion::Continue
                })
            })
        })?;
        Ok(read)
    });
    matches!(read_elsewhere, Ok(false))
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

    /// The plans stored for `key`.
    pub fn get(&self, key: &CacheKey) -> Option<CachedPlan> {
        if !self.enabled.load(Ordering::Relaxed) {
            return None;
        }
        self.plans.get(key, Duration::MAX)
    }

    /// Stores plans, evicting the least recently used ones to make room.
    pub fn insert(&self, key: CacheKey, plan: CachedPlan) {
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
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_expr::expressions::Column;
    use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
    use datafusion::physical_plan::empty::EmptyExec;
    use datafusion::physical_plan::sorts::sort::SortExec;

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
        let empty: Arc<dyn ExecutionPlan> = Arc::new(EmptyExec::new(Arc::new(Schema::empty())));
        let cached = |n: i64| CachedPlan::new(plan(n), &empty);
        cache.insert(key("a"), cached(1));
        cache.insert(key("b"), cached(2));
        assert_eq!(cache.get(&key("a")).map(|c| c.logical), Some(plan(1)));
        cache.insert(key("c"), cached(3));
        assert!(cache.get(&key("b")).is_none(), "b was least recently used");
        assert_eq!(cache.get(&key("c")).map(|c| c.logical), Some(plan(3)));
        assert_eq!(
            cache.stats(),
            CacheStats {
                hits: 2,
                misses: 1,
                entries: 2
            }
        );
    }

    fn logical() -> LogicalPlan {
        datafusion::logical_expr::LogicalPlanBuilder::empty(false)
            .build()
            .expect("plan")
    }

    /// A session with the table `t` (one Int64 column `n`: 3, 1, 2) in a Parquet file.
    async fn numbers() -> (tempfile::TempDir, datafusion::prelude::SessionContext) {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from(vec![3, 1, 2]))],
        )
        .expect("batch");
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("n.parquet");
        let mut writer = datafusion::parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&path).expect("file"),
            schema,
            None,
        )
        .expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.register_parquet(
            "t",
            path.to_str().expect("path"),
            datafusion::prelude::ParquetReadOptions::default(),
        )
        .await
        .expect("register");
        (dir, ctx)
    }

    async fn physical(
        ctx: &datafusion::prelude::SessionContext,
        sql: &str,
    ) -> Arc<dyn ExecutionPlan> {
        ctx.sql(sql)
            .await
            .expect("sql")
            .create_physical_plan()
            .await
            .expect("plan")
    }

    #[tokio::test]
    async fn a_kept_physical_plan_runs_again_from_fresh_copies() {
        let (_dir, ctx) = numbers().await;
        let plan = physical(&ctx, "SELECT sum(n) FROM t").await;
        let cached = CachedPlan::new(logical(), &plan);
        for _ in 0..3 {
            let copy = cached.physical().expect("kept").expect("reset");
            assert!(!Arc::ptr_eq(&copy, &plan), "the kept plan never runs");
            let out = datafusion::physical_plan::collect(copy, ctx.task_ctx())
                .await
                .expect("run");
            let total = out[0]
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("sum")
                .value(0);
            assert_eq!(total, 6, "every copy reads every row once");
        }
    }

    #[tokio::test]
    async fn plans_holding_rows_or_sharing_dynamic_filters_are_not_kept() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from(vec![3, 1, 2]))],
        )
        .expect("batch");
        let in_memory: Arc<dyn ExecutionPlan> =
            MemorySourceConfig::try_new_exec(&[vec![batch]], Arc::clone(&schema), None)
                .expect("memory");
        assert!(CachedPlan::new(logical(), &in_memory).physical().is_none());

        // A top-k whose bounds nothing else reads is kept: a reset renews them.
        let empty: Arc<dyn ExecutionPlan> = Arc::new(EmptyExec::new(Arc::clone(&schema)));
        let order = LexOrdering::new(vec![PhysicalSortExpr::new_default(Arc::new(Column::new(
            "n", 0,
        )))])
        .expect("ordering");
        let top_k: Arc<dyn ExecutionPlan> =
            Arc::new(SortExec::new(order, Arc::clone(&empty)).with_fetch(Some(2)));
        assert!(CachedPlan::new(logical(), &top_k).physical().is_some());

        // Over a Parquet scan its bounds are pushed into the scan: not kept.
        let (_dir, ctx) = numbers().await;
        let pushed = physical(&ctx, "SELECT n FROM t ORDER BY n LIMIT 2").await;
        let shown = datafusion::physical_plan::displayable(pushed.as_ref())
            .indent(true)
            .to_string();
        assert!(shown.contains("DynamicFilter"), "{shown}");
        assert!(CachedPlan::new(logical(), &pushed).physical().is_none());
    }

    #[test]
    fn zero_capacity_disables() {
        let cache = ResultCache::new(Duration::from_secs(60), 0);
        cache.insert(key("a"), Arc::new(Schema::empty()), vec![]);
        assert!(cache.get(&key("a")).is_none());
    }
}
