//! pushgate's domain: everything about connections, subscriptions, the client
//! protocol and notifications that does not depend on AWS.
//!
//! # Layout
//!
//! - [`auth`]: tokens (HS256 JWTs), grants and the scope check.
//! - [`ids`]: validated identifiers ([`EntityId`], [`ConnectionId`], [`UserId`]).
//! - [`record`]: the items kept in the single DynamoDB table and their keys.
//! - [`protocol`]: client frames in, server frames out, stable error codes.
//! - [`event`]: EventBridge events in, the notification envelope out.
//! - [`limits`]: API Gateway's limits that pushgate enforces.
//! - [`config`]: the configuration every function reads once at start.
//! - [`task`]: fan-out tasks the notifier hands to itself through its queue.
//! - [`retry`]: the one retry policy (capped exponential backoff, full
//!   jitter).
//!
//! The contract these types follow is `docs/design.md`.

pub mod auth;
pub mod config;
pub mod event;
pub mod ids;
pub mod limits;
pub mod protocol;
pub mod record;
pub mod retry;
pub mod task;

pub use config::{AuthMode, Config, ConfigError, PushClient, Secret};
pub use event::{EventError, NotificationEvent};
pub use ids::{ConnectionId, EntityId, IdError, UserId};
pub use protocol::{ClientFrame, ErrorCode, FrameError, ServerFrame};
pub use record::{
    ConnectionRecord, DeliveryProgress, HistoryEntry, IdRange, Retention, StreamHead, StreamKey,
    SubscriptionRecord,
};
