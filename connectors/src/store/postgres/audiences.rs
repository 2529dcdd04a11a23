//! [`Audiences`] on PostgreSQL: the `contacts`, `audiences`, `audience_members`,
//! `audience_changes`, `audience_sizes` and `event_types` tables; the engine's position is the
//! meta key [`AUDIENCE_POSITION_KEY`], written in the step's transaction.
//!
//! An engine step ([`Audiences::commit_audience_step`]) is one [`PostgresStore::write`]
//! transaction, and it may carry tens of thousands of membership changes, so each kind of row
//! goes to the database as one statement over arrays (`UNNEST`) instead of one statement per
//! row. SQLite applies the rows one by one, in order; the same end state is reached here by
//! keeping, for every key an upsert or delete names several times in one batch, its last row
//! (an upsert may not touch one row twice in a statement): a contact put twice keeps its last
//! document, a contact entering then leaving an audience is no member, one entering twice is a
//! member since its last entry, and a size given twice in one minute keeps the last. The
//! change log keeps every change, its `seq` (an identity column) numbered in the step's order.
//!
//! Text is ordered and compared byte-wise (text columns are `COLLATE "C"`), as SQLite's `BINARY` collation
//! does, whatever the database's default collation: listings come in the SQLite store's order
//! and a page's `after` cursor means the same there and here.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;

use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::campaigns::CAMPAIGN_POSITION_KEY;
use super::meta::{position_in, put_meta, read_position};
use super::{PostgresStore, clamp_i64, pg, unsigned};
use crate::store::{
    AudienceSize, AudienceStep, Audiences, Member, MembershipChangeRow, StoreError, StoreResult,
    StoredAudience, StoredContact,
};

/// The meta key of the audience engine's position in the event log.
pub(super) const AUDIENCE_POSITION_KEY: &str = "audience_position";

/// Sizes are kept one per audience and minute: the last size within the minute.
const SIZE_BUCKET_MS: i64 = 60_000;

/// Columns of a [`StoredContact`], in [`contact_from_row`] order.
const CONTACT_COLUMNS: &str = "tenant, id, body, updated_at_ms";

/// Columns of a [`StoredAudience`], in [`audience_from_row`] order.
const AUDIENCE_COLUMNS: &str = "tenant, id, version, body, updated_at_ms";

fn contact_from_row(row: &Row, op: &'static str) -> StoreResult<StoredContact> {
    Ok(StoredContact {
        tenant: row.try_get(0).map_err(pg(op))?,
        id: row.try_get(1).map_err(pg(op))?,
        body: row.try_get(2).map_err(pg(op))?,
        updated_at_ms: row.try_get(3).map_err(pg(op))?,
    })
}

fn audience_from_row(row: &Row, op: &'static str) -> StoreResult<StoredAudience> {
    Ok(StoredAudience {
        tenant: row.try_get(0).map_err(pg(op))?,
        id: row.try_get(1).map_err(pg(op))?,
        version: unsigned(row.try_get(2).map_err(pg(op))?, "audiences.version")?,
        body: row.try_get(3).map_err(pg(op))?,
        updated_at_ms: row.try_get(4).map_err(pg(op))?,
    })
}

/// A `(tenant, audience, contact, at_ms, entered)` row of `audience_changes`.
fn change_from_row(row: &Row, op: &'static str) -> StoreResult<MembershipChangeRow> {
    Ok(MembershipChangeRow {
        tenant: row.try_get(0).map_err(pg(op))?,
        audience: row.try_get(1).map_err(pg(op))?,
        contact: row.try_get(2).map_err(pg(op))?,
        at_ms: row.try_get(3).map_err(pg(op))?,
        entered: row.try_get::<_, i64>(4).map_err(pg(op))? != 0,
    })
}

/// A `(contact, since_ms)` row of `audience_members` from column `first` on.
fn member_from_row(row: &Row, first: usize, op: &'static str) -> StoreResult<Member> {
    Ok(Member {
        contact: row.try_get(first).map_err(pg(op))?,
        since_ms: row.try_get(first + 1).map_err(pg(op))?,
    })
}

