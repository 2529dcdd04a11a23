//! `/v1/secrets`: the tenant's write-only credentials.

use super::*;

//
// Write-only: values go in and are used by destinations and connectors; they never come out.

pub(super) fn secrets_error(e: SecretsError) -> ApiError {
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

pub(super) fn no_such_secret(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("there is no secret named '{name}'"),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SecretBody {
    value: String,
}

pub(super) async fn list_secrets(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> ApiResult<Json<Value>> {
    let all = state.secrets.list(&tenant).await.map_err(secrets_error)?;
    Ok(Json(json!({ "secrets": all })))
}

pub(super) async fn get_secret(
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

pub(super) async fn put_secret(
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

pub(super) async fn delete_secret(
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

pub(super) async fn rollback_secret(
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
