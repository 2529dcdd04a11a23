//! The destination kinds this build delivers to: a stored destination's kind to its config
//! parser and its sink.
//!
//! `KINDS` is the one list; adding a kind is one line there. A [`Destination`] is a stored
//! destination parsed for its kind — checked when it is defined, resolved (credentials, file
//! paths) under its own tenant before each delivery — and [`Sinks`] holds one sink of every
//! kind, built once per sender, to deliver any of them.

use std::any::Any;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;

use super::credential::{self, SecretLookup};
use super::{
    DeliveryResult, EmailSink, FileSink, FluvioSink, OutgoingNotification, Sink, SinkConfig,
    SinkError, SinkSettings, SlackSink, WebhookSink,
};
use crate::outbound::OutboundError;

/// Every destination kind, by the name destinations store, in the order errors list them.
static KINDS: &[Kind] = &[
    Kind::of::<WebhookSink>("webhook"),
    Kind::of::<FileSink>("file"),
    Kind::of::<EmailSink>("email"),
    Kind::of::<SlackSink>("slack"),
    Kind::of::<FluvioSink>("fluvio"),
];

/// One kind: its name, how its configuration is read, how its sink is built.
struct Kind {
    name: &'static str,
    parse: fn(&str) -> Result<Box<dyn SinkConfig>, serde_json::Error>,
    build: fn(&SinkSettings) -> Result<Box<dyn AnySink>, SinkError>,
}

impl Kind {
    /// The kind `name`, delivered by `S`.
    const fn of<S: Sink>(name: &'static str) -> Self {
        Self {
            name,
            parse: parse_config::<S>,
            build: build_sink::<S>,
        }
    }

    fn named(name: &str) -> Result<&'static Kind, SinkError> {
        KINDS
            .iter()
            .find(|kind| kind.name == name)
            .ok_or_else(|| SinkError::UnknownKind(name.to_owned()))
    }
}

fn parse_config<S: Sink>(config: &str) -> Result<Box<dyn SinkConfig>, serde_json::Error> {
    Ok(Box::new(serde_json::from_str::<S::Config>(config)?))
}

fn build_sink<S: Sink>(settings: &SinkSettings) -> Result<Box<dyn AnySink>, SinkError> {
    Ok(Box::new(S::build(settings)?))
}

/// The kinds as an error lists them: `"webhook", "file", "email", "slack" or "fluvio"`.
pub(super) fn expected_kinds() -> String {
    let quoted: Vec<String> = KINDS.iter().map(|k| format!("{:?}", k.name)).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// A [`Sink`] whose configuration type is left to the destination.
#[async_trait]
trait AnySink: Send + Sync {
    async fn deliver_any(
        &self,
        notification: &OutgoingNotification<'_>,
        config: &dyn SinkConfig,
    ) -> DeliveryResult;
}

#[async_trait]
impl<S: Sink> AnySink for S {
    async fn deliver_any(
        &self,
        notification: &OutgoingNotification<'_>,
        config: &dyn SinkConfig,
    ) -> DeliveryResult {
        let config: &dyn Any = config;
        match config.downcast_ref::<S::Config>() {
            Some(config) => self.deliver(notification, config).await,
            // A destination's config and its sink come from the same line of KINDS.
            None => DeliveryResult::permanent(
                None,
                "destination config does not fit its sink",
                Duration::ZERO,
            ),
        }
    }
}

/// A stored destination's configuration, parsed for its kind.
#[derive(Debug)]
pub struct Destination {
    kind: &'static str,
    config: Box<dyn SinkConfig>,
}

impl Destination {
    /// Parses a stored destination: `kind` is one of the registered kinds (`"webhook"`,
    /// `"file"`), `config` its JSON. Only the shape is checked: see [`Destination::validate`].
    pub fn parse(kind: &str, config: &str) -> Result<Self, SinkError> {
        let registered = Kind::named(kind)?;
        let config = (registered.parse)(config).map_err(|source| SinkError::InvalidConfig {
            kind: kind.to_owned(),
            source,
        })?;
        Ok(Self {
            kind: registered.name,
            config,
        })
    }

    /// The kind's name.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The configuration, when it is a `C`.
    pub fn config<C: SinkConfig>(&self) -> Option<&C> {
        let config: &dyn Any = self.config.as_ref();
        config.downcast_ref()
    }

    /// Checks what the configuration's types cannot, for a destination of `tenant` (see
    /// [`SinkConfig::validate`] and [`SinkConfig::check_tenant`]), so a destination that can
    /// never be delivered to is refused when it is defined.
    pub fn validate(&self, tenant: &str, settings: &SinkSettings) -> Result<(), SinkError> {
        self.config.validate(settings)?;
        self.config.check_tenant(tenant, settings)
    }

    /// Resolves every URL the destination connects to and checks every address through the
    /// outbound guard ([`SinkError::Outbound`] names the first refused). A name that does not
    /// resolve now passes: each delivery checks again.
    pub async fn check_outbound(&self, settings: &SinkSettings) -> Result<(), SinkError> {
        for (field, url) in self.config.outbound_urls() {
            match settings.outbound.check(&url).await {
                Ok(_) => {}
                Err(OutboundError::Unresolved { host, source }) => {
                    tracing::debug!(%host, error = %source, "destination host does not resolve now");
                }
                Err(source) => return Err(SinkError::Outbound { field, source }),
            }
        }
        Ok(())
    }

    /// Checks that every credential named from the secrets store exists for `tenant`
    /// ([`SinkError::UnknownSecret`] names the first that does not).
    pub async fn check_secrets(
        &mut self,
        tenant: &str,
        secrets: &dyn SecretLookup,
    ) -> Result<(), SinkError> {
        credential::check_known(self.config.credentials(), tenant, secrets).await
    }

    /// Makes the destination ready to deliver, under its own `tenant`: credentials named from
    /// the secrets store replaced by their values, files placed in `files_root/<tenant>/`.
    /// [`SinkError::is_transient`] tells an unavailable secrets store (try again later) from a
    /// destination that stays undeliverable (a deleted secret, a path out of bounds).
    pub async fn resolve(
        &mut self,
        tenant: &str,
        files_root: &Path,
        secrets: &dyn SecretLookup,
    ) -> Result<(), SinkError> {
        credential::resolve(self.config.credentials(), tenant, secrets).await?;
        self.config.confine(&files_root.join(tenant))
    }
}

/// A sink of every registered kind, ready to deliver to any [`Destination`].
pub struct Sinks {
    sinks: Vec<(&'static str, Box<dyn AnySink>)>,
}

impl std::fmt::Debug for Sinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds: Vec<&str> = self.sinks.iter().map(|(kind, _)| *kind).collect();
        f.debug_struct("Sinks").field("kinds", &kinds).finish()
    }
}

