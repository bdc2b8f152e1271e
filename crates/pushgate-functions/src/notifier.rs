//! The notifier: SQS batches of EventBridge events in, one `notification`
//! frame out to every subscriber of the event's entity and every connection
//! of its user.
//!
//! Per record: parse the event (a record that can never succeed is reported
//! failed, with its reason logged, so it reaches the DLQ); serialise the
//! envelope once; page through the entity's subscribers and push with
//! bounded concurrency; retry 429 and 5xx with capped, jittered exponential
//! backoff; delete connections that answer 410 with their subscriptions.
//! A record with any push still failing after its retries is reported in
//! `batchItemFailures`, so SQS redelivers only that record (clients drop the
//! duplicates by event id).

use std::collections::HashSet;
use std::time::Duration;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::stream::{self, StreamExt};
use pushgate_domain::{ConnectionId, EntityId, EventError, NotificationEvent, UserId};
use pushgate_push::PushError;
use pushgate_store::{ConnectionStore, StoreError, SubscriberPage};
use rand::Rng;

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
    /// half that with jitter) per push, well inside the notifier's timeout.
    /// With four, a burst that fails 30 % of pushes fails a pass over 200
    /// subscribers about 3 times in 4 (1 − (1 − 0.3⁴)²⁰⁰), so records ran
    /// out of receives; with six, about 1 in 7 (measured in the emulator's
    /// fault test).
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
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << (attempt.saturating_sub(2)).min(16));
        let ceiling = exp.min(self.cap);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::thread_rng().gen_range(0..=millis))
    }
}

/// What happened to one record.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecordOutcome {
    /// Pushes that reached their connection.
    pub delivered: usize,
    /// Connections that answered 410 and were removed.
    pub gone: usize,
    /// Pushes refused for good (413, 403): logged, not retried.
    pub refused: usize,
    /// Pushes that still failed after every retry: the record is retried.
    pub failed: usize,
}

