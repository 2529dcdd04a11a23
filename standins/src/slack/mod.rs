//! A stand-in for Slack's Web API, for tests: `chat.postMessage` and the upload flow
//! (`files.getUploadURLExternal`, the POST of the bytes to the answered URL,
//! `files.completeUploadExternal`).
//!
//! Every call is checked as Slack checks it — the token as `Authorization: Bearer`, the
//! arguments against [`openapi`] (Slack's OpenAPI description, and the README's lists for the
//! upload flow it predates), `length` 0 a `missing_argument`, a file id never uploaded refused —
//! and answered in Slack's envelope (`{"ok": false, "error": …}` with HTTP 200; HTTP 429 with
//! `Retry-After` when rate limited). Calls that break the description are also recorded as
//! violations, for a test to assert there are none. A test can make the next calls answer
//! `ratelimited` or another error name.

pub mod openapi;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use openapi::{
    COMPLETE_UPLOAD_ARGUMENTS, COMPLETE_UPLOAD_REQUIRED, GET_UPLOAD_URL_ARGUMENTS,
    GET_UPLOAD_URL_REQUIRED, POST_MESSAGE_ARGUMENTS, POST_MESSAGE_REQUIRED,
};

/// The bot token the stand-in accepts.
pub const TOKEN: &str = "xoxb-tidemark-test-token";
/// The channel the bot is in.
pub const CHANNEL: &str = "C0REPORTS";

/// One received Web API call.
#[derive(Clone, Debug)]
pub struct Call {
    /// `chat.postMessage`, `files.getUploadURLExternal`, `files.completeUploadExternal`, or
    /// `upload` for the bytes sent to an upload URL.
    pub method: String,
    /// The JSON arguments (for `upload`: `{"file_id", "bytes"}`).
    pub arguments: Value,
}

/// A file announced by `files.getUploadURLExternal`.
#[derive(Clone, Debug)]
pub struct Upload {
    /// Its name.
    pub filename: String,
    /// The length announced.
    pub length: u64,
    /// The bytes received at its upload URL, if any.
    pub bytes: Option<Vec<u8>>,
}

#[derive(Default)]
struct Shared {
    base_url: String,
    calls: Vec<Call>,
    violations: Vec<String>,
    uploads: BTreeMap<String, Upload>,
    /// `ts` of every posted message, by channel.
    posted: Vec<(String, String)>,
    /// Answers for the next calls: an error name and, for `ratelimited`, the Retry-After.
    next: VecDeque<(String, Option<u64>)>,
    clock: u64,
}

/// The running stand-in.
#[derive(Clone)]
pub struct SlackStandIn {
    /// The Web API base (`http://127.0.0.1:<port>/api`).
    pub api_base: String,
    shared: Arc<Mutex<Shared>>,
}

impl SlackStandIn {
    /// Starts the stand-in on a free loopback port.
    pub async fn start() -> SlackStandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Mutex::new(Shared {
            base_url: format!("http://{addr}"),
            ..Shared::default()
        }));
        let app = Router::new()
            .route("/api/{method}", post(api_call))
            .route("/upload/{file_id}", post(upload))
            .with_state(Arc::clone(&shared));
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        SlackStandIn {
            api_base: format!("http://{addr}/api"),
            shared,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().expect("stand-in state")
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The files announced so far, by id.
    pub fn uploads(&self) -> BTreeMap<String, Upload> {
        self.lock().uploads.clone()
    }

    /// Calls that broke Slack's description; a test asserts this is empty.
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Answers the next `n` API calls with HTTP 429, `Retry-After: retry_after_secs` and
    /// `{"ok": false, "error": "ratelimited"}`.
    pub fn rate_limit_next(&self, n: usize, retry_after_secs: u64) {
        let mut shared = self.lock();
        for _ in 0..n {
            shared
                .next
                .push_back(("ratelimited".to_owned(), Some(retry_after_secs)));
        }
    }

    /// Answers the next `n` API calls with `{"ok": false, "error": error}` (for example
    /// `channel_not_found`).
    pub fn refuse_next(&self, n: usize, error: &str) {
        let mut shared = self.lock();
        for _ in 0..n {
            shared.next.push_back((error.to_owned(), None));
        }
    }
}

