//! `cost`: what a month of pushgate costs in AWS list prices (us-east-1),
//! line by line, beside the same workload on AppSync Events, IoT Core,
//! Momento Topics and Ably.
//!
//! The request counts per operation are pushgate's measured ones
//! (BENCHMARKS.md, "DynamoDB requests per operation"), plus the history
//! feature being added (per event: 1 BatchGetItem of 2 consistent items and
//! 1 TransactWriteItems of 4 items). Prices are constants here, each with
//! the page it was read from and the date, so that a reader can re-check
//! them; `docs/cost.md` repeats the table and the assumptions.
//!
//! The arithmetic is plain `f64` dollars: the inputs are estimates good to a
//! few per cent at best, so exact decimal money would be false precision.

use std::fmt::Write as _;

/// Minutes in a month as AWS prices count it (730 hours).
pub const MINUTES_PER_MONTH: f64 = 730.0 * 60.0;

/// Where and when a price was read.
pub const PRICES_READ: &str = "2026-11-29";

/// One list price, per unit.
#[derive(Debug, Clone, Copy)]
pub struct Price {
    /// Dollars per `per` units.
    pub usd: f64,
    /// Units the price is quoted for (1,000,000 for "per million").
    pub per: f64,
    /// The page it was read from, or why it is an assumption.
    pub source: &'static str,
}

impl Price {
    const fn per_million(usd: f64, source: &'static str) -> Self {
        Self {
            usd,
            per: 1e6,
            source,
        }
    }

    /// The cost of `quantity` units.
    pub fn of(&self, quantity: f64) -> f64 {
        quantity / self.per * self.usd
    }
}

/// us-east-1 list prices, read on [`PRICES_READ`] through the search tool
/// (the page named in each), no free tier.
pub mod price {
    use super::Price;

