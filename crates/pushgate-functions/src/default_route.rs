//! `$default`: every frame whose `action` matches no route. It answers with
//! an `error` naming what was wrong and the accepted actions.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use pushgate_domain::protocol::ACCEPTED_ACTIONS;
use pushgate_domain::{ClientFrame, ErrorCode, ServerFrame};

use crate::{connection_id, reply, FunctionError};

/// The reply when a frame reached a route that is not its own (only possible
/// when routes are wired differently from `template.yaml`).
pub(crate) fn wrong_route(route: &str) -> ApiGatewayProxyResponse {
    reply::frame(
        200,
        &ServerFrame::error(
            ErrorCode::UnknownAction,
            format!("the {route} route only takes action \"{route}\""),
        ),
    )
}

/// Handles a frame sent to `$default`. Needs no store.
pub async fn handle(
    request: ApiGatewayWebsocketProxyRequest,
) -> Result<ApiGatewayProxyResponse, FunctionError> {
    let id = connection_id(&request.request_context)?;
    let frame = match ClientFrame::parse(request.body.as_deref()) {
        Err(e) => e.to_frame(),
        // A known action that still reached $default: API Gateway routes
        // these elsewhere, so only a mis-wired stage gets here.
        Ok(_) => ServerFrame::error(
            ErrorCode::UnknownAction,
            format!(
                "this action is not routed on this stage; accepted actions: {}",
                ACCEPTED_ACTIONS.join(", ")
            ),
        ),
    };
    if let ServerFrame::Error { code, .. } = &frame {
        tracing::info!(connection_id = %id, code = code.as_str(), "refused frame");
    }
    Ok(reply::frame(200, &frame))
}
