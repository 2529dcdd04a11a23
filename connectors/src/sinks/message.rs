//! The notification payload as the message sinks (email, Slack) read it: the contract between
//! the report and alert generators and every sink that shows a human a message.
//!
//! A payload is JSON text with:
//! - `message` (required): the plain text. Alert payloads carry only this, beside fields of
//!   their own, which are ignored here.
//! - `subject` (optional): defaults to the first line of `message`, cut at
//!   [`MAX_DEFAULT_SUBJECT_CHARS`] characters.
//! - `html` (optional): the same message as HTML; inline images are referenced as
//!   `cid:<content_id>`.
//! - `attachments` (optional): `[{"filename", "content_type", "content_id"?, "data_base64"}]`;
//!   one with a `content_id` is an inline image, the others are attached files.
//! - `recipient` (optional): one email address. Reports fan out one notification per
//!   recipient, so a failed recipient is retried alone and the others are never sent twice.
//! - `unsubscribe_url` (optional): an https or http URL that unsubscribes the recipient with
//!   one POST (RFC 8058); email carries it as `List-Unsubscribe` with
//!   `List-Unsubscribe-Post: List-Unsubscribe=One-Click`.
//!
//! A payload that does not fit is refused with a message naming the field; sinks answer it as
//! a permanent failure, since the same bytes will never fit.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;

/// The longest subject taken from the first line of `message` when there is no `subject`.
pub const MAX_DEFAULT_SUBJECT_CHARS: usize = 150;

/// A notification as a human reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The subject (an email's `Subject`, a Slack message's header).
    pub subject: String,
    /// The plain text.
    pub text: String,
    /// The HTML form, when the generator made one.
    pub html: Option<String>,
    /// Inline images and attached files, in the payload's order.
    pub attachments: Vec<Attachment>,
    /// The one recipient this notification is for, when it names one (reports); otherwise the
    /// destination's own recipients.
    pub recipient: Option<String>,
    /// Where the recipient unsubscribes with one POST (CRM campaigns).
    pub unsubscribe_url: Option<String>,
}

/// An inline image or an attached file.
#[derive(Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The file name shown to the reader.
    pub filename: String,
    /// Its MIME type (`image/png`, `text/csv`).
    pub content_type: String,
    /// Set for an inline image: the id the HTML refers to as `cid:<content_id>`.
    pub content_id: Option<String>,
    /// The bytes.
    pub data: Vec<u8>,
}

impl Attachment {
    /// Whether it is an inline image (shown in the message) rather than an attached file.
    pub fn is_inline(&self) -> bool {
        self.content_id.is_some()
    }
}

