//! `cpu`: the CPU one push costs the process that makes it, for pushgate's
//! notifier pusher and for the AWS SDK for JavaScript v3's
//! `PostToConnectionCommand` (what AWS samples use), side by side.
//!
//! Every pusher runs in its own child process against one stub Management
//! API (another child process, `cpu-stub`: answers 200 to every POST, after
//! an optional delay), with the same number of pushes in flight. Each child
//! warms up (client set-up, first connections), then reads its own CPU time
//! (user + system, every thread) before and after the timed pushes: for the
//! Rust children `/proc/self/stat`, for node `process.cpuUsage()`. So the
//! figure is the pusher's CPU only: not the stub's, not the parent's, not
//! start-up.
//!
//! The Rust pushers run on a current_thread runtime, as the notifier's
//! Lambda does with one vCPU or less:
//!
//! - `sdk`: `pushgate_push::ManagementApiPusher`, what the notifier uses
//!   today (aws-sdk-apigatewaymanagement: orchestrator, interceptors,
//!   retries off, SigV4, hyper).
//! - `signed`: [`SignedHyperPusher`], a prototype: the same request signed
//!   with `aws-sigv4` and sent with a plain hyper client, no SDK.
//! - `unsigned`: the same without the signature, to show what signing costs.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use pushgate_push::{PushError, Pusher};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::BoxError;

/// `pushgate-bench cpu` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Timed pushes per pusher and run.
    #[arg(long, default_value_t = 10_000)]
    pub pushes: usize,
    /// Pushes in flight (the notifier's PUSH_CONCURRENCY).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Delay the stub Management API adds to every answer, ms.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Runs per pusher; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Bytes per push.
    #[arg(long, default_value_t = 200)]
    pub payload_bytes: usize,
    /// Skip the node (AWS SDK for JavaScript v3) pusher.
    #[arg(long)]
    pub no_node: bool,
}

/// The Rust pushers `cpu-push` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Impl {
    /// `pushgate_push::ManagementApiPusher` (aws-sdk-apigatewaymanagement).
    Sdk,
    /// [`SignedHyperPusher`]: aws-sigv4 + hyper, no SDK.
    Signed,
    /// [`SignedHyperPusher`] without the signature.
    Unsigned,
}

/// `cpu-push` flags (a child of `cpu`).
#[derive(Debug, Clone, clap::Args)]
pub struct PushArgs {
    /// The stage URL, `http://127.0.0.1:PORT/STAGE`.
    #[arg(long)]
    pub endpoint: String,
    /// Which pusher.
    #[arg(long, value_enum)]
    pub pusher: Impl,
    /// Timed pushes.
    #[arg(long, default_value_t = 10_000)]
    pub pushes: usize,
    /// Untimed pushes first.
    #[arg(long, default_value_t = 500)]
    pub warmup: usize,
    /// Pushes in flight.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Bytes per push.
    #[arg(long, default_value_t = 200)]
    pub payload_bytes: usize,
}

/// The Linux clock tick of `/proc/*/stat` times (USER_HZ: 100 on every
/// architecture Linux runs on, whatever the kernel's HZ).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time of this process so far (user + system, all threads), µs, from
/// `/proc/self/stat` (fields 14 and 15, counted after the `)` that ends the
/// command name, which may itself hold spaces). 10 ms resolution, so the
/// timed part should take a second of CPU or more.
pub fn self_cpu_us() -> Result<f64, BoxError> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    cpu_us_from_stat(&stat).ok_or_else(|| "unreadable /proc/self/stat".into())
}

fn cpu_us_from_stat(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ")": state is field 3, so utime (14) is index 11 here.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND * 1e6)
}

/// What a pusher child reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct Measured {
    /// Timed pushes.
    pub pushes: f64,
    /// CPU over the timed pushes, µs.
    pub cpu_us: f64,
    /// Wall time of the timed pushes, ms.
    pub wall_ms: f64,
    /// Pushes that did not get a 200.
    pub failures: f64,
}

impl Measured {
    fn from_json(line: &str) -> Result<Self, BoxError> {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let f = |k: &str| v[k].as_f64().ok_or_else(|| format!("no {k} in {line}"));
        Ok(Self {
            pushes: f("pushes")?,
            cpu_us: f("cpu_us")?,
            wall_ms: f("wall_ms")?,
            failures: f("failures")?,
        })
    }

