//! Delivery that survives reconnects, end to end through the emulator with
//! real WebSocket clients: per-stream `seq`, resume with `since`, expired
//! history, redelivered records, concurrent notifier invocations on one
//! entity against DynamoDB (moto), and `GET /history` over HTTP.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use pushgate_local::{Settings, StoreSettings};
use serde_json::{json, Value};
use support::*;

/// Reads `n` notifications (in arrival order). A replaying subscribe
/// returns no body, for which API Gateway sends an empty message: skipped,
/// as clients skip it.
async fn notifications(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    while got.len() < n {
        let text = match next_frame(ws).await {
            tokio_tungstenite::tungstenite::Message::Text(text) => text.to_string(),
            other => panic!("expected a text frame, got {other:?}"),
        };
        if text.is_empty() {
            continue;
        }
        let frame: Value = serde_json::from_str(&text).unwrap();
        if frame["type"] == "notification" {
            got.push(frame);
        }
    }
    got
}

fn seqs(frames: &[Value]) -> Vec<u64> {
    frames.iter().map(|f| f["seq"].as_u64().unwrap()).collect()
}

async fn subscribe(ws: &mut Ws, frame: Value) -> Value {
    send(ws, frame).await;
    let reply = recv_json(ws).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    reply
}

#[tokio::test]
async fn a_client_that_reconnects_gets_exactly_what_it_missed_then_live_ones() {
    let emulator = Emulator::start(Settings::default()).await;
    let mut ws = emulator.connect().await;
    let first = subscribe(&mut ws, json!({"action":"subscribe","entityId":"e"})).await;
    assert_eq!(first["seq"], 0);
    for i in 1..=3 {
        emulator.publish("e", json!(i)).await;
    }
    let got = notifications(&mut ws, 3).await;
    // The notifier runs invocations concurrently: arrival order may differ.
    let seen: BTreeSet<u64> = seqs(&got).into_iter().collect();
    assert_eq!(seen, BTreeSet::from([1, 2, 3]));
    let epoch = got[0]["epoch"].as_str().unwrap().to_owned();
    ws.close(None).await.unwrap();
    emulator
        .wait_status("the disconnect", |s| s["stored"]["connections"] == 0)
        .await;

    for i in 4..=8 {
        emulator.publish("e", json!(i)).await;
    }
    emulator.wait_queue_drained().await;

    let mut ws = emulator.connect().await;
    let reply = subscribe(
        &mut ws,
        json!({"action":"subscribe","entityId":"e","since":3,"epoch":epoch}),
    )
    .await;
    assert_eq!(
        reply,
        json!({"type":"subscribed","entityId":"e","seq":8,"epoch":epoch,"recovered":true})
    );
    let replay = notifications(&mut ws, 5).await;
    assert_eq!(seqs(&replay), vec![4, 5, 6, 7, 8], "exactly 4–8, in order");
    assert!(replay.iter().all(|n| n["epoch"] == epoch.as_str()));
    assert_eq!(replay[0]["data"], json!(4));

    emulator.publish("e", json!(9)).await;
    let live = notifications(&mut ws, 1).await;
    assert_eq!(seqs(&live), vec![9]);
    emulator.shutdown().await;
}

