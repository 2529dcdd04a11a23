//! [`Outbox`] on PostgreSQL: the `notifications`, `deliveries`, `delivery_attempts` and
//! `open_alerts` tables.
//!
//! Every write runs in [`PostgresStore::write`]'s transaction, which holds the store's write lock
//! from its start: an enqueue's "is this id already stored" check and its inserts, a claim's
//! read of the due deliveries and its leases, an attempt's status check and its update, all see
//! and change the same state, as on SQLite. The hot paths (enqueue, claims) send each kind of
//! row as one statement over arrays (`UNNEST`) rather than one statement per row.
//!
//! Ordering: SQLite breaks ties between deliveries due at the same time by insertion order (the
//! implicit `rowid`), and lists a delivery's attempts in insertion order. These tables have no
//! such column here, so due deliveries tie-break on their notification's `created_at_ms`, then
//! notification id and destination id (byte order), and attempts are listed by time (`at_ms`),
//! then attempt number. Text is ordered and compared byte-wise (text columns are `COLLATE "C"`), as SQLite's
//! `BINARY` collation does, whatever the database's default collation.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};

use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::meta::put_meta;
use super::{PostgresStore, clamp_i64, pg, unsigned};
use crate::store::outbox::{DueRow, NotificationRow, check_step};
use crate::store::{
    ClaimLimits, DeliveryAttempt, DeliveryNext, DeliveryStatus, DeliveryView, DueDelivery,
    NewNotification, NotificationFilter, NotificationView, OpenAlert, Outbox, StoreError,
    StoreResult, StoredDestination,
};

/// Default page size of [`Outbox::list_notifications`].
const DEFAULT_NOTIFICATION_LIMIT: usize = 100;

/// Due deliveries in [`due_from_row`] column order, oldest due first; `d` = deliveries,
/// `n` = notifications, `x` = destinations (NULL columns when the destination was deleted).
/// Ties on the due time go to the older notification, then by ids (SQLite: insertion order).
const DUE_SELECT: &str = r#"
SELECT d.notification_id, d.tenant, d.attempts, n.payload, n.kind, n.created_at_ms,
       d.destination_id, x.kind, x.config, x.updated_at_ms
FROM deliveries d
JOIN notifications n ON n.id = d.notification_id
LEFT JOIN destinations x ON x.tenant = d.tenant AND x.id = d.destination_id
WHERE d.status = 'pending' AND d.next_attempt_at_ms <= $1
ORDER BY d.next_attempt_at_ms, n.created_at_ms, d.notification_id,
         d.destination_id
LIMIT $2"#;

/// Due deliveries for a claim, in [`due_from_row`] column order: round-robin across tenants
/// (`tenant_turn`: the n-th oldest of its tenant), at most $6 per destination and $7 per tenant,
/// $2 in all, skipping the tenants in the array $3 and the (tenant, destination) pairs given
/// as the parallel arrays $4 and $5. "Oldest" is [`DUE_SELECT`]'s order.
const FAIR_DUE_SELECT: &str = r#"
WITH due AS (
    SELECT d.notification_id AS nid, d.destination_id AS did, d.tenant AS tenant,
           d.next_attempt_at_ms AS at, n.created_at_ms AS created,
           ROW_NUMBER() OVER (PARTITION BY d.tenant, d.destination_id
                              ORDER BY d.next_attempt_at_ms, n.created_at_ms,
                                       d.notification_id) AS destination_turn
    FROM deliveries d
    JOIN notifications n ON n.id = d.notification_id
    WHERE d.status = 'pending' AND d.next_attempt_at_ms <= $1
      AND d.tenant <> ALL ($3::text[])
      AND NOT EXISTS (
          SELECT 1 FROM UNNEST($4::text[], $5::text[]) AS busy (tenant, destination_id)
          WHERE busy.tenant = d.tenant AND busy.destination_id = d.destination_id)
),
fair AS (
    SELECT nid, did, at, created,
           ROW_NUMBER() OVER (PARTITION BY tenant
                              ORDER BY at, created, nid, did)
               AS tenant_turn
    FROM due WHERE destination_turn <= $6
)
SELECT d.notification_id, d.tenant, d.attempts, n.payload, n.kind, n.created_at_ms,
       d.destination_id, x.kind, x.config, x.updated_at_ms
