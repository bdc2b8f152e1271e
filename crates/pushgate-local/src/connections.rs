//! PostToConnection's logic, apart from its HTTP form: the one place frames
//! are pushed to clients, so fault injection, throttling and the bounded
//! per-connection buffer all apply here. `http::management` turns the
//! outcome into the REST-JSON answer the AWS SDKs parse.

use pushgate_domain::limits::MAX_MESSAGE_BYTES;
use std::sync::atomic::Ordering;

use crate::faults;
use crate::sessions::{Outbound, OutboxError};
use crate::state::AppState;

/// Why a PostToConnection was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    /// Over API Gateway's 128 KB message limit (413).
    #[error("the payload is {0} bytes; the limit is {MAX_MESSAGE_BYTES}")]
    PayloadTooLarge(usize),
    /// An injected fault answered this status.
    #[error("injected fault")]
    Injected(u16),
    /// The token bucket is empty (429).
    #[error("Too Many Requests: PostToConnection is throttled")]
    Throttled,
    /// The client is not reading and its buffer is full (429). AWS documents
    /// `LimitExceededException` as "the client is sending more than the
    /// allowed number of requests per unit of time or the WebSocket client
    /// side buffer is full" (AWS SDK for Java, apigatewaymanagementapi
    /// `LimitExceededException`).
    #[error("the WebSocket client side buffer is full")]
    BufferFull,
    /// No such connection (410).
    #[error("the connection is gone")]
    Gone,
}

impl PostError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::PayloadTooLarge(_) => 413,
            Self::Injected(status) => *status,
            Self::Throttled | Self::BufferFull => 429,
            Self::Gone => 410,
        }
    }

    /// The AWS error type (`x-amzn-ErrorType`).
    pub fn error_type(&self) -> &'static str {
        faults::error_type(self.status())
    }
}

/// PostToConnection: queues `data` for the client of `connection_id`.
pub async fn post_to_connection(
    state: &AppState,
    connection_id: &str,
    data: Vec<u8>,
) -> Result<(), PostError> {
    state.post_counts().calls.fetch_add(1, Ordering::Relaxed);
    if let Some(latency) = state.faults().post_latency() {
        tokio::time::sleep(latency).await;
    }
    if data.len() > MAX_MESSAGE_BYTES {
        return Err(PostError::PayloadTooLarge(data.len()));
    }
    if state.post_throttle().is_some_and(|b| !b.try_take()) {
        state
            .post_counts()
            .throttled
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(connection_id, "PostToConnection: throttled");
        return Err(PostError::Throttled);
    }
    if let Some(status) = state.faults().post_fault(connection_id) {
        tracing::debug!(connection_id, status, "PostToConnection: injected fault");
        return Err(PostError::Injected(status));
    }
    let Some(session) = state.sessions().get(connection_id) else {
        if state.virtual_connections().deliver(connection_id) {
            return Ok(());
        }
        tracing::debug!(connection_id, "PostToConnection: gone");
        return Err(PostError::Gone);
    };
    let frame = match String::from_utf8(data) {
        Ok(text) => Outbound::Text(text),
        Err(e) => Outbound::Binary(e.into_bytes()),
    };
    match session.outbox.push(frame) {
        Ok(()) => Ok(()),
        Err(OutboxError::Closed) => Err(PostError::Gone),
        Err(OutboxError::Full) => {
            tracing::warn!(
                connection_id,
                queued_bytes = session.outbox.queued_bytes(),
                "PostToConnection: the client is not reading; its buffer is full (429)"
            );
            Err(PostError::BufferFull)
        }
    }
}
