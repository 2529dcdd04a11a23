//! `/v1/reports`: scheduled BI reports — create, read, change, delete, run now, the runs with
//! each recipient's delivery, and a preview of the rendered report.
//!
//! A definition is checked whole before it is stored (schedule, zone, every block's query
//! against the semantic model, SQL blocks planned, templates, destinations), so a mistake is a
//! 400 naming the field now rather than a failed run later. Every change reaches the running
//! dataflow as a schedule change, without a restart.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use connectors::store::{NewReportRun, ReportRun, StoredReport};
use serde::Deserialize;
use serde_json::{Value, json};

use super::query::{DashboardState, refusal_error, sql_error};
use super::{ApiError, ApiResult, Tenant, blocking, new_id, not_found, valid_id};
use crate::generate::report::{
    DefinitionError, ReportGenerator, ReportSpec, RunRef, document, generate, schedule_of,
};
use crate::ingest::now_ms;

/// What the report handlers share.
#[derive(Clone)]
pub struct ReportsState {
    /// The dashboard engine and query runtime (block checks, previews).
    pub dashboards: DashboardState,
    /// The generator (woken for runs asked for by hand; its context renders previews).
    pub generator: Arc<ReportGenerator>,
}

/// The report routes, to merge into the API's router.
pub fn router(state: ReportsState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/reports", get(list_reports).post(create_report))
        .route(
            "/v1/reports/{id}",
            get(get_report).put(update_report).delete(delete_report),
        )
        .route("/v1/reports/{id}/run", post(run_report))
        .route("/v1/reports/{id}/runs", get(list_runs))
        .route("/v1/reports/{id}/preview", get(preview_report))
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// The authenticated tenant, through the API's own key check.
struct Caller(String);

impl FromRequestParts<ReportsState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ReportsState,
    ) -> Result<Self, Self::Rejection> {
        Tenant::from_request_parts(parts, &state.dashboards.app)
            .await
            .map(|Tenant(tenant)| Caller(tenant))
    }
}

fn invalid(e: DefinitionError) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_report", e.to_string()).field(e.field)
}

fn rfc3339(ms: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// A stored report as the API shows it: its definition, id, version, state and next runs.
fn report_json(stored: &StoredReport, tenant_tz: &str) -> Value {
    let mut body: Value = serde_json::from_str(&stored.body).unwrap_or_else(|_| json!({}));
    body["id"] = json!(stored.id);
    body["version"] = json!(stored.version);
    body["enabled"] = json!(stored.enabled);
    body["updated_at_ms"] = json!(stored.updated_at_ms);
    let next: Vec<String> = schedule_of(stored, tenant_tz, None)
        .map(|s| s.upcoming(now_ms(), 3))
        .unwrap_or_default()
        .into_iter()
        .filter_map(rfc3339)
        .collect();
    body["next_runs"] = json!(next);
    body
}

async fn tenant_tz(state: &ReportsState, tenant: &str) -> ApiResult<String> {
    super::rules::tenant_tz(&state.dashboards.app, tenant).await
}

async fn load_report(state: &ReportsState, tenant: &str, id: &str) -> ApiResult<StoredReport> {
    let (t, i) = (tenant.to_string(), id.to_string());
    blocking(state.dashboards.app.store(), move |s| s.get_report(&t, &i))
        .await?
        .ok_or_else(|| not_found("report", id))
}

/// Checks a definition whole: what [`ReportSpec::check`] covers, then each SQL block planned
/// (not run) by the engine, and each destination present.
async fn check_report(state: &ReportsState, tenant: &str, spec: &ReportSpec) -> ApiResult<()> {
    let tz = tenant_tz(state, tenant).await?;
    let limits = state.dashboards.app.runtime.template_limits();
    let model = state.dashboards.engine.model().clone();
    let copy = spec.clone();
    tokio::task::spawn_blocking(move || copy.check(&tz, &model, &limits))
        .await
        .map_err(ApiError::internal)?
        .map_err(invalid)?;
    for (i, block) in spec.blocks.iter().enumerate() {
        let Some(text) = &block.sql else { continue };
        let engine = state.dashboards.engine.clone();
        let (t, explain) = (tenant.to_string(), format!("EXPLAIN {text}"));
        let planned = state
            .dashboards
            .queries
            .run(tenant, async move { engine.sql(&t, &explain).await })
            .await
            .map_err(refusal_error)?;
        match planned {
            Ok(_) => {}
            Err(e) if e.is_client_error() => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_report",
                    format!("blocks[{i}].sql: {e}"),
                )
                .field(format!("blocks[{i}].sql")));
            }
            Err(e) => return Err(sql_error(e)),
        }
    }
    let destinations = {
        let t = tenant.to_string();
        blocking(state.dashboards.app.store(), move |s| {
            s.list_destinations(&t)
        })
        .await?
    };
    for (i, wanted) in spec.destinations.iter().enumerate() {
        if !destinations.iter().any(|d| d.id == wanted.id()) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_report",
                format!(
                    "destinations[{i}]: no destination '{}'; create it first",
                    wanted.id()
                ),
            )
            .field(format!("destinations[{i}]")));
        }
    }
    Ok(())
}

