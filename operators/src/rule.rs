//! Alert rules: the tenant's JSON settings ([`RuleSpec`]) and their validated form ([`Rule`]),
//! which is what flows through the dataflow.
//!
//! A rule document is compiled in one place, [`CompiledRule::compile`]: the dataflow form and the
//! metadata rendering needs ([`RuleMeta`]) come out of it together. The API validates a rule by
//! compiling it and hands that compiled value on to the running dataflow; recovery compiles the
//! stored rules the same way.
//!
//! Three kinds:
//! - `match`: every event of `event_type` that satisfies `filter` is a notification;
//! - `threshold`: an aggregate of the events in a tumbling or sliding window, per `group_by` key,
//!   compared with a value; one FIRING when the condition starts to hold, one RESOLVED when it stops;
//! - `change`: the same aggregate against the same window one `period` earlier, as a percentage
//!   change (`-30` means down 30 %), with the same FIRING/RESOLVED state.

use serde::{Deserialize, Serialize};

use crate::event::json_kind;
use crate::predicate::{CmpOp, Predicate};
use crate::value::{AttrValue, Attrs, Num};

/// What a rule looks like in the API, before validation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Rule id; the API assigns one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Disabled rules are kept but match nothing.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// `match`, `threshold` or `change`.
    pub kind: String,
    /// The event type the rule listens to.
    pub event_type: String,
    /// Which events count (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<serde_json::Value>,
    /// Attributes whose values form the group key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_by: Vec<String>,
    /// `{"fn": "count|sum|avg|min|max|count_distinct", "attr": ".."}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<serde_json::Value>,
    /// `{"size": "1h", "slide": "5m"}`; no slide means tumbling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<serde_json::Value>,
    /// `{"op": ">", "value": 100}`; for `change` the value is a percentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<serde_json::Value>,
    /// For `change`: how far back the comparison window lies, e.g. `"1d"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<serde_json::Value>,
    /// Destination ids to deliver to.
    #[serde(default)]
    pub destinations: Vec<String>,
    /// Message template (minijinja).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Minimum interval between notifications for the same rule and group key, e.g. `"10m"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<serde_json::Value>,
    /// `{"start": "22:00", "end": "07:00"}` in the rule's time zone; notifications falling inside
    /// are held and delivered when the quiet hours end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<QuietHoursSpec>,
    /// IANA time zone for quiet hours and window alignment; defaults to the tenant's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

fn default_true() -> bool {
    true
}

/// Quiet hours as written by the tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursSpec {
    /// `HH:MM`, local time.
    pub start: String,
    /// `HH:MM`, local time; before `start` means the quiet hours cross midnight.
    pub end: String,
}

/// An aggregate function over a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AggFn {
    /// Number of events.
    Count,
    /// Sum of a numeric attribute.
    Sum,
    /// Mean of a numeric attribute.
    Avg,
    /// Least value of a numeric attribute.
    Min,
    /// Greatest value of a numeric attribute.
    Max,
    /// Number of distinct values of an attribute.
    CountDistinct,
}

/// A window: `size` long, a new one every `slide` (equal for tumbling windows). Windows are
/// aligned to midnight in the rule's time zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WindowSpec {
    /// Length, milliseconds.
    pub size_ms: i64,
    /// Distance between window starts, milliseconds.
    pub slide_ms: i64,
    /// Window starts fall on multiples of `slide_ms` minus this (the zone's standard UTC offset),
    /// so a `1d` window runs from local midnight to midnight.
    pub offset_ms: i64,
}

/// How a window's aggregate is judged; small enough to travel with every window key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Evaluation {
    /// The aggregate.
    pub agg: AggFn,
    /// Comparison with `value`.
    pub op: CmpOp,
    /// Threshold, or percentage for `change` rules.
    pub value: Num,
    /// Whether this is a `change` rule (compare the percentage change against the baseline).
    pub relative: bool,
}

