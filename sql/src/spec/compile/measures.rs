//! The measures table: each source's rows joined to the tables the query needs, filtered, and
//! aggregated by the keys (with a cheap per-day roll-up for date columns), then the sources merged
//! on their conformed keys and the ratio measures computed.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, ScalarValue, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::functions::expr_fn::nullif;
use datafusion::functions_aggregate::expr_fn::{max, min, sum};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    Expr, JoinType, LogicalPlan, LogicalPlanBuilder, cast, col, ident, lit,
};

use super::filters::applies;
use super::time::{bucket, interval};
use super::{Compiler, DAY_COLUMN, Plan, field_type};
use crate::SqlError;
use crate::model::{Aggregation, Grain, MemberRef};
use crate::spec::time::{LocalRange, Shift};

impl<'a> Compiler<'a> {
    /// Per-source aggregates merged into one table of keys + needed measures.
    pub(super) async fn measures_table(
        &mut self,
        plan: &Plan,
        range: Option<LocalRange>,
        shift: Option<Shift>,
        with_keys: bool,
    ) -> Result<LogicalPlan, SqlError> {
        let keys = if with_keys {
            self.key_columns()
        } else {
            Vec::new()
        };
        let mut parts = Vec::new();
        for name in &plan.sources {
            let base = plan.base.get(name).cloned().unwrap_or_default();
            let part = self
                .aggregate_source(name, &base, range, shift, with_keys)
                .await?;
            parts.push((base, part));
        }
        let combined = if parts.len() == 1 {
            parts.remove(0).1
        } else {
            // A full outer join on the keys, NULL-safe, done as UNION ALL + GROUP BY: each source
            // contributes one row per key, so `max` picks that source's value.
            let key_types: Vec<DataType> = keys
                .iter()
                .map(|k| field_type(parts[0].1.schema(), k))
                .collect::<Result<_, _>>()?;
            let mut all = Vec::new();
            for (base, part) in &parts {
                for m in base {
                    all.push((m.to_string(), field_type(part.schema(), &m.to_string())?));
                }
            }
            let mut union: Option<LogicalPlanBuilder> = None;
            for (base, part) in parts {
                let names: BTreeSet<String> = base.iter().map(ToString::to_string).collect();
                let mut projection: Vec<Expr> = keys
                    .iter()
                    .zip(&key_types)
                    .map(|(k, t)| cast(ident(k.as_str()), t.clone()).alias(k.as_str()))
                    .collect();
                for (m, t) in &all {
                    projection.push(if names.contains(m) {
                        ident(m.as_str())
                    } else {
                        lit(ScalarValue::try_from(t)?).alias(m.as_str())
                    });
                }
                let projected = LogicalPlanBuilder::from(part)
                    .project(projection)?
                    .build()?;
                union = Some(match union {
                    None => LogicalPlanBuilder::from(projected),
                    Some(u) => u.union(projected)?,
                });
            }
            let union = union.ok_or_else(|| SqlError::Internal("no source to aggregate".into()))?;
            union
                .aggregate(
                    keys.iter().map(|k| ident(k.as_str())),
                    all.iter()
                        .map(|(m, _)| max(ident(m.as_str())).alias(m.as_str())),
                )?
                .build()?
        };
        let projection: Vec<Expr> = keys
            .iter()
            .map(|k| ident(k.as_str()))
            .chain(
                plan.needed
                    .iter()
                    .map(|m| self.measure_value(m).alias(m.to_string())),
            )
            .collect();
        Ok(LogicalPlanBuilder::from(combined)
            .project(projection)?
            .build()?)
    }

    /// A measure computed from the merged base-measure columns.
    fn measure_value(&self, m: &MemberRef) -> Expr {
        match self.model.measure(m).map(|(_, m)| &m.aggregation) {
            Some(Aggregation::Ratio {
                numerator,
                denominator,
            }) => {
                cast(self.measure_value(numerator), DataType::Float64)
                    / nullif(
                        cast(self.measure_value(denominator), DataType::Float64),
                        lit(0.0),
                    )
            }
            _ => ident(m.to_string()),
        }
    }

