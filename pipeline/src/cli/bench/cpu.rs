//! CPU time by thread, so a benchmark can say which of its threads did the work and how much
//! work it was.
//!
//! Wall-clock rates on a shared virtual machine move by a third from one run to the next as a
//! neighbour takes a physical core's share, and the CPU time of the same work moves with them.
//! What holds better is a ratio of two CPU times measured in the same run: the work under test
//! against a yardstick that does not change between the builds compared (in `bench match`, the
//! generation of its input), both slowed alike by whatever slowed the machine in that run.

use std::path::Path;

/// Every thread of this process with the CPU time it has used so far, from
/// `/proc/self/task/*/{comm,schedstat}`.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ThreadTimes {
    /// (thread id, name, CPU time in ns).
    threads: Vec<(u64, String, u64)>,
}

/// Which part of a benchmark a thread is, by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// A timely worker (`timely:work-N`).
    Worker,
    /// Timely's network threads of a cluster (`timely:send-N`, `timely:recv-N`).
    Network,
    /// Any other thread.
    Other,
}

impl Role {
    fn of(name: &str) -> Role {
        if name.starts_with("timely:work") {
            Role::Worker
        } else if name.starts_with("timely:send") || name.starts_with("timely:recv") {
            Role::Network
        } else {
            Role::Other
        }
    }
}

impl ThreadTimes {
    /// This process's threads now; empty where the kernel does not list them.
    pub(crate) fn now() -> ThreadTimes {
        ThreadTimes::read(Path::new("/proc/self/task"))
    }

    /// The threads listed in `dir`, as `/proc/PID/task` lists them.
    fn read(dir: &Path) -> ThreadTimes {
        let mut threads = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let Some(tid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let path = entry.path();
            // A thread that ends between the listing and the reads is passed over.
            let (Ok(name), Ok(stat)) = (
                std::fs::read_to_string(path.join("comm")),
                std::fs::read_to_string(path.join("schedstat")),
            ) else {
                continue;
            };
            // `schedstat`: time on a CPU (ns), time waiting for one (ns), timeslices.
            let Some(ns) = stat.split_whitespace().next().and_then(|n| n.parse().ok()) else {
                continue;
            };
            threads.push((tid, name.trim().to_string(), ns));
        }
        threads.sort_unstable();
        ThreadTimes { threads }
    }

    /// CPU time (ns) the threads of `role` used between `earlier` and these times, leaving out
    /// the thread `except` (the caller, which counts its own time more finely); a thread that
    /// started since counts from nothing.
    pub(crate) fn since(&self, earlier: &ThreadTimes, role: Role, except: Option<u64>) -> u64 {
        self.threads
            .iter()
            .filter(|(tid, name, _)| Some(*tid) != except && Role::of(name) == role)
            .map(|(tid, _, ns)| {
                let before = earlier
                    .threads
                    .binary_search_by_key(tid, |(t, _, _)| *t)
                    .map_or(0, |at| earlier.threads[at].2);
                ns.saturating_sub(before)
            })
            .sum()
    }
}

/// This thread's id, as `/proc/self/task` lists it.
pub(crate) fn this_thread_id() -> Option<u64> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// The CPU time this thread has used, ns (the thread's clock, exact to the call; `/proc` lags
/// a running thread by up to a scheduler tick).
pub(crate) fn this_thread_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` through the valid pointer it is given and
    // keeps nothing.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if status != 0 {
        return 0;
    }
    (now.tv_sec as u64) * 1_000_000_000 + now.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(dir: &Path, tid: u64, name: &str, ns: u64) {
        let at = dir.join(tid.to_string());
        std::fs::create_dir_all(&at).unwrap();
        std::fs::write(at.join("comm"), format!("{name}\n")).unwrap();
        std::fs::write(at.join("schedstat"), format!("{ns} 12345 67\n")).unwrap();
    }

    #[test]
    fn each_role_counts_its_own_threads_since_the_earlier_reading() {
        let dir = tempfile::tempdir().unwrap();
        task(dir.path(), 100, "tidemark", 5_000);
        task(dir.path(), 101, "timely:work-0", 1_000);
        task(dir.path(), 102, "timely:work-1", 2_000);
        task(dir.path(), 103, "timely:send-1", 300);
        let before = ThreadTimes::read(dir.path());
        task(dir.path(), 101, "timely:work-0", 9_000);
        task(dir.path(), 102, "timely:work-1", 2_500);
        task(dir.path(), 103, "timely:send-1", 700);
        task(dir.path(), 104, "timely:recv-1", 50);
        task(dir.path(), 100, "tidemark", 8_000);
        task(dir.path(), 105, "tokio-rt-worker", 40);
        // Not a thread: passed over.
        std::fs::create_dir_all(dir.path().join("self")).unwrap();
        let after = ThreadTimes::read(dir.path());
        assert_eq!(after.since(&before, Role::Worker, None), 8_000 + 500);
        // A thread that started since counts whole.
        assert_eq!(after.since(&before, Role::Network, None), 400 + 50);
        assert_eq!(after.since(&before, Role::Other, None), 3_000 + 40);
        assert_eq!(after.since(&before, Role::Other, Some(100)), 40);
    }

    #[test]
    fn this_threads_clock_counts_its_work() {
        let before = this_thread_ns();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert!(this_thread_ns() > before, "{x}");
        let me = this_thread_id().expect("this thread's id");
        let listed = ThreadTimes::now();
        assert!(listed.threads.iter().any(|(tid, _, _)| *tid == me));
    }
}
