//! `POST /v1/events`: a JSON array or NDJSON of events, answered once the accepted ones are durable.
//!
//! The body is decoded by the shared event-batch decoder ([`connectors::sources::events`]), the
//! same every source uses; this handler only ingests what it decoded and answers. The answer
//! lists the first refused documents only (`errors`), with `rejected` counting all of them and
//! `errors_omitted` those not listed, so it stays small whatever the body.

use connectors::sources::{BatchError, FieldError, Limits, decode_batch};
use operators::EventFields;

use super::*;

pub(super) async fn post_events(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    body: Bytes,
) -> ApiResult<Response> {
    // The router's body limit bounds a request; the default limits add nothing to it.
    let (times, now) = (state.runtime.event_time_range(), now_ms());
    let batch = decode_batch(
        &body,
        &Limits::default(),
        |fields: EventFields| {
            fields
                .into_event(&tenant)
                .and_then(|event| times.check(event.ts_ms, now).map(|()| event))
                .map_err(|e| FieldError::from_message(e.to_string()))
        },
        |event| event.id.as_str(),
    )
    .map_err(|e| match e {
        BatchError::NotUtf8(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e.to_string())
        }
        BatchError::NotAnArray(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string())
        }
        BatchError::TooManyEvents { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_events",
            e.to_string(),
        ),
    })?;
    let rejected = batch.rejected_total as u64;
    let errors_omitted = batch.rejected_omitted();
    if rejected > 0 {
        Metrics::inc(
            &state.metrics().events_rejected,
            "reason",
            "invalid",
            rejected,
        );
    }
    let within_request_duplicates = batch.duplicates;
    if batch.events.is_empty() && rejected > 0 {
        return Ok((
            StatusCode::BAD_REQUEST,
            Json(json!({"accepted": 0, "duplicates": within_request_duplicates, "rejected": rejected, "errors": batch.rejected, "errors_omitted": errors_omitted})),
        )
            .into_response());
    }
    let outcomes = if batch.events.is_empty() {
        Vec::new()
    } else {
        state
            .runtime
            .ingest(&tenant, batch.events)
            .await
            .map_err(|e| match e {
                crate::ingest::IngestError::ShuttingDown => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "shutting_down",
                    e.to_string(),
                ),
                crate::ingest::IngestError::Store(_)
                | crate::ingest::IngestError::Incomplete { .. } => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    e.to_string(),
                )
                .retry_after(1),
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
    Ok(Json(json!({"accepted": accepted, "duplicates": duplicates, "rejected": rejected, "errors": batch.rejected, "errors_omitted": errors_omitted})).into_response())
}
