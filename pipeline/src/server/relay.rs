//! Passing an HTTP request on to another server and its answer back: how a server standing by
//! on a shared store reaches the running one ([`super::standby`]), and how a process of a
//! cluster reaches the process that owns a tenant ([`super::cluster`]).
//!
//! A relayed request carries [`FORWARDED`], so the server it reaches serves it itself and never
//! passes it on again.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, header};
use axum::response::Response;

/// The header a relayed request carries.
pub(super) const FORWARDED: &str = "x-tidemark-forwarded";

/// How long a relayed request may take (a report preview or a large query included).
pub(super) const RELAY_TIMEOUT: Duration = Duration::from_secs(300);

/// The HTTP client requests are relayed with: no redirects followed (the client gets them).
pub(super) fn relay_client() -> reqwest::Result<reqwest::Client> {
    connectors::http::client_builder()
        .timeout(RELAY_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// Why a request could not be relayed.
#[derive(Debug, thiserror::Error)]
pub(super) enum RelayError {
    /// The other server did not answer.
    #[error("no answer: {0}")]
    Unanswered(#[source] reqwest::Error),
    /// Its answer broke off.
    #[error("the answer broke off: {0}")]
    BrokeOff(#[source] reqwest::Error),
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) and the ones the client recomputes.
fn passes(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

/// Sends the request (`parts` and its whole `body`) to the server at `base` and returns its
/// answer as this server's.
pub(super) async fn relay(
    http: &reqwest::Client,
    base: &str,
    parts: Parts,
    body: Bytes,
) -> Result<Response, RelayError> {
    let target = format!(
        "{}{}",
        base.trim_end_matches('/'),
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if passes(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(FORWARDED, header::HeaderValue::from_static("1"));
    let answer = http
        .request(parts.method, &target)
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(RelayError::Unanswered)?;
    let status = answer.status();
    let mut response_headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if passes(name) {
            response_headers.append(name.clone(), value.clone());
        }
    }
    let bytes = answer.bytes().await.map_err(RelayError::BrokeOff)?;
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = response_headers;
    Ok(response)
}
