//! The engine's one error type: what went wrong, with which input, and whether the caller's
//! request or the server is at fault (so the HTTP layer picks 4xx or 5xx from `is_client_error`).

use std::path::PathBuf;

use datafusion::error::DataFusionError;

/// Everything the dashboard engine can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The request (dashboard spec, SQL text, tenant id) is malformed or names something that does
    /// not exist. `field` is a JSON-path-like pointer into the spec (`filters[0].operator`), `sql`
    /// for SQL text, or `tenant`.
    #[error("{field}: {message}")]
    BadRequest {
        /// Where in the request the problem is.
        field: String,
        /// What is wrong and, where possible, what would be accepted.
        message: String,
    },
    /// The SQL is valid but not read-only (DDL, DML, COPY, SET, PREPARE, …).
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// A semantic-model file is invalid. Raised at load time by [`crate::DashboardEngine::new`], or
    /// at query time when a model expression does not fit the tenant's table.
    #[error("semantic model {}: {member}: {message}", file.display())]
    Model {
        /// The model file.
        file: PathBuf,
        /// The offending member (`orders.revenue`), source (`orders`) or key.
        member: String,
        /// What is wrong.
        message: String,
    },
    /// The tenant has no data files for a table the request needs.
    #[error("no data: {0}")]
    NoData(String),
    /// An external source (Trino, GA4) could not answer: unreachable, rate limited, out of
    /// quota, or failing on its side. Neither the request's fault nor Tidemark's (HTTP 503).
    #[error("source unavailable: {0}")]
    Source(String),
    /// The query is over a limit checked before planning: its SQL text's size or its
    /// expressions' nesting (see [`crate::limits`]). `limit` is the setting's key.
    #[error("{message}")]
    TooComplex {
        /// The limit's configuration key (`dashboard.limits.max_expr_depth`).
        limit: String,
        /// What is over the limit, and by how much.
        message: String,
    },
    /// The query needs more memory than its budget, or its answer has more rows than allowed.
    #[error("{message}")]
    TooLarge {
        /// The limit's configuration key (`dashboard.limits.query_memory_mb`).
        limit: String,
        /// What is over the limit.
        message: String,
    },
    /// The memory all queries share is in use by other queries; the same query may run later.
    #[error("{0}")]
    Busy(String),
    /// A fault of the engine or of the files underneath it, not of the request.
    #[error("internal error: {0}")]
    Internal(String),
}

