//! Whole-engine behaviour with deterministic inputs: rules added, changed and removed mid-stream,
//! window boundaries, late events, FIRING → RESOLVED → FIRING, throttle, quiet hours, and the
//! same answers on one and on several workers.

use operators::intent::IntentKind;
use operators::rule::RuleSpec;
use operators::{CompiledRule, Engine, EngineConfig, Event, Intent, Rule, RuleChange, StepInput};
use serde_json::json;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
/// 2026-11-25T00:00:00Z, a Wednesday: 09:00 in Seoul.
const T0: i64 = 1_795_564_800_000;

fn rule(id: &str, spec: serde_json::Value) -> Rule {
    rule_v(id, 1, spec)
}

fn rule_v(id: &str, version: u64, spec: serde_json::Value) -> Rule {
    let spec: RuleSpec = serde_json::from_value(spec).expect("spec parses");
    CompiledRule::compile(&spec, "shop", id, version, "UTC")
        .expect("rule compiles")
        .rule
}

fn order(id: &str, ts: i64, amount: f64, channel: &str) -> Event {
    Event::from_json(
        &json!({"id": id, "type": "order", "ts": ts, "attrs": {"amount": amount, "channel": channel}}),
        "shop",
    )
    .expect("event parses")
}

fn engine(workers: usize) -> Engine {
    Engine::start(EngineConfig {
        workers,
        allowed_lateness_ms: MIN,
        cluster: None,
    })
    .expect("engine starts")
}

fn step(
    engine: &mut Engine,
    rules: Vec<RuleChange>,
    events: Vec<Event>,
    clock: i64,
) -> Vec<Intent> {
    engine
        .step(StepInput {
            events,
            rules,
            clock_ms: Some(clock),
            ..Default::default()
        })
        .expect("step")
        .intents
}

/// Adds a rule at `T0`, before any event.
fn add_rule(engine: &mut Engine, id: &str, spec: serde_json::Value) {
    step(engine, vec![RuleChange::Upsert(rule(id, spec))], vec![], T0);
}

fn kinds(intents: &[Intent]) -> Vec<(IntentKind, String)> {
    intents
        .iter()
        .map(|i| (i.kind, i.group_label.clone()))
        .collect()
}

fn big_order_rule() -> serde_json::Value {
    json!({"kind": "match", "event_type": "order", "filter": {"attr": "amount", "op": ">=", "value": 1_000_000}})
}

#[test]
fn match_rule_added_changed_and_removed_mid_stream() {
    let mut e = engine(1);
    // Before the rule exists, a big order matches nothing.
    let out = step(&mut e, vec![], vec![order("o1", T0, 2e6, "naver")], T0);
    assert!(out.is_empty());
    // Adding the rule does not replay o1.
    let out = step(
        &mut e,
        vec![RuleChange::Upsert(rule("big", big_order_rule()))],
        vec![],
        T0 + 1,
    );
    assert!(
        out.is_empty(),
        "a new rule must not match events from before it: {out:?}"
    );
    let out = step(
        &mut e,
        vec![],
        vec![
            order("o2", T0 + 2, 2e6, "naver"),
            order("o3", T0 + 3, 5e5, "naver"),
        ],
        T0 + 3,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].kind, IntentKind::Match);
    assert_eq!(out[0].event.as_ref().map(|ev| ev.id.as_str()), Some("o2"));
    // Lower the threshold: o3-sized orders now match, and o2 does not match again.
    let lowered = json!({"kind": "match", "event_type": "order", "filter": {"attr": "amount", "op": ">=", "value": 100_000}});
    let out = step(
        &mut e,
        vec![RuleChange::Upsert(rule_v("big", 2, lowered))],
        vec![order("o4", T0 + 4, 5e5, "naver")],
        T0 + 4,
    );
    assert_eq!(
        out.iter()
            .map(|i| i.event.as_ref().unwrap().id.clone())
            .collect::<Vec<_>>(),
        vec!["o4"]
    );
    assert_eq!(out[0].rule_version, 2);
    // Remove it: nothing matches any more.
    let out = step(
        &mut e,
        vec![RuleChange::Remove {
            tenant: "shop".into(),
            rule_id: "big".into(),
        }],
        vec![order("o5", T0 + 5, 5e6, "naver")],
        T0 + 5,
    );
    assert!(out.is_empty());
}

