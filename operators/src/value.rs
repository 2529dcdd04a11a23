//! Attribute values carried by events and compared by predicates.
//!
//! Dataflow records must be totally ordered and hashable, so numbers are held as [`Num`], an `f64`
//! ordered by [`f64::total_cmp`]. Attribute names and string values are [`SmolStr`]s: the short
//! names and codes events carry (`channel`, `KR`, `SKU-00012`) are held inline, so an event costs a
//! few allocations rather than one per name and value, and matching reads them without chasing
//! pointers.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
pub use smol_str::SmolStr;

/// An `f64` with a total order (`-0.0 < 0.0`, NaN last), so values can be keys in the dataflow.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Num(pub f64);

impl PartialEq for Num {
    fn eq(&self, other: &Self) -> bool {
        self.0.total_cmp(&other.0).is_eq()
    }
}
impl Eq for Num {}
impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Num {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}
impl std::hash::Hash for Num {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state)
    }
}

/// Largest integer an `f64` holds exactly (2^53).
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// One attribute value of an event.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AttrValue {
    /// JSON `null`, and the value of a missing attribute in a group key.
    Null,
    /// JSON boolean.
    Bool(bool),
    /// Any JSON number.
    Num(Num),
    /// JSON string.
    Str(SmolStr),
    /// JSON array (nested objects are kept as their JSON text).
    List(Vec<AttrValue>),
}

/// The attributes of an event, by name.
pub type Attrs = BTreeMap<SmolStr, AttrValue>;

impl AttrValue {
    /// Converts a JSON value; objects nested inside attributes are kept as their JSON text.
    pub fn from_json(value: &serde_json::Value) -> AttrValue {
        use serde_json::Value;
        match value {
            Value::Null => AttrValue::Null,
            Value::Bool(b) => AttrValue::Bool(*b),
            Value::Number(n) => AttrValue::Num(Num(n.as_f64().unwrap_or(f64::NAN))),
            Value::String(s) => AttrValue::Str(SmolStr::new(s)),
            Value::Array(items) => {
                AttrValue::List(items.iter().map(AttrValue::from_json).collect())
            }
            Value::Object(_) => AttrValue::Str(value.to_string().into()),
        }
    }

    /// Converts back to JSON, for templates and payloads.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            AttrValue::Null => Value::Null,
            AttrValue::Bool(b) => Value::Bool(*b),
            // Whole numbers go back out as integers: `250000` must not come back as `250000.0`.
            AttrValue::Num(n) if n.0.fract() == 0.0 && n.0.abs() <= MAX_EXACT_INTEGER => {
                Value::Number((n.0 as i64).into())
            }
            AttrValue::Num(n) => serde_json::Number::from_f64(n.0)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            AttrValue::Str(s) => Value::String(s.to_string()),
            AttrValue::List(items) => Value::Array(items.iter().map(AttrValue::to_json).collect()),
        }
    }

    /// The numeric value, if this is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            AttrValue::Num(n) => Some(n.0),
            _ => None,
        }
    }
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Null => f.write_str("null"),
            AttrValue::Bool(b) => write!(f, "{b}"),
            AttrValue::Num(n) => write!(f, "{}", n.0),
            AttrValue::Str(s) => f.write_str(s),
            AttrValue::List(_) => write!(f, "{}", self.to_json()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trip_keeps_integers_integral() {
        for text in [
            "250000",
            "2.5",
            "-3",
            "\"kakao\"",
            "[1,2.5,null]",
            "true",
            "null",
        ] {
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(AttrValue::from_json(&value).to_json().to_string(), text);
        }
        assert_eq!(AttrValue::from_json(&json!(1e300)).to_json(), json!(1e300));
    }
}
