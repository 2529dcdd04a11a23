//! Window arithmetic and quiet hours: pure functions of event time.

use chrono::{Duration, TimeZone, Timelike};

use crate::rule::{QuietHours, WindowSpec};

/// The start of the window grid cell at or before `ts_ms`.
pub fn align_down(ts_ms: i64, window: &WindowSpec) -> i64 {
    (ts_ms + window.offset_ms).div_euclid(window.slide_ms) * window.slide_ms - window.offset_ms
}

/// Starts of every window that contains `ts_ms`, latest first.
pub fn window_starts(ts_ms: i64, window: &WindowSpec) -> impl Iterator<Item = i64> + use<> {
    let latest = align_down(ts_ms, window);
    let (size, slide) = (window.size_ms, window.slide_ms);
    (0..)
        .map(move |k| latest - k * slide)
        .take_while(move |start| start + size > ts_ms)
}

/// The panes of a window grid: slices one slide long, on the same grid, so that every window is
/// a whole number of them (a rule's slide divides its size). An event counts in the one pane it
/// falls in, and a window is judged by merging its panes, instead of the event counting in
/// every overlapping window it falls in.
pub fn pane_of(window: &WindowSpec) -> WindowSpec {
    WindowSpec {
        size_ms: window.slide_ms,
        slide_ms: window.slide_ms,
        offset_ms: window.offset_ms,
    }
}

/// The first window (by start) whose end lies after `watermark_ms`: the next one to close.
pub fn first_open_window(watermark_ms: i64, window: &WindowSpec) -> i64 {
    // the latest grid start s with s + size <= watermark is closed; the next one is open.
    align_down(watermark_ms - window.size_ms, window) + window.slide_ms
}

/// When a notification at `at_ms` may be delivered: `at_ms` itself, or the end of the quiet hours
/// it falls in, in `tz`.
pub fn deliver_at(at_ms: i64, quiet: Option<&QuietHours>, tz: chrono_tz::Tz) -> i64 {
    let Some(quiet) = quiet else { return at_ms };
    let Some(utc) = chrono::DateTime::from_timestamp_millis(at_ms) else {
        return at_ms;
    };
    let local = utc.with_timezone(&tz);
    let minute = local.hour() * 60 + local.minute();
    let inside = if quiet.start_min < quiet.end_min {
        quiet.start_min <= minute && minute < quiet.end_min
    } else {
        minute >= quiet.start_min || minute < quiet.end_min
    };
    if !inside {
        return at_ms;
    }
    let mut day = local.date_naive();
    if minute >= quiet.end_min {
        day += Duration::days(1);
    }
    let end_time =
        day.and_hms_opt(0, 0, 0).unwrap_or_default() + Duration::minutes(i64::from(quiet.end_min));
    tz.from_local_datetime(&end_time)
        .earliest()
        .map(|t| t.timestamp_millis())
        .unwrap_or(at_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn tumbling_and_sliding_windows() {
        let tumbling = WindowSpec {
            size_ms: HOUR,
            slide_ms: HOUR,
            offset_ms: 0,
        };
        assert_eq!(
            window_starts(HOUR, &tumbling).collect::<Vec<_>>(),
            vec![HOUR]
        );
        assert_eq!(
            window_starts(HOUR - 1, &tumbling).collect::<Vec<_>>(),
            vec![0]
        );
        let sliding = WindowSpec {
            size_ms: HOUR,
            slide_ms: HOUR / 4,
            offset_ms: 0,
        };
        let starts: Vec<_> = window_starts(HOUR, &sliding).collect();
        assert_eq!(starts, vec![HOUR, 3 * HOUR / 4, HOUR / 2, HOUR / 4]);
        assert_eq!(first_open_window(HOUR, &tumbling), HOUR);
        assert_eq!(first_open_window(HOUR - 1, &tumbling), 0);
        assert_eq!(first_open_window(HOUR, &sliding), HOUR / 4);
    }

    #[test]
    fn day_windows_align_to_local_midnight() {
        // Asia/Seoul is UTC+9: the local day starts at 15:00 UTC the day before.
        let day = WindowSpec {
            size_ms: 24 * HOUR,
            slide_ms: 24 * HOUR,
            offset_ms: 9 * HOUR,
        };
        let ts = 1_764_028_800_000; // 2025-11-25T00:00:00Z = 09:00 in Seoul
        assert_eq!(align_down(ts, &day), ts - 9 * HOUR);
    }

    #[test]
    fn quiet_hours_across_midnight_in_seoul() {
        let tz: chrono_tz::Tz = "Asia/Seoul".parse().unwrap();
        let quiet = QuietHours {
            start_min: 22 * 60,
            end_min: 7 * 60,
        };
        let seoul = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_millis()
        };
        // 21:59 is outside
        let t = seoul("2026-11-25T21:59:00+09:00");
        assert_eq!(deliver_at(t, Some(&quiet), tz), t);
        // 23:30 waits for 07:00 the next morning
        assert_eq!(
            deliver_at(seoul("2026-11-25T23:30:00+09:00"), Some(&quiet), tz),
            seoul("2026-11-26T07:00:00+09:00")
        );
        // 02:00 (after midnight) waits for 07:00 the same morning
        assert_eq!(
            deliver_at(seoul("2026-11-26T02:00:00+09:00"), Some(&quiet), tz),
            seoul("2026-11-26T07:00:00+09:00")
        );
        // 07:00 sharp is no longer quiet
        let t = seoul("2026-11-26T07:00:00+09:00");
        assert_eq!(deliver_at(t, Some(&quiet), tz), t);
    }
}
