//! [`LiveTable`]: one tenant's live table as a DataFusion table — its Parquet files (the
//! operator's and the finished compaction rounds') united with the tail's rows.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Statistics;
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::config::TableParquetOptions;
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::functions_aggregate::min_max::{MaxAccumulator, MinAccumulator};
use datafusion::logical_expr::Accumulator;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::object_store::ObjectStoreExt;
use datafusion::object_store::path::Path as StorePath;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::pruning::PruningPredicate;
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::common::compute_record_batch_statistics;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};

use super::mapping::EventMapping;
use super::{LiveSnapshot, LiveTables, conform, files, list_live, other_files};
use crate::SqlError;
use crate::catalog::STORE_URL;

/// One tenant's live table.
#[derive(Debug)]
pub struct LiveTable {
    live: Arc<LiveTables>,
    tenant: String,
    table: String,
    schema: SchemaRef,
    options: ListingOptions,
    /// The tail's batches in this table's schema.
    conformer: Arc<Conformer>,
}

/// Casts tail batches into a table's schema, each once, and keeps them (with the statistics
/// scans prune them by) while the tail holds them, by the read step that made them.
#[derive(Debug)]
struct Conformer {
    schema: SchemaRef,
    done: Mutex<Vec<(u64, Arc<TailRows>)>>,
}

/// A tail batch in its table's schema, with each column's min and max once asked for.
#[derive(Debug)]
struct TailRows {
    batch: RecordBatch,
    /// Column name → (min, max), `None` where the column's type has no min and max.
    extremes: Mutex<HashMap<String, Option<(ScalarValue, ScalarValue)>>>,
}

impl TailRows {
    fn new(batch: RecordBatch) -> Self {
        TailRows {
            batch,
            extremes: Mutex::new(HashMap::new()),
        }
    }

    /// `column`'s min or max in this batch, computed on first use.
    fn extreme(&self, column: &str, min: bool) -> Option<ScalarValue> {
        let mut extremes = self.extremes.lock().unwrap_or_else(|e| e.into_inner());
        if !extremes.contains_key(column) {
            let both = self.compute_extremes(column);
            extremes.insert(column.to_string(), both);
        }
        let (low, high) = extremes.get(column)?.as_ref()?;
        Some(if min { low.clone() } else { high.clone() })
    }

    /// `column`'s min and max over the batch, if its type has them.
    fn compute_extremes(&self, column: &str) -> Option<(ScalarValue, ScalarValue)> {
        let array = self.batch.column_by_name(column)?;
        let mut low = MinAccumulator::try_new(array.data_type()).ok()?;
        let mut high = MaxAccumulator::try_new(array.data_type()).ok()?;
        low.update_batch(&[Arc::clone(array)]).ok()?;
        high.update_batch(&[Arc::clone(array)]).ok()?;
        Some((low.evaluate().ok()?, high.evaluate().ok()?))
    }
}

impl Conformer {
    /// `tail`'s batches in the table's schema.
    fn conformed(&self, tail: &[(u64, RecordBatch)]) -> Result<Vec<Arc<TailRows>>, SqlError> {
        let mut cache = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows = Vec::with_capacity(tail.len());
        let mut kept = Vec::with_capacity(tail.len());
        for (step, batch) in tail {
            let done = cache
                .iter()
                .find(|(s, _)| s == step)
                .map(|(_, b)| Arc::clone(b));
            let batch = match done {
                Some(batch) => batch,
                None => Arc::new(TailRows::new(conform(batch, &self.schema)?)),
            };
            kept.push((*step, Arc::clone(&batch)));
            rows.push(batch);
        }
        *cache = kept;
        Ok(rows)
    }
}

