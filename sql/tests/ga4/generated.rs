//! Randomized SQL over a GA4 table, every answer checked against the individual sessions.

use super::*;

#[tokio::test]
async fn generated_queries_answer_the_individual_sessions_numbers_or_refuse() {
    let s = setup().await;
    let events = s.standin.events(PROPERTY);
    // (SQL column, API name, additive across the dimensions drawn below)
    const METRICS: &[(&str, &str, bool)] = &[
        ("total_users", "totalUsers", false),
        ("active_users", "activeUsers", false),
        ("bounce_rate", "bounceRate", false),
        ("sessions", "sessions", true),
        ("event_count", "eventCount", true),
        ("screen_page_views", "screenPageViews", true),
    ];
    const DIMENSIONS: &[(&str, &str)] = &[
        ("date", "date"),
        ("device_category", "deviceCategory"),
        (
            "session_default_channel_group",
            "sessionDefaultChannelGroup",
        ),
    ];
    const AGGREGATES: &[&str] = &["SUM", "MAX", "MIN", "AVG"];
    let mut draw = Draw(0x71de_3a4c);
    let (mut answered, mut refusals) = (0, 0);
    for round in 0..48 {
        let &(m, api, additive) = draw.pick(METRICS);
        let from = 1 + draw.below(10);
        let to = from + draw.below(14 - from + 1);
        let (from, to) = (format!("2026-01-{from:02}"), format!("2026-01-{to:02}"));
        let in_range: Vec<&Event> = events
            .iter()
            .filter(|e| e.date >= date(&from) && e.date <= date(&to))
            .collect();
        let range = format!("date BETWEEN '{from}' AND '{to}'");
        let n_dims = 1 + draw.below(2);
        let mut dims: Vec<(&str, &str)> = Vec::new();
        while dims.len() < n_dims {
            let d = *draw.pick(DIMENSIONS);
            if !dims.contains(&d) {
                dims.push(d);
            }
        }
        let dim_list = dims.iter().map(|d| d.0).collect::<Vec<_>>().join(", ");
        let agg = *draw.pick(AGGREGATES);
        let whole = metric(&in_range, api).unwrap();
        let kind = round % 4;
        let sql = match kind {
            // A window over per-row values.
            0 => format!(
                "SELECT {dim_list}, {agg}(x) OVER () AS w FROM \
                 (SELECT {dim_list}, {m} AS x FROM ga4.web WHERE {range}) t"
            ),
            // An aggregate over a subquery's aliased per-row values.
            1 => format!(
                "SELECT {agg}(x) AS v FROM (SELECT {dim_list}, {m} AS x FROM ga4.web \
                 WHERE {range}) AS t"
            ),
            // An aggregate over a union of two days' values.
            2 => format!(
                "SELECT {agg}(x) AS v FROM (SELECT {m} AS x FROM ga4.web WHERE date = '{from}' \
                 UNION ALL SELECT {m} AS x FROM ga4.web WHERE date = '{to}') AS u"
            ),
            // Per-row values, renamed twice.
            _ => format!(
                "SELECT * FROM (SELECT {dim_list}, y AS z FROM (SELECT {dim_list}, {m} AS y \
                 FROM ga4.web WHERE {range}) a) b"
            ),
        };
        let answer = match query(&s.ctx, &sql).await {
            Ok(a) => a,
            Err(e) => {
                assert!(kind != 3, "a per-row scan is never refused: {sql}\n→ {e}");
                assert!(e.contains(m), "{sql}\n→ {e}\n(the refusal names {m})");
                refusals += 1;
                continue;
            }
        };
        answered += 1;
        let per_row = |row: &[ScalarValue], n: usize| -> f64 {
            let group: Vec<&Event> = in_range
                .iter()
                .copied()
                .filter(|e| {
                    dims.iter().zip(&row[..n]).all(|((_, api), v)| {
                        ga4_support::dimension(e, api).unwrap() == dimension_text(v)
                    })
                })
                .collect();
            metric(&group, api).unwrap()
        };
        match kind {
            0 => {
                let values: Vec<f64> = answer.rows.iter().map(|r| per_row(r, dims.len())).collect();
                let expected = match agg {
                    "SUM" => values.iter().sum(),
                    "MAX" => values.iter().cloned().fold(f64::MIN, f64::max),
                    "MIN" => values.iter().cloned().fold(f64::MAX, f64::min),
                    _ => values.iter().sum::<f64>() / values.len() as f64,
                };
                assert!(additive, "a window over {m} answered: {sql}");
                for r in &answer.rows {
                    let got = as_f64(&r[dims.len()]).unwrap();
                    assert!(close(got, expected), "{sql}: {got} ≠ {expected}");
                }
                if agg == "SUM" {
                    assert!(close(expected, whole), "{sql}: rows add up to the range");
                }
            }
            1 => {
                // GA4's own value for the range (pushed down), or an exact sum of additive rows.
                let got = as_f64(&answer.rows[0][0]).unwrap();
                assert!(close(got, whole), "{sql}: {got} ≠ {whole}");
            }
            2 => {
                assert!(additive, "a union of {m} re-aggregated: {sql}");
                let day = |d: &str| {
                    let group: Vec<&Event> = events.iter().filter(|e| e.date == date(d)).collect();
                    metric(&group, api).unwrap()
                };
                let (a, b) = (day(&from), day(&to));
                let expected = match agg {
                    "SUM" => a + b,
                    "MAX" => a.max(b),
                    "MIN" => a.min(b),
                    _ => (a + b) / 2.0,
                };
                let got = as_f64(&answer.rows[0][0]).unwrap();
                assert!(close(got, expected), "{sql}: {got} ≠ {expected}");
            }
            _ => {
                assert!(!answer.rows.is_empty(), "{sql}");
                for r in &answer.rows {
                    let got = as_f64(&r[dims.len()]).unwrap();
                    let expected = per_row(r, dims.len());
                    assert!(close(got, expected), "{sql}: {r:?} ≠ {expected}");
                }
            }
        }
    }
    assert!(
        answered >= 12 && refusals >= 8,
        "{answered} answered, {refusals} refused"
    );
    assert_clean(&s.standin);
}
