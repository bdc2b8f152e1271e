//! The HTTP layer: axum handlers for every endpoint the emulator serves, and
//! [`app`], the router. Everything here sits on top of the emulator's state
//! ([`crate::state`]) and logic (sessions, queue, faults, PostToConnection);
//! nothing below imports this module.
//!
//! - [`websocket`]: the WebSocket endpoint and its sessions.
//! - [`management`]: the `@connections` API.
//! - [`eventbridge`](self::eventbridge): PutEvents.
//! - [`console`]: the demo page, status and DLQ listing.
//! - [`faults`](self::faults): `/_pushgate/faults`.
//! - [`token`]: `POST /_pushgate/token`.
//! - [`virtual_conns`]: `/_pushgate/virtual` (socket-less subscribers).

pub mod console;
pub mod eventbridge;
pub mod faults;
pub mod history;
pub mod management;
pub mod token;
pub mod virtual_conns;
pub mod websocket;

use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

/// The router: the WebSocket endpoint and the demo page, the `@connections`
/// API, PutEvents and the console endpoints.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(websocket::root).post(eventbridge::put_events))
        .route("/events", post(eventbridge::put_events))
        .route("/history", get(history::get).options(history::preflight))
        .route("/client.js", get(console::client_js))
        .route("/_pushgate/status", get(console::status))
        .route("/_pushgate/dlq", get(console::dlq))
        .route("/_pushgate/token", post(token::issue))
        .route(
            "/_pushgate/faults",
            get(faults::get).put(faults::put).delete(faults::clear),
        )
        .route(
            "/_pushgate/virtual",
            get(virtual_conns::summary)
                .post(virtual_conns::add)
                .delete(virtual_conns::clear),
        )
        .route("/_pushgate/virtual/{id}", get(virtual_conns::one))
        .route("/{stage}", get(websocket::staged))
        .merge(management_api(state.clone()))
        .with_state(state)
}

/// The `@connections` routes, behind API Gateway's SigV4 check.
fn management_api(state: AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/@connections/{id}",
            get(management::get_root)
                .post(management::post_root)
                .delete(management::delete_root),
        )
        .route(
            "/{stage}/@connections/{id}",
            get(management::get_staged)
                .post(management::post_staged)
                .delete(management::delete_staged),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            management::require_sigv4,
        ))
}