    /// API Gateway WebSocket messages, first billion a month, metered per
    /// 32 KB.
    pub const APIGW_MESSAGE: Price = Price::per_million(
        1.00,
        "aws.amazon.com/api-gateway/pricing (worked example, as transcribed 2026-09-20)",
    );
    /// API Gateway WebSocket connection minutes.
    pub const APIGW_CONNECTION_MINUTE: Price = Price::per_million(
        0.25,
        "aws.amazon.com/api-gateway/pricing (worked example); repost.aws QU7IqgooGeQmqudOsmzTw5YQ",
    );
    /// Lambda requests.
    pub const LAMBDA_REQUEST: Price =
        Price::per_million(0.20, "aws.amazon.com/lambda/pricing (request charges)");
    /// Lambda arm64 duration, per GB-second (first tier).
    pub const LAMBDA_ARM_GB_SECOND: Price = Price {
        usd: 0.000_013_333_4,
        per: 1.0,
        source: "aws.amazon.com/lambda/pricing, arm64 base rate as used by artillery's lib/platform/aws-lambda/prices.js",
    };
    /// DynamoDB on-demand write request unit.
    pub const DDB_WRU: Price = Price::per_million(
        0.625,
        "aws.amazon.com/dynamodb/pricing/on-demand (after the Nov 2024 cut; airbyte.com summary)",
    );
    /// DynamoDB on-demand read request unit.
    pub const DDB_RRU: Price = Price::per_million(
        0.125,
        "aws.amazon.com/dynamodb/pricing/on-demand (after the Nov 2024 cut; airbyte.com summary)",
    );
    /// EventBridge custom events, per 64 KB chunk.
    pub const EVENTBRIDGE_EVENT: Price = Price::per_million(
        1.00,
        "aws.amazon.com/eventbridge/pricing (64 KB chunks confirmed; $1.00/M assumed from the list price)",
    );
    /// SQS standard requests, per 64 KB chunk.
    pub const SQS_REQUEST: Price = Price::per_million(
        0.40,
        "aws.amazon.com/sqs/pricing (assumed list price; not found by the search tool)",
    );
    /// AppSync Events operations (publish, each delivery, subscribe).
    pub const APPSYNC_OPERATION: Price = Price::per_million(
        1.00,
        "AWS Price List (AWSAppSync, \"$1 per million Event API operations\")",
    );
    /// AppSync real-time connection minutes.
    pub const APPSYNC_CONNECTION_MINUTE: Price = Price::per_million(
        0.08,
        "AppSync real-time connection $0.00000008/min (smalruby mesh-v2 cost.md); assumed the same for Event APIs",
    );
    /// IoT Core messages, first billion, metered per 5 KB.
    pub const IOT_MESSAGE: Price = Price::per_million(
        1.00,
        "aws.amazon.com/iot-core/pricing (worked example, as transcribed 2026-09-20)",
    );
    /// IoT Core connection minutes.
    pub const IOT_CONNECTION_MINUTE: Price = Price::per_million(
        0.08,
        "aws.amazon.com/iot-core/pricing (worked example, as transcribed 2026-09-20)",
    );
    /// Momento data transfer, in and out, per GB; billed in 1 KB chunks per
    /// message (docs.momentohq.com/topics/limits).
    pub const MOMENTO_GB: Price = Price {
        usd: 0.50,
        per: 1.0,
        source: "assumed $0.50/GB (gomomento.com/pricing, not found by the search tool); 1 KB chunks per docs.momentohq.com/topics/limits",
    };
    /// Ably messages (each publish and each delivery), resource-based
    /// pricing.
    pub const ABLY_MESSAGE: Price = Price::per_million(
        2.50,
        "ably.com/pricing overage rate ($2.50/M messages); ably.com/docs/pricing counts publish + each delivery",
    );
    /// Ably connection minutes.
    pub const ABLY_CONNECTION_MINUTE: Price = Price::per_million(
        1.00,
        "ably.com/pricing via api-evangelist summary ($1.00/M connection/channel minutes)",
    );
    /// Ably channel minutes.
    pub const ABLY_CHANNEL_MINUTE: Price = ABLY_CONNECTION_MINUTE;
    /// Ably Standard package, a month (10,000 concurrent connections).
    pub const ABLY_STANDARD_MONTH: f64 = 29.0;
}

/// The workload: what every service is priced for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Workload {
    /// Connections held 24/7.
    pub connections: f64,
    /// Deliveries (frames to clients) a month.
    pub deliveries: f64,
    /// Subscribers per event; events = deliveries / this.
    pub subscribers_per_event: f64,
    /// Bytes of one notification frame.
    pub payload_bytes: f64,
    /// Subscriptions each connection makes after connecting.
    pub subscriptions_per_connection: f64,
    /// How often each connection is replaced (API Gateway closes every
    /// connection after 2 h, so that is the floor there).
    pub reconnect_hours: f64,
    /// Client heartbeat period, minutes (0: none). clients/js sends a
    /// `ping` every 4 minutes to stay inside API Gateway's 10-minute idle
    /// timeout; API Gateway bills the ping and its pong as two messages
    /// even when a mock integration answers.
    pub ping_minutes: f64,
}

impl Workload {
    /// Events published a month.
    pub fn events(&self) -> f64 {
        self.deliveries / self.subscribers_per_event
    }

    /// Connection minutes a month.
    pub fn connection_minutes(&self) -> f64 {
        self.connections * MINUTES_PER_MONTH
    }

    /// Connections opened (and closed) a month.
    pub fn lifecycles(&self) -> f64 {
        self.connections * 730.0 / self.reconnect_hours
    }

    /// Subscribe requests a month.
    pub fn subscribes(&self) -> f64 {
        self.lifecycles() * self.subscriptions_per_connection
    }

    /// Pings a month (each answered by one frame).
    pub fn pings(&self) -> f64 {
        if self.ping_minutes > 0.0 {
            self.connection_minutes() / self.ping_minutes
        } else {
            0.0
        }
    }

