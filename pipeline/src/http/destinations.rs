//! `/v1/destinations`: where notifications are delivered (webhook, file).

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

/// The body and its typed configuration (parsed once, for every check that follows).
pub(super) fn parse_destination(body: &Bytes) -> ApiResult<(DestinationBody, DestinationConfig)> {
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
pub(super) async fn check_stored_credentials(
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
    let known = state
        .secrets
        .list(tenant)
        .await
        .map_err(super::secrets::secrets_error)?;
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
        None => Err(not_yours(state, ObjectKind::Destination, tenant, id).await),
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

pub(super) async fn update_destination(
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

pub(super) async fn delete_destination(
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
