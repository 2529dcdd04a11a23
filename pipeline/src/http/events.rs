//! `POST /v1/events`: a JSON array or NDJSON of events, answered once the accepted ones are durable.

use super::*;

pub(super) async fn post_events(
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
                crate::ingest::IngestError::ShuttingDown => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "shutting_down",
                    e.to_string(),
                ),
                crate::ingest::IngestError::Store(_) => ApiError::new(
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
