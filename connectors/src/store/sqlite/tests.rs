//! SQLite-only behaviour: what survives reopening the file, the schema version it records and
//! refuses, and the WAL checkpoints; and the store contract, run on SQLite.

use super::SqliteStore;
use crate::store::contract::{append_sample_log, assert_sample_log, event};
use crate::store::{EventLog, Meta, NewEvent, StoreError};

/// A fresh store in a temporary directory (in a subdirectory the store must create).
fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("nested/tidemark.db")).expect("open store");
    (dir, store)
}

crate::store_contract_tests!(open);

#[test]
fn appended_events_survive_reopen_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    let seqs = append_sample_log(&SqliteStore::open(&path).expect("open"));
    let store = SqliteStore::open(&path).expect("reopen");
    // A new append after reopen continues the sequence.
    assert_sample_log(&store, &seqs);
}

/// A store made before `events.seq` lost `AUTOINCREMENT` keeps its log and numbers new events
/// after it, the same as a store made now.
#[test]
fn a_log_numbered_by_autoincrement_keeps_numbering_after_its_events() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("raw open");
        let v1 = super::SCHEMA_V1.replacen(
            "seq            INTEGER PRIMARY KEY,",
            "seq            INTEGER PRIMARY KEY AUTOINCREMENT,",
            1,
        );
        assert_ne!(
            v1,
            super::SCHEMA_V1,
            "the events table's seq column is where it was"
        );
        conn.execute_batch(&v1).expect("v1 with AUTOINCREMENT");
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
             INSERT INTO meta VALUES ('schema_version', '1');
             INSERT INTO events (tenant, id, event_type, ts_ms, body, received_at_ms)
             VALUES ('a', 'old', 'order.created', 1, '{}', 1);",
        )
        .expect("a version-1 store with one event");
    }
    let seqs = append_sample_log(&SqliteStore::open(&path).expect("migrate"));
    assert!(seqs[0] > 1, "numbered after the old event: {seqs:?}");
    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(store.events_after(0, 1).expect("read")[0].id, "old");
    let after_old = store.events_after(1, 10).expect("read");
    assert_eq!(
        after_old.iter().map(|e| e.seq).collect::<Vec<_>>(),
        seqs,
        "the old event stays first"
    );
    let next = store.append_events(&[event("a", "e3")]).expect("append");
    assert!(next[0].seq() > seqs[2]);
}

#[test]
fn the_schema_version_is_kept_in_meta() {
    let (_dir, store) = open();
    assert_eq!(
        store.get_meta("schema_version").expect("get").as_deref(),
        Some("7")
    );
}

/// A version-2 database (ids still indexed globally) opens as the current version with its rules
/// and destinations kept, and then holds the same id for two tenants (and has the report tables).
#[test]
fn migrates_a_version_2_database_keeping_its_rows() {
    use crate::store::{Catalog, StoredRule};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("raw open");
        conn.execute_batch(super::SCHEMA_V1).expect("v1");
        conn.execute_batch(super::SCHEMA_V2).expect("v2");
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
             INSERT INTO meta VALUES ('schema_version', '2');
             INSERT INTO rules VALUES ('a', 'r1', 1, 1, '{}', 7);",
        )
        .expect("seed v2");
    }
    let store = SqliteStore::open(&path).expect("migrate");
    assert_eq!(
        store.get_meta("schema_version").expect("get").as_deref(),
        Some("7")
    );
    assert!(
        crate::store::Reports::list_reports(&store, None)
            .expect("report table")
            .is_empty()
    );
    let kept = store.get_rule("a", "r1").expect("get").expect("kept");
    assert_eq!(kept.updated_at_ms, 7);
    store
        .put_rule(&StoredRule {
            tenant: "b".into(),
            ..kept.clone()
        })
        .expect("same id, other tenant");
    assert_eq!(store.get_rule("a", "r1").expect("get"), Some(kept));
    let conn = rusqlite::Connection::open(&path).expect("raw open");
    let global_indexes: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name IN ('rules_by_id', 'destinations_by_id')",
            [],
            |row| row.get(0),
        )
        .expect("count");
    assert_eq!(global_indexes, 0);
}

