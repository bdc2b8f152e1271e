//! API Gateway's side of an invocation: ids in its style, its time formats,
//! the `$connect` / message / `$disconnect` events exactly as it builds them,
//! and the one log line per invocation that Lambda writes (`REPORT`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::apigw::{
    ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest,
    ApiGatewayWebsocketProxyRequestContext,
};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderMap, HeaderName, HeaderValue, Method};
use base64::engine::general_purpose::URL_SAFE;
use base64::Engine;
use pushgate_domain::event::rfc3339;
use pushgate_functions::FunctionError;
use rand::RngCore;

/// A 16-character id like API Gateway's connection, request and message ids
/// (11 random bytes in base64, ending in `=`). The URL-safe alphabet keeps
/// ids usable in `@connections` URLs as they are.
pub fn new_id() -> String {
    let mut bytes = [0u8; 11];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE.encode(bytes)
}

/// Now, in epoch milliseconds.
pub fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// `epoch_ms` as ISO 8601 with milliseconds (`2026-11-22T10:00:00.123Z`),
/// the form of `connectedAt` in GetConnection.
pub fn iso8601_ms(epoch_ms: i64) -> String {
    let seconds = rfc3339(epoch_ms.div_euclid(1000));
    let base = seconds.trim_end_matches('Z');
    format!("{base}.{:03}Z", epoch_ms.rem_euclid(1000))
}

/// `epoch_ms` in API Gateway's `requestTime` form (`22/Nov/2026:10:00:00 +0000`).
pub fn request_time(epoch_ms: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // `YYYY-MM-DDTHH:MM:SSZ`, always ASCII.
    let iso = rfc3339(epoch_ms.div_euclid(1000));
    let field = |range: std::ops::Range<usize>| iso.get(range).unwrap_or("00");
    let month = field(5..7)
        .parse::<usize>()
        .ok()
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .copied()
        .unwrap_or("Jan");
    format!(
        "{}/{month}/{}:{} +0000",
        field(8..10),
        field(0..4),
        field(11..19)
    )
}

/// What API Gateway knows about a connection and repeats in every event.
#[derive(Debug, Clone)]
pub struct ConnectionContext {
    /// The connection id.
    pub connection_id: String,
    /// When the handshake arrived (epoch ms).
    pub connected_at_ms: i64,
    /// The client's address.
    pub source_ip: String,
    /// The client's `User-Agent`, if any.
    pub user_agent: Option<String>,
    /// The `Host` the client used.
    pub domain_name: String,
    /// The stage.
    pub stage: String,
    /// The API id.
    pub api_id: String,
}

// The event structs are `#[non_exhaustive]`: they can only be built from
// `Default` and then filled in.
#[allow(clippy::field_reassign_with_default)]
fn context(
    conn: &ConnectionContext,
    route_key: &str,
    event_type: &str,
    now: i64,
) -> ApiGatewayWebsocketProxyRequestContext {
    let mut c = ApiGatewayWebsocketProxyRequestContext::default();
    c.route_key = Some(route_key.to_owned());
    c.event_type = Some(event_type.to_owned());
    c.extended_request_id = Some(new_id());
    c.request_id = c.extended_request_id.clone();
    c.request_time = Some(request_time(now));
    c.request_time_epoch = now;
    c.message_direction = Some("IN".to_owned());
    c.stage = Some(conn.stage.clone());
    c.connected_at = conn.connected_at_ms;
    c.connection_id = Some(conn.connection_id.clone());
    c.domain_name = Some(conn.domain_name.clone());
    c.apiid = Some(conn.api_id.clone());
    c.identity.source_ip = Some(conn.source_ip.clone());
    c.identity.user_agent = conn.user_agent.clone();
    c
}

