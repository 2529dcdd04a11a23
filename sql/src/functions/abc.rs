//! ABC analysis as window functions: `abc_class(value [, a, b]) OVER (...)` and
//! `abc_share(value) OVER (...)`.
//!
//! Within each window partition the items are ranked by `value`, largest first, and each item gets
//! the *cumulative share* of the partition total up to and including itself. The class is `A`
//! while that share is ≤ `a` (default 0.80), `B` while ≤ `b` (default 0.95), else `C`.
//!
//! Edge cases, chosen so that the answer never depends on row order:
//! - **Ties**: items with equal values are peers; each gets the cumulative share at the end of its
//!   group of peers (like a `RANGE` frame), so equal values always land in the same class.
//!   Values 50, 25, 25 give shares 0.5, 1.0, 1.0.
//! - **Zeros and negatives** add nothing to the total or to any running sum (a loss is not a
//!   contribution). They sort after every positive item, so their share is 1.0 and their class `C`
//!   (unless `b` ≥ 1.0).
//! - **NULLs** are not items: share and class are NULL and they do not count in the total.
//! - **No positive total** (all values zero, negative or NULL): share is NULL and every non-NULL
//!   item is `C`.
//! - The top item is `A` only if its own share is ≤ `a`: one product with 90 % of revenue is `B`.
//! - `a` and `b` must be constant within a partition, with 0 ≤ `a` ≤ `b` ≤ 1.
//! - The `OVER` clause's `ORDER BY` and frame do not change the answer: the whole partition is
//!   always ranked by value.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Float64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{
    PartitionEvaluator, Signature, Volatility, WindowUDF, WindowUDFImpl,
};

/// Default upper cumulative share for class A.
pub const DEFAULT_A: f64 = 0.80;
/// Default upper cumulative share for class B.
pub const DEFAULT_B: f64 = 0.95;

/// Tolerance for comparing a floating-point cumulative share with a threshold, so that 0.8 computed
/// as 40/50 is not pushed over 0.80 by rounding.
const EPSILON: f64 = 1e-9;

/// What the function returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Output {
    Class,
    Share,
}

/// The `abc_class` / `abc_share` window functions.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Abc {
    output: Output,
    signature: Signature,
}

