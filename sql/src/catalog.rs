//! The per-tenant catalog: the tenant wall for local files.
//!
//! A tenant's session sees exactly one catalog, `tidemark`, with one schema, `public` (plus
//! DataFusion's `information_schema` view of that same catalog). Its tables are listing tables
//! over `<warehouse>/<table>/tenant=<tenant>/` and nothing else: the tenant is part of the path
//! the provider was built with, below anything a user writes. A table name that is not a plain
//! lowercase identifier (`"../x"`, `"tenant=b"`, `"a/b"`) is simply not in the schema.
//!
//! Defence in depth: the sessions' object-store registry knows only the warehouse, under its own
//! URL scheme (`tidemark://warehouse/`), with no `file://` store, so even a plan that smuggled in
//! a file path could not read outside the warehouse; URL tables are never enabled; the catalog,
//! schema and catalog list refuse registration, so `CREATE …` cannot add anything.

use std::collections::HashMap;
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider, TableProvider};
use datafusion::config::TableParquetOptions;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::object_store::local::LocalFileSystem;
use datafusion::prelude::SessionConfig;

use crate::SqlError;
use crate::crm::CrmTables;
use crate::live::LiveTables;
use crate::source::ExternalSource;

/// The only catalog a tenant session has.
pub const CATALOG: &str = "tidemark";
/// The schema holding the tenant's tables.
pub const SCHEMA: &str = "public";
/// The object-store URL the warehouse root is served under.
pub(crate) const STORE_URL: &str = "tidemark://warehouse";

/// Checks a tenant id before it becomes part of a path: 1–64 of `[A-Za-z0-9_-]`.
pub fn validate_tenant(tenant: &str) -> Result<(), SqlError> {
    let ok = !tenant.is_empty()
        && tenant.len() <= 64
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(SqlError::bad(
            "tenant",
            format!("invalid tenant id {tenant:?}: use 1-64 characters of A-Z, a-z, 0-9, _ and -"),
        ))
    }
}

/// A table name the warehouse can serve: a lowercase SQL identifier.
pub fn is_table_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && name.len() <= 64
}

/// The file format of a table directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Format {
    Parquet,
    Csv,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::Parquet => ".parquet",
            Format::Csv => ".csv",
        }
    }
}

/// The data files of one tenant's table right now, and a fingerprint of their names, sizes and
/// modification times: the table's freshness.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listing {
    format: Format,
    fingerprint: u64,
}

/// The warehouse root and the DataFusion runtime that reads it, shared by all tenants.
#[derive(Debug)]
pub struct Warehouse {
    root: PathBuf,
    runtime: Arc<RuntimeEnv>,
    config: SessionConfig,
    /// A bare session used only to infer table schemas from file footers.
    inference: SessionState,
}

impl Warehouse {
    /// Opens the warehouse at `root` with the session configuration every tenant session uses.
    pub fn open(root: &Path, config: SessionConfig) -> Result<Self, SqlError> {
        let root = root
            .canonicalize()
            .map_err(|e| SqlError::Internal(format!("warehouse {}: {e}", root.display())))?;
        let store = LocalFileSystem::new_with_prefix(&root)
            .map_err(|e| SqlError::Internal(format!("warehouse {}: {e}", root.display())))?;
        let registry = DefaultObjectStoreRegistry::new();
        let url = ObjectStoreUrl::parse(STORE_URL)?;
        // No `file://` store: nothing can be read by absolute path, only through the warehouse.
        let _ = registry.deregister_store(ObjectStoreUrl::local_filesystem().as_ref());
        registry.register_store(url.as_ref(), Arc::new(store));
        let runtime = RuntimeEnvBuilder::new()
            .with_object_store_registry(Arc::new(registry))
            // DataFusion's listing cache never expires by default; new files must be seen at once
            // (the result cache keys on them), and listing a local directory is cheap.
            .with_cache_manager(CacheManagerConfig::default().with_list_files_cache_limit(0))
            .build_arc()?;
        let inference = SessionStateBuilder::new()
            .with_config(config.clone())
            .with_runtime_env(Arc::clone(&runtime))
            .build();
        Ok(Self {
            root,
            runtime,
            config,
            inference,
        })
    }

