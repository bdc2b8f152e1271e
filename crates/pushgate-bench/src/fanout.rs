//! Fan-out to one entity's subscribers: 1, 100, 1,000 and 10,000 clients,
//! several events per size, published one at a time (each waits for the
//! previous one's last delivery). Per event: the time from the publish to
//! the last delivery, and the p50/p99 publish-to-receive latency over its
//! deliveries; per size, the medians over its events.
//!
//! Methods: pushgate (PutEvents → queue → notifier → PostToConnection over
//! HTTP with bounded concurrency), the same with `PUSH_CONCURRENCY=1` (the
//! sequential PostToConnection loop of the AWS samples), both also with a
//! network round trip injected into every PostToConnection (what AWS adds
//! and the loopback does not), and the raw baseline. One untimed warm-up
//! event precedes each size's events.

use std::error::Error;
use std::time::Duration;

use crate::baseline::Baseline;
use crate::fleet::Fleet;
use crate::target::{Pushgate, Target};

type BoxError = Box<dyn Error + Send + Sync>;

/// How events reach the subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// pushgate with this `PUSH_CONCURRENCY` (1 is the sequential loop).
    Pushgate(usize),
    /// pushgate with this `PUSH_CONCURRENCY`, every PostToConnection held
    /// `post_latency_ms` by the emulator's fault injection.
    PushgateWithLatency {
        /// `PUSH_CONCURRENCY` (1 is the sequential loop).
        concurrency: usize,
        /// The injected round trip per PostToConnection, ms.
        post_latency_ms: u64,
    },
    /// The raw baseline.
    Raw,
}

impl Method {
    /// A name for tables.
    pub fn label(self) -> String {
        match self {
            Self::Pushgate(1) => "sequential loop (PUSH_CONCURRENCY=1)".to_owned(),
            Self::Pushgate(c) => format!("pushgate (PUSH_CONCURRENCY={c})"),
            Self::PushgateWithLatency {
                concurrency: 1,
                post_latency_ms,
            } => format!("sequential loop, {post_latency_ms} ms per PostToConnection"),
            Self::PushgateWithLatency {
                concurrency,
                post_latency_ms,
            } => format!(
                "pushgate (PUSH_CONCURRENCY={concurrency}), {post_latency_ms} ms per PostToConnection"
            ),
            Self::Raw => "raw baseline".to_owned(),
        }
    }

    /// Pushes in flight at once (the raw baseline: unbounded).
    pub fn concurrency(self) -> usize {
        match self {
            Self::Pushgate(c) | Self::PushgateWithLatency { concurrency: c, .. } => c,
            Self::Raw => usize::MAX,
        }
    }

    /// The injected round trip per PostToConnection, ms.
    pub fn post_latency_ms(self) -> u64 {
        match self {
            Self::PushgateWithLatency {
                post_latency_ms, ..
            } => post_latency_ms,
            Self::Pushgate(_) | Self::Raw => 0,
        }
    }
}

/// One size's figures for one method.
#[derive(Debug, Clone)]
pub struct Row {
    /// The method.
    pub method: Method,
    /// Subscribers.
    pub size: usize,
    /// Timed events.
    pub events: usize,
    /// Events whose every delivery arrived.
    pub complete: usize,
    /// Median time from publish to the last delivery, ms.
    pub last_ms: f64,
    /// Median of the events' p50 latency, ms.
    pub p50_ms: f64,
    /// Median of the events' p99 latency, ms.
    pub p99_ms: f64,
    /// Subscribers / median last-delivery time.
    pub per_second: f64,
    /// How long connecting and subscribing the clients took, ms.
    pub connect_ms: f64,
}

/// Median of `values` (upper median for even counts); 0 when empty.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Sequence numbers, unique across a run.
#[derive(Debug, Default)]
pub struct Seq(u32);

impl Seq {
    /// The next one.
    pub fn next(&mut self) -> u32 {
        self.0 += 1;
        self.0
    }
}

async fn start(method: Method) -> Result<Target, BoxError> {
    Ok(match method {
        Method::Pushgate(_) | Method::PushgateWithLatency { .. } => {
            Target::Pushgate(Pushgate::start(method.concurrency(), method.post_latency_ms()).await?)
        }
        Method::Raw => Target::Raw(Baseline::start().await?),
    })
}