impl SqlError {
    /// A stable, machine-readable code for the error kind.
    pub fn code(&self) -> &'static str {
        match self {
            SqlError::BadRequest { .. } => "bad_request",
            SqlError::NotAllowed(_) => "not_allowed",
            SqlError::Model { .. } => "model_invalid",
            SqlError::NoData(_) => "no_data",
            SqlError::Source(_) => "source_unavailable",
            SqlError::TooComplex { .. } => "query_too_complex",
            SqlError::TooLarge { .. } => "query_too_large",
            SqlError::Busy(_) => "busy",
            SqlError::Internal(_) => "internal",
        }
    }

    /// True when the request was at fault (HTTP 4xx), false for server-side problems (5xx).
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            SqlError::BadRequest { .. }
                | SqlError::NotAllowed(_)
                | SqlError::NoData(_)
                | SqlError::TooComplex { .. }
                | SqlError::TooLarge { .. }
        )
    }

    pub(crate) fn bad(field: impl Into<String>, message: impl Into<String>) -> Self {
        SqlError::BadRequest {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Classifies an error from planning or running user-written SQL: problems with the query
    /// itself are the client's; I/O, Parquet and internal failures are the server's.
    pub(crate) fn from_user_query(err: DataFusionError) -> Self {
        if let Some(limit) =
            crate::limits::parser_limit(&err).or_else(|| crate::limits::memory_refusal(&err))
        {
            return limit;
        }
        let message = err.message().to_string();
        if let Some(source) = Self::from_source(&err, &message) {
            return source;
        }
        // A pattern the query gives to `~`, `regexp_like` or `regexp_replace` that does not
        // compile: DataFusion reports it as an external error while it simplifies the plan.
        if let DataFusionError::External(external) = err.find_root()
            && (external.is::<regex::Error>() || external.is::<regex_syntax::Error>())
        {
            return SqlError::bad("sql", format!("invalid regular expression: {external}"));
        }
        match err.find_root() {
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::Configuration(_)
            | DataFusionError::ArrowError(..)
            | DataFusionError::Execution(_) => SqlError::bad("sql", message),
            _ => SqlError::Internal(message),
        }
    }
}

impl SqlError {
    /// An error of an external source, classified: a query Trino rejects as the user's
    /// (`USER_ERROR`: a bad cast, a division by zero), a GA4 refusal
    /// ([`crate::ga4::Ga4Refusal`]) and a request GA4 answers with HTTP 400 (`INVALID_ARGUMENT`)
    /// are the request's fault; everything else a source reports (quota, rate limits, 5xx,
    /// permissions) is [`SqlError::Source`].
    fn from_source(err: &DataFusionError, message: &str) -> Option<Self> {
        let DataFusionError::External(external) = err.find_root() else {
            return None;
        };
        if let Some(trino) = external.downcast_ref::<connectors::trino::TrinoError>() {
            if let connectors::trino::TrinoError::Query(failure) = trino
                && failure.error_type == "USER_ERROR"
            {
                return Some(SqlError::bad("sql", message));
            }
            return Some(SqlError::Source(message.to_string()));
        }
        if let Some(refusal) = external.downcast_ref::<crate::ga4::Ga4Refusal>() {
            return Some(SqlError::bad("ga4", refusal.to_string()));
        }
        external
            .downcast_ref::<connectors::ga4::Ga4Error>()
            .map(|ga4| match ga4 {
                // GA4 rejected the request itself (an unknown field, an incompatible
                // dimension and metric), the tenant's key (401), its access to the property
                // (403) or the property (404): the request's or the tenant's to fix, in GA4's
                // words. Rate limits (429) are the source's.
                connectors::ga4::Ga4Error::Api { http_status, .. }
                    if (400..500).contains(http_status) && *http_status != 429 =>
                {
                    SqlError::bad("ga4", ga4.to_string())
                }
                _ => SqlError::Source(message.to_string()),
            })
    }
}

/// Errors raised while the engine builds or runs a plan it compiled itself (from a spec): those
/// are the server's fault, since the spec was validated before — unless a source failed.
impl From<DataFusionError> for SqlError {
    fn from(err: DataFusionError) -> Self {
        if let Some(refusal) = crate::limits::memory_refusal(&err) {
            return refusal;
        }
        let message = err.message().to_string();
        Self::from_source(&err, &message).unwrap_or(SqlError::Internal(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_client_classification() {
        let bad = SqlError::bad("filters[0].operator", "unknown operator `like`");
        assert_eq!(bad.code(), "bad_request");
        assert!(bad.is_client_error());
        assert_eq!(
            bad.to_string(),
            "filters[0].operator: unknown operator `like`"
        );
        let model = SqlError::Model {
            file: PathBuf::from("m.toml"),
            member: "orders.aov".into(),
            message: "unknown measure `revnue`".into(),
        };
        assert_eq!(model.code(), "model_invalid");
        assert!(!model.is_client_error());
        assert!(model.to_string().contains("m.toml"));
        assert!(!SqlError::Internal("x".into()).is_client_error());
        let quota = SqlError::from_user_query(DataFusionError::External(Box::new(
            connectors::ga4::Ga4Error::InvalidRequest("quota".into()),
        )));
        assert_eq!(quota.code(), "source_unavailable");
        assert!(!quota.is_client_error());
        assert!(SqlError::NotAllowed("DROP".into()).is_client_error());
    }

    #[test]
    fn ga4_rejections_and_refusals_are_the_requests_fault_outages_are_not() {
        let api = |http_status: u16, status: &str| {
            DataFusionError::External(Box::new(connectors::ga4::Ga4Error::Api {
                method: "runReport",
                property: "properties/1".into(),
                http_status,
                status: status.into(),
                message: "Field fooBar is not a valid dimension.".into(),
            }))
        };
        for err in [
            SqlError::from_user_query(api(400, "INVALID_ARGUMENT")),
            SqlError::from(api(400, "INVALID_ARGUMENT")),
        ] {
            assert_eq!(err.code(), "bad_request");
            assert!(
                err.to_string().contains("fooBar is not a valid dimension"),
                "{err}"
            );
        }
        for (http_status, status) in [
            (401, "UNAUTHENTICATED"),
            (403, "PERMISSION_DENIED"),
            (404, "NOT_FOUND"),
        ] {
            let err = SqlError::from_user_query(api(http_status, status));
            assert_eq!(err.code(), "bad_request", "{http_status}");
            assert!(err.to_string().contains(status), "{err}");
        }
        for (http_status, status) in [(429, "RESOURCE_EXHAUSTED"), (503, "UNAVAILABLE")] {
            let outage = SqlError::from_user_query(api(http_status, status));
            assert_eq!(outage.code(), "source_unavailable", "{http_status}");
        }
        // A refusal raised inside the optimizer, as a spec's plan would meet it.
        let refusal = DataFusionError::Context(
            "Optimizer rule 'ga4_pushdown' failed".into(),
            Box::new(DataFusionError::External(Box::new(crate::ga4::Ga4Refusal(
                "refusing to compute sum(total_users)".into(),
            )))),
        );
        let err = SqlError::from(refusal);
        assert!(err.is_client_error(), "{err:?}");
        assert!(err.to_string().contains("sum(total_users)"), "{err}");
    }

    #[test]
    fn an_invalid_regular_expression_is_the_querys_fault() {
        let Err(invalid) = regex_syntax::Parser::new().parse("(") else {
            panic!("`(` is not a regular expression");
        };
        let err = SqlError::from_user_query(DataFusionError::Context(
            "Optimizer rule 'simplify_expressions' failed".into(),
            Box::new(DataFusionError::External(Box::new(invalid))),
        ));
        assert_eq!(err.code(), "bad_request");
        assert!(
            err.to_string().contains("invalid regular expression"),
            "{err}"
        );
    }

    #[test]
    fn user_query_errors_are_client_errors() {
        let err = SqlError::from_user_query(DataFusionError::Plan("table 'x' not found".into()));
        assert!(err.is_client_error());
        assert!(err.to_string().contains("table 'x' not found"));
    }
}
