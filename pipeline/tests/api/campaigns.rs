//! CRM campaigns end to end with a real SMTP server: a contact entering an audience gets the
//! campaign's email once (HTML escaped, a one-click unsubscribe link that works), contacts
//! without consent get nothing, an announcement respects a frequency cap across campaigns and an
//! unsubscribe, a SIGKILL sends nothing twice, and bad definitions are 400s naming the field.

use std::time::Duration;

use axum::http::StatusCode;
use mailparse::MailHeaderMap;
use serde_json::{Value, json};

use crate::harness::*;
use crate::smtp::SmtpServer;

async fn contact(server: &Tidemark, id: &str, consent: bool, name: &str) {
    let (status, body) = server
        .put(
            KEY_A,
            &format!("/v1/contacts/{id}"),
            json!({"email": format!("{id}@shop.example"), "time_zone": "Asia/Seoul",
                   "consent": {"email": consent}, "attributes": {"first_name": name}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

fn order(id: &str, customer: &str) -> Value {
    event(id, "order", json!({"customer_id": customer, "amount": 10}))
}

/// Waits until the SMTP server holds `n` messages; returns them as (recipient, raw).
async fn mails(smtp: &SmtpServer, n: usize) -> Vec<(String, Vec<u8>)> {
    eventually(&format!("{n} messages"), async || {
        let received = smtp.received();
        (received.len() >= n).then(|| {
            received
                .into_iter()
                .map(|(to, raw)| (to.join(","), raw))
                .collect()
        })
    })
    .await
}

async fn counts(server: &Tidemark, id: &str) -> Value {
    let (status, body) = server.get(KEY_A, &format!("/v1/campaigns/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["counts"].clone()
}

async fn setup(smtp: &SmtpServer) -> Tidemark {
    let server = Tidemark::start().await;
    let (status, body) = server
        .post(
            KEY_A,
            "/v1/destinations",
            json!({"id": "mail", "kind": "email", "config": {
                "host": "127.0.0.1", "port": smtp.port, "tls": "none",
                "from": "Shop <news@shop.example>", "to": ["ops@shop.example"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    server.send_events(KEY_A, &[order("seed", "nobody")]).await;
    eventually("order known", async || {
        let (status, _) = server
            .post(
                KEY_A,
                "/v1/audiences",
                json!({"id": "buyers", "where":
                    {"event": "order", "in_last_days": 30, "op": ">=", "value": 1}}),
            )
            .await;
        (status == StatusCode::CREATED).then_some(())
    })
    .await;
    server
}

#[tokio::test]
async fn entering_contacts_get_one_email_each_and_unsubscribe_in_one_click() {
    let smtp = SmtpServer::start(&[]);
    let mut server = setup(&smtp).await;
    contact(&server, "c1", true, "<b>Kim</b>").await;
    contact(&server, "c2", false, "Lee").await;
    contact(&server, "c3", true, "Park").await;
    let (status, body) = server
        .post(
            KEY_A,
            "/v1/campaigns",
            json!({"id": "welcome", "trigger": {"type": "enter", "audience": "buyers"},
                   "channel": "email", "destination": "mail",
                   "content": {"subject": "Thanks, {{ contact.first_name }}",
                               "html": "<p>Hello {{ contact.first_name }}</p>",
                               "text": "Hello {{ contact.first_name }}"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    server
        .send_events(
            KEY_A,
            &[order("o1", "c1"), order("o2", "c2"), order("o3", "c3")],
        )
        .await;
    let received = mails(&smtp, 2).await;
    eventually("c2 refused for consent", async || {
        (counts(&server, "welcome").await["unsubscribed"] == 1).then_some(())
    })
    .await;
    let mut recipients: Vec<&str> = received.iter().map(|(to, _)| to.as_str()).collect();
    recipients.sort();
    assert_eq!(recipients, ["c1@shop.example", "c3@shop.example"]);
    let (_, raw) = received
        .iter()
        .find(|(to, _)| to == "c1@shop.example")
        .expect("c1's message");
    let mail = mailparse::parse_mail(raw).expect("MIME");
    let unsubscribe = mail
        .headers
        .get_first_value("List-Unsubscribe")
        .expect("List-Unsubscribe");
    assert_eq!(
        mail.headers
            .get_first_value("List-Unsubscribe-Post")
            .as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    let html = mail
        .subparts
        .iter()
        .flat_map(|p| std::iter::once(p).chain(p.subparts.iter()))
        .find(|p| p.ctype.mimetype == "text/html")
        .expect("an HTML part")
        .get_body()
        .expect("body");
    assert!(
        html.contains("&lt;b&gt;Kim") && !html.contains("<b>"),
        "escaped: {html}"
    );
    assert_eq!(counts(&server, "welcome").await["sent"], 2);

    // One click: the URL in the header, POSTed as RFC 8058 says, without a key.
    let url = unsubscribe.trim_start_matches('<').trim_end_matches('>');
    let response = server.http.get(url).send().await.expect("unsubscribe page");
    assert_eq!(response.status(), StatusCode::OK);
    let (_, c1) = server.get(KEY_A, "/v1/contacts/c1").await;
    assert_eq!(c1["consent"]["email"], true, "a GET changes nothing");
    let response = server
        .http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .expect("one-click");
    assert_eq!(response.status(), StatusCode::OK);
    let (_, c1) = server.get(KEY_A, "/v1/contacts/c1").await;
    assert_eq!(c1["consent"]["email"], false, "{c1}");
    let forged = format!("{}x", url.trim_end_matches('/'));
    let response = server.http.post(&forged).send().await.expect("forged");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // An announcement to every consenting contact, capped at one campaign message a day:
    // c1 unsubscribed, c3 had one today, c4 (new, never ordered) gets it.
    contact(&server, "c4", true, "Choi").await;
    let (status, body) = server
        .post(
            KEY_A,
            "/v1/campaigns",
            json!({"id": "news", "trigger": {"type": "announcement"},
                   "channel": "email", "destination": "mail",
                   "frequency_cap": {"max": 1, "per_days": 1},
                   "content": {"subject": "News", "text": "News for {{ contact.first_name }}"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let received = mails(&smtp, 3).await;
    eventually("c3 capped", async || {
        (counts(&server, "news").await["capped"] == 1).then_some(())
    })
    .await;
    let news = counts(&server, "news").await;
    assert_eq!(news["sent"], 1, "{news}");
    assert_eq!(news["unsubscribed"], 0, "c1 is not listed at all: {news}");
    assert_eq!(received[2].0, "c4@shop.example");
    let (_, messages) = server.get(KEY_A, "/v1/contacts/c3/messages").await;
    let statuses: Vec<&str> = messages["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["status"].as_str().expect("status"))
        .collect();
    assert!(
        statuses.contains(&"capped") && statuses.contains(&"sent"),
        "{messages}"
    );

    // A SIGKILL: nothing is sent again.
    server.restart(|_| {}).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(smtp.received().len(), 3, "no message twice after a restart");
    assert_eq!(counts(&server, "welcome").await["sent"], 2);
}

#[tokio::test]
async fn an_edited_campaign_sends_its_new_version_and_a_listed_announcement_stays_as_sent() {
    let smtp = SmtpServer::start(&[]);
    let server = setup(&smtp).await;
    contact(&server, "c1", true, "Kim").await;
    let welcome = |subject: &str, channel: &str| {
        json!({"trigger": {"type": "enter", "audience": "buyers"},
               "channel": channel, "destination": "mail",
               "content": {"subject": subject, "text": "Hello {{ contact.first_name }}"}})
    };
    let mut first = welcome("Old subject", "email");
    first["id"] = json!("welcome");
    let (status, body) = server.post(KEY_A, "/v1/campaigns", first).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = server
        .put(
            KEY_A,
            "/v1/campaigns/welcome",
            welcome("Welcome, {{ contact.first_name }}", "email"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 2, "{body}");
    assert_eq!(
        body["content"]["subject"],
        "Welcome, {{ contact.first_name }}"
    );
    // A contact entering after the edit gets the new version.
    server.send_events(KEY_A, &[order("o1", "c1")]).await;
    let received = mails(&smtp, 1).await;
    let mail = mailparse::parse_mail(&received[0].1).expect("MIME");
    assert_eq!(
        mail.headers.get_first_value("Subject").as_deref(),
        Some("Welcome, Kim")
    );

    // Checked as a new campaign is, and the channel stays.
    let (status, body) = server
        .put(
            KEY_A,
            "/v1/campaigns/welcome",
            welcome("{{ broken", "email"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = server
        .put(KEY_A, "/v1/campaigns/welcome", welcome("Hi", "webhook"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "channel", "{body}");
    let (status, _) = server
        .put(KEY_A, "/v1/campaigns/nothing", welcome("Hi", "email"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, body) = server.get(KEY_A, "/v1/campaigns/welcome").await;
    assert_eq!(body["version"], 2, "refused edits change nothing: {body}");

    // An announcement, once listed, cannot change: its recipients got what they got.
    let (status, body) = server
        .post(
            KEY_A,
            "/v1/campaigns",
            json!({"id": "news", "trigger": {"type": "announcement"},
                   "channel": "email", "destination": "mail",
                   "content": {"subject": "News", "text": "News"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    mails(&smtp, 2).await;
    let (status, body) = server
        .put(
            KEY_A,
            "/v1/campaigns/news",
            json!({"trigger": {"type": "announcement"}, "channel": "email",
                   "destination": "mail", "content": {"subject": "News again", "text": "x"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "already_sent", "{body}");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(smtp.received().len(), 2, "nothing sent again");
}

#[tokio::test]
async fn bad_campaigns_are_refused_naming_the_field() {
    let smtp = SmtpServer::start(&[]);
    let server = setup(&smtp).await;
    let (status, body) = server
        .post(
            KEY_A,
            "/v1/destinations",
            json!({"id": "hook", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/sms"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let good = json!({"trigger": {"type": "enter", "audience": "buyers"},
        "channel": "email", "destination": "mail",
        "content": {"subject": "Hi", "text": "Hi {{ contact.first_name }}"}});
    let with = |path: &[&str], value: Value| {
        let mut spec = good.clone();
        let mut at = &mut spec;
        for key in &path[..path.len() - 1] {
            at = &mut at[*key];
        }
        at[path[path.len() - 1]] = value;
        spec
    };
    for (spec, field) in [
        (
            with(&["content", "html"], json!("<p>{{ contact.first_name </p>")),
            "content.html",
        ),
        (
            with(&["trigger", "audience"], json!("nobody-here")),
            "trigger.audience",
        ),
        (with(&["destination"], json!("hook")), "destination"),
        (with(&["destination"], json!("missing")), "destination"),
        (with(&["channel"], json!("webhook")), "consent"),
        (with(&["trigger", "delay"], json!("soon")), "trigger.delay"),
        (
            with(&["quiet_hours"], json!({"from": "25:00", "to": "08:00"})),
            "quiet_hours.from",
        ),
        (
            with(&["frequency_cap"], json!({"max": 0})),
            "frequency_cap.max",
        ),
    ] {
        let (status, body) = server.post(KEY_A, "/v1/campaigns", spec.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{spec}: {body}");
        assert_eq!(error_field(&body), field, "{spec}: {body}");
    }
    let (status, body) = server.post(KEY_A, "/v1/campaigns", good.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, list) = server.get(KEY_A, "/v1/campaigns").await;
    assert_eq!(list["campaigns"].as_array().map(Vec::len), Some(1));
    let (_, other) = server.get(KEY_B, "/v1/campaigns").await;
    assert_eq!(other["campaigns"].as_array().map(Vec::len), Some(0));
}

/// Waits up to `limit` for `check`.
async fn within<T>(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_sigkill_during_a_10000_recipient_announcement_reaches_each_consenting_contact_once() {
    let smtp = SmtpServer::start(&[]);
    let mut server = setup(&smtp).await;
    // 10,000 contacts; every tenth has not consented to email.
    let lines: String = (0..10_000)
        .map(|i| {
            format!(
                "{}\n",
                json!({"id": format!("p{i:05}"), "email": format!("p{i:05}@shop.example"),
                       "consent": {"email": i % 10 != 0}})
            )
        })
        .collect();
    let (status, body) = server.post_text(KEY_A, "/v1/contacts/bulk", &lines).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["upserted"], 10_000, "{body}");
    let (status, body) = server
        .post(
            KEY_A,
            "/v1/campaigns",
            json!({"id": "launch", "trigger": {"type": "announcement"},
                   "channel": "email", "destination": "mail",
                   "content": {"subject": "We launched", "text": "Hello {{ contact.id }}"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Killed once some of the messages are out, the rest still being decided and delivered.
    within(
        Duration::from_secs(120),
        "the first 500 messages",
        async || (smtp.received().len() >= 500).then_some(()),
    )
    .await;
    server.restart(|_| {}).await;
    within(
        Duration::from_secs(300),
        "9,000 messages sent",
        async || {
            let counts = counts(&server, "launch").await;
            (counts["sent"] == 9_000 && counts["pending"] == 0).then_some(())
        },
    )
    .await;
    let (_, stats) = server.get(KEY_A, "/v1/stats").await;
    within(
        Duration::from_secs(300),
        "every message delivered",
        async || {
            let (_, notifications) = server
                .get(KEY_A, "/v1/notifications?status=pending&limit=1")
                .await;
            (notifications["notifications"]
                .as_array()
                .is_some_and(Vec::is_empty)
                && smtp.received().len() >= 9_000)
                .then_some(())
        },
    )
    .await;

    let mut by_recipient: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (to, raw) in smtp.received() {
        let mail = mailparse::parse_mail(&raw).expect("MIME");
        let id = mail
            .headers
            .get_first_value("Message-ID")
            .expect("Message-ID");
        by_recipient.entry(to.join(",")).or_default().push(id);
    }
    assert_eq!(
        by_recipient.len(),
        9_000,
        "every consenting contact, no other: {stats}"
    );
    assert!(
        by_recipient.keys().all(|to| {
            let n: usize = to[1..6].parse().expect("number");
            !n.is_multiple_of(10)
        }),
        "no message to a contact without consent"
    );
    // A message whose SMTP transaction was in flight when the server died may be sent again
    // with the same Message-ID (the send's notification id): the relay accepted it but the
    // server never recorded it. Never a second message of another id, never more than the
    // sender had in flight.
    let repeated: Vec<_> = by_recipient
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .collect();
    for (to, ids) in &repeated {
        assert!(ids.iter().all(|id| id == &ids[0]), "{to}: {ids:?}");
    }
    assert!(
        repeated.len() <= 8,
        "{} repeated: more than the sender has in flight to one destination (8)",
        repeated.len()
    );
}

#[tokio::test]
async fn an_internal_announcement_is_one_slack_message() {
    use standins::slack::{CHANNEL, SlackStandIn, TOKEN};
    let slack = SlackStandIn::start().await;
    let smtp = SmtpServer::start(&[]);
    let server = setup(&smtp).await;
    contact(&server, "c1", true, "Kim").await;
    let (status, body) = server
        .post(
            KEY_A,
            "/v1/destinations",
            json!({"id": "team", "kind": "slack", "config": {
                "token": TOKEN, "channel": CHANNEL, "api_base": slack.api_base}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = server
        .post(
            KEY_A,
            "/v1/campaigns",
            json!({"id": "launch-day", "channel": "slack", "destination": "team",
                   "trigger": {"type": "announcement", "audience": "buyers"},
                   "content": {"text": "Launch"}}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "to the team, not an audience: {body}"
    );
    assert_eq!(error_field(&body), "trigger");
    let (status, body) = server
        .post(
            KEY_A,
            "/v1/campaigns",
            json!({"id": "launch-day", "channel": "slack", "destination": "team",
                   "trigger": {"type": "announcement"},
                   "content": {"subject": "Launch", "text": "{{ campaign.id }}: we launch today"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let posted = eventually("the Slack message", async || {
        let calls = slack.calls();
        let posts: Vec<_> = calls
            .into_iter()
            .filter(|c| c.method == "chat.postMessage")
            .collect();
        (!posts.is_empty()).then_some(posts)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        slack
            .calls()
            .iter()
            .filter(|c| c.method == "chat.postMessage")
            .count(),
        1,
        "one message, not one per contact"
    );
    assert!(
        posted[0]
            .arguments
            .to_string()
            .contains("launch-day: we launch today"),
        "{:?}",
        posted[0].arguments
    );
    assert_eq!(slack.violations(), Vec::<String>::new());
    assert_eq!(counts(&server, "launch-day").await["sent"], 1);
    assert!(smtp.received().is_empty(), "no email to contacts");
}
