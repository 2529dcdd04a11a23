//! Dashboards over HTTP end to end: the real `tidemark serve` over a generated warehouse,
//! `POST /v1/query` and `POST /v1/sql` in JSON, CSV and Arrow IPC, errors, the result cache and
//! the tenant wall. Expected numbers are computed from the Parquet files directly.

#[path = "support/shop.rs"]
mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sql::arrow::ipc::reader::StreamReader;
use support::{KEY_A, KEY_B, KEY_C, ORDERS_A, ORDERS_B, Shop, close};

struct Answer {
    status: StatusCode,
    cache: String,
    content_type: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

async fn post(
    shop: &Shop,
    path: &str,
    key: Option<&str>,
    body: String,
    accept: Option<&str>,
) -> Answer {
    let mut request = connectors::http::client()
        .post(format!("{}{path}", shop.base))
        .body(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.expect("request reaches tidemark");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    Answer {
        status: response.status(),
        cache: header("x-tidemark-cache"),
        content_type: header("content-type"),
        body: response.bytes().await.expect("body").to_vec(),
    }
}

async fn sql(shop: &Shop, key: &str, text: &str) -> Answer {
    post(shop, "/v1/sql", Some(key), text.to_string(), None).await
}

/// `{channel: (revenue, orders)}` from a JSON answer with those three columns.
fn by_channel(
    answer: &Value,
    channel: &str,
    revenue: &str,
    orders: &str,
) -> Vec<(String, f64, i64)> {
    answer["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            (
                row[channel].as_str().expect("channel").to_string(),
                row[revenue].as_f64().expect("revenue"),
                row[orders].as_i64().expect("orders"),
            )
        })
        .collect()
}

#[tokio::test]
async fn spec_and_sql_answers_match_the_files() {
    let shop = Shop::start().await;
    let expected = shop.paid_by_channel("shop-a");
    assert_eq!(expected.len(), 6, "six channels: {expected:?}");

    let spec = json!({
        "measures": ["orders.revenue", "orders.orders"],
        "dimensions": ["orders.channel"],
        "time": {"dimension": "orders.date", "range": ["2025-01-01", "2025-12-31"],
                 "timezone": "Asia/Seoul"},
        "order": [{"member": "orders.channel", "direction": "asc"}]
    });
    let answer = post(&shop, "/v1/query", Some(KEY_A), spec.to_string(), None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json());
    assert!(answer.content_type.starts_with("application/json"));
    let body = answer.json();
    assert_eq!(body["row_count"], 6);
    assert_eq!(
        body["columns"][0],
        json!({"name": "orders.channel", "type": "string"})
    );
    let rows = by_channel(&body, "orders.channel", "orders.revenue", "orders.orders");
    for ((channel, revenue, orders), (want_channel, (want_revenue, want_orders))) in
        rows.iter().zip(&expected)
    {
        assert_eq!(channel, want_channel);
        assert!(
            close(*revenue, *want_revenue),
            "{channel}: {revenue} vs {want_revenue}"
        );
        assert_eq!(orders, want_orders, "{channel}");
    }

    // The same question in SQL, as JSON text and as {"sql": …}.
    let text = "SELECT channel, sum(revenue) AS revenue, count(*) AS orders FROM orders \
                WHERE status = 'paid' GROUP BY channel ORDER BY channel";
    for body in [text.to_string(), json!({"sql": text}).to_string()] {
        let answer = post(&shop, "/v1/sql", Some(KEY_A), body, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.json());
        let rows = by_channel(&answer.json(), "channel", "revenue", "orders");
        assert_eq!(rows.len(), 6);
        for ((channel, revenue, orders), (_, (want_revenue, want_orders))) in
            rows.iter().zip(&expected)
        {
            assert!(close(*revenue, *want_revenue), "{channel}");
            assert_eq!(orders, want_orders);
        }
    }

    // Invariants of the generated data, checked through the engine.
    let answer = sql(
        &shop,
        KEY_A,
        "SELECT count(*) AS n, min(order_id) AS lo, max(order_id) AS hi, \
           count(DISTINCT order_date) AS days FROM orders",
    )
    .await;
    let row = &answer.json()["rows"][0];
    assert_eq!(row["n"], ORDERS_A as i64);
    assert_eq!(row["lo"], 1);
    assert_eq!(row["hi"], ORDERS_A as i64);
    assert_eq!(row["days"], 365);
    let answer = sql(
        &shop,
        KEY_A,
        "SELECT count(*) AS mismatched FROM orders o JOIN \
           (SELECT order_id, sum(revenue) AS gross, sum(quantity) AS qty FROM order_items \
            GROUP BY order_id) i ON i.order_id = o.order_id \
         WHERE abs(i.gross - (o.revenue + o.discount)) > 0.001 OR i.qty <> o.items",
    )
    .await;
    assert_eq!(answer.json()["rows"][0]["mismatched"], 0);
    let answer = sql(
        &shop,
        KEY_A,
        "SELECT sum(conversions) AS c FROM web_sessions",
    )
    .await;
    assert_eq!(answer.json()["rows"][0]["c"], ORDERS_A as i64);
}

