//! Delivering notifications to destinations.
//!
//! One folder per sink kind, each with the same files — `config.rs` (the destination's stored
//! JSON: serde types, [`SinkConfig::validate`], the credentials it holds) and `sink.rs` (the
//! protocol: one attempt → a [`DeliveryResult`]) — so a reader guesses the path right:
//! [`webhook`] (Standard Webhooks signing, in `webhook/signer.rs`), [`email`] (SMTP),
//! [`slack`] (the Web API), [`fluvio`] (a record on the operator's Fluvio cluster) and
//! [`file`](mod@file) (JSON lines). Beside them: [`message`] (the payload as the sinks that show
//! a person a message read it: subject, text, HTML, attachments, recipient), [`credential`]
//! (inline or stored credentials, resolved under the destination's own tenant), [`registry`]
//! (which kinds exist: a stored destination's kind to its config parser and its sink) and
//! [`retry`], the backoff policy a sender applies between attempts.
//!
//! A sink never returns an error: every attempt ends in a [`DeliveryResult`] that says whether
//! the notification arrived, may arrive if tried again, or never will. Adding a kind is a folder
//! implementing [`Sink`] and [`SinkConfig`] plus one line in [`registry`].
//!
//! Every URL or host a destination names is the tenant's choice, so it goes through the
//! [`crate::outbound`] guard: when the destination is defined ([`SinkConfig::validate`],
//! [`Destination::check_outbound`]) and again by the sink at every delivery. [`SinkSettings`]
//! carries the guard and the deployment's limits to both.
//!
//! Every delivery carries the notification id as its idempotency key (`webhook-id` header,
//! `id` field, an email's `Message-ID`, a Fluvio record's key; Slack has none, see [`slack`]), because delivery is at-least-once: a sender that dies after the receiver
//! accepted but before the outcome was recorded will deliver again.

pub mod credential;
pub mod email;
pub mod file;
pub mod fluvio;
pub mod message;
pub mod registry;
pub mod retry;
pub mod slack;
pub mod webhook;

use std::any::Any;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;

use crate::outbound::{OutboundError, OutboundGuard};
use crate::secrets::SecretsError;

pub use credential::{Credential, SecretLookup};
pub use email::{EmailConfig, EmailSink};
pub use file::{FileConfig, FileSink};
pub use fluvio::{FluvioConfig, FluvioSettings, FluvioSink};
pub use message::Message;
pub use registry::{Destination, Sinks};
pub use retry::RetryPolicy;
pub use slack::{SlackConfig, SlackSink};
pub use webhook::{VerifyError, WebhookConfig, WebhookSigner, WebhookSink};

/// What every sink and every destination check shares: where deliveries may connect, and the
/// deployment's limits on what a destination may ask for.
#[derive(Clone, Debug)]
pub struct SinkSettings {
    /// The guard every tenant-supplied URL or host goes through.
    pub outbound: OutboundGuard,
    /// The longest request timeout a destination may set (`timeout_ms`); a longer one is
    /// refused when the destination is defined and cut to this at delivery.
    pub max_timeout: Duration,
    /// The operator's Fluvio cluster (`[sinks.fluvio]`); without one, Fluvio destinations are
    /// refused.
    pub fluvio: Option<FluvioSettings>,
    /// Fluvio topics no destination may name: the topics this server reads events from.
    pub reserved_topics: Vec<String>,
}

impl Default for SinkSettings {
    /// Public addresses only; requests of at most 30 s; no Fluvio cluster.
    fn default() -> Self {
        Self {
            outbound: OutboundGuard::default(),
            max_timeout: Duration::from_secs(30),
            fluvio: None,
            reserved_topics: Vec::new(),
        }
    }
}

/// What a sink is asked to deliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutgoingNotification<'a> {
    /// The tenant the notification (and its destination) belongs to.
    pub tenant: &'a str,
    /// The notification id: the idempotency key every sink passes on.
    pub id: &'a str,
    /// The rendered notification, JSON text.
    pub payload: &'a str,
}

/// One kind of destination: how a notification reaches it.
///
/// The registry holds one of each kind per sender and hands it the destination's parsed
/// configuration, so a sink keeps only what deliveries share (an HTTP client, a write lock).
#[async_trait]
pub trait Sink: Send + Sync + Sized + 'static {
    /// Its destinations' configuration, as stored (JSON).
    type Config: SinkConfig + DeserializeOwned;

    /// A sink ready to deliver under `settings`: clients built, shared state set up.
    fn build(settings: &SinkSettings) -> Result<Self, SinkError>;

    /// One attempt at delivering `notification` to the destination `config` describes, its
    /// stored credentials already resolved. Every failure is classified in the result.
    async fn deliver(
        &self,
        notification: &OutgoingNotification<'_>,
        config: &Self::Config,
    ) -> DeliveryResult;
}

/// A destination kind's configuration: what its types cannot check, and the credentials it
/// holds.
pub trait SinkConfig: Any + std::fmt::Debug + Send + Sync {
    /// Checks what serde cannot (URL schemes, secret formats, paths, limits in `settings`, the
    /// outbound guard's checks that need no resolution); an error names the field as the
    /// destination shows it (`config.url`) and says why.
    fn validate(&self, settings: &SinkSettings) -> Result<(), SinkError>;

    /// Checks what depends on whose destination it is, `tenant`'s (a Fluvio topic must start
    /// with the tenant's prefix); an error names the field like [`SinkConfig::validate`]'s.
    /// Kinds whose configuration means the same for every tenant have nothing to check.
    fn check_tenant(&self, _tenant: &str, _settings: &SinkSettings) -> Result<(), SinkError> {
        Ok(())
    }

