//! Every handler run on every sample event in `events/`, plus the bad inputs
//! and PostToConnection answers (410, 413, 403, 429, 500) the notifier must
//! survive, asserting what was stored, deleted, pushed and reported failed.

// Test code: a panic is how a failed expectation is reported.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use aws_lambda_events::sqs::SqsEvent;
use pushgate_domain::record::{ConnectionRecord, SubscriptionRecord};
use pushgate_functions::{
    connect, default_route, disconnect, notifier, subscribe, unsubscribe, Clock,
};
use pushgate_store::ConnectionStore;
use serde_json::{json, Value};
use support::*;

#[tokio::test]
async fn connect_sample_stores_the_connection_and_picks_the_subprotocol() {
    let (store, deps) = setup();
    let response = connect::handle(&deps, sample("connect.json"))
        .await
        .unwrap();
    assert_eq!(response.status_code, 200);
    assert_eq!(
        response.headers.get("sec-websocket-protocol").unwrap(),
        "websocket"
    );
    let stored = store.all_connections();
    assert_eq!(
        stored,
        vec![ConnectionRecord {
            connection_id: cid(SAMPLE_CONNECTION),
            user_id: None,
            source_ip: Some("203.0.113.42".into()),
            user_agent: stored[0].user_agent.clone(),
            connected_at_ms: NOW_MS,
            expires_at: NOW_MS / 1000 + 7500,
            scope: None,
        }]
    );
    assert!(stored[0]
        .user_agent
        .as_deref()
        .unwrap()
        .starts_with("Mozilla/5.0"));
}

#[tokio::test]
async fn connect_never_echoes_an_unknown_subprotocol() {
    let (store, deps) = setup();
    let mut event: ApiGatewayWebsocketProxyRequest = sample("connect.json");
    event.headers.insert(
        "sec-websocket-protocol",
        "graphql-ws, mqtt".parse().unwrap(),
    );
    let response = connect::handle(&deps, event).await.unwrap();
    assert_eq!(response.status_code, 400);
    assert!(response.headers.get("sec-websocket-protocol").is_none());
    assert_eq!(body(&response)["code"], "unsupported_subprotocol");
    assert!(
        store.all_connections().is_empty(),
        "a refused handshake stores nothing"
    );

    // Offered among others, the known one is picked; none offered, none returned.
    let mut event: ApiGatewayWebsocketProxyRequest = sample("connect.json");
    event
        .headers
        .insert("sec-websocket-protocol", "mqtt, websocket".parse().unwrap());
    let response = connect::handle(&deps, event).await.unwrap();
    assert_eq!(
        response.headers.get("sec-websocket-protocol").unwrap(),
        "websocket"
    );
    let mut event: ApiGatewayWebsocketProxyRequest = sample("connect.json");
    event.headers.remove("sec-websocket-protocol");
    let response = connect::handle(&deps, event).await.unwrap();
    assert_eq!(response.status_code, 200);
    assert!(response.headers.get("sec-websocket-protocol").is_none());
}

#[tokio::test]
async fn subscribe_and_unsubscribe_samples_reply_as_two_way_routes() {
    let (store, deps) = setup();
    connect::handle(&deps, sample("connect.json"))
        .await
        .unwrap();

    let response = subscribe::handle(&subscribing(&deps), sample("subscribe.json"))
        .await
        .unwrap();
    assert_eq!(
        body(&response),
        json!({"type": "subscribed", "entityId": "artist:ed-sheeran", "seq": 0})
    );
    assert_eq!(
        store.all_subscriptions(),
        vec![SubscriptionRecord {
            connection_id: cid(SAMPLE_CONNECTION),
            entity_id: eid("artist:ed-sheeran"),
            subscribed_at_ms: NOW_MS,
            expires_at: NOW_MS / 1000 + 7500,
        }]
    );

    let response = unsubscribe::handle(&deps, sample("unsubscribe.json"))
        .await
        .unwrap();
    assert_eq!(
        body(&response),
        json!({"type": "unsubscribed", "entityId": "artist:ed-sheeran"})
    );
    assert!(store.all_subscriptions().is_empty());

    let response = unsubscribe::handle(&deps, sample("unsubscribe.json"))
        .await
        .unwrap();
    assert_eq!(response.status_code, 200);
    assert_eq!(body(&response)["code"], "not_subscribed");
    assert_eq!(body(&response)["entityId"], "artist:ed-sheeran");
}

