//! A report's definition, as a tenant writes it to `POST /v1/reports`, and the checks it passes
//! before it is stored — so a bad cron, an unknown zone, a measure the model lacks or a template
//! that does not parse is a 400 naming the field when the report is created, never a failure at
//! 09:00 on Monday.
//!
//! ```json
//! {
//!   "name": "Weekly revenue",
//!   "schedule": {"cron": "0 9 * * MON", "timezone": "Asia/Seoul", "catch_up": "latest"},
//!   "title": "Revenue last week: {{ blocks.revenue.total }}",
//!   "intro": "{{ blocks.revenue.total }} ({{ blocks.revenue.change_percent }}% on the week before)",
//!   "blocks": [
//!     {"name": "revenue", "title": "Revenue by channel",
//!      "query": {"measures": ["orders.revenue"], "dimensions": ["orders.channel"],
//!                "time": {"dimension": "orders.order_ts", "range": "last week"},
//!                "compare": "previousPeriod"},
//!      "chart": "auto"},
//!     {"name": "top_products", "sql": "SELECT product, sum(revenue) AS revenue FROM …",
//!      "chart": {"kind": "bar", "x": "product", "y": ["revenue"]}, "table": true}
//!   ],
//!   "destinations": ["ops-slack", {"destination": "ops-email", "to": ["ceo@shop.example"]}],
//!   "format": {"max_rows": 50}
//! }
//! ```
//!
//! A block is a dashboard spec (the `/v1/query` JSON: `abc`, `quadrant`, `compare` included) or
//! read-only SQL. Relative ranges in a spec ("last week", "yesterday", "month to date") resolve
//! at the run's scheduled instant in the report's zone (`time.now` and `time.timezone` are set
//! from the run unless the block sets them), so re-running a run gives the same content.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::generate::{TemplateError, TemplateLimits, template};

/// Most blocks in one report.
pub const MAX_BLOCKS: usize = 20;

/// Most recipients per destination of one report.
pub const MAX_RECIPIENTS: usize = 100;

/// Rows a block shows by default (its CSV attachment has them all).
pub const DEFAULT_MAX_ROWS: usize = 50;

/// A report as a tenant defines it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReportSpec {
    /// Id; taken from the URL on `PUT`, generated when absent on `POST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Name, shown to people.
    pub name: String,
    /// When it runs.
    pub schedule: ScheduleDef,
    /// Subject line / heading: a minijinja template over `report`, `run` and `blocks`; the
    /// name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// A paragraph under the title: a template like `title`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intro: Option<String>,
    /// The content, in order.
    pub blocks: Vec<BlockDef>,
    /// Where each run goes.
    pub destinations: Vec<ReportDestination>,
    /// Whether the schedule runs (a disabled report can still be run by hand).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How it is laid out.
    #[serde(default)]
    pub format: FormatOptions,
}

fn yes() -> bool {
    true
}

/// The schedule part of a report.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDef {
    /// Five-field cron or a preset (`@daily`, `@weekly`…).
    pub cron: String,
    /// IANA zone; the tenant's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// What to run after downtime: `latest` (default), `all` or `none`.
    #[serde(default)]
    pub catch_up: operators::CatchUp,
}

/// One block of content.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BlockDef {
    /// Name, unique in the report: how templates refer to it (`blocks.<name>`), and its
    /// attachments' file names.
    pub name: String,
    /// Heading; the name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// A dashboard spec (the `/v1/query` JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<Value>,
    /// Read-only SQL (as `/v1/sql`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// `"auto"` (default: the chart the answer's shape suggests, if any), `"none"`, or an
    /// explicit chart `{"kind": "line"|"bar"|"stacked_bar"|"pareto"|"quadrant", "x", "y",
    /// "series"}`.
    #[serde(default = "auto_chart")]
    pub chart: Value,
    /// Whether the answer is shown as a table too.
    #[serde(default = "yes")]
    pub table: bool,
}

fn auto_chart() -> Value {
    Value::String("auto".into())
}

/// A destination of a report: its id, and for email destinations optionally the recipients
/// (the destination's own `to` list otherwise).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum ReportDestination {
    /// Just the destination's id.
    Id(String),
    /// The destination with this report's recipients.
    WithRecipients {
        /// Destination id.
        destination: String,
        /// Email addresses; each gets its own message, retried on its own.
        #[serde(default)]
        to: Vec<String>,
    },
}

impl ReportDestination {
    /// The destination's id.
    pub fn id(&self) -> &str {
        match self {
            Self::Id(id)
            | Self::WithRecipients {
                destination: id, ..
            } => id,
        }
    }

    /// The recipients this report names for it (none: the destination's own).
    pub fn recipients(&self) -> &[String] {
        match self {
            Self::Id(_) => &[],
            Self::WithRecipients { to, .. } => to,
        }
    }
}

/// Layout options.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FormatOptions {
    /// Rows of each block that templates (`blocks.<name>.rows`) and webhook payloads carry;
    /// the CSV attachment has every row.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
}

