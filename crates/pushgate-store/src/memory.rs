//! The in-memory adapter: the embedded store of the local emulator and a
//! server-free store for tests. It keeps the same rules as DynamoDB (expiry
//! on read, subscription only while the connection exists, pagination).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use pushgate_domain::record::is_live;
use pushgate_domain::{
    ConnectionId, ConnectionRecord, DeliveryProgress, EntityId, HistoryEntry, IdRange, Retention,
    StreamHead, StreamKey, SubscriptionRecord, UserId,
};

use crate::{Appended, ConnectionStore, PayloadFn, StoreError, SubscriberPage};

/// One stream's items: the head, each event's place, the history.
#[derive(Default)]
struct Stream {
    /// seq, epoch, expiresAt.
    head: Option<(StreamHead, i64)>,
    /// event id → (seq and epoch, expiresAt, delivery progress).
    events: HashMap<String, (StreamHead, i64, Option<DeliveryProgress>)>,
    /// seq → (payload, expiresAt).
    history: BTreeMap<u64, (String, i64)>,
}

#[derive(Default)]
struct State {
    connections: HashMap<ConnectionId, ConnectionRecord>,
    /// (connection, entity) → subscription: the table's `CONN#…`/`SUB#…` items.
    subscriptions: BTreeMap<(ConnectionId, EntityId), SubscriptionRecord>,
    /// (entity, connection) → expiresAt: the `byEntity` index.
    by_entity: BTreeMap<(EntityId, ConnectionId), i64>,
    /// The `STREAM#…` items.
    streams: HashMap<StreamKey, Stream>,
}

/// A [`ConnectionStore`] held in process memory.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every stored connection record (live or not), sorted by id: for the
    /// emulator's status page and for tests.
    pub fn all_connections(&self) -> Vec<ConnectionRecord> {
        let mut all: Vec<_> = self.lock().connections.values().cloned().collect();
        all.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
        all
    }

    /// Every stored subscription record (live or not), sorted by key.
    pub fn all_subscriptions(&self) -> Vec<SubscriptionRecord> {
        self.lock().subscriptions.values().cloned().collect()
    }

    /// Deletes every item whose `expiresAt` has passed at `now` (epoch
    /// seconds), as DynamoDB's TTL does in the background, and returns how
    /// many items went. Reads already ignore expired items; this keeps a
    /// long-running emulator from holding them forever.
    pub fn purge_expired(&self, now: i64) -> usize {
        let mut state = self.lock();
        let State {
            connections,
            subscriptions,
            by_entity,
            streams,
        } = &mut *state;
        let count = |streams: &HashMap<StreamKey, Stream>| -> usize {
            streams
                .values()
                .map(|s| usize::from(s.head.is_some()) + s.events.len() + s.history.len())
                .sum()
        };
        let before = connections.len() + subscriptions.len() + count(streams);
        connections.retain(|_, c| is_live(c.expires_at, now));
        subscriptions.retain(|_, s| is_live(s.expires_at, now));
        by_entity.retain(|_, expires_at| is_live(*expires_at, now));
        for stream in streams.values_mut() {
            if stream.head.as_ref().is_some_and(|(_, e)| !is_live(*e, now)) {
                stream.head = None;
            }
            stream.events.retain(|_, (_, e, _)| is_live(*e, now));
            stream.history.retain(|_, (_, e)| is_live(*e, now));
        }
        streams.retain(|_, s| s.head.is_some() || !s.history.is_empty() || !s.events.is_empty());
        before - connections.len() - subscriptions.len() - count(streams)
    }
}

