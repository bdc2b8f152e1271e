//! Trust through the emulator: tokens at `$connect` and their scopes,
//! notifications to every tab of a user, and fault injection (throttled and
//! failing pushes, vanished clients whose `$disconnect` never comes) showing
//! what survives. Also the emulator on a real DynamoDB-compatible server.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::collections::HashSet;
use std::time::Duration;

use pushgate_local::{FunctionTimeouts, QueueSettings, Settings, StoreSettings};
use serde_json::{json, Value};
use support::*;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_scoped_token_from_the_emulator_limits_what_a_connection_may_do() {
    let emulator = Emulator::start(Settings::default()).await;
    let token = emulator
        .token(
            "alice",
            json!([{"role": "subscribe_publish", "entity": "room:*"}]),
        )
        .await;

    // The token travels in the subprotocol list; only pushgate.v1 is echoed.
    let (mut ws, response) = emulator
        .connect_offering(&format!("pushgate.v1, {token}"))
        .await
        .unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "pushgate.v1");

    send(
        &mut ws,
        json!({"action": "subscribe", "entityId": "room:1"}),
    )
    .await;
    assert_eq!(recv_json(&mut ws).await["type"], "subscribed");
    send(
        &mut ws,
        json!({"action": "subscribe", "entityId": "venue:1"}),
    )
    .await;
    assert_eq!(recv_json(&mut ws).await["code"], "forbidden");

    send(
        &mut ws,
        json!({"action": "publish", "entityId": "room:1", "data": {"text": "hi"}}),
    )
    .await;
    let frames = [recv_json(&mut ws).await, recv_json(&mut ws).await];
    let notification = frames.iter().find(|f| f["type"] == "notification").unwrap();
    let accepted = frames.iter().find(|f| f["type"] == "accepted").unwrap();
    assert_eq!(notification["data"], json!({"text": "hi"}));
    assert_eq!(accepted["entityId"], "room:1");
    assert_eq!(accepted["id"], notification["id"]);

    let status = emulator.status().await;
    assert_eq!(
        status["stored"]["subscriptions"], 1,
        "venue:1 was not stored"
    );

    // A subscribe-only token cannot publish.
    let reader = emulator
        .token("bob", json!([{"role": "subscribe", "entity": "room:*"}]))
        .await;
    let (mut ws, _) = emulator
        .connect_offering(&format!("pushgate.v1, {reader}"))
        .await
        .unwrap();
    send(
        &mut ws,
        json!({"action": "publish", "entityId": "room:1", "data": 1}),
    )
    .await;
    assert_eq!(recv_json(&mut ws).await["code"], "forbidden");
    emulator.shutdown().await;
}

