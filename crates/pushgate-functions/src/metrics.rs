//! Custom metrics in CloudWatch's embedded metric format (EMF): one JSON
//! object per line on stdout, which CloudWatch Logs turns into metrics
//! because the Lambda log group receives it. No `PutMetricData` call (no
//! latency on the push path, no `cloudwatch:*` permission) and the figures
//! sit next to the log lines that explain them.
//!
//! Lambda passes a line that is already JSON through unchanged in both log
//! formats, so EMF lines work with `LogFormat: JSON` as with `Text`.
//!
//! The format (CloudWatch_Embedded_Metric_Format_Specification): a root
//! object with `_aws: {Timestamp, CloudWatchMetrics: [{Namespace,
//! Dimensions: [[names]], Metrics: [{Name, Unit}]}]}`, the dimension values
//! and metric values as root members. A metric value is a number or an array
//! of up to 100 numbers; a directive holds up to 100 metrics and a dimension
//! set up to 30 dimensions.
//!
//! ```no_run
//! use pushgate_functions::metrics::{function_dimension, FanoutMetrics, NAMESPACE};
//! let mut m = FanoutMetrics::default();
//! m.delivered += 10;
//! m.record_event(42, 180);
//! m.emit(NAMESPACE, &[function_dimension()]).ok();
//! ```

use std::io::Write;

use serde_json::{Map, Number, Value};

/// pushgate's metric namespace.
pub const NAMESPACE: &str = "Pushgate";
/// The dimension naming the function that emitted a metric. Its value is
/// the Lambda function's name (`AWS_LAMBDA_FUNCTION_NAME`), which is unique
/// per stack, so two stacks in one account do not mix their figures and the
/// template's alarms can name it with `!Ref`.
pub const FUNCTION_DIMENSION: &str = "Function";
/// Most values one metric may carry in one EMF line.
pub const MAX_VALUES_PER_METRIC: usize = 100;
/// Most dimensions in one dimension set.
pub const MAX_DIMENSIONS: usize = 30;

/// `(Function, <this Lambda function's name>)`; `local` outside Lambda.
pub fn function_dimension() -> (&'static str, String) {
    let name = std::env::var("AWS_LAMBDA_FUNCTION_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "local".to_owned());
    (FUNCTION_DIMENSION, name)
}

/// Why metrics were not written.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// More than [`MAX_DIMENSIONS`] dimensions.
    #[error("{0} dimensions; EMF allows at most {MAX_DIMENSIONS}")]
    TooManyDimensions(usize),
    /// A dimension is named like a metric or like `_aws`, so its value would
    /// overwrite (or be overwritten by) another member of the line.
    #[error("dimension {0:?} clashes with a metric name or _aws")]
    DimensionClash(String),
    /// Writing failed.
    #[error("could not write the metrics")]
    Io(#[from] std::io::Error),
}

/// CloudWatch units used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// `Count`
    Count,
    /// `Milliseconds`
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Milliseconds => "Milliseconds",
        }
    }
}

/// One metric: a name, a unit and its values (one per observation; a
/// counter has one value).
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Metric name.
    pub name: &'static str,
    /// Unit.
    pub unit: Unit,
    /// Observations. A metric with none is left out.
    pub values: Vec<f64>,
}

/// Writes `metrics` as EMF lines to `out`, timestamped `timestamp_ms`
/// (epoch milliseconds). Arrays over [`MAX_VALUES_PER_METRIC`] values are
/// split over several lines, each line carrying the dimensions and the next
/// slice of every metric that still has values; counters therefore appear
/// once. Nothing is written when no metric has a value.
pub fn write_emf<W: Write>(
    mut out: W,
    namespace: &str,
    dimensions: &[(&str, String)],
    metrics: &[Metric],
    timestamp_ms: i64,
) -> Result<(), MetricsError> {
    if dimensions.len() > MAX_DIMENSIONS {
        return Err(MetricsError::TooManyDimensions(dimensions.len()));
    }
    if let Some((name, _)) = dimensions
        .iter()
        .find(|(d, _)| *d == "_aws" || metrics.iter().any(|m| m.name == *d))
    {
        return Err(MetricsError::DimensionClash((*name).to_owned()));
    }
    let lines = metrics
        .iter()
        .map(|m| m.values.len().div_ceil(MAX_VALUES_PER_METRIC))
        .max()
        .unwrap_or(0);
    // One buffer per line, written with one call, so that a line is never
    // interleaved with log output written at the same time.
    let mut buffer = Vec::with_capacity(512);
    for line in 0..lines {
        let mut root = Map::new();
        let mut definitions = Vec::new();
        for m in metrics {
            let start = line * MAX_VALUES_PER_METRIC;
            let slice = m
                .values
                .get(start..m.values.len().min(start + MAX_VALUES_PER_METRIC))
                .unwrap_or(&[]);
            let numbers: Vec<Value> = slice
                .iter()
                .filter_map(|v| Number::from_f64(*v).map(Value::Number))
                .collect();
            let value = match numbers.len() {
                0 => continue,
                1 => numbers.into_iter().next().unwrap_or(Value::Null),
                _ => Value::Array(numbers),
            };
            root.insert(m.name.to_owned(), value);
            definitions.push(serde_json::json!({"Name": m.name, "Unit": m.unit.as_str()}));
        }
        if definitions.is_empty() {
            continue;
        }
        for (name, value) in dimensions {
            root.insert((*name).to_owned(), Value::String(value.clone()));
        }
        let names: Vec<&str> = dimensions.iter().map(|(n, _)| *n).collect();
        root.insert(
            "_aws".to_owned(),
            serde_json::json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": namespace,
                    "Dimensions": [names],
                    "Metrics": definitions,
                }],
            }),
        );
        buffer.clear();
        serde_json::to_writer(&mut buffer, &Value::Object(root)).map_err(std::io::Error::from)?;
        buffer.push(b'\n');
        out.write_all(&buffer)?;
    }
    out.flush()?;
    Ok(())
}

