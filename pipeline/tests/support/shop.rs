//! A `tidemark serve` over a small generated warehouse, shared by the dashboard and pgwire tests.
//!
//! Two tenants with generated data: `shop-a` (20,000 orders) and `shop-b` (5,000 orders), plus
//! `shop-c` with a key and no data. `shop-a` also has a table of its own, `vip_orders`, which no
//! other tenant has. Expected answers are computed by reading the Parquet files directly.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sql::arrow::array::{AsArray, RecordBatch};
use sql::arrow::datatypes::{Float64Type, Int64Type};
use sql::datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub const KEY_A: &str = "key-for-shop-a-0123456789";
pub const KEY_B: &str = "key-for-shop-b-0123456789";
pub const KEY_C: &str = "key-for-shop-c-0123456789";
pub const ORDERS_A: usize = 20_000;
pub const ORDERS_B: usize = 5_000;

/// A running server over its own data directory; killed when dropped.
pub struct Shop {
    child: Child,
    pub base: String,
    pub pg_port: u16,
    pub warehouse: PathBuf,
    config: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Shop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("---- tidemark server log ----\n{log}");
        }
    }
}

#[path = "ports.rs"]
mod ports;
pub use ports::free_port;

fn tidemark() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidemark"));
    // Only the file configures the server; variables of the calling shell must not leak in.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TIDEMARK_") {
            command.env_remove(name);
        }
    }
    command
}

/// Runs `tidemark warehouse generate` for one tenant.
pub fn generate(root: &Path, tenant: &str, orders: usize, seed: u64) {
    let output = tidemark()
        .args(["warehouse", "generate", "--root"])
        .arg(root)
        .args(["--tenant", tenant, "--orders", &orders.to_string()])
        .args(["--seed", &seed.to_string()])
        .output()
        .expect("run tidemark warehouse generate");
    assert!(
        output.status.success(),
        "warehouse generate failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Starts `tidemark serve` on `config`, its log appended to `log`.
fn spawn(config: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    tidemark()
        .arg("serve")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start tidemark serve")
}

impl Shop {
    pub async fn start() -> Shop {
        Shop::start_with(|_| (String::new(), String::new())).await
    }

    /// A shop whose configuration gets what `extra` returns (given the temp dir): lines for the
    /// `[dashboard]` section, and text for the end of the file (more tables, more tenants).
    pub async fn start_with(extra: impl FnOnce(&Path) -> (String, String)) -> Shop {
        let dir = tempfile::tempdir().expect("temp dir");
        let (extra, tail) = extra(dir.path());
        let warehouse = dir.path().join("warehouse");
        generate(&warehouse, "shop-a", ORDERS_A, 7);
        generate(&warehouse, "shop-b", ORDERS_B, 8);
        copy_dir(
            &warehouse.join("orders").join("tenant=shop-a"),
            &warehouse.join("vip_orders").join("tenant=shop-a"),
        );
        let (port, pg_port) = (free_port(), free_port());
        let config = dir.path().join("tidemark.toml");
        std::fs::write(
            &config,
            format!(
                r#"data_dir = "{data}"

[server]
listen = "127.0.0.1:{port}"

[dashboard]
warehouse = "{warehouse}"
cache_ttl = "10m"
pgwire_listen = "127.0.0.1:{pg_port}"
{extra}

[[tenants]]
id = "shop-a"
time_zone = "Asia/Seoul"
locale = "ko-KR"
currency = "KRW"
api_key = "{KEY_A}"

[[tenants]]
id = "shop-b"
api_key = "{KEY_B}"

[[tenants]]
id = "shop-c"
api_key = "{KEY_C}"
{tail}
"#,
                data = dir.path().join("data").display(),
                warehouse = warehouse.display(),
            ),
        )
        .expect("write config");
        let log = dir.path().join("tidemark.log");
        let child = spawn(&config, &log);
        let mut shop = Shop {
            child,
            base: format!("http://127.0.0.1:{port}"),
            pg_port,
            warehouse,
            config,
            log,
            _dir: dir,
        };
        shop.wait_healthy().await;
        shop
    }

    async fn wait_healthy(&mut self) {
        let http = connectors::http::client();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let health = http.get(format!("{}/healthz", self.base)).send().await;
            if health.is_ok_and(|r| r.status().is_success())
                && std::net::TcpStream::connect(("127.0.0.1", self.pg_port)).is_ok()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                panic!("tidemark serve exited with {status} before it was healthy:\n{log}");
            }
            assert!(Instant::now() < deadline, "tidemark never became healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the server (SIGKILL: no shutdown of any kind) and starts it again on the same data
    /// directory, warehouse and configuration.
    pub async fn kill_and_restart(&mut self) {
        self.child.kill().expect("kill tidemark");
        self.child.wait().expect("reap tidemark");
        self.child = spawn(&self.config, &self.log);
        self.wait_healthy().await;
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the server process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Every row of a tenant's table, read straight from its Parquet files.
    pub fn read(&self, table: &str, tenant: &str) -> Vec<RecordBatch> {
        let dir = self.warehouse.join(table).join(format!("tenant={tenant}"));
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
            .into_iter()
            .flat_map(|path| {
                let file = std::fs::File::open(path).unwrap();
                ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap()
                    .build()
                    .unwrap()
                    .map(|b| b.unwrap())
            })
            .collect()
    }

    /// Paid revenue and paid order count per channel, computed from the files.
    pub fn paid_by_channel(&self, tenant: &str) -> BTreeMap<String, (f64, i64)> {
        let mut out: BTreeMap<String, (f64, i64)> = BTreeMap::new();
        for batch in self.read("orders", tenant) {
            let channel = batch.column_by_name("channel").unwrap().as_string::<i32>();
            let status = batch.column_by_name("status").unwrap().as_string::<i32>();
            let revenue = batch
                .column_by_name("revenue")
                .unwrap()
                .as_primitive::<Float64Type>();
            for i in 0..batch.num_rows() {
                if status.value(i) == "paid" {
                    let entry = out.entry(channel.value(i).to_string()).or_default();
                    entry.0 += revenue.value(i);
                    entry.1 += 1;
                }
            }
        }
        out
    }

    /// Orders per channel (any status), computed from the files.
    pub fn orders_by_channel(&self, tenant: &str) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for batch in self.read("orders", tenant) {
            let channel = batch.column_by_name("channel").unwrap().as_string::<i32>();
            for i in 0..batch.num_rows() {
                *out.entry(channel.value(i).to_string()).or_default() += 1;
            }
        }
        out
    }

    /// The largest order id, from the files.
    pub fn max_order_id(&self, tenant: &str) -> i64 {
        self.read("orders", tenant)
            .iter()
            .flat_map(|b| {
                let ids = b
                    .column_by_name("order_id")
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .clone();
                (0..ids.len()).map(move |i| ids.value(i))
            })
            .max()
            .unwrap()
    }
}

/// Relative closeness for sums of money computed in different orders.
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}