FROM fair
JOIN deliveries d ON d.notification_id = fair.nid AND d.destination_id = fair.did
JOIN notifications n ON n.id = d.notification_id
LEFT JOIN destinations x ON x.tenant = d.tenant AND x.id = d.destination_id
WHERE fair.tenant_turn <= $7
ORDER BY fair.tenant_turn, fair.at, fair.created, fair.nid, fair.did
LIMIT $2"#;

/// A stored delivery status, as the enum.
fn status_from(text: &str) -> StoreResult<DeliveryStatus> {
    DeliveryStatus::parse(text)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown delivery status {text:?}")))
}

/// A stored `BIGINT` that must fit a `u32` (an attempt number or count).
fn to_u32(value: i64, what: &str) -> StoreResult<u32> {
    u32::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("{what} is out of range: {value}")))
}

fn due_from_row(row: &Row, op: &'static str) -> StoreResult<DueRow> {
    let notification_id: String = row.try_get(0).map_err(pg(op))?;
    let tenant: String = row.try_get(1).map_err(pg(op))?;
    let destination_id: String = row.try_get(6).map_err(pg(op))?;
    let Some(kind) = row.try_get::<_, Option<String>>(7).map_err(pg(op))? else {
        return Ok(DueRow::Orphan {
            notification_id,
            destination_id,
        });
    };
    Ok(DueRow::Live(DueDelivery {
        notification_id,
        attempt: to_u32(row.try_get(2).map_err(pg(op))?, "deliveries.attempts")?,
        payload: row.try_get(3).map_err(pg(op))?,
        kind: row.try_get(4).map_err(pg(op))?,
        created_at_ms: row.try_get(5).map_err(pg(op))?,
        destination: StoredDestination {
            tenant: tenant.clone(),
            id: destination_id,
            kind,
            config: row.try_get(8).map_err(pg(op))?,
            updated_at_ms: row.try_get(9).map_err(pg(op))?,
        },
        tenant,
    }))
}

fn attempt_from_row(row: &Row, op: &'static str) -> StoreResult<DeliveryAttempt> {
    let status_code = row
        .try_get::<_, Option<i64>>(5)
        .map_err(pg(op))?
        .map(|code| {
            u16::try_from(code).map_err(|_| {
                StoreError::Corrupt(format!(
                    "delivery_attempts.status_code is out of range: {code}"
                ))
            })
        })
        .transpose()?;
    Ok(DeliveryAttempt {
        notification_id: row.try_get(0).map_err(pg(op))?,
        destination_id: row.try_get(1).map_err(pg(op))?,
        attempt: to_u32(row.try_get(2).map_err(pg(op))?, "delivery_attempts.attempt")?,
        at_ms: row.try_get(3).map_err(pg(op))?,
        outcome: row.try_get(4).map_err(pg(op))?,
        status_code,
        error: row.try_get(6).map_err(pg(op))?,
        duration_ms: unsigned(
            row.try_get(7).map_err(pg(op))?,
            "delivery_attempts.duration_ms",
        )?,
    })
}

/// Up to `limit` due deliveries (orphans included), oldest due first, without claiming them.
async fn query_due(tx: &Transaction<'_>, now_ms: i64, limit: usize) -> StoreResult<Vec<DueRow>> {
    const OP: &str = "read due deliveries";
    let stmt = tx.prepare_cached(DUE_SELECT).await.map_err(pg(OP))?;
    tx.query(&stmt, &[&now_ms, &clamp_i64(limit)])
        .await
        .map_err(pg(OP))?
        .iter()
        .map(|row| due_from_row(row, OP))
        .collect()
}

