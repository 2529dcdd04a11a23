//! Key-encryption keys (KEKs) and where they live.
//!
//! A KEK is a 256-bit AES key with a version number. Rows name the version that wraps their
//! data key, so during a rotation two versions are in use: the current one for every new
//! encryption, and the previous one for rows not re-wrapped yet.
//!
//! Two sources, chosen by configuration:
//! - [`LocalKeyFile`]: a JSON file beside the database, created with mode 0600 on first use;
//!   the embedded default. It holds every version not retired yet.
//! - [`AwsSecretsManager`]: one secret in AWS Secrets Manager whose value is
//!   `{"tidemark_kek_version": N, "key": "<base64>"}`. The stage `AWSCURRENT` is the current
//!   version and `AWSPREVIOUS` the one being re-wrapped away from; rotation is a
//!   `PutSecretValue` (which moves both stages), retirement removes `AWSPREVIOUS` from the old
//!   version. Region, credentials and endpoint come from the standard AWS configuration
//!   (`AWS_REGION`, `AWS_ENDPOINT_URL_SECRETS_MANAGER`, profiles, …) unless set explicitly.
//!
//! Key bytes only ever sit in zeroize-on-drop buffers here; nothing about a key but its
//! version is logged or put in an error.

use std::io::Write;
use std::path::{Path, PathBuf};

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, SdkError};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::SecretsError;
use super::envelope::{Aead, KeyBytes};

/// A key-encryption key ready for use: its version and its cipher (key schedule zeroed on
/// drop). `Debug` shows the version only.
pub struct Kek {
    version: u32,
    aead: Aead,
}

impl Kek {
    /// A KEK of `version` from its key bytes (which the caller then drops, zeroing them).
    pub fn new(version: u32, key: &KeyBytes) -> Self {
        Self {
            version,
            aead: Aead::new(key),
        }
    }

    /// The version rows name.
    pub fn version(&self) -> u32 {
        self.version
    }

    pub(crate) fn aead(&self) -> &Aead {
        &self.aead
    }
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kek")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Where the KEK lives.
#[derive(Debug)]
pub enum KekSource {
    /// A key file on local disk.
    LocalFile(LocalKeyFile),
    /// A secret in AWS Secrets Manager.
    AwsSecretsManager(AwsSecretsManager),
}

impl KekSource {
    /// The current KEK (creating the first one when the source allows it).
    pub async fn current(&self) -> Result<Kek, SecretsError> {
        match self {
            Self::LocalFile(file) => file.current(),
            Self::AwsSecretsManager(aws) => aws.current().await,
        }
    }

    /// The KEK of `version`, current or not yet retired.
    pub async fn version(&self, version: u32) -> Result<Kek, SecretsError> {
        match self {
            Self::LocalFile(file) => file.version(version),
            Self::AwsSecretsManager(aws) => aws.version(version).await,
        }
    }

    /// Makes a new KEK version current and returns it; the previous one stays readable until
    /// [`KekSource::retire_before`].
    pub async fn rotate(&self) -> Result<Kek, SecretsError> {
        match self {
            Self::LocalFile(file) => file.rotate(),
            Self::AwsSecretsManager(aws) => aws.rotate().await,
        }
    }

    /// Retires every version below `version`; returns the versions retired.
    pub async fn retire_before(&self, version: u32) -> Result<Vec<u32>, SecretsError> {
        match self {
            Self::LocalFile(file) => file.retire_before(version),
            Self::AwsSecretsManager(aws) => aws.retire_before(version).await,
        }
    }

