//! The behaviour every store backend must show, written against the store traits only.
//!
//! A backend runs the whole suite with one macro call in its tests, given a function that opens
//! a fresh, empty store and returns it with whatever must live as long as the test (a
//! temporary directory, a scratch database to drop):
//!
//! ```ignore
//! fn open() -> (tempfile::TempDir, SqliteStore) { /* … */ }
//!
//! connectors::store_contract_tests!(open);
//! ```
//!
//! which expands to one `#[test]` per behaviour, named after it: a failure names the behaviour,
//! and the behaviours run in parallel like any other tests (a single `run_all` test would stop at
//! the first failure). A new behaviour is a `pub fn` taking `&dyn Store` and a line in the
//! macro's list: here, or in a submodule of its own concern (`crm`: contacts, audiences and
//! campaigns; `dashboards`) whose behaviours are re-exported here, so the macro finds every one
//! as `contract::<behaviour>`. Tests that only make sense for one backend (its files, its schema
//! history, what survives reopening it) stay with that backend and reuse the fixtures here; for
//! durability, [`append_sample_log`] and [`assert_sample_log`] check the log across a reopen.
//!
//! Compiled for this crate's own tests (where the SQLite backend runs it) and, for a backend
//! kept in another crate, behind the `contract-tests` feature, which that crate turns on in its
//! dev-dependencies only: the suite panics by design and has no place in a running server.

mod crm;
mod dashboards;

pub use crm::{
    an_audience_step_commits_members_log_sizes_and_position_together,
    campaign_sends_are_added_once_and_finished_once_with_their_notifications,
    contacts_and_audiences_are_tenant_scoped,
    the_membership_log_is_pruned_from_its_old_followed_front,
};
pub use dashboards::{
    dashboards_are_put_replaced_and_deleted, dashboards_are_tenant_scoped_and_listed_by_id,
};

use super::{
    AppendOutcome, ClaimLimits, DeliveryAttempt, DeliveryNext, DeliveryStatus, EventLog,
    FinishedRun, NewDeadLetter, NewEvent, NewNotification, NewReportRun, NotificationCursor,
    NotificationFilter, REPORT_KIND, RunStatus, SourcePosition, SourceProgress, Store, StoreError,
    StoredDestination, StoredReport, StoredRule, Tenant,
};

/// One `#[test]` per store behaviour, each on a fresh store from `$open`, a function returning
/// `(guard, store)`: the guard is kept until the test ends, and `store` is any type that
/// implements [`Store`](crate::store::Store).
#[macro_export]
macro_rules! store_contract_tests {
    ($open:path) => {
        // Every behaviour function of `connectors::store::contract`, once.
        $crate::store_contract_tests!(@each $open;
            appended_events_are_read_back_in_order,
            duplicates_are_detected_across_and_within_batches,
            large_batches_keep_input_order_and_find_every_duplicate,
            recent_event_replay_skips_old_event_times,
            rules_and_destinations_are_tenant_scoped,
            tenants_and_api_keys,
            listings_order_text_byte_wise,
            replacing_api_keys_revokes_every_other_key,
            enqueue_is_idempotent_and_tenant_scoped,
            retry_then_deliver_and_retry_then_dead,
            claims_lease_deliveries_to_one_sender,
            claims_are_fair_across_tenants_and_skip_busy_ones,
            deliveries_to_deleted_destinations_go_dead_on_claim,
            destination_of_another_tenant_is_never_used,
            open_alerts_follow_firing_and_resolved,
            notification_listing_pages_newest_first,
            release_claims_makes_leased_deliveries_due_again,
            a_step_commits_its_notifications_and_checkpoint_together,
            meta_round_trips_and_guards_schema_version,
            reports_are_tenant_scoped,
            report_runs_are_added_once_and_finished_once_with_their_notifications,
            source_positions_and_dead_letters_commit_with_their_events,
            contacts_and_audiences_are_tenant_scoped,
            an_audience_step_commits_members_log_sizes_and_position_together,
            the_membership_log_is_pruned_from_its_old_followed_front,
            campaign_sends_are_added_once_and_finished_once_with_their_notifications,
            dashboards_are_put_replaced_and_deleted,
            dashboards_are_tenant_scoped_and_listed_by_id,
        );
    };
    (@each $open:path; $($behaviour:ident),* $(,)?) => {
        $(
            #[test]
            fn $behaviour() {
                let (_guard, store) = $open();
                $crate::store::contract::$behaviour(&store);
            }
        )*
    };
}

// ---- fixtures ----

