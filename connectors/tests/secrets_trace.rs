//! Secret values and key bytes never reach the logs: the whole flow — KEK created in AWS
//! Secrets Manager (moto, see `secrets_aws.rs`) and in a local file, puts, gets, versions,
//! rollback, a tampered row, the encryption-limit warning, rotation with re-wrap and
//! retirement — runs under a subscriber capturing every target at TRACE level (the AWS SDK's
//! and HTTP client's included). Afterwards the real KEKs are fetched and neither they nor any
//! plaintext may appear in the captured output, in errors or in `Debug` output, in any of
//! several encodings.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{Credentials, Region};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use connectors::secrets::{
    AwsSecretsManager, KekSource, LocalKeyFile, Secrets, SecretsError, SecretsOptions,
};
use connectors::store::SqliteStore;
use rand::RngCore;

static CAPTURING: AtomicBool = AtomicBool::new(true);

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if CAPTURING.load(Ordering::SeqCst) {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn moto_endpoint() -> String {
    std::env::var("MOTO_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!(
            "MOTO_ENDPOINT_URL is not set: this test needs a moto server. Run .ci/test, or: \
             python3 -m pip install 'moto[server]' && moto_server -H 127.0.0.1 -p 5055 & \
             then MOTO_ENDPOINT_URL=http://127.0.0.1:5055 cargo test -p connectors"
        )
    })
}

/// Every way a byte string could show up in text output.
fn encodings(bytes: &[u8]) -> Vec<String> {
    let mut out = vec![
        STANDARD.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
        bytes.iter().map(|b| format!("{b:02x}")).collect(),
        bytes.iter().map(|b| format!("{b:02X}")).collect(),
        format!("{bytes:?}"),
        bytes
            .iter()
            .map(|b| format!("\\x{b:02x}"))
            .collect::<String>(),
    ];
    if let Ok(text) = std::str::from_utf8(bytes) {
        out.push(text.to_owned());
        out.push(format!("{text:?}"));
    }
    // A prefix of the bytes is a leak too; 12 bytes of key or value is already too much.
    if bytes.len() > 12 {
        out.push(
            STANDARD
                .encode(&bytes[..12])
                .trim_end_matches('=')
                .to_owned(),
        );
        out.push(bytes[..12].iter().map(|b| format!("{b:02x}")).collect());
        let list = format!("{:?}", &bytes[..12]);
        out.push(list.trim_end_matches(']').to_owned());
        if let Ok(text) = std::str::from_utf8(&bytes[..12]) {
            out.push(text.to_owned());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_value_or_key_reaches_the_trace_output() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let endpoint = moto_endpoint();
    let config = connectors::http::aws_config_loader()
        .region(Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await;
    let secret_id = format!("tidemark-test/trace-kek-{:016x}", rand::rng().next_u64());
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("local.kek");

    // Values that would be easy to spot: random, so no log line matches by chance.
    let values: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            let mut v = vec![0u8; 24];
            rand::rng().fill_bytes(&mut v);
            let mut text = format!("pw{i}-").into_bytes();
            text.extend(URL_SAFE_NO_PAD.encode(&v).into_bytes());
            text
        })
        .collect();
    let mut errors = Vec::new();
    let mut debug_output = Vec::new();

    for source in ["aws", "local"] {
        let store = Arc::new(SqliteStore::open(dir.path().join(format!("{source}.db"))).unwrap());
        let keks = match source {
            "aws" => KekSource::AwsSecretsManager(AwsSecretsManager::from_sdk_config(
                &config, &secret_id, true,
            )),
            _ => KekSource::LocalFile(LocalKeyFile::open_or_create(&key_file).unwrap()),
        };
        let secrets = Secrets::new(
            Arc::clone(&store),
            keks,
            SecretsOptions {
                warn_kek_encryptions: 3,
                rewrap_batch: 2,
                ..SecretsOptions::default()
            },
        );
        secrets
            .put("shop-a", "slack-token", &values[0])
            .await
            .unwrap();
        secrets
            .put("shop-a", "slack-token", &values[1])
            .await
            .unwrap();
        secrets
            .put("shop-b", "smtp-password", &values[2])
            .await
            .unwrap();
        let got = secrets.get("shop-a", "slack-token").await.unwrap();
        debug_output.push(format!("{got:?} {got}"));
        secrets
            .get_version("shop-a", "slack-token", Some(1))
            .await
            .unwrap();
        secrets.list("shop-a").await.unwrap();
        let report = secrets
            .rotate_kek(|p| tracing::trace!(?p, "progress"))
            .await
            .unwrap();
        assert_eq!(report.rewrapped, 3);
        secrets
            .put("shop-b", "trino-password", &values[3])
            .await
            .unwrap();
        secrets.rollback("shop-a", "slack-token").await.unwrap();
        errors.push(secrets.get("shop-c", "slack-token").await.unwrap_err());
        // A tampered row: its error must not echo anything either.
        rusqlite::Connection::open(dir.path().join(format!("{source}.db")))
            .unwrap()
            .execute(
                "UPDATE secrets SET tenant = 'shop-z' WHERE name = 'smtp-password'",
                [],
            )
            .unwrap();
        let e = secrets.get("shop-z", "smtp-password").await.unwrap_err();
        assert!(matches!(e, SecretsError::Undecryptable { .. }), "{e}");
        errors.push(e);
        debug_output.push(format!("{secrets:?} {:?}", secrets.kek_source()));
        debug_output.push(format!(
            "{:?}",
            secrets.kek_source().current().await.unwrap()
        ));
        secrets.delete("shop-a", "slack-token").await.unwrap();
    }

    // Stop capturing, then fetch the real keys to look for.
    CAPTURING.store(false, Ordering::SeqCst);
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let client = Client::new(&config);
    let listed = client
        .list_secret_version_ids()
        .secret_id(&secret_id)
        .include_deprecated(true)
        .send()
        .await
        .unwrap();
    for v in listed.versions.unwrap_or_default() {
        let out = client
            .get_secret_value()
            .secret_id(&secret_id)
            .version_id(v.version_id.unwrap())
            .send()
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_str(out.secret_string().unwrap()).unwrap();
        keys.push(STANDARD.decode(json["key"].as_str().unwrap()).unwrap());
    }
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    for k in file["keys"].as_array().unwrap() {
        keys.push(STANDARD.decode(k["key"].as_str().unwrap()).unwrap());
    }
    assert_eq!(keys.len(), 3, "two AWS versions and one local key remain");

    let logged = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    // The capture saw the flow, at TRACE, from our code and from the AWS SDK.
    for expected in [
        "KEK rotation finished",
        "secret stored",
        "secret read",
        "nearing its encryption limit",
        "TRACE",
        "aws_smithy",
    ] {
        assert!(logged.contains(expected), "the capture lacks {expected:?}");
    }
    let texts: Vec<String> = errors
        .iter()
        .flat_map(|e| [e.to_string(), format!("{e:?}")])
        .chain(debug_output)
        .chain(std::iter::once(logged.clone()))
        .collect();
    for (what, secret) in values
        .iter()
        .map(|v| ("a secret value", v))
        .chain(keys.iter().map(|k| ("a KEK", k)))
    {
        for encoded in encodings(secret) {
            for text in &texts {
                if let Some(at) = text.find(&encoded) {
                    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                    panic!(
                        "{what} leaked as {encoded:?}: ...{}",
                        &text[start..(at + encoded.len()).min(text.len())]
                    );
                }
            }
        }
    }
}
