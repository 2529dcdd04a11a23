//! The Trino client REST protocol (<https://trino.io/docs/current/develop/client-protocol.html>):
//! `POST /v1/statement`, then `GET` each `nextUri` until there is none; `DELETE` the current
//! `nextUri` to cancel. Each page's rows become one Arrow record batch.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::stream::{self, BoxStream, Stream, StreamExt};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::Value;

use super::config::TrinoConfig;
use super::error::{QueryFailure, TrinoError};
use super::types::{TrinoType, decode_column};

/// How often a 502/503/504 (or a dropped connection while paging) is retried, and the first
/// pause; the pause doubles each time (50 ms … 800 ms).
const RETRIES: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// A Trino connection: cheap to clone (one HTTP connection pool).
#[derive(Clone, Debug)]
pub struct TrinoClient {
    http: reqwest::Client,
    statement_url: String,
    endpoint: String,
    transfer: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    queries: AtomicU64,
    rows: AtomicU64,
    bytes: AtomicU64,
}

/// What a client has received from Trino since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transfer {
    /// Queries submitted.
    pub queries: u64,
    /// Result rows received.
    pub rows: u64,
    /// Response body bytes received (all pages, JSON as sent).
    pub bytes: u64,
}

impl Transfer {
    /// The transfer between an earlier snapshot and this one.
    pub fn since(&self, earlier: &Transfer) -> Transfer {
        Transfer {
            queries: self.queries - earlier.queries,
            rows: self.rows - earlier.rows,
            bytes: self.bytes - earlier.bytes,
        }
    }
}

impl TrinoClient {
    /// A client for `config`. Fails on an unusable endpoint or header value, and refuses a
    /// password over plain HTTP.
    pub fn new(config: TrinoConfig) -> Result<TrinoClient, TrinoError> {
        let endpoint = config.endpoint.trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&endpoint)
            .map_err(|e| TrinoError::Config(format!("endpoint {endpoint:?}: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if config.password.is_some() => {
                return Err(TrinoError::InsecurePassword { endpoint });
            }
            "http" => {}
            other => {
                return Err(TrinoError::Config(format!(
                    "endpoint {endpoint:?}: scheme {other:?} is neither http nor https"
                )));
            }
        }
        let mut headers = HeaderMap::new();
        let mut put = |name: &'static str, value: &str| -> Result<(), TrinoError> {
            let v = HeaderValue::from_str(value)
                .map_err(|_| TrinoError::Config(format!("{name} value {value:?} is not valid")))?;
            headers.insert(HeaderName::from_static(name), v);
            Ok(())
        };
        if config.user.is_empty() {
            return Err(TrinoError::Config("user must not be empty".into()));
        }
        put("x-trino-user", &config.user)?;
        put("x-trino-source", &config.source)?;
        put("x-trino-time-zone", &config.time_zone)?;
        put("x-trino-client-capabilities", "PARAMETRIC_DATETIME")?;
        if let Some(catalog) = &config.catalog {
            put("x-trino-catalog", catalog)?;
        }
        if let Some(schema) = &config.schema {
            put("x-trino-schema", schema)?;
        }
        if !config.session.is_empty() {
            let mut parts = Vec::new();
            for (k, v) in &config.session {
                if k.is_empty()
                    || !k
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                {
                    return Err(TrinoError::Config(format!(
                        "session property name {k:?} must be letters, digits, '_' or '.'"
                    )));
                }
                parts.push(format!("{k}={}", percent_encode(v)));
            }
            put("x-trino-session", &parts.join(","))?;
        }
        if let Some(password) = &config.password {
            let token = BASE64.encode(format!("{}:{password}", config.user));
            let mut v = HeaderValue::from_str(&format!("Basic {token}"))
                .map_err(|_| TrinoError::Config("password is not a valid header value".into()))?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        let http = crate::http::client_builder()
            .default_headers(headers)
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| TrinoError::Config(format!("HTTP client: {e}")))?;
        Ok(TrinoClient {
            http,
            statement_url: format!("{endpoint}/v1/statement"),
            endpoint,
            transfer: Arc::default(),
        })
    }

    /// The coordinator URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Everything received so far (for metrics and benchmarks).
    pub fn transfer(&self) -> Transfer {
        Transfer {
            queries: self.transfer.queries.load(Ordering::Relaxed),
            rows: self.transfer.rows.load(Ordering::Relaxed),
            bytes: self.transfer.bytes.load(Ordering::Relaxed),
        }
    }

    /// Submits `sql` and returns its result as a stream of record batches, once Trino has said
    /// what the columns are (or the query finished without any). Dropping the stream before
    /// its end cancels the query in Trino.
    pub async fn query(&self, sql: &str) -> Result<QueryStream, TrinoError> {
        self.transfer.queries.fetch_add(1, Ordering::Relaxed);
        let first = self
            .request(reqwest::Method::POST, &self.statement_url, Some(sql))
            .await?;
        let mut cursor = Cursor {
            client: self.clone(),
            next_uri: None,
            columns: None,
            schema: None,
            pending: VecDeque::new(),
            query_id: String::new(),
        };
        cursor.take(first)?;
        while cursor.columns.is_none() && cursor.next_uri.is_some() {
            cursor.advance().await?;
        }
        let schema = cursor
            .schema
            .clone()
            .unwrap_or_else(|| Arc::new(Schema::empty()));
        let query_id = cursor.query_id.clone();
        let inner = stream::unfold(cursor, |mut cursor| async move {
            loop {
                if let Some(batch) = cursor.pending.pop_front() {
                    return Some((Ok(batch), cursor));
                }
                cursor.next_uri.as_ref()?;
                if let Err(e) = cursor.advance().await {
                    // The query is over on Trino's side (or unreachable); nothing to cancel.
                    cursor.next_uri = None;
                    return Some((Err(e), cursor));
                }
            }
        })
        .boxed();
        Ok(QueryStream {
            schema,
            query_id,
            inner,
        })
    }

    /// Runs `sql` to the end and collects its batches.
    pub async fn query_all(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>), TrinoError> {
        let mut stream = self.query(sql).await?;
        let schema = stream.schema();
        let mut batches = Vec::new();
        while let Some(batch) = stream.next().await {
            batches.push(batch?);
        }
        Ok((schema, batches))
    }

    /// Sends a request, retrying 502/503/504 (and, when paging, lost connections) with a short
    /// backoff, and parses the result page.
    async fn request(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&str>,
    ) -> Result<Page, TrinoError> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self.http.request(method.clone(), url);
            if let Some(body) = body {
                req = req.body(body.to_string());
            }
            let retry = |attempt: u32| attempt < RETRIES;
            let resp = match req.send().await {
                Ok(resp) => resp,
                // A GET of nextUri is idempotent: safe to repeat after a lost connection.
                Err(e) if method == reqwest::Method::GET && retry(attempt) && !e.is_timeout() => {
                    tracing::debug!(url, error = %e, "retrying Trino page");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    continue;
                }
                Err(source) => {
                    return Err(TrinoError::Http {
                        url: url.to_string(),
                        source,
                    });
                }
            };
            let status = resp.status().as_u16();
            if matches!(status, 502..=504) && retry(attempt) {
                tracing::debug!(url, status, "Trino busy, retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                continue;
            }
            let bytes = resp.bytes().await.map_err(|source| TrinoError::Http {
                url: url.to_string(),
                source,
            })?;
            self.transfer
                .bytes
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            if status != 200 {
                let body = String::from_utf8_lossy(&bytes);
                let body: String = body.chars().take(500).collect();
                return Err(TrinoError::Status {
                    status,
                    url: url.to_string(),
                    body,
                });
            }
            return serde_json::from_slice(&bytes).map_err(|e| TrinoError::Protocol {
                url: url.to_string(),
                reason: e.to_string(),
            });
        }
    }

    fn cancel_in_background(&self, next_uri: String) {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let http = self.http.clone();
            rt.spawn(async move {
                if let Err(e) = http.delete(&next_uri).send().await {
                    tracing::debug!(uri = next_uri, error = %e, "cancelling Trino query failed");
                }
            });
        }
    }
}

