//! Delivery that survives reconnects and Lambda: sequence numbers per
//! stream, resume with `since` (replay through PostToConnection, in order,
//! after the `subscribed` frame), the user stream, redeliveries that push
//! only what was left, the cut-off before the Lambda deadline, and 403.

// Test code: a panic is how a failed expectation is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pushgate_functions::notifier;
use pushgate_functions::subscribe;
use serde_json::{json, Value};
use support::*;

fn seqs(pusher: &ScriptedPusher, connection: &str) -> Vec<u64> {
    pusher
        .delivered
        .lock()
        .unwrap()
        .iter()
        .filter(|(c, v)| c == connection && v["type"] == "notification")
        .map(|(_, v)| v["seq"].as_u64().unwrap())
        .collect()
}

async fn publish_events(
    nd: &pushgate_functions::NotifierDeps,
    entity: &str,
    ids: std::ops::RangeInclusive<u32>,
) {
    for i in ids {
        let response = notifier::handle(
            nd,
            sqs_event(&[(
                &format!("m{i}"),
                eventbridge(&format!("ev-{i}"), entity, json!(i)),
            )]),
            far_deadline(),
        )
        .await;
        assert!(response.batch_item_failures.is_empty());
    }
}

#[tokio::test]
async fn notifications_carry_gap_free_seqs_and_a_redelivery_keeps_its_seq() {
    let (_, deps) = setup();
    connected(&deps, "c1").await;
    subscribed(&deps, "c1", "e").await;
    let pusher = Arc::new(ScriptedPusher::default());
    let nd = notifier_deps(&deps, pusher.clone());
    publish_events(&nd, "e", 1..=3).await;
    // SQS delivers ev-2 again: same seq, and the subscriber drops it by seq.
    let again = notifier::handle(
        &nd,
        sqs_event(&[("m2-again", eventbridge("ev-2", "e", json!(2)))]),
        far_deadline(),
    )
    .await;
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(seqs(&pusher, "c1"), vec![1, 2, 3, 2]);
    let delivered = pusher.delivered.lock().unwrap().clone();
    let epochs: std::collections::HashSet<_> =
        delivered.iter().map(|(_, v)| v["epoch"].clone()).collect();
    assert_eq!(epochs.len(), 1, "one stream, one epoch");
}

#[tokio::test]
async fn resume_replays_what_was_missed_in_order_after_the_reply() {
    let (_, deps) = setup();
    connected(&deps, "c1").await;
    subscribed(&deps, "c1", "e").await;
    let pusher = Arc::new(ScriptedPusher::default());
    let nd = notifier_deps(&deps, pusher.clone());
    publish_events(&nd, "e", 1..=3).await;
    let epoch = pusher.delivered.lock().unwrap()[0].1["epoch"].clone();
    // c1 goes away; five more are published; c2 (its reconnect) resumes.
    pushgate_functions::disconnect::handle(&deps, message("$disconnect", "c1", ""))
        .await
        .unwrap();
    publish_events(&nd, "e", 4..=8).await;
    connected(&deps, "c2").await;
    let resuming = notifier_deps(&deps, pusher.clone());
    let frame = json!({"action":"subscribe","entityId":"e","since":3,"epoch":epoch}).to_string();
    let response = subscribe::handle(&resuming, message("subscribe", "c2", &frame))
        .await
        .unwrap();
    assert!(
        response.body.is_none(),
        "the reply was posted before the replay"
    );
    let to_c2: Vec<Value> = pusher
        .delivered
        .lock()
        .unwrap()
        .iter()
        .filter(|(c, _)| c == "c2")
        .map(|(_, v)| v.clone())
        .collect();
    assert_eq!(
        to_c2[0],
        json!({"type":"subscribed","entityId":"e","seq":8,"epoch":epoch,"recovered":true})
    );
    assert_eq!(seqs(&pusher, "c2"), vec![4, 5, 6, 7, 8]);
    // Then live ones.
    publish_events(&nd, "e", 9..=9).await;
    assert_eq!(seqs(&pusher, "c2"), vec![4, 5, 6, 7, 8, 9]);

    // Up to date: the reply alone, recovered.
    let frame = json!({"action":"subscribe","entityId":"e","since":9}).to_string();
    let response = subscribe::handle(&resuming, message("subscribe", "c2", &frame))
        .await
        .unwrap();
    assert_eq!(
        body(&response),
        json!({"type":"subscribed","entityId":"e","seq":9,"epoch":epoch,"recovered":true})
    );
    // Another epoch: not recovered, nothing replayed.
    let frame = json!({"action":"subscribe","entityId":"e","since":3,"epoch":"other"}).to_string();
    let before = pusher.delivered.lock().unwrap().len();
    let response = subscribe::handle(&resuming, message("subscribe", "c2", &frame))
        .await
        .unwrap();
    assert_eq!(body(&response)["recovered"], false);
    assert_eq!(pusher.delivered.lock().unwrap().len(), before);
}

