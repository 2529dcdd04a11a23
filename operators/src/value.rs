//! Attribute values carried by events and compared by predicates.
//!
//! Dataflow records must be totally ordered and hashable, so numbers are held as [`Num`], an `f64`
//! ordered by [`f64::total_cmp`]. Attribute names and string values are [`SmolStr`]s: the short
//! names and codes events carry (`channel`, `KR`, `SKU-00012`) are held inline, so an event costs a
//! few allocations rather than one per name and value, and matching reads them without chasing
//! pointers.

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

/// `text` as a [`SmolStr`], inline when it is short enough. Short text is made by
/// `SmolStr::new_inline`, which inlines into the caller, rather than by `SmolStr::new`, which
/// does not: a string returned from a call through memory is written there in pieces and read
/// back whole, which the CPU cannot forward from its store buffer — a stall for every name and
/// value of every event decoded. Decoding the JSON of an order event like `bench match`'s took
/// ≈ 900 ns with `SmolStr::new` everywhere, ≈ 780 ns with `new_inline`. And it is made with its
/// length known: `new_inline` copies a text of unknown length with a call to `memcpy`, where one
/// arm per length lets the compiler copy it with a few moves of fixed widths (alternating runs:
/// a share of `bench match`'s events decoded in ≈ 177 ns per event instead of ≈ 203, an order
/// document in 514–553 ns instead of 549–569).
#[inline(always)]
pub(crate) fn text(text: &str) -> SmolStr {
    macro_rules! by_length {
        ($($len:literal)*) => {
            match text.len() {
                $($len => SmolStr::new_inline(&text[..$len]),)*
                _ => SmolStr::new(text),
            }
        };
    }
    by_length!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23)
}

/// A clone of `text` made straight into its place. `SmolStr::clone` copies an inline or static
/// string bit for bit and clones a shared one's `Arc`; where its result is used, the compiler
/// merges the two through the stack in overlapping pieces, and reading them back stalls as
/// described at [`text`]. Here both are one bitwise copy (3 × 8 bytes), a shared string's count
/// raised first. Decoding a share of `bench match`'s events took 205 ns per event with its names
/// cloned by `SmolStr::clone`, 172 with this.
#[inline(always)]
pub(crate) fn copy_text(text: &SmolStr) -> SmolStr {
    if text.is_heap_allocated() {
        // The clone's count is the copy's to give back when it drops.
        std::mem::forget(text.clone());
    }
    // SAFETY: a `SmolStr` that is not heap-allocated owns nothing (its bytes are inline, or a
    // `&'static str`), so a bitwise copy is a clone — `SmolStr::clone` makes it this way too. A
    // heap-allocated one is an `Arc<str>` whose count was raised above for this copy, as
    // `Arc::clone` would, and its clone is the same pointer.
    unsafe { std::ptr::read(text) }
}

/// A text of up to 16 bytes as integers: its bytes big-endian, zero-padded to 16, and its length.
/// Two keys compare as their texts do (byte by byte, a prefix first: a zero byte pads, and the
/// length decides between texts equal up to it) and are equal exactly when the texts are,
/// without a call to `memcmp`, which costs more than comparing a few bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct TextKey {
    bits: u128,
    len: u8,
}

impl TextKey {
    /// The key of `text`; `None` past 16 bytes.
    #[inline]
    pub(crate) fn of(text: &str) -> Option<TextKey> {
        let bytes = text.as_bytes();
        let len = bytes.len();
        // The first eight (or four) bytes and the last eight (or four), overlapping, cover the
        // text; the last word's bytes past the first word are shifted up to follow it. Fewer
        // than four bytes are gathered one by one.
        let high = match (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) {
            _ if len > 16 => return None,
            (Some(head), Some(tail)) => {
                let rest = u64::from_be_bytes(*tail)
                    .checked_shl(8 * (16 - len) as u32)
                    .unwrap_or(0);
                return Some(TextKey {
                    bits: (u128::from(u64::from_be_bytes(*head)) << 64) | u128::from(rest),
                    len: len as u8,
                });
            }
            _ => match (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
                (Some(head), Some(tail)) => {
                    let rest = u32::from_be_bytes(*tail)
                        .checked_shl(8 * (8 - len) as u32)
                        .unwrap_or(0);
                    (u64::from(u32::from_be_bytes(*head)) << 32) | u64::from(rest)
                }
                _ => bytes
                    .iter()
                    .fold(0u64, |bits, byte| (bits << 8) | u64::from(*byte))
                    .checked_shl(8 * (8 - len) as u32)
                    .unwrap_or(0),
            },
        };
        Some(TextKey {
            bits: u128::from(high) << 64,
            len: len as u8,
        })
    }
}

