//! [`Campaigns`] on SQLite: the `campaigns` and `campaign_sends` tables; the campaigns'
//! position in the membership log is the meta key [`CAMPAIGN_POSITION_KEY`].

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, Row, params};

use super::meta::{put_meta, read_position};
use super::outbox::enqueue_in;
use super::{SqliteStore, clamp_i64, db};
use crate::store::outbox::check_payloads;
use crate::store::{
    CampaignSend, Campaigns, MembershipChangeRow, NewSend, SendOutcome, SendStatus, StoreError,
    StoreResult, StoredCampaign,
};

/// The meta key of the campaigns' position in `audience_changes`.
pub(super) const CAMPAIGN_POSITION_KEY: &str = "campaign_position";

const SEND_COLUMNS: &str = "tenant, campaign, instance, contact, channel, due_ms, status, reason, \
                            notification_id, updated_at_ms";

fn campaign_from_row(row: &Row<'_>) -> rusqlite::Result<StoredCampaign> {
    Ok(StoredCampaign {
        tenant: row.get(0)?,
        id: row.get(1)?,
        version: row.get(2)?,
        body: row.get(3)?,
        expanded_at_ms: row.get(4)?,
        updated_at_ms: row.get(5)?,
    })
}

fn send_from_row(row: &Row<'_>) -> rusqlite::Result<CampaignSend> {
    let status: String = row.get(6)?;
    let status = SendStatus::parse(&status).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            6,
            rusqlite::types::Type::Text,
            format!("unknown send status {status:?}").into(),
        )
    })?;
    Ok(CampaignSend {
        send: NewSend {
            tenant: row.get(0)?,
            campaign: row.get(1)?,
            instance: row.get(2)?,
            contact: row.get(3)?,
            channel: row.get(4)?,
            due_ms: row.get(5)?,
        },
        status,
        reason: row.get(7)?,
        notification_id: row.get(8)?,
        updated_at_ms: row.get(9)?,
    })
}