#[test]
fn match_ids_are_deterministic_and_tenant_scoped() {
    let mut a = engine(1);
    let mut b = engine(1);
    for e in [&mut a, &mut b] {
        step(
            e,
            vec![RuleChange::Upsert(rule("big", big_order_rule()))],
            vec![],
            T0,
        );
    }
    let x = step(&mut a, vec![], vec![order("o1", T0, 2e6, "naver")], T0);
    let y = step(&mut b, vec![], vec![order("o1", T0, 2e6, "naver")], T0);
    assert_eq!(x[0].id, y[0].id);
    assert!(x[0].id.starts_with("ntf_") && x[0].id.len() == 36);
}

fn hourly_revenue_rule() -> serde_json::Value {
    json!({"kind": "threshold", "event_type": "order", "aggregate": {"fn": "sum", "attr": "amount"},
           "window": {"size": "1h"}, "group_by": ["channel"], "condition": {"op": ">", "value": 1000}})
}

#[test]
fn firing_resolved_firing_once_per_transition() {
    let mut e = engine(1);
    add_rule(&mut e, "rev", hourly_revenue_rule());
    // Hour 0: naver sums to 1500 over three events (holds); kakao 200 (does not).
    let out = step(
        &mut e,
        vec![],
        vec![
            order("a", T0 + 10 * MIN, 500.0, "naver"),
            order("b", T0 + 11 * MIN, 500.0, "naver"),
            order("c", T0 + 12 * MIN, 500.0, "naver"),
            order("d", T0 + 13 * MIN, 200.0, "kakao"),
        ],
        T0 + 10 * MIN,
    );
    assert!(out.is_empty(), "nothing fires before the window closes");
    // Hour 1 also holds for naver; close hour 0: one FIRING, not one per event.
    let out = step(
        &mut e,
        vec![],
        vec![order("e", T0 + HOUR + MIN, 2000.0, "naver")],
        T0 + HOUR + 2 * MIN,
    );
    assert_eq!(
        kinds(&out),
        vec![(IntentKind::Firing, "channel=naver".to_string())]
    );
    assert_eq!(out[0].window, Some((T0, T0 + HOUR)));
    assert_eq!(out[0].value.map(|v| v.0), Some(1500.0));
    // Close hour 1 (still holds) and hour 2 (empty): exactly one RESOLVED, at hour 2.
    let out = step(&mut e, vec![], vec![], T0 + 2 * HOUR + 2 * MIN);
    assert!(out.is_empty(), "still firing in hour 1: {out:?}");
    let out = step(
        &mut e,
        vec![],
        vec![order("f", T0 + 3 * HOUR + MIN, 3000.0, "naver")],
        T0 + 3 * HOUR + 2 * MIN,
    );
    assert_eq!(
        kinds(&out),
        vec![(IntentKind::Resolved, "channel=naver".to_string())]
    );
    assert_eq!(out[0].window, Some((T0 + 2 * HOUR, T0 + 3 * HOUR)));
    assert_eq!(out[0].firing_since_ms, Some(T0));
    // Hour 3 holds again: FIRING again, with a different id.
    let again = step(&mut e, vec![], vec![], T0 + 4 * HOUR + 2 * MIN);
    assert_eq!(
        kinds(&again),
        vec![(IntentKind::Firing, "channel=naver".to_string())]
    );
    assert_ne!(again[0].id, out[0].id);
}

