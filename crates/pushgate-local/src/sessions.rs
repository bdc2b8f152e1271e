//! API Gateway's connection table: the open WebSocket sessions by connection
//! id, what can be sent to each ([`Outbox`]) and how to close them. Shared by
//! the WebSocket endpoint (which fills it), the `@connections` API (which
//! pushes through it) and shutdown; it knows nothing of HTTP.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use crate::apigw::ConnectionContext;

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

impl Outbound {
    /// Bytes this frame holds while it waits in the buffer.
    pub fn len(&self) -> usize {
        match self {
            Self::Text(t) => t.len(),
            Self::Binary(b) => b.len(),
            Self::Close(c) => c.reason.len(),
        }
    }

    /// Whether the frame carries no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A request to close a session, from the Management API or shutdown.
#[derive(Debug, Clone)]
pub struct CloseRequest {
    /// The close code sent to the client and given to `$disconnect`.
    pub code: u16,
    /// The close reason.
    pub reason: String,
}

/// Why a frame was not queued for a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OutboxError {
    /// The client is not reading fast enough: the frames waiting for it
    /// already fill its buffer.
    #[error("the client's outbound buffer is full")]
    Full,
    /// The socket is closed.
    #[error("the connection is closed")]
    Closed,
}

/// The frames waiting to be written to one client, bounded in bytes so that
/// a client that stops reading holds at most `limit` bytes of the
/// emulator's memory (its socket's kernel buffers aside). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    sender: mpsc::UnboundedSender<Outbound>,
    queued: Arc<AtomicUsize>,
    limit: usize,
}

/// The writer's end of an [`Outbox`].
#[derive(Debug)]
pub struct OutboxReceiver {
    receiver: mpsc::UnboundedReceiver<Outbound>,
    queued: Arc<AtomicUsize>,
}

impl Outbox {
    /// An outbox holding at most `limit` bytes of frames.
    pub fn new(limit: usize) -> (Self, OutboxReceiver) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        (
            Self {
                sender,
                queued: Arc::clone(&queued),
                limit,
            },
            OutboxReceiver { receiver, queued },
        )
    }

    /// Queues a frame unless the buffer cannot take it. Close frames are
    /// always queued: closing must never wait for a slow reader.
    pub fn push(&self, out: Outbound) -> Result<(), OutboxError> {
        let len = out.len();
        let counted = !matches!(out, Outbound::Close(_));
        if counted {
            self.queued
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                    let total = queued.checked_add(len)?;
                    (total <= self.limit).then_some(total)
                })
                .map_err(|_| OutboxError::Full)?;
        }
        self.sender.send(out).map_err(|_| {
            if counted {
                self.queued.fetch_sub(len, Ordering::AcqRel);
            }
            OutboxError::Closed
        })
    }

    /// Bytes waiting to be written.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

impl OutboxReceiver {
    /// The next frame; `None` once every [`Outbox`] is dropped.
    pub async fn recv(&mut self) -> Option<Outbound> {
        self.receiver.recv().await
    }

    /// Frees the room `out` took once it has been written.
    pub fn written(&self, out_len: usize) {
        self.queued.fetch_sub(out_len, Ordering::AcqRel);
    }
}

/// An open WebSocket connection, as the Management API sees it.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    /// What API Gateway knows about it.
    pub context: ConnectionContext,
    /// Frames to send.
    pub outbox: Outbox,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outbox_refuses_frames_past_its_limit_until_some_are_written() {
        let (outbox, receiver) = Outbox::new(10);
        assert_eq!(outbox.push(Outbound::Text("123456".into())), Ok(()));
        assert_eq!(
            outbox.push(Outbound::Text("123456".into())),
            Err(OutboxError::Full)
        );
        let close = CloseRequest {
            code: 1000,
            reason: String::new(),
        };
        assert_eq!(outbox.push(Outbound::Close(close)), Ok(()));
        receiver.written(6);
        assert_eq!(outbox.queued_bytes(), 0);
        assert_eq!(outbox.push(Outbound::Text("123456".into())), Ok(()));
        drop(receiver);
        assert_eq!(
            outbox.push(Outbound::Text("1".into())),
            Err(OutboxError::Closed)
        );
    }
}
