//! Group commit: every waiting ingest request (up to `engine.max_batch` events) is appended in
//! one transaction, and each producer is answered once its events are durable.

use super::*;

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
) {
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
        match result {
            Ok(outcomes) => {
                let accepted_at = Instant::now();
                let mut fresh = Vec::new();
                let mut max_seq = 0;
                let mut offset = 0;
                for (request, n) in waiting.into_iter().zip(sizes) {
                    let Some(mine) = outcomes.get(offset..offset + n).map(<[_]>::to_vec) else {
                        let _ = request.reply.send(Err(IngestError::Incomplete {
                            sent: all.len(),
                            answered: outcomes.len(),
                        }));
                        continue;
                    };
                    offset += n;
                    for (outcome, event) in mine.iter().zip(request.parsed) {
                        max_seq = max_seq.max(outcome.seq());
                        match outcome {
                            AppendOutcome::Appended { .. } => {
                                metrics.events_accepted.inc();
                                fresh.push(event);
                            }
                            AppendOutcome::Duplicate { .. } => {
                                metrics.events_duplicate.inc();
                            }
                        }
                    }
                    let _ = request.reply.send(Ok(mine));
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
                tracing::error!(error = %e, events = all.len(), "group commit failed");
                // Every producer of the batch gets the one cause.
                let cause = Arc::new(e);
                for request in waiting {
                    let _ = request.reply.send(Err(IngestError::Store(cause.clone())));
                }
            }
        }
    }
}
