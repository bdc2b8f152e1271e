//! Trust: every bad token at `$connect` with its status and code, scopes on
//! `subscribe` and `publish`, tokens expiring on open connections, and
//! notifications to every connection of a user. After each refusal the
//! store holds exactly what it should.

// Test code: a panic is how a failed expectation is reported.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::http::HeaderValue;
use pushgate_domain::auth::{mint, Claims, Grant, Role};
use pushgate_domain::{AuthMode, Secret, UserId};
use pushgate_functions::{connect, notifier, publish, subscribe, Clock, Deps};
use pushgate_store::MemoryStore;
use serde_json::{json, Value};
use support::*;

const NOW: i64 = NOW_MS / 1000;

fn token(sub: &str, exp: i64, grants: &[(Role, &str)]) -> String {
    mint(
        KEY.as_bytes(),
        &Claims {
            sub: sub.into(),
            exp,
            grants: grants
                .iter()
                .map(|(role, entity)| Grant {
                    role: *role,
                    entity: (*entity).into(),
                })
                .collect(),
        },
    )
    .unwrap()
}

fn token_mode() -> (Arc<MemoryStore>, Deps) {
    let (store, mut deps) = setup();
    deps.config.auth_mode = AuthMode::Token;
    (store, deps)
}

fn connect_event(
    id: &str,
    query_token: Option<&str>,
    protocols: Option<&str>,
) -> ApiGatewayWebsocketProxyRequest {
    let mut event: ApiGatewayWebsocketProxyRequest = sample("connect.json");
    event.request_context.connection_id = Some(id.into());
    event.headers.remove("sec-websocket-protocol");
    if let Some(p) = protocols {
        event
            .headers
            .insert("sec-websocket-protocol", HeaderValue::from_str(p).unwrap());
    }
    if let Some(t) = query_token {
        let mut q = std::collections::HashMap::new();
        q.insert("token".to_string(), t.to_string());
        event.query_string_parameters = q.into();
    }
    event
}

async fn connect_with(deps: &Deps, id: &str, t: &str) -> ApiGatewayProxyResponse {
    connect::handle(deps, connect_event(id, Some(t), None))
        .await
        .unwrap()
}

async fn send(deps: &Deps, route: &str, id: &str, frame: Value) -> Value {
    let event = message(route, id, &frame.to_string());
    let response = match route {
        "subscribe" => subscribe::handle(deps, event).await.unwrap(),
        _ => unreachable!(),
    };
    body(&response)
}

#[tokio::test]
async fn every_bad_token_fails_the_handshake_and_stores_nothing() {
    let (store, deps) = token_mode();
    let good = [(Role::Subscribe, "artist:*")];
    let wrong_key = mint(
        b"some-other-key-some-other-key-000",
        &Claims {
            sub: "alice".into(),
            exp: NOW + 600,
            grants: vec![],
        },
    )
    .unwrap();
    let header_none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
    let alg_none = format!(
        "{header_none}.{}.",
        token("alice", NOW + 600, &good).split('.').nth(1).unwrap()
    );
    // (name, query token, offered subprotocols, status, code)
    type Case = (
        &'static str,
        Option<String>,
        Option<String>,
        i64,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        ("no token", None, None, 401, "unauthorized"),
        (
            "garbage",
            Some("not-a-jwt".into()),
            None,
            401,
            "unauthorized",
        ),
        (
            "expired",
            Some(token("alice", NOW - 3600, &good)),
            None,
            401,
            "token_expired",
        ),
        ("wrong key", Some(wrong_key), None, 401, "unauthorized"),
        ("alg none", Some(alg_none), None, 401, "unauthorized"),
        (
            "no grants",
            Some(token("alice", NOW + 600, &[])),
            None,
            403,
            "forbidden",
        ),
        (
            "bad grant",
            Some(token("alice", NOW + 600, &[(Role::Subscribe, "a*b*")])),
            None,
            403,
            "forbidden",
        ),
        (
            "oversized",
            Some("x".repeat(5000)),
            None,
            401,
            "unauthorized",
        ),
        (
            "expired in subprotocol",
            None,
            Some(format!(
                "pushgate.v1, {}",
                token("alice", NOW - 3600, &good)
            )),
            401,
            "token_expired",
        ),
        (
            "subprotocol without token, token mode",
            None,
            Some("pushgate.v1".into()),
            401,
            "unauthorized",
        ),
    ];
    for (name, query, protocols, status, code) in cases {
        let event = connect_event("c1", query.as_deref(), protocols.as_deref());
        let response = connect::handle(&deps, event).await.unwrap();
        assert_eq!(response.status_code, status, "{name}");
        assert_eq!(body(&response)["code"], code, "{name}");
        assert!(
            response.headers.get("sec-websocket-protocol").is_none(),
            "{name}"
        );
        if let Some(t) = query.as_deref().or(protocols.as_deref()) {
            let text = format!("{:?}", response.body);
            assert!(
                t.len() < 20 || !text.contains(t),
                "{name}: the token is never echoed"
            );
        }
        assert!(store.all_connections().is_empty(), "{name}: nothing stored");
    }
}

