//! The spans in the sink collector's file (`stack/native/sink-collector.yaml`: one
//! OTLP/JSON object per line), with what trace tests look at: ids, kind, service, status,
//! timing and plain attribute values.

use std::{collections::BTreeMap, path::Path};

use serde_json::Value;

pub const KIND_SERVER: i64 = 2;
pub const KIND_CLIENT: i64 = 3;
pub const STATUS_ERROR: i64 = 2;

#[derive(Debug, Clone, PartialEq)]
pub struct SinkSpan {
    /// `service.name` of the span's resource.
    pub service: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    pub kind: i64,
    pub status_code: i64,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: BTreeMap<String, Value>,
}

impl SinkSpan {
    pub fn attribute(&self, key: &str) -> Option<&Value> {
        self.attributes.get(key)
    }

    pub fn text(&self, key: &str) -> Option<&str> {
        self.attribute(key).and_then(Value::as_str)
    }

    pub fn seconds(&self) -> f64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano) as f64 / 1e9
    }

    pub fn is_root(&self) -> bool {
        self.parent_span_id.is_empty()
    }
}

/// Every complete line of the sink file (the exporter may be writing the last one).
pub fn complete_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_inclusive('\n')
        .filter(|line| line.ends_with('\n'))
        .map(str::to_owned)
        .collect()
}

/// Every span of one OTLP/JSON batch, with the resource it came under.
pub fn resource_spans(batch: &Value) -> impl Iterator<Item = (&Value, &Value)> {
    batch["resourceSpans"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|resource_spans| {
            let resource = &resource_spans["resource"];
            resource_spans["scopeSpans"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|scope| scope["spans"].as_array().into_iter().flatten())
                .map(move |span| (resource, span))
        })
}

/// The `service.name` attribute of an OTLP/JSON resource.
pub fn service_name(resource: &Value) -> Option<String> {
    attributes(&resource["attributes"])
        .get("service.name")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Every span in the complete lines of the sink file.
pub fn read(path: &Path) -> Vec<SinkSpan> {
    let mut spans = Vec::new();
    for line in complete_lines(path) {
        let batch: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("a sink line is not JSON ({e}): {line}"));
        for (resource, span) in resource_spans(&batch) {
            let text = |field: &str| span[field].as_str().unwrap_or_default().to_owned();
            let nanos = |field: &str| {
                span[field]
                    .as_str()
                    .and_then(|n| n.parse().ok())
                    .or_else(|| span[field].as_u64())
                    .unwrap_or(0)
            };
            spans.push(SinkSpan {
                service: service_name(resource).unwrap_or_default(),
                trace_id: text("traceId"),
                span_id: text("spanId"),
                parent_span_id: text("parentSpanId"),
                name: text("name"),
                kind: span["kind"].as_i64().unwrap_or(0),
                status_code: span["status"]["code"].as_i64().unwrap_or(0),
                start_unix_nano: nanos("startTimeUnixNano"),
                end_unix_nano: nanos("endTimeUnixNano"),
                attributes: attributes(&span["attributes"]),
            });
        }
    }
    spans
}

/// OTLP/JSON attributes (`[{"key", "value": {"stringValue" | "intValue" (a string) | ...}}]`)
/// as plain JSON values.
pub fn attributes(list: &Value) -> BTreeMap<String, Value> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|attribute| {
            let value = &attribute["value"];
            let plain = if let Some(text) = value["stringValue"].as_str() {
                Value::from(text)
            } else if let Some(int) = value["intValue"]
                .as_str()
                .and_then(|i| i.parse::<i64>().ok())
            {
                Value::from(int)
            } else if let Some(boolean) = value["boolValue"].as_bool() {
                Value::from(boolean)
            } else {
                value["doubleValue"].clone()
            };
            Some((attribute["key"].as_str()?.to_owned(), plain))
        })
        .collect()
}
