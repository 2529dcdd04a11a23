//! Alerts: rules with their live state (which groups are FIRING, since when), the rule form
//! (create, edit — the API's validation error shown next to its field — enable, disable), and
//! notifications with every delivery attempt, filterable, with new ones streamed to the page
//! (server-sent events).

use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use futures::Stream;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::session::Session;
use super::{CheckedForm, ConsoleState, FormPairs, PageResult, Prefs, SignedInSession, urlencode};

/// Rule kinds, aggregate functions and condition operators the form offers.
const KINDS: [&str; 3] = ["match", "threshold", "change"];
const FUNCTIONS: [&str; 6] = ["count", "sum", "avg", "min", "max", "count_distinct"];
const CONDITIONS: [&str; 6] = [">", ">=", "<", "<=", "==", "!="];

pub(super) async fn alerts(
    State(state): State<ConsoleState>,
    SignedInSession(session): SignedInSession,
) -> Response {
    let rules = state.api(&session, Method::GET, "/v1/rules", None).await;
    let open = state.api(&session, Method::GET, "/v1/alerts", None).await;
    let prefs = state.prefs(&session.tenant);
    let open = open.json();
    let firing: Vec<Value> = open["alerts"].as_array().cloned().unwrap_or_default();
    let rules: Vec<Value> = rules.json()["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut rule| {
            let groups: Vec<Value> = firing
                .iter()
                .filter(|a| a["rule_id"] == rule["id"])
                .map(|a| {
                    json!({
                        "group": a["group_key"],
                        "since": prefs.instant(a["since_ms"].as_i64().unwrap_or(0)),
                    })
                })
                .collect();
            rule["firing"] = json!(groups);
            rule["updated"] = json!(prefs.instant(rule["updated_at_ms"].as_i64().unwrap_or(0)));
            rule
        })
        .collect();
    state.page(
        "alerts.html",
        Some(&session),
        json!({"section": "alerts", "rules": rules, "zone": prefs.zone_name()}),
    )
}

/// The rule form's values from a rule document (to edit it).
fn form_of(rule: &Value) -> Value {
    let text = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    json!({
        "id": rule["id"],
        "name": text(&rule["name"]),
        "kind": text(&rule["kind"]),
        "event_type": text(&rule["event_type"]),
        "filter": if rule["filter"].is_null() { String::new() } else { rule["filter"].to_string() },
        "group_by": rule["group_by"].as_array().map(|g| g.iter().map(text).collect::<Vec<_>>().join(", ")).unwrap_or_default(),
        "agg_fn": text(&rule["aggregate"]["fn"]),
        "agg_attr": text(&rule["aggregate"]["attr"]),
        "window_size": text(&rule["window"]["size"]),
        "window_slide": text(&rule["window"]["slide"]),
        "cond_op": text(&rule["condition"]["op"]),
        "cond_value": text(&rule["condition"]["value"]),
        "period": text(&rule["period"]),
        "throttle": text(&rule["throttle"]),
        "template": text(&rule["template"]),
        "destinations": rule["destinations"],
    })
}

/// The rule document a posted form describes, or the form field that cannot become one.
fn rule_of(form: &FormPairs) -> Result<Value, (String, String)> {
    let mut rule = Map::new();
    let mut put = |key: &str, value: Value| {
        rule.insert(key.to_string(), value);
    };
    if let Some(name) = form.get("name") {
        put("name", json!(name));
    }
    put("kind", json!(form.get("kind").unwrap_or("")));
    put("event_type", json!(form.get("event_type").unwrap_or("")));
    if let Some(filter) = form.get("filter") {
        let parsed: Value = serde_json::from_str(filter).map_err(|e| {
            (
                "filter".to_string(),
                format!("not a JSON filter document: {e}"),
            )
        })?;
        put("filter", parsed);
    }
    let group_by: Vec<String> = form
        .get("group_by")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect();
    if !group_by.is_empty() {
        put("group_by", json!(group_by));
    }
    if let Some(function) = form.get("agg_fn") {
        let mut aggregate = json!({"fn": function});
        if let Some(attr) = form.get("agg_attr") {
            aggregate["attr"] = json!(attr);
        }
        put("aggregate", aggregate);
    }
    if let Some(size) = form.get("window_size") {
        let mut window = json!({"size": size});
        if let Some(slide) = form.get("window_slide") {
            window["slide"] = json!(slide);
        }
        put("window", window);
    }
    if let Some(op) = form.get("cond_op") {
        let raw = form.get("cond_value").unwrap_or("");
        let value: f64 = raw
            .parse()
            .map_err(|_| ("condition".to_string(), format!("'{raw}' is not a number")))?;
        put("condition", json!({"op": op, "value": value}));
    }
    for key in ["period", "throttle", "template"] {
        if let Some(v) = form.get(key) {
            put(key, json!(v));
        }
    }
    put("destinations", json!(form.all("destination")));
    Ok(Value::Object(rule))
}

