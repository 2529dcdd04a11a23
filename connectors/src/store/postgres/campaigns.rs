//! [`Campaigns`] on PostgreSQL: the `campaigns` and `campaign_sends` tables; the campaigns'
//! position in the membership log is the meta key [`CAMPAIGN_POSITION_KEY`].
//!
//! As on SQLite, a send's key (tenant, campaign, instance, contact, channel) is its idempotency
//! key: [`Campaigns::add_sends`] inserts each key once (`ON CONFLICT DO NOTHING`; within one
//! batch the first occurrence wins), and [`Campaigns::finish_sends`] changes only sends still
//! pending or held and enqueues the notifications of exactly those, in the same
//! [`PostgresStore::write`] transaction, which holds the store's write lock: of two workers
//! finishing the same send, one changes it and enqueues its notification, the other neither.
//!
//! Both take a whole batch in a fixed number of statements over arrays (`UNNEST`). SQLite
//! updates a batch's outcomes one by one, so a send named twice in one batch is changed by the
//! second outcome too when the first left it held; [`finish_sends`](Campaigns::finish_sends)
//! reads the batch's stored statuses first and replays the outcomes in order to decide which
//! ones change their send, then writes each send's last change.
//!
//! Text is ordered and compared byte-wise (text columns are `COLLATE "C"`) where SQLite orders by it; ties
//! between sends due at the same time, or changed at the same time, come in no defined order
//! (SQLite: as its index has them).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::meta::{put_meta, read_position};
use super::outbox::enqueue_in;
use super::{PostgresStore, clamp_i64, pg, unsigned};
use crate::store::outbox::check_payloads;
use crate::store::{
    CampaignSend, Campaigns, MembershipChangeRow, NewNotification, NewSend, SendOutcome,
    SendStatus, StoreError, StoreResult, StoredCampaign,
};

/// The meta key of the campaigns' position in `audience_changes`.
pub(super) const CAMPAIGN_POSITION_KEY: &str = "campaign_position";

/// Columns of a [`StoredCampaign`], in [`campaign_from_row`] order.
const CAMPAIGN_COLUMNS: &str = "tenant, id, version, body, expanded_at_ms, updated_at_ms";

/// Columns of a [`CampaignSend`], in [`send_from_row`] order.
const SEND_COLUMNS: &str = "tenant, campaign, instance, contact, channel, due_ms, status, reason, \
                            notification_id, updated_at_ms";

/// A send's key: (tenant, campaign, instance, contact, channel).
type SendKey<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str);

fn send_key(send: &NewSend) -> SendKey<'_> {
    (
        &send.tenant,
        &send.campaign,
        &send.instance,
        &send.contact,
        &send.channel,
    )
}

fn campaign_from_row(row: &Row, op: &'static str) -> StoreResult<StoredCampaign> {
    Ok(StoredCampaign {
        tenant: row.try_get(0).map_err(pg(op))?,
        id: row.try_get(1).map_err(pg(op))?,
        version: unsigned(row.try_get(2).map_err(pg(op))?, "campaigns.version")?,
        body: row.try_get(3).map_err(pg(op))?,
        expanded_at_ms: row.try_get(4).map_err(pg(op))?,
        updated_at_ms: row.try_get(5).map_err(pg(op))?,
    })
}

/// A `campaign_sends` row; the status is checked by the table, so an unknown one is corruption.
fn send_from_row(row: &Row, op: &'static str) -> StoreResult<CampaignSend> {
    let status: String = row.try_get(6).map_err(pg(op))?;
    let status = SendStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("{op}: unknown send status {status:?}")))?;
    Ok(CampaignSend {
        send: NewSend {
            tenant: row.try_get(0).map_err(pg(op))?,
            campaign: row.try_get(1).map_err(pg(op))?,
            instance: row.try_get(2).map_err(pg(op))?,
            contact: row.try_get(3).map_err(pg(op))?,
            channel: row.try_get(4).map_err(pg(op))?,
            due_ms: row.try_get(5).map_err(pg(op))?,
        },
        status,
        reason: row.try_get(7).map_err(pg(op))?,
        notification_id: row.try_get(8).map_err(pg(op))?,
        updated_at_ms: row.try_get(9).map_err(pg(op))?,
    })
}

/// A campaign's version as a `BIGINT`; one beyond `i64::MAX` is refused before anything is
/// written (the SQLite store fails to bind it).
fn version_i64(version: u64) -> StoreResult<i64> {
    i64::try_from(version).map_err(|_| {
        StoreError::InvalidInput(format!(
            "campaign version {version} is too large (at most {})",
            i64::MAX
        ))
    })
}