/// An `order.created` event of `tenant` with the id `id`, at event time 1,000.
pub fn event(tenant: &str, id: &str) -> NewEvent {
    NewEvent {
        id: id.to_owned(),
        tenant: tenant.to_owned(),
        event_type: "order.created".to_owned(),
        ts_ms: 1_000,
        body: format!(r#"{{"id":"{id}","amount":1200000}}"#),
    }
}

/// A webhook destination of `tenant` with the id `id`.
pub fn destination(tenant: &str, id: &str) -> StoredDestination {
    StoredDestination {
        tenant: tenant.to_owned(),
        id: id.to_owned(),
        kind: "webhook".to_owned(),
        config: r#"{"url":"http://127.0.0.1:9/hook"}"#.to_owned(),
        updated_at_ms: 10,
    }
}

/// A notification of the rule `big-order` to `destinations`, created at 100.
pub fn notification(tenant: &str, id: &str, kind: &str, destinations: &[&str]) -> NewNotification {
    NewNotification {
        id: id.to_owned(),
        tenant: tenant.to_owned(),
        rule_id: "big-order".to_owned(),
        kind: kind.to_owned(),
        group_key: "store-1".to_owned(),
        payload: format!(r#"{{"notification":"{id}"}}"#),
        created_at_ms: 100,
        destination_ids: destinations.iter().map(|d| (*d).to_owned()).collect(),
    }
}

/// The `attempt`-th delivery attempt of notification `n` to destination `d`, answered with
/// HTTP 503 (an error text unless `outcome` is `"delivered"`).
pub fn attempt(n: &str, d: &str, attempt: u32, outcome: &str) -> DeliveryAttempt {
    DeliveryAttempt {
        notification_id: n.to_owned(),
        destination_id: d.to_owned(),
        attempt,
        at_ms: 200,
        outcome: outcome.to_owned(),
        status_code: Some(503),
        error: (outcome != "delivered").then(|| "HTTP 503".to_owned()),
        duration_ms: 12,
    }
}

/// Appends three events (two of tenant `a`, one of `b`) in one batch, checks that all are new
/// and numbered in order, and returns their positions.
pub fn append_sample_log(store: &dyn EventLog) -> Vec<u64> {
    let outcomes = store
        .append_events(&[event("a", "e1"), event("a", "e2"), event("b", "e1")])
        .expect("append");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, AppendOutcome::Appended { .. }))
    );
    let seqs: Vec<u64> = outcomes.iter().map(AppendOutcome::seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    seqs
}

/// Checks that the log holds exactly what [`append_sample_log`] wrote at `seqs`, readable by
/// position, and that a new append continues after it.
pub fn assert_sample_log(store: &dyn EventLog, seqs: &[u64]) {
    let events = store.events_after(0, 10).expect("read");
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].seq, seqs[0]);
    assert_eq!(events[2].tenant, "b");
    assert_eq!(events[1].body, event("a", "e2").body);
    assert_eq!(store.events_after(seqs[1], 10).expect("read").len(), 1);
    assert_eq!(store.events_after(0, 2).expect("read").len(), 2);
    assert_eq!(store.event_count("a").expect("count"), 2);
    assert_eq!(store.last_event_seq().expect("last"), seqs[2]);
    let next = store.append_events(&[event("a", "e3")]).expect("append");
    assert!(next[0].seq() > seqs[2]);
}

// ---- behaviours ----

/// Appended events are read back in order, by position and by tenant.
pub fn appended_events_are_read_back_in_order(store: &dyn Store) {
    let seqs = append_sample_log(store);
    assert_sample_log(store, &seqs);
}

/// An event id seen before, in an earlier batch or earlier in the same one, is reported as a
/// duplicate at its first position; the same id under another tenant is a new event.
pub fn duplicates_are_detected_across_and_within_batches(store: &dyn Store) {
    let first = store
        .append_events(&[event("a", "e1"), event("a", "e2")])
        .expect("append");
    let second = store
        .append_events(&[
            event("a", "e2"),
            event("a", "e3"),
            event("a", "e3"),
            event("b", "e2"),
        ])
        .expect("append");
    assert_eq!(
        second[0],
        AppendOutcome::Duplicate {
            seq: first[1].seq()
        }
    );
    assert!(matches!(second[1], AppendOutcome::Appended { .. }));
    assert_eq!(
        second[2],
        AppendOutcome::Duplicate {
            seq: second[1].seq()
        }
    );
    // The same id under another tenant is a different event.
    assert!(matches!(second[3], AppendOutcome::Appended { .. }));
    assert_eq!(store.event_count("a").expect("count"), 3);
    assert_eq!(store.events_after(0, 100).expect("read").len(), 4);
}

/// A batch of hundreds of events, with ids seen in an earlier batch and ids given twice in it
/// (near each other and far apart), is appended in input order: each new event at a position
/// past every earlier one, each repeated id reported at its first position, and reading the log
/// back gives the new events in input order at exactly the positions reported.
pub fn large_batches_keep_input_order_and_find_every_duplicate(store: &dyn Store) {
    let earlier: Vec<NewEvent> = (0..40).map(|i| event("a", &format!("p{i}"))).collect();
    let mut known: std::collections::HashMap<(String, String), u64> = earlier
        .iter()
        .zip(store.append_events(&earlier).expect("append"))
        .map(|(e, outcome)| ((e.tenant.clone(), e.id.clone()), outcome.seq()))
        .collect();
    let mut batch: Vec<NewEvent> = Vec::new();
    for i in 0..157usize {
        let next = if i % 11 == 5 {
            event("a", &format!("p{}", i % 40))
        } else if i % 13 == 7 {
            batch[(i - 1).saturating_sub((i % 3) * 30)].clone()
        } else {
            event(["a", "b"][i % 2], &format!("n{i}"))
        };
        batch.push(next);
    }
    let outcomes = store.append_events(&batch).expect("append");
    assert_eq!(outcomes.len(), batch.len());
    let mut last = known.values().copied().max().expect("earlier events");
    let mut appended = Vec::new();
    for (i, (e, outcome)) in batch.iter().zip(&outcomes).enumerate() {
        let key = (e.tenant.clone(), e.id.clone());
        match known.get(&key) {
            Some(&seq) => assert_eq!(*outcome, AppendOutcome::Duplicate { seq }, "event {i}"),
            None => {
                let AppendOutcome::Appended { seq } = *outcome else {
                    panic!("event {i} ({key:?}) is new but reported {outcome:?}");
                };
                assert!(seq > last, "event {i} at {seq}, after {last}");
                last = seq;
                known.insert(key.clone(), seq);
                appended.push((seq, key));
            }
        }
    }
    assert!(appended.len() > 100 && appended.len() < batch.len());
    let stored: Vec<(u64, (String, String))> = store
        .events_after(appended[0].0 - 1, 1_000)
        .expect("read")
        .into_iter()
        .map(|e| (e.seq, (e.tenant, e.id)))
        .collect();
    assert_eq!(stored, appended);
}

