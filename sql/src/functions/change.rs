//! `pct_change(current, previous)`: the relative change from `previous` to `current`,
//! `(current - previous) / abs(previous)`, so a rise is positive even from a negative base.
//! NULL when either side is NULL or `previous` is 0 (a change from nothing has no ratio).
//! Used for period-over-period columns; usable from SQL with `lag(x) OVER (...)`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, Float64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use super::quadrant::{float_arrays, numeric_args};

/// The `pct_change` scalar function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PctChange {
    signature: Signature,
}

/// `pct_change(current, previous)`.
pub fn pct_change_udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::from(PctChange {
        signature: Signature::user_defined(Volatility::Immutable),
    }))
}

/// The relative change for one pair of values.
pub fn pct_change(current: f64, previous: f64) -> Option<f64> {
    (previous != 0.0 && !previous.is_nan() && !current.is_nan())
        .then(|| (current - previous) / previous.abs())
}

impl ScalarUDFImpl for PctChange {
    fn name(&self) -> &str {
        "pct_change"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        numeric_args(self.name(), arg_types, 2)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = float_arrays(&args)?;
        let (cur, prev) = (&arrays[0], &arrays[1]);
        let out: Float64Array = (0..args.number_rows)
            .map(|i| {
                if cur.is_null(i) || prev.is_null(i) {
                    None
                } else {
                    pct_change(cur.value(i), prev.value(i))
                }
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_against_zero_and_negative_bases() {
        assert_eq!(pct_change(150.0, 100.0), Some(0.5));
        assert_eq!(pct_change(50.0, 100.0), Some(-0.5));
        assert_eq!(pct_change(-50.0, -100.0), Some(0.5));
        assert_eq!(pct_change(10.0, 0.0), None);
    }
}
