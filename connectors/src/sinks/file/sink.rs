//! Appending to a file destination: each notification as one JSON line, written with one
//! call and flushed before the delivery counts as done; parent directories are created on
//! demand. Lines from concurrent deliveries never interleave (one writer at a time per sink).
//!
//! A notification that is a document for people — an `html` body and `attachments`, as report
//! runs have — is also written out as a folder beside the file, one per notification
//! (`<file stem>/<notification id>/`): `index.html` (its `cid:` images pointing at the files
//! beside it, so a browser shows the charts), `message.txt`, and each attachment (charts, CSV
//! answers). The folder is complete before the JSON line is appended, and its line names it
//! (`folder`) and carries the attachments' names instead of their bytes. A folder written by an
//! attempt that then failed is written again whole by the next.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::FileConfig;
use crate::sinks::{DeliveryResult, OutgoingNotification, Sink, SinkError, SinkSettings};

/// One line of the output.
#[derive(Serialize)]
struct Line<'a> {
    id: &'a str,
    payload: serde_json::Value,
    delivered_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    folder: Option<String>,
}

/// Appends notifications to JSON-lines files. Clones share the same write lock.
#[derive(Clone, Debug, Default)]
pub struct FileSink {
    write_lock: Arc<tokio::sync::Mutex<()>>,
}

impl FileSink {
    /// A new file sink.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Sink for FileSink {
    type Config = FileConfig;

    fn build(_settings: &SinkSettings) -> Result<Self, SinkError> {
        Ok(Self::new())
    }

    /// Appends one line for the notification to `config.path` (already confined to its
    /// tenant's directory). A payload that is not JSON is a permanent failure; I/O errors
    /// (disk full, permissions) are retryable.
    async fn deliver(
        &self,
        notification: &OutgoingNotification<'_>,
        config: &FileConfig,
    ) -> DeliveryResult {
        let started = Instant::now();
        let payload: serde_json::Value = match serde_json::from_str(notification.payload) {
            Ok(value) => value,
            Err(e) => {
                return DeliveryResult::permanent(
                    None,
                    format!("payload is not JSON: {e}"),
                    started.elapsed(),
                );
            }
        };
        let mut payload = payload;
        let folder = match document_folder(&config.path, notification.id, &mut payload).await {
            Ok(folder) => folder,
            Err(DocumentError::Invalid(e)) => {
                return DeliveryResult::permanent(None, e, started.elapsed());
            }
            Err(DocumentError::Io(e)) => {
                return DeliveryResult::retryable(
                    None,
                    format!("cannot write the report folder beside {}: {e}", config.path),
                    None,
                    started.elapsed(),
                );
            }
        };
        let line = Line {
            id: notification.id,
            payload,
            delivered_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            folder,
        };
        let mut text = match serde_json::to_vec(&line) {
            Ok(text) => text,
            Err(e) => {
                return DeliveryResult::permanent(
                    None,
                    format!("cannot encode line: {e}"),
                    started.elapsed(),
                );
            }
        };
        text.push(b'\n');
        let _guard = self.write_lock.lock().await;
        match append(&config.path, &text).await {
            Ok(()) => DeliveryResult::delivered(None, started.elapsed()),
            Err(e) => DeliveryResult::retryable(
                None,
                format!("cannot append to {}: {e}", config.path),
                None,
                started.elapsed(),
            ),
        }
    }
}

enum DocumentError {
    /// The payload's attachments are not what a document's are.
    Invalid(String),
    /// Writing failed (disk full, permissions): worth another attempt.
    Io(std::io::Error),
}

/// Writes a document payload (`html` + `attachments`) out as a folder and replaces each
/// attachment's bytes in `payload` by its file name; `None` for other payloads, and for
/// standard output, which has no folder beside it.
async fn document_folder(
    path: &str,
    id: &str,
    payload: &mut serde_json::Value,
) -> Result<Option<String>, DocumentError> {
    use base64::Engine as _;
    let (Some(html), Some(attachments)) = (
        payload
            .get("html")
            .and_then(|h| h.as_str())
            .map(str::to_owned),
        payload
            .get_mut("attachments")
            .and_then(|a| a.as_array_mut()),
    ) else {
        return Ok(None);
    };
    if path == "-" {
        return Ok(None);
    }
    let file = Path::new(path);
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "documents".into());
    let safe_id: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let folder = file.with_file_name(stem).join(safe_id);
    tokio::fs::create_dir_all(&folder)
        .await
        .map_err(DocumentError::Io)?;
    let mut page = html;
    for attachment in attachments.iter_mut() {
        let name = attachment
            .get("filename")
            .and_then(|n| n.as_str())
            .filter(|n| {
                !n.is_empty()
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                    && !n.starts_with('.')
            })
            .ok_or_else(|| {
                DocumentError::Invalid(format!(
                    "attachment file name {:?} is not a plain file name",
                    attachment.get("filename")
                ))
            })?
            .to_owned();
        let data = attachment
            .get("data_base64")
            .and_then(|d| d.as_str())
            .map(|d| base64::engine::general_purpose::STANDARD.decode(d))
            .transpose()
            .map_err(|e| DocumentError::Invalid(format!("attachment {name}: {e}")))?
            .unwrap_or_default();
        tokio::fs::write(folder.join(&name), &data)
            .await
            .map_err(DocumentError::Io)?;
        if let Some(cid) = attachment.get("content_id").and_then(|c| c.as_str()) {
            page = page.replace(&format!("cid:{cid}"), &name);
        }
        if let Some(fields) = attachment.as_object_mut() {
            fields.remove("data_base64");
            fields.insert("file".into(), serde_json::Value::String(name));
        }
    }
    if let Some(text) = payload.get("message").and_then(|m| m.as_str()) {
        tokio::fs::write(folder.join("message.txt"), text)
            .await
            .map_err(DocumentError::Io)?;
    }
    tokio::fs::write(folder.join("index.html"), page)
        .await
        .map_err(DocumentError::Io)?;
    if let Some(fields) = payload.as_object_mut() {
        fields.remove("html");
    }
    Ok(Some(folder.display().to_string()))
}

