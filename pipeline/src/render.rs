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
