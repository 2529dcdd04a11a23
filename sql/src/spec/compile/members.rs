//! Binding the model's members to one tenant's tables: each source's table providers and their
//! combined schema, and the expressions of its dimensions, SQL snippets and base measures parsed
//! against that schema (so a column typo is an error naming the member).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, DFSchema, TableReference};
use datafusion::functions_aggregate::expr_fn::{avg, count, count_distinct, max, min, sum};
use datafusion::logical_expr::{Expr, ExprFunctionExt, ExprSchemable, lit};

use super::{Compiler, Resolved};
use crate::SqlError;
use crate::model::{Aggregation, DimensionType, MemberRef, ValueSource};

impl<'a> Compiler<'a> {
    pub(super) async fn resolve(&mut self, name: &str) -> Result<Arc<Resolved<'a>>, SqlError> {
        if let Some(r) = self.resolved.get(name) {
            return Ok(Arc::clone(r));
        }
        let source = self.source(name)?;
        let mut providers = BTreeMap::new();
        let mut missing = Vec::new();
        let mut schema: Option<DFSchema> = None;
        for table in source.tables() {
            match self.ctx.table_provider(table).await {
                Ok(provider) => {
                    let s = DFSchema::try_from_qualified_schema(table, &provider.schema())?;
                    schema = Some(match schema {
                        None => s,
                        Some(acc) => acc.join(&s)?,
                    });
                    providers.insert(table.to_string(), provider);
                }
                Err(_) if table != source.table => missing.push(table.to_string()),
                Err(_) => {
                    return Err(SqlError::NoData(format!(
                        "no data for table `{table}` (source `{name}`) for this tenant"
                    )));
                }
            }
        }
        let resolved = Arc::new(Resolved {
            source,
            providers,
            missing,
            schema: schema.unwrap_or_else(DFSchema::empty),
        });
        self.resolved
            .insert(name.to_string(), Arc::clone(&resolved));
        Ok(resolved)
    }

    /// A dimension of the resolved source, by member name, and its type.
    pub(super) fn dimension(
        &self,
        r: &Resolved<'_>,
        member: &str,
    ) -> Result<(Expr, DataType), SqlError> {
        let dim = r.source.dimensions.get(member).ok_or_else(|| {
            SqlError::Internal(format!("dimension `{}.{member}` vanished", r.source.name))
        })?;
        let expr = self.value(r, member, &dim.value)?;
        let data_type = expr
            .get_type(&r.schema)
            .map_err(|e| r.source.error(member, e.message().to_string()))?;
        if dim.kind == DimensionType::Time
            && !matches!(
                data_type,
                DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)
            )
        {
            return Err(r.source.error(
                member,
                format!("a time dimension must be a date or timestamp, but it is {data_type}"),
            ));
        }
        Ok((expr, data_type))
    }

    /// A member's value expression.
    fn value(&self, r: &Resolved<'_>, member: &str, value: &ValueSource) -> Result<Expr, SqlError> {
        match value {
            ValueSource::Column(table, column) => {
                if r.missing.contains(table) {
                    return Err(SqlError::NoData(format!(
                        "no data for table `{table}` (needed by `{}.{member}`) for this tenant",
                        r.source.name
                    )));
                }
                let c = Column::new(Some(TableReference::from(table.as_str())), column);
                if !r.schema.has_column(&c) {
                    return Err(r
                        .source
                        .error(member, format!("table `{table}` has no column `{column}`")));
                }
                Ok(Expr::Column(c))
            }
            ValueSource::Sql(sql) => self.sql(r, member, sql),
        }
    }

    /// A SQL expression of the model, parsed against the source's tables.
    pub(super) fn sql(&self, r: &Resolved<'_>, member: &str, sql: &str) -> Result<Expr, SqlError> {
        self.state.create_logical_expr(sql, &r.schema).map_err(|e| {
            if r.missing.is_empty() {
                r.source.error(member, format!("sql `{sql}`: {}", e.message()))
            } else {
                SqlError::NoData(format!(
                    "`{}.{member}` cannot be computed: no data for table(s) {} for this tenant ({})",
                    r.source.name,
                    r.missing.join(", "),
                    e.message()
                ))
            }
        })
    }

    /// A base measure's aggregate expression.
    pub(super) fn aggregate(&self, r: &Resolved<'_>, m: &MemberRef) -> Result<Expr, SqlError> {
        let measure =
            r.source.measures.get(&m.member).ok_or_else(|| {
                SqlError::Internal(format!("measure `{m}` vanished from the model"))
            })?;
        let value = measure
            .value
            .as_ref()
            .map(|v| self.value(r, &m.member, v))
            .transpose()?;
        let needs_value = || {
            value.clone().ok_or_else(|| {
                r.source
                    .error(&m.member, "this measure needs a column or sql")
            })
        };
        let expr = match &measure.aggregation {
            Aggregation::Sum => sum(needs_value()?),
            Aggregation::Count => count(value.clone().unwrap_or_else(|| lit(1i64))),
            Aggregation::CountDistinct => count_distinct(needs_value()?),
            Aggregation::Avg => avg(needs_value()?),
            Aggregation::Min => min(needs_value()?),
            Aggregation::Max => max(needs_value()?),
            Aggregation::Ratio { .. } => {
                return Err(SqlError::Internal(format!(
                    "ratio `{m}` reached aggregation"
                )));
            }
        };
        Ok(match &measure.filter {
            Some(filter) => {
                // The builder sets every parameter it holds: DISTINCT must be said again or a
                // filtered distinct count would count every row.
                let builder = expr.filter(self.sql(r, &m.member, filter)?);
                if matches!(measure.aggregation, Aggregation::CountDistinct) {
                    builder.distinct().build()?
                } else {
                    builder.build()?
                }
            }
            None => expr,
        })
    }
}