    /// What the source is, for messages: `local key file PATH` or `AWS Secrets Manager
    /// secret ID`.
    pub fn describe(&self) -> String {
        match self {
            Self::LocalFile(file) => format!("local key file {}", file.path.display()),
            Self::AwsSecretsManager(aws) => {
                format!("AWS Secrets Manager secret {}", aws.secret_id)
            }
        }
    }
}

// ---- local key file ----

/// Format tag of the key file.
const KEY_FILE_FORMAT: &str = "tidemark-kek/1";

/// A KEK kept in a local file (mode 0600), for embedded use and development.
#[derive(Debug)]
pub struct LocalKeyFile {
    path: PathBuf,
}

/// The key file's JSON. Every key string is zeroed when the value is dropped.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    format: String,
    keys: Vec<KeyFileEntry>,
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
struct KeyFileEntry {
    version: u32,
    key: String,
}

impl KeyFileEntry {
    fn new(version: u32, key: &KeyBytes) -> Self {
        Self {
            version,
            key: BASE64.encode(key.expose()),
        }
    }
}

impl LocalKeyFile {
    /// Uses the key file at `path`, creating it (mode 0600, one fresh key of version 1, parent
    /// directories as needed) when it does not exist.
    pub fn open_or_create(path: impl Into<PathBuf>) -> Result<Self, SecretsError> {
        let file = Self { path: path.into() };
        let _lock = file.lock()?;
        if !file.path.exists() {
            file.write(&KeyFile {
                format: KEY_FILE_FORMAT.to_owned(),
                keys: vec![KeyFileEntry::new(1, &KeyBytes::random())],
            })?;
            tracing::info!(path = %file.path.display(), "created local KEK file");
        }
        file.read()?;
        Ok(file)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn problem(&self, problem: impl Into<String>) -> SecretsError {
        SecretsError::KeyFile {
            path: self.path.display().to_string(),
            problem: problem.into(),
        }
    }

    /// Serialises read-modify-write cycles of processes sharing the file (a server and the
    /// CLI); released when dropped.
    fn lock(&self) -> Result<std::fs::File, SecretsError> {
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| self.problem(format!("cannot create its directory: {e}")))?;
        }
        let mut lock_path = self.path.clone().into_os_string();
        lock_path.push(".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| self.problem(format!("cannot open its lock file: {e}")))?;
        // `File::lock` is Rust 1.89, as is the server's data-directory lock.
        #[allow(clippy::incompatible_msrv)]
        lock.lock()
            .map_err(|e| self.problem(format!("cannot lock it: {e}")))?;
        Ok(lock)
    }

