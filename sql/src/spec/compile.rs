//! Spec → DataFusion logical plan, built with `LogicalPlanBuilder` and `Expr`s: model expressions
//! are parsed by DataFusion's SQL expression parser against the tenant's table schemas, and every
//! filter value becomes a typed literal. No SQL text is ever assembled.
//!
//! The plan, bottom up:
//! 1. **Per source**: scan the source's table, join only the tables the query's members need,
//!    filter (time range, dimension filters, segments), aggregate the base measures grouped by the
//!    time bucket and the dimensions (conformed by name across sources).
//! 2. **Across sources**: union the per-source aggregates and take, per key, each source's value
//!    (a full outer join on the keys, NULL-safe); then compute ratio measures
//!    (`numerator / NULLIF(denominator, 0)`, as Float64).
//! 3. **Compare**: the same for the comparison range, with its buckets moved forward onto the
//!    current ones, merged the same way; adds `<m>.compare`, `<m>.change` (current − compare) and
//!    `<m>.change_pct` (`pct_change`) for every requested measure.
//! 4. Measure filters (`HAVING`), then analyses, which add columns:
//!    `abc` → `abc_share`, `abc_class`; `quadrant` → `quadrant_x_split`, `quadrant_y_split`,
//!    `quadrant` (+ `quadrant_label`); `share` → `<m>.share` (of the total per time bucket, or of
//!    the whole result without a grain); `runningTotal` → `<m>.running_total` (over time per
//!    dimension values, or down the ranking without a grain); `rank` → `<m>.rank` (largest first,
//!    per time bucket); `change` → `<m>.previous`, `<m>.previous_change_pct` (the previous
//!    bucket present in the result for the same dimension values).
//! 5. Order (explicit keys, then default: time ascending, else first measure descending; always
//!    ending with every key column so the order is total), offset, limit (default
//!    [`DEFAULT_LIMIT`]).
//! 6. `total`: a grand-total row over everything the filters, segments and range select (before
//!    `HAVING` and the limit), appended last, marked by the boolean column `is_total`; its key and
//!    analysis columns are NULL.
//!
//! Output columns: `<time dimension>.<grain>` (when there is a grain), the dimensions, the
//! measures, the compare columns, the analysis columns, `is_total` — named by member
//! (`orders.channel`), so a name never clashes with a table column.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Days, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, TimeUnit};
use datafusion::catalog::TableProvider;
use datafusion::common::{Column, DFSchema, ScalarValue, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::execution::session_state::SessionState;
use datafusion::functions::expr_fn::{date_trunc, nullif};
use datafusion::functions_aggregate::average::avg_udaf;
use datafusion::functions_aggregate::expr_fn::{avg, count, count_distinct, max, min, sum};
use datafusion::functions_aggregate::median::median_udaf;
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::functions_window::expr_fn::{lag, rank};
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::utils::{conjunction, disjunction, find_window_exprs};
use datafusion::logical_expr::{
    Expr, ExprFunctionExt, ExprSchemable, JoinType, Like, LogicalPlan, LogicalPlanBuilder,
    SortExpr, WindowFrame, WindowFrameBound, WindowFrameUnits, WindowFunctionDefinition, cast, col,
    ident, lit,
};
use datafusion::prelude::SessionContext;

use super::time::{LocalRange, Shift, TimeValue, to_instant};
use super::{Analysis, Compare, DEFAULT_LIMIT, Filter, MemberFilter, Operator, Spec, Split, Value};
use crate::SqlError;
use crate::functions;
use crate::model::{
    Aggregation, DimensionType, Grain, MemberRef, SemanticModel, Source, ValueSource,
};

/// A compiled spec.
#[derive(Debug)]
pub struct Compiled {
    /// The plan to run (and to key the cache with).
    pub plan: LogicalPlan,
    /// Things the caller should know about the answer.
    pub warnings: Vec<String>,
    /// The limit applied because the spec set none, if any.
    pub default_limit: Option<usize>,
}

/// Compiles `spec` for the tenant whose tables `ctx` serves.
pub async fn compile(
    model: &SemanticModel,
    ctx: &SessionContext,
    spec: &Spec,
) -> Result<Compiled, SqlError> {
    let mut compiler = Compiler {
        model,
        ctx,
        state: ctx.state(),
        spec,
        warnings: Vec::new(),
        resolved: HashMap::new(),
    };
    compiler.run().await
}

/// The marker column of the grand-total row.
pub const TOTAL_COLUMN: &str = "is_total";
const CURRENT_COLUMN: &str = "__current";
const DAY_COLUMN: &str = "__day";

struct Compiler<'a> {
    model: &'a SemanticModel,
    ctx: &'a SessionContext,
    state: SessionState,
    spec: &'a Spec,
    warnings: Vec<String>,
    resolved: HashMap<String, Arc<Resolved<'a>>>,
}

