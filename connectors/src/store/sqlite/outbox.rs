//! [`Outbox`] on SQLite: the `notifications`, `deliveries`, `delivery_attempts` and
//! `open_alerts` tables.

use std::collections::BTreeSet;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ValueRef};
use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::meta::put_meta;
use super::{SqliteStore, clamp_i64, db};
use crate::store::outbox::{DueRow, NotificationRow, check_step};
use crate::store::{
    ClaimLimits, DeliveryAttempt, DeliveryNext, DeliveryStatus, DeliveryView, DueDelivery,
    NewNotification, NotificationFilter, NotificationView, OpenAlert, Outbox, StoreError,
    StoreResult, StoredDestination,
};

/// Default page size of [`Outbox::list_notifications`].
const DEFAULT_NOTIFICATION_LIMIT: usize = 100;

/// Due deliveries in [`due_from_row`] column order; `d` = deliveries, `n` = notifications,
/// `x` = destinations (NULL columns when the destination was deleted).
const DUE_SELECT: &str = "
SELECT d.notification_id, d.tenant, d.attempts, n.payload, n.kind, n.created_at_ms,
       d.destination_id, x.kind, x.config, x.updated_at_ms
FROM deliveries d
JOIN notifications n ON n.id = d.notification_id
LEFT JOIN destinations x ON x.tenant = d.tenant AND x.id = d.destination_id
WHERE d.status = 'pending' AND d.next_attempt_at_ms <= ?1
ORDER BY d.next_attempt_at_ms, d.rowid
LIMIT ?2";

/// Due deliveries for a claim, in [`due_from_row`] column order: round-robin across tenants
/// (`tenant_turn`: the n-th oldest of its tenant), at most ?5 per destination and ?6 per tenant,
/// skipping the tenants in the JSON array ?3 and the `tenant<US>destination` pairs in ?4.
const FAIR_DUE_SELECT: &str = "
WITH due AS (
    SELECT d.rowid AS rid, d.tenant AS tenant, d.next_attempt_at_ms AS at,
           ROW_NUMBER() OVER (PARTITION BY d.tenant, d.destination_id
                              ORDER BY d.next_attempt_at_ms, d.rowid) AS destination_turn
    FROM deliveries d
    WHERE d.status = 'pending' AND d.next_attempt_at_ms <= ?1
      AND d.tenant NOT IN (SELECT value FROM json_each(?3))
      AND d.tenant || char(31) || d.destination_id NOT IN (SELECT value FROM json_each(?4))
),
fair AS (
    SELECT rid, at, ROW_NUMBER() OVER (PARTITION BY tenant ORDER BY at, rid) AS tenant_turn
    FROM due WHERE destination_turn <= ?5
)
SELECT d.notification_id, d.tenant, d.attempts, n.payload, n.kind, n.created_at_ms,
       d.destination_id, x.kind, x.config, x.updated_at_ms
FROM fair
JOIN deliveries d ON d.rowid = fair.rid
JOIN notifications n ON n.id = d.notification_id
LEFT JOIN destinations x ON x.tenant = d.tenant AND x.id = d.destination_id
WHERE fair.tenant_turn <= ?6
ORDER BY fair.tenant_turn, fair.at, fair.rid
LIMIT ?2";

impl FromSql for DeliveryStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        Self::parse(text)
            .ok_or_else(|| FromSqlError::Other(format!("unknown delivery status {text:?}").into()))
    }
}

fn due_from_row(row: &Row<'_>) -> rusqlite::Result<DueRow> {
    let notification_id: String = row.get(0)?;
    let tenant: String = row.get(1)?;
    let destination_id: String = row.get(6)?;
    let Some(kind) = row.get::<_, Option<String>>(7)? else {
        return Ok(DueRow::Orphan {
            notification_id,
            destination_id,
        });
    };
    Ok(DueRow::Live(DueDelivery {
        notification_id,
        attempt: row.get(2)?,
        payload: row.get(3)?,
        kind: row.get(4)?,
        created_at_ms: row.get(5)?,
        destination: StoredDestination {
            tenant: tenant.clone(),
            id: destination_id,
            kind,
            config: row.get(8)?,
            updated_at_ms: row.get(9)?,
        },
        tenant,
    }))
}

