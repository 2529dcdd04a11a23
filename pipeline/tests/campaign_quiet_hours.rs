//! Quiet hours across a DST change, decided by the campaign rounds against a real store: a
//! contact in America/New_York or Europe/Berlin enters an audience at 22:30 local on the night
//! the clocks change; the campaign's message is held through its quiet hours (21:00–08:00) and
//! enqueued exactly at 08:00 local the next morning — a real instant an hour closer (spring) or
//! further (fall) than the local times suggest — and never again, also after a reopen.
//!
//! The rounds run on a clock the test moves (`campaigns::round` takes the instant), through the
//! whole night in ten-minute steps and at the millisecond before and at the release.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use connectors::store::{
    AudienceStep, MembershipChangeRow, NotificationFilter, SendStatus, Store, StoredCampaign,
    StoredContact, StoredDestination,
};
use pipeline::campaigns::{self, CampaignContext, TokenKey};
use serde_json::json;

const TENANT: &str = "shop";
const CAMPAIGN: &str = "welcome";
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// One contact's night: it enters at `entered` and must get its message at `released`, both
/// written out as UTC instants (worked out from the zone's rules, not by the code under test).
struct Night {
    contact: &'static str,
    zone: &'static str,
    entered: &'static str,
    released: &'static str,
    /// Real time from entering to the release: 9h30 of local time, less or more the hour the
    /// clocks move.
    held_for_ms: i64,
}

const NIGHTS: [Night; 4] = [
    // New York springs forward at 02:00 EST on Sunday 2026-03-08: 22:30 EST Saturday to
    // 08:00 EDT Sunday.
    Night {
        contact: "ny-spring",
        zone: "America/New_York",
        entered: "2026-03-08T03:30:00Z",
        released: "2026-03-08T12:00:00Z",
        held_for_ms: 8 * HOUR + 30 * MINUTE,
    },
    // Berlin springs forward at 02:00 CET on Sunday 2026-03-29: 22:30 CET to 08:00 CEST.
    Night {
        contact: "berlin-spring",
        zone: "Europe/Berlin",
        entered: "2026-03-28T21:30:00Z",
        released: "2026-03-29T06:00:00Z",
        held_for_ms: 8 * HOUR + 30 * MINUTE,
    },
    // Berlin falls back at 03:00 CEST on Sunday 2026-10-25: 22:30 CEST to 08:00 CET.
    Night {
        contact: "berlin-fall",
        zone: "Europe/Berlin",
        entered: "2026-10-24T20:30:00Z",
        released: "2026-10-25T07:00:00Z",
        held_for_ms: 10 * HOUR + 30 * MINUTE,
    },
    // New York falls back at 02:00 EDT on Sunday 2026-11-01: 22:30 EDT to 08:00 EST.
    Night {
        contact: "ny-fall",
        zone: "America/New_York",
        entered: "2026-11-01T02:30:00Z",
        released: "2026-11-01T13:00:00Z",
        held_for_ms: 10 * HOUR + 30 * MINUTE,
    },
];

fn ms(utc: &str) -> i64 {
    DateTime::parse_from_rfc3339(utc)
        .unwrap_or_else(|e| panic!("{utc}: {e}"))
        .timestamp_millis()
}

fn local(at_ms: i64, zone: &str) -> String {
    let zone: Tz = zone.parse().expect("zone");
    DateTime::<Utc>::from_timestamp_millis(at_ms)
        .expect("instant")
        .with_timezone(&zone)
        .format("%Y-%m-%d %H:%M %Z")
        .to_string()
}

fn campaign_context(store: Arc<dyn Store>) -> CampaignContext {
    CampaignContext {
        store,
        templates: Default::default(),
        public_url: "https://crm.shop.example".into(),
        key: TokenKey::new(vec![7; 32]),
    }
}

/// The tenant's email destination, a triggered campaign with quiet hours 21:00–08:00 (defined
/// at the start of 2026, so it follows every change of the year), and the contacts.
fn define(store: &dyn Store) {
    let start_of_2026 = ms("2026-01-01T00:00:00Z");
    store
        .put_destination(&StoredDestination {
            tenant: TENANT.into(),
            id: "mail".into(),
            kind: "email".into(),
            config: json!({"host": "127.0.0.1", "port": 2525, "tls": "none",
                           "from": "Shop <news@shop.example>", "to": ["ops@shop.example"]})
            .to_string(),
            updated_at_ms: start_of_2026,
        })
        .expect("destination");
    store
        .put_campaign(&StoredCampaign {
            tenant: TENANT.into(),
            id: CAMPAIGN.into(),
            version: 1,
            body: json!({
                "trigger": {"type": "enter", "audience": "buyers"},
                "channel": "email", "destination": "mail",
                "content": {"subject": "Welcome", "text": "Hello {{ contact.first_name }}"},
                "quiet_hours": {"from": "21:00", "to": "08:00"},
            })
            .to_string(),
            expanded_at_ms: None,
            updated_at_ms: start_of_2026,
        })
        .expect("campaign");
    let contacts: Vec<StoredContact> = NIGHTS
        .iter()
        .map(|night| StoredContact {
            tenant: TENANT.into(),
            id: night.contact.into(),
            body: json!({"email": format!("{}@shop.example", night.contact),
                         "time_zone": night.zone, "consent": {"email": true},
                         "attributes": {"first_name": night.contact}})
            .to_string(),
            updated_at_ms: start_of_2026,
        })
        .collect();
    store.put_contacts(&contacts).expect("contacts");
}

