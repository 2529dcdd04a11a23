//! `/v1/campaigns`: CRM campaigns (triggered by an audience, or announcements) and what became
//! of their messages; `/v1/contacts/{id}/messages`; and `/unsubscribe/{token}`, the
//! unauthenticated one-click unsubscribe endpoint (RFC 8058) campaign messages link to.

use connectors::store::{SendStatus, StoredCampaign};

use super::*;
use crate::campaigns::{CampaignSpec, TokenError};

fn invalid(e: crate::campaigns::CampaignError) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_campaign", e.to_string()).field(e.field)
}

fn invalid_field(field: &str, problem: impl Into<String>) -> ApiError {
    invalid(crate::campaigns::CampaignError {
        field: field.into(),
        problem: problem.into(),
    })
}

fn campaign_json(
    stored: &StoredCampaign,
    counts: &std::collections::BTreeMap<SendStatus, u64>,
) -> Value {
    let mut body: Value = serde_json::from_str(&stored.body).unwrap_or_else(|_| json!({}));
    body["id"] = json!(stored.id);
    body["version"] = json!(stored.version);
    body["updated_at_ms"] = json!(stored.updated_at_ms);
    body["listed_at_ms"] = json!(stored.expanded_at_ms);
    let mut shown = serde_json::Map::new();
    for status in [
        SendStatus::Pending,
        SendStatus::Held,
        SendStatus::Sent,
        SendStatus::Capped,
        SendStatus::Unsubscribed,
        SendStatus::NotMember,
        SendStatus::Failed,
    ] {
        shown.insert(
            status.as_str().into(),
            json!(counts.get(&status).copied().unwrap_or(0)),
        );
    }
    body["counts"] = Value::Object(shown);
    body
}

/// A campaign document checked whole: templates tried on a sample contact, the audience and the
/// destination present and of the channel's kind.
async fn checked(state: &AppState, tenant: &str, value: Value) -> ApiResult<(Value, CampaignSpec)> {
    let spec = CampaignSpec::parse(&value).map_err(invalid)?;
    let limits = state.runtime.template_limits();
    let checked = spec.clone();
    tokio::task::spawn_blocking(move || checked.check(&limits))
        .await
        .map_err(ApiError::internal)?
        .map_err(invalid)?;
    let (t, d) = (tenant.to_string(), spec.destination.clone());
    let destination = blocking(state.store(), move |s| s.get_destination(&t, &d)).await?;
    let wanted = spec.channel.as_str();
    match destination {
        None => {
            return Err(invalid_field(
                "destination",
                format!("no destination '{}'", spec.destination),
            ));
        }
        Some(d) if d.kind != wanted => {
            return Err(invalid_field(
                "destination",
                format!(
                    "'{}' is a {} destination; the channel needs {wanted}",
                    d.id, d.kind
                ),
            ));
        }
        Some(_) => {}
    }
    if let Some(audience) = spec.audience() {
        let (t, a) = (tenant.to_string(), audience.to_string());
        if blocking(state.store(), move |s| s.get_audience(&t, &a))
            .await?
            .is_none()
        {
            return Err(invalid_field(
                "trigger.audience",
                format!("no audience '{audience}'"),
            ));
        }
    }
    Ok((value, spec))
}

/// A campaign document's JSON.
fn document(body: &Bytes) -> ApiResult<Value> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("campaign: {e}"),
        )
    })
}

/// `POST /v1/campaigns`: checked whole (see [`checked`]), then stored; it acts from now on.
pub(super) async fn create_campaign(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (mut value, spec) = checked(&state, &tenant, document(&body)?).await?;
    let id = match &spec.id {
        Some(id) => {
            valid_id(id)?;
            id.clone()
        }
        None => new_id("cmp"),
    };
    let (t, i) = (tenant.clone(), id.clone());
    if blocking(state.store(), move |s| s.get_campaign(&t, &i))
        .await?
        .is_some()
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "exists",
            format!("campaign '{id}' exists; delete it first to define it again"),
        ));
    }
    if let Some(obj) = value.as_object_mut() {
        obj.remove("id");
    }
    let stored = StoredCampaign {
        tenant,
        id,
        version: 1,
        body: value.to_string(),
        expanded_at_ms: None,
        updated_at_ms: now_ms(),
    };
    let copy = stored.clone();
    blocking(state.store(), move |s| s.put_campaign(&copy)).await?;
    Ok((
        StatusCode::CREATED,
        Json(campaign_json(&stored, &Default::default())),
    ))
}

