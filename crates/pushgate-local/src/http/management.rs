//! The API Gateway Management API (`@connections`), at
//! `/@connections/{id}` and `/{stage}/@connections/{id}`: POST sends a frame,
//! GET describes the connection, DELETE closes it. Every call must be
//! SigV4-signed, as in AWS ([`crate::sigv4`]). Errors come in the REST-JSON
//! form the AWS SDKs parse (`x-amzn-ErrorType` and a `message`).

use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::apigw::iso8601_ms;
use crate::connections::post_to_connection;
use crate::sessions::CloseRequest;
use crate::state::AppState;

/// Largest request body read before answering 413 (so the client gets the
/// answer rather than a reset connection).
const DRAIN_LIMIT: usize = 8 * 1024 * 1024;

/// The close code sent when a connection is deleted through the API.
pub const DELETED_CLOSE_CODE: u16 = 1000;

/// An error the SDKs map to their typed exceptions.
pub fn aws_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        [
            ("content-type", "application/json"),
            ("x-amzn-errortype", kind),
        ],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}

/// Refuses a call whose SigV4 signature API Gateway would refuse (403),
/// before it reaches the route. Reads the body to check it, then hands the
/// request on with the same bytes.
pub async fn require_sigv4(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, DRAIN_LIMIT).await {
        Ok(bytes) => bytes,
        Err(_) => return too_large(),
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |p| p.as_str());
    if let Err(refusal) = crate::sigv4::verify(
        parts.method.as_str(),
        path_and_query,
        &parts.headers,
        &bytes,
        &state.settings().region,
        std::time::SystemTime::now(),
    ) {
        return aws_error(
            StatusCode::FORBIDDEN,
            refusal.error_type(),
            &refusal.to_string(),
        );
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn too_large() -> Response {
    aws_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PayloadTooLargeException",
        "the payload is too large",
    )
}

fn gone() -> Response {
    aws_error(StatusCode::GONE, "GoneException", "the connection is gone")
}

fn forbidden() -> Response {
    aws_error(StatusCode::FORBIDDEN, "ForbiddenException", "Forbidden")
}

async fn read_body(body: Body) -> Result<Vec<u8>, Response> {
    axum::body::to_bytes(body, DRAIN_LIMIT)
        .await
        .map(|b| b.to_vec())
        .map_err(|_| too_large())
}

fn stage_ok(state: &AppState, stage: Option<&str>) -> bool {
    stage.is_none_or(|s| s == state.settings().stage)
}

async fn post(state: AppState, stage: Option<String>, id: String, body: Body) -> Response {
    if !stage_ok(&state, stage.as_deref()) {
        return forbidden();
    }
    match read_body(body).await {
        Ok(data) => match post_to_connection(&state, &id, data).await {
            Ok(()) => StatusCode::OK.into_response(),
            Err(e) => {
                let status =
                    StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                aws_error(status, e.error_type(), &e.to_string())
            }
        },
        Err(response) => response,
    }
}

fn get(state: &AppState, stage: Option<&str>, id: &str) -> Response {
    if !stage_ok(state, stage) {
        return forbidden();
    }
    let Some(session) = state.sessions().get(id) else {
        return gone();
    };
    let context = &session.context;
    let body = json!({
        "connectedAt": iso8601_ms(context.connected_at_ms),
        "identity": {
            "sourceIp": context.source_ip,
            "userAgent": context.user_agent,
        },
        "lastActiveAt": iso8601_ms(session.last_active_ms.load(Ordering::Relaxed)),
    });
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn delete(state: &AppState, stage: Option<&str>, id: &str) -> Response {
    if !stage_ok(state, stage) {
        return forbidden();
    }
    let Some(session) = state.sessions().get(id) else {
        return gone();
    };
    // The session closes the socket and runs `$disconnect`.
    let _ = session.close.send(CloseRequest {
        code: DELETED_CLOSE_CODE,
        reason: String::new(),
    });
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /@connections/{id}`.
pub async fn post_root(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    post(state, None, id, body).await
}

/// `POST /{stage}/@connections/{id}`.
pub async fn post_staged(
    State(state): State<AppState>,
    Path((stage, id)): Path<(String, String)>,
    body: Body,
) -> Response {
    post(state, Some(stage), id, body).await
}

/// `GET /@connections/{id}`.
pub async fn get_root(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    get(&state, None, &id)
}

/// `GET /{stage}/@connections/{id}`.
pub async fn get_staged(
    State(state): State<AppState>,
    Path((stage, id)): Path<(String, String)>,
) -> Response {
    get(&state, Some(&stage), &id)
}

/// `DELETE /@connections/{id}`.
pub async fn delete_root(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    delete(&state, None, &id)
}

/// `DELETE /{stage}/@connections/{id}`.
pub async fn delete_staged(
    State(state): State<AppState>,
    Path((stage, id)): Path<(String, String)>,
) -> Response {
    delete(&state, Some(&stage), &id)
}
