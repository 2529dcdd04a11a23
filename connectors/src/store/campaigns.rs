//! CRM campaigns and their sends: one row per (campaign, instance, contact, channel), the
//! message's idempotency key, from the moment it is due until it is sent or refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{MembershipChangeRow, NewNotification, StoreResult};

/// A campaign as stored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StoredCampaign {
    /// Owning tenant.
    pub tenant: String,
    /// Campaign id.
    pub id: String,
    /// Increases with every change.
    pub version: u64,
    /// The definition, JSON.
    pub body: String,
    /// For an announcement: when its recipients were all listed (`None` before).
    pub expanded_at_ms: Option<i64>,
    /// When it last changed, ms since the epoch.
    pub updated_at_ms: i64,
}

/// Where a send is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum SendStatus {
    /// Waiting for its due time.
    Pending,
    /// Inside the contact's quiet hours: waiting for them to end.
    Held,
    /// Its notification is in the outbox.
    Sent,
    /// Refused: the contact had reached the frequency cap.
    Capped,
    /// Refused: no consent for the channel (never given, or withdrawn).
    Unsubscribed,
    /// Refused: the contact had left the audience before the send was due, or was deleted.
    NotMember,
    /// Refused: the message could not be made (a template error, no usable address).
    Failed,
}

impl SendStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Held => "held",
            Self::Sent => "sent",
            Self::Capped => "capped",
            Self::Unsubscribed => "unsubscribed",
            Self::NotMember => "not_member",
            Self::Failed => "failed",
        }
    }

    /// The status a stored name means.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => Self::Pending,
            "held" => Self::Held,
            "sent" => Self::Sent,
            "capped" => Self::Capped,
            "unsubscribed" => Self::Unsubscribed,
            "not_member" => Self::NotMember,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// A send to add: the key, and when it is due.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NewSend {
    /// Owning tenant.
    pub tenant: String,
    /// The campaign.
    pub campaign: String,
    /// What made it: `enter@<ms>`, `leave@<ms>`, `announce@<version>`.
    pub instance: String,
    /// The contact.
    pub contact: String,
    /// `email` or `webhook`.
    pub channel: String,
    /// When it is due, ms since the epoch.
    pub due_ms: i64,
}

/// A send as stored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CampaignSend {
    /// The key and due time.
    #[serde(flatten)]
    pub send: NewSend,
    /// Where it is.
    pub status: SendStatus,
    /// Why it was refused or held.
    pub reason: Option<String>,
    /// Its notification, once sent.
    pub notification_id: Option<String>,
    /// When its status last changed, ms since the epoch.
    pub updated_at_ms: i64,
}

/// What became of a due send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendOutcome {
    /// The send (its key; `due_ms` is the new due time when held).
    pub send: NewSend,
    /// `Sent` (with `notification`), `Held`, or a refusal.
    pub status: SendStatus,
    /// Why, for people.
    pub reason: Option<String>,
    /// The notification to enqueue, for `Sent`.
    pub notification: Option<NewNotification>,
}

/// Campaigns and their sends. Every method that writes is one transaction.
pub trait Campaigns: Send + Sync {
    /// Inserts a campaign, or replaces its version, body and update time; a replaced campaign
    /// keeps its `expanded_at_ms`, which only [`Campaigns::add_sends`] moves.
    fn put_campaign(&self, campaign: &StoredCampaign) -> StoreResult<()>;

    /// The campaign `id` of `tenant`, if any.
    fn get_campaign(&self, tenant: &str, id: &str) -> StoreResult<Option<StoredCampaign>>;

    /// Campaigns of one tenant or of all, by (tenant, id).
    fn list_campaigns(&self, tenant: Option<&str>) -> StoreResult<Vec<StoredCampaign>>;

    /// Deletes a campaign and its sends still waiting; whether it existed.
    fn delete_campaign(&self, tenant: &str, id: &str) -> StoreResult<bool>;

    /// Membership changes after the log position `after`, oldest first, with their positions:
    /// what triggered campaigns follow.
    fn membership_changes_after(
        &self,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<(u64, MembershipChangeRow)>>;

    /// Adds sends (a send already there, by its key, is left as it is) and, when given, moves
    /// the campaigns' position in the membership log and marks an announcement expanded, all
    /// in one transaction; how many were new.
    fn add_sends(
        &self,
        sends: &[NewSend],
        position: Option<u64>,
        expanded: Option<(&str, &str, i64)>,
    ) -> StoreResult<usize>;

    /// The campaigns' position in the membership log, 0 at first.
    fn campaign_position(&self) -> StoreResult<u64>;

    /// Up to `limit` pending or held sends due at `now_ms`, earliest first.
    fn due_sends(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<CampaignSend>>;

    /// Records what became of due sends and enqueues the notifications of those sent, in one
    /// transaction. A send no longer pending or held is left as it is.
    fn finish_sends(&self, outcomes: &[SendOutcome], now_ms: i64) -> StoreResult<()>;

    /// Sends of a contact (every campaign) with status `Sent` since `since_ms`: what the
    /// frequency cap counts.
    fn sent_since(&self, tenant: &str, contact: &str, since_ms: i64) -> StoreResult<u64>;

    /// A campaign's sends by status.
    fn campaign_counts(
        &self,
        tenant: &str,
        campaign: &str,
    ) -> StoreResult<BTreeMap<SendStatus, u64>>;

    /// A contact's sends, newest first.
    fn contact_sends(
        &self,
        tenant: &str,
        contact: &str,
        limit: usize,
    ) -> StoreResult<Vec<CampaignSend>>;
}
