//! OTLP protobuf encoding of finished spans, written straight from the SDK's `SpanData`.
//!
//! Why not opentelemetry-otlp's own encoding: it first converts every span into
//! opentelemetry-proto's structs - an owned `String` for every attribute key and value,
//! made through `Display`, a `Vec` per span and per attribute list - then encodes those
//! with prost and drops them; over gRPC it deep-clones the batch first, for its retries.
//! Measured under callgrind (bench/README.md), that was about 70% of everything
//! telemetry costs the service per request; writing the bytes directly from the spans
//! costs about a quarter of what that conversion, encoding and drop did. Upstream tracks the copies in opentelemetry-rust#3368 and #3123.
//! The wire format is the same message (`ExportTraceServiceRequest`), field for field:
//! a test decodes this encoding with opentelemetry-proto and compares it with that
//! crate's own conversion.

use opentelemetry::{
    Array, InstrumentationScope, Value,
    trace::{SpanKind, Status},
};
use opentelemetry_sdk::{Resource, trace::SpanData};
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
use std::time::{SystemTime, UNIX_EPOCH};

/// The resource's part of every request, encoded once (it only changes at start-up).
#[derive(Debug, Default, Clone)]
pub struct EncodedResource {
    /// A `Resource` message body.
    message: Vec<u8>,
    schema_url: String,
}

impl EncodedResource {
    pub fn new(resource: &Resource) -> Self {
        let mut message = Vec::new();
        for (key, value) in resource.iter() {
            key_value(&mut message, 1, key.as_str(), value);
        }
        Self {
            message,
            schema_url: resource.schema_url().unwrap_or_default().to_owned(),
        }
    }
}

/// Reusable buffers: one request's encoding allocates nothing once they have grown.
#[derive(Debug, Default)]
pub struct Encoder {
    resource_spans: Vec<u8>,
    scope_spans: Vec<u8>,
    span: Vec<u8>,
    nested: Vec<u8>,
}

impl Encoder {
    /// `spans` as one `ExportTraceServiceRequest`, into `out` (cleared first): one
    /// `ResourceSpans`, with one `ScopeSpans` per instrumentation scope in the order the
    /// scopes first appear.
    pub fn encode(&mut self, spans: &[SpanData], resource: &EncodedResource, out: &mut Vec<u8>) {
        out.clear();
        if spans.is_empty() {
            return;
        }
        let rs = &mut self.resource_spans;
        rs.clear();
        message(rs, 1, &resource.message);
        let mut done = vec![false; spans.len()];
        for first in 0..spans.len() {
            if done[first] {
                continue;
            }
            let scope = &spans[first].instrumentation_scope;
            let ss = &mut self.scope_spans;
            ss.clear();
            self.nested.clear();
            encode_scope(&mut self.nested, scope);
            message(ss, 1, &self.nested);
            for (index, span) in spans.iter().enumerate().skip(first) {
                if done[index] || span.instrumentation_scope != *scope {
                    continue;
                }
                done[index] = true;
                self.span.clear();
                encode_span(&mut self.span, &mut self.nested, span);
                message(ss, 2, &self.span);
            }
            string(ss, 3, scope.schema_url().unwrap_or_default());
            message(rs, 2, ss);
        }
        string(rs, 3, &resource.schema_url);
        message(out, 1, rs);
    }
}

fn encode_scope(buf: &mut Vec<u8>, scope: &InstrumentationScope) {
    string(buf, 1, scope.name());
    string(buf, 2, scope.version().unwrap_or_default());
    for attribute in scope.attributes() {
        key_value(buf, 3, attribute.key.as_str(), &attribute.value);
    }
}

fn encode_span(buf: &mut Vec<u8>, nested: &mut Vec<u8>, span: &SpanData) {
    let context = &span.span_context;
    bytes(buf, 1, &context.trace_id().to_bytes());
    bytes(buf, 2, &context.span_id().to_bytes());
    string(buf, 3, &context.trace_state().header());
    if span.parent_span_id != opentelemetry::trace::SpanId::INVALID {
        bytes(buf, 4, &span.parent_span_id.to_bytes());
    }
    string(buf, 5, &span.name);
    uint(buf, 6, kind(&span.span_kind));
    fixed64(buf, 7, nanos(span.start_time));
    fixed64(buf, 8, nanos(span.end_time));
    for attribute in &span.attributes {
        key_value(buf, 9, attribute.key.as_str(), &attribute.value);
    }
    uint(buf, 10, u64::from(span.dropped_attributes_count));
    for event in span.events.iter() {
        nested.clear();
        fixed64(nested, 1, nanos(event.timestamp));
        string(nested, 2, &event.name);
        for attribute in &event.attributes {
            key_value(nested, 3, attribute.key.as_str(), &attribute.value);
        }
        uint(nested, 4, u64::from(event.dropped_attributes_count));
        message(buf, 11, nested);
    }
    uint(buf, 12, u64::from(span.events.dropped_count));
    for link in span.links.iter() {
        nested.clear();
        let linked = &link.span_context;
        bytes(nested, 1, &linked.trace_id().to_bytes());
        bytes(nested, 2, &linked.span_id().to_bytes());
        string(nested, 3, &linked.trace_state().header());
        for attribute in &link.attributes {
            key_value(nested, 4, attribute.key.as_str(), &attribute.value);
        }
        uint(nested, 5, u64::from(link.dropped_attributes_count));
        fixed32(nested, 6, flags(linked.is_remote(), linked.trace_flags().to_u8()));
        message(buf, 13, nested);
    }
    uint(buf, 14, u64::from(span.links.dropped_count));
    // Status is always present, as opentelemetry-proto's conversion writes it.
    nested.clear();
    if let Status::Error { description } = &span.status {
        string(nested, 2, description);
    }
    uint(nested, 3, status_code(&span.status));
    message(buf, 15, nested);
    fixed32(
        buf,
        16,
        flags(span.parent_span_is_remote, context.trace_flags().to_u8()),
    );
}

