//! Dashboards over HTTP: `POST /v1/query` (a dashboard spec) and `POST /v1/sql` (read-only SQL).
//!
//! Both authenticate like the rest of `/v1` (the tenant comes only from the API key) and answer
//! in the format asked for: JSON by default, CSV (`Accept: text/csv` or `?format=csv`) or an Arrow
//! IPC stream (`Accept: application/vnd.apache.arrow.stream` or `?format=arrow`). The
//! `X-Tidemark-Cache` header says whether the answer came from the result cache (`hit`/`miss`).
//!
//! JSON answers look like
//! `{"columns": [{"name": "orders.channel", "type": "string"}, …], "rows": [{…}, …],
//!   "row_count": 6, "cached": false, "warnings": []}`. Non-finite numbers (a ratio over zero)
//! are `null`.
//!
//! Queries run on the dashboard query runtime ([`crate::queries`]), answers are encoded there
//! too; a query over a limit is a 400 naming it (`query_too_complex`, `query_too_large`), a
//! tenant with too many queries waiting a 429, a full queue or memory budget a 503 (`busy`), a
//! query past `dashboard.query_timeout` a 504 and is stopped.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use sql::arrow::array::RecordBatch;
use sql::arrow::datatypes::{DataType, SchemaRef};
use sql::{DashboardEngine, QueryResult, SqlError};

use super::{ApiError, AppState, Tenant};
use crate::queries::{QueryRefusal, QueryRuntime};

/// What the dashboard handlers share.
#[derive(Clone)]
pub struct DashboardState {
    /// The API's state (for API-key authentication).
    pub app: AppState,
    /// The engine.
    pub engine: DashboardEngine,
    /// Where queries run, admitted per tenant, under `dashboard.query_timeout`.
    pub queries: QueryRuntime,
}

/// The dashboard routes, to merge into the API's router.
pub fn router(state: DashboardState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/query", post(post_query))
        .route("/v1/sql", post(post_sql))
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// The authenticated tenant, through the API's own key check.
pub(super) struct Caller(pub(super) String);

impl FromRequestParts<DashboardState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &DashboardState,
    ) -> Result<Self, Self::Rejection> {
        Tenant::from_request_parts(parts, &state.app)
            .await
            .map(|Tenant(tenant)| Caller(tenant))
    }
}

#[derive(Deserialize)]
struct FormatParam {
    format: Option<String>,
}

/// An answer's wire format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
    Arrow,
}

const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

fn negotiate(param: Option<&str>, headers: &HeaderMap) -> Result<Format, ApiError> {
    if let Some(format) = param {
        return match format.to_ascii_lowercase().as_str() {
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            "arrow" => Ok(Format::Arrow),
            other => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("unknown format '{other}': use json, csv or arrow"),
            )
            .field("format")),
        };
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    Ok(if accept.contains(ARROW_STREAM) {
        Format::Arrow
    } else if accept.contains("text/csv") {
        Format::Csv
    } else {
        Format::Json
    })
}

async fn post_query(
    State(state): State<DashboardState>,
    Caller(tenant): Caller,
    Query(params): Query<FormatParam>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let format = negotiate(params.format.as_deref(), &headers)?;
    let spec: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not a JSON dashboard spec: {e}"),
        )
    })?;
    let engine = state.engine.clone();
    let query = {
        let tenant = tenant.clone();
        async move { engine.query_spec(&tenant, &spec).await }
    };
    run(&state, "query", &tenant, format, query).await
}

/// `{"sql": "..."}` with a JSON content type (or a body that starts with `{`), else the text.
fn sql_text(headers: &HeaderMap, body: &[u8]) -> Result<String, ApiError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("the body is not UTF-8: {e}"),
        )
    })?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("json"))
        || text.trim_start().starts_with('{');
    let sql = if json {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct SqlBody {
            sql: String,
        }
        serde_json::from_str::<SqlBody>(text)
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    format!("expected {{\"sql\": \"...\"}}: {e}"),
                )
            })?
            .sql
    } else {
        text.to_string()
    };
    if sql.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the SQL text is empty",
        )
        .field("sql"));
    }
    Ok(sql)
}

async fn post_sql(
    State(state): State<DashboardState>,
    Caller(tenant): Caller,
    Query(params): Query<FormatParam>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let format = negotiate(params.format.as_deref(), &headers)?;
    let sql = sql_text(&headers, &body)?;
    // Refused before it is queued, let alone parsed.
    sql::limits::check_sql_size(&sql, state.engine.limits()).map_err(sql_error)?;
    let engine = state.engine.clone();
    let query = {
        let tenant = tenant.clone();
        async move { engine.sql(&tenant, &sql).await }
    };
    run(&state, "sql", &tenant, format, query).await
}

/// Runs an engine call and encodes its answer on the query runtime, admitted for `tenant` and
/// under the timeout (which stops the query), counting it by endpoint and cache outcome.
async fn run(
    state: &DashboardState,
    endpoint: &str,
    tenant: &str,
    format: Format,
    query: impl Future<Output = Result<QueryResult, SqlError>> + Send + 'static,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let outcome = state
        .queries
        .run(tenant, async move {
            let result = query.await?;
            let cached = result.cached;
            Ok::<_, SqlError>((cached, respond(result, format)))
        })
        .await;
    let metrics = state.app.metrics();
    metrics
        .dashboard_query_seconds
        .observe(started.elapsed().as_secs_f64());
    let cache = match &outcome {
        Ok(Ok((true, _))) => "hit",
        Ok(Ok((false, _))) => "miss",
        _ => "error",
    };
    metrics
        .dashboard_queries
        .get_or_create(&vec![
            ("endpoint".to_string(), endpoint.to_string()),
            ("cache".to_string(), cache.to_string()),
        ])
        .inc();
    match outcome {
        Ok(Ok((_, response))) => response,
        Ok(Err(e)) => Err(sql_error(e)),
        Err(refusal) => Err(refusal_error(refusal)),
    }
}

