//! Trust: every bad token at `$connect` with its status and code, scopes on
//! `subscribe` and `publish`, tokens expiring on open connections, and
//! notifications to every connection of a user. Token hardening: `aud`,
//! `nbf`, weak keys, key rotation and refresh, and no token in any log. After each refusal the
//! store holds exactly what it should.

// Test code: a panic is how a failed expectation is reported.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::http::HeaderValue;
use pushgate_domain::auth::{
    mint, Claims, Grant, KeyError, KeyRing, Role, SigningKey, TokenVerifier,
};
use pushgate_domain::{AuthMode, Secret, UserId};
use pushgate_functions::runtime::{self, KeyLoadError, KeySource, StartError};
use pushgate_functions::{connect, notifier, publish, subscribe, Clock, Deps, NotifierDeps};
use pushgate_push::{EventQueue, QueueError};
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
        "subscribe" => subscribe::handle(&subscribing(deps), event).await.unwrap(),
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
    assert_eq!(
        denied["entityId"], "venue:1",
        "the refusal names its entity"
    );
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

/// The notifier's queue, recording what `publish` sends.
#[derive(Default)]
struct RecordingQueue(Mutex<Vec<String>>);

#[async_trait::async_trait]
impl EventQueue for RecordingQueue {
    async fn send(&self, body: String, _delay_secs: u32) -> Result<(), QueueError> {
        self.0.lock().unwrap().push(body);
        Ok(())
    }
}

impl RecordingQueue {
    /// Runs the notifier on everything queued so far.
    async fn deliver(&self, nd: &NotifierDeps) {
        let bodies: Vec<(String, String)> = self
            .0
            .lock()
            .unwrap()
            .drain(..)
            .enumerate()
            .map(|(i, b)| (format!("m{i}"), b))
            .collect();
        let refs: Vec<(&str, String)> = bodies
            .iter()
            .map(|(i, b)| (i.as_str(), b.clone()))
            .collect();
        let response = notifier::handle(nd, sqs_event(&refs), support::far_deadline()).await;
        assert!(response.batch_item_failures.is_empty());
    }
}

#[tokio::test]
async fn publish_needs_a_publish_grant_and_reaches_subscribers() {
    let (_, deps) = token_mode();
    let pusher = Arc::new(ScriptedPusher::default());
    let nd = notifier_deps(&deps, pusher.clone());
    let queue = RecordingQueue::default();
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
    let denied = publish::handle(&deps, &queue, message("publish", "ro", &frame))
        .await
        .unwrap();
    assert_eq!(body(&denied)["code"], "forbidden");
    assert!(
        body(&denied).get("entityId").is_none(),
        "a publish refusal does not name the entity (it would read as a subscribe's)"
    );
    let other = json!({"action":"publish","entityId":"venue:2","data":1}).to_string();
    let denied = publish::handle(&deps, &queue, message("publish", "pub", &other))
        .await
        .unwrap();
    assert_eq!(body(&denied)["code"], "forbidden");
    assert!(
        queue.0.lock().unwrap().is_empty(),
        "a refused publish queues nothing"
    );

    let reply = body(
        &publish::handle(&deps, &queue, message("publish", "pub", &frame))
            .await
            .unwrap(),
    );
    assert_eq!(reply["type"], "accepted", "{reply}");
    queue.deliver(&nd).await;
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
    // a1 also subscribes to the entity. An event naming both a user and an
    // entity belongs to both streams (docs/design.md): a1 gets one frame
    // per stream, each tab of alice one user-stream frame, bob nothing.
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
        sqs_event(&[("m1", event.to_string())]),
        support::far_deadline(),
    )
    .await;
    assert!(response.batch_item_failures.is_empty());
    let mut frames: Vec<(String, bool)> = pusher
        .delivered
        .lock()
        .unwrap()
        .iter()
        .map(|(to, frame)| {
            assert_eq!(frame["id"], "ev-user");
            (to.to_string(), frame.get("userId").is_some())
        })
        .collect();
    frames.sort();
    let user_stream: Vec<&str> = frames
        .iter()
        .filter(|(_, user)| *user)
        .map(|(to, _)| to.as_str())
        .collect();
    let entity_stream: Vec<&str> = frames
        .iter()
        .filter(|(_, user)| !*user)
        .map(|(to, _)| to.as_str())
        .collect();
    assert_eq!(user_stream, vec!["a1", "a2", "a3"], "{frames:?}");
    assert_eq!(entity_stream, vec!["a1"], "{frames:?}");
    let _ = UserId::new("alice").unwrap();
}

