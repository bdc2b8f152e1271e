//! PostToConnection as one SigV4-signed HTTPS request on a plain hyper
//! client: the notifier's default [`Pusher`].
//!
//! The SDK adapter ([`crate::ManagementApiPusher`]) sends the same request
//! through the smithy orchestrator: interceptors, retry and timeout layers,
//! identity resolution and endpoint rules run for every push. The notifier
//! needs none of them per push (it retries with its own policy and budget,
//! and the endpoint is fixed), and at 256 MB it has 0.15 of a vCPU, where the
//! CPU per push decides how many subscribers one invocation reaches before
//! its deadline. Measured with `pushgate-bench cpu` (BENCHMARKS.md, "CPU per
//! push"): this adapter costs about a quarter of the SDK's CPU per push.
//!
//! What it keeps from the SDK: the request (`POST
//! /{stage}/@connections/{id}`, the id percent-encoded, SigV4 for
//! `execute-api` by `aws-sigv4`, the crate the SDK signs with), credentials
//! from the SDK config's provider chain (cached, refreshed before they
//! expire), rustls with the system's roots (on ring, as the functions' SDK
//! clients: see `pushgate_functions::runtime::sdk_config`), the 3 s connect and
//! 5 s attempt timeouts, and the same [`PushError`] for every status.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_runtime_api::client::identity::Identity;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::{BoxError, PushError, Pusher};

/// How long a TCP connect may take (the SDK adapter's `connect_timeout`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one push may take from send to the end of the answer (the SDK
/// adapter's `operation_attempt_timeout`).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Credentials are refreshed this long before they expire, so a push never
/// leaves with ones that expire on the way.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// How long credentials without an expiry (environment variables, as Lambda
/// sets them) are used before the provider is asked again: the SDK's
/// identity cache does the same.
const NO_EXPIRY_REUSE: Duration = Duration::from_secs(15 * 60);
/// Pooled connections idle longer than this are closed rather than reused:
/// well under the idle timeouts of load balancers in front of AWS APIs, so a
/// push rarely finds its connection closed under it.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(20);
/// The largest error answer read (API Gateway's are tens of bytes).
const MAX_ERROR_BODY: usize = 16 * 1024;

