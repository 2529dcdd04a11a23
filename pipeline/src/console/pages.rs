//! The overview, reports (list, run history, preview as the email shows it, run now), secrets
//! (names and versions; a new value is write-only) and CRM (audiences with their sizes,
//! campaigns with their messages by status).

use axum::extract::{Path, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Value, json};

use super::{CheckedForm, ConsoleState, PageResult, SignedInSession, urlencode};

pub(super) async fn home(
    State(state): State<ConsoleState>,
    SignedInSession(session): SignedInSession,
) -> Response {
    let (stats, alerts, dashboards, recent) = futures::join!(
        state.api(&session, Method::GET, "/v1/stats", None),
        state.api(&session, Method::GET, "/v1/alerts", None),
        state.api(&session, Method::GET, "/v1/dashboards", None),
        state.api(&session, Method::GET, "/v1/notifications?limit=5", None),
    );
    let prefs = state.prefs(&session.tenant);
    let stats = stats.json();
    let recent: Vec<Value> = recent.json()["notifications"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|n| {
                    json!({
                        "id": n["id"], "rule_id": n["rule_id"], "kind": n["kind"],
                        "created": prefs.instant(n["created_at_ms"].as_i64().unwrap_or(0)),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    state.page(
        "home.html",
        Some(&session),
        json!({
            "section": "home",
            "events": prefs.number(stats["events"].as_f64().unwrap_or(0.0)),
            "rules": stats["rules"],
            "firing": alerts.json()["alerts"].as_array().map(Vec::len).unwrap_or(0),
            "dashboards": dashboards.json()["dashboards"],
            "recent": recent,
            "zone": prefs.zone_name(),
        }),
    )
}

pub(super) async fn reports(
    State(state): State<ConsoleState>,
    SignedInSession(session): SignedInSession,
) -> Response {
    let list = state.api(&session, Method::GET, "/v1/reports", None).await;
    state.page(
        "reports.html",
        Some(&session),
        json!({"section": "reports", "reports": list.json()["reports"]}),
    )
}

pub(super) async fn report(
    State(state): State<ConsoleState>,
    SignedInSession(session): SignedInSession,
    Path(id): Path<String>,
) -> PageResult {
    let base = format!("/v1/reports/{}", urlencode(&id));
    let report = state.fetch(&session, Method::GET, &base, None).await?;
    let runs = state
        .api(
            &session,
            Method::GET,
            &format!("{base}/runs?limit=20"),
            None,
        )
        .await;
    let prefs = state.prefs(&session.tenant);
    let runs: Vec<Value> = runs.json()["runs"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|r| {
                    let mut r = r.clone();
                    r["scheduled"] = json!(prefs.instant(r["scheduled_ms"].as_i64().unwrap_or(0)));
                    r
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(state.page(
        "report.html",
        Some(&session),
        json!({"section": "reports", "report": report.json(), "runs": runs, "zone": prefs.zone_name()}),
    ))
}

/// The report rendered as its email shows it, for the page's frame. The document is the report
/// renderer's (escaped) HTML; it is still served sandboxed, with no script and no navigation.
pub(super) async fn report_preview(
    State(state): State<ConsoleState>,
    SignedInSession(session): SignedInSession,
    Path(id): Path<String>,
) -> PageResult {
    let uri = format!("/v1/reports/{}/preview", urlencode(&id));
    let api = state.fetch(&session, Method::GET, &uri, None).await?;
    let content_type = if api.content_type.is_empty() {
        "text/html; charset=utf-8".to_string()
    } else {
        api.content_type.clone()
    };
    let mut response = ([(header::CONTENT_TYPE, content_type)], api.body).into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'",
        ),
    );
    response.headers_mut().insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    Ok(response)
}

pub(super) async fn run_report(
    State(state): State<ConsoleState>,
    Path(id): Path<String>,
    CheckedForm { session, .. }: CheckedForm,
) -> PageResult {
    let uri = format!("/v1/reports/{}/run", urlencode(&id));
    state.fetch(&session, Method::POST, &uri, None).await?;
    Ok(Redirect::to(&format!("/reports/{}", urlencode(&id))).into_response())
}

pub(super) async fn secrets(
    State(state): State<ConsoleState>,
    SignedInSession(session): SignedInSession,
) -> Response {
    secrets_page(&state, &session, None, None, StatusCode::OK).await
}

async fn secrets_page(
    state: &ConsoleState,
    session: &super::Session,
    error: Option<String>,
    saved: Option<String>,
    status: StatusCode,
) -> Response {
    let list = state.api(session, Method::GET, "/v1/secrets", None).await;
    let prefs = state.prefs(&session.tenant);
    let secrets: Vec<Value> = list.json()["secrets"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|s| {
                    json!({
                        "name": s["name"], "version": s["version"], "versions": s["versions"],
                        "created": prefs.instant(s["created_at_ms"].as_i64().unwrap_or(0)),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let mut response = state.page(
        "secrets.html",
        Some(session),
        json!({"section": "secrets", "secrets": secrets, "error": error, "saved": saved}),
    );
    *response.status_mut() = status;
    response
}

pub(super) async fn put_secret(
    State(state): State<ConsoleState>,
    CheckedForm { session, form }: CheckedForm,
) -> Response {
    let name = form.get("name").unwrap_or("").to_string();
    // The value is not trimmed: a secret is exactly what was typed.
    let value = form
        .0
        .iter()
        .find(|(k, _)| k == "value")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let uri = format!("/v1/secrets/{}", urlencode(&name));
    let api = state
        .api(&session, Method::PUT, &uri, Some(json!({"value": value})))
        .await;
    if !api.ok() {
        let (message, _) = api.error();
        return secrets_page(&state, &session, Some(message), None, api.status).await;
    }
    let version = api.json()["version"].clone();
    secrets_page(
        &state,
        &session,
        None,
        Some(format!("{name} is now at version {version}")),
        StatusCode::OK,
    )
    .await
}

pub(super) async fn crm(
    State(state): State<ConsoleState>,
    SignedInSession(session): SignedInSession,
) -> Response {
    let (audiences, campaigns) = futures::join!(
        state.api(&session, Method::GET, "/v1/audiences", None),
        state.api(&session, Method::GET, "/v1/campaigns", None),
    );
    state.page(
        "crm.html",
        Some(&session),
        json!({
            "section": "crm",
            "audiences": audiences.json()["audiences"],
            "campaigns": campaigns.json()["campaigns"],
            "crm_running": audiences.ok(),
        }),
    )
}
