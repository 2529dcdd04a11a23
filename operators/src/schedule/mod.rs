//! Report schedules: a tenant's BI report on a cron pattern in its time zone ("every Monday 09:00
//! Asia/Seoul"), and the due runs they produce as the wall clock passes their slots, each with a
//! deterministic run id.
//!
//! The tenant writes a [`ScheduleSpec`] (cron text, IANA zone, catch-up policy);
//! [`Schedule::new`] checks it into a [`Schedule`], which flows through the dataflow as a
//! [`crate::ScheduleChange`]. Each worker keeps its tenants' schedules in a [`ScheduleIndex`],
//! ordered by next slot, and the engine's clock reading pops what is due as [`DueRun`]s.
//!
//! # Cron
//!
//! Five fields, `minute hour day-of-month month day-of-week`, each `*`, a value, a range `a-b`, a
//! step `*/n` or `a-b/n`, or a list of those; months `jan`-`dec` and weekdays `sun`-`sat` by
//! name (any case), Sunday as `0` or `7`; presets `@yearly` = `@annually` (`0 0 1 1 *`),
//! `@monthly` (`0 0 1 * *`), `@weekly` (`0 0 * * 0`), `@daily` = `@midnight` (`0 0 * * *`) and
//! `@hourly` (`0 * * * *`). When both day-of-month and day-of-week are restricted (neither is a
//! lone `*`), a day matches if either does (Vixie cron's rule): `0 9 1 * mon` runs on the 1st
//! and on every Monday. An error names the field, the value and what would do.
//!
//! # Daylight saving time
//!
//! Slots are wall-clock times in the schedule's zone. Where the zone's clock jumps, the pattern
//! is read in one of two ways, as Vixie cron does:
//!
//! - **Wall-clock schedules**, whose minute and hour fields contain no `*` (`30 2 * * *`,
//!   `0 9 * * mon`, `0,30 1 * * *`, `@daily`): they name times of day.
//!   - A time skipped by spring-forward runs once, at the first instant after the jump: daily
//!     02:30 in America/New_York runs at 03:00 EDT (07:00Z) on the spring-forward day. Several
//!     skipped times (`0,30 2 * * *`) and a slot at the jump itself share that one run.
//!   - A time repeated by fall-back runs once, at its first occurrence: daily 01:30 in
//!     America/New_York runs at 01:30 EDT (05:30Z), not again at 01:30 EST.
//! - **Interval schedules**, with `*` in the minute or hour field (`*/15 * * * *`, `@hourly`,
//!   `5 * * * *`): they mean "this often", and keep their pace in real time.
//!   - Across spring-forward the skipped times do not exist and are not run: `*/15` runs at
//!     01:45 EST and next at 03:00 EDT, fifteen real minutes later.
//!   - Across fall-back the repeated hour runs twice, once per pass: `*/15` runs at 01:00,
//!     01:15, 01:30, 01:45 EDT, then 01:00 … 01:45 EST, then 02:00 EST — every fifteen real
//!     minutes, each run with its own instant and so its own run id.
//!
//! # Catch-up
//!
//! A slot is *on time* when the clock reading that passes it is at most [`ON_TIME_MS`] later;
//! older due slots were *missed* (the engine was down, or the clock jumped). [`CatchUp`] decides
//! what runs: `latest` the on-time slots, or else the most recent missed one; `all` every due
//! slot, at most [`MAX_CATCH_UP`] (the most recent ones; older ones are skipped); `none` only
//! on-time slots, so the schedule resumes at its next future slot.
//!
//! Slots before [`Schedule::since_ms`] (when the schedule was created or changed) never run,
//! nor do slots at or before [`Schedule::last_run_ms`] (the latest slot already emitted, read
//! back from the store on restart).

mod cron;
mod index;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

pub use cron::Cron;
pub use index::ScheduleIndex;

/// How much later than its slot a clock reading may pass it for the run to count as on time.
pub const ON_TIME_MS: i64 = 60_000;

