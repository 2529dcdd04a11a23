//! Business events: parsing and validation.
//!
//! An event is `{id, tenant, type, ts, attrs}`; `ts` is RFC 3339 text or epoch milliseconds. Every
//! problem is reported with the field it concerns, so a producer can fix the one bad line.

use serde::{Deserialize, Serialize};

use crate::value::{Attrs, SmolStr};

/// Longest accepted event id, tenant or type, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// A validated business event.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Event {
    /// Tenant that owns the event.
    pub tenant: SmolStr,
    /// Event type, e.g. `order`, `refund`, `ad_spend`.
    pub event_type: SmolStr,
    /// When the event happened, epoch milliseconds (event time).
    pub ts_ms: i64,
    /// Producer-chosen id; with the tenant it is the idempotency key.
    pub id: SmolStr,
    /// Attributes.
    pub attrs: Attrs,
}

/// What was wrong with an event, naming the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct EventError {
    /// The offending field, e.g. `ts` or `attrs`.
    pub field: String,
    /// What was wrong with it.
    pub problem: String,
}

impl EventError {
    fn new(field: &str, problem: impl Into<String>) -> Self {
        EventError {
            field: field.to_string(),
            problem: problem.into(),
        }
    }
}

impl Event {
    /// Validates one JSON event. `tenant` is the authenticated tenant: a body naming another tenant
    /// is refused, a body naming none gets this one.
    pub fn from_json(value: &serde_json::Value, tenant: &str) -> Result<Event, EventError> {
        // Reading a tree cannot fail (every JSON value is some field's value); should it, the
        // document is what is wrong.
        EventFields::deserialize(value)
            .map_err(|e| EventError::new("event", e.to_string()))?
            .into_event(tenant)
    }

    /// The event as JSON, in the shape it was accepted in (`ts` as epoch milliseconds); see
    /// [`Event::document`].
    pub fn to_json(&self) -> serde_json::Value {
        // Infallible: every key is a string and nothing is written anywhere.
        serde_json::to_value(self.document()).unwrap_or_default()
    }

    /// The event as the JSON document it was accepted in, ready to serialize:
    /// `{"attrs": {..}, "id", "tenant", "ts": <epoch ms>, "type"}` with keys in that (sorted)
    /// order and whole-number attributes written as integers. Serializing it straight to text
    /// gives the same bytes as [`Event::to_json`] printed, without building the JSON tree.
    pub fn document(&self) -> EventDocument<'_> {
        EventDocument(self)
    }
}

/// An [`Event`] seen as its JSON document; see [`Event::document`].
#[derive(Clone, Copy, Debug)]
pub struct EventDocument<'a>(&'a Event);

impl Serialize for EventDocument<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct AttrsJson<'a>(&'a Attrs);
        impl Serialize for AttrsJson<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_map(self.0.iter().map(|(k, v)| (k, v.json())))
            }
        }
        let event = self.0;
        // In the order of JSON object keys everywhere else (sorted), so the text is the same
        // whichever way an event is written.
        let mut map = serializer.serialize_map(Some(5))?;
        map.serialize_entry("attrs", &AttrsJson(&event.attrs))?;
        map.serialize_entry("id", event.id.as_str())?;
        map.serialize_entry("tenant", event.tenant.as_str())?;
        map.serialize_entry("ts", &event.ts_ms)?;
        map.serialize_entry("type", event.event_type.as_str())?;
        map.end()
    }
}

/// A field of an event document as found, before it is checked.
#[derive(Clone, Debug, Default, PartialEq)]
enum Found<T> {
    /// Absent, or `null`.
    #[default]
    Missing,
    /// The expected kind of value.
    Value(T),
    /// Another kind of JSON value, named as [`json_kind`] names it.
    Other(&'static str),
}

/// Reads a field's value as [`Found`]: the kind of value `T` is read from becomes its value,
/// every other kind is named and skipped.
struct FoundVisitor<T>(std::marker::PhantomData<T>);

/// The kind of JSON value a field (or the document itself) is read from: text, or an object.
trait FromFound: Sized {
    /// The value from text; `None` when it is not read from text.
    fn from_str(_: &str) -> Option<Self> {
        None
    }

    /// The value from an object; the object back (to be skipped) when it is not read from one.
    fn from_object<'de, A: serde::de::MapAccess<'de>>(map: A) -> Result<Result<Self, A>, A::Error> {
        Ok(Err(map))
    }
}

impl FromFound for SmolStr {
    fn from_str(s: &str) -> Option<SmolStr> {
        Some(crate::value::text(s))
    }
}

impl FromFound for Attrs {
    fn from_object<'de, A: serde::de::MapAccess<'de>>(
        map: A,
    ) -> Result<Result<Attrs, A>, A::Error> {
        crate::value::attrs_from_json_map(map).map(Ok)
    }
}

impl<'de, T: FromFound> serde::de::Visitor<'de> for FoundVisitor<T> {
    type Value = Found<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Found<T>, E> {
        Ok(Found::Missing)
    }