    /// Every URL it connects to that the tenant chose, each with its field (`config.url`):
    /// what [`Destination::check_outbound`] resolves and checks (an SMTP relay as
    /// `smtp://host:port`). Kinds that connect nowhere the
    /// tenant chooses have none.
    fn outbound_urls(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Every credential it holds, each with its field (`config.secret`), in a stable order.
    /// Mutable because the sender resolves stored credentials in place.
    fn credentials(&mut self) -> Vec<(String, &mut Credential)>;

    /// Keeps what the destination writes on this machine inside its tenant's directory
    /// `tenant_dir` (the file sink's path); kinds that write nothing locally have nothing to do.
    fn confine(&mut self, _tenant_dir: &Path) -> Result<(), SinkError> {
        Ok(())
    }
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The destination accepted the notification.
    Delivered,
    /// It failed but may succeed later; `retry_after` is the destination's own hint
    /// (`Retry-After`), if it gave one.
    Retryable {
        /// Minimum wait the destination asked for.
        retry_after: Option<Duration>,
    },
    /// It failed and retrying cannot help (bad configuration, rejected payload): dead at once.
    Permanent,
}

/// The result of one delivery attempt: what the sender needs for the delivery log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryResult {
    /// How it ended.
    pub outcome: DeliveryOutcome,
    /// HTTP status code, when a response was received.
    pub status_code: Option<u16>,
    /// Short description of a failure, shown to the tenant: a status, a refusal, "could not
    /// connect" — never what the receiver answered (that goes to the server's debug log).
    pub error: Option<String>,
    /// Wall time of the attempt.
    pub duration: Duration,
}

impl DeliveryResult {
    /// A successful attempt.
    pub fn delivered(status_code: Option<u16>, duration: Duration) -> Self {
        Self {
            outcome: DeliveryOutcome::Delivered,
            status_code,
            error: None,
            duration,
        }
    }

    /// A failed attempt worth retrying.
    pub fn retryable(
        status_code: Option<u16>,
        error: impl Into<String>,
        retry_after: Option<Duration>,
        duration: Duration,
    ) -> Self {
        Self {
            outcome: DeliveryOutcome::Retryable { retry_after },
            status_code,
            error: Some(error.into()),
            duration,
        }
    }

    /// A failed attempt that retrying cannot fix.
    pub fn permanent(
        status_code: Option<u16>,
        error: impl Into<String>,
        duration: Duration,
    ) -> Self {
        Self {
            outcome: DeliveryOutcome::Permanent,
            status_code,
            error: Some(error.into()),
            duration,
        }
    }

    /// Whether the destination accepted the notification.
    pub fn is_delivered(&self) -> bool {
        self.outcome == DeliveryOutcome::Delivered
    }
}

/// Errors setting up a sink, or reading, checking or resolving a destination's configuration.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The destination kind is not one this build can deliver to.
    #[error("unknown destination kind {0:?}; expected {expected}", expected = registry::expected_kinds())]
    UnknownKind(String),
    /// The destination's JSON configuration does not fit its kind.
    #[error("invalid {kind} destination config: {source}")]
    InvalidConfig {
        /// The destination kind.
        kind: String,
        /// What serde found wrong (which field, and why).
        #[source]
        source: serde_json::Error,
    },
    /// A field of the configuration has a value its kind cannot use.
    #[error("{field}: {reason}")]
    InvalidField {
        /// The field, as the destination shows it (`config.url`).
        field: String,
        /// What is wrong with its value, and what would do.
        reason: String,
    },
    /// A credential names a secret its tenant does not have.
    #[error(
        "{field}: there is no secret named '{name}'; create it first \
         (PUT /v1/secrets/{name} or `tidemark secrets put`)"
    )]
    UnknownSecret {
        /// The credential's field (`config.headers.authorization`).
        field: String,
        /// The secret it names.
        name: String,
    },
    /// Reading the tenant's secrets failed (or a named one is gone) while checking or
    /// resolving credentials.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// The outbound guard refuses a URL the destination names.
    #[error("{field}: {source}")]
    Outbound {
        /// The field holding the URL (`config.url`).
        field: String,
        /// The URL and why it is refused.
        #[source]
        source: OutboundError,
    },
    /// A file destination's path leads out of its tenant's directory.
    #[error("file destination path '{0}' leaves the tenant's directory")]
    OutsideTenant(String),
    /// A webhook secret is not `whsec_`-prefixed or raw base64.
    #[error("invalid webhook secret: {0}")]
    InvalidSecret(String),
    /// The HTTP client could not be built.
    #[error("cannot build HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
}

impl SinkError {
    /// The destination field the error is about, as the destination API names it. An unknown
    /// kind is reported on `config`, which it leaves unreadable.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::UnknownKind(_) | Self::InvalidConfig { .. } => Some("config"),
            Self::InvalidField { field, .. }
            | Self::UnknownSecret { field, .. }
            | Self::Outbound { field, .. } => Some(field),
            _ => None,
        }
    }

    /// Whether trying again later may succeed (the secrets store or its KEK is unavailable for
    /// now), as opposed to a configuration that stays wrong until someone changes it.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Secrets(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// An error with its sources, each cause once, e.g. "error sending request: connection refused"
/// (for the debug log; tenants see a sink's classification only).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
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