/// Most missed slots one schedule runs at once under [`CatchUp::All`].
pub const MAX_CATCH_UP: usize = 1_000;

/// What runs after the engine was down or the clock jumped past several slots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Only the most recent missed slot (none when an on-time slot came due with it).
    #[default]
    Latest,
    /// Every missed slot, the most recent [`MAX_CATCH_UP`] of them.
    All,
    /// No missed slot: the schedule goes on with its next future slot.
    None,
}

/// A schedule as the tenant writes it, before it is checked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Cron pattern, e.g. `0 9 * * mon`.
    pub cron: String,
    /// IANA time zone, e.g. `Asia/Seoul`.
    pub timezone: String,
    /// What runs after downtime.
    #[serde(default)]
    pub catch_up: CatchUp,
}

/// What was wrong with a schedule: the field and the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ScheduleError {
    /// The field: `schedule.cron`, `schedule.timezone` or `schedule.catch_up`.
    pub field: String,
    /// What is wrong and what would do.
    pub problem: String,
}

pub(crate) fn schedule_err(field: &str, problem: impl Into<String>) -> ScheduleError {
    ScheduleError {
        field: field.to_string(),
        problem: problem.into(),
    }
}

/// Reads a catch-up policy as written (`latest`, `all` or `none`); the error names
/// `schedule.catch_up`.
pub fn parse_catch_up(text: &str) -> Result<CatchUp, ScheduleError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "latest" => Ok(CatchUp::Latest),
        "all" => Ok(CatchUp::All),
        "none" => Ok(CatchUp::None),
        _ => Err(schedule_err(
            "schedule.catch_up",
            format!("`{text}` is not a catch-up policy; use latest, all or none"),
        )),
    }
}

/// A checked report schedule, as it flows through the dataflow. Between the processes of a
/// cluster it travels as its pattern and zone name, checked again on arrival.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "ScheduleWire", try_from = "ScheduleWire")]
pub struct Schedule {
    /// Owning tenant.
    pub tenant: String,
    /// The report, unique per tenant.
    pub report_id: String,
    /// Incremented on every change; carried by its runs.
    pub version: u64,
    /// When it runs.
    pub cron: Cron,
    /// The zone its wall-clock times are in.
    pub timezone: Tz,
    /// What runs after downtime.
    pub catch_up: CatchUp,
    /// The latest slot already emitted, epoch ms (from the store on restart): it and earlier
    /// slots never run again.
    pub last_run_ms: Option<i64>,
    /// When the schedule was created or changed, epoch ms: slots before it never run.
    pub since_ms: i64,
}

/// A [`Schedule`] as it is serialized.
#[derive(Clone, Serialize, Deserialize)]
struct ScheduleWire {
    tenant: String,
    report_id: String,
    version: u64,
    spec: ScheduleSpec,
    last_run_ms: Option<i64>,
    since_ms: i64,
}

impl From<Schedule> for ScheduleWire {
    fn from(schedule: Schedule) -> ScheduleWire {
        ScheduleWire {
            spec: ScheduleSpec {
                cron: schedule.cron.as_str().to_string(),
                timezone: schedule.timezone.name().to_string(),
                catch_up: schedule.catch_up,
            },
            tenant: schedule.tenant,
            report_id: schedule.report_id,
            version: schedule.version,
            last_run_ms: schedule.last_run_ms,
            since_ms: schedule.since_ms,
        }
    }
}

impl TryFrom<ScheduleWire> for Schedule {
    type Error = ScheduleError;

    fn try_from(wire: ScheduleWire) -> Result<Schedule, ScheduleError> {
        Ok(Schedule::new(
            &wire.tenant,
            &wire.report_id,
            wire.version,
            &wire.spec,
            wire.since_ms,
        )?
        .with_last_run(wire.last_run_ms))
    }
}

