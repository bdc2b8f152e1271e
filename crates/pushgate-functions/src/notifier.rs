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

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::stream::{self, StreamExt};
use pushgate_domain::task::FanoutTask;
use pushgate_domain::{
    ConnectionId, DeliveryProgress, EntityId, EventError, IdRange, NotificationEvent, StreamHead,
    StreamKey,
};
use pushgate_push::PushError;
use pushgate_store::{ConnectionStore, StoreError, SubscriberPage};
use rand::Rng;
use tokio::time::Instant;

use crate::metrics::FanoutMetrics;
use crate::NotifierDeps;

/// Subscribers read from the index per page.
pub const PAGE_SIZE: usize = 1000;

pub use pushgate_domain::retry::RetryPolicy;

/// How pushes answered 429 or 5xx are retried: six attempts, at most
/// 50+100+200+400+800 ms of backoff (1.55 s, about half that with jitter)
/// per push, inside the push budget. With four, a burst that fails 30 % of
/// pushes fails a pass over 200 subscribers about 3 times in 4
/// (1 − (1 − 0.3⁴)²⁰⁰); with six, about 1 in 7.
pub const PUSH_RETRY: RetryPolicy =
    RetryPolicy::new(6, Duration::from_millis(50), Duration::from_secs(1));

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
    /// A fan-out task could not be put on the queue.
    #[error("could not hand the fan-out on to the queue")]
    Enqueue(#[source] pushgate_push::QueueError),
    /// A fan-out task needs the queue, and this notifier has none.
    #[error("this notifier has no queue (QUEUE_URL) to hand work on")]
    NoQueue,
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
    /// Stop every record's pushes after a 403.
    forbidden: AtomicBool,
}

impl Invocation<'_> {
    fn out_of_time(&self) -> bool {
        Instant::now() >= self.cutoff
    }

    async fn push(&self, connection: ConnectionId, payload: &[u8]) -> Push {
        let policy = self.deps.retry;
        let undone = |id, throttled| Push::Undone { id, throttled };
        // The push's own time budget starts when it first holds a permit:
        // it bounds one slow connection, not the wait behind the others
        // (which only the invocation's cut-off bounds).
        let mut end: Option<Instant> = None;
        let mut throttled = false;
        let mut attempt = 1;
        loop {
            if self.forbidden.load(Ordering::Relaxed) || self.out_of_time() {
                return undone(connection, throttled);
            }
            let Ok(permit) = tokio::time::timeout_at(self.cutoff, self.deps.limit.acquire()).await
            else {
                return undone(connection, throttled);
            };
            let end = *end.get_or_insert_with(|| {
                (Instant::now() + self.deps.limits.push_budget).min(self.cutoff)
            });
            if Instant::now() >= end {
                return undone(connection, throttled);
            }
            let result =
                tokio::time::timeout_at(end, self.deps.pusher.post(connection.as_str(), payload))
                    .await;
            drop(permit);
            match &result {
                Ok(Ok(())) => self.deps.limit.on_success(),
                Ok(Err(PushError::Throttled)) => self.deps.limit.on_throttled(),
                _ => {}
            }
            let error = match result {
                Ok(Ok(())) => return Push::Delivered { throttled },
                Ok(Err(PushError::Gone)) => return Push::Gone(connection),
                Ok(Err(PushError::Forbidden)) => {
                    self.forbidden.store(true, Ordering::Relaxed);
                    return Push::Forbidden(connection);
                }
                Ok(Err(e)) => e,
                Err(_) => {
                    tracing::warn!(connection_id = %connection, "push out of time; left for the redelivery");
                    return undone(connection, throttled);
                }
            };
            throttled |= matches!(error, PushError::Throttled);
            if !error.is_retryable() {
                tracing::warn!(connection_id = %connection, error = %error, "push refused; not retried");
                return Push::Refused;
            }
            if attempt >= policy.max_attempts {
                tracing::warn!(connection_id = %connection, attempts = attempt, error = %error, "push failed after retries");
                return undone(connection, throttled);
            }
            attempt += 1;
            tokio::time::sleep_until((Instant::now() + policy.backoff(attempt)).min(end)).await;
        }
    }
}

async fn page(
    store: &dyn ConnectionStore,
    stream: &StreamKey,
    range: &IdRange,
    now: i64,
    after: Option<&ConnectionId>,
) -> Result<SubscriberPage, StoreError> {
    match stream {
        StreamKey::Entity(e) => {
            store
                .subscriber_range(e, range, now, after, PAGE_SIZE)
                .await
        }
        StreamKey::User(u) => store.user_connections(u, now, after, PAGE_SIZE).await,
    }
}

