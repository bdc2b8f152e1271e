//! The notifier: SQS batches of EventBridge events in, one `notification`
//! frame out to every subscriber of the event's entity and every connection
//! of its user.
//!
//! Per record: parse the event (a record that can never succeed is reported
//! failed, with its reason logged, so it reaches the DLQ); append it to each
//! of its streams, which gives it its `seq` (the same one on a redelivery)
//! and keeps it as history; page through the stream's subscribers and push
//! with bounded concurrency; retry 429 and 5xx with capped, jittered backoff
//! inside a per-push time budget; delete connections that answer 410.
//!
//! Lambda stops an invocation at its deadline without asking, and SQS then
//! redelivers the whole batch. So the notifier works to a cut-off shortly
//! before the deadline: records run concurrently, no push starts after the
//! cut-off, and what was left undone (connections whose push failed or was
//! cut off, and where reading subscribers stopped) is saved with the
//! event's place in the stream. The record is reported in
//! `batchItemFailures`, and its redelivery pushes only to what was left
//! (see `docs/design.md`, "Delivery progress").
//!
//! A 403 from PostToConnection means every push will fail the same way (the
//! endpoint names another API or stage, or the role lacks
//! `execute-api:ManageConnections`): the record stops, fails and, after its
//! retries, reaches the DLQ. It is never reported delivered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::stream::{self, StreamExt};
use pushgate_domain::{
    ConnectionId, DeliveryProgress, EventError, NotificationEvent, StreamHead, StreamKey,
};
use pushgate_push::PushError;
use pushgate_store::{ConnectionStore, StoreError, SubscriberPage};
use rand::Rng;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::metrics::FanoutMetrics;
use crate::NotifierDeps;

/// Subscribers read from the index per page.
pub const PAGE_SIZE: usize = 1000;

/// How pushes answered 429 or 5xx are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per push, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles each time.
    pub base: Duration,
    /// Longest single backoff.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    /// Six attempts: at most 50+100+200+400+800 ms of backoff (1.55 s, about
    /// half that with jitter) per push, inside the push budget. With four,
    /// a burst that fails 30 % of pushes fails a pass over 200 subscribers
    /// about 3 times in 4 (1 − (1 − 0.3⁴)²⁰⁰); with six, about 1 in 7.
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base: Duration::from_millis(50),
            cap: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// Full-jitter backoff before attempt `attempt` (1-based, > 1).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << (attempt.saturating_sub(2)).min(16));
        let ceiling = exp.min(self.cap);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::thread_rng().gen_range(0..=millis))
    }
}

/// How an invocation spends its time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeliveryLimits {
    /// No push starts later than this before the Lambda deadline (at most a
    /// quarter of the invocation's time): the time left to save what is
    /// undone, delete gone connections and answer.
    pub deadline_margin: Duration,
    /// Longest one push may take, its retries included, so that one slow
    /// connection cannot eat the invocation.
    pub push_budget: Duration,
    /// Records of a batch handled at once. Pushes of all of them share
    /// `PUSH_CONCURRENCY`.
    pub record_concurrency: usize,
}

impl Default for DeliveryLimits {
    fn default() -> Self {
        Self {
            deadline_margin: Duration::from_millis(1500),
            push_budget: Duration::from_secs(5),
            record_concurrency: 10,
        }
    }
}

/// What happened to one record.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecordOutcome {
    /// Pushes that reached their connection.
    pub delivered: usize,
    /// Connections that answered 410 and were removed.
    pub gone: usize,
    /// Pushes refused for good (413): logged, not retried.
    pub refused: usize,
    /// Pushes answered 429 at least once (API Gateway throttling).
    pub throttled: usize,
    /// Pushes left undone (failed after retries, or cut off).
    pub undone: usize,
}

/// Why a record is reported failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The record can never succeed; it belongs in the DLQ.
    #[error("undeliverable event")]
    Undeliverable(#[from] EventError),
    /// Reading or writing the store failed.
    #[error("the store failed")]
    Store(#[from] StoreError),
    /// PostToConnection answered 403 Forbidden.
    #[error(
        "PostToConnection answered 403 Forbidden: MANAGEMENT_API_ENDPOINT probably names \
         another API or stage, or the function's role lacks execute-api:ManageConnections on \
         it ({delivered} delivered before)"
    )]
    Forbidden {
        /// Delivered before the first 403.
        delivered: usize,
    },
    /// Some pushes failed after their retries, or the invocation's cut-off
    /// came first; what is left was saved for the redelivery.
    #[error("{undone} pushes left for the redelivery ({delivered} delivered)")]
    Unfinished {
        /// Pushes left undone.
        undone: usize,
        /// Delivered.
        delivered: usize,
    },
    /// The cut-off came before the record was started.
    #[error("the invocation's cut-off came before this record started")]
    NotStarted,
}

