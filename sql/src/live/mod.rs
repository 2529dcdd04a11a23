//! Live tables: the event log as warehouse tables, queryable as soon as an event is accepted.
//!
//! ```text
//!  event log (store) ──► tail (Arrow rows in memory, per tenant and table, log order)
//!        │                  │                                   │
//!        │                  │ a round: the tail's oldest events │ a scan: the table's files
//!        │                  ▼                                   ▼ (those of finished rounds)
//!        │      live-<date>-<first>-<last>.parquet  ──────►  ∪ the tail
//!        └──── the compacted watermark (store meta) = the last position every file covers
//! ```
//!
//! An event type mapped in the semantic model (`[events.order] table = "orders"`, see
//! [`mapping`]) is a row of its table; every event is a row of [`RAW_TABLE`]. A table is read
//! as the union of its Parquet files and the tail: the events after the compacted watermark,
//! read by a poller and again before each query that reads a live table, so an event accepted
//! before a query starts is in its answer (read-your-writes). The process's committer hands
//! over each commit's events as it logs them ([`LiveTables::offer`]); the tail takes those that
//! follow on from what it has read and reads the log for anything else.
//!
//! Compaction ([`LiveTables::compact`]) writes the tail's oldest events into one Parquet file per
//! table, tenant and event date, sorted by time, each written aside and renamed into place, then
//! moves the watermark in the store and drops those events from the tail — the watermark and the
//! tail change together, under one lock, and a reader takes both before it lists files, so every
//! event is read exactly once before, during and after a round (see [`files`] for the naming
//! that makes this hold across crashes). Dates with many small files are merged into one.
//! Ingest never waits for any of it: a hand-over is a push onto a short queue, and the poller
//! reads the log through the store's readers.

pub mod files;
pub mod mapping;
mod table;

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use connectors::store::{Handover, Store, StoredEvent};
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array, new_null_array};
use datafusion::arrow::compute::{
    SortColumn, cast, concat_batches, lexsort_to_indices, take_record_batch,
};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::parquet::schema::types::ColumnPath;
use serde_json::{Map, Value};

use crate::SqlError;
use crate::catalog::Warehouse;
use crate::model::SemanticModel;
pub use files::LiveFile;
pub use mapping::{ATTRIBUTES_COLUMN, EVENT_ID_COLUMN, EventMapping, LiveEvent, RAW_TABLE};
use mapping::{RowsBuilder, utc_day};
pub use table::{LiveTable, TailExec};

/// The store meta key holding the compacted watermark.
pub const WATERMARK_KEY: &str = "live.compacted_seq";
/// Events read from the log per call while catching up.
const READ_CHUNK: usize = 20_000;
/// Reads are joined into one step (one batch per table and tenant) up to this many events: the
/// tail is read often, so that a query finds little left to read itself, without holding a
/// batch per read.
const STEP_EVENTS: usize = 4_096;
/// A live file this large is not merged again (merges rewrite only the newest small files).
const MERGED_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Rows per Parquet row group of a live file: small enough that a time filter skips most of a
/// day's file.
const ROW_GROUP_ROWS: usize = 65_536;
/// Columns of live tables whose every row has a value of its own: written without a dictionary.
const UNIQUE_COLUMNS: [&str; 3] = ["seq", EVENT_ID_COLUMN, mapping::RAW_ATTRIBUTES_COLUMN];

/// Decodes a stored event body into its attributes (the pipeline owns the body's form).
pub type DecodeAttributes = Arc<dyn Fn(&str) -> Result<Map<String, Value>, String> + Send + Sync>;

/// How live tables are kept.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// How often the tail reads new events from the log (queries also read them first).
    pub poll_every: Duration,
    /// How often the tail is compacted into Parquet files.
    pub compact_every: Duration,
    /// A tail holding this many events is compacted at once.
    pub max_tail_events: usize,
    /// Most events one compaction round writes.
    pub round_events: usize,
    /// A date of a table with this many live files has them merged into one.
    pub merge_files: usize,
    /// How long a merged-away file is kept for queries that listed it before the merge.
    pub replaced_grace: Duration,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            poll_every: Duration::from_millis(5),
            compact_every: Duration::from_secs(5),
            max_tail_events: 200_000,
            round_events: 250_000,
            merge_files: 16,
            replaced_grace: Duration::from_secs(600),
        }
    }
}

