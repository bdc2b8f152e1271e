//! What the emulator is told at start: the stage, API Gateway's timeouts, the
//! EventBridge rule it stands in for, the SQS queue's timings and the store.
//! The command line (`main.rs`) fills these in; tests build them directly
//! and shorten the timings.

use std::time::Duration;

use pushgate_domain::limits::{IDLE_TIMEOUT_SECS, MAX_CONNECTION_SECS};
use pushgate_domain::{AuthMode, Config, Secret};

use crate::faults::Faults;
use crate::token::LOCAL_JWT_SECRET;

/// The SQS queue and its event source mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    /// Records per notifier invocation (SQS's `BatchSize`, at most 10 here).
    pub batch_size: usize,
    /// How long the poller waits to fill a batch
    /// (`MaximumBatchingWindowInSeconds`).
    pub batch_window: Duration,
    /// How long a received record stays invisible before it is redelivered.
    pub visibility_timeout: Duration,
    /// Receives after which a record moves to the DLQ (`maxReceiveCount`).
    pub max_receive_count: u32,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            batch_size: 10,
            batch_window: Duration::from_millis(50),
            visibility_timeout: Duration::from_secs(2),
            max_receive_count: 5,
        }
    }
}

/// Where connections and subscriptions are kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StoreSettings {
    /// The embedded in-memory store (the default).
    #[default]
    Memory,
    /// DynamoDB, through the standard AWS configuration; `endpoint` (for
    /// DynamoDB Local, moto or LocalStack) overrides the endpoint. The
    /// table is created if missing.
    DynamoDb {
        /// Endpoint URL, such as `http://127.0.0.1:8000`.
        endpoint: Option<String>,
        /// Table name.
        table: String,
    },
}

/// Everything the emulator needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The stage in the URL path (`ws://127.0.0.1:3001/{stage}`).
    pub stage: String,
    /// The API id put in events (`requestContext.apiId`).
    pub api_id: String,
    /// The region put in events, ARNs and the SDK clients.
    pub region: String,
    /// Connections with no frame from the client for this long are closed
    /// (API Gateway: 10 minutes).
    pub idle_timeout: Duration,
    /// Connections are closed after this long whatever they do
    /// (API Gateway: 2 hours).
    pub max_duration: Duration,
    /// The event bus PutEvents entries must name (or leave out) to match.
    pub event_bus: String,
    /// The rule's `source` (the template's `EventSource`).
    pub event_source: String,
    /// The rule's `detail-type` (the template's `EventDetailType`).
    pub detail_type: String,
    /// The queue between the rule and the notifier.
    pub queue: QueueSettings,
    /// The store.
    pub store: StoreSettings,
    /// How often expired items are deleted from the embedded store, as
    /// DynamoDB's TTL does (DynamoDB does its own).
    pub ttl_sweep_interval: Duration,
    /// Faults in force at start.
    pub faults: Faults,
    /// What the functions would read from their environment.
    pub functions: Config,
}

/// The account id stamped on EventBridge envelopes and ARNs.
pub const ACCOUNT_ID: &str = "000000000000";

impl Default for Settings {
    fn default() -> Self {
        let mut functions = Config::new("pushgate-local");
        // Locally, a token is optional; one that is sent is still checked,
        // with a well-known development key unless another is given.
        functions.auth_mode = AuthMode::Anonymous;
        functions.jwt_secret = Some(Secret::new(LOCAL_JWT_SECRET));
        Self {
            stage: "local".into(),
            api_id: "local".into(),
            region: "us-east-1".into(),
            idle_timeout: Duration::from_secs(IDLE_TIMEOUT_SECS),
            max_duration: Duration::from_secs(MAX_CONNECTION_SECS),
            event_bus: "default".into(),
            event_source: "pushgate".into(),
            detail_type: "Entity Updated".into(),
            queue: QueueSettings::default(),
            store: StoreSettings::Memory,
            ttl_sweep_interval: Duration::from_secs(60),
            faults: Faults::default(),
            functions,
        }
    }
}