/// What one notifier (or publish) invocation did, as metrics.
///
/// | metric | unit | meaning |
/// |---|---|---|
/// | `Events` | Count | events fanned out |
/// | `Delivered` | Count | PostToConnection calls answered 200 |
/// | `Gone` | Count | connections that answered 410 (and were deleted) |
/// | `Failed` | Count | pushes given up on (403, 413, retries exhausted) |
/// | `Throttled` | Count | PostToConnection answers 429 (every attempt) |
/// | `FanoutDuration` | Milliseconds | per event: first read to last push answered |
/// | `EventAge` | Milliseconds | per event: EventBridge `time` to last push answered |
///
/// The counters are always written, zero included, so alarms and graphs
/// see "nothing happened" rather than missing data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FanoutMetrics {
    /// Events fanned out.
    pub events: u64,
    /// Pushes answered 200.
    pub delivered: u64,
    /// Connections that answered 410.
    pub gone: u64,
    /// Pushes given up on.
    pub failed: u64,
    /// 429 answers.
    pub throttled: u64,
    /// Per event, milliseconds from the first read to the last push.
    pub fanout_ms: Vec<u64>,
    /// Per event, milliseconds from the event's time to its last push.
    pub event_age_ms: Vec<u64>,
}

impl FanoutMetrics {
    /// Counts one event with its fan-out duration and age.
    pub fn record_event(&mut self, fanout_ms: u64, event_age_ms: u64) {
        self.events += 1;
        self.fanout_ms.push(fanout_ms);
        self.event_age_ms.push(event_age_ms);
    }

    /// Adds another invocation's (or another event's) figures.
    pub fn merge(&mut self, other: &Self) {
        self.events += other.events;
        self.delivered += other.delivered;
        self.gone += other.gone;
        self.failed += other.failed;
        self.throttled += other.throttled;
        self.fanout_ms.extend_from_slice(&other.fanout_ms);
        self.event_age_ms.extend_from_slice(&other.event_age_ms);
    }

    /// The metrics, in the order they are written.
    pub fn metrics(&self) -> Vec<Metric> {
        // u64 → f64 loses precision only above 2^53, far beyond any count
        // or duration here.
        let f = |v: u64| v as f64;
        let count = |name, v: u64| Metric {
            name,
            unit: Unit::Count,
            values: vec![f(v)],
        };
        let ms = |name, vs: &[u64]| Metric {
            name,
            unit: Unit::Milliseconds,
            values: vs.iter().copied().map(f).collect(),
        };
        vec![
            count("Events", self.events),
            count("Delivered", self.delivered),
            count("Gone", self.gone),
            count("Failed", self.failed),
            count("Throttled", self.throttled),
            ms("FanoutDuration", &self.fanout_ms),
            ms("EventAge", &self.event_age_ms),
        ]
    }

    /// Writes the EMF line(s) to `out`, timestamped `timestamp_ms`.
    pub fn write_to<W: Write>(
        &self,
        out: W,
        namespace: &str,
        dimensions: &[(&str, String)],
        timestamp_ms: i64,
    ) -> Result<(), MetricsError> {
        write_emf(out, namespace, dimensions, &self.metrics(), timestamp_ms)
    }

