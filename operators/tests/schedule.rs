//! Report schedules through the public API and through `Engine::step`: DST in both directions in
//! America/New_York and Europe/Berlin (exact UTC instants), presets, the day-of-month /
//! day-of-week rule, catch-up after an outage, edits, removal, restarts, run ids, many
//! schedules at once, and errors that name the field.

use chrono::{TimeZone, Utc};
use operators::schedule::parse_catch_up;
use operators::{
    CatchUp, DueRun, Engine, EngineConfig, Schedule, ScheduleChange, ScheduleSpec, StepInput,
    run_id,
};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// A UTC instant, epoch ms.
fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("valid UTC time")
        .timestamp_millis()
}

fn schedule(report: &str, cron: &str, zone: &str, catch_up: CatchUp, since_ms: i64) -> Schedule {
    schedule_v(report, 1, cron, zone, catch_up, since_ms)
}

fn schedule_v(
    report: &str,
    version: u64,
    cron: &str,
    zone: &str,
    catch_up: CatchUp,
    since_ms: i64,
) -> Schedule {
    let spec = ScheduleSpec {
        cron: cron.into(),
        timezone: zone.into(),
        catch_up,
    };
    Schedule::new("shop", report, version, &spec, since_ms).expect("schedule is valid")
}

fn upcoming(cron: &str, zone: &str, after_ms: i64, n: usize) -> Vec<i64> {
    schedule("r", cron, zone, CatchUp::Latest, 0).upcoming(after_ms, n)
}

fn engine(workers: usize) -> Engine {
    Engine::start(EngineConfig {
        workers,
        allowed_lateness_ms: MIN,
        cluster: None,
    })
    .expect("engine starts")
}

fn step(engine: &mut Engine, schedules: Vec<ScheduleChange>, clock_ms: i64) -> Vec<DueRun> {
    engine
        .step(StepInput {
            schedules,
            clock_ms: Some(clock_ms),
            ..Default::default()
        })
        .expect("step")
        .due_runs
}

fn slots(runs: &[DueRun]) -> Vec<i64> {
    runs.iter().map(|r| r.scheduled_ms).collect()
}

#[test]
fn new_york_spring_forward_runs_a_skipped_time_once_after_the_jump() {
    // 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00Z).
    assert_eq!(
        upcoming("30 2 * * *", "America/New_York", utc(2026, 3, 7, 0, 0), 3),
        vec![
            utc(2026, 3, 7, 7, 30), // 02:30 EST
            utc(2026, 3, 8, 7, 0),  // 02:30 does not exist: 03:00 EDT
            utc(2026, 3, 9, 6, 30), // 02:30 EDT
        ]
    );
    // Several skipped times run once, together with a slot at the jump itself.
    assert_eq!(
        upcoming(
            "0,30 2,3 * * *",
            "America/New_York",
            utc(2026, 3, 8, 5, 0),
            3
        ),
        vec![
            utc(2026, 3, 8, 7, 0),  // 02:00, 02:30 and 03:00 EDT
            utc(2026, 3, 8, 7, 30), // 03:30 EDT
            utc(2026, 3, 9, 6, 0),  // 02:00 EDT
        ]
    );
    // Times outside the gap are unaffected.
    assert_eq!(
        upcoming("30 1 * * *", "America/New_York", utc(2026, 3, 7, 12, 0), 2),
        vec![utc(2026, 3, 8, 6, 30), utc(2026, 3, 9, 5, 30)]
    );
}

#[test]
fn new_york_fall_back_runs_a_repeated_time_once_at_its_first_occurrence() {
    // 2026-11-01: 02:00 EDT goes back to 01:00 EST (06:00Z); 01:00-01:59 happens twice.
    assert_eq!(
        upcoming("30 1 * * *", "America/New_York", utc(2026, 10, 31, 0, 0), 3),
        vec![
            utc(2026, 10, 31, 5, 30), // 01:30 EDT
            utc(2026, 11, 1, 5, 30),  // 01:30 EDT, not again at 01:30 EST (06:30Z)
            utc(2026, 11, 2, 6, 30),  // 01:30 EST
        ]
    );
    // Asked from inside the second pass, the repeated slot does not come round again.
    assert_eq!(
        upcoming("30 1 * * *", "America/New_York", utc(2026, 11, 1, 6, 0), 1),
        vec![utc(2026, 11, 2, 6, 30)]
    );
    assert_eq!(
        upcoming(
            "30 2 * * *",
            "America/New_York",
            utc(2026, 10, 31, 12, 0),
            2
        ),
        vec![utc(2026, 11, 1, 7, 30), utc(2026, 11, 2, 7, 30)]
    );
}

