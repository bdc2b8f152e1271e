//! `subscribe`: stores a subscription while the connection exists and
//! replies `subscribed`, or `error` with a stable code.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use pushgate_domain::record::SubscriptionRecord;
use pushgate_domain::{ClientFrame, ErrorCode, ServerFrame};
use pushgate_store::StoreError;

use crate::{connection_id, default_route, reply, Deps, FunctionError};

/// Handles a `subscribe` frame.
pub async fn handle(
    deps: &Deps,
    request: ApiGatewayWebsocketProxyRequest,
) -> Result<ApiGatewayProxyResponse, FunctionError> {
    let id = connection_id(&request.request_context)?;
    let entity_id = match ClientFrame::parse(request.body.as_deref()) {
        Ok(ClientFrame::Subscribe { entity_id }) => entity_id,
        Ok(_) => return Ok(default_route::wrong_route("subscribe")),
        Err(e) => return Ok(reply::frame(200, &e.to_frame())),
    };
    let record = SubscriptionRecord {
        connection_id: id.clone(),
        entity_id: entity_id.clone(),
        subscribed_at_ms: deps.clock.now_ms(),
        expires_at: deps.expires_at(),
    };
    let now = deps.clock.now_secs();
    match deps
        .store
        .subscribe(&record, now, deps.config.max_subscriptions)
        .await
    {
        Ok(()) => {
            tracing::info!(connection_id = %id, entity_id = %entity_id, "subscribed");
            Ok(reply::frame(200, &ServerFrame::Subscribed { entity_id }))
        }
        Err(e @ StoreError::ConnectionGone(_)) => Ok(reply::frame(
            200,
            &ServerFrame::error(ErrorCode::ConnectionGone, e.to_string()),
        )),
        Err(e @ StoreError::TooManySubscriptions { .. }) => Ok(reply::frame(
            200,
            &ServerFrame::error(ErrorCode::TooManySubscriptions, e.to_string()),
        )),
        Err(e) => Err(e.into()),
    }
}
