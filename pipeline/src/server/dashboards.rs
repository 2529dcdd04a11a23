//! The dashboard engine's sources outside the warehouse, built from `[dashboard.trino]` and
//! `[dashboard.ga4]`, with their credentials read from the secrets store (never from the
//! configuration file).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use connectors::ga4::Ga4Config;
use sql::ga4::{Ga4Source, Ga4SourceConfig, Ga4TenantConfig};
use sql::live::LiveConfig;
use sql::trino::{TrinoSource, TrinoSourceConfig};
use sql::{DashboardEngine, EngineConfig, ExternalSource};

use crate::config::Config;
use crate::deliver::SecretsHandle;

/// Connects every configured source; an unreachable Trino or a missing secret stops start-up
/// with a message naming the configuration key.
pub async fn open_sources(
    config: &Config,
    secrets: &SecretsHandle,
) -> anyhow::Result<Vec<Arc<dyn ExternalSource>>> {
    let mut sources: Vec<Arc<dyn ExternalSource>> = Vec::new();
    if let Some(trino) = &config.dashboard.trino {
        let mut source =
            TrinoSourceConfig::new(&trino.endpoint, &trino.user, &trino.catalog, &trino.schema);
        source.tenant_column = trino.tenant_column.clone();
        source.pushdown = trino.pushdown;
        if let Some(name) = &trino.password_secret {
            let password = secrets
                .get(&trino.secrets_tenant, name)
                .await
                .with_context(|| {
                    format!(
                        "dashboard.trino.password_secret: cannot read secret '{name}' of tenant '{}'",
                        trino.secrets_tenant
                    )
                })?;
            source.password = Some(password.expose_str()?.to_owned());
        }
        let source = TrinoSource::connect(source).await.with_context(|| {
            format!(
                "dashboard.trino: cannot list the tables of {}.{} at {}",
                trino.catalog, trino.schema, trino.endpoint
            )
        })?;
        sources.push(Arc::new(source));
    }
    if let Some(ga4) = &config.dashboard.ga4 {
        let mut client = Ga4Config::default();
        if let Some(base) = &ga4.api_base {
            client.api_base = base.clone();
        }
        let mut tenants = BTreeMap::new();
        for (i, tenant) in ga4.tenants.iter().enumerate() {
            let key = secrets
                .get(&tenant.tenant, &tenant.key_secret)
                .await
                .with_context(|| {
                    format!(
                        "dashboard.ga4.tenants[{i}].key_secret: cannot read secret '{}' of tenant '{}'",
                        tenant.key_secret, tenant.tenant
                    )
                })?;
            let previous = tenants.insert(
                tenant.tenant.clone(),
                Ga4TenantConfig {
                    service_account_key: key.expose_str()?.to_owned(),
                    tables: tenant.tables.clone(),
                },
            );
            if previous.is_some() {
                anyhow::bail!(
                    "dashboard.ga4.tenants[{i}]: tenant '{}' is listed twice",
                    tenant.tenant
                );
            }
        }
        let source = Ga4Source::new(Ga4SourceConfig { client, tenants })
            .context("dashboard.ga4: invalid configuration")?;
        sources.push(Arc::new(source));
    }
    Ok(sources)
}

/// The semantic model used when `dashboard.models` is empty (the demo warehouse's tables).
const BUILT_IN_MODEL: &str = include_str!("../../../sql/models/commerce.toml");

/// Opens the dashboard engine on the configured warehouse (created empty when missing), models
/// (the built-in commerce model, written to `<data_dir>/models/`, when none are given) and
/// sources (Trino, GA4).
pub async fn open_engine(
    config: &Config,
    secrets: &crate::deliver::SecretsHandle,
    store: Arc<dyn connectors::store::Store>,
) -> anyhow::Result<DashboardEngine> {
    let warehouse = config.warehouse_dir();
    std::fs::create_dir_all(&warehouse)
        .with_context(|| format!("cannot create warehouse {}", warehouse.display()))?;
    let models = if config.dashboard.models.is_empty() {
        vec![built_in_model(&config.data_dir)?]
    } else {
        config.dashboard.models.clone()
    };
    let cache_ttl = config.dashboard.cache_ttl.get();
    DashboardEngine::new(EngineConfig {
        warehouse,
        models,
        cache_ttl,
        cache_entries: config.dashboard.cache_entries,
        sources: open_sources(config, secrets).await?,
        limits: config.dashboard.limits.query_limits(),
        live: config.dashboard.live.enabled.then(|| LiveConfig {
            store,
            decode: Arc::new(|body: &str| {
                crate::ingest::event_body::stored_attributes(body).map_err(|e| e.to_string())
            }),
            options: config.dashboard.live.options(),
        }),
    })
    .await
    .context("cannot start the dashboard engine")
}

/// Writes the built-in model where the engine can load it (a file, so errors can name it).
pub fn built_in_model(data_dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    let dir = data_dir.join("models");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("commerce.toml");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(BUILT_IN_MODEL) {
        std::fs::write(&path, BUILT_IN_MODEL)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(path)
}
