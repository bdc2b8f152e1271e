//! The DynamoDB adapter: the single-table design of `docs/design.md` on
//! `aws-sdk-dynamodb`. Appends to a stream are one conditional transaction
//! guarded by the head's previous seq (see "Sequence numbers" there). Subscriptions are written in one conditional
//! transaction with a check on the connection item, so a `subscribe` racing
//! `$disconnect` leaves no orphan; every multi-item read pages through
//! `LastEvaluatedKey`; deletes go through BatchWriteItem in chunks of 25,
//! retrying `UnprocessedItems`.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, DeleteRequest, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, KeysAndAttributes, Projection, ProjectionType, Put,
    ScalarAttributeType, TimeToLiveSpecification, TransactWriteItem, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use pushgate_domain::auth::Scope;
use pushgate_domain::record::{
    connection_pk, event_sk, history_sk, is_live, subscription_sk, CONNECTION_SK,
    HISTORY_SK_PREFIX, STREAM_HEAD_SK, SUBSCRIPTION_SK_PREFIX,
};
use pushgate_domain::retry::RetryPolicy;
use pushgate_domain::{
    ConnectionId, ConnectionRecord, DeliveryProgress, EntityId, HistoryEntry, IdRange, Retention,
    StreamHead, StreamKey, SubscriptionRecord, UserId,
};

use crate::{Appended, ConnectionStore, PayloadFn, StoreError, SubscriberPage, APPEND_RETRY};

/// Name of the index from an entity to its subscribers.
pub const BY_ENTITY_INDEX: &str = "byEntity";
/// Name of the (sparse) index from a user to their connections.
pub const BY_USER_INDEX: &str = "byUser";
/// Items per BatchWriteItem call (DynamoDB's maximum).
const BATCH_SIZE: usize = 25;
/// Reads-and-writes of a subscription before giving up on a connection
/// whose subscriptions keep changing underneath.
const SUBSCRIBE_ATTEMPTS: u32 = 8;
/// How BatchWriteItem and BatchGetItem calls that leave items unprocessed
/// (DynamoDB's answer to throttling inside a batch) are retried before it
/// is an error: 8 attempts, ceilings from 50 ms doubling to 1.6 s, as AWS
/// advises for unprocessed items.
const BATCH_RETRY: RetryPolicy =
    RetryPolicy::new(8, Duration::from_millis(50), Duration::from_millis(1600));

type Item = HashMap<String, AttributeValue>;

/// A [`ConnectionStore`] on one DynamoDB table.
#[derive(Clone, Debug)]
pub struct DynamoDbStore {
    client: Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn sdk_error<E>(operation: &'static str) -> impl FnOnce(SdkError<E>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| StoreError::DynamoDb {
        operation,
        source: Box::new(e),
    }
}

fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(StoreError::Malformed(format!("{name} is not a string"))),
    }
}

fn get_n(item: &Item, name: &str) -> Result<i64, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| StoreError::Malformed(format!("{name} is not an integer"))),
        _ => Err(StoreError::Malformed(format!("{name} is not a number"))),
    }
}

fn opt_s(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

fn built<T>(r: Result<T, aws_sdk_dynamodb::error::BuildError>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::DynamoDb {
        operation: "CreateTable",
        source: Box::new(e),
    })
}

fn get_u64(item: &Item, name: &str) -> Result<u64, StoreError> {
    u64::try_from(get_n(item, name)?)
        .map_err(|_| StoreError::Malformed(format!("{name} is negative")))
}

/// The seq and epoch an item (head or event place) holds, if it is live.
fn position(item: Option<&Item>, now: i64) -> Result<Option<StreamHead>, StoreError> {
    let Some(item) = item else {
        return Ok(None);
    };
    if !is_live(get_n(item, "expiresAt")?, now) {
        return Ok(None);
    }
    Ok(Some(StreamHead {
        seq: get_u64(item, "seq")?,
        epoch: get_s(item, "epoch")?.to_owned(),
    }))
}

