//! A real SMTP server for tests (aiosmtpd, started from `smtp_server.py` beside this file) and
//! what it received. Shared by the email sink's tests and the reports' end-to-end tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

/// A running `smtp_server.py`; stopped when dropped.
pub struct SmtpServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
    /// Closing it tells the server to stop.
    stdin: Option<ChildStdin>,
}

impl SmtpServer {
    pub fn start(extra: &[&str]) -> SmtpServer {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let dir = tempfile::tempdir().expect("temp dir");
        // From either crate's tests: the script sits beside this file, in connectors/.
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../connectors/tests/support/smtp_server.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(port.to_string())
            .arg(dir.path())
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs (the email tests need Python 3 with aiosmtpd)");
        let stdin = child.stdin.take();
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout).read_line(&mut line).expect("read");
        if line.trim() != "ready" {
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
            }
            let _ = child.kill();
            if stderr.contains("No module named 'aiosmtpd'") {
                panic!(
                    "the SMTP test server needs aiosmtpd: run .ci/test, or \
                     `python3 -m pip install aiosmtpd`"
                );
            }
            panic!("the SMTP test server did not start: {stderr}");
        }
        SmtpServer {
            port,
            dir,
            child,
            stdin,
        }
    }

    /// The messages received so far, in order: (envelope recipients, raw message).
    pub fn received(&self) -> Vec<(Vec<String>, Vec<u8>)> {
        let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(self.dir.path())
            .expect("out dir")
            .filter_map(|e| {
                let path = e.ok()?.path();
                let n = path
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".eml")?
                    .parse()
                    .ok()?;
                Some((n, path))
            })
            .collect();
        found.sort();
        found
            .into_iter()
            .map(|(_, eml)| {
                let envelope: serde_json::Value = serde_json::from_slice(
                    &std::fs::read(eml.with_extension("json")).expect("envelope"),
                )
                .expect("envelope JSON");
                let rcpts = envelope["rcpt_tos"]
                    .as_array()
                    .expect("rcpt_tos")
                    .iter()
                    .map(|r| r.as_str().expect("address").to_owned())
                    .collect();
                (rcpts, std::fs::read(eml).expect("message"))
            })
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
