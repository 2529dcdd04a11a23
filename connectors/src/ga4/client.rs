//! The GA4 Data API client: `runReport` (paged to `rowCount`), `batchRunReports` and
//! `getMetadata`, with bearer-token auth, at most N concurrent requests per property and
//! exponential backoff on 429 / `RESOURCE_EXHAUSTED`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

use super::api::{
    BatchRunReportsRequest, BatchRunReportsResponse, Metadata, RunReportRequest, RunReportResponse,
};
use super::auth::{ServiceAccountKey, TokenSource, truncate};
use super::error::Ga4Error;
use super::report::Report;

/// The production endpoint.
pub const DEFAULT_API_BASE: &str = "https://analyticsdata.googleapis.com";

/// The most rows GA4 returns per request.
pub const MAX_PAGE_SIZE: i64 = 250_000;

/// Below this many daily tokens left (of GA4's standard 200,000), reports carry a warning.
pub const LOW_DAILY_TOKENS: i64 = 10_000;

/// The most reports in one `batchRunReports`.
pub const MAX_BATCH: usize = 5;

/// How the client talks to GA4.
#[derive(Debug, Clone)]
pub struct Ga4Config {
    /// The API root, without `/v1beta` (tests point it at a local stand-in).
    pub api_base: String,
    /// At most this many requests in flight per property (GA4 allows 10).
    pub max_concurrent_per_property: usize,
    /// Rows asked for per page, at most [`MAX_PAGE_SIZE`].
    pub page_size: i64,
    /// Requests sent at most for one call when rate limited (the first included).
    pub max_attempts: u32,
    /// The first backoff; each retry doubles it, up to `max_backoff`.
    pub initial_backoff: Duration,
    /// The longest single backoff.
    pub max_backoff: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl Default for Ga4Config {
    fn default() -> Self {
        Ga4Config {
            api_base: DEFAULT_API_BASE.into(),
            max_concurrent_per_property: 10,
            page_size: MAX_PAGE_SIZE,
            max_attempts: 6,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(120),
        }
    }
}

/// A GA4 Data API v1beta client for one service account; cheap to share.
#[derive(Debug)]
pub struct Ga4Client {
    http: reqwest::Client,
    tokens: TokenSource,
    config: Ga4Config,
    permits: Mutex<HashMap<String, Arc<Semaphore>>>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
}

/// `properties/<id>` from `<id>` or `properties/<id>`.
pub fn property_name(property: &str) -> String {
    if property.starts_with("properties/") {
        property.to_string()
    } else {
        format!("properties/{property}")
    }
}

impl Ga4Client {
    /// A client authenticating as `key`.
    pub fn new(key: ServiceAccountKey, config: Ga4Config) -> Result<Self, Ga4Error> {
        if !(1..=MAX_PAGE_SIZE).contains(&config.page_size) {
            return Err(Ga4Error::InvalidRequest(format!(
                "page_size {} must be between 1 and {MAX_PAGE_SIZE}",
                config.page_size
            )));
        }
        let http = crate::http::client_builder()
            .timeout(config.timeout)
            .build()
            .map_err(|source| Ga4Error::Transport {
                method: "client",
                url: config.api_base.clone(),
                source,
            })?;
        Ok(Ga4Client {
            tokens: TokenSource::new(key, http.clone()),
            http,
            config,
            permits: Mutex::new(HashMap::new()),
        })
    }

    /// The client's settings.
    pub fn config(&self) -> &Ga4Config {
        &self.config
    }

    /// Runs one report and pages through it: from `request.offset` until `request.limit` rows
    /// (all rows when unset) or `rowCount`, [`Ga4Config::page_size`] rows per request.
    pub async fn run_report(
        &self,
        property: &str,
        request: &RunReportRequest,
    ) -> Result<Report, Ga4Error> {
        let property = property_name(property);
        let mut first_page = request.clone();
        first_page.limit = Some(
            request
                .limit
                .map_or(self.config.page_size, |l| l.min(self.config.page_size)),
        );
        if request.limit.is_some_and(|l| l < 1) {
            return Err(Ga4Error::InvalidRequest("limit must be positive".into()));
        }
        let first = self.run_report_page(&property, &first_page).await?;
        self.finish_paging(&property, request, first).await
    }

    /// Sends one `runReport` request as it is (no paging).
    pub async fn run_report_page(
        &self,
        property: &str,
        request: &RunReportRequest,
    ) -> Result<RunReportResponse, Ga4Error> {
        let property = property_name(property);
        let mut request = request.clone();
        request.property = None;
        if request.limit.is_none() {
            request.limit = Some(self.config.page_size);
        }
        check_limit(&request)?;
        let url = format!("{}/v1beta/{property}:runReport", self.base());
        self.call("runReport", &property, Some(&request), &url)
            .await
    }

