//! Trino client: the REST statement protocol on reqwest, results as Arrow record batches.
//!
//! - [`config`]: endpoint, user, default catalog/schema, session properties, password.
//! - [`client`]: `POST /v1/statement`, paging through `nextUri`, cancelling with `DELETE` (also
//!   when a result stream is dropped early), retrying 502/503/504 with a short backoff.
//! - [`types`]: Trino type names → Arrow types, and the JSON wire values → Arrow arrays.
//! - [`error`]: typed errors carrying Trino's errorName, errorCode, message and location, and
//!   [`TypeError`] for a type signature or value that cannot be read.
//!
//! ```no_run
//! # async fn demo() -> Result<(), connectors::trino::TrinoError> {
//! use connectors::trino::{TrinoClient, TrinoConfig};
//!
//! let client = TrinoClient::new(TrinoConfig::new("http://127.0.0.1:8080", "tidemark"))?;
//! let (schema, batches) = client.query_all("SELECT 1 AS one").await?;
//! # let _ = (schema, batches);
//! # Ok(())
//! # }
//! ```

pub mod client;
pub mod config;
pub mod error;
pub mod types;

pub use client::{QueryStream, Transfer, TrinoClient};
pub use config::TrinoConfig;
pub use error::{QueryFailure, TrinoError, TypeError};
pub use types::TrinoType;
