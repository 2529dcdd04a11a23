//! What can go wrong talking to Trino, with a retry hint for callers.

use std::fmt;

/// A failure reported by Trino for a query (the `error` object of a result page).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryFailure {
    /// The query id Trino assigned (empty if it failed before getting one).
    pub query_id: String,
    /// `errorName`, e.g. `SYNTAX_ERROR`, `TABLE_NOT_FOUND`.
    pub error_name: String,
    /// `errorCode`, Trino's stable numeric code.
    pub error_code: i64,
    /// `errorType`: `USER_ERROR`, `INTERNAL_ERROR`, `INSUFFICIENT_RESOURCES`, `EXTERNAL`.
    pub error_type: String,
    /// The message, as Trino wrote it.
    pub message: String,
    /// Where in the SQL text the error is (1-based line and column), when Trino says.
    pub location: Option<(u32, u32)>,
}

impl fmt::Display for QueryFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (code {}, {})",
            self.error_name, self.error_code, self.error_type
        )?;
        if let Some((line, column)) = self.location {
            write!(f, " at line {line}, column {column}")?;
        }
        write!(f, ": {}", self.message)?;
        if !self.query_id.is_empty() {
            write!(f, " [query {}]", self.query_id)?;
        }
        Ok(())
    }
}

/// Errors of the Trino client.
#[derive(Debug, thiserror::Error)]
pub enum TrinoError {
    /// The client configuration cannot work (bad URL, bad header value…).
    #[error("invalid Trino configuration: {0}")]
    Config(String),
    /// A password was configured for a plain-HTTP endpoint; it would travel in clear text.
    #[error(
        "refusing to send the Trino password over plain HTTP to {endpoint}: use an https:// \
         endpoint (Trino only accepts passwords over HTTPS)"
    )]
    InsecurePassword { endpoint: String },
    /// The request did not complete (connection refused, timeout, TLS…).
    #[error("Trino request to {url} failed: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// Trino answered with an HTTP status other than 200 (after retries for 502/503/504).
    #[error("Trino answered HTTP {status} for {url}: {body}")]
    Status {
        status: u16,
        url: String,
        body: String,
    },
    /// The query failed inside Trino.
    #[error("Trino query failed: {0}")]
    Query(QueryFailure),
    /// The query was cancelled (by us, or by an administrator).
    #[error("Trino query {query_id} was cancelled")]
    Cancelled { query_id: String },
    /// A response that does not follow the protocol.
    #[error("unreadable Trino response from {url}: {reason}")]
    Protocol { url: String, reason: String },
    /// A value that does not decode as its column's type.
    #[error("cannot decode Trino column {column:?} of type {trino_type}: {reason}")]
    Decode {
        column: String,
        trino_type: String,
        reason: String,
    },
}

impl TrinoError {
    /// Whether running the same query again may succeed (connection trouble, overloaded or
    /// restarting cluster), as opposed to a query or configuration that is wrong.
    pub fn is_transient(&self) -> bool {
        match self {
            TrinoError::Http { .. } => true,
            TrinoError::Status { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            TrinoError::Query(q) => {
                q.error_type == "INSUFFICIENT_RESOURCES" || q.error_type == "EXTERNAL"
            }
            _ => false,
        }
    }
}