    /// Billing units of one frame of `unit` bytes (at least one).
    pub fn units(&self, unit: f64) -> f64 {
        (self.payload_bytes / unit).ceil().max(1.0)
    }
}

/// What pushgate's functions cost to run, beyond the request counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LambdaModel {
    /// Notifier CPU per push, µs (`pushgate-bench cpu`).
    pub push_cpu_us: f64,
    /// The Management API round trip, ms; pushes overlap it 64 at a time.
    pub push_rtt_ms: f64,
    /// Pushes in flight (PUSH_CONCURRENCY).
    pub push_concurrency: f64,
    /// Notifier fixed time per event (history read + transaction, the
    /// subscriber Query), ms.
    pub notifier_event_ms: f64,
    /// Notifier memory, MB (template.yaml: 256).
    pub notifier_mb: f64,
    /// connect / subscribe / disconnect duration, ms each (1 or 2 DynamoDB
    /// round trips).
    pub handler_ms: f64,
    /// Memory of those handlers and `default`, MB (template.yaml Globals: 128).
    pub handler_mb: f64,
    /// Whether a ping invokes a Lambda (template.yaml answers `ping` with a
    /// mock integration, so it does not; `$default` would).
    pub ping_invokes_lambda: bool,
}

/// Lambda's CPU share at `mb`: a full vCPU at 1,769 MB, in proportion
/// below (AWS Lambda documentation, "Memory and computing power").
fn vcpu_share(mb: f64) -> f64 {
    (mb / 1769.0).min(1.0)
}

impl LambdaModel {
    /// Wall time the notifier spends per push: CPU-bound at the CPU share
    /// its memory buys, or bound by the round trip over the pushes in
    /// flight, whichever is longer.
    pub fn push_wall_ms(&self) -> f64 {
        let cpu = self.push_cpu_us / 1000.0 / vcpu_share(self.notifier_mb);
        let rtt = self.push_rtt_ms / self.push_concurrency;
        cpu.max(rtt)
    }
}

/// Size of one subscription item as the notifier's Query reads it, bytes
/// (keys, connectionId, entityId, two numbers).
pub const SUBSCRIPTION_ITEM_BYTES: f64 = 200.0;

/// One line of a bill.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The service billed.
    pub service: &'static str,
    /// What is counted.
    pub item: String,
    /// How many units a month.
    pub quantity: f64,
    /// Dollars a month.
    pub usd: f64,
}

fn line(service: &'static str, item: impl Into<String>, quantity: f64, usd: f64) -> Line {
    Line {
        service,
        item: item.into(),
        quantity,
        usd,
    }
}