/// A source bound to the tenant's tables: their providers and combined schema.
struct Resolved<'a> {
    source: &'a Source,
    providers: BTreeMap<String, Arc<dyn TableProvider>>,
    missing: Vec<String>,
    schema: DFSchema,
}

/// The measures of a query, worked out once.
struct Plan {
    /// Sources aggregated, by name.
    sources: Vec<String>,
    /// Non-ratio measures each source aggregates.
    base: BTreeMap<String, Vec<MemberRef>>,
    /// Measures computed: the requested ones, then those only measure filters use.
    needed: Vec<MemberRef>,
}

impl<'a> Compiler<'a> {
    async fn run(&mut self) -> Result<Compiled, SqlError> {
        let spec = self.spec;
        let plan = self.measure_plan()?;
        let keys = self.key_columns();
        let range = spec.time.as_ref().and_then(|t| t.range);

        let mut main = self.measures_table(&plan, range, None, true).await?;
        if let (Some(compare), Some(range)) = (spec.compare, range) {
            let shift = shift_of(compare, &range);
            let previous = self
                .measures_table(&plan, Some(range.back(shift)), Some(shift), true)
                .await?;
            main = self.merge_compare(main, previous, &keys, &plan.needed)?;
        }
        let having: Vec<Expr> = spec
            .filters
            .iter()
            .filter(|f| f.on_measures())
            .map(|f| self.filter_expr(None, f))
            .collect::<Result<_, _>>()?;
        if let Some(predicate) = conjunction(having) {
            main = LogicalPlanBuilder::from(main).filter(predicate)?.build()?;
        }
        main = self.analyses(main)?;

        let outputs = self.output_columns(&main);
        let sort = self.sort_exprs(&main, &keys)?;
        let default_limit = spec.limit.is_none().then_some(DEFAULT_LIMIT);
        let limit = spec.limit.unwrap_or(DEFAULT_LIMIT);
        let mut builder = LogicalPlanBuilder::from(main)
            .sort(sort.clone())?
            .limit(spec.offset, Some(limit))?;

        if spec.total {
            let main_plan = builder
                .project(
                    outputs
                        .iter()
                        .map(|c| ident(c.as_str()))
                        .chain([lit(false).alias(TOTAL_COLUMN)]),
                )?
                .build()?;
            let mut totals = self.measures_table(&plan, range, None, false).await?;
            if let (Some(compare), Some(range)) = (spec.compare, range) {
                let shift = shift_of(compare, &range);
                let previous = self
                    .measures_table(&plan, Some(range.back(shift)), Some(shift), false)
                    .await?;
                totals = self.merge_compare(totals, previous, &[], &plan.needed)?;
            }
            let present: BTreeSet<String> = totals
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            let mut projection = Vec::new();
            for name in &outputs {
                let expr = if present.contains(name) {
                    ident(name.as_str())
                } else {
                    typed_null(main_plan.schema(), name)?
                };
                projection.push(expr.alias(name.as_str()));
            }
            projection.push(lit(true).alias(TOTAL_COLUMN));
            let totals = LogicalPlanBuilder::from(totals)
                .project(projection)?
                .build()?;
            let mut final_sort = vec![ident(TOTAL_COLUMN).sort(true, false)];
            final_sort.extend(sort);
            builder = LogicalPlanBuilder::from(main_plan)
                .union(totals)?
                .sort(final_sort)?;
        } else {
            builder = builder.project(outputs.iter().map(|c| ident(c.as_str())))?;
        }
        Ok(Compiled {
            plan: builder.build()?,
            warnings: std::mem::take(&mut self.warnings),
            default_limit,
        })
    }

