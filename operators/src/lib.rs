//! Tidemark's dataflow: which alert rules match, windowed aggregates and their FIRING/RESOLVED
//! state, and which scheduled reports are due, maintained incrementally by one timely operator
//! per worker (see [`dataflow`]).
//!
//! Each tenant belongs to one worker of the whole cluster, chosen by a stable hash of its id.
//! [`engine::Engine`] splits every epoch's input into one share per owning worker, and timely's
//! `Exchange` pact takes each share to its owner: between the threads of a process as it is, to
//! another process of a cluster in the compact form of [`exchange`].
//!
//! Pure: no I/O and no async runtime. The pipeline feeds [`engine::Engine`] batches of events,
//! rule and schedule changes and clock readings, one epoch at a time, and gets back notification
//! [`intent::Intent`]s and report [`schedule::DueRun`]s, both with deterministic ids.

pub mod audience;
mod codec;
pub mod dataflow;
pub mod engine;
pub mod event;
pub mod exchange;
mod index;
pub mod intent;
pub mod predicate;
mod retained;
pub mod rule;
pub mod schedule;
pub mod state;
pub mod time;
pub mod value;
mod window;

/// The hash maps of the per-event path use foldhash (seeded per process): SipHash, the standard
/// library's default, showed as several percent of matching time in profiles.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// See [`HashMap`].
pub(crate) type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

pub use engine::{
    ClusterConfig, Engine, EngineConfig, EngineError, RuleChange, ScheduleChange, StepInput,
    StepOutput,
};
pub use event::{Event, EventDocument, EventError, EventFields, EventTimeRange};
pub use intent::{Intent, IntentKind};
pub use rule::{CompiledRule, Rule, RuleError, RuleMeta, RuleSpec};
pub use schedule::{
    CatchUp, Cron, DueRun, Schedule, ScheduleError, ScheduleIndex, ScheduleSpec, run_id,
};
pub use state::OpenAlert;
pub use value::{AttrJson, AttrValue, Attrs, Num, SmolStr};

/// One channel per worker thread of a timely computation: the caller keeps the senders, and each
/// worker takes its receiver once, by its index among this process's workers.
pub(crate) struct WorkerChannels<T> {
    receivers: std::sync::Mutex<Vec<Option<std::sync::mpsc::Receiver<T>>>>,
}

impl<T> WorkerChannels<T> {
    /// The senders, in worker order, and the receivers for the workers to take.
    pub(crate) fn new(workers: usize) -> (Vec<std::sync::mpsc::Sender<T>>, Self) {
        let (senders, receivers) = (0..workers)
            .map(|_| {
                let (tx, rx) = std::sync::mpsc::channel();
                (tx, Some(rx))
            })
            .unzip();
        let receivers = std::sync::Mutex::new(receivers);
        (senders, WorkerChannels { receivers })
    }

    /// Worker `index`'s receiver; `None` once taken.
    pub(crate) fn take(&self, index: usize) -> Option<std::sync::mpsc::Receiver<T>> {
        let mut receivers = self.receivers.lock().ok()?;
        receivers.get_mut(index)?.take()
    }
}

/// Asks the CPU to start loading the cache line at `at`; a hint with no effect on behaviour,
/// whatever the address.
#[inline]
pub(crate) fn prefetch<T>(at: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch never faults, reads nothing into the program and changes no
        // memory, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(at.cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// Asks the CPU to start loading every cache line of `value`; a hint, like [`prefetch`].
#[inline]
pub(crate) fn prefetch_value<T>(value: &T) {
    prefetch_lines((value as *const T).cast(), std::mem::size_of::<T>());
}

/// Asks the CPU to start loading the first `max_bytes` of `items` (all of it if shorter); a hint,
/// like [`prefetch`].
#[inline]
pub(crate) fn prefetch_slice<T>(items: &[T], max_bytes: usize) {
    prefetch_lines(
        items.as_ptr().cast::<u8>(),
        std::mem::size_of_val(items).min(max_bytes),
    );
}

/// Asks the CPU to start loading every cache line of the `bytes` bytes at `start`; a hint, like
/// [`prefetch`].
#[inline]
fn prefetch_lines(start: *const u8, bytes: usize) {
    const LINE: usize = 64;
    let offset = start.addr() % LINE;
    for line in (0..offset + bytes).step_by(LINE) {
        prefetch(start.wrapping_sub(offset).wrapping_add(line));
    }
}