/// An audience's version as a `BIGINT`; one beyond `i64::MAX` is refused before anything is
/// written (the SQLite store fails to bind it).
fn version_i64(version: u64) -> StoreResult<i64> {
    i64::try_from(version).map_err(|_| {
        StoreError::InvalidInput(format!(
            "audience version {version} is too large (at most {})",
            i64::MAX
        ))
    })
}

/// The minute an audience size at `at_ms` is kept under (saturating at the far past rather
/// than overflowing).
fn size_minute(at_ms: i64) -> i64 {
    at_ms.saturating_sub(at_ms.rem_euclid(SIZE_BUCKET_MS))
}

/// The last of `items` for each `key`, in the order each key first appears: what applying
/// `items` one by one as upserts (or deletes) leaves, as one statement can apply it.
fn last_per_key<'a, T, K: Eq + Hash>(items: &'a [T], key: impl Fn(&'a T) -> K) -> Vec<&'a T> {
    let mut slot: HashMap<K, usize> = HashMap::with_capacity(items.len());
    let mut last: Vec<&T> = Vec::with_capacity(items.len());
    for item in items {
        match slot.entry(key(item)) {
            Entry::Occupied(at) => {
                if let Some(kept) = last.get_mut(*at.get()) {
                    *kept = item;
                }
            }
            Entry::Vacant(at) => {
                at.insert(last.len());
                last.push(item);
            }
        }
    }
    last
}

/// Inserts or replaces `contacts` inside `tx`, in one statement; a contact named twice keeps
/// its last document. A contact with an empty id is refused before anything is written.
async fn put_contacts_in(tx: &Transaction<'_>, contacts: &[StoredContact]) -> StoreResult<()> {
    const OP: &str = "put contacts";
    if contacts.iter().any(|c| c.id.is_empty()) {
        return Err(StoreError::InvalidInput("a contact id is empty".into()));
    }
    if contacts.is_empty() {
        return Ok(());
    }
    let contacts = last_per_key(contacts, |c| (c.tenant.as_str(), c.id.as_str()));
    let tenants: Vec<&str> = contacts.iter().map(|c| c.tenant.as_str()).collect();
    let ids: Vec<&str> = contacts.iter().map(|c| c.id.as_str()).collect();
    let bodies: Vec<&str> = contacts.iter().map(|c| c.body.as_str()).collect();
    let updated: Vec<i64> = contacts.iter().map(|c| c.updated_at_ms).collect();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO contacts (tenant, id, body, updated_at_ms)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[])
             ON CONFLICT (tenant, id) DO UPDATE SET
                body = excluded.body, updated_at_ms = excluded.updated_at_ms",
        )
        .await
        .map_err(pg(OP))?;
    tx.execute(&stmt, &[&tenants, &ids, &bodies, &updated])
        .await
        .map_err(pg(OP))?;
    Ok(())
}

/// Deletes the contacts `(tenant, id)` and their memberships inside `tx`; how many contacts
/// existed.
async fn delete_contacts_in(
    tx: &Transaction<'_>,
    tenants: &[&str],
    ids: &[&str],
) -> StoreResult<u64> {
    const OP: &str = "delete contact";
    if tenants.is_empty() {
        return Ok(0);
    }
    let contacts = tx
        .prepare_cached(
            "DELETE FROM contacts c
             USING UNNEST($1::text[], $2::text[]) AS gone (tenant, id)
             WHERE c.tenant = gone.tenant AND c.id = gone.id",
        )
        .await
        .map_err(pg(OP))?;
    let n = tx
        .execute(&contacts, &[&tenants, &ids])
        .await
        .map_err(pg(OP))?;
    let members = tx
        .prepare_cached(
            "DELETE FROM audience_members m
             USING UNNEST($1::text[], $2::text[]) AS gone (tenant, id)
             WHERE m.tenant = gone.tenant AND m.contact = gone.id",
        )
        .await
        .map_err(pg(OP))?;
    tx.execute(&members, &[&tenants, &ids])
        .await
        .map_err(pg(OP))?;
    Ok(n)
}

