//! `tidemark secrets …` as an operator uses it: put, get, list, rollback, delete, status and
//! rotate-kek through the real binary; a rotation killed with SIGKILL half-way through its
//! re-wrap and restarted, with every secret readable throughout; and the AWS Secrets Manager
//! KEK provider configured by file against moto (`MOTO_ENDPOINT_URL`, set by `.ci/test`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use connectors::secrets::{KekSource, LocalKeyFile, Secrets, SecretsOptions};
use connectors::store::{SecretRows, SqliteStore};

fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("tidemark.toml");
    let data = dir.join("data");
    std::fs::write(
        &path,
        format!("data_dir = {:?}\n{extra}", data.display().to_string()),
    )
    .unwrap();
    path
}

fn tidemark(config: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("secrets")
        .arg("--config")
        .arg(config)
        .args(args)
        .env("TIDEMARK_LOG", "debug")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tidemark starts");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    child.wait_with_output().expect("tidemark runs")
}

fn ok(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8 output")
}

#[test]
fn put_get_list_rollback_delete_status() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let mut stderr = Vec::new();

    let out = tidemark(
        &config,
        &["put", "--tenant", "shop-a", "slack-token"],
        Some(b"xoxb-first\n"),
    );
    assert!(ok(&out, "put").contains("version 1"));
    stderr.extend(out.stderr);
    let out = tidemark(&config, &["get", "--tenant", "shop-a", "slack-token"], None);
    assert_eq!(
        ok(&out, "get"),
        "xoxb-first",
        "stdin loses one trailing newline only"
    );
    stderr.extend(out.stderr);

    let file = dir.path().join("value");
    std::fs::write(&file, b"xoxb-second\n").unwrap();
    let out = tidemark(
        &config,
        &[
            "put",
            "--tenant",
            "shop-a",
            "slack-token",
            "--file",
            file.to_str().unwrap(),
        ],
        None,
    );
    assert!(ok(&out, "put --file").contains("version 2"));
    stderr.extend(out.stderr);
    let out = tidemark(&config, &["get", "--tenant", "shop-a", "slack-token"], None);
    assert_eq!(
        ok(&out, "get"),
        "xoxb-second\n",
        "files are stored byte for byte"
    );
    let out = tidemark(
        &config,
        &["get", "--tenant", "shop-a", "slack-token", "--version", "1"],
        None,
    );
    assert_eq!(ok(&out, "get --version"), "xoxb-first");

    let out = tidemark(&config, &["list", "--tenant", "shop-a", "--json"], None);
    let list: serde_json::Value = serde_json::from_str(&ok(&out, "list")).unwrap();
    assert_eq!(list[0]["name"], "slack-token");
    assert_eq!(list[0]["versions"], serde_json::json!([2, 1]));
    let out = tidemark(&config, &["list", "--tenant", "shop-a"], None);
    let table = ok(&out, "list table");
    assert!(
        table.contains("slack-token") && !table.contains("xoxb"),
        "{table}"
    );

    let out = tidemark(
        &config,
        &["rollback", "--tenant", "shop-a", "slack-token"],
        None,
    );
    assert!(ok(&out, "rollback").contains("version 3"));
    let out = tidemark(&config, &["get", "--tenant", "shop-a", "slack-token"], None);
    assert_eq!(ok(&out, "get after rollback"), "xoxb-first");

    // Another tenant sees nothing.
    let out = tidemark(&config, &["get", "--tenant", "shop-b", "slack-token"], None);
    assert!(!out.status.success());
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(message.contains("has no secret named"), "{message}");

    let out = tidemark(&config, &["status"], None);
    let status: serde_json::Value = serde_json::from_str(&ok(&out, "status")).unwrap();
    assert_eq!(status["current_kek_version"], 1);
    assert_eq!(status["rows_to_rewrap"], 0);

    let out = tidemark(&config, &["rotate-kek"], None);
    let report: serde_json::Value = serde_json::from_str(&ok(&out, "rotate-kek")).unwrap();
    assert_eq!(report["to_kek_version"], 2);
    assert_eq!(report["rewrapped"], 2);
    stderr.extend(out.stderr);
    let out = tidemark(&config, &["get", "--tenant", "shop-a", "slack-token"], None);
    assert_eq!(ok(&out, "get after rotation"), "xoxb-first");

    let out = tidemark(
        &config,
        &["delete", "--tenant", "shop-a", "slack-token"],
        None,
    );
    ok(&out, "delete");
    let out = tidemark(
        &config,
        &["delete", "--tenant", "shop-a", "slack-token"],
        None,
    );
    assert!(
        !out.status.success(),
        "deleting twice reports the missing secret"
    );

    // The commands logged at debug level; no value appears there.
    let logged = String::from_utf8_lossy(&stderr);
    assert!(
        logged.contains("secret stored"),
        "debug logging was on: {logged}"
    );
    assert!(
        !logged.contains("xoxb"),
        "a value reached the log: {logged}"
    );

    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(dir.path().join("data/secrets.kek"))
            .unwrap()
            .permissions()
            .mode()
    };
    assert_eq!(mode & 0o777, 0o600);
}