/// Inserts the sends whose key is not stored yet (the first of a key repeated in `sends`);
/// how many were new.
async fn insert_sends_in(tx: &Transaction<'_>, sends: &[NewSend]) -> StoreResult<u64> {
    const OP: &str = "add campaign sends";
    if sends.is_empty() {
        return Ok(0);
    }
    let column = |f: fn(&NewSend) -> &str| -> Vec<&str> { sends.iter().map(f).collect() };
    let due: Vec<i64> = sends.iter().map(|s| s.due_ms).collect();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO campaign_sends
                (tenant, campaign, instance, contact, channel, due_ms, status, updated_at_ms)
             SELECT tenant, campaign, instance, contact, channel, due_ms, 'pending', due_ms
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::bigint[])
                 WITH ORDINALITY AS s (tenant, campaign, instance, contact, channel, due_ms, ord)
             ORDER BY ord
             ON CONFLICT DO NOTHING",
        )
        .await
        .map_err(pg(OP))?;
    tx.execute(
        &stmt,
        &[
            &column(|s| &s.tenant),
            &column(|s| &s.campaign),
            &column(|s| &s.instance),
            &column(|s| &s.contact),
            &column(|s| &s.channel),
            &due,
        ],
    )
    .await
    .map_err(pg(OP))
}

/// The stored status of each of `keys` (`None`: no such send), in `keys` order.
async fn stored_statuses(
    tx: &Transaction<'_>,
    keys: &[SendKey<'_>],
) -> StoreResult<Vec<Option<String>>> {
    const OP: &str = "finish campaign sends";
    let mut statuses = vec![None; keys.len()];
    if keys.is_empty() {
        return Ok(statuses);
    }
    let tenants: Vec<&str> = keys.iter().map(|k| k.0).collect();
    let campaigns: Vec<&str> = keys.iter().map(|k| k.1).collect();
    let instances: Vec<&str> = keys.iter().map(|k| k.2).collect();
    let contacts: Vec<&str> = keys.iter().map(|k| k.3).collect();
    let channels: Vec<&str> = keys.iter().map(|k| k.4).collect();
    let stmt = tx
        .prepare_cached(
            "SELECT k.ord, s.status
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
                 WITH ORDINALITY AS k (tenant, campaign, instance, contact, channel, ord)
             JOIN campaign_sends s
               ON s.tenant = k.tenant AND s.campaign = k.campaign AND s.instance = k.instance
              AND s.contact = k.contact AND s.channel = k.channel",
        )
        .await
        .map_err(pg(OP))?;
    let rows = tx
        .query(
            &stmt,
            &[&tenants, &campaigns, &instances, &contacts, &channels],
        )
        .await
        .map_err(pg(OP))?;
    for row in &rows {
        let ord: i64 = row.try_get(0).map_err(pg(OP))?;
        let slot = usize::try_from(ord)
            .ok()
            .and_then(|ord| ord.checked_sub(1))
            .and_then(|i| statuses.get_mut(i))
            .ok_or_else(|| StoreError::Corrupt(format!("{OP}: no send key at ordinal {ord}")))?;
        *slot = Some(row.try_get(1).map_err(pg(OP))?);
    }
    Ok(statuses)
}

/// Writes each send's last change (`finals`, one per key), if it is still pending or held.
async fn update_sends_in(
    tx: &Transaction<'_>,
    finals: &[&SendOutcome],
    now_ms: i64,
) -> StoreResult<()> {
    const OP: &str = "finish campaign sends";
    if finals.is_empty() {
        return Ok(());
    }
    let column =
        |f: fn(&NewSend) -> &str| -> Vec<&str> { finals.iter().map(|o| f(&o.send)).collect() };
    let statuses: Vec<&str> = finals.iter().map(|o| o.status.as_str()).collect();
    let reasons: Vec<Option<&str>> = finals.iter().map(|o| o.reason.as_deref()).collect();
    let notifications: Vec<Option<&str>> = finals
        .iter()
        .map(|o| o.notification.as_ref().map(|n| n.id.as_str()))
        .collect();
    let due: Vec<i64> = finals.iter().map(|o| o.send.due_ms).collect();
    let stmt = tx
        .prepare_cached(
            "UPDATE campaign_sends s
             SET status = f.status, reason = f.reason, notification_id = f.notification_id,
                 due_ms = f.due_ms, updated_at_ms = $10
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::text[], $9::bigint[])
                 AS f (tenant, campaign, instance, contact, channel, status, reason,
                       notification_id, due_ms)
             WHERE s.tenant = f.tenant AND s.campaign = f.campaign AND s.instance = f.instance
               AND s.contact = f.contact AND s.channel = f.channel
               AND s.status IN ('pending', 'held')",
        )
        .await
        .map_err(pg(OP))?;
    tx.execute(
        &stmt,
        &[
            &column(|s| &s.tenant),
            &column(|s| &s.campaign),
            &column(|s| &s.instance),
            &column(|s| &s.contact),
            &column(|s| &s.channel),
            &statuses,
            &reasons,
            &notifications,
            &due,
            &now_ms,
        ],
    )
    .await
    .map_err(pg(OP))?;
    Ok(())
}

