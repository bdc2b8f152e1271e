//! The WebSocket endpoint at `/` and `/{stage}`, in API Gateway's manner:
//! `$connect` runs before the handshake completes and decides it; text frames
//! are routed by `$request.body.action`; a two-way route's response body goes
//! back to the client; the message limit, idle timeout and maximum duration
//! close the connection; `$disconnect` runs once whoever closes.
//!
//! Each session has one task per direction: the reader (frames in, timers,
//! close requests) and the writer (frames out, from replies and from
//! PostToConnection, through the session's bounded [`Outbox`]). Every route
//! invocation runs in a task of its own, with its function's timeout: API
//! Gateway does not serialise a connection's frames, so replies can arrive
//! in any order, and a slow function holds up nothing else.
//!
//! API Gateway's frame limit (32 KB) and message limit (128 KB) both close
//! the connection with 1009: a larger message must come in fragments.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use pushgate_domain::limits::{MAX_FRAME_BYTES, MAX_MESSAGE_BYTES};
use pushgate_domain::protocol::route_key;
use pushgate_domain::{ErrorCode, ServerFrame};
use pushgate_functions::connect::SUBPROTOCOL_HEADER;
use pushgate_functions::{connect, default_route, disconnect, publish, subscribe, unsubscribe};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};

use crate::apigw::{self, body_text, invoke, now_ms, ConnectionContext, InvokeError};
use crate::http::console;
use crate::sessions::{CloseRequest, Outbound, Outbox, OutboxReceiver, SessionHandle};
use crate::state::AppState;

/// How long a closing session waits for the other side's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Close code and reason for a message over the limit.
const TOO_BIG: (u16, &str) = (1009, "Message too big");
/// Close code and reason for the idle timeout and the maximum duration.
const GOING_AWAY: (u16, &str) = (1001, "Going away");
/// What `$disconnect` is told when the client vanished without a close frame.
const ABNORMAL: (u16, &str) = (1006, "Connection closed abnormally");

/// Initial read buffer per connection (tungstenite's default is 128 KiB).
const READ_BUFFER_BYTES: usize = 4 * 1024;

fn json_message(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "message": message }).to_string(),
    )
        .into_response()
}

/// `GET /`: a WebSocket handshake, or else the demo page.
pub async fn root(State(state): State<AppState>, request: Request) -> Response {
    handshake(state, None, request).await
}

/// `GET /{stage}`: a WebSocket handshake.
pub async fn staged(
    State(state): State<AppState>,
    Path(stage): Path<String>,
    request: Request,
) -> Response {
    handshake(state, Some(stage), request).await
}

/// Turns the function's refusal into the handshake's answer.
fn refusal(response: &aws_lambda_events::apigw::ApiGatewayProxyResponse) -> Response {
    let status = u16::try_from(response.status_code)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut answer = (status, body_text(response).unwrap_or_default()).into_response();
    for (name, value) in &response.headers {
        answer.headers_mut().insert(name, value.clone());
    }
    answer
}

async fn handshake(state: AppState, stage: Option<String>, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &state).await;
    let Ok(upgrade) = upgrade else {
        return match stage {
            None => console::page(),
            Some(_) => json_message(
                StatusCode::UPGRADE_REQUIRED,
                "this is the WebSocket endpoint; connect with a WebSocket client, or open / for the demo page",
            ),
        };
    };
    if stage
        .as_deref()
        .is_some_and(|s| s != state.settings().stage)
    {
        return json_message(StatusCode::FORBIDDEN, "Forbidden");
    }
    let headers = &parts.headers;
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let now = now_ms();
    let conn = ConnectionContext {
        connection_id: apigw::new_id(),
        connected_at_ms: now,
        source_ip: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "127.0.0.1".to_owned(), |c| c.0.ip().to_string()),
        user_agent: text(header::USER_AGENT),
        domain_name: text(header::HOST)
            .unwrap_or_else(|| state.base_url().trim_start_matches("http://").to_owned()),
        stage: state.settings().stage.clone(),
        api_id: state.settings().api_id.clone(),
    };
    let query = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let event = apigw::connect_event(&conn, headers, &query, now);
    let request_id = event.request_context.request_id.clone().unwrap_or_default();
    let deps = state.deps();
    let limit = state.settings().timeouts.connect;
    let response = match invoke("connect", limit, event, |e| connect::handle(deps, e)).await {
        Err(InvokeError::TimedOut {
            integration: true, ..
        }) => return json_message(StatusCode::GATEWAY_TIMEOUT, "Endpoint request timed out"),
        Err(_) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "application/json")],
                apigw::internal_server_error(&conn.connection_id, &request_id),
            )
                .into_response()
        }
        Ok(r) if !(200..300).contains(&r.status_code) => return refusal(&r),
        Ok(r) => r,
    };
    // Small buffers: tungstenite's 128 KiB defaults are allocated per
    // connection up front and were most of the emulator's memory per held
    // connection. Messages are still read whole up to the message limit;
    // the read buffer just grows while one arrives. Writes go out per
    // message. A single frame over 32 KB fails the read (1009).
    let mut upgrade = upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_FRAME_BYTES);
    // Only what the function chose; axum echoes nothing by itself.
    if let Some(chosen) = response.headers.get(SUBPROTOCOL_HEADER) {
        upgrade.set_selected_protocol(chosen.clone());
    }
    let failed = (state.clone(), conn.clone());
    let mut answer = upgrade
        .on_failed_upgrade(move |_| {
            let (state, conn) = failed;
            tokio::spawn(async move { run_disconnect(&state, &conn, ABNORMAL).await });
        })
        .on_upgrade(move |socket| session(state, socket, conn));
    for (name, value) in &response.headers {
        let hop_by_hop = [
            header::SEC_WEBSOCKET_PROTOCOL,
            header::CONNECTION,
            header::UPGRADE,
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
        ];
        if !hop_by_hop.contains(name) {
            answer.headers_mut().insert(name, value.clone());
        }
    }
    answer
}

