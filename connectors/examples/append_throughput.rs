//! Measures event-log append throughput of the SQLite store: small events, appended in
//! batches (one transaction and one fsync per batch, as the HTTP ingest path does).
//!
//! `cargo run --release -p connectors --example append_throughput [total_events] [db_dir]`

use std::time::Instant;

use connectors::store::{EventLog, NewEvent, SqliteStore};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let total: usize = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let dir = match args.next() {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    for (ids, batch_size) in [
        ("sequential", 1_000usize),
        ("sequential", 10_000),
        ("random", 10_000),
    ] {
        let store = SqliteStore::open(dir.path().join(format!("append-{ids}-{batch_size}.db")))?;
        let events: Vec<NewEvent> = (0..total)
            .map(|i| NewEvent {
                // Random ids (like UUIDs) scatter inserts across the (tenant, id) index.
                id: if ids == "random" {
                    format!("evt-{:016x}", splitmix64(i as u64))
                } else {
                    format!("evt-{i:012}")
                },
                tenant: format!("shop-{}", i % 50),
                event_type: "order.created".to_owned(),
                ts_ms: 1_760_000_000_000 + i as i64,
                body: format!(
                    r#"{{"id":"evt-{i:012}","type":"order.created","amount":{},"channel":"naver"}}"#,
                    i % 1_000_000
                ),
            })
            .collect();
        let started = Instant::now();
        for batch in events.chunks(batch_size) {
            store.append_events(batch)?;
        }
        let appended = started.elapsed();
        let started = Instant::now();
        for batch in events.chunks(batch_size) {
            store.append_events(batch)?;
        }
        let duplicates = started.elapsed();
        println!(
            "{ids:>10} ids, batch {batch_size:>6}: {total} new events in {:.2} s = {:.0} events/s; \
             re-append (all duplicates) {:.0} events/s",
            appended.as_secs_f64(),
            total as f64 / appended.as_secs_f64(),
            total as f64 / duplicates.as_secs_f64(),
        );
    }
    Ok(())
}

/// A bijective scrambler, so "random" ids stay unique.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