/// Whether `a` sorts before `b`, as `a < b` does, without `memcmp` for short texts.
#[inline]
pub(crate) fn text_lt(a: &str, b: &str) -> bool {
    match (TextKey::of(a), TextKey::of(b)) {
        (Some(a), Some(b)) => a < b,
        _ => a < b,
    }
}

/// The longest text a [`SmolStr`] holds inline.
pub(crate) const INLINE_TEXT: usize = 23;

/// A [`SmolStr`] read as [`text`] makes it (an attribute's name).
struct Name(SmolStr);

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Name, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Name;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, s: &str) -> Result<Name, E> {
                Ok(Name(text(s)))
            }
        }
        deserializer.deserialize_str(Text)
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
    /// JSON array (nested objects are kept as their JSON text). Boxed as a slice, not a vector:
    /// two words instead of three, which keeps every value — and every attribute of an event
    /// (name and value, 48 bytes) — a word smaller; lists are rare and never grow.
    List(Box<[AttrValue]>),
}

// A value is three words and an attribute (name and value) six; see `AttrValue::List`.
const _: () = assert!(std::mem::size_of::<AttrValue>() == 24);
const _: () = assert!(std::mem::size_of::<(SmolStr, AttrValue)>() == 48);

/// The attributes of an event, by name: kept sorted by name in one vector. An event carries a
/// handful, so this is one allocation, read front to back, where a map is a tree of nodes; it
/// serializes as a JSON object, and a name given twice keeps its last value, as a map would.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Attrs(Vec<(SmolStr, AttrValue)>);

impl Attrs {
    /// No attributes.
    pub fn new() -> Attrs {
        Attrs(Vec::new())
    }

    /// How many attributes there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(key, _)| key.as_str().cmp(name))
    }

    /// The value of attribute `name`.
    pub fn get(&self, name: &str) -> Option<&AttrValue> {
        self.position(name).ok().map(|at| &self.0[at].1)
    }

    /// Whether the event has attribute `name`.
    pub fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    /// Sets attribute `name`; returns its previous value.
    pub fn insert(&mut self, name: SmolStr, value: AttrValue) -> Option<AttrValue> {
        match self.position(&name) {
            Ok(at) => Some(std::mem::replace(&mut self.0[at].1, value)),
            Err(at) => {
                self.0.insert(at, (name, value));
                None
            }
        }
    }

    /// The attributes in name order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&SmolStr, &AttrValue)> {
        self.into_iter()
    }

    /// The attributes of `pairs`, which are usually in name order already (as [`Attrs`] writes
    /// them): then they are taken as they are, else sorted as [`Attrs::from_iter`] does.
    pub(crate) fn from_pairs(pairs: Vec<(SmolStr, AttrValue)>) -> Attrs {
        if pairs.windows(2).all(|w| text_lt(&w[0].0, &w[1].0)) {
            Attrs(pairs)
        } else {
            pairs.into_iter().collect()
        }
    }

    /// Asks the CPU to start loading the attributes into cache; a hint with no effect on
    /// behaviour.
    pub(crate) fn prefetch(&self) {
        // Every line of the names and values, up to eight (a typical event's eight attributes
        // take 384 bytes, 48 each: six or seven lines).
        crate::prefetch_slice(&self.0, 8 * 64);
    }
}

impl FromIterator<(SmolStr, AttrValue)> for Attrs {
    fn from_iter<I: IntoIterator<Item = (SmolStr, AttrValue)>>(iter: I) -> Attrs {
        let mut pairs: Vec<(SmolStr, AttrValue)> = iter.into_iter().collect();
        // Stable, so of a name given twice the last one is last; keep that one.
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(SmolStr, AttrValue)> = Vec::with_capacity(pairs.len());
        for pair in pairs {
            match out.last_mut() {
                Some(last) if last.0 == pair.0 => *last = pair,
                _ => out.push(pair),
            }
        }
        Attrs(out)
    }
}

impl<'a> IntoIterator for &'a Attrs {
    type Item = (&'a SmolStr, &'a AttrValue);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (SmolStr, AttrValue)>,
        fn(&'a (SmolStr, AttrValue)) -> (&'a SmolStr, &'a AttrValue),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(key, value)| (key, value))
    }
}

impl Serialize for Attrs {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Attrs {
    /// Read straight into the vector: what [`Attrs`] wrote is already in name order, so the
    /// common case sorts nothing.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Attrs, D::Error> {
        struct Pairs;
        impl<'de> serde::de::Visitor<'de> for Pairs {
            type Value = Attrs;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of attribute names to values")
            }

