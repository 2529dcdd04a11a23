//! Time ranges of a dashboard spec: absolute or relative, resolved in the spec's time zone into a
//! half-open local interval `[start, end)`, and the shift that maps it onto its comparison period.
//!
//! Relative ranges (case-insensitive), with `<unit>` a [`Grain`]: hour, day, week (ISO, from
//! Monday), month, quarter, year:
//! - `today`, `yesterday`
//! - `this <unit>`: the current unit, whole (its future part simply has no data)
//! - `last <unit>` / `previous <unit>`: the complete unit before the current one
//! - `last N <unit>s`: the N complete units before the current one (`last 7 days` ends yesterday)
//! - `<unit> to date` (`month to date`): from the start of the current unit up to `now`
//!
//! Absolute ranges are `[from, to]`, both inclusive: `["2024-06-01", "2024-06-30"]` is all of June;
//! a bound with a time of day (`2024-06-01T09:00:00`, local unless it has an offset) is an instant.

use chrono::{
    DateTime, Datelike, Days, Duration, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;

use crate::SqlError;
use crate::model::Grain;

/// The calendar arithmetic of a grain, which is also the unit of a relative range (`last 3
/// weeks`): a range is whole buckets of that grain, so both share one type.
impl Grain {
    /// The start of the bucket containing `t`.
    pub(crate) fn floor(self, t: NaiveDateTime) -> NaiveDateTime {
        let day = t.date();
        let date = match self {
            Grain::Hour => {
                return day.and_time(NaiveTime::from_hms_opt(t.hour(), 0, 0).unwrap_or_default());
            }
            Grain::Day => day,
            Grain::Week => day - Days::new(u64::from(day.weekday().num_days_from_monday())),
            Grain::Month => day.with_day(1).unwrap_or(day),
            Grain::Quarter => {
                let month = (day.month0() / 3) * 3 + 1;
                NaiveDate::from_ymd_opt(day.year(), month, 1).unwrap_or(day)
            }
            Grain::Year => NaiveDate::from_ymd_opt(day.year(), 1, 1).unwrap_or(day),
        };
        date.and_time(NaiveTime::MIN)
    }

    /// `n` buckets of this grain as a [`Shift`].
    pub(crate) fn times(self, n: u32) -> Shift {
        match self {
            Grain::Hour => Shift::Nanos(i64::from(n) * 3_600_000_000_000),
            Grain::Day => Shift::Days(n),
            Grain::Week => Shift::Days(7 * n),
            Grain::Month => Shift::Months(n),
            Grain::Quarter => Shift::Months(3 * n),
            Grain::Year => Shift::Months(12 * n),
        }
    }
}

/// The grain a relative range names, singular or plural (`day`, `days`).
fn range_unit(word: &str) -> Option<Grain> {
    Grain::parse(word.trim_end_matches('s'))
}

/// A calendar-aware length of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shift {
    /// Calendar months (a month shift keeps month boundaries aligned).
    Months(u32),
    /// Calendar days.
    Days(u32),
    /// An exact duration.
    Nanos(i64),
}

impl Shift {
    /// `t` moved back by this shift.
    pub fn back(self, t: NaiveDateTime) -> NaiveDateTime {
        match self {
            Shift::Months(m) => t.checked_sub_months(Months::new(m)).unwrap_or(t),
            Shift::Days(d) => t.checked_sub_days(Days::new(u64::from(d))).unwrap_or(t),
            Shift::Nanos(n) => t - Duration::nanoseconds(n),
        }
    }

    /// `t` moved forward by this shift.
    pub fn forward(self, t: NaiveDateTime) -> NaiveDateTime {
        match self {
            Shift::Months(m) => t.checked_add_months(Months::new(m)).unwrap_or(t),
            Shift::Days(d) => t.checked_add_days(Days::new(u64::from(d))).unwrap_or(t),
            Shift::Nanos(n) => t + Duration::nanoseconds(n),
        }
    }
}

/// A resolved range in local time: `[start, end)`, and the length of one period for
/// period-over-period comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalRange {
    /// Inclusive start, local time.
    pub start: NaiveDateTime,
    /// Exclusive end, local time.
    pub end: NaiveDateTime,
    /// How far back the previous period is.
    pub period: Shift,
    /// Whether the range needs sub-day precision (hours, or instants as bounds).
    pub sub_day: bool,
}

