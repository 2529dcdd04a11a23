//! [`DashboardEngine`]: tenant sessions, spec and SQL entry points, and the result cache.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::TableReference;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::TaskContext;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::SqlError;
use crate::cache::{CacheKey, CacheStats, CachedPlan, PlanCache, ResultCache};
use crate::catalog::{
    CATALOG, SCHEMA, TenantCatalogList, TenantSchema, Warehouse, validate_tenant,
};
use crate::crm::CrmTables;
use crate::file_pruning::FileStatisticsPruning;
use crate::functions;
use crate::limits::{self, QueryLimits, QueryMemoryPool, TotalMemory};
use crate::live::{LiveConfig, LiveSnapshot, LiveTables};
use crate::model::SemanticModel;
use crate::read_only::check_read_only;
use crate::source::{ExternalSource, check_schema_name};
use crate::spec::{self, compile};

/// Optimized dashboard plans kept for re-use (a few hundred dashboards' worth; a logical plan is
/// a few kilobytes, a physical one more with its files' list and statistics).
const PLAN_CACHE_ENTRIES: usize = 512;

/// How to build a [`DashboardEngine`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The warehouse root: `<warehouse>/<table>/tenant=<tenant>/*.parquet` (or `*.csv`).
    pub warehouse: PathBuf,
    /// Semantic-model files (TOML); their sources form one model.
    pub models: Vec<PathBuf>,
    /// How long a cached answer may be served (zero disables the cache).
    pub cache_ttl: Duration,
    /// How many answers the cache holds (zero disables the cache).
    pub cache_entries: usize,
    /// Sources outside the warehouse (Trino, GA4), each a schema of every tenant catalog.
    pub sources: Vec<Arc<dyn ExternalSource>>,
    /// What one query may cost (SQL size, expression depth, memory, answer rows).
    pub limits: QueryLimits,
    /// The event log as tables (`raw_events` and the model's `[events.*]` mappings); `None`
    /// serves the warehouse files only.
    pub live: Option<LiveConfig>,
}

/// An answer.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// The columns.
    pub schema: SchemaRef,
    /// The rows.
    pub batches: Vec<RecordBatch>,
    /// Whether the answer came from the result cache.
    pub cached: bool,
    /// Things the caller should pass on (e.g. a range rounded to days, a default limit reached).
    pub warnings: Vec<String>,
}

impl QueryResult {
    /// The number of rows.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// The dashboard engine: cheap to clone, safe to share between tasks.
#[derive(Clone)]
pub struct DashboardEngine {
    inner: Arc<Inner>,
}

struct Inner {
    warehouse: Arc<Warehouse>,
    sources: Vec<Arc<dyn ExternalSource>>,
    model: SemanticModel,
    cache: ResultCache,
    plans: PlanCache,
    tenants: RwLock<HashMap<String, Tenant>>,
    limits: QueryLimits,
    /// The memory budget every running query draws from.
    memory: Arc<TotalMemory>,
    live: Option<Arc<LiveTables>>,
    /// The audiences' tables, once [`DashboardEngine::attach_crm`] is called.
    crm: Arc<CrmTables>,
}

/// A tenant's tables and the session the engine itself plans and runs its queries in (never
/// handed out, so nothing a caller does to a session can leak into it).
#[derive(Clone)]
struct Tenant {
    schema: Arc<TenantSchema>,
    ctx: SessionContext,
}

impl std::fmt::Debug for DashboardEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardEngine")
            .field("warehouse", &self.inner.warehouse)
            .field("cache", &self.inner.cache.stats())
            .finish()
    }
}