            /// Straight into the vector (in name order already, as written, the common case sorts
            /// nothing); a map that does not say its size (JSON text) gets room for the handful an
            /// event carries.
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Attrs, A::Error> {
                let mut pairs: Vec<(SmolStr, AttrValue)> =
                    Vec::with_capacity(map.size_hint().unwrap_or(8).min(64));
                while let Some((Name(name), value)) = map.next_entry::<Name, AttrValue>()? {
                    pairs.push((name, value));
                }
                Ok(Attrs::from_pairs(pairs))
            }
        }
        deserializer.deserialize_map(Pairs)
    }
}

impl AttrValue {
    /// Converts a JSON value; objects nested inside attributes are kept as their JSON text.
    pub fn from_json(value: &serde_json::Value) -> AttrValue {
        use serde_json::Value;
        match value {
            Value::Null => AttrValue::Null,
            Value::Bool(b) => AttrValue::Bool(*b),
            Value::Number(n) => AttrValue::Num(Num(n.as_f64().unwrap_or(f64::NAN))),
            Value::String(s) => AttrValue::Str(text(s)),
            Value::Array(items) => {
                AttrValue::List(items.iter().map(AttrValue::from_json).collect())
            }
            Value::Object(_) => AttrValue::Str(value.to_string().into()),
        }
    }

    /// Converts back to JSON, for templates and payloads; see [`AttrValue::json`].
    pub fn to_json(&self) -> serde_json::Value {
        // Infallible: no map keys and nothing is written anywhere.
        serde_json::to_value(self.json()).unwrap_or_default()
    }

    /// The value as the JSON it came from, ready to serialize. Whole numbers go back out as
    /// integers (`250000` must not come back as `250000.0`); numbers JSON cannot hold (NaN,
    /// infinities) as `null`.
    pub fn json(&self) -> AttrJson<'_> {
        AttrJson(self)
    }

    /// The numeric value, if this is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            AttrValue::Num(n) => Some(n.0),
            _ => None,
        }
    }
}

/// An [`AttrValue`] read straight from JSON text, as [`AttrValue::from_json`] converts it, without
/// a JSON tree in between (event documents are read this way, see
/// [`crate::event::EventFields`]).
pub(crate) struct JsonAttr(pub(crate) AttrValue);

/// Reads one JSON value as an [`AttrValue`].
struct Json;

impl<'de> serde::de::Visitor<'de> for Json {
    type Value = JsonAttr;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<JsonAttr, E> {
        Ok(JsonAttr(AttrValue::Null))
    }

    fn visit_none<E>(self) -> Result<JsonAttr, E> {
        Ok(JsonAttr(AttrValue::Null))
    }

    fn visit_bool<E>(self, b: bool) -> Result<JsonAttr, E> {
        Ok(JsonAttr(AttrValue::Bool(b)))
    }

    // As `serde_json::Number::as_f64` converts.
    fn visit_i64<E>(self, n: i64) -> Result<JsonAttr, E> {
        Ok(JsonAttr(AttrValue::Num(Num(n as f64))))
    }

    fn visit_u64<E>(self, n: u64) -> Result<JsonAttr, E> {
        Ok(JsonAttr(AttrValue::Num(Num(n as f64))))
    }

    fn visit_f64<E>(self, n: f64) -> Result<JsonAttr, E> {
        Ok(JsonAttr(AttrValue::Num(Num(n))))
    }

    fn visit_str<E>(self, s: &str) -> Result<JsonAttr, E> {
        Ok(JsonAttr(AttrValue::Str(text(s))))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<JsonAttr, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(JsonAttr(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(JsonAttr(AttrValue::List(items.into_boxed_slice())))
    }

    /// A nested object is kept as its JSON text, keys sorted, as the tree prints it.
    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<JsonAttr, A::Error> {
        let object =
            serde_json::Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(JsonAttr(AttrValue::Str(object.to_string().into())))
    }
}

impl<'de> Deserialize<'de> for JsonAttr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<JsonAttr, D::Error> {
        deserializer.deserialize_any(Json)
    }
}

/// The attributes of a JSON object read straight from its text: each value as
/// [`AttrValue::from_json`] converts it, a name given twice keeping its last value.
///
/// Each attribute is pushed by the visitor that reads its value, and a short name with a short
/// text value on a path of its own: a name and value returned from the reader's calls, merged
/// from every kind's path, would reach the vector through the stack in pieces (see [`text`]).
pub(crate) fn attrs_from_json_map<'de, A: serde::de::MapAccess<'de>>(
    mut map: A,
) -> Result<Attrs, A::Error> {
    let mut pairs: Vec<(SmolStr, AttrValue)> = Vec::with_capacity(8);
    while let Some(name) = map.next_key::<NameText<'de>>()? {
        let name = match &name {
            NameText::Borrowed(name) => name,
            NameText::Owned(name) => name.as_str(),
        };
        map.next_value_seed(PushAttr {
            pairs: &mut pairs,
            name,
        })?;
    }
    Ok(Attrs::from_pairs(pairs))
}