/// Replaying from an event time skips events older than it.
pub fn recent_event_replay_skips_old_event_times(store: &dyn Store) {
    let mut old = event("a", "old");
    old.ts_ms = 10;
    let mut new = event("a", "new");
    new.ts_ms = 5_000;
    store.append_events(&[old, new]).expect("append");
    let recent = store.events_since_ts(1_000, 0, 10).expect("read");
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].id, "new");
}

/// Rules and destinations are read, replaced and deleted only by their own tenant.
pub fn rules_and_destinations_are_tenant_scoped(store: &dyn Store) {
    let rule = StoredRule {
        tenant: "a".to_owned(),
        id: "r1".to_owned(),
        version: 1,
        enabled: true,
        body: "{}".to_owned(),
        updated_at_ms: 5,
    };
    store.put_rule(&rule).expect("put");
    store
        .put_rule(&StoredRule {
            tenant: "b".to_owned(),
            ..rule.clone()
        })
        .expect("put");
    assert_eq!(store.get_rule("a", "r1").expect("get"), Some(rule.clone()));
    assert_eq!(store.list_rules(Some("a")).expect("list").len(), 1);
    assert_eq!(store.list_rules(None).expect("list").len(), 2);
    assert!(store.get_rule("c", "r1").expect("get").is_none());
    assert!(!store.delete_rule("c", "r1").expect("delete"));
    assert!(store.delete_rule("b", "r1").expect("delete"));
    assert_eq!(store.get_rule("a", "r1").expect("get"), Some(rule.clone()));

    let updated = StoredRule {
        version: 2,
        enabled: false,
        ..rule
    };
    store.put_rule(&updated).expect("upsert");
    assert_eq!(store.get_rule("a", "r1").expect("get"), Some(updated));

    store.put_destination(&destination("a", "d1")).expect("put");
    assert!(store.get_destination("b", "d1").expect("get").is_none());
    // The same id in another tenant is another destination; neither replaces the other.
    store.put_destination(&destination("c", "d1")).expect("put");
    assert_eq!(store.list_destinations("a").expect("list").len(), 1);
    assert!(store.delete_destination("c", "d1").expect("delete"));
    assert!(store.list_destinations("b").expect("list").is_empty());
    assert!(!store.delete_destination("b", "d1").expect("delete"));
    assert_eq!(store.list_destinations("a").expect("list").len(), 1);
    assert!(store.delete_destination("a", "d1").expect("delete"));
    assert!(store.get_destination("a", "d1").expect("get").is_none());
}

/// Tenants round-trip; an API key hash finds its tenant, and only a well-formed hash is taken.
pub fn tenants_and_api_keys(store: &dyn Store) {
    let tenant = Tenant {
        id: "a".to_owned(),
        name: "Shop A".to_owned(),
        time_zone: "Asia/Seoul".to_owned(),
    };
    store.put_tenant(&tenant).expect("put");
    assert_eq!(store.get_tenant("a").expect("get"), Some(tenant.clone()));
    assert_eq!(store.list_tenants().expect("list"), vec![tenant]);
    let hash = "0".repeat(64);
    store.put_api_key("a", &hash).expect("put key");
    assert_eq!(
        store.tenant_for_api_key(&hash).expect("lookup").as_deref(),
        Some("a")
    );
    assert!(
        store
            .tenant_for_api_key(&"1".repeat(64))
            .expect("lookup")
            .is_none()
    );
    assert!(matches!(
        store.put_api_key("a", "plaintext-key"),
        Err(StoreError::InvalidInput(_))
    ));
}

/// Listings order ids byte-wise, whatever the database's locale: upper case before `_` before
/// lower case, the same on every store.
pub fn listings_order_text_byte_wise(store: &dyn Store) {
    for id in ["b", "B", "a", "A", "_"] {
        let tenant = Tenant {
            id: id.to_owned(),
            name: format!("Shop {id}"),
            time_zone: "UTC".to_owned(),
        };
        store.put_tenant(&tenant).expect("put tenant");
        store
            .put_rule(&StoredRule {
                tenant: "acme".to_owned(),
                id: id.to_owned(),
                version: 1,
                enabled: true,
                body: "{}".to_owned(),
                updated_at_ms: 5,
            })
            .expect("put rule");
    }
    let tenants: Vec<String> = store
        .list_tenants()
        .expect("list tenants")
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(tenants, ["A", "B", "_", "a", "b"]);
    let rules: Vec<String> = store
        .list_rules(Some("acme"))
        .expect("list rules")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(rules, ["A", "B", "_", "a", "b"]);
}