/// `SpanFlags`: the W3C trace flags, plus whether the parent's remoteness is known (it
/// always is here) and whether it is remote.
fn flags(remote: bool, trace_flags: u8) -> u32 {
    const HAS_IS_REMOTE: u32 = 0x100;
    const IS_REMOTE: u32 = 0x200;
    u32::from(trace_flags) | HAS_IS_REMOTE | if remote { IS_REMOTE } else { 0 }
}

fn kind(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

fn status_code(status: &Status) -> u64 {
    match status {
        Status::Unset => 0,
        Status::Ok => 1,
        Status::Error { .. } => 2,
    }
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64)
}

/// A `KeyValue` field. Its length is worked out first, so nothing is copied twice.
fn key_value(buf: &mut Vec<u8>, field: u32, key: &str, value: &Value) {
    let value_len = any_value_len(value);
    let len = string_len(1, key) + 1 + encoded_len_varint(value_len as u64) + value_len;
    encode_key(field, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
    string(buf, 1, key);
    // `value` is always present (an empty AnyValue for an empty string), as in the
    // opentelemetry-proto conversion.
    encode_key(2, WireType::LengthDelimited, buf);
    encode_varint(value_len as u64, buf);
    any_value(buf, value);
}

// `AnyValue.value` is a oneof: its field is written even at the default value (an empty
// string, 0, false), as prost writes a oneof that is set.

fn any_value_len(value: &Value) -> usize {
    match value {
        Value::String(text) => {
            let len = text.as_str().len();
            1 + encoded_len_varint(len as u64) + len
        }
        Value::Bool(_) => 1 + 1,
        Value::I64(number) => 1 + encoded_len_varint(*number as u64),
        Value::F64(_) => 1 + 8,
        Value::Array(array) => {
            let len = array_len(array);
            1 + encoded_len_varint(len as u64) + len
        }
        _ => 0,
    }
}

fn any_value(buf: &mut Vec<u8>, value: &Value) {
    match value {
        Value::String(text) => message(buf, 1, text.as_str().as_bytes()),
        Value::Bool(flag) => {
            encode_key(2, WireType::Varint, buf);
            encode_varint(u64::from(*flag), buf);
        }
        Value::I64(number) => {
            encode_key(3, WireType::Varint, buf);
            encode_varint(*number as u64, buf);
        }
        Value::F64(number) => {
            encode_key(4, WireType::SixtyFourBit, buf);
            buf.extend_from_slice(&number.to_le_bytes());
        }
        Value::Array(array) => {
            encode_key(5, WireType::LengthDelimited, buf);
            encode_varint(array_len(array) as u64, buf);
            for_each_element(array, |element| {
                encode_key(1, WireType::LengthDelimited, buf);
                encode_varint(any_value_len(&element) as u64, buf);
                any_value(buf, &element);
            });
        }
        _ => {}
    }
}

/// The length of an `ArrayValue` body: each element an `AnyValue` field.
fn array_len(array: &Array) -> usize {
    let mut len = 0;
    for_each_element(array, |element| {
        let element_len = any_value_len(&element);
        len += 1 + encoded_len_varint(element_len as u64) + element_len;
    });
    len
}

fn for_each_element(array: &Array, mut visit: impl FnMut(Value)) {
    match array {
        Array::Bool(values) => values.iter().for_each(|v| visit(Value::Bool(*v))),
        Array::I64(values) => values.iter().for_each(|v| visit(Value::I64(*v))),
        Array::F64(values) => values.iter().for_each(|v| visit(Value::F64(*v))),
        Array::String(values) => values.iter().for_each(|v| visit(Value::String(v.clone()))),
        _ => {}
    }
}

// Field writers. Like prost, they leave out a scalar or string field at its default
// value (proto3); a message field is always written.

fn message(buf: &mut Vec<u8>, field: u32, body: &[u8]) {
    encode_key(field, WireType::LengthDelimited, buf);
    encode_varint(body.len() as u64, buf);
    buf.extend_from_slice(body);
}

fn string(buf: &mut Vec<u8>, field: u32, text: &str) {
    bytes(buf, field, text.as_bytes());
}

fn bytes(buf: &mut Vec<u8>, field: u32, data: &[u8]) {
    if !data.is_empty() {
        message(buf, field, data);
    }
}

fn string_len(field: u32, text: &str) -> usize {
    if text.is_empty() {
        0
    } else {
        key_len(field) + encoded_len_varint(text.len() as u64) + text.len()
    }
}

fn uint(buf: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        encode_key(field, WireType::Varint, buf);
        encode_varint(value, buf);
    }
}

fn fixed64(buf: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        encode_key(field, WireType::SixtyFourBit, buf);
        buf.extend_from_slice(&value.to_le_bytes());
    }
}

fn fixed32(buf: &mut Vec<u8>, field: u32, value: u32) {
    if value != 0 {
        encode_key(field, WireType::ThirtyTwoBit, buf);
        buf.extend_from_slice(&value.to_le_bytes());
    }
}

fn key_len(field: u32) -> usize {
    encoded_len_varint(u64::from(field << 3))
}

#[cfg(test)]
mod tests;