    /// Runs up to [`MAX_BATCH`] reports of one property in one request, then pages each one
    /// that has more rows than its first page with `runReport`.
    pub async fn batch_run_reports(
        &self,
        property: &str,
        requests: &[RunReportRequest],
    ) -> Result<Vec<Report>, Ga4Error> {
        if requests.is_empty() || requests.len() > MAX_BATCH {
            return Err(Ga4Error::InvalidRequest(format!(
                "batchRunReports takes 1 to {MAX_BATCH} requests, got {}",
                requests.len()
            )));
        }
        let property = property_name(property);
        let mut batch = BatchRunReportsRequest {
            requests: requests.to_vec(),
        };
        for (r, original) in batch.requests.iter_mut().zip(requests) {
            if let Some(p) = &original.property
                && property_name(p) != property
            {
                return Err(Ga4Error::InvalidRequest(format!(
                    "a batch is for one property: {property} got a request for {p}"
                )));
            }
            r.property = None;
            r.limit = Some(
                original
                    .limit
                    .map_or(self.config.page_size, |l| l.min(self.config.page_size)),
            );
            check_limit(r)?;
        }
        let url = format!("{}/v1beta/{property}:batchRunReports", self.base());
        let response: BatchRunReportsResponse = self
            .call("batchRunReports", &property, Some(&batch), &url)
            .await?;
        if response.reports.len() != requests.len() {
            return Err(Ga4Error::Decode {
                method: "batchRunReports",
                message: format!(
                    "{} reports for {} requests",
                    response.reports.len(),
                    requests.len()
                ),
            });
        }
        let mut out = Vec::with_capacity(requests.len());
        for (first, request) in response.reports.into_iter().zip(requests) {
            out.push(self.finish_paging(&property, request, first).await?);
        }
        Ok(out)
    }

    /// The property's dimensions and metrics, custom definitions included.
    pub async fn get_metadata(&self, property: &str) -> Result<Metadata, Ga4Error> {
        let property = property_name(property);
        let url = format!("{}/v1beta/{property}/metadata", self.base());
        self.call::<(), _>("getMetadata", &property, None, &url)
            .await
    }

    fn base(&self) -> &str {
        self.config.api_base.trim_end_matches('/')
    }

    async fn finish_paging(
        &self,
        property: &str,
        request: &RunReportRequest,
        first: RunReportResponse,
    ) -> Result<Report, Ga4Error> {
        let start = request.offset.unwrap_or(0).max(0);
        let wanted = request.limit;
        let row_count = first.row_count.unwrap_or(0).max(0);
        let mut fetched = first.rows.len() as i64;
        let mut pages = vec![first];
        while start + fetched < row_count && wanted.is_none_or(|w| fetched < w) {
            let mut next = request.clone();
            next.offset = Some(start + fetched);
            next.limit = Some(wanted.map_or(self.config.page_size, |w| {
                (w - fetched).min(self.config.page_size)
            }));
            // Totals and quota come with the first page; no need to pay for them again.
            next.metric_aggregations.clear();
            let page = self.run_report_page(property, &next).await?;
            if page.rows.is_empty() {
                break;
            }
            fetched += page.rows.len() as i64;
            pages.push(page);
        }
        let mut report = Report::from_pages(property, pages)?;
        if let Some(day) = report
            .property_quota
            .as_ref()
            .and_then(|q| q.tokens_per_day)
        {
            tracing::debug!(
                property,
                tokens_per_day_remaining = day.remaining,
                tokens_consumed = day.consumed,
                "GA4 property quota"
            );
            if day.remaining < LOW_DAILY_TOKENS {
                report.warnings.push(format!(
                    "GA4 property {property} has {} of its daily tokens left; reports will \
                     fail once they are gone (the quota resets at midnight Pacific time)",
                    day.remaining
                ));
            }
        }
        for w in &report.warnings {
            tracing::warn!(property, warning = %w, "GA4 report warning");
        }
        tracing::debug!(
            property,
            rows = report.num_rows(),
            row_count = report.row_count,
            pages = report.pages,
            "GA4 report fetched"
        );
        Ok(report)
    }

    fn permits(&self, property: &str) -> Arc<Semaphore> {
        let mut permits = self
            .permits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(permits.entry(property.to_string()).or_insert_with(|| {
            Arc::new(Semaphore::new(
                self.config.max_concurrent_per_property.max(1),
            ))
        }))
    }

