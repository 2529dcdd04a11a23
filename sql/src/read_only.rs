//! The read-only gate for user SQL: SELECT (with joins, subqueries, CTEs, set operations, window
//! functions, VALUES), EXPLAIN (and EXPLAIN ANALYZE), DESCRIBE and catalog introspection
//! (`information_schema`, `SHOW TABLES`, `SHOW COLUMNS`) pass; everything else is refused.
//!
//! Plan the SQL first and check the plan before running it:
//! `state.create_logical_plan(sql)` → [`check_read_only`] → `ctx.execute_logical_plan(plan)`.
//! Never call `SessionContext::sql` on user text: it runs DDL and `SET` as it plans them.

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::{DdlStatement, LogicalPlan, Statement, WriteOp};

use crate::SqlError;

/// Returns `Ok(())` if `plan` (including every subquery in it) only reads, else
/// [`SqlError::NotAllowed`] naming what was refused.
pub fn check_read_only(plan: &LogicalPlan) -> Result<(), SqlError> {
    let mut refused: Option<String> = None;
    let visit = plan.apply_with_subqueries(|node| {
        if let Some(what) = refusal(node) {
            refused = Some(what);
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    if let Err(err) = visit {
        return Err(SqlError::Internal(format!("checking the plan: {err}")));
    }
    match refused {
        Some(what) => Err(SqlError::NotAllowed(format!(
            "{what} is not allowed: only SELECT, EXPLAIN, DESCRIBE and catalog introspection \
             (information_schema, SHOW) can run here"
        ))),
        None => Ok(()),
    }
}

/// What, if anything, makes this one node not read-only. Every variant is named so that a new
/// kind of plan node in a DataFusion upgrade has to be judged here before it compiles.
fn refusal(node: &LogicalPlan) -> Option<String> {
    match node {
        LogicalPlan::Projection(_)
        | LogicalPlan::Filter(_)
        | LogicalPlan::Window(_)
        | LogicalPlan::Aggregate(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Join(_)
        | LogicalPlan::Repartition(_)
        | LogicalPlan::Union(_)
        | LogicalPlan::TableScan(_)
        | LogicalPlan::EmptyRelation(_)
        | LogicalPlan::Subquery(_)
        | LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::Values(_)
        | LogicalPlan::Explain(_)
        | LogicalPlan::Analyze(_)
        | LogicalPlan::Distinct(_)
        | LogicalPlan::DescribeTable(_)
        | LogicalPlan::Unnest(_)
        | LogicalPlan::RecursiveQuery(_) => None,
        LogicalPlan::Dml(dml) => Some(match dml.op {
            WriteOp::Insert(_) => "INSERT".to_string(),
            WriteOp::Delete => "DELETE".to_string(),
            WriteOp::Update => "UPDATE".to_string(),
            WriteOp::Ctas => "CREATE TABLE AS".to_string(),
            WriteOp::Truncate => "TRUNCATE".to_string(),
            WriteOp::MergeInto(_) => "MERGE".to_string(),
            // `WriteOp` is non-exhaustive: any new kind of write is refused too.
            _ => "a data modification".to_string(),
        }),
        LogicalPlan::Ddl(ddl) => Some(ddl_name(ddl).to_string()),
        LogicalPlan::Copy(_) => Some("COPY".to_string()),
        LogicalPlan::Statement(statement) => Some(statement_name(statement).to_string()),
        LogicalPlan::Extension(ext) => Some(format!("plan extension `{}`", ext.node.name())),
    }
}

fn ddl_name(ddl: &DdlStatement) -> &'static str {
    match ddl {
        DdlStatement::CreateExternalTable(_) => "CREATE EXTERNAL TABLE",
        DdlStatement::CreateMemoryTable(_) => "CREATE TABLE",
        DdlStatement::CreateView(_) => "CREATE VIEW",
        DdlStatement::CreateCatalogSchema(_) => "CREATE SCHEMA",
        DdlStatement::CreateCatalog(_) => "CREATE DATABASE",
        DdlStatement::CreateIndex(_) => "CREATE INDEX",
        DdlStatement::DropTable(_) => "DROP TABLE",
        DdlStatement::DropView(_) => "DROP VIEW",
        DdlStatement::DropCatalogSchema(_) => "DROP SCHEMA",
        DdlStatement::CreateFunction(_) => "CREATE FUNCTION",
        DdlStatement::DropFunction(_) => "DROP FUNCTION",
    }
}

fn statement_name(statement: &Statement) -> &'static str {
    match statement {
        Statement::TransactionStart(_) => "BEGIN",
        Statement::TransactionEnd(_) => "COMMIT/ROLLBACK",
        Statement::SetVariable(_) => "SET",
        Statement::ResetVariable(_) => "RESET",
        Statement::Prepare(_) => "PREPARE",
        Statement::Execute(_) => "EXECUTE",
        Statement::Deallocate(_) => "DEALLOCATE",
    }
}
