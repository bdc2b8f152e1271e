//! The client protocol: JSON text frames from clients ([`ClientFrame`]),
//! replies to them ([`ServerFrame`]) and the stable error codes
//! ([`ErrorCode`]). Parsing is separate from any connection handling, so the
//! Lambda functions and the local emulator agree on every frame.

use serde::Serialize;
use serde_json::Value;

use crate::ids::{EntityId, IdError, UserId};
use crate::limits::{MAX_FRAME_DEPTH, MAX_MESSAGE_BYTES};
use crate::record::StreamKey;

/// The actions a client may send, in the order error messages list them.
pub const ACCEPTED_ACTIONS: &[&str] = &["subscribe", "unsubscribe", "publish", "ping"];

/// Longest `epoch` a client may send back.
pub const MAX_CLIENT_EPOCH_LEN: usize = 64;

/// Where a resuming client stands in a stream: it has everything up to
/// `since`, of `epoch` when it knows one (see `docs/design.md`, "Resume").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// The last seq the client has.
    pub since: u64,
    /// The stream's epoch as the client knows it.
    pub epoch: Option<String>,
}

/// A well-formed frame from a client.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    /// `{"action":"subscribe","entityId":"…"}`, with `"since"` (and
    /// `"epoch"`) to resume.
    Subscribe {
        /// What to subscribe to.
        entity_id: EntityId,
        /// Replay from here, when resuming.
        resume: Option<Resume>,
    },
    /// `{"action":"subscribe","userId":"…","since":…}`: resume the user's
    /// own stream, which needs no subscription.
    SubscribeUser {
        /// The user (must be the connection's).
        user_id: UserId,
        /// Replay from here, when resuming.
        resume: Option<Resume>,
    },
    /// `{"action":"ping"}`: answered `pong`. API Gateway answers it itself
    /// (a mock integration); a function answers it too, cheaply, when a
    /// deployment routes it to one.
    Ping,
    /// `{"action":"unsubscribe","entityId":"…"}`
    Unsubscribe {
        /// What to unsubscribe from.
        entity_id: EntityId,
    },
    /// `{"action":"publish","entityId":"…","data":…}`, with `"id"` to make
    /// a retried publish deduplicable.
    Publish {
        /// Whose subscribers get it.
        entity_id: EntityId,
        /// Any JSON.
        data: Value,
        /// The client's id for this publish (1–128 of `A–Z a–z 0–9 . _ : -`).
        id: Option<String>,
    },
}

/// Longest client-chosen publish `id`.
pub const MAX_PUBLISH_ID_LEN: usize = 128;

/// Stable, snake_case error codes sent in `error` frames. The message next to
/// a code is for people and may change; the code does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame was empty.
    EmptyFrame,
    /// The frame is binary; pushgate speaks JSON text frames.
    BinaryFrame,
    /// The frame is over API Gateway's 128 KB message limit.
    MessageTooLarge,
    /// The frame is not JSON.
    InvalidJson,
    /// The frame nests JSON deeper than pushgate accepts.
    TooDeeplyNested,
    /// The frame is JSON but not an object.
    InvalidFrame,
    /// The frame has no `action` string.
    MissingAction,
    /// The `action` is not one pushgate knows.
    UnknownAction,
    /// The frame has no `entityId` string.
    MissingEntityId,
    /// The `entityId` breaks the rules (1–256 bytes, no control characters).
    InvalidEntityId,
    /// `unsubscribe` for an entity the connection is not subscribed to.
    NotSubscribed,
    /// The connection has as many subscriptions as it may hold.
    TooManySubscriptions,
    /// The connection is no longer known (it closed or expired).
    ConnectionGone,
    /// `$connect` offered only subprotocols pushgate does not speak.
    UnsupportedSubprotocol,
    /// `$connect` without a valid token (HTTP 401).
    Unauthorized,
    /// The token does not allow this action on this entity (HTTP 403 at
    /// `$connect` for an unusable scope).
    Forbidden,
    /// The token expired while the connection was open.
    TokenExpired,
    /// `publish` without `data`.
    MissingData,
    /// `since` is not a whole number ≥ 0.
    InvalidSince,
    /// `epoch` is not a string of at most 64 bytes.
    InvalidEpoch,
    /// `userId` breaks the rules.
    InvalidUserId,
    /// `limit` is not a whole number from 1 to 100 (history endpoint).
    InvalidLimit,
    /// A history request names neither `entityId` nor `userId`.
    MissingStream,
    /// A publish `id` is not 1–128 of `A–Z a–z 0–9 . _ : -`.
    InvalidPublishId,
    /// Something failed on pushgate's side; the client may retry.
    InternalError,
}