/// Why a transaction was cancelled, sorted by what to do next.
enum Cancelled {
    /// Another append won (its condition failed) or the transaction
    /// conflicted: read again and retry.
    Retry,
    /// Anything else (boxed: the SDK's error is large next to `Retry`).
    Other(Box<SdkError<TransactWriteItemsError>>),
}

fn cancelled(e: SdkError<TransactWriteItemsError>) -> Cancelled {
    let retry = match &e {
        SdkError::ServiceError(se) => match se.err() {
            TransactWriteItemsError::TransactionCanceledException(c) => {
                c.cancellation_reasons().iter().any(|r| {
                    matches!(
                        r.code(),
                        Some("ConditionalCheckFailed" | "TransactionConflict")
                    )
                })
            }
            TransactWriteItemsError::TransactionInProgressException(_) => true,
            _ => false,
        },
        _ => false,
    };
    if retry {
        Cancelled::Retry
    } else {
        Cancelled::Other(Box::new(e))
    }
}

/// A page of an index Query: its connection ids and where the next starts.
fn page_of(items: Option<Vec<Item>>, last: Option<Item>) -> Result<SubscriberPage, StoreError> {
    let connection_ids = items
        .unwrap_or_default()
        .iter()
        .map(|item| ConnectionId::new(get_s(item, "connectionId")?).map_err(malformed))
        .collect::<Result<_, _>>()?;
    let next = match last.filter(|k| !k.is_empty()) {
        Some(key) => Some(ConnectionId::new(get_s(&key, "connectionId")?).map_err(malformed)?),
        None => None,
    };
    Ok(SubscriberPage {
        connection_ids,
        next,
    })
}

fn malformed(e: pushgate_domain::IdError) -> StoreError {
    StoreError::Malformed(e.to_string())
}

fn connection_item(r: &ConnectionRecord) -> Result<Item, StoreError> {
    let mut item = Item::from([
        ("pk".into(), s(connection_pk(&r.connection_id))),
        ("sk".into(), s(CONNECTION_SK)),
        ("connectionId".into(), s(r.connection_id.as_str())),
        ("connectedAt".into(), n(r.connected_at_ms)),
        ("expiresAt".into(), n(r.expires_at)),
    ]);
    if let Some(u) = &r.user_id {
        item.insert("userId".into(), s(u.as_str()));
    }
    if let Some(ip) = &r.source_ip {
        item.insert("sourceIp".into(), s(ip));
    }
    if let Some(ua) = &r.user_agent {
        item.insert("userAgent".into(), s(ua));
    }
    if let Some(scope) = &r.scope {
        let json = serde_json::to_string(scope)
            .map_err(|e| StoreError::Malformed(format!("scope: {e}")))?;
        item.insert("scope".into(), s(json));
    }
    Ok(item)
}

fn connection_from_item(item: &Item) -> Result<ConnectionRecord, StoreError> {
    Ok(ConnectionRecord {
        connection_id: ConnectionId::new(get_s(item, "connectionId")?).map_err(malformed)?,
        user_id: opt_s(item, "userId")
            .map(UserId::new)
            .transpose()
            .map_err(malformed)?,
        source_ip: opt_s(item, "sourceIp"),
        user_agent: opt_s(item, "userAgent"),
        connected_at_ms: get_n(item, "connectedAt")?,
        expires_at: get_n(item, "expiresAt")?,
        scope: opt_s(item, "scope")
            .map(|json| serde_json::from_str::<Scope>(&json))
            .transpose()
            .map_err(|e| StoreError::Malformed(format!("scope: {e}")))?,
    })
}

