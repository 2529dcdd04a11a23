//! `/v1/model` and `/v1/dashboards`: what a question can be built from, and saved dashboards.
//!
//! `GET /v1/model` lists the semantic model's sources with their measures (aggregation, display
//! format) and dimensions (type, time grains), for anything that builds specs (the console's
//! question builder among them).
//!
//! A dashboard is a title and 1 to [`MAX_PANELS`] panels, each a titled dashboard spec (the JSON
//! of `POST /v1/query`):
//! `{"id": "weekly", "title": "Weekly", "panels": [{"title": "Revenue", "spec": {…}}]}`.
//! Every spec is checked against the model when the dashboard is saved (a 400 naming
//! `panels[i].spec.<field>`), so a saved dashboard never fails for a spelling mistake later.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use connectors::store::StoredDashboard;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::query::{Caller, DashboardState};
use super::{ApiError, ApiResult, blocking, new_id, not_found, valid_id};
use crate::ingest::now_ms;

/// The most panels one dashboard holds.
pub const MAX_PANELS: usize = 12;
/// The longest title, characters.
const MAX_TITLE: usize = 200;

/// The dashboard routes, to merge into the API's router.
pub fn router(state: DashboardState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/model", get(model))
        .route(
            "/v1/dashboards",
            get(list_dashboards).post(create_dashboard),
        )
        .route(
            "/v1/dashboards/{id}",
            get(get_dashboard)
                .put(update_dashboard)
                .delete(delete_dashboard),
        )
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// A saved dashboard as the API reads and writes it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DashboardDoc {
    /// Its id (given on create, or made up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Its title.
    pub title: String,
    /// Its panels, in order.
    pub panels: Vec<Panel>,
}

/// One panel: a titled dashboard spec.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Panel {
    /// The panel's heading.
    #[serde(default)]
    pub title: String,
    /// The question, as `POST /v1/query` takes it.
    pub spec: Value,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_dashboard", message).field(field)
}

impl DashboardDoc {
    /// Parses and checks a dashboard: its title, its panels and every spec against the model.
    pub fn parse(body: &[u8], model: &sql::model::SemanticModel) -> ApiResult<DashboardDoc> {
        let doc: DashboardDoc = serde_json::from_slice(body)
            .map_err(|e| bad("dashboard", format!("dashboard: {e}")))?;
        let title = doc.title.trim();
        if title.is_empty() || title.chars().count() > MAX_TITLE {
            return Err(bad("title", format!("must be 1 to {MAX_TITLE} characters")));
        }
        if doc.panels.is_empty() || doc.panels.len() > MAX_PANELS {
            return Err(bad(
                "panels",
                format!("a dashboard has 1 to {MAX_PANELS} panels"),
            ));
        }
        let now = chrono::Utc::now();
        for (i, panel) in doc.panels.iter().enumerate() {
            if panel.title.chars().count() > MAX_TITLE {
                return Err(bad(
                    format!("panels[{i}].title"),
                    format!("at most {MAX_TITLE} characters"),
                ));
            }
            sql::spec::parse(model, &panel.spec, now).map_err(|e| match e {
                sql::SqlError::BadRequest { field, message } => {
                    bad(format!("panels[{i}].spec.{field}"), message)
                }
                other => bad(format!("panels[{i}].spec"), other.to_string()),
            })?;
        }
        Ok(doc)
    }

    fn view(stored: &StoredDashboard) -> Value {
        let mut body: Value = serde_json::from_str(&stored.body).unwrap_or_else(|_| json!({}));
        body["id"] = json!(stored.id);
        body["title"] = json!(stored.title);
        body["updated_at_ms"] = json!(stored.updated_at_ms);
        body
    }
}

/// The semantic model, for builders of specs.
async fn model(State(state): State<DashboardState>, Caller(_): Caller) -> Json<Value> {
    Json(model_json(state.engine.model()))
}