impl ErrorCode {
    /// The code as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EmptyFrame => "empty_frame",
            Self::BinaryFrame => "binary_frame",
            Self::MessageTooLarge => "message_too_large",
            Self::InvalidJson => "invalid_json",
            Self::TooDeeplyNested => "too_deeply_nested",
            Self::InvalidFrame => "invalid_frame",
            Self::MissingAction => "missing_action",
            Self::UnknownAction => "unknown_action",
            Self::MissingEntityId => "missing_entity_id",
            Self::InvalidEntityId => "invalid_entity_id",
            Self::NotSubscribed => "not_subscribed",
            Self::TooManySubscriptions => "too_many_subscriptions",
            Self::ConnectionGone => "connection_gone",
            Self::UnsupportedSubprotocol => "unsupported_subprotocol",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::TokenExpired => "token_expired",
            Self::MissingData => "missing_data",
            Self::InvalidSince => "invalid_since",
            Self::InvalidEpoch => "invalid_epoch",
            Self::InvalidUserId => "invalid_user_id",
            Self::InvalidLimit => "invalid_limit",
            Self::MissingStream => "missing_stream",
            Self::InvalidPublishId => "invalid_publish_id",
            Self::InternalError => "internal_error",
        }
    }
}

/// Why a client frame was refused. Each maps to one [`ErrorCode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// No body, or an empty one.
    #[error("the frame is empty; send a JSON object such as {{\"action\":\"subscribe\",\"entityId\":\"artist:ed-sheeran\"}}")]
    Empty,
    /// Over the message limit.
    #[error("the frame is {len} bytes; the limit is {max} bytes")]
    TooLarge {
        /// Size of the frame.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not JSON.
    #[error("the frame is not JSON: {0}")]
    NotJson(String),
    /// Nested too deeply.
    #[error("the frame nests JSON deeper than {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// JSON, but not an object.
    #[error("the frame must be a JSON object with an \"action\"")]
    NotObject,
    /// No `action` string.
    #[error("the frame has no \"action\" string; accepted actions: {}", ACCEPTED_ACTIONS.join(", "))]
    MissingAction,
    /// An action pushgate does not know.
    #[error("unknown action {action:?}; accepted actions: {}", ACCEPTED_ACTIONS.join(", "))]
    UnknownAction {
        /// The action the client sent (truncated to 64 bytes).
        action: String,
    },
    /// No `entityId` string.
    #[error("the frame has no \"entityId\" string")]
    MissingEntityId,
    /// `publish` without `data`.
    #[error("the publish frame has no \"data\"")]
    MissingData,
    /// An invalid `entityId`.
    #[error("invalid entityId: {0}; entityId must be 1 to 256 bytes of UTF-8 without control characters")]
    InvalidEntityId(#[source] IdError),
    /// An invalid `userId`.
    #[error("invalid userId: {0}")]
    InvalidUserId(#[source] IdError),
    /// `since` is present but not a whole number ≥ 0.
    #[error("\"since\" must be a whole number ≥ 0: the last seq the client has")]
    InvalidSince,
    /// `epoch` is present but not a short string.
    #[error(
        "\"epoch\" must be a string of at most {MAX_CLIENT_EPOCH_LEN} bytes, as the server sent it"
    )]
    InvalidEpoch,
    /// A publish `id` that is not 1–128 of `A–Z a–z 0–9 . _ : -`.
    #[error(
        "\"id\" must be a string of 1 to {MAX_PUBLISH_ID_LEN} characters from A-Z a-z 0-9 . _ : -"
    )]
    InvalidPublishId,
}