/// What the engine needs to serve live tables.
#[derive(Clone)]
pub struct LiveConfig {
    /// The store holding the event log and the compacted watermark.
    pub store: Arc<dyn Store>,
    /// Reads an event's attributes from its stored body.
    pub decode: DecodeAttributes,
    /// Timings and sizes.
    pub options: LiveOptions,
}

impl std::fmt::Debug for LiveConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveConfig")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Where live tables stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveStatus {
    /// The last log position read into the tail.
    pub applied: u64,
    /// The last log position every live file covers.
    pub watermark: u64,
    /// Events in the tail (read, not yet compacted).
    pub tail_events: usize,
}

/// One round's outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Events written.
    pub events: usize,
    /// Files written.
    pub files: usize,
    /// Files merged away.
    pub merged: usize,
    /// The watermark after the round.
    pub watermark: u64,
}

/// Most handed-over commits, and events in them, kept for the tail; past either the oldest are
/// dropped (the tail reads those events from the log instead), so a tail that stops reading
/// (full, waiting for compaction) holds tens of megabytes of them at most.
const MAX_OFFERED: usize = 256;
const MAX_OFFERED_EVENTS: usize = 4 * READ_CHUNK;

/// A tenant and one of its tables.
type Key = (String, String);

/// Rows being built for one tenant's table, with each row's date and time.
type Building = (RowsBuilder, Vec<i32>, Vec<i64>);

/// Rows of one tenant's table read from the log in one step, with each row's date and time.
#[derive(Debug, Clone)]
struct TailBatch {
    /// The last log position of the step that read it.
    step_last: u64,
    batch: RecordBatch,
    /// Each row's event date, days since the epoch.
    days: Vec<i32>,
    /// Each row's event time, epoch ms.
    ts_ms: Vec<i64>,
}

impl TailBatch {
    /// `next` (rows of the same table, read after these) appended to this batch, which takes
    /// its step.
    fn absorb(&mut self, next: TailBatch) -> Result<(), SqlError> {
        self.batch = concat_batches(&self.batch.schema(), [&self.batch, &next.batch])
            .map_err(|e| SqlError::Internal(format!("live tables: {e}")))?;
        self.days.extend(next.days);
        self.ts_ms.extend(next.ts_ms);
        self.step_last = next.step_last;
        Ok(())
    }
}

/// A built table provider and the fingerprint of the operator's files it was built over.
type Provider = (u64, Arc<LiveTable>);

/// The events after the watermark, in memory.
#[derive(Debug, Default)]
struct Tail {
    watermark: u64,
    applied: u64,
    /// Each read step's last position and event count, oldest first.
    steps: VecDeque<(u64, usize)>,
    /// The last step a compaction round has taken: no later read is merged into it.
    sealed: u64,
    groups: HashMap<Key, Vec<TailBatch>>,
    /// The last log position that reached each group (its freshness).
    group_last: HashMap<Key, u64>,
    events: usize,
}

