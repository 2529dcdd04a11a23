//! Model files are checked against the tenants' real tables when the engine starts.

mod common;

use std::time::Duration;

use common::{fixture, model_path};
use sql::{DashboardEngine, EngineConfig, SqlError};

async fn start(f: &common::Fixture, model: &str) -> Result<DashboardEngine, SqlError> {
    let path = f.dir.path().join("bad.toml");
    std::fs::write(&path, model).unwrap();
    DashboardEngine::new(EngineConfig {
        warehouse: f.warehouse(),
        models: vec![path],
        cache_ttl: Duration::from_secs(1),
        cache_entries: 1,
        sources: Vec::new(),
        limits: sql::QueryLimits::default(),
        live: None,
    })
    .await
}

#[tokio::test]
async fn a_column_typo_fails_at_start_naming_file_and_member() {
    let f = fixture().await;
    let err = start(
        &f,
        r#"
        [sources.orders]
        table = "orders"
        [sources.orders.measures.revenue]
        type = "sum"
        column = "revenu"
    "#,
    )
    .await
    .unwrap_err();
    match err {
        SqlError::Model {
            file,
            member,
            message,
        } => {
            assert!(file.ends_with("bad.toml"));
            assert_eq!(member, "orders.revenue");
            assert!(message.contains("no column `revenu`"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let err = start(
        &f,
        r#"
        [sources.orders]
        table = "orders"
        [sources.orders.dimensions.weekday]
        sql = "date_part('dow', no_such_column)"
        type = "number"
    "#,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, SqlError::Model { member, .. } if member == "orders.weekday"),
        "{err:?}"
    );
    let err = start(
        &f,
        r#"
        [sources.orders]
        table = "orders"
        [sources.orders.dimensions.when]
        column = "channel"
        type = "time"
    "#,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("date or timestamp"), "{err}");
}

#[tokio::test]
async fn the_demo_model_fits_the_demo_tables() {
    let f = fixture().await;
    let engine = DashboardEngine::new(EngineConfig {
        warehouse: f.warehouse(),
        models: vec![model_path(), model_path()],
        cache_ttl: Duration::from_secs(1),
        cache_entries: 1,
        sources: Vec::new(),
        limits: sql::QueryLimits::default(),
        live: None,
    })
    .await;
    // The same file twice defines every source twice.
    assert!(matches!(engine, Err(SqlError::Model { .. })));
    assert!(f.engine.model().source("web_sessions").is_some());
}

/// A tenant whose `orders` hold only files live tables compacted from its events (columns of
/// the event mapping, not the model's) does not stop the engine from starting: the model is
/// checked against a tenant with loaded files.
#[tokio::test]
async fn compacted_event_files_of_one_tenant_do_not_fail_the_start() {
    use std::sync::Arc;

    use sql::arrow::array::{ArrayRef, Float64Array};
    let f = fixture().await;
    let root = f.warehouse();
    common::write(
        &root,
        "orders",
        "0-live-only",
        "live-2026-12-03-00000000000000000001-00000000000000000002.parquet",
        vec![(
            "revenue",
            Arc::new(Float64Array::from(vec![1.0, 2.0])) as ArrayRef,
        )],
    );
    let started = start(
        &f,
        r#"
        [sources.orders]
        table = "orders"
        [sources.orders.measures.orders]
        type = "count_distinct"
        column = "order_id"
    "#,
    )
    .await;
    assert!(started.is_ok(), "{:?}", started.err());
    // A typo is still caught, against the tenants with loaded files.
    let err = start(
        &f,
        r#"
        [sources.orders]
        table = "orders"
        [sources.orders.measures.orders]
        type = "count_distinct"
        column = "order_idd"
    "#,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("order_idd"), "{err}");
}
