//! Time in the plan: the range predicate and the literals typed like the time column (so Parquet
//! statistics prune row groups), the time bucket of a grain in the spec's zone, and a
//! [`Shift`] as an interval.

use std::sync::Arc;

use chrono::{DateTime, Days, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::functions::expr_fn::date_trunc;
use datafusion::logical_expr::{Expr, cast, lit};

use super::Compiler;
use crate::SqlError;
use crate::model::{Grain, MemberRef, Source};
use crate::spec::time::{LocalRange, Shift, TimeValue, to_instant};

impl<'a> Compiler<'a> {
    /// `start <= t < end` on a time dimension, with literals of the column's own type so that
    /// Parquet statistics prune row groups.
    pub(super) fn range_predicate(
        &mut self,
        expr: Expr,
        data_type: &DataType,
        range: &LocalRange,
        tz: Tz,
        member: &MemberRef,
    ) -> Result<Expr, SqlError> {
        if matches!(data_type, DataType::Date32 | DataType::Date64) && range.sub_day {
            let warning =
                format!("time range rounded to whole days: `{member}` is a date, not a timestamp");
            if !self.warnings.contains(&warning) {
                self.warnings.push(warning);
            }
        }
        let start = time_literal(range.start, false, data_type, tz);
        let end = time_literal(range.end, true, data_type, tz);
        Ok(expr.clone().gt_eq(start).and(expr.lt(end)))
    }
}

pub(super) fn interval(shift: Shift) -> ScalarValue {
    let (months, days, nanos) = match shift {
        Shift::Months(m) => (m as i32, 0, 0),
        Shift::Days(d) => (0, d as i32, 0),
        Shift::Nanos(n) => (0, 0, n),
    };
    ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(months, days, nanos)))
}

/// The time bucket of `expr` at `grain`, computed in `tz`.
pub(super) fn bucket(
    expr: Expr,
    data_type: &DataType,
    grain: Grain,
    tz: Tz,
    member: &MemberRef,
    source: &Source,
) -> Result<Expr, SqlError> {
    let part = lit(grain.as_str());
    Ok(match data_type {
        DataType::Date32 | DataType::Date64 => match grain {
            Grain::Hour => {
                return Err(SqlError::bad(
                    "time.grain",
                    format!("`{member}` is a date; hour buckets need a timestamp dimension"),
                ));
            }
            Grain::Day => cast(expr, DataType::Date32),
            _ => cast(date_trunc(part, expr), DataType::Date32),
        },
        DataType::Timestamp(unit, Some(_)) => date_trunc(
            part,
            cast(expr, DataType::Timestamp(*unit, Some(tz.name().into()))),
        ),
        DataType::Timestamp(_, None) => date_trunc(part, expr),
        other => {
            return Err(source.error(
                &member.member,
                format!("a time dimension must be a date or timestamp, but it is {other}"),
            ));
        }
    })
}

/// A literal for local time `t` (in `tz`) typed like the column: a date (rounded up to the next
/// whole day when `round_up` and `t` is not midnight), or a timestamp in the column's unit.
pub(super) fn time_literal(t: NaiveDateTime, round_up: bool, data_type: &DataType, tz: Tz) -> Expr {
    match data_type {
        DataType::Date32 | DataType::Date64 => {
            let mut date = t.date();
            if round_up && t.time() != NaiveTime::MIN {
                date = date + Days::new(1);
            }
            lit(ScalarValue::Date32(Some(days_since_epoch(date))))
        }
        DataType::Timestamp(unit, zone) => {
            let instant = match zone {
                Some(_) => to_instant(t, tz),
                None => t.and_utc(),
            };
            lit(timestamp(instant, *unit, zone.clone()))
        }
        _ => lit(ScalarValue::Null),
    }
}

/// `[start, end)` literals of a time value on a column of `data_type`.
pub(super) fn time_bounds(v: TimeValue, data_type: &DataType, tz: Tz) -> (Expr, Expr) {
    let start = v.local_start(tz);
    let end = match (v, data_type) {
        (_, DataType::Date32 | DataType::Date64) => start
            .date()
            .succ_opt()
            .map_or(start, |d| d.and_time(NaiveTime::MIN)),
        _ => v.local_end_exclusive(tz),
    };
    (
        time_literal(start, false, data_type, tz),
        time_literal(end, false, data_type, tz),
    )
}

pub(super) fn days_since_epoch(date: NaiveDate) -> i32 {
    (date - NaiveDate::default()).num_days() as i32
}

fn timestamp(t: DateTime<Utc>, unit: TimeUnit, zone: Option<Arc<str>>) -> ScalarValue {
    let micros = t.timestamp_micros();
    match unit {
        TimeUnit::Second => ScalarValue::TimestampSecond(Some(t.timestamp()), zone),
        TimeUnit::Millisecond => {
            ScalarValue::TimestampMillisecond(Some(t.timestamp_millis()), zone)
        }
        TimeUnit::Microsecond => ScalarValue::TimestampMicrosecond(Some(micros), zone),
        TimeUnit::Nanosecond => ScalarValue::TimestampNanosecond(
            Some(
                t.timestamp_nanos_opt()
                    .unwrap_or(micros.saturating_mul(1000)),
            ),
            zone,
        ),
    }
}