    /// Works out which sources aggregate which measures, and checks that every dimension,
    /// filter and segment fits them.
    fn measure_plan(&self) -> Result<Plan, SqlError> {
        let spec = self.spec;
        let mut needed = spec.measures.clone();
        for f in spec.filters.iter().filter(|f| f.on_measures()) {
            for m in f.members() {
                if !needed.contains(&m.member) {
                    needed.push(m.member.clone());
                }
            }
        }
        let mut base: BTreeMap<String, Vec<MemberRef>> = BTreeMap::new();
        for m in &needed {
            for b in self.model.base_measures(m) {
                let list = base.entry(b.source.clone()).or_default();
                if !list.contains(&b) {
                    list.push(b);
                }
            }
        }
        let sources: Vec<String> = if base.is_empty() {
            let first = spec
                .dimensions
                .first()
                .or(spec.time.as_ref().map(|t| &t.dimension))
                .map(|m| m.source.clone())
                .ok_or_else(|| {
                    SqlError::bad("measures", "ask for at least one measure or dimension")
                })?;
            vec![first]
        } else {
            base.keys().cloned().collect()
        };
        for name in &sources {
            let source = self.source(name)?;
            for (i, d) in spec.dimensions.iter().enumerate() {
                if !source.dimensions.contains_key(&d.member) {
                    return Err(SqlError::bad(
                        format!("dimensions[{i}]"),
                        format!(
                            "`{d}` cannot be combined with the measures of source `{name}`: it has no dimension `{}`",
                            d.member
                        ),
                    ));
                }
            }
            if let Some(t) = &spec.time
                && !source.dimensions.contains_key(&t.dimension.member)
            {
                return Err(SqlError::bad(
                    "time.dimension",
                    format!(
                        "`{}` cannot be combined with the measures of source `{name}`: it has no dimension `{}`",
                        t.dimension, t.dimension.member
                    ),
                ));
            }
        }
        for (i, f) in spec.filters.iter().enumerate() {
            if !f.on_measures()
                && !sources
                    .iter()
                    .filter_map(|s| self.model.source(s))
                    .any(|s| applies(f, s))
            {
                return Err(SqlError::bad(
                    format!("filters[{i}]"),
                    format!(
                        "this filter applies to none of the sources queried ({}): none has all its dimensions",
                        sources.join(", ")
                    ),
                ));
            }
        }
        for (i, s) in spec.segments.iter().enumerate() {
            if !sources.contains(&s.source) {
                return Err(SqlError::bad(
                    format!("segments[{i}]"),
                    format!(
                        "segment `{s}` belongs to source `{}`, which none of the measures come from",
                        s.source
                    ),
                ));
            }
        }
        Ok(Plan {
            sources,
            base,
            needed,
        })
    }

