//! An audience definition: its JSON form, its checks, and the compiled form the dataflow runs.
//!
//! ```json
//! {"name": "Lapsed repeat buyers",
//!  "where": {"and": [
//!     {"contact": {"attr": "country", "op": "=", "value": "KR"}},
//!     {"event": "order", "in_last_days": 90, "measure": "count", "op": ">=", "value": 2},
//!     {"not": {"event": "order", "in_last_days": 14, "op": ">=", "value": 1}}]}}
//! ```
//!
//! A condition is `and` / `or` / `not` of conditions, a **contact condition** (a predicate, in
//! the rules' predicate language, over the contact's fields: `id`, `email`, `locale`,
//! `time_zone`, `consent.<channel>` and its attributes by name), or a **behavioural condition**
//! over the contact's events of one type in the last N days (event time in `(now − N days,
//! now]`), optionally filtered by a predicate over the event's attributes:
//! - `"measure": "count"` (the default): how many such events, compared with `value`;
//! - `"measure": "sum", "attr": "amount"`: the sum of a numeric attribute (events without it
//!   count zero);
//! - `"measure": "last_seen"`: how many days ago the latest such event was; `value` is days, and
//!   only `<`, `<=`, `>`, `>=` apply. It is rewritten into counts over two windows: "last seen
//!   more than 14 days ago (within 90)" is "at least one in the last 90 days and none in the
//!   last 14".
//!
//! Compiled, a definition is a list of contact predicates (evaluated into a bit mask per contact),
//! a list of event atoms (type, filter, window, summed attribute) whose per-contact counts and sums
//! the dataflow maintains, and a [`Formula`] over both.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::event::json_kind;
use crate::predicate::{CmpOp, Predicate};
use crate::value::{AttrValue, Attrs, SmolStr};

/// The attribute of an event that names the contact it belongs to.
pub const CONTACT_ATTR: &str = "customer_id";

/// Most contact conditions one audience may hold (they become one bit each).
pub const MAX_CONTACT_CONDITIONS: usize = 64;
/// Most behavioural conditions one audience may hold, after `last_seen` is rewritten.
pub const MAX_EVENT_ATOMS: usize = 64;
/// Deepest nesting of `and` / `or` / `not`.
const MAX_DEPTH: usize = 16;
/// One day, ms.
pub const DAY_MS: i64 = 86_400_000;

/// The contact fields a contact condition may name besides the contact's own attributes.
pub const CONTACT_FIELDS: [&str; 4] = ["id", "email", "locale", "time_zone"];
/// The prefix of the per-channel consent fields (`consent.email`).
pub const CONSENT_PREFIX: &str = "consent.";

/// What was wrong with a definition: where and what.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct AudienceError {
    /// The JSON path, e.g. `where.and[1].in_last_days`.
    pub path: String,
    /// What was wrong.
    pub problem: String,
}

fn err(path: &str, problem: impl Into<String>) -> AudienceError {
    AudienceError {
        path: path.to_string(),
        problem: problem.into(),
    }
}

/// An event atom: the contact's events of one type, filtered, in a window; the dataflow keeps
/// their count and the sum of one attribute per contact.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventAtom {
    /// Event type.
    pub event_type: SmolStr,
    /// Which events of the type count.
    pub filter: Option<Predicate>,
    /// The window, ms: an event counts while `now - window < ts <= now`.
    pub window_ms: i64,
    /// The attribute summed, for `sum`.
    pub sum_attr: Option<SmolStr>,
}

impl EventAtom {
    /// What this event adds to the atom's sum (0 without a summed attribute or a number).
    pub fn value_of(&self, attrs: &Attrs) -> f64 {
        self.sum_attr
            .as_ref()
            .and_then(|a| attrs.get(a))
            .and_then(AttrValue::as_f64)
            .unwrap_or(0.0)
    }
}

/// Which aggregate of an atom a condition compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Measure {
    /// How many events.
    Count,
    /// The sum of the summed attribute.
    Sum,
}

