//! Notification intents: what the dataflow decided should be said, with a deterministic id.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::event::Event;
use crate::value::AttrValue;

/// Why a notification exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum IntentKind {
    /// An event matched a `match` rule.
    Match,
    /// A windowed condition started to hold for a group.
    Firing,
    /// A windowed condition stopped holding for a group.
    Resolved,
}

impl IntentKind {
    /// Lower-case name, as stored and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            IntentKind::Match => "match",
            IntentKind::Firing => "firing",
            IntentKind::Resolved => "resolved",
        }
    }
}

/// A notification the dataflow wants sent.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Intent {
    /// Deterministic id (`ntf_` + 32 hex digits): the same rule, group and window (or event)
    /// always give the same id, so a replay after a restart adds nothing new downstream.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// The rule.
    pub rule_id: String,
    /// The rule version that produced it.
    pub rule_version: u64,
    /// Match, firing or resolved.
    pub kind: IntentKind,
    /// Group key values, paired with the rule's `group_by` names.
    pub group: Vec<(String, AttrValue)>,
    /// Group key rendered as `attr=value,...` (`*` when the rule has no `group_by`).
    pub group_label: String,
    /// Event time the notification is about: the event's time, or the window's end.
    pub at_ms: i64,
    /// Not before this instant: later than `at_ms` when `at_ms` fell in quiet hours.
    pub deliver_at_ms: i64,
    /// The window `[start, end)` for firing/resolved.
    pub window: Option<(i64, i64)>,
    /// For resolved: the start of the window where the alert began firing.
    pub firing_since_ms: Option<i64>,
    /// The window's aggregate (firing).
    pub value: Option<crate::value::Num>,
    /// The baseline aggregate one period earlier (`change` rules).
    pub baseline: Option<crate::value::Num>,
    /// The matching event (match).
    pub event: Option<Event>,
}

impl Intent {
    /// The order intents leave the engine in: by event time, then id.
    pub fn delivery_order(&self, other: &Intent) -> std::cmp::Ordering {
        (self.at_ms, &self.id).cmp(&(other.at_ms, &other.id))
    }
}

/// The deterministic notification id for the given identifying parts.
pub fn intent_id(parts: &[&str]) -> String {
    hashed_id("ntf_", parts)
}

/// `prefix` and 32 hex digits: the first 16 bytes of SHA-256 over the length-prefixed `parts`
/// (so moving a boundary between parts changes the id). Notification and report-run ids, and
/// the pipeline's ids derived from them.
pub fn hashed_id(prefix: &str, parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(prefix.len() + 32);
    id.push_str(prefix);
    for byte in &digest[..16] {
        id.push(char::from(HEX[usize::from(byte >> 4)]));
        id.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_ntf_and_32_lowercase_hex_digits() {
        let id = intent_id(&["shop", "big", "match", "o1"]);
        assert_eq!(id, intent_id(&["shop", "big", "match", "o1"]));
        assert_ne!(id, intent_id(&["shop", "big", "match", "o2"]));
        // Parts are length-prefixed, so moving a boundary changes the id.
        assert_ne!(id, intent_id(&["shopb", "ig", "match", "o1"]));
        let hex = id.strip_prefix("ntf_").expect("prefix");
        assert_eq!(hex.len(), 32);
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        // The first 16 bytes of SHA-256 over the length-prefixed parts, as it always was.
        let mut hasher = Sha256::new();
        for part in ["shop", "big", "match", "o1"] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        let expected: String = hasher.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, expected);
    }
}
