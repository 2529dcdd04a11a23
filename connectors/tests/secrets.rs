//! The secrets store end to end on the embedded defaults (SQLite, local key file): versions
//! and rollback, tenant walls, tampering, copies between tenants and names, the encryption
//! counter, and KEK rotation — including rotations interrupted half-way.

use std::path::Path;
use std::sync::Arc;

use connectors::secrets::envelope::{self, KeyBytes};
use connectors::secrets::{
    Kek, KekSource, Layer, LocalKeyFile, SecretRef, Secrets, SecretsError, SecretsOptions,
};
use connectors::store::{SecretRow, SecretRows, SqliteStore};

struct Setup {
    dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    secrets: Secrets<SqliteStore>,
}

fn local_source(dir: &Path) -> KekSource {
    KekSource::LocalFile(LocalKeyFile::open_or_create(dir.join("secrets.kek")).expect("key file"))
}

fn setup_with(options: SecretsOptions) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open(dir.path().join("tidemark.db")).expect("store"));
    let secrets = Secrets::new(Arc::clone(&store), local_source(dir.path()), options);
    Setup {
        dir,
        store,
        secrets,
    }
}

fn setup() -> Setup {
    setup_with(SecretsOptions::default())
}

fn raw(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("tidemark.db")).expect("raw connection")
}

#[tokio::test]
async fn values_are_versioned_and_roll_back() {
    let s = setup();
    let secrets = &s.secrets;
    assert_eq!(
        secrets
            .put("shop-a", "slack-token", b"xoxb-1")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        secrets
            .put("shop-a", "slack-token", b"xoxb-2")
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        secrets.get("shop-a", "slack-token").await.unwrap().expose(),
        b"xoxb-2"
    );
    let v1 = secrets
        .get_version("shop-a", "slack-token", Some(1))
        .await
        .unwrap();
    assert_eq!(v1.expose(), b"xoxb-1");

    // A third put keeps the latest two versions only.
    assert_eq!(
        secrets
            .put("shop-a", "slack-token", b"xoxb-3")
            .await
            .unwrap(),
        3
    );
    let gone = secrets
        .get_version("shop-a", "slack-token", Some(1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            gone,
            SecretsError::NotFound {
                version: Some(1),
                ..
            }
        ),
        "{gone}"
    );
    let listed = secrets.list("shop-a").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "slack-token");
    assert_eq!(listed[0].versions, vec![3, 2]);

    // Rollback puts the previous value again as a new version.
    assert_eq!(secrets.rollback("shop-a", "slack-token").await.unwrap(), 4);
    assert_eq!(
        secrets.get("shop-a", "slack-token").await.unwrap().expose(),
        b"xoxb-2"
    );

    assert!(secrets.delete("shop-a", "slack-token").await.unwrap());
    assert!(!secrets.delete("shop-a", "slack-token").await.unwrap());
    assert!(matches!(
        secrets.get("shop-a", "slack-token").await,
        Err(SecretsError::NotFound { .. })
    ));
    assert!(secrets.list("shop-a").await.unwrap().is_empty());
}

#[tokio::test]
async fn bad_input_is_refused_with_the_reason() {
    let s = setup();
    let e = s.secrets.put("shop-a", "bad name", b"v").await.unwrap_err();
    assert!(e.to_string().contains("secret name"), "{e}");
    let e = s.secrets.put("shop-a", "n", b"").await.unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    let big = vec![1u8; connectors::secrets::MAX_VALUE_BYTES + 1];
    let e = s.secrets.put("shop-a", "n", &big).await.unwrap_err();
    assert!(e.to_string().contains("at most"), "{e}");
    let e = s.secrets.rollback("shop-a", "missing").await.unwrap_err();
    assert!(matches!(e, SecretsError::NotFound { .. }), "{e}");
}