/// Stores a checked definition and tells the dataflow.
async fn save_report(
    state: &ReportsState,
    tenant: &str,
    id: &str,
    version: u64,
    mut spec: ReportSpec,
) -> ApiResult<StoredReport> {
    spec.id = Some(id.to_string());
    check_report(state, tenant, &spec).await?;
    let stored = StoredReport {
        tenant: tenant.to_string(),
        id: id.to_string(),
        version,
        enabled: spec.enabled,
        body: serde_json::to_string(&spec).map_err(ApiError::internal)?,
        updated_at_ms: now_ms(),
    };
    let tz = tenant_tz(state, tenant).await?;
    // Built before storing: a schedule that does not build must not be stored.
    let schedule = schedule_of(&stored, &tz, None).map_err(invalid)?;
    let copy = stored.clone();
    blocking(state.dashboards.app.store(), move |s| s.put_report(&copy)).await?;
    let runtime = &state.dashboards.app.runtime;
    runtime.schedule_changed(if stored.enabled {
        operators::ScheduleChange::Upsert(schedule)
    } else {
        operators::ScheduleChange::Remove {
            tenant: tenant.to_string(),
            report_id: id.to_string(),
        }
    });
    Ok(stored)
}

async fn list_reports(
    State(state): State<ReportsState>,
    Caller(tenant): Caller,
) -> ApiResult<Json<Value>> {
    let tz = tenant_tz(&state, &tenant).await?;
    let reports = blocking(state.dashboards.app.store(), move |s| {
        s.list_reports(Some(&tenant))
    })
    .await?;
    Ok(Json(json!({
        "reports": reports.iter().map(|r| report_json(r, &tz)).collect::<Vec<_>>()
    })))
}

async fn get_report(
    State(state): State<ReportsState>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let report = load_report(&state, &tenant, &id).await?;
    let tz = tenant_tz(&state, &tenant).await?;
    Ok(Json(report_json(&report, &tz)))
}

async fn create_report(
    State(state): State<ReportsState>,
    Caller(tenant): Caller,
    body: Bytes,
) -> ApiResult<Response> {
    let spec = ReportSpec::from_json(&body).map_err(invalid)?;
    let id = spec.id.clone().unwrap_or_else(|| new_id("report"));
    valid_id(&id)?;
    let (t, i) = (tenant.clone(), id.clone());
    if blocking(state.dashboards.app.store(), move |s| s.get_report(&t, &i))
        .await?
        .is_some()
    {
        let message = format!("report '{id}' exists; change it with PUT /v1/reports/{id}");
        return Err(ApiError::new(StatusCode::CONFLICT, "conflict", message).field("id"));
    }
    let stored = save_report(&state, &tenant, &id, 1, spec).await?;
    let tz = tenant_tz(&state, &tenant).await?;
    Ok((StatusCode::CREATED, Json(report_json(&stored, &tz))).into_response())
}

async fn update_report(
    State(state): State<ReportsState>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let old = load_report(&state, &tenant, &id).await?;
    let spec = ReportSpec::from_json(&body).map_err(invalid)?;
    if let Some(body_id) = &spec.id
        && body_id != &id
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_report",
            format!("id: '{body_id}' differs from the URL's '{id}'"),
        )
        .field("id"));
    }
    let stored = save_report(&state, &tenant, &id, old.version + 1, spec).await?;
    let tz = tenant_tz(&state, &tenant).await?;
    Ok(Json(report_json(&stored, &tz)))
}

async fn delete_report(
    State(state): State<ReportsState>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let (t, i) = (tenant.clone(), id.clone());
    if !blocking(state.dashboards.app.store(), move |s| {
        s.delete_report(&t, &i)
    })
    .await?
    {
        return Err(not_found("report", &id));
    }
    state
        .dashboards
        .app
        .runtime
        .schedule_changed(operators::ScheduleChange::Remove {
            tenant,
            report_id: id,
        });
    Ok(StatusCode::NO_CONTENT)
}

