//! The items of the single table and their keys (see the table in
//! `shared/design.md`): one connection item per connection and one
//! subscription item per (connection, entity), both under `CONN#<id>`.

use crate::auth::Scope;
use crate::ids::{ConnectionId, EntityId, UserId};

/// Partition key of every item that belongs to `connection_id`.
pub fn connection_pk(connection_id: &ConnectionId) -> String {
    format!("CONN#{connection_id}")
}

/// Sort key of a connection item.
pub const CONNECTION_SK: &str = "CONN";

/// Prefix of the sort key of subscription items.
pub const SUBSCRIPTION_SK_PREFIX: &str = "SUB#";

/// Sort key of the subscription of a connection to `entity_id`.
pub fn subscription_sk(entity_id: &EntityId) -> String {
    format!("{SUBSCRIPTION_SK_PREFIX}{entity_id}")
}

/// One open WebSocket connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRecord {
    /// API Gateway's connection id.
    pub connection_id: ConnectionId,
    /// The authenticated user, when the request carried one.
    pub user_id: Option<UserId>,
    /// The client's address as API Gateway saw it.
    pub source_ip: Option<String>,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// When API Gateway accepted the connection, epoch milliseconds.
    pub connected_at_ms: i64,
    /// When the item expires (DynamoDB TTL), epoch seconds.
    pub expires_at: i64,
    /// The token's grants and expiry; `None` for an anonymous connection.
    pub scope: Option<Scope>,
}

/// One connection's interest in one entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRecord {
    /// The subscribing connection.
    pub connection_id: ConnectionId,
    /// What it subscribed to.
    pub entity_id: EntityId,
    /// When it subscribed, epoch milliseconds.
    pub subscribed_at_ms: i64,
    /// When the item expires (DynamoDB TTL), epoch seconds.
    pub expires_at: i64,
}

/// Whether an item whose TTL is `expires_at` (epoch seconds) is still live at
/// `now` (epoch seconds). DynamoDB deletes expired items lazily, so every
/// read applies this.
pub fn is_live(expires_at: i64, now: i64) -> bool {
    expires_at > now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_single_table_design() {
        let c = ConnectionId::new("Vq2FSfPqIAMCJ1g=").unwrap();
        let e = EntityId::new("artist:ed-sheeran").unwrap();
        assert_eq!(connection_pk(&c), "CONN#Vq2FSfPqIAMCJ1g=");
        assert_eq!(subscription_sk(&e), "SUB#artist:ed-sheeran");
    }

    #[test]
    fn expired_items_are_not_live() {
        assert!(is_live(101, 100));
        assert!(!is_live(100, 100));
        assert!(!is_live(99, 100));
    }
}
