//! A stand-in for the GA4 Data API and Google's token endpoint, for tests.
//!
//! It serves `runReport`, `batchRunReports` and `getMetadata` over a deterministic synthetic
//! event log (users, sessions, page views and purchases over 14 days), computing every metric
//! from the events as GA4 defines it — so `totalUsers` is a distinct count and does not add up
//! across dates or channels. Every request body is checked against the official discovery
//! document ([`discovery`]); violations are recorded and answered with HTTP 400 so the test
//! fails. The token endpoint verifies the JWT's RS256 signature with `test_key.pub.pem`.
//!
//! `test_key.pem` / `test_key.pub.pem` (and `other_key.pem`, a key the endpoint does not know)
//! are throw-away keys made for these tests only.

pub mod discovery;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{Duration as Days, NaiveDate};
use connectors::ga4::api::{
    self, FilterExpression, FilterTest, MatchType, MetricType, NumericValue, Operation,
    OrderByField, OrderType, RunReportRequest,
};
use serde_json::{Value, json};

use discovery::Discovery;

/// The service account the test key belongs to.
pub const CLIENT_EMAIL: &str = "tidemark-test@tidemark-test.iam.gserviceaccount.com";
/// The property with the synthetic data.
pub const PROPERTY: &str = "1001";
/// A second property with different data (another tenant's).
pub const OTHER_PROPERTY: &str = "2002";
/// The stand-in's "today" (relative dates resolve against it).
pub const TODAY: &str = "2026-01-15";
/// The first and last day with data.
pub const FIRST_DAY: &str = "2026-01-01";
pub const LAST_DAY: &str = "2026-01-14";

const TEST_KEY: &str = include_str!("test_key.pem");
const TEST_PUBLIC_KEY: &str = include_str!("test_key.pub.pem");
const OTHER_KEY: &str = include_str!("other_key.pem");

/// One logged API request.
#[derive(Debug, Clone)]
pub struct Logged {
    /// `runReport`, `batchRunReports`, `getMetadata`.
    pub method: String,
    /// `properties/<id>`.
    pub property: String,
    /// The JSON body (`null` for GET).
    pub body: Value,
}

/// A synthetic event.
#[derive(Debug, Clone)]
pub struct Event {
    pub date: NaiveDate,
    pub user: u32,
    pub session: u32,
    pub channel: &'static str,
    pub device: &'static str,
    pub country: &'static str,
    pub tier: &'static str,
    pub page: &'static str,
    pub name: &'static str,
    pub engaged: bool,
    pub session_seconds: f64,
    pub revenue: f64,
    pub items: f64,
}

/// The dimensions the stand-in knows: API name.
pub const DIMENSIONS: &[&str] = &[
    "date",
    "sessionDefaultChannelGroup",
    "deviceCategory",
    "country",
    "pagePath",
    "eventName",
    "customUser:tier",
    "dayOfWeek",
    "yearMonth",
    "isoYearIsoWeek",
    "year",
];

/// The metrics: API name and type.
pub const METRICS: &[(&str, MetricType)] = &[
    ("sessions", MetricType::TypeInteger),
    ("totalUsers", MetricType::TypeInteger),
    ("activeUsers", MetricType::TypeInteger),
    ("screenPageViews", MetricType::TypeInteger),
    ("eventCount", MetricType::TypeInteger),
    ("engagedSessions", MetricType::TypeInteger),
    ("transactions", MetricType::TypeInteger),
    ("bounceRate", MetricType::TypeFloat),
    ("engagementRate", MetricType::TypeFloat),
    ("averageSessionDuration", MetricType::TypeSeconds),
    ("purchaseRevenue", MetricType::TypeCurrency),
    ("customEvent:items", MetricType::TypeStandard),
];

