//! `history`: `GET /history?entityId=…&since=N[&epoch=…][&limit=…]` (or
//! `userId=…`) behind an HTTP API, for clients that cannot keep a WebSocket
//! (proxies that block them poll it) and for repairing a gap. It answers the
//! stream's head and the retained notifications after `since`, the very
//! frames the socket carries, with `recovered` as `subscribe` computes it
//! (see `docs/design.md`, "HTTP history endpoint").
//!
//! It takes the token `$connect` takes, as `Authorization: Bearer <jwt>`,
//! and checks the same subscribe grant; without a token it answers only
//! where `AUTH_MODE=anonymous` allows anonymous subscribers, and never a
//! user's stream.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::query_map::QueryMap;
use pushgate_domain::auth::{authorize, Action, AuthError, Denied, Scope};
use pushgate_domain::protocol::{Resume, MAX_CLIENT_EPOCH_LEN};
use pushgate_domain::record::is_recovered;
use pushgate_domain::{AuthMode, EntityId, ErrorCode, StreamKey, UserId};
use serde::Serialize;
use serde_json::Value;

use crate::{Deps, FunctionError};

/// Most notifications in one answer (and the default).
pub const MAX_LIMIT: usize = 100;

/// A refused request: status, stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// Stable code.
    pub code: ErrorCode,
    /// Explanation.
    pub message: String,
}

