//! Virtual connections: connections that exist in API Gateway's table and in
//! the store (a connection record and a subscription each) but have no
//! socket. PostToConnection to one succeeds and is counted. They let a fan-out
//! to 100,000 or 1,000,000 subscribers be measured on one machine, where that
//! many real sockets would exhaust ports and memory long before the notifier
//! does; everything between the queue and PostToConnection (store pages,
//! retries, concurrency) runs exactly as for real connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use pushgate_domain::{ConnectionId, ConnectionRecord, EntityId, SubscriptionRecord};
use pushgate_functions::Deps;
use pushgate_store::StoreError;
use serde::Serialize;

use crate::apigw::new_id;

/// Most virtual connections one request may add.
pub const MAX_PER_REQUEST: usize = 1_000_000;

/// The virtual connections and their delivery counts.
#[derive(Default)]
pub struct VirtualConnections {
    by_id: RwLock<HashMap<String, (EntityId, AtomicU64)>>,
}

/// A summary of the deliveries, as `GET /_pushgate/virtual` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualSummary {
    /// Virtual connections registered.
    pub connections: usize,
    /// Pushes delivered to them, in all.
    pub deliveries: u64,
    /// Fewest deliveries to one connection.
    pub min_per_connection: u64,
    /// Most deliveries to one connection.
    pub max_per_connection: u64,
}

impl VirtualConnections {
    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, (EntityId, AtomicU64)>> {
        self.by_id.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `count` connections subscribed to `entity_id`: each gets a
    /// connection record and a subscription in the store, as `$connect` and
    /// `subscribe` would write them. Returns their ids.
    pub async fn add(
        &self,
        deps: &Deps,
        entity_id: &EntityId,
        count: usize,
    ) -> Result<Vec<String>, StoreError> {
        let now_ms = deps.clock.now_ms();
        let now = deps.clock.now_secs();
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            let raw = new_id();
            let Ok(connection_id) = ConnectionId::new(raw.as_str()) else {
                continue;
            };
            deps.store
                .put_connection(&ConnectionRecord {
                    connection_id: connection_id.clone(),
                    user_id: None,
                    source_ip: Some("127.0.0.1".to_owned()),
                    user_agent: Some("pushgate-local virtual connection".to_owned()),
                    connected_at_ms: now_ms,
                    expires_at: deps.expires_at(),
                    scope: None,
                })
                .await?;
            deps.store
                .subscribe(
                    &SubscriptionRecord {
                        connection_id,
                        entity_id: entity_id.clone(),
                        subscribed_at_ms: now_ms,
                        expires_at: deps.expires_at(),
                    },
                    now,
                    usize::MAX,
                )
                .await?;
            self.by_id
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(raw.clone(), (entity_id.clone(), AtomicU64::new(0)));
            ids.push(raw);
        }
        Ok(ids)
    }

    /// Counts a push to `connection_id`; `false` when it is not virtual.
    pub fn deliver(&self, connection_id: &str) -> bool {
        self.read()
            .get(connection_id)
            .map(|(_, n)| n.fetch_add(1, Ordering::Relaxed))
            .is_some()
    }

    /// Whether `connection_id` is a virtual connection.
    pub fn contains(&self, connection_id: &str) -> bool {
        self.read().contains_key(connection_id)
    }

    /// Pushes delivered to one connection, if it is virtual.
    pub fn deliveries(&self, connection_id: &str) -> Option<u64> {
        self.read()
            .get(connection_id)
            .map(|(_, n)| n.load(Ordering::Relaxed))
    }

    /// Totals over every virtual connection.
    pub fn summary(&self) -> VirtualSummary {
        let all = self.read();
        let counts = all.values().map(|(_, n)| n.load(Ordering::Relaxed));
        let mut summary = VirtualSummary {
            connections: all.len(),
            min_per_connection: u64::MAX,
            ..VirtualSummary::default()
        };
        for n in counts {
            summary.deliveries += n;
            summary.min_per_connection = summary.min_per_connection.min(n);
            summary.max_per_connection = summary.max_per_connection.max(n);
        }
        if summary.connections == 0 {
            summary.min_per_connection = 0;
        }
        summary
    }

    /// Forgets every virtual connection and deletes its items from the
    /// store; returns how many there were.
    pub async fn clear(&self, deps: &Deps) -> Result<usize, StoreError> {
        let all: Vec<String> = self
            .by_id
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(id, _)| id)
            .collect();
        for id in &all {
            if let Ok(id) = ConnectionId::new(id.as_str()) {
                deps.store.delete_connection(&id).await?;
            }
        }
        Ok(all.len())
    }
}