#[test]
fn berlin_daily_slots_across_both_transitions() {
    // 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00Z).
    assert_eq!(
        upcoming("30 2 * * *", "Europe/Berlin", utc(2026, 3, 28, 0, 0), 3),
        vec![
            utc(2026, 3, 28, 1, 30), // 02:30 CET
            utc(2026, 3, 29, 1, 0),  // skipped: 03:00 CEST
            utc(2026, 3, 30, 0, 30), // 02:30 CEST
        ]
    );
    assert_eq!(
        upcoming("30 1 * * *", "Europe/Berlin", utc(2026, 3, 28, 12, 0), 2),
        vec![utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 23, 30)] // 01:30 CET, 01:30 CEST
    );
    // 2026-10-25: 03:00 CEST goes back to 02:00 CET (01:00Z); 02:00-02:59 happens twice.
    assert_eq!(
        upcoming("30 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 0, 0), 3),
        vec![
            utc(2026, 10, 24, 0, 30), // 02:30 CEST
            utc(2026, 10, 25, 0, 30), // 02:30 CEST, once (not at 01:30Z)
            utc(2026, 10, 26, 1, 30), // 02:30 CET
        ]
    );
    assert_eq!(
        upcoming("30 1 * * *", "Europe/Berlin", utc(2026, 10, 24, 12, 0), 2),
        vec![utc(2026, 10, 24, 23, 30), utc(2026, 10, 26, 0, 30)]
    );
}

#[test]
fn interval_schedules_keep_their_pace_in_real_time_across_both_transitions() {
    // Spring forward: 01:45 EST, then 03:00 EDT fifteen real minutes later.
    assert_eq!(
        upcoming(
            "*/15 * * * *",
            "America/New_York",
            utc(2026, 3, 8, 6, 30),
            3
        ),
        vec![
            utc(2026, 3, 8, 6, 45),
            utc(2026, 3, 8, 7, 0),
            utc(2026, 3, 8, 7, 15)
        ]
    );
    // Fall back: both passes of 01:00-01:45, every fifteen real minutes, then 02:00 EST.
    let runs = upcoming(
        "*/15 * * * *",
        "America/New_York",
        utc(2026, 11, 1, 4, 50),
        9,
    );
    let expected: Vec<i64> = (0..9)
        .map(|k| utc(2026, 11, 1, 5, 0) + k * 15 * MIN)
        .collect();
    assert_eq!(runs, expected);
    // The same in Berlin, where the repeated hour is 02:00-02:59.
    let runs = upcoming(
        "*/15 * * * *",
        "Europe/Berlin",
        utc(2026, 10, 24, 23, 50),
        9,
    );
    let expected: Vec<i64> = (0..9)
        .map(|k| utc(2026, 10, 25, 0, 0) + k * 15 * MIN)
        .collect();
    assert_eq!(runs, expected);
    // `@hourly` is an interval too: no run for the missing 02:00 EST.
    assert_eq!(
        upcoming("@hourly", "America/New_York", utc(2026, 3, 8, 6, 30), 2),
        vec![utc(2026, 3, 8, 7, 0), utc(2026, 3, 8, 8, 0)]
    );
}

#[test]
fn presets_are_their_patterns() {
    let after = utc(2026, 5, 13, 10, 17); // a Wednesday
    for (preset, pattern) in [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@DAILY", "0 0 * * *"),
    ] {
        assert_eq!(
            upcoming(preset, "Asia/Seoul", after, 3),
            upcoming(pattern, "Asia/Seoul", after, 3),
            "{preset}"
        );
    }
    assert_eq!(
        upcoming("@yearly", "UTC", after, 1),
        vec![utc(2027, 1, 1, 0, 0)]
    );
    assert_eq!(
        upcoming("@monthly", "UTC", after, 1),
        vec![utc(2026, 6, 1, 0, 0)]
    );
    assert_eq!(
        upcoming("@weekly", "UTC", after, 1),
        vec![utc(2026, 5, 17, 0, 0)]
    );
    assert_eq!(
        upcoming("@daily", "UTC", after, 1),
        vec![utc(2026, 5, 14, 0, 0)]
    );
    assert_eq!(
        upcoming("@hourly", "UTC", after, 1),
        vec![utc(2026, 5, 13, 11, 0)]
    );
    // Midnight in Seoul is 15:00Z the day before.
    assert_eq!(
        upcoming("@midnight", "Asia/Seoul", after, 1),
        vec![utc(2026, 5, 13, 15, 0)]
    );
}

