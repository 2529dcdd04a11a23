//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>): what the sink sends, and
//! what a receiver checks.
//!
//! A signature is `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the
//! destination's secret (`whsec_<base64>` or raw base64). Receivers (the demo, the tests, a
//! tenant's own endpoint) verify with the same secret and reject stale timestamps.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use reqwest::header::HeaderMap;
use sha2::Sha256;

use crate::sinks::SinkError;

type HmacSha256 = Hmac<Sha256>;

/// Header carrying the message id (idempotency key).
pub const HEADER_ID: &str = "webhook-id";
/// Header carrying the send time in Unix seconds.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Header carrying the space-separated signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// Prefix of Standard Webhooks secrets.
const SECRET_PREFIX: &str = "whsec_";

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
        self.verify_at(headers, body, tolerance, crate::clock::now_secs())
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

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

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
}