fn refused(error: &str) -> Response {
    axum::Json(json!({"ok": false, "error": error})).into_response()
}

async fn api_call(
    State(shared): State<Arc<Mutex<Shared>>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut shared = shared.lock().expect("stand-in state");
    let arguments: Value = match headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        Some(t) if t.starts_with("application/json") => {
            serde_json::from_slice(&body).unwrap_or(Value::Null)
        }
        other => {
            shared.violations.push(format!(
                "{method}: content type {other:?}; the sink sends JSON"
            ));
            return refused("invalid_post_type");
        }
    };
    shared.calls.push(Call {
        method: method.clone(),
        arguments: arguments.clone(),
    });
    match headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        None => return refused("not_authed"),
        Some(value) if value != format!("Bearer {TOKEN}") => return refused("invalid_auth"),
        Some(_) => {}
    }
    if let Some((error, retry_after)) = shared.next.pop_front() {
        return match retry_after {
            Some(secs) => (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, secs.to_string())],
                axum::Json(json!({"ok": false, "error": error})),
            )
                .into_response(),
            None => refused(&error),
        };
    }
    let Some(arguments) = arguments.as_object() else {
        shared
            .violations
            .push(format!("{method}: the body is not a JSON object"));
        return refused("invalid_form_data");
    };
    let (allowed, required) = match method.as_str() {
        "chat.postMessage" => (POST_MESSAGE_ARGUMENTS, POST_MESSAGE_REQUIRED),
        "files.getUploadURLExternal" => (GET_UPLOAD_URL_ARGUMENTS, GET_UPLOAD_URL_REQUIRED),
        "files.completeUploadExternal" => (COMPLETE_UPLOAD_ARGUMENTS, COMPLETE_UPLOAD_REQUIRED),
        _ => return refused("unknown_method"),
    };
    for name in arguments.keys() {
        if !allowed.contains(&name.as_str()) {
            shared
                .violations
                .push(format!("{method}: unknown argument {name:?}"));
            return refused("invalid_arg_name");
        }
    }
    for name in required {
        if arguments.get(*name).is_none_or(Value::is_null) {
            shared
                .violations
                .push(format!("{method}: missing argument {name:?}"));
            return refused("missing_argument");
        }
    }
    match method.as_str() {
        "chat.postMessage" => post_message(&mut shared, arguments),
        "files.getUploadURLExternal" => get_upload_url(&mut shared, arguments),
        _ => complete_upload(&mut shared, arguments),
    }
}

fn post_message(shared: &mut Shared, arguments: &serde_json::Map<String, Value>) -> Response {
    let channel = arguments["channel"].as_str().unwrap_or_default();
    if channel != CHANNEL {
        return refused("channel_not_found");
    }
    let text = arguments.get("text").and_then(Value::as_str).unwrap_or("");
    let blocks = arguments.get("blocks").and_then(Value::as_array);
    if text.is_empty() && blocks.is_none_or(Vec::is_empty) {
        return refused("no_text");
    }
    if text.chars().count() > 40_000 {
        shared
            .violations
            .push("chat.postMessage: text over 40,000 characters".to_owned());
        return refused("msg_too_long");
    }
    if blocks.is_some_and(|b| b.len() > 50) {
        shared
            .violations
            .push("chat.postMessage: more than 50 blocks".to_owned());
        return refused("invalid_blocks");
    }
    shared.clock += 1;
    let ts = format!("1767225600.{:06}", shared.clock);
    shared.posted.push((channel.to_owned(), ts.clone()));
    axum::Json(json!({
        "ok": true,
        "channel": channel,
        "ts": ts,
        "message": {"type": "message", "text": text, "ts": ts},
    }))
    .into_response()
}

