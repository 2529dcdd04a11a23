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

/// Runs one statement on its own connection.
fn admin(url: &str, sql: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
        let driver = tokio::spawn(connection);
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        drop(client);
        let _ = driver.await;
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
        Some("6")
    );
    drop(store);
    database.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'");
    let refused = PostgresStore::open(&database.url);
    assert!(
        matches!(
            refused,
            Err(StoreError::SchemaTooNew {
                found: 99,
                supported: 6
            })
        ),
        "{refused:?}"
    );
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
