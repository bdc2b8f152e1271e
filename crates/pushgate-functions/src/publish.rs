//! `publish`: a client with a publish grant sends
//! `{"action":"publish","entityId":…,"data":…}`; the entity's subscribers
//! get the same `notification` envelope as EventBridge-borne events, through
//! the notifier's fan-out. The reply says how many were reached.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use pushgate_domain::auth::{authorize, Action};
use pushgate_domain::event::rfc3339;
use pushgate_domain::{ClientFrame, ErrorCode, EventError, NotificationEvent, ServerFrame};
use pushgate_store::StoreError;

use crate::notifier::{deliver, RecordError};
use crate::subscribe::denied_reply;
use crate::{connection_id, default_route, reply, FunctionError, NotifierDeps};

/// Handles a `publish` frame.
pub async fn handle(
    deps: &NotifierDeps,
    request: ApiGatewayWebsocketProxyRequest,
) -> Result<ApiGatewayProxyResponse, FunctionError> {
    let id = connection_id(&request.request_context)?;
    let (entity_id, data) = match ClientFrame::parse(request.body.as_deref()) {
        Ok(ClientFrame::Publish { entity_id, data }) => (entity_id, data),
        Ok(_) => return Ok(default_route::wrong_route("publish")),
        Err(e) => return Ok(reply::frame(200, &e.to_frame())),
    };
    let now = deps.deps.clock.now_secs();
    let Some(connection) = deps.deps.store.connection(&id, now).await? else {
        let message = StoreError::ConnectionGone(id).to_string();
        return Ok(reply::frame(
            200,
            &ServerFrame::error(ErrorCode::ConnectionGone, message),
        ));
    };
    if let Err(denied) = authorize(connection.scope.as_ref(), Action::Publish, &entity_id, now) {
        return Ok(denied_reply(&denied));
    }
    let context = &request.request_context;
    let event = NotificationEvent {
        // API Gateway's message id is unique per frame.
        id: context
            .message_id
            .clone()
            .or_else(|| context.request_id.clone())
            .unwrap_or_else(|| format!("{id}-{}", deps.deps.clock.now_ms())),
        time: Some(rfc3339(now)),
        entity_id: Some(entity_id.clone()),
        user_id: None,
        data,
    };
    let frame = match deliver(deps, &event).await {
        Ok(outcome) => {
            tracing::info!(connection_id = %id, entity_id = %entity_id, delivered = outcome.delivered, "published");
            ServerFrame::Published {
                entity_id,
                id: event.id,
                delivered: outcome.delivered,
            }
        }
        Err(RecordError::Undeliverable(e @ EventError::TooLarge { .. })) => {
            ServerFrame::error(ErrorCode::MessageTooLarge, e.to_string())
        }
        Err(RecordError::PushesFailed { failed, delivered }) => ServerFrame::error(
            ErrorCode::InternalError,
            format!(
                "delivered to {delivered} subscribers; {failed} failed after retries. \
                 Publish again: subscribers drop duplicates by id"
            ),
        ),
        Err(RecordError::Undeliverable(e)) => {
            ServerFrame::error(ErrorCode::InternalError, e.to_string())
        }
        Err(RecordError::Store(e)) => return Err(e.into()),
    };
    Ok(reply::frame(200, &frame))
}