/// What a rule does.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RuleKind {
    /// Every matching event is a notification.
    Match,
    /// A windowed aggregate compared with a threshold, or with its value one period earlier.
    Windowed {
        /// The window.
        window: WindowSpec,
        /// The aggregated attribute (none for `count`).
        attr: Option<String>,
        /// How the aggregate is judged.
        eval: Evaluation,
        /// For `change` rules, the distance to the baseline window; 0 otherwise.
        period_ms: i64,
    },
}

/// Quiet hours in minutes after local midnight.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QuietHours {
    /// First quiet minute.
    pub start_min: u32,
    /// First minute after the quiet hours.
    pub end_min: u32,
}

/// A validated rule as it flows through the dataflow.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Rule {
    /// Owning tenant.
    pub tenant: String,
    /// Event type listened to.
    pub event_type: String,
    /// Rule id, unique per tenant.
    pub id: String,
    /// Incremented on every change; part of window state keys.
    pub version: u64,
    /// The engine epoch from which the rule applies; events that arrived before it never match.
    pub since_epoch: u64,
    /// Which events count.
    pub filter: Option<Predicate>,
    /// Group key attributes.
    pub group_by: Vec<String>,
    /// What the rule does.
    pub kind: RuleKind,
    /// Minimum milliseconds between notifications for one group key (0 = none).
    pub throttle_ms: i64,
    /// Quiet hours, if any.
    pub quiet_hours: Option<QuietHours>,
    /// IANA time zone name.
    pub time_zone: String,
}

/// What rendering a rule's notifications needs besides its dataflow form.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleMeta {
    /// Display name: the spec's `name`, or the rule id when it has none.
    pub name: String,
    /// Message template (minijinja); the default one when absent.
    pub template: Option<String>,
    /// Destination ids to deliver to.
    pub destinations: Vec<String>,
}

/// A rule document compiled once: what the dataflow runs and what rendering needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledRule {
    /// The dataflow form.
    pub rule: Rule,
    /// The metadata for rendering.
    pub meta: RuleMeta,
}

/// What was wrong with a rule: the field and the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct RuleError {
    /// The field, e.g. `window.size` or `filter.and[0].op`.
    pub field: String,
    /// The problem.
    pub problem: String,
}

fn rule_err(field: &str, problem: impl Into<String>) -> RuleError {
    RuleError {
        field: field.to_string(),
        problem: problem.into(),
    }
}

/// Longest window or period accepted: 90 days.
pub const MAX_SPAN_MS: i64 = 90 * 86_400_000;

/// Parses a duration: `"250ms"`, `"30s"`, `"5m"`, `"1h"`, `"1d"`, `"1w"` or integer milliseconds.
pub fn parse_duration(value: &serde_json::Value, field: &str) -> Result<i64, RuleError> {
    let ms = match value {
        serde_json::Value::Number(n) => n.as_i64().ok_or_else(|| {
            rule_err(
                field,
                format!("{n} is not an integer number of milliseconds"),
            )
        })?,
        serde_json::Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (digits, unit) = s.split_at(split);
            let amount: i64 = digits.parse().map_err(|_| {
                rule_err(
                    field,
                    format!("'{s}' is not a duration; write e.g. 30s, 5m, 1h, 1d"),
                )
            })?;
            let unit_ms = match unit {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "w" => 7 * 86_400_000,
                _ => {
                    return Err(rule_err(
                        field,
                        format!("'{s}' has unknown unit '{unit}'; use ms, s, m, h, d or w"),
                    ));
                }
            };
            amount
                .checked_mul(unit_ms)
                .ok_or_else(|| rule_err(field, format!("'{s}' is too long")))?
        }
        other => {
            return Err(rule_err(
                field,
                format!(
                    "must be a duration like \"5m\" or milliseconds, got {}",
                    json_kind(other)
                ),
            ));
        }
    };
    if ms < 0 {
        return Err(rule_err(field, "must not be negative"));
    }
    Ok(ms)
}

