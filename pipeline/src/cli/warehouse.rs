//! The demo warehouse: a realistic year of a Korean online shop as hive-partitioned Parquet.
//!
//! Layout (the contract the dashboard engine in `sql/` reads):
//! `<root>/<table>/tenant=<tenant>/*.parquet` for the tables `orders`, `order_items`, `products`,
//! `customers`, `ad_spend` and `web_sessions`. The tenant is a partition directory only, never a
//! column in the files.
//!
//! The year is the calendar year 2025 in the tenant's zone (Asia/Seoul) so that every run with the
//! same seed writes the same rows. What is in it, so that dashboards and alerts have something to
//! find:
//! - seasonality (Nov/Dec peaks with 11.11 and Black Friday, a summer lull, a post-holiday dip),
//!   weekly cycles (Monday and Sunday evenings busiest) and an hour-of-day curve;
//! - ~2,000 products in 12 categories and 60 brands with Zipf-like popularity (so an ABC analysis
//!   has a real A class), customers in segments (VIPs order far more often);
//! - three anomalies: a Naver outage day ([`NAVER_OUTAGE`]), a Kakao refund spike
//!   ([`REFUND_SPIKE`]) and a Meta ad overspend week ([`META_OVERSPEND`]).
//!
//! Invariants the tests rely on: order ids increase with `order_ts`; for every order,
//! `sum(order_items.revenue) = orders.revenue + orders.discount` and
//! `sum(order_items.quantity) = orders.items`; `web_sessions.conversions` for a day, channel and
//! device is the number of orders (any status) placed then.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use chrono::{Datelike, NaiveDate, TimeZone};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use sql::datafusion::arrow::array::{
    ArrayRef, Date32Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use sql::datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use sql::datafusion::parquet::arrow::ArrowWriter;
use sql::datafusion::parquet::basic::Compression;
use sql::datafusion::parquet::file::properties::WriterProperties;

/// Rows per Parquet row group: large enough for fast scans, small enough for row-group pruning
/// by date to matter within a month's file.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Order channels, in the order their weights are given below.
pub const CHANNELS: [&str; 6] = ["naver", "kakao", "google", "meta", "direct", "email"];
/// Share of orders by channel (sums to 1).
const CHANNEL_SHARE: [f64; 6] = [0.30, 0.15, 0.15, 0.15, 0.17, 0.08];
/// Devices and their share of orders.
pub const DEVICES: [&str; 3] = ["mobile", "desktop", "tablet"];
const DEVICE_SHARE: [f64; 3] = [0.70, 0.26, 0.04];

/// The day Naver's shopping links were broken: naver orders and sessions fall to ~5 %.
pub const NAVER_OUTAGE: &str = "2025-06-17";
/// Kakao orders placed these days (inclusive) are refunded ~30 % of the time instead of ~4 %.
pub const REFUND_SPIKE: (&str, &str) = ("2025-08-12", "2025-08-14");
/// Meta spend runs at ~3.2× these days (inclusive) with no more conversions: ROAS below 1.
pub const META_OVERSPEND: (&str, &str) = ("2025-09-08", "2025-09-14");

const YEAR: i32 = 2025;
const TIME_ZONE: chrono_tz::Tz = chrono_tz::Asia::Seoul;
const PRODUCTS: usize = 2_000;

/// What [`generate`] wrote.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// The warehouse root.
    pub root: PathBuf,
    /// The tenant partition written.
    pub tenant: String,
    /// First and last local order date.
    pub first_date: NaiveDate,
    /// Last local order date.
    pub last_date: NaiveDate,
    /// Per table: rows, files and bytes on disk.
    pub tables: Vec<TableSummary>,
    /// Total `revenue` of paid orders, KRW.
    pub paid_revenue: f64,
    /// The anomalies planted, for whoever looks for them.
    pub anomalies: Vec<String>,
    /// Wall-clock time of the whole generation, seconds.
    pub elapsed_seconds: f64,
}

/// One table of a [`Summary`].
#[derive(Clone, Debug, Serialize)]
pub struct TableSummary {
    /// Table name (the directory under the root).
    pub name: String,
    /// Rows written.
    pub rows: usize,
    /// Parquet files written.
    pub files: usize,
    /// Bytes on disk.
    pub bytes: u64,
}

/// The directory holding `tenant`'s files of `table`.
pub fn partition_dir(root: &Path, table: &str, tenant: &str) -> PathBuf {
    root.join(table).join(format!("tenant={tenant}"))
}

/// Whether `tenant`'s warehouse is complete under `root` (`orders` is moved into place last).
pub fn exists(root: &Path, tenant: &str) -> bool {
    partition_dir(root, "orders", tenant).is_dir()
}

