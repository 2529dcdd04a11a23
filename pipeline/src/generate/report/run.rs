//! Generating one run of a report: its blocks answered by the dashboard engine, charts drawn,
//! the title and intro templates rendered, the whole laid out ([`super::document`]) and turned
//! into notifications — one per recipient and channel, each with an id derived from the run, so
//! a run generated again after a crash enqueues nothing twice and a recipient that failed is
//! retried alone.
//!
//! A block whose query fails (an unknown table, a timeout, a chart that does not fit its answer)
//! renders an explanatory placeholder and marks the run `partial`; it never drops the report.

use std::time::Instant;

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use connectors::store::{NewNotification, REPORT_KIND, RunStatus, StoredDestination};
use serde_json::{Map, Value, json};
use sql::DashboardEngine;

use super::chart::{self, ChartSpec};
use super::definition::{ReportSpec, with_run_time};
use super::document::{self, RenderedBlock, ReportDocument, ReportHeader};
use super::table::Table;
use crate::generate::{TemplateLimits, template};
use crate::queries::QueryRuntime;

/// What generating a report needs: the dashboard engine, where its queries run, and the limits
/// its templates render under.
#[derive(Clone)]
pub struct ReportContext {
    /// The dashboard engine.
    pub engine: DashboardEngine,
    /// The dashboard query runtime (admission per tenant, timeout).
    pub queries: QueryRuntime,
    /// The `[templates]` limits.
    pub templates: TemplateLimits,
}

/// One run, generated.
#[derive(Clone, Debug)]
pub struct GeneratedRun {
    /// The report as people see it.
    pub document: ReportDocument,
    /// `Complete`, or `Partial` when a block failed.
    pub status: RunStatus,
    /// Which blocks failed and why.
    pub errors: Vec<String>,
    /// Each block's answer for webhooks: name, title, columns, rows (up to `max_rows`), row
    /// count, error, chart (SVG).
    pub blocks: Vec<Value>,
    /// The rendered title.
    pub title: String,
}

/// Which run is being generated.
#[derive(Clone, Debug)]
pub struct RunRef<'a> {
    /// Owning tenant.
    pub tenant: &'a str,
    /// Report id.
    pub report_id: &'a str,
    /// Report version.
    pub version: u64,
    /// Run id.
    pub run_id: &'a str,
    /// The instant the run is for.
    pub at: DateTime<Utc>,
    /// The report's zone.
    pub tz: Tz,
    /// `schedule` or `manual`.
    pub trigger: &'a str,
}

/// Answers, draws and lays out every block of `spec` for `run`.
pub async fn generate(ctx: &ReportContext, spec: &ReportSpec, run: &RunRef<'_>) -> GeneratedRun {
    let mut rendered = Vec::with_capacity(spec.blocks.len());
    let mut context_blocks = Map::new();
    let mut webhook_blocks = Vec::with_capacity(spec.blocks.len());
    let mut errors = Vec::new();
    for block in &spec.blocks {
        let title = block.title.clone().unwrap_or_else(|| block.name.clone());
        let started = Instant::now();
        let answer = answer_block(ctx, run, block.query.as_ref(), block.sql.as_deref()).await;
        let outcome = match answer {
            Ok(table) => draw(&block.chart, table).await,
            Err(e) => Err(e),
        };
        let (table, chart, error) = match outcome {
            Ok((table, chart)) => (Some(table), chart, None),
            Err(e) => {
                errors.push(format!("block {}: {e}", block.name));
                (None, None, Some(e))
            }
        };
        tracing::debug!(
            tenant = run.tenant,
            report = run.report_id,
            block = block.name,
            elapsed_ms = started.elapsed().as_millis() as u64,
            failed = error.is_some(),
            "report block"
        );
        context_blocks.insert(
            block.name.clone(),
            block_context(
                &title,
                table.as_ref(),
                error.as_deref(),
                spec.format.max_rows,
            ),
        );
        let mut webhook = block_context(
            &title,
            table.as_ref(),
            error.as_deref(),
            spec.format.max_rows,
        );
        webhook["name"] = json!(block.name);
        if let Some(chart) = &chart {
            webhook["chart"] =
                json!({"svg": chart.svg, "width": chart.width, "height": chart.height});
        }
        webhook_blocks.push(webhook);
        rendered.push(RenderedBlock {
            name: block.name.clone(),
            title,
            table: table.filter(|_| block.table),
            chart,
            error,
        });
    }
    let context = json!({
        "report": {"id": run.report_id, "name": spec.name, "version": run.version},
        "run": {
            "id": run.run_id,
            "scheduled_for": local_time(run.at, run.tz),
            "timezone": run.tz.name(),
            "trigger": run.trigger,
        },
        "blocks": Value::Object(context_blocks),
    });
    let title = render_text(
        spec.title.as_deref(),
        &context,
        &ctx.templates,
        &mut errors,
        "title",
    )
    .unwrap_or_else(|| spec.name.clone());
    let intro = render_text(
        spec.intro.as_deref(),
        &context,
        &ctx.templates,
        &mut errors,
        "intro",
    )
    .unwrap_or_default();
    let status = if errors.is_empty() {
        RunStatus::Complete
    } else {
        RunStatus::Partial
    };
    let header = ReportHeader {
        name: spec.name.clone(),
        title: title.clone(),
        intro,
        scheduled_for: local_time(run.at, run.tz),
        timezone: run.tz.name().to_string(),
        partial: status == RunStatus::Partial,
    };
    let document = tokio::task::spawn_blocking(move || document::render_report(&header, &rendered))
        .await
        .unwrap_or_else(|e| {
            let text = format!("{}: the report could not be laid out ({e})", spec.name);
            ReportDocument {
                subject: format!("[partial] {}", spec.name),
                html: String::new(),
                text,
                attachments: Vec::new(),
            }
        });
    GeneratedRun {
        document,
        status,
        errors,
        blocks: webhook_blocks,
        title,
    }
}