#[tokio::test]
async fn csv_and_arrow_formats() {
    let shop = Shop::start().await;
    let text = "SELECT channel, count(*) AS orders FROM orders GROUP BY channel ORDER BY channel";
    let expected = shop.orders_by_channel("shop-a");

    let answer = post(&shop, "/v1/sql?format=csv", Some(KEY_A), text.into(), None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.content_type.starts_with("text/csv"),
        "{}",
        answer.content_type
    );
    let csv = String::from_utf8(answer.body).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("channel,orders"));
    let rows: Vec<String> = lines.map(str::to_string).collect();
    let want: Vec<String> = expected.iter().map(|(c, n)| format!("{c},{n}")).collect();
    assert_eq!(rows, want);

    let answer = post(&shop, "/v1/sql", Some(KEY_A), text.into(), Some("text/csv")).await;
    assert!(answer.content_type.starts_with("text/csv"));

    let arrow = "application/vnd.apache.arrow.stream";
    let answer = post(&shop, "/v1/sql", Some(KEY_A), text.into(), Some(arrow)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.content_type, arrow);
    let reader = StreamReader::try_new(std::io::Cursor::new(answer.body), None).unwrap();
    assert_eq!(reader.schema().field(0).name(), "channel");
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 6);

    let answer = post(&shop, "/v1/sql?format=xml", Some(KEY_A), text.into(), None).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.json()["error"]["field"], "format");
}

#[tokio::test]
async fn bad_requests_name_the_problem() {
    let shop = Shop::start().await;
    let answer = post(&shop, "/v1/query", None, "{}".into(), None).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

    let spec = json!({"measures": ["orders.revenu"], "dimensions": ["orders.channel"]});
    let answer = post(&shop, "/v1/query", Some(KEY_A), spec.to_string(), None).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let error = &answer.json()["error"];
    assert_eq!(error["code"], "bad_request");
    assert_eq!(error["field"], "measures[0]", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("revenu"),
        "{error}"
    );

    let spec = json!({"measures": ["orders.revenue"],
                      "filters": [{"member": "orders.channel", "operator": "like", "values": ["n"]}]});
    let answer = post(&shop, "/v1/query", Some(KEY_A), spec.to_string(), None).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(
        answer.json()["error"]["field"]
            .as_str()
            .unwrap()
            .starts_with("filters[0]"),
        "{}",
        answer.json()
    );

    let answer = post(&shop, "/v1/query", Some(KEY_A), "{not json".into(), None).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.json()["error"]["code"], "invalid_json");

    let answer = sql(&shop, KEY_A, "SELEC 1").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.json()["error"]["field"], "sql");

    // A pattern that is not a regular expression is the query's fault, whichever function
    // or operator takes it.
    for text in [
        "SELECT channel FROM orders WHERE channel ~ '(' LIMIT 1",
        "SELECT channel FROM orders WHERE regexp_like(channel, '[') LIMIT 1",
        "SELECT regexp_replace(channel, '(', 'x') FROM orders LIMIT 1",
    ] {
        let answer = sql(&shop, KEY_A, text).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{text}");
        let error = &answer.json()["error"];
        assert_eq!(error["field"], "sql", "{error}");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("invalid regular expression"),
            "{text}: {error}"
        );
    }

    let answer = sql(&shop, KEY_A, "SELECT no_such_column FROM orders").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(
        answer.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no_such_column")
    );

    for statement in [
        "DELETE FROM orders",
        "INSERT INTO orders (order_id) VALUES (1)",
        "CREATE TABLE t AS SELECT 1",
        "DROP TABLE orders",
        "COPY orders TO '/tmp/x.csv'",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let answer = sql(&shop, KEY_A, statement).await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{statement}: {}",
            answer.json()
        );
        let error = &answer.json()["error"];
        assert_eq!(error["code"], "not_allowed", "{statement}");
        assert!(
            error["message"].as_str().unwrap().contains("not allowed"),
            "{error}"
        );
    }
    // Still all there.
    let answer = sql(&shop, KEY_A, "SELECT count(*) AS n FROM orders").await;
    assert_eq!(answer.json()["rows"][0]["n"], ORDERS_A as i64);
}