#[test]
fn lists_ranges_steps_and_names() {
    let after = utc(2026, 1, 1, 0, 0); // a Thursday
    // Every Monday 09:00 Seoul (00:00Z).
    assert_eq!(
        upcoming("0 9 * * mon", "Asia/Seoul", after, 2),
        vec![utc(2026, 1, 5, 0, 0), utc(2026, 1, 12, 0, 0)]
    );
    assert_eq!(
        upcoming("0 9-17/4 * * MON-FRI", "UTC", after, 4),
        vec![
            utc(2026, 1, 1, 9, 0),
            utc(2026, 1, 1, 13, 0),
            utc(2026, 1, 1, 17, 0),
            utc(2026, 1, 2, 9, 0)
        ]
    );
    assert_eq!(
        upcoming("15,45 6 1 jan,jul *", "UTC", after, 3),
        vec![
            utc(2026, 1, 1, 6, 15),
            utc(2026, 1, 1, 6, 45),
            utc(2026, 7, 1, 6, 15)
        ]
    );
    // Sunday is 0 or 7.
    assert_eq!(
        upcoming("0 0 * * 7", "UTC", after, 2),
        upcoming("0 0 * * sun", "UTC", after, 2)
    );
    // A pattern that never matches has no upcoming slots.
    assert!(upcoming("0 0 30 2 *", "UTC", after, 3).is_empty());
}

#[test]
fn day_of_month_and_day_of_week_both_restricted_match_either() {
    // January 2026: Fridays are the 2nd, 9th, 16th, 23rd, 30th; the 13th is a Tuesday.
    let after = utc(2026, 1, 1, 0, 0);
    assert_eq!(
        upcoming("0 9 13 * fri", "UTC", after, 5),
        vec![
            utc(2026, 1, 2, 9, 0),
            utc(2026, 1, 9, 9, 0),
            utc(2026, 1, 13, 9, 0),
            utc(2026, 1, 16, 9, 0),
            utc(2026, 1, 23, 9, 0),
        ]
    );
    // With one of them `*`, only the other counts.
    assert_eq!(
        upcoming("0 9 13 * *", "UTC", after, 2),
        vec![utc(2026, 1, 13, 9, 0), utc(2026, 2, 13, 9, 0)]
    );
    assert_eq!(
        upcoming("0 9 * * fri", "UTC", after, 2),
        vec![utc(2026, 1, 2, 9, 0), utc(2026, 1, 9, 9, 0)]
    );
}

/// An hourly schedule created at `t0` under `catch_up`, then a clock that jumps three days.
fn after_outage(catch_up: CatchUp) -> (Vec<DueRun>, Vec<DueRun>) {
    let t0 = utc(2026, 6, 1, 0, 0);
    let mut e = engine(1);
    let sched = schedule("hourly", "0 * * * *", "UTC", catch_up, t0 + MIN);
    let first = step(&mut e, vec![ScheduleChange::Upsert(sched)], t0 + 30 * MIN);
    assert!(first.is_empty());
    let jumped = step(&mut e, vec![], t0 + 3 * DAY + 30 * MIN);
    let next = step(&mut e, vec![], t0 + 3 * DAY + HOUR + 10);
    (jumped, next)
}

#[test]
fn catch_up_after_an_outage() {
    let t0 = utc(2026, 6, 1, 0, 0);
    let resumed = vec![t0 + 3 * DAY + HOUR];

    let (jumped, next) = after_outage(CatchUp::Latest);
    assert_eq!(slots(&jumped), vec![t0 + 3 * DAY]);
    assert_eq!(slots(&next), resumed);

    let (jumped, next) = after_outage(CatchUp::All);
    let every: Vec<i64> = (1..=72).map(|h| t0 + h * HOUR).collect();
    assert_eq!(slots(&jumped), every);
    assert_eq!(slots(&next), resumed);

    let (jumped, next) = after_outage(CatchUp::None);
    assert!(jumped.is_empty(), "{jumped:?}");
    assert_eq!(slots(&next), resumed);
}

