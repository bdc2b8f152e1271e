//! End-to-end tests: the emulator on 127.0.0.1:0, real WebSocket clients
//! (tokio-tungstenite), PutEvents over HTTP and the real
//! `aws-sdk-apigatewaymanagement` client on the `@connections` API.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::time::Duration;

use futures::SinkExt;
use pushgate_local::{QueueSettings, Settings};
use serde_json::{json, Value};
use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn subscribe_publish_receive_then_unsubscribe() {
    let emulator = Emulator::start(Settings::default()).await;
    let mut ws = emulator.connect().await;
    send(
        &mut ws,
        json!({"action": "subscribe", "entityId": "artist:ed-sheeran"}),
    )
    .await;
    let subscribed = recv_json(&mut ws).await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    assert_eq!(subscribed["entityId"], "artist:ed-sheeran");

    let event_id = emulator
        .publish("artist:ed-sheeran", json!({"tickets": "on sale"}))
        .await;
    let notification = recv_json(&mut ws).await;
    assert_eq!(notification["type"], "notification");
    assert_eq!(notification["id"], event_id.as_str());
    assert_eq!(notification["entityId"], "artist:ed-sheeran");
    assert_eq!(notification["data"], json!({"tickets": "on sale"}));
    assert!(notification["time"].as_str().unwrap().ends_with('Z'));

    send(
        &mut ws,
        json!({"action": "unsubscribe", "entityId": "artist:ed-sheeran"}),
    )
    .await;
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"type": "unsubscribed", "entityId": "artist:ed-sheeran"})
    );
    emulator.publish("artist:ed-sheeran", json!(2)).await;
    // Once the queue is empty the notifier has run; a notification would
    // have been queued on the socket before the reply to the next frame.
    emulator
        .wait_status("the queue to drain", |s| {
            s["queue"]["visible"] == 0 && s["queue"]["inFlight"] == 0
        })
        .await;
    send(&mut ws, json!({"action": "dance"})).await;
    assert_eq!(recv_json(&mut ws).await["code"], "unknown_action");
    emulator.shutdown().await;
}

#[tokio::test]
async fn disconnect_removes_every_record() {
    let emulator = Emulator::start(Settings::default()).await;
    let mut ws = emulator.connect().await;
    for entity in ["a", "b"] {
        send(&mut ws, json!({"action": "subscribe", "entityId": entity})).await;
        assert_eq!(recv_json(&mut ws).await["type"], "subscribed");
    }
    let status = emulator.status().await;
    assert_eq!(status["stored"]["subscriptions"], 2);
    assert_eq!(status["connections"][0]["subscriptions"], json!(["a", "b"]));
    ws.close(None).await.unwrap();
    emulator
        .wait_status("records removed", stored_is_empty)
        .await;
    emulator.shutdown().await;
}

#[tokio::test]
async fn delete_on_connections_closes_the_socket_and_runs_disconnect() {
    let emulator = Emulator::start(Settings::default()).await;
    let mut ws = emulator.connect().await;
    send(&mut ws, json!({"action": "subscribe", "entityId": "a"})).await;
    recv_json(&mut ws).await;
    let id = emulator.only_connection_id().await;
    let path = format!("/local/@connections/{id}");
    let deleted = emulator
        .management(reqwest::Method::DELETE, &path, Vec::new())
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(close_code(&mut ws).await, 1000);
    emulator
        .wait_status("records removed", stored_is_empty)
        .await;
    let gone = emulator
        .management(reqwest::Method::GET, &path, Vec::new())
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 410);
    assert_eq!(gone.headers()["x-amzn-errortype"], "GoneException");
    emulator.shutdown().await;
}