#[test]
fn window_boundaries_are_half_open() {
    let mut e = engine(1);
    let count_rule = json!({"kind": "threshold", "event_type": "order", "aggregate": {"fn": "count"},
        "window": {"size": "1h"}, "condition": {"op": ">=", "value": 2}});
    add_rule(&mut e, "n", count_rule);
    // One event at the last millisecond of hour 0, one at the first of hour 1: no window has two.
    let out = step(
        &mut e,
        vec![],
        vec![
            order("a", T0 + HOUR - 1, 1.0, "x"),
            order("b", T0 + HOUR, 1.0, "x"),
        ],
        T0 + HOUR,
    );
    assert!(out.is_empty());
    let out = step(&mut e, vec![], vec![], T0 + 3 * HOUR);
    assert!(out.is_empty(), "{out:?}");
    // Two events in hour 3 fire when hour 3 closes, not before.
    step(
        &mut e,
        vec![],
        vec![
            order("c", T0 + 3 * HOUR, 1.0, "x"),
            order("d", T0 + 4 * HOUR - 1, 1.0, "x"),
        ],
        T0 + 3 * HOUR + 1,
    );
    let out = step(&mut e, vec![], vec![], T0 + 4 * HOUR + MIN - 1);
    assert!(
        out.is_empty(),
        "the window closes only once the watermark (clock - lateness) passes its end"
    );
    let out = step(&mut e, vec![], vec![], T0 + 4 * HOUR + MIN);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].window, Some((T0 + 3 * HOUR, T0 + 4 * HOUR)));
}

#[test]
fn sliding_windows_fire_once_while_the_condition_holds() {
    let mut e = engine(1);
    let spec = json!({"kind": "threshold", "event_type": "order", "aggregate": {"fn": "count"},
        "window": {"size": "10m", "slide": "5m"}, "condition": {"op": ">=", "value": 3}});
    add_rule(&mut e, "burst", spec);
    let burst: Vec<Event> = (0..3)
        .map(|i| order(&format!("b{i}"), T0 + 6 * MIN + i, 1.0, "x"))
        .collect();
    step(&mut e, vec![], burst, T0 + 7 * MIN);
    // Windows [0,10) and [5,15) both hold; [10,20) does not.
    let mut all = Vec::new();
    for minute in [12, 17, 22, 27] {
        all.extend(step(&mut e, vec![], vec![], T0 + minute * MIN));
    }
    assert_eq!(
        kinds(&all),
        vec![
            (IntentKind::Firing, "*".into()),
            (IntentKind::Resolved, "*".into())
        ]
    );
    assert_eq!(all[0].window, Some((T0, T0 + 10 * MIN)));
    assert_eq!(all[1].window, Some((T0 + 10 * MIN, T0 + 20 * MIN)));
}

#[test]
fn an_open_window_is_judged_even_when_a_later_one_already_holds() {
    let mut e = engine(1);
    let spec = json!({"kind": "threshold", "event_type": "order", "aggregate": {"fn": "count"},
        "window": {"size": "1m"}, "group_by": ["channel"], "condition": {"op": ">=", "value": 2}});
    add_rule(&mut e, "pair", spec);
    // Watermark T0+30s: the window [T0+1m, T0+2m) already holds for naver while [T0, T0+1m) is
    // still open and empty.
    let naver = vec![
        order("n1", T0 + MIN + 10_000, 1.0, "naver"),
        order("n2", T0 + MIN + 20_000, 1.0, "naver"),
    ];
    assert!(step(&mut e, vec![], naver, T0 + MIN + 30_000).is_empty());
    // Two on-time events for the earlier window arrive next.
    let kakao = vec![
        order("k1", T0 + 45_000, 1.0, "kakao"),
        order("k2", T0 + 50_000, 1.0, "kakao"),
    ];
    assert!(step(&mut e, vec![], kakao, T0 + MIN + 40_000).is_empty());
    let out = step(&mut e, vec![], vec![], T0 + 3 * MIN);
    assert_eq!(
        kinds(&out),
        vec![
            (IntentKind::Firing, "channel=kakao".into()),
            (IntentKind::Resolved, "channel=kakao".into()),
            (IntentKind::Firing, "channel=naver".into()),
        ]
    );
    assert_eq!(out[0].window, Some((T0, T0 + MIN)));
    assert_eq!(out[2].window, Some((T0 + MIN, T0 + 2 * MIN)));
}

