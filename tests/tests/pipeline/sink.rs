//! The sink: traces and logs as the lab collector exported them (OTLP/JSON lines), read
//! into the few fields the checks use.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use labctl::plan::ROUTE_TODOS;
use labctl::summary::Summary;
use serde_json::Value;

use crate::SETTLE_TIMEOUT;
use crate::prometheus::Key;
use lab_tests::sink_spans::{attributes, complete_lines, resource_spans, service_name};

#[derive(Debug, Default)]
pub struct Sink {
    pub spans: Vec<SinkSpan>,
    pub logs: Vec<SinkLog>,
    /// service.name of every resource seen (spans and logs), with what carried it.
    pub resources: Vec<(&'static str, Option<String>)>,
}

#[derive(Debug)]
pub struct SinkSpan {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    /// OTLP SpanKind: 2 SERVER, 3 CLIENT.
    pub kind: i64,
    pub attributes: BTreeMap<String, Value>,
}

impl SinkSpan {
    pub fn key(&self) -> Key {
        let text = |name: &str| {
            self.attributes
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        (
            text("http.request.method"),
            text("http.route"),
            self.status(),
        )
    }
    pub fn status(&self) -> u16 {
        self.attributes
            .get("http.response.status_code")
            .and_then(Value::as_u64)
            .unwrap_or(0) as u16
    }
}

#[derive(Debug)]
pub struct SinkLog {
    pub trace_id: String,
    pub span_id: String,
    pub body: String,
}

pub const SERVER_KIND: i64 = 2;
pub const CLIENT_KIND: i64 = 3;

fn read_sink(path: &Path) -> Sink {
    let mut sink = Sink::default();
    for line in complete_lines(path) {
        let batch: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("a sink line is not JSON ({e}): {line}"));
        for resource_spans in batch["resourceSpans"].as_array().into_iter().flatten() {
            sink.resources
                .push(("spans", service_name(&resource_spans["resource"])));
        }
        for (_, span) in resource_spans(&batch) {
            let text = |field: &str| span[field].as_str().unwrap_or_default().to_owned();
            sink.spans.push(SinkSpan {
                trace_id: text("traceId"),
                span_id: text("spanId"),
                parent_span_id: text("parentSpanId"),
                name: text("name"),
                kind: span["kind"].as_i64().unwrap_or(0),
                attributes: attributes(&span["attributes"]),
            });
        }
        for resource_logs in batch["resourceLogs"].as_array().into_iter().flatten() {
            sink.resources
                .push(("logs", service_name(&resource_logs["resource"])));
            for scope in resource_logs["scopeLogs"].as_array().into_iter().flatten() {
                for record in scope["logRecords"].as_array().into_iter().flatten() {
                    let text = |field: &str| record[field].as_str().unwrap_or_default().to_owned();
                    sink.logs.push(SinkLog {
                        trace_id: text("traceId"),
                        span_id: text("spanId"),
                        body: record["body"]["stringValue"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    });
                }
            }
        }
    }
    sink
}

pub const INJECTED_FAULT_LOG: &str = "injected fault (LAB_FAULT_ERROR_RATE)";
pub const CREATED_LOG: &str = "todo created";

/// Waits until the sink holds a server span for every request sent and the log records
/// every injected fault and every create writes (the service flushed all at shutdown).
pub async fn wait_for_sink(path: &Path, summary: &Summary) -> Sink {
    let totals = summary.totals();
    let created = summary.count("POST", ROUTE_TODOS, 201);
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let sink = read_sink(path);
        let servers = sink.spans.iter().filter(|s| s.kind == SERVER_KIND).count() as u64;
        let faults = sink
            .logs
            .iter()
            .filter(|l| l.body == INJECTED_FAULT_LOG)
            .count() as u64;
        let creates = sink.logs.iter().filter(|l| l.body == CREATED_LOG).count() as u64;
        if (servers >= totals.responses && faults >= totals.status_5xx && creates >= created)
            || Instant::now() >= deadline
        {
            return sink;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