#[tokio::test]
async fn the_key_file_is_private_and_reused() {
    let s = setup();
    s.secrets
        .put("shop-a", "ga4-key", b"{\"private_key\":\"...\"}")
        .await
        .unwrap();
    let path = s.dir.path().join("secrets.kek");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "key file mode is {mode:o}");
    }
    // A second process (here: a second instance) reads the same KEK from the file.
    let again = Secrets::new(
        Arc::clone(&s.store),
        local_source(s.dir.path()),
        SecretsOptions::default(),
    );
    assert_eq!(
        again.get("shop-a", "ga4-key").await.unwrap().expose(),
        b"{\"private_key\":\"...\"}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = LocalKeyFile::open_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }
}

#[tokio::test]
async fn tenants_never_see_each_others_secrets() {
    let s = setup();
    s.secrets
        .put("shop-a", "trino-password", b"a-secret")
        .await
        .unwrap();
    let e = s.secrets.get("shop-b", "trino-password").await.unwrap_err();
    assert!(matches!(e, SecretsError::NotFound { .. }), "{e}");
    assert!(!e.to_string().contains("shop-a"), "{e}");
    assert!(s.secrets.list("shop-b").await.unwrap().is_empty());
    assert!(!s.secrets.delete("shop-b", "trino-password").await.unwrap());
    // References from configuration resolve inside the owning tenant only.
    let reference: SecretRef = serde_json::from_str(r#"{"secret": "trino-password"}"#).unwrap();
    assert_eq!(
        s.secrets
            .resolve("shop-a", &reference)
            .await
            .unwrap()
            .expose(),
        b"a-secret"
    );
    assert!(s.secrets.resolve("shop-b", &reference).await.is_err());
}

/// Copies of a sealed row under another tenant or name — what someone with write access to
/// the database could do — must not decrypt.
#[tokio::test]
async fn rows_copied_to_another_tenant_or_name_fail() {
    let s = setup();
    s.secrets
        .put("shop-a", "meta-ads", b"EAAG-token-a")
        .await
        .unwrap();
    s.secrets
        .put("shop-b", "meta-ads", b"EAAG-token-b")
        .await
        .unwrap();
    let db = raw(s.dir.path());
    let copy = |tenant: &str, name: &str| {
        db.execute(
            "INSERT INTO secrets (tenant, name, version, kek_version, dek_nonce, wrapped_dek,
                                  value_nonce, ciphertext, created_at_ms)
             SELECT ?1, ?2, version, kek_version, dek_nonce, wrapped_dek, value_nonce,
                    ciphertext, created_at_ms
             FROM secrets WHERE tenant = 'shop-a' AND name = 'meta-ads'",
            [tenant, name],
        )
        .unwrap();
    };
    copy("shop-c", "meta-ads");
    copy("shop-a", "stolen");
    for (tenant, name) in [("shop-c", "meta-ads"), ("shop-a", "stolen")] {
        let e = s.secrets.get(tenant, name).await.unwrap_err();
        assert!(
            matches!(
                e,
                SecretsError::Undecryptable {
                    layer: Layer::DataKey,
                    ..
                }
            ),
            "{tenant}/{name}: {e}"
        );
        assert!(e.to_string().contains("failed authentication"), "{e}");
    }
    // Overwriting shop-b's row with shop-a's sealed bytes fails too.
    db.execute(
        "UPDATE secrets SET (dek_nonce, wrapped_dek, value_nonce, ciphertext) =
            (SELECT dek_nonce, wrapped_dek, value_nonce, ciphertext FROM secrets
             WHERE tenant = 'shop-a' AND name = 'meta-ads')
         WHERE tenant = 'shop-b'",
        [],
    )
    .unwrap();
    assert!(matches!(
        s.secrets.get("shop-b", "meta-ads").await,
        Err(SecretsError::Undecryptable { .. })
    ));
    // Moving a version number (e.g. replaying an old version as the latest) fails too.
    db.execute(
        "UPDATE secrets SET version = 7 WHERE tenant = 'shop-a' AND name = 'meta-ads'",
        [],
    )
    .unwrap();
    assert!(matches!(
        s.secrets.get("shop-a", "meta-ads").await,
        Err(SecretsError::Undecryptable { .. })
    ));
}

fn sealed_row(kek: &Kek) -> SecretRow {
    envelope::seal(
        kek,
        "shop-a",
        "smtp-password",
        3,
        b"correct horse battery",
        0,
    )
    .unwrap()
}

