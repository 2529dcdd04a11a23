//! `merge_value(x)`: the one non-NULL `x` of a group; NULL when there is none, an error when
//! there are two. The spec compiler merges rows that carry different columns of one key — each
//! source's measures, the current and the comparison period — as UNION ALL + GROUP BY with it:
//! both sides are computed at once (a join would build one before reading the other), and no
//! value is ever combined with another, which is why the GA4 plan check lets it over a
//! non-additive metric ([`crate::ga4::check`]).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

/// The `merge_value` aggregate function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MergeValue {
    signature: Signature,
}

/// `merge_value(x)`.
pub fn merge_value_udaf() -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::from(MergeValue {
        signature: Signature::any(1, Volatility::Immutable),
    }))
}

impl AggregateUDFImpl for MergeValue {
    fn name(&self) -> &str {
        "merge_value"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(OneValue {
            value: ScalarValue::try_from(args.return_field.data_type())?,
        }))
    }
}

/// The group's value so far (a typed NULL until one arrives).
#[derive(Debug)]
struct OneValue {
    value: ScalarValue,
}

impl OneValue {
    fn take(&mut self, array: &ArrayRef) -> Result<()> {
        for i in 0..array.len() {
            if array.is_null(i) {
                continue;
            }
            if !self.value.is_null() {
                return exec_err!(
                    "merge_value: two values for one key ({} and {}): the rows merged are not \
                     one per key",
                    self.value,
                    ScalarValue::try_from_array(array, i)?
                );
            }
            self.value = ScalarValue::try_from_array(array, i)?;
        }
        Ok(())
    }
}

impl Accumulator for OneValue {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        values.first().map_or(Ok(()), |a| self.take(a))
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        states.first().map_or(Ok(()), |a| self.take(a))
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.value.clone()])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(self.value.clone())
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.value.size() - size_of_val(&self.value)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Int64Array;

    use super::*;

    fn values(v: Vec<Option<i64>>) -> ArrayRef {
        Arc::new(Int64Array::from(v))
    }

    #[test]
    fn keeps_the_one_value_and_refuses_a_second() {
        let mut acc = OneValue {
            value: ScalarValue::Int64(None),
        };
        acc.update_batch(&[values(vec![None, Some(7), None])])
            .unwrap();
        acc.merge_batch(&[values(vec![None])]).unwrap();
        assert_eq!(acc.evaluate().unwrap(), ScalarValue::Int64(Some(7)));
        let err = acc.merge_batch(&[values(vec![Some(8)])]).unwrap_err();
        assert!(err.to_string().contains("two values for one key"), "{err}");
    }
}
