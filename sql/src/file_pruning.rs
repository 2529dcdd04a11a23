//! [`FileStatisticsPruning`]: a physical optimizer rule that puts the per-file statistics a
//! Parquet listing collects (each column's min, max and null count) to work at planning, for a
//! filter directly above a file scan:
//!
//! - files the statistics show cannot hold a row the filter keeps leave the scan. DataFusion
//!   would open each and prune it when the query runs, after the listing had spread the files
//!   over the partitions by name, so a quarter's three monthly files could all land in one
//!   partition while the other opened nine files to read nothing;
//! - conjuncts of the filter that the statistics prove true for every row of every remaining
//!   file leave the filter (and the filter goes when none is left). A dashboard's time range
//!   mostly covers whole monthly files, and each row was compared against it anyway.
//!
//! Sound only for the files the statistics were read from. The listing reads them per file path,
//! size and modification time, and a plan is kept for re-use only under the freshness of its
//! files (see [`crate::cache`]), so a changed file is planned anew.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::Result as DfResult;
use datafusion::common::Statistics;
use datafusion::common::config::ConfigOptions;
use datafusion::common::pruning::PrunableStatistics;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig, FileScanConfigBuilder};
use datafusion::datasource::source::{DataSource, DataSourceExec};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, IsNullExpr, NotExpr};
use datafusion::physical_expr::projection::ProjectionExprs;
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_expr::{
    PhysicalExpr, PhysicalExprSimplifier, conjunction, split_conjunction,
};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion_datasource::compute_all_files_statistics;

/// The rule; see the module documentation. It runs before the distribution is enforced, so the
/// remaining files are spread over the partitions (and split by byte range) as if the pruned ones
/// had never been listed.
#[derive(Debug, Default)]
pub struct FileStatisticsPruning;

impl FileStatisticsPruning {
    /// The name of the default rule this one runs before.
    pub const BEFORE: &'static str = "EnsureRequirements";

    /// DataFusion's default physical optimizer rules with this one before [`Self::BEFORE`].
    pub fn with_default_rules() -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
        let mut rules = datafusion::physical_optimizer::optimizer::PhysicalOptimizer::new().rules;
        let at = rules
            .iter()
            .position(|rule| rule.name() == Self::BEFORE)
            .unwrap_or(0);
        rules.insert(at, Arc::new(Self));
        rules
    }
}

