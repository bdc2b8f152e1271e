//! `unsubscribe`: removes a subscription and replies `unsubscribed`, or
//! `error` with code `not_subscribed` when there was none.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use pushgate_domain::{ClientFrame, ErrorCode, ServerFrame, StreamKey};

use crate::{connection_id, default_route, reply, Deps, FunctionError};

/// Handles an `unsubscribe` frame.
pub async fn handle(
    deps: &Deps,
    request: ApiGatewayWebsocketProxyRequest,
) -> Result<ApiGatewayProxyResponse, FunctionError> {
    let id = connection_id(&request.request_context)?;
    let entity_id = match ClientFrame::parse(request.body.as_deref()) {
        Ok(ClientFrame::Unsubscribe { entity_id }) => entity_id,
        Ok(_) => return Ok(default_route::wrong_route("unsubscribe")),
        Err(e) => return Ok(reply::frame(200, &e.to_frame())),
    };
    if deps.store.unsubscribe(&id, &entity_id).await? {
        tracing::info!(connection_id = %id, entity_id = %entity_id, "unsubscribed");
        Ok(reply::frame(200, &ServerFrame::Unsubscribed { entity_id }))
    } else {
        let message = format!("this connection is not subscribed to {entity_id:?}");
        Ok(reply::frame(
            200,
            &ServerFrame::refusal(
                ErrorCode::NotSubscribed,
                message,
                &StreamKey::Entity(entity_id),
            ),
        ))
    }
}
