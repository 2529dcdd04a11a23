//! Trino as an external source: tables of one Trino `catalog.schema` under the `trino` schema
//! of every tenant's catalog, with whole-subplan pushdown.
//!
//! - Tables are discovered once, at [`TrinoSource::connect`], from Trino's
//!   `information_schema.columns`. Every table must have the tenant column (`tenant` unless
//!   configured); tables without it are left out, since they could not be walled.
//! - The tenant wall: whatever SQL goes to Trino for tenant `t` reads each table as
//!   `(SELECT … FROM catalog.schema.table WHERE tenant = 't')`, inserted into the final SQL
//!   text ([`executor`]) below anything the user wrote; tenants never see the tenant column.
//! - Pushdown ([`pushdown`]): joins, aggregates, filters, sorts, limits and window functions
//!   over Trino tables run in Trino, as SQL written by the [`dialect`]; DataFusion post-processes
//!   (Tidemark's analysis functions, joins with local or GA4 data). With
//!   [`TrinoSourceConfig::pushdown`] off, only projections and the tenant filter are pushed.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sql::trino::{TrinoSource, TrinoSourceConfig};
//!
//! let source = TrinoSource::connect(TrinoSourceConfig::new(
//!     "http://127.0.0.1:8080", "tidemark", "memory", "demo",
//! ))
//! .await?;
//! // EngineConfig { sources: vec![std::sync::Arc::new(source)], .. }
//! # Ok(())
//! # }
//! ```

pub mod dashboards;
pub mod dialect;
pub(crate) mod executor;
pub mod pushdown;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use connectors::trino::{Transfer, TrinoClient, TrinoConfig, TrinoError, TrinoType};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::error::Result as DfResult;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::optimizer::Optimizer;
use datafusion_federation::sql::{
    RemoteTable, RemoteTableRef, SQLFederationProvider, SQLTableSource,
};
use datafusion_federation::{FederatedTableProviderAdaptor, FederationOptimizerRule};
use serde::Deserialize;

pub use dialect::TrinoDialect;
use executor::{Shared, TenantExecutor, TrinoScan};
pub use pushdown::{PushedQuery, TrinoPushdown};

use crate::source::ExternalSource;

/// Configuration of a Trino source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrinoSourceConfig {
    /// Coordinator URL (`https://…` when a password is set).
    pub endpoint: String,
    /// The Trino user queries run as.
    pub user: String,
    /// Trino catalog holding the tables.
    pub catalog: String,
    /// Trino schema holding the tables.
    pub schema: String,
    /// Password from the secrets store, resolved by the caller (never in a config file).
    #[serde(skip)]
    pub password: Option<String>,
    /// The column naming each row's tenant, present in every table.
    #[serde(default = "default_tenant_column")]
    pub tenant_column: String,
    /// The schema the tables appear under in tenant catalogs.
    #[serde(default = "default_schema_name")]
    pub schema_name: String,
    /// Whole-subplan pushdown (on by default). Off: Trino only projects and filters by tenant.
    #[serde(default = "default_pushdown")]
    pub pushdown: bool,
}

impl TrinoSourceConfig {
    /// A configuration with the defaults for everything but where the tables are.
    pub fn new(
        endpoint: impl Into<String>,
        user: impl Into<String>,
        catalog: impl Into<String>,
        schema: impl Into<String>,
    ) -> TrinoSourceConfig {
        TrinoSourceConfig {
            endpoint: endpoint.into(),
            user: user.into(),
            catalog: catalog.into(),
            schema: schema.into(),
            password: None,
            tenant_column: default_tenant_column(),
            schema_name: default_schema_name(),
            pushdown: default_pushdown(),
        }
    }
}

fn default_tenant_column() -> String {
    "tenant".into()
}

fn default_schema_name() -> String {
    "trino".into()
}

fn default_pushdown() -> bool {
    true
}

/// The Trino source: discovered tables, one federation provider per tenant.
#[derive(Debug)]
pub struct TrinoSource {
    config: TrinoSourceConfig,
    shared: Arc<Shared>,
    providers: Mutex<HashMap<String, Arc<SQLFederationProvider>>>,
}

