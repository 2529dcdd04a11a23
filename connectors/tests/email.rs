//! The email sink against a real SMTP server (aiosmtpd, `tests/support/smtp_server.py`, one per
//! test): the MIME structure and headers that arrive, one message per recipient, how the
//! server's replies are classified, AUTH with a password from the secrets store, STARTTLS with a
//! certificate the sink is told to trust, and the outbound guard.

#[path = "support/smtp.rs"]
mod smtp;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use connectors::outbound::{OutboundGuard, OutboundPolicy};
use connectors::secrets::{KekSource, LocalKeyFile, Secrets, SecretsOptions};
use connectors::sinks::email::SmtpTls;
use connectors::sinks::{
    DeliveryOutcome, Destination, EmailConfig, EmailSink, OutgoingNotification, Sink, SinkConfig,
    SinkSettings, Sinks,
};
use connectors::store::SqliteStore;
use mailparse::{MailHeaderMap, ParsedMail};
use smtp::SmtpServer;

/// The server listens on loopback: the allow-list has to say so, as an operator's would.
fn loopback() -> SinkSettings {
    let policy = OutboundPolicy::allowing(&["127.0.0.1/32".to_owned()]).expect("allow-list");
    SinkSettings {
        outbound: OutboundGuard::new(policy),
        ..SinkSettings::default()
    }
}

fn config(server: &SmtpServer, to: &[&str]) -> EmailConfig {
    let mut config = EmailConfig::new("127.0.0.1", "Shop alerts <alerts@shop.example>", to);
    config.port = Some(server.port);
    config.tls = SmtpTls::None;
    config.timeout_ms = 5_000;
    config
}

fn notification<'a>(id: &'a str, payload: &'a str) -> OutgoingNotification<'a> {
    OutgoingNotification {
        tenant: "shop-a",
        id,
        payload,
    }
}

const PNG_1: &[u8] = b"\x89PNG\r\n\x1a\nchart one";
const PNG_2: &[u8] = b"\x89PNG\r\n\x1a\nchart two";
const CSV: &[u8] = b"channel,revenue\nOrganic Search,1200000\nEmail,350000\n";

fn report_payload(recipient: Option<&str>) -> String {
    let mut payload = serde_json::json!({
        "subject": "Weekly revenue by channel",
        "message": "Revenue by channel, last week.\nOrganic Search leads.",
        "html": "<h1>Weekly revenue</h1><img src=\"cid:chart-1\"><p>and</p><img src=\"cid:chart-2\">",
        "attachments": [
            {"filename": "revenue.png", "content_type": "image/png", "content_id": "chart-1",
             "data_base64": BASE64.encode(PNG_1)},
            {"filename": "channels.png", "content_type": "image/png", "content_id": "chart-2",
             "data_base64": BASE64.encode(PNG_2)},
            {"filename": "revenue.csv", "content_type": "text/csv",
             "data_base64": BASE64.encode(CSV)},
        ],
    });
    if let Some(recipient) = recipient {
        payload["recipient"] = recipient.into();
    }
    payload.to_string()
}

fn header(mail: &ParsedMail<'_>, name: &str) -> Option<String> {
    mail.headers.get_first_value(name)
}