/// The boolean formula over an audience's conditions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Formula {
    /// All hold.
    And(Vec<Formula>),
    /// Any holds.
    Or(Vec<Formula>),
    /// Does not hold.
    Not(Box<Formula>),
    /// Contact condition number `n` (a bit of the contact's mask).
    Contact(u8),
    /// An aggregate of event atom number `atom` compared with `value`.
    Event {
        /// The atom.
        atom: u8,
        /// Count or sum.
        measure: Measure,
        /// Comparison.
        op: CmpOp,
        /// Right-hand side.
        value: f64,
    },
}

impl Formula {
    /// Evaluates the formula for one contact: its contact-condition mask, and per atom its
    /// event count and sum (missing atoms are zero).
    pub fn eval(&self, mask: u64, counts: &[i64], sums: &[f64]) -> bool {
        match self {
            Formula::And(items) => items.iter().all(|f| f.eval(mask, counts, sums)),
            Formula::Or(items) => items.iter().any(|f| f.eval(mask, counts, sums)),
            Formula::Not(inner) => !inner.eval(mask, counts, sums),
            Formula::Contact(bit) => mask & (1u64 << bit) != 0,
            Formula::Event {
                atom,
                measure,
                op,
                value,
            } => {
                let i = usize::from(*atom);
                let actual = match measure {
                    Measure::Count => counts.get(i).copied().unwrap_or(0) as f64,
                    Measure::Sum => sums.get(i).copied().unwrap_or(0.0),
                };
                op.test_f64(actual, *value)
            }
        }
    }
}

/// A checked, compiled audience.
#[derive(Clone, Debug, PartialEq)]
pub struct Audience {
    /// Tenant.
    pub tenant: SmolStr,
    /// Audience id.
    pub id: SmolStr,
    /// Display name.
    pub name: String,
    /// Contact conditions, bit `i` of a contact's mask being condition `i`.
    pub contact_conditions: Vec<Predicate>,
    /// Event atoms.
    pub atoms: Vec<EventAtom>,
    /// The formula.
    pub formula: Formula,
}

impl Audience {
    /// Checks and compiles a definition. `max_window_days` is the longest window the
    /// deployment keeps events for.
    pub fn compile(
        tenant: &str,
        id: &str,
        spec: &serde_json::Value,
        max_window_days: u32,
    ) -> Result<Audience, AudienceError> {
        let obj = spec.as_object().ok_or_else(|| {
            err(
                "audience",
                format!("must be an object, got {}", json_kind(spec)),
            )
        })?;
        for key in obj.keys() {
            if !matches!(key.as_str(), "id" | "name" | "where") {
                return Err(err(key, "unknown field; expected id, name, where"));
            }
        }
        let name = match obj.get("name") {
            None => id.to_string(),
            Some(serde_json::Value::String(n)) if !n.trim().is_empty() && n.len() <= 200 => {
                n.clone()
            }
            Some(_) => {
                return Err(err(
                    "name",
                    "must be a non-empty string of at most 200 bytes",
                ));
            }
        };
        let condition = obj
            .get("where")
            .ok_or_else(|| err("where", "is required"))?;
        let mut compiler = Compiler {
            contact_conditions: Vec::new(),
            atoms: Vec::new(),
            max_window_ms: i64::from(max_window_days) * DAY_MS,
        };
        let formula = compiler.condition(condition, "where", 0)?;
        Ok(Audience {
            tenant: SmolStr::new(tenant),
            id: SmolStr::new(id),
            name,
            contact_conditions: compiler.contact_conditions,
            atoms: compiler.atoms,
            formula,
        })
    }

    /// The contact attributes the definition names (the built-in fields excluded).
    pub fn contact_attributes(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for p in &self.contact_conditions {
            predicate_attrs(p, &mut out);
        }
        out.retain(|a| !CONTACT_FIELDS.contains(&a.as_str()) && !a.starts_with(CONSENT_PREFIX));
        out
    }

    /// The event types the definition names.
    pub fn event_types(&self) -> BTreeSet<SmolStr> {
        self.atoms.iter().map(|a| a.event_type.clone()).collect()
    }

    /// The longest window, ms (0 without event conditions).
    pub fn longest_window_ms(&self) -> i64 {
        self.atoms.iter().map(|a| a.window_ms).max().unwrap_or(0)
    }
}

