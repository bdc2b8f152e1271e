//! Start-up for the Lambda binaries: read configuration and build AWS
//! clients once, before the first event.

use std::sync::Arc;

use pushgate_domain::{Config, ConfigError};
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
}

async fn deps_with(config: Config) -> (Deps, aws_config::SdkConfig) {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store = DynamoDbStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        config.table_name.clone(),
    );
    (Deps::new(Arc::new(store), config), sdk)
}

/// Dependencies of the route functions, from the environment.
pub async fn deps() -> Result<Deps, StartError> {
    Ok(deps_with(Config::from_env()?).await.0)
}

/// Dependencies of the notifier, from the environment;
/// `MANAGEMENT_API_ENDPOINT` is required.
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