fn attempt_from_row(row: &Row<'_>) -> rusqlite::Result<DeliveryAttempt> {
    Ok(DeliveryAttempt {
        notification_id: row.get(0)?,
        destination_id: row.get(1)?,
        attempt: row.get(2)?,
        at_ms: row.get(3)?,
        outcome: row.get(4)?,
        status_code: row.get(5)?,
        error: row.get(6)?,
        duration_ms: row.get(7)?,
    })
}

fn query_due(tx: &Transaction<'_>, now_ms: i64, limit: usize) -> StoreResult<Vec<DueRow>> {
    let mut stmt = tx
        .prepare_cached(DUE_SELECT)
        .map_err(db("read due deliveries"))?;
    let rows = stmt
        .query_map(params![now_ms, clamp_i64(limit)], due_from_row)
        .map_err(db("read due deliveries"))?;
    rows.collect::<Result<_, _>>()
        .map_err(db("read due deliveries"))
}

/// The due deliveries a claim within `limits` takes (see [`FAIR_DUE_SELECT`]).
fn query_fair_due(
    tx: &Transaction<'_>,
    now_ms: i64,
    limits: &ClaimLimits,
) -> StoreResult<Vec<DueRow>> {
    const OP: &str = "read due deliveries";
    let no_limit = |n: usize| if n == 0 { i64::MAX } else { clamp_i64(n) };
    let tenants = serde_json::to_string(&limits.busy_tenants)
        .map_err(|e| StoreError::InvalidInput(format!("busy tenants: {e}")))?;
    let pairs: Vec<String> = limits
        .busy_destinations
        .iter()
        .map(|(tenant, id)| format!("{tenant}\u{1f}{id}"))
        .collect();
    let destinations = serde_json::to_string(&pairs)
        .map_err(|e| StoreError::InvalidInput(format!("busy destinations: {e}")))?;
    let mut stmt = tx.prepare_cached(FAIR_DUE_SELECT).map_err(db(OP))?;
    let rows = stmt
        .query_map(
            params![
                now_ms,
                clamp_i64(limits.total),
                tenants,
                destinations,
                no_limit(limits.per_destination),
                no_limit(limits.per_tenant),
            ],
            due_from_row,
        )
        .map_err(db(OP))?;
    rows.collect::<Result<_, _>>().map_err(db(OP))
}

/// Loads the deliveries (with attempt logs) of one notification into a view.
pub(super) fn notification_view(
    tx: &Transaction<'_>,
    row: NotificationRow,
) -> StoreResult<NotificationView> {
    const OP: &str = "read notification deliveries";
    let mut deliveries: Vec<DeliveryView> = {
        let mut stmt = tx
            .prepare_cached(
                "SELECT destination_id, status, attempts, next_attempt_at_ms, last_error
                 FROM deliveries WHERE notification_id = ?1 ORDER BY destination_id",
            )
            .map_err(db(OP))?;
        let rows = stmt
            .query_map([&row.id], |r| {
                Ok(DeliveryView {
                    destination_id: r.get(0)?,
                    status: r.get(1)?,
                    attempts: r.get(2)?,
                    next_attempt_at_ms: r.get(3)?,
                    last_error: r.get(4)?,
                    attempt_log: Vec::new(),
                })
            })
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))?
    };
    let mut stmt = tx
        .prepare_cached(
            "SELECT notification_id, destination_id, attempt, at_ms, outcome, status_code, error,
                    duration_ms
             FROM delivery_attempts WHERE notification_id = ?1 ORDER BY rowid",
        )
        .map_err(db(OP))?;
    let attempts = stmt
        .query_map([&row.id], attempt_from_row)
        .map_err(db(OP))?;
    for attempt in attempts {
        let attempt = attempt.map_err(db(OP))?;
        if let Some(delivery) = deliveries
            .iter_mut()
            .find(|d| d.destination_id == attempt.destination_id)
        {
            delivery.attempt_log.push(attempt);
        }
    }
    row.into_view(deliveries)
}

