//! Predicates over event attributes: `= != < <= > >= in contains exists`, combined with `and`,
//! `or`, `not`.
//!
//! JSON form: `{"attr": "amount", "op": ">=", "value": 1000000}`, `{"attr": "coupon", "op":
//! "exists"}`, `{"and": [..]}`, `{"or": [..]}`, `{"not": {..}}`.
//!
//! Semantics, chosen so that a missing attribute never makes an alert fire by accident:
//! - a comparison on a missing attribute is false, `!=` included; use `exists` / `not exists`;
//! - `< <= > >=` compare numbers with numbers and strings with strings; other pairs are false;
//! - `=`/`!=`/`in` compare numbers by value (`1` equals `1.0`), everything else exactly;
//! - `contains` is substring on strings and membership on lists.

use serde::{Deserialize, Serialize};

use crate::event::json_kind;
use crate::value::{AttrValue, Attrs};

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    /// Parses `= != < <= > >=` (also `==`).
    pub fn parse(text: &str) -> Option<CmpOp> {
        Some(match text {
            "=" | "==" => CmpOp::Eq,
            "!=" => CmpOp::Ne,
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            ">" => CmpOp::Gt,
            ">=" => CmpOp::Ge,
            _ => return None,
        })
    }

    /// The operator's symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    /// Applies the operator to two numbers.
    pub fn test_f64(self, left: f64, right: f64) -> bool {
        match self {
            CmpOp::Eq => left == right,
            CmpOp::Ne => left != right,
            CmpOp::Lt => left < right,
            CmpOp::Le => left <= right,
            CmpOp::Gt => left > right,
            CmpOp::Ge => left >= right,
        }
    }
}

/// A validated predicate.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Predicate {
    /// `attr op value`
    Cmp {
        /// Attribute name.
        attr: String,
        /// Operator.
        op: CmpOp,
        /// Right-hand side.
        value: AttrValue,
    },
    /// `attr in [values]`
    In {
        /// Attribute name.
        attr: String,
        /// Accepted values.
        values: Vec<AttrValue>,
    },
    /// `attr contains value`
    Contains {
        /// Attribute name.
        attr: String,
        /// Substring or list member.
        value: AttrValue,
    },
    /// `attr exists`
    Exists {
        /// Attribute name.
        attr: String,
    },
    /// All of these hold (true when empty).
    And(Vec<Predicate>),
    /// Any of these holds (false when empty).
    Or(Vec<Predicate>),
    /// This does not hold.
    Not(Box<Predicate>),
}

/// A predicate that could not be parsed: the JSON path and the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct PredicateError {
    /// Where in the predicate, e.g. `filter.and[1].op`.
    pub path: String,
    /// What was wrong.
    pub problem: String,
}

fn err(path: &str, problem: impl Into<String>) -> PredicateError {
    PredicateError {
        path: path.to_string(),
        problem: problem.into(),
    }
}

/// Deepest nesting accepted, so a hostile rule cannot exhaust the stack.
const MAX_DEPTH: usize = 32;

impl Predicate {
    /// Parses the JSON form; `path` names the predicate's place in the enclosing document.
    pub fn from_json(value: &serde_json::Value, path: &str) -> Result<Predicate, PredicateError> {
        Self::parse(value, path, 0)
    }

