//! SQL over a GA4 table: what is pushed into the runReport, what DataFusion still does, what is
//! refused.

use super::*;

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
