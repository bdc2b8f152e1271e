//! Lambda binary for `GET /history` (HTTP API, payload format 2.0). It
//! verifies the same tokens as `$connect`, so it loads the signing keys.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use pushgate_functions::{history, runtime};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    runtime::init_tracing();
    let deps = runtime::connect_deps().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<ApiGatewayV2httpRequest>| {
        history::handle(&deps, event.payload)
    }))
    .await
}
