//! Start-up for the Lambda binaries: logging, configuration, the token
//! signing keys (and their periodic refresh) and AWS clients, built once
//! before the first event.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pushgate_domain::auth::{KeyError, KeyRing, SigningKey, TokenVerifier};
use pushgate_domain::{AuthMode, Config, ConfigError, PushClient};
use pushgate_push::{ManagementApiPusher, Pusher, PusherSetupError, SignedHttpPusher};
use pushgate_store::DynamoDbStore;

use crate::{Deps, NotifierDeps};

/// Why a function could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Configuration is missing or malformed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The signing keys could not be read, or are too weak.
    #[error("token signing key: {0}")]
    SigningKey(#[from] KeyLoadError),
    /// The PostToConnection client could not be built.
    #[error("PostToConnection client: {0}")]
    Pusher(#[from] PusherSetupError),
    /// `AUTH_MODE=token` without a signing key.
    #[error("AUTH_MODE=token needs JWT_SECRET or JWT_SECRET_PARAMETER")]
    NoSigningKey,
}

/// Why the signing keys could not be read. Names the parameter, never a
/// key.
#[derive(Debug, thiserror::Error)]
pub enum KeyLoadError {
    /// SSM refused or failed.
    #[error("could not read SSM parameter {name}")]
    Read {
        /// The parameter.
        name: String,
        /// The SDK's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The current key's parameter does not exist or has no value.
    #[error("SSM parameter {name} does not exist or has no value")]
    Missing {
        /// The parameter.
        name: String,
    },
    /// A key is shorter than 256 bits.
    #[error("the key in {name} is too weak")]
    Weak {
        /// The parameter or variable.
        name: String,
        /// Its length.
        #[source]
        source: KeyError,
    },
    /// SSM did not answer in time.
    #[error("reading the signing keys took longer than {0:?}")]
    TimedOut(Duration),
}

/// Longest wait for SSM. A refresh that started just before the execution
/// environment was frozen may find its connection dead on thaw; this bounds
/// how long it holds on to it.
pub const KEY_LOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the signing keys come from, read at start and on every refresh.
#[async_trait]
pub trait KeySource: Send + Sync {
    /// Reads the current keys.
    async fn load(&self) -> Result<KeyRing, KeyLoadError>;
}

/// The keys in SSM SecureStrings: the current one (required) and the
/// previous one (optional: a parameter that does not exist means no
/// rotation is under way, so it can be created and deleted around a
/// rotation without a deployment).
pub struct SsmKeySource {
    client: aws_sdk_ssm::Client,
    current: String,
    previous: Option<String>,
}

impl SsmKeySource {
    /// Reads `current` and, when given, `previous` with `client`.
    pub fn new(client: aws_sdk_ssm::Client, current: String, previous: Option<String>) -> Self {
        Self {
            client,
            current,
            previous,
        }
    }

    /// The value of parameter `name`, `None` if it does not exist.
    async fn read(&self, name: &str) -> Result<Option<String>, KeyLoadError> {
        match self
            .client
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
        {
            Ok(out) => Ok(out.parameter.and_then(|p| p.value)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_parameter_not_found()) =>
            {
                Ok(None)
            }
            Err(e) => Err(KeyLoadError::Read {
                name: name.to_owned(),
                source: Box::new(e),
            }),
        }
    }
}

fn checked(name: &str, value: &str) -> Result<SigningKey, KeyLoadError> {
    SigningKey::new(value.as_bytes()).map_err(|source| KeyLoadError::Weak {
        name: name.to_owned(),
        source,
    })
}

#[async_trait]
impl KeySource for SsmKeySource {
    async fn load(&self) -> Result<KeyRing, KeyLoadError> {
        let previous = async {
            match &self.previous {
                Some(name) => self.read(name).await,
                None => Ok(None),
            }
        };
        let (current, previous) = futures::join!(self.read(&self.current), previous);
        let current = current?.ok_or_else(|| KeyLoadError::Missing {
            name: self.current.clone(),
        })?;
        let current = checked(&self.current, &current)?;
        let previous = match (previous?, &self.previous) {
            (Some(value), Some(name)) => Some(checked(name, &value)?),
            _ => None,
        };
        Ok(KeyRing::new(current, previous))
    }
}

/// Reads the keys from `source` once and, on success, swaps them into
/// `verifier` (and so into every clone of it). On failure the keys in use
/// stay, and a warning names the reason, never a key.
pub async fn refresh_keys(
    verifier: &TokenVerifier,
    source: &dyn KeySource,
) -> Result<(), KeyLoadError> {
    let loaded = match tokio::time::timeout(KEY_LOAD_TIMEOUT, source.load()).await {
        Ok(loaded) => loaded,
        Err(_) => Err(KeyLoadError::TimedOut(KEY_LOAD_TIMEOUT)),
    };
    match loaded {
        Ok(keys) => {
            tracing::debug!(
                previous_key = keys.has_previous(),
                "token signing keys re-read"
            );
            verifier.set_keys(keys);
            Ok(())
        }
        Err(e) => {
            tracing::warn!(
                error = %error_chain(&e),
                "could not re-read the token signing keys; keeping the ones in use"
            );
            Err(e)
        }
    }
}

/// Re-reads the keys every `every`, for as long as the process lives.
///
/// In Lambda the task runs only while the execution environment is thawed:
/// a refresh that fell due while it was frozen runs at the next invocation,
/// beside it, and that invocation verifies with the keys in use until the
/// new ones are in. Missed ticks are not made up for.
pub fn spawn_key_refresh(
    verifier: TokenVerifier,
    source: Arc<dyn KeySource>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            // Failures are logged inside and keep the old keys.
            let _ = refresh_keys(&verifier, source.as_ref()).await;
        }
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The token verifier a function that checks tokens (`$connect`, the
/// `history` endpoint) shares between invocations, from `config`:
///
/// - `JWT_SECRET` (and `JWT_SECRET_PREVIOUS`): keys from the environment,
///   fixed for the life of the process;
/// - otherwise `JWT_SECRET_PARAMETER` (and `JWT_SECRET_PREVIOUS_PARAMETER`):
///   keys from SSM, read now and re-read every `JWT_SECRET_REFRESH_SECONDS`
///   by a background task;
/// - neither: `None`.
///
/// `JWT_AUDIENCE` applies either way. Keys under 256 bits, and an SSM
/// parameter that cannot be read at start, stop the function.
pub async fn token_verifier(
    sdk: &aws_config::SdkConfig,
    config: &Config,
) -> Result<Option<TokenVerifier>, StartError> {
    let with_audience = |v: TokenVerifier| match &config.jwt_audience {
        Some(aud) => v.with_audience(aud.clone()),
        None => v,
    };
    if let Some(secret) = &config.jwt_secret {
        let current = checked("JWT_SECRET", secret.expose())?;
        let previous = config
            .jwt_secret_previous
            .as_ref()
            .map(|p| checked("JWT_SECRET_PREVIOUS", p.expose()))
            .transpose()?;
        return Ok(Some(with_audience(TokenVerifier::new(KeyRing::new(
            current, previous,
        )))));
    }
    let Some(name) = &config.jwt_secret_parameter else {
        return Ok(None);
    };
    let source: Arc<dyn KeySource> = Arc::new(SsmKeySource::new(
        aws_sdk_ssm::Client::new(sdk),
        name.clone(),
        config.jwt_secret_previous_parameter.clone(),
    ));
    let keys = match tokio::time::timeout(KEY_LOAD_TIMEOUT, source.load()).await {
        Ok(keys) => keys?,
        Err(_) => return Err(KeyLoadError::TimedOut(KEY_LOAD_TIMEOUT).into()),
    };
    tracing::info!(
        parameter = %name,
        previous_key = keys.has_previous(),
        refresh_secs = config.jwt_secret_refresh.as_secs(),
        "token signing keys read"
    );
    let verifier = with_audience(TokenVerifier::new(keys));
    spawn_key_refresh(verifier.clone(), source, config.jwt_secret_refresh);
    Ok(Some(verifier))
}

/// The AWS SDK configuration of a Lambda function: the default provider
/// chain (in Lambda, the environment's region and credentials) and an
/// HTTPS client on rustls + ring.
///
/// The SDK's default client is the same hyper client on rustls + aws-lc;
/// ring is the crypto jsonwebtoken links already, so choosing it here keeps
/// one TLS library in each bootstrap: 0.6–0.9 MB less per function
/// (BENCHMARKS.md, "Function sizes"). The workspace builds the SDK crates
/// without their default client, so every SDK client a function makes must
/// come from this config. Unlike the default client it reads no proxy
/// settings from the environment: Lambda functions reach AWS directly.
pub async fn sdk_config() -> aws_config::SdkConfig {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    use aws_smithy_http_client::{Builder, ConnectorBuilder};

    let http_client = Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector =
            ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::Ring));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.build()
    });
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http_client)
        .load()
        .await
}

