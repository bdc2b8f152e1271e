//! A token bucket, as API Gateway throttles calls: `rate` tokens a second
//! refill it up to `burst`; a call that finds it empty is refused (the
//! `@connections` API answers 429 `LimitExceededException`).

use std::sync::Mutex;

use tokio::time::Instant;

use crate::settings::PostThrottle;

/// A token bucket shared by every caller.
#[derive(Debug)]
pub struct TokenBucket {
    settings: PostThrottle,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(settings: PostThrottle) -> Self {
        Self {
            settings,
            state: Mutex::new((f64::from(settings.burst), Instant::now())),
        }
    }

    /// Takes a token if there is one.
    pub fn try_take(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = &mut *state;
        let now = Instant::now();
        let refill = now.duration_since(*last).as_secs_f64() * self.settings.rate;
        *tokens = (*tokens + refill).min(f64::from(self.settings.burst));
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_bucket_allows_a_burst_then_refills_at_the_rate() {
        let bucket = TokenBucket::new(PostThrottle {
            rate: 10.0,
            burst: 3,
        });
        assert!(bucket.try_take() && bucket.try_take() && bucket.try_take());
        assert!(!bucket.try_take());
        tokio::time::advance(std::time::Duration::from_millis(100)).await;
        assert!(bucket.try_take());
        assert!(!bucket.try_take());
    }
}