fn default_max_rows() -> usize {
    DEFAULT_MAX_ROWS
}

impl Default for FormatOptions {
    fn default() -> Self {
        Self {
            max_rows: DEFAULT_MAX_ROWS,
        }
    }
}

/// What is wrong with a definition, naming the field as the definition shows it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct DefinitionError {
    /// `schedule.cron`, `blocks[2].query.measures[0]`…
    pub field: String,
    /// What is wrong, and what would do.
    pub message: String,
}

impl DefinitionError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl ReportSpec {
    /// Reads a definition from JSON; serde's message names the field.
    pub fn from_json(body: &[u8]) -> Result<Self, DefinitionError> {
        serde_json::from_slice(body).map_err(|e| DefinitionError::new("report", e.to_string()))
    }

    /// The report's zone: its own, else the tenant's.
    pub fn timezone<'a>(&'a self, tenant_tz: &'a str) -> &'a str {
        self.schedule.timezone.as_deref().unwrap_or(tenant_tz)
    }

    /// The dataflow schedule of this report (`since_ms`: when it was created or changed).
    pub fn schedule(
        &self,
        tenant: &str,
        id: &str,
        version: u64,
        tenant_tz: &str,
        since_ms: i64,
    ) -> Result<operators::Schedule, DefinitionError> {
        operators::Schedule::new(
            tenant,
            id,
            version,
            &operators::ScheduleSpec {
                cron: self.schedule.cron.clone(),
                timezone: self.timezone(tenant_tz).to_string(),
                catch_up: self.schedule.catch_up,
            },
            since_ms,
        )
        .map_err(|e| {
            let field = if self.schedule.timezone.is_none() && e.field == "schedule.timezone" {
                // The tenant's zone is the one that failed; say so.
                "schedule.timezone (the tenant's time zone)".to_string()
            } else {
                e.field.clone()
            };
            DefinitionError::new(field, e.problem.clone())
        })
    }

