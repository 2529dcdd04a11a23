//! `/v1/contacts` and `/v1/audiences`: a tenant's CRM contacts (one at a time or in bulk as
//! NDJSON) and its audiences, with their members and sizes over time.
//!
//! Contacts and definitions are checked whole before they are stored: a wrong field is a 400
//! naming it; an audience naming an attribute no contact has, or an event type the tenant has
//! never sent, is a 400 too. Changes reach the running audience engine without a restart.

use std::sync::Arc;

use connectors::store::StoredAudience;
use operators::audience::Contact;

use super::*;
use crate::audiences::{AudienceService, ContactError, DefinitionError, ServiceError};

/// Most contacts in one bulk request.
const MAX_BULK_CONTACTS: usize = 100_000;
/// Most members per page.
const MAX_MEMBERS_PAGE: usize = 10_000;

fn service(state: &AppState) -> ApiResult<Arc<AudienceService>> {
    state.audiences.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audiences_off",
            "audiences are not running on this server",
        )
    })
}

fn service_error(e: ServiceError) -> ApiError {
    match e {
        ServiceError::Stopped => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audiences_stopped",
            "the audience engine is not running; try again",
        )
        .retry_after(1),
        ServiceError::Store(e) => ApiError::internal(e),
    }
}

fn invalid_contact(e: ContactError) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_contact", e.to_string()).field(e.field)
}

fn invalid_audience(e: DefinitionError) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_audience", e.to_string()).field(e.path)
}

fn json_body(body: &Bytes, what: &str) -> ApiResult<Value> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("{what}: {e}"),
        )
    })
}

fn contact_json(id: &str, contact: &Contact, updated_at_ms: i64) -> Value {
    let mut body = serde_json::to_value(contact).unwrap_or_else(|_| json!({}));
    body["id"] = json!(id);
    body["updated_at_ms"] = json!(updated_at_ms);
    body
}

fn check_contact_id(id: &str) -> ApiResult<()> {
    crate::audiences::check_id(id).map_err(invalid_contact)
}

/// `PUT /v1/contacts/{id}`: adds or replaces a contact.
pub(super) async fn put_contact(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    check_contact_id(&id)?;
    let document = json_body(&body, "contact")?;
    if let Some(given) = document.get("id")
        && given != &json!(id)
    {
        return Err(invalid_contact(ContactError {
            field: "id".into(),
            problem: format!("{given} differs from the id in the path '{id}'"),
        }));
    }
    let contact = crate::audiences::parse_contact(&document).map_err(invalid_contact)?;
    service(&state)?
        .put_contacts(&tenant, vec![(id.clone(), contact.clone())])
        .await
        .map_err(service_error)?;
    Ok(Json(contact_json(&id, &contact, now_ms())))
}

/// `GET /v1/contacts/{id}`: the contact, the audiences it is in, and its last membership changes.
pub(super) async fn get_contact(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (t, i) = (tenant.clone(), id.clone());
    let (stored, changes) = blocking(state.store(), move |s| {
        Ok((
            s.get_contact(&t, &i)?,
            s.membership_changes(&t, None, Some(&i), 50)?,
        ))
    })
    .await?;
    let stored = stored.ok_or_else(|| not_found("contact", &id))?;
    let contact: Contact = serde_json::from_str(&stored.body).map_err(ApiError::internal)?;
    let mut body = contact_json(&id, &contact, stored.updated_at_ms);
    body["membership_changes"] = json!(
        changes
            .iter()
            .map(|c| json!({"audience": c.audience, "at_ms": c.at_ms,
                            "change": if c.entered { "entered" } else { "left" }}))
            .collect::<Vec<_>>()
    );
    Ok(Json(body))
}

/// `DELETE /v1/contacts/{id}`: the contact leaves every audience and gets nothing more.
pub(super) async fn delete_contact(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if service(&state)?
        .delete_contact(&tenant, &id)
        .await
        .map_err(service_error)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found("contact", &id))
    }
}

