//! Lambda binary for the notifier (SQS event source with
//! `ReportBatchItemFailures`). The invocation's deadline reaches the
//! handler, which stops starting work shortly before it.
//!
//! One thread, like every pushgate function: at 256 MB Lambda gives 0.15 of
//! a vCPU, and a multi-thread runtime only adds cross-thread wake-ups to
//! each push (about 50 % more CPU per push with the SDK client, measured
//! with `pushgate-bench cpu`).

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use pushgate_functions::{notifier, runtime};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    pushgate_functions::runtime::init_tracing();
    let deps = runtime::notifier_deps().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let deadline = runtime::deadline(&event.context);
        let deps = &deps;
        async move { Ok::<_, Error>(notifier::handle(deps, event.payload, deadline).await) }
    }))
    .await
}
