//! Where connections, subscriptions and notification streams (sequence
//! numbers and history) live.
//!
//! # Layout
//!
//! - [`ConnectionStore`]: the port every function talks to.
//! - [`DynamoDbStore`] (`dynamodb.rs`): the single-table adapter on
//!   `aws-sdk-dynamodb`, with the `byEntity` and `byUser` indexes and TTL.
//! - [`MemoryStore`] (`memory.rs`): the embedded adapter used by the local
//!   emulator and by tests that need no server.
//!
//! Both adapters follow `docs/design.md` and pass the same test suite
//! (`tests/store_suite.rs`). Every read takes `now` (epoch seconds) and
//! ignores items whose `expiresAt` has passed, because DynamoDB removes them
//! only lazily.

use async_trait::async_trait;
use pushgate_domain::retry::RetryPolicy;
use pushgate_domain::{
    ConnectionId, ConnectionRecord, DeliveryProgress, EntityId, HistoryEntry, IdRange, Retention,
    StreamHead, StreamKey, SubscriptionRecord, UserId,
};

mod dynamodb;
mod memory;

pub use dynamodb::{DynamoDbStore, BY_ENTITY_INDEX, BY_USER_INDEX};
pub use memory::MemoryStore;

/// Boxed error from the DynamoDB SDK, kept as the source of a [`StoreError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The connection record does not exist (closed, expired or never made).
    #[error("connection {0} is not stored; it closed or expired")]
    ConnectionGone(ConnectionId),
    /// The connection already holds `max` subscriptions.
    #[error("connection {connection_id} already holds {max} subscriptions")]
    TooManySubscriptions {
        /// The connection.
        connection_id: ConnectionId,
        /// The cap.
        max: usize,
    },
    /// DynamoDB cancelled a transaction because another one touched the same
    /// items at the same time (`TransactionConflict`). Retrying is safe.
    #[error("a concurrent transaction touched the same items (TransactionConflict)")]
    TransactionConflict,
    /// A DynamoDB call failed.
    #[error("DynamoDB {operation} failed")]
    DynamoDb {
        /// The API call.
        operation: &'static str,
        /// The SDK's error.
        #[source]
        source: BoxError,
    },
    /// BatchWriteItem still left items unprocessed after every retry.
    #[error("{remaining} items were still unprocessed after {attempts} BatchWriteItem attempts")]
    Unprocessed {
        /// Items left.
        remaining: usize,
        /// Attempts made.
        attempts: u32,
    },
    /// An item in the table does not have the shape the design gives it.
    #[error("malformed item: {0}")]
    Malformed(String),
    /// The caller could not build the payload of a history item.
    #[error("could not build the notification to keep as history")]
    Payload(#[source] BoxError),
    /// Appending to a stream kept losing to concurrent appends.
    #[error("appending to stream {stream} lost {attempts} times to concurrent appends")]
    Contended {
        /// The stream's partition key.
        stream: String,
        /// Attempts made.
        attempts: u32,
    },
}

/// Builds the frame kept as history for an event at a stream position.
pub type PayloadFn<'a> = &'a (dyn Fn(&StreamHead) -> Result<String, BoxError> + Send + Sync);

/// An event's place in a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The event's seq and the stream's epoch.
    pub position: StreamHead,
    /// The frame for this position (as kept in history).
    pub payload: String,
    /// `false` when the event already had its place (a redelivery).
    pub fresh: bool,
    /// What an earlier, unfinished delivery left to do (redeliveries only).
    pub progress: Option<DeliveryProgress>,
}

/// How an append that lost the race for a stream's next number is retried
/// before [`StoreError::Contended`]: 12 attempts, short waits (20 ms
/// doubling to 320 ms ceilings), because the winner is already done. Each
/// lost attempt means another event got its number, so this bounds the
/// wait under a burst, not the throughput.
pub const APPEND_RETRY: RetryPolicy = RetryPolicy::new(
    12,
    std::time::Duration::from_millis(20),
    std::time::Duration::from_millis(320),
);

