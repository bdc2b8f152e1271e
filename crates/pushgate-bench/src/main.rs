//! `pushgate-bench`: measurements that print figures. Nothing here is a test;
//! the figures go into BENCHMARKS.md.
//!
//! # Layout
//!
//! - [`fanout`]: fan-out to 1–10,000 subscribers of one entity through the
//!   local emulator, against the [`baseline`] (a raw WebSocket server) and
//!   the sequential PostToConnection loop; [`chart`] draws it. `network`
//!   runs the same fan-out with a round trip injected into every
//!   PostToConnection (what AWS adds and the loopback does not).
//! - [`rate`]: sustained publish rate over many entities.
//! - [`hold`]: connections one `pushgate-local` process holds, and its
//!   memory per connection.
//! - [`fleet`]: the WebSocket clients, in a child process (`clients`);
//!   [`target`]: the emulator in this process, and publishing.
//! - `dynamodb` ([`dynamodb`]): DynamoDB requests per operation, counted on
//!   the real `DynamoDbStore` against a moto server this command starts,
//!   printed beside the minimum the design allows.
//! - `startup` ([`startup`]): start-up, size and memory per Lambda binary.
//! - `cpu` ([`cpu`]): CPU per push of the notifier's two PostToConnection
//!   clients and of the AWS SDK for JavaScript v3, each in its own process.
//! - `cost` ([`cost`]): a month of pushgate in AWS list prices, beside
//!   AppSync Events, IoT Core, Momento Topics and Ably.
//!
//! Usage (`scripts/bench` runs `all`; `--help` on any subcommand lists its
//! flags):
//!
//! ```text
//! cargo run --release -p pushgate-bench -- all [--quick]
//! cargo run --release -p pushgate-bench -- fanout|network|rate|hold [--quick] [--pushgate-only]
//! cargo run --release -p pushgate-bench -- dynamodb
//! cargo run --release -p pushgate-bench -- startup [--runs N]
//! cargo run --release -p pushgate-bench -- cpu [--pushes N] [--latency-ms MS]
//! cargo run --release -p pushgate-bench -- cost [--connections N] [--deliveries D] [--subscribers S] …
//! ```
//!
//! The Markdown report goes to stdout and to `target/bench/report.md`,
//! progress to stderr, the chart to `docs/fanout.svg`.

mod baseline;
mod chart;
mod cost;
mod cpu;
mod dynamodb;
mod fanout;
mod fleet;
mod hold;
mod rate;
mod scale;
mod startup;
mod target;

use std::error::Error;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

use fanout::{Method, Row, Seq};
use fleet::Fleet;

/// The error the measurements return.
type BoxError = Box<dyn Error + Send + Sync>;

fn unsend(e: BoxError) -> Box<dyn Error> {
    e
}

/// The default `PUSH_CONCURRENCY` (pushgate-domain's `Config`).
fn default_concurrency() -> usize {
    pushgate_domain::Config::new("bench").push_concurrency
}

/// The round trip injected into every PostToConnection by `network`: the
/// order of an HTTPS call from Lambda to the Management API in the same
/// region (an assumption, stated in the report; the loopback has none).
const NETWORK_LATENCY_MS: u64 = 10;

/// What a run covers.
struct Plan {
    /// `(subscribers, events)` for pushgate and the raw baseline.
    sizes: Vec<(usize, usize)>,
    /// `(subscribers, events)` for the sequential loop.
    sequential: Vec<(usize, usize)>,
    /// `(subscribers, events)` for the concurrency sweep.
    sweep_sizes: Vec<(usize, usize)>,
    /// `PUSH_CONCURRENCY` values for the sweep.
    sweep: Vec<usize>,
    /// The publish-rate run.
    rate: rate::Plan,
    /// Connection counts for `hold`.
    hold: Vec<usize>,
    /// The round trip injected into every PostToConnection for `network`, ms.
    network_latency_ms: u64,
    /// `(subscribers, events)` for `network`, pushgate.
    network_sizes: Vec<(usize, usize)>,
    /// `(subscribers, events)` for `network`, the sequential loop.
    network_sequential: Vec<(usize, usize)>,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            return Self {
                sizes: vec![(1, 5), (100, 5), (1_000, 3)],
                sequential: vec![(1, 5), (100, 3), (1_000, 2)],
                sweep_sizes: vec![(1_000, 3)],
                sweep: vec![16, 256],
                rate: rate::Plan {
                    entities: 20,
                    per_entity: 5,
                    rates: vec![50, 200],
                    step: Duration::from_secs(1),
                    push_concurrency: default_concurrency(),
                },
                hold: vec![1_000, 2_000],
                network_latency_ms: NETWORK_LATENCY_MS,
                network_sizes: vec![(100, 2)],
                network_sequential: vec![(100, 1)],
            };
        }
        Self {
            sizes: vec![(1, 20), (100, 20), (1_000, 10), (10_000, 5)],
            sequential: vec![(1, 20), (100, 10), (1_000, 5), (10_000, 3)],
            sweep_sizes: vec![(1_000, 10), (10_000, 5)],
            sweep: vec![16, 256],
            rate: rate::Plan {
                entities: 200,
                per_entity: 5,
                rates: vec![50, 100, 200, 400, 800, 1_600, 3_200, 6_400],
                step: Duration::from_secs(3),
                push_concurrency: default_concurrency(),
            },
            hold: vec![10_000, 20_000, 30_000],
            network_latency_ms: NETWORK_LATENCY_MS,
            network_sizes: vec![(1_000, 5), (10_000, 3)],
            // 10,000 × 10 ms is ~100 s per event: one timed event.
            network_sequential: vec![(1_000, 2), (10_000, 1)],
        }
    }
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "?".to_owned())
}

