//! The web console at `/`: dashboards, alerts, notifications, reports, audiences, campaigns and
//! secrets in the browser, for a tenant signed in with its API key.
//!
//! - **Served by the binary.** Pages are HTML rendered on the server from minijinja templates
//!   embedded in the binary (`console/templates/`, auto-escaped: every string a tenant or an event
//!   supplied is escaped); the stylesheet and the page script (`console/assets/`) are embedded too.
//!   Pages work without the script; it adds live notifications (server-sent events) and small
//!   conveniences.
//! - **Through the API.** Every page reads and writes through the HTTP API's own router, called
//!   in-process with the signed-in tenant ([`SignedIn`]): the console has no domain logic and no
//!   access path of its own, so the API's checks, tenant walls, limits and error messages are the
//!   console's too (a rule's validation error is shown next to the field the API names).
//! - **Charts** are the reports' renderer (`generate::report::chart`) drawing SVG, so a chart looks
//!   the same in the browser and in an email.
//! - **Sessions** ([`session`]): HttpOnly, SameSite=Strict cookies, CSRF tokens on every form,
//!   sign-out on the server.

mod alerts;
mod auth;
mod explore;
pub mod format;
mod pages;
pub mod session;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::Environment;
use serde_json::Value;
use tower::ServiceExt;

use crate::http::SignedIn;
pub use format::Prefs;
use session::{SESSION_COOKIE, Session, Sessions};

/// The templates, by name (embedded in the binary).
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("home.html", include_str!("templates/home.html")),
    ("explore.html", include_str!("templates/explore.html")),
    ("panel.html", include_str!("templates/panel.html")),
    ("dashboards.html", include_str!("templates/dashboards.html")),
    ("dashboard.html", include_str!("templates/dashboard.html")),
    ("alerts.html", include_str!("templates/alerts.html")),
    ("rule_form.html", include_str!("templates/rule_form.html")),
    (
        "notifications.html",
        include_str!("templates/notifications.html"),
    ),
    (
        "notification_row.html",
        include_str!("templates/notification_row.html"),
    ),
    ("reports.html", include_str!("templates/reports.html")),
    ("report.html", include_str!("templates/report.html")),
    ("secrets.html", include_str!("templates/secrets.html")),
    ("crm.html", include_str!("templates/crm.html")),
    ("error.html", include_str!("templates/error.html")),
];
const STYLE: &str = include_str!("assets/console.css");
const SCRIPT: &str = include_str!("assets/console.js");

/// What the console's handlers share.
#[derive(Clone)]
pub struct ConsoleState {
    inner: Arc<Inner>,
}

struct Inner {
    /// The API's router, called in-process.
    api: Router,
    sessions: Sessions,
    templates: Environment<'static>,
    prefs: HashMap<String, Prefs>,
    /// Cookies get `Secure` (the console is reached over HTTPS).
    secure: bool,
}

impl ConsoleState {
    /// The console over the API router `api`; `prefs` are each tenant's locale, currency and
    /// zone; `secure` when people reach the server over HTTPS (its public URL).
    pub fn new(api: Router, prefs: HashMap<String, Prefs>, secure: bool) -> ConsoleState {
        let mut templates = Environment::new();
        // Every template is `.html`: minijinja escapes every value it prints.
        for (name, source) in TEMPLATES {
            templates
                .add_template(name, source)
                .unwrap_or_else(|e| panic!("console template {name}: {e}"));
        }
        ConsoleState {
            inner: Arc::new(Inner {
                api,
                sessions: Sessions::default(),
                templates,
                prefs,
                secure,
            }),
        }
    }

    fn prefs(&self, tenant: &str) -> Prefs {
        self.inner.prefs.get(tenant).cloned().unwrap_or_default()
    }

    /// Renders template `name` with `context` (plus the session's tenant and CSRF token).
    fn page(&self, name: &str, session: Option<&Session>, mut context: Value) -> Response {
        if let (Some(session), Value::Object(map)) = (session, &mut context) {
            map.insert("tenant".into(), Value::String(session.tenant.clone()));
            map.insert("csrf".into(), Value::String(session.csrf.clone()));
        }
        let rendered = self
            .inner
            .templates
            .get_template(name)
            .and_then(|t| t.render(&context));
        match rendered {
            Ok(html) => with_page_headers(Html(html).into_response()),
            Err(e) => {
                tracing::error!(template = name, error = %e, "console page failed to render");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the page failed to render",
                )
                    .into_response()
            }
        }
    }

    /// Template `name` rendered on its own (a piece of a page, e.g. a streamed row).
    fn fragment(&self, name: &str, context: Value) -> String {
        self.inner
            .templates
            .get_template(name)
            .and_then(|t| t.render(&context))
            .unwrap_or_else(|e| {
                tracing::error!(template = name, error = %e, "console fragment failed to render");
                String::new()
            })
    }

    /// An error page.
    fn error(&self, session: Option<&Session>, status: StatusCode, message: &str) -> Response {
        let mut response = self.page(
            "error.html",
            session,
            serde_json::json!({"status": status.as_u16(), "message": message}),
        );
        *response.status_mut() = status;
        response
    }

    /// Calls the API as the signed-in tenant.
    async fn api(&self, session: &Session, method: Method, uri: &str, body: Option<Value>) -> Api {
        let mut request = Request::builder().method(method).uri(uri);
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let body = body.map(|b| Body::from(b.to_string())).unwrap_or_default();
        let mut request = request.body(body).unwrap_or_default();
        request
            .extensions_mut()
            .insert(SignedIn(session.tenant.clone()));
        self.send(request).await
    }

    /// Calls the API as the signed-in tenant; a failed call becomes the error page showing the
    /// API's message with its status.
    async fn fetch(
        &self,
        session: &Session,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> Result<Api, Response> {
        let api = self.api(session, method, uri, body).await;
        if api.ok() {
            Ok(api)
        } else {
            let (message, _) = api.error();
            Err(self.error(Some(session), api.status, &message))
        }
    }

    async fn send(&self, request: Request<Body>) -> Api {
        let response = match self.inner.api.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        Api {
            status,
            content_type,
            body,
        }
    }
}

