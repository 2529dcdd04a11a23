//! Trino's SQL dialect for DataFusion's unparser: how a DataFusion plan is written as SQL that
//! Trino reads with the same meaning.
//!
//! - Identifiers are always double-quoted (Trino folds unquoted names to lowercase; quoting
//!   keeps `"Revenue"` and keywords such as `"date"` intact).
//! - String literals: printable ASCII in `'…'` with `'` doubled; anything else (control
//!   characters including NUL, any non-ASCII character such as U+2019) as a Unicode literal
//!   `U&'…\2019…'`, so no byte of a value reaches Trino's lexer unescaped.
//! - Dates and timestamps as `CAST('…' AS DATE)`, `CAST('…' AS TIMESTAMP(6))`,
//!   `… WITH TIME ZONE` with a numeric offset; intervals in SQL-standard form
//!   (`INTERVAL '3' MONTH`, `INTERVAL '1 2:0:0.000' DAY TO SECOND`).
//! - Casts use Trino's type names (`varchar`, `bigint`, `double`, `timestamp(p)`).
//! - Functions whose names differ: `character_length` → `length`, `date_part` → `EXTRACT`,
//!   `instr` → `strpos`, `btrim` → `trim`, `pow` → `power`, one-argument `log` → `log10`.

use std::sync::Arc;

use datafusion::arrow::datatypes::TimeUnit;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::Expr;
use datafusion::sql::sqlparser::ast::{self, Ident, ObjectName, ObjectNamePart, TimezoneInfo};
use datafusion::sql::unparser::Unparser;
use datafusion::sql::unparser::dialect::{
    CharacterLengthStyle, DateFieldExtractStyle, Dialect, IntervalStyle,
};

/// The unparser dialect for Trino.
#[derive(Clone, Copy, Debug, Default)]
pub struct TrinoDialect;

impl Dialect for TrinoDialect {
    fn identifier_quote_style(&self, _identifier: &str) -> Option<char> {
        Some('"')
    }

    fn supports_nulls_first_in_sort(&self) -> bool {
        true
    }

    fn use_timestamp_for_date64(&self) -> bool {
        true
    }

    fn interval_style(&self) -> IntervalStyle {
        IntervalStyle::SQLStandard
    }

    fn float64_ast_dtype(&self) -> ast::DataType {
        ast::DataType::Double(ast::ExactNumberInfo::None)
    }

    fn utf8_cast_dtype(&self) -> ast::DataType {
        ast::DataType::Varchar(None)
    }

    fn large_utf8_cast_dtype(&self) -> ast::DataType {
        ast::DataType::Varchar(None)
    }

    fn date_field_extract_style(&self) -> DateFieldExtractStyle {
        DateFieldExtractStyle::Extract
    }

    fn character_length_style(&self) -> CharacterLengthStyle {
        CharacterLengthStyle::Length
    }

    fn int64_cast_dtype(&self) -> ast::DataType {
        ast::DataType::BigInt(None)
    }

    fn int32_cast_dtype(&self) -> ast::DataType {
        ast::DataType::Integer(None)
    }

    fn int8_cast_dtype(&self) -> ast::DataType {
        ast::DataType::TinyInt(None)
    }

    fn timestamp_cast_dtype(&self, unit: &TimeUnit, tz: &Option<Arc<str>>) -> ast::DataType {
        let zone = if tz.is_some() {
            TimezoneInfo::WithTimeZone
        } else {
            TimezoneInfo::None
        };
        ast::DataType::Timestamp(Some(precision(unit)), zone)
    }

    fn date32_cast_dtype(&self) -> ast::DataType {
        ast::DataType::Date
    }

    fn supports_column_alias_in_table_alias(&self) -> bool {
        true
    }

    fn requires_derived_table_alias(&self) -> bool {
        true
    }

    fn supports_qualify(&self) -> bool {
        false
    }

    /// The unparser casts zoned timestamp literals to a plain `TIMESTAMP(p)`; written as the UTC
    /// wall clock, Trino reads them as the same instant, because the client's session zone is
    /// UTC.
    fn timestamp_with_tz_to_string(
        &self,
        dt: chrono::DateTime<datafusion::arrow::array::timezone::Tz>,
        unit: TimeUnit,
    ) -> String {
        let dt = dt.with_timezone(&chrono::Utc);
        let fraction = match unit {
            TimeUnit::Second => "",
            TimeUnit::Millisecond => "%.3f",
            TimeUnit::Microsecond => "%.6f",
            TimeUnit::Nanosecond => "%.9f",
        };
        dt.format(&format!("%Y-%m-%d %H:%M:%S{fraction}"))
            .to_string()
    }