/// Every attribute a predicate names.
fn predicate_attrs(p: &Predicate, out: &mut BTreeSet<String>) {
    match p {
        Predicate::Cmp { attr, .. }
        | Predicate::In { attr, .. }
        | Predicate::Contains { attr, .. }
        | Predicate::Exists { attr } => {
            out.insert(attr.clone());
        }
        Predicate::And(items) | Predicate::Or(items) => {
            items.iter().for_each(|i| predicate_attrs(i, out));
        }
        Predicate::Not(inner) => predicate_attrs(inner, out),
    }
}

struct Compiler {
    contact_conditions: Vec<Predicate>,
    atoms: Vec<EventAtom>,
    max_window_ms: i64,
}

impl Compiler {
    fn condition(
        &mut self,
        value: &serde_json::Value,
        path: &str,
        depth: usize,
    ) -> Result<Formula, AudienceError> {
        if depth > MAX_DEPTH {
            return Err(err(path, format!("nested deeper than {MAX_DEPTH} levels")));
        }
        let obj = value.as_object().ok_or_else(|| {
            err(
                path,
                format!("must be a condition object, got {}", json_kind(value)),
            )
        })?;
        for combinator in ["and", "or"] {
            if let Some(items) = obj.get(combinator) {
                if obj.len() != 1 {
                    return Err(err(path, format!("'{combinator}' must be the only key")));
                }
                let items = items.as_array().ok_or_else(|| {
                    err(
                        &format!("{path}.{combinator}"),
                        "must be an array of conditions",
                    )
                })?;
                let parsed = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        self.condition(item, &format!("{path}.{combinator}[{i}]"), depth + 1)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(if combinator == "and" {
                    Formula::And(parsed)
                } else {
                    Formula::Or(parsed)
                });
            }
        }
        if let Some(inner) = obj.get("not") {
            if obj.len() != 1 {
                return Err(err(path, "'not' must be the only key"));
            }
            let inner = self.condition(inner, &format!("{path}.not"), depth + 1)?;
            return Ok(Formula::Not(Box::new(inner)));
        }
        if let Some(predicate) = obj.get("contact") {
            if obj.len() != 1 {
                return Err(err(path, "'contact' must be the only key"));
            }
            let predicate = Predicate::from_json(predicate, &format!("{path}.contact"))
                .map_err(|e| err(&e.path, e.problem))?;
            let mut names = BTreeSet::new();
            predicate_attrs(&predicate, &mut names);
            if let Some(bad) = names
                .iter()
                .find(|n| n.starts_with(CONSENT_PREFIX) && n.len() == CONSENT_PREFIX.len())
            {
                return Err(err(
                    &format!("{path}.contact"),
                    format!("'{bad}' names no channel"),
                ));
            }
            if self.contact_conditions.len() == MAX_CONTACT_CONDITIONS {
                return Err(err(
                    path,
                    format!(
                        "an audience holds at most {MAX_CONTACT_CONDITIONS} contact conditions"
                    ),
                ));
            }
            self.contact_conditions.push(predicate);
            return Ok(Formula::Contact((self.contact_conditions.len() - 1) as u8));
        }
        if obj.contains_key("event") {
            return self.event_condition(obj, path);
        }
        Err(err(path, "expected one of and, or, not, contact, event"))
    }

