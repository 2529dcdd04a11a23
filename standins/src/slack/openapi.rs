//! What the Slack stand-in checks calls against: Slack's published OpenAPI 2 description of
//! the Web API (`shared/slack/slack_web_openapi_v2.json`) for `chat.postMessage`, and — for the
//! upload flow that description predates — the argument lists `shared/slack/README.md` gives.

use serde_json::Value;

/// `chat.postMessage`'s arguments, as the stand-in accepts them (the token travels in the
/// `Authorization` header, not among them).
pub const POST_MESSAGE_ARGUMENTS: &[&str] = &[
    "as_user",
    "attachments",
    "blocks",
    "channel",
    "icon_emoji",
    "icon_url",
    "link_names",
    "mrkdwn",
    "parse",
    "reply_broadcast",
    "text",
    "thread_ts",
    "unfurl_links",
    "unfurl_media",
    "username",
];
/// The arguments `chat.postMessage` cannot go without.
pub const POST_MESSAGE_REQUIRED: &[&str] = &["channel"];
/// The error names the stand-in answers `chat.postMessage` with (`ratelimited`, the HTTP 429
/// answer, is the README's: the description lists none for a 429).
pub const POST_MESSAGE_ERRORS: &[&str] = &[
    "channel_not_found",
    "not_in_channel",
    "msg_too_long",
    "no_text",
    "not_authed",
    "invalid_auth",
    "account_inactive",
];

/// `files.getUploadURLExternal` (README): arguments, and those required.
pub const GET_UPLOAD_URL_ARGUMENTS: &[&str] = &["filename", "length", "alt_txt", "snippet_type"];
/// See [`GET_UPLOAD_URL_ARGUMENTS`].
pub const GET_UPLOAD_URL_REQUIRED: &[&str] = &["filename", "length"];
/// `files.completeUploadExternal` (README): arguments, and those required.
pub const COMPLETE_UPLOAD_ARGUMENTS: &[&str] = &[
    "files",
    "channel_id",
    "initial_comment",
    "blocks",
    "thread_ts",
];
/// See [`COMPLETE_UPLOAD_ARGUMENTS`].
pub const COMPLETE_UPLOAD_REQUIRED: &[&str] = &["files"];

/// The parsed description.
pub struct OpenApi {
    doc: Value,
}

impl OpenApi {
    /// Loads the description from the shared folder beside the repository.
    pub fn load() -> OpenApi {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/slack/slack_web_openapi_v2.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("Slack OpenAPI description {}: {e}", path.display()));
        let doc: Value = serde_json::from_str(&text).expect("the description is JSON");
        assert_eq!(doc["swagger"], "2.0", "an OpenAPI 2 description");
        OpenApi { doc }
    }

    /// A method's `formData` arguments, with whether each is required.
    pub fn arguments(&self, method: &str) -> Vec<(String, bool)> {
        self.doc["paths"][format!("/{method}")]["post"]["parameters"]
            .as_array()
            .map(|parameters| {
                parameters
                    .iter()
                    .filter(|p| p["in"] == "formData")
                    .filter_map(|p| Some((p["name"].as_str()?.to_owned(), p["required"] == true)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the method takes its token in the `token` header (Bearer).
    pub fn takes_token_header(&self, method: &str) -> bool {
        self.doc["paths"][format!("/{method}")]["post"]["parameters"]
            .as_array()
            .is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["name"] == "token" && p["in"] == "header")
            })
    }

    /// The error names the description lists for a method's failures.
    pub fn errors(&self, method: &str) -> Vec<String> {
        self.doc["paths"][format!("/{method}")]["post"]["responses"]["default"]["schema"]
            ["properties"]["error"]["enum"]
            .as_array()
            .map(|names| names.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    /// Whether the description has the method at all.
    pub fn has(&self, method: &str) -> bool {
        self.doc["paths"].get(format!("/{method}")).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stand_ins_arguments_are_slacks() {
        let api = OpenApi::load();
        let arguments = api.arguments("chat.postMessage");
        let mut names: Vec<&str> = arguments.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, POST_MESSAGE_ARGUMENTS);
        let required: Vec<&str> = arguments
            .iter()
            .filter(|(_, r)| *r)
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(required, POST_MESSAGE_REQUIRED);
        assert!(api.takes_token_header("chat.postMessage"));
        let errors = api.errors("chat.postMessage");
        for name in POST_MESSAGE_ERRORS {
            assert!(
                errors.iter().any(|e| e == name),
                "{name} is not among {errors:?}"
            );
        }
        // The upload flow postdates the description: its lists come from the README, and the
        // method it replaced is the one the description has.
        assert!(api.has("files.upload"));
        assert!(!api.has("files.getUploadURLExternal"));
        assert!(!api.has("files.completeUploadExternal"));
        let readme = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/slack/README.md"),
        )
        .expect("README");
        for name in GET_UPLOAD_URL_ARGUMENTS
            .iter()
            .chain(COMPLETE_UPLOAD_ARGUMENTS)
        {
            assert!(
                readme.contains(&format!("`{name}`")),
                "{name} is not in the README"
            );
        }
    }
}
