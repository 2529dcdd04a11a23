//! Cron patterns: the five standard fields checked field by field (so an error names the field,
//! the value and the range that would do), matched on the local wall clock, and turned into
//! instants in the schedule's time zone under the DST rules of [`super`].
//!
//! The matching is written here rather than taken from `croner`, the maintained cron crate:
//! croner keeps a byte per possible year (1 to 5000) in every parsed pattern and sets them one by
//! one, about 5 KB and tens of microseconds per schedule, where a worker holds hundreds of
//! thousands of them; five bit sets do the same for the five standard fields in 24 bytes.

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike,
};
use chrono_tz::Tz;

use super::{ScheduleError, schedule_err};

/// The presets and the patterns they stand for.
const PRESETS: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// One of the five fields: its name in messages, its range and the names it accepts.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names for `min`, `min + 1`, … (months and weekdays).
    names: &'static [&'static str],
    hint: &'static str,
}

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
        hint: "0-59",
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
        hint: "0-23",
    },
    Field {
        name: "day-of-month",
        min: 1,
        max: 31,
        names: &[],
        hint: "1-31",
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: &MONTHS,
        hint: "1-12 or jan-dec",
    },
    Field {
        name: "day-of-week",
        min: 0,
        max: 7,
        names: &WEEKDAYS,
        hint: "0-7 (0 and 7 are Sunday) or sun-sat",
    },
];

/// Longest a search for the next slot may walk, in matched wall-clock minutes: far more than
/// any time-zone gap or fold holds, so it only ends a search that cannot succeed.
const SEARCH_LIMIT: usize = 100_000;

/// A checked cron pattern.
#[derive(Clone)]
pub struct Cron {
    /// The pattern as written (trimmed).
    text: String,
    fields: Fields,
    /// Whether the pattern names its minutes and hours (no `*` in either field): such a
    /// schedule runs at wall-clock times, so a skipped time runs after the gap and a repeated
    /// one runs once. Otherwise it runs at an interval and keeps that interval in real time.
    wall_clock: bool,
}

impl std::fmt::Debug for Cron {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Cron").field(&self.text).finish()
    }
}

impl PartialEq for Cron {
    fn eq(&self, other: &Cron) -> bool {
        self.text == other.text
    }
}

impl Eq for Cron {}

impl Cron {
    /// Checks a pattern: five fields (minute hour day-of-month month day-of-week) of `*`,
    /// values, `a-b` ranges, `*/n` and `a-b/n` steps and `,` lists, month and weekday names
    /// (`jan`, `mon`, any case), or one of `@yearly @annually @monthly @weekly @daily
    /// @midnight @hourly`. The error names `schedule.cron`, the field and the value.
    pub fn parse(text: &str) -> Result<Cron, ScheduleError> {
        let text = text.trim();
        let expanded = if text.starts_with('@') {
            let preset = PRESETS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(text))
                .ok_or_else(|| {
                    cron_err(format!(
                        "`{text}` is not a preset; use one of @yearly, @annually, @monthly, \
                         @weekly, @daily, @midnight, @hourly or five fields"
                    ))
                })?;
            preset.1.to_string()
        } else {
            text.to_string()
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(cron_err(format!(
                "`{text}` has {} fields; write five: minute hour day-of-month month day-of-week \
                 (e.g. `0 9 * * mon`)",
                fields.len()
            )));
        }
        let mut bits = [0u64; 5];
        for ((field, value), bits) in FIELDS.iter().zip(&fields).zip(&mut bits) {
            *bits = check_field(field, value)?;
        }
        let wall_clock = !fields[0].contains('*') && !fields[1].contains('*');
        // Sunday is 0 and 7.
        let weekdays = (bits[4] | bits[4] >> 7) & 0x7f;
        let fields = Fields {
            minutes: bits[0],
            hours: bits[1] as u32,
            days: bits[2] as u32,
            months: bits[3] as u16,
            weekdays: weekdays as u8,
            either_day: fields[2] != "*" && fields[4] != "*",
        };
        Ok(Cron {
            text: text.to_string(),
            fields,
            wall_clock,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern runs at named wall-clock times (no `*` in its minute or hour field);
    /// see the DST rules in [`super`].
    pub fn is_wall_clock(&self) -> bool {
        self.wall_clock
    }

    /// The first slot strictly after `after_ms` in `tz`, epoch ms; `None` when the pattern
    /// never matches again (e.g. `0 0 30 2 *`) or the instant is out of range.
    pub fn next_after(&self, after_ms: i64, tz: Tz) -> Option<i64> {
        let after = DateTime::from_timestamp_millis(after_ms)?;
        let local = after.with_timezone(&tz);
        // Instants after `after` have earlier wall-clock times only when the clock goes back
        // within the next day: start the walk that much earlier.
        let offset_now = local.offset().fix().local_minus_utc();
        let offset_later = (after + chrono::Duration::days(1))
            .with_timezone(&tz)
            .offset()
            .fix()
            .local_minus_utc();
        let back = i64::from((offset_now - offset_later).max(0));
        let mut from = local.naive_local() - chrono::Duration::seconds(back);
        let mut inclusive = true;
        let mut best: Option<i64> = None;
        for _ in 0..SEARCH_LIMIT {
            let wall = self.fields.next_match(from, inclusive)?;
            inclusive = false;
            from = wall;
            // `earliest` never decreases as the wall clock advances, and every instant of a
            // later wall-clock time is at or after it: once it passes the best, stop.
            let (earliest, candidates) = match tz.from_local_datetime(&wall) {
                LocalResult::Single(at) => (at.timestamp_millis(), [Some(at), None]),
                LocalResult::Ambiguous(first, second) => {
                    let second = (!self.wall_clock).then_some(second);
                    (first.timestamp_millis(), [Some(first), second])
                }
                LocalResult::None => {
                    let end = gap_end(&wall, tz)?;
                    let run = self.wall_clock.then_some(end);
                    (end.timestamp_millis(), [run, None])
                }
            };
            for at in candidates.into_iter().flatten() {
                let ms = at.timestamp_millis();
                if ms > after_ms && best.is_none_or(|b| ms < b) {
                    best = Some(ms);
                }
            }
            if earliest > after_ms && best.is_some_and(|b| earliest >= b) {
                return best;
            }
        }
        best
    }
}

/// The values a pattern matches, one bit per value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fields {
    minutes: u64,
    hours: u32,
    /// Days of the month, bits 1-31.
    days: u32,
    /// Bits 1-12.
    months: u16,
    /// Bits 0 (Sunday) to 6.
    weekdays: u8,
    /// Both day fields are restricted, so a day matches if either does (Vixie cron's rule).
    either_day: bool,
}

/// Longest run of days without a match that a pattern which matches at all can have: `29 2`
/// on a Monday recurs only every few years, and 2096-02-29 is followed by 2104-02-29.
const SEARCH_DAYS: u32 = 366 * 9;

impl Fields {
    fn day_matches(&self, date: NaiveDate) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let dom = self.days & (1 << date.day()) != 0;
        let dow = self.weekdays & (1 << date.weekday().num_days_from_sunday()) != 0;
        if self.either_day {
            dom || dow
        } else {
            dom && dow
        }
    }

