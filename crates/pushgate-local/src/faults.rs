//! Fault injection: make the emulator misbehave the way AWS sometimes does,
//! so that what survives can be shown. PostToConnection can answer
//! 410/429/5xx for chosen connections or at a rate, every PostToConnection
//! can be held for a fixed latency (the network round trip to the
//! Management API that the loopback does not have), and `$disconnect` can be
//! dropped (API Gateway delivers it on a best-effort basis).
//!
//! Set at start with `--fault-*` flags, or at run time with
//! `PUT /_pushgate/faults` (JSON [`Faults`]), read with `GET` and cleared
//! with `DELETE` (the handlers are in `http::faults`; this module knows no
//! HTTP).
//!
//! Store faults (DynamoDB's `TransactionConflict` on `subscribe`, calls
//! that hang) are applied by the `store` module's `FaultyStore`, which reads them
//! from the same [`FaultInjector`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Statuses an injected PostToConnection fault may answer.
pub const INJECTABLE_STATUSES: &[u16] = &[403, 410, 413, 429, 500, 502, 503, 504];

/// What to break. Every field is optional in JSON; the default breaks
/// nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Faults {
    /// Fraction (0 to 1) of PostToConnection calls that fail.
    pub post_failure_rate: f64,
    /// What the failing calls answer, picked at random for each call
    /// (default: 500).
    pub post_failure_statuses: Vec<u16>,
    /// Connections whose every PostToConnection answers this status
    /// (before the rate applies). The socket stays open: this shows what
    /// the notifier does with the answer.
    pub connections: BTreeMap<String, u16>,
    /// Fraction (0 to 1) of `$disconnect` events that are never delivered.
    pub drop_disconnect_rate: f64,
    /// Milliseconds every PostToConnection is held before it is answered
    /// (0: none), as a network round trip to the Management API would.
    pub post_latency_ms: u64,
    /// Every PostToConnection answers 403 `ForbiddenException`, as AWS does
    /// when the caller lacks `execute-api:ManageConnections` or the endpoint
    /// names another stage or API: the notifier must not retry it.
    pub post_forbidden: bool,
    /// Fraction (0 to 1) of `subscribe` store calls that fail with
    /// DynamoDB's `TransactionConflict` (a concurrent transaction touched
    /// the same items).
    pub subscribe_conflict_rate: f64,
    /// Entities whose store calls (subscribe, unsubscribe, reading
    /// subscribers) hang until the calling function's deadline cuts it off,
    /// as a DynamoDB call stuck in retries would.
    pub stalled_entities: Vec<String>,
}

/// Why a [`Faults`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultsError {
    /// A rate outside 0 to 1.
    #[error("{0} must be between 0 and 1")]
    Rate(&'static str),
    /// A status that PostToConnection does not answer.
    #[error("status {0} cannot be injected; use one of {INJECTABLE_STATUSES:?}")]
    Status(u16),
    /// A latency over [`MAX_POST_LATENCY_MS`].
    #[error("postLatencyMs must be at most {MAX_POST_LATENCY_MS}")]
    Latency,
}

/// The longest latency that can be injected: longer than API Gateway's own
/// timeouts would make no sense.
pub const MAX_POST_LATENCY_MS: u64 = 10_000;

impl Faults {
    /// Whether anything is broken at all.
    pub fn is_active(&self) -> bool {
        self.post_failure_rate > 0.0
            || self.drop_disconnect_rate > 0.0
            || !self.connections.is_empty()
            || self.post_latency_ms > 0
            || self.post_forbidden
            || self.subscribe_conflict_rate > 0.0
            || !self.stalled_entities.is_empty()
    }

    /// Checks rates and statuses.
    pub fn validate(&self) -> Result<(), FaultsError> {
        for (name, rate) in [
            ("postFailureRate", self.post_failure_rate),
            ("dropDisconnectRate", self.drop_disconnect_rate),
            ("subscribeConflictRate", self.subscribe_conflict_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(FaultsError::Rate(name));
            }
        }
        let statuses = self
            .post_failure_statuses
            .iter()
            .chain(self.connections.values());
        for &status in statuses {
            if !INJECTABLE_STATUSES.contains(&status) {
                return Err(FaultsError::Status(status));
            }
        }
        if self.post_latency_ms > MAX_POST_LATENCY_MS {
            return Err(FaultsError::Latency);
        }
        Ok(())
    }
}

/// How many faults were injected so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultCounts {
    /// PostToConnection calls answered with an injected status.
    pub posts_failed: u64,
    /// `$disconnect` events dropped.
    pub disconnects_dropped: u64,
    /// `subscribe` store calls failed with `TransactionConflict`.
    pub subscribe_conflicts: u64,
    /// Store calls held on a stalled entity.
    pub store_calls_stalled: u64,
}

/// The faults in force, shared by the `@connections` API and the sessions.
#[derive(Debug, Default)]
pub struct FaultInjector {
    faults: RwLock<Faults>,
    posts_failed: AtomicU64,
    disconnects_dropped: AtomicU64,
    subscribe_conflicts: AtomicU64,
    store_calls_stalled: AtomicU64,
}

