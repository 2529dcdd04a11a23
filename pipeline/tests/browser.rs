//! The web console in a real browser: Debian's Chromium, headless, driven over WebDriver
//! (`chromedriver`), against the real `tidemark serve` over a generated warehouse.
//!
//! A person signs in, builds an ABC question and checks the drawn bars and the table against
//! `/v1/query`'s answer, saves it to a dashboard and reloads it, gets a rule's validation error
//! next to its field, watches a notification arrive without reloading, and reads the pages at a
//! phone's width. Screenshots land in `<target>/tmp/console-screenshots/` for a person to look
//! at.
//!
//! Needs `chromium` and `chromium-driver` (the test command installs them; by hand:
//! `apt-get install chromium chromium-driver`). Without them the test fails and says so.

#[path = "support/shop.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use support::{KEY_A, Shop, free_port};

/// `chromedriver`, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(name: &str, candidates: &[&str]) -> PathBuf {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed (looked at {candidates:?}); the test command installs it \
                 (.ci/chromium.sh), or run `apt-get install chromium chromium-driver`"
            )
        })
}

async fn start_driver() -> Driver {
    let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| {
        find("chromedriver", &["/usr/bin/chromedriver"])
            .display()
            .to_string()
    });
    let port = free_port();
    let child = Command::new(binary)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn browser(driver: &Driver) -> Client {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| {
        find(
            "chromium",
            &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
        )
        .display()
        .to_string()
    });
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,900"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    let path = screenshots().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