fn assert_fails(kek: &Kek, row: &SecretRow, what: &str) {
    match envelope::open(kek, row) {
        Err(SecretsError::Undecryptable { .. }) => {}
        Err(other) => panic!("{what}: expected an authentication failure, got {other}"),
        Ok(_) => panic!("{what}: a tampered row decrypted"),
    }
}

#[test]
fn flipping_any_byte_or_binding_field_is_detected() {
    let kek = Kek::new(1, &KeyBytes::random());
    let row = sealed_row(&kek);
    assert_eq!(
        envelope::open(&kek, &row).unwrap().expose(),
        b"correct horse battery"
    );
    type Field = fn(&mut SecretRow) -> &mut Vec<u8>;
    let fields: [(&str, Field); 4] = [
        ("dek nonce", |r| &mut r.dek_nonce),
        ("wrapped dek (and its tag)", |r| &mut r.wrapped_dek),
        ("value nonce", |r| &mut r.value_nonce),
        ("ciphertext (and its tag)", |r| &mut r.ciphertext),
    ];
    for (what, field) in fields {
        let len = field(&mut row.clone()).len();
        for i in 0..len {
            for bit in [0x01, 0x80] {
                let mut tampered = row.clone();
                field(&mut tampered)[i] ^= bit;
                assert_fails(&kek, &tampered, &format!("{what} byte {i} bit {bit:#x}"));
            }
        }
        // Truncating or extending a field is caught too.
        let mut short = row.clone();
        field(&mut short).pop();
        assert!(envelope::open(&kek, &short).is_err(), "{what} truncated");
        let mut long = row.clone();
        field(&mut long).push(0);
        assert!(envelope::open(&kek, &long).is_err(), "{what} extended");
    }
    // The tag is the last 16 bytes of each sealed field; name the value tag explicitly.
    let mut tag = row.clone();
    let last = tag.ciphertext.len() - 1;
    tag.ciphertext[last] ^= 1;
    assert!(matches!(
        envelope::open(&kek, &tag),
        Err(SecretsError::Undecryptable {
            layer: Layer::Value,
            ..
        })
    ));

    // Every associated-data field: tenant, name, version, KEK version.
    let mut r = row.clone();
    r.tenant = "shop-b".into();
    assert_fails(&kek, &r, "tenant");
    let mut r = row.clone();
    r.name = "smtp-passwore".into();
    assert_fails(&kek, &r, "name");
    let mut r = row.clone();
    r.version = 4;
    assert_fails(&kek, &r, "version");
    // Same key bytes under another version number: only the binding differs.
    let key = KeyBytes::random();
    let (v1, v2) = (Kek::new(1, &key), Kek::new(2, &key));
    let mut r = sealed_row(&v1);
    r.kek_version = 2;
    assert_fails(&v2, &r, "KEK version");
    // The wrong KEK altogether.
    assert_fails(&Kek::new(1, &KeyBytes::random()), &row, "another KEK");
    // Swapping the two layers' ciphertexts.
    let mut r = row.clone();
    std::mem::swap(&mut r.wrapped_dek, &mut r.ciphertext);
    std::mem::swap(&mut r.dek_nonce, &mut r.value_nonce);
    assert!(envelope::open(&kek, &r).is_err(), "layers swapped");
}

