//! Delivering to a Slack destination: the Web API calls of one attempt and the classification
//! of Slack's answers, decided here once for every sender.
//!
//! Slack answers HTTP 200 with `"ok": false` and an error name when it refuses a call:
//! - `channel_not_found`, `not_in_channel`, `is_archived`, `invalid_auth`, `not_authed`,
//!   `account_inactive`, `token_revoked`, `token_expired`, `missing_scope`, and every other
//!   name not listed below: permanent, the name in the error (`Slack chat.postMessage:
//!   channel_not_found`), since the same call will be refused again until someone changes the
//!   destination or the app;
//! - `ratelimited` (HTTP 429, with `Retry-After`), `internal_error`, `fatal_error`,
//!   `service_unavailable`, `request_timeout`: retryable.
//!
//! HTTP 5xx, 429, a timeout or no connection: retryable; HTTP 400, 401, 403, 404, 410:
//! permanent (the API base is wrong). A URL the outbound guard refuses: permanent.

use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use serde_json::{Value, json};

use super::SlackConfig;
use crate::outbound::{OutboundGuard, refusal_in};
use crate::sinks::message::{Attachment, Message};
use crate::sinks::webhook::parse_retry_after;
use crate::sinks::{DeliveryResult, OutgoingNotification, Sink, SinkError, SinkSettings};

/// The most `text` a message may carry.
pub const MAX_TEXT_CHARS: usize = 40_000;
/// The most blocks a message may carry.
pub const MAX_BLOCKS: usize = 50;
/// The most characters of a header block's text.
const MAX_HEADER_CHARS: usize = 150;
/// The most characters of a section block's text.
const MAX_SECTION_CHARS: usize = 3_000;

