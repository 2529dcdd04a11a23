//! File sink: appends each notification as one JSON line
//! `{"id":…,"payload":…,"delivered_at":…}` to a file, or to stdout when the path is `-`.
//!
//! Meant for the demo, local debugging and audit trails. Paths are relative to the tenant's
//! own directory (`files/<tenant>/` under the server's data directory) and may not leave it.
//!
//! - [`config`]: the destination's JSON (the path) and the one check that keeps it inside
//!   the tenant's directory.
//! - [`sink`]: appending the line.

pub mod config;
pub mod sink;

pub use config::FileConfig;
pub use sink::FileSink;