#[test]
fn late_events_match_but_are_reported_and_not_counted() {
    let mut e = engine(1);
    let count_rule = json!({"kind": "threshold", "event_type": "order", "aggregate": {"fn": "count"},
        "window": {"size": "1h"}, "condition": {"op": ">=", "value": 2}});
    step(
        &mut e,
        vec![
            RuleChange::Upsert(rule("n", count_rule)),
            RuleChange::Upsert(rule("big", big_order_rule())),
        ],
        vec![order("a", T0 + 10 * MIN, 1.0, "x")],
        T0 + 10 * MIN,
    );
    // Within the allowed lateness (1 min): counted.
    let out = e
        .step(StepInput {
            events: vec![order("in-time", T0 + 10 * MIN - 30_000, 1.0, "x")],
            clock_ms: Some(T0 + 10 * MIN + 1),
            ..Default::default()
        })
        .unwrap();
    assert!(out.late.is_empty());
    // Beyond it: reported as late, still matched by the match rule, not counted in the window.
    let out = e
        .step(StepInput {
            events: vec![order("too-late", T0 + 5 * MIN, 2e6, "x")],
            clock_ms: Some(T0 + 10 * MIN + 2),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(out.late.len(), 1);
    assert_eq!(out.late[0].id, "too-late");
    assert_eq!(out.intents.len(), 1);
    assert_eq!(out.intents[0].kind, IntentKind::Match);
    assert_eq!(e.stats().late, 1);
    let out = step(&mut e, vec![], vec![], T0 + HOUR + MIN);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].value.map(|v| v.0),
        Some(2.0),
        "the late event must not be counted"
    );
}

#[test]
fn threshold_change_mid_window_recomputes_from_retained_events() {
    let mut e = engine(1);
    add_rule(&mut e, "rev", hourly_revenue_rule());
    step(
        &mut e,
        vec![],
        vec![order("a", T0 + MIN, 800.0, "naver")],
        T0 + 2 * MIN,
    );
    // Lower the threshold to 500 while hour 0 is open: the already-seen 800 now holds.
    let lower = json!({"kind": "threshold", "event_type": "order", "aggregate": {"fn": "sum", "attr": "amount"},
        "window": {"size": "1h"}, "group_by": ["channel"], "condition": {"op": ">", "value": 500}});
    step(
        &mut e,
        vec![RuleChange::Upsert(rule_v("rev", 2, lower))],
        vec![],
        T0 + 3 * MIN,
    );
    let out = step(&mut e, vec![], vec![], T0 + HOUR + MIN);
    assert_eq!(
        kinds(&out),
        vec![(IntentKind::Firing, "channel=naver".to_string())]
    );
    assert_eq!(out[0].rule_version, 2);
    // Removing the rule silences it for good.
    step(
        &mut e,
        vec![RuleChange::Remove {
            tenant: "shop".into(),
            rule_id: "rev".into(),
        }],
        vec![],
        T0 + HOUR + 2 * MIN,
    );
    let out = step(
        &mut e,
        vec![],
        vec![order("b", T0 + HOUR + 3 * MIN, 9e9, "naver")],
        T0 + 5 * HOUR,
    );
    assert!(out.is_empty());
}

#[test]
fn relative_change_against_the_same_hour_yesterday() {
    let mut e = engine(1);
    let spec = json!({"kind": "change", "event_type": "order", "aggregate": {"fn": "sum", "attr": "amount"},
        "window": {"size": "1h"}, "period": "1d", "condition": {"op": "<=", "value": -30}});
    add_rule(&mut e, "dip", spec);
    // Yesterday 10:00-11:00 revenue 1000; today's hour 0 of day 2 only 600 (-40 %).
    step(
        &mut e,
        vec![],
        vec![order("y1", T0 + 10 * MIN, 1000.0, "x")],
        T0 + 11 * MIN,
    );
    let out = step(&mut e, vec![], vec![], T0 + 2 * HOUR);
    assert!(
        out.is_empty(),
        "no baseline for yesterday's own hour: {out:?}"
    );
    let day = 24 * HOUR;
    step(
        &mut e,
        vec![],
        vec![order("t1", T0 + day + 20 * MIN, 600.0, "x")],
        T0 + day + 21 * MIN,
    );
    let out = step(&mut e, vec![], vec![], T0 + day + HOUR + MIN);
    assert_eq!(kinds(&out), vec![(IntentKind::Firing, "*".into())]);
    assert_eq!(out[0].value.map(|v| v.0), Some(600.0));
    assert_eq!(out[0].baseline.map(|v| v.0), Some(1000.0));
}

