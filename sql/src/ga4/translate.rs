//! SQL predicates → GA4 request parts: date bounds on `date` → `dateRanges`, predicates on
//! dimensions → `dimensionFilter`, predicates on metrics → `metricFilter`. A predicate that
//! has no exact GA4 equivalent translates to nothing, and the caller keeps it in DataFusion.

use chrono::NaiveDate;
use connectors::ga4::DATE_DIMENSION;
use connectors::ga4::api::{
    BetweenFilter, DateRange, Dimension, Filter, FilterExpression, FilterExpressionList,
    FilterTest, InListFilter, MatchType, Metric, NumericFilter, NumericValue, Operation,
    RunReportRequest, StringFilter,
};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::expr::{Between, InList, Like, ScalarFunction};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};

use super::table::{ColumnKind, Ga4Column, Ga4Table};

/// The earliest date GA4 accepts in a date range.
pub const EARLIEST_DATE: &str = "2015-08-14";

/// The GA4 parts of one or more predicates, ANDed.
#[derive(Debug, Clone, Default)]
pub struct Translation {
    start: Option<NaiveDate>,
    end: Option<NaiveDate>,
    dimension_filters: Vec<FilterExpression>,
    metric_filters: Vec<FilterExpression>,
}

impl Translation {
    /// Adds `other` (AND).
    pub fn and(&mut self, other: Translation) {
        self.start = max_opt(self.start, other.start);
        self.end = min_opt(self.end, other.end);
        self.dimension_filters.extend(other.dimension_filters);
        self.metric_filters.extend(other.metric_filters);
    }

    /// Whether the date bounds admit no day at all.
    pub fn is_empty_range(&self) -> bool {
        matches!((self.start, self.end), (Some(s), Some(e)) if s > e)
    }

    /// Whether it carries a metric filter.
    pub fn has_metric_filter(&self) -> bool {
        !self.metric_filters.is_empty()
    }

    /// The request for these dimensions and metrics under this translation.
    pub fn into_request<'a>(
        &self,
        dimensions: impl Iterator<Item = &'a Ga4Column>,
        metrics: impl Iterator<Item = &'a Ga4Column>,
    ) -> RunReportRequest {
        let mut dims: Vec<Dimension> = Vec::new();
        for d in dimensions {
            if !dims.iter().any(|x| x.name == d.api_name) {
                dims.push(Dimension {
                    name: d.api_name.clone(),
                });
            }
        }
        let mut mets: Vec<Metric> = Vec::new();
        for m in metrics {
            if !mets.iter().any(|x| x.name == m.api_name) {
                mets.push(Metric {
                    name: m.api_name.clone(),
                });
            }
        }
        let fmt = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
        RunReportRequest {
            dimensions: dims,
            metrics: mets,
            date_ranges: vec![DateRange {
                start_date: self.start.map_or(EARLIEST_DATE.to_string(), fmt),
                end_date: self.end.map_or("today".to_string(), fmt),
            }],
            dimension_filter: FilterExpression::and(self.dimension_filters.clone()),
            metric_filter: FilterExpression::and(self.metric_filters.clone()),
            // Logged by the client, so operators see a property running out of tokens.
            return_property_quota: Some(true),
            ..Default::default()
        }
    }
}

fn max_opt(a: Option<NaiveDate>, b: Option<NaiveDate>) -> Option<NaiveDate> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn min_opt(a: Option<NaiveDate>, b: Option<NaiveDate>) -> Option<NaiveDate> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Translates a predicate over a GA4 table's own columns, all conjuncts or nothing.
/// `metrics` allows metric conjuncts (a plain scan, where they filter report rows).
pub fn predicate(table: &Ga4Table, expr: &Expr, metrics: bool) -> Option<Translation> {
    let resolve = |c: &Column| table.column(&c.name).cloned();
    predicate_with(&resolve, expr, metrics)
}

