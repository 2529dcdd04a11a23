//! Google Analytics 4 Data API v1beta client.
//!
//! - [`Ga4Client`]: `runReport` (paged with `offset`/`limit` until `rowCount`, ≤ 250,000 rows
//!   a page), `batchRunReports` (≤ 5 reports of one property) and `getMetadata`; at most 10
//!   requests in flight per property; 429 / `RESOURCE_EXHAUSTED` backed off exponentially; a
//!   [`Ga4Error::DailyQuotaExhausted`] when the property's daily tokens are gone.
//! - [`auth`]: the service-account key (from the secrets store) signs an RS256 JWT that the
//!   key's token URI exchanges for a bearer token, cached until shortly before it expires.
//! - [`api`]: the request/response types as the discovery document names them.
//! - [`Report`]: the pages decoded by type — `TYPE_INTEGER` metrics as `i64`, other metrics as
//!   `f64`, the `date` dimension (`YYYYMMDD`) as a date — with sampling and thresholding flags
//!   turned into warnings.
//!
//! ```no_run
//! # async fn demo(key_json: &[u8]) -> Result<(), connectors::ga4::Ga4Error> {
//! use connectors::ga4::{Ga4Client, Ga4Config, ServiceAccountKey, api};
//!
//! let client = Ga4Client::new(ServiceAccountKey::from_json(key_json)?, Ga4Config::default())?;
//! let report = client
//!     .run_report(
//!         "123456",
//!         &api::RunReportRequest {
//!             dimensions: vec![api::Dimension { name: "date".into() }],
//!             metrics: vec![api::Metric { name: "sessions".into() }],
//!             date_ranges: vec![api::DateRange {
//!                 start_date: "7daysAgo".into(),
//!                 end_date: "yesterday".into(),
//!             }],
//!             ..Default::default()
//!         },
//!     )
//!     .await?;
//! println!("{} rows, warnings: {:?}", report.num_rows(), report.warnings);
//! # Ok(())
//! # }
//! ```

pub mod api;
pub mod auth;
mod client;
mod error;
mod report;

pub use auth::{SCOPE, ServiceAccountKey, TokenSource};
pub use client::{DEFAULT_API_BASE, Ga4Client, Ga4Config, MAX_BATCH, MAX_PAGE_SIZE, property_name};
pub use error::Ga4Error;
pub use report::{Column, DATE_DIMENSION, Report, metadata_warnings};
