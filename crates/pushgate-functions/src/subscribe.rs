//! `subscribe`: checks the connection's scope, stores a subscription while
//! the connection exists and replies `subscribed` with the stream's `seq`
//! and `epoch`, or `error` with a stable code.
//!
//! With `since`, the client resumes (see `docs/design.md`, "Resume"): the
//! reply says whether history still reaches back (`recovered`), and when
//! it does, every retained notification after `since` follows on the same
//! connection, in order. The subscription is stored *before* history is
//! read, so an event appended after the read is fanned out to this
//! connection; one appended before it is in the replay. The two-way reply
//! would reach the client after anything posted during the call, so a
//! replaying `subscribe` posts its own `subscribed` frame first, then the
//! replay, and returns no body.
//!
//! `{"action":"subscribe","userId":…}` resumes the user's own stream the
//! same way; it stores nothing, since every connection of a user gets the
//! user's notifications through the `byUser` index.
//!
//! `{"action":"ping"}` is answered `pong` here too, for deployments that
//! route it to a function rather than to API Gateway's mock integration.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use pushgate_domain::auth::{authorize, Action, Denied};
use pushgate_domain::protocol::Resume;
use pushgate_domain::record::{is_recovered, SubscriptionRecord};
use pushgate_domain::{
    ClientFrame, ConnectionId, ConnectionRecord, EntityId, ErrorCode, ServerFrame, StreamKey,
};
use pushgate_store::StoreError;

use crate::{connection_id, default_route, reply, FunctionError, NotifierDeps};

/// Attempts at storing a subscription that DynamoDB cancelled for a
/// concurrent transaction on the same connection (a page that subscribes to
/// several entities at once on load).
pub const CONFLICT_ATTEMPTS: u32 = 6;

/// The error code of a scope check that failed.
pub(crate) fn denied_code(denied: &Denied) -> ErrorCode {
    match denied {
        Denied::Forbidden { .. } => ErrorCode::Forbidden,
        Denied::TokenExpired => ErrorCode::TokenExpired,
    }
}

fn error_reply(code: ErrorCode, message: impl Into<String>) -> ApiGatewayProxyResponse {
    reply::frame(200, &ServerFrame::error(code, message))
}

/// The `error` reply refusing a subscribe of `stream`, naming it.
fn refusal(
    code: ErrorCode,
    message: impl Into<String>,
    stream: &StreamKey,
) -> ApiGatewayProxyResponse {
    reply::frame(200, &ServerFrame::refusal(code, message, stream))
}

/// Stores the subscription, retrying `TransactionConflict` with the
/// notifier's backoff.
async fn store_subscription(
    deps: &NotifierDeps,
    id: &ConnectionId,
    entity_id: &EntityId,
) -> Result<(), StoreError> {
    let d = &deps.deps;
    let mut attempt = 1;
    loop {
        let record = SubscriptionRecord {
            connection_id: id.clone(),
            entity_id: entity_id.clone(),
            subscribed_at_ms: d.clock.now_ms(),
            expires_at: d.expires_at(),
        };
        match d
            .store
            .subscribe(&record, d.clock.now_secs(), d.config.max_subscriptions)
            .await
        {
            Err(StoreError::TransactionConflict) if attempt < CONFLICT_ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(deps.retry.backoff(attempt)).await;
            }
            other => return other,
        }
    }
}