/// Why a record is reported failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The record can never succeed; it belongs in the DLQ.
    #[error("undeliverable event")]
    Undeliverable(#[from] EventError),
    /// Reading subscribers failed.
    #[error("reading subscribers failed")]
    Store(#[from] StoreError),
    /// Some pushes failed after their retries.
    #[error("{failed} pushes failed after retries ({delivered} delivered)")]
    PushesFailed {
        /// Failed pushes.
        failed: usize,
        /// Delivered pushes.
        delivered: usize,
    },
}

enum Push {
    Delivered,
    Gone(ConnectionId),
    Refused,
    Failed,
}

async fn push_one(deps: &NotifierDeps, connection: ConnectionId, payload: &[u8]) -> Push {
    let mut attempt = 1;
    loop {
        match deps.pusher.post(connection.as_str(), payload).await {
            Ok(()) => return Push::Delivered,
            Err(PushError::Gone) => return Push::Gone(connection),
            Err(e) if e.is_retryable() && attempt < deps.retry.max_attempts => {
                attempt += 1;
                tokio::time::sleep(deps.retry.backoff(attempt)).await;
            }
            Err(e) if e.is_retryable() => {
                tracing::warn!(connection_id = %connection, attempts = attempt, error = %e, "push failed after retries");
                return Push::Failed;
            }
            Err(e) => {
                tracing::warn!(connection_id = %connection, error = %e, "push refused; not retried");
                return Push::Refused;
            }
        }
    }
}

/// Who an event goes to.
#[derive(Clone, Copy)]
enum Target<'a> {
    /// Every subscriber of an entity (the `byEntity` index).
    Entity(&'a EntityId),
    /// Every connection of a user (the `byUser` index).
    User(&'a UserId),
}

impl Target<'_> {
    async fn page(
        self,
        store: &dyn ConnectionStore,
        now: i64,
        after: Option<&ConnectionId>,
    ) -> Result<SubscriberPage, StoreError> {
        match self {
            Self::Entity(e) => store.subscribers(e, now, after, PAGE_SIZE).await,
            Self::User(u) => store.user_connections(u, now, after, PAGE_SIZE).await,
        }
    }
}

/// Where the next page of subscribers starts: a target's index and the
/// last connection id read; `None` once every target is read.
type Cursor = Option<(usize, Option<ConnectionId>)>;

/// One page of connection ids, as a stream, and the cursor after it.
type Page = stream::Iter<std::vec::IntoIter<Result<ConnectionId, StoreError>>>;

async fn next_page(
    store: &dyn ConnectionStore,
    now: i64,
    targets: &[Target<'_>],
    cursor: Cursor,
) -> Option<(Page, Cursor)> {
    let (index, after) = cursor?;
    let target = *targets.get(index)?;
    match target.page(store, now, after.as_ref()).await {
        Ok(page) => {
            let next = match page.next {
                Some(next) => (index, Some(next)),
                None => (index + 1, None),
            };
            let ids: Vec<_> = page.connection_ids.into_iter().map(Ok).collect();
            Some((stream::iter(ids), Some(next)))
        }
        Err(e) => Some((stream::iter(vec![Err(e)]), None)),
    }
}

async fn push_item(
    deps: &NotifierDeps,
    payload: &[u8],
    item: Result<ConnectionId, StoreError>,
) -> Result<Push, StoreError> {
    Ok(push_one(deps, item?, payload).await)
}

/// Delivers one event to every live subscriber of its entity and every live
/// connection of its user; a connection that is both gets it once.
pub async fn deliver(
    deps: &NotifierDeps,
    event: &NotificationEvent,
) -> Result<RecordOutcome, RecordError> {
    let payload = event.envelope()?;
    let payload = payload.as_slice();
    let store = deps.deps.store.as_ref();
    let now = deps.deps.clock.now_secs();
    let concurrency = deps.deps.config.push_concurrency.max(1);
    let targets: Vec<Target<'_>> = event
        .entity_id
        .iter()
        .map(Target::Entity)
        .chain(event.user_id.iter().map(Target::User))
        .collect();
    // Only an event with two targets can reach a connection twice.
    let mut seen: Option<HashSet<ConnectionId>> = (targets.len() > 1).then(HashSet::new);
    // One stream of connection ids across every page of every target: the
    // next page is read while the last page's pushes are still in flight,
    // so concurrency never drains to zero at a page boundary.
    let pages = stream::unfold(Some((0usize, None)), |cursor| {
        next_page(store, now, &targets, cursor)
    });
    // Boxed: a concrete `Send` stream (the closures' futures otherwise
    // defeat the compiler's `Send` check in callers that spawn).
    let mut results = pages
        .flatten()
        .filter(|item| {
            let fresh = match item {
                Ok(c) => seen.as_mut().is_none_or(|s| s.insert(c.clone())),
                Err(_) => true,
            };
            futures::future::ready(fresh)
        })
        .map(|item| push_item(deps, payload, item))
        .buffer_unordered(concurrency)
        .boxed();
    let mut outcome = RecordOutcome::default();
    let mut gone = Vec::new();
    while let Some(result) = results.next().await {
        match result? {
            Push::Delivered => outcome.delivered += 1,
            Push::Gone(c) => gone.push(c),
            Push::Refused => outcome.refused += 1,
            Push::Failed => outcome.failed += 1,
        }
    }
    drop(results);
    outcome.gone = gone.len();
    stream::iter(gone)
        .map(|c| async move { (store.delete_connection(&c).await, c) })
        .buffer_unordered(concurrency)
        .for_each(|(result, c)| async move {
            if let Err(e) = result {
                // TTL removes it later; the push loop already skipped it.
                tracing::warn!(connection_id = %c, error = %e, "could not delete a gone connection");
            }
        })
        .await;
    if outcome.failed > 0 {
        return Err(RecordError::PushesFailed {
            failed: outcome.failed,
            delivered: outcome.delivered,
        });
    }
    Ok(outcome)
}

async fn handle_record(
    deps: &NotifierDeps,
    record: &SqsMessage,
) -> Result<RecordOutcome, RecordError> {
    let body = record.body.as_deref().unwrap_or_default();
    let event = NotificationEvent::from_eventbridge_json(body)?;
    let outcome = deliver(deps, &event).await?;
    tracing::info!(
        message_id = record.message_id.as_deref().unwrap_or("-"),
        event_id = %event.id,
        entity_id = event.entity_id.as_ref().map_or("-", |e| e.as_str()),
        user_id = event.user_id.as_ref().map_or("-", |u| u.as_str()),
        delivered = outcome.delivered,
        gone = outcome.gone,
        refused = outcome.refused,
        "notified"
    );
    Ok(outcome)
}

/// `BatchItemFailure` is `#[non_exhaustive]`: built from `Default`.
#[allow(clippy::field_reassign_with_default)]
fn batch_item_failure(message_id: String) -> BatchItemFailure {
    let mut failure = BatchItemFailure::default();
    failure.item_identifier = message_id;
    failure
}

/// Handles one SQS batch before `deadline` (the invocation's Lambda
/// deadline); the response lists the records SQS must retry.
pub async fn handle(
    deps: &NotifierDeps,
    event: SqsEvent,
    deadline: tokio::time::Instant,
) -> SqsBatchResponse {
    let _ = deadline;
    let mut response = SqsBatchResponse::default();
    for record in &event.records {
        let message_id = record.message_id.clone().unwrap_or_default();
        if let Err(e) = handle_record(deps, record).await {
            match &e {
                RecordError::Undeliverable(reason) => tracing::error!(
                    message_id = %message_id,
                    reason = %reason,
                    "record can never be delivered; reported failed so it reaches the DLQ"
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
}