impl Campaigns for SqliteStore {
    fn put_campaign(&self, c: &StoredCampaign) -> StoreResult<()> {
        const OP: &str = "put campaign";
        self.write(OP, |tx| {
            tx.prepare_cached(
                "INSERT INTO campaigns (tenant, id, version, body, expanded_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (tenant, id) DO UPDATE SET
                    version = excluded.version, body = excluded.body,
                    updated_at_ms = excluded.updated_at_ms",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    c.tenant,
                    c.id,
                    c.version,
                    c.body,
                    c.expanded_at_ms,
                    c.updated_at_ms
                ])
            })
            .map_err(db(OP))?;
            Ok(())
        })
    }

    fn get_campaign(&self, tenant: &str, id: &str) -> StoreResult<Option<StoredCampaign>> {
        const OP: &str = "get campaign";
        let conn = self.reader();
        conn.prepare_cached(
            "SELECT tenant, id, version, body, expanded_at_ms, updated_at_ms FROM campaigns
             WHERE tenant = ?1 AND id = ?2",
        )
        .and_then(|mut stmt| stmt.query_row([tenant, id], campaign_from_row).optional())
        .map_err(db(OP))
    }

    fn list_campaigns(&self, tenant: Option<&str>) -> StoreResult<Vec<StoredCampaign>> {
        const OP: &str = "list campaigns";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT tenant, id, version, body, expanded_at_ms, updated_at_ms FROM campaigns
                 WHERE ?1 IS NULL OR tenant = ?1 ORDER BY tenant, id",
            )
            .map_err(db(OP))?;
        let rows = stmt
            .query_map([tenant], campaign_from_row)
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }

    fn delete_campaign(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        const OP: &str = "delete campaign";
        self.write(OP, |tx| {
            let n = tx
                .prepare_cached("DELETE FROM campaigns WHERE tenant = ?1 AND id = ?2")
                .and_then(|mut stmt| stmt.execute([tenant, id]))
                .map_err(db(OP))?;
            tx.prepare_cached(
                "DELETE FROM campaign_sends WHERE tenant = ?1 AND campaign = ?2
                 AND status IN ('pending', 'held')",
            )
            .and_then(|mut stmt| stmt.execute([tenant, id]))
            .map_err(db(OP))?;
            Ok(n > 0)
        })
    }

    fn membership_changes_after(
        &self,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<(u64, MembershipChangeRow)>> {
        const OP: &str = "read membership changes";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, tenant, audience, contact, at_ms, entered FROM audience_changes
                 WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(db(OP))?;
        let rows = stmt
            .query_map(params![clamp_i64(after), clamp_i64(limit)], |row| {
                Ok((
                    row.get(0)?,
                    MembershipChangeRow {
                        tenant: row.get(1)?,
                        audience: row.get(2)?,
                        contact: row.get(3)?,
                        at_ms: row.get(4)?,
                        entered: row.get(5)?,
                    },
                ))
            })
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }

    fn add_sends(
        &self,
        sends: &[NewSend],
        position: Option<u64>,
        expanded: Option<(&str, &str, i64)>,
    ) -> StoreResult<usize> {
        const OP: &str = "add campaign sends";
        self.write(OP, |tx| {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO campaign_sends
                        (tenant, campaign, instance, contact, channel, due_ms, status,
                         updated_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?6)
                     ON CONFLICT DO NOTHING",
                )
                .map_err(db(OP))?;
            let mut added = 0;
            for s in sends {
                added += insert
                    .execute(params![
                        s.tenant, s.campaign, s.instance, s.contact, s.channel, s.due_ms
                    ])
                    .map_err(db(OP))?;
            }
            if let Some(position) = position {
                put_meta(tx, CAMPAIGN_POSITION_KEY, &position.to_string())?;
            }
            if let Some((tenant, id, at)) = expanded {
                tx.prepare_cached(
                    "UPDATE campaigns SET expanded_at_ms = ?3 WHERE tenant = ?1 AND id = ?2",
                )
                .and_then(|mut stmt| stmt.execute(params![tenant, id, at]))
                .map_err(db(OP))?;
            }
            Ok(added)
        })
    }

    fn campaign_position(&self) -> StoreResult<u64> {
        read_position(self, CAMPAIGN_POSITION_KEY, "read campaign position")
    }

    fn due_sends(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<CampaignSend>> {
        const OP: &str = "read due campaign sends";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {SEND_COLUMNS} FROM campaign_sends
                 WHERE status IN ('pending', 'held') AND due_ms <= ?1
                 ORDER BY due_ms LIMIT ?2"
            ))
            .map_err(db(OP))?;
        let rows = stmt
            .query_map(params![now_ms, clamp_i64(limit)], send_from_row)
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }

    fn finish_sends(&self, outcomes: &[SendOutcome], now_ms: i64) -> StoreResult<()> {
        const OP: &str = "finish campaign sends";
        let notifications: Vec<_> = outcomes
            .iter()
            .filter_map(|o| o.notification.clone())
            .collect();
        check_payloads(&notifications)?;
        self.write(OP, |tx| {
            let mut update = tx
                .prepare_cached(
                    "UPDATE campaign_sends
                     SET status = ?6, reason = ?7, notification_id = ?8, due_ms = ?9,
                         updated_at_ms = ?10
                     WHERE tenant = ?1 AND campaign = ?2 AND instance = ?3 AND contact = ?4
                       AND channel = ?5 AND status IN ('pending', 'held')",
                )
                .map_err(db(OP))?;
            let mut enqueue = Vec::new();
            for o in outcomes {
                let s = &o.send;
                let changed = update
                    .execute(params![
                        s.tenant,
                        s.campaign,
                        s.instance,
                        s.contact,
                        s.channel,
                        o.status.as_str(),
                        o.reason,
                        o.notification.as_ref().map(|n| n.id.as_str()),
                        s.due_ms,
                        now_ms
                    ])
                    .map_err(db(OP))?;
                if changed > 0
                    && let Some(n) = &o.notification
                {
                    enqueue.push(n.clone());
                }
            }
            enqueue_in(tx, &enqueue, now_ms)?;
            Ok(())
        })
    }

    fn sent_since(&self, tenant: &str, contact: &str, since_ms: i64) -> StoreResult<u64> {
        const OP: &str = "count sends of a contact";
        let conn = self.reader();
        conn.prepare_cached(
            "SELECT count(*) FROM campaign_sends
             WHERE tenant = ?1 AND contact = ?2 AND status = 'sent' AND updated_at_ms >= ?3",
        )
        .and_then(|mut stmt| stmt.query_row(params![tenant, contact, since_ms], |row| row.get(0)))
        .map_err(db(OP))
    }

    fn campaign_counts(
        &self,
        tenant: &str,
        campaign: &str,
    ) -> StoreResult<BTreeMap<SendStatus, u64>> {
        const OP: &str = "count campaign sends";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT status, count(*) FROM campaign_sends
                 WHERE tenant = ?1 AND campaign = ?2 GROUP BY status",
            )
            .map_err(db(OP))?;
        let rows = stmt
            .query_map([tenant, campaign], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, u64>(1)?))
            })
            .map_err(db(OP))?;
        let mut counts = BTreeMap::new();
        for row in rows {
            let (status, n) = row.map_err(db(OP))?;
            let status = SendStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown send status {status:?}")))?;
            counts.insert(status, n);
        }
        Ok(counts)
    }

    fn contact_sends(
        &self,
        tenant: &str,
        contact: &str,
        limit: usize,
    ) -> StoreResult<Vec<CampaignSend>> {
        const OP: &str = "read a contact's sends";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {SEND_COLUMNS} FROM campaign_sends WHERE tenant = ?1 AND contact = ?2
                 ORDER BY updated_at_ms DESC LIMIT ?3"
            ))
            .map_err(db(OP))?;
        let rows = stmt
            .query_map(params![tenant, contact, clamp_i64(limit)], send_from_row)
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }
}
