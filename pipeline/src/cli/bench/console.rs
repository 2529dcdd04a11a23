//! `tidemark bench console`: the first page of the demo's main dashboard (four panels over the
//! demo warehouse: a monthly trend per channel, revenue by channel, ABC of brands, a quadrant of
//! countries), as a person opens it.
//!
//! - **Server time:** the page's HTML answered over HTTP with a signed-in session, the first time
//!   (cold: nothing cached) and then warm (the result cache holds the four answers), p50/p95.
//! - **Complete page in Chromium:** `chromedriver` drives headless Chromium to the page; the
//!   figure is the navigation's `domContentLoadedEventEnd` (the charts are inline SVG, so they are
//!   in the document by then), p50/p95 over the warm loads.
//! - **Transferred:** the document plus its stylesheet and script, bytes on the wire.
//!
//! Targets: server ≤ 50 ms warm, DOMContentLoaded ≤ 500 ms, ≤ 300 kB transferred.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use fantoccini::ClientBuilder;
use serde_json::{Value, json};

use crate::config::{Config, TenantConfig};
use crate::server::Server;

const TENANT: &str = "demo-shop";
const KEY: &str = "bench-console-key-0123456789";

/// What `tidemark bench console` takes.
pub struct ConsoleBenchArgs {
    /// The warehouse (generated when missing).
    pub warehouse: Option<PathBuf>,
    /// Orders to generate when it is missing.
    pub orders: usize,
    /// Timed warm loads (server and browser each).
    pub iterations: usize,
    /// `chromedriver`.
    pub chromedriver: PathBuf,
    /// The Chromium binary.
    pub chromium: PathBuf,
}

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Signs in through the form: the session cookie (`name=value`).
async fn sign_in(http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let form = http.get(format!("{base}/login")).send().await?;
    let login_cookie = form
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("tidemark_login="))
        .and_then(|c| c.split(';').next())
        .context("no sign-in cookie")?
        .to_string();
    let token = login_cookie
        .trim_start_matches("tidemark_login=")
        .to_string();
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("login_token", token.as_str()),
            ("api_key", KEY),
            ("next", "/"),
        ])
        .finish();
    let answer = http
        .post(format!("{base}/login"))
        .header(reqwest::header::COOKIE, &login_cookie)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
        .send()
        .await?;
    answer
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("tidemark_session="))
        .and_then(|c| c.split(';').next())
        .map(str::to_string)
        .context("signing in gave no session")
}

fn stats(mut samples: Vec<f64>) -> Value {
    samples.sort_by(f64::total_cmp);
    let round = |v: f64| (v * 10.0).round() / 10.0;
    json!({
        "n": samples.len(),
        "p50": round(super::percentile(&samples, 50.0)),
        "p95": round(super::percentile(&samples, 95.0)),
        "max": round(samples.last().copied().unwrap_or(0.0)),
    })
}

