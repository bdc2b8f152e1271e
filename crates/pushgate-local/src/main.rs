//! `pushgate-local`: runs the emulator on 127.0.0.1 until Ctrl-C.

use std::time::Duration;

use clap::{Parser, ValueEnum};
use pushgate_domain::{AuthMode, Secret};
use pushgate_local::{Emulator, QueueSettings, Settings, StoreSettings};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Auth {
    /// Tokens optional (checked when sent and a key is set).
    Anonymous,
    /// A valid token is required at $connect.
    Token,
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
    /// Seconds before a failed record is delivered again.
    #[arg(long, default_value_t = 2)]
    visibility_timeout_secs: u64,
    /// Receives before a record moves to the DLQ.
    #[arg(long, default_value_t = 5)]
    max_receive_count: u32,
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
    /// HS256 key that tokens are checked with.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
}

impl Cli {
    fn settings(self) -> Settings {
        let mut settings = Settings {
            stage: self.stage,
            idle_timeout: Duration::from_secs(self.idle_timeout_secs.max(1)),
            max_duration: Duration::from_secs(self.max_duration_secs.max(1)),
            event_bus: self.event_bus,
            event_source: self.event_source,
            detail_type: self.detail_type,
            queue: QueueSettings {
                visibility_timeout: Duration::from_secs(self.visibility_timeout_secs),
                max_receive_count: self.max_receive_count.max(1),
                ..QueueSettings::default()
            },
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
        settings.functions.auth_mode = match self.auth_mode {
            Auth::Anonymous => AuthMode::Anonymous,
            Auth::Token => AuthMode::Token,
        };
        settings.functions.jwt_secret = self.jwt_secret.filter(|s| !s.is_empty()).map(Secret::new);
        settings
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_target(false)
        .init();
    let port = cli.port;
    let settings = cli.settings();
    if settings.functions.auth_mode == AuthMode::Token && settings.functions.jwt_secret.is_none() {
        return Err("--auth-mode token needs --jwt-secret (or JWT_SECRET)".into());
    }
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    let emulator = Emulator::new(settings, listener).await?;
    println!("{}", emulator.banner());
    emulator
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
