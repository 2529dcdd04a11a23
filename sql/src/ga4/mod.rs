//! GA4 web analytics as tables: each configured GA4 property is a table `ga4.<name>` whose
//! columns are the property's dimensions and metrics (snake_case: `session_default_channel_group`,
//! `total_users`, `custom_user_tier`), with `date` a `Date32`, integer metrics `Int64` and
//! other metrics `Float64`.
//!
//! An aggregate over a GA4 table becomes **one** `runReport`:
//!
//! ```sql
//! SELECT date, session_default_channel_group, SUM(sessions) AS sessions, SUM(total_users)
//! FROM ga4.web
//! WHERE date BETWEEN '2026-01-01' AND '2026-01-14' AND device_category = 'mobile'
//! GROUP BY 1, 2 HAVING SUM(sessions) > 10 ORDER BY sessions DESC LIMIT 20
//! ```
//!
//! sends `dimensions` [date, sessionDefaultChannelGroup], `metrics` [sessions, totalUsers],
//! `dateRanges` 2026-01-01…2026-01-14, `dimensionFilter` deviceCategory = mobile,
//! `metricFilter` sessions > 10, `orderBys` sessions desc and `limit` 20, and DataFusion only
//! renames the columns. `SUM`, `MIN`, `MAX` and `AVG` of a metric all mean "the metric for the
//! group, as GA4 computes it" (one report row per group). Time grains
//! (`date_trunc('week' | 'month' | 'year', date)`) are pushed as GA4's `isoYearIsoWeek`,
//! `yearMonth` and `year` dimensions, so monthly users are GA4's monthly users.
//!
//! What GA4 cannot express is evaluated by DataFusion only where that is exact — see
//! [`pushdown`]: GA4 rows at the grain of the dimensions the query reads are re-aggregated only
//! for sums of additive metrics ([`additivity`]) and distinct counts / MIN / MAX of dimensions. A
//! query that would re-aggregate a non-additive metric (users, rates, averages; sessions across
//! pages) is refused with an explanation, before anything is sent. Without an aggregate, a scan
//! is the report whose dimensions are the dimension columns read (`SELECT date, sessions FROM
//! ga4.web` = sessions per day); its ORDER BY and LIMIT are pushed too.
//!
//! Whatever the pushdown leaves, [`check`] verifies over the final optimized plan (in
//! [`Ga4Planner`], before the physical plan is built): no aggregate or window function anywhere
//! in the plan may combine two rows' values of a non-additive metric, however the column was
//! renamed, aliased, joined or unioned on the way.
//!
//! Errors: refusals are [`Ga4Refusal`]s (a user's bad request, HTTP 400), as is a report of more
//! than 9 dimensions or 10 metrics; GA4 failures (quota, permission, rate limit after backoff)
//! reach the query as external errors carrying [`connectors::ga4::Ga4Error`].
//!
//! Wiring: [`Ga4Source`] is an [`ExternalSource`]; its
//! `configure` installs [`Ga4Pushdown`] (or call [`register`] on a `SessionStateBuilder`).
//! Sampling and thresholding warnings of the reports a query fetched are on its physical plan:
//! [`warnings`].

pub mod additivity;
pub mod check;
pub mod pushdown;
mod table;
pub mod translate;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use connectors::ga4::{Ga4Client, Ga4Config, Ga4Error, ServiceAccountKey, property_name};
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::physical_plan::ExecutionPlan;

pub use check::Ga4Planner;
pub use pushdown::Ga4Pushdown;
pub use table::{ColumnKind, Ga4Column, Ga4Table, ReportExec, ReportTable, sql_name};

use crate::source::ExternalSource;

/// How long a property's columns (its `getMetadata`) are reused before being fetched again, so
/// custom dimensions and metrics defined in GA4 appear without a restart.
pub const METADATA_TTL: Duration = Duration::from_secs(3600);

/// The schema GA4 tables appear under.
pub const SCHEMA: &str = "ga4";

/// One tenant's GA4 access.
#[derive(Clone)]
pub struct Ga4TenantConfig {
    /// The service-account key JSON, as resolved from the secrets store.
    pub service_account_key: String,
    /// Table name → GA4 property id (`"web" → "123456"`).
    pub tables: BTreeMap<String, String>,
}