fn parse_clock(text: &str, field: &str) -> Result<u32, RuleError> {
    let bad = || {
        rule_err(
            field,
            format!("'{text}' is not a time of day; write HH:MM, e.g. 22:00"),
        )
    };
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 24 || m > 59 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn object<'a>(
    value: &'a serde_json::Value,
    field: &str,
    allowed: &[&str],
) -> Result<&'a serde_json::Map<String, serde_json::Value>, RuleError> {
    let obj = value.as_object().ok_or_else(|| {
        rule_err(
            field,
            format!("must be an object, got {}", json_kind(value)),
        )
    })?;
    for key in obj.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(rule_err(
                &format!("{field}.{key}"),
                format!("unknown field; expected {}", allowed.join(", ")),
            ));
        }
    }
    Ok(obj)
}

impl CompiledRule {
    /// Validates and compiles a spec for `tenant`, with the id and version the store assigned
    /// and the tenant's default time zone: the one way a rule document becomes a [`Rule`].
    pub fn compile(
        spec: &RuleSpec,
        tenant: &str,
        id: &str,
        version: u64,
        default_time_zone: &str,
    ) -> Result<CompiledRule, RuleError> {
        if spec.event_type.is_empty() {
            return Err(rule_err("event_type", "must not be empty"));
        }
        let filter = spec
            .filter
            .as_ref()
            .map(|f| Predicate::from_json(f, "filter"))
            .transpose()
            .map_err(|e| rule_err(&e.path, e.problem))?;
        let time_zone = spec
            .time_zone
            .clone()
            .unwrap_or_else(|| default_time_zone.to_string());
        if time_zone.parse::<chrono_tz::Tz>().is_err() {
            return Err(rule_err(
                "time_zone",
                format!("'{time_zone}' is not an IANA time zone, e.g. Asia/Seoul"),
            ));
        }
        let throttle_ms = spec
            .throttle
            .as_ref()
            .map(|t| parse_duration(t, "throttle"))
            .transpose()?
            .unwrap_or(0);
        let quiet_hours = spec
            .quiet_hours
            .as_ref()
            .map(|q| -> Result<QuietHours, RuleError> {
                let start_min = parse_clock(&q.start, "quiet_hours.start")?;
                let end_min = parse_clock(&q.end, "quiet_hours.end")?;
                if start_min == end_min {
                    return Err(rule_err("quiet_hours", "start and end are equal"));
                }
                Ok(QuietHours { start_min, end_min })
            })
            .transpose()?;
        for (i, g) in spec.group_by.iter().enumerate() {
            if g.is_empty() {
                return Err(rule_err(&format!("group_by[{i}]"), "must not be empty"));
            }
        }
        let kind = match spec.kind.as_str() {
            "match" => {
                for (field, present) in [
                    ("aggregate", spec.aggregate.is_some()),
                    ("window", spec.window.is_some()),
                    ("condition", spec.condition.is_some()),
                    ("period", spec.period.is_some()),
                ] {
                    if present {
                        return Err(rule_err(field, "is not used by a 'match' rule"));
                    }
                }
                RuleKind::Match
            }
            "threshold" | "change" => {
                let relative = spec.kind == "change";
                let agg_value = spec.aggregate.as_ref().ok_or_else(|| {
                    rule_err(
                        "aggregate",
                        format!("is required for a '{}' rule", spec.kind),
                    )
                })?;
                let agg_obj = object(agg_value, "aggregate", &["fn", "attr"])?;
                let agg = match agg_obj.get("fn").and_then(|f| f.as_str()) {
                    Some("count") => AggFn::Count,
                    Some("sum") => AggFn::Sum,
                    Some("avg") => AggFn::Avg,
                    Some("min") => AggFn::Min,
                    Some("max") => AggFn::Max,
                    Some("count_distinct") => AggFn::CountDistinct,
                    Some(other) => {
                        return Err(rule_err(
                            "aggregate.fn",
                            format!(
                                "unknown function '{other}'; expected count, sum, avg, min, max or count_distinct"
                            ),
                        ));
                    }
                    None => return Err(rule_err("aggregate.fn", "is required (a string)")),
                };
                let attr = match agg_obj.get("attr") {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(a)) if !a.is_empty() => Some(a.clone()),
                    Some(_) => {
                        return Err(rule_err("aggregate.attr", "must be a non-empty string"));
                    }
                };
                if agg != AggFn::Count && attr.is_none() {
                    return Err(rule_err(
                        "aggregate.attr",
                        "is required for every function but count",
                    ));
                }
                let window_value = spec.window.as_ref().ok_or_else(|| {
                    rule_err("window", format!("is required for a '{}' rule", spec.kind))
                })?;
                let window_obj = object(window_value, "window", &["size", "slide"])?;
                let size_ms = parse_duration(
                    window_obj
                        .get("size")
                        .ok_or_else(|| rule_err("window.size", "is required"))?,
                    "window.size",
                )?;
                let slide_ms = window_obj
                    .get("slide")
                    .map(|s| parse_duration(s, "window.slide"))
                    .transpose()?
                    .unwrap_or(size_ms);
                if !(1_000..=MAX_SPAN_MS).contains(&size_ms) {
                    return Err(rule_err("window.size", "must be between 1s and 90d"));
                }
                if slide_ms < 1_000 || slide_ms > size_ms {
                    return Err(rule_err(
                        "window.slide",
                        "must be at least 1s and at most the window size",
                    ));
                }
                if size_ms % slide_ms != 0 {
                    return Err(rule_err(
                        "window.slide",
                        "must divide the window size evenly",
                    ));
                }
                if size_ms / slide_ms > 1_440 {
                    return Err(rule_err(
                        "window.slide",
                        "a window may overlap at most 1440 slides",
                    ));
                }
                let cond_value = spec.condition.as_ref().ok_or_else(|| {
                    rule_err(
                        "condition",
                        format!("is required for a '{}' rule", spec.kind),
                    )
                })?;
                let cond_obj = object(cond_value, "condition", &["op", "value"])?;
                let op = match cond_obj.get("op").and_then(|o| o.as_str()) {
                    Some(text) => CmpOp::parse(text).ok_or_else(|| {
                        rule_err(
                            "condition.op",
                            format!("unknown operator '{text}'; expected = != < <= > >="),
                        )
                    })?,
                    None => return Err(rule_err("condition.op", "is required (a string)")),
                };
                let value = cond_obj
                    .get("value")
                    .and_then(|v| v.as_f64())
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| rule_err("condition.value", "is required (a finite number)"))?;
                let period_ms = if relative {
                    let p = parse_duration(
                        spec.period
                            .as_ref()
                            .ok_or_else(|| rule_err("period", "is required for a 'change' rule"))?,
                        "period",
                    )?;
                    if p < size_ms || p > MAX_SPAN_MS {
                        return Err(rule_err(
                            "period",
                            "must be at least the window size and at most 90d",
                        ));
                    }
                    if p % slide_ms != 0 {
                        return Err(rule_err(
                            "period",
                            "must be a whole number of window slides",
                        ));
                    }
                    p
                } else {
                    if spec.period.is_some() {
                        return Err(rule_err("period", "is only used by a 'change' rule"));
                    }
                    0
                };
                RuleKind::Windowed {
                    window: WindowSpec {
                        size_ms,
                        slide_ms,
                        offset_ms: standard_offset_ms(&time_zone),
                    },
                    attr,
                    eval: Evaluation {
                        agg,
                        op,
                        value: Num(value),
                        relative,
                    },
                    period_ms,
                }
            }
            other => {
                return Err(rule_err(
                    "kind",
                    format!("unknown kind '{other}'; expected match, threshold or change"),
                ));
            }
        };
        let rule = Rule {
            tenant: tenant.to_string(),
            event_type: spec.event_type.clone(),
            id: id.to_string(),
            version,
            since_epoch: 0,
            filter,
            group_by: spec.group_by.clone(),
            kind,
            throttle_ms,
            quiet_hours,
            time_zone,
        };
        let meta = RuleMeta {
            name: spec.name.clone().unwrap_or_else(|| id.to_string()),
            template: spec.template.clone(),
            destinations: spec.destinations.clone(),
        };
        Ok(CompiledRule { rule, meta })
    }
}