/// Writes a year of `orders` orders (and everything that goes with them) for `tenant` under
/// `root`, replacing that tenant's earlier files. Deterministic in `seed`. Files are written to a
/// staging directory first and moved into place table by table, `orders` last.
pub fn generate(root: &Path, tenant: &str, orders: usize, seed: u64) -> anyhow::Result<Summary> {
    anyhow::ensure!(orders > 0, "orders must be at least 1");
    anyhow::ensure!(
        !tenant.is_empty() && !tenant.contains(['/', '\\', '=']) && tenant != "." && tenant != "..",
        "'{tenant}' cannot be a partition directory name"
    );
    let started = Instant::now();
    let staging = root.join(format!(".staging-{tenant}"));
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("cannot remove {}", staging.display()))?;
    }
    let catalog = Catalog::new(orders, seed);
    let days = plan_days(orders, seed);
    let mut tables = Vec::new();

    tables.push(write_table(
        &staging,
        "products",
        tenant,
        vec![("products".into(), catalog.products_batch()?)],
    )?);
    tables.push(write_table(
        &staging,
        "customers",
        tenant,
        vec![("customers".into(), catalog.customers_batch()?)],
    )?);

    // Months are independent given the day plan (each has its own random stream and id range),
    // so they are generated on all cores; file names keep the output identical either way.
    let months = generate_months(&catalog, &days, seed)?;
    let mut order_files = Vec::new();
    let mut item_files = Vec::new();
    let mut stats = Vec::with_capacity(days.len());
    let mut paid_revenue = 0.0;
    for month in months {
        order_files.push((month.name.clone(), month.orders));
        item_files.push((month.name, month.items));
        paid_revenue += month.paid_revenue;
        stats.extend(month.days);
    }
    tables.push(write_table(
        &staging,
        "ad_spend",
        tenant,
        vec![("ad_spend".into(), ad_spend_batch(&days, &stats, seed)?)],
    )?);
    tables.push(write_table(
        &staging,
        "web_sessions",
        tenant,
        vec![(
            "web_sessions".into(),
            web_sessions_batch(&days, &stats, seed)?,
        )],
    )?);
    tables.push(write_table(&staging, "order_items", tenant, item_files)?);
    tables.push(write_table(&staging, "orders", tenant, order_files)?);

    for table in &tables {
        let target = partition_dir(root, &table.name, tenant);
        if target.exists() {
            std::fs::remove_dir_all(&target)
                .with_context(|| format!("cannot remove {}", target.display()))?;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let source = partition_dir(&staging, &table.name, tenant);
        std::fs::rename(&source, &target)
            .with_context(|| format!("cannot move {} to {}", source.display(), target.display()))?;
    }
    std::fs::remove_dir_all(&staging)
        .with_context(|| format!("cannot remove {}", staging.display()))?;

    Ok(Summary {
        root: root.to_path_buf(),
        tenant: tenant.to_string(),
        first_date: days.first().map(|d| d.date).unwrap_or_default(),
        last_date: days.last().map(|d| d.date).unwrap_or_default(),
        tables,
        paid_revenue,
        anomalies: vec![
            format!("naver outage on {NAVER_OUTAGE}: naver orders and sessions at ~5 %"),
            format!(
                "kakao refund spike {} to {}: ~30 % of kakao orders refunded",
                REFUND_SPIKE.0, REFUND_SPIKE.1
            ),
            format!(
                "meta ad overspend {} to {}: spend ~3.2×, ROAS under 1",
                META_OVERSPEND.0, META_OVERSPEND.1
            ),
        ],
        elapsed_seconds: started.elapsed().as_secs_f64(),
    })
}

// ---- random helpers ----

/// A random stream for one part of the data, so parts do not shift each other when one changes.
fn stream(seed: u64, part: u64) -> StdRng {
    // SplitMix64 of (seed, part): distinct, well-mixed seeds for each part.
    let mut z = seed ^ part.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    StdRng::seed_from_u64(z ^ (z >> 31))
}

/// Cumulative weights, for [`pick`].
fn cumulative(weights: &[f64]) -> Vec<f64> {
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect()
}

/// An index drawn with the probabilities of a [`cumulative`] table.
fn pick(rng: &mut StdRng, cdf: &[f64]) -> usize {
    let u: f64 = rng.random();
    cdf.partition_point(|&c| c < u).min(cdf.len() - 1)
}

/// A standard normal sample (Box–Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn date(text: &str) -> NaiveDate {
    // Only called on the constants above, which are valid dates.
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap_or_default()
}

fn days_since_epoch(date: NaiveDate) -> i32 {
    (date - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()).num_days() as i32
}

fn within(date: NaiveDate, range: (&str, &str)) -> bool {
    (self::date(range.0)..=self::date(range.1)).contains(&date)
}

// ---- products and customers ----