#[tokio::test]
async fn the_encryption_counter_warns_refuses_and_resets_on_rotation() {
    let s = setup_with(SecretsOptions {
        keep_versions: 1,
        warn_kek_encryptions: 3,
        max_kek_encryptions: 5,
        ..SecretsOptions::default()
    });
    for i in 0..5 {
        s.secrets
            .put("shop-a", "api-key", format!("v{i}").as_bytes())
            .await
            .unwrap();
        let status = s.secrets.status().await.unwrap();
        assert_eq!(status.rotation_advised, i + 1 >= 3, "after {} puts", i + 1);
    }
    let e = s.secrets.put("shop-a", "api-key", b"v5").await.unwrap_err();
    assert!(
        matches!(e, SecretsError::KekExhausted { encryptions: 5, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("rotate-kek"), "{e}");
    // The refused put wrote nothing.
    assert_eq!(
        s.secrets.get("shop-a", "api-key").await.unwrap().expose(),
        b"v4"
    );

    let report = s.secrets.rotate_kek(|_| {}).await.unwrap();
    assert_eq!(report.rewrapped, 1);
    let status = s.secrets.status().await.unwrap();
    assert_eq!(status.kek_versions.len(), 1, "{status:?}");
    assert_eq!(status.kek_versions[0].encryptions, 1, "one re-wrap so far");
    s.secrets.put("shop-a", "api-key", b"v5").await.unwrap();
    assert_eq!(
        s.secrets.get("shop-a", "api-key").await.unwrap().expose(),
        b"v5"
    );
}

async fn fill(secrets: &Secrets<SqliteStore>, tenants: usize, per_tenant: usize) {
    for t in 0..tenants {
        let values: Vec<(String, Vec<u8>)> = (0..per_tenant)
            .map(|i| (format!("key-{i}"), format!("value-{t}-{i}").into_bytes()))
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
}

async fn assert_all_readable(secrets: &Secrets<SqliteStore>, tenants: usize, per_tenant: usize) {
    for t in 0..tenants {
        for i in 0..per_tenant {
            let value = secrets
                .get(&format!("shop-{t}"), &format!("key-{i}"))
                .await
                .unwrap_or_else(|e| panic!("shop-{t}/key-{i}: {e}"));
            assert_eq!(value.expose(), format!("value-{t}-{i}").as_bytes());
        }
    }
}

#[tokio::test]
async fn rotation_rewraps_everything_and_retires_the_old_version() {
    let s = setup_with(SecretsOptions {
        rewrap_batch: 7,
        ..SecretsOptions::default()
    });
    fill(&s.secrets, 3, 20).await;
    let mut seen = Vec::new();
    let report = s.secrets.rotate_kek(|p| seen.push(p)).await.unwrap();
    assert_eq!(report.from_kek_version, Some(1));
    assert_eq!(report.to_kek_version, 2);
    assert!(!report.resumed);
    assert_eq!(report.rewrapped, 60);
    assert_eq!(report.retired_kek_versions, vec![1]);
    assert_eq!(seen.first().map(|p| (p.done, p.total)), Some((0, 60)));
    assert_eq!(seen.last().map(|p| (p.done, p.total)), Some((60, 60)));
    assert!(seen.windows(2).all(|w| w[0].done <= w[1].done));
    assert_eq!(s.store.count_secret_rows_off(2).unwrap(), 0);
    assert_all_readable(&s.secrets, 3, 20).await;

    // The old version is gone from the key file: a fresh reader cannot get it.
    let fresh = local_source(s.dir.path());
    assert!(matches!(
        fresh.version(1).await,
        Err(SecretsError::KekUnavailable { version: 1, .. })
    ));
    assert_eq!(fresh.current().await.unwrap().version(), 2);
    // A second rotation starts a new one.
    let again = s.secrets.rotate_kek(|_| {}).await.unwrap();
    assert_eq!((again.to_kek_version, again.rewrapped), (3, 60));
}

#[tokio::test]
async fn writers_with_a_stale_kek_follow_a_rotation() {
    let s = setup();
    s.secrets.put("shop-a", "before", b"1").await.unwrap();
    // Another process rotates; this instance still caches version 1.
    let other = Secrets::new(
        Arc::clone(&s.store),
        local_source(s.dir.path()),
        SecretsOptions::default(),
    );
    other.rotate_kek(|_| {}).await.unwrap();
    s.secrets.put("shop-a", "after", b"2").await.unwrap();
    let row = s
        .store
        .get_secret_row("shop-a", "after", None)
        .unwrap()
        .unwrap();
    assert_eq!(
        row.kek_version, 2,
        "the put was re-sealed under the new KEK"
    );
    assert_eq!(
        s.secrets.get("shop-a", "before").await.unwrap().expose(),
        b"1"
    );
    assert_eq!(
        s.secrets.get("shop-a", "after").await.unwrap().expose(),
        b"2"
    );
}

/// The KEK source rotated but the process died before the store heard of it: the next
/// `rotate_kek` finishes that rotation instead of starting another.
#[tokio::test]
async fn a_rotation_the_store_never_heard_of_is_finished() {
    let s = setup();
    fill(&s.secrets, 2, 5).await;
    let new = local_source(s.dir.path()).rotate().await.unwrap();
    assert_eq!(new.version(), 2);
    // Reads keep working on the old version meanwhile.
    assert_all_readable(&s.secrets, 2, 5).await;
    let report = s.secrets.rotate_kek(|_| {}).await.unwrap();
    assert!(report.resumed);
    assert_eq!(report.to_kek_version, 2);
    assert_eq!(report.rewrapped, 10);
    assert_all_readable(&s.secrets, 2, 5).await;
}

/// A re-wrap stopped half-way (the task dies after two batches) leaves every secret readable
/// — some under the old version, some under the new — and the next run resumes at the cursor.
#[tokio::test]
async fn an_interrupted_rewrap_resumes_from_its_cursor() {
    let s = setup_with(SecretsOptions {
        rewrap_batch: 10,
        ..SecretsOptions::default()
    });
    fill(&s.secrets, 4, 25).await;
    let secrets = Arc::new(s.secrets);
    let rotating = Arc::clone(&secrets);
    let died = tokio::spawn(async move {
        rotating
            .rotate_kek(|p| {
                if p.done >= 20 {
                    panic!("simulated crash after {} rows", p.done);
                }
            })
            .await
    })
    .await;
    assert!(died.is_err(), "the rotation task was meant to die");
    let on_new = 100 - s.store.count_secret_rows_off(2).unwrap();
    assert_eq!(on_new, 20, "two batches were committed");
    assert_all_readable(&secrets, 4, 25).await;
    let cursor = s.store.kek_usage().unwrap().last().unwrap().rewrap_cursor;
    assert!(cursor > 0);

    let report = secrets.rotate_kek(|_| {}).await.unwrap();
    assert!(report.resumed);
    assert_eq!(report.to_kek_version, 2);
    assert_eq!(report.rewrapped, 80, "only the rest was re-wrapped");
    assert_eq!(report.retired_kek_versions, vec![1]);
    assert_all_readable(&secrets, 4, 25).await;
}

#[tokio::test]
async fn a_damaged_row_blocks_retirement_with_its_name() {
    let s = setup();
    fill(&s.secrets, 1, 3).await;
    raw(s.dir.path())
        .execute(
            "UPDATE secrets SET ciphertext = zeroblob(length(ciphertext)) WHERE name = 'key-1'",
            [],
        )
        .unwrap();
    let e = s.secrets.rotate_kek(|_| {}).await.unwrap_err();
    assert!(matches!(e, SecretsError::RewrapBlocked { .. }), "{e}");
    assert!(e.to_string().contains("key-1"), "{e}");
    // Version 1 was not retired: the intact secrets still decrypt.
    assert_eq!(
        s.secrets.get("shop-0", "key-0").await.unwrap().expose(),
        b"value-0-0"
    );
    assert_eq!(
        s.secrets.get("shop-0", "key-2").await.unwrap().expose(),
        b"value-0-2"
    );
    // Once the damaged secret is deleted the rotation completes.
    s.secrets.delete("shop-0", "key-1").await.unwrap();
    let report = s.secrets.rotate_kek(|_| {}).await.unwrap();
    assert!(report.resumed);
    assert_eq!(report.retired_kek_versions, vec![1]);
}

#[tokio::test]
async fn a_version_1_database_gains_the_secrets_tables() {
    let s = setup();
    let db = raw(s.dir.path());
    db.execute_batch(
        "DROP TABLE secrets; DROP TABLE secret_keks;
         UPDATE meta SET value = '1' WHERE key = 'schema_version';",
    )
    .unwrap();
    drop(db);
    let store = Arc::new(SqliteStore::open(s.dir.path().join("tidemark.db")).unwrap());
    let secrets = Secrets::new(store, local_source(s.dir.path()), SecretsOptions::default());
    secrets.put("shop-a", "x", b"y").await.unwrap();
    assert_eq!(secrets.get("shop-a", "x").await.unwrap().expose(), b"y");
}
