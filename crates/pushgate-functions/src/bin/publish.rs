//! Lambda binary for the `publish` route: `QUEUE_URL` names the notifier's
//! SQS queue, which `publish` hands events to.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use pushgate_domain::ConfigError;
use pushgate_functions::{publish, runtime};
use pushgate_push::SqsQueue;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    pushgate_functions::runtime::init_tracing();
    let deps = runtime::deps().await?;
    let queue_url = std::env::var("QUEUE_URL").map_err(|_| ConfigError::Missing("QUEUE_URL"))?;
    let sdk = runtime::sdk_config().await;
    let queue = SqsQueue::new(&sdk, queue_url);
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
            publish::handle(&deps, &queue, event.payload)
        },
    ))
    .await
}
