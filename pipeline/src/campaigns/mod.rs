//! CRM campaigns: messages to contacts when they enter or leave an audience, and announcements.
//!
//! ```text
//! audience_changes (committed by the audience thread) ─┐
//! announcements due (campaigns, `at` reached) ─────────┤  "tidemark-campaigns" thread
//!                                                      ▼
//!   campaign_sends: one row per (campaign, instance, contact, channel) — the idempotency key;
//!   added together with the position in the membership log, so a restart adds nothing twice
//!                                                      ▼  when due
//!   still a member (after a delay)? consent for the channel? an address? quiet hours in the
//!   contact's zone (held, then sent)? frequency cap (calendar days of the contact's zone)?
//!   templates rendered (HTML escaped) ─► the send's status and its notification (id derived
//!   from the send's key) in one transaction ─► the outbox, the sender and the sinks
//! ```
//!
//! A message is sent at most once per key: the notification id is derived from it, and a send
//! leaves `pending`/`held` in the transaction that enqueues its notification. A contact that
//! entered, left and entered again within one instant produced no change, so it gets nothing.

pub mod definition;
pub mod guard;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use connectors::store::{
    CampaignSend, NewNotification, NewSend, SendOutcome, SendStatus, Store, StoreError,
    StoredCampaign,
};
use operators::audience::Contact;
use serde_json::{Value, json};

pub use definition::{CampaignError, CampaignSpec, Channel, Trigger};
pub use guard::{TokenError, TokenKey, Unsubscribe};

use crate::generate::{TemplateLimits, template};
use crate::ingest::now_ms;

/// How often the thread looks for work when there was none.
const TICK: Duration = Duration::from_millis(100);
/// Membership changes read per round.
const CHANGES_PER_ROUND: usize = 5_000;
/// Sends decided per round (one transaction).
const SENDS_PER_ROUND: usize = 1_000;
/// Recipients listed per transaction when an announcement expands.
const EXPAND_PAGE: usize = 5_000;
/// The "contact" of an internal announcement's one send: the team, not a contact.
const TEAM: &str = "";
/// How long an unsubscribe link works.
const UNSUBSCRIBE_VALID_MS: i64 = 365 * 86_400_000;
/// The notification kind of campaign messages.
pub const CAMPAIGN_KIND: &str = "campaign";
/// The meta key of the unsubscribe tokens' signing key.
const TOKEN_KEY_META: &str = "unsubscribe_token_key";

/// What the campaign thread needs.
#[derive(Clone)]
pub struct CampaignContext {
    pub store: Arc<dyn Store>,
    pub templates: TemplateLimits,
    /// The base of unsubscribe links, without a trailing slash.
    pub public_url: String,
    pub key: TokenKey,
}

/// The server's unsubscribe-token key, made once and kept in the store.
pub fn token_key(store: &dyn Store) -> Result<TokenKey, StoreError> {
    if let Some(hex) = store.get_meta(TOKEN_KEY_META)? {
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| StoreError::Corrupt(format!("meta.{TOKEN_KEY_META} is not hex")))?;
        return Ok(TokenKey::new(bytes));
    }
    let bytes: [u8; 32] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    store.set_meta(TOKEN_KEY_META, &hex)?;
    Ok(TokenKey::new(bytes.to_vec()))
}