impl Sinks {
    /// Builds one sink of each kind under `settings` (one shared HTTP client, one file write
    /// lock).
    pub fn new(settings: &SinkSettings) -> Result<Self, SinkError> {
        let sinks = KINDS
            .iter()
            .map(|kind| Ok((kind.name, (kind.build)(settings)?)))
            .collect::<Result<_, SinkError>>()?;
        Ok(Self { sinks })
    }

    /// One attempt at delivering `notification` to `destination` (resolved: see
    /// [`Destination::resolve`]).
    pub async fn deliver(
        &self,
        destination: &Destination,
        notification: &OutgoingNotification<'_>,
    ) -> DeliveryResult {
        match self
            .sinks
            .iter()
            .find(|(kind, _)| *kind == destination.kind)
        {
            Some((_, sink)) => {
                sink.deliver_any(notification, destination.config.as_ref())
                    .await
            }
            // Every registered kind has a sink: Sinks::new builds them from the same list.
            None => DeliveryResult::permanent(
                None,
                format!("no sink for destination kind {:?}", destination.kind),
                Duration::ZERO,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::credential::tests::SecretMap;
    use crate::sinks::{FileConfig, WebhookConfig};

    #[test]
    fn parses_known_kinds_and_names_bad_fields() {
        let webhook =
            Destination::parse("webhook", r#"{"url":"https://example.com/h"}"#).expect("webhook");
        assert!(
            webhook
                .config::<WebhookConfig>()
                .is_some_and(|c| c.url == "https://example.com/h")
        );
        let file = Destination::parse("file", r#"{"path":"-"}"#).expect("file");
        assert_eq!(
            file.config::<FileConfig>(),
            Some(&FileConfig {
                path: "-".to_owned()
            })
        );

        let err =
            Destination::parse("webhook", r#"{"url":"x","urll":"y"}"#).expect_err("unknown field");
        assert!(err.to_string().contains("urll"), "{err}");
        let err = Destination::parse("kafka", "{}").expect_err("unknown kind");
        assert!(matches!(err, SinkError::UnknownKind(_)));
        assert_eq!(
            err.to_string(),
            r#"unknown destination kind "kafka"; expected "webhook", "file", "email", "slack" or "fluvio""#
        );
    }

    #[tokio::test]
    async fn resolves_credentials_and_paths_under_the_destinations_tenant() {
        let secrets = SecretMap::with(&[("a", "hook", "whsec_a"), ("a", "token", "Bearer t")]);
        let stored = r#"{"url":"https://example.com/h","secret":{"secret":"hook"},"headers":{"authorization":{"secret":"token"}}}"#;
        let mut webhook = Destination::parse("webhook", stored).expect("webhook");
        webhook.check_secrets("a", &secrets).await.expect("known");
        webhook
            .resolve("a", Path::new("/files"), &secrets)
            .await
            .expect("resolved");
        let config = webhook.config::<WebhookConfig>().expect("webhook");
        assert_eq!(
            config.secret.as_ref().and_then(|c| c.inline()),
            Some("whsec_a")
        );
        assert_eq!(config.headers["authorization"].inline(), Some("Bearer t"));

        let mut other = Destination::parse("webhook", stored).expect("webhook");
        let err = other.check_secrets("b", &secrets).await.expect_err("b's");
        assert_eq!(err.field(), Some("config.secret"));

        let mut file = Destination::parse("file", r#"{"path":"out/n.jsonl"}"#).expect("file");
        file.resolve("a", Path::new("/files"), &secrets)
            .await
            .expect("inside");
        assert_eq!(
            file.config::<FileConfig>().map(|c| c.path.as_str()),
            Some("/files/a/out/n.jsonl")
        );
    }
}