#[tokio::test]
async fn publish_sample_fans_out_for_a_connection_with_a_publish_grant() {
    let (store, deps) = token_mode();
    let pusher = Arc::new(ScriptedPusher::default());
    let nd = notifier_deps(&deps, pusher.clone());
    let queue = RecordingQueue::default();
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
    let reply = body(
        &publish::handle(&deps, &queue, sample("publish.json"))
            .await
            .unwrap(),
    );
    assert_eq!(reply["type"], "accepted", "{reply}");
    queue.deliver(&nd).await;
    assert_eq!(pusher.delivered_to(), vec!["listener"]);
    assert_eq!(store.all_subscriptions().len(), 1);
}

// ------------------------------------------------------------ token hardening

/// Signs arbitrary claims (`nbf`, `aud`, …) with `key`.
fn signed(key: &[u8], extra: Value) -> String {
    let mut claims = json!({
        "sub": "alice", "exp": NOW + 600,
        "grants": [{"role": "subscribe", "entity": "artist:*"}],
    });
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    mint(key, &claims).unwrap()
}

fn error_code(response: &ApiGatewayProxyResponse) -> String {
    body(response)["code"].as_str().unwrap().to_owned()
}

const OLD_KEY: &str = "rotation-old-key-0123456789abcdef01";
const NEW_KEY: &str = "rotation-new-key-0123456789abcdef01";

fn keys(current: &str, previous: Option<&str>) -> KeyRing {
    KeyRing::new(
        SigningKey::new(current.as_bytes()).unwrap(),
        previous.map(|p| SigningKey::new(p.as_bytes()).unwrap()),
    )
}

fn sdk() -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder().build()
}

#[tokio::test]
async fn jwt_audience_refuses_tokens_without_it_or_for_another_service() {
    let (store, mut deps) = token_mode();
    deps.config.jwt_audience = Some("pushgate".into());
    deps.verifier = runtime::token_verifier(&sdk(), &deps.config).await.unwrap();

    let cases = [
        ("no aud", json!({}), 401),
        ("other aud", json!({"aud": "billing"}), 401),
        ("other auds", json!({"aud": ["billing", "search"]}), 401),
        ("aud", json!({"aud": "pushgate"}), 200),
        (
            "aud in a list",
            json!({"aud": ["billing", "pushgate"]}),
            200,
        ),
    ];
    for (i, (name, extra, status)) in cases.into_iter().enumerate() {
        let response = connect_with(&deps, &format!("a{i}"), &signed(KEY.as_bytes(), extra)).await;
        assert_eq!(response.status_code, status, "{name}");
        if status == 401 {
            assert_eq!(error_code(&response), "unauthorized", "{name}");
        }
    }
    assert_eq!(store.all_connections().len(), 2);

    // Without JWT_AUDIENCE, aud is not checked (and does not break parsing).
    let (_, plain) = token_mode();
    let response = connect_with(
        &plain,
        "b1",
        &signed(KEY.as_bytes(), json!({"aud": "billing"})),
    )
    .await;
    assert_eq!(response.status_code, 200);
}

