//! Retention of the membership log (`[crm] membership_log_retention`): the changes older than
//! the horizon that the campaigns have already followed are deleted from the log's front.
//!
//! The log is what campaigns follow and what a contact's history shows; the members themselves
//! are kept apart from it and are never touched, and a change the campaigns have not read yet
//! stays whatever its age ([`Audiences::prune_membership_changes`] has the rule). A pass runs
//! every [`EVERY`] on a thread of its own, in batches of [`BATCH`] changes, each its own short
//! transaction with a pause after it, so ingest, the audience engine and the campaigns — which
//! share the store's write lock — never wait long behind it.
//!
//! [`Audiences::prune_membership_changes`]: connectors::store::Audiences::prune_membership_changes

use std::sync::Arc;
use std::time::{Duration, Instant};

use connectors::store::{Store, StoreError};

use crate::ingest::now_ms;

/// Changes deleted per transaction.
pub const BATCH: usize = 2_000;
/// The pause after each full batch, leaving the write lock to the other writers.
const PAUSE: Duration = Duration::from_millis(50);
/// How often a pass starts.
const EVERY: Duration = Duration::from_secs(600);
/// How often the thread looks whether it is asked to stop.
const WAKE: Duration = Duration::from_millis(200);

/// Deletes, batch by batch, the changes made before `now_ms - keep` that the campaigns have
/// followed, until none is left or `stopping` says so between batches; how many went.
pub fn prune(
    store: &dyn Store,
    keep: Duration,
    now_ms: i64,
    stopping: impl Fn() -> bool,
) -> Result<usize, StoreError> {
    let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
    let before_ms = now_ms.saturating_sub(keep_ms);
    let mut pruned = 0;
    while !stopping() {
        let deleted = store.prune_membership_changes(before_ms, BATCH)?;
        pruned += deleted;
        if deleted < BATCH {
            break;
        }
        std::thread::sleep(PAUSE);
    }
    Ok(pruned)
}

/// Starts the thread that prunes the log every [`EVERY`] (the first pass at once), keeping
/// `keep` of it; it stops when `stop` turns true.
pub fn start(
    store: Arc<dyn Store>,
    keep: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("tidemark-membership-log".into())
        .spawn(move || {
            let stopping = || *stop.borrow();
            let mut next = Instant::now();
            while !stopping() {
                if Instant::now() >= next {
                    let started = Instant::now();
                    match prune(store.as_ref(), keep, now_ms(), stopping) {
                        Ok(0) => {}
                        Ok(pruned) => tracing::info!(
                            pruned,
                            keep_days = keep.as_secs() / 86_400,
                            seconds = started.elapsed().as_secs_f64(),
                            "membership log: old changes pruned"
                        ),
                        Err(e) => {
                            tracing::warn!(error = %e, "membership log: pruning failed; trying again at the next pass");
                        }
                    }
                    next = Instant::now() + EVERY;
                }
                std::thread::sleep(WAKE);
            }
        })
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use connectors::store::{AudienceStep, MembershipChangeRow};

    use super::*;

    const DAY: i64 = 86_400_000;

    fn entered(contact: &str, at_ms: i64) -> MembershipChangeRow {
        MembershipChangeRow {
            tenant: "shop".into(),
            audience: "buyers".into(),
            contact: contact.into(),
            at_ms,
            entered: true,
        }
    }

    /// A store whose log holds `old` changes 100 days old and 3 from yesterday, all followed by
    /// the campaigns.
    fn store_with_log(old: usize, now: i64) -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = connectors::store::open(dir.path().join("tidemark.db")).expect("store");
        let mut changes: Vec<MembershipChangeRow> = (0..old)
            .map(|i| entered(&format!("old-{i:05}"), now - 100 * DAY))
            .collect();
        changes.extend((0..3).map(|i| entered(&format!("new-{i}"), now - DAY)));
        store
            .commit_audience_step(&AudienceStep {
                changes,
                position: 1,
                ..AudienceStep::default()
            })
            .expect("step");
        let last = store
            .membership_changes_after(0, old + 3)
            .expect("log")
            .last()
            .map(|(seq, _)| *seq)
            .expect("a log");
        store
            .add_sends(&[], Some(last), None)
            .expect("campaigns follow the log");
        (dir, store)
    }

    #[test]
    fn a_pass_deletes_what_the_horizon_lets_go_in_batches_and_keeps_the_members() {
        let now = 1_790_000_000_000;
        let (_dir, store) = store_with_log(BATCH + 500, now);
        let members = store.audience_size("shop", "buyers").expect("size");
        assert_eq!(members, BATCH as u64 + 503);

        let passes = Cell::new(0);
        let after_one_batch = || {
            passes.set(passes.get() + 1);
            passes.get() > 1
        };
        assert_eq!(
            prune(
                store.as_ref(),
                Duration::from_secs(90 * 86_400),
                now,
                after_one_batch
            )
            .expect("prune"),
            BATCH,
            "a stop is heard between batches"
        );
        assert_eq!(
            prune(
                store.as_ref(),
                Duration::from_secs(90 * 86_400),
                now,
                || false
            )
            .expect("prune"),
            500
        );
        let left: Vec<String> = store
            .membership_changes_after(0, 100)
            .expect("log")
            .into_iter()
            .map(|(_, c)| c.contact)
            .collect();
        assert_eq!(left, ["new-0", "new-1", "new-2"]);
        assert_eq!(
            store.audience_size("shop", "buyers").expect("size"),
            members
        );
        assert!(
            store
                .is_member("shop", "buyers", "old-00000")
                .expect("member")
        );
    }

    #[test]
    fn a_horizon_longer_than_the_log_deletes_nothing() {
        let now = 1_790_000_000_000;
        let (_dir, store) = store_with_log(10, now);
        assert_eq!(
            prune(
                store.as_ref(),
                Duration::from_secs(365 * 86_400),
                now,
                || false
            )
            .expect("prune"),
            0
        );
        assert_eq!(
            store.membership_changes_after(0, 100).expect("log").len(),
            13
        );
    }
}
