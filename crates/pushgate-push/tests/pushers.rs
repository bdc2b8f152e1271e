//! Both PostToConnection clients against one stub Management API: the same
//! request on the wire (path, body, a SigV4 signature that verifies), the
//! same [`PushError`] for every status API Gateway answers, and bounded
//! waits. The signed client's credential cache is tested here too.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use pushgate_push::{ManagementApiPusher, PushError, Pusher, SignedHttpPusher};

const REGION: &str = "eu-west-1";

/// One request as the stub received it.
#[derive(Clone, Debug)]
struct Received {
    method: String,
    /// The raw path, percent-encoding and all.
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone, Default)]
struct Stub {
    received: Arc<Mutex<Vec<Received>>>,
}

/// Answers by the connection id's first letters, as API Gateway would.
async fn management_api(State(stub): State<Stub>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let path = parts.uri.path().to_owned();
    stub.received.lock().push(Received {
        method: parts.method.to_string(),
        path: path.clone(),
        headers: parts.headers.clone(),
        body,
    });
    let id = path.rsplit('/').next().unwrap_or_default();
    let error = |status: StatusCode, kind: &str, message: &str| {
        (
            status,
            [
                ("x-amzn-errortype", kind),
                ("content-type", "application/json"),
            ],
            format!(r#"{{"message":"{message}"}}"#),
        )
            .into_response()
    };
    match id {
        i if i.starts_with("gone") => error(StatusCode::GONE, "GoneException", "gone"),
        i if i.starts_with("big") => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            "too large",
        ),
        i if i.starts_with("forbidden") => {
            error(StatusCode::FORBIDDEN, "ForbiddenException", "Forbidden")
        }
        i if i.starts_with("throttled") => error(
            StatusCode::TOO_MANY_REQUESTS,
            "LimitExceededException",
            "Rate exceeded",
        ),
        i if i.starts_with("broken") => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerErrorException",
            "Internal server error",
        ),
        i if i.starts_with("unavailable") => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "try later",
        ),
        i if i.starts_with("bad") => error(
            StatusCode::BAD_REQUEST,
            "BadRequestException",
            "Invalid connectionId",
        ),
        i if i.starts_with("stall") => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::OK.into_response()
        }
        _ => StatusCode::OK.into_response(),
    }
}

/// A stub on 127.0.0.1; its stage URL.
async fn start_stub() -> (Stub, String) {
    let stub = Stub::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .fallback(management_api)
        .with_state(stub.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (stub, format!("http://{addr}/local"))
}

fn credentials() -> Credentials {
    Credentials::new(
        "AKIDTEST",
        "test-secret",
        Some("test-session-token".into()),
        None,
        "test",
    )
}

async fn sdk_pusher(endpoint: &str) -> Arc<dyn Pusher> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(credentials())
        .load()
        .await;
    Arc::new(ManagementApiPusher::new(&config, endpoint))
}

fn http_pusher(endpoint: &str, provider: SharedCredentialsProvider) -> SignedHttpPusher {
    SignedHttpPusher::with_credentials(endpoint, REGION, provider).unwrap()
}

/// Both clients, named.
async fn both(endpoint: &str) -> Vec<(&'static str, Arc<dyn Pusher>)> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(credentials())
        .load()
        .await;
    vec![
        ("sdk", sdk_pusher(endpoint).await),
        (
            "http",
            Arc::new(SignedHttpPusher::new(&config, endpoint).unwrap()),
        ),
    ]
}

/// What API Gateway checks: the request the stub received verifies with
/// the test key, so the path, host and body on the wire are the ones that
/// were signed.
fn assert_signature_verifies(r: &Received) {
    let verified = pushgate_push::sigv4::verify(
        &r.method,
        &r.path,
        &r.headers,
        &r.body,
        REGION,
        SystemTime::now(),
        |key| (key == "AKIDTEST").then(|| "test-secret".to_owned()),
    );
    assert_eq!(verified, Ok(()), "signature does not verify for {}", r.path);
}