const CATEGORIES: [(&str, f64); 12] = [
    ("fashion", 42_000.0),
    ("beauty", 24_000.0),
    ("food", 16_000.0),
    ("electronics", 150_000.0),
    ("home", 48_000.0),
    ("sports", 58_000.0),
    ("kids", 31_000.0),
    ("pets", 22_000.0),
    ("books", 15_000.0),
    ("health", 34_000.0),
    ("digital-accessories", 21_000.0),
    ("living", 18_000.0),
];
const BRAND_STEMS: [&str; 5] = ["Haneul", "Sori", "Maru", "Bom", "Dal"];
const NOUNS: [&str; 16] = [
    "Classic",
    "Essential",
    "Premium",
    "Daily",
    "Light",
    "Pro",
    "Mini",
    "Plus",
    "Organic",
    "Studio",
    "Urban",
    "Soft",
    "Max",
    "Air",
    "Pure",
    "Edge",
];

struct Catalog {
    /// Per product (index = id - 1): name, category index, brand, unit cost, list price.
    products: Vec<(String, usize, String, f64, f64)>,
    /// Cumulative popularity over product indexes (Zipf over a shuffled rank).
    popularity: Vec<f64>,
    /// Customers sorted by signup date (index = id - 1): signup day, country, segment, channel.
    customers: Vec<(i32, &'static str, &'static str, usize)>,
    /// Ids of VIP customers, in signup order.
    vips: Vec<usize>,
}

impl Catalog {
    fn new(orders: usize, seed: u64) -> Catalog {
        let mut rng = stream(seed, 1);
        let products = (0..PRODUCTS)
            .map(|i| {
                let category = pick(&mut rng, &cumulative(&[1.0; 12]));
                let brand = format!(
                    "{} {}",
                    BRAND_STEMS[rng.random_range(0..BRAND_STEMS.len())],
                    CATEGORIES[category].0
                );
                let base = CATEGORIES[category].1;
                let list_price = ((base * (0.55 * normal(&mut rng)).exp()) / 100.0).round() * 100.0;
                let list_price = list_price.max(1_000.0);
                let unit_cost = (list_price * rng.random_range(0.35..0.70)).round();
                let name = format!(
                    "{} {} {}",
                    brand.split(' ').next().unwrap_or("Tide"),
                    NOUNS[rng.random_range(0..NOUNS.len())],
                    i + 1
                );
                (name, category, brand, unit_cost, list_price)
            })
            .collect();
        // Popularity rank is independent of id: shuffle ranks, then weight 1 / rank^1.1.
        let mut ranks: Vec<usize> = (1..=PRODUCTS).collect();
        for i in (1..ranks.len()).rev() {
            ranks.swap(i, rng.random_range(0..=i));
        }
        let weights: Vec<f64> = ranks.iter().map(|&r| 1.0 / (r as f64).powf(1.1)).collect();

        let mut rng = stream(seed, 2);
        let count = (orders / 10).max(500);
        let year_start = days_since_epoch(NaiveDate::from_ymd_opt(YEAR, 1, 1).unwrap_or_default());
        let history_start = year_start - 4 * 365;
        let acquisition = cumulative(&[0.30, 0.15, 0.15, 0.17, 0.18, 0.05]);
        let countries = cumulative(&[0.93, 0.03, 0.02, 0.01, 0.01]);
        let mut customers: Vec<(i32, &'static str, &'static str, usize)> = (0..count)
            .map(|_| {
                let in_year = rng.random_bool(0.3);
                let signup = if in_year {
                    rng.random_range(year_start..year_start + 365)
                } else {
                    rng.random_range(history_start..year_start)
                };
                let segment = if in_year {
                    "new"
                } else if rng.random_bool(0.12) {
                    "vip"
                } else {
                    "regular"
                };
                let country = ["KR", "JP", "US", "CN", "TW"][pick(&mut rng, &countries)];
                (signup, country, segment, pick(&mut rng, &acquisition))
            })
            .collect();
        customers.sort_by_key(|c| c.0);
        let vips = customers
            .iter()
            .enumerate()
            .filter(|(_, c)| c.2 == "vip")
            .map(|(i, _)| i)
            .collect();
        Catalog {
            products,
            popularity: cumulative(&weights),
            customers,
            vips,
        }
    }

