//! The notification outbox and the delivery log: notifications the engine produced, one
//! delivery per destination, every attempt made, and the alerts currently open.

use serde::{Deserialize, Serialize};

use super::catalog::StoredDestination;
use super::meta::check_meta_key;
use super::{StoreError, StoreResult};

/// A notification intent to put in the outbox.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NewNotification {
    /// Deterministic id (derived from tenant + rule + group key + window, or report + instant),
    /// unique across all tenants. Regenerating the same id after a restart adds nothing.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Rule (or report) that produced it.
    pub rule_id: String,
    /// `"match"`, `"firing"`, `"resolved"`, …; `firing`/`resolved` maintain the open alerts.
    pub kind: String,
    /// Group key within the rule (empty for ungrouped rules).
    pub group_key: String,
    /// JSON body to deliver; must be valid JSON.
    pub payload: String,
    /// When the notification was generated, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Destinations (of the same tenant) to deliver to; one delivery row each.
    pub destination_ids: Vec<String>,
}

/// State of one (notification, destination) delivery.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its first or next attempt.
    Pending,
    /// A sink accepted it.
    Delivered,
    /// Given up on: attempts exhausted, a permanent error, or the destination was deleted.
    Dead,
}

impl DeliveryStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 3] = [Self::Pending, Self::Delivered, Self::Dead];

    /// The lowercase name used in storage, the API and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    /// Parses the lowercase name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

impl std::fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A delivery that is due, joined with its destination's current configuration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DueDelivery {
    /// Notification id: the idempotency key handed to the sink.
    pub notification_id: String,
    /// Owning tenant.
    pub tenant: String,
    /// The destination as currently configured.
    pub destination: StoredDestination,
    /// JSON body to deliver.
    pub payload: String,
    /// Attempts made so far (0 before the first).
    pub attempt: u32,
    /// Notification kind.
    pub kind: String,
    /// When the notification was generated, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// How many due deliveries one claim may take, and whose (see
/// [`Outbox::claim_due_deliveries`]): a sender asks only for what it can start, so one
/// tenant's backlog or slow receivers cannot crowd the others out of a claim.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClaimLimits {
    /// Most deliveries in all.
    pub total: usize,
    /// Most of any one tenant's (0: no limit).
    pub per_tenant: usize,
    /// Most to any one destination (0: no limit).
    pub per_destination: usize,
    /// Tenants to skip: the sender already has as many of theirs in hand as it runs at once.
    pub busy_tenants: Vec<String>,
    /// Destinations to skip, as (tenant, destination id), likewise.
    pub busy_destinations: Vec<(String, String)>,
}

impl ClaimLimits {
    /// Up to `total` deliveries, from anyone.
    pub fn up_to(total: usize) -> Self {
        Self {
            total,
            ..Self::default()
        }
    }
}

/// One entry of the delivery attempt log.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// Notification id.
    pub notification_id: String,
    /// Destination id.
    pub destination_id: String,
    /// 1-based number of this attempt (`DueDelivery::attempt + 1`).
    pub attempt: u32,
    /// When the attempt was made, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// `"delivered"`, `"retry"` or `"dead"`.
    pub outcome: String,
    /// HTTP status code, when the sink got a response.
    pub status_code: Option<u16>,
    /// Short error text for failed attempts.
    pub error: Option<String>,
    /// How long the attempt took.
    pub duration_ms: u64,
}

/// What to do with a delivery after an attempt (see [`Outbox::record_attempt`]).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryNext {
    /// Done: the sink accepted it.
    Delivered,
    /// Try again at this time (milliseconds since the Unix epoch).
    RetryAt(i64),
    /// Give up: moves to the dead letters.
    Dead,
}

/// A delivery as shown by the API.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DeliveryView {
    /// Destination id.
    pub destination_id: String,
    /// Current status.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// Next attempt time while pending.
    pub next_attempt_at_ms: Option<i64>,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    /// Every attempt, oldest first.
    pub attempt_log: Vec<DeliveryAttempt>,
}