    /// Checks what serde cannot: names, sizes, the schedule, each block's query against the
    /// semantic model, the templates. Destinations and SQL blocks are checked by the caller
    /// (they need the store and the engine).
    pub fn check(
        &self,
        tenant_tz: &str,
        model: &sql::model::SemanticModel,
        limits: &TemplateLimits,
    ) -> Result<(), DefinitionError> {
        if self.name.trim().is_empty() || self.name.chars().count() > 200 {
            return Err(DefinitionError::new("name", "must be 1 to 200 characters"));
        }
        self.schedule("check", "check", 1, tenant_tz, 0)?;
        let tz: Tz = self
            .timezone(tenant_tz)
            .parse()
            .map_err(|_| DefinitionError::new("schedule.timezone", "unknown time zone"))?;
        if self.blocks.is_empty() || self.blocks.len() > MAX_BLOCKS {
            return Err(DefinitionError::new(
                "blocks",
                format!("a report has 1 to {MAX_BLOCKS} blocks"),
            ));
        }
        if self.destinations.is_empty() {
            return Err(DefinitionError::new(
                "destinations",
                "name at least one destination (its id)",
            ));
        }
        for (i, destination) in self.destinations.iter().enumerate() {
            if destination.recipients().len() > MAX_RECIPIENTS {
                return Err(DefinitionError::new(
                    format!("destinations[{i}].to"),
                    format!("at most {MAX_RECIPIENTS} recipients"),
                ));
            }
            for (j, to) in destination.recipients().iter().enumerate() {
                if !plausible_address(to) {
                    return Err(DefinitionError::new(
                        format!("destinations[{i}].to[{j}]"),
                        format!("'{to}' is not an email address"),
                    ));
                }
            }
        }
        if !(1..=10_000).contains(&self.format.max_rows) {
            return Err(DefinitionError::new(
                "format.max_rows",
                "must be between 1 and 10000",
            ));
        }
        let now = Utc::now();
        for (i, block) in self.blocks.iter().enumerate() {
            let field = format!("blocks[{i}]");
            if !valid_block_name(&block.name) {
                return Err(DefinitionError::new(
                    format!("{field}.name"),
                    "use 1 to 64 lowercase letters, digits and underscores, starting with a letter \
                     (templates refer to it as blocks.<name>)",
                ));
            }
            if self.blocks[..i].iter().any(|b| b.name == block.name) {
                return Err(DefinitionError::new(
                    format!("{field}.name"),
                    format!("another block is already named '{}'", block.name),
                ));
            }
            match (&block.query, &block.sql) {
                (Some(query), None) => {
                    let query = with_run_time(query, now, tz);
                    sql::spec::parse(model, &query, now).map_err(|e| match e {
                        sql::SqlError::BadRequest { field: f, message } => {
                            DefinitionError::new(format!("{field}.query.{f}"), message)
                        }
                        other => DefinitionError::new(format!("{field}.query"), other.to_string()),
                    })?;
                }
                (None, Some(text)) if !text.trim().is_empty() => {}
                _ => {
                    return Err(DefinitionError::new(
                        field,
                        "give exactly one of `query` (a dashboard spec) or `sql`",
                    ));
                }
            }
            check_chart_choice(&block.chart)
                .map_err(|m| DefinitionError::new(format!("{field}.chart"), m))?;
        }
        let sample = self.sample_context(tz);
        for (name, text) in [("title", &self.title), ("intro", &self.intro)] {
            if let Some(text) = text {
                template::check(text, std::slice::from_ref(&sample), limits)
                    .map_err(|e| DefinitionError::new(name, e.to_string()))?;
                // The sample has every block with every key a real run has, so a name it lacks
                // (a misspelt block) would fail every run: refuse it now. Other failures on the
                // sample's made-up numbers may not happen on real answers. (`check` rendered it
                // within the limits already, so this render is bounded.)
                if let Err(TemplateError::Failed(e)) = template::render(text, &sample, limits)
                    && e.contains("undefined")
                {
                    return Err(DefinitionError::new(
                        name,
                        format!(
                            "{e}; templates see report, run and blocks.<name> of this report's blocks"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// What the title and intro templates see, with made-up values: for the trial render at
    /// creation.
    fn sample_context(&self, tz: Tz) -> Value {
        let blocks: serde_json::Map<String, Value> = self
            .blocks
            .iter()
            .map(|b| {
                let title = b.title.clone().unwrap_or_else(|| b.name.clone());
                (
                    b.name.clone(),
                    serde_json::json!({"title": title, "error": null, "columns": [],
                        "row_count": 0, "rows": [], "first": null, "values": {},
                        "total": 0, "change_percent": 0.0}),
                )
            })
            .collect();
        serde_json::json!({
            "report": {"id": self.id, "name": self.name, "version": 1},
            "run": {"id": "run_sample", "scheduled_for": Utc::now().with_timezone(&tz).to_rfc3339(),
                    "timezone": tz.name(), "trigger": "schedule"},
            "blocks": blocks,
        })
    }
}

/// The chart a block asks for must be `auto`, `none` or an object naming a known kind; its
/// columns are checked against the answer when the report runs (a mismatch is that block's
/// placeholder).
fn check_chart_choice(chart: &Value) -> Result<(), String> {
    match chart {
        Value::String(s) if s == "auto" || s == "none" => Ok(()),
        Value::Object(_) => serde_json::from_value::<super::chart::ChartSpec>(chart.clone())
            .map(|_| ())
            .map_err(|e| e.to_string()),
        _ => Err("use \"auto\", \"none\" or {\"kind\": …, \"x\": …, \"y\": […]}".into()),
    }
}

fn valid_block_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A cheap shape check; the email sink parses addresses fully when the destination is used.
fn plausible_address(address: &str) -> bool {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !address
                    .chars()
                    .any(|c| c.is_whitespace() || c == '<' || c == '>')
                && address.len() <= 254
        }
        None => false,
    }
}

/// A block's spec as it runs at `at` in `tz`: relative ranges resolve at the run's instant and
/// in the report's zone, unless the block says otherwise.
pub fn with_run_time(query: &Value, at: DateTime<Utc>, tz: Tz) -> Value {
    let mut query = query.clone();
    if let Some(time) = query.get_mut("time").and_then(Value::as_object_mut) {
        time.entry("now")
            .or_insert_with(|| Value::String(at.to_rfc3339()));
        time.entry("timezone")
            .or_insert_with(|| Value::String(tz.name().to_string()));
    }
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_names_are_template_identifiers() {
        assert!(valid_block_name("revenue_by_channel2"));
        for bad in ["", "Revenue", "2x", "a-b", "a b", &"a".repeat(65)] {
            assert!(!valid_block_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn run_time_fills_only_what_the_block_leaves_open() {
        let at = DateTime::parse_from_rfc3339("2026-03-09T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let tz: Tz = "Asia/Seoul".parse().expect("zone");
        let query =
            serde_json::json!({"time": {"dimension": "orders.order_ts", "timezone": "UTC"}});
        let ran = with_run_time(&query, at, tz);
        assert_eq!(ran["time"]["timezone"], "UTC");
        assert_eq!(ran["time"]["now"], "2026-03-09T00:00:00+00:00");
        let untimed = serde_json::json!({"measures": ["orders.revenue"]});
        assert_eq!(with_run_time(&untimed, at, tz), untimed);
    }

    #[test]
    fn destinations_read_as_ids_or_with_recipients() {
        let spec: Vec<ReportDestination> =
            serde_json::from_str(r#"["ops", {"destination": "mail", "to": ["a@shop.example"]}]"#)
                .expect("parse");
        assert_eq!(spec[0].id(), "ops");
        assert!(spec[0].recipients().is_empty());
        assert_eq!(spec[1].id(), "mail");
        assert_eq!(spec[1].recipients(), ["a@shop.example"]);
        assert!(plausible_address("a.b+c@shop.example"));
        assert!(!plausible_address("Bob <bob@shop.example>"));
        assert!(!plausible_address("bob@localhost"));
    }
}
