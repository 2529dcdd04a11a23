//! Audiences maintained by differential-dataflow agree, at every step, with the same audiences
//! evaluated from scratch over everything fed so far; and time passing alone moves contacts.

use std::collections::{BTreeMap, BTreeSet};

use operators::audience::{
    Audience, AudienceConfig, AudienceEngine, Contact, DAY_MS, Measure, contact_mask,
};
use operators::{Event, SmolStr};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

const MAX_DAYS: u32 = 120;

fn event(tenant: &str, id: u64, kind: &str, ts_ms: i64, contact: &str, amount: f64) -> Event {
    Event::from_json(
        &json!({"id": format!("e{id}"), "type": kind, "ts": ts_ms,
                "attrs": {"customer_id": contact, "amount": amount}}),
        tenant,
    )
    .unwrap()
}

fn contact(rng: &mut StdRng) -> Contact {
    let country = ["KR", "JP", "US"][rng.random_range(0..3)];
    Contact {
        email: Some(format!("c{}@example.com", rng.random_range(0..1000))),
        consent: [("email".to_string(), rng.random_bool(0.7))].into(),
        attributes: json!({"country": country, "vip": rng.random_bool(0.3)})
            .as_object()
            .cloned()
            .unwrap(),
        ..Contact::default()
    }
}

/// The definitions the test draws from: contact fields, counts, sums, filters, last_seen and
/// every combinator.
fn definitions() -> Vec<serde_json::Value> {
    vec![
        json!({"where": {"and": [
            {"event": "order", "in_last_days": 90, "op": ">=", "value": 2},
            {"not": {"event": "order", "in_last_days": 14, "op": ">=", "value": 1}}]}}),
        json!({"where": {"and": [
            {"contact": {"attr": "country", "op": "=", "value": "KR"}},
            {"event": "order", "in_last_days": 30, "measure": "sum", "attr": "amount",
             "op": ">", "value": 150}]}}),
        json!({"where": {"or": [
            {"contact": {"attr": "vip", "op": "=", "value": true}},
            {"event": "visit", "in_last_days": 60, "measure": "last_seen", "op": "<", "value": 3}]}}),
        json!({"where": {"contact": {"attr": "consent.email", "op": "=", "value": true}}}),
        json!({"where": {"event": "order", "in_last_days": 7,
            "filter": {"attr": "amount", "op": ">=", "value": 50}, "op": ">=", "value": 1}}),
        json!({"where": {"and": [
            {"event": "visit", "in_last_days": 100, "measure": "last_seen", "op": ">", "value": 10},
            {"not": {"contact": {"attr": "country", "op": "=", "value": "US"}}}]}}),
    ]
}

/// The same audience evaluated from scratch: the contact's conditions, and each atom's count
/// and sum over every event of the contact with `now - window < ts <= now`.
fn from_scratch(
    audience: &Audience,
    contacts: &BTreeMap<(String, String), Contact>,
    events: &[Event],
    now: i64,
) -> BTreeSet<String> {
    let mut members = BTreeSet::new();
    for ((tenant, id), c) in contacts {
        if tenant.as_str() != audience.tenant.as_str() {
            continue;
        }
        let mask = contact_mask(&audience.contact_conditions, &c.view(id));
        let mut counts = vec![0i64; audience.atoms.len()];
        let mut sums = vec![0f64; audience.atoms.len()];
        for e in events {
            if e.tenant.as_str() != tenant.as_str()
                || e.attrs.get("customer_id").map(|v| v.to_json()) != Some(json!(id))
            {
                continue;
            }
            for (i, atom) in audience.atoms.iter().enumerate() {
                let inside = e.ts_ms <= now && e.ts_ms > now - atom.window_ms;
                if e.event_type == atom.event_type
                    && inside
                    && atom.filter.as_ref().is_none_or(|f| f.eval(&e.attrs))
                {
                    counts[i] += 1;
                    sums[i] += atom.value_of(&e.attrs);
                }
            }
        }
        if audience.formula.eval(mask, &counts, &sums) {
            members.insert(id.clone());
        }
    }
    members
}

