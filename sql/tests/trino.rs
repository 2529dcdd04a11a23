//! The Trino source against a real Trino (`TRINO_URL`, started and seeded by `.ci/trino.sh`):
//! pushed-down answers equal Trino's own and DataFusion's local ones, tenants are walled off
//! inside the SQL Trino receives, and hostile filter values keep their meaning.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::catalog::MemorySchemaProvider;
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionContext, col, lit};
use sql::trino::dashboards::{DASHBOARD_QUERIES, direct_sql};
use sql::trino::{TrinoSource, TrinoSourceConfig};
use sql::{DashboardEngine, EngineConfig};

const TABLES: &[&str] = &[
    "orders",
    "order_items",
    "products",
    "customers",
    "ad_spend",
    "notes",
];

async fn source() -> Option<Arc<TrinoSource>> {
    let Ok(url) = std::env::var("TRINO_URL") else {
        eprintln!("TRINO_URL is unset: skipping (bash .ci/trino.sh start gives one)");
        return None;
    };
    let config = TrinoSourceConfig::new(url, "tidemark-test", "memory", "demo");
    Some(Arc::new(
        TrinoSource::connect(config).await.expect("connect"),
    ))
}

async fn engine(source: Arc<TrinoSource>, dir: &tempfile::TempDir) -> DashboardEngine {
    DashboardEngine::new(EngineConfig {
        warehouse: dir.path().to_path_buf(),
        models: vec![],
        cache_ttl: Duration::ZERO,
        cache_entries: 0,
        sources: vec![source],
        limits: sql::QueryLimits::default(),
        live: None,
    })
    .await
    .expect("engine")
}

/// A plain DataFusion session with the tenant's rows of every table in memory, under the same
/// names (`trino.orders`…): what "evaluating the same plan locally" runs on.
async fn local(source: &TrinoSource, tenant: &str) -> SessionContext {
    let ctx = SessionContext::new();
    sql::functions::register(&ctx);
    let schema = Arc::new(MemorySchemaProvider::new());
    ctx.catalog("datafusion")
        .unwrap()
        .register_schema("trino", Arc::clone(&schema) as _)
        .unwrap();
    for table in TABLES {
        let provider = sql::source::ExternalSource::table(source, tenant, table)
            .await
            .unwrap()
            .unwrap();
        let expected = provider.schema();
        let columns = expected
            .fields()
            .iter()
            .map(|f| format!("\"{}\"", f.name()))
            .collect::<Vec<_>>()
            .join(", ");
        let (_, batches) = source
            .client()
            .query_all(&format!(
                "SELECT {columns} FROM memory.demo.{table} WHERE tenant = '{tenant}'"
            ))
            .await
            .unwrap();
        let batches = batches
            .into_iter()
            .map(|b| RecordBatch::try_new(Arc::clone(&expected), b.columns().to_vec()).unwrap())
            .collect::<Vec<_>>();
        let mem = MemTable::try_new(expected, vec![batches]).unwrap();
        ctx.register_table(format!("trino.{table}"), Arc::new(mem))
            .unwrap();
    }
    ctx
}

/// Rows as text, floats to 12 significant digits (sums of doubles may differ in the last bits
/// with the order of addition), in the query's order when `ordered`, else sorted.
fn rows(batches: &[RecordBatch], ordered: bool) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect::<Vec<_>>();
        for row in 0..batch.num_rows() {
            out.push(
                batch
                    .columns()
                    .iter()
                    .zip(&formatters)
                    .map(|(column, f)| match column.data_type() {
                        DataType::Float64 if column.is_valid(row) => {
                            let v = column
                                .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
                                .value(row);
                            format!("{v:.12e}")
                        }
                        _ => f.value(row).to_string(),
                    })
                    .collect(),
            );
        }
    }
    if !ordered {
        out.sort();
    }
    out
}

async fn run_local(ctx: &SessionContext, sql: &str) -> Vec<RecordBatch> {
    ctx.sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Column types, decimals by scale only: DataFusion's own rewrites (e.g. of `count(DISTINCT)`
/// beside a `sum`) widen a decimal sum's precision differently from plan to plan; the values
/// are compared exactly anyway.
fn types(schema: &datafusion::arrow::datatypes::Schema) -> Vec<DataType> {
    schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Decimal128(_, s) => DataType::Decimal128(38, *s),
            t => t.clone(),
        })
        .collect()
}