impl Abc {
    fn new(output: Output) -> Self {
        Self {
            output,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// `abc_class(value [, a, b])`: `'A'`, `'B'` or `'C'`.
pub fn abc_class_udwf() -> Arc<WindowUDF> {
    Arc::new(WindowUDF::from(Abc::new(Output::Class)))
}

/// `abc_share(value)`: the cumulative share (0..=1) that `abc_class` compares with its thresholds.
pub fn abc_share_udwf() -> Arc<WindowUDF> {
    Arc::new(WindowUDF::from(Abc::new(Output::Share)))
}

impl WindowUDFImpl for Abc {
    fn name(&self) -> &str {
        match self.output {
            Output::Class => "abc_class",
            Output::Share => "abc_share",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let allowed: &[usize] = match self.output {
            Output::Class => &[1, 3],
            Output::Share => &[1],
        };
        if !allowed.contains(&arg_types.len()) {
            return plan_err!(
                "{} takes {} arguments, got {}",
                self.name(),
                match self.output {
                    Output::Class => "(value [, a, b])",
                    Output::Share => "(value)",
                },
                arg_types.len()
            );
        }
        for t in arg_types {
            if !(t.is_numeric() || t.is_null()) {
                return plan_err!("{} needs numeric arguments, got {t}", self.name());
            }
        }
        Ok(vec![DataType::Float64; arg_types.len()])
    }

    fn partition_evaluator(
        &self,
        _args: PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(AbcEvaluator {
            output: self.output,
        }))
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> Result<FieldRef> {
        let data_type = match self.output {
            Output::Class => DataType::Utf8,
            Output::Share => DataType::Float64,
        };
        Ok(Arc::new(Field::new(field_args.name(), data_type, true)))
    }
}

#[derive(Debug)]
struct AbcEvaluator {
    output: Output,
}

impl PartitionEvaluator for AbcEvaluator {
    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let floats = |i: usize| -> Result<Float64Array> {
            let array = cast(&values[i], &DataType::Float64)?;
            Ok(array
                .as_any()
                .downcast_ref::<Float64Array>()
                .cloned()
                .unwrap_or_else(|| Float64Array::new_null(num_rows)))
        };
        let value = floats(0)?;
        let (a, b) = if values.len() == 3 {
            (constant(&floats(1)?, "a")?, constant(&floats(2)?, "b")?)
        } else {
            (Some(DEFAULT_A), Some(DEFAULT_B))
        };
        let (a, b) = (a.unwrap_or(DEFAULT_A), b.unwrap_or(DEFAULT_B));
        if !(0.0..=1.0).contains(&a) || !(0.0..=1.0).contains(&b) || a > b {
            return exec_err!("abc_class thresholds need 0 <= a <= b <= 1, got a = {a}, b = {b}");
        }
        let shares = cumulative_shares(&value);
        Ok(match self.output {
            Output::Share => Arc::new(
                shares
                    .into_iter()
                    .map(|s| s.flatten())
                    .collect::<Float64Array>(),
            ),
            Output::Class => Arc::new(
                shares
                    .into_iter()
                    .map(|s| s.map(|share| classify(share, a, b)))
                    .collect::<StringArray>(),
            ),
        })
    }
}

/// A threshold argument: the same non-NULL value on every row of the partition (or absent).
fn constant(array: &Float64Array, name: &str) -> Result<Option<f64>> {
    let mut found = None;
    for v in array.iter().flatten() {
        match found {
            None => found = Some(v),
            Some(f) if f != v => {
                return exec_err!("abc_class threshold `{name}` must be constant in a partition");
            }
            Some(_) => {}
        }
    }
    Ok(found)
}

/// Per row: `None` for a NULL value, `Some(None)` for an item when the total is not positive,
/// `Some(Some(share))` otherwise.
fn cumulative_shares(value: &Float64Array) -> Vec<Option<Option<f64>>> {
    let mut order: Vec<usize> = (0..value.len()).filter(|&i| value.is_valid(i)).collect();
    order.sort_by(|&i, &j| value.value(j).total_cmp(&value.value(i)));
    let contribution = |i: usize| value.value(i).max(0.0);
    let total: f64 = order.iter().map(|&i| contribution(i)).sum();
    let mut out = vec![None; value.len()];
    let mut running = 0.0;
    let mut start = 0;
    while start < order.len() {
        let peer = value.value(order[start]);
        let end = start
            + order[start..]
                .iter()
                .take_while(|&&i| value.value(i) == peer)
                .count();
        running += order[start..end]
            .iter()
            .map(|&i| contribution(i))
            .sum::<f64>();
        let share = (total > 0.0).then(|| (running / total).min(1.0));
        for &i in &order[start..end] {
            out[i] = Some(share);
        }
        start = end.max(start + 1);
    }
    out
}

fn classify(share: Option<f64>, a: f64, b: f64) -> &'static str {
    match share {
        Some(s) if s <= a + EPSILON => "A",
        Some(s) if s <= b + EPSILON => "B",
        _ => "C",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(values: &[Option<f64>]) -> Vec<Option<Option<f64>>> {
        cumulative_shares(&Float64Array::from(values.to_vec()))
    }

    #[test]
    fn ties_share_their_group_end() {
        assert_eq!(
            shares(&[Some(25.0), Some(50.0), Some(25.0)]),
            vec![Some(Some(1.0)), Some(Some(0.5)), Some(Some(1.0))]
        );
    }

    #[test]
    fn nulls_zeros_and_negatives() {
        let got = shares(&[Some(-5.0), None, Some(0.0), Some(10.0)]);
        assert_eq!(
            got,
            vec![Some(Some(1.0)), None, Some(Some(1.0)), Some(Some(1.0))]
        );
        assert_eq!(
            shares(&[Some(0.0), Some(-1.0)]),
            vec![Some(None), Some(None)]
        );
        assert_eq!(classify(None, 0.8, 0.95), "C");
    }

    #[test]
    fn classification_boundaries_are_inclusive() {
        assert_eq!(classify(Some(0.8), 0.8, 0.95), "A");
        assert_eq!(classify(Some(40.0 / 50.0), 0.8, 0.95), "A");
        assert_eq!(classify(Some(0.95), 0.8, 0.95), "B");
        assert_eq!(classify(Some(0.9500001), 0.8, 0.95), "C");
    }
}