/// Where a delivery reads its subscribers, and whether it may hand the rest
/// of a large entity to other invocations.
struct Scope<'a> {
    range: &'a IdRange,
    /// Ranges to split the rest into when the first page is not the last
    /// (0 or 1: never split).
    split: usize,
}

/// The ranges that cover every id above `last_read`, among `n` splits,
/// each with where to resume in it.
fn handoff(n: usize, last_read: &str) -> Vec<(IdRange, Option<String>)> {
    IdRange::split(n)
        .into_iter()
        .filter(|r| r.last.as_str() > last_read)
        .map(|r| {
            let after = r.contains(last_read).then(|| last_read.to_owned());
            (r, after)
        })
        .collect()
}

/// What delivering to one stream did, and what it left.
#[derive(Default)]
struct StreamDelivery {
    outcome: RecordOutcome,
    gone: Vec<ConnectionId>,
    forbidden: bool,
    left: DeliveryProgress,
    /// Ranges (and where to resume in them) for other invocations.
    handoff: Vec<(IdRange, Option<String>)>,
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
    scope: &Scope<'_>,
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
    // Only a delivery that starts from the top may split: a resumed one
    // already knows where it stands.
    let mut may_split = scope.split > 1
        && progress == DeliveryProgress::default()
        && matches!(stream, StreamKey::Entity(_));
    loop {
        // Read the next page while this unit's pushes are in flight.
        let next_page = async {
            if read_all {
                Ok(None)
            } else {
                page(store, stream, scope.range, now, resume_after.as_ref())
                    .await
                    .map(Some)
            }
        };
        let pushes = async {
            if inv.out_of_time() || inv.forbidden.load(Ordering::Relaxed) {
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
        if inv.out_of_time() || inv.forbidden.load(Ordering::Relaxed) {
            // This page is read but will not be pushed: resume at its start.
            break;
        }
        unit = next_page.connection_ids;
        match next_page.next {
            Some(next) if may_split => {
                // More than a page: this invocation pushes this page, other
                // invocations the rest, range by range. The cursor stays, in
                // case the hand-off fails and this delivery must carry on.
                done.handoff = handoff(scope.split, next.as_str());
                resume_after = Some(next);
                read_all = true;
            }
            Some(next) => resume_after = Some(next),
            None => read_all = true,
        }
        may_split = false;
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

/// When the record was sent to the queue (epoch ms), for the event-age
/// metric.
fn sent_at_ms(record: &SqsMessage) -> Option<i64> {
    record
        .attributes
        .get("SentTimestamp")
        .and_then(|t| t.parse::<i64>().ok())
}

/// How long after its record is written a connection may still be in
/// `$connect`: API Gateway waits up to 29 s for the function, and answers
/// PostToConnection with 410 until the handshake is done.
pub const CONNECTING_GRACE_MS: i64 = 30_000;

/// Deletes connections that answered 410, best effort. A subscriber of an
/// entity has sent `subscribe`, so it was open: its 410 means gone. A
/// connection reached through the `byUser` index may still be in
/// `$connect` (its record is written there, and API Gateway answers 410
/// until the handshake is done), so one whose record is younger than
/// [`CONNECTING_GRACE_MS`] is left alone; a later 410 or its TTL removes it
/// if it never opened.
async fn forget_gone(deps: &crate::Deps, stream: &StreamKey, gone: &[ConnectionId]) {
    let now_ms = deps.clock.now_ms();
    for c in gone {
        let lookup = match stream {
            StreamKey::Entity(_) => Ok(None),
            StreamKey::User(_) => deps.store.connection(c, deps.clock.now_secs()).await,
        };
        match lookup {
            Ok(Some(record)) if record.connected_at_ms > now_ms - CONNECTING_GRACE_MS => {
                tracing::info!(connection_id = %c, "410 from a connection still in $connect; kept");
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(connection_id = %c, error = %e, "could not read a gone connection");
                continue;
            }
        }
        if let Err(e) = deps.store.delete_connection(c).await {
            // TTL removes it later; the push loop already skipped it.
            tracing::warn!(connection_id = %c, error = %e, "could not delete a gone connection");
        }
    }
}

/// Puts `tasks` on the notifier's queue, `delay_secs` from now.
async fn enqueue(
    inv: &Invocation<'_>,
    tasks: &[FanoutTask],
    delay_secs: u32,
) -> Result<(), RecordError> {
    let Some(queue) = &inv.deps.queue else {
        return Err(RecordError::NoQueue);
    };
    let sends: Vec<_> = tasks
        .iter()
        .map(|t| queue.send(t.to_message(), delay_secs))
        .collect();
    for result in futures::future::join_all(sends).await {
        result.map_err(RecordError::Enqueue)?;
    }
    Ok(())
}

fn count(outcome: &mut RecordOutcome, delivery: &StreamDelivery) {
    outcome.delivered += delivery.outcome.delivered;
    outcome.refused += delivery.outcome.refused;
    outcome.throttled += delivery.outcome.throttled;
    outcome.gone += delivery.gone.len();
}

fn record_metrics(
    metrics: &parking_lot::Mutex<FanoutMetrics>,
    outcome: &RecordOutcome,
    started: Instant,
    age_ms: i64,
) {
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

/// What a record of the batch is, read once.
enum Work {
    /// An EventBridge event (or anything that is not a task).
    Event,
    /// A fan-out task this invocation pushes.
    Task(FanoutTask),
    /// A fan-out task beyond the first: back on the queue.
    PassOn,
    /// A body that names itself a task but is malformed.
    BadTask(serde_json::Error),
}

/// Sorts a batch's records: one fan-out task per invocation (SQS's poller
/// hands a whole batch of them to one invocation, whose pushes share one
/// process's limit and one small Lambda's CPU), the other tasks go back on
/// the queue for the other invocations.
fn sort_batch(records: &[SqsMessage], has_queue: bool) -> Vec<(&SqsMessage, Work)> {
    let mut kept_task = false;
    records
        .iter()
        .map(|record| {
            let body = record.body.as_deref().unwrap_or_default();
            let work = match FanoutTask::from_message(body) {
                None => Work::Event,
                Some(Err(e)) => Work::BadTask(e),
                Some(Ok(_)) if kept_task && has_queue => Work::PassOn,
                Some(Ok(task)) => {
                    kept_task = true;
                    Work::Task(task)
                }
            };
            (record, work)
        })
        .collect()
}

async fn handle_record(
    inv: &Invocation<'_>,
    record: &SqsMessage,
    work: Work,
    metrics: &parking_lot::Mutex<FanoutMetrics>,
) -> Result<RecordOutcome, RecordError> {
    if let Work::PassOn = work {
        return pass_on(inv, record).await;
    }
    if inv.out_of_time() {
        return Err(RecordError::NotStarted);
    }
    match work {
        Work::Task(task) => handle_task(inv, record, task, metrics).await,
        Work::BadTask(e) => Err(RecordError::Undeliverable(EventError::NotAnEvent(e))),
        Work::Event | Work::PassOn => handle_event(inv, record, metrics).await,
    }
}

async fn handle_event(
    inv: &Invocation<'_>,
    record: &SqsMessage,
    metrics: &parking_lot::Mutex<FanoutMetrics>,
) -> Result<RecordOutcome, RecordError> {
    let body = record.body.as_deref().unwrap_or_default();
    let started = Instant::now();
    let deps = &inv.deps.deps;
    let event = NotificationEvent::from_eventbridge_json(body)?;
    event.check_size()?;
    let now = deps.clock.now_secs();
    let mut outcome = RecordOutcome::default();
    let mut error = None;
    let split = if inv.deps.queue.is_some() {
        deps.config.fanout_ranges
    } else {
        1
    };
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
        let all = IdRange::all();
        let scope = Scope { range: &all, split };
        let mut delivery =
            deliver_stream(inv, &stream, &scope, appended.payload.as_bytes(), progress).await?;
        count(&mut outcome, &delivery);
        forget_gone(deps, &stream, &delivery.gone).await;
        let handed_off = delivery.handoff.len();
        if let (StreamKey::Entity(entity), false) = (&stream, delivery.handoff.is_empty()) {
            let tasks: Vec<FanoutTask> = delivery
                .handoff
                .iter()
                .map(|(range, after)| FanoutTask {
                    event_id: event.id.clone(),
                    entity_id: entity.as_str().to_owned(),
                    seq: appended.position.seq,
                    payload: appended.payload.clone(),
                    range: range.clone(),
                    after: after.clone(),
                    read_all: false,
                    retry: Vec::new(),
                    attempt: 0,
                    sent_at_ms: sent_at_ms(record).unwrap_or_else(|| deps.clock.now_ms()),
                })
                .collect();
            if let Err(e) = enqueue(inv, &tasks, 0).await {
                // Carry on here instead, from where the first page ended.
                tracing::warn!(error = %e, "could not hand the fan-out on; the redelivery carries on");
                delivery.left.read_all = false;
                error.get_or_insert(e);
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
            if !delivery.left.read_all {
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
            handed_off,
            push_limit = inv.deps.limit.current(),
            "notified"
        );
    }
    let age_ms = sent_at_ms(record).map_or(0, |sent| deps.clock.now_ms().saturating_sub(sent));
    record_metrics(metrics, &outcome, started, age_ms);
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

/// Times a task's failed pushes are handed on before the task itself is
/// failed (and then retried by SQS, and then dead-lettered).
pub const TASK_ATTEMPTS: u32 = 4;

/// Pushes one range of a large fan-out. What the cut-off leaves is handed
/// on at once as a continuation task; pushes that failed after their
/// retries are handed on with a growing delay, [`TASK_ATTEMPTS`] times,
/// then the task fails so that SQS retries it and, in the end, moves it to
/// the DLQ.
async fn handle_task(
    inv: &Invocation<'_>,
    record: &SqsMessage,
    task: FanoutTask,
    metrics: &parking_lot::Mutex<FanoutMetrics>,
) -> Result<RecordOutcome, RecordError> {
    let started = Instant::now();
    let deps = &inv.deps.deps;
    let entity = EntityId::new(task.entity_id.as_str())
        .map_err(|e| RecordError::Undeliverable(EventError::InvalidEntityId(e)))?;
    let stream = StreamKey::Entity(entity);
    let scope = Scope {
        range: &task.range,
        split: 1,
    };
    let progress = DeliveryProgress {
        retry: task.retry.clone(),
        resume_after: task.after.clone(),
        read_all: task.read_all,
    };
    let delivery = deliver_stream(inv, &stream, &scope, task.payload.as_bytes(), progress).await?;
    let mut outcome = RecordOutcome::default();
    count(&mut outcome, &delivery);
    forget_gone(deps, &stream, &delivery.gone).await;
    let mut result = Ok(());
    if delivery.forbidden {
        outcome.undone += delivery.left.retry.len();
        result = Err(RecordError::Forbidden {
            delivered: outcome.delivered,
        });
    } else if !delivery.finished() {
        let cut_off = inv.out_of_time();
        let attempt = if cut_off {
            task.attempt
        } else {
            task.attempt + 1
        };
        if attempt >= TASK_ATTEMPTS {
            outcome.undone += delivery.left.retry.len();
            result = Err(RecordError::Unfinished {
                undone: delivery.left.retry.len(),
                delivered: outcome.delivered,
            });
        } else {
            let next = FanoutTask {
                after: delivery.left.resume_after.clone(),
                read_all: delivery.left.read_all,
                retry: delivery.left.retry.clone(),
                attempt,
                ..task.clone()
            };
            // The rest of a range that ran out of time goes on at once;
            // pushes that kept failing wait a little (2, 4, 8 s).
            let delay = if cut_off { 0 } else { 1u32 << attempt };
            if let Err(e) = enqueue(inv, &[next], delay).await {
                outcome.undone += delivery.left.retry.len();
                result = Err(e);
            }
        }
    }
    tracing::info!(
        message_id = record.message_id.as_deref().unwrap_or("-"),
        event_id = %task.event_id,
        seq = task.seq,
        range = ?task.range,
        attempt = task.attempt,
        delivered = delivery.outcome.delivered,
        gone = delivery.gone.len(),
        throttled = delivery.outcome.throttled,
        left = delivery.left.retry.len(),
        finished = delivery.finished(),
        push_limit = inv.deps.limit.current(),
        "fan-out task"
    );
    let age_ms = deps.clock.now_ms().saturating_sub(task.sent_at_ms);
    record_metrics(metrics, &outcome, started, age_ms);
    result.map(|()| outcome)
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
    work: Work,
    metrics: &parking_lot::Mutex<FanoutMetrics>,
) -> (String, Result<RecordOutcome, RecordError>) {
    let message_id = record.message_id.clone().unwrap_or_default();
    let span = tracing::info_span!("record", message_id = %message_id);
    let result =
        tracing::Instrument::instrument(handle_record(inv, record, work, metrics), span).await;
    (message_id, result)
}

/// Puts a fan-out task back on the queue for another invocation.
async fn pass_on(inv: &Invocation<'_>, record: &SqsMessage) -> Result<RecordOutcome, RecordError> {
    let body = record.body.clone().unwrap_or_default();
    match &inv.deps.queue {
        Some(queue) => queue
            .send(body, 0)
            .await
            .map(|()| RecordOutcome::default())
            .map_err(RecordError::Enqueue),
        None => Err(RecordError::NoQueue),
    }
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
        forbidden: AtomicBool::new(false),
    };
    let metrics = parking_lot::Mutex::new(FanoutMetrics::default());
    // Built up front for the same reason as the pushes in `deliver_stream`.
    let records: Vec<_> = sort_batch(&event.records, deps.queue.is_some())
        .into_iter()
        .map(|(record, work)| record_task(&inv, record, work, &metrics))
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
    fn epochs_are_short_and_differ() {
        let (a, b) = (new_epoch(), new_epoch());
        assert_eq!(a.len(), 10);
        assert!(a.len() <= pushgate_domain::event::MAX_EPOCH_LEN);
        assert_ne!(a, b);
    }
}
