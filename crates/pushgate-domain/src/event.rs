//! Events in and notifications out: an EventBridge event (an SQS record body)
//! becomes a [`NotificationEvent`], whose envelope is serialised once and
//! pushed to every subscriber.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{EntityId, IdError, UserId};
use crate::limits::MAX_MESSAGE_BYTES;
use crate::record::{StreamHead, StreamKey};

/// Longest epoch a store hands out; [`NotificationEvent::check_size`]
/// reserves room for it.
pub const MAX_EPOCH_LEN: usize = 16;

/// Why an event can never be delivered. Every variant is permanent: retrying
/// the same record gives the same answer, so it belongs in the DLQ.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The record body is not a JSON EventBridge event.
    #[error("the record body is not an EventBridge event: {0}")]
    NotAnEvent(#[source] serde_json::Error),
    /// The event's `detail` is not an object.
    #[error("the event's detail must be an object with entityId and message")]
    DetailNotObject,
    /// Neither `detail.entityId` nor `detail.userId`.
    #[error("the event's detail has neither an entityId nor a userId string")]
    MissingTarget,
    /// An invalid `detail.entityId`.
    #[error("the event's detail.entityId is invalid: {0}")]
    InvalidEntityId(#[source] IdError),
    /// An invalid `detail.userId`.
    #[error("the event's detail.userId is invalid: {0}")]
    InvalidUserId(#[source] IdError),
    /// No `detail.message`.
    #[error("the event's detail has no message")]
    MissingMessage,
    /// The notification would exceed API Gateway's message limit.
    #[error("the notification is {len} bytes; API Gateway's limit is {max} bytes")]
    TooLarge {
        /// Serialised size.
        len: usize,
        /// The limit.
        max: usize,
    },
}

#[derive(Deserialize)]
struct EventBridgeEvent {
    id: String,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    detail: Value,
}

/// An event to deliver to the subscribers of an entity, to every
/// connection of a user, or both (each connection gets it once).
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationEvent {
    /// The EventBridge event id; clients drop duplicates by it.
    pub id: String,
    /// When the event happened, as EventBridge stamped it.
    pub time: Option<String>,
    /// Whose subscribers get it.
    pub entity_id: Option<EntityId>,
    /// Whose connections get it.
    pub user_id: Option<UserId>,
    /// The producer's message, any JSON.
    pub data: Value,
}

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    #[serde(rename = "entityId", skip_serializing_if = "Option::is_none")]
    entity_id: Option<&'a EntityId>,
    #[serde(rename = "userId", skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a UserId>,
    seq: u64,
    epoch: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<&'a str>,
    data: &'a Value,
}

impl NotificationEvent {
    /// Reads a whole EventBridge event, as SQS delivers it in a record body.
    pub fn from_eventbridge_json(body: &str) -> Result<Self, EventError> {
        let event: EventBridgeEvent = serde_json::from_str(body).map_err(EventError::NotAnEvent)?;
        let Value::Object(mut detail) = event.detail else {
            return Err(EventError::DetailNotObject);
        };
        let entity_id = match detail.get("entityId") {
            Some(Value::String(s)) => {
                Some(EntityId::new(s.as_str()).map_err(EventError::InvalidEntityId)?)
            }
            _ => None,
        };
        let user_id = match detail.get("userId") {
            Some(Value::String(s)) => {
                Some(UserId::new(s.as_str()).map_err(EventError::InvalidUserId)?)
            }
            _ => None,
        };
        if entity_id.is_none() && user_id.is_none() {
            return Err(EventError::MissingTarget);
        }
        let data = detail.remove("message").ok_or(EventError::MissingMessage)?;
        Ok(Self {
            id: event.id,
            time: event.time,
            entity_id,
            user_id,
            data,
        })
    }

    /// The streams the event is appended to: its entity's, then its
    /// user's (see `docs/design.md`, "Sequence numbers").
    pub fn streams(&self) -> Vec<StreamKey> {
        self.entity_id
            .iter()
            .cloned()
            .map(StreamKey::Entity)
            .chain(self.user_id.iter().cloned().map(StreamKey::User))
            .collect()
    }

    /// The `notification` frame for `stream` at `position`, serialised once
    /// for every subscriber, or [`EventError::TooLarge`] when API Gateway
    /// would refuse it. A frame of a user's stream names the user; one of an
    /// entity's stream does not, which is how a client tells them apart.
    pub fn envelope(
        &self,
        stream: &StreamKey,
        position: &StreamHead,
    ) -> Result<Vec<u8>, EventError> {
        let user_id = match stream {
            StreamKey::User(u) => Some(u),
            StreamKey::Entity(_) => None,
        };
        let bytes = serde_json::to_vec(&Envelope {
            kind: "notification",
            id: &self.id,
            entity_id: self.entity_id.as_ref(),
            user_id,
            seq: position.seq,
            epoch: &position.epoch,
            time: self.time.as_deref(),
            data: &self.data,
        })
        .map_err(EventError::NotAnEvent)?;
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(EventError::TooLarge {
                len: bytes.len(),
                max: MAX_MESSAGE_BYTES,
            });
        }
        Ok(bytes)
    }

    /// Refuses, before any sequence number is spent on it, an event whose
    /// frame would exceed API Gateway's limit at any seq and epoch.
    pub fn check_size(&self) -> Result<(), EventError> {
        let widest = StreamHead {
            seq: u64::MAX,
            epoch: "x".repeat(MAX_EPOCH_LEN),
        };
        for stream in self.streams() {
            self.envelope(&stream, &widest)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"version":"0","id":"6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type":"Entity Updated","source":"pushgate","account":"123456789012",
        "time":"2026-11-22T10:00:00Z","region":"us-east-1","resources":[],
        "detail":{"entityId":"artist:ed-sheeran","message":{"tickets":"on sale"}}}"#;

    #[test]
    fn reads_an_eventbridge_event_and_builds_the_envelope() {
        let event = NotificationEvent::from_eventbridge_json(EVENT).unwrap();
        assert_eq!(
            event.entity_id.as_ref().unwrap().as_str(),
            "artist:ed-sheeran"
        );
        assert_eq!(event.user_id, None);
        let head = StreamHead {
            seq: 42,
            epoch: "k3v9".into(),
        };
        let stream = &event.streams()[0];
        let envelope: Value =
            serde_json::from_slice(&event.envelope(stream, &head).unwrap()).unwrap();
        assert_eq!(
            envelope,
            serde_json::json!({"type":"notification","id":"6a7e8feb-b491-4cf7-a9f1-bf3703467718",
                "entityId":"artist:ed-sheeran","seq":42,"epoch":"k3v9","time":"2026-11-22T10:00:00Z",
                "data":{"tickets":"on sale"}})
        );
    }

    #[test]
    fn user_targeted_events_name_the_user() {
        let body = r#"{"id":"e1","detail":{"userId":"alice","message":"hi"}}"#;
        let event = NotificationEvent::from_eventbridge_json(body).unwrap();
        assert_eq!(event.entity_id, None);
        let head = StreamHead {
            seq: 1,
            epoch: "e".into(),
        };
        let streams = event.streams();
        assert_eq!(
            streams,
            vec![StreamKey::User(UserId::new("alice").unwrap())]
        );
        let envelope: Value =
            serde_json::from_slice(&event.envelope(&streams[0], &head).unwrap()).unwrap();
        assert_eq!(
            envelope,
            serde_json::json!({"type":"notification","id":"e1","userId":"alice","seq":1,"epoch":"e","data":"hi"})
        );
        let both = r#"{"id":"e2","detail":{"userId":"alice","entityId":"order:7","message":1}}"#;
        let event = NotificationEvent::from_eventbridge_json(both).unwrap();
        let streams = event.streams();
        assert_eq!(streams.len(), 2);
        let entity_frame: Value =
            serde_json::from_slice(&event.envelope(&streams[0], &head).unwrap()).unwrap();
        assert_eq!(
            entity_frame.get("userId"),
            None,
            "an entity-stream frame names no user"
        );
        let user_frame: Value =
            serde_json::from_slice(&event.envelope(&streams[1], &head).unwrap()).unwrap();
        assert_eq!(user_frame["userId"], "alice");
        assert_eq!(user_frame["entityId"], "order:7");
    }

    #[test]
    fn refuses_events_that_can_never_be_delivered() {
        let bad = |detail: &str| {
            NotificationEvent::from_eventbridge_json(&format!(r#"{{"id":"1","detail":{detail}}}"#))
        };
        assert!(matches!(
            NotificationEvent::from_eventbridge_json("not json"),
            Err(EventError::NotAnEvent(_))
        ));
        assert!(matches!(bad("[]"), Err(EventError::DetailNotObject)));
        assert!(matches!(
            bad(r#"{"message":1}"#),
            Err(EventError::MissingTarget)
        ));
        assert!(matches!(
            bad(r#"{"entityId":"","message":1}"#),
            Err(EventError::InvalidEntityId(_))
        ));
        assert!(matches!(
            bad(r#"{"entityId":"a"}"#),
            Err(EventError::MissingMessage)
        ));
        let big = bad(&format!(
            r#"{{"entityId":"a","message":"{}"}}"#,
            "x".repeat(MAX_MESSAGE_BYTES)
        ))
        .unwrap();
        assert!(matches!(big.check_size(), Err(EventError::TooLarge { .. })));
    }
}

/// `epoch_secs` as RFC 3339 UTC (`2026-11-22T10:00:00Z`), the format
/// EventBridge stamps on events.
pub fn rfc3339(epoch_secs: i64) -> String {
    // Howard Hinnant's civil-from-days.
    let days = epoch_secs.div_euclid(86_400);
    let secs = epoch_secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn formats_rfc3339() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_341_600), "2026-11-22T10:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