/// Why a [`SignedHttpPusher`] could not be built. Raised at start, so a
/// misconfigured notifier fails its first invocation loudly instead of
/// failing every push.
#[derive(Debug, thiserror::Error)]
pub enum PusherSetupError {
    /// The SDK config has no region to sign for.
    #[error("no AWS region configured to sign PostToConnection for")]
    NoRegion,
    /// The SDK config has no credentials provider.
    #[error("no AWS credentials provider configured")]
    NoCredentials,
    /// The endpoint is not an `http(s)://host/stage` URL.
    #[error("MANAGEMENT_API_ENDPOINT is not an http(s) URL with a host: {0:?}")]
    BadEndpoint(String),
    /// An `https` endpoint, but the system has no root certificates.
    #[error("no root certificates found to verify {0}")]
    NoRootCertificates(String),
    /// rustls refused the TLS configuration.
    #[error("TLS configuration")]
    Tls(#[source] rustls::Error),
}

/// [`Pusher`] sending PostToConnection as a SigV4-signed request on a
/// pooled hyper client (HTTP/1.1 keep-alive, like the SDK's).
pub struct SignedHttpPusher {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// `{endpoint}/@connections/`, the id appended per push.
    base: String,
    region: String,
    credentials: CredentialCache,
    attempt_timeout: Duration,
}

impl std::fmt::Debug for SignedHttpPusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedHttpPusher")
            .field("base", &self.base)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl SignedHttpPusher {
    /// A pusher for the stage at `endpoint`
    /// (`https://{apiId}.execute-api.{region}.amazonaws.com/{stage}`, or
    /// `http://…` for the emulator), signing for `sdk_config`'s region with
    /// its credentials provider.
    pub fn new(
        sdk_config: &aws_config::SdkConfig,
        endpoint: &str,
    ) -> Result<Self, PusherSetupError> {
        let region = sdk_config
            .region()
            .ok_or(PusherSetupError::NoRegion)?
            .to_string();
        let provider = sdk_config
            .credentials_provider()
            .ok_or(PusherSetupError::NoCredentials)?;
        Self::with_credentials(endpoint, region, provider)
    }

    /// A pusher for `endpoint` signing for `region` with `provider`.
    pub fn with_credentials(
        endpoint: &str,
        region: impl Into<String>,
        provider: SharedCredentialsProvider,
    ) -> Result<Self, PusherSetupError> {
        let endpoint = endpoint.trim_end_matches('/');
        let uri: hyper::Uri = endpoint
            .parse()
            .map_err(|_| PusherSetupError::BadEndpoint(endpoint.to_owned()))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(PusherSetupError::BadEndpoint(endpoint.to_owned())),
        };
        if uri.authority().is_none() {
            return Err(PusherSetupError::BadEndpoint(endpoint.to_owned()));
        }
        // Only an https endpoint needs roots; the emulator's http one must
        // not fail on a machine without a CA bundle.
        let mut roots = rustls::RootCertStore::empty();
        if https {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(PusherSetupError::NoRootCertificates(endpoint.to_owned()));
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(
            rustls::crypto::ring::default_provider().into(),
        )
        .with_safe_default_protocol_versions()
        .map_err(PusherSetupError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Ok(Self {
            client,
            base: format!("{endpoint}/@connections/"),
            region: region.into(),
            credentials: CredentialCache::new(provider),
            attempt_timeout: ATTEMPT_TIMEOUT,
        })
    }

    /// Replaces the 5 s [`ATTEMPT_TIMEOUT`] (tests).
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// The signed request for one push.
    pub fn request(
        &self,
        identity: &Identity,
        connection_id: &str,
        payload: &[u8],
    ) -> Result<hyper::Request<Full<Bytes>>, BoxError> {
        let uri = format!("{}{}", self.base, encode_path_segment(connection_id));
        let mut request = hyper::Request::post(&uri)
            .header("content-type", "application/octet-stream")
            .body(Full::new(Bytes::copy_from_slice(payload)))?;
        let host = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        let (instructions, _signature) = crate::sigv4::sign(
            identity,
            &self.region,
            SystemTime::now(),
            "POST",
            &uri,
            &[
                ("host", host.as_str()),
                ("content-type", "application/octet-stream"),
            ],
            payload,
        )?;
        instructions.apply_to_request_http1x(&mut request);
        Ok(request)
    }

    /// Sends `request` and sorts the answer; no timeout.
    async fn send(&self, request: hyper::Request<Full<Bytes>>) -> Result<(), PushError> {
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| transport(Box::new(e)))?;
        let status = response.status().as_u16();
        let error_type = response
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(':').next().unwrap_or(v).to_owned());
        // Read to the end either way, so the connection goes back to the
        // pool instead of being closed.
        let body = Limited::new(response.into_body(), MAX_ERROR_BODY)
            .collect()
            .await
            .map(|b| b.to_bytes());
        if (200..300).contains(&status) {
            return Ok(());
        }
        let message = body
            .ok()
            .and_then(|b| error_message(&b))
            .unwrap_or_default();
        Err(PushError::from_status(
            status,
            Box::new(ApiError {
                status,
                error_type,
                message,
            }),
        ))
    }
}

fn transport(source: BoxError) -> PushError {
    PushError::Failed {
        status: None,
        source,
    }
}

/// The `message` of an API Gateway error body (`{"message":"Forbidden"}`,
/// or `{"Message":…}`).
fn error_message(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        #[serde(alias = "Message")]
        message: String,
    }
    let body: ErrorBody = serde_json::from_slice(body).ok()?;
    Some(body.message.chars().take(200).collect())
}

