//! Group commit: every waiting ingest request (up to `engine.max_batch` events) is appended in
//! one transaction, and each producer is answered once its events are durable.
//!
//! The committer is the process's only writer of the log (the data directory's lock, or the
//! engine lease on a shared database, keeps it so), so it knows the log's end before each
//! commit: it hands each commit's new events, with that end, to whoever asked for them, which
//! then need not read them back — as stored ([`Runtime::feed_committed_to`]; the live tables'
//! tail) or as decoded ([`Runtime::feed_events_to`]; the audience thread).

use connectors::store::StoredEvent;

use super::*;

/// Takes each commit's new events as stored: the log's last position before them, and the
/// events in log order.
pub type CommitFeed = Box<dyn Fn(u64, Vec<StoredEvent>) + Send + Sync>;

/// Takes each commit's new events as decoded: the log's last position before them, and each
/// event with its position, in log order; lent, so a feed copies only what it keeps (the
/// events go on to the engine).
pub type EventFeed = Box<dyn Fn(u64, &[(u64, &Event)]) + Send + Sync>;

/// Who takes each commit's new events; each is set at most once, and a feed not set costs
/// nothing.
#[derive(Default)]
pub(super) struct Feeds {
    pub(super) stored: std::sync::OnceLock<CommitFeed>,
    pub(super) decoded: std::sync::OnceLock<EventFeed>,
}

pub(super) struct IngestRequest {
    pub(super) events: Vec<NewEvent>,
    pub(super) parsed: Vec<Event>,
    /// Where a source got to with these events, and what it refused (empty over HTTP).
    pub(super) progress: SourceProgress,
    pub(super) reply: oneshot::Sender<Result<Vec<AppendOutcome>, IngestError>>,
}

pub(super) struct Committed {
    pub(super) events: Vec<Event>,
    pub(super) max_seq: u64,
    pub(super) accepted_at: Instant,
}

pub(super) fn commit_loop(
    mut requests: mpsc::Receiver<IngestRequest>,
    batches: std_mpsc::SyncSender<Committed>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    max_batch: usize,
    feeds: Arc<Feeds>,
) {
    // The log's last position, while known (re-read after a failed commit).
    let mut log_end = store.last_event_seq().ok();
    while let Some(first) = requests.blocking_recv() {
        let mut waiting = vec![first];
        let mut count = waiting[0].events.len();
        while count < max_batch {
            match requests.try_recv() {
                Ok(request) => {
                    count += request.events.len();
                    waiting.push(request);
                }
                Err(_) => break,
            }
        }
        let sizes: Vec<usize> = waiting.iter().map(|r| r.events.len()).collect();
        let all: Vec<NewEvent> = waiting
            .iter_mut()
            .flat_map(|r| std::mem::take(&mut r.events))
            .collect();
        let mut progress = SourceProgress::default();
        for request in &mut waiting {
            progress.merge(std::mem::take(&mut request.progress));
        }
        let started = Instant::now();
        let result = store.append_from_source(&all, &progress);
        metrics
            .ingest_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        let sent = all.len();
        match result {
            Ok(outcomes) => {
                let accepted_at = Instant::now();
                let appended_end = outcomes
                    .iter()
                    .filter_map(|o| match o {
                        AppendOutcome::Appended { seq } => Some(*seq),
                        AppendOutcome::Duplicate { .. } => None,
                    })
                    .max();
                // Where the log ended before this commit, when it appended something.
                let after = log_end.filter(|_| appended_end.is_some());
                if let (Some(feed), Some(after)) = (feeds.stored.get(), after) {
                    feed(after, appended(all, &outcomes));
                }
                if let Some(appended_end) = appended_end {
                    log_end = log_end.map(|end| end.max(appended_end));
                }
                let decoded_feed = feeds.decoded.get().filter(|_| after.is_some());
                let mut fresh = Vec::new();
                let mut fresh_seqs = Vec::new();
                let mut max_seq = 0;
                let mut offset = 0;
                for (request, n) in waiting.into_iter().zip(sizes) {
                    let Some(mine) = outcomes.get(offset..offset + n).map(<[_]>::to_vec) else {
                        let _ = request.reply.send(Err(IngestError::Incomplete {
                            sent,
                            answered: outcomes.len(),
                        }));
                        continue;
                    };
                    offset += n;
                    for (outcome, event) in mine.iter().zip(request.parsed) {
                        max_seq = max_seq.max(outcome.seq());
                        match outcome {
                            AppendOutcome::Appended { seq } => {
                                metrics.events_accepted.inc();
                                if decoded_feed.is_some() {
                                    fresh_seqs.push(*seq);
                                }
                                fresh.push(event);
                            }
                            AppendOutcome::Duplicate { .. } => {
                                metrics.events_duplicate.inc();
                            }
                        }
                    }
                    let _ = request.reply.send(Ok(mine));
                }
                if let (Some(feed), Some(after)) = (decoded_feed, after) {
                    let mut decoded: Vec<(u64, &Event)> =
                        fresh_seqs.iter().copied().zip(&fresh).collect();
                    decoded.sort_unstable_by_key(|(seq, _)| *seq);
                    feed(after, &decoded);
                }
                if batches
                    .send(Committed {
                        events: fresh,
                        max_seq,
                        accepted_at,
                    })
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = sent, "group commit failed");
                log_end = store.last_event_seq().ok();
                // Every producer of the batch gets the one cause.
                let cause = Arc::new(e);
                for request in waiting {
                    let _ = request.reply.send(Err(IngestError::Store(cause.clone())));
                }
            }
        }
    }
}

/// The events of a commit that the log appended, as stored, in log order.
fn appended(all: Vec<NewEvent>, outcomes: &[AppendOutcome]) -> Vec<StoredEvent> {
    let received_at_ms = now_ms();
    let mut events: Vec<StoredEvent> = all
        .into_iter()
        .zip(outcomes)
        .filter_map(|(event, outcome)| match outcome {
            AppendOutcome::Appended { seq } => Some(StoredEvent {
                seq: *seq,
                id: event.id,
                tenant: event.tenant,
                event_type: event.event_type,
                ts_ms: event.ts_ms,
                body: event.body,
                received_at_ms,
            }),
            AppendOutcome::Duplicate { .. } => None,
        })
        .collect();
    events.sort_unstable_by_key(|e| e.seq);
    events
}