/// Waits up to `seconds` for `script` (a JS expression) to be truthy.
async fn wait_for(c: &Client, script: &str, seconds: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let value = c
            .execute(&format!("return !!({script});"), vec![])
            .await
            .unwrap_or(Value::Bool(false));
        if value == Value::Bool(true) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn api(shop: &Shop, method: reqwest::Method, path: &str, body: Value) -> Value {
    let response = connectors::http::client()
        .request(method, format!("{}{path}", shop.base))
        .bearer_auth(KEY_A)
        .json(&body)
        .send()
        .await
        .expect("API");
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn select(c: &Client, id: &str, value: &str) {
    c.execute(
        "const s = document.getElementById(arguments[0]);
         for (const o of s.options) { if (o.value === arguments[1]) o.selected = true; }",
        vec![json!(id), json!(value)],
    )
    .await
    .expect("select");
}

#[tokio::test]
async fn a_person_uses_the_console_in_chromium() {
    let driver = start_driver().await;
    let shop = Shop::start().await;
    let c = browser(&driver).await;

    // Sign in: the console sends a signed-out visitor to the form and back.
    c.goto(&format!("{}/explore", shop.base)).await.unwrap();
    assert!(c.current_url().await.unwrap().path().starts_with("/login"));
    screenshot(&c, "01-sign-in").await;
    c.find(Locator::Id("api_key"))
        .await
        .unwrap()
        .send_keys(KEY_A)
        .await
        .unwrap();
    c.find(Locator::Id("sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(wait_for(&c, "location.pathname === '/explore'", 10).await);

    // An ABC question: revenue by brand.
    select(&c, "m", "order_items.revenue").await;
    select(&c, "d", "order_items.brand").await;
    c.find(Locator::Css("input[name=analysis][value=abc]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The 20 brands with the most revenue (classes are over all brands): each its own bar.
    c.find(Locator::Id("limit"))
        .await
        .unwrap()
        .send_keys("20")
        .await
        .unwrap();
    c.find(Locator::Id("run"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(wait_for(&c, "document.querySelector('.chart svg')", 20).await);
    screenshot(&c, "02-abc-question").await;
    let spec_text = c
        .find(Locator::Id("spec"))
        .await
        .unwrap()
        .prop("textContent")
        .await
        .unwrap()
        .unwrap_or_default();
    let spec: Value = serde_json::from_str(&spec_text).expect("the page shows its spec");
    let expected = api(&shop, reqwest::Method::POST, "/v1/query", spec.clone()).await;
    let rows = expected["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 20, "{expected}");
    // The bars drawn: one per brand, coloured by class, as many of each class as the answer has.
    let drawn = c
        .execute(
            "return Array.from(document.querySelectorAll('.chart svg rect'))
                .filter(r => parseFloat(r.getAttribute('width')) > 14)
                .map(r => (r.getAttribute('fill') || '').toUpperCase());",
            vec![],
        )
        .await
        .unwrap();
    let drawn: Vec<String> = serde_json::from_value(drawn).unwrap();
    let count = |fill: &str| drawn.iter().filter(|f| *f == fill).count();
    let class_count = |class: &str| rows.iter().filter(|r| r["abc_class"] == class).count();
    assert_eq!(
        count("#1F77B4"),
        class_count("A"),
        "class A bars: {drawn:?}"
    );
    assert_eq!(
        count("#FF7F0E"),
        class_count("B"),
        "class B bars: {drawn:?}"
    );
    assert_eq!(
        count("#7F7F7F"),
        class_count("C"),
        "class C bars: {drawn:?}"
    );
    // The table: the same brands in the same order, revenue in won.
    let cells = c
        .execute(
            "return Array.from(document.querySelectorAll('table.answer tbody tr'))
                .map(tr => Array.from(tr.cells).map(td => td.textContent));",
            vec![],
        )
        .await
        .unwrap();
    let cells: Vec<Vec<String>> = serde_json::from_value(cells).unwrap();
    assert_eq!(cells.len(), rows.len());
    let columns: Vec<String> = expected["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    let brand = columns
        .iter()
        .position(|c| c == "order_items.brand")
        .unwrap();
    let revenue = columns
        .iter()
        .position(|c| c == "order_items.revenue")
        .unwrap();
    for (row, shown) in rows.iter().zip(&cells) {
        assert_eq!(shown[brand], row["order_items.brand"].as_str().unwrap());
        let won = row["order_items.revenue"].as_f64().unwrap().round() as i64;
        let digits: String = shown[revenue]
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        assert!(shown[revenue].starts_with('₩'), "{}", shown[revenue]);
        assert_eq!(digits.parse::<i64>().unwrap(), won);
    }

    // Saved to a new dashboard, which its URL reproduces after a reload.
    c.find(Locator::Id("panel_title"))
        .await
        .unwrap()
        .send_keys("Brands by revenue")
        .await
        .unwrap();
    c.find(Locator::Id("title"))
        .await
        .unwrap()
        .send_keys("Merchandising")
        .await
        .unwrap();
    c.find(Locator::Id("save-new"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(wait_for(&c, "location.pathname.startsWith('/dashboards/')", 20).await);
    let url = c.current_url().await.unwrap();
    c.refresh().await.unwrap();
    assert!(wait_for(&c, "document.querySelector('.chart svg')", 20).await);
    assert_eq!(c.current_url().await.unwrap(), url);
    let title = c
        .find(Locator::Id("dashboard-title"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(title, "Merchandising");
    let bars_again = c
        .execute(
            "return document.querySelectorAll('.chart svg rect[width]').length;",
            vec![],
        )
        .await
        .unwrap();
    assert!(bars_again.as_u64().unwrap() >= rows.len() as u64);
    screenshot(&c, "03-dashboard").await;

    // A rule with a mistake: the API's error, next to the field it names.
    c.goto(&format!("{}/alerts/new", shop.base)).await.unwrap();
    c.find(Locator::Id("event_type"))
        .await
        .unwrap()
        .send_keys("order")
        .await
        .unwrap();
    c.find(Locator::Id("window_size"))
        .await
        .unwrap()
        .send_keys("1h")
        .await
        .unwrap();
    select(&c, "cond_op", ">").await;
    c.find(Locator::Id("cond_value"))
        .await
        .unwrap()
        .send_keys("10")
        .await
        .unwrap();
    c.find(Locator::Id("template"))
        .await
        .unwrap()
        .send_keys("{{ broken")
        .await
        .unwrap();
    c.find(Locator::Id("save-rule"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(wait_for(&c, "document.getElementById('error-template')", 10).await);
    let beside = c
        .execute(
            "const e = document.getElementById('error-template');
             return e.previousElementSibling && e.previousElementSibling.id;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        beside,
        json!("template"),
        "the error sits right after its field"
    );
    screenshot(&c, "04-rule-error").await;

    // A notification appears on the open page without a reload.
    api(
        &shop,
        reqwest::Method::POST,
        "/v1/destinations",
        json!({"id": "files", "kind": "file", "config": {"path": "alerts.jsonl"}}),
    )
    .await;
    api(&shop, reqwest::Method::POST, "/v1/rules",
        json!({"id": "signups", "kind": "match", "event_type": "signup", "destinations": ["files"]})).await;
    c.goto(&format!("{}/notifications", shop.base))
        .await
        .unwrap();
    c.execute("window.stillHere = true;", vec![]).await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    api(
        &shop,
        reqwest::Method::POST,
        "/v1/events",
        json!([{"id": "signup-1", "type": "signup", "ts": now, "attrs": {"who": "kim"}}]),
    )
    .await;
    assert!(
        wait_for(
            &c,
            "document.querySelectorAll('#notifications tr.notification').length === 1",
            20
        )
        .await,
        "the notification arrived"
    );
    assert_eq!(
        c.execute("return window.stillHere === true;", vec![])
            .await
            .unwrap(),
        json!(true),
        "without a reload"
    );
    screenshot(&c, "05-live-notification").await;

    // A phone's width: nothing wider than the screen but the tables' own scrolling.
    c.set_window_size(390, 844).await.unwrap();
    for path in ["/", "/alerts", url.path(), "/notifications"] {
        c.goto(&format!("{}{path}", shop.base)).await.unwrap();
        let overflow = c
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            overflow.as_i64().unwrap() <= 0,
            "{path} overflows by {overflow}"
        );
    }
    screenshot(&c, "06-phone").await;
    // Every input of the forms has a label.
    c.goto(&format!("{}/alerts/new", shop.base)).await.unwrap();
    let unlabeled = c
        .execute(
            "return Array.from(document.querySelectorAll('main input:not([type=hidden]), main select, main textarea'))
                .filter(i => !(i.labels && i.labels.length)).map(i => i.name);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(unlabeled, json!([]));
    c.close().await.unwrap();
}
