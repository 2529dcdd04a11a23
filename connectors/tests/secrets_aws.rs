//! The KEK in AWS Secrets Manager, against moto's emulation of its API (started by
//! `.ci/test`, which exports `MOTO_ENDPOINT_URL`): the KEK secret is created, rotated from
//! outside with `PutSecretValue` (as a rotation Lambda would), every data key re-wrapped,
//! every secret still decrypts, and the old version loses its `AWSPREVIOUS` stage.

use std::sync::Arc;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{Credentials, Region};
use base64::Engine;
use connectors::secrets::{AwsSecretsManager, KekSource, Secrets, SecretsError, SecretsOptions};
use connectors::store::{SecretRows, SqliteStore};
use rand::RngCore;

/// Where moto listens; a missing variable fails the test with instructions instead of
/// skipping it.
fn moto_endpoint() -> String {
    std::env::var("MOTO_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!(
            "MOTO_ENDPOINT_URL is not set: the AWS Secrets Manager tests need a moto server. \
             Run .ci/test, or start one by hand: \
             python3 -m pip install 'moto[server]' && moto_server -H 127.0.0.1 -p 5055 & \
             then MOTO_ENDPOINT_URL=http://127.0.0.1:5055 cargo test -p connectors"
        )
    })
}

async fn aws_config() -> aws_config::SdkConfig {
    connectors::http::aws_config_loader()
        .region(Region::new("us-east-1"))
        .endpoint_url(moto_endpoint())
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await
}

fn unique_secret_id() -> String {
    format!("tidemark-test/kek-{:016x}", rand::rng().next_u64())
}

/// `(version id, kek version, stages)` of every version of the secret.
async fn versions(client: &Client, id: &str) -> Vec<(String, u32, Vec<String>)> {
    let out = client
        .list_secret_version_ids()
        .secret_id(id)
        .include_deprecated(true)
        .send()
        .await
        .expect("list versions");
    let mut found = Vec::new();
    for v in out.versions.unwrap_or_default() {
        let version_id = v.version_id.expect("version id");
        let value = client
            .get_secret_value()
            .secret_id(id)
            .version_id(&version_id)
            .send()
            .await
            .expect("get version");
        let json: serde_json::Value =
            serde_json::from_str(value.secret_string().expect("string")).expect("json");
        let kek_version = json["tidemark_kek_version"].as_u64().expect("version") as u32;
        found.push((
            version_id,
            kek_version,
            v.version_stages.unwrap_or_default(),
        ));
    }
    found.sort_by_key(|(_, v, _)| *v);
    found
}

fn stages_of(all: &[(String, u32, Vec<String>)], kek_version: u32) -> Vec<String> {
    let mut stages = all
        .iter()
        .find(|(_, v, _)| *v == kek_version)
        .map(|(_, _, s)| s.clone())
        .unwrap_or_else(|| panic!("no KEK version {kek_version} in {all:?}"));
    stages.sort();
    stages
}

