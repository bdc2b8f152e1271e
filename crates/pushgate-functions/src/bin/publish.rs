//! Lambda binary for the `publish` route: `QUEUE_URL` names the notifier's
//! SQS queue, which `publish` hands events to.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use pushgate_functions::{publish, runtime};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    pushgate_functions::runtime::init_tracing();
    let (deps, queue) = runtime::publish_deps().await?;
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
            publish::handle(&deps, &queue, event.payload)
        },
    ))
    .await
}
