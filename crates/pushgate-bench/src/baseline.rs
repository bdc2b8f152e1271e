//! The raw baseline: a minimal tokio-tungstenite server that answers each
//! client's `subscribe` with `subscribed` and then writes a frame's bytes
//! straight to every socket it holds — no store, no HTTP hop, no SDK. It is
//! what this machine can do for the same work, the floor pushgate is
//! measured against.
//!
//! A broadcast splits the sockets into one share per CPU and writes each
//! share from its own task, one frame per socket, flushed.

use std::error::Error;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type BoxError = Box<dyn Error + Send + Sync>;
type Sink = SplitSink<WebSocketStream<TcpStream>, Message>;

/// A running raw server.
pub struct Baseline {
    addr: SocketAddr,
    sinks: Arc<Mutex<Vec<Sink>>>,
    accept: JoinHandle<()>,
}

fn lock(sinks: &Mutex<Vec<Sink>>) -> std::sync::MutexGuard<'_, Vec<Sink>> {
    sinks.lock().unwrap_or_else(|e| e.into_inner())
}

async fn session(stream: TcpStream, sinks: Arc<Mutex<Vec<Sink>>>) -> Result<(), BoxError> {
    let ws = tokio_tungstenite::accept_async(stream).await?;
    let (mut sink, mut stream) = ws.split();
    // The first frame is the subscribe; answer as pushgate does.
    if let Some(Ok(Message::Text(text))) = stream.next().await {
        let entity = text
            .split("\"entityId\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .to_owned();
        let reply = format!(r#"{{"type":"subscribed","entityId":"{entity}"}}"#);
        sink.send(Message::text(reply)).await?;
        lock(&sinks).push(sink);
    }
    // Read on so closes and pings are handled.
    while let Some(Ok(_)) = stream.next().await {}
    Ok(())
}

impl Baseline {
    /// Starts a server on 127.0.0.1 on a free port.
    pub async fn start() -> Result<Self, BoxError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let sinks: Arc<Mutex<Vec<Sink>>> = Arc::default();
        let accepted = Arc::clone(&sinks);
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let sinks = Arc::clone(&accepted);
                tokio::spawn(async move {
                    let _ = session(stream, sinks).await;
                });
            }
        });
        Ok(Self {
            addr,
            sinks,
            accept,
        })
    }

    /// `ws://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// Writes `frame` to every subscribed socket; returns how many took it.
    pub async fn broadcast(&self, frame: &str) -> usize {
        let message = Message::text(frame.to_owned());
        let mut sinks = std::mem::take(&mut *lock(&self.sinks));
        let shares = std::thread::available_parallelism().map_or(1, usize::from);
        let per_share = sinks.len().div_ceil(shares).max(1);
        let mut tasks = Vec::new();
        while !sinks.is_empty() {
            let rest = sinks.split_off(per_share.min(sinks.len()));
            let mut share = std::mem::replace(&mut sinks, rest);
            let message = message.clone();
            tasks.push(tokio::spawn(async move {
                let mut sent = 0;
                for sink in &mut share {
                    if sink.send(message.clone()).await.is_ok() {
                        sent += 1;
                    }
                }
                (share, sent)
            }));
        }
        let mut total = 0;
        for task in tasks {
            if let Ok((share, sent)) = task.await {
                total += sent;
                lock(&self.sinks).extend(share);
            }
        }
        total
    }

    /// Closes every socket it holds.
    pub async fn disconnect_all(&self) {
        let sinks = std::mem::take(&mut *lock(&self.sinks));
        for mut sink in sinks {
            let _ = sink.close().await;
        }
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