#[tokio::test]
async fn a_token_used_before_its_nbf_fails_the_handshake() {
    let (store, deps) = token_mode();
    // The handler's clock is fixed at NOW; 30 s of skew are allowed.
    let early = connect_with(
        &deps,
        "n1",
        &signed(KEY.as_bytes(), json!({"nbf": NOW + 600})),
    )
    .await;
    assert_eq!(
        (early.status_code, error_code(&early).as_str()),
        (401, "unauthorized")
    );
    let skewed = connect_with(
        &deps,
        "n2",
        &signed(KEY.as_bytes(), json!({"nbf": NOW + 20})),
    )
    .await;
    assert_eq!(skewed.status_code, 200);
    let past = connect_with(
        &deps,
        "n3",
        &signed(KEY.as_bytes(), json!({"nbf": NOW - 60})),
    )
    .await;
    assert_eq!(past.status_code, 200);
    let stored: Vec<String> = store
        .all_connections()
        .iter()
        .map(|c| c.connection_id.to_string())
        .collect();
    assert_eq!(stored, vec!["n2", "n3"]);
}

#[tokio::test]
async fn jwt_secret_previous_lets_tokens_of_the_old_key_in_during_a_rotation() {
    let (_, mut deps) = token_mode();
    deps.config.jwt_secret = Some(Secret::new(NEW_KEY));
    deps.config.jwt_secret_previous = Some(Secret::new(OLD_KEY));
    deps.verifier = runtime::token_verifier(&sdk(), &deps.config).await.unwrap();
    let by_old = signed(OLD_KEY.as_bytes(), json!({}));
    let by_new = signed(NEW_KEY.as_bytes(), json!({}));
    let by_other = signed(KEY.as_bytes(), json!({}));
    assert_eq!(connect_with(&deps, "r1", &by_new).await.status_code, 200);
    assert_eq!(connect_with(&deps, "r2", &by_old).await.status_code, 200);
    assert_eq!(connect_with(&deps, "r3", &by_other).await.status_code, 401);

    // Rotation over: only the new key.
    deps.config.jwt_secret_previous = None;
    deps.verifier = runtime::token_verifier(&sdk(), &deps.config).await.unwrap();
    assert_eq!(connect_with(&deps, "r4", &by_old).await.status_code, 401);
}

