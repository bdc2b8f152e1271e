//! Start-up, size and memory per Lambda function.
//!
//! Each of the seven release binaries (`connect`, `subscribe`,
//! `unsubscribe`, `publish`, `disconnect`, `default`, `notifier`) is started
//! as a child process against a minimal stand-in for the Lambda Runtime API
//! that this module serves on 127.0.0.1, with DynamoDB pointed at a moto
//! server (started by [`pushgate_testkit::Moto`]) and the API Gateway
//! Management API pointed back at the stand-in, which answers every
//! `@connections` call with 200. Per run it measures:
//!
//! - **init**: process start until the function's first
//!   `GET /2018-06-01/runtime/invocation/next`, and the peak resident set
//!   (`VmHWM` from `/proc/PID/status`) at that moment;
//! - **invoke**: from handing it one sample event from `events/` until its
//!   `POST …/response` (or `…/error`), and `VmHWM` after.
//!
//! The binaries are not built here: build them first with
//! `cargo build --release -p pushgate-functions --bins`. They are looked up
//! beside the bench's own executable (the same `target/release`), or in
//! `PUSHGATE_BIN_DIR`. The figures are local x86_64 process figures, not
//! Lambda's `INIT_DURATION` on arm64.
//!
//! Usage: `pushgate-bench startup [--runs N]` (default 10).

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pushgate_domain::auth::{Grant, Role, Scope};
use pushgate_domain::record::{ConnectionRecord, SubscriptionRecord};
use pushgate_domain::{ConnectionId, EntityId};
use pushgate_store::{ConnectionStore, DynamoDbStore};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

type BoxError = Box<dyn Error + Send + Sync>;

/// The functions, in the order they run, with the sample event each gets.
const FUNCTIONS: [(&str, &str); 7] = [
    ("connect", "connect.json"),
    ("subscribe", "subscribe.json"),
    ("unsubscribe", "unsubscribe.json"),
    ("publish", "publish.json"),
    ("disconnect", "disconnect.json"),
    ("default", "default.json"),
    ("notifier", "notifier.json"),
];

/// The connection id and entity the sample events use.
const CONNECTION: &str = "Vq2FSfPqIAMCJ1g=";
const ENTITY: &str = "artist:ed-sheeran";
const TABLE: &str = "pushgate-startup";
/// How long one run may take before it is abandoned.
const RUN_DEADLINE: Duration = Duration::from_secs(30);

/// What the Runtime API stand-in saw.
enum Call {
    /// `GET …/invocation/next`; the driver answers with the event to hand
    /// out, or `None` to hold the request until the process is killed.
    Next {
        at: Instant,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    /// `POST …/response`, `…/error` or `…/init/error`.
    Done {
        at: Instant,
        outcome: Outcome,
        body: Vec<u8>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Response,
    Error,
    InitError,
}

/// One run of one function.
struct Sample {
    init: Duration,
    hwm_init_kb: u64,
    invoke: Duration,
    hwm_after_kb: u64,
    outcome: Outcome,
    body: String,
}

/// One HTTP/1.1 request as the stand-in reads it.
struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

async fn read_request(reader: &mut BufReader<TcpStream>) -> Result<Option<Request>, BoxError> {
    let mut line = String::new();
    if reader.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut length = 0usize;
    let mut chunked = false;
    for _ in 0..200 {
        let mut header = String::new();
        if reader.read_line(&mut header).await? == 0 {
            return Ok(None);
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "content-length" {
                length = value.parse()?;
            } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).await?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).await?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(length, 0);
        reader.read_exact(&mut body).await?;
    }
    Ok(Some(Request { method, path, body }))
}

async fn respond(
    reader: &mut BufReader<TcpStream>,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Result<(), BoxError> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\ncontent-type: application/json\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let stream = reader.get_mut();
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    Ok(())
}

/// Serves one keep-alive connection of the Runtime API stand-in (and of the
/// Management API stand-in, which shares its port).
async fn serve(stream: TcpStream, calls: mpsc::Sender<Call>) -> Result<(), BoxError> {
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader).await? {
        let at = Instant::now();
        if req.path.contains("/@connections/") {
            respond(&mut reader, "200 OK", &[], b"{}").await?;
        } else if req.method == "GET" && req.path.ends_with("/runtime/invocation/next") {
            let (tx, rx) = oneshot::channel();
            calls.send(Call::Next { at, reply: tx }).await?;
            let Ok(Some(event)) = rx.await else {
                // Hold the request: the process is about to be killed.
                std::future::pending::<()>().await;
                return Ok(());
            };
            let deadline = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() + 30_000;
            let headers = [
                (
                    "lambda-runtime-aws-request-id",
                    "bench-request-1".to_owned(),
                ),
                ("lambda-runtime-deadline-ms", deadline.to_string()),
                (
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:us-east-1:123456789012:function:pushgate-bench".to_owned(),
                ),
                (
                    "lambda-runtime-trace-id",
                    "Root=1-6b02bd20-3d8a4f1c9b2e7a6f5c4d3b2a;Parent=53995c3f42cd8ad8;Sampled=0"
                        .to_owned(),
                ),
            ];
            respond(&mut reader, "200 OK", &headers, &event).await?;
        } else if req.method == "POST" {
            let outcome = if req.path.ends_with("/response") {
                Some(Outcome::Response)
            } else if req.path.ends_with("/init/error") {
                Some(Outcome::InitError)
            } else if req.path.ends_with("/error") {
                Some(Outcome::Error)
            } else {
                None
            };
            match outcome {
                Some(outcome) => {
                    respond(&mut reader, "202 Accepted", &[], b"{\"status\":\"OK\"}").await?;
                    calls
                        .send(Call::Done {
                            at,
                            outcome,
                            body: req.body,
                        })
                        .await?;
                }
                None => respond(&mut reader, "404 Not Found", &[], b"{}").await?,
            }
        } else {
            respond(&mut reader, "404 Not Found", &[], b"{}").await?;
        }
    }
    Ok(())
}