#[tokio::test]
async fn resume_is_not_recovered_once_history_no_longer_reaches_back() {
    let (_, mut deps) = setup();
    deps.config.retention.max_entries = 3;
    connected(&deps, "c1").await;
    subscribed(&deps, "c1", "e").await;
    let pusher = Arc::new(ScriptedPusher::default());
    let nd = notifier_deps(&deps, pusher.clone());
    publish_events(&nd, "e", 1..=6).await;
    let frame = json!({"action":"subscribe","entityId":"e","since":2}).to_string();
    let response = subscribe::handle(&nd, message("subscribe", "c1", &frame))
        .await
        .unwrap();
    let reply = body(&response);
    assert_eq!(
        (reply["recovered"].clone(), reply["seq"].clone()),
        (json!(false), json!(6))
    );
    // History holds 4..6: since 3 still recovers.
    let frame = json!({"action":"subscribe","entityId":"e","since":3}).to_string();
    let response = subscribe::handle(&nd, message("subscribe", "c1", &frame))
        .await
        .unwrap();
    assert!(response.body.is_none());
    assert_eq!(seqs(&pusher, "c1"), vec![1, 2, 3, 4, 5, 6, 4, 5, 6]);
}

#[tokio::test]
async fn the_user_stream_resumes_for_its_own_user_only() {
    let (_, deps) = setup();
    // `connected` makes connections of user "alice"? Use the token path.
    connected(&deps, "c1").await;
    let frame = json!({"action":"subscribe","userId":"mallory","since":0}).to_string();
    let response = subscribe::handle(&subscribing(&deps), message("subscribe", "c1", &frame))
        .await
        .unwrap();
    assert_eq!(body(&response)["code"], "forbidden");
    assert_eq!(body(&response)["userId"], "mallory");
}

