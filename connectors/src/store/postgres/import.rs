//! Copying an embedded installation (its SQLite store) into an empty PostgreSQL store.
//!
//! The SQLite file is first opened as a [`SqliteStore`] (which brings it to the schema version
//! this build knows, the one the PostgreSQL schema mirrors), then read table by table on a
//! read-only connection and written with `COPY … FROM STDIN BINARY`, all in one transaction
//! holding the write lock: either everything arrives or nothing does. Rows are copied as they
//! are: event sequence numbers (and with them every stored position: the engine's checkpoint,
//! the audience engine's, the live tables'), notification ids, and secret rows still sealed
//! under the same key-encryption key, so the server finds its secrets with the KEK it had.
//! The identity columns then continue after the highest copied value.

use std::path::Path;

use futures::pin_mut;
use rusqlite::types::ValueRef;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::{PostgresStore, pg};
use crate::store::meta::SCHEMA_VERSION_KEY;
use crate::store::{SqliteStore, StoreError, StoreResult};

/// Rows copied into one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedTable {
    /// The table.
    pub table: String,
    /// Rows copied.
    pub rows: u64,
}

/// PostgreSQL columns whose SQLite name differs (`offset` is reserved in PostgreSQL).
fn sqlite_column(table: &str, column: &str) -> String {
    match (table, column) {
        ("source_dead_letters", "record_offset") => "offset".to_owned(),
        _ => column.to_owned(),
    }
}

impl PostgresStore {
    /// Copies the SQLite store at `sqlite_path` into this store, which must hold nothing yet
    /// (no row in any table but its own schema version). Returns the rows copied per table.
    pub fn import_sqlite(&self, sqlite_path: &Path) -> StoreResult<Vec<ImportedTable>> {
        const OP: &str = "import from SQLite";
        if !sqlite_path.is_file() {
            return Err(StoreError::InvalidInput(format!(
                "{}: no SQLite store there",
                sqlite_path.display()
            )));
        }
        // Brings the file to this build's schema (and refuses a newer one).
        drop(SqliteStore::open(sqlite_path)?);
        let source = rusqlite::Connection::open_with_flags(
            sqlite_path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .map_err(|e| StoreError::InvalidInput(format!("{}: {e}", sqlite_path.display())))?;
        let read_error =
            |e: rusqlite::Error| StoreError::Corrupt(format!("reading the SQLite store: {e}"));

        self.write(OP, async |tx| {
            let tables: Vec<String> = tx
                .query(
                    "SELECT table_name::text FROM information_schema.tables
                     WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
                     ORDER BY table_name",
                    &[],
                )
                .await
                .map_err(pg(OP))?
                .iter()
                .map(|row| row.get(0))
                .collect();
            for table in &tables {
                let filter = if table == "meta" {
                    format!(" WHERE key <> '{SCHEMA_VERSION_KEY}'")
                } else {
                    String::new()
                };
                let held: i64 = tx
                    .query_one(&format!("SELECT count(*) FROM {table}{filter}"), &[])
                    .await
                    .map_err(pg(OP))?
                    .get(0);
                if held > 0 {
                    return Err(StoreError::InvalidInput(format!(
                        "the PostgreSQL store is not empty ({table} has {held} rows); \
                         import into a new database"
                    )));
                }
            }

            let mut imported = Vec::new();
            for table in &tables {
                let columns = tx
                    .prepare(&format!("SELECT * FROM {table} LIMIT 0"))
                    .await
                    .map_err(pg(OP))?;
                let names: Vec<String> = columns
                    .columns()
                    .iter()
                    .map(|c| c.name().to_owned())
                    .collect();
                let types: Vec<Type> = columns
                    .columns()
                    .iter()
                    .map(|c| c.type_().clone())
                    .collect();
                let selected: Vec<String> = names
                    .iter()
                    .map(|n| format!("\"{}\"", sqlite_column(table, n)))
                    .collect();
                let mut select = format!("SELECT {} FROM \"{table}\"", selected.join(", "));
                if table == "meta" {
                    select.push_str(&format!(" WHERE key <> '{SCHEMA_VERSION_KEY}'"));
                }
                let mut statement = source.prepare(&select).map_err(read_error)?;
                let mut rows = statement.query([]).map_err(read_error)?;

                let sink = tx
                    .copy_in(&format!(
                        "COPY {table} ({}) FROM STDIN BINARY",
                        names.join(", ")
                    ))
                    .await
                    .map_err(pg(OP))?;
                let writer = BinaryCopyInWriter::new(sink, &types);
                pin_mut!(writer);
                let mut count = 0u64;
                while let Some(row) = rows.next().map_err(read_error)? {
                    let mut values: Vec<Box<dyn ToSql + Sync + Send>> =
                        Vec::with_capacity(types.len());
                    for (i, ty) in types.iter().enumerate() {
                        let value = row.get_ref(i).map_err(read_error)?;
                        values.push(convert(table, &names[i], ty, value)?);
                    }
                    let refs: Vec<&(dyn ToSql + Sync)> = values
                        .iter()
                        .map(|v| v.as_ref() as &(dyn ToSql + Sync))
                        .collect();
                    writer.as_mut().write(&refs).await.map_err(pg(OP))?;
                    count += 1;
                }
                writer.finish().await.map_err(pg(OP))?;
                imported.push(ImportedTable {
                    table: table.clone(),
                    rows: count,
                });
            }

            // Identity columns continue after the highest copied value.
            let identities = tx
                .query(
                    "SELECT table_name::text, column_name::text FROM information_schema.columns
                     WHERE table_schema = current_schema() AND is_identity = 'YES'",
                    &[],
                )
                .await
                .map_err(pg(OP))?;
            for identity in identities {
                let (table, column): (String, String) = (identity.get(0), identity.get(1));
                tx.execute(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{table}', '{column}'),
                                       GREATEST((SELECT max({column}) FROM {table}), 1),
                                       (SELECT max({column}) FROM {table}) IS NOT NULL)"
                    ),
                    &[],
                )
                .await
                .map_err(pg(OP))?;
            }
            Ok(imported)
        })
    }
}

/// One SQLite value as the PostgreSQL column's type wants it.
fn convert(
    table: &str,
    column: &str,
    ty: &Type,
    value: ValueRef<'_>,
) -> StoreResult<Box<dyn ToSql + Sync + Send>> {
    let mismatch = || {
        StoreError::Corrupt(format!(
            "{table}.{column}: the SQLite value {value:?} does not fit PostgreSQL type {ty}"
        ))
    };
    Ok(match (ty, value) {
        (&Type::INT8, ValueRef::Null) => Box::new(None::<i64>),
        (&Type::INT8, ValueRef::Integer(n)) => Box::new(n),
        (&Type::TEXT, ValueRef::Null) => Box::new(None::<String>),
        (&Type::TEXT, ValueRef::Text(text)) => Box::new(
            std::str::from_utf8(text)
                .map_err(|_| mismatch())?
                .to_owned(),
        ),
        (&Type::BYTEA, ValueRef::Null) => Box::new(None::<Vec<u8>>),
        (&Type::BYTEA, ValueRef::Blob(bytes)) => Box::new(bytes.to_vec()),
        _ => return Err(mismatch()),
    })
}