struct Shared {
    discovery: Discovery,
    public_key: Vec<u8>,
    token_uri: Mutex<String>,
    data: BTreeMap<String, Vec<Event>>,
    log: Mutex<Vec<Logged>>,
    violations: Mutex<Vec<String>>,
    tokens: Mutex<HashSet<String>>,
    tokens_issued: AtomicUsize,
    token_lifetime: AtomicI64,
    fail_next: AtomicUsize,
    reject_next: AtomicUsize,
    daily_tokens: AtomicI64,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    delay_ms: AtomicI64,
    thresholding: AtomicBool,
    sampling: AtomicBool,
}

/// The running stand-in.
#[derive(Clone)]
pub struct StandIn {
    /// The API root (`http://127.0.0.1:<port>`).
    pub base_url: String,
    /// The token endpoint.
    pub token_uri: String,
    shared: Arc<Shared>,
}

impl StandIn {
    /// Starts the stand-in on a free local port.
    pub async fn start() -> StandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base_url = format!("http://{addr}");
        let token_uri = format!("{base_url}/token");
        let mut data = BTreeMap::new();
        data.insert(format!("properties/{PROPERTY}"), synthesize(7));
        data.insert(format!("properties/{OTHER_PROPERTY}"), synthesize(99));
        let shared = Arc::new(Shared {
            discovery: Discovery::load(),
            public_key: pem_der(TEST_PUBLIC_KEY, "RSA PUBLIC KEY"),
            token_uri: Mutex::new(token_uri.clone()),
            data,
            log: Mutex::new(Vec::new()),
            violations: Mutex::new(Vec::new()),
            tokens: Mutex::new(HashSet::new()),
            tokens_issued: AtomicUsize::new(0),
            token_lifetime: AtomicI64::new(3600),
            fail_next: AtomicUsize::new(0),
            reject_next: AtomicUsize::new(0),
            daily_tokens: AtomicI64::new(1_000_000),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            delay_ms: AtomicI64::new(0),
            thresholding: AtomicBool::new(false),
            sampling: AtomicBool::new(false),
        });
        let app = Router::new()
            .route("/token", post(token))
            .route("/v1beta/{*rest}", any(api_call))
            .with_state(Arc::clone(&shared));
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        StandIn {
            base_url,
            token_uri,
            shared,
        }
    }

    /// A service-account key JSON for the test key, pointing at the local token endpoint.
    pub fn key_json(&self) -> String {
        key_json(TEST_KEY, &self.token_uri)
    }

    /// A key JSON signed by a key the token endpoint does not know.
    pub fn wrong_key_json(&self) -> String {
        key_json(OTHER_KEY, &self.token_uri)
    }

    /// Every API request so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.shared.log.lock().unwrap().clone()
    }

    /// The `runReport` bodies so far (batch members included).
    pub fn run_reports(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .flat_map(|l| match l.method.as_str() {
                "runReport" => vec![l.body],
                "batchRunReports" => l.body["requests"].as_array().cloned().unwrap_or_default(),
                _ => vec![],
            })
            .collect()
    }

    /// Forgets the logged requests.
    pub fn clear_log(&self) {
        self.shared.log.lock().unwrap().clear();
    }

    /// Requests that broke the discovery document; a test asserts this is empty.
    pub fn violations(&self) -> Vec<String> {
        self.shared.violations.lock().unwrap().clone()
    }

    /// How many tokens were issued.
    pub fn tokens_issued(&self) -> usize {
        self.shared.tokens_issued.load(Ordering::SeqCst)
    }

    /// Lifetime of tokens issued from now on.
    pub fn set_token_lifetime(&self, seconds: i64) {
        self.shared.token_lifetime.store(seconds, Ordering::SeqCst);
    }

    /// Answers the next `n` API requests with 429 RESOURCE_EXHAUSTED (hourly quota).
    pub fn fail_next(&self, n: usize) {
        self.shared.fail_next.store(n, Ordering::SeqCst);
    }

    /// Answers the next `n` API requests with 400 INVALID_ARGUMENT, as GA4 answers a request
    /// it finds invalid (an incompatible dimension and metric, a bad filter).
    pub fn reject_next(&self, n: usize) {
        self.shared.reject_next.store(n, Ordering::SeqCst);
    }

    /// Sets how many requests the daily token budget still allows.
    pub fn set_daily_tokens(&self, n: i64) {
        self.shared.daily_tokens.store(n, Ordering::SeqCst);
    }

    /// Makes every API request take this long (to observe concurrency).
    pub fn set_delay(&self, d: Duration) {
        self.shared
            .delay_ms
            .store(d.as_millis() as i64, Ordering::SeqCst);
    }

    /// The most API requests that were ever in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Flags reports as thresholded / sampled from now on.
    pub fn set_thresholding(&self, on: bool) {
        self.shared.thresholding.store(on, Ordering::SeqCst);
    }

    /// See [`StandIn::set_thresholding`].
    pub fn set_sampling(&self, on: bool) {
        self.shared.sampling.store(on, Ordering::SeqCst);
    }

    /// The synthetic events of a property (to compute expected answers independently).
    pub fn events(&self, property: &str) -> Vec<Event> {
        self.shared.data[&format!("properties/{property}")].clone()
    }
}

