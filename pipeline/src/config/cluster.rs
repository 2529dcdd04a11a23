//! A served cluster (`[cluster]`, or `tidemark serve --process I --processes N --hosts FILE`):
//! this process's index and the hosts file naming every process of the timely cluster.
//!
//! The hosts file has one line per process, in process order: the `host:port` of its dataflow
//! exchange (timely's TCP), then the base URL of its HTTP API, which the other processes
//! forward a tenant's requests to when it owns the tenant:
//!
//! ```text
//! # exchange        API
//! 10.0.0.5:7400     http://10.0.0.5:8080
//! 10.0.0.6:7400     http://10.0.0.6:8080
//! ```
//!
//! Blank lines and `#` comments are skipped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::time::DurationSetting;

/// `[cluster]`: this process's place in a timely cluster of servers.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// This process's index, from 0, in the hosts file's order.
    pub process: usize,
    /// The hosts file (see the module documentation).
    pub hosts: PathBuf,
    /// How long one step of the dataflow may wait for the other processes before this process
    /// concludes the cluster lost one and stops (exit status 75), so that the whole cluster
    /// restarts from its logs.
    #[serde(default = "default_stall_timeout")]
    pub stall_timeout: DurationSetting,
}

fn default_stall_timeout() -> DurationSetting {
    DurationSetting::from(Duration::from_secs(10))
}

/// One process of the cluster, as the hosts file names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterHost {
    /// `host:port` of its dataflow exchange.
    pub exchange: String,
    /// Base URL of its HTTP API.
    pub api: String,
}

impl ClusterSettings {
    /// A cluster of these settings for `tidemark serve --process I --processes N --hosts FILE`.
    pub fn from_args(process: usize, processes: usize, hosts: PathBuf) -> anyhow::Result<Self> {
        let settings = ClusterSettings {
            process,
            hosts,
            stall_timeout: default_stall_timeout(),
        };
        let found = settings.read_hosts()?.len();
        anyhow::ensure!(
            found == processes,
            "--processes {processes} does not match the {found} processes in the hosts file {}",
            settings.hosts.display()
        );
        Ok(settings)
    }

    /// Every process of the cluster, in order; checks that this process is among them.
    pub fn read_hosts(&self) -> anyhow::Result<Vec<ClusterHost>> {
        let text = std::fs::read_to_string(&self.hosts)
            .with_context(|| format!("cannot read the hosts file {}", self.hosts.display()))?;
        let hosts = parse_hosts(&text, &self.hosts)?;
        anyhow::ensure!(
            self.process < hosts.len(),
            "cluster.process {} is not among the {} processes of {} (processes are numbered from 0)",
            self.process,
            hosts.len(),
            self.hosts.display()
        );
        Ok(hosts)
    }
}

/// The hosts file's processes; `file` names it in errors.
pub fn parse_hosts(text: &str, file: &Path) -> anyhow::Result<Vec<ClusterHost>> {
    let mut hosts = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let at = || format!("{} line {}", file.display(), number + 1);
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [exchange, api] = fields[..] else {
            anyhow::bail!(
                "{}: expected the exchange's host:port and the API's URL, found {} field(s)",
                at(),
                fields.len()
            );
        };
        let valid_exchange = exchange
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        anyhow::ensure!(
            valid_exchange,
            "{}: '{exchange}' is not a host:port like 10.0.0.5:7400",
            at()
        );
        let url = reqwest::Url::parse(api)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some());
        anyhow::ensure!(
            url.is_some(),
            "{}: '{api}' is not an http:// or https:// URL like http://10.0.0.5:8080",
            at()
        );
        hosts.push(ClusterHost {
            exchange: exchange.to_string(),
            api: api.trim_end_matches('/').to_string(),
        });
    }
    anyhow::ensure!(!hosts.is_empty(), "{} names no process", file.display());
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hosts_file_names_each_process_exchange_and_api() {
        let text = "# exchange  API\n10.0.0.5:7400 http://10.0.0.5:8080/\n\n\
                    node-b:7400\thttps://b.internal:8443 # second\n";
        let hosts = parse_hosts(text, Path::new("hosts")).unwrap();
        assert_eq!(
            hosts,
            vec![
                ClusterHost {
                    exchange: "10.0.0.5:7400".into(),
                    api: "http://10.0.0.5:8080".into()
                },
                ClusterHost {
                    exchange: "node-b:7400".into(),
                    api: "https://b.internal:8443".into()
                },
            ]
        );
    }

    #[test]
    fn a_bad_line_is_named_with_its_problem() {
        let e = parse_hosts("a:1 http://a:2\nb:1\n", Path::new("hosts"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("hosts line 2") && e.contains("found 1 field"),
            "{e}"
        );
        let e = parse_hosts("b:port http://b:2\n", Path::new("hosts"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'b:port' is not a host:port"), "{e}");
        let e = parse_hosts("b:1 ftp://b\n", Path::new("hosts"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'ftp://b' is not an http"), "{e}");
        let e = parse_hosts("# nobody\n", Path::new("hosts"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("names no process"), "{e}");
    }
}