    fn event_condition(
        &mut self,
        obj: &serde_json::Map<String, serde_json::Value>,
        path: &str,
    ) -> Result<Formula, AudienceError> {
        for key in obj.keys() {
            if !matches!(
                key.as_str(),
                "event" | "filter" | "in_last_days" | "measure" | "attr" | "op" | "value"
            ) {
                return Err(err(
                    &format!("{path}.{key}"),
                    "unknown key; an event condition has event, filter, in_last_days, measure, attr, op, value",
                ));
            }
        }
        let event_type = match obj.get("event") {
            Some(serde_json::Value::String(t))
                if !t.is_empty() && t.len() <= crate::event::MAX_NAME_LEN =>
            {
                SmolStr::new(t)
            }
            _ => return Err(err(&format!("{path}.event"), "must be an event type name")),
        };
        let filter = match obj.get("filter") {
            None | Some(serde_json::Value::Null) => None,
            Some(f) => Some(
                Predicate::from_json(f, &format!("{path}.filter"))
                    .map_err(|e| err(&e.path, e.problem))?,
            ),
        };
        let days = match obj.get("in_last_days") {
            Some(v) => v.as_u64().filter(|d| *d >= 1).ok_or_else(|| {
                err(
                    &format!("{path}.in_last_days"),
                    "must be a whole number of days, at least 1",
                )
            })?,
            None => return Err(err(&format!("{path}.in_last_days"), "is required")),
        };
        let window_ms = i64::try_from(days)
            .unwrap_or(i64::MAX)
            .saturating_mul(DAY_MS);
        if window_ms > self.max_window_ms {
            return Err(err(
                &format!("{path}.in_last_days"),
                format!(
                    "{days} days is longer than the {} days events are kept for audiences",
                    self.max_window_ms / DAY_MS
                ),
            ));
        }
        let op_text = match obj.get("op") {
            Some(serde_json::Value::String(op)) => op.as_str(),
            Some(_) => return Err(err(&format!("{path}.op"), "must be a string")),
            None => return Err(err(&format!("{path}.op"), "is required")),
        };
        let op = CmpOp::parse(op_text).ok_or_else(|| {
            err(
                &format!("{path}.op"),
                format!("unknown operator '{op_text}'; expected one of = != < <= > >="),
            )
        })?;
        let value = obj
            .get("value")
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| err(&format!("{path}.value"), "must be a number"))?;
        let measure = match obj.get("measure") {
            None => "count",
            Some(serde_json::Value::String(m)) => m.as_str(),
            Some(_) => return Err(err(&format!("{path}.measure"), "must be a string")),
        };
        let attr = match obj.get("attr") {
            None => None,
            Some(serde_json::Value::String(a)) if !a.is_empty() => Some(SmolStr::new(a)),
            Some(_) => return Err(err(&format!("{path}.attr"), "must be an attribute name")),
        };
        if attr.is_some() && measure != "sum" {
            return Err(err(
                &format!("{path}.attr"),
                "only a 'sum' names an attribute",
            ));
        }
        match measure {
            "count" => {
                let atom = self.atom(event_type, filter, window_ms, None, path)?;
                Ok(Formula::Event {
                    atom,
                    measure: Measure::Count,
                    op,
                    value,
                })
            }
            "sum" => {
                let Some(attr) = attr else {
                    return Err(err(
                        &format!("{path}.attr"),
                        "a 'sum' needs the attribute to sum",
                    ));
                };
                let atom = self.atom(event_type, filter, window_ms, Some(attr), path)?;
                Ok(Formula::Event {
                    atom,
                    measure: Measure::Sum,
                    op,
                    value,
                })
            }
            "last_seen" => self.last_seen(event_type, filter, window_ms, op, value, path),
            other => Err(err(
                &format!("{path}.measure"),
                format!("unknown measure '{other}'; expected count, sum or last_seen"),
            )),
        }
    }

    /// `last_seen op days` within the window, as counts over two windows.
    fn last_seen(
        &mut self,
        event_type: SmolStr,
        filter: Option<Predicate>,
        window_ms: i64,
        op: CmpOp,
        days: f64,
        path: &str,
    ) -> Result<Formula, AudienceError> {
        if !(days >= 0.0 && days.fract() == 0.0) {
            return Err(err(
                &format!("{path}.value"),
                "'last_seen' compares with a whole number of days",
            ));
        }
        // Age is `now - ts` of the latest event. "Age < d" (or <= d) is "at least one event in
        // (now - d, now]"; "age > d" (or >= d) is "none there" — the boundary instant aside, which
        // millisecond event times make immaterial.
        let recent = match op {
            CmpOp::Lt | CmpOp::Le => true,
            CmpOp::Gt | CmpOp::Ge => false,
            CmpOp::Eq | CmpOp::Ne => {
                return Err(err(
                    &format!("{path}.op"),
                    "'last_seen' takes <, <=, > or >= a number of days",
                ));
            }
        };
        let recent_days = days;
        let recent_ms = (recent_days as i64).saturating_mul(DAY_MS).min(window_ms);
        let seen = |atom| Formula::Event {
            atom,
            measure: Measure::Count,
            op: CmpOp::Ge,
            value: 1.0,
        };
        if recent {
            if recent_ms == 0 {
                return Ok(Formula::Or(Vec::new()));
            }
            let atom = self.atom(event_type, filter, recent_ms, None, path)?;
            return Ok(seen(atom));
        }
        let ever = self.atom(event_type.clone(), filter.clone(), window_ms, None, path)?;
        if recent_ms == 0 {
            return Ok(seen(ever));
        }
        let lately = self.atom(event_type, filter, recent_ms, None, path)?;
        Ok(Formula::And(vec![
            seen(ever),
            Formula::Not(Box::new(seen(lately))),
        ]))
    }

    /// The index of an atom, shared when the same atom is named twice.
    fn atom(
        &mut self,
        event_type: SmolStr,
        filter: Option<Predicate>,
        window_ms: i64,
        sum_attr: Option<SmolStr>,
        path: &str,
    ) -> Result<u8, AudienceError> {
        let atom = EventAtom {
            event_type,
            filter,
            window_ms,
            sum_attr,
        };
        if let Some(i) = self.atoms.iter().position(|a| *a == atom) {
            return Ok(i as u8);
        }
        if self.atoms.len() == MAX_EVENT_ATOMS {
            return Err(err(
                path,
                format!("an audience holds at most {MAX_EVENT_ATOMS} event conditions"),
            ));
        }
        self.atoms.push(atom);
        Ok((self.atoms.len() - 1) as u8)
    }
}