#[tokio::test]
async fn bad_tokens_fail_the_handshake_and_the_token_endpoint_checks_its_input() {
    let settings = Settings {
        functions: {
            let mut f = Settings::default().functions;
            f.auth_mode = pushgate_domain::AuthMode::Token;
            f
        },
        ..Settings::default()
    };
    let emulator = Emulator::start(settings).await;
    let token = emulator
        .token(
            "alice",
            json!([{"role": "subscribe", "entity": "user:alice"}]),
        )
        .await;
    let tampered = format!("{}x", &token[..token.len() - 1]);
    let url = emulator.ws_url.clone();
    let cases = [
        (url.clone(), 401),                       // no token
        (format!("{url}?token=not-a-jwt"), 401),  // malformed
        (format!("{url}?token={tampered}"), 401), // bad signature
    ];
    for (target, status) in cases {
        let result = tokio_tungstenite::connect_async(target.as_str()).await;
        assert_eq!(refused_status(result), status, "{target}");
    }
    let (_ws, _) = tokio_tungstenite::connect_async(format!("{url}?token={token}").as_str())
        .await
        .unwrap();
    assert_eq!(emulator.status().await["stored"]["connections"], 1);

    for body in [
        json!({"sub": ""}),
        json!({"sub": "a", "grants": [{"role": "admin", "entity": "x"}]}),
        json!({"sub": "a", "grants": [{"role": "subscribe", "entity": "a*b*"}]}),
        json!({"sub": "a", "ttlSecs": 0}),
        json!({"nope": true}),
    ] {
        let (status, answer) = emulator
            .call(reqwest::Method::POST, "/_pushgate/token", body.clone())
            .await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert!(answer["message"].is_string());
    }
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_user_notification_reaches_every_tab_of_that_user_and_no_one_else() {
    let emulator = Emulator::start(Settings::default()).await;
    let alice = emulator
        .token(
            "alice",
            json!([{"role": "subscribe", "entity": "user:alice"}]),
        )
        .await;
    let bob = emulator
        .token("bob", json!([{"role": "subscribe", "entity": "user:bob"}]))
        .await;
    let mut tabs = Vec::new();
    for _ in 0..3 {
        let url = format!("{}?token={alice}", emulator.ws_url);
        tabs.push(
            tokio_tungstenite::connect_async(url.as_str())
                .await
                .unwrap()
                .0,
        );
    }
    let url = format!("{}?token={bob}", emulator.ws_url);
    let (mut other, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();

    let detail = json!({"userId": "alice", "message": {"order": "shipped"}}).to_string();
    let answer = emulator
        .put_events(
            json!([{"Source": "pushgate", "DetailType": "Entity Updated", "Detail": detail}]),
        )
        .await;
    let event_id = answer["Entries"][0]["EventId"].clone();
    for tab in &mut tabs {
        let frame = recv_json(tab).await;
        assert_eq!(frame["type"], "notification");
        assert_eq!(frame["id"], event_id);
        assert_eq!(frame["data"], json!({"order": "shipped"}));
    }
    emulator.wait_queue_drained().await;
    // Bob's next frame is the reply to this one, not a notification.
    send(&mut other, json!({"action": "dance"})).await;
    assert_eq!(recv_json(&mut other).await["code"], "unknown_action");
    emulator.shutdown().await;
}

/// Reads notifications until every id in `want` has arrived; returns the
/// socket (still open) and how many duplicates came along.
async fn receive_all(mut ws: Ws, want: HashSet<String>) -> (Ws, usize) {
    let mut seen = HashSet::new();
    let mut duplicates = 0;
    let read = async {
        while seen.len() < want.len() {
            if let Message::Text(text) = next_frame(&mut ws).await {
                let frame: Value = serde_json::from_str(text.as_str()).unwrap();
                assert_eq!(frame["type"], "notification", "{frame}");
                let id = frame["id"].as_str().unwrap().to_owned();
                assert!(want.contains(&id), "unexpected event {id}");
                if !seen.insert(id) {
                    duplicates += 1;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(90), read)
        .await
        .expect("every event reaches every live subscriber");
    (ws, duplicates)
}

#[tokio::test]
async fn every_live_subscriber_gets_every_event_through_throttling_failures_and_vanished_clients() {
    const CLIENTS: usize = 200;
    const VANISHED: usize = 20; // 10 %
    const EVENTS: usize = 3;
    // Notifier invocations run at once, so, as AWS requires, the visibility
    // timeout is not below the notifier's timeout: a batch still retrying
    // its pushes is not received a second time meanwhile.
    let settings = Settings {
        timeouts: FunctionTimeouts {
            notifier: Duration::from_secs(5),
            ..FunctionTimeouts::default()
        },
        queue: QueueSettings {
            visibility_timeout: Duration::from_secs(5),
            max_receive_count: 10,
            batch_window: Duration::from_millis(50),
            ..QueueSettings::default()
        },
        ..Settings::default()
    };
    let emulator = Emulator::start(settings).await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut ws = emulator.connect().await;
        send(
            &mut ws,
            json!({"action": "subscribe", "entityId": "show:1"}),
        )
        .await;
        assert_eq!(recv_json(&mut ws).await["type"], "subscribed");
        clients.push(ws);
    }

    // 10 % of the clients vanish and API Gateway never says so.
    emulator
        .set_faults(json!({"dropDisconnectRate": 1.0}))
        .await;
    for ws in clients.drain(..VANISHED) {
        drop(ws); // no close frame: the TCP connection just ends
    }
    let status = emulator
        .wait_status("the vanished sessions to end", |s| {
            s["connections"].as_array().unwrap().len() == CLIENTS - VANISHED
        })
        .await;
    assert_eq!(
        status["stored"]["connections"], CLIENTS,
        "their records stay behind"
    );

    // 30 % of pushes are throttled or fail.
    emulator
        .set_faults(json!({"postFailureRate": 0.3, "postFailureStatuses": [429, 500]}))
        .await;
    let mut ids = HashSet::new();
    for n in 0..EVENTS {
        ids.insert(emulator.publish("show:1", json!({"n": n})).await);
    }
    let readers: Vec<_> = clients
        .into_iter()
        .map(|ws| tokio::spawn(receive_all(ws, ids.clone())))
        .collect();
    let mut duplicates = 0;
    let mut open = Vec::new();
    for reader in readers {
        let (ws, dups) = reader.await.unwrap();
        duplicates += dups;
        open.push(ws);
    }
    let status = emulator.wait_queue_drained().await;
    let faults = emulator.get_json("/_pushgate/faults").await;
    assert!(faults["injected"]["postsFailed"].as_u64().unwrap() > 0);
    assert_eq!(faults["injected"]["disconnectsDropped"], VANISHED);
    assert_eq!(status["dlq"], 0, "no event was given up on");
    // The notifier removed the vanished connections on their 410s.
    assert_eq!(
        status["stored"]["connections"],
        CLIENTS - VANISHED,
        "{}",
        status["stored"]
    );
    assert_eq!(status["stored"]["subscriptions"], CLIENTS - VANISHED);
    println!("duplicates delivered (dropped by id on the client): {duplicates}");
    drop(open);
    emulator.shutdown().await;
}

#[tokio::test]
async fn injected_latency_holds_every_push_and_bad_fault_settings_are_refused() {
    let emulator = Emulator::start(Settings::default()).await;
    for (faults, names) in [
        (json!({"postLatencyMs": 60_000}), "postLatencyMs"),
        (json!({"postFailureRate": 2}), "postFailureRate"),
        (json!({"postFailureStatuses": [418]}), "418"),
        (json!({"latency": 5}), "unknown field"),
    ] {
        let (status, answer) = emulator
            .call(reqwest::Method::PUT, "/_pushgate/faults", faults.clone())
            .await;
        assert_eq!(status, 400, "{faults}: {answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(names), "{faults}: {message}");
    }
    assert_eq!(
        emulator.get_json("/_pushgate/faults").await["faults"]["postLatencyMs"],
        0,
        "a refused setting changes nothing"
    );

    let mut ws = emulator.connect().await;
    let id = emulator.only_connection_id().await;
    emulator.set_faults(json!({"postLatencyMs": 200})).await;
    let started = std::time::Instant::now();
    let (status, _) = emulator
        .call(
            reqwest::Method::POST,
            &format!("/local/@connections/{id}"),
            json!({"hello": "late"}),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "answered after {:?}",
        started.elapsed()
    );
    assert_eq!(recv_json(&mut ws).await, json!({"hello": "late"}));
    emulator.shutdown().await;
}

#[tokio::test]
async fn missed_disconnects_of_idle_subscribers_are_cleaned_up_by_ttl() {
    let mut functions = Settings::default().functions;
    functions.ttl = Duration::from_secs(3);
    let settings = Settings {
        functions,
        ttl_sweep_interval: Duration::from_millis(100),
        ..Settings::default()
    };
    let emulator = Emulator::start(settings).await;
    emulator
        .set_faults(json!({"dropDisconnectRate": 1.0}))
        .await;
    for _ in 0..5 {
        let mut ws = emulator.connect().await;
        send(
            &mut ws,
            json!({"action": "subscribe", "entityId": "never:published"}),
        )
        .await;
        assert_eq!(recv_json(&mut ws).await["type"], "subscribed");
        drop(ws);
    }
    let status = emulator
        .wait_status("the sessions to end", |s| {
            s["connections"].as_array().unwrap().is_empty()
        })
        .await;
    assert_eq!(status["stored"]["connections"], 5, "no $disconnect ran");
    emulator
        .wait_status("TTL to delete every item", stored_is_empty)
        .await;
    emulator.shutdown().await;
}

#[tokio::test]
async fn the_emulator_runs_on_a_dynamodb_endpoint() {
    let server = pushgate_testkit::Moto::start();
    let settings = Settings {
        store: StoreSettings::DynamoDb {
            endpoint: Some(server.endpoint.clone()),
            table: "pushgate-emulator".into(),
        },
        ..Settings::default()
    };
    let emulator = Emulator::start(settings).await;
    let mut ws = emulator.connect().await;
    send(
        &mut ws,
        json!({"action": "subscribe", "entityId": "artist:1"}),
    )
    .await;
    assert_eq!(recv_json(&mut ws).await["type"], "subscribed");
    let status = emulator.status().await;
    assert_eq!(status["store"], "dynamodb");
    assert_eq!(
        status["connections"][0]["subscriptions"],
        json!(["artist:1"])
    );
    let id = emulator
        .publish("artist:1", json!({"on": "dynamodb"}))
        .await;
    let frame = recv_json(&mut ws).await;
    assert_eq!(frame["id"], id.as_str());
    assert_eq!(frame["data"], json!({"on": "dynamodb"}));

    // The connection and subscription items (those with a connectionId;
    // stream and history items live on by their TTL) are really in the
    // table, and $disconnect removes them.
    let table = server.dynamodb();
    let count = || async {
        table
            .scan()
            .table_name("pushgate-emulator")
            .filter_expression("attribute_exists(connectionId)")
            .send()
            .await
            .unwrap()
            .count()
    };
    assert_eq!(count().await, 2);
    ws.close(None).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while count().await != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "items left in the table"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    emulator.shutdown().await;
}
