//! `pushgate-bench scale`: one entity with 100,000 and 1,000,000
//! subscribers, at API Gateway's default account throttle, with a network
//! round trip on every PostToConnection.
//!
//! A million sockets do not fit in one process here (20,000 open files), so
//! the subscribers are the emulator's virtual connections: real connection
//! and subscription records in its store, whose pushes are counted instead
//! of written to a socket. Everything else is what runs in AWS: the event
//! goes through PutEvents, the queue and the notifier invocations (several
//! at once, each with its deadline), which split the fan-out into
//! connection-id ranges handed on through the queue, and back off
//! (AIMD) when PostToConnection answers 429 from the token bucket that
//! stands in for the account throttle.
//!
//! Printed per size: time from PutEvents to the last subscriber's first
//! delivery, PostToConnection calls per delivery (429s and duplicates
//! included), 429s, notifier invocations, subscribers that got nothing, and
//! the ratio to the throttle-bound limit (subscribers ÷ rate: no fan-out
//! can be faster than that).

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::process::Command;

use crate::hold::{emulator_binary, printed_url};

/// Boxed error of the bench.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Flags of `scale`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Subscriber counts, one run each.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    subscribers: Vec<usize>,
    /// Round trip added to every PostToConnection, ms.
    #[arg(long, default_value_t = 10)]
    rtt_ms: u64,
    /// The account's PostToConnection rate, per second (API Gateway's
    /// default: 10,000).
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// The token bucket's burst.
    #[arg(long, default_value_t = 5_000)]
    burst: u64,
    /// FANOUT_RANGES.
    #[arg(long, default_value_t = 8)]
    ranges: usize,
    /// Longest wait for the last delivery, seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
}

/// One run's figures.
#[derive(Debug, Clone)]
pub struct ScaleRow {
    subscribers: usize,
    seconds: f64,
    calls: u64,
    throttled: u64,
    invocations: u64,
    missed: u64,
    duplicates: u64,
    dlq: u64,
    rate: u64,
}

impl ScaleRow {
    fn markdown(&self) -> String {
        let bound = self.subscribers as f64 / self.rate as f64;
        format!(
            "| {} | {:.1} s | {:.3} | {} | {} | {} | {} | {} | {:.1} s | {:.2}× |",
            self.subscribers,
            self.seconds,
            self.calls as f64 / self.subscribers as f64,
            self.throttled,
            self.invocations,
            self.missed,
            self.duplicates,
            self.dlq,
            bound,
            self.seconds / bound,
        )
    }
}

async fn get(http: &reqwest::Client, url: String) -> Result<Value, BoxError> {
    Ok(http.get(url).send().await?.json().await?)
}

async fn run_one(args: &Args, n: usize) -> Result<ScaleRow, BoxError> {
    let mut emulator = Command::new(emulator_binary()?)
        .args(["--port", "0"])
        .args(["--fault-post-latency-ms", &args.rtt_ms.to_string()])
        .args(["--post-rate", &args.rate.to_string()])
        .args(["--post-burst", &args.burst.to_string()])
        .args(["--fanout-ranges", &args.ranges.to_string()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let (base, drain) = printed_url(&mut emulator, "PutEvents endpoint").await?;
    let http = reqwest::Client::new();

    let registered = Instant::now();
    let answer: Value = http
        .post(format!("{base}/_pushgate/virtual"))
        .json(&json!({"entityId": "hot", "count": n}))
        .send()
        .await?
        .json()
        .await?;
    eprintln!(
        "  {n} virtual subscribers registered in {:.1} s ({answer})",
        registered.elapsed().as_secs_f64()
    );

    let detail = json!({"entityId": "hot", "message": {"scale": n}}).to_string();
    let started = Instant::now();
    let put: Value = http
        .post(&base)
        .header("X-Amz-Target", "AWSEvents.PutEvents")
        .header("Content-Type", "application/x-amz-json-1.1")
        .body(
            json!({"Entries": [{"Source": "pushgate", "DetailType": "Entity Updated", "Detail": detail}]})
                .to_string(),
        )
        .send()
        .await?
        .json()
        .await?;
    if put["FailedEntryCount"] != 0 {
        return Err(format!("PutEvents failed: {put}").into());
    }
    let deadline = started + Duration::from_secs(args.timeout_secs);
    let mut last_progress = (0u64, Instant::now());
    let seconds = loop {
        let summary = get(&http, format!("{base}/_pushgate/virtual")).await?;
        let min = summary["minPerConnection"].as_u64().unwrap_or(0);
        let delivered = summary["deliveries"].as_u64().unwrap_or(0);
        if min >= 1 {
            break started.elapsed().as_secs_f64();
        }
        if delivered != last_progress.0 {
            last_progress = (delivered, Instant::now());
        }
        if Instant::now() > deadline {
            return Err(
                format!("{delivered} of {n} delivered after {}s", args.timeout_secs).into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Let the queue settle (tasks still running finish, nothing is left).
    let status = loop {
        let status = get(&http, format!("{base}/_pushgate/status")).await?;
        let q = &status["queue"];
        if q["visible"] == 0 && q["inFlight"] == 0 && q["delayed"] == 0 {
            break status;
        }
        if Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let summary = get(&http, format!("{base}/_pushgate/virtual")).await?;
    let deliveries = summary["deliveries"].as_u64().unwrap_or(0);
    let connections = summary["connections"].as_u64().unwrap_or(0);
    let row = ScaleRow {
        subscribers: n,
        seconds,
        calls: status["postToConnection"]["calls"].as_u64().unwrap_or(0),
        throttled: status["postToConnection"]["throttled"]
            .as_u64()
            .unwrap_or(0),
        invocations: status["queue"]["invocations"].as_u64().unwrap_or(0),
        missed: connections.saturating_sub(if summary["minPerConnection"].as_u64() >= Some(1) {
            connections
        } else {
            0
        }),
        duplicates: deliveries.saturating_sub(connections),
        dlq: status["dlq"].as_u64().unwrap_or(0),
        rate: args.rate,
    };
    drain.abort();
    emulator.kill().await.ok();
    Ok(row)
}

/// Runs every size and prints the table.
pub async fn run(args: Args) -> Result<(), BoxError> {
    println!(
        "## Hot entity: virtual subscribers at the account throttle\n\n\
         One event to one entity; {} ms round trip per PostToConnection; \
         throttle {}/s (burst {}); FANOUT_RANGES {}; release pushgate-local \
         with the template's notifier settings (5 invocations at once, 30 s \
         timeout, batch 10).\n",
        args.rtt_ms, args.rate, args.burst, args.ranges
    );
    println!(
        "| subscribers | time to last delivery | PostToConnection calls per delivery | 429s | notifier invocations | got nothing | duplicates | DLQ | throttle-bound limit | ratio |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for &n in &args.subscribers {
        let row = run_one(&args, n).await?;
        println!("{}", row.markdown());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_is_to_subscribers_over_rate() {
        let row = ScaleRow {
            subscribers: 100_000,
            seconds: 12.0,
            calls: 110_000,
            throttled: 10_000,
            invocations: 9,
            missed: 0,
            duplicates: 0,
            dlq: 0,
            rate: 10_000,
        };
        let line = row.markdown();
        assert!(line.contains("| 12.0 s | 1.100 |"), "{line}");
        assert!(line.contains("| 10.0 s | 1.20× |"), "{line}");
    }
}