impl FaultInjector {
    /// An injector with `faults` in force (assumed valid).
    pub fn new(faults: Faults) -> Self {
        Self {
            faults: RwLock::new(faults),
            ..Self::default()
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Faults> {
        self.faults.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The faults in force.
    pub fn current(&self) -> Faults {
        self.read().clone()
    }

    /// Replaces the faults in force.
    pub fn set(&self, faults: Faults) -> Result<(), FaultsError> {
        faults.validate()?;
        *self.faults.write().unwrap_or_else(|e| e.into_inner()) = faults;
        Ok(())
    }

    /// Counts so far.
    pub fn counts(&self) -> FaultCounts {
        FaultCounts {
            posts_failed: self.posts_failed.load(Ordering::Relaxed),
            disconnects_dropped: self.disconnects_dropped.load(Ordering::Relaxed),
            subscribe_conflicts: self.subscribe_conflicts.load(Ordering::Relaxed),
            store_calls_stalled: self.store_calls_stalled.load(Ordering::Relaxed),
        }
    }

    /// Whether this `subscribe` store call is to fail with
    /// `TransactionConflict`.
    pub fn subscribe_conflict(&self) -> bool {
        let rate = self.read().subscribe_conflict_rate;
        let conflict = rate > 0.0 && rand::thread_rng().gen_bool(rate);
        if conflict {
            self.subscribe_conflicts.fetch_add(1, Ordering::Relaxed);
        }
        conflict
    }

    /// Whether store calls on `entity_id` are to hang (counted when so).
    pub fn stalls(&self, entity_id: &str) -> bool {
        let stalled = self.read().stalled_entities.iter().any(|e| e == entity_id);
        if stalled {
            self.store_calls_stalled.fetch_add(1, Ordering::Relaxed);
        }
        stalled
    }

    /// How long every PostToConnection is held before it is answered.
    pub fn post_latency(&self) -> Option<std::time::Duration> {
        let ms = self.read().post_latency_ms;
        (ms > 0).then(|| std::time::Duration::from_millis(ms))
    }

    /// The status a PostToConnection to `connection_id` must answer instead
    /// of delivering, if any.
    pub fn post_fault(&self, connection_id: &str) -> Option<u16> {
        let faults = self.read();
        let forbidden = faults.post_forbidden.then_some(403);
        let chosen = forbidden.or_else(|| faults.connections.get(connection_id).copied());
        let status = chosen.or_else(|| {
            let rate = faults.post_failure_rate;
            let mut rng = rand::thread_rng();
            (rate > 0.0 && rng.gen_bool(rate)).then(|| {
                faults
                    .post_failure_statuses
                    .choose(&mut rng)
                    .copied()
                    .unwrap_or(500)
            })
        })?;
        self.posts_failed.fetch_add(1, Ordering::Relaxed);
        Some(status)
    }

    /// Whether this `$disconnect` is to be dropped.
    pub fn drop_disconnect(&self) -> bool {
        let rate = self.read().drop_disconnect_rate;
        let drop = rate > 0.0 && rand::thread_rng().gen_bool(rate);
        if drop {
            self.disconnects_dropped.fetch_add(1, Ordering::Relaxed);
        }
        drop
    }
}

/// The AWS error type the SDKs expect with an injected status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        403 => "ForbiddenException",
        410 => "GoneException",
        413 => "PayloadTooLargeException",
        429 => "LimitExceededException",
        _ => "InternalServerErrorException",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_statuses_are_checked() {
        let mut faults = Faults {
            post_failure_rate: 1.5,
            ..Faults::default()
        };
        assert_eq!(faults.validate(), Err(FaultsError::Rate("postFailureRate")));
        faults.post_failure_rate = 0.5;
        faults.post_failure_statuses = vec![429, 418];
        assert_eq!(faults.validate(), Err(FaultsError::Status(418)));
        faults.post_failure_statuses = vec![429, 500];
        assert_eq!(faults.validate(), Ok(()));
        faults.post_latency_ms = MAX_POST_LATENCY_MS + 1;
        assert_eq!(faults.validate(), Err(FaultsError::Latency));
        faults.post_latency_ms = 5;
        assert_eq!(faults.validate(), Ok(()));
        assert_eq!(
            FaultInjector::new(faults).post_latency(),
            Some(std::time::Duration::from_millis(5))
        );
    }

    #[test]
    fn chosen_connections_always_fail_and_rates_apply() {
        let injector = FaultInjector::new(Faults {
            connections: BTreeMap::from([("a".to_owned(), 410)]),
            ..Faults::default()
        });
        assert_eq!(injector.post_fault("a"), Some(410));
        assert_eq!(injector.post_fault("b"), None);
        assert!(!injector.drop_disconnect());
        injector
            .set(Faults {
                post_failure_rate: 1.0,
                post_failure_statuses: vec![429],
                drop_disconnect_rate: 1.0,
                ..Faults::default()
            })
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(injector.post_fault("b"), Some(429));
        assert!(injector.drop_disconnect());
        assert_eq!(
            injector.counts(),
            FaultCounts {
                posts_failed: 2,
                disconnects_dropped: 1,
                ..FaultCounts::default()
            }
        );
    }
}