/// Peak resident set size of `pid` in kB (`VmHWM`).
fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Where the function binaries are.
fn bin_dir() -> Result<PathBuf, Box<dyn Error>> {
    if let Ok(dir) = std::env::var("PUSHGATE_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe()?;
    Ok(exe
        .parent()
        .ok_or("the bench's executable has no directory")?
        .to_path_buf())
}

/// The workspace's `events/` directory.
fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events")
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Puts the connection and subscription the sample events refer to, so
/// every handler does its real work (the subscribe transaction finds its
/// connection, publish and the notifier fan out to one subscriber).
async fn seed(store: &DynamoDbStore) -> Result<(), BoxError> {
    let now = now_secs();
    let connection_id = ConnectionId::new(CONNECTION)?;
    store
        .put_connection(&ConnectionRecord {
            connection_id: connection_id.clone(),
            user_id: None,
            source_ip: None,
            user_agent: None,
            connected_at_ms: now * 1000,
            expires_at: now + 7200,
            scope: Some(Scope {
                grants: vec![Grant {
                    role: Role::SubscribePublish,
                    entity: "*".into(),
                }],
                expires_at: now + 3600,
            }),
        })
        .await?;
    store
        .subscribe(
            &SubscriptionRecord {
                connection_id,
                entity_id: EntityId::new(ENTITY)?,
                subscribed_at_ms: now * 1000,
                expires_at: now + 7200,
            },
            now,
            100,
        )
        .await?;
    Ok(())
}

/// Starts `bin` once, hands it `event`, and measures.
async fn one_run(
    name: &str,
    bin: &Path,
    event: &[u8],
    moto: &str,
    log: &Path,
) -> Result<Sample, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let (tx, mut rx) = mpsc::channel(16);
    let server = tokio::spawn(async move {
        let mut handlers = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            handlers.spawn(serve(stream, tx.clone()));
        }
    });
    let log_file = std::fs::File::create(log)?;
    let mut command = tokio::process::Command::new(bin);
    command
        .env_clear()
        .envs([
            ("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}")),
            ("AWS_LAMBDA_FUNCTION_NAME", format!("pushgate-{name}")),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".into()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/pushgate-{name}"),
            ),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_ENDPOINT_URL_DYNAMODB", moto.to_owned()),
            ("TABLE_NAME", TABLE.into()),
            ("AUTH_MODE", "anonymous".into()),
            (
                "MANAGEMENT_API_ENDPOINT",
                format!("http://127.0.0.1:{port}/local"),
            ),
            ("RUST_LOG", "warn".into()),
        ])
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = command.spawn()?;
    let pid = child.id().ok_or("the child has no pid")?;
    let result = async {
        let deadline = tokio::time::sleep(RUN_DEADLINE);
        tokio::pin!(deadline);
        let mut first: Option<(Duration, u64, Instant)> = None;
        loop {
            tokio::select! {
                call = rx.recv() => match call.ok_or("the stand-in stopped")? {
                    Call::Next { at, reply } => {
                        let hwm = vm_hwm_kb(pid).unwrap_or(0);
                        if first.is_none() {
                            let _ = reply.send(Some(event.to_vec()));
                            first = Some((at - started, hwm, Instant::now()));
                        } else {
                            let _ = reply.send(None);
                        }
                    }
                    Call::Done { at, outcome, body } => {
                        let hwm_after_kb = vm_hwm_kb(pid).unwrap_or(0);
                        let body = String::from_utf8_lossy(&body).into_owned();
                        let Some((init, hwm_init_kb, handed)) = first else {
                            return Err(format!("{outcome:?} before the first event: {body}").into());
                        };
                        return Ok(Sample {
                            init,
                            hwm_init_kb,
                            invoke: at - handed,
                            hwm_after_kb,
                            outcome,
                            body,
                        });
                    }
                },
                status = child.wait() => {
                    return Err(format!("{name} exited early ({}); see {}", status?, log.display()).into());
                }
                () = &mut deadline => {
                    return Err(format!("{name} timed out; see {}", log.display()).into());
                }
            }
        }
    }
    .await;
    // Stop the child by its own handle (its pid), then the stand-in.
    let _ = child.kill().await;
    server.abort();
    result
}

