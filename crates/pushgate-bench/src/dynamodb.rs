//! DynamoDB requests per operation. An SDK interceptor counts every request
//! the real `DynamoDbStore` sends (retries included) to a moto server on
//! 127.0.0.1, per API operation; the table prints them beside the minimum
//! the single-table design allows.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use pushgate_domain::record::{self, ConnectionRecord, SubscriptionRecord};
use pushgate_domain::{ConnectionId, EntityId};
use pushgate_store::{ConnectionStore, DynamoDbStore};

/// Counts requests per operation name.
#[derive(Debug, Clone, Default)]
struct Counter(Arc<Mutex<BTreeMap<String, usize>>>);

impl Counter {
    fn take(&self) -> BTreeMap<String, usize> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Intercept for Counter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let name = cfg
            .load::<Metadata>()
            .map_or("unknown".to_owned(), |m| m.name().to_owned());
        *self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name)
            .or_default() += 1;
        Ok(())
    }
}

fn fmt(counts: &BTreeMap<String, usize>) -> String {
    counts
        .iter()
        .map(|(op, n)| format!("{n} {op}"))
        .collect::<Vec<_>>()
        .join(" + ")
}

const TABLE: &str = "bench";

/// Writes `n` live connections subscribed to `entity` with BatchWriteItem,
/// 25 items a request, several requests at a time. Seeding only (its
/// requests are discarded from the count): going through
/// `ConnectionStore::subscribe` would cost a Query and a transaction per
/// subscriber, and moto answers those in time that grows with the table, so
/// 2,500 of them took minutes. The items have the attributes
/// `DynamoDbStore` writes; `run` checks that `subscribers` reads back all
/// `n`.
async fn seed_subscribers(
    client: &aws_sdk_dynamodb::Client,
    entity: &EntityId,
    n: usize,
    now: i64,
) -> Result<(), Box<dyn std::error::Error>> {
    use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let num = |v: i64| AttributeValue::N(v.to_string());
    let mut requests = Vec::with_capacity(2 * n);
    for i in 0..n {
        let id = ConnectionId::new(format!("f{n}-{i:05}"))?;
        let pk = record::connection_pk(&id);
        let items = [
            vec![
                ("pk", s(&pk)),
                ("sk", s(record::CONNECTION_SK)),
                ("connectionId", s(id.as_str())),
                ("connectedAt", num(now * 1000)),
                ("expiresAt", num(now + 7500)),
            ],
            vec![
                ("pk", s(&pk)),
                ("sk", s(&record::subscription_sk(entity))),
                ("connectionId", s(id.as_str())),
                ("entityId", s(entity.as_str())),
                ("subscribedAt", num(now * 1000)),
                ("expiresAt", num(now + 7500)),
            ],
        ];
        for item in items {
            let put = PutRequest::builder()
                .set_item(Some(
                    item.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                ))
                .build()?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
    }
    let mut batches = requests.chunks(25).map(<[WriteRequest]>::to_vec);
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < 8 {
            let Some(mut batch) = batches.next() else {
                break;
            };
            let client = client.clone();
            running.spawn(async move {
                // Bounded: moto does not throttle, so unprocessed items are
                // not expected; retry them a few times all the same.
                for _ in 0..10 {
                    let out = client
                        .batch_write_item()
                        .request_items(TABLE, batch)
                        .send()
                        .await?;
                    batch = out
                        .unprocessed_items
                        .and_then(|mut m| m.remove(TABLE))
                        .unwrap_or_default();
                    if batch.is_empty() {
                        return Ok(());
                    }
                }
                Err::<(), Box<dyn std::error::Error + Send + Sync>>(
                    "BatchWriteItem left items unprocessed".into(),
                )
            });
        }
        match running.join_next().await {
            Some(done) => done?.map_err(|e| e.to_string())?,
            None => return Ok(()),
        }
    }
}

