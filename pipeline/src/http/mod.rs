//! The HTTP API (axum): one module per resource; this one holds what they share
//! (authentication, errors, the router).
//!
//! Every `/v1` request carries a tenant API key (`Authorization: Bearer <key>` or `X-Api-Key`);
//! the tenant comes only from the key. Ids are scoped per tenant: another tenant's object
//! answers 404 exactly like an absent one, and two tenants may use the same id.
//! Errors are JSON: `{"error": {"code": "...", "message": "...", "field": "..."}}`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use connectors::secrets::SecretsError;
use connectors::sinks::{Destination, SinkError, SinkSettings};
use connectors::store::{
    AppendOutcome, DeliveryStatus, NotificationCursor, NotificationFilter, Store,
    StoredDestination, StoredRule,
};
use operators::{CompiledRule, RuleSpec};
use serde::Deserialize;
use serde_json::{Value, json};

mod audiences;
mod campaigns;
pub mod dashboards;
mod destinations;
mod events;
pub mod listener;
mod notifications;
pub mod query;
pub mod reports;
mod rules;
mod secrets;
mod sources;

use crate::auth::AuthThrottle;
pub use crate::auth::key_hash;
use crate::deliver::SecretsHandle;
use crate::generate;
use crate::ingest::{RuleUpdate, Runtime, now_ms};
use crate::metrics::Metrics;
use crate::server::sources::SourcesHealth;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The ingest runtime.
    pub runtime: Arc<Runtime>,
    /// The tenants' credentials.
    secrets: SecretsHandle,
    keys: Arc<KeyTenants>,
    throttle: Arc<AuthThrottle>,
    /// The outbound guard and limits destinations are checked against when defined.
    sink_settings: Arc<SinkSettings>,
    /// The event sources' health, for `/healthz`.
    sources: SourcesHealth,
    /// The audience engine's handle (contacts, audiences), when it runs.
    audiences: Option<Arc<crate::audiences::AudienceService>>,
    /// The key unsubscribe links are signed with, when campaigns run.
    unsubscribe_key: Option<crate::campaigns::TokenKey>,
}

impl AppState {
    /// State over a runtime and the secrets store; failed logins are counted in `throttle`
    /// (shared with pgwire).
    pub fn new(
        runtime: Arc<Runtime>,
        secrets: SecretsHandle,
        throttle: Arc<AuthThrottle>,
    ) -> AppState {
        AppState {
            runtime,
            secrets,
            keys: Default::default(),
            throttle,
            sink_settings: Default::default(),
            sources: Default::default(),
            audiences: None,
            unsubscribe_key: None,
        }
    }

    /// The same state checking destinations against `settings` (by default: public addresses
    /// only, the default timeout maximum).
    pub fn with_sink_settings(self, settings: Arc<SinkSettings>) -> AppState {
        AppState {
            sink_settings: settings,
            ..self
        }
    }

    /// The state with the event sources whose health `/healthz` shows.
    pub fn with_sources(self, sources: SourcesHealth) -> AppState {
        AppState { sources, ..self }
    }

    /// The state with the audience engine's handle.
    pub fn with_audiences(self, audiences: Arc<crate::audiences::AudienceService>) -> AppState {
        AppState {
            audiences: Some(audiences),
            ..self
        }
    }

    /// The state with campaigns' unsubscribe links checked against `key`.
    pub fn with_unsubscribe_key(self, key: crate::campaigns::TokenKey) -> AppState {
        AppState {
            unsubscribe_key: Some(key),
            ..self
        }
    }

    fn store(&self) -> Arc<dyn Store> {
        self.runtime.store().clone()
    }

    /// The tenants of the API keys seen so far (shared with whatever else authenticates keys).
    pub(crate) fn key_tenants(&self) -> Arc<KeyTenants> {
        self.keys.clone()
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        self.runtime.metrics()
    }
}