impl LocalRange {
    /// The same range moved back by `shift`.
    pub fn back(self, shift: Shift) -> LocalRange {
        LocalRange {
            start: shift.back(self.start),
            end: shift.back(self.end),
            ..self
        }
    }
}

/// A parsed time value from a spec: a whole local date, or an instant (local, or with an offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeValue {
    /// A calendar date, meaning the whole day.
    Date(NaiveDate),
    /// A local date and time.
    Local(NaiveDateTime),
    /// An absolute instant.
    Instant(DateTime<Utc>),
}

impl TimeValue {
    /// Parses `2024-06-01`, `2024-06-01T09:30:00` / `2024-06-01 09:30:00` (local), or RFC 3339
    /// with an offset (`2024-06-01T00:30:00Z`).
    pub fn parse(s: &str) -> Option<TimeValue> {
        let s = s.trim();
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Some(TimeValue::Date(d));
        }
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Some(TimeValue::Instant(t.with_timezone(&Utc)));
        }
        for format in [
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M",
            "%Y-%m-%d %H:%M",
        ] {
            if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
                return Some(TimeValue::Local(t));
            }
        }
        None
    }

    /// The local time this value starts at.
    pub fn local_start(self, tz: Tz) -> NaiveDateTime {
        match self {
            TimeValue::Date(d) => d.and_time(NaiveTime::MIN),
            TimeValue::Local(t) => t,
            TimeValue::Instant(t) => t.with_timezone(&tz).naive_local(),
        }
    }

    /// The first local time after this value (the next day for a date, the next microsecond
    /// for an instant): the exclusive end of an inclusive bound.
    pub fn local_end_exclusive(self, tz: Tz) -> NaiveDateTime {
        match self {
            TimeValue::Date(d) => (d + Days::new(1)).and_time(NaiveTime::MIN),
            other => other.local_start(tz) + Duration::microseconds(1),
        }
    }

    /// True for a whole date.
    pub fn is_date(self) -> bool {
        matches!(self, TimeValue::Date(_))
    }
}

/// Converts a local time in `tz` to an instant (the earlier one when a DST change repeats it,
/// the moment after the gap when it skips it).
pub fn to_instant(t: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&t) {
        chrono::LocalResult::Single(x) => x.with_timezone(&Utc),
        chrono::LocalResult::Ambiguous(a, _) => a.with_timezone(&Utc),
        chrono::LocalResult::None => tz
            .from_local_datetime(&(t + Duration::hours(1)))
            .earliest()
            .map_or_else(|| Utc.from_utc_datetime(&t), |x| x.with_timezone(&Utc)),
    }
}

/// Resolves a relative range expression at `now` in `tz`; `field` names it in errors.
pub fn relative(
    text: &str,
    now: DateTime<Utc>,
    tz: Tz,
    field: &str,
) -> Result<LocalRange, SqlError> {
    let local_now = now.with_timezone(&tz).naive_local();
    let lower = text.trim().to_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    let bad = || {
        SqlError::bad(
            field,
            format!(
                "unknown time range `{text}`: use e.g. \"today\", \"yesterday\", \"this month\", \
                 \"last week\", \"previous quarter\", \"last 7 days\", \"month to date\", or \
                 [\"2024-01-01\", \"2024-01-31\"]"
            ),
        )
    };
    let whole = |unit: Grain, back: u32, n: u32| {
        let current = unit.floor(local_now);
        let start = unit.times(back).back(current);
        LocalRange {
            start,
            end: unit.times(n).forward(start),
            period: unit.times(n),
            sub_day: unit == Grain::Hour,
        }
    };
    Ok(match words.as_slice() {
        ["today"] => whole(Grain::Day, 0, 1),
        ["yesterday"] => whole(Grain::Day, 1, 1),
        ["this", unit] => whole(range_unit(unit).ok_or_else(bad)?, 0, 1),
        ["last" | "previous", unit] => whole(range_unit(unit).ok_or_else(bad)?, 1, 1),
        ["last" | "previous", n, unit] => {
            let n: u32 = n
                .parse()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(bad)?;
            whole(range_unit(unit).ok_or_else(bad)?, n, n)
        }
        [unit, "to", "date"] => {
            let unit = range_unit(unit).ok_or_else(bad)?;
            let start = unit.floor(local_now);
            LocalRange {
                start,
                end: local_now,
                period: unit.times(1),
                sub_day: true,
            }
        }
        _ => return Err(bad()),
    })
}

