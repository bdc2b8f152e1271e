//! What the emulator is told at start: the stage, API Gateway's timeouts, the
//! functions' Lambda timeouts, the EventBridge rule it stands in for, the SQS
//! queue and its event source mapping, the store and the faults. The command
//! line (`main.rs`) fills these in; tests build them directly and shorten the
//! timings. [`Settings::validate`] refuses values the emulator cannot honour
//! (or AWS would refuse), so a bad flag is a clear error at start and never a
//! panic later (an `Instant` overflowing, a zero-sized batch).

use std::time::Duration;

use pushgate_domain::limits::{IDLE_TIMEOUT_SECS, MAX_CONNECTION_SECS, MAX_MESSAGE_BYTES};
use pushgate_domain::{AuthMode, Config, Secret};

use crate::faults::{Faults, FaultsError};
use crate::token::LOCAL_JWT_SECRET;

/// The SQS queue and its event source mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    /// Records per notifier invocation (the mapping's `BatchSize`;
    /// template.yaml: 10).
    pub batch_size: usize,
    /// How long the poller waits to fill a batch
    /// (`MaximumBatchingWindowInSeconds`; template.yaml: 1 s).
    pub batch_window: Duration,
    /// How long a received record stays invisible before it is redelivered.
    pub visibility_timeout: Duration,
    /// Receives after which a record moves to the DLQ (`maxReceiveCount`).
    pub max_receive_count: u32,
    /// Notifier invocations running at once (the mapping's
    /// `ScalingConfig.MaximumConcurrency`; template.yaml sets none, so the
    /// emulator uses 5, the number of pollers Lambda starts with).
    pub max_concurrency: usize,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            batch_size: 10,
            batch_window: Duration::from_secs(1),
            // template.yaml: 6 × the notifier's timeout, as Lambda advises.
            visibility_timeout: Duration::from_secs(180),
            max_receive_count: 5,
            max_concurrency: 5,
        }
    }
}

/// Each function's Lambda `Timeout`, as template.yaml sets them: 10 s (the
/// `Globals`) for the routes, 29 s for `publish`, 30 s for the notifier.
/// A function still running at its deadline is cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionTimeouts {
    /// `$connect`.
    pub connect: Duration,
    /// `$disconnect`.
    pub disconnect: Duration,
    /// `subscribe`.
    pub subscribe: Duration,
    /// `unsubscribe`.
    pub unsubscribe: Duration,
    /// `$default`.
    pub default_route: Duration,
    /// `publish`.
    pub publish: Duration,
    /// The notifier (one SQS batch).
    pub notifier: Duration,
}

impl Default for FunctionTimeouts {
    fn default() -> Self {
        let globals = Duration::from_secs(10);
        Self {
            connect: globals,
            disconnect: globals,
            subscribe: globals,
            unsubscribe: globals,
            default_route: globals,
            publish: Duration::from_secs(29),
            notifier: Duration::from_secs(30),
        }
    }
}

impl FunctionTimeouts {
    /// The timeout of the function behind a route key.
    pub fn for_route(&self, route: &str) -> Duration {
        match route {
            "$connect" => self.connect,
            "$disconnect" => self.disconnect,
            "subscribe" => self.subscribe,
            "unsubscribe" => self.unsubscribe,
            "publish" => self.publish,
            _ => self.default_route,
        }
    }
}

/// PostToConnection throttling: a token bucket per API, refilled at `rate`
/// per second up to `burst`; a call finding it empty is answered 429
/// `LimitExceededException`, as API Gateway throttles the Management API.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PostThrottle {
    /// Calls per second, sustained.
    pub rate: f64,
    /// Calls allowed at once after a quiet spell.
    pub burst: u32,
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
    /// The functions' Lambda timeouts.
    pub timeouts: FunctionTimeouts,
    /// Bytes of frames waiting to be written to one client before
    /// PostToConnection answers 429 `LimitExceededException` ("the WebSocket
    /// client side buffer is full"): a client that stops reading cannot
    /// grow the emulator's memory without bound.
    pub outbound_buffer_bytes: usize,
    /// PostToConnection throttling; `None`: unthrottled.
    pub post_throttle: Option<PostThrottle>,
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

