//! `$disconnect`: deletes the connection and all its subscriptions. API
//! Gateway delivers it best effort; TTL and the notifier's 410 handling clean
//! up after the ones it misses.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};

use crate::{connection_id, reply, Deps, FunctionError};

/// Handles `$disconnect`.
pub async fn handle(
    deps: &Deps,
    request: ApiGatewayWebsocketProxyRequest,
) -> Result<ApiGatewayProxyResponse, FunctionError> {
    let id = connection_id(&request.request_context)?;
    let deleted = deps.store.delete_connection(&id).await?;
    tracing::info!(
        connection_id = %id,
        status = request.request_context.disconnect_status_code,
        reason = request.request_context.disconnect_reason.as_deref().unwrap_or("-"),
        deleted,
        "disconnected"
    );
    Ok(reply::json(200, String::new()))
}