    /// The warehouse root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The runtime (object stores, caches, memory pool) every tenant session shares.
    pub fn runtime(&self) -> Arc<RuntimeEnv> {
        Arc::clone(&self.runtime)
    }

    /// A bare session for reading file footers (schemas), never for tenant queries.
    pub(crate) fn inference(&self) -> &SessionState {
        &self.inference
    }

    /// The session configuration every tenant session uses.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    fn table_dir(&self, table: &str, tenant: &str) -> PathBuf {
        self.root.join(table).join(format!("tenant={tenant}"))
    }

    /// Lists one tenant's table directory; `None` if it has no data files.
    fn list(&self, table: &str, tenant: &str) -> Option<Listing> {
        let entries = fs::read_dir(self.table_dir(table, tenant)).ok()?;
        let mut parquet = Vec::new();
        let mut csv = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() || name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            let file = (name, meta.len(), mtime);
            if file.0.ends_with(Format::Parquet.extension()) {
                parquet.push(file);
            } else if file.0.ends_with(Format::Csv.extension()) {
                csv.push(file);
            }
        }
        let (format, mut files) = if !parquet.is_empty() {
            (Format::Parquet, parquet)
        } else if !csv.is_empty() {
            (Format::Csv, csv)
        } else {
            return None;
        };
        files.sort();
        let mut hasher = DefaultHasher::new();
        format.hash(&mut hasher);
        files.hash(&mut hasher);
        Some(Listing {
            format,
            fingerprint: hasher.finish(),
        })
    }

    /// A fingerprint of the data files behind `tables` for `tenant`: changes whenever a file is
    /// added, removed, rewritten or touched.
    pub fn freshness<'a>(&self, tenant: &str, tables: impl IntoIterator<Item = &'a str>) -> u64 {
        let mut tables: Vec<&str> = tables.into_iter().collect();
        tables.sort_unstable();
        tables.dedup();
        let mut hasher = DefaultHasher::new();
        for table in tables {
            table.hash(&mut hasher);
            self.list(table, tenant)
                .map(|l| l.fingerprint)
                .hash(&mut hasher);
        }
        hasher.finish()
    }

    /// The tables `tenant` has data for, sorted.
    pub fn table_names(&self, tenant: &str) -> Vec<String> {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|name| is_table_name(name) && self.list(name, tenant).is_some())
            .collect();
        names.sort();
        names
    }

    /// Whether `tenant`'s `table` holds files loaded into the warehouse, as opposed to only the
    /// files live tables compacted from the tenant's events (whose columns are the event
    /// mapping's, not the model's).
    pub fn has_loaded_files(&self, table: &str, tenant: &str) -> bool {
        let Ok(entries) = fs::read_dir(self.table_dir(table, tenant)) else {
            return false;
        };
        entries.flatten().any(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            !name.starts_with(crate::live::files::PREFIX)
                && !name.starts_with(['.', '_'])
                && (name.ends_with(Format::Parquet.extension())
                    || name.ends_with(Format::Csv.extension()))
        })
    }

    /// The tenants that have data for `table`, sorted (used to check models against real files).
    pub fn tenants_with(&self, table: &str) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.root.join(table)) else {
            return Vec::new();
        };
        let mut tenants: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_owned();
                let tenant = name.strip_prefix("tenant=")?.to_owned();
                (validate_tenant(&tenant).is_ok() && self.list(table, &tenant).is_some())
                    .then_some(tenant)
            })
            .collect();
        tenants.sort();
        tenants
    }

    /// Builds the listing table for `tenant`'s `table` directory.
    async fn table_provider(
        &self,
        table: &str,
        tenant: &str,
        format: Format,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let url = ListingTableUrl::parse(format!("{STORE_URL}/{table}/tenant={tenant}/"))?;
        let file_format: Arc<dyn FileFormat> = match format {
            Format::Parquet => {
                Arc::new(ParquetFormat::default().with_options(TableParquetOptions {
                    global: self.config.options().execution.parquet.clone(),
                    ..Default::default()
                }))
            }
            Format::Csv => Arc::new(CsvFormat::default().with_has_header(true)),
        };
        let options = ListingOptions::new(file_format).with_file_extension(format.extension());
        let schema = options.infer_schema(&self.inference, &url).await?;
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(schema);
        // File statistics (row counts, min/max for pruning and join planning) are cached per file
        // path, size and modification time, so a query plans without re-reading every footer and a
        // rewritten file is read again.
        let table = ListingTable::try_new(config)?
            .with_cache(self.runtime.cache_manager.get_file_statistic_cache());
        Ok(Arc::new(table))
    }
}