enum Push {
    Delivered {
        throttled: bool,
    },
    Gone(ConnectionId),
    Refused,
    Forbidden(ConnectionId),
    /// Failed after its retries, or out of time: left for the redelivery.
    Undone {
        id: ConnectionId,
        throttled: bool,
    },
}

/// What one invocation shares between its records.
struct Invocation<'a> {
    deps: &'a NotifierDeps,
    /// No push starts after this.
    cutoff: Instant,
    /// Pushes in flight across every record.
    pushes: Semaphore,
    /// Stop every record's pushes after a 403.
    forbidden: AtomicU64,
}

impl Invocation<'_> {
    fn out_of_time(&self) -> bool {
        Instant::now() >= self.cutoff
    }

    async fn push(&self, connection: ConnectionId, payload: &[u8]) -> Push {
        let policy = self.deps.retry;
        let end = (Instant::now() + self.deps.limits.push_budget).min(self.cutoff);
        let mut throttled = false;
        let mut attempt = 1;
        loop {
            if self.forbidden.load(Ordering::Relaxed) > 0 || Instant::now() >= end {
                return Push::Undone {
                    id: connection,
                    throttled,
                };
            }
            let result = {
                let Ok(_permit) = self.pushes.acquire().await else {
                    return Push::Undone {
                        id: connection,
                        throttled,
                    };
                };
                tokio::time::timeout_at(end, self.deps.pusher.post(connection.as_str(), payload))
                    .await
            };
            let error = match result {
                Ok(Ok(())) => return Push::Delivered { throttled },
                Ok(Err(PushError::Gone)) => return Push::Gone(connection),
                Ok(Err(PushError::Forbidden)) => {
                    self.forbidden.fetch_add(1, Ordering::Relaxed);
                    return Push::Forbidden(connection);
                }
                Ok(Err(e)) => e,
                Err(_) => {
                    tracing::warn!(connection_id = %connection, "push out of time; left for the redelivery");
                    return Push::Undone {
                        id: connection,
                        throttled,
                    };
                }
            };
            throttled |= matches!(error, PushError::Throttled);
            if !error.is_retryable() {
                tracing::warn!(connection_id = %connection, error = %error, "push refused; not retried");
                return Push::Refused;
            }
            if attempt >= policy.max_attempts {
                tracing::warn!(connection_id = %connection, attempts = attempt, error = %error, "push failed after retries");
                return Push::Undone {
                    id: connection,
                    throttled,
                };
            }
            attempt += 1;
            tokio::time::sleep_until((Instant::now() + policy.backoff(attempt)).min(end)).await;
        }
    }
}

async fn page(
    store: &dyn ConnectionStore,
    stream: &StreamKey,
    now: i64,
    after: Option<&ConnectionId>,
) -> Result<SubscriberPage, StoreError> {
    match stream {
        StreamKey::Entity(e) => store.subscribers(e, now, after, PAGE_SIZE).await,
        StreamKey::User(u) => store.user_connections(u, now, after, PAGE_SIZE).await,
    }
}

/// What delivering to one stream did, and what it left.
#[derive(Default)]
struct StreamDelivery {
    outcome: RecordOutcome,
    gone: Vec<ConnectionId>,
    forbidden: bool,
    left: DeliveryProgress,
}

impl StreamDelivery {
    fn finished(&self) -> bool {
        self.left.retry.is_empty() && self.left.read_all
    }

    fn count(&mut self, push: Push) {
        match push {
            Push::Delivered { throttled } => {
                self.outcome.delivered += 1;
                self.outcome.throttled += usize::from(throttled);
            }
            Push::Gone(c) => self.gone.push(c),
            Push::Refused => self.outcome.refused += 1,
            Push::Forbidden(c) => {
                self.forbidden = true;
                self.left.retry.push(c.as_str().to_owned());
            }
            Push::Undone { id, throttled } => {
                self.outcome.throttled += usize::from(throttled);
                self.left.retry.push(id.as_str().to_owned());
            }
        }
    }
}