    /// CPU per push, µs.
    pub fn per_push_us(&self) -> f64 {
        self.cpu_us / self.pushes.max(1.0)
    }
}

/// [`Pusher`] on a plain hyper client, each request signed with `aws-sigv4`
/// for `execute-api`, as the SDK signs it: the prototype of a leaner
/// notifier adapter. It builds one request per push and nothing else: no
/// orchestrator, no interceptors, no retry or timeout layers (the notifier
/// has its own retries; a production version would add a per-request
/// timeout with `tokio::time::timeout`).
pub struct SignedHyperPusher {
    client: Client<HttpConnector, Full<Bytes>>,
    /// `http://host:port/stage/@connections/`.
    base: String,
    /// `None`: unsigned (the measurement of what signing costs).
    identity: Option<aws_smithy_runtime_api::client::identity::Identity>,
    region: String,
}

impl SignedHyperPusher {
    /// A pusher for the stage at `endpoint` (`http://host:port/stage`).
    pub fn new(endpoint: &str, credentials: Option<aws_credential_types::Credentials>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            base: format!("{}/@connections/", endpoint.trim_end_matches('/')),
            identity: credentials.map(Into::into),
            region: "us-east-1".into(),
        }
    }

    fn request(
        &self,
        connection_id: &str,
        payload: &[u8],
    ) -> Result<hyper::Request<Full<Bytes>>, BoxError> {
        let uri = format!("{}{}", self.base, encode_path_segment(connection_id));
        let mut request = hyper::Request::post(&uri)
            .header("content-type", "application/octet-stream")
            .body(Full::new(Bytes::copy_from_slice(payload)))?;
        if let Some(identity) = &self.identity {
            use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
            let params = aws_sigv4::sign::v4::SigningParams::builder()
                .identity(identity)
                .region(&self.region)
                .name("execute-api")
                .time(SystemTime::now())
                .settings(SigningSettings::default())
                .build()?
                .into();
            let host = request
                .uri()
                .authority()
                .map(|a| a.as_str().to_owned())
                .unwrap_or_default();
            let headers = [
                ("host", host.as_str()),
                ("content-type", "application/octet-stream"),
            ];
            let signable = SignableRequest::new(
                "POST",
                &uri,
                headers.into_iter(),
                SignableBody::Bytes(payload),
            )?;
            let (instructions, _signature) = sign(signable, &params)?.into_parts();
            instructions.apply_to_request_http1x(&mut request);
        }
        Ok(request)
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters:
/// connection ids end in `=`.
fn encode_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len() + 6);
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[async_trait]
impl Pusher for SignedHyperPusher {
    async fn post(&self, connection_id: &str, payload: &[u8]) -> Result<(), PushError> {
        let failed = |source: BoxError| PushError::Failed {
            status: None,
            source,
        };
        let request = self.request(connection_id, payload).map_err(failed)?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| failed(Box::new(e)))?;
        let status = response.status().as_u16();
        // Read the body to the end so the connection goes back to the pool.
        let _ = response.into_body().collect().await;
        if status == 200 {
            Ok(())
        } else {
            Err(PushError::from_status(
                status,
                format!("status {status}").into(),
            ))
        }
    }
}

/// Dummy credentials: the stub does not check signatures, but the signing
/// work is the same.
fn credentials() -> aws_credential_types::Credentials {
    aws_credential_types::Credentials::new("AKIDBENCH", "bench-secret", None, None, "bench")
}

async fn pusher(args: &PushArgs) -> Arc<dyn Pusher> {
    match args.pusher {
        Impl::Sdk => {
            let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("us-east-1"))
                .credentials_provider(credentials())
                .load()
                .await;
            Arc::new(pushgate_push::ManagementApiPusher::new(
                &config,
                &args.endpoint,
            ))
        }
        Impl::Signed => Arc::new(SignedHyperPusher::new(&args.endpoint, Some(credentials()))),
        Impl::Unsigned => Arc::new(SignedHyperPusher::new(&args.endpoint, None)),
    }
}

/// `count` pushes, `concurrency` at a time, as the notifier streams them;
/// the failures.
async fn push_all(
    pusher: &dyn Pusher,
    ids: &[String],
    payload: &[u8],
    count: usize,
    concurrency: usize,
) -> usize {
    futures::stream::iter(0..count)
        .map(|i| pusher.post(&ids[i % ids.len()], payload))
        .buffer_unordered(concurrency.max(1))
        .filter(|r| futures::future::ready(r.is_err()))
        .count()
        .await
}