/// Runs the benchmark.
pub async fn run(args: ConsoleBenchArgs) -> anyhow::Result<Value> {
    let (root, _) = super::bench_warehouse(args.warehouse.clone(), TENANT, args.orders).await?;
    let dir = std::env::temp_dir().join(format!("tidemark-bench-console-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = Config {
        data_dir: dir.join("data"),
        ..Config::default()
    };
    config.server.listen = "127.0.0.1:0".into();
    config.dashboard.warehouse = Some(root.clone());
    config.tenants = vec![TenantConfig {
        id: TENANT.into(),
        name: Some("Demo Shop".into()),
        time_zone: "Asia/Seoul".into(),
        api_key: KEY.into(),
        previous_api_keys: Vec::new(),
        locale: "ko-KR".into(),
        currency: "KRW".into(),
    }];
    let server = Server::start(config).await?;
    let base = format!("http://{}", server.addr);
    let http = connectors::http::client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let dashboard = crate::cli::demo::shop_dashboard();
    let created = http
        .post(format!("{base}/v1/dashboards"))
        .bearer_auth(KEY)
        .json(&dashboard)
        .send()
        .await?;
    anyhow::ensure!(
        created.status().is_success(),
        "creating the dashboard: {}",
        created.text().await?
    );
    let page = format!(
        "{base}/dashboards/{}",
        dashboard["id"].as_str().unwrap_or("")
    );
    let session = sign_in(&http, &base).await?;

    // Server time, over HTTP.
    let load = |http: reqwest::Client, page: String, session: String| async move {
        let started = Instant::now();
        let answer = http
            .get(&page)
            .header(reqwest::header::COOKIE, session)
            .send()
            .await?;
        anyhow::ensure!(answer.status().is_success(), "{page}: {}", answer.status());
        let bytes = answer.bytes().await?.len();
        Ok::<_, anyhow::Error>((started.elapsed().as_secs_f64() * 1000.0, bytes))
    };
    let (cold_ms, html_bytes) = load(http.clone(), page.clone(), session.clone()).await?;
    let mut warm = Vec::with_capacity(args.iterations);
    for _ in 0..args.iterations {
        warm.push(load(http.clone(), page.clone(), session.clone()).await?.0);
    }
    let mut asset_bytes = 0;
    for asset in ["/assets/console.css", "/assets/console.js"] {
        asset_bytes += http
            .get(format!("{base}{asset}"))
            .send()
            .await?
            .bytes()
            .await?
            .len();
    }

    // The complete page, in headless Chromium.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let _driver = Driver(
        Command::new(&args.chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (apt-get install chromium chromium-driver)",
                    args.chromedriver.display()
                )
            })?,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": args.chromium, "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
               "--disable-dev-shm-usage", "--window-size=1280,900"]}),
    );
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .context("a Chromium session")?;
    // Signed in through the form, as a person would.
    browser.goto(&format!("{base}/login")).await?;
    browser
        .find(fantoccini::Locator::Id("api_key"))
        .await?
        .send_keys(KEY)
        .await?;
    browser
        .find(fantoccini::Locator::Id("sign-in"))
        .await?
        .click()
        .await?;
    let timing = "const n = performance.getEntriesByType('navigation')[0];
        const charts = document.querySelectorAll('.chart svg').length;
        const assets = performance.getEntriesByType('resource')
            .reduce((sum, r) => sum + r.transferSize, 0);
        return [n.domContentLoadedEventEnd - n.startTime, n.transferSize, assets, charts];";
    let mut dcl = Vec::with_capacity(args.iterations);
    let mut first_transfer = None;
    let mut charts = 0;
    for i in 0..=args.iterations {
        browser.goto(&page).await?;
        let measured = browser.execute(timing, vec![]).await?;
        let numbers: Vec<f64> = serde_json::from_value(measured)?;
        charts = numbers[3] as u64;
        if i == 0 {
            first_transfer = Some(numbers[1] + numbers[2]);
        } else {
            dcl.push(numbers[0]);
        }
    }
    browser.close().await?;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);

    let warm = stats(warm);
    let dcl = stats(dcl);
    // An empty cache downloads the document, the stylesheet and the script (no compression).
    let transferred = (html_bytes + asset_bytes) as f64;
    Ok(json!({
        "benchmark": "console",
        "page": "the demo's main dashboard (4 panels)",
        "warehouse": root,
        "charts_drawn": charts,
        "server_ms": {"cold": (cold_ms * 10.0).round() / 10.0, "warm": warm},
        "chromium_dom_content_loaded_ms": dcl,
        "bytes": {"html": html_bytes, "css_and_js": asset_bytes,
                  "transferred_first_load": transferred,
                  "document_transfer_in_chromium": first_transfer},
        "targets": {
            "server_warm_p50_under_50ms": warm["p50"].as_f64().is_some_and(|v| v <= 50.0),
            "dom_content_loaded_p50_under_500ms": dcl["p50"].as_f64().is_some_and(|v| v <= 500.0),
            "transferred_under_300kB": transferred <= 300_000.0,
        },
    }))
}