    fn window_func_support_window_frame(
        &self,
        func_name: &str,
        _start_bound: &ast::WindowFrameBound,
        _end_bound: &ast::WindowFrameBound,
    ) -> bool {
        // Trino refuses a frame on ranking and offset functions.
        !matches!(
            func_name,
            "row_number"
                | "rank"
                | "dense_rank"
                | "percent_rank"
                | "cume_dist"
                | "ntile"
                | "lag"
                | "lead"
        )
    }

    fn string_literal_to_sql(&self, s: &str) -> Option<ast::Expr> {
        Some(string_literal(s))
    }

    fn scalar_function_to_sql_overrides(
        &self,
        unparser: &Unparser,
        func_name: &str,
        args: &[Expr],
    ) -> Result<Option<ast::Expr>> {
        if func_name == "date_part" {
            return date_part(unparser, args);
        }
        let renamed = match (func_name, args.len()) {
            ("instr", 2) => "strpos",
            ("btrim", 1) => "trim",
            ("pow", 2) => "power",
            ("log", 1) => "log10",
            ("character_length" | "char_length", 1) => "length",
            _ => return Ok(None),
        };
        let args = args
            .iter()
            .map(|a| {
                Ok(ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(
                    unparser.expr_to_sql(a)?,
                )))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(function(renamed, args)))
    }
}

/// The `date_part` fields whose values agree between DataFusion and Trino's `EXTRACT`
/// (`dow`, `epoch`, fractional seconds… differ and are not pushed).
pub const DATE_PARTS: &[&str] = &["year", "quarter", "month", "day", "hour", "minute"];

fn date_part(unparser: &Unparser, args: &[Expr]) -> Result<Option<ast::Expr>> {
    let [Expr::Literal(ScalarValue::Utf8(Some(part)), _), value] = args else {
        return Ok(None);
    };
    let field = match part.to_ascii_lowercase().as_str() {
        "year" => ast::DateTimeField::Year,
        "quarter" => ast::DateTimeField::Quarter,
        "month" => ast::DateTimeField::Month,
        "day" => ast::DateTimeField::Day,
        "hour" => ast::DateTimeField::Hour,
        "minute" => ast::DateTimeField::Minute,
        _ => return Ok(None),
    };
    Ok(Some(ast::Expr::Extract {
        field,
        syntax: ast::ExtractSyntax::From,
        expr: Box::new(unparser.expr_to_sql(value)?),
    }))
}

/// Trino's fractional-second precision for an Arrow time unit.
fn precision(unit: &TimeUnit) -> u64 {
    match unit {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 3,
        TimeUnit::Microsecond => 6,
        TimeUnit::Nanosecond => 9,
    }
}

fn function(name: &str, args: Vec<ast::FunctionArg>) -> ast::Expr {
    ast::Expr::Function(ast::Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]),
        uses_odbc_syntax: false,
        parameters: ast::FunctionArguments::None,
        args: ast::FunctionArguments::List(ast::FunctionArgumentList {
            duplicate_treatment: None,
            args,
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// Renders a string as a Trino literal whose value is exactly `s` (see the module docs).
pub fn quote_string(s: &str) -> String {
    let plain = s.bytes().all(|b| (0x20..0x7f).contains(&b));
    if plain {
        return format!("'{}'", s.replace('\'', "''"));
    }
    let mut out = String::with_capacity(s.len() + 8);
    out.push_str("U&'");
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if (c as u32) <= 0xFFFF => out.push_str(&format!("\\{:04X}", c as u32)),
            c => out.push_str(&format!("\\+{:06X}", c as u32)),
        }
    }
    out.push('\'');
    out
}

/// `s` as an expression node that prints as [`quote_string`]'s text. The unparser's own string
/// value would let control characters through raw; an unquoted identifier node prints its text
/// verbatim, and that text is a complete, escaped literal.
fn string_literal(s: &str) -> ast::Expr {
    ast::Expr::Identifier(Ident {
        value: quote_string(s),
        quote_style: None,
        span: datafusion::sql::sqlparser::tokenizer::Span::empty(),
    })
}

