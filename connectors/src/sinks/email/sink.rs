//! Delivering to an email destination: the MIME message, the SMTP connection and the
//! classification of the relay's replies, decided here once for every sender.
//!
//! The relay's host is resolved through the outbound guard at every delivery and the
//! connection goes to the checked address itself (the host name is kept for the certificate
//! check and SNI), so a name that re-resolves to an internal address is refused, not connected
//! to. Connections are pooled per (address, port, TLS mode and name, login, timeout); a changed
//! password makes a new pool.
//!
//! Each recipient gets a message and an SMTP transaction of their own (`To:` names only them),
//! so one refused address does not take the others' messages down. The recipients are the
//! payload's `recipient` when it names one (reports fan out one notification per recipient, so a
//! failed recipient is retried alone), else the destination's `to`. With several recipients,
//! a retry sends to all of them again; the `Message-ID` is the same, for clients to de-duplicate.
//!
//! Outcomes:
//! - every recipient accepted (2xx): delivered, with the last reply code;
//! - a 4xx reply (greylisting, mailbox busy, rate limits): retryable, the code in `status_code`;
//! - a 5xx reply (unknown mailbox, policy rejection, failed login): permanent;
//! - no connection, a failed TLS handshake, a timeout, a broken exchange: retryable;
//! - a payload that is not a message, or a host the guard refuses: permanent.
//!
//! With several recipients the worst outcome wins (retryable over permanent over delivered),
//! and the error names the recipient. The reply's text is shown, cut short: it is the relay's
//! own explanation (`5.1.1 mailbox unknown`), which the tenant needs to fix the address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use lettre::address::Envelope;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment as MimeAttachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::{AsyncSmtpTransport, PoolConfig};
use lettre::{AsyncTransport, Tokio1Executor};
use sha2::{Digest, Sha256};

use super::{EmailConfig, SmtpTls};
use crate::outbound::OutboundGuard;
use crate::sinks::message::Message;
use crate::sinks::{
    DeliveryOutcome, DeliveryResult, OutgoingNotification, Sink, SinkError, SinkSettings,
};

/// Pools kept at most; past this, the idle ones are dropped and pools start afresh (many
/// destinations, or many password rotations).
const MAX_POOLS: usize = 256;

/// The relay's reply text shown in a delivery's error is cut to this many characters.
const MAX_REPLY_CHARS: usize = 200;

/// Delivers notifications as email over SMTP. Cheap to clone (the pools are shared).
#[derive(Clone)]
pub struct EmailSink {
    inner: Arc<Inner>,
}

struct Inner {
    guard: OutboundGuard,
    max_timeout: Duration,
    /// Certificates trusted besides the platform's (an operator's private CA).
    extra_roots: Vec<Certificate>,
    pools: Mutex<HashMap<PoolKey, AsyncSmtpTransport<Tokio1Executor>>>,
}

impl std::fmt::Debug for EmailSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pools = self.inner.pools.lock().map(|p| p.len()).unwrap_or(0);
        f.debug_struct("EmailSink")
            .field("max_timeout", &self.inner.max_timeout)
            .field("extra_roots", &self.inner.extra_roots.len())
            .field("pools", &pools)
            .finish()
    }
}

/// What makes two deliveries share connections.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PoolKey {
    address: IpAddr,
    port: u16,
    tls: SmtpTls,
    tls_name: String,
    username: Option<String>,
    password_digest: Option<[u8; 32]>,
    timeout: Duration,
}

impl EmailSink {
    /// A sink connecting through `settings`' outbound guard, trusting the platform's
    /// certificate authorities.
    pub fn new(settings: &SinkSettings) -> Result<Self, SinkError> {
        Self::trusting(settings, &[])
    }