    fn products_batch(&self) -> anyhow::Result<RecordBatch> {
        let p = &self.products;
        batch(
            products_schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(1..=p.len() as i64)),
                Arc::new(StringArray::from_iter_values(p.iter().map(|p| &p.0))),
                Arc::new(StringArray::from_iter_values(
                    p.iter().map(|p| CATEGORIES[p.1].0),
                )),
                Arc::new(StringArray::from_iter_values(p.iter().map(|p| &p.2))),
                Arc::new(Float64Array::from_iter_values(p.iter().map(|p| p.3))),
                Arc::new(Float64Array::from_iter_values(p.iter().map(|p| p.4))),
            ],
        )
    }

    fn customers_batch(&self) -> anyhow::Result<RecordBatch> {
        let c = &self.customers;
        batch(
            customers_schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(1..=c.len() as i64)),
                Arc::new(Date32Array::from_iter_values(c.iter().map(|c| c.0))),
                Arc::new(StringArray::from_iter_values(c.iter().map(|c| c.1))),
                Arc::new(StringArray::from_iter_values(c.iter().map(|c| c.2))),
                Arc::new(StringArray::from_iter_values(
                    c.iter().map(|c| CHANNELS[c.3]),
                )),
            ],
        )
    }

    /// A customer id (1-based) who had signed up by `day`; VIPs are far more likely.
    fn customer(&self, rng: &mut StdRng, day: i32) -> (i64, usize) {
        let eligible = self.customers.partition_point(|c| c.0 <= day).max(1);
        let vips = self.vips.partition_point(|&i| i < eligible);
        let index = if vips > 0 && rng.random_bool(0.3) {
            self.vips[rng.random_range(0..vips)]
        } else {
            rng.random_range(0..eligible)
        };
        (index as i64 + 1, self.customers[index].3)
    }
}

// ---- the day plan ----

/// One local day: its date, orders placed, and the channel weights in force.
#[derive(Clone)]
struct Day {
    date: NaiveDate,
    /// UTC microseconds of local midnight.
    midnight_utc_micros: i64,
    orders: usize,
    /// First order id of the day.
    first_id: i64,
    channel_share: [f64; 6],
}

/// Relative demand of a date: season × weekday × events, before noise.
fn demand(date: NaiveDate) -> f64 {
    const MONTH: [f64; 12] = [
        0.92, 0.82, 0.95, 1.0, 1.05, 0.96, 0.78, 0.76, 0.98, 1.05, 1.45, 1.55,
    ];
    const WEEKDAY: [f64; 7] = [1.12, 1.05, 1.0, 0.97, 0.9, 0.84, 1.1]; // Mon..Sun
    let mut d =
        MONTH[date.month0() as usize] * WEEKDAY[date.weekday().num_days_from_monday() as usize];
    let (m, day) = (date.month(), date.day());
    if (m, day) == (11, 11) {
        d *= 2.6; // 11.11 sale
    } else if m == 11 && (28..=30).contains(&day) {
        d *= 1.9; // Black Friday weekend
    } else if m == 12 && day > 25 {
        d *= 0.7; // after Christmas
    } else if m == 12 && (18..=23).contains(&day) {
        d *= 1.25; // last shipping days before Christmas
    }
    d
}

/// November 1 to Christmas: sale prices on some lines, holiday-sale campaigns.
fn is_holiday_season(date: NaiveDate) -> bool {
    date.month() >= 11 && !(date.month() == 12 && date.day() > 25)
}

fn plan_days(orders: usize, seed: u64) -> Vec<Day> {
    let mut rng = stream(seed, 3);
    let start = NaiveDate::from_ymd_opt(YEAR, 1, 1).unwrap_or_default();
    let outage = date(NAVER_OUTAGE);
    let mut days: Vec<Day> = start
        .iter_days()
        .take_while(|d| d.year() == YEAR)
        .map(|date| {
            let mut channel_share = CHANNEL_SHARE;
            if date == outage {
                channel_share[0] *= 0.05;
            }
            let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
            let midnight_utc_micros = TIME_ZONE
                .from_local_datetime(&midnight)
                .earliest()
                .map(|t| t.timestamp_micros())
                .unwrap_or_default();
            Day {
                date,
                midnight_utc_micros,
                orders: 0,
                first_id: 0,
                channel_share,
            }
        })
        .collect();
    let weights: Vec<f64> = days
        .iter()
        .map(|d| {
            demand(d.date)
                * d.channel_share.iter().sum::<f64>()
                * (1.0 + 0.06 * normal(&mut rng)).max(0.5)
        })
        .collect();
    // Largest remainder, so the days add up to exactly `orders`.
    let total: f64 = weights.iter().sum();
    let exact: Vec<f64> = weights.iter().map(|w| w / total * orders as f64).collect();
    let mut counts: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut order: Vec<usize> = (0..exact.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    let short = orders - counts.iter().sum::<usize>();
    for &i in order.iter().cycle().take(short) {
        counts[i] += 1;
    }
    let mut next_id = 1i64;
    for (day, count) in days.iter_mut().zip(counts) {
        day.orders = count;
        day.first_id = next_id;
        next_id += count as i64;
    }
    days
}

// ---- orders and order items ----

/// Local hour-of-day weights: a lunch bump and an evening peak.
const HOURS: [f64; 24] = [
    2.2, 1.4, 0.8, 0.5, 0.4, 0.5, 0.9, 1.6, 2.6, 3.4, 3.9, 4.3, 4.9, 4.6, 4.1, 4.0, 4.1, 4.3, 4.6,
    5.2, 6.1, 6.8, 6.4, 4.1,
];

/// Per day, channel and device: orders, and paid revenue per channel (for ad spend).
#[derive(Clone, Default)]
struct DayStats {
    orders: [[u32; 3]; 6],
    paid_revenue: [f64; 6],
    paid_orders: [u32; 6],
}

struct Month {
    name: String,
    orders: RecordBatch,
    items: RecordBatch,
    days: Vec<DayStats>,
    paid_revenue: f64,
}

fn generate_months(catalog: &Catalog, days: &[Day], seed: u64) -> anyhow::Result<Vec<Month>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 12);
    let next = std::sync::atomic::AtomicUsize::new(1);
    let mut months: Vec<Month> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let m = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if m > 12 {
                            return Ok::<_, anyhow::Error>(done);
                        }
                        let month_days: Vec<&Day> =
                            days.iter().filter(|d| d.date.month() == m as u32).collect();
                        done.push(generate_month(catalog, &month_days, seed, m)?);
                    }
                })
            })
            .collect();
        let mut all = Vec::new();
        for worker in workers {
            match worker.join() {
                Ok(result) => all.extend(result?),
                Err(_) => anyhow::bail!("a generator thread panicked"),
            }
        }
        Ok(all)
    })?;
    months.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(months)
}

