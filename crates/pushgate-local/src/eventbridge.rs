//! EventBridge PutEvents (`X-Amz-Target: AWSEvents.PutEvents`, AWS JSON 1.1),
//! as the AWS CLI and SDKs call it. Entries are checked like EventBridge
//! checks them; the ones matching the template's rule (event bus, `source`,
//! `detail-type`) are wrapped in the EventBridge envelope and sent to the
//! queue; the others are accepted and go nowhere, like events no rule
//! matches.

use pushgate_domain::event::rfc3339;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::apigw::now_ms;
use crate::settings::{Settings, ACCOUNT_ID};
use crate::sqs::Queue;

/// The `X-Amz-Target` of PutEvents.
pub const PUT_EVENTS_TARGET: &str = "AWSEvents.PutEvents";

/// Most entries in one PutEvents call.
pub const MAX_ENTRIES: usize = 10;

/// Largest PutEvents request EventBridge accepts (256 KB).
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    source: Option<String>,
    detail_type: Option<String>,
    detail: Option<String>,
    event_bus_name: Option<String>,
    #[serde(default)]
    resources: Vec<String>,
    time: Option<Value>,
}

/// A PutEvents request body.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutEventsRequest {
    /// The entries, unchecked.
    pub entries: Option<Vec<Value>>,
}

fn failed(code: &str, message: &str) -> Value {
    json!({"ErrorCode": code, "ErrorMessage": message})
}

/// `Time` as EventBridge takes it: epoch seconds (the CLI and SDKs) or an
/// RFC 3339 string, kept as given.
fn event_time(time: Option<&Value>) -> String {
    match time {
        Some(Value::Number(n)) => n
            .as_f64()
            .map(|secs| rfc3339(secs.floor() as i64))
            .unwrap_or_else(|| rfc3339(now_ms() / 1000)),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => rfc3339(now_ms() / 1000),
    }
}

/// The default bus and the rule on it, in front of the queue.
pub struct EventBus<'a> {
    /// The rule's bus, source and detail-type.
    pub settings: &'a Settings,
    /// Where matching events go.
    pub queue: &'a Queue,
}

impl EventBus<'_> {
    /// Whether an entry on `bus` reaches the rule.
    fn bus_matches(&self, bus: Option<&str>) -> bool {
        let wanted = &self.settings.event_bus;
        match bus {
            None | Some("") => wanted == "default",
            Some(bus) => bus == wanted || bus.ends_with(&format!(":event-bus/{wanted}")),
        }
    }

    /// Checks one entry and, when it matches the rule, queues its envelope.
    /// The answer is the entry's line in the response.
    pub fn put_event(&self, raw: Value) -> Value {
        let Ok(entry) = serde_json::from_value::<Entry>(raw) else {
            return failed("InvalidArgument", "The entry is malformed.");
        };
        let Some(source) = entry.source.filter(|s| !s.is_empty()) else {
            return failed(
                "InvalidArgument",
                "Parameter Source is not valid. Reason: Source is a required argument.",
            );
        };
        let Some(detail_type) = entry.detail_type.filter(|s| !s.is_empty()) else {
            return failed(
                "InvalidArgument",
                "Parameter DetailType is not valid. Reason: DetailType is a required argument.",
            );
        };
        let Some(detail) = entry.detail.filter(|s| !s.is_empty()) else {
            return failed(
                "InvalidArgument",
                "Parameter Detail is not valid. Reason: Detail is a required argument.",
            );
        };
        let Ok(detail @ Value::Object(_)) = serde_json::from_str::<Value>(&detail) else {
            return failed("MalformedDetail", "Detail is malformed.");
        };
        let id = uuid::Uuid::new_v4().to_string();
        let settings = self.settings;
        let matched = self.bus_matches(entry.event_bus_name.as_deref())
            && source == settings.event_source
            && detail_type == settings.detail_type;
        if matched {
            let envelope = json!({
                "version": "0",
                "id": id,
                "detail-type": detail_type,
                "source": source,
                "account": ACCOUNT_ID,
                "time": event_time(entry.time.as_ref()),
                "region": settings.region,
                "resources": entry.resources,
                "detail": detail,
            });
            let message_id = self.queue.send(envelope.to_string());
            tracing::info!(event_id = %id, message_id = %message_id, "PutEvents: matched the rule; queued");
        } else {
            tracing::info!(
                event_id = %id,
                source = %source,
                detail_type = %detail_type,
                "PutEvents: no rule matches; not routed (the rule wants source {:?}, detail-type {:?})",
                settings.event_source,
                settings.detail_type
            );
        }
        json!({"EventId": id})
    }
}