impl Rule {
    /// The group key of an event under this rule: the `group_by` attribute values, null when missing.
    pub fn group_of(&self, attrs: &Attrs) -> Vec<AttrValue> {
        self.group_by
            .iter()
            .map(|g| attrs.get(g).cloned().unwrap_or(AttrValue::Null))
            .collect()
    }

    /// How long an event must stay in the dataflow for this rule's windows: window size plus,
    /// for `change` rules, the period.
    pub fn retention_ms(&self) -> i64 {
        match &self.kind {
            RuleKind::Match => 0,
            RuleKind::Windowed {
                window, period_ms, ..
            } => window.size_ms + period_ms,
        }
    }

    /// The rule's time zone (validated at compile time; UTC if it no longer parses).
    pub fn tz(&self) -> chrono_tz::Tz {
        self.time_zone.parse().unwrap_or(chrono_tz::UTC)
    }
}

/// The zone's UTC offset on 2026-01-01 (its standard offset in the northern winter), used to
/// align windows to local midnight. Zones with daylight saving keep that alignment all year.
fn standard_offset_ms(time_zone: &str) -> i64 {
    use chrono::{Offset, TimeZone};
    let tz: chrono_tz::Tz = time_zone.parse().unwrap_or(chrono_tz::UTC);
    let reference = chrono::DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default();
    i64::from(
        tz.offset_from_utc_datetime(&reference.naive_utc())
            .fix()
            .local_minus_utc(),
    ) * 1_000
}