fn generate_month(
    catalog: &Catalog,
    days: &[&Day],
    seed: u64,
    month: usize,
) -> anyhow::Result<Month> {
    let mut rng = stream(seed, 100 + month as u64);
    let hours = cumulative(&HOURS);
    let devices = cumulative(&DEVICE_SHARE);
    let lines = cumulative(&[0.45, 0.28, 0.15, 0.08, 0.04]);
    let quantities = cumulative(&[0.76, 0.17, 0.07]);
    let capacity: usize = days.iter().map(|d| d.orders).sum();

    let mut o_id = Vec::with_capacity(capacity);
    let mut o_customer = Vec::with_capacity(capacity);
    let mut o_ts = Vec::with_capacity(capacity);
    let mut o_date = Vec::with_capacity(capacity);
    let mut o_channel = Vec::with_capacity(capacity);
    let mut o_device = Vec::with_capacity(capacity);
    let mut o_status = Vec::with_capacity(capacity);
    let mut o_revenue = Vec::with_capacity(capacity);
    let mut o_discount = Vec::with_capacity(capacity);
    let mut o_items = Vec::with_capacity(capacity);
    let mut i_order = Vec::with_capacity(capacity * 2);
    let mut i_line = Vec::with_capacity(capacity * 2);
    let mut i_product = Vec::with_capacity(capacity * 2);
    let mut i_quantity = Vec::with_capacity(capacity * 2);
    let mut i_price = Vec::with_capacity(capacity * 2);
    let mut i_revenue = Vec::with_capacity(capacity * 2);
    let mut stats = Vec::with_capacity(days.len());
    let mut paid_total = 0.0;

    let (refund_from, refund_to) = (date(REFUND_SPIKE.0), date(REFUND_SPIKE.1));
    for day in days {
        let mut day_stats = DayStats::default();
        let date32 = days_since_epoch(day.date);
        let channels = cumulative(&day.channel_share);
        let holiday = is_holiday_season(day.date);
        let refund_spike = (refund_from..=refund_to).contains(&day.date);
        // Seconds into the local day, sorted, so that ids increase with time.
        let mut seconds: Vec<i64> = (0..day.orders)
            .map(|_| pick(&mut rng, &hours) as i64 * 3600 + rng.random_range(0..3600))
            .collect();
        seconds.sort_unstable();
        for (n, second) in seconds.into_iter().enumerate() {
            let id = day.first_id + n as i64;
            let (customer, acquisition) = catalog.customer(&mut rng, date32);
            // Half of the orders come in through the customer's own acquisition channel.
            let mut channel = if rng.random_bool(0.5) {
                acquisition
            } else {
                pick(&mut rng, &channels)
            };
            if day.channel_share[channel] < CHANNEL_SHARE[channel] * 0.5 {
                // An outage: the channel's link is down, so most of its orders never happen;
                // the few that do come in elsewhere.
                channel = pick(&mut rng, &channels);
            }
            let device = pick(&mut rng, &devices);
            let mut gross = 0.0;
            let mut quantity_total = 0;
            for line in 0..=pick(&mut rng, &lines) {
                let product = pick(&mut rng, &catalog.popularity);
                let quantity = pick(&mut rng, &quantities) as i32 + 1;
                let list = catalog.products[product].4;
                let price = if holiday && rng.random_bool(0.3) {
                    (list * 0.9 / 100.0).round() * 100.0
                } else {
                    list
                };
                let revenue = price * quantity as f64;
                gross += revenue;
                quantity_total += quantity;
                i_order.push(id);
                i_line.push(line as i32 + 1);
                i_product.push(product as i64 + 1);
                i_quantity.push(quantity);
                i_price.push(price);
                i_revenue.push(revenue);
            }
            let discount = if rng.random_bool(0.25) {
                let rate = [0.05, 0.10, 0.15][rng.random_range(0..3)];
                (gross * rate / 100.0).round() * 100.0
            } else {
                0.0
            };
            let refund_rate = if refund_spike && CHANNELS[channel] == "kakao" {
                0.30
            } else {
                0.04
            };
            let u: f64 = rng.random();
            let status = if u < refund_rate {
                "refunded"
            } else if u < refund_rate + 0.03 {
                "cancelled"
            } else {
                "paid"
            };
            let revenue = gross - discount;
            if status == "paid" {
                day_stats.paid_revenue[channel] += revenue;
                day_stats.paid_orders[channel] += 1;
                paid_total += revenue;
            }
            day_stats.orders[channel][device] += 1;
            o_id.push(id);
            o_customer.push(customer);
            o_ts.push(
                day.midnight_utc_micros + second * 1_000_000 + rng.random_range(0..1_000_000),
            );
            o_date.push(date32);
            o_channel.push(CHANNELS[channel]);
            o_device.push(DEVICES[device]);
            o_status.push(status);
            o_revenue.push(revenue);
            o_discount.push(discount);
            o_items.push(quantity_total);
        }
        stats.push(day_stats);
    }
    let orders = batch(
        orders_schema(),
        vec![
            Arc::new(Int64Array::from(o_id)),
            Arc::new(Int64Array::from(o_customer)),
            Arc::new(TimestampMicrosecondArray::from(o_ts).with_timezone("UTC")),
            Arc::new(Date32Array::from(o_date)),
            Arc::new(StringArray::from(o_channel)),
            Arc::new(StringArray::from(o_device)),
            Arc::new(StringArray::from(o_status)),
            Arc::new(Float64Array::from(o_revenue)),
            Arc::new(Float64Array::from(o_discount)),
            Arc::new(Int32Array::from(o_items)),
        ],
    )?;
    let items = batch(
        order_items_schema(),
        vec![
            Arc::new(Int64Array::from(i_order)),
            Arc::new(Int32Array::from(i_line)),
            Arc::new(Int64Array::from(i_product)),
            Arc::new(Int32Array::from(i_quantity)),
            Arc::new(Float64Array::from(i_price)),
            Arc::new(Float64Array::from(i_revenue)),
        ],
    )?;
    Ok(Month {
        name: format!("{YEAR}-{month:02}"),
        orders,
        items,
        days: stats,
        paid_revenue: paid_total,
    })
}