#[tokio::test]
async fn dashboard_queries_match_trino_and_local_evaluation() {
    let Some(source) = source().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(Arc::clone(&source), &dir).await;
    let local = local(&source, "acme").await;
    for (name, query) in DASHBOARD_QUERIES {
        let before = source.transfer();
        let sent_before = source.sent_sql().len();
        let pushed = engine
            .sql("acme", query)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let transfer = source.transfer().since(&before);
        let sent = source.sent_sql()[sent_before..].to_vec();

        let direct = direct_sql(query, TABLES, "memory", "demo", "tenant", "acme");
        let (_, trino_batches) = source
            .client()
            .query_all(&direct)
            .await
            .unwrap_or_else(|e| panic!("{name} in Trino: {e}"));
        let local_batches = run_local(&local, query).await;

        let expected = rows(&local_batches, true);
        assert!(!expected.is_empty(), "{name}: no rows locally");
        assert_eq!(
            rows(&pushed.batches, true),
            expected,
            "{name}: pushed vs local"
        );
        assert_eq!(
            rows(&trino_batches, true),
            expected,
            "{name}: Trino vs local"
        );
        let local_schema = local_batches[0].schema();
        assert_eq!(
            types(&pushed.schema),
            types(&local_schema),
            "{name}: column types"
        );

        // The whole query went to Trino as one statement, and only result rows came back.
        assert_eq!(sent.len(), 1, "{name}: {sent:?}");
        assert!(sent[0].contains("GROUP BY"), "{name}: {}", sent[0]);
        assert_eq!(
            transfer.rows as usize,
            expected.len(),
            "{name}: {}",
            sent[0]
        );
    }
}

/// A deterministic pseudo-random generator (no dependency, same sequence everywhere).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.next(items.len())]
    }
}

#[tokio::test]
async fn randomized_filters_and_aggregates_match_local_evaluation() {
    let Some(source) = source().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(Arc::clone(&source), &dir).await;
    let local = local(&source, "acme").await;
    let filters = [
        "o.channel = 'google'",
        "o.channel IN ('meta', 'naver', 'nowhere')",
        "o.status <> 'paid'",
        "o.revenue > 100000.50",
        "o.revenue <= 50000",
        "o.order_date >= DATE '2025-02-15'",
        "o.order_ts < TIMESTAMP '2025-01-20 12:00:00'",
        "o.items BETWEEN 2 AND 3",
        "o.coupon IS NULL",
        "o.coupon IS NOT NULL",
        "o.device LIKE 'mob%'",
        "NOT (o.discount = 0)",
        "(o.customer_id % 7 = 3 OR o.customer_id > 390)",
        "lower(o.channel) <> upper(o.channel)",
        "length(o.device) = 6",
        "o.order_date - INTERVAL '3' DAY > DATE '2025-03-01'",
    ];
    let groups = [
        "o.channel",
        "o.device",
        "o.status",
        "o.order_date",
        "o.items",
        "o.coupon",
    ];
    let aggregates = [
        "count(*)",
        "sum(o.revenue)",
        "min(o.order_ts)",
        "max(o.discount)",
        "count(DISTINCT o.customer_id)",
        "avg(o.items)",
        "sum(o.items * 2 + 1)",
        "min(o.coupon)",
        "count(o.coupon)",
        "sum(CASE WHEN o.status = 'paid' THEN o.revenue ELSE 0 END)",
    ];
    let mut rng = Lcg(20_251_125);
    for case in 0..40 {
        let mut where_: Vec<&str> = Vec::new();
        for _ in 0..1 + rng.next(3) {
            where_.push(rng.pick(&filters));
        }
        let mut by: Vec<&str> = Vec::new();
        for _ in 0..rng.next(3) {
            let g = rng.pick(&groups);
            if !by.contains(&g) {
                by.push(g);
            }
        }
        let mut aggs: Vec<String> = Vec::new();
        for i in 0..1 + rng.next(3) {
            aggs.push(format!("{} AS a{i}", rng.pick(&aggregates)));
        }
        let select: Vec<String> = by.iter().map(|g| g.to_string()).chain(aggs).collect();
        let mut query = format!(
            "SELECT {} FROM trino.orders o WHERE {}",
            select.join(", "),
            where_.join(" AND ")
        );
        if !by.is_empty() {
            query.push_str(&format!(" GROUP BY {}", by.join(", ")));
        }
        let pushed = engine
            .sql("acme", &query)
            .await
            .unwrap_or_else(|e| panic!("case {case}: {query}: {e}"));
        let expected = run_local(&local, &query).await;
        assert_eq!(
            rows(&pushed.batches, false),
            rows(&expected, false),
            "case {case}: {query}"
        );
        let sent = source.sent_sql();
        assert!(
            sent.last().is_some_and(|s| s.contains("WHERE")),
            "case {case}: filters were not pushed: {sent:?}"
        );
    }
}

