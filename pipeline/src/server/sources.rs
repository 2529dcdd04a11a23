//! Runs the configured event sources (`[[sources.fluvio]]`): each partition's records decoded,
//! committed through the group commit with the partition's next offset, exactly once.
//!
//! ```text
//! per source:     supervisor ── connect, list partitions, read stored positions ──┐
//!                    ▲   (backoff, unhealthy in /healthz, on any error)             │
//!                    └──────────────────────────────────────────────────────────────┤
//! per partition:  reader (Fluvio stream) ─bounded channel─► committer ─► Runtime::ingest_from_source
//!                                                              (events + next offset + dead
//!                                                               letters: one transaction)
//! per source:     watermarks ── every few seconds: high watermark − next offset = lag
//! ```
//!
//! Back-pressure is the channel's bound and the commit: a committer waits for its batch to be
//! durable before taking the next, and the group commit waits when the engine falls behind, so
//! a source never holds more than a couple of batches per partition in memory. After any error
//! (the cluster gone, a commit refused) everything of the source is dropped and it starts again
//! from the positions in the store, which are exactly where the log ends.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use connectors::sources::FieldError;
use connectors::sources::fluvio::{
    FluvioSourceConfig, FluvioTopic, SourceError, SourceRecord, StartPosition, TenantBinding,
    dead_letter_bytes, decode_record,
};
use connectors::store::{NewDeadLetter, SourcePosition, SourceProgress, Store};
use futures::StreamExt;
use operators::{Event, EventFields};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::ingest::{IngestError, Runtime, now_ms};
use crate::metrics::Metrics;

/// How long one call to the cluster may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// First and longest wait before reconnecting.
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How often lag is measured.
const WATERMARK_INTERVAL: Duration = Duration::from_secs(2);
/// How long a partition's stream may deliver nothing before the reader asks the cluster whether
/// records are waiting past its position (then the stream has stalled and is opened again). A
/// stall delays the partition's records by about this much (seen in `bench fluvio` about once in
/// six runs on a slow machine); the question is one small call a second while a topic is idle.
const STALL_CHECK: Duration = Duration::from_secs(1);
/// Records a reader forwards to its committer at once, at most: those the stream has ready, so
/// the stall timer and the channel cost once per run of records rather than once per record.
const FORWARD_RECORDS: usize = 256;

/// Every source's health, as `/healthz` shows it.
#[derive(Clone, Default)]
pub struct SourcesHealth(Arc<Mutex<BTreeMap<String, SourceStatus>>>);

/// One source's health.
#[derive(Clone, Debug, Serialize)]
pub struct SourceStatus {
    /// `"healthy"` while connected and reading, `"unhealthy"` while it retries.
    pub state: &'static str,
    /// The topic.
    pub topic: String,
    /// Why it is unhealthy (the last error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Each partition's next offset, high watermark and lag.
    pub partitions: BTreeMap<u32, PartitionStatus>,
}

/// One partition's progress.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct PartitionStatus {
    /// Offset of the next record to log.
    pub next_offset: Option<i64>,
    /// The partition's high watermark, as last measured.
    pub high_watermark: Option<i64>,
    /// Records produced but not yet logged.
    pub lag: Option<i64>,
}

impl SourcesHealth {
    /// Whether every source is healthy.
    pub fn all_healthy(&self) -> bool {
        self.snapshot().values().all(|s| s.state == "healthy")
    }

    /// Every source's status, by name.
    pub fn snapshot(&self) -> BTreeMap<String, SourceStatus> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut SourceStatus)) {
        if let Ok(mut all) = self.0.lock()
            && let Some(status) = all.get_mut(name)
        {
            f(status);
        }
    }
}