/// One group's tail batches, each with the last position of the step that read it.
fn batches_of(tail: &Tail, key: &Key) -> Vec<(u64, RecordBatch)> {
    tail.groups
        .get(key)
        .map(|batches| {
            batches
                .iter()
                .map(|b| (b.step_last, b.batch.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// A tenant's live tables at one moment, for one query: what its plan is keyed by and what its
/// tail scans read. A physical plan lists the files the snapshot's watermark covers and reads
/// the tail when it runs, from the snapshot the run carries (a session config extension), so a
/// plan is run again under later snapshots of the same watermark: new events need no new plan.
#[derive(Debug)]
pub struct LiveSnapshot {
    tenant: String,
    watermark: u64,
    /// Changes whenever new events reach the tables.
    events: u64,
    /// Each live table's tail batches (by the step that read them).
    rows: HashMap<String, Vec<(u64, RecordBatch)>>,
}

impl LiveSnapshot {
    /// The compacted watermark: what the files a plan lists cover (part of a plan's key).
    pub fn watermark(&self) -> u64 {
        self.watermark
    }

    /// A value that changes whenever new events reach the tables or compaction moves the
    /// watermark (part of an answer's key).
    pub fn freshness(&self) -> u64 {
        self.events ^ self.watermark.rotate_left(29)
    }

    /// `table`'s tail batches for `tenant`, if this snapshot is of them.
    fn rows(&self, tenant: &str, table: &str) -> Option<&[(u64, RecordBatch)]> {
        (self.tenant == tenant)
            .then(|| self.rows.get(table).map(Vec::as_slice))
            .flatten()
    }
}

/// The live tables of every tenant: mappings, tail, compaction.
pub struct LiveTables {
    warehouse: Arc<Warehouse>,
    store: Arc<dyn Store>,
    decode: DecodeAttributes,
    options: LiveOptions,
    by_type: HashMap<String, Arc<EventMapping>>,
    /// Each live table's schema as events build it.
    schemas: BTreeMap<String, SchemaRef>,
    /// Each live table's time column (rows are sorted by it in files).
    time_columns: HashMap<String, String>,
    tail: Mutex<Tail>,
    /// Held while reading the log into the tail (one reader, in log order).
    reading: Mutex<()>,
    /// Events the committer handed over as it logged them (see [`LiveTables::offer`]).
    offered: Handover<StoredEvent>,
    /// Held while a round or a merge runs.
    compacting: Mutex<()>,
    providers: Mutex<HashMap<Key, Provider>>,
}

impl std::fmt::Debug for LiveTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTables")
            .field("tables", &self.schemas.keys().collect::<Vec<_>>())
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

fn store_error(e: impl std::fmt::Display) -> SqlError {
    SqlError::Internal(format!("live tables: {e}"))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves consistent data (every change is one assignment
    // after the fallible work), so a poisoned lock is taken over.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl LiveTables {
    /// Opens live tables over `warehouse` with the model's event mappings: reads the compacted
    /// watermark, removes what an unfinished round left (files past the watermark, files being
    /// written) and reads the log after the watermark into the tail.
    pub fn open(
        warehouse: Arc<Warehouse>,
        model: &SemanticModel,
        config: LiveConfig,
    ) -> Result<Arc<Self>, SqlError> {
        let mut by_table: BTreeMap<String, Vec<&EventMapping>> = BTreeMap::new();
        for mapping in model.event_mappings() {
            by_table
                .entry(mapping.table.clone())
                .or_default()
                .push(mapping);
        }
        let mut schemas = BTreeMap::new();
        let mut time_columns = HashMap::new();
        schemas.insert(RAW_TABLE.to_string(), mapping::raw_schema());
        time_columns.insert(RAW_TABLE.to_string(), "event_time".to_string());
        for (table, mappings) in &by_table {
            schemas.insert(table.clone(), mapping::table_schema(mappings)?);
            let time = mappings.iter().flat_map(|m| &m.columns).find(|c| {
                c.source == mapping::ColumnSource::Time && c.ty == mapping::ColumnType::Timestamp
            });
            if let Some(time) = time {
                time_columns.insert(table.clone(), time.name.clone());
            }
        }
        let watermark = match config.store.get_meta(WATERMARK_KEY).map_err(store_error)? {
            None => 0,
            Some(text) => text.parse().map_err(|_| {
                SqlError::Internal(format!(
                    "live tables: store meta {WATERMARK_KEY} = {text:?} is not a log position"
                ))
            })?,
        };
        let live = Arc::new(LiveTables {
            warehouse,
            store: config.store,
            decode: config.decode,
            options: config.options,
            by_type: model
                .event_mappings()
                .map(|m| (m.event_type.clone(), Arc::new(m.clone())))
                .collect(),
            schemas,
            time_columns,
            tail: Mutex::new(Tail {
                watermark,
                applied: watermark,
                ..Tail::default()
            }),
            reading: Mutex::new(()),
            offered: Handover::new(MAX_OFFERED, MAX_OFFERED_EVENTS),
            compacting: Mutex::new(()),
            providers: Mutex::new(HashMap::new()),
        });
        live.remove_unfinished(watermark)?;
        live.refresh()?;
        Ok(live)
    }

    /// The live tables' names (mapped tables and [`RAW_TABLE`]).
    pub fn table_names(&self) -> impl Iterator<Item = &str> {
        self.schemas.keys().map(String::as_str)
    }

    /// Whether `table` is a live table.
    pub fn is_live(&self, table: &str) -> bool {
        self.schemas.contains_key(table)
    }

    /// How the tail and compaction stand.
    pub fn status(&self) -> LiveStatus {
        let tail = lock(&self.tail);
        LiveStatus {
            applied: tail.applied,
            watermark: tail.watermark,
            tail_events: tail.events,
        }
    }

    /// The options live tables were opened with.
    pub fn options(&self) -> &LiveOptions {
        &self.options
    }

    /// `tenant`'s live `tables` as they stand now, taken together under one lock: the compacted
    /// watermark (which files a plan lists) and the tail's rows (what a plan's tail scan reads
    /// when it runs). A query plans and runs under one snapshot (see [`LiveSnapshot`]).
    pub fn snapshot_of<'a>(
        &self,
        tenant: &str,
        tables: impl IntoIterator<Item = &'a str>,
    ) -> Arc<LiveSnapshot> {
        let tail = lock(&self.tail);
        let mut hasher = DefaultHasher::new();
        let mut rows = HashMap::new();
        for table in tables {
            if !self.is_live(table) || rows.contains_key(table) {
                continue;
            }
            let key = (tenant.to_string(), table.to_string());
            table.hash(&mut hasher);
            tail.group_last.get(&key).hash(&mut hasher);
            rows.insert(table.to_string(), batches_of(&tail, &key));
        }
        Arc::new(LiveSnapshot {
            tenant: tenant.to_string(),
            watermark: tail.watermark,
            events: hasher.finish(),
            rows,
        })
    }

    /// Hands over events the log has just committed (called by the process's only writer, as it
    /// commits): the tail takes them from here instead of reading them back from the log, when
    /// they follow on from what it has read. Anything it cannot use is read from the log as
    /// before, so an offer that is missing, late or dropped costs a read, never an event.
    /// `after` is the log's last position before `events`, which are in log order.
    pub fn offer(&self, after: u64, events: Vec<StoredEvent>) {
        self.offered.offer(after, events);
    }

    /// Reads the events the log has after the tail into it. Returns the last position read.
    ///
    /// The tail holds at most four times [`LiveOptions::max_tail_events`]: past that (a long log
    /// to catch up on at first start, or compaction failing) reading waits for compaction, and
    /// queries see the log only up to the tail's end until it catches up.
    pub fn refresh(&self) -> Result<u64, SqlError> {
        let _reading = lock(&self.reading);
        loop {
            let (after, held) = {
                let tail = lock(&self.tail);
                (tail.applied, tail.events)
            };
            if held >= self.options.max_tail_events.saturating_mul(4) {
                tracing::debug!(
                    held,
                    "live tables: the tail is full; reading waits for compaction"
                );
                return Ok(after);
            }
            let offered = self.offered.take(after, READ_CHUNK);
            let from_log = offered.is_empty();
            let events = if from_log {
                self.store
                    .events_after(after, READ_CHUNK)
                    .map_err(store_error)?
            } else {
                offered
            };
            let Some(last) = events.last().map(|e| e.seq) else {
                return Ok(after);
            };
            let count = events.len();
            let batches = self.build(events)?;
            let mut tail = lock(&self.tail);
            // A small read joins the step before it (its batches grow instead of the tail
            // holding one more per group), unless a round has taken that step.
            let previous = tail.applied;
            let join = tail.sealed < previous
                && tail
                    .steps
                    .back()
                    .is_some_and(|&(step, held)| step == previous && held + count <= STEP_EVENTS);
            for (key, batch) in batches {
                tail.group_last.insert(key.clone(), last);
                let group = tail.groups.entry(key).or_default();
                match group.last_mut() {
                    Some(open) if join && open.step_last == previous => open.absorb(batch)?,
                    _ => group.push(batch),
                }
            }
            match tail.steps.back_mut() {
                Some(step) if join => *step = (last, step.1 + count),
                _ => tail.steps.push_back((last, count)),
            }
            tail.applied = last;
            tail.events += count;
            // Handed-over events are followed by a read of the log (or more of them), which
            // finds whatever was committed after them.
            if from_log && count < READ_CHUNK {
                return Ok(last);
            }
        }
    }

    /// Turns events read from the log into rows, per tenant and table.
    fn build(&self, events: Vec<StoredEvent>) -> Result<Vec<(Key, TailBatch)>, SqlError> {
        let step_last = events.last().map_or(0, |e| e.seq);
        let read = events.len();
        // tenant → table → rows: looked up by reference, so no key is allocated per event.
        let mut by_tenant: HashMap<String, HashMap<&str, Building>> = HashMap::new();
        for stored in events {
            let attrs = match (self.decode)(&stored.body) {
                Ok(attrs) => attrs,
                Err(e) => {
                    tracing::warn!(seq = stored.seq, tenant = %stored.tenant, error = %e, "a logged event's attributes do not decode; it is a row without attributes");
                    Map::new()
                }
            };
            let event = LiveEvent {
                seq: stored.seq,
                tenant: stored.tenant,
                id: stored.id,
                event_type: stored.event_type,
                ts_ms: stored.ts_ms,
                attrs,
            };
            if !by_tenant.contains_key(&event.tenant) {
                by_tenant.insert(event.tenant.clone(), HashMap::new());
            }
            let tables = by_tenant
                .get_mut(&event.tenant)
                .expect("inserted above when missing");
            let mut push = |table: &str, day: i32, mapping: Option<&EventMapping>| {
                let (table, schema) = self
                    .schemas
                    .get_key_value(table)
                    .expect("every mapped table has a schema");
                let (rows, days, ts) = tables.entry(table.as_str()).or_insert_with(|| {
                    (
                        RowsBuilder::with_capacity(Arc::clone(schema), read),
                        Vec::new(),
                        Vec::new(),
                    )
                });
                match mapping {
                    Some(mapping) => rows.push_mapped(mapping, &event, day),
                    None => rows.push_raw(&event),
                }
                days.push(day);
                ts.push(event.ts_ms);
            };
            push(RAW_TABLE, utc_day(event.ts_ms), None);
            if let Some(mapping) = self.by_type.get(&event.event_type) {
                push(&mapping.table, mapping.day(event.ts_ms), Some(mapping));
            }
        }
        let builders = by_tenant.into_iter().flat_map(|(tenant, tables)| {
            tables
                .into_iter()
                .map(move |(table, building)| ((tenant.clone(), table.to_string()), building))
        });
        builders
            .into_iter()
            .map(|(key, (mut rows, days, ts_ms))| {
                debug_assert_eq!(rows.len(), days.len());
                let batch = rows
                    .finish()
                    .map_err(|e| SqlError::Internal(e.to_string()))?;
                Ok((
                    key,
                    TailBatch {
                        step_last,
                        batch,
                        days,
                        ts_ms,
                    },
                ))
            })
            .collect()
    }

    /// The compacted watermark and `tenant`'s tail rows of `table` (each batch with the last
    /// position of the step that read it, which identifies it), taken together.
    fn snapshot(&self, tenant: &str, table: &str) -> (u64, Vec<(u64, RecordBatch)>) {
        let tail = lock(&self.tail);
        let batches = batches_of(&tail, &(tenant.to_string(), table.to_string()));
        (tail.watermark, batches)
    }

    fn table_dir(&self, table: &str, tenant: &str) -> PathBuf {
        self.warehouse
            .root()
            .join(table)
            .join(format!("tenant={tenant}"))
    }

    /// One compaction round: the tail's oldest events (up to [`LiveOptions::round_events`],
    /// whole read steps) into files, the watermark moved, then dates with many files merged and
    /// files merged away long enough ago removed.
    pub fn compact(&self) -> Result<RoundReport, SqlError> {
        self.refresh()?;
        let _compacting = lock(&self.compacting);
        let (first, upto, events, work) = {
            let mut tail = lock(&self.tail);
            let mut upto = tail.watermark;
            let mut events = 0;
            for &(last, count) in &tail.steps {
                if events > 0 && events + count > self.options.round_events {
                    break;
                }
                upto = last;
                events += count;
            }
            tail.sealed = tail.sealed.max(upto);
            let work: Vec<(Key, Vec<TailBatch>)> = tail
                .groups
                .iter()
                .map(|(key, batches)| {
                    let taken: Vec<TailBatch> = batches
                        .iter()
                        .take_while(|b| b.step_last <= upto)
                        .cloned()
                        .collect();
                    (key.clone(), taken)
                })
                .filter(|(_, taken)| !taken.is_empty())
                .collect();
            (tail.watermark + 1, upto, events, work)
        };
        let mut report = RoundReport {
            watermark: upto,
            ..RoundReport::default()
        };
        if events == 0 {
            report.watermark = lock(&self.tail).watermark;
        } else {
            let mut touched = Vec::new();
            for ((tenant, table), batches) in work {
                let dir = self.table_dir(&table, &tenant);
                report.files += self.write_round(&dir, &table, &batches, first, upto)?;
                touched.push((tenant, table));
            }
            sync_dir(self.warehouse.root());
            self.store
                .set_meta(WATERMARK_KEY, &upto.to_string())
                .map_err(store_error)?;
            {
                let mut tail = lock(&self.tail);
                tail.watermark = upto;
                for batches in tail.groups.values_mut() {
                    batches.retain(|b| b.step_last > upto);
                }
                tail.groups.retain(|_, batches| !batches.is_empty());
                while tail.steps.front().is_some_and(|&(last, _)| last <= upto) {
                    tail.steps.pop_front();
                }
                tail.events -= events;
            }
            report.events = events;
            for (tenant, table) in touched {
                report.merged += self.merge(&table, &tenant, upto)?;
            }
        }
        self.remove_replaced()?;
        Ok(report)
    }

    /// Writes one tenant table's part of a round: one file per event date, rows sorted by time.
    fn write_round(
        &self,
        dir: &Path,
        table: &str,
        batches: &[TailBatch],
        first: u64,
        last: u64,
    ) -> Result<usize, SqlError> {
        let schema = Arc::clone(&self.schemas[table]);
        let parts: Vec<RecordBatch> = batches.iter().map(|b| b.batch.clone()).collect();
        let all = concat_batches(&schema, &parts).map_err(internal)?;
        let days: Vec<i32> = batches
            .iter()
            .flat_map(|b| b.days.iter().copied())
            .collect();
        let ts: Vec<i64> = batches
            .iter()
            .flat_map(|b| b.ts_ms.iter().copied())
            .collect();
        let mut order: Vec<u32> = (0..days.len() as u32).collect();
        order.sort_by_key(|&i| (days[i as usize], ts[i as usize]));
        fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let mut files = 0;
        let mut start = 0;
        while start < order.len() {
            let day = days[order[start] as usize];
            let end = start
                + order[start..]
                    .iter()
                    .take_while(|&&i| days[i as usize] == day)
                    .count();
            let indices = UInt32Array::from(order[start..end].to_vec());
            let rows = take_record_batch(&all, &indices).map_err(internal)?;
            let date = mapping::date_of_day(day);
            write_file(dir, &LiveFile::name(date, first, last), &rows)?;
            files += 1;
            start = end;
        }
        Ok(files)
    }

    /// Merges each date of `tenant`'s `table` that has [`LiveOptions::merge_files`] or more
    /// visible live files into one file spanning their ranges. Returns the files merged away.
    fn merge(&self, table: &str, tenant: &str, watermark: u64) -> Result<usize, SqlError> {
        let dir = self.table_dir(table, tenant);
        let visible = files::visible(&list_live(&dir), watermark);
        let mut by_date: BTreeMap<chrono::NaiveDate, Vec<&LiveFile>> = BTreeMap::new();
        for file in &visible {
            by_date.entry(file.date).or_default().push(file);
        }
        let schema = Arc::clone(&self.schemas[table]);
        let mut merged = 0;
        for (date, mut parts) in by_date {
            // The newest small files, contiguous in log order: a merged file's range must not
            // span a file it leaves out, and a day's big files are not rewritten again and again.
            parts.sort_by_key(|f| f.first);
            let small = parts
                .iter()
                .rev()
                .take_while(|f| {
                    fs::metadata(dir.join(&f.name)).is_ok_and(|m| m.len() < MERGED_FILE_BYTES)
                })
                .count();
            let parts = parts.split_off(parts.len() - small);
            if parts.len() < self.options.merge_files.max(2) {
                continue;
            }
            let mut batches = Vec::new();
            for part in &parts {
                let path = dir.join(&part.name);
                let file = fs::File::open(&path).map_err(|e| io_error(&path, e))?;
                let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                    .and_then(|b| b.build())
                    .map_err(internal)?;
                for batch in reader {
                    batches.push(conform(&batch.map_err(internal)?, &schema)?);
                }
            }
            let all = concat_batches(&schema, &batches).map_err(internal)?;
            let sorted = match self.time_columns.get(table) {
                Some(column) => {
                    let index = schema.index_of(column).map_err(internal)?;
                    let indices = lexsort_to_indices(
                        &[SortColumn {
                            values: Arc::clone(all.column(index)),
                            options: None,
                        }],
                        None,
                    )
                    .map_err(internal)?;
                    take_record_batch(&all, &indices).map_err(internal)?
                }
                None => all,
            };
            let first = parts.iter().map(|p| p.first).min().unwrap_or(0);
            let last = parts.iter().map(|p| p.last).max().unwrap_or(0);
            write_file(&dir, &LiveFile::name(date, first, last), &sorted)?;
            merged += parts.len();
        }
        Ok(merged)
    }

    /// Deletes live files another file replaced more than [`LiveOptions::replaced_grace`] ago.
    fn remove_replaced(&self) -> Result<(), SqlError> {
        let now = SystemTime::now();
        for (table, tenant) in self.table_dirs() {
            let dir = self.table_dir(&table, &tenant);
            let files = list_live(&dir);
            for file in &files {
                let replaced_long_ago = files.iter().any(|by| {
                    by.replaces(file)
                        && fs::metadata(dir.join(&by.name))
                            .and_then(|m| m.modified())
                            .ok()
                            .and_then(|t| now.duration_since(t).ok())
                            .is_some_and(|age| age >= self.options.replaced_grace)
                });
                if replaced_long_ago {
                    let path = dir.join(&file.name);
                    fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
                }
            }
        }
        Ok(())
    }

    /// Removes what a round that did not finish left: files past the watermark and files still
    /// being written.
    fn remove_unfinished(&self, watermark: u64) -> Result<(), SqlError> {
        for (table, tenant) in self.table_dirs() {
            let dir = self.table_dir(&table, &tenant);
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let unfinished = name.starts_with(files::TEMP_PREFIX)
                    || LiveFile::parse(&name).is_some_and(|f| f.last > watermark);
                if unfinished {
                    tracing::info!(file = %dir.join(&name).display(), watermark, "removing a file of a compaction round that did not finish");
                    let path = dir.join(&name);
                    fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
                }
            }
        }
        Ok(())
    }

    /// Every `(table, tenant)` directory of a live table in the warehouse.
    fn table_dirs(&self) -> Vec<(String, String)> {
        let mut dirs = Vec::new();
        for table in self.schemas.keys() {
            let Ok(entries) = fs::read_dir(self.warehouse.root().join(table)) else {
                continue;
            };
            for entry in entries.flatten() {
                if let Some(tenant) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix("tenant="))
                    && crate::catalog::validate_tenant(tenant).is_ok()
                {
                    dirs.push((table.clone(), tenant.to_string()));
                }
            }
        }
        dirs
    }

    /// Keeps live tables current until `stop()` is true: reads the log every
    /// [`LiveOptions::poll_every`] and, on a second thread (started here, with this thread's CPU
    /// priority), compacts every [`LiveOptions::compact_every`] (sooner when the tail holds
    /// [`LiveOptions::max_tail_events`]), so that a round writing files does not hold up reading.
    /// Blocking: run it on a thread of its own (the server runs it at a low CPU priority, so that
    /// ingest and queries come first when the machine is busy; queries read what is left of the
    /// log themselves, so they stay current). A failing step is logged and retried on the next
    /// tick; nothing is lost, since the tail is re-read from the log.
    pub fn run(&self, stop: impl Fn() -> bool + Sync) {
        std::thread::scope(|scope| {
            let compacting = std::thread::Builder::new()
                .name("tidemark-live-compact".into())
                .spawn_scoped(scope, || self.compact_until(&stop));
            let alone = compacting.is_err();
            if let Err(e) = compacting {
                tracing::error!(error = %e, "live tables: cannot start the compaction thread; compacting between reads");
            }
            let mut last_round = Instant::now();
            while !stop() {
                std::thread::sleep(self.options.poll_every);
                if stop() {
                    return;
                }
                // Only when the compaction thread could not start.
                let compact = alone && self.round_due(last_round);
                if compact {
                    last_round = Instant::now();
                }
                self.step(|| {
                    if compact {
                        self.compact().map(Some)
                    } else {
                        self.refresh().map(|_| None)
                    }
                });
            }
        });
    }

    /// Compacts whenever a round is due, until `stop()` is true.
    fn compact_until(&self, stop: &(impl Fn() -> bool + Sync)) {
        let mut last_round = Instant::now();
        while !stop() {
            std::thread::sleep(self.options.poll_every.max(Duration::from_millis(50)));
            if stop() {
                return;
            }
            if self.round_due(last_round) {
                last_round = Instant::now();
                self.step(|| self.compact().map(Some));
            }
        }
    }

    /// Whether a compaction round is due: `compact_every` since the last, or the tail is full.
    fn round_due(&self, last_round: Instant) -> bool {
        last_round.elapsed() >= self.options.compact_every
            || self.status().tail_events >= self.options.max_tail_events
    }

    /// Runs one read or round, logging what fails or panics (the next tick retries).
    fn step(&self, work: impl FnOnce() -> Result<Option<RoundReport>, SqlError>) {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
            Ok(Ok(Some(report))) if report.events > 0 => tracing::debug!(
                events = report.events,
                files = report.files,
                merged = report.merged,
                watermark = report.watermark,
                "live tables compacted"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "live tables: a step failed; retrying"),
            Err(_) => tracing::error!("live tables: a step panicked; retrying"),
        }
    }

    /// The provider of `tenant`'s live `table`, with the tail read up to the log's end first.
    pub(crate) async fn provider(
        self: &Arc<Self>,
        tenant: &str,
        table: &str,
    ) -> Result<Arc<LiveTable>, SqlError> {
        let live = Arc::clone(self);
        tokio::task::spawn_blocking(move || live.refresh())
            .await
            .map_err(|e| SqlError::Internal(format!("live tables: {e}")))??;
        let dir = self.table_dir(table, tenant);
        let others = other_files(&dir);
        let mut hasher = DefaultHasher::new();
        others.hash(&mut hasher);
        let fingerprint = hasher.finish();
        let key = (tenant.to_string(), table.to_string());
        if let Some((f, provider)) = lock(&self.providers).get(&key)
            && *f == fingerprint
        {
            return Ok(Arc::clone(provider));
        }
        let provider = Arc::new(
            LiveTable::build(
                Arc::clone(self),
                tenant,
                table,
                &self.schemas[table],
                &others,
                self.by_type.values().filter(|m| m.table == table),
            )
            .await?,
        );
        lock(&self.providers).insert(key, (fingerprint, Arc::clone(&provider)));
        Ok(provider)
    }

    pub(crate) fn warehouse(&self) -> &Warehouse {
        &self.warehouse
    }
}

/// The live files of a directory.
fn list_live(dir: &Path) -> Vec<LiveFile> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| LiveFile::parse(e.file_name().to_str()?))
        .collect()
}

