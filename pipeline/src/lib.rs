//! The `tidemark` binary's library, in wings: `http` (the API), `ingest` (group commit, recovery,
//! the engine thread), `generate` (notification payloads), `deliver` (the sender loop), `cli`
//! (secrets, warehouse generator, demo, benchmarks) and `server`, the one place that opens the
//! store, the secrets, the dataflow and the dashboard engine and wires them together.
//!
//! See `ARCHITECTURE.md` at the repository root for the data path and where new pieces go.

pub mod audiences;
pub mod auth;
pub mod campaigns;
pub mod cli;
pub mod config;
pub mod console;
pub mod deliver;
pub mod generate;
pub mod http;
pub mod ingest;
pub mod memory;
pub mod metrics;
pub mod pgwire;
pub mod queries;
pub mod server;
