//! The secrets store: decrypt throughput with a cached KEK (the envelope alone, on every
//! core), end-to-end `get`s through SQLite, bulk puts, and the re-wrap rate of a full KEK
//! rotation over every stored secret; with the monthly cost of keeping the same secrets in
//! AWS Secrets Manager one by one against one KEK there.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use connectors::secrets::envelope::{self, KeyBytes};
use connectors::secrets::{Kek, KekSource, LocalKeyFile, Secrets, SecretsOptions};
use connectors::store::SqliteStore;
use rand::RngCore;
use serde_json::json;

/// Parameters.
pub struct SecretsBenchArgs {
    /// Secrets stored, then re-wrapped by a rotation.
    pub secrets: usize,
    /// Threads decrypting in the envelope phase; concurrency of the `get` phase is 8× this.
    pub threads: usize,
    /// Bytes per value.
    pub value_bytes: usize,
    /// Gets in the end-to-end phase.
    pub gets: usize,
    /// Rows per re-wrap transaction.
    pub batch: usize,
}

/// Sealed rows decrypted over and over in the envelope phase.
const POOL: usize = 100_000;
/// How long the envelope phase runs.
const DECRYPT_TIME: Duration = Duration::from_secs(3);
/// Secrets per tenant when storing.
const PER_TENANT: usize = 10_000;
/// AWS Secrets Manager list prices (us-east-1): per secret-month, and per 10,000 API calls.
const USD_PER_SECRET_MONTH: f64 = 0.40;
const USD_PER_10K_CALLS: f64 = 0.05;

/// A small, `Send` pseudo-random sequence for picking keys (quality is irrelevant here).
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn value(i: usize, len: usize) -> Vec<u8> {
    let mut v = format!("{i:012}-").into_bytes();
    v.resize(len.max(v.len()), b'x');
    v
}