/// Starts the campaign thread; it stops when `stop` turns true.
pub fn start(
    context: CampaignContext,
    stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("tidemark-campaigns".into())
        .spawn(move || {
            while !*stop.borrow() {
                match round(&context, now_ms()) {
                    Ok(true) => {}
                    Ok(false) => std::thread::sleep(TICK),
                    Err(e) => {
                        tracing::error!(error = %e, "campaigns: round failed; trying again");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            }
        })
}

/// A stored campaign with its definition read.
struct Loaded {
    stored: StoredCampaign,
    spec: CampaignSpec,
}

impl Loaded {
    /// What templates see as `campaign`.
    fn template_view(&self) -> Value {
        json!({
            "id": self.stored.id,
            "name": self.spec.name.clone().unwrap_or_else(|| self.stored.id.clone()),
        })
    }

    /// A send's notification: its id derived from the send's key, to the campaign's destination.
    fn notification(&self, send: &NewSend, payload: Value, now: i64) -> NewNotification {
        NewNotification {
            id: notification_id(send),
            tenant: send.tenant.clone(),
            rule_id: self.stored.id.clone(),
            kind: CAMPAIGN_KIND.to_string(),
            group_key: send.instance.clone(),
            payload: payload.to_string(),
            created_at_ms: now,
            destination_ids: vec![self.spec.destination.clone()],
        }
    }
}

fn load_campaigns(store: &dyn Store) -> Result<Vec<Loaded>, StoreError> {
    Ok(store
        .list_campaigns(None)?
        .into_iter()
        .filter_map(|stored| {
            let value: Value = serde_json::from_str(&stored.body).ok()?;
            match CampaignSpec::parse(&value) {
                Ok(spec) => Some(Loaded { stored, spec }),
                Err(e) => {
                    tracing::error!(tenant = %stored.tenant, campaign = %stored.id, error = %e, "campaigns: stored definition unreadable; skipped");
                    None
                }
            }
        })
        .collect())
}

/// One round at the instant `now` (ms since the epoch): membership changes into sends,
/// announcements due into sends, due sends decided. Whether there may be more work right away.
///
/// The thread runs it on the wall clock; what a round decides — due or not, inside quiet hours
/// or not, capped or not — depends on the store and `now` alone.
pub fn round(context: &CampaignContext, now: i64) -> Result<bool, StoreError> {
    let store = context.store.as_ref();
    let campaigns = load_campaigns(store)?;
    let mut busy = follow_changes(store, &campaigns)?;
    busy |= expand_announcements(store, &campaigns, now)?;
    let due = store.due_sends(now, SENDS_PER_ROUND)?;
    if !due.is_empty() {
        let by_key: HashMap<(&str, &str), &Loaded> = campaigns
            .iter()
            .map(|c| ((c.stored.tenant.as_str(), c.stored.id.as_str()), c))
            .collect();
        let outcomes = decide(context, &by_key, &due, now)?;
        store.finish_sends(&outcomes, now)?;
        busy |= due.len() == SENDS_PER_ROUND;
    }
    Ok(busy)
}

/// Turns new membership changes into the sends of the triggered campaigns they match.
fn follow_changes(store: &dyn Store, campaigns: &[Loaded]) -> Result<bool, StoreError> {
    let position = store.campaign_position()?;
    let changes = store.membership_changes_after(position, CHANGES_PER_ROUND)?;
    let Some(&(last, _)) = changes.last() else {
        return Ok(false);
    };
    let mut sends = Vec::new();
    for (_, change) in &changes {
        for c in campaigns {
            let (audience, on_enter) = match &c.spec.trigger {
                Trigger::Enter { audience, .. } => (audience, true),
                Trigger::Leave { audience, .. } => (audience, false),
                Trigger::Scheduled { .. } | Trigger::Announcement { .. } => continue,
            };
            // A campaign follows the changes made after it was defined.
            if c.stored.tenant != change.tenant
                || *audience != change.audience
                || on_enter != change.entered
                || change.at_ms < c.stored.updated_at_ms
            {
                continue;
            }
            let on = if on_enter { "enter" } else { "leave" };
            sends.push(NewSend {
                tenant: change.tenant.clone(),
                campaign: c.stored.id.clone(),
                instance: format!("{on}@{}", change.at_ms),
                contact: change.contact.clone(),
                channel: c.spec.channel.as_str().to_string(),
                due_ms: change.at_ms.saturating_add(c.spec.delay_ms()),
            });
        }
    }
    store.add_sends(&sends, Some(last), None)?;
    Ok(changes.len() == CHANGES_PER_ROUND)
}

/// The latest instant of `cron` in `zone` after `after_ms` and at or before `now_ms` (a
/// schedule that was down for several runs runs the latest only), if one has come.
pub fn latest_slot(
    cron: &operators::schedule::Cron,
    zone: Tz,
    after_ms: i64,
    now_ms: i64,
) -> Option<i64> {
    // Walk forward from a little before now, looking further back only when nothing is
    // found: a cron has at most 60 instants an hour, so each walk ends.
    const HOUR: i64 = 3_600_000;
    for lookback in [HOUR, 24 * HOUR, 32 * 24 * HOUR, 366 * 24 * HOUR, i64::MAX] {
        let start = after_ms.max(now_ms.saturating_sub(lookback));
        let mut latest = None;
        let mut from = start;
        for _ in 0..operators::schedule::MAX_CATCH_UP {
            match cron.next_after(from, zone) {
                Some(slot) if slot <= now_ms => {
                    latest = Some(slot);
                    from = slot;
                }
                _ => break,
            }
        }
        if latest.is_some() || start == after_ms {
            return latest;
        }
    }
    None
}

/// Lists the recipients of every announcement whose instant has come, once, and of every
/// scheduled campaign whose next instant has come.
fn expand_announcements(
    store: &dyn Store,
    campaigns: &[Loaded],
    now: i64,
) -> Result<bool, StoreError> {
    let mut expanded = false;
    let mut zones = HashMap::new();
    for c in campaigns {
        let (at, audience, instance) = match &c.spec.trigger {
            Trigger::Announcement { at, audience } => {
                let at = at.map_or(c.stored.updated_at_ms, |t| t.timestamp_millis());
                if c.stored.expanded_at_ms.is_some() || at > now {
                    continue;
                }
                (
                    at,
                    audience.clone(),
                    format!("announce@{}", c.stored.version),
                )
            }
            Trigger::Scheduled {
                cron,
                time_zone,
                audience,
            } => {
                let Ok(cron) = operators::schedule::Cron::parse(cron) else {
                    continue;
                };
                let zone = match time_zone.as_deref().and_then(|z| z.parse().ok()) {
                    Some(zone) => zone,
                    None => zone_of(store, &Contact::default(), &c.stored.tenant, &mut zones),
                };
                // The last run's instant is kept where an announcement keeps its listing.
                let after = c.stored.expanded_at_ms.unwrap_or(c.stored.updated_at_ms);
                let Some(slot) = latest_slot(&cron, zone, after, now) else {
                    continue;
                };
                (slot, Some(audience.clone()), format!("run@{slot}"))
            }
            Trigger::Enter { .. } | Trigger::Leave { .. } => continue,
        };
        let audience = &audience;
        let (tenant, id) = (c.stored.tenant.as_str(), c.stored.id.as_str());
        let send = |contact: &str| NewSend {
            tenant: tenant.to_string(),
            campaign: id.to_string(),
            instance: instance.clone(),
            contact: contact.to_string(),
            channel: c.spec.channel.as_str().to_string(),
            due_ms: at,
        };
        let mut total = 0usize;
        if !c.spec.channel.to_contacts() {
            // An internal announcement: one message, to the team.
            total += store.add_sends(&[send(TEAM)], None, None)?;
        } else {
            match audience {
                Some(audience) => {
                    let mut after: Option<String> = None;
                    loop {
                        let page = store.audience_members(
                            tenant,
                            audience,
                            after.as_deref(),
                            EXPAND_PAGE,
                        )?;
                        let sends: Vec<NewSend> = page.iter().map(|m| send(&m.contact)).collect();
                        total += store.add_sends(&sends, None, None)?;
                        if page.len() < EXPAND_PAGE {
                            break;
                        }
                        after = page.last().map(|m| m.contact.clone());
                    }
                }
                None => {
                    let consent = c.spec.consent_channel();
                    let mut after: Option<String> = None;
                    loop {
                        let page = store.list_contacts(
                            Some(tenant),
                            after.as_deref().map(|a| (tenant, a)),
                            EXPAND_PAGE,
                        )?;
                        // Contacts that never consented are not recipients; consent is checked
                        // again when each message goes out.
                        let sends: Vec<NewSend> = page
                            .iter()
                            .filter(|row| {
                                serde_json::from_str::<Contact>(&row.body).is_ok_and(|contact| {
                                    contact.consent.get(consent) == Some(&true)
                                })
                            })
                            .map(|row| send(&row.id))
                            .collect();
                        total += store.add_sends(&sends, None, None)?;
                        if page.len() < EXPAND_PAGE {
                            break;
                        }
                        after = page.last().map(|row| row.id.clone());
                    }
                }
            }
        }
        // A scheduled campaign remembers the instant it ran for; an announcement, when.
        let listed = match c.spec.trigger {
            Trigger::Scheduled { .. } => at,
            _ => now,
        };
        store.add_sends(&[], None, Some((tenant, id, listed)))?;
        tracing::info!(
            tenant,
            campaign = id,
            instance,
            recipients = total,
            "campaigns: recipients listed"
        );
        expanded = true;
    }
    Ok(expanded)
}

/// The zone a contact's days and hours are counted in: its own, else its tenant's, else UTC.
fn zone_of(
    store: &dyn Store,
    contact: &Contact,
    tenant: &str,
    cache: &mut HashMap<String, Tz>,
) -> Tz {
    if let Some(zone) = contact.time_zone.as_deref().and_then(|z| z.parse().ok()) {
        return zone;
    }
    if let Some(zone) = cache.get(tenant) {
        return *zone;
    }
    let zone = store
        .get_tenant(tenant)
        .ok()
        .flatten()
        .and_then(|t| t.time_zone.parse().ok())
        .unwrap_or(chrono_tz::UTC);
    cache.insert(tenant.to_string(), zone);
    zone
}

fn refuse(send: &NewSend, status: SendStatus, reason: impl Into<String>) -> SendOutcome {
    SendOutcome {
        send: send.clone(),
        status,
        reason: Some(reason.into()),
        notification: None,
    }
}

/// What becomes of each due send.
fn decide(
    context: &CampaignContext,
    campaigns: &HashMap<(&str, &str), &Loaded>,
    due: &[CampaignSend],
    now: i64,
) -> Result<Vec<SendOutcome>, StoreError> {
    let store = context.store.as_ref();
    let mut zones = HashMap::new();
    // Messages sent in this round per contact, for the frequency cap.
    let mut sent_now: HashMap<(String, String), u64> = HashMap::new();
    let mut outcomes = Vec::with_capacity(due.len());
    for row in due {
        let send = &row.send;
        let Some(campaign) = campaigns.get(&(send.tenant.as_str(), send.campaign.as_str())) else {
            outcomes.push(refuse(
                send,
                SendStatus::Failed,
                "the campaign no longer exists",
            ));
            continue;
        };
        let spec = &campaign.spec;
        if !spec.channel.to_contacts() {
            outcomes.push(match team_message(context, campaign, send, now) {
                Ok(notification) => SendOutcome {
                    send: send.clone(),
                    status: SendStatus::Sent,
                    reason: None,
                    notification: Some(notification),
                },
                Err(reason) => refuse(send, SendStatus::Failed, reason),
            });
            continue;
        }
        let Some(stored) = store.get_contact(&send.tenant, &send.contact)? else {
            outcomes.push(refuse(
                send,
                SendStatus::NotMember,
                "the contact was deleted",
            ));
            continue;
        };
        let Ok(contact) = serde_json::from_str::<Contact>(&stored.body) else {
            outcomes.push(refuse(
                send,
                SendStatus::Failed,
                "the stored contact is unreadable",
            ));
            continue;
        };
        // After a delay, only if the contact is still where the trigger put it.
        let still = match &spec.trigger {
            Trigger::Enter { audience, .. } if spec.delay_ms() > 0 => {
                store.is_member(&send.tenant, audience, &send.contact)?
            }
            Trigger::Leave { audience, .. } if spec.delay_ms() > 0 => {
                !store.is_member(&send.tenant, audience, &send.contact)?
            }
            _ => true,
        };
        if !still {
            outcomes.push(refuse(
                send,
                SendStatus::NotMember,
                "the contact's membership changed back before the delay ended",
            ));
            continue;
        }
        let consent = spec.consent_channel();
        if contact.consent.get(consent) != Some(&true) {
            outcomes.push(refuse(
                send,
                SendStatus::Unsubscribed,
                format!("no consent for {consent}"),
            ));
            continue;
        }
        let address = match spec.channel {
            Channel::Email => match contact.email.as_deref() {
                Some(email) if connectors::sinks::email::check_address(email).is_ok() => {
                    Some(email.to_string())
                }
                Some(email) => {
                    outcomes.push(refuse(
                        send,
                        SendStatus::Failed,
                        format!("'{email}' is not an email address"),
                    ));
                    continue;
                }
                None => {
                    outcomes.push(refuse(
                        send,
                        SendStatus::Failed,
                        "the contact has no email address",
                    ));
                    continue;
                }
            },
            Channel::Webhook | Channel::Slack => None,
        };
        let zone = zone_of(store, &contact, &send.tenant, &mut zones);
        if let Some((from, to)) = spec.quiet_hours()
            && let Some(until) = guard::quiet_until(now, zone, from, to)
        {
            outcomes.push(SendOutcome {
                send: NewSend {
                    due_ms: until,
                    ..send.clone()
                },
                status: SendStatus::Held,
                reason: Some(format!("quiet hours in {zone}")),
                notification: None,
            });
            continue;
        }
        if let Some(cap) = spec.frequency_cap {
            let key = (send.tenant.clone(), send.contact.clone());
            let since = guard::window_start(now, zone, cap.per_days);
            let already = store.sent_since(&send.tenant, &send.contact, since)?
                + sent_now.get(&key).copied().unwrap_or(0);
            if already >= u64::from(cap.max) {
                outcomes.push(refuse(
                    send,
                    SendStatus::Capped,
                    format!(
                        "{already} campaign messages in the last {} day(s) of {zone} (cap {})",
                        cap.per_days, cap.max
                    ),
                ));
                continue;
            }
        }
        match message(
            context,
            campaign,
            send,
            &contact,
            address.as_deref(),
            consent,
            now,
        ) {
            Ok(notification) => {
                *sent_now
                    .entry((send.tenant.clone(), send.contact.clone()))
                    .or_default() += 1;
                outcomes.push(SendOutcome {
                    send: send.clone(),
                    status: SendStatus::Sent,
                    reason: None,
                    notification: Some(notification),
                });
            }
            Err(reason) => outcomes.push(refuse(send, SendStatus::Failed, reason)),
        }
    }
    Ok(outcomes)
}

/// The notification id of a send: derived from its key alone.
pub fn notification_id(send: &NewSend) -> String {
    operators::intent::intent_id(&[
        "campaign",
        &send.tenant,
        &send.campaign,
        &send.instance,
        &send.contact,
        &send.channel,
    ])
}

/// An internal announcement's one message, to the team's channel.
fn team_message(
    context: &CampaignContext,
    campaign: &Loaded,
    send: &NewSend,
    now: i64,
) -> Result<NewNotification, String> {
    let spec = &campaign.spec;
    let data = json!({"contact": {}, "campaign": campaign.template_view()});
    let limits = &context.templates;
    let text = template::render(&spec.content.text, &data, limits)
        .map_err(|e| format!("content.text: {e}"))?;
    let subject = spec
        .content
        .subject
        .as_deref()
        .map(|s| template::render(s, &data, limits))
        .transpose()
        .map_err(|e| format!("content.subject: {e}"))?;
    Ok(campaign.notification(
        send,
        json!({"message": text, "subject": subject, "campaign": campaign.stored.id}),
        now,
    ))
}

/// The rendered message of a send as a notification.
fn message(
    context: &CampaignContext,
    campaign: &Loaded,
    send: &NewSend,
    contact: &Contact,
    address: Option<&str>,
    consent: &str,
    now: i64,
) -> Result<NewNotification, String> {
    let spec = &campaign.spec;
    let token = context.key.sign(&Unsubscribe {
        tenant: send.tenant.clone(),
        contact: send.contact.clone(),
        channel: consent.to_string(),
        expires_ms: now.saturating_add(UNSUBSCRIBE_VALID_MS),
    });
    let unsubscribe_url = format!("{}/unsubscribe/{token}", context.public_url);
    let mut person = serde_json::Map::new();
    for (name, value) in &contact.attributes {
        person.insert(name.clone(), value.clone());
    }
    person.insert("id".into(), json!(send.contact));
    person.insert("email".into(), json!(contact.email));
    person.insert("locale".into(), json!(contact.locale));
    person.insert("time_zone".into(), json!(contact.time_zone));
    let data = json!({
        "contact": person,
        "campaign": campaign.template_view(),
        "unsubscribe_url": unsubscribe_url,
    });
    let limits = &context.templates;
    let text = template::render(&spec.content.text, &data, limits)
        .map_err(|e| format!("content.text: {e}"))?;
    let payload = match spec.channel {
        Channel::Email => {
            let subject = template::render(
                spec.content.subject.as_deref().unwrap_or_default(),
                &data,
                limits,
            )
            .map_err(|e| format!("content.subject: {e}"))?;
            let subject = subject
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            let html = spec
                .content
                .html
                .as_deref()
                .map(|html| template::render_html(html, &data, limits))
                .transpose()
                .map_err(|e| format!("content.html: {e}"))?;
            json!({
                "message": text, "subject": subject, "html": html,
                "recipient": address, "unsubscribe_url": unsubscribe_url,
                "campaign": campaign.stored.id,
            })
        }
        Channel::Webhook | Channel::Slack => json!({
            "campaign": campaign.stored.id, "contact": data["contact"], "channel": consent,
            "message": text, "unsubscribe_url": unsubscribe_url,
        }),
    };
    Ok(campaign.notification(send, payload, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_runs_its_latest_missed_instant_once() {
        let cron = operators::schedule::Cron::parse("0 9 * * *").expect("cron");
        let seoul: Tz = "Asia/Seoul".parse().expect("zone");
        let day = 86_400_000;
        // 2026-12-01 00:00 UTC is 09:00 in Seoul.
        let nine = 1_764_547_200_000;
        assert_eq!(latest_slot(&cron, seoul, nine - 1, nine - 1), None);
        assert_eq!(latest_slot(&cron, seoul, nine - 1, nine), Some(nine));
        assert_eq!(
            latest_slot(&cron, seoul, nine, nine + day - 1),
            None,
            "once per instant"
        );
        assert_eq!(
            latest_slot(&cron, seoul, nine, nine + 3 * day + 5),
            Some(nine + 3 * day),
            "after three days down: the latest only"
        );
    }
}