    /// A sink that also trusts the certificates `roots_der` (DER): for an operator whose
    /// relays carry certificates from a private certificate authority. Tenants cannot reach
    /// this; their destinations are verified against these and the platform's roots alike.
    pub fn trusting(settings: &SinkSettings, roots_der: &[Vec<u8>]) -> Result<Self, SinkError> {
        crate::http::install_crypto_provider();
        let extra_roots = roots_der
            .iter()
            .map(|der| {
                Certificate::from_der(der.clone()).map_err(|e| SinkError::InvalidField {
                    field: "trusted roots".to_owned(),
                    reason: format!("not a DER certificate: {e}"),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            inner: Arc::new(Inner {
                guard: settings.outbound.clone(),
                max_timeout: settings.max_timeout,
                extra_roots,
                pools: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The pooled transport for `key`, made on first use.
    fn transport(
        &self,
        key: &PoolKey,
        password: Option<&str>,
    ) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
        let mut pools = self
            .inner
            .pools
            .lock()
            .map_err(|_| "the connection pools are unavailable".to_owned())?;
        if let Some(transport) = pools.get(key) {
            return Ok(transport.clone());
        }
        let tls = match key.tls {
            SmtpTls::None => Tls::None,
            mode => {
                let mut builder = TlsParameters::builder(key.tls_name.clone());
                for root in &self.inner.extra_roots {
                    builder = builder.add_root_certificate(root.clone());
                }
                let parameters = builder
                    .build_rustls()
                    .map_err(|e| format!("cannot set up TLS: {e}"))?;
                if mode == SmtpTls::Tls {
                    Tls::Wrapper(parameters)
                } else {
                    Tls::Required(parameters)
                }
            }
        };
        // The address itself: nothing resolves the name again behind the guard's back.
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(key.address.to_string())
                .port(key.port)
                .tls(tls)
                .timeout(Some(key.timeout))
                .pool_config(
                    PoolConfig::new()
                        .max_size(4)
                        .idle_timeout(Duration::from_secs(60)),
                );
        if let (Some(username), Some(password)) = (&key.username, password) {
            builder = builder.credentials(Credentials::new(username.clone(), password.to_owned()));
        }
        if pools.len() >= MAX_POOLS {
            pools.clear();
        }
        let transport = builder.build();
        pools.insert(key.clone(), transport.clone());
        Ok(transport)
    }
}

#[async_trait]
impl Sink for EmailSink {
    type Config = EmailConfig;

    fn build(settings: &SinkSettings) -> Result<Self, SinkError> {
        Self::new(settings)
    }

    /// Sends the payload's message to each recipient and classifies the replies (see the
    /// module docs).
    async fn deliver(
        &self,
        notification: &OutgoingNotification<'_>,
        config: &EmailConfig,
    ) -> DeliveryResult {
        let started = Instant::now();
        let permanent = |error: String| DeliveryResult::permanent(None, error, started.elapsed());
        let message = match Message::from_payload(notification.payload) {
            Ok(message) => message,
            Err(error) => return permanent(error),
        };
        let prepared = match Prepared::new(&message, config, notification.id) {
            Ok(prepared) => prepared,
            Err(error) => return permanent(error),
        };
        let host = match config.normalized_host() {
            Ok(host) => host,
            Err(error) => return permanent(error.to_string()),
        };
        let port = config.port();
        // Checked at every delivery: the allow-list may have changed, the name may resolve
        // elsewhere now.
        let address = match self.inner.guard.resolve(&host, Some(port)).await {
            Ok(addresses) => addresses[0],
            Err(e) if e.is_refusal() => return permanent(e.to_string()),
            Err(e) => {
                tracing::debug!(host, error = %e, "SMTP relay does not resolve");
                return DeliveryResult::retryable(
                    None,
                    format!("could not resolve '{host}'"),
                    None,
                    started.elapsed(),
                );
            }
        };
        let password = match &config.password {
            None => None,
            Some(credential) => match credential.inline() {
                Some(password) => Some(password),
                None => return permanent("the stored password was not resolved".to_owned()),
            },
        };
        let timeout = Duration::from_millis(config.timeout_ms.max(1)).min(self.inner.max_timeout);
        let key = PoolKey {
            address,
            port,
            tls: config.tls,
            tls_name: host.clone(),
            username: config.username.clone(),
            password_digest: password.map(|p| Sha256::digest(p.as_bytes()).into()),
            timeout,
        };
        let transport = match self.transport(&key, password) {
            Ok(transport) => transport,
            Err(error) => return DeliveryResult::retryable(None, error, None, started.elapsed()),
        };

        let mut worst: Option<DeliveryResult> = None;
        let mut last_code = None;
        for recipient in &prepared.recipients {
            let attempt = send_one(&transport, &prepared, recipient, timeout).await;
            match attempt {
                Ok(code) => last_code = Some(code),
                Err(mut failure) => {
                    tracing::debug!(host, recipient = %recipient.email, error = %failure.error, "SMTP delivery failed");
                    if prepared.recipients.len() > 1 {
                        failure.error = format!("{}: {}", recipient.email, failure.error);
                    }
                    let failure = failure.into_result(started.elapsed());
                    if worst.as_ref().is_none_or(|w| rank(&failure) > rank(w)) {
                        worst = Some(failure);
                    }
                }
            }
        }
        match worst {
            Some(failure) => DeliveryResult {
                duration: started.elapsed(),
                ..failure
            },
            None => DeliveryResult::delivered(last_code, started.elapsed()),
        }
    }
}

/// How bad a failed attempt is: a retryable failure outranks a permanent one (the retry will
/// end permanent if that one still refuses).
fn rank(result: &DeliveryResult) -> u8 {
    match result.outcome {
        DeliveryOutcome::Delivered => 0,
        DeliveryOutcome::Permanent => 1,
        DeliveryOutcome::Retryable { .. } => 2,
    }
}

/// One recipient's failure.
struct Failure {
    retryable: bool,
    code: Option<u16>,
    error: String,
}

impl Failure {
    fn into_result(self, duration: Duration) -> DeliveryResult {
        if self.retryable {
            DeliveryResult::retryable(self.code, self.error, None, duration)
        } else {
            DeliveryResult::permanent(self.code, self.error, duration)
        }
    }
}

/// Sends the message to one recipient in a transaction of its own; the reply code when the
/// relay accepted it.
async fn send_one(
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    prepared: &Prepared,
    recipient: &Mailbox,
    timeout: Duration,
) -> Result<u16, Failure> {
    let bytes = prepared.formatted_for(recipient).map_err(|error| Failure {
        retryable: false,
        code: None,
        error,
    })?;
    let envelope = Envelope::new(
        Some(prepared.from.email.clone()),
        vec![recipient.email.clone()],
    )
    .map_err(|e| Failure {
        retryable: false,
        code: None,
        error: format!("cannot address the message: {e}"),
    })?;
    // The transport's timeout bounds each read and write; this bounds the whole exchange.
    let sent = tokio::time::timeout(
        timeout.saturating_mul(3),
        transport.send_raw(&envelope, &bytes),
    )
    .await;
    match sent {
        Ok(Ok(response)) => Ok(u16::from(response.code())),
        Ok(Err(e)) => Err(classify(&e, timeout)),
        Err(_) => Err(Failure {
            retryable: true,
            code: None,
            error: format!(
                "timed out after {} ms",
                timeout.saturating_mul(3).as_millis()
            ),
        }),
    }
}

/// An SMTP error as a failure: 4xx retryable, 5xx permanent, everything else (connection, TLS,
/// timeouts, a broken exchange) retryable.
fn classify(error: &lettre::transport::smtp::Error, timeout: Duration) -> Failure {
    if let Some(code) = error.status() {
        let code = u16::from(code);
        let text = std::error::Error::source(error)
            .map(|s| s.to_string())
            .unwrap_or_default();
        let mut shown: String = text.chars().take(MAX_REPLY_CHARS).collect();
        if shown.len() < text.len() {
            shown.push('…');
        }
        let error = if shown.is_empty() {
            format!("SMTP {code}")
        } else {
            format!("SMTP {code} {shown}")
        };
        return Failure {
            // RFC 5321 §4.2.1: 4yz is a transient failure, 5yz a permanent one.
            retryable: (400..500).contains(&code),
            code: Some(code),
            error,
        };
    }
    tracing::debug!(error = %error_chain(error), "SMTP exchange failed");
    let error = if error.is_timeout() {
        format!("timed out after {} ms", timeout.as_millis())
    } else if error.is_tls() || is_tls_failure(error) {
        "TLS with the relay failed (certificate or handshake)".to_owned()
    } else if error.is_response() || error.is_client() {
        "the SMTP exchange failed".to_owned()
    } else {
        // Refused, unreachable and connect timeouts read the same: no port-scan oracle.
        "could not connect".to_owned()
    };
    Failure {
        retryable: true,
        code: None,
        error,
    }
}

/// Whether a TLS error (a certificate not trusted, a failed handshake) is somewhere in
/// `error`'s sources; lettre reports a failed STARTTLS handshake as a network error around it.
fn is_tls_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        let inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        if e.is::<rustls::Error>() || inner.is_some_and(|i| i.is::<rustls::Error>()) {
            return true;
        }
        current = e.source();
    }
    false
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// What every recipient's message shares, checked before anything is sent.
struct Prepared {
    from: Mailbox,
    reply_to: Option<Mailbox>,
    list_id: Option<String>,
    unsubscribe_url: Option<String>,
    message_id: String,
    subject: String,
    body: Body,
    recipients: Vec<Mailbox>,
}

/// The MIME body, built once.
enum Body {
    Single(SinglePart),
    Multi(MultiPart),
}

impl Prepared {
    fn new(message: &Message, config: &EmailConfig, id: &str) -> Result<Self, String> {
        let from = config.from_mailbox().map_err(|e| e.to_string())?;
        let reply_to = config.reply_to_mailbox().map_err(|e| e.to_string())?;
        let list_id = config.list_id_value().map_err(|e| e.to_string())?;
        let recipients =
            match &message.recipient {
                Some(recipient) => vec![recipient.trim().parse::<Mailbox>().map_err(|e| {
                    format!("recipient: '{recipient}' is not an email address: {e}")
                })?],
                None => config.to_mailboxes().map_err(|e| e.to_string())?,
            };
        if recipients.is_empty() {
            return Err(
                "no recipient: the payload names none and the destination's 'to' is empty"
                    .to_owned(),
            );
        }
        Ok(Self {
            message_id: message_id(id, from.email.domain()),
            from,
            reply_to,
            list_id,
            unsubscribe_url: message.unsubscribe_url.clone(),
            subject: message.subject.clone(),
            body: body(message)?,
            recipients,
        })
    }

    /// The whole message as sent to `recipient`.
    fn formatted_for(&self, recipient: &Mailbox) -> Result<Vec<u8>, String> {
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .to(recipient.clone())
            .subject(self.subject.clone())
            .message_id(Some(self.message_id.clone()))
            .date(SystemTime::now());
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        if let Some(list_id) = &self.list_id {
            builder = builder.raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Id"),
                list_id.clone(),
            ));
        }
        if let Some(url) = &self.unsubscribe_url {
            // RFC 8058 one-click: mail clients POST `List-Unsubscribe=One-Click` to the URL.
            builder = builder
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe"),
                    format!("<{url}>"),
                ))
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                    "List-Unsubscribe=One-Click".to_owned(),
                ));
        }
        let built = match &self.body {
            Body::Single(part) => builder.singlepart(part.clone()),
            Body::Multi(part) => builder.multipart(part.clone()),
        };
        built
            .map(|m| m.formatted())
            .map_err(|e| format!("cannot build the message: {e}"))
    }
}

