//! `/v1/rules`: create, read, update, delete, enable and disable alert rules; changes reach the running dataflow.
//!
//! Every change ends the same way: the rule's new state — compiled once by [`save_rule`], or
//! nothing when it is disabled or deleted — goes to the runtime as a [`RuleUpdate`].

use super::*;
use crate::generate::TemplateError;

pub(super) fn rule_json(stored: &StoredRule) -> Value {
    let mut body: Value = serde_json::from_str(&stored.body).unwrap_or_else(|_| json!({}));
    body["id"] = json!(stored.id);
    body["version"] = json!(stored.version);
    body["enabled"] = json!(stored.enabled);
    body["updated_at_ms"] = json!(stored.updated_at_ms);
    body
}

pub(super) fn parse_rule_spec(body: &Bytes) -> ApiResult<RuleSpec> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_rule",
            format!("rule: {e}"),
        )
        .field("rule")
    })
}

pub(super) async fn tenant_tz(state: &AppState, tenant: &str) -> ApiResult<String> {
    let t = tenant.to_string();
    Ok(blocking(state.store(), move |s| s.get_tenant(&t))
        .await?
        .map(|t| t.time_zone)
        .unwrap_or_else(|| "UTC".into()))
}

/// Validates a spec fully (compiles it, checks the template and, when `check_destinations`,
/// that its destinations exist) and stores it.
pub(super) async fn save_rule(
    state: &AppState,
    tenant: &str,
    id: &str,
    version: u64,
    mut spec: RuleSpec,
    enabled: bool,
    check_destinations: bool,
) -> ApiResult<StoredRule> {
    spec.id = Some(id.to_string());
    let tz = tenant_tz(state, tenant).await?;
    // Compiled once: this validates the rule, and the running dataflow gets this very value.
    let compiled = CompiledRule::compile(&spec, tenant, id, version, &tz).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_rule", e.to_string()).field(e.field.clone())
    })?;
    // A template must parse and render sample notifications within the limits; the trial
    // render blocks for up to the render deadline, so it runs off the executor. A rule being
    // switched off is not checked: turning off a bad rule must always work.
    let (check, limits) = (compiled.clone(), state.runtime.template_limits());
    let checked = if enabled {
        tokio::task::spawn_blocking(move || generate::check_template(&check, &limits))
            .await
            .map_err(ApiError::internal)?
    } else {
        Ok(())
    };
    match checked {
        Ok(()) | Err(TemplateError::Failed(_)) => {}
        Err(e @ TemplateError::Busy(_)) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!("template: cannot be checked now ({e}); retry shortly"),
            )
            .field("template"));
        }
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_rule",
                format!("template: {e}"),
            )
            .field("template"));
        }
    }
    let must_exist: &[String] = if check_destinations {
        &spec.destinations
    } else {
        &[]
    };
    for (i, destination) in must_exist.iter().enumerate() {
        let (t, d) = (tenant.to_string(), destination.clone());
        if blocking(state.store(), move |s| s.get_destination(&t, &d))
            .await?
            .is_none()
        {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_rule",
                format!("destinations[{i}]: no destination '{destination}'; create it first"),
            )
            .field(format!("destinations[{i}]")));
        }
    }
    let stored = StoredRule {
        tenant: tenant.to_string(),
        id: id.to_string(),
        version,
        enabled,
        body: serde_json::to_string(&spec).map_err(ApiError::internal)?,
        updated_at_ms: now_ms(),
    };
    let copy = stored.clone();
    blocking(state.store(), move |s| s.put_rule(&copy)).await?;
    state
        .runtime
        .rule_changed(RuleUpdate::new(tenant, id, enabled.then_some(compiled)));
    Ok(stored)
}

pub(super) async fn list_rules(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> ApiResult<Json<Value>> {
    let rules = blocking(state.store(), move |s| s.list_rules(Some(&tenant))).await?;
    Ok(Json(
        json!({"rules": rules.iter().map(rule_json).collect::<Vec<_>>()}),
    ))
}

pub(super) async fn load_rule(state: &AppState, tenant: &str, id: &str) -> ApiResult<StoredRule> {
    let (t, i) = (tenant.to_string(), id.to_string());
    match blocking(state.store(), move |s| s.get_rule(&t, &i)).await? {
        Some(rule) => Ok(rule),
        None => Err(not_found("rule", id)),
    }
}

pub(super) async fn get_rule(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(rule_json(&load_rule(&state, &tenant, &id).await?)))
}

pub(super) async fn create_rule(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    body: Bytes,
) -> ApiResult<Response> {
    let spec = parse_rule_spec(&body)?;
    let id = spec.id.clone().unwrap_or_else(|| new_id("rule"));
    valid_id(&id)?;
    let (t, i) = (tenant.clone(), id.clone());
    if blocking(state.store(), move |s| s.get_rule(&t, &i))
        .await?
        .is_some()
    {
        let message = format!("rule '{id}' exists; change it with PUT /v1/rules/{id}");
        return Err(ApiError::new(StatusCode::CONFLICT, "conflict", message).field("id"));
    }
    let enabled = spec.enabled;
    let stored = save_rule(&state, &tenant, &id, 1, spec, enabled, true).await?;
    Ok((StatusCode::CREATED, Json(rule_json(&stored))).into_response())
}

pub(super) async fn update_rule(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let old = load_rule(&state, &tenant, &id).await?;
    let spec = parse_rule_spec(&body)?;
    if let Some(body_id) = &spec.id
        && body_id != &id
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_rule",
            format!("id: '{body_id}' differs from the URL's '{id}'"),
        )
        .field("id"));
    }
    let enabled = spec.enabled;
    let stored = save_rule(&state, &tenant, &id, old.version + 1, spec, enabled, true).await?;
    Ok(Json(rule_json(&stored)))
}

pub(super) async fn set_enabled(
    state: AppState,
    tenant: String,
    id: String,
    enabled: bool,
) -> ApiResult<Json<Value>> {
    let old = load_rule(&state, &tenant, &id).await?;
    let mut spec: RuleSpec = serde_json::from_str(&old.body).map_err(ApiError::internal)?;
    spec.enabled = enabled;
    // Turning a rule off must work even after one of its destinations was deleted.
    let stored = save_rule(
        &state,
        &tenant,
        &id,
        old.version + 1,
        spec,
        enabled,
        enabled,
    )
    .await?;
    Ok(Json(rule_json(&stored)))
}

pub(super) async fn enable_rule(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    set_enabled(state, tenant, id, true).await
}

pub(super) async fn disable_rule(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    set_enabled(state, tenant, id, false).await
}

pub(super) async fn delete_rule(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let (t, i) = (tenant.clone(), id.clone());
    if !blocking(state.store(), move |s| s.delete_rule(&t, &i)).await? {
        return Err(not_found("rule", &id));
    }
    state
        .runtime
        .rule_changed(RuleUpdate::new(&tenant, &id, None));
    Ok(StatusCode::NO_CONTENT)
}