/// The security headers every console page carries: no framing, no script or style from
/// anywhere but this server, no inline script.
fn with_page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
             script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A page, or the error page that replaced it.
type PageResult = Result<Response, Response>;

/// An API answer.
struct Api {
    status: StatusCode,
    content_type: String,
    body: Bytes,
}

impl Api {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn ok(&self) -> bool {
        self.status.is_success()
    }

    /// The API's error message and field, for a failed call.
    fn error(&self) -> (String, Option<String>) {
        let body = self.json();
        let message = body["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("the request failed ({})", self.status));
        let field = body["error"]["field"].as_str().map(str::to_string);
        (message, field)
    }
}

/// The signed-in session of a request. Without one, a page redirects to the sign-in page.
pub struct SignedInSession(pub Session);

impl FromRequestParts<ConsoleState> for SignedInSession {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        let session = session::cookie(&parts.headers, SESSION_COOKIE)
            .and_then(|id| state.inner.sessions.get(&id));
        match session {
            Some(session) => Ok(SignedInSession(session)),
            None => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let target = format!("/login?next={}", urlencode(next));
                Err(Redirect::to(&target).into_response())
            }
        }
    }
}

/// The client's address, for the sign-in throttle.
fn client(parts: &axum::http::Extensions) -> Option<ConnectInfo<SocketAddr>> {
    parts.get::<ConnectInfo<SocketAddr>>().cloned()
}

/// `text` percent-encoded for a URL's query.
pub fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A form body (or a query string) as (key, value) pairs, keys repeated as sent.
pub struct FormPairs(pub Vec<(String, String)>);

impl FormPairs {
    fn parse(bytes: &[u8]) -> FormPairs {
        FormPairs(
            form_urlencoded::parse(bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `key`, trimmed; `None` when absent or empty.
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// Every non-empty value of `key`, in order.
    fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| k == key && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }
}

/// A POSTed form whose CSRF token matched the session's: the only way a console handler gets a
/// form body.
pub struct CheckedForm {
    session: Session,
    form: FormPairs,
}

impl axum::extract::FromRequest<ConsoleState> for CheckedForm {
    type Rejection = Response;

    async fn from_request(
        request: Request<Body>,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let SignedInSession(session) = SignedInSession::from_request_parts(&mut parts, state)
            .await
            .map_err(|_| {
                state.error(
                    None,
                    StatusCode::FORBIDDEN,
                    "your session has ended; sign in again",
                )
            })?;
        let bytes = axum::body::to_bytes(body, 1 << 20).await.map_err(|_| {
            state.error(
                Some(&session),
                StatusCode::PAYLOAD_TOO_LARGE,
                "the form is too large",
            )
        })?;
        let form = FormPairs::parse(&bytes);
        let sent = form.get("csrf").unwrap_or("");
        if !session::same_token(sent, &session.csrf) {
            return Err(state.error(
                Some(&session),
                StatusCode::FORBIDDEN,
                "the form's security token is missing or stale; reload the page and try again",
            ));
        }
        Ok(CheckedForm { session, form })
    }
}

/// The console's routes, to merge beside the API's.
pub fn router(state: ConsoleState) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/explore", get(explore::explore))
        .route("/explore.csv", get(explore::explore_csv))
        .route(
            "/dashboards",
            get(explore::dashboards).post(explore::create_dashboard),
        )
        .route("/dashboards/{id}", get(explore::dashboard))
        .route("/dashboards/{id}/panels", post(explore::add_panel))
        .route("/dashboards/{id}/delete", post(explore::delete_dashboard))
        .route("/alerts", get(alerts::alerts).post(alerts::create_rule))
        .route("/alerts/new", get(alerts::new_rule))
        .route(
            "/alerts/{id}",
            get(alerts::edit_rule).post(alerts::update_rule),
        )
        .route("/alerts/{id}/enable", post(alerts::enable_rule))
        .route("/alerts/{id}/disable", post(alerts::disable_rule))
        .route("/notifications", get(alerts::notifications))
        .route("/notifications/stream", get(alerts::stream))
        .route("/reports", get(pages::reports))
        .route("/reports/{id}", get(pages::report))
        .route("/reports/{id}/preview", get(pages::report_preview))
        .route("/reports/{id}/run", post(pages::run_report))
        .route("/secrets", get(pages::secrets).post(pages::put_secret))
        .route("/crm", get(pages::crm))
        .route("/assets/console.css", get(style))
        .route("/assets/console.js", get(script))
        .with_state(state)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}