/// `<{id}@{domain}>`, the id's characters outside an RFC 5322 dot-atom percent-encoded, so the
/// same notification always gets the same `Message-ID`.
fn message_id(id: &str, domain: &str) -> String {
    let mut local = String::with_capacity(id.len());
    for byte in id.bytes() {
        let c = byte as char;
        if c.is_ascii_alphanumeric() || "!#$&'*+-/=?^_`{|}~.".contains(c) {
            local.push(c);
        } else {
            local.push_str(&format!("%{byte:02X}"));
        }
    }
    let local = local.trim_matches('.').replace("..", ".%2E");
    format!("<{local}@{domain}>")
}

/// `mixed[ related[ alternative[plain, html], inline images ], attachments ]`, each layer only
/// when it holds something. Without HTML, inline images have nothing to show them and are
/// attached as files.
fn body(message: &Message) -> Result<Body, String> {
    let content_type = |i: usize, text: &str| {
        ContentType::parse(text)
            .map_err(|_| format!("attachments[{i}].content_type: '{text}' is not a MIME type"))
    };
    let mut inline = Vec::new();
    let mut files = Vec::new();
    for (i, attachment) in message.attachments.iter().enumerate() {
        let kind = content_type(i, &attachment.content_type)?;
        match (&attachment.content_id, &message.html) {
            (Some(content_id), Some(_)) => inline.push(
                MimeAttachment::new_inline_with_name(
                    content_id.clone(),
                    attachment.filename.clone(),
                )
                .body(attachment.data.clone(), kind),
            ),
            _ => files.push(
                MimeAttachment::new(attachment.filename.clone())
                    .body(attachment.data.clone(), kind),
            ),
        }
    }
    let text = match &message.html {
        Some(html) => Body::Multi(MultiPart::alternative_plain_html(
            message.text.clone(),
            html.clone(),
        )),
        None => Body::Single(SinglePart::plain(message.text.clone())),
    };
    // Inline images are kept only beside HTML, so there is an alternative part to relate to.
    let shown = match text {
        Body::Multi(alternative) if !inline.is_empty() => {
            let related = MultiPart::related().multipart(alternative);
            Body::Multi(inline.into_iter().fold(related, MultiPart::singlepart))
        }
        text => text,
    };
    if files.is_empty() {
        return Ok(shown);
    }
    let mixed = match shown {
        Body::Single(part) => MultiPart::mixed().singlepart(part),
        Body::Multi(part) => MultiPart::mixed().multipart(part),
    };
    Ok(Body::Multi(
        files.into_iter().fold(mixed, MultiPart::singlepart),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_deterministic_and_well_formed() {
        assert_eq!(message_id("ntf_1", "shop.example"), "<ntf_1@shop.example>");
        assert_eq!(
            message_id("rule:7 group<a>", "shop.example"),
            "<rule%3A7%20group%3Ca%3E@shop.example>"
        );
    }

    #[test]
    fn a_plain_alert_is_one_text_part() {
        let message = Message::from_payload(r#"{"message":"Big order"}"#).expect("message");
        assert!(matches!(body(&message), Ok(Body::Single(_))));
    }
}