impl DynamoDbStore {
    /// An adapter on `table` through `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table as `template.yaml` declares it (keys, `byEntity`,
    /// TTL on `expiresAt`) unless it exists: for the local emulator and tests.
    pub async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        let exists = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await;
        match exists {
            Ok(_) => return Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) => {}
            Err(e) => return Err(sdk_error("DescribeTable")(e)),
        }
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
        };
        let index = |name: &str, hash: &str| {
            built(
                GlobalSecondaryIndex::builder()
                    .index_name(name)
                    .key_schema(built(key(hash, KeyType::Hash))?)
                    .key_schema(built(key("connectionId", KeyType::Range))?)
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::Include)
                            .non_key_attributes("expiresAt")
                            .build(),
                    )
                    .build(),
            )
        };
        self.client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(built(attr("pk"))?)
            .attribute_definitions(built(attr("sk"))?)
            .attribute_definitions(built(attr("entityId"))?)
            .attribute_definitions(built(attr("connectionId"))?)
            .attribute_definitions(built(attr("userId"))?)
            .key_schema(built(key("pk", KeyType::Hash))?)
            .key_schema(built(key("sk", KeyType::Range))?)
            .global_secondary_indexes(index(BY_ENTITY_INDEX, "entityId")?)
            .global_secondary_indexes(index(BY_USER_INDEX, "userId")?)
            .send()
            .await
            .map_err(sdk_error("CreateTable"))?;
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(built(
                TimeToLiveSpecification::builder()
                    .attribute_name("expiresAt")
                    .enabled(true)
                    .build(),
            )?)
            .send()
            .await
            .map_err(sdk_error("UpdateTimeToLive"))?;
        Ok(())
    }

    /// Every item under a connection's partition (its connection item and
    /// subscriptions), with `projection`, in one consistent Query per page.
    async fn partition_items(
        &self,
        connection_id: &ConnectionId,
        projection: &str,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(connection_pk(connection_id)))
                .projection_expression(projection)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error("Query"))?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key.filter(|k| !k.is_empty());
            if start.is_none() {
                return Ok(items);
            }
        }
    }

    /// Live subscriptions of a connection, sorted by entity (the sort key
    /// order).
    async fn live_subscriptions(
        &self,
        connection_id: &ConnectionId,
        now: i64,
    ) -> Result<Vec<EntityId>, StoreError> {
        let mut entities = Vec::new();
        for item in self
            .partition_items(connection_id, "sk, entityId, expiresAt")
            .await?
        {
            if get_s(&item, "sk")?.starts_with(SUBSCRIPTION_SK_PREFIX)
                && is_live(get_n(&item, "expiresAt")?, now)
            {
                entities.push(EntityId::new(get_s(&item, "entityId")?).map_err(malformed)?);
            }
        }
        Ok(entities)
    }

    /// One page of live connection ids from `index` where `hash` = `value`
    /// and, when given, the connection id (the indexes' sort key) is within
    /// `range`.
    #[allow(clippy::too_many_arguments)]
    async fn index_page(
        &self,
        index: &str,
        hash: &str,
        value: &str,
        range: Option<&IdRange>,
        now: i64,
        start: Option<Item>,
        limit: usize,
    ) -> Result<SubscriberPage, StoreError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .key_condition_expression("#h = :v")
            .filter_expression("expiresAt > :now")
            .expression_attribute_names("#h", hash)
            .expression_attribute_values(":v", s(value))
            .expression_attribute_values(":now", n(now))
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start);
        if let Some(range) = range {
            query = query
                .key_condition_expression("#h = :v AND connectionId BETWEEN :first AND :last")
                .expression_attribute_values(":first", s(&range.first))
                .expression_attribute_values(":last", s(&range.last));
        }
        let out = query.send().await.map_err(sdk_error("Query"))?;
        page_of(out.items, out.last_evaluated_key)
    }

    /// Deletes `keys` with BatchWriteItem, 25 at a time, retrying unprocessed
    /// items with exponential backoff.
    async fn batch_delete(&self, keys: Vec<Item>) -> Result<(), StoreError> {
        for chunk in keys.chunks(BATCH_SIZE) {
            let mut pending: Vec<WriteRequest> = chunk
                .iter()
                .map(|key| {
                    DeleteRequest::builder()
                        .set_key(Some(key.clone()))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(|e| StoreError::DynamoDb {
                            operation: "BatchWriteItem",
                            source: Box::new(e),
                        })
                })
                .collect::<Result<_, _>>()?;
            let mut attempt = 0;
            while !pending.is_empty() {
                attempt += 1;
                if !BATCH_RETRY.allows(attempt) {
                    return Err(StoreError::Unprocessed {
                        remaining: pending.len(),
                        attempts: BATCH_RETRY.max_attempts,
                    });
                }
                tokio::time::sleep(BATCH_RETRY.backoff(attempt)).await;
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(sdk_error("BatchWriteItem"))?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.table))
                    .unwrap_or_default();
            }
        }
        Ok(())
    }
}

