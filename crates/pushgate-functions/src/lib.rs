//! pushgate's Lambda functions, written as plain async functions of
//! (dependencies, event) so that the Lambda binaries, the local emulator and
//! the tests all run the same code.
//!
//! # Layout
//!
//! - [`connect`], [`disconnect`], [`subscribe`], [`unsubscribe`],
//!   [`publish`], [`default_route`]: the WebSocket routes (`$connect`,
//!   `$disconnect`, `subscribe`, `unsubscribe`, `publish`, `$default`).
//! - [`history`]: `GET /history` behind an HTTP API (polling fallback and
//!   gap repair).
//! - [`notifier`]: the SQS-triggered fan-out of EventBridge events.
//! - [`limit`]: the notifier's adaptive (AIMD) push concurrency.
//! - [`deps`]: the dependencies every handler borrows, built once in `main`.
//! - [`metrics`]: custom metrics in CloudWatch's embedded metric format.
//! - [`reply`]: route responses (two-way replies and `$connect` answers).
//! - [`runtime`]: start-up of the Lambda binaries (configuration, AWS clients).
//! - `src/bin/*.rs`: one ~15-line binary per function.

pub mod connect;
pub mod default_route;
pub mod deps;
pub mod disconnect;
pub mod history;
pub mod limit;
pub mod metrics;
pub mod notifier;
pub mod publish;
pub mod reply;
pub mod runtime;
pub mod subscribe;
pub mod unsubscribe;

pub use deps::{Clock, Deps, NotifierDeps};

use pushgate_domain::{ConnectionId, IdError};
use pushgate_store::StoreError;

/// Why a handler could not answer. A route function that returns one of
/// these gives the client API Gateway's `Internal server error`.
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    /// The event has no `requestContext.connectionId`.
    #[error("the event has no requestContext.connectionId")]
    MissingConnectionId,
    /// The connection id is malformed.
    #[error("the event's connectionId is invalid")]
    InvalidConnectionId(#[source] IdError),
    /// The store failed.
    #[error("the store failed")]
    Store(#[from] StoreError),
}

/// The connection id of a WebSocket event.
pub(crate) fn connection_id(
    context: &aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequestContext,
) -> Result<ConnectionId, FunctionError> {
    let raw = context
        .connection_id
        .as_deref()
        .ok_or(FunctionError::MissingConnectionId)?;
    ConnectionId::new(raw).map_err(FunctionError::InvalidConnectionId)
}

impl FunctionError {
    /// The error and its sources, one after another, for logs and for the
    /// Lambda error report. No message bodies or tokens are ever part of it.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(e) = source {
            text.push_str(": ");
            text.push_str(&e.to_string());
            source = e.source();
        }
        text
    }
}

impl From<FunctionError> for lambda_runtime::Diagnostic {
    fn from(e: FunctionError) -> Self {
        let error_type = match &e {
            FunctionError::MissingConnectionId | FunctionError::InvalidConnectionId(_) => {
                "InvalidEvent"
            }
            FunctionError::Store(_) => "StoreError",
        };
        tracing::error!(error = %e.chain(), "invocation failed");
        lambda_runtime::Diagnostic {
            error_type: error_type.into(),
            error_message: e.chain(),
        }
    }
}