/// pushgate's monthly bill, line by line.
pub fn pushgate(w: &Workload, l: &LambdaModel) -> Vec<Line> {
    use price::*;
    let events = w.events();
    let lifecycles = w.lifecycles();
    let subscribes = w.subscribes();
    let gb_s = |count: f64, ms: f64, mb: f64| count * ms.ceil() / 1000.0 * mb / 1024.0;
    let mut bill = Vec::new();

    // API Gateway.
    let minutes = w.connection_minutes();
    bill.push(line(
        "API Gateway",
        "connection minutes",
        minutes,
        APIGW_CONNECTION_MINUTE.of(minutes),
    ));
    let frames = w.deliveries * w.units(32.0 * 1024.0);
    bill.push(line(
        "API Gateway",
        "messages: deliveries (32 KB units)",
        frames,
        APIGW_MESSAGE.of(frames),
    ));
    let sub_messages = 2.0 * subscribes;
    bill.push(line(
        "API Gateway",
        "messages: subscribe + reply",
        sub_messages,
        APIGW_MESSAGE.of(sub_messages),
    ));
    let ping_messages = 2.0 * w.pings();
    bill.push(line(
        "API Gateway",
        format!("messages: ping + pong every {} min", w.ping_minutes),
        ping_messages,
        APIGW_MESSAGE.of(ping_messages),
    ));

    // EventBridge and SQS, per event.
    bill.push(line(
        "EventBridge",
        "custom events (PutEvents)",
        events,
        EVENTBRIDGE_EVENT.of(events),
    ));
    let sqs = 3.0 * events;
    bill.push(line(
        "SQS",
        "requests: send + receive + delete per event (no batching)",
        sqs,
        SQS_REQUEST.of(sqs),
    ));

    // Lambda.
    let notifier_ms = l.notifier_event_ms + w.subscribers_per_event * l.push_wall_ms();
    bill.push(line(
        "Lambda",
        "notifier invocations (1 event each)",
        events,
        LAMBDA_REQUEST.of(events),
    ));
    let notifier_gb_s = gb_s(events, notifier_ms, l.notifier_mb);
    bill.push(line(
        "Lambda",
        format!(
            "notifier GB-s ({:.1} ms per event at {} MB)",
            notifier_ms, l.notifier_mb
        ),
        notifier_gb_s,
        LAMBDA_ARM_GB_SECOND.of(notifier_gb_s),
    ));
    let handlers = lifecycles * 2.0 + subscribes;
    bill.push(line(
        "Lambda",
        "connect + subscribe + disconnect invocations",
        handlers,
        LAMBDA_REQUEST.of(handlers),
    ));
    let handler_gb_s = gb_s(handlers, l.handler_ms, l.handler_mb);
    bill.push(line(
        "Lambda",
        format!(
            "handler GB-s ({} ms each at {} MB)",
            l.handler_ms, l.handler_mb
        ),
        handler_gb_s,
        LAMBDA_ARM_GB_SECOND.of(handler_gb_s),
    ));
    if l.ping_invokes_lambda {
        let pings = w.pings();
        bill.push(line(
            "Lambda",
            "ping invocations",
            pings,
            LAMBDA_REQUEST.of(pings),
        ));
        let ping_gb_s = gb_s(pings, 1.0, l.handler_mb);
        bill.push(line(
            "Lambda",
            "ping GB-s (1 ms billed each)",
            ping_gb_s,
            LAMBDA_ARM_GB_SECOND.of(ping_gb_s),
        ));
    }

    // DynamoDB, measured requests per operation, items ≤ 1 KB (writes)
    // and ≤ 4 KB (reads), consistent reads (1 RRU per 4 KB).
    // connect: 1 PutItem = 1 WRU; subscribe: GetItem + Query (1 RRU each),
    // TransactWriteItems of ConditionCheck + Put = 2 items × 2 WRU;
    // disconnect: Query (1 RRU) + BatchWriteItem deleting the connection
    // and its subscriptions (1 WRU each).
    let lifecycle_wru =
        lifecycles * (1.0 + 1.0 + w.subscriptions_per_connection) + subscribes * 4.0;
    let lifecycle_rru = lifecycles + subscribes * 2.0;
    bill.push(line(
        "DynamoDB",
        "connect/subscribe/disconnect WRU",
        lifecycle_wru,
        DDB_WRU.of(lifecycle_wru),
    ));
    bill.push(line(
        "DynamoDB",
        "connect/subscribe/disconnect RRU",
        lifecycle_rru,
        DDB_RRU.of(lifecycle_rru),
    ));
    let query_rru = events
        * (w.subscribers_per_event * SUBSCRIPTION_ITEM_BYTES / 4096.0)
            .ceil()
            .max(1.0);
    bill.push(line(
        "DynamoDB",
        format!(
            "notify: subscriber Query RRU ({} B items, consistent)",
            SUBSCRIPTION_ITEM_BYTES
        ),
        query_rru,
        DDB_RRU.of(query_rru),
    ));
    let history_rru = events * 2.0;
    bill.push(line(
        "DynamoDB",
        "history: BatchGetItem, 2 consistent items",
        history_rru,
        DDB_RRU.of(history_rru),
    ));
    let history_wru = events * 4.0 * 2.0 * (w.payload_bytes / 1024.0).ceil().max(1.0);
    bill.push(line(
        "DynamoDB",
        "history: TransactWriteItems, 4 items × 2 WRU",
        history_wru,
        DDB_WRU.of(history_wru),
    ));
    bill
}