#[tokio::test]
async fn once_history_has_expired_a_resume_is_not_recovered() {
    let mut settings = Settings::default();
    settings.functions.retention.ttl_secs = 1;
    let emulator = Emulator::start(settings).await;
    let mut ws = emulator.connect().await;
    subscribe(&mut ws, json!({"action":"subscribe","entityId":"e"})).await;
    emulator.publish("e", json!(1)).await;
    emulator.publish("e", json!(2)).await;
    notifications(&mut ws, 2).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let reply = subscribe(
        &mut ws,
        json!({"action":"subscribe","entityId":"e","since":1}),
    )
    .await;
    assert_eq!(reply["recovered"], false, "{reply}");
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_redelivered_record_keeps_its_seq() {
    let emulator = Emulator::start(quick_retries(Settings::default())).await;
    let mut ws = emulator.connect().await;
    subscribe(&mut ws, json!({"action":"subscribe","entityId":"e"})).await;
    // Every push fails until the faults are cleared: the record goes back to
    // the queue and comes round again.
    emulator
        .set_faults(json!({"postFailureRate": 1.0, "postFailureStatuses": [500]}))
        .await;
    let id = emulator.publish("e", json!("first")).await;
    emulator
        .wait_status("a failed receive", |s| {
            s["queue"]["receives"].as_u64().unwrap_or(0) >= 1
                || s["queue"]["visible"] == 1
                || s["queue"]["inFlight"] == 1
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    emulator.set_faults(json!({})).await;
    let first = notifications(&mut ws, 1).await;
    assert_eq!(
        (first[0]["id"].as_str(), first[0]["seq"].as_u64()),
        (Some(id.as_str()), Some(1))
    );
    emulator.publish("e", json!("second")).await;
    let second = notifications(&mut ws, 1).await;
    assert_eq!(second[0]["seq"], 2, "no seq was spent on the retries");
    emulator.shutdown().await;
}

#[tokio::test]
async fn concurrent_notifier_invocations_on_dynamodb_hand_out_each_seq_once() {
    // moto serving one request at a time: its threaded server does not
    // isolate transactions, which DynamoDB does (tests/moto/serial_server.py).
    let moto = pushgate_testkit::Moto::start_serial();
    let mut settings = Settings {
        store: StoreSettings::DynamoDb {
            endpoint: Some(moto.endpoint.clone()),
            table: "pushgate-resume".into(),
        },
        ..Settings::default()
    };
    settings.queue.batch_size = 2;
    let emulator = Emulator::start(settings).await;
    let mut ws = emulator.connect().await;
    subscribe(&mut ws, json!({"action":"subscribe","entityId":"hot"})).await;
    let n = 30;
    for chunk in 0..n / 10 {
        let entries: Vec<Value> = (0..10)
            .map(|i| {
                json!({"Source":"pushgate","DetailType":"Entity Updated",
                    "Detail": json!({"entityId":"hot","message": chunk * 10 + i}).to_string()})
            })
            .collect();
        let answer = emulator.put_events(json!(entries)).await;
        assert_eq!(answer["FailedEntryCount"], 0);
    }
    let got = notifications(&mut ws, n).await;
    let mut all = seqs(&got);
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=n as u64).collect::<Vec<_>>(),
        "no duplicate, no hole"
    );
    emulator.shutdown().await;
}

#[tokio::test]
async fn history_over_http_gives_the_same_notifications_and_clear_errors() {
    let mut settings = Settings::default();
    settings.functions.auth_mode = pushgate_domain::AuthMode::Token;
    let emulator = Emulator::start(settings).await;
    let token = emulator
        .token("alice", json!([{"role":"subscribe","entity":"artist:*"}]))
        .await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("{}?token={token}", emulator.ws_url))
            .await
            .unwrap();
    subscribe(&mut ws, json!({"action":"subscribe","entityId":"artist:1"})).await;
    for i in 1..=4 {
        emulator.publish("artist:1", json!(i)).await;
    }
    let mut pushed = notifications(&mut ws, 4).await;
    pushed.sort_by_key(|n| n["seq"].as_u64());

    let get = |query: String, token: Option<String>| {
        let http = emulator.http.clone();
        let url = format!("{}/history?{query}", emulator.base);
        async move {
            let mut request = http.get(url);
            if let Some(t) = token {
                request = request.header("Authorization", format!("Bearer {t}"));
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let cors = response
                .headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, response.json::<Value>().await.unwrap(), cors)
        }
    };
    let (status, answer, cors) = get("entityId=artist:1&since=1".into(), Some(token.clone())).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(cors.as_deref(), Some("*"));
    assert_eq!(answer["entityId"], "artist:1");
    assert_eq!(answer["seq"], 4);
    assert_eq!(answer["recovered"], true);
    assert_eq!(answer["epoch"], pushed[0]["epoch"]);
    assert_eq!(
        answer["notifications"],
        json!(pushed[1..].to_vec()),
        "the same frames"
    );
    let (_, limited, _) = get(
        "entityId=artist:1&since=0&limit=2".into(),
        Some(token.clone()),
    )
    .await;
    assert_eq!(
        seqs(limited["notifications"].as_array().unwrap()),
        vec![1, 2]
    );
    let (_, head, _) = get("entityId=artist:1".into(), Some(token.clone())).await;
    assert_eq!(
        (head["seq"].clone(), head["notifications"].clone()),
        (json!(4), json!([]))
    );

    let other = emulator
        .token("bob", json!([{"role":"subscribe","entity":"venue:*"}]))
        .await;
    for (query, token, status, code) in [
        (
            "entityId=artist:1&since=-1",
            Some(token.clone()),
            400,
            "invalid_since",
        ),
        (
            "entityId=artist:1&since=x",
            Some(token.clone()),
            400,
            "invalid_since",
        ),
        (
            "entityId=artist:1&limit=0",
            Some(token.clone()),
            400,
            "invalid_limit",
        ),
        ("since=1", Some(token.clone()), 400, "missing_stream"),
        (
            "entityId=artist:1&since=1",
            Some(other.clone()),
            403,
            "forbidden",
        ),
        (
            "userId=alice&since=0",
            Some(other.clone()),
            403,
            "forbidden",
        ),
        (
            "entityId=artist:1&since=1",
            Some("not-a-jwt".into()),
            401,
            "unauthorized",
        ),
        ("entityId=artist:1&since=1", None, 401, "unauthorized"),
    ] {
        let (got, answer, _) = get(query.into(), token).await;
        assert_eq!(
            (got, answer["code"].as_str()),
            (status, Some(code)),
            "{query}: {answer}"
        );
    }
    emulator.shutdown().await;
}