/// A non-2xx answer from the Management API.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// `x-amzn-ErrorType`, e.g. `GoneException`.
    pub error_type: Option<String>,
    /// The body's `message`.
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "API Gateway answered {}", self.status)?;
        if let Some(error_type) = &self.error_type {
            write!(f, " {error_type}")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

#[async_trait]
impl Pusher for SignedHttpPusher {
    async fn post(&self, connection_id: &str, payload: &[u8]) -> Result<(), PushError> {
        let identity = self.credentials.identity().await?;
        let request = self
            .request(&identity, connection_id, payload)
            .map_err(transport)?;
        match tokio::time::timeout(self.attempt_timeout, self.send(request)).await {
            Ok(result) => result,
            Err(_) => Err(transport(
                format!(
                    "no answer within {:?} (attempt timeout)",
                    self.attempt_timeout
                )
                .into(),
            )),
        }
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, as the
/// SDK encodes a path label: connection ids end in `=`.
pub fn encode_path_segment(segment: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(segment.len() + 6);
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Credentials resolved once and reused until shortly before they expire.
///
/// Every push needs them, and the provider chain may be a network call (the
/// container credentials endpoint, STS); the SDK caches them in its identity
/// cache, which this adapter bypasses. Concurrent pushes that find them
/// stale wait for one refresh instead of each asking the provider.
struct CredentialCache {
    provider: SharedCredentialsProvider,
    current: parking_lot::RwLock<Option<Cached>>,
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct Cached {
    identity: Identity,
    refresh_at: SystemTime,
}

impl CredentialCache {
    fn new(provider: SharedCredentialsProvider) -> Self {
        Self {
            provider,
            current: parking_lot::RwLock::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    fn fresh(&self, now: SystemTime) -> Option<Identity> {
        self.current
            .read()
            .as_ref()
            .filter(|c| now < c.refresh_at)
            .map(|c| c.identity.clone())
    }

    async fn identity(&self) -> Result<Identity, PushError> {
        if let Some(identity) = self.fresh(SystemTime::now()) {
            return Ok(identity);
        }
        let _one_refresh = self.refreshing.lock().await;
        let now = SystemTime::now();
        if let Some(identity) = self.fresh(now) {
            return Ok(identity);
        }
        let credentials =
            tokio::time::timeout(ATTEMPT_TIMEOUT, self.provider.provide_credentials())
                .await
                .map_err(|_| transport("the credentials provider did not answer in time".into()))?
                .map_err(|e| transport(Box::new(e)))?;
        let refresh_at = match credentials.expiry() {
            Some(expiry) => expiry
                .checked_sub(REFRESH_BEFORE_EXPIRY)
                .unwrap_or(expiry)
                .max(now),
            None => now + NO_EXPIRY_REUSE,
        };
        let identity = Identity::from(credentials);
        *self.current.write() = Some(Cached {
            identity: identity.clone(),
            refresh_at,
        });
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use aws_credential_types::Credentials;

    #[test]
    fn connection_ids_are_percent_encoded() {
        assert_eq!(encode_path_segment("abcDEF12-_.~"), "abcDEF12-_.~");
        assert_eq!(
            encode_path_segment("L0SM9cOFvHcCIhw="),
            "L0SM9cOFvHcCIhw%3D"
        );
        assert_eq!(encode_path_segment("a/b+c"), "a%2Fb%2Bc");
    }

    #[test]
    fn reads_the_message_of_an_error_body() {
        assert_eq!(
            error_message(br#"{"message": "Forbidden"}"#).as_deref(),
            Some("Forbidden")
        );
        assert_eq!(
            error_message(br#"{"Message":"Rate exceeded"}"#).as_deref(),
            Some("Rate exceeded")
        );
        assert_eq!(error_message(b"<html>"), None);
    }

    #[test]
    fn refuses_endpoints_it_cannot_post_to() {
        let provider = SharedCredentialsProvider::new(Credentials::for_tests());
        for bad in [
            "",
            "execute-api.example/stage",
            "ftp://host/stage",
            "http://",
        ] {
            assert!(
                matches!(
                    SignedHttpPusher::with_credentials(bad, "us-east-1", provider.clone()),
                    Err(PusherSetupError::BadEndpoint(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn signs_for_execute_api_in_the_region_with_the_session_token() {
        let pusher = SignedHttpPusher::with_credentials(
            "http://127.0.0.1:1/local/",
            "eu-west-1",
            SharedCredentialsProvider::new(Credentials::for_tests_with_session_token()),
        )
        .unwrap();
        let identity = Identity::from(Credentials::for_tests_with_session_token());
        let request = pusher.request(&identity, "abc=", b"hello").unwrap();
        assert_eq!(
            request.uri().to_string(),
            "http://127.0.0.1:1/local/@connections/abc%3D"
        );
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let auth = header("authorization");
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=ANOTREAL/"),
            "{auth}"
        );
        assert!(
            auth.contains("/eu-west-1/execute-api/aws4_request"),
            "{auth}"
        );
        assert!(
            auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"),
            "{auth}"
        );
        assert_eq!(header("x-amz-security-token"), "notarealsessiontoken");
        assert!(!header("x-amz-date").is_empty());
    }
}