#[tokio::test]
async fn both_clients_send_the_same_signed_request() {
    let (stub, endpoint) = start_stub().await;
    for (name, pusher) in both(&endpoint).await {
        pusher
            .post("L0SM9cOFvHcCIhw=", br#"{"type":"notification"}"#)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let r = stub.received.lock().pop().unwrap();
        assert_eq!(r.method, "POST", "{name}");
        assert_eq!(r.path, "/local/@connections/L0SM9cOFvHcCIhw%3D", "{name}");
        assert_eq!(&r.body[..], br#"{"type":"notification"}"#, "{name}");
        assert_eq!(
            r.headers["x-amz-security-token"], "test-session-token",
            "{name}"
        );
        let auth = r.headers["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/")
                && auth.contains(&format!("/{REGION}/execute-api/aws4_request")),
            "{name}: {auth}"
        );
        assert_signature_verifies(&r);
    }
}

#[tokio::test]
async fn both_clients_sort_every_status_the_same_way() {
    let (_stub, endpoint) = start_stub().await;
    for (name, pusher) in both(&endpoint).await {
        let post = |id: &'static str| {
            let pusher = Arc::clone(&pusher);
            async move { pusher.post(id, b"x").await }
        };
        assert!(
            matches!(post("gone1=").await, Err(PushError::Gone)),
            "{name}"
        );
        assert!(
            matches!(post("big1=").await, Err(PushError::PayloadTooLarge)),
            "{name}"
        );
        assert!(
            matches!(post("forbidden1=").await, Err(PushError::Forbidden)),
            "{name}"
        );
        let throttled = post("throttled1=").await.unwrap_err();
        assert!(matches!(throttled, PushError::Throttled), "{name}");
        assert!(throttled.is_retryable());
        for (id, status) in [("broken1=", 500), ("unavailable1=", 503)] {
            let e = post(id).await.unwrap_err();
            assert!(
                matches!(e, PushError::Failed { status: Some(s), .. } if s == status),
                "{name} {id}: {e:?}"
            );
            assert!(e.is_retryable(), "{name} {id}");
        }
        let bad = post("bad1=").await.unwrap_err();
        assert!(
            matches!(
                bad,
                PushError::Failed {
                    status: Some(400),
                    ..
                }
            ),
            "{name}: {bad:?}"
        );
        assert!(!bad.is_retryable(), "{name}");
        // After all those errors the pooled connections still work.
        post("ok1=").await.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[tokio::test]
async fn the_signed_client_says_what_api_gateway_answered() {
    let (_stub, endpoint) = start_stub().await;
    let pusher = http_pusher(&endpoint, SharedCredentialsProvider::new(credentials()));
    let e = pusher.post("forbidden1=", b"x").await.unwrap_err();
    assert!(matches!(e, PushError::Forbidden));
    let e = pusher.post("bad1=", b"secret body").await.unwrap_err();
    let source = std::error::Error::source(&e).unwrap().to_string();
    assert_eq!(
        source,
        "API Gateway answered 400 BadRequestException: Invalid connectionId"
    );
}

#[tokio::test]
async fn a_stalled_push_ends_at_the_attempt_timeout() {
    let (_stub, endpoint) = start_stub().await;
    let pusher = http_pusher(&endpoint, SharedCredentialsProvider::new(credentials()))
        .with_attempt_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let e = pusher.post("stall1=", b"x").await.unwrap_err();
    assert!(matches!(e, PushError::Failed { status: None, .. }), "{e:?}");
    assert!(e.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_retryable_failure() {
    // A port nothing listens on: bind, read the port, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let endpoint = format!("http://127.0.0.1:{port}/local");
    for (name, pusher) in both(&endpoint).await {
        let e = pusher.post("abc=", b"x").await.unwrap_err();
        assert!(
            matches!(e, PushError::Failed { status: None, .. }),
            "{name}: {e:?}"
        );
        assert!(e.is_retryable(), "{name}");
    }
}

/// A provider that counts its calls and hands out credentials expiring
/// `lifetime` from now (`None`: never).
#[derive(Debug)]
struct CountingProvider {
    calls: Arc<AtomicUsize>,
    lifetime: Option<Duration>,
}

impl ProvideCredentials for CountingProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        future::ProvideCredentials::ready(Ok(Credentials::new(
            format!("AKID{n}"),
            "secret",
            None,
            self.lifetime.map(|l| SystemTime::now() + l),
            "counting",
        )))
    }
}

async fn pushes_with(lifetime: Option<Duration>, pushes: usize) -> (usize, Vec<String>) {
    let (stub, endpoint) = start_stub().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let provider = CountingProvider {
        calls: Arc::clone(&calls),
        lifetime,
    };
    let pusher = Arc::new(http_pusher(
        &endpoint,
        SharedCredentialsProvider::new(provider),
    ));
    // The first push alone, then the rest at once: concurrent pushes that
    // find the credentials stale must share one refresh.
    pusher.post("ok0=", b"x").await.unwrap();
    let rest = (1..pushes).map(|i| {
        let pusher = Arc::clone(&pusher);
        async move { pusher.post(&format!("ok{i}="), b"x").await }
    });
    for result in futures::future::join_all(rest).await {
        result.unwrap();
    }
    let keys = stub
        .received
        .lock()
        .iter()
        .map(|r| {
            let auth = r.headers["authorization"].to_str().unwrap();
            auth.split("Credential=")
                .nth(1)
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    (calls.load(Ordering::SeqCst), keys)
}

#[tokio::test]
async fn credentials_are_resolved_once_while_fresh() {
    let (calls, keys) = pushes_with(Some(Duration::from_secs(3600)), 20).await;
    assert_eq!(calls, 1);
    assert_eq!(keys.len(), 20);
    assert!(keys.iter().all(|k| k == "AKID0"), "{keys:?}");
    // Environment credentials (no expiry) are reused too.
    let (calls, _) = pushes_with(None, 10).await;
    assert_eq!(calls, 1);
}

#[tokio::test]
async fn credentials_about_to_expire_are_refreshed_before_use() {
    // Inside the 5-minute refresh window: every push asks again, in turn.
    let (calls, keys) = pushes_with(Some(Duration::from_secs(60)), 5).await;
    assert_eq!(calls, 5, "{keys:?}");
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        5,
        "each push signed with its own fresh key: {keys:?}"
    );
}