impl FrameError {
    /// The stable code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Empty => ErrorCode::EmptyFrame,
            Self::TooLarge { .. } => ErrorCode::MessageTooLarge,
            Self::NotJson(_) => ErrorCode::InvalidJson,
            Self::TooDeep { .. } => ErrorCode::TooDeeplyNested,
            Self::NotObject => ErrorCode::InvalidFrame,
            Self::MissingAction => ErrorCode::MissingAction,
            Self::UnknownAction { .. } => ErrorCode::UnknownAction,
            Self::MissingEntityId => ErrorCode::MissingEntityId,
            Self::MissingData => ErrorCode::MissingData,
            Self::InvalidEntityId(_) => ErrorCode::InvalidEntityId,
            Self::InvalidUserId(_) => ErrorCode::InvalidUserId,
            Self::InvalidSince => ErrorCode::InvalidSince,
            Self::InvalidEpoch => ErrorCode::InvalidEpoch,
            Self::InvalidPublishId => ErrorCode::InvalidPublishId,
        }
    }

    /// The `error` frame that answers this error.
    pub fn to_frame(&self) -> ServerFrame {
        ServerFrame::error(self.code(), self.to_string())
    }
}

/// Depth of the deepest JSON array/object nesting in `text`, counted without
/// parsing (strings are skipped), so a hostile frame cannot make the parser
/// recurse before it is refused.
fn json_depth(text: &str) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Reads the `action` of a frame body, for route selection
/// (`$request.body.action`): `None` when the body is not a JSON object with
/// a string `action`, which API Gateway sends to `$default`.
pub fn route_key(body: &str) -> Option<String> {
    if body.len() > MAX_MESSAGE_BYTES || json_depth(body) > MAX_FRAME_DEPTH {
        return None;
    }
    let value: Value = serde_json::from_str(body).ok()?;
    value.get("action")?.as_str().map(str::to_owned)
}

/// Parses a JSON object frame up to its `action`, checking size and depth.
fn parse_object(body: Option<&str>) -> Result<serde_json::Map<String, Value>, FrameError> {
    let body = body.unwrap_or_default();
    if body.trim().is_empty() {
        return Err(FrameError::Empty);
    }
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(FrameError::TooLarge {
            len: body.len(),
            max: MAX_MESSAGE_BYTES,
        });
    }
    if json_depth(body) > MAX_FRAME_DEPTH {
        return Err(FrameError::TooDeep {
            max: MAX_FRAME_DEPTH,
        });
    }
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(FrameError::NotObject),
        Err(e) => Err(FrameError::NotJson(e.to_string())),
    }
}

fn truncated(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

impl Resume {
    /// Reads `since` and `epoch` from a frame (or query string, as JSON
    /// values): `None` when there is no `since`.
    pub fn read(since: Option<&Value>, epoch: Option<&Value>) -> Result<Option<Self>, FrameError> {
        let epoch = match epoch {
            None | Some(Value::Null) => None,
            Some(Value::String(e)) if e.len() <= MAX_CLIENT_EPOCH_LEN => Some(e.clone()),
            Some(_) => return Err(FrameError::InvalidEpoch),
        };
        match since {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                let since = v.as_u64().ok_or(FrameError::InvalidSince)?;
                Ok(Some(Self { since, epoch }))
            }
        }
    }
}

