//! One behavioural suite for every [`ConnectionStore`] adapter: the in-memory
//! store, and the DynamoDB store against a real DynamoDB-compatible server
//! (moto) started by the test itself.

// Test code: a panic is how a failed expectation is reported.
#![allow(clippy::unwrap_used)]

use pushgate_domain::auth::{Grant, Role, Scope};
use pushgate_domain::{
    ConnectionId, ConnectionRecord, DeliveryProgress, EntityId, HistoryEntry, Retention,
    StreamHead, StreamKey, SubscriptionRecord, UserId,
};
use pushgate_store::{ConnectionStore, DynamoDbStore, MemoryStore, StoreError};
use pushgate_testkit::Moto;

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
    let moto = Moto::start();
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

fn retention(max_entries: u64) -> Retention {
    Retention {
        ttl_secs: 3_600,
        max_entries,
    }
}

fn frame(head: &StreamHead) -> Result<String, pushgate_store::BoxError> {
    Ok(format!(
        r#"{{"seq":{},"epoch":"{}"}}"#,
        head.seq, head.epoch
    ))
}

async fn append(
    store: &dyn ConnectionStore,
    stream: &StreamKey,
    event: &str,
    now: i64,
) -> (u64, String, bool) {
    let a = store
        .append(stream, event, retention(5), now, "ep1", &frame)
        .await
        .unwrap();
    assert_eq!(a.payload, frame(&a.position).unwrap());
    (a.position.seq, a.position.epoch, a.fresh)
}

/// Sequence numbers, idempotent appends, the per-stream cap, expiry and
/// the separation of streams from the subscriber indexes.
async fn stream_suite(store: &dyn ConnectionStore) {
    let artist = StreamKey::Entity(eid("artist:x"));
    let alice = StreamKey::User(UserId::new("artist:x").unwrap());
    assert_eq!(store.stream_head(&artist, NOW).await.unwrap(), None);
    assert!(store.history(&artist, 0, 10, NOW).await.unwrap().is_empty());

    assert_eq!(
        append(store, &artist, "ev-1", NOW).await,
        (1, "ep1".into(), true)
    );
    assert_eq!(
        append(store, &artist, "ev-2", NOW).await,
        (2, "ep1".into(), true)
    );
    // A redelivered event keeps its place and nothing moves; it carries
    // what the last delivery left to do.
    assert_eq!(
        append(store, &artist, "ev-1", NOW).await,
        (1, "ep1".into(), false)
    );
    let progress = DeliveryProgress {
        retry: vec!["c-7".into()],
        resume_after: Some("c-9".into()),
        read_all: false,
    };
    store
        .save_progress(&artist, "ev-1", &progress)
        .await
        .unwrap();
    let again = store
        .append(&artist, "ev-1", retention(5), NOW, "ep1", &frame)
        .await
        .unwrap();
    assert_eq!((again.position.seq, again.fresh), (1, false));
    assert_eq!(again.progress, Some(progress));
    // Saving progress for an unknown event is harmless.
    store
        .save_progress(&artist, "never", &DeliveryProgress::default())
        .await
        .unwrap();
    assert_eq!(
        append(store, &artist, "ev-3", NOW).await,
        (3, "ep1".into(), true)
    );
    // A user's stream with the same id is another stream.
    assert_eq!(
        append(store, &alice, "ev-1", NOW).await,
        (1, "ep1".into(), true)
    );
    assert_eq!(
        store.stream_head(&artist, NOW).await.unwrap(),
        Some(StreamHead {
            seq: 3,
            epoch: "ep1".into()
        })
    );
    let seqs = |h: Vec<HistoryEntry>| h.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(store.history(&artist, 0, 10, NOW).await.unwrap()),
        vec![1, 2, 3]
    );
    assert_eq!(
        seqs(store.history(&artist, 1, 10, NOW).await.unwrap()),
        vec![2, 3]
    );
    assert_eq!(
        seqs(store.history(&artist, 0, 2, NOW).await.unwrap()),
        vec![1, 2]
    );
    assert!(store.history(&artist, 3, 10, NOW).await.unwrap().is_empty());
    let first = &store.history(&artist, 0, 1, NOW).await.unwrap()[0];
    assert_eq!(first.payload, r#"{"seq":1,"epoch":"ep1"}"#);

    // The cap (5) trims the oldest as new ones come.
    for i in 4..=8 {
        append(store, &artist, &format!("ev-{i}"), NOW).await;
    }
    assert_eq!(
        seqs(store.history(&artist, 0, 10, NOW).await.unwrap()),
        vec![4, 5, 6, 7, 8]
    );

    // Stream items never show up as subscribers.
    assert!(all_subscribers(store, "artist:x", 10).await.is_empty());
    assert!(all_user_connections(store, "artist:x", 10).await.is_empty());

    // After the TTL the stream is gone; the next event starts a new epoch.
    let expired = NOW + 3_601;
    assert_eq!(store.stream_head(&artist, expired).await.unwrap(), None);
    assert!(store
        .history(&artist, 0, 10, expired)
        .await
        .unwrap()
        .is_empty());
    let a = store
        .append(&artist, "ev-9", retention(5), expired, "ep2", &frame)
        .await
        .unwrap();
    assert_eq!(
        (a.position.seq, a.position.epoch.as_str(), a.fresh),
        (1, "ep2", true)
    );
}

