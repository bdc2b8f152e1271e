//! `publish`: a client with a publish grant sends
//! `{"action":"publish","entityId":…,"data":…[,"id":…]}`; the event goes to
//! the notifier's queue ([`EventQueue`]) in the shape EventBridge gives it,
//! so the notifier handles it exactly as a PutEvents event, and the reply is
//! `accepted` with the event id. Nothing fans out inside the route call:
//! API Gateway stops waiting for a route's function after 29 s, and a large
//! entity's fan-out can take longer.
//!
//! The event id is what makes a retried publish harmless: with a client
//! `id` it is `pub:<userId or connectionId>:<id>`, the same on every retry,
//! and the notifier gives one event id one sequence number, so subscribers
//! drop the duplicate. Without one, API Gateway's message id (unique per
//! frame) is used.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use pushgate_domain::auth::{authorize, Action};
use pushgate_domain::event::rfc3339;
use pushgate_domain::{ClientFrame, ErrorCode, EventError, NotificationEvent, ServerFrame};
use pushgate_push::EventQueue;
use pushgate_store::StoreError;
use serde_json::json;

use crate::subscribe::denied_code;
use crate::{connection_id, default_route, reply, Deps, FunctionError};

/// The `detail-type` and `source` of the events `publish` enqueues: those
/// the template's rule matches, so both paths look alike to the notifier.
pub const DETAIL_TYPE: &str = "Entity Updated";
/// See [`DETAIL_TYPE`].
pub const SOURCE: &str = "pushgate";

/// Handles a `publish` frame.
pub async fn handle(
    deps: &Deps,
    queue: &dyn EventQueue,
    request: ApiGatewayWebsocketProxyRequest,
) -> Result<ApiGatewayProxyResponse, FunctionError> {
    let id = connection_id(&request.request_context)?;
    let (entity_id, data, client_id) = match ClientFrame::parse(request.body.as_deref()) {
        Ok(ClientFrame::Publish {
            entity_id,
            data,
            id,
        }) => (entity_id, data, id),
        Ok(_) => return Ok(default_route::wrong_route("publish")),
        Err(e) => return Ok(reply::frame(200, &e.to_frame())),
    };
    let now = deps.clock.now_secs();
    let Some(connection) = deps.store.connection(&id, now).await? else {
        let message = StoreError::ConnectionGone(id).to_string();
        return Ok(reply::frame(
            200,
            &ServerFrame::error(ErrorCode::ConnectionGone, message),
        ));
    };
    if let Err(denied) = authorize(connection.scope.as_ref(), Action::Publish, &entity_id, now) {
        // Not named by entity: a client matches a publish's refusal to the
        // publish it awaits, and one naming the entity would read as the
        // refusal of a subscribe to it in flight.
        return Ok(reply::frame(
            200,
            &ServerFrame::error(denied_code(&denied), denied.to_string()),
        ));
    }
    let context = &request.request_context;
    let event_id = match &client_id {
        Some(client_id) => {
            let publisher = connection
                .user_id
                .as_ref()
                .map_or_else(|| id.as_str().to_owned(), |u| u.as_str().to_owned());
            format!("pub:{publisher}:{client_id}")
        }
        // API Gateway's message id is unique per frame.
        None => context
            .message_id
            .clone()
            .or_else(|| context.request_id.clone())
            .unwrap_or_else(|| format!("{id}-{}", deps.clock.now_ms())),
    };
    let time = rfc3339(now);
    let event = NotificationEvent {
        id: event_id,
        time: Some(time.clone()),
        entity_id: Some(entity_id.clone()),
        user_id: None,
        data,
    };
    // Refused now, with a reason, rather than in the notifier's DLQ.
    if let Err(e @ EventError::TooLarge { .. }) = event.check_size() {
        return Ok(reply::frame(
            200,
            &ServerFrame::error(ErrorCode::MessageTooLarge, e.to_string()),
        ));
    }
    let body = json!({
        "version": "0",
        "id": event.id,
        "detail-type": DETAIL_TYPE,
        "source": SOURCE,
        "time": time,
        "resources": [],
        "detail": {"entityId": entity_id.as_str(), "message": event.data},
    });
    if let Err(e) = queue.send(body.to_string(), 0).await {
        tracing::error!(connection_id = %id, entity_id = %entity_id, error = %e, source = ?std::error::Error::source(&e).map(ToString::to_string), "publish: could not enqueue");
        return Ok(reply::frame(
            200,
            &ServerFrame::error(
                ErrorCode::InternalError,
                "the event could not be queued; publish again (with an id, retries are not delivered twice)",
            ),
        ));
    }
    tracing::info!(connection_id = %id, entity_id = %entity_id, event_id = %event.id, "publish accepted");
    Ok(reply::frame(
        200,
        &ServerFrame::Accepted {
            entity_id,
            id: event.id,
        },
    ))
}