/// Default per-connection outbound buffer: 1 MiB (eight full-size messages).
pub const DEFAULT_OUTBOUND_BUFFER_BYTES: usize = 1024 * 1024;

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
            timeouts: FunctionTimeouts::default(),
            outbound_buffer_bytes: DEFAULT_OUTBOUND_BUFFER_BYTES,
            post_throttle: None,
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

/// Why [`Settings`] were refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    /// A value outside what the emulator (or AWS) accepts.
    #[error("{what} must be {range}; got {got}")]
    OutOfRange {
        /// The setting and its flag.
        what: &'static str,
        /// The accepted range, in words.
        range: &'static str,
        /// The value given.
        got: String,
    },
    /// The faults are invalid.
    #[error(transparent)]
    Faults(#[from] FaultsError),
    /// Lambda refuses an SQS event source mapping whose queue's visibility
    /// timeout is below the function's timeout: a slow batch would be
    /// delivered again while it still runs.
    #[error(
        "the visibility timeout (--visibility-timeout-secs, {visibility:?}) must be at least the \
         notifier's timeout (--notifier-timeout-secs, {notifier:?}), as Lambda requires; \
         shorten both for quick local retries"
    )]
    VisibilityBelowTimeout {
        /// The queue's visibility timeout.
        visibility: Duration,
        /// The notifier's timeout.
        notifier: Duration,
    },
}

/// A year: the longest duration any timer accepts, far below where adding
/// it to `Instant::now()` could overflow.
const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

fn check_duration(
    what: &'static str,
    range: &'static str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), SettingsError> {
    if value < min || value > max {
        return Err(SettingsError::OutOfRange {
            what,
            range,
            got: format!("{value:?}"),
        });
    }
    Ok(())
}

fn check_count(
    what: &'static str,
    range: &'static str,
    value: usize,
    min: usize,
    max: usize,
) -> Result<(), SettingsError> {
    if !(min..=max).contains(&value) {
        return Err(SettingsError::OutOfRange {
            what,
            range,
            got: value.to_string(),
        });
    }
    Ok(())
}

