//! The items of the single table and their keys (see the table in
//! `docs/design.md`): one connection item per connection and one
//! subscription item per (connection, entity), both under `CONN#<id>`; and
//! per stream (an entity's or a user's notifications) a head, one item per
//! event id and one history item per sequence number, under `STREAM#…`.

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

/// Sort key of a stream's head (its last seq and its epoch).
pub const STREAM_HEAD_SK: &str = "HEAD";

/// Prefix of the sort key of a stream's history items.
pub const HISTORY_SK_PREFIX: &str = "SEQ#";

/// Sort key of the history item holding `seq`: zero-padded so that the sort
/// key's string order is the numeric order and a Query reads a seq range.
pub fn history_sk(seq: u64) -> String {
    format!("{HISTORY_SK_PREFIX}{seq:020}")
}

/// Sort key of the item that remembers which seq `event_id` was given, so a
/// redelivered event keeps its number.
pub fn event_sk(event_id: &str) -> String {
    format!("EVT#{event_id}")
}

/// A stream of notifications with its own sequence numbers: an entity's
/// (what its subscribers get) or a user's (what every connection of the
/// user gets).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamKey {
    /// The subscribers of an entity.
    Entity(EntityId),
    /// The connections of a user.
    User(UserId),
}

impl StreamKey {
    /// The partition key of the stream's items. One letter names the kind,
    /// so an entity and a user with the same id never share a stream.
    pub fn pk(&self) -> String {
        match self {
            Self::Entity(e) => format!("STREAM#E#{e}"),
            Self::User(u) => format!("STREAM#U#{u}"),
        }
    }
}

/// An inclusive range of connection ids, the unit in which a large
/// entity's fan-out is split across notifier invocations. Connection ids
/// are random base64 (API Gateway's, and the emulator's URL-safe ones), so
/// ranges of their first character hold about equal shares of any entity's
/// subscribers, and a range is one `Query` key condition
/// (`connectionId BETWEEN first AND last`) on the `byEntity` index.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdRange {
    /// The lowest id in the range (inclusive).
    pub first: String,
    /// The highest id in the range (inclusive).
    pub last: String,
}

/// Every character a connection id starts with, in byte order: standard
/// and URL-safe base64.
const ID_FIRST_CHARS: &str = "+-/0123456789=ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";

impl IdRange {
    /// Every id (printable ASCII).
    pub fn all() -> Self {
        Self {
            first: " ".to_owned(),
            last: "\u{7f}".to_owned(),
        }
    }

    /// `n` ranges (at least 1, at most one per first character) that cover
    /// every id between them, in order.
    pub fn split(n: usize) -> Vec<Self> {
        let chars: Vec<char> = ID_FIRST_CHARS.chars().collect();
        let n = n.clamp(1, chars.len());
        (0..n)
            .map(|i| {
                let lo = i * chars.len() / n;
                let hi = (i + 1) * chars.len() / n - 1;
                Self {
                    first: if i == 0 {
                        " ".to_owned()
                    } else {
                        chars[lo].to_string()
                    },
                    last: if i == n - 1 {
                        "\u{7f}".to_owned()
                    } else {
                        format!("{}\u{7f}", chars[hi])
                    },
                }
            })
            .collect()
    }

    /// Whether `id` falls in the range.
    pub fn contains(&self, id: &str) -> bool {
        self.first.as_str() <= id && id <= self.last.as_str()
    }
}

/// Where a stream stands: the last seq given out and the stream's epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHead {
    /// The last sequence number given out (the first is 1).
    pub seq: u64,
    /// Names this incarnation of the stream; a stream that expired and
    /// started again gets a new one, so a client can tell.
    pub epoch: String,
}

/// One retained notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Its sequence number.
    pub seq: u64,
    /// The `notification` frame exactly as it was pushed (JSON text).
    pub payload: String,
}