    fn source(&self, name: &str) -> Result<&'a Source, SqlError> {
        self.model
            .source(name)
            .ok_or_else(|| SqlError::Internal(format!("source `{name}` vanished from the model")))
    }

    /// The key columns: the time bucket and the dimensions.
    fn key_columns(&self) -> Vec<String> {
        let spec = self.spec;
        spec.time
            .as_ref()
            .and_then(|t| t.bucket_column())
            .into_iter()
            .chain(spec.dimensions.iter().map(ToString::to_string))
            .collect()
    }

    async fn resolve(&mut self, name: &str) -> Result<Arc<Resolved<'a>>, SqlError> {
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

    /// Per-source aggregates merged into one table of keys + needed measures.
    async fn measures_table(
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
                if rollable
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

    /// A dimension of the resolved source, by member name, and its type.
    fn dimension(&self, r: &Resolved<'_>, member: &str) -> Result<(Expr, DataType), SqlError> {
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
    fn sql(&self, r: &Resolved<'_>, member: &str, sql: &str) -> Result<Expr, SqlError> {
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
    fn aggregate(&self, r: &Resolved<'_>, m: &MemberRef) -> Result<Expr, SqlError> {
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
            Some(filter) => expr.filter(self.sql(r, &m.member, filter)?).build()?,
            None => expr,
        })
    }

    /// `start <= t < end` on a time dimension, with literals of the column's own type so that
    /// Parquet statistics prune row groups.
    fn range_predicate(
        &mut self,
        expr: Expr,
        data_type: &DataType,
        range: &LocalRange,
        tz: Tz,
        member: &MemberRef,
    ) -> Result<Expr, SqlError> {
        if matches!(data_type, DataType::Date32 | DataType::Date64) && range.sub_day {
            let warning =
                format!("time range rounded to whole days: `{member}` is a date, not a timestamp");
            if !self.warnings.contains(&warning) {
                self.warnings.push(warning);
            }
        }
        let start = time_literal(range.start, false, data_type, tz);
        let end = time_literal(range.end, true, data_type, tz);
        Ok(expr.clone().gt_eq(start).and(expr.lt(end)))
    }

    /// The predicate of a filter tree. `r` is the source for dimension filters; measure filters
    /// (`r` = None) refer to the aggregated measure columns.
    fn filter_expr(&self, r: Option<&Resolved<'_>>, f: &Filter) -> Result<Expr, SqlError> {
        match f {
            Filter::And(fs) => Ok(conjunction(
                fs.iter()
                    .map(|f| self.filter_expr(r, f))
                    .collect::<Result<Vec<_>, _>>()?,
            )
            .unwrap_or_else(|| lit(true))),
            Filter::Or(fs) => Ok(disjunction(
                fs.iter()
                    .map(|f| self.filter_expr(r, f))
                    .collect::<Result<Vec<_>, _>>()?,
            )
            .unwrap_or_else(|| lit(false))),
            Filter::Member(m) => match r {
                Some(r) if !m.on_measure => {
                    let (expr, data_type) = self.dimension(r, &m.member.member)?;
                    let tz = self.spec.time.as_ref().map_or(Tz::UTC, |t| t.timezone);
                    Ok(condition(expr, &data_type, m, tz))
                }
                _ => Ok(condition(
                    ident(m.member.to_string()),
                    &DataType::Float64,
                    m,
                    Tz::UTC,
                )),
            },
        }
    }

    /// Merges the comparison period's measures onto the current rows by key.
    fn merge_compare(
        &self,
        current: LogicalPlan,
        previous: LogicalPlan,
        keys: &[String],
        needed: &[MemberRef],
    ) -> Result<LogicalPlan, SqlError> {
        let requested = &self.spec.measures;
        let types: Vec<(String, DataType)> = needed
            .iter()
            .map(|m| Ok((m.to_string(), field_type(current.schema(), &m.to_string())?)))
            .collect::<Result<_, SqlError>>()?;
        let compare_name = |m: &str| format!("{m}.compare");
        let is_requested = |m: &str| requested.iter().any(|r| r.to_string() == m);
        let side = |is_current: bool| -> Result<Vec<Expr>, SqlError> {
            let mut exprs: Vec<Expr> = keys.iter().map(|k| ident(k.as_str())).collect();
            for (m, t) in &types {
                exprs.push(if is_current {
                    ident(m.as_str())
                } else {
                    lit(ScalarValue::try_from(t)?).alias(m.as_str())
                });
            }
            for (m, t) in types.iter().filter(|(m, _)| is_requested(m)) {
                exprs.push(if is_current {
                    lit(ScalarValue::try_from(t)?).alias(compare_name(m))
                } else {
                    ident(m.as_str()).alias(compare_name(m))
                });
            }
            exprs.push(lit(is_current).alias(CURRENT_COLUMN));
            Ok(exprs)
        };
        let current = LogicalPlanBuilder::from(current)
            .project(side(true)?)?
            .build()?;
        let previous = LogicalPlanBuilder::from(previous)
            .project(side(false)?)?
            .build()?;
        let mut aggregates: Vec<Expr> = types
            .iter()
            .map(|(m, _)| max(ident(m.as_str())).alias(m.as_str()))
            .collect();
        for (m, _) in types.iter().filter(|(m, _)| is_requested(m)) {
            aggregates.push(max(ident(compare_name(m))).alias(compare_name(m)));
        }
        aggregates.push(max(ident(CURRENT_COLUMN)).alias(CURRENT_COLUMN));
        let mut projection: Vec<Expr> = keys.iter().map(|k| ident(k.as_str())).collect();
        for (m, _) in &types {
            projection.push(ident(m.as_str()));
        }
        for (m, _) in types.iter().filter(|(m, _)| is_requested(m)) {
            let (cur, prev) = (ident(m.as_str()), ident(compare_name(m)));
            projection.push(prev.clone());
            projection.push((cur.clone() - prev.clone()).alias(format!("{m}.change")));
            projection.push(
                functions::pct_change_udf()
                    .call(vec![cur, prev])
                    .alias(format!("{m}.change_pct")),
            );
        }
        Ok(LogicalPlanBuilder::from(current)
            .union(previous)?
            .aggregate(keys.iter().map(|k| ident(k.as_str())), aggregates)?
            .filter(ident(CURRENT_COLUMN))?
            .project(projection)?
            .build()?)
    }

    /// Adds the analysis columns.
    fn analyses(&self, plan: LogicalPlan) -> Result<LogicalPlan, SqlError> {
        let spec = self.spec;
        let bucket: Vec<Expr> = spec
            .time
            .as_ref()
            .and_then(|t| t.bucket_column())
            .map(|c| ident(c.as_str()))
            .into_iter()
            .collect();
        let dims: Vec<Expr> = spec
            .dimensions
            .iter()
            .map(|d| ident(d.to_string()))
            .collect();
        let mut plan = plan;
        for analysis in &spec.analyses {
            let mut columns: Vec<(String, Expr)> = Vec::new();
            match analysis {
                Analysis::Abc {
                    measure,
                    a,
                    b,
                    partition_by,
                } => {
                    let parts: Vec<Expr> =
                        partition_by.iter().map(|d| ident(d.to_string())).collect();
                    let value = ident(measure.to_string());
                    columns.push((
                        "abc_share".into(),
                        window(
                            functions::abc_share_udwf(),
                            vec![value.clone()],
                            parts.clone(),
                            vec![],
                            None,
                        )?,
                    ));
                    columns.push((
                        "abc_class".into(),
                        window(
                            functions::abc_class_udwf(),
                            vec![value, lit(*a), lit(*b)],
                            parts,
                            vec![],
                            None,
                        )?,
                    ));
                }
                Analysis::Quadrant {
                    x,
                    y,
                    x_split,
                    y_split,
                    labels,
                } => {
                    let split = |m: &MemberRef, s: &Split| -> Result<Expr, SqlError> {
                        let value = cast(ident(m.to_string()), DataType::Float64);
                        Ok(match s {
                            Split::Mean => window(avg_udaf(), vec![value], vec![], vec![], None)?,
                            Split::Median => {
                                window(median_udaf(), vec![value], vec![], vec![], None)?
                            }
                            Split::Fixed(v) => lit(*v),
                        })
                    };
                    columns.push(("quadrant_x_split".into(), split(x, x_split)?));
                    columns.push(("quadrant_y_split".into(), split(y, y_split)?));
                    plan = add_columns(plan, std::mem::take(&mut columns))?;
                    let args = vec![
                        ident(x.to_string()),
                        ident(y.to_string()),
                        ident("quadrant_x_split"),
                        ident("quadrant_y_split"),
                    ];
                    columns.push((
                        "quadrant".into(),
                        functions::quadrant_udf().call(args.clone()),
                    ));
                    if *labels {
                        columns.push((
                            "quadrant_label".into(),
                            functions::quadrant_label_udf().call(args),
                        ));
                    }
                }
                Analysis::Share { measure } => {
                    let value = cast(ident(measure.to_string()), DataType::Float64);
                    let total = window(
                        sum_udaf(),
                        vec![value.clone()],
                        bucket.clone(),
                        vec![],
                        None,
                    )?;
                    columns.push((format!("{measure}.share"), value / nullif(total, lit(0.0))));
                }
                Analysis::RunningTotal { measure } => {
                    let value = ident(measure.to_string());
                    let (parts, order) = if bucket.is_empty() {
                        let mut order = vec![value.clone().sort(false, false)];
                        order.extend(dims.iter().map(|d| d.clone().sort(true, false)));
                        (vec![], order)
                    } else {
                        (
                            dims.clone(),
                            bucket.iter().map(|b| b.clone().sort(true, false)).collect(),
                        )
                    };
                    let frame = WindowFrame::new_bounds(
                        WindowFrameUnits::Rows,
                        WindowFrameBound::Preceding(ScalarValue::UInt64(None)),
                        WindowFrameBound::CurrentRow,
                    );
                    columns.push((
                        format!("{measure}.running_total"),
                        window(sum_udaf(), vec![value], parts, order, Some(frame))?,
                    ));
                }
                Analysis::Rank { measure } => {
                    let order = vec![ident(measure.to_string()).sort(false, false)];
                    let expr = rank()
                        .partition_by(bucket.clone())
                        .order_by(order)
                        .build()?;
                    columns.push((format!("{measure}.rank"), expr));
                }
                Analysis::Change { measure } => {
                    let value = ident(measure.to_string());
                    let order: Vec<SortExpr> =
                        bucket.iter().map(|b| b.clone().sort(true, false)).collect();
                    let previous = lag(value.clone(), Some(1), None)
                        .partition_by(dims.clone())
                        .order_by(order)
                        .build()?;
                    let name = format!("{measure}.previous");
                    columns.push((name.clone(), previous));
                    plan = add_columns(plan, std::mem::take(&mut columns))?;
                    columns.push((
                        format!("{measure}.previous_change_pct"),
                        functions::pct_change_udf().call(vec![value, ident(name)]),
                    ));
                }
            }
            plan = add_columns(plan, columns)?;
        }
        Ok(plan)
    }

    /// The output columns, in order (the grand-total marker excluded).
    fn output_columns(&self, plan: &LogicalPlan) -> Vec<String> {
        let spec = self.spec;
        let mut out = self.key_columns();
        out.extend(spec.measures.iter().map(ToString::to_string));
        if spec.compare.is_some() {
            for m in &spec.measures {
                for suffix in ["compare", "change", "change_pct"] {
                    out.push(format!("{m}.{suffix}"));
                }
            }
        }
        let known: BTreeSet<&String> = out.iter().collect::<BTreeSet<_>>();
        let measures: BTreeSet<String> = self
            .spec
            .filters
            .iter()
            .flat_map(|f| {
                f.members()
                    .into_iter()
                    .map(|m| m.member.to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        let extra: Vec<String> = plan
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| !known.contains(n) && !measures.contains(n))
            .collect();
        out.extend(extra);
        out
    }

    /// Sort keys: the spec's, then the default, then every key column, so the order is total.
    fn sort_exprs(&self, plan: &LogicalPlan, keys: &[String]) -> Result<Vec<SortExpr>, SqlError> {
        let spec = self.spec;
        let names: Vec<String> = plan
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let mut sort = Vec::new();
        let mut used = BTreeSet::new();
        for o in &spec.order {
            let column = match &spec.time {
                Some(t) if t.dimension.to_string() == o.column && t.grain.is_some() => {
                    t.bucket_column().unwrap_or_default()
                }
                _ => o.column.clone(),
            };
            if !names.contains(&column) || column == CURRENT_COLUMN {
                return Err(SqlError::bad(
                    format!("{}.member", o.field),
                    format!(
                        "cannot order by `{}`: order by one of the result's columns ({})",
                        o.column,
                        names.join(", ")
                    ),
                ));
            }
            if used.insert(column.clone()) {
                sort.push(ident(column.as_str()).sort(!o.descending, false));
            }
        }
        if spec.order.is_empty() {
            if let Some(bucket) = spec.time.as_ref().and_then(|t| t.bucket_column()) {
                used.insert(bucket.clone());
                sort.push(ident(bucket.as_str()).sort(true, false));
            } else if let Some(m) = spec.measures.first() {
                used.insert(m.to_string());
                sort.push(ident(m.to_string()).sort(false, false));
            }
        }
        for k in keys {
            if used.insert(k.clone()) {
                sort.push(ident(k.as_str()).sort(true, false));
            }
        }
        Ok(sort)
    }
}

/// Whether a dimension filter applies to a source: the source has every dimension it names
/// (dimensions are conformed by name).
fn applies(f: &Filter, source: &Source) -> bool {
    f.members()
        .iter()
        .all(|m| source.dimensions.contains_key(&m.member.member))
}

/// How far back the comparison period is.
fn shift_of(compare: Compare, range: &LocalRange) -> Shift {
    match compare {
        Compare::PreviousPeriod => range.period,
        Compare::SamePeriodLastYear => Shift::Months(12),
    }
}

fn interval(shift: Shift) -> ScalarValue {
    let (months, days, nanos) = match shift {
        Shift::Months(m) => (m as i32, 0, 0),
        Shift::Days(d) => (0, d as i32, 0),
        Shift::Nanos(n) => (0, 0, n),
    };
    ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(months, days, nanos)))
}

