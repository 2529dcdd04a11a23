//! Tenants created at start-up (`[[tenants]]`) and the secrets store that holds their secrets
//! (`[secrets]`): where its key-encryption key lives and how re-wrapping is batched.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Config;

/// A tenant to create at start-up.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Tenant id.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// IANA time zone.
    #[serde(default = "default_tz")]
    pub time_zone: String,
    /// API key (stored only as a SHA-256 hash).
    pub api_key: String,
    /// Keys that stay valid beside `api_key` while clients move to it (key rotation). Keys not
    /// in the configuration stop working when the server starts.
    #[serde(default)]
    pub previous_api_keys: Vec<String>,
    /// How the console shows numbers (a BCP 47 tag: `ko-KR`, `en-US`, `de-DE`).
    #[serde(default = "default_locale")]
    pub locale: String,
    /// The currency money measures are in (ISO 4217: `KRW`, `USD`, `EUR`).
    #[serde(default = "default_currency")]
    pub currency: String,
}

fn default_locale() -> String {
    "en-US".to_string()
}

fn default_currency() -> String {
    "USD".to_string()
}

fn default_tz() -> String {
    "UTC".to_string()
}

/// Secrets store settings (`[secrets]`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// Where the key-encryption key lives: `"local"` (a key file) or `"aws"` (AWS Secrets
    /// Manager).
    pub kek: KekProvider,
    /// The local key file; `<data_dir>/secrets.kek` when absent. Created with mode 0600.
    pub key_file: Option<PathBuf>,
    /// AWS Secrets Manager settings, used with `kek = "aws"`.
    pub aws: AwsKekConfig,
    /// Rows re-wrapped per transaction by `tidemark secrets rotate-kek`.
    pub rewrap_batch: usize,
}

/// Which KEK provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KekProvider {
    /// A key file under the data directory (the embedded default).
    Local,
    /// One secret in AWS Secrets Manager.
    Aws,
}

/// `[secrets.aws]`: the KEK secret in AWS Secrets Manager. Credentials come from the standard
/// AWS configuration (environment, profile, instance role).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsKekConfig {
    /// Secret name or ARN.
    pub secret_id: String,
    /// Region; the standard AWS configuration's when absent.
    pub region: Option<String>,
    /// Endpoint override (e.g. an emulator); `AWS_ENDPOINT_URL_SECRETS_MANAGER` applies when
    /// absent.
    pub endpoint_url: Option<String>,
    /// Create the secret with a fresh KEK when it does not exist.
    pub create_if_missing: bool,
}

impl Default for SecretsConfig {
    fn default() -> Self {
        SecretsConfig {
            kek: KekProvider::Local,
            key_file: None,
            aws: AwsKekConfig::default(),
            rewrap_batch: 1_000,
        }
    }
}

impl Config {
    /// The local KEK file.
    pub fn key_file_path(&self) -> PathBuf {
        self.secrets
            .key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("secrets.kek"))
    }
}