/// Applies a step's membership changes to `audience_members` (each member's last change in
/// the step decides: entered, a member since then; left, no member) and appends every change to
/// `audience_changes` in the step's order.
async fn apply_changes_in(
    tx: &Transaction<'_>,
    changes: &[MembershipChangeRow],
) -> StoreResult<()> {
    const OP: &str = "commit audience step";
    if changes.is_empty() {
        return Ok(());
    }
    let last = last_per_key(changes, |c| {
        (c.tenant.as_str(), c.audience.as_str(), c.contact.as_str())
    });
    let (entered, left): (Vec<&MembershipChangeRow>, Vec<&MembershipChangeRow>) =
        last.into_iter().partition(|c| c.entered);
    if !entered.is_empty() {
        let tenants: Vec<&str> = entered.iter().map(|c| c.tenant.as_str()).collect();
        let audiences: Vec<&str> = entered.iter().map(|c| c.audience.as_str()).collect();
        let contacts: Vec<&str> = entered.iter().map(|c| c.contact.as_str()).collect();
        let since: Vec<i64> = entered.iter().map(|c| c.at_ms).collect();
        let enter = tx
            .prepare_cached(
                "INSERT INTO audience_members (tenant, audience, contact, since_ms)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[])
                 ON CONFLICT (tenant, audience, contact) DO UPDATE SET
                    since_ms = excluded.since_ms",
            )
            .await
            .map_err(pg(OP))?;
        tx.execute(&enter, &[&tenants, &audiences, &contacts, &since])
            .await
            .map_err(pg(OP))?;
    }
    if !left.is_empty() {
        let tenants: Vec<&str> = left.iter().map(|c| c.tenant.as_str()).collect();
        let audiences: Vec<&str> = left.iter().map(|c| c.audience.as_str()).collect();
        let contacts: Vec<&str> = left.iter().map(|c| c.contact.as_str()).collect();
        let leave = tx
            .prepare_cached(
                "DELETE FROM audience_members m
                 USING UNNEST($1::text[], $2::text[], $3::text[]) AS gone (tenant, audience, contact)
                 WHERE m.tenant = gone.tenant AND m.audience = gone.audience
                   AND m.contact = gone.contact",
            )
            .await
            .map_err(pg(OP))?;
        tx.execute(&leave, &[&tenants, &audiences, &contacts])
            .await
            .map_err(pg(OP))?;
    }
    // Every change, numbered (`seq`) in the step's order: campaigns follow the log by `seq`.
    let tenants: Vec<&str> = changes.iter().map(|c| c.tenant.as_str()).collect();
    let audiences: Vec<&str> = changes.iter().map(|c| c.audience.as_str()).collect();
    let contacts: Vec<&str> = changes.iter().map(|c| c.contact.as_str()).collect();
    let at: Vec<i64> = changes.iter().map(|c| c.at_ms).collect();
    let flags: Vec<i64> = changes.iter().map(|c| i64::from(c.entered)).collect();
    let log = tx
        .prepare_cached(
            "INSERT INTO audience_changes (tenant, audience, contact, at_ms, entered)
             SELECT tenant, audience, contact, at_ms, entered
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
                 WITH ORDINALITY AS c (tenant, audience, contact, at_ms, entered, ord)
             ORDER BY ord",
        )
        .await
        .map_err(pg(OP))?;
    tx.execute(&log, &[&tenants, &audiences, &contacts, &at, &flags])
        .await
        .map_err(pg(OP))?;
    Ok(())
}

/// Records a step's audience sizes, one per audience and minute (the last given wins).
async fn put_sizes_in(tx: &Transaction<'_>, sizes: &[AudienceSize]) -> StoreResult<()> {
    const OP: &str = "commit audience step";
    if sizes.is_empty() {
        return Ok(());
    }
    let sizes = last_per_key(sizes, |s| {
        (s.tenant.as_str(), s.audience.as_str(), size_minute(s.at_ms))
    });
    let tenants: Vec<&str> = sizes.iter().map(|s| s.tenant.as_str()).collect();
    let audiences: Vec<&str> = sizes.iter().map(|s| s.audience.as_str()).collect();
    let minutes: Vec<i64> = sizes.iter().map(|s| size_minute(s.at_ms)).collect();
    let at: Vec<i64> = sizes.iter().map(|s| s.at_ms).collect();
    let counts: Vec<i64> = sizes.iter().map(|s| clamp_i64(s.size)).collect();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO audience_sizes (tenant, audience, minute_ms, at_ms, size)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[],
                                  $5::bigint[])
             ON CONFLICT (tenant, audience, minute_ms) DO UPDATE SET
                at_ms = excluded.at_ms, size = excluded.size",
        )
        .await
        .map_err(pg(OP))?;
    tx.execute(&stmt, &[&tenants, &audiences, &minutes, &at, &counts])
        .await
        .map_err(pg(OP))?;
    Ok(())
}