// ---- ad spend and web sessions ----

/// Per order channel: (campaigns with their share of the channel's budget, target ROAS,
/// cost per click, click-through rate). `direct` has no spend.
/// A channel's campaigns (name, share) and its cost per click, click-through and conversion rates.
type ChannelPlan = (&'static [(&'static str, f64)], f64, f64, f64);

fn campaigns(channel: &str) -> Option<ChannelPlan> {
    Some(match channel {
        "naver" => (
            &[
                ("naver-brand-search", 0.35),
                ("naver-shopping-search", 0.45),
                ("naver-gfa", 0.20),
            ][..],
            5.5,
            420.0,
            0.025,
        ),
        "kakao" => (
            &[("kakao-bizboard", 0.6), ("kakao-friendtalk", 0.4)][..],
            3.2,
            380.0,
            0.009,
        ),
        "google" => (
            &[
                ("google-search", 0.5),
                ("google-pmax", 0.35),
                ("google-youtube", 0.15),
            ][..],
            4.2,
            610.0,
            0.031,
        ),
        "meta" => (
            &[("meta-advantage-plus", 0.65), ("meta-retargeting", 0.35)][..],
            2.4,
            520.0,
            0.011,
        ),
        "email" => (&[("email-newsletter", 1.0)][..], 18.0, 12.0, 0.21),
        _ => return None,
    })
}