/// Pushes `payload` to the connections `progress` left (all of the
/// stream's subscribers on a first delivery), page by page; the next page
/// is read while this one's pushes are in flight.
async fn deliver_stream(
    inv: &Invocation<'_>,
    stream: &StreamKey,
    payload: &[u8],
    progress: DeliveryProgress,
) -> Result<StreamDelivery, StoreError> {
    let store = inv.deps.deps.store.as_ref();
    let now = inv.deps.deps.clock.now_secs();
    let concurrency = inv.deps.deps.config.push_concurrency.max(1);
    let mut done = StreamDelivery::default();
    // Connections an earlier delivery left go first.
    let mut unit: Vec<ConnectionId> = progress
        .retry
        .iter()
        .filter_map(|c| ConnectionId::new(c.as_str()).ok())
        .collect();
    let mut resume_after = progress
        .resume_after
        .as_deref()
        .and_then(|c| ConnectionId::new(c).ok());
    let mut read_all = progress.read_all;
    loop {
        // Read the next page while this unit's pushes are in flight.
        let next_page = async {
            if read_all {
                Ok(None)
            } else {
                page(store, stream, now, resume_after.as_ref())
                    .await
                    .map(Some)
            }
        };
        let pushes = async {
            if inv.out_of_time() || inv.forbidden.load(Ordering::Relaxed) > 0 {
                return unit
                    .iter()
                    .map(|id| Push::Undone {
                        id: id.clone(),
                        throttled: false,
                    })
                    .collect::<Vec<_>>();
            }
            // The futures are built up front (they do nothing until polled):
            // a closure in the stream would make this future's lifetimes
            // too general for the compiler to prove it `Send`.
            let pushes: Vec<_> = unit
                .iter()
                .map(|id| inv.push(id.clone(), payload))
                .collect();
            stream::iter(pushes)
                .buffer_unordered(concurrency)
                .collect::<Vec<_>>()
                .await
        };
        let (next_page, pushed) = futures::join!(next_page, pushes);
        for push in pushed {
            done.count(push);
        }
        let Some(next_page) = next_page? else {
            break;
        };
        if inv.out_of_time() || inv.forbidden.load(Ordering::Relaxed) > 0 {
            // This page is read but will not be pushed: resume at its start.
            break;
        }
        unit = next_page.connection_ids;
        match next_page.next {
            Some(next) => resume_after = Some(next),
            None => read_all = true,
        }
        if unit.is_empty() && read_all {
            break;
        }
    }
    done.left.resume_after = resume_after.map(|c| c.as_str().to_owned());
    done.left.read_all = read_all;
    Ok(done)
}

/// A fresh, random stream epoch: 10 characters of base 36.
pub fn new_epoch() -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    (0..10)
        .map(|_| char::from(DIGITS[rng.gen_range(0..DIGITS.len())]))
        .collect()
}

async fn handle_record(
    inv: &Invocation<'_>,
    record: &SqsMessage,
    metrics: &parking_lot::Mutex<FanoutMetrics>,
) -> Result<RecordOutcome, RecordError> {
    if inv.out_of_time() {
        return Err(RecordError::NotStarted);
    }
    let started = Instant::now();
    let deps = &inv.deps.deps;
    let body = record.body.as_deref().unwrap_or_default();
    let event = NotificationEvent::from_eventbridge_json(body)?;
    event.check_size()?;
    let now = deps.clock.now_secs();
    let mut outcome = RecordOutcome::default();
    let mut error = None;
    for stream in event.streams() {
        let build = |head: &StreamHead| {
            let bytes = event.envelope(&stream, head)?;
            Ok(String::from_utf8(bytes)?)
        };
        let appended = deps
            .store
            .append(
                &stream,
                &event.id,
                deps.config.retention,
                now,
                &new_epoch(),
                &build,
            )
            .await?;
        let progress = appended.progress.clone().unwrap_or_default();
        let delivery = deliver_stream(inv, &stream, appended.payload.as_bytes(), progress).await?;
        outcome.delivered += delivery.outcome.delivered;
        outcome.refused += delivery.outcome.refused;
        outcome.throttled += delivery.outcome.throttled;
        outcome.gone += delivery.gone.len();
        for gone in &delivery.gone {
            if let Err(e) = deps.store.delete_connection(gone).await {
                // TTL removes it later; the push loop already skipped it.
                tracing::warn!(connection_id = %gone, error = %e, "could not delete a gone connection");
            }
        }
        if !delivery.finished() {
            outcome.undone += delivery.left.retry.len();
            deps.store
                .save_progress(&stream, &event.id, &delivery.left)
                .await?;
            if delivery.forbidden {
                error.get_or_insert(RecordError::Forbidden {
                    delivered: outcome.delivered,
                });
            }
            if inv.out_of_time() && !delivery.left.read_all {
                // Left unread subscribers too: count them as one for the log.
                outcome.undone += 1;
            }
        }
        tracing::info!(
            message_id = record.message_id.as_deref().unwrap_or("-"),
            event_id = %event.id,
            stream = %stream.pk(),
            seq = appended.position.seq,
            redelivered = !appended.fresh,
            delivered = delivery.outcome.delivered,
            gone = delivery.gone.len(),
            refused = delivery.outcome.refused,
            throttled = delivery.outcome.throttled,
            undone = delivery.left.retry.len(),
            "notified"
        );
    }
    let age_ms = record
        .attributes
        .get("SentTimestamp")
        .and_then(|t| t.parse::<i64>().ok())
        .map_or(0, |sent| deps.clock.now_ms().saturating_sub(sent));
    {
        let mut m = metrics.lock();
        m.delivered += outcome.delivered as u64;
        m.gone += outcome.gone as u64;
        m.failed += outcome.undone as u64;
        m.throttled += outcome.throttled as u64;
        m.record_event(
            u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            u64::try_from(age_ms).unwrap_or(0),
        );
    }
    if let Some(error) = error {
        return Err(error);
    }
    if outcome.undone > 0 {
        return Err(RecordError::Unfinished {
            undone: outcome.undone,
            delivered: outcome.delivered,
        });
    }
    Ok(outcome)
}