fn field_type(schema: &DFSchema, name: &str) -> Result<DataType, SqlError> {
    Ok(schema
        .field_with_unqualified_name(name)?
        .data_type()
        .clone())
}

fn typed_null(schema: &DFSchema, name: &str) -> Result<Expr, SqlError> {
    Ok(lit(ScalarValue::try_from(&field_type(schema, name)?)?))
}

/// Adds named columns (which may contain window functions) to a plan.
fn add_columns(plan: LogicalPlan, columns: Vec<(String, Expr)>) -> Result<LogicalPlan, SqlError> {
    if columns.is_empty() {
        return Ok(plan);
    }
    let existing: Vec<Expr> = plan
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
    let windows = find_window_exprs(columns.iter().map(|(_, e)| e));
    let plan = if windows.is_empty() {
        plan
    } else {
        LogicalPlanBuilder::window_plan(plan, windows)?
    };
    let projection = existing
        .into_iter()
        .chain(columns.into_iter().map(|(name, e)| e.alias(name)));
    Ok(LogicalPlanBuilder::from(plan)
        .project(projection)?
        .build()?)
}

/// A window function call.
fn window(
    fun: impl Into<WindowFunctionDefinition>,
    args: Vec<Expr>,
    partition_by: Vec<Expr>,
    order_by: Vec<SortExpr>,
    frame: Option<WindowFrame>,
) -> Result<Expr, SqlError> {
    let mut builder = Expr::from(WindowFunction::new(fun, args)).partition_by(partition_by);
    // An empty ORDER BY must stay absent: DataFusion would pick a RANGE frame that needs one.
    if !order_by.is_empty() {
        builder = builder.order_by(order_by);
    }
    if let Some(frame) = frame {
        builder = builder.window_frame(frame);
    }
    Ok(builder.build()?)
}