impl ClientFrame {
    /// Parses a frame body as API Gateway hands it to a function.
    pub fn parse(body: Option<&str>) -> Result<Self, FrameError> {
        let mut map = parse_object(body)?;
        let action = map
            .get("action")
            .and_then(Value::as_str)
            .ok_or(FrameError::MissingAction)?;
        let entity_id = || -> Result<EntityId, FrameError> {
            let raw = map
                .get("entityId")
                .and_then(Value::as_str)
                .ok_or(FrameError::MissingEntityId)?;
            EntityId::new(raw).map_err(FrameError::InvalidEntityId)
        };
        match action {
            "subscribe" => {
                let resume = Resume::read(map.get("since"), map.get("epoch"))?;
                match (
                    map.get("entityId"),
                    map.get("userId").and_then(Value::as_str),
                ) {
                    (None, Some(user)) => Ok(Self::SubscribeUser {
                        user_id: UserId::new(user).map_err(FrameError::InvalidUserId)?,
                        resume,
                    }),
                    _ => Ok(Self::Subscribe {
                        entity_id: entity_id()?,
                        resume,
                    }),
                }
            }
            "ping" => Ok(Self::Ping),
            "unsubscribe" => Ok(Self::Unsubscribe {
                entity_id: entity_id()?,
            }),
            "publish" => {
                let entity_id = entity_id()?;
                let data = map.remove("data").ok_or(FrameError::MissingData)?;
                let id = match map.get("id") {
                    None => None,
                    Some(Value::String(id))
                        if (1..=MAX_PUBLISH_ID_LEN).contains(&id.len())
                            && id.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
                            }) =>
                    {
                        Some(id.clone())
                    }
                    Some(_) => return Err(FrameError::InvalidPublishId),
                };
                Ok(Self::Publish {
                    entity_id,
                    data,
                    id,
                })
            }
            other => Err(FrameError::UnknownAction {
                action: truncated(other, 64),
            }),
        }
    }
}

/// A frame pushgate sends to a client in reply to one of its frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The subscription is stored (or, for a user stream, the resume is
    /// accepted); the stream stands at `seq` of `epoch`.
    Subscribed {
        /// The entity, for an entity stream.
        #[serde(rename = "entityId", skip_serializing_if = "Option::is_none")]
        entity_id: Option<EntityId>,
        /// The user, for a user stream.
        #[serde(rename = "userId", skip_serializing_if = "Option::is_none")]
        user_id: Option<UserId>,
        /// The last seq given out in the stream (0: none yet).
        seq: u64,
        /// The stream's epoch; absent while the stream does not exist.
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
        /// Only when resuming: whether the replay that follows is complete.
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
    },
    /// The answer to `ping`.
    Pong,
    /// A `publish` is on the notifier's queue; delivery follows.
    Accepted {
        /// The entity.
        #[serde(rename = "entityId")]
        entity_id: EntityId,
        /// The event id the subscribers' notification will carry.
        id: String,
    },
    /// The subscription is removed.
    Unsubscribed {
        /// The entity.
        #[serde(rename = "entityId")]
        entity_id: EntityId,
    },
    /// A `publish` was fanned out.
    Published {
        /// The entity.
        #[serde(rename = "entityId")]
        entity_id: EntityId,
        /// The notification id the subscribers received.
        id: String,
        /// Subscribers reached.
        delivered: usize,
    },
    /// The frame was refused.
    Error {
        /// Stable code.
        code: ErrorCode,
        /// The entity a refused `subscribe` or `unsubscribe` named, so a
        /// client with several in flight knows which one failed.
        #[serde(rename = "entityId", skip_serializing_if = "Option::is_none")]
        entity_id: Option<EntityId>,
        /// The user whose stream a refused `subscribe` named.
        #[serde(rename = "userId", skip_serializing_if = "Option::is_none")]
        user_id: Option<UserId>,
        /// Explanation for people.
        message: String,
    },
}