fn key_json(pem: &str, token_uri: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": "tidemark-test",
        "private_key_id": "test-key-1",
        "private_key": pem,
        "client_email": CLIENT_EMAIL,
        "client_id": "1",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    })
    .to_string()
}

fn pem_der(pem: &str, label: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");
    assert!(pem.contains(label), "PEM label {label}");
    STANDARD.decode(body).unwrap()
}

/// Deterministic events: 60 users over 14 days, a session on some days, each with page views
/// and sometimes a purchase.
pub fn synthesize(seed: u64) -> Vec<Event> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    const CHANNELS: &[&str] = &[
        "Organic Search",
        "Direct",
        "Paid Search",
        "Email",
        "Referral",
    ];
    const DEVICES: &[&str] = &["desktop", "mobile", "tablet"];
    const COUNTRIES: &[&str] = &["South Korea", "Japan", "United States"];
    const TIERS: &[&str] = &["gold", "silver", "(not set)"];
    const PAGES: &[&str] = &[
        "/",
        "/products",
        "/products/shoes",
        "/products/bags",
        "/blog/sale",
    ];
    let first = NaiveDate::parse_from_str(FIRST_DAY, "%Y-%m-%d").unwrap();
    let mut events = Vec::new();
    let mut session = 0;
    for day in 0..14 {
        let date = first + Days::days(day);
        for user in 0..60u32 {
            if next(100) >= 45 {
                continue;
            }
            let sessions_today = 1 + u32::from(next(5) == 0);
            for _ in 0..sessions_today {
                session += 1;
                let channel = CHANNELS[next(CHANNELS.len() as u64) as usize];
                let device = DEVICES[(user % 3) as usize];
                let country = COUNTRIES[(user % 7 % 3) as usize];
                let tier = TIERS[(user % 5 % 3) as usize];
                let views = 1 + next(4);
                let engaged = views > 1 || next(3) == 0;
                let session_seconds = (10 + next(300)) as f64;
                let base = Event {
                    date,
                    user,
                    session,
                    channel,
                    device,
                    country,
                    tier,
                    page: "/",
                    name: "session_start",
                    engaged,
                    session_seconds,
                    revenue: 0.0,
                    items: 0.0,
                };
                events.push(base.clone());
                for _ in 0..views {
                    events.push(Event {
                        page: PAGES[next(PAGES.len() as u64) as usize],
                        name: "page_view",
                        ..base.clone()
                    });
                }
                if next(6) == 0 {
                    let items = (1 + next(3)) as f64;
                    events.push(Event {
                        page: "/checkout",
                        name: "purchase",
                        revenue: items * 19.5,
                        items,
                        ..base.clone()
                    });
                }
            }
        }
    }
    events
}