pub(super) fn notification_row(row: &Row<'_>) -> rusqlite::Result<NotificationRow> {
    Ok(NotificationRow {
        id: row.get(0)?,
        tenant: row.get(1)?,
        rule_id: row.get(2)?,
        kind: row.get(3)?,
        group_key: row.get(4)?,
        payload: row.get(5)?,
        created_at_ms: row.get(6)?,
    })
}

pub(super) const NOTIFICATION_COLUMNS: &str =
    "id, tenant, rule_id, kind, group_key, payload, created_at_ms";

impl Outbox for SqliteStore {
    fn commit_step(
        &self,
        notifications: &[(i64, Vec<NewNotification>)],
        checkpoint: Option<(&str, &str)>,
    ) -> StoreResult<usize> {
        if !check_step(notifications, checkpoint)? {
            return Ok(0);
        }
        self.write(ENQUEUE_OP, |tx| {
            let mut inserted = 0;
            for (due_ms, batch) in notifications {
                inserted += enqueue_in(tx, batch, *due_ms)?;
            }
            if let Some((key, value)) = checkpoint {
                put_meta(tx, key, value)?;
            }
            Ok(inserted)
        })
    }

    fn open_alerts(&self, tenant: Option<&str>) -> StoreResult<Vec<OpenAlert>> {
        const OP: &str = "list open alerts";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT tenant, rule_id, group_key, since_ms, notification_id FROM open_alerts
                 WHERE ?1 IS NULL OR tenant = ?1 ORDER BY tenant, rule_id, group_key",
            )
            .map_err(db(OP))?;
        let rows = stmt
            .query_map([tenant], |row| {
                Ok(OpenAlert {
                    tenant: row.get(0)?,
                    rule_id: row.get(1)?,
                    group_key: row.get(2)?,
                    since_ms: row.get(3)?,
                    notification_id: row.get(4)?,
                })
            })
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }

    fn due_deliveries(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<DueDelivery>> {
        let rows = self.read("read due deliveries", |tx| query_due(tx, now_ms, limit))?;
        Ok(rows.into_iter().filter_map(DueRow::live).collect())
    }

    fn claim_due_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limits: &ClaimLimits,
    ) -> StoreResult<Vec<DueDelivery>> {
        const OP: &str = "claim due deliveries";
        self.write(OP, |tx| {
            let lease_until = now_ms.saturating_add(lease_ms.max(0));
            let mut lease = tx
                .prepare_cached(
                    "UPDATE deliveries SET next_attempt_at_ms = ?1, claimed = 1
                     WHERE notification_id = ?2 AND destination_id = ?3",
                )
                .map_err(db(OP))?;
            let mut bury = tx
                .prepare_cached(
                    "UPDATE deliveries SET status = 'dead', next_attempt_at_ms = NULL,
                        last_error = ?1
                     WHERE notification_id = ?2 AND destination_id = ?3",
                )
                .map_err(db(OP))?;
            let mut log = tx
                .prepare_cached(
                    "INSERT INTO delivery_attempts
                        (notification_id, destination_id, attempt, at_ms, outcome, status_code,
                         error, duration_ms)
                     SELECT notification_id, destination_id, attempts, ?1, 'dead', NULL, ?2, 0
                     FROM deliveries WHERE notification_id = ?3 AND destination_id = ?4",
                )
                .map_err(db(OP))?;
            let mut claimed = Vec::new();
            for row in query_fair_due(tx, now_ms, limits)? {
                match row {
                    DueRow::Live(due) => {
                        lease
                            .execute(params![
                                lease_until,
                                due.notification_id,
                                due.destination.id
                            ])
                            .map_err(db(OP))?;
                        claimed.push(due);
                    }
                    // A deleted destination can never be delivered to: log why and bury it.
                    // The log entry repeats the last attempt number: no attempt was made.
                    DueRow::Orphan {
                        notification_id,
                        destination_id,
                    } => {
                        let error = format!("destination {destination_id} no longer exists");
                        log.execute(params![now_ms, error, notification_id, destination_id])
                            .map_err(db(OP))?;
                        bury.execute(params![error, notification_id, destination_id])
                            .map_err(db(OP))?;
                    }
                }
            }
            Ok(claimed)
        })
    }

    fn record_attempt(&self, attempt: &DeliveryAttempt, next: DeliveryNext) -> StoreResult<()> {
        const OP: &str = "record delivery attempt";
        self.write(OP, |tx| {
            let status: Option<DeliveryStatus> = tx
                .prepare_cached(
                    "SELECT status FROM deliveries
                     WHERE notification_id = ?1 AND destination_id = ?2",
                )
                .and_then(|mut stmt| {
                    stmt.query_row([&attempt.notification_id, &attempt.destination_id], |row| {
                        row.get(0)
                    })
                    .optional()
                })
                .map_err(db(OP))?;
            let Some(status) = status else {
                return Err(StoreError::NotFound(format!(
                    "delivery of notification {} to destination {}",
                    attempt.notification_id, attempt.destination_id
                )));
            };
            tx.prepare_cached(
                "INSERT INTO delivery_attempts
                    (notification_id, destination_id, attempt, at_ms, outcome, status_code,
                     error, duration_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    attempt.notification_id,
                    attempt.destination_id,
                    attempt.attempt,
                    attempt.at_ms,
                    attempt.outcome,
                    attempt.status_code,
                    attempt.error,
                    clamp_i64(attempt.duration_ms)
                ])
            })
            .map_err(db(OP))?;
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
            tx.prepare_cached(
                "UPDATE deliveries SET status = ?1, attempts = attempts + 1,
                    next_attempt_at_ms = ?2, last_error = ?3, claimed = 0
                 WHERE notification_id = ?4 AND destination_id = ?5",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    new_status.as_str(),
                    next_at,
                    last_error,
                    attempt.notification_id,
                    attempt.destination_id
                ])
            })
            .map_err(db(OP))?;
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
        self.read(OP, |tx| {
            let rows: Vec<NotificationRow> = {
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "SELECT {NOTIFICATION_COLUMNS} FROM notifications n
                         WHERE n.tenant = ?1
                           AND (?2 IS NULL OR n.rule_id = ?2)
                           AND (?3 IS NULL OR EXISTS (
                                SELECT 1 FROM deliveries d
                                WHERE d.notification_id = n.id AND +d.status = ?3))
                           AND (?4 IS NULL OR n.created_at_ms < ?4
                                OR (n.created_at_ms = ?4 AND n.id < ?5))
                         ORDER BY n.created_at_ms DESC, n.id DESC
                         LIMIT ?6"
                    ))
                    .map_err(db(OP))?;
                let rows = stmt
                    .query_map(
                        params![
                            tenant,
                            filter.rule_id,
                            filter.status.map(DeliveryStatus::as_str),
                            filter.before.as_ref().map(|c| c.created_at_ms),
                            filter.before.as_ref().map(|c| c.id.as_str()),
                            clamp_i64(limit)
                        ],
                        notification_row,
                    )
                    .map_err(db(OP))?;
                rows.collect::<Result<_, _>>().map_err(db(OP))?
            };
            rows.into_iter()
                .map(|row| notification_view(tx, row))
                .collect()
        })
    }

    fn get_notification(&self, tenant: &str, id: &str) -> StoreResult<Option<NotificationView>> {
        const OP: &str = "get notification";
        self.read(OP, |tx| {
            let row = tx
                .prepare_cached(&format!(
                    "SELECT {NOTIFICATION_COLUMNS} FROM notifications
                     WHERE tenant = ?1 AND id = ?2"
                ))
                .and_then(|mut stmt| stmt.query_row([tenant, id], notification_row).optional())
                .map_err(db(OP))?;
            row.map(|row| notification_view(tx, row)).transpose()
        })
    }

    fn delivery_counts(&self) -> StoreResult<Vec<(DeliveryStatus, u64)>> {
        const OP: &str = "count deliveries";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached("SELECT status, count(*) FROM deliveries GROUP BY status")
            .map_err(db(OP))?;
        let found: Vec<(DeliveryStatus, u64)> = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(db(OP))?
            .collect::<Result<_, _>>()
            .map_err(db(OP))?;
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
        self.write(OP, |tx| {
            tx.execute(
                "UPDATE deliveries SET next_attempt_at_ms = ?1, claimed = 0
                 WHERE status = 'pending' AND claimed = 1",
                [now_ms],
            )
            .map_err(db(OP))
        })
    }
}