#[async_trait]
impl ConnectionStore for MemoryStore {
    async fn append(
        &self,
        stream: &StreamKey,
        event_id: &str,
        retention: Retention,
        now: i64,
        new_epoch: &str,
        payload: PayloadFn<'_>,
    ) -> Result<Appended, StoreError> {
        // One lock around read-and-write: what DynamoDB's conditional
        // transaction guarantees, a mutex guarantees here.
        let mut state = self.lock();
        let s = state.streams.entry(stream.clone()).or_default();
        if let Some((position, _, progress)) =
            s.events.get(event_id).filter(|(_, e, _)| is_live(*e, now))
        {
            let (position, progress) = (position.clone(), progress.clone());
            let payload = payload(&position).map_err(StoreError::Payload)?;
            return Ok(Appended {
                position,
                payload,
                fresh: false,
                progress,
            });
        }
        let expires_at = now.saturating_add(retention.ttl_secs);
        let position = match s.head.as_ref().filter(|(_, e)| is_live(*e, now)) {
            Some((head, _)) => StreamHead {
                seq: head.seq + 1,
                epoch: head.epoch.clone(),
            },
            None => StreamHead {
                seq: 1,
                epoch: new_epoch.to_owned(),
            },
        };
        let frame = payload(&position).map_err(StoreError::Payload)?;
        s.head = Some((position.clone(), expires_at));
        s.events
            .insert(event_id.to_owned(), (position.clone(), expires_at, None));
        s.history.insert(position.seq, (frame.clone(), expires_at));
        if let Some(old) = position.seq.checked_sub(retention.max_entries) {
            s.history.remove(&old);
        }
        Ok(Appended {
            position,
            payload: frame,
            fresh: true,
            progress: None,
        })
    }

    async fn save_progress(
        &self,
        stream: &StreamKey,
        event_id: &str,
        progress: &DeliveryProgress,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        if let Some(event) = state
            .streams
            .get_mut(stream)
            .and_then(|s| s.events.get_mut(event_id))
        {
            event.2 = Some(progress.clone());
        }
        Ok(())
    }

    async fn stream_head(
        &self,
        stream: &StreamKey,
        now: i64,
    ) -> Result<Option<StreamHead>, StoreError> {
        Ok(self
            .lock()
            .streams
            .get(stream)
            .and_then(|s| s.head.as_ref())
            .filter(|(_, e)| is_live(*e, now))
            .map(|(head, _)| head.clone()))
    }

    async fn history(
        &self,
        stream: &StreamKey,
        after: u64,
        limit: usize,
        now: i64,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let state = self.lock();
        let Some(s) = state.streams.get(stream) else {
            return Ok(Vec::new());
        };
        Ok(s.history
            .range(after.saturating_add(1)..)
            .filter(|(_, (_, e))| is_live(*e, now))
            .take(limit)
            .map(|(seq, (payload, _))| HistoryEntry {
                seq: *seq,
                payload: payload.clone(),
            })
            .collect())
    }

    async fn put_connection(&self, record: &ConnectionRecord) -> Result<(), StoreError> {
        self.lock()
            .connections
            .insert(record.connection_id.clone(), record.clone());
        Ok(())
    }

