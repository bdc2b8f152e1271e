//! Events in and notifications out: an EventBridge event (an SQS record body)
//! becomes a [`NotificationEvent`], whose envelope is serialised once and
//! pushed to every subscriber.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{EntityId, IdError};
use crate::limits::MAX_MESSAGE_BYTES;

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
    /// No `detail.entityId`.
    #[error("the event's detail has no entityId string")]
    MissingEntityId,
    /// An invalid `detail.entityId`.
    #[error("the event's detail.entityId is invalid: {0}")]
    InvalidEntityId(#[source] IdError),
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

/// An event to deliver to the subscribers of one entity.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationEvent {
    /// The EventBridge event id; clients drop duplicates by it.
    pub id: String,
    /// When the event happened, as EventBridge stamped it.
    pub time: Option<String>,
    /// Whose subscribers get it.
    pub entity_id: EntityId,
    /// The producer's message, any JSON.
    pub data: Value,
}

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    #[serde(rename = "entityId")]
    entity_id: &'a EntityId,
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
                EntityId::new(s.as_str()).map_err(EventError::InvalidEntityId)?
            }
            _ => return Err(EventError::MissingEntityId),
        };
        let data = detail.remove("message").ok_or(EventError::MissingMessage)?;
        Ok(Self {
            id: event.id,
            time: event.time,
            entity_id,
            data,
        })
    }

    /// The `notification` frame, serialised once for every subscriber, or
    /// [`EventError::TooLarge`] when API Gateway would refuse it.
    pub fn envelope(&self) -> Result<Vec<u8>, EventError> {
        let bytes = serde_json::to_vec(&Envelope {
            kind: "notification",
            id: &self.id,
            entity_id: &self.entity_id,
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
        assert_eq!(event.entity_id.as_str(), "artist:ed-sheeran");
        let envelope: Value = serde_json::from_slice(&event.envelope().unwrap()).unwrap();
        assert_eq!(
            envelope,
            serde_json::json!({"type":"notification","id":"6a7e8feb-b491-4cf7-a9f1-bf3703467718",
                "entityId":"artist:ed-sheeran","time":"2026-11-22T10:00:00Z",
                "data":{"tickets":"on sale"}})
        );
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
            Err(EventError::MissingEntityId)
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
        assert!(matches!(big.envelope(), Err(EventError::TooLarge { .. })));
    }
}
