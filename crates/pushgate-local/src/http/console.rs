//! What a person (or a test) looks at: the demo page at `/`, the status at
//! `GET /_pushgate/status` and the DLQ at `GET /_pushgate/dlq`.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pushgate_domain::ConnectionId;
use serde_json::{json, Value};

use crate::apigw::{iso8601_ms, now_ms};
use crate::state::AppState;

/// The demo page: plain HTML and JavaScript, no build step.
pub const INDEX_HTML: &str = include_str!("../../static/index.html");

/// The demo page.
pub fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        INDEX_HTML,
    )
        .into_response()
}

/// `GET /_pushgate/status`: endpoints, open connections with their
/// subscriptions, the queue and the DLQ.
pub async fn status(State(state): State<AppState>) -> Json<Value> {
    let store = &state.deps().store;
    let now = now_ms() / 1000;
    let mut connections = Vec::new();
    let mut subscription_count = 0;
    for session in state.sessions().all() {
        let context = &session.context;
        let subscriptions: Vec<String> = match ConnectionId::new(context.connection_id.as_str()) {
            Ok(id) => match store.subscriptions(&id, now).await {
                Ok(entities) => entities.iter().map(|e| e.as_str().to_owned()).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "status: could not read subscriptions");
                    Vec::new()
                }
            },
            Err(_) => Vec::new(),
        };
        subscription_count += subscriptions.len();
        connections.push(json!({
            "connectionId": context.connection_id,
            "connectedAt": iso8601_ms(context.connected_at_ms),
            "lastActiveAt": iso8601_ms(session.last_active_ms.load(Ordering::Relaxed)),
            "sourceIp": context.source_ip,
            "userAgent": context.user_agent,
            "subscriptions": subscriptions,
        }));
    }
    let stored = state.memory().map(|m| {
        json!({
            "connections": m.all_connections().len(),
            "subscriptions": m.all_subscriptions().len(),
        })
    });
    let queue = state.queue().counts();
    Json(json!({
        "stage": state.settings().stage,
        "region": state.settings().region,
        "websocketUrl": state.websocket_url(),
        "connectionsUrl": state.connections_url(),
        "putEventsUrl": state.base_url(),
        "eventSource": state.settings().event_source,
        "detailType": state.settings().detail_type,
        "store": if state.memory().is_some() { "memory" } else { "dynamodb" },
        "connections": connections,
        "subscriptions": subscription_count,
        "stored": stored,
        "queue": queue,
        "dlq": queue.dead_letters,
        "faults": state.faults().counts(),
        "postToConnection": {
            "calls": state.post_counts().calls.load(std::sync::atomic::Ordering::Relaxed),
            "throttled": state.post_counts().throttled.load(std::sync::atomic::Ordering::Relaxed),
        },
    }))
}

/// `GET /_pushgate/dlq`: the records in the DLQ, oldest first.
pub async fn dlq(State(state): State<AppState>) -> Json<Value> {
    let letters = state.queue().dead_letters();
    Json(json!({ "count": letters.len(), "messages": letters }))
}

/// The client library (`clients/js`, `@pushgate/client`), built in so the
/// demo page and any local page can `import { connect } from "/client.js"`.
pub const CLIENT_JS: &str = include_str!("../../../../clients/js/src/index.js");

/// `GET /client.js`.
pub async fn client_js() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/javascript; charset=utf-8",
            ),
            (axum::http::header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        CLIENT_JS,
    )
        .into_response()
}