/// AppSync Events: connection minutes, and an operation per publish, per
/// delivery (5 KB units) and per subscribe.
pub fn appsync_events(w: &Workload) -> Vec<Line> {
    use price::*;
    let minutes = w.connection_minutes();
    let ops = w.events() + w.deliveries * w.units(5.0 * 1024.0) + w.subscribes();
    vec![
        line(
            "AppSync Events",
            "connection minutes",
            minutes,
            APPSYNC_CONNECTION_MINUTE.of(minutes),
        ),
        line(
            "AppSync Events",
            "operations: publish + deliveries + subscribes",
            ops,
            APPSYNC_OPERATION.of(ops),
        ),
    ]
}

/// IoT Core: connection minutes, a message per publish, per delivery and
/// per SUBSCRIBE (5 KB units); MQTT PINGREQ is free.
pub fn iot_core(w: &Workload) -> Vec<Line> {
    use price::*;
    let minutes = w.connection_minutes();
    let messages = (w.events() + w.deliveries) * w.units(5.0 * 1024.0) + w.subscribes();
    vec![
        line(
            "IoT Core",
            "connection minutes",
            minutes,
            IOT_CONNECTION_MINUTE.of(minutes),
        ),
        line(
            "IoT Core",
            "messages: publish + deliveries + subscribes",
            messages,
            IOT_MESSAGE.of(messages),
        ),
    ]
}

/// Momento Topics: bytes in and out, each message rounded up to 1 KB.
pub fn momento(w: &Workload) -> Vec<Line> {
    let gb = (w.events() + w.deliveries) * w.units(1024.0) * 1024.0 / 1e9;
    vec![line(
        "Momento Topics",
        "data in + out (1 KB per message)",
        gb,
        price::MOMENTO_GB.of(gb),
    )]
}

/// Ably, resource-based pricing on the Standard package: messages
/// (publish + each delivery), connection minutes, channel minutes (one
/// channel per entity with subscribers, held all month).
pub fn ably(w: &Workload) -> Vec<Line> {
    use price::*;
    let messages = w.events() + w.deliveries;
    let minutes = w.connection_minutes();
    let channels =
        (w.connections * w.subscriptions_per_connection / w.subscribers_per_event).ceil();
    let channel_minutes = channels * MINUTES_PER_MONTH;
    vec![
        line("Ably", "Standard package", 1.0, ABLY_STANDARD_MONTH),
        line(
            "Ably",
            "messages: publish + deliveries",
            messages,
            ABLY_MESSAGE.of(messages),
        ),
        line(
            "Ably",
            "connection minutes",
            minutes,
            ABLY_CONNECTION_MINUTE.of(minutes),
        ),
        line(
            "Ably",
            format!("channel minutes ({channels} channels)"),
            channel_minutes,
            ABLY_CHANNEL_MINUTE.of(channel_minutes),
        ),
    ]
}

/// The sum of a bill.
pub fn total(bill: &[Line]) -> f64 {
    bill.iter().map(|l| l.usd).sum()
}

fn quantity(q: f64) -> String {
    if q >= 1e6 {
        format!("{:.2} M", q / 1e6)
    } else if q >= 1e3 {
        format!("{:.1} k", q / 1e3)
    } else {
        format!("{q:.2}")
    }
}

fn usd(v: f64) -> String {
    if v >= 100.0 {
        format!("${v:.0}")
    } else if v >= 1.0 {
        format!("${v:.2}")
    } else {
        format!("${v:.4}")
    }
}