#[test]
fn throttle_limits_notifications_per_group() {
    let mut e = engine(1);
    let spec = json!({"kind": "match", "event_type": "order", "group_by": ["channel"], "throttle": "10m",
        "filter": {"attr": "amount", "op": ">=", "value": 1_000_000}});
    add_rule(&mut e, "big", spec);
    let out = step(
        &mut e,
        vec![],
        vec![
            order("a", T0, 2e6, "naver"),
            order("b", T0 + MIN, 2e6, "naver"),
            order("c", T0 + 2 * MIN, 2e6, "kakao"),
            order("d", T0 + 10 * MIN, 2e6, "naver"),
        ],
        T0 + 10 * MIN,
    );
    let ids: Vec<_> = out
        .iter()
        .map(|i| i.event.as_ref().unwrap().id.clone())
        .collect();
    assert_eq!(
        ids,
        vec!["a", "c", "d"],
        "b falls inside naver's 10-minute throttle"
    );
    assert_eq!(e.stats().state.throttled, 1);
}

#[test]
fn quiet_hours_across_midnight_in_seoul_defer_delivery() {
    let mut e = engine(1);
    let spec: RuleSpec = serde_json::from_value(json!({"kind": "match", "event_type": "order",
        "quiet_hours": {"start": "22:00", "end": "07:00"}}))
    .unwrap();
    let rule = CompiledRule::compile(&spec, "shop", "q", 1, "Asia/Seoul")
        .unwrap()
        .rule;
    step(&mut e, vec![RuleChange::Upsert(rule)], vec![], T0);
    let seoul = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    };
    let out = step(
        &mut e,
        vec![],
        vec![
            order("evening", seoul("2026-11-25T21:30:00+09:00"), 1.0, "x"),
            order("late-night", seoul("2026-11-25T23:10:00+09:00"), 1.0, "x"),
            order("small-hours", seoul("2026-11-26T03:00:00+09:00"), 1.0, "x"),
            order("morning", seoul("2026-11-26T07:30:00+09:00"), 1.0, "x"),
        ],
        seoul("2026-11-26T07:30:00+09:00"),
    );
    let deliver: Vec<(String, i64)> = out
        .iter()
        .map(|i| (i.event.as_ref().unwrap().id.to_string(), i.deliver_at_ms))
        .collect();
    let seven = seoul("2026-11-26T07:00:00+09:00");
    assert_eq!(
        deliver,
        vec![
            ("evening".into(), seoul("2026-11-25T21:30:00+09:00")),
            ("late-night".into(), seven),
            ("small-hours".into(), seven),
            ("morning".into(), seoul("2026-11-26T07:30:00+09:00")),
        ]
    );
}

#[test]
fn restored_alert_with_replayed_history_does_not_fire_again() {
    let mut e = engine(1);
    // After a restart: the rule, the alert that was firing, and the retained history come back
    // together, before the first window closes.
    let out = e
        .step(StepInput {
            rules: vec![RuleChange::Upsert(rule("rev", hourly_revenue_rule()))],
            restore: vec![operators::OpenAlert {
                tenant: "shop".into(),
                rule_id: "rev".into(),
                group: vec![operators::AttrValue::Str("naver".into())],
                since_window: T0 - 2 * HOUR,
            }],
            history: vec![order("h1", T0 - 10 * MIN, 5000.0, "naver")],
            clock_ms: Some(T0 - 5 * MIN),
            ..Default::default()
        })
        .unwrap();
    assert!(
        out.intents.is_empty(),
        "history triggers no match and no firing: {:?}",
        out.intents
    );
    step(
        &mut e,
        vec![],
        vec![order("a", T0 + 2 * MIN, 5000.0, "naver")],
        T0 + 2 * MIN,
    );
    let out = step(&mut e, vec![], vec![], T0 + HOUR + MIN);
    assert!(out.is_empty(), "already firing before the restart: {out:?}");
    let out = step(&mut e, vec![], vec![], T0 + 2 * HOUR + MIN);
    assert_eq!(
        kinds(&out),
        vec![(IntentKind::Resolved, "channel=naver".to_string())]
    );
    assert_eq!(out[0].firing_since_ms, Some(T0 - 2 * HOUR));
}

