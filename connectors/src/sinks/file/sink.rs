//! Appending to a file destination: each notification as one JSON line, written with one
//! call and flushed before the delivery counts as done; parent directories are created on
//! demand. Lines from concurrent deliveries never interleave (one writer at a time per sink).

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
        let line = Line {
            id: notification.id,
            payload,
            delivered_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
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

    fn notification<'a>(id: &'a str, payload: &'a str) -> OutgoingNotification<'a> {
        OutgoingNotification { id, payload }
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
