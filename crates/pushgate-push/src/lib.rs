//! Pushing frames to connected clients.
//!
//! # Layout
//!
//! - [`Pusher`]: the port (PostToConnection) the notifier talks to.
//! - [`PushError`]: what API Gateway answers, sorted into what to do next
//!   (drop the connection, retry, or give up on this one).
//! - [`SignedHttpPusher`] ([`signed`]): the notifier's adapter, each push one
//!   SigV4-signed request on a pooled hyper client, pointed at
//!   `https://{apiId}.execute-api.{region}.amazonaws.com/{stage}` or at the
//!   local emulator.
//! - [`ManagementApiPusher`]: the same through `aws-sdk-apigatewaymanagement`
//!   (`PUSH_CLIENT=sdk`), four times the CPU per push.
//! - [`sigv4`]: SigV4 for `execute-api`, signing and checking, one function
//!   each.
//! - [`queue`]: the [`EventQueue`] port to the notifier's SQS queue and its
//!   adapter [`SqsQueue`].

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::config::retry::RetryConfig;
use aws_sdk_apigatewaymanagement::config::timeout::TimeoutConfig;
use aws_sdk_apigatewaymanagement::error::SdkError;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use aws_sdk_apigatewaymanagement::Client;

pub mod queue;
pub mod signed;
pub mod sigv4;
pub use queue::{EventQueue, QueueError, SqsQueue};
pub use signed::{PusherSetupError, SignedHttpPusher};

/// Boxed source of a [`PushError::Failed`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a push did not reach its connection.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// 410 GoneException: the connection is closed; forget it.
    #[error("the connection is gone (410)")]
    Gone,
    /// 413 PayloadTooLargeException: this payload will never fit.
    #[error("the payload is too large for API Gateway (413)")]
    PayloadTooLarge,
    /// 403 ForbiddenException: the caller may not post here.
    #[error("posting to the connection is forbidden (403)")]
    Forbidden,
    /// 429 LimitExceededException: throttled; worth retrying later.
    #[error("throttled by API Gateway (429)")]
    Throttled,
    /// Anything else: a 5xx, a timeout, a dropped connection.
    #[error("PostToConnection failed (status {status:?})")]
    Failed {
        /// HTTP status, when there was a response.
        status: Option<u16>,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
}

impl PushError {
    /// Whether trying the same push again may succeed: throttling, 5xx and
    /// transport errors. 410, 413 and 403 never get better by retrying.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Throttled => true,
            Self::Failed { status, .. } => status.is_none_or(|s| s >= 500 || s == 429),
            Self::Gone | Self::PayloadTooLarge | Self::Forbidden => false,
        }
    }

    /// Sorts an HTTP status from PostToConnection.
    pub fn from_status(status: u16, source: BoxError) -> Self {
        match status {
            410 => Self::Gone,
            413 => Self::PayloadTooLarge,
            403 => Self::Forbidden,
            429 => Self::Throttled,
            _ => Self::Failed {
                status: Some(status),
                source,
            },
        }
    }
}

/// The port: sends one payload to one connection.
#[async_trait]
pub trait Pusher: Send + Sync {
    /// PostToConnection.
    async fn post(&self, connection_id: &str, payload: &[u8]) -> Result<(), PushError>;
}

/// [`Pusher`] on the API Gateway Management API.
#[derive(Clone, Debug)]
pub struct ManagementApiPusher {
    client: Client,
}

impl ManagementApiPusher {
    /// A pusher for the stage at `endpoint`. The SDK's own retries are off:
    /// the notifier retries with its own backoff and time budget, and must
    /// see every 429 and 5xx to do so.
    pub fn new(sdk_config: &aws_config::SdkConfig, endpoint: &str) -> Self {
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(sdk_config)
            .endpoint_url(endpoint)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(5))
                    .build(),
            )
            .build();
        Self {
            client: Client::from_conf(config),
        }
    }
}

#[async_trait]
impl Pusher for ManagementApiPusher {
    async fn post(&self, connection_id: &str, payload: &[u8]) -> Result<(), PushError> {
        let result = self
            .client
            .post_to_connection()
            .connection_id(connection_id)
            .data(Blob::new(payload))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) => {
                let status = e.raw().status().as_u16();
                match e.err() {
                    PostToConnectionError::GoneException(_) => Err(PushError::Gone),
                    PostToConnectionError::PayloadTooLargeException(_) => {
                        Err(PushError::PayloadTooLarge)
                    }
                    PostToConnectionError::ForbiddenException(_) => Err(PushError::Forbidden),
                    PostToConnectionError::LimitExceededException(_) => Err(PushError::Throttled),
                    _ => Err(PushError::from_status(status, Box::new(e.into_err()))),
                }
            }
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                match status {
                    Some(status) => Err(PushError::from_status(status, Box::new(e))),
                    None => Err(PushError::Failed {
                        status: None,
                        source: Box::new(e),
                    }),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_sorted_by_what_to_do_next() {
        let src = || -> BoxError { "x".into() };
        assert!(matches!(
            PushError::from_status(410, src()),
            PushError::Gone
        ));
        assert!(matches!(
            PushError::from_status(413, src()),
            PushError::PayloadTooLarge
        ));
        assert!(matches!(
            PushError::from_status(403, src()),
            PushError::Forbidden
        ));
        assert!(PushError::from_status(429, src()).is_retryable());
        assert!(PushError::from_status(500, src()).is_retryable());
        assert!(PushError::from_status(503, src()).is_retryable());
        assert!(!PushError::from_status(400, src()).is_retryable());
        assert!(!PushError::Gone.is_retryable());
        assert!(!PushError::PayloadTooLarge.is_retryable());
    }
}
