//! Turns intents into the JSON payload destinations receive, with the rule's message template
//! rendered (minijinja) within limits.
//!
//! Templates are checked when a rule is stored ([`check_template`]: it must parse, and a trial
//! render against sample notifications must not run out of fuel or time), and rendered by a
//! [`Renderer`] — off the caller's thread, each render bounded by fuel, output size and a deadline
//! ([`TemplateLimits`]). A template that fails at render time (a runaway loop on real data, a
//! field this notification lacks) never loses the notification nor holds up others: the payload
//! carries the default message, saying the template failed and why, and the error.
//!
//! Scheduled BI reports (tables, charts drawn in-process, the email document) are rendered by
//! [`report`].

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use operators::{Attrs, CompiledRule, Event, Intent, IntentKind, Num, RuleMeta, SmolStr};
use serde_json::{Value, json};

mod renderer;
pub mod report;
pub mod template;

pub use renderer::{RenderJob, Renderer, RuleVersion};
pub use template::{TRUNCATED_MARKER, TemplateError, TemplateLimits, render, render_within};

/// Template used when a rule has none.
pub const DEFAULT_TEMPLATE: &str = "{% if kind == 'match' %}[{{ rule.name }}] {{ event.type }} {{ event.id }} matched{% elif kind == 'firing' %}[FIRING] {{ rule.name }} {{ group_label }}: {{ value }}{% if baseline is not none %} (baseline {{ baseline }}){% endif %}{% else %}[RESOLVED] {{ rule.name }} {{ group_label }}{% endif %}";

/// Checks a compiled rule's template (none: nothing to check) before the rule is stored: it
/// must parse, and render sample notifications of the rule within `limits`. Blocks for up to
/// `limits.timeout` per sample: call it off an async executor.
pub fn check_template(rule: &CompiledRule, limits: &TemplateLimits) -> Result<(), TemplateError> {
    let Some(text) = rule.meta.template.as_deref() else {
        return Ok(());
    };
    let samples: Vec<Value> = sample_intents(rule)
        .iter()
        .map(|intent| template_context(&payload_body(intent, &rule.meta.name)))
        .collect();
    template::check(text, &samples, limits)
}

/// Notifications of the rule as templates see them, with made-up values: a match of an event
/// without attributes, or a firing and a resolved of the whole-rule group.
fn sample_intents(rule: &CompiledRule) -> Vec<Intent> {
    let now = connectors::clock::now_ms();
    let base = Intent {
        id: "ntf_sample".into(),
        tenant: rule.rule.tenant.clone(),
        rule_id: rule.rule.id.clone(),
        rule_version: rule.rule.version,
        kind: IntentKind::Match,
        group: Vec::new(),
        group_label: "*".into(),
        at_ms: now,
        deliver_at_ms: now,
        window: None,
        firing_since_ms: None,
        value: None,
        baseline: None,
        event: None,
    };
    if matches!(rule.rule.kind, operators::rule::RuleKind::Match) {
        let event = Event {
            tenant: SmolStr::new(&rule.rule.tenant),
            event_type: SmolStr::new(&rule.rule.event_type),
            ts_ms: now,
            id: SmolStr::new("sample"),
            attrs: Attrs::new(),
        };
        return vec![Intent {
            event: Some(event),
            ..base
        }];
    }
    let window = Some((now - 60_000, now));
    vec![
        Intent {
            kind: IntentKind::Firing,
            window,
            value: Some(Num(0.0)),
            ..base.clone()
        },
        Intent {
            kind: IntentKind::Resolved,
            window,
            firing_since_ms: Some(now - 120_000),
            ..base
        },
    ]
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

/// The payloads of intents, each with its rule's metadata, messages rendered by `renderer`.
pub fn payloads(renderer: &mut Renderer, intents: &[(Intent, Arc<RuleMeta>)]) -> Vec<Value> {
    let default: Arc<str> = Arc::from(DEFAULT_TEMPLATE);
    let mut bodies = Vec::with_capacity(intents.len());
    let mut jobs = Vec::with_capacity(intents.len());
    for (intent, meta) in intents {
        let body = payload_body(intent, &meta.name);
        jobs.push(RenderJob {
            rule: (
                intent.tenant.clone(),
                intent.rule_id.clone(),
                intent.rule_version,
            ),
            template: meta
                .template
                .as_deref()
                .map_or_else(|| default.clone(), Arc::from),
            context: template_context(&body),
        });
        bodies.push(body);
    }
    let limits = *renderer.limits();
    let rendered = renderer.render_all(jobs);
    bodies
        .into_iter()
        .zip(rendered)
        .map(|(body, message)| with_message(body, message, &limits))
        .collect()
}

/// The payload for one intent of a rule with the given name, without its message.
pub fn payload_body(intent: &Intent, rule_name: &str) -> Value {
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
    body
}

/// What a template sees: the payload, with `baseline` always present (`none` when absent).
fn template_context(body: &Value) -> Value {
    let mut context = body.clone();
    context["baseline"] = body.get("baseline").cloned().unwrap_or(Value::Null);
    context
}

/// The payload with its message: the rendered one, or the default message saying that the
/// rule's template failed and why (the error also in `template_error`).
fn with_message(
    mut body: Value,
    rendered: Result<String, TemplateError>,
    limits: &TemplateLimits,
) -> Value {
    match rendered {
        Ok(message) => body["message"] = json!(message),
        Err(e) => {
            let fallback = render(DEFAULT_TEMPLATE, &template_context(&body), limits)
                .unwrap_or_else(|_| {
                    format!(
                        "{} {}",
                        body["rule"]["name"].as_str().unwrap_or_default(),
                        body["kind"].as_str().unwrap_or_default()
                    )
                });
            body["message"] = json!(format!("{fallback} (the rule's template failed: {e})"));
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
