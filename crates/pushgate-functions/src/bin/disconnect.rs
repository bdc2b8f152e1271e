//! Lambda binary for `$disconnect`.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use pushgate_functions::{disconnect, runtime};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    pushgate_functions::runtime::init_tracing();
    let deps = runtime::deps().await?;
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
            disconnect::handle(&deps, event.payload)
        },
    ))
    .await
}
