//! Slack sink: a notification as a Slack message through the Web API, its inline images
//! (charts) uploaded into the message's thread.
//!
//! One attempt is `chat.postMessage` (the text, and a Block Kit summary: a header with the
//! subject, sections with the text), then for each inline image `files.getUploadURLExternal`
//! and a POST of its bytes to the answered `upload_url`, then one
//! `files.completeUploadExternal` sharing all of them into the channel under the message
//! (`thread_ts`). The token travels as `Authorization: Bearer`; every URL, the API base and each
//! upload URL alike, goes through the outbound guard.
//!
//! **Slack has no idempotency key.** A retry after a partly completed attempt posts the message
//! again, and so the charts too. To keep that window small, the charts are shared by one
//! `files.completeUploadExternal` after every upload has succeeded: an attempt that fails while
//! uploading leaves only unshared uploads behind (Slack drops them), never half the charts in
//! the channel, and the retry posts message and charts once more, whole. What remains is an
//! attempt whose outcome is lost after the message was posted: that one is delivered twice.
//!
//! - [`config`]: the destination's JSON (token, channel, API base, timeout) and its checks.
//! - [`sink`]: the calls and how Slack's answers are classified.

pub mod config;
pub mod sink;

pub use config::SlackConfig;
pub use sink::SlackSink;
