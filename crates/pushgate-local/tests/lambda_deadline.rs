//! The notifier's Lambda binary, run as Lambda runs it: a Runtime API
//! stand-in hands it one SQS batch with a 4 s deadline
//! (`Lambda-Runtime-Deadline-Ms`); the Management API (the emulator,
//! holding every PostToConnection 300 ms) is too slow for two of the three
//! records. The binary must answer before the deadline, with exactly the
//! unfinished records in `batchItemFailures`, rather than be killed by
//! Lambda (which would redeliver all three).

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::routing::{get, post};
use axum::Router;
use pushgate_local::{Settings, StoreSettings};
use serde_json::{json, Value};
use support::*;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Mutex};

const DEADLINE_MS: u64 = 4_000;

struct Runtime {
    /// The one event to hand out; `None` once handed out.
    event: Mutex<Option<(String, u128)>>,
    /// (the answer's body, when it arrived in epoch ms).
    answers: mpsc::Sender<(String, u128)>,
}

fn epoch_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

async fn next(State(rt): State<Arc<Runtime>>) -> (HeaderMap, String) {
    let Some((event, deadline)) = rt.event.lock().await.take() else {
        // Lambda freezes the environment here; the test ends first.
        std::future::pending::<()>().await;
        unreachable!()
    };
    let mut headers = HeaderMap::new();
    let mut set = |k: &'static str, v: String| {
        headers.insert(k, HeaderValue::from_str(&v).unwrap());
    };
    set("lambda-runtime-aws-request-id", "req-1".into());
    set("lambda-runtime-deadline-ms", deadline.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:pushgate-notifier".into(),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-6b02bd20-3d8a4f1c9b2e7a6f5c4d3b2a;Parent=53995c3f42cd8ad8;Sampled=0".into(),
    );
    (headers, event)
}

async fn response(State(rt): State<Arc<Runtime>>, body: String) -> &'static str {
    rt.answers.send((body, epoch_ms())).await.unwrap();
    r#"{"status":"OK"}"#
}

async fn error(State(rt): State<Arc<Runtime>>, body: String) -> &'static str {
    rt.answers
        .send((format!("ERROR {body}"), epoch_ms()))
        .await
        .unwrap();
    r#"{"status":"OK"}"#
}

fn record(id: &str, entity: &str) -> Value {
    let body = json!({"version":"0","id":format!("ev-{id}"),"detail-type":"Entity Updated",
        "source":"pushgate","time":"2026-11-29T10:00:00Z","detail":{"entityId":entity,"message":{"n":id}}});
    json!({"messageId": id, "receiptHandle": "r", "body": body.to_string(),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795341600000"},
        "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:pushgate", "awsRegion": "us-east-1"})
}

#[tokio::test]
async fn the_notifier_binary_answers_before_its_deadline_with_only_the_unfinished_records() {
    let notifier = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("notifier");
    assert!(
        notifier.exists(),
        "{} is built by `cargo test --workspace` (or `cargo build -p pushgate-functions`)",
        notifier.display()
    );
    // One table on moto, shared by the emulator (whose virtual connections
    // accept pushes without a socket) and the binary.
    let moto = pushgate_testkit::Moto::start();
    let mut settings = Settings {
        store: StoreSettings::DynamoDb {
            endpoint: Some(moto.endpoint.clone()),
            table: "pushgate-deadline".into(),
        },
        ..Settings::default()
    };
    settings.faults.post_latency_ms = 300;
    let emulator = Emulator::start(settings).await;
    for (entity, count) in [("big:1", 100), ("big:2", 100), ("small", 2)] {
        let (status, answer) = emulator
            .call(
                reqwest::Method::POST,
                "/_pushgate/virtual",
                json!({"entityId": entity, "count": count}),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }

    // 8 pushes in flight at 300 ms each: about 80 pushes fit before the
    // cut-off; the two big records need 200, the small one 2 (served in
    // turn with the others, so it finishes).
    let deadline = epoch_ms() + u128::from(DEADLINE_MS);
    let event = json!({"Records": [record("m-big-1", "big:1"), record("m-small", "small"), record("m-big-2", "big:2")]});
    let (answers, mut answered) = mpsc::channel(4);
    let runtime = Arc::new(Runtime {
        event: Mutex::new(Some((event.to_string(), deadline))),
        answers,
    });
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(error))
        .with_state(runtime);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut child = tokio::process::Command::new(&notifier)
        .env_clear()
        .envs([
            ("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}")),
            ("AWS_LAMBDA_FUNCTION_NAME", "pushgate-notifier".into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "test".into()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                "/aws/lambda/pushgate-notifier".into(),
            ),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_ENDPOINT_URL_DYNAMODB", moto.endpoint.clone()),
            ("TABLE_NAME", "pushgate-deadline".into()),
            (
                "MANAGEMENT_API_ENDPOINT",
                format!("{}/local", emulator.base),
            ),
            ("PUSH_CONCURRENCY", "8".into()),
            ("RUST_LOG", "warn".into()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let (body, at) = tokio::time::timeout(Duration::from_secs(15), answered.recv())
        .await
        .expect("the binary answered")
        .unwrap();
    child.kill().await.ok();
    assert!(
        at < deadline,
        "answered {} ms after the deadline",
        at - deadline
    );
    let answer: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{body}"));
    let mut failed: Vec<String> = answer["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
        .collect();
    failed.sort();
    assert_eq!(
        failed,
        vec!["m-big-1", "m-big-2"],
        "exactly the unfinished records"
    );
    // The small record reached both of its subscribers.
    let summary = emulator.get_json("/_pushgate/virtual").await;
    assert!(summary["deliveries"].as_u64().unwrap() >= 2, "{summary}");
    emulator.shutdown().await;
}
