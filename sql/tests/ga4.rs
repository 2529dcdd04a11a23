//! The GA4 table provider against the local GA4 stand-in: what reaches GA4 (one runReport with
//! the query's dimensions, metrics, filters, order and limit), what DataFusion still does, what
//! is refused, and that the answers equal GA4's own definitions computed from the raw events.

use standins::ga4 as ga4_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use connectors::ga4::Ga4Config;
use ga4_support::{Event, OTHER_PROPERTY, PROPERTY, StandIn, metric};
use serde_json::{Value, json};
use sql::arrow::array::{Date32Array, Int64Array, RecordBatch, StringArray};
use sql::arrow::datatypes::{DataType, Field, Schema};
use sql::datafusion::catalog::MemorySchemaProvider;
use sql::datafusion::common::ScalarValue;
use sql::datafusion::datasource::MemTable;
use sql::datafusion::execution::session_state::SessionStateBuilder;
use sql::datafusion::parquet::arrow::ArrowWriter;
use sql::datafusion::physical_plan::{ExecutionPlan, collect, displayable};
use sql::datafusion::prelude::SessionContext;
use sql::ga4::{Ga4Source, Ga4SourceConfig, Ga4TenantConfig};
use sql::source::ExternalSource;

struct Setup {
    standin: StandIn,
    source: Arc<Ga4Source>,
    ctx: SessionContext,
}

async fn setup() -> Setup {
    let standin = StandIn::start().await;
    let tenant = |property: &str| Ga4TenantConfig {
        service_account_key: standin.key_json(),
        tables: [("web".to_string(), property.to_string())].into(),
    };
    let source = Arc::new(
        Ga4Source::new(Ga4SourceConfig {
            client: Ga4Config {
                api_base: standin.base_url.clone(),
                page_size: 50,
                initial_backoff: Duration::from_millis(5),
                ..Ga4Config::default()
            },
            tenants: [
                ("acme".to_string(), tenant(PROPERTY)),
                ("globex".to_string(), tenant(OTHER_PROPERTY)),
            ]
            .into(),
        })
        .unwrap(),
    );
    let state = source
        .configure(SessionStateBuilder::new().with_default_features())
        .build();
    let ctx = SessionContext::new_with_state(state);
    let schema = Arc::new(MemorySchemaProvider::new());
    ctx.catalog("datafusion")
        .unwrap()
        .register_schema("ga4", schema)
        .unwrap();
    let web = source.table("acme", "web").await.unwrap().unwrap();
    ctx.register_table("ga4.web", web).unwrap();
    standin.clear_log();
    Setup {
        standin,
        source,
        ctx,
    }
}

struct Answer {
    rows: Vec<Vec<ScalarValue>>,
    plan: String,
    warnings: Vec<String>,
    schema: Arc<Schema>,
}

