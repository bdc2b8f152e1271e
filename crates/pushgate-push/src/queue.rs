//! Handing work to the notifier's queue.
//!
//! `publish` (a client frame) and the notifier itself (fan-out shards and
//! retries of what failed) send messages to the same SQS queue that
//! EventBridge feeds, so every notification takes one path: queue →
//! notifier → PostToConnection. A route call therefore never fans out inside
//! API Gateway's 29 s integration limit.

use async_trait::async_trait;
use aws_sdk_sqs::Client;

use crate::BoxError;

/// Why a message could not be enqueued.
#[derive(Debug, thiserror::Error)]
#[error("could not enqueue the message")]
pub struct QueueError(#[source] pub BoxError);

/// The port: one message body to the notifier's queue.
#[async_trait]
pub trait EventQueue: Send + Sync {
    /// SendMessage; `delay_secs` (0–900) postpones delivery, as SQS's
    /// `DelaySeconds` does.
    async fn send(&self, body: String, delay_secs: u32) -> Result<(), QueueError>;
}

/// [`EventQueue`] on SQS (`aws-sdk-sqs`).
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
}

impl SqsQueue {
    /// The queue at `queue_url`.
    pub fn new(sdk_config: &aws_config::SdkConfig, queue_url: impl Into<String>) -> Self {
        Self {
            client: Client::new(sdk_config),
            queue_url: queue_url.into(),
        }
    }
}

#[async_trait]
impl EventQueue for SqsQueue {
    async fn send(&self, body: String, delay_secs: u32) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(i32::try_from(delay_secs.min(900)).unwrap_or(900))
            .send()
            .await
            .map_err(|e| QueueError(Box::new(e)))?;
        Ok(())
    }
}
