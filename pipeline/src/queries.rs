//! Where dashboard queries run (`/v1/query`, `/v1/sql`, pgwire): a tokio runtime of their own
//! with a few threads (`dashboard.limits.query_threads`) and large stacks, so that heavy
//! queries share those threads among themselves and never the threads of ingest, the dataflow,
//! delivery or the API, and deep plans recurse far below the stack's end.
//!
//! Admission is in two steps: a tenant's own slots (`max_running_per_tenant`), then the shared
//! ones (`max_running`). Both are first-come first-served, so a tenant holds at most its own
//! slots' worth of places in the shared queue and one tenant's burst cannot push everyone else's
//! queries to the back. A tenant with too many queries waiting is refused
//! (`max_queued_per_tenant`, [`QueryRefusal::TenantBusy`]), as is anyone when the shared queue is
//! full (`max_queued`, [`QueryRefusal::Busy`]).
//!
//! `dashboard.query_timeout` bounds the wait and the run together. When it passes, the query's
//! task is aborted on the query runtime (DataFusion's streams yield to tokio regularly, so it
//! stops within moments and its slots and memory are freed), not merely abandoned.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::config::QueryLimitsSettings;

/// Why a query did not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum QueryRefusal {
    /// Too many queries wait over all tenants.
    #[error(
        "server busy: {queued} dashboard queries are already waiting (dashboard.limits.max_queued); try again shortly"
    )]
    Busy {
        /// The limit.
        queued: usize,
    },
    /// This tenant has too many queries waiting.
    #[error(
        "too many queries: this tenant already has {queued} dashboard queries waiting behind its {running} running ones (dashboard.limits.max_queued_per_tenant); wait for them to finish"
    )]
    TenantBusy {
        /// The tenant's waiting limit.
        queued: usize,
        /// The tenant's running limit.
        running: usize,
    },
    /// The query waited and ran longer than `dashboard.query_timeout`; it was stopped.
    #[error(
        "the query ran longer than {0:?} (dashboard.query_timeout) and was cancelled; narrow its range or filters"
    )]
    Timeout(Duration),
    /// The query's task ended without an answer (it panicked, or the runtime is shutting down).
    #[error("the query failed unexpectedly: {0}")]
    Failed(String),
}

/// The dashboard queries' runtime and admission: cheap to clone.
#[derive(Clone)]
pub struct QueryRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    /// `Some` until dropped; shut down in the background, since the last handle may be dropped
    /// inside another runtime.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    running: Arc<Semaphore>,
    queued: AtomicUsize,
    tenants: Mutex<HashMap<String, Arc<TenantSlots>>>,
    max_running_per_tenant: usize,
    max_queued: usize,
    max_queued_per_tenant: usize,
    timeout: Duration,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// One tenant's running slots and how many of its queries wait.
struct TenantSlots {
    running: Arc<Semaphore>,
    queued: AtomicUsize,
}

/// The slots a running query holds; released when its task ends.
struct Admitted {
    _tenant: OwnedSemaphorePermit,
    _shared: OwnedSemaphorePermit,
}

/// Counts a query as waiting, in its tenant's count and the shared one, until dropped.
struct Waiting<'a> {
    shared: &'a AtomicUsize,
    tenant: &'a AtomicUsize,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.shared.fetch_sub(1, Ordering::AcqRel);
        self.tenant.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Aborts the query's task when the caller stops waiting for it (timeout, or a client that