/// `BatchItemFailure` is `#[non_exhaustive]`: built from `Default`.
#[allow(clippy::field_reassign_with_default)]
fn batch_item_failure(message_id: String) -> BatchItemFailure {
    let mut failure = BatchItemFailure::default();
    failure.item_identifier = message_id;
    failure
}

/// One record in its own span, with its message id.
async fn record_task(
    inv: &Invocation<'_>,
    record: &SqsMessage,
    metrics: &parking_lot::Mutex<FanoutMetrics>,
) -> (String, Result<RecordOutcome, RecordError>) {
    let message_id = record.message_id.clone().unwrap_or_default();
    let span = tracing::info_span!("record", message_id = %message_id);
    let result = tracing::Instrument::instrument(handle_record(inv, record, metrics), span).await;
    (message_id, result)
}

/// Handles one SQS batch before `deadline` (the invocation's Lambda
/// deadline); the response lists exactly the records SQS must retry.
pub async fn handle(deps: &NotifierDeps, event: SqsEvent, deadline: Instant) -> SqsBatchResponse {
    // The margin never takes more than a quarter of the time left, so a
    // short timeout (as in local runs) still leaves time to work.
    let left = deadline.saturating_duration_since(Instant::now());
    let margin = deps.limits.deadline_margin.min(left / 4);
    let inv = Invocation {
        deps,
        cutoff: deadline - margin,
        pushes: Semaphore::new(deps.deps.config.push_concurrency.max(1)),
        forbidden: AtomicU64::new(0),
    };
    let metrics = parking_lot::Mutex::new(FanoutMetrics::default());
    // Built up front for the same reason as the pushes in `deliver_stream`.
    let records: Vec<_> = event
        .records
        .iter()
        .map(|record| record_task(&inv, record, &metrics))
        .collect();
    let results: Vec<(String, Result<RecordOutcome, RecordError>)> = stream::iter(records)
        .buffer_unordered(deps.limits.record_concurrency.max(1))
        .collect()
        .await;
    let mut response = SqsBatchResponse::default();
    for (message_id, result) in results {
        let Err(e) = result else { continue };
        match &e {
            RecordError::Undeliverable(reason) => tracing::error!(
                message_id = %message_id,
                reason = %reason,
                "record can never be delivered; reported failed so it reaches the DLQ"
            ),
            RecordError::Forbidden { .. } => tracing::error!(
                message_id = %message_id,
                error = %e,
                "record failed; it will reach the DLQ unless the endpoint or role is fixed"
            ),
            other => tracing::warn!(
                message_id = %message_id,
                error = %other,
                source = ?std::error::Error::source(other).map(ToString::to_string),
                "record failed; reported for retry"
            ),
        }
        response
            .batch_item_failures
            .push(batch_item_failure(message_id));
    }
    if deps.emit_metrics {
        let m = metrics.into_inner();
        if let Err(e) = m.emit(
            crate::metrics::NAMESPACE,
            &[crate::metrics::function_dimension()],
        ) {
            tracing::warn!(error = %e, "could not write metrics");
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base: Duration::from_millis(10),
            cap: Duration::from_millis(40),
        };
        for attempt in 2..10 {
            assert!(policy.backoff(attempt) <= Duration::from_millis(40));
        }
        assert!(policy.backoff(2) <= Duration::from_millis(10));
    }

    #[test]
    fn epochs_are_short_and_differ() {
        let (a, b) = (new_epoch(), new_epoch());
        assert_eq!(a.len(), 10);
        assert!(a.len() <= pushgate_domain::event::MAX_EPOCH_LEN);
        assert_ne!(a, b);
    }
}