/// Replacing the API keys leaves exactly the given ones: a key not in the list (another
/// tenant's, or a tenant's old one) stops answering, a listed one may move between tenants.
pub fn replacing_api_keys_revokes_every_other_key(store: &dyn Store) {
    let (old, kept, moved) = ("1".repeat(64), "2".repeat(64), "3".repeat(64));
    store.put_api_key("a", &old).expect("put key");
    store.put_api_key("b", &kept).expect("put key");
    store.put_api_key("b", &moved).expect("put key");
    store
        .replace_api_keys(&[("b".into(), kept.clone()), ("c".into(), moved.clone())])
        .expect("replace");
    assert_eq!(store.tenant_for_api_key(&old).expect("lookup"), None);
    assert_eq!(
        store.tenant_for_api_key(&kept).expect("lookup").as_deref(),
        Some("b")
    );
    assert_eq!(
        store.tenant_for_api_key(&moved).expect("lookup").as_deref(),
        Some("c")
    );
    // A malformed hash refuses the whole replacement: nothing changes.
    assert!(matches!(
        store.replace_api_keys(&[("a".into(), "plaintext-key".into())]),
        Err(StoreError::InvalidInput(_))
    ));
    assert_eq!(
        store.tenant_for_api_key(&kept).expect("lookup").as_deref(),
        Some("b")
    );
    store.replace_api_keys(&[]).expect("replace with none");
    assert_eq!(store.tenant_for_api_key(&kept).expect("lookup"), None);
}

/// Enqueueing the same notification twice adds it once, with one delivery per distinct
/// destination; another tenant sees none of it and cannot reuse its id.
pub fn enqueue_is_idempotent_and_tenant_scoped(store: &dyn Store) {
    store.put_destination(&destination("a", "d1")).expect("put");
    store.put_destination(&destination("a", "d2")).expect("put");
    let n = notification("a", "n1", "match", &["d1", "d2", "d1"]);
    assert_eq!(
        store
            .enqueue_notifications(std::slice::from_ref(&n), 100)
            .expect("enqueue"),
        1
    );
    assert_eq!(
        store
            .enqueue_notifications(std::slice::from_ref(&n), 150)
            .expect("enqueue"),
        0
    );

    let view = store
        .get_notification("a", "n1")
        .expect("get")
        .expect("exists");
    assert_eq!(view.payload, serde_json::json!({"notification": "n1"}));
    assert_eq!(view.deliveries.len(), 2);
    assert!(
        view.deliveries
            .iter()
            .all(|d| d.status == DeliveryStatus::Pending && d.next_attempt_at_ms == Some(100))
    );
    assert!(store.get_notification("b", "n1").expect("get").is_none());
    assert!(
        store
            .list_notifications("b", &NotificationFilter::default())
            .expect("list")
            .is_empty()
    );
    // Another tenant reusing the id is refused rather than silently dropped.
    assert!(matches!(
        store.enqueue_notifications(&[notification("b", "n1", "match", &[])], 100),
        Err(StoreError::InvalidInput(_))
    ));
    assert!(matches!(
        store.enqueue_notifications(
            &[NewNotification {
                payload: "not json".to_owned(),
                ..notification("a", "n2", "match", &[])
            }],
            100
        ),
        Err(StoreError::InvalidInput(_))
    ));
    assert_eq!(
        store.delivery_counts().expect("counts"),
        vec![
            (DeliveryStatus::Pending, 2),
            (DeliveryStatus::Delivered, 0),
            (DeliveryStatus::Dead, 0)
        ]
    );
}