impl PhysicalOptimizerRule for FileStatisticsPruning {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let partitions = config.execution.target_partitions.max(1);
        plan.transform_up(|node| prune_filtered_scan(node, partitions))
            .data()
    }

    fn name(&self) -> &str {
        "FileStatisticsPruning"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Rewrites `node` if it is a filter over a file scan whose files all carry statistics.
fn prune_filtered_scan(
    node: Arc<dyn ExecutionPlan>,
    partitions: usize,
) -> DfResult<Transformed<Arc<dyn ExecutionPlan>>> {
    let Some(filter) = node.downcast_ref::<FilterExec>() else {
        return Ok(Transformed::no(node));
    };
    let Some(scan) = filter.input().downcast_ref::<DataSourceExec>() else {
        return Ok(Transformed::no(node));
    };
    let Some(config) = scan.data_source().downcast_ref::<FileScanConfig>() else {
        return Ok(Transformed::no(node));
    };
    let Some(statistics) = file_statistics(config) else {
        return Ok(Transformed::no(node));
    };
    let table_schema = Arc::clone(config.file_source().table_schema().table_schema());
    // The filter reads the scan's output; the statistics describe the table's columns.
    let on_table = |expr: &Arc<dyn PhysicalExpr>| match config.file_source().projection() {
        Some(projection) => projection.unproject_expr(expr),
        None => Ok(Arc::clone(expr)),
    };
    let Ok(predicate) = on_table(filter.predicate()) else {
        return Ok(Transformed::no(node));
    };

    let keep = may_match(&predicate, &table_schema, &statistics);
    let kept: Vec<Arc<Statistics>> = statistics
        .iter()
        .zip(&keep)
        .filter(|(_, keep)| **keep)
        .map(|(stats, _)| Arc::clone(stats))
        .collect();
    if kept.is_empty() {
        // Nothing can match: leave the plan as it was (the scan prunes every file when it runs,
        // and a scan keeps at least one partition).
        return Ok(Transformed::no(node));
    }
    let conjuncts = split_conjunction(filter.predicate());
    let remaining: Vec<Arc<dyn PhysicalExpr>> = conjuncts
        .iter()
        .filter(|conjunct| {
            !on_table(conjunct).is_ok_and(|expr| holds_for_every_row(&expr, &table_schema, &kept))
        })
        .map(|conjunct| Arc::clone(conjunct))
        .collect();
    let pruned_files = kept.len() < statistics.len();
    if !pruned_files && remaining.len() == conjuncts.len() {
        return Ok(Transformed::no(node));
    }

    let input = if pruned_files {
        DataSourceExec::from_data_source(without_files(config, &keep, partitions)?)
            as Arc<dyn ExecutionPlan>
    } else {
        Arc::clone(filter.input())
    };
    // With nothing left to check the filter goes, leaving its projection; with a row limit it
    // stays (on the literal `true`) to count rows.
    let rewritten: Arc<dyn ExecutionPlan> = if remaining.is_empty() && filter.fetch().is_none() {
        match filter.projection() {
            Some(columns) => {
                let projection = ProjectionExprs::from_indices(columns, &input.schema());
                Arc::new(ProjectionExec::try_new(projection.iter().cloned(), input)?)
            }
            None => input,
        }
    } else {
        Arc::new(
            FilterExecBuilder::from(filter)
                .with_input(input)
                .with_predicate(conjunction(remaining))
                .build()?,
        )
    };
    Ok(Transformed::yes(rewritten))
}

/// Every file's statistics, in file-group order, or `None` if any file has none (statistics
/// collection off, or a format that has none).
fn file_statistics(config: &FileScanConfig) -> Option<Vec<Arc<Statistics>>> {
    config
        .file_groups
        .iter()
        .flat_map(FileGroup::iter)
        .map(|file| file.statistics.clone())
        .collect()
}

/// For each set of statistics: whether a row it describes may pass `predicate` (`true` when
/// the statistics cannot tell).
fn may_match(
    predicate: &Arc<dyn PhysicalExpr>,
    schema: &SchemaRef,
    statistics: &[Arc<Statistics>],
) -> Vec<bool> {
    let containers = PrunableStatistics::new(statistics.to_vec(), Arc::clone(schema));
    PruningPredicateBuilder::new()
        .with_file_schema(Arc::clone(schema))
        .try_build(Arc::clone(predicate))
        .and_then(|pruning| pruning.prune(&containers))
        .unwrap_or_else(|_| vec![true; statistics.len()])
}

/// Whether the statistics prove `predicate` true for every row they describe: no row can fail
/// it (its negation matches nothing) and no column it reads holds a NULL (a NULL makes a
/// comparison NULL, and the filter drops that row). Never for a predicate on a floating-point
/// column: its statistics leave NaN out of the maximum, while a comparison sorts NaN above
/// every number.
fn holds_for_every_row(
    predicate: &Arc<dyn PhysicalExpr>,
    schema: &SchemaRef,
    statistics: &[Arc<Statistics>],
) -> bool {
    let mut columns: Vec<_> = collect_columns(predicate).into_iter().collect();
    let floating = columns.iter().any(|column| {
        schema
            .fields()
            .get(column.index())
            .is_none_or(|field| match field.data_type() {
                DataType::Dictionary(_, values) => values.is_floating(),
                other => other.is_floating(),
            })
    });
    if floating {
        return false;
    }
    columns.sort_by_key(|column| column.index());
    let mut fails: Arc<dyn PhysicalExpr> = Arc::new(NotExpr::new(Arc::clone(predicate)));
    for column in columns {
        fails = Arc::new(BinaryExpr::new(
            fails,
            Operator::Or,
            Arc::new(IsNullExpr::new(Arc::new(column))),
        ));
    }
    let Ok(fails) = PhysicalExprSimplifier::new(schema.as_ref()).simplify(fails) else {
        return false;
    };
    !may_match(&fails, schema, statistics).contains(&true)
}

/// `config` without the files `keep` marks `false`, spread over `partitions` groups by size
/// when the scan's groups carry no order or partitioning of their own (then the byte-range
/// split that follows balances them finer); otherwise each group keeps its remaining files.
fn without_files(
    config: &FileScanConfig,
    keep: &[bool],
    partitions: usize,
) -> DfResult<FileScanConfig> {
    let mut keep = keep.iter().copied();
    let groups: Vec<Vec<PartitionedFile>> = config
        .file_groups
        .iter()
        .map(|group| {
            group
                .iter()
                .filter(|_| keep.next().unwrap_or(true))
                .cloned()
                .collect()
        })
        .collect();
    let ordered = config.preserve_order
        || !config.output_ordering.is_empty()
        || !matches!(
            config.output_partitioning(),
            datafusion::physical_plan::Partitioning::UnknownPartitioning(_)
        );
    let groups = if ordered {
        groups
    } else {
        balance(groups.into_iter().flatten().collect(), partitions)
    };
    let (groups, statistics) = compute_all_files_statistics(
        groups.into_iter().map(FileGroup::new).collect(),
        Arc::clone(config.file_source().table_schema().table_schema()),
        true,
        false,
    )?;
    Ok(FileScanConfigBuilder::from(config.clone())
        .with_file_groups(groups)
        .with_statistics(statistics)
        .build())
}

/// `files` in up to `partitions` groups of about equal size: largest first, each into the
/// group holding the fewest bytes so far.
fn balance(mut files: Vec<PartitionedFile>, partitions: usize) -> Vec<Vec<PartitionedFile>> {
    files.sort_by_key(|file| std::cmp::Reverse(file.effective_size()));
    let mut groups: Vec<(u64, Vec<PartitionedFile>)> = Vec::new();
    for file in files {
        let size = file.effective_size();
        if groups.len() < partitions {
            groups.push((size, vec![file]));
        } else if let Some(lightest) = groups.iter_mut().min_by_key(|(bytes, _)| *bytes) {
            lightest.0 += size;
            lightest.1.push(file);
        }
    }
    groups.into_iter().map(|(_, files)| files).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use datafusion::arrow::array::{Date32Array, Float64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::common::tree_node::TreeNodeRecursion;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::physical_plan::collect;
    use datafusion::prelude::{ParquetReadOptions, SessionContext};

    /// Days since 1970-01-01 of 2025-`month`-`day`.
    fn day(month: u32, day: u32) -> i32 {
        let date = chrono::NaiveDate::from_ymd_opt(2025, month, day).expect("a date");
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("the epoch");
        i32::try_from((date - epoch).num_days()).expect("days fit")
    }

    /// A warehouse table of monthly order files: January to April, ten orders a day of the
    /// month's first ten days, every other one paid; April's file also holds two orders
    /// without a date, and March's last order's revenue is NaN.
    fn orders(dir: &std::path::Path) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("order_date", DataType::Date32, true),
            Field::new("status", DataType::Utf8, false),
            Field::new("revenue", DataType::Float64, false),
        ]));
        for month in 1..=4 {
            let mut dates: Vec<Option<i32>> =
                (0..100).map(|n| Some(day(month, 1 + n / 10))).collect();
            if month == 4 {
                dates.extend([None, None]);
            }
            let status: Vec<&str> = (0..dates.len())
                .map(|n| if n % 2 == 0 { "paid" } else { "open" })
                .collect();
            // March's last order has a revenue that is not a number.
            let revenue: Vec<f64> = (0..dates.len())
                .map(|n| match (month, n) {
                    (3, 99) => f64::NAN,
                    _ => f64::from(month * 100 + n as u32),
                })
                .collect();
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Date32Array::from(dates)),
                    Arc::new(StringArray::from(status)),
                    Arc::new(Float64Array::from(revenue)),
                ],
            )
            .expect("a batch");
            let file = std::fs::File::create(dir.join(format!("2025-{month:02}.parquet")))
                .expect("a file");
            let mut writer = ArrowWriter::try_new(file, batch.schema(), None).expect("a writer");
            writer.write(&batch).expect("rows written");
            writer.close().expect("file closed");
        }
    }

    async fn session(dir: &std::path::Path, with_rule: bool) -> SessionContext {
        let mut builder = SessionStateBuilder::new().with_default_features();
        if with_rule {
            builder =
                builder.with_physical_optimizer_rules(FileStatisticsPruning::with_default_rules());
        }
        let ctx = SessionContext::new_with_state(builder.build());
        ctx.register_parquet(
            "orders",
            dir.to_str().expect("utf-8 path"),
            ParquetReadOptions::default(),
        )
        .await
        .expect("table registered");
        ctx
    }

    /// What the plan of `sql` scans and filters: the files its scans read and the filters'
    /// predicates.
    struct Planned {
        files: usize,
        filters: Vec<String>,
        answer: String,
    }

    async fn run(ctx: &SessionContext, sql: &str) -> Planned {
        let plan = ctx
            .sql(sql)
            .await
            .expect("planned")
            .create_physical_plan()
            .await
            .expect("physical plan");
        let (mut files, mut filters) = (0, Vec::new());
        plan.apply(|node| {
            if let Some(filter) = node.downcast_ref::<FilterExec>() {
                filters.push(filter.predicate().to_string());
            }
            if let Some(config) = node
                .downcast_ref::<DataSourceExec>()
                .and_then(|scan| scan.data_source().downcast_ref::<FileScanConfig>())
            {
                let mut paths: Vec<_> = config
                    .file_groups
                    .iter()
                    .flat_map(FileGroup::iter)
                    .map(|file| file.object_meta.location.to_string())
                    .collect();
                paths.sort();
                paths.dedup();
                files += paths.len();
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .expect("plan walked");
        let batches = collect(plan, ctx.task_ctx()).await.expect("the query ran");
        let answer = pretty_format_batches(&batches)
            .expect("formatted")
            .to_string();
        Planned {
            files,
            filters,
            answer,
        }
    }

    const TOTALS: &str = "SELECT count(*) AS orders, count(order_date) AS dated, \
                          sum(revenue) AS revenue FROM orders WHERE";

    /// The order files, a session with the rule and one without.
    struct Warehouse {
        ctx: SessionContext,
        plain: SessionContext,
        _dir: tempfile::TempDir,
    }

    impl Warehouse {
        async fn open() -> Self {
            let dir = tempfile::tempdir().expect("temp dir");
            orders(dir.path());
            Self {
                ctx: session(dir.path(), true).await,
                plain: session(dir.path(), false).await,
                _dir: dir,
            }
        }

        /// Runs `sql` with the rule, checks its answer is the one without it, returns its plan.
        async fn answer(&self, sql: &str) -> Planned {
            let (pruned, expected) = (run(&self.ctx, sql).await, run(&self.plain, sql).await);
            assert_eq!(pruned.answer, expected.answer, "{sql}");
            assert!(pruned.files <= expected.files, "{sql}");
            pruned
        }

        /// [`Self::answer`] of the totals of the orders `predicate` keeps: order and dated
        /// order counts as the answer's first cells.
        async fn totals(&self, predicate: &str, orders: u32, dated: u32) -> Planned {
            let planned = self.answer(&format!("{TOTALS} {predicate}")).await;
            let cells = format!("| {orders:<6} | {dated:<5} |");
            assert!(
                planned.answer.contains(&cells),
                "{predicate}: {}",
                planned.answer
            );
            planned
        }
    }

    impl Planned {
        fn compares_dates(&self) -> bool {
            self.filters
                .iter()
                .any(|filter| filter.contains("order_date"))
        }
    }

    #[tokio::test]
    async fn a_range_covering_whole_files_reads_only_them_and_compares_no_date() {
        let warehouse = Warehouse::open().await;
        let planned = warehouse
            .totals(
                "order_date >= DATE '2025-02-01' AND order_date < DATE '2025-04-01'",
                200,
                200,
            )
            .await;
        assert_eq!(planned.files, 2, "February's and March's files only");
        assert!(
            planned.filters.is_empty(),
            "no filter left: {:?}",
            planned.filters
        );

        // A conjunct the statistics cannot decide stays; the date range goes.
        let planned = warehouse
            .totals(
                "order_date BETWEEN DATE '2025-01-01' AND DATE '2025-02-28' AND status = 'paid'",
                100,
                100,
            )
            .await;
        assert_eq!(planned.files, 2);
        assert_eq!(planned.filters.len(), 1);
        assert!(!planned.compares_dates(), "{:?}", planned.filters);
    }

    #[tokio::test]
    async fn a_range_cutting_a_file_keeps_comparing_dates() {
        let warehouse = Warehouse::open().await;
        // January whole, February's first five days of ten.
        let planned = warehouse
            .totals(
                "order_date >= DATE '2025-01-01' AND order_date < DATE '2025-02-06'",
                150,
                150,
            )
            .await;
        assert_eq!(planned.files, 2);
        assert!(planned.compares_dates(), "{:?}", planned.filters);
    }

    #[tokio::test]
    async fn orders_without_a_date_never_pass_a_date_range() {
        let warehouse = Warehouse::open().await;
        // April's file: every dated order is inside the range, two have no date at all.
        let planned = warehouse
            .totals(
                "order_date >= DATE '2025-04-01' AND order_date < DATE '2025-05-01'",
                100,
                100,
            )
            .await;
        assert_eq!(planned.files, 1);
        assert!(planned.compares_dates(), "{:?}", planned.filters);
    }

    #[tokio::test]
    async fn answers_match_a_plan_without_the_rule() {
        let warehouse = Warehouse::open().await;
        for predicate in [
            "order_date < DATE '2025-01-01'",
            "order_date >= DATE '2025-03-10'",
            "order_date > DATE '2025-03-10'",
            "order_date IS NULL",
            "order_date IS NOT NULL AND status <> 'paid'",
            "order_date = DATE '2025-02-03' OR revenue > 450",
            "NOT (order_date < DATE '2025-03-01')",
            "order_date BETWEEN DATE '2025-01-05' AND DATE '2025-04-30' AND revenue >= 150",
            // NaN sorts above every number, so it fails this in every file; the statistics
            // leave it out of their maximum.
            "revenue < 1000",
        ] {
            warehouse.answer(&format!("{TOTALS} {predicate}")).await;
        }
        // Grouped answers too, with the rule's scan under an aggregate and a sort.
        let planned = warehouse
            .answer(
                "SELECT date_trunc('month', order_date) AS month, sum(revenue) AS revenue \
                 FROM orders WHERE order_date >= DATE '2025-02-01' GROUP BY 1 ORDER BY 1",
            )
            .await;
        assert_eq!(planned.files, 3);
    }
}
