//! The dashboard engine's sources outside the warehouse, built from `[dashboard.trino]` and
//! `[dashboard.ga4]`, with their credentials read from the secrets store (never from the
//! configuration file).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use connectors::ga4::Ga4Config;
use sql::ExternalSource;
use sql::ga4::{Ga4Source, Ga4SourceConfig, Ga4TenantConfig};
use sql::trino::{TrinoSource, TrinoSourceConfig};

use crate::config::Config;
use crate::sender::SecretsHandle;

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