    fn visit_none<E>(self) -> Result<Found<T>, E> {
        Ok(Found::Missing)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Found<T>, E> {
        Ok(Found::Other("a boolean"))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Found<T>, E> {
        Ok(Found::Other("a number"))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Found<T>, E> {
        Ok(Found::Other("a number"))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Found<T>, E> {
        Ok(Found::Other("a number"))
    }

    fn visit_str<E>(self, s: &str) -> Result<Found<T>, E> {
        Ok(T::from_str(s).map_or(Found::Other("a string"), Found::Value))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Found<T>, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Found::Other("an array"))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Found<T>, A::Error> {
        match T::from_object(map)? {
            Ok(value) => Ok(Found::Value(value)),
            Err(mut map) => {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Found::Other("an object"))
            }
        }
    }
}

impl<'de, T: FromFound> Deserialize<'de> for Found<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Found<T>, D::Error> {
        deserializer.deserialize_any(FoundVisitor(std::marker::PhantomData))
    }
}

/// An event document's fields as found in its JSON, not yet checked. Reading one builds no JSON
/// tree (the attributes go straight into their vector, names and short values inline), and
/// fails only on text that is not JSON; [`EventFields::into_event`] then checks the fields in
/// the order [`Event::from_json`] always has, so both give the same event or the same error.
/// A field given twice keeps its last value, as a JSON object does.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventFields {
    /// The document is not a JSON object.
    not_object: bool,
    /// The first unknown field, in name order (the one a JSON object lists first).
    unknown: Option<String>,
    id: Found<SmolStr>,
    event_type: Found<SmolStr>,
    tenant: Found<SmolStr>,
    /// `ts` as found; its two accepted forms are told apart by [`parse_ts`].
    ts: Option<serde_json::Value>,
    attrs: Found<Attrs>,
}

impl EventFields {
    /// The tenant the document names, if it names one as text.
    pub fn tenant(&self) -> Option<&str> {
        match &self.tenant {
            Found::Value(tenant) => Some(tenant.as_str()),
            _ => None,
        }
    }

    /// Validates the fields as an event. `tenant` is the authenticated tenant: a document naming
    /// another tenant is refused, a document naming none gets this one.
    pub fn into_event(self, tenant: &str) -> Result<Event, EventError> {
        if self.not_object {
            return Err(EventError::new("event", "must be a JSON object"));
        }
        if let Some(key) = self.unknown {
            return Err(EventError::new(
                &key,
                "unknown field; expected id, tenant, type, ts, attrs",
            ));
        }
        let id = required_name(self.id, "id")?;
        let event_type = required_name(self.event_type, "type")?;
        match self.tenant {
            Found::Missing => {}
            Found::Value(t) if t == tenant => {}
            Found::Value(t) => {
                return Err(EventError::new(
                    "tenant",
                    format!("'{t}' is not the tenant of this API key"),
                ));
            }
            Found::Other(_) => return Err(EventError::new("tenant", "must be a string")),
        }
        let ts_ms = match &self.ts {
            None | Some(serde_json::Value::Null) => {
                return Err(EventError::new("ts", "is required"));
            }
            Some(v) => parse_ts(v)?,
        };
        let attrs = match self.attrs {
            Found::Missing => Attrs::new(),
            Found::Value(attrs) => attrs,
            Found::Other(_) => return Err(EventError::new("attrs", "must be a JSON object")),
        };
        Ok(Event {
            tenant: SmolStr::new(tenant),
            event_type,
            ts_ms,
            id,
            attrs,
        })
    }
}

/// A key of an event document.
enum Key {
    Id,
    Type,
    Tenant,
    Ts,
    Attrs,
    Unknown(String),
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "id" => Key::Id,
                    "type" => Key::Type,
                    "tenant" => Key::Tenant,
                    "ts" => Key::Ts,
                    "attrs" => Key::Attrs,
                    other => Key::Unknown(other.to_string()),
                })
            }
        }
        deserializer.deserialize_str(Name)
    }
}