    /// Prints the EMF line(s) to stdout, where Lambda's log capture and
    /// CloudWatch Logs pick them up, timestamped now.
    pub fn emit(&self, namespace: &str, dimensions: &[(&str, String)]) -> Result<(), MetricsError> {
        let now = crate::Clock::system().now_ms();
        self.write_to(std::io::stdout().lock(), namespace, dimensions, now)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn lines(buf: &[u8]) -> Vec<Value> {
        std::str::from_utf8(buf)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn writes_one_emf_line_that_names_every_metric_and_dimension() {
        let mut m = FanoutMetrics {
            delivered: 97,
            gone: 2,
            failed: 1,
            throttled: 5,
            ..FanoutMetrics::default()
        };
        m.record_event(120, 950);
        m.record_event(80, 400);
        let mut out = Vec::new();
        m.write_to(
            &mut out,
            NAMESPACE,
            &[(FUNCTION_DIMENSION, "pushgate-NotifierFunction-abc".into())],
            1_795_341_600_000,
        )
        .unwrap();
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1, "one line");
        assert!(out.ends_with(b"\n"));
        let line = &lines(&out)[0];
        assert_eq!(line["_aws"]["Timestamp"], 1_795_341_600_000_i64);
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Pushgate");
        assert_eq!(directive["Dimensions"], serde_json::json!([["Function"]]));
        assert_eq!(line["Function"], "pushgate-NotifierFunction-abc");
        let defs: Vec<(String, String)> = directive["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["Name"].as_str().unwrap().to_owned(),
                    d["Unit"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let expected = [
            ("Events", "Count"),
            ("Delivered", "Count"),
            ("Gone", "Count"),
            ("Failed", "Count"),
            ("Throttled", "Count"),
            ("FanoutDuration", "Milliseconds"),
            ("EventAge", "Milliseconds"),
        ];
        assert_eq!(
            defs,
            expected
                .iter()
                .map(|(n, u)| (n.to_string(), u.to_string()))
                .collect::<Vec<_>>()
        );
        // Every defined metric is a root member (the spec's "target members").
        for (name, _) in expected {
            assert!(line.get(name).is_some(), "{name}");
        }
        assert_eq!(line["Events"], 2.0);
        assert_eq!(line["Delivered"], 97.0);
        assert_eq!(line["Throttled"], 5.0);
        assert_eq!(line["FanoutDuration"], serde_json::json!([120.0, 80.0]));
        assert_eq!(line["EventAge"], serde_json::json!([950.0, 400.0]));
    }

    #[test]
    fn counters_are_written_when_zero_and_empty_timings_are_left_out() {
        let mut out = Vec::new();
        FanoutMetrics::default()
            .write_to(&mut out, NAMESPACE, &[], 1)
            .unwrap();
        let line = &lines(&out)[0];
        assert_eq!(line["Delivered"], 0.0);
        assert!(line.get("FanoutDuration").is_none());
        let names: Vec<&str> = line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["Name"].as_str().unwrap())
            .collect();
        assert!(!names.contains(&"FanoutDuration") && !names.contains(&"EventAge"));
        // No dimensions: one empty dimension set, as the spec allows.
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([[]])
        );
    }

    #[test]
    fn more_than_100_values_are_split_over_lines_and_counted_once() {
        let mut m = FanoutMetrics::default();
        for i in 0..250 {
            m.record_event(i, i * 2);
        }
        m.delivered = 7;
        let mut out = Vec::new();
        m.write_to(&mut out, NAMESPACE, &[("Function", "f".into())], 5)
            .unwrap();
        let all = lines(&out);
        assert_eq!(all.len(), 3);
        let sizes: Vec<usize> = all
            .iter()
            .map(|l| l["FanoutDuration"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, vec![100, 100, 50]);
        assert_eq!(all[0]["Delivered"], 7.0);
        assert_eq!(all[0]["Events"], 250.0);
        for later in &all[1..] {
            assert!(later.get("Delivered").is_none(), "counted once");
            assert_eq!(later["Function"], "f", "every line is self-contained");
        }
        let total: f64 = all
            .iter()
            .flat_map(|l| l["EventAge"].as_array().unwrap().clone())
            .map(|v| v.as_f64().unwrap())
            .sum();
        assert_eq!(total, (0..250).map(|i| f64::from(i * 2)).sum::<f64>());
    }

    #[test]
    fn refuses_dimensions_that_would_overwrite_members() {
        let m = FanoutMetrics::default();
        for bad in ["Delivered", "_aws"] {
            let err = m
                .write_to(Vec::new(), NAMESPACE, &[(bad, "x".into())], 1)
                .unwrap_err();
            assert!(matches!(err, MetricsError::DimensionClash(ref d) if d == bad));
        }
        let many: Vec<(&str, String)> = (0..31).map(|_| ("D", String::new())).collect();
        assert!(matches!(
            m.write_to(Vec::new(), NAMESPACE, &many, 1),
            Err(MetricsError::TooManyDimensions(31))
        ));
    }

    #[test]
    fn merge_adds_everything() {
        let mut a = FanoutMetrics {
            delivered: 1,
            ..FanoutMetrics::default()
        };
        a.record_event(1, 2);
        let mut b = FanoutMetrics {
            delivered: 2,
            throttled: 3,
            ..FanoutMetrics::default()
        };
        b.record_event(3, 4);
        a.merge(&b);
        assert_eq!((a.events, a.delivered, a.throttled), (2, 3, 3));
        assert_eq!(a.fanout_ms, vec![1, 3]);
    }
}
