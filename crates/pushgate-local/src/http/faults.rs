//! `GET`, `PUT` and `DELETE /_pushgate/faults`: the faults in force, read
//! and changed at run time.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::faults::Faults;
use crate::state::AppState;

fn describe(state: &AppState) -> Json<serde_json::Value> {
    let injector = state.faults();
    Json(json!({ "faults": injector.current(), "injected": injector.counts() }))
}

/// `GET /_pushgate/faults`: the faults in force and how many were injected.
pub async fn get(State(state): State<AppState>) -> Json<serde_json::Value> {
    describe(&state)
}

/// `PUT /_pushgate/faults`: replaces the faults in force.
pub async fn put(State(state): State<AppState>, body: axum::body::Bytes) -> Response {
    let parsed = serde_json::from_slice::<Faults>(&body).map_err(|e| e.to_string());
    let result = parsed.and_then(|f| state.faults().set(f).map_err(|e| e.to_string()));
    match result {
        Ok(()) => {
            tracing::warn!(faults = ?state.faults().current(), "fault injection changed");
            describe(&state).into_response()
        }
        Err(message) => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "message": format!("invalid faults: {message}") })),
        )
            .into_response(),
    }
}

/// `DELETE /_pushgate/faults`: no more faults.
pub async fn clear(State(state): State<AppState>) -> Json<serde_json::Value> {
    // The default is always valid.
    let _ = state.faults().set(Faults::default());
    tracing::info!("fault injection cleared");
    describe(&state)
}