    fn read(&self) -> Result<KeyFile, SecretsError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(&self.path)
                .map_err(|e| self.problem(format!("cannot read it: {e}")))?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(self.problem(format!(
                    "it is readable by other users (mode {mode:o}); run chmod 600 on it"
                )));
            }
        }
        let text = Zeroizing::new(
            std::fs::read_to_string(&self.path)
                .map_err(|e| self.problem(format!("cannot read it: {e}")))?,
        );
        // serde_json's own message could quote the input; say only where it broke.
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| {
            self.problem(format!(
                "it is not a Tidemark key file (invalid JSON at line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        if file.format != KEY_FILE_FORMAT {
            return Err(self.problem(format!(
                "unknown format {:?}; expected {KEY_FILE_FORMAT:?}",
                file.format
            )));
        }
        if file.keys.is_empty() {
            return Err(self.problem("it holds no key"));
        }
        Ok(file)
    }

    /// Replaces the file atomically: a 0600 temporary file, fsync, rename, fsync directory.
    fn write(&self, file: &KeyFile) -> Result<(), SecretsError> {
        let mut text = Zeroizing::new(Vec::with_capacity(256 + 64 * file.keys.len()));
        serde_json::to_writer_pretty(&mut *text, file)
            .map_err(|e| self.problem(format!("cannot encode it: {e}")))?;
        text.push(b'\n');
        let mut tmp_path = self.path.clone().into_os_string();
        tmp_path.push(".tmp");
        let tmp_path = PathBuf::from(tmp_path);
        let _ = std::fs::remove_file(&tmp_path);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut out = options
            .open(&tmp_path)
            .map_err(|e| self.problem(format!("cannot create {}: {e}", tmp_path.display())))?;
        out.write_all(&text)
            .and_then(|()| out.sync_all())
            .map_err(|e| self.problem(format!("cannot write it: {e}")))?;
        std::fs::rename(&tmp_path, &self.path)
            .map_err(|e| self.problem(format!("cannot replace it: {e}")))?;
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty())
            && let Ok(dir) = std::fs::File::open(parent)
        {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    fn kek_of(&self, entry: &KeyFileEntry) -> Result<Kek, SecretsError> {
        let bytes = Zeroizing::new(BASE64.decode(entry.key.as_bytes()).map_err(|_| {
            self.problem(format!("key version {} is not valid base64", entry.version))
        })?);
        let key = KeyBytes::from_slice(&bytes).ok_or_else(|| {
            self.problem(format!("key version {} is not 32 bytes", entry.version))
        })?;
        Ok(Kek::new(entry.version, &key))
    }

    fn current(&self) -> Result<Kek, SecretsError> {
        let file = self.read()?;
        let newest = file
            .keys
            .iter()
            .max_by_key(|k| k.version)
            .ok_or_else(|| self.problem("it holds no key"))?;
        self.kek_of(newest)
    }

    fn version(&self, version: u32) -> Result<Kek, SecretsError> {
        let file = self.read()?;
        match file.keys.iter().find(|k| k.version == version) {
            Some(entry) => self.kek_of(entry),
            None => Err(SecretsError::KekUnavailable {
                version,
                source_name: self.describe(),
            }),
        }
    }

    fn describe(&self) -> String {
        format!("local key file {}", self.path.display())
    }

    fn rotate(&self) -> Result<Kek, SecretsError> {
        let _lock = self.lock()?;
        let mut file = self.read()?;
        let newest = file.keys.iter().map(|k| k.version).max().unwrap_or(0);
        let version = newest
            .checked_add(1)
            .ok_or_else(|| self.problem("KEK versions are exhausted"))?;
        let key = KeyBytes::random();
        file.keys.push(KeyFileEntry::new(version, &key));
        self.write(&file)?;
        tracing::info!(path = %self.path.display(), kek_version = version, "local KEK rotated");
        Ok(Kek::new(version, &key))
    }

    fn retire_before(&self, version: u32) -> Result<Vec<u32>, SecretsError> {
        let _lock = self.lock()?;
        let mut file = self.read()?;
        if !file.keys.iter().any(|k| k.version >= version) {
            return Err(self.problem(format!(
                "refusing to retire every key: no version {version} or later in it"
            )));
        }
        let retired: Vec<u32> = file
            .keys
            .iter()
            .map(|k| k.version)
            .filter(|&v| v < version)
            .collect();
        if !retired.is_empty() {
            // Entries zero themselves as they are dropped.
            file.keys.retain(|k| k.version >= version);
            self.write(&file)?;
        }
        Ok(retired)
    }
}

// ---- AWS Secrets Manager ----

/// Stage of the current version in Secrets Manager.
const AWSCURRENT: &str = "AWSCURRENT";
/// Stage of the version before it.
const AWSPREVIOUS: &str = "AWSPREVIOUS";

/// Where to find the KEK secret in AWS Secrets Manager.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsKekSettings {
    /// Secret name or ARN.
    pub secret_id: String,
    /// Region; the standard AWS configuration's when absent.
    pub region: Option<String>,
    /// Endpoint override (an emulator such as moto); `AWS_ENDPOINT_URL_SECRETS_MANAGER` /
    /// `AWS_ENDPOINT_URL` apply when absent.
    pub endpoint_url: Option<String>,
    /// Create the secret with a fresh KEK when it does not exist, instead of failing.
    pub create_if_missing: bool,
}

/// A KEK kept as one secret in AWS Secrets Manager.
pub struct AwsSecretsManager {
    client: Client,
    secret_id: String,
    create_if_missing: bool,
}

impl std::fmt::Debug for AwsSecretsManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsSecretsManager")
            .field("secret_id", &self.secret_id)
            .field("create_if_missing", &self.create_if_missing)
            .finish_non_exhaustive()
    }
}

/// The secret's JSON value. Zeroed when dropped.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct AwsKekValue {
    tidemark_kek_version: u32,
    key: String,
}

