//! The HTTP API end to end: every test runs the real `tidemark serve` binary on a free port with
//! its own data directory, talks to it over HTTP as a tenant would, and receives its webhooks on a
//! local axum server that records every request and answers as the test tells it to.
//!
//! Waits poll with short sleeps under one overall deadline; the only timing asserted is the
//! order "a fast destination is served before a slow one finishes".

mod audiences;
mod campaigns;
mod delivery;
mod events;
mod harness;
mod metrics;
mod outbound;
mod postgres;
mod retries;
mod rules;
mod serving;
mod templates;
mod thresholds;
mod walls;

#[path = "../../../connectors/tests/support/smtp.rs"]
mod smtp;
