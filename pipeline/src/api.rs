//! The HTTP API (axum).
//!
//! Every `/v1` request carries a tenant API key (`Authorization: Bearer <key>` or `X-Api-Key`);
//! the tenant comes only from the key. Objects of another tenant answer 403, unknown ones 404.
//! Errors are JSON: `{"error": {"code": "...", "message": "...", "field": "..."}}`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use connectors::secrets::SecretsError;
use connectors::sinks::DestinationConfig;
use connectors::sinks::webhook::Credential;
use connectors::store::{
    AppendOutcome, DeliveryStatus, NotificationCursor, NotificationFilter, ObjectKind, Store,
    StoredDestination, StoredRule,
};
use operators::{Event, RuleChange, RuleSpec};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::metrics::Metrics;
use crate::render;
use crate::runtime::{RuleUpdate, Runtime, now_ms, rule_update};
use crate::sender::SecretsHandle;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The ingest runtime.
    pub runtime: Arc<Runtime>,
    /// The tenants' credentials.
    secrets: SecretsHandle,
    keys: Arc<RwLock<HashMap<String, String>>>,
}

impl AppState {
    /// State over a runtime and the secrets store.
    pub fn new(runtime: Arc<Runtime>, secrets: SecretsHandle) -> AppState {
        AppState {
            runtime,
            secrets,
            keys: Default::default(),
        }
    }

    fn store(&self) -> Arc<dyn Store> {
        self.runtime.store().clone()
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        self.runtime.metrics()
    }
}

/// The router, with the body limit from config.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/events", post(post_events))
        .route("/v1/rules", get(list_rules).post(create_rule))
        .route(
            "/v1/rules/{id}",
            get(get_rule).put(update_rule).delete(delete_rule),
        )
        .route("/v1/rules/{id}/enable", post(enable_rule))
        .route("/v1/rules/{id}/disable", post(disable_rule))
        .route(
            "/v1/destinations",
            get(list_destinations).post(create_destination),
        )
        .route(
            "/v1/destinations/{id}",
            get(get_destination)
                .put(update_destination)
                .delete(delete_destination),
        )
        .route("/v1/notifications", get(list_notifications))
        .route("/v1/notifications/{id}", get(get_notification))
        .route("/v1/stats", get(stats))
        .route("/v1/secrets", get(list_secrets))
        .route(
            "/v1/secrets/{name}",
            get(get_secret).put(put_secret).delete(delete_secret),
        )
        .route("/v1/secrets/{name}/rollback", post(rollback_secret))
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
        }
    }

    pub(crate) fn field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
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
        (self.status, Json(json!({ "error": error }))).into_response()
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
        .map_err(ApiError::internal)
}

/// The authenticated tenant.
pub struct Tenant(pub String);

/// SHA-256 hex of an API key: the only form keys are stored in.
pub fn key_hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let key = api_key(&parts.headers).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "an API key is required: send 'Authorization: Bearer <key>' or 'X-Api-Key: <key>'",
            )
        })?;
        let hash = key_hash(&key);
        if let Some(tenant) = state.keys.read().ok().and_then(|k| k.get(&hash).cloned()) {
            return Ok(Tenant(tenant));
        }
        let lookup = hash.clone();
        let tenant = blocking(state.store(), move |s| s.tenant_for_api_key(&lookup))
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "unknown API key",
                )
            })?;
        if let Ok(mut keys) = state.keys.write() {
            keys.insert(hash, tenant.clone());
        }
        Ok(Tenant(tenant))
    }
}