/// The operator's own Parquet files of a directory (not live, not hidden), with their sizes and
/// modification times, sorted.
fn other_files(dir: &Path) -> Vec<(String, u64, u128)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(String, u64, u128)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            if name.starts_with('.')
                || name.starts_with('_')
                || name.starts_with(files::PREFIX)
                || !name.ends_with(".parquet")
            {
                return None;
            }
            let meta = e.metadata().ok()?;
            let mtime = meta
                .modified()
                .ok()?
                .duration_since(SystemTime::UNIX_EPOCH)
                .ok()?
                .as_nanos();
            meta.is_file().then_some((name, meta.len(), mtime))
        })
        .collect();
    files.sort();
    files
}

/// `batch` with `schema`'s columns: taken by name, cast where the type differs, null where absent.
pub(crate) fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, SqlError> {
    if batch.schema() == *schema {
        return Ok(batch.clone());
    }
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) if column.data_type() == field.data_type() => Ok(Arc::clone(column)),
            Some(column) => cast(column, field.data_type()).map_err(internal),
            None => Ok(new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<Result<_, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(internal)
}

/// Writes `rows` to `dir/name`: written aside under a hidden name, flushed to disk, renamed.
fn write_file(dir: &Path, name: &str, rows: &RecordBatch) -> Result<(), SqlError> {
    let temp = dir.join(format!("{}{name}", files::TEMP_PREFIX));
    let path = dir.join(name);
    // A column with a value of its own in every row gains nothing from a dictionary, which
    // would hold each value once more after the writer hashed and compared it into place.
    let mut properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
    for unique in UNIQUE_COLUMNS {
        properties = properties.set_column_dictionary_enabled(ColumnPath::from(unique), false);
    }
    let properties = properties.build();
    let file = fs::File::create(&temp).map_err(|e| io_error(&temp, e))?;
    let mut writer =
        ArrowWriter::try_new(file, rows.schema(), Some(properties)).map_err(internal)?;
    writer.write(rows).map_err(internal)?;
    let file = writer.into_inner().map_err(internal)?;
    file.sync_all().map_err(|e| io_error(&temp, e))?;
    fs::rename(&temp, &path).map_err(|e| io_error(&path, e))?;
    sync_dir(dir);
    Ok(())
}

/// Flushes a directory's entries (a rename) to disk; best effort where the platform cannot.
fn sync_dir(dir: &Path) {
    if let Ok(dir) = fs::File::open(dir) {
        let _ = dir.sync_all();
    }
}

fn internal(e: impl std::fmt::Display) -> SqlError {
    SqlError::Internal(format!("live tables: {e}"))
}

fn io_error(path: &Path, e: std::io::Error) -> SqlError {
    SqlError::Internal(format!("live tables: {}: {e}", path.display()))
}
