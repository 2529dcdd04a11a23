//! The Slack sink against the Slack stand-in (`standins::slack`, checked against Slack's
//! OpenAPI description): the message and its charts, uploaded in order under it, and how
//! Slack's refusals are classified.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use connectors::outbound::{OutboundGuard, OutboundPolicy};
use connectors::sinks::{
    DeliveryOutcome, Destination, OutgoingNotification, Sink, SinkSettings, SlackConfig, SlackSink,
};
use standins::slack::{CHANNEL, SlackStandIn, TOKEN};

/// The stand-in listens on loopback: the allow-list has to say so, as an operator's would.
fn loopback() -> SinkSettings {
    let policy = OutboundPolicy::allowing(&["127.0.0.1/32".to_owned()]).expect("allow-list");
    SinkSettings {
        outbound: OutboundGuard::new(policy),
        ..SinkSettings::default()
    }
}

fn config(slack: &SlackStandIn) -> SlackConfig {
    let mut config = SlackConfig::new(TOKEN, CHANNEL);
    config.api_base = slack.api_base.clone();
    config.timeout_ms = 5_000;
    config
}

const CHART_1: &[u8] = b"\x89PNG\r\n\x1a\nrevenue by channel";
const CHART_2: &[u8] = b"\x89PNG\r\n\x1a\nROAS by campaign, a longer chart";

fn report() -> String {
    serde_json::json!({
        "subject": "Weekly revenue by channel",
        "message": "Revenue by channel, last week.\nOrganic Search leads.",
        "html": "<img src=\"cid:chart-1\"><img src=\"cid:chart-2\">",
        "attachments": [
            {"filename": "revenue.png", "content_type": "image/png", "content_id": "chart-1",
             "data_base64": BASE64.encode(CHART_1)},
            {"filename": "roas.png", "content_type": "image/png", "content_id": "chart-2",
             "data_base64": BASE64.encode(CHART_2)},
            {"filename": "revenue.csv", "content_type": "text/csv",
             "data_base64": BASE64.encode("a,b\n")},
        ],
    })
    .to_string()
}

fn notification(payload: &str) -> OutgoingNotification<'_> {
    OutgoingNotification {
        tenant: "shop-a",
        id: "rpt_weekly_1",
        payload,
    }
}

#[tokio::test]
async fn a_report_posts_the_message_then_its_charts_in_order_under_it() {
    let slack = SlackStandIn::start().await;
    let report = report();
    let result = SlackSink::new(&loopback())
        .expect("sink")
        .deliver(&notification(&report), &config(&slack))
        .await;
    assert!(result.is_delivered(), "{result:?}");
    assert_eq!(slack.violations(), Vec::<String>::new());

    let calls = slack.calls();
    let methods: Vec<&str> = calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(
        methods,
        [
            "chat.postMessage",
            "files.getUploadURLExternal",
            "upload",
            "files.getUploadURLExternal",
            "upload",
            "files.completeUploadExternal",
        ]
    );
    let post = &calls[0].arguments;
    assert_eq!(post["channel"], CHANNEL);
    assert_eq!(
        post["text"],
        "Revenue by channel, last week.\nOrganic Search leads."
    );
    assert_eq!(post["blocks"][0]["type"], "header");
    assert_eq!(
        post["blocks"][0]["text"]["text"],
        "Weekly revenue by channel"
    );
    assert_eq!(post["blocks"][1]["type"], "section");

    assert_eq!(calls[1].arguments["filename"], "revenue.png");
    assert_eq!(calls[1].arguments["length"], CHART_1.len());
    assert_eq!(calls[3].arguments["filename"], "roas.png");
    assert_eq!(calls[3].arguments["length"], CHART_2.len());
    let uploads = slack.uploads();
    let sent: Vec<(&str, Option<&[u8]>)> = uploads
        .values()
        .map(|u| (u.filename.as_str(), u.bytes.as_deref()))
        .collect();
    assert_eq!(
        sent,
        [("revenue.png", Some(CHART_1)), ("roas.png", Some(CHART_2))]
    );

    // Both charts shared together, in order, in the report's thread.
    let complete = &calls[5].arguments;
    let ids: Vec<&str> = uploads.keys().map(String::as_str).collect();
    assert_eq!(complete["files"][0]["id"], ids[0]);
    assert_eq!(complete["files"][1]["id"], ids[1]);
    assert_eq!(complete["files"][0]["title"], "revenue.png");
    assert_eq!(complete["channel_id"], CHANNEL);
    assert!(
        complete["thread_ts"]
            .as_str()
            .is_some_and(|t| t.starts_with("1767225600.")),
        "{complete}"
    );
}