fn api_key(headers: &HeaderMap) -> Option<String> {
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

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let store = state.store();
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

// ---- events ----

async fn post_events(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    body: Bytes,
) -> ApiResult<Response> {
    let text = std::str::from_utf8(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("body is not UTF-8: {e}"),
        )
    })?;
    let mut errors = Vec::new();
    let mut events = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut within_request_duplicates = 0u64;
    let mut take = |value: Result<Value, String>, position: Value| match value
        .and_then(|v| Event::from_json(&v, &tenant).map_err(|e| e.to_string()))
    {
        Ok(event) => {
            if seen.insert(event.id.clone()) {
                events.push(event);
            } else {
                within_request_duplicates += 1;
            }
        }
        Err(message) => {
            let field = message.split(':').next().unwrap_or("").to_string();
            let mut error = position;
            error["message"] = json!(message);
            error["field"] = json!(field);
            errors.push(error);
        }
    };
    if text.trim_start().starts_with('[') {
        let items: Vec<Value> = serde_json::from_str(text).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("body is not a JSON array: {e}"),
            )
        })?;
        for (index, item) in items.into_iter().enumerate() {
            take(Ok(item), json!({"index": index}));
        }
    } else {
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let parsed = serde_json::from_str::<Value>(line)
                .map_err(|e| format!("event: not valid JSON ({e})"));
            take(parsed, json!({"line": n + 1}));
        }
    }
    let rejected = errors.len() as u64;
    if rejected > 0 {
        Metrics::inc(
            &state.metrics().events_rejected,
            "reason",
            "invalid",
            rejected,
        );
    }
    if events.is_empty() && rejected > 0 {
        return Ok((
            StatusCode::BAD_REQUEST,
            Json(json!({"accepted": 0, "duplicates": within_request_duplicates, "rejected": rejected, "errors": errors})),
        )
            .into_response());
    }
    let outcomes = if events.is_empty() {
        Vec::new()
    } else {
        state
            .runtime
            .ingest(&tenant, events)
            .await
            .map_err(|e| match e {
                crate::runtime::IngestError::ShuttingDown => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "shutting_down",
                    e.to_string(),
                ),
                crate::runtime::IngestError::Store(_) => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    e.to_string(),
                ),
            })?
    };
    let accepted = outcomes
        .iter()
        .filter(|o| matches!(o, AppendOutcome::Appended { .. }))
        .count();
    let duplicates = outcomes.len() - accepted + within_request_duplicates as usize;
    state
        .metrics()
        .events_duplicate
        .inc_by(within_request_duplicates);
    Ok(Json(json!({"accepted": accepted, "duplicates": duplicates, "rejected": rejected, "errors": errors})).into_response())
}

// ---- ownership ----

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

/// 404 when nobody owns `id`, 403 when another tenant does.
async fn not_yours(state: &AppState, kind: ObjectKind, tenant: &str, id: &str) -> ApiError {
    let lookup = id.to_string();
    let owner = blocking(state.store(), move |s| s.owner_of(kind, &lookup)).await;
    let what = match kind {
        ObjectKind::Rule => "rule",
        ObjectKind::Destination => "destination",
        ObjectKind::Notification => "notification",
    };
    match owner {
        Ok(Some(owner)) if owner != tenant => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("{what} '{id}' belongs to another tenant"),
        ),
        Ok(_) => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {what} '{id}'"),
        ),
        Err(e) => e,
    }
}

// ---- rules ----

fn rule_json(stored: &StoredRule) -> Value {
    let mut body: Value = serde_json::from_str(&stored.body).unwrap_or_else(|_| json!({}));
    body["id"] = json!(stored.id);
    body["version"] = json!(stored.version);
    body["enabled"] = json!(stored.enabled);
    body["updated_at_ms"] = json!(stored.updated_at_ms);
    body
}

fn parse_rule_spec(body: &Bytes) -> ApiResult<RuleSpec> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_rule",
            format!("rule: {e}"),
        )
        .field("rule")
    })
}

async fn tenant_tz(state: &AppState, tenant: &str) -> ApiResult<String> {
    let t = tenant.to_string();
    Ok(blocking(state.store(), move |s| s.get_tenant(&t))
        .await?
        .map(|t| t.time_zone)
        .unwrap_or_else(|| "UTC".into()))
}

