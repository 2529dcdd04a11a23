//! Filters as predicates: dimension filters on a source's rows (where they apply), measure filters
//! on the aggregated columns, with typed literals, NULL-aware negations and LIKE patterns that
//! match a user's value literally.

use chrono_tz::Tz;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::utils::{conjunction, disjunction};
use datafusion::logical_expr::{Expr, Like, ident, lit};

use super::time::time_bounds;
use super::{Compiler, Resolved};
use crate::SqlError;
use crate::model::{DimensionType, Source};
use crate::spec::{Filter, MemberFilter, Operator, Value};

impl<'a> Compiler<'a> {
    /// The predicate of a filter tree. `r` is the source for dimension filters; measure filters
    /// (`r` = None) refer to the aggregated measure columns.
    pub(super) fn filter_expr(
        &self,
        r: Option<&Resolved<'_>>,
        f: &Filter,
    ) -> Result<Expr, SqlError> {
        match f {
            Filter::And(fs) => Ok(conjunction(
                fs.iter()
                    .map(|f| self.filter_expr(r, f))
                    .collect::<Result<Vec<_>, _>>()?,
            )
            .unwrap_or_else(|| lit(true))),
            Filter::Or(fs) => Ok(disjunction(
                fs.iter()
                    .map(|f| self.filter_expr(r, f))
                    .collect::<Result<Vec<_>, _>>()?,
            )
            .unwrap_or_else(|| lit(false))),
            Filter::Member(m) => match r {
                Some(r) if !m.on_measure => {
                    let (expr, data_type) = self.dimension(r, &m.member.member)?;
                    let tz = self.spec.time.as_ref().map_or(Tz::UTC, |t| t.timezone);
                    Ok(condition(expr, &data_type, m, tz))
                }
                _ => Ok(condition(
                    ident(m.member.to_string()),
                    &DataType::Float64,
                    m,
                    Tz::UTC,
                )),
            },
        }
    }
}

/// Whether a dimension filter applies to a source: the source has every dimension it names
/// (dimensions are conformed by name).
pub(super) fn applies(f: &Filter, source: &Source) -> bool {
    f.members()
        .iter()
        .all(|m| source.dimensions.contains_key(&m.member.member))
}

/// The predicate of one member filter. Time values are whole days or instants (see the module
/// docs of [`crate::spec`]); strings match case-insensitively for contains / startsWith / endsWith.
fn condition(expr: Expr, data_type: &DataType, f: &MemberFilter, tz: Tz) -> Expr {
    let negated_or_null = |e: Expr| Expr::Not(Box::new(e)).or(expr.clone().is_null());
    if f.kind == DimensionType::Time && !f.on_measure {
        let bounds: Vec<(Expr, Expr)> = f
            .values
            .iter()
            .filter_map(|v| match v {
                Value::Time(t) => Some(time_bounds(*t, data_type, tz)),
                _ => None,
            })
            .collect();
        let within = |(start, end): &(Expr, Expr)| {
            expr.clone()
                .gt_eq(start.clone())
                .and(expr.clone().lt(end.clone()))
        };
        let any = || disjunction(bounds.iter().map(within)).unwrap_or_else(|| lit(false));
        let first = bounds
            .first()
            .cloned()
            .unwrap_or((lit(ScalarValue::Null), lit(ScalarValue::Null)));
        let last = bounds
            .last()
            .cloned()
            .unwrap_or((lit(ScalarValue::Null), lit(ScalarValue::Null)));
        return match f.operator {
            Operator::Equals | Operator::In => any(),
            Operator::NotEquals | Operator::NotIn => negated_or_null(any()),
            Operator::Gt => expr.gt_eq(first.1),
            Operator::Gte => expr.gt_eq(first.0),
            Operator::Lt => expr.lt(first.0),
            Operator::Lte => expr.lt(first.1),
            Operator::Between => expr.clone().gt_eq(first.0).and(expr.lt(last.1)),
            Operator::Set => expr.is_not_null(),
            Operator::NotSet => expr.is_null(),
            Operator::Contains
            | Operator::NotContains
            | Operator::StartsWith
            | Operator::EndsWith => lit(false),
        };
    }
    let values: Vec<Expr> = f.values.iter().map(literal).collect();
    let first = || {
        values
            .first()
            .cloned()
            .unwrap_or_else(|| lit(ScalarValue::Null))
    };
    let like = |pattern: &dyn Fn(&str) -> String| {
        disjunction(f.values.iter().filter_map(|v| match v {
            Value::Str(s) => Some(Expr::Like(Like::new(
                false,
                Box::new(expr.clone()),
                Box::new(lit(pattern(&escape_like(s)))),
                Some('\\'),
                true,
            ))),
            _ => None,
        }))
        .unwrap_or_else(|| lit(false))
    };
    match f.operator {
        Operator::Equals | Operator::In if values.len() == 1 => expr.eq(first()),
        Operator::Equals | Operator::In => expr.in_list(values, false),
        Operator::NotEquals | Operator::NotIn if values.len() == 1 => {
            expr.clone().not_eq(first()).or(expr.is_null())
        }
        Operator::NotEquals | Operator::NotIn => {
            expr.clone().in_list(values, true).or(expr.is_null())
        }
        Operator::Contains => like(&|s| format!("%{s}%")),
        Operator::NotContains => negated_or_null(like(&|s| format!("%{s}%"))),
        Operator::StartsWith => like(&|s| format!("{s}%")),
        Operator::EndsWith => like(&|s| format!("%{s}")),
        Operator::Gt => expr.gt(first()),
        Operator::Gte => expr.gt_eq(first()),
        Operator::Lt => expr.lt(first()),
        Operator::Lte => expr.lt_eq(first()),
        Operator::Between => {
            let last = values
                .last()
                .cloned()
                .unwrap_or_else(|| lit(ScalarValue::Null));
            expr.clone().gt_eq(first()).and(expr.lt_eq(last))
        }
        Operator::Set => expr.is_not_null(),
        Operator::NotSet => expr.is_null(),
    }
}

fn literal(v: &Value) -> Expr {
    match v {
        Value::Str(s) => lit(s.as_str()),
        Value::Int(i) => lit(*i),
        Value::Float(f) => lit(*f),
        Value::Bool(b) => lit(*b),
        Value::Time(_) => lit(ScalarValue::Null),
    }
}

/// Escapes LIKE wildcards so a user's value matches literally.
fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