/// `POST /v1/contacts/bulk`: NDJSON, one contact document with its `id` per line. Valid lines
/// are stored (in one transaction); each invalid line is reported by number and changes
/// nothing.
pub(super) async fn bulk_contacts(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let text = std::str::from_utf8(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("the body is not UTF-8: {e}"),
        )
    })?;
    let mut contacts = Vec::new();
    let mut errors = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<Value>(line)
            .map_err(|e| ContactError {
                field: "line".into(),
                problem: format!("not JSON: {e}"),
            })
            .and_then(|mut doc| {
                let id = match doc.as_object_mut().and_then(|o| o.remove("id")) {
                    Some(Value::String(id)) => id,
                    _ => {
                        return Err(ContactError {
                            field: "id".into(),
                            problem: "each line needs a string id".into(),
                        });
                    }
                };
                crate::audiences::check_id(&id)?;
                Ok((id, crate::audiences::parse_contact(&doc)?))
            });
        match parsed {
            Ok((id, contact)) => {
                // The last line for an id wins, as if the lines were sent one by one.
                if let Some(&at) = seen.get(&id) {
                    contacts[at] = (id, contact);
                } else {
                    seen.insert(id.clone(), contacts.len());
                    contacts.push((id, contact));
                }
            }
            Err(e) => errors.push(json!({"line": line_no, "field": e.field, "message": e.problem})),
        }
        if contacts.len() > MAX_BULK_CONTACTS {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_contacts",
                format!("at most {MAX_BULK_CONTACTS} contacts per request"),
            ));
        }
    }
    let upserted = contacts.len();
    if !contacts.is_empty() {
        service(&state)?
            .put_contacts(&tenant, contacts)
            .await
            .map_err(service_error)?;
    }
    Ok(Json(json!({"upserted": upserted, "errors": errors})))
}