#[tokio::test]
async fn kek_in_secrets_manager_rotates_and_retires_the_old_stage() {
    let config = aws_config().await;
    let client = Client::new(&config);
    let id = unique_secret_id();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("tidemark.db")).unwrap());
    let secrets = Secrets::new(
        Arc::clone(&store),
        KekSource::AwsSecretsManager(AwsSecretsManager::from_sdk_config(&config, &id, true)),
        SecretsOptions {
            rewrap_batch: 8,
            ..SecretsOptions::default()
        },
    );

    // First use creates the KEK secret.
    for i in 0..30 {
        secrets
            .put(
                &format!("shop-{}", i % 3),
                &format!("ads-key-{i}"),
                format!("token-{i}").as_bytes(),
            )
            .await
            .unwrap();
    }
    let all = versions(&client, &id).await;
    assert_eq!(all.len(), 1);
    assert_eq!(stages_of(&all, 1), vec!["AWSCURRENT"]);

    // Rotate from outside, the way a rotation Lambda would: PutSecretValue.
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let value = serde_json::json!({
        "tidemark_kek_version": 2,
        "key": base64::engine::general_purpose::STANDARD.encode(key),
    });
    client
        .put_secret_value()
        .secret_id(&id)
        .secret_string(value.to_string())
        .send()
        .await
        .unwrap();
    let all = versions(&client, &id).await;
    assert_eq!(stages_of(&all, 1), vec!["AWSPREVIOUS"]);
    assert_eq!(stages_of(&all, 2), vec!["AWSCURRENT"]);

    // Reads go on under the old version meanwhile, and new writes use the new one once the
    // store knows about it.
    assert_eq!(
        secrets.get("shop-0", "ads-key-0").await.unwrap().expose(),
        b"token-0"
    );

    let report = secrets.rotate_kek(|_| {}).await.unwrap();
    assert!(
        report.resumed,
        "an outside rotation is finished, not repeated"
    );
    assert_eq!(report.to_kek_version, 2);
    assert_eq!(report.rewrapped, 30);
    assert_eq!(report.retired_kek_versions, vec![1]);
    assert_eq!(store.count_secret_rows_off(2).unwrap(), 0);
    for i in 0..30 {
        let value = secrets
            .get(&format!("shop-{}", i % 3), &format!("ads-key-{i}"))
            .await
            .unwrap();
        assert_eq!(value.expose(), format!("token-{i}").as_bytes());
    }
    let all = versions(&client, &id).await;
    assert!(
        stages_of(&all, 1).is_empty(),
        "AWSPREVIOUS retired: {all:?}"
    );
    assert_eq!(stages_of(&all, 2), vec!["AWSCURRENT"]);

    // Tidemark's own rotation does the PutSecretValue itself.
    let report = secrets.rotate_kek(|_| {}).await.unwrap();
    assert!(!report.resumed);
    assert_eq!((report.to_kek_version, report.rewrapped), (3, 30));
    let all = versions(&client, &id).await;
    assert_eq!(stages_of(&all, 3), vec!["AWSCURRENT"]);
    assert!(stages_of(&all, 2).is_empty(), "{all:?}");
    assert_eq!(
        secrets.get("shop-2", "ads-key-29").await.unwrap().expose(),
        b"token-29"
    );

    // A second process pointed at the same secret reads everything.
    let other = Secrets::new(
        Arc::clone(&store),
        KekSource::AwsSecretsManager(AwsSecretsManager::from_sdk_config(&config, &id, false)),
        SecretsOptions::default(),
    );
    assert_eq!(
        other.get("shop-1", "ads-key-1").await.unwrap().expose(),
        b"token-1"
    );
}

#[tokio::test]
async fn a_missing_or_malformed_kek_secret_is_a_clear_error() {
    let config = aws_config().await;
    let id = unique_secret_id();
    let missing =
        KekSource::AwsSecretsManager(AwsSecretsManager::from_sdk_config(&config, &id, false));
    let e = missing.current().await.unwrap_err();
    assert!(e.to_string().contains("create_if_missing"), "{e}");
    assert!(!e.is_transient());

    Client::new(&config)
        .create_secret()
        .name(&id)
        .secret_string("not-json-but-sensitive-text")
        .send()
        .await
        .unwrap();
    let e = missing.current().await.unwrap_err();
    assert!(matches!(e, SecretsError::KekSource { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("tidemark_kek_version"), "{text}");
    assert!(
        !text.contains("sensitive"),
        "the error echoes the secret's value: {text}"
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_transient() {
    let config = connectors::http::aws_config_loader()
        .region(Region::new("us-east-1"))
        // Port 9 (discard) on loopback: nothing listens there.
        .endpoint_url("http://127.0.0.1:9")
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await;
    let source =
        KekSource::AwsSecretsManager(AwsSecretsManager::from_sdk_config(&config, "x", false));
    let e = source.current().await.unwrap_err();
    assert!(e.is_transient(), "{e}");
}