/// Measures `method` at every `(size, events)`.
pub async fn run(
    fleet: &mut Fleet,
    method: Method,
    plan: &[(usize, usize)],
    seq: &mut Seq,
) -> Result<Vec<Row>, BoxError> {
    let target = start(method).await?;
    let mut rows = Vec::new();
    for &(size, events) in plan {
        let prefix = format!("fanout-{size}-");
        let entity = format!("{prefix}0");
        let connect = fleet.connect(&target.ws_url(), size, 1, &prefix).await?;
        // Generous: ~3 ms of CPU per delivery, plus the injected round
        // trips at the method's concurrency.
        let waits = (size as u64).div_ceil(method.concurrency().min(size) as u64);
        let limit = Duration::from_secs(10)
            + Duration::from_millis(3 * size as u64 + 2 * waits * method.post_latency_ms());
        let (mut last, mut p50, mut p99) = (Vec::new(), Vec::new(), Vec::new());
        let mut complete = 0;
        for i in 0..=events {
            let n = seq.next();
            target.publish(&entity, n).await?;
            let stats = fleet.wait(n, n + 1, size as u64, limit).await?;
            if i == 0 {
                continue; // warm-up
            }
            if stats.count >= size as u64 {
                complete += 1;
            }
            last.push(stats.max_us as f64 / 1000.0);
            p50.push(stats.p50_us as f64 / 1000.0);
            p99.push(stats.p99_us as f64 / 1000.0);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let last_ms = median(&mut last);
        let row = Row {
            method,
            size,
            events,
            complete,
            last_ms,
            p50_ms: median(&mut p50),
            p99_ms: median(&mut p99),
            per_second: if last_ms > 0.0 {
                size as f64 / (last_ms / 1000.0)
            } else {
                0.0
            },
            connect_ms: connect.as_secs_f64() * 1000.0,
        };
        eprintln!(
            "  {:<40} {:>6} subscribers: last delivery {:>9.2} ms, p50 {:>8.2} ms, p99 {:>8.2} ms ({}/{} events complete)",
            method.label(),
            size,
            row.last_ms,
            row.p50_ms,
            row.p99_ms,
            complete,
            events
        );
        rows.push(row);
        fleet.close().await?;
        // Let the server finish its `$disconnect`s before the next size.
        tokio::time::sleep(Duration::from_millis(500 + size as u64 / 10)).await;
    }
    target.stop().await;
    Ok(rows)
}

/// A Markdown table of rows.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| method | subscribers | events | time to last delivery (median) | deliveries/s | p50 latency | p99 latency |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let incomplete = if r.complete < r.events {
            format!(" ({} of {} complete)", r.complete, r.events)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "| {} | {} | {}{} | {} | {:.0} | {} | {} |\n",
            r.method.label(),
            r.size,
            r.events,
            incomplete,
            ms(r.last_ms),
            r.per_second,
            ms(r.p50_ms),
            ms(r.p99_ms),
        ));
    }
    out
}

/// Milliseconds with sensible precision.
pub fn ms(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0} ms")
    } else if value >= 10.0 {
        format!("{value:.1} ms")
    } else {
        format!("{value:.2} ms")
    }
}

/// pushgate against the raw baseline and the sequential loop, per size.
pub fn comparison(pushgate: &[Row], raw: &[Row], sequential: &[Row]) -> String {
    let mut out = String::from(
        "| subscribers | pushgate | raw baseline | sequential loop | pushgate ÷ raw (time) | speed-up over sequential |\n\
         |---:|---:|---:|---:|---:|---:|\n",
    );
    for p in pushgate {
        let find = |rows: &[Row]| rows.iter().find(|r| r.size == p.size).map(|r| r.last_ms);
        let raw = find(raw);
        let seq = find(sequential);
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            p.size,
            ms(p.last_ms),
            raw.map_or("–".to_owned(), ms),
            seq.map_or("–".to_owned(), ms),
            raw.map_or("–".to_owned(), |r| format!("{:.1}×", p.last_ms / r)),
            seq.map_or("–".to_owned(), |s| format!("{:.1}×", s / p.last_ms)),
        ));
    }
    out
}