impl Refusal {
    fn new(status: u16, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<AuthError> for Refusal {
    fn from(e: AuthError) -> Self {
        let code = match &e {
            AuthError::Expired => ErrorCode::TokenExpired,
            AuthError::BadScope(_) => ErrorCode::Forbidden,
            _ => ErrorCode::Unauthorized,
        };
        Self::new(e.status(), code, e.to_string())
    }
}

/// What a well-formed request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    /// The stream.
    pub stream: StreamKey,
    /// Where the client stands, if anywhere.
    pub resume: Option<Resume>,
    /// Most notifications to answer.
    pub limit: usize,
}

impl HistoryQuery {
    /// Reads the query string.
    pub fn parse(query: &QueryMap) -> Result<Self, Refusal> {
        let bad = |code, message: &str| Refusal::new(400, code, message);
        let stream = match (query.first("entityId"), query.first("userId")) {
            (Some(e), _) => StreamKey::Entity(EntityId::new(e).map_err(|e| {
                bad(
                    ErrorCode::InvalidEntityId,
                    &format!("invalid entityId: {e}"),
                )
            })?),
            (None, Some(u)) => StreamKey::User(
                UserId::new(u)
                    .map_err(|e| bad(ErrorCode::InvalidUserId, &format!("invalid userId: {e}")))?,
            ),
            (None, None) => {
                return Err(bad(
                    ErrorCode::MissingStream,
                    "name the stream: ?entityId=… or ?userId=…",
                ))
            }
        };
        let epoch = query.first("epoch").filter(|e| !e.is_empty());
        if epoch.is_some_and(|e| e.len() > MAX_CLIENT_EPOCH_LEN) {
            return Err(bad(ErrorCode::InvalidEpoch, "epoch is too long"));
        }
        let resume = match query.first("since") {
            None | Some("") => None,
            Some(s) => Some(Resume {
                since: s.parse().map_err(|_| {
                    bad(
                        ErrorCode::InvalidSince,
                        "since must be a whole number ≥ 0: the last seq the client has",
                    )
                })?,
                epoch: epoch.map(str::to_owned),
            }),
        };
        let limit = match query.first("limit") {
            None | Some("") => MAX_LIMIT,
            Some(l) => match l.parse::<usize>() {
                Ok(n @ 1..=MAX_LIMIT) => n,
                _ => {
                    return Err(bad(
                        ErrorCode::InvalidLimit,
                        &format!("limit must be a whole number from 1 to {MAX_LIMIT}"),
                    ))
                }
            },
        };
        Ok(Self {
            stream,
            resume,
            limit,
        })
    }
}

#[derive(Serialize)]
struct Answer {
    #[serde(rename = "entityId", skip_serializing_if = "Option::is_none")]
    entity_id: Option<EntityId>,
    #[serde(rename = "userId", skip_serializing_if = "Option::is_none")]
    user_id: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<String>,
    seq: u64,
    recovered: bool,
    notifications: Vec<Value>,
}

/// The bearer token of an `Authorization` header value.
fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Checks the caller may read `stream` with the token in `authorization`.
fn allow(deps: &Deps, authorization: Option<&str>, stream: &StreamKey) -> Result<(), Refusal> {
    let now = deps.clock.now_secs();
    let caller: Option<(UserId, Scope)> = match (bearer(authorization), &deps.verifier) {
        (Some(token), Some(verifier)) => {
            let (user, claims) = verifier.verify(token, now)?;
            Some((
                user,
                Scope {
                    grants: claims.grants,
                    expires_at: claims.exp,
                },
            ))
        }
        (Some(_), None) => {
            return Err(AuthError::Malformed(
                "this stage has no signing key configured, so it accepts no tokens".into(),
            )
            .into())
        }
        (None, _) if deps.config.auth_mode == AuthMode::Anonymous => None,
        (None, _) => {
            return Err(Refusal::new(
                401,
                ErrorCode::Unauthorized,
                "a token is required: send Authorization: Bearer <jwt>",
            ))
        }
    };
    match (stream, &caller) {
        (StreamKey::Entity(entity), _) => authorize(
            caller.as_ref().map(|(_, s)| s),
            Action::Subscribe,
            entity,
            now,
        )
        .map_err(|denied| match denied {
            Denied::TokenExpired => Refusal::new(401, ErrorCode::TokenExpired, denied.to_string()),
            Denied::Forbidden { .. } => Refusal::new(403, ErrorCode::Forbidden, denied.to_string()),
        }),
        (StreamKey::User(user), Some((sub, _))) if sub == user => Ok(()),
        (StreamKey::User(_), _) => Err(Refusal::new(
            403,
            ErrorCode::Forbidden,
            "a user's stream is readable only with that user's token",
        )),
    }
}

/// `(status, JSON body)` for a request with `query` and `authorization`
/// (the `Authorization` header's value): the part of the function that
/// does not depend on how HTTP reached it, shared by the Lambda handler
/// and the local emulator.
pub async fn answer(
    deps: &Deps,
    query: &QueryMap,
    authorization: Option<&str>,
) -> Result<(u16, String), FunctionError> {
    let request = match HistoryQuery::parse(query)
        .and_then(|q| allow(deps, authorization, &q.stream).map(|()| q))
    {
        Ok(q) => q,
        Err(refusal) => {
            tracing::info!(
                status = refusal.status,
                code = refusal.code.as_str(),
                "history refused"
            );
            let body = serde_json::json!({"code": refusal.code, "message": refusal.message});
            return Ok((refusal.status, body.to_string()));
        }
    };
    let now = deps.clock.now_secs();
    let head = deps.store.stream_head(&request.stream, now).await?;
    let seq = head.as_ref().map_or(0, |h| h.seq);
    let (notifications, recovered) = match &request.resume {
        None => (Vec::new(), true),
        Some(resume) => {
            let entries = if seq > resume.since {
                deps.store
                    .history(&request.stream, resume.since, request.limit, now)
                    .await?
            } else {
                Vec::new()
            };
            let recovered = is_recovered(
                head.as_ref(),
                resume.since,
                resume.epoch.as_deref(),
                entries.first().map(|e| e.seq),
            );
            let frames = if recovered {
                entries
                    .iter()
                    .filter_map(|e| serde_json::from_str(&e.payload).ok())
                    .collect()
            } else {
                Vec::new()
            };
            (frames, recovered)
        }
    };
    let (entity_id, user_id) = match request.stream {
        StreamKey::Entity(e) => (Some(e), None),
        StreamKey::User(u) => (None, Some(u)),
    };
    let body = serde_json::to_string(&Answer {
        entity_id,
        user_id,
        epoch: head.map(|h| h.epoch),
        seq,
        recovered,
        notifications,
    })
    .unwrap_or_default();
    Ok((200, body))
}

/// Handles an HTTP API (payload format 2.0) request.
// `ApiGatewayV2httpResponse` is `#[non_exhaustive]`: built from `Default`.
#[allow(clippy::field_reassign_with_default)]
pub async fn handle(
    deps: &Deps,
    request: ApiGatewayV2httpRequest,
) -> Result<ApiGatewayV2httpResponse, FunctionError> {
    let authorization = request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let (status, body) = answer(deps, &request.query_string_parameters, authorization).await?;
    let mut response = ApiGatewayV2httpResponse::default();
    response.status_code = i64::from(status);
    response.headers.insert(
        "content-type",
        aws_lambda_events::http::HeaderValue::from_static("application/json"),
    );
    // Never cached by a proxy between the client and the API: the answer
    // changes with every event and depends on the token.
    response.headers.insert(
        "cache-control",
        aws_lambda_events::http::HeaderValue::from_static("no-store"),
    );
    response.body = Some(Body::Text(body));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bearer_tokens() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }
}
