//! The semantic model: named, typed business members over warehouse tables, in TOML.
//!
//! ```toml
//! [sources.orders]                       # a source: one table, optionally joined to others
//! table = "orders"                       # a warehouse table, or `trino.orders` / `ga4.web`
//!                                        # (an external source's; columns of its joined
//!                                        # tables are then written `trino.customers.segment`)
//! description = "One row per order"
//!
//! [[sources.orders.joins]]               # star joins from the source table
//! table = "customers"
//! on = ["customer_id"]                   # equal-named columns on both sides
//! kind = "left"                          # left (default) | inner
//!
//! [sources.orders.dimensions.channel]
//! column = "channel"                     # a column (`table.column` for a joined table) …
//! type = "string"                        # string | number | boolean | time
//!
//! [sources.orders.dimensions.weekday]
//! sql = "date_part('dow', order_date)"   # … or a SQL expression over the tables' columns
//! type = "number"
//!
//! [sources.orders.dimensions.order_ts]
//! column = "order_ts"
//! type = "time"                          # a date or timestamp column
//! grains = ["hour", "day", "week", "month", "quarter", "year"]
//!
//! [sources.orders.measures.revenue]
//! type = "sum"                           # sum | count | count_distinct | avg | min | max | ratio
//! column = "revenue"                     # or sql = "..."; count needs neither (counts rows)
//! filter = "status = 'paid'"             # optional: aggregate only these rows
//!
//! [sources.orders.measures.aov]
//! type = "ratio"
//! numerator = "revenue"                  # a measure of this source …
//! denominator = "orders"                 # … or of another one: "ad_spend.spend"
//!
//! [sources.orders.segments.paid]
//! sql = "status = 'paid'"                # a named filter
//! ```
//!
//! Members are addressed as `source.member`. Dimensions are **conformed by name** across sources:
//! when a query mixes measures of several sources (a ratio such as ROAS = `orders.revenue` /
//! `ad_spend.spend`), each source is aggregated on its own dimension of the same name (`date`,
//! `channel`) and the results are joined on those values. SQL expressions are parsed by
//! DataFusion's SQL parser into expressions when a query is planned, never spliced into SQL text.
//!
//! Loading checks everything that can be checked without data (syntax, references, cycles,
//! types of keys); [`crate::DashboardEngine::new`] also resolves every expression against the
//! first tenant that has the tables, so column typos fail at start-up. Every error names the file,
//! the member and the problem.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use serde::Deserialize;

use crate::SqlError;
use crate::catalog::is_table_name;

/// A time grain: the size of a time bucket, and the calendar unit of a relative time range
/// (`last 3 weeks` is three whole week buckets). Its calendar arithmetic (the start of a bucket,
/// `n` buckets as a shift) is with the ranges, in [`crate::spec::time`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grain {
    /// Clock hours in the query's time zone.
    Hour,
    /// Calendar days.
    Day,
    /// ISO weeks, starting on Monday.
    Week,
    /// Calendar months.
    Month,
    /// Calendar quarters.
    Quarter,
    /// Calendar years.
    Year,
}

impl Grain {
    /// All grains, finest first.
    pub const ALL: [Grain; 6] = [
        Grain::Hour,
        Grain::Day,
        Grain::Week,
        Grain::Month,
        Grain::Quarter,
        Grain::Year,
    ];

    /// The grain's name, as in specs and `date_trunc`.
    pub fn as_str(self) -> &'static str {
        match self {
            Grain::Hour => "hour",
            Grain::Day => "day",
            Grain::Week => "week",
            Grain::Month => "month",
            Grain::Quarter => "quarter",
            Grain::Year => "year",
        }
    }

    /// Parses a grain name.
    pub fn parse(s: &str) -> Option<Grain> {
        Grain::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

impl fmt::Display for Grain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The type of a dimension, which decides which filter values it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DimensionType {
    /// Text.
    String,
    /// Integer or decimal.
    Number,
    /// true / false.
    Boolean,
    /// A date or timestamp; can be bucketed by grains and filtered by time ranges.
    Time,
}

impl fmt::Display for DimensionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DimensionType::String => "string",
            DimensionType::Number => "number",
            DimensionType::Boolean => "boolean",
            DimensionType::Time => "time",
        })
    }
}

/// Where a member's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueSource {
    /// A column: `(table, column)`; the table is the source's own unless written `table.column`.
    Column(String, String),
    /// A SQL expression over the source's tables.
    Sql(String),
}