/// The due deliveries a claim within `limits` takes (see [`FAIR_DUE_SELECT`]).
async fn query_fair_due(
    tx: &Transaction<'_>,
    now_ms: i64,
    limits: &ClaimLimits,
) -> StoreResult<Vec<DueRow>> {
    const OP: &str = "read due deliveries";
    let no_limit = |n: usize| if n == 0 { i64::MAX } else { clamp_i64(n) };
    let busy_tenants: Vec<&str> = limits.busy_tenants.iter().map(String::as_str).collect();
    let (busy_destination_tenants, busy_destinations): (Vec<&str>, Vec<&str>) = limits
        .busy_destinations
        .iter()
        .map(|(tenant, id)| (tenant.as_str(), id.as_str()))
        .unzip();
    let stmt = tx.prepare_cached(FAIR_DUE_SELECT).await.map_err(pg(OP))?;
    tx.query(
        &stmt,
        &[
            &now_ms,
            &clamp_i64(limits.total),
            &busy_tenants,
            &busy_destination_tenants,
            &busy_destinations,
            &no_limit(limits.per_destination),
            &no_limit(limits.per_tenant),
        ],
    )
    .await
    .map_err(pg(OP))?
    .iter()
    .map(|row| due_from_row(row, OP))
    .collect()
}

/// Loads the deliveries (with attempt logs) of one notification into a view.
pub(super) async fn notification_view(
    tx: &Transaction<'_>,
    row: NotificationRow,
) -> StoreResult<NotificationView> {
    let mut views = notification_views(tx, vec![row]).await?;
    views
        .pop()
        .ok_or_else(|| StoreError::Corrupt("a notification view went missing".to_owned()))
}

/// Loads the deliveries (with attempt logs) of several notifications into views, in the order
/// of `rows`: two queries whatever their number. Deliveries are ordered by destination id,
/// each one's attempts oldest first.
pub(super) async fn notification_views(
    tx: &Transaction<'_>,
    rows: Vec<NotificationRow>,
) -> StoreResult<Vec<NotificationView>> {
    const OP: &str = "read notification deliveries";
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = rows.iter().map(|row| row.id.as_str()).collect();
    let delivery_stmt = tx
        .prepare_cached(
            r#"SELECT notification_id, destination_id, status, attempts, next_attempt_at_ms,
                      last_error
               FROM deliveries WHERE notification_id = ANY ($1::text[])
               ORDER BY notification_id, destination_id"#,
        )
        .await
        .map_err(pg(OP))?;
    let mut deliveries: HashMap<String, Vec<DeliveryView>> = HashMap::new();
    for r in tx.query(&delivery_stmt, &[&ids]).await.map_err(pg(OP))? {
        let notification_id: String = r.try_get(0).map_err(pg(OP))?;
        let view = DeliveryView {
            destination_id: r.try_get(1).map_err(pg(OP))?,
            status: status_from(r.try_get(2).map_err(pg(OP))?)?,
            attempts: to_u32(r.try_get(3).map_err(pg(OP))?, "deliveries.attempts")?,
            next_attempt_at_ms: r.try_get(4).map_err(pg(OP))?,
            last_error: r.try_get(5).map_err(pg(OP))?,
            attempt_log: Vec::new(),
        };
        deliveries.entry(notification_id).or_default().push(view);
    }
    // Oldest first: by time, then attempt number; `ctid` (physical order, which for this
    // insert-only table is in practice the insertion order) only settles exact ties.
    let attempt_stmt = tx
        .prepare_cached(
            "SELECT notification_id, destination_id, attempt, at_ms, outcome, status_code, error,
                    duration_ms
             FROM delivery_attempts WHERE notification_id = ANY ($1::text[])
             ORDER BY at_ms, attempt, ctid",
        )
        .await
        .map_err(pg(OP))?;
    for r in tx.query(&attempt_stmt, &[&ids]).await.map_err(pg(OP))? {
        let attempt = attempt_from_row(&r, OP)?;
        if let Some(delivery) = deliveries
            .get_mut(&attempt.notification_id)
            .and_then(|views| {
                views
                    .iter_mut()
                    .find(|d| d.destination_id == attempt.destination_id)
            })
        {
            delivery.attempt_log.push(attempt);
        }
    }
    rows.into_iter()
        .map(|row| {
            let deliveries = deliveries.remove(&row.id).unwrap_or_default();
            row.into_view(deliveries)
        })
        .collect()
}

