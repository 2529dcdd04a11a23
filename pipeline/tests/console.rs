//! The web console over HTTP, as an attacker and as a user would meet it, against the real
//! `tidemark serve` over a generated warehouse: sign-in and sign-out, session fixation, CSRF on
//! every form, tenant walls by URL, HTML escaping of everything tenants and events supply, and
//! `/v1/dashboards` + `/v1/model` behind it. The browser itself is driven in `tests/browser.rs`.

#[path = "support/shop.rs"]
mod support;

use std::collections::HashMap;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use support::{KEY_A, KEY_B, Shop};

/// A browser's view of the console: its cookies, no automatic redirects.
struct Visitor {
    http: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    body: String,
    set_cookies: Vec<String>,
}

impl Visitor {
    fn new(shop: &Shop) -> Visitor {
        Visitor {
            http: connectors::http::client_builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: shop.base.clone(),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn finish(&mut self, response: reqwest::Response) -> Page {
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .map(|v| v.to_str().unwrap().to_string());
        let set_cookies: Vec<String> = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        for c in &set_cookies {
            let pair = c.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
        Page {
            status,
            location,
            body: response.text().await.unwrap(),
            set_cookies,
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .expect("GET");
        self.finish(response).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish(),
            )
            .send()
            .await
            .expect("POST");
        self.finish(response).await
    }

    /// Signs in with `key` through the sign-in form.
    async fn sign_in(&mut self, key: &str) -> Page {
        let form = self.get("/login").await;
        let token = hidden(&form.body, "login_token");
        self.post(
            "/login",
            &[("login_token", &token), ("api_key", key), ("next", "/")],
        )
        .await
    }

    /// The CSRF token of the page at `path`.
    async fn csrf(&mut self, path: &str) -> String {
        let page = self.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        hidden(&page.body, "csrf")
    }
}

/// The value of the hidden input `name` in a page.
fn hidden(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body
        .find(&marker)
        .unwrap_or_else(|| panic!("no hidden {name} in:\n{body}"))
        + marker.len();
    body[start..start + body[start..].find('"').unwrap()].to_string()
}

async fn api(
    shop: &Shop,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let http = connectors::http::client();
    let mut request = http
        .request(method, format!("{}{path}", shop.base))
        .bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("API call");
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn revenue_by_channel() -> Value {
    json!({"measures": ["orders.revenue"], "dimensions": ["orders.channel"]})
}

#[tokio::test]
async fn signing_in_and_out() {
    let shop = Shop::start().await;
    let mut v = Visitor::new(&shop);
    // Signed out, a page sends the visitor to sign in and back.
    let page = v.get("/alerts").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location.as_deref(), Some("/login?next=%2Falerts"));
    // A wrong key is refused on the form, with the API's reason.
    let page = v.sign_in("not-a-key-of-anybody").await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.body.contains("unknown API key"), "{}", page.body);
    // The right key: a session cookie that scripts cannot read and other sites do not send.
    let page = v.sign_in(KEY_A).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let session = page
        .set_cookies
        .iter()
        .find(|c| c.starts_with("tidemark_session="))
        .expect("a session cookie");
    assert!(session.contains("HttpOnly"), "{session}");
    assert!(session.contains("SameSite=Strict"), "{session}");
    assert!(session.contains("Max-Age="), "{session}");
    let home = v.get("/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("shop-a"));
    // Money in the tenant's currency: won, without decimals.
    let answer = v.get("/explore?m=orders.revenue&d=orders.channel").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body.contains("₩"), "{}", answer.body);
    assert!(answer.body.contains("<svg"), "a chart");
    // Pages say what they may load and that nothing may frame them.
    let csp = v
        .http
        .get(format!("{}/", shop.base))
        .header(COOKIE, v.cookie_header())
        .send()
        .await
        .unwrap()
        .headers()
        .get("content-security-policy")
        .map(|h| h.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    // Signing out ends the session on the server: the old cookie no longer works.
    let stolen = v.cookies["tidemark_session"].clone();
    let token = hidden(&home.body, "csrf");
    let out = v.post("/logout", &[("csrf", &token)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let mut thief = Visitor::new(&shop);
    thief.cookies.insert("tidemark_session".into(), stolen);
    assert_eq!(thief.get("/").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_planted_session_id_is_never_promoted() {
    let shop = Shop::start().await;
    let mut victim = Visitor::new(&shop);
    victim
        .cookies
        .insert("tidemark_session".into(), "a".repeat(64));
    let page = victim.sign_in(KEY_A).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let issued = victim.cookies["tidemark_session"].clone();
    assert_ne!(issued, "a".repeat(64));
    // The attacker, holding the planted id, is still signed out.
    let mut attacker = Visitor::new(&shop);
    attacker
        .cookies
        .insert("tidemark_session".into(), "a".repeat(64));
    assert_eq!(attacker.get("/").await.status, StatusCode::SEE_OTHER);
    // Signing in again issues yet another id and ends the previous session.
    let again = victim.sign_in(KEY_A).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_ne!(victim.cookies["tidemark_session"], issued);
    let mut old = Visitor::new(&shop);
    old.cookies.insert("tidemark_session".into(), issued);
    assert_eq!(old.get("/").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn every_form_needs_its_csrf_token() {
    let shop = Shop::start().await;
    // Something for each form to act on.
    let (status, _) = api(&shop, KEY_A, reqwest::Method::POST, "/v1/dashboards",
        Some(json!({"id": "d1", "title": "Sales", "panels": [{"title": "", "spec": revenue_by_channel()}]}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = api(
        &shop,
        KEY_A,
        reqwest::Method::POST,
        "/v1/rules",
        Some(json!({"id": "r1", "kind": "match", "event_type": "signup"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut v = Visitor::new(&shop);
    v.sign_in(KEY_A).await;
    let token = v.csrf("/").await;
    let spec = revenue_by_channel().to_string();
    let forms: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/logout", vec![]),
        ("/dashboards", vec![("title", "New"), ("spec", &spec)]),
        ("/dashboards/d1/panels", vec![("spec", &spec)]),
        ("/dashboards/d1/delete", vec![]),
        ("/alerts", vec![("kind", "match"), ("event_type", "order")]),
        (
            "/alerts/r1",
            vec![("kind", "match"), ("event_type", "order")],
        ),
        ("/alerts/r1/disable", vec![]),
        ("/alerts/r1/enable", vec![]),
        ("/reports/none/run", vec![]),
        ("/secrets", vec![("name", "smtp"), ("value", "hunter2")]),
    ];
    for (path, fields) in &forms {
        for bad in [None, Some("0".repeat(64))] {
            let mut form = fields.clone();
            if let Some(bad) = &bad {
                form.push(("csrf", bad));
            }
            let page = v.post(path, &form).await;
            assert_eq!(
                page.status,
                StatusCode::FORBIDDEN,
                "{path} without its token"
            );
        }
    }
    // Nothing happened: the dashboard has one panel, the rule is unchanged and enabled, no secret.
    let (_, d) = api(
        &shop,
        KEY_A,
        reqwest::Method::GET,
        "/v1/dashboards/d1",
        None,
    )
    .await;
    assert_eq!(d["panels"].as_array().unwrap().len(), 1);
    let (_, r) = api(&shop, KEY_A, reqwest::Method::GET, "/v1/rules/r1", None).await;
    assert_eq!(r["event_type"], "signup");
    assert_eq!(r["enabled"], true);
    let (_, s) = api(&shop, KEY_A, reqwest::Method::GET, "/v1/secrets", None).await;
    assert_eq!(s["secrets"], json!([]));
    let (_, rules) = api(&shop, KEY_A, reqwest::Method::GET, "/v1/rules", None).await;
    assert_eq!(rules["rules"].as_array().unwrap().len(), 1);
    // The still-signed-in session, with its token, does act.
    let page = v.post("/alerts/r1/disable", &[("csrf", &token)]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let (_, r) = api(&shop, KEY_A, reqwest::Method::GET, "/v1/rules/r1", None).await;
    assert_eq!(r["enabled"], false);
    // Another session's token is not this one's.
    let mut other = Visitor::new(&shop);
    other.sign_in(KEY_A).await;
    let page = other.post("/alerts/r1/enable", &[("csrf", &token)]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    // The sign-in form has a token of its own.
    let mut fresh = Visitor::new(&shop);
    let page = fresh.post("/login", &[("api_key", KEY_A)]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(!fresh.cookies.contains_key("tidemark_session"));
}

#[tokio::test]
async fn another_tenants_things_are_not_found_by_url() {
    let shop = Shop::start().await;
    let (status, _) = api(&shop, KEY_A, reqwest::Method::POST, "/v1/dashboards",
        Some(json!({"id": "secret-plan", "title": "A's plan", "panels": [{"spec": revenue_by_channel()}]}))).await;
    assert_eq!(status, StatusCode::CREATED);
    api(
        &shop,
        KEY_A,
        reqwest::Method::POST,
        "/v1/rules",
        Some(json!({"id": "a-rule", "kind": "match", "event_type": "signup", "name": "A only"})),
    )
    .await;
    let mut b = Visitor::new(&shop);
    b.sign_in(KEY_B).await;
    for path in [
        "/dashboards/secret-plan",
        "/alerts/a-rule",
        "/reports/a-report",
    ] {
        let page = b.get(path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!page.body.contains("A's plan") && !page.body.contains("A only"));
    }
    // The same id under B is B's own.
    let (status, _) = api(&shop, KEY_B, reqwest::Method::POST, "/v1/dashboards",
        Some(json!({"id": "secret-plan", "title": "B's plan", "panels": [{"spec": revenue_by_channel()}]}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let page = b.get("/dashboards/secret-plan").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("B&#x27;s plan") || page.body.contains("B's plan"));
    assert!(!page.body.contains("A&#x27;s plan"));
    // B's list shows only B's.
    let list = b.get("/dashboards").await;
    assert!(!list.body.contains("A&#x27;s plan"));
}

#[tokio::test]
async fn strings_from_tenants_and_events_are_escaped() {
    let shop = Shop::start().await;
    let script = "<script>alert(1)</script>";
    let img = "<img src=x onerror=alert(2)>";
    let svg = "<svg onload=alert(3)>";
    let (status, body) = api(
        &shop,
        KEY_A,
        reqwest::Method::POST,
        "/v1/destinations",
        Some(json!({"id": "files", "kind": "file", "config": {"path": "alerts.jsonl"}})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = api(
        &shop,
        KEY_A,
        reqwest::Method::POST,
        "/v1/rules",
        Some(
            json!({"id": "x", "name": script, "kind": "match", "event_type": "signup",
                    "group_by": ["who"], "destinations": ["files"]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = api(&shop, KEY_A, reqwest::Method::POST, "/v1/dashboards",
        Some(json!({"id": "d", "title": img, "panels": [{"title": img, "spec": revenue_by_channel()}]}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = api(
        &shop,
        KEY_A,
        reqwest::Method::POST,
        "/v1/events",
        Some(json!([{"id": "e1", "type": "signup", "ts": now_ms(), "attrs": {"who": svg}}])),
    )
    .await;
    assert!(status.is_success(), "{body}");
    let mut v = Visitor::new(&shop);
    v.sign_in(KEY_A).await;
    // Wait for the notification.
    let mut notifications = v.get("/notifications").await;
    for _ in 0..100 {
        if notifications.body.contains("n-") && notifications.body.contains("onload") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        notifications = v.get("/notifications").await;
    }
    let pages = [
        v.get("/alerts").await.body,
        v.get("/dashboards").await.body,
        v.get("/dashboards/d").await.body,
        v.get("/").await.body,
        notifications.body,
    ];
    for (i, page) in pages.iter().enumerate() {
        for raw in [script, img, svg, "<svg onload"] {
            assert!(!page.contains(raw), "page {i} has {raw} unescaped:\n{page}");
        }
    }
    // Shown as text (minijinja also escapes `/`).
    assert!(
        pages[0].contains("&lt;script&gt;alert(1)&lt;"),
        "{}",
        pages[0]
    );
    assert!(
        pages[1].contains("&lt;img src=x onerror=alert(2)&gt;"),
        "{}",
        pages[1]
    );
    assert!(
        pages[4].contains("onload=alert(3)"),
        "the attribute is shown, escaped"
    );
}

#[tokio::test]
async fn dashboards_are_checked_saved_and_listed_per_tenant() {
    let shop = Shop::start().await;
    // The model lists what a question can use.
    let (status, model) = api(&shop, KEY_A, reqwest::Method::GET, "/v1/model", None).await;
    assert_eq!(status, StatusCode::OK);
    let orders = model["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "orders")
        .expect("orders");
    let revenue = orders["measures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "orders.revenue")
        .unwrap();
    assert_eq!(revenue["format"], "currency");
    assert!(
        orders["dimensions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["type"] == "time" && !d["grains"].as_array().unwrap().is_empty())
    );
    // A spelling mistake is a 400 naming the panel's field, at save time.
    let (status, body) = api(&shop, KEY_A, reqwest::Method::POST, "/v1/dashboards",
        Some(json!({"title": "T", "panels": [{"spec": revenue_by_channel()}, {"spec": {"measures": ["orders.revenu"]}}]}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["field"]
            .as_str()
            .unwrap()
            .starts_with("panels[1].spec"),
        "{body}"
    );
    let (status, body) = api(
        &shop,
        KEY_A,
        reqwest::Method::POST,
        "/v1/dashboards",
        Some(json!({"title": " ", "panels": [{"spec": revenue_by_channel()}]})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("title"))
    );
    // Created with a made-up id, changed, listed, deleted.
    let (status, created) = api(&shop, KEY_A, reqwest::Method::POST, "/v1/dashboards",
        Some(json!({"title": "Weekly", "panels": [{"title": "Revenue", "spec": revenue_by_channel()}]}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = created["id"].as_str().unwrap().to_string();
    let path = format!("/v1/dashboards/{id}");
    let (status, changed) = api(&shop, KEY_A, reqwest::Method::PUT, &path,
        Some(json!({"title": "Weekly sales", "panels": [{"title": "Revenue", "spec": revenue_by_channel()}, {"title": "Orders", "spec": {"measures": ["orders.orders"]}}]}))).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    let (_, list) = api(&shop, KEY_A, reqwest::Method::GET, "/v1/dashboards", None).await;
    assert_eq!(list["dashboards"].as_array().unwrap().len(), 1);
    assert_eq!(list["dashboards"][0]["title"], "Weekly sales");
    assert_eq!(list["dashboards"][0]["panels"][1]["title"], "Orders");
    let (status, _) = api(&shop, KEY_B, reqwest::Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api(&shop, KEY_B, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api(&shop, KEY_A, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api(&shop, KEY_A, reqwest::Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_rules_validation_error_is_shown_next_to_its_field() {
    let shop = Shop::start().await;
    let mut v = Visitor::new(&shop);
    v.sign_in(KEY_A).await;
    let token = v.csrf("/alerts/new").await;
    let page = v
        .post(
            "/alerts",
            &[
                ("csrf", &token),
                ("name", "Too many"),
                ("kind", "threshold"),
                ("event_type", "order"),
                ("agg_fn", "count"),
                ("window_size", "1h"),
                ("cond_op", ">"),
                ("cond_value", "10"),
                ("template", "{{ broken"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("id=\"error-template\""), "{}", page.body);
    // What was typed stays in the form.
    assert!(page.body.contains("value=\"Too many\""));
    let page = v
        .post(
            "/alerts",
            &[
                ("csrf", &token),
                ("kind", "threshold"),
                ("event_type", "order"),
                ("agg_fn", "count"),
                ("window_size", "1h"),
                ("cond_op", ">"),
                ("cond_value", "lots"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("id=\"error-cond_op\""), "{}", page.body);
    // Fixed, it saves and shows in the list.
    let page = v
        .post(
            "/alerts",
            &[
                ("csrf", &token),
                ("name", "Too many"),
                ("kind", "threshold"),
                ("event_type", "order"),
                ("agg_fn", "count"),
                ("window_size", "1h"),
                ("cond_op", ">"),
                ("cond_value", "10"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let list = v.get("/alerts").await;
    assert!(list.body.contains("Too many"));
}
