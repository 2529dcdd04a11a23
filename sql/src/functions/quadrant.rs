//! Four-quadrant analysis: `quadrant(x, y, x_split, y_split)` and
//! `quadrant_label(x, y, x_split, y_split)`.
//!
//! Each point is High (`H`) or Low (`L`) on each axis; the x letter comes first. A point exactly on
//! a split counts as **High** (`x >= x_split`). Any NULL or NaN argument gives NULL.
//!
//! | quadrant | x | y | label |
//! |---|---|---|---|
//! | `HH` | high | high | `star` |
//! | `HL` | high | low | `cash cow` |
//! | `LH` | low | high | `question mark` |
//! | `LL` | low | low | `dog` |
//!
//! The labels follow the growth–share matrix with x = share (or spend, volume) and y = growth (or
//! return). The splits are ordinary arguments: pass a constant, or `avg(x) OVER ()` /
//! `median(x) OVER ()` to split at the mean or median of the result, which is what the dashboard
//! spec's `xSplit: "mean" | "median" | <number>` compiles to.

use std::sync::Arc;

use datafusion::arrow::array::{Array, Float64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Output {
    Code,
    Label,
}

/// The `quadrant` / `quadrant_label` scalar functions.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Quadrant {
    output: Output,
    signature: Signature,
}

/// `quadrant(x, y, x_split, y_split)`: `'HH'`, `'HL'`, `'LH'` or `'LL'`.
pub fn quadrant_udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::from(Quadrant {
        output: Output::Code,
        signature: Signature::user_defined(Volatility::Immutable),
    }))
}

/// `quadrant_label(x, y, x_split, y_split)`: `'star'`, `'cash cow'`, `'question mark'` or `'dog'`.
pub fn quadrant_label_udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::from(Quadrant {
        output: Output::Label,
        signature: Signature::user_defined(Volatility::Immutable),
    }))
}

/// The quadrant code for one point; `None` if any input is missing or NaN.
pub fn quadrant_of(x: f64, y: f64, x_split: f64, y_split: f64) -> Option<&'static str> {
    if [x, y, x_split, y_split].iter().any(|v| v.is_nan()) {
        return None;
    }
    Some(match (x >= x_split, y >= y_split) {
        (true, true) => "HH",
        (true, false) => "HL",
        (false, true) => "LH",
        (false, false) => "LL",
    })
}

/// The growth–share label for a quadrant code.
pub fn label_of(code: &str) -> &'static str {
    match code {
        "HH" => "star",
        "HL" => "cash cow",
        "LH" => "question mark",
        _ => "dog",
    }
}

impl ScalarUDFImpl for Quadrant {
    fn name(&self) -> &str {
        match self.output {
            Output::Code => "quadrant",
            Output::Label => "quadrant_label",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        numeric_args(self.name(), arg_types, 4)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = float_arrays(&args)?;
        let (x, y, xs, ys) = (&arrays[0], &arrays[1], &arrays[2], &arrays[3]);
        let out: StringArray = (0..args.number_rows)
            .map(|i| {
                if x.is_null(i) || y.is_null(i) || xs.is_null(i) || ys.is_null(i) {
                    return None;
                }
                let code = quadrant_of(x.value(i), y.value(i), xs.value(i), ys.value(i))?;
                Some(match self.output {
                    Output::Code => code,
                    Output::Label => label_of(code),
                })
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// Checks the argument count and that each is numeric; every argument is coerced to Float64.
pub(crate) fn numeric_args(name: &str, arg_types: &[DataType], n: usize) -> Result<Vec<DataType>> {
    if arg_types.len() != n {
        return plan_err!("{name} takes {n} arguments, got {}", arg_types.len());
    }
    if let Some(t) = arg_types.iter().find(|t| !(t.is_numeric() || t.is_null())) {
        return plan_err!("{name} needs numeric arguments, got {t}");
    }
    Ok(vec![DataType::Float64; n])
}

/// The arguments as Float64 arrays of `number_rows` rows (scalars expanded).
pub(crate) fn float_arrays(args: &ScalarFunctionArgs) -> Result<Vec<Float64Array>> {
    ColumnarValue::values_to_arrays(&args.args)?
        .into_iter()
        .map(|a| {
            let a = cast(&a, &DataType::Float64)?;
            Ok(a.as_any()
                .downcast_ref::<Float64Array>()
                .cloned()
                .unwrap_or_else(|| Float64Array::new_null(args.number_rows)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_the_split_is_high() {
        assert_eq!(quadrant_of(5.0, 5.0, 5.0, 5.0), Some("HH"));
        assert_eq!(quadrant_of(5.0, 4.9, 5.0, 5.0), Some("HL"));
        assert_eq!(quadrant_of(4.9, 5.0, 5.0, 5.0), Some("LH"));
        assert_eq!(quadrant_of(f64::NAN, 5.0, 5.0, 5.0), None);
        assert_eq!(label_of("HL"), "cash cow");
    }
}