#[tokio::test]
async fn subprotocols_are_chosen_by_connect_and_never_echoed_otherwise() {
    let emulator = Emulator::start(Settings::default()).await;
    let offer = |protocols: &str| {
        let mut request = emulator.ws_url.as_str().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
        request
    };
    match tokio_tungstenite::connect_async(offer("mqtt")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 400);
            let body = String::from_utf8(response.body().clone().unwrap_or_default()).unwrap();
            assert!(body.contains("unsupported_subprotocol"), "{body}");
        }
        other => panic!("the handshake must fail, got {:?}", other.map(|r| r.1)),
    }
    let (_ws, response) = tokio_tungstenite::connect_async(offer("mqtt, websocket"))
        .await
        .unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "websocket");
    let (_ws, response) = emulator_connect_plain(&emulator).await;
    assert!(response.headers().get("sec-websocket-protocol").is_none());
    emulator.shutdown().await;
}

async fn emulator_connect_plain(
    emulator: &Emulator,
) -> (
    Ws,
    tokio_tungstenite::tungstenite::handshake::client::Response,
) {
    tokio_tungstenite::connect_async(emulator.ws_url.as_str())
        .await
        .unwrap()
}

#[tokio::test]
async fn unknown_actions_non_json_and_binary_frames_get_error_replies() {
    let emulator = Emulator::start(Settings::default()).await;
    let mut ws = emulator.connect().await;
    send(&mut ws, json!({"action": "dance"})).await;
    let reply = recv_json(&mut ws).await;
    assert_eq!(reply["type"], "error");
    assert_eq!(reply["code"], "unknown_action");
    ws.send(Message::Text("hello".into())).await.unwrap();
    assert_eq!(recv_json(&mut ws).await["code"], "invalid_json");
    send(&mut ws, json!({"action": "subscribe", "entityId": ""})).await;
    assert_eq!(recv_json(&mut ws).await["code"], "invalid_entity_id");
    ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(recv_json(&mut ws).await["code"], "binary_frame");
    emulator.shutdown().await;
}

#[tokio::test]
async fn an_oversized_message_closes_with_1009() {
    let emulator = Emulator::start(Settings::default()).await;
    let mut ws = emulator.connect().await;
    let big = format!(
        r#"{{"action":"subscribe","entityId":"{}"}}"#,
        "x".repeat(129 * 1024)
    );
    ws.send(Message::Text(big.into())).await.unwrap();
    assert_eq!(close_code(&mut ws).await, u16::from(CloseCode::Size));
    emulator
        .wait_status("records removed", stored_is_empty)
        .await;
    emulator.shutdown().await;
}

