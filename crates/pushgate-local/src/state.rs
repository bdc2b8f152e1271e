//! The state every request handler shares: the settings, the functions'
//! dependencies, the open sessions (API Gateway's connection table), the
//! queue and the faults. It sits below the HTTP layer (`http`) and knows
//! nothing of it.

use std::sync::Arc;

use pushgate_functions::{Deps, NotifierDeps};
use pushgate_push::EventQueue;
use pushgate_store::MemoryStore;

use crate::faults::FaultInjector;
use crate::sessions::Sessions;
use crate::settings::Settings;
use crate::sqs::{LocalQueue, Queue};
use crate::throttle::TokenBucket;
use crate::virtual_conns::VirtualConnections;

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    base_url: String,
    deps: Deps,
    notifier: NotifierDeps,
    memory: Option<Arc<MemoryStore>>,
    sessions: Arc<Sessions>,
    queue: Arc<Queue>,
    event_queue: Arc<dyn EventQueue>,
    faults: Arc<FaultInjector>,
    post_throttle: Option<TokenBucket>,
    post_counts: PostCounts,
    virtual_connections: VirtualConnections,
}

/// What [`AppState::new`] is built from.
pub struct Parts {
    /// The settings it started with.
    pub settings: Settings,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// The route functions' dependencies.
    pub deps: Deps,
    /// The notifier's dependencies.
    pub notifier: NotifierDeps,
    /// The embedded store, when it is the one in use.
    pub memory: Option<Arc<MemoryStore>>,
    /// The faults in force (shared with the store decorator).
    pub faults: Arc<FaultInjector>,
}

/// PostToConnection calls received, for the status page and benchmarks.
#[derive(Debug, Default)]
pub struct PostCounts {
    /// Every call.
    pub calls: std::sync::atomic::AtomicU64,
    /// Calls answered 429 by the token bucket.
    pub throttled: std::sync::atomic::AtomicU64,
}

impl AppState {
    /// State for an emulator reachable at `parts.base_url`.
    pub fn new(parts: Parts) -> Self {
        let Parts {
            settings,
            base_url,
            deps,
            notifier,
            memory,
            faults,
        } = parts;
        let queue = Arc::new(Queue::new(
            settings.queue.clone(),
            &settings.region,
            "pushgate-local-notifications",
        ));
        let post_throttle = settings.post_throttle.map(TokenBucket::new);
        let event_queue: Arc<dyn EventQueue> = Arc::new(LocalQueue(Arc::clone(&queue)));
        // The notifier hands large fan-outs to other invocations through its
        // own queue, as it does in AWS with QUEUE_URL.
        let mut notifier = notifier;
        notifier.queue = Some(Arc::clone(&event_queue));
        Self {
            inner: Arc::new(Inner {
                event_queue,
                faults,
                settings,
                base_url,
                deps,
                notifier,
                memory,
                sessions: Arc::default(),
                queue,
                post_throttle,
                post_counts: PostCounts::default(),
                virtual_connections: VirtualConnections::default(),
            }),
        }
    }

    /// The settings it started with.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// `ws://127.0.0.1:PORT/{stage}`.
    pub fn websocket_url(&self) -> String {
        let host = self.base_url().trim_start_matches("http://");
        format!("ws://{host}/{}", self.settings().stage)
    }

    /// `http://127.0.0.1:PORT/{stage}/@connections`.
    pub fn connections_url(&self) -> String {
        format!("{}/{}/@connections", self.base_url(), self.settings().stage)
    }

    /// The route functions' dependencies.
    pub fn deps(&self) -> &Deps {
        &self.inner.deps
    }

    /// The notifier's dependencies.
    pub fn notifier(&self) -> &NotifierDeps {
        &self.inner.notifier
    }

    /// The embedded store, when it is the one in use.
    pub fn memory(&self) -> Option<&Arc<MemoryStore>> {
        self.inner.memory.as_ref()
    }

    /// Open sessions.
    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.inner.sessions
    }

    /// The notification queue.
    pub fn queue(&self) -> &Arc<Queue> {
        &self.inner.queue
    }

    /// The notification queue as `publish` sees it (SendMessage).
    pub fn event_queue(&self) -> &dyn EventQueue {
        self.inner.event_queue.as_ref()
    }

    /// The faults in force.
    pub fn faults(&self) -> &FaultInjector {
        &self.inner.faults
    }

    /// Socket-less connections for measuring large fan-outs.
    pub fn virtual_connections(&self) -> &VirtualConnections {
        &self.inner.virtual_connections
    }

    /// PostToConnection's token bucket, when throttling is on.
    pub fn post_counts(&self) -> &PostCounts {
        &self.inner.post_counts
    }

    /// The PostToConnection token bucket, when throttling is on.
    pub fn post_throttle(&self) -> Option<&TokenBucket> {
        self.inner.post_throttle.as_ref()
    }
}
