//! `POST /_pushgate/token`: a token signed with the emulator's key.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::apigw::now_ms;
use crate::state::AppState;
use crate::token::{mint_local, TokenRequest};

/// `POST /_pushgate/token` with a JSON [`TokenRequest`]: a token signed with
/// the emulator's key. The token is in the answer only, never in a log.
pub async fn issue(State(state): State<AppState>, body: axum::body::Bytes) -> Response {
    let bad_request = |message: String| {
        (StatusCode::BAD_REQUEST, Json(json!({ "message": message }))).into_response()
    };
    let request = match serde_json::from_slice::<TokenRequest>(&body) {
        Ok(r) => r,
        Err(e) => {
            return bad_request(format!(
                "expected {{\"sub\": …, \"grants\": [{{\"role\": …, \"entity\": …}}], \"ttlSecs\": …}}: {e}"
            ))
        }
    };
    let Some(secret) = &state.settings().functions.jwt_secret else {
        return (
            StatusCode::CONFLICT,
            Json(json!({ "message": "this emulator has no signing key" })),
        )
            .into_response();
    };
    match mint_local(secret.expose(), &request, now_ms() / 1000) {
        Ok(minted) => {
            tracing::info!(sub = %request.sub, grants = request.grants.len(), "token issued");
            Json(minted).into_response()
        }
        Err(e) => bad_request(e.to_string()),
    }
}
