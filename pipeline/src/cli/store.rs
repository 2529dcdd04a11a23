//! `tidemark store …`: moving an installation's store.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::config::{Config, StoreSetting};
use crate::server;

/// `tidemark store`.
#[derive(Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    action: StoreAction,
}

#[derive(Subcommand)]
enum StoreAction {
    /// Copy an embedded installation's SQLite store into an empty PostgreSQL database (the
    /// configured `store`, or `--to`). Stop the server on DATA_DIR first. Secrets stay sealed
    /// under the same KEK: keep its key file (`<data_dir>/secrets.kek` unless configured
    /// otherwise) or Secrets Manager entry for the server that uses the database.
    MigrateFromSqlite {
        /// The embedded installation's data directory (holding `tidemark.db`).
        #[arg(long = "from", value_name = "DATA_DIR")]
        from: PathBuf,
        /// The PostgreSQL database (`postgres://user@host:5432/database`); default: `store`
        /// of the configuration.
        #[arg(long)]
        to: Option<String>,
        /// TOML configuration file naming the target `store`.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// Runs a `tidemark store` action; prints what was copied as JSON.
pub fn run(args: StoreArgs) -> anyhow::Result<()> {
    match args.action {
        StoreAction::MigrateFromSqlite { from, to, config } => {
            let target = match to {
                Some(url) => StoreSetting::Url(url),
                None => Config::load(config.as_deref())?.store.context(
                    "no target: give --to postgres://… or set `store` in the configuration",
                )?,
            };
            let target_display = crate::config::redact_password(target.url());
            if !server::is_postgres_url(target.url()) {
                anyhow::bail!("the target must be a postgres:// URL, not {target_display}");
            }
            // The embedded server must not be running on it meanwhile.
            let source = Config {
                data_dir: from.clone(),
                ..Config::default()
            };
            let _lock = server::lock_data_dir(&source)?;
            let sqlite = source.store_path();
            let store = server::open_postgres(&target)?;
            let tables = store.import_sqlite(&sqlite).with_context(|| {
                format!("cannot copy {} into {target_display}", sqlite.display())
            })?;
            let rows: u64 = tables.iter().map(|t| t.rows).sum();
            let summary = serde_json::json!({
                "from": sqlite.display().to_string(),
                "to": target_display,
                "rows": rows,
                "tables": tables
                    .iter()
                    .map(|t| (t.table.clone(), serde_json::json!(t.rows)))
                    .collect::<serde_json::Map<_, _>>(),
            });
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
    }
}