/// `PUT /v1/campaigns/{id}`: a new version of a campaign, checked as a new one is. Every message
/// not yet sent (due, held for quiet hours, or triggered from now on) is rendered from it; what
/// was sent stays as it was. The channel does not change (messages already listed carry it),
/// and an announcement already listed cannot change (its recipients were chosen): create a new
/// campaign instead.
pub(super) async fn update_campaign(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let (t, i) = (tenant.clone(), id.clone());
    let current = blocking(state.store(), move |s| s.get_campaign(&t, &i))
        .await?
        .ok_or_else(|| not_found("campaign", &id))?;
    // What cannot change is said first, whatever else the new version gets wrong.
    let before: Value = serde_json::from_str(&current.body).unwrap_or_default();
    let after = document(&body)?;
    if let Ok(before) = CampaignSpec::parse(&before) {
        if let Some(channel) = after.get("channel").and_then(Value::as_str)
            && channel != before.channel.as_str()
        {
            return Err(invalid_field(
                "channel",
                format!(
                    "campaign '{id}' sends by {}; its channel cannot change (create a new \
                     campaign)",
                    before.channel.as_str()
                ),
            ));
        }
        if matches!(
            before.trigger,
            crate::campaigns::Trigger::Announcement { .. }
        ) && let Some(listed) = current.expanded_at_ms
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "already_sent",
                format!(
                    "announcement '{id}' was listed to its recipients at {listed} (ms since \
                     1970); it cannot change any more: create a new campaign"
                ),
            ));
        }
    }
    let (mut value, spec) = checked(&state, &tenant, after).await?;
    if spec.id.as_ref().is_some_and(|given| *given != id) {
        return Err(invalid_field(
            "id",
            format!(
                "the document names '{}' but the URL '{id}'",
                spec.id.as_deref().unwrap_or("")
            ),
        ));
    }
    if let Some(obj) = value.as_object_mut() {
        obj.remove("id");
    }
    let stored = StoredCampaign {
        tenant: tenant.clone(),
        id: id.clone(),
        version: current.version + 1,
        body: value.to_string(),
        // Kept by the store as it is: the campaign thread's record of what it listed.
        expanded_at_ms: current.expanded_at_ms,
        updated_at_ms: now_ms(),
    };
    let copy = stored.clone();
    let (t, i) = (tenant, id);
    let counts = blocking(state.store(), move |s| {
        s.put_campaign(&copy)?;
        s.campaign_counts(&t, &i)
    })
    .await?;
    Ok(Json(campaign_json(&stored, &counts)))
}