/// A document is read from an object, field by field.
impl FromFound for EventFields {
    fn from_object<'de, A: serde::de::MapAccess<'de>>(
        mut map: A,
    ) -> Result<Result<EventFields, A>, A::Error> {
        let mut fields = EventFields::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Id => fields.id = map.next_value()?,
                Key::Type => fields.event_type = map.next_value()?,
                Key::Tenant => fields.tenant = map.next_value()?,
                Key::Ts => fields.ts = Some(map.next_value()?),
                Key::Attrs => fields.attrs = map.next_value()?,
                Key::Unknown(key) => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    if fields.unknown.as_ref().is_none_or(|first| key < *first) {
                        fields.unknown = Some(key);
                    }
                }
            }
        }
        Ok(Ok(fields))
    }
}

impl<'de> Deserialize<'de> for EventFields {
    /// Any JSON value reads: an object as its fields, anything else as not an object.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<EventFields, D::Error> {
        Ok(match Found::<EventFields>::deserialize(deserializer)? {
            Found::Value(fields) => fields,
            Found::Missing | Found::Other(_) => EventFields {
                not_object: true,
                ..EventFields::default()
            },
        })
    }
}

fn required_name(found: Found<SmolStr>, field: &str) -> Result<SmolStr, EventError> {
    match found {
        Found::Missing => Err(EventError::new(field, "is required")),
        Found::Value(s) if s.is_empty() => Err(EventError::new(field, "must not be empty")),
        Found::Value(s) if s.len() > MAX_NAME_LEN => Err(EventError::new(
            field,
            format!("is {} bytes long; at most {MAX_NAME_LEN} allowed", s.len()),
        )),
        Found::Value(s) if s.chars().any(char::is_control) => Err(EventError::new(
            field,
            "must not contain control characters",
        )),
        Found::Value(s) => Ok(s),
        Found::Other(kind) => Err(EventError::new(
            field,
            format!("must be a string, got {kind}"),
        )),
    }
}

/// The event times accepted as plausible: not before a fixed earliest instant, and not further
/// ahead of the clock than a margin. Anything outside is a producer's mistake (a zero, a unit
/// mix-up, a placeholder year), refused per event rather than left to enter windows and the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventTimeRange {
    /// Earliest accepted event time, epoch milliseconds.
    pub earliest_ms: i64,
    /// How far ahead of the clock an event time may be, milliseconds.
    pub max_future_ms: i64,
}

/// 2000-01-01T00:00:00Z: the default earliest event time.
pub const DEFAULT_EARLIEST_MS: i64 = 946_684_800_000;

impl Default for EventTimeRange {
    fn default() -> Self {
        EventTimeRange {
            earliest_ms: DEFAULT_EARLIEST_MS,
            max_future_ms: 86_400_000,
        }
    }
}

impl EventTimeRange {
    /// Checks an event time against the range, with `now_ms` as the clock.
    pub fn check(&self, ts_ms: i64, now_ms: i64) -> Result<(), EventError> {
        if ts_ms < self.earliest_ms {
            return Err(EventError::new(
                "ts",
                format!(
                    "{} is before {}, the earliest accepted event time",
                    rfc3339(ts_ms),
                    rfc3339(self.earliest_ms)
                ),
            ));
        }
        let latest = now_ms.saturating_add(self.max_future_ms);
        if ts_ms > latest {
            return Err(EventError::new(
                "ts",
                format!(
                    "{} is more than {} ahead of the server's clock ({}); check the producer's clock and the unit (epoch milliseconds)",
                    rfc3339(ts_ms),
                    duration_text(self.max_future_ms),
                    rfc3339(now_ms)
                ),
            ));
        }
        Ok(())
    }
}

/// A duration in its largest whole unit, as the configuration writes it (`1d`, `90m`, `250ms`).
fn duration_text(ms: i64) -> String {
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms != 0 && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// An instant as RFC 3339 UTC text, or the raw milliseconds when chrono cannot represent it.
fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// Parses an event time: RFC 3339 text or integer epoch milliseconds.
pub fn parse_ts(value: &serde_json::Value) -> Result<i64, EventError> {
    match value {
        serde_json::Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .map_err(|e| {
                EventError::new(
                    "ts",
                    format!("'{s}' is not an RFC 3339 timestamp ({e}); e.g. 2026-11-25T09:00:00+09:00 or epoch milliseconds"),
                )
            }),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(ms) if (0..=253_402_300_799_999).contains(&ms) => Ok(ms),
            Some(ms) => Err(EventError::new(
                "ts",
                format!("{ms} is outside the supported range of epoch milliseconds (years 1970-9999)"),
            )),
            None => Err(EventError::new(
                "ts",
                format!("{n} is not an integer number of epoch milliseconds"),
            )),
        },
        other => Err(EventError::new(
            "ts",
            format!("must be RFC 3339 text or epoch milliseconds, got {}", json_kind(other)),
        )),
    }
}