/// The block's answer as a table, from the engine, under the query runtime's admission and
/// timeout.
async fn answer_block(
    ctx: &ReportContext,
    run: &RunRef<'_>,
    query: Option<&Value>,
    sql_text: Option<&str>,
) -> Result<Table, String> {
    let engine = ctx.engine.clone();
    let tenant = run.tenant.to_string();
    let answer = match (query, sql_text) {
        (Some(query), _) => {
            let query = with_run_time(query, run.at, run.tz);
            ctx.queries
                .run(
                    run.tenant,
                    then_return_freed(async move { engine.query_spec(&tenant, &query).await }),
                )
                .await
        }
        (None, Some(text)) => {
            let text = text.to_string();
            ctx.queries
                .run(
                    run.tenant,
                    then_return_freed(async move { engine.sql(&tenant, &text).await }),
                )
                .await
        }
        (None, None) => return Err("the block has neither a query nor SQL".into()),
    };
    match answer {
        Ok(Ok(result)) => Table::from_query_result(&result).map_err(|e| e.to_string()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(refused) => Err(refused.to_string()),
    }
}

/// Runs a block's `query`, then returns what it freed to the OS from the thread it ran on, where
/// its operators allocated (the answer itself is kept).
///
/// A report's blocks are answered one at a time; this makes each start from the memory the one
/// before it used, not on top of it. Left to mimalloc's 1 s purge delay, the six queries of a
/// report over 1,000,000 orders (~200 ms) stacked their freed hash tables and buffers: 140–270
/// MiB added over 22 runs, varying with which threads freed what. Returned after each query,
/// the peak is the first block's warm-up and the largest block (grouping every customer):
/// 95–117 MiB, for ~15 ms more per run in page faults (BENCHMARKS.md, scheduled reports).
async fn then_return_freed<T>(query: impl std::future::Future<Output = T>) -> T {
    let answer = query.await;
    crate::memory::return_freed();
    answer
}

/// The chart the block asks for, drawn off the executor.
async fn draw(choice: &Value, table: Table) -> Result<(Table, Option<chart::Chart>), String> {
    let spec: Option<ChartSpec> = match choice {
        Value::String(s) if s == "none" => None,
        Value::String(_) => chart::auto_chart(&table),
        other => Some(serde_json::from_value(other.clone()).map_err(|e| format!("chart: {e}"))?),
    };
    let Some(spec) = spec else {
        return Ok((table, None));
    };
    tokio::task::spawn_blocking(move || {
        let drawn = chart::render(&spec, &table).map_err(|e| format!("chart: {e}"))?;
        Ok((table, Some(drawn)))
    })
    .await
    .map_err(|e| format!("chart: {e}"))?
}

fn render_text(
    text: Option<&str>,
    context: &Value,
    limits: &TemplateLimits,
    errors: &mut Vec<String>,
    what: &str,
) -> Option<String> {
    let text = text?;
    match template::render_within(text, context.clone(), limits) {
        Ok((rendered, _)) => Some(rendered.trim().to_string()),
        Err(e) => {
            errors.push(format!("{what}: {e}"));
            None
        }
    }
}

/// What templates see of a block (`blocks.<name>`): its rows as objects, the sum of each
/// numeric column (`values`), the first numeric column's sum (`total`) and, with `compare`, its
/// change on the compared period in percent (`change_percent`, one decimal).
fn block_context(
    title: &str,
    table: Option<&Table>,
    error: Option<&str>,
    max_rows: usize,
) -> Value {
    let Some(table) = table else {
        return json!({"title": title, "error": error, "row_count": 0, "rows": [], "values": {}});
    };
    let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
    let rows: Vec<Value> = table
        .rows
        .iter()
        .take(max_rows)
        .map(|row| {
            Value::Object(
                names
                    .iter()
                    .zip(row)
                    .map(|(name, value)| (name.to_string(), value.clone()))
                    .collect(),
            )
        })
        .collect();
    let mut values = Map::new();
    for (i, name) in names.iter().enumerate() {
        let numbers: Vec<f64> = table
            .rows
            .iter()
            .filter_map(|r| r.get(i)?.as_f64())
            .collect();
        if !numbers.is_empty() && table.columns[i].kind == super::table::ColumnKind::Number {
            values.insert(name.to_string(), json!(tidy(numbers.iter().sum())));
        }
    }
    let first = names
        .iter()
        .find(|n| values.contains_key(**n) && !n.ends_with(".compare") && !n.contains(".change"));
    let total = first.and_then(|n| values.get(*n)).cloned();
    let change_percent = first.and_then(|n| {
        let current = values.get(*n)?.as_f64()?;
        let before = values.get(&format!("{n}.compare"))?.as_f64()?;
        (before != 0.0).then(|| ((current - before) / before.abs() * 1000.0).round() / 10.0)
    });
    json!({
        "title": title,
        "error": error,
        "columns": names,
        "row_count": table.rows.len(),
        "rows": rows,
        "first": rows.first(),
        "values": values,
        "total": total,
        "change_percent": change_percent,
    })
}

/// Whole sums without a fraction, others to 2 decimals: what a person expects in a sentence.
fn tidy(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        json!(x as i64)
    } else {
        json!((x * 100.0).round() / 100.0)
    }
}

