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
//! A physical plan is kept only if it never ran, and each run takes a copy of it: reset by
//! DataFusion's `reset_plan_states` (as recursive queries re-run their plans), with the dynamic
//! filters its nodes produce (a hash join's or a top-k's bounds) made anew and pushed down into
//! the copy's scans again by DataFusion's post-optimization filter pushdown. What the scans also
//! hold from the kept plan are its filters as planned, which never move. Not kept: plans whose
//! copies would share a filter with the kept plan (a reset keeps an aggregate's), so that one run
//! would read the bounds another left, and plans holding rows in memory (the live tail: each copy
//! would stay alive in the cache).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::filter_pushdown::FilterPushdown;
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
    /// Whether nodes of `physical` produce dynamic filters, to be pushed down anew in each copy.
    renews_filters: bool,
}

impl CachedPlan {
    /// Keeps `logical` and, if it can be run again, `physical`, which must not have run; with
    /// the plan this run executes (a copy of the kept one, or `physical` itself if not kept).
    pub fn new(
        logical: LogicalPlan,
        physical: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> (Self, Arc<dyn ExecutionPlan>) {
        let renews_filters = !produced_filters(&physical).is_empty();
        let copy = fresh_copy(&physical, renews_filters, config)
            .ok()
            .filter(|copy| runs_again(&physical, copy));
        let (kept, run) = match copy {
            Some(copy) => (Some(physical), copy),
            None => (None, physical),
        };
        let cached = Self {
            logical,
            physical: kept,
            renews_filters,
        };
        (cached, run)
    }

    /// A fresh copy of the physical plan to run, if one is kept.
    pub fn physical(&self, config: &ConfigOptions) -> Option<DfResult<Arc<dyn ExecutionPlan>>> {
        self.physical
            .as_ref()
            .map(|plan| fresh_copy(plan, self.renews_filters, config))
    }
}

/// A copy of `plan` to run: reset by `reset_plan_states` and, if nodes of `plan` produce dynamic
/// filters (`renew_filters`), passed through DataFusion's post-optimization filter pushdown,
/// which gives the copy filters of its own and pushes them into its scans (a reset hash join has
/// none until then). What the scans read from the kept plan is as it was planned (the kept plan
/// never runs): no bounds at all.
fn fresh_copy(
    plan: &Arc<dyn ExecutionPlan>,
    renew_filters: bool,
    config: &ConfigOptions,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let copy = reset_plan_states(Arc::clone(plan))?;
    if !renew_filters {
        return Ok(copy);
    }
    FilterPushdown::new_post_optimization().optimize(copy, config)
}

/// The ids of the dynamic filters the nodes of `plan` produce (`None` for one without an id).
fn produced_filters(plan: &Arc<dyn ExecutionPlan>) -> Vec<Option<u64>> {
    let mut ids = Vec::new();
    let _ = plan.apply(|node| {
        ids.extend(
            node.dynamic_expressions_produced()
                .iter()
                .map(|filter| filter.expression_id()),
        );
        Ok(TreeNodeRecursion::Continue)
    });
    ids
}

/// Whether a scan of `plan` holds rows in memory (rows given to it, or a live table's tail
/// taken when it was planned outside a query's snapshot): such a plan is never kept to run
/// again.
fn holds_rows(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let in_memory = plan.exists(|node| {
        Ok(node
            .downcast_ref::<DataSourceExec>()
            .is_some_and(|scan| scan.data_source().is::<MemorySourceConfig>())
            || node
                .downcast_ref::<crate::live::TailExec>()
                .is_some_and(crate::live::TailExec::holds_rows))
    });
    !matches!(in_memory, Ok(false))
}

/// Whether copies of `kept` (such as `copy`) run as a new plan would: no scan holds rows in
/// memory, and every dynamic filter a copy produces is its own. A reset renews a top-k's filter
/// and a hash join's (pushed down anew by [`fresh_copy`]) but not every producer's (an
/// aggregate's stays shared), and runs sharing a filter would read each other's bounds.
fn runs_again(kept: &Arc<dyn ExecutionPlan>, copy: &Arc<dyn ExecutionPlan>) -> bool {
    if holds_rows(kept) {
        return false;
    }
    let Some(kept_ids) = produced_filters(kept)
        .into_iter()
        .collect::<Option<HashSet<u64>>>()
    else {
        return false;
    };
    produced_filters(copy)
        .into_iter()
        .all(|id| id.is_some_and(|id| !kept_ids.contains(&id)))
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
        let config = ConfigOptions::default();
        let cached = |n: i64| CachedPlan::new(plan(n), Arc::clone(&empty), &config).0;
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

    /// One Int64 column `column` holding `values`.
    fn int64_batch(column: &str, values: Vec<i64>) -> RecordBatch {
        let schema = Schema::new(vec![Field::new(column, DataType::Int64, false)]);
        RecordBatch::try_new(Arc::new(schema), vec![Arc::new(Int64Array::from(values))])
            .expect("batch")
    }

    /// Writes `values` as the Int64 column `column` of the Parquet file `dir/name.parquet` and
    /// registers it as the table `name`.
    async fn parquet_table(
        ctx: &datafusion::prelude::SessionContext,
        dir: &std::path::Path,
        name: &str,
        column: &str,
        values: Vec<i64>,
    ) {
        let batch = int64_batch(column, values);
        let path = dir.join(format!("{name}.parquet"));
        let mut writer = datafusion::parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&path).expect("file"),
            batch.schema(),
            None,
        )
        .expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");
        ctx.register_parquet(
            name,
            path.to_str().expect("path"),
            datafusion::prelude::ParquetReadOptions::default(),
        )
        .await
        .expect("register");
    }

    /// A session with the table `t` (one Int64 column `n`: 3, 1, 2) in a Parquet file.
    async fn numbers() -> (tempfile::TempDir, datafusion::prelude::SessionContext) {
        let dir = tempfile::tempdir().expect("dir");
        let ctx = datafusion::prelude::SessionContext::new();
        parquet_table(&ctx, dir.path(), "t", "n", vec![3, 1, 2]).await;
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

    /// The Int64 column of a one-column answer.
    fn numbers_of(batches: &[RecordBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("Int64")
                    .values()
                    .to_vec()
            })
            .collect()
    }

    #[tokio::test]
    async fn a_kept_physical_plan_runs_again_from_fresh_copies() {
        let (_dir, ctx) = numbers().await;
        let config = ctx.state().config_options().clone();
        let plan = physical(&ctx, "SELECT sum(n) FROM t").await;
        let cached = CachedPlan::new(logical(), Arc::clone(&plan), &config).0;
        for _ in 0..3 {
            let copy = cached.physical(&config).expect("kept").expect("reset");
            assert!(!Arc::ptr_eq(&copy, &plan), "the kept plan never runs");
            let out = datafusion::physical_plan::collect(copy, ctx.task_ctx())
                .await
                .expect("run");
            assert_eq!(numbers_of(&out), [6], "every copy reads every row once");
        }
    }

    #[tokio::test]
    async fn each_copy_pushes_its_own_top_k_and_join_bounds_into_the_scan() {
        let (dir, ctx) = numbers().await;
        // `u`: the key 2, the build side of a join probing `t`.
        parquet_table(&ctx, dir.path(), "u", "k", vec![2]).await;
        let config = ctx.state().config_options().clone();
        for (sql, answer) in [
            ("SELECT n FROM t ORDER BY n LIMIT 2", vec![1, 2]),
            ("SELECT t.n FROM u JOIN t ON t.n = u.k", vec![2]),
        ] {
            let plan = physical(&ctx, sql).await;
            let shown = |plan: &Arc<dyn ExecutionPlan>| {
                datafusion::physical_plan::displayable(plan.as_ref())
                    .indent(true)
                    .to_string()
            };
            assert!(shown(&plan).contains("DynamicFilter"), "{}", shown(&plan));
            let kept = produced_filters(&plan);
            let cached = CachedPlan::new(logical(), Arc::clone(&plan), &config).0;
            for _ in 0..3 {
                let copy = cached.physical(&config).expect("kept").expect("copy");
                let own = produced_filters(&copy);
                assert!(
                    !own.is_empty() && own.iter().all(|id| id.is_some() && !kept.contains(id)),
                    "{sql}: own {own:?}, kept {kept:?}\n{}",
                    shown(&copy)
                );
                // The Parquet scan reads the copy's filters: they were pushed down again.
                let mut read = HashSet::new();
                let _ = copy.apply(|node| {
                    if node.downcast_ref::<DataSourceExec>().is_some() {
                        node.apply_expressions(&mut |root| {
                            root.apply(|expr| {
                                read.insert(expr.expression_id());
                                Ok(TreeNodeRecursion::Continue)
                            })
                        })?;
                    }
                    Ok(TreeNodeRecursion::Continue)
                });
                assert!(own.iter().any(|id| read.contains(id)), "{}", shown(&copy));
                let out = datafusion::physical_plan::collect(copy, ctx.task_ctx())
                    .await
                    .expect("run");
                assert_eq!(numbers_of(&out), answer, "{sql}");
            }
        }
    }

    #[tokio::test]
    async fn plans_holding_rows_are_not_kept() {
        let batch = int64_batch("n", vec![3, 1, 2]);
        let schema = batch.schema();
        let in_memory: Arc<dyn ExecutionPlan> =
            MemorySourceConfig::try_new_exec(&[vec![batch]], Arc::clone(&schema), None)
                .expect("memory");
        let config = ConfigOptions::default();
        assert!(
            CachedPlan::new(logical(), Arc::clone(&in_memory), &config)
                .0
                .physical(&config)
                .is_none()
        );
        // A top-k over nothing to push into is kept too.
        let empty: Arc<dyn ExecutionPlan> = Arc::new(EmptyExec::new(Arc::clone(&schema)));
        let order = LexOrdering::new(vec![PhysicalSortExpr::new_default(Arc::new(Column::new(
            "n", 0,
        )))])
        .expect("ordering");
        let top_k: Arc<dyn ExecutionPlan> =
            Arc::new(SortExec::new(order, Arc::clone(&empty)).with_fetch(Some(2)));
        assert!(
            CachedPlan::new(logical(), Arc::clone(&top_k), &config)
                .0
                .physical(&config)
                .is_some()
        );
    }

    #[tokio::test]
    async fn a_filter_copies_would_share_is_not_kept() {
        let (_dir, ctx) = numbers().await;
        let config = ctx.state().config_options().clone();
        let plan = physical(&ctx, "SELECT min(n) FROM t WHERE n > 1").await;
        let produced = produced_filters(&plan);
        assert_eq!(
            produced.len(),
            1,
            "the partial aggregate's bounds: {produced:?}"
        );
        let copy = fresh_copy(&plan, true, &config).expect("copy");
        assert_eq!(produced_filters(&copy), produced, "a reset keeps it shared");
        assert!(
            CachedPlan::new(logical(), Arc::clone(&plan), &config)
                .0
                .physical(&config)
                .is_none()
        );
    }

    #[test]
    fn zero_capacity_disables() {
        let cache = ResultCache::new(Duration::from_secs(60), 0);
        cache.insert(key("a"), Arc::new(Schema::empty()), vec![]);
        assert!(cache.get(&key("a")).is_none());
    }
}
