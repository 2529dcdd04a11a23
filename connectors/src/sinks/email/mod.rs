//! Email sink: each notification as a MIME message over SMTP (`lettre`, on tokio, rustls with
//! ring), one SMTP transaction per recipient.
//!
//! The message is `multipart/mixed[ multipart/related[ multipart/alternative[text/plain,
//! text/html], inline images by Content-ID ], other attachments ]`, each layer present only
//! when it has something to hold (a plain-text alert is a single `text/plain` part). Its
//! `Message-ID` is `<{notification id}@{from domain}>`, the idempotency key: a message sent again
//! after a lost outcome carries the same id, which mail clients and list software use to drop the
//! duplicate.
//!
//! - [`config`]: the destination's JSON (relay, TLS mode, credentials, sender and recipients)
//!   and its checks, the relay host through the outbound guard.
//! - [`sink`]: building the message, the pooled SMTP connections to the checked address, and how
//!   SMTP replies are classified (delivered, retryable, permanent).

pub mod config;
pub mod sink;

pub use config::{EmailConfig, SmtpTls};
pub use sink::EmailSink;

/// Whether `text` is an email address a message can be sent to (`a@b`, RFC 5321 as `lettre`
/// reads it), or why not: what a contact's address is checked with when it is stored.
pub fn check_address(text: &str) -> Result<(), String> {
    text.parse::<lettre::Address>()
        .map(|_| ())
        .map_err(|e| format!("'{text}' is not an email address: {e}"))
}