/// Like [`predicate`], with columns resolved by `resolve`.
pub fn predicate_with(
    resolve: &dyn Fn(&Column) -> Option<Ga4Column>,
    expr: &Expr,
    metrics: bool,
) -> Option<Translation> {
    let mut out = Translation::default();
    for conjunct in split_conjunction(expr) {
        if let Some((start, end)) = date_bounds(resolve, conjunct) {
            out.start = max_opt(out.start, start);
            out.end = min_opt(out.end, end);
        } else if let Some(f) = filter(resolve, conjunct, Target::Dimension) {
            out.dimension_filters.push(f);
        } else if metrics && let Some(f) = filter(resolve, conjunct, Target::Metric) {
            out.metric_filters.push(f);
        } else {
            return None;
        }
    }
    Some(out)
}

#[derive(Clone, Copy, PartialEq)]
enum Target {
    Dimension,
    Metric,
}

type Bounds = (Option<NaiveDate>, Option<NaiveDate>);

/// `date >= '2026-01-01'`, `date < …`, `date = …`, `date BETWEEN … AND …` → inclusive bounds.
fn date_bounds(resolve: &dyn Fn(&Column) -> Option<Ga4Column>, expr: &Expr) -> Option<Bounds> {
    let is_date = |e: &Expr| match e {
        Expr::Column(c) => resolve(c)
            .is_some_and(|c| c.kind == ColumnKind::Dimension && c.api_name == DATE_DIMENSION),
        _ => false,
    };
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            if let Some(bounds) = timestamp_bounds(&is_date, left, *op, right) {
                return Some(bounds);
            }
            let (op, lit) = if is_date(left) {
                (*op, date_literal(right)?)
            } else if is_date(right) {
                (op.swap()?, date_literal(left)?)
            } else {
                return None;
            };
            let day = chrono::Duration::days(1);
            match op {
                Operator::Eq => Some((Some(lit), Some(lit))),
                Operator::GtEq => Some((Some(lit), None)),
                Operator::Gt => Some((Some(lit + day), None)),
                Operator::LtEq => Some((None, Some(lit))),
                Operator::Lt => Some((None, Some(lit - day))),
                _ => None,
            }
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) if is_date(expr) => Some((Some(date_literal(low)?), Some(date_literal(high)?))),
        _ => None,
    }
}

/// `CAST(date AS TIMESTAMP) >= TIMESTAMP '…'` (what `date >= now() - INTERVAL '7 days'`
/// becomes): the day starts at midnight, so a bound inside a day rounds to whole days.
fn timestamp_bounds(
    is_date: &dyn Fn(&Expr) -> bool,
    left: &Expr,
    op: Operator,
    right: &Expr,
) -> Option<Bounds> {
    let cast_date = |e: &Expr| match e {
        Expr::Cast(c) => {
            matches!(c.field.data_type(), DataType::Timestamp(_, None)) && is_date(&c.expr)
        }
        _ => false,
    };
    let (op, ts) = if cast_date(left) {
        (op, timestamp_literal(right)?)
    } else if cast_date(right) {
        (op.swap()?, timestamp_literal(left)?)
    } else {
        return None;
    };
    let day = ts.date();
    let midnight = ts.time() == chrono::NaiveTime::MIN;
    let one = chrono::Duration::days(1);
    match op {
        Operator::GtEq if midnight => Some((Some(day), None)),
        Operator::GtEq | Operator::Gt => Some((Some(day + one), None)),
        Operator::LtEq => Some((None, Some(day))),
        Operator::Lt if midnight => Some((None, Some(day - one))),
        Operator::Lt => Some((None, Some(day))),
        Operator::Eq if midnight => Some((Some(day), Some(day))),
        // No midnight equals a time inside a day: an empty range.
        Operator::Eq => Some((Some(day + one), Some(day))),
        _ => None,
    }
}