#[tokio::test]
async fn a_token_is_accepted_from_the_query_or_the_subprotocol_and_never_echoed() {
    let (store, deps) = token_mode();
    let t = token("alice", NOW + 600, &[(Role::Subscribe, "artist:*")]);
    let response = connect_with(&deps, "q1", &t).await;
    assert_eq!(response.status_code, 200);

    let offered = format!("pushgate.v1, {t}");
    let response = connect::handle(&deps, connect_event("p1", None, Some(&offered)))
        .await
        .unwrap();
    assert_eq!(response.status_code, 200);
    assert_eq!(
        response.headers.get("sec-websocket-protocol").unwrap(),
        "pushgate.v1"
    );

    let users: Vec<_> = store
        .all_connections()
        .iter()
        .map(|c| {
            (
                c.connection_id.to_string(),
                c.user_id.clone().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        users,
        vec![("p1".into(), "alice".into()), ("q1".into(), "alice".into())]
    );
    let scope = store.all_connections()[0].scope.clone().unwrap();
    assert_eq!(scope.expires_at, NOW + 600);
}

#[tokio::test]
async fn tokens_are_refused_where_no_signing_key_is_configured() {
    let store = Arc::new(MemoryStore::new());
    let mut config = pushgate_domain::Config::new("t");
    config.auth_mode = AuthMode::Anonymous;
    let mut deps = Deps::new(store.clone(), config);
    deps.clock = Clock::fixed(NOW_MS);
    let response = connect_with(&deps, "c1", "a.b.c").await;
    assert_eq!(response.status_code, 401);
    assert!(store.all_connections().is_empty());
    // Without a token, anonymous mode lets the connection in.
    let response = connect::handle(&deps, connect_event("c2", None, None))
        .await
        .unwrap();
    assert_eq!(response.status_code, 200);
    assert_eq!(store.all_connections().len(), 1);
    let _ = Secret::new("unused");
}

#[tokio::test]
async fn grants_limit_what_a_connection_may_subscribe_to() {
    let (store, deps) = token_mode();
    connect_with(
        &deps,
        "c1",
        &token("alice", NOW + 600, &[(Role::Subscribe, "artist:*")]),
    )
    .await;
    let ok = send(
        &deps,
        "subscribe",
        "c1",
        json!({"action":"subscribe","entityId":"artist:ed-sheeran"}),
    )
    .await;
    assert_eq!(ok["type"], "subscribed");
    let denied = send(
        &deps,
        "subscribe",
        "c1",
        json!({"action":"subscribe","entityId":"venue:1"}),
    )
    .await;
    assert_eq!(denied["code"], "forbidden");
    let publish_only_token = token("bob", NOW + 600, &[(Role::Publish, "venue:1")]);
    connect_with(&deps, "c2", &publish_only_token).await;
    let denied = send(
        &deps,
        "subscribe",
        "c2",
        json!({"action":"subscribe","entityId":"venue:1"}),
    )
    .await;
    assert_eq!(denied["code"], "forbidden");
    assert_eq!(store.all_subscriptions().len(), 1);
}

#[tokio::test]
async fn a_token_that_expires_on_an_open_connection_stops_subscribing() {
    let (store, mut deps) = token_mode();
    connect_with(
        &deps,
        "c1",
        &token("alice", NOW + 60, &[(Role::Subscribe, "*")]),
    )
    .await;
    let ok = send(
        &deps,
        "subscribe",
        "c1",
        json!({"action":"subscribe","entityId":"a"}),
    )
    .await;
    assert_eq!(ok["type"], "subscribed");
    deps.clock = Clock::fixed(NOW_MS + 120_000);
    let late = send(
        &deps,
        "subscribe",
        "c1",
        json!({"action":"subscribe","entityId":"b"}),
    )
    .await;
    assert_eq!(late["code"], "token_expired");
    assert_eq!(store.all_subscriptions().len(), 1);
}

#[tokio::test]
async fn publish_needs_a_publish_grant_and_reaches_subscribers() {
    let (_, deps) = token_mode();
    let pusher = Arc::new(ScriptedPusher::default());
    let nd = notifier_deps(&deps, pusher.clone());
    connect_with(
        &deps,
        "sub",
        &token("s", NOW + 600, &[(Role::Subscribe, "venue:*")]),
    )
    .await;
    send(
        &deps,
        "subscribe",
        "sub",
        json!({"action":"subscribe","entityId":"venue:1"}),
    )
    .await;
    connect_with(
        &deps,
        "pub",
        &token("p", NOW + 600, &[(Role::SubscribePublish, "venue:1")]),
    )
    .await;
    connect_with(
        &deps,
        "ro",
        &token("r", NOW + 600, &[(Role::Subscribe, "venue:*")]),
    )
    .await;

    let frame =
        json!({"action":"publish","entityId":"venue:1","data":{"doors":"open"}}).to_string();
    let denied = publish::handle(&nd, message("publish", "ro", &frame))
        .await
        .unwrap();
    assert_eq!(body(&denied)["code"], "forbidden");
    assert!(
        pusher.delivered_to().is_empty(),
        "a refused publish reaches nobody"
    );

    let other = json!({"action":"publish","entityId":"venue:2","data":1}).to_string();
    let denied = publish::handle(&nd, message("publish", "pub", &other))
        .await
        .unwrap();
    assert_eq!(body(&denied)["code"], "forbidden");

    let reply = body(
        &publish::handle(&nd, message("publish", "pub", &frame))
            .await
            .unwrap(),
    );
    assert_eq!(reply["type"], "published");
    assert_eq!(reply["delivered"], 1);
    assert_eq!(pusher.delivered_to(), vec!["sub"]);
    let (_, got) = pusher.delivered.lock().unwrap()[0].clone();
    assert_eq!(got["type"], "notification");
    assert_eq!(got["entityId"], "venue:1");
    assert_eq!(got["id"], reply["id"]);
    assert_eq!(got["data"], json!({"doors": "open"}));
    assert_eq!(got["time"], "2026-11-22T10:00:00Z");
}

#[tokio::test]
async fn a_user_targeted_notification_reaches_every_tab_of_that_user_only() {
    let (_, deps) = token_mode();
    let grants = [(Role::Subscribe, "*")];
    for (id, user) in [
        ("a1", "alice"),
        ("a2", "alice"),
        ("a3", "alice"),
        ("b1", "bob"),
    ] {
        let response = connect_with(&deps, id, &token(user, NOW + 600, &grants)).await;
        assert_eq!(response.status_code, 200);
    }
    // a1 also subscribes to the entity: it must still get the event once.
    send(
        &deps,
        "subscribe",
        "a1",
        json!({"action":"subscribe","entityId":"order:7"}),
    )
    .await;
    send(
        &deps,
        "subscribe",
        "b1",
        json!({"action":"subscribe","entityId":"other"}),
    )
    .await;
    let pusher = Arc::new(ScriptedPusher::default());
    let event = json!({"version":"0","id":"ev-user","detail-type":"Entity Updated","source":"pushgate",
        "time":"2026-11-22T10:00:00Z","detail":{"userId":"alice","entityId":"order:7","message":{"status":"shipped"}}});
    let response = notifier::handle(
        &notifier_deps(&deps, pusher.clone()),
        sqs_event(&[("m1", event.to_string())]), support::far_deadline())
    .await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(pusher.delivered_to(), vec!["a1", "a2", "a3"]);
    let (_, got) = pusher.delivered.lock().unwrap()[0].clone();
    assert_eq!(got["userId"], "alice");
    assert_eq!(got["id"], "ev-user");
    let _ = UserId::new("alice").unwrap();
}

#[tokio::test]
async fn publish_sample_fans_out_for_a_connection_with_a_publish_grant() {
    let (store, deps) = token_mode();
    let pusher = Arc::new(ScriptedPusher::default());
    let nd = notifier_deps(&deps, pusher.clone());
    let t = token("alice", NOW + 600, &[(Role::SubscribePublish, "artist:*")]);
    connect_with(&deps, SAMPLE_CONNECTION, &t).await;
    connect_with(&deps, "listener", &t).await;
    send(
        &deps,
        "subscribe",
        "listener",
        json!({"action":"subscribe","entityId":"artist:ed-sheeran"}),
    )
    .await;
    let reply = body(&publish::handle(&nd, sample("publish.json")).await.unwrap());
    assert_eq!(reply["type"], "published", "{reply}");
    assert_eq!(reply["id"], "Vq2FXcPqoAMCJ1g=");
    assert_eq!(pusher.delivered_to(), vec!["listener"]);
    assert_eq!(store.all_subscriptions().len(), 1);
}