async fn deps_with(config: Config) -> (Deps, aws_config::SdkConfig) {
    let sdk = sdk_config().await;
    let table = config.table_name.clone();
    let store = DynamoDbStore::new(aws_sdk_dynamodb::Client::new(&sdk), table);
    (Deps::new(Arc::new(store), config), sdk)
}

/// Dependencies of the route functions that check no token, from the
/// environment.
pub async fn deps() -> Result<Deps, StartError> {
    Ok(deps_with(Config::from_env()?).await.0)
}

/// Dependencies of `publish`: the route's, and the notifier's queue it
/// hands events to (`QUEUE_URL`, required), on one SDK configuration.
pub async fn publish_deps() -> Result<(Deps, pushgate_push::SqsQueue), StartError> {
    let config = Config::from_env()?;
    let queue_url = config
        .queue_url
        .clone()
        .ok_or(ConfigError::Missing("QUEUE_URL"))?;
    let (deps, sdk) = deps_with(config).await;
    Ok((deps, pushgate_push::SqsQueue::new(&sdk, queue_url)))
}

/// Dependencies of `$connect`, which verifies tokens (see
/// [`token_verifier`]); a signing key is required unless
/// `AUTH_MODE=anonymous`.
pub async fn connect_deps() -> Result<Deps, StartError> {
    let (mut deps, sdk) = deps_with(Config::from_env()?).await;
    deps.verifier = token_verifier(&sdk, &deps.config).await?;
    if deps.verifier.is_none() && deps.config.auth_mode == AuthMode::Token {
        return Err(StartError::NoSigningKey);
    }
    Ok(deps)
}

