//! `pushgate-local`: runs the emulator on 127.0.0.1 until Ctrl-C, or, with
//! `token`, prints a token for it.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use pushgate_domain::auth::{Grant, Role};
use pushgate_domain::{AuthMode, PushClient, Secret};
use pushgate_local::faults::Faults;
use pushgate_local::settings::{FunctionTimeouts, PostThrottle, DEFAULT_OUTBOUND_BUFFER_BYTES};
use pushgate_local::token::{mint_local, parse_ttl, TokenRequest, LOCAL_JWT_SECRET};
use pushgate_local::{Emulator, QueueSettings, Settings, StoreSettings};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Auth {
    /// Tokens optional (checked when sent).
    Anonymous,
    /// A valid token is required at $connect.
    Token,
}

/// `--push-client`: the names `PUSH_CLIENT` takes.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum PushClientArg {
    /// One SigV4-signed request per push on a plain HTTP client.
    Http,
    /// aws-sdk-apigatewaymanagement.
    Sdk,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Store {
    /// The embedded in-memory store.
    Memory,
    /// DynamoDB through the standard AWS configuration.
    Dynamodb,
}

/// Runs pushgate's WebSocket API on this machine: API Gateway, the
/// @connections API, EventBridge PutEvents and SQS in one process.
#[derive(Parser, Debug)]
#[command(name = "pushgate-local", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Prints a token the emulator accepts (signed with its key).
    Token(TokenArgs),
}

/// `pushgate-local token --sub alice --subscribe 'artist:*' --ttl 1h`
#[derive(Args, Debug)]
struct TokenArgs {
    /// The user id (`sub`).
    #[arg(long)]
    sub: String,
    /// A subscribe grant: an entity id or a prefix ending in `*` (repeatable).
    #[arg(long, value_name = "ENTITY")]
    subscribe: Vec<String>,
    /// A publish grant (repeatable).
    #[arg(long, value_name = "ENTITY")]
    publish: Vec<String>,
    /// A subscribe-and-publish grant (repeatable).
    #[arg(long, value_name = "ENTITY")]
    subscribe_publish: Vec<String>,
    /// Lifetime: 90s, 15m, 1h, 2d.
    #[arg(long, default_value = "1h")]
    ttl: String,
    /// HS256 key (the emulator's: JWT_SECRET, or its built-in development key).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, default_value = LOCAL_JWT_SECRET, hide_default_value = true)]
    jwt_secret: String,
}