async fn query(ctx: &SessionContext, sql: &str) -> Result<Answer, String> {
    let df = ctx.sql(sql).await.map_err(|e| e.to_string())?;
    let plan: Arc<dyn ExecutionPlan> =
        df.create_physical_plan().await.map_err(|e| e.to_string())?;
    let batches = collect(Arc::clone(&plan), ctx.task_ctx())
        .await
        .map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for b in &batches {
        for i in 0..b.num_rows() {
            rows.push(
                b.columns()
                    .iter()
                    .map(|c| ScalarValue::try_from_array(c, i).unwrap())
                    .collect(),
            );
        }
    }
    Ok(Answer {
        rows,
        plan: displayable(plan.as_ref()).indent(true).to_string(),
        warnings: sql::ga4::warnings(&plan),
        schema: plan.schema(),
    })
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn date32(d: NaiveDate) -> ScalarValue {
    ScalarValue::Date32(Some(
        (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32,
    ))
}

fn text(s: &str) -> ScalarValue {
    ScalarValue::Utf8(Some(s.to_string()))
}

fn int(v: f64) -> ScalarValue {
    ScalarValue::Int64(Some(v as i64))
}

fn assert_clean(standin: &StandIn) {
    assert!(
        standin.violations().is_empty(),
        "{:?}",
        standin.violations()
    );
}

#[tokio::test]
async fn a_query_by_date_and_channel_is_one_report_and_no_reaggregation() {
    let s = setup().await;
    let a = query(
        &s.ctx,
        "SELECT date, session_default_channel_group AS channel, SUM(sessions) AS sessions, \
                SUM(total_users) AS users \
         FROM ga4.web WHERE date BETWEEN '2026-01-03' AND '2026-01-09' \
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .await
    .unwrap();

    let sent = s.standin.run_reports();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    let r = &sent[0];
    assert_eq!(
        r["dimensions"],
        json!([{"name": "date"}, {"name": "sessionDefaultChannelGroup"}])
    );
    assert_eq!(
        r["metrics"],
        json!([{"name": "sessions"}, {"name": "totalUsers"}])
    );
    assert_eq!(
        r["dateRanges"],
        json!([{"startDate": "2026-01-03", "endDate": "2026-01-09"}])
    );
    assert_eq!(
        r["orderBys"],
        json!([
            {"dimension": {"dimensionName": "date", "orderType": "ALPHANUMERIC"}},
            {"dimension": {"dimensionName": "sessionDefaultChannelGroup", "orderType": "ALPHANUMERIC"}}
        ])
    );
    assert!(!a.plan.contains("AggregateExec"), "{}", a.plan);
    assert!(a.plan.contains("Ga4ReportExec"), "{}", a.plan);

    // Types: date → Date32, integer metrics → Int64.
    assert_eq!(a.schema.field(0).data_type(), &DataType::Date32);
    assert_eq!(a.schema.field(2).data_type(), &DataType::Int64);

    // Values are GA4's: distinct users per (date, channel), not a sum of anything finer.
    let mut groups: BTreeMap<(NaiveDate, &str), Vec<&Event>> = BTreeMap::new();
    let events = s.standin.events(PROPERTY);
    for e in &events {
        if e.date >= date("2026-01-03") && e.date <= date("2026-01-09") {
            groups.entry((e.date, e.channel)).or_default().push(e);
        }
    }
    let expected: Vec<Vec<ScalarValue>> = groups
        .iter()
        .map(|((d, c), evs)| {
            vec![
                date32(*d),
                text(c),
                int(metric(evs, "sessions").unwrap()),
                int(metric(evs, "totalUsers").unwrap()),
            ]
        })
        .collect();
    assert_eq!(a.rows, expected);
    assert_clean(&s.standin);
}

#[tokio::test]
async fn dimension_filters_are_pushed_as_one_filter_expression() {
    let s = setup().await;
    let a = query(
        &s.ctx,
        "SELECT page_path, SUM(screen_page_views) AS views FROM ga4.web \
         WHERE device_category = 'mobile' AND page_path LIKE '/products%' \
           AND country IN ('Japan', 'South Korea', 'Germany', 'France') \
           AND event_name <> 'purchase' \
           AND (session_default_channel_group ~ '^(Paid|Organic) S' \
                OR session_default_channel_group = 'Email') \
           AND date >= '2026-01-05' AND date < '2026-01-12' \
         GROUP BY page_path ORDER BY page_path",
    )
    .await
    .unwrap();
    let sent = s.standin.run_reports();
    assert_eq!(sent.len(), 1);
    let r = &sent[0];
    assert_eq!(
        r["dateRanges"],
        json!([{"startDate": "2026-01-05", "endDate": "2026-01-11"}])
    );
    let filters = r["dimensionFilter"]["andGroup"]["expressions"]
        .as_array()
        .unwrap_or_else(|| panic!("{r:#}"));
    let text = serde_json::to_string(filters).unwrap();
    // (The stand-in logs bodies as parsed JSON, so keys appear sorted.)
    for needle in [
        r#"{"filter":{"fieldName":"deviceCategory","stringFilter":{"caseSensitive":true,"matchType":"EXACT","value":"mobile"}}}"#,
        r#"{"filter":{"fieldName":"pagePath","stringFilter":{"caseSensitive":true,"matchType":"BEGINS_WITH","value":"/products"}}}"#,
        r#"{"filter":{"fieldName":"country","inListFilter":{"caseSensitive":true,"values":["Japan","South Korea","Germany","France"]}}}"#,
        r#"{"notExpression":{"filter":{"fieldName":"eventName","stringFilter":{"caseSensitive":true,"matchType":"EXACT","value":"purchase"}}}}"#,
        r#"{"orGroup":{"expressions":[{"filter":{"fieldName":"sessionDefaultChannelGroup","stringFilter":{"caseSensitive":true,"matchType":"PARTIAL_REGEXP","value":"^(Paid|Organic) S"}}},{"filter":{"fieldName":"sessionDefaultChannelGroup","stringFilter":{"caseSensitive":true,"matchType":"EXACT","value":"Email"}}}]}}"#,
    ] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
    assert!(!a.plan.contains("AggregateExec"), "{}", a.plan);
    assert!(!a.plan.contains("FilterExec"), "{}", a.plan);

    let mut expected: BTreeMap<&str, f64> = BTreeMap::new();
    let events = s.standin.events(PROPERTY);
    for e in &events {
        let keep = e.device == "mobile"
            && e.page.starts_with("/products")
            && ["Japan", "South Korea"].contains(&e.country)
            && e.name != "purchase"
            && (e.channel.starts_with("Paid S")
                || e.channel.starts_with("Organic S")
                || e.channel == "Email")
            && e.date >= date("2026-01-05")
            && e.date < date("2026-01-12");
        if keep && e.name == "page_view" {
            *expected.entry(e.page).or_default() += 1.0;
        }
    }
    let expected: Vec<Vec<ScalarValue>> = expected
        .into_iter()
        .map(|(p, v)| vec![ScalarValue::Utf8(Some(p.into())), int(v)])
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(a.rows, expected);
    assert_clean(&s.standin);
}

#[tokio::test]
async fn having_order_by_and_limit_ride_along() {
    let s = setup().await;
    let a = query(
        &s.ctx,
        "SELECT page_path, SUM(screen_page_views) AS views, AVG(bounce_rate) AS bounce \
         FROM ga4.web GROUP BY page_path \
         HAVING SUM(screen_page_views) > 50 AND AVG(bounce_rate) < 0.9 \
         ORDER BY views DESC LIMIT 3",
    )
    .await
    .unwrap();
    let sent = s.standin.run_reports();
    assert_eq!(sent.len(), 1);
    let r = &sent[0];
    assert_eq!(r["limit"], json!("3"));
    assert_eq!(
        r["orderBys"],
        json!([{"desc": true, "metric": {"metricName": "screenPageViews"}}])
    );
    let mf = serde_json::to_string(&r["metricFilter"]).unwrap();
    assert!(
        mf.contains(r#"{"fieldName":"screenPageViews","numericFilter":{"operation":"GREATER_THAN","value":{"int64Value":"50"}}}"#),
        "{mf}"
    );
    assert!(mf.contains(r#""fieldName":"bounceRate","numericFilter":{"operation":"LESS_THAN","value":{"doubleValue":0.9}}"#), "{mf}");
    assert_eq!(a.rows.len(), 3);
    let views: Vec<i64> = a
        .rows
        .iter()
        .map(|r| match r[1] {
            ScalarValue::Int64(Some(v)) => v,
            _ => panic!("{r:?}"),
        })
        .collect();
    assert!(views.windows(2).all(|w| w[0] >= w[1]), "{views:?}");
    assert!(views.iter().all(|v| *v > 50));
    assert!(!a.plan.contains("AggregateExec"), "{}", a.plan);
    assert_clean(&s.standin);
}

#[tokio::test]
async fn a_total_without_group_by_is_ga4s_total_not_a_sum_of_days() {
    let s = setup().await;
    let a = query(
        &s.ctx,
        "SELECT SUM(total_users) AS users FROM ga4.web \
         WHERE date BETWEEN '2026-01-01' AND '2026-01-07'",
    )
    .await
    .unwrap();
    let sent = s.standin.run_reports();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].get("dimensions").is_none(), "{:#}", sent[0]);
    let events = s.standin.events(PROPERTY);
    let week: Vec<&Event> = events
        .iter()
        .filter(|e| e.date <= date("2026-01-07"))
        .collect();
    let distinct = week.iter().map(|e| e.user).collect::<BTreeSet<_>>().len();
    let summed_daily: usize = (1..=7)
        .map(|d| {
            week.iter()
                .filter(|e| e.date == date(&format!("2026-01-0{d}")))
                .map(|e| e.user)
                .collect::<BTreeSet<_>>()
                .len()
        })
        .sum();
    assert!(summed_daily > distinct, "the metric is really non-additive");
    assert_eq!(a.rows, vec![vec![int(distinct as f64)]]);

    // No day matches: no request, and SQL's one row of NULL.
    s.standin.clear_log();
    let a = query(
        &s.ctx,
        "SELECT SUM(total_users) FROM ga4.web WHERE date > '2026-01-07' AND date < '2026-01-05'",
    )
    .await
    .unwrap();
    assert!(s.standin.run_reports().is_empty());
    assert_eq!(a.rows, vec![vec![ScalarValue::Int64(None)]]);

    // A HAVING that GA4 evaluates can remove that one row.
    let a = query(
        &s.ctx,
        "SELECT SUM(total_users) FROM ga4.web HAVING SUM(total_users) > 1000000",
    )
    .await
    .unwrap();
    assert_eq!(s.standin.run_reports().len(), 1);
    assert!(a.rows.is_empty(), "{:?}", a.rows);
}

#[tokio::test]
async fn re_aggregating_a_non_additive_metric_is_refused_with_a_reason() {
    let s = setup().await;
    for (sql, needles) in [
        (
            "SELECT date_trunc('quarter', date) AS q, SUM(total_users) FROM ga4.web GROUP BY 1",
            vec![
                "non-additive GA4 metric total_users (totalUsers)",
                "date_trunc",
                "by date",
            ],
        ),
        (
            "SELECT session_default_channel_group, SUM(active_users) FROM ga4.web \
             WHERE upper(device_category) = 'MOBILE' GROUP BY 1",
            vec!["activeUsers", "upper(", "device_category"],
        ),
        (
            "SELECT session_default_channel_group, SUM(sessions) FROM ga4.web \
             WHERE lower(page_path) LIKE '%shoes%' GROUP BY 1",
            vec![
                "sessions (sessions)",
                "page_path",
                "counts a session once per row",
            ],
        ),
        (
            "SELECT date_trunc('quarter', date), AVG(bounce_rate) FROM ga4.web GROUP BY 1",
            vec!["avg(", "only exact for SUM of an additive metric"],
        ),
        (
            "SELECT date_trunc('week', date), SUM(total_users), \
                    COUNT(DISTINCT session_default_channel_group) FROM ga4.web GROUP BY 1",
            vec![
                "total_users",
                "COUNT(DISTINCT",
                "session_default_channel_group",
            ],
        ),
        (
            "SELECT COUNT(*) FROM ga4.web",
            vec!["COUNT(DISTINCT <dimension>)"],
        ),
        (
            "SELECT session_default_channel_group, SUM(sessions) FROM ga4.web \
             WHERE sessions > 3 GROUP BY 1",
            vec!["HAVING"],
        ),
        (
            "SELECT sessions, COUNT(DISTINCT date) FROM ga4.web GROUP BY sessions",
            vec!["cannot GROUP BY GA4 metric sessions"],
        ),
    ] {
        let err = query(&s.ctx, sql)
            .await
            .err()
            .unwrap_or_else(|| panic!("{sql} ran"));
        for n in needles {
            assert!(err.contains(n), "{sql}\n→ {err}\n(missing {n:?})");
        }
    }
    assert!(s.standin.run_reports().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn additive_metrics_are_re_aggregated_where_that_is_exact() {
    let s = setup().await;
    let a = query(
        &s.ctx,
        "SELECT date_trunc('week', date) AS week, SUM(screen_page_views) AS views, \
                COUNT(DISTINCT session_default_channel_group) AS channels \
         FROM ga4.web WHERE date BETWEEN '2026-01-05' AND '2026-01-11' GROUP BY 1",
    )
    .await
    .unwrap();
    let sent = s.standin.run_reports();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0]["dimensions"],
        json!([{"name": "isoYearIsoWeek"}, {"name": "sessionDefaultChannelGroup"}])
    );
    let events = s.standin.events(PROPERTY);
    let views = events
        .iter()
        .filter(|e| e.date >= date("2026-01-05") && e.date <= date("2026-01-11"))
        .filter(|e| e.name == "page_view")
        .count();
    assert_eq!(a.rows.len(), 1, "2026-01-05 is a Monday: one week");
    assert_eq!(a.rows[0][1], int(views as f64));
    assert_eq!(a.rows[0][2], int(5.0));

    // Sessions add up across session-scoped dimensions (device) even when DataFusion filters.
    s.standin.clear_log();
    let a = query(
        &s.ctx,
        "SELECT session_default_channel_group AS channel, SUM(sessions) AS sessions \
         FROM ga4.web WHERE upper(device_category) = 'MOBILE' GROUP BY 1 ORDER BY 1",
    )
    .await
    .unwrap();
    let mut expected: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.device == "mobile") {
        expected.entry(e.channel).or_default().insert(e.session);
    }
    let expected: Vec<Vec<ScalarValue>> = expected
        .iter()
        .map(|(c, s)| vec![text(c), int(s.len() as f64)])
        .collect();
    assert_eq!(a.rows, expected);
    assert_clean(&s.standin);
}

#[tokio::test]
async fn conversion_rate_joins_local_orders_with_pushed_down_sessions() {
    let s = setup().await;
    // Orders by date and channel: the local side.
    let days = ["2026-01-01", "2026-01-02", "2026-01-03"];
    let channels = ["Organic Search", "Direct", "Email"];
    let mut d = Vec::new();
    let mut c = Vec::new();
    for (i, day) in days.iter().enumerate() {
        for (j, ch) in channels.iter().enumerate() {
            for _ in 0..(1 + i + j) {
                d.push(date32(date(day)));
                c.push(*ch);
            }
        }
    }
    let days32: Vec<i32> = d
        .iter()
        .map(|v| match v {
            ScalarValue::Date32(Some(x)) => *x,
            _ => unreachable!(),
        })
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("order_date", DataType::Date32, false),
        Field::new("channel", DataType::Utf8, false),
        Field::new("amount", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Date32Array::from(days32.clone())),
            Arc::new(StringArray::from(c.clone())),
            Arc::new(Int64Array::from(vec![100; c.len()])),
        ],
    )
    .unwrap();
    s.ctx
        .register_table(
            "orders",
            Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap()),
        )
        .unwrap();
    let a = query(
        &s.ctx,
        "WITH o AS (SELECT order_date AS date, channel, COUNT(*) AS orders FROM orders GROUP BY 1, 2), \
              w AS (SELECT date, session_default_channel_group AS channel, SUM(sessions) AS sessions \
                    FROM ga4.web WHERE date BETWEEN '2026-01-01' AND '2026-01-03' GROUP BY 1, 2) \
         SELECT w.date, w.channel, o.orders, w.sessions, \
                CAST(o.orders AS DOUBLE) / w.sessions AS conversion_rate \
         FROM w JOIN o ON w.date = o.date AND w.channel = o.channel ORDER BY 1, 2",
    )
    .await
    .unwrap();
    let sent = s.standin.run_reports();
    assert_eq!(sent.len(), 1, "the GA4 side is one report");
    assert_eq!(
        sent[0]["dimensions"],
        json!([{"name": "date"}, {"name": "sessionDefaultChannelGroup"}])
    );
    assert_eq!(sent[0]["metrics"], json!([{"name": "sessions"}]));
    assert_eq!(
        sent[0]["dateRanges"],
        json!([{"startDate": "2026-01-01", "endDate": "2026-01-03"}])
    );
    // Only the orders side is aggregated by DataFusion.
    assert_eq!(a.plan.matches("AggregateExec").count(), 2, "{}", a.plan); // partial + final
    assert!(a.plan.contains("Ga4ReportExec"));

    let events = s.standin.events(PROPERTY);
    assert_eq!(a.rows.len(), 9);
    for row in &a.rows {
        let (ScalarValue::Date32(Some(day)), ScalarValue::Utf8(Some(ch))) = (&row[0], &row[1])
        else {
            panic!("{row:?}")
        };
        let sessions = events
            .iter()
            .filter(|e| {
                (e.date - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32 == *day
                    && e.channel == ch
            })
            .map(|e| e.session)
            .collect::<BTreeSet<_>>()
            .len();
        let orders = days32
            .iter()
            .zip(&c)
            .filter(|(d, cc)| *d == day && *cc == ch)
            .count();
        assert_eq!(row[2], int(orders as f64));
        assert_eq!(row[3], int(sessions as f64));
        assert_eq!(
            row[4],
            ScalarValue::Float64(Some(orders as f64 / sessions as f64))
        );
    }
    assert_clean(&s.standin);
}

#[tokio::test]
async fn aggregating_non_additive_metrics_after_a_join_is_refused() {
    let s = setup().await;
    let schema = Arc::new(Schema::new(vec![Field::new(
        "channel",
        DataType::Utf8,
        false,
    )]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(StringArray::from(vec!["Email", "Direct"]))],
    )
    .unwrap();
    s.ctx
        .register_table(
            "targets",
            Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap()),
        )
        .unwrap();
    let err = query(
        &s.ctx,
        "SELECT t.channel, SUM(w.total_users) FROM targets t \
         JOIN ga4.web w ON t.channel = w.session_default_channel_group GROUP BY 1",
    )
    .await
    .err()
    .unwrap();
    assert!(
        err.contains("total_users") && err.contains("subquery"),
        "{err}"
    );
    assert!(s.standin.run_reports().is_empty());
}