/// The report: the workload, pushgate's bill, the comparison, the prices.
pub fn report(w: &Workload, l: &LambdaModel) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Cost model\n\nWorkload: {} connections held 24/7 (730 h), {} deliveries a month, \
         {} subscribers per event ({} events), {} B per notification, {} subscription(s) per \
         connection, reconnect every {} h, ping every {} min. us-east-1 list prices read \
         {PRICES_READ}, no free tier.\n",
        w.connections,
        w.deliveries,
        w.subscribers_per_event,
        w.events(),
        w.payload_bytes,
        w.subscriptions_per_connection,
        w.reconnect_hours,
        w.ping_minutes,
    );
    let bill = pushgate(w, l);
    let _ = writeln!(out, "### pushgate, line by line\n");
    let _ = writeln!(out, "| service | item | quantity / month | $ / month |");
    let _ = writeln!(out, "|---|---|---:|---:|");
    for x in &bill {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            x.service,
            x.item,
            quantity(x.quantity),
            usd(x.usd)
        );
    }
    let _ = writeln!(out, "| **total** | | | **{}** |\n", usd(total(&bill)));

    let _ = writeln!(out, "### The same workload elsewhere\n");
    let _ = writeln!(
        out,
        "| service | $ / month | per 1 M deliveries | what dominates |"
    );
    let _ = writeln!(out, "|---|---:|---:|---|");
    let others: [(&str, Vec<Line>); 5] = [
        ("pushgate (API Gateway + Lambda + DynamoDB)", bill),
        ("AppSync Events", appsync_events(w)),
        ("IoT Core (MQTT over WebSocket)", iot_core(w)),
        ("Momento Topics", momento(w)),
        ("Ably (Standard, resource-based)", ably(w)),
    ];
    for (name, lines) in &others {
        let t = total(lines);
        let top = lines
            .iter()
            .max_by(|a, b| a.usd.total_cmp(&b.usd))
            .map_or(String::new(), |x| format!("{}: {}", x.item, usd(x.usd)));
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {top} |",
            usd(t),
            usd(t / (w.deliveries / 1e6))
        );
    }
    let _ = writeln!(out, "\n### Prices used\n");
    let _ = writeln!(out, "| price | $ | per | source |");
    let _ = writeln!(out, "|---|---:|---:|---|");
    for (name, p) in [
        ("API Gateway message", price::APIGW_MESSAGE),
        (
            "API Gateway connection minute",
            price::APIGW_CONNECTION_MINUTE,
        ),
        ("Lambda request", price::LAMBDA_REQUEST),
        ("Lambda arm64 GB-s", price::LAMBDA_ARM_GB_SECOND),
        ("DynamoDB WRU (on-demand)", price::DDB_WRU),
        ("DynamoDB RRU (on-demand)", price::DDB_RRU),
        ("EventBridge custom event", price::EVENTBRIDGE_EVENT),
        ("SQS request", price::SQS_REQUEST),
        ("AppSync Events operation", price::APPSYNC_OPERATION),
        (
            "AppSync connection minute",
            price::APPSYNC_CONNECTION_MINUTE,
        ),
        ("IoT Core message", price::IOT_MESSAGE),
        ("IoT Core connection minute", price::IOT_CONNECTION_MINUTE),
        ("Momento GB", price::MOMENTO_GB),
        ("Ably message", price::ABLY_MESSAGE),
        (
            "Ably connection / channel minute",
            price::ABLY_CONNECTION_MINUTE,
        ),
    ] {
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} |",
            p.usd,
            quantity(p.per),
            p.source
        );
    }
    let _ = writeln!(
        out,
        "| Ably Standard package | {} | month | ably.com/docs/pricing |",
        price::ABLY_STANDARD_MONTH
    );
    let _ = writeln!(
        out,
        "\nLambda model: notifier {} µs CPU per push (measured by `pushgate-bench cpu`), \
         {} ms Management API round trip over {} pushes in flight, {} ms fixed per event, \
         {} MB (a {:.3} vCPU share, so {:.3} ms of wall time per push); handlers {} ms at {} MB; \
         ping {}.",
        l.push_cpu_us,
        l.push_rtt_ms,
        l.push_concurrency,
        l.notifier_event_ms,
        l.notifier_mb,
        vcpu_share(l.notifier_mb),
        l.push_wall_ms(),
        l.handler_ms,
        l.handler_mb,
        if l.ping_invokes_lambda {
            "invokes a Lambda"
        } else {
            "answered by the mock integration (no Lambda)"
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload() -> Workload {
        Workload {
            connections: 10_000.0,
            deliveries: 10_000_000.0,
            subscribers_per_event: 100.0,
            payload_bytes: 300.0,
            subscriptions_per_connection: 1.0,
            reconnect_hours: 2.0,
            ping_minutes: 4.0,
        }
    }

    fn lambda() -> LambdaModel {
        LambdaModel {
            push_cpu_us: 50.0,
            push_rtt_ms: 10.0,
            push_concurrency: 64.0,
            notifier_event_ms: 20.0,
            notifier_mb: 256.0,
            handler_ms: 10.0,
            handler_mb: 128.0,
            ping_invokes_lambda: true,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6 * b.abs().max(1.0)
    }

    fn find(bill: &[Line], starts: &str) -> f64 {
        bill.iter()
            .find(|l| l.item.starts_with(starts))
            .map(|l| l.usd)
            .unwrap_or(f64::NAN)
    }

    #[test]
    fn workload_counts() {
        let w = workload();
        assert!(close(w.events(), 100_000.0));
        assert!(close(w.connection_minutes(), 438_000_000.0));
        assert!(close(w.lifecycles(), 3_650_000.0));
        assert!(close(w.pings(), 109_500_000.0));
        assert!(close(w.units(32.0 * 1024.0), 1.0));
        let big = Workload {
            payload_bytes: 33.0 * 1024.0,
            ..w
        };
        assert!(
            close(big.units(32.0 * 1024.0), 2.0),
            "33 KB is two messages"
        );
    }

    #[test]
    fn api_gateway_lines_in_dollars() {
        let bill = pushgate(&workload(), &lambda());
        // 438 M minutes × $0.25/M.
        assert!(close(find(&bill, "connection minutes"), 109.5));
        // 10 M deliveries × $1/M.
        assert!(close(find(&bill, "messages: deliveries"), 10.0));
        // 3.65 M subscribes, each a message in and a reply out.
        assert!(close(find(&bill, "messages: subscribe"), 7.3));
        // 109.5 M pings, each answered.
        assert!(close(find(&bill, "messages: ping"), 219.0));
    }

    #[test]
    fn dynamodb_and_history_lines_in_dollars() {
        let bill = pushgate(&workload(), &lambda());
        // 100 k events × 2 RRU × $0.125/M.
        assert!(close(find(&bill, "history: BatchGetItem"), 0.025));
        // 100 k events × 8 WRU × $0.625/M.
        assert!(close(find(&bill, "history: TransactWriteItems"), 0.5));
        // 100 subscribers × 200 B = 20,000 B → 5 RRU per event.
        assert!(close(find(&bill, "notify: subscriber Query"), 0.0625));
        // 3.65 M lifecycles × 3 WRU + 3.65 M subscribes × 4 WRU = 25.55 M WRU.
        assert!(close(
            find(&bill, "connect/subscribe/disconnect WRU"),
            15.968_75
        ));
    }

    #[test]
    fn lambda_lines_in_dollars() {
        let l = lambda();
        // 50 µs at 256/1769 of a vCPU beats 10 ms / 64.
        assert!(close(l.push_wall_ms(), 0.05 * 1769.0 / 256.0));
        let bill = pushgate(&workload(), &l);
        // 109.5 M ping invocations × $0.20/M.
        assert!(close(find(&bill, "ping invocations"), 21.9));
        // 109.5 M × 1 ms × 0.125 GB = 13,687.5 GB-s.
        assert!(close(find(&bill, "ping GB-s"), 13_687.5 * 0.000_013_333_4));
        let io_bound = LambdaModel {
            push_cpu_us: 1.0,
            ..l
        };
        assert!(close(io_bound.push_wall_ms(), 10.0 / 64.0));
    }

    #[test]
    fn other_services_in_dollars() {
        let w = workload();
        // 438 M × $0.08/M + (100 k + 10 M + 3.65 M) ops × $1/M.
        assert!(close(total(&appsync_events(&w)), 35.04 + 13.75));
        assert!(close(total(&iot_core(&w)), 35.04 + 13.75));
        // 10.1 M messages × 1,024 B = 10.3424 GB × $0.50.
        assert!(close(total(&momento(&w)), 5.1712));
        // $29 + 10.1 M × $2.50/M + 438 M × $1/M + 100 channels × 43,800 min × $1/M.
        assert!(close(total(&ably(&w)), 29.0 + 25.25 + 438.0 + 4.38));
    }

    #[test]
    fn the_report_names_every_service() {
        let text = report(&workload(), &lambda());
        for name in ["AppSync Events", "IoT Core", "Momento", "Ably", "history"] {
            assert!(text.contains(name), "{name}");
        }
    }
}

/// `pushgate-bench cost` flags; the defaults are the README's workload.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Args {
    /// Connections held 24/7.
    #[arg(long, default_value_t = 10_000.0)]
    pub connections: f64,
    /// Deliveries (frames to clients) a month.
    #[arg(long, default_value_t = 10_000_000.0)]
    pub deliveries: f64,
    /// Subscribers per event (events = deliveries / subscribers).
    #[arg(long, default_value_t = 100.0)]
    pub subscribers: f64,
    /// Bytes of one notification frame.
    #[arg(long, default_value_t = 300.0)]
    pub payload_bytes: f64,
    /// Subscriptions per connection.
    #[arg(long, default_value_t = 1.0)]
    pub subscriptions_per_connection: f64,
    /// Hours between reconnects (API Gateway's maximum connection is 2 h).
    #[arg(long, default_value_t = 2.0)]
    pub reconnect_hours: f64,
    /// Client ping period, minutes; 0 for none (clients/js: 8).
    #[arg(long, default_value_t = 8.0)]
    pub ping_minutes: f64,
    /// Notifier CPU per push, µs (from `pushgate-bench cpu`).
    #[arg(long, default_value_t = 50.0)]
    pub push_cpu_us: f64,
    /// Management API round trip, ms.
    #[arg(long, default_value_t = 10.0)]
    pub push_rtt_ms: f64,
    /// Price each ping as a Lambda invocation (the `$default` route, as
    /// before template.yaml's `ping` route got its mock integration).
    #[arg(long)]
    pub ping_lambda: bool,
}

impl Args {
    /// The workload and the Lambda model these flags describe.
    pub fn model(&self) -> (Workload, LambdaModel) {
        (
            Workload {
                connections: self.connections,
                deliveries: self.deliveries,
                subscribers_per_event: self.subscribers.max(1.0),
                payload_bytes: self.payload_bytes,
                subscriptions_per_connection: self.subscriptions_per_connection,
                reconnect_hours: self.reconnect_hours.max(0.01),
                ping_minutes: self.ping_minutes.max(0.0),
            },
            LambdaModel {
                push_cpu_us: self.push_cpu_us,
                push_rtt_ms: self.push_rtt_ms,
                push_concurrency: crate::default_concurrency() as f64,
                notifier_event_ms: 20.0,
                notifier_mb: 256.0,
                handler_ms: 10.0,
                handler_mb: 128.0,
                ping_invokes_lambda: self.ping_lambda,
            },
        )
    }
}