impl DynamoDbStore {
    /// The connection's `subVersion` and how many live subscriptions it
    /// holds to entities other than `entity_id`, in one consistent Query of
    /// its partition; [`StoreError::ConnectionGone`] when the connection
    /// item is missing or expired.
    async fn subscription_count(
        &self,
        connection_id: &ConnectionId,
        entity_id: &EntityId,
        now: i64,
    ) -> Result<(Option<i64>, usize), StoreError> {
        let (mut connection, mut version, mut others) = (false, None, 0);
        let items = self
            .partition_items(connection_id, "sk, entityId, expiresAt, subVersion")
            .await?;
        for item in items {
            let live = is_live(get_n(&item, "expiresAt")?, now);
            if get_s(&item, "sk")? == CONNECTION_SK {
                connection = live;
                version = item
                    .get("subVersion")
                    .map(|_| get_n(&item, "subVersion"))
                    .transpose()?;
            } else if live && opt_s(&item, "entityId").as_deref() != Some(entity_id.as_str()) {
                others += 1;
            }
        }
        if !connection {
            return Err(StoreError::ConnectionGone(connection_id.clone()));
        }
        Ok((version, others))
    }

    /// One attempt at writing a subscription: `Ok(None)` when the
    /// connection item changed since it was read (another subscribe, or it
    /// went away), so the caller reads again.
    async fn try_subscribe(
        &self,
        record: &SubscriptionRecord,
        now: i64,
        version: Option<i64>,
    ) -> Result<Option<()>, StoreError> {
        let id = &record.connection_id;
        let pk = connection_pk(id);
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::DynamoDb {
            operation: "TransactWriteItems",
            source: Box::new(e),
        };
        let bump = aws_sdk_dynamodb::types::Update::builder()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .key("sk", s(CONNECTION_SK))
            .update_expression("SET subVersion = :next")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":next", n(version.unwrap_or(0) + 1));
        let bump = match version {
            Some(v) => bump
                .condition_expression(
                    "attribute_exists(pk) AND expiresAt > :now AND subVersion = :v",
                )
                .expression_attribute_values(":v", n(v)),
            None => bump.condition_expression(
                "attribute_exists(pk) AND expiresAt > :now AND attribute_not_exists(subVersion)",
            ),
        }
        .build()
        .map_err(build)?;
        let put = Put::builder()
            .table_name(&self.table)
            .item("pk", s(&pk))
            .item("sk", s(subscription_sk(&record.entity_id)))
            .item("connectionId", s(id.as_str()))
            .item("entityId", s(record.entity_id.as_str()))
            .item("subscribedAt", n(record.subscribed_at_ms))
            .item("expiresAt", n(record.expires_at))
            .build()
            .map_err(build)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(bump).build())
            .transact_items(TransactWriteItem::builder().put(put).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(Some(())),
            Err(e) => {
                let conflict = matches!(&e, SdkError::ServiceError(se)
                    if matches!(se.err(), TransactWriteItemsError::TransactionCanceledException(c)
                        if c.cancellation_reasons().iter().any(|r| r.code() == Some("TransactionConflict"))));
                if conflict {
                    return Err(StoreError::TransactionConflict);
                }
                match cancelled(e) {
                    Cancelled::Retry => Ok(None),
                    Cancelled::Other(e) => Err(sdk_error("TransactWriteItems")(*e)),
                }
            }
        }
    }
}