#[tokio::test]
async fn a_plain_scan_is_the_report_of_the_dimensions_it_reads() {
    let s = setup().await;
    let a = query(
        &s.ctx,
        "SELECT date, sessions FROM ga4.web \
         WHERE session_default_channel_group = 'Email' AND date >= '2026-01-10' ORDER BY date",
    )
    .await
    .unwrap();
    let sent = s.standin.run_reports();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["dimensions"], json!([{"name": "date"}]));
    assert_eq!(
        sent[0]["dateRanges"],
        json!([{"startDate": "2026-01-10", "endDate": "today"}])
    );
    assert_eq!(
        sent[0]["dimensionFilter"]["filter"]["fieldName"],
        json!("sessionDefaultChannelGroup")
    );
    assert_eq!(a.rows.len(), 5, "2026-01-10 … 2026-01-14");
    assert_clean(&s.standin);
}

#[tokio::test]
async fn long_reports_are_paged_to_the_end() {
    let s = setup().await;
    // Page size is 50 in these tests; (date, page, device) has well over 100 rows.
    let a = query(
        &s.ctx,
        "SELECT date, page_path, device_category, SUM(event_count) FROM ga4.web GROUP BY 1, 2, 3",
    )
    .await
    .unwrap();
    let sent = s.standin.run_reports();
    assert!(sent.len() >= 3, "{}", sent.len());
    assert_eq!(sent[1]["offset"], json!("50"));
    let mut expected = BTreeSet::new();
    for e in s.standin.events(PROPERTY) {
        expected.insert((e.date, e.page, e.device));
    }
    assert_eq!(a.rows.len(), expected.len());
    assert_clean(&s.standin);
}

#[tokio::test]
async fn sampling_and_thresholding_are_reported_as_warnings() {
    let s = setup().await;
    s.standin.set_thresholding(true);
    let a = query(
        &s.ctx,
        "SELECT country, SUM(total_users) FROM ga4.web GROUP BY country",
    )
    .await
    .unwrap();
    assert_eq!(a.warnings.len(), 1, "{:?}", a.warnings);
    assert!(a.warnings[0].contains("thresholding"));
}

#[tokio::test]
async fn quota_errors_reach_the_query_clearly() {
    let s = setup().await;
    s.standin.set_daily_tokens(0);
    let err = query(
        &s.ctx,
        "SELECT date, SUM(sessions) FROM ga4.web GROUP BY date",
    )
    .await
    .err()
    .unwrap();
    assert!(err.contains("daily quota"), "{err}");
}

#[tokio::test]
async fn each_tenant_sees_only_its_own_properties() {
    let s = setup().await;
    assert_eq!(s.source.table_names("acme"), vec!["web"]);
    assert!(s.source.table_names("initech").is_empty());
    assert!(s.source.table("acme", "app").await.unwrap().is_none());
    assert!(s.source.table("initech", "web").await.unwrap().is_none());
    let globex = s.source.table("globex", "web").await.unwrap().unwrap();
    let t = globex.downcast_ref::<sql::ga4::Ga4Table>().unwrap();
    assert_eq!(t.property(), format!("properties/{OTHER_PROPERTY}"));
    let custom = t.column("custom_user_tier").unwrap();
    assert_eq!(custom.api_name, "customUser:tier");
}

#[tokio::test]
async fn explain_shows_the_request() {
    let s = setup().await;
    let a = query(
        &s.ctx,
        "EXPLAIN SELECT device_category, SUM(engaged_sessions) FROM ga4.web GROUP BY 1",
    )
    .await
    .unwrap();
    let text: String = a.rows.iter().map(|r| format!("{r:?}")).collect();
    assert!(text.contains("runReport"), "{text}");
    assert!(text.contains("engagedSessions"), "{text}");
    assert!(s.standin.run_reports().is_empty(), "EXPLAIN sends nothing");
    let _: Value = json!(null);
}

