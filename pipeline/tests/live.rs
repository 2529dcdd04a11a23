//! Live events in dashboards, end to end against `tidemark serve`: an `order` posted over HTTP is
//! in the next answer over `orders` (a dashboard spec, SQL and pgwire), compaction into the
//! warehouse's Parquet files changes no answer, a SIGKILL during compaction loses and doubles
//! nothing, an unmapped event type is only a raw event, and tenants see only their own events.

#[path = "support/shop.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{KEY_A, KEY_B, Shop};

/// Compaction every second, merging a day's files once there are 3.
fn fast_compaction() -> (String, String) {
    (
        "[dashboard.live]\ncompact_every = \"1s\"\npoll_every = \"100ms\"\nmerge_files = 3\n"
            .to_string(),
        String::new(),
    )
}

async fn post_events(shop: &Shop, key: &str, events: &[Value]) -> Value {
    let body: String = events.iter().map(|e| format!("{e}\n")).collect();
    let response = connectors::http::client()
        .post(format!("{}/v1/events", shop.base))
        .bearer_auth(key)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("events reach tidemark");
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.expect("a JSON answer")
}

async fn sql(shop: &Shop, key: &str, text: &str) -> (u16, Value) {
    let response = connectors::http::client()
        .post(format!("{}/v1/sql", shop.base))
        .bearer_auth(key)
        .body(text.to_string())
        .send()
        .await
        .expect("sql reaches tidemark");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

async fn query(shop: &Shop, key: &str, spec: &Value) -> Value {
    let response = connectors::http::client()
        .post(format!("{}/v1/query", shop.base))
        .bearer_auth(key)
        .body(spec.to_string())
        .send()
        .await
        .expect("query reaches tidemark");
    let status = response.status();
    let body: Value = response.json().await.expect("a JSON answer");
    assert!(status.is_success(), "{spec}: {status} {body}");
    body
}

/// Today's paid revenue by channel (a dashboard spec in the shop's zone): live orders only, since
/// the generated warehouse holds another year.
fn today_by_channel() -> Value {
    json!({
        "measures": ["orders.revenue", "orders.orders"],
        "dimensions": ["orders.channel"],
        "time": {"dimension": "orders.date", "range": "today", "timezone": "Asia/Seoul"},
        "order": [{"member": "orders.channel"}]
    })
}

fn order(id: &str, amount: i64, channel: &str, ts: i64) -> Value {
    json!({"id": id, "type": "order", "ts": ts,
           "attrs": {"amount": amount, "channel": channel, "device": "mobile", "coupon": "W10"}})
}

/// `(count, sum of revenue)` of live orders, over SQL.
async fn live_totals(shop: &Shop, key: &str) -> (i64, f64) {
    let (status, body) = sql(
        shop,
        key,
        "SELECT count(*) AS n, coalesce(sum(revenue), 0) AS r FROM orders WHERE event_id IS NOT NULL",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let row = &body["rows"][0];
    (row["n"].as_i64().unwrap(), row["r"].as_f64().unwrap())
}

/// `(orders, revenue)` summed over the rows of a [`today_by_channel`] answer.
fn spec_totals(answer: &Value) -> (i64, f64) {
    let rows = answer["rows"].as_array().expect("rows");
    let n = rows
        .iter()
        .map(|r| r["orders.orders"].as_i64().unwrap())
        .sum();
    let sum = rows
        .iter()
        .map(|r| r["orders.revenue"].as_f64().unwrap())
        .sum();
    (n, sum)
}

/// The live files of a tenant's table.
fn live_files(shop: &Shop, table: &str, tenant: &str) -> Vec<String> {
    let dir = shop.warehouse.join(table).join(format!("tenant={tenant}"));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("live-"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Rows in `tenant`'s live files of `orders` (replaced parts included, until they are deleted).
fn rows_in_live_files(shop: &Shop, tenant: &str) -> usize {
    use sql::datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    let dir = shop
        .warehouse
        .join("orders")
        .join(format!("tenant={tenant}"));
    live_files(shop, "orders", tenant)
        .iter()
        .map(|name| {
            let file = std::fs::File::open(dir.join(name)).expect("a live file");
            let reader = SerializedFileReader::new(file).expect("a whole Parquet file");
            reader.metadata().file_metadata().num_rows() as usize
        })
        .sum()
}

/// Waits until `tenant`'s live files hold at least `expected` orders.
async fn wait_compacted(shop: &Shop, tenant: &str, expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let in_files = rows_in_live_files(shop, tenant);
        if in_files >= expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "orders of {tenant} never compacted: {in_files} of {expected} rows in files"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_order_is_in_the_next_answer_and_compaction_changes_nothing() {
    let mut shop = Shop::start_with(|_| fast_compaction()).await;
    let now = chrono::Utc::now().timestamp_millis();
    let before = query(&shop, KEY_A, &today_by_channel()).await;
    assert_eq!(before["rows"].as_array().unwrap().len(), 0, "{before}");

    // Read-your-writes: each answer after an accepted batch includes it.
    let mut expected_n = 0;
    let mut expected_sum = 0.0;
    for round in 0..6 {
        let events: Vec<Value> = (0..50)
            .map(|i| {
                let channel = ["naver", "kakao", "google"][i % 3];
                order(
                    &format!("o-{round}-{i}"),
                    1_000 * (i as i64 + 1),
                    channel,
                    now + i as i64,
                )
            })
            .collect();
        let answer = post_events(&shop, KEY_A, &events).await;
        assert_eq!(answer["accepted"], 50, "{answer}");
        expected_n += 50;
        expected_sum += (1..=50).map(|i| 1_000.0 * i as f64).sum::<f64>();
        assert_eq!(live_totals(&shop, KEY_A).await, (expected_n, expected_sum));
        // The same spec again: its kept plan reads the events that arrived since.
        let answer = query(&shop, KEY_A, &today_by_channel()).await;
        assert_eq!(spec_totals(&answer), (expected_n, expected_sum), "{answer}");
    }
    // An id seen twice is one order, in the table as in the log.
    let again = post_events(&shop, KEY_A, &[order("o-0-0", 999_999, "naver", now)]).await;
    assert_eq!(again["duplicates"], 1, "{again}");
    assert_eq!(live_totals(&shop, KEY_A).await, (expected_n, expected_sum));

    let live = query(&shop, KEY_A, &today_by_channel()).await;
    assert_eq!(live["rows"].as_array().unwrap().len(), 3, "{live}");
    assert_eq!(spec_totals(&live), (expected_n, expected_sum), "{live}");

    // What no column took is kept; the event id is a column.
    let (_, kept) = sql(
        &shop,
        KEY_A,
        "SELECT event_attributes, device, status FROM orders WHERE event_id = 'o-0-1'",
    )
    .await;
    assert_eq!(
        kept["rows"][0]["event_attributes"], r#"{"coupon":"W10"}"#,
        "{kept}"
    );
    assert_eq!(kept["rows"][0]["status"], "paid");

    // Compaction writes the events into the warehouse; every answer stays the same.
    wait_compacted(&shop, "shop-a", expected_n as usize).await;
    assert_eq!(live_totals(&shop, KEY_A).await, (expected_n, expected_sum));
    assert_eq!(
        query(&shop, KEY_A, &today_by_channel()).await["rows"],
        live["rows"]
    );

    // More rounds on the same day are merged into one file once there are three.
    for round in 6..10 {
        let events: Vec<Value> = (0..10)
            .map(|i| order(&format!("o-{round}-{i}"), 500, "naver", now + i))
            .collect();
        post_events(&shop, KEY_A, &events).await;
        expected_n += 10;
        expected_sum += 5_000.0;
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        assert_eq!(live_totals(&shop, KEY_A).await, (expected_n, expected_sum));
    }
    let files = live_files(&shop, "orders", "shop-a");
    assert!(
        files.iter().any(|f| {
            let parts: Vec<&str> = f.trim_end_matches(".parquet").rsplitn(3, '-').collect();
            // a merged file spans several rounds: its range starts at the first event
            parts.len() == 3
                && parts[1].trim_start_matches('0') == "1"
                && parts[0].parse::<u64>().unwrap() > 301
        }),
        "no merged file among {files:?}"
    );

    // A SIGKILL, with what an unfinished round leaves behind planted on top of it: a file being
    // written and a file past the watermark. Neither is read, and start-up removes both.
    let dir = shop.warehouse.join("orders").join("tenant=shop-a");
    let date = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Seoul)
        .date_naive();
    let unfinished = format!("live-{date}-{:020}-{:020}.parquet", 1_000_000, 1_000_010);
    std::fs::write(dir.join(".live-tmp-half"), b"PAR1 half a file").unwrap();
    std::fs::copy(dir.join(&files[0]), dir.join(&unfinished)).unwrap();
    shop.kill_and_restart().await;
    assert!(
        !dir.join(&unfinished).exists(),
        "an unfinished round's file was kept"
    );
    assert!(!dir.join(".live-tmp-half").exists());
    assert_eq!(live_totals(&shop, KEY_A).await, (expected_n, expected_sum));
    assert_eq!(
        query(&shop, KEY_A, &today_by_channel()).await["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["orders.orders"].as_i64().unwrap())
            .sum::<i64>(),
        expected_n
    );
}

/// The tail is skipped batch by batch where a query's filter cannot match a batch's values (as
/// row groups of files are): every filter still counts exactly the rows it matches.
#[tokio::test]
async fn filters_over_the_tail_count_exactly_what_they_match() {
    // No compaction during the test: every event stays in the tail.
    let shop = Shop::start_with(|_| {
        (
            "[dashboard.live]\ncompact_every = \"1h\"\npoll_every = \"50ms\"\n".to_string(),
            String::new(),
        )
    })
    .await;
    let now = chrono::Utc::now().timestamp_millis();
    let day = 86_400_000;
    // Three batches with disjoint amounts, channels and days.
    let batches = [
        (100, "naver", now - 2 * day),
        (10_000, "kakao", now - day),
        (1_000_000, "google", now),
    ];
    for (b, (base, channel, ts)) in batches.iter().enumerate() {
        let events: Vec<Value> = (0..40)
            .map(|i| order(&format!("p-{b}-{i}"), base + i, channel, ts + i))
            .collect();
        assert_eq!(post_events(&shop, KEY_A, &events).await["accepted"], 40);
        // Let the poller read each batch on its own.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let count = async |filter: &str| {
        let (status, body) = sql(
            &shop,
            KEY_A,
            &format!("SELECT count(*) AS n FROM orders WHERE event_id LIKE 'p-%' AND ({filter})"),
        )
        .await;
        assert_eq!(status, 200, "{filter}: {body}");
        body["rows"][0]["n"].as_i64().unwrap()
    };
    assert_eq!(count("revenue >= 10000").await, 80);
    assert_eq!(count("revenue < 10000").await, 40);
    assert_eq!(count("revenue BETWEEN 10010 AND 10019").await, 10);
    assert_eq!(count("channel = 'kakao'").await, 40);
    assert_eq!(count("channel = 'kakao' OR revenue < 200").await, 80);
    assert_eq!(count("channel IN ('naver', 'google')").await, 80);
    assert_eq!(count("revenue > 5000000").await, 0);
    assert_eq!(count("NOT (revenue >= 10000)").await, 40);
    assert_eq!(count("status IS NULL").await, 0);
    let today = query(&shop, KEY_A, &today_by_channel()).await;
    let rows = today["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{today}");
    assert_eq!(rows[0]["orders.channel"], "google");
    assert_eq!(rows[0]["orders.orders"], 40);
}

#[tokio::test]
async fn killed_while_ingesting_and_compacting_every_acknowledged_order_counts_once() {
    let mut shop = Shop::start_with(|_| {
        (
            "[dashboard.live]\ncompact_every = \"200ms\"\npoll_every = \"50ms\"\nmerge_files = 4\n"
                .to_string(),
            String::new(),
        )
    })
    .await;
    let now = chrono::Utc::now().timestamp_millis();
    let mut acknowledged = std::collections::BTreeSet::new();
    for kill in 0..4 {
        let started = Instant::now();
        let mut batch = 0;
        // Ingest for a while so that rounds and merges run, then kill in the middle of it.
        while started.elapsed() < Duration::from_millis(1_500) {
            let events: Vec<Value> = (0..200)
                .map(|i| order(&format!("k{kill}-{batch}-{i}"), 10, "naver", now + i))
                .collect();
            let answer = post_events(&shop, KEY_A, &events).await;
            assert_eq!(answer["accepted"], 200, "{answer}");
            acknowledged.extend(events.iter().map(|e| e["id"].as_str().unwrap().to_string()));
            batch += 1;
        }
        shop.kill_and_restart().await;
        let n = acknowledged.len() as i64;
        assert_eq!(
            live_totals(&shop, KEY_A).await,
            (n, 10.0 * n as f64),
            "after kill {kill}"
        );
    }
    let (_, distinct) = sql(
        &shop,
        KEY_A,
        "SELECT count(DISTINCT event_id) AS d, count(*) AS n FROM orders WHERE event_id IS NOT NULL",
    )
    .await;
    assert_eq!(distinct["rows"][0]["d"], acknowledged.len());
    assert_eq!(distinct["rows"][0]["n"], acknowledged.len());
}

#[tokio::test]
async fn unmapped_events_are_raw_events_and_tenants_see_only_their_own() {
    let shop = Shop::start().await;
    let now = chrono::Utc::now().timestamp_millis();
    let signups: Vec<Value> = (0..5)
        .map(|i| json!({"id": format!("s{i}"), "type": "signup", "ts": now, "attrs": {"plan": "free"}}))
        .collect();
    post_events(&shop, KEY_A, &signups).await;
    post_events(&shop, KEY_A, &[order("a1", 100, "naver", now)]).await;
    post_events(&shop, KEY_B, &[order("b1", 7, "kakao", now)]).await;

    let (status, raw) = sql(
        &shop,
        KEY_A,
        "SELECT event_type, count(*) AS n FROM raw_events GROUP BY event_type ORDER BY event_type",
    )
    .await;
    assert_eq!(status, 200, "{raw}");
    assert_eq!(
        raw["rows"],
        json!([{"event_type": "order", "n": 1}, {"event_type": "signup", "n": 5}])
    );
    let (_, plan) = sql(
        &shop,
        KEY_A,
        "SELECT attributes FROM raw_events WHERE event_id = 's0'",
    )
    .await;
    assert_eq!(plan["rows"][0]["attributes"], r#"{"plan":"free"}"#);
    // No mapping, no table of its own; the catalog is otherwise intact.
    let (status, body) = sql(&shop, KEY_A, "SELECT * FROM signups").await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = sql(&shop, KEY_A, "SELECT count(*) FROM customers").await;
    assert_eq!(status, 200);

    // The wall: each tenant's live rows are its own, over HTTP and pgwire.
    assert_eq!(live_totals(&shop, KEY_A).await, (1, 100.0));
    assert_eq!(live_totals(&shop, KEY_B).await, (1, 7.0));
    let (_, b_raw) = sql(&shop, KEY_B, "SELECT event_id FROM raw_events").await;
    assert_eq!(b_raw["rows"], json!([{"event_id": "b1"}]));
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(shop.pg_port)
        .user("shop-b")
        .password(support::KEY_B)
        .dbname("tidemark")
        .connect(tokio_postgres::NoTls)
        .await
        .expect("pgwire login");
    tokio::spawn(connection);
    let rows = client
        .simple_query("SELECT event_id FROM raw_events UNION ALL SELECT event_id FROM orders WHERE event_id IS NOT NULL")
        .await
        .expect("pgwire query");
    let ids: Vec<String> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(ids, vec!["b1".to_string(), "b1".to_string()]);
}
