//! Webhook sink: signed HTTP POSTs following the Standard Webhooks specification
//! (<https://www.standardwebhooks.com/>).
//!
//! Each request carries `webhook-id` (the notification id: receivers de-duplicate by it),
//! `webhook-timestamp` (Unix seconds) and, when the destination has a secret,
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
//!
//! Classification of a response, decided here once for every sender:
//! - 2xx: delivered.
//! - 400, 401, 403, 404, 410, 422: permanent — the receiver rejected this request or the
//!   endpoint does not exist; retrying the same bytes cannot help, so the delivery goes dead
//!   at once.
//! - everything else — 408, 425, 429, 5xx, 3xx (redirects are never followed: a signed POST
//!   must not be re-sent to a URL the tenant did not register), other 4xx — and connection
//!   errors and timeouts: retryable, honouring `Retry-After` (seconds or HTTP-date).

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LOCATION, RETRY_AFTER};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{DeliveryResult, SinkError};
use crate::secrets::SecretRef;

type HmacSha256 = Hmac<Sha256>;

/// Header carrying the message id (idempotency key).
pub const HEADER_ID: &str = "webhook-id";
/// Header carrying the send time in Unix seconds.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Header carrying the space-separated signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// Prefix of Standard Webhooks secrets.
const SECRET_PREFIX: &str = "whsec_";

/// Response bodies quoted in errors are cut to this many bytes.
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

fn default_timeout_ms() -> u64 {
    10_000
}

/// A credential in a destination's configuration: written inline (`"whsec_…"`), or named from
/// the tenant's secrets store (`{"secret": "shop-webhook"}`) and resolved by the sender just
/// before each delivery, so a rotated secret takes effect without touching the destination.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Credential {
    /// The value itself.
    Inline(String),
    /// A secret of the destination's tenant, by name.
    Stored(SecretRef),
}

impl Credential {
    /// The value, if it is inline (a stored one must be resolved first).
    pub fn inline(&self) -> Option<&str> {
        match self {
            Self::Inline(value) => Some(value),
            Self::Stored(_) => None,
        }
    }
}

impl From<&str> for Credential {
    fn from(value: &str) -> Self {
        Self::Inline(value.to_owned())
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Inline(_) => f.write_str("<redacted>"),
            Self::Stored(r) => write!(f, "secret {:?}", r.secret),
        }
    }
}

/// Configuration of a webhook destination (the stored destination's JSON).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http` or `https` URL receiving the POST.
    pub url: String,
    /// Signing secret, `whsec_<base64>` or raw base64, inline or from the secrets store;
    /// unsigned when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Credential>,
    /// Extra request headers (e.g. an `authorization` token, inline or from the secrets store).
    /// `content-type` and the `webhook-*` headers are always set by the sink and win over these.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Credential>,
    /// Whole-request timeout in milliseconds (default 10 000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl WebhookConfig {
    /// A config for `url` with no secret, no extra headers and the default timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            secret: None,
            headers: BTreeMap::new(),
            timeout_ms: default_timeout_ms(),
        }
    }

    /// Every credential of the config (the signing secret, then header values), for the
    /// sender to resolve stored ones in place.
    pub fn credentials_mut(&mut self) -> impl Iterator<Item = &mut Credential> {
        self.secret.iter_mut().chain(self.headers.values_mut())
    }
}

impl std::fmt::Debug for WebhookConfig {
    // The secret and header values (often tokens) stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// Signs and verifies Standard Webhooks messages with one secret.
#[derive(Clone)]
pub struct WebhookSigner {
    /// The keyed MAC, cloned for each message.
    keyed: HmacSha256,
}

impl std::fmt::Debug for WebhookSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSigner(<redacted>)")
    }
}

/// Why a received webhook failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A required header is absent or not text.
    #[error("missing or unreadable {0} header")]
    MissingHeader(&'static str),
    /// `webhook-timestamp` is not an integer.
    #[error("webhook-timestamp is not a Unix timestamp in seconds")]
    BadTimestamp,
    /// The timestamp is further from now than the tolerance (replay protection).
    #[error("webhook-timestamp is {skew_secs} s away from now, beyond the tolerance")]
    OutsideTolerance {
        /// Absolute distance from now, in seconds.
        skew_secs: u64,
    },
    /// No `v1` signature in the header matches the message.
    #[error("no webhook-signature matches the message")]
    NoMatchingSignature,
}

