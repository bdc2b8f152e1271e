//! Fixtures shared by the handler tests: sample events, dependencies on an
//! in-memory store, and a scripted PostToConnection stand-in.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::sqs::SqsEvent;
use pushgate_domain::{AuthMode, Config, ConnectionId, EntityId, Secret};
use pushgate_functions::notifier::RetryPolicy;
use pushgate_functions::{connect, subscribe, Clock, Deps, NotifierDeps};
use pushgate_push::{PushError, Pusher};
use pushgate_store::MemoryStore;
use serde_json::{json, Value};

/// `requestContext.connectedAt` of the sample events.
pub const NOW_MS: i64 = 1_795_341_600_000;
pub const SAMPLE_CONNECTION: &str = "Vq2FSfPqIAMCJ1g=";
pub const KEY: &str = "handler-test-signing-key-0123456789";

pub fn sample<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn message(route: &str, connection: &str, body: &str) -> ApiGatewayWebsocketProxyRequest {
    let mut event: ApiGatewayWebsocketProxyRequest = sample("subscribe.json");
    event.request_context.route_key = Some(route.into());
    event.request_context.connection_id = Some(connection.into());
    event.body = Some(body.into());
    event
}

/// Deps on an in-memory store, anonymous connections allowed, a signing
/// key configured (tokens are verified when sent).
pub fn setup() -> (Arc<MemoryStore>, Deps) {
    let store = Arc::new(MemoryStore::new());
    let mut config = Config::new("test-table");
    config.auth_mode = AuthMode::Anonymous;
    config.jwt_secret = Some(Secret::new(KEY));
    let mut deps = Deps::new(store.clone(), config);
    deps.clock = Clock::fixed(NOW_MS);
    (store, deps)
}

pub fn body(response: &ApiGatewayProxyResponse) -> Value {
    match &response.body {
        Some(aws_lambda_events::encodings::Body::Text(t)) => serde_json::from_str(t).unwrap(),
        other => panic!("expected a text body, got {other:?}"),
    }
}

pub fn cid(s: &str) -> ConnectionId {
    ConnectionId::new(s).unwrap()
}

pub fn eid(s: &str) -> EntityId {
    EntityId::new(s).unwrap()
}

pub async fn connected(deps: &Deps, id: &str) {
    let mut event: ApiGatewayWebsocketProxyRequest = sample("connect.json");
    event.request_context.connection_id = Some(id.into());
    let response = connect::handle(deps, event).await.unwrap();
    assert_eq!(response.status_code, 200);
}

pub async fn subscribed(deps: &Deps, id: &str, entity: &str) {
    let body_text = json!({"action": "subscribe", "entityId": entity}).to_string();
    let response = subscribe::handle(&subscribing(deps), message("subscribe", id, &body_text))
        .await
        .unwrap();
    assert_eq!(body(&response)["type"], "subscribed", "{id} → {entity}");
}

/// A PostToConnection stand-in: records payloads and answers with scripted
/// statuses per connection (consumed in order, then 200).
#[derive(Default)]
pub struct ScriptedPusher {
    pub script: Mutex<HashMap<String, Vec<u16>>>,
    pub always: Mutex<HashMap<String, u16>>,
    pub delivered: Mutex<Vec<(String, Value)>>,
    pub attempts: AtomicUsize,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    pub delay: Duration,
}

impl ScriptedPusher {
    pub fn answer(&self, connection: &str, statuses: &[u16]) {
        self.script
            .lock()
            .unwrap()
            .insert(connection.into(), statuses.to_vec());
    }
    pub fn always(&self, connection: &str, status: u16) {
        self.always
            .lock()
            .unwrap()
            .insert(connection.into(), status);
    }
    pub fn delivered_to(&self) -> Vec<String> {
        let mut to: Vec<String> = self
            .delivered
            .lock()
            .unwrap()
            .iter()
            .map(|(c, _)| c.clone())
            .collect();
        to.sort();
        to
    }
}

#[async_trait]
impl Pusher for ScriptedPusher {
    async fn post(&self, connection_id: &str, payload: &[u8]) -> Result<(), PushError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let scripted = {
            let mut script = self.script.lock().unwrap();
            script
                .get_mut(connection_id)
                .and_then(|s| (!s.is_empty()).then(|| s.remove(0)))
        };
        let status = scripted
            .or_else(|| self.always.lock().unwrap().get(connection_id).copied())
            .unwrap_or(200);
        if status == 200 {
            let value = serde_json::from_slice(payload).expect("payload is JSON");
            self.delivered
                .lock()
                .unwrap()
                .push((connection_id.into(), value));
            return Ok(());
        }
        Err(PushError::from_status(
            status,
            format!("scripted {status}").into(),
        ))
    }
}

pub fn notifier_deps(deps: &Deps, pusher: Arc<ScriptedPusher>) -> NotifierDeps {
    let mut nd = NotifierDeps::new(deps.clone(), pusher);
    nd.retry = RetryPolicy {
        max_attempts: 4,
        base: Duration::from_millis(1),
        cap: Duration::from_millis(5),
    };
    nd
}

pub fn sqs_event(bodies: &[(&str, String)]) -> SqsEvent {
    let mut event: SqsEvent = sample("notifier.json");
    let template = event.records[0].clone();
    event.records = bodies
        .iter()
        .map(|(id, body)| {
            let mut r = template.clone();
            r.message_id = Some((*id).into());
            r.body = Some(body.clone());
            r
        })
        .collect();
    event
}

pub fn eventbridge(id: &str, entity: &str, message: Value) -> String {
    json!({"version": "0", "id": id, "detail-type": "Entity Updated", "source": "pushgate",
        "account": "123456789012", "time": "2026-11-22T10:00:00Z", "region": "us-east-1",
        "resources": [], "detail": {"entityId": entity, "message": message}})
    .to_string()
}

/// A Lambda deadline far enough away that no test meets it by accident.
#[allow(dead_code)]
pub fn far_deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(900)
}

/// Dependencies for `subscribe`, which pushes only when it replays history:
/// a pusher that accepts everything.
#[allow(dead_code)]
pub fn subscribing(deps: &Deps) -> NotifierDeps {
    notifier_deps(deps, Arc::new(ScriptedPusher::default()))
}