impl TrinoSource {
    /// Connects and discovers the tables of `catalog.schema`.
    pub async fn connect(config: TrinoSourceConfig) -> Result<TrinoSource, TrinoError> {
        let mut client_config = TrinoConfig::new(&config.endpoint, &config.user);
        client_config.password = config.password.clone();
        let client = TrinoClient::new(client_config)?;
        let sql = format!(
            "SELECT table_name, column_name, data_type FROM {}.information_schema.columns \
             WHERE table_schema = {} ORDER BY table_name, ordinal_position",
            dialect::quote_ident(&config.catalog),
            dialect::quote_string(&config.schema)
        );
        let (_, batches) = client.query_all(&sql).await?;
        let mut columns: Vec<(String, Vec<Field>, bool)> = Vec::new();
        for batch in &batches {
            let (tables, names, types) = (
                batch.column(0).as_string::<i32>(),
                batch.column(1).as_string::<i32>(),
                batch.column(2).as_string::<i32>(),
            );
            for row in 0..batch.num_rows() {
                let (table, name, ty) = (tables.value(row), names.value(row), types.value(row));
                if columns.last().is_none_or(|(t, _, _)| t != table) {
                    columns.push((table.to_string(), Vec::new(), false));
                }
                let Some(entry) = columns.last_mut() else {
                    continue;
                };
                if name == config.tenant_column {
                    entry.2 = true;
                    continue;
                }
                let t = TrinoType::parse(ty).map_err(|source| TrinoError::Decode {
                    column: format!("{table}.{name}"),
                    trino_type: ty.to_string(),
                    source,
                })?;
                entry.1.push(Field::new(name, t.arrow_type(), true));
            }
        }
        let mut tables = HashMap::new();
        for (table, fields, has_tenant) in columns {
            if !has_tenant {
                tracing::warn!(
                    table,
                    tenant_column = config.tenant_column,
                    "Trino table has no tenant column: not served"
                );
                continue;
            }
            tables.insert(table, Arc::new(Schema::new(fields)) as SchemaRef);
        }
        tracing::info!(
            endpoint = config.endpoint,
            catalog = config.catalog,
            schema = config.schema,
            tables = tables.len(),
            "Trino source connected"
        );
        Ok(TrinoSource {
            shared: Arc::new(Shared {
                client,
                catalog: config.catalog.clone(),
                schema: config.schema.clone(),
                tenant_column: config.tenant_column.clone(),
                tables,
                sent: Mutex::new(VecDeque::new()),
            }),
            config,
            providers: Mutex::new(HashMap::new()),
        })
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &TrinoSourceConfig {
        &self.config
    }

    /// A copy of this source with pushdown switched on or off (same client and tables).
    pub fn with_pushdown(&self, pushdown: bool) -> TrinoSource {
        TrinoSource {
            config: TrinoSourceConfig {
                pushdown,
                ..self.config.clone()
            },
            shared: Arc::clone(&self.shared),
            providers: Mutex::new(HashMap::new()),
        }
    }

    /// The most recent SQL statements sent to Trino (oldest first, at most 256).
    pub fn sent_sql(&self) -> Vec<String> {
        self.shared
            .sent
            .lock()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Rows and bytes received from Trino so far.
    pub fn transfer(&self) -> Transfer {
        self.shared.client.transfer()
    }

    /// The Trino client (e.g. to run SQL directly, for comparisons).
    pub fn client(&self) -> &TrinoClient {
        &self.shared.client
    }

    fn provider(&self, tenant: &str) -> Arc<SQLFederationProvider> {
        let mut providers = match self.providers.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        Arc::clone(providers.entry(tenant.to_string()).or_insert_with(|| {
            let executor = TenantExecutor {
                shared: Arc::clone(&self.shared),
                tenant: tenant.to_string(),
                context: format!(
                    "{}/{}/{}?tenant={tenant}",
                    self.config.endpoint, self.config.catalog, self.config.schema
                ),
            };
            Arc::new(SQLFederationProvider::new(Arc::new(executor)))
        }))
    }

    /// Adds the federation rule and [`TrinoPushdown`] to `builder`'s optimizer, right after
    /// scalar subqueries become joins (as `datafusion-federation` places its rule).
    pub fn add_pushdown_rules(builder: SessionStateBuilder) -> SessionStateBuilder {
        let mut builder = builder;
        let mut rules = builder.optimizer().take().unwrap_or_default().rules;
        if !rules.iter().any(|r| r.name() == pushdown::RULE_NAME) {
            let federation = FederationOptimizerRule::new();
            let at = match rules.iter().position(|r| r.name() == federation.name()) {
                Some(existing) => existing + 1,
                None => {
                    let at = rules
                        .iter()
                        .position(|r| r.name() == "scalar_subquery_to_join")
                        .map_or(rules.len(), |p| p + 1);
                    rules.insert(at, Arc::new(federation));
                    at + 1
                }
            };
            rules.insert(at, Arc::new(TrinoPushdown));
        }
        *builder.optimizer() = Some(Optimizer::with_rules(rules));
        builder
    }
}

use datafusion::optimizer::OptimizerRule as _;

#[async_trait]
impl ExternalSource for TrinoSource {
    fn schema_name(&self) -> &str {
        &self.config.schema_name
    }

    fn table_names(&self, _tenant: &str) -> Vec<String> {
        let mut names: Vec<String> = self.shared.tables.keys().cloned().collect();
        names.sort();
        names
    }

    async fn table(&self, tenant: &str, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some(schema) = self.shared.tables.get(name) else {
            return Ok(None);
        };
        let scan = Arc::new(TrinoScan {
            shared: Arc::clone(&self.shared),
            tenant: tenant.to_string(),
            table: name.to_string(),
            schema: Arc::clone(schema),
        });
        if !self.config.pushdown {
            return Ok(Some(scan));
        }
        let remote = RemoteTableRef::from(TableReference::full(
            self.config.catalog.as_str(),
            self.config.schema.as_str(),
            name,
        ));
        let table = Arc::new(RemoteTable::new(remote, Arc::clone(schema)));
        let source = Arc::new(SQLTableSource::new_with_table(self.provider(tenant), table));
        Ok(Some(Arc::new(
            FederatedTableProviderAdaptor::new_with_provider(source, scan),
        )))
    }

    fn configure(&self, builder: SessionStateBuilder) -> SessionStateBuilder {
        if self.config.pushdown {
            TrinoSource::add_pushdown_rules(builder)
        } else {
            builder
        }
    }
}
