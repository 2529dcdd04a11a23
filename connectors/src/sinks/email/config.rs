//! An email destination's configuration: the SMTP relay (host, port, TLS mode), the login
//! (username, and a password inline or named from the tenant's secrets store), the sender and
//! default recipients, optional `Reply-To` and `List-Id`, and the timeout (at most the
//! deployment's [`SinkSettings::max_timeout`]). The relay goes through the outbound guard
//! ([`crate::outbound`]) as `smtp://host:port`.

use lettre::message::Mailbox;
use serde::{Deserialize, Serialize};

use crate::sinks::{Credential, SinkConfig, SinkError, SinkSettings};

fn default_timeout_ms() -> u64 {
    10_000
}

/// How the connection to the relay is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with `STARTTLS`, which the relay must offer (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte, "SMTPS" (port 465).
    Tls,
    /// No encryption at all (port 25): only for a relay on the operator's own network or
    /// machine, since the password and the messages cross the network readable.
    None,
}

impl SmtpTls {
    /// The port a relay usually listens on in this mode.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Starttls => 587,
            Self::Tls => 465,
            Self::None => 25,
        }
    }
}

/// Configuration of an email destination (the stored destination's JSON).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The SMTP relay's host name or address.
    pub host: String,
    /// Its port; by default the usual one for `tls` (587, 465 or 25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `starttls` (default), `tls` (implicit) or `none` (plaintext, for local relays).
    #[serde(default)]
    pub tls: SmtpTls,
    /// The login name, when the relay wants one (then with `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The login password, inline or from the secrets store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Credential>,
    /// The sender, `"Shop alerts <alerts@shop.example>"` or `alerts@shop.example`; its domain
    /// names the `Message-ID`s.
    pub from: String,
    /// Recipients of notifications whose payload names none (`recipient`); each gets a message
    /// of their own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    /// Where replies go, when not to `from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// A `List-Id` (`"Tidemark alerts <alerts.shop.example>"` or `alerts.shop.example`), so mail
    /// clients can filter the notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_id: Option<String>,
    /// Timeout of one message's SMTP exchange in milliseconds (default 10 000; at most the
    /// deployment's maximum, 30 000 unless configured).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl EmailConfig {
    /// A config sending from `from` to `to` through `host` with STARTTLS on port 587, no login,
    /// the default timeout.
    pub fn new(host: impl Into<String>, from: impl Into<String>, to: &[&str]) -> Self {
        Self {
            host: host.into(),
            port: None,
            tls: SmtpTls::default(),
            username: None,
            password: None,
            from: from.into(),
            to: to.iter().map(|t| (*t).to_owned()).collect(),
            reply_to: None,
            list_id: None,
            timeout_ms: default_timeout_ms(),
        }
    }

    /// The port connected to.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(self.tls.default_port())
    }

    /// The host as the connection reads it: a name in lowercase, an IPv4 address in dotted
    /// form (numeric shorthands normalised), an IPv6 address without brackets.
    pub fn normalized_host(&self) -> Result<String, SinkError> {
        let invalid = || SinkError::InvalidField {
            field: "config.host".to_owned(),
            reason: format!(
                "'{}' is not a host name or address (only the host: no scheme, port or path)",
                self.host
            ),
        };
        let host = self.host.trim();
        if host.is_empty()
            || host.contains(['/', '@', '?', '#', '\\'])
            || host.contains(char::is_whitespace)
        {
            return Err(invalid());
        }
        // The URL parser normalises hosts as every HTTP client does; an IPv6 address keeps
        // its brackets there.
        let url = reqwest::Url::parse(&format!("http://{host}/")).map_err(|_| invalid())?;
        if url.port().is_some() {
            return Err(invalid());
        }
        let parsed = url.host_str().ok_or_else(invalid)?;
        Ok(parsed
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(parsed)
            .to_owned())
    }

    /// The relay as the outbound guard checks it: `smtp://host:port`.
    pub fn relay_url(&self) -> String {
        let host = self.normalized_host().unwrap_or_else(|_| self.host.clone());
        if host.contains(':') {
            format!("smtp://[{host}]:{}", self.port())
        } else {
            format!("smtp://{host}:{}", self.port())
        }
    }

    /// The sender as a mailbox.
    pub fn from_mailbox(&self) -> Result<Mailbox, SinkError> {
        mailbox("config.from", &self.from)
    }

    /// The default recipients as mailboxes.
    pub fn to_mailboxes(&self) -> Result<Vec<Mailbox>, SinkError> {
        self.to
            .iter()
            .enumerate()
            .map(|(i, to)| mailbox(&format!("config.to[{i}]"), to))
            .collect()
    }

    /// The `Reply-To` mailbox, when there is one.
    pub fn reply_to_mailbox(&self) -> Result<Option<Mailbox>, SinkError> {
        self.reply_to
            .as_deref()
            .map(|r| mailbox("config.reply_to", r))
            .transpose()
    }

    /// The `List-Id` header's value: `<label>` with an optional phrase before it.
    pub fn list_id_value(&self) -> Result<Option<String>, SinkError> {
        let Some(list_id) = self.list_id.as_deref().map(str::trim) else {
            return Ok(None);
        };
        let invalid = |reason: &str| SinkError::InvalidField {
            field: "config.list_id".to_owned(),
            reason: format!("'{list_id}' {reason}"),
        };
        if list_id.is_empty() || list_id.contains(['\r', '\n']) || !list_id.is_ascii() {
            return Err(invalid(
                "must be one line of ASCII, like 'Alerts <alerts.shop.example>'",
            ));
        }
        let label = match (list_id.find('<'), list_id.strip_suffix('>')) {
            (Some(open), Some(inner)) => &inner[open + 1..],
            (None, None) => list_id,
            _ => return Err(invalid("has unbalanced angle brackets")),
        };
        // RFC 2919: the label is a dot-atom with at least one dot (a domain under the sender's
        // control).
        let dot_atom = !label.is_empty()
            && label.contains('.')
            && label.split('.').all(|atom| {
                !atom.is_empty()
                    && atom
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c))
            });
        if !dot_atom {
            return Err(invalid("needs a label like 'alerts.shop.example'"));
        }
        Ok(Some(if list_id.contains('<') {
            list_id.to_owned()
        } else {
            format!("<{list_id}>")
        }))
    }
}

