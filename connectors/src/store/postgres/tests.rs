//! PostgreSQL-only behaviour (the schema version it records and refuses, several stores on one
//! database, what survives reopening), and the store contract, run on PostgreSQL.
//!
//! These tests need a PostgreSQL server: `POSTGRES_URL` names a database on it that
//! may create databases (the test command starts one; by hand:
//! `eval "$(bash .ci/postgres.sh start)"`). Each test works in a fresh database of its own,
//! dropped when it ends.

use std::sync::atomic::{AtomicU32, Ordering};

use super::PostgresStore;
use crate::store::contract::{append_sample_log, assert_sample_log};
use crate::store::{EventLog, Meta, StoreError};

/// A database created for one test, dropped (with any connection still on it) at the end.
pub(crate) struct ScratchDatabase {
    admin_url: String,
    name: String,
    /// The database's URL.
    pub(crate) url: String,
}

impl ScratchDatabase {
    pub(crate) fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let admin_url = std::env::var("POSTGRES_URL").unwrap_or_else(|_| {
            panic!(
                "POSTGRES_URL is not set: these tests need a PostgreSQL server. The test \
                 command starts one; by hand: eval \"$(bash .ci/postgres.sh start)\""
            )
        });
        let name = format!(
            "tidemark_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        admin(&admin_url, &format!("CREATE DATABASE {name}"));
        let url = match admin_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("POSTGRES_URL has no database part: {admin_url}"),
        };
        Self {
            admin_url,
            name,
            url,
        }
    }

    /// Runs `sql` on the scratch database itself.
    pub(crate) fn execute(&self, sql: &str) {
        admin(&self.url, sql);
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        admin(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// Runs `f` with a client of its own on `url` (outside any store), on a runtime of its own.
fn with_client<T>(url: &str, f: impl AsyncFnOnce(&tokio_postgres::Client) -> T) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
        let driver = tokio::spawn(connection);
        let out = f(&client).await;
        drop(client);
        let _ = driver.await;
        out
    })
}

/// Runs one statement on its own connection.
fn admin(url: &str, sql: &str) {
    with_client(url, async |client| {
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    });
}

/// A fresh store on a database of its own.
fn open() -> (ScratchDatabase, PostgresStore) {
    let database = ScratchDatabase::new();
    let store = PostgresStore::open(&database.url).expect("open store");
    (database, store)
}

crate::store_contract_tests!(open);

#[test]
fn appended_events_survive_reopen_in_order() {
    let database = ScratchDatabase::new();
    let seqs = append_sample_log(&PostgresStore::open(&database.url).expect("open"));
    let store = PostgresStore::open(&database.url).expect("reopen");
    assert_sample_log(&store, &seqs);
}

#[test]
fn the_schema_version_is_kept_in_meta_and_a_newer_one_is_refused() {
    let (database, store) = open();
    assert_eq!(
        store.get_meta("schema_version").expect("get").as_deref(),
        Some("7")
    );
    drop(store);
    database.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'");
    let refused = PostgresStore::open(&database.url);
    assert!(
        matches!(
            refused,
            Err(StoreError::SchemaTooNew {
                found: 99,
                supported: 7
            })
        ),
        "{refused:?}"
    );
}

/// A database at version 6 (no dashboards yet) upgrades in place to version 7: its rows are
/// kept and it holds dashboards afterwards.
#[test]
fn a_version_6_database_is_migrated_to_hold_dashboards() {
    use crate::store::{Dashboards, Reports, StoredDashboard};
    let database = ScratchDatabase::new();
    database.execute(super::SCHEMA_V6);
    database.execute(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         INSERT INTO meta VALUES ('schema_version', '6');
         INSERT INTO reports VALUES ('a', 'weekly', 1, 1, '{}', 7);",
    );
    let store = PostgresStore::open(&database.url).expect("migrate");
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
    let reopened = PostgresStore::open(&database.url).expect("reopen");
    assert_eq!(reopened.list_dashboards("a").expect("list"), [dashboard]);
}