impl ServerFrame {
    /// An `error` frame.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            code,
            entity_id: None,
            user_id: None,
            message: message.into(),
        }
    }

    /// An `error` frame refusing a `subscribe` or `unsubscribe` of
    /// `stream`, which it names.
    pub fn refusal(code: ErrorCode, message: impl Into<String>, stream: &StreamKey) -> Self {
        let (entity_id, user_id) = match stream {
            StreamKey::Entity(e) => (Some(e.clone()), None),
            StreamKey::User(u) => (None, Some(u.clone())),
        };
        Self::Error {
            code,
            entity_id,
            user_id,
            message: message.into(),
        }
    }

    /// The frame as JSON text.
    pub fn to_json(&self) -> String {
        // Serialising these plain enums cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"internal_error","message":"serialisation failed"}"#
                .to_owned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ClientFrame, FrameError> {
        ClientFrame::parse(Some(s))
    }

    #[test]
    fn parses_subscribe_and_unsubscribe() {
        assert_eq!(
            parse(r#"{"action":"subscribe","entityId":"artist:ed-sheeran"}"#),
            Ok(ClientFrame::Subscribe {
                entity_id: EntityId::new("artist:ed-sheeran").unwrap(),
                resume: None,
            })
        );
        assert_eq!(
            parse(r#"{"action":"subscribe","entityId":"a","since":41,"epoch":"k3"}"#),
            Ok(ClientFrame::Subscribe {
                entity_id: EntityId::new("a").unwrap(),
                resume: Some(Resume {
                    since: 41,
                    epoch: Some("k3".into())
                }),
            })
        );
        assert_eq!(
            parse(r#"{"action":"subscribe","userId":"alice","since":0}"#),
            Ok(ClientFrame::SubscribeUser {
                user_id: UserId::new("alice").unwrap(),
                resume: Some(Resume {
                    since: 0,
                    epoch: None
                }),
            })
        );
        assert_eq!(parse(r#"{"action":"ping"}"#), Ok(ClientFrame::Ping));
        assert_eq!(
            parse(r#"{"action":"unsubscribe","entityId":"venue:1","extra":true}"#),
            Ok(ClientFrame::Unsubscribe {
                entity_id: EntityId::new("venue:1").unwrap()
            })
        );
    }

    #[test]
    fn every_bad_frame_gets_its_code() {
        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        let huge = format!(
            r#"{{"action":"subscribe","entityId":"{}"}}"#,
            "x".repeat(MAX_MESSAGE_BYTES)
        );
        let long_id = format!(
            r#"{{"action":"subscribe","entityId":"{}"}}"#,
            "x".repeat(257)
        );
        let cases: Vec<(Option<&str>, ErrorCode)> = vec![
            (None, ErrorCode::EmptyFrame),
            (Some("   "), ErrorCode::EmptyFrame),
            (Some("hello"), ErrorCode::InvalidJson),
            (Some("{\"action\":"), ErrorCode::InvalidJson),
            (Some(&deep), ErrorCode::TooDeeplyNested),
            (Some(&huge), ErrorCode::MessageTooLarge),
            (Some("[1,2]"), ErrorCode::InvalidFrame),
            (Some("\"subscribe\""), ErrorCode::InvalidFrame),
            (Some("{}"), ErrorCode::MissingAction),
            (Some(r#"{"action":7}"#), ErrorCode::MissingAction),
            (Some(r#"{"action":"dance"}"#), ErrorCode::UnknownAction),
            (
                Some(r#"{"action":"subscribe"}"#),
                ErrorCode::MissingEntityId,
            ),
            (
                Some(r#"{"action":"subscribe","entityId":5}"#),
                ErrorCode::MissingEntityId,
            ),
            (
                Some(r#"{"action":"subscribe","entityId":""}"#),
                ErrorCode::InvalidEntityId,
            ),
            (Some(&long_id), ErrorCode::InvalidEntityId),
            (
                Some(r#"{"action":"publish","entityId":"a"}"#),
                ErrorCode::MissingData,
            ),
            (
                Some(r#"{"action":"publish","data":1}"#),
                ErrorCode::MissingEntityId,
            ),
            (
                Some(r#"{"action":"unsubscribe","entityId":"a\u0000b"}"#),
                ErrorCode::InvalidEntityId,
            ),
            (
                Some(r#"{"action":"subscribe","entityId":"a","since":-1}"#),
                ErrorCode::InvalidSince,
            ),
            (
                Some(r#"{"action":"subscribe","entityId":"a","since":"4"}"#),
                ErrorCode::InvalidSince,
            ),
            (
                Some(r#"{"action":"subscribe","entityId":"a","since":1.5}"#),
                ErrorCode::InvalidSince,
            ),
            (
                Some(r#"{"action":"subscribe","entityId":"a","since":1,"epoch":7}"#),
                ErrorCode::InvalidEpoch,
            ),
            (
                Some(r#"{"action":"subscribe","userId":""}"#),
                ErrorCode::InvalidUserId,
            ),
        ];
        for (body, code) in cases {
            let err = ClientFrame::parse(body).expect_err("must be refused");
            assert_eq!(err.code(), code, "body {body:?}: {err}");
        }
    }

    #[test]
    fn unknown_action_names_the_accepted_ones() {
        let err = parse(r#"{"action":"dance"}"#).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("\"dance\"") && msg.contains("subscribe, unsubscribe, publish, ping"),
            "{msg}"
        );
    }

    #[test]
    fn server_frames_match_the_contract() {
        let e = EntityId::new("artist:ed-sheeran").unwrap();
        assert_eq!(
            ServerFrame::Subscribed {
                entity_id: Some(e.clone()),
                user_id: None,
                seq: 0,
                epoch: None,
                recovered: None,
            }
            .to_json(),
            r#"{"type":"subscribed","entityId":"artist:ed-sheeran","seq":0}"#
        );
        assert_eq!(
            ServerFrame::Subscribed {
                entity_id: Some(e.clone()),
                user_id: None,
                seq: 48,
                epoch: Some("k3".into()),
                recovered: Some(true),
            }
            .to_json(),
            r#"{"type":"subscribed","entityId":"artist:ed-sheeran","seq":48,"epoch":"k3","recovered":true}"#
        );
        assert_eq!(ServerFrame::Pong.to_json(), r#"{"type":"pong"}"#);
        assert_eq!(
            ServerFrame::Unsubscribed { entity_id: e }.to_json(),
            r#"{"type":"unsubscribed","entityId":"artist:ed-sheeran"}"#
        );
        assert_eq!(
            ServerFrame::error(ErrorCode::InvalidEntityId, "bad").to_json(),
            r#"{"type":"error","code":"invalid_entity_id","message":"bad"}"#
        );
        assert_eq!(
            ServerFrame::refusal(
                ErrorCode::Forbidden,
                "no",
                &StreamKey::Entity(EntityId::new("artist:x").unwrap())
            )
            .to_json(),
            r#"{"type":"error","code":"forbidden","entityId":"artist:x","message":"no"}"#
        );
        assert_eq!(
            ServerFrame::refusal(
                ErrorCode::Forbidden,
                "no",
                &StreamKey::User(UserId::new("alice").unwrap())
            )
            .to_json(),
            r#"{"type":"error","code":"forbidden","userId":"alice","message":"no"}"#
        );
        assert_eq!(
            ErrorCode::TooManySubscriptions.as_str(),
            "too_many_subscriptions"
        );
    }

    #[test]
    fn route_key_reads_the_action() {
        assert_eq!(
            route_key(r#"{"action":"subscribe"}"#).as_deref(),
            Some("subscribe")
        );
        assert_eq!(route_key("nope"), None);
        assert_eq!(route_key(r#"{"action":1}"#), None);
        assert_eq!(json_depth(r#"{"a":"[[[[","b":[{}]}"#), 3);
    }
}
