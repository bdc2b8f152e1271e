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
//! Lambda does:
//!
//! - `http`: `pushgate_push::SignedHttpPusher`, the notifier's default: the
//!   request signed with `aws-sigv4` and sent on a plain hyper client.
//! - `sdk`: `pushgate_push::ManagementApiPusher` (`PUSH_CLIENT=sdk`):
//!   aws-sdk-apigatewaymanagement (orchestrator, interceptors, retries off,
//!   SigV4, hyper).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_credential_types::provider::SharedCredentialsProvider;
use axum::body::Bytes;
use futures::StreamExt;
use pushgate_push::{Pusher, SignedHttpPusher};
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

/// What `cpu-push` runs: the notifier's two `PUSH_CLIENT`s alone, or the
/// whole notifier handler with each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Impl {
    /// `pushgate_push::ManagementApiPusher` (aws-sdk-apigatewaymanagement,
    /// `PUSH_CLIENT=sdk`).
    Sdk,
    /// `pushgate_push::SignedHttpPusher` (aws-sigv4 + hyper, the default).
    Http,
    /// `notifier::handle` on one event whose entity has `pushes`
    /// subscribers (embedded store), pushing with `SignedHttpPusher`.
    NotifierHttp,
    /// The same with `ManagementApiPusher`.
    NotifierSdk,
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

/// Dummy credentials: the stub does not check signatures, but the signing
/// work is the same.
fn credentials() -> aws_credential_types::Credentials {
    aws_credential_types::Credentials::new("AKIDBENCH", "bench-secret", None, None, "bench")
}

async fn pusher(args: &PushArgs) -> Result<Arc<dyn Pusher>, BoxError> {
    Ok(match args.pusher {
        Impl::Sdk | Impl::NotifierSdk => {
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
        Impl::Http | Impl::NotifierHttp => Arc::new(SignedHttpPusher::with_credentials(
            &args.endpoint,
            "us-east-1",
            SharedCredentialsProvider::new(credentials()),
        )?),
    })
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
    let pusher = pusher(&args).await?;
    if matches!(args.pusher, Impl::NotifierHttp | Impl::NotifierSdk) {
        return notifier_main(&args, pusher).await;
    }
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
    print_result(args.pushes, cpu0, t0, failures)
}

/// Prints a child's one JSON line: the CPU and wall time since `cpu0` and
/// `t0`.
fn print_result(pushes: usize, cpu0: f64, t0: Instant, failures: usize) -> Result<(), BoxError> {
    let wall_ms = t0.elapsed().as_secs_f64() * 1e3;
    let cpu_us = self_cpu_us()? - cpu0;
    println!(
        "{}",
        serde_json::json!({
            "pushes": pushes,
            "cpu_us": cpu_us,
            "wall_ms": wall_ms,
            "failures": failures,
        })
    );
    Ok(())
}

/// One SQS record carrying an EventBridge `Entity Updated` event.
// aws_lambda_events' structs are #[non_exhaustive]: no struct literal
// outside their crate, so fields are set after `default()`.
#[allow(clippy::field_reassign_with_default)]
fn sqs_event(id: &str, entity: &str) -> aws_lambda_events::sqs::SqsEvent {
    let body = serde_json::json!({
        "version": "0", "id": id, "detail-type": "Entity Updated", "source": "pushgate",
        "account": "123456789012", "time": "2026-11-29T10:00:00Z", "region": "us-east-1",
        "resources": [], "detail": {"entityId": entity, "message": {"text": "x".repeat(150)}},
    });
    let mut record = aws_lambda_events::sqs::SqsMessage::default();
    record.message_id = Some(format!("m-{id}"));
    record.body = Some(body.to_string());
    record
        .attributes
        .insert("ApproximateReceiveCount".into(), "1".into());
    record.attributes.insert(
        "SentTimestamp".into(),
        pushgate_functions::Clock::system().now_ms().to_string(),
    );
    let mut event = aws_lambda_events::sqs::SqsEvent::default();
    event.records = vec![record];
    event
}

/// The whole notifier: `notifier::handle` on one event whose entity has
/// `pushes` subscribers in the embedded store (one invocation, no fan-out
/// split), after a warm-up event to `warmup` others. What it adds to the
/// pusher alone: reading subscribers page by page, the frame per stream,
/// the adaptive limit, progress, the per-push budget.
async fn notifier_main(args: &PushArgs, pusher: Arc<dyn Pusher>) -> Result<(), BoxError> {
    let mut config = pushgate_domain::Config::new("bench");
    config.push_concurrency = args.concurrency;
    config.fanout_ranges = 1;
    let deps = pushgate_functions::Deps::new(Arc::new(pushgate_store::MemoryStore::new()), config);
    // Subscribers as `$connect` and `subscribe` write them: the emulator's
    // virtual connections (only their records are used here).
    let subscribers = pushgate_local::virtual_conns::VirtualConnections::default();
    for (entity, count) in [("warm", args.warmup), ("bench", args.pushes)] {
        subscribers
            .add(&deps, &pushgate_domain::EntityId::new(entity)?, count)
            .await?;
    }
    let notifier = pushgate_functions::NotifierDeps::new(deps, pusher);
    let deadline = || tokio::time::Instant::now() + Duration::from_secs(900);
    let warm =
        pushgate_functions::notifier::handle(&notifier, sqs_event("warm", "warm"), deadline())
            .await;
    if !warm.batch_item_failures.is_empty() {
        return Err("the warm-up event failed; is the stub running?".into());
    }
    let cpu0 = self_cpu_us()?;
    let t0 = Instant::now();
    let response =
        pushgate_functions::notifier::handle(&notifier, sqs_event("bench", "bench"), deadline())
            .await;
    let failures = if response.batch_item_failures.is_empty() {
        0
    } else {
        args.pushes
    };
    print_result(args.pushes, cpu0, t0, failures)
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
            "pushgate ManagementApiPusher (aws-sdk-apigatewaymanagement), PUSH_CLIENT=sdk",
        ),
        (
            Impl::Http,
            "pushgate SignedHttpPusher (aws-sigv4 + hyper), the default",
        ),
        (
            Impl::NotifierHttp,
            "whole notifier handler (embedded store), SignedHttpPusher",
        ),
        (
            Impl::NotifierSdk,
            "whole notifier handler (embedded store), ManagementApiPusher",
        ),
    ]
    .into_iter()
    .map(|(which, label)| {
        let name = clap::ValueEnum::to_possible_value(&which)
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default();
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
    fn parses_a_child_result() {
        let m = Measured::from_json(
            r#"{"pushes":10000,"cpu_us":500000.0,"wall_ms":800.0,"failures":0}"#,
        )
        .expect("valid");
        assert_eq!(m.per_push_us(), 50.0);
    }
}