/// A row selected as [`NOTIFICATION_COLUMNS`].
pub(super) fn notification_row(row: &Row) -> StoreResult<NotificationRow> {
    const OP: &str = "read notification";
    Ok(NotificationRow {
        id: row.try_get(0).map_err(pg(OP))?,
        tenant: row.try_get(1).map_err(pg(OP))?,
        rule_id: row.try_get(2).map_err(pg(OP))?,
        kind: row.try_get(3).map_err(pg(OP))?,
        group_key: row.try_get(4).map_err(pg(OP))?,
        payload: row.try_get(5).map_err(pg(OP))?,
        created_at_ms: row.try_get(6).map_err(pg(OP))?,
    })
}

/// The columns [`notification_row`] reads, in its order.
pub(super) const NOTIFICATION_COLUMNS: &str =
    "id, tenant, rule_id, kind, group_key, payload, created_at_ms";

impl Outbox for PostgresStore {
    fn commit_step(
        &self,
        notifications: &[(i64, Vec<NewNotification>)],
        checkpoint: Option<(&str, &str)>,
    ) -> StoreResult<usize> {
        if !check_step(notifications, checkpoint)? {
            return Ok(0);
        }
        self.write(ENQUEUE_OP, async |tx| {
            let mut inserted = 0;
            for (due_ms, batch) in notifications {
                inserted += enqueue_in(tx, batch, *due_ms).await?;
            }
            if let Some((key, value)) = checkpoint {
                put_meta(tx, key, value).await?;
            }
            Ok(inserted)
        })
    }

    fn open_alerts(&self, tenant: Option<&str>) -> StoreResult<Vec<OpenAlert>> {
        const OP: &str = "list open alerts";
        self.read(OP, async |tx| {
            tx.query(
                r#"SELECT tenant, rule_id, group_key, since_ms, notification_id FROM open_alerts
                   WHERE $1::text IS NULL OR tenant = $1
                   ORDER BY tenant, rule_id, group_key"#,
                &[&tenant],
            )
            .await
            .map_err(pg(OP))?
            .iter()
            .map(|row| {
                Ok(OpenAlert {
                    tenant: row.try_get(0).map_err(pg(OP))?,
                    rule_id: row.try_get(1).map_err(pg(OP))?,
                    group_key: row.try_get(2).map_err(pg(OP))?,
                    since_ms: row.try_get(3).map_err(pg(OP))?,
                    notification_id: row.try_get(4).map_err(pg(OP))?,
                })
            })
            .collect()
        })
    }

