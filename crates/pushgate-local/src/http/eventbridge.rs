//! `POST /` and `POST /events`: EventBridge PutEvents over HTTP (AWS JSON
//! 1.1); the entries are checked and routed by [`crate::eventbridge`].

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::eventbridge::{
    EventBus, PutEventsRequest, MAX_ENTRIES, MAX_REQUEST_BYTES, PUT_EVENTS_TARGET,
};
use crate::state::AppState;

/// An AWS JSON 1.1 error, the form the SDKs parse (`__type`).
fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    (
        status,
        [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amzn-errortype", kind),
        ],
        json!({"__type": kind, "message": message.into()}).to_string(),
    )
        .into_response()
}

/// `POST /` and `POST /events`: PutEvents.
pub async fn put_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if target != PUT_EVENTS_TARGET {
        return error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            format!("this endpoint serves {PUT_EVENTS_TARGET} only (X-Amz-Target)"),
        );
    }
    if body.len() > MAX_REQUEST_BYTES {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "ValidationException",
            format!(
                "the request is {} bytes; the limit is {MAX_REQUEST_BYTES}",
                body.len()
            ),
        );
    }
    let Ok(request) = serde_json::from_slice::<PutEventsRequest>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "the request body is not a PutEvents request",
        );
    };
    let entries = request.entries.unwrap_or_default();
    if entries.is_empty() || entries.len() > MAX_ENTRIES {
        return error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            format!(
                "1 validation error detected: Value at 'entries' failed to satisfy constraint: \
                 Member must have length between 1 and {MAX_ENTRIES}, got {}",
                entries.len()
            ),
        );
    }
    let bus = EventBus {
        settings: state.settings(),
        queue: state.queue(),
    };
    let results: Vec<Value> = entries.into_iter().map(|e| bus.put_event(e)).collect();
    let failed = results
        .iter()
        .filter(|r| r.get("ErrorCode").is_some())
        .count();
    (
        StatusCode::OK,
        [("content-type", "application/x-amz-json-1.1")],
        json!({"FailedEntryCount": failed, "Entries": results}).to_string(),
    )
        .into_response()
}