/// Attempts move a delivery through retry to delivered or dead, and a late report does not undo
/// a delivery.
pub fn retry_then_deliver_and_retry_then_dead(store: &dyn Store) {
    store.put_destination(&destination("a", "d1")).expect("put");
    store
        .enqueue_notifications(
            &[
                notification("a", "n1", "match", &["d1"]),
                notification("a", "n2", "match", &["d1"]),
            ],
            100,
        )
        .expect("enqueue");
    let due = store.due_deliveries(100, 10).expect("due");
    assert_eq!(due.len(), 2);
    assert_eq!(due[0].attempt, 0);
    assert_eq!(due[0].destination, destination("a", "d1"));
    assert!(store.due_deliveries(99, 10).expect("due").is_empty());

    store
        .record_attempt(
            &attempt("n1", "d1", 1, "retry"),
            DeliveryNext::RetryAt(1_000),
        )
        .expect("record");
    store
        .record_attempt(&attempt("n2", "d1", 1, "dead"), DeliveryNext::Dead)
        .expect("record");
    let due = store.due_deliveries(999, 10).expect("due");
    assert!(due.is_empty(), "{due:?}");
    let due = store.due_deliveries(1_000, 10).expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].attempt, 1);

    store
        .record_attempt(
            &attempt("n1", "d1", 2, "delivered"),
            DeliveryNext::Delivered,
        )
        .expect("record");
    let n1 = store
        .get_notification("a", "n1")
        .expect("get")
        .expect("exists");
    let d = &n1.deliveries[0];
    assert_eq!(d.status, DeliveryStatus::Delivered);
    assert_eq!(d.attempts, 2);
    assert_eq!(d.next_attempt_at_ms, None);
    assert_eq!(d.last_error, None);
    assert_eq!(d.attempt_log.len(), 2);
    assert_eq!(d.attempt_log[0].outcome, "retry");

    // A late report from a sender whose lease expired does not undo the delivery.
    store
        .record_attempt(
            &attempt("n1", "d1", 2, "retry"),
            DeliveryNext::RetryAt(5_000),
        )
        .expect("record");
    let n1 = store
        .get_notification("a", "n1")
        .expect("get")
        .expect("exists");
    assert_eq!(n1.deliveries[0].status, DeliveryStatus::Delivered);

    let n2 = store
        .get_notification("a", "n2")
        .expect("get")
        .expect("exists");
    assert_eq!(n2.deliveries[0].status, DeliveryStatus::Dead);
    assert_eq!(n2.deliveries[0].last_error.as_deref(), Some("HTTP 503"));

    let dead = store
        .list_notifications(
            "a",
            &NotificationFilter {
                status: Some(DeliveryStatus::Dead),
                ..NotificationFilter::default()
            },
        )
        .expect("list");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, "n2");
    assert!(matches!(
        store.record_attempt(&attempt("nope", "d1", 1, "retry"), DeliveryNext::Dead),
        Err(StoreError::NotFound(_))
    ));
}

/// A claim leases a delivery to one sender until the lease runs out.
pub fn claims_lease_deliveries_to_one_sender(store: &dyn Store) {
    store.put_destination(&destination("a", "d1")).expect("put");
    store
        .enqueue_notifications(&[notification("a", "n1", "match", &["d1"])], 100)
        .expect("enqueue");
    let first = store
        .claim_due_deliveries(100, 30_000, &ClaimLimits::up_to(10))
        .expect("claim");
    assert_eq!(first.len(), 1);
    assert!(
        store
            .claim_due_deliveries(100, 30_000, &ClaimLimits::up_to(10))
            .expect("claim")
            .is_empty()
    );
    assert!(
        store
            .claim_due_deliveries(30_099, 30_000, &ClaimLimits::up_to(10))
            .expect("claim")
            .is_empty()
    );
    // The sender died: after the lease, the delivery is due again.
    let again = store
        .claim_due_deliveries(30_100, 30_000, &ClaimLimits::up_to(10))
        .expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].notification_id, "n1");
}

/// A claim takes tenants' deliveries round-robin, within its per-tenant and per-destination
/// limits, and skips the tenants and destinations the sender says are busy.
pub fn claims_are_fair_across_tenants_and_skip_busy_ones(store: &dyn Store) {
    for (tenant, id) in [("a", "d1"), ("a", "d2"), ("b", "d3"), ("c", "d4")] {
        store
            .put_destination(&destination(tenant, id))
            .expect("put");
    }
    // Tenant a's backlog is older than b's and c's single deliveries.
    let backlog: Vec<NewNotification> = (0..6)
        .map(|i| notification("a", &format!("a{i}"), "match", &["d1"]))
        .chain((6..8).map(|i| notification("a", &format!("a{i}"), "match", &["d2"])))
        .collect();
    store.enqueue_notifications(&backlog, 100).expect("enqueue");
    store
        .enqueue_notifications(&[notification("b", "b0", "match", &["d3"])], 200)
        .expect("enqueue");
    store
        .enqueue_notifications(&[notification("c", "c0", "match", &["d4"])], 300)
        .expect("enqueue");
    let ids = |claimed: Vec<super::DueDelivery>| -> Vec<String> {
        claimed.into_iter().map(|d| d.notification_id).collect()
    };
    // Round-robin: a's oldest, then b's and c's, before a's second.
    let claimed = store
        .claim_due_deliveries(1_000, 60_000, &ClaimLimits::up_to(3))
        .expect("claim");
    assert_eq!(ids(claimed), ["a0", "b0", "c0"]);
    // At most 2 to a destination and 3 of a tenant.
    let limits = ClaimLimits {
        total: 10,
        per_tenant: 3,
        per_destination: 2,
        ..ClaimLimits::default()
    };
    let claimed = store
        .claim_due_deliveries(1_000, 60_000, &limits)
        .expect("claim");
    assert_eq!(ids(claimed), ["a1", "a2", "a6"]);
    // A busy destination, then a busy tenant, are skipped.
    let limits = ClaimLimits {
        total: 10,
        busy_destinations: vec![("a".to_owned(), "d1".to_owned())],
        ..ClaimLimits::default()
    };
    let claimed = store
        .claim_due_deliveries(1_000, 60_000, &limits)
        .expect("claim");
    assert_eq!(ids(claimed), ["a7"]);
    let limits = ClaimLimits {
        total: 10,
        busy_tenants: vec!["a".to_owned()],
        ..ClaimLimits::default()
    };
    assert!(
        store
            .claim_due_deliveries(1_000, 60_000, &limits)
            .expect("claim")
            .is_empty()
    );
    let claimed = store
        .claim_due_deliveries(1_000, 60_000, &ClaimLimits::up_to(10))
        .expect("claim");
    assert_eq!(ids(claimed), ["a3", "a4", "a5"]);
}