fn timestamp_literal(e: &Expr) -> Option<chrono::NaiveDateTime> {
    let Expr::Literal(v, _) = e else {
        return None;
    };
    let (value, per_second) = match v {
        ScalarValue::TimestampSecond(Some(x), None) => (*x, 1),
        ScalarValue::TimestampMillisecond(Some(x), None) => (*x, 1_000),
        ScalarValue::TimestampMicrosecond(Some(x), None) => (*x, 1_000_000),
        ScalarValue::TimestampNanosecond(Some(x), None) => (*x, 1_000_000_000),
        _ => return None,
    };
    let secs = value.div_euclid(per_second);
    let nanos = (value.rem_euclid(per_second) * (1_000_000_000 / per_second)) as u32;
    chrono::DateTime::from_timestamp(secs, nanos).map(|t| t.naive_utc())
}

fn date_literal(e: &Expr) -> Option<NaiveDate> {
    match e {
        Expr::Literal(ScalarValue::Date32(Some(days)), _) => NaiveDate::from_ymd_opt(1970, 1, 1)?
            .checked_add_signed(chrono::Duration::days(i64::from(*days))),
        Expr::Literal(v, _) => NaiveDate::parse_from_str(string_literal_value(v)?, "%Y-%m-%d").ok(),
        _ => None,
    }
}

fn string_literal_value(v: &ScalarValue) -> Option<&str> {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => Some(s),
        _ => None,
    }
}

fn string_literal(e: &Expr) -> Option<&str> {
    match e {
        Expr::Literal(v, _) => string_literal_value(v),
        _ => None,
    }
}

fn numeric_literal(e: &Expr) -> Option<NumericValue> {
    let Expr::Literal(v, _) = e else {
        return None;
    };
    Some(match v {
        ScalarValue::Int8(Some(x)) => NumericValue::Int64Value(i64::from(*x)),
        ScalarValue::Int16(Some(x)) => NumericValue::Int64Value(i64::from(*x)),
        ScalarValue::Int32(Some(x)) => NumericValue::Int64Value(i64::from(*x)),
        ScalarValue::Int64(Some(x)) => NumericValue::Int64Value(*x),
        ScalarValue::UInt8(Some(x)) => NumericValue::Int64Value(i64::from(*x)),
        ScalarValue::UInt16(Some(x)) => NumericValue::Int64Value(i64::from(*x)),
        ScalarValue::UInt32(Some(x)) => NumericValue::Int64Value(i64::from(*x)),
        ScalarValue::UInt64(Some(x)) => NumericValue::Int64Value(i64::try_from(*x).ok()?),
        ScalarValue::Float32(Some(x)) => NumericValue::DoubleValue(f64::from(*x)),
        ScalarValue::Float64(Some(x)) => NumericValue::DoubleValue(*x),
        _ => return None,
    })
}

fn is_numeric(t: &DataType) -> bool {
    t.is_numeric()
}

/// The GA4 field a (possibly numerically cast) column expression names, if it is of `target`.
/// Returns the field and whether it was reached through a numeric cast.
fn field(
    resolve: &dyn Fn(&Column) -> Option<Ga4Column>,
    e: &Expr,
    target: Target,
) -> Option<(Ga4Column, bool)> {
    let (column, cast) = match e {
        Expr::Column(c) => (c, false),
        Expr::Cast(c) if is_numeric(c.field.data_type()) => match c.expr.as_ref() {
            Expr::Column(col) => (col, true),
            _ => return None,
        },
        Expr::TryCast(c) if is_numeric(c.field.data_type()) => match c.expr.as_ref() {
            Expr::Column(col) => (col, true),
            _ => return None,
        },
        _ => return None,
    };
    let f = resolve(column)?;
    let ok = match (target, f.kind) {
        // Dates only travel as dateRanges.
        (Target::Dimension, ColumnKind::Dimension) => f.api_name != DATE_DIMENSION,
        (Target::Metric, ColumnKind::Metric(_)) => true,
        _ => false,
    };
    ok.then_some((f, cast))
}