/// Starts every configured source; each stops when `stop` turns true, after committing what it
/// holds. In a cluster, `share` is this process's index and the number of processes: of each
/// topic's partitions, a process reads those whose number modulo the processes is its index.
pub fn start(
    configs: &[FluvioSourceConfig],
    share: (usize, usize),
    runtime: Arc<Runtime>,
    health: SourcesHealth,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    configs
        .iter()
        .map(|config| {
            let source = Source {
                name: config.name(),
                binding: config.binding(),
                config: config.clone(),
                share,
                runtime: runtime.clone(),
                health: health.clone(),
            };
            if let Ok(mut all) = health.0.lock() {
                all.insert(
                    source.name.clone(),
                    SourceStatus {
                        state: "unhealthy",
                        topic: config.topic.clone(),
                        error: Some("not connected yet".into()),
                        partitions: BTreeMap::new(),
                    },
                );
            }
            tokio::spawn(source.supervise(stop.clone()))
        })
        .collect()
}

/// Why a source's run ended.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{0}")]
    Ingest(#[from] IngestError),
    #[error("{0}")]
    Store(#[from] connectors::store::StoreError),
    #[error("a partition reader stopped: {0}")]
    Task(String),
}

#[derive(Clone)]
struct Source {
    name: String,
    binding: TenantBinding,
    config: FluvioSourceConfig,
    /// This process's index and the cluster's processes.
    share: (usize, usize),
    runtime: Arc<Runtime>,
    health: SourcesHealth,
}

impl Source {
    fn metrics(&self) -> &Metrics {
        self.runtime.metrics()
    }

    fn store(&self) -> Arc<dyn Store> {
        self.runtime.store().clone()
    }

    /// Runs the source until `stop`, starting it again with backoff after every error.
    async fn supervise(self, mut stop: watch::Receiver<bool>) {
        let mut backoff = BACKOFF_FIRST;
        loop {
            if *stop.borrow() {
                return;
            }
            let started = tokio::time::Instant::now();
            let result = self.run(stop.clone()).await;
            self.metrics().set_source_up(&self.name, false);
            match result {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(source = %self.name, error = %e, retry_in = ?backoff, "source stopped; reconnecting");
                    self.health.update(&self.name, |s| {
                        s.state = "unhealthy";
                        s.error = Some(e.to_string());
                    });
                    self.metrics().source_errors(&self.name);
                }
            }
            // A run that lasted a while was healthy: start the backoff over.
            if started.elapsed() > BACKOFF_MAX * 3 {
                backoff = BACKOFF_FIRST;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stopped(&mut stop) => return,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One connected run: every partition read and committed until an error or `stop`.
    async fn run(&self, mut stop: watch::Receiver<bool>) -> Result<(), RunError> {
        let topic = Arc::new(
            FluvioTopic::connect(&self.config.endpoint, &self.config.topic, CALL_TIMEOUT).await?,
        );
        let (process, processes) = self.share;
        let partitions: Vec<u32> = topic
            .partitions(self.config.partitions.as_deref())
            .await?
            .into_iter()
            .filter(|&partition| partition as usize % processes.max(1) == process)
            .collect();
        let stored: BTreeMap<u32, i64> = {
            let (store, name) = (self.store(), self.name.clone());
            tokio::task::spawn_blocking(move || store.source_positions(&name))
                .await
                .map_err(|e| RunError::Task(e.to_string()))??
                .into_iter()
                .map(|p| (p.partition, p.next_offset))
                .collect()
        };
        let marks: BTreeMap<u32, i64> = if self.config.start == StartPosition::End
            && partitions.iter().any(|p| !stored.contains_key(p))
        {
            topic.high_watermarks().await?.into_iter().collect()
        } else {
            BTreeMap::new()
        };
        let mut tasks = JoinSet::new();
        for &partition in &partitions {
            let from = match (stored.get(&partition), self.config.start) {
                (Some(&next), _) => Some(next),
                (None, StartPosition::Beginning) => None,
                (None, StartPosition::End) => {
                    // Recorded at once, so a restart resumes here rather than at a later end.
                    let end = marks.get(&partition).copied().unwrap_or(0);
                    self.commit(Vec::new(), self.progress(partition, end, Vec::new()))
                        .await?;
                    Some(end)
                }
            };
            // Room for about two batches' records, in runs of up to FORWARD_RECORDS.
            let runs = self
                .config
                .max_batch_records
                .saturating_mul(2)
                .div_ceil(FORWARD_RECORDS);
            let (tx, rx) = mpsc::channel(runs.max(2));
            tasks.spawn(read_partition(
                topic.clone(),
                self.name.clone(),
                partition,
                from,
                tx,
            ));
            tasks.spawn(
                self.clone()
                    .commit_partition(partition, from, rx, stop.clone()),
            );
            self.health.update(&self.name, |s| {
                s.partitions.entry(partition).or_default().next_offset = from;
            });
        }
        tasks.spawn(self.clone().watch_lag(topic.clone()));
        self.health.update(&self.name, |s| {
            s.state = "healthy";
            s.error = None;
        });
        self.metrics().set_source_up(&self.name, true);
        tracing::info!(source = %self.name, topic = %self.config.topic, ?partitions, "source reading");
        loop {
            tokio::select! {
                finished = tasks.join_next() => match finished {
                    None => return Ok(()),
                    // A reader that forwarded its stream's end: its committer reports it.
                    Some(Ok(Ok(()))) => continue,
                    Some(Ok(Err(e))) => return Err(e),
                    Some(Err(e)) => return Err(RunError::Task(e.to_string())),
                },
                _ = stopped(&mut stop) => {
                    // Readers and the lag watcher stop here; committers finish their batch.
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                    return Ok(());
                }
            }
        }
    }

    fn progress(
        &self,
        partition: u32,
        next_offset: i64,
        dead_letters: Vec<NewDeadLetter>,
    ) -> SourceProgress {
        SourceProgress {
            positions: vec![SourcePosition {
                source: self.name.clone(),
                partition,
                next_offset,
            }],
            dead_letters,
        }
    }

    async fn commit(&self, events: Vec<Event>, progress: SourceProgress) -> Result<(), RunError> {
        self.runtime.ingest_from_source(events, progress).await?;
        Ok(())
    }

    /// Takes the partition's records in batches, decodes them and commits each batch with the
    /// partition's next offset; returns when the reader ends (after committing what it read)
    /// or on `stop` (between batches).
    async fn commit_partition(
        self,
        partition: u32,
        from: Option<i64>,
        mut records: mpsc::Receiver<Result<Vec<SourceRecord>, SourceError>>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), RunError> {
        let label = partition.to_string();
        let mut next = from;
        let max = self.config.max_batch_records.max(1);
        // Records received and not yet in a batch (a run can straddle two batches), and the
        // reader's error, once it sent one: committed after the records before it.
        let mut taken = VecDeque::new();
        let mut failure = None;
        loop {
            if taken.is_empty() && failure.is_none() {
                let first = tokio::select! {
                    first = records.recv() => first,
                    _ = stopped(&mut stop) => return Ok(()),
                };
                match first {
                    None => return Ok(()),
                    Some(Ok(run)) => taken.extend(run),
                    Some(Err(e)) => failure = Some(e),
                }
            }
            while failure.is_none() && taken.len() < max {
                match records.try_recv() {
                    Ok(Ok(run)) => taken.extend(run),
                    Ok(Err(e)) => failure = Some(e),
                    Err(_) => break,
                }
            }
            let mut batch: Vec<SourceRecord> = taken.drain(..taken.len().min(max)).collect();
            // A record at or before the position is one a reconnect read again: skip it.
            batch.retain(|r| next.is_none_or(|n| r.offset >= n));
            if let Some(last) = batch.last() {
                let next_offset = last.offset + 1;
                let (events, letters) = self.decode(partition, &batch);
                let dead = letters.len() as u64;
                self.commit(events, self.progress(partition, next_offset, letters))
                    .await?;
                next = Some(next_offset);
                self.metrics()
                    .source_records(&self.name, &label, batch.len() as u64, dead);
                self.health.update(&self.name, |s| {
                    let p = s.partitions.entry(partition).or_default();
                    p.next_offset = Some(next_offset);
                    p.lag = p.high_watermark.map(|hw| (hw - next_offset).max(0));
                });
            }
            if taken.is_empty()
                && let Some(e) = failure.take()
            {
                return Err(e.into());
            }
        }
    }

    /// A batch's events, and a dead letter for every record refused in whole or in part.
    fn decode(&self, partition: u32, batch: &[SourceRecord]) -> (Vec<Event>, Vec<NewDeadLetter>) {
        match &self.binding {
            // The common case reads each document's fields straight from its text.
            TenantBinding::One(tenant) => {
                self.decode_as(partition, batch, |fields: EventFields| {
                    if let Some(named) = fields.tenant()
                        && named != tenant
                    {
                        return Err(FieldError::new(
                            "tenant",
                            format!(
                                "tenant: '{named}' is not the tenant of this topic ('{tenant}')"
                            ),
                        ));
                    }
                    fields
                        .into_event(tenant)
                        .map_err(|e| FieldError::from_message(e.to_string()))
                })
            }
            TenantBinding::Field { .. } => {
                self.decode_as(partition, batch, |document: Value| self.event_of(&document))
            }
        }
    }

    /// [`Source::decode`] with each document read as a `D` and made an event by `event_of`.
    fn decode_as<D: DeserializeOwned>(
        &self,
        partition: u32,
        batch: &[SourceRecord],
        event_of: impl Fn(D) -> Result<Event, FieldError>,
    ) -> (Vec<Event>, Vec<NewDeadLetter>) {
        let (times, now) = (self.runtime.event_time_range(), now_ms());
        let mut events = Vec::with_capacity(batch.len());
        let mut letters = Vec::new();
        for record in batch {
            let mut tenant_seen: Option<String> = None;
            let decoded = decode_record(
                &record.value,
                &self.config,
                |document| {
                    let event = event_of(document)?;
                    if tenant_seen.is_none() {
                        tenant_seen = Some(event.tenant.to_string());
                    }
                    times
                        .check(event.ts_ms, now)
                        .map_err(|e| FieldError::from_message(e.to_string()))?;
                    Ok(event)
                },
                |event| event.id.as_str(),
            );
            events.extend(decoded.events);
            if let Some(error) = decoded.refused {
                let tenant = match &self.binding {
                    TenantBinding::One(tenant) => Some(tenant.clone()),
                    TenantBinding::Field { .. } => tenant_seen,
                };
                letters.push(NewDeadLetter {
                    source: self.name.clone(),
                    tenant,
                    topic: self.config.topic.clone(),
                    partition,
                    offset: record.offset,
                    raw: dead_letter_bytes(&record.value),
                    raw_len: record.value.len() as u64,
                    error,
                });
            }
        }
        (events, letters)
    }

    /// One document of a topic carrying several tenants as an event of the tenant it names.
    fn event_of(&self, document: &Value) -> Result<Event, FieldError> {
        let tenant = self.binding.tenant_of(document)?;
        let event = match &self.binding {
            TenantBinding::Field { field, .. } if field != "tenant" => {
                let mut document = document.clone();
                if let Some(object) = document.as_object_mut() {
                    object.remove(field);
                }
                Event::from_json(&document, tenant)
            }
            _ => Event::from_json(document, tenant),
        };
        event.map_err(|e| FieldError::from_message(e.to_string()))
    }

    /// Measures every partition's lag against its high watermark until an error.
    async fn watch_lag(self, topic: Arc<FluvioTopic>) -> Result<(), RunError> {
        loop {
            let marks = topic.high_watermarks().await?;
            self.health.update(&self.name, |s| {
                for (partition, hw) in marks {
                    if let Some(p) = s.partitions.get_mut(&partition) {
                        p.high_watermark = Some(hw);
                        p.lag = p.next_offset.map(|n| (hw - n).max(0));
                    }
                }
                for (partition, p) in &s.partitions {
                    if let Some(lag) = p.lag {
                        self.runtime.metrics().set_source_lag(
                            &self.name,
                            &partition.to_string(),
                            lag,
                        );
                    }
                }
            });
            tokio::time::sleep(WATERMARK_INTERVAL).await;
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Forwards a partition's records from `from` into `tx`, in runs of those the stream has ready
/// (waiting while it is full: back-pressure), until the stream fails or the committer goes away.
///
/// Offsets must follow each other. The Fluvio consumer has been seen to skip the records of a
/// batch that straddles the end of a fetch (a run of offsets missing, about once per fetched
/// megabyte), so a jump makes the reader open the partition again at the first missing offset;
/// only when a fresh read jumps there too are the offsets really gone (deleted by retention),
/// and the source moves past them with a warning.
async fn read_partition(
    topic: Arc<FluvioTopic>,
    source: String,
    partition: u32,
    from: Option<i64>,
    tx: mpsc::Sender<Result<Vec<SourceRecord>, SourceError>>,
) -> Result<(), RunError> {
    let mut expected = from;
    let mut reread_at = None;
    'open: loop {
        let mut records = match topic.records(partition, expected).await {
            Ok(records) => Box::pin(records.ready_chunks(FORWARD_RECORDS)),
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return Ok(());
            }
        };
        loop {
            let items = match tokio::time::timeout(STALL_CHECK, records.next()).await {
                Ok(Some(items)) => items,
                Ok(None) => break,
                Err(_) => {
                    // Quiet for a while. A stream whose partition holds records past its position
                    // has stalled (the cluster stopped sending and nothing will wake it): open the
                    // partition again from the first record not yet read.
                    if let Some(next) = expected
                        && let Ok(Some(high)) = topic.high_watermark(partition).await
                        && high > next
                    {
                        tracing::warn!(%source, partition, next, high_watermark = high, "the partition's stream delivered nothing while records wait; opening it again");
                        continue 'open;
                    }
                    continue;
                }
            };
            let mut run = Vec::with_capacity(items.len());
            for item in items {
                let record = match item {
                    Ok(record) => record,
                    Err(e) => {
                        if forward(&tx, run).await {
                            let _ = tx.send(Err(e)).await;
                        }
                        return Ok(());
                    }
                };
                match expected {
                    Some(next) if record.offset < next => continue,
                    Some(next) if record.offset > next => {
                        if reread_at != Some(next) {
                            tracing::debug!(%source, partition, expected = next, got = record.offset, "offsets skipped; reading the partition again from the first missing one");
                            reread_at = Some(next);
                            if !forward(&tx, run).await {
                                return Ok(());
                            }
                            continue 'open;
                        }
                        tracing::warn!(%source, partition, from = next, to = record.offset, "records are gone from the partition (retention?); moving past them");
                    }
                    _ => {}
                }
                expected = Some(record.offset + 1);
                run.push(record);
            }
            if !forward(&tx, run).await {
                return Ok(());
            }
        }
        let _ = tx
            .send(Err(SourceError::Cluster {
                endpoint: String::new(),
                message: "the partition's stream ended".into(),
            }))
            .await;
        return Ok(());
    }
}

/// Sends a run of records to the committer, if there are any; whether the committer is still
/// there.
async fn forward(
    tx: &mpsc::Sender<Result<Vec<SourceRecord>, SourceError>>,
    run: Vec<SourceRecord>,
) -> bool {
    run.is_empty() || tx.send(Ok(run)).await.is_ok()
}