/// The `$connect` event: the handshake's headers (plus the `X-Forwarded-*`
/// ones API Gateway adds) and its query string, single- and multi-valued.
#[allow(clippy::field_reassign_with_default)]
pub fn connect_event(
    conn: &ConnectionContext,
    headers: &HeaderMap,
    query: &[(String, String)],
    now: i64,
) -> ApiGatewayWebsocketProxyRequest {
    let mut all = headers.clone();
    let mut add = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            all.insert(HeaderName::from_static(name), v);
        }
    };
    add("x-forwarded-for", &conn.source_ip);
    add("x-forwarded-proto", "http");
    add(
        "x-amzn-trace-id",
        &format!("Root=1-{:08x}-{}", now / 1000, new_id()),
    );
    let mut single = std::collections::HashMap::new();
    let mut multi: std::collections::HashMap<String, Vec<String>> =
        std::collections::HashMap::new();
    for (k, v) in query {
        single.insert(k.clone(), v.clone());
        multi.entry(k.clone()).or_default().push(v.clone());
    }
    let mut event = ApiGatewayWebsocketProxyRequest::default();
    event.headers = all.clone();
    event.multi_value_headers = all;
    if !query.is_empty() {
        event.query_string_parameters = single.into();
        event.multi_value_query_string_parameters = multi.into();
    }
    event.request_context = context(conn, "$connect", "CONNECT", now);
    event.is_base64_encoded = false;
    event
}

/// A MESSAGE event for a text frame routed to `route_key`.
#[allow(clippy::field_reassign_with_default)]
pub fn message_event(
    conn: &ConnectionContext,
    route_key: &str,
    body: String,
    now: i64,
) -> ApiGatewayWebsocketProxyRequest {
    let mut event = ApiGatewayWebsocketProxyRequest::default();
    event.request_context = context(conn, route_key, "MESSAGE", now);
    event.request_context.message_id = Some(new_id());
    event.body = Some(body);
    event.is_base64_encoded = false;
    event
}

/// The `$disconnect` event with the close code and reason.
#[allow(clippy::field_reassign_with_default)]
pub fn disconnect_event(
    conn: &ConnectionContext,
    status_code: u16,
    reason: &str,
    now: i64,
) -> ApiGatewayWebsocketProxyRequest {
    let mut headers = HeaderMap::new();
    if let Ok(host) = HeaderValue::from_str(&conn.domain_name) {
        headers.insert(HeaderName::from_static("host"), host);
    }
    if let Ok(ip) = HeaderValue::from_str(&conn.source_ip) {
        headers.insert(HeaderName::from_static("x-forwarded-for"), ip);
    }
    let mut event = ApiGatewayWebsocketProxyRequest::default();
    event.headers = headers.clone();
    event.multi_value_headers = headers;
    event.http_method = None::<Method>;
    event.request_context = context(conn, "$disconnect", "DISCONNECT", now);
    event.request_context.disconnect_status_code = Some(i64::from(status_code));
    event.request_context.disconnect_reason = Some(reason.to_owned());
    event.is_base64_encoded = false;
    event
}

/// API Gateway's integration timeout: it stops waiting for any route's
/// function after 29 s, whatever the function's own timeout.
pub const INTEGRATION_TIMEOUT: Duration = Duration::from_secs(29);

/// API Gateway's error frame to a client, byte for byte as it sends it
/// (note the one space after `"message":` and none after the others), e.g.
/// `{"message": "Internal server error", "connectionId":"VNRUSeldSwMCIRQ=",
/// "requestId":"VNRXVFJOywMF3-Q="}` (aws-samples/simple-websockets-chat-app
/// issue 42) and `{"message": "Endpoint request timed out", …}`
/// (Kludex/mangum issue 128).
fn error_frame(message: &str, connection_id: &str, request_id: &str) -> String {
    let quoted = |s: &str| serde_json::Value::from(s).to_string();
    format!(
        r#"{{"message": {}, "connectionId":{}, "requestId":{}}}"#,
        quoted(message),
        quoted(connection_id),
        quoted(request_id)
    )
}

/// API Gateway's answer to a client whose route function failed (an error,
/// or Lambda's timeout cut it off).
pub fn internal_server_error(connection_id: &str, request_id: &str) -> String {
    error_frame("Internal server error", connection_id, request_id)
}

/// API Gateway's answer to a client when its own 29 s integration timeout
/// passes before the function answers.
pub fn endpoint_timed_out(connection_id: &str, request_id: &str) -> String {
    error_frame("Endpoint request timed out", connection_id, request_id)
}

/// Why an invocation gave no response.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The function returned an error.
    #[error(transparent)]
    Failed(#[from] FunctionError),
    /// The function was still running at its deadline and was cut off.
    #[error("Task timed out after {:.2} seconds", after.as_secs_f64())]
    TimedOut {
        /// How long it ran.
        after: Duration,
        /// Whether API Gateway's integration timeout passed first (the
        /// function's own timeout is 29 s or more).
        integration: bool,
    },
}