impl DynamoDbStore {
    /// The head and the event's place, in one consistent BatchGetItem.
    async fn head_and_event(
        &self,
        pk: &str,
        event_id: &str,
    ) -> Result<(Option<Item>, Option<Item>), StoreError> {
        let key = |sk: String| Item::from([("pk".into(), s(pk)), ("sk".into(), s(sk))]);
        let keys = built(
            KeysAndAttributes::builder()
                .keys(key(STREAM_HEAD_SK.to_owned()))
                .keys(key(event_sk(event_id)))
                .consistent_read(true)
                .build(),
        )?;
        let mut request = Some(keys);
        let (mut head, mut event) = (None, None);
        // BatchGetItem may leave keys unprocessed under load; ask again.
        for attempt in 1..=BATCH_RETRY.max_attempts {
            let Some(keys) = request.take() else { break };
            tokio::time::sleep(BATCH_RETRY.backoff(attempt)).await;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, keys)
                .send()
                .await
                .map_err(sdk_error("BatchGetItem"))?;
            for item in out
                .responses
                .and_then(|mut r| r.remove(&self.table))
                .unwrap_or_default()
            {
                if get_s(&item, "sk")? == STREAM_HEAD_SK {
                    head = Some(item);
                } else {
                    event = Some(item);
                }
            }
            request = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .filter(|k| !k.keys().is_empty());
        }
        if request.is_some() {
            return Err(StoreError::Unprocessed {
                remaining: 1,
                attempts: BATCH_RETRY.max_attempts,
            });
        }
        Ok((head, event))
    }

    /// One attempt at appending: `Ok(None)` when another append won.
    #[allow(clippy::too_many_arguments)]
    async fn try_append(
        &self,
        pk: &str,
        event_id: &str,
        retention: Retention,
        now: i64,
        new_epoch: &str,
        payload: PayloadFn<'_>,
    ) -> Result<Option<Appended>, StoreError> {
        let (head, event) = self.head_and_event(pk, event_id).await?;
        if let Some(position) = position(event.as_ref(), now)? {
            let payload = payload(&position).map_err(StoreError::Payload)?;
            let progress = event
                .as_ref()
                .and_then(|item| opt_s(item, "progress"))
                .map(|json| serde_json::from_str::<DeliveryProgress>(&json))
                .transpose()
                .map_err(|e| StoreError::Malformed(format!("progress: {e}")))?;
            return Ok(Some(Appended {
                position,
                payload,
                fresh: false,
                progress,
            }));
        }
        let previous = position(head.as_ref(), now)?;
        let next = match &previous {
            Some(h) => StreamHead {
                seq: h.seq + 1,
                epoch: h.epoch.clone(),
            },
            None => StreamHead {
                seq: 1,
                epoch: new_epoch.to_owned(),
            },
        };
        let frame = payload(&next).map_err(StoreError::Payload)?;
        let expires_at = now.saturating_add(retention.ttl_secs);
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::DynamoDb {
            operation: "TransactWriteItems",
            source: Box::new(e),
        };
        let seq = |v: u64| AttributeValue::N(v.to_string());
        // The head moves from `previous` to `next` only if nobody moved it
        // first; a missing or expired head may be (re)created.
        let head_put = Put::builder()
            .table_name(&self.table)
            .item("pk", s(pk))
            .item("sk", s(STREAM_HEAD_SK))
            .item("seq", seq(next.seq))
            .item("epoch", s(&next.epoch))
            .item("expiresAt", n(expires_at))
            .expression_attribute_names("#exp", "expiresAt")
            .expression_attribute_values(":now", n(now));
        let head_put = match &previous {
            Some(h) => head_put
                .condition_expression("#seq = :prev AND #exp > :now")
                .expression_attribute_names("#seq", "seq")
                .expression_attribute_values(":prev", seq(h.seq)),
            None => head_put.condition_expression("attribute_not_exists(pk) OR #exp <= :now"),
        }
        .build()
        .map_err(build)?;
        let event_put = Put::builder()
            .table_name(&self.table)
            .item("pk", s(pk))
            .item("sk", s(event_sk(event_id)))
            .item("seq", seq(next.seq))
            .item("epoch", s(&next.epoch))
            .item("expiresAt", n(expires_at))
            .condition_expression("attribute_not_exists(pk) OR #exp <= :now")
            .expression_attribute_names("#exp", "expiresAt")
            .expression_attribute_values(":now", n(now))
            .build()
            .map_err(build)?;
        let history_put = Put::builder()
            .table_name(&self.table)
            .item("pk", s(pk))
            .item("sk", s(history_sk(next.seq)))
            .item("eventId", s(event_id))
            .item("payload", s(&frame))
            .item("expiresAt", n(expires_at))
            .build()
            .map_err(build)?;
        let mut transaction = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(head_put).build())
            .transact_items(TransactWriteItem::builder().put(event_put).build())
            .transact_items(TransactWriteItem::builder().put(history_put).build());
        if let Some(old) = next
            .seq
            .checked_sub(retention.max_entries)
            .filter(|o| *o > 0)
        {
            let trim = Delete::builder()
                .table_name(&self.table)
                .key("pk", s(pk))
                .key("sk", s(history_sk(old)))
                .build()
                .map_err(build)?;
            transaction =
                transaction.transact_items(TransactWriteItem::builder().delete(trim).build());
        }
        match transaction.send().await {
            Ok(_) => Ok(Some(Appended {
                position: next,
                payload: frame,
                fresh: true,
                progress: None,
            })),
            Err(e) => match cancelled(e) {
                Cancelled::Retry => Ok(None),
                Cancelled::Other(e) => Err(sdk_error("TransactWriteItems")(*e)),
            },
        }
    }
}