#[tokio::test]
async fn the_dashboard_engine_serves_ga4_tables_per_tenant() {
    let standin = StandIn::start().await;
    let tenant = |property: &str| Ga4TenantConfig {
        service_account_key: standin.key_json(),
        tables: [("web".to_string(), property.to_string())].into(),
    };
    let source = Ga4Source::new(Ga4SourceConfig {
        client: Ga4Config {
            api_base: standin.base_url.clone(),
            ..Ga4Config::default()
        },
        tenants: [
            ("acme".to_string(), tenant(PROPERTY)),
            ("globex".to_string(), tenant(OTHER_PROPERTY)),
        ]
        .into(),
    })
    .unwrap();
    let warehouse = tempfile::tempdir().unwrap();
    let engine = sql::DashboardEngine::new(sql::EngineConfig {
        warehouse: warehouse.path().to_path_buf(),
        models: Vec::new(),
        cache_ttl: Duration::ZERO,
        cache_entries: 0,
        sources: vec![Arc::new(source)],
        limits: sql::QueryLimits::default(),
        live: None,
    })
    .await
    .unwrap();
    let q = "SELECT date, SUM(sessions) AS sessions FROM ga4.web \
             WHERE date BETWEEN '2026-01-01' AND '2026-01-03' GROUP BY date ORDER BY date";
    let acme = engine.sql("acme", q).await.unwrap();
    let globex = engine.sql("globex", q).await.unwrap();
    assert_eq!(acme.num_rows(), 3);
    assert_eq!(globex.num_rows(), 3);
    let properties: Vec<String> = standin
        .requests()
        .into_iter()
        .filter(|r| r.method == "runReport")
        .map(|r| r.property)
        .collect();
    assert_eq!(
        properties,
        vec![
            format!("properties/{PROPERTY}"),
            format!("properties/{OTHER_PROPERTY}")
        ],
        "one report per query, each tenant on its own property"
    );
    let err = engine.sql("initech", q).await.unwrap_err().to_string();
    assert!(err.contains("web"), "{err}");
    let err = engine
        .sql(
            "acme",
            "SELECT date_trunc('quarter', date), SUM(total_users) FROM ga4.web GROUP BY 1",
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("non-additive"), "{err}");
    assert_clean(&standin);
}

#[tokio::test]
async fn numeric_dimension_filters_and_timestamp_bounds_are_pushed() {
    let s = setup().await;
    let a = query(
        &s.ctx,
        "SELECT day_of_week, SUM(sessions) AS sessions FROM ga4.web \
         WHERE CAST(day_of_week AS INT) BETWEEN 1 AND 5 AND CAST(day_of_week AS INT) <> 3 \
           AND CAST(date AS TIMESTAMP) >= TIMESTAMP '2026-01-04 12:00:00' \
           AND CAST(date AS TIMESTAMP) < TIMESTAMP '2026-01-11 00:00:00' \
         GROUP BY 1 ORDER BY 1",
    )
    .await
    .unwrap();
    let sent = s.standin.run_reports();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0]["dateRanges"],
        json!([{"startDate": "2026-01-05", "endDate": "2026-01-10"}])
    );
    let f = serde_json::to_string(&sent[0]["dimensionFilter"]).unwrap();
    assert!(
        f.contains(
            r#""betweenFilter":{"fromValue":{"int64Value":"1"},"toValue":{"int64Value":"5"}}"#
        ) || f.contains(r#""operation":"GREATER_THAN_OR_EQUAL","value":{"int64Value":"1"}"#),
        "{f}"
    );
    assert!(f.contains(r#"{"notExpression":{"filter":{"fieldName":"dayOfWeek","numericFilter":{"operation":"EQUAL","value":{"int64Value":"3"}}}}}"#), "{f}");
    // 2026-01-05 (Monday) … 2026-01-10 (Saturday), without Wednesday and Saturday.
    let days: Vec<ScalarValue> = a.rows.iter().map(|r| r[0].clone()).collect();
    assert_eq!(days, vec![text("1"), text("2"), text("4"), text("5")]);
    assert!(!a.plan.contains("AggregateExec"), "{}", a.plan);
    assert_clean(&s.standin);
}

#[tokio::test]
async fn a_having_ga4_cannot_express_stays_in_datafusion_and_keeps_the_limit_local() {
    let s = setup().await;
    let a = query(
        &s.ctx,
        "SELECT session_default_channel_group AS channel, SUM(sessions) AS sessions, \
                SUM(engaged_sessions) AS engaged \
         FROM ga4.web GROUP BY 1 HAVING SUM(engaged_sessions) * 1000 < SUM(sessions) * 870 \
         ORDER BY sessions DESC LIMIT 2",
    )
    .await
    .unwrap();
    let sent = s.standin.run_reports();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].get("metricFilter").is_none(), "{:#}", sent[0]);
    assert!(
        sent[0].get("limit").is_none() || sent[0]["limit"] != json!("2"),
        "{:#}",
        sent[0]
    );
    assert!(!a.plan.contains("AggregateExec"), "{}", a.plan);
    let events = s.standin.events(PROPERTY);
    let mut groups: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in &events {
        groups.entry(e.channel).or_default().push(e);
    }
    let mut expected: Vec<(i64, i64, &str)> = groups
        .iter()
        .map(|(c, evs)| {
            (
                metric(evs, "sessions").unwrap() as i64,
                metric(evs, "engagedSessions").unwrap() as i64,
                *c,
            )
        })
        .filter(|(s, e, _)| e * 1000 < s * 870)
        .collect();
    assert!(
        expected.len() > 2 && expected.len() < groups.len(),
        "the HAVING drops groups and keeps more than the LIMIT"
    );
    expected.sort_by_key(|g| std::cmp::Reverse(g.0));
    expected.truncate(2);
    let expected: Vec<Vec<ScalarValue>> = expected
        .into_iter()
        .map(|(s, e, c)| vec![text(c), int(s as f64), int(e as f64)])
        .collect();
    assert_eq!(a.rows, expected);
    assert_clean(&s.standin);
}

#[tokio::test]
async fn time_grains_are_pushed_as_calendar_dimensions() {
    let s = setup().await;
    let a = query(
        &s.ctx,
        "SELECT date_trunc('month', date) AS month, SUM(total_users) AS users \
         FROM ga4.web GROUP BY 1 ORDER BY 1",
    )
    .await
    .unwrap();
    let sent = s.standin.run_reports();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["dimensions"], json!([{"name": "yearMonth"}]));
    assert_eq!(
        sent[0]["orderBys"],
        json!([{"dimension": {"dimensionName": "yearMonth", "orderType": "ALPHANUMERIC"}}])
    );
    assert!(!a.plan.contains("AggregateExec"), "{}", a.plan);
    let events = s.standin.events(PROPERTY);
    let users = events.iter().map(|e| e.user).collect::<BTreeSet<_>>().len();
    let midnight = date("2026-01-01").and_hms_opt(0, 0, 0).unwrap();
    assert_eq!(
        a.rows,
        vec![vec![
            ScalarValue::TimestampNanosecond(
                Some(midnight.and_utc().timestamp_nanos_opt().unwrap()),
                None
            ),
            int(users as f64)
        ]]
    );

    // Weeks (ISO, starting Monday), as dates.
    s.standin.clear_log();
    let a = query(
        &s.ctx,
        "SELECT CAST(date_trunc('week', date) AS DATE) AS week, SUM(total_users) AS users \
         FROM ga4.web WHERE date >= '2026-01-05' GROUP BY 1 ORDER BY 1",
    )
    .await
    .unwrap();
    let sent = s.standin.run_reports();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["dimensions"], json!([{"name": "isoYearIsoWeek"}]));
    let mut weeks: BTreeMap<NaiveDate, BTreeSet<u32>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.date >= date("2026-01-05")) {
        let monday = e.date
            - chrono::Duration::days(i64::from(
                chrono::Datelike::weekday(&e.date).num_days_from_monday(),
            ));
        weeks.entry(monday).or_default().insert(e.user);
    }
    let expected: Vec<Vec<ScalarValue>> = weeks
        .iter()
        .map(|(m, u)| vec![date32(*m), int(u.len() as f64)])
        .collect();
    assert_eq!(expected.len(), 2);
    assert_eq!(a.rows, expected);
    assert_clean(&s.standin);
}

#[tokio::test]
async fn a_sorted_plain_scan_sends_its_order_and_limit() {
    let s = setup().await;
    let a = query(
        &s.ctx,
        "SELECT page_path, date, screen_page_views FROM ga4.web \
         WHERE event_name = 'page_view' ORDER BY screen_page_views DESC, page_path LIMIT 5",
    )
    .await
    .unwrap();
    let sent = s.standin.run_reports();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["limit"], json!("5"));
    assert_eq!(
        sent[0]["orderBys"],
        json!([
            {"desc": true, "metric": {"metricName": "screenPageViews"}},
            {"dimension": {"dimensionName": "pagePath", "orderType": "ALPHANUMERIC"}}
        ])
    );
    let mut views: BTreeMap<(NaiveDate, &str), i64> = BTreeMap::new();
    let events = s.standin.events(PROPERTY);
    for e in events.iter().filter(|e| e.name == "page_view") {
        *views.entry((e.date, e.page)).or_default() += 1;
    }
    let mut top: Vec<i64> = views.values().copied().collect();
    top.sort_by_key(|v| std::cmp::Reverse(*v));
    let got: Vec<ScalarValue> = a.rows.iter().map(|r| r[2].clone()).collect();
    let want: Vec<ScalarValue> = top[..5].iter().map(|v| int(*v as f64)).collect();
    assert_eq!(got, want);
    assert_clean(&s.standin);
}

/// Distinct users of the events on days `from..=to`, as GA4 computes `totalUsers`.
fn users_between(events: &[Event], from: &str, to: &str) -> i64 {
    users_where(events, from, to, |_| true)
}