    fn due_deliveries(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<DueDelivery>> {
        let rows = self.read("read due deliveries", async |tx| {
            query_due(tx, now_ms, limit).await
        })?;
        Ok(rows.into_iter().filter_map(DueRow::live).collect())
    }

    fn claim_due_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limits: &ClaimLimits,
    ) -> StoreResult<Vec<DueDelivery>> {
        const OP: &str = "claim due deliveries";
        self.write(OP, async |tx| {
            let lease_until = now_ms.saturating_add(lease_ms.max(0));
            let mut claimed = Vec::new();
            let mut orphans: Vec<(String, String, String)> = Vec::new();
            for row in query_fair_due(tx, now_ms, limits).await? {
                match row {
                    DueRow::Live(due) => claimed.push(due),
                    DueRow::Orphan {
                        notification_id,
                        destination_id,
                    } => {
                        let error = format!("destination {destination_id} no longer exists");
                        orphans.push((notification_id, destination_id, error));
                    }
                }
            }
            if !claimed.is_empty() {
                let (notification_ids, destination_ids): (Vec<&str>, Vec<&str>) = claimed
                    .iter()
                    .map(|due| (due.notification_id.as_str(), due.destination.id.as_str()))
                    .unzip();
                let lease = tx
                    .prepare_cached(
                        "UPDATE deliveries d SET next_attempt_at_ms = $1, claimed = 1
                         FROM UNNEST($2::text[], $3::text[])
                             AS c (notification_id, destination_id)
                         WHERE d.notification_id = c.notification_id
                           AND d.destination_id = c.destination_id",
                    )
                    .await
                    .map_err(pg(OP))?;
                tx.execute(&lease, &[&lease_until, &notification_ids, &destination_ids])
                    .await
                    .map_err(pg(OP))?;
            }
            // A deleted destination can never be delivered to: log why and bury it. The log
            // entry repeats the last attempt number: no attempt was made.
            if !orphans.is_empty() {
                let notification_ids: Vec<&str> = orphans.iter().map(|o| o.0.as_str()).collect();
                let destination_ids: Vec<&str> = orphans.iter().map(|o| o.1.as_str()).collect();
                let errors: Vec<&str> = orphans.iter().map(|o| o.2.as_str()).collect();
                let log = tx
                    .prepare_cached(
                        "INSERT INTO delivery_attempts
                            (notification_id, destination_id, attempt, at_ms, outcome,
                             status_code, error, duration_ms)
                         SELECT d.notification_id, d.destination_id, d.attempts, $1, 'dead',
                                NULL, o.error, 0
                         FROM UNNEST($2::text[], $3::text[], $4::text[])
                             AS o (notification_id, destination_id, error)
                         JOIN deliveries d ON d.notification_id = o.notification_id
                                          AND d.destination_id = o.destination_id",
                    )
                    .await
                    .map_err(pg(OP))?;
                tx.execute(
                    &log,
                    &[&now_ms, &notification_ids, &destination_ids, &errors],
                )
                .await
                .map_err(pg(OP))?;
                let bury = tx
                    .prepare_cached(
                        "UPDATE deliveries d SET status = 'dead', next_attempt_at_ms = NULL,
                            last_error = o.error
                         FROM UNNEST($1::text[], $2::text[], $3::text[])
                             AS o (notification_id, destination_id, error)
                         WHERE d.notification_id = o.notification_id
                           AND d.destination_id = o.destination_id",
                    )
                    .await
                    .map_err(pg(OP))?;
                tx.execute(&bury, &[&notification_ids, &destination_ids, &errors])
                    .await
                    .map_err(pg(OP))?;
            }
            Ok(claimed)
        })
    }

