//! The notifier's adaptive push concurrency: additive increase,
//! multiplicative decrease (AIMD), as TCP shares a link.
//!
//! API Gateway throttles PostToConnection per account (10,000 requests/s by
//! default, shared by every API and every notifier invocation) and answers
//! 429. Retrying each throttled push on its own keeps the offered load where
//! it was, so the throttling goes on and records fail. Instead every push
//! takes a permit from one limit per process (Lambda reuses the process for
//! the next invocation, so what was learnt carries over): each 429 halves
//! the limit (at most once per [`DECREASE_INTERVAL`], since one burst of
//! throttling answers many pushes at once), each success adds
//! `1 / limit`, about one more permit per round trip. Several invocations
//! doing the same converge on the account's rate between them.

use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Shortest time between two decreases.
pub const DECREASE_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug)]
struct State {
    limit: f64,
    in_flight: usize,
    last_decrease: Option<Instant>,
    decreases: u64,
}

/// Permits for pushes in flight, between 1 and a ceiling.
#[derive(Debug)]
pub struct AdaptiveLimit {
    state: Mutex<State>,
    released: Notify,
    max: usize,
}

/// A push in flight; dropping it frees its permit.
#[derive(Debug)]
pub struct Permit<'a> {
    limit: &'a AdaptiveLimit,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.limit.state.lock().in_flight -= 1;
        self.limit.released.notify_waiters();
    }
}

impl AdaptiveLimit {
    /// A limit that starts at, and never exceeds, `max` (at least 1).
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            state: Mutex::new(State {
                limit: max as f64,
                in_flight: 0,
                last_decrease: None,
                decreases: 0,
            }),
            released: Notify::new(),
            max,
        }
    }

    /// Waits for a permit.
    pub async fn acquire(&self) -> Permit<'_> {
        loop {
            // Registered before the check, so a release between the check
            // and the wait is not missed.
            let released = self.released.notified();
            {
                let mut s = self.state.lock();
                // The limit is fractional while it grows; whole permits only.
                if s.in_flight < (s.limit as usize).max(1) {
                    s.in_flight += 1;
                    return Permit { limit: self };
                }
            }
            released.await;
        }
    }

    /// A push went through: grow by about one permit per `limit` successes.
    pub fn on_success(&self) {
        let mut s = self.state.lock();
        s.limit = (s.limit + 1.0 / s.limit).min(self.max as f64);
        drop(s);
        self.released.notify_waiters();
    }

    /// A push was throttled (429): halve, once per burst.
    pub fn on_throttled(&self) {
        let now = Instant::now();
        let mut s = self.state.lock();
        if s.last_decrease
            .is_some_and(|at| now.duration_since(at) < DECREASE_INTERVAL)
        {
            return;
        }
        s.limit = (s.limit / 2.0).max(1.0);
        s.last_decrease = Some(now);
        s.decreases += 1;
    }

    /// The current limit, in whole permits.
    pub fn current(&self) -> usize {
        (self.state.lock().limit as usize).max(1)
    }

    /// How many times the limit was halved.
    pub fn decreases(&self) -> u64 {
        self.state.lock().decreases
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn halves_on_throttling_once_per_burst_and_grows_back_additively() {
        let limit = AdaptiveLimit::new(64);
        assert_eq!(limit.current(), 64);
        limit.on_throttled();
        limit.on_throttled(); // same burst
        assert_eq!(limit.current(), 32);
        tokio::time::advance(DECREASE_INTERVAL).await;
        limit.on_throttled();
        assert_eq!(limit.current(), 16);
        // +1/16, +1/16.06, …: seventeen successes make one more permit.
        for _ in 0..17 {
            limit.on_success();
        }
        assert_eq!(
            limit.current(),
            17,
            "about one permit per round of successes"
        );
        for _ in 0..10 {
            tokio::time::advance(DECREASE_INTERVAL).await;
            limit.on_throttled();
        }
        assert_eq!(limit.current(), 1, "never below one");
        for _ in 0..100_000 {
            limit.on_success();
        }
        assert_eq!(limit.current(), 64, "never above the ceiling");
    }

    #[tokio::test]
    async fn holds_pushes_beyond_the_limit_until_one_finishes() {
        let limit = AdaptiveLimit::new(2);
        let a = limit.acquire().await;
        let _b = limit.acquire().await;
        let third = tokio::time::timeout(Duration::from_millis(20), limit.acquire()).await;
        assert!(third.is_err(), "a third permit waits");
        drop(a);
        let third = tokio::time::timeout(Duration::from_millis(200), limit.acquire()).await;
        assert!(third.is_ok());
    }
}