/// Every `cid:` reference in `html`.
fn cid_references(html: &str) -> Vec<String> {
    html.split("cid:")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn a_report_arrives_as_related_html_with_inline_charts_and_the_csv_attached() {
    let server = SmtpServer::start(&[]);
    let mut config = config(
        &server,
        &["owner@shop.example", "Analyst <analyst@shop.example>"],
    );
    config.list_id = Some("Tidemark reports <reports.shop.example>".to_owned());
    config.reply_to = Some("support@shop.example".to_owned());
    let sink = EmailSink::new(&loopback()).expect("sink");
    let result = sink
        .deliver(
            &notification("rpt_weekly_2026-01-12", &report_payload(None)),
            &config,
        )
        .await;
    assert_eq!(result.outcome, DeliveryOutcome::Delivered, "{result:?}");
    assert_eq!(result.status_code, Some(250));

    let received = server.received();
    assert_eq!(received.len(), 2, "one message per recipient");
    let expected_to = ["owner@shop.example", "analyst@shop.example"];
    for ((rcpts, raw), to) in received.iter().zip(expected_to) {
        assert_eq!(rcpts, &vec![to.to_owned()], "one recipient per transaction");
        let mail = mailparse::parse_mail(raw).expect("MIME");
        assert_eq!(
            header(&mail, "Message-ID").as_deref(),
            Some("<rpt_weekly_2026-01-12@shop.example>")
        );
        assert_eq!(
            header(&mail, "From").as_deref(),
            Some("\"Shop alerts\" <alerts@shop.example>")
        );
        let to_header = header(&mail, "To").expect("To");
        assert!(to_header.contains(to), "{to_header}");
        assert!(!to_header.contains(expected_to.iter().find(|t| **t != to).expect("other")));
        assert_eq!(
            header(&mail, "List-Id").as_deref(),
            Some("Tidemark reports <reports.shop.example>")
        );
        assert_eq!(
            header(&mail, "Reply-To").as_deref(),
            Some("support@shop.example")
        );
        assert_eq!(
            header(&mail, "Subject").as_deref(),
            Some("Weekly revenue by channel")
        );
        assert!(header(&mail, "Date").is_some());

        // mixed[ related[ alternative[plain, html], png, png ], csv ]
        assert_eq!(mail.ctype.mimetype, "multipart/mixed");
        assert_eq!(mail.subparts.len(), 2);
        let related = &mail.subparts[0];
        assert_eq!(related.ctype.mimetype, "multipart/related");
        let alternative = &related.subparts[0];
        assert_eq!(alternative.ctype.mimetype, "multipart/alternative");
        let kinds: Vec<&str> = alternative
            .subparts
            .iter()
            .map(|p| p.ctype.mimetype.as_str())
            .collect();
        assert_eq!(kinds, ["text/plain", "text/html"]);
        assert_eq!(
            alternative.subparts[0]
                .get_body()
                .expect("text")
                .replace("\r\n", "\n")
                .trim_end(),
            "Revenue by channel, last week.\nOrganic Search leads."
        );
        let html = alternative.subparts[1].get_body().expect("html");
        let references = cid_references(&html);
        assert_eq!(references, ["chart-1", "chart-2"]);
        for (cid, bytes) in references.iter().zip([PNG_1, PNG_2]) {
            let image = related.subparts[1..]
                .iter()
                .find(|p| header(p, "Content-ID").as_deref() == Some(&format!("<{cid}>")))
                .unwrap_or_else(|| panic!("no inline part for cid:{cid}"));
            assert_eq!(image.ctype.mimetype, "image/png");
            assert_eq!(image.get_body_raw().expect("image"), bytes);
            assert!(
                header(image, "Content-Disposition").is_some_and(|d| d.starts_with("inline")),
                "inline"
            );
        }
        let csv = &mail.subparts[1];
        assert_eq!(csv.ctype.mimetype, "text/csv");
        assert_eq!(csv.get_body_raw().expect("csv"), CSV);
        let disposition = csv.get_content_disposition();
        assert_eq!(
            disposition.params.get("filename").map(String::as_str),
            Some("revenue.csv")
        );
    }
}

#[tokio::test]
async fn an_alert_is_plain_text_and_a_payload_recipient_replaces_the_list() {
    let server = SmtpServer::start(&[]);
    let config = config(&server, &["owner@shop.example", "analyst@shop.example"]);
    let sink = EmailSink::new(&loopback()).expect("sink");
    let alert = r#"{"rule":"big-order","message":"Order over 1,000,000 KRW\nOrder 42"}"#;
    let result = sink
        .deliver(&notification("ntf_big_42", alert), &config)
        .await;
    assert!(result.is_delivered(), "{result:?}");
    let report = report_payload(Some("ceo@shop.example"));
    let result = sink
        .deliver(&notification("rpt_1:ceo", &report), &config)
        .await;
    assert!(result.is_delivered(), "{result:?}");

    let received = server.received();
    assert_eq!(received.len(), 3);
    let alert = mailparse::parse_mail(&received[0].1).expect("MIME");
    assert_eq!(alert.ctype.mimetype, "text/plain");
    assert!(alert.subparts.is_empty());
    assert_eq!(
        header(&alert, "Subject").as_deref(),
        Some("Order over 1,000,000 KRW")
    );
    assert_eq!(
        header(&alert, "Message-ID").as_deref(),
        Some("<ntf_big_42@shop.example>")
    );
    assert!(header(&alert, "List-Id").is_none());
    // The report named its one recipient: only they received it.
    assert_eq!(received[2].0, ["ceo@shop.example"]);
    let report = mailparse::parse_mail(&received[2].1).expect("MIME");
    assert_eq!(
        header(&report, "Message-ID").as_deref(),
        Some("<rpt_1%3Aceo@shop.example>")
    );
}

#[tokio::test]
async fn a_temporary_refusal_is_retryable_with_its_code() {
    let server = SmtpServer::start(&[]);
    let config = config(&server, &["tempfail@shop.example"]);
    let result = EmailSink::new(&loopback())
        .expect("sink")
        .deliver(&notification("ntf_1", r#"{"message":"hi"}"#), &config)
        .await;
    assert_eq!(
        result.outcome,
        DeliveryOutcome::Retryable { retry_after: None }
    );
    assert_eq!(result.status_code, Some(451));
    let error = result.error.expect("error");
    assert!(
        error.starts_with("SMTP 451") && error.contains("try again later"),
        "{error}"
    );
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn a_rejected_recipient_is_permanent_and_the_others_still_receive() {
    let server = SmtpServer::start(&[]);
    let config = config(&server, &["owner@shop.example", "reject-me@shop.example"]);
    let result = EmailSink::new(&loopback())
        .expect("sink")
        .deliver(&notification("ntf_2", r#"{"message":"hi"}"#), &config)
        .await;
    assert_eq!(result.outcome, DeliveryOutcome::Permanent, "{result:?}");
    assert_eq!(result.status_code, Some(550));
    let error = result.error.expect("error");
    assert!(
        error.starts_with("reject-me@shop.example: SMTP 550"),
        "{error}"
    );
    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].0, ["owner@shop.example"]);

    // A payload that is not a message never reaches the server.
    let result = EmailSink::new(&loopback())
        .expect("sink")
        .deliver(&notification("ntf_3", r#"{"text":"no message"}"#), &config)
        .await;
    assert_eq!(result.outcome, DeliveryOutcome::Permanent);
    assert!(result.error.expect("error").contains("message"));
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn auth_uses_the_password_from_the_secrets_store() {
    let server = SmtpServer::start(&["--user", "tidemark", "--password", "s3cret-smtp"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open(dir.path().join("tidemark.db")).expect("store"));
    let kek = KekSource::LocalFile(
        LocalKeyFile::open_or_create(dir.path().join("secrets.kek")).expect("key file"),
    );
    let secrets = Secrets::new(store, kek, SecretsOptions::default());
    secrets
        .put("shop-a", "smtp-password", b"s3cret-smtp")
        .await
        .expect("put");
    secrets
        .put("shop-a", "old-password", b"wrong")
        .await
        .expect("put");

    let sinks = Sinks::new(&loopback()).expect("sinks");
    let stored = |secret: &str| {
        format!(
            r#"{{"host":"127.0.0.1","port":{},"tls":"none","username":"tidemark",
                "password":{{"secret":"{secret}"}},"from":"alerts@shop.example",
                "to":["owner@shop.example"],"timeout_ms":5000}}"#,
            server.port
        )
    };
    let mut destination = Destination::parse("email", &stored("smtp-password")).expect("config");
    destination.validate("shop-a", &loopback()).expect("valid");
    destination
        .check_secrets("shop-a", &secrets)
        .await
        .expect("the secret exists");
    destination
        .resolve("shop-a", dir.path(), &secrets)
        .await
        .expect("resolved");
    let result = sinks
        .deliver(
            &destination,
            &notification("ntf_auth", r#"{"message":"hi"}"#),
        )
        .await;
    assert!(result.is_delivered(), "{result:?}");
    assert_eq!(server.received().len(), 1);

    // Another tenant has no such secret.
    let mut other = Destination::parse("email", &stored("smtp-password")).expect("config");
    let err = other
        .check_secrets("shop-b", &secrets)
        .await
        .expect_err("b's");
    assert_eq!(err.field(), Some("config.password"));

    // A wrong password is refused by the server: permanent, with its code.
    let mut wrong = Destination::parse("email", &stored("old-password")).expect("config");
    wrong
        .resolve("shop-a", dir.path(), &secrets)
        .await
        .expect("resolved");
    let result = sinks
        .deliver(&wrong, &notification("ntf_auth2", r#"{"message":"hi"}"#))
        .await;
    assert_eq!(result.outcome, DeliveryOutcome::Permanent, "{result:?}");
    assert_eq!(result.status_code, Some(535));
    assert_eq!(server.received().len(), 1);
}

/// A self-signed certificate for `localhost`, written as PEM files the server reads; its DER.
fn certificate(dir: &Path) -> (PathBuf, PathBuf, Vec<u8>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("self-signed certificate");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).expect("cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("key");
    (cert, key, certified.cert.der().to_vec())
}

#[tokio::test]
async fn starttls_verifies_the_relay_and_logs_in_over_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key, der) = certificate(dir.path());
    let server = SmtpServer::start(&[
        "--cert",
        cert.to_str().expect("path"),
        "--key",
        key.to_str().expect("path"),
        "--user",
        "tidemark",
        "--password",
        "pw",
    ]);
    // `localhost` resolves (through the guard) to the allowed 127.0.0.1; the certificate is
    // checked for `localhost`, not for the address connected to.
    let mut config = config(&server, &["owner@shop.example"]);
    config.host = "localhost".to_owned();
    config.tls = SmtpTls::Starttls;
    config.username = Some("tidemark".to_owned());
    config.password = Some("pw".into());
    config.validate(&loopback()).expect("valid");

    let trusting = EmailSink::trusting(&loopback(), &[der]).expect("sink");
    let result = trusting
        .deliver(
            &notification("ntf_tls", r#"{"message":"over TLS"}"#),
            &config,
        )
        .await;
    assert!(result.is_delivered(), "{result:?}");
    assert_eq!(server.received().len(), 1);

    // A sink that does not trust the certificate does not send: retryable, named as TLS.
    let result = EmailSink::new(&loopback())
        .expect("sink")
        .deliver(
            &notification("ntf_tls2", r#"{"message":"over TLS"}"#),
            &config,
        )
        .await;
    assert!(
        matches!(result.outcome, DeliveryOutcome::Retryable { .. }),
        "{result:?}"
    );
    let error = result.error.expect("error");
    assert!(error.contains("TLS"), "{error}");
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn a_relay_the_guard_refuses_is_refused_at_validate_and_at_delivery() {
    let server = SmtpServer::start(&[]);
    let settings = SinkSettings::default();
    for host in [
        "127.0.0.1",
        "127.1",
        "localhost",
        "[::ffff:127.0.0.1]",
        "169.254.169.254",
    ] {
        let mut config = config(&server, &["owner@shop.example"]);
        config.host = host.to_owned();
        let err = config.validate(&settings).expect_err(host);
        assert_eq!(err.field(), Some("config.host"), "{host}");
        assert!(err.to_string().contains("refused"), "{host}: {err}");
        let result = EmailSink::new(&settings)
            .expect("sink")
            .deliver(&notification("ntf_guard", r#"{"message":"hi"}"#), &config)
            .await;
        assert_eq!(result.outcome, DeliveryOutcome::Permanent, "{host}");
        assert!(result.error.expect("error").contains("refused"), "{host}");
    }
    assert!(server.received().is_empty(), "a refused relay was sent to");

    // The whole destination check (resolution included) names the field too.
    let stored = format!(
        r#"{{"host":"localhost","port":{},"tls":"none","from":"a@shop.example"}}"#,
        server.port
    );
    let destination = Destination::parse("email", &stored).expect("config");
    let err = destination
        .check_outbound(&settings)
        .await
        .expect_err("loopback");
    assert_eq!(err.field(), Some("config.host"));
}

#[test]
fn configuration_errors_name_the_field() {
    let settings = SinkSettings::default();
    let field = |json: &str| {
        Destination::parse("email", json)
            .and_then(|d| d.validate("shop-a", &settings))
            .err()
            .and_then(|e| e.field().map(str::to_owned))
    };
    let ok = r#"{"host":"smtp.example.com","from":"a@shop.example","to":["b@shop.example"]}"#;
    assert_eq!(field(ok), None);
    let parsed = Destination::parse("email", ok).expect("ok");
    let config = parsed.config::<EmailConfig>().expect("email");
    assert_eq!((config.port(), config.tls), (587, SmtpTls::Starttls));
    for (json, expected) in [
        (
            r#"{"host":"smtp.example.com","from":"not an address"}"#,
            "config.from",
        ),
        (
            r#"{"host":"smtp.example.com","from":"a@b.example","to":["x"]}"#,
            "config.to[0]",
        ),
        (
            r#"{"host":"smtp://smtp.example.com","from":"a@b.example"}"#,
            "config.host",
        ),
        (
            r#"{"host":"smtp.example.com:25","from":"a@b.example"}"#,
            "config.host",
        ),
        (
            r#"{"host":"smtp.example.com","from":"a@b.example","username":"u"}"#,
            "config.password",
        ),
        (
            r#"{"host":"smtp.example.com","from":"a@b.example","list_id":"no dots"}"#,
            "config.list_id",
        ),
        (
            r#"{"host":"smtp.example.com","from":"a@b.example","timeout_ms":3600000}"#,
            "config.timeout_ms",
        ),
        (
            r#"{"host":"smtp.example.com","from":"a@b.example","tls":"ssl"}"#,
            "config",
        ),
        (
            r#"{"host":"smtp.example.com","from":"a@b.example","pasword":"x"}"#,
            "config",
        ),
    ] {
        assert_eq!(field(json).as_deref(), Some(expected), "{json}");
    }
    let implicit = r#"{"host":"smtp.example.com","tls":"tls","from":"a@b.example"}"#;
    let parsed = Destination::parse("email", implicit).expect("tls");
    assert_eq!(
        parsed.config::<EmailConfig>().map(EmailConfig::port),
        Some(465)
    );
    // The password stays out of debug output.
    let mut config = EmailConfig::new("smtp.example.com", "a@b.example", &[]);
    config.password = Some("hunter2".into());
    assert!(!format!("{config:?}").contains("hunter2"));
}