/// Records event types seen for the first time (one already known is left as it is).
async fn add_event_types_in(tx: &Transaction<'_>, types: &[(String, String)]) -> StoreResult<()> {
    const OP: &str = "commit audience step";
    if types.is_empty() {
        return Ok(());
    }
    let tenants: Vec<&str> = types.iter().map(|(tenant, _)| tenant.as_str()).collect();
    let names: Vec<&str> = types.iter().map(|(_, name)| name.as_str()).collect();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO event_types (tenant, event_type)
             SELECT * FROM UNNEST($1::text[], $2::text[])
             ON CONFLICT (tenant, event_type) DO NOTHING",
        )
        .await
        .map_err(pg(OP))?;
    tx.execute(&stmt, &[&tenants, &names])
        .await
        .map_err(pg(OP))?;
    Ok(())
}

impl Audiences for PostgresStore {
    fn put_contacts(&self, contacts: &[StoredContact]) -> StoreResult<()> {
        if contacts.is_empty() {
            return Ok(());
        }
        self.write("put contacts", async |tx| {
            put_contacts_in(tx, contacts).await
        })
    }

    fn get_contact(&self, tenant: &str, id: &str) -> StoreResult<Option<StoredContact>> {
        const OP: &str = "get contact";
        self.get_keyed(OP, ("contacts", CONTACT_COLUMNS), tenant, id, |row| {
            contact_from_row(row, OP)
        })
    }

    fn delete_contact(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        self.write("delete contact", async |tx| {
            Ok(delete_contacts_in(tx, &[tenant], &[id]).await? > 0)
        })
    }