/// A delivery whose destination was deleted goes dead when claimed, with a log entry saying why.
pub fn deliveries_to_deleted_destinations_go_dead_on_claim(store: &dyn Store) {
    store.put_destination(&destination("a", "d1")).expect("put");
    store
        .enqueue_notifications(&[notification("a", "n1", "match", &["d1"])], 100)
        .expect("enqueue");
    store.delete_destination("a", "d1").expect("delete");
    assert!(
        store
            .claim_due_deliveries(100, 1_000, &ClaimLimits::up_to(10))
            .expect("claim")
            .is_empty()
    );
    let view = store
        .get_notification("a", "n1")
        .expect("get")
        .expect("exists");
    assert_eq!(view.deliveries[0].status, DeliveryStatus::Dead);
    assert_eq!(view.deliveries[0].attempt_log.len(), 1);
}

/// A notification naming another tenant's destination is never delivered there.
pub fn destination_of_another_tenant_is_never_used(store: &dyn Store) {
    store.put_destination(&destination("b", "d1")).expect("put");
    store
        .enqueue_notifications(&[notification("a", "n1", "match", &["d1"])], 100)
        .expect("enqueue");
    assert!(store.due_deliveries(100, 10).expect("due").is_empty());
    assert!(
        store
            .claim_due_deliveries(100, 1_000, &ClaimLimits::up_to(10))
            .expect("claim")
            .is_empty()
    );
}

/// Firing notifications open an alert, resolved ones close it, and a replayed firing does not
/// reopen it.
pub fn open_alerts_follow_firing_and_resolved(store: &dyn Store) {
    store
        .enqueue_notifications(&[notification("a", "f1", "firing", &[])], 100)
        .expect("enqueue");
    let mut refire = notification("a", "f2", "firing", &[]);
    refire.created_at_ms = 500;
    store
        .enqueue_notifications(&[refire], 500)
        .expect("enqueue");
    let open = store.open_alerts(Some("a")).expect("open");
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].since_ms, 100);
    assert_eq!(open[0].notification_id, "f2");
    assert!(store.open_alerts(Some("b")).expect("open").is_empty());

    store
        .enqueue_notifications(&[notification("a", "r1", "resolved", &[])], 600)
        .expect("enqueue");
    assert!(store.open_alerts(None).expect("open").is_empty());
    // Replaying the original firing after a restart adds nothing and does not reopen.
    store
        .enqueue_notifications(&[notification("a", "f1", "firing", &[])], 700)
        .expect("enqueue");
    assert!(store.open_alerts(None).expect("open").is_empty());
}

/// Notifications list newest first, a page at a time.
pub fn notification_listing_pages_newest_first(store: &dyn Store) {
    let batch: Vec<NewNotification> = (0..5)
        .map(|i| NewNotification {
            created_at_ms: 100 + i,
            ..notification("a", &format!("n{i}"), "match", &[])
        })
        .collect();
    store.enqueue_notifications(&batch, 100).expect("enqueue");
    let page = store
        .list_notifications(
            "a",
            &NotificationFilter {
                limit: 2,
                ..NotificationFilter::default()
            },
        )
        .expect("list");
    let ids: Vec<&str> = page.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["n4", "n3"]);
    let next = store
        .list_notifications(
            "a",
            &NotificationFilter {
                limit: 2,
                before: Some(NotificationCursor {
                    created_at_ms: page[1].created_at_ms,
                    id: page[1].id.clone(),
                }),
                ..NotificationFilter::default()
            },
        )
        .expect("list");
    let ids: Vec<&str> = next.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["n2", "n1"]);
}

/// Releasing claims makes leased deliveries due again at once.
pub fn release_claims_makes_leased_deliveries_due_again(store: &dyn Store) {
    store
        .put_destination(&StoredDestination {
            tenant: "a".into(),
            id: "d".into(),
            kind: "file".into(),
            config: r#"{"path":"-"}"#.into(),
            updated_at_ms: 0,
        })
        .unwrap();
    store
        .enqueue_notifications(
            &[NewNotification {
                id: "n1".into(),
                tenant: "a".into(),
                rule_id: "r".into(),
                kind: "match".into(),
                group_key: "[]".into(),
                payload: "{}".into(),
                created_at_ms: 0,
                destination_ids: vec!["d".into()],
            }],
            0,
        )
        .unwrap();
    assert_eq!(
        store
            .claim_due_deliveries(10, 60_000, &ClaimLimits::up_to(10))
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .claim_due_deliveries(20, 60_000, &ClaimLimits::up_to(10))
            .unwrap()
            .is_empty(),
        "leased"
    );
    assert_eq!(store.release_claims(30).unwrap(), 1);
    assert_eq!(
        store
            .claim_due_deliveries(30, 60_000, &ClaimLimits::up_to(10))
            .unwrap()
            .len(),
        1,
        "due again after release"
    );
}

