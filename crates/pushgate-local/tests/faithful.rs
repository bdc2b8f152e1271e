//! Where Lambda and API Gateway would cut off, throttle, redeliver, refuse
//! or run things at once, the emulator does too: function deadlines, route
//! and notifier concurrency, the 32 KB frame limit, the bounded outbound
//! buffer, PostToConnection 403 and DynamoDB `TransactionConflict` faults,
//! `publish` through the queue with deduplicable ids, throttling, virtual
//! connections, and start-up checks of the flags.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pushgate_local::{FunctionTimeouts, QueueSettings, Settings};
use serde_json::{json, Value};
use support::*;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

/// A short batching window, so tests do not wait the template's second.
fn quick_queue() -> QueueSettings {
    QueueSettings {
        batch_window: Duration::from_millis(20),
        ..QueueSettings::default()
    }
}

async fn subscribe(ws: &mut Ws, entity: &str) {
    send(ws, json!({"action": "subscribe", "entityId": entity})).await;
    let reply = recv_json(ws).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
}

async fn next_text(ws: &mut Ws) -> String {
    match next_frame(ws).await {
        Message::Text(text) => text.as_str().to_owned(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

#[tokio::test]
async fn a_route_past_its_timeout_gets_api_gateways_error_frame_while_other_frames_go_on() {
    let settings = Settings {
        timeouts: FunctionTimeouts {
            subscribe: Duration::from_millis(300),
            ..FunctionTimeouts::default()
        },
        ..Settings::default()
    };
    let emulator = Emulator::start(settings).await;
    emulator
        .set_faults(json!({"stalledEntities": ["artist:slow"]}))
        .await;
    let mut ws = emulator.connect().await;
    let id = emulator.only_connection_id().await;
    // The first frame's function hangs in DynamoDB; the second, on the same
    // connection, is not held up behind it (API Gateway does not serialise
    // a connection's frames).
    send(
        &mut ws,
        json!({"action": "subscribe", "entityId": "artist:slow"}),
    )
    .await;
    send(
        &mut ws,
        json!({"action": "subscribe", "entityId": "artist:fast"}),
    )
    .await;
    let first = recv_json(&mut ws).await;
    assert_eq!(first["type"], "subscribed", "{first}");
    assert_eq!(first["entityId"], "artist:fast");
    // Then Lambda cuts the stalled one off at its timeout, and API Gateway
    // answers with its own frame, byte for byte.
    let text = next_text(&mut ws).await;
    let prefix =
        format!(r#"{{"message": "Internal server error", "connectionId":"{id}", "requestId":""#);
    assert!(text.starts_with(&prefix), "{text}");
    let frame: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(frame["requestId"].as_str().unwrap().len(), 16);
    let status = emulator.status().await;
    assert_eq!(
        status["connections"][0]["subscriptions"],
        json!(["artist:fast"])
    );
    assert!(status["faults"]["storeCallsStalled"].as_u64().unwrap() >= 1);
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_notifier_batch_past_its_timeout_is_redelivered_then_dead_lettered() {
    let settings = Settings {
        // Past the notifier's own margin before its deadline (1.5 s), so the
        // stalled store call is under way when the emulator cuts it off.
        timeouts: FunctionTimeouts {
            notifier: Duration::from_secs(2),
            ..FunctionTimeouts::default()
        },
        queue: QueueSettings {
            visibility_timeout: Duration::from_secs(2),
            max_receive_count: 2,
            ..quick_queue()
        },
        ..Settings::default()
    };
    let emulator = Emulator::start(settings).await;
    emulator
        .set_faults(json!({"stalledEntities": ["artist:slow"]}))
        .await;
    let id = emulator.publish("artist:slow", json!({"n": 1})).await;
    let status = emulator
        .wait_status("the stalled record in the DLQ", |s| s["dlq"] == 1)
        .await;
    assert_eq!(status["queue"]["visible"], 0);
    assert_eq!(status["queue"]["inFlight"], 0);
    let dlq = emulator.get_json("/_pushgate/dlq").await;
    let letter = &dlq["messages"][0];
    // Received twice (each time cut off at the deadline), then moved.
    assert_eq!(letter["receiveCount"], 2);
    let body: Value = serde_json::from_str(letter["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["id"], id.as_str());
    assert!(status["faults"]["storeCallsStalled"].as_u64().unwrap() >= 2);
    emulator.shutdown().await;
}

#[tokio::test]
async fn notifier_invocations_run_at_once_so_a_stalled_batch_holds_up_no_other() {
    let settings = Settings {
        queue: QueueSettings {
            batch_size: 1,
            max_concurrency: 2,
            ..quick_queue()
        },
        ..Settings::default()
    };
    let emulator = Emulator::start(settings).await;
    emulator
        .set_faults(json!({"stalledEntities": ["artist:slow"]}))
        .await;
    let mut ws = emulator.connect().await;
    subscribe(&mut ws, "artist:fast").await;
    emulator.publish("artist:slow", json!({"n": 1})).await;
    emulator
        .wait_status("the stalled batch in flight", |s| {
            s["queue"]["inFlight"] == 1
        })
        .await;
    // The notifier's timeout is 30 s: only a second invocation can deliver
    // this within the wait.
    let id = emulator.publish("artist:fast", json!({"n": 2})).await;
    let frame = recv_json(&mut ws).await;
    assert_eq!(frame["type"], "notification");
    assert_eq!(frame["id"], id.as_str());
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_single_frame_over_32_kb_closes_with_1009_but_a_fragmented_message_is_read() {
    let emulator = Emulator::start(Settings::default()).await;
    // 100 KB in four fragments of 25 KB: under the 128 KB message limit and
    // the 32 KB frame limit.
    let mut ws = emulator.connect().await;
    let body = json!({"action": "dance", "pad": "x".repeat(100 * 1024)}).to_string();
    let bytes = body.into_bytes();
    let chunks: Vec<&[u8]> = bytes.chunks(25 * 1024).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let frame = Frame::message(chunk.to_vec(), opcode, i + 1 == chunks.len());
        ws.send(Message::Frame(frame)).await.unwrap();
    }
    let reply = recv_json(&mut ws).await;
    assert_eq!(reply["code"], "unknown_action", "{reply}");

    // 40 KB in one frame: API Gateway closes the connection with 1009.
    let frame = json!({"action": "dance", "pad": "x".repeat(40 * 1024)});
    send(&mut ws, frame).await;
    assert_eq!(close_code(&mut ws).await, 1009);
    emulator
        .wait_status("the connection to close", |s| {
            s["connections"].as_array().is_some_and(Vec::is_empty)
        })
        .await;
    emulator.shutdown().await;
}

#[tokio::test]
async fn connections_calls_must_be_signed_as_api_gateway_requires() {
    let emulator = Emulator::start(Settings::default()).await;
    let mut ws = emulator.connect().await;
    let id = emulator.only_connection_id().await;
    let url = format!("{}/local/@connections/{id}", emulator.base);
    let kind = |r: &reqwest::Response| {
        r.headers()
            .get("x-amzn-errortype")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    // Unsigned: refused before it reaches the connection.
    let unsigned = emulator.http.post(&url).body("hi").send().await.unwrap();
    assert_eq!(unsigned.status(), 403);
    assert_eq!(kind(&unsigned), "MissingAuthenticationTokenException");
    let unsigned = emulator.http.delete(&url).send().await.unwrap();
    assert_eq!(unsigned.status(), 403);
    // Signed with the emulator's key, then tampered with: the body differs.
    let signed = emulator
        .management(
            reqwest::Method::POST,
            &format!("/local/@connections/{id}"),
            b"signed".to_vec(),
        )
        .build()
        .unwrap();
    let mut tampered = emulator.http.post(&url).body("tampered");
    for (name, value) in signed.headers() {
        tampered = tampered.header(name, value);
    }
    let tampered = tampered.send().await.unwrap();
    assert_eq!(tampered.status(), 403);
    assert_eq!(kind(&tampered), "InvalidSignatureException");
    // Nothing of the refused calls reached the socket; the signed one does.
    assert_eq!(post(&emulator, &id, b"ok".to_vec()).await.0, 200);
    let frame = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(frame.into_text().unwrap().as_str(), "ok");
    emulator.shutdown().await;
}

async fn post(emulator: &Emulator, id: &str, body: Vec<u8>) -> (u16, String) {
    let response = emulator
        .management(
            reqwest::Method::POST,
            &format!("/local/@connections/{id}"),
            body,
        )
        .send()
        .await
        .unwrap();
    let kind = response
        .headers()
        .get("x-amzn-errortype")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (response.status().as_u16(), kind)
}

#[tokio::test]
async fn a_client_that_stops_reading_gets_429_limit_exceeded_not_unbounded_memory() {
    let settings = Settings {
        outbound_buffer_bytes: 128 * 1024,
        ..Settings::default()
    };
    let emulator = Emulator::start(settings).await;
    let mut ws = emulator.connect().await;
    let id = emulator.only_connection_id().await;
    // The client reads nothing: the kernel's socket buffers fill, then the
    // emulator's 128 KiB, then PostToConnection answers 429.
    let payload = vec![b'x'; 100 * 1024];
    let mut delivered = 0;
    let refused = loop {
        let (status, kind) = post(&emulator, &id, payload.clone()).await;
        if status != 200 {
            break (status, kind);
        }
        delivered += 1;
        assert!(delivered < 5000, "the buffer never filled");
    };
    assert_eq!(refused, (429, "LimitExceededException".to_owned()));
    // Once the client reads again, pushes are accepted again and every
    // accepted one arrives.
    let reader = tokio::spawn(async move {
        for _ in 0..delivered {
            let frame = next_frame(&mut ws).await;
            assert!(matches!(frame, Message::Text(ref t) if t.len() == 100 * 1024));
        }
        ws
    });
    let mut ws = reader.await.unwrap();
    assert_eq!(post(&emulator, &id, b"again".to_vec()).await.0, 200);
    assert_eq!(next_text(&mut ws).await, "again");
    emulator.shutdown().await;
}

#[tokio::test]
async fn forbidden_pushes_fail_the_record_until_it_reaches_the_dlq() {
    let settings = quick_retries(Settings {
        queue: QueueSettings {
            max_receive_count: 2,
            ..quick_queue()
        },
        ..Settings::default()
    });
    let emulator = Emulator::start(settings).await;
    let mut ws = emulator.connect().await;
    subscribe(&mut ws, "artist:1").await;
    emulator.set_faults(json!({"postForbidden": true})).await;
    emulator.publish("artist:1", json!({"n": 1})).await;
    // 403 means every push fails alike (a wrong endpoint or role): the
    // record is never reported delivered; after its receives it is in the
    // DLQ, where it can be redriven once the cause is fixed.
    let status = emulator
        .wait_status("the record in the DLQ", |s| s["dlq"] == 1)
        .await;
    assert!(status["faults"]["postsFailed"].as_u64().unwrap() >= 2);
    let (status, _) = emulator
        .call(reqwest::Method::DELETE, "/_pushgate/faults", json!({}))
        .await;
    assert_eq!(status, 200);
    let second = emulator.publish("artist:1", json!({"n": 2})).await;
    let frame = recv_json(&mut ws).await;
    assert_eq!(
        frame["id"],
        second.as_str(),
        "the forbidden push never arrived"
    );
    emulator.shutdown().await;
}

#[tokio::test]
async fn an_injected_transaction_conflict_fails_the_subscribe_and_stores_nothing() {
    let emulator = Emulator::start(Settings::default()).await;
    let mut ws = emulator.connect().await;
    emulator
        .set_faults(json!({"subscribeConflictRate": 1.0}))
        .await;
    send(
        &mut ws,
        json!({"action": "subscribe", "entityId": "artist:1"}),
    )
    .await;
    let reply = recv_json(&mut ws).await;
    assert_ne!(reply["type"], "subscribed", "{reply}");
    let status = emulator.status().await;
    // The subscribe function may retry a conflict; each try conflicted.
    assert!(status["faults"]["subscribeConflicts"].as_u64().unwrap() >= 1);
    assert_eq!(status["stored"]["subscriptions"], 0);
    emulator
        .set_faults(json!({"subscribeConflictRate": 0.0}))
        .await;
    subscribe(&mut ws, "artist:1").await;
    emulator.shutdown().await;
}

#[tokio::test]
async fn publish_is_accepted_onto_the_queue_and_a_retried_client_id_keeps_its_event_id() {
    let settings = Settings {
        queue: quick_queue(),
        ..Settings::default()
    };
    let emulator = Emulator::start(settings).await;
    let mut subscriber = emulator.connect().await;
    subscribe(&mut subscriber, "room:1").await;
    let token = emulator
        .token("bob", json!([{"role": "publish", "entity": "room:*"}]))
        .await;
    let url = format!("{}?token={token}", emulator.ws_url);
    let (mut publisher, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();

    let frame =
        json!({"action": "publish", "entityId": "room:1", "data": {"n": 1}, "id": "retry-1"});
    send(&mut publisher, frame.clone()).await;
    let accepted = recv_json(&mut publisher).await;
    assert_eq!(
        accepted,
        json!({"type": "accepted", "entityId": "room:1", "id": "pub:bob:retry-1"})
    );
    let notification = recv_json(&mut subscriber).await;
    assert_eq!(notification["id"], "pub:bob:retry-1");
    assert_eq!(notification["data"], json!({"n": 1}));
    // The retry is accepted under the same event id.
    send(&mut publisher, frame).await;
    assert_eq!(recv_json(&mut publisher).await, accepted);

    // Without an id, the event id is API Gateway's message id.
    send(
        &mut publisher,
        json!({"action": "publish", "entityId": "room:1", "data": 2}),
    )
    .await;
    let accepted = recv_json(&mut publisher).await;
    assert_eq!(accepted["type"], "accepted");
    assert_eq!(accepted["id"].as_str().unwrap().len(), 16);

    for bad in [
        json!(""),
        json!("has space"),
        json!("x".repeat(129)),
        json!(7),
    ] {
        send(
            &mut publisher,
            json!({"action": "publish", "entityId": "room:1", "data": 1, "id": bad}),
        )
        .await;
        assert_eq!(
            recv_json(&mut publisher).await["code"],
            "invalid_publish_id"
        );
    }
    emulator.shutdown().await;
}

fn run_binary(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pushgate-local"))
        .args(["--port", "0"])
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .unwrap()
}

#[test]
fn bad_flag_values_are_a_clear_error_at_start_never_a_panic() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--idle-timeout-secs", "18446744073709551615"],
            "--idle-timeout-secs",
        ),
        (&["--idle-timeout-secs", "0"], "--idle-timeout-secs"),
        (
            &["--max-duration-secs", "18446744073709551615"],
            "--max-duration-secs",
        ),
        (
            &["--notifier-timeout-secs", "901"],
            "--notifier-timeout-secs",
        ),
        (
            &["--subscribe-timeout-secs", "0"],
            "--subscribe-timeout-secs",
        ),
        (&["--batch-size", "0"], "--batch-size"),
        (
            &["--batch-window-ms", "18446744073709551615"],
            "--batch-window-ms",
        ),
        (&["--notifier-concurrency", "0"], "--notifier-concurrency"),
        (&["--max-receive-count", "0"], "--max-receive-count"),
        (
            &["--visibility-timeout-secs", "18446744073709551615"],
            "--visibility-timeout-secs",
        ),
        (&["--ttl-sweep-secs", "0"], "--ttl-sweep-secs"),
        (
            &["--connection-ttl-secs", "18446744073709551615"],
            "--connection-ttl-secs",
        ),
        (&["--push-concurrency", "0"], "--push-concurrency"),
        (
            &["--outbound-buffer-bytes", "10"],
            "--outbound-buffer-bytes",
        ),
        (&["--post-rate", "NaN"], "--post-rate"),
        (&["--post-rate", "10", "--post-burst", "0"], "--post-burst"),
        (&["--post-burst", "5"], "--post-rate"),
        (&["--fault-post-rate", "2"], "postFailureRate"),
        (
            &["--fault-subscribe-conflict-rate=-1"],
            "subscribeConflictRate",
        ),
        (
            &["--fault-post-latency-ms", "18446744073709551615"],
            "postLatencyMs",
        ),
    ];
    for (args, named) in cases {
        let output = run_binary(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.starts_with("pushgate-local: "), "{args:?}: {stderr}");
        assert!(
            stderr.contains(named),
            "{args:?} should name {named}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn post_to_connection_past_the_token_bucket_answers_429_limit_exceeded() {
    let settings = Settings {
        // Two at once, then one per 1000 s: the third call finds it empty.
        post_throttle: Some(pushgate_local::settings::PostThrottle {
            rate: 0.001,
            burst: 2,
        }),
        ..Settings::default()
    };
    let emulator = Emulator::start(settings).await;
    let mut ws = emulator.connect().await;
    let id = emulator.only_connection_id().await;
    assert_eq!(post(&emulator, &id, b"1".to_vec()).await.0, 200);
    assert_eq!(post(&emulator, &id, b"2".to_vec()).await.0, 200);
    assert_eq!(
        post(&emulator, &id, b"3".to_vec()).await,
        (429, "LimitExceededException".to_owned())
    );
    assert_eq!(next_text(&mut ws).await, "1");
    assert_eq!(next_text(&mut ws).await, "2");
    emulator.shutdown().await;
}

#[tokio::test]
async fn virtual_connections_take_pushes_without_sockets_and_are_counted() {
    let settings = Settings {
        // As AWS requires: not below the notifier's timeout, so a batch
        // still fanning out is not received a second time meanwhile.
        queue: QueueSettings {
            visibility_timeout: FunctionTimeouts::default().notifier,
            ..quick_queue()
        },
        ..Settings::default()
    };
    let emulator = Emulator::start(settings).await;
    let mut ws = emulator.connect().await;
    subscribe(&mut ws, "artist:big").await;
    let (status, added) = emulator
        .call(
            reqwest::Method::POST,
            "/_pushgate/virtual",
            json!({"entityId": "artist:big", "count": 2000}),
        )
        .await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["added"], 2000);
    let stored = emulator.status().await["stored"].clone();
    assert_eq!(stored, json!({"connections": 2001, "subscriptions": 2001}));

    let id = emulator
        .publish("artist:big", json!({"tickets": "on sale"}))
        .await;
    assert_eq!(recv_json(&mut ws).await["id"], id.as_str());
    let deadline = tokio::time::Instant::now() + WAIT;
    let summary = loop {
        let summary = emulator.get_json("/_pushgate/virtual").await;
        if summary["deliveries"] == 2000 {
            break summary;
        }
        assert!(tokio::time::Instant::now() < deadline, "{summary}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(summary["connections"], 2000);
    assert_eq!(summary["minPerConnection"], 1);
    assert_eq!(summary["maxPerConnection"], 1);
    let one = added["sample"][0].as_str().unwrap();
    let counted = emulator
        .get_json(&format!("/_pushgate/virtual/{one}"))
        .await;
    assert_eq!(counted["deliveries"], 1);

    let (status, cleared) = emulator
        .call(reqwest::Method::DELETE, "/_pushgate/virtual", json!({}))
        .await;
    assert_eq!((status, cleared["removed"].clone()), (200, json!(2000)));
    let stored = emulator.status().await["stored"].clone();
    assert_eq!(stored, json!({"connections": 1, "subscriptions": 1}));
    emulator.shutdown().await;
}
