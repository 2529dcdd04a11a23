//! Settings written as text and parsed at load: durations (`"250ms"`, `"5m"`) and instants
//! (RFC 3339).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A duration setting, written `"250ms"`, `"30s"`, `"5m"` or `"1h"` (the rules' spelling).
///
/// Parsed when the configuration loads, so an invalid one is a start-up error naming its key
/// (figment adds the key path to the deserializer's message), never a silent fallback later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurationSetting(Duration);

impl DurationSetting {
    /// Parses the written form.
    pub fn parse(text: &str) -> Result<DurationSetting, String> {
        let value = serde_json::Value::String(text.to_string());
        operators::rule::parse_duration(&value, "duration")
            .map(|ms| DurationSetting(Duration::from_millis(ms as u64)))
            .map_err(|e| e.problem)
    }

    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }

    /// The duration in whole milliseconds.
    pub fn as_millis(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
}

impl From<Duration> for DurationSetting {
    fn from(duration: Duration) -> DurationSetting {
        DurationSetting(duration)
    }
}

impl Serialize for DurationSetting {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{}ms", self.0.as_millis()))
    }
}

impl<'de> Deserialize<'de> for DurationSetting {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<DurationSetting, D::Error> {
        let text = String::deserialize(deserializer)?;
        DurationSetting::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An instant setting, written in RFC 3339 (`"2000-01-01T00:00:00Z"`); parsed at load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeSetting(pub(super) i64);

impl TimeSetting {
    /// Parses the written form.
    pub fn parse(text: &str) -> Result<TimeSetting, String> {
        chrono::DateTime::parse_from_rfc3339(text.trim())
            .map(|t| TimeSetting(t.timestamp_millis()))
            .map_err(|e| {
                format!("'{text}' is not an RFC 3339 instant like 2000-01-01T00:00:00Z ({e})")
            })
    }

    /// The instant, epoch milliseconds.
    pub fn as_millis(self) -> i64 {
        self.0
    }
}

impl Serialize for TimeSetting {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(self.0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            .unwrap_or_default();
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for TimeSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<TimeSetting, D::Error> {
        let text = String::deserialize(deserializer)?;
        TimeSetting::parse(&text).map_err(serde::de::Error::custom)
    }
}
