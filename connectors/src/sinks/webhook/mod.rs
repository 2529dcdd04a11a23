//! Webhook sink: signed HTTP POSTs following the Standard Webhooks specification
//! (<https://www.standardwebhooks.com/>).
//!
//! Each request carries `webhook-id` (the notification id: receivers de-duplicate by it),
//! `webhook-timestamp` (Unix seconds) and, when the destination has a secret,
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
//!
//! - [`config`]: the destination's JSON (URL, secret, headers, timeout) and its checks.
//! - [`sink`]: the POST and how its response is classified (delivered, retryable, permanent).
//! - [`signer`]: signing, and verifying on the receiving side.

pub mod config;
pub mod signer;
pub mod sink;

pub use config::WebhookConfig;
pub use signer::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, VerifyError, WebhookSigner};
pub use sink::{WebhookSink, parse_retry_after};