impl std::fmt::Debug for Attachment {
    // The bytes would flood a log; their length says enough.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("filename", &self.filename)
            .field("content_type", &self.content_type)
            .field("content_id", &self.content_id)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// The payload's fields as they arrive; unknown fields belong to the generator and are ignored.
#[derive(Deserialize)]
struct Payload {
    message: String,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    html: Option<String>,
    #[serde(default)]
    attachments: Vec<PayloadAttachment>,
    #[serde(default)]
    recipient: Option<String>,
    #[serde(default)]
    unsubscribe_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PayloadAttachment {
    filename: String,
    content_type: String,
    #[serde(default)]
    content_id: Option<String>,
    data_base64: String,
}

impl Message {
    /// Reads a notification payload (see the module docs); the error names what is wrong.
    pub fn from_payload(payload: &str) -> Result<Message, String> {
        let payload: Payload = serde_json::from_str(payload)
            .map_err(|e| format!("the payload is not a message: {e}"))?;
        let subject = match payload.subject {
            Some(subject) => subject,
            None => default_subject(&payload.message),
        };
        if subject.contains(['\r', '\n']) {
            return Err("subject: a subject is one line".to_owned());
        }
        let attachments = payload
            .attachments
            .into_iter()
            .enumerate()
            .map(|(i, a)| {
                let data = BASE64
                    .decode(a.data_base64.trim())
                    .map_err(|e| format!("attachments[{i}].data_base64: not base64: {e}"))?;
                if a.filename.trim().is_empty() {
                    return Err(format!("attachments[{i}].filename: empty"));
                }
                if a.content_id
                    .as_deref()
                    .is_some_and(|id| id.trim().is_empty())
                {
                    return Err(format!("attachments[{i}].content_id: empty"));
                }
                Ok(Attachment {
                    filename: a.filename,
                    content_type: a.content_type,
                    content_id: a.content_id,
                    data,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        if let Some(url) = &payload.unsubscribe_url
            && (!(url.starts_with("https://") || url.starts_with("http://"))
                || url.contains(['\r', '\n', '<', '>', ' ']))
        {
            return Err(format!(
                "unsubscribe_url: '{url}' is not an http(s) URL fit for a header"
            ));
        }
        Ok(Message {
            subject,
            text: payload.message,
            html: payload.html,
            attachments,
            recipient: payload.recipient,
            unsubscribe_url: payload.unsubscribe_url,
        })
    }

    /// The inline images, in order.
    pub fn inline_images(&self) -> impl Iterator<Item = &Attachment> {
        self.attachments.iter().filter(|a| a.is_inline())
    }
}

/// The first line of `message`, cut at [`MAX_DEFAULT_SUBJECT_CHARS`] characters (with `…` when
/// cut).
fn default_subject(message: &str) -> String {
    let line = message.lines().next().unwrap_or("").trim();
    if line.chars().count() <= MAX_DEFAULT_SUBJECT_CHARS {
        return line.to_owned();
    }
    let mut cut: String = line.chars().take(MAX_DEFAULT_SUBJECT_CHARS - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_payload_is_its_message_with_the_first_line_as_subject() {
        let message = Message::from_payload(
            r#"{"rule":"big-order","message":"Order over 1,000,000 KRW\nOrder 42 by shop A"}"#,
        )
        .expect("alert");
        assert_eq!(message.subject, "Order over 1,000,000 KRW");
        assert_eq!(message.text, "Order over 1,000,000 KRW\nOrder 42 by shop A");
        assert_eq!(message.html, None);
        assert!(message.attachments.is_empty());
        assert_eq!(message.recipient, None);

        let long = "x".repeat(400);
        let message =
            Message::from_payload(&serde_json::json!({ "message": long }).to_string()).expect("ok");
        assert_eq!(message.subject.chars().count(), MAX_DEFAULT_SUBJECT_CHARS);
        assert!(message.subject.ends_with('…'));
    }

    #[test]
    fn a_report_payload_has_html_attachments_and_a_recipient() {
        let payload = serde_json::json!({
            "subject": "Weekly revenue",
            "message": "Revenue by channel",
            "html": "<img src=\"cid:chart1\">",
            "attachments": [
                {"filename": "chart.png", "content_type": "image/png", "content_id": "chart1",
                 "data_base64": BASE64.encode([1u8, 2, 3])},
                {"filename": "revenue.csv", "content_type": "text/csv",
                 "data_base64": BASE64.encode("a,b\n1,2\n")},
            ],
            "recipient": "owner@shop.example",
        });
        let message = Message::from_payload(&payload.to_string()).expect("report");
        assert_eq!(message.subject, "Weekly revenue");
        assert_eq!(message.attachments.len(), 2);
        assert_eq!(message.attachments[0].data, vec![1, 2, 3]);
        assert_eq!(message.inline_images().count(), 1);
        assert_eq!(message.attachments[1].data, b"a,b\n1,2\n");
        assert_eq!(message.recipient.as_deref(), Some("owner@shop.example"));
    }

    #[test]
    fn a_payload_that_does_not_fit_names_what_is_wrong() {
        let err = Message::from_payload("not json").expect_err("not json");
        assert!(err.starts_with("the payload is not a message"), "{err}");
        let err = Message::from_payload(r#"{"subject":"x"}"#).expect_err("no message");
        assert!(err.contains("message"), "{err}");
        let err = Message::from_payload(
            r#"{"message":"m","attachments":[{"filename":"a","content_type":"image/png","data_base64":"***"}]}"#,
        )
        .expect_err("bad base64");
        assert!(err.starts_with("attachments[0].data_base64"), "{err}");
        let err = Message::from_payload(r#"{"message":"m","subject":"a\r\nBcc: x@y"}"#)
            .expect_err("two lines");
        assert!(err.starts_with("subject"), "{err}");
    }
}