#[async_trait]
impl ConnectionStore for DynamoDbStore {
    async fn append(
        &self,
        stream: &StreamKey,
        event_id: &str,
        retention: Retention,
        now: i64,
        new_epoch: &str,
        payload: PayloadFn<'_>,
    ) -> Result<Appended, StoreError> {
        let pk = stream.pk();
        for attempt in 1..=APPEND_RETRY.max_attempts {
            tokio::time::sleep(APPEND_RETRY.backoff(attempt)).await;
            if let Some(appended) = self
                .try_append(&pk, event_id, retention, now, new_epoch, payload)
                .await?
            {
                return Ok(appended);
            }
        }
        Err(StoreError::Contended {
            stream: pk,
            attempts: APPEND_RETRY.max_attempts,
        })
    }

    async fn save_progress(
        &self,
        stream: &StreamKey,
        event_id: &str,
        progress: &DeliveryProgress,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(progress)
            .map_err(|e| StoreError::Malformed(format!("progress: {e}")))?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(stream.pk()))
            .key("sk", s(event_sk(event_id)))
            .update_expression("SET progress = :p")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":p", s(json))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // The event's place expired: a redelivery starts over.
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(())
            }
            Err(e) => Err(sdk_error("UpdateItem")(e)),
        }
    }

    async fn stream_head(
        &self,
        stream: &StreamKey,
        now: i64,
    ) -> Result<Option<StreamHead>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(stream.pk()))
            .key("sk", s(STREAM_HEAD_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error("GetItem"))?;
        position(out.item.as_ref(), now)
    }

    async fn history(
        &self,
        stream: &StreamKey,
        after: u64,
        limit: usize,
        now: i64,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let mut entries = Vec::new();
        let mut start: Option<Item> = None;
        // The filter drops expired items after Limit is applied, so a page
        // may come back short while more remain: keep reading.
        while entries.len() < limit {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .filter_expression("expiresAt > :now")
                .expression_attribute_values(":pk", s(stream.pk()))
                .expression_attribute_values(":from", s(history_sk(after.saturating_add(1))))
                .expression_attribute_values(":to", s(history_sk(u64::MAX)))
                .expression_attribute_values(":now", n(now))
                .projection_expression("sk, payload")
                .consistent_read(true)
                .limit(i32::try_from(limit - entries.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error("Query"))?;
            for item in out.items.unwrap_or_default() {
                let sk = get_s(&item, "sk")?;
                let seq = sk
                    .strip_prefix(HISTORY_SK_PREFIX)
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| StoreError::Malformed(format!("history key {sk}")))?;
                entries.push(HistoryEntry {
                    seq,
                    payload: get_s(&item, "payload")?.to_owned(),
                });
            }
            start = out.last_evaluated_key.filter(|k| !k.is_empty());
            if start.is_none() {
                break;
            }
        }
        entries.truncate(limit);
        Ok(entries)
    }

    async fn put_connection(&self, record: &ConnectionRecord) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(connection_item(record)?))
            .send()
            .await
            .map_err(sdk_error("PutItem"))?;
        Ok(())
    }

    async fn connection(
        &self,
        connection_id: &ConnectionId,
        now: i64,
    ) -> Result<Option<ConnectionRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(connection_pk(connection_id)))
            .key("sk", s(CONNECTION_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error("GetItem"))?;
        match out.item {
            Some(item) => {
                let record = connection_from_item(&item)?;
                Ok(is_live(record.expires_at, now).then_some(record))
            }
            None => Ok(None),
        }
    }

    async fn subscribe(
        &self,
        record: &SubscriptionRecord,
        now: i64,
        max: usize,
    ) -> Result<(), StoreError> {
        // The cap is counted, then written under a condition on the
        // connection item's `subVersion`, which every subscribe bumps: two
        // subscribes racing on one connection cannot both pass a count that
        // only one of them fits in. The loser reads again.
        let id = &record.connection_id;
        for _ in 0..SUBSCRIBE_ATTEMPTS {
            let (version, others) = self.subscription_count(id, &record.entity_id, now).await?;
            if others >= max {
                return Err(StoreError::TooManySubscriptions {
                    connection_id: id.clone(),
                    max,
                });
            }
            match self.try_subscribe(record, now, version).await? {
                Some(()) => return Ok(()),
                None => continue,
            }
        }
        Err(StoreError::TransactionConflict)
    }

    async fn unsubscribe(
        &self,
        connection_id: &ConnectionId,
        entity_id: &EntityId,
    ) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(connection_pk(connection_id)))
            .key("sk", s(subscription_sk(entity_id)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(sdk_error("DeleteItem"))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn subscriptions(
        &self,
        connection_id: &ConnectionId,
        now: i64,
    ) -> Result<Vec<EntityId>, StoreError> {
        self.live_subscriptions(connection_id, now).await
    }

    async fn delete_connection(&self, connection_id: &ConnectionId) -> Result<usize, StoreError> {
        // The connection item goes first, on its own: from then on every
        // subscribe's condition fails, and a subscribe that committed before
        // is in the partition the Query below reads. Reading first and
        // deleting everything together would miss a subscription written in
        // between, and leave it orphaned until its TTL.
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(connection_pk(connection_id)))
            .key("sk", s(CONNECTION_SK))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(sdk_error("DeleteItem"))?;
        let connection = usize::from(out.attributes.is_some_and(|a| !a.is_empty()));
        let keys = self.partition_items(connection_id, "pk, sk").await?;
        let count = keys.len();
        self.batch_delete(keys).await?;
        Ok(connection + count)
    }

    async fn subscriber_range(
        &self,
        entity_id: &EntityId,
        range: &IdRange,
        now: i64,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<SubscriberPage, StoreError> {
        let start = after.map(|c| {
            Item::from([
                ("entityId".into(), s(entity_id.as_str())),
                ("connectionId".into(), s(c.as_str())),
                ("pk".into(), s(connection_pk(c))),
                ("sk".into(), s(subscription_sk(entity_id))),
            ])
        });
        self.index_page(
            BY_ENTITY_INDEX,
            "entityId",
            entity_id.as_str(),
            Some(range),
            now,
            start,
            limit,
        )
        .await
    }

    async fn user_connections(
        &self,
        user_id: &UserId,
        now: i64,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<SubscriberPage, StoreError> {
        let start = after.map(|c| {
            Item::from([
                ("userId".into(), s(user_id.as_str())),
                ("connectionId".into(), s(c.as_str())),
                ("pk".into(), s(connection_pk(c))),
                ("sk".into(), s(CONNECTION_SK)),
            ])
        });
        self.index_page(
            BY_USER_INDEX,
            "userId",
            user_id.as_str(),
            None,
            now,
            start,
            limit,
        )
        .await
    }
}