/// The time bucket of `expr` at `grain`, computed in `tz`.
fn bucket(
    expr: Expr,
    data_type: &DataType,
    grain: Grain,
    tz: Tz,
    member: &MemberRef,
    source: &Source,
) -> Result<Expr, SqlError> {
    let part = lit(grain.as_str());
    Ok(match data_type {
        DataType::Date32 | DataType::Date64 => match grain {
            Grain::Hour => {
                return Err(SqlError::bad(
                    "time.grain",
                    format!("`{member}` is a date; hour buckets need a timestamp dimension"),
                ));
            }
            Grain::Day => cast(expr, DataType::Date32),
            _ => cast(date_trunc(part, expr), DataType::Date32),
        },
        DataType::Timestamp(unit, Some(_)) => date_trunc(
            part,
            cast(expr, DataType::Timestamp(*unit, Some(tz.name().into()))),
        ),
        DataType::Timestamp(_, None) => date_trunc(part, expr),
        other => {
            return Err(source.error(
                &member.member,
                format!("a time dimension must be a date or timestamp, but it is {other}"),
            ));
        }
    })
}

/// A literal for local time `t` (in `tz`) typed like the column: a date (rounded up to the next
/// whole day when `round_up` and `t` is not midnight), or a timestamp in the column's unit.
fn time_literal(t: NaiveDateTime, round_up: bool, data_type: &DataType, tz: Tz) -> Expr {
    match data_type {
        DataType::Date32 | DataType::Date64 => {
            let mut date = t.date();
            if round_up && t.time() != NaiveTime::MIN {
                date = date + Days::new(1);
            }
            lit(ScalarValue::Date32(Some(days_since_epoch(date))))
        }
        DataType::Timestamp(unit, zone) => {
            let instant = match zone {
                Some(_) => to_instant(t, tz),
                None => t.and_utc(),
            };
            lit(timestamp(instant, *unit, zone.clone()))
        }
        _ => lit(ScalarValue::Null),
    }
}