/// Distinct users of the events on days `from..=to` that `keep` keeps.
fn users_where(events: &[Event], from: &str, to: &str, keep: impl Fn(&Event) -> bool) -> i64 {
    events
        .iter()
        .filter(|e| e.date >= date(from) && e.date <= date(to) && keep(e))
        .map(|e| e.user)
        .collect::<BTreeSet<_>>()
        .len() as i64
}

/// The channels the events came from.
fn channels(events: &[Event]) -> BTreeSet<String> {
    events.iter().map(|e| e.channel.to_string()).collect()
}

async fn refused(ctx: &SessionContext, sql: &str, needles: &[&str]) {
    let err = query(ctx, sql)
        .await
        .err()
        .unwrap_or_else(|| panic!("{sql} ran"));
    for n in needles {
        assert!(err.contains(n), "{sql}\n→ {err}\n(missing {n:?})");
    }
}

#[tokio::test]
async fn window_functions_over_non_additive_metrics_are_refused() {
    let s = setup().await;
    let days = "date BETWEEN '2026-01-01' AND '2026-01-07'";
    for (sql, needles) in [
        (
            format!("SELECT date, SUM(total_users) OVER () AS users FROM ga4.web WHERE {days}"),
            vec!["total_users (totalUsers)", "window function", "sum("],
        ),
        (
            format!("SELECT date, AVG(bounce_rate) OVER () FROM ga4.web WHERE {days}"),
            vec!["bounce_rate (bounceRate)", "window function", "avg("],
        ),
        (
            format!(
                "SELECT date, SUM(u) OVER (ORDER BY date) FROM \
                 (SELECT date, SUM(total_users) AS u FROM ga4.web WHERE {days} GROUP BY date) t"
            ),
            vec!["total_users (totalUsers)", "window function"],
        ),
        (
            format!(
                "SELECT date, u / SUM(u) OVER () AS share FROM \
                 (SELECT date, active_users AS u FROM ga4.web WHERE {days}) t"
            ),
            vec!["active_users (activeUsers)", "window function"],
        ),
        (
            format!(
                "SELECT date, MAX(engagement_rate) OVER (PARTITION BY device_category) \
                 FROM ga4.web WHERE {days}"
            ),
            vec!["engagement_rate (engagementRate)", "window function"],
        ),
    ] {
        refused(&s.ctx, &sql, &needles).await;
    }
    assert!(s.standin.run_reports().is_empty(), "nothing was sent");

    // Additive metrics sum over windows; ranking by a non-additive one combines nothing.
    let a = query(
        &s.ctx,
        &format!(
            "SELECT date, event_count, SUM(event_count) OVER () AS total FROM ga4.web \
             WHERE {days} ORDER BY date"
        ),
    )
    .await
    .unwrap();
    let events = s.standin.events(PROPERTY);
    let week: Vec<&Event> = events
        .iter()
        .filter(|e| e.date >= date("2026-01-01") && e.date <= date("2026-01-07"))
        .collect();
    assert_eq!(a.rows.len(), 7);
    for row in &a.rows {
        assert_eq!(row[2], int(metric(&week, "eventCount").unwrap()));
    }
    let a = query(
        &s.ctx,
        &format!(
            "SELECT date, total_users, RANK() OVER (ORDER BY total_users DESC) AS r, \
                    LAG(total_users) OVER (ORDER BY date) AS before \
             FROM ga4.web WHERE {days} ORDER BY date"
        ),
    )
    .await
    .unwrap();
    assert_eq!(a.rows.len(), 7);
    for (i, row) in a.rows.iter().enumerate() {
        let day = format!("2026-01-0{}", i + 1);
        assert_eq!(row[0], date32(date(&day)));
        assert_eq!(row[1], int(users_between(&events, &day, &day) as f64));
    }
    assert_clean(&s.standin);
}

#[tokio::test]
async fn a_subquery_alias_does_not_hide_a_non_additive_metric() {
    let s = setup().await;
    let days = "date BETWEEN '2026-01-01' AND '2026-01-07'";
    let events = s.standin.events(PROPERTY);
    let week = users_between(&events, "2026-01-01", "2026-01-07");
    // Pushed to GA4 like the same aggregate without the subquery: the week's users.
    for sql in [
        format!("SELECT MAX(u) FROM (SELECT date, total_users AS u FROM ga4.web WHERE {days}) t"),
        format!("SELECT SUM(t.u) FROM (SELECT date, total_users AS u FROM ga4.web) t WHERE {days}"),
        "SELECT SUM(v.users) FROM (SELECT * FROM \
         (SELECT total_users AS users, date AS d FROM ga4.web) w WHERE w.d BETWEEN \
         '2026-01-01' AND '2026-01-07') v"
            .to_string(),
    ] {
        s.standin.clear_log();
        match query(&s.ctx, &sql).await {
            Ok(a) => {
                assert_eq!(a.rows, vec![vec![int(week as f64)]], "{sql}");
                assert_eq!(s.standin.run_reports().len(), 1, "{sql}");
            }
            Err(e) => assert!(e.contains("total_users"), "{sql}\n→ {e}"),
        }
    }
    // Re-aggregating per-day rows that a subquery computed is refused.
    for sql in [
        format!(
            "SELECT MAX(u) FROM (SELECT date, SUM(total_users) AS u FROM ga4.web \
             WHERE {days} GROUP BY date) t"
        ),
        format!(
            "SELECT SUM(u) FROM (SELECT date, SUM(total_users) AS u FROM ga4.web \
             WHERE {days} GROUP BY date) t"
        ),
        format!(
            "SELECT AVG(r) FROM (SELECT device_category, AVG(bounce_rate) AS r FROM ga4.web \
             WHERE {days} GROUP BY 1) t"
        ),
    ] {
        refused(&s.ctx, &sql, &["non-additive GA4 metric"]).await;
    }
    refused(
        &s.ctx,
        &format!(
            "SELECT MAX(u) FROM (SELECT date, total_users * 2 AS u FROM ga4.web WHERE {days}) t"
        ),
        &["max(ga4.web.total_users * Int64(2))"],
    )
    .await;
    // One report row per group: aggregating it by the same dimensions combines nothing.
    let a = query(
        &s.ctx,
        &format!(
            "SELECT date, MAX(u) AS u FROM (SELECT date, SUM(total_users) AS u FROM ga4.web \
             WHERE {days} GROUP BY date) t GROUP BY date ORDER BY date"
        ),
    )
    .await
    .unwrap();
    assert_eq!(a.rows.len(), 7);
    for (i, row) in a.rows.iter().enumerate() {
        let day = format!("2026-01-0{}", i + 1);
        assert_eq!(row[1], int(users_between(&events, &day, &day) as f64));
    }
    // Additive: per-day sums re-added are exact.
    let a = query(
        &s.ctx,
        &format!(
            "SELECT SUM(v) FROM (SELECT date, SUM(event_count) AS v FROM ga4.web \
             WHERE {days} GROUP BY date) t"
        ),
    )
    .await
    .unwrap();
    let week_events: Vec<&Event> = events
        .iter()
        .filter(|e| e.date >= date("2026-01-01") && e.date <= date("2026-01-07"))
        .collect();
    assert_eq!(
        a.rows,
        vec![vec![int(metric(&week_events, "eventCount").unwrap())]]
    );
    assert_clean(&s.standin);
}