/// A dimension's value for an event, as GA4 writes it.
pub fn dimension(e: &Event, name: &str) -> Option<String> {
    Some(match name {
        "date" => e.date.format("%Y%m%d").to_string(),
        "sessionDefaultChannelGroup" => e.channel.into(),
        "deviceCategory" => e.device.into(),
        "country" => e.country.into(),
        "pagePath" => e.page.into(),
        "eventName" => e.name.into(),
        "customUser:tier" => e.tier.into(),
        "yearMonth" => e.date.format("%Y%m").to_string(),
        "isoYearIsoWeek" => {
            let w = chrono::Datelike::iso_week(&e.date);
            format!("{}{:02}", w.year(), w.week())
        }
        "year" => e.date.format("%Y").to_string(),
        "dayOfWeek" => chrono::Datelike::weekday(&e.date)
            .num_days_from_sunday()
            .to_string(),
        _ => return None,
    })
}

/// A metric over a set of events, as GA4 defines it.
pub fn metric(events: &[&Event], name: &str) -> Option<f64> {
    let sessions: BTreeMap<u32, &Event> = events.iter().map(|e| (e.session, *e)).collect();
    let n_sessions = sessions.len() as f64;
    let engaged = sessions.values().filter(|e| e.engaged).count() as f64;
    let ratio = |a: f64| {
        if n_sessions > 0.0 {
            a / n_sessions
        } else {
            0.0
        }
    };
    Some(match name {
        "sessions" => n_sessions,
        "totalUsers" => events.iter().map(|e| e.user).collect::<BTreeSet<_>>().len() as f64,
        "activeUsers" => events
            .iter()
            .filter(|e| e.engaged)
            .map(|e| e.user)
            .collect::<BTreeSet<_>>()
            .len() as f64,
        "screenPageViews" => events.iter().filter(|e| e.name == "page_view").count() as f64,
        "eventCount" => events.len() as f64,
        "engagedSessions" => engaged,
        "transactions" => events.iter().filter(|e| e.name == "purchase").count() as f64,
        "bounceRate" => ratio(n_sessions - engaged),
        "engagementRate" => ratio(engaged),
        "averageSessionDuration" => ratio(sessions.values().map(|e| e.session_seconds).sum()),
        "purchaseRevenue" => events.iter().map(|e| e.revenue).sum(),
        "customEvent:items" => events.iter().map(|e| e.items).sum(),
        _ => return None,
    })
}