/// Runs the benchmark in a fresh temporary data directory.
pub async fn run(args: SecretsBenchArgs) -> anyhow::Result<serde_json::Value> {
    let dir = std::env::temp_dir().join(format!("tidemark-bench-secrets-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let result = run_in(&dir, &args).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_in(
    dir: &std::path::Path,
    args: &SecretsBenchArgs,
) -> anyhow::Result<serde_json::Value> {
    let threads = args.threads.max(1);

    // Phase 1: the envelope alone, KEK cached: unwrap the data key, decrypt the value.
    let kek = Arc::new(Kek::new(1, &KeyBytes::random()));
    let pool: Arc<Vec<_>> = Arc::new(
        (0..POOL)
            .map(|i| {
                envelope::seal(
                    &kek,
                    &format!("shop-{}", i % 100),
                    &format!("key-{i}"),
                    1,
                    &value(i, args.value_bytes),
                    0,
                )
            })
            .collect::<Result<_, _>>()?,
    );
    let decrypted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (kek, pool, decrypted) =
                (Arc::clone(&kek), Arc::clone(&pool), Arc::clone(&decrypted));
            std::thread::spawn(move || -> anyhow::Result<()> {
                let mut n = 0u64;
                let mut i = t * POOL / threads;
                while started.elapsed() < DECRYPT_TIME {
                    for _ in 0..1_000 {
                        let value = envelope::open(&kek, &pool[i % POOL])?;
                        anyhow::ensure!(value.len() >= 12, "short value");
                        i += 1;
                        n += 1;
                    }
                }
                decrypted.fetch_add(n, Ordering::Relaxed);
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join()
            .map_err(|_| anyhow::anyhow!("decrypt thread panicked"))??;
    }
    let decrypt_seconds = started.elapsed().as_secs_f64();
    let decrypt_per_sec = decrypted.load(Ordering::Relaxed) as f64 / decrypt_seconds;
    drop(pool);

    // Phase 2: store every secret (one transaction per 10,000).
    let store = Arc::new(SqliteStore::open(dir.join("tidemark.db"))?);
    let keks = KekSource::LocalFile(LocalKeyFile::open_or_create(dir.join("secrets.kek"))?);
    let secrets = Arc::new(Secrets::new(
        Arc::clone(&store),
        keks,
        SecretsOptions {
            rewrap_batch: args.batch,
            ..SecretsOptions::default()
        },
    ));
    let tenants = args.secrets.div_ceil(PER_TENANT);
    let started = Instant::now();
    let mut stored = 0usize;
    for t in 0..tenants {
        let count = PER_TENANT.min(args.secrets - stored);
        let names: Vec<String> = (0..count).map(|i| format!("key-{i}")).collect();
        let values: Vec<Vec<u8>> = (0..count)
            .map(|i| value(stored + i, args.value_bytes))
            .collect();
        let entries: Vec<(&str, &[u8])> = names
            .iter()
            .zip(&values)
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        secrets.put_many(&format!("shop-{t}"), &entries).await?;
        stored += count;
    }
    let put_seconds = started.elapsed().as_secs_f64();

    // Phase 3: end-to-end gets (SQLite read on a blocking thread + envelope), concurrently.
    let tasks = threads * 8;
    let per_task = args.gets.div_ceil(tasks);
    let started = Instant::now();
    let mut handles = Vec::new();
    for task in 0..tasks {
        let secrets = Arc::clone(&secrets);
        let total = args.secrets;
        let mut state = rand::rng().next_u64() ^ task as u64;
        handles.push(tokio::spawn(async move {
            for _ in 0..per_task {
                let i = (splitmix64(&mut state) % total as u64) as usize;
                let (tenant, name) = (
                    format!("shop-{}", i / PER_TENANT),
                    format!("key-{}", i % PER_TENANT),
                );
                let value = secrets.get(&tenant, &name).await?;
                anyhow::ensure!(
                    value.expose().starts_with(format!("{i:012}-").as_bytes()),
                    "wrong value"
                );
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let get_seconds = started.elapsed().as_secs_f64();
    let gets = (per_task * tasks) as f64;

    // Phase 4: rotate the KEK: every data key re-wrapped, one transaction per batch.
    let report = secrets.rotate_kek(|_| {}).await?;
    anyhow::ensure!(
        report.rewrapped as usize == args.secrets,
        "re-wrapped {} of {}",
        report.rewrapped,
        args.secrets
    );
    // The database with its write-ahead log (rows may not be checkpointed yet).
    let db_bytes: u64 = ["tidemark.db", "tidemark.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum();

    let cost: Vec<serde_json::Value> = [1_000u64, 10_000, 100_000, 1_000_000]
        .into_iter()
        .map(|n| {
            json!({
                "secrets": n,
                "one_secret_each_usd_per_month": n as f64 * USD_PER_SECRET_MONTH,
                // One KEK; a GetSecretValue per process start and per rotation, say 1,000 a month.
                "one_kek_usd_per_month": USD_PER_SECRET_MONTH + 1_000.0 / 10_000.0 * USD_PER_10K_CALLS,
            })
        })
        .collect();

    Ok(json!({
        "benchmark": "secrets",
        "threads": threads,
        "value_bytes": args.value_bytes,
        "decrypt_cached_kek": {
            "secrets_per_sec": decrypt_per_sec.round(),
            "seconds": decrypt_seconds,
        },
        "put": {
            "secrets": args.secrets,
            "secrets_per_sec": (args.secrets as f64 / put_seconds).round(),
            "seconds": put_seconds,
        },
        "get_end_to_end": {
            "gets": gets,
            "concurrency": tasks,
            "gets_per_sec": (gets / get_seconds).round(),
            "seconds": get_seconds,
        },
        "rotate_kek": {
            "rewrapped": report.rewrapped,
            "batch": args.batch,
            "rewrapped_per_sec": (report.rewrapped as f64 / report.seconds).round(),
            "seconds": report.seconds,
            "retired_kek_versions": report.retired_kek_versions,
        },
        "database_bytes": db_bytes,
        "monthly_cost": cost,
    }))
}
