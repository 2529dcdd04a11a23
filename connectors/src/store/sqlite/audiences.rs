//! [`Audiences`] on SQLite: the `contacts`, `audiences`, `audience_members`,
//! `audience_changes`, `audience_sizes` and `event_types` tables; the engine's position is the meta key
//! [`AUDIENCE_POSITION_KEY`], written in the step's transaction. `audience_changes.seq` is
//! `AUTOINCREMENT`, so a pruned log never hands a deleted change's number out again.

use rusqlite::{OptionalExtension, Row, params};

use super::campaigns::CAMPAIGN_POSITION_KEY;
use super::meta::{position_in, put_meta, read_position};
use super::{SqliteStore, clamp_i64, db};
use crate::store::{
    AudienceSize, AudienceStep, Audiences, Member, MembershipChangeRow, StoreError, StoreResult,
    StoredAudience, StoredContact,
};

/// The meta key of the audience engine's position in the event log.
pub(super) const AUDIENCE_POSITION_KEY: &str = "audience_position";

/// Sizes are kept one per audience and minute: the last size within the minute.
const SIZE_BUCKET_MS: i64 = 60_000;

fn contact_from_row(row: &Row<'_>) -> rusqlite::Result<StoredContact> {
    Ok(StoredContact {
        tenant: row.get(0)?,
        id: row.get(1)?,
        body: row.get(2)?,
        updated_at_ms: row.get(3)?,
    })
}

fn audience_from_row(row: &Row<'_>) -> rusqlite::Result<StoredAudience> {
    Ok(StoredAudience {
        tenant: row.get(0)?,
        id: row.get(1)?,
        version: row.get(2)?,
        body: row.get(3)?,
        updated_at_ms: row.get(4)?,
    })
}

fn change_from_row(row: &Row<'_>) -> rusqlite::Result<MembershipChangeRow> {
    Ok(MembershipChangeRow {
        tenant: row.get(0)?,
        audience: row.get(1)?,
        contact: row.get(2)?,
        at_ms: row.get(3)?,
        entered: row.get(4)?,
    })
}

fn put_contacts_in(tx: &rusqlite::Transaction<'_>, contacts: &[StoredContact]) -> StoreResult<()> {
    const OP: &str = "put contacts";
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO contacts (tenant, id, body, updated_at_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant, id) DO UPDATE SET
                body = excluded.body, updated_at_ms = excluded.updated_at_ms",
        )
        .map_err(db(OP))?;
    for c in contacts {
        if c.id.is_empty() {
            return Err(StoreError::InvalidInput("a contact id is empty".into()));
        }
        stmt.execute(params![c.tenant, c.id, c.body, c.updated_at_ms])
            .map_err(db(OP))?;
    }
    Ok(())
}

fn delete_contact_in(tx: &rusqlite::Transaction<'_>, tenant: &str, id: &str) -> StoreResult<bool> {
    const OP: &str = "delete contact";
    let n = tx
        .prepare_cached("DELETE FROM contacts WHERE tenant = ?1 AND id = ?2")
        .and_then(|mut stmt| stmt.execute([tenant, id]))
        .map_err(db(OP))?;
    tx.prepare_cached("DELETE FROM audience_members WHERE tenant = ?1 AND contact = ?2")
        .and_then(|mut stmt| stmt.execute([tenant, id]))
        .map_err(db(OP))?;
    Ok(n > 0)
}

impl Audiences for SqliteStore {
    fn put_contacts(&self, contacts: &[StoredContact]) -> StoreResult<()> {
        if contacts.is_empty() {
            return Ok(());
        }
        self.write("put contacts", |tx| put_contacts_in(tx, contacts))
    }

    fn get_contact(&self, tenant: &str, id: &str) -> StoreResult<Option<StoredContact>> {
        const OP: &str = "get contact";
        let conn = self.reader();
        conn.prepare_cached(
            "SELECT tenant, id, body, updated_at_ms FROM contacts WHERE tenant = ?1 AND id = ?2",
        )
        .and_then(|mut stmt| stmt.query_row([tenant, id], contact_from_row).optional())
        .map_err(db(OP))
    }

    fn delete_contact(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        self.write("delete contact", |tx| delete_contact_in(tx, tenant, id))
    }

    fn list_contacts(
        &self,
        tenant: Option<&str>,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> StoreResult<Vec<StoredContact>> {
        const OP: &str = "list contacts";
        let (after_tenant, after_id) = after.unwrap_or(("", ""));
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT tenant, id, body, updated_at_ms FROM contacts
                 WHERE (?1 IS NULL OR tenant = ?1) AND (tenant, id) > (?2, ?3)
                 ORDER BY tenant, id LIMIT ?4",
            )
            .map_err(db(OP))?;
        let rows = stmt
            .query_map(
                params![tenant, after_tenant, after_id, clamp_i64(limit)],
                contact_from_row,
            )
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }

    fn contact_count(&self, tenant: &str) -> StoreResult<u64> {
        const OP: &str = "count contacts";
        let conn = self.reader();
        conn.prepare_cached("SELECT count(*) FROM contacts WHERE tenant = ?1")
            .and_then(|mut stmt| stmt.query_row([tenant], |row| row.get(0)))
            .map_err(db(OP))
    }

    fn put_audience(&self, audience: &StoredAudience) -> StoreResult<()> {
        const OP: &str = "put audience";
        self.write(OP, |tx| {
            tx.prepare_cached(
                "INSERT INTO audiences (tenant, id, version, body, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tenant, id) DO UPDATE SET
                    version = excluded.version, body = excluded.body,
                    updated_at_ms = excluded.updated_at_ms",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    audience.tenant,
                    audience.id,
                    audience.version,
                    audience.body,
                    audience.updated_at_ms
                ])
            })
            .map_err(db(OP))?;
            Ok(())
        })
    }

    fn get_audience(&self, tenant: &str, id: &str) -> StoreResult<Option<StoredAudience>> {
        const OP: &str = "get audience";
        let conn = self.reader();
        conn.prepare_cached(
            "SELECT tenant, id, version, body, updated_at_ms FROM audiences
             WHERE tenant = ?1 AND id = ?2",
        )
        .and_then(|mut stmt| stmt.query_row([tenant, id], audience_from_row).optional())
        .map_err(db(OP))
    }

    fn list_audiences(&self, tenant: Option<&str>) -> StoreResult<Vec<StoredAudience>> {
        const OP: &str = "list audiences";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT tenant, id, version, body, updated_at_ms FROM audiences
                 WHERE ?1 IS NULL OR tenant = ?1 ORDER BY tenant, id",
            )
            .map_err(db(OP))?;
        let rows = stmt
            .query_map([tenant], audience_from_row)
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }

    fn delete_audience(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        const OP: &str = "delete audience";
        self.write(OP, |tx| {
            let n = tx
                .prepare_cached("DELETE FROM audiences WHERE tenant = ?1 AND id = ?2")
                .and_then(|mut stmt| stmt.execute([tenant, id]))
                .map_err(db(OP))?;
            for table in ["audience_members", "audience_sizes"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE tenant = ?1 AND audience = ?2"),
                    [tenant, id],
                )
                .map_err(db(OP))?;
            }
            Ok(n > 0)
        })
    }

    fn commit_audience_step(&self, step: &AudienceStep) -> StoreResult<()> {
        const OP: &str = "commit audience step";
        self.write(OP, |tx| {
            put_contacts_in(tx, &step.contacts_put)?;
            for (tenant, id) in &step.contacts_deleted {
                delete_contact_in(tx, tenant, id)?;
            }
            let mut enter = tx
                .prepare_cached(
                    "INSERT INTO audience_members (tenant, audience, contact, since_ms)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (tenant, audience, contact) DO UPDATE SET since_ms = excluded.since_ms",
                )
                .map_err(db(OP))?;
            let mut leave = tx
                .prepare_cached(
                    "DELETE FROM audience_members WHERE tenant = ?1 AND audience = ?2 AND contact = ?3",
                )
                .map_err(db(OP))?;
            let mut log = tx
                .prepare_cached(
                    "INSERT INTO audience_changes (tenant, audience, contact, at_ms, entered)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(db(OP))?;
            for c in &step.changes {
                if c.entered {
                    enter
                        .execute(params![c.tenant, c.audience, c.contact, c.at_ms])
                        .map_err(db(OP))?;
                } else {
                    leave
                        .execute(params![c.tenant, c.audience, c.contact])
                        .map_err(db(OP))?;
                }
                log.execute(params![c.tenant, c.audience, c.contact, c.at_ms, c.entered])
                    .map_err(db(OP))?;
            }
            let mut size = tx
                .prepare_cached(
                    "INSERT INTO audience_sizes (tenant, audience, minute_ms, at_ms, size)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (tenant, audience, minute_ms) DO UPDATE SET
                        at_ms = excluded.at_ms, size = excluded.size",
                )
                .map_err(db(OP))?;
            for s in &step.sizes {
                size.execute(params![
                    s.tenant,
                    s.audience,
                    s.at_ms.div_euclid(SIZE_BUCKET_MS) * SIZE_BUCKET_MS,
                    s.at_ms,
                    clamp_i64(s.size)
                ])
                .map_err(db(OP))?;
            }
            let mut types = tx
                .prepare_cached(
                    "INSERT INTO event_types (tenant, event_type) VALUES (?1, ?2)
                     ON CONFLICT (tenant, event_type) DO NOTHING",
                )
                .map_err(db(OP))?;
            for (tenant, event_type) in &step.new_event_types {
                types.execute([tenant, event_type]).map_err(db(OP))?;
            }
            put_meta(tx, AUDIENCE_POSITION_KEY, &step.position.to_string())
        })
    }

    fn known_event_types(&self) -> StoreResult<Vec<(String, String)>> {
        const OP: &str = "read event types";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT tenant, event_type FROM event_types ORDER BY tenant, event_type",
            )
            .map_err(db(OP))?;
        let rows = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }

    fn audience_position(&self) -> StoreResult<u64> {
        read_position(self, AUDIENCE_POSITION_KEY, "read audience position")
    }

    fn audience_members(
        &self,
        tenant: &str,
        audience: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Member>> {
        const OP: &str = "list audience members";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT contact, since_ms FROM audience_members
                 WHERE tenant = ?1 AND audience = ?2 AND contact > ?3
                 ORDER BY contact LIMIT ?4",
            )
            .map_err(db(OP))?;
        let rows = stmt
            .query_map(
                params![tenant, audience, after.unwrap_or(""), clamp_i64(limit)],
                |row| {
                    Ok(Member {
                        contact: row.get(0)?,
                        since_ms: row.get(1)?,
                    })
                },
            )
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }

    fn is_member(&self, tenant: &str, audience: &str, contact: &str) -> StoreResult<bool> {
        const OP: &str = "look up a member";
        let conn = self.reader();
        conn.prepare_cached(
            "SELECT 1 FROM audience_members WHERE tenant = ?1 AND audience = ?2 AND contact = ?3",
        )
        .and_then(|mut stmt| stmt.exists([tenant, audience, contact]))
        .map_err(db(OP))
    }

    fn audience_size(&self, tenant: &str, audience: &str) -> StoreResult<u64> {
        const OP: &str = "count audience members";
        let conn = self.reader();
        conn.prepare_cached(
            "SELECT count(*) FROM audience_members WHERE tenant = ?1 AND audience = ?2",
        )
        .and_then(|mut stmt| stmt.query_row([tenant, audience], |row| row.get(0)))
        .map_err(db(OP))
    }

    fn all_members(&self) -> StoreResult<Vec<(String, String, Member)>> {
        const OP: &str = "read every audience's members";
        self.read(OP, |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT tenant, audience, contact, since_ms FROM audience_members
                     ORDER BY tenant, audience, contact",
                )
                .map_err(db(OP))?;
            let rows = stmt
                .query_map([], |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        Member {
                            contact: row.get(2)?,
                            since_ms: row.get(3)?,
                        },
                    ))
                })
                .map_err(db(OP))?;
            rows.collect::<Result<_, _>>().map_err(db(OP))
        })
    }

    fn audience_sizes(
        &self,
        tenant: &str,
        audience: Option<&str>,
        since_ms: i64,
    ) -> StoreResult<Vec<AudienceSize>> {
        const OP: &str = "read audience sizes";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT tenant, audience, at_ms, size FROM audience_sizes
                 WHERE tenant = ?1 AND (?2 IS NULL OR audience = ?2) AND at_ms >= ?3
                 ORDER BY at_ms, audience",
            )
            .map_err(db(OP))?;
        let rows = stmt
            .query_map(params![tenant, audience, since_ms], |row| {
                Ok(AudienceSize {
                    tenant: row.get(0)?,
                    audience: row.get(1)?,
                    at_ms: row.get(2)?,
                    size: row.get(3)?,
                })
            })
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }

    fn prune_membership_changes(&self, before_ms: i64, limit: usize) -> StoreResult<usize> {
        const OP: &str = "prune membership changes";
        if limit == 0 {
            return Ok(0);
        }
        self.write(OP, |tx| {
            let followed = position_in(tx, CAMPAIGN_POSITION_KEY, OP)?;
            // The batch is the log's first `limit` followed changes, and it ends before the
            // first recent one among them: at most `limit` rows are read, however long the log.
            tx.prepare_cached(
                "WITH front AS (
                    SELECT seq, at_ms FROM audience_changes WHERE seq <= ?1
                    ORDER BY seq LIMIT ?3)
                 DELETE FROM audience_changes WHERE seq IN (
                    SELECT seq FROM front WHERE seq < coalesce(
                        (SELECT min(seq) FROM front WHERE at_ms >= ?2), ?1 + 1))",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![clamp_i64(followed), before_ms, clamp_i64(limit)])
            })
            .map_err(db(OP))
        })
    }

    fn membership_changes(
        &self,
        tenant: &str,
        audience: Option<&str>,
        contact: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<MembershipChangeRow>> {
        const OP: &str = "read membership changes";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT tenant, audience, contact, at_ms, entered FROM audience_changes
                 WHERE tenant = ?1 AND (?2 IS NULL OR audience = ?2)
                   AND (?3 IS NULL OR contact = ?3)
                 ORDER BY seq DESC LIMIT ?4",
            )
            .map_err(db(OP))?;
        let rows = stmt
            .query_map(
                params![tenant, audience, contact, clamp_i64(limit)],
                change_from_row,
            )
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }
}
