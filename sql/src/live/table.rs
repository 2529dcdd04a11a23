//! [`LiveTable`]: one tenant's live table as a DataFusion table — its Parquet files (the
//! operator's and the finished compaction rounds') united with the tail's rows.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::config::TableParquetOptions;
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::functions_aggregate::min_max::{MaxAccumulator, MinAccumulator};
use datafusion::logical_expr::Accumulator;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::object_store::ObjectStoreExt;
use datafusion::object_store::path::Path as StorePath;
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;

use super::mapping::EventMapping;
use super::{LiveTables, conform, files, list_live, other_files};
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
    /// Tail batches in this table's schema, by the read step that made them: a batch is cast
    /// once, not on every scan.
    conformed: Mutex<Vec<(u64, RecordBatch)>>,
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
        Ok(LiveTable {
            tenant: tenant.to_string(),
            table: table.to_string(),
            schema: Arc::new(Schema::new(fields)),
            options,
            live,
            conformed: Mutex::new(Vec::new()),
        })
    }
}

impl LiveTable {
    /// The tail's batches in this table's schema, cast once per batch and kept while the tail
    /// holds the batch.
    fn conformed(&self, tail: Vec<(u64, RecordBatch)>) -> Result<Vec<RecordBatch>, SqlError> {
        let mut cache = self.conformed.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows = Vec::with_capacity(tail.len());
        let mut kept = Vec::with_capacity(tail.len());
        for (step, batch) in tail {
            let done = cache
                .iter()
                .find(|(s, _)| *s == step)
                .map(|(_, b)| b.clone());
            let batch = match done {
                Some(batch) => batch,
                None => conform(&batch, &self.schema)?,
            };
            kept.push((step, batch.clone()));
            rows.push(batch);
        }
        *cache = kept;
        Ok(rows)
    }

    /// The tail batches `filters` may keep rows of: each batch's min and max per column against
    /// the filters (DataFusion's pruning predicate, as row groups of files are skipped). A
    /// filter it cannot use keeps every batch; the kept rows are filtered above the scan.
    fn prune(
        &self,
        state: &dyn Session,
        filters: &[Expr],
        rows: Vec<RecordBatch>,
    ) -> Vec<RecordBatch> {
        let Some(filter) = conjunction(filters.iter().cloned()) else {
            return rows;
        };
        let Ok(schema) = DFSchema::try_from(self.schema.as_ref().clone()) else {
            return rows;
        };
        let Ok(expr) = state.create_physical_expr(filter, &schema) else {
            return rows;
        };
        let Some(predicate) = PruningPredicateBuilder::new()
            .with_file_schema(Arc::clone(&self.schema))
            .build(expr)
        else {
            return rows;
        };
        match predicate.prune(&TailStatistics { batches: &rows }) {
            Ok(keep) => rows
                .into_iter()
                .zip(keep)
                .filter_map(|(batch, keep)| keep.then_some(batch))
                .collect(),
            Err(_) => rows,
        }
    }
}

/// Per-batch statistics of tail rows, for DataFusion's pruning predicate.
struct TailStatistics<'a> {
    batches: &'a [RecordBatch],
}

impl TailStatistics<'_> {
    /// Each batch's minimum (or maximum) of `column`.
    fn extreme(&self, column: &Column, min: bool) -> Option<ArrayRef> {
        let values = self
            .batches
            .iter()
            .map(|batch| {
                let array = batch.column_by_name(&column.name)?;
                let mut accumulator: Box<dyn Accumulator> = if min {
                    Box::new(MinAccumulator::try_new(array.data_type()).ok()?)
                } else {
                    Box::new(MaxAccumulator::try_new(array.data_type()).ok()?)
                };
                accumulator.update_batch(&[Arc::clone(array)]).ok()?;
                accumulator.evaluate().ok()
            })
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
            .map(|batch| Some(batch.column_by_name(&column.name)?.null_count() as u64))
            .collect::<Option<Vec<u64>>>()?;
        Some(Arc::new(UInt64Array::from(counts)))
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        let counts: Vec<u64> = self.batches.iter().map(|b| b.num_rows() as u64).collect();
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
        let (watermark, tail) = self.live.snapshot(&self.tenant, &self.table);
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
        if !tail.is_empty() {
            let rows = self
                .conformed(tail)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            let rows = self.prune(state, filters, rows);
            inputs.push(MemorySourceConfig::try_new_exec(
                &[rows],
                Arc::clone(&self.schema),
                projection.cloned(),
            )?);
        }
        if inputs.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => Arc::clone(&self.schema),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        UnionExec::try_new(inputs)
    }
}