/// The result of a query: its schema, then its rows as record batches (one per page).
pub struct QueryStream {
    schema: SchemaRef,
    query_id: String,
    inner: BoxStream<'static, Result<RecordBatch, TrinoError>>,
}

impl QueryStream {
    /// Column names and Arrow types, in Trino's order.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// Trino's id of the query.
    pub fn query_id(&self) -> &str {
        &self.query_id
    }
}

impl Stream for QueryStream {
    type Item = Result<RecordBatch, TrinoError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

impl std::fmt::Debug for QueryStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryStream")
            .field("query_id", &self.query_id)
            .field("schema", &self.schema)
            .finish()
    }
}

/// The client's position in a running query. Dropped with a `nextUri` left, it cancels.
struct Cursor {
    client: TrinoClient,
    next_uri: Option<String>,
    columns: Option<Vec<(String, TrinoType)>>,
    schema: Option<SchemaRef>,
    pending: VecDeque<RecordBatch>,
    query_id: String,
}

impl Cursor {
    async fn advance(&mut self) -> Result<(), TrinoError> {
        let Some(uri) = self.next_uri.clone() else {
            return Ok(());
        };
        let page = self
            .client
            .request(reqwest::Method::GET, &uri, None)
            .await?;
        self.take(page)
    }

