//! Route responses. For message routes the body is the two-way reply API
//! Gateway sends back to the client; for `$connect` the status decides the
//! handshake and the headers (such as `Sec-WebSocket-Protocol`) join it.

use aws_lambda_events::apigw::ApiGatewayProxyResponse;
use aws_lambda_events::encodings::Body;
use pushgate_domain::ServerFrame;

/// A response with `status` and a JSON `body`.
// `ApiGatewayProxyResponse` is `#[non_exhaustive]`: it can only be built
// from `Default` and then filled in.
#[allow(clippy::field_reassign_with_default)]
pub fn json(status: i64, body: String) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = status;
    response.body = Some(Body::Text(body));
    response
}

/// A two-way reply carrying `frame`.
pub fn frame(status: i64, frame: &ServerFrame) -> ApiGatewayProxyResponse {
    json(status, frame.to_json())
}

/// A route response without a body: API Gateway sends the client nothing.
// See `json` for why it is built from `Default`.
#[allow(clippy::field_reassign_with_default)]
pub fn empty(status: i64) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = status;
    response
}
