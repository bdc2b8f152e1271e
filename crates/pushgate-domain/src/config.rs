//! Configuration read once at start from environment variables. The AWS SDK's
//! own variables (`AWS_REGION`, `AWS_ENDPOINT_URL_DYNAMODB`, …) are left to
//! the SDK.

use std::time::Duration;

use crate::limits::DEFAULT_TTL_SECS;
use crate::record::Retention;

/// Default `HISTORY_TTL_SECONDS`: a day, so a laptop closed overnight or a
/// phone in a pocket still resumes; storage is cheap next to writes, and the
/// writes are the same whatever the TTL.
pub const DEFAULT_HISTORY_TTL_SECS: i64 = 24 * 60 * 60;
/// Default `HISTORY_MAX_PER_STREAM`: enough to bridge a reconnect of a busy
/// stream; more would make a replay slower than reloading state.
pub const DEFAULT_HISTORY_MAX_PER_STREAM: u64 = 100;

/// Default `JWT_SECRET_REFRESH_SECONDS`: a rotated key reaches every warm
/// function within 5 minutes, at one SSM read per function instance per
/// 5 minutes (far below SSM's throughput limit).
pub const DEFAULT_JWT_SECRET_REFRESH_SECS: u64 = 5 * 60;

/// A configuration value that is missing or malformed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("{0} must be set")]
    Missing(&'static str),
    /// A signing key is too short. Unlike `Invalid`, the value is never
    /// part of the message.
    #[error("{name}: {source}")]
    WeakKey {
        /// The variable.
        name: &'static str,
        /// Why.
        #[source]
        source: crate::auth::KeyError,
    },
    /// A variable does not parse.
    #[error("{name} must be {expected}, got {value:?}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What it was.
        value: String,
    },
}

/// Whether `$connect` requires a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// `AUTH_MODE=token` (the default): no valid token, no connection.
    #[default]
    Token,
    /// `AUTH_MODE=anonymous`: connections without a token are let in (they
    /// may subscribe to anything and publish nothing); tokens, when sent,
    /// are still verified. For demos and local use.
    Anonymous,
}

/// A secret value whose `Debug` output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}
/// Which client the notifier pushes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PushClient {
    /// `PUSH_CLIENT=http` (the default): each push one SigV4-signed request
    /// on a plain HTTP client; about a quarter of the SDK's CPU per push.
    #[default]
    SignedHttp,
    /// `PUSH_CLIENT=sdk`: `aws-sdk-apigatewaymanagement`'s
    /// `PostToConnection`, kept as a fallback.
    Sdk,
}

/// Everything the functions read from their environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `TABLE_NAME`: the single table.
    pub table_name: String,
    /// `CONNECTION_TTL_SECONDS`: item lifetime (default 2 h + 5 min).
    pub ttl: Duration,
    /// `MANAGEMENT_API_ENDPOINT`: where the notifier posts
    /// (`https://{apiId}.execute-api.{region}.amazonaws.com/{stage}`).
    pub management_endpoint: Option<String>,
    /// `PUSH_CONCURRENCY`: pushes in flight per event (default 64).
    pub push_concurrency: usize,
    /// `PUSH_CLIENT`: `http` (default) or `sdk`.
    pub push_client: PushClient,
    /// `MAX_SUBSCRIPTIONS_PER_CONNECTION` (default 100).
    pub max_subscriptions: usize,
    /// `FANOUT_RANGES`: into how many connection-id ranges the notifier
    /// splits an entity with more than a page of subscribers, each handed
    /// to its own invocation through the queue (default 8; 1 turns splitting
    /// off).
    pub fanout_ranges: usize,
    /// `QUEUE_URL`: the notifier's SQS queue, where `publish` sends events
    /// and the notifier hands itself fan-out tasks.
    pub queue_url: Option<String>,
    /// `HISTORY_TTL_SECONDS` and `HISTORY_MAX_PER_STREAM`: how long (default
    /// 24 h) and how many (default 100) notifications each stream keeps for
    /// clients that resume (see the README for why these defaults).
    pub retention: Retention,
    /// `AUTH_MODE`: `token` (default) or `anonymous`.
    pub auth_mode: AuthMode,
    /// `JWT_SECRET`: the HS256 signing key itself (local use).
    pub jwt_secret: Option<Secret>,
    /// `JWT_SECRET_PARAMETER`: name of the SSM SecureString holding the key
    /// (in AWS); read at start and every `jwt_secret_refresh`.
    pub jwt_secret_parameter: Option<String>,
    /// `JWT_SECRET_PREVIOUS`: the key the issuer used before the current
    /// one, accepted too while a rotation is under way (local use).
    pub jwt_secret_previous: Option<Secret>,
    /// `JWT_SECRET_PREVIOUS_PARAMETER`: the SSM SecureString holding the
    /// previous key (in AWS); a parameter that does not exist means no
    /// rotation is under way.
    pub jwt_secret_previous_parameter: Option<String>,
    /// `JWT_AUDIENCE`: when set, tokens must carry it in `aud`; tokens
    /// minted for another service that shares the key are refused.
    pub jwt_audience: Option<String>,
    /// `JWT_SECRET_REFRESH_SECONDS` (default 300): how often the keys are
    /// re-read from SSM, so a rotation reaches warm functions without a
    /// deployment.
    pub jwt_secret_refresh: Duration,
}

