//! The result cache: a hit is identical to a fresh answer, new files are seen at once, the
//! counters count, and the TTL and size bounds hold.

mod common;

use std::time::Duration;

use common::{Fixture, fixture, model_path, orders, rows};
use serde_json::json;
use sql::{CacheStats, DashboardEngine, EngineConfig};

/// An engine over the fixture's warehouse with the given result-cache bounds.
async fn engine_with_cache(
    f: &Fixture,
    cache_ttl: Duration,
    cache_entries: usize,
) -> DashboardEngine {
    DashboardEngine::new(EngineConfig {
        warehouse: f.warehouse(),
        models: vec![model_path()],
        cache_ttl,
        cache_entries,
        sources: Vec::new(),
        limits: sql::QueryLimits::default(),
        live: None,
    })
    .await
    .unwrap()
}

/// Writes (or rewrites) acme's `part-2.parquet`: one more paid order, by email, of `revenue`.
fn write_second_file(f: &Fixture, revenue: f64) {
    orders(
        &f.warehouse(),
        "acme",
        "part-2.parquet",
        &[(
            7,
            10,
            "2024-06-04T01:00:00Z",
            "2024-06-04",
            "email",
            "mobile",
            "paid",
            revenue,
        )],
    );
}

#[tokio::test]
async fn a_hit_is_identical_to_a_fresh_answer() {
    let f = fixture().await;
    let spec = json!({
        "measures": ["orders.revenue", "orders.aov", "ad_spend.roas"],
        "dimensions": ["orders.channel"],
        "time": {"dimension": "orders.date", "grain": "day", "range": ["2024-06-01", "2024-06-30"]},
        "analysis": [{"type": "share", "measure": "orders.revenue"}],
        "total": true
    });
    let fresh = f.engine.query_spec("acme", &spec).await.unwrap();
    let hit = f.engine.query_spec("acme", &spec).await.unwrap();
    assert!(!fresh.cached && hit.cached);
    assert_eq!(fresh.schema, hit.schema);
    assert_eq!(fresh.batches, hit.batches);
    assert_eq!(
        f.engine.cache_stats(),
        CacheStats {
            hits: 1,
            misses: 1,
            entries: 1
        }
    );
    // The same question in SQL is its own entry; asked twice, it hits.
    let q =
        "SELECT channel, abc_class(sum(revenue)) OVER () FROM orders GROUP BY channel ORDER BY 1";
    let a = f.engine.sql("acme", q).await.unwrap();
    let b = f.engine.sql("acme", q).await.unwrap();
    assert_eq!((a.cached, b.cached), (false, true));
    assert_eq!(a.batches, b.batches);
    // Queries that must not be cached are not.
    for q in ["SELECT random()", "SHOW TABLES", "EXPLAIN SELECT 1"] {
        f.engine.sql("acme", q).await.unwrap();
        assert!(
            !f.engine.sql("acme", q).await.unwrap().cached,
            "{q} was cached"
        );
    }
}

#[tokio::test]
async fn new_files_change_the_answer_at_once() {
    let f = fixture().await;
    let q = "SELECT count(*), sum(revenue) FROM orders";
    assert_eq!(
        rows(&f.engine.sql("acme", q).await.unwrap()),
        vec![vec!["6", "770.0"]]
    );
    assert!(f.engine.sql("acme", q).await.unwrap().cached);
    write_second_file(&f, 30.0);
    let after = f.engine.sql("acme", q).await.unwrap();
    assert!(
        !after.cached,
        "the new file must invalidate the cached answer"
    );
    assert_eq!(rows(&after), vec![vec!["7", "800.0"]]);
    // A rewritten file (same name, new content) too.
    write_second_file(&f, 35.5);
    let rewritten = f.engine.sql("acme", q).await.unwrap();
    assert!(!rewritten.cached);
    assert_eq!(rows(&rewritten), vec![vec!["7", "805.5"]]);
}

#[tokio::test]
async fn ttl_and_entry_bounds() {
    let f = fixture().await;
    let engine = engine_with_cache(&f, Duration::from_millis(200), 2).await;
    for i in 0..3 {
        engine
            .sql("acme", &format!("SELECT {i} + count(*) FROM orders"))
            .await
            .unwrap();
    }
    assert_eq!(engine.cache_stats().entries, 2);
    assert!(
        !engine
            .sql("acme", "SELECT 0 + count(*) FROM orders")
            .await
            .unwrap()
            .cached
    );
    assert!(
        engine
            .sql("acme", "SELECT 2 + count(*) FROM orders")
            .await
            .unwrap()
            .cached
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(
        !engine
            .sql("acme", "SELECT 2 + count(*) FROM orders")
            .await
            .unwrap()
            .cached
    );
    let off = engine_with_cache(&f, Duration::ZERO, 100).await;
    off.sql("acme", "SELECT 1").await.unwrap();
    assert!(!off.sql("acme", "SELECT 1").await.unwrap().cached);
}

#[tokio::test]
async fn a_repeated_spec_reuses_its_plan_and_still_sees_new_files() {
    let f = fixture().await;
    let engine = engine_with_cache(&f, Duration::ZERO, 0).await;
    let spec = json!({
        "measures": ["orders.revenue", "orders.orders"],
        "dimensions": ["orders.channel"],
        "analysis": [{"type": "share", "measure": "orders.revenue"}],
        "total": true
    });
    let planned = engine.query_spec("acme", &spec).await.unwrap();
    // Asked again, it runs a copy of the kept physical plan (the kept one never runs): every
    // copy reads every file again.
    let reused = engine.query_spec("acme", &spec).await.unwrap();
    let again = engine.query_spec("acme", &spec).await.unwrap();
    assert!(!planned.cached && !reused.cached, "the result cache is off");
    assert_eq!(planned.schema, reused.schema);
    assert_eq!(planned.batches, reused.batches);
    assert_eq!(planned.batches, again.batches);
    let stats = engine.plan_cache_stats();
    assert_eq!((stats.hits, stats.entries), (2, 1), "{stats:?}");
    // Another tenant asking the same spec plans its own query over its own files.
    let globex = engine.query_spec("globex", &spec).await.unwrap();
    assert_ne!(rows(&globex), rows(&planned));
    assert_eq!(engine.plan_cache_stats().entries, 2);

    // A new file changes the key: the spec is planned again and the answer has the new order.
    let total = |r: &sql::QueryResult| rows(r).last().cloned().unwrap();
    assert_eq!(total(&planned)[1..3], ["680.0", "4"]);
    write_second_file(&f, 30.0);
    let after = engine.query_spec("acme", &spec).await.unwrap();
    assert_eq!(total(&after)[1..3], ["710.0", "5"]);
    assert_eq!(engine.plan_cache_stats().hits, 2);

    // SQL is never served a stored plan (it may call now()).
    let q = "SELECT count(*) FROM orders";
    engine.sql("acme", q).await.unwrap();
    engine.sql("acme", q).await.unwrap();
    assert_eq!(engine.plan_cache_stats().hits, 2);
}