impl TokenArgs {
    fn print(self) -> Result<(), Box<dyn std::error::Error>> {
        let grants = [
            (Role::Subscribe, self.subscribe),
            (Role::Publish, self.publish),
            (Role::SubscribePublish, self.subscribe_publish),
        ]
        .into_iter()
        .flat_map(|(role, entities)| {
            entities
                .into_iter()
                .map(move |entity| Grant { role, entity })
        })
        .collect();
        let request = TokenRequest {
            sub: self.sub,
            grants,
            ttl_secs: Some(parse_ttl(&self.ttl)?),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let minted = mint_local(&self.jwt_secret, &request, i64::try_from(now)?)?;
        println!("{}", minted.token);
        Ok(())
    }
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 3001)]
    port: u16,
    /// Stage in the URL path.
    #[arg(long, default_value = "local")]
    stage: String,
    /// Idle timeout in seconds (API Gateway: 600).
    #[arg(long, default_value_t = 600)]
    idle_timeout_secs: u64,
    /// Maximum connection duration in seconds (API Gateway: 7200).
    #[arg(long, default_value_t = 7200)]
    max_duration_secs: u64,
    /// The rule's event source.
    #[arg(long, default_value = "pushgate")]
    event_source: String,
    /// The rule's detail-type.
    #[arg(long, default_value = "Entity Updated")]
    detail_type: String,
    /// The event bus the rule is on.
    #[arg(long, default_value = "default")]
    event_bus: String,
    /// Seconds before a failed record is delivered again (the queue's
    /// VisibilityTimeout; template.yaml: 180). For quick retries locally,
    /// shorten it together with --notifier-timeout-secs: like Lambda, the
    /// emulator refuses a visibility timeout below the notifier's timeout.
    #[arg(long, default_value_t = 180)]
    visibility_timeout_secs: u64,
    /// Receives before a record moves to the DLQ (maxReceiveCount).
    #[arg(long, default_value_t = 5)]
    max_receive_count: u32,
    /// Records per notifier invocation (the event source mapping's BatchSize).
    #[arg(long, default_value_t = 10)]
    batch_size: usize,
    /// Milliseconds the poller waits to fill a batch
    /// (MaximumBatchingWindowInSeconds: 1 s in template.yaml).
    #[arg(long, default_value_t = 1000)]
    batch_window_ms: u64,
    /// Notifier invocations at once (the mapping's MaximumConcurrency;
    /// template.yaml sets none: 5).
    #[arg(long, default_value_t = 5)]
    notifier_concurrency: usize,
    /// $connect's Lambda timeout in seconds (template.yaml: 10).
    #[arg(long, default_value_t = 10)]
    connect_timeout_secs: u64,
    /// $disconnect's Lambda timeout in seconds (template.yaml: 10).
    #[arg(long, default_value_t = 10)]
    disconnect_timeout_secs: u64,
    /// subscribe's Lambda timeout in seconds (template.yaml: 10).
    #[arg(long, default_value_t = 10)]
    subscribe_timeout_secs: u64,
    /// unsubscribe's Lambda timeout in seconds (template.yaml: 10).
    #[arg(long, default_value_t = 10)]
    unsubscribe_timeout_secs: u64,
    /// $default's Lambda timeout in seconds (template.yaml: 10).
    #[arg(long, default_value_t = 10)]
    default_timeout_secs: u64,
    /// publish's Lambda timeout in seconds (template.yaml: 29).
    #[arg(long, default_value_t = 29)]
    publish_timeout_secs: u64,
    /// The notifier's Lambda timeout in seconds (template.yaml: 30).
    #[arg(long, default_value_t = 30)]
    notifier_timeout_secs: u64,
    /// Bytes of frames waiting for one client before PostToConnection
    /// answers 429 LimitExceededException (the client is not reading).
    #[arg(long, default_value_t = DEFAULT_OUTBOUND_BUFFER_BYTES)]
    outbound_buffer_bytes: usize,
    /// PostToConnection calls per second before 429 LimitExceededException
    /// (a token bucket; off unless given).
    #[arg(long)]
    post_rate: Option<f64>,
    /// PostToConnection burst: calls allowed at once (with --post-rate;
    /// default: one second's worth).
    #[arg(long)]
    post_burst: Option<u32>,
    /// Where connections are stored.
    #[arg(long, value_enum, default_value_t = Store::Memory)]
    store: Store,
    /// DynamoDB endpoint (implies --store dynamodb), e.g. http://127.0.0.1:8000.
    #[arg(long)]
    dynamodb_endpoint: Option<String>,
    /// DynamoDB table (created if missing).
    #[arg(long, default_value = "pushgate-local")]
    table: String,
    /// Whether $connect requires a token.
    #[arg(long, value_enum, default_value_t = Auth::Anonymous)]
    auth_mode: Auth,
    /// HS256 key that tokens are checked with (default: a built-in
    /// development key, the one `pushgate-local token` signs with).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Lifetime of connection and subscription items (the functions'
    /// CONNECTION_TTL_SECONDS).
    #[arg(long, env = "CONNECTION_TTL_SECONDS", default_value_t = pushgate_domain::limits::DEFAULT_TTL_SECS)]
    connection_ttl_secs: u64,
    /// How long each stream keeps its notifications for clients that
    /// resume (the functions' HISTORY_TTL_SECONDS; default 24 h).
    #[arg(long, env = "HISTORY_TTL_SECONDS")]
    history_ttl_secs: Option<u64>,
    /// How many notifications each stream keeps (HISTORY_MAX_PER_STREAM;
    /// default 100).
    #[arg(long, env = "HISTORY_MAX_PER_STREAM")]
    history_max_per_stream: Option<u64>,
    /// PostToConnection calls in flight per event (PUSH_CONCURRENCY).
    #[arg(long, env = "PUSH_CONCURRENCY")]
    push_concurrency: Option<usize>,
    /// The notifier's PostToConnection client (PUSH_CLIENT): `http`, one
    /// SigV4-signed request per push, or `sdk`, aws-sdk-apigatewaymanagement.
    #[arg(long, env = "PUSH_CLIENT", value_enum, default_value = "http")]
    push_client: PushClientArg,
    /// Connection-id ranges a fan-out of more than a page is split into,
    /// each a task for another notifier invocation (FANOUT_RANGES).
    #[arg(long, env = "FANOUT_RANGES")]
    fanout_ranges: Option<usize>,
    /// Subscriptions one connection may hold (MAX_SUBSCRIPTIONS_PER_CONNECTION).
    #[arg(long, env = "MAX_SUBSCRIPTIONS_PER_CONNECTION")]
    max_subscriptions: Option<usize>,
    /// Seconds between sweeps of expired items from the embedded store
    /// (DynamoDB's TTL stand-in).
    #[arg(long, default_value_t = 60)]
    ttl_sweep_secs: u64,
    /// Fault injection: fraction (0-1) of PostToConnection calls that fail.
    #[arg(long, default_value_t = 0.0)]
    fault_post_rate: f64,
    /// Fault injection: statuses the failing PostToConnection calls answer.
    #[arg(long, value_delimiter = ',', default_value = "500")]
    fault_post_statuses: Vec<u16>,
    /// Fault injection: fraction (0-1) of $disconnect events dropped.
    #[arg(long, default_value_t = 0.0)]
    fault_drop_disconnect_rate: f64,
    /// Fault injection: milliseconds every PostToConnection is held before
    /// it is answered (a network round trip to the Management API).
    #[arg(long, default_value_t = 0)]
    fault_post_latency_ms: u64,
    /// Fault injection: every PostToConnection answers 403 Forbidden (as
    /// without execute-api:ManageConnections).
    #[arg(long)]
    fault_post_forbidden: bool,
    /// Fault injection: fraction (0-1) of subscribe store calls that fail
    /// with DynamoDB's TransactionConflict.
    #[arg(long, default_value_t = 0.0)]
    fault_subscribe_conflict_rate: f64,
    /// Fault injection: entities whose store calls hang until the
    /// function's deadline (comma-separated).
    #[arg(long, value_delimiter = ',')]
    fault_stalled_entities: Vec<String>,
}