/// One page of an entity's subscribers or of a user's connections.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscriberPage {
    /// Live subscribers on this page (may be empty while `next` is set).
    pub connection_ids: Vec<ConnectionId>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<ConnectionId>,
}

/// The port to the connection and subscription store.
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Stores (or replaces) a connection record.
    async fn put_connection(&self, record: &ConnectionRecord) -> Result<(), StoreError>;

    /// The live connection record, if any.
    async fn connection(
        &self,
        connection_id: &ConnectionId,
        now: i64,
    ) -> Result<Option<ConnectionRecord>, StoreError>;

    /// Stores a subscription while the connection record exists and is live,
    /// and while the connection holds fewer than `max` other subscriptions.
    /// Subscribing again to the same entity refreshes it.
    async fn subscribe(
        &self,
        record: &SubscriptionRecord,
        now: i64,
        max: usize,
    ) -> Result<(), StoreError>;

    /// Removes a subscription; `false` when there was none.
    async fn unsubscribe(
        &self,
        connection_id: &ConnectionId,
        entity_id: &EntityId,
    ) -> Result<bool, StoreError>;

    /// The live subscriptions of a connection, sorted by entity.
    async fn subscriptions(
        &self,
        connection_id: &ConnectionId,
        now: i64,
    ) -> Result<Vec<EntityId>, StoreError>;

    /// Deletes a connection and all its subscriptions; returns how many items
    /// were deleted (0 when nothing was stored).
    async fn delete_connection(&self, connection_id: &ConnectionId) -> Result<usize, StoreError>;

    /// One page of at most `limit` live subscribers of `entity_id`, in
    /// connection id order, starting after `after`.
    async fn subscribers(
        &self,
        entity_id: &EntityId,
        now: i64,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<SubscriberPage, StoreError> {
        self.subscriber_range(entity_id, &IdRange::all(), now, after, limit)
            .await
    }

    /// [`ConnectionStore::subscribers`] whose connection ids fall in
    /// `range`: one shard of a large fan-out.
    async fn subscriber_range(
        &self,
        entity_id: &EntityId,
        range: &IdRange,
        now: i64,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<SubscriberPage, StoreError>;

    /// Gives `event_id` the next seq of `stream` and keeps `payload` for it
    /// as history (at most `retention.max_entries`, for
    /// `retention.ttl_secs`), or returns the place it was given before. A
    /// stream that does not exist (or expired) starts at seq 1 with
    /// `new_epoch`. Concurrent appends never share a seq or leave a hole.
    async fn append(
        &self,
        stream: &StreamKey,
        event_id: &str,
        retention: Retention,
        now: i64,
        new_epoch: &str,
        payload: PayloadFn<'_>,
    ) -> Result<Appended, StoreError>;

    /// Remembers what a delivery of `event_id` to `stream` left to do, for
    /// the redelivery of its record (see [`Appended::progress`]).
    async fn save_progress(
        &self,
        stream: &StreamKey,
        event_id: &str,
        progress: &DeliveryProgress,
    ) -> Result<(), StoreError>;

    /// Where `stream` stands; `None` when nothing was ever appended (or it
    /// expired).
    async fn stream_head(
        &self,
        stream: &StreamKey,
        now: i64,
    ) -> Result<Option<StreamHead>, StoreError>;

    /// Up to `limit` retained notifications of `stream` with seq > `after`,
    /// in seq order.
    async fn history(
        &self,
        stream: &StreamKey,
        after: u64,
        limit: usize,
        now: i64,
    ) -> Result<Vec<HistoryEntry>, StoreError>;

    /// One page of at most `limit` live connections of `user_id` (the
    /// `byUser` index), in connection id order, starting after `after`.
    async fn user_connections(
        &self,
        user_id: &UserId,
        now: i64,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<SubscriberPage, StoreError>;
}