fn local_time(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz)
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Deterministic notification id for one (run, destination, recipient): the dataflow's own
/// notification id over those parts.
pub fn notification_id(run_id: &str, destination: &str, recipient: Option<&str>) -> String {
    operators::intent::intent_id(&[run_id, destination, recipient.unwrap_or("")])
}

/// The notifications of a generated run: one per destination, and for email destinations one
/// per recipient (the report's `to` for it, else the destination's own list), each carrying
/// the whole report in its payload.
pub fn notifications(
    run: &RunRef<'_>,
    spec: &ReportSpec,
    generated: &GeneratedRun,
    destinations: &[StoredDestination],
    created_at_ms: i64,
) -> Vec<NewNotification> {
    let attachments: Vec<Value> = generated
        .document
        .attachments
        .iter()
        .map(|a| {
            json!({
                "filename": a.filename,
                "content_type": a.content_type,
                "content_id": a.content_id,
                "data_base64": base64::engine::general_purpose::STANDARD.encode(&a.data),
            })
        })
        .collect();
    let body = json!({
        "tenant": run.tenant,
        "kind": REPORT_KIND,
        "report": {"id": run.report_id, "name": spec.name, "version": run.version},
        "run": {
            "id": run.run_id,
            "scheduled_for": local_time(run.at, run.tz),
            "scheduled_ms": run.at.timestamp_millis(),
            "timezone": run.tz.name(),
            "trigger": run.trigger,
            "status": generated.status.as_str(),
            "errors": generated.errors,
        },
        "subject": generated.document.subject,
        "message": generated.document.text,
        "html": generated.document.html,
        "attachments": attachments,
        "blocks": generated.blocks,
    });
    let mut out = Vec::new();
    for wanted in &spec.destinations {
        let Some(destination) = destinations.iter().find(|d| d.id == wanted.id()) else {
            // Deleted since the report was saved: the run is recorded without it.
            continue;
        };
        let recipients: Vec<Option<String>> = if destination.kind == "email" {
            let listed = if wanted.recipients().is_empty() {
                email_recipients(destination)
            } else {
                wanted.recipients().to_vec()
            };
            listed.into_iter().map(Some).collect()
        } else {
            vec![None]
        };
        for recipient in recipients {
            let id = notification_id(run.run_id, &destination.id, recipient.as_deref());
            let mut payload = body.clone();
            payload["id"] = json!(id);
            if let Some(to) = &recipient {
                payload["recipient"] = json!(to);
            }
            out.push(NewNotification {
                id,
                tenant: run.tenant.to_string(),
                rule_id: run.report_id.to_string(),
                kind: REPORT_KIND.to_string(),
                group_key: run.run_id.to_string(),
                payload: payload.to_string(),
                created_at_ms,
                destination_ids: vec![destination.id.clone()],
            });
        }
    }
    out
}

/// An email destination's own recipients (`config.to`), read as the email sink reads its
/// configuration.
fn email_recipients(destination: &StoredDestination) -> Vec<String> {
    serde_json::from_str::<connectors::sinks::EmailConfig>(&destination.config)
        .map(|config| config.to)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_run_destination_and_recipient_only() {
        let a = notification_id("run_1", "mail", Some("a@shop.example"));
        assert_eq!(a, notification_id("run_1", "mail", Some("a@shop.example")));
        assert_ne!(a, notification_id("run_1", "mail", Some("b@shop.example")));
        assert_ne!(a, notification_id("run_2", "mail", Some("a@shop.example")));
        assert_ne!(
            notification_id("run_1", "mail", None),
            notification_id("run_1", "slack", None)
        );
        // The separator keeps ("ab", "c") apart from ("a", "bc").
        assert_ne!(
            notification_id("ab", "c", None),
            notification_id("a", "bc", None)
        );
    }

    #[test]
    fn sums_read_like_people_write_them() {
        assert_eq!(tidy(1_250_000.0), json!(1_250_000));
        assert_eq!(tidy(2.345_6), json!(2.35));
    }
}
