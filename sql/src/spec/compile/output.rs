//! The result's shape: its columns in order, and the sort keys (the spec's, then the default,
//! then every key column, so the order is total).

use std::collections::BTreeSet;

use datafusion::logical_expr::{LogicalPlan, SortExpr, ident};

use super::{CURRENT_COLUMN, Compiler, Keys};
use crate::SqlError;

impl<'a> Compiler<'a> {
    /// The output columns, in order (the grand-total marker excluded).
    pub(super) fn output_columns(&self, plan: &LogicalPlan) -> Vec<String> {
        let spec = self.spec;
        let mut out = self.key_columns(Keys::All);
        out.extend(spec.measures.iter().map(ToString::to_string));
        if spec.compare.is_some() {
            for m in &spec.measures {
                for suffix in ["compare", "change", "change_pct"] {
                    out.push(format!("{m}.{suffix}"));
                }
            }
        }
        let known: BTreeSet<&String> = out.iter().collect::<BTreeSet<_>>();
        let measures: BTreeSet<String> = self
            .spec
            .filters
            .iter()
            .flat_map(|f| {
                f.members()
                    .into_iter()
                    .map(|m| m.member.to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        let extra: Vec<String> = plan
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| !known.contains(n) && !measures.contains(n))
            .collect();
        out.extend(extra);
        out
    }

    /// Sort keys: the spec's, then the default, then every key column, so the order is total.
    pub(super) fn sort_exprs(
        &self,
        plan: &LogicalPlan,
        keys: &[String],
    ) -> Result<Vec<SortExpr>, SqlError> {
        let spec = self.spec;
        let names: Vec<String> = plan
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let mut sort = Vec::new();
        let mut used = BTreeSet::new();
        for o in &spec.order {
            let column = match &spec.time {
                Some(t) if t.dimension.to_string() == o.column && t.grain.is_some() => {
                    t.bucket_column().unwrap_or_default()
                }
                _ => o.column.clone(),
            };
            if !names.contains(&column) || column == CURRENT_COLUMN {
                return Err(SqlError::bad(
                    format!("{}.member", o.field),
                    format!(
                        "cannot order by `{}`: order by one of the result's columns ({})",
                        o.column,
                        names.join(", ")
                    ),
                ));
            }
            if used.insert(column.clone()) {
                sort.push(ident(column.as_str()).sort(!o.descending, false));
            }
        }
        if spec.order.is_empty() {
            if let Some(bucket) = spec.time.as_ref().and_then(|t| t.bucket_column()) {
                used.insert(bucket.clone());
                sort.push(ident(bucket.as_str()).sort(true, false));
            } else if let Some(m) = spec.measures.first() {
                used.insert(m.to_string());
                sort.push(ident(m.to_string()).sort(false, false));
            }
        }
        for k in keys {
            if used.insert(k.clone()) {
                sort.push(ident(k.as_str()).sort(true, false));
            }
        }
        Ok(sort)
    }
}