/// Validates a spec fully (compiles it, checks the template and, when `check_destinations`,
/// that its destinations exist) and stores it.
async fn save_rule(
    state: &AppState,
    tenant: &str,
    id: &str,
    version: u64,
    mut spec: RuleSpec,
    enabled: bool,
    check_destinations: bool,
) -> ApiResult<StoredRule> {
    spec.id = Some(id.to_string());
    let tz = tenant_tz(state, tenant).await?;
    operators::Rule::compile(&spec, tenant, id, version, &tz).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_rule", e.to_string()).field(e.field.clone())
    })?;
    if let Some(template) = &spec.template {
        render::check_template(template).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_rule",
                format!("template: {e}"),
            )
            .field("template")
        })?;
    }
    let must_exist: &[String] = if check_destinations {
        &spec.destinations
    } else {
        &[]
    };
    for (i, destination) in must_exist.iter().enumerate() {
        let (t, d) = (tenant.to_string(), destination.clone());
        if blocking(state.store(), move |s| s.get_destination(&t, &d))
            .await?
            .is_none()
        {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_rule",
                format!("destinations[{i}]: no destination '{destination}'; create it first"),
            )
            .field(format!("destinations[{i}]")));
        }
    }
    let stored = StoredRule {
        tenant: tenant.to_string(),
        id: id.to_string(),
        version,
        enabled,
        body: serde_json::to_string(&spec).map_err(ApiError::internal)?,
        updated_at_ms: now_ms(),
    };
    let copy = stored.clone();
    blocking(state.store(), move |s| s.put_rule(&copy)).await?;
    let update = rule_update(&stored, &tz).map_err(ApiError::internal)?;
    state.runtime.rule_changed(update);
    Ok(stored)
}

async fn list_rules(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> ApiResult<Json<Value>> {
    let rules = blocking(state.store(), move |s| s.list_rules(Some(&tenant))).await?;
    Ok(Json(
        json!({"rules": rules.iter().map(rule_json).collect::<Vec<_>>()}),
    ))
}

async fn load_rule(state: &AppState, tenant: &str, id: &str) -> ApiResult<StoredRule> {
    let (t, i) = (tenant.to_string(), id.to_string());
    match blocking(state.store(), move |s| s.get_rule(&t, &i)).await? {
        Some(rule) => Ok(rule),
        None => Err(not_yours(state, ObjectKind::Rule, tenant, id).await),
    }
}

async fn get_rule(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(rule_json(&load_rule(&state, &tenant, &id).await?)))
}

async fn create_rule(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    body: Bytes,
) -> ApiResult<Response> {
    let spec = parse_rule_spec(&body)?;
    let id = spec.id.clone().unwrap_or_else(|| new_id("rule"));
    valid_id(&id)?;
    let lookup = id.clone();
    if let Some(owner) = blocking(state.store(), move |s| {
        s.owner_of(ObjectKind::Rule, &lookup)
    })
    .await?
    {
        let message = if owner == tenant {
            format!("rule '{id}' exists; change it with PUT /v1/rules/{id}")
        } else {
            format!("rule id '{id}' is taken; choose another")
        };
        return Err(ApiError::new(StatusCode::CONFLICT, "conflict", message).field("id"));
    }
    let enabled = spec.enabled;
    let stored = save_rule(&state, &tenant, &id, 1, spec, enabled, true).await?;
    Ok((StatusCode::CREATED, Json(rule_json(&stored))).into_response())
}

async fn update_rule(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let old = load_rule(&state, &tenant, &id).await?;
    let spec = parse_rule_spec(&body)?;
    if let Some(body_id) = &spec.id
        && body_id != &id
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_rule",
            format!("id: '{body_id}' differs from the URL's '{id}'"),
        )
        .field("id"));
    }
    let enabled = spec.enabled;
    let stored = save_rule(&state, &tenant, &id, old.version + 1, spec, enabled, true).await?;
    Ok(Json(rule_json(&stored)))
}