/// A run asked for by hand, as of now: its id is derived from the report and the instant (and
/// kept apart from the scheduled runs' ids), so asking twice in the same millisecond runs once.
fn manual_run_id(tenant: &str, report_id: &str, at_ms: i64) -> String {
    operators::intent::hashed_id("run_", &[tenant, report_id, "manual", &at_ms.to_string()])
}

async fn run_report(
    State(state): State<ReportsState>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let report = load_report(&state, &tenant, &id).await?;
    let at = now_ms();
    let run = NewReportRun {
        tenant: tenant.clone(),
        report_id: id.clone(),
        run_id: manual_run_id(&tenant, &id, at),
        version: report.version,
        scheduled_ms: at,
        trigger: "manual".into(),
        created_at_ms: at,
    };
    let copy = run.clone();
    blocking(state.dashboards.app.store(), move |s| s.add_runs(&[copy])).await?;
    state.generator.wake();
    let location = format!("/v1/reports/{id}/runs");
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(json!({
            "run_id": run.run_id,
            "scheduled_for": rfc3339(at),
            "status": "due",
        })),
    )
        .into_response())
}

#[derive(Deserialize)]
struct RunsParams {
    limit: Option<usize>,
}

/// A run with each of its notifications' deliveries: who (destination, recipient), status,
/// attempts and the last error.
fn run_json(run: &ReportRun, notifications: &[connectors::store::NotificationView]) -> Value {
    let deliveries: Vec<Value> = notifications
        .iter()
        .flat_map(|n| {
            let recipient = n.payload.get("recipient").cloned().unwrap_or(Value::Null);
            n.deliveries.iter().map(move |d| {
                json!({
                    "notification_id": n.id,
                    "destination_id": d.destination_id,
                    "recipient": recipient,
                    "status": d.status.as_str(),
                    "attempts": d.attempts,
                    "last_error": d.last_error,
                    "attempt_log": d.attempt_log.iter().map(|a| json!({
                        "attempt": a.attempt,
                        "at": rfc3339(a.at_ms),
                        "outcome": a.outcome,
                        "status_code": a.status_code,
                        "error": a.error,
                        "duration_ms": a.duration_ms,
                    })).collect::<Vec<_>>(),
                })
            })
        })
        .collect();
    json!({
        "run_id": run.run_id,
        "report_id": run.report_id,
        "version": run.version,
        "trigger": run.trigger,
        "scheduled_for": rfc3339(run.scheduled_ms),
        "scheduled_ms": run.scheduled_ms,
        "status": run.status.as_str(),
        "created_at": rfc3339(run.created_at_ms),
        "generated_at": run.generated_at_ms.and_then(rfc3339),
        "generation_ms": run.generation_ms,
        "error": run.error,
        "deliveries": deliveries,
    })
}

async fn list_runs(
    State(state): State<ReportsState>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
    Query(params): Query<RunsParams>,
) -> ApiResult<Json<Value>> {
    load_report(&state, &tenant, &id).await?;
    let limit = params.limit.unwrap_or(20).clamp(1, 200);
    let runs = blocking(state.dashboards.app.store(), move |s| {
        let runs = s.list_runs(&tenant, &id, limit)?;
        runs.into_iter()
            .map(|run| {
                let sent = s.run_notifications(&tenant, &run.run_id)?;
                Ok(run_json(&run, &sent))
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    Ok(Json(json!({ "runs": runs })))
}

#[derive(Deserialize)]
struct PreviewParams {
    /// The instant to render as of (RFC 3339); now by default.
    at: Option<String>,
}

/// The report rendered now (or as of `?at=`), as the HTML a person opens in a browser, charts
/// inline; nothing is stored or sent.
async fn preview_report(
    State(state): State<ReportsState>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
    Query(params): Query<PreviewParams>,
) -> ApiResult<Response> {
    let report = load_report(&state, &tenant, &id).await?;
    let spec = ReportSpec::from_json(report.body.as_bytes()).map_err(ApiError::internal)?;
    let tenant_tz = tenant_tz(&state, &tenant).await?;
    let tz: Tz = spec
        .timezone(&tenant_tz)
        .parse()
        .map_err(|_| ApiError::internal("stored report has an unknown time zone"))?;
    let at = match params.at.as_deref() {
        None => Utc::now(),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("at: '{text}' is not an RFC 3339 instant ({e})"),
                )
                .field("at")
            })?
            .with_timezone(&Utc),
    };
    let run = RunRef {
        tenant: &tenant,
        report_id: &id,
        version: report.version,
        run_id: "preview",
        at,
        tz,
        trigger: "preview",
    };
    let generated = generate(state.generator.context(), &spec, &run).await;
    let html = document::preview_html(&generated.document);
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; img-src data:; style-src 'unsafe-inline'",
            ),
        ],
        html,
    )
        .into_response())
}
