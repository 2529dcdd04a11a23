//! A webhook destination's configuration: the receiving URL, the signing secret and extra
//! headers (each inline or named from the tenant's secrets store), and the request timeout
//! (at most the deployment's [`SinkSettings::max_timeout`]). The URL goes through the outbound
//! guard ([`crate::outbound`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::WebhookSigner;
use crate::sinks::{Credential, SinkConfig, SinkError, SinkSettings};

fn default_timeout_ms() -> u64 {
    10_000
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
    /// Whole-request timeout in milliseconds (default 10 000; at most the deployment's
    /// maximum, 30 000 unless configured).
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
}

impl SinkConfig for WebhookConfig {
    /// The URL must be `http(s)://…` and pass the outbound guard's checks that need no
    /// resolution ([`Destination::check_outbound`](crate::sinks::Destination::check_outbound)
    /// resolves it), the timeout must be within the maximum, and an inline secret must be one
    /// the signer takes; a stored secret is checked when it is resolved.
    fn validate(&self, settings: &SinkSettings) -> Result<(), SinkError> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(SinkError::InvalidField {
                field: "config.url".to_owned(),
                reason: format!("'{}' is not an http(s) URL", self.url),
            });
        }
        settings
            .outbound
            .check_url(&self.url)
            .map_err(|source| SinkError::Outbound {
                field: "config.url".to_owned(),
                source,
            })?;
        let max_ms = settings.max_timeout.as_millis();
        if u128::from(self.timeout_ms) > max_ms {
            return Err(SinkError::InvalidField {
                field: "config.timeout_ms".to_owned(),
                reason: format!("{} ms is above the maximum of {max_ms} ms", self.timeout_ms),
            });
        }
        if let Some(secret) = self.secret.as_ref().and_then(Credential::inline) {
            WebhookSigner::new(secret).map_err(|e| SinkError::InvalidField {
                field: "config.secret".to_owned(),
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }

    fn outbound_urls(&self) -> Vec<(String, String)> {
        vec![("config.url".to_owned(), self.url.clone())]
    }

    /// The signing secret, then the header values by header name.
    fn credentials(&mut self) -> Vec<(String, &mut Credential)> {
        let secret = self
            .secret
            .iter_mut()
            .map(|credential| ("config.secret".to_owned(), credential));
        let headers = self
            .headers
            .iter_mut()
            .map(|(name, credential)| (format!("config.headers.{name}"), credential));
        secret.chain(headers).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

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

    #[test]
    fn validation_names_the_field() {
        let settings = SinkSettings::default();
        let field = |config: &WebhookConfig| {
            config
                .validate(&settings)
                .err()
                .and_then(|e| e.field().map(str::to_owned))
        };
        let mut config = WebhookConfig::new("https://example.com/hook");
        config.secret = Some(SECRET.into());
        assert_eq!(field(&config), None);
        config.secret = Some("whsec_not base64!".into());
        assert_eq!(field(&config).as_deref(), Some("config.secret"));
        assert_eq!(
            field(&WebhookConfig::new("ftp://example.com/hook")).as_deref(),
            Some("config.url")
        );
        let err = WebhookConfig::new("ftp://example.com/hook")
            .validate(&settings)
            .expect_err("not http");
        assert_eq!(
            err.to_string(),
            "config.url: 'ftp://example.com/hook' is not an http(s) URL"
        );
        let err = WebhookConfig::new("http://127.1:8080/hook")
            .validate(&settings)
            .expect_err("loopback");
        assert_eq!(
            err.to_string(),
            "config.url: 'http://127.1:8080/hook' is refused: 127.0.0.1 is a loopback address"
        );
        let mut slow = WebhookConfig::new("https://example.com/hook");
        slow.timeout_ms = 3_600_000;
        assert_eq!(field(&slow).as_deref(), Some("config.timeout_ms"));
        assert_eq!(
            slow.validate(&settings).expect_err("too long").to_string(),
            "config.timeout_ms: 3600000 ms is above the maximum of 30000 ms"
        );
        slow.timeout_ms = 30_000;
        assert_eq!(field(&slow), None);
    }
}