fn open_library(dir: &Path) -> (Arc<SqliteStore>, Secrets<SqliteStore>) {
    let data = dir.join("data");
    let store = Arc::new(SqliteStore::open(data.join("tidemark.db")).unwrap());
    let keks =
        KekSource::LocalFile(LocalKeyFile::open_or_create(data.join("secrets.kek")).unwrap());
    let secrets = Secrets::new(Arc::clone(&store), keks, SecretsOptions::default());
    (store, secrets)
}

const TENANTS: usize = 20;
const PER_TENANT: usize = 1_000;

async fn assert_all_readable(secrets: &Secrets<SqliteStore>) {
    for t in 0..TENANTS {
        for i in 0..PER_TENANT {
            let value = secrets
                .get(&format!("shop-{t}"), &format!("key-{i}"))
                .await
                .unwrap_or_else(|e| panic!("shop-{t}/key-{i} lost: {e}"));
            assert_eq!(value.expose(), format!("v-{t}-{i}").as_bytes());
        }
    }
}

/// `rotate-kek` is SIGKILLed in the middle of its re-wrap. Every secret stays readable (some
/// under the old KEK version, some under the new), and the next `rotate-kek` finishes the
/// same rotation from its cursor and retires the old version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_killed_mid_rewrap_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let (store, secrets) = open_library(dir.path());
    for t in 0..TENANTS {
        let values: Vec<(String, Vec<u8>)> = (0..PER_TENANT)
            .map(|i| (format!("key-{i}"), format!("v-{t}-{i}").into_bytes()))
            .collect();
        let entries: Vec<(&str, &[u8])> = values
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        secrets
            .put_many(&format!("shop-{t}"), &entries)
            .await
            .unwrap();
    }
    let total = (TENANTS * PER_TENANT) as u64;

    // Small batches make the re-wrap take a while: one fsync per 20 rows.
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["secrets", "rotate-kek", "--batch", "20", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let killed_at = loop {
        assert!(Instant::now() < deadline, "the re-wrap never started");
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "rotate-kek finished ({status}) before it could be killed; the machine is faster than this test assumes"
            );
        }
        let usage = store.kek_usage().unwrap();
        if usage.last().map(|u| u.kek_version) == Some(2) {
            let left = store.count_secret_rows_off(2).unwrap();
            if left < total - 2_000 {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                break total - store.count_secret_rows_off(2).unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(
        killed_at > 0 && killed_at < total,
        "killed half-way: {killed_at} of {total} re-wrapped"
    );

    // Nothing lost: a fresh process reads every secret, old version or new.
    let (_, fresh) = open_library(dir.path());
    assert_all_readable(&fresh).await;

    // The restarted rotation finishes the same one instead of starting another.
    let out = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["secrets", "rotate-kek", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&ok(&out, "restarted rotate-kek")).unwrap();
    assert_eq!(report["resumed"], true, "{report}");
    assert_eq!(report["to_kek_version"], 2);
    assert_eq!(report["retired_kek_versions"], serde_json::json!([1]));
    let rewrapped = report["rewrapped"].as_u64().unwrap();
    assert!(
        rewrapped <= total - killed_at,
        "resumed from its cursor: {rewrapped} re-wrapped after {killed_at}"
    );
    assert_eq!(store.count_secret_rows_off(2).unwrap(), 0);
    let (_, fresh) = open_library(dir.path());
    assert_all_readable(&fresh).await;
}

#[test]
fn the_aws_provider_is_configured_by_file() {
    let endpoint = std::env::var("MOTO_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!(
            "MOTO_ENDPOINT_URL is not set: this test needs a moto server. Run .ci/test, or: \
             python3 -m pip install 'moto[server]' && moto_server -H 127.0.0.1 -p 5055 & \
             then MOTO_ENDPOINT_URL=http://127.0.0.1:5055 cargo test -p pipeline"
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let secret_id = format!("tidemark-test/cli-kek-{}", std::process::id());
    let config = write_config(
        dir.path(),
        &format!(
            "[secrets]\nkek = \"aws\"\n[secrets.aws]\nsecret_id = {secret_id:?}\n\
             region = \"us-east-1\"\nendpoint_url = {endpoint:?}\ncreate_if_missing = true\n"
        ),
    );
    let out = tidemark(
        &config,
        &["put", "--tenant", "shop-a", "ga4-key"],
        Some(b"{\"k\":1}"),
    );
    ok(&out, "put (aws)");
    let out = tidemark(&config, &["rotate-kek"], None);
    let report: serde_json::Value = serde_json::from_str(&ok(&out, "rotate-kek (aws)")).unwrap();
    assert_eq!(report["to_kek_version"], 2);
    assert_eq!(report["retired_kek_versions"], serde_json::json!([1]));
    let out = tidemark(&config, &["get", "--tenant", "shop-a", "ga4-key"], None);
    assert_eq!(ok(&out, "get (aws)"), "{\"k\":1}");
    let out = tidemark(&config, &["status"], None);
    let status: serde_json::Value = serde_json::from_str(&ok(&out, "status (aws)")).unwrap();
    assert!(
        status["kek_source"].as_str().unwrap().contains(&secret_id),
        "{status}"
    );
    assert!(
        !dir.path().join("data/secrets.kek").exists(),
        "no local key file with kek = aws"
    );
}
