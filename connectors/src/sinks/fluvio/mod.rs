//! Fluvio sink: each notification as one record on a topic of the operator's Fluvio cluster
//! (<https://www.fluvio.io/>).
//!
//! **What a consumer receives.** One record per delivery attempt:
//! - key: the notification id (what a webhook receives as `webhook-id`);
//! - value: JSON, `{"id": "<notification id>", "timestamp": <Unix seconds of the attempt,
//!   as webhook-timestamp>, "payload": <the JSON body a webhook receives, unchanged>}`.
//!
//! **At least once.** The record is flushed and its offset acknowledged (committed) before the
//! delivery counts as done, and an attempt whose outcome is lost (a timeout after the cluster
//! took the record, a sender that dies before recording it) is delivered again. A consumer
//! that keeps the keys it has seen — or compacts by key — sees each notification once.
//!
//! **The cluster is the operator's.** `[sinks.fluvio]` names it (`endpoint`), says which topics
//! each tenant may write (`topic_prefix`, default `{tenant}-`: tenant `acme` writes `acme-…`
//! topics only) and how long a delivery may take (`timeout`). A destination names only its
//! topic, which the tenant creates beforehand (`fluvio topic create acme-alerts`); a missing
//! topic is a permanent failure, so nothing is created on a tenant's behalf. Topics Tidemark
//! reads events from are refused (`SinkSettings::reserved_topics`). Tenant ids that extend one
//! another (`acme`, `acme-eu`) make nested prefixes under the default: the operator then picks
//! tenant ids, or a prefix, that keeps them apart.
//!
//! **No TLS.** Tidemark connects to the cluster in plaintext (the client is built without a
//! TLS stack): the cluster belongs on the operator's private network.
//!
//! Destination JSON: `{"topic": "acme-alerts"}`.
//!
//! - [`config`]: the destination's JSON (the topic), the cluster settings, and the checks.
//! - [`sink`]: the connection, the producers, and how failures are classified.

pub mod config;
pub mod sink;

pub use config::{FluvioConfig, FluvioSettings};
pub use sink::{FluvioSink, record_value};
