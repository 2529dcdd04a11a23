//! Scheduled reports end to end against the real `tidemark serve` over a generated warehouse:
//! a report defined through the API, run by hand and by its schedule, generated with its charts
//! and CSV answers, delivered to a file destination and by email to a real SMTP server (one
//! message per recipient, a failing recipient retried alone), its runs and deliveries visible;
//! bad definitions refused at creation naming the field.

#[path = "../../connectors/tests/support/smtp.rs"]
mod smtp;
#[path = "support/shop.rs"]
mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use mailparse::{MailHeaderMap, ParsedMail};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{KEY_A, KEY_B, Shop, close};

async fn call(
    shop: &Shop,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let client = connectors::http::client();
    let url = format!("{}{path}", shop.base);
    let request = match method {
        "GET" => client.get(url),
        "POST" => client.post(url),
        "PUT" => client.put(url),
        "DELETE" => client.delete(url),
        other => panic!("method {other}"),
    }
    .bearer_auth(key);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    let response = request.send().await.expect("request reaches tidemark");
    let status = response.status();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Polls the report's runs until `done` holds for the newest one, for at most `patience`.
async fn wait_for_run(
    shop: &Shop,
    report: &str,
    patience: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + patience;
    loop {
        let (status, body) = call(
            shop,
            "GET",
            &format!("/v1/reports/{report}/runs"),
            KEY_A,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if let Some(run) = body["runs"].as_array().and_then(|r| r.first())
            && done(run)
        {
            return run.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no run reached the state in time: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn archive(shop: &Shop) {
    let (status, body) = call(
        shop,
        "POST",
        "/v1/destinations",
        KEY_A,
        Some(json!({"id": "archive", "kind": "file", "config": {"path": "reports.jsonl"}})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

fn weekly_report() -> Value {
    json!({
        "id": "weekly",
        "name": "Weekly revenue",
        "schedule": {"cron": "0 9 * * MON"},
        "title": "Revenue {{ blocks.revenue.total }}",
        "intro": "{{ blocks.revenue.row_count }} channels; {{ blocks.orders.total }} orders.",
        "blocks": [
            {"name": "revenue", "title": "Revenue by channel",
             "query": {"measures": ["orders.revenue"], "dimensions": ["orders.channel"],
                       "order": [{"member": "orders.channel", "direction": "asc"}]}},
            {"name": "trend", "title": "Revenue by month",
             "query": {"measures": ["orders.revenue"],
                       "time": {"dimension": "orders.date", "grain": "month",
                                "range": ["2025-01-01", "2025-12-31"]}}},
            {"name": "products", "title": "ABC classes of products",
             "query": {"measures": ["order_items.revenue"], "dimensions": ["order_items.product"],
                       "analysis": {"type": "abc", "measure": "order_items.revenue"},
                       "order": [{"member": "order_items.revenue", "direction": "desc"}],
                       "limit": 30}},
            {"name": "orders", "chart": "none",
             "sql": "SELECT channel, count(*) AS orders FROM orders GROUP BY channel ORDER BY channel"},
            {"name": "broken", "sql": "SELECT 1 / (count(*) - count(*)) AS ratio FROM orders"}
        ],
        "destinations": ["archive"]
    })
}

#[tokio::test]
async fn a_report_run_by_hand_arrives_with_charts_csv_and_a_placeholder_for_a_failed_block() {
    let shop = Shop::start().await;
    archive(&shop).await;
    let (status, body) = call(&shop, "POST", "/v1/reports", KEY_A, Some(weekly_report())).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Mondays at 09:00 in the tenant's zone (Asia/Seoul), the next three.
    let next = body["next_runs"].as_array().expect("next runs");
    assert_eq!(next.len(), 3, "{body}");
    for at in next {
        let at = chrono::DateTime::parse_from_rfc3339(at.as_str().unwrap()).unwrap();
        let local = at.with_timezone(&chrono_tz::Asia::Seoul);
        assert_eq!(local.format("%a %H:%M").to_string(), "Mon 09:00", "{at}");
    }

    let (status, body) = call(&shop, "POST", "/v1/reports/weekly/run", KEY_A, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let run_id = body["run_id"].as_str().unwrap().to_string();
    let run = wait_for_run(&shop, "weekly", Duration::from_secs(60), |run| {
        run["status"] != "due"
            && run["deliveries"]
                .as_array()
                .is_some_and(|d| !d.is_empty() && d.iter().all(|d| d["status"] == "delivered"))
    })
    .await;
    assert_eq!(run["run_id"], run_id.as_str());
    assert_eq!(run["trigger"], "manual");
    // The failing block makes the run partial, saying which block and why; the rest is there.
    assert_eq!(run["status"], "partial", "{run}");
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("block broken"), "{error}");
    let deliveries = run["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{run}");
    assert_eq!(deliveries[0]["destination_id"], "archive");

    let notification = deliveries[0]["notification_id"].as_str().unwrap();
    let (status, body) = call(
        &shop,
        "GET",
        &format!("/v1/notifications/{notification}"),
        KEY_A,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let payload = &body["payload"];
    assert_eq!(payload["kind"], "report");
    assert_eq!(payload["run"]["id"], run_id.as_str());

    // The title's total is the paid revenue over every channel, from the files themselves.
    let paid = shop.paid_by_channel("shop-a");
    let total: f64 = paid.values().map(|(revenue, _)| revenue).sum();
    // "[partial] Revenue 1785719400 — 2026-12-03T09:00:00+09:00": the rendered title, marked.
    let subject = payload["subject"].as_str().unwrap();
    assert!(subject.starts_with("[partial] Revenue "), "{subject}");
    let shown: f64 = subject
        .trim_start_matches("[partial] Revenue ")
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .parse()
        .unwrap_or_else(|e| panic!("subject {subject:?}: {e}"));
    assert!((shown - total).abs() < 0.01, "{subject} vs {total}");

    // Each chart is an inline PNG the HTML refers to by Content-ID; each answer a CSV.
    let attachments = payload["attachments"].as_array().unwrap();
    let named = |name: &str| {
        attachments
            .iter()
            .find(|a| a["filename"] == name)
            .unwrap_or_else(|| panic!("no attachment {name}: {attachments:?}"))
    };
    let html = payload["html"].as_str().unwrap();
    for chart in ["01-revenue.png", "02-trend.png", "03-products.png"] {
        let attachment = named(chart);
        let cid = attachment["content_id"].as_str().expect("inline image");
        assert!(html.contains(&format!("cid:{cid}")), "{chart} not shown");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(attachment["data_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{chart}");
    }
    assert!(
        attachments.iter().all(|a| a["filename"] != "04-orders.png"),
        "a block with chart none has no chart"
    );
    let csv = base64::engine::general_purpose::STANDARD
        .decode(named("01-revenue.csv")["data_base64"].as_str().unwrap())
        .unwrap();
    let csv = String::from_utf8(csv).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("orders.channel,orders.revenue"));
    let mut rows = 0;
    for line in lines {
        let (channel, revenue) = line.split_once(',').unwrap();
        let expected = paid[channel].0;
        assert!(
            close(revenue.parse().unwrap(), expected),
            "{channel}: {revenue} vs {expected}"
        );
        rows += 1;
    }
    assert_eq!(rows, paid.len());
    // The failed block is shown as a placeholder naming the failure, in both parts.
    assert!(html.contains("broken"), "{html}");
    let text = payload["message"].as_str().unwrap();
    assert!(text.contains("broken"), "{text}");
    // Cell text is escaped in the HTML.
    assert!(!html.contains("<script"), "{html}");

    // The preview is the same report as a page with its charts inline.
    let preview = connectors::http::client()
        .get(format!("{}/v1/reports/weekly/preview", shop.base))
        .bearer_auth(KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(preview.status(), StatusCode::OK);
    let page = preview.text().await.unwrap();
    assert!(
        page.contains("data:image/png;base64,"),
        "preview without inline charts"
    );
    assert!(
        !page.contains("cid:"),
        "preview still refers to attachments"
    );

    // Another tenant sees none of it.
    let (status, _) = call(&shop, "GET", "/v1/reports/weekly/runs", KEY_B, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_definitions_are_refused_at_creation_naming_the_field() {
    let shop = Shop::start().await;
    archive(&shop).await;
    let base = weekly_report();
    type Change = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Change)> = vec![
        (
            "schedule.cron",
            Box::new(|r| r["schedule"]["cron"] = json!("61 9 * * MON")),
        ),
        (
            "schedule.cron",
            Box::new(|r| r["schedule"]["cron"] = json!("@fortnightly")),
        ),
        (
            "schedule.timezone",
            Box::new(|r| r["schedule"]["timezone"] = json!("Mars/Olympus")),
        ),
        (
            "blocks[0].query.measures[0]",
            Box::new(|r| r["blocks"][0]["query"]["measures"] = json!(["orders.nope"])),
        ),
        (
            "blocks[3].sql",
            Box::new(|r| r["blocks"][3]["sql"] = json!("SELECT * FROM no_such_table")),
        ),
        (
            "blocks[1].name",
            Box::new(|r| r["blocks"][1]["name"] = json!("revenue")),
        ),
        ("title", Box::new(|r| r["title"] = json!("{% for x in %}"))),
        (
            "intro",
            Box::new(|r| r["intro"] = json!("{{ blocks.revnue.total }}")),
        ),
        (
            "destinations[0]",
            Box::new(|r| r["destinations"] = json!(["nowhere"])),
        ),
    ];
    for (field, change) in cases {
        let mut report = base.clone();
        change(&mut report);
        let (status, body) = call(&shop, "POST", "/v1/reports", KEY_A, Some(report)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {body}");
        assert_eq!(body["error"]["field"], field, "{body}");
    }
    // Nothing of them was stored.
    let (_, body) = call(&shop, "GET", "/v1/reports", KEY_A, None).await;
    assert_eq!(body["reports"], json!([]), "{body}");
}

#[tokio::test]
async fn a_schedule_runs_without_a_restart_and_a_deleted_report_stops() {
    let shop = Shop::start().await;
    archive(&shop).await;
    let mut report = weekly_report();
    report["id"] = json!("minutely");
    report["schedule"] = json!({"cron": "* * * * *", "timezone": "Europe/Berlin"});
    report["blocks"] = json!([report["blocks"][0].clone()]);
    report["intro"] = Value::Null;
    let (status, body) = call(&shop, "POST", "/v1/reports", KEY_A, Some(report)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let run = wait_for_run(&shop, "minutely", Duration::from_secs(90), |run| {
        run["status"] == "complete"
    })
    .await;
    assert_eq!(run["trigger"], "schedule");
    // Scheduled on a whole minute.
    assert_eq!(run["scheduled_ms"].as_i64().unwrap() % 60_000, 0, "{run}");

    let (status, _) = call(&shop, "DELETE", "/v1/reports/minutely", KEY_A, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&shop, "GET", "/v1/reports/minutely/runs", KEY_A, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Every part of a message, depth first.
fn parts<'a>(mail: &'a ParsedMail<'a>, out: &mut Vec<&'a ParsedMail<'a>>) {
    out.push(mail);
    for part in &mail.subparts {
        parts(part, out);
    }
}

#[tokio::test]
async fn a_report_by_email_reaches_each_recipient_once_and_a_failing_one_is_retried_alone() {
    let server = smtp::SmtpServer::start(&[]);
    // The SMTP server listens on loopback: the operator's allow-list says so.
    let shop = Shop::start_with(|_| {
        (
            String::new(),
            "[outbound]\nallow_private_networks = [\"127.0.0.1/32\"]\n".to_string(),
        )
    })
    .await;
    let (status, body) = call(
        &shop,
        "POST",
        "/v1/destinations",
        KEY_A,
        Some(json!({"id": "mail", "kind": "email", "config": {
            "host": "127.0.0.1", "port": server.port, "tls": "none",
            "from": "Reports <reports@shop.example>", "to": ["ops@shop.example"],
            "list_id": "reports.shop.example"}})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut report = weekly_report();
    report["blocks"] = json!([report["blocks"][0].clone()]);
    report["intro"] = Value::Null;
    report["destinations"] = json!([{"destination": "mail",
        "to": ["ceo@shop.example", "tempfail@shop.example", "cfo@shop.example"]}]);
    let (status, body) = call(&shop, "POST", "/v1/reports", KEY_A, Some(report)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = call(&shop, "POST", "/v1/reports/weekly/run", KEY_A, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // Two recipients get it; the one the server answers 451 stays pending, retried on its own.
    let run = wait_for_run(&shop, "weekly", Duration::from_secs(60), |run| {
        let deliveries = run["deliveries"].as_array().cloned().unwrap_or_default();
        deliveries.len() == 3
            && deliveries
                .iter()
                .filter(|d| d["status"] == "delivered")
                .count()
                == 2
            && deliveries.iter().any(|d| {
                d["recipient"] == "tempfail@shop.example"
                    && d["attempts"].as_u64().unwrap_or(0) >= 2
            })
    })
    .await;
    assert_eq!(run["status"], "complete", "{run}");
    let failing = run["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["recipient"] == "tempfail@shop.example")
        .unwrap();
    assert_eq!(failing["status"], "pending", "{failing}");
    assert!(
        failing["last_error"].as_str().unwrap_or("").contains("451"),
        "{failing}"
    );

    // Meanwhile the others were sent once each, whatever the retries of the failing one.
    let received = server.received();
    let mut recipients: Vec<String> = received.iter().flat_map(|(to, _)| to.clone()).collect();
    recipients.sort();
    assert_eq!(
        recipients,
        ["ceo@shop.example", "cfo@shop.example"],
        "one message each"
    );
    let paid = shop.paid_by_channel("shop-a");
    for (to, raw) in &received {
        assert_eq!(to.len(), 1, "one envelope per recipient");
        let mail = mailparse::parse_mail(raw).expect("MIME");
        let headers = &mail.headers;
        assert_eq!(
            headers.get_first_value("To").as_deref(),
            Some(to[0].as_str())
        );
        let notification = run["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["recipient"] == to[0].as_str())
            .unwrap()["notification_id"]
            .as_str()
            .unwrap()
            .to_string();
        let message_id = headers.get_first_value("Message-ID").unwrap_or_default();
        assert!(
            message_id.contains(&notification),
            "{message_id} vs {notification}"
        );
        assert!(
            headers
                .get_first_value("List-Id")
                .unwrap_or_default()
                .contains("reports.shop.example")
        );
        let mut all = Vec::new();
        parts(&mail, &mut all);
        let of_type = |t: &str| -> Vec<&&ParsedMail> {
            all.iter().filter(|p| p.ctype.mimetype == t).collect()
        };
        assert_eq!(of_type("multipart/alternative").len(), 1);
        let html = of_type("text/html")[0].get_body().unwrap();
        assert!(!of_type("text/plain").is_empty());
        // The chart is an inline image the HTML refers to by its Content-ID.
        let images = of_type("image/png");
        assert_eq!(images.len(), 1, "one chart");
        let cid = images[0]
            .headers
            .get_first_value("Content-ID")
            .unwrap()
            .trim_matches(|c| c == '<' || c == '>')
            .to_string();
        assert!(
            html.contains(&format!("cid:{cid}")),
            "{cid} not in the HTML"
        );
        assert_eq!(&images[0].get_body_raw().unwrap()[..4], b"\x89PNG");
        // The CSV attachment is the block's answer: paid revenue per channel, from the files.
        let csv = String::from_utf8(of_type("text/csv")[0].get_body_raw().unwrap()).unwrap();
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some("orders.channel,orders.revenue"));
        let mut seen = 0;
        for line in lines {
            let (channel, revenue) = line.split_once(',').unwrap();
            assert!(close(revenue.parse().unwrap(), paid[channel].0), "{line}");
            seen += 1;
        }
        assert_eq!(seen, paid.len());
    }
}
