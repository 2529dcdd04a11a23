//! A file destination's configuration: the path it appends to, relative to its tenant's
//! directory, or `-` for standard output.
//!
//! Whether a path stays inside the tenant's directory is decided by one function,
//! `stays_inside`, both when the destination is defined ([`SinkConfig::validate`]) and just
//! before each delivery ([`SinkConfig::confine`]).

use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

use crate::sinks::{Credential, SinkConfig, SinkError, SinkSettings};

/// The path that means standard output.
const STDOUT: &str = "-";

/// Configuration of a file destination (the stored destination's JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// File to append to, relative to the tenant's directory; `-` means standard output.
    pub path: String,
}

/// Whether `relative`, joined to a directory, stays inside it: plain names only — no root, no
/// drive, no `.` or `..`.
fn stays_inside(relative: &Path) -> bool {
    relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
}

impl SinkConfig for FileConfig {
    /// The path must be `-` or a non-empty relative path that stays inside the tenant's
    /// directory.
    fn validate(&self, _settings: &SinkSettings) -> Result<(), SinkError> {
        let path = self.path.as_str();
        if path != STDOUT && (path.is_empty() || !stays_inside(Path::new(path))) {
            return Err(SinkError::InvalidField {
                field: "config.path".to_owned(),
                reason: format!(
                    "'{path}' must be '-' (standard output) or a relative path without '..'; \
                     files are written under the server's data directory, in files/<tenant>/"
                ),
            });
        }
        Ok(())
    }

    /// A file destination holds no credentials.
    fn credentials(&mut self) -> Vec<(String, &mut Credential)> {
        Vec::new()
    }

    /// Makes the path `tenant_dir/<path>`; standard output stays as it is.
    fn confine(&mut self, tenant_dir: &Path) -> Result<(), SinkError> {
        if self.path == STDOUT {
            return Ok(());
        }
        let relative = Path::new(&self.path);
        if !stays_inside(relative) {
            return Err(SinkError::OutsideTenant(self.path.clone()));
        }
        self.path = tenant_dir.join(relative).to_string_lossy().into_owned();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(path: &str) -> FileConfig {
        FileConfig {
            path: path.to_owned(),
        }
    }

    #[test]
    fn paths_must_stay_inside_the_tenants_directory() {
        for ok in ["-", "out.jsonl", "audit/2024/out.jsonl"] {
            assert!(
                config(ok).validate(&SinkSettings::default()).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "",
            "/etc/passwd",
            "../b/out.jsonl",
            "a/../../b",
            "./out.jsonl",
        ] {
            let err = config(bad)
                .validate(&SinkSettings::default())
                .expect_err(bad);
            assert_eq!(err.field(), Some("config.path"), "{bad}");
        }
        assert_eq!(
            config("../x")
                .validate(&SinkSettings::default())
                .expect_err("outside")
                .to_string(),
            "config.path: '../x' must be '-' (standard output) or a relative path without '..'; \
             files are written under the server's data directory, in files/<tenant>/"
        );
    }

    #[test]
    fn confining_places_the_file_under_the_tenant_or_refuses() {
        let root = Path::new("/data/files/a");
        let mut placed = config("audit/out.jsonl");
        placed.confine(root).expect("inside");
        assert_eq!(placed.path, "/data/files/a/audit/out.jsonl");

        let mut stdout = config("-");
        stdout.confine(root).expect("stdout");
        assert_eq!(stdout.path, "-");

        let err = config("../b/out.jsonl").confine(root).expect_err("outside");
        assert_eq!(
            err.to_string(),
            "file destination path '../b/out.jsonl' leaves the tenant's directory"
        );
    }
}