/// Renders a group key as `attr=value` pairs joined by `,`; `*` for the empty key.
pub fn group_label(group_by: &[String], group: &[AttrValue]) -> String {
    if group_by.is_empty() {
        return "*".to_string();
    }
    group_by
        .iter()
        .zip(group)
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(spec: serde_json::Value) -> Result<Rule, RuleError> {
        let spec: RuleSpec =
            serde_json::from_value(spec).map_err(|e| rule_err("rule", e.to_string()))?;
        CompiledRule::compile(&spec, "shop", "r1", 1, "Asia/Seoul").map(|c| c.rule)
    }

    #[test]
    fn compiles_each_kind() {
        let m = compile(json!({"kind": "match", "event_type": "order",
            "filter": {"attr": "amount", "op": ">", "value": 1_000_000}, "throttle": "10m",
            "quiet_hours": {"start": "22:00", "end": "07:00"}}))
        .unwrap();
        assert_eq!(m.kind, RuleKind::Match);
        assert_eq!(m.throttle_ms, 600_000);
        assert_eq!(
            m.quiet_hours,
            Some(QuietHours {
                start_min: 1320,
                end_min: 420
            })
        );
        assert_eq!(m.time_zone, "Asia/Seoul");

        let t = compile(json!({"kind": "threshold", "event_type": "order",
            "aggregate": {"fn": "sum", "attr": "amount"}, "window": {"size": "1h", "slide": "5m"},
            "group_by": ["channel"], "condition": {"op": ">", "value": 5e6}}))
        .unwrap();
        assert_eq!(t.retention_ms(), 3_600_000);

        let c = compile(json!({"kind": "change", "event_type": "order",
            "aggregate": {"fn": "sum", "attr": "amount"}, "window": {"size": "1h"}, "period": "1d",
            "condition": {"op": "<=", "value": -30}}))
        .unwrap();
        assert_eq!(c.retention_ms(), 3_600_000 + 86_400_000);
    }

    #[test]
    fn a_compiled_rule_carries_its_metadata() {
        let spec: RuleSpec = serde_json::from_value(json!({"kind": "match", "event_type": "order",
            "destinations": ["hook"], "template": "{{ event.id }}"}))
        .unwrap();
        let compiled = CompiledRule::compile(&spec, "shop", "r1", 3, "UTC").unwrap();
        assert_eq!(
            (compiled.rule.id.as_str(), compiled.rule.version),
            ("r1", 3)
        );
        assert_eq!(
            compiled.meta,
            RuleMeta {
                name: "r1".into(),
                template: Some("{{ event.id }}".into()),
                destinations: vec!["hook".into()],
            }
        );
        let named = RuleSpec {
            name: Some("Big orders".into()),
            ..spec
        };
        let compiled = CompiledRule::compile(&named, "shop", "r1", 3, "UTC").unwrap();
        assert_eq!(compiled.meta.name, "Big orders");
        let broken = RuleSpec {
            kind: "alert".into(),
            ..named
        };
        let error = CompiledRule::compile(&broken, "shop", "r1", 3, "UTC").unwrap_err();
        assert_eq!(error.field, "kind");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!({"kind": "alert", "event_type": "order"}), "kind"),
            (
                json!({"kind": "threshold", "event_type": "order", "window": {"size": "1h"}, "condition": {"op": ">", "value": 1}}),
                "aggregate",
            ),
            (
                json!({"kind": "threshold", "event_type": "order", "aggregate": {"fn": "median", "attr": "a"}, "window": {"size": "1h"}, "condition": {"op": ">", "value": 1}}),
                "aggregate.fn",
            ),
            (
                json!({"kind": "threshold", "event_type": "order", "aggregate": {"fn": "sum"}, "window": {"size": "1h"}, "condition": {"op": ">", "value": 1}}),
                "aggregate.attr",
            ),
            (
                json!({"kind": "threshold", "event_type": "order", "aggregate": {"fn": "count"}, "window": {"size": "1 hour"}, "condition": {"op": ">", "value": 1}}),
                "window.size",
            ),
            (
                json!({"kind": "threshold", "event_type": "order", "aggregate": {"fn": "count"}, "window": {"size": "1h", "slide": "7m"}, "condition": {"op": ">", "value": 1}}),
                "window.slide",
            ),
            (
                json!({"kind": "threshold", "event_type": "order", "aggregate": {"fn": "count"}, "window": {"size": "1h"}, "condition": {"op": "~", "value": 1}}),
                "condition.op",
            ),
            (
                json!({"kind": "change", "event_type": "order", "aggregate": {"fn": "count"}, "window": {"size": "1h"}, "condition": {"op": "<", "value": -30}}),
                "period",
            ),
            (
                json!({"kind": "match", "event_type": "order", "window": {"size": "1h"}}),
                "window",
            ),
            (
                json!({"kind": "match", "event_type": "order", "filter": {"attr": "x", "op": "=>", "value": 1}}),
                "filter.op",
            ),
            (
                json!({"kind": "match", "event_type": "order", "quiet_hours": {"start": "25:00", "end": "07:00"}}),
                "quiet_hours.start",
            ),
            (
                json!({"kind": "match", "event_type": "order", "time_zone": "Mars/Olympus"}),
                "time_zone",
            ),
            (
                json!({"kind": "match", "event_type": "order", "throttle": "10 minutes"}),
                "throttle",
            ),
        ];
        for (input, field) in cases {
            let e = compile(input.clone()).unwrap_err();
            assert_eq!(e.field, field, "{input}: {e}");
        }
    }
}