/// A version-6 database (no dashboards yet) upgrades in place to version 7: its rows are kept
/// and it holds dashboards afterwards.
#[test]
fn migrates_a_version_6_database_to_hold_dashboards() {
    use crate::store::{Dashboards, Reports, StoredDashboard};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("raw open");
        for schema in [
            super::SCHEMA_V1,
            super::SCHEMA_V2,
            super::SCHEMA_V3,
            super::SCHEMA_V4,
            super::SCHEMA_V5,
            super::SCHEMA_V6,
        ] {
            conn.execute_batch(schema).expect("schema");
        }
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
             INSERT INTO meta VALUES ('schema_version', '6');
             INSERT INTO reports VALUES ('a', 'weekly', 1, 1, '{}', 7);",
        )
        .expect("seed v6");
    }
    let store = SqliteStore::open(&path).expect("migrate");
    assert_eq!(
        store.get_meta("schema_version").expect("get").as_deref(),
        Some("7")
    );
    assert_eq!(
        store
            .get_report("a", "weekly")
            .expect("get")
            .map(|r| r.updated_at_ms),
        Some(7)
    );
    let dashboard = StoredDashboard {
        tenant: "a".into(),
        id: "sales".into(),
        title: "Sales".into(),
        body: r#"{"panels":[]}"#.into(),
        updated_at_ms: 8,
    };
    store.put_dashboard(&dashboard).expect("put dashboard");
    drop(store);
    let reopened = SqliteStore::open(&path).expect("reopen");
    assert_eq!(reopened.list_dashboards("a").expect("list"), [dashboard]);
}

#[test]
fn refuses_a_database_from_a_newer_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    drop(SqliteStore::open(&path).expect("create"));
    let conn = rusqlite::Connection::open(&path).expect("raw open");
    conn.execute(
        "UPDATE meta SET value = '99' WHERE key = 'schema_version'",
        [],
    )
    .expect("bump version");
    drop(conn);
    assert!(matches!(
        SqliteStore::open(&path),
        Err(StoreError::SchemaTooNew {
            found: 99,
            supported: 7
        })
    ));
}

#[test]
fn the_wal_is_checkpointed_in_the_background() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    let store = SqliteStore::open(&path).expect("open");
    let before = std::fs::metadata(&path).expect("db file").len();
    // About 8 MB of events: far below the size at which a commit checkpoints by itself.
    let padding = "x".repeat(800);
    for batch in 0..10 {
        let events: Vec<NewEvent> = (0..1_000)
            .map(|i| NewEvent {
                body: format!(r#"{{"pad":"{padding}"}}"#),
                ..event("t1", &format!("e{batch}-{i}"))
            })
            .collect();
        store.append_events(&events).expect("append");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let after = loop {
        let after = std::fs::metadata(&path).expect("db file").len();
        if after > before + 7_000_000 || std::time::Instant::now() > deadline {
            break after;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(
        after > before + 7_000_000,
        "the database file grew from {before} to {after} bytes: the WAL was not copied into it"
    );
    drop(store);
    let reopened = SqliteStore::open(&path).expect("reopen");
    assert_eq!(
        reopened.events_after(0, 20_000).expect("read").len(),
        10_000
    );
}

#[test]
fn checkpoint_log_empties_the_wal_into_the_database_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    let wal = dir.path().join("t.db-wal");
    let store = SqliteStore::open(&path).expect("open");
    let events: Vec<NewEvent> = (0..2_000)
        .map(|i| NewEvent {
            body: format!(r#"{{"pad":"{}"}}"#, "y".repeat(500)),
            ..event("t1", &format!("e{i}"))
        })
        .collect();
    store.append_events(&events).expect("append");
    assert!(std::fs::metadata(&wal).expect("wal file").len() > 1_000_000);
    store.checkpoint_log().expect("checkpoint");
    assert_eq!(std::fs::metadata(&wal).expect("wal file").len(), 0);
    assert!(std::fs::metadata(&path).expect("db file").len() > 1_000_000);
    assert_eq!(store.events_after(0, 5_000).expect("read").len(), 2_000);
}

#[test]
fn opens_sqlite_urls_and_plain_paths() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    let seqs = append_sample_log(crate::store::open(&path).expect("open path").as_ref());
    let url = format!("sqlite://{}", path.display());
    let store = crate::store::open(&url).expect("open url");
    assert_sample_log(store.as_ref(), &seqs);
}

#[test]
fn refuses_stores_it_has_no_backend_for() {
    let refused = crate::store::open("mysql://tidemark@localhost/tidemark");
    assert!(
        matches!(&refused, Err(StoreError::UnsupportedScheme { scheme }) if scheme == "mysql"),
        "{:?}",
        refused.err()
    );
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("postgres://"), "{message}");
}
