//! Running SQL in Trino for one tenant: the `datafusion-federation` executor, the tenant wall
//! that rewrites every table the SQL names into a tenant-filtered subquery, and the plain scan
//! used when pushdown is off.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use connectors::trino::TrinoClient;
use datafusion::arrow::array::RecordBatchOptions;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::sql::sqlparser::ast::{
    Ident, ObjectNamePart, Statement, TableAlias, TableFactor, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::unparser::dialect::Dialect;
use datafusion_federation::sql::{AstAnalyzer, SQLExecutor};
use futures::TryStreamExt;

use super::dialect::{TrinoDialect, quote_ident, quote_string};

/// How many statements [`Shared::sent`] keeps.
const SENT_KEPT: usize = 256;

/// What every tenant's executor of one source shares: the client, the discovered tables and
/// the log of statements sent.
pub(crate) struct Shared {
    pub client: TrinoClient,
    pub catalog: String,
    pub schema: String,
    pub tenant_column: String,
    /// Table name → its columns as tenants see them (the tenant column left out).
    pub tables: HashMap<String, SchemaRef>,
    pub sent: Mutex<VecDeque<String>>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("endpoint", &self.client.endpoint())
            .field("catalog", &self.catalog)
            .field("schema", &self.schema)
            .field("tables", &self.tables.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Shared {
    /// `SELECT <columns> FROM catalog.schema.table WHERE tenant = '<tenant>'`: the only way a
    /// table is ever read.
    pub fn tenant_select(&self, table: &str, columns: &[&str], tenant: &str) -> String {
        let columns = if columns.is_empty() {
            // Zero columns (e.g. for count(*)): one constant per row.
            "1".to_string()
        } else {
            columns
                .iter()
                .map(|c| quote_ident(c))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "SELECT {columns} FROM {}.{}.{} WHERE {} = {}",
            quote_ident(&self.catalog),
            quote_ident(&self.schema),
            quote_ident(table),
            quote_ident(&self.tenant_column),
            quote_string(tenant)
        )
    }

    fn record(&self, sql: &str) {
        if let Ok(mut sent) = self.sent.lock() {
            if sent.len() == SENT_KEPT {
                sent.pop_front();
            }
            sent.push_back(sql.to_string());
        }
    }

    /// Sends `sql` and streams its rows, each batch cast to `schema` (by position).
    pub fn run(self: &Arc<Self>, sql: String, schema: SchemaRef) -> SendableRecordBatchStream {
        self.record(&sql);
        tracing::debug!(sql = %sql, "sending to Trino");
        let shared = Arc::clone(self);
        let target = Arc::clone(&schema);
        let batches = futures::stream::once(async move { shared.client.query(&sql).await })
            .map_ok(|rows| rows.map_err(external))
            .map_err(external)
            .try_flatten()
            .and_then(move |batch| {
                let target = Arc::clone(&target);
                async move { conform(batch, &target) }
            });
        Box::pin(RecordBatchStreamAdapter::new(schema, batches))
    }
}

fn external(e: connectors::trino::TrinoError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// Casts Trino's columns to the types DataFusion planned with (`decimal(38,2)` sums to the
/// planned decimal, `varchar` to `Utf8View`…), by position.
fn conform(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if schema.fields().is_empty() {
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        return Ok(RecordBatch::try_new_with_options(
            Arc::clone(schema),
            vec![],
            &options,
        )?);
    }
    if batch.num_columns() != schema.fields().len() {
        return Err(DataFusionError::Execution(format!(
            "Trino returned {} columns where {} were expected",
            batch.num_columns(),
            schema.fields().len()
        )));
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(Arc::clone(column))
            } else {
                cast(column, field.data_type()).map_err(|e| {
                    DataFusionError::Execution(format!(
                        "Trino column {:?} of type {} does not convert to {}: {e}",
                        field.name(),
                        column.data_type(),
                        field.data_type()
                    ))
                })
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// The federation executor of one tenant. Its compute context names the tenant, so plans of
/// two tenants never merge, and its AST analyzer applies the tenant wall to the final SQL.
pub(crate) struct TenantExecutor {
    pub shared: Arc<Shared>,
    pub tenant: String,
    pub context: String,
}

#[async_trait]
impl SQLExecutor for TenantExecutor {
    fn name(&self) -> &str {
        "trino"
    }

    fn compute_context(&self) -> Option<String> {
        Some(self.context.clone())
    }

    fn dialect(&self) -> Arc<dyn Dialect> {
        Arc::new(TrinoDialect)
    }

    fn ast_analyzer(&self) -> Option<AstAnalyzer> {
        let shared = Arc::clone(&self.shared);
        let tenant = self.tenant.clone();
        Some(Box::new(move |statement| {
            tenant_wall(&shared, &tenant, statement)
        }))
    }

    fn execute(
        &self,
        query: &str,
        schema: SchemaRef,
        _filters: &[Arc<dyn PhysicalExpr>],
    ) -> Result<SendableRecordBatchStream> {
        Ok(self.shared.run(query.to_string(), schema))
    }

    async fn table_names(&self) -> Result<Vec<String>> {
        Ok(self.shared.tables.keys().cloned().collect())
    }

    async fn get_table_schema(&self, table_name: &str) -> Result<SchemaRef> {
        let name = table_name.rsplit('.').next().unwrap_or(table_name);
        let name = name.trim_matches('"');
        self.shared
            .tables
            .get(name)
            .cloned()
            .ok_or_else(|| DataFusionError::Plan(format!("no Trino table {table_name:?}")))
    }
}

/// Replaces every table the statement reads with `(SELECT <columns> FROM table WHERE
/// tenant = '<tenant>') AS <alias>`, keeping the alias the query refers to it by. A table
/// that is not one of the source's is refused: nothing reaches Trino unfiltered.
pub(crate) fn tenant_wall(
    shared: &Shared,
    tenant: &str,
    mut statement: Statement,
) -> Result<Statement> {
    struct Wall<'a> {
        shared: &'a Shared,
        tenant: &'a str,
    }
    impl VisitorMut for Wall<'_> {
        type Break = DataFusionError;

        fn post_visit_table_factor(
            &mut self,
            factor: &mut TableFactor,
        ) -> ControlFlow<DataFusionError> {
            let TableFactor::Table {
                name, alias, args, ..
            } = factor
            else {
                return ControlFlow::Continue(());
            };
            let parts: Vec<String> = name
                .0
                .iter()
                .filter_map(|p| match p {
                    ObjectNamePart::Identifier(i) => Some(i.value.clone()),
                    _ => None,
                })
                .collect();
            let known = match parts.as_slice() {
                [catalog, schema, table] => {
                    *catalog == self.shared.catalog && *schema == self.shared.schema && {
                        self.shared.tables.contains_key(table)
                    }
                }
                _ => false,
            };
            if !known || args.is_some() || parts.len() != name.0.len() {
                return ControlFlow::Break(DataFusionError::Plan(format!(
                    "refusing to send SQL reading {name} to Trino: not a table of source \
                     {}.{}",
                    self.shared.catalog, self.shared.schema
                )));
            }
            let table = &parts[2];
            let columns: Vec<&str> = self.shared.tables[table]
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            let sql = self.shared.tenant_select(table, &columns, self.tenant);
            let subquery = match Parser::parse_sql(&GenericDialect {}, &sql)
                .map_err(|e| DataFusionError::Plan(format!("tenant subquery: {e}")))
            {
                Ok(mut statements) => match statements.pop() {
                    Some(Statement::Query(q)) => q,
                    _ => {
                        return ControlFlow::Break(DataFusionError::Internal(
                            "tenant subquery is not a query".into(),
                        ));
                    }
                },
                Err(e) => return ControlFlow::Break(e),
            };
            let alias = alias.take().unwrap_or_else(|| TableAlias {
                explicit: true,
                name: Ident::with_quote('"', table.clone()),
                columns: vec![],
                at: None,
            });
            *factor = TableFactor::Derived {
                lateral: false,
                subquery,
                alias: Some(alias),
                sample: None,
            };
            ControlFlow::Continue(())
        }
    }
    match statement.visit(&mut Wall { shared, tenant }) {
        ControlFlow::Continue(()) => Ok(statement),
        ControlFlow::Break(e) => Err(e),
    }
}

/// A Trino table read without pushdown: only the projection and the tenant filter go to
/// Trino; DataFusion does the rest. Used when pushdown is off, and as the fallback scan of the
/// federated provider in sessions without the pushdown rules.
#[derive(Debug)]
pub(crate) struct TrinoScan {
    pub shared: Arc<Shared>,
    pub tenant: String,
    pub table: String,
    pub schema: SchemaRef,
}

#[async_trait]
impl TableProvider for TrinoScan {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => Arc::clone(&self.schema),
        };
        let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let mut sql = self
            .shared
            .tenant_select(&self.table, &columns, &self.tenant);
        if let Some(limit) = limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        let partition = Arc::new(SqlPartition {
            shared: Arc::clone(&self.shared),
            sql,
            schema: Arc::clone(&schema),
        });
        Ok(Arc::new(StreamingTableExec::try_new(
            schema,
            vec![partition],
            None,
            vec![],
            false,
            limit,
        )?))
    }
}

/// One SQL statement as a DataFusion partition.
struct SqlPartition {
    shared: Arc<Shared>,
    sql: String,
    schema: SchemaRef,
}

impl fmt::Debug for SqlPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Trino: {}", self.sql)
    }
}

impl PartitionStream for SqlPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        self.shared.run(self.sql.clone(), Arc::clone(&self.schema))
    }
}