#[test]
fn catch_up_all_is_capped_at_the_most_recent_thousand() {
    let t0 = utc(2026, 6, 1, 0, 0);
    let sched = schedule("minutely", "* * * * *", "UTC", CatchUp::All, t0);
    let mut e = engine(1);
    step(&mut e, vec![ScheduleChange::Upsert(sched)], t0);
    let clock = t0 + 3 * DAY;
    let runs = step(&mut e, vec![], clock);
    assert_eq!(runs.len(), operators::schedule::MAX_CATCH_UP);
    assert_eq!(runs.last().map(|r| r.scheduled_ms), Some(clock));
    assert_eq!(runs[0].scheduled_ms, clock - 999 * MIN);
}

#[test]
fn on_time_runs_are_kept_by_every_policy() {
    let t0 = utc(2026, 6, 1, 8, 0);
    for catch_up in [CatchUp::Latest, CatchUp::All, CatchUp::None] {
        let mut e = engine(1);
        let sched = schedule("daily", "0 9 * * *", "UTC", catch_up, t0);
        step(&mut e, vec![ScheduleChange::Upsert(sched)], t0);
        // A clock reading a few seconds after the slot.
        let runs = step(&mut e, vec![], t0 + HOUR + 5_000);
        assert_eq!(slots(&runs), vec![t0 + HOUR], "{catch_up:?}");
        // Nothing twice.
        assert!(step(&mut e, vec![], t0 + 2 * HOUR).is_empty());
    }
}

#[test]
fn an_edited_schedule_follows_its_new_pattern_and_a_removed_one_stops() {
    let day = utc(2026, 6, 1, 0, 0);
    let mut e = engine(2);
    let daily = schedule("daily", "0 9 * * *", "UTC", CatchUp::Latest, day);
    assert!(step(&mut e, vec![ScheduleChange::Upsert(daily)], day).is_empty());
    assert_eq!(e.stats().schedules, 1);
    assert!(e.has_schedule("shop", "daily"));

    let runs = step(&mut e, vec![], day + 9 * HOUR);
    assert_eq!(slots(&runs), vec![day + 9 * HOUR]);
    assert_eq!(runs[0].version, 1);

    // Edited at 10:00 to run at 17:00, version 2: it applies at once.
    let edited = schedule_v(
        "daily",
        2,
        "0 17 * * *",
        "UTC",
        CatchUp::Latest,
        day + 10 * HOUR,
    );
    let runs = step(
        &mut e,
        vec![ScheduleChange::Upsert(edited)],
        day + 10 * HOUR,
    );
    assert!(runs.is_empty());
    let runs = step(&mut e, vec![], day + 17 * HOUR);
    assert_eq!(slots(&runs), vec![day + 17 * HOUR]);
    assert_eq!(runs[0].version, 2);
    // The old 09:00 slot no longer runs.
    let runs = step(&mut e, vec![], day + DAY + 9 * HOUR);
    assert!(runs.is_empty(), "{runs:?}");

    let runs = step(
        &mut e,
        vec![ScheduleChange::Remove {
            tenant: "shop".into(),
            report_id: "daily".into(),
        }],
        day + DAY + 12 * HOUR,
    );
    assert!(runs.is_empty());
    assert_eq!(e.stats().schedules, 0);
    assert!(step(&mut e, vec![], day + 5 * DAY).is_empty());
}

#[test]
fn a_change_applies_before_the_clock_of_the_same_step() {
    let day = utc(2026, 6, 1, 0, 0);
    let mut e = engine(1);
    let daily = schedule("daily", "0 9 * * *", "UTC", CatchUp::Latest, day);
    step(&mut e, vec![ScheduleChange::Upsert(daily)], day);
    // Removed in the step whose clock passes its slot: it does not run.
    let runs = step(
        &mut e,
        vec![ScheduleChange::Remove {
            tenant: "shop".into(),
            report_id: "daily".into(),
        }],
        day + 9 * HOUR,
    );
    assert!(runs.is_empty());
    // Added in the step whose clock passes its first slot: it runs.
    let hourly = schedule("hourly", "0 * * * *", "UTC", CatchUp::None, day + 9 * HOUR);
    let runs = step(
        &mut e,
        vec![ScheduleChange::Upsert(hourly)],
        day + 10 * HOUR,
    );
    assert_eq!(slots(&runs), vec![day + 10 * HOUR]);
}