impl AwsSecretsManager {
    /// A client from the standard AWS configuration (environment, profiles, instance role),
    /// with `settings`' region and endpoint overriding it.
    pub async fn from_settings(settings: &AwsKekSettings) -> Self {
        let mut loader = crate::http::aws_config_loader();
        if let Some(region) = &settings.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(endpoint) = &settings.endpoint_url {
            loader = loader.endpoint_url(endpoint.clone());
        }
        let config = loader.load().await;
        Self::from_sdk_config(&config, &settings.secret_id, settings.create_if_missing)
    }

    /// A client from an already loaded AWS configuration, which brings the HTTP client: load it
    /// from [`crate::http::aws_config_loader`].
    pub fn from_sdk_config(
        config: &aws_config::SdkConfig,
        secret_id: &str,
        create_if_missing: bool,
    ) -> Self {
        Self {
            client: Client::new(config),
            secret_id: secret_id.to_owned(),
            create_if_missing,
        }
    }

    fn describe(&self) -> String {
        format!("AWS Secrets Manager secret {}", self.secret_id)
    }

    fn failed<E>(&self, op: &'static str, error: &SdkError<E>) -> SecretsError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        SecretsError::KekSource {
            source_name: self.describe(),
            op,
            message: DisplayErrorContext(error).to_string(),
            transient: matches!(
                error,
                SdkError::TimeoutError(_) | SdkError::DispatchFailure(_)
            ) || error
                .raw_response()
                .is_some_and(|r| r.status().as_u16() == 429 || r.status().is_server_error()),
        }
    }

    fn parse(&self, secret_string: Option<String>) -> Result<Kek, SecretsError> {
        let text = Zeroizing::new(secret_string.ok_or_else(|| SecretsError::KekSource {
            source_name: self.describe(),
            op: "read KEK",
            message:
                "the secret has no SecretString; Tidemark stores its KEK as JSON text".to_owned(),
            transient: false,
        })?);
        let malformed = || SecretsError::KekSource {
            source_name: self.describe(),
            op: "read KEK",
            message: "the secret's value is not {\"tidemark_kek_version\": N, \"key\": \
                      \"<base64 of 32 bytes>\"}"
                .to_owned(),
            transient: false,
        };
        let value: AwsKekValue = serde_json::from_str(&text).map_err(|_| malformed())?;
        let bytes = Zeroizing::new(
            BASE64
                .decode(value.key.as_bytes())
                .map_err(|_| malformed())?,
        );
        let key = KeyBytes::from_slice(&bytes).ok_or_else(malformed)?;
        Ok(Kek::new(value.tidemark_kek_version, &key))
    }

    fn encode(version: u32, key: &KeyBytes) -> Result<Zeroizing<String>, SecretsError> {
        let value = AwsKekValue {
            tidemark_kek_version: version,
            key: BASE64.encode(key.expose()),
        };
        let mut text = Zeroizing::new(Vec::with_capacity(128));
        serde_json::to_writer(&mut *text, &value).map_err(|e| {
            SecretsError::Internal(format!("cannot encode the KEK secret value: {e}"))
        })?;
        let text = String::from_utf8(std::mem::take(&mut *text))
            .map_err(|_| SecretsError::Internal("KEK JSON is not UTF-8".to_owned()))?;
        Ok(Zeroizing::new(text))
    }

    /// The KEK at `stage`, `None` when no version has that stage.
    async fn at_stage(&self, stage: &str) -> Result<Option<Kek>, SecretsError> {
        match self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .version_stage(stage)
            .send()
            .await
        {
            Ok(out) => self.parse(out.secret_string).map(Some),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.failed("read KEK", &e)),
        }
    }

    async fn current(&self) -> Result<Kek, SecretsError> {
        if let Some(kek) = self.at_stage(AWSCURRENT).await? {
            return Ok(kek);
        }
        if !self.create_if_missing {
            return Err(SecretsError::KekSource {
                source_name: self.describe(),
                op: "read KEK",
                message: "the secret does not exist; create it (set \
                          secrets.aws.create_if_missing = true to let Tidemark do so)"
                    .to_owned(),
                transient: false,
            });
        }
        let key = KeyBytes::random();
        let value = Self::encode(1, &key)?;
        self.client
            .create_secret()
            .name(&self.secret_id)
            .description("Tidemark key-encryption key (wraps the data keys of stored secrets)")
            .secret_string(value.as_str())
            .send()
            .await
            .map_err(|e| self.failed("create KEK secret", &e))?;
        tracing::info!(secret_id = %self.secret_id, "created KEK secret in AWS Secrets Manager");
        Ok(Kek::new(1, &key))
    }

    async fn version(&self, version: u32) -> Result<Kek, SecretsError> {
        for stage in [AWSCURRENT, AWSPREVIOUS] {
            if let Some(kek) = self.at_stage(stage).await?
                && kek.version() == version
            {
                return Ok(kek);
            }
        }
        // Rotated more than once behind Tidemark's back (or an interrupted rotation): look
        // through the versions without a stage too.
        for id in self.version_ids(None).await? {
            let out = self
                .client
                .get_secret_value()
                .secret_id(&self.secret_id)
                .version_id(&id)
                .send()
                .await
                .map_err(|e| self.failed("read KEK version", &e))?;
            let kek = self.parse(out.secret_string)?;
            if kek.version() == version {
                return Ok(kek);
            }
        }
        Err(SecretsError::KekUnavailable {
            version,
            source_name: self.describe(),
        })
    }

    /// Version ids of the secret (all, or those carrying `stage`), deprecated ones included.
    async fn version_ids(&self, stage: Option<&str>) -> Result<Vec<String>, SecretsError> {
        let mut ids = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = self
                .client
                .list_secret_version_ids()
                .secret_id(&self.secret_id)
                .include_deprecated(true)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| self.failed("list KEK versions", &e))?;
            for v in out.versions.unwrap_or_default() {
                let staged = stage.is_none_or(|stage| {
                    v.version_stages
                        .as_deref()
                        .unwrap_or_default()
                        .iter()
                        .any(|s| s == stage)
                });
                if staged && let Some(id) = v.version_id {
                    ids.push(id);
                }
            }
            match out.next_token {
                Some(token) if !token.is_empty() => next = Some(token),
                _ => return Ok(ids),
            }
        }
    }

    async fn rotate(&self) -> Result<Kek, SecretsError> {
        let current = self.current().await?;
        let version = current
            .version()
            .checked_add(1)
            .ok_or_else(|| SecretsError::Internal("KEK versions are exhausted".to_owned()))?;
        let key = KeyBytes::random();
        let value = Self::encode(version, &key)?;
        // PutSecretValue stages the new version AWSCURRENT and moves AWSPREVIOUS to the old.
        self.client
            .put_secret_value()
            .secret_id(&self.secret_id)
            .secret_string(value.as_str())
            .send()
            .await
            .map_err(|e| self.failed("put new KEK version", &e))?;
        tracing::info!(secret_id = %self.secret_id, kek_version = version, "KEK rotated in AWS Secrets Manager");
        Ok(Kek::new(version, &key))
    }

    async fn retire_before(&self, version: u32) -> Result<Vec<u32>, SecretsError> {
        let mut retired = Vec::new();
        for id in self.version_ids(Some(AWSPREVIOUS)).await? {
            let out = self
                .client
                .get_secret_value()
                .secret_id(&self.secret_id)
                .version_id(&id)
                .send()
                .await
                .map_err(|e| self.failed("read KEK version", &e))?;
            let old = self.parse(out.secret_string)?.version();
            if old >= version {
                continue;
            }
            // Without a stage the version is deprecated: Secrets Manager deletes it in time.
            self.client
                .update_secret_version_stage()
                .secret_id(&self.secret_id)
                .version_stage(AWSPREVIOUS)
                .remove_from_version_id(&id)
                .send()
                .await
                .map_err(|e| self.failed("retire old KEK version", &e))?;
            tracing::info!(secret_id = %self.secret_id, kek_version = old, "retired old KEK version (AWSPREVIOUS removed)");
            retired.push(old);
        }
        Ok(retired)
    }
}