fn days_since_epoch(date: NaiveDate) -> i32 {
    (date - NaiveDate::default()).num_days() as i32
}

fn timestamp(t: DateTime<Utc>, unit: TimeUnit, zone: Option<Arc<str>>) -> ScalarValue {
    let micros = t.timestamp_micros();
    match unit {
        TimeUnit::Second => ScalarValue::TimestampSecond(Some(t.timestamp()), zone),
        TimeUnit::Millisecond => {
            ScalarValue::TimestampMillisecond(Some(t.timestamp_millis()), zone)
        }
        TimeUnit::Microsecond => ScalarValue::TimestampMicrosecond(Some(micros), zone),
        TimeUnit::Nanosecond => ScalarValue::TimestampNanosecond(
            Some(
                t.timestamp_nanos_opt()
                    .unwrap_or(micros.saturating_mul(1000)),
            ),
            zone,
        ),
    }
}

/// The predicate of one member filter. Time values are whole days or instants (see the module
/// docs of [`super`]); strings match case-insensitively for contains / startsWith / endsWith.
fn condition(expr: Expr, data_type: &DataType, f: &MemberFilter, tz: Tz) -> Expr {
    let negated_or_null = |e: Expr| Expr::Not(Box::new(e)).or(expr.clone().is_null());
    if f.kind == DimensionType::Time && !f.on_measure {
        let bounds: Vec<(Expr, Expr)> = f
            .values
            .iter()
            .filter_map(|v| match v {
                Value::Time(t) => Some(time_bounds(*t, data_type, tz)),
                _ => None,
            })
            .collect();
        let within = |(start, end): &(Expr, Expr)| {
            expr.clone()
                .gt_eq(start.clone())
                .and(expr.clone().lt(end.clone()))
        };
        let any = || disjunction(bounds.iter().map(within)).unwrap_or_else(|| lit(false));
        let first = bounds
            .first()
            .cloned()
            .unwrap_or((lit(ScalarValue::Null), lit(ScalarValue::Null)));
        let last = bounds
            .last()
            .cloned()
            .unwrap_or((lit(ScalarValue::Null), lit(ScalarValue::Null)));
        return match f.operator {
            Operator::Equals | Operator::In => any(),
            Operator::NotEquals | Operator::NotIn => negated_or_null(any()),
            Operator::Gt => expr.gt_eq(first.1),
            Operator::Gte => expr.gt_eq(first.0),
            Operator::Lt => expr.lt(first.0),
            Operator::Lte => expr.lt(first.1),
            Operator::Between => expr.clone().gt_eq(first.0).and(expr.lt(last.1)),
            Operator::Set => expr.is_not_null(),
            Operator::NotSet => expr.is_null(),
            Operator::Contains
            | Operator::NotContains
            | Operator::StartsWith
            | Operator::EndsWith => lit(false),
        };
    }
    let values: Vec<Expr> = f.values.iter().map(literal).collect();
    let first = || {
        values
            .first()
            .cloned()
            .unwrap_or_else(|| lit(ScalarValue::Null))
    };
    let like = |pattern: &dyn Fn(&str) -> String| {
        disjunction(f.values.iter().filter_map(|v| match v {
            Value::Str(s) => Some(Expr::Like(Like::new(
                false,
                Box::new(expr.clone()),
                Box::new(lit(pattern(&escape_like(s)))),
                Some('\\'),
                true,
            ))),
            _ => None,
        }))
        .unwrap_or_else(|| lit(false))
    };
    match f.operator {
        Operator::Equals | Operator::In if values.len() == 1 => expr.eq(first()),
        Operator::Equals | Operator::In => expr.in_list(values, false),
        Operator::NotEquals | Operator::NotIn if values.len() == 1 => {
            expr.clone().not_eq(first()).or(expr.is_null())
        }
        Operator::NotEquals | Operator::NotIn => {
            expr.clone().in_list(values, true).or(expr.is_null())
        }
        Operator::Contains => like(&|s| format!("%{s}%")),
        Operator::NotContains => negated_or_null(like(&|s| format!("%{s}%"))),
        Operator::StartsWith => like(&|s| format!("{s}%")),
        Operator::EndsWith => like(&|s| format!("%{s}")),
        Operator::Gt => expr.gt(first()),
        Operator::Gte => expr.gt_eq(first()),
        Operator::Lt => expr.lt(first()),
        Operator::Lte => expr.lt_eq(first()),
        Operator::Between => {
            let last = values
                .last()
                .cloned()
                .unwrap_or_else(|| lit(ScalarValue::Null));
            expr.clone().gt_eq(first()).and(expr.lt_eq(last))
        }
        Operator::Set => expr.is_not_null(),
        Operator::NotSet => expr.is_null(),
    }
}