#[test]
fn a_restarted_schedule_does_not_rerun_its_last_slot() {
    let day = utc(2026, 6, 1, 0, 0);
    let created = day - 30 * DAY;
    let slot = day + 9 * HOUR;

    let mut before = engine(1);
    let sched = schedule("daily", "0 9 * * *", "UTC", CatchUp::Latest, created);
    step(
        &mut before,
        vec![ScheduleChange::Upsert(sched.clone())],
        slot - MIN,
    );
    let runs = step(&mut before, vec![], slot);
    assert_eq!(slots(&runs), vec![slot]);
    drop(before);

    // After the restart the store hands back the last slot emitted.
    let mut after = engine(1);
    let restored = sched.clone().with_last_run(Some(slot));
    let runs = step(
        &mut after,
        vec![ScheduleChange::Upsert(restored)],
        slot + 30_000,
    );
    assert!(runs.is_empty(), "{runs:?}");
    let runs = step(&mut after, vec![], slot + DAY);
    assert_eq!(slots(&runs), vec![slot + DAY]);

    // Had the crash come before the store recorded it, the run comes again with the same id.
    let mut again = engine(1);
    let rerun = step(
        &mut again,
        vec![ScheduleChange::Upsert(sched)],
        slot + 30_000,
    );
    assert_eq!(rerun.len(), 1);
    assert_eq!(rerun[0].run_id, run_id("shop", "daily", slot));
}

#[test]
fn a_schedule_created_after_todays_slot_waits_for_tomorrow() {
    let day = utc(2026, 6, 1, 0, 0);
    for catch_up in [CatchUp::Latest, CatchUp::All, CatchUp::None] {
        let mut e = engine(1);
        let created = day + 9 * HOUR + 30 * MIN;
        let sched = schedule("daily", "0 9 * * *", "UTC", catch_up, created);
        assert_eq!(sched.upcoming(day, 1), vec![day + DAY + 9 * HOUR]);
        let runs = step(&mut e, vec![ScheduleChange::Upsert(sched)], created);
        assert!(runs.is_empty(), "{catch_up:?}: {runs:?}");
        let runs = step(&mut e, vec![], day + DAY + 9 * HOUR);
        assert_eq!(slots(&runs), vec![day + DAY + 9 * HOUR], "{catch_up:?}");
    }
}

#[test]
fn run_ids_depend_on_tenant_report_and_instant_only() {
    let at = utc(2026, 6, 1, 9, 0);
    let id = run_id("shop", "weekly", at);
    assert_eq!(id, run_id("shop", "weekly", at));
    assert_ne!(id, run_id("shop2", "weekly", at));
    assert_ne!(id, run_id("shop", "daily", at));
    assert_ne!(id, run_id("shop", "weekly", at + MIN));
    // Length-prefixed parts: moving a boundary changes the id.
    assert_ne!(run_id("sh", "opweekly", at), run_id("shop", "weekly", at));
    let hex = id.strip_prefix("run_").expect("run_ prefix");
    assert_eq!(hex.len(), 32);
    assert!(hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));

    // The engine emits the same id whatever the schedule's version or pattern.
    let day = utc(2026, 6, 1, 0, 0);
    let mut ids = Vec::new();
    for (version, cron) in [(1, "0 9 * * *"), (7, "0 9,21 * * *")] {
        let mut e = engine(1);
        let sched = schedule_v("weekly", version, cron, "UTC", CatchUp::Latest, day);
        step(&mut e, vec![ScheduleChange::Upsert(sched)], day);
        let runs = step(&mut e, vec![], at);
        assert_eq!(runs.len(), 1);
        ids.push(runs[0].run_id.clone());
    }
    assert_eq!(ids, vec![id.clone(), id]);
}

