//! The Trino client against a real Trino server (`TRINO_URL`, started by `.ci/test` through
//! `.ci/trino.sh`), plus protocol edge cases against a stand-in that misbehaves on purpose.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, Time64MicrosecondType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType,
};
use connectors::trino::{TrinoClient, TrinoConfig, TrinoError};
use futures::StreamExt;

fn trino() -> Option<TrinoClient> {
    let Ok(url) = std::env::var("TRINO_URL") else {
        eprintln!("TRINO_URL is unset: skipping (bash .ci/trino.sh start gives one)");
        return None;
    };
    let mut config = TrinoConfig::new(url, "tidemark-test");
    config.catalog = Some("memory".into());
    config.schema = Some("demo".into());
    Some(TrinoClient::new(config).expect("client"))
}

#[tokio::test]
async fn decodes_a_literal_of_every_type() {
    let Some(client) = trino() else { return };
    let sql = r#"SELECT
        true AS b, TINYINT '-7' AS i8, SMALLINT '300' AS i16, 70000 AS i32,
        BIGINT '-9000000000' AS i64, REAL '1.5' AS f32, DOUBLE '2.25' AS f64,
        nan() AS nan, infinity() AS inf, -infinity() AS ninf,
        DECIMAL '-12345.67' AS dec, CAST('9.99' AS decimal(38,10)) AS dec38,
        'héllo ''quoted''' AS s, CAST('ab' AS char(3)) AS c,
        DATE '2025-03-01' AS d, TIME '12:34:56.789' AS t,
        TIMESTAMP '2025-03-01 12:34:56.123' AS ts3,
        TIMESTAMP '2025-03-01 12:34:56.123456' AS ts6,
        TIMESTAMP '2025-03-01 12:34:56.123456789' AS ts9,
        TIMESTAMP '2025-03-01 09:00:00.000 Asia/Seoul' AS tstz,
        X'00ff10' AS bin, JSON '{"a":[1,2]}' AS j,
        ARRAY[1, NULL, 3] AS arr, MAP(ARRAY['x', 'y'], ARRAY[1.5E0, nan()]) AS m,
        CAST(ROW(7, 'seven') AS row(n bigint, name varchar)) AS r,
        CAST(NULL AS bigint) AS null_i64, NULL AS nothing"#;
    let (schema, batches) = client.query_all(sql).await.expect("query");
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    let batch = batches.into_iter().find(|b| b.num_rows() == 1).unwrap();
    let col = |name: &str| batch.column(schema.index_of(name).unwrap()).clone();

    assert!(col("b").as_boolean().value(0));
    assert_eq!(col("i8").as_primitive::<Int8Type>().value(0), -7);
    assert_eq!(col("i16").as_primitive::<Int16Type>().value(0), 300);
    assert_eq!(col("i32").as_primitive::<Int32Type>().value(0), 70000);
    assert_eq!(
        col("i64").as_primitive::<Int64Type>().value(0),
        -9_000_000_000
    );
    assert_eq!(col("f32").as_primitive::<Float32Type>().value(0), 1.5);
    assert_eq!(col("f64").as_primitive::<Float64Type>().value(0), 2.25);
    assert!(col("nan").as_primitive::<Float64Type>().value(0).is_nan());
    assert_eq!(
        col("inf").as_primitive::<Float64Type>().value(0),
        f64::INFINITY
    );
    assert_eq!(
        col("ninf").as_primitive::<Float64Type>().value(0),
        f64::NEG_INFINITY
    );
    let dec = col("dec");
    assert_eq!(dec.data_type(), &DataType::Decimal128(7, 2));
    assert_eq!(dec.as_primitive::<Decimal128Type>().value(0), -1_234_567);
    let dec38 = col("dec38");
    assert_eq!(dec38.data_type(), &DataType::Decimal128(38, 10));
    assert_eq!(
        dec38.as_primitive::<Decimal128Type>().value_as_string(0),
        "9.9900000000"
    );
    assert_eq!(col("s").as_string::<i32>().value(0), "héllo 'quoted'");
    assert_eq!(col("c").as_string::<i32>().value(0), "ab ");
    assert_eq!(col("d").as_primitive::<Date32Type>().value(0), 20148);
    assert_eq!(
        col("t").as_primitive::<Time64MicrosecondType>().value(0),
        45_296_789_000
    );
    let ts3 = col("ts3");
    assert_eq!(
        ts3.data_type(),
        &DataType::Timestamp(TimeUnit::Millisecond, None)
    );
    assert_eq!(
        ts3.as_primitive::<TimestampMillisecondType>().value(0),
        1_740_832_496_123
    );
    assert_eq!(
        col("ts6")
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        1_740_832_496_123_456
    );
    assert_eq!(
        col("ts9")
            .as_primitive::<TimestampNanosecondType>()
            .value(0),
        1_740_832_496_123_456_789
    );
    let tstz = col("tstz");
    assert_eq!(
        tstz.data_type(),
        &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
    );
    // 09:00 in Seoul is 00:00 UTC.
    assert_eq!(
        tstz.as_primitive::<TimestampMillisecondType>().value(0),
        1_740_787_200_000
    );
    assert_eq!(col("bin").as_binary::<i32>().value(0), &[0x00, 0xff, 0x10]);
    assert_eq!(col("j").as_string::<i32>().value(0), r#"{"a":[1,2]}"#);
    let arr = col("arr");
    let arr = arr.as_list::<i32>().value(0);
    assert_eq!(arr.len(), 3);
    assert!(arr.is_null(1));
    assert_eq!(arr.as_primitive::<Int32Type>().value(2), 3);
    let m = col("m");
    let m = m.as_map();
    assert_eq!(m.value_length(0), 2);
    let values = m.values().as_primitive::<Float64Type>();
    assert!(values.iter().any(|v| v.is_some_and(f64::is_nan)));
    let r = col("r");
    let r = r.as_struct();
    assert_eq!(r.column_names(), vec!["n", "name"]);
    assert_eq!(r.column(1).as_string::<i32>().value(0), "seven");
    assert!(col("null_i64").is_null(0));
    assert_eq!(col("null_i64").data_type(), &DataType::Int64);
    assert_eq!(col("nothing").data_type(), &DataType::Null);
}

#[tokio::test]
async fn streams_pages_of_a_large_result() {
    let Some(client) = trino() else { return };
    let before = client.transfer();
    let mut stream = client
        .query("SELECT orderkey, comment FROM tpch.tiny.orders")
        .await
        .expect("query");
    let mut rows = 0;
    let mut pages = 0;
    while let Some(batch) = stream.next().await {
        rows += batch.expect("page").num_rows();
        pages += 1;
    }
    assert_eq!(rows, 15_000);
    assert!(pages > 1, "15000 rows should arrive in several pages");
    let transfer = client.transfer().since(&before);
    assert_eq!(transfer.rows, 15_000);
    assert!(transfer.bytes > 15_000 * 10, "{transfer:?}");
}

#[tokio::test]
async fn errors_carry_name_code_and_location() {
    let Some(client) = trino() else { return };
    let err = client
        .query_all("SELECT 1\nFROM nowhere_at_all")
        .await
        .unwrap_err();
    let TrinoError::Query(failure) = &err else {
        panic!("expected a query failure, got {err}");
    };
    assert_eq!(failure.error_name, "TABLE_NOT_FOUND");
    assert_eq!(failure.error_type, "USER_ERROR");
    assert!(failure.error_code > 0);
    assert_eq!(failure.location, Some((2, 6)));
    assert!(err.to_string().contains("nowhere_at_all"), "{err}");
    assert!(!err.is_transient());

    let err = client.query_all("SELEC 1").await.unwrap_err();
    assert!(err.to_string().contains("SYNTAX_ERROR"), "{err}");

    // A failure while rows are already streaming surfaces on the stream.
    let err = client
        .query_all("SELECT CAST(comment AS bigint) FROM tpch.tiny.orders")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("INVALID_CAST_ARGUMENT"), "{err}");
}