#[tokio::test]
async fn a_union_of_ga4_rows_is_not_re_aggregated() {
    let s = setup().await;
    refused(
        &s.ctx,
        "SELECT SUM(u) FROM (\
           SELECT total_users AS u FROM ga4.web WHERE date = '2026-01-01' \
           UNION ALL SELECT total_users FROM ga4.web WHERE date = '2026-01-02') t",
        &["total_users (totalUsers)", "sum("],
    )
    .await;
    refused(
        &s.ctx,
        "SELECT MAX(u) FROM (\
           SELECT SUM(total_users) AS u FROM ga4.web WHERE date = '2026-01-01' \
           UNION ALL SELECT SUM(total_users) FROM ga4.web WHERE date = '2026-01-02') t",
        &["total_users (totalUsers)", "max("],
    )
    .await;
    // The rows themselves are each GA4's number.
    let a = query(
        &s.ctx,
        "SELECT SUM(total_users) AS u FROM ga4.web WHERE date = '2026-01-01' \
         UNION ALL SELECT SUM(total_users) FROM ga4.web WHERE date = '2026-01-02' ORDER BY 1",
    )
    .await
    .unwrap();
    let events = s.standin.events(PROPERTY);
    let mut expected = [
        users_between(&events, "2026-01-01", "2026-01-01"),
        users_between(&events, "2026-01-02", "2026-01-02"),
    ];
    expected.sort();
    assert_eq!(
        a.rows,
        expected
            .iter()
            .map(|u| vec![int(*u as f64)])
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_report_over_ga4s_dimension_or_metric_limits_is_refused_before_sending() {
    let s = setup().await;
    refused(
        &s.ctx,
        "SELECT * FROM ga4.web WHERE date = '2026-01-01'",
        &["at most 9 dimensions", "session_default_channel_group"],
    )
    .await;
    refused(
        &s.ctx,
        "SELECT date, sessions, total_users, active_users, screen_page_views, event_count, \
                engaged_sessions, transactions, bounce_rate, engagement_rate, \
                average_session_duration, purchase_revenue \
         FROM ga4.web WHERE date = '2026-01-01'",
        &["at most 10 metrics", "purchase_revenue"],
    )
    .await;
    assert!(s.standin.run_reports().is_empty(), "nothing was sent");
}

const WEB_MODEL: &str = r#"
[sources.web]
table = "ga4.web"

[sources.web.dimensions.date]
column = "date"
type = "time"
grains = ["day", "week", "month", "quarter", "year"]

[sources.web.dimensions.channel]
column = "session_default_channel_group"
type = "string"

[sources.web.measures.users]
type = "sum"
column = "total_users"

[sources.web.measures.events]
type = "sum"
column = "event_count"

[sources.shop]
table = "orders"

[sources.shop.dimensions.date]
column = "order_date"
type = "time"
grains = ["day", "week", "month", "quarter", "year"]

[sources.shop.dimensions.channel]
column = "channel"
type = "string"

[sources.shop.measures.orders]
type = "count"
"#;

/// The shop's orders beside the GA4 property: on day `d` (0-based from 2026-01-01) of the 14,
/// `d % 3 + 1` orders from each channel that had an event that day.
fn shop_orders(events: &[Event]) -> Vec<(NaiveDate, String)> {
    let mut days: BTreeSet<(NaiveDate, String)> = BTreeSet::new();
    for e in events {
        days.insert((e.date, e.channel.to_string()));
    }
    let first = date("2026-01-01");
    let mut out = Vec::new();
    for (day, channel) in days {
        for _ in 0..((day - first).num_days() % 3 + 1) {
            out.push((day, channel.clone()));
        }
    }
    out
}

/// The dashboard engine for tenant `acme` over the stand-in, with [`WEB_MODEL`].
async fn spec_engine(standin: &StandIn) -> (sql::DashboardEngine, tempfile::TempDir) {
    let source = Ga4Source::new(Ga4SourceConfig {
        client: Ga4Config {
            api_base: standin.base_url.clone(),
            ..Ga4Config::default()
        },
        tenants: [(
            "acme".to_string(),
            Ga4TenantConfig {
                service_account_key: standin.key_json(),
                tables: [("web".to_string(), PROPERTY.to_string())].into(),
            },
        )]
        .into(),
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("web.toml");
    std::fs::write(&model, WEB_MODEL).unwrap();
    let warehouse = dir.path().join("warehouse");
    let orders = warehouse.join("orders/tenant=acme");
    std::fs::create_dir_all(&orders).unwrap();
    let rows = shop_orders(&standin.events(PROPERTY));
    let schema = Arc::new(Schema::new(vec![
        Field::new("order_date", DataType::Date32, false),
        Field::new("channel", DataType::Utf8, false),
    ]));
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Date32Array::from(
                rows.iter()
                    .map(|(d, _)| (*d - epoch).num_days() as i32)
                    .collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                rows.iter().map(|(_, c)| c.as_str()).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap();
    let file = std::fs::File::create(orders.join("part-0.parquet")).unwrap();
    let mut writer = ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let engine = sql::DashboardEngine::new(sql::EngineConfig {
        warehouse,
        models: vec![model],
        cache_ttl: Duration::ZERO,
        cache_entries: 0,
        sources: vec![Arc::new(source)],
        limits: sql::QueryLimits::default(),
        live: None,
    })
    .await
    .unwrap();
    (engine, dir)
}

fn spec_rows(result: &sql::QueryResult) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for b in &result.batches {
        for i in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .map(|c| match ScalarValue::try_from_array(c, i).unwrap() {
                        ScalarValue::Date32(Some(d)) => {
                            (NaiveDate::default() + chrono::Days::new(d as u64)).to_string()
                        }
                        v => v.to_string(),
                    })
                    .collect(),
            );
        }
    }
    out
}

#[tokio::test]
async fn specs_over_ga4_users_answer_ga4s_numbers_or_refuse_with_400() {
    let standin = StandIn::start().await;
    let (engine, _dir) = spec_engine(&standin).await;
    let events = standin.events(PROPERTY);
    let range = json!(["2026-01-01", "2026-01-14"]);

    // Day and month buckets are GA4 date dimensions: each bucket's users as GA4 counts them.
    let by_day = engine
        .query_spec(
            "acme",
            &json!({"measures": ["web.users"],
                    "time": {"dimension": "web.date", "grain": "day", "range": range}}),
        )
        .await
        .unwrap();
    let expected: Vec<Vec<String>> = (1..=14)
        .map(|d| {
            let day = format!("2026-01-{d:02}");
            vec![day.clone(), users_between(&events, &day, &day).to_string()]
        })
        .collect();
    let mut got = spec_rows(&by_day);
    got.sort();
    assert_eq!(got, expected);
    let by_month = engine
        .query_spec(
            "acme",
            &json!({"measures": ["web.users"],
                    "time": {"dimension": "web.date", "grain": "month", "range": range}}),
        )
        .await
        .unwrap();
    assert_eq!(
        spec_rows(&by_month),
        vec![vec![
            "2026-01-01".to_string(),
            users_between(&events, "2026-01-01", "2026-01-14").to_string()
        ]]
    );

    let by_year = engine
        .query_spec(
            "acme",
            &json!({"measures": ["web.users"],
                    "time": {"dimension": "web.date", "grain": "year", "range": range}}),
        )
        .await
        .unwrap();
    assert_eq!(
        spec_rows(&by_year),
        vec![vec![
            "2026-01-01".to_string(),
            users_between(&events, "2026-01-01", "2026-01-14").to_string()
        ]]
    );
    let by_week = engine
        .query_spec(
            "acme",
            &json!({"measures": ["web.users"],
                    "time": {"dimension": "web.date", "grain": "week", "range": range}}),
        )
        .await
        .unwrap();
    // 2026-01-01 is a Thursday: ISO weeks start 2025-12-29, 2026-01-05 and 2026-01-12.
    let mut got = spec_rows(&by_week);
    got.sort();
    assert_eq!(
        got,
        vec![
            vec![
                "2025-12-29".to_string(),
                users_between(&events, "2026-01-01", "2026-01-04").to_string()
            ],
            vec![
                "2026-01-05".to_string(),
                users_between(&events, "2026-01-05", "2026-01-11").to_string()
            ],
            vec![
                "2026-01-12".to_string(),
                users_between(&events, "2026-01-12", "2026-01-14").to_string()
            ],
        ]
    );

    // A quarter is no GA4 dimension, and a quarter's users are not its days' or months' users
    // added up: each quarter of the range is its own report, labelled with the quarter's start.
    let by_quarter = engine
        .query_spec(
            "acme",
            &json!({"measures": ["web.users"], "dimensions": ["web.channel"],
                    "time": {"dimension": "web.date", "grain": "quarter",
                             "range": ["2025-11-15", "2026-01-14"]}}),
        )
        .await
        .unwrap();
    let mut got = spec_rows(&by_quarter);
    got.sort();
    let mut want: Vec<Vec<String>> = channels(&events)
        .into_iter()
        .map(|c| {
            let users = users_where(&events, "2026-01-01", "2026-01-14", |e| e.channel == c);
            vec!["2026-01-01".to_string(), c, users.to_string()]
        })
        .collect();
    want.sort();
    assert_eq!(got, want);
    // More quarters than it would send reports for: a 400 saying so, before anything is sent.
    let err = engine
        .query_spec(
            "acme",
            &json!({"measures": ["web.users"],
                    "time": {"dimension": "web.date", "grain": "quarter",
                             "range": ["2000-01-01", "2026-01-14"]}}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "bad_request", "{err:?}");
    assert!(err.to_string().contains("at most 60"), "{err}");

    // A share of users is the channel's users over the users of the whole bucket, as GA4
    // counts both (a user on two channels is one user of the week): not over a sum of rows.
    let shares = engine
        .query_spec(
            "acme",
            &json!({"measures": ["web.users"], "dimensions": ["web.channel"],
                    "time": {"dimension": "web.date", "grain": "week", "range": range},
                    "analysis": [{"type": "share", "measure": "web.users"}]}),
        )
        .await
        .unwrap();
    let weeks = [
        ("2025-12-29", "2026-01-01", "2026-01-04"),
        ("2026-01-05", "2026-01-05", "2026-01-11"),
        ("2026-01-12", "2026-01-12", "2026-01-14"),
    ];
    let rows = spec_rows(&shares);
    assert!(!rows.is_empty());
    let mut sum_of_shares = 0.0;
    for row in &rows {
        let (_, from, to) = weeks.iter().find(|w| w.0 == row[0]).expect("a known week");
        let users = users_where(&events, from, to, |e| e.channel == row[1]);
        let all = users_between(&events, from, to);
        assert_eq!(row[2], users.to_string(), "{row:?}");
        let share: f64 = row[3].parse().unwrap();
        assert!(
            close(share, users as f64 / all as f64),
            "{row:?}: {all} users in the week"
        );
        sum_of_shares += share;
    }
    // The stand-in's users visit on several channels, so the shares add up to more than one
    // per week: proof the denominator is GA4's count, not the sum of the rows.
    assert!(sum_of_shares > weeks.len() as f64 + 1e-9, "{sum_of_shares}");

    // A running total of users is the users from the range's start to each bucket's end.
    let running = engine
        .query_spec(
            "acme",
            &json!({"measures": ["web.users"], "dimensions": ["web.channel"],
                    "time": {"dimension": "web.date", "grain": "week", "range": range},
                    "analysis": [{"type": "runningTotal", "measure": "web.users"}]}),
        )
        .await
        .unwrap();
    let rows = spec_rows(&running);
    assert!(!rows.is_empty());
    for row in &rows {
        let (_, _, to) = weeks.iter().find(|w| w.0 == row[0]).expect("a known week");
        let so_far = users_where(&events, "2026-01-01", to, |e| e.channel == row[1]);
        assert_eq!(row[3], so_far.to_string(), "{row:?}");
    }
    // Without a grain, a running total adds users down the ranking: a 400 saying why.
    let err = engine
        .query_spec(
            "acme",
            &json!({"measures": ["web.users"], "dimensions": ["web.channel"],
                    "time": {"dimension": "web.date", "range": range},
                    "analysis": [{"type": "runningTotal", "measure": "web.users"}]}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "bad_request", "{err:?}");
    assert!(err.to_string().contains("time grain"), "{err}");

    // Comparing with the previous period: each day's users beside the users of the day a week
    // before, both as GA4 counts them.
    let compared = engine
        .query_spec(
            "acme",
            &json!({"measures": ["web.users"],
                    "time": {"dimension": "web.date", "grain": "day",
                             "range": ["2026-01-08", "2026-01-14"]},
                    "compare": "previousPeriod"}),
        )
        .await
        .unwrap();
    let rows = spec_rows(&compared);
    assert_eq!(rows.len(), 7, "{rows:?}");
    for row in &rows {
        let day = date(&row[0]);
        let before = (day - chrono::Duration::days(7)).to_string();
        assert_eq!(row[1], users_between(&events, &row[0], &row[0]).to_string());
        assert_eq!(
            row[2],
            users_between(&events, &before, &before).to_string(),
            "{row:?}"
        );
    }
    // Over an additive measure they answer, and the shares add up to one.
    let shares = engine
        .query_spec(
            "acme",
            &json!({"measures": ["web.events"], "dimensions": ["web.channel"],
                    "time": {"dimension": "web.date", "range": range},
                    "analysis": [{"type": "share", "measure": "web.events"}]}),
        )
        .await
        .unwrap();
    let total: f64 = spec_rows(&shares)
        .iter()
        .map(|r| r[2].parse::<f64>().unwrap())
        .sum();
    assert!((total - 1.0).abs() < 1e-9, "{total}");
    // Ranking channels by their users combines no two rows' users.
    let ranked = engine
        .query_spec(
            "acme",
            &json!({"measures": ["web.users"], "dimensions": ["web.channel"],
                    "time": {"dimension": "web.date", "range": range},
                    "analysis": [{"type": "rank", "measure": "web.users"}]}),
        )
        .await
        .unwrap();
    for row in spec_rows(&ranked) {
        let users = events
            .iter()
            .filter(|e| e.channel == row[0])
            .map(|e| e.user)
            .collect::<BTreeSet<_>>()
            .len();
        assert_eq!(row[1], users.to_string(), "{row:?}");
    }
    assert_clean(&standin);
}

/// A small deterministic generator (no dependency for a few dozen draws).
struct Draw(u64);

impl Draw {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn as_f64(v: &ScalarValue) -> Option<f64> {
    match v {
        ScalarValue::Int64(Some(i)) => Some(*i as f64),
        ScalarValue::Float64(Some(f)) => Some(*f),
        _ => None,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// The GA4 dimension value of a result cell (dates as GA4 writes them).
fn dimension_text(v: &ScalarValue) -> String {
    match v {
        ScalarValue::Date32(Some(d)) => (NaiveDate::default() + chrono::Days::new(*d as u64))
            .format("%Y%m%d")
            .to_string(),
        ScalarValue::Utf8(Some(s)) => s.clone(),
        other => other.to_string(),
    }
}

#[tokio::test]
async fn generated_queries_answer_the_individual_sessions_numbers_or_refuse() {
    let s = setup().await;
    let events = s.standin.events(PROPERTY);
    // (SQL column, API name, additive across the dimensions drawn below)
    const METRICS: &[(&str, &str, bool)] = &[
        ("total_users", "totalUsers", false),
        ("active_users", "activeUsers", false),
        ("bounce_rate", "bounceRate", false),
        ("sessions", "sessions", true),
        ("event_count", "eventCount", true),
        ("screen_page_views", "screenPageViews", true),
    ];
    const DIMENSIONS: &[(&str, &str)] = &[
        ("date", "date"),
        ("device_category", "deviceCategory"),
        (
            "session_default_channel_group",
            "sessionDefaultChannelGroup",
        ),
    ];
    const AGGREGATES: &[&str] = &["SUM", "MAX", "MIN", "AVG"];
    let mut draw = Draw(0x71de_3a4c);
    let (mut answered, mut refusals) = (0, 0);
    for round in 0..48 {
        let &(m, api, additive) = draw.pick(METRICS);
        let from = 1 + draw.below(10);
        let to = from + draw.below(14 - from + 1);
        let (from, to) = (format!("2026-01-{from:02}"), format!("2026-01-{to:02}"));
        let in_range: Vec<&Event> = events
            .iter()
            .filter(|e| e.date >= date(&from) && e.date <= date(&to))
            .collect();
        let range = format!("date BETWEEN '{from}' AND '{to}'");
        let n_dims = 1 + draw.below(2);
        let mut dims: Vec<(&str, &str)> = Vec::new();
        while dims.len() < n_dims {
            let d = *draw.pick(DIMENSIONS);
            if !dims.contains(&d) {
                dims.push(d);
            }
        }
        let dim_list = dims.iter().map(|d| d.0).collect::<Vec<_>>().join(", ");
        let agg = *draw.pick(AGGREGATES);
        let whole = metric(&in_range, api).unwrap();
        let kind = round % 4;
        let sql = match kind {
            // A window over per-row values.
            0 => format!(
                "SELECT {dim_list}, {agg}(x) OVER () AS w FROM \
                 (SELECT {dim_list}, {m} AS x FROM ga4.web WHERE {range}) t"
            ),
            // An aggregate over a subquery's aliased per-row values.
            1 => format!(
                "SELECT {agg}(x) AS v FROM (SELECT {dim_list}, {m} AS x FROM ga4.web \
                 WHERE {range}) AS t"
            ),
            // An aggregate over a union of two days' values.
            2 => format!(
                "SELECT {agg}(x) AS v FROM (SELECT {m} AS x FROM ga4.web WHERE date = '{from}' \
                 UNION ALL SELECT {m} AS x FROM ga4.web WHERE date = '{to}') AS u"
            ),
            // Per-row values, renamed twice.
            _ => format!(
                "SELECT * FROM (SELECT {dim_list}, y AS z FROM (SELECT {dim_list}, {m} AS y \
                 FROM ga4.web WHERE {range}) a) b"
            ),
        };
        let answer = match query(&s.ctx, &sql).await {
            Ok(a) => a,
            Err(e) => {
                assert!(kind != 3, "a per-row scan is never refused: {sql}\n→ {e}");
                assert!(e.contains(m), "{sql}\n→ {e}\n(the refusal names {m})");
                refusals += 1;
                continue;
            }
        };
        answered += 1;
        let per_row = |row: &[ScalarValue], n: usize| -> f64 {
            let group: Vec<&Event> = in_range
                .iter()
                .copied()
                .filter(|e| {
                    dims.iter().zip(&row[..n]).all(|((_, api), v)| {
                        ga4_support::dimension(e, api).unwrap() == dimension_text(v)
                    })
                })
                .collect();
            metric(&group, api).unwrap()
        };
        match kind {
            0 => {
                let values: Vec<f64> = answer.rows.iter().map(|r| per_row(r, dims.len())).collect();
                let expected = match agg {
                    "SUM" => values.iter().sum(),
                    "MAX" => values.iter().cloned().fold(f64::MIN, f64::max),
                    "MIN" => values.iter().cloned().fold(f64::MAX, f64::min),
                    _ => values.iter().sum::<f64>() / values.len() as f64,
                };
                assert!(additive, "a window over {m} answered: {sql}");
                for r in &answer.rows {
                    let got = as_f64(&r[dims.len()]).unwrap();
                    assert!(close(got, expected), "{sql}: {got} ≠ {expected}");
                }
                if agg == "SUM" {
                    assert!(close(expected, whole), "{sql}: rows add up to the range");
                }
            }
            1 => {
                // GA4's own value for the range (pushed down), or an exact sum of additive rows.
                let got = as_f64(&answer.rows[0][0]).unwrap();
                assert!(close(got, whole), "{sql}: {got} ≠ {whole}");
            }
            2 => {
                assert!(additive, "a union of {m} re-aggregated: {sql}");
                let day = |d: &str| {
                    let group: Vec<&Event> = events.iter().filter(|e| e.date == date(d)).collect();
                    metric(&group, api).unwrap()
                };
                let (a, b) = (day(&from), day(&to));
                let expected = match agg {
                    "SUM" => a + b,
                    "MAX" => a.max(b),
                    "MIN" => a.min(b),
                    _ => (a + b) / 2.0,
                };
                let got = as_f64(&answer.rows[0][0]).unwrap();
                assert!(close(got, expected), "{sql}: {got} ≠ {expected}");
            }
            _ => {
                assert!(!answer.rows.is_empty(), "{sql}");
                for r in &answer.rows {
                    let got = as_f64(&r[dims.len()]).unwrap();
                    let expected = per_row(r, dims.len());
                    assert!(close(got, expected), "{sql}: {r:?} ≠ {expected}");
                }
            }
        }
    }
    assert!(
        answered >= 12 && refusals >= 8,
        "{answered} answered, {refusals} refused"
    );
    assert_clean(&s.standin);
}

#[tokio::test]
async fn every_spec_over_ga4_answers_or_is_a_400_never_a_500() {
    let standin = StandIn::start().await;
    let (engine, _dir) = spec_engine(&standin).await;
    let events = standin.events(PROPERTY);
    let range = json!(["2026-01-01", "2026-01-14"]);
    let mut specs = Vec::new();
    for measure in ["web.users", "web.events"] {
        for analysis in [
            json!({"type": "abc", "measure": measure}),
            json!({"type": "quadrant", "x": measure, "y": "web.events"}),
            json!({"type": "change", "measure": measure}),
            json!({"type": "rank", "measure": measure}),
            json!({"type": "share", "measure": measure}),
            json!({"type": "runningTotal", "measure": measure}),
        ] {
            let measures = if measure == "web.events" {
                json!([measure])
            } else {
                json!([measure, "web.events"])
            };
            for grain in ["day", "week", "month"] {
                specs.push(json!({"measures": measures, "dimensions": ["web.channel"],
                                  "time": {"dimension": "web.date", "grain": grain, "range": range},
                                  "analysis": analysis}));
            }
        }
        for grain in ["day", "week", "month", "quarter", "year"] {
            specs.push(json!({"measures": [measure], "dimensions": ["web.channel"],
                              "time": {"dimension": "web.date", "grain": grain, "range": range},
                              "total": true}));
            specs.push(json!({"measures": [measure],
                              "time": {"dimension": "web.date", "grain": grain,
                                       "range": ["2026-01-08", "2026-01-14"]},
                              "compare": "previousPeriod"}));
        }
    }
    let (mut answered, mut refused) = (0, 0);
    for spec in specs {
        match engine.query_spec("acme", &spec).await {
            Ok(result) => {
                answered += 1;
                check_users(&events, &spec, &result);
            }
            Err(e) => {
                refused += 1;
                assert!(
                    spec.to_string().contains("web.users"),
                    "only non-additive users may be refused: {spec}\n→ {e}"
                );
                assert!(e.is_client_error(), "{spec}\n→ {e:?}");
                assert!(e.to_string().contains("total_users"), "{spec}\n→ {e}");
                // Only what has no GA4 meaning is refused: a cumulative share down the ranking
                // (ABC) or a mean of the plotted points (quadrant) of users.
                let kind = spec["analysis"]["type"].as_str().unwrap_or("");
                assert!(kind == "abc" || kind == "quadrant", "{spec}\n→ {e}");
            }
        }
    }
    assert!(
        answered > 0 && refused > 0,
        "{answered} answered, {refused} refused"
    );
}

/// Checks every number of users an answered spec holds — the users of each row, their share,
/// running total and comparison — against distinct users counted from the individual events.
fn check_users(events: &[Event], spec: &Value, result: &sql::QueryResult) {
    let Some(batch) = result.batches.first() else {
        return;
    };
    let names: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let at = |name: &str| names.iter().position(|n| n == name);
    let time = &spec["time"];
    let grain = time["grain"].as_str().unwrap_or("");
    let (first, last) = (
        date(time["range"][0].as_str().unwrap()),
        date(time["range"][1].as_str().unwrap()),
    );
    let bucket = at(&format!("web.date.{grain}"));
    for row in spec_rows(result) {
        if at("is_total").is_some_and(|i| row[i] == "true") {
            continue;
        }
        let (from, to) = match bucket {
            Some(i) => {
                let label = date(&row[i]);
                let end = match grain {
                    "day" => label,
                    "week" => label + chrono::Days::new(6),
                    "month" => label + chrono::Months::new(1) - chrono::Days::new(1),
                    "quarter" => label + chrono::Months::new(3) - chrono::Days::new(1),
                    _ => label + chrono::Months::new(12) - chrono::Days::new(1),
                };
                (label.max(first), end.min(last))
            }
            None => (first, last),
        };
        let channel = at("web.channel").map(|i| row[i].clone());
        let count = |from: NaiveDate, to: NaiveDate, one_channel: bool| {
            let (from, to) = (from.to_string(), to.to_string());
            users_where(events, &from, &to, |e| {
                !one_channel || channel.as_deref().is_none_or(|c| e.channel == c)
            })
        };
        if let Some(i) = at("web.users") {
            assert_eq!(row[i], count(from, to, true).to_string(), "{spec}: {row:?}");
        }
        if let Some(i) = at("web.users.share") {
            let want = count(from, to, true) as f64 / count(from, to, false) as f64;
            let got: f64 = row[i].parse().unwrap();
            assert!(close(got, want), "{spec}: {row:?} ≠ {want}");
        }
        if let Some(i) = at("web.users.running_total") {
            assert_eq!(
                row[i],
                count(first, to, true).to_string(),
                "{spec}: {row:?}"
            );
        }
        if let (Some(i), "day") = (at("web.users.compare"), grain) {
            let days = (last - first).num_days() as u64 + 1;
            let before = from - chrono::Days::new(days);
            assert_eq!(
                row[i],
                count(before, before, true).to_string(),
                "{spec}: {row:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_spec_over_ga4_users_and_warehouse_orders_answers_both_as_counted() {
    let standin = StandIn::start().await;
    let (engine, _dir) = spec_engine(&standin).await;
    let events = standin.events(PROPERTY);
    let orders = shop_orders(&events);
    // Users from GA4 and orders from the warehouse, merged by day and channel: each keeps its
    // own source's value (GA4's users are not combined with anything on the way).
    let both = engine
        .query_spec(
            "acme",
            &json!({"measures": ["web.users", "shop.orders"], "dimensions": ["web.channel"],
                    "time": {"dimension": "web.date", "grain": "day",
                             "range": ["2026-01-01", "2026-01-03"]},
                    "analysis": [{"type": "share", "measure": "web.users"}]}),
        )
        .await
        .unwrap();
    let rows = spec_rows(&both);
    assert!(rows.len() >= 3, "{rows:?}");
    for row in &rows {
        let users = users_where(&events, &row[0], &row[0], |e| e.channel == row[1]);
        let day_users = users_between(&events, &row[0], &row[0]);
        let day_orders = orders
            .iter()
            .filter(|(d, c)| d.to_string() == row[0] && *c == row[1])
            .count();
        assert_eq!(row[2], users.to_string(), "{row:?}");
        assert_eq!(row[3], day_orders.to_string(), "{row:?}");
        let share: f64 = row[4].parse().unwrap();
        assert!(close(share, users as f64 / day_users as f64), "{row:?}");
    }
}

#[tokio::test]
async fn a_request_ga4_rejects_is_a_400_with_ga4s_message_an_outage_a_503() {
    let standin = StandIn::start().await;
    let (engine, _dir) = spec_engine(&standin).await;
    // GA4 finds the request invalid: a 400 carrying GA4's own message.
    standin.reject_next(1);
    let err = engine
        .sql(
            "acme",
            "SELECT session_default_channel_group, SUM(sessions) FROM ga4.web GROUP BY 1",
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "bad_request", "{err:?}");
    assert!(err.is_client_error());
    assert!(
        err.to_string().contains("INVALID_ARGUMENT")
            && err
                .to_string()
                .contains("remove sessionDefaultChannelGroup to make the request compatible"),
        "{err}"
    );
    // Out of quota: the source is unavailable, not the request wrong.
    standin.set_daily_tokens(0);
    let err = engine
        .sql(
            "acme",
            "SELECT date, SUM(sessions) FROM ga4.web GROUP BY date",
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "source_unavailable", "{err:?}");
    assert!(!err.is_client_error());
}
