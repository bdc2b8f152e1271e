//! pushgate's local emulator: one process on 127.0.0.1 that stands in for
//! API Gateway (the WebSocket endpoint and the `@connections` Management
//! API), EventBridge (PutEvents) and SQS (batches, retries, a DLQ), running
//! pushgate's own handler functions in-process against an embedded store or
//! a DynamoDB endpoint. The notifier pushes through the real
//! `aws-sdk-apigatewaymanagement` client pointed at the emulator itself, so
//! notifications travel over HTTP as they do in AWS.
//!
//! # Layout
//!
//! Modules depend on each other one way, from the bottom up:
//!
//! 1. [`apigw`] (API Gateway's ids, time formats, events, error frames and
//!    invocations with their deadlines), [`faults`] (what to break),
//!    [`token`] (tokens for local use), [`sigv4`] (the signature check of
//!    `@connections` calls).
//! 2. [`settings`]: what the emulator is told at start, and its checks.
//! 3. [`throttle`] (a token bucket), [`sessions`] (API Gateway's connection table and each client's
//!    bounded outbound buffer), [`sqs`] (the queue, its event source mapping
//!    with concurrency and timeouts, the DLQ), [`store`] (the store decorator
//!    that injects DynamoDB faults), [`eventbridge`] (PutEvents entries and
//!    the rule), [`virtual_conns`] (socket-less subscribers).
//! 4. [`state`]: what every handler shares.
//! 5. [`connections`]: PostToConnection's logic.
//! 6. [`http`]: the axum handlers and [`app`], the router (testable without
//!    a socket).
//! 7. This file: [`build_state`], [`Emulator`] and [`serve`] (a listener and
//!    a shutdown future in); `src/main.rs`: the command line;
//!    `static/index.html`: the demo page.

pub mod apigw;
pub mod connections;
pub mod eventbridge;
pub mod faults;
pub mod http;
pub mod sessions;
pub mod settings;
pub mod sigv4;
pub mod sqs;
pub mod state;
pub mod store;
pub mod throttle;
pub mod token;
pub mod virtual_conns;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use pushgate_domain::auth::TokenVerifier;
use pushgate_functions::{Deps, NotifierDeps};
use pushgate_store::{ConnectionStore, DynamoDbStore, MemoryStore, StoreError};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use http::app;
pub use settings::{FunctionTimeouts, QueueSettings, Settings, SettingsError, StoreSettings};
pub use state::AppState;

