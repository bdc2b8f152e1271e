//! One behavioural suite for every [`ConnectionStore`] adapter: the in-memory
//! store, and the DynamoDB store against a real DynamoDB-compatible server
//! (moto) started by the test itself.

// Test code: a panic is how a failed expectation is reported.
#![allow(clippy::unwrap_used)]

mod support;

use pushgate_domain::auth::{Grant, Role, Scope};
use pushgate_domain::{ConnectionId, ConnectionRecord, EntityId, SubscriptionRecord, UserId};
use pushgate_store::{ConnectionStore, DynamoDbStore, MemoryStore, StoreError};

const NOW: i64 = 1_795_000_000;
const LATER: i64 = NOW + 7_500;

fn cid(s: &str) -> ConnectionId {
    ConnectionId::new(s).unwrap()
}

fn eid(s: &str) -> EntityId {
    EntityId::new(s).unwrap()
}

fn connection(id: &str, expires_at: i64) -> ConnectionRecord {
    ConnectionRecord {
        connection_id: cid(id),
        user_id: Some(UserId::new("alice").unwrap()),
        source_ip: Some("203.0.113.7".into()),
        user_agent: Some("Mozilla/5.0".into()),
        connected_at_ms: NOW * 1000,
        expires_at,
        scope: Some(Scope {
            grants: vec![Grant {
                role: Role::Subscribe,
                entity: "artist:*".into(),
            }],
            expires_at: LATER,
        }),
    }
}

fn user_connection(id: &str, user: &str, expires_at: i64) -> ConnectionRecord {
    ConnectionRecord {
        user_id: Some(UserId::new(user).unwrap()),
        scope: None,
        ..connection(id, expires_at)
    }
}

async fn all_user_connections(store: &dyn ConnectionStore, user: &str, page: usize) -> Vec<String> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let p = store
            .user_connections(&UserId::new(user).unwrap(), NOW, after.as_ref(), page)
            .await
            .unwrap();
        assert!(p.connection_ids.len() <= page);
        all.extend(p.connection_ids.iter().map(|c| c.to_string()));
        match p.next {
            Some(next) => after = Some(next),
            None => return all,
        }
    }
}

fn subscription(id: &str, entity: &str, expires_at: i64) -> SubscriptionRecord {
    SubscriptionRecord {
        connection_id: cid(id),
        entity_id: eid(entity),
        subscribed_at_ms: NOW * 1000,
        expires_at,
    }
}

async fn all_subscribers(store: &dyn ConnectionStore, entity: &str, page: usize) -> Vec<String> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let p = store
            .subscribers(&eid(entity), NOW, after.as_ref(), page)
            .await
            .unwrap();
        assert!(p.connection_ids.len() <= page);
        all.extend(p.connection_ids.iter().map(|c| c.to_string()));
        match p.next {
            Some(next) => after = Some(next),
            None => return all,
        }
    }
}