async fn set_enabled(
    state: AppState,
    tenant: String,
    id: String,
    enabled: bool,
) -> ApiResult<Json<Value>> {
    let old = load_rule(&state, &tenant, &id).await?;
    let mut spec: RuleSpec = serde_json::from_str(&old.body).map_err(ApiError::internal)?;
    spec.enabled = enabled;
    // Turning a rule off must work even after one of its destinations was deleted.
    let stored = save_rule(
        &state,
        &tenant,
        &id,
        old.version + 1,
        spec,
        enabled,
        enabled,
    )
    .await?;
    Ok(Json(rule_json(&stored)))
}

async fn enable_rule(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    set_enabled(state, tenant, id, true).await
}

async fn disable_rule(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    set_enabled(state, tenant, id, false).await
}

async fn delete_rule(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let (t, i) = (tenant.clone(), id.clone());
    if !blocking(state.store(), move |s| s.delete_rule(&t, &i)).await? {
        return Err(not_yours(&state, ObjectKind::Rule, &tenant, &id).await);
    }
    state.runtime.rule_changed(RuleUpdate {
        change: RuleChange::Remove {
            tenant,
            rule_id: id,
        },
        meta: None,
    });
    Ok(StatusCode::NO_CONTENT)
}

// ---- destinations ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DestinationBody {
    #[serde(default)]
    id: Option<String>,
    kind: String,
    config: Value,
}

/// A destination as shown: secrets are never returned.
fn destination_json(d: &StoredDestination) -> Value {
    let mut config: Value = serde_json::from_str(&d.config).unwrap_or_else(|_| json!({}));
    // Inline credentials are shown as "(set)"; references to the secrets store (a name only)
    // as written.
    if config.get("secret").is_some_and(Value::is_string) {
        config["secret"] = json!("(set)");
    }
    if let Some(headers) = config.get_mut("headers").and_then(|h| h.as_object_mut()) {
        for value in headers.values_mut() {
            if value.is_string() {
                *value = json!("(set)");
            }
        }
    }
    json!({"id": d.id, "kind": d.kind, "config": config, "updated_at_ms": d.updated_at_ms})
}

/// The body and its typed configuration (parsed once, for every check that follows).
fn parse_destination(body: &Bytes) -> ApiResult<(DestinationBody, DestinationConfig)> {
    let parsed: DestinationBody = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_destination",
            format!("destination: {e}"),
        )
    })?;
    let config = parsed.config.to_string();
    let typed = DestinationConfig::parse(&parsed.kind, &config).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_destination",
            e.to_string(),
        )
        .field("config")
    })?;
    if parsed.kind == "file" {
        let path = parsed
            .config
            .get("path")
            .and_then(|p| p.as_str())
            .unwrap_or("");
        let relative = std::path::Path::new(path);
        let contained = !path.is_empty()
            && relative
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if path != "-" && !contained {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_destination",
                format!(
                    "config.path: '{path}' must be '-' (standard output) or a relative path without '..'; \
                     files are written under the server's data directory, in files/<tenant>/"
                ),
            )
            .field("config.path"));
        }
    }
    if parsed.kind == "webhook" {
        let url = parsed
            .config
            .get("url")
            .and_then(|u| u.as_str())
            .unwrap_or("");
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_destination",
                format!("config.url: '{url}' is not an http(s) URL"),
            )
            .field("config.url"));
        }
        if let Some(secret) = parsed.config.get("secret").and_then(|s| s.as_str()) {
            connectors::sinks::webhook::WebhookSigner::new(secret).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_destination",
                    format!("config.secret: {e}"),
                )
                .field("config.secret")
            })?;
        }
    }
    Ok((parsed, typed))
}