/// How long shutdown waits for open sessions to run `$disconnect`.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the emulator could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The settings are invalid.
    #[error("invalid settings")]
    Settings(#[from] SettingsError),
    /// The listener has no local address.
    #[error("the listener has no local address")]
    Address(#[source] std::io::Error),
    /// The DynamoDB table could not be created or checked.
    #[error("the DynamoDB table could not be prepared")]
    Store(#[from] StoreError),
    /// The notifier's PostToConnection client could not be built.
    #[error("the PostToConnection client could not be built")]
    Pusher(#[from] pushgate_push::PusherSetupError),
    /// The HTTP server failed.
    #[error("the HTTP server failed")]
    Http(#[source] std::io::Error),
}

/// The emulator's own credentials (for clients that talk only to local
/// endpoints): its `@connections` API verifies signatures made with them.
fn local_credentials() -> aws_sdk_dynamodb::config::Credentials {
    aws_sdk_dynamodb::config::Credentials::new(
        sigv4::LOCAL_ACCESS_KEY,
        sigv4::LOCAL_ACCESS_KEY,
        None,
        None,
        "pushgate-local",
    )
}

/// The store the settings name (before faults are layered on).
async fn store(
    settings: &Settings,
) -> Result<(Arc<dyn ConnectionStore>, Option<Arc<MemoryStore>>), ServeError> {
    match &settings.store {
        StoreSettings::Memory => {
            let memory = Arc::new(MemoryStore::new());
            Ok((memory.clone(), Some(memory)))
        }
        StoreSettings::DynamoDb { endpoint, table } => {
            let mut loader = aws_config::defaults(BehaviorVersion::latest());
            if let Some(endpoint) = endpoint {
                loader = loader.endpoint_url(endpoint);
                if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
                    loader = loader.credentials_provider(local_credentials());
                }
            }
            let mut sdk = loader.load().await;
            if sdk.region().is_none() {
                sdk = sdk
                    .into_builder()
                    .region(aws_config::Region::new(settings.region.clone()))
                    .build();
            }
            let store = DynamoDbStore::new(aws_sdk_dynamodb::Client::new(&sdk), table.clone());
            store.create_table_if_missing().await?;
            Ok((Arc::new(store), None))
        }
    }
}

/// Builds the shared state for an emulator reachable at `base_url`
/// (`http://127.0.0.1:PORT`): the store, the functions' dependencies and
/// the notifier's pusher pointed at `{base_url}/{stage}`.
pub async fn build_state(settings: Settings, base_url: String) -> Result<AppState, ServeError> {
    settings.validate()?;
    let (store, memory) = store(&settings).await?;
    let faults = Arc::new(faults::FaultInjector::new(settings.faults.clone()));
    let store: Arc<dyn ConnectionStore> =
        Arc::new(store::FaultyStore::new(store, Arc::clone(&faults)));
    let mut deps = Deps::new(store, settings.functions.clone());
    if deps.verifier.is_none() {
        if let Some(secret) = &settings.functions.jwt_secret {
            deps.verifier = Some(TokenVerifier::hs256(secret.expose().as_bytes()));
        }
    }
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(settings.region.clone()))
        .credentials_provider(local_credentials())
        .load()
        .await;
    let endpoint = format!("{base_url}/{}", settings.stage);
    let pusher = pushgate_functions::runtime::pusher(&sdk, &endpoint, deps.config.push_client)?;
    let notifier = NotifierDeps::new(deps.clone(), pusher);
    Ok(AppState::new(state::Parts {
        settings,
        base_url,
        deps,
        notifier,
        memory,
        faults,
    }))
}

/// An emulator bound to a listener, ready to run.
pub struct Emulator {
    state: AppState,
    listener: TcpListener,
    addr: SocketAddr,
}

impl Emulator {
    /// Prepares the store and the clients for an emulator on `listener`.
    pub async fn new(settings: Settings, listener: TcpListener) -> Result<Self, ServeError> {
        let addr = listener.local_addr().map_err(ServeError::Address)?;
        let state = build_state(settings, format!("http://{addr}")).await?;
        Ok(Self {
            state,
            listener,
            addr,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its shared state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The start-up lines: each endpoint, named, one per line.
    pub fn banner(&self) -> String {
        let state = &self.state;
        let s = state.settings();
        let detail =
            r#"{\"entityId\":\"artist:ed-sheeran\",\"message\":{\"tickets\":\"on sale\"}}"#;
        format!(
            "pushgate-local: WebSocket URL        {ws}\n\
             pushgate-local: @connections URL     {conns}\n\
             pushgate-local: PutEvents endpoint   {base}\n\
             pushgate-local: demo page            {base}/\n\
             pushgate-local: status               {base}/_pushgate/status (DLQ: {base}/_pushgate/dlq)\n\
             pushgate-local: store                {store}\n\
             pushgate-local: auth                 {auth}; mint a token: \
             cargo run --release -p pushgate-local -- token --sub alice --subscribe 'artist:*'\n\
             {faults}\
             pushgate-local: try:\n  \
               wscat -c {ws}\n  \
               > {{\"action\":\"subscribe\",\"entityId\":\"artist:ed-sheeran\"}}\n  \
               AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local aws events put-events \
             --endpoint-url {base} --region {region} \
             --entries '[{{\"Source\":\"{source}\",\"DetailType\":\"{detail_type}\",\"Detail\":\"{detail}\"}}]'",
            ws = state.websocket_url(),
            conns = state.connections_url(),
            base = state.base_url(),
            region = s.region,
            source = s.event_source,
            detail_type = s.detail_type,
            store = match &s.store {
                StoreSettings::Memory => "embedded (in memory)".to_owned(),
                StoreSettings::DynamoDb { endpoint, table } => format!(
                    "DynamoDB table {table} at {}",
                    endpoint.as_deref().unwrap_or("the standard AWS endpoint")
                ),
            },
            auth = match s.functions.auth_mode {
                pushgate_domain::AuthMode::Anonymous => "anonymous allowed, tokens checked when sent",
                pushgate_domain::AuthMode::Token => "a token is required at $connect",
            },
            faults = if s.faults.is_active() {
                format!(
                    "pushgate-local: FAULTS INJECTED      {} (GET {base}/_pushgate/faults)\n",
                    serde_json::to_string(&s.faults).unwrap_or_default(),
                    base = state.base_url()
                )
            } else {
                String::new()
            },
        )
    }

    /// Serves until `shutdown` completes, then closes every connection
    /// (1001 Going away, with `$disconnect`) and stops the queue.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let state = self.state;
        let (stop, stopped) = watch::channel(false);
        let queue = Arc::clone(state.queue());
        let notifier = state.notifier().clone();
        let ttl = state.memory().cloned().map(|memory| {
            let every = state.settings().ttl_sweep_interval;
            tokio::spawn(sweep_expired(memory, every, stopped.clone()))
        });
        let timeout = state.settings().timeouts.notifier;
        let poller = tokio::spawn(async move { queue.run(notifier, timeout, stopped).await });
        let sessions = Arc::clone(state.sessions());
        let closing = Arc::clone(&sessions);
        let service = app(state).into_make_service_with_connect_info::<SocketAddr>();
        let result = axum::serve(self.listener, service)
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!("shutting down: closing every connection");
                closing.close_all(1001, "Going away");
            })
            .await;
        // Upgraded connections outlive the HTTP server; let them finish.
        sessions.wait_finished(SHUTDOWN_GRACE).await;
        let _ = stop.send(true);
        let _ = poller.await;
        if let Some(ttl) = ttl {
            let _ = ttl.await;
        }
        result.map_err(ServeError::Http)
    }
}

/// DynamoDB's TTL for the embedded store: every `every`, deletes the items
/// whose `expiresAt` has passed, until `stop` turns true.
async fn sweep_expired(memory: Arc<MemoryStore>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        let now = apigw::now_ms() / 1000;
        let purged = memory.purge_expired(now);
        if purged > 0 {
            tracing::info!(items = purged, "TTL: deleted expired items");
        }
    }
}

/// Runs an emulator on `listener` until `shutdown` completes.
pub async fn serve(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    Emulator::new(settings, listener).await?.run(shutdown).await
}