async fn run_disconnect(state: &AppState, conn: &ConnectionContext, (code, reason): (u16, &str)) {
    if state.faults().drop_disconnect() {
        tracing::warn!(connection_id = %conn.connection_id, "$disconnect dropped (injected fault)");
        return;
    }
    let event = apigw::disconnect_event(conn, code, reason, now_ms());
    let deps = state.deps();
    let limit = state.settings().timeouts.disconnect;
    // A failure is logged by `invoke`; API Gateway does not retry either.
    let _ = invoke("disconnect", limit, event, |e| disconnect::handle(deps, e)).await;
}

async fn write_loop(mut sink: SplitSink<WebSocket, Message>, mut rx: OutboxReceiver) {
    while let Some(out) = rx.recv().await {
        let len = out.len();
        let counted = !matches!(out, Outbound::Close(_));
        let (message, last) = match out {
            Outbound::Text(text) => (Message::Text(text.into()), false),
            Outbound::Binary(bytes) => (Message::Binary(bytes.into()), false),
            Outbound::Close(request) => (
                Message::Close(Some(CloseFrame {
                    code: request.code,
                    reason: request.reason.into(),
                })),
                true,
            ),
        };
        let sent = sink.send(message).await;
        if counted {
            rx.written(len);
        }
        if sent.is_err() || last {
            break;
        }
    }
}

/// Whether a read error is the message limit being passed.
fn is_too_big(error: axum::Error) -> bool {
    error
        .into_inner()
        .downcast::<tungstenite::Error>()
        .is_ok_and(|e| matches!(*e, tungstenite::Error::Capacity(_)))
}