/// An attribute's name as the JSON text has it: borrowed unless it had escapes.
enum NameText<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl<'de> Deserialize<'de> for NameText<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<NameText<'de>, D::Error> {
        struct Text;
        impl<'de> serde::de::Visitor<'de> for Text {
            type Value = NameText<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<NameText<'de>, E> {
                Ok(NameText::Borrowed(s))
            }
            fn visit_str<E>(self, s: &str) -> Result<NameText<'de>, E> {
                Ok(NameText::Owned(s.to_owned()))
            }
        }
        deserializer.deserialize_str(Text)
    }
}

/// Reads an attribute's value and pushes it, named, onto `pairs`.
struct PushAttr<'p, 'n> {
    pairs: &'p mut Vec<(SmolStr, AttrValue)>,
    name: &'n str,
}

impl PushAttr<'_, '_> {
    /// Pushes what [`Json`] read, the one place JSON values become attribute values.
    fn push<E>(self, read: Result<JsonAttr, E>) -> Result<(), E> {
        let JsonAttr(value) = read?;
        self.pairs.push((text(self.name), value));
        Ok(())
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for PushAttr<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for PushAttr<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.push(Json.visit_unit())
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.push(Json.visit_none())
    }

    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<(), E> {
        self.push(Json.visit_bool(b))
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<(), E> {
        self.push(Json.visit_i64(n))
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<(), E> {
        self.push(Json.visit_u64(n))
    }

    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<(), E> {
        self.push(Json.visit_f64(n))
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<(), E> {
        if self.name.len() > INLINE_TEXT || s.len() > INLINE_TEXT {
            return self.push(Json.visit_str(s));
        }
        let value = AttrValue::Str(text(s));
        self.pairs.push((text(self.name), value));
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        self.push(Json.visit_seq(seq))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.push(Json.visit_map(map))
    }
}

/// An [`AttrValue`] seen as JSON; see [`AttrValue::json`].
#[derive(Clone, Copy, Debug)]
pub struct AttrJson<'a>(&'a AttrValue);

impl Serialize for AttrJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            AttrValue::Null => serializer.serialize_unit(),
            AttrValue::Bool(b) => serializer.serialize_bool(*b),
            AttrValue::Num(n) if n.0.fract() == 0.0 && n.0.abs() <= MAX_EXACT_INTEGER => {
                serializer.serialize_i64(n.0 as i64)
            }
            AttrValue::Num(n) if n.0.is_finite() => serializer.serialize_f64(n.0),
            AttrValue::Num(_) => serializer.serialize_unit(),
            AttrValue::Str(s) => serializer.serialize_str(s),
            AttrValue::List(items) => serializer.collect_seq(items.iter().map(AttrValue::json)),
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
    use std::collections::BTreeMap;

    use super::*;
    use serde_json::json;

    #[test]
    fn attrs_stay_sorted_and_a_repeated_name_keeps_its_last_value() {
        let num = |x: f64| AttrValue::Num(Num(x));
        let mut attrs: Attrs = [
            ("b".into(), num(1.0)),
            ("a".into(), num(2.0)),
            ("b".into(), num(3.0)),
        ]
        .into_iter()
        .collect();
        assert_eq!(attrs.len(), 2);
        assert_eq!(attrs.get("b"), Some(&num(3.0)));
        assert_eq!(attrs.insert("c".into(), num(4.0)), None);
        assert_eq!(attrs.insert("a".into(), num(5.0)), Some(num(2.0)));
        assert!(attrs.contains_key("c") && !attrs.contains_key("d"));
        let names: Vec<&str> = attrs.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        // Serialized as the map it stands for.
        let text = serde_json::to_string(&attrs).unwrap();
        let map: BTreeMap<SmolStr, AttrValue> =
            attrs.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(text, serde_json::to_string(&map).unwrap());
        assert!(text.starts_with(r#"{"a":"#), "{text}");
        assert_eq!(serde_json::from_str::<Attrs>(&text).unwrap(), attrs);
        // Read back out of order, or with a name twice (the last value counts), as a map is.
        let v = |x: f64| serde_json::to_string(&num(x)).unwrap();
        let shuffled = format!(
            r#"{{"c": {}, "a": {}, "b": {}, "a": {}}}"#,
            v(4.0),
            v(1.0),
            v(3.0),
            v(5.0)
        );
        let read: Attrs = serde_json::from_str(&shuffled).unwrap();
        assert_eq!(read, attrs);
        // And through the binary encoding the exchange between processes uses.
        let bytes = bincode::serialize(&attrs).unwrap();
        assert_eq!(bincode::deserialize::<Attrs>(&bytes).unwrap(), attrs);
    }

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

    /// Short texts' keys order and equal exactly as the texts do, and `text_lt` is `<` for
    /// texts of any length: texts of 0–20 bytes differing at each place, with zero bytes, the
    /// highest ASCII byte and two- and four-byte characters.
    #[test]
    fn text_keys_order_as_their_texts() {
        let mut texts = Vec::new();
        for len in 0..=20 {
            texts.push("a".repeat(len));
            for at in 0..len {
                for other in ["b", "\0", "\x7f", "`"] {
                    texts.push(format!(
                        "{}{other}{}",
                        "a".repeat(at),
                        "a".repeat(len - at - 1)
                    ));
                }
            }
            if len >= 2 {
                texts.push(format!("{}é", "a".repeat(len - 2)));
            }
            if len >= 4 {
                texts.push(format!("{}\u{10FFFF}", "a".repeat(len - 4)));
            }
        }
        for a in &texts {
            let key = TextKey::of(a);
            assert_eq!(key.is_some(), a.len() <= 16, "{a:?}");
            for b in &texts {
                assert_eq!(text_lt(a, b), a < b, "{a:?} < {b:?}");
                if let (Some(x), Some(y)) = (key, TextKey::of(b)) {
                    assert_eq!(x.cmp(&y), a.cmp(b), "{a:?} against {b:?}");
                }
            }
        }
    }

    /// Copies of inline, shared and static texts read back right after their originals
    /// dropped and their memory was taken again.
    #[test]
    fn copied_texts_outlive_their_originals() {
        for original in [
            "",
            "naver",
            "x".repeat(23).as_str(),
            "y".repeat(24).as_str(),
            "값".repeat(40).as_str(),
        ] {
            let text = SmolStr::new(original);
            let copy = copy_text(&text);
            let copy_of_copy = copy_text(&copy);
            // Strings made after a drop take the memory it freed, if it freed any.
            let overwrite = || -> Vec<SmolStr> {
                (0..4)
                    .map(|_| SmolStr::new("z".repeat(original.len())))
                    .collect()
            };
            drop(text);
            let _reused = overwrite();
            assert_eq!(copy, original);
            drop(copy);
            let _reused = overwrite();
            assert_eq!(copy_of_copy, original);
        }
        let statics = SmolStr::new_static("a static name");
        assert_eq!(copy_text(&statics), statics);
    }

    /// Texts made inline and on the heap read back the same, whatever their length, escapes
    /// or script, as names and as values of a JSON object.
    #[test]
    fn texts_of_every_length_read_back_exactly() {
        let texts: Vec<String> = (0..40)
            .map(|n| "é".repeat(n / 2) + &"x".repeat(n % 2))
            .chain(["tab\tand \"quote\"".to_string()])
            .collect();
        for t in &texts {
            assert_eq!(text(t), SmolStr::new(t), "{t:?}");
            assert_eq!(text(t).as_str(), t);
            assert_eq!(text(t).is_heap_allocated(), t.len() > INLINE_TEXT, "{t:?}");
        }
        let attrs: serde_json::Map<String, serde_json::Value> = texts
            .iter()
            .map(|t| (format!("name-{t}"), json!(t)))
            .collect();
        let document =
            json!({"id": "e1", "type": "order", "ts": 1_764_028_800_000_i64, "attrs": attrs});
        let from_tree = crate::Event::from_json(&document, "shop").unwrap();
        let fields: crate::EventFields = serde_json::from_str(&document.to_string()).unwrap();
        let from_text = fields.into_event("shop").unwrap();
        assert_eq!(from_tree, from_text);
        assert_eq!(from_text.attrs.len(), texts.len());
        for t in &texts {
            assert_eq!(
                from_text.attrs.get(&format!("name-{t}")),
                Some(&AttrValue::Str(SmolStr::new(t))),
                "{t:?}"
            );
        }
    }
}