/// The text after `key` in `body` up to the next `end`, if `key` occurs.
fn after<'a>(body: &'a str, key: &str, end: &[char]) -> Option<&'a str> {
    let rest = &body[body.find(key)? + key.len()..];
    Some(rest.split(end).next().unwrap_or(rest))
}

/// A short account of what the function answered: the status and the
/// reply frame's `type` for API Gateway responses, the number of failed
/// records for the notifier. (Substring look-ups: the bench has no JSON
/// parser among its dependencies.)
fn summary(sample: &Sample) -> String {
    let body = &sample.body;
    let detail = if let Some(status) = after(body, "\"statusCode\":", &[',', '}']) {
        match after(body, "\\\"type\\\":\\\"", &['\\']) {
            Some(kind) => format!("{status}, `{kind}`"),
            None => status.to_owned(),
        }
    } else if body.contains("\"batchItemFailures\"") {
        format!(
            "{} batchItemFailures",
            body.matches("\"itemIdentifier\"").count()
        )
    } else {
        body.chars().take(60).collect()
    };
    let outcome = format!("{:?}", sample.outcome).to_lowercase();
    format!("{outcome} ({detail})")
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn stat(samples: &[Sample], f: impl Fn(&Sample) -> f64) -> (f64, f64) {
    let mut values: Vec<f64> = samples.iter().map(f).collect();
    let max = values.iter().copied().fold(f64::NAN, f64::max);
    (median(&mut values), max)
}

/// Runs every function `--runs` times (default 10) and prints a Markdown
/// table.
pub async fn run(runs: usize) -> Result<(), Box<dyn Error>> {
    let dir = bin_dir()?;
    let mut missing = Vec::new();
    for (name, _) in FUNCTIONS {
        if !dir.join(name).is_file() {
            missing.push(name);
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "no {} in {}; build them first: cargo build --release -p pushgate-functions --bins",
            missing.join(", "),
            dir.display()
        )
        .into());
    }

    let moto = pushgate_testkit::Moto::try_start()?;
    let endpoint = moto.endpoint.clone();
    let store = Arc::new(DynamoDbStore::new(moto.dynamodb(), TABLE));
    store.create_table_if_missing().await?;

    let logs = std::env::temp_dir();
    println!(
        "binaries: {}; {runs} runs each; DynamoDB: moto at {endpoint}",
        dir.display()
    );
    println!();
    println!("| function | size (MiB) | init median / max (ms) | VmHWM at init median / max (MiB) | first invoke median / max (ms) | VmHWM after median / max (MiB) | outcome |");
    println!("|---|---|---|---|---|---|---|");
    let mib = |kb: u64| kb as f64 / 1024.0;
    for (name, event_file) in FUNCTIONS {
        let bin = dir.join(name);
        let size = std::fs::metadata(&bin)?.len();
        let event = std::fs::read(events_dir().join(event_file))?;
        let log = logs.join(format!("pushgate-bench-startup-{name}.log"));
        let mut samples = Vec::with_capacity(runs);
        for _ in 0..runs {
            seed(&store).await.map_err(|e| e.to_string())?;
            let sample = one_run(name, &bin, &event, &endpoint, &log)
                .await
                .map_err(|e| format!("{name}: {e}"))?;
            samples.push(sample);
        }
        let (init_med, init_max) = stat(&samples, |s| s.init.as_secs_f64() * 1e3);
        let (hi_med, hi_max) = stat(&samples, |s| mib(s.hwm_init_kb));
        let (inv_med, inv_max) = stat(&samples, |s| s.invoke.as_secs_f64() * 1e3);
        let (ha_med, ha_max) = stat(&samples, |s| mib(s.hwm_after_kb));
        let outcome = samples.last().map_or(String::new(), summary);
        println!(
            "| {name} | {:.2} | {init_med:.1} / {init_max:.1} | {hi_med:.1} / {hi_max:.1} | {inv_med:.1} / {inv_max:.1} | {ha_med:.1} / {ha_max:.1} | {outcome} |",
            size as f64 / (1024.0 * 1024.0)
        );
    }
    println!(
        "| *reference: Rust hello world on Lambda arm64 (published)* | | *≈ 15 (INIT_DURATION)* | *≈ 15 MB (Max Memory Used)* | | | |"
    );
    println!();
    println!(
        "Sizes are on disk (the release profile strips symbols). init is process start to the \
first GET /runtime/invocation/next; first invoke is from handing out one event from events/ to \
its POST …/response or …/error, including the first DynamoDB round trips to moto (a local Python \
server, slower than DynamoDB). These are local x86_64 process figures on this machine, not \
Lambda's INIT_DURATION on arm64 Firecracker."
    );
    Ok(())
}