#[test]
fn incremental_membership_equals_a_from_scratch_evaluation_at_every_step() {
    let defs = definitions();
    for seed in 0..4u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        // Odd seeds run the dataflow on two workers, even ones on one: the answers must not
        // depend on how the rows are dealt and exchanged.
        let mut engine = AudienceEngine::new(AudienceConfig {
            max_window_days: MAX_DAYS,
            workers: 1 + (seed % 2) as usize,
        })
        .expect("engine starts");
        let tenants = ["shop-a", "shop-b"];
        let mut now: i64 = 1_780_000_000_000;
        let mut contacts: BTreeMap<(String, String), Contact> = BTreeMap::new();
        let mut audiences: BTreeMap<(String, String), Audience> = BTreeMap::new();
        let mut events: Vec<Event> = Vec::new();
        // What the changes reported so far add up to.
        let mut reported: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        let mut next_event = 0u64;
        for step in 0..60 {
            for _ in 0..rng.random_range(0..25) {
                let tenant = tenants[rng.random_range(0..2)];
                let id = format!("c{}", rng.random_range(0..25));
                match rng.random_range(0..100) {
                    0..=59 => {
                        let kind = if rng.random_bool(0.6) {
                            "order"
                        } else {
                            "visit"
                        };
                        // Mostly recent, some old (beyond every window), a few ahead of the clock.
                        let ts = now - rng.random_range(-2 * 3_600_000..110 * DAY_MS);
                        let amount = f64::from(rng.random_range(1..200));
                        next_event += 1;
                        let e = event(tenant, next_event, kind, ts, &id, amount);
                        engine.event(&e);
                        events.push(e);
                    }
                    60..=84 => {
                        let c = contact(&mut rng);
                        engine.upsert_contact(tenant, &id, &c);
                        contacts.insert((tenant.to_string(), id), c);
                    }
                    85..=89 => {
                        engine.delete_contact(tenant, &id);
                        contacts.remove(&(tenant.to_string(), id));
                    }
                    90..=96 => {
                        let aud = format!("a{}", rng.random_range(0..4));
                        let spec = &defs[rng.random_range(0..defs.len())];
                        let a = Audience::compile(tenant, &aud, spec, MAX_DAYS).unwrap();
                        engine.upsert_audience(a.clone());
                        audiences.insert((tenant.to_string(), aud.clone()), a);
                        reported.entry((tenant.to_string(), aud)).or_default();
                    }
                    _ => {
                        let aud = format!("a{}", rng.random_range(0..4));
                        engine.remove_audience(tenant, &aud);
                        audiences.remove(&(tenant.to_string(), aud));
                    }
                }
            }
            // The clock moves by minutes to weeks.
            now += match rng.random_range(0..4) {
                0 => rng.random_range(1..60_000),
                1 => rng.random_range(1..3_600_000),
                2 => rng.random_range(1..DAY_MS),
                _ => rng.random_range(1..20 * DAY_MS),
            };
            let changes = engine.step(now);
            // An audience removed and defined again within a step was replaced: its members
            // carry over; one removed for good is forgotten.
            reported.retain(|key, _| audiences.contains_key(key));
            let mut last_at = i64::MIN;
            for ch in changes {
                assert!(
                    ch.at_ms >= last_at && ch.at_ms <= now,
                    "changes in time order"
                );
                last_at = ch.at_ms;
                let set = reported
                    .get_mut(&(ch.tenant.to_string(), ch.audience.to_string()))
                    .expect("a change for a live audience");
                if ch.entered {
                    assert!(set.insert(ch.contact.to_string()), "entered twice: {ch:?}");
                } else {
                    assert!(
                        set.remove(ch.contact.as_str()),
                        "left without entering: {ch:?}"
                    );
                }
            }
            for ((tenant, aud), audience) in &audiences {
                let expected = from_scratch(audience, &contacts, &events, now);
                let held: BTreeSet<String> = engine
                    .members(tenant, aud)
                    .unwrap()
                    .keys()
                    .map(|k| k.to_string())
                    .collect();
                assert_eq!(held, expected, "seed {seed} step {step} {tenant}/{aud}");
                assert_eq!(reported[&(tenant.clone(), aud.clone())], expected);
            }
        }
    }
}

#[test]
fn time_passing_alone_moves_a_contact_out_of_ordered_in_the_last_14_days() {
    let mut engine = AudienceEngine::new(AudienceConfig::default()).expect("engine starts");
    let start: i64 = 1_780_000_000_000;
    let audience = Audience::compile(
        "shop",
        "recent-buyers",
        &json!({"where": {"event": "order", "in_last_days": 14, "op": ">=", "value": 1}}),
        400,
    )
    .unwrap();
    assert!(matches!(
        audience.formula,
        operators::audience::Formula::Event {
            measure: Measure::Count,
            ..
        }
    ));
    engine.upsert_audience(audience);
    engine.upsert_contact("shop", "kim", &Contact::default());
    engine.event(&event("shop", 1, "order", start - DAY_MS, "kim", 10.0));
    let entered = engine.step(start);
    assert_eq!(entered.len(), 1);
    assert!(entered[0].entered);
    assert_eq!(entered[0].contact, SmolStr::new("kim"));
    // Twelve days later: still in (ordered 13 days ago).
    assert!(engine.step(start + 12 * DAY_MS).is_empty());
    assert!(engine.is_member("shop", "recent-buyers", "kim"));
    // Fourteen days after the order the window has passed; no event arrived in between.
    let left = engine.step(start + 14 * DAY_MS);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(!left[0].entered);
    assert_eq!(
        left[0].at_ms,
        start + 13 * DAY_MS,
        "left the instant the window passed"
    );
    assert!(!engine.is_member("shop", "recent-buyers", "kim"));
}

#[test]
fn entering_and_leaving_within_one_instant_reports_nothing() {
    let mut engine = AudienceEngine::new(AudienceConfig::default()).expect("engine starts");
    let now: i64 = 1_780_000_000_000;
    let vip = Audience::compile(
        "shop",
        "vip",
        &json!({"where": {"contact": {"attr": "vip", "op": "=", "value": true}}}),
        400,
    )
    .unwrap();
    engine.upsert_audience(vip);
    assert!(engine.step(now).is_empty());
    let mut c = Contact {
        attributes: json!({"vip": true}).as_object().cloned().unwrap(),
        ..Contact::default()
    };
    engine.upsert_contact("shop", "lee", &c);
    c.attributes.insert("vip".into(), json!(false));
    engine.upsert_contact("shop", "lee", &c);
    assert!(engine.step(now + 1).is_empty());
    // Deleting a contact removes it from its audiences.
    c.attributes.insert("vip".into(), json!(true));
    engine.upsert_contact("shop", "lee", &c);
    assert_eq!(engine.step(now + 2).len(), 1);
    engine.delete_contact("shop", "lee");
    let left = engine.step(now + 3);
    assert_eq!(left.len(), 1);
    assert!(!left[0].entered);
    assert_eq!(engine.stats().memberships, 0);
}

#[test]
fn a_worker_count_out_of_range_is_refused_naming_the_range() {
    for workers in [0, 65] {
        let e = AudienceEngine::new(AudienceConfig {
            workers,
            ..AudienceConfig::default()
        })
        .err()
        .expect("refused");
        assert_eq!(
            e.to_string(),
            format!("audience engine: workers = {workers} is out of range; use 1 to 64")
        );
    }
}