/// went away and dropped the request).
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl QueryRuntime {
    /// Starts the query threads.
    pub fn start(limits: &QueryLimitsSettings, timeout: Duration) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(limits.query_threads)
            // File reads go through blocking threads; a few are plenty for local files.
            .max_blocking_threads(limits.query_threads.saturating_mul(4).max(4))
            .thread_name("tidemark-query")
            .thread_stack_size(sql::limits::QUERY_STACK_BYTES)
            .enable_all()
            .build()?;
        Ok(QueryRuntime {
            inner: Arc::new(Inner {
                handle: runtime.handle().clone(),
                runtime: Some(runtime),
                running: Arc::new(Semaphore::new(limits.max_running)),
                queued: AtomicUsize::new(0),
                tenants: Mutex::new(HashMap::new()),
                max_running_per_tenant: limits.max_running_per_tenant,
                max_queued: limits.max_queued,
                max_queued_per_tenant: limits.max_queued_per_tenant,
                timeout,
            }),
        })
    }

    /// The longest a query may wait and run.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Runs `query` for `tenant` on the query runtime once admitted, within the timeout.
    /// Dropping the returned future (a client gone) aborts the query too.
    pub async fn run<T: Send + 'static>(
        &self,
        tenant: &str,
        query: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, QueryRefusal> {
        let timeout = self.inner.timeout;
        let deadline = Instant::now() + timeout;
        let admitted = tokio::time::timeout_at(deadline, self.admit(tenant))
            .await
            .map_err(|_| QueryRefusal::Timeout(timeout))??;
        let task = self.inner.handle.spawn(async move {
            // The slots are held until the query's task ends, not just until the caller stops
            // waiting for it.
            let _admitted = admitted;
            query.await
        });
        let _abort = AbortOnDrop(task.abort_handle());
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) if e.is_panic() => {
                tracing::error!(tenant, "a dashboard query panicked");
                Err(QueryRefusal::Failed("the query's task panicked".into()))
            }
            Ok(Err(e)) => Err(QueryRefusal::Failed(e.to_string())),
            Err(_) => {
                tracing::info!(tenant, ?timeout, "dashboard query cancelled at its timeout");
                Err(QueryRefusal::Timeout(timeout))
            }
        }
    }

    fn tenant_slots(&self, tenant: &str) -> Arc<TenantSlots> {
        let mut tenants = self
            .inner
            .tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tenants
            .entry(tenant.to_string())
            .or_insert_with(|| {
                Arc::new(TenantSlots {
                    running: Arc::new(Semaphore::new(self.inner.max_running_per_tenant)),
                    queued: AtomicUsize::new(0),
                })
            })
            .clone()
    }

    async fn admit(&self, tenant: &str) -> Result<Admitted, QueryRefusal> {
        let inner = &self.inner;
        let slots = self.tenant_slots(tenant);
        let tenant_queued = slots.queued.fetch_add(1, Ordering::AcqRel) + 1;
        let shared_queued = inner.queued.fetch_add(1, Ordering::AcqRel) + 1;
        let waiting = Waiting {
            shared: &inner.queued,
            tenant: &slots.queued,
        };
        // A query admitted at once counts as waiting for a moment, hence the free slots on top
        // of the waiting limits.
        let running = inner.max_running_per_tenant;
        if tenant_queued > inner.max_queued_per_tenant + slots.running.available_permits() {
            return Err(QueryRefusal::TenantBusy {
                queued: inner.max_queued_per_tenant,
                running,
            });
        }
        if shared_queued > inner.max_queued + inner.running.available_permits() {
            return Err(QueryRefusal::Busy {
                queued: inner.max_queued,
            });
        }
        let closed = |_| QueryRefusal::Failed("the query runtime is shutting down".into());
        let own = Arc::clone(&slots.running)
            .acquire_owned()
            .await
            .map_err(closed)?;
        let shared = Arc::clone(&inner.running)
            .acquire_owned()
            .await
            .map_err(closed)?;
        drop(waiting);
        Ok(Admitted {
            _tenant: own,
            _shared: shared,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(
        running: usize,
        per_tenant: usize,
        queued: usize,
        per_tenant_queued: usize,
    ) -> QueryLimitsSettings {
        QueryLimitsSettings {
            query_threads: 1,
            max_running: running,
            max_running_per_tenant: per_tenant,
            max_queued: queued,
            max_queued_per_tenant: per_tenant_queued,
            ..QueryLimitsSettings::default()
        }
    }

    #[tokio::test]
    async fn a_tenant_over_its_limits_is_refused_and_others_still_run() {
        let queries = QueryRuntime::start(&limits(4, 1, 16, 1), Duration::from_secs(5)).unwrap();
        let (release, wait) = tokio::sync::watch::channel(false);
        let blocked = |mut wait: tokio::sync::watch::Receiver<bool>| async move {
            let _ = wait.wait_for(|r| *r).await;
        };
        // One running and one waiting for tenant a: the third is refused.
        let first = tokio::spawn({
            let (q, w) = (queries.clone(), wait.clone());
            async move { q.run("a", blocked(w)).await }
        });
        let second = tokio::spawn({
            let (q, w) = (queries.clone(), wait.clone());
            async move { q.run("a", blocked(w)).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let third = queries.run("a", async {}).await;
        assert!(
            matches!(third, Err(QueryRefusal::TenantBusy { .. })),
            "{third:?}"
        );
        // Tenant b is not held up by a.
        assert_eq!(queries.run("b", async { 7 }).await.unwrap(), 7);
        release.send(true).unwrap();
        first.await.unwrap().unwrap();
        second.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn the_timeout_aborts_the_query() {
        let queries = QueryRuntime::start(&limits(2, 2, 4, 4), Duration::from_millis(200)).unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        let flag = done.clone();
        let answer = queries
            .run("a", async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                flag.store(1, Ordering::Release);
            })
            .await;
        assert!(
            matches!(answer, Err(QueryRefusal::Timeout(_))),
            "{answer:?}"
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            done.load(Ordering::Acquire),
            0,
            "the query ran on after its timeout"
        );
        // Its slots are free again.
        assert!(queries.run("a", async {}).await.is_ok());
        assert!(queries.run("a", async {}).await.is_ok());
    }
}
