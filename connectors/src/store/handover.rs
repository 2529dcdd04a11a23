//! Events handed over by the log's writer as it commits them, for a reader that follows the log
//! (the live tables' tail, the audience thread), so the reader need not read them back.
//!
//! The committer is a process's only writer of the log, so it knows the log's last position
//! before each commit; it offers each commit's events with that position. A reader takes them
//! when they follow on from what it has read and reads the log for anything else — events
//! committed before the hand-over began, offers dropped because the queue was full — so an
//! offer that is missing, late or dropped costs a read of the log, never an event.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use super::StoredEvent;

/// An event that knows its log position.
pub trait Logged {
    /// Its log position.
    fn seq(&self) -> u64;
}

impl Logged for StoredEvent {
    fn seq(&self) -> u64 {
        self.seq
    }
}

impl<T> Logged for (u64, T) {
    fn seq(&self) -> u64 {
        self.0
    }
}

/// One commit's events, as handed over.
#[derive(Debug, Clone)]
struct Offer<T> {
    /// The log's last position before these events: they are every event the log holds after
    /// it, up to the last one's position.
    after: u64,
    /// The events, in log order.
    events: Vec<T>,
}

/// The commits handed over and not yet taken, bounded: past `max_commits` commits or
/// `max_events` events the oldest are dropped (the reader reads those from the log), so a
/// reader that stops taking holds a bounded amount of memory.
#[derive(Debug)]
pub struct Handover<T> {
    offers: Mutex<VecDeque<Offer<T>>>,
    max_commits: usize,
    max_events: usize,
}

impl<T: Logged> Handover<T> {
    /// An empty queue holding at most `max_commits` commits and `max_events` events.
    pub fn new(max_commits: usize, max_events: usize) -> Handover<T> {
        Handover {
            offers: Mutex::new(VecDeque::new()),
            max_commits,
            max_events,
        }
    }

    fn offers(&self) -> MutexGuard<'_, VecDeque<Offer<T>>> {
        // The queue is only ever a cache of the log: a panic elsewhere leaves it usable.
        self.offers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues one commit's events (in log order), the log's last position before them being
    /// `after`; drops the oldest commits past the bounds.
    pub fn offer(&self, after: u64, events: Vec<T>) {
        if events.is_empty() {
            return;
        }
        let mut offers = self.offers();
        offers.push_back(Offer { after, events });
        let mut held: usize = offers.iter().map(|o| o.events.len()).sum();
        while offers.len() > self.max_commits || held > self.max_events {
            let Some(dropped) = offers.pop_front() else {
                break;
            };
            held -= dropped.events.len();
        }
    }

    /// The handed-over events right after position `after`, in log order (whole commits, until
    /// at least `enough` are taken); empty when none follow on from it, so the log must be read.
    /// Drops the offers the reader is past.
    pub fn take(&self, after: u64, enough: usize) -> Vec<T> {
        let mut offers = self.offers();
        let mut taken = Vec::new();
        let mut at = after;
        while let Some(front) = offers.front() {
            let last = front.events.last().map_or(front.after, Logged::seq);
            if last <= at {
                offers.pop_front();
                continue;
            }
            // The log may hold events after `at` that no offer carries: read the log.
            if front.after > at || taken.len() >= enough {
                break;
            }
            let Some(front) = offers.pop_front() else {
                break;
            };
            // A read of the log may have stopped inside this commit: take the rest of it.
            taken.extend(front.events.into_iter().filter(|e| e.seq() > at));
            at = last;
        }
        taken
    }

    /// Commits queued.
    pub fn commits(&self) -> usize {
        self.offers().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(queue: &Handover<(u64, ())>, after: u64, seqs: &[u64]) {
        queue.offer(after, seqs.iter().map(|&seq| (seq, ())).collect());
    }

    fn seqs(events: &[(u64, ())]) -> Vec<u64> {
        events.iter().map(|e| e.0).collect()
    }

    #[test]
    fn handed_over_events_are_taken_only_where_they_follow_on() {
        // Commits that follow one another (positions may skip, as a database sequence does).
        let queue = Handover::new(256, usize::MAX);
        offer(&queue, 10, &[11, 12]);
        offer(&queue, 12, &[14, 15]);
        assert_eq!(seqs(&queue.take(10, 100)), [11, 12, 14, 15]);
        assert_eq!(queue.commits(), 0);

        // A commit the reader never got (dropped, or made before the hand-over began): the log
        // must be read, and offers it has read past are dropped.
        offer(&queue, 20, &[21]);
        offer(&queue, 21, &[22, 23]);
        assert!(queue.take(15, 100).is_empty());
        assert_eq!(
            queue.commits(),
            2,
            "nothing is dropped that the reader still needs"
        );
        assert_eq!(seqs(&queue.take(21, 100)), [22, 23]);

        // A read of the log that stopped inside a commit takes the rest of it.
        offer(&queue, 30, &[31, 32, 33]);
        assert_eq!(seqs(&queue.take(32, 100)), [33]);

        // Offers the reader is already past are dropped without being taken.
        offer(&queue, 40, &[41]);
        offer(&queue, 41, &[42]);
        assert!(queue.take(42, 100).is_empty());
        assert_eq!(queue.commits(), 0);

        // Whole commits are taken until enough are.
        offer(&queue, 50, &[51, 52]);
        offer(&queue, 52, &[53]);
        offer(&queue, 53, &[54]);
        assert_eq!(seqs(&queue.take(50, 2)), [51, 52]);
        assert_eq!(seqs(&queue.take(52, 100)), [53, 54]);
    }

    #[test]
    fn a_reader_that_stops_taking_holds_a_bounded_queue_and_reads_the_log_instead() {
        let queue = Handover::new(3, 4);
        offer(&queue, 0, &[1, 2]);
        offer(&queue, 2, &[3, 4]);
        offer(&queue, 4, &[5]);
        // Five events against a bound of four: the oldest commit went.
        assert_eq!(queue.commits(), 2);
        // So events 1 and 2 come from the log; what follows them is handed over.
        assert!(queue.take(0, 100).is_empty());
        assert_eq!(seqs(&queue.take(2, 100)), [3, 4, 5]);
        for n in 10..20 {
            offer(&queue, n, &[n + 1]);
        }
        assert_eq!(queue.commits(), 3);
        // An empty commit is not queued.
        offer(&queue, 20, &[]);
        assert_eq!(queue.commits(), 3);
    }
}