    /// Sends one call with auth, the property's concurrency limit and backoff.
    async fn call<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        method: &'static str,
        property: &str,
        body: Option<&B>,
        url: &str,
    ) -> Result<T, Ga4Error> {
        let permits = self.permits(property);
        let mut attempts = 0u32;
        let mut waited = Duration::ZERO;
        let mut refreshed = false;
        loop {
            attempts += 1;
            let token = self.tokens.token().await?;
            let (status, retry_after, text) = {
                let _permit = permits.acquire().await.map_err(|_| {
                    Ga4Error::InvalidRequest("the client's request limiter is closed".into())
                })?;
                let request = match body {
                    Some(b) => self.http.post(url).json(b),
                    None => self.http.get(url),
                };
                let response = match request.bearer_auth(&token).send().await {
                    Ok(r) => r,
                    // A dropped connection or a timeout: worth another try after a pause.
                    Err(source) if attempts < self.config.max_attempts => {
                        let delay = self.backoff(attempts);
                        tracing::warn!(method, property, attempt = attempts, error = %source,
                            "GA4 request failed; retrying");
                        drop(_permit);
                        tokio::time::sleep(delay).await;
                        waited += delay;
                        continue;
                    }
                    Err(source) => {
                        return Err(Ga4Error::Transport {
                            method,
                            url: url.to_string(),
                            source,
                        });
                    }
                };
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let text = response
                    .text()
                    .await
                    .map_err(|source| Ga4Error::Transport {
                        method,
                        url: url.to_string(),
                        source,
                    })?;
                (status, retry_after, text)
            };
            if status.is_success() {
                return serde_json::from_str(&text).map_err(|e| Ga4Error::Decode {
                    method,
                    message: format!("{e}: {}", truncate(&text)),
                });
            }
            let (google_status, message) = match serde_json::from_str::<ErrorBody>(&text) {
                Ok(b) => (b.error.status, b.error.message),
                Err(_) => (String::new(), truncate(&text).to_string()),
            };
            if status == reqwest::StatusCode::UNAUTHORIZED && !refreshed {
                // The cached token may have been revoked early; one fresh token, then give up.
                refreshed = true;
                self.tokens.invalidate().await;
                continue;
            }
            let exhausted = status == reqwest::StatusCode::TOO_MANY_REQUESTS
                || google_status == "RESOURCE_EXHAUSTED";
            if exhausted && is_daily(&message) {
                return Err(Ga4Error::DailyQuotaExhausted {
                    property: property.to_string(),
                    message,
                });
            }
            // Google asks clients to retry 500, 503 and 504 with exponential backoff too.
            let transient = exhausted
                || matches!(status.as_u16(), 500 | 503 | 504)
                || google_status == "UNAVAILABLE";
            if transient && attempts < self.config.max_attempts {
                let delay = retry_after
                    .unwrap_or_else(|| self.backoff(attempts))
                    .min(self.config.max_backoff);
                tracing::warn!(
                    method,
                    property,
                    attempt = attempts,
                    delay_ms = delay.as_millis() as u64,
                    status = %google_status,
                    "GA4 rate limited; backing off"
                );
                tokio::time::sleep(delay).await;
                waited += delay;
                continue;
            }
            if exhausted {
                return Err(Ga4Error::RateLimited {
                    method,
                    property: property.to_string(),
                    attempts,
                    waited,
                    message,
                });
            }
            return Err(Ga4Error::Api {
                method,
                property: property.to_string(),
                http_status: status.as_u16(),
                status: google_status,
                message,
            });
        }
    }

    /// Exponential backoff with up to 50 % jitter, so clients that were limited together do
    /// not retry together.
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .config
            .initial_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.config.max_backoff);
        let jitter_ms = (base.as_millis() as u64 / 2).max(1);
        base + Duration::from_millis(rand::rng().random_range(0..jitter_ms))
    }
}

fn check_limit(request: &RunReportRequest) -> Result<(), Ga4Error> {
    if let Some(l) = request.limit
        && !(1..=MAX_PAGE_SIZE).contains(&l)
    {
        return Err(Ga4Error::InvalidRequest(format!(
            "limit {l} must be between 1 and {MAX_PAGE_SIZE}"
        )));
    }
    if request.offset.is_some_and(|o| o < 0) {
        return Err(Ga4Error::InvalidRequest(
            "offset must not be negative".into(),
        ));
    }
    Ok(())
}

/// Whether a quota message is about the daily budget (GA4: "Exhausted property tokens per day
/// quota"), which backoff cannot fix.
fn is_daily(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("per day") || m.contains("tokensperday") || m.contains("daily")
}