impl LiveTable {
    /// The table over the operator's files `others` (their schema, with the live columns they
    /// lack added) and the live rows. A mapped column whose files hold another kind of value is
    /// a model error naming both.
    pub(crate) async fn build<'a>(
        live: Arc<LiveTables>,
        tenant: &str,
        table: &str,
        live_schema: &SchemaRef,
        others: &[(String, u64, u128)],
        mappings: impl Iterator<Item = &'a Arc<EventMapping>>,
    ) -> Result<Self, SqlError> {
        let warehouse = live.warehouse();
        let format = ParquetFormat::default().with_options(TableParquetOptions {
            global: warehouse.config().options().execution.parquet.clone(),
            ..Default::default()
        });
        let options = ListingOptions::new(Arc::new(format)).with_file_extension(".parquet");
        let mut fields: Vec<Field> = Vec::new();
        if !others.is_empty() {
            let store = warehouse
                .runtime()
                .object_store(ObjectStoreUrl::parse(STORE_URL)?)?;
            let mut metas = Vec::with_capacity(others.len());
            for (name, ..) in others {
                let path = StorePath::from(format!("{table}/tenant={tenant}/{name}"));
                metas.push(store.head(&path).await.map_err(DataFusionError::from)?);
            }
            let inferred = options
                .format
                .infer_schema(warehouse.inference(), &store, &metas)
                .await?;
            fields = inferred
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect();
        }
        let mappings: Vec<&Arc<EventMapping>> = mappings.collect();
        for field in live_schema.fields() {
            match fields.iter().find(|f| f.name() == field.name()) {
                Some(existing) => {
                    for mapping in &mappings {
                        let Some(column) = mapping.columns.iter().find(|c| c.name == *field.name())
                        else {
                            continue;
                        };
                        if !column.ty.fits(existing.data_type()) {
                            return Err(SqlError::Model {
                                file: mapping.file.clone(),
                                member: format!(
                                    "events.{}.columns.{}",
                                    mapping.event_type, column.name
                                ),
                                message: format!(
                                    "is declared {:?} but the files of table `{table}` (tenant `{tenant}`) hold {}",
                                    column.ty,
                                    existing.data_type()
                                ),
                            });
                        }
                    }
                }
                None => fields.push(field.as_ref().clone()),
            }
        }
        let schema = Arc::new(Schema::new(fields));
        Ok(LiveTable {
            tenant: tenant.to_string(),
            table: table.to_string(),
            conformer: Arc::new(Conformer {
                schema: Arc::clone(&schema),
                done: Mutex::new(Vec::new()),
            }),
            schema,
            options,
            live,
        })
    }
}

impl LiveTable {
    /// The pruning predicate of `filters` over this table's tail batches (DataFusion's, as row
    /// groups of files are skipped by their min and max), if the filters give one.
    fn predicate(&self, state: &dyn Session, filters: &[Expr]) -> Option<Arc<PruningPredicate>> {
        let filter = conjunction(filters.iter().cloned())?;
        let schema = DFSchema::try_from(self.schema.as_ref().clone()).ok()?;
        let expr = state.create_physical_expr(filter, &schema).ok()?;
        PruningPredicateBuilder::new()
            .with_file_schema(Arc::clone(&self.schema))
            .build(expr)
    }
}

/// The tail batches `predicate` may keep rows of: each batch's min and max per column against
/// the filters. No predicate, or one that cannot be evaluated, keeps every batch; the kept rows
/// are filtered above the scan.
fn prune(predicate: Option<&PruningPredicate>, rows: Vec<Arc<TailRows>>) -> Vec<RecordBatch> {
    let keep = match predicate {
        Some(predicate) => predicate.prune(&TailStatistics { batches: &rows }).ok(),
        None => None,
    };
    match keep {
        Some(keep) => rows
            .into_iter()
            .zip(keep)
            .filter_map(|(rows, keep)| keep.then(|| rows.batch.clone()))
            .collect(),
        None => rows.into_iter().map(|rows| rows.batch.clone()).collect(),
    }
}

/// Per-batch statistics of tail rows, for DataFusion's pruning predicate.
struct TailStatistics<'a> {
    batches: &'a [Arc<TailRows>],
}

