//! The tenant wall: nothing a tenant writes — SQL, spec, join, subquery, CTE, catalog query,
//! quoted or path-looking name, or a cache hit — reaches another tenant's rows or tables.
//! Tenant `globex` has an order of 999999 on channel `secret` and a table `vault`; acme must
//! never see any of them.

mod common;

use common::{fixture, rows, text};
use serde_json::json;
use sql::{SqlError, check_read_only};

const LEAKS: [&str; 4] = ["999999", "secret", "vault", "globex"];

fn assert_clean(what: &str, body: &str) {
    for leak in LEAKS {
        assert!(!body.contains(leak), "{what} leaked `{leak}`: {body}");
    }
}

#[tokio::test]
async fn sql_sees_only_the_tenants_rows() {
    let f = fixture().await;
    let queries = [
        "SELECT * FROM orders",
        "SELECT * FROM public.orders",
        "SELECT * FROM tidemark.public.orders",
        "SELECT * FROM \"orders\"",
        "SELECT o.*, a.* FROM orders o FULL JOIN ad_spend a ON o.channel = a.channel",
        "WITH x AS (SELECT * FROM orders) SELECT * FROM x UNION ALL SELECT * FROM orders",
        "SELECT * FROM orders WHERE order_id IN (SELECT order_id FROM orders WHERE revenue > 0)",
        "SELECT (SELECT max(revenue) FROM orders) AS m, count(*) FROM ad_spend",
        "SELECT * FROM orders WHERE EXISTS (SELECT 1 FROM ad_spend WHERE channel = 'secret')",
        "SELECT channel, sum(revenue) FROM orders GROUP BY channel",
        "SELECT table_catalog, table_schema, table_name FROM information_schema.tables",
        "SELECT * FROM information_schema.columns",
        "SELECT * FROM information_schema.schemata",
        "SHOW TABLES",
        "SHOW COLUMNS FROM orders",
        "SELECT * FROM information_schema.df_settings WHERE name LIKE '%catalog%'",
        "EXPLAIN SELECT * FROM orders",
        "DESCRIBE orders",
    ];
    for q in queries {
        let result = f
            .engine
            .sql("acme", q)
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_clean(q, &text(&result));
    }
    let all = f
        .engine
        .sql("acme", "SELECT count(*) FROM orders")
        .await
        .unwrap();
    assert_eq!(rows(&all), vec![vec!["6".to_string()]]);
    let theirs = f
        .engine
        .sql("globex", "SELECT revenue, channel FROM orders")
        .await
        .unwrap();
    assert_eq!(
        rows(&theirs),
        vec![vec!["999999.0".to_string(), "secret".to_string()]]
    );
}

#[tokio::test]
async fn other_tenants_tables_and_paths_cannot_be_named() {
    let f = fixture().await;
    let root = f.warehouse();
    let root = root.display();
    let queries = [
        "SELECT * FROM vault".to_string(),
        "SELECT * FROM \"tenant=globex\"".to_string(),
        "SELECT * FROM \"orders/tenant=globex\"".to_string(),
        "SELECT * FROM \"../orders/tenant=globex\"".to_string(),
        "SELECT * FROM \"orders\".\"tenant=globex\"".to_string(),
        "SELECT * FROM globex.public.orders".to_string(),
        "SELECT * FROM datafusion.public.orders".to_string(),
        "SELECT * FROM \"ORDERS\"".to_string(),
        format!("SELECT * FROM '{root}/orders/tenant=globex/part-0.parquet'"),
        format!("SELECT * FROM 'file://{root}/orders/tenant=globex/part-0.parquet'"),
        "SELECT * FROM 'tidemark://warehouse/orders/tenant=globex/part-0.parquet'".to_string(),
        format!("SELECT * FROM read_parquet('{root}/orders/tenant=globex/part-0.parquet')"),
        "SELECT * FROM information_schema.tables t JOIN vault v ON true".to_string(),
    ];
    for q in &queries {
        match f.engine.sql("acme", q).await {
            Err(e) => {
                assert!(e.is_client_error(), "{q}: {e:?}");
                // The error may echo the query's own words, nothing more.
                for leak in LEAKS.iter().filter(|l| !q.contains(*l)) {
                    assert!(!e.to_string().contains(leak), "{q} leaked `{leak}`: {e}");
                }
            }
            Ok(r) => panic!("{q} answered: {}", text(&r)),
        }
    }
}