/// Two writers appending to one stream at once (as two notifier
/// invocations do), each event sent twice (as SQS redelivers): every event
/// gets one seq, and the seqs are exactly 1..=n.
async fn concurrent_appends(store: std::sync::Arc<dyn ConnectionStore>) {
    let stream = StreamKey::Entity(eid("hot"));
    let n = 24;
    let tasks: Vec<_> = (0..2)
        .flat_map(|writer| (0..n).map(move |i| (writer, i)))
        .map(|(writer, i)| {
            let store = store.clone();
            let stream = stream.clone();
            tokio::spawn(async move {
                let a = store
                    .append(
                        &stream,
                        &format!("ev-{i}"),
                        retention(100),
                        NOW,
                        "ep",
                        &frame,
                    )
                    .await
                    .unwrap();
                (writer, i, a.position.seq)
            })
        })
        .collect();
    let mut given = std::collections::HashMap::new();
    for task in tasks {
        let (_, i, seq) = task.await.unwrap();
        let previous = given.insert(i, seq);
        assert!(
            previous.is_none_or(|p| p == seq),
            "event {i} got {previous:?} and {seq}"
        );
    }
    let mut seqs: Vec<u64> = given.values().copied().collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=n).collect::<Vec<u64>>(), "no duplicate, no hole");
    let history = store.history(&stream, 0, 100, NOW).await.unwrap();
    assert_eq!(history.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs);
}