impl TailStatistics<'_> {
    /// Each batch's minimum (or maximum) of `column`.
    fn extreme(&self, column: &Column, min: bool) -> Option<ArrayRef> {
        let values = self
            .batches
            .iter()
            .map(|rows| rows.extreme(&column.name, min))
            .collect::<Option<Vec<ScalarValue>>>()?;
        ScalarValue::iter_to_array(values).ok()
    }
}

impl PruningStatistics for TailStatistics<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.extreme(column, true)
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.extreme(column, false)
    }

    fn num_containers(&self) -> usize {
        self.batches.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        let counts = self
            .batches
            .iter()
            .map(|rows| Some(rows.batch.column_by_name(&column.name)?.null_count() as u64))
            .collect::<Option<Vec<u64>>>()?;
        Some(Arc::new(UInt64Array::from(counts)))
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        let counts: Vec<u64> = self
            .batches
            .iter()
            .map(|rows| rows.batch.num_rows() as u64)
            .collect();
        Some(Arc::new(UInt64Array::from(counts)))
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

#[async_trait]
impl TableProvider for LiveTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Files skip row groups by them; the tail's rows are filtered above the scan.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // The watermark and the tail first, then the files: a round that finishes in between
        // has its files listed but not read (past this watermark) and its rows in this tail.
        // Planned for a query's snapshot, the tail is read when the plan runs, from the
        // snapshot the run carries; otherwise it is read now and held by the plan.
        let carried = state.config().get_extension::<LiveSnapshot>();
        let carried = carried
            .as_deref()
            .and_then(|s| Some((s.watermark(), s.rows(&self.tenant, &self.table)?)));
        let taken;
        let (at_run, (watermark, tail)) = match carried {
            Some(snapshot) => (true, snapshot),
            None => {
                taken = self.live.snapshot(&self.tenant, &self.table);
                (false, (taken.0, taken.1.as_slice()))
            }
        };
        let dir = self.live.table_dir(&self.table, &self.tenant);
        let mut names: Vec<String> = other_files(&dir).into_iter().map(|f| f.0).collect();
        names.extend(
            files::visible(&list_live(&dir), watermark)
                .into_iter()
                .map(|f| f.name),
        );
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !names.is_empty() {
            let urls = names
                .iter()
                .map(|name| {
                    ListingTableUrl::parse(format!(
                        "{STORE_URL}/{}/tenant={}/{name}",
                        self.table, self.tenant
                    ))
                })
                .collect::<DfResult<Vec<_>>>()?;
            let config = ListingTableConfig::new_with_multi_paths(urls)
                .with_listing_options(self.options.clone())
                .with_schema(Arc::clone(&self.schema));
            let runtime = self.live.warehouse().runtime();
            let listing = ListingTable::try_new(config)?
                .with_cache(runtime.cache_manager.get_file_statistic_cache());
            inputs.push(listing.scan(state, projection, filters, limit).await?);
        }
        let predicate = self.predicate(state, filters);
        let rows = self
            .conformer
            .conformed(tail)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let rows = prune(predicate.as_deref(), rows);
        if at_run || !rows.is_empty() {
            let source = TailSource {
                tenant: self.tenant.clone(),
                table: self.table.clone(),
                conformer: Arc::clone(&self.conformer),
                predicate,
            };
            let read = if at_run {
                TailRead::AtRun { watermark }
            } else {
                TailRead::Planned
            };
            inputs.push(Arc::new(TailExec::try_new(source, read, rows, projection)?));
        }
        if inputs.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => Arc::clone(&self.schema),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        if inputs.len() == 1 {
            return Ok(inputs.remove(0));
        }
        UnionExec::try_new(inputs)
    }
}

/// What a [`TailExec`] reads.
#[derive(Debug)]
struct TailSource {
    tenant: String,
    table: String,
    conformer: Arc<Conformer>,
    /// The scan's filters as a pruning predicate over tail batches.
    predicate: Option<Arc<PruningPredicate>>,
}