/// A dimension: something to group and filter by.
#[derive(Debug, Clone)]
pub struct Dimension {
    /// Member name (without the source).
    pub name: String,
    /// Where the value comes from.
    pub value: ValueSource,
    /// Its type.
    pub kind: DimensionType,
    /// For time dimensions, the grains allowed (all if not declared).
    pub grains: Vec<Grain>,
    /// Free text for catalogs and UIs.
    pub description: Option<String>,
}

/// How a measure aggregates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Aggregation {
    /// `sum(x)`
    Sum,
    /// `count(x)`, or `count(*)` without a value
    Count,
    /// `count(DISTINCT x)`
    CountDistinct,
    /// `avg(x)`
    Avg,
    /// `min(x)`
    Min,
    /// `max(x)`
    Max,
    /// `numerator / denominator` of two other measures, computed after aggregation (NULL when
    /// the denominator is 0 or NULL).
    Ratio {
        /// The numerator measure.
        numerator: MemberRef,
        /// The denominator measure.
        denominator: MemberRef,
    },
}

/// A measure: an aggregate over a source's rows.
#[derive(Debug, Clone)]
pub struct Measure {
    /// Member name (without the source).
    pub name: String,
    /// How it aggregates.
    pub aggregation: Aggregation,
    /// What it aggregates (`None` for `count(*)` and ratios).
    pub value: Option<ValueSource>,
    /// Only rows matching this SQL predicate are aggregated.
    pub filter: Option<String>,
    /// Free text for catalogs and UIs.
    pub description: Option<String>,
    /// A display hint (`currency`, `percent`, `number`), passed through untouched.
    pub format: Option<String>,
}

/// A segment: a named, reusable filter.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Member name (without the source).
    pub name: String,
    /// The SQL predicate.
    pub sql: String,
    /// Free text for catalogs and UIs.
    pub description: Option<String>,
}

/// A join from a source's table to another table.
#[derive(Debug, Clone)]
pub struct Join {
    /// The joined table.
    pub table: String,
    /// Columns with the same name on both sides that must be equal.
    pub on: Vec<String>,
    /// `true` for an inner join, `false` for a left join.
    pub inner: bool,
}

/// A reference to a member: `source.member`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberRef {
    /// The source.
    pub source: String,
    /// The member within it.
    pub member: String,
}

impl MemberRef {
    /// Parses `source.member`; `None` unless it has exactly that shape.
    pub fn parse(s: &str) -> Option<Self> {
        let (source, member) = s.split_once('.')?;
        (is_identifier(source) && is_identifier(member)).then(|| MemberRef {
            source: source.to_string(),
            member: member.to_string(),
        })
    }
}

impl fmt::Display for MemberRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.source, self.member)
    }
}

/// A source: a table (with its joins) and the members defined over it.
#[derive(Debug, Clone)]
pub struct Source {
    /// Source name.
    pub name: String,
    /// The model file it was defined in.
    pub file: PathBuf,
    /// The table queried.
    pub table: String,
    /// Free text for catalogs and UIs.
    pub description: Option<String>,
    /// Tables joined to `table`.
    pub joins: Vec<Join>,
    /// Dimensions by name.
    pub dimensions: BTreeMap<String, Dimension>,
    /// Measures by name.
    pub measures: BTreeMap<String, Measure>,
    /// Segments by name.
    pub segments: BTreeMap<String, Segment>,
}

impl Source {
    /// All tables this source can read.
    pub fn tables(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.table.as_str()).chain(self.joins.iter().map(|j| j.table.as_str()))
    }

    pub(crate) fn error(&self, member: &str, message: impl Into<String>) -> SqlError {
        SqlError::Model {
            file: self.file.clone(),
            member: if member.is_empty() {
                self.name.clone()
            } else {
                format!("{}.{member}", self.name)
            },
            message: message.into(),
        }
    }
}

/// All loaded sources.
#[derive(Debug, Clone, Default)]
pub struct SemanticModel {
    sources: BTreeMap<String, Source>,
    /// Event types mapped to warehouse tables (`[events.<type>]`, see [`crate::live::mapping`]).
    events: BTreeMap<String, crate::live::EventMapping>,
}

impl SemanticModel {
    /// Loads and checks model files; sources from all files form one model.
    pub fn load(paths: &[PathBuf]) -> Result<Self, SqlError> {
        let mut model = SemanticModel::default();
        for path in paths {
            let text = std::fs::read_to_string(path).map_err(|e| SqlError::Model {
                file: path.clone(),
                member: String::new(),
                message: format!("cannot read: {e}"),
            })?;
            model.add_toml(path, &text)?;
        }
        model.check_references()?;
        Ok(model)
    }