/// The catalog list of one tenant session: the tenant's catalog and nothing else.
#[derive(Debug)]
pub struct TenantCatalogList {
    catalog: Arc<TenantCatalog>,
}

impl TenantCatalogList {
    /// The catalog list for the tenant whose warehouse tables `schema` serves, with one more
    /// schema per external source (its tables for the same tenant).
    pub fn new(schema: Arc<TenantSchema>, sources: &[Arc<dyn ExternalSource>]) -> Self {
        let sources = sources
            .iter()
            .map(|source| {
                Arc::new(SourceSchema {
                    source: Arc::clone(source),
                    tenant: schema.tenant().to_string(),
                })
            })
            .collect();
        Self {
            catalog: Arc::new(TenantCatalog {
                schema,
                sources,
                pg_catalog: OnceLock::new(),
            }),
        }
    }
}

impl CatalogProviderList for TenantCatalogList {
    fn register_catalog(
        &self,
        _name: String,
        _catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        // Refused: a tenant session's catalogs are fixed. (The trait cannot report an error;
        // DDL never reaches here because `check_read_only` rejects it first.)
        None
    }

    fn catalog_names(&self) -> Vec<String> {
        vec![CATALOG.to_string()]
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        (name == CATALOG).then(|| Arc::clone(&self.catalog) as Arc<dyn CatalogProvider>)
    }
}

#[derive(Debug)]
struct TenantCatalog {
    schema: Arc<TenantSchema>,
    sources: Vec<Arc<SourceSchema>>,
    /// PostgreSQL's system catalog over this catalog's own tables, for pgwire clients.
    pg_catalog: OnceLock<Arc<dyn SchemaProvider>>,
}

/// The one schema a session may add to its tenant catalog.
pub const PG_CATALOG: &str = "pg_catalog";

impl CatalogProvider for TenantCatalog {
    fn schema_names(&self) -> Vec<String> {
        std::iter::once(SCHEMA.to_string())
            .chain(
                self.sources
                    .iter()
                    .map(|s| s.source.schema_name().to_string()),
            )
            .chain(self.pg_catalog.get().map(|_| PG_CATALOG.to_string()))
            .collect()
    }

    /// Only `pg_catalog`, once (the pgwire endpoint installs it over the catalog's own tables);
    /// anything else is refused: a tenant session cannot add schemas.
    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> DfResult<Option<Arc<dyn SchemaProvider>>> {
        if name != PG_CATALOG || self.pg_catalog.set(schema).is_err() {
            return Err(DataFusionError::Plan(format!(
                "schema {name:?} cannot be created here"
            )));
        }
        Ok(None)
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == SCHEMA {
            return Some(Arc::clone(&self.schema) as Arc<dyn SchemaProvider>);
        }
        if name == PG_CATALOG {
            return self.pg_catalog.get().cloned();
        }
        self.sources
            .iter()
            .find(|s| s.source.schema_name() == name)
            .map(|s| Arc::clone(s) as Arc<dyn SchemaProvider>)
    }
}

/// One external source's tables for one tenant.
#[derive(Debug)]
struct SourceSchema {
    source: Arc<dyn ExternalSource>,
    tenant: String,
}

#[async_trait]
impl SchemaProvider for SourceSchema {
    fn table_names(&self) -> Vec<String> {
        self.source.table_names(&self.tenant)
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        self.source.table(&self.tenant, name).await
    }