/// The form's key for an API error field: its first segment (`condition.value` → `condition`,
/// `destinations[0]` → `destinations`, `aggregate` → `agg_fn`).
fn form_field(api_field: &str) -> String {
    let first = api_field
        .split(['.', '['])
        .next()
        .unwrap_or(api_field)
        .to_string();
    match first.as_str() {
        "aggregate" => "agg_fn".into(),
        "window" => "window_size".into(),
        "condition" => "cond_op".into(),
        "rule" => "form".into(),
        _ => first,
    }
}

async fn rule_form(
    state: &ConsoleState,
    session: &Session,
    form: Value,
    error: Option<(String, String)>,
    status: StatusCode,
) -> Response {
    let destinations = state
        .api(session, Method::GET, "/v1/destinations", None)
        .await
        .json();
    let errors = match &error {
        Some((field, message)) => json!({ field.clone(): message }),
        None => json!({}),
    };
    let mut response = state.page(
        "rule_form.html",
        Some(session),
        json!({
            "section": "alerts",
            "form": form,
            "errors": errors,
            "error": error.map(|(_, m)| m),
            "kinds": KINDS, "functions": FUNCTIONS, "conditions": CONDITIONS,
            "destinations": destinations["destinations"],
        }),
    );
    *response.status_mut() = status;
    response
}

pub(super) async fn new_rule(
    State(state): State<ConsoleState>,
    SignedInSession(session): SignedInSession,
) -> Response {
    let form = json!({"kind": "threshold", "agg_fn": "count", "cond_op": ">", "destinations": []});
    rule_form(&state, &session, form, None, StatusCode::OK).await
}

pub(super) async fn edit_rule(
    State(state): State<ConsoleState>,
    SignedInSession(session): SignedInSession,
    Path(id): Path<String>,
) -> PageResult {
    let uri = format!("/v1/rules/{}", urlencode(&id));
    let api = state.fetch(&session, Method::GET, &uri, None).await?;
    Ok(rule_form(&state, &session, form_of(&api.json()), None, StatusCode::OK).await)
}

/// Saves a posted rule through the API: `id` `None` creates it.
async fn save(
    state: &ConsoleState,
    session: &Session,
    form: &FormPairs,
    id: Option<&str>,
) -> Response {
    let values = {
        let mut v = json!({});
        for (key, value) in &form.0 {
            if key != "destination" && key != "csrf" {
                v[key] = json!(value);
            }
        }
        v["destinations"] = json!(form.all("destination"));
        v["id"] = json!(id);
        v
    };
    let rule = match rule_of(form) {
        Ok(rule) => rule,
        Err((field, message)) => {
            let error = Some((form_field(&field), message));
            return rule_form(state, session, values, error, StatusCode::BAD_REQUEST).await;
        }
    };
    let api = match id {
        None => {
            state
                .api(session, Method::POST, "/v1/rules", Some(rule))
                .await
        }
        Some(id) => {
            let uri = format!("/v1/rules/{}", urlencode(id));
            state.api(session, Method::PUT, &uri, Some(rule)).await
        }
    };
    if !api.ok() {
        let (message, field) = api.error();
        let field = form_field(field.as_deref().unwrap_or("form"));
        return rule_form(state, session, values, Some((field, message)), api.status).await;
    }
    Redirect::to("/alerts").into_response()
}

pub(super) async fn create_rule(
    State(state): State<ConsoleState>,
    CheckedForm { session, form }: CheckedForm,
) -> Response {
    save(&state, &session, &form, None).await
}

