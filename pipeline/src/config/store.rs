//! Where the state lives (`store`): the embedded SQLite file in `data_dir`, or a database URL
//! with what a URL cannot carry, and the location as logs may show it (no password).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Config;

/// `store`: where the state lives when it is not the embedded SQLite file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StoreSetting {
    /// `store = "postgres://…"` (or a `sqlite://` URL or a file path).
    Url(String),
    /// `[store]` with `url` and what a URL cannot carry.
    Table(StoreTable),
}

/// `[store]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreTable {
    /// The database URL, as `store = "…"` takes it.
    pub url: String,
    /// A file holding the password (its first line), e.g. a mounted secret; it wins over the
    /// URL's password and `PGPASSWORD`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM certificates to verify the server with, besides the system's roots
    /// (`sslmode=require`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl StoreSetting {
    /// The URL.
    pub fn url(&self) -> &str {
        match self {
            StoreSetting::Url(url) | StoreSetting::Table(StoreTable { url, .. }) => url,
        }
    }
}

impl Config {
    /// The SQLite store's file in `data_dir`, used when `store` is not set.
    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("tidemark.db")
    }

    /// Where the store is: `store` when set, else the SQLite file in `data_dir`.
    pub fn store_location(&self) -> std::ffi::OsString {
        match &self.store {
            Some(store) => store.url().into(),
            None => self.store_path().into_os_string(),
        }
    }

    /// The store's location as logs and errors may show it: a URL's password is left out.
    pub fn store_display(&self) -> String {
        match &self.store {
            Some(store) => redact_password(store.url()),
            None => self.store_path().display().to_string(),
        }
    }
}

/// `scheme://user:password@host/…` without the password.
pub(crate) fn redact_password(location: &str) -> String {
    let Some((scheme, rest)) = location.split_once("://") else {
        return location.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((credentials, host)) if credentials.contains(':') => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{path}")
        }
        _ => location.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_url_is_shown_without_its_password() {
        assert_eq!(
            redact_password("postgres://tidemark:s3cret@db.internal:5432/tidemark"),
            "postgres://tidemark:***@db.internal:5432/tidemark"
        );
        assert_eq!(
            redact_password("postgres://tidemark@db/tidemark"),
            "postgres://tidemark@db/tidemark"
        );
        let config = Config {
            store: Some(StoreSetting::Url("postgres://u:p@h/db".into())),
            ..Config::default()
        };
        assert_eq!(config.store_location(), "postgres://u:p@h/db");
        assert_eq!(config.store_display(), "postgres://u:***@h/db");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tidemark.toml");
        std::fs::write(
            &file,
            "[store]\nurl = \"postgres://u:p@h/db?sslmode=require\"\n\
             password_file = \"/run/secrets/pg\"\nca_file = \"/etc/ssl/db-ca.pem\"\n",
        )
        .unwrap();
        let table = Config::load(Some(&file)).unwrap();
        assert_eq!(
            table.store,
            Some(StoreSetting::Table(StoreTable {
                url: "postgres://u:p@h/db?sslmode=require".into(),
                password_file: Some("/run/secrets/pg".into()),
                ca_file: Some("/etc/ssl/db-ca.pem".into()),
            }))
        );
        assert_eq!(
            table.store_display(),
            "postgres://u:***@h/db?sslmode=require"
        );
        std::fs::write(
            &file,
            "[store]\nurl = \"postgres://h/db\"\npasword_file = \"x\"\n",
        )
        .unwrap();
        assert!(
            Config::load(Some(&file)).is_err(),
            "a misspelt key is refused"
        );
        let embedded = Config::default();
        assert_eq!(
            embedded.store_location(),
            embedded.data_dir.join("tidemark.db").into_os_string()
        );
    }
}