    /// The first wall-clock minute the pattern matches at or after `from` (after it when not
    /// `inclusive`).
    fn next_match(&self, from: NaiveDateTime, inclusive: bool) -> Option<NaiveDateTime> {
        let whole = from.with_second(0)?.with_nanosecond(0)?;
        let start = if inclusive && whole == from {
            whole
        } else {
            whole + chrono::Duration::minutes(1)
        };
        let mut date = start.date();
        let mut minute_of_day = start.hour() * 60 + start.minute();
        for _ in 0..SEARCH_DAYS {
            if self.day_matches(date) {
                for hour in minute_of_day / 60..24 {
                    if self.hours & (1 << hour) == 0 {
                        continue;
                    }
                    let first = if hour == minute_of_day / 60 {
                        minute_of_day % 60
                    } else {
                        0
                    };
                    let left = self.minutes >> first;
                    if left != 0 {
                        let minute = first + left.trailing_zeros();
                        return date.and_hms_opt(hour, minute, 0);
                    }
                }
            }
            date = date.succ_opt()?;
            minute_of_day = 0;
        }
        None
    }
}

/// The first instant after the DST gap that skips `wall`: where the clock jumps forward.
fn gap_end(wall: &NaiveDateTime, tz: Tz) -> Option<DateTime<Tz>> {
    // As a UTC instant, `wall` less a day lies before the jump and `wall` plus a day after it
    // (no zone is a day off UTC); the local time passes `wall` exactly at the jump.
    let target = wall.and_utc().timestamp();
    let mut lo = target - 86_400;
    let mut hi = target + 86_400;
    let local = |s: i64| -> Option<NaiveDateTime> {
        Some(
            DateTime::from_timestamp(s, 0)?
                .with_timezone(&tz)
                .naive_local(),
        )
    };
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if local(mid)? > *wall {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(DateTime::from_timestamp(hi, 0)?.with_timezone(&tz))
}

fn cron_err(problem: String) -> ScheduleError {
    schedule_err("schedule.cron", problem)
}

/// Checks one field and returns the set of values it matches, bit `v` for value `v`.
fn check_field(field: &Field, text: &str) -> Result<u64, ScheduleError> {
    let problem = |what: String| {
        cron_err(format!(
            "{} field {what}; use {}, `*`, a range `a-b`, a step `*/n` or `a-b/n`, or a list \
             `a,b`",
            field.name, field.hint
        ))
    };
    let mut bits = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(problem(format!("`{text}` has an empty list item")));
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        let (from, to) = if range == "*" {
            (field.min, field.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(field, a)?, value(field, b)?);
            if a > b {
                return Err(problem(format!(
                    "`{item}` is a range that runs backwards; write the smaller value first"
                )));
            }
            (a, b)
        } else {
            if step.is_some() {
                return Err(problem(format!(
                    "`{item}` steps from a single value; write `{range}-{}/n` or `*/n`",
                    field.max
                )));
            }
            let v = value(field, range)?;
            (v, v)
        };
        let step = match step {
            None => 1,
            Some(step) => match step.parse::<u32>() {
                Ok(n) if (1..=field.max).contains(&n) => n,
                _ => {
                    return Err(cron_err(format!(
                        "{} field step `{step}` in `{item}` is not a whole number from 1 to {}",
                        field.name, field.max
                    )));
                }
            },
        };
        for v in (from..=to).step_by(step as usize) {
            bits |= 1 << v;
        }
    }
    Ok(bits)
}