/// Several processes starting together on an empty database: each opens, the schema is created
/// once, and every one of them appends to the same log.
#[test]
fn stores_opened_together_share_one_schema_and_one_log() {
    let database = ScratchDatabase::new();
    let stores: Vec<PostgresStore> = std::thread::scope(|scope| {
        let opening: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| PostgresStore::open(&database.url)))
            .collect();
        opening
            .into_iter()
            .map(|handle| handle.join().expect("thread").expect("open"))
            .collect()
    });
    let mut seqs = Vec::new();
    std::thread::scope(|scope| {
        let appending: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(n, store)| {
                scope.spawn(move || {
                    (0..50)
                        .map(|i| {
                            let event = crate::store::contract::event("acme", &format!("{n}-{i}"));
                            store.append_events(&[event]).expect("append")[0].seq()
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        for handle in appending {
            seqs.extend(handle.join().expect("thread"));
        }
    });
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 200, "every append got a seq of its own");
    assert_eq!(stores[0].event_count("acme").expect("count"), 200);
    // The log reads back in seq order from any of them.
    let read = stores[3].events_after(0, 1000).expect("read");
    assert_eq!(read.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs);
}

#[test]
fn opens_postgres_urls_through_the_store_location() {
    let database = ScratchDatabase::new();
    let store = crate::store::open(&database.url).expect("open");
    let seqs = append_sample_log(store.as_ref());
    assert_sample_log(store.as_ref(), &seqs);
}

#[test]
fn an_unreadable_url_and_a_server_that_is_not_there_are_clear_errors() {
    let unreadable = PostgresStore::open("postgres://tidemark@localhost:notaport/tidemark");
    assert!(
        matches!(&unreadable, Err(StoreError::InvalidInput(message)) if message.contains("URL")),
        "{unreadable:?}"
    );
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let absent = PostgresStore::open(&format!(
        "postgres://tidemark@127.0.0.1:{port}/tidemark?connect_timeout=2"
    ));
    match absent {
        Err(e) => {
            assert!(e.is_transient(), "a server that is down may come back: {e}");
            assert!(e.to_string().contains("migrate schema"), "{e}");
        }
        Ok(_) => panic!("opened a store on a port nothing listens on"),
    }
}

/// The server opens and drops its store inside its tokio runtime (and async tests do too): the
/// store's own runtime must not panic there, and the database must be usable afterwards.
#[test]
fn a_store_used_and_dropped_inside_an_async_runtime_does_not_panic() {
    let database = ScratchDatabase::new();
    let url = database.url.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let seqs = runtime.block_on(async move {
        tokio::spawn(async move {
            let store = PostgresStore::open(&url).expect("open");
            let seqs = append_sample_log(&store);
            drop(store);
            seqs
        })
        .await
        .expect("the task did not panic")
    });
    drop(runtime);
    assert_sample_log(&PostgresStore::open(&database.url).expect("reopen"), &seqs);
}

/// Every row of every table, as text, in a stable order: what a migration must carry over.
fn dump_postgres(url: &str) -> Vec<(String, Vec<Vec<Option<String>>>)> {
    with_client(url, async |client| {
        let tables: Vec<String> = client
            .query(
                "SELECT table_name::text FROM information_schema.tables
                 WHERE table_schema = current_schema() AND table_name <> 'meta'
                 ORDER BY table_name",
                &[],
            )
            .await
            .expect("tables")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut dump = Vec::new();
        for table in tables {
            let rows = client
                .query(&format!("SELECT * FROM {table}"), &[])
                .await
                .expect("rows");
            let mut texts: Vec<Vec<Option<String>>> = rows
                .iter()
                .map(|row| {
                    (0..row.len())
                        .map(|i| match *row.columns()[i].type_() {
                            tokio_postgres::types::Type::INT8 => {
                                row.get::<_, Option<i64>>(i).map(|n| n.to_string())
                            }
                            tokio_postgres::types::Type::BYTEA => row
                                .get::<_, Option<Vec<u8>>>(i)
                                .map(|b| format!("{b:02x?}")),
                            _ => row.get::<_, Option<String>>(i),
                        })
                        .collect()
                })
                .collect();
            texts.sort();
            dump.push((table, texts));
        }
        dump
    })
}

/// The same, read from a SQLite file with the PostgreSQL tables' column names.
fn dump_sqlite(
    path: &std::path::Path,
    like: &[(String, Vec<Vec<Option<String>>>)],
    columns: &dyn Fn(&str) -> Vec<String>,
) -> Vec<(String, Vec<Vec<Option<String>>>)> {
    let connection = rusqlite::Connection::open(path).expect("open sqlite");
    like.iter()
        .map(|(table, _)| {
            let names: Vec<String> = columns(table)
                .into_iter()
                .map(|c| {
                    if c == "record_offset" {
                        "\"offset\"".to_owned()
                    } else {
                        c
                    }
                })
                .collect();
            let mut statement = connection
                .prepare(&format!("SELECT {} FROM {table}", names.join(", ")))
                .expect("prepare");
            let mut texts: Vec<Vec<Option<String>>> = statement
                .query_map([], |row| {
                    (0..names.len())
                        .map(|i| {
                            Ok(match row.get_ref(i)? {
                                rusqlite::types::ValueRef::Null => None,
                                rusqlite::types::ValueRef::Integer(n) => Some(n.to_string()),
                                rusqlite::types::ValueRef::Real(x) => Some(x.to_string()),
                                rusqlite::types::ValueRef::Text(t) => {
                                    Some(String::from_utf8_lossy(t).into_owned())
                                }
                                rusqlite::types::ValueRef::Blob(b) => Some(format!("{b:02x?}")),
                            })
                        })
                        .collect()
                })
                .expect("query")
                .collect::<Result<_, _>>()
                .expect("rows");
            texts.sort();
            (table.clone(), texts)
        })
        .collect()
}

/// An embedded installation with something in every concern, copied into PostgreSQL: every
/// table holds the same rows afterwards, positions included, and the log goes on from there.
#[test]
fn an_embedded_store_is_copied_into_postgres_row_for_row() {
    use crate::store::contract;
    use crate::store::{Dashboards, SecretRow, SecretRows, SecretWritePolicy, SqliteStore, Store};

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tidemark.db");
    {
        let sqlite = SqliteStore::open(&path).expect("open sqlite");
        let store: &dyn Store = &sqlite;
        // Each behaviour assumes its own concern starts empty; in this order they do not meet.
        contract::campaign_sends_are_added_once_and_finished_once_with_their_notifications(store);
        append_sample_log(store);
        contract::rules_and_destinations_are_tenant_scoped(store);
        contract::tenants_and_api_keys(store);
        contract::retry_then_deliver_and_retry_then_dead(store);
        contract::open_alerts_follow_firing_and_resolved(store);
        contract::report_runs_are_added_once_and_finished_once_with_their_notifications(store);
        contract::source_positions_and_dead_letters_commit_with_their_events(store);
        contract::an_audience_step_commits_members_log_sizes_and_position_together(store);
        contract::dashboards_are_tenant_scoped_and_listed_by_id(store);
        sqlite
            .put_secret_rows(
                &[SecretRow {
                    tenant: "acme".into(),
                    name: "smtp".into(),
                    version: 1,
                    kek_version: 1,
                    dek_nonce: vec![1; 12],
                    wrapped_dek: vec![2; 48],
                    value_nonce: vec![3; 12],
                    ciphertext: vec![4, 5, 6],
                    created_at_ms: 7,
                }],
                &SecretWritePolicy {
                    keep_versions: 5,
                    max_kek_encryptions: 1_000_000,
                },
            )
            .expect("put secret");
        sqlite.set_meta("engine.processed_seq", "3").expect("meta");
    }

    let (database, store) = open();
    let imported = store.import_sqlite(&path).expect("import");
    assert!(imported.iter().any(|t| t.table == "events" && t.rows > 0));
    assert!(
        imported
            .iter()
            .any(|t| t.table == "dashboards" && t.rows == 5),
        "{imported:?}"
    );

    let copied = dump_postgres(&database.url);
    let columns = |table: &str| -> Vec<String> {
        with_client(&database.url, async |client| {
            let statement = client
                .prepare(&format!("SELECT * FROM {table} LIMIT 0"))
                .await
                .expect("prepare");
            statement
                .columns()
                .iter()
                .map(|c| c.name().to_owned())
                .collect()
        })
    };
    let original = dump_sqlite(&path, &copied, &columns);
    for ((table, rows), (_, expected)) in copied.iter().zip(&original) {
        assert_eq!(rows, expected, "table {table}");
    }
    let filled = copied.iter().filter(|(_, rows)| !rows.is_empty()).count();
    assert!(
        filled >= 15,
        "most tables hold rows: {filled} of {}",
        copied.len()
    );
    assert_eq!(
        store
            .get_meta("engine.processed_seq")
            .expect("meta")
            .as_deref(),
        Some("3")
    );
    assert_eq!(
        store
            .list_dashboards("b")
            .expect("dashboards")
            .iter()
            .map(|d| (d.id.as_str(), d.title.as_str()))
            .collect::<Vec<_>>(),
        [("a", "B's a")]
    );
    assert_eq!(
        store
            .get_secret_row("acme", "smtp", None)
            .expect("secret")
            .map(|r| r.ciphertext),
        Some(vec![4, 5, 6])
    );

    // The log goes on after the copied events.
    let last = store
        .events_after(0, 100_000)
        .expect("read")
        .last()
        .map(|e| e.seq);
    let next = store
        .append_events(&[crate::store::contract::event("acme", "after-import")])
        .expect("append")[0]
        .seq();
    assert!(Some(next) > last, "{next} after {last:?}");

    // A database that already holds something is refused, and left as it was.
    let again = store.import_sqlite(&path);
    assert!(
        matches!(&again, Err(StoreError::InvalidInput(m)) if m.contains("not empty")),
        "{again:?}"
    );
}

/// The test server's CA (the test command's server speaks TLS to clients that ask).
fn test_ca_file() -> std::path::PathBuf {
    std::env::var_os("POSTGRES_CA_FILE")
        .unwrap_or_else(|| {
            panic!(
                "POSTGRES_CA_FILE is not set: the TLS tests need the test server's CA. The test \
                 command starts the server and sets it; by hand: \
                 eval \"$(bash .ci/postgres.sh start)\""
            )
        })
        .into()
}

/// `sslmode=require` encrypts and verifies: with the server's CA the store connects over TLS;
/// without it the server is not trusted and nothing is sent.
#[test]
fn sslmode_require_connects_over_tls_to_a_verified_server_only() {
    use super::PostgresOptions;
    let database = ScratchDatabase::new();
    let url = format!("{}?sslmode=require", database.url);
    let store = PostgresStore::open_with(
        &url,
        &PostgresOptions {
            ca_file: Some(test_ca_file()),
            ..PostgresOptions::default()
        },
    )
    .expect("open over TLS");
    let seqs = append_sample_log(&store);
    assert_sample_log(&store, &seqs);
    // The store's connections are encrypted, as the server sees them.
    let encrypted = count_on(
        &database.url,
        &format!(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)
             WHERE datname = '{}' AND ssl AND pid <> pg_backend_pid()",
            database.name
        ),
    );
    assert!(encrypted >= 1, "no TLS connection from the store");
    drop(store);

    let unverified = PostgresStore::open(&url);
    match unverified {
        Err(e) => assert!(
            e.to_string().to_lowercase().contains("certificate"),
            "the error says why: {e}"
        ),
        Ok(_) => panic!("connected to a server whose certificate nobody vouches for"),
    }

    // A CA file without TLS asked for is a mistake, said as much.
    let plain = PostgresStore::open_with(
        &database.url,
        &PostgresOptions {
            ca_file: Some(test_ca_file()),
            ..PostgresOptions::default()
        },
    );
    assert!(
        matches!(&plain, Err(StoreError::InvalidInput(m)) if m.contains("sslmode=require")),
        "{plain:?}"
    );
}

/// One number `sql` answers on `url`.
fn count_on(url: &str, sql: &str) -> i64 {
    with_client(url, async |client| {
        client.query_one(sql, &[]).await.expect(sql).get(0)
    })
}