#[test]
fn a_hundred_thousand_schedules_each_run_once_in_the_step_that_passes_them() {
    const TENANTS: usize = 1_000;
    const PER_TENANT: usize = 100;
    let t0 = utc(2026, 6, 1, 0, 0);
    let zones = ["UTC", "Asia/Seoul", "Europe/Berlin", "America/New_York"];
    let mut e = engine(2);
    let mut changes = Vec::with_capacity(TENANTS * PER_TENANT);
    for t in 0..TENANTS {
        for r in 0..PER_TENANT {
            let i = t * PER_TENANT + r;
            let spec = ScheduleSpec {
                cron: format!("{} * * * *", i % 60),
                timezone: zones[i % zones.len()].into(),
                catch_up: CatchUp::Latest,
            };
            let sched =
                Schedule::new(&format!("t{t}"), &format!("r{r}"), 1, &spec, t0).expect("valid");
            changes.push(ScheduleChange::Upsert(sched));
        }
    }
    assert!(step(&mut e, changes, t0 - 1).is_empty());
    assert_eq!(e.stats().schedules, (TENANTS * PER_TENANT) as u64);

    // Two hours in steps of seven minutes (the last one short): every schedule's minute comes
    // round twice.
    let end = t0 + 2 * HOUR - 1;
    let mut seen = std::collections::HashSet::new();
    let mut clock = t0 - 1;
    let mut total = 0;
    while clock < end {
        let next = (clock + 7 * MIN).min(end);
        let runs = step(&mut e, vec![], next);
        assert!(
            runs.windows(2).all(|w| w[0].delivery_order(&w[1]).is_lt()),
            "due runs leave in order"
        );
        for run in runs {
            assert!(
                clock < run.scheduled_ms && run.scheduled_ms <= next,
                "{run:?} came in the step from {clock} to {next}"
            );
            assert_eq!(
                run.run_id,
                run_id(&run.tenant, &run.report_id, run.scheduled_ms)
            );
            assert!(
                seen.insert((run.tenant, run.report_id, run.scheduled_ms)),
                "a run came twice"
            );
            total += 1;
        }
        clock = next;
    }
    assert_eq!(total, 2 * TENANTS * PER_TENANT);
}

#[test]
fn invalid_input_names_the_field() {
    let spec = |cron: &str, zone: &str| ScheduleSpec {
        cron: cron.into(),
        timezone: zone.into(),
        catch_up: CatchUp::Latest,
    };
    let err = Schedule::new("shop", "r", 1, &spec("61 9 * * *", "UTC"), 0).expect_err("bad");
    assert_eq!(err.field, "schedule.cron");
    assert_eq!(
        err.to_string(),
        "schedule.cron: minute field `61` is out of range 0-59"
    );
    let err = Schedule::new("shop", "r", 1, &spec("0 9 * * funday", "UTC"), 0).expect_err("bad");
    assert_eq!(err.field, "schedule.cron");
    assert!(err.problem.contains("day-of-week field `funday`"), "{err}");
    let err = Schedule::new("shop", "r", 1, &spec("0 9 * *", "UTC"), 0).expect_err("bad");
    assert!(err.problem.contains("has 4 fields"), "{err}");

    let err = Schedule::new("shop", "r", 1, &spec("0 9 * * *", "Asia/Seul"), 0).expect_err("bad");
    assert_eq!(err.field, "schedule.timezone");
    assert!(
        err.problem.contains("`Asia/Seul` is not an IANA time zone"),
        "{err}"
    );

    let err = parse_catch_up("sometimes").expect_err("bad");
    assert_eq!(err.field, "schedule.catch_up");
    assert!(err.problem.contains("use latest, all or none"), "{err}");
    assert_eq!(parse_catch_up("ALL"), Ok(CatchUp::All));

    // As JSON: lowercase policy names, `latest` when absent, unknown ones refused.
    let parsed: ScheduleSpec =
        serde_json::from_str(r#"{"cron": "@daily", "timezone": "UTC"}"#).expect("parses");
    assert_eq!(parsed.catch_up, CatchUp::Latest);
    let parsed: ScheduleSpec =
        serde_json::from_str(r#"{"cron": "@daily", "timezone": "UTC", "catch_up": "none"}"#)
            .expect("parses");
    assert_eq!(parsed.catch_up, CatchUp::None);
    assert!(
        serde_json::from_str::<ScheduleSpec>(
            r#"{"cron": "@daily", "timezone": "UTC", "catch_up": "sometimes"}"#
        )
        .is_err()
    );
}