#[test]
fn several_workers_give_the_same_intents_as_one() {
    let tenants = ["t1", "t2", "t3", "t4", "t5"];
    let run = |workers: usize| {
        let mut e = engine(workers);
        let mut rules = Vec::new();
        for t in tenants {
            for (id, spec) in [("big", big_order_rule()), ("rev", hourly_revenue_rule())] {
                let spec: RuleSpec = serde_json::from_value(spec).unwrap();
                rules.push(RuleChange::Upsert(
                    CompiledRule::compile(&spec, t, id, 1, "UTC").unwrap().rule,
                ));
            }
        }
        let mut all = e
            .step(StepInput {
                rules,
                clock_ms: Some(T0),
                ..Default::default()
            })
            .unwrap()
            .intents;
        for batch in 0..6i64 {
            let events = (0..200i64)
                .map(|i| {
                    let n = batch * 200 + i;
                    let tenant = tenants[(n % 5) as usize];
                    let channel = ["naver", "kakao", "google"][(n % 3) as usize];
                    Event::from_json(
                        &json!({"id": format!("e{n}"), "type": "order", "ts": T0 + n * 20_000,
                                "attrs": {"amount": (n * 7919 % 1_500_000) as f64, "channel": channel}}),
                        tenant,
                    )
                    .unwrap()
                })
                .collect();
            all.extend(step(
                &mut e,
                vec![],
                events,
                T0 + (batch + 1) * 200 * 20_000,
            ));
        }
        all.extend(step(&mut e, vec![], vec![], T0 + 30 * HOUR));
        all.sort();
        all
    };
    let one = run(1);
    let three = run(3);
    assert!(one.iter().any(|i| i.kind == IntentKind::Match));
    assert!(one.iter().any(|i| i.kind == IntentKind::Firing));
    assert!(one.iter().any(|i| i.kind == IntentKind::Resolved));
    assert_eq!(one, three);
}

#[test]
fn a_throttle_forgets_group_keys_a_day_past_the_watermark() {
    let mut e = engine(1);
    let per_channel = json!({"kind": "match", "event_type": "order", "group_by": ["channel"],
        "throttle": "10m", "filter": {"attr": "amount", "op": ">=", "value": 1}});
    add_rule(&mut e, "each", per_channel);
    // 3,000 distinct group keys (say, one per customer) on the first day.
    let day_one: Vec<Event> = (0..3_000)
        .map(|i| order(&format!("a{i}"), T0 + i, 10.0, &format!("c{i}")))
        .collect();
    let out = step(&mut e, vec![], day_one, T0 + 3_000);
    assert_eq!(out.len(), 3_000, "every new key notifies once");
    // Within the throttle, a key already seen is held back.
    let out = step(
        &mut e,
        vec![],
        vec![order("again", T0 + 5 * MIN, 10.0, "c7")],
        T0 + 5 * MIN,
    );
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(e.stats().state.throttle_keys, 3_000);

    // Two days later, new keys arrive; the first day's keys are forgotten as the map grows.
    let later = T0 + 48 * HOUR;
    step(&mut e, vec![], vec![], later);
    let day_three: Vec<Event> = (0..1_100)
        .map(|i| order(&format!("b{i}"), later + i, 10.0, &format!("d{i}")))
        .collect();
    let out = step(&mut e, vec![], day_three, later + 1_100);
    assert_eq!(out.len(), 1_100);
    let keys = e.stats().state.throttle_keys;
    assert!(
        keys < 2_000,
        "{keys} keys remembered: the first day's should be gone"
    );
    // The throttle still holds for a recent key.
    let out = step(
        &mut e,
        vec![],
        vec![order("again2", later + 2 * MIN, 10.0, "d5")],
        later + 2 * MIN,
    );
    assert!(out.is_empty(), "{out:?}");
    // And a forgotten key notifies again (its last notification was two days ago anyway).
    let out = step(
        &mut e,
        vec![],
        vec![order("back", later + 3 * MIN, 10.0, "c7")],
        later + 3 * MIN,
    );
    assert_eq!(out.len(), 1);
    // Removing the rule forgets its throttle.
    step(
        &mut e,
        vec![RuleChange::Remove {
            tenant: "shop".into(),
            rule_id: "each".into(),
        }],
        vec![],
        later + 4 * MIN,
    );
    assert_eq!(e.stats().state.throttle_keys, 0);
}
