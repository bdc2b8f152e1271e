//! `$connect`: authenticates the request, picks a subprotocol and stores the
//! connection record with the token's user and scope.
//!
//! Browsers cannot set headers on a WebSocket, so the token comes either in
//! the `token` query parameter or as the second of the subprotocols
//! `pushgate.v1, <token>`; the chosen subprotocol `pushgate.v1` is echoed,
//! the token never is.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::http::{HeaderMap, HeaderValue};
use pushgate_domain::auth::{AuthError, Scope, TOKEN_SUBPROTOCOL};
use pushgate_domain::record::ConnectionRecord;
use pushgate_domain::{AuthMode, ErrorCode, ServerFrame, UserId};

use crate::{connection_id, reply, Deps, FunctionError};

/// Subprotocols pushgate speaks, in order of preference. `websocket` is the
/// one Postman users are told to send; `pushgate.v1` carries a token.
pub const SUBPROTOCOLS: &[&str] = &[TOKEN_SUBPROTOCOL, "websocket"];

/// The header carrying offered and chosen subprotocols.
pub const SUBPROTOCOL_HEADER: &str = "sec-websocket-protocol";

/// The client offered subprotocols, none of which pushgate speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("none of the offered subprotocols is supported")]
pub struct NoSupportedSubprotocol;

/// What the client offered in `Sec-WebSocket-Protocol`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Offer<'a> {
    /// Offered subprotocols, the token excluded.
    pub protocols: Vec<&'a str>,
    /// The entry after `pushgate.v1`, if any.
    pub token: Option<&'a str>,
}

impl<'a> Offer<'a> {
    /// Reads the offer from request headers.
    pub fn from_headers(headers: &'a HeaderMap) -> Self {
        let all: Vec<&str> = headers
            .get_all(SUBPROTOCOL_HEADER)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        // The entry after `pushgate.v1` is the token, unless it is a
        // subprotocol pushgate speaks: `pushgate.v1, websocket` (a client
        // that sends its token in the query string) carries no token, and
        // taking `websocket` for one would refuse the handshake.
        let token_at = all
            .iter()
            .position(|p| *p == TOKEN_SUBPROTOCOL)
            .map(|i| i + 1)
            .filter(|i| all.get(*i).is_some_and(|p| !SUBPROTOCOLS.contains(p)));
        Self {
            token: token_at.map(|i| all[i]),
            protocols: all
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != token_at)
                .map(|(_, p)| *p)
                .collect(),
        }
    }

    /// Which offered subprotocol to accept: `Ok(None)` when none was
    /// offered, an error when pushgate knows none of them.
    pub fn choose(&self) -> Result<Option<&'static str>, NoSupportedSubprotocol> {
        if self.protocols.is_empty() {
            return Ok(None);
        }
        SUBPROTOCOLS
            .iter()
            .find(|known| self.protocols.contains(known))
            .map(|p| Some(*p))
            .ok_or(NoSupportedSubprotocol)
    }
}

/// The user id a Lambda authorizer put on the request (`principalId`).
fn authorizer_user(request: &ApiGatewayWebsocketProxyRequest) -> Option<UserId> {
    let fields = &request.request_context.authorizer.fields;
    let raw = fields.get("principalId").or_else(|| fields.get("userId"))?;
    raw.as_str().and_then(|s| UserId::new(s).ok())
}

/// Where the token came from, for logs (never the token itself).
fn token_source(
    request: &ApiGatewayWebsocketProxyRequest,
    offered_token: Option<&str>,
) -> &'static str {
    match request.query_string_parameters.first("token") {
        Some(t) if !t.is_empty() => "query",
        _ if offered_token.is_some_and(|t| !t.is_empty()) => "subprotocol",
        _ => "none",
    }
}

/// Who is connecting: the user and scope, or why not.
fn authenticate(
    deps: &Deps,
    request: &ApiGatewayWebsocketProxyRequest,
    offered_token: Option<&str>,
) -> Result<(Option<UserId>, Option<Scope>), AuthError> {
    let token = request
        .query_string_parameters
        .first("token")
        .filter(|t| !t.is_empty())
        .or(offered_token)
        .filter(|t| !t.is_empty());
    match (token, &deps.verifier) {
        (Some(token), Some(verifier)) => {
            let (user, claims) = verifier.verify(token, deps.clock.now_secs())?;
            Ok((
                Some(user),
                Some(Scope {
                    grants: claims.grants,
                    expires_at: claims.exp,
                }),
            ))
        }
        (Some(_), None) => Err(AuthError::Malformed(
            "this stage has no signing key configured, so it accepts no tokens".into(),
        )),
        (None, _) if deps.config.auth_mode == AuthMode::Anonymous => {
            Ok((authorizer_user(request), None))
        }
        (None, _) => Err(AuthError::Missing),
    }
}