#[derive(Deserialize)]
pub(super) struct PageParams {
    after: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/contacts?after=&limit=`: contacts by id.
pub(super) async fn list_contacts(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<Value>> {
    let limit = page.limit.unwrap_or(100).clamp(1, 1_000);
    let t = tenant.clone();
    let (rows, total) = blocking(state.store(), move |s| {
        let after = page.after.as_deref().map(|a| (t.as_str(), a));
        Ok((
            s.list_contacts(Some(&t), after, limit)?,
            s.contact_count(&t)?,
        ))
    })
    .await?;
    let next = (rows.len() == limit).then(|| rows.last().map(|r| r.id.clone()));
    let contacts: Vec<Value> = rows
        .iter()
        .filter_map(|r| {
            let contact: Contact = serde_json::from_str(&r.body).ok()?;
            Some(contact_json(&r.id, &contact, r.updated_at_ms))
        })
        .collect();
    Ok(Json(
        json!({"contacts": contacts, "total": total, "next": next.flatten()}),
    ))
}

fn audience_json(stored: &StoredAudience, size: u64) -> Value {
    let mut body: Value = serde_json::from_str(&stored.body).unwrap_or_else(|_| json!({}));
    body["id"] = json!(stored.id);
    body["version"] = json!(stored.version);
    body["updated_at_ms"] = json!(stored.updated_at_ms);
    body["size"] = json!(size);
    body
}

/// Checks and stores a definition as `id`, replacing `previous` (whose version it follows).
async fn save_audience(
    state: &AppState,
    tenant: &str,
    id: &str,
    mut definition: Value,
    previous: Option<&StoredAudience>,
) -> ApiResult<StoredAudience> {
    if let Some(obj) = definition.as_object_mut()
        && let Some(given) = obj.remove("id")
        && given != json!(id)
    {
        return Err(invalid_audience(DefinitionError {
            path: "id".into(),
            problem: format!("{given} differs from the audience's id '{id}'"),
        }));
    }
    let service = service(state)?;
    let audience = service
        .check(tenant, id, &definition)
        .map_err(invalid_audience)?;
    let stored = StoredAudience {
        tenant: tenant.to_string(),
        id: id.to_string(),
        version: previous.map_or(1, |p| p.version + 1),
        body: definition.to_string(),
        updated_at_ms: now_ms(),
    };
    service
        .put_audience(audience, stored.clone())
        .await
        .map_err(service_error)?;
    Ok(stored)
}

async fn load_audience(state: &AppState, tenant: &str, id: &str) -> ApiResult<StoredAudience> {
    let (t, i) = (tenant.to_string(), id.to_string());
    blocking(state.store(), move |s| s.get_audience(&t, &i))
        .await?
        .ok_or_else(|| not_found("audience", id))
}

/// `POST /v1/audiences`: creates an audience (id from the body, or a new one).
pub(super) async fn create_audience(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let definition = json_body(&body, "audience")?;
    let id = match definition.get("id") {
        Some(Value::String(id)) => {
            valid_id(id)?;
            id.clone()
        }
        Some(_) => {
            return Err(invalid_audience(DefinitionError {
                path: "id".into(),
                problem: "must be a string".into(),
            }));
        }
        None => new_id("aud"),
    };
    let (t, i) = (tenant.clone(), id.clone());
    if blocking(state.store(), move |s| s.get_audience(&t, &i))
        .await?
        .is_some()
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "exists",
            format!("audience '{id}' exists; PUT /v1/audiences/{id} changes it"),
        ));
    }
    let stored = save_audience(&state, &tenant, &id, definition, None).await?;
    Ok((StatusCode::CREATED, Json(audience_json(&stored, 0))))
}

/// `PUT /v1/audiences/{id}`: replaces (or creates) an audience; members change by what the
/// new definition changes.
pub(super) async fn update_audience(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    valid_id(&id)?;
    let definition = json_body(&body, "audience")?;
    let (t, i) = (tenant.clone(), id.clone());
    let previous = blocking(state.store(), move |s| s.get_audience(&t, &i)).await?;
    let stored = save_audience(&state, &tenant, &id, definition, previous.as_ref()).await?;
    let (t, i) = (tenant.clone(), id.clone());
    let size = blocking(state.store(), move |s| s.audience_size(&t, &i)).await?;
    Ok(Json(audience_json(&stored, size)))
}

/// `GET /v1/audiences`: the tenant's audiences with their sizes.
pub(super) async fn list_audiences(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> ApiResult<Json<Value>> {
    let rows = blocking(state.store(), move |s| {
        s.list_audiences(Some(&tenant))?
            .into_iter()
            .map(|a| {
                let size = s.audience_size(&a.tenant, &a.id)?;
                Ok((a, size))
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    Ok(Json(json!({
        "audiences": rows.iter().map(|(a, size)| audience_json(a, *size)).collect::<Vec<_>>()
    })))
}

/// `GET /v1/audiences/{id}`.
pub(super) async fn get_audience(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let stored = load_audience(&state, &tenant, &id).await?;
    let size = blocking(state.store(), move |s| s.audience_size(&tenant, &id)).await?;
    Ok(Json(audience_json(&stored, size)))
}

/// `DELETE /v1/audiences/{id}`.
pub(super) async fn delete_audience(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if service(&state)?
        .delete_audience(&tenant, &id)
        .await
        .map_err(service_error)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found("audience", &id))
    }
}

/// `GET /v1/audiences/{id}/members?after=&limit=`: members by contact id, with the size.
pub(super) async fn audience_members(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<Value>> {
    load_audience(&state, &tenant, &id).await?;
    let limit = page.limit.unwrap_or(1_000).clamp(1, MAX_MEMBERS_PAGE);
    let (members, size) = blocking(state.store(), move |s| {
        Ok((
            s.audience_members(&tenant, &id, page.after.as_deref(), limit)?,
            s.audience_size(&tenant, &id)?,
        ))
    })
    .await?;
    let next = (members.len() == limit).then(|| members.last().map(|m| m.contact.clone()));
    Ok(Json(json!({
        "size": size,
        "members": members.iter().map(|m| json!({"contact": m.contact, "since_ms": m.since_ms})).collect::<Vec<_>>(),
        "next": next.flatten(),
    })))
}

#[derive(Deserialize)]
pub(super) struct SizeParams {
    since_ms: Option<i64>,
}

/// `GET /v1/audiences/{id}/sizes?since_ms=`: the size over time, one point per minute in which
/// it changed.
pub(super) async fn audience_sizes(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    Query(params): Query<SizeParams>,
) -> ApiResult<Json<Value>> {
    load_audience(&state, &tenant, &id).await?;
    let since = params.since_ms.unwrap_or(0);
    let sizes = blocking(state.store(), move |s| {
        s.audience_sizes(&tenant, Some(&id), since)
    })
    .await?;
    Ok(Json(json!({
        "sizes": sizes.iter().map(|s| json!({"at_ms": s.at_ms, "size": s.size})).collect::<Vec<_>>()
    })))
}
