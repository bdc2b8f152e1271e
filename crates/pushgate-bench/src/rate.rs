//! The publish-rate run: many entities with a few subscribers each, events
//! (one PutEvents call per event, entities in turn) at a rising rate for a
//! few seconds per step. A step holds when every delivery arrived and the
//! p99 publish-to-receive latency stayed within 1 s; the run stops at the
//! first step that does not.

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::fanout::{ms, Seq};
use crate::fleet::Fleet;
use crate::target::Pushgate;

type BoxError = Box<dyn Error + Send + Sync>;

/// PutEvents calls in flight at once, at most.
const IN_FLIGHT: usize = 256;

/// The p99 a step may reach and still hold.
const P99_LIMIT: Duration = Duration::from_secs(1);

/// The shape of the run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Entities.
    pub entities: usize,
    /// Subscribers per entity.
    pub per_entity: usize,
    /// Target events/s, one step each, rising.
    pub rates: Vec<u32>,
    /// How long each step publishes.
    pub step: Duration,
    /// The emulator's `PUSH_CONCURRENCY`.
    pub push_concurrency: usize,
}

/// One step's figures.
#[derive(Debug, Clone)]
pub struct Step {
    /// Target events/s.
    pub target: u32,
    /// Events published.
    pub events: u32,
    /// Events/s actually published.
    pub published_per_s: f64,
    /// Deliveries expected and received.
    pub expected: u64,
    /// Deliveries received.
    pub received: u64,
    /// Deliveries/s over the step (first publish to last delivery).
    pub delivered_per_s: f64,
    /// p50 latency, ms.
    pub p50_ms: f64,
    /// p99 latency, ms.
    pub p99_ms: f64,
    /// Highest latency, ms.
    pub max_ms: f64,
}

impl Step {
    /// Whether the step held (all delivered, p99 within 1 s).
    pub fn held(&self) -> bool {
        self.received >= self.expected && self.p99_ms <= P99_LIMIT.as_secs_f64() * 1000.0
    }
}

/// Runs the plan; returns its steps, the last one the first that failed
/// (unless every step held).
pub async fn run(fleet: &mut Fleet, plan: &Plan, seq: &mut Seq) -> Result<Vec<Step>, BoxError> {
    let pushgate = Arc::new(Pushgate::start(plan.push_concurrency, 0).await?);
    let clients = plan.entities * plan.per_entity;
    let prefix = "rate-";
    // Client i subscribes to entity i % entities: `per_entity` each.
    fleet
        .connect(pushgate.ws_url(), clients, plan.entities, prefix)
        .await?;
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut steps = Vec::new();
    for &rate in &plan.rates {
        let events = u32::try_from((f64::from(rate) * plan.step.as_secs_f64()).ceil() as u64)?;
        let lo = seq.next();
        for _ in 1..events {
            seq.next();
        }
        let started = Instant::now();
        let mut publishes = JoinSet::new();
        for i in 0..events {
            let at = started + Duration::from_secs_f64(f64::from(i) / f64::from(rate));
            tokio::time::sleep_until(at.into()).await;
            let permit = Arc::clone(&gate).acquire_owned().await?;
            let pushgate = Arc::clone(&pushgate);
            let entity = format!("{prefix}{}", i as usize % plan.entities);
            publishes.spawn(async move {
                let result = pushgate.publish(&entity, lo + i).await;
                drop(permit);
                result.map(|_| ()).map_err(|e| e.to_string())
            });
        }
        let mut failed_puts = 0;
        while let Some(result) = publishes.join_next().await {
            if !matches!(result, Ok(Ok(()))) {
                failed_puts += 1;
            }
        }
        let sent_for = started.elapsed();
        let expected = u64::from(events) * plan.per_entity as u64;
        let stats = fleet
            .wait(lo, lo + events, expected, Duration::from_secs(15))
            .await?;
        let wall = started.elapsed();
        let step = Step {
            target: rate,
            events,
            published_per_s: f64::from(events) / sent_for.as_secs_f64(),
            expected,
            received: stats.count,
            delivered_per_s: stats.count as f64 / wall.as_secs_f64(),
            p50_ms: stats.p50_us as f64 / 1000.0,
            p99_ms: stats.p99_us as f64 / 1000.0,
            max_ms: stats.max_us as f64 / 1000.0,
        };
        eprintln!(
            "  rate {:>5}/s: published {:>7.0}/s, {}/{} delivered, {:>7.0} deliveries/s, p50 {}, p99 {}{}",
            rate,
            step.published_per_s,
            step.received,
            step.expected,
            step.delivered_per_s,
            ms(step.p50_ms),
            ms(step.p99_ms),
            if failed_puts > 0 {
                format!(", {failed_puts} PutEvents failed")
            } else {
                String::new()
            }
        );
        let held = step.held();
        steps.push(step);
        if !held {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    fleet.close().await?;
    if let Ok(pushgate) = Arc::try_unwrap(pushgate) {
        pushgate.stop().await;
    }
    Ok(steps)
}

/// A Markdown table of the steps.
pub fn table(steps: &[Step]) -> String {
    let mut out = String::from(
        "| target events/s | events | published events/s | deliveries | deliveries/s | p50 latency | p99 latency | max latency | held |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for s in steps {
        out.push_str(&format!(
            "| {} | {} | {:.0} | {}/{} | {:.0} | {} | {} | {} | {} |\n",
            s.target,
            s.events,
            s.published_per_s,
            s.received,
            s.expected,
            s.delivered_per_s,
            ms(s.p50_ms),
            ms(s.p99_ms),
            ms(s.max_ms),
            if s.held() { "yes" } else { "**no**" },
        ));
    }
    out
}
