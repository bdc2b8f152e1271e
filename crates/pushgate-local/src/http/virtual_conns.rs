//! `/_pushgate/virtual`: virtual connections for measuring large fan-outs.
//!
//! - `POST {"entityId": "artist:1", "count": 100000}` registers that many
//!   subscribers of the entity (answer: how many, and the first few ids).
//! - `GET` sums deliveries up; `GET /_pushgate/virtual/{id}` gives one
//!   connection's count.
//! - `DELETE` removes them all, from the store too.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pushgate_domain::EntityId;
use serde::Deserialize;
use serde_json::json;

use crate::state::AppState;
use crate::virtual_conns::MAX_PER_REQUEST;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AddRequest {
    entity_id: String,
    count: usize,
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "message": message }))).into_response()
}

/// `POST /_pushgate/virtual`.
pub async fn add(State(state): State<AppState>, body: axum::body::Bytes) -> Response {
    let request = match serde_json::from_slice::<AddRequest>(&body) {
        Ok(r) => r,
        Err(e) => {
            return bad_request(format!(
                "expected {{\"entityId\": …, \"count\": 1 to {MAX_PER_REQUEST}}}: {e}"
            ))
        }
    };
    if !(1..=MAX_PER_REQUEST).contains(&request.count) {
        return bad_request(format!("count must be 1 to {MAX_PER_REQUEST}"));
    }
    let entity_id = match EntityId::new(request.entity_id.as_str()) {
        Ok(e) => e,
        Err(e) => return bad_request(format!("invalid entityId: {e}")),
    };
    match state
        .virtual_connections()
        .add(state.deps(), &entity_id, request.count)
        .await
    {
        Ok(ids) => {
            tracing::info!(entity_id = %entity_id, count = ids.len(), "virtual connections added");
            let sample: Vec<&String> = ids.iter().take(10).collect();
            Json(json!({
                "added": ids.len(),
                "entityId": entity_id.as_str(),
                "sample": sample,
                "summary": state.virtual_connections().summary(),
            }))
            .into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "message": format!("the store failed: {e}") })),
        )
            .into_response(),
    }
}

/// `GET /_pushgate/virtual`.
pub async fn summary(State(state): State<AppState>) -> Response {
    Json(state.virtual_connections().summary()).into_response()
}

/// `GET /_pushgate/virtual/{id}`.
pub async fn one(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.virtual_connections().deliveries(&id) {
        Some(n) => Json(json!({ "connectionId": id, "deliveries": n })).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "message": "no such virtual connection" })),
        )
            .into_response(),
    }
}

/// `DELETE /_pushgate/virtual`.
pub async fn clear(State(state): State<AppState>) -> Response {
    match state.virtual_connections().clear(state.deps()).await {
        Ok(n) => Json(json!({ "removed": n })).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "message": format!("the store failed: {e}") })),
        )
            .into_response(),
    }
}
