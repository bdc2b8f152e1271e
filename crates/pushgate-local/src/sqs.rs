//! The SQS queue between the EventBridge rule (and `publish`) and the
//! notifier, with its event source mapping: batches of up to `batch_size`
//! records gathered for at most `batch_window`, handed to up to
//! `max_concurrency` notifier invocations at once, each cut off at the
//! notifier's timeout. Records the notifier lists in `batchItemFailures`,
//! and every record of a batch whose invocation timed out, become visible
//! again after the visibility timeout; a record received
//! `max_receive_count` times moves to the DLQ on its next receive, as SQS's
//! redrive policy does. `DelaySeconds` is honoured.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use pushgate_domain::event::rfc3339;
use pushgate_functions::{notifier, NotifierDeps};
use pushgate_push::{EventQueue, QueueError};
use serde::Serialize;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

use crate::apigw::now_ms;
use crate::settings::{QueueSettings, ACCOUNT_ID};

/// SQS's largest message: 256 KiB.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// SQS's longest `DelaySeconds`: 15 minutes.
pub const MAX_DELAY_SECS: u32 = 900;

struct Message {
    id: String,
    body: String,
    sent_at_ms: i64,
    first_receive_ms: Option<i64>,
    receive_count: u32,
    visible_at: Instant,
    receipt_handle: String,
}

/// A record that went to the DLQ, as `GET /_pushgate/dlq` lists it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// The SQS message id.
    pub message_id: String,
    /// The record body: the whole EventBridge event.
    pub body: String,
    /// Times it was received before it moved.
    pub receive_count: u32,
    /// When it was sent to the queue (RFC 3339).
    pub sent_at: String,
    /// When it moved to the DLQ (RFC 3339).
    pub moved_at: String,
}

/// How many records are where.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct QueueCounts {
    /// Visible, waiting for the notifier.
    pub visible: usize,
    /// Sent with a delay that has not passed yet.
    pub delayed: usize,
    /// Received and not yet deleted (in the notifier or waiting out the
    /// visibility timeout after a failure).
    pub in_flight: usize,
    /// In the DLQ.
    pub dead_letters: usize,
    /// Notifier invocations so far.
    pub invocations: u64,
}

#[derive(Default)]
struct State {
    messages: Vec<Message>,
    dlq: Vec<DeadLetter>,
}

/// The queue and its DLQ.
pub struct Queue {
    settings: QueueSettings,
    arn: String,
    region: String,
    state: Mutex<State>,
    arrived: Notify,
    invocations: std::sync::atomic::AtomicU64,
}

impl Queue {
    /// An empty queue named `name`.
    pub fn new(settings: QueueSettings, region: &str, name: &str) -> Self {
        Self {
            settings,
            arn: format!("arn:aws:sqs:{region}:{ACCOUNT_ID}:{name}"),
            region: region.to_owned(),
            state: Mutex::default(),
            arrived: Notify::new(),
            invocations: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// SendMessage: queues `body` and returns the message id.
    pub fn send(&self, body: String) -> String {
        self.send_delayed(body, Duration::ZERO)
    }

    /// SendMessage with `DelaySeconds`: the message is invisible for `delay`.
    pub fn send_delayed(&self, body: String, delay: Duration) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.lock().messages.push(Message {
            id: id.clone(),
            body,
            sent_at_ms: now_ms(),
            first_receive_ms: None,
            receive_count: 0,
            visible_at: Instant::now() + delay,
            receipt_handle: String::new(),
        });
        self.arrived.notify_one();
        id
    }

    /// The DLQ's records, oldest first.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.lock().dlq.clone()
    }

