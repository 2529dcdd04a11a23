//! Dashboard specs end to end on the fixture warehouse (see `common` for the data and the
//! hand-worked numbers).

mod common;

use common::{columns, fixture, rows};
use serde_json::json;
use sql::SqlError;

fn r(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn revenue_orders_and_aov_by_channel() {
    let f = fixture().await;
    let spec = json!({
        "measures": ["orders.revenue", "orders.orders", "orders.aov"],
        "dimensions": ["orders.channel"],
        "time": {"dimension": "orders.date", "range": ["2024-06-01", "2024-06-03"]}
    });
    let result = f.engine.query_spec("acme", &spec).await.unwrap();
    assert_eq!(
        columns(&result),
        r(&[
            "orders.channel",
            "orders.revenue",
            "orders.orders",
            "orders.aov"
        ])
    );
    // Paid only: the refunded and the cancelled naver orders do not count. Default order:
    // first measure, largest first.
    assert_eq!(
        rows(&result),
        vec![
            r(&["google", "300.0", "1", "300.0"]),
            r(&["kakao", "200.0", "1", "200.0"]),
            r(&["naver", "100.0", "1", "100.0"]),
        ]
    );
    assert!(!result.cached);
}

#[tokio::test]
async fn daily_buckets_follow_the_time_zone() {
    let f = fixture().await;
    let by_day = |tz: &str| {
        json!({
            "measures": ["orders.revenue", "orders.all_orders"],
            "time": {"dimension": "orders.order_ts", "grain": "day",
                     "range": ["2024-06-01", "2024-06-03"], "timezone": tz}
        })
    };
    let seoul = f
        .engine
        .query_spec("acme", &by_day("Asia/Seoul"))
        .await
        .unwrap();
    assert_eq!(columns(&seoul)[0], "orders.order_ts.day");
    // Order 2 (2024-06-01 16:00 UTC) is on June 2 in Seoul.
    assert_eq!(
        rows(&seoul),
        vec![
            r(&["2024-06-01T00:00:00+09:00", "100.0", "1"]),
            r(&["2024-06-02T00:00:00+09:00", "200.0", "2"]),
            r(&["2024-06-03T00:00:00+09:00", "300.0", "2"]),
        ]
    );
    let utc = f.engine.query_spec("acme", &by_day("UTC")).await.unwrap();
    // In UTC, June 2 only has the refunded order: paid revenue is NULL (no paid rows).
    assert_eq!(
        rows(&utc),
        vec![
            r(&["2024-06-01T00:00:00Z", "300.0", "2"]),
            r(&["2024-06-02T00:00:00Z", "NULL", "1"]),
            r(&["2024-06-03T00:00:00Z", "300.0", "2"]),
        ]
    );
}

#[tokio::test]
async fn roas_joins_orders_and_ad_spend_on_date_and_channel() {
    let f = fixture().await;
    let spec = json!({
        "measures": ["ad_spend.spend", "orders.revenue", "ad_spend.roas"],
        "dimensions": ["ad_spend.channel"],
        "time": {"dimension": "ad_spend.date", "range": ["2024-06-01", "2024-06-03"]},
        "order": [{"member": "ad_spend.channel", "direction": "asc"}]
    });
    let result = f.engine.query_spec("acme", &spec).await.unwrap();
    assert_eq!(
        rows(&result),
        vec![
            r(&["google", "150.0", "300.0", "2.0"]),
            r(&["kakao", "100.0", "200.0", "2.0"]),
            r(&["naver", "75.0", "100.0", "1.3333333333333333"]),
        ]
    );
    // By day and channel: each day's revenue meets the same day's spend.
    let spec = json!({
        "measures": ["ad_spend.roas"],
        "dimensions": ["ad_spend.channel"],
        "time": {"dimension": "ad_spend.date", "grain": "day", "range": ["2024-06-01", "2024-06-03"]},
        "filters": [{"member": "ad_spend.channel", "operator": "equals", "values": ["naver"]}]
    });
    let result = f.engine.query_spec("acme", &spec).await.unwrap();
    // naver: 06-01 100/50 = 2; 06-02 spend 25 but only a refunded order → NULL; 06-03 a
    // cancelled order and no spend → NULL (the sources are full-outer-joined on the keys).
    assert_eq!(
        rows(&result),
        vec![
            r(&["2024-06-01", "naver", "2.0"]),
            r(&["2024-06-02", "naver", "NULL"]),
            r(&["2024-06-03", "naver", "NULL"])
        ]
    );
}

#[tokio::test]
async fn compare_with_previous_period_and_total_row() {
    let f = fixture().await;
    let spec = json!({
        "measures": ["orders.revenue"],
        "dimensions": ["orders.channel"],
        "time": {"dimension": "orders.date", "range": ["2024-06-01", "2024-06-30"]},
        "compare": "previousPeriod",
        "total": true
    });
    let result = f.engine.query_spec("acme", &spec).await.unwrap();
    assert_eq!(
        columns(&result),
        r(&[
            "orders.channel",
            "orders.revenue",
            "orders.revenue.compare",
            "orders.revenue.change",
            "orders.revenue.change_pct",
            "is_total"
        ])
    );
    // June against May (a whole month back): only naver sold in May (80).
    assert_eq!(
        rows(&result),
        vec![
            r(&["google", "300.0", "NULL", "NULL", "NULL", "false"]),
            r(&["kakao", "200.0", "NULL", "NULL", "NULL", "false"]),
            r(&["naver", "100.0", "80.0", "20.0", "0.25", "false"]),
            r(&["NULL", "600.0", "80.0", "520.0", "6.5", "true"]),
        ]
    );
}

#[tokio::test]
async fn abc_and_quadrant_analyses() {
    let f = fixture().await;
    let spec = json!({
        "measures": ["orders.revenue"],
        "dimensions": ["orders.channel"],
        "time": {"dimension": "orders.date", "range": "this month", "now": "2024-06-20T00:00:00Z"},
        "analysis": {"type": "abc", "measure": "orders.revenue"}
    });
    let result = f.engine.query_spec("acme", &spec).await.unwrap();
    // 300 / 600 = 0.5 → A; (300 + 200) / 600 = 0.83 → B; 600 / 600 → C.
    assert_eq!(
        rows(&result),
        vec![
            r(&["google", "300.0", "0.5", "A"]),
            r(&["kakao", "200.0", "0.8333333333333334", "B"]),
            r(&["naver", "100.0", "1.0", "C"]),
        ]
    );
    let spec = json!({
        "measures": ["ad_spend.spend", "ad_spend.roas"],
        "dimensions": ["ad_spend.channel"],
        "time": {"dimension": "ad_spend.date", "range": ["2024-06-01", "2024-06-03"]},
        "analysis": {"type": "quadrant", "x": "ad_spend.spend", "y": "ad_spend.roas", "labels": true},
        "order": [{"member": "ad_spend.channel", "direction": "asc"}]
    });
    let result = f.engine.query_spec("acme", &spec).await.unwrap();
    // Mean spend 108.33, mean ROAS 1.78: google HH, kakao LH, naver LL.
    let got: Vec<(String, String, String)> = rows(&result)
        .into_iter()
        .map(|row| (row[0].clone(), row[5].clone(), row[6].clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("google".into(), "HH".into(), "star".into()),
            ("kakao".into(), "LH".into(), "question mark".into()),
            ("naver".into(), "LL".into(), "dog".into()),
        ]
    );
}

#[tokio::test]
async fn unknown_members_operators_and_values_are_bad_requests() {
    let f = fixture().await;
    let bad = |spec: serde_json::Value| {
        let engine = f.engine.clone();
        async move {
            match engine.query_spec("acme", &spec).await {
                Err(SqlError::BadRequest { field, message }) => (field, message),
                other => panic!("expected a bad request, got {other:?}"),
            }
        }
    };
    let (field, message) = bad(json!({"measures": ["orders.nope"]})).await;
    assert_eq!(field, "measures[0]");
    assert!(message.contains("orders.nope"));
    let (field, _) = bad(json!({"measures": ["orders.revenue"],
        "filters": [{"member": "orders.channel", "operator": "matches", "values": ["x"]}]}))
    .await;
    assert_eq!(field, "filters[0].operator");
    let (field, message) =
        bad(json!({"measures": ["ad_spend.spend"], "dimensions": ["orders.status"]})).await;
    assert_eq!(field, "dimensions[0]");
    assert!(message.contains("ad_spend"), "{message}");
    let (field, _) =
        bad(json!({"measures": ["orders.revenue"], "order": [{"member": "orders.nope"}]})).await;
    assert_eq!(field, "order[0].member");
}

async fn channels(f: &common::Fixture, filters: serde_json::Value) -> Vec<String> {
    let spec = json!({
        "measures": ["orders.all_orders"],
        "dimensions": ["orders.channel"],
        "filters": filters,
        "order": [["orders.channel", "asc"]]
    });
    let result = f.engine.query_spec("acme", &spec).await.unwrap();
    rows(&result)
        .into_iter()
        .map(|row| format!("{}:{}", row[0], row[1]))
        .collect()
}

#[tokio::test]
async fn filter_operators() {
    let f = fixture().await;
    let c = |member: &str, op: &str, values: serde_json::Value| json!([{"member": member, "operator": op, "values": values}]);
    assert_eq!(
        channels(&f, json!([])).await,
        ["google:1", "kakao:1", "naver:4"]
    );
    assert_eq!(
        channels(&f, c("orders.channel", "equals", json!(["naver"]))).await,
        ["naver:4"]
    );
    assert_eq!(
        channels(&f, c("orders.channel", "notEquals", json!(["naver"]))).await,
        ["google:1", "kakao:1"]
    );
    assert_eq!(
        channels(&f, c("orders.channel", "in", json!(["kakao", "google"]))).await,
        ["google:1", "kakao:1"]
    );
    assert_eq!(
        channels(&f, c("orders.channel", "notIn", json!(["kakao", "google"]))).await,
        ["naver:4"]
    );
    assert_eq!(
        channels(&f, c("orders.channel", "contains", json!(["AV", "zzz"]))).await,
        ["naver:4"]
    );
    assert_eq!(
        channels(&f, c("orders.channel", "notContains", json!(["a"]))).await,
        ["google:1"]
    );
    assert_eq!(
        channels(&f, c("orders.channel", "startsWith", json!(["Go"]))).await,
        ["google:1"]
    );
    assert_eq!(
        channels(&f, c("orders.channel", "endsWith", json!(["ao"]))).await,
        ["kakao:1"]
    );
    assert_eq!(
        channels(&f, c("orders.customer_id", "gt", json!([11]))).await,
        ["google:1", "naver:1"]
    );
    assert_eq!(
        channels(&f, c("orders.customer_id", "gte", json!(["11"]))).await,
        ["google:1", "kakao:1", "naver:2"]
    );
    assert_eq!(
        channels(&f, c("orders.customer_id", "lt", json!([11]))).await,
        ["naver:2"]
    );
    assert_eq!(
        channels(&f, c("orders.customer_id", "lte", json!([10.5]))).await,
        ["naver:2"]
    );
    assert_eq!(
        channels(&f, c("orders.customer_id", "between", json!([11, 12]))).await,
        ["google:1", "kakao:1", "naver:1"]
    );
    assert_eq!(
        channels(&f, c("orders.channel", "set", json!([]))).await,
        ["google:1", "kakao:1", "naver:4"]
    );
    assert!(
        channels(&f, c("orders.channel", "notSet", json!([])))
            .await
            .is_empty()
    );
    // Time values: dates are whole days in the spec's zone (UTC here).
    assert_eq!(
        channels(&f, c("orders.order_ts", "gt", json!(["2024-06-02"]))).await,
        ["google:1", "naver:1"]
    );
    assert_eq!(
        channels(&f, c("orders.order_ts", "lte", json!(["2024-06-01"]))).await,
        ["kakao:1", "naver:2"]
    );
    assert_eq!(
        channels(&f, c("orders.order_ts", "equals", json!(["2024-06-02"]))).await,
        ["naver:1"]
    );
    assert_eq!(
        channels(
            &f,
            c(
                "orders.order_ts",
                "between",
                json!(["2024-06-01T10:00:00", "2024-06-02T03:00:00Z"])
            )
        )
        .await,
        ["kakao:1", "naver:1"]
    );
    assert_eq!(
        channels(
            &f,
            c("orders.date", "in", json!(["2024-05-15", "2024-06-02"]))
        )
        .await,
        ["kakao:1", "naver:2"]
    );
    // Nested and/or: (naver AND mobile) OR kakao.
    let nested = json!([{"or": [
        {"and": [{"member": "orders.channel", "operator": "equals", "values": ["naver"]},
                 {"member": "orders.device", "operator": "equals", "values": ["mobile"]}]},
        {"member": "orders.channel", "operator": "equals", "values": ["kakao"]}]}]);
    assert_eq!(channels(&f, nested).await, ["kakao:1", "naver:3"]);
    // A filter on a measure is a HAVING.
    assert_eq!(
        channels(&f, c("orders.all_orders", "gte", json!([2]))).await,
        ["naver:4"]
    );
    // Paid revenue over all time: google 300, kakao 200, naver 100 + 80 (May).
    assert_eq!(
        channels(&f, c("orders.revenue", "between", json!([150, 200]))).await,
        ["kakao:1", "naver:4"]
    );
}

#[tokio::test]
async fn segments_joins_and_pruned_joins() {
    let f = fixture().await;
    // Top products by line revenue of paid orders (order_items ⋈ products ⋈ orders), with ABC.
    let spec = json!({
        "measures": ["order_items.revenue", "order_items.quantity"],
        "dimensions": ["order_items.product", "order_items.category"],
        "segments": ["order_items.paid"],
        "analysis": {"type": "abc", "measure": "order_items.revenue"},
    });
    let result = f.engine.query_spec("acme", &spec).await.unwrap();
    // Paid lines: Tea 100 (order 1), Cup 200 + 80 (orders 2, 5), Pot 300 (order 4); total 680.
    assert_eq!(
        rows(&result),
        vec![
            r(&["Pot", "kitchen", "300.0", "3", "0.4411764705882353", "A"]),
            r(&["Cup", "kitchen", "280.0", "7", "0.8529411764705882", "B"]),
            r(&["Tea", "food", "100.0", "10", "1.0", "C"]),
        ]
    );
    // Segment via a join on orders → customers: paid revenue of VIP customers (customer 10: order 1).
    let spec = json!({"measures": ["orders.revenue"], "segments": ["orders.vip"]});
    let result = f.engine.query_spec("acme", &spec).await.unwrap();
    assert_eq!(rows(&result), vec![r(&["100.0"])]);
    let spec = json!({"measures": ["orders.revenue"], "dimensions": ["orders.customer_segment"]});
    let result = f.engine.query_spec("acme", &spec).await.unwrap();
    assert_eq!(
        rows(&result),
        vec![
            r(&["new", "300.0"]),
            r(&["regular", "280.0"]),
            r(&["vip", "100.0"])
        ]
    );
    // globex has no customers table: queries that do not need it still work (the join is
    // pruned); one that does is NoData.
    let spec = json!({"measures": ["orders.revenue"]});
    assert_eq!(
        rows(&f.engine.query_spec("globex", &spec).await.unwrap()),
        vec![r(&["999999.0"])]
    );
    let spec = json!({"measures": ["orders.revenue"], "dimensions": ["orders.customer_segment"]});
    assert!(matches!(
        f.engine.query_spec("globex", &spec).await,
        Err(SqlError::NoData(_))
    ));
}

#[tokio::test]
async fn series_analyses_and_paging() {
    let f = fixture().await;
    let spec = json!({
        "measures": ["orders.all_orders"],
        "dimensions": ["orders.channel"],
        "time": {"dimension": "orders.date", "grain": "day", "range": ["2024-06-01", "2024-06-03"]},
        "analysis": [{"type": "share", "measure": "orders.all_orders"},
                     {"type": "runningTotal", "measure": "orders.all_orders"},
                     {"type": "rank", "measure": "orders.all_orders"},
                     {"type": "change", "measure": "orders.all_orders"}],
        "filters": [{"member": "orders.channel", "operator": "in", "values": ["naver", "kakao"]}]
    });
    let result = f.engine.query_spec("acme", &spec).await.unwrap();
    assert_eq!(
        columns(&result),
        r(&[
            "orders.date.day",
            "orders.channel",
            "orders.all_orders",
            "orders.all_orders.share",
            "orders.all_orders.running_total",
            "orders.all_orders.rank",
            "orders.all_orders.previous",
            "orders.all_orders.previous_change_pct"
        ])
    );
    assert_eq!(
        rows(&result),
        vec![
            r(&["2024-06-01", "naver", "1", "1.0", "1", "1", "NULL", "NULL"]),
            r(&["2024-06-02", "kakao", "1", "0.5", "1", "1", "NULL", "NULL"]),
            r(&["2024-06-02", "naver", "1", "0.5", "2", "1", "1", "0.0"]),
            r(&["2024-06-03", "naver", "1", "1.0", "3", "1", "1", "0.0"]),
        ]
    );
    // Weekly and monthly buckets, offset and limit.
    let spec = json!({
        "measures": ["orders.revenue"],
        "time": {"dimension": "orders.date", "grain": "month"},
        "order": [{"member": "orders.date", "direction": "desc"}],
        "limit": 1, "offset": 1
    });
    let result = f.engine.query_spec("acme", &spec).await.unwrap();
    assert_eq!(rows(&result), vec![r(&["2024-05-01", "80.0"])]);
    let spec = json!({"measures": ["orders.revenue"], "time": {"dimension": "orders.order_ts", "grain": "week", "timezone": "Asia/Seoul"}});
    let result = f.engine.query_spec("acme", &spec).await.unwrap();
    assert_eq!(
        rows(&result),
        vec![
            r(&["2024-05-13T00:00:00+09:00", "80.0"]),
            r(&["2024-05-27T00:00:00+09:00", "300.0"]),
            r(&["2024-06-03T00:00:00+09:00", "300.0"])
        ]
    );
    // Dimensions alone list the distinct values.
    let spec = json!({"dimensions": ["orders.device"]});
    let result = f.engine.query_spec("acme", &spec).await.unwrap();
    assert_eq!(rows(&result), vec![r(&["desktop"]), r(&["mobile"])]);
}

#[tokio::test]
async fn relative_ranges_and_same_period_last_year() {
    let f = fixture().await;
    let spec = json!({
        "measures": ["orders.revenue"],
        "time": {"dimension": "orders.order_ts", "range": "last 7 days", "timezone": "Asia/Seoul",
                 "now": "2024-06-04T00:30:00+09:00"},
        "compare": "previousPeriod"
    });
    // Seoul days 05-28 .. 06-03: 100 + 200 + 300; the 7 days before: nothing.
    let result = f.engine.query_spec("acme", &spec).await.unwrap();
    assert_eq!(rows(&result), vec![r(&["600.0", "NULL", "NULL", "NULL"])]);
    let spec = json!({
        "measures": ["orders.revenue"],
        "time": {"dimension": "orders.date", "range": "previous month", "now": "2025-06-10T00:00:00Z"},
        "compare": "samePeriodLastYear"
    });
    // May 2025 has no orders (a total over no rows is NULL); May 2024 had 80.
    let result = f.engine.query_spec("acme", &spec).await.unwrap();
    assert_eq!(rows(&result), vec![r(&["NULL", "80.0", "NULL", "NULL"])]);
    let spec = json!({
        "measures": ["orders.revenue"],
        "time": {"dimension": "orders.date", "grain": "month", "range": ["2025-05-01", "2025-06-30"]},
        "compare": "samePeriodLastYear"
    });
    // With a grain, a bucket exists only where the current range has rows: none here.
    let result = f.engine.query_spec("acme", &spec).await.unwrap();
    assert!(rows(&result).is_empty());
    // "today" on a date dimension with an hour-precise "to date" range warns about rounding.
    let spec = json!({
        "measures": ["orders.revenue"],
        "time": {"dimension": "orders.date", "range": "month to date", "now": "2024-06-02T12:00:00Z"}
    });
    let result = f.engine.query_spec("acme", &spec).await.unwrap();
    assert_eq!(rows(&result), vec![r(&["300.0"])]);
    assert!(
        result.warnings.iter().any(|w| w.contains("whole days")),
        "{:?}",
        result.warnings
    );
}

#[tokio::test]
async fn monthly_buckets_of_a_date_roll_up_counts_minima_and_maxima() {
    let f = fixture().await;
    let spec = json!({
        "measures": ["orders.orders", "orders.min_order", "orders.max_order"],
        "time": {"dimension": "orders.date", "grain": "month", "range": ["2024-06-01", "2024-06-30"]},
        "compare": "previousPeriod"
    });
    let result = f.engine.query_spec("acme", &spec).await.unwrap();
    // June: paid orders 100, 200, 300; May: one of 80 (its bucket moved onto June).
    assert_eq!(
        rows(&result),
        vec![r(&[
            "2024-06-01",
            "3",
            "100.0",
            "300.0",
            "1",
            "2",
            "2.0",
            "80.0",
            "20.0",
            "0.25",
            "80.0",
            "220.0",
            "2.75"
        ])]
    );
}

#[tokio::test]
async fn shares_and_running_totals_of_a_distinct_count_are_counted_not_summed() {
    let f = fixture().await;
    // Paying customers: 10 (naver), 11 (kakao in June, naver in May), 12 (google). Customer 11
    // is a naver and a kakao customer, so the channels' shares add up to more than one: each
    // is the channel's customers over the 3 customers of the whole range, not over 2 + 1 + 1.
    let spec = json!({
        "measures": ["orders.customers"],
        "dimensions": ["orders.channel"],
        "time": {"dimension": "orders.date", "range": ["2024-05-01", "2024-06-30"]},
        "analysis": [{"type": "share", "measure": "orders.customers"}]
    });
    let result = f.engine.query_spec("acme", &spec).await.unwrap();
    let third = (1.0_f64 / 3.0).to_string();
    let two_thirds = (2.0_f64 / 3.0).to_string();
    assert_eq!(
        rows(&result),
        vec![
            r(&["naver", "2", &two_thirds]),
            r(&["google", "1", &third]),
            r(&["kakao", "1", &third]),
        ]
    );
    // By month: 1 customer in May, 3 in June, 3 from May through June (customer 11 bought in
    // both months and is counted once), not 1 + 3.
    let spec = json!({
        "measures": ["orders.customers"],
        "time": {"dimension": "orders.date", "grain": "month", "range": ["2024-05-01", "2024-06-30"]},
        "analysis": [{"type": "runningTotal", "measure": "orders.customers"}]
    });
    let result = f.engine.query_spec("acme", &spec).await.unwrap();
    assert_eq!(
        rows(&result),
        vec![r(&["2024-05-01", "1", "1"]), r(&["2024-06-01", "3", "3"])]
    );
    // A sum still adds up over the rows in the answer.
    let spec = json!({
        "measures": ["orders.revenue"],
        "time": {"dimension": "orders.date", "grain": "month", "range": ["2024-05-01", "2024-06-30"]},
        "analysis": [{"type": "runningTotal", "measure": "orders.revenue"}]
    });
    let result = f.engine.query_spec("acme", &spec).await.unwrap();
    assert_eq!(
        rows(&result),
        vec![
            r(&["2024-05-01", "80.0", "80.0"]),
            r(&["2024-06-01", "600.0", "680.0"])
        ]
    );
}