#[tokio::test]
async fn dropping_a_stream_cancels_the_query() {
    let Some(client) = trino() else { return };
    // Big enough to still be running when the first page arrives.
    let mut stream = client
        .query("SELECT l.orderkey FROM tpch.sf1.lineitem l")
        .await
        .expect("query");
    let query_id = stream.query_id().to_string();
    let first = stream.next().await;
    assert!(first.is_some());
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, batches) = client
            .query_all(&format!(
                "SELECT state, error_code FROM system.runtime.queries WHERE query_id = '{query_id}'"
            ))
            .await
            .expect("queries table");
        let batch = batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .expect("query is listed");
        let state = batch.column(0).as_string::<i32>().value(0).to_string();
        let code = batch.column(1).as_string::<i32>();
        if state == "FAILED" {
            assert_eq!(code.value(0), "USER_CANCELED");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "query {query_id} still {state} after the stream was dropped"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A stand-in coordinator that answers 503 twice, then a one-page result; also records the
/// headers it saw.
#[tokio::test]
async fn retries_unavailable_and_sends_the_protocol_headers() {
    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(std::sync::Mutex::new(HeaderMap::new()));
    let app = Router::new().route(
        "/v1/statement",
        post({
            let calls = Arc::clone(&calls);
            let seen = Arc::clone(&seen);
            move |headers: HeaderMap, body: String| async move {
                assert_eq!(body, "SELECT 42");
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    return (StatusCode::SERVICE_UNAVAILABLE, String::new());
                }
                *seen.lock().unwrap() = headers;
                (
                    StatusCode::OK,
                    r#"{"id":"q1","columns":[{"name":"x","type":"integer"}],"data":[[42]]}"#
                        .to_string(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut config = TrinoConfig::new(format!("http://{addr}"), "alice");
    config.catalog = Some("memory".into());
    config.schema = Some("demo".into());
    config.time_zone = "Asia/Seoul".into();
    config.session = vec![("query_max_run_time".into(), "5m".into())];
    let client = TrinoClient::new(config).unwrap();
    let (_, batches) = client.query_all("SELECT 42").await.expect("retried");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        batches[0].column(0).as_primitive::<Int32Type>().value(0),
        42
    );
    let headers = seen.lock().unwrap().clone();
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    assert_eq!(h("x-trino-user"), "alice");
    assert_eq!(h("x-trino-source"), "tidemark");
    assert_eq!(h("x-trino-catalog"), "memory");
    assert_eq!(h("x-trino-schema"), "demo");
    assert_eq!(h("x-trino-time-zone"), "Asia/Seoul");
    assert_eq!(h("x-trino-session"), "query_max_run_time=5m");
    assert_eq!(h("x-trino-client-capabilities"), "PARAMETRIC_DATETIME");
    assert_eq!(h("authorization"), "");
}

#[tokio::test]
async fn gives_up_after_repeated_unavailability_with_the_status() {
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::post;

    let app = Router::new().route(
        "/v1/statement",
        post(|| async { (StatusCode::BAD_GATEWAY, "gateway down") }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = TrinoClient::new(TrinoConfig::new(format!("http://{addr}"), "u")).unwrap();
    let err = client.query_all("SELECT 1").await.unwrap_err();
    assert!(
        matches!(err, TrinoError::Status { status: 502, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("gateway down"));
    assert!(err.is_transient());
}