#[tokio::test]
async fn the_idle_timeout_closes_the_connection() {
    let settings = Settings {
        idle_timeout: Duration::from_secs(1),
        ..Settings::default()
    };
    let emulator = Emulator::start(settings).await;
    let mut ws = emulator.connect().await;
    assert_eq!(close_code(&mut ws).await, 1001);
    emulator
        .wait_status("records removed", stored_is_empty)
        .await;
    emulator.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_open_connections_going_away() {
    let emulator = Emulator::start(Settings::default()).await;
    let mut ws = emulator.connect().await;
    send(&mut ws, json!({"action": "subscribe", "entityId": "a"})).await;
    recv_json(&mut ws).await;
    let closing = tokio::spawn(async move { close_code(&mut ws).await });
    emulator.shutdown().await;
    assert_eq!(closing.await.unwrap(), 1001);
}

#[tokio::test]
async fn a_failing_record_is_redelivered_then_reaches_the_dlq() {
    let settings = quick_retries(Settings {
        queue: QueueSettings {
            max_receive_count: 3,
            ..QueueSettings::default()
        },
        ..Settings::default()
    });
    let emulator = Emulator::start(settings).await;
    // An empty entityId can never be delivered: the notifier reports it
    // failed every time.
    let detail = json!({"entityId": "", "message": 1}).to_string();
    let answer = emulator
        .put_events(
            json!([{"Source": "pushgate", "DetailType": "Entity Updated", "Detail": detail}]),
        )
        .await;
    assert_eq!(answer["FailedEntryCount"], 0);
    emulator
        .wait_status("the record in the DLQ", |s| s["dlq"] == 1)
        .await;
    let dlq = emulator.get_json("/_pushgate/dlq").await;
    assert_eq!(dlq["count"], 1);
    let letter = &dlq["messages"][0];
    assert_eq!(letter["receiveCount"], 3);
    let event: Value = serde_json::from_str(letter["body"].as_str().unwrap()).unwrap();
    assert_eq!(event["id"], answer["Entries"][0]["EventId"]);
    assert_eq!(event["detail-type"], "Entity Updated");
    assert_eq!(event["account"], "000000000000");
    emulator.shutdown().await;
}

#[tokio::test]
async fn put_events_answers_like_eventbridge() {
    let emulator = Emulator::start(Settings::default()).await;
    let answer = emulator
        .put_events(json!([
            {"Source": "pushgate", "DetailType": "Entity Updated", "Detail": "{\"entityId\":\"a\",\"message\":1}"},
            {"Source": "other", "DetailType": "Something", "Detail": "{}"},
            {"DetailType": "x", "Detail": "{}"},
            {"Source": "pushgate", "DetailType": "Entity Updated", "Detail": "not json"},
        ]))
        .await;
    assert_eq!(answer["FailedEntryCount"], 2);
    let entries = answer["Entries"].as_array().unwrap();
    assert!(entries[0]["EventId"].is_string());
    assert!(entries[1]["EventId"].is_string());
    assert_eq!(entries[2]["ErrorCode"], "InvalidArgument");
    assert_eq!(entries[3]["ErrorCode"], "MalformedDetail");
    let refused = emulator
        .http
        .post(&emulator.base)
        .header("X-Amz-Target", "AWSEvents.ListRules")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    emulator.shutdown().await;
}

mod sdk {
    use super::*;
    use aws_sdk_apigatewaymanagement::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
    use aws_sdk_apigatewaymanagement::primitives::Blob;
    use aws_sdk_apigatewaymanagement::Client;

    fn client(endpoint: &str) -> Client {
        let config = aws_sdk_apigatewaymanagement::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("local", "local", None, None, "test"))
            .endpoint_url(endpoint)
            .build();
        Client::from_conf(config)
    }

    #[tokio::test]
    async fn the_connections_api_works_with_the_aws_sdk() {
        let emulator = Emulator::start(Settings::default()).await;
        let mut ws = emulator.connect().await;
        let id = emulator.only_connection_id().await;
        let client = client(&format!("{}/local", emulator.base));

        client
            .post_to_connection()
            .connection_id(&id)
            .data(Blob::new(r#"{"hello":"world"}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(recv_json(&mut ws).await, json!({"hello": "world"}));

        let described = client
            .get_connection()
            .connection_id(&id)
            .send()
            .await
            .unwrap();
        assert!(described.connected_at().is_some());
        assert!(described.last_active_at().is_some());
        assert_eq!(
            described.identity().and_then(|i| i.source_ip()),
            Some("127.0.0.1")
        );

        let err = client
            .post_to_connection()
            .connection_id("AAAAAAAAAAAAAAA=")
            .data(Blob::new("x"))
            .send()
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.as_service_error(),
                Some(PostToConnectionError::GoneException(_))
            ),
            "{err:?}"
        );

        let err = client
            .post_to_connection()
            .connection_id(&id)
            .data(Blob::new(vec![b'x'; 129 * 1024]))
            .send()
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.as_service_error(),
                Some(PostToConnectionError::PayloadTooLargeException(_))
            ),
            "{err:?}"
        );

        client
            .delete_connection()
            .connection_id(&id)
            .send()
            .await
            .unwrap();
        assert_eq!(close_code(&mut ws).await, 1000);
        emulator
            .wait_status("records removed", stored_is_empty)
            .await;
        let err = client
            .post_to_connection()
            .connection_id(&id)
            .data(Blob::new("late"))
            .send()
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.as_service_error(),
                Some(PostToConnectionError::GoneException(_))
            ),
            "{err:?}"
        );
        emulator.shutdown().await;
    }
}