    fn take(&mut self, page: Page) -> Result<(), TrinoError> {
        self.query_id = page.id;
        self.next_uri = page.next_uri;
        if let Some(error) = page.error {
            self.next_uri = None;
            if error.error_name == "USER_CANCELED" {
                return Err(TrinoError::Cancelled {
                    query_id: self.query_id.clone(),
                });
            }
            return Err(TrinoError::Query(QueryFailure {
                query_id: self.query_id.clone(),
                error_name: error.error_name,
                error_code: error.error_code,
                error_type: error.error_type,
                message: error.message,
                location: error
                    .error_location
                    .map(|l| (l.line_number, l.column_number)),
            }));
        }
        if self.columns.is_none()
            && let Some(columns) = page.columns
        {
            let mut parsed = Vec::with_capacity(columns.len());
            let mut fields = Vec::with_capacity(columns.len());
            for c in columns {
                let t = TrinoType::parse(&c.r#type).map_err(|source| TrinoError::Decode {
                    column: c.name.clone(),
                    trino_type: c.r#type.clone(),
                    source,
                })?;
                fields.push(Field::new(&c.name, t.arrow_type(), true));
                parsed.push((c.name, t));
            }
            self.schema = Some(Arc::new(Schema::new(fields)));
            self.columns = Some(parsed);
        }
        if let Some(rows) = page.data
            && !rows.is_empty()
        {
            let (Some(columns), Some(schema)) = (&self.columns, &self.schema) else {
                return Err(TrinoError::Protocol {
                    url: self.client.statement_url.clone(),
                    reason: "rows arrived before the column list".into(),
                });
            };
            let null = Value::Null;
            let mut arrays = Vec::with_capacity(columns.len());
            for (i, (name, t)) in columns.iter().enumerate() {
                let values: Vec<&Value> = rows.iter().map(|r| r.get(i).unwrap_or(&null)).collect();
                arrays.push(
                    decode_column(t, &values).map_err(|source| TrinoError::Decode {
                        column: name.clone(),
                        trino_type: format!("{t:?}"),
                        source,
                    })?,
                );
            }
            let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
            let batch = RecordBatch::try_new_with_options(Arc::clone(schema), arrays, &options)
                .map_err(|e| TrinoError::Protocol {
                    url: self.client.statement_url.clone(),
                    reason: e.to_string(),
                })?;
            self.client
                .transfer
                .rows
                .fetch_add(rows.len() as u64, Ordering::Relaxed);
            self.pending.push_back(batch);
        }
        Ok(())
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        if let Some(uri) = self.next_uri.take() {
            tracing::debug!(query_id = self.query_id, "result dropped early: cancelling");
            self.client.cancel_in_background(uri);
        }
    }
}

/// One response of the statement protocol (only the fields the client uses).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    id: String,
    next_uri: Option<String>,
    columns: Option<Vec<PageColumn>>,
    data: Option<Vec<Vec<Value>>>,
    error: Option<PageError>,
}

#[derive(Deserialize)]
struct PageColumn {
    name: String,
    r#type: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    error_code: i64,
    #[serde(default)]
    error_name: String,
    #[serde(default)]
    error_type: String,
    error_location: Option<PageErrorLocation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageErrorLocation {
    line_number: u32,
    column_number: u32,
}

/// Percent-encodes everything but unreserved characters (session property values).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_password_over_plain_http() {
        let mut config = TrinoConfig::new("http://trino.example:8080", "tidemark");
        config.password = Some("hunter2".into());
        let err = TrinoClient::new(config.clone()).unwrap_err();
        assert!(matches!(err, TrinoError::InsecurePassword { .. }));
        assert!(err.to_string().contains("https://"));
        assert!(!err.to_string().contains("hunter2"));
        config.endpoint = "https://trino.example:8443".into();
        assert!(TrinoClient::new(config.clone()).is_ok());
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn rejects_unusable_settings() {
        let err = TrinoClient::new(TrinoConfig::new("ftp://x", "u")).unwrap_err();
        assert!(err.to_string().contains("neither http nor https"), "{err}");
        let err = TrinoClient::new(TrinoConfig::new("not a url", "u")).unwrap_err();
        assert!(err.to_string().contains("endpoint"), "{err}");
        let mut config = TrinoConfig::new("http://x", "u");
        config.session = vec![("bad name".into(), "1".into())];
        let err = TrinoClient::new(config).unwrap_err();
        assert!(err.to_string().contains("session property name"), "{err}");
    }

    #[test]
    fn session_values_are_percent_encoded() {
        assert_eq!(percent_encode("5m"), "5m");
        assert_eq!(percent_encode("a b,c=d"), "a%20b%2Cc%3Dd");
    }

    #[test]
    fn failures_name_the_error_and_its_location() {
        let failure = QueryFailure {
            query_id: "20250101_000000_00001_abcde".into(),
            error_name: "SYNTAX_ERROR".into(),
            error_code: 1,
            error_type: "USER_ERROR".into(),
            message: "mismatched input 'FORM'".into(),
            location: Some((1, 10)),
        };
        let text = TrinoError::Query(failure).to_string();
        assert_eq!(
            text,
            "Trino query failed: SYNTAX_ERROR (code 1, USER_ERROR) at line 1, column 10: \
             mismatched input 'FORM' [query 20250101_000000_00001_abcde]"
        );
    }
}