/// `[start, end)` literals of a time value on a column of `data_type`.
fn time_bounds(v: TimeValue, data_type: &DataType, tz: Tz) -> (Expr, Expr) {
    let start = v.local_start(tz);
    let end = match (v, data_type) {
        (_, DataType::Date32 | DataType::Date64) => start
            .date()
            .succ_opt()
            .map_or(start, |d| d.and_time(NaiveTime::MIN)),
        _ => v.local_end_exclusive(tz),
    };
    (
        time_literal(start, false, data_type, tz),
        time_literal(end, false, data_type, tz),
    )
}

fn literal(v: &Value) -> Expr {
    match v {
        Value::Str(s) => lit(s.as_str()),
        Value::Int(i) => lit(*i),
        Value::Float(f) => lit(*f),
        Value::Bool(b) => lit(*b),
        Value::Time(_) => lit(ScalarValue::Null),
    }
}

/// Escapes LIKE wildcards so a user's value matches literally.
fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Resolves every member of `source` against the tables of the tenant `ctx` serves: the start-up
/// check that turns a column typo into a model error naming the member. Members that need a
/// joined table this tenant lacks are skipped.
pub async fn check_source(
    model: &SemanticModel,
    ctx: &SessionContext,
    source: &Source,
) -> Result<(), SqlError> {
    let spec = Spec {
        measures: Vec::new(),
        dimensions: Vec::new(),
        time: None,
        filters: Vec::new(),
        segments: Vec::new(),
        analyses: Vec::new(),
        compare: None,
        order: Vec::new(),
        limit: None,
        offset: 0,
        total: false,
    };
    let mut compiler = Compiler {
        model,
        ctx,
        state: ctx.state(),
        spec: &spec,
        warnings: Vec::new(),
        resolved: HashMap::new(),
    };
    let r = compiler.resolve(&source.name).await?;
    let skip_missing = |result: Result<(), SqlError>| match result {
        Err(SqlError::NoData(message)) => {
            tracing::warn!(source = %source.name, %message, "member not checked");
            Ok(())
        }
        other => other,
    };
    for name in source.dimensions.keys() {
        skip_missing(compiler.dimension(&r, name).map(drop))?;
    }
    for (name, measure) in &source.measures {
        if !matches!(measure.aggregation, Aggregation::Ratio { .. }) {
            let m = MemberRef {
                source: source.name.clone(),
                member: name.clone(),
            };
            skip_missing(compiler.aggregate(&r, &m).map(drop))?;
        }
    }
    for (name, segment) in &source.segments {
        skip_missing(compiler.sql(&r, name, &segment.sql).map(drop))?;
    }
    Ok(())
}
