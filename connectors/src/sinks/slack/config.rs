//! A Slack destination's configuration: the bot token (inline or named from the tenant's
//! secrets store), the channel id, the Web API's base URL (Slack's own unless a test points it
//! elsewhere; through the outbound guard) and the timeout of each call.

use serde::{Deserialize, Serialize};

use crate::sinks::{Credential, SinkConfig, SinkError, SinkSettings};

/// Slack's Web API.
pub const DEFAULT_API_BASE: &str = "https://slack.com/api";

fn default_api_base() -> String {
    DEFAULT_API_BASE.to_owned()
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// Configuration of a Slack destination (the stored destination's JSON).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The bot token (`xoxb-…`), inline or from the secrets store.
    pub token: Credential,
    /// The channel's id (`C0123ABCD`), not its name: names change, ids do not.
    pub channel: String,
    /// The Web API's base URL (default `https://slack.com/api`).
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// Timeout of each API call in milliseconds (default 10 000; at most the deployment's
    /// maximum, 30 000 unless configured).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl SlackConfig {
    /// A config posting to `channel` with `token` through Slack's own API.
    pub fn new(token: impl Into<Credential>, channel: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            channel: channel.into(),
            api_base: default_api_base(),
            timeout_ms: default_timeout_ms(),
        }
    }
}

impl SinkConfig for SlackConfig {
    /// The API base must be `http(s)` and pass the outbound guard's checks that need no
    /// resolution, the channel must look like an id, an inline token like a Slack token, and
    /// the timeout must be within the maximum.
    fn validate(&self, settings: &SinkSettings) -> Result<(), SinkError> {
        if !(self.api_base.starts_with("https://") || self.api_base.starts_with("http://")) {
            return Err(SinkError::InvalidField {
                field: "config.api_base".to_owned(),
                reason: format!("'{}' is not an http(s) URL", self.api_base),
            });
        }
        settings
            .outbound
            .check_url(&self.api_base)
            .map_err(|source| SinkError::Outbound {
                field: "config.api_base".to_owned(),
                source,
            })?;
        let id_like = !self.channel.is_empty()
            && self
                .channel
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if !id_like {
            return Err(SinkError::InvalidField {
                field: "config.channel".to_owned(),
                reason: format!(
                    "'{}' is not a channel id (like C0123ABCD; a channel's id is in its details)",
                    self.channel
                ),
            });
        }
        if let Some(token) = self.token.inline()
            && !token.starts_with("xox")
        {
            return Err(SinkError::InvalidField {
                field: "config.token".to_owned(),
                reason: "not a Slack token (a bot token starts with xoxb-)".to_owned(),
            });
        }
        let max_ms = settings.max_timeout.as_millis();
        if u128::from(self.timeout_ms) > max_ms {
            return Err(SinkError::InvalidField {
                field: "config.timeout_ms".to_owned(),
                reason: format!("{} ms is above the maximum of {max_ms} ms", self.timeout_ms),
            });
        }
        Ok(())
    }

    fn outbound_urls(&self) -> Vec<(String, String)> {
        vec![("config.api_base".to_owned(), self.api_base.clone())]
    }

    /// The token.
    fn credentials(&mut self) -> Vec<(String, &mut Credential)> {
        vec![("config.token".to_owned(), &mut self.token)]
    }
}

impl std::fmt::Debug for SlackConfig {
    // The token stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackConfig")
            .field("token", &self.token)
            .field("channel", &self.channel)
            .field("api_base", &self.api_base)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let settings = SinkSettings::default();
        let field = |config: &SlackConfig| {
            config
                .validate(&settings)
                .err()
                .and_then(|e| e.field().map(str::to_owned))
        };
        let config = SlackConfig::new("xoxb-1", "C0123ABCD");
        assert_eq!(field(&config), None);
        assert_eq!(
            field(&SlackConfig::new("xoxb-1", "#general")).as_deref(),
            Some("config.channel")
        );
        assert_eq!(
            field(&SlackConfig::new("hunter2", "C1")).as_deref(),
            Some("config.token")
        );
        let mut internal = config.clone();
        internal.api_base = "http://10.0.0.1/api".to_owned();
        assert_eq!(field(&internal).as_deref(), Some("config.api_base"));
        assert!(!format!("{config:?}").contains("xoxb-1"));
    }
}