fn metric_type(name: &str) -> Option<MetricType> {
    METRICS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

fn format_metric(name: &str, v: f64) -> String {
    match metric_type(name) {
        Some(MetricType::TypeInteger) => format!("{}", v as i64),
        _ => format!("{v}"),
    }
}

fn google_error(code: StatusCode, status: &str, message: &str) -> Response {
    (
        code,
        axum::Json(json!({"error": {"code": code.as_u16(), "message": message, "status": status}})),
    )
        .into_response()
}

async fn token(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let form: BTreeMap<String, String> = String::from_utf8_lossy(&body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%3A", ":").replace("%3a", ":")))
        .collect();
    let refuse = |why: String| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant", "error_description": why})),
        )
            .into_response()
    };
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return refuse(format!("bad grant_type {:?}", form.get("grant_type")));
    }
    let Some(jwt) = form.get("assertion") else {
        return refuse("no assertion".into());
    };
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 {
        return refuse("assertion is not a JWT".into());
    }
    let decode = |p: &str| -> Option<Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok()
    };
    let (Some(header), Some(claims)) = (decode(parts[0]), decode(parts[1])) else {
        return refuse("JWT header or claims are not base64url JSON".into());
    };
    if header["alg"] != "RS256" || header["typ"] != "JWT" {
        return refuse(format!("JWT header {header} is not RS256"));
    }
    let Ok(signature) = URL_SAFE_NO_PAD.decode(parts[2]) else {
        return refuse("signature is not base64url".into());
    };
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        &s.public_key,
    );
    let signed = format!("{}.{}", parts[0], parts[1]);
    if key.verify(signed.as_bytes(), &signature).is_err() {
        return refuse("Invalid JWT Signature.".into());
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let token_uri = s.token_uri.lock().unwrap().clone();
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap_or(0),
        claims["exp"].as_i64().unwrap_or(0),
    );
    let problems = [
        (
            claims["iss"] != CLIENT_EMAIL,
            "iss is not the service account",
        ),
        (
            claims["scope"] != "https://www.googleapis.com/auth/analytics.readonly",
            "scope is not analytics.readonly",
        ),
        (
            claims["aud"] != token_uri.as_str(),
            "aud is not the token URI",
        ),
        (exp - iat > 3600, "exp is more than 1 h after iat"),
        (exp <= now, "JWT has expired"),
        ((iat - now).abs() > 300, "iat is not now"),
    ];
    if let Some((_, why)) = problems.iter().find(|(bad, _)| *bad) {
        return refuse(format!("{why}: {claims}"));
    }
    let n = s.tokens_issued.fetch_add(1, Ordering::SeqCst) + 1;
    let token = format!("ya29.test-token-{n}");
    s.tokens.lock().unwrap().insert(token.clone());
    axum::Json(json!({
        "access_token": token,
        "expires_in": s.token_lifetime.load(Ordering::SeqCst),
        "token_type": "Bearer",
    }))
    .into_response()
}

struct InFlight<'a>(&'a Shared);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn api_call(
    State(s): State<Arc<Shared>>,
    method: Method,
    Path(rest): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _guard = InFlight(&s);
    s.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let delay = s.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay as u64)).await;
    }
    let path = format!("v1beta/{rest}");
    let Some((name, request_schema)) = s.discovery.method(method.as_str(), &path) else {
        s.violations.lock().unwrap().push(format!(
            "{method} {path} is no method of the discovery document"
        ));
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such method");
    };
    let body_json: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                s.violations
                    .lock()
                    .unwrap()
                    .push(format!("{name}: body is not JSON: {e}"));
                return google_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "not JSON");
            }
        }
    };
    if let Some(schema) = &request_schema {
        let errors = s.discovery.validate(schema, &body_json);
        if !errors.is_empty() {
            let msg = format!("{name} body breaks {schema}: {}", errors.join("; "));
            s.violations.lock().unwrap().push(msg.clone());
            return google_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", &msg);
        }
    }
    let property = rest.split([':', '/']).take(2).collect::<Vec<_>>().join("/");
    s.log.lock().unwrap().push(Logged {
        method: name.clone(),
        property: property.clone(),
        body: body_json.clone(),
    });
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| s.tokens.lock().unwrap().contains(t));
    if !authorized {
        return google_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        );
    }
    if now > 10 {
        s.violations
            .lock()
            .unwrap()
            .push(format!("{now} concurrent requests for one property"));
        return google_error(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            "Exhausted concurrent requests quota.",
        );
    }
    if s.fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return google_error(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            "Exhausted property tokens per hour quota. Try again in a while.",
        );
    }
    if s.reject_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Please remove sessionDefaultChannelGroup to make the request compatible.",
        );
    }
    let Some(events) = s.data.get(&property) else {
        return google_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            &format!("User does not have sufficient permissions for this property ({property})."),
        );
    };
    let result = match name.as_str() {
        "getMetadata" => Ok(metadata_response(&property)),
        "runReport" | "batchRunReports" => {
            if s.daily_tokens.load(Ordering::SeqCst) <= 0 {
                return google_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RESOURCE_EXHAUSTED",
                    "Exhausted property tokens per day quota. Try again tomorrow.",
                );
            }
            let remaining = s.daily_tokens.fetch_sub(1, Ordering::SeqCst) - 1;
            if name == "runReport" {
                run_report(&s, events, &body_json, remaining)
            } else {
                let mut reports = Vec::new();
                let mut failed = None;
                for r in body_json["requests"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                {
                    match run_report(&s, events, &r, remaining) {
                        Ok(v) => reports.push(v),
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                match failed {
                    Some(e) => Err(e),
                    None if reports.len() > 5 => {
                        Err("batchRunReports takes at most 5 requests".to_string())
                    }
                    None => {
                        Ok(json!({"reports": reports, "kind": "analyticsData#batchRunReports"}))
                    }
                }
            }
        }
        other => Err(format!("the stand-in does not implement {other}")),
    };
    match result {
        Ok(v) => {
            let schema = match name.as_str() {
                "getMetadata" => "Metadata",
                "runReport" => "RunReportResponse",
                _ => "BatchRunReportsResponse",
            };
            let errors = s.discovery.validate(schema, &v);
            assert!(
                errors.is_empty(),
                "stand-in response breaks {schema}: {errors:?}"
            );
            axum::Json(v).into_response()
        }
        Err(message) => google_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", &message),
    }
}

fn metadata_response(property: &str) -> Value {
    json!({
        "name": format!("{property}/metadata"),
        "dimensions": DIMENSIONS.iter().map(|d| json!({
            "apiName": d,
            "uiName": d,
            "description": format!("the {d} dimension"),
            "customDefinition": d.contains(':'),
            "category": "Test",
        })).collect::<Vec<_>>(),
        "metrics": METRICS.iter().map(|(m, t)| json!({
            "apiName": m,
            "uiName": m,
            "description": format!("the {m} metric"),
            "type": serde_json::to_value(t).unwrap(),
            "customDefinition": m.contains(':'),
            "category": "Test",
        })).collect::<Vec<_>>(),
    })
}

fn parse_date(s: &str) -> Result<NaiveDate, String> {
    let today = NaiveDate::parse_from_str(TODAY, "%Y-%m-%d").unwrap();
    match s {
        "today" => Ok(today),
        "yesterday" => Ok(today - Days::days(1)),
        _ => {
            if let Some(n) = s.strip_suffix("daysAgo") {
                let n: i64 = n.parse().map_err(|_| format!("bad date {s:?}"))?;
                return Ok(today - Days::days(n));
            }
            NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| format!("bad date {s:?}"))
        }
    }
}