pub(super) async fn update_rule(
    State(state): State<ConsoleState>,
    Path(id): Path<String>,
    CheckedForm { session, form }: CheckedForm,
) -> Response {
    save(&state, &session, &form, Some(&id)).await
}

async fn switch(state: &ConsoleState, session: &Session, id: &str, action: &str) -> PageResult {
    let uri = format!("/v1/rules/{}/{action}", urlencode(id));
    state.fetch(session, Method::POST, &uri, None).await?;
    Ok(Redirect::to("/alerts").into_response())
}

pub(super) async fn enable_rule(
    State(state): State<ConsoleState>,
    Path(id): Path<String>,
    CheckedForm { session, .. }: CheckedForm,
) -> PageResult {
    switch(&state, &session, &id, "enable").await
}

pub(super) async fn disable_rule(
    State(state): State<ConsoleState>,
    Path(id): Path<String>,
    CheckedForm { session, .. }: CheckedForm,
) -> PageResult {
    switch(&state, &session, &id, "disable").await
}

#[derive(Deserialize)]
pub(super) struct NotificationFilter {
    status: Option<String>,
    rule_id: Option<String>,
    before: Option<String>,
}

/// A notification as the page shows it: instants in the tenant's zone, the payload shortened.
fn notification_view(n: &Value, prefs: &Prefs) -> Value {
    let at = |v: &Value| v.as_i64().map(|ms| prefs.instant(ms)).unwrap_or_default();
    let mut payload = n["payload"].to_string();
    if payload.chars().count() > 400 {
        payload = payload.chars().take(399).collect::<String>() + "…";
    }
    let deliveries: Vec<Value> = n["deliveries"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|d| {
                    let attempts: Vec<Value> = d["attempt_log"]
                        .as_array()
                        .map(|log| {
                            log.iter()
                                .map(|a| {
                                    json!({
                                        "attempt": a["attempt"], "at": at(&a["at_ms"]),
                                        "outcome": a["outcome"], "status_code": a["status_code"],
                                        "error": a["error"], "duration_ms": a["duration_ms"],
                                    })
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    json!({
                        "destination": d["destination_id"], "status": d["status"],
                        "attempts": d["attempts"], "next": at(&d["next_attempt_at_ms"]),
                        "last_error": d["last_error"], "log": attempts,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "id": n["id"], "rule_id": n["rule_id"], "kind": n["kind"], "group_key": n["group_key"],
        "created": at(&n["created_at_ms"]), "created_ms": n["created_at_ms"],
        "payload": payload, "message": n["payload"]["message"], "deliveries": deliveries,
    })
}

fn notifications_uri(filter: &NotificationFilter, limit: usize) -> String {
    let mut uri = format!("/v1/notifications?limit={limit}");
    for (key, value) in [
        ("status", &filter.status),
        ("rule_id", &filter.rule_id),
        ("before", &filter.before),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            uri.push_str(&format!("&{key}={}", urlencode(v)));
        }
    }
    uri
}

pub(super) async fn notifications(
    State(state): State<ConsoleState>,
    SignedInSession(session): SignedInSession,
    Query(filter): Query<NotificationFilter>,
) -> PageResult {
    let api = state
        .fetch(&session, Method::GET, &notifications_uri(&filter, 50), None)
        .await?;
    let prefs = state.prefs(&session.tenant);
    let body = api.json();
    let list: Vec<Value> = body["notifications"]
        .as_array()
        .map(|l| l.iter().map(|n| notification_view(n, &prefs)).collect())
        .unwrap_or_default();
    let newest = list
        .first()
        .and_then(|n| n["created_ms"].as_i64())
        .unwrap_or(0);
    let older = body["next"]
        .as_str()
        .filter(|_| list.len() == 50)
        .map(|next| {
            let mut link = format!("/notifications?before={}", urlencode(next));
            if let Some(s) = filter.status.as_deref().filter(|s| !s.is_empty()) {
                link.push_str(&format!("&status={}", urlencode(s)));
            }
            if let Some(r) = filter.rule_id.as_deref().filter(|r| !r.is_empty()) {
                link.push_str(&format!("&rule_id={}", urlencode(r)));
            }
            link
        });
    // Live only on the first page of an unfiltered list: new notifications belong at its top.
    let live = filter.before.is_none()
        && filter.status.as_deref().unwrap_or("").is_empty()
        && filter.rule_id.as_deref().unwrap_or("").is_empty();
    Ok(state.page(
        "notifications.html",
        Some(&session),
        json!({
            "section": "notifications", "notifications": list, "older": older,
            "status": filter.status, "rule_id": filter.rule_id, "live": live,
            "since": newest, "zone": prefs.zone_name(),
        }),
    ))
}

#[derive(Deserialize)]
pub(super) struct StreamFrom {
    since: Option<i64>,
}

/// New notifications as server-sent events (`event: notification`, the row's HTML as data),
/// polled from the API every second; the stream ends when the session does.
pub(super) async fn stream(
    State(state): State<ConsoleState>,
    SignedInSession(session): SignedInSession,
    Query(from): Query<StreamFrom>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    struct Cursor {
        state: ConsoleState,
        session: Session,
        since: i64,
        seen: HashSet<String>,
    }
    let cursor = Cursor {
        state,
        session,
        since: from.since.unwrap_or(0),
        seen: HashSet::new(),
    };
    let events = futures::stream::unfold(cursor, |mut c| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        // Signed out (or expired): the stream ends.
        c.state.inner.sessions.get(&c.session.id)?;
        let filter = NotificationFilter {
            status: None,
            rule_id: None,
            before: None,
        };
        let api = c
            .state
            .api(
                &c.session,
                Method::GET,
                &notifications_uri(&filter, 50),
                None,
            )
            .await;
        let prefs = c.state.prefs(&c.session.tenant);
        let mut fresh: Vec<Value> = api.json()["notifications"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n["created_at_ms"].as_i64().unwrap_or(0) >= c.since)
            .filter(|n| !c.seen.contains(n["id"].as_str().unwrap_or("")))
            .collect();
        // Oldest first, so each lands on top of the list in turn.
        fresh.reverse();
        let mut events = Vec::with_capacity(fresh.len());
        for n in fresh {
            c.seen.insert(n["id"].as_str().unwrap_or("").to_string());
            let row = c.state.fragment(
                "notification_row.html",
                json!({"n": notification_view(&n, &prefs)}),
            );
            let line = row.replace(['\n', '\r'], " ");
            events.push(Ok(Event::default().event("notification").data(line)));
        }
        Some((futures::stream::iter(events), c))
    });
    use futures::StreamExt;
    Sse::new(events.flatten()).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threshold_form_becomes_a_rule_document() {
        let form = FormPairs::parse(
            b"name=Big+orders&kind=threshold&event_type=order&group_by=channel,+country\
              &agg_fn=sum&agg_attr=revenue&window_size=1h&cond_op=%3E&cond_value=1000\
              &destination=hook&destination=mail&template=&csrf=x",
        );
        let rule = rule_of(&form).expect("rule");
        assert_eq!(rule["group_by"], json!(["channel", "country"]));
        assert_eq!(rule["aggregate"], json!({"fn": "sum", "attr": "revenue"}));
        assert_eq!(rule["window"], json!({"size": "1h"}));
        assert_eq!(rule["condition"], json!({"op": ">", "value": 1000.0}));
        assert_eq!(rule["destinations"], json!(["hook", "mail"]));
        assert!(rule.get("template").is_none());
        assert!(rule.get("csrf").is_none());
    }

    #[test]
    fn a_bad_filter_or_threshold_names_its_field() {
        let bad_filter = FormPairs::parse(b"kind=match&event_type=order&filter=%7Bnope");
        assert_eq!(rule_of(&bad_filter).unwrap_err().0, "filter");
        let bad_value =
            FormPairs::parse(b"kind=threshold&event_type=order&cond_op=%3E&cond_value=lots");
        assert_eq!(rule_of(&bad_value).unwrap_err().0, "condition");
    }

    #[test]
    fn api_fields_map_to_form_fields() {
        assert_eq!(form_field("condition.value"), "cond_op");
        assert_eq!(form_field("destinations[0]"), "destinations");
        assert_eq!(form_field("template"), "template");
        assert_eq!(form_field("window.size"), "window_size");
    }
}