/// A step's notifications and its checkpoint meta key are written together, or not at all.
pub fn a_step_commits_its_notifications_and_checkpoint_together(store: &dyn Store) {
    store
        .put_destination(&destination("a", "d1"))
        .expect("dest");
    let step = vec![
        (100, vec![notification("a", "now", "match", &["d1"])]),
        (
            5_000,
            vec![notification("a", "after-quiet-hours", "match", &["d1"])],
        ),
    ];
    let new = store
        .commit_step(&step, Some(("engine.processed_seq", "42")))
        .expect("commit");
    assert_eq!(new, 2);
    let processed = || store.get_meta("engine.processed_seq").expect("meta");
    assert_eq!(processed().as_deref(), Some("42"));
    // Each group is due at its own time.
    let due: Vec<String> = store
        .due_deliveries(100, 10)
        .expect("due")
        .into_iter()
        .map(|d| d.notification_id)
        .collect();
    assert_eq!(due, ["now"]);
    assert_eq!(store.due_deliveries(5_000, 10).expect("due").len(), 2);
    // A replayed step (after a restart) adds nothing and moves the checkpoint.
    assert_eq!(
        store
            .commit_step(&step, Some(("engine.processed_seq", "43")))
            .expect("replay"),
        0
    );
    assert_eq!(processed().as_deref(), Some("43"));
    // A bad payload or the reserved key refuses the whole step: nothing of it is written.
    let mut bad = notification("a", "bad", "match", &["d1"]);
    bad.payload = "{not json".into();
    let refused = vec![(100, vec![notification("a", "ok", "match", &["d1"]), bad])];
    assert!(matches!(
        store.commit_step(&refused, Some(("engine.processed_seq", "44"))),
        Err(StoreError::InvalidInput(_))
    ));
    assert!(matches!(
        store.commit_step(
            &[(100, vec![notification("a", "ok", "match", &[])])],
            Some(("schema_version", "9"))
        ),
        Err(StoreError::InvalidInput(_))
    ));
    assert_eq!(processed().as_deref(), Some("43"));
    assert_eq!(store.due_deliveries(5_000, 10).expect("due").len(), 2);
}

/// Meta values round-trip, and the schema version key cannot be set.
pub fn meta_round_trips_and_guards_schema_version(store: &dyn Store) {
    assert_eq!(store.get_meta("checkpoint").expect("get"), None);
    store.set_meta("checkpoint", "42").expect("set");
    store.set_meta("checkpoint", "43").expect("set");
    assert_eq!(
        store.get_meta("checkpoint").expect("get").as_deref(),
        Some("43")
    );
    assert!(store.set_meta("schema_version", "9").is_err());
}

fn report(tenant: &str, id: &str) -> StoredReport {
    StoredReport {
        tenant: tenant.into(),
        id: id.into(),
        version: 1,
        enabled: true,
        body: r#"{"name":"weekly"}"#.into(),
        updated_at_ms: 5,
    }
}

fn run(tenant: &str, report_id: &str, run_id: &str, scheduled_ms: i64) -> NewReportRun {
    NewReportRun {
        tenant: tenant.into(),
        report_id: report_id.into(),
        run_id: run_id.into(),
        version: 1,
        scheduled_ms,
        trigger: "schedule".into(),
        created_at_ms: scheduled_ms + 3,
    }
}

