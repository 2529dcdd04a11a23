//! Delivering notifications to destinations.
//!
//! One module per sink kind — [`webhook`] (Standard Webhooks signing) and [`file`](mod@file) (JSON
//! lines) — plus [`retry`], the backoff policy a sender applies between attempts. A sink never
//! returns an error: every attempt ends in a [`DeliveryResult`] that says whether the
//! notification arrived, may arrive if tried again, or never will. [`Sinks`] dispatches a
//! stored destination (kind + JSON config) to the right sink.
//!
//! Every delivery carries the notification id as its idempotency key (`webhook-id` header,
//! `id` field), because delivery is at-least-once: a sender that dies after the receiver
//! accepted but before the outcome was recorded will deliver again.

pub mod file;
pub mod retry;
pub mod webhook;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use file::{FileConfig, FileSink};
pub use retry::RetryPolicy;
pub use webhook::{VerifyError, WebhookConfig, WebhookSigner, WebhookSink};

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The destination accepted the notification.
    Delivered,
    /// It failed but may succeed later; `retry_after` is the destination's own hint
    /// (`Retry-After`), if it gave one.
    Retryable {
        /// Minimum wait the destination asked for.
        retry_after: Option<Duration>,
    },
    /// It failed and retrying cannot help (bad configuration, rejected payload): dead at once.
    Permanent,
}

/// The result of one delivery attempt: what the sender needs for the delivery log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryResult {
    /// How it ended.
    pub outcome: DeliveryOutcome,
    /// HTTP status code, when a response was received.
    pub status_code: Option<u16>,
    /// Short description of a failure (response bodies truncated to 512 bytes).
    pub error: Option<String>,
    /// Wall time of the attempt.
    pub duration: Duration,
}

impl DeliveryResult {
    /// A successful attempt.
    pub fn delivered(status_code: Option<u16>, duration: Duration) -> Self {
        Self {
            outcome: DeliveryOutcome::Delivered,
            status_code,
            error: None,
            duration,
        }
    }

    /// A failed attempt worth retrying.
    pub fn retryable(
        status_code: Option<u16>,
        error: impl Into<String>,
        retry_after: Option<Duration>,
        duration: Duration,
    ) -> Self {
        Self {
            outcome: DeliveryOutcome::Retryable { retry_after },
            status_code,
            error: Some(error.into()),
            duration,
        }
    }

    /// A failed attempt that retrying cannot fix.
    pub fn permanent(
        status_code: Option<u16>,
        error: impl Into<String>,
        duration: Duration,
    ) -> Self {
        Self {
            outcome: DeliveryOutcome::Permanent,
            status_code,
            error: Some(error.into()),
            duration,
        }
    }

    /// Whether the destination accepted the notification.
    pub fn is_delivered(&self) -> bool {
        self.outcome == DeliveryOutcome::Delivered
    }
}

/// A destination's configuration, parsed from its stored kind and JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DestinationConfig {
    /// An HTTP endpoint receiving signed POSTs.
    Webhook(WebhookConfig),
    /// A JSON-lines file (or stdout).
    File(FileConfig),
}

impl DestinationConfig {
    /// Parses a stored destination: `kind` is `"webhook"` or `"file"`, `config` its JSON.
    pub fn parse(kind: &str, config: &str) -> Result<Self, SinkError> {
        let invalid = |source| SinkError::InvalidConfig {
            kind: kind.to_owned(),
            source,
        };
        match kind {
            "webhook" => serde_json::from_str(config)
                .map(Self::Webhook)
                .map_err(invalid),
            "file" => serde_json::from_str(config)
                .map(Self::File)
                .map_err(invalid),
            other => Err(SinkError::UnknownKind(other.to_owned())),
        }
    }
}

/// Errors setting up a sink or reading a destination's configuration.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The destination kind is not one this build can deliver to.
    #[error("unknown destination kind {0:?}; expected \"webhook\" or \"file\"")]
    UnknownKind(String),
    /// The destination's JSON configuration does not fit its kind.
    #[error("invalid {kind} destination config: {source}")]
    InvalidConfig {
        /// The destination kind.
        kind: String,
        /// What serde found wrong (which field, and why).
        #[source]
        source: serde_json::Error,
    },
    /// A webhook secret is not `whsec_`-prefixed or raw base64.
    #[error("invalid webhook secret: {0}")]
    InvalidSecret(String),
    /// The HTTP client could not be built.
    #[error("cannot build HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// Every sink, ready to deliver to any [`DestinationConfig`].
#[derive(Debug, Clone)]
pub struct Sinks {
    webhook: WebhookSink,
    file: FileSink,
}

impl Sinks {
    /// Builds the sinks (one shared HTTP client).
    pub fn new() -> Result<Self, SinkError> {
        Ok(Self {
            webhook: WebhookSink::new()?,
            file: FileSink::new(),
        })
    }

    /// Delivers `payload` (JSON text) with idempotency key `msg_id` to `destination`.
    pub async fn deliver(
        &self,
        destination: &DestinationConfig,
        msg_id: &str,
        payload: &str,
    ) -> DeliveryResult {
        match destination {
            DestinationConfig::Webhook(config) => {
                self.webhook.deliver(config, msg_id, payload).await
            }
            DestinationConfig::File(config) => self.file.deliver(config, msg_id, payload).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_kinds_and_names_bad_fields() {
        let webhook = DestinationConfig::parse("webhook", r#"{"url":"https://example.com/h"}"#)
            .expect("webhook");
        assert!(
            matches!(webhook, DestinationConfig::Webhook(c) if c.url == "https://example.com/h")
        );
        let file = DestinationConfig::parse("file", r#"{"path":"-"}"#).expect("file");
        assert_eq!(
            file,
            DestinationConfig::File(FileConfig {
                path: "-".to_owned()
            })
        );

        let err = DestinationConfig::parse("webhook", r#"{"url":"x","urll":"y"}"#)
            .expect_err("unknown field");
        assert!(err.to_string().contains("urll"), "{err}");
        assert!(matches!(
            DestinationConfig::parse("slack", "{}"),
            Err(SinkError::UnknownKind(_))
        ));
    }
}
