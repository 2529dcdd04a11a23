//! When to try a failed delivery again: exponential backoff with full jitter.
//!
//! The delay before retry `n` is uniform in `[0, min(max, base · 2ⁿ)]` ("full jitter"), which
//! spreads a burst of failures against one endpoint instead of hammering it in lockstep. A
//! destination's `Retry-After` raises the delay to at least what it asked for (capped at
//! [`MAX_RETRY_AFTER`], so a hostile or buggy endpoint cannot park a delivery for days).

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// The longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60 * 60);

/// Backoff between delivery attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Ceiling of the first retry's delay, in milliseconds; doubles per attempt.
    pub base_ms: u64,
    /// Largest ceiling, in milliseconds.
    pub max_ms: u64,
    /// Attempts in total, the first included; after that many failures the delivery is dead.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    /// 1 s base, doubling, capped at 5 min, 8 attempts: seven retries whose ceilings sum to
    /// 127 s (about a minute in expectation) unless `Retry-After` asks for longer.
    fn default() -> Self {
        Self {
            base_ms: 1_000,
            max_ms: 5 * 60 * 1_000,
            max_attempts: 8,
        }
    }
}

impl RetryPolicy {
    /// The delay before the next attempt, after `attempts_made` attempts (≥ 1) have failed;
    /// `None` when the attempts are exhausted and the delivery should go dead.
    ///
    /// The ceiling is `min(max, base · 2^(attempts_made - 1))`, so the first retry waits up to
    /// `base`. `retry_after` (the destination's hint) is a floor.
    pub fn next_delay<R: Rng + ?Sized>(
        &self,
        attempts_made: u32,
        retry_after: Option<Duration>,
        rng: &mut R,
    ) -> Option<Duration> {
        if attempts_made >= self.max_attempts {
            return None;
        }
        let exponent = attempts_made.saturating_sub(1);
        let ceiling_ms = self
            .base_ms
            .saturating_mul(2u64.saturating_pow(exponent))
            .min(self.max_ms);
        let jittered = Duration::from_millis(rng.random_range(0..=ceiling_ms));
        let floor = retry_after.map_or(Duration::ZERO, |d| d.min(MAX_RETRY_AFTER));
        Some(jittered.max(floor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base_ms: 1_000,
            max_ms: 10_000,
            max_attempts: 6,
        }
    }

    #[test]
    fn jitter_stays_within_the_doubling_ceiling() {
        let mut rng = StdRng::seed_from_u64(7);
        for attempts in 1..=4u32 {
            let ceiling = Duration::from_millis(1_000 << (attempts - 1));
            let delays: Vec<Duration> = (0..2_000)
                .map(|_| {
                    policy()
                        .next_delay(attempts, None, &mut rng)
                        .expect("not exhausted")
                })
                .collect();
            assert!(delays.iter().all(|d| *d <= ceiling), "attempt {attempts}");
            // Full jitter: both ends of the range are reached, not a narrow band.
            assert!(
                delays.iter().any(|d| *d < ceiling / 10),
                "attempt {attempts}"
            );
            assert!(
                delays.iter().any(|d| *d > ceiling * 9 / 10),
                "attempt {attempts}"
            );
        }
    }

    #[test]
    fn ceiling_is_capped_at_max() {
        let mut rng = StdRng::seed_from_u64(1);
        let capped = RetryPolicy {
            max_attempts: 100,
            ..policy()
        };
        for attempts in [5, 20, 64, 99] {
            let delay = capped
                .next_delay(attempts, None, &mut rng)
                .expect("not exhausted");
            assert!(
                delay <= Duration::from_millis(10_000),
                "{attempts}: {delay:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_a_floor_with_a_cap() {
        let mut rng = StdRng::seed_from_u64(2);
        let hint = Duration::from_secs(30);
        for _ in 0..100 {
            let delay = policy()
                .next_delay(1, Some(hint), &mut rng)
                .expect("not exhausted");
            assert_eq!(delay, hint, "ceiling 1 s is below the hint");
        }
        let days = Duration::from_secs(3 * 24 * 3600);
        assert_eq!(
            policy().next_delay(1, Some(days), &mut rng),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn exhausted_after_max_attempts() {
        let mut rng = StdRng::seed_from_u64(3);
        assert!(policy().next_delay(5, None, &mut rng).is_some());
        assert_eq!(policy().next_delay(6, None, &mut rng), None);
        assert_eq!(
            policy().next_delay(7, Some(Duration::from_secs(1)), &mut rng),
            None
        );
    }

    #[test]
    fn default_matches_the_documented_policy() {
        let policy: RetryPolicy = serde_json::from_str("{}").expect("defaults");
        assert_eq!(policy, RetryPolicy::default());
        assert_eq!(
            (policy.base_ms, policy.max_ms, policy.max_attempts),
            (1_000, 300_000, 8)
        );
        assert!(serde_json::from_str::<RetryPolicy>(r#"{"base":1}"#).is_err());
    }
}
