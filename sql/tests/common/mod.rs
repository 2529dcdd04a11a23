//! A tiny two-tenant warehouse with hand-checkable numbers, written as Parquet into a temp dir.
//!
//! Tenant `acme` (the one the tests reason about; order dates are in Asia/Seoul):
//!
//! | order | customer | order_ts (UTC)   | order_date | channel | device  | status    | revenue |
//! |-------|----------|------------------|------------|---------|---------|-----------|---------|
//! | 1     | 10       | 2024-06-01 01:00 | 2024-06-01 | naver   | mobile  | paid      | 100     |
//! | 2     | 11       | 2024-06-01 16:00 | 2024-06-02 | kakao   | desktop | paid      | 200     |
//! | 3     | 10       | 2024-06-02 03:00 | 2024-06-02 | naver   | desktop | refunded  | 50      |
//! | 4     | 12       | 2024-06-03 05:00 | 2024-06-03 | google  | mobile  | paid      | 300     |
//! | 5     | 11       | 2024-05-15 05:00 | 2024-05-15 | naver   | mobile  | paid      | 80      |
//! | 6     | 13       | 2024-06-03 06:00 | 2024-06-03 | naver   | mobile  | cancelled | 40      |
//!
//! ad_spend (acme): 06-01 naver 50 · 06-02 kakao 100 · 06-02 naver 25 · 06-03 google 150 ·
//! 05-15 naver 40.
//!
//! Tenant `globex` has one order of 999 999 on channel `secret`, an `ad_spend` row, and a table
//! `vault` that acme lacks. Any of those showing up for acme is a broken tenant wall.

#![allow(dead_code)]

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sql::arrow::array::{
    Array, ArrayRef, Date32Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use sql::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use sql::datafusion::parquet::arrow::ArrowWriter;
use sql::{DashboardEngine, EngineConfig};

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub engine: DashboardEngine,
}

impl Fixture {
    pub fn warehouse(&self) -> PathBuf {
        self.dir.path().join("warehouse")
    }
}

pub fn model_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/commerce.toml")
}

/// The warehouse with both tenants, and an engine over it with the demo model.
pub async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("warehouse");
    write_acme(&root);
    write_globex(&root);
    let engine = DashboardEngine::new(EngineConfig {
        warehouse: root,
        models: vec![model_path()],
        cache_ttl: Duration::from_secs(300),
        cache_entries: 100,
        sources: Vec::new(),
        limits: sql::QueryLimits::default(),
        live: None,
    })
    .await
    .unwrap();
    Fixture { dir, engine }
}

fn day(s: &str) -> i32 {
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    (d - chrono::NaiveDate::default()).num_days() as i32
}

fn micros(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .timestamp_micros()
}