impl Schedule {
    /// Checks a tenant's spec: the cron pattern and the IANA zone name. Errors name the field
    /// (`schedule.cron`, `schedule.timezone`) and what would do.
    pub fn new(
        tenant: &str,
        report_id: &str,
        version: u64,
        spec: &ScheduleSpec,
        since_ms: i64,
    ) -> Result<Schedule, ScheduleError> {
        let cron = Cron::parse(&spec.cron)?;
        let name = spec.timezone.trim();
        let timezone: Tz = name.parse().map_err(|_| {
            schedule_err(
                "schedule.timezone",
                format!(
                    "`{name}` is not an IANA time zone; use a name such as Asia/Seoul, \
                     Europe/Berlin or UTC"
                ),
            )
        })?;
        Ok(Schedule {
            tenant: tenant.to_string(),
            report_id: report_id.to_string(),
            version,
            cron,
            timezone,
            catch_up: spec.catch_up,
            last_run_ms: None,
            since_ms,
        })
    }

    /// The schedule with the latest slot already emitted, as read back from the store.
    pub fn with_last_run(mut self, last_run_ms: Option<i64>) -> Schedule {
        self.last_run_ms = last_run_ms;
        self
    }

    /// The next `n` slots strictly after `after_ms` (and not before [`Schedule::since_ms`]),
    /// epoch ms, for the API to show; fewer when the pattern runs out (e.g. `0 0 30 2 *`).
    pub fn upcoming(&self, after_ms: i64, n: usize) -> Vec<i64> {
        let mut at = after_ms.max(self.since_ms.saturating_sub(1));
        let mut slots = Vec::with_capacity(n.min(MAX_CATCH_UP));
        while slots.len() < n {
            let Some(next) = self.next_slot(at) else {
                break;
            };
            slots.push(next);
            at = next;
        }
        slots
    }

    /// The first slot strictly after `after_ms`.
    pub(crate) fn next_slot(&self, after_ms: i64) -> Option<i64> {
        self.cron.next_after(after_ms, self.timezone)
    }

    /// The earliest slot that may still run: after the last run and not before `since_ms`,
    /// expressed as the instant slots must come strictly after.
    pub(crate) fn cursor_ms(&self) -> i64 {
        let since = self.since_ms.saturating_sub(1);
        self.last_run_ms.map_or(since, |last| last.max(since))
    }

    /// The run of this schedule at `scheduled_ms`.
    pub(crate) fn run_at(&self, scheduled_ms: i64) -> DueRun {
        DueRun {
            tenant: self.tenant.clone(),
            report_id: self.report_id.clone(),
            version: self.version,
            scheduled_ms,
            run_id: run_id(&self.tenant, &self.report_id, scheduled_ms),
        }
    }
}

/// A report run that came due.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DueRun {
    /// Owning tenant.
    pub tenant: String,
    /// The report.
    pub report_id: String,
    /// The schedule version that produced it.
    pub version: u64,
    /// The slot, epoch ms.
    pub scheduled_ms: i64,
    /// Deterministic id ([`run_id`]): the same tenant, report and slot always give the same id,
    /// so a run emitted again after a crash adds nothing new downstream.
    pub run_id: String,
}

impl DueRun {
    /// The order due runs leave the engine in: by slot, tenant, report.
    pub fn delivery_order(&self, other: &DueRun) -> std::cmp::Ordering {
        (self.scheduled_ms, &self.tenant, &self.report_id).cmp(&(
            other.scheduled_ms,
            &other.tenant,
            &other.report_id,
        ))
    }
}

/// The run id of a report's slot: `run_` and 32 hex digits of SHA-256 over the tenant, the
/// report id and the slot (nothing else, so a schedule's version or pattern does not change it).
pub fn run_id(tenant: &str, report_id: &str, scheduled_ms: i64) -> String {
    crate::intent::hashed_id("run_", &[tenant, report_id, &scheduled_ms.to_string()])
}