/// A notification with its deliveries, as shown by the API.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NotificationView {
    /// Notification id.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Producing rule.
    pub rule_id: String,
    /// Notification kind.
    pub kind: String,
    /// Group key within the rule.
    pub group_key: String,
    /// The delivered body.
    pub payload: serde_json::Value,
    /// When the notification was generated, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// One entry per destination, ordered by destination id.
    pub deliveries: Vec<DeliveryView>,
}

/// Position in a newest-first notification listing: pass the last item's values to get the
/// next page.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NotificationCursor {
    /// `created_at_ms` of the last notification seen.
    pub created_at_ms: i64,
    /// `id` of the last notification seen.
    pub id: String,
}

/// Filter for [`Outbox::list_notifications`].
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct NotificationFilter {
    /// Only notifications with at least one delivery in this status.
    pub status: Option<DeliveryStatus>,
    /// Only notifications of this rule.
    pub rule_id: Option<String>,
    /// Maximum number returned; 0 means the default of 100.
    pub limit: usize,
    /// Only notifications strictly older than this position (newest first).
    pub before: Option<NotificationCursor>,
}

/// An alert that fired and has not resolved yet.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct OpenAlert {
    /// Owning tenant.
    pub tenant: String,
    /// Rule that fired.
    pub rule_id: String,
    /// Group key within the rule.
    pub group_key: String,
    /// `created_at_ms` of the first firing notification of this episode.
    pub since_ms: i64,
    /// The most recent firing notification.
    pub notification_id: String,
}

/// The outbox: notifications waiting to be delivered and the log of what happened to them.
/// Every method that writes is one transaction, durable when it returns.
pub trait Outbox: Send + Sync {
    /// Enqueues notifications in one transaction and returns how many were new. A
    /// notification whose id is already stored is ignored (restarts regenerate the same ids),
    /// and so is its open-alert effect. Each new notification gets one pending delivery per
    /// destination, due at `now_ms`. New `"firing"` notifications open (or refresh) the alert
    /// `(tenant, rule_id, group_key)`; new `"resolved"` ones close it. Processed in input order.
    fn enqueue_notifications(
        &self,
        notifications: &[NewNotification],
        now_ms: i64,
    ) -> StoreResult<usize> {
        self.commit_step(&[(now_ms, notifications.to_vec())], None)
    }

    /// Records one engine step in one transaction (one fsync): each group of notifications is
    /// enqueued as [`Outbox::enqueue_notifications`] with its deliveries due at the group's time,
    /// and the `checkpoint` meta key is set with them, so the notifications and the position
    /// they were produced up to are durable together. Returns how many notifications were new.
    ///
    /// This is the one outbox method that also writes a [`Meta`](super::Meta) value: the
    /// checkpoint is `(key, value)` as [`Meta::set_meta`](super::Meta::set_meta) would set it
    /// (the reserved `schema_version` key is refused the same way), but inside this
    /// transaction. A backend must keep the two atomic: a crash between them would either
    /// replay notifications already queued or skip ones never queued.
    fn commit_step(
        &self,
        notifications: &[(i64, Vec<NewNotification>)],
        checkpoint: Option<(&str, &str)>,
    ) -> StoreResult<usize>;

    /// Open alerts of `tenant`, or of all tenants with `None`.
    fn open_alerts(&self, tenant: Option<&str>) -> StoreResult<Vec<OpenAlert>>;

    /// Up to `limit` pending deliveries due at `now_ms`, oldest due first, without claiming
    /// them. Deliveries whose destination was deleted are skipped. Meant for inspection; a
    /// sender uses [`Outbox::claim_due_deliveries`].
    fn due_deliveries(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<DueDelivery>>;

    /// Due deliveries within `limits`, and in the same transaction pushes each returned
    /// delivery's next attempt to `now_ms + lease_ms`, so concurrent senders never get the
    /// same delivery while the lease runs. A sender that dies mid-delivery loses only its
    /// lease: the delivery becomes due again (at-least-once; the sink de-duplicates by
    /// notification id). Deliveries whose destination was deleted are marked dead here.
    ///
    /// Fair across tenants: deliveries are taken round-robin — every tenant's oldest due one
    /// before any tenant's second — skipping the busy tenants and destinations, at most
    /// `per_destination` to a destination and `per_tenant` of a tenant.
    fn claim_due_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limits: &ClaimLimits,
    ) -> StoreResult<Vec<DueDelivery>>;