/// What an earlier attempt at delivering an event to a stream's
/// connections left to do, kept with the event's place so that a
/// redelivered record pushes only to connections that did not get it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeliveryProgress {
    /// Connections whose push failed, or was cut off, last time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry: Vec<String>,
    /// Where reading subscribers resumes: every connection up to and
    /// including this one was pushed or is in `retry`. `None` with
    /// `finished` false means from the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_after: Option<String>,
    /// Every subscriber was read; only `retry` is left.
    #[serde(default)]
    pub read_all: bool,
}

/// How long and how much history a stream keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Lifetime of stream items after their last write, seconds.
    pub ttl_secs: i64,
    /// History items kept per stream; older ones are deleted as new ones
    /// are appended.
    pub max_entries: u64,
}

/// Whether a client that has everything up to `since` (of `client_epoch`,
/// when it knows one) can continue without a hole: the epoch is the
/// stream's and either nothing happened since or history still holds
/// `since + 1` (`first_retained` is the lowest retained seq above `since`).
pub fn is_recovered(
    head: Option<&StreamHead>,
    since: u64,
    client_epoch: Option<&str>,
    first_retained: Option<u64>,
) -> bool {
    let Some(head) = head else {
        // Nothing was ever published (or the stream expired): a client
        // that has nothing lost nothing; one that had something did.
        return since == 0 && client_epoch.is_none();
    };
    if client_epoch.is_some_and(|e| e != head.epoch) || since > head.seq {
        return false;
    }
    since == head.seq || first_retained == Some(since + 1)
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
    fn stream_keys_sort_history_by_seq() {
        let e = StreamKey::Entity(EntityId::new("a#b").unwrap());
        let u = StreamKey::User(UserId::new("a#b").unwrap());
        assert_eq!(e.pk(), "STREAM#E#a#b");
        assert_eq!(u.pk(), "STREAM#U#a#b");
        assert_eq!(history_sk(42), "SEQ#00000000000000000042");
        assert!(history_sk(9) < history_sk(10));
        assert!(history_sk(u64::MAX) > history_sk(u64::MAX - 1));
        assert_eq!(event_sk("ev-1"), "EVT#ev-1");
    }

    #[test]
    fn id_ranges_cover_every_id_once() {
        let ranges = IdRange::split(8);
        assert_eq!(ranges.len(), 8);
        for id in [
            "+a",
            "-x",
            "/",
            "0abc",
            "9",
            "=",
            "AAAA=",
            "Vq2FSfPqIAMCJ1g=",
            "_",
            "a",
            "zzzz",
        ] {
            let holding = ranges.iter().filter(|r| r.contains(id)).count();
            assert_eq!(holding, 1, "{id}");
            assert!(IdRange::all().contains(id));
        }
        assert_eq!(IdRange::split(1), vec![IdRange::all()]);
        assert_eq!(IdRange::split(1000).len(), ID_FIRST_CHARS.len());
        for pair in ranges.windows(2) {
            assert!(pair[0].last < pair[1].first);
        }
    }

    #[test]
    fn recovered_only_when_nothing_is_missing() {
        let head = StreamHead {
            seq: 48,
            epoch: "k3".into(),
        };
        let h = Some(&head);
        assert!(is_recovered(h, 41, Some("k3"), Some(42)));
        assert!(is_recovered(h, 41, None, Some(42)));
        assert!(is_recovered(h, 48, Some("k3"), None));
        assert!(!is_recovered(h, 41, Some("k3"), Some(43)), "42 expired");
        assert!(!is_recovered(h, 41, Some("k3"), None), "history empty");
        assert!(!is_recovered(h, 41, Some("old"), Some(42)), "epoch changed");
        assert!(!is_recovered(h, 49, Some("k3"), None), "from the future");
        assert!(is_recovered(None, 0, None, None));
        assert!(!is_recovered(None, 3, None, None));
        assert!(!is_recovered(None, 0, Some("k3"), None));
    }

    #[test]
    fn expired_items_are_not_live() {
        assert!(is_live(101, 100));
        assert!(!is_live(100, 100));
        assert!(!is_live(99, 100));
    }
}