fn ad_spend_batch(days: &[Day], stats: &[DayStats], seed: u64) -> anyhow::Result<RecordBatch> {
    let mut rng = stream(seed, 4);
    let (mut date, mut channel, mut campaign) = (Vec::new(), Vec::new(), Vec::new());
    let (mut impressions, mut clicks, mut spend, mut conversions) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (day, s) in days.iter().zip(stats) {
        let holiday = is_holiday_season(day.date);
        for (c, name) in CHANNELS.iter().enumerate() {
            let Some((plan, roas, cpc, ctr)) = campaigns(name) else {
                continue;
            };
            // Budgets follow expected (not actual) sales: an outage does not stop the spend.
            let expected = s.paid_revenue[c].max(1.0) / day.channel_share[c] * CHANNEL_SHARE[c];
            let mut budget = expected / roas * (1.0 + 0.12 * normal(&mut rng)).max(0.4);
            let mut click_factor = 1.0;
            if *name == "meta" && within(day.date, META_OVERSPEND) {
                budget *= 3.2;
                click_factor = 0.95; // the extra budget buys clicks but no sales
            }
            let mut list: Vec<(String, f64)> =
                plan.iter().map(|(n, s)| (n.to_string(), *s)).collect();
            if holiday && *name != "email" {
                for entry in &mut list {
                    entry.1 *= 0.75;
                }
                list.push((format!("{name}-holiday-sale"), 0.25));
            }
            let mut left = s.paid_orders[c] as i64;
            let count = list.len();
            for (k, (label, share)) in list.into_iter().enumerate() {
                let cost = (budget * share).round();
                let click = (cost / cpc * click_factor * rng.random_range(0.9..1.1)).round() as i64;
                let impression = (click as f64 / ctr * rng.random_range(0.9..1.1)).round() as i64;
                let converted = if k + 1 == count {
                    left
                } else {
                    ((s.paid_orders[c] as f64 * share).round() as i64).min(left)
                };
                left -= converted;
                date.push(days_since_epoch(day.date));
                channel.push(*name);
                campaign.push(label);
                impressions.push(impression);
                clicks.push(click);
                spend.push(cost);
                conversions.push(converted);
            }
        }
    }
    batch(
        ad_spend_schema(),
        vec![
            Arc::new(Date32Array::from(date)),
            Arc::new(StringArray::from(channel)),
            Arc::new(StringArray::from(campaign)),
            Arc::new(Int64Array::from(impressions)),
            Arc::new(Int64Array::from(clicks)),
            Arc::new(Float64Array::from(spend)),
            Arc::new(Int64Array::from(conversions)),
        ],
    )
}

fn web_sessions_batch(days: &[Day], stats: &[DayStats], seed: u64) -> anyhow::Result<RecordBatch> {
    const CHANNEL_CVR: [f64; 6] = [0.030, 0.024, 0.027, 0.015, 0.040, 0.050];
    const DEVICE_CVR: [f64; 3] = [0.9, 1.3, 1.0];
    let mut rng = stream(seed, 5);
    let mut columns: (Vec<i32>, Vec<&str>, Vec<&str>) = Default::default();
    let (mut sessions, mut users, mut pageviews, mut engaged, mut conversions) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (day, s) in days.iter().zip(stats) {
        for (c, channel) in CHANNELS.iter().enumerate() {
            for (d, device) in DEVICES.iter().enumerate() {
                let orders = s.orders[c][d] as f64;
                let expected = day.orders as f64 * day.channel_share[c]
                    / day.channel_share.iter().sum::<f64>()
                    * DEVICE_SHARE[d];
                let rate = CHANNEL_CVR[c] * DEVICE_CVR[d];
                let visits = (expected.max(orders) / rate
                    * (1.0 + 0.08 * normal(&mut rng)).max(0.6))
                .round()
                .max(orders) as i64;
                columns.0.push(days_since_epoch(day.date));
                columns.1.push(channel);
                columns.2.push(device);
                sessions.push(visits);
                users.push((visits as f64 * rng.random_range(0.72..0.84)).round() as i64);
                pageviews.push((visits as f64 * rng.random_range(3.2..5.4)).round() as i64);
                engaged.push((visits as f64 * rng.random_range(0.52..0.70)).round() as i64);
                conversions.push(orders as i64);
            }
        }
    }
    batch(
        web_sessions_schema(),
        vec![
            Arc::new(Date32Array::from(columns.0)),
            Arc::new(StringArray::from(columns.1)),
            Arc::new(StringArray::from(columns.2)),
            Arc::new(Int64Array::from(sessions)),
            Arc::new(Int64Array::from(users)),
            Arc::new(Int64Array::from(pageviews)),
            Arc::new(Int64Array::from(engaged)),
            Arc::new(Int64Array::from(conversions)),
        ],
    )
}

// ---- schemas and files ----

fn schema(fields: Vec<(&str, DataType)>) -> SchemaRef {
    Arc::new(Schema::new(
        fields
            .into_iter()
            .map(|(name, ty)| Field::new(name, ty, false))
            .collect::<Vec<_>>(),
    ))
}