/// Dependencies of the functions that push (notifier, publish), from the
/// environment; `MANAGEMENT_API_ENDPOINT` is required.
pub async fn notifier_deps() -> Result<NotifierDeps, StartError> {
    let config = Config::from_env()?;
    let endpoint = config
        .management_endpoint
        .clone()
        .ok_or(ConfigError::Missing("MANAGEMENT_API_ENDPOINT"))?;
    let (deps, sdk) = deps_with(config).await;
    let queue_url = deps.config.queue_url.clone();
    let pusher = pusher(&sdk, &endpoint, deps.config.push_client)?;
    let mut notifier = NotifierDeps::new(deps, pusher);
    // With its queue, the notifier splits large fan-outs across invocations.
    notifier.queue = queue_url.map(|url| {
        Arc::new(pushgate_push::SqsQueue::new(&sdk, url)) as Arc<dyn pushgate_push::EventQueue>
    });
    notifier.emit_metrics = true;
    Ok(notifier)
}

/// The PostToConnection client `PUSH_CLIENT` names, for the stage at
/// `endpoint`.
pub fn pusher(
    sdk: &aws_config::SdkConfig,
    endpoint: &str,
    client: PushClient,
) -> Result<Arc<dyn Pusher>, PusherSetupError> {
    Ok(match client {
        PushClient::SignedHttp => Arc::new(SignedHttpPusher::new(sdk, endpoint)?),
        PushClient::Sdk => Arc::new(ManagementApiPusher::new(sdk, endpoint)),
    })
}

/// The invocation's deadline (`Lambda-Runtime-Deadline-Ms`, epoch
/// milliseconds) as an instant on tokio's clock.
pub fn deadline(context: &lambda_runtime::Context) -> tokio::time::Instant {
    let now_ms = crate::Clock::system().now_ms();
    let deadline_ms = i64::try_from(context.deadline).unwrap_or(i64::MAX);
    let left = u64::try_from(deadline_ms.saturating_sub(now_ms)).unwrap_or(0);
    tokio::time::Instant::now() + std::time::Duration::from_millis(left)
}

/// How the binaries log, from Lambda's logging settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// `AWS_LAMBDA_LOG_FORMAT=JSON` (the function's `LoggingConfig.LogFormat`).
    pub json: bool,
    /// Filter directives: `AWS_LAMBDA_LOG_LEVEL` (the function's
    /// `ApplicationLogLevel`) when set, else `RUST_LOG`, else `info`.
    pub directives: String,
}