async fn append(path: &str, line: &[u8]) -> std::io::Result<()> {
    if path == "-" {
        let mut stdout = tokio::io::stdout();
        stdout.write_all(line).await?;
        return stdout.flush().await;
    }
    let path = Path::new(path);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent).await?;
    }
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await?;
    file.write_all(line).await?;
    file.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::DeliveryOutcome;

    #[tokio::test]
    async fn a_document_is_written_as_a_folder_a_browser_can_open() {
        use base64::Engine as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("reports.jsonl");
        let config = FileConfig {
            path: path.display().to_string(),
        };
        let png = b"\x89PNG\r\n\x1a\nnot really";
        let payload = serde_json::json!({
            "kind": "report",
            "message": "Weekly revenue",
            "html": "<p>Weekly</p><img src=\"cid:chart-1\">",
            "attachments": [
                {"filename": "revenue.png", "content_type": "image/png", "content_id": "chart-1",
                 "data_base64": base64::engine::general_purpose::STANDARD.encode(png)},
                {"filename": "revenue.csv", "content_type": "text/csv",
                 "data_base64": base64::engine::general_purpose::STANDARD.encode("a,b\n1,2\n")}
            ]
        })
        .to_string();
        let sink = FileSink::new();
        assert!(
            sink.deliver(&notification("ntf_1", &payload), &config)
                .await
                .is_delivered()
        );
        let folder = dir.path().join("reports").join("ntf_1");
        let page = std::fs::read_to_string(folder.join("index.html")).expect("page");
        assert_eq!(page, "<p>Weekly</p><img src=\"revenue.png\">");
        assert_eq!(
            std::fs::read(folder.join("revenue.png")).expect("chart"),
            png
        );
        assert_eq!(
            std::fs::read_to_string(folder.join("revenue.csv")).expect("csv"),
            "a,b\n1,2\n"
        );
        assert_eq!(
            std::fs::read_to_string(folder.join("message.txt")).expect("text"),
            "Weekly revenue"
        );
        let line: serde_json::Value =
            serde_json::from_str(std::fs::read_to_string(&path).expect("line").trim())
                .expect("json line");
        assert_eq!(line["folder"], folder.display().to_string());
        assert_eq!(line["payload"]["attachments"][0]["file"], "revenue.png");
        assert!(
            line["payload"]["attachments"][0]
                .get("data_base64")
                .is_none()
        );

        // An attachment name that would leave the folder is refused for good.
        let bad = payload.replace("revenue.csv", "../escape.csv");
        let result = sink.deliver(&notification("ntf_2", &bad), &config).await;
        assert_eq!(result.outcome, DeliveryOutcome::Permanent, "{result:?}");
        assert!(!dir.path().join("reports").join("escape.csv").exists());
    }

    fn notification<'a>(id: &'a str, payload: &'a str) -> OutgoingNotification<'a> {
        OutgoingNotification {
            tenant: "a",
            id,
            payload,
        }
    }

    #[tokio::test]
    async fn appends_one_json_line_per_notification() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out/deep/notifications.jsonl");
        let config = FileConfig {
            path: path.display().to_string(),
        };
        let sink = FileSink::new();
        assert!(
            sink.deliver(&notification("n1", r#"{"a":1}"#), &config)
                .await
                .is_delivered()
        );
        assert!(
            sink.deliver(&notification("n2", "{\n\"b\": [2]\n}"), &config)
                .await
                .is_delivered()
        );

        let text = std::fs::read_to_string(&path).expect("read output");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["id"], "n1");
        assert_eq!(lines[0]["payload"], serde_json::json!({"a": 1}));
        assert_eq!(lines[1]["payload"], serde_json::json!({"b": [2]}));
        assert!(
            lines[1]["delivered_at"]
                .as_str()
                .is_some_and(|s| s.ends_with('Z'))
        );
    }

    #[tokio::test]
    async fn rejects_non_json_payload_permanently() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = FileConfig {
            path: dir.path().join("x.jsonl").display().to_string(),
        };
        let result = FileSink::new()
            .deliver(&notification("n1", "not json"), &config)
            .await;
        assert_eq!(result.outcome, DeliveryOutcome::Permanent);
    }

    #[tokio::test]
    async fn unwritable_path_is_retryable() {
        let dir = tempfile::tempdir().expect("temp dir");
        // A directory where the file should be: the open fails.
        let config = FileConfig {
            path: dir.path().display().to_string(),
        };
        let result = FileSink::new()
            .deliver(&notification("n1", "{}"), &config)
            .await;
        assert!(
            matches!(result.outcome, DeliveryOutcome::Retryable { .. }),
            "{result:?}"
        );
        assert!(result.error.is_some());
    }
}
