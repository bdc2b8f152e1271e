//! The dependencies handlers borrow: built once per process (in a Lambda
//! binary's `main`, the emulator or a test) and shared by every invocation.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pushgate_domain::auth::TokenVerifier;
use pushgate_domain::Config;
use pushgate_push::Pusher;
use pushgate_store::ConnectionStore;

use crate::notifier::{DeliveryLimits, RetryPolicy, PUSH_RETRY};

/// The time source. Tests fix it; everything else reads the system clock.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    fixed_ms: Option<i64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self { fixed_ms: None }
    }

    /// A clock stopped at `epoch_ms`.
    pub fn fixed(epoch_ms: i64) -> Self {
        Self {
            fixed_ms: Some(epoch_ms),
        }
    }

    /// Now, in epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.fixed_ms.unwrap_or_else(|| {
            let since = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO);
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
    }

    /// Now, in epoch seconds.
    pub fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
}

/// What the route functions need.
#[derive(Clone)]
pub struct Deps {
    /// Connections and subscriptions.
    pub store: Arc<dyn ConnectionStore>,
    /// Configuration read at start.
    pub config: Config,
    /// Time source.
    pub clock: Clock,
    /// Checks tokens at `$connect`; `None` when no signing key is configured.
    pub verifier: Option<TokenVerifier>,
}

impl Deps {
    /// Dependencies with the system clock, and a token verifier when the
    /// configuration holds the signing key (`JWT_SECRET`).
    pub fn new(store: Arc<dyn ConnectionStore>, config: Config) -> Self {
        let verifier = config
            .jwt_secret
            .as_ref()
            .map(|k| TokenVerifier::hs256(k.expose().as_bytes()));
        Self {
            store,
            config,
            clock: Clock::system(),
            verifier,
        }
    }

    /// When an item written now expires (epoch seconds).
    pub fn expires_at(&self) -> i64 {
        let ttl = i64::try_from(self.config.ttl.as_secs()).unwrap_or(i64::MAX);
        self.clock.now_secs().saturating_add(ttl)
    }
}

/// What the notifier needs on top of [`Deps`].
#[derive(Clone)]
pub struct NotifierDeps {
    /// Store, configuration, clock.
    pub deps: Deps,
    /// PostToConnection.
    pub pusher: Arc<dyn Pusher>,
    /// Backoff for 429 and 5xx answers.
    pub retry: RetryPolicy,
    /// The cut-off before the deadline, the per-push budget, records at
    /// once.
    pub limits: DeliveryLimits,
    /// The notifier's own queue, for handing fan-out tasks to other
    /// invocations; `None`: everything is pushed by the invocation that
    /// received the event.
    pub queue: Option<Arc<dyn pushgate_push::EventQueue>>,
    /// Pushes in flight, shared by every invocation of this process and
    /// adapted to API Gateway's throttling.
    pub limit: Arc<crate::limit::AdaptiveLimit>,
    /// Whether each invocation prints its figures in CloudWatch's embedded
    /// metric format (on in Lambda; off where stdout is a terminal or a
    /// test's).
    pub emit_metrics: bool,
}

impl NotifierDeps {
    /// The notifier's dependencies with the default retry policy and
    /// limits, no queue, metrics off.
    pub fn new(deps: Deps, pusher: Arc<dyn Pusher>) -> Self {
        let limit = Arc::new(crate::limit::AdaptiveLimit::new(
            deps.config.push_concurrency,
        ));
        Self {
            deps,
            pusher,
            queue: None,
            limit,
            retry: PUSH_RETRY,
            limits: DeliveryLimits::default(),
            emit_metrics: false,
        }
    }
}
