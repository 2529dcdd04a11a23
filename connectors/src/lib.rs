//! Tidemark's connections to the outside world.
//!
//! - [`store`]: durable state — the event log, rules, destinations, tenants, the notification
//!   outbox and the delivery log (SQLite embedded; the [`store::Store`] trait leaves room for
//!   PostgreSQL).
//! - [`sinks`]: delivering notifications — signed webhooks, email, Slack, JSON-lines files —
//!   and the retry policy that decides when to try again.
//! - [`sources`]: where events come from — the decoding of event batches every source (the HTTP
//!   API, Fluvio) goes through.
//! - [`secrets`]: tenants' third-party credentials, envelope-encrypted (AES-256-GCM) in the
//!   store under a key-encryption key from a local file or AWS Secrets Manager.
//! - [`ga4`]: the Google Analytics 4 Data API client (service-account auth, paging, quotas).
//! - [`trino`]: the Trino REST client (statement protocol, results as Arrow record batches).
//! - [`http`]: where every HTTP(S) client (reqwest, the AWS SDK's) is built, on rustls with ring.
//! - [`outbound`]: the guard on tenant-supplied URLs and hosts — no loopback, private, link-local
//!   or metadata addresses unless the operator's allow-list says so — and the HTTP clients that
//!   connect only to addresses it checked.
//!
//! This crate depends on no other workspace crate; everything here is I/O at the edge.

pub mod clock;
pub mod ga4;
pub mod http;
pub mod outbound;
pub mod secrets;
pub mod sinks;
pub mod sources;
pub mod store;
pub mod trino;
