//! [`LiveTable`]: one tenant's live table as a DataFusion table — its Parquet files (the
//! operator's and the finished compaction rounds') united with the tail's rows.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::config::TableParquetOptions;
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::object_store::ObjectStoreExt;
use datafusion::object_store::path::Path as StorePath;
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
