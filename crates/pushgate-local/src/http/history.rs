//! `GET /history`: the history function's HTTP API route, served on the
//! emulator's port. The function's own [`history::answer`] does the work;
//! this adds what the template's HTTP API adds in AWS: CORS for browsers
//! (any origin, `GET` with `Authorization`, no cookies) and the preflight.

use std::collections::HashMap;

use aws_lambda_events::query_map::QueryMap;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use pushgate_functions::history;

use crate::state::AppState;

fn cors(headers: &mut HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
}

/// `GET /history?entityId=…&since=…` (see `docs/design.md`).
pub async fn get(
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
    request_headers: HeaderMap,
) -> Response {
    let mut query: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in pairs {
        query.entry(k).or_default().push(v);
    }
    let authorization = request_headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let result = history::answer(state.deps(), &QueryMap::from(query), authorization).await;
    let (status, body) = match result {
        Ok(answer) => answer,
        Err(e) => {
            tracing::error!(function = "history", error = %e.chain(), "invocation failed");
            (500, r#"{"message":"Internal Server Error"}"#.to_owned())
        }
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    cors(headers);
    response
}

/// The CORS preflight.
pub async fn preflight() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    cors(response.headers_mut());
    response
}