fn leaf(field_name: &str, test: FilterTest) -> FilterExpression {
    FilterExpression::Filter(Filter {
        field_name: field_name.to_string(),
        test,
    })
}

fn not(e: FilterExpression) -> FilterExpression {
    FilterExpression::NotExpression(Box::new(e))
}

fn string_test(match_type: MatchType, value: &str, case_sensitive: bool) -> FilterTest {
    FilterTest::StringFilter(StringFilter {
        match_type,
        value: value.to_string(),
        case_sensitive,
    })
}

/// A filter expression on `target` fields equivalent to `expr`, or `None`.
fn filter(
    resolve: &dyn Fn(&Column) -> Option<Ga4Column>,
    expr: &Expr,
    target: Target,
) -> Option<FilterExpression> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And | Operator::Or => {
                let l = filter(resolve, left, target)?;
                let r = filter(resolve, right, target)?;
                let list = FilterExpressionList {
                    expressions: vec![l, r],
                };
                Some(if *op == Operator::And {
                    FilterExpression::AndGroup(list)
                } else {
                    FilterExpression::OrGroup(list)
                })
            }
            _ => {
                if let Some(f) = comparison(resolve, left, *op, right, target) {
                    return Some(f);
                }
                comparison(resolve, right, op.swap()?, left, target)
            }
        },
        Expr::Not(e) => Some(not(filter(resolve, e, target)?)),
        Expr::Like(Like {
            negated,
            expr,
            pattern,
            escape_char,
            case_insensitive,
        }) => {
            let (f, false) = field(resolve, expr, target)? else {
                return None;
            };
            let pattern = string_literal(pattern)?;
            if escape_char.is_some_and(|c| pattern.contains(c)) || pattern.contains('\\') {
                return None;
            }
            let (match_type, value) = like(pattern);
            let e = leaf(
                &f.api_name,
                string_test(match_type, &value, !case_insensitive),
            );
            Some(if *negated { not(e) } else { e })
        }
        Expr::InList(InList {
            expr,
            list,
            negated,
        }) => {
            let (f, cast) = field(resolve, expr, target)?;
            let e = if !cast && target == Target::Dimension {
                let values = list
                    .iter()
                    .map(|v| string_literal(v).map(str::to_string))
                    .collect::<Option<Vec<_>>>()?;
                leaf(
                    &f.api_name,
                    FilterTest::InListFilter(InListFilter {
                        values,
                        case_sensitive: true,
                    }),
                )
            } else {
                let equals = list
                    .iter()
                    .map(|v| {
                        numeric_literal(v).map(|value| {
                            leaf(
                                &f.api_name,
                                FilterTest::NumericFilter(NumericFilter {
                                    operation: Operation::Equal,
                                    value,
                                }),
                            )
                        })
                    })
                    .collect::<Option<Vec<_>>>()?;
                FilterExpression::OrGroup(FilterExpressionList {
                    expressions: equals,
                })
            };
            Some(if *negated { not(e) } else { e })
        }
        Expr::Between(Between {
            expr,
            negated,
            low,
            high,
        }) => {
            let (f, cast) = field(resolve, expr, target)?;
            if target == Target::Dimension && !cast {
                return None;
            }
            let e = leaf(
                &f.api_name,
                FilterTest::BetweenFilter(BetweenFilter {
                    from_value: numeric_literal(low)?,
                    to_value: numeric_literal(high)?,
                }),
            );
            Some(if *negated { not(e) } else { e })
        }
        Expr::ScalarFunction(ScalarFunction { func, args }) if target == Target::Dimension => {
            let [col, value] = args.as_slice() else {
                return None;
            };
            let (f, false) = field(resolve, col, target)? else {
                return None;
            };
            let value = string_literal(value)?;
            let match_type = match func.name() {
                "starts_with" => MatchType::BeginsWith,
                "ends_with" => MatchType::EndsWith,
                "contains" => MatchType::Contains,
                _ => return None,
            };
            Some(leaf(&f.api_name, string_test(match_type, value, true)))
        }
        _ => None,
    }
}