fn run_report(s: &Shared, events: &[Event], body: &Value, remaining: i64) -> Result<Value, String> {
    let req: RunReportRequest =
        serde_json::from_value(body.clone()).map_err(|e| format!("request: {e}"))?;
    for d in &req.dimensions {
        if !DIMENSIONS.contains(&d.name.as_str()) {
            return Err(format!("Field {} is not a valid dimension.", d.name));
        }
    }
    for m in &req.metrics {
        if metric_type(&m.name).is_none() {
            return Err(format!("Field {} is not a valid metric.", m.name));
        }
    }
    if req.dimensions.is_empty() && req.metrics.is_empty() {
        return Err("A report needs at least one dimension or metric.".into());
    }
    let limit = req.limit.unwrap_or(10_000);
    if !(1..=250_000).contains(&limit) {
        return Err(format!("limit {limit} must be positive and at most 250000"));
    }
    let offset = req.offset.unwrap_or(0);
    if offset < 0 {
        return Err("offset must not be negative".into());
    }
    let [range] = req.date_ranges.as_slice() else {
        return Err(format!(
            "the stand-in needs exactly one date range, got {}",
            req.date_ranges.len()
        ));
    };
    let (start, end) = (parse_date(&range.start_date)?, parse_date(&range.end_date)?);
    if start > end {
        return Err("startDate is after endDate".into());
    }
    let mut selected = Vec::new();
    for e in events {
        if e.date < start || e.date > end {
            continue;
        }
        if let Some(f) = &req.dimension_filter
            && !matches(f, &|field| {
                dimension(e, field).ok_or_else(|| format!("{field} is not a dimension"))
            })?
        {
            continue;
        }
        selected.push(e);
    }
    let dims: Vec<&str> = req.dimensions.iter().map(|d| d.name.as_str()).collect();
    let mut groups: BTreeMap<Vec<String>, Vec<&Event>> = BTreeMap::new();
    for e in &selected {
        let key = dims.iter().map(|d| dimension(e, d).unwrap()).collect();
        groups.entry(key).or_default().push(e);
    }
    let metrics: Vec<&str> = req.metrics.iter().map(|m| m.name.as_str()).collect();
    let mut rows: Vec<(Vec<String>, Vec<f64>, Vec<&Event>)> = Vec::new();
    for (key, evs) in groups {
        if let Some(f) = &req.metric_filter {
            let keep = matches(f, &|field| {
                if metrics.contains(&field) || metric_type(field).is_some() {
                    Ok(metric(&evs, field).unwrap().to_string())
                } else {
                    Err(format!("metricFilter field {field} is not a metric"))
                }
            })?;
            if !keep {
                continue;
            }
        }
        let values = metrics.iter().map(|m| metric(&evs, m).unwrap()).collect();
        rows.push((key, values, evs));
    }
    for o in &req.order_bys {
        if let OrderByField::Metric(m) = &o.by
            && !metrics.contains(&m.metric_name.as_str())
        {
            return Err(format!(
                "orderBys metric {} is not in the request",
                m.metric_name
            ));
        }
        if let OrderByField::Dimension(d) = &o.by
            && !dims.contains(&d.dimension_name.as_str())
        {
            return Err(format!(
                "orderBys dimension {} is not in the request",
                d.dimension_name
            ));
        }
    }
    rows.sort_by(|a, b| {
        for o in &req.order_bys {
            let ord = match &o.by {
                OrderByField::Metric(m) => {
                    let i = metrics.iter().position(|x| *x == m.metric_name).unwrap();
                    a.1[i].total_cmp(&b.1[i])
                }
                OrderByField::Dimension(d) => {
                    let i = dims.iter().position(|x| *x == d.dimension_name).unwrap();
                    let (x, y) = (&a.0[i], &b.0[i]);
                    match d.order_type {
                        Some(OrderType::Numeric) => x
                            .parse::<f64>()
                            .unwrap_or(0.0)
                            .total_cmp(&y.parse::<f64>().unwrap_or(0.0)),
                        Some(OrderType::CaseInsensitiveAlphanumeric) => {
                            x.to_lowercase().cmp(&y.to_lowercase())
                        }
                        _ => x.cmp(y),
                    }
                }
            };
            let ord = if o.desc { ord.reverse() } else { ord };
            if ord.is_ne() {
                return ord;
            }
        }
        std::cmp::Ordering::Equal
    });
    let row_count = rows.len();
    let row_json = |dv: &[String], mv: &[f64]| {
        json!({
            "dimensionValues": dv.iter().map(|v| json!({"value": v})).collect::<Vec<_>>(),
            "metricValues": metrics.iter().zip(mv).map(|(m, v)| json!({"value": format_metric(m, *v)})).collect::<Vec<_>>(),
        })
    };
    let page: Vec<Value> = rows
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|(k, v, _)| row_json(k, v))
        .collect();
    let mut out = json!({
        "dimensionHeaders": dims.iter().map(|d| json!({"name": d})).collect::<Vec<_>>(),
        "metricHeaders": metrics.iter().map(|m| json!({"name": m, "type": serde_json::to_value(metric_type(m).unwrap()).unwrap()})).collect::<Vec<_>>(),
        "rows": page,
        "rowCount": row_count,
        "metadata": {"currencyCode": "USD", "timeZone": "Asia/Seoul"},
        "kind": "analyticsData#runReport",
    });
    if req
        .metric_aggregations
        .contains(&api::MetricAggregation::Total)
    {
        // GA4's totals are computed over all selected events, not summed from rows.
        let all: Vec<&Event> = rows.iter().flat_map(|r| r.2.iter().copied()).collect();
        let totals: Vec<f64> = metrics.iter().map(|m| metric(&all, m).unwrap()).collect();
        let reserved = vec!["RESERVED_TOTAL".to_string(); dims.len()];
        out["totals"] = json!([row_json(&reserved, &totals)]);
    }
    if s.thresholding.load(Ordering::SeqCst) {
        out["metadata"]["subjectToThresholding"] = json!(true);
    }
    if s.sampling.load(Ordering::SeqCst) {
        out["metadata"]["samplingMetadatas"] =
            json!([{"samplesReadCount": "5000", "samplingSpaceSize": "20000"}]);
    }
    if req.return_property_quota == Some(true) {
        out["propertyQuota"] = json!({
            "tokensPerDay": {"consumed": 1, "remaining": remaining},
            "tokensPerHour": {"consumed": 1, "remaining": 39_999},
            "concurrentRequests": {"consumed": 0, "remaining": 10},
        });
    }
    Ok(out)
}

