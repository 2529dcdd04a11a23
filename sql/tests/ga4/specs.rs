//! Dashboard specs over a GA4 table (and a warehouse table beside it): GA4's numbers at every
//! grain and for every analysis, or a 400.

use super::*;

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