/// The session settings every tenant session runs with: DataFusion's defaults (one partition per
/// core, statistics collected, Parquet row-group and page pruning on) but larger single-partition
/// hash joins, all overridable through
/// `DATAFUSION_*` environment variables (e.g. `DATAFUSION_EXECUTION_PARQUET_PUSHDOWN_FILTERS=true`),
/// except for what the tenant wall needs: the catalog layout and `information_schema`.
fn session_config() -> Result<SessionConfig, SqlError> {
    let mut config = SessionConfig::from_env()
        .map_err(|e| SqlError::Internal(format!("DATAFUSION_* environment: {e}")))?;
    // Build hash joins once for all partitions (CollectLeft) up to a few hundred thousand rows:
    // a dashboard's filtered dimension side (a month of orders) is that size, and a single build
    // side gives the probe scan a min/max dynamic filter that skips whole row groups of the fact
    // table, where a partitioned join reads all of it.
    for (key, value) in [
        (
            "datafusion.optimizer.hash_join_single_partition_threshold",
            "33554432",
        ),
        (
            "datafusion.optimizer.hash_join_single_partition_threshold_rows",
            "1048576",
        ),
    ] {
        let env = key.to_uppercase().replace('.', "_");
        if std::env::var_os(env).is_none() {
            config.options_mut().set(key, value)?;
        }
    }
    Ok(config
        .with_information_schema(true)
        .with_create_default_catalog_and_schema(false)
        .with_default_catalog_and_schema(CATALOG, SCHEMA))
}

impl DashboardEngine {
    /// Opens the warehouse, loads the semantic models and checks every member expression against
    /// the first tenant that has its source's tables.
    pub async fn new(config: EngineConfig) -> Result<Self, SqlError> {
        if !config.warehouse.is_dir() {
            return Err(SqlError::Internal(format!(
                "warehouse {} is not a directory",
                config.warehouse.display()
            )));
        }
        let warehouse = Arc::new(Warehouse::open(&config.warehouse, session_config()?)?);
        let mut names = BTreeSet::new();
        for source in &config.sources {
            let name = source.schema_name();
            check_schema_name(name).map_err(SqlError::Internal)?;
            if !names.insert(name) {
                return Err(SqlError::Internal(format!(
                    "two sources are named {name:?}"
                )));
            }
        }
        let model = SemanticModel::load(&config.models)?;
        let live = match config.live {
            Some(live) => {
                let (warehouse, model) = (Arc::clone(&warehouse), model.clone());
                Some(
                    tokio::task::spawn_blocking(move || LiveTables::open(warehouse, &model, live))
                        .await
                        .map_err(|e| SqlError::Internal(format!("live tables: {e}")))??,
                )
            }
            None => None,
        };
        let engine = Self {
            inner: Arc::new(Inner {
                warehouse,
                sources: config.sources.clone(),
                model,
                cache: ResultCache::new(config.cache_ttl, config.cache_entries),
                plans: PlanCache::new(PLAN_CACHE_ENTRIES),
                tenants: RwLock::new(HashMap::new()),
                memory: TotalMemory::new(config.limits.total_memory_bytes),
                limits: config.limits.clone(),
                live,
                crm: Arc::default(),
            }),
        };
        engine.check_model_against_data().await?;
        Ok(engine)
    }

    /// The live tables, when on: run [`LiveTables::run`] to keep them current and compacted.
    pub fn live(&self) -> Option<Arc<LiveTables>> {
        self.inner.live.clone()
    }

    /// Serves the tenants' audiences as tables (`audience_members`, `audience_sizes`) from
    /// `store`, from now on.
    pub fn attach_crm(&self, store: Arc<dyn connectors::store::Audiences>) {
        self.inner.crm.attach(store);
    }

    /// The loaded semantic model (for catalogs of members, docs, UIs).
    pub fn model(&self) -> &SemanticModel {
        &self.inner.model
    }

    /// Answers a dashboard spec for `tenant` (see [`crate::spec`] for the format).
    pub async fn query_spec(
        &self,
        tenant: &str,
        spec: &serde_json::Value,
    ) -> Result<QueryResult, SqlError> {
        let spec = spec::parse(&self.inner.model, spec, Utc::now())?;
        let tenant_state = self.tenant(tenant)?;
        let compiled = compile::compile(&self.inner.model, &tenant_state.ctx, &spec).await?;
        limits::check_plan(&compiled.plan, &self.inner.limits)?;
        let mut result = self
            .run(tenant, &tenant_state.ctx, compiled.plan, false)
            .await?;
        result.warnings.extend(compiled.warnings);
        if let Some(limit) = compiled.default_limit {
            let rows = result.num_rows().saturating_sub(usize::from(spec.total));
            if rows >= limit {
                result.warnings.push(format!(
                    "the result was cut at the default limit of {limit} rows; set `limit` to get more"
                ));
            }
        }
        Ok(result)
    }

