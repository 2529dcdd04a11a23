//! The GA4 table provider against the local GA4 stand-in: what reaches GA4 (one runReport with
//! the query's dimensions, metrics, filters, order and limit), what DataFusion still does, what
//! is refused, and that the answers equal GA4's own definitions computed from the raw events.
//! `queries` holds the SQL route, `generated` the randomized SQL against the individual sessions,
//! `specs` dashboard specs over GA4; this file the stand-in set-up and the helpers they share.

mod generated;
mod queries;
mod specs;

use standins::ga4 as ga4_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use connectors::ga4::Ga4Config;
use ga4_support::{Event, OTHER_PROPERTY, PROPERTY, StandIn, metric};
use serde_json::{Value, json};
use sql::arrow::array::{Date32Array, Int64Array, RecordBatch, StringArray};
use sql::arrow::datatypes::{DataType, Field, Schema};
use sql::datafusion::catalog::MemorySchemaProvider;
use sql::datafusion::common::ScalarValue;
use sql::datafusion::datasource::MemTable;
use sql::datafusion::execution::session_state::SessionStateBuilder;
use sql::datafusion::parquet::arrow::ArrowWriter;
use sql::datafusion::physical_plan::{ExecutionPlan, collect, displayable};
use sql::datafusion::prelude::SessionContext;
use sql::ga4::{Ga4Source, Ga4SourceConfig, Ga4TenantConfig};
use sql::source::ExternalSource;

struct Setup {
    standin: StandIn,
    source: Arc<Ga4Source>,
    ctx: SessionContext,
}

async fn setup() -> Setup {
    let standin = StandIn::start().await;
    let tenant = |property: &str| Ga4TenantConfig {
        service_account_key: standin.key_json(),
        tables: [("web".to_string(), property.to_string())].into(),
    };
    let source = Arc::new(
        Ga4Source::new(Ga4SourceConfig {
            client: Ga4Config {
                api_base: standin.base_url.clone(),
                page_size: 50,
                initial_backoff: Duration::from_millis(5),
                ..Ga4Config::default()
            },
            tenants: [
                ("acme".to_string(), tenant(PROPERTY)),
                ("globex".to_string(), tenant(OTHER_PROPERTY)),
            ]
            .into(),
        })
        .unwrap(),
    );
    let state = source
        .configure(SessionStateBuilder::new().with_default_features())
        .build();
    let ctx = SessionContext::new_with_state(state);
    let schema = Arc::new(MemorySchemaProvider::new());
    ctx.catalog("datafusion")
        .unwrap()
        .register_schema("ga4", schema)
        .unwrap();
    let web = source.table("acme", "web").await.unwrap().unwrap();
    ctx.register_table("ga4.web", web).unwrap();
    standin.clear_log();
    Setup {
        standin,
        source,
        ctx,
    }
}

struct Answer {
    rows: Vec<Vec<ScalarValue>>,
    plan: String,
    warnings: Vec<String>,
    schema: Arc<Schema>,
}

async fn query(ctx: &SessionContext, sql: &str) -> Result<Answer, String> {
    let df = ctx.sql(sql).await.map_err(|e| e.to_string())?;
    let plan: Arc<dyn ExecutionPlan> =
        df.create_physical_plan().await.map_err(|e| e.to_string())?;
    let batches = collect(Arc::clone(&plan), ctx.task_ctx())
        .await
        .map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for b in &batches {
        for i in 0..b.num_rows() {
            rows.push(
                b.columns()
                    .iter()
                    .map(|c| ScalarValue::try_from_array(c, i).unwrap())
                    .collect(),
            );
        }
    }
    Ok(Answer {
        rows,
        plan: displayable(plan.as_ref()).indent(true).to_string(),
        warnings: sql::ga4::warnings(&plan),
        schema: plan.schema(),
    })
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn date32(d: NaiveDate) -> ScalarValue {
    ScalarValue::Date32(Some(
        (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32,
    ))
}

fn text(s: &str) -> ScalarValue {
    ScalarValue::Utf8(Some(s.to_string()))
}

fn int(v: f64) -> ScalarValue {
    ScalarValue::Int64(Some(v as i64))
}

fn assert_clean(standin: &StandIn) {
    assert!(
        standin.violations().is_empty(),
        "{:?}",
        standin.violations()
    );
}

fn users_between(events: &[Event], from: &str, to: &str) -> i64 {
    users_where(events, from, to, |_| true)
}

/// Distinct users of the events on days `from..=to` that `keep` keeps.
fn users_where(events: &[Event], from: &str, to: &str, keep: impl Fn(&Event) -> bool) -> i64 {
    events
        .iter()
        .filter(|e| e.date >= date(from) && e.date <= date(to) && keep(e))
        .map(|e| e.user)
        .collect::<BTreeSet<_>>()
        .len() as i64
}

/// The channels the events came from.
fn channels(events: &[Event]) -> BTreeSet<String> {
    events.iter().map(|e| e.channel.to_string()).collect()
}

async fn refused(ctx: &SessionContext, sql: &str, needles: &[&str]) {
    let err = query(ctx, sql)
        .await
        .err()
        .unwrap_or_else(|| panic!("{sql} ran"));
    for n in needles {
        assert!(err.contains(n), "{sql}\n→ {err}\n(missing {n:?})");
    }
}

struct Draw(u64);

impl Draw {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn as_f64(v: &ScalarValue) -> Option<f64> {
    match v {
        ScalarValue::Int64(Some(i)) => Some(*i as f64),
        ScalarValue::Float64(Some(f)) => Some(*f),
        _ => None,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// The GA4 dimension value of a result cell (dates as GA4 writes them).
fn dimension_text(v: &ScalarValue) -> String {
    match v {
        ScalarValue::Date32(Some(d)) => (NaiveDate::default() + chrono::Days::new(*d as u64))
            .format("%Y%m%d")
            .to_string(),
        ScalarValue::Utf8(Some(s)) => s.clone(),
        other => other.to_string(),
    }
}
