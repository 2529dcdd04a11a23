//! A served cluster's bookkeeping: which epoch this process has made durable, and the watch
//! that stops the process when the cluster lost one of its processes.
//!
//! A timely cluster does not survive the loss of a process: the others' steps wait for it
//! forever. The policy is that the whole cluster restarts from its logs. A process whose step
//! waits longer than `cluster.stall_timeout` (or whose dataflow fails) concludes a peer is
//! gone and exits with status [`CLUSTER_LOST`], leaving its supervisor to start it again; the
//! restarted processes form the cluster anew (each waits for the others), replay their logs
//! after their checkpoints and re-derive the same notification ids, so nothing is lost and
//! nothing is enqueued twice.

use std::sync::atomic::{AtomicI64, AtomicU64};

/// What a process does before it leaves its cluster (finish the deliveries in flight).
type Leaving = Box<dyn FnOnce() + Send>;

use super::*;

/// The exit status of a process that left its cluster because the cluster lost a process
/// (`EX_TEMPFAIL`: start it again).
pub const CLUSTER_LOST: i32 = 75;

/// Shared by the engine thread (which steps) and the outbox thread (which makes steps durable).
#[derive(Default)]
pub(super) struct ClusterProgress {
    /// One more than the latest epoch whose output this process has made durable, every
    /// earlier one included; 0 while none is.
    durable: AtomicU64,
    /// When the step under way started, ms since the Unix epoch; 0 between steps.
    stepping_since: AtomicI64,
    /// Run once before the process leaves its cluster.
    leaving: Mutex<Option<Leaving>>,
}

impl ClusterProgress {
    /// The latest epoch this process has made durable, if any.
    pub(super) fn durable(&self) -> Option<u64> {
        self.durable.load(Ordering::Acquire).checked_sub(1)
    }

    /// Records that the output of `epoch` (and of every earlier epoch) is durable.
    pub(super) fn made_durable(&self, epoch: u64) {
        self.durable.fetch_max(epoch + 1, Ordering::AcqRel);
    }

    /// Sets what runs before the process leaves its cluster: the server stops its sender, so
    /// the deliveries in flight are recorded rather than sent again after the restart.
    pub(super) fn before_leaving(&self, leaving: Leaving) {
        if let Ok(mut slot) = self.leaving.lock() {
            *slot = Some(leaving);
        }
    }

    /// Stops the process because the cluster lost a process (see the module documentation),
    /// after what [`Self::before_leaving`] set.
    pub(super) fn leave(&self, why: &str) -> ! {
        tracing::error!(
            why,
            status = CLUSTER_LOST,
            "the dataflow cluster lost a process; stopping so that the whole cluster restarts \
             from its logs"
        );
        let leaving = self.leaving.lock().ok().and_then(|mut slot| slot.take());
        if let Some(leaving) = leaving {
            leaving();
        }
        eprintln!("tidemark: the dataflow cluster lost a process ({why}); exiting to restart");
        std::process::exit(CLUSTER_LOST);
    }

    /// Runs one step of `engine`, watched.
    pub(super) fn step(
        &self,
        engine: &mut Engine,
        input: StepInput,
    ) -> Result<StepOutput, operators::EngineError> {
        self.stepping_since
            .store(now_ms().max(1), Ordering::Release);
        let output = engine.step(input);
        self.stepping_since.store(0, Ordering::Release);
        output
    }

    /// Watches the steps on a thread of its own: one that waits longer than `timeout` for the
    /// other processes stops this process with [`CLUSTER_LOST`].
    pub(super) fn watch(self: &Arc<Self>, timeout: Duration) -> anyhow::Result<()> {
        let progress = self.clone();
        let limit = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        std::thread::Builder::new()
            .name("tidemark-cluster-watch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_millis(250));
                    let since = progress.stepping_since.load(Ordering::Acquire);
                    if since > 0 && now_ms() - since > limit {
                        progress.leave(&format!(
                            "a dataflow step has waited {} ms for the other processes",
                            now_ms() - since
                        ));
                    }
                }
            })?;
        Ok(())
    }
}