fn refusal(status: i64, code: ErrorCode, message: String) -> ApiGatewayProxyResponse {
    reply::frame(status, &ServerFrame::error(code, message))
}

/// Handles `$connect`: a 200 (with the chosen subprotocol) accepts the
/// handshake; 400, 401 or 403 refuses it and stores nothing.
pub async fn handle(
    deps: &Deps,
    request: ApiGatewayWebsocketProxyRequest,
) -> Result<ApiGatewayProxyResponse, FunctionError> {
    let id = connection_id(&request.request_context)?;
    let offer = Offer::from_headers(&request.headers);
    let Ok(subprotocol) = offer.choose() else {
        tracing::info!(connection_id = %id, "refused: no supported subprotocol offered");
        let message = format!(
            "none of the offered subprotocols is supported; supported: {}",
            SUBPROTOCOLS.join(", ")
        );
        return Ok(refusal(400, ErrorCode::UnsupportedSubprotocol, message));
    };
    let (user_id, scope) = match authenticate(deps, &request, offer.token) {
        Ok(who) => who,
        Err(e) => {
            // Which failure and where the token was, never the token.
            tracing::warn!(
                connection_id = %id,
                reason = e.kind(),
                token_source = token_source(&request, offer.token),
                "refused: authentication failed"
            );
            let code = match &e {
                AuthError::Expired => ErrorCode::TokenExpired,
                AuthError::BadScope(_) => ErrorCode::Forbidden,
                _ => ErrorCode::Unauthorized,
            };
            return Ok(refusal(i64::from(e.status()), code, e.to_string()));
        }
    };
    let context = &request.request_context;
    let now_ms = deps.clock.now_ms();
    let record = ConnectionRecord {
        connection_id: id.clone(),
        user_id,
        source_ip: context.identity.source_ip.clone(),
        user_agent: context.identity.user_agent.clone(),
        connected_at_ms: if context.connected_at > 0 {
            context.connected_at
        } else {
            now_ms
        },
        expires_at: deps.expires_at(),
        scope,
    };
    deps.store.put_connection(&record).await?;
    tracing::info!(
        connection_id = %id,
        user_id = record.user_id.as_ref().map_or("-", |u| u.as_str()),
        subprotocol = subprotocol.unwrap_or("-"),
        token_source = token_source(&request, offer.token),
        "connected"
    );
    let mut response = reply::json(200, String::new());
    response.body = None;
    if let Some(p) = subprotocol {
        response
            .headers
            .insert(SUBPROTOCOL_HEADER, HeaderValue::from_static(p));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_split_from_the_offered_subprotocols() {
        let mut headers = HeaderMap::new();
        headers.insert(
            SUBPROTOCOL_HEADER,
            HeaderValue::from_static("pushgate.v1, abc.def.ghi"),
        );
        let offer = Offer::from_headers(&headers);
        assert_eq!(offer.token, Some("abc.def.ghi"));
        assert_eq!(offer.protocols, vec!["pushgate.v1"]);
        assert_eq!(offer.choose(), Ok(Some("pushgate.v1")));

        headers.insert(SUBPROTOCOL_HEADER, HeaderValue::from_static("mqtt"));
        assert_eq!(
            Offer::from_headers(&headers).choose(),
            Err(NoSupportedSubprotocol)
        );
        assert_eq!(Offer::from_headers(&HeaderMap::new()).choose(), Ok(None));
    }

    #[test]
    fn a_known_subprotocol_after_pushgate_v1_is_not_a_token() {
        let mut headers = HeaderMap::new();
        headers.insert(
            SUBPROTOCOL_HEADER,
            HeaderValue::from_static("pushgate.v1, websocket"),
        );
        let offer = Offer::from_headers(&headers);
        assert_eq!(offer.token, None);
        assert_eq!(offer.protocols, vec!["pushgate.v1", "websocket"]);
        assert_eq!(offer.choose(), Ok(Some("pushgate.v1")));

        headers.insert(SUBPROTOCOL_HEADER, HeaderValue::from_static("pushgate.v1"));
        assert_eq!(Offer::from_headers(&headers).token, None);
    }
}
