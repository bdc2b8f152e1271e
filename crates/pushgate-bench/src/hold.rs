//! How many WebSocket connections one emulator process holds, and its
//! memory per connection: the release `pushgate-local` binary runs as a
//! separate process (`--port 0`, logs at `warn`); client fleets open
//! connections to it in steps (each client also subscribes, to one of 100
//! entities, so a connection carries its store records too), and after each
//! step `VmRSS` from `/proc/PID/status` is read. Bytes per connection =
//! (RSS now − RSS at start) ÷ connections.
//!
//! The steps are 10,000, 20,000 and 30,000 connections, capped by the open
//! file limit (the soft `RLIMIT_NOFILE` the emulator inherits; `scripts/bench`
//! raises it to the hard limit) and by the ephemeral port range.

use std::error::Error;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::fleet::Fleet;

type BoxError = Box<dyn Error + Send + Sync>;

/// Connections per client fleet process.
const PER_FLEET: usize = 9_000;

/// Descriptors kept free in the emulator for its listener, stdio and
/// runtime.
const FD_MARGIN: usize = 100;

/// One step's figures.
#[derive(Debug, Clone)]
pub struct Step {
    /// Connections open.
    pub connections: usize,
    /// The emulator's resident set, bytes.
    pub rss: u64,
    /// (rss − rss at start) ÷ connections.
    pub bytes_per_connection: f64,
}

/// The run's figures.
#[derive(Debug, Clone)]
pub struct Hold {
    /// Resident set at start (no connections), bytes.
    pub rss_start: u64,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Why the run stopped where it did.
    pub limit: String,
}

/// `VmRSS` of process `pid`, bytes.
pub fn vm_rss(pid: u32) -> Result<u64, BoxError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS line")?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .ok_or("malformed VmRSS line")?
        .parse()?;
    Ok(kb * 1024)
}

/// The soft open-file limit of this process (inherited by its children).
pub fn nofile_soft() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn ephemeral_ports() -> Option<usize> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut parts = range.split_whitespace().map(|p| p.parse::<usize>());
    let (Some(Ok(lo)), Some(Ok(hi))) = (parts.next(), parts.next()) else {
        return None;
    };
    Some(hi.saturating_sub(lo) + 1)
}

/// Reads a started emulator's stdout up to the line with `label` (as
/// `pushgate-local: WebSocket URL        ws://…`) and returns the URL that
/// line ends with, and the task that keeps reading the rest so its stdout
/// never fills (abort it when done). 30 s at most.
pub(crate) async fn printed_url(
    emulator: &mut tokio::process::Child,
    label: &str,
) -> Result<(String, tokio::task::JoinHandle<()>), BoxError> {
    let mut lines = BufReader::new(emulator.stdout.take().ok_or("no stdout")?).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if line.contains(label) {
                if let Some(url) = line.split_whitespace().last() {
                    return Ok::<_, BoxError>(url.to_owned());
                }
            }
        }
        Err(format!("the emulator printed no {label}").into())
    })
    .await
    .map_err(|_| "the emulator did not start within 30 s")??;
    let drain = tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((url, drain))
}

pub(crate) fn emulator_binary() -> Result<PathBuf, BoxError> {
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .ok_or("no directory for the bench executable")?
        .join("pushgate-local");
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing; build it with `cargo build --release -p pushgate-bench -p pushgate-local`",
            path.display()
        )
        .into())
    }
}

/// Runs the hold measurement against a fresh `pushgate-local` process.
pub async fn run(wanted: &[usize]) -> Result<Hold, BoxError> {
    let fd_cap = nofile_soft().map_or(usize::MAX, |n| n.saturating_sub(FD_MARGIN));
    let port_cap = ephemeral_ports().map_or(usize::MAX, |n| n.saturating_sub(1_000));
    let cap = fd_cap.min(port_cap);
    let limit = if fd_cap <= port_cap {
        format!(
            "the open-file limit ({} per process here; the emulator needs one descriptor per connection)",
            nofile_soft().unwrap_or(0)
        )
    } else {
        "the ephemeral port range (all clients share 127.0.0.1)".to_owned()
    };
    let mut targets: Vec<usize> = wanted.iter().map(|&n| n.min(cap)).collect();
    targets.dedup();

    let mut emulator = Command::new(emulator_binary()?)
        .args(["--port", "0"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = emulator.id().ok_or("the emulator exited at once")?;
    let (url, drain) = printed_url(&mut emulator, "WebSocket URL").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_start = vm_rss(pid)?;
    eprintln!(
        "  pushgate-local (pid {pid}) at {url}: VmRSS {:.1} MiB at start",
        rss_start as f64 / 1_048_576.0
    );

    let mut fleets: Vec<(Fleet, usize)> = Vec::new();
    let mut open = 0;
    let mut steps = Vec::new();
    let mut stopped_early = None;
    'steps: for &target in &targets {
        while open < target {
            if fleets.last().is_none_or(|(_, n)| *n >= PER_FLEET) {
                fleets.push((Fleet::spawn()?, 0));
            }
            let Some((fleet, held)) = fleets.last_mut() else {
                break;
            };
            let batch = (target - open).min(PER_FLEET - *held);
            if let Err(e) = fleet.connect(&url, batch, 100, "hold-").await {
                stopped_early = Some(format!("connecting failed after {open} connections: {e}"));
                break 'steps;
            }
            *held += batch;
            open += batch;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss = vm_rss(pid)?;
        let step = Step {
            connections: open,
            rss,
            bytes_per_connection: rss.saturating_sub(rss_start) as f64 / open as f64,
        };
        eprintln!(
            "  {:>6} connections: VmRSS {:.1} MiB, {:.0} bytes per connection",
            open,
            rss as f64 / 1_048_576.0,
            step.bytes_per_connection
        );
        steps.push(step);
    }

    let _ = emulator.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(10), emulator.wait()).await;
    drain.abort();
    for (fleet, _) in fleets {
        fleet.quit().await?;
    }
    let limit = match stopped_early {
        Some(reason) => reason,
        None if targets.last() < wanted.last() => format!("stopped at {cap}: {limit}"),
        None => "every step held".to_owned(),
    };
    Ok(Hold {
        rss_start,
        steps,
        limit,
    })
}

/// A Markdown table of the run.
pub fn table(hold: &Hold) -> String {
    let mut out = format!(
        "| connections | VmRSS | bytes per connection |\n|---:|---:|---:|\n| 0 | {:.1} MiB | – |\n",
        hold.rss_start as f64 / 1_048_576.0
    );
    for s in &hold.steps {
        out.push_str(&format!(
            "| {} | {:.1} MiB | {:.0} |\n",
            s.connections,
            s.rss as f64 / 1_048_576.0,
            s.bytes_per_connection
        ));
    }
    out
}