/// The HTTP form of a query that was not admitted or did not finish.
pub fn refusal_error(refusal: QueryRefusal) -> ApiError {
    let message = refusal.to_string();
    match refusal {
        QueryRefusal::Busy { .. } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message)
        }
        QueryRefusal::TenantBusy { .. } => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_queries", message)
        }
        QueryRefusal::Timeout(_) => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "query_timeout", message)
        }
        QueryRefusal::Failed(_) => ApiError::internal(message),
    }
}

/// The HTTP form of an engine error: the request's fault is a 4xx naming the field.
pub fn sql_error(error: SqlError) -> ApiError {
    match error {
        SqlError::BadRequest { field, message } => {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message).field(field)
        }
        SqlError::NotAllowed(message) => {
            ApiError::new(StatusCode::FORBIDDEN, "not_allowed", message).field("sql")
        }
        SqlError::NoData(message) => ApiError::new(StatusCode::NOT_FOUND, "no_data", message),
        SqlError::TooComplex { limit, message } => {
            ApiError::new(StatusCode::BAD_REQUEST, "query_too_complex", message).field(limit)
        }
        SqlError::TooLarge { limit, message } => {
            ApiError::new(StatusCode::BAD_REQUEST, "query_too_large", message).field(limit)
        }
        SqlError::Busy(message) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message),
        SqlError::Source(message) => {
            tracing::warn!(error = %message, "an external source could not answer");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "source_unavailable",
                message,
            )
        }
        e @ SqlError::Model { .. } => {
            tracing::error!(error = %e, "semantic model does not fit the data");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "model_invalid",
                e.to_string(),
            )
        }
        e => ApiError::internal(e),
    }
}

fn respond(result: QueryResult, format: Format) -> Result<Response, ApiError> {
    let cache = HeaderValue::from_static(if result.cached { "hit" } else { "miss" });
    let (content_type, body) = match format {
        Format::Json => ("application/json", json_body(&result)),
        Format::Csv => ("text/csv; charset=utf-8", csv_body(&result)),
        Format::Arrow => (ARROW_STREAM, arrow_body(&result)),
    };
    let body = body.map_err(ApiError::internal)?;
    let mut response = (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response();
    response.headers_mut().insert("x-tidemark-cache", cache);
    Ok(response)
}

/// A column type as a JSON client thinks of it.
fn json_type(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Boolean => "boolean",
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => "integer",
        DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => "number",
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Timestamp(..) => "timestamp",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string",
        _ => "other",
    }
}

fn json_body(result: &QueryResult) -> anyhow::Result<Vec<u8>> {
    use sql::arrow::json::writer::{JsonArray, WriterBuilder};
    let columns: Vec<serde_json::Value> = result
        .schema
        .fields()
        .iter()
        .map(|f| serde_json::json!({"name": f.name(), "type": json_type(f.data_type())}))
        .collect();
    let mut out = Vec::with_capacity(256 + result.num_rows() * 64);
    out.extend_from_slice(b"{\"columns\":");
    serde_json::to_writer(&mut out, &columns)?;
    out.extend_from_slice(b",\"rows\":");
    let mut writer = WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, JsonArray>(&mut out);
    let batches: Vec<&RecordBatch> = result.batches.iter().collect();
    writer.write_batches(&batches)?;
    writer.finish()?;
    drop(writer);
    out.extend_from_slice(b",\"row_count\":");
    out.extend_from_slice(result.num_rows().to_string().as_bytes());
    out.extend_from_slice(b",\"cached\":");
    out.extend_from_slice(if result.cached { b"true" } else { b"false" });
    out.extend_from_slice(b",\"warnings\":");
    serde_json::to_writer(&mut out, &result.warnings)?;
    out.push(b'}');
    Ok(out)
}

fn csv_body(result: &QueryResult) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut writer = sql::arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut out);
        if result.batches.is_empty() {
            writer.write(&RecordBatch::new_empty(SchemaRef::clone(&result.schema)))?;
        }
        for batch in &result.batches {
            writer.write(batch)?;
        }
    }
    Ok(out)
}

fn arrow_body(result: &QueryResult) -> anyhow::Result<Vec<u8>> {
    let mut writer = sql::arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &result.schema)?;
    for batch in &result.batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    Ok(writer.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_from_param_then_accept() {
        let mut headers = HeaderMap::new();
        assert_eq!(negotiate(None, &headers).unwrap(), Format::Json);
        headers.insert(header::ACCEPT, HeaderValue::from_static("text/csv"));
        assert_eq!(negotiate(None, &headers).unwrap(), Format::Csv);
        headers.insert(header::ACCEPT, HeaderValue::from_static(ARROW_STREAM));
        assert_eq!(negotiate(None, &headers).unwrap(), Format::Arrow);
        assert_eq!(negotiate(Some("csv"), &headers).unwrap(), Format::Csv);
        assert!(negotiate(Some("xml"), &headers).is_err());
    }

    #[test]
    fn sql_body_is_json_or_text() {
        let mut headers = HeaderMap::new();
        assert_eq!(sql_text(&headers, b"SELECT 1").unwrap(), "SELECT 1");
        assert_eq!(
            sql_text(&headers, br#"{"sql": "SELECT 2"}"#).unwrap(),
            "SELECT 2"
        );
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(sql_text(&headers, b"SELECT 1").is_err());
        assert!(sql_text(&HeaderMap::new(), b"  ").is_err());
    }
}
