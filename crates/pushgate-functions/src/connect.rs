//! `$connect`: picks a subprotocol, stores the connection record.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::http::{HeaderMap, HeaderValue};
use pushgate_domain::record::ConnectionRecord;
use pushgate_domain::{ErrorCode, ServerFrame, UserId};

use crate::{connection_id, reply, Deps, FunctionError};

/// Subprotocols pushgate speaks, in order of preference. `websocket` is the
/// one Postman users are told to send.
pub const SUBPROTOCOLS: &[&str] = &["websocket"];

/// The header carrying offered and chosen subprotocols.
pub const SUBPROTOCOL_HEADER: &str = "sec-websocket-protocol";

/// The client offered subprotocols, none of which pushgate speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("none of the offered subprotocols is supported")]
pub struct NoSupportedSubprotocol;

/// Which offered subprotocol to accept: `Ok(None)` when none was offered,
/// an error when some were offered and pushgate knows none of them.
pub fn choose_subprotocol(
    headers: &HeaderMap,
) -> Result<Option<&'static str>, NoSupportedSubprotocol> {
    let offered: Vec<&str> = headers
        .get_all(SUBPROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if offered.is_empty() {
        return Ok(None);
    }
    SUBPROTOCOLS
        .iter()
        .find(|known| offered.contains(known))
        .map(|p| Some(*p))
        .ok_or(NoSupportedSubprotocol)
}

/// The user id an authorizer put on the request (`principalId`), if valid.
fn user_id(request: &ApiGatewayWebsocketProxyRequest) -> Option<UserId> {
    let fields = &request.request_context.authorizer.fields;
    let raw = fields.get("principalId").or_else(|| fields.get("userId"))?;
    raw.as_str().and_then(|s| UserId::new(s).ok())
}

/// Handles `$connect`: a 200 (with the chosen subprotocol) accepts the
/// handshake; a 400 refuses it and stores nothing.
pub async fn handle(
    deps: &Deps,
    request: ApiGatewayWebsocketProxyRequest,
) -> Result<ApiGatewayProxyResponse, FunctionError> {
    let id = connection_id(&request.request_context)?;
    let Ok(subprotocol) = choose_subprotocol(&request.headers) else {
        tracing::info!(connection_id = %id, "refused: no supported subprotocol offered");
        let message = format!(
            "none of the offered subprotocols is supported; supported: {}",
            SUBPROTOCOLS.join(", ")
        );
        return Ok(reply::frame(
            400,
            &ServerFrame::error(ErrorCode::UnsupportedSubprotocol, message),
        ));
    };
    let context = &request.request_context;
    let now_ms = deps.clock.now_ms();
    let record = ConnectionRecord {
        connection_id: id.clone(),
        user_id: user_id(&request),
        source_ip: context.identity.source_ip.clone(),
        user_agent: context.identity.user_agent.clone(),
        connected_at_ms: if context.connected_at > 0 {
            context.connected_at
        } else {
            now_ms
        },
        expires_at: deps.expires_at(),
    };
    deps.store.put_connection(&record).await?;
    tracing::info!(connection_id = %id, subprotocol = subprotocol.unwrap_or("-"), "connected");
    let mut response = reply::json(200, String::new());
    response.body = None;
    if let Some(p) = subprotocol {
        response
            .headers
            .insert(SUBPROTOCOL_HEADER, HeaderValue::from_static(p));
    }
    Ok(response)
}