    fn parse(
        value: &serde_json::Value,
        path: &str,
        depth: usize,
    ) -> Result<Predicate, PredicateError> {
        if depth > MAX_DEPTH {
            return Err(err(path, format!("nested deeper than {MAX_DEPTH} levels")));
        }
        let obj = value
            .as_object()
            .ok_or_else(|| err(path, format!("must be an object, got {}", json_kind(value))))?;
        for combinator in ["and", "or"] {
            if let Some(items) = obj.get(combinator) {
                if obj.len() != 1 {
                    return Err(err(
                        path,
                        format!("'{combinator}' must be the only key of its object"),
                    ));
                }
                let items = items.as_array().ok_or_else(|| {
                    err(
                        &format!("{path}.{combinator}"),
                        "must be an array of predicates",
                    )
                })?;
                let parsed = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        Self::parse(item, &format!("{path}.{combinator}[{i}]"), depth + 1)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(if combinator == "and" {
                    Predicate::And(parsed)
                } else {
                    Predicate::Or(parsed)
                });
            }
        }
        if let Some(inner) = obj.get("not") {
            if obj.len() != 1 {
                return Err(err(path, "'not' must be the only key of its object"));
            }
            return Ok(Predicate::Not(Box::new(Self::parse(
                inner,
                &format!("{path}.not"),
                depth + 1,
            )?)));
        }
        for key in obj.keys() {
            if !matches!(key.as_str(), "attr" | "op" | "value") {
                return Err(err(
                    &format!("{path}.{key}"),
                    "unknown key; a comparison has attr, op, value (or use and/or/not)",
                ));
            }
        }
        let attr = match obj.get("attr") {
            Some(serde_json::Value::String(a)) if !a.is_empty() => a.clone(),
            Some(other) => {
                return Err(err(
                    &format!("{path}.attr"),
                    format!("must be a non-empty string, got {}", json_kind(other)),
                ));
            }
            None => return Err(err(&format!("{path}.attr"), "is required")),
        };
        let op = match obj.get("op") {
            Some(serde_json::Value::String(op)) => op.as_str(),
            Some(other) => {
                return Err(err(
                    &format!("{path}.op"),
                    format!("must be a string, got {}", json_kind(other)),
                ));
            }
            None => return Err(err(&format!("{path}.op"), "is required")),
        };
        let value = obj.get("value");
        let value_path = format!("{path}.value");
        let need_value =
            || value.ok_or_else(|| err(&value_path, format!("is required for '{op}'")));
        match op {
            "exists" => {
                if value.is_some() {
                    return Err(err(&value_path, "'exists' takes no value"));
                }
                Ok(Predicate::Exists { attr })
            }
            "in" => {
                let items = need_value()?
                    .as_array()
                    .ok_or_else(|| err(&value_path, "must be an array for 'in'"))?;
                Ok(Predicate::In {
                    attr,
                    values: items.iter().map(AttrValue::from_json).collect(),
                })
            }
            "contains" => Ok(Predicate::Contains {
                attr,
                value: AttrValue::from_json(need_value()?),
            }),
            other => {
                let op = CmpOp::parse(other).ok_or_else(|| {
                    err(
                        &format!("{path}.op"),
                        format!("unknown operator '{other}'; expected one of = != < <= > >= in contains exists"),
                    )
                })?;
                let value = need_value()?;
                if matches!(op, CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge)
                    && !(value.is_number() || value.is_string())
                {
                    return Err(err(
                        &value_path,
                        format!(
                            "'{}' needs a number or a string, got {}",
                            op.symbol(),
                            json_kind(value)
                        ),
                    ));
                }
                Ok(Predicate::Cmp {
                    attr,
                    op,
                    value: AttrValue::from_json(value),
                })
            }
        }
    }

    /// Whether the attributes satisfy the predicate.
    pub fn eval(&self, attrs: &Attrs) -> bool {
        match self {
            Predicate::Cmp { attr, op, value } => match attrs.get(attr) {
                None => false,
                Some(actual) => compare(actual, *op, value),
            },
            Predicate::In { attr, values } => match attrs.get(attr) {
                None => false,
                Some(actual) => values.iter().any(|v| compare(actual, CmpOp::Eq, v)),
            },
            Predicate::Contains { attr, value } => match (attrs.get(attr), value) {
                (Some(AttrValue::Str(s)), AttrValue::Str(needle)) => s.contains(needle.as_str()),
                (Some(AttrValue::List(items)), needle) => {
                    items.iter().any(|item| compare(item, CmpOp::Eq, needle))
                }
                _ => false,
            },
            Predicate::Exists { attr } => attrs.contains_key(attr),
            Predicate::And(items) => items.iter().all(|p| p.eval(attrs)),
            Predicate::Or(items) => items.iter().any(|p| p.eval(attrs)),
            Predicate::Not(inner) => !inner.eval(attrs),
        }
    }
}

