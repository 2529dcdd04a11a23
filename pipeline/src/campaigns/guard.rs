//! The guard rails every send passes, in the contact's time zone: quiet hours (held until they
//! end, with DST gaps and repeats resolved to real instants), the frequency cap's window
//! (calendar days of the contact's zone), and signed, expiring unsubscribe tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The real instant of a local date and time: the earlier of a repeated one (fall-back), the
/// first instant after a skipped one (spring-forward).
fn instant(zone: Tz, local: NaiveDateTime) -> i64 {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => t.timestamp_millis(),
        LocalResult::Ambiguous(earlier, _) => earlier.timestamp_millis(),
        LocalResult::None => {
            // Inside a gap: the first minute after it that exists.
            let mut probe = local;
            for _ in 0..(24 * 60) {
                probe += chrono::Duration::minutes(1);
                if let Some(t) = zone.from_local_datetime(&probe).earliest() {
                    return t.timestamp_millis();
                }
            }
            Utc.from_utc_datetime(&local).timestamp_millis()
        }
    }
}

fn local(zone: Tz, at_ms: i64) -> NaiveDateTime {
    DateTime::<Utc>::from_timestamp_millis(at_ms)
        .unwrap_or_default()
        .with_timezone(&zone)
        .naive_local()
}

/// When the quiet hours `from`–`to` (local, possibly across midnight) that `now_ms` is inside
/// end; `None` when it is outside them.
pub fn quiet_until(now_ms: i64, zone: Tz, from: NaiveTime, to: NaiveTime) -> Option<i64> {
    let now = local(zone, now_ms);
    let time = now.time();
    let inside = if from < to {
        from <= time && time < to
    } else {
        time >= from || time < to
    };
    if !inside {
        return None;
    }
    let date: NaiveDate = if time < to {
        now.date()
    } else {
        now.date().checked_add_days(Days::new(1))?
    };
    Some(instant(zone, date.and_time(to)).max(now_ms))
}

/// The first instant of the `days` calendar days of `zone` ending with the one `now_ms` is in.
pub fn window_start(now_ms: i64, zone: Tz, days: u32) -> i64 {
    let today = local(zone, now_ms).date();
    let first = today
        .checked_sub_days(Days::new(u64::from(days.saturating_sub(1))))
        .unwrap_or(today);
    instant(zone, first.and_time(NaiveTime::MIN))
}

type HmacSha256 = Hmac<Sha256>;

/// What an unsubscribe token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unsubscribe {
    /// Tenant.
    #[serde(rename = "t")]
    pub tenant: String,
    /// Contact.
    #[serde(rename = "c")]
    pub contact: String,
    /// The consent channel withdrawn.
    #[serde(rename = "ch")]
    pub channel: String,
    /// Valid until, ms since the epoch.
    #[serde(rename = "exp")]
    pub expires_ms: i64,
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the link is damaged")]
    Malformed,
    #[error("the link was not made by this server")]
    BadSignature,
    #[error("the link has expired")]
    Expired,
}

/// Signs and checks unsubscribe tokens with the server's key.
#[derive(Clone)]
pub struct TokenKey(Vec<u8>);

impl TokenKey {
    /// A key from its bytes (at least 32).
    pub fn new(bytes: Vec<u8>) -> TokenKey {
        TokenKey(bytes)
    }

    fn mac(&self, payload: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(payload);
        mac
    }

    /// `payload.signature`, both base64url.
    pub fn sign(&self, what: &Unsubscribe) -> String {
        let payload = serde_json::to_vec(what).expect("a token payload serializes");
        let tag = self.mac(&payload).finalize().into_bytes();
        format!("{}.{}", B64.encode(&payload), B64.encode(tag))
    }