/// Resolves an absolute, inclusive `[from, to]` range.
pub fn absolute(
    from: TimeValue,
    to: TimeValue,
    tz: Tz,
    field: &str,
) -> Result<LocalRange, SqlError> {
    let start = from.local_start(tz);
    let end = to.local_end_exclusive(tz);
    if end <= start {
        return Err(SqlError::bad(field, "the range ends before it starts"));
    }
    let midnight = |t: NaiveDateTime| t.time() == NaiveTime::MIN;
    let first_of_month = |t: NaiveDateTime| midnight(t) && t.day() == 1;
    let months = (end.year() - start.year()) * 12 + end.month() as i32 - start.month() as i32;
    let period = if first_of_month(start) && first_of_month(end) && months > 0 {
        Shift::Months(months as u32)
    } else if midnight(start) && midnight(end) {
        Shift::Days((end.date() - start.date()).num_days() as u32)
    } else {
        Shift::Nanos((end - start).num_nanoseconds().unwrap_or(i64::MAX))
    };
    Ok(LocalRange {
        start,
        end,
        period,
        sub_day: !(from.is_date() && to.is_date()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    #[test]
    fn relative_ranges_in_a_zone() {
        let seoul: Tz = "Asia/Seoul".parse().unwrap();
        // 2024-06-15 23:30 UTC is Sunday 2024-06-16 08:30 in Seoul.
        let now = at("2024-06-15T23:30:00Z");
        let r = |s| relative(s, now, seoul, "time.range").unwrap();
        assert_eq!(r("today").start, local("2024-06-16 00:00"));
        assert_eq!(r("yesterday").start, local("2024-06-15 00:00"));
        let last7 = r("last 7 days");
        assert_eq!(
            (last7.start, last7.end),
            (local("2024-06-09 00:00"), local("2024-06-16 00:00"))
        );
        assert_eq!(last7.period, Shift::Days(7));
        let month = r("This Month");
        assert_eq!(
            (month.start, month.end),
            (local("2024-06-01 00:00"), local("2024-07-01 00:00"))
        );
        let q = r("previous quarter");
        assert_eq!(
            (q.start, q.end),
            (local("2024-01-01 00:00"), local("2024-04-01 00:00"))
        );
        assert_eq!(q.period, Shift::Months(3));
        let week = r("last week");
        assert_eq!(
            (week.start, week.end),
            (local("2024-06-03 00:00"), local("2024-06-10 00:00"))
        );
        let mtd = r("month to date");
        assert_eq!(
            (mtd.start, mtd.end),
            (local("2024-06-01 00:00"), local("2024-06-16 08:30"))
        );
        assert_eq!(mtd.back(mtd.period).start, local("2024-05-01 00:00"));
        let hours = r("last 3 hours");
        assert_eq!(
            (hours.start, hours.end),
            (local("2024-06-16 05:00"), local("2024-06-16 08:00"))
        );
        assert!(relative("last fortnight", now, seoul, "time.range").is_err());
        assert!(relative("last 0 days", now, seoul, "time.range").is_err());
    }

    #[test]
    fn absolute_ranges_are_inclusive() {
        let utc: Tz = "UTC".parse().unwrap();
        let d = |s| TimeValue::parse(s).unwrap();
        let june = absolute(d("2024-06-01"), d("2024-06-30"), utc, "r").unwrap();
        assert_eq!(june.end, local("2024-07-01 00:00"));
        assert_eq!(june.period, Shift::Months(1));
        assert_eq!(
            june.back(Shift::Months(12)).start,
            local("2023-06-01 00:00")
        );
        let week = absolute(d("2024-06-03"), d("2024-06-09"), utc, "r").unwrap();
        assert_eq!(week.period, Shift::Days(7));
        assert!(absolute(d("2024-06-09"), d("2024-06-03"), utc, "r").is_err());
        assert_eq!(
            TimeValue::parse("2024-06-01T00:30:00+09:00"),
            Some(TimeValue::Instant(at("2024-05-31T15:30:00Z")))
        );
    }
}
