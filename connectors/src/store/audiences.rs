//! CRM contacts, audience definitions, and the audiences' members as the audience engine last
//! committed them (with the log of changes and the engine's position in the event log).

use serde::{Deserialize, Serialize};

use super::StoreResult;

/// A contact as stored: its document (email, locale, time zone, consent, attributes) as JSON.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StoredContact {
    /// Owning tenant.
    pub tenant: String,
    /// The tenant's id for the contact (the `customer_id` its events carry).
    pub id: String,
    /// The contact document, JSON.
    pub body: String,
    /// When it last changed, ms since the epoch.
    pub updated_at_ms: i64,
}

/// An audience definition as stored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StoredAudience {
    /// Owning tenant.
    pub tenant: String,
    /// Audience id.
    pub id: String,
    /// Increases with every change of the definition.
    pub version: u64,
    /// The definition document, JSON.
    pub body: String,
    /// When it last changed, ms since the epoch.
    pub updated_at_ms: i64,
}

/// A contact entering (`entered`) or leaving an audience at `at_ms`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MembershipChangeRow {
    /// Owning tenant.
    pub tenant: String,
    /// The audience.
    pub audience: String,
    /// The contact.
    pub contact: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// Entered (`true`) or left.
    pub entered: bool,
}

/// A member of an audience and since when.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The contact.
    pub contact: String,
    /// When it entered, ms since the epoch.
    pub since_ms: i64,
}

/// An audience's size after a step that changed it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AudienceSize {
    /// Owning tenant.
    pub tenant: String,
    /// The audience.
    pub audience: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// Members then.
    pub size: u64,
}

/// What one step of the audience engine writes, in one transaction.
#[derive(Clone, Debug, Default)]
pub struct AudienceStep {
    /// Contacts changed by `customer.*` events in the step.
    pub contacts_put: Vec<StoredContact>,
    /// Contacts deleted by `customer.deleted` events in the step: (tenant, id).
    pub contacts_deleted: Vec<(String, String)>,
    /// Membership changes, in time order: applied to the members and appended to the log.
    pub changes: Vec<MembershipChangeRow>,
    /// The new sizes of the audiences the changes touched.
    pub sizes: Vec<AudienceSize>,
    /// Event types seen for the first time in the step: (tenant, type).
    pub new_event_types: Vec<(String, String)>,
    /// The event log position the engine has consumed up to (inclusive).
    pub position: u64,
}

/// Contacts, audiences and their members. Every method that writes is one transaction.
pub trait Audiences: Send + Sync {
    /// Inserts or replaces contacts (a bulk upsert is one transaction).
    fn put_contacts(&self, contacts: &[StoredContact]) -> StoreResult<()>;

    /// The contact `id` of `tenant`, if any.
    fn get_contact(&self, tenant: &str, id: &str) -> StoreResult<Option<StoredContact>>;

    /// Deletes a contact and its memberships; whether it existed.
    fn delete_contact(&self, tenant: &str, id: &str) -> StoreResult<bool>;

    /// Up to `limit` contacts after `(tenant, id)` in (tenant, id) order, of one tenant or of all.
    fn list_contacts(
        &self,
        tenant: Option<&str>,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> StoreResult<Vec<StoredContact>>;

    /// Number of contacts of `tenant`.
    fn contact_count(&self, tenant: &str) -> StoreResult<u64>;

    /// Inserts or replaces an audience definition.
    fn put_audience(&self, audience: &StoredAudience) -> StoreResult<()>;

    /// The audience `id` of `tenant`, if any.
    fn get_audience(&self, tenant: &str, id: &str) -> StoreResult<Option<StoredAudience>>;

    /// Audiences of one tenant or of all, by (tenant, id).
    fn list_audiences(&self, tenant: Option<&str>) -> StoreResult<Vec<StoredAudience>>;

    /// Deletes an audience with its members and size history; whether it existed.
    fn delete_audience(&self, tenant: &str, id: &str) -> StoreResult<bool>;

    /// Records one engine step: contacts changed by events, membership changes (members and
    /// log), sizes, and the position, all or nothing.
    fn commit_audience_step(&self, step: &AudienceStep) -> StoreResult<()>;

    /// Every event type the audience engine has seen, (tenant, type): what an audience may
    /// refer to.
    fn known_event_types(&self) -> StoreResult<Vec<(String, String)>>;

    /// The event log position the audience engine last committed, 0 before its first step.
    fn audience_position(&self) -> StoreResult<u64>;

    /// Up to `limit` members of an audience after the contact `after`, by contact id.
    fn audience_members(
        &self,
        tenant: &str,
        audience: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Member>>;

    /// Whether a contact is a member of an audience now.
    fn is_member(&self, tenant: &str, audience: &str, contact: &str) -> StoreResult<bool>;

    /// Members of an audience now.
    fn audience_size(&self, tenant: &str, audience: &str) -> StoreResult<u64>;

    /// Every audience's members, (tenant, audience, member): what recovery compares the
    /// rebuilt engine with.
    fn all_members(&self) -> StoreResult<Vec<(String, String, Member)>>;

    /// An audience's sizes over time since `since_ms`, oldest first (of every audience of the
    /// tenant when `audience` is `None`).
    fn audience_sizes(
        &self,
        tenant: &str,
        audience: Option<&str>,
        since_ms: i64,
    ) -> StoreResult<Vec<AudienceSize>>;

    /// Deletes up to `limit` changes from the front of the membership log, oldest first: those
    /// made before `before_ms` that the campaigns have already followed (at or before
    /// [`Campaigns::campaign_position`](super::Campaigns::campaign_position)), stopping at the
    /// first change that is newer or not yet followed, so the log only ever loses its oldest
    /// stretch. One short transaction; how many went (fewer than `limit`: nothing older is
    /// left). Members, sizes and sends are not touched: membership is kept in the members, and
    /// a triggered campaign's send, once added, needs no change from the log.
    fn prune_membership_changes(&self, before_ms: i64, limit: usize) -> StoreResult<usize>;

    /// The membership changes of a contact (or of an audience), newest first, up to `limit`.
    fn membership_changes(
        &self,
        tenant: &str,
        audience: Option<&str>,
        contact: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<MembershipChangeRow>>;
}
