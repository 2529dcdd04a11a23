//! A small runner for sqllogictest-style files (`tests/slt/*.slt`) that pin the analysis
//! functions' SQL semantics on tiny tables with hand-worked answers.
//!
//! Records: `statement ok` / `statement error <text>` followed by SQL; `query <types> [rowsort]`
//! followed by SQL, `----`, and the expected rows (cells separated by one space; NULL for null;
//! floats rounded to 6 decimals); `query error <text>`. Records end at a blank line; `#` starts a
//! comment. Each file runs in a fresh session with Tidemark's functions registered.

use std::path::Path;

use sql::arrow::array::{Array, Float32Array, Float64Array, RecordBatch};
use sql::arrow::datatypes::DataType;
use sql::arrow::util::display::{ArrayFormatter, FormatOptions};
use sql::datafusion::prelude::SessionContext;

#[derive(Debug)]
enum Record {
    Statement {
        sql: String,
        error: Option<String>,
        line: usize,
    },
    Query {
        sql: String,
        rowsort: bool,
        expected: Vec<String>,
        error: Option<String>,
        line: usize,
    },
}

fn parse(text: &str) -> Vec<Record> {
    let mut records = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if line.is_empty() || line.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i + 1;
        let header: Vec<&str> = line.split_whitespace().collect();
        i += 1;
        let mut sql = Vec::new();
        while i < lines.len() && !lines[i].trim().is_empty() && lines[i].trim() != "----" {
            sql.push(lines[i]);
            i += 1;
        }
        let sql = sql.join("\n");
        let rest = |from: usize| header[from..].join(" ");
        match header.as_slice() {
            ["statement", "ok"] => records.push(Record::Statement {
                sql,
                error: None,
                line: start,
            }),
            ["statement", "error", ..] => records.push(Record::Statement {
                sql,
                error: Some(rest(2)),
                line: start,
            }),
            ["query", "error", ..] => records.push(Record::Query {
                sql,
                rowsort: false,
                expected: vec![],
                error: Some(rest(2)),
                line: start,
            }),
            ["query", _types, flags @ ..] => {
                let mut expected = Vec::new();
                if i < lines.len() && lines[i].trim() == "----" {
                    i += 1;
                    while i < lines.len() && !lines[i].trim().is_empty() {
                        expected.push(lines[i].trim_end().to_string());
                        i += 1;
                    }
                }
                records.push(Record::Query {
                    sql,
                    rowsort: flags.contains(&"rowsort"),
                    expected,
                    error: None,
                    line: start,
                });
            }
            _ => panic!("line {start}: unknown record `{line}`"),
        }
    }
    records
}

fn float_cell(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

fn render(batches: &[RecordBatch]) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in batches {
        let columns: Vec<Box<dyn Fn(usize) -> String>> = batch
            .columns()
            .iter()
            .map(|c| -> Box<dyn Fn(usize) -> String> {
                let c = c.clone();
                match c.data_type() {
                    DataType::Float64 | DataType::Float32 => Box::new(move |row| {
                        if c.is_null(row) {
                            return "NULL".into();
                        }
                        let v = match c.as_any().downcast_ref::<Float64Array>() {
                            Some(a) => a.value(row),
                            None => f64::from(
                                c.as_any()
                                    .downcast_ref::<Float32Array>()
                                    .map_or(0.0, |a| a.value(row)),
                            ),
                        };
                        float_cell(v)
                    }),
                    _ => {
                        let options = options.clone();
                        Box::new(move |row| {
                            let f =
                                ArrayFormatter::try_new(c.as_ref(), &options).expect("formattable");
                            let s = f.value(row).to_string();
                            if s.is_empty() { "(empty)".into() } else { s }
                        })
                    }
                }
            })
            .collect();
        for row in 0..batch.num_rows() {
            out.push(columns.iter().map(|f| f(row)).collect::<Vec<_>>().join(" "));
        }
    }
    out
}

async fn run_file(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let ctx = SessionContext::new();
    sql::functions::register(&ctx);
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let mut failures = Vec::new();
    for record in parse(&text) {
        match record {
            Record::Statement { sql, error, line } => {
                let result = match ctx.sql(&sql).await {
                    Ok(df) => df.collect().await.map(drop),
                    Err(e) => Err(e),
                };
                match (result, error) {
                    (Ok(()), None) => {}
                    (Err(e), Some(want)) if e.to_string().contains(&want) => {}
                    (Err(e), None) => {
                        failures.push(format!("{name}:{line}: statement failed: {e}"))
                    }
                    (Err(e), Some(want)) => {
                        failures.push(format!("{name}:{line}: error `{e}` lacks `{want}`"))
                    }
                    (Ok(()), Some(want)) => {
                        failures.push(format!("{name}:{line}: expected error `{want}`"))
                    }
                }
            }
            Record::Query {
                sql,
                rowsort,
                expected,
                error,
                line,
            } => {
                let result = match ctx.sql(&sql).await {
                    Ok(df) => df.collect().await,
                    Err(e) => Err(e),
                };
                match (result, error) {
                    (Ok(batches), None) => {
                        let mut got = render(&batches);
                        let mut expected = expected;
                        if rowsort {
                            got.sort();
                            expected.sort();
                        }
                        if got != expected {
                            failures.push(format!(
                                "{name}:{line}: {sql}\nexpected:\n{}\ngot:\n{}",
                                expected.join("\n"),
                                got.join("\n")
                            ));
                        }
                    }
                    (Err(e), Some(want)) if e.to_string().contains(&want) => {}
                    (Err(e), _) => failures.push(format!("{name}:{line}: {sql}\nfailed: {e}")),
                    (Ok(_), Some(want)) => {
                        failures.push(format!("{name}:{line}: expected error `{want}`"))
                    }
                }
            }
        }
    }
    failures
}

#[tokio::test]
async fn slt_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no .slt files in {}", dir.display());
    let mut failures = Vec::new();
    for path in &paths {
        failures.extend(run_file(path).await);
    }
    assert!(
        failures.is_empty(),
        "{} failure(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