/// Reports are keyed by (tenant, id): two tenants may use the same id, and neither sees, nor
/// deletes, the other's.
pub fn reports_are_tenant_scoped(store: &dyn Store) {
    store.put_report(&report("a", "weekly")).expect("put");
    store
        .put_report(&StoredReport {
            body: r#"{"name":"b's"}"#.into(),
            ..report("b", "weekly")
        })
        .expect("put");
    assert_eq!(
        store.get_report("a", "weekly").expect("get"),
        Some(report("a", "weekly"))
    );
    assert_eq!(store.list_reports(Some("a")).expect("list").len(), 1);
    assert_eq!(store.list_reports(None).expect("list").len(), 2);
    assert!(!store.delete_report("a", "monthly").expect("delete"));
    assert!(store.delete_report("a", "weekly").expect("delete"));
    assert!(store.get_report("a", "weekly").expect("get").is_none());
    assert_eq!(
        store
            .get_report("b", "weekly")
            .expect("get")
            .map(|r| r.body),
        Some(r#"{"name":"b's"}"#.to_string())
    );
}

/// A run id is recorded once however often it becomes due; finishing it enqueues its
/// notifications in the same transaction, and a second finish (a regenerated run after a
/// crash) changes nothing and enqueues nothing.
pub fn report_runs_are_added_once_and_finished_once_with_their_notifications(store: &dyn Store) {
    store.put_destination(&destination("a", "d1")).expect("put");
    store.put_report(&report("a", "weekly")).expect("put");
    let runs = [
        run("a", "weekly", "run_1", 1_000),
        run("a", "weekly", "run_2", 2_000),
    ];
    assert_eq!(store.add_runs(&runs).expect("add"), 2);
    assert_eq!(store.add_runs(&runs).expect("add again"), 0);
    assert_eq!(
        store
            .add_runs(&[run("b", "weekly", "run_1", 1_000)])
            .expect("other tenant"),
        1
    );
    let due = store.due_runs(10).expect("due");
    assert_eq!(
        due.iter()
            .map(|r| (r.tenant.as_str(), r.run_id.as_str()))
            .collect::<Vec<_>>(),
        [("a", "run_1"), ("b", "run_1"), ("a", "run_2")]
    );
    assert!(due.iter().all(|r| r.status == RunStatus::Due));

    let mut n = notification("a", "ntf_run_1_d1", REPORT_KIND, &["d1"]);
    n.rule_id = "weekly".into();
    n.group_key = "run_1".into();
    let finished = FinishedRun {
        tenant: "a".into(),
        run_id: "run_1".into(),
        status: RunStatus::Partial,
        generated_at_ms: 1_500,
        generation_ms: 120,
        error: Some("block top: unknown measure".into()),
    };
    assert!(
        store
            .finish_run(&finished, std::slice::from_ref(&n))
            .expect("finish")
    );
    assert!(
        !store
            .finish_run(
                &FinishedRun {
                    status: RunStatus::Complete,
                    ..finished.clone()
                },
                &[notification("a", "ntf_other", REPORT_KIND, &["d1"])]
            )
            .expect("finish again")
    );
    assert!(
        store
            .get_notification("a", "ntf_other")
            .expect("get")
            .is_none()
    );
    let done = store.get_run("a", "run_1").expect("get").expect("exists");
    assert_eq!(done.status, RunStatus::Partial);
    assert_eq!(done.generation_ms, Some(120));
    assert_eq!(done.error.as_deref(), Some("block top: unknown measure"));
    assert_eq!(
        store.get_run("b", "run_1").expect("get").map(|r| r.status),
        Some(RunStatus::Due)
    );
    let sent = store
        .run_notifications("a", "run_1")
        .expect("notifications");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].deliveries.len(), 1);
    assert_eq!(sent[0].deliveries[0].status, DeliveryStatus::Pending);
    assert!(
        store
            .run_notifications("b", "run_1")
            .expect("other tenant")
            .is_empty()
    );
    assert_eq!(
        store
            .list_runs("a", "weekly", 10)
            .expect("list")
            .iter()
            .map(|r| r.run_id.as_str())
            .collect::<Vec<_>>(),
        ["run_2", "run_1"]
    );
    assert!(matches!(
        store.finish_run(
            &FinishedRun {
                status: RunStatus::Due,
                ..finished
            },
            &[]
        ),
        Err(StoreError::InvalidInput(_))
    ));
    store
        .add_runs(&[NewReportRun {
            trigger: "manual".into(),
            ..run("a", "weekly", "run_3", 9_000)
        }])
        .expect("manual run");
    assert_eq!(
        store.last_scheduled_runs().expect("last"),
        [
            ("a".to_string(), "weekly".to_string(), 2_000),
            ("b".to_string(), "weekly".to_string(), 1_000)
        ]
    );
}

fn position(source: &str, partition: u32, next_offset: i64) -> SourcePosition {
    SourcePosition {
        source: source.to_owned(),
        partition,
        next_offset,
    }
}

fn dead_letter(tenant: Option<&str>, offset: i64) -> NewDeadLetter {
    NewDeadLetter {
        source: "orders".to_owned(),
        tenant: tenant.map(str::to_owned),
        topic: "orders".to_owned(),
        partition: 1,
        offset,
        raw: b"{not json".to_vec(),
        raw_len: 9,
        error: "not JSON".to_owned(),
    }
}

/// A source batch's partition positions and dead letters are durable with its events: the next
/// batch's position replaces the stored one, a batch of refused records alone still moves its
/// partition on, and a tenant sees only its own dead letters (none of a record whose tenant is
/// unknown).
pub fn source_positions_and_dead_letters_commit_with_their_events(store: &dyn Store) {
    assert!(store.source_positions("orders").expect("read").is_empty());
    let mut progress = SourceProgress {
        positions: vec![position("orders", 0, 10), position("orders", 1, 4)],
        dead_letters: vec![dead_letter(Some("a"), 3)],
    };
    progress.merge(SourceProgress {
        positions: vec![position("orders", 1, 7), position("orders", 0, 9)],
        dead_letters: vec![dead_letter(None, 6)],
    });
    let outcomes = store
        .append_from_source(&[event("a", "e1"), event("a", "e2")], &progress)
        .expect("append");
    assert_eq!(outcomes.len(), 2);
    assert_eq!(
        store.source_positions("orders").expect("read"),
        vec![position("orders", 0, 10), position("orders", 1, 7)]
    );
    assert!(store.source_positions("other").expect("read").is_empty());

    // Only refused records: the position still moves.
    let outcomes = store
        .append_from_source(
            &[],
            &SourceProgress {
                positions: vec![position("orders", 1, 8)],
                dead_letters: vec![dead_letter(Some("a"), 7)],
            },
        )
        .expect("append");
    assert!(outcomes.is_empty());
    assert_eq!(
        store.source_positions("orders").expect("read")[1],
        position("orders", 1, 8)
    );

    let letters = store.dead_letters("a", 0, 10).expect("read");
    assert_eq!(
        letters.iter().map(|d| d.letter.offset).collect::<Vec<_>>(),
        vec![3, 7]
    );
    assert_eq!(letters[0].letter, dead_letter(Some("a"), 3));
    assert!(letters[0].id < letters[1].id);
    let after = store.dead_letters("a", letters[0].id, 10).expect("read");
    assert_eq!(after.len(), 1);
    assert!(store.dead_letters("b", 0, 10).expect("read").is_empty());
    assert_eq!(store.event_count("a").expect("count"), 2);
}