/// Renders an identifier for Trino: double-quoted, inner quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::functions::expr_fn::{btrim, character_length, date_part, date_trunc, strpos};
    use datafusion::logical_expr::{cast, col, lit, table_scan};
    use datafusion::scalar::ScalarValue as SV;
    use datafusion::sql::unparser::Unparser;

    fn sql(e: Expr) -> String {
        Unparser::new(&TrinoDialect)
            .expr_to_sql(&e)
            .unwrap()
            .to_string()
    }

    #[test]
    fn quotes_every_identifier() {
        assert_eq!(sql(col("date")), r#""date""#);
        assert_eq!(
            sql(Expr::Column(datafusion::common::Column::from_name(
                "Revenue"
            ))),
            r#""Revenue""#
        );
        let schema = Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("we\"ird", DataType::Utf8, false),
        ]);
        let plan = table_scan(Some("orders"), &schema, None)
            .unwrap()
            .project(vec![col("a"), col("we\"ird")])
            .unwrap()
            .build()
            .unwrap();
        let text = Unparser::new(&TrinoDialect)
            .plan_to_sql(&plan)
            .unwrap()
            .to_string();
        assert_eq!(
            text,
            r#"SELECT "orders"."a", "orders"."we""ird" FROM "orders""#
        );
        assert_eq!(quote_ident("a\"b"), r#""a""b""#);
    }

    #[test]
    fn string_literals_cannot_break_out() {
        assert_eq!(sql(lit("plain")), "'plain'");
        assert_eq!(sql(lit("O'Brien")), "'O''Brien'");
        assert_eq!(sql(lit("a--b /* c */")), "'a--b /* c */'");
        assert_eq!(sql(lit("back\\slash")), "'back\\slash'");
        assert_eq!(sql(lit("it\u{2019}s")), "U&'it\\2019s'");
        assert_eq!(sql(lit("nul\0byte")), "U&'nul\\0000byte'");
        assert_eq!(sql(lit("line\nbreak'\\")), "U&'line\\000Abreak''\\\\'");
        assert_eq!(sql(lit("😀")), "U&'\\+01F600'");
        assert_eq!(
            sql(lit(ScalarValue::Utf8View(Some("x'y".into())))),
            "'x''y'"
        );
        // Whatever the value, the literal is one token: it starts with a quote and the only
        // quotes inside come in pairs.
        for s in [
            "'",
            "''",
            "\\'",
            "'; DROP TABLE t; --",
            "\u{FF07}",
            "\u{0}'",
        ] {
            let text = quote_string(s);
            let body = text
                .strip_prefix("U&'")
                .or_else(|| text.strip_prefix('\''))
                .unwrap();
            let body = body.strip_suffix('\'').unwrap();
            assert!(!body.replace("''", "").contains('\''), "{s:?} → {text}");
            assert!(body.bytes().all(|b| (0x20..0x7f).contains(&b)), "{text}");
        }
    }

    #[test]
    fn dates_timestamps_and_intervals() {
        assert_eq!(
            sql(lit(SV::Date32(Some(20089)))),
            "CAST('2025-01-01' AS DATE)"
        );
        assert_eq!(
            sql(lit(SV::TimestampMicrosecond(
                Some(1_735_689_600_123_456),
                None
            ))),
            "CAST('2025-01-01 00:00:00.123456' AS TIMESTAMP(6))"
        );
        assert_eq!(
            sql(lit(SV::TimestampMillisecond(
                Some(1_735_689_600_000),
                Some("Asia/Seoul".into())
            ))),
            "CAST('2025-01-01 00:00:00.000' AS TIMESTAMP(3))"
        );
        assert_eq!(
            sql(lit(SV::new_interval_mdn(3, 0, 0))),
            "INTERVAL '3' MONTH"
        );
        assert_eq!(
            sql(lit(SV::new_interval_mdn(0, 1, 7_200_000_000_000))),
            "INTERVAL '1 2:0:0.000' DAY TO SECOND"
        );
    }

    #[test]
    fn casts_use_trino_type_names() {
        assert_eq!(
            sql(cast(col("a"), DataType::Utf8)),
            r#"CAST("a" AS VARCHAR)"#
        );
        assert_eq!(
            sql(cast(col("a"), DataType::Int64)),
            r#"CAST("a" AS BIGINT)"#
        );
        assert_eq!(
            sql(cast(col("a"), DataType::Float64)),
            r#"CAST("a" AS DOUBLE)"#
        );
        assert_eq!(
            sql(cast(col("a"), DataType::Decimal128(12, 2))),
            r#"CAST("a" AS DECIMAL(12,2))"#
        );
        assert_eq!(
            sql(cast(
                col("a"),
                DataType::Timestamp(TimeUnit::Microsecond, None)
            )),
            r#"CAST("a" AS TIMESTAMP(6))"#
        );
    }

    #[test]
    fn functions_with_other_names() {
        assert_eq!(sql(character_length(col("s"))), r#"length("s")"#);
        assert_eq!(sql(strpos(col("s"), lit("x"))), r#"strpos("s", 'x')"#);
        assert_eq!(sql(btrim(vec![col("s")])), r#"trim("s")"#);
        assert_eq!(
            sql(date_part(lit("year"), col("d"))),
            r#"EXTRACT(YEAR FROM "d")"#
        );
        assert_eq!(
            sql(date_part(lit("quarter"), col("d"))),
            r#"EXTRACT(QUARTER FROM "d")"#
        );
        // No Trino field with DataFusion's meaning (Sunday = 0): left as is, and not pushed.
        assert_eq!(
            sql(date_part(lit("dow"), col("d"))),
            r#"date_part('dow', "d")"#
        );
        assert_eq!(
            sql(date_trunc(lit("day"), col("ts"))),
            r#"date_trunc('day', "ts")"#
        );
    }
}