impl Campaigns for PostgresStore {
    fn put_campaign(&self, c: &StoredCampaign) -> StoreResult<()> {
        const OP: &str = "put campaign";
        let version = version_i64(c.version)?;
        self.write(OP, async |tx| {
            tx.execute(
                "INSERT INTO campaigns (tenant, id, version, body, expanded_at_ms, updated_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (tenant, id) DO UPDATE SET
                    version = excluded.version, body = excluded.body,
                    updated_at_ms = excluded.updated_at_ms",
                &[
                    &c.tenant,
                    &c.id,
                    &version,
                    &c.body,
                    &c.expanded_at_ms,
                    &c.updated_at_ms,
                ],
            )
            .await
            .map_err(pg(OP))?;
            Ok(())
        })
    }

    fn get_campaign(&self, tenant: &str, id: &str) -> StoreResult<Option<StoredCampaign>> {
        const OP: &str = "get campaign";
        self.get_keyed(OP, ("campaigns", CAMPAIGN_COLUMNS), tenant, id, |row| {
            campaign_from_row(row, OP)
        })
    }

    fn list_campaigns(&self, tenant: Option<&str>) -> StoreResult<Vec<StoredCampaign>> {
        const OP: &str = "list campaigns";
        self.list_keyed(OP, ("campaigns", CAMPAIGN_COLUMNS), tenant, |row| {
            campaign_from_row(row, OP)
        })
    }

    /// Sends already decided (sent or refused) stay, as the contact's history.
    fn delete_campaign(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        const OP: &str = "delete campaign";
        self.write(OP, async |tx| {
            let n = tx
                .execute(
                    "DELETE FROM campaigns WHERE tenant = $1 AND id = $2",
                    &[&tenant, &id],
                )
                .await
                .map_err(pg(OP))?;
            tx.execute(
                "DELETE FROM campaign_sends WHERE tenant = $1 AND campaign = $2
                 AND status IN ('pending', 'held')",
                &[&tenant, &id],
            )
            .await
            .map_err(pg(OP))?;
            Ok(n > 0)
        })
    }

    /// `seq` is an identity column; since every write holds the store's write lock, changes
    /// commit in `seq` order and a reader past `after` never later finds a new change below it.
    fn membership_changes_after(
        &self,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<(u64, MembershipChangeRow)>> {
        const OP: &str = "read membership changes";
        self.read(OP, async |tx| {
            tx.query(
                "SELECT seq, tenant, audience, contact, at_ms, entered FROM audience_changes
                 WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&clamp_i64(after), &clamp_i64(limit)],
            )
            .await
            .map_err(pg(OP))?
            .iter()
            .map(|row| {
                Ok((
                    unsigned(row.try_get(0).map_err(pg(OP))?, "audience_changes.seq")?,
                    MembershipChangeRow {
                        tenant: row.try_get(1).map_err(pg(OP))?,
                        audience: row.try_get(2).map_err(pg(OP))?,
                        contact: row.try_get(3).map_err(pg(OP))?,
                        at_ms: row.try_get(4).map_err(pg(OP))?,
                        entered: row.try_get::<_, i64>(5).map_err(pg(OP))? != 0,
                    },
                ))
            })
            .collect()
        })
    }

    fn add_sends(
        &self,
        sends: &[NewSend],
        position: Option<u64>,
        expanded: Option<(&str, &str, i64)>,
    ) -> StoreResult<usize> {
        const OP: &str = "add campaign sends";
        self.write(OP, async |tx| {
            let added = insert_sends_in(tx, sends).await?;
            if let Some(position) = position {
                put_meta(tx, CAMPAIGN_POSITION_KEY, &position.to_string()).await?;
            }
            if let Some((tenant, id, at)) = expanded {
                tx.execute(
                    "UPDATE campaigns SET expanded_at_ms = $3 WHERE tenant = $1 AND id = $2",
                    &[&tenant, &id, &at],
                )
                .await
                .map_err(pg(OP))?;
            }
            Ok(usize::try_from(added).unwrap_or(usize::MAX))
        })
    }

    fn campaign_position(&self) -> StoreResult<u64> {
        read_position(self, CAMPAIGN_POSITION_KEY)
    }