    fn record_attempt(&self, attempt: &DeliveryAttempt, next: DeliveryNext) -> StoreResult<()> {
        const OP: &str = "record delivery attempt";
        self.write(OP, async |tx| {
            let select = tx
                .prepare_cached(
                    "SELECT status FROM deliveries
                     WHERE notification_id = $1 AND destination_id = $2",
                )
                .await
                .map_err(pg(OP))?;
            let row = tx
                .query_opt(
                    &select,
                    &[&attempt.notification_id, &attempt.destination_id],
                )
                .await
                .map_err(pg(OP))?;
            let Some(row) = row else {
                return Err(StoreError::NotFound(format!(
                    "delivery of notification {} to destination {}",
                    attempt.notification_id, attempt.destination_id
                )));
            };
            let status = status_from(row.try_get(0).map_err(pg(OP))?)?;
            let log = tx
                .prepare_cached(
                    "INSERT INTO delivery_attempts
                        (notification_id, destination_id, attempt, at_ms, outcome, status_code,
                         error, duration_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .await
                .map_err(pg(OP))?;
            tx.execute(
                &log,
                &[
                    &attempt.notification_id,
                    &attempt.destination_id,
                    &i64::from(attempt.attempt),
                    &attempt.at_ms,
                    &attempt.outcome,
                    &attempt.status_code.map(i64::from),
                    &attempt.error,
                    &clamp_i64(attempt.duration_ms),
                ],
            )
            .await
            .map_err(pg(OP))?;
            if status != DeliveryStatus::Pending {
                // Another sender finished it while our lease ran out; keep its verdict.
                return Ok(());
            }
            let (new_status, next_at, last_error) = match next {
                DeliveryNext::Delivered => (DeliveryStatus::Delivered, None, None),
                DeliveryNext::RetryAt(at) => {
                    (DeliveryStatus::Pending, Some(at), attempt.error.as_deref())
                }
                DeliveryNext::Dead => (DeliveryStatus::Dead, None, attempt.error.as_deref()),
            };
            let update = tx
                .prepare_cached(
                    "UPDATE deliveries SET status = $1, attempts = attempts + 1,
                        next_attempt_at_ms = $2, last_error = $3, claimed = 0
                     WHERE notification_id = $4 AND destination_id = $5",
                )
                .await
                .map_err(pg(OP))?;
            tx.execute(
                &update,
                &[
                    &new_status.as_str(),
                    &next_at,
                    &last_error,
                    &attempt.notification_id,
                    &attempt.destination_id,
                ],
            )
            .await
            .map_err(pg(OP))?;
            Ok(())
        })
    }

    fn list_notifications(
        &self,
        tenant: &str,
        filter: &NotificationFilter,
    ) -> StoreResult<Vec<NotificationView>> {
        const OP: &str = "list notifications";
        let limit = if filter.limit == 0 {
            DEFAULT_NOTIFICATION_LIMIT
        } else {
            filter.limit
        };
        self.read(OP, async |tx| {
            let rows = tx
                .query(
                    &format!(
                        r#"SELECT {NOTIFICATION_COLUMNS} FROM notifications n
                           WHERE n.tenant = $1
                             AND ($2::text IS NULL OR n.rule_id = $2)
                             AND ($3::text IS NULL OR EXISTS (
                                  SELECT 1 FROM deliveries d
                                  WHERE d.notification_id = n.id AND d.status = $3))
                             AND ($4::bigint IS NULL OR n.created_at_ms < $4
                                  OR (n.created_at_ms = $4 AND n.id < $5::text))
                           ORDER BY n.created_at_ms DESC, n.id DESC
                           LIMIT $6"#
                    ),
                    &[
                        &tenant,
                        &filter.rule_id,
                        &filter.status.map(DeliveryStatus::as_str),
                        &filter.before.as_ref().map(|c| c.created_at_ms),
                        &filter.before.as_ref().map(|c| c.id.as_str()),
                        &clamp_i64(limit),
                    ],
                )
                .await
                .map_err(pg(OP))?
                .iter()
                .map(notification_row)
                .collect::<StoreResult<Vec<_>>>()?;
            notification_views(tx, rows).await
        })
    }

    fn get_notification(&self, tenant: &str, id: &str) -> StoreResult<Option<NotificationView>> {
        const OP: &str = "get notification";
        self.read(OP, async |tx| {
            let row = tx
                .query_opt(
                    &format!(
                        "SELECT {NOTIFICATION_COLUMNS} FROM notifications
                         WHERE tenant = $1 AND id = $2"
                    ),
                    &[&tenant, &id],
                )
                .await
                .map_err(pg(OP))?;
            match row {
                None => Ok(None),
                Some(row) => Ok(Some(notification_view(tx, notification_row(&row)?).await?)),
            }
        })
    }

    fn delivery_counts(&self) -> StoreResult<Vec<(DeliveryStatus, u64)>> {
        const OP: &str = "count deliveries";
        let found: Vec<(DeliveryStatus, u64)> = self.read(OP, async |tx| {
            tx.query(
                "SELECT status, count(*) FROM deliveries GROUP BY status",
                &[],
            )
            .await
            .map_err(pg(OP))?
            .iter()
            .map(|row| {
                Ok((
                    status_from(row.try_get(0).map_err(pg(OP))?)?,
                    unsigned(row.try_get(1).map_err(pg(OP))?, "a delivery count")?,
                ))
            })
            .collect()
        })?;
        Ok(DeliveryStatus::ALL
            .into_iter()
            .map(|status| {
                let count = found
                    .iter()
                    .find(|(s, _)| *s == status)
                    .map_or(0, |(_, c)| *c);
                (status, count)
            })
            .collect())
    }

    fn release_claims(&self, now_ms: i64) -> StoreResult<usize> {
        const OP: &str = "release claims";
        let released = self.write(OP, async |tx| {
            tx.execute(
                "UPDATE deliveries SET next_attempt_at_ms = $1, claimed = 0
                 WHERE status = 'pending' AND claimed = 1",
                &[&now_ms],
            )
            .await
            .map_err(pg(OP))
        })?;
        Ok(usize::try_from(released).unwrap_or(usize::MAX))
    }
}

/// What [`Outbox::commit_step`] reports failing as.
const ENQUEUE_OP: &str = "enqueue notifications";

/// What the new notifications of one enqueue do to one open alert `(tenant, rule, group)`.
#[derive(Default)]
struct AlertEffect<'a> {
    /// A `resolved` notification closed it (any row stored before the batch is deleted).
    resolved: bool,
    /// The alert open at the end: the `since_ms` of the first firing after the last resolve
    /// (kept as stored when the batch resolved nothing and the alert is already open), and the
    /// most recent firing notification.
    firing: Option<(i64, &'a str)>,
}

/// Inserts notifications (and their deliveries, due at `now_ms`, and open-alert effects) inside
/// `tx`; returns how many were new. See [`Outbox::enqueue_notifications`] for what each does.
///
/// Processed as in input order, in a fixed number of statements: the ids already stored are
/// read first; a notification is new at the first occurrence of an id neither stored nor seen
/// earlier in the batch, and an id owned by another tenant (stored, or earlier in the batch) is
/// refused, naming the first such notification. The open-alert effects of the new ones are
/// folded per alert in input order, then applied as one delete and one upsert.
pub(super) async fn enqueue_in(
    tx: &Transaction<'_>,
    notifications: &[NewNotification],
    now_ms: i64,
) -> StoreResult<usize> {
    const OP: &str = ENQUEUE_OP;
    if notifications.is_empty() {
        return Ok(0);
    }
    let ids: Vec<&str> = notifications.iter().map(|n| n.id.as_str()).collect();
    let owners_stmt = tx
        .prepare_cached("SELECT id, tenant FROM notifications WHERE id = ANY ($1::text[])")
        .await
        .map_err(pg(OP))?;
    let stored = tx.query(&owners_stmt, &[&ids]).await.map_err(pg(OP))?;
    let mut owners: HashMap<&str, &str> = HashMap::with_capacity(stored.len() + ids.len());
    for row in &stored {
        owners.insert(
            row.try_get(0).map_err(pg(OP))?,
            row.try_get(1).map_err(pg(OP))?,
        );
    }
    let mut fresh: Vec<&NewNotification> = Vec::new();
    for n in notifications {
        match owners.entry(n.id.as_str()) {
            Entry::Occupied(owner) => {
                if *owner.get() != n.tenant {
                    // Ids are global keys; a clash across tenants would silently drop one
                    // tenant's notification, so it is refused instead.
                    return Err(StoreError::InvalidInput(format!(
                        "notification id {} already belongs to another tenant; \
                         notification ids must be derived from the tenant too",
                        n.id
                    )));
                }
            }
            Entry::Vacant(slot) => {
                slot.insert(n.tenant.as_str());
                fresh.push(n);
            }
        }
    }
    if fresh.is_empty() {
        return Ok(0);
    }

    let insert = tx
        .prepare_cached(
            "INSERT INTO notifications
                (id, tenant, rule_id, kind, group_key, payload, created_at_ms)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::bigint[])
             ON CONFLICT (id) DO NOTHING",
        )
        .await
        .map_err(pg(OP))?;
    let column =
        |f: fn(&NewNotification) -> &str| -> Vec<&str> { fresh.iter().map(|n| f(n)).collect() };
    let created: Vec<i64> = fresh.iter().map(|n| n.created_at_ms).collect();
    tx.execute(
        &insert,
        &[
            &column(|n| n.id.as_str()),
            &column(|n| n.tenant.as_str()),
            &column(|n| n.rule_id.as_str()),
            &column(|n| n.kind.as_str()),
            &column(|n| n.group_key.as_str()),
            &column(|n| n.payload.as_str()),
            &created,
        ],
    )
    .await
    .map_err(pg(OP))?;

    // One pending delivery per distinct destination.
    let mut delivery_notifications: Vec<&str> = Vec::new();
    let mut delivery_destinations: Vec<&str> = Vec::new();
    let mut delivery_tenants: Vec<&str> = Vec::new();
    for n in &fresh {
        let destinations: BTreeSet<&str> = n.destination_ids.iter().map(String::as_str).collect();
        for destination in destinations {
            delivery_notifications.push(&n.id);
            delivery_destinations.push(destination);
            delivery_tenants.push(&n.tenant);
        }
    }
    if !delivery_notifications.is_empty() {
        let delivery = tx
            .prepare_cached(
                "INSERT INTO deliveries
                    (notification_id, destination_id, tenant, status, attempts,
                     next_attempt_at_ms)
                 SELECT notification_id, destination_id, tenant, 'pending', 0, $4
                 FROM UNNEST($1::text[], $2::text[], $3::text[])
                     AS new (notification_id, destination_id, tenant)
                 ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(pg(OP))?;
        tx.execute(
            &delivery,
            &[
                &delivery_notifications,
                &delivery_destinations,
                &delivery_tenants,
                &now_ms,
            ],
        )
        .await
        .map_err(pg(OP))?;
    }

    // Open alerts: each alert's firings and resolves, in input order.
    let mut effects: HashMap<(&str, &str, &str), AlertEffect<'_>> = HashMap::new();
    for n in &fresh {
        let key = (n.tenant.as_str(), n.rule_id.as_str(), n.group_key.as_str());
        match n.kind.as_str() {
            "firing" => {
                let effect = effects.entry(key).or_default();
                let since = effect.firing.map_or(n.created_at_ms, |(since, _)| since);
                effect.firing = Some((since, &n.id));
            }
            "resolved" => {
                let effect = effects.entry(key).or_default();
                effect.resolved = true;
                effect.firing = None;
            }
            _ => {}
        }
    }
    if effects.is_empty() {
        return Ok(fresh.len());
    }
    let (mut closed_tenants, mut closed_rules, mut closed_groups) = (vec![], vec![], vec![]);
    let (mut open_tenants, mut open_rules, mut open_groups) = (vec![], vec![], vec![]);
    let (mut open_since, mut open_notifications) = (vec![], vec![]);
    for ((tenant, rule_id, group_key), effect) in &effects {
        if effect.resolved {
            closed_tenants.push(*tenant);
            closed_rules.push(*rule_id);
            closed_groups.push(*group_key);
        }
        if let Some((since, notification_id)) = effect.firing {
            open_tenants.push(*tenant);
            open_rules.push(*rule_id);
            open_groups.push(*group_key);
            open_since.push(since);
            open_notifications.push(notification_id);
        }
    }
    if !closed_tenants.is_empty() {
        let resolve = tx
            .prepare_cached(
                "DELETE FROM open_alerts a
                 USING UNNEST($1::text[], $2::text[], $3::text[]) AS r (tenant, rule_id, group_key)
                 WHERE a.tenant = r.tenant AND a.rule_id = r.rule_id
                   AND a.group_key = r.group_key",
            )
            .await
            .map_err(pg(OP))?;
        tx.execute(&resolve, &[&closed_tenants, &closed_rules, &closed_groups])
            .await
            .map_err(pg(OP))?;
    }
    if !open_tenants.is_empty() {
        // One row per alert, so no row is updated twice by the statement.
        let fire = tx
            .prepare_cached(
                "INSERT INTO open_alerts (tenant, rule_id, group_key, since_ms, notification_id)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[],
                                      $5::text[])
                 ON CONFLICT (tenant, rule_id, group_key)
                 DO UPDATE SET notification_id = excluded.notification_id",
            )
            .await
            .map_err(pg(OP))?;
        tx.execute(
            &fire,
            &[
                &open_tenants,
                &open_rules,
                &open_groups,
                &open_since,
                &open_notifications,
            ],
        )
        .await
        .map_err(pg(OP))?;
    }
    Ok(fresh.len())
}
