//! What can go wrong talking to the GA4 Data API, with a retry hint for callers.

use std::time::Duration;

/// A failed GA4 call.
#[derive(Debug, thiserror::Error)]
pub enum Ga4Error {
    /// The service-account key JSON is unusable (missing field, not PKCS#8 RSA…).
    #[error("GA4 service-account key is invalid: {0}")]
    Key(String),
    /// The token endpoint refused the signed JWT or answered nonsense.
    #[error("GA4 token exchange at {token_uri} failed: {message}")]
    Auth {
        /// Where the JWT was sent.
        token_uri: String,
        /// The endpoint's own explanation (OAuth `error` / `error_description`).
        message: String,
    },
    /// The request was refused before it was sent (e.g. more than 5 reports in one batch).
    #[error("invalid GA4 request: {0}")]
    InvalidRequest(String),
    /// The API answered with an error status other than a quota problem.
    #[error("GA4 {method} for {property} failed with HTTP {http_status} {status}: {message}")]
    Api {
        /// `runReport`, `batchRunReports` or `getMetadata`.
        method: &'static str,
        /// `properties/<id>`.
        property: String,
        /// The HTTP status code.
        http_status: u16,
        /// Google's canonical status (`INVALID_ARGUMENT`, `PERMISSION_DENIED`…).
        status: String,
        /// Google's message, which names the offending field.
        message: String,
    },
    /// The property's daily token quota is used up; retrying today will not help.
    #[error(
        "GA4 daily quota of {property} is exhausted ({message}); reports for this property \
         are unavailable until the quota resets at midnight Pacific time"
    )]
    DailyQuotaExhausted {
        /// `properties/<id>`.
        property: String,
        /// Google's message.
        message: String,
    },
    /// Still rate limited (HTTP 429 / RESOURCE_EXHAUSTED) after every backoff attempt.
    #[error(
        "GA4 {method} for {property} is still rate limited after {attempts} attempts over \
         {waited:?} ({message}); try again later or lower the request rate"
    )]
    RateLimited {
        /// The API method.
        method: &'static str,
        /// `properties/<id>`.
        property: String,
        /// How many requests were sent.
        attempts: u32,
        /// How long the client backed off in total.
        waited: Duration,
        /// Google's last message.
        message: String,
    },
    /// The connection failed or timed out.
    #[error("GA4 {method} request to {url} failed: {source}")]
    Transport {
        /// The API method (or `token`).
        method: &'static str,
        /// The URL.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The response did not have the documented shape.
    #[error("GA4 {method} response could not be decoded: {message}")]
    Decode {
        /// The API method.
        method: &'static str,
        /// What was wrong.
        message: String,
    },
}

impl Ga4Error {
    /// Whether the same call may succeed if tried again later.
    pub fn is_transient(&self) -> bool {
        match self {
            Ga4Error::RateLimited { .. } | Ga4Error::Transport { .. } => true,
            Ga4Error::Api { http_status, .. } => *http_status >= 500,
            _ => false,
        }
    }
}