async fn suite(store: &dyn ConnectionStore) {
    // Connections: stored, read back, expired ones ignored.
    store
        .put_connection(&connection("c1", LATER))
        .await
        .unwrap();
    store
        .put_connection(&connection("old", NOW - 1))
        .await
        .unwrap();
    assert_eq!(
        store.connection(&cid("c1"), NOW).await.unwrap(),
        Some(connection("c1", LATER))
    );
    assert_eq!(store.connection(&cid("old"), NOW).await.unwrap(), None);
    assert_eq!(store.connection(&cid("nobody"), NOW).await.unwrap(), None);

    // No orphans: subscribing without a live connection fails and stores nothing.
    for id in ["nobody", "old"] {
        let err = store
            .subscribe(&subscription(id, "artist:x", LATER), NOW, 10)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::ConnectionGone(ref c) if c.as_str() == id),
            "{err:?}"
        );
        assert!(store.subscriptions(&cid(id), NOW).await.unwrap().is_empty());
    }
    assert!(all_subscribers(store, "artist:x", 10).await.is_empty());

    // Subscribe, idempotently; the cap counts other entities only.
    store
        .subscribe(&subscription("c1", "artist:x", LATER), NOW, 2)
        .await
        .unwrap();
    store
        .subscribe(&subscription("c1", "artist:x", LATER), NOW, 2)
        .await
        .unwrap();
    store
        .subscribe(&subscription("c1", "venue:1", LATER), NOW, 2)
        .await
        .unwrap();
    let err = store
        .subscribe(&subscription("c1", "venue:2", LATER), NOW, 2)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::TooManySubscriptions { max: 2, .. }),
        "{err:?}"
    );
    store
        .subscribe(&subscription("c1", "venue:1", LATER), NOW, 2)
        .await
        .unwrap();
    assert_eq!(
        store.subscriptions(&cid("c1"), NOW).await.unwrap(),
        vec![eid("artist:x"), eid("venue:1")]
    );

    // Unsubscribe says whether there was something to remove.
    assert!(store
        .unsubscribe(&cid("c1"), &eid("venue:1"))
        .await
        .unwrap());
    assert!(!store
        .unsubscribe(&cid("c1"), &eid("venue:1"))
        .await
        .unwrap());
    assert_eq!(
        store.subscriptions(&cid("c1"), NOW).await.unwrap(),
        vec![eid("artist:x")]
    );

    // Subscribers page through the index in order and skip expired items.
    let mut expected = vec!["c1".to_string()];
    for i in 0..7 {
        let id = format!("p{i}");
        store.put_connection(&connection(&id, LATER)).await.unwrap();
        store
            .subscribe(&subscription(&id, "artist:x", LATER), NOW, 10)
            .await
            .unwrap();
        expected.push(id);
    }
    store
        .put_connection(&connection("stale", LATER))
        .await
        .unwrap();
    store
        .subscribe(&subscription("stale", "artist:x", NOW + 1), NOW, 10)
        .await
        .unwrap();
    expected.sort();
    let mut with_stale = expected.clone();
    with_stale.push("stale".into());
    with_stale.sort();
    for page in [1, 3, 100] {
        assert_eq!(
            all_subscribers(store, "artist:x", page).await,
            with_stale,
            "page size {page}"
        );
    }
    // Once its expiresAt has passed, the stale subscription is ignored.
    let live_later: Vec<String> = store
        .subscribers(&eid("artist:x"), NOW + 2, None, 100)
        .await
        .unwrap()
        .connection_ids
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(live_later, expected);

    // Disconnect deletes the connection and every subscription, past one batch.
    store
        .put_connection(&connection("many", LATER))
        .await
        .unwrap();
    for i in 0..30 {
        store
            .subscribe(&subscription("many", &format!("e:{i}"), LATER), NOW, 100)
            .await
            .unwrap();
    }
    store
        .subscribe(&subscription("many", "artist:x", LATER), NOW, 100)
        .await
        .unwrap();
    assert_eq!(store.delete_connection(&cid("many")).await.unwrap(), 32);
    assert_eq!(store.connection(&cid("many"), NOW).await.unwrap(), None);
    assert!(store
        .subscriptions(&cid("many"), NOW)
        .await
        .unwrap()
        .is_empty());
    assert!(all_subscribers(store, "e:7", 10).await.is_empty());
    assert!(!all_subscribers(store, "artist:x", 10)
        .await
        .contains(&"many".to_string()));
    assert_eq!(store.delete_connection(&cid("many")).await.unwrap(), 0);

    // A user's live connections, page by page, from the byUser index.
    for (id, user, expires) in [
        ("u-bob-1", "bob", LATER),
        ("u-bob-2", "bob", LATER),
        ("u-bob-old", "bob", NOW - 1),
        ("u-bob-3", "bob", LATER),
        ("u-carol-1", "carol", LATER),
    ] {
        store
            .put_connection(&user_connection(id, user, expires))
            .await
            .unwrap();
    }
    for page in [1, 2, 10] {
        assert_eq!(
            all_user_connections(store, "bob", page).await,
            vec!["u-bob-1", "u-bob-2", "u-bob-3"],
            "page size {page}"
        );
    }
    assert_eq!(
        all_user_connections(store, "carol", 10).await,
        vec!["u-carol-1"]
    );
    assert!(all_user_connections(store, "nobody", 10).await.is_empty());
    store.delete_connection(&cid("u-bob-2")).await.unwrap();
    assert_eq!(
        all_user_connections(store, "bob", 10).await,
        vec!["u-bob-1", "u-bob-3"]
    );
}

#[tokio::test]
async fn memory_store_follows_the_contract() {
    suite(&MemoryStore::new()).await;
}

#[tokio::test]
async fn dynamodb_store_follows_the_contract_against_a_real_server() {
    let moto = support::Moto::start();
    let store = DynamoDbStore::new(moto.dynamodb(), "pushgate-suite");
    store.create_table_if_missing().await.unwrap();
    store.create_table_if_missing().await.unwrap(); // idempotent
    suite(&store).await;
}

#[tokio::test]
async fn memory_store_purges_expired_items_like_dynamodb_ttl() {
    let store = MemoryStore::new();
    store
        .put_connection(&connection("c-old", NOW))
        .await
        .unwrap();
    store
        .put_connection(&connection("c-new", LATER))
        .await
        .unwrap();
    // Subscribed while live (at NOW - 1), expired by NOW.
    store
        .subscribe(&subscription("c-old", "e", NOW), NOW - 1, 10)
        .await
        .unwrap();
    store
        .subscribe(&subscription("c-new", "e", LATER), NOW, 10)
        .await
        .unwrap();
    assert_eq!(store.purge_expired(NOW), 2);
    let left: Vec<String> = store
        .all_connections()
        .iter()
        .map(|c| c.connection_id.as_str().to_owned())
        .collect();
    assert_eq!(left, vec!["c-new"]);
    assert_eq!(store.all_subscriptions().len(), 1);
    assert_eq!(all_subscribers(&store, "e", 10).await, vec!["c-new"]);
    assert_eq!(store.purge_expired(NOW), 0);
}
