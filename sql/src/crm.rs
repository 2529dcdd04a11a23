//! CRM tables: a tenant's audiences as tables of its catalog, read from the store when a query
//! plans, so a dashboard charts an audience's size over time and slices its members.
//!
//! | table | columns |
//! |---|---|
//! | `audience_members` | `audience`, `contact`, `since` (timestamp, UTC): who is in which audience now |
//! | `audience_sizes` | `audience`, `at` (timestamp, UTC), `size`: the size after the last change of each minute in which it changed |
//!
//! They change with every step of the audience engine, so answers over them are never cached.

use std::sync::{Arc, OnceLock};

use connectors::store::Audiences;
use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result as DfResult};

/// The CRM table names.
pub const TABLES: [&str; 2] = ["audience_members", "audience_sizes"];

/// Members read per store call.
const PAGE: usize = 10_000;

/// Whether `name` is a CRM table.
pub fn is_crm_table(name: &str) -> bool {
    TABLES.contains(&name)
}

/// Where the CRM tables come from; set once by the server that runs the audience engine.
#[derive(Default)]
pub struct CrmTables {
    store: OnceLock<Arc<dyn Audiences>>,
}

impl std::fmt::Debug for CrmTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrmTables")
            .field("attached", &self.store.get().is_some())
            .finish()
    }
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl CrmTables {
    /// Serves the tables from `store` from now on (a second call changes nothing).
    pub fn attach(&self, store: Arc<dyn Audiences>) {
        let _ = self.store.set(store);
    }

    /// Whether the tables are served.
    pub fn attached(&self) -> bool {
        self.store.get().is_some()
    }

    /// `tenant`'s table `name` as it is now.
    pub async fn provider(&self, tenant: &str, name: &str) -> DfResult<Arc<dyn TableProvider>> {
        let store = self
            .store
            .get()
            .cloned()
            .ok_or_else(|| DataFusionError::Plan(format!("no table {name}")))?;
        let (tenant, name) = (tenant.to_string(), name.to_string());
        let batch = tokio::task::spawn_blocking(move || read(store.as_ref(), &tenant, &name))
            .await
            .map_err(external)??;
        Ok(Arc::new(MemTable::try_new(
            batch.schema(),
            vec![vec![batch]],
        )?))
    }
}

fn read(store: &dyn Audiences, tenant: &str, name: &str) -> DfResult<RecordBatch> {
    match name {
        "audience_members" => {
            let (mut audiences, mut contacts, mut since) = (Vec::new(), Vec::new(), Vec::new());
            for audience in store.list_audiences(Some(tenant)).map_err(external)? {
                let mut after: Option<String> = None;
                loop {
                    let page = store
                        .audience_members(tenant, &audience.id, after.as_deref(), PAGE)
                        .map_err(external)?;
                    for member in &page {
                        audiences.push(audience.id.clone());
                        contacts.push(member.contact.clone());
                        since.push(member.since_ms);
                    }
                    if page.len() < PAGE {
                        break;
                    }
                    after = page.last().map(|m| m.contact.clone());
                }
            }
            let schema = Schema::new(vec![
                Field::new("audience", DataType::Utf8, false),
                Field::new("contact", DataType::Utf8, false),
                Field::new("since", timestamp(), false),
            ]);
            Ok(RecordBatch::try_new(
                Arc::new(schema),
                vec![
                    Arc::new(StringArray::from(audiences)) as ArrayRef,
                    Arc::new(StringArray::from(contacts)),
                    Arc::new(TimestampMillisecondArray::from(since).with_timezone("UTC")),
                ],
            )?)
        }
        "audience_sizes" => {
            let sizes = store
                .audience_sizes(tenant, None, i64::MIN)
                .map_err(external)?;
            let schema = Schema::new(vec![
                Field::new("audience", DataType::Utf8, false),
                Field::new("at", timestamp(), false),
                Field::new("size", DataType::Int64, false),
            ]);
            Ok(RecordBatch::try_new(
                Arc::new(schema),
                vec![
                    Arc::new(StringArray::from_iter_values(
                        sizes.iter().map(|s| s.audience.as_str()),
                    )) as ArrayRef,
                    Arc::new(
                        TimestampMillisecondArray::from_iter_values(sizes.iter().map(|s| s.at_ms))
                            .with_timezone("UTC"),
                    ),
                    Arc::new(Int64Array::from_iter_values(
                        sizes
                            .iter()
                            .map(|s| i64::try_from(s.size).unwrap_or(i64::MAX)),
                    )),
                ],
            )?)
        }
        other => Err(DataFusionError::Plan(format!("no table {other}"))),
    }
}
