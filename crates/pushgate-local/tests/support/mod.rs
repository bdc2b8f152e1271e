//! Test support: an emulator on 127.0.0.1:0 with real clients around it
//! (tokio-tungstenite WebSockets, PutEvents and the console over HTTP).

#![allow(clippy::unwrap_used, dead_code, missing_docs)]

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pushgate_local::{serve, Settings};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Generous bound on every wait; nothing is timed more tightly.
pub const WAIT: Duration = Duration::from_secs(15);

pub struct Emulator {
    pub base: String,
    pub ws_url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    pub http: reqwest::Client,
}

impl Emulator {
    pub async fn start(settings: Settings) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            serve(settings, listener, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Self {
            base: format!("http://{addr}"),
            ws_url: format!("ws://{addr}/local"),
            stop: Some(stop),
            task: Some(task),
            http: reqwest::Client::new(),
        }
    }

    pub async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(WAIT, self.task.take().unwrap())
            .await
            .expect("serve returns after shutdown")
            .unwrap();
    }

    pub async fn connect(&self) -> Ws {
        let (ws, _) = tokio_tungstenite::connect_async(self.ws_url.as_str())
            .await
            .unwrap();
        ws
    }

    pub async fn put_events(&self, entries: Value) -> Value {
        self.http
            .post(&self.base)
            .header("X-Amz-Target", "AWSEvents.PutEvents")
            .header("Content-Type", "application/x-amz-json-1.1")
            .body(json!({ "Entries": entries }).to_string())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn publish(&self, entity: &str, message: Value) -> String {
        let detail = json!({"entityId": entity, "message": message}).to_string();
        let answer = self
            .put_events(
                json!([{"Source": "pushgate", "DetailType": "Entity Updated", "Detail": detail}]),
            )
            .await;
        assert_eq!(answer["FailedEntryCount"], 0, "{answer}");
        answer["Entries"][0]["EventId"].as_str().unwrap().to_owned()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn status(&self) -> Value {
        self.get_json("/_pushgate/status").await
    }

    /// Polls the status until `check` holds.
    pub async fn wait_status(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let status = self.status().await;
            if check(&status) {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {status}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The id of the only open connection.
    pub async fn only_connection_id(&self) -> String {
        let status = self
            .wait_status("one connection", |s| {
                s["connections"].as_array().is_some_and(|c| c.len() == 1)
            })
            .await;
        status["connections"][0]["connectionId"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// The next frame that is not a ping or pong.
pub async fn next_frame(ws: &mut Ws) -> Message {
    tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await.expect("socket open").expect("frame") {
                Message::Ping(_) | Message::Pong(_) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("a frame in time")
}

pub async fn recv_json(ws: &mut Ws) -> Value {
    match next_frame(ws).await {
        Message::Text(text) => serde_json::from_str(text.as_str()).unwrap(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

pub async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
}

/// The close code the server sent.
pub async fn close_code(ws: &mut Ws) -> u16 {
    match next_frame(ws).await {
        Message::Close(Some(frame)) => u16::from(frame.code),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

pub fn stored_is_empty(status: &Value) -> bool {
    status["stored"]["connections"] == 0 && status["stored"]["subscriptions"] == 0
}

impl Emulator {
    /// Sends `body` as JSON with `method` to `path`; the status and the
    /// JSON answer.
    /// A `@connections` request (`path` from the root, e.g.
    /// `/local/@connections/{id}`), SigV4-signed with the emulator's own
    /// key as API Gateway requires.
    pub fn management(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
    ) -> reqwest::RequestBuilder {
        let url = format!("{}{path}", self.base);
        let host = self.base.trim_start_matches("http://").to_owned();
        let identity = aws_credential_types::Credentials::new(
            pushgate_local::sigv4::LOCAL_ACCESS_KEY,
            pushgate_local::sigv4::LOCAL_ACCESS_KEY,
            None,
            None,
            "test",
        )
        .into();
        let (instructions, _) = pushgate_push::sigv4::sign(
            &identity,
            "us-east-1",
            std::time::SystemTime::now(),
            method.as_str(),
            &url,
            &[("host", host.as_str())],
            &body,
        )
        .unwrap();
        let mut request = self.http.request(method, &url).body(body);
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
        request
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let request = if path.contains("/@connections/") {
            self.management(method, path, body.to_string().into_bytes())
        } else {
            self.http
                .request(method, format!("{}{path}", self.base))
                .body(body.to_string())
        };
        let response = request
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A token from `POST /_pushgate/token`.
    pub async fn token(&self, sub: &str, grants: Value) -> String {
        let (status, answer) = self
            .call(
                reqwest::Method::POST,
                "/_pushgate/token",
                json!({"sub": sub, "grants": grants}),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        answer["token"].as_str().unwrap().to_owned()
    }

    /// Replaces the faults in force.
    pub async fn set_faults(&self, faults: Value) -> Value {
        let (status, answer) = self
            .call(reqwest::Method::PUT, "/_pushgate/faults", faults)
            .await;
        assert_eq!(status, 200, "{answer}");
        answer
    }

    /// Waits until the queue holds nothing, visible or in flight.
    pub async fn wait_queue_drained(&self) -> Value {
        self.wait_status("the queue to drain", |s| {
            s["queue"]["visible"] == 0 && s["queue"]["inFlight"] == 0
        })
        .await
    }

    /// Opens a connection offering `protocols` in `Sec-WebSocket-Protocol`.
    pub async fn connect_offering(
        &self,
        protocols: &str,
    ) -> Result<
        (
            Ws,
            tokio_tungstenite::tungstenite::handshake::client::Response,
        ),
        tokio_tungstenite::tungstenite::Error,
    > {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = self.ws_url.as_str().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
        tokio_tungstenite::connect_async(request).await
    }
}

/// The HTTP status of a refused handshake.
pub fn refused_status<T: std::fmt::Debug>(
    result: Result<T, tokio_tungstenite::tungstenite::Error>,
) -> u16 {
    match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        other => panic!("the handshake must be refused, got {other:?}"),
    }
}

/// `settings` with redeliveries after a second: the visibility timeout and,
/// as Lambda requires it to be no longer, the notifier's timeout.
#[allow(dead_code)]
pub fn quick_retries(mut settings: pushgate_local::Settings) -> pushgate_local::Settings {
    settings.queue.visibility_timeout = Duration::from_millis(1000);
    settings.timeouts.notifier = Duration::from_millis(1000);
    settings
}