#[tokio::test]
async fn tenants_only_see_their_rows_and_the_wall_is_in_the_sql() {
    let Some(source) = source().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(Arc::clone(&source), &dir).await;
    let count = |tenant: &'static str, sql: &'static str| {
        let engine = &engine;
        async move {
            let r = engine.sql(tenant, sql).await.unwrap();
            r.batches[0].column(0).as_primitive::<Int64Type>().value(0)
        }
    };
    assert_eq!(
        count("acme", "SELECT count(*) FROM trino.orders").await,
        2500
    );
    let sent = source.sent_sql();
    assert!(
        sent.last().unwrap().contains(r#""tenant" = 'acme'"#),
        "{sent:?}"
    );
    assert_eq!(
        count("globex", "SELECT count(*) FROM trino.orders").await,
        1500
    );
    assert!(
        source
            .sent_sql()
            .last()
            .unwrap()
            .contains(r#""tenant" = 'globex'"#)
    );
    // Order ids of globex stop at 1500; acme's go to 2500.
    assert_eq!(
        count("globex", "SELECT max(order_id) FROM trino.orders").await,
        1500
    );
    // Joins and self-joins are walled table by table.
    assert_eq!(
        count(
            "globex",
            "SELECT count(*) FROM trino.orders a JOIN trino.orders b ON a.order_id = b.order_id"
        )
        .await,
        1500
    );
    let join_sql = source.sent_sql().last().unwrap().clone();
    assert_eq!(
        join_sql.matches(r#""tenant" = 'globex'"#).count(),
        2,
        "{join_sql}"
    );
    assert!(!join_sql.contains("acme"));
    // An OR in the user's filter cannot reach around the wall.
    assert_eq!(
        count(
            "globex",
            "SELECT count(*) FROM trino.orders WHERE order_id > 0 OR 1 = 1"
        )
        .await,
        1500
    );
    // The tenant column is not there to filter on.
    let err = engine
        .sql(
            "globex",
            "SELECT count(*) FROM trino.orders WHERE tenant = 'acme'",
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("tenant"), "{err}");
    // The tables are listed for every tenant.
    let r = engine
        .sql(
            "acme",
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'trino' \
             ORDER BY table_name",
        )
        .await
        .unwrap();
    assert_eq!(r.num_rows(), TABLES.len());
}

#[tokio::test]
async fn hostile_filter_values_keep_their_meaning() {
    let Some(source) = source().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(Arc::clone(&source), &dir).await;
    // What is stored, read back without any filter.
    let (_, batches) = source
        .client()
        .query_all("SELECT note_id, body FROM memory.demo.notes WHERE tenant = 'acme'")
        .await
        .unwrap();
    let mut stored: HashMap<String, Vec<i64>> = HashMap::new();
    for b in &batches {
        for row in 0..b.num_rows() {
            stored
                .entry(b.column(1).as_string::<i32>().value(row).to_string())
                .or_default()
                .push(b.column(0).as_primitive::<Int64Type>().value(row));
        }
    }
    let big = format!("big{}", "x".repeat(1_048_576 - 3));
    assert!(stored.contains_key(&big), "the seed has a 1 MB note");
    let mut values: Vec<String> = stored.keys().cloned().collect();
    values.extend(
        [
            "' OR '1'='1",
            "x' OR 1=1 --",
            "it's",
            "it\u{2019}s\u{0}",
            "\\' OR 1=1 /*",
            "*/ OR 1=1",
            "nul\u{0}byte' --",
            "\u{FF07} OR 1=1 -- \u{2028}",
        ]
        .map(String::from),
    );
    values.push(format!("{big}y"));
    values.push(format!("{}' OR '1'='1", "\\".repeat(1000)));
    let ctx = engine.session("acme").await.unwrap();
    for value in &values {
        let expected = stored.get(value).cloned().unwrap_or_default();
        for negate in [false, true] {
            let predicate = if negate {
                col("body").not_eq(lit(value.as_str()))
            } else {
                col("body").eq(lit(value.as_str()))
            };
            let df = ctx
                .table("trino.notes")
                .await
                .unwrap()
                .filter(predicate)
                .unwrap()
                .select(vec![col("note_id")])
                .unwrap();
            let batches = df
                .collect()
                .await
                .unwrap_or_else(|e| panic!("{:?}: {e}", &value[..value.len().min(40)]));
            let mut ids: Vec<i64> = batches
                .iter()
                .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
                .collect();
            ids.sort();
            let mut want: Vec<i64> = if negate {
                stored
                    .iter()
                    .filter(|(k, _)| *k != value)
                    .flat_map(|(_, v)| v.clone())
                    .collect()
            } else {
                expected.clone()
            };
            want.sort();
            assert_eq!(
                ids,
                want,
                "value {:?} (negated: {negate})",
                &value[..value.len().min(40)]
            );
        }
        let sent = source.sent_sql();
        assert!(
            sent.last().unwrap().contains(r#""tenant" = 'acme'"#),
            "the filter was pushed next to the wall"
        );
    }
}

#[tokio::test]
async fn without_pushdown_raw_rows_come_back_and_answers_agree() {
    let Some(source) = source().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let pushed_engine = engine(Arc::clone(&source), &dir).await;
    let scan_source = Arc::new(source.with_pushdown(false));
    let scan_engine = engine(Arc::clone(&scan_source), &dir).await;
    let query = DASHBOARD_QUERIES[0].1;
    let before = source.transfer();
    let pushed = pushed_engine.sql("acme", query).await.unwrap();
    let pushed_rows = source.transfer().since(&before).rows;
    let before = scan_source.transfer();
    let scanned = scan_engine.sql("acme", query).await.unwrap();
    let scanned_rows = scan_source.transfer().since(&before).rows;
    assert_eq!(rows(&pushed.batches, true), rows(&scanned.batches, true));
    assert_eq!(pushed_rows as usize, pushed.num_rows());
    assert_eq!(scanned_rows, 2500, "all of acme's orders, no more");
    let sent = scan_source.sent_sql();
    let scan_sql = sent.last().unwrap();
    assert!(!scan_sql.contains("GROUP BY"), "{scan_sql}");
    assert!(scan_sql.contains(r#""tenant" = 'acme'"#), "{scan_sql}");
}

#[tokio::test]
async fn tidemark_functions_run_locally_over_the_pushed_aggregate() {
    let Some(source) = source().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(Arc::clone(&source), &dir).await;
    let local = local(&source, "acme").await;
    let query = "SELECT p.category, p.name, sum(i.revenue) AS revenue, \
                 abc_class(CAST(sum(i.revenue) AS DOUBLE)) OVER (PARTITION BY p.category) AS class \
                 FROM trino.order_items i JOIN trino.products p ON i.product_id = p.product_id \
                 GROUP BY p.category, p.name ORDER BY p.category, revenue DESC, p.name";
    let before = source.transfer();
    let pushed = engine.sql("acme", query).await.unwrap();
    let transfer = source.transfer().since(&before);
    let expected = run_local(&local, query).await;
    assert_eq!(rows(&pushed.batches, true), rows(&expected, true));
    let sent = source.sent_sql();
    let sql = sent.last().unwrap();
    assert!(sql.contains("GROUP BY") && sql.contains("JOIN"), "{sql}");
    assert!(!sql.contains("abc_class"), "{sql}");
    assert_eq!(
        transfer.rows as usize,
        pushed.num_rows(),
        "aggregated rows only"
    );
}

#[tokio::test]
async fn trino_errors_reach_the_caller_with_their_details() {
    let Some(source) = source().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(Arc::clone(&source), &dir).await;
    // Valid for DataFusion, fails in Trino at run time (division by zero on every row).
    let err = engine
        .sql(
            "acme",
            "SELECT sum(o.items / (o.items - o.items)) FROM trino.orders o",
        )
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("DIVISION_BY_ZERO"), "{text}");
}

/// Revenue per (channel, segment) as `f64`, from a result whose first two columns are the keys
/// and whose third is the measure.
fn by_key(batches: &[RecordBatch]) -> std::collections::BTreeMap<(String, String), f64> {
    let mut out = std::collections::BTreeMap::new();
    for batch in batches {
        let text =
            |i: usize| datafusion::arrow::compute::cast(batch.column(i), &DataType::Utf8).unwrap();
        let (a, b) = (text(0), text(1));
        let v = datafusion::arrow::compute::cast(batch.column(2), &DataType::Float64).unwrap();
        let (a, b, v) = (
            a.as_string::<i32>(),
            b.as_string::<i32>(),
            v.as_primitive::<datafusion::arrow::datatypes::Float64Type>(),
        );
        for i in 0..batch.num_rows() {
            if a.is_null(i) {
                continue; // the spec's grand-total row, if any
            }
            out.insert(
                (a.value(i).to_string(), b.value(i).to_string()),
                if v.is_null(i) { 0.0 } else { v.value(i) },
            );
        }
    }
    out
}

#[tokio::test]
async fn dashboard_specs_run_over_trino_tables_named_in_the_semantic_model() {
    let Some(source) = source().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("trino.toml");
    std::fs::write(
        &model,
        r#"
[sources.torders]
table = "trino.orders"

[[sources.torders.joins]]
table = "trino.customers"
on = ["customer_id"]

[sources.torders.dimensions.channel]
column = "channel"
type = "string"

[sources.torders.dimensions.segment]
column = "trino.customers.segment"
type = "string"

[sources.torders.measures.revenue]
type = "sum"
column = "revenue"
filter = "status = 'paid'"
"#,
    )
    .unwrap();
    let warehouse = dir.path().join("warehouse");
    std::fs::create_dir_all(&warehouse).unwrap();
    let engine = DashboardEngine::new(EngineConfig {
        warehouse,
        models: vec![model],
        cache_ttl: Duration::ZERO,
        cache_entries: 0,
        sources: vec![Arc::clone(&source) as _],
        limits: sql::QueryLimits::default(),
        live: None,
    })
    .await
    .expect("engine over a model naming trino tables");
    let spec = serde_json::json!({
        "measures": ["torders.revenue"],
        "dimensions": ["torders.channel", "torders.segment"],
        "order": [{"member": "torders.channel"}, {"member": "torders.segment"}]
    });
    for tenant in ["acme", "globex"] {
        let answer = engine
            .query_spec(tenant, &spec)
            .await
            .expect("spec over trino");
        let expected = engine
            .sql(
                tenant,
                "SELECT o.channel, c.segment, \
                        sum(CASE WHEN o.status = 'paid' THEN o.revenue END) \
                 FROM trino.orders o LEFT JOIN trino.customers c ON o.customer_id = c.customer_id \
                 GROUP BY 1, 2",
            )
            .await
            .unwrap();
        let (got, want) = (by_key(&answer.batches), by_key(&expected.batches));
        assert!(!want.is_empty(), "{tenant}: no rows");
        assert_eq!(got.len(), want.len(), "{tenant}: {got:?} vs {want:?}");
        for (key, w) in &want {
            let g = got
                .get(key)
                .unwrap_or_else(|| panic!("{tenant}: {key:?} missing"));
            assert!(
                (g - w).abs() < 1e-6 * w.abs().max(1.0),
                "{tenant} {key:?}: {g} vs {w}"
            );
        }
    }
    // The tenant predicate went to Trino with the spec's SQL.
    let sent = source.sent_sql();
    assert!(
        sent.iter().any(|s| s.contains(r#""tenant" = 'globex'"#)),
        "{sent:?}"
    );
}