/// `nproc`, `free -h`, the CPU model and rustc's version.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "?".to_owned());
    format!(
        "- `nproc`: {}\n- CPU: {}\n- `rustc --version`: {}\n- open-file limit (soft): {}\n- `free -h`:\n\n```\n{}\n```\n",
        command_output("nproc", &[]),
        cpu,
        command_output("rustc", &["--version"]),
        hold::nofile_soft().map_or("?".to_owned(), |n| n.to_string()),
        command_output("free", &["-h"]),
    )
}

/// The report, printed as it grows.
#[derive(Default)]
struct Report(String);

impl Report {
    fn section(&mut self, text: &str) {
        println!("{text}");
        self.0.push_str(text);
        self.0.push('\n');
    }
}

fn line(label: &str, color: &'static str, rows: &[Row]) -> chart::Series {
    chart::Series {
        label: label.to_owned(),
        color,
        points: rows.iter().map(|r| (r.size as f64, r.last_ms)).collect(),
    }
}

async fn run_fanout(plan: &Plan, run: RunArgs, report: &mut Report) -> Result<(), BoxError> {
    let concurrency = default_concurrency();
    let mut fleet = Fleet::spawn()?;
    let mut seq = Seq::default();
    eprintln!("fan-out: pushgate, PUSH_CONCURRENCY={concurrency}");
    let pushgate = fanout::run(
        &mut fleet,
        Method::Pushgate(concurrency),
        &plan.sizes,
        &mut seq,
    )
    .await?;
    if run.pushgate_only {
        fleet.quit().await?;
        report.section(&fanout::table(&pushgate));
        return Ok(());
    }
    eprintln!("fan-out: raw baseline");
    let raw = fanout::run(&mut fleet, Method::Raw, &plan.sizes, &mut seq).await?;
    eprintln!("fan-out: sequential loop");
    let sequential =
        fanout::run(&mut fleet, Method::Pushgate(1), &plan.sequential, &mut seq).await?;
    let mut sweep = Vec::new();
    for &c in &plan.sweep {
        eprintln!("fan-out: PUSH_CONCURRENCY={c}");
        sweep.extend(
            fanout::run(&mut fleet, Method::Pushgate(c), &plan.sweep_sizes, &mut seq).await?,
        );
    }
    fleet.quit().await?;

    report.section("## Fan-out to one entity\n");
    report.section(&fanout::comparison(&pushgate, &raw, &sequential));
    report.section(
        "Per method (medians over the events; each size also had one untimed warm-up event):\n",
    );
    let all: Vec<Row> = pushgate
        .iter()
        .chain(&raw)
        .chain(&sequential)
        .cloned()
        .collect();
    report.section(&fanout::table(&all));
    report.section(&format!(
        "Connecting and subscribing the clients (pushgate, {concurrency}): {}\n",
        pushgate
            .iter()
            .map(|r| format!("{} in {}", r.size, fanout::ms(r.connect_ms)))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    report.section("## PUSH_CONCURRENCY\n");
    let mut by_concurrency: Vec<Row> = sweep
        .iter()
        .chain(
            pushgate
                .iter()
                .filter(|r| plan.sweep_sizes.iter().any(|(s, _)| *s == r.size)),
        )
        .cloned()
        .collect();
    by_concurrency.sort_by_key(|r| (r.size, r.method.concurrency()));
    report.section(&fanout::table(&by_concurrency));

    let svg = chart::render(
        "pushgate fan-out: time from publish to last delivery",
        &[
            line(
                &format!("pushgate (PUSH_CONCURRENCY={concurrency})"),
                "#1f6feb",
                &pushgate,
            ),
            line("raw WebSocket baseline", "#2da44e", &raw),
            line("sequential PostToConnection loop", "#cf222e", &sequential),
        ],
    )
    .map_err(|e| e.to_string())?;
    let path = workspace_root().join("docs/fanout.svg");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, svg)?;
    report.section("Chart: `docs/fanout.svg`.\n");
    Ok(())
}

async fn run_network(plan: &Plan, report: &mut Report) -> Result<(), BoxError> {
    let concurrency = default_concurrency();
    let post_latency_ms = plan.network_latency_ms;
    let mut fleet = Fleet::spawn()?;
    let mut seq = Seq::default();
    eprintln!("network: {post_latency_ms} ms per PostToConnection, PUSH_CONCURRENCY={concurrency}");
    let pushgate = fanout::run(
        &mut fleet,
        Method::PushgateWithLatency {
            concurrency,
            post_latency_ms,
        },
        &plan.network_sizes,
        &mut seq,
    )
    .await?;
    eprintln!("network: {post_latency_ms} ms per PostToConnection, sequential loop");
    let sequential = fanout::run(
        &mut fleet,
        Method::PushgateWithLatency {
            concurrency: 1,
            post_latency_ms,
        },
        &plan.network_sequential,
        &mut seq,
    )
    .await?;
    fleet.quit().await?;
    report.section(&format!(
        "## Fan-out with a {post_latency_ms} ms round trip per PostToConnection\n\n\
         The emulator holds every PostToConnection {post_latency_ms} ms before answering \
         (fault injection `postLatencyMs`), standing in for the network between Lambda \
         and the Management API that the loopback does not have.\n"
    ));
    report.section(&fanout::comparison(&pushgate, &[], &sequential));
    let all: Vec<Row> = pushgate.iter().chain(&sequential).cloned().collect();
    report.section(&fanout::table(&all));
    Ok(())
}

async fn run_rate(plan: &Plan, report: &mut Report) -> Result<(), BoxError> {
    let p = &plan.rate;
    eprintln!(
        "publish rate: {} entities × {} subscribers, {} s per step",
        p.entities,
        p.per_entity,
        p.step.as_secs_f64()
    );
    let mut fleet = Fleet::spawn()?;
    let mut seq = Seq::default();
    let steps = rate::run(&mut fleet, p, &mut seq).await?;
    fleet.quit().await?;
    report.section(&format!(
        "## Publish rate: {} entities × {} subscribers, PUSH_CONCURRENCY={}\n",
        p.entities, p.per_entity, p.push_concurrency
    ));
    report.section(&rate::table(&steps));
    let best = steps.iter().rfind(|s| s.held());
    report.section(&match best {
        Some(s) => format!(
            "Sustained (highest step with every delivery and p99 ≤ 1 s): **{:.0} events/s, {:.0} deliveries/s** (p99 {}).\n",
            s.published_per_s,
            s.delivered_per_s,
            fanout::ms(s.p99_ms)
        ),
        None => "No step held.\n".to_owned(),
    });
    Ok(())
}

async fn run_hold(plan: &Plan, report: &mut Report) -> Result<(), BoxError> {
    eprintln!("hold: a separate pushgate-local process");
    let hold = hold::run(&plan.hold).await?;
    report.section("## Connections held by one pushgate-local process\n");
    report.section(&hold::table(&hold));
    report.section(&format!("Limit: {}.\n", hold.limit));
    Ok(())
}

/// pushgate's benchmarks: they print figures; none of them is a test.
#[derive(Debug, Parser)]
#[command(name = "pushgate-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Flags of the emulator runs.
#[derive(Debug, Clone, Copy, Args)]
struct RunArgs {
    /// Small sizes: a smoke run of the code path, not figures.
    #[arg(long)]
    quick: bool,
    /// fanout: pushgate only, without the raw baseline, the sequential loop
    /// and the concurrency sweep.
    #[arg(long)]
    pushgate_only: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// fanout, network, rate and hold, one after another.
    All(RunArgs),
    /// Fan-out to 1–10,000 subscribers: pushgate, the raw baseline, the
    /// sequential loop, the PUSH_CONCURRENCY sweep; draws docs/fanout.svg.
    Fanout(RunArgs),
    /// The fan-out with a round trip injected into every PostToConnection.
    Network(RunArgs),
    /// Sustained publish rate over many entities.
    Rate(RunArgs),
    /// Connections one pushgate-local process holds, and memory per
    /// connection.
    Hold(RunArgs),
    /// DynamoDB requests per operation, against a moto server.
    Dynamodb,
    /// One entity with 100,000 and 1,000,000 virtual subscribers at the
    /// account throttle, with a round trip on every push.
    Scale(scale::Args),
    /// Start-up, size and memory per Lambda binary (against moto).
    Startup {
        /// Runs per function.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=1000))]
        runs: u16,
    },
    /// Monthly cost of a workload: pushgate line by line, beside AppSync
    /// Events, IoT Core, Momento Topics and Ably.
    Cost(cost::Args),
    /// CPU per push: the notifier's two PostToConnection clients and the
    /// AWS SDK for JavaScript v3, each in its own process.
    Cpu(cpu::Args),
    /// One pusher of `cpu`, in its own process; started by `cpu`.
    #[command(hide = true)]
    CpuPush(cpu::PushArgs),
    /// The stub Management API of `cpu`; started by `cpu`.
    #[command(hide = true)]
    CpuStub {
        /// Delay before each answer, ms.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
    },
    /// The WebSocket client fleet; started by the bench itself.
    #[command(hide = true)]
    Clients,
}

fn main() -> Result<(), Box<dyn Error>> {
    let cli = Cli::parse();
    if let Command::CpuPush(args) = cli.command {
        // The notifier's shape: one thread, as a Lambda of ≤ 1 vCPU runs.
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(cpu::push_main(args))
            .map_err(unsend);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async_main(cli))
}

async fn async_main(cli: Cli) -> Result<(), Box<dyn Error>> {
    let run = match cli.command {
        Command::Clients => return fleet::child_main().await.map_err(unsend),
        Command::Dynamodb => return dynamodb::run().await,
        Command::Scale(args) => return scale::run(args).await.map_err(unsend),
        Command::Startup { runs } => return startup::run(usize::from(runs)).await,
        Command::Cpu(args) => return cpu::run(args).await.map_err(unsend),
        Command::CpuPush(_) => return Err("cpu-push runs on its own runtime".into()),
        Command::CpuStub { latency_ms } => return cpu::stub_main(latency_ms).await.map_err(unsend),
        Command::Cost(args) => {
            let (workload, lambda) = args.model();
            println!("{}", cost::report(&workload, &lambda));
            return Ok(());
        }
        Command::All(run)
        | Command::Fanout(run)
        | Command::Network(run)
        | Command::Rate(run)
        | Command::Hold(run) => run,
    };
    let plan = Plan::new(run.quick);
    let mut report = Report::default();
    let started = Instant::now();
    let args: Vec<String> = std::env::args().skip(1).collect();
    report.section(&format!(
        "# pushgate-bench {}{}\n\n{}",
        args.join(" "),
        if run.quick {
            " (quick: smoke-test sizes, not figures)"
        } else {
            ""
        },
        machine()
    ));
    match cli.command {
        Command::All(_) => {
            run_fanout(&plan, run, &mut report).await.map_err(unsend)?;
            run_network(&plan, &mut report).await.map_err(unsend)?;
            run_rate(&plan, &mut report).await.map_err(unsend)?;
            run_hold(&plan, &mut report).await.map_err(unsend)?;
        }
        Command::Fanout(_) => run_fanout(&plan, run, &mut report).await.map_err(unsend)?,
        Command::Network(_) => run_network(&plan, &mut report).await.map_err(unsend)?,
        Command::Rate(_) => run_rate(&plan, &mut report).await.map_err(unsend)?,
        Command::Hold(_) => run_hold(&plan, &mut report).await.map_err(unsend)?,
        _ => {}
    }
    report.section(&format!(
        "Run took {:.0} s.\n",
        started.elapsed().as_secs_f64()
    ));
    let path = workspace_root().join("target/bench/report.md");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, &report.0)?;
    eprintln!("report written to {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from(["pushgate-bench", "fanout", "--quick", "--pushgate-only"])
            .expect("valid");
        assert!(matches!(
            cli.command,
            Command::Fanout(RunArgs {
                quick: true,
                pushgate_only: true
            })
        ));
        let cli = Cli::try_parse_from(["pushgate-bench", "startup"]).expect("valid");
        assert!(matches!(cli.command, Command::Startup { runs: 10 }));
        assert!(Cli::try_parse_from(["pushgate-bench", "startup", "--runs", "0"]).is_err());
        assert!(Cli::try_parse_from(["pushgate-bench", "nope"]).is_err());
    }
}