pub fn write(root: &Path, table: &str, tenant: &str, file: &str, columns: Vec<(&str, ArrayRef)>) {
    let dir = root.join(table).join(format!("tenant={tenant}"));
    fs::create_dir_all(&dir).unwrap();
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(
        schema.clone(),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap();
    let mut writer =
        ArrowWriter::try_new(File::create(dir.join(file)).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

fn strings(v: &[&str]) -> ArrayRef {
    Arc::new(StringArray::from(v.to_vec()))
}
fn i64s(v: &[i64]) -> ArrayRef {
    Arc::new(Int64Array::from(v.to_vec()))
}
fn i32s(v: &[i32]) -> ArrayRef {
    Arc::new(Int32Array::from(v.to_vec()))
}
fn f64s(v: &[f64]) -> ArrayRef {
    Arc::new(Float64Array::from(v.to_vec()))
}
fn dates(v: &[&str]) -> ArrayRef {
    Arc::new(Date32Array::from(
        v.iter().map(|s| day(s)).collect::<Vec<_>>(),
    ))
}
fn timestamps(v: &[&str]) -> ArrayRef {
    let a = TimestampMicrosecondArray::from(v.iter().map(|s| micros(s)).collect::<Vec<_>>())
        .with_timezone("UTC");
    assert_eq!(
        a.data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    Arc::new(a)
}

/// order_id, customer_id, order_ts (RFC 3339), order_date, channel, device, status, revenue.
pub type OrderRow<'a> = (i64, i64, &'a str, &'a str, &'a str, &'a str, &'a str, f64);

pub fn orders(root: &Path, tenant: &str, file: &str, rows: &[OrderRow]) {
    write(
        root,
        "orders",
        tenant,
        file,
        vec![
            (
                "order_id",
                i64s(&rows.iter().map(|r| r.0).collect::<Vec<_>>()),
            ),
            (
                "customer_id",
                i64s(&rows.iter().map(|r| r.1).collect::<Vec<_>>()),
            ),
            (
                "order_ts",
                timestamps(&rows.iter().map(|r| r.2).collect::<Vec<_>>()),
            ),
            (
                "order_date",
                dates(&rows.iter().map(|r| r.3).collect::<Vec<_>>()),
            ),
            (
                "channel",
                strings(&rows.iter().map(|r| r.4).collect::<Vec<_>>()),
            ),
            (
                "device",
                strings(&rows.iter().map(|r| r.5).collect::<Vec<_>>()),
            ),
            (
                "status",
                strings(&rows.iter().map(|r| r.6).collect::<Vec<_>>()),
            ),
            (
                "revenue",
                f64s(&rows.iter().map(|r| r.7).collect::<Vec<_>>()),
            ),
            (
                "discount",
                f64s(&rows.iter().map(|_| 0.0).collect::<Vec<_>>()),
            ),
            ("items", i32s(&rows.iter().map(|_| 1).collect::<Vec<_>>())),
        ],
    );
}

pub fn ad_spend(root: &Path, tenant: &str, rows: &[(&str, &str, f64)]) {
    write(
        root,
        "ad_spend",
        tenant,
        "part-0.parquet",
        vec![
            ("date", dates(&rows.iter().map(|r| r.0).collect::<Vec<_>>())),
            (
                "channel",
                strings(&rows.iter().map(|r| r.1).collect::<Vec<_>>()),
            ),
            (
                "campaign",
                strings(&rows.iter().map(|_| "c").collect::<Vec<_>>()),
            ),
            (
                "impressions",
                i64s(&rows.iter().map(|_| 1000).collect::<Vec<_>>()),
            ),
            ("clicks", i64s(&rows.iter().map(|_| 10).collect::<Vec<_>>())),
            ("spend", f64s(&rows.iter().map(|r| r.2).collect::<Vec<_>>())),
            (
                "conversions",
                i64s(&rows.iter().map(|_| 1).collect::<Vec<_>>()),
            ),
        ],
    );
}

fn write_acme(root: &Path) {
    orders(
        root,
        "acme",
        "part-0.parquet",
        &[
            (
                1,
                10,
                "2024-06-01T01:00:00Z",
                "2024-06-01",
                "naver",
                "mobile",
                "paid",
                100.0,
            ),
            (
                2,
                11,
                "2024-06-01T16:00:00Z",
                "2024-06-02",
                "kakao",
                "desktop",
                "paid",
                200.0,
            ),
            (
                3,
                10,
                "2024-06-02T03:00:00Z",
                "2024-06-02",
                "naver",
                "desktop",
                "refunded",
                50.0,
            ),
        ],
    );
    orders(
        root,
        "acme",
        "part-1.parquet",
        &[
            (
                4,
                12,
                "2024-06-03T05:00:00Z",
                "2024-06-03",
                "google",
                "mobile",
                "paid",
                300.0,
            ),
            (
                5,
                11,
                "2024-05-15T05:00:00Z",
                "2024-05-15",
                "naver",
                "mobile",
                "paid",
                80.0,
            ),
            (
                6,
                13,
                "2024-06-03T06:00:00Z",
                "2024-06-03",
                "naver",
                "mobile",
                "cancelled",
                40.0,
            ),
        ],
    );
    ad_spend(
        root,
        "acme",
        &[
            ("2024-06-01", "naver", 50.0),
            ("2024-06-02", "kakao", 100.0),
            ("2024-06-02", "naver", 25.0),
            ("2024-06-03", "google", 150.0),
            ("2024-05-15", "naver", 40.0),
        ],
    );
    write(
        root,
        "customers",
        "acme",
        "part-0.parquet",
        vec![
            ("customer_id", i64s(&[10, 11, 12, 13])),
            (
                "signup_date",
                dates(&["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01"]),
            ),
            ("country", strings(&["KR", "KR", "JP", "KR"])),
            ("segment", strings(&["vip", "regular", "new", "new"])),
            (
                "acquisition_channel",
                strings(&["naver", "kakao", "google", "naver"]),
            ),
        ],
    );
    write(
        root,
        "products",
        "acme",
        "part-0.parquet",
        vec![
            ("product_id", i64s(&[100, 101, 102])),
            ("name", strings(&["Tea", "Cup", "Pot"])),
            ("category", strings(&["food", "kitchen", "kitchen"])),
            ("brand", strings(&["b1", "b2", "b2"])),
            ("unit_cost", f64s(&[5.0, 20.0, 50.0])),
            ("list_price", f64s(&[10.0, 40.0, 100.0])),
        ],
    );
    // Lines: order 1 = 10 Tea (100); order 2 = 5 Cup (200); order 3 = 5 Tea (50);
    // order 4 = 3 Pot (300); order 5 = 2 Cup (80); order 6 = 4 Tea (40).
    write(
        root,
        "order_items",
        "acme",
        "part-0.parquet",
        vec![
            ("order_id", i64s(&[1, 2, 3, 4, 5, 6])),
            ("line", i32s(&[1, 1, 1, 1, 1, 1])),
            ("product_id", i64s(&[100, 101, 100, 102, 101, 100])),
            ("quantity", i32s(&[10, 5, 5, 3, 2, 4])),
            ("unit_price", f64s(&[10.0, 40.0, 10.0, 100.0, 40.0, 10.0])),
            ("revenue", f64s(&[100.0, 200.0, 50.0, 300.0, 80.0, 40.0])),
        ],
    );
}

fn write_globex(root: &Path) {
    orders(
        root,
        "globex",
        "part-0.parquet",
        &[(
            900,
            90,
            "2024-06-01T02:00:00Z",
            "2024-06-01",
            "secret",
            "mobile",
            "paid",
            999_999.0,
        )],
    );
    ad_spend(root, "globex", &[("2024-06-01", "secret", 1.0)]);
    write(
        root,
        "vault",
        "globex",
        "part-0.parquet",
        vec![("code", strings(&["globex-only"]))],
    );
}

/// Every cell of a result, as text (NULL for nulls), row by row.
pub fn rows(result: &sql::QueryResult) -> Vec<Vec<String>> {
    use sql::arrow::util::display::{ArrayFormatter, FormatOptions};
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in &result.batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            out.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    out
}

/// The result's column names.
pub fn columns(result: &sql::QueryResult) -> Vec<String> {
    result
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

/// Everything in the result, rendered, for "does it contain X" checks.
pub fn text(result: &sql::QueryResult) -> String {
    format!("{:?} {:?}", columns(result), rows(result))
}