/// When a [`TailExec`] takes its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TailRead {
    /// From the snapshot the run carries, which must be of the same watermark (the plan lists
    /// the files that watermark covers): the plan runs again as new events arrive.
    AtRun {
        /// The compacted watermark the plan was made under.
        watermark: u64,
    },
    /// The rows taken when the plan was made: the plan holds them.
    Planned,
}

/// A live table's tail rows: the events not yet in its files.
#[derive(Debug)]
pub struct TailExec {
    source: Arc<TailSource>,
    read: TailRead,
    /// The rows taken at planning: what [`TailRead::Planned`] runs with, and what the statistics
    /// of [`TailRead::AtRun`] describe (as an estimate).
    planned: Vec<RecordBatch>,
    projection: Option<Vec<usize>>,
    statistics: Arc<Statistics>,
    properties: Arc<PlanProperties>,
}

impl TailExec {
    fn try_new(
        source: TailSource,
        read: TailRead,
        planned: Vec<RecordBatch>,
        projection: Option<&Vec<usize>>,
    ) -> DfResult<Self> {
        let schema = &source.conformer.schema;
        let projected = match projection {
            Some(p) => Arc::new(schema.project(p)?),
            None => Arc::clone(schema),
        };
        let statistics = compute_record_batch_statistics(
            std::slice::from_ref(&planned),
            schema,
            projection.cloned(),
        );
        let statistics = match read {
            TailRead::Planned => statistics,
            TailRead::AtRun { .. } => statistics.to_inexact(),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(projected),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(TailExec {
            source: Arc::new(source),
            read,
            planned: match read {
                TailRead::Planned => planned,
                TailRead::AtRun { .. } => Vec::new(),
            },
            projection: projection.cloned(),
            statistics: Arc::new(statistics),
            properties: Arc::new(properties),
        })
    }

    /// Whether the plan holds the rows it reads (taken at planning), so that running it again
    /// would answer from them.
    pub fn holds_rows(&self) -> bool {
        self.read == TailRead::Planned
    }

    /// The rows to run with: those taken at planning, or the run's snapshot's.
    fn rows(&self, context: &TaskContext) -> DfResult<Vec<RecordBatch>> {
        let TailRead::AtRun { watermark } = self.read else {
            return Ok(self.planned.clone());
        };
        let source = &self.source;
        let snapshot = context
            .session_config()
            .get_extension::<LiveSnapshot>()
            .filter(|s| s.watermark() == watermark);
        let tail = snapshot
            .as_deref()
            .and_then(|s| s.rows(&source.tenant, &source.table));
        let Some(tail) = tail else {
            return Err(DataFusionError::Internal(format!(
                "live table {} of tenant {} was planned for its events under compacted watermark {watermark} and runs without them",
                source.table, source.tenant
            )));
        };
        let rows = source
            .conformer
            .conformed(tail)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(prune(source.predicate.as_deref(), rows))
    }
}

impl DisplayAs for TailExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self.read {
            TailRead::AtRun { watermark } => write!(
                f,
                "LiveTailExec: {} events after {watermark}, read at run",
                self.source.table
            ),
            TailRead::Planned => write!(
                f,
                "LiveTailExec: {} events, {} rows held",
                self.source.table,
                self.planned
                    .iter()
                    .map(RecordBatch::num_rows)
                    .sum::<usize>()
            ),
        }
    }
}

impl ExecutionPlan for TailExec {
    fn name(&self) -> &str {
        "LiveTailExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "LiveTailExec has no children".into(),
            ))
        }
    }

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> DfResult<Arc<Statistics>> {
        Ok(Arc::clone(&self.statistics))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "LiveTailExec has one partition, not {partition}"
            )));
        }
        let rows = self.rows(&context)?;
        Ok(Box::pin(MemoryStream::try_new(
            rows,
            Arc::clone(&self.source.conformer.schema),
            self.projection.clone(),
        )?))
    }
}
