//! The client fleet: real WebSocket clients (tokio-tungstenite) in a child
//! process, so that the servers under test (the emulator, the raw baseline)
//! and the clients each get their own file-descriptor budget (this machine
//! allows 20,000 per process, and 10,000 clients plus 10,000 server sockets
//! would not fit in one).
//!
//! The parent runs `pushgate-bench clients` and drives it with one command
//! per line on stdin; the child answers one line per command on stdout:
//!
//! - `connect URL N ENTITIES PREFIX` → `ok CONNECTED MILLIS`: opens `N`
//!   clients; client `i` subscribes to `{PREFIX}{i % ENTITIES}` and waits for the
//!   `subscribed` reply (or for a reply the raw baseline sends in its place).
//! - `wait LO HI EXPECTED TIMEOUT_MS` → `stats COUNT P50 P99 MAX`: waits
//!   until the clients have received `EXPECTED` frames for sequence numbers
//!   `LO..HI` or the timeout passes; the figures are publish-to-receive
//!   latencies in microseconds.
//! - `close` → `ok`: drops every client.
//! - `quit`: exits.
//!
//! A frame's latency is its receive time minus the `"t"` (epoch
//! microseconds) the publisher put in it next to `"seq"`; both processes
//! read the same system clock.

use std::collections::BTreeMap;
use std::error::Error;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use std::io::{BufRead, Write};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

type BoxError = Box<dyn Error + Send + Sync>;

/// Handshakes in flight at once while connecting (the listeners' backlog
/// is 1024).
const CONNECT_PARALLELISM: usize = 256;

/// How long one client may take to connect and subscribe.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Microseconds since the epoch, from the system clock.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Latency figures for a set of deliveries, in microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    /// Frames received.
    pub count: u64,
    /// Median publish-to-receive latency.
    pub p50_us: i64,
    /// 99th percentile.
    pub p99_us: i64,
    /// The last delivery: publish to the last frame received.
    pub max_us: i64,
}

/// Received frames: `(seq, latency µs)`, and counts per `seq`.
#[derive(Default)]
struct Received {
    records: Vec<(u32, i64)>,
    counts: BTreeMap<u32, u64>,
}

type Shared = Arc<Mutex<Received>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Received> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// The number after `"key":` in `text`, found without parsing the JSON
/// (the same cheap scan for pushgate's frames and the baseline's).
fn number_after(text: &str, key: &str) -> Option<i64> {
    let start = text.find(key)? + key.len();
    let rest = &text[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Latency figures of `latencies_us` (µs), through an HDR histogram: three
/// significant digits (0.1 %) is finer than the run-to-run noise here, and
/// a histogram records 10,000 deliveries an event in constant memory
/// without sorting them. Negative latencies (clock steps between the two
/// processes) count as 0; the maximum is the exact one.
pub fn stats(latencies_us: impl IntoIterator<Item = i64>) -> Stats {
    // Auto-resizing, so no upper bound has to be guessed; 3 digits cannot
    // fail to construct.
    let Ok(mut histogram) = hdrhistogram::Histogram::<u64>::new(3) else {
        return Stats::default();
    };
    let mut max_us = 0;
    for latency in latencies_us {
        let latency = latency.max(0);
        max_us = max_us.max(latency);
        // Auto-resize makes recording infallible for any u64.
        let _ = histogram.record(latency.unsigned_abs());
    }
    let at = |q: f64| i64::try_from(histogram.value_at_quantile(q)).unwrap_or(i64::MAX);
    Stats {
        count: histogram.len(),
        p50_us: at(0.50).min(max_us),
        p99_us: at(0.99).min(max_us),
        max_us,
    }
}

async fn receive<S>(mut ws: S, shared: Shared)
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let at = now_us();
        let (Some(seq), Some(t)) = (
            number_after(&text, "\"seq\":"),
            number_after(&text, "\"t\":"),
        ) else {
            continue;
        };
        let seq = u32::try_from(seq).unwrap_or(u32::MAX);
        let mut received = lock(&shared);
        received.records.push((seq, at - t));
        *received.counts.entry(seq).or_default() += 1;
    }
}

/// The child's side: runs the fleet until `quit` or the end of stdin.
pub async fn child_main() -> Result<(), BoxError> {
    let shared: Shared = Arc::default();
    let mut clients: JoinSet<()> = JoinSet::new();
    // Commands come on stdin, read on a plain thread (blocking reads).
    let (commands, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if commands.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = lines.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        let reply = match words.as_slice() {
            ["connect", url, n, entities, prefix] => {
                let n: usize = n.parse()?;
                let entities: usize = entities.parse::<usize>()?.max(1);
                connect(&mut clients, url, n, entities, prefix, &shared).await
            }
            ["wait", lo, hi, expected, timeout_ms] => {
                let stats = wait(
                    &shared,
                    lo.parse()?,
                    hi.parse()?,
                    expected.parse()?,
                    Duration::from_millis(timeout_ms.parse()?),
                )
                .await;
                format!(
                    "stats {} {} {} {}",
                    stats.count, stats.p50_us, stats.p99_us, stats.max_us
                )
            }
            ["close"] => {
                clients.shutdown().await;
                *lock(&shared) = Received::default();
                "ok".to_owned()
            }
            ["quit"] => break,
            _ => format!("err unknown command {line:?}"),
        };
        let mut out = std::io::stdout().lock();
        out.write_all(format!("{reply}\n").as_bytes())?;
        out.flush()?;
    }
    clients.shutdown().await;
    Ok(())
}