/// `field op literal`.
fn comparison(
    resolve: &dyn Fn(&Column) -> Option<Ga4Column>,
    left: &Expr,
    op: Operator,
    right: &Expr,
    target: Target,
) -> Option<FilterExpression> {
    let (f, cast) = field(resolve, left, target)?;
    let textual = target == Target::Dimension && !cast;
    if textual {
        let value = string_literal(right)?;
        let exact = || leaf(&f.api_name, string_test(MatchType::Exact, value, true));
        return match op {
            Operator::Eq => Some(exact()),
            Operator::NotEq => Some(not(exact())),
            Operator::RegexMatch => Some(leaf(
                &f.api_name,
                string_test(MatchType::PartialRegexp, value, true),
            )),
            Operator::RegexIMatch => Some(leaf(
                &f.api_name,
                string_test(MatchType::PartialRegexp, value, false),
            )),
            Operator::RegexNotMatch => Some(not(leaf(
                &f.api_name,
                string_test(MatchType::PartialRegexp, value, true),
            ))),
            Operator::RegexNotIMatch => Some(not(leaf(
                &f.api_name,
                string_test(MatchType::PartialRegexp, value, false),
            ))),
            _ => None,
        };
    }
    let value = numeric_literal(right)?;
    let numeric = |operation| {
        leaf(
            &f.api_name,
            FilterTest::NumericFilter(NumericFilter { operation, value }),
        )
    };
    match op {
        Operator::Eq => Some(numeric(Operation::Equal)),
        Operator::NotEq => Some(not(numeric(Operation::Equal))),
        Operator::Lt => Some(numeric(Operation::LessThan)),
        Operator::LtEq => Some(numeric(Operation::LessThanOrEqual)),
        Operator::Gt => Some(numeric(Operation::GreaterThan)),
        Operator::GtEq => Some(numeric(Operation::GreaterThanOrEqual)),
        _ => None,
    }
}

/// A LIKE pattern as the simplest GA4 string match.
fn like(pattern: &str) -> (MatchType, String) {
    let wild = |c: char| c == '%' || c == '_';
    let inner = |s: &str| !s.contains(wild);
    if inner(pattern) {
        return (MatchType::Exact, pattern.to_string());
    }
    if let Some(p) = pattern.strip_suffix('%')
        && inner(p)
    {
        return (MatchType::BeginsWith, p.to_string());
    }
    if let Some(p) = pattern.strip_prefix('%')
        && inner(p)
    {
        return (MatchType::EndsWith, p.to_string());
    }
    if let Some(p) = pattern.strip_prefix('%').and_then(|p| p.strip_suffix('%'))
        && inner(p)
    {
        return (MatchType::Contains, p.to_string());
    }
    let mut re = String::new();
    for c in pattern.chars() {
        match c {
            '%' => re.push_str(".*"),
            '_' => re.push('.'),
            c if "\\.+*?()|[]{}^$".contains(c) => {
                re.push('\\');
                re.push(c);
            }
            c => re.push(c),
        }
    }
    (MatchType::FullRegexp, re)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_become_the_simplest_match() {
        assert_eq!(like("abc"), (MatchType::Exact, "abc".into()));
        assert_eq!(
            like("/products%"),
            (MatchType::BeginsWith, "/products".into())
        );
        assert_eq!(like("%shoes"), (MatchType::EndsWith, "shoes".into()));
        assert_eq!(like("%sale%"), (MatchType::Contains, "sale".into()));
        assert_eq!(
            like("/p_o%.html"),
            (MatchType::FullRegexp, "/p.o.*\\.html".into())
        );
    }
}