/// The campaign's notifications to `contact` in the outbox.
fn notifications_to(store: &dyn Store, contact: &str) -> Vec<(String, i64)> {
    store
        .list_notifications(TENANT, &NotificationFilter::default())
        .expect("notifications")
        .into_iter()
        .filter(|n| n.payload["recipient"] == format!("{contact}@shop.example"))
        .map(|n| (n.id, n.created_at_ms))
        .collect()
}

#[test]
fn quiet_hours_hold_a_campaign_message_across_dst_and_release_it_once_at_local_eight() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("tidemark.db");
    let store = connectors::store::open(&path).expect("open the store");
    define(store.as_ref());
    let context = campaign_context(store.clone());
    let round = |now: i64| {
        // A round that found work may have more: run until it says it has none, as the
        // thread does before it sleeps.
        while campaigns::round(&context, now).expect("round") {}
    };

    for (position, night) in (1u64..).zip(&NIGHTS) {
        let (entered, released) = (ms(night.entered), ms(night.released));
        assert_eq!(
            released - entered,
            night.held_for_ms,
            "the test's own arithmetic"
        );
        assert!(local(entered, night.zone).contains("22:30"));
        assert!(local(released, night.zone).contains("08:00"));
        store
            .commit_audience_step(&AudienceStep {
                changes: vec![MembershipChangeRow {
                    tenant: TENANT.into(),
                    audience: "buyers".into(),
                    contact: night.contact.into(),
                    at_ms: entered,
                    entered: true,
                }],
                position,
                ..AudienceStep::default()
            })
            .expect("the contact enters");

        // Through the night, across the change of the clocks: held, due at the release.
        let night_long = (0..)
            .map(|step| entered + step * 10 * MINUTE)
            .take_while(|&now| now < released)
            .chain([released - 1]);
        for now in night_long {
            round(now);
            assert!(
                notifications_to(store.as_ref(), night.contact).is_empty(),
                "{}: nothing may go out at {}",
                night.contact,
                local(now, night.zone)
            );
            let sends = store
                .contact_sends(TENANT, night.contact, 10)
                .expect("the contact's messages");
            assert_eq!(sends.len(), 1, "{}: {sends:?}", night.contact);
            assert_eq!(sends[0].status, SendStatus::Held, "{}", night.contact);
            assert_eq!(
                sends[0].send.due_ms,
                released,
                "{}: held until {}, not {}",
                night.contact,
                local(released, night.zone),
                local(sends[0].send.due_ms, night.zone)
            );
            assert_eq!(
                sends[0].reason.as_deref(),
                Some(format!("quiet hours in {}", night.zone).as_str())
            );
        }

        // 08:00 local: sent, at that instant, once.
        round(released);
        let sent = notifications_to(store.as_ref(), night.contact);
        assert_eq!(sent.len(), 1, "{}: {sent:?}", night.contact);
        assert_eq!(
            sent[0].1,
            released,
            "{}: enqueued at {}",
            night.contact,
            local(sent[0].1, night.zone)
        );
        let sends = store
            .contact_sends(TENANT, night.contact, 10)
            .expect("the contact's messages");
        assert_eq!(
            (sends.len(), sends[0].status, sends[0].updated_at_ms),
            (1, SendStatus::Sent, released)
        );
        round(released);
        round(released + HOUR);
        assert_eq!(
            notifications_to(store.as_ref(), night.contact),
            sent,
            "{}: once",
            night.contact
        );
    }

    // Reopened, later in the year: every night's message went out once and nothing goes again.
    drop(context);
    drop(store);
    let store = connectors::store::open(&path).expect("reopen the store");
    let context = campaign_context(store.clone());
    for now in [ms("2026-11-02T12:00:00Z"), ms("2026-12-31T23:59:59Z")] {
        while campaigns::round(&context, now).expect("round") {}
    }
    for night in &NIGHTS {
        let sent = notifications_to(store.as_ref(), night.contact);
        assert_eq!(
            sent.iter().map(|(_, at)| *at).collect::<Vec<_>>(),
            [ms(night.released)],
            "{}",
            night.contact
        );
    }
    let counts = store
        .campaign_counts(TENANT, CAMPAIGN)
        .expect("the campaign's counts");
    assert_eq!(
        counts.into_iter().collect::<Vec<_>>(),
        [(SendStatus::Sent, 4)]
    );
}