/// The router, with the body limit from config.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/sources/dead-letters", get(sources::list_dead_letters))
        .route("/metrics", get(metrics))
        .route("/v1/events", post(events::post_events))
        .route("/v1/rules", get(rules::list_rules).post(rules::create_rule))
        .route(
            "/v1/rules/{id}",
            get(rules::get_rule)
                .put(rules::update_rule)
                .delete(rules::delete_rule),
        )
        .route("/v1/rules/{id}/enable", post(rules::enable_rule))
        .route("/v1/rules/{id}/disable", post(rules::disable_rule))
        .route(
            "/v1/destinations",
            get(destinations::list_destinations).post(destinations::create_destination),
        )
        .route(
            "/v1/destinations/{id}",
            get(destinations::get_destination)
                .put(destinations::update_destination)
                .delete(destinations::delete_destination),
        )
        .route("/v1/notifications", get(notifications::list_notifications))
        .route(
            "/v1/notifications/{id}",
            get(notifications::get_notification),
        )
        .route("/v1/stats", get(notifications::stats))
        .route("/v1/alerts", get(notifications::open_alerts))
        .route("/v1/secrets", get(secrets::list_secrets))
        .route(
            "/v1/secrets/{name}",
            get(secrets::get_secret)
                .put(secrets::put_secret)
                .delete(secrets::delete_secret),
        )
        .route(
            "/v1/secrets/{name}/rollback",
            post(secrets::rollback_secret),
        )
        .route("/v1/contacts", get(audiences::list_contacts))
        .route("/v1/contacts/bulk", post(audiences::bulk_contacts))
        .route(
            "/v1/contacts/{id}",
            get(audiences::get_contact)
                .put(audiences::put_contact)
                .delete(audiences::delete_contact),
        )
        .route(
            "/v1/audiences",
            get(audiences::list_audiences).post(audiences::create_audience),
        )
        .route(
            "/v1/audiences/{id}",
            get(audiences::get_audience)
                .put(audiences::update_audience)
                .delete(audiences::delete_audience),
        )
        .route(
            "/v1/audiences/{id}/members",
            get(audiences::audience_members),
        )
        .route("/v1/audiences/{id}/sizes", get(audiences::audience_sizes))
        .route(
            "/v1/contacts/{id}/messages",
            get(campaigns::contact_messages),
        )
        .route(
            "/v1/campaigns",
            get(campaigns::list_campaigns).post(campaigns::create_campaign),
        )
        .route(
            "/v1/campaigns/{id}",
            get(campaigns::get_campaign)
                .put(campaigns::update_campaign)
                .delete(campaigns::delete_campaign),
        )
        .route(
            "/unsubscribe/{token}",
            get(campaigns::unsubscribe_page).post(campaigns::unsubscribe),
        )
        .fallback(no_such_endpoint)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// An API error: status, stable code, message, and the field concerned if any.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// Adds a `Retry-After` header (seconds) to the answer.
    pub(crate) fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }

    pub(crate) fn field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    /// A store error: a 503 with `Retry-After` when it may pass (the database is down or
    /// restarting), else a 500.
    pub(crate) fn store(e: connectors::store::StoreError) -> ApiError {
        if e.is_transient() {
            tracing::warn!(error = %e, "request failed: the store is unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the store is unavailable; retry shortly",
            )
            .retry_after(1)
        } else {
            ApiError::internal(e)
        }
    }

    pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(field) = self.field {
            error["field"] = json!(field);
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        response
    }
}

type ApiResult<T> = Result<T, ApiError>;

async fn blocking<T: Send + 'static>(
    store: Arc<dyn Store>,
    f: impl FnOnce(&dyn Store) -> Result<T, connectors::store::StoreError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::store)
}

/// The authenticated tenant.
pub struct Tenant(pub String);