    fn table_exist(&self, name: &str) -> bool {
        self.source
            .table_names(&self.tenant)
            .iter()
            .any(|t| t == name)
    }
}

/// One tenant's tables: listing tables over `<warehouse>/<table>/tenant=<tenant>/`, built on
/// first use and rebuilt when the files change (so a new column is picked up).
#[derive(Debug)]
pub struct TenantSchema {
    warehouse: Arc<Warehouse>,
    tenant: String,
    tables: Mutex<HashMap<String, BuiltTable>>,
    /// The event log's tables, when live tables are on.
    live: Option<Arc<LiveTables>>,
    /// The audiences' tables, once attached.
    crm: Arc<CrmTables>,
}

/// A table provider and the file listing it was built from.
type BuiltTable = (Listing, Arc<dyn TableProvider>);

impl TenantSchema {
    /// The schema of `tenant`, which must already be validated.
    pub fn new(
        warehouse: Arc<Warehouse>,
        tenant: &str,
        live: Option<Arc<LiveTables>>,
        crm: Arc<CrmTables>,
    ) -> Self {
        Self {
            warehouse,
            tenant: tenant.to_string(),
            tables: Mutex::new(HashMap::new()),
            live,
            crm,
        }
    }

    /// Whether `name` is a CRM table served here.
    fn crm(&self, name: &str) -> bool {
        crate::crm::is_crm_table(name) && self.crm.attached()
    }

    /// The live tables, if `name` is one of them.
    fn live(&self, name: &str) -> Option<&Arc<LiveTables>> {
        self.live.as_ref().filter(|live| live.is_live(name))
    }

    /// The tenant this schema serves.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }
}

#[async_trait]
impl SchemaProvider for TenantSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.warehouse.table_names(&self.tenant);
        if let Some(live) = &self.live {
            names.extend(live.table_names().map(str::to_owned));
        }
        if self.crm.attached() {
            names.extend(crate::crm::TABLES.map(str::to_owned));
        }
        names.sort();
        names.dedup();
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if !is_table_name(name) {
            return Ok(None);
        }
        if let Some(live) = self.live(name) {
            let table = live
                .provider(&self.tenant, name)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            return Ok(Some(table));
        }
        if self.crm(name) {
            return Ok(Some(self.crm.provider(&self.tenant, name).await?));
        }
        let Some(listing) = self.warehouse.list(name, &self.tenant) else {
            return Ok(None);
        };
        let cached = self
            .tables
            .lock()
            .map_err(|_| DataFusionError::Internal("table cache poisoned".into()))?
            .get(name)
            .filter(|(l, _)| *l == listing)
            .map(|(_, t)| Arc::clone(t));
        if let Some(table) = cached {
            return Ok(Some(table));
        }
        let table = self
            .warehouse
            .table_provider(name, &self.tenant, listing.format)
            .await?;
        self.tables
            .lock()
            .map_err(|_| DataFusionError::Internal("table cache poisoned".into()))?
            .insert(name.to_string(), (listing, Arc::clone(&table)));
        Ok(Some(table))
    }

    fn table_exist(&self, name: &str) -> bool {
        is_table_name(name)
            && (self.live(name).is_some()
                || self.crm(name)
                || self.warehouse.list(name, &self.tenant).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_cannot_escape_the_path() {
        for bad in [
            "",
            "..",
            "a/b",
            "a b",
            "tenant=a",
            "a\0",
            "x*",
            &"a".repeat(65),
        ] {
            assert!(validate_tenant(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["acme", "shop-42", "A_b"] {
            assert!(validate_tenant(good).is_ok());
        }
    }

    #[test]
    fn only_plain_identifiers_are_tables() {
        assert!(is_table_name("orders"));
        assert!(is_table_name("order_items2"));
        for bad in [
            "Orders",
            "../orders",
            "orders/tenant=b",
            "tenant=b",
            "1x",
            "",
            "a.b",
        ] {
            assert!(!is_table_name(bad), "{bad:?} accepted");
        }
    }
}
