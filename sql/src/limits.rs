//! Limits on what one dashboard query may cost, so that no query can take the process down:
//! the SQL text's size and its expressions' nesting (checked before planning, since the planner
//! and optimizer recurse once per level), the memory it may hold (a per-query budget inside a
//! total one, enforced through DataFusion's memory pool) and the size of its answer.
//!
//! A query over a limit gets [`SqlError::TooComplex`] or [`SqlError::TooLarge`] naming the limit
//! (as its `[dashboard.limits]` key); when the total budget is in use by other queries it gets
//! [`SqlError::Busy`].
//!
//! Planning and running recurse with the depth of expressions, so callers run queries on threads
//! with at least [`QUERY_STACK_BYTES`] of stack; [`MAX_EXPR_DEPTH`] is the deepest limit such a
//! stack carries with a wide margin (a debug build needs about 10 KiB per level).

use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::arrow::array::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{
    FairSpillPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::sql::parser::{CopyToSource, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{self, Visit, Visitor};
use futures::StreamExt;

use crate::SqlError;

/// The stack a thread that plans or runs dashboard queries should have.
pub const QUERY_STACK_BYTES: usize = 64 * 1024 * 1024;

/// The deepest `max_expr_depth` a thread with [`QUERY_STACK_BYTES`] of stack carries safely.
pub const MAX_EXPR_DEPTH: usize = 2_000;

const MIB: usize = 1024 * 1024;

/// What one query may cost. Messages name each limit by its `[dashboard.limits]` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryLimits {
    /// Longest SQL text, bytes.
    pub max_sql_bytes: usize,
    /// Deepest expression nesting (each term of `1+1+…` or `a OR b OR …` is one level).
    pub max_expr_depth: usize,
    /// Memory one query may hold, bytes.
    pub query_memory_bytes: usize,
    /// Memory all queries may hold together, bytes.
    pub total_memory_bytes: usize,
    /// Most rows of one answer.
    pub max_result_rows: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_sql_bytes: 256 * 1024,
            max_expr_depth: 256,
            query_memory_bytes: 256 * MIB,
            total_memory_bytes: 1024 * MIB,
            max_result_rows: 1_000_000,
        }
    }
}