impl std::fmt::Debug for Ga4TenantConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ga4TenantConfig")
            .field("service_account_key", &"<redacted>")
            .field("tables", &self.tables)
            .finish()
    }
}

/// How [`Ga4Source`] reaches GA4.
#[derive(Debug, Clone, Default)]
pub struct Ga4SourceConfig {
    /// Client settings; `api_base` is overridden in tests. The token URI comes from each key.
    pub client: Ga4Config,
    /// Tenant id → its properties and key.
    pub tenants: BTreeMap<String, Ga4TenantConfig>,
}

type CachedTable = (Instant, Arc<Ga4Table>);

/// GA4 properties as tables under `ga4.` in each tenant's catalog; a tenant sees only its own
/// properties, read with its own service account.
pub struct Ga4Source {
    tenants: BTreeMap<String, (Arc<Ga4Client>, BTreeMap<String, String>)>,
    /// (tenant, table) → when its metadata was fetched, and the table.
    tables: Mutex<HashMap<(String, String), CachedTable>>,
}

impl std::fmt::Debug for Ga4Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ga4Source")
            .field("tenants", &self.tenants.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Ga4Source {
    /// Builds one client per tenant; a key that does not parse is an error naming the tenant.
    pub fn new(config: Ga4SourceConfig) -> Result<Self, Ga4Error> {
        let mut tenants = BTreeMap::new();
        for (tenant, t) in config.tenants {
            let key = ServiceAccountKey::from_json(t.service_account_key.as_bytes())
                .map_err(|e| Ga4Error::Key(format!("tenant {tenant}: {e}")))?;
            let client = Arc::new(Ga4Client::new(key, config.client.clone())?);
            tenants.insert(tenant, (client, t.tables));
        }
        Ok(Ga4Source {
            tenants,
            tables: Mutex::new(HashMap::new()),
        })
    }
}

#[async_trait]
impl ExternalSource for Ga4Source {
    fn schema_name(&self) -> &str {
        SCHEMA
    }

    fn table_names(&self, tenant: &str) -> Vec<String> {
        self.tenants
            .get(tenant)
            .map(|(_, tables)| tables.keys().cloned().collect())
            .unwrap_or_default()
    }

    async fn table(&self, tenant: &str, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some((client, tables)) = self.tenants.get(tenant) else {
            return Ok(None);
        };
        let Some(property) = tables.get(name) else {
            return Ok(None);
        };
        let key = (tenant.to_string(), name.to_string());
        let cached = self.tables.lock().ok().and_then(|t| t.get(&key).cloned());
        if let Some((fetched, t)) = cached
            && fetched.elapsed() < METADATA_TTL
        {
            return Ok(Some(t));
        }
        let property = property_name(property);
        let metadata = client
            .get_metadata(&property)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let table = Arc::new(Ga4Table::new(property, Arc::clone(client), &metadata));
        if let Ok(mut t) = self.tables.lock() {
            t.insert(key, (Instant::now(), Arc::clone(&table)));
        }
        Ok(Some(table))
    }

    fn configure(&self, builder: SessionStateBuilder) -> SessionStateBuilder {
        register(builder)
    }
}

/// Installs the GA4 pushdown rule (after DataFusion's own optimizer rules, which first move
/// filters and projections next to the GA4 scans) and the query planner that checks the final
/// plan ([`check`]).
pub fn register(builder: SessionStateBuilder) -> SessionStateBuilder {
    builder
        .with_optimizer_rule(Arc::new(Ga4Pushdown))
        .with_query_planner(Arc::new(Ga4Planner))
}

/// A GA4 query refused before anything is sent: it would give a wrong number (a re-aggregated
/// non-additive metric) or GA4 would reject it (too many dimensions or metrics). The message
/// names the metric or column and the operation, and says what to ask instead. The user's
/// request is at fault (HTTP 400).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Ga4Refusal(pub String);

/// The sampling and thresholding warnings of the GA4 reports an executed plan fetched.
pub fn warnings(plan: &Arc<dyn ExecutionPlan>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let _ = plan.apply(|node| {
        if let Some(exec) = node.downcast_ref::<ReportExec>() {
            for w in exec.warnings() {
                if !out.contains(&w) {
                    out.push(w);
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out
}