    /// Answers read-only SQL for `tenant`: SELECT, EXPLAIN, DESCRIBE, SHOW and
    /// `information_schema` queries; anything else is [`SqlError::NotAllowed`].
    ///
    /// The text's size and its expressions' nesting are checked against the engine's
    /// [`QueryLimits`] before it is planned ([`SqlError::TooComplex`]). Plan and run it on a
    /// thread with [`limits::QUERY_STACK_BYTES`] of stack.
    pub async fn sql(&self, tenant: &str, sql: &str) -> Result<QueryResult, SqlError> {
        limits::check_sql_size(sql, &self.inner.limits)?;
        let tenant_state = self.tenant(tenant)?;
        let state = tenant_state.ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let statement = state
            .sql_to_statement(sql, &dialect)
            .map_err(SqlError::from_user_query)?;
        limits::check_statement(&statement, &self.inner.limits)?;
        let plan = state
            .statement_to_plan(statement)
            .await
            .map_err(SqlError::from_user_query)?;
        check_read_only(&plan)?;
        self.run(tenant, &tenant_state.ctx, plan, true).await
    }

    /// Runs a plan of user SQL planned in a session from [`Self::session`] (e.g. by pgwire,
    /// which parses with its own dialect): checked read-only, then run under the engine's memory
    /// and answer limits like [`Self::sql`]; never cached. The caller checks the statement with
    /// [`limits::check_statement`] before planning it.
    pub async fn run_session_plan(
        &self,
        ctx: &SessionContext,
        plan: LogicalPlan,
    ) -> Result<QueryResult, SqlError> {
        check_read_only(&plan)?;
        let df = ctx
            .execute_logical_plan(plan)
            .await
            .map_err(SqlError::from_user_query)?;
        let physical = df
            .create_physical_plan()
            .await
            .map_err(SqlError::from_user_query)?;
        let schema = physical.schema();
        let batches = self
            .collect(
                &ctx.state(),
                Arc::clone(&physical),
                SqlError::from_user_query,
            )
            .await?;
        Ok(QueryResult {
            schema,
            batches,
            cached: false,
            warnings: crate::ga4::warnings(&physical),
        })
    }

    /// The limits every query runs under.
    pub fn limits(&self) -> &QueryLimits {
        &self.inner.limits
    }

    /// Runs a physical plan with a memory pool of its own (the per-query budget, drawing from
    /// the total one) and collects its answer within the answer limits.
    async fn collect(
        &self,
        state: &SessionState,
        physical: Arc<dyn ExecutionPlan>,
        classify: impl Fn(datafusion::error::DataFusionError) -> SqlError,
    ) -> Result<Vec<datafusion::arrow::array::RecordBatch>, SqlError> {
        let mut runtime = (**state.runtime_env()).clone();
        runtime.memory_pool = Arc::new(QueryMemoryPool::new(
            self.inner.limits.query_memory_bytes,
            Arc::clone(&self.inner.memory),
        ));
        let task = Arc::new(TaskContext::from(state).with_runtime(Arc::new(runtime)));
        limits::collect_limited(physical, task, self.inner.limits.max_result_rows)
            .await
            .map_err(classify)?
    }

    /// A new session for `tenant` (e.g. for a pgwire connection) over the same tenant catalog,
    /// runtime and functions as the engine's own. The caller must plan with
    /// `ctx.state().create_logical_plan(sql)` and pass the plan through [`check_read_only`] before
    /// `ctx.execute_logical_plan(plan)`; never `ctx.sql(..)`, which runs DDL and SET as it plans.
    /// The session's catalog refuses new tables, schemas and catalogs in any case.
    pub async fn session(&self, tenant: &str) -> Result<SessionContext, SqlError> {
        let tenant_state = self.tenant(tenant)?;
        Ok(self.context(Arc::clone(&tenant_state.schema)))
    }