/// A tenant the web console has already authenticated (by its session). The console sets it on
/// the requests it hands to this router; it is a request extension, which nothing on the network
/// can set.
#[derive(Clone, Debug)]
pub(crate) struct SignedIn(pub(crate) String);

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(SignedIn(tenant)) = parts.extensions.get::<SignedIn>() {
            return Ok(Tenant(tenant.clone()));
        }
        let client = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        // A throttled client is refused before its key is looked at: it learns nothing.
        if let Err(wait) = state.throttle.check(client, None) {
            return Err(too_many_failures(wait));
        }
        let Some(key) = api_key(&parts.headers) else {
            state.throttle.failed(client, None);
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "an API key is required: send 'Authorization: Bearer <key>' or 'X-Api-Key: <key>'",
            ));
        };
        let Some(tenant) = state.keys.tenant(state.runtime.store(), &key).await? else {
            state.throttle.failed(client, None);
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "unknown API key",
            ));
        };
        Ok(Tenant(tenant))
    }
}

/// The tenants of the API keys seen so far, by key hash: each key is looked up in the store once.
#[derive(Debug, Default)]
pub(crate) struct KeyTenants(RwLock<HashMap<String, String>>);

impl KeyTenants {
    /// The tenant `key` belongs to; `None` for a key the store does not know.
    pub(crate) async fn tenant(
        &self,
        store: &Arc<dyn Store>,
        key: &str,
    ) -> ApiResult<Option<String>> {
        let hash = key_hash(key);
        if let Some(tenant) = self.0.read().ok().and_then(|k| k.get(&hash).cloned()) {
            return Ok(Some(tenant));
        }
        let lookup = hash.clone();
        let tenant = blocking(store.clone(), move |s| s.tenant_for_api_key(&lookup)).await?;
        if let Some(tenant) = &tenant
            && let Ok(mut keys) = self.0.write()
        {
            keys.insert(hash, tenant.clone());
        }
        Ok(tenant)
    }
}

/// 429 for a client that failed to authenticate too often.
fn too_many_failures(wait: Duration) -> ApiError {
    let seconds = wait.as_secs().max(1);
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_failed_logins",
        format!("too many failed authentications from this address; retry in {seconds} s"),
    )
    .retry_after(seconds)
}

pub(crate) fn api_key(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let value = value.trim();
        if let Some(key) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        {
            return Some(key.trim().to_string()).filter(|k| !k.is_empty());
        }
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
        .filter(|k| !k.is_empty())
}

// Without these, axum answers unknown paths and methods with an empty body, not JSON errors.
async fn no_such_endpoint(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no endpoint {}", uri.path()),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not supported on {}", uri.path()),
    )
}

/// `"ok"`, or `"degraded"` while a source cannot read (each source's state, partitions and lag
/// are listed under `sources`).
async fn healthz(State(state): State<AppState>) -> Json<Value> {
    let status = if state.sources.all_healthy() {
        "ok"
    } else {
        "degraded"
    };
    Json(json!({"status": status, "sources": state.sources.snapshot()}))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let store = state.store();
    if let Some(stats) = store.pool_stats() {
        state.metrics().set_store_pool(&stats);
    }
    if let Ok(counts) = blocking(store, |s| s.delivery_counts()).await {
        for (status, count) in counts {
            match status {
                DeliveryStatus::Pending => {
                    state.metrics().deliveries_pending.set(count as i64);
                }
                DeliveryStatus::Dead => {
                    state.metrics().deliveries_dead.set(count as i64);
                }
                DeliveryStatus::Delivered => {}
            }
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics().render(),
    )
}

// ---- shared by the resources ----

fn valid_id(id: &str) -> ApiResult<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_id",
            format!("'{id}' is not a valid id: use 1-128 characters of A-Z a-z 0-9 - _ ."),
        )
        .field("id"))
    }
}

fn new_id(prefix: &str) -> String {
    let bytes: [u8; 8] = rand::random();
    format!(
        "{prefix}_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// The answer for an id the tenant has no object under: the same whether nobody uses the id or
/// another tenant does, so ids tell nothing across tenants.
fn not_found(what: &str, id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no {what} '{id}'"),
    )
}