/// A short name of a JSON value's kind, for error messages.
pub fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times_outside_the_range_are_refused_with_the_reason() {
        let range = EventTimeRange::default();
        let now = 1_796_300_000_000; // 2026-12-03
        let ts = |text: &str| parse_ts(&serde_json::json!(text)).unwrap();
        for text in [
            "0001-01-01T00:00:00Z",
            "1969-07-20T20:17:00Z",
            "1999-12-31T23:59:59.999Z",
        ] {
            let error = range.check(ts(text), now).unwrap_err();
            assert_eq!(error.field, "ts");
            assert!(
                error
                    .problem
                    .ends_with("is before 2000-01-01T00:00:00Z, the earliest accepted event time"),
                "{error}"
            );
        }
        for ahead in [ts("9999-12-31T00:00:00Z"), now + 2 * 86_400_000] {
            let error = range.check(ahead, now).unwrap_err();
            assert!(
                error
                    .problem
                    .contains("is more than 1d ahead of the server's clock"),
                "{error}"
            );
        }
        for fine in [
            ts("2019-03-01T00:00:00Z"),
            DEFAULT_EARLIEST_MS,
            now,
            now + 86_400_000,
        ] {
            range.check(fine, now).unwrap();
        }
        assert_eq!(duration_text(90 * 60_000), "90m");
        assert_eq!(duration_text(1_500), "1500ms");
    }
    use crate::value::AttrValue;
    use serde_json::json;

    #[test]
    fn accepts_rfc3339_and_epoch_ms() {
        let a = Event::from_json(
            &json!({"id": "o1", "type": "order", "ts": "2025-11-25T09:00:00+09:00", "attrs": {"amount": 5}}),
            "shop",
        )
        .unwrap();
        let b = Event::from_json(
            &json!({"id": "o1", "type": "order", "ts": 1_764_028_800_000i64, "attrs": {"amount": 5}}),
            "shop",
        )
        .unwrap();
        assert_eq!(a.ts_ms, 1_764_028_800_000);
        assert_eq!(a, b);
        assert_eq!(a.tenant, "shop");
    }

    #[test]
    fn the_document_is_the_accepted_shape_and_prints_like_to_json() {
        let event = Event::from_json(
            &json!({"id": "o\"1", "type": "order", "ts": "2025-11-25T09:00:00+09:00", "attrs": {
                "amount": 250000, "rate": 2.5, "tiny": 1e-7, "big": 1e300, "neg": -0.0,
                "name": "김\n", "tags": [1, "a", null, [true]], "nested": {"b": 1, "a": 2},
                "none": null, "ok": false, "huge": 9007199254740993u64}}),
            "shop",
        )
        .unwrap();
        let text = serde_json::to_string(&event.document()).unwrap();
        assert_eq!(
            text,
            r#"{"attrs":{"amount":250000,"big":1e+300,"huge":9007199254740992,"name":"김\n","neg":0,"nested":"{\"a\":2,\"b\":1}","none":null,"ok":false,"rate":2.5,"tags":[1,"a",null,[true]],"tiny":1e-7},"id":"o\"1","tenant":"shop","ts":1764028800000,"type":"order"}"#
        );
        assert_eq!(text, event.to_json().to_string());
        // Read back, it writes the same text again (only `-0.0` lost its sign on the way).
        let again = Event::from_json(&serde_json::from_str(&text).unwrap(), "shop").unwrap();
        assert_eq!(serde_json::to_string(&again.document()).unwrap(), text);
        let nan = Event {
            attrs: [("x".into(), AttrValue::Num(crate::value::Num(f64::NAN)))]
                .into_iter()
                .collect(),
            ..event
        };
        let text = serde_json::to_string(&nan.document()).unwrap();
        assert!(text.starts_with(r#"{"attrs":{"x":null},"#), "{text}");
        assert_eq!(text, nan.to_json().to_string());
    }

    #[test]
    fn a_document_read_from_its_text_gives_what_its_json_tree_gives() {
        let long = "x".repeat(MAX_NAME_LEN + 1);
        let documents = [
            r#"{"id":"o1","type":"order","ts":1764028800000,"attrs":{"sku":"A","amount":250000,"rate":2.5}}"#.to_string(),
            // Out of name order, a name twice (the last counts), escapes, nesting, big numbers.
            r#"{"attrs":{"z":1,"a":"\u00e9\n","z":2,"nested":{"b":[1,{"c":null}],"a":true},"huge":9007199254740993,"neg":-7,"list":[1,"a",null,[true]]},"ts":"2025-11-25T09:00:00+09:00","type":"order","id":"o\"1","tenant":"shop"}"#.to_string(),
            r#"{"id":"a","id":"b","type":"order","ts":1,"ts":2}"#.to_string(),
            r#"{"id":"a","type":"order","ts":1,"attrs":null,"tenant":null}"#.to_string(),
            // Several unknown fields: the first in name order is named, wherever it stands.
            r#"{"zz":1,"id":"a","type":"order","ts":1,"mm":{"x":[1]},"aa":[2]}"#.to_string(),
            r#"{"id":"a","type":"order","ts":1,"id":null}"#.to_string(),
            r#"{"id":"","type":"order","ts":1}"#.to_string(),
            format!(r#"{{"id":"{long}","type":"order","ts":1}}"#),
            r#"{"id":"a\u0007","type":"order","ts":1}"#.to_string(),
            r#"{"id":["a"],"type":"order","ts":1}"#.to_string(),
            r#"{"id":"a","type":{"t":1},"ts":1}"#.to_string(),
            r#"{"id":"a","type":"order","ts":true}"#.to_string(),
            r#"{"id":"a","type":"order","ts":null}"#.to_string(),
            r#"{"id":"a","type":"order","ts":1.5}"#.to_string(),
            r#"{"id":"a","type":"order","ts":-1}"#.to_string(),
            r#"{"id":"a","type":"order","ts":"yesterday"}"#.to_string(),
            r#"{"id":"a","type":"order","ts":1,"tenant":"other"}"#.to_string(),
            r#"{"id":"a","type":"order","ts":1,"tenant":7}"#.to_string(),
            r#"{"id":"a","type":"order","ts":1,"attrs":[1]}"#.to_string(),
            r#"{"id":"a","type":"order","ts":1,"attrs":"x"}"#.to_string(),
            r#"[{"id":"a"}]"#.to_string(),
            r#""text""#.to_string(),
            "12".to_string(),
            "null".to_string(),
            "{}".to_string(),
        ];
        for text in &documents {
            let fields: EventFields = serde_json::from_str(text).unwrap();
            let from_text = fields.into_event("shop");
            let tree: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(from_text, Event::from_json(&tree, "shop"), "{text}");
        }
        let read = |text: &str| {
            serde_json::from_str::<EventFields>(text)
                .unwrap()
                .into_event("shop")
        };
        let event = read(&documents[1]).unwrap();
        assert_eq!(event.id, "o\"1");
        let names: Vec<&str> = event.attrs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["a", "huge", "list", "neg", "nested", "z"]);
        assert_eq!(event.attrs.get("z").and_then(AttrValue::as_f64), Some(2.0));
        assert_eq!(
            event.attrs.get("nested"),
            Some(&AttrValue::Str(r#"{"a":true,"b":[1,{"c":null}]}"#.into()))
        );
        assert_eq!(read(&documents[2]).unwrap().id, "b");
        assert_eq!(read(&documents[4]).unwrap_err().field, "aa");
        assert_eq!(
            read(&documents[9]).unwrap_err().to_string(),
            "id: must be a string, got an array"
        );
        // Text that is not JSON is refused as such, whatever fields came before.
        for broken in [r#"{"id":"a","type":"order""#, r#"{"id":"a"} x"#, "{id:1}"] {
            assert!(
                serde_json::from_str::<EventFields>(broken).is_err(),
                "{broken}"
            );
        }
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!({"type": "order", "ts": 1}), "id"),
            (json!({"id": 7, "type": "order", "ts": 1}), "id"),
            (json!({"id": "a", "ts": 1}), "type"),
            (json!({"id": "a", "type": "order"}), "ts"),
            (json!({"id": "a", "type": "order", "ts": "yesterday"}), "ts"),
            (json!({"id": "a", "type": "order", "ts": 1.5}), "ts"),
            (
                json!({"id": "a", "type": "order", "ts": 1, "attrs": [1]}),
                "attrs",
            ),
            (
                json!({"id": "a", "type": "order", "ts": 1, "tenant": "other"}),
                "tenant",
            ),
            (
                json!({"id": "a", "type": "order", "ts": 1, "amount": 3}),
                "amount",
            ),
        ];
        for (input, field) in cases {
            let err = Event::from_json(&input, "shop").unwrap_err();
            assert_eq!(err.field, field, "{input} gave {err}");
        }
        assert_eq!(
            Event::from_json(&json!([1]), "shop")
                .unwrap_err()
                .to_string(),
            "event: must be a JSON object"
        );
    }
}
