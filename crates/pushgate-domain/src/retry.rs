//! The one retry policy: capped exponential backoff with full jitter.
//!
//! Every retry in pushgate waits this way: pushes answered 429 or 5xx,
//! subscribe's `TransactionConflict`, DynamoDB batches with unprocessed
//! items, appends that lost a race for the next sequence number. Full
//! jitter (a wait drawn from zero to the exponential ceiling) spreads
//! retries that failed together, which is what the contenders here are:
//! pushes throttled in one burst, appends racing on one stream head.
//! Callers differ only in their numbers.

use std::time::Duration;

use rand::Rng;

/// How often and how patiently something is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts, the first included.
    pub max_attempts: u32,
    /// The ceiling of the wait before the second attempt; doubles with each
    /// attempt after it.
    pub base: Duration,
    /// The largest ceiling.
    pub cap: Duration,
}

impl RetryPolicy {
    /// A policy of `max_attempts` attempts, ceilings from `base` doubling
    /// up to `cap`.
    pub const fn new(max_attempts: u32, base: Duration, cap: Duration) -> Self {
        Self {
            max_attempts,
            base,
            cap,
        }
    }

    /// The wait before attempt `attempt` (1-based): nothing before the
    /// first, then a uniform draw from zero to
    /// `min(base × 2^(attempt − 2), cap)`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let ceiling = self
            .base
            .saturating_mul(1u32 << (attempt - 2).min(16))
            .min(self.cap);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::thread_rng().gen_range(0..=millis))
    }

    /// Whether attempt `attempt` (1-based) may be made.
    pub fn allows(&self, attempt: u32) -> bool {
        attempt <= self.max_attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let policy = RetryPolicy::new(10, Duration::from_millis(10), Duration::from_millis(40));
        assert_eq!(policy.backoff(0), Duration::ZERO);
        assert_eq!(policy.backoff(1), Duration::ZERO);
        assert!(policy.backoff(2) <= Duration::from_millis(10));
        assert!(policy.backoff(3) <= Duration::from_millis(20));
        for attempt in 2..40 {
            assert!(policy.backoff(attempt) <= Duration::from_millis(40));
        }
        // Jittered: 200 draws of a 40 ms ceiling are not all the same.
        let draws: std::collections::HashSet<_> = (0..200).map(|_| policy.backoff(9)).collect();
        assert!(draws.len() > 5, "{draws:?}");
        assert!(policy.allows(10) && !policy.allows(11));
    }
}
