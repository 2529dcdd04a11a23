//! The schedule index: a worker's schedules ordered by next slot, so adding, changing or
//! removing one costs O(log n) and a clock reading visits only the schedules that are due.

use std::collections::{BTreeSet, VecDeque};

use super::{CatchUp, DueRun, MAX_CATCH_UP, ON_TIME_MS, Schedule};
use crate::HashMap;

/// A schedule and where it stands.
#[derive(Debug)]
struct Entry {
    schedule: Schedule,
    /// Slots at or before this instant were emitted or skipped.
    cursor_ms: i64,
    /// Its next slot, as keyed in [`ScheduleIndex::due`]; `None` when the pattern never
    /// matches again.
    next_ms: Option<i64>,
}

/// Schedules by (tenant, report id), and their next slots in order.
#[derive(Debug, Default)]
pub struct ScheduleIndex {
    entries: HashMap<(String, String), Entry>,
    /// (next slot, tenant, report id) of every schedule with one.
    due: BTreeSet<(i64, String, String)>,
}

impl ScheduleIndex {
    /// An empty index.
    pub fn new() -> ScheduleIndex {
        ScheduleIndex::default()
    }

    /// Schedules held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no schedule is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The earliest next slot of any schedule held: when the clock next has work here.
    pub fn first_due_ms(&self) -> Option<i64> {
        self.due.first().map(|(at, _, _)| *at)
    }

    /// The next slot of the schedule `(tenant, report_id)`, if it has one.
    pub fn next_due_ms(&self, tenant: &str, report_id: &str) -> Option<i64> {
        self.entries
            .get(&(tenant.to_string(), report_id.to_string()))
            .and_then(|e| e.next_ms)
    }

    /// Adds a schedule, or replaces the one with its tenant and report id; the new pattern, zone
    /// and version apply from the next clock reading on. A slot the replaced schedule already
    /// emitted is not run again.
    pub fn upsert(&mut self, schedule: Schedule) {
        let key = (schedule.tenant.clone(), schedule.report_id.clone());
        let mut cursor_ms = schedule.cursor_ms();
        if let Some(old) = self.entries.remove(&key) {
            self.unqueue(&key, old.next_ms);
            cursor_ms = cursor_ms.max(old.cursor_ms);
        }
        let next_ms = schedule.next_slot(cursor_ms);
        if let Some(next) = next_ms {
            self.due.insert((next, key.0.clone(), key.1.clone()));
        }
        self.entries.insert(
            key,
            Entry {
                schedule,
                cursor_ms,
                next_ms,
            },
        );
    }

    /// Removes a schedule; it runs no more. Returns whether it was held.
    pub fn remove(&mut self, tenant: &str, report_id: &str) -> bool {
        let key = (tenant.to_string(), report_id.to_string());
        match self.entries.remove(&key) {
            Some(old) => {
                self.unqueue(&key, old.next_ms);
                true
            }
            None => false,
        }
    }

    fn unqueue(&mut self, key: &(String, String), next_ms: Option<i64>) {
        if let Some(next) = next_ms {
            self.due.remove(&(next, key.0.clone(), key.1.clone()));
        }
    }

    /// The runs that came due by `clock_ms` (the wall clock), by slot, tenant and report, each
    /// schedule's under its catch-up policy; every schedule that ran moves on to its next slot
    /// after the clock.
    pub fn advance(&mut self, clock_ms: i64) -> Vec<DueRun> {
        let mut runs = Vec::new();
        while let Some(first) = self.due.first() {
            if first.0 > clock_ms {
                break;
            }
            let Some((next, tenant, report_id)) = self.due.pop_first() else {
                break;
            };
            let key = (tenant, report_id);
            let Some(entry) = self.entries.get_mut(&key) else {
                continue;
            };
            let schedule = &entry.schedule;
            let (slots, after_clock) = due_slots(schedule, next, clock_ms);
            for slot in slots {
                runs.push(schedule.run_at(slot));
            }
            entry.cursor_ms = entry.cursor_ms.max(clock_ms);
            entry.next_ms = after_clock;
            if let Some(next) = entry.next_ms {
                self.due.insert((next, key.0, key.1));
            }
        }
        runs.sort_by(DueRun::delivery_order);
        runs
    }
}

/// The slots of `schedule` from `first` (its first due slot) to `clock_ms` that run under its
/// catch-up policy, in order, and its first slot after the clock.
fn due_slots(schedule: &Schedule, first: i64, clock_ms: i64) -> (Vec<i64>, Option<i64>) {
    let on_time_from = first.max(clock_ms.saturating_sub(ON_TIME_MS));
    match schedule.catch_up {
        CatchUp::All => latest_slots(schedule, first, clock_ms, MAX_CATCH_UP),
        CatchUp::Latest => {
            let on_time = latest_slots(schedule, on_time_from, clock_ms, MAX_CATCH_UP);
            if on_time.0.is_empty() {
                latest_slots(schedule, first, clock_ms, 1)
            } else {
                on_time
            }
        }
        CatchUp::None => latest_slots(schedule, on_time_from, clock_ms, MAX_CATCH_UP),
    }
}

/// The most recent `max` slots of `schedule` in `[first, clock_ms]`, in order, and the first
/// slot after `clock_ms`. The walk starts near the clock and reaches back only as far as it
/// must, so a long outage costs about `max` steps, not one per missed slot.
fn latest_slots(
    schedule: &Schedule,
    first: i64,
    clock_ms: i64,
    max: usize,
) -> (Vec<i64>, Option<i64>) {
    let before_first = first.saturating_sub(1);
    // Slots are at least a minute apart (bar a fold's second pass), so a window of `max`
    // minutes (and at least a quarter hour, which covers a usual late clock reading in one
    // walk) holds at most about `max` of them; sparser patterns widen it.
    let mut window = 60_000i64.saturating_mul(max.max(15) as i64);
    loop {
        let from = clock_ms.saturating_sub(window).max(before_first);
        let mut slots: VecDeque<i64> = VecDeque::with_capacity(max.min(64));
        let mut after_clock = schedule.next_slot(from);
        while let Some(next) = after_clock {
            if next > clock_ms {
                break;
            }
            if slots.len() == max {
                slots.pop_front();
            }
            slots.push_back(next);
            after_clock = schedule.next_slot(next);
        }
        if slots.len() >= max || from <= before_first {
            return (slots.into(), after_clock);
        }
        window = window.saturating_mul(2);
    }
}