/// A contact as audiences see it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    /// Email address.
    pub email: Option<String>,
    /// Locale, e.g. `ko-KR`.
    pub locale: Option<String>,
    /// IANA time zone, e.g. `Asia/Seoul`.
    pub time_zone: Option<String>,
    /// Consent per channel (`email`, `sms`, `push`, …).
    pub consent: std::collections::BTreeMap<String, bool>,
    /// Free attributes.
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

impl Contact {
    /// The fields contact conditions read: `id`, `email`, `locale`, `time_zone`,
    /// `consent.<channel>` and the attributes by name.
    pub fn view(&self, id: &str) -> Attrs {
        let mut attrs: Attrs = self
            .attributes
            .iter()
            .map(|(k, v)| (SmolStr::new(k), AttrValue::from_json(v)))
            .collect();
        attrs.insert(SmolStr::new("id"), AttrValue::Str(SmolStr::new(id)));
        for (name, value) in [
            ("email", &self.email),
            ("locale", &self.locale),
            ("time_zone", &self.time_zone),
        ] {
            if let Some(v) = value {
                attrs.insert(SmolStr::new(name), AttrValue::Str(SmolStr::new(v)));
            }
        }
        for (channel, given) in &self.consent {
            attrs.insert(
                SmolStr::new(format!("{CONSENT_PREFIX}{channel}")),
                AttrValue::Bool(*given),
            );
        }
        attrs
    }

    /// The reason an attribute name is refused (it would shadow a built-in field), if any.
    pub fn reserved_attribute(name: &str) -> Option<String> {
        if CONTACT_FIELDS.contains(&name) || name.starts_with(CONSENT_PREFIX) {
            Some(format!(
                "'{name}' is a contact field of its own; attributes may not be named id, email, locale, time_zone or consent.*"
            ))
        } else {
            None
        }
    }
}