#[tokio::test]
async fn keys_under_256_bits_stop_the_start_without_showing_the_key() {
    for (current, previous) in [
        ("short-key-hunter2", None),
        (NEW_KEY, Some("short-key-hunter2")),
    ] {
        let mut config = pushgate_domain::Config::new("t");
        config.jwt_secret = Some(Secret::new(current));
        config.jwt_secret_previous = previous.map(Secret::new);
        let err = runtime::token_verifier(&sdk(), &config).await.unwrap_err();
        assert!(
            matches!(
                &err,
                StartError::SigningKey(KeyLoadError::Weak {
                    source: KeyError::TooShort { len: 17 },
                    ..
                })
            ),
            "{err:?}"
        );
        let shown = format!(
            "{err} {err:?} {}",
            std::error::Error::source(&err)
                .map(|s| s.to_string())
                .unwrap_or_default()
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }
    // From the environment, the same key is refused when the config is read.
    let err = pushgate_domain::Config::from_lookup(|k| match k {
        "TABLE_NAME" => Some("t".into()),
        "JWT_SECRET" => Some("short-key-hunter2".into()),
        _ => None,
    })
    .unwrap_err();
    assert!(err.to_string().contains("JWT_SECRET"), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

/// A key source that hands out scripted answers and counts its reads.
struct ScriptedKeys {
    answers: Mutex<VecDeque<Result<KeyRing, KeyLoadError>>>,
    reads: tokio::sync::mpsc::UnboundedSender<()>,
}

#[async_trait::async_trait]
impl KeySource for ScriptedKeys {
    async fn load(&self) -> Result<KeyRing, KeyLoadError> {
        let _ = self.reads.send(());
        self.answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| Ok(keys(NEW_KEY, None)))
    }
}

fn scripted(
    answers: Vec<Result<KeyRing, KeyLoadError>>,
) -> (Arc<ScriptedKeys>, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let source = ScriptedKeys {
        answers: Mutex::new(answers.into()),
        reads: tx,
    };
    (Arc::new(source), rx)
}

#[tokio::test]
async fn a_refresh_swaps_the_keys_and_a_failed_one_keeps_them_and_warns() {
    let (_, mut deps) = token_mode();
    let verifier = TokenVerifier::new(keys(OLD_KEY, None));
    deps.verifier = Some(verifier.clone());
    let by_old = signed(OLD_KEY.as_bytes(), json!({}));
    let by_new = signed(NEW_KEY.as_bytes(), json!({}));
    assert_eq!(connect_with(&deps, "f1", &by_new).await.status_code, 401);

    let (source, _reads) = scripted(vec![
        Ok(keys(NEW_KEY, Some(OLD_KEY))),
        Err(KeyLoadError::Read {
            name: "/pushgate/jwt-secret".into(),
            source: "throttled".into(),
        }),
        Err(KeyLoadError::Weak {
            name: "/pushgate/jwt-secret".into(),
            source: KeyError::TooShort { len: 3 },
        }),
    ]);
    // The handler's copy of the verifier sees the swap.
    runtime::refresh_keys(&verifier, source.as_ref())
        .await
        .unwrap();
    assert_eq!(connect_with(&deps, "f2", &by_new).await.status_code, 200);
    assert_eq!(connect_with(&deps, "f3", &by_old).await.status_code, 200);

    let (logs, guard) = capture_logs("trace");
    assert!(runtime::refresh_keys(&verifier, source.as_ref())
        .await
        .is_err());
    assert!(runtime::refresh_keys(&verifier, source.as_ref())
        .await
        .is_err());
    drop(guard);
    assert_eq!(
        connect_with(&deps, "f4", &by_new).await.status_code,
        200,
        "kept"
    );
    assert_eq!(
        connect_with(&deps, "f5", &by_old).await.status_code,
        200,
        "kept"
    );
    let text = logs.text();
    let warnings: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["level"] == "WARN")
        .collect();
    assert_eq!(warnings.len(), 2, "{text}");
    assert!(warnings[0]["error"]
        .as_str()
        .unwrap()
        .contains("/pushgate/jwt-secret"));
    assert!(!text.contains(OLD_KEY) && !text.contains(NEW_KEY), "{text}");
}

#[tokio::test]
async fn the_background_refresh_rereads_the_keys_until_stopped() {
    let verifier = TokenVerifier::new(keys(OLD_KEY, None));
    let (source, mut reads) = scripted(vec![
        Err(KeyLoadError::Missing {
            name: "/pushgate/jwt-secret".into(),
        }),
        Ok(keys(NEW_KEY, None)),
    ]);
    let task = runtime::spawn_key_refresh(
        verifier.clone(),
        source,
        std::time::Duration::from_millis(5),
    );
    // Wait (bounded, so a broken loop fails instead of hanging) for a third
    // read: by then the failed read kept the old key and the second one
    // swapped the new key in.
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        for _ in 0..3 {
            reads.recv().await.unwrap();
        }
    })
    .await
    .expect("the refresh task reads the keys again and again");
    task.abort();
    let by_new = signed(NEW_KEY.as_bytes(), json!({}));
    let by_old = signed(OLD_KEY.as_bytes(), json!({}));
    assert!(verifier.verify(&by_new, NOW).is_ok());
    assert!(verifier.verify(&by_old, NOW).is_err());
}

/// Log output captured through the binaries' own JSON subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures every log line at `level` and above on this thread (the test
/// runtime is single-threaded) until the guard is dropped.
fn capture_logs(level: &str) -> (Captured, tracing::subscriber::DefaultGuard) {
    let logs = Captured::default();
    let writer = logs.clone();
    let settings = runtime::LogSettings {
        json: true,
        directives: level.into(),
    };
    let subscriber = runtime::log_subscriber(&settings, move || writer.clone());
    (logs, tracing::subscriber::set_default(subscriber))
}