impl Config {
    /// Defaults for everything but the table name.
    pub fn new(table_name: impl Into<String>) -> Self {
        Self {
            table_name: table_name.into(),
            ttl: Duration::from_secs(DEFAULT_TTL_SECS),
            management_endpoint: None,
            push_concurrency: 64,
            push_client: PushClient::SignedHttp,
            max_subscriptions: 100,
            fanout_ranges: 8,
            queue_url: None,
            retention: Retention {
                ttl_secs: DEFAULT_HISTORY_TTL_SECS,
                max_entries: DEFAULT_HISTORY_MAX_PER_STREAM,
            },
            auth_mode: AuthMode::Token,
            jwt_secret: None,
            jwt_secret_parameter: None,
            jwt_secret_previous: None,
            jwt_secret_previous_parameter: None,
            jwt_audience: None,
            jwt_secret_refresh: Duration::from_secs(DEFAULT_JWT_SECRET_REFRESH_SECS),
        }
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup`, so tests need not touch the
    /// process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let table = lookup("TABLE_NAME")
            .filter(|t| !t.is_empty())
            .ok_or(ConfigError::Missing("TABLE_NAME"))?;
        let mut config = Self::new(table);
        let positive = |name: &'static str| -> Result<Option<u64>, ConfigError> {
            lookup(name)
                .map(|v| match v.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(ConfigError::Invalid {
                        name,
                        expected: "a positive whole number",
                        value: v,
                    }),
                })
                .transpose()
        };
        if let Some(secs) = positive("CONNECTION_TTL_SECONDS")? {
            config.ttl = Duration::from_secs(secs);
        }
        if let Some(n) = positive("PUSH_CONCURRENCY")? {
            config.push_concurrency = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(secs) = positive("HISTORY_TTL_SECONDS")? {
            config.retention.ttl_secs = i64::try_from(secs).unwrap_or(i64::MAX);
        }
        if let Some(n) = positive("HISTORY_MAX_PER_STREAM")? {
            config.retention.max_entries = n;
        }
        if let Some(n) = positive("FANOUT_RANGES")? {
            config.fanout_ranges = usize::try_from(n).unwrap_or(usize::MAX);
        }
        config.queue_url = lookup("QUEUE_URL").filter(|v| !v.is_empty());
        if let Some(n) = positive("MAX_SUBSCRIPTIONS_PER_CONNECTION")? {
            config.max_subscriptions = usize::try_from(n).unwrap_or(usize::MAX);
        }
        config.management_endpoint = lookup("MANAGEMENT_API_ENDPOINT").filter(|v| !v.is_empty());
        config.push_client = match lookup("PUSH_CLIENT").as_deref().map(str::trim) {
            None | Some("") | Some("http") => PushClient::SignedHttp,
            Some("sdk") => PushClient::Sdk,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "PUSH_CLIENT",
                    expected: "http or sdk",
                    value: other.to_owned(),
                })
            }
        };
        config.auth_mode = match lookup("AUTH_MODE").as_deref().map(str::trim) {
            None | Some("") | Some("token") => AuthMode::Token,
            Some("anonymous") => AuthMode::Anonymous,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "AUTH_MODE",
                    expected: "token or anonymous",
                    value: other.to_owned(),
                })
            }
        };
        // Checked here so that a weak key stops the function at start,
        // not at the first handshake.
        let key = |name: &'static str| -> Result<Option<Secret>, ConfigError> {
            let Some(value) = lookup(name).filter(|v| !v.is_empty()) else {
                return Ok(None);
            };
            crate::auth::SigningKey::new(value.as_bytes())
                .map_err(|source| ConfigError::WeakKey { name, source })?;
            Ok(Some(Secret::new(value)))
        };
        config.jwt_secret = key("JWT_SECRET")?;
        config.jwt_secret_previous = key("JWT_SECRET_PREVIOUS")?;
        let named = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        config.jwt_secret_parameter = named("JWT_SECRET_PARAMETER");
        config.jwt_secret_previous_parameter = named("JWT_SECRET_PREVIOUS_PARAMETER");
        config.jwt_audience = named("JWT_AUDIENCE");
        if let Some(secs) = positive("JWT_SECRET_REFRESH_SECONDS")? {
            config.jwt_secret_refresh = Duration::from_secs(secs);
        }
        Ok(config)
    }
}

/// The Management API endpoint of a deployed stage. Built from the API id,
/// region and stage rather than the request's domain name, which may be a
/// custom domain.
pub fn management_endpoint(api_id: &str, region: &str, stage: &str) -> String {
    format!("https://{api_id}.execute-api.{region}.amazonaws.com/{stage}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn reads_defaults_and_overrides() {
        let c = from(&[("TABLE_NAME", "t")]).unwrap();
        assert_eq!(c, Config::new("t"));
        assert_eq!(c.ttl, Duration::from_secs(7500));
        let c = from(&[
            ("TABLE_NAME", "t"),
            ("CONNECTION_TTL_SECONDS", "60"),
            ("PUSH_CONCURRENCY", "8"),
            ("PUSH_CLIENT", "sdk"),
            ("MANAGEMENT_API_ENDPOINT", "http://127.0.0.1:3001/local"),
        ])
        .unwrap();
        assert_eq!(c.ttl, Duration::from_secs(60));
        assert_eq!(c.push_concurrency, 8);
        assert_eq!(c.push_client, PushClient::Sdk);
        assert_eq!(Config::new("t").push_client, PushClient::SignedHttp);
        assert_eq!(
            c.management_endpoint.as_deref(),
            Some("http://127.0.0.1:3001/local")
        );
    }

    #[test]
    fn reads_the_token_settings() {
        let key = "k".repeat(32);
        let previous = "p".repeat(40);
        let c = from(&[
            ("TABLE_NAME", "t"),
            ("JWT_SECRET", &key),
            ("JWT_SECRET_PREVIOUS", &previous),
            ("JWT_SECRET_PARAMETER", "/pushgate/jwt-secret"),
            (
                "JWT_SECRET_PREVIOUS_PARAMETER",
                " /pushgate/jwt-secret-previous ",
            ),
            ("JWT_AUDIENCE", "pushgate"),
            ("JWT_SECRET_REFRESH_SECONDS", "60"),
        ])
        .unwrap();
        assert_eq!(c.jwt_secret, Some(Secret::new(key)));
        assert_eq!(c.jwt_secret_previous, Some(Secret::new(previous)));
        assert_eq!(
            c.jwt_secret_previous_parameter.as_deref(),
            Some("/pushgate/jwt-secret-previous")
        );
        assert_eq!(c.jwt_audience.as_deref(), Some("pushgate"));
        assert_eq!(c.jwt_secret_refresh, Duration::from_secs(60));
        let c = from(&[("TABLE_NAME", "t"), ("JWT_AUDIENCE", "")]).unwrap();
        assert_eq!(c.jwt_audience, None, "empty means no audience required");
        assert_eq!(c.jwt_secret_refresh, Duration::from_secs(300));
    }

    #[test]
    fn refuses_keys_under_256_bits_without_showing_them() {
        for name in ["JWT_SECRET", "JWT_SECRET_PREVIOUS"] {
            let err = from(&[("TABLE_NAME", "t"), (name, "hunter2-is-short")]).unwrap_err();
            assert!(
                matches!(&err, ConfigError::WeakKey { name: n, .. } if *n == name),
                "{err:?}"
            );
            let message = err.to_string();
            assert!(
                message.contains(name) && message.contains("32"),
                "{message}"
            );
            assert!(!message.contains("hunter2"), "{message}");
        }
        assert!(from(&[("TABLE_NAME", "t"), ("JWT_SECRET_REFRESH_SECONDS", "0")]).is_err());
    }

    #[test]
    fn refuses_bad_values() {
        assert!(matches!(from(&[]), Err(ConfigError::Missing("TABLE_NAME"))));
        assert!(matches!(
            from(&[("TABLE_NAME", "t"), ("PUSH_CONCURRENCY", "0")]),
            Err(ConfigError::Invalid {
                name: "PUSH_CONCURRENCY",
                ..
            })
        ));
        assert!(matches!(
            from(&[("TABLE_NAME", "t"), ("PUSH_CLIENT", "curl")]),
            Err(ConfigError::Invalid {
                name: "PUSH_CLIENT",
                ..
            })
        ));
        assert_eq!(
            management_endpoint("abc123defg", "us-east-1", "prod"),
            "https://abc123defg.execute-api.us-east-1.amazonaws.com/prod"
        );
    }
}
