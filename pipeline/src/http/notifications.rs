//! `/v1/notifications`, `/v1/alerts` and `/v1/stats`: notifications with their deliveries, the
//! alerts firing now, and the tenant's counts.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NotificationQuery {
    status: Option<String>,
    rule_id: Option<String>,
    limit: Option<usize>,
    /// `created_at_ms:id` of the last notification of the previous page.
    before: Option<String>,
}

pub(super) async fn list_notifications(
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

pub(super) async fn get_notification(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (t, i) = (tenant.clone(), id.clone());
    match blocking(state.store(), move |s| s.get_notification(&t, &i)).await? {
        Some(n) => Ok(Json(serde_json::to_value(n).map_err(ApiError::internal)?)),
        None => Err(not_found("notification", &id)),
    }
}

pub(super) async fn stats(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> ApiResult<Json<Value>> {
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

/// The tenant's alerts that are FIRING now: one per (rule, group), with the instant the episode
/// began and its latest firing notification.
pub(super) async fn open_alerts(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> ApiResult<Json<Value>> {
    let alerts = blocking(state.store(), move |s| s.open_alerts(Some(&tenant))).await?;
    Ok(Json(json!({ "alerts": alerts })))
}