    fn due_sends(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<CampaignSend>> {
        const OP: &str = "read due campaign sends";
        self.read(OP, async |tx| {
            tx.query(
                &format!(
                    "SELECT {SEND_COLUMNS} FROM campaign_sends
                     WHERE status IN ('pending', 'held') AND due_ms <= $1
                     ORDER BY due_ms LIMIT $2"
                ),
                &[&now_ms, &clamp_i64(limit)],
            )
            .await
            .map_err(pg(OP))?
            .iter()
            .map(|row| send_from_row(row, OP))
            .collect()
        })
    }

    /// Payloads are checked before anything is written. Then, as SQLite's one `UPDATE … WHERE
    /// status IN ('pending', 'held')` per outcome in order would: an outcome changes its send
    /// when the send exists and is pending or held at that point (after the batch's earlier
    /// outcomes), and the notifications of the outcomes that changed their send are enqueued,
    /// in the batch's order.
    fn finish_sends(&self, outcomes: &[SendOutcome], now_ms: i64) -> StoreResult<()> {
        const OP: &str = "finish campaign sends";
        let notifications: Vec<_> = outcomes
            .iter()
            .filter_map(|o| o.notification.clone())
            .collect();
        check_payloads(&notifications)?;
        if outcomes.is_empty() {
            return Ok(());
        }
        // The batch's distinct keys, and for each outcome the index of its key.
        let mut key_index: HashMap<SendKey<'_>, usize> = HashMap::with_capacity(outcomes.len());
        let mut keys: Vec<SendKey<'_>> = Vec::with_capacity(outcomes.len());
        let outcome_keys: Vec<usize> = outcomes
            .iter()
            .map(|o| match key_index.entry(send_key(&o.send)) {
                Entry::Occupied(at) => *at.get(),
                Entry::Vacant(at) => {
                    keys.push(*at.key());
                    *at.insert(keys.len() - 1)
                }
            })
            .collect();
        self.write(OP, async |tx| {
            let mut status = stored_statuses(tx, &keys).await?;
            // Each key's last outcome that changed it, and the notifications to enqueue.
            let mut last: Vec<Option<&SendOutcome>> = vec![None; keys.len()];
            let mut enqueue: Vec<NewNotification> = Vec::new();
            for (o, &k) in outcomes.iter().zip(&outcome_keys) {
                let (Some(current), Some(changed)) = (status.get_mut(k), last.get_mut(k)) else {
                    return Err(StoreError::Corrupt(format!("{OP}: no send key {k}")));
                };
                let waiting = matches!(current.as_deref(), Some("pending" | "held"));
                if !waiting {
                    continue;
                }
                *current = Some(o.status.as_str().to_owned());
                *changed = Some(o);
                if let Some(n) = &o.notification {
                    enqueue.push(n.clone());
                }
            }
            let finals: Vec<&SendOutcome> = last.into_iter().flatten().collect();
            update_sends_in(tx, &finals, now_ms).await?;
            enqueue_in(tx, &enqueue, now_ms).await?;
            Ok(())
        })
    }

    fn sent_since(&self, tenant: &str, contact: &str, since_ms: i64) -> StoreResult<u64> {
        const OP: &str = "count sends of a contact";
        self.read(OP, async |tx| {
            let row = tx
                .query_one(
                    "SELECT count(*) FROM campaign_sends
                     WHERE tenant = $1 AND contact = $2 AND status = 'sent'
                       AND updated_at_ms >= $3",
                    &[&tenant, &contact, &since_ms],
                )
                .await
                .map_err(pg(OP))?;
            unsigned(row.try_get(0).map_err(pg(OP))?, "the send count")
        })
    }

    fn campaign_counts(
        &self,
        tenant: &str,
        campaign: &str,
    ) -> StoreResult<BTreeMap<SendStatus, u64>> {
        const OP: &str = "count campaign sends";
        self.read(OP, async |tx| {
            let rows = tx
                .query(
                    "SELECT status, count(*) FROM campaign_sends
                     WHERE tenant = $1 AND campaign = $2 GROUP BY status",
                    &[&tenant, &campaign],
                )
                .await
                .map_err(pg(OP))?;
            let mut counts = BTreeMap::new();
            for row in &rows {
                let status: String = row.try_get(0).map_err(pg(OP))?;
                let status = SendStatus::parse(&status).ok_or_else(|| {
                    StoreError::Corrupt(format!("unknown send status {status:?}"))
                })?;
                let n = unsigned(row.try_get(1).map_err(pg(OP))?, "the send count")?;
                counts.insert(status, n);
            }
            Ok(counts)
        })
    }

    fn contact_sends(
        &self,
        tenant: &str,
        contact: &str,
        limit: usize,
    ) -> StoreResult<Vec<CampaignSend>> {
        const OP: &str = "read a contact's sends";
        self.read(OP, async |tx| {
            tx.query(
                &format!(
                    "SELECT {SEND_COLUMNS} FROM campaign_sends WHERE tenant = $1 AND contact = $2
                     ORDER BY updated_at_ms DESC LIMIT $3"
                ),
                &[&tenant, &contact, &clamp_i64(limit)],
            )
            .await
            .map_err(pg(OP))?
            .iter()
            .map(|row| send_from_row(row, OP))
            .collect()
        })
    }
}