/// What [`Outbox::commit_step`] reports failing as.
const ENQUEUE_OP: &str = "enqueue notifications";

/// Inserts notifications (and their deliveries, due at `now_ms`, and open-alert effects) inside
/// `tx`; returns how many were new. See [`Outbox::enqueue_notifications`] for what each does.
pub(super) fn enqueue_in(
    tx: &Transaction<'_>,
    notifications: &[NewNotification],
    now_ms: i64,
) -> StoreResult<usize> {
    const OP: &str = ENQUEUE_OP;
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO notifications
                    (id, tenant, rule_id, kind, group_key, payload, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (id) DO NOTHING",
        )
        .map_err(db(OP))?;
    let mut owner = tx
        .prepare_cached("SELECT tenant FROM notifications WHERE id = ?1")
        .map_err(db(OP))?;
    let mut delivery = tx
        .prepare_cached(
            "INSERT INTO deliveries
                    (notification_id, destination_id, tenant, status, attempts,
                     next_attempt_at_ms)
                 VALUES (?1, ?2, ?3, 'pending', 0, ?4)
                 ON CONFLICT DO NOTHING",
        )
        .map_err(db(OP))?;
    let mut fire = tx
        .prepare_cached(
            "INSERT INTO open_alerts (tenant, rule_id, group_key, since_ms, notification_id)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tenant, rule_id, group_key)
                 DO UPDATE SET notification_id = excluded.notification_id",
        )
        .map_err(db(OP))?;
    let mut resolve = tx
        .prepare_cached(
            "DELETE FROM open_alerts WHERE tenant = ?1 AND rule_id = ?2 AND group_key = ?3",
        )
        .map_err(db(OP))?;
    let mut inserted = 0;
    for n in notifications {
        let new = insert
            .execute(params![
                n.id,
                n.tenant,
                n.rule_id,
                n.kind,
                n.group_key,
                n.payload,
                n.created_at_ms
            ])
            .map_err(db(OP))?;
        if new == 0 {
            let stored: String = owner.query_row([&n.id], |r| r.get(0)).map_err(db(OP))?;
            if stored != n.tenant {
                // Ids are global keys; a clash across tenants would silently drop one
                // tenant's notification, so it is refused instead.
                return Err(StoreError::InvalidInput(format!(
                    "notification id {} already belongs to another tenant; \
                         notification ids must be derived from the tenant too",
                    n.id
                )));
            }
            continue;
        }
        inserted += 1;
        let destinations: BTreeSet<&str> = n.destination_ids.iter().map(String::as_str).collect();
        for destination in destinations {
            delivery
                .execute(params![n.id, destination, n.tenant, now_ms])
                .map_err(db(OP))?;
        }
        match n.kind.as_str() {
            "firing" => {
                fire.execute(params![
                    n.tenant,
                    n.rule_id,
                    n.group_key,
                    n.created_at_ms,
                    n.id
                ])
                .map_err(db(OP))?;
            }
            "resolved" => {
                resolve
                    .execute([&n.tenant, &n.rule_id, &n.group_key])
                    .map_err(db(OP))?;
            }
            _ => {}
        }
    }
    Ok(inserted)
}