/// `orders`.
pub fn orders_schema() -> SchemaRef {
    schema(vec![
        ("order_id", DataType::Int64),
        ("customer_id", DataType::Int64),
        (
            "order_ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ),
        ("order_date", DataType::Date32),
        ("channel", DataType::Utf8),
        ("device", DataType::Utf8),
        ("status", DataType::Utf8),
        ("revenue", DataType::Float64),
        ("discount", DataType::Float64),
        ("items", DataType::Int32),
    ])
}

/// `order_items`.
pub fn order_items_schema() -> SchemaRef {
    schema(vec![
        ("order_id", DataType::Int64),
        ("line", DataType::Int32),
        ("product_id", DataType::Int64),
        ("quantity", DataType::Int32),
        ("unit_price", DataType::Float64),
        ("revenue", DataType::Float64),
    ])
}

/// `products`.
pub fn products_schema() -> SchemaRef {
    schema(vec![
        ("product_id", DataType::Int64),
        ("name", DataType::Utf8),
        ("category", DataType::Utf8),
        ("brand", DataType::Utf8),
        ("unit_cost", DataType::Float64),
        ("list_price", DataType::Float64),
    ])
}

/// `customers`.
pub fn customers_schema() -> SchemaRef {
    schema(vec![
        ("customer_id", DataType::Int64),
        ("signup_date", DataType::Date32),
        ("country", DataType::Utf8),
        ("segment", DataType::Utf8),
        ("acquisition_channel", DataType::Utf8),
    ])
}

/// `ad_spend`.
pub fn ad_spend_schema() -> SchemaRef {
    schema(vec![
        ("date", DataType::Date32),
        ("channel", DataType::Utf8),
        ("campaign", DataType::Utf8),
        ("impressions", DataType::Int64),
        ("clicks", DataType::Int64),
        ("spend", DataType::Float64),
        ("conversions", DataType::Int64),
    ])
}

/// `web_sessions`.
pub fn web_sessions_schema() -> SchemaRef {
    schema(vec![
        ("date", DataType::Date32),
        ("channel", DataType::Utf8),
        ("device", DataType::Utf8),
        ("sessions", DataType::Int64),
        ("users", DataType::Int64),
        ("pageviews", DataType::Int64),
        ("engaged_sessions", DataType::Int64),
        ("conversions", DataType::Int64),
    ])
}

fn batch(schema: SchemaRef, columns: Vec<ArrayRef>) -> anyhow::Result<RecordBatch> {
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Writes one Parquet file per `(name, batch)` into `tenant`'s partition of `table`.
fn write_table(
    root: &Path,
    table: &str,
    tenant: &str,
    files: Vec<(String, RecordBatch)>,
) -> anyhow::Result<TableSummary> {
    let dir = partition_dir(root, table, tenant);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let mut summary = TableSummary {
        name: table.to_string(),
        rows: 0,
        files: 0,
        bytes: 0,
    };
    for (name, batch) in files {
        let path = dir.join(format!("{name}.parquet"));
        let file = std::fs::File::create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(properties.clone()))?;
        writer.write(&batch)?;
        writer.close()?;
        summary.rows += batch.num_rows();
        summary.files += 1;
        summary.bytes += std::fs::metadata(&path)?.len();
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_plan_adds_up_and_has_seasons() {
        let days = plan_days(100_000, 7);
        assert_eq!(days.len(), 365);
        assert_eq!(days.iter().map(|d| d.orders).sum::<usize>(), 100_000);
        assert_eq!(days[0].first_id, 1);
        let month = |m: u32| -> usize {
            days.iter()
                .filter(|d| d.date.month() == m)
                .map(|d| d.orders)
                .sum()
        };
        assert!(month(12) > month(8) * 17 / 10, "December peaks over August");
        // Seoul midnight is 15:00 UTC the day before.
        assert_eq!(days[0].midnight_utc_micros, 1_735_657_200_000_000);
    }

    #[test]
    fn same_seed_same_files_and_a_complete_layout() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let summary = generate(a.path(), "shop", 3_000, 11).unwrap();
        generate(b.path(), "shop", 3_000, 11).unwrap();
        assert!(exists(a.path(), "shop"));
        assert!(!a.path().join(".staging-shop").exists());
        let orders = summary.tables.iter().find(|t| t.name == "orders").unwrap();
        assert_eq!((orders.rows, orders.files), (3_000, 12));
        for table in [
            "orders",
            "order_items",
            "products",
            "customers",
            "ad_spend",
            "web_sessions",
        ] {
            let dir = |root: &Path| partition_dir(root, table, "shop");
            let mut names: Vec<_> = std::fs::read_dir(dir(a.path()))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            assert!(!names.is_empty(), "{table}");
            for name in names {
                let left = std::fs::read(dir(a.path()).join(&name)).unwrap();
                let right = std::fs::read(dir(b.path()).join(&name)).unwrap();
                assert!(left == right, "{table}/{name:?} differs between runs");
            }
        }
        assert!(generate(a.path(), "../x", 10, 1).is_err());
    }
}