/// Checks that every credential a destination names from the secrets store exists for the
/// tenant, so a typo is a 400 now rather than a dead delivery later.
async fn check_stored_credentials(
    state: &AppState,
    tenant: &str,
    config: &DestinationConfig,
) -> ApiResult<()> {
    let DestinationConfig::Webhook(webhook) = config else {
        return Ok(());
    };
    let mut named = Vec::new();
    if let Some(Credential::Stored(r)) = &webhook.secret {
        named.push(("config.secret".to_string(), r.secret.clone()));
    }
    for (header, credential) in &webhook.headers {
        if let Credential::Stored(r) = credential {
            named.push((format!("config.headers.{header}"), r.secret.clone()));
        }
    }
    if named.is_empty() {
        return Ok(());
    }
    let known = state.secrets.list(tenant).await.map_err(secrets_error)?;
    for (field, name) in named {
        if !known.iter().any(|s| s.name == name) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_destination",
                format!(
                    "{field}: there is no secret named '{name}'; create it first \
                     (PUT /v1/secrets/{name} or `tidemark secrets put`)"
                ),
            )
            .field(field));
        }
    }
    Ok(())
}

async fn list_destinations(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> ApiResult<Json<Value>> {
    let all = blocking(state.store(), move |s| s.list_destinations(&tenant)).await?;
    Ok(Json(
        json!({"destinations": all.iter().map(destination_json).collect::<Vec<_>>()}),
    ))
}

async fn load_destination(
    state: &AppState,
    tenant: &str,
    id: &str,
) -> ApiResult<StoredDestination> {
    let (t, i) = (tenant.to_string(), id.to_string());
    match blocking(state.store(), move |s| s.get_destination(&t, &i)).await? {
        Some(d) => Ok(d),
        None => Err(not_yours(state, ObjectKind::Destination, tenant, id).await),
    }
}

async fn get_destination(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(destination_json(
        &load_destination(&state, &tenant, &id).await?,
    )))
}

async fn create_destination(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    body: Bytes,
) -> ApiResult<Response> {
    let (parsed, config) = parse_destination(&body)?;
    check_stored_credentials(&state, &tenant, &config).await?;
    let id = parsed.id.clone().unwrap_or_else(|| new_id("dst"));
    valid_id(&id)?;
    let lookup = id.clone();
    if blocking(state.store(), move |s| {
        s.owner_of(ObjectKind::Destination, &lookup)
    })
    .await?
    .is_some()
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("destination id '{id}' is taken"),
        )
        .field("id"));
    }
    let stored = StoredDestination {
        tenant,
        id,
        kind: parsed.kind,
        config: parsed.config.to_string(),
        updated_at_ms: now_ms(),
    };
    let copy = stored.clone();
    blocking(state.store(), move |s| s.put_destination(&copy)).await?;
    Ok((StatusCode::CREATED, Json(destination_json(&stored))).into_response())
}

async fn update_destination(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    load_destination(&state, &tenant, &id).await?;
    let (parsed, config) = parse_destination(&body)?;
    check_stored_credentials(&state, &tenant, &config).await?;
    if let Some(body_id) = &parsed.id
        && body_id != &id
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_destination",
            format!("id: '{body_id}' differs from the URL's '{id}'"),
        )
        .field("id"));
    }
    let stored = StoredDestination {
        tenant,
        id,
        kind: parsed.kind,
        config: parsed.config.to_string(),
        updated_at_ms: now_ms(),
    };
    let copy = stored.clone();
    blocking(state.store(), move |s| s.put_destination(&copy)).await?;
    Ok(Json(destination_json(&stored)))
}

async fn delete_destination(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let (t, i) = (tenant.clone(), id.clone());
    if !blocking(state.store(), move |s| s.delete_destination(&t, &i)).await? {
        return Err(not_yours(&state, ObjectKind::Destination, &tenant, &id).await);
    }
    Ok(StatusCode::NO_CONTENT)
}

// ---- secrets ----
//
// Write-only: values go in and are used by destinations and connectors; they never come out.

fn secrets_error(e: SecretsError) -> ApiError {
    match e {
        SecretsError::NotFound { name, .. } => no_such_secret(&name),
        SecretsError::InvalidInput(message) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_secret", message)
        }
        e if e.is_transient() => {
            tracing::warn!(error = %e, "secrets store unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the secrets store is unavailable for now; retry later",
            )
        }
        e => ApiError::internal(e),
    }
}

