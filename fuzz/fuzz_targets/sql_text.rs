//! SQL text of `POST /v1/sql` or pgwire, through the guard the engine runs before planning:
//! the size limit, DataFusion's parser, the nesting check. Any text must be refused with an
//! error or pass — never overflow the stack or panic — and nothing deeper than the limit passes.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sql::datafusion::prelude::SessionContext;
use sql::limits::{self, QueryLimits};

static SESSION: LazyLock<SessionContext> = LazyLock::new(SessionContext::new);

fuzz_target!(|text: &str| {
    let limits = QueryLimits::default();
    if limits::check_sql_size(text, &limits).is_err() {
        return;
    }
    let state = SESSION.state();
    let dialect = state.config().options().sql_parser.dialect;
    let Ok(statement) = state.sql_to_statement(text, &dialect) else {
        return;
    };
    let _ = limits::check_statement(&statement, &limits);
});
