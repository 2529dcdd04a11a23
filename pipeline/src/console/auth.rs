//! Signing in with an API key and signing out.
//!
//! The key is checked by the API itself (`GET /v1/stats` with the key, from the client's
//! address), so the console shares the API's key store and its throttle on failed logins.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use super::session::{
    LOGIN_COOKIE, SESSION_COOKIE, SESSION_TTL, cookie, random_token, same_token, set_cookie,
};
use super::{CheckedForm, ConsoleState, FormPairs, client};

#[derive(Deserialize)]
pub(super) struct Next {
    next: Option<String>,
}

/// Only a path on this server: never another origin (`//host`, `https://…`).
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p.to_string(),
        _ => "/".to_string(),
    }
}

pub(super) async fn login_page(
    State(state): State<ConsoleState>,
    Query(next): Query<Next>,
    headers: HeaderMap,
) -> Response {
    login_form(&state, &headers, next.next.as_deref(), None, StatusCode::OK)
}

fn login_form(
    state: &ConsoleState,
    headers: &HeaderMap,
    next: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    // The form's token is bound to a cookie of its own; a new one unless the browser has one.
    let token = cookie(headers, LOGIN_COOKIE)
        .filter(|t| t.len() == 64)
        .unwrap_or_else(random_token);
    let mut response = state.page(
        "login.html",
        None,
        json!({"login_token": token, "next": local_path(next), "error": error}),
    );
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(&set_cookie(
        LOGIN_COOKIE,
        &token,
        Duration::from_secs(3600),
        state.inner.secure,
    )) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

pub(super) async fn login(State(state): State<ConsoleState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return state.error(None, StatusCode::PAYLOAD_TOO_LARGE, "the form is too large");
    };
    let form = FormPairs::parse(&bytes);
    let next = form.get("next");
    let expected = cookie(&parts.headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same_token(form.get("login_token").unwrap_or(""), &expected) {
        return login_form(
            &state,
            &parts.headers,
            next,
            Some("The sign-in form expired; try again."),
            StatusCode::FORBIDDEN,
        );
    }
    let Some(key) = form.get("api_key") else {
        return login_form(
            &state,
            &parts.headers,
            next,
            Some("Enter your API key."),
            StatusCode::BAD_REQUEST,
        );
    };
    let mut check = axum::http::Request::builder()
        .method(Method::GET)
        .uri("/v1/stats")
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap_or_default();
    if let Some(addr) = client(&parts.extensions) {
        check.extensions_mut().insert(addr);
    }
    let answer = state.send(check).await;
    let tenant = answer.json()["tenant"].as_str().map(str::to_string);
    let Some(tenant) = tenant.filter(|_| answer.ok()) else {
        let (message, _) = answer.error();
        let status = if answer.status == StatusCode::TOO_MANY_REQUESTS {
            StatusCode::TOO_MANY_REQUESTS
        } else {
            StatusCode::UNAUTHORIZED
        };
        return login_form(&state, &parts.headers, next, Some(&message), status);
    };
    // A new session, whatever cookie came with the request: a planted id is never promoted.
    if let Some(old) = cookie(&parts.headers, SESSION_COOKIE) {
        state.inner.sessions.remove(&old);
    }
    let session = state.inner.sessions.create(&tenant);
    tracing::info!(tenant = %tenant, "console sign-in");
    let mut response = Redirect::to(&local_path(next)).into_response();
    let cookies = [
        set_cookie(SESSION_COOKIE, &session.id, SESSION_TTL, state.inner.secure),
        set_cookie(LOGIN_COOKIE, "", Duration::ZERO, state.inner.secure),
    ];
    for c in cookies {
        if let Ok(value) = HeaderValue::from_str(&c) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

pub(super) async fn logout(State(state): State<ConsoleState>, form: CheckedForm) -> Response {
    state.inner.sessions.remove(&form.session.id);
    tracing::info!(tenant = %form.session.tenant, "console sign-out");
    let mut response = Redirect::to("/login").into_response();
    if let Ok(value) = HeaderValue::from_str(&set_cookie(
        SESSION_COOKIE,
        "",
        Duration::ZERO,
        state.inner.secure,
    )) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(local_path(Some("/alerts?x=1")), "/alerts?x=1");
        assert_eq!(local_path(Some("//evil.example/")), "/");
        assert_eq!(local_path(Some("https://evil.example/")), "/");
        assert_eq!(local_path(Some("/\\evil.example")), "/");
        assert_eq!(local_path(None), "/");
    }
}