#[tokio::test]
async fn cached_answers_equal_fresh_ones() {
    let shop = Shop::start().await;
    let spec = json!({
        "measures": ["order_items.revenue"],
        "dimensions": ["order_items.product"],
        "segments": ["order_items.paid"],
        "analysis": {"type": "abc", "measure": "order_items.revenue"},
        "order": [{"member": "order_items.revenue", "direction": "desc"}],
        "limit": 20
    });
    let first = post(&shop, "/v1/query", Some(KEY_A), spec.to_string(), None).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.json());
    assert_eq!(first.cache, "miss");
    let second = post(&shop, "/v1/query", Some(KEY_A), spec.to_string(), None).await;
    assert_eq!(second.cache, "hit");
    let (mut a, mut b) = (first.json(), second.json());
    assert_eq!(a["cached"], false);
    assert_eq!(b["cached"], true);
    a["cached"] = Value::Null;
    b["cached"] = Value::Null;
    a["warnings"] = Value::Null;
    b["warnings"] = Value::Null;
    assert_eq!(a, b);
    // The top product is class A (Zipf popularity: no single product has 80 % of revenue).
    assert_eq!(a["rows"][0]["abc_class"], "A", "{a}");
    assert_eq!(a["row_count"], 20);

    // Another tenant asking the same never gets shop-a's cached answer.
    let other = post(&shop, "/v1/query", Some(KEY_B), spec.to_string(), None).await;
    assert_eq!(other.cache, "miss");
    assert_ne!(other.json()["rows"], a["rows"]);

    // The cache's hits and misses are visible to Prometheus.
    let metrics = connectors::http::client()
        .get(format!("{}/metrics", shop.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |cache: &str| -> f64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("tidemark_dashboard_queries_total{")
                    && l.contains("endpoint=\"query\"")
                    && l.contains(&format!("cache=\"{cache}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert_eq!((count("hit"), count("miss")), (1.0, 2.0), "{metrics}");
}

#[tokio::test]
async fn tenants_see_only_their_own_data() {
    let shop = Shop::start().await;
    let count = "SELECT count(*) AS n FROM orders";
    assert_eq!(
        sql(&shop, KEY_A, count).await.json()["rows"][0]["n"],
        ORDERS_A as i64
    );
    assert_eq!(
        sql(&shop, KEY_B, count).await.json()["rows"][0]["n"],
        ORDERS_B as i64
    );

    // shop-a's own table does not exist for shop-b, in queries or in the catalog.
    let answer = sql(&shop, KEY_A, "SELECT count(*) AS n FROM vip_orders").await;
    assert_eq!(answer.json()["rows"][0]["n"], ORDERS_A as i64);
    let answer = sql(&shop, KEY_B, "SELECT count(*) AS n FROM vip_orders").await;
    assert!(answer.status.is_client_error(), "{}", answer.json());
    let tables = "SELECT table_name FROM information_schema.tables \
                  WHERE table_schema = 'public' ORDER BY table_name";
    let names = |answer: &Answer| -> Vec<String> {
        answer.json()["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["table_name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(names(&sql(&shop, KEY_A, tables).await).contains(&"vip_orders".to_string()));
    let b_tables = names(&sql(&shop, KEY_B, tables).await);
    assert!(
        !b_tables.contains(&"vip_orders".to_string()),
        "{b_tables:?}"
    );
    assert!(b_tables.contains(&"orders".to_string()), "{b_tables:?}");

    // Paths and other tenants' partitions are not reachable by name.
    for text in [
        "SELECT * FROM \"tenant=shop-a\"",
        "SELECT * FROM read_parquet('../orders/tenant=shop-a')",
        "SELECT count(*) FROM 'orders/tenant=shop-a/2025-01.parquet'",
    ] {
        let answer = sql(&shop, KEY_B, text).await;
        assert!(answer.status.is_client_error(), "{text}: {}", answer.json());
    }

    // A tenant with no files has its (live, still empty) orders and nobody else's rows.
    let answer = sql(&shop, KEY_C, count).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json());
    assert_eq!(answer.json()["rows"][0]["n"], 0);
    let spec = json!({"measures": ["orders.revenue"]});
    let answer = post(&shop, "/v1/query", Some(KEY_C), spec.to_string(), None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json());
    assert_eq!(answer.json()["rows"][0]["orders.revenue"], Value::Null);
    // A table nobody has is still a clear error.
    let answer = sql(&shop, KEY_C, "SELECT count(*) FROM vip_orders").await;
    assert!(answer.status.is_client_error(), "{}", answer.json());
}
