//! What HTTP and pgwire authentication share: the one form an API key is stored in, and the
//! throttle on failed logins.
//!
//! The throttle counts failures per client address in fixed one-minute windows. Once an
//! address has failed `limit` times in the current window, every further login from it is
//! refused until the window ends — before its key is looked at, so a throttled client learns
//! nothing about the keys it tries (a right key is refused exactly like a wrong one). A pgwire
//! login also names its tenant (the user name), and a tenant's logins are refused the same way
//! once they failed `4 × limit` times in a window from all addresses together, which bounds a
//! guessing attack spread over many addresses; the price is that such an attack can lock that
//! tenant's pgwire logins for the rest of the minute (HTTP is not affected).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// SHA-256 hex of an API key: the only form keys are stored in.
pub fn key_hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The length of a counting window.
const WINDOW: Duration = Duration::from_secs(60);

/// Above this many tracked clients and tenants, finished windows are dropped, so the table
/// stays small whatever the number of addresses an attacker uses.
const PRUNE_ABOVE: usize = 10_000;

/// Who failed: a client address, or a tenant named by a login.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Subject {
    Client(IpAddr),
    Tenant(String),
}

#[derive(Clone, Copy, Debug)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Counts failed logins and refuses clients (and tenants) that failed too often.
#[derive(Debug)]
pub struct AuthThrottle {
    limit: u32,
    windows: Mutex<HashMap<Subject, Window>>,
}

impl AuthThrottle {
    /// A throttle allowing `limit` failures per client address per minute.
    pub fn new(limit: u32) -> AuthThrottle {
        AuthThrottle {
            limit: limit.max(1),
            windows: Mutex::default(),
        }
    }

    /// `Err(wait)` when a login from `client` (naming `tenant`, if the protocol names one) must
    /// be refused without looking at its key; `wait` is how long until it may try again.
    pub fn check(&self, client: Option<IpAddr>, tenant: Option<&str>) -> Result<(), Duration> {
        let now = Instant::now();
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait = None;
        for (subject, limit) in self.subjects(client, tenant) {
            if let Some(w) = windows.get(&subject)
                && w.failures >= limit
                && now < w.started + WINDOW
            {
                let left = w.started + WINDOW - now;
                wait = Some(wait.map_or(left, |other: Duration| other.max(left)));
            }
        }
        wait.map_or(Ok(()), Err)
    }

    /// Records a failed login.
    pub fn failed(&self, client: Option<IpAddr>, tenant: Option<&str>) {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() > PRUNE_ABOVE {
            windows.retain(|_, w| now < w.started + WINDOW);
        }
        for (subject, _) in self.subjects(client, tenant) {
            let w = windows.entry(subject).or_insert(Window {
                started: now,
                failures: 0,
            });
            if now >= w.started + WINDOW {
                *w = Window {
                    started: now,
                    failures: 0,
                };
            }
            w.failures = w.failures.saturating_add(1);
        }
    }

    fn subjects(&self, client: Option<IpAddr>, tenant: Option<&str>) -> Vec<(Subject, u32)> {
        let mut subjects = Vec::with_capacity(2);
        if let Some(client) = client {
            subjects.push((Subject::Client(client), self.limit));
        }
        if let Some(tenant) = tenant {
            subjects.push((
                Subject::Tenant(tenant.to_string()),
                self.limit.saturating_mul(4),
            ));
        }
        subjects
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn a_client_is_refused_after_its_limit_and_others_are_not() {
        let throttle = AuthThrottle::new(3);
        for _ in 0..3 {
            assert!(throttle.check(ip(1), None).is_ok());
            throttle.failed(ip(1), None);
        }
        let wait = throttle.check(ip(1), None).expect_err("throttled");
        assert!(wait <= WINDOW && wait > WINDOW - Duration::from_secs(5));
        assert!(throttle.check(ip(2), None).is_ok());
    }

    #[test]
    fn a_tenant_is_refused_after_failures_from_many_clients() {
        let throttle = AuthThrottle::new(2);
        for client in 0..8 {
            assert!(throttle.check(ip(client), Some("shop")).is_ok());
            throttle.failed(ip(client), Some("shop"));
        }
        assert!(throttle.check(ip(100), Some("shop")).is_err());
        assert!(throttle.check(ip(100), Some("other-shop")).is_ok());
    }

    #[test]
    fn finished_windows_are_dropped_once_the_table_is_large() {
        let throttle = AuthThrottle::new(1);
        let Some(long_ago) = Instant::now().checked_sub(2 * WINDOW) else {
            return; // a machine up for less than two minutes: nothing can be long ago
        };
        {
            let mut windows = throttle.windows.lock().unwrap();
            for i in 0..=(PRUNE_ABOVE as u32) {
                windows.insert(
                    Subject::Client(IpAddr::from(i.to_be_bytes())),
                    Window {
                        started: long_ago,
                        failures: 5,
                    },
                );
            }
        }
        throttle.failed(ip(1), None);
        assert_eq!(throttle.windows.lock().unwrap().len(), 1);
        // An address whose window ended may log in again.
        assert!(
            throttle
                .check(Some(IpAddr::from(7u32.to_be_bytes())), None)
                .is_ok()
        );
    }
}