#[tokio::test]
async fn only_read_only_statements_run() {
    let f = fixture().await;
    let root = f.warehouse();
    let root = root.display();
    let statements = [
        format!(
            "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '{root}/orders/tenant=globex/'"
        ),
        "CREATE TABLE x AS SELECT * FROM orders".to_string(),
        "CREATE VIEW v AS SELECT * FROM orders".to_string(),
        "CREATE SCHEMA s".to_string(),
        "CREATE DATABASE d".to_string(),
        "DROP TABLE orders".to_string(),
        "INSERT INTO orders SELECT * FROM orders".to_string(),
        "DELETE FROM orders".to_string(),
        "UPDATE orders SET revenue = 0".to_string(),
        format!("COPY orders TO '{root}/orders/tenant=globex/evil.parquet'"),
        "COPY (SELECT 1) TO '/tmp/x.csv'".to_string(),
        "SET datafusion.execution.target_partitions = 1".to_string(),
        "PREPARE p AS SELECT * FROM orders".to_string(),
        "BEGIN".to_string(),
        "CREATE FUNCTION f() RETURNS INT RETURN 1".to_string(),
        "EXPLAIN CREATE TABLE y AS SELECT 1".to_string(),
    ];
    for s in &statements {
        match f.engine.sql("acme", s).await {
            Err(SqlError::NotAllowed(m)) => assert!(m.contains("not allowed"), "{m}"),
            Err(e) => assert!(e.is_client_error(), "{s}: {e:?}"),
            Ok(r) => panic!("{s} ran: {}", text(&r)),
        }
    }
    // Nothing was created or written: the tables are unchanged, for both tenants.
    let tables = f.engine.sql("acme", "SHOW TABLES").await.unwrap();
    let names: Vec<String> = rows(&tables).into_iter().map(|r| r[2].clone()).collect();
    for name in ["x", "v", "y", "evil"] {
        assert!(
            !names.contains(&name.to_string()),
            "{name} exists: {names:?}"
        );
    }
    let theirs = f
        .engine
        .sql("globex", "SELECT count(*) FROM orders")
        .await
        .unwrap();
    assert_eq!(rows(&theirs), vec![vec!["1".to_string()]]);
    assert!(
        !f.warehouse()
            .join("orders/tenant=globex/evil.parquet")
            .exists()
    );
}

#[tokio::test]
async fn specs_are_confined_to_the_tenant() {
    let f = fixture().await;
    let spec = json!({
        "measures": ["orders.gross_revenue", "ad_spend.spend", "ad_spend.roas"],
        "dimensions": ["orders.channel"]
    });
    let result = f.engine.query_spec("acme", &spec).await.unwrap();
    assert_clean("spec", &text(&result));
    // A filter value is a literal, never SQL.
    let spec = json!({
        "measures": ["orders.gross_revenue"],
        "filters": [{"member": "orders.channel", "operator": "equals",
                     "values": ["x' OR '1'='1"]}]
    });
    let result = f.engine.query_spec("acme", &spec).await.unwrap();
    assert_eq!(rows(&result), vec![vec!["NULL".to_string()]]);
    let spec = json!({"measures": ["orders.gross_revenue"],
        "filters": [{"member": "orders.channel", "operator": "contains", "values": ["%"]}]});
    assert_eq!(
        rows(&f.engine.query_spec("acme", &spec).await.unwrap()),
        vec![vec!["NULL".to_string()]]
    );
}

#[tokio::test]
async fn the_cache_never_crosses_tenants() {
    let f = fixture().await;
    let q = "SELECT channel, sum(revenue) AS r FROM orders GROUP BY channel ORDER BY channel";
    let acme = f.engine.sql("acme", q).await.unwrap();
    let acme_again = f.engine.sql("acme", q).await.unwrap();
    assert!(!acme.cached && acme_again.cached);
    let globex = f.engine.sql("globex", q).await.unwrap();
    assert!(!globex.cached, "globex must not get acme's cached answer");
    assert!(text(&globex).contains("secret"));
    assert_clean("acme cached", &text(&acme_again));
    let spec = json!({"measures": ["orders.gross_revenue"], "dimensions": ["orders.channel"]});
    let a = f.engine.query_spec("acme", &spec).await.unwrap();
    let g = f.engine.query_spec("globex", &spec).await.unwrap();
    assert!(!g.cached);
    assert_clean("acme spec", &text(&a));
    assert!(text(&g).contains("secret"));
}

#[tokio::test]
async fn tenant_ids_are_checked_before_use() {
    let f = fixture().await;
    for tenant in [
        "",
        "../globex",
        "globex/..",
        "acme/../globex",
        "tenant=globex",
        "a b",
    ] {
        match f.engine.sql(tenant, "SELECT 1").await {
            Err(SqlError::BadRequest { field, .. }) => assert_eq!(field, "tenant"),
            other => panic!("{tenant:?}: {other:?}"),
        }
    }
    // An unknown but valid tenant simply has no tables.
    let err = f
        .engine
        .sql("nobody", "SELECT * FROM orders")
        .await
        .unwrap_err();
    assert!(err.is_client_error());
    let spec = json!({"measures": ["orders.revenue"]});
    assert!(matches!(
        f.engine.query_spec("nobody", &spec).await,
        Err(SqlError::NoData(_))
    ));
}

#[tokio::test]
async fn pgwire_sessions_have_the_same_wall() {
    let f = fixture().await;
    let ctx = f.engine.session("acme").await.unwrap();
    let state = ctx.state();
    let plan = state
        .create_logical_plan("SELECT channel FROM orders")
        .await
        .unwrap();
    check_read_only(&plan).unwrap();
    let batches = ctx
        .execute_logical_plan(plan)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let body = format!("{batches:?}");
    assert!(body.contains("naver") && !body.contains("secret"));
    let ddl = state
        .create_logical_plan("CREATE TABLE t AS VALUES (1)")
        .await
        .unwrap();
    assert!(matches!(
        check_read_only(&ddl),
        Err(SqlError::NotAllowed(_))
    ));
    // Even a caller that skipped the check cannot add a table to the tenant's catalog.
    assert!(ctx.sql("CREATE TABLE t AS VALUES (1)").await.is_err());
    assert!(ctx.sql("CREATE VIEW v AS SELECT 1").await.is_err());
    assert!(ctx.sql("SELECT * FROM vault").await.is_err());
    let tables = ctx
        .sql("SHOW TABLES")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let body = format!("{tables:?}");
    assert!(!body.contains("vault") && !body.contains("\"t\""));
}
