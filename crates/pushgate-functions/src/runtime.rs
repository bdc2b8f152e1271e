//! Start-up for the Lambda binaries: read configuration, fetch the token
//! signing key and build AWS clients once, before the first event.

use std::sync::Arc;

use pushgate_domain::auth::TokenVerifier;
use pushgate_domain::{AuthMode, Config, ConfigError};
use pushgate_push::ManagementApiPusher;
use pushgate_store::DynamoDbStore;

use crate::notifier::RetryPolicy;
use crate::{Deps, NotifierDeps};

/// Why a function could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Configuration is missing or malformed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The signing key could not be read from SSM.
    #[error("could not read the token signing key from SSM parameter {name}")]
    SigningKey {
        /// The parameter.
        name: String,
        /// The SDK's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `AUTH_MODE=token` without a signing key.
    #[error("AUTH_MODE=token needs JWT_SECRET or JWT_SECRET_PARAMETER")]
    NoSigningKey,
}

async fn signing_key(
    sdk: &aws_config::SdkConfig,
    config: &Config,
) -> Result<Option<TokenVerifier>, StartError> {
    if let Some(secret) = &config.jwt_secret {
        return Ok(Some(TokenVerifier::hs256(secret.expose().as_bytes())));
    }
    let Some(name) = &config.jwt_secret_parameter else {
        return Ok(None);
    };
    let out = aws_sdk_ssm::Client::new(sdk)
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| StartError::SigningKey {
            name: name.clone(),
            source: Box::new(e),
        })?;
    let value = out
        .parameter
        .and_then(|p| p.value)
        .ok_or_else(|| StartError::SigningKey {
            name: name.clone(),
            source: "the parameter has no value".into(),
        })?;
    Ok(Some(TokenVerifier::hs256(value.as_bytes())))
}

async fn deps_with(config: Config) -> (Deps, aws_config::SdkConfig) {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let table = config.table_name.clone();
    let store = DynamoDbStore::new(aws_sdk_dynamodb::Client::new(&sdk), table);
    (Deps::new(Arc::new(store), config), sdk)
}

/// Dependencies of the route functions that check no token, from the
/// environment.
pub async fn deps() -> Result<Deps, StartError> {
    Ok(deps_with(Config::from_env()?).await.0)
}

/// Dependencies of `$connect`, which verifies tokens: the signing key comes
/// from `JWT_SECRET` or the SSM SecureString named by `JWT_SECRET_PARAMETER`,
/// and is required unless `AUTH_MODE=anonymous`.
pub async fn connect_deps() -> Result<Deps, StartError> {
    let (mut deps, sdk) = deps_with(Config::from_env()?).await;
    deps.verifier = signing_key(&sdk, &deps.config).await?;
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
    Ok(NotifierDeps {
        deps,
        pusher: Arc::new(ManagementApiPusher::new(&sdk, &endpoint)),
        retry: RetryPolicy::default(),
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
