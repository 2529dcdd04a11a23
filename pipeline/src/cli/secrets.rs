//! `tidemark secrets …`: tenants' stored credentials from the command line.
//!
//! Runs beside a live server on the same data directory (SQLite lets both in; the server's
//! lock is not taken), so `rotate-kek` re-wraps while the server keeps reading and writing.
//! Values are read from standard input or a file, never from arguments, which other users
//! can see in the process list; `get` writes the bare value to standard output.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use connectors::secrets::{RewrapProgress, Secrets};
use connectors::store::SecretRows;
use zeroize::Zeroizing;

use crate::config::Config;

/// `tidemark secrets` arguments.
#[derive(Args)]
pub struct SecretsArgs {
    /// TOML configuration file, the server's (defaults are built in; TIDEMARK_* variables
    /// override both).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: SecretsCommand,
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Store a new version of a secret (the previous one is kept for rollback). The value is
    /// read from standard input (one trailing newline dropped) or, byte for byte, from --file.
    Put {
        /// Owning tenant.
        #[arg(long)]
        tenant: String,
        /// Secret name (letters, digits, . _ - / :).
        name: String,
        /// Read the value from this file instead of standard input.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Write a secret's value to standard output.
    Get {
        /// Owning tenant.
        #[arg(long)]
        tenant: String,
        /// Secret name.
        name: String,
        /// A kept earlier version instead of the latest.
        #[arg(long)]
        version: Option<u64>,
    },
    /// List a tenant's secrets: names, versions, KEK versions; never values.
    List {
        /// Owning tenant.
        #[arg(long)]
        tenant: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete every version of a secret.
    Delete {
        /// Owning tenant.
        #[arg(long)]
        tenant: String,
        /// Secret name.
        name: String,
    },
    /// Make the previous version the latest again (as a new version).
    Rollback {
        /// Owning tenant.
        #[arg(long)]
        tenant: String,
        /// Secret name.
        name: String,
    },
    /// Create a new KEK version and re-wrap every data key under it, then retire the old
    /// version. Safe while the server runs; an interrupted run is finished by the next one.
    RotateKek {
        /// Rows per transaction (overrides secrets.rewrap_batch).
        #[arg(long)]
        batch: Option<usize>,
    },
    /// Show the KEK version, its encryption count and any unfinished re-wrap (JSON).
    Status,
}

/// Reads a value to store: a file byte for byte, or standard input minus one trailing
/// newline (what `echo` and a typed line add).
fn read_value(file: Option<&Path>) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let mut value = Zeroizing::new(Vec::with_capacity(4096));
    match file {
        Some(path) => {
            std::fs::File::open(path)
                .and_then(|mut f| f.read_to_end(&mut value))
                .with_context(|| format!("cannot read {}", path.display()))?;
        }
        None => {
            let mut stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("Enter the value, then Ctrl-D:");
            }
            stdin
                .read_to_end(&mut value)
                .context("cannot read the value from standard input")?;
            if value.last() == Some(&b'\n') {
                value.pop();
                if value.last() == Some(&b'\r') {
                    value.pop();
                }
            }
        }
    }
    Ok(value)
}

/// Runs one `tidemark secrets` command.
pub async fn run(args: SecretsArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref())?;
    if let SecretsCommand::RotateKek { batch: Some(batch) } = args.command {
        config.secrets.rewrap_batch = batch;
        config.validate()?;
    }
    // Its own handle on the store file: a server may be running beside this command.
    let store = crate::server::open_store(&config)?;
    let secrets = crate::server::open_secrets(&config, store).await?;
    match args.command {
        SecretsCommand::Put { tenant, name, file } => {
            let value = read_value(file.as_deref())?;
            let version = secrets.put(&tenant, &name, &value).await?;
            println!("stored {name} version {version} for tenant {tenant}");
        }
        SecretsCommand::Get {
            tenant,
            name,
            version,
        } => {
            let value = secrets.get_version(&tenant, &name, version).await?;
            let mut out = std::io::stdout().lock();
            out.write_all(value.expose())?;
            if out.is_terminal() {
                out.write_all(b"\n")?;
            }
            out.flush()?;
        }
        SecretsCommand::List { tenant, json } => {
            let list = secrets.list(&tenant).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<40} {:>8} {:>12} {:>4}  created",
                    "name", "version", "kept", "kek"
                );
                for s in list {
                    let kept: Vec<String> = s.versions.iter().map(u64::to_string).collect();
                    let created = chrono::DateTime::from_timestamp_millis(s.created_at_ms)
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                        .unwrap_or_default();
                    println!(
                        "{:<40} {:>8} {:>12} {:>4}  {created}",
                        s.name,
                        s.version,
                        kept.join(","),
                        s.kek_version
                    );
                }
            }
        }
        SecretsCommand::Delete { tenant, name } => {
            if !secrets.delete(&tenant, &name).await? {
                anyhow::bail!("tenant {tenant:?} has no secret named {name:?}");
            }
            println!("deleted {name} for tenant {tenant}");
        }
        SecretsCommand::Rollback { tenant, name } => {
            let version = secrets.rollback(&tenant, &name).await?;
            println!(
                "rolled back {name} for tenant {tenant}: the previous value is now version {version}"
            );
        }
        SecretsCommand::RotateKek { .. } => {
            let report = rotate(&secrets).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        SecretsCommand::Status => {
            println!(
                "{}",
                serde_json::to_string_pretty(&secrets.status().await?)?
            );
        }
    }
    Ok(())
}

/// Rotates with a progress bar on a terminal, or a progress line every few seconds when
/// standard error is a file or pipe.
async fn rotate(
    secrets: &Secrets<dyn SecretRows>,
) -> anyhow::Result<connectors::secrets::RotationReport> {
    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "re-wrapping to KEK v{msg} {wide_bar} {pos}/{len} ({per_sec}, {eta} left)",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut last_line = Instant::now();
    let report = secrets
        .rotate_kek(|p: RewrapProgress| {
            bar.set_length(p.total);
            bar.set_position(p.done);
            bar.set_message(p.target_kek_version.to_string());
            let finished = p.done == p.total;
            if !tty && (finished || last_line.elapsed() >= Duration::from_secs(5)) {
                eprintln!(
                    "re-wrapped {}/{} secrets to KEK version {}",
                    p.done, p.total, p.target_kek_version
                );
                last_line = Instant::now();
            }
        })
        .await;
    bar.finish_and_clear();
    Ok(report?)
}