/// Error names worth another attempt.
const RETRYABLE_ERRORS: [&str; 6] = [
    "ratelimited",
    "rate_limited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

/// HTTP statuses that mean the API is not where the destination says.
const PERMANENT_STATUSES: [u16; 5] = [400, 401, 403, 404, 410];

/// Delivers notifications to Slack channels. Cheap to clone (one shared client).
#[derive(Clone, Debug)]
pub struct SlackSink {
    client: reqwest::Client,
    guard: OutboundGuard,
    max_timeout: Duration,
}

impl SlackSink {
    /// A sink with its own HTTP client, resolving through `settings`' outbound guard: redirects
    /// disabled, no proxy, 5 s connect timeout.
    pub fn new(settings: &SinkSettings) -> Result<Self, SinkError> {
        let client = settings
            .outbound
            .client_builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("tidemark/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(SinkError::HttpClient)?;
        Ok(Self {
            client,
            guard: settings.outbound.clone(),
            max_timeout: settings.max_timeout,
        })
    }
}

/// One call's failure, already classified.
type Failed = DeliveryResult;

/// One attempt's calls, sharing the token, the timeout and the clock.
struct Attempt<'a> {
    sink: &'a SlackSink,
    config: &'a SlackConfig,
    token: &'a str,
    timeout: Duration,
    started: Instant,
}

impl Attempt<'_> {
    /// A Web API method called with a JSON body; its answer when `ok` is true.
    async fn call(&self, method: &str, body: &Value) -> Result<Value, Failed> {
        let url = format!("{}/{method}", self.config.api_base.trim_end_matches('/'));
        let request = self
            .sink_request(&url)?
            .header(AUTHORIZATION, format!("Bearer {}", self.token))
            .header(CONTENT_TYPE, "application/json; charset=utf-8")
            .body(body.to_string());
        let response = self.send(method, request).await?;
        let answer: Value = match response.json().await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::debug!(method, error = %e, "Slack answered something that is not JSON");
                return Err(DeliveryResult::retryable(
                    None,
                    format!("Slack {method}: the answer is not JSON"),
                    None,
                    self.started.elapsed(),
                ));
            }
        };
        if answer["ok"] == true {
            return Ok(answer);
        }
        let error = answer["error"].as_str().unwrap_or("unknown_error");
        let text = format!("Slack {method}: {error}");
        Err(if RETRYABLE_ERRORS.contains(&error) {
            DeliveryResult::retryable(Some(200), text, None, self.started.elapsed())
        } else {
            DeliveryResult::permanent(Some(200), text, self.started.elapsed())
        })
    }

    /// The file's bytes POSTed to the `upload_url` Slack answered (no token: the URL carries
    /// its own authorisation, and the token goes nowhere but the API).
    async fn upload(&self, upload_url: &str, attachment: &Attachment) -> Result<(), Failed> {
        let request = self
            .sink_request(upload_url)?
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(attachment.data.clone());
        self.send("file upload", request).await.map(|_| ())
    }

    /// A POST to `url`, checked by the outbound guard first.
    fn sink_request(&self, url: &str) -> Result<reqwest::RequestBuilder, Failed> {
        let url =
            self.sink.guard.check_url(url).map_err(|e| {
                DeliveryResult::permanent(None, e.to_string(), self.started.elapsed())
            })?;
        Ok(self.sink.client.post(url).timeout(self.timeout))
    }

    /// Sends a request; a response with a success status, or the classified failure.
    async fn send(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Failed> {
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                tracing::debug!(what, error = %e, "Slack request failed");
                if let Some(refused) = refusal_in(&e).filter(|r| r.is_refusal()) {
                    return Err(DeliveryResult::permanent(
                        None,
                        refused.to_string(),
                        self.started.elapsed(),
                    ));
                }
                let error = if e.is_connect() {
                    format!("Slack {what}: could not connect")
                } else if e.is_timeout() {
                    format!(
                        "Slack {what}: timed out after {} ms",
                        self.timeout.as_millis()
                    )
                } else {
                    format!("Slack {what}: the request failed before an answer arrived")
                };
                return Err(DeliveryResult::retryable(
                    None,
                    error,
                    None,
                    self.started.elapsed(),
                ));
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let code = status.as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        // A 429 carries `"error": "ratelimited"`; the status says it already.
        let error = if code == 429 {
            format!("Slack {what}: ratelimited (HTTP 429)")
        } else {
            format!("Slack {what}: HTTP {status}")
        };
        Err(if PERMANENT_STATUSES.contains(&code) {
            DeliveryResult::permanent(Some(code), error, self.started.elapsed())
        } else {
            DeliveryResult::retryable(Some(code), error, retry_after, self.started.elapsed())
        })
    }
}

#[async_trait]
impl Sink for SlackSink {
    type Config = SlackConfig;

    fn build(settings: &SinkSettings) -> Result<Self, SinkError> {
        Self::new(settings)
    }

    /// Posts the message, uploads its inline images and shares them under it (see the module
    /// docs); the first failing call ends the attempt with its classification.
    async fn deliver(
        &self,
        notification: &OutgoingNotification<'_>,
        config: &SlackConfig,
    ) -> DeliveryResult {
        let started = Instant::now();
        let message = match Message::from_payload(notification.payload) {
            Ok(message) => message,
            Err(error) => return DeliveryResult::permanent(None, error, started.elapsed()),
        };
        let Some(token) = config.token.inline() else {
            return DeliveryResult::permanent(
                None,
                "the stored token was not resolved",
                started.elapsed(),
            );
        };
        let attempt = Attempt {
            sink: self,
            config,
            token,
            timeout: Duration::from_millis(config.timeout_ms.max(1)).min(self.max_timeout),
            started,
        };
        match deliver(&attempt, &message).await {
            Ok(()) => DeliveryResult::delivered(Some(200), started.elapsed()),
            Err(failed) => failed,
        }
    }
}

