//! Delivering to a webhook destination: one signed HTTP POST per attempt, and the
//! classification of what comes back, decided here once for every sender:
//! - 2xx: delivered.
//! - 400, 401, 403, 404, 410, 422: permanent — the receiver rejected this request or the
//!   endpoint does not exist; retrying the same bytes cannot help, so the delivery goes dead
//!   at once.
//! - everything else — 408, 425, 429, 5xx, 3xx (redirects are never followed: a signed POST
//!   must not be re-sent to a URL the tenant did not register), other 4xx — and connection
//!   errors and timeouts: retryable, honouring `Retry-After` (seconds or HTTP-date).
//! - a URL the outbound guard refuses — before sending, or when the client's resolver checks
//!   what the name resolves to now: permanent, with the reason.
//!
//! What the tenant sees of a failure is short and says nothing about the network behind the
//! receiver: `HTTP 503 Service Unavailable`, `could not connect` (refused, unreachable, TLS or
//! connect timeout alike, so a delivery cannot be used to scan ports), `timed out after 5000
//! ms`. The receiver's body and the detailed error go to the server's debug log.

use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LOCATION, RETRY_AFTER};

use super::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, WebhookConfig, WebhookSigner};
use crate::clock::now_secs;
use crate::outbound::{OutboundGuard, refusal_in};
use crate::sinks::{
    DeliveryResult, OutgoingNotification, Sink, SinkError, SinkSettings, error_chain,
};

/// Response bodies logged (at debug) are cut to this many bytes.
const MAX_ERROR_BODY_BYTES: usize = 512;

/// Headers the HTTP layer owns; a destination config may not set them.
const RESERVED_HEADERS: [&str; 5] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
];

/// Status codes that mean "this request will never be accepted".
const PERMANENT_STATUSES: [u16; 6] = [400, 401, 403, 404, 410, 422];

/// Delivers notifications as signed webhook POSTs. Cheap to clone (one shared client).
#[derive(Clone, Debug)]
pub struct WebhookSink {
    client: reqwest::Client,
    guard: OutboundGuard,
    max_timeout: Duration,
}

impl WebhookSink {
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

#[async_trait]
impl Sink for WebhookSink {
    type Config = WebhookConfig;

    fn build(settings: &SinkSettings) -> Result<Self, SinkError> {
        Self::new(settings)
    }

    /// POSTs the payload to `config.url` with the notification id as `webhook-id`, and
    /// classifies the outcome (see the module docs).
    async fn deliver(
        &self,
        notification: &OutgoingNotification<'_>,
        config: &WebhookConfig,
    ) -> DeliveryResult {
        let started = Instant::now();
        let headers =
            match request_headers(config, notification.id, notification.payload, now_secs()) {
                Ok(headers) => headers,
                Err(error) => return DeliveryResult::permanent(None, error, started.elapsed()),
            };
        // The request is built from the URL the guard parsed and checked; a name in it is
        // checked again, address by address, by the client's resolver.
        let url = match self.guard.check_url(&config.url) {
            Ok(url) => url,
            Err(e) => return DeliveryResult::permanent(None, e.to_string(), started.elapsed()),
        };
        // A destination stored before the maximum was lowered is held to it too.
        let timeout = Duration::from_millis(config.timeout_ms.max(1)).min(self.max_timeout);
        let sent = self
            .client
            .post(url)
            .headers(headers)
            .timeout(timeout)
            .body(notification.payload.to_owned())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => {
                tracing::debug!(url = %config.url, error = %error_chain(&e), "webhook request failed");
                if let Some(refused) = refusal_in(&e).filter(|r| r.is_refusal()) {
                    return DeliveryResult::permanent(None, refused.to_string(), started.elapsed());
                }
                // Refused, unreachable and connect timeouts read the same: a tenant must not
                // learn which ports answer where.
                let error = if e.is_connect() {
                    "could not connect".to_owned()
                } else if e.is_timeout() {
                    format!("timed out after {} ms", timeout.as_millis())
                } else {
                    "request failed before a response arrived".to_owned()
                };
                return DeliveryResult::retryable(None, error, None, started.elapsed());
            }
        };
        let status = response.status();
        let code = status.as_u16();
        if status.is_success() {
            return DeliveryResult::delivered(Some(code), started.elapsed());
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_truncated(&mut response, MAX_ERROR_BODY_BYTES).await;
        tracing::debug!(url = %config.url, status = code, location, body, "webhook receiver refused a delivery");
        // Only the status: the receiver's words (and where it redirects) stay in the log.
        let mut error = format!("HTTP {status}");
        if status.is_redirection() {
            error.push_str(" (redirects are not followed)");
        }
        if PERMANENT_STATUSES.contains(&code) {
            DeliveryResult::permanent(Some(code), error, started.elapsed())
        } else {
            DeliveryResult::retryable(Some(code), error, retry_after, started.elapsed())
        }
    }
}

/// Builds the request headers; an error is a configuration problem (permanent).
fn request_headers(
    config: &WebhookConfig,
    msg_id: &str,
    payload: &str,
    timestamp_secs: i64,
) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in &config.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name {name:?} in webhook config"))?;
        if RESERVED_HEADERS.contains(&name.as_str()) {
            return Err(format!(
                "header {name} in webhook config is set by the HTTP client and cannot be overridden"
            ));
        }
        let value = value
            .inline()
            .ok_or_else(|| format!("header {name}: its stored secret was not resolved"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("invalid value for header {name} in webhook config"))?;
        headers.insert(name, value);
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let id = HeaderValue::from_str(msg_id)
        .map_err(|_| format!("notification id {msg_id:?} cannot be sent as a header"))?;
    headers.insert(HEADER_ID, id);
    headers.insert(HEADER_TIMESTAMP, HeaderValue::from(timestamp_secs));
    if let Some(secret) = &config.secret {
        let secret = secret
            .inline()
            .ok_or_else(|| "the stored signing secret was not resolved".to_owned())?;
        let signer = WebhookSigner::new(secret).map_err(|e| e.to_string())?;
        let signature = signer.sign(msg_id, timestamp_secs, payload);
        let value = HeaderValue::from_str(&signature)
            .map_err(|_| "signature is not a valid header value".to_owned())?;
        headers.insert(HEADER_SIGNATURE, value);
    }
    Ok(headers)
}

/// Reads at most `max` bytes of the response body as lossy UTF-8 (cut on a char boundary);
/// a body that fails mid-read yields what arrived.
async fn read_truncated(response: &mut reqwest::Response, max: usize) -> String {
    let mut buf = Vec::new();
    while buf.len() < max {
        match response.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let truncated = buf.len() > max;
    buf.truncate(max);
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    if truncated {
        // The cut may split a multi-byte char into a replacement char; drop it.
        if text.ends_with('\u{FFFD}') {
            text.pop();
        }
        text.push('…');
    }
    text.trim().to_owned()
}

/// Parses a `Retry-After` value: delay in seconds, or an HTTP-date (a past date means 0).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::from(at.with_timezone(&chrono::Utc));
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn parses_retry_after_seconds_and_http_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_717); // Sun, 06 Nov 1994 08:48:37 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