    async fn user_connections(
        &self,
        user_id: &UserId,
        now: i64,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<SubscriberPage, StoreError> {
        // The byUser index, derived on read: the embedded store is small.
        let state = self.lock();
        let mut matching: Vec<&ConnectionRecord> = state
            .connections
            .values()
            .filter(|c| c.user_id.as_ref() == Some(user_id))
            .filter(|c| after.is_none_or(|a| c.connection_id > *a))
            .collect();
        matching.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
        let limit = limit.max(1);
        let next = (matching.len() > limit).then(|| matching[limit - 1].connection_id.clone());
        Ok(SubscriberPage {
            connection_ids: matching
                .into_iter()
                .take(limit)
                .filter(|c| is_live(c.expires_at, now))
                .map(|c| c.connection_id.clone())
                .collect(),
            next,
        })
    }

    async fn connection(
        &self,
        connection_id: &ConnectionId,
        now: i64,
    ) -> Result<Option<ConnectionRecord>, StoreError> {
        Ok(self
            .lock()
            .connections
            .get(connection_id)
            .filter(|c| is_live(c.expires_at, now))
            .cloned())
    }

    async fn subscribe(
        &self,
        record: &SubscriptionRecord,
        now: i64,
        max: usize,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        let id = &record.connection_id;
        if !state
            .connections
            .get(id)
            .is_some_and(|c| is_live(c.expires_at, now))
        {
            return Err(StoreError::ConnectionGone(id.clone()));
        }
        let others = state
            .subscriptions
            .range((id.clone(), min_entity())..)
            .take_while(|((c, _), _)| c == id)
            .filter(|((_, e), s)| *e != record.entity_id && is_live(s.expires_at, now))
            .count();
        if others >= max {
            return Err(StoreError::TooManySubscriptions {
                connection_id: id.clone(),
                max,
            });
        }
        state
            .subscriptions
            .insert((id.clone(), record.entity_id.clone()), record.clone());
        state
            .by_entity
            .insert((record.entity_id.clone(), id.clone()), record.expires_at);
        Ok(())
    }

    async fn unsubscribe(
        &self,
        connection_id: &ConnectionId,
        entity_id: &EntityId,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        state
            .by_entity
            .remove(&(entity_id.clone(), connection_id.clone()));
        Ok(state
            .subscriptions
            .remove(&(connection_id.clone(), entity_id.clone()))
            .is_some())
    }

    async fn subscriptions(
        &self,
        connection_id: &ConnectionId,
        now: i64,
    ) -> Result<Vec<EntityId>, StoreError> {
        Ok(self
            .lock()
            .subscriptions
            .range((connection_id.clone(), min_entity())..)
            .take_while(|((c, _), _)| c == connection_id)
            .filter(|(_, s)| is_live(s.expires_at, now))
            .map(|((_, e), _)| e.clone())
            .collect())
    }

    async fn delete_connection(&self, connection_id: &ConnectionId) -> Result<usize, StoreError> {
        let mut state = self.lock();
        let mut deleted = usize::from(state.connections.remove(connection_id).is_some());
        let entities: Vec<EntityId> = state
            .subscriptions
            .range((connection_id.clone(), min_entity())..)
            .take_while(|((c, _), _)| c == connection_id)
            .map(|((_, e), _)| e.clone())
            .collect();
        for entity in entities {
            state
                .subscriptions
                .remove(&(connection_id.clone(), entity.clone()));
            state.by_entity.remove(&(entity, connection_id.clone()));
            deleted += 1;
        }
        Ok(deleted)
    }

    async fn subscriber_range(
        &self,
        entity_id: &EntityId,
        range: &IdRange,
        now: i64,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<SubscriberPage, StoreError> {
        use std::ops::Bound;
        let state = self.lock();
        let mut page = SubscriberPage::default();
        let mut last = None;
        // Start at `after` (or the range's first id) in the index, as a
        // Query with ExclusiveStartKey does: a page costs its own length,
        // not the length of everything before it.
        let start = match after {
            Some(a) => Bound::Excluded((entity_id.clone(), a.clone())),
            None => Bound::Included((
                entity_id.clone(),
                ConnectionId::new(range.first.as_str()).unwrap_or_else(|_| min_connection()),
            )),
        };
        let candidates = state
            .by_entity
            .range((start, Bound::Unbounded))
            .take_while(|((e, c), _)| e == entity_id && c.as_str() <= range.last.as_str())
            .filter(|((_, c), _)| range.contains(c.as_str()));
        // Like a DynamoDB Query with Limit: `limit` items are read, then the
        // filter on expiry applies, so a page may hold fewer.
        for (scanned, ((_, connection), expires_at)) in candidates.enumerate() {
            if scanned == limit.max(1) {
                page.next = last;
                return Ok(page);
            }
            last = Some(connection.clone());
            if is_live(*expires_at, now) {
                page.connection_ids.push(connection.clone());
            }
        }
        Ok(page)
    }
}

// The smallest valid ids, used as range starts. Both are constant and valid.
fn min_entity() -> EntityId {
    EntityId::new("\u{20}").unwrap_or_else(|_| unreachable!("a space is a valid entity id"))
}

fn min_connection() -> ConnectionId {
    ConnectionId::new("\u{20}").unwrap_or_else(|_| unreachable!("a space is a valid connection id"))
}