fn get_upload_url(shared: &mut Shared, arguments: &serde_json::Map<String, Value>) -> Response {
    let Some(filename) = arguments["filename"].as_str().filter(|f| !f.is_empty()) else {
        return refused("missing_argument");
    };
    let Some(length) = arguments["length"].as_u64() else {
        shared
            .violations
            .push("files.getUploadURLExternal: length is not an integer".to_owned());
        return refused("invalid_arguments");
    };
    if length == 0 {
        return refused("missing_argument");
    }
    if arguments
        .get("alt_txt")
        .and_then(Value::as_str)
        .is_some_and(|a| a.chars().count() > 1_000)
    {
        return refused("alt_txt_too_large");
    }
    shared.clock += 1;
    let file_id = format!("F{:08}", shared.clock);
    shared.uploads.insert(
        file_id.clone(),
        Upload {
            filename: filename.to_owned(),
            length,
            bytes: None,
        },
    );
    axum::Json(json!({
        "ok": true,
        "upload_url": format!("{}/upload/{file_id}", shared.base_url),
        "file_id": file_id,
    }))
    .into_response()
}

fn complete_upload(shared: &mut Shared, arguments: &serde_json::Map<String, Value>) -> Response {
    // `files` is a JSON array, or (form-encoded) a string holding one.
    let files = match &arguments["files"] {
        Value::String(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        other => other.clone(),
    };
    let Some(files) = files.as_array().filter(|f| !f.is_empty()) else {
        shared
            .violations
            .push("files.completeUploadExternal: files is not a non-empty array".to_owned());
        return refused("invalid_arguments");
    };
    if arguments.contains_key("initial_comment") && arguments.contains_key("blocks") {
        shared
            .violations
            .push("files.completeUploadExternal: initial_comment and blocks together".to_owned());
        return refused("invalid_arguments");
    }
    let channel = arguments.get("channel_id").and_then(Value::as_str);
    if channel.is_some_and(|c| c != CHANNEL) {
        return refused("channel_not_found");
    }
    if let Some(ts) = arguments.get("thread_ts").and_then(Value::as_str)
        && !shared
            .posted
            .iter()
            .any(|(c, t)| Some(c.as_str()) == channel && t == ts)
    {
        return refused("invalid_thread_ts");
    }
    let mut completed = Vec::new();
    for file in files {
        let Some(id) = file["id"].as_str() else {
            shared
                .violations
                .push("files.completeUploadExternal: a file without an id".to_owned());
            return refused("invalid_arguments");
        };
        match shared.uploads.get(id) {
            Some(upload) if upload.bytes.is_some() => completed.push(json!({
                "id": id,
                "title": file.get("title").cloned().unwrap_or_else(|| upload.filename.clone().into()),
                "name": upload.filename,
            })),
            // Announced but never sent, or never announced.
            _ => return refused("file_not_found"),
        }
    }
    axum::Json(json!({"ok": true, "files": completed})).into_response()
}

async fn upload(
    State(shared): State<Arc<Mutex<Shared>>>,
    Path(file_id): Path<String>,
    body: Bytes,
) -> Response {
    let mut shared = shared.lock().expect("stand-in state");
    shared.calls.push(Call {
        method: "upload".to_owned(),
        arguments: json!({"file_id": file_id, "bytes": body.len()}),
    });
    let Some(upload) = shared.uploads.get_mut(&file_id) else {
        return (StatusCode::NOT_FOUND, "no such upload").into_response();
    };
    let announced = upload.length;
    upload.bytes = Some(body.to_vec());
    if announced != body.len() as u64 {
        shared.violations.push(format!(
            "upload {file_id}: {} bytes sent, {announced} announced",
            body.len()
        ));
    }
    (StatusCode::OK, format!("OK - {}", body.len())).into_response()
}
