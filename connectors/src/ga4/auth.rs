//! Service-account authentication: an RS256-signed JWT exchanged at the key's token URI for a
//! bearer token, cached and refreshed shortly before it expires.
//!
//! See Google's "Using OAuth 2.0 for Server to Server Applications": the JWT's `iss` is the
//! service account's e-mail, `scope` the read-only Analytics scope, `aud` the token URI, and it
//! is valid for at most one hour.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::error::Ga4Error;

/// The OAuth scope every GA4 report needs.
pub const SCOPE: &str = "https://www.googleapis.com/auth/analytics.readonly";

/// How long a signed JWT is valid (Google's maximum).
const JWT_LIFETIME: Duration = Duration::from_secs(3600);

/// A token is refreshed once it has less than this left, so no request carries a token that
/// expires in flight.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// A Google service-account key (the JSON file the Cloud console hands out), as resolved from
/// the secrets store.
#[derive(Clone, Deserialize)]
pub struct ServiceAccountKey {
    /// The account's e-mail: the JWT's issuer.
    pub client_email: String,
    /// The key id, sent as the JWT header's `kid`.
    #[serde(default)]
    pub private_key_id: Option<String>,
    /// PKCS#8 PEM.
    private_key: String,
    /// Where JWTs are exchanged for tokens (also the JWT's audience).
    pub token_uri: String,
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("private_key", &"<redacted>")
            .field("token_uri", &self.token_uri)
            .finish()
    }
}

impl ServiceAccountKey {
    /// Parses a key file's JSON.
    pub fn from_json(json: &[u8]) -> Result<Self, Ga4Error> {
        let key: ServiceAccountKey = serde_json::from_slice(json)
            .map_err(|e| Ga4Error::Key(format!("not a service-account key JSON: {e}")))?;
        if key.client_email.is_empty() {
            return Err(Ga4Error::Key("`client_email` is empty".into()));
        }
        if !key.token_uri.starts_with("http") {
            return Err(Ga4Error::Key(format!(
                "`token_uri` {:?} is not an http(s) URL",
                key.token_uri
            )));
        }
        key.signer()?;
        Ok(key)
    }

    fn signer(&self) -> Result<RsaKeyPair, Ga4Error> {
        let der = pem_body(&self.private_key, "PRIVATE KEY")?;
        RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| Ga4Error::Key(format!("`private_key` is not a PKCS#8 RSA key: {e}")))
    }

    /// A signed JWT assertion for the token exchange, issued at `now`.
    pub fn assertion(&self, now: SystemTime) -> Result<String, Ga4Error> {
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| Ga4Error::Key("the system clock is before 1970".into()))?
            .as_secs();
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = kid.clone().into();
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": iat,
            "exp": iat + JWT_LIFETIME.as_secs(),
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let key = self.signer()?;
        let mut signature = vec![0; key.public().modulus_len()];
        key.sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            signing_input.as_bytes(),
            &mut signature,
        )
        .map_err(|_| Ga4Error::Key("RS256 signing failed".into()))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// The DER body of the PEM block labelled `label`.
fn pem_body(pem: &str, label: &str) -> Result<Vec<u8>, Ga4Error> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem
        .find(&begin)
        .ok_or_else(|| Ga4Error::Key(format!("`private_key` has no `{begin}` line")))?;
    let rest = &pem[start + begin.len()..];
    let stop = rest
        .find(&end)
        .ok_or_else(|| Ga4Error::Key(format!("`private_key` has no `{end}` line")))?;
    let b64: String = rest[..stop].split_whitespace().collect();
    STANDARD
        .decode(b64)
        .map_err(|e| Ga4Error::Key(format!("`private_key` is not valid base64: {e}")))
}

#[derive(Clone)]
struct CachedToken {
    token: String,
    expires_at: Instant,
}

/// Bearer tokens for one service account, fetched on demand and cached.
pub struct TokenSource {
    key: ServiceAccountKey,
    http: reqwest::Client,
    cached: Mutex<Option<CachedToken>>,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("client_email", &self.key.client_email)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct TokenError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

impl TokenSource {
    /// A token source for `key`.
    pub fn new(key: ServiceAccountKey, http: reqwest::Client) -> Self {
        TokenSource {
            key,
            http,
            cached: Mutex::new(None),
        }
    }

    /// A valid bearer token: the cached one unless it is about to expire.
    pub async fn token(&self) -> Result<String, Ga4Error> {
        // Held across the exchange so concurrent callers wait for one exchange, not race.
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && c.expires_at > Instant::now() + REFRESH_MARGIN
        {
            return Ok(c.token.clone());
        }
        let fresh = self.exchange().await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// Forgets the cached token (after the API rejected it).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn exchange(&self) -> Result<CachedToken, Ga4Error> {
        let uri = &self.key.token_uri;
        let assertion = self.key.assertion(SystemTime::now())?;
        let started = Instant::now();
        // Base64url and dots need no form escaping; only the grant type does.
        let body = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
        );
        let transport = |source| Ga4Error::Transport {
            method: "token",
            url: uri.clone(),
            source,
        };
        let response = self
            .http
            .post(uri)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let text = response.text().await.map_err(transport)?;
        let auth_error = |message: String| Ga4Error::Auth {
            token_uri: uri.clone(),
            message,
        };
        if !status.is_success() {
            let message = match serde_json::from_str::<TokenError>(&text) {
                Ok(e) => match e.error_description {
                    Some(d) => format!("HTTP {status}: {}: {d}", e.error),
                    None => format!("HTTP {status}: {}", e.error),
                },
                Err(_) => format!("HTTP {status}: {}", truncate(&text)),
            };
            return Err(auth_error(message));
        }
        let token: TokenResponse = serde_json::from_str(&text)
            .map_err(|e| auth_error(format!("unexpected token response: {e}")))?;
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(3600));
        tracing::debug!(
            client_email = %self.key.client_email,
            lifetime_seconds = lifetime.as_secs(),
            "GA4 access token obtained"
        );
        Ok(CachedToken {
            token: token.access_token,
            expires_at: started + lifetime,
        })
    }
}

pub(crate) fn truncate(text: &str) -> &str {
    match text.char_indices().nth(300) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}