#[tokio::test]
async fn an_alert_is_one_message_through_a_stored_destination() {
    let slack = SlackStandIn::start().await;
    let stored = format!(
        r#"{{"token":"{TOKEN}","channel":"{CHANNEL}","api_base":"{}"}}"#,
        slack.api_base
    );
    let destination = Destination::parse("slack", &stored).expect("config");
    destination.validate("shop-a", &loopback()).expect("valid");
    let result = connectors::sinks::Sinks::new(&loopback())
        .expect("sinks")
        .deliver(
            &destination,
            &notification(r#"{"rule":"big-order","message":"Order over 1,000,000 KRW"}"#),
        )
        .await;
    assert!(result.is_delivered(), "{result:?}");
    let calls = slack.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].arguments["text"], "Order over 1,000,000 KRW");
    assert_eq!(slack.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn ratelimited_is_retryable_with_the_retry_after() {
    let slack = SlackStandIn::start().await;
    slack.rate_limit_next(1, 30);
    let report = report();
    let result = SlackSink::new(&loopback())
        .expect("sink")
        .deliver(&notification(&report), &config(&slack))
        .await;
    assert_eq!(
        result.outcome,
        DeliveryOutcome::Retryable {
            retry_after: Some(Duration::from_secs(30))
        }
    );
    assert_eq!(result.status_code, Some(429));
    assert!(result.error.expect("error").contains("ratelimited"));
    // Nothing after the refused post: no chart went up without its message.
    assert_eq!(slack.calls().len(), 1);
}

#[tokio::test]
async fn channel_not_found_and_invalid_auth_are_permanent_and_named() {
    let slack = SlackStandIn::start().await;
    let sink = SlackSink::new(&loopback()).expect("sink");
    slack.refuse_next(1, "channel_not_found");
    let result = sink
        .deliver(&notification(r#"{"message":"hi"}"#), &config(&slack))
        .await;
    assert_eq!(result.outcome, DeliveryOutcome::Permanent);
    assert_eq!(
        result.error.as_deref(),
        Some("Slack chat.postMessage: channel_not_found")
    );

    let mut other_channel = config(&slack);
    other_channel.channel = "C0ELSEWHERE".to_owned();
    let result = sink
        .deliver(&notification(r#"{"message":"hi"}"#), &other_channel)
        .await;
    assert_eq!(result.outcome, DeliveryOutcome::Permanent);
    assert!(result.error.expect("error").ends_with("channel_not_found"));

    let mut wrong_token = config(&slack);
    wrong_token.token = "xoxb-revoked".into();
    let result = sink
        .deliver(&notification(r#"{"message":"hi"}"#), &wrong_token)
        .await;
    assert_eq!(result.outcome, DeliveryOutcome::Permanent);
    assert_eq!(
        result.error.as_deref(),
        Some("Slack chat.postMessage: invalid_auth")
    );

    // A payload that is not a message calls nothing.
    let calls_before = slack.calls().len();
    let result = sink
        .deliver(&notification("not json"), &config(&slack))
        .await;
    assert_eq!(result.outcome, DeliveryOutcome::Permanent);
    assert_eq!(slack.calls().len(), calls_before);
    assert_eq!(slack.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn an_api_base_the_guard_refuses_is_refused_without_calling() {
    let slack = SlackStandIn::start().await;
    let result = SlackSink::new(&SinkSettings::default())
        .expect("sink")
        .deliver(&notification(r#"{"message":"hi"}"#), &config(&slack))
        .await;
    assert_eq!(result.outcome, DeliveryOutcome::Permanent);
    assert!(result.error.expect("error").contains("loopback"));
    assert!(slack.calls().is_empty());
}