fn no_such_secret(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("there is no secret named '{name}'"),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretBody {
    value: String,
}

async fn list_secrets(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> ApiResult<Json<Value>> {
    let all = state.secrets.list(&tenant).await.map_err(secrets_error)?;
    Ok(Json(json!({ "secrets": all })))
}

async fn get_secret(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let all = state.secrets.list(&tenant).await.map_err(secrets_error)?;
    match all.into_iter().find(|s| s.name == name) {
        Some(info) => Ok(Json(json!(info))),
        None => Err(no_such_secret(&name)),
    }
}

async fn put_secret(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let body: SecretBody = serde_json::from_slice(&body).map_err(|e| {
        // serde's message can quote the input; never echo a secret back.
        let message = if e.is_syntax() || e.is_eof() {
            "the body must be a JSON object {\"value\": \"...\"}".to_string()
        } else {
            format!(
                "the body must be {{\"value\": \"...\"}} (line {}, column {})",
                e.line(),
                e.column()
            )
        };
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_secret", message).field("value")
    })?;
    let value = zeroize::Zeroizing::new(body.value);
    let version = state
        .secrets
        .put(&tenant, &name, value.as_bytes())
        .await
        .map_err(secrets_error)?;
    Ok(Json(json!({"name": name, "version": version})))
}

async fn delete_secret(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    if state
        .secrets
        .delete(&tenant, &name)
        .await
        .map_err(secrets_error)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_such_secret(&name))
    }
}

async fn rollback_secret(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let version = state
        .secrets
        .rollback(&tenant, &name)
        .await
        .map_err(secrets_error)?;
    Ok(Json(json!({"name": name, "version": version})))
}

// ---- notifications ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotificationQuery {
    status: Option<String>,
    rule_id: Option<String>,
    limit: Option<usize>,
    /// `created_at_ms:id` of the last notification of the previous page.
    before: Option<String>,
}

async fn list_notifications(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    query: Result<Query<NotificationQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(query) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let status = match query.status.as_deref() {
        None => None,
        Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("status: '{s}' is not pending, delivered or dead"),
            )
            .field("status")
        })?),
    };
    let before = match query.before.as_deref() {
        None => None,
        Some(cursor) => {
            let (ms, id) = cursor.split_once(':').ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    "before: expected created_at_ms:id",
                )
                .field("before")
            })?;
            let created_at_ms = ms.parse().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    "before: expected created_at_ms:id",
                )
                .field("before")
            })?;
            Some(NotificationCursor {
                created_at_ms,
                id: id.to_string(),
            })
        }
    };
    let filter = NotificationFilter {
        status,
        rule_id: query.rule_id,
        limit: query.limit.unwrap_or(100).clamp(1, 1000),
        before,
    };
    let list = blocking(state.store(), move |s| {
        s.list_notifications(&tenant, &filter)
    })
    .await?;
    let next = list.last().map(|n| format!("{}:{}", n.created_at_ms, n.id));
    Ok(Json(json!({"notifications": list, "next": next})))
}

async fn get_notification(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (t, i) = (tenant.clone(), id.clone());
    match blocking(state.store(), move |s| s.get_notification(&t, &i)).await? {
        Some(n) => Ok(Json(serde_json::to_value(n).map_err(ApiError::internal)?)),
        None => Err(not_yours(&state, ObjectKind::Notification, &tenant, &id).await),
    }
}

async fn stats(State(state): State<AppState>, Tenant(tenant): Tenant) -> ApiResult<Json<Value>> {
    let t = tenant.clone();
    let events = blocking(state.store(), move |s| s.event_count(&t)).await?;
    let t = tenant.clone();
    let rules = blocking(state.store(), move |s| s.list_rules(Some(&t)))
        .await?
        .len();
    Ok(Json(
        json!({"tenant": tenant, "events": events, "rules": rules}),
    ))
}