/// One value of a field: a number in range, or a name where the field has names.
fn value(field: &Field, text: &str) -> Result<u32, ScheduleError> {
    if let Some(at) = field
        .names
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
    {
        return Ok(field.min + at as u32);
    }
    let out_of_range = |shown: &str| {
        cron_err(format!(
            "{} field `{shown}` is out of range {}",
            field.name, field.hint
        ))
    };
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u32>() {
            Ok(v) if (field.min..=field.max).contains(&v) => Ok(v),
            _ => Err(out_of_range(text)),
        };
    }
    let what = if field.names.is_empty() {
        "a number"
    } else {
        "a number or a name"
    };
    Err(cron_err(format!(
        "{} field `{text}` is not {what}; use {}",
        field.name, field.hint
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn ms(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        tz.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .earliest()
            .expect("valid local time")
            .timestamp_millis()
    }

    #[test]
    fn names_and_presets_are_normalized() {
        assert_eq!(
            check_field(&FIELDS[4], "MON-fri").expect("valid"),
            0b11_1110
        );
        assert_eq!(
            check_field(&FIELDS[3], "jan,Jul-dec/2").expect("valid"),
            (1 << 1) | (1 << 7) | (1 << 9) | (1 << 11)
        );
        assert_eq!(
            Cron::parse("0 0 * * 7").expect("valid").fields,
            Cron::parse("0 0 * * sun").expect("valid").fields
        );
        assert!(Cron::parse("@midnight").expect("preset").is_wall_clock());
        assert!(!Cron::parse("@hourly").expect("preset").is_wall_clock());
        assert!(Cron::parse("30 2,14 * * *").expect("valid").is_wall_clock());
    }

    #[test]
    fn errors_name_the_field_and_the_range() {
        let err = Cron::parse("61 * * * *").expect_err("out of range");
        assert_eq!(err.field, "schedule.cron");
        assert_eq!(err.problem, "minute field `61` is out of range 0-59");
        for (bad, needle) in [
            ("* 24 * * *", "hour field `24` is out of range 0-23"),
            ("* * 0 * *", "day-of-month field `0` is out of range 1-31"),
            ("* * * foo *", "month field `foo` is not a number or a name"),
            ("* * * * 8", "day-of-week field `8` is out of range 0-7"),
            (
                "* * * * L",
                "day-of-week field `L` is not a number or a name",
            ),
            ("5-1 * * * *", "runs backwards"),
            ("*/0 * * * *", "minute field step `0`"),
            ("5/15 * * * *", "steps from a single value"),
            ("* * * *", "has 4 fields"),
            ("0 * * * * *", "has 6 fields"),
            ("@often", "is not a preset"),
            ("1,,2 * * * *", "empty list item"),
        ] {
            let err = Cron::parse(bad).expect_err(bad);
            assert!(
                err.problem.contains(needle),
                "{bad}: `{}` lacks `{needle}`",
                err.problem
            );
        }
    }

    #[test]
    fn gap_end_is_the_jump() {
        let ny = chrono_tz::America::New_York;
        let wall = chrono::NaiveDate::from_ymd_opt(2026, 3, 8)
            .and_then(|d| d.and_hms_opt(2, 30, 0))
            .expect("date");
        let end = gap_end(&wall, ny).expect("gap");
        assert_eq!(end.timestamp_millis(), ms(ny, 2026, 3, 8, 3, 0));
    }

    #[test]
    fn interval_patterns_keep_real_time_across_the_fold() {
        let ny = chrono_tz::America::New_York;
        let cron = Cron::parse("*/30 * * * *").expect("valid");
        // 2026-11-01 01:00 EDT is 05:00Z; the clock goes back at 06:00Z.
        let start = ms(ny, 2026, 11, 1, 0, 59);
        let mut at = start;
        let mut runs = Vec::new();
        for _ in 0..6 {
            at = cron.next_after(at, ny).expect("next");
            runs.push((at - start) / MIN);
        }
        assert_eq!(runs, vec![1, 31, 61, 91, 121, 151]);
    }
}