async fn deliver(attempt: &Attempt<'_>, message: &Message) -> Result<(), Failed> {
    let posted = attempt
        .call(
            "chat.postMessage",
            &json!({
                "channel": attempt.config.channel,
                "text": cut(&message.text, MAX_TEXT_CHARS),
                "blocks": blocks(message),
            }),
        )
        .await?;
    let images: Vec<&Attachment> = message.inline_images().collect();
    if images.is_empty() {
        return Ok(());
    }
    let Some(ts) = posted["ts"].as_str() else {
        return Err(DeliveryResult::retryable(
            Some(200),
            "Slack chat.postMessage: the answer has no ts",
            None,
            attempt.started.elapsed(),
        ));
    };
    let mut files = Vec::with_capacity(images.len());
    for image in images {
        let url = attempt
            .call(
                "files.getUploadURLExternal",
                &json!({ "filename": image.filename, "length": image.data.len() }),
            )
            .await?;
        let (Some(upload_url), Some(file_id)) =
            (url["upload_url"].as_str(), url["file_id"].as_str())
        else {
            return Err(DeliveryResult::retryable(
                Some(200),
                "Slack files.getUploadURLExternal: the answer has no upload_url or file_id",
                None,
                attempt.started.elapsed(),
            ));
        };
        attempt.upload(upload_url, image).await?;
        files.push(json!({ "id": file_id, "title": image.filename }));
    }
    // One call shares every chart, so they appear together or not at all.
    attempt
        .call(
            "files.completeUploadExternal",
            &json!({
                "files": files,
                "channel_id": attempt.config.channel,
                "thread_ts": ts,
            }),
        )
        .await?;
    Ok(())
}

/// A Block Kit summary: a header with the subject, then the text in sections, within Slack's
/// limits (150 characters of header, 3,000 per section, 50 blocks).
fn blocks(message: &Message) -> Vec<Value> {
    let mut blocks = Vec::new();
    if !message.subject.trim().is_empty() {
        blocks.push(json!({
            "type": "header",
            "text": {"type": "plain_text", "text": cut(&message.subject, MAX_HEADER_CHARS)},
        }));
    }
    let chars: Vec<char> = message.text.chars().collect();
    let mut sections = chars
        .chunks(MAX_SECTION_CHARS)
        .map(|c| c.iter().collect::<String>());
    let room = MAX_BLOCKS - blocks.len();
    for i in 0..room {
        let Some(mut text) = sections.next() else {
            break;
        };
        if i + 1 == room && sections.next().is_some() {
            text = cut(&text, MAX_SECTION_CHARS - 1);
            text.push('…');
        }
        if !text.trim().is_empty() {
            blocks.push(json!({
                "type": "section",
                "text": {"type": "mrkdwn", "text": text},
            }));
        }
    }
    blocks
}

/// At most `max` characters of `text`, with `…` when cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(subject: &str, text: &str) -> Message {
        Message::from_payload(&json!({"subject": subject, "message": text}).to_string())
            .expect("message")
    }

    #[test]
    fn blocks_stay_within_slacks_limits() {
        let long = "x".repeat(MAX_SECTION_CHARS * 60);
        let all = blocks(&message(&"s".repeat(400), &long));
        assert_eq!(all.len(), MAX_BLOCKS);
        assert_eq!(all[0]["type"], "header");
        let header = all[0]["text"]["text"].as_str().expect("header");
        assert_eq!(header.chars().count(), MAX_HEADER_CHARS);
        let last = all[MAX_BLOCKS - 1]["text"]["text"]
            .as_str()
            .expect("section");
        assert!(last.ends_with('…') && last.chars().count() == MAX_SECTION_CHARS);

        let short = blocks(&message("Weekly revenue", "Up 4 %"));
        assert_eq!(short.len(), 2);
        assert_eq!(short[1]["text"]["text"], "Up 4 %");
        assert_eq!(
            cut(&"y".repeat(MAX_TEXT_CHARS + 5), MAX_TEXT_CHARS)
                .chars()
                .count(),
            MAX_TEXT_CHARS
        );
    }
}