#[tokio::test]
async fn subscribe_without_a_connection_leaves_no_orphan() {
    let (store, deps) = setup();
    let response = subscribe::handle(&subscribing(&deps), sample("subscribe.json"))
        .await
        .unwrap();
    assert_eq!(body(&response)["code"], "connection_gone");
    assert!(store.all_subscriptions().is_empty());
}

#[tokio::test]
async fn bad_frames_get_clear_errors_and_store_nothing() {
    let (store, deps) = setup();
    connected(&deps, "c1").await;
    let long = format!(
        r#"{{"action":"subscribe","entityId":"{}"}}"#,
        "x".repeat(300)
    );
    let deep = format!(
        r#"{{"action":"subscribe","x":{}{}}}"#,
        "[".repeat(64),
        "]".repeat(64)
    );
    let cases = [
        ("", "empty_frame"),
        ("hello", "invalid_json"),
        ("[1]", "invalid_frame"),
        (r#"{"action":"subscribe"}"#, "missing_entity_id"),
        (
            r#"{"action":"subscribe","entityId":""}"#,
            "invalid_entity_id",
        ),
        (long.as_str(), "invalid_entity_id"),
        (deep.as_str(), "too_deeply_nested"),
        (
            r#"{"action":"unsubscribe","entityId":"a"}"#,
            "unknown_action",
        ),
    ];
    for (frame, code) in cases {
        let response = subscribe::handle(&subscribing(&deps), message("subscribe", "c1", frame))
            .await
            .unwrap();
        assert_eq!(response.status_code, 200);
        let reply = body(&response);
        assert_eq!(reply["type"], "error", "{frame:?}");
        assert_eq!(reply["code"], code, "{frame:?}");
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let huge = format!(
        r#"{{"action":"subscribe","entityId":"a","pad":"{}"}}"#,
        "x".repeat(140_000)
    );
    let response = subscribe::handle(&subscribing(&deps), message("subscribe", "c1", &huge))
        .await
        .unwrap();
    assert_eq!(body(&response)["code"], "message_too_large");
    assert!(store.all_subscriptions().is_empty());
    assert_eq!(store.all_connections().len(), 1);
}

#[tokio::test]
async fn subscriptions_are_capped_per_connection() {
    let (store, mut deps) = setup();
    deps.config.max_subscriptions = 2;
    connected(&deps, "c1").await;
    subscribed(&deps, "c1", "a").await;
    subscribed(&deps, "c1", "b").await;
    subscribed(&deps, "c1", "b").await;
    let response = subscribe::handle(
        &subscribing(&deps),
        message(
            "subscribe",
            "c1",
            r#"{"action":"subscribe","entityId":"c"}"#,
        ),
    )
    .await
    .unwrap();
    assert_eq!(body(&response)["code"], "too_many_subscriptions");
    assert_eq!(body(&response)["entityId"], "c");
    assert_eq!(store.all_subscriptions().len(), 2);
}

#[tokio::test]
async fn default_samples_name_the_accepted_actions() {
    let response = default_route::handle(sample("default.json")).await.unwrap();
    let reply = body(&response);
    assert_eq!(reply["type"], "error");
    assert_eq!(reply["code"], "unknown_action");
    let text = reply["message"].as_str().unwrap();
    assert!(
        text.contains("subscribe") && text.contains("unsubscribe"),
        "{text}"
    );

    let response = default_route::handle(sample("default-not-json.json"))
        .await
        .unwrap();
    assert_eq!(body(&response)["code"], "invalid_json");
    let response = default_route::handle(message("$default", "c1", "{}"))
        .await
        .unwrap();
    assert_eq!(body(&response)["code"], "missing_action");
}

#[tokio::test]
async fn disconnect_sample_removes_every_record() {
    let (store, deps) = setup();
    connected(&deps, SAMPLE_CONNECTION).await;
    connected(&deps, "other").await;
    for i in 0..30 {
        subscribed(&deps, SAMPLE_CONNECTION, &format!("e:{i}")).await;
    }
    subscribed(&deps, "other", "e:1").await;
    let response = disconnect::handle(&deps, sample("disconnect.json"))
        .await
        .unwrap();
    assert_eq!(response.status_code, 200);
    assert_eq!(
        store
            .all_connections()
            .iter()
            .map(|c| c.connection_id.to_string())
            .collect::<Vec<_>>(),
        vec!["other"]
    );
    assert_eq!(store.all_subscriptions().len(), 1);
    // A second $disconnect (API Gateway may retry) is harmless.
    disconnect::handle(&deps, sample("disconnect.json"))
        .await
        .unwrap();
}

#[tokio::test]
async fn handlers_refuse_events_without_a_connection_id() {
    let (_, deps) = setup();
    let mut event: ApiGatewayWebsocketProxyRequest = sample("connect.json");
    event.request_context.connection_id = None;
    let err = connect::handle(&deps, event).await.unwrap_err();
    assert!(matches!(
        err,
        pushgate_functions::FunctionError::MissingConnectionId
    ));
}

#[tokio::test]
async fn notifier_sample_delivers_removes_gone_and_reports_the_bad_record() {
    let (store, deps) = setup();
    for (c, e) in [
        ("c1", "artist:ed-sheeran"),
        ("c2", "artist:ed-sheeran"),
        ("c3", "venue:o2-arena"),
        ("c4", "venue:o2-arena"),
    ] {
        connected(&deps, c).await;
        subscribed(&deps, c, e).await;
    }
    subscribed(&deps, "c3", "other").await;
    let pusher = Arc::new(ScriptedPusher::default());
    pusher.always("c3", 410);
    let event: SqsEvent = sample("notifier.json");
    let bad_id = event.records[2].message_id.clone().unwrap();
    let first_event_id: Value =
        serde_json::from_str::<Value>(event.records[0].body.as_deref().unwrap()).unwrap()["id"]
            .clone();

    // A minute later: past the time a connection may still be in $connect.
    let mut later = deps.clone();
    later.clock = Clock::fixed(NOW_MS + 60_000);
    let response = notifier::handle(
        &notifier_deps(&later, pusher.clone()),
        event,
        support::far_deadline(),
    )
    .await;

    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(
        failed,
        vec![bad_id],
        "only the record that is not JSON fails"
    );
    assert_eq!(pusher.delivered_to(), vec!["c1", "c2", "c4"]);
    let delivered = pusher.delivered.lock().unwrap().clone();
    let (_, to_c1) = delivered.iter().find(|(c, _)| c == "c1").unwrap();
    assert_eq!(
        to_c1,
        &json!({"type": "notification", "id": first_event_id, "entityId": "artist:ed-sheeran",
            "seq": 1, "epoch": to_c1["epoch"], "time": to_c1["time"], "data": {"tickets": "on sale"}})
    );
    // The gone connection and all its subscriptions are removed.
    assert!(store
        .all_connections()
        .iter()
        .all(|c| c.connection_id.as_str() != "c3"));
    assert!(store
        .all_subscriptions()
        .iter()
        .all(|s| s.connection_id.as_str() != "c3"));
    assert_eq!(store.all_connections().len(), 3);
}

#[tokio::test]
async fn notifier_retries_throttling_and_5xx_then_reports_the_record() {
    let (store, deps) = setup();
    for c in ["ok", "flaky", "down", "big"] {
        connected(&deps, c).await;
        subscribed(&deps, c, "e").await;
    }
    let pusher = Arc::new(ScriptedPusher::default());
    pusher.answer("flaky", &[429, 500, 503]);
    pusher.always("down", 500);
    pusher.always("big", 413);
    let nd = notifier_deps(&deps, pusher.clone());

    let response = notifier::handle(
        &nd,
        sqs_event(&[("m1", eventbridge("ev-1", "e", json!(1)))]),
        support::far_deadline(),
    )
    .await;
    assert_eq!(
        response.batch_item_failures.len(),
        1,
        "a push still failing fails the record"
    );
    assert_eq!(response.batch_item_failures[0].item_identifier, "m1");
    assert_eq!(
        pusher.delivered_to(),
        vec!["flaky", "ok"],
        "429 and 5xx were retried"
    );
    // 4 attempts for flaky (3 failures) and down, 1 each for ok and big.
    assert_eq!(pusher.attempts.load(Ordering::SeqCst), 4 + 4 + 1 + 1);
    assert_eq!(
        store.all_connections().len(),
        4,
        "413/5xx never delete a connection"
    );

    // Without the failing connection, 413 alone does not fail the record.
    pusher.always.lock().unwrap().remove("down");
    let response = notifier::handle(
        &nd,
        sqs_event(&[("m2", eventbridge("ev-2", "e", json!(2)))]),
        support::far_deadline(),
    )
    .await;
    assert!(response.batch_item_failures.is_empty());
}

#[tokio::test]
async fn notifier_reports_every_undeliverable_record() {
    let (_, deps) = setup();
    connected(&deps, "c1").await;
    subscribed(&deps, "c1", "e").await;
    let pusher = Arc::new(ScriptedPusher::default());
    let too_big = eventbridge("big", "e", json!("x".repeat(130 * 1024)));
    let records = [
        ("not-json", "not json".to_string()),
        ("no-detail", json!({"id": "1"}).to_string()),
        (
            "no-entity",
            json!({"id": "1", "detail": {"message": 1}}).to_string(),
        ),
        (
            "bad-entity",
            json!({"id": "1", "detail": {"entityId": "", "message": 1}}).to_string(),
        ),
        (
            "no-message",
            json!({"id": "1", "detail": {"entityId": "e"}}).to_string(),
        ),
        ("too-big", too_big),
        ("good", eventbridge("ok", "e", json!({"n": 1}))),
    ];
    let response = notifier::handle(
        &notifier_deps(&deps, pusher.clone()),
        sqs_event(&records),
        support::far_deadline(),
    )
    .await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        vec![
            "not-json",
            "no-detail",
            "no-entity",
            "bad-entity",
            "no-message",
            "too-big"
        ]
    );
    assert_eq!(pusher.delivered_to(), vec!["c1"]);
}

#[tokio::test]
async fn notifier_fans_out_across_pages_with_bounded_concurrency() {
    let (store, mut deps) = setup();
    deps.config.push_concurrency = 16;
    let n = notifier::PAGE_SIZE * 2 + 17;
    for i in 0..n {
        let id = format!("c{i:05}");
        store
            .put_connection(&ConnectionRecord {
                connection_id: cid(&id),
                user_id: None,
                source_ip: None,
                user_agent: None,
                connected_at_ms: NOW_MS,
                expires_at: NOW_MS / 1000 + 60,
                scope: None,
            })
            .await
            .unwrap();
        store
            .subscribe(
                &SubscriptionRecord {
                    connection_id: cid(&id),
                    entity_id: eid("big"),
                    subscribed_at_ms: NOW_MS,
                    expires_at: NOW_MS / 1000 + 60,
                },
                NOW_MS / 1000,
                10,
            )
            .await
            .unwrap();
    }
    let pusher = Arc::new(ScriptedPusher {
        delay: Duration::from_millis(1),
        ..Default::default()
    });
    let response = notifier::handle(
        &notifier_deps(&deps, pusher.clone()),
        sqs_event(&[("m", eventbridge("ev", "big", json!({})))]),
        support::far_deadline(),
    )
    .await;
    assert!(response.batch_item_failures.is_empty());
    let to = pusher.delivered_to();
    assert_eq!(to.len(), n);
    to.windows(2)
        .for_each(|w| assert_ne!(w[0], w[1], "each subscriber once"));
    let max = pusher.max_in_flight.load(Ordering::SeqCst);
    assert!(max > 1 && max <= 16, "in flight at once: {max}");
}

#[tokio::test]
async fn a_410_from_a_connection_still_in_connect_does_not_delete_it() {
    let (store, deps) = setup();
    // A user's connection, its record written at NOW_MS by $connect; a
    // user-targeted event comes 5 s later, while API Gateway may still be
    // waiting for $connect and answers 410.
    let mut event: ApiGatewayWebsocketProxyRequest = sample("connect.json");
    event.request_context.connection_id = Some("young".into());
    event
        .request_context
        .authorizer
        .fields
        .insert("principalId".into(), json!("alice"));
    assert_eq!(
        connect::handle(&deps, event).await.unwrap().status_code,
        200
    );
    let pusher = Arc::new(ScriptedPusher::default());
    pusher.always("young", 410);
    let user_event = |id: &str| {
        json!({"version":"0","id":id,"detail-type":"Entity Updated","source":"pushgate",
            "time":"2026-11-22T10:00:00Z","detail":{"userId":"alice","message":1}})
        .to_string()
    };
    let mut soon = deps.clone();
    soon.clock = Clock::fixed(NOW_MS + 5_000);
    let response = notifier::handle(
        &notifier_deps(&soon, pusher.clone()),
        sqs_event(&[("m1", user_event("ev-1"))]),
        support::far_deadline(),
    )
    .await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        pusher.attempts.load(Ordering::SeqCst),
        1,
        "it was pushed to"
    );
    assert_eq!(store.all_connections().len(), 1, "kept");
    // The same answer a minute after it connected: gone for good, deleted.
    let mut later = deps.clone();
    later.clock = Clock::fixed(NOW_MS + 60_000);
    notifier::handle(
        &notifier_deps(&later, pusher.clone()),
        sqs_event(&[("m2", user_event("ev-2"))]),
        support::far_deadline(),
    )
    .await;
    assert!(store.all_connections().is_empty());
}