#[tokio::test]
async fn memory_store_keeps_streams() {
    stream_suite(&MemoryStore::new()).await;
    concurrent_appends(std::sync::Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn dynamodb_store_keeps_streams_against_a_real_server() {
    // Serial: moto's threaded server lets two transactions guarded by the
    // same condition both succeed, which DynamoDB never does (see
    // tests/moto/serial_server.py); the writers below stay concurrent.
    let moto = Moto::start_serial();
    let store = DynamoDbStore::new(moto.dynamodb(), "pushgate-streams");
    store.create_table_if_missing().await.unwrap();
    stream_suite(&store).await;
    concurrent_appends(std::sync::Arc::new(store)).await;
}

/// Subscribes racing on one connection (a page subscribing to everything
/// on load) never take it past the cap.
async fn concurrent_subscribes_hold_the_cap(store: std::sync::Arc<dyn ConnectionStore>) {
    store
        .put_connection(&connection("c-page", LATER))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                loop {
                    let sub = subscription("c-page", &format!("artist:{i}"), LATER);
                    match store.subscribe(&sub, NOW, 3).await {
                        // The adapter gave up on the race: the caller retries.
                        Err(StoreError::TransactionConflict) => continue,
                        other => return other,
                    }
                }
            })
        })
        .collect();
    let mut stored = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => stored += 1,
            Err(StoreError::TooManySubscriptions { max: 3, .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(stored, 3);
    assert_eq!(
        store
            .subscriptions(&cid("c-page"), NOW)
            .await
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn memory_store_holds_the_cap_under_concurrent_subscribes() {
    concurrent_subscribes_hold_the_cap(std::sync::Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn dynamodb_store_holds_the_cap_under_concurrent_subscribes() {
    // Serial moto: see dynamodb_store_keeps_streams_against_a_real_server.
    let moto = Moto::start_serial();
    let store = DynamoDbStore::new(moto.dynamodb(), "pushgate-cap");
    store.create_table_if_missing().await.unwrap();
    concurrent_subscribes_hold_the_cap(std::sync::Arc::new(store)).await;
}

/// The ranges of a split fan-out together read every subscriber once.
async fn ranges_partition_the_subscribers(store: &dyn ConnectionStore) {
    let ids: Vec<String> = (0..60)
        .map(|i| {
            let alphabet = "+-/0123456789=ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";
            let c = alphabet.as_bytes()[(i * 7) % alphabet.len()] as char;
            format!("{c}conn{i:03}=")
        })
        .collect();
    for id in &ids {
        store.put_connection(&connection(id, LATER)).await.unwrap();
        store
            .subscribe(&subscription(id, "hot", LATER), NOW, 10)
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    for range in pushgate_domain::IdRange::split(7) {
        let mut after: Option<ConnectionId> = None;
        loop {
            let page = store
                .subscriber_range(&eid("hot"), &range, NOW, after.as_ref(), 4)
                .await
                .unwrap();
            for c in &page.connection_ids {
                assert!(range.contains(c.as_str()), "{c} outside {range:?}");
                seen.push(c.to_string());
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    seen.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(seen, want);
}

#[tokio::test]
async fn memory_store_reads_subscribers_by_range() {
    ranges_partition_the_subscribers(&MemoryStore::new()).await;
}

#[tokio::test]
async fn dynamodb_store_reads_subscribers_by_range() {
    let moto = Moto::start();
    let store = DynamoDbStore::new(moto.dynamodb(), "pushgate-ranges");
    store.create_table_if_missing().await.unwrap();
    ranges_partition_the_subscribers(&store).await;
}

/// `$disconnect` racing `subscribe` (API Gateway runs them at once when a
/// client closes right after subscribing) leaves no orphan subscription.
async fn disconnect_racing_subscribe_leaves_nothing(store: std::sync::Arc<dyn ConnectionStore>) {
    for round in 0..15 {
        let id = format!("race-{round}");
        store.put_connection(&connection(&id, LATER)).await.unwrap();
        let subscribing = {
            let store = store.clone();
            let id = id.clone();
            tokio::spawn(async move {
                for e in 0..3 {
                    let sub = subscription(&id, &format!("artist:{e}"), LATER);
                    // Either stored or refused (gone); never an error.
                    match store.subscribe(&sub, NOW, 10).await {
                        Ok(()) | Err(StoreError::ConnectionGone(_)) => {}
                        Err(StoreError::TransactionConflict) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        };
        let disconnecting = {
            let store = store.clone();
            let id = id.clone();
            tokio::spawn(async move { store.delete_connection(&cid(&id)).await.unwrap() })
        };
        subscribing.await.unwrap();
        disconnecting.await.unwrap();
        if store.connection(&cid(&id), NOW).await.unwrap().is_none() {
            assert!(
                store
                    .subscriptions(&cid(&id), NOW)
                    .await
                    .unwrap()
                    .is_empty(),
                "round {round}: an orphan subscription"
            );
        }
    }
}

#[tokio::test]
async fn memory_store_leaves_no_orphan_when_disconnect_races_subscribe() {
    disconnect_racing_subscribe_leaves_nothing(std::sync::Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn dynamodb_store_leaves_no_orphan_when_disconnect_races_subscribe() {
    let moto = Moto::start_serial();
    let store = DynamoDbStore::new(moto.dynamodb(), "pushgate-race");
    store.create_table_if_missing().await.unwrap();
    disconnect_racing_subscribe_leaves_nothing(std::sync::Arc::new(store)).await;
}