/// `actual op expected`, with the semantics described in the module docs.
pub(crate) fn compare(actual: &AttrValue, op: CmpOp, expected: &AttrValue) -> bool {
    match (actual, expected) {
        (AttrValue::Num(a), AttrValue::Num(b)) => op.test_f64(a.0, b.0),
        (AttrValue::Str(a), AttrValue::Str(b)) => match op {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
        },
        (a, b) => match op {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(value: serde_json::Value) -> Attrs {
        value
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.into(), AttrValue::from_json(v)))
            .collect()
    }

    fn holds(pred: serde_json::Value, on: serde_json::Value) -> bool {
        Predicate::from_json(&pred, "filter")
            .unwrap()
            .eval(&attrs(on))
    }

    #[test]
    fn comparisons() {
        let order = json!({"amount": 1_200_000, "channel": "naver", "tags": ["vip", "app"], "note": "gift wrap"});
        assert!(holds(
            json!({"attr": "amount", "op": ">=", "value": 1_000_000}),
            order.clone()
        ));
        assert!(!holds(
            json!({"attr": "amount", "op": "<", "value": 1_000_000}),
            order.clone()
        ));
        assert!(holds(
            json!({"attr": "amount", "op": "=", "value": 1_200_000.0}),
            order.clone()
        ));
        assert!(holds(
            json!({"attr": "channel", "op": "in", "value": ["kakao", "naver"]}),
            order.clone()
        ));
        assert!(holds(
            json!({"attr": "tags", "op": "contains", "value": "vip"}),
            order.clone()
        ));
        assert!(holds(
            json!({"attr": "note", "op": "contains", "value": "wrap"}),
            order.clone()
        ));
        assert!(holds(
            json!({"attr": "note", "op": "exists"}),
            order.clone()
        ));
        assert!(!holds(
            json!({"attr": "coupon", "op": "exists"}),
            order.clone()
        ));
        // a missing attribute never satisfies a comparison, not even !=
        assert!(!holds(
            json!({"attr": "coupon", "op": "!=", "value": "X"}),
            order.clone()
        ));
        // numbers and strings do not order against each other
        assert!(!holds(
            json!({"attr": "channel", "op": ">", "value": 3}),
            order.clone()
        ));
        assert!(holds(
            json!({"and": [
                {"attr": "amount", "op": ">", "value": 1000},
                {"or": [{"attr": "channel", "op": "=", "value": "kakao"}, {"not": {"attr": "coupon", "op": "exists"}}]}
            ]}),
            order
        ));
    }

    #[test]
    fn errors_carry_the_path() {
        let cases = [
            (
                json!({"and": [{"attr": "a", "op": "=", "value": 1}, {"attr": "a", "op": "=>", "value": 1}]}),
                "filter.and[1].op",
            ),
            (json!({"attr": "a", "op": "in", "value": 3}), "filter.value"),
            (json!({"attr": "a", "op": ">"}), "filter.value"),
            (
                json!({"attr": "a", "op": ">", "value": [1]}),
                "filter.value",
            ),
            (json!({"op": ">", "value": 1}), "filter.attr"),
            (
                json!({"attr": "a", "op": ">", "value": 1, "vaule": 2}),
                "filter.vaule",
            ),
            (json!({"not": 3}), "filter.not"),
        ];
        for (input, path) in cases {
            let e = Predicate::from_json(&input, "filter").unwrap_err();
            assert_eq!(e.path, path, "{input}: {e}");
        }
        let mut deep = json!({"attr": "a", "op": "exists"});
        for _ in 0..40 {
            deep = json!({"not": deep});
        }
        assert!(
            Predicate::from_json(&deep, "filter")
                .unwrap_err()
                .problem
                .contains("nested deeper")
        );
    }
}