/// Evaluates a filter expression; `value` gives a field's value as a string.
fn matches(
    f: &FilterExpression,
    value: &dyn Fn(&str) -> Result<String, String>,
) -> Result<bool, String> {
    Ok(match f {
        FilterExpression::AndGroup(g) => {
            for e in &g.expressions {
                if !matches(e, value)? {
                    return Ok(false);
                }
            }
            true
        }
        FilterExpression::OrGroup(g) => {
            for e in &g.expressions {
                if matches(e, value)? {
                    return Ok(true);
                }
            }
            false
        }
        FilterExpression::NotExpression(e) => !matches(e, value)?,
        FilterExpression::Filter(filter) => {
            let v = value(&filter.field_name)?;
            match &filter.test {
                FilterTest::StringFilter(sf) => {
                    let (v, pat) = if sf.case_sensitive {
                        (v.clone(), sf.value.clone())
                    } else {
                        (v.to_lowercase(), sf.value.to_lowercase())
                    };
                    match sf.match_type {
                        MatchType::Exact => v == pat,
                        MatchType::BeginsWith => v.starts_with(&pat),
                        MatchType::EndsWith => v.ends_with(&pat),
                        MatchType::Contains => v.contains(&pat),
                        MatchType::FullRegexp => regex::Regex::new(&format!("^(?:{pat})$"))
                            .map_err(|e| e.to_string())?
                            .is_match(&v),
                        MatchType::PartialRegexp => regex::Regex::new(&pat)
                            .map_err(|e| e.to_string())?
                            .is_match(&v),
                    }
                }
                FilterTest::InListFilter(l) => {
                    if l.case_sensitive {
                        l.values.contains(&v)
                    } else {
                        l.values
                            .iter()
                            .any(|x| x.to_lowercase() == v.to_lowercase())
                    }
                }
                FilterTest::NumericFilter(n) => {
                    let x: f64 = v.parse().map_err(|_| format!("{v:?} is not numeric"))?;
                    let y = n.value.as_f64();
                    match n.operation {
                        Operation::Equal => x == y,
                        Operation::LessThan => x < y,
                        Operation::LessThanOrEqual => x <= y,
                        Operation::GreaterThan => x > y,
                        Operation::GreaterThanOrEqual => x >= y,
                    }
                }
                FilterTest::BetweenFilter(b) => {
                    let x: f64 = v.parse().map_err(|_| format!("{v:?} is not numeric"))?;
                    x >= b.from_value.as_f64() && x <= b.to_value.as_f64()
                }
                FilterTest::EmptyFilter(_) => v.is_empty() || v == "(not set)",
            }
        }
    })
}

#[allow(unused)]
fn numeric(v: &NumericValue) -> f64 {
    v.as_f64()
}