    /// Parses one model file's text (named `path` in errors) into a model of its own.
    pub fn from_toml(path: &Path, text: &str) -> Result<Self, SqlError> {
        let mut model = SemanticModel::default();
        model.add_toml(path, text)?;
        model.check_references()?;
        Ok(model)
    }

    /// A source by name.
    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.get(name)
    }

    /// All sources, by name.
    pub fn sources(&self) -> impl Iterator<Item = &Source> {
        self.sources.values()
    }

    /// The event types mapped to warehouse tables, by event type.
    pub fn event_mappings(&self) -> impl Iterator<Item = &crate::live::EventMapping> {
        self.events.values()
    }

    fn add_toml(&mut self, path: &Path, text: &str) -> Result<(), SqlError> {
        let file: raw::File = toml::from_str(text).map_err(|e| SqlError::Model {
            file: path.to_path_buf(),
            member: String::new(),
            message: e.to_string().trim().to_string(),
        })?;
        for (name, raw) in file.sources {
            if let Some(existing) = self.sources.get(&name) {
                return Err(SqlError::Model {
                    file: path.to_path_buf(),
                    member: name,
                    message: format!("source already defined in {}", existing.file.display()),
                });
            }
            let source = raw.into_source(&name, path)?;
            self.sources.insert(name, source);
        }
        for (event_type, raw) in file.events {
            if let Some(existing) = self.events.get(&event_type) {
                return Err(SqlError::Model {
                    file: path.to_path_buf(),
                    member: format!("events.{event_type}"),
                    message: format!("event type already mapped in {}", existing.file.display()),
                });
            }
            let mapping = raw.check(&event_type, path)?;
            self.events.insert(event_type, mapping);
        }
        Ok(())
    }

    /// Checks ratio operands exist, are measures, and do not form cycles.
    fn check_references(&self) -> Result<(), SqlError> {
        for source in self.sources.values() {
            for measure in source.measures.values() {
                if let Aggregation::Ratio {
                    numerator,
                    denominator,
                } = &measure.aggregation
                {
                    for (role, operand) in [("numerator", numerator), ("denominator", denominator)]
                    {
                        if self.measure(operand).is_none() {
                            return Err(source.error(
                                &measure.name,
                                format!("{role} `{operand}` is not a measure of the model"),
                            ));
                        }
                    }
                }
                let me = MemberRef {
                    source: source.name.clone(),
                    member: measure.name.clone(),
                };
                self.check_acyclic(&me, &mut Vec::new()).map_err(|cycle| {
                    source.error(&measure.name, format!("ratio cycle: {cycle}"))
                })?;
            }
        }
        Ok(())
    }

    fn check_acyclic(&self, at: &MemberRef, path: &mut Vec<MemberRef>) -> Result<(), String> {
        if path.contains(at) {
            path.push(at.clone());
            return Err(path
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" -> "));
        }
        let Some((_, measure)) = self.measure(at) else {
            return Ok(());
        };
        if let Aggregation::Ratio {
            numerator,
            denominator,
        } = &measure.aggregation
        {
            path.push(at.clone());
            self.check_acyclic(numerator, path)?;
            self.check_acyclic(denominator, path)?;
            path.pop();
        }
        Ok(())
    }

    /// A measure and its source.
    pub fn measure(&self, r: &MemberRef) -> Option<(&Source, &Measure)> {
        let source = self.sources.get(&r.source)?;
        Some((source, source.measures.get(&r.member)?))
    }

    /// A dimension and its source.
    pub fn dimension(&self, r: &MemberRef) -> Option<(&Source, &Dimension)> {
        let source = self.sources.get(&r.source)?;
        Some((source, source.dimensions.get(&r.member)?))
    }

    /// A segment and its source.
    pub fn segment(&self, r: &MemberRef) -> Option<(&Source, &Segment)> {
        let source = self.sources.get(&r.source)?;
        Some((source, source.segments.get(&r.member)?))
    }

    /// The non-ratio measures a measure is computed from (itself, if it is not a ratio), in a
    /// stable order without repeats.
    pub fn base_measures(&self, r: &MemberRef) -> Vec<MemberRef> {
        let mut out = BTreeSet::new();
        self.collect_base(r, &mut out);
        out.into_iter().collect()
    }

    fn collect_base(&self, r: &MemberRef, out: &mut BTreeSet<MemberRef>) {
        match self.measure(r).map(|(_, m)| &m.aggregation) {
            Some(Aggregation::Ratio {
                numerator,
                denominator,
            }) => {
                self.collect_base(numerator, out);
                self.collect_base(denominator, out);
            }
            Some(_) => {
                out.insert(r.clone());
            }
            None => {}
        }
    }
}

