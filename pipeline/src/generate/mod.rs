//! Turns intents into the JSON payload destinations receive, with the rule's message template
//! rendered (minijinja).
//!
//! A template that fails at render time (say, it reads a field this notification lacks) never
//! loses the notification: the payload carries a default message and the error.

use chrono::{DateTime, SecondsFormat, Utc};
use operators::Intent;
use serde_json::{Value, json};

/// Template used when a rule has none.
pub const DEFAULT_TEMPLATE: &str = "{% if kind == 'match' %}[{{ rule.name }}] {{ event.type }} {{ event.id }} matched{% elif kind == 'firing' %}[FIRING] {{ rule.name }} {{ group_label }}: {{ value }}{% if baseline is not none %} (baseline {{ baseline }}){% endif %}{% else %}[RESOLVED] {{ rule.name }} {{ group_label }}{% endif %}";

/// Checks that a template parses; the error names the problem and position.
pub fn check_template(template: &str) -> Result<(), String> {
    let mut env = minijinja::Environment::new();
    env.add_template("rule", template)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Largest integer an `f64` holds exactly (2^53).
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// Writes whole numbers without a fraction. Event attributes travel through the dataflow as
/// `f64`, so an `"amount": 250000` sent by a producer would otherwise come back as `250000.0`,
/// in the payload and in every message rendered from it.
fn integral_numbers(value: &mut Value) {
    match value {
        Value::Number(n) => {
            if n.is_f64()
                && let Some(f) = n
                    .as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() <= MAX_EXACT_INTEGER)
            {
                *value = json!(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        Value::Object(fields) => fields.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// The payload for one intent of a rule with the given name and template.
pub fn payload(intent: &Intent, rule_name: &str, template: Option<&str>) -> Value {
    let group: serde_json::Map<String, Value> = intent
        .group
        .iter()
        .map(|(k, v)| (k.clone(), v.to_json()))
        .collect();
    let mut body = json!({
        "id": intent.id,
        "tenant": intent.tenant,
        "kind": intent.kind.as_str(),
        "rule": {"id": intent.rule_id, "name": rule_name, "version": intent.rule_version},
        "group": group,
        "group_label": intent.group_label,
        "at": rfc3339(intent.at_ms),
    });
    if let Some((start, end)) = intent.window {
        body["window"] =
            json!({"start": rfc3339(start), "end": rfc3339(end), "start_ms": start, "end_ms": end});
    }
    if let Some(value) = intent.value {
        body["value"] = json!(value.0);
    }
    if let Some(baseline) = intent.baseline {
        body["baseline"] = json!(baseline.0);
        if let Some(value) = intent.value
            && baseline.0 != 0.0
        {
            body["change_percent"] = json!((value.0 - baseline.0) / baseline.0.abs() * 100.0);
        }
    }
    if let Some(since) = intent.firing_since_ms {
        body["firing_since"] = json!(rfc3339(since));
    }
    if let Some(event) = &intent.event {
        body["event"] = event.to_json();
    }
    if intent.deliver_at_ms > intent.at_ms {
        body["held_until"] = json!(rfc3339(intent.deliver_at_ms));
    }
    integral_numbers(&mut body);
    let mut context = body.clone();
    context["baseline"] = body.get("baseline").cloned().unwrap_or(Value::Null);
    let env = minijinja::Environment::new();
    let rendered = env.render_str(template.unwrap_or(DEFAULT_TEMPLATE), &context);
    match rendered {
        Ok(message) => body["message"] = json!(message),
        Err(e) => {
            let fallback = env
                .render_str(DEFAULT_TEMPLATE, &context)
                .unwrap_or_else(|_| format!("{} {}", rule_name, intent.kind.as_str()));
            body["message"] = json!(fallback);
            body["template_error"] = json!(e.to_string());
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_lose_their_fraction() {
        let mut value =
            json!({"amount": 250000.0, "rate": 2.5, "list": [3.0, -0.0], "n": 7, "big": 1e300});
        integral_numbers(&mut value);
        assert_eq!(
            value,
            json!({"amount": 250000, "rate": 2.5, "list": [3, 0], "n": 7, "big": 1e300})
        );
        assert_eq!(value["amount"].to_string(), "250000");
    }
}