fn mib(bytes: usize) -> String {
    if bytes >= MIB {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// Refuses SQL text longer than `max_sql_bytes`, before anything parses it.
pub fn check_sql_size(sql: &str, limits: &QueryLimits) -> Result<(), SqlError> {
    if sql.len() > limits.max_sql_bytes {
        return Err(SqlError::TooComplex {
            limit: "dashboard.limits.max_sql_bytes".into(),
            message: format!(
                "the SQL text is {} bytes, over the limit of {} bytes \
                 (dashboard.limits.max_sql_bytes)",
                sql.len(),
                limits.max_sql_bytes
            ),
        });
    }
    Ok(())
}

/// Refuses a parsed statement whose expressions nest deeper than `max_expr_depth`, or whose
/// set operations (`UNION`, `INTERSECT`, `EXCEPT`) chain longer than that. The parser reads
/// `1+1+…` and `a OR b OR …` in a loop, so a long chain parses fine; the planner and optimizer
/// then recurse once per term, which is what this check bounds. Stops at the first level over
/// the limit, so the check itself recurses no deeper than the limit.
pub fn check_statement(statement: &DfStatement, limits: &QueryLimits) -> Result<(), SqlError> {
    let mut depth = ExprDepth {
        limit: limits.max_expr_depth,
        depth: 0,
    };
    let flow = match statement {
        DfStatement::Statement(statement) => statement.visit(&mut depth),
        DfStatement::Explain(explain) => return check_statement(&explain.statement, limits),
        DfStatement::CopyTo(copy) => match &copy.source {
            CopyToSource::Query(query) => query.visit(&mut depth),
            CopyToSource::Relation(_) => ControlFlow::Continue(()),
        },
        DfStatement::CreateExternalTable(_) | DfStatement::Reset(_) => ControlFlow::Continue(()),
    };
    match flow {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(what) => Err(too_deep(what, limits.max_expr_depth)),
    }
}

/// What nests too deep.
#[derive(Debug, Clone, Copy)]
enum Nesting {
    Expression,
    SetOperations,
}

fn too_deep(what: Nesting, limit: usize) -> SqlError {
    let what = match what {
        Nesting::Expression => "an expression nests",
        Nesting::SetOperations => "a chain of UNION / INTERSECT / EXCEPT runs",
    };
    SqlError::TooComplex {
        limit: "dashboard.limits.max_expr_depth".into(),
        message: format!(
            "query too complex: {what} more than {limit} levels deep \
             (dashboard.limits.max_expr_depth); use IN (…) instead of long OR chains, or split \
             the query"
        ),
    }
}

struct ExprDepth {
    limit: usize,
    depth: usize,
}

impl Visitor for ExprDepth {
    type Break = Nesting;

    fn pre_visit_query(&mut self, query: &ast::Query) -> ControlFlow<Nesting> {
        // The chain of set operations is walked here, in a loop, before the visitor recurses
        // into it.
        let mut pending: Vec<(&ast::SetExpr, usize)> = vec![(&query.body, 1)];
        while let Some((set, level)) = pending.pop() {
            if level > self.limit {
                return ControlFlow::Break(Nesting::SetOperations);
            }
            if let ast::SetExpr::SetOperation { left, right, .. } = set {
                pending.push((left, level + 1));
                pending.push((right, level + 1));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, _expr: &ast::Expr) -> ControlFlow<Nesting> {
        self.depth += 1;
        if self.depth > self.limit {
            return ControlFlow::Break(Nesting::Expression);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &ast::Expr) -> ControlFlow<Nesting> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

/// Refuses a plan (with its subqueries) holding an expression nested deeper than
/// `max_expr_depth`: the check for plans that were not parsed from SQL (dashboard specs).
pub fn check_plan(plan: &LogicalPlan, limits: &QueryLimits) -> Result<(), SqlError> {
    let mut deep = false;
    let visit = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            if deeper_than(expr, limits.max_expr_depth) {
                deep = true;
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })
    });
    if let Err(e) = visit {
        return Err(SqlError::Internal(format!("checking the plan: {e}")));
    }
    if deep {
        return Err(too_deep(Nesting::Expression, limits.max_expr_depth));
    }
    Ok(())
}

/// Whether `expr` nests more than `levels` deep (recursing at most `levels` deep to find out).
fn deeper_than(expr: &Expr, levels: usize) -> bool {
    if levels == 0 {
        return true;
    }
    let mut deep = false;
    let _ = expr.apply_children(|child| {
        if deeper_than(child, levels - 1) {
            deep = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    deep
}

/// Classifies a parser error: nesting over the parser's recursion limit is a limit, not a
/// syntax error.
pub fn parser_limit(err: &DataFusionError) -> Option<SqlError> {
    let DataFusionError::SQL(parse, _) = err.find_root() else {
        return None;
    };
    matches!(
        **parse,
        datafusion::sql::sqlparser::parser::ParserError::RecursionLimitExceeded
    )
    .then(|| SqlError::TooComplex {
        limit: "datafusion.sql_parser.recursion_limit".into(),
        message: "query too complex: parentheses, subqueries or function calls nest deeper \
                  than the parser allows (datafusion.sql_parser.recursion_limit)"
            .into(),
    })
}

// ---- memory ----

/// Marks the message of a query refused because other queries hold the total budget.
const TOTAL_IN_USE: &str = "the memory all dashboard queries share";

/// Classifies a memory-pool refusal: over the query's own budget (the query's fault) or the
/// total budget in use by other queries (try again later).
pub(crate) fn memory_refusal(err: &DataFusionError) -> Option<SqlError> {
    let DataFusionError::ResourcesExhausted(message) = err.find_root() else {
        return None;
    };
    Some(if message.contains(TOTAL_IN_USE) {
        SqlError::Busy(message.clone())
    } else {
        SqlError::TooLarge {
            limit: "dashboard.limits.query_memory_mb".into(),
            message: message.clone(),
        }
    })
}

/// The memory every query draws from together (`total_memory_bytes`).
#[derive(Debug)]
pub(crate) struct TotalMemory {
    limit: usize,
    used: AtomicUsize,
}

impl TotalMemory {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(TotalMemory {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    fn try_take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    fn take(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::AcqRel);
    }

    fn give_back(&self, bytes: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }

    /// Bytes held by running queries.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// One query's memory pool: its own budget, shared fairly among its operators that can spill
/// (DataFusion's [`FairSpillPool`]), drawn from the [`TotalMemory`] of all queries. Operators
/// that can spill do so when refused; the others fail the query with a message naming the limit.
#[derive(Debug)]
pub(crate) struct QueryMemoryPool {
    query: FairSpillPool,
    limit: usize,
    total: Arc<TotalMemory>,
}

impl QueryMemoryPool {
    pub(crate) fn new(limit: usize, total: Arc<TotalMemory>) -> Self {
        QueryMemoryPool {
            query: FairSpillPool::new(limit),
            limit,
            total,
        }
    }
}

impl fmt::Display for QueryMemoryPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "query memory pool ({} of {} in use)",
            mib(self.query.reserved()),
            mib(self.limit)
        )
    }
}

impl MemoryPool for QueryMemoryPool {
    fn name(&self) -> &str {
        "tidemark_query"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.query.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.query.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.query.grow(reservation, additional);
        self.total.take(additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.query.shrink(reservation, shrink);
        self.total.give_back(shrink);
    }

    fn try_grow(
        &self,
        reservation: &MemoryReservation,
        additional: usize,
    ) -> datafusion::error::Result<()> {
        let name = reservation.consumer().name();
        if self.query.try_grow(reservation, additional).is_err() {
            let spill = if reservation.consumer().can_spill() {
                " (it spills to disk when it can)"
            } else {
                ""
            };
            return Err(DataFusionError::ResourcesExhausted(format!(
                "query too large: {name}{spill} asked for {} more with {} of the query's \
                 budget of {} in use (dashboard.limits.query_memory_mb); filter or aggregate \
                 more, or add a LIMIT",
                mib(additional),
                mib(self.query.reserved()),
                mib(self.limit),
            )));
        }
        if !self.total.try_take(additional) {
            self.query.shrink(reservation, additional);
            return Err(DataFusionError::ResourcesExhausted(format!(
                "server busy: {TOTAL_IN_USE} ({} of {}, dashboard.limits.total_memory_mb) is \
                 in use by other queries; try again shortly",
                mib(self.total.used()),
                mib(self.total.limit),
            )));
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.query.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

/// `plan` with every operator's output passed through a yield point ([`CooperativeExec`]), so
/// that the query's task returns to tokio every so many batches even inside an operator that
/// makes many batches of each input batch (a cross join), and a timeout or a client gone can
/// stop it: a task is only aborted when it yields. DataFusion puts yield points at the leaves
/// only; the planned query is not changed otherwise (`EXPLAIN` shows it without these).
pub(crate) fn yielding(
    plan: Arc<dyn ExecutionPlan>,
) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
    let wrap = |node: &Arc<dyn ExecutionPlan>| -> Arc<dyn ExecutionPlan> {
        if node.is::<CooperativeExec>() {
            Arc::clone(node)
        } else {
            Arc::new(CooperativeExec::new(Arc::clone(node)))
        }
    };
    let plan = plan
        .transform_up(|node| {
            let children = node.children();
            if children.is_empty() || node.is::<CooperativeExec>() {
                return Ok(Transformed::no(node));
            }
            let wrapped = children.into_iter().map(wrap).collect();
            // A yield point keeps its input's properties (partitioning, ordering).
            let keep = ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep);
            Ok(Transformed::yes(node.replace_children(wrapped, keep)?))
        })?
        .data;
    Ok(wrap(&plan))
}

/// Runs `plan` and collects its batches, counting them against the query's memory pool (the
/// one in `task`) and `max_result_rows`, so an answer too large to hold fails early with a
/// message instead of growing without bound.
pub(crate) async fn collect_limited(
    plan: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
    max_result_rows: usize,
) -> Result<Result<Vec<RecordBatch>, SqlError>, DataFusionError> {
    let reservation = MemoryConsumer::new("the query's result").register(task.memory_pool());
    let mut stream = execute_stream(yielding(plan)?, task)?;
    let mut batches = Vec::new();
    let mut rows = 0usize;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows += batch.num_rows();
        if rows > max_result_rows {
            return Ok(Err(SqlError::TooLarge {
                limit: "dashboard.limits.max_result_rows".into(),
                message: format!(
                    "query too large: the answer has more than {max_result_rows} rows \
                     (dashboard.limits.max_result_rows); aggregate more or add a LIMIT"
                ),
            }));
        }
        reservation.try_grow(batch.get_array_memory_size())?;
        batches.push(batch);
    }
    Ok(Ok(batches))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParser;

    fn statement(sql: &str) -> DfStatement {
        DFParser::parse_sql(sql).unwrap().pop_front().unwrap()
    }

    #[test]
    fn long_chains_are_refused_before_planning() {
        let limits = QueryLimits::default();
        let ok = format!("SELECT {}", vec!["1"; 200].join("+"));
        check_statement(&statement(&ok), &limits).unwrap();
        for sql in [
            format!("SELECT {}", vec!["1"; 3000].join("+")),
            format!(
                "SELECT * FROM t WHERE {}",
                (0..2000)
                    .map(|i| format!("c = 'c{i}'"))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            ),
            vec!["SELECT 1"; 1000].join(" UNION ALL "),
            format!("EXPLAIN SELECT {}", vec!["1"; 3000].join("+")),
        ] {
            let e = check_statement(&statement(&sql), &limits).unwrap_err();
            assert_eq!(e.code(), "query_too_complex");
            assert!(e.is_client_error());
            assert!(e.to_string().contains("max_expr_depth"), "{e}");
        }
    }

    #[test]
    fn long_text_is_refused() {
        let limits = QueryLimits {
            max_sql_bytes: 10,
            ..QueryLimits::default()
        };
        check_sql_size("SELECT 1", &limits).unwrap();
        let e = check_sql_size("SELECT 1 + 2 + 3", &limits).unwrap_err();
        assert!(e.to_string().contains("max_sql_bytes"), "{e}");
    }

    #[test]
    fn the_pool_enforces_the_query_and_the_total_budget() {
        let total = TotalMemory::new(3 * MIB);
        let a: Arc<dyn MemoryPool> = Arc::new(QueryMemoryPool::new(2 * MIB, total.clone()));
        let b: Arc<dyn MemoryPool> = Arc::new(QueryMemoryPool::new(2 * MIB, total.clone()));
        let ra = MemoryConsumer::new("join").register(&a);
        ra.try_grow(MIB).unwrap();
        let e = ra.try_grow(2 * MIB).unwrap_err();
        assert!(matches!(
            memory_refusal(&e),
            Some(SqlError::TooLarge { .. })
        ));
        ra.try_grow(MIB).unwrap();
        let rb = MemoryConsumer::new("sort").register(&b);
        let e = rb.try_grow(2 * MIB).unwrap_err();
        assert!(matches!(memory_refusal(&e), Some(SqlError::Busy(_))), "{e}");
        assert_eq!(total.used(), 2 * MIB);
        drop(ra);
        assert_eq!(total.used(), 0);
        rb.try_grow(2 * MIB).unwrap();
    }
}