/// A member or source name: a lowercase identifier.
pub fn is_identifier(s: &str) -> bool {
    is_table_name(s)
}

/// A table a source reads: a warehouse table (`orders`) or one of an external source's
/// (`trino.orders`, `ga4.web`): one or two lowercase identifiers.
pub fn is_table_ref(s: &str) -> bool {
    match s.split_once('.') {
        Some((schema, table)) => is_table_name(schema) && is_table_name(table),
        None => is_table_name(s),
    }
}

/// Checks that `sql` is exactly one SQL expression.
fn check_sql(source: &str, file: &Path, member: &str, sql: &str) -> Result<(), SqlError> {
    let error = |message: String| SqlError::Model {
        file: file.to_path_buf(),
        member: format!("{source}.{member}"),
        message,
    };
    let dialect = GenericDialect {};
    let mut parser = Parser::new(&dialect)
        .try_with_sql(sql)
        .map_err(|e| error(format!("cannot parse sql `{sql}`: {e}")))?;
    parser
        .parse_expr()
        .map_err(|e| error(format!("cannot parse sql `{sql}`: {e}")))?;
    match parser.next_token().token {
        Token::EOF => Ok(()),
        t => Err(error(format!(
            "sql `{sql}` must be one expression; unexpected `{t}` after it"
        ))),
    }
}