/// The `cpu-push` child: warm up, then time `pushes` and print one JSON
/// line. Runs on a current_thread runtime (see `main`).
pub async fn push_main(args: PushArgs) -> Result<(), BoxError> {
    let pusher = pusher(&args).await;
    // API Gateway connection ids: 16 characters ending in '='.
    let ids: Vec<String> = (0..10_000).map(|i| format!("Bench{i:010}A=")).collect();
    let payload = vec![b'x'; args.payload_bytes];
    let warm = push_all(&*pusher, &ids, &payload, args.warmup, args.concurrency).await;
    if warm == args.warmup && args.warmup > 0 {
        return Err("every warm-up push failed; is the stub running?".into());
    }
    let cpu0 = self_cpu_us()?;
    let t0 = Instant::now();
    let failures = push_all(&*pusher, &ids, &payload, args.pushes, args.concurrency).await;
    let wall_ms = t0.elapsed().as_secs_f64() * 1e3;
    let cpu_us = self_cpu_us()? - cpu0;
    println!(
        "{}",
        serde_json::json!({
            "pushes": args.pushes,
            "cpu_us": cpu_us,
            "wall_ms": wall_ms,
            "failures": failures,
        })
    );
    Ok(())
}

/// The `cpu-stub` child: a minimal Management API on 127.0.0.1:0 that
/// answers 200 to every POST (after `latency_ms`), prints its port, and
/// stops when its stdin closes.
pub async fn stub_main(latency_ms: u64) -> Result<(), BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?.port());
    let app = axum::Router::new().fallback(move |body: Bytes| async move {
        let _ = body;
        if latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(latency_ms)).await;
        }
        axum::http::StatusCode::OK
    });
    // tokio's stdin needs a feature the workspace does not enable; a
    // blocking read on the blocking pool does the same job here.
    let stopped = async {
        let _ = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        })
        .await;
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(stopped)
        .await?;
    Ok(())
}

async fn run_child(program: &str, args: &[String]) -> Result<Measured, BoxError> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await?;
    if !out.status.success() {
        return Err(format!("{program} {} failed: {}", args.join(" "), out.status).into());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rfind(|l| l.starts_with('{'))
        .ok_or_else(|| format!("no result from {program}: {stdout}"))?;
    Measured::from_json(line)
}