/// Reads until the other side finishes closing, at most [`CLOSE_GRACE`].
async fn drain(stream: &mut SplitStream<WebSocket>) {
    let _ = timeout(CLOSE_GRACE, async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
}

/// What a route invocation needs, cloned into its task.
#[derive(Clone)]
struct Route {
    state: AppState,
    conn: ConnectionContext,
    outbox: Outbox,
}

impl Route {
    fn send(&self, out: Outbound) {
        // Closed: the socket is gone, and the reply with it, as in AWS.
        // Full: the client is not reading; the reply is dropped as a
        // PostToConnection would be refused.
        if let Err(e) = self.outbox.push(out) {
            tracing::warn!(connection_id = %self.conn.connection_id, error = %e, "reply dropped");
        }
    }

    /// Routes a text frame, invokes its function with the function's
    /// timeout and sends the route's response body back, or API Gateway's
    /// error frame when the function failed or timed out.
    async fn on_text(self, body: String) {
        let route = match route_key(&body).as_deref() {
            Some("subscribe") => "subscribe",
            Some("unsubscribe") => "unsubscribe",
            Some("publish") => "publish",
            Some("ping") => "ping",
            _ => "$default",
        };
        if route == "ping" {
            // The template answers `ping` with a mock integration: no
            // function runs, API Gateway replies itself.
            self.send(Outbound::Text(r#"{"type":"pong"}"#.to_owned()));
            return;
        }
        let event = apigw::message_event(&self.conn, route, body, now_ms());
        let request_id = event.request_context.request_id.clone().unwrap_or_default();
        let state = &self.state;
        let deps = state.deps();
        let limit = state.settings().timeouts.for_route(route);
        let result = match route {
            "subscribe" => {
                let notifier = state.notifier();
                invoke("subscribe", limit, event, |e| {
                    subscribe::handle(notifier, e)
                })
                .await
            }
            "unsubscribe" => {
                invoke("unsubscribe", limit, event, |e| {
                    unsubscribe::handle(deps, e)
                })
                .await
            }
            "publish" => {
                let queue = state.event_queue();
                invoke("publish", limit, event, |e| publish::handle(deps, queue, e)).await
            }
            _ => invoke("default", limit, event, default_route::handle).await,
        };
        match result {
            Ok(response) => {
                // Every route here has a route response (template.yaml), so
                // API Gateway sends the function's body as a message, and an
                // empty message when there is none (a replaying subscribe).
                self.send(Outbound::Text(body_text(&response).unwrap_or_default()));
            }
            Err(e) => self.send(Outbound::Text(
                e.client_frame(&self.conn.connection_id, &request_id),
            )),
        }
    }
}

struct Session {
    route: Route,
    last_active_ms: Arc<AtomicI64>,
}

impl Session {
    fn send(&self, out: Outbound) {
        self.route.send(out);
    }

    async fn close(
        &self,
        stream: &mut SplitStream<WebSocket>,
        (code, reason): (u16, &str),
    ) -> (u16, String) {
        self.send(Outbound::Close(CloseRequest {
            code,
            reason: reason.to_owned(),
        }));
        drain(stream).await;
        (code, reason.to_owned())
    }

    /// The reader: returns the close code and reason for `$disconnect`.
    async fn read(
        &self,
        stream: &mut SplitStream<WebSocket>,
        close_requests: &mut mpsc::UnboundedReceiver<CloseRequest>,
    ) -> (u16, String) {
        let settings = self.route.state.settings();
        let deadline = Instant::now() + settings.max_duration;
        let mut idle_at = Instant::now() + settings.idle_timeout;
        loop {
            let frame = tokio::select! {
                frame = stream.next() => frame,
                () = sleep_until(idle_at) => return self.close(stream, GOING_AWAY).await,
                () = sleep_until(deadline) => return self.close(stream, GOING_AWAY).await,
                Some(request) = close_requests.recv() => {
                    return self.close(stream, (request.code, &request.reason)).await;
                }
            };
            let message = match frame {
                None => return (ABNORMAL.0, ABNORMAL.1.to_owned()),
                Some(Err(e)) => {
                    if is_too_big(e) {
                        return self.close(stream, TOO_BIG).await;
                    }
                    return (ABNORMAL.0, ABNORMAL.1.to_owned());
                }
                Some(Ok(message)) => message,
            };
            idle_at = Instant::now() + settings.idle_timeout;
            self.last_active_ms.store(now_ms(), Ordering::Relaxed);
            match message {
                Message::Text(text) if text.len() > MAX_MESSAGE_BYTES => {
                    return self.close(stream, TOO_BIG).await
                }
                Message::Text(text) => {
                    let route = self.route.clone();
                    tokio::spawn(route.on_text(text.as_str().to_owned()));
                }
                Message::Binary(bytes) if bytes.len() > MAX_MESSAGE_BYTES => {
                    return self.close(stream, TOO_BIG).await
                }
                Message::Binary(_) => self.send(Outbound::Text(
                    ServerFrame::error(
                        ErrorCode::BinaryFrame,
                        "pushgate speaks JSON text frames; send this frame as text",
                    )
                    .to_json(),
                )),
                Message::Ping(_) | Message::Pong(_) => {}
                Message::Close(frame) => {
                    // Reading on lets the close reply go out.
                    drain(stream).await;
                    return frame.map_or((1005, String::new()), |f| {
                        (f.code, f.reason.as_str().to_owned())
                    });
                }
            }
        }
    }
}

async fn session(state: AppState, socket: WebSocket, conn: ConnectionContext) {
    let _running = state.sessions().track();
    let (sink, mut stream) = socket.split();
    let (outbox, outbox_rx) = Outbox::new(state.settings().outbound_buffer_bytes);
    let (close, mut close_requests) = mpsc::unbounded_channel();
    let last_active_ms = Arc::new(AtomicI64::new(conn.connected_at_ms));
    state.sessions().insert(SessionHandle {
        context: conn.clone(),
        outbox: outbox.clone(),
        close,
        last_active_ms: Arc::clone(&last_active_ms),
    });
    let writer = tokio::spawn(write_loop(sink, outbox_rx));
    let session = Session {
        route: Route {
            state: state.clone(),
            conn,
            outbox,
        },
        last_active_ms,
    };
    let (code, reason) = session.read(&mut stream, &mut close_requests).await;
    state.sessions().remove(&session.route.conn.connection_id);
    let Session {
        route: Route { conn, outbox, .. },
        ..
    } = session;
    drop(outbox);
    // Route invocations still running hold the outbox too; the writer stops
    // after the close frame, or when the grace period is over.
    let _ = timeout(CLOSE_GRACE, writer).await;
    tracing::debug!(connection_id = %conn.connection_id, code, "connection closed");
    run_disconnect(&state, &conn, (code, &reason)).await;
}