    /// Appends `attempt` to the attempt log and moves the delivery according to `next`, in
    /// one transaction. A delivery that is no longer pending (another sender finished it) keeps
    /// its status; the attempt is still logged. Errors with `NotFound` for an unknown delivery.
    fn record_attempt(&self, attempt: &DeliveryAttempt, next: DeliveryNext) -> StoreResult<()>;

    /// Notifications of `tenant`, newest first, with deliveries and attempt logs.
    fn list_notifications(
        &self,
        tenant: &str,
        filter: &NotificationFilter,
    ) -> StoreResult<Vec<NotificationView>>;

    /// The notification `id` of `tenant`, if any.
    fn get_notification(&self, tenant: &str, id: &str) -> StoreResult<Option<NotificationView>>;

    /// Number of deliveries in each status, across tenants (for gauges); every status is
    /// listed, zero or not.
    fn delivery_counts(&self) -> StoreResult<Vec<(DeliveryStatus, u64)>>;

    /// Makes every claimed but unfinished delivery due again at `now_ms`. Called once at start-up
    /// by the only process using this store: claims left by a crashed predecessor are then
    /// retried at once instead of after their lease. Returns how many were released.
    fn release_claims(&self, now_ms: i64) -> StoreResult<usize>;
}

/// Refuses notifications whose payload is not JSON, before anything is written.
pub(crate) fn check_payloads(notifications: &[NewNotification]) -> StoreResult<()> {
    for n in notifications {
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&n.payload) {
            return Err(StoreError::InvalidInput(format!(
                "notification {} payload is not JSON: {e}",
                n.id
            )));
        }
    }
    Ok(())
}

/// Checks what [`Outbox::commit_step`] is given before anything is written (payloads are JSON,
/// the checkpoint's key is not the store's own); whether there is anything to write.
pub(crate) fn check_step(
    notifications: &[(i64, Vec<NewNotification>)],
    checkpoint: Option<(&str, &str)>,
) -> StoreResult<bool> {
    for (_, batch) in notifications {
        check_payloads(batch)?;
    }
    if let Some((key, _)) = checkpoint {
        check_meta_key(key)?;
    }
    Ok(notifications.iter().any(|(_, batch)| !batch.is_empty()) || checkpoint.is_some())
}

/// A due delivery as a backend reads it: live, or pointing at a destination that no longer
/// exists (the claim marks those dead).
pub(crate) enum DueRow {
    Live(DueDelivery),
    Orphan {
        notification_id: String,
        destination_id: String,
    },
}

impl DueRow {
    /// The delivery, unless its destination is gone.
    pub(crate) fn live(self) -> Option<DueDelivery> {
        match self {
            DueRow::Live(due) => Some(due),
            DueRow::Orphan { .. } => None,
        }
    }
}

/// A `notifications` row as a backend reads it, before its deliveries are joined in.
pub(crate) struct NotificationRow {
    pub(crate) id: String,
    pub(crate) tenant: String,
    pub(crate) rule_id: String,
    pub(crate) kind: String,
    pub(crate) group_key: String,
    pub(crate) payload: String,
    pub(crate) created_at_ms: i64,
}

impl NotificationRow {
    /// The notification with its `deliveries`; a payload that is not JSON is corruption.
    pub(crate) fn into_view(self, deliveries: Vec<DeliveryView>) -> StoreResult<NotificationView> {
        let payload = serde_json::from_str(&self.payload).map_err(|e| {
            StoreError::Corrupt(format!("notification {} payload is not JSON: {e}", self.id))
        })?;
        Ok(NotificationView {
            id: self.id,
            tenant: self.tenant,
            rule_id: self.rule_id,
            kind: self.kind,
            group_key: self.group_key,
            payload,
            created_at_ms: self.created_at_ms,
            deliveries,
        })
    }
}