#[tokio::test]
async fn ping_is_answered_pong_without_the_store() {
    let (_, deps) = setup();
    let response = subscribe::handle(
        &subscribing(&deps),
        message("ping", "nobody", r#"{"action":"ping"}"#),
    )
    .await
    .unwrap();
    assert_eq!(body(&response), json!({"type":"pong"}));
}

#[tokio::test]
async fn a_redelivery_pushes_only_to_connections_that_did_not_get_it() {
    let (_, deps) = setup();
    for c in ["a", "b", "c"] {
        connected(&deps, c).await;
        subscribed(&deps, c, "e").await;
    }
    let pusher = Arc::new(ScriptedPusher::default());
    pusher.always("b", 500);
    let nd = notifier_deps(&deps, pusher.clone());
    let record = || sqs_event(&[("m1", eventbridge("ev-1", "e", json!(1)))]);
    let first = notifier::handle(&nd, record(), far_deadline()).await;
    assert_eq!(first.batch_item_failures.len(), 1);
    assert_eq!(pusher.delivered_to(), vec!["a", "c"]);
    // b recovers; SQS redelivers the record.
    pusher.always.lock().unwrap().clear();
    let attempts_before = pusher.attempts.load(Ordering::SeqCst);
    let second = notifier::handle(&nd, record(), far_deadline()).await;
    assert!(second.batch_item_failures.is_empty());
    assert_eq!(
        pusher.attempts.load(Ordering::SeqCst) - attempts_before,
        1,
        "only b"
    );
    assert_eq!(pusher.delivered_to(), vec!["a", "b", "c"]);
    assert_eq!(seqs(&pusher, "b"), vec![1]);
}

#[tokio::test]
async fn forbidden_fails_the_record_instead_of_dropping_the_event() {
    let (_, deps) = setup();
    for c in ["a", "b"] {
        connected(&deps, c).await;
        subscribed(&deps, c, "e").await;
    }
    let pusher = Arc::new(ScriptedPusher::default());
    pusher.always("a", 403);
    pusher.always("b", 403);
    let nd = notifier_deps(&deps, pusher.clone());
    let response = notifier::handle(
        &nd,
        sqs_event(&[("m1", eventbridge("ev-1", "e", json!(1)))]),
        far_deadline(),
    )
    .await;
    assert_eq!(
        response.batch_item_failures.len(),
        1,
        "never reported delivered"
    );
    assert!(pusher.delivered_to().is_empty());
}

#[tokio::test]
async fn the_notifier_stops_before_its_deadline_and_leaves_the_rest_for_the_redelivery() {
    let (_, deps) = setup();
    for i in 0..40 {
        let c = format!("c{i:02}");
        connected(&deps, &c).await;
        subscribed(&deps, &c, "e").await;
    }
    let pusher = Arc::new(ScriptedPusher {
        delay: Duration::from_millis(100),
        ..ScriptedPusher::default()
    });
    let mut nd = notifier_deps(&deps, pusher.clone());
    nd.limit = Arc::new(pushgate_functions::limit::AdaptiveLimit::new(2));
    nd.limits.deadline_margin = Duration::from_millis(300);
    let started = tokio::time::Instant::now();
    let deadline = started + Duration::from_millis(1000);
    let records = sqs_event(&[
        ("m1", eventbridge("ev-1", "e", json!(1))),
        ("m2", eventbridge("ev-2", "e", json!(2))),
    ]);
    let response = notifier::handle(&nd, records.clone(), deadline).await;
    assert!(
        tokio::time::Instant::now() < deadline,
        "answered before the deadline"
    );
    let mut failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    failed.sort();
    assert_eq!(
        failed,
        vec!["m1", "m2"],
        "80 pushes at 2 × 10/s cannot finish"
    );
    let first_pass = pusher.delivered.lock().unwrap().len();
    assert!(first_pass > 0 && first_pass < 80, "{first_pass}");
    // Redeliveries with time to spare finish the job without pushing twice.
    nd.limit = Arc::new(pushgate_functions::limit::AdaptiveLimit::new(64));
    let response = notifier::handle(&nd, records, far_deadline()).await;
    assert!(response.batch_item_failures.is_empty());
    let delivered = pusher.delivered.lock().unwrap().clone();
    assert_eq!(delivered.len(), 80, "every connection got both, once");
    let unique: std::collections::HashSet<_> = delivered
        .iter()
        .map(|(c, v)| (c.clone(), v["seq"].as_u64().unwrap()))
        .collect();
    assert_eq!(unique.len(), 80);
}

fn history_body(response: &aws_lambda_events::apigw::ApiGatewayV2httpResponse) -> Value {
    match &response.body {
        Some(aws_lambda_events::encodings::Body::Text(t)) => serde_json::from_str(t).unwrap(),
        other => panic!("no text body: {other:?}"),
    }
}

#[tokio::test]
async fn the_history_sample_event_is_answered_with_the_stream() {
    use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
    use pushgate_domain::auth::{mint, Claims, Grant, Role};
    let (_, mut deps) = setup();
    connected(&deps, "c1").await;
    subscribed(&deps, "c1", "artist:ed-sheeran").await;
    let pusher = Arc::new(ScriptedPusher::default());
    let nd = notifier_deps(&deps, pusher.clone());
    publish_events(&nd, "artist:ed-sheeran", 1..=3).await;
    deps.config.auth_mode = pushgate_domain::AuthMode::Token;

    // As committed, the sample's token is a placeholder: 401, JSON, no token echoed.
    let mut request: ApiGatewayV2httpRequest = sample("history.json");
    let response = pushgate_functions::history::handle(&deps, request.clone())
        .await
        .unwrap();
    assert_eq!(response.status_code, 401);
    assert_eq!(history_body(&response)["code"], "unauthorized");

    let token = mint(
        KEY.as_bytes(),
        &Claims {
            sub: "alice".into(),
            exp: NOW_MS / 1000 + 600,
            grants: vec![Grant {
                role: Role::Subscribe,
                entity: "artist:*".into(),
            }],
        },
    )
    .unwrap();
    request
        .headers
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    // The sample asks since 41 of another epoch: not recovered, nothing replayed.
    let response = pushgate_functions::history::handle(&deps, request.clone())
        .await
        .unwrap();
    assert_eq!(response.status_code, 200);
    let answer = history_body(&response);
    assert_eq!(
        (answer["seq"].clone(), answer["recovered"].clone()),
        (json!(3), json!(false))
    );
    request.query_string_parameters = std::collections::HashMap::from([
        ("entityId".to_owned(), "artist:ed-sheeran".to_owned()),
        ("since".to_owned(), "1".to_owned()),
    ])
    .into();
    let answer = history_body(
        &pushgate_functions::history::handle(&deps, request)
            .await
            .unwrap(),
    );
    assert_eq!(answer["recovered"], true);
    let seqs: Vec<u64> = answer["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![2, 3]);
}

/// A queue that keeps what is sent to it.
#[derive(Default)]
struct RecordingQueue {
    sent: std::sync::Mutex<Vec<(String, u32)>>,
}

#[async_trait::async_trait]
impl pushgate_push::EventQueue for RecordingQueue {
    async fn send(&self, body: String, delay_secs: u32) -> Result<(), pushgate_push::QueueError> {
        self.sent.lock().unwrap().push((body, delay_secs));
        Ok(())
    }
}

impl RecordingQueue {
    fn take(&self) -> Vec<(String, u32)> {
        std::mem::take(&mut *self.sent.lock().unwrap())
    }
}

#[tokio::test]
async fn a_large_fan_out_is_split_into_range_tasks_that_reach_everyone_once() {
    let (_, deps) = setup();
    let alphabet = "+-/0123456789=ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";
    let n = 2_600;
    for i in 0..n {
        let c = alphabet.as_bytes()[i % alphabet.len()] as char;
        let id = format!("{c}{i:05}");
        connected(&deps, &id).await;
        subscribed(&deps, &id, "hot").await;
    }
    let pusher = Arc::new(ScriptedPusher::default());
    let queue = Arc::new(RecordingQueue::default());
    let mut nd = notifier_deps(&deps, pusher.clone());
    nd.deps.config.fanout_ranges = 4;
    nd.queue = Some(queue.clone());
    let response = notifier::handle(
        &nd,
        sqs_event(&[("m1", eventbridge("ev-1", "hot", json!(1)))]),
        far_deadline(),
    )
    .await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        pusher.delivered_to().len(),
        notifier::PAGE_SIZE,
        "one page here"
    );
    let tasks = queue.take();
    assert!(tasks.len() >= 3 && tasks.len() <= 4, "{}", tasks.len());
    // Other invocations take the tasks. A batch of several keeps one and
    // passes the others back to the queue for other invocations.
    assert!(tasks.iter().all(|(_, delay)| *delay == 0));
    let mut pending = tasks;
    let mut invocations = 0;
    while !pending.is_empty() {
        invocations += 1;
        let records: Vec<(String, String)> = pending
            .iter()
            .enumerate()
            .map(|(i, (body, _))| (format!("t{invocations}-{i}"), body.clone()))
            .collect();
        let refs: Vec<(&str, String)> = records
            .iter()
            .map(|(id, b)| (id.as_str(), b.clone()))
            .collect();
        let response = notifier::handle(&nd, sqs_event(&refs), far_deadline()).await;
        assert!(response.batch_item_failures.is_empty());
        let passed_on = queue.take();
        assert_eq!(
            passed_on.len(),
            pending.len() - 1,
            "one task per invocation"
        );
        pending = passed_on;
    }
    assert!(invocations >= 3);
    let delivered = pusher.delivered_to();
    let unique: std::collections::BTreeSet<_> = delivered.iter().collect();
    assert_eq!(delivered.len(), n, "every subscriber once");
    assert_eq!(unique.len(), n);
    assert_eq!(seqs(&pusher, &delivered[0]), vec![1]);
}

#[tokio::test]
async fn a_task_hands_on_what_its_cut_off_and_its_failed_pushes() {
    let (_, deps) = setup();
    for i in 0..30 {
        let id = format!("A{i:03}");
        connected(&deps, &id).await;
        subscribed(&deps, &id, "hot").await;
    }
    let pusher = Arc::new(ScriptedPusher {
        delay: Duration::from_millis(50),
        ..ScriptedPusher::default()
    });
    pusher.always("A007", 500);
    let queue = Arc::new(RecordingQueue::default());
    let mut nd = notifier_deps(&deps, pusher.clone());
    nd.limit = Arc::new(pushgate_functions::limit::AdaptiveLimit::new(2));
    nd.limits.deadline_margin = Duration::from_millis(100);
    nd.queue = Some(queue.clone());
    let task = pushgate_domain::task::FanoutTask {
        event_id: "ev-1".into(),
        entity_id: "hot".into(),
        seq: 1,
        payload: r#"{"type":"notification","seq":1}"#.into(),
        range: pushgate_domain::IdRange::all(),
        after: None,
        read_all: false,
        retry: Vec::new(),
        attempt: 0,
        sent_at_ms: NOW_MS,
    };
    // 30 pushes of 50 ms, 2 at a time, need 750 ms; the task has 400.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(400);
    let response = notifier::handle(&nd, sqs_event(&[("t", task.to_message())]), deadline).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "handed on, not failed"
    );
    let mut handed = queue.take();
    assert_eq!(handed.len(), 1);
    assert_eq!(handed[0].1, 0, "the rest of a range goes on at once");
    // The continuation finishes it, except A007, handed on with a delay.
    nd.limit = Arc::new(pushgate_functions::limit::AdaptiveLimit::new(64));
    let (body, _) = handed.remove(0);
    let response = notifier::handle(&nd, sqs_event(&[("t2", body)]), far_deadline()).await;
    assert!(response.batch_item_failures.is_empty());
    let retry = queue.take();
    assert_eq!(retry.len(), 1);
    assert!(retry[0].1 > 0, "failed pushes wait before the next attempt");
    let next = pushgate_domain::task::FanoutTask::from_message(&retry[0].0)
        .unwrap()
        .unwrap();
    assert_eq!(next.retry, vec!["A007"]);
    assert!(next.after.is_none() || next.after.as_deref() >= Some("A029"));
    let delivered = pusher.delivered_to();
    assert_eq!(delivered.len(), 29, "everyone but A007, once");
    // A007 keeps failing: after TASK_ATTEMPTS the task itself fails (SQS
    // retries it, then the DLQ).
    let mut body = retry[0].0.clone();
    let mut failed = false;
    for _ in 0..notifier::TASK_ATTEMPTS {
        let response =
            notifier::handle(&nd, sqs_event(&[("t3", body.clone())]), far_deadline()).await;
        if !response.batch_item_failures.is_empty() {
            failed = true;
            break;
        }
        body = queue.take().pop().unwrap().0;
    }
    assert!(failed);
}
