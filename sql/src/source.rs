//! External sources: tables that live outside the warehouse (Trino, GA4) in every tenant's
//! catalog.
//!
//! A source has a schema name (`trino`, `ga4`) and serves, per tenant, a set of tables under it:
//! `SELECT … FROM trino.orders` or `FROM ga4.web`. The tenant wall is the source's job: the table
//! provider handed out for tenant `a` must never return tenant `b`'s rows (Trino: a pushed-down
//! tenant predicate; GA4: only the tenant's configured properties).
//!
//! A source may also extend the session every tenant query runs in ([`ExternalSource::configure`]):
//! optimizer rules that rewrite the part of a plan it can push down, say. Sources are applied in
//! the order of [`crate::EngineConfig::sources`]. Only one query planner can be installed in a
//! session; a source that needs physical planning of its own should prefer a logical rewrite into
//! a table scan of a provider that carries the pushed-down query, so that sources compose.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::TableProvider;
use datafusion::error::Result as DfResult;
use datafusion::execution::session_state::SessionStateBuilder;

/// A source of tables outside the warehouse, served under its own schema in tenant catalogs.
#[async_trait]
pub trait ExternalSource: Debug + Send + Sync {
    /// The schema the source's tables appear under (`trino` → `trino.orders`). A plain lowercase
    /// identifier other than `public` and `information_schema`.
    fn schema_name(&self) -> &str;

    /// The tables `tenant` may query (for `SHOW TABLES`, `information_schema` and pgwire
    /// clients). Cheap: a source discovers its tables ahead of time, not on this call.
    fn table_names(&self, tenant: &str) -> Vec<String>;

    /// The provider of table `name` for `tenant`, or `None` if the tenant has no such table.
    async fn table(&self, tenant: &str, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>>;

    /// Extends the session state tenant queries run in (optimizer rules, functions…). The default
    /// leaves it alone.
    fn configure(&self, builder: SessionStateBuilder) -> SessionStateBuilder {
        builder
    }
}

/// Checks that a source's schema name can be a schema of tenant catalogs.
pub(crate) fn check_schema_name(name: &str) -> Result<(), String> {
    if !crate::catalog::is_table_name(name) {
        return Err(format!(
            "source schema name {name:?} must be a lowercase identifier"
        ));
    }
    if name == crate::catalog::SCHEMA || name == "information_schema" {
        return Err(format!("source schema name {name:?} is reserved"));
    }
    Ok(())
}