    /// What a token says, if this key signed it and it has not expired at `now_ms`.
    pub fn verify(&self, token: &str, now_ms: i64) -> Result<Unsubscribe, TokenError> {
        let (payload, tag) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let payload = B64.decode(payload).map_err(|_| TokenError::Malformed)?;
        let tag = B64.decode(tag).map_err(|_| TokenError::Malformed)?;
        self.mac(&payload)
            .verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        let what: Unsubscribe =
            serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if what.expires_ms < now_ms {
            return Err(TokenError::Expired);
        }
        Ok(what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(zone: Tz, text: &str) -> i64 {
        instant(
            zone,
            NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").expect("time"),
        )
    }

    #[test]
    fn quiet_hours_end_at_the_local_time_across_midnight_and_dst() {
        let seoul: Tz = "Asia/Seoul".parse().expect("zone");
        let (from, to) = (
            NaiveTime::from_hms_opt(21, 0, 0).expect("time"),
            NaiveTime::from_hms_opt(8, 0, 0).expect("time"),
        );
        assert_eq!(
            quiet_until(at(seoul, "2026-12-04 20:59"), seoul, from, to),
            None
        );
        assert_eq!(
            quiet_until(at(seoul, "2026-12-04 23:30"), seoul, from, to),
            Some(at(seoul, "2026-12-05 08:00"))
        );
        assert_eq!(
            quiet_until(at(seoul, "2026-12-05 07:59"), seoul, from, to),
            Some(at(seoul, "2026-12-05 08:00"))
        );
        assert_eq!(
            quiet_until(at(seoul, "2026-12-05 08:00"), seoul, from, to),
            None
        );
        // New York springs forward at 02:00 on 2026-03-08: quiet 01:00–02:30 ends at 03:00 EDT
        // (02:30 does not exist), 90 minutes of real time after 00:30 UTC-5's 01:30.
        let ny: Tz = "America/New_York".parse().expect("zone");
        let (from, to) = (
            NaiveTime::from_hms_opt(1, 0, 0).expect("time"),
            NaiveTime::from_hms_opt(2, 30, 0).expect("time"),
        );
        let start = at(ny, "2026-03-08 01:30");
        let end = quiet_until(start, ny, from, to).expect("inside");
        assert_eq!(end, at(ny, "2026-03-08 03:00"));
        assert_eq!(
            end - start,
            30 * 60 * 1000,
            "01:30 EST to 03:00 EDT is half an hour"
        );
        // It falls back at 02:00 on 2026-11-01: 01:30 happens twice; quiet 00:00–01:30 ends at
        // the first.
        let (from, to) = (
            NaiveTime::MIN,
            NaiveTime::from_hms_opt(1, 30, 0).expect("time"),
        );
        let end = quiet_until(at(ny, "2026-11-01 00:10"), ny, from, to).expect("inside");
        assert_eq!(end, at(ny, "2026-11-01 01:30"));
        assert_eq!(
            DateTime::<Utc>::from_timestamp_millis(end)
                .expect("instant")
                .to_rfc3339(),
            "2026-11-01T05:30:00+00:00"
        );
    }

    #[test]
    fn the_cap_window_is_calendar_days_of_the_contact() {
        let seoul: Tz = "Asia/Seoul".parse().expect("zone");
        let now = at(seoul, "2026-12-04 00:30");
        assert_eq!(window_start(now, seoul, 1), at(seoul, "2026-12-04 00:00"));
        assert_eq!(window_start(now, seoul, 7), at(seoul, "2026-11-28 00:00"));
        let utc_day = window_start(now, chrono_tz::UTC, 1);
        assert_ne!(
            utc_day,
            window_start(now, seoul, 1),
            "another zone, another day"
        );
    }

    #[test]
    fn tokens_are_signed_and_expire() {
        let key = TokenKey::new(vec![7; 32]);
        let what = Unsubscribe {
            tenant: "a".into(),
            contact: "c1".into(),
            channel: "email".into(),
            expires_ms: 1_000,
        };
        let token = key.sign(&what);
        assert_eq!(key.verify(&token, 999), Ok(what.clone()));
        assert_eq!(key.verify(&token, 1_001), Err(TokenError::Expired));
        assert_eq!(
            TokenKey::new(vec![8; 32]).verify(&token, 0),
            Err(TokenError::BadSignature)
        );
        let (payload, tag) = token.split_once('.').expect("two parts");
        let forged = Unsubscribe {
            contact: "c2".into(),
            ..what
        };
        let forged = format!(
            "{}.{tag}",
            B64.encode(serde_json::to_vec(&forged).expect("json"))
        );
        assert_eq!(key.verify(&forged, 0), Err(TokenError::BadSignature));
        assert_eq!(key.verify(payload, 0), Err(TokenError::Malformed));
    }
}
