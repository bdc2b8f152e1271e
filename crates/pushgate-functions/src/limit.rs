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

use std::collections::VecDeque;

use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Shortest time between two decreases.
pub const DECREASE_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug)]
struct State {
    limit: f64,
    in_flight: usize,
    last_decrease: Option<Instant>,
    decreases: u64,
    /// Pushes waiting for a permit, first come first served: a record with
    /// two pushes is not starved by one with a thousand in the same batch.
    waiters: VecDeque<oneshot::Sender<()>>,
}

impl State {
    fn room(&self) -> bool {
        // The limit is fractional while it grows; whole permits only.
        self.in_flight < (self.limit as usize).max(1)
    }

    /// Hands free permits to the longest waiters.
    fn admit(&mut self) {
        while self.room() {
            let Some(waiter) = self.waiters.pop_front() else {
                return;
            };
            // A waiter that gave up (its push was cut off) is skipped.
            if waiter.send(()).is_ok() {
                self.in_flight += 1;
            }
        }
    }
}

/// Permits for pushes in flight, between 1 and a ceiling.
#[derive(Debug)]
pub struct AdaptiveLimit {
    state: Mutex<State>,
    max: usize,
}

/// A push waiting for its permit; if it is dropped after the permit was
/// handed to it, the permit goes back.
struct Waiter<'a> {
    limit: &'a AdaptiveLimit,
    granted: oneshot::Receiver<()>,
    taken: bool,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if self.taken {
            return;
        }
        self.granted.close();
        if self.granted.try_recv().is_ok() {
            self.limit.release();
        }
    }
}

/// A push in flight; dropping it frees its permit.
#[derive(Debug)]
pub struct Permit<'a> {
    limit: &'a AdaptiveLimit,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.limit.release();
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
                waiters: VecDeque::new(),
            }),
            max,
        }
    }

    fn release(&self) {
        let mut s = self.state.lock();
        s.in_flight -= 1;
        s.admit();
    }

    /// Waits for a permit, behind every push that asked before.
    pub async fn acquire(&self) -> Permit<'_> {
        let granted = {
            let mut s = self.state.lock();
            if s.waiters.is_empty() && s.room() {
                s.in_flight += 1;
                return Permit { limit: self };
            }
            let (tx, rx) = oneshot::channel();
            s.waiters.push_back(tx);
            rx
        };
        let mut waiter = Waiter {
            limit: self,
            granted,
            taken: false,
        };
        // The sender lives as long as the limit, which outlives this call.
        let _ = (&mut waiter.granted).await;
        waiter.taken = true;
        Permit { limit: self }
    }

    /// A push went through: grow by about one permit per `limit` successes.
    pub fn on_success(&self) {
        let mut s = self.state.lock();
        s.limit = (s.limit + 1.0 / s.limit).min(self.max as f64);
        s.admit();
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

    #[tokio::test]
    async fn waiters_are_served_in_order_and_one_that_gives_up_returns_its_permit() {
        let limit = std::sync::Arc::new(AdaptiveLimit::new(1));
        let first = limit.acquire().await;
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..5 {
            let (limit, order) = (limit.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _p = limit.acquire().await;
                order.lock().push(i);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }));
            tokio::time::sleep(Duration::from_millis(5)).await; // queue in order
        }
        // One more gives up while waiting.
        let gave_up = tokio::time::timeout(Duration::from_millis(10), limit.acquire()).await;
        assert!(gave_up.is_err());
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock(), vec![0, 1, 2, 3, 4]);
        // Nothing leaked: the one permit is free again.
        let again = tokio::time::timeout(Duration::from_millis(100), limit.acquire()).await;
        assert!(again.is_ok());
    }
}