/// The model as `GET /v1/model` shows it.
pub fn model_json(model: &sql::model::SemanticModel) -> Value {
    let sources: Vec<Value> = model
        .sources()
        .map(|source| {
            let measures: Vec<Value> = source
                .measures
                .values()
                .map(|m| {
                    json!({
                        "name": format!("{}.{}", source.name, m.name),
                        "description": m.description,
                        "format": m.format,
                    })
                })
                .collect();
            let dimensions: Vec<Value> = source
                .dimensions
                .values()
                .map(|d| {
                    let grains: Vec<&str> = if d.kind == sql::model::DimensionType::Time {
                        if d.grains.is_empty() {
                            sql::model::Grain::ALL.iter().map(|g| g.as_str()).collect()
                        } else {
                            d.grains.iter().map(|g| g.as_str()).collect()
                        }
                    } else {
                        Vec::new()
                    };
                    json!({
                        "name": format!("{}.{}", source.name, d.name),
                        "type": d.kind.to_string(),
                        "grains": grains,
                        "description": d.description,
                    })
                })
                .collect();
            json!({
                "name": source.name,
                "description": source.description,
                "measures": measures,
                "dimensions": dimensions,
            })
        })
        .collect();
    json!({ "sources": sources })
}

async fn list_dashboards(
    State(state): State<DashboardState>,
    Caller(tenant): Caller,
) -> ApiResult<Json<Value>> {
    let list = blocking(state.app.runtime.store().clone(), move |s| {
        s.list_dashboards(&tenant)
    })
    .await?;
    let dashboards: Vec<Value> = list.iter().map(DashboardDoc::view).collect();
    Ok(Json(json!({ "dashboards": dashboards })))
}

async fn save(
    state: &DashboardState,
    tenant: &str,
    id: &str,
    doc: DashboardDoc,
) -> ApiResult<Value> {
    let stored = StoredDashboard {
        tenant: tenant.to_string(),
        id: id.to_string(),
        title: doc.title.trim().to_string(),
        body: serde_json::to_string(&json!({ "panels": doc.panels }))
            .map_err(ApiError::internal)?,
        updated_at_ms: now_ms(),
    };
    let copy = stored.clone();
    blocking(state.app.runtime.store().clone(), move |s| {
        s.put_dashboard(&copy)
    })
    .await?;
    Ok(DashboardDoc::view(&stored))
}

async fn create_dashboard(
    State(state): State<DashboardState>,
    Caller(tenant): Caller,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let doc = DashboardDoc::parse(&body, state.engine.model())?;
    let id = match &doc.id {
        Some(id) => {
            valid_id(id)?;
            id.clone()
        }
        None => new_id("dash"),
    };
    let (t, i) = (tenant.clone(), id.clone());
    if blocking(state.app.runtime.store().clone(), move |s| {
        s.get_dashboard(&t, &i)
    })
    .await?
    .is_some()
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("dashboard '{id}' already exists; PUT /v1/dashboards/{id} changes it"),
        )
        .field("id"));
    }
    Ok((
        StatusCode::CREATED,
        Json(save(&state, &tenant, &id, doc).await?),
    ))
}

async fn get_dashboard(
    State(state): State<DashboardState>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let i = id.clone();
    match blocking(state.app.runtime.store().clone(), move |s| {
        s.get_dashboard(&tenant, &i)
    })
    .await?
    {
        Some(stored) => Ok(Json(DashboardDoc::view(&stored))),
        None => Err(not_found("dashboard", &id)),
    }
}

async fn update_dashboard(
    State(state): State<DashboardState>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    valid_id(&id)?;
    let doc = DashboardDoc::parse(&body, state.engine.model())?;
    if doc.id.as_deref().is_some_and(|given| given != id) {
        return Err(bad("id", "the body's id differs from the path's"));
    }
    Ok(Json(save(&state, &tenant, &id, doc).await?))
}

async fn delete_dashboard(
    State(state): State<DashboardState>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let i = id.clone();
    if blocking(state.app.runtime.store().clone(), move |s| {
        s.delete_dashboard(&tenant, &i)
    })
    .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found("dashboard", &id))
    }
}
