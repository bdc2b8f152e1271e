//! `subscribe`: checks the connection's scope, stores a subscription while
//! the connection exists and replies `subscribed`, or `error` with a stable
//! code.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use pushgate_domain::auth::{authorize, Action, Denied};
use pushgate_domain::record::SubscriptionRecord;
use pushgate_domain::{ClientFrame, ErrorCode, ServerFrame};
use pushgate_store::StoreError;

use crate::{connection_id, default_route, reply, Deps, FunctionError};

/// The `error` reply for a scope check that failed.
pub(crate) fn denied_reply(denied: &Denied) -> ApiGatewayProxyResponse {
    let code = match denied {
        Denied::Forbidden { .. } => ErrorCode::Forbidden,
        Denied::TokenExpired => ErrorCode::TokenExpired,
    };
    reply::frame(200, &ServerFrame::error(code, denied.to_string()))
}

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
    let now = deps.clock.now_secs();
    let Some(connection) = deps.store.connection(&id, now).await? else {
        return Ok(reply::frame(
            200,
            &ServerFrame::error(
                ErrorCode::ConnectionGone,
                StoreError::ConnectionGone(id).to_string(),
            ),
        ));
    };
    if let Err(denied) = authorize(
        connection.scope.as_ref(),
        Action::Subscribe,
        &entity_id,
        now,
    ) {
        return Ok(denied_reply(&denied));
    }
    let record = SubscriptionRecord {
        connection_id: id.clone(),
        entity_id: entity_id.clone(),
        subscribed_at_ms: deps.clock.now_ms(),
        expires_at: deps.expires_at(),
    };
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
