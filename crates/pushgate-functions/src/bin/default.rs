//! Lambda binary for `$default`. It needs no store and no AWS client.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use pushgate_functions::default_route;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    pushgate_functions::runtime::init_tracing();
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| default_route::handle(event.payload),
    ))
    .await
}