impl ServeArgs {
    fn settings(self) -> Result<Settings, Box<dyn std::error::Error>> {
        let faults = Faults {
            post_failure_rate: self.fault_post_rate,
            post_failure_statuses: self.fault_post_statuses,
            drop_disconnect_rate: self.fault_drop_disconnect_rate,
            post_latency_ms: self.fault_post_latency_ms,
            post_forbidden: self.fault_post_forbidden,
            subscribe_conflict_rate: self.fault_subscribe_conflict_rate,
            stalled_entities: self.fault_stalled_entities,
            ..Faults::default()
        };
        let secs = Duration::from_secs;
        let post_throttle = match (self.post_rate, self.post_burst) {
            (None, None) => None,
            (rate, burst) => {
                let rate = rate.ok_or("--post-burst needs --post-rate")?;
                // One second's worth, at least one call.
                let burst = burst.unwrap_or_else(|| {
                    if rate.is_finite() && rate >= 1.0 {
                        rate.min(f64::from(u32::MAX)) as u32
                    } else {
                        1
                    }
                });
                Some(PostThrottle { rate, burst })
            }
        };
        let mut settings = Settings {
            stage: self.stage,
            idle_timeout: secs(self.idle_timeout_secs),
            max_duration: secs(self.max_duration_secs),
            timeouts: FunctionTimeouts {
                connect: secs(self.connect_timeout_secs),
                disconnect: secs(self.disconnect_timeout_secs),
                subscribe: secs(self.subscribe_timeout_secs),
                unsubscribe: secs(self.unsubscribe_timeout_secs),
                default_route: secs(self.default_timeout_secs),
                publish: secs(self.publish_timeout_secs),
                notifier: secs(self.notifier_timeout_secs),
            },
            outbound_buffer_bytes: self.outbound_buffer_bytes,
            post_throttle,
            event_bus: self.event_bus,
            event_source: self.event_source,
            detail_type: self.detail_type,
            queue: QueueSettings {
                visibility_timeout: secs(self.visibility_timeout_secs),
                max_receive_count: self.max_receive_count,
                batch_size: self.batch_size,
                batch_window: Duration::from_millis(self.batch_window_ms),
                max_concurrency: self.notifier_concurrency,
            },
            ttl_sweep_interval: secs(self.ttl_sweep_secs),
            faults,
            ..Settings::default()
        };
        settings.store = match (self.store, self.dynamodb_endpoint) {
            (_, Some(endpoint)) => StoreSettings::DynamoDb {
                endpoint: Some(endpoint),
                table: self.table.clone(),
            },
            (Store::Dynamodb, None) => StoreSettings::DynamoDb {
                endpoint: None,
                table: self.table.clone(),
            },
            (Store::Memory, None) => StoreSettings::Memory,
        };
        settings.functions.table_name = self.table;
        settings.functions.ttl = secs(self.connection_ttl_secs);
        if let Some(n) = self.push_concurrency {
            settings.functions.push_concurrency = n;
        }
        settings.functions.push_client = match self.push_client {
            PushClientArg::Http => PushClient::SignedHttp,
            PushClientArg::Sdk => PushClient::Sdk,
        };
        if let Some(n) = self.max_subscriptions {
            settings.functions.max_subscriptions = n;
        }
        if let Some(n) = self.fanout_ranges {
            if n == 0 {
                return Err("--fanout-ranges must be at least 1 (1: never split)".into());
            }
            settings.functions.fanout_ranges = n;
        }
        if let Some(secs) = self.history_ttl_secs {
            settings.functions.retention.ttl_secs = i64::try_from(secs)
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| format!("--history-ttl-secs must be 1 to {}", i64::MAX))?;
        }
        if let Some(n) = self.history_max_per_stream.filter(|n| *n > 0) {
            settings.functions.retention.max_entries = n;
        }
        settings.functions.auth_mode = match self.auth_mode {
            Auth::Anonymous => AuthMode::Anonymous,
            Auth::Token => AuthMode::Token,
        };
        if let Some(secret) = self.jwt_secret.filter(|s| !s.is_empty()) {
            settings.functions.jwt_secret = Some(Secret::new(secret));
        }
        settings.validate()?;
        Ok(settings)
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let mut message = e.to_string();
            let mut source = e.source();
            while let Some(cause) = source {
                message = format!("{message}: {cause}");
                source = cause.source();
            }
            eprintln!("pushgate-local: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(Command::Token(args)) = cli.command {
        return args.print();
    }
    let cli = cli.serve;
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_target(false)
        .init();
    let port = cli.port;
    let settings = cli.settings()?;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    let emulator = Emulator::new(settings, listener).await?;
    println!("{}", emulator.banner());
    emulator.run(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM, so that both close every
/// connection cleanly with `$disconnect`.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