impl WebhookSigner {
    /// A signer for a `whsec_`-prefixed base64 secret, or a raw base64 one.
    pub fn new(secret: &str) -> Result<Self, SinkError> {
        let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
        let key = BASE64.decode(encoded.trim()).map_err(|e| {
            SinkError::InvalidSecret(format!("expected whsec_<base64> or base64: {e}"))
        })?;
        if key.is_empty() {
            return Err(SinkError::InvalidSecret("the secret is empty".to_owned()));
        }
        let keyed = HmacSha256::new_from_slice(&key)
            .map_err(|e| SinkError::InvalidSecret(format!("unusable key: {e}")))?;
        Ok(Self { keyed })
    }

    fn mac(&self, msg_id: &str, timestamp_secs: i64, body: &[u8]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp_secs.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `webhook-signature` value for a message: `v1,<base64 HMAC-SHA256>` over
    /// `"{msg_id}.{timestamp_secs}.{body}"`.
    pub fn sign(&self, msg_id: &str, timestamp_secs: i64, body: impl AsRef<[u8]>) -> String {
        let tag = self.mac(msg_id, timestamp_secs, body.as_ref()).finalize();
        format!("v1,{}", BASE64.encode(tag.into_bytes()))
    }

    /// Verifies a received message against the current clock: see [`WebhookSigner::verify_at`].
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        tolerance: Duration,
    ) -> Result<(), VerifyError> {
        self.verify_at(headers, body, tolerance, unix_now_secs())
    }

    /// Verifies a received message as of `now_secs`: the timestamp must be within `tolerance`
    /// of now, and at least one of the space-separated `v1,` signatures must match
    /// (compared in constant time; other versions are ignored).
    pub fn verify_at(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        tolerance: Duration,
        now_secs: i64,
    ) -> Result<(), VerifyError> {
        let text = |name: &'static str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or(VerifyError::MissingHeader(name))
        };
        let msg_id = text(HEADER_ID)?;
        let timestamp: i64 = text(HEADER_TIMESTAMP)?
            .trim()
            .parse()
            .map_err(|_| VerifyError::BadTimestamp)?;
        let signatures = text(HEADER_SIGNATURE)?;
        let skew_secs = now_secs.abs_diff(timestamp);
        if skew_secs > tolerance.as_secs() {
            return Err(VerifyError::OutsideTolerance { skew_secs });
        }
        let mac = self.mac(msg_id, timestamp, body);
        let matched = signatures
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|b64| BASE64.decode(b64).ok())
            .any(|sig| mac.clone().verify_slice(&sig).is_ok());
        if matched {
            Ok(())
        } else {
            Err(VerifyError::NoMatchingSignature)
        }
    }
}

fn unix_now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Delivers notifications as signed webhook POSTs. Cheap to clone (one shared client).
#[derive(Clone, Debug)]
pub struct WebhookSink {
    client: reqwest::Client,
}