impl Settings {
    /// Checks every value against what the emulator can honour and what AWS
    /// accepts for the same setting.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let ms = Duration::from_millis(1);
        check_duration(
            "the idle timeout (--idle-timeout-secs)",
            "between 1 ms and a year",
            self.idle_timeout,
            ms,
            YEAR,
        )?;
        check_duration(
            "the maximum connection duration (--max-duration-secs)",
            "between 1 ms and a year",
            self.max_duration,
            ms,
            YEAR,
        )?;
        let t = &self.timeouts;
        // Lambda's Timeout: 1 to 900 seconds (shorter here for tests).
        let lambda = "between 1 ms and 900 s (Lambda's maximum)";
        let max = Duration::from_secs(900);
        check_duration(
            "the connect timeout (--connect-timeout-secs)",
            lambda,
            t.connect,
            ms,
            max,
        )?;
        check_duration(
            "the disconnect timeout (--disconnect-timeout-secs)",
            lambda,
            t.disconnect,
            ms,
            max,
        )?;
        check_duration(
            "the subscribe timeout (--subscribe-timeout-secs)",
            lambda,
            t.subscribe,
            ms,
            max,
        )?;
        check_duration(
            "the unsubscribe timeout (--unsubscribe-timeout-secs)",
            lambda,
            t.unsubscribe,
            ms,
            max,
        )?;
        check_duration(
            "the $default timeout (--default-timeout-secs)",
            lambda,
            t.default_route,
            ms,
            max,
        )?;
        check_duration(
            "the publish timeout (--publish-timeout-secs)",
            lambda,
            t.publish,
            ms,
            max,
        )?;
        check_duration(
            "the notifier timeout (--notifier-timeout-secs)",
            lambda,
            t.notifier,
            ms,
            max,
        )?;
        let q = &self.queue;
        check_count(
            "the batch size (--batch-size)",
            "between 1 and 10000 (SQS event source mappings)",
            q.batch_size,
            1,
            10_000,
        )?;
        check_duration(
            "the batching window (--batch-window-ms)",
            "at most 300 s (MaximumBatchingWindowInSeconds)",
            q.batch_window,
            Duration::ZERO,
            Duration::from_secs(300),
        )?;
        check_duration(
            "the visibility timeout (--visibility-timeout-secs)",
            "at most 12 hours (SQS)",
            q.visibility_timeout,
            Duration::ZERO,
            Duration::from_secs(12 * 3600),
        )?;
        check_count(
            "maxReceiveCount (--max-receive-count)",
            "between 1 and 1000 (SQS redrive policy)",
            usize::try_from(q.max_receive_count).unwrap_or(usize::MAX),
            1,
            1000,
        )?;
        check_count(
            "the notifier concurrency (--notifier-concurrency)",
            "between 1 and 1000 (MaximumConcurrency)",
            q.max_concurrency,
            1,
            1000,
        )?;
        check_duration(
            "the TTL sweep interval (--ttl-sweep-secs)",
            "between 1 ms and a day",
            self.ttl_sweep_interval,
            ms,
            Duration::from_secs(24 * 3600),
        )?;
        check_duration(
            "the item lifetime (--connection-ttl-secs)",
            "between 1 s and a year",
            self.functions.ttl,
            Duration::from_secs(1),
            YEAR,
        )?;
        check_count(
            "the push concurrency (--push-concurrency)",
            "between 1 and 10000",
            self.functions.push_concurrency,
            1,
            10_000,
        )?;
        check_count(
            "the outbound buffer (--outbound-buffer-bytes)",
            "between 131072 (one full-size message) and 1073741824",
            self.outbound_buffer_bytes,
            MAX_MESSAGE_BYTES,
            1 << 30,
        )?;
        if let Some(throttle) = self.post_throttle {
            if !(throttle.rate.is_finite() && throttle.rate > 0.0 && throttle.rate <= 1e6) {
                return Err(SettingsError::OutOfRange {
                    what: "the PostToConnection rate (--post-rate)",
                    range: "a number of calls per second above 0 and at most 1000000",
                    got: throttle.rate.to_string(),
                });
            }
            check_count(
                "the PostToConnection burst (--post-burst)",
                "between 1 and 1000000",
                usize::try_from(throttle.burst).unwrap_or(usize::MAX),
                1,
                1_000_000,
            )?;
        }
        self.faults.validate()?;
        if self.queue.visibility_timeout < self.timeouts.notifier {
            return Err(SettingsError::VisibilityBelowTimeout {
                visibility: self.queue.visibility_timeout,
                notifier: self.timeouts.notifier,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_template() {
        let settings = Settings::default();
        assert_eq!(settings.validate(), Ok(()));
        assert_eq!(
            settings.timeouts.for_route("subscribe"),
            Duration::from_secs(10)
        );
        assert_eq!(
            settings.timeouts.for_route("publish"),
            Duration::from_secs(29)
        );
        assert_eq!(settings.timeouts.notifier, Duration::from_secs(30));
        assert_eq!(settings.queue.batch_size, 10);
        assert_eq!(settings.queue.batch_window, Duration::from_secs(1));
    }

    #[test]
    fn values_that_would_overflow_or_make_no_sense_are_refused() {
        let overflow = Settings {
            idle_timeout: Duration::from_secs(u64::MAX),
            ..Settings::default()
        };
        assert!(matches!(
            overflow.validate(),
            Err(SettingsError::OutOfRange { what, .. }) if what.contains("--idle-timeout-secs")
        ));
        let mut zero = Settings::default();
        zero.queue.batch_size = 0;
        assert!(zero.validate().is_err());
        let nan = Settings {
            post_throttle: Some(PostThrottle {
                rate: f64::NAN,
                burst: 1,
            }),
            ..Settings::default()
        };
        assert!(nan.validate().is_err());
        let mut fault = Settings::default();
        fault.faults.subscribe_conflict_rate = 2.0;
        assert!(matches!(fault.validate(), Err(SettingsError::Faults(_))));
    }
}
