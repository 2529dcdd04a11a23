//! The report generator: takes due runs from the store (recorded there by the outbox thread
//! when the dataflow's schedules emit them, or by `POST /v1/reports/{id}/run`), generates each
//! and records it with its notifications in one transaction ([`Reports::finish_run`]).
//!
//! A crash anywhere between "due" and "finished" leaves the run due: it is generated again on
//! start, with the same notification ids, so nothing is enqueued twice; once finished, the
//! sender delivers each (recipient, channel) on its own, retried alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use connectors::store::{FinishedRun, ReportRun, RunStatus, Store, StoreResult};
use tokio::sync::{Notify, watch};

use super::definition::ReportSpec;
use super::run::{self, GeneratedRun, ReportContext, RunRef};
use crate::ingest::now_ms;
use crate::metrics::Metrics;

/// How many due runs one pass takes.
const BATCH: usize = 32;

/// How often the generator looks for due runs when nobody wakes it.
const POLL: Duration = Duration::from_secs(1);

/// Generates due report runs.
pub struct ReportGenerator {
    store: Arc<dyn Store>,
    context: ReportContext,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
}

impl ReportGenerator {
    /// A generator over `store`, woken through `wake` when runs become due.
    pub fn new(
        store: Arc<dyn Store>,
        context: ReportContext,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            context,
            metrics,
            wake,
        }
    }

    /// What generating needs (for previews).
    pub fn context(&self) -> &ReportContext {
        &self.context
    }

    /// Wakes the generator: a run became due.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Generates due runs until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let store = self.store.clone();
            let due = tokio::task::spawn_blocking(move || store.due_runs(BATCH)).await;
            let due = match due {
                Ok(Ok(due)) => due,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot read due report runs; retrying");
                    Vec::new()
                }
                Err(e) => {
                    tracing::error!(error = %e, "reading due report runs panicked");
                    Vec::new()
                }
            };
            let idle = due.is_empty();
            for due in due {
                if *stop.borrow() {
                    return;
                }
                // On a task of its own, so that a panic in one run fails that run only.
                let (this, copy) = (self.clone(), due.clone());
                let outcome = tokio::spawn(async move { this.generate_run(&copy).await }).await;
                let failed = match outcome {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => {
                        tracing::warn!(run = due.run_id, error = %e, "report run not recorded; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        None
                    }
                    Err(e) => Some(format!("generation failed unexpectedly: {e}")),
                };
                if let Some(reason) = failed {
                    tracing::error!(run = due.run_id, reason, "report run failed");
                    let _ = self
                        .record(&due, RunStatus::Failed, Some(reason), 0, Vec::new())
                        .await;
                }
            }
            if idle {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }

    /// Generates one due run and records it (a store error leaves it due, to try again).
    pub async fn generate_run(&self, due: &ReportRun) -> StoreResult<()> {
        let started = Instant::now();
        let store = self.store.clone();
        let (tenant, report_id) = (due.tenant.clone(), due.report_id.clone());
        let (report, tenant_row) = tokio::task::spawn_blocking(move || {
            Ok::<_, connectors::store::StoreError>((
                store.get_report(&tenant, &report_id)?,
                store.get_tenant(&tenant)?,
            ))
        })
        .await
        .map_err(|e| connectors::store::StoreError::Corrupt(e.to_string()))??;
        let Some(report) = report else {
            return self
                .record(
                    due,
                    RunStatus::Failed,
                    Some("the report was deleted".into()),
                    0,
                    Vec::new(),
                )
                .await;
        };
        let spec = match ReportSpec::from_json(report.body.as_bytes()) {
            Ok(spec) => spec,
            Err(e) => {
                let reason = format!("the stored definition no longer reads: {e}");
                return self
                    .record(due, RunStatus::Failed, Some(reason), 0, Vec::new())
                    .await;
            }
        };
        let tenant_tz = tenant_row.map_or_else(|| "UTC".to_string(), |t| t.time_zone);
        let Ok(tz) = spec.timezone(&tenant_tz).parse::<Tz>() else {
            let reason = format!("unknown time zone '{}'", spec.timezone(&tenant_tz));
            return self
                .record(due, RunStatus::Failed, Some(reason), 0, Vec::new())
                .await;
        };
        let at = DateTime::<Utc>::from_timestamp_millis(due.scheduled_ms).unwrap_or_default();
        let run = RunRef {
            tenant: &due.tenant,
            report_id: &due.report_id,
            version: report.version,
            run_id: &due.run_id,
            at,
            tz,
            trigger: &due.trigger,
        };
        let generated = run::generate(&self.context, &spec, &run).await;
        let store = self.store.clone();
        let tenant = due.tenant.clone();
        let destinations = tokio::task::spawn_blocking(move || store.list_destinations(&tenant))
            .await
            .map_err(|e| connectors::store::StoreError::Corrupt(e.to_string()))??;
        let notifications = run::notifications(&run, &spec, &generated, &destinations, now_ms());
        let elapsed = started.elapsed();
        self.metrics
            .report_generation_seconds
            .observe(elapsed.as_secs_f64());
        Metrics::inc(
            &self.metrics.report_runs,
            "status",
            generated.status.as_str(),
            1,
        );
        tracing::info!(
            tenant = due.tenant,
            report = due.report_id,
            run = due.run_id,
            status = generated.status.as_str(),
            notifications = notifications.len(),
            elapsed_ms = elapsed.as_millis() as u64,
            "report run generated"
        );
        let GeneratedRun { status, errors, .. } = generated;
        let error = (!errors.is_empty()).then(|| errors.join("; "));
        self.record(
            due,
            status,
            error,
            elapsed.as_millis() as u64,
            notifications,
        )
        .await
    }

    async fn record(
        &self,
        due: &ReportRun,
        status: RunStatus,
        error: Option<String>,
        generation_ms: u64,
        notifications: Vec<connectors::store::NewNotification>,
    ) -> StoreResult<()> {
        let finished = FinishedRun {
            tenant: due.tenant.clone(),
            run_id: due.run_id.clone(),
            status,
            generated_at_ms: now_ms(),
            generation_ms,
            error,
        };
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.finish_run(&finished, &notifications))
            .await
            .map_err(|e| connectors::store::StoreError::Corrupt(e.to_string()))??;
        Ok(())
    }
}
