//! `GET /v1/sources/dead-letters`: the tenant's records that sources refused, oldest first,
//! paged by id (`?after=<id>&limit=<n>`).

use base64::Engine as _;
use connectors::store::DeadLetter;

use super::*;

/// Dead letters listed when the request names no limit, and the most it may name.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeadLetterQuery {
    /// The `id` of the last dead letter of the previous page.
    after: Option<u64>,
    limit: Option<usize>,
}

pub(super) async fn list_dead_letters(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    query: Result<Query<DeadLetterQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(query) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("limit: {limit} is out of range 1..={MAX_LIMIT}"),
        )
        .field("limit"));
    }
    let after = query.after.unwrap_or(0);
    let letters = blocking(state.store(), move |s| {
        s.dead_letters(&tenant, after, limit)
    })
    .await?;
    let next_after = (letters.len() == limit)
        .then(|| letters.last().map(|d| d.id))
        .flatten();
    Ok(Json(json!({
        "dead_letters": letters.iter().map(view).collect::<Vec<_>>(),
        "next_after": next_after,
    })))
}

/// A dead letter as the API shows it: the raw bytes as text when they are UTF-8, and always in
/// base64.
fn view(d: &DeadLetter) -> Value {
    let l = &d.letter;
    json!({
        "id": d.id,
        "at_ms": d.at_ms,
        "source": l.source,
        "topic": l.topic,
        "partition": l.partition,
        "offset": l.offset,
        "error": l.error,
        "raw_text": std::str::from_utf8(&l.raw).ok(),
        "raw_base64": base64::engine::general_purpose::STANDARD.encode(&l.raw),
        "raw_bytes": l.raw_len,
        "truncated": (l.raw.len() as u64) < l.raw_len,
    })
}
