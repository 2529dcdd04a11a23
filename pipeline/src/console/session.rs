//! Console sessions: a random id in an HttpOnly, SameSite=Strict cookie naming a session the
//! server keeps (tenant, CSRF token, expiry).
//!
//! - A session is created only by signing in, always with a new id: a session id planted before
//!   sign-in (fixation) is never promoted, and signing in again replaces the old session.
//! - Every state-changing form carries the session's CSRF token, compared in constant time. The
//!   sign-in form, which has no session yet, carries a token bound to a short-lived cookie of its
//!   own (double submit).
//! - Sessions expire after [`SESSION_TTL`] of inactivity; signing out removes the session on the
//!   server, so a copied cookie stops working too. Sessions live in this process's memory: a
//!   restart signs everyone out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "tidemark_session";
/// The sign-in form's own CSRF cookie.
pub const LOGIN_COOKIE: &str = "tidemark_login";
/// How long a session lasts without being used.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// The most sessions kept at once; past it the least recently used one is dropped.
const MAX_SESSIONS: usize = 10_000;

/// A signed-in session.
#[derive(Clone, Debug)]
pub struct Session {
    /// The session id (the cookie's value).
    pub id: String,
    /// Whose session it is.
    pub tenant: String,
    /// The token every form of this session must carry.
    pub csrf: String,
}

struct Entry {
    tenant: String,
    csrf: String,
    last_used: Instant,
}

/// The sessions of this process.
#[derive(Default)]
pub struct Sessions {
    entries: Mutex<HashMap<String, Entry>>,
}

/// 32 random bytes as hex.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `a` equals `b`, in time independent of where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Sessions {
    /// A new session for `tenant`, with a new id and CSRF token.
    pub fn create(&self, tenant: &str) -> Session {
        let session = Session {
            id: random_token(),
            tenant: tenant.to_string(),
            csrf: random_token(),
        };
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        entries.retain(|_, e| now.duration_since(e.last_used) < SESSION_TTL);
        if entries.len() >= MAX_SESSIONS
            && let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(id, _)| id.clone())
        {
            entries.remove(&oldest);
        }
        entries.insert(
            session.id.clone(),
            Entry {
                tenant: session.tenant.clone(),
                csrf: session.csrf.clone(),
                last_used: now,
            },
        );
        session
    }

    /// The live session `id` names, its expiry moved forward.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let entry = entries.get_mut(id)?;
        if now.duration_since(entry.last_used) >= SESSION_TTL {
            entries.remove(id);
            return None;
        }
        entry.last_used = now;
        Some(Session {
            id: id.to_string(),
            tenant: entry.tenant.clone(),
            csrf: entry.csrf.clone(),
        })
    }

    /// Ends session `id`.
    pub fn remove(&self, id: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

/// The value of cookie `name` in the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, path `/`, `Secure` when the console is
/// reached over HTTPS; `max_age` 0 deletes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_id_until_removed() {
        let sessions = Sessions::default();
        let s = sessions.create("acme");
        let found = sessions.get(&s.id).expect("live");
        assert_eq!(found.tenant, "acme");
        assert_eq!(found.csrf, s.csrf);
        assert!(sessions.get("planted-by-someone").is_none());
        sessions.remove(&s.id);
        assert!(sessions.get(&s.id).is_none());
    }

    #[test]
    fn every_session_gets_new_tokens() {
        let sessions = Sessions::default();
        let (a, b) = (sessions.create("acme"), sessions.create("acme"));
        assert_ne!(a.id, b.id);
        assert_ne!(a.csrf, b.csrf);
        assert_eq!(a.id.len(), 64);
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "abcd"));
        assert!(!same_token("", "a"));
    }

    #[test]
    fn cookies_are_read_by_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=1; tidemark_session=xyz; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&headers, "c"), None);
        let set = set_cookie(SESSION_COOKIE, "xyz", SESSION_TTL, true);
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        assert!(set.ends_with("; Secure"));
    }
}
