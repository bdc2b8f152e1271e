//! A [`ConnectionStore`] decorator that injects DynamoDB's failures into any
//! store (the embedded one or a real DynamoDB endpoint), so the functions'
//! handling of them can be shown without a flaky network:
//!
//! - `subscribe` fails with [`StoreError::TransactionConflict`] at the
//!   configured rate. DynamoDB cancels a `TransactWriteItems` with reason
//!   `TransactionConflict` when another transaction touches one of its items
//!   at the same moment; `subscribe` is the one transaction pushgate runs.
//! - Calls on a stalled entity (subscribe, unsubscribe, its subscribers,
//!   appending to its stream) never complete, like a DynamoDB call stuck in
//!   its SDK's retries: only the function's deadline ends them.
//!
//! The faults are read on every call from the shared [`FaultInjector`], so
//! `PUT /_pushgate/faults` takes effect at once.

use std::sync::Arc;

use async_trait::async_trait;
use pushgate_domain::{
    ConnectionId, ConnectionRecord, DeliveryProgress, EntityId, HistoryEntry, IdRange, Retention,
    StreamHead, StreamKey, SubscriptionRecord, UserId,
};
use pushgate_store::{Appended, ConnectionStore, PayloadFn, StoreError, SubscriberPage};

use crate::faults::FaultInjector;

/// Any store, with the faults in force applied.
pub struct FaultyStore {
    inner: Arc<dyn ConnectionStore>,
    faults: Arc<FaultInjector>,
}

impl FaultyStore {
    /// Wraps `inner`; faults come from `faults`.
    pub fn new(inner: Arc<dyn ConnectionStore>, faults: Arc<FaultInjector>) -> Self {
        Self { inner, faults }
    }

    /// Hangs forever when `entity_id` is stalled; the caller's deadline
    /// (Lambda's timeout, enforced by the emulator) drops this future.
    async fn stall_if(&self, entity_id: &EntityId) {
        if self.faults.stalls(entity_id.as_str()) {
            tracing::warn!(entity_id = %entity_id, "store call stalled (injected fault)");
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait]
impl ConnectionStore for FaultyStore {
    async fn put_connection(&self, record: &ConnectionRecord) -> Result<(), StoreError> {
        self.inner.put_connection(record).await
    }

    async fn connection(
        &self,
        connection_id: &ConnectionId,
        now: i64,
    ) -> Result<Option<ConnectionRecord>, StoreError> {
        self.inner.connection(connection_id, now).await
    }

    async fn subscribe(
        &self,
        record: &SubscriptionRecord,
        now: i64,
        max: usize,
    ) -> Result<(), StoreError> {
        self.stall_if(&record.entity_id).await;
        if self.faults.subscribe_conflict() {
            tracing::warn!(
                connection_id = %record.connection_id,
                entity_id = %record.entity_id,
                "subscribe: TransactionConflict (injected fault)"
            );
            return Err(StoreError::TransactionConflict);
        }
        self.inner.subscribe(record, now, max).await
    }

    async fn unsubscribe(
        &self,
        connection_id: &ConnectionId,
        entity_id: &EntityId,
    ) -> Result<bool, StoreError> {
        self.stall_if(entity_id).await;
        self.inner.unsubscribe(connection_id, entity_id).await
    }

    async fn subscriptions(
        &self,
        connection_id: &ConnectionId,
        now: i64,
    ) -> Result<Vec<EntityId>, StoreError> {
        self.inner.subscriptions(connection_id, now).await
    }

    async fn delete_connection(&self, connection_id: &ConnectionId) -> Result<usize, StoreError> {
        self.inner.delete_connection(connection_id).await
    }

    async fn subscriber_range(
        &self,
        entity_id: &EntityId,
        range: &IdRange,
        now: i64,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<SubscriberPage, StoreError> {
        self.stall_if(entity_id).await;
        self.inner
            .subscriber_range(entity_id, range, now, after, limit)
            .await
    }

    async fn append(
        &self,
        stream: &StreamKey,
        event_id: &str,
        retention: Retention,
        now: i64,
        new_epoch: &str,
        payload: PayloadFn<'_>,
    ) -> Result<Appended, StoreError> {
        if let StreamKey::Entity(entity_id) = stream {
            self.stall_if(entity_id).await;
        }
        self.inner
            .append(stream, event_id, retention, now, new_epoch, payload)
            .await
    }

    async fn save_progress(
        &self,
        stream: &StreamKey,
        event_id: &str,
        progress: &DeliveryProgress,
    ) -> Result<(), StoreError> {
        self.inner.save_progress(stream, event_id, progress).await
    }

    async fn stream_head(
        &self,
        stream: &StreamKey,
        now: i64,
    ) -> Result<Option<StreamHead>, StoreError> {
        self.inner.stream_head(stream, now).await
    }

    async fn history(
        &self,
        stream: &StreamKey,
        after: u64,
        limit: usize,
        now: i64,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        self.inner.history(stream, after, limit, now).await
    }

    async fn user_connections(
        &self,
        user_id: &UserId,
        now: i64,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<SubscriberPage, StoreError> {
        self.inner
            .user_connections(user_id, now, after, limit)
            .await
    }
}