impl WebhookSink {
    /// A sink with its own HTTP client: redirects disabled, 5 s connect timeout.
    pub fn new() -> Result<Self, SinkError> {
        let client = crate::http::client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("tidemark/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(SinkError::HttpClient)?;
        Ok(Self { client })
    }

    /// POSTs `payload` (JSON text) to `config.url` with `msg_id` as `webhook-id`, and
    /// classifies the outcome (see the module docs).
    pub async fn deliver(
        &self,
        config: &WebhookConfig,
        msg_id: &str,
        payload: &str,
    ) -> DeliveryResult {
        let started = Instant::now();
        let headers = match request_headers(config, msg_id, payload, unix_now_secs()) {
            Ok(headers) => headers,
            Err(error) => return DeliveryResult::permanent(None, error, started.elapsed()),
        };
        let url = match reqwest::Url::parse(&config.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => url,
            Ok(url) => {
                return DeliveryResult::permanent(
                    None,
                    format!("webhook url scheme {:?} is not http or https", url.scheme()),
                    started.elapsed(),
                );
            }
            Err(e) => {
                return DeliveryResult::permanent(
                    None,
                    format!("invalid webhook url {:?}: {e}", config.url),
                    started.elapsed(),
                );
            }
        };
        let timeout = Duration::from_millis(config.timeout_ms.max(1));
        let sent = self
            .client
            .post(url)
            .headers(headers)
            .timeout(timeout)
            .body(payload.to_owned())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => {
                let error = if e.is_timeout() {
                    format!("timed out after {} ms", timeout.as_millis())
                } else if e.is_connect() {
                    format!("connection failed: {}", error_chain(&e))
                } else {
                    format!("request failed: {}", error_chain(&e))
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
        let mut error = format!("HTTP {status}");
        if let Some(location) = location.filter(|_| status.is_redirection()) {
            error.push_str(&format!(" (redirect to {location} not followed)"));
        }
        if !body.is_empty() {
            error.push_str(": ");
            error.push_str(&body);
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

/// An error with its sources, e.g. "error sending request: connection refused".
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
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
    use super::*;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const MSG_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TIMESTAMP: i64 = 1_649_367_553;
    const BODY: &str = r#"{"email":"test@example.com","username":"test_user"}"#;
    const EXPECTED: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn headers(signature: &str, timestamp: i64) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER_ID, HeaderValue::from_static(MSG_ID));
        h.insert(HEADER_TIMESTAMP, HeaderValue::from(timestamp));
        h.insert(
            HEADER_SIGNATURE,
            HeaderValue::from_str(signature).expect("header"),
        );
        h
    }

    #[test]
    fn signs_the_standard_webhooks_test_vector() {
        let signer = WebhookSigner::new(SECRET).expect("secret");
        assert_eq!(signer.sign(MSG_ID, TIMESTAMP, BODY), EXPECTED);
        let raw = WebhookSigner::new(SECRET.trim_start_matches("whsec_")).expect("raw secret");
        assert_eq!(raw.sign(MSG_ID, TIMESTAMP, BODY), EXPECTED);
    }

    #[test]
    fn verifies_any_of_several_signatures_within_tolerance() {
        let signer = WebhookSigner::new(SECRET).expect("secret");
        let tolerance = Duration::from_secs(300);
        let several = format!("v1,bm90IGl0 v2,whatever {EXPECTED}");
        assert_eq!(
            signer.verify_at(
                &headers(&several, TIMESTAMP),
                BODY.as_bytes(),
                tolerance,
                TIMESTAMP + 299
            ),
            Ok(())
        );
        assert_eq!(
            signer.verify_at(
                &headers(EXPECTED, TIMESTAMP),
                BODY.as_bytes(),
                tolerance,
                TIMESTAMP + 301
            ),
            Err(VerifyError::OutsideTolerance { skew_secs: 301 })
        );
        assert_eq!(
            signer.verify_at(&headers(EXPECTED, TIMESTAMP), b"{}", tolerance, TIMESTAMP),
            Err(VerifyError::NoMatchingSignature)
        );
        let other = WebhookSigner::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
        assert_eq!(
            other.verify_at(
                &headers(EXPECTED, TIMESTAMP),
                BODY.as_bytes(),
                tolerance,
                TIMESTAMP
            ),
            Err(VerifyError::NoMatchingSignature)
        );
        let mut missing = headers(EXPECTED, TIMESTAMP);
        missing.remove(HEADER_ID);
        assert_eq!(
            signer.verify_at(&missing, BODY.as_bytes(), tolerance, TIMESTAMP),
            Err(VerifyError::MissingHeader(HEADER_ID))
        );
    }

    #[test]
    fn rejects_bad_secrets() {
        assert!(WebhookSigner::new("whsec_not base64!").is_err());
        assert!(WebhookSigner::new("whsec_").is_err());
    }

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

    #[test]
    fn config_debug_hides_secrets() {
        let mut config = WebhookConfig::new("https://example.com/hook");
        config.secret = Some(SECRET.into());
        config
            .headers
            .insert("authorization".to_owned(), "Bearer t0ken".into());
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("C2FV") && !shown.contains("t0ken"),
            "{shown}"
        );
    }
}