/// `GET /v1/campaigns`.
pub(super) async fn list_campaigns(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> ApiResult<Json<Value>> {
    let rows = blocking(state.store(), move |s| {
        s.list_campaigns(Some(&tenant))?
            .into_iter()
            .map(|c| {
                let counts = s.campaign_counts(&c.tenant, &c.id)?;
                Ok((c, counts))
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    Ok(Json(json!({
        "campaigns": rows.iter().map(|(c, counts)| campaign_json(c, counts)).collect::<Vec<_>>()
    })))
}

/// `GET /v1/campaigns/{id}`: the definition and its messages by status (sent, held, capped,
/// unsubscribed, not_member, failed, pending).
pub(super) async fn get_campaign(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let i = id.clone();
    let found = blocking(state.store(), move |s| {
        let Some(c) = s.get_campaign(&tenant, &i)? else {
            return Ok(None);
        };
        let counts = s.campaign_counts(&tenant, &i)?;
        Ok(Some((c, counts)))
    })
    .await?;
    let (c, counts) = found.ok_or_else(|| not_found("campaign", &id))?;
    Ok(Json(campaign_json(&c, &counts)))
}

/// `DELETE /v1/campaigns/{id}`: messages not yet sent are dropped; sent ones stay in history.
pub(super) async fn delete_campaign(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let i = id.clone();
    if blocking(state.store(), move |s| s.delete_campaign(&tenant, &i)).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found("campaign", &id))
    }
}

/// `GET /v1/contacts/{id}/messages`: the campaign messages of a contact and what became of
/// each.
pub(super) async fn contact_messages(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let sends = blocking(state.store(), move |s| s.contact_sends(&tenant, &id, 200)).await?;
    Ok(Json(json!({
        "messages": sends.iter().map(|s| json!({
            "campaign": s.send.campaign, "instance": s.send.instance, "channel": s.send.channel,
            "status": s.status.as_str(), "reason": s.reason, "notification_id": s.notification_id,
            "due_ms": s.send.due_ms, "updated_at_ms": s.updated_at_ms,
        })).collect::<Vec<_>>()
    })))
}

fn page(status: StatusCode, title: &str, text: &str, form: Option<&str>) -> Response {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let form = form
        .map(|action| {
            format!(
                "<form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\"><button>Unsubscribe</button></form>",
                escape(action)
            )
        })
        .unwrap_or_default();
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head><body><h1>{t}</h1><p>{p}</p>{form}</body></html>",
        t = escape(title),
        p = escape(text)
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

fn token_refused(e: TokenError) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "This unsubscribe link does not work",
        &e.to_string(),
        None,
    )
}

/// `GET /unsubscribe/{token}`: a page with one button; a GET changes nothing (link scanners
/// follow links).
pub(super) async fn unsubscribe_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Response {
    let Some(key) = state.unsubscribe_key.as_ref() else {
        return page(StatusCode::NOT_FOUND, "Not found", "", None);
    };
    match key.verify(&token, now_ms()) {
        Ok(what) => page(
            StatusCode::OK,
            "Unsubscribe",
            &format!("Stop receiving {} messages?", what.channel),
            Some(&format!("/unsubscribe/{token}")),
        ),
        Err(e) => token_refused(e),
    }
}

/// `POST /unsubscribe/{token}` (RFC 8058 one-click, or the page's button): withdraws the
/// contact's consent for the channel before the next message is decided.
pub(super) async fn unsubscribe(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Response {
    let Some(key) = state.unsubscribe_key.as_ref() else {
        return page(StatusCode::NOT_FOUND, "Not found", "", None);
    };
    let what = match key.verify(&token, now_ms()) {
        Ok(what) => what,
        Err(e) => return token_refused(e),
    };
    let Some(audiences) = state.audiences.clone() else {
        return page(StatusCode::SERVICE_UNAVAILABLE, "Try again later", "", None);
    };
    let (t, c) = (what.tenant.clone(), what.contact.clone());
    let stored = match blocking(state.store(), move |s| s.get_contact(&t, &c)).await {
        Ok(stored) => stored,
        Err(_) => return page(StatusCode::SERVICE_UNAVAILABLE, "Try again later", "", None),
    };
    let Some(mut contact) =
        stored.and_then(|s| serde_json::from_str::<operators::audience::Contact>(&s.body).ok())
    else {
        // A deleted contact gets nothing anyway.
        return page(
            StatusCode::OK,
            "Unsubscribed",
            "You will receive no more messages.",
            None,
        );
    };
    contact.consent.insert(what.channel.clone(), false);
    match audiences
        .put_contacts(&what.tenant, vec![(what.contact.clone(), contact)])
        .await
    {
        Ok(()) => {
            tracing::info!(tenant = %what.tenant, contact = %what.contact, channel = %what.channel, "contact unsubscribed");
            page(
                StatusCode::OK,
                "Unsubscribed",
                &format!("You will receive no more {} messages.", what.channel),
                None,
            )
        }
        Err(_) => page(StatusCode::SERVICE_UNAVAILABLE, "Try again later", "", None),
    }
}