/// Runs the count and prints a Markdown table.
pub async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let moto = pushgate_testkit::Moto::try_start()?;
    let counter = Counter::default();
    let config = moto.dynamodb_config().interceptor(counter.clone()).build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    let store = DynamoDbStore::new(client.clone(), TABLE);
    store.create_table_if_missing().await?;
    counter.take();

    let now = pushgate_testkit::FIXED_NOW_S;
    let cid = |s: &str| ConnectionId::new(s);
    let eid = |s: &str| EntityId::new(s);
    let conn = |id: &str| -> Result<ConnectionRecord, pushgate_domain::IdError> {
        Ok(ConnectionRecord {
            connection_id: cid(id)?,
            user_id: None,
            source_ip: None,
            user_agent: None,
            connected_at_ms: now * 1000,
            expires_at: now + 7500,
            scope: None,
        })
    };
    let sub = |id: &str, e: &str| -> Result<SubscriptionRecord, pushgate_domain::IdError> {
        Ok(SubscriptionRecord {
            connection_id: cid(id)?,
            entity_id: eid(e)?,
            subscribed_at_ms: now * 1000,
            expires_at: now + 7500,
        })
    };
    let mut rows: Vec<(String, String, String)> = Vec::new();

    // connect: one PutItem.
    store.put_connection(&conn("c0")?).await?;
    rows.push(("connect".into(), fmt(&counter.take()), "1 PutItem".into()));

    // subscribe, as the subscribe function does it: read the connection's
    // scope, then the capped conditional transaction.
    store.connection(&cid("c0")?, now).await?;
    store.subscribe(&sub("c0", "e:0")?, now, 100).await?;
    rows.push((
        "subscribe".into(),
        fmt(&counter.take()),
        "1 GetItem (the scope) + 1 Query (the cap) + 1 TransactWriteItems (Update subVersion + Put)¹".into(),
    ));

    // Streams: what every event adds per stream (the notifier's append),
    // a redelivery, and a resume (head + history).
    let stream = pushgate_domain::StreamKey::Entity(eid("e:stream")?);
    let retention = pushgate_domain::Retention {
        ttl_secs: 86_400,
        max_entries: 3,
    };
    let frame = |h: &pushgate_domain::StreamHead| -> Result<String, pushgate_store::BoxError> {
        Ok(format!(r#"{{"seq":{}}}"#, h.seq))
    };
    for i in 1..=3 {
        store
            .append(&stream, &format!("ev-{i}"), retention, now, "ep", &frame)
            .await?;
    }
    counter.take();
    store
        .append(&stream, "ev-4", retention, now, "ep", &frame)
        .await?;
    rows.push((
        "notify: append an event to its stream (seq + history)".into(),
        fmt(&counter.take()),
        "1 BatchGetItem (head + event) + 1 TransactWriteItems (head, event, history, trim: 4 items)".into(),
    ));
    store
        .append(&stream, "ev-4", retention, now, "ep", &frame)
        .await?;
    rows.push((
        "notify: the same event redelivered".into(),
        fmt(&counter.take()),
        "1 BatchGetItem (the event keeps its seq)".into(),
    ));
    store.stream_head(&stream, now).await?;
    store.history(&stream, 2, 100, now).await?;
    rows.push((
        "subscribe with since / GET /history (on top of subscribe)".into(),
        fmt(&counter.take()),
        "1 GetItem (head) + 1 Query (history)".into(),
    ));

    store.unsubscribe(&cid("c0")?, &eid("e:0")?).await?;
    rows.push((
        "unsubscribe".into(),
        fmt(&counter.take()),
        "1 DeleteItem".into(),
    ));

    for k in [0usize, 10, 100] {
        store.put_connection(&conn("d")?).await?;
        for i in 0..k {
            store
                .subscribe(&sub("d", &format!("e:{i}"))?, now, 1000)
                .await?;
        }
        counter.take();
        store.delete_connection(&cid("d")?).await?;
        rows.push((
            format!("disconnect, {k} subscriptions"),
            fmt(&counter.take()),
            format!("1 Query + {} BatchWriteItem", (k + 1).div_ceil(25)),
        ));
    }

    for n in [1usize, 100, 2500] {
        let entity = eid(&format!("fan:{n}"))?;
        eprintln!("dynamodb: seeding {n} subscribers of {entity}");
        seed_subscribers(&client, &entity, n, now).await?;
        counter.take();
        let mut after = None;
        let mut seen = 0;
        loop {
            let page = store
                .subscribers(&entity, now, after.as_ref(), 1000)
                .await?;
            seen += page.connection_ids.len();
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        if seen != n {
            return Err(format!("read {seen} subscribers of {entity}, seeded {n}").into());
        }
        rows.push((
            format!(
                "notify {n} subscriber{} (read)",
                if n == 1 { "" } else { "s" }
            ),
            fmt(&counter.take()),
            format!(
                "{} Query (1 MB / 1000 items per page)",
                n.div_ceil(1000).max(1)
            ),
        ));
    }

    println!("| operation | DynamoDB requests (measured) | design minimum |");
    println!("|---|---|---|");
    for (op, got, min) in rows {
        println!("| {op} | {got} | {min} |");
    }
    println!();
    println!(
        "¹ subscribe reads the connection (GetItem) for its scope, which a condition \
expression cannot evaluate (grants are entity prefixes). Its Query counts the connection's \
subscriptions for MAX_SUBSCRIPTIONS_PER_CONNECTION, and reads the connection's subVersion, \
which the transaction bumps under a condition so that concurrent subscribes cannot pass the \
cap together."
    );
    Ok(())
}
