//! The GA4 Data API client against the local stand-in: auth, paging, typed decoding, batches,
//! metadata, quotas and backoff. Every request is checked against the discovery document.

use standins::ga4 as ga4_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use connectors::ga4::api::{
    DateRange, Dimension, Metric, MetricOrderBy, MetricType, OrderBy, OrderByField,
    RunReportRequest,
};
use connectors::ga4::{Column, Ga4Client, Ga4Config, Ga4Error, ServiceAccountKey};
use ga4_support::{FIRST_DAY, LAST_DAY, PROPERTY, StandIn, discovery::Discovery};
use serde_json::json;

fn config(standin: &StandIn) -> Ga4Config {
    Ga4Config {
        api_base: standin.base_url.clone(),
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        ..Ga4Config::default()
    }
}

fn client(standin: &StandIn, config: Ga4Config) -> Ga4Client {
    let key = ServiceAccountKey::from_json(standin.key_json().as_bytes()).unwrap();
    Ga4Client::new(key, config).unwrap()
}

fn request(dims: &[&str], metrics: &[&str]) -> RunReportRequest {
    RunReportRequest {
        dimensions: dims
            .iter()
            .map(|d| Dimension {
                name: d.to_string(),
            })
            .collect(),
        metrics: metrics
            .iter()
            .map(|m| Metric {
                name: m.to_string(),
            })
            .collect(),
        date_ranges: vec![DateRange {
            start_date: FIRST_DAY.into(),
            end_date: LAST_DAY.into(),
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn token_is_exchanged_once_and_cached() {
    let standin = StandIn::start().await;
    let client = client(&standin, config(&standin));
    for _ in 0..3 {
        client
            .run_report(PROPERTY, &request(&["date"], &["sessions"]))
            .await
            .unwrap();
    }
    assert_eq!(standin.tokens_issued(), 1, "one token serves all calls");
    assert!(
        standin.violations().is_empty(),
        "{:?}",
        standin.violations()
    );
}

#[tokio::test]
async fn token_is_refreshed_before_it_expires() {
    let standin = StandIn::start().await;
    // Tokens that live 2 minutes are inside the refresh margin at once.
    standin.set_token_lifetime(120);
    let client = client(&standin, config(&standin));
    for _ in 0..2 {
        client
            .run_report(PROPERTY, &request(&[], &["sessions"]))
            .await
            .unwrap();
    }
    assert_eq!(standin.tokens_issued(), 2);
}

#[tokio::test]
async fn a_key_the_token_endpoint_does_not_know_is_refused_clearly() {
    let standin = StandIn::start().await;
    let key = ServiceAccountKey::from_json(standin.wrong_key_json().as_bytes()).unwrap();
    let client = Ga4Client::new(key, config(&standin)).unwrap();
    let err = client
        .run_report(PROPERTY, &request(&["date"], &["sessions"]))
        .await
        .unwrap_err();
    assert!(matches!(err, Ga4Error::Auth { .. }), "{err}");
    assert!(err.to_string().contains("Invalid JWT Signature"), "{err}");
    assert!(standin.requests().is_empty(), "no API call without a token");
}

#[tokio::test]
async fn a_broken_key_is_refused_before_any_request() {
    let err = ServiceAccountKey::from_json(
        json!({"client_email": "a@b", "private_key": "nope", "token_uri": "http://x/token"})
            .to_string()
            .as_bytes(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("BEGIN PRIVATE KEY"), "{err}");
    let err = ServiceAccountKey::from_json(b"{}").unwrap_err();
    assert!(err.to_string().contains("client_email"), "{err}");
}

#[tokio::test]
async fn pages_until_row_count_and_decodes_by_type() {
    let standin = StandIn::start().await;
    // Integer, float, seconds and currency metrics by date and channel.
    let by_day_and_channel = request(
        &["date", "sessionDefaultChannelGroup"],
        &[
            "sessions",
            "totalUsers",
            "bounceRate",
            "averageSessionDuration",
            "purchaseRevenue",
        ],
    );
    let whole = client(&standin, config(&standin))
        .run_report(PROPERTY, &by_day_and_channel)
        .await
        .unwrap();
    assert_eq!(whole.pages, 1);
    assert_eq!(whole.num_rows(), whole.row_count);
    assert!(whole.row_count > 40, "{}", whole.row_count);

    standin.clear_log();
    let paged_client = client(
        &standin,
        Ga4Config {
            page_size: 7,
            ..config(&standin)
        },
    );
    let paged = paged_client
        .run_report(PROPERTY, &by_day_and_channel)
        .await
        .unwrap();
    assert_eq!(paged.columns, whole.columns, "paging returns the same rows");
    assert_eq!(paged.pages, whole.row_count.div_ceil(7));
    let offsets: Vec<_> = standin
        .run_reports()
        .iter()
        .map(|b| (b["offset"].clone(), b["limit"].clone()))
        .collect();
    assert_eq!(offsets[0], (serde_json::Value::Null, json!("7")));
    assert_eq!(offsets[1], (json!("7"), json!("7")));

    // Types follow metricHeaders: integers, floats, seconds, currency; date is a date.
    let Column::Date(dates) = &paged.columns[0] else {
        panic!("date is {:?}", paged.columns[0]);
    };
    assert_eq!(dates[0], NaiveDate::from_ymd_opt(2026, 1, 1));
    assert!(matches!(paged.columns[2], Column::Int64(_)));
    assert!(matches!(paged.columns[3], Column::Int64(_)));
    assert!(matches!(paged.columns[4], Column::Float64(_)));
    assert!(matches!(paged.columns[5], Column::Float64(_)));
    assert!(matches!(paged.columns[6], Column::Float64(_)));
    assert_eq!(paged.metrics[3].metric_type, MetricType::TypeSeconds);

    // Values are GA4's: sessions per (date, channel) counted from the events.
    let mut expected: BTreeMap<(NaiveDate, &str), BTreeSet<u32>> = BTreeMap::new();
    for e in standin.events(PROPERTY) {
        expected
            .entry((e.date, e.channel))
            .or_default()
            .insert(e.session);
    }
    let (Column::Text(channels), Column::Int64(sessions)) = (&paged.columns[1], &paged.columns[2])
    else {
        panic!()
    };
    for i in 0..paged.num_rows() {
        let key = (dates[i].unwrap(), channels[i].as_str());
        assert_eq!(sessions[i], Some(expected[&key].len() as i64), "{key:?}");
    }
    assert!(
        standin.violations().is_empty(),
        "{:?}",
        standin.violations()
    );
}

#[tokio::test]
async fn a_limit_is_honoured_across_pages() {
    let standin = StandIn::start().await;
    let client = client(
        &standin,
        Ga4Config {
            page_size: 7,
            ..config(&standin)
        },
    );
    let mut req = request(&["date", "pagePath"], &["screenPageViews"]);
    req.limit = Some(10);
    req.order_bys = vec![OrderBy {
        desc: true,
        by: OrderByField::Metric(MetricOrderBy {
            metric_name: "screenPageViews".into(),
        }),
    }];
    let report = client.run_report(PROPERTY, &req).await.unwrap();
    assert_eq!(report.num_rows(), 10);
    assert_eq!(report.pages, 2);
    let Column::Int64(views) = &report.columns[2] else {
        panic!()
    };
    assert!(views.windows(2).all(|w| w[0] >= w[1]), "ordered: {views:?}");
    let limits: Vec<_> = standin
        .run_reports()
        .iter()
        .map(|b| b["limit"].clone())
        .collect();
    assert_eq!(limits, vec![json!("7"), json!("3")]);
}

#[tokio::test]
async fn limits_above_the_api_maximum_are_refused() {
    let standin = StandIn::start().await;
    let mut req = request(&["date"], &["sessions"]);
    req.limit = Some(250_001);
    let err = client(&standin, config(&standin))
        .run_report_page(PROPERTY, &req)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("250000"), "{err}");
}

#[tokio::test]
async fn batch_sends_one_request_and_refuses_more_than_five() {
    let standin = StandIn::start().await;
    let client = client(&standin, config(&standin));
    let requests = vec![
        request(&["date"], &["sessions"]),
        request(&["sessionDefaultChannelGroup"], &["totalUsers"]),
        request(&["deviceCategory"], &["engagementRate"]),
    ];
    let reports = client.batch_run_reports(PROPERTY, &requests).await.unwrap();
    assert_eq!(reports.len(), 3);
    assert_eq!(reports[1].dimensions, vec!["sessionDefaultChannelGroup"]);
    assert_eq!(reports[0].num_rows(), 14);
    let methods: Vec<_> = standin.requests().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, vec!["batchRunReports"]);

    let six = vec![request(&["date"], &["sessions"]); 6];
    let err = client.batch_run_reports(PROPERTY, &six).await.unwrap_err();
    assert!(matches!(err, Ga4Error::InvalidRequest(_)), "{err}");
    assert!(
        standin.violations().is_empty(),
        "{:?}",
        standin.violations()
    );
}

#[tokio::test]
async fn metadata_lists_custom_dimensions_and_metric_types() {
    let standin = StandIn::start().await;
    let meta = client(&standin, config(&standin))
        .get_metadata(PROPERTY)
        .await
        .unwrap();
    let tier = meta
        .dimensions
        .iter()
        .find(|d| d.api_name == "customUser:tier")
        .unwrap();
    assert!(tier.custom_definition);
    let revenue = meta
        .metrics
        .iter()
        .find(|m| m.api_name == "purchaseRevenue")
        .unwrap();
    assert_eq!(revenue.metric_type, MetricType::TypeCurrency);
}

#[tokio::test]
async fn an_unknown_property_is_a_clear_permission_error() {
    let standin = StandIn::start().await;
    let err = client(&standin, config(&standin))
        .run_report("999", &request(&["date"], &["sessions"]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Ga4Error::Api {
                http_status: 403,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("properties/999"), "{err}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn rate_limits_are_backed_off_and_retried() {
    let standin = StandIn::start().await;
    standin.fail_next(2);
    let report = client(&standin, config(&standin))
        .run_report(PROPERTY, &request(&["date"], &["sessions"]))
        .await
        .unwrap();
    assert_eq!(report.num_rows(), 14);
    assert_eq!(standin.requests().len(), 3, "two 429s, then the answer");
}

#[tokio::test]
async fn persistent_rate_limits_give_up_with_a_retryable_error() {
    let standin = StandIn::start().await;
    standin.fail_next(100);
    let err = client(
        &standin,
        Ga4Config {
            max_attempts: 3,
            ..config(&standin)
        },
    )
    .run_report(PROPERTY, &request(&["date"], &["sessions"]))
    .await
    .unwrap_err();
    assert!(
        matches!(err, Ga4Error::RateLimited { attempts: 3, .. }),
        "{err}"
    );
    assert!(err.is_transient());
    assert!(err.to_string().contains("tokens per hour"), "{err}");
}

#[tokio::test]
async fn an_exhausted_daily_quota_fails_at_once_and_says_so() {
    let standin = StandIn::start().await;
    standin.set_daily_tokens(0);
    let err = client(&standin, config(&standin))
        .run_report(PROPERTY, &request(&["date"], &["sessions"]))
        .await
        .unwrap_err();
    assert!(matches!(err, Ga4Error::DailyQuotaExhausted { .. }), "{err}");
    assert!(err.to_string().contains("daily quota"), "{err}");
    assert!(!err.is_transient());
    assert_eq!(
        standin.requests().len(),
        1,
        "no retries against a daily quota"
    );
}

#[tokio::test]
async fn property_quota_is_returned_when_asked_for() {
    let standin = StandIn::start().await;
    standin.set_daily_tokens(500);
    let mut req = request(&["date"], &["sessions"]);
    req.return_property_quota = Some(true);
    let report = client(&standin, config(&standin))
        .run_report(PROPERTY, &req)
        .await
        .unwrap();
    let quota = report.property_quota.unwrap();
    assert_eq!(quota.tokens_per_day.unwrap().remaining, 499);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("499 of its daily tokens left")),
        "{:?}",
        report.warnings
    );
}

#[tokio::test]
async fn at_most_ten_requests_per_property_are_in_flight() {
    let standin = StandIn::start().await;
    standin.set_delay(Duration::from_millis(40));
    let client = Arc::new(client(&standin, config(&standin)));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let client = Arc::clone(&client);
        tasks.spawn(async move {
            client
                .run_report(PROPERTY, &request(&["date"], &["sessions"]))
                .await
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    assert_eq!(standin.requests().len(), 30, "no request was rate limited");
    assert!(standin.max_in_flight() <= 10, "{}", standin.max_in_flight());
    assert!(standin.max_in_flight() >= 5, "requests do run concurrently");
    assert!(
        standin.violations().is_empty(),
        "{:?}",
        standin.violations()
    );
}

#[tokio::test]
async fn sampling_and_thresholding_become_warnings() {
    let standin = StandIn::start().await;
    standin.set_thresholding(true);
    standin.set_sampling(true);
    let report = client(&standin, config(&standin))
        .run_report(PROPERTY, &request(&["date"], &["totalUsers"]))
        .await
        .unwrap();
    assert_eq!(report.warnings.len(), 2, "{:?}", report.warnings);
    assert!(report.warnings[0].contains("thresholding"));
    assert!(report.warnings[1].contains("5000 of 20000 events (25.0%)"));
}

#[test]
fn the_validator_rejects_unknown_fields_wrong_enums_and_wrong_types() {
    let d = Discovery::load();
    let ok = serde_json::to_value(request(&["date"], &["sessions"])).unwrap();
    assert!(d.validate("RunReportRequest", &ok).is_empty());
    let unknown = json!({"dimensions": [{"name": "date", "alias": "d"}]});
    assert!(d.validate("RunReportRequest", &unknown)[0].contains("unknown field \"alias\""));
    let bad_enum = json!({"metricAggregations": ["SUM"]});
    assert!(d.validate("RunReportRequest", &bad_enum)[0].contains("not one of"));
    let bad_type = json!({"limit": 10});
    assert!(d.validate("RunReportRequest", &bad_type)[0].contains("expected a string"));
    let bad_int64 = json!({"offset": "ten"});
    assert!(d.validate("RunReportRequest", &bad_int64)[0].contains("int64"));
    let nested = json!({"dimensionFilter": {"filter": {"fieldName": "x",
        "stringFilter": {"matchType": "LIKE", "value": "a"}}}});
    assert!(
        d.validate("RunReportRequest", &nested)[0]
            .contains("$.dimensionFilter.filter.stringFilter.matchType")
    );
}

#[tokio::test]
async fn an_unreachable_api_is_retried_then_reported_as_transient() {
    let standin = StandIn::start().await;
    // Tokens come from the stand-in; the API address refuses connections.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let client = client(
        &standin,
        Ga4Config {
            api_base: dead,
            max_attempts: 3,
            ..config(&standin)
        },
    );
    let err = client
        .run_report(PROPERTY, &request(&["date"], &["sessions"]))
        .await
        .unwrap_err();
    assert!(matches!(err, Ga4Error::Transport { .. }), "{err}");
    assert!(err.is_transient());
    assert!(err.to_string().contains(":runReport"), "{err}");
}