async fn connect(
    clients: &mut JoinSet<()>,
    url: &str,
    n: usize,
    entities: usize,
    prefix: &str,
    shared: &Shared,
) -> String {
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(CONNECT_PARALLELISM));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<Result<(), String>>();
    for i in 0..n {
        let url = url.to_owned();
        let entity = format!("{prefix}{}", i % entities);
        let shared = Arc::clone(shared);
        let gate = Arc::clone(&gate);
        let ready = ready_tx.clone();
        clients.spawn(async move {
            let permit = gate.acquire_owned().await;
            let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
                let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                let subscribe = format!(r#"{{"action":"subscribe","entityId":"{entity}"}}"#);
                ws.send(Message::text(subscribe))
                    .await
                    .map_err(|e| e.to_string())?;
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(text))) if text.contains("subscribed") => {
                            return Ok(ws)
                        }
                        Some(Ok(Message::Text(text))) => return Err(format!("subscribe: {text}")),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(e.to_string()),
                        None => return Err("closed while subscribing".to_owned()),
                    }
                }
            })
            .await
            .unwrap_or_else(|_| Err("timed out".to_owned()));
            drop(permit);
            match connected {
                Ok(ws) => {
                    let _ = ready.send(Ok(()));
                    receive(ws, shared).await;
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                }
            }
        });
    }
    drop(ready_tx);
    let (mut ok, mut first_error) = (0usize, None);
    for _ in 0..n {
        match ready_rx.recv().await {
            Some(Ok(())) => ok += 1,
            Some(Err(e)) => {
                first_error.get_or_insert(e);
            }
            None => break,
        }
    }
    let millis = started.elapsed().as_millis();
    match first_error {
        None => format!("ok {ok} {millis}"),
        Some(e) => format!("partial {ok} {millis} {e}"),
    }
}

async fn wait(shared: &Shared, lo: u32, hi: u32, expected: u64, limit: Duration) -> Stats {
    let deadline = Instant::now() + limit;
    loop {
        let count: u64 = lock(shared).counts.range(lo..hi).map(|(_, c)| c).sum();
        if count >= expected || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let latencies: Vec<i64> = lock(shared)
        .records
        .iter()
        .filter(|(seq, _)| (lo..hi).contains(seq))
        .map(|(_, latency)| *latency)
        .collect();
    stats(latencies)
}

/// The parent's handle on a fleet child process.
pub struct Fleet {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Fleet {
    /// Starts a fleet process (this executable, `clients`).
    pub fn spawn() -> Result<Self, BoxError> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .arg("clients")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        Ok(Self {
            child,
            stdin,
            stdout,
        })
    }

    async fn ask(&mut self, command: &str) -> Result<String, BoxError> {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await?;
        self.stdin.flush().await?;
        Ok(self
            .stdout
            .next_line()
            .await?
            .ok_or("the client fleet exited")?)
    }

    /// Opens `n` clients on `url`, spread over the entities
    /// `{prefix}0 .. {prefix}{entities - 1}`; returns how long that took.
    /// Fails unless every client subscribed.
    pub async fn connect(
        &mut self,
        url: &str,
        n: usize,
        entities: usize,
        prefix: &str,
    ) -> Result<Duration, BoxError> {
        let reply = self
            .ask(&format!("connect {url} {n} {entities} {prefix}"))
            .await?;
        let words: Vec<&str> = reply.splitn(4, ' ').collect();
        match words.as_slice() {
            ["ok", _, millis] => Ok(Duration::from_millis(millis.parse()?)),
            _ => Err(format!("connecting {n} clients: {reply}").into()),
        }
    }

    /// Waits for `expected` frames with `seq` in `lo..hi`, at most `limit`.
    pub async fn wait(
        &mut self,
        lo: u32,
        hi: u32,
        expected: u64,
        limit: Duration,
    ) -> Result<Stats, BoxError> {
        let reply = self
            .ask(&format!("wait {lo} {hi} {expected} {}", limit.as_millis()))
            .await?;
        let words: Vec<&str> = reply.split(' ').collect();
        match words.as_slice() {
            ["stats", count, p50, p99, max] => Ok(Stats {
                count: count.parse()?,
                p50_us: p50.parse()?,
                p99_us: p99.parse()?,
                max_us: max.parse()?,
            }),
            _ => Err(format!("unexpected reply {reply:?}").into()),
        }
    }

    /// Closes every client.
    pub async fn close(&mut self) -> Result<(), BoxError> {
        self.ask("close").await?;
        Ok(())
    }

    /// Ends the fleet process.
    pub async fn quit(mut self) -> Result<(), BoxError> {
        let _ = self.stdin.write_all(b"quit\n").await;
        let _ = self.stdin.flush().await;
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => self.child.kill().await?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_numbers_without_parsing() {
        let frame = r#"{"type":"notification","data":{"seq":12,"t":1700000000000123,"text":"x"}}"#;
        assert_eq!(number_after(frame, "\"seq\":"), Some(12));
        assert_eq!(number_after(frame, "\"t\":"), Some(1_700_000_000_000_123));
        assert_eq!(number_after(frame, "\"nope\":"), None);
    }

    #[test]
    fn percentiles_from_the_histogram() {
        let s = stats(1..=100);
        assert_eq!((s.count, s.p50_us, s.p99_us, s.max_us), (100, 50, 99, 100));
        // Three significant digits: 12,345 µs is reported within 0.1 %.
        let s = stats([12_345; 10]);
        assert!((s.p50_us - 12_345).abs() <= 13, "{s:?}");
        assert_eq!(s.max_us, 12_345);
        assert_eq!(s.p99_us, 12_345, "never above the exact maximum");
        let s = stats([-5, 10]);
        assert_eq!((s.count, s.p50_us, s.max_us), (2, 0, 10));
        let s = stats(std::iter::empty());
        assert_eq!((s.count, s.p50_us, s.p99_us, s.max_us), (0, 0, 0, 0));
    }
}