/// `text` as a mailbox (`Name <a@b>` or `a@b`), or the field's error.
fn mailbox(field: &str, text: &str) -> Result<Mailbox, SinkError> {
    text.trim()
        .parse::<Mailbox>()
        .map_err(|e| SinkError::InvalidField {
            field: field.to_owned(),
            reason: format!("'{text}' is not an email address: {e}"),
        })
}

impl SinkConfig for EmailConfig {
    /// The host must be a host (no scheme or port) the outbound guard allows without
    /// resolving it ([`Destination::check_outbound`](crate::sinks::Destination::check_outbound)
    /// resolves it), every address must parse, username and password come together, and the
    /// timeout must be within the maximum.
    fn validate(&self, settings: &SinkSettings) -> Result<(), SinkError> {
        self.normalized_host()?;
        settings
            .outbound
            .check_url(&self.relay_url())
            .map_err(|source| SinkError::Outbound {
                field: "config.host".to_owned(),
                source,
            })?;
        if self.port == Some(0) {
            return Err(SinkError::InvalidField {
                field: "config.port".to_owned(),
                reason: "0 is not a port".to_owned(),
            });
        }
        self.from_mailbox()?;
        self.to_mailboxes()?;
        self.reply_to_mailbox()?;
        self.list_id_value()?;
        match (&self.username, &self.password) {
            (Some(_), None) => {
                return Err(SinkError::InvalidField {
                    field: "config.password".to_owned(),
                    reason: "a username needs a password".to_owned(),
                });
            }
            (None, Some(_)) => {
                return Err(SinkError::InvalidField {
                    field: "config.username".to_owned(),
                    reason: "a password needs a username".to_owned(),
                });
            }
            _ => {}
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

    /// The relay, as `smtp://host:port`.
    fn outbound_urls(&self) -> Vec<(String, String)> {
        vec![("config.host".to_owned(), self.relay_url())]
    }

    /// The password.
    fn credentials(&mut self) -> Vec<(String, &mut Credential)> {
        self.password
            .iter_mut()
            .map(|credential| ("config.password".to_owned(), credential))
            .collect()
    }
}

impl std::fmt::Debug for EmailConfig {
    // The password stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConfig")
            .field("host", &self.host)
            .field("port", &self.port())
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("reply_to", &self.reply_to)
            .field("list_id", &self.list_id)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}
