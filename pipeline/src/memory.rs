//! Giving memory the process has freed back to the operating system at chosen points.
//!
//! The binary allocates with mimalloc (`src/main.rs`; version 3, built by `libmimalloc-sys`),
//! which returns a freed page to the OS only after its purge delay (1 s). That spares the hot
//! paths (ingest, matching), which free and allocate all the time, from giving pages back and
//! faulting them in again. But work that allocates tens of megabytes in short bursts on several
//! threads — a report's blocks, each a DataFusion query, one after another — does not re-use
//! all of what the burst before it freed, so the bursts' leftovers stack up within the delay,
//! by an amount that depends on which threads freed what. [`return_freed`] ends such a burst.

// mimalloc's `mi_collect(force)`: frees the calling thread's empty pages and, with `force`,
// purges every arena's free pages now instead of after the purge delay.
use libmimalloc_sys::mi_collect;

/// Returns the memory the process has freed to the OS now, rather than after mimalloc's purge
/// delay: the calling thread's empty pages, and the free pages of every thread's arena. Costs a
/// few system calls, and a page fault per 4 KiB when the memory is used again, so it belongs
/// after a large burst of work, never on a hot path.
///
/// When mimalloc is not the global allocator (the library's tests), mimalloc holds nothing and
/// this does nothing.
pub fn return_freed() {
    // SAFETY: mi_collect takes no pointers and may be called from any thread at any time; with
    // an uninitialized mimalloc it returns at once.
    unsafe { mi_collect(true) }
}