/// The TOML shape, checked and turned into [`Source`]s.
mod raw {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct File {
        #[serde(default)]
        pub sources: BTreeMap<String, RawSource>,
        #[serde(default)]
        pub events: BTreeMap<String, crate::live::mapping::RawMapping>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RawSource {
        table: String,
        description: Option<String>,
        #[serde(default)]
        joins: Vec<RawJoin>,
        #[serde(default)]
        dimensions: BTreeMap<String, RawDimension>,
        #[serde(default)]
        measures: BTreeMap<String, RawMeasure>,
        #[serde(default)]
        segments: BTreeMap<String, RawSegment>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawJoin {
        table: String,
        on: Vec<String>,
        kind: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawDimension {
        column: Option<String>,
        sql: Option<String>,
        #[serde(rename = "type")]
        kind: DimensionType,
        grains: Option<Vec<Grain>>,
        description: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawMeasure {
        #[serde(rename = "type")]
        kind: String,
        column: Option<String>,
        sql: Option<String>,
        filter: Option<String>,
        numerator: Option<String>,
        denominator: Option<String>,
        description: Option<String>,
        format: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawSegment {
        sql: String,
        description: Option<String>,
    }

    impl RawSource {
        pub fn into_source(self, name: &str, file: &Path) -> Result<Source, SqlError> {
            let mut source = Source {
                name: name.to_string(),
                file: file.to_path_buf(),
                table: self.table,
                description: self.description,
                joins: Vec::new(),
                dimensions: BTreeMap::new(),
                measures: BTreeMap::new(),
                segments: BTreeMap::new(),
            };
            if !is_identifier(name) {
                return Err(source.error("", "source names must be lowercase identifiers"));
            }
            if !is_table_ref(&source.table) {
                return Err(source.error(
                    "table",
                    format!(
                        "`{}` is not a table name (a lowercase identifier, or `schema.table` \
                         for an external source's table such as `trino.orders`)",
                        source.table
                    ),
                ));
            }
            for join in self.joins {
                let member = format!("joins.{}", join.table);
                if !is_table_ref(&join.table) || join.table == source.table {
                    return Err(source.error(&member, "join table must be another table's name"));
                }
                if join.on.is_empty() || !join.on.iter().all(|c| is_identifier(c)) {
                    return Err(source.error(&member, "`on` must list one or more column names"));
                }
                let inner = match join.kind.as_deref() {
                    None | Some("left") => false,
                    Some("inner") => true,
                    Some(other) => {
                        return Err(source.error(
                            &member,
                            format!("unknown join kind `{other}`: use left or inner"),
                        ));
                    }
                };
                source.joins.push(Join {
                    table: join.table,
                    on: join.on,
                    inner,
                });
            }
            let mut seen = BTreeSet::new();
            let mut unique = |source: &Source, member: &str| -> Result<(), SqlError> {
                if !is_identifier(member) {
                    return Err(source.error(member, "member names must be lowercase identifiers"));
                }
                if !seen.insert(member.to_string()) {
                    return Err(source.error(
                        member,
                        "name used twice (dimensions, measures and segments share one namespace)",
                    ));
                }
                Ok(())
            };
            for (dim_name, dim) in self.dimensions {
                unique(&source, &dim_name)?;
                let value = value_source(&source, &dim_name, dim.column, dim.sql)?
                    .ok_or_else(|| source.error(&dim_name, "set one of `column` or `sql`"))?;
                if dim.grains.is_some() && dim.kind != DimensionType::Time {
                    return Err(source.error(&dim_name, "only time dimensions have grains"));
                }
                let mut grains = dim.grains.unwrap_or_else(|| Grain::ALL.to_vec());
                grains.sort();
                grains.dedup();
                if grains.is_empty() {
                    return Err(source.error(&dim_name, "`grains` must not be empty"));
                }
                source.dimensions.insert(
                    dim_name.clone(),
                    Dimension {
                        name: dim_name,
                        value,
                        kind: dim.kind,
                        grains,
                        description: dim.description,
                    },
                );
            }
            for (measure_name, m) in self.measures {
                unique(&source, &measure_name)?;
                let measure = m.into_measure(&source, &measure_name)?;
                source.measures.insert(measure_name, measure);
            }
            for (segment_name, s) in self.segments {
                unique(&source, &segment_name)?;
                check_sql(name, file, &segment_name, &s.sql)?;
                source.segments.insert(
                    segment_name.clone(),
                    Segment {
                        name: segment_name,
                        sql: s.sql,
                        description: s.description,
                    },
                );
            }
            Ok(source)
        }
    }

    impl RawMeasure {
        fn into_measure(self, source: &Source, name: &str) -> Result<Measure, SqlError> {
            let value = value_source(source, name, self.column, self.sql)?;
            if let Some(filter) = &self.filter {
                check_sql(&source.name, &source.file, name, filter)?;
            }
            let reference = |role: &str, text: Option<String>| -> Result<MemberRef, SqlError> {
                let text = text.ok_or_else(|| {
                    source.error(name, format!("a ratio needs a `{role}` measure"))
                })?;
                if is_identifier(&text) {
                    return Ok(MemberRef {
                        source: source.name.clone(),
                        member: text,
                    });
                }
                MemberRef::parse(&text).ok_or_else(|| {
                    source.error(
                        name,
                        format!("{role} `{text}` must be `measure` or `source.measure`"),
                    )
                })
            };
            let has_operands = self.numerator.is_some() || self.denominator.is_some();
            let aggregation = match self.kind.as_str() {
                "sum" => Aggregation::Sum,
                "count" => Aggregation::Count,
                "count_distinct" => Aggregation::CountDistinct,
                "avg" => Aggregation::Avg,
                "min" => Aggregation::Min,
                "max" => Aggregation::Max,
                "ratio" => {
                    if value.is_some() || self.filter.is_some() {
                        return Err(source.error(
                            name,
                            "a ratio takes `numerator` and `denominator`, not `column`, `sql` or `filter`",
                        ));
                    }
                    Aggregation::Ratio {
                        numerator: reference("numerator", self.numerator)?,
                        denominator: reference("denominator", self.denominator)?,
                    }
                }
                other => {
                    return Err(source.error(
                        name,
                        format!(
                            "unknown measure type `{other}`: use sum, count, count_distinct, avg, min, max or ratio"
                        ),
                    ));
                }
            };
            if !matches!(aggregation, Aggregation::Ratio { .. }) {
                if has_operands {
                    return Err(source.error(
                        name,
                        "`numerator` / `denominator` only belong to ratio measures",
                    ));
                }
                if value.is_none() && aggregation != Aggregation::Count {
                    return Err(source.error(name, "set one of `column` or `sql`"));
                }
            }
            Ok(Measure {
                name: name.to_string(),
                aggregation,
                value,
                filter: self.filter,
                description: self.description,
                format: self.format,
            })
        }
    }

    fn value_source(
        source: &Source,
        member: &str,
        column: Option<String>,
        sql: Option<String>,
    ) -> Result<Option<ValueSource>, SqlError> {
        match (column, sql) {
            (Some(_), Some(_)) => Err(source.error(member, "set `column` or `sql`, not both")),
            (Some(column), None) => {
                // `table.column`, or `schema.table.column` for an external source's table.
                let (table, column) = match column.rsplit_once('.') {
                    Some((t, c)) => (t.to_string(), c.to_string()),
                    None => (source.table.clone(), column),
                };
                if !source.tables().any(|t| t == table) {
                    return Err(source.error(
                        member,
                        format!("table `{table}` is not the source's table or one of its joins"),
                    ));
                }
                if column.is_empty() || column.contains('"') {
                    return Err(source.error(member, format!("bad column name `{column}`")));
                }
                Ok(Some(ValueSource::Column(table, column)))
            }
            (None, Some(sql)) => {
                check_sql(&source.name, &source.file, member, &sql)?;
                Ok(Some(ValueSource::Sql(sql)))
            }
            (None, None) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<SemanticModel, SqlError> {
        SemanticModel::from_toml(Path::new("test.toml"), text)
    }

    fn error(text: &str) -> (String, String) {
        match load(text) {
            Err(SqlError::Model {
                file,
                member,
                message,
            }) => {
                assert_eq!(file, Path::new("test.toml"));
                (member, message)
            }
            other => panic!("expected a model error, got {other:?}"),
        }
    }

    const GOOD: &str = r#"
        [sources.orders]
        table = "orders"
        [sources.orders.dimensions.channel]
        column = "channel"
        type = "string"
        [sources.orders.measures.revenue]
        type = "sum"
        column = "revenue"
        [sources.orders.measures.orders]
        type = "count"
        [sources.orders.measures.aov]
        type = "ratio"
        numerator = "revenue"
        denominator = "orders"
        [sources.ads]
        table = "ad_spend"
        [sources.ads.measures.spend]
        type = "sum"
        column = "spend"
        [sources.ads.measures.roas]
        type = "ratio"
        numerator = "orders.revenue"
        denominator = "spend"
    "#;

    #[test]
    fn loads_and_expands_ratios() {
        let model = load(GOOD).unwrap();
        let roas = MemberRef::parse("ads.roas").unwrap();
        assert_eq!(
            model.base_measures(&roas),
            vec![
                MemberRef::parse("ads.spend").unwrap(),
                MemberRef::parse("orders.revenue").unwrap()
            ]
        );
    }

    #[test]
    fn errors_name_file_member_and_problem() {
        let (member, message) =
            error(&GOOD.replace("denominator = \"orders\"", "denominator = \"ordrs\""));
        assert_eq!(member, "orders.aov");
        assert!(
            message.contains("`orders.ordrs` is not a measure"),
            "{message}"
        );

        let (member, message) = error(&GOOD.replace("type = \"count\"", "type = \"cnt\""));
        assert_eq!(member, "orders.orders");
        assert!(message.contains("unknown measure type `cnt`"), "{message}");

        let (member, message) = error(&GOOD.replace("column = \"spend\"", "sql = \"spend +\""));
        assert_eq!(member, "ads.spend");
        assert!(message.contains("cannot parse sql"), "{message}");

        let (member, message) =
            error(&GOOD.replace("column = \"channel\"", "sql = \"channel; DROP TABLE x\""));
        assert_eq!(member, "orders.channel");
        assert!(message.contains("one expression"), "{message}");

        let (_, message) =
            error(&GOOD.replace("type = \"string\"", "type = \"string\"\ncolour = 1"));
        assert!(message.contains("colour"), "{message}");

        let (member, message) =
            error(&GOOD.replace("column = \"revenue\"", "column = \"products.revenue\""));
        assert_eq!(member, "orders.revenue");
        assert!(
            message.contains("`products` is not the source's table"),
            "{message}"
        );
    }

    #[test]
    fn ratio_cycles_are_rejected() {
        let text = GOOD.replace("numerator = \"revenue\"", "numerator = \"aov\"");
        let (member, message) = error(&text);
        assert_eq!(member, "orders.aov");
        assert!(message.contains("cycle"), "{message}");
    }

    #[test]
    fn member_names_are_one_namespace() {
        let text = format!("{GOOD}\n[sources.orders.segments.revenue]\nsql = \"revenue > 0\"\n");
        let (member, message) = error(&text);
        assert_eq!(member, "orders.revenue");
        assert!(message.contains("twice"), "{message}");
    }

    #[test]
    fn the_demo_model_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/commerce.toml");
        let model = SemanticModel::load(&[path]).unwrap();
        assert!(model.source("orders").is_some());
        assert!(
            model
                .measure(&MemberRef::parse("ad_spend.roas").unwrap())
                .is_some()
        );
    }
}