    fn list_contacts(
        &self,
        tenant: Option<&str>,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> StoreResult<Vec<StoredContact>> {
        const OP: &str = "list contacts";
        let (after_tenant, after_id) = after.unwrap_or(("", ""));
        self.read(OP, async |tx| {
            tx.query(
                &format!(
                    "SELECT {CONTACT_COLUMNS} FROM contacts
                     WHERE ($1::TEXT IS NULL OR tenant = $1)
                       AND (tenant, id) > ($2, $3)
                     ORDER BY tenant, id LIMIT $4"
                ),
                &[&tenant, &after_tenant, &after_id, &clamp_i64(limit)],
            )
            .await
            .map_err(pg(OP))?
            .iter()
            .map(|row| contact_from_row(row, OP))
            .collect()
        })
    }

    fn contact_count(&self, tenant: &str) -> StoreResult<u64> {
        const OP: &str = "count contacts";
        self.read(OP, async |tx| {
            let row = tx
                .query_one(
                    "SELECT count(*) FROM contacts WHERE tenant = $1",
                    &[&tenant],
                )
                .await
                .map_err(pg(OP))?;
            unsigned(row.try_get(0).map_err(pg(OP))?, "the contact count")
        })
    }

    fn put_audience(&self, audience: &StoredAudience) -> StoreResult<()> {
        const OP: &str = "put audience";
        let version = version_i64(audience.version)?;
        self.write(OP, async |tx| {
            tx.execute(
                "INSERT INTO audiences (tenant, id, version, body, updated_at_ms)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (tenant, id) DO UPDATE SET
                    version = excluded.version, body = excluded.body,
                    updated_at_ms = excluded.updated_at_ms",
                &[
                    &audience.tenant,
                    &audience.id,
                    &version,
                    &audience.body,
                    &audience.updated_at_ms,
                ],
            )
            .await
            .map_err(pg(OP))?;
            Ok(())
        })
    }

    fn get_audience(&self, tenant: &str, id: &str) -> StoreResult<Option<StoredAudience>> {
        const OP: &str = "get audience";
        self.get_keyed(OP, ("audiences", AUDIENCE_COLUMNS), tenant, id, |row| {
            audience_from_row(row, OP)
        })
    }

    fn list_audiences(&self, tenant: Option<&str>) -> StoreResult<Vec<StoredAudience>> {
        const OP: &str = "list audiences";
        self.list_keyed(OP, ("audiences", AUDIENCE_COLUMNS), tenant, |row| {
            audience_from_row(row, OP)
        })
    }

    /// The membership log (`audience_changes`) is kept, as on SQLite: it is history, and the
    /// campaigns' position in it.
    fn delete_audience(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        const OP: &str = "delete audience";
        self.write(OP, async |tx| {
            let n = tx
                .execute(
                    "DELETE FROM audiences WHERE tenant = $1 AND id = $2",
                    &[&tenant, &id],
                )
                .await
                .map_err(pg(OP))?;
            tx.execute(
                "DELETE FROM audience_members WHERE tenant = $1 AND audience = $2",
                &[&tenant, &id],
            )
            .await
            .map_err(pg(OP))?;
            tx.execute(
                "DELETE FROM audience_sizes WHERE tenant = $1 AND audience = $2",
                &[&tenant, &id],
            )
            .await
            .map_err(pg(OP))?;
            Ok(n > 0)
        })
    }

    /// In the SQLite store's order: contacts put, then contacts deleted (with their
    /// memberships), then the membership changes (so a deleted contact's later entry in the same
    /// step makes it a member again), sizes, event types and the position. See the module docs
    /// for how rows repeated within the step are applied.
    fn commit_audience_step(&self, step: &AudienceStep) -> StoreResult<()> {
        const OP: &str = "commit audience step";
        let position = step.position.to_string();
        self.write(OP, async |tx| {
            put_contacts_in(tx, &step.contacts_put).await?;
            let gone_tenants: Vec<&str> = step
                .contacts_deleted
                .iter()
                .map(|(tenant, _)| tenant.as_str())
                .collect();
            let gone_ids: Vec<&str> = step
                .contacts_deleted
                .iter()
                .map(|(_, id)| id.as_str())
                .collect();
            delete_contacts_in(tx, &gone_tenants, &gone_ids).await?;
            apply_changes_in(tx, &step.changes).await?;
            put_sizes_in(tx, &step.sizes).await?;
            add_event_types_in(tx, &step.new_event_types).await?;
            put_meta(tx, AUDIENCE_POSITION_KEY, &position).await
        })
    }

    fn known_event_types(&self) -> StoreResult<Vec<(String, String)>> {
        const OP: &str = "read event types";
        self.read(OP, async |tx| {
            tx.query(
                "SELECT tenant, event_type FROM event_types
                 ORDER BY tenant, event_type",
                &[],
            )
            .await
            .map_err(pg(OP))?
            .iter()
            .map(|row| {
                Ok((
                    row.try_get(0).map_err(pg(OP))?,
                    row.try_get(1).map_err(pg(OP))?,
                ))
            })
            .collect()
        })
    }

    fn audience_position(&self) -> StoreResult<u64> {
        read_position(self, AUDIENCE_POSITION_KEY)
    }

    fn audience_members(
        &self,
        tenant: &str,
        audience: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Member>> {
        const OP: &str = "list audience members";
        let after = after.unwrap_or("");
        self.read(OP, async |tx| {
            tx.query(
                "SELECT contact, since_ms FROM audience_members
                 WHERE tenant = $1 AND audience = $2 AND contact > $3
                 ORDER BY contact LIMIT $4",
                &[&tenant, &audience, &after, &clamp_i64(limit)],
            )
            .await
            .map_err(pg(OP))?
            .iter()
            .map(|row| member_from_row(row, 0, OP))
            .collect()
        })
    }

    fn is_member(&self, tenant: &str, audience: &str, contact: &str) -> StoreResult<bool> {
        const OP: &str = "look up a member";
        self.read(OP, async |tx| {
            let row = tx
                .query_opt(
                    "SELECT 1 FROM audience_members
                     WHERE tenant = $1 AND audience = $2 AND contact = $3",
                    &[&tenant, &audience, &contact],
                )
                .await
                .map_err(pg(OP))?;
            Ok(row.is_some())
        })
    }

    fn audience_size(&self, tenant: &str, audience: &str) -> StoreResult<u64> {
        const OP: &str = "count audience members";
        self.read(OP, async |tx| {
            let row = tx
                .query_one(
                    "SELECT count(*) FROM audience_members WHERE tenant = $1 AND audience = $2",
                    &[&tenant, &audience],
                )
                .await
                .map_err(pg(OP))?;
            unsigned(row.try_get(0).map_err(pg(OP))?, "the audience size")
        })
    }

    fn all_members(&self) -> StoreResult<Vec<(String, String, Member)>> {
        const OP: &str = "read every audience's members";
        self.read(OP, async |tx| {
            tx.query(
                "SELECT tenant, audience, contact, since_ms FROM audience_members
                 ORDER BY tenant, audience, contact",
                &[],
            )
            .await
            .map_err(pg(OP))?
            .iter()
            .map(|row| {
                Ok((
                    row.try_get(0).map_err(pg(OP))?,
                    row.try_get(1).map_err(pg(OP))?,
                    member_from_row(row, 2, OP)?,
                ))
            })
            .collect()
        })
    }

    fn audience_sizes(
        &self,
        tenant: &str,
        audience: Option<&str>,
        since_ms: i64,
    ) -> StoreResult<Vec<AudienceSize>> {
        const OP: &str = "read audience sizes";
        self.read(OP, async |tx| {
            tx.query(
                "SELECT tenant, audience, at_ms, size FROM audience_sizes
                 WHERE tenant = $1 AND ($2::TEXT IS NULL OR audience = $2) AND at_ms >= $3
                 ORDER BY at_ms, audience",
                &[&tenant, &audience, &since_ms],
            )
            .await
            .map_err(pg(OP))?
            .iter()
            .map(|row| {
                Ok(AudienceSize {
                    tenant: row.try_get(0).map_err(pg(OP))?,
                    audience: row.try_get(1).map_err(pg(OP))?,
                    at_ms: row.try_get(2).map_err(pg(OP))?,
                    size: unsigned(row.try_get(3).map_err(pg(OP))?, "audience_sizes.size")?,
                })
            })
            .collect()
        })
    }

    /// As on SQLite, in one statement under the store's write lock. `seq` is an identity
    /// column, so a pruned log never hands a deleted change's number out again.
    fn prune_membership_changes(&self, before_ms: i64, limit: usize) -> StoreResult<usize> {
        const OP: &str = "prune membership changes";
        if limit == 0 {
            return Ok(0);
        }
        self.write(OP, async |tx| {
            let followed = clamp_i64(position_in(tx, CAMPAIGN_POSITION_KEY, OP).await?);
            let deleted = tx
                .execute(
                    "WITH front AS (
                        SELECT seq, at_ms FROM audience_changes WHERE seq <= $1
                        ORDER BY seq LIMIT $3)
                     DELETE FROM audience_changes WHERE seq IN (
                        SELECT seq FROM front WHERE seq < coalesce(
                            (SELECT min(seq) FROM front WHERE at_ms >= $2), $1 + 1))",
                    &[&followed, &before_ms, &clamp_i64(limit)],
                )
                .await
                .map_err(pg(OP))?;
            Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
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
        self.read(OP, async |tx| {
            tx.query(
                "SELECT tenant, audience, contact, at_ms, entered FROM audience_changes
                 WHERE tenant = $1 AND ($2::TEXT IS NULL OR audience = $2)
                   AND ($3::TEXT IS NULL OR contact = $3)
                 ORDER BY seq DESC LIMIT $4",
                &[&tenant, &audience, &contact, &clamp_i64(limit)],
            )
            .await
            .map_err(pg(OP))?
            .iter()
            .map(|row| change_from_row(row, OP))
            .collect()
        })
    }
}