    /// Counts of visible, in-flight and dead records.
    pub fn counts(&self) -> QueueCounts {
        let state = self.lock();
        let now = Instant::now();
        let visible = state
            .messages
            .iter()
            .filter(|m| m.visible_at <= now)
            .count();
        let delayed = state
            .messages
            .iter()
            .filter(|m| m.visible_at > now && m.receive_count == 0)
            .count();
        QueueCounts {
            visible,
            delayed,
            in_flight: state.messages.len() - visible - delayed,
            dead_letters: state.dlq.len(),
            invocations: self.invocations.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// When the next record becomes visible (maybe already), if any.
    fn next_visible(&self) -> Option<Instant> {
        self.lock().messages.iter().map(|m| m.visible_at).min()
    }

    /// ReceiveMessage: up to `batch_size` visible records, each made
    /// invisible for the visibility timeout. Records already received
    /// `max_receive_count` times move to the DLQ instead.
    // `SqsEvent` is `#[non_exhaustive]`.
    #[allow(clippy::field_reassign_with_default)]
    fn receive(&self) -> SqsEvent {
        let now = Instant::now();
        let now_ms = now_ms();
        let mut state = self.lock();
        let State { messages, dlq } = &mut *state;
        let mut records = Vec::new();
        messages.retain_mut(|m| {
            if m.visible_at > now || records.len() >= self.settings.batch_size {
                return true;
            }
            if m.receive_count >= self.settings.max_receive_count {
                tracing::warn!(
                    message_id = %m.id,
                    receive_count = m.receive_count,
                    "record moved to the DLQ"
                );
                dlq.push(DeadLetter {
                    message_id: m.id.clone(),
                    body: std::mem::take(&mut m.body),
                    receive_count: m.receive_count,
                    sent_at: rfc3339(m.sent_at_ms.div_euclid(1000)),
                    moved_at: rfc3339(now_ms.div_euclid(1000)),
                });
                return false;
            }
            m.receive_count += 1;
            m.first_receive_ms.get_or_insert(now_ms);
            m.visible_at = now + self.settings.visibility_timeout;
            m.receipt_handle = uuid::Uuid::new_v4().to_string();
            records.push(self.record(m));
            true
        });
        let mut event = SqsEvent::default();
        event.records = records;
        event
    }

    // `SqsMessage` is `#[non_exhaustive]`.
    #[allow(clippy::field_reassign_with_default)]
    fn record(&self, m: &Message) -> SqsMessage {
        let mut record = SqsMessage::default();
        record.message_id = Some(m.id.clone());
        record.receipt_handle = Some(m.receipt_handle.clone());
        record.body = Some(m.body.clone());
        record.attributes = HashMap::from([
            (
                "ApproximateReceiveCount".to_owned(),
                m.receive_count.to_string(),
            ),
            ("SentTimestamp".to_owned(), m.sent_at_ms.to_string()),
            ("SenderId".to_owned(), "AIDAEVENTBRIDGELOCAL".to_owned()),
            (
                "ApproximateFirstReceiveTimestamp".to_owned(),
                m.first_receive_ms.unwrap_or(m.sent_at_ms).to_string(),
            ),
        ]);
        record.event_source = Some("aws:sqs".to_owned());
        record.event_source_arn = Some(self.arn.clone());
        record.aws_region = Some(self.region.clone());
        record
    }

    /// DeleteMessage for every record of a batch except the failed ones,
    /// matched by receipt handle so a record redelivered meanwhile stays.
    fn complete(&self, event: &SqsEvent, failed: &[String]) {
        let done: Vec<&str> = event
            .records
            .iter()
            .filter(|r| r.message_id.as_ref().is_some_and(|id| !failed.contains(id)))
            .filter_map(|r| r.receipt_handle.as_deref())
            .collect();
        self.lock()
            .messages
            .retain(|m| !done.contains(&m.receipt_handle.as_str()));
    }

    /// Waits until a batch is worth receiving: some record is visible and
    /// either `batch_size` are or the batching window has passed since the
    /// first became visible. `false` when `stop` turned true meanwhile.
    async fn wait_for_batch(&self, stop: &mut watch::Receiver<bool>) -> bool {
        loop {
            if *stop.borrow() {
                return false;
            }
            match self.next_visible() {
                None => {
                    tokio::select! {
                        () = self.arrived.notified() => {}
                        _ = stop.changed() => return false,
                    }
                    continue;
                }
                Some(at) if at > Instant::now() => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at.into()) => {}
                        () = self.arrived.notified() => {}
                        _ = stop.changed() => return false,
                    }
                    continue;
                }
                Some(_) => {}
            }
            let window_ends = tokio::time::Instant::now() + self.settings.batch_window;
            while self.counts().visible < self.settings.batch_size {
                tokio::select! {
                    () = tokio::time::sleep_until(window_ends) => break,
                    () = self.arrived.notified() => {}
                    _ = stop.changed() => return false,
                }
            }
            return true;
        }
    }

    /// One notifier invocation: the batch, cut off at the notifier's
    /// `timeout`. A timed-out (or failed) invocation deletes nothing, so the
    /// whole batch is redelivered after the visibility timeout.
    async fn invoke(&self, deps: &NotifierDeps, event: SqsEvent, timeout: Duration) {
        let size = event.records.len();
        self.invocations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + timeout;
        let run = notifier::handle(deps, event.clone(), deadline);
        match tokio::time::timeout(timeout, run).await {
            Ok(response) => {
                let failed: Vec<String> = response
                    .batch_item_failures
                    .iter()
                    .map(|f| f.item_identifier.clone())
                    .collect();
                tracing::info!(
                    function = "notifier",
                    route = "sqs",
                    records = size,
                    failed = failed.len(),
                    duration_ms =
                        format_args!("{:.2}", started.elapsed().as_secs_f64() * 1000.0),
                    "REPORT"
                );
                self.complete(&event, &failed);
            }
            Err(_) => tracing::error!(
                function = "notifier",
                route = "sqs",
                records = size,
                error = format_args!(
                    "Task timed out after {:.2} seconds",
                    started.elapsed().as_secs_f64()
                ),
                "REPORT invocation timed out; the whole batch is redelivered after the visibility timeout"
            ),
        }
    }

    /// The event source mapping: feeds batches to at most
    /// `max_concurrency` notifier invocations at once, each with `timeout`,
    /// until `stop` turns true. Invocations still running then are dropped,
    /// as a shut-down process would lose them (their records are still in
    /// the queue).
    pub async fn run(
        self: Arc<Self>,
        deps: NotifierDeps,
        timeout: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        let slots = Arc::new(Semaphore::new(self.settings.max_concurrency.max(1)));
        // One execution environment per concurrent invocation, as Lambda
        // runs them: each has its own process-wide state (the adaptive push
        // limit) and keeps it for the next invocation it serves.
        let environments: Arc<parking_lot::Mutex<Vec<NotifierDeps>>> =
            Arc::new(parking_lot::Mutex::new(
                (0..self.settings.max_concurrency.max(1))
                    .map(|_| {
                        let mut env = deps.clone();
                        env.limit = Arc::new(pushgate_functions::limit::AdaptiveLimit::new(
                            deps.deps.config.push_concurrency,
                        ));
                        env
                    })
                    .collect(),
            ));
        let mut running = JoinSet::new();
        loop {
            let permit = tokio::select! {
                permit = Arc::clone(&slots).acquire_owned() => permit,
                _ = stop.changed() => break,
            };
            let Ok(permit) = permit else { break };
            // Reap finished invocations so the set does not grow.
            while running.try_join_next().is_some() {}
            if !self.wait_for_batch(&mut stop).await {
                break;
            }
            let event = self.receive();
            if event.records.is_empty() {
                continue;
            }
            let queue = Arc::clone(&self);
            // A free environment always exists while this invocation holds
            // a slot: there are as many environments as slots.
            let env = environments.lock().pop().unwrap_or_else(|| deps.clone());
            let pool = Arc::clone(&environments);
            running.spawn(async move {
                queue.invoke(&env, event, timeout).await;
                pool.lock().push(env);
                drop(permit);
            });
        }
        running.shutdown().await;
    }
}

/// An SQS message over [`MAX_MESSAGE_BYTES`].
#[derive(Debug, thiserror::Error)]
#[error("the message is {0} bytes; SQS accepts at most {MAX_MESSAGE_BYTES}")]
pub struct MessageTooLarge(pub usize);

/// The [`EventQueue`] port on the emulator's queue: what `SqsQueue` does
/// with SendMessage in AWS.
#[derive(Clone)]
pub struct LocalQueue(pub Arc<Queue>);

#[async_trait]
impl EventQueue for LocalQueue {
    async fn send(&self, body: String, delay_secs: u32) -> Result<(), QueueError> {
        if body.len() > MAX_MESSAGE_BYTES {
            return Err(QueueError(Box::new(MessageTooLarge(body.len()))));
        }
        let delay = Duration::from_secs(u64::from(delay_secs.min(MAX_DELAY_SECS)));
        let id = self.0.send_delayed(body, delay);
        tracing::debug!(message_id = %id, delay_secs, "SendMessage");
        Ok(())
    }
}