    /// One source's rows, filtered and aggregated by the keys.
    async fn aggregate_source(
        &mut self,
        name: &str,
        base: &[MemberRef],
        range: Option<LocalRange>,
        shift: Option<Shift>,
        with_keys: bool,
    ) -> Result<LogicalPlan, SqlError> {
        let spec = self.spec;
        let r = self.resolve(name).await?;
        let mut group = Vec::new();
        let mut predicates = Vec::new();
        let mut day_rollup: Option<(Grain, String)> = None;
        if let Some(t) = &spec.time {
            let (expr, data_type) = self.dimension(&r, &t.dimension.member)?;
            if with_keys && let (Some(grain), Some(column)) = (t.grain, t.bucket_column()) {
                let rollable = base.iter().all(|m| {
                    self.model.measure(m).is_some_and(|(_, m)| {
                        matches!(
                            m.aggregation,
                            Aggregation::Sum
                                | Aggregation::Count
                                | Aggregation::Min
                                | Aggregation::Max
                        )
                    })
                });
                // GA4 computes each bucket's metric itself (its users are distinct per bucket,
                // not a sum of daily users): no roll-up over a GA4 table.
                let over_ga4 = r.providers.values().any(|p| p.is::<crate::ga4::Ga4Table>());
                if rollable
                    && !over_ga4
                    && matches!(data_type, DataType::Date32 | DataType::Date64)
                    && grain > Grain::Day
                {
                    // Group by the plain date first (a cheap integer key) and bucket the few
                    // resulting days afterwards: `date_trunc` per row is the costly part.
                    day_rollup = Some((grain, column));
                    group.push(cast(expr.clone(), DataType::Date32).alias(DAY_COLUMN));
                } else {
                    let mut bucket = bucket(
                        expr.clone(),
                        &data_type,
                        grain,
                        t.timezone,
                        &t.dimension,
                        r.source,
                    )?;
                    if let Some(shift) = shift {
                        bucket = bucket + lit(interval(shift));
                    }
                    group.push(bucket.alias(column));
                }
            }
            if let Some(range) = range {
                predicates.push(self.range_predicate(
                    expr,
                    &data_type,
                    &range,
                    t.timezone,
                    &t.dimension,
                )?);
            }
        }
        if with_keys {
            for d in &spec.dimensions {
                group.push(self.dimension(&r, &d.member)?.0.alias(d.to_string()));
            }
        }
        for f in spec.filters.iter().filter(|f| !f.on_measures()) {
            if applies(f, r.source) {
                predicates.push(self.filter_expr(Some(&r), f)?);
            }
        }
        for s in spec.segments.iter().filter(|s| s.source == name) {
            let segment = r.source.segments.get(&s.member).ok_or_else(|| {
                SqlError::Internal(format!("segment `{s}` vanished from the model"))
            })?;
            predicates.push(self.sql(&r, &s.member, &segment.sql)?);
        }
        let mut aggregates = Vec::new();
        for m in base {
            aggregates.push(self.aggregate(&r, m)?.alias(m.to_string()));
        }

        let mut tables = BTreeSet::new();
        for e in group.iter().chain(&predicates).chain(&aggregates) {
            for c in e.column_refs() {
                if let Some(t) = &c.relation {
                    tables.insert(t.to_string());
                }
            }
        }
        let source = r.source;
        let scan = |table: &str| -> Result<LogicalPlanBuilder, SqlError> {
            let provider = r.providers.get(table).ok_or_else(|| {
                SqlError::NoData(format!(
                    "no data for table `{table}` (joined by source `{}`) for this tenant",
                    source.name
                ))
            })?;
            Ok(LogicalPlanBuilder::scan(
                TableReference::from(table),
                provider_as_source(Arc::clone(provider)),
                None,
            )?)
        };
        let mut builder = scan(&source.table)?;
        // Inner joins first: they can only shrink the rows the left joins then widen.
        let mut joins: Vec<_> = source
            .joins
            .iter()
            .filter(|j| tables.contains(&j.table))
            .collect();
        joins.sort_by_key(|j| !j.inner);
        for join in joins {
            let right = scan(&join.table)?.build()?;
            let on = join.on.iter().map(|c| {
                col(Column::new(
                    Some(TableReference::from(source.table.as_str())),
                    c,
                ))
                .eq(col(Column::new(
                    Some(TableReference::from(join.table.as_str())),
                    c,
                )))
            });
            let kind = if join.inner {
                JoinType::Inner
            } else {
                JoinType::Left
            };
            builder = builder.join_on(right, kind, on)?;
        }
        if let Some(predicate) = conjunction(predicates) {
            builder = builder.filter(predicate)?;
        }
        let daily = builder.aggregate(group, aggregates)?;
        let Some((grain, column)) = day_rollup else {
            return Ok(daily.build()?);
        };
        // Roll the daily rows up into the grain's buckets: sums and counts add up, minima and
        // maxima of minima and maxima stay what they were.
        let t = spec
            .time
            .as_ref()
            .ok_or_else(|| SqlError::Internal("day roll-up without a time dimension".into()))?;
        let mut bucket = bucket(
            ident(DAY_COLUMN),
            &DataType::Date32,
            grain,
            t.timezone,
            &t.dimension,
            source,
        )?;
        if let Some(shift) = shift {
            bucket = bucket + lit(interval(shift));
        }
        let keys = std::iter::once(bucket.alias(column))
            .chain(spec.dimensions.iter().map(|d| ident(d.to_string())));
        let mut rolled = Vec::new();
        for m in base {
            let name = m.to_string();
            let value = ident(name.as_str());
            let expr = match self.model.measure(m).map(|(_, m)| &m.aggregation) {
                Some(Aggregation::Min) => min(value),
                Some(Aggregation::Max) => max(value),
                _ => sum(value),
            };
            rolled.push(expr.alias(name));
        }
        Ok(daily.aggregate(keys, rolled)?.build()?)
    }
}
