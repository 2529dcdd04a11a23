//! External sources: a source's tables appear under its schema in every tenant's catalog, each
//! tenant sees only what the source serves it, they join with warehouse tables, and a broken
//! source configuration is refused at start-up.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::{model_path, text};
use sql::arrow::array::{Int64Array, RecordBatch, StringArray};
use sql::arrow::datatypes::{DataType, Field, Schema};
use sql::datafusion::catalog::TableProvider;
use sql::datafusion::datasource::MemTable;
use sql::datafusion::error::Result as DfResult;
use sql::{DashboardEngine, EngineConfig, ExternalSource, SqlError};

/// A source serving one in-memory table `visits(channel, visits)` per tenant.
#[derive(Debug)]
struct Visits {
    name: String,
    per_tenant: HashMap<String, Vec<(&'static str, i64)>>,
}

#[async_trait]
impl ExternalSource for Visits {
    fn schema_name(&self) -> &str {
        &self.name
    }

    fn table_names(&self, tenant: &str) -> Vec<String> {
        if self.per_tenant.contains_key(tenant) {
            vec!["visits".to_string()]
        } else {
            Vec::new()
        }
    }

    async fn table(&self, tenant: &str, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some(rows) = self.per_tenant.get(tenant).filter(|_| name == "visits") else {
            return Ok(None);
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("channel", DataType::Utf8, false),
            Field::new("visits", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )?;
        Ok(Some(Arc::new(MemTable::try_new(
            schema,
            vec![vec![batch]],
        )?)))
    }
}

fn visits(name: &str) -> Arc<dyn ExternalSource> {
    Arc::new(Visits {
        name: name.to_string(),
        per_tenant: HashMap::from([
            (
                "acme".to_string(),
                vec![("naver", 1000), ("kakao", 400), ("google", 600)],
            ),
            ("globex".to_string(), vec![("secret", 999_999)]),
        ]),
    })
}

async fn engine(
    sources: Vec<Arc<dyn ExternalSource>>,
) -> (tempfile::TempDir, Result<DashboardEngine, SqlError>) {
    let f = common::fixture().await;
    let root = f.warehouse();
    let engine = DashboardEngine::new(EngineConfig {
        warehouse: root,
        models: vec![model_path()],
        cache_ttl: Duration::from_secs(300),
        cache_entries: 100,
        sources,
        limits: sql::QueryLimits::default(),
        live: None,
    })
    .await;
    (f.dir, engine)
}

#[tokio::test]
async fn source_tables_join_warehouse_tables_per_tenant() {
    let (_dir, engine) = engine(vec![visits("web")]).await;
    let engine = engine.unwrap();
    let sql = "SELECT o.channel, sum(o.revenue) / max(v.visits) AS revenue_per_visit \
               FROM orders o JOIN web.visits v ON o.channel = v.channel \
               WHERE o.status = 'paid' GROUP BY o.channel ORDER BY o.channel";
    let out = text(&engine.sql("acme", sql).await.unwrap());
    // acme paid revenue: google 300, kakao 200, naver 100 + 80.
    assert!(out.contains("google") && out.contains("0.5"), "{out}");
    assert!(out.contains("kakao") && out.contains("0.5"), "{out}");
    assert!(out.contains("naver") && out.contains("0.18"), "{out}");
    assert!(!out.contains("secret"), "{out}");

    let tables = text(
        &engine
            .sql(
                "acme",
                "SELECT table_schema, table_name FROM information_schema.tables \
                 WHERE table_schema = 'web'",
            )
            .await
            .unwrap(),
    );
    assert!(tables.contains("visits"), "{tables}");
}

#[tokio::test]
async fn a_tenant_the_source_does_not_serve_has_no_such_table() {
    let (_dir, engine) = engine(vec![visits("web")]).await;
    let engine = engine.unwrap();
    let globex = text(
        &engine
            .sql("globex", "SELECT sum(visits) FROM web.visits")
            .await
            .unwrap(),
    );
    assert!(globex.contains("999999"), "{globex}");
    let acme = text(
        &engine
            .sql("acme", "SELECT sum(visits) FROM web.visits")
            .await
            .unwrap(),
    );
    assert!(acme.contains("2000") && !acme.contains("999999"), "{acme}");
    let err = engine
        .sql("other", "SELECT * FROM web.visits")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("visits"), "{err}");
}

#[tokio::test]
async fn reserved_or_duplicate_source_names_are_refused() {
    for (sources, expect) in [
        (vec![visits("public")], "reserved"),
        (vec![visits("information_schema")], "reserved"),
        (vec![visits("Web")], "lowercase identifier"),
        (vec![visits("web"), visits("web")], "two sources"),
    ] {
        let (_dir, engine) = engine(sources).await;
        let err = engine.unwrap_err().to_string();
        assert!(err.contains(expect), "{err}");
    }
}