/// Handles a `subscribe` (or `ping`) frame.
pub async fn handle(
    deps: &NotifierDeps,
    request: ApiGatewayWebsocketProxyRequest,
) -> Result<ApiGatewayProxyResponse, FunctionError> {
    let id = connection_id(&request.request_context)?;
    let frame = match ClientFrame::parse(request.body.as_deref()) {
        Ok(ClientFrame::Ping) => return Ok(reply::frame(200, &ServerFrame::Pong)),
        Ok(f @ (ClientFrame::Subscribe { .. } | ClientFrame::SubscribeUser { .. })) => f,
        Ok(_) => return Ok(default_route::wrong_route("subscribe")),
        Err(e) => return Ok(reply::frame(200, &e.to_frame())),
    };
    let d = &deps.deps;
    let now = d.clock.now_secs();
    let Some(connection) = d.store.connection(&id, now).await? else {
        return Ok(error_reply(
            ErrorCode::ConnectionGone,
            StoreError::ConnectionGone(id).to_string(),
        ));
    };
    let (stream, resume) =
        match frame {
            ClientFrame::Subscribe { entity_id, resume } => {
                let stream = StreamKey::Entity(entity_id.clone());
                if let Err(denied) = authorize(
                    connection.scope.as_ref(),
                    Action::Subscribe,
                    &entity_id,
                    now,
                ) {
                    return Ok(refusal(denied_code(&denied), denied.to_string(), &stream));
                }
                match store_subscription(deps, &id, &entity_id).await {
                    Ok(()) => {}
                    Err(e @ StoreError::ConnectionGone(_)) => {
                        return Ok(refusal(ErrorCode::ConnectionGone, e.to_string(), &stream))
                    }
                    Err(e @ StoreError::TooManySubscriptions { .. }) => {
                        return Ok(refusal(
                            ErrorCode::TooManySubscriptions,
                            e.to_string(),
                            &stream,
                        ))
                    }
                    Err(StoreError::TransactionConflict) => return Ok(refusal(
                        ErrorCode::InternalError,
                        "the subscription met concurrent changes on this connection; send it again",
                        &stream,
                    )),
                    Err(e) => return Err(e.into()),
                }
                tracing::info!(connection_id = %id, entity_id = %entity_id, "subscribed");
                (stream, resume)
            }
            ClientFrame::SubscribeUser { user_id, resume } => {
                let stream = StreamKey::User(user_id.clone());
                if !owns_user_stream(&connection, &user_id, now) {
                    return Ok(refusal(
                        ErrorCode::Forbidden,
                        "a connection may resume only its own user's stream",
                        &stream,
                    ));
                }
                (stream, resume)
            }
            _ => return Ok(default_route::wrong_route("subscribe")),
        };
    respond(deps, &id, stream, resume).await
}

fn owns_user_stream(
    connection: &ConnectionRecord,
    user_id: &pushgate_domain::UserId,
    now: i64,
) -> bool {
    let token_live = connection.scope.as_ref().is_none_or(|s| s.expires_at > now);
    connection.user_id.as_ref() == Some(user_id) && token_live
}

/// The `subscribed` reply, and the replay when resuming.
async fn respond(
    deps: &NotifierDeps,
    id: &ConnectionId,
    stream: StreamKey,
    resume: Option<Resume>,
) -> Result<ApiGatewayProxyResponse, FunctionError> {
    let d = &deps.deps;
    let now = d.clock.now_secs();
    let head = d.store.stream_head(&stream, now).await?;
    let (entity_id, user_id) = match &stream {
        StreamKey::Entity(e) => (Some(e.clone()), None),
        StreamKey::User(u) => (None, Some(u.clone())),
    };
    let subscribed = |recovered| ServerFrame::Subscribed {
        entity_id: entity_id.clone(),
        user_id: user_id.clone(),
        seq: head.as_ref().map_or(0, |h| h.seq),
        epoch: head.as_ref().map(|h| h.epoch.clone()),
        recovered,
    };
    let Some(resume) = resume else {
        return Ok(reply::frame(200, &subscribed(None)));
    };
    let behind = head.as_ref().is_some_and(|h| h.seq > resume.since);
    let history = if behind {
        let limit = usize::try_from(d.config.retention.max_entries).unwrap_or(usize::MAX);
        d.store.history(&stream, resume.since, limit, now).await?
    } else {
        Vec::new()
    };
    let recovered = is_recovered(
        head.as_ref(),
        resume.since,
        resume.epoch.as_deref(),
        history.first().map(|e| e.seq),
    );
    tracing::info!(connection_id = %id, stream = %stream.pk(), since = resume.since,
        recovered, replay = if recovered { history.len() } else { 0 }, "resumed");
    if !recovered || history.is_empty() {
        // Nothing to replay: the client reloads (not recovered) or is
        // up to date.
        return Ok(reply::frame(200, &subscribed(Some(recovered))));
    }
    let first = subscribed(Some(true)).to_json();
    for payload in std::iter::once(first.as_str()).chain(history.iter().map(|e| e.payload.as_str()))
    {
        if let Err(e) = deps.pusher.post(id.as_str(), payload.as_bytes()).await {
            // The client sees a gap (or no reply) and resumes again.
            tracing::warn!(connection_id = %id, error = %e, "replay stopped");
            break;
        }
    }
    Ok(reply::empty(200))
}
