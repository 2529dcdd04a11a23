//! Tidemark's dashboard engine on DataFusion: a per-tenant catalog over the warehouse's local
//! Parquet/CSV files, a semantic model (TOML), a dashboard-spec compiler, analysis functions
//! (ABC, four-quadrant, period-over-period) and a result cache. No HTTP here: `pipeline` serves
//! [`DashboardEngine`] over `/v1/query`, `/v1/sql` and pgwire.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sql::SqlError> {
//! use std::time::Duration;
//! use sql::{DashboardEngine, EngineConfig};
//!
//! let engine = DashboardEngine::new(EngineConfig {
//!     warehouse: "data/warehouse".into(),
//!     models: vec!["sql/models/commerce.toml".into()],
//!     cache_ttl: Duration::from_secs(60),
//!     cache_entries: 1_000,
//!     sources: Vec::new(),
//!     limits: sql::QueryLimits::default(),
//!     live: None,
//! })
//! .await?;
//! let spec = serde_json::json!({
//!     "measures": ["orders.revenue"],
//!     "dimensions": ["orders.channel"],
//!     "time": {"dimension": "orders.date", "grain": "day", "range": "last 7 days",
//!              "timezone": "Asia/Seoul"}
//! });
//! let by_channel = engine.query_spec("acme", &spec).await?;
//! let top = engine
//!     .sql("acme", "SELECT channel, sum(revenue) FROM orders GROUP BY channel")
//!     .await?;
//! # let _ = (by_channel, top);
//! # Ok(())
//! # }
//! ```
//!
//! # Deviations from and additions to the API contract (for the pipeline integrator)
//!
//! - `SqlError` has one more variant, `NoData(String)` (code `no_data`, a client error → 404):
//!   the tenant has no files for a table the request needs. `SqlError::Model.file` is a `PathBuf`.
//! - Error codes: `bad_request`, `not_allowed`, `model_invalid`, `no_data`, `internal`.
//!   `SqlError::from_user_query` classification: SQL parse/plan/type errors and execution errors
//!   of user SQL (e.g. a failing cast) are `bad_request` with field `sql`.
//! - Extra public items: `DashboardEngine::model()`, `QueryResult::num_rows()`, the
//!   [`spec`], [`model`], [`functions`] modules and [`catalog::validate_tenant`].
//! - Tenant ids must be 1–64 of `[A-Za-z0-9_-]` (they become a path segment); anything else is
//!   `BadRequest { field: "tenant" }`.
//! - Tenant sessions have one catalog `tidemark` with schema `public` (the defaults, so
//!   `SELECT * FROM orders` works), plus `information_schema`.
//! - String columns read from Parquet come back as `Utf8View` (DataFusion's default view types,
//!   kept for speed); Arrow JSON/CSV/IPC writers handle them, pgwire encoders must too.
//! - Spec results name columns by member (`orders.channel`, `orders.revenue`,
//!   `orders.order_ts.day`); the time bucket of a timestamp dimension is a timestamp at local
//!   midnight (with the spec's time zone), of a date dimension a `Date32`.
//! - `total: true` appends one grand-total row and a boolean `is_total` column (see
//!   [`spec::compile`]). Without a `limit`, a spec is cut at 10,000 rows with a warning.
//! - Cached answers carry no warnings (`warnings` is empty when `cached` is true); a spec's
//!   relative range (`last 7 days`) is resolved at request time, so it keys the cache by day.
//! - Session settings: DataFusion defaults plus single-partition hash joins up to 32 MiB / 1M rows
//!   (lets the fact-table scan skip row groups by dynamic filter); every setting can be overridden
//!   with `DATAFUSION_*` environment variables. `sql/examples/dashboard_timings.rs` times specs
//!   uncached/cached on any warehouse (`--explain` prints plans with metrics).
//! - Limits (`limits`, [`limits::QueryLimits`]): SQL text size and expression nesting are checked
//!   before planning (`SqlError::TooComplex`, code `query_too_complex`, a client error); each
//!   query runs with a memory pool of its own inside a total budget, and its answer is capped in
//!   memory and rows (`SqlError::TooLarge`, `query_too_large`, a client error; `SqlError::Busy`,
//!   `busy`, when other queries hold the total budget). Plan and run queries on threads with
//!   [`limits::QUERY_STACK_BYTES`] of stack.
//! - `session()` hands out a fresh `SessionContext` per call; plan with
//!   `ctx.state().create_logical_plan(sql)`, then [`check_read_only`], then
//!   `ctx.execute_logical_plan(plan)`: never `ctx.sql(..)`.

pub mod cache;
pub mod catalog;
pub mod crm;
pub mod engine;
pub mod error;
pub mod file_pruning;
pub mod functions;
pub mod ga4;
pub mod limits;
pub mod live;
pub mod model;
pub mod read_only;
pub mod source;
pub mod spec;
pub mod trino;

pub use datafusion;
pub use datafusion::arrow;

pub use cache::CacheStats;
pub use engine::{DashboardEngine, EngineConfig, QueryResult};
pub use error::SqlError;
pub use limits::QueryLimits;
pub use read_only::check_read_only;
pub use source::ExternalSource;
