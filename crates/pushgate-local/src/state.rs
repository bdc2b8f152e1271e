//! The state every request handler shares: the functions' dependencies, the
//! open WebSocket sessions (API Gateway's connection table) and the queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pushgate_functions::{Deps, NotifierDeps};
use pushgate_store::MemoryStore;
use tokio::sync::{mpsc, Notify};

use crate::apigw::ConnectionContext;
use crate::faults::FaultInjector;
use crate::settings::Settings;
use crate::sqs::Queue;

/// What a session's writer task is asked to send.
#[derive(Debug)]
pub enum Outbound {
    /// A text frame.
    Text(String),
    /// A binary frame (PostToConnection data that is not UTF-8).
    Binary(Vec<u8>),
    /// A close frame; the writer stops after it. Sent by the session itself
    /// (other parties send a [`CloseRequest`] to the session).
    Close(CloseRequest),
}

/// A request to close a session, from the Management API or shutdown.
#[derive(Debug, Clone)]
pub struct CloseRequest {
    /// The close code sent to the client and given to `$disconnect`.
    pub code: u16,
    /// The close reason.
    pub reason: String,
}

/// An open WebSocket connection, as the Management API sees it.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    /// What API Gateway knows about it.
    pub context: ConnectionContext,
    /// Frames to send.
    pub outbound: mpsc::UnboundedSender<Outbound>,
    /// Close requests.
    pub close: mpsc::UnboundedSender<CloseRequest>,
    /// When the client last sent a frame (epoch ms).
    pub last_active_ms: Arc<AtomicI64>,
}

/// The open sessions, by connection id, and a count of session tasks still
/// running (their `$disconnect` included), so shutdown can wait for them.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, SessionHandle>>,
    running: AtomicUsize,
    finished: Notify,
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, SessionHandle>> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers an open session.
    pub fn insert(&self, handle: SessionHandle) {
        self.lock()
            .insert(handle.context.connection_id.clone(), handle);
    }

    /// Forgets a session; the Management API answers 410 from then on.
    pub fn remove(&self, connection_id: &str) {
        self.lock().remove(connection_id);
    }

    /// The open session with this id.
    pub fn get(&self, connection_id: &str) -> Option<SessionHandle> {
        self.lock().get(connection_id).cloned()
    }

    /// Every open session, sorted by connection time.
    pub fn all(&self) -> Vec<SessionHandle> {
        let mut all: Vec<_> = self.lock().values().cloned().collect();
        all.sort_by_key(|s| s.context.connected_at_ms);
        all
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Asks every open session to close.
    pub fn close_all(&self, code: u16, reason: &str) {
        for handle in self.lock().values() {
            let _ = handle.close.send(CloseRequest {
                code,
                reason: reason.to_owned(),
            });
        }
    }

    /// Counts a session task as running until the guard drops.
    pub fn track(self: &Arc<Self>) -> RunningGuard {
        self.running.fetch_add(1, Ordering::SeqCst);
        RunningGuard(Arc::clone(self))
    }

    /// Waits until every session task has finished, at most `limit`.
    pub async fn wait_finished(&self, limit: Duration) {
        let wait = async {
            loop {
                let notified = self.finished.notified();
                if self.running.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
    }
}

/// Held by a running session task; see [`Sessions::track`].
pub struct RunningGuard(Arc<Sessions>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
        self.0.finished.notify_waiters();
    }
}

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
    faults: FaultInjector,
}

impl AppState {
    /// State for an emulator reachable at `base_url` (`http://127.0.0.1:PORT`).
    pub fn new(
        settings: Settings,
        base_url: String,
        deps: Deps,
        notifier: NotifierDeps,
        memory: Option<Arc<MemoryStore>>,
    ) -> Self {
        let queue = Arc::new(Queue::new(
            settings.queue.clone(),
            &settings.region,
            "pushgate-local-notifications",
        ));
        let faults = FaultInjector::new(settings.faults.clone());
        Self {
            inner: Arc::new(Inner {
                faults,
                settings,
                base_url,
                deps,
                notifier,
                memory,
                sessions: Arc::default(),
                queue,
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

    /// The notifier's (and `publish`'s) dependencies.
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

    /// The faults in force.
    pub fn faults(&self) -> &FaultInjector {
        &self.inner.faults
    }
}