impl LogSettings {
    /// Reads the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup`.
    ///
    /// `lambda_runtime::tracing::init_default_subscriber` (0.14) reads the
    /// same variables, but lets `RUST_LOG` override Lambda's
    /// `ApplicationLogLevel` and leaves ANSI colours on when
    /// tracing-subscriber's `ansi` feature is on (the emulator's dependency
    /// turns it on for the whole workspace), which CloudWatch shows as
    /// `\x1b[2m…` noise in text logs.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let set = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let json =
            set("AWS_LAMBDA_LOG_FORMAT").is_some_and(|f| f.trim().eq_ignore_ascii_case("json"));
        let directives = match set("AWS_LAMBDA_LOG_LEVEL").map(|l| l.trim().to_ascii_lowercase()) {
            // Lambda's FATAL has no tracing level; ERROR is the closest.
            Some(level) if level == "fatal" => "error".to_owned(),
            Some(level) => level,
            None => set("RUST_LOG").unwrap_or_else(|| "info".to_owned()),
        };
        Self { json, directives }
    }
}

/// The subscriber the binaries install, writing to `writer`: one JSON
/// object per line (`timestamp`, `level`, `target`, `message` and the
/// event's fields at the top level, `span` with the invocation's
/// `requestId`) when `settings.json`, plain text without timestamps
/// (CloudWatch adds them) otherwise; never ANSI colours.
pub fn log_subscriber<W>(
    settings: &LogSettings,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync + 'static>
where
    W: for<'w> lambda_runtime::tracing::subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use lambda_runtime::tracing::subscriber::{fmt, EnvFilter};
    let filter =
        EnvFilter::try_new(&settings.directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_env_filter(filter);
    if settings.json {
        Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        )
    } else {
        Box::new(builder.without_time().with_target(false).finish())
    }
}

/// Installs [`log_subscriber`] on stdout for the process, from the
/// environment. Call it first thing in `main`.
pub fn init_tracing() {
    // Fails only if a subscriber is installed already, which then stays.
    let _ = tracing::subscriber::set_global_default(log_subscriber(
        &LogSettings::from_env(),
        std::io::stdout,
    ));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn settings(pairs: &[(&str, &str)]) -> LogSettings {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LogSettings::from_lookup(|k| map.get(k).cloned())
    }

    fn capture(settings: &LogSettings) -> String {
        let buffer = Buffer::default();
        let out = buffer.clone();
        let subscriber = log_subscriber(settings, move || out.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("Lambda runtime invoke", requestId = "req-1");
            let _entered = span.enter();
            tracing::info!(connection_id = "abc=", "connected");
            tracing::debug!("hidden at info");
            tracing::warn!(reason = "expired", "refused");
        });
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn json_format_writes_one_object_per_line_without_colours() {
        let text = capture(&settings(&[
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
            ("RUST_LOG", "info"),
        ]));
        assert!(!text.contains('\x1b'), "no ANSI escape codes: {text:?}");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["message"], "connected");
        assert_eq!(lines[0]["connection_id"], "abc=");
        assert_eq!(lines[0]["span"]["requestId"], "req-1");
        assert!(lines[0]["timestamp"].is_string());
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[1]["reason"], "expired");
    }

    #[test]
    fn text_format_has_no_colours_either() {
        let text = capture(&settings(&[]));
        assert!(!text.contains('\x1b'), "{text:?}");
        assert!(
            text.contains("connected") && !text.contains("hidden"),
            "{text}"
        );
        assert!(serde_json::from_str::<serde_json::Value>(text.lines().next().unwrap()).is_err());
    }

    #[test]
    fn lambda_log_level_wins_over_rust_log() {
        let s = settings(&[("AWS_LAMBDA_LOG_LEVEL", "DEBUG"), ("RUST_LOG", "warn")]);
        assert_eq!(s.directives, "debug");
        assert!(capture(&s).contains("hidden at info"));
        assert_eq!(settings(&[("RUST_LOG", "warn")]).directives, "warn");
        assert_eq!(
            settings(&[("AWS_LAMBDA_LOG_LEVEL", "FATAL")]).directives,
            "error"
        );
        assert_eq!(
            settings(&[]),
            LogSettings {
                json: false,
                directives: "info".into()
            }
        );
        assert!(settings(&[("AWS_LAMBDA_LOG_FORMAT", "json")]).json);
        assert!(!settings(&[("AWS_LAMBDA_LOG_FORMAT", "Text")]).json);
    }
}
