//! Fan-out tasks: the messages the notifier puts on its own queue to split
//! a large entity's fan-out across invocations, and to carry on with what
//! an invocation had no time left for (see `docs/design.md`, "Fan-out
//! across invocations").
//!
//! A task carries everything it needs (the frame, the id range, where to
//! resume, which connections to try again), so handling it reads no
//! progress from the table: the message is the progress. SQS redelivers a
//! task whose invocation failed as a whole; its pushes then repeat, and
//! subscribers drop the duplicates by `seq`.

use serde::{Deserialize, Serialize};

use crate::record::IdRange;

/// The key that marks a queue message as a task rather than an
/// EventBridge event.
pub const TASK_KEY: &str = "pushgateFanout";

/// Push one notification to the subscribers of an entity whose connection
/// ids fall in `range`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FanoutTask {
    /// The event id (for logs and metrics).
    pub event_id: String,
    /// The entity whose subscribers get it.
    pub entity_id: String,
    /// The notification's seq (for logs).
    pub seq: u64,
    /// The `notification` frame, as kept in history.
    pub payload: String,
    /// Which subscribers.
    pub range: IdRange,
    /// Resume reading the range after this connection id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Every subscriber of the range was read: only `retry` is left.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_all: bool,
    /// Connections to push to first (their pushes failed, or were cut off).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry: Vec<String>,
    /// How many times this task's failed pushes were handed on.
    #[serde(default)]
    pub attempt: u32,
    /// When the event was first received (epoch ms), for the event-age
    /// metric of the last push.
    #[serde(default)]
    pub sent_at_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    #[serde(rename = "pushgateFanout")]
    task: FanoutTask,
}

impl FanoutTask {
    /// The queue message body.
    pub fn to_message(&self) -> String {
        serde_json::to_string(&Envelope { task: self.clone() }).unwrap_or_default()
    }

    /// The task in a queue message body; `None` for anything else (an
    /// EventBridge event), and for a body that names itself a task but is
    /// malformed (the caller reports that as undeliverable).
    pub fn from_message(body: &str) -> Option<Result<Self, serde_json::Error>> {
        // Cheap test first: events never contain the key.
        if !body.contains(TASK_KEY) {
            return None;
        }
        let value: serde_json::Value = serde_json::from_str(body).ok()?;
        let task = value.get(TASK_KEY)?;
        Some(serde_json::from_value(task.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_a_message() {
        let task = FanoutTask {
            event_id: "ev".into(),
            entity_id: "artist:1".into(),
            seq: 7,
            payload: r#"{"type":"notification"}"#.into(),
            range: IdRange::split(4)[1].clone(),
            after: Some("Gabc=".into()),
            read_all: false,
            retry: vec!["x".into()],
            attempt: 1,
            sent_at_ms: 5,
        };
        let message = task.to_message();
        assert!(matches!(FanoutTask::from_message(&message), Some(Ok(t)) if t == task));
        assert!(FanoutTask::from_message(r#"{"id":"e","detail":{}}"#).is_none());
        assert!(matches!(
            FanoutTask::from_message(r#"{"pushgateFanout":{"seq":"x"}}"#),
            Some(Err(_))
        ));
    }
}