#[tokio::test]
async fn no_log_level_prints_a_token() {
    let (_, mut deps) = token_mode();
    deps.config.jwt_audience = Some("pushgate".into());
    deps.verifier = runtime::token_verifier(&sdk(), &deps.config).await.unwrap();
    let aud = json!({"aud": "pushgate"});
    let mut expired_claims = aud.clone();
    expired_claims["exp"] = json!(NOW - 3600);
    let mut early_claims = aud.clone();
    early_claims["nbf"] = json!(NOW + 3600);
    let mut bad_scope = aud.clone();
    bad_scope["grants"] = json!([{"role": "subscribe", "entity": "a*b*"}]);
    let good = signed(KEY.as_bytes(), aud.clone());
    let tokens = [
        ("good", good.clone()),
        ("expired", signed(KEY.as_bytes(), expired_claims)),
        ("not yet valid", signed(KEY.as_bytes(), early_claims)),
        (
            "wrong key",
            signed(b"some-other-key-some-other-key-000", aud.clone()),
        ),
        ("no aud", signed(KEY.as_bytes(), json!({}))),
        ("bad scope", signed(KEY.as_bytes(), bad_scope)),
        ("garbage", "garbage-token-value-6b1f0e".to_owned()),
        ("huge", "h".repeat(5000)),
    ];

    let (logs, guard) = capture_logs("trace");
    for (i, (_, t)) in tokens.iter().enumerate() {
        connect_with(&deps, &format!("q{i}"), t).await;
        let offered = format!("pushgate.v1, {t}");
        let _ = connect::handle(&deps, connect_event(&format!("s{i}"), None, Some(&offered)))
            .await
            .unwrap();
    }
    // An open connection's frames, too.
    let _ = send(
        &deps,
        "subscribe",
        "q0",
        json!({"action": "subscribe", "entityId": "artist:x"}),
    )
    .await;
    drop(guard);

    let text = logs.text();
    // The capture works: each refusal and each connection is logged.
    assert_eq!(
        text.matches("refused: authentication failed").count(),
        14,
        "{text}"
    );
    assert_eq!(text.matches("\"connected\"").count(), 2, "{text}");
    // Where each token came from is logged instead.
    assert_eq!(
        text.matches(r#""token_source":"query""#).count(),
        8,
        "{text}"
    );
    assert_eq!(
        text.matches(r#""token_source":"subprotocol""#).count(),
        8,
        "{text}"
    );
    for (name, t) in &tokens {
        assert!(
            !text.contains(t.as_str()),
            "{name}: the token is in the logs"
        );
        // Nor its signature (the part that makes it usable).
        if let Some(signature) = t.rsplit('.').next().filter(|s| s.len() >= 16) {
            assert!(
                !text.contains(signature),
                "{name}: the signature is in the logs"
            );
        }
    }
}

#[tokio::test]
async fn an_empty_query_token_or_a_known_subprotocol_does_not_hide_the_real_token() {
    let (store, deps) = token_mode();
    let t = token("alice", NOW + 600, &[(Role::Subscribe, "artist:*")]);
    // `?token=` left empty by a client that sends the token as a subprotocol.
    let offered = format!("pushgate.v1, {t}");
    let response = connect::handle(&deps, connect_event("e1", Some(""), Some(&offered)))
        .await
        .unwrap();
    assert_eq!(response.status_code, 200);
    // The token in the query, `pushgate.v1, websocket` offered.
    let response = connect::handle(
        &deps,
        connect_event("e2", Some(&t), Some("pushgate.v1, websocket")),
    )
    .await
    .unwrap();
    assert_eq!(response.status_code, 200);
    assert_eq!(
        response.headers.get("sec-websocket-protocol").unwrap(),
        "pushgate.v1"
    );
    assert_eq!(store.all_connections().len(), 2);

    // Anonymous stages let `pushgate.v1, websocket` in without a token
    // (`websocket` is not taken for a malformed token).
    let (store, anonymous) = setup();
    let response = connect::handle(
        &anonymous,
        connect_event("e3", None, Some("pushgate.v1, websocket")),
    )
    .await
    .unwrap();
    assert_eq!(response.status_code, 200);
    assert_eq!(store.all_connections().len(), 1);
    // A token stage says a token is missing, not that "websocket" is malformed.
    let response = connect::handle(
        &deps,
        connect_event("e4", None, Some("pushgate.v1, websocket")),
    )
    .await
    .unwrap();
    assert_eq!(response.status_code, 401);
    let message = body(&response)["message"].as_str().unwrap().to_owned();
    assert!(message.contains("a token is required"), "{message}");
}
