//! `/v1/destinations`: where notifications are delivered (webhook, email, Slack, Fluvio, file).

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DestinationBody {
    #[serde(default)]
    id: Option<String>,
    kind: String,
    config: Value,
}

/// A destination as shown: secrets are never returned.
pub(super) fn destination_json(d: &StoredDestination) -> Value {
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

/// The body and its parsed configuration, checked as `tenant`'s (parsed once, for every check
/// that follows).
pub(super) fn parse_destination(
    state: &AppState,
    tenant: &str,
    body: &Bytes,
) -> ApiResult<(DestinationBody, Destination)> {
    let parsed: DestinationBody = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_destination",
            format!("destination: {e}"),
        )
    })?;
    let destination =
        Destination::parse(&parsed.kind, &parsed.config.to_string()).map_err(destination_error)?;
    destination
        .validate(tenant, &state.sink_settings)
        .map_err(destination_error)?;
    Ok((parsed, destination))
}

/// Resolves the URLs the destination connects to and checks every address (the outbound
/// guard), so an internal target is a 400 now rather than a dead delivery later.
pub(super) async fn check_outbound(state: &AppState, destination: &Destination) -> ApiResult<()> {
    destination
        .check_outbound(&state.sink_settings)
        .await
        .map_err(destination_error)
}

/// Checks that every credential a destination names from the secrets store exists for the
/// tenant, so a typo is a 400 now rather than a dead delivery later.
pub(super) async fn check_stored_credentials(
    state: &AppState,
    tenant: &str,
    destination: &mut Destination,
) -> ApiResult<()> {
    destination
        .check_secrets(tenant, state.secrets.as_ref())
        .await
        .map_err(destination_error)
}

/// A refused destination: 400 naming the field, or the secrets store's own error.
fn destination_error(e: SinkError) -> ApiError {
    match e {
        SinkError::Secrets(e) => super::secrets::secrets_error(e),
        e => {
            let error = ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_destination",
                e.to_string(),
            );
            match e.field() {
                Some(field) => error.field(field),
                None => error,
            }
        }
    }
}

pub(super) async fn list_destinations(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> ApiResult<Json<Value>> {
    let all = blocking(state.store(), move |s| s.list_destinations(&tenant)).await?;
    Ok(Json(
        json!({"destinations": all.iter().map(destination_json).collect::<Vec<_>>()}),
    ))
}

pub(super) async fn load_destination(
    state: &AppState,
    tenant: &str,
    id: &str,
) -> ApiResult<StoredDestination> {
    let (t, i) = (tenant.to_string(), id.to_string());
    match blocking(state.store(), move |s| s.get_destination(&t, &i)).await? {
        Some(d) => Ok(d),
        None => Err(not_found("destination", id)),
    }
}

pub(super) async fn get_destination(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(destination_json(
        &load_destination(&state, &tenant, &id).await?,
    )))
}

pub(super) async fn create_destination(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    body: Bytes,
) -> ApiResult<Response> {
    let (parsed, mut destination) = parse_destination(&state, &tenant, &body)?;
    check_stored_credentials(&state, &tenant, &mut destination).await?;
    check_outbound(&state, &destination).await?;
    let id = parsed.id.clone().unwrap_or_else(|| new_id("dst"));
    valid_id(&id)?;
    let (t, i) = (tenant.clone(), id.clone());
    if blocking(state.store(), move |s| s.get_destination(&t, &i))
        .await?
        .is_some()
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("destination '{id}' exists; change it with PUT /v1/destinations/{id}"),
        )
        .field("id"));
    }
    let stored = store_destination(&state, tenant, id, parsed).await?;
    Ok((StatusCode::CREATED, Json(destination_json(&stored))).into_response())
}

pub(super) async fn update_destination(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    load_destination(&state, &tenant, &id).await?;
    let (parsed, mut destination) = parse_destination(&state, &tenant, &body)?;
    check_stored_credentials(&state, &tenant, &mut destination).await?;
    check_outbound(&state, &destination).await?;
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
    let stored = store_destination(&state, tenant, id, parsed).await?;
    Ok(Json(destination_json(&stored)))
}

/// Writes a checked destination (created or replaced) and returns it as stored.
async fn store_destination(
    state: &AppState,
    tenant: String,
    id: String,
    parsed: DestinationBody,
) -> ApiResult<StoredDestination> {
    let stored = StoredDestination {
        tenant,
        id,
        kind: parsed.kind,
        config: parsed.config.to_string(),
        updated_at_ms: now_ms(),
    };
    let copy = stored.clone();
    blocking(state.store(), move |s| s.put_destination(&copy)).await?;
    Ok(stored)
}

pub(super) async fn delete_destination(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let (t, i) = (tenant.clone(), id.clone());
    if !blocking(state.store(), move |s| s.delete_destination(&t, &i)).await? {
        return Err(not_found("destination", &id));
    }
    Ok(StatusCode::NO_CONTENT)
}
