//! The engine's SQL functions for dashboard analyses, registered in every tenant session so the
//! spec compiler and user SQL call the same code: `abc_class`, `abc_share` (window),
//! `quadrant`, `quadrant_label`, `pct_change` (scalar), `merge_value` (aggregate). Share of total,
//! running total, rank and lag are DataFusion's own (`x / sum(x) OVER ()`, `sum(x) OVER (ORDER BY
//! t)`, `rank()`, `lag`) for measures that add up.

pub mod abc;
pub mod change;
pub mod merge;
pub mod quadrant;

use datafusion::prelude::SessionContext;

pub use abc::{abc_class_udwf, abc_share_udwf};
pub use change::pct_change_udf;
pub use merge::merge_value_udaf;
pub use quadrant::{quadrant_label_udf, quadrant_udf};

/// Registers all of Tidemark's analysis functions in `ctx`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udwf(abc_class_udwf().as_ref().clone());
    ctx.register_udwf(abc_share_udwf().as_ref().clone());
    ctx.register_udf(quadrant_udf().as_ref().clone());
    ctx.register_udf(quadrant_label_udf().as_ref().clone());
    ctx.register_udf(pct_change_udf().as_ref().clone());
    ctx.register_udaf(merge_value_udaf().as_ref().clone());
}