    /// Result-cache counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.stats()
    }

    /// Plan-cache counters (optimized dashboard plans re-used instead of re-optimized).
    pub fn plan_cache_stats(&self) -> CacheStats {
        self.inner.plans.stats()
    }

    /// Turns the plan cache on (the default) or off, e.g. to measure what planning costs.
    pub fn set_plan_cache(&self, enabled: bool) {
        self.inner.plans.set_enabled(enabled);
    }

    fn context(&self, schema: Arc<TenantSchema>) -> SessionContext {
        let warehouse = &self.inner.warehouse;
        let sources = &self.inner.sources;
        let mut builder = SessionStateBuilder::new()
            .with_config(warehouse.config().clone())
            .with_runtime_env(warehouse.runtime())
            .with_default_features()
            .with_physical_optimizer_rules(FileStatisticsPruning::with_default_rules())
            // No `CREATE EXTERNAL TABLE ... STORED AS ...` factories: nothing but the warehouse.
            .with_table_factories(HashMap::new())
            .with_catalog_list(Arc::new(TenantCatalogList::new(schema, sources)));
        for source in sources {
            builder = source.configure(builder);
        }
        let state = builder.build();
        let ctx = SessionContext::new_with_state(state);
        functions::register(&ctx);
        ctx
    }

    fn tenant(&self, tenant: &str) -> Result<Tenant, SqlError> {
        validate_tenant(tenant)?;
        let poisoned = || SqlError::Internal("tenant sessions lock poisoned".into());
        if let Some(t) = self
            .inner
            .tenants
            .read()
            .map_err(|_| poisoned())?
            .get(tenant)
        {
            return Ok(t.clone());
        }
        let mut tenants = self.inner.tenants.write().map_err(|_| poisoned())?;
        let t = tenants
            .entry(tenant.to_string())
            .or_insert_with(|| {
                let schema = Arc::new(TenantSchema::new(
                    Arc::clone(&self.inner.warehouse),
                    tenant,
                    self.inner.live.clone(),
                    Arc::clone(&self.inner.crm),
                ));
                Tenant {
                    ctx: self.context(Arc::clone(&schema)),
                    schema,
                }
            })
            .clone();
        Ok(t)
    }

    /// Runs a checked plan, through the cache when the plan allows it.
    async fn run(
        &self,
        tenant: &str,
        ctx: &SessionContext,
        plan: LogicalPlan,
        user_sql: bool,
    ) -> Result<QueryResult, SqlError> {
        let tables = cache_tables(&plan);
        // The live tables the plan reads, as they stand now: the plan is keyed by the files
        // they list (the compacted watermark), the answer by the events as well, and the plan
        // reads the tail of this snapshot when it runs.
        let live = tables
            .as_ref()
            .and_then(|tables| self.live_snapshot(tenant, tables));
        let files = tables.as_ref().map(|tables| {
            let files = self.files_freshness(tenant, tables);
            match &live {
                Some(live) => files ^ live.watermark().rotate_left(41),
                None => files,
            }
        });
        let key = tables.as_ref().zip(files).map(|(_, files)| CacheKey {
            tenant: tenant.to_string(),
            plan: plan.display_indent_schema().to_string(),
            freshness: match &live {
                Some(live) => files ^ live.freshness().rotate_left(17),
                None => files,
            },
        });
        // Whether every table read is a warehouse table (in the tenant's default schema).
        let warehouse_only = tables.is_some_and(|tables| {
            tables
                .iter()
                .all(|table| table.schema().is_none_or(|schema| schema == SCHEMA))
        });
        if let Some(key) = &key
            && let Some((schema, batches)) = self.inner.cache.get(key)
        {
            return Ok(QueryResult {
                schema,
                batches,
                cached: true,
                warnings: Vec::new(),
            });
        }
        let classify = |e| {
            if user_sql {
                SqlError::from_user_query(e)
            } else {
                SqlError::from(e)
            }
        };
        // A dashboard spec over warehouse tables re-uses its optimized plan, and its physical plan
        // where that can run again (see `cache`): the key holds the files' freshness, and the spec
        // compiler resolves relative time ranges to literals, so the plans of the same key are the
        // same. User SQL (which may call `now()`, folded to a constant by the optimizer) and
        // external sources are optimized every time. A live table's new events are not part of
        // the plan's key: its physical plan lists the files of the snapshot's watermark and reads
        // the tail when it runs, from the snapshot the run carries.
        let plan_key = key
            .as_ref()
            .zip(files)
            .filter(|_| !user_sql && warehouse_only)
            .map(|(key, files)| CacheKey {
                freshness: files,
                ..key.clone()
            });
        let plan_key = plan_key.as_ref();
        let mut state = ctx.state();
        let physical = if let Some(plan_key) = plan_key {
            if let Some(live) = &live {
                state.config_mut().set_extension(Arc::clone(live));
            }
            let state = &state;
            let planned = |logical: LogicalPlan| async move {
                state
                    .query_planner()
                    .create_physical_plan(&logical, state)
                    .await
            };
            let config = state.config_options();
            match self.inner.plans.get(plan_key) {
                Some(cached) => match cached.physical(config) {
                    Some(copy) => copy.map_err(classify)?,
                    None => planned(cached.logical).await.map_err(classify)?,
                },
                None => {
                    let optimized = state.optimize(&plan).map_err(classify)?;
                    let physical = planned(optimized.clone()).await.map_err(classify)?;
                    // The kept plan never runs: this run takes a copy of it too.
                    let (cached, run) = CachedPlan::new(optimized, physical, config);
                    self.inner.plans.insert(plan_key.clone(), cached);
                    run
                }
            }
        } else {
            let df = ctx.execute_logical_plan(plan).await.map_err(classify)?;
            df.create_physical_plan().await.map_err(classify)?
        };
        let schema = physical.schema();
        let batches = self
            .collect(&state, Arc::clone(&physical), classify)
            .await?;
        // What a source reported while answering (GA4 sampling, thresholding, low quota).
        let warnings = crate::ga4::warnings(&physical);
        if let Some(key) = key {
            self.inner
                .cache
                .insert(key, Arc::clone(&schema), batches.clone());
        }
        Ok(QueryResult {
            schema,
            batches,
            cached: false,
            warnings,
        })
    }

    /// The freshness of `tenant`'s `tables`' files.
    fn files_freshness(&self, tenant: &str, tables: &BTreeSet<TableReference>) -> u64 {
        self.inner
            .warehouse
            .freshness(tenant, tables.iter().map(TableReference::table))
    }

    /// A snapshot of the live tables among `tables` (those of the tenant's own schema), if
    /// the plan reads any.
    fn live_snapshot(
        &self,
        tenant: &str,
        tables: &BTreeSet<TableReference>,
    ) -> Option<Arc<LiveSnapshot>> {
        let live = self.inner.live.as_ref()?;
        let names: Vec<&str> = tables
            .iter()
            .filter(|t| t.schema().is_none_or(|s| s == SCHEMA))
            .map(TableReference::table)
            .filter(|table| live.is_live(table))
            .collect();
        (!names.is_empty()).then(|| live.snapshot_of(tenant, names))
    }

    /// Resolves every member of every source against the first tenant that has files loaded
    /// into the source's table, so a column typo fails at start-up rather than on a dashboard.
    /// Tables live tables compacted from a tenant's events are not the model's to answer for:
    /// what a tenant sends never stops the server from starting.
    async fn check_model_against_data(&self) -> Result<(), SqlError> {
        for source in self.inner.model.sources() {
            let Some(tenant) = self
                .inner
                .warehouse
                .tenants_with(&source.table)
                .into_iter()
                .find(|tenant| self.inner.warehouse.has_loaded_files(&source.table, tenant))
            else {
                tracing::warn!(source = %source.name, table = %source.table, "no tenant has data for this source yet; its members are checked on first use");
                continue;
            };
            let tenant_state = self.tenant(&tenant)?;
            compile::check_source(&self.inner.model, &tenant_state.ctx, source).await?;
        }
        Ok(())
    }
}

/// The tables a plan reads, if its answer may be cached: not for catalog introspection (it
/// changes with the set of tables), EXPLAIN / DESCRIBE, or volatile functions (`random()`).
fn cache_tables(plan: &LogicalPlan) -> Option<BTreeSet<TableReference>> {
    let mut tables = BTreeSet::new();
    let mut cacheable = true;
    let _ = plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::TableScan(scan) => {
                // Catalog introspection changes with the set of tables; CRM tables with every
                // step of the audience engine.
                if scan.table_name.schema() == Some("information_schema")
                    || crate::crm::is_crm_table(scan.table_name.table())
                {
                    cacheable = false;
                }
                tables.insert(scan.table_name.clone());
            }
            LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) | LogicalPlan::DescribeTable(_) => {
                cacheable = false;
            }
            _ => {}
        }
        if node.expressions().iter().any(|e| e.is_volatile()) {
            cacheable = false;
        }
        Ok(if cacheable {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    cacheable.then_some(tables)
}
