//! Spec → DataFusion logical plan, built with `LogicalPlanBuilder` and `Expr`s: model expressions
//! are parsed by DataFusion's SQL expression parser against the tenant's table schemas, and every
//! filter value becomes a typed literal. No SQL text is ever assembled.
//!
//! The plan, bottom up:
//! 1. **Per source**: scan the source's table, join only the tables the query's members need,
//!    filter (time range, dimension filters, segments), aggregate the base measures grouped by the
//!    time bucket and the dimensions (conformed by name across sources).
//! 2. **Across sources**: union the per-source aggregates and take, per key, each source's value
//!    (`merge_value`: a full outer join on the keys, NULL-safe); then compute ratio measures
//!    (`numerator / NULLIF(denominator, 0)`, as Float64).
//! 3. **Compare**: the same for the comparison range, with its buckets moved forward onto the
//!    current ones after grouping, merged by key (UNION ALL + `merge_value`); adds
//!    `<m>.compare`, `<m>.change` (current − compare) and `<m>.change_pct` (`pct_change`) for
//!    every requested measure.
//! 4. Measure filters (`HAVING`), then analyses, which add columns:
//!    `abc` → `abc_share`, `abc_class`; `quadrant` → `quadrant_x_split`, `quadrant_y_split`,
//!    `quadrant` (+ `quadrant_label`); `share` → `<m>.share` (of the total per time bucket, or of
//!    the whole result without a grain); `runningTotal` → `<m>.running_total` (over time per
//!    dimension values, or down the ranking without a grain). For a measure that does not add
//!    up across rows (distinct counts, averages, ratios, non-additive GA4 metrics) neither is a
//!    window sum: a share's total is the measure computed per bucket by the sources, a running
//!    total the measure over the range up to each bucket (one query per bucket), joined on;
//!    `rank` → `<m>.rank` (largest first,
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

mod analysis;
mod compare;
mod filters;
mod measures;
mod members;
mod output;
mod time;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::TableProvider;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, ident, lit};
use datafusion::prelude::SessionContext;

use self::filters::applies;
use super::{DEFAULT_LIMIT, Spec};
use crate::SqlError;
use crate::model::{Aggregation, MemberRef, SemanticModel, Source};

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

/// The key columns a measures table is grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    /// The time bucket and the dimensions: the answer's rows.
    All,
    /// The time bucket only: a total per bucket.
    Bucket,
    /// The dimensions only: one range without buckets.
    Dimensions,
    /// None: one grand-total row.
    None,
}

impl Keys {
    fn bucket(self) -> bool {
        matches!(self, Keys::All | Keys::Bucket)
    }

    fn dimensions(self) -> bool {
        matches!(self, Keys::All | Keys::Dimensions)
    }
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
        let keys = self.key_columns(Keys::All);
        let range = spec.time.as_ref().and_then(|t| t.range);

        let mut main = self.compared_measures(&plan, range, Keys::All).await?;
        let having: Vec<Expr> = spec
            .filters
            .iter()
            .filter(|f| f.on_measures())
            .map(|f| self.filter_expr(None, f))
            .collect::<Result<_, _>>()?;
        if let Some(predicate) = conjunction(having) {
            main = LogicalPlanBuilder::from(main).filter(predicate)?.build()?;
        }
        main = self.analyses(&plan, range, main).await?;

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
            let totals = self.compared_measures(&plan, range, Keys::None).await?;
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

    /// The key columns `keys` names: the time bucket and/or the dimensions.
    fn key_columns(&self, keys: Keys) -> Vec<String> {
        let spec = self.spec;
        let bucket = spec.time.as_ref().and_then(|t| t.bucket_column());
        let dimensions = spec.dimensions.iter().map(ToString::to_string);
        bucket
            .filter(|_| keys.bucket())
            .into_iter()
            .chain(dimensions.filter(|_| keys.dimensions()))
            .collect()
    }
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