impl InvokeError {
    /// The frame API Gateway sends the client instead of a route response.
    pub fn client_frame(&self, connection_id: &str, request_id: &str) -> String {
        match self {
            Self::TimedOut {
                integration: true, ..
            } => endpoint_timed_out(connection_id, request_id),
            _ => internal_server_error(connection_id, request_id),
        }
    }
}

/// The body of a route response as text (binary bodies are sent as they
/// are, lossily decoded).
pub fn body_text(response: &ApiGatewayProxyResponse) -> Option<String> {
    match response.body.as_ref()? {
        Body::Empty => None,
        Body::Text(t) => Some(t.clone()),
        Body::Binary(b) => Some(String::from_utf8_lossy(b).into_owned()),
    }
}

/// Runs one route function with its Lambda `timeout` (and API Gateway's
/// [`INTEGRATION_TIMEOUT`]) and writes Lambda's `REPORT` line for it:
/// function, route, connection, request id, status and duration. Bodies and
/// tokens are never logged. A function still running at the deadline is
/// dropped where it stands, as Lambda stops a timed-out invocation: what it
/// already wrote stays written.
pub async fn invoke<F>(
    function: &'static str,
    timeout: Duration,
    request: ApiGatewayWebsocketProxyRequest,
    run: impl FnOnce(ApiGatewayWebsocketProxyRequest) -> F,
) -> Result<ApiGatewayProxyResponse, InvokeError>
where
    F: std::future::Future<Output = Result<ApiGatewayProxyResponse, FunctionError>>,
{
    let context = &request.request_context;
    let route = context.route_key.clone().unwrap_or_default();
    let connection_id = context.connection_id.clone().unwrap_or_default();
    let request_id = context.request_id.clone().unwrap_or_default();
    let limit = timeout.min(INTEGRATION_TIMEOUT);
    let started = Instant::now();
    let result = match tokio::time::timeout(limit, run(request)).await {
        Ok(result) => result.map_err(InvokeError::Failed),
        Err(_) => Err(InvokeError::TimedOut {
            after: started.elapsed(),
            integration: timeout >= INTEGRATION_TIMEOUT,
        }),
    };
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    match &result {
        Ok(response) => tracing::info!(
            function,
            route = %route,
            connection_id = %connection_id,
            request_id = %request_id,
            status = response.status_code,
            duration_ms = format_args!("{duration_ms:.2}"),
            "REPORT"
        ),
        Err(InvokeError::Failed(e)) => tracing::error!(
            function,
            route = %route,
            connection_id = %connection_id,
            request_id = %request_id,
            error = %e.chain(),
            duration_ms = format_args!("{duration_ms:.2}"),
            "REPORT invocation failed"
        ),
        Err(e @ InvokeError::TimedOut { .. }) => tracing::error!(
            function,
            route = %route,
            connection_id = %connection_id,
            request_id = %request_id,
            error = %e,
            duration_ms = format_args!("{duration_ms:.2}"),
            "REPORT invocation timed out"
        ),
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_times_look_like_api_gateway() {
        let id = new_id();
        assert_eq!(id.len(), 16);
        assert!(id.ends_with('='));
        assert!(!id.contains('/') && !id.contains('+'));
        assert_eq!(
            request_time(1_795_341_600_000),
            "22/Nov/2026:10:00:00 +0000"
        );
        assert_eq!(iso8601_ms(1_795_341_600_123), "2026-11-22T10:00:00.123Z");
    }

    #[test]
    fn error_frames_have_api_gateways_exact_shape() {
        assert_eq!(
            internal_server_error("VNRUSeldSwMCIRQ=", "VNRXVFJOywMF3-Q="),
            r#"{"message": "Internal server error", "connectionId":"VNRUSeldSwMCIRQ=", "requestId":"VNRXVFJOywMF3-Q="}"#
        );
        let timed_out = InvokeError::TimedOut {
            after: Duration::from_secs(29),
            integration: true,
        };
        assert_eq!(
            timed_out.client_frame("a", "b"),
            r#"{"message": "Endpoint request timed out", "connectionId":"a", "requestId":"b"}"#
        );
    }
}
