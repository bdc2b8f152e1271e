//! What a benchmark fans out through: pushgate (the local emulator, run in
//! this process, with the notifier pushing through the real
//! `aws-sdk-apigatewaymanagement` client over HTTP to the emulator's own
//! `@connections` endpoint) or the raw baseline.
//!
//! Every published message is `{"seq":N,"t":MICROS,"text":"…"}`, `t` read
//! from the system clock just before the publish starts: for pushgate,
//! before the PutEvents request; for the raw baseline, before the first
//! socket write.

use std::error::Error;
use std::time::Duration;

use pushgate_local::{Emulator, Settings};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::baseline::Baseline;
use crate::fleet::now_us;

type BoxError = Box<dyn Error + Send + Sync>;

/// The emulator, in this process.
pub struct Pushgate {
    ws_url: String,
    put_events_url: String,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    running: JoinHandle<()>,
}

/// The `data` every benchmark message carries.
pub fn message(seq: u32, t: i64) -> serde_json::Value {
    serde_json::json!({"seq": seq, "t": t, "text": "benchmark notification"})
}

impl Pushgate {
    /// Starts an emulator with `PUSH_CONCURRENCY` = `push_concurrency`,
    /// holding every PostToConnection `post_latency_ms` (0: none) before it
    /// is answered.
    ///
    /// The queue's batching window is 0 (the emulator's default is 50 ms,
    /// the template's 1 s): these figures are about fan-out, not about how
    /// long SQS gathers a batch.
    pub async fn start(push_concurrency: usize, post_latency_ms: u64) -> Result<Self, BoxError> {
        let mut settings = Settings::default();
        settings.functions.push_concurrency = push_concurrency;
        settings.faults.post_latency_ms = post_latency_ms;
        settings.queue.batch_window = Duration::ZERO;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let emulator = Emulator::new(settings, listener).await?;
        let ws_url = emulator.state().websocket_url();
        let put_events_url = emulator.state().base_url().to_owned();
        let (stop, stopped) = oneshot::channel::<()>();
        let running = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(e) = emulator.run(shutdown).await {
                eprintln!("the emulator stopped: {e}");
            }
        });
        Ok(Self {
            ws_url,
            put_events_url,
            http: reqwest::Client::new(),
            stop: Some(stop),
            running,
        })
    }

    /// Its WebSocket URL.
    pub fn ws_url(&self) -> &str {
        &self.ws_url
    }

    /// PutEvents for one event to `entity`; returns the publish time (µs).
    pub async fn publish(&self, entity: &str, seq: u32) -> Result<i64, BoxError> {
        let t = now_us();
        let detail = serde_json::json!({"entityId": entity, "message": message(seq, t)});
        let body = serde_json::json!({"Entries": [{
            "Source": "pushgate",
            "DetailType": "Entity Updated",
            "Detail": detail.to_string(),
        }]});
        let response = self
            .http
            .post(&self.put_events_url)
            .header("X-Amz-Target", "AWSEvents.PutEvents")
            .header("Content-Type", "application/x-amz-json-1.1")
            .body(body.to_string())
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() || !text.contains("\"FailedEntryCount\":0") {
            return Err(format!("PutEvents answered {status}: {text}").into());
        }
        Ok(t)
    }

    /// Stops the emulator (closing every connection).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.running).await;
    }
}

/// A pushgate emulator or the raw baseline.
pub enum Target {
    /// Through pushgate.
    Pushgate(Pushgate),
    /// Straight to the sockets.
    Raw(Baseline),
}

impl Target {
    /// Where clients connect.
    pub fn ws_url(&self) -> String {
        match self {
            Self::Pushgate(p) => p.ws_url().to_owned(),
            Self::Raw(b) => b.url(),
        }
    }

    /// Publishes message `seq` to `entity`'s subscribers; returns the
    /// publish time (µs).
    pub async fn publish(&self, entity: &str, seq: u32) -> Result<i64, BoxError> {
        match self {
            Self::Pushgate(p) => p.publish(entity, seq).await,
            Self::Raw(b) => {
                let t = now_us();
                // The same bytes, in the same order, as pushgate's frame.
                let frame = format!(
                    r#"{{"type":"notification","id":"00000000-0000-4000-8000-{seq:012}","entityId":"{entity}","time":"{time}","data":{data}}}"#,
                    time = pushgate_domain::event::rfc3339(t / 1_000_000),
                    data = message(seq, t),
                );
                b.broadcast(&frame).await;
                Ok(t)
            }
        }
    }

    /// Stops it.
    pub async fn stop(self) {
        match self {
            Self::Pushgate(p) => p.stop().await,
            Self::Raw(b) => b.disconnect_all().await,
        }
    }
}
