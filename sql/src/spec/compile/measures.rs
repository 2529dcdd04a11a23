//! The measures table: each source's rows joined to the tables the query needs, filtered, and
//! aggregated by the keys (with a cheap per-day roll-up for date columns), then the sources merged
//! on their conformed keys and the ratio measures computed.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::NaiveDateTime;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, ScalarValue, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::functions::expr_fn::nullif;
use datafusion::functions_aggregate::expr_fn::{max, min, sum};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    Expr, JoinType, LogicalPlan, LogicalPlanBuilder, cast, col, ident, lit,
};

use super::compare::merge;
use super::filters::applies;
use super::time::{bucket, days_since_epoch, interval};
use super::{Compiler, DAY_COLUMN, Keys, Plan, field_type};
use crate::SqlError;
use crate::ga4::Ga4Table;
use crate::model::{Aggregation, Grain, MemberRef};
use crate::spec::time::{LocalRange, Shift};

impl<'a> Compiler<'a> {
    /// Per-source aggregates merged into one table of keys + needed measures.
    pub(super) async fn measures_table(
        &mut self,
        plan: &Plan,
        range: Option<LocalRange>,
        shift: Option<Shift>,
        with_keys: Keys,
    ) -> Result<LogicalPlan, SqlError> {
        let keys = self.key_columns(with_keys);
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
            // A full outer join on the keys, NULL matching NULL, done as UNION ALL + GROUP BY: each
            // source contributes one row per key, and `merge_value` takes that source's value
            // (never combining two, so a non-additive GA4 metric passes the plan check), with all
            // sources computed at once.
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
            let mut projected = Vec::new();
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
                projected.push(
                    LogicalPlanBuilder::from(part)
                        .project(projection)?
                        .build()?,
                );
            }
            let union = stack(projected)?
                .ok_or_else(|| SqlError::Internal("no source to aggregate".into()))?;
            LogicalPlanBuilder::from(union)
                .aggregate(
                    keys.iter().map(|k| ident(k.as_str())),
                    all.iter()
                        .map(|(m, _)| merge(ident(m.as_str())).alias(m.as_str())),
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
        keys: Keys,
    ) -> Result<LogicalPlan, SqlError> {
        let spec = self.spec;
        let r = self.resolve(name).await?;
        // GA4 computes each bucket's metric itself (its users are distinct per bucket, not a sum
        // of daily users): no roll-up over a GA4 table, and a grain GA4 has no date dimension
        // for is asked for one bucket at a time.
        let over_ga4 = r.providers.values().any(|p| p.is::<Ga4Table>());
        let grain = spec.time.as_ref().and_then(|t| t.grain);
        if over_ga4 && keys.bucket() && grain == Some(Grain::Quarter) {
            return Box::pin(self.bucket_by_bucket(name, base, range, shift, keys)).await;
        }
        let mut group = Vec::new();
        let mut predicates = Vec::new();
        let mut day_rollup: Option<(Grain, String)> = None;
        let mut bucket_column = None;
        if let Some(t) = &spec.time {
            let (expr, data_type) = self.dimension(&r, &t.dimension.member)?;
            if keys.bucket()
                && let (Some(grain), Some(column)) = (t.grain, t.bucket_column())
            {
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
                if rollable
                    && !over_ga4
                    && matches!(data_type, DataType::Date32 | DataType::Date64)
                    && grain > Grain::Day
                {
                    // Group by the plain date first (a cheap integer key) and bucket the few
                    // resulting days afterwards: `date_trunc` per row is the costly part.
                    day_rollup = Some((grain, column.clone()));
                    group.push(cast(expr.clone(), DataType::Date32).alias(DAY_COLUMN));
                } else {
                    let bucket = bucket(
                        expr.clone(),
                        &data_type,
                        grain,
                        t.timezone,
                        &t.dimension,
                        r.source,
                    )?;
                    group.push(bucket.alias(column.as_str()));
                }
                bucket_column = Some(column);
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
        if keys.dimensions() {
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
        let mut aggregated = builder.aggregate(group, aggregates)?;
        if let Some((grain, column)) = day_rollup {
            // Roll the daily rows up into the grain's buckets: sums and counts add up, minima
            // and maxima of minima and maxima stay what they were.
            let t = spec
                .time
                .as_ref()
                .ok_or_else(|| SqlError::Internal("day roll-up without a time dimension".into()))?;
            let bucket = bucket(
                ident(DAY_COLUMN),
                &DataType::Date32,
                grain,
                t.timezone,
                &t.dimension,
                source,
            )?;
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
            aggregated = aggregated.aggregate(keys, rolled)?;
        }
        // The comparison period's buckets move onto the current ones after grouping, so the
        // grouping itself stays what a source (GA4, Trino) can compute.
        if let (Some(shift), Some(column)) = (shift, bucket_column) {
            let schema = Arc::clone(aggregated.schema());
            let projection = schema.columns().into_iter().map(|c| {
                if c.name == column {
                    (Expr::Column(c) + lit(interval(shift))).alias(column.as_str())
                } else {
                    Expr::Column(c)
                }
            });
            aggregated = aggregated.project(projection)?;
        }
        Ok(aggregated.build()?)
    }

    /// One source's measures for a grain the source cannot group by (a quarter over GA4): the
    /// range cut at bucket boundaries, each part aggregated over its own range as one group, and
    /// the parts, labelled with their bucket, stacked.
    async fn bucket_by_bucket(
        &mut self,
        name: &str,
        base: &[MemberRef],
        range: Option<LocalRange>,
        shift: Option<Shift>,
        keys: Keys,
    ) -> Result<LogicalPlan, SqlError> {
        let t = self
            .spec
            .time
            .as_ref()
            .ok_or_else(|| SqlError::Internal("buckets without a time dimension".into()))?;
        let (Some(grain), Some(column)) = (t.grain, t.bucket_column()) else {
            return Err(SqlError::Internal("buckets without a grain".into()));
        };
        let Some(range) = range else {
            return Err(SqlError::bad(
                "time.range",
                format!(
                    "{grain} buckets over source `{name}` need a time range: GA4 has no {grain} \
                     dimension and its metrics do not add up from finer buckets, so each {grain} \
                     is asked for as a date range of its own"
                ),
            ));
        };
        let inner = if keys.dimensions() {
            Keys::Dimensions
        } else {
            Keys::None
        };
        let mut parts = Vec::new();
        for (label, start, end) in buckets(grain, &range, "time.range")? {
            let part_range = LocalRange {
                start,
                end,
                ..range
            };
            let part =
                Box::pin(self.aggregate_source(name, base, Some(part_range), None, inner)).await?;
            let label = shift.map_or(label, |s| s.forward(label));
            let label = lit(ScalarValue::Date32(Some(days_since_epoch(label.date()))));
            let projection = std::iter::once(label.alias(column.as_str()))
                .chain(part.schema().columns().into_iter().map(Expr::Column));
            parts.push(
                LogicalPlanBuilder::from(part)
                    .project(projection)?
                    .build()?,
            );
        }
        stack(parts)?.ok_or_else(|| {
            SqlError::bad(
                "time.range",
                "the time range is empty: no bucket to ask for",
            )
        })
    }
}

/// `parts` stacked with UNION ALL; `None` when there are none.
pub(super) fn stack(parts: Vec<LogicalPlan>) -> Result<Option<LogicalPlan>, SqlError> {
    let mut parts = parts.into_iter();
    let Some(first) = parts.next() else {
        return Ok(None);
    };
    let mut stacked = LogicalPlanBuilder::from(first);
    for part in parts {
        stacked = stacked.union(part)?;
    }
    Ok(Some(stacked.build()?))
}

/// At most this many queries an answer asked for bucket by bucket sends.
const MAX_BUCKET_QUERIES: usize = 60;

/// The buckets of `grain` that `range` covers: `(bucket, start, end)`, local, the bucket's start
/// and its part of the range. More than [`MAX_BUCKET_QUERIES`] is an error on `field`.
pub(super) fn buckets(
    grain: Grain,
    range: &LocalRange,
    field: &str,
) -> Result<Vec<(NaiveDateTime, NaiveDateTime, NaiveDateTime)>, SqlError> {
    let step = grain.times(1);
    let mut out = Vec::new();
    let mut bucket = grain.floor(range.start);
    while bucket < range.end {
        let next = step.forward(bucket);
        if next <= bucket {
            break;
        }
        if out.len() == MAX_BUCKET_QUERIES {
            return Err(SqlError::bad(
                field,
                format!(
                    "this answer is asked for one {grain} at a time (the measure does not add up \
                     across {grain}s), at most {MAX_BUCKET_QUERIES} {grain}s per answer, and the \
                     range holds more: shorten the range or use a coarser grain"
                ),
            ));
        }
        out.push((bucket, bucket.max(range.start), next.min(range.end)));
        bucket = next;
    }
    Ok(out)
}
