//! The CRM behaviours of the store contract: contacts and audiences (their members, change log,
//! sizes and the audience engine's position), and campaigns with their sends.

use super::notification;
use crate::store::{
    AudienceSize, AudienceStep, CampaignSend, Member, MembershipChangeRow, NewSend,
    NotificationFilter, SendOutcome, SendStatus, Store, StoredAudience, StoredCampaign,
    StoredContact,
};

fn contact(tenant: &str, id: &str, email: &str) -> StoredContact {
    StoredContact {
        tenant: tenant.to_owned(),
        id: id.to_owned(),
        body: format!(r#"{{"email":"{email}"}}"#),
        updated_at_ms: 5,
    }
}

fn change(tenant: &str, contact: &str, at_ms: i64, entered: bool) -> MembershipChangeRow {
    MembershipChangeRow {
        tenant: tenant.to_owned(),
        audience: "vip".to_owned(),
        contact: contact.to_owned(),
        at_ms,
        entered,
    }
}

/// Contacts and audiences are keyed by (tenant, id); listing pages in (tenant, id) order; a
/// bulk upsert replaces what it names and keeps the rest.
pub fn contacts_and_audiences_are_tenant_scoped(store: &dyn Store) {
    store
        .put_contacts(&[
            contact("a", "c1", "one@a.example"),
            contact("a", "c2", "two@a.example"),
            contact("b", "c1", "one@b.example"),
        ])
        .expect("put");
    store
        .put_contacts(&[contact("a", "c1", "new@a.example")])
        .expect("replace");
    assert_eq!(
        store.get_contact("a", "c1").expect("get").map(|c| c.body),
        Some(r#"{"email":"new@a.example"}"#.to_owned())
    );
    assert_eq!(
        store.get_contact("b", "c1").expect("get").map(|c| c.body),
        Some(r#"{"email":"one@b.example"}"#.to_owned())
    );
    assert_eq!(store.contact_count("a").expect("count"), 2);
    let page = store.list_contacts(None, None, 2).expect("list");
    assert_eq!(
        page.iter()
            .map(|c| (c.tenant.as_str(), c.id.as_str()))
            .collect::<Vec<_>>(),
        [("a", "c1"), ("a", "c2")]
    );
    let rest = store
        .list_contacts(None, Some(("a", "c2")), 10)
        .expect("list");
    assert_eq!(
        rest.iter()
            .map(|c| (c.tenant.as_str(), c.id.as_str()))
            .collect::<Vec<_>>(),
        [("b", "c1")]
    );
    assert_eq!(
        store
            .list_contacts(Some("b"), None, 10)
            .expect("list")
            .len(),
        1
    );
    assert!(
        store
            .put_contacts(&[contact("a", "", "x@a.example")])
            .is_err()
    );
    assert!(store.delete_contact("a", "c2").expect("delete"));
    assert!(!store.delete_contact("a", "c2").expect("delete again"));
    assert_eq!(store.contact_count("a").expect("count"), 1);

    let audience = StoredAudience {
        tenant: "a".into(),
        id: "vip".into(),
        version: 1,
        body: r#"{"where":{}}"#.into(),
        updated_at_ms: 9,
    };
    store.put_audience(&audience).expect("put audience");
    store
        .put_audience(&StoredAudience {
            tenant: "b".into(),
            ..audience.clone()
        })
        .expect("put audience");
    assert_eq!(
        store.get_audience("a", "vip").expect("get"),
        Some(audience.clone())
    );
    assert_eq!(store.list_audiences(Some("a")).expect("list").len(), 1);
    assert_eq!(store.list_audiences(None).expect("list").len(), 2);
    assert!(store.delete_audience("a", "vip").expect("delete"));
    assert!(store.get_audience("a", "vip").expect("get").is_none());
    assert!(store.get_audience("b", "vip").expect("get").is_some());
}

/// One step's contact changes, membership changes, sizes and position are written together;
/// members follow the changes; deleting a contact or an audience removes its memberships.
pub fn an_audience_step_commits_members_log_sizes_and_position_together(store: &dyn Store) {
    assert_eq!(store.audience_position().expect("position"), 0);
    store
        .put_audience(&StoredAudience {
            tenant: "a".into(),
            id: "vip".into(),
            version: 1,
            body: "{}".into(),
            updated_at_ms: 1,
        })
        .expect("put audience");
    store
        .put_contacts(&[
            contact("a", "c1", "1@a.example"),
            contact("a", "c2", "2@a.example"),
        ])
        .expect("put");
    store
        .commit_audience_step(&AudienceStep {
            contacts_put: vec![contact("a", "c3", "3@a.example")],
            contacts_deleted: vec![],
            changes: vec![
                change("a", "c1", 1_000, true),
                change("a", "c2", 1_000, true),
                change("a", "c3", 1_000, true),
            ],
            sizes: vec![AudienceSize {
                tenant: "a".into(),
                audience: "vip".into(),
                at_ms: 1_000,
                size: 3,
            }],
            new_event_types: vec![("a".into(), "order".into()), ("b".into(), "visit".into())],
            position: 17,
        })
        .expect("step");
    assert_eq!(store.audience_position().expect("position"), 17);
    assert_eq!(
        store.known_event_types().expect("types"),
        [
            ("a".to_owned(), "order".to_owned()),
            ("b".to_owned(), "visit".to_owned())
        ]
    );
    assert!(store.get_contact("a", "c3").expect("get").is_some());
    assert_eq!(store.audience_size("a", "vip").expect("size"), 3);
    store
        .commit_audience_step(&AudienceStep {
            contacts_put: vec![],
            contacts_deleted: vec![("a".into(), "c3".into())],
            changes: vec![change("a", "c2", 61_000, false)],
            sizes: vec![AudienceSize {
                tenant: "a".into(),
                audience: "vip".into(),
                at_ms: 61_000,
                size: 1,
            }],
            new_event_types: vec![("a".into(), "order".into())],
            position: 18,
        })
        .expect("step");
    assert!(store.get_contact("a", "c3").expect("get").is_none());
    let members = store
        .audience_members("a", "vip", None, 10)
        .expect("members");
    assert_eq!(
        members,
        [Member {
            contact: "c1".into(),
            since_ms: 1_000
        }]
    );
    assert_eq!(store.all_members().expect("all").len(), 1);
    assert!(store.is_member("a", "vip", "c1").expect("member"));
    assert!(!store.is_member("a", "vip", "c2").expect("member"));
    assert!(!store.is_member("b", "vip", "c1").expect("member"));
    assert!(
        store
            .audience_members("b", "vip", None, 10)
            .expect("members")
            .is_empty()
    );
    let sizes = store.audience_sizes("a", Some("vip"), 0).expect("sizes");
    assert_eq!(
        sizes.iter().map(|s| (s.at_ms, s.size)).collect::<Vec<_>>(),
        [(1_000, 3), (61_000, 1)]
    );
    let history = store
        .membership_changes("a", None, Some("c2"), 10)
        .expect("changes");
    assert_eq!(
        history
            .iter()
            .map(|c| (c.at_ms, c.entered))
            .collect::<Vec<_>>(),
        [(61_000, false), (1_000, true)]
    );
    assert!(store.delete_contact("a", "c1").expect("delete"));
    assert_eq!(store.audience_size("a", "vip").expect("size"), 0);
    store
        .commit_audience_step(&AudienceStep {
            changes: vec![change("a", "c2", 62_000, true)],
            position: 19,
            ..AudienceStep::default()
        })
        .expect("step");
    assert!(store.delete_audience("a", "vip").expect("delete"));
    assert!(store.all_members().expect("all").is_empty());
    assert!(
        store
            .audience_sizes("a", None, 0)
            .expect("sizes")
            .is_empty()
    );
}

/// The membership log as campaigns read it: (at_ms, contact, entered) after position 0.
fn log(store: &dyn Store) -> Vec<(i64, String, bool)> {
    store
        .membership_changes_after(0, 100)
        .expect("log")
        .into_iter()
        .map(|(_, c)| (c.at_ms, c.contact, c.entered))
        .collect()
}

/// Pruning the membership log removes, oldest first and in bounded batches, only changes older
/// than the horizon that the campaigns have followed; it stops at the first newer or unfollowed
/// change, leaves members and sizes as they are, and never gives a deleted change's number to a
/// new one (which campaigns would then skip).
pub fn the_membership_log_is_pruned_from_its_old_followed_front(store: &dyn Store) {
    let step = |changes: Vec<MembershipChangeRow>, size: u64, position: u64| {
        let at_ms = changes.last().map_or(0, |c| c.at_ms);
        store
            .commit_audience_step(&AudienceStep {
                changes,
                sizes: vec![AudienceSize {
                    tenant: "a".into(),
                    audience: "vip".into(),
                    at_ms,
                    size,
                }],
                position,
                ..AudienceStep::default()
            })
            .expect("step");
    };
    let follow_to = |position: u64| {
        store
            .add_sends(&[], Some(position), None)
            .expect("move the campaigns' position");
    };
    step(
        vec![
            change("a", "c1", 1_000, true),
            change("a", "c2", 1_000, true),
            change("a", "c3", 1_000, true),
        ],
        3,
        1,
    );
    step(vec![change("a", "c2", 2_000, false)], 2, 2);
    step(
        vec![
            change("a", "c4", 50_000, true),
            change("a", "c3", 50_000, false),
        ],
        2,
        3,
    );
    // An old instant logged after a recent one: behind the front, so it waits for it.
    step(vec![change("a", "c5", 3_000, true)], 3, 4);
    let seqs: Vec<u64> = store
        .membership_changes_after(0, 100)
        .expect("log")
        .iter()
        .map(|(seq, _)| *seq)
        .collect();
    assert_eq!(seqs.len(), 7);
    let members = store.all_members().expect("members");
    let sizes = store.audience_sizes("a", None, 0).expect("sizes");
    assert_eq!(
        members
            .iter()
            .map(|(_, _, m)| m.contact.as_str())
            .collect::<Vec<_>>(),
        ["c1", "c4", "c5"]
    );

    assert_eq!(
        store.prune_membership_changes(10_000, 100).expect("prune"),
        0,
        "nothing the campaigns have not followed goes"
    );
    follow_to(seqs[1]);
    assert_eq!(store.prune_membership_changes(10_000, 0).expect("prune"), 0);
    assert_eq!(
        store.prune_membership_changes(10_000, 100).expect("prune"),
        2
    );
    assert_eq!(
        log(store)[0],
        (1_000, "c3".to_owned(), true),
        "an old change the campaigns have not followed stays"
    );

    follow_to(seqs[6]);
    assert_eq!(
        store.prune_membership_changes(10_000, 1).expect("prune"),
        1,
        "one batch is at most `limit` changes"
    );
    assert_eq!(
        store.prune_membership_changes(10_000, 100).expect("prune"),
        1
    );
    assert_eq!(
        store.prune_membership_changes(10_000, 100).expect("prune"),
        0
    );
    assert_eq!(
        log(store),
        [
            (50_000, "c4".to_owned(), true),
            (50_000, "c3".to_owned(), false),
            (3_000, "c5".to_owned(), true),
        ],
        "recent changes stay, and so does what was logged after them"
    );
    assert!(
        store
            .membership_changes("a", None, Some("c2"), 10)
            .expect("history")
            .is_empty(),
        "a contact's pruned history is gone"
    );
    assert_eq!(store.all_members().expect("members"), members);
    assert_eq!(store.audience_sizes("a", None, 0).expect("sizes"), sizes);
    assert!(store.is_member("a", "vip", "c1").expect("member"));
    assert_eq!(store.audience_size("a", "vip").expect("size"), 3);

    // Everything followed and old: the log empties, and the next change is still one the
    // campaigns follow.
    assert_eq!(
        store
            .prune_membership_changes(i64::MAX, 100)
            .expect("prune"),
        3
    );
    assert!(log(store).is_empty());
    step(vec![change("a", "c6", 60_000, true)], 4, 5);
    let next = store
        .membership_changes_after(seqs[6], 10)
        .expect("after the position");
    assert_eq!(
        next.iter()
            .map(|(_, c)| (c.contact.as_str(), c.at_ms))
            .collect::<Vec<_>>(),
        [("c6", 60_000)]
    );
    assert_eq!(store.all_members().expect("members").len(), 4);
}

fn send(contact: &str, instance: &str, due_ms: i64) -> NewSend {
    NewSend {
        tenant: "a".into(),
        campaign: "winback".into(),
        instance: instance.into(),
        contact: contact.into(),
        channel: "email".into(),
        due_ms,
    }
}

/// A send's key is its idempotency key: added twice it is one send; finished, it enqueues its
/// notification in the same transaction, and finishing it again changes and enqueues nothing.
/// Held sends come due again; the campaigns' position moves with the sends it produced.
pub fn campaign_sends_are_added_once_and_finished_once_with_their_notifications(store: &dyn Store) {
    let campaign = StoredCampaign {
        tenant: "a".into(),
        id: "winback".into(),
        version: 1,
        body: "{}".into(),
        expanded_at_ms: None,
        updated_at_ms: 1,
    };
    store.put_campaign(&campaign).expect("put");
    assert_eq!(
        store.get_campaign("a", "winback").expect("get"),
        Some(campaign)
    );
    assert!(store.get_campaign("b", "winback").expect("get").is_none());
    assert_eq!(store.campaign_position().expect("position"), 0);
    let added = store
        .add_sends(
            &[
                send("c1", "enter@100", 100),
                send("c2", "enter@100", 100),
                send("c1", "enter@100", 100),
            ],
            Some(7),
            Some(("a", "winback", 50)),
        )
        .expect("add");
    assert_eq!(added, 2, "the repeated key is one send");
    assert_eq!(store.campaign_position().expect("position"), 7);
    assert_eq!(
        store
            .get_campaign("a", "winback")
            .expect("get")
            .and_then(|c| c.expanded_at_ms),
        Some(50)
    );
    // A new version of the campaign keeps the listing the campaign thread recorded: an edit
    // racing the listing cannot make it list again.
    store
        .put_campaign(&StoredCampaign {
            tenant: "a".into(),
            id: "winback".into(),
            version: 2,
            body: "{\"edited\": true}".into(),
            expanded_at_ms: None,
            updated_at_ms: 2,
        })
        .expect("put again");
    let edited = store
        .get_campaign("a", "winback")
        .expect("get")
        .expect("there");
    assert_eq!(
        (
            edited.version,
            edited.body.as_str(),
            edited.expanded_at_ms,
            edited.updated_at_ms
        ),
        (2, "{\"edited\": true}", Some(50), 2)
    );
    assert_eq!(
        store
            .add_sends(&[send("c1", "enter@100", 100)], None, None)
            .expect("add"),
        0,
        "a send already there is left alone"
    );
    assert!(store.due_sends(99, 10).expect("due").is_empty());
    let due = store.due_sends(100, 10).expect("due");
    assert_eq!(due.len(), 2);
    assert!(due.iter().all(|s| s.status == SendStatus::Pending));
    let sent = SendOutcome {
        send: send("c1", "enter@100", 100),
        status: SendStatus::Sent,
        reason: None,
        notification: Some(notification("a", "n-c1", "campaign", &[])),
    };
    let held = SendOutcome {
        send: send("c2", "enter@100", 500),
        status: SendStatus::Held,
        reason: Some("quiet hours".into()),
        notification: None,
    };
    store
        .finish_sends(&[sent.clone(), held], 120)
        .expect("finish");
    store.finish_sends(&[sent], 130).expect("finish again");
    assert_eq!(
        store
            .list_notifications("a", &NotificationFilter::default())
            .expect("notifications")
            .len(),
        1
    );
    assert!(store.due_sends(499, 10).expect("due").is_empty());
    let due: Vec<CampaignSend> = store.due_sends(500, 10).expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].status, SendStatus::Held);
    store
        .finish_sends(
            &[SendOutcome {
                send: send("c2", "enter@100", 500),
                status: SendStatus::Capped,
                reason: Some("1 message per day".into()),
                notification: None,
            }],
            600,
        )
        .expect("finish");
    let counts = store.campaign_counts("a", "winback").expect("counts");
    assert_eq!(counts.get(&SendStatus::Sent), Some(&1));
    assert_eq!(counts.get(&SendStatus::Capped), Some(&1));
    assert_eq!(store.sent_since("a", "c1", 120).expect("count"), 1);
    assert_eq!(store.sent_since("a", "c1", 121).expect("count"), 0);
    assert_eq!(
        store.contact_sends("a", "c2", 10).expect("sends")[0].status,
        SendStatus::Capped
    );
    store
        .add_sends(&[send("c3", "enter@900", 900)], None, None)
        .expect("add");
    assert!(store.delete_campaign("a", "winback").expect("delete"));
    assert!(
        store.due_sends(i64::MAX, 10).expect("due").is_empty(),
        "waiting sends go with it"
    );
    assert_eq!(
        store.contact_sends("a", "c1", 10).expect("sends").len(),
        1,
        "history stays"
    );
}