fn js_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// Runs every pusher `runs` times against one stub and prints a table.
pub async fn run(args: Args) -> Result<(), BoxError> {
    let exe = std::env::current_exe()?.display().to_string();
    let mut stub = tokio::process::Command::new(&exe)
        .args(["cpu-stub", "--latency-ms", &args.latency_ms.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut port = String::new();
    if let Some(stdout) = stub.stdout.take() {
        BufReader::new(stdout).read_line(&mut port).await?;
    }
    let endpoint = format!("http://127.0.0.1:{}/local", port.trim());
    eprintln!("cpu: stub Management API at {endpoint}");

    let mut pushers: Vec<(String, String, Vec<String>)> = [
        (
            Impl::Sdk,
            "pushgate ManagementApiPusher (aws-sdk-apigatewaymanagement)",
        ),
        (
            Impl::Signed,
            "prototype: aws-sigv4 + hyper (SignedHyperPusher)",
        ),
        (Impl::Unsigned, "prototype, unsigned (what signing costs)"),
    ]
    .into_iter()
    .map(|(which, label)| {
        let name = format!("{which:?}").to_lowercase();
        (
            label.to_owned(),
            exe.clone(),
            vec![
                "cpu-push".into(),
                "--endpoint".into(),
                endpoint.clone(),
                "--pusher".into(),
                name,
                "--pushes".into(),
                args.pushes.to_string(),
                "--concurrency".into(),
                args.concurrency.to_string(),
                "--payload-bytes".into(),
                args.payload_bytes.to_string(),
            ],
        )
    })
    .collect();
    let node_ready = js_dir()
        .join("node_modules/@aws-sdk/client-apigatewaymanagementapi")
        .is_dir();
    if !args.no_node && node_ready {
        pushers.push((
            "AWS SDK for JavaScript v3, PostToConnectionCommand (node)".into(),
            "node".into(),
            vec![
                js_dir().join("push.mjs").display().to_string(),
                "--endpoint".into(),
                endpoint.clone(),
                "--pushes".into(),
                args.pushes.to_string(),
                "--concurrency".into(),
                args.concurrency.to_string(),
                "--payload".into(),
                "x".repeat(args.payload_bytes),
            ],
        ));
    } else if !args.no_node {
        eprintln!(
            "cpu: skipping node: run `npm install` in {} first",
            js_dir().display()
        );
    }

    // Interleaved (run 1 of every pusher, then run 2, …) so that a burst
    // of load from elsewhere on the machine spreads over all of them.
    let mut results: BTreeMap<usize, Vec<Measured>> = BTreeMap::new();
    for run in 1..=args.runs.max(1) {
        for (i, (label, program, child_args)) in pushers.iter().enumerate() {
            let m = run_child(program, child_args).await?;
            eprintln!(
                "cpu: run {run}: {label}: {:.1} µs CPU per push, {:.0} ms, {} failures",
                m.per_push_us(),
                m.wall_ms,
                m.failures
            );
            results.entry(i).or_default().push(m);
        }
    }
    drop(stub.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(5), stub.wait()).await;

    println!(
        "## CPU per push\n\n{} pushes per run, {} in flight, {} B each, stub Management API \
         answering after {} ms; median of {} runs; CPU = user + system of the pusher's own \
         process over the timed pushes (after {} warm-up pushes).\n",
        args.pushes,
        args.concurrency,
        args.payload_bytes,
        args.latency_ms,
        args.runs.max(1),
        500
    );
    println!(
        "| pusher | CPU per push (median) | min–max | wall time (median) | pushes/s | failures |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (i, (label, _, _)) in pushers.iter().enumerate() {
        let runs = results.get(&i).map(Vec::as_slice).unwrap_or_default();
        let mut per_push: Vec<f64> = runs.iter().map(Measured::per_push_us).collect();
        let mut wall: Vec<f64> = runs.iter().map(|m| m.wall_ms).collect();
        let (lo, hi) = per_push
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let failures: f64 = runs.iter().map(|m| m.failures).sum();
        let wall_ms = crate::fanout::median(&mut wall);
        println!(
            "| {label} | {:.1} µs | {lo:.1}–{hi:.1} µs | {wall_ms:.0} ms | {:.0} | {failures} |",
            crate::fanout::median(&mut per_push),
            args.pushes as f64 / (wall_ms / 1e3).max(1e-9),
        );
    }
    println!();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_time_from_proc_stat() {
        // A command name with spaces and a ')' of its own.
        let stat = "1234 (my (odd) prog) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 1000 10";
        assert_eq!(cpu_us_from_stat(stat), Some(3_000_000.0));
        assert!(self_cpu_us().is_ok_and(|us| us >= 0.0));
    }

    #[test]
    fn connection_ids_are_percent_encoded() {
        assert_eq!(encode_path_segment("abcDEF12-_.~"), "abcDEF12-_.~");
        assert_eq!(
            encode_path_segment("L0SM9cOFvHcCIhw="),
            "L0SM9cOFvHcCIhw%3D"
        );
    }

    #[test]
    fn signed_requests_carry_a_sigv4_authorization() {
        let pusher = SignedHyperPusher::new("http://127.0.0.1:1/local", Some(credentials()));
        let request = pusher.request("abc=", b"hello").expect("a request");
        assert_eq!(
            request.uri().to_string(),
            "http://127.0.0.1:1/local/@connections/abc%3D"
        );
        let auth = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDBENCH/"),
            "{auth}"
        );
        assert!(
            auth.contains("/us-east-1/execute-api/aws4_request"),
            "{auth}"
        );
        assert!(request.headers().contains_key("x-amz-date"));
        let unsigned = SignedHyperPusher::new("http://127.0.0.1:1/local", None);
        assert!(!unsigned
            .request("abc=", b"hello")
            .expect("a request")
            .headers()
            .contains_key("authorization"));
    }

    #[test]
    fn parses_a_child_result() {
        let m = Measured::from_json(
            r#"{"pushes":10000,"cpu_us":500000.0,"wall_ms":800.0,"failures":0}"#,
        )
        .expect("valid");
        assert_eq!(m.per_push_us(), 50.0);
    }
}
