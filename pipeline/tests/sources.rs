//! External sources configured on the server: `[dashboard.trino]` against the real Trino the
//! test command starts (`TRINO_URL`, memory catalog seeded by `.ci/trino.sh` with tenants
//! `acme` and `globex`). Tenants see only their own Trino rows, over HTTP and pgwire alike, and
//! the answers equal what Trino itself says for that tenant.

#[path = "support/shop.rs"]
mod support;

use connectors::trino::{TrinoClient, TrinoConfig};
use serde_json::{Value, json};
use sql::arrow::array::AsArray;
use sql::arrow::compute::cast;
use sql::arrow::datatypes::{DataType, Float64Type};
use support::Shop;

const KEY_ACME: &str = "key-for-acme-0123456789";
const KEY_GLOBEX: &str = "key-for-globex-0123456789";

fn trino_url() -> Option<String> {
    let url = std::env::var("TRINO_URL").ok();
    if url.is_none() {
        eprintln!("TRINO_URL is not set (the test command starts Trino); skipping");
    }
    url
}

/// Runs SQL directly on Trino (with the project's Trino client) and returns the first column
/// of the first row as a number.
async fn trino_scalar(url: &str, sql: &str) -> f64 {
    let client = TrinoClient::new(TrinoConfig::new(url, "tidemark-test")).unwrap();
    let (_, batches) = client
        .query_all(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let first = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .unwrap_or_else(|| panic!("{sql}: no rows"));
    let value = cast(first.column(0), &DataType::Float64).unwrap();
    value.as_primitive::<Float64Type>().value(0)
}

async fn sql(shop: &Shop, key: &str, text: &str) -> (reqwest::StatusCode, Value) {
    let response = connectors::http::client()
        .post(format!("{}/v1/sql", shop.base))
        .bearer_auth(key)
        .json(&json!({ "sql": text }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn trino_tables_answer_per_tenant_as_trino_does() {
    let Some(url) = trino_url() else {
        return;
    };
    let shop = Shop::start_with(|_| {
        let tail = format!(
            r#"
[[tenants]]
id = "acme"
api_key = "{KEY_ACME}"

[[tenants]]
id = "globex"
api_key = "{KEY_GLOBEX}"

[dashboard.trino]
endpoint = "{url}"
user = "tidemark"
catalog = "memory"
schema = "demo"
"#
        );
        (String::new(), tail)
    })
    .await;

    for (tenant, key) in [("acme", KEY_ACME), ("globex", KEY_GLOBEX)] {
        let want = trino_scalar(
            &url,
            &format!(
                "SELECT CAST(sum(revenue) AS double) FROM memory.demo.orders \
                 WHERE tenant = '{tenant}' AND status = 'paid'"
            ),
        )
        .await;
        let (status, body) = sql(
            &shop,
            key,
            "SELECT CAST(sum(revenue) AS DOUBLE) AS paid FROM trino.orders WHERE status = 'paid'",
        )
        .await;
        assert_eq!(status, reqwest::StatusCode::OK, "{body}");
        let got = body["rows"][0]["paid"].as_f64().expect("a number");
        assert!(
            (got - want).abs() < 1e-6 * want.abs().max(1.0),
            "{tenant}: {got} vs {want}"
        );
    }

    // No tenant column, no other tenant: globex's rows are not reachable from acme.
    let (status, body) = sql(
        &shop,
        KEY_ACME,
        "SELECT count(*) AS n FROM trino.orders WHERE order_id < 0 OR true",
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let acme_orders = trino_scalar(
        &url,
        "SELECT CAST(count(*) AS double) FROM memory.demo.orders WHERE tenant = 'acme'",
    )
    .await;
    assert_eq!(body["rows"][0]["n"].as_f64(), Some(acme_orders), "{body}");

    // A tenant with no Trino rows sees an empty table, not someone else's.
    let (status, body) = sql(
        &shop,
        support::KEY_C,
        "SELECT count(*) AS n FROM trino.orders",
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    assert_eq!(body["rows"][0]["n"], 0, "{body}");
}

#[tokio::test]
async fn an_unreachable_trino_stops_start_up_naming_the_key() {
    let port = support::free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tidemark.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{}"
[server]
listen = "127.0.0.1:{}"
[dashboard.trino]
endpoint = "http://127.0.0.1:{port}"
user = "tidemark"
catalog = "memory"
schema = "demo"
"#,
            dir.path().join("data").display(),
            support::free_port()
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("dashboard.trino"), "{stderr}");
}

use standins::ga4 as ga4_support;

/// Stores a secret for `tenant` with the CLI, in the data directory the server will use.
fn put_secret(config: &std::path::Path, tenant: &str, name: &str, value: &str) {
    let file = config.with_file_name(format!("{name}.value"));
    std::fs::write(&file, value).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["secrets", "put", "--config"])
        .arg(config)
        .args(["--tenant", tenant, name, "--file"])
        .arg(&file)
        .output()
        .unwrap();
    std::fs::remove_file(&file).unwrap();
    assert!(
        output.status.success(),
        "secrets put: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn ga4_properties_answer_through_the_server_with_the_key_from_the_secrets_store() {
    let standin = ga4_support::StandIn::start().await;
    let key = standin.key_json();
    let base = standin.base_url.clone();
    let shop = Shop::start_with(|dir| {
        // The key goes into the secrets store before the server starts; the configuration
        // names it only.
        let config = dir.join("secrets.toml");
        std::fs::write(
            &config,
            format!("data_dir = \"{}\"\n", dir.join("data").display()),
        )
        .unwrap();
        put_secret(&config, "shop-a", "ga4-key", &key);
        let tail = format!(
            r#"
[dashboard.ga4]
api_base = "{base}"

[[dashboard.ga4.tenants]]
tenant = "shop-a"
key_secret = "ga4-key"
tables = {{ web = "{property}" }}
"#,
            property = ga4_support::PROPERTY
        );
        (String::new(), tail)
    })
    .await;
    standin.clear_log();

    let (status, body) = sql(
        &shop,
        support::KEY_A,
        "SELECT session_default_channel_group AS channel, SUM(sessions) AS sessions \
         FROM ga4.web WHERE date BETWEEN '2026-01-03' AND '2026-01-09' \
         GROUP BY 1 ORDER BY 1",
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let rows = body["rows"].as_array().expect("rows").clone();
    assert!(!rows.is_empty(), "{body}");
    // The numbers are GA4's own, computed by the stand-in from its raw events.
    let events = standin.events(ga4_support::PROPERTY);
    for row in &rows {
        let channel = row["channel"].as_str().unwrap();
        let matching: Vec<&ga4_support::Event> = events
            .iter()
            .filter(|e| {
                let day = ga4_support::dimension(e, "date").unwrap_or_default();
                ga4_support::dimension(e, "sessionDefaultChannelGroup").as_deref() == Some(channel)
                    && ("20260103".."20260110").contains(&day.as_str())
            })
            .collect();
        let want = ga4_support::metric(&matching, "sessions").unwrap();
        assert_eq!(row["sessions"].as_f64(), Some(want), "{channel}: {body}");
    }
    // One report, pushed whole, checked against the discovery document.
    assert_eq!(
        standin.run_reports().len(),
        1,
        "{:?}",
        standin.run_reports()
    );
    assert!(
        standin.violations().is_empty(),
        "{:?}",
        standin.violations()
    );

    // Another tenant has no GA4 tables at all.
    let (status, body) = sql(&shop, support::KEY_B, "SELECT * FROM ga4.web").await;
    assert!(status.is_client_error(), "{status} {body}");
}
