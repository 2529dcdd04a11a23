//! What can go wrong talking to Trino, with a retry hint for callers.

use std::fmt;

use arrow::error::ArrowError;

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
    /// A column whose type signature does not parse, or a value that does not decode as its
    /// column's type.
    #[error("cannot decode Trino column {column:?} of type {trino_type}: {source}")]
    Decode {
        column: String,
        trino_type: String,
        #[source]
        source: TypeError,
    },
}

/// Why a Trino type signature, or a value sent for a column of that type, could not be read.
/// [`TrinoError::Decode`] adds the column it happened in.
#[derive(Debug, thiserror::Error)]
pub enum TypeError {
    /// The signature does not follow Trino's type grammar at `offset` (a byte offset).
    #[error(
        "expected {expected} at offset {offset} of type {signature:?}, found {}",
        found(.signature, .offset)
    )]
    Syntax {
        signature: String,
        offset: usize,
        /// What the grammar allows there: `"("`, a name, a number, the end.
        expected: String,
    },
    /// A precision, scale or length in the signature outside what its type allows.
    #[error("{what} is out of range at offset {offset} of type {signature:?}")]
    OutOfRange {
        signature: String,
        offset: usize,
        /// The offending part, e.g. `decimal(40,2)` or `precision 13`.
        what: String,
    },
    /// A value that is not of the kind its type is sent as: a number for a date, an object
    /// for an array.
    #[error("{value} is not {expected}")]
    Value {
        /// The value as sent (JSON), shortened.
        value: String,
        /// The kind of value the type is sent as, e.g. `a string`, `an integer in range`.
        expected: &'static str,
    },
    /// A value of the right kind whose content does not read as its type: a 30th of February,
    /// an unknown time zone, more decimal places than the column's scale.
    #[error("{value} is not {expected}: {reason}")]
    Content {
        /// The value as sent (JSON), shortened.
        value: String,
        /// What it should have been, e.g. `a date`, `a decimal`.
        expected: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// One page nests more values (array items, map entries) than an Arrow list can offset.
    #[error("a page holds more than 2^31 nested values")]
    TooManyNested,
    /// Arrow refused the arrays decoded for a nested or decimal column.
    #[error(transparent)]
    Arrow(#[from] ArrowError),
}

/// What stands at `offset` of a signature, for [`TypeError::Syntax`].
fn found(signature: &str, offset: &usize) -> String {
    match signature.get(*offset..) {
        None | Some("") => "the end".to_string(),
        Some(rest) => format!("{rest:?}"),
    }
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
