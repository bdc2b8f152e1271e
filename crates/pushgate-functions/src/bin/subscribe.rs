//! Lambda binary for the `subscribe` route.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use pushgate_functions::{runtime, subscribe};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    pushgate_functions::runtime::init_tracing();
    // Pushes: a resuming subscribe replays history with PostToConnection.
    let deps = runtime::notifier_deps().await?;
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
            subscribe::handle(&deps, event.payload)
        },
    ))
    .await
}