/// Bit mask of the contact conditions a contact's view satisfies.
pub fn contact_mask(conditions: &[Predicate], view: &Attrs) -> u64 {
    conditions
        .iter()
        .enumerate()
        .filter(|(_, p)| p.eval(view))
        .fold(0, |mask, (i, _)| mask | 1u64 << i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(spec: serde_json::Value) -> Result<Audience, AudienceError> {
        Audience::compile("t1", "a1", &spec, 365)
    }

    #[test]
    fn compiles_conditions_into_bits_atoms_and_a_formula() {
        let a = compile(json!({"where": {"and": [
            {"contact": {"attr": "country", "op": "=", "value": "KR"}},
            {"event": "order", "in_last_days": 90, "op": ">=", "value": 2},
            {"not": {"event": "order", "in_last_days": 14, "op": ">=", "value": 1}},
            {"event": "order", "in_last_days": 90, "measure": "sum", "attr": "amount", "op": ">", "value": 100}
        ]}}))
        .unwrap();
        assert_eq!(a.contact_conditions.len(), 1);
        assert_eq!(a.atoms.len(), 3);
        assert_eq!(a.atoms[0].window_ms, 90 * DAY_MS);
        assert_eq!(a.atoms[2].sum_attr.as_deref(), Some("amount"));
        // KR, two orders in 90 days, none in 14, sum 150.
        assert!(a.formula.eval(1, &[2, 0, 2], &[0.0, 0.0, 150.0]));
        assert!(!a.formula.eval(1, &[2, 1, 2], &[0.0, 0.0, 150.0]));
        assert!(!a.formula.eval(0, &[2, 0, 2], &[0.0, 0.0, 150.0]));
        assert_eq!(
            a.contact_attributes().into_iter().collect::<Vec<_>>(),
            ["country"]
        );
        assert_eq!(a.event_types().len(), 1);
    }

    #[test]
    fn last_seen_becomes_counts_over_two_windows() {
        let a = compile(json!({"where": {"event": "visit", "in_last_days": 90,
            "measure": "last_seen", "op": ">", "value": 14}}))
        .unwrap();
        assert_eq!(a.atoms.len(), 2);
        assert_eq!(a.atoms[1].window_ms, 14 * DAY_MS);
        assert!(a.formula.eval(0, &[1, 0], &[]));
        assert!(!a.formula.eval(0, &[1, 1], &[]));
        assert!(!a.formula.eval(0, &[0, 0], &[]));
        let recent = compile(json!({"where": {"event": "visit", "in_last_days": 90,
            "measure": "last_seen", "op": "<", "value": 7}}))
        .unwrap();
        assert_eq!(recent.atoms[0].window_ms, 7 * DAY_MS);
    }

    #[test]
    fn bad_definitions_name_the_place_and_the_problem() {
        let cases = [
            (
                json!({"where": {"event": "order", "op": ">=", "value": 1}}),
                "where.in_last_days",
            ),
            (
                json!({"where": {"event": "order", "in_last_days": 400, "op": ">=", "value": 1}}),
                "where.in_last_days",
            ),
            (
                json!({"where": {"and": [{"event": "order", "in_last_days": 3, "op": "~", "value": 1}]}}),
                "where.and[0].op",
            ),
            (
                json!({"where": {"event": "order", "in_last_days": 3, "measure": "sum", "op": ">", "value": 1}}),
                "where.attr",
            ),
            (
                json!({"where": {"contact": {"attr": "country", "op": "like", "value": "K"}}}),
                "where.contact.op",
            ),
            (json!({"where": {"bogus": 1}}), "where"),
            (json!({"whom": {}}), "whom"),
            (
                json!({"where": {"event": "v", "in_last_days": 3, "measure": "last_seen", "op": "=", "value": 1}}),
                "where.op",
            ),
        ];
        for (spec, path) in cases {
            let e = compile(spec.clone()).unwrap_err();
            assert_eq!(e.path, path, "{spec}: {e}");
        }
    }

    #[test]
    fn a_contact_view_holds_fields_consent_and_attributes() {
        let c = Contact {
            email: Some("a@example.com".into()),
            consent: [("email".to_string(), true)].into(),
            attributes: json!({"country": "KR", "vip": true})
                .as_object()
                .cloned()
                .unwrap(),
            ..Contact::default()
        };
        let view = c.view("c-1");
        let p = Predicate::from_json(
            &json!({"and": [{"attr": "consent.email", "op": "=", "value": true},
                            {"attr": "country", "op": "=", "value": "KR"},
                            {"attr": "id", "op": "=", "value": "c-1"}]}),
            "p",
        )
        .unwrap();
        assert_eq!(contact_mask(&[p], &view), 1);
        assert!(Contact::reserved_attribute("email").is_some());
        assert!(Contact::reserved_attribute("consent.sms").is_some());
        assert!(Contact::reserved_attribute("country").is_none());
    }
}
