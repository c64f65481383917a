//! The encoding against opentelemetry-proto's conversion of the same spans, decoded
//! back into that crate's structs: every field, every attribute type, both ways of
//! grouping by scope.

use std::{
    borrow::Cow,
    time::{Duration, SystemTime},
};

use opentelemetry::{
    Array, InstrumentationScope, KeyValue, StringValue, Value,
    trace::{
        Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
    },
};
use opentelemetry_proto::{
    tonic::collector::trace::v1::ExportTraceServiceRequest,
    transform::{
        common::tonic::ResourceAttributesWithSchema,
        trace::tonic::group_spans_by_resource_and_scope,
    },
};
use opentelemetry_sdk::{
    Resource,
    trace::{SpanData, SpanEvents, SpanLinks},
};
use prost::Message as _;

use super::{EncodedResource, Encoder};

fn context(trace: u128, span: u64, remote: bool) -> SpanContext {
    SpanContext::new(
        TraceId::from(trace),
        SpanId::from(span),
        TraceFlags::SAMPLED,
        remote,
        TraceState::from_key_value([("vendor", "value")]).unwrap(),
    )
}

fn scope(name: &'static str) -> InstrumentationScope {
    InstrumentationScope::builder(name)
        .with_version("1.2.3")
        .with_schema_url("https://opentelemetry.io/schemas/1.42.0")
        .with_attributes([KeyValue::new("scope.attribute", true)])
        .build()
}

fn span(id: u64, kind: SpanKind, scope: InstrumentationScope) -> SpanData {
    let start = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_764_000_000_123_456_789);
    let mut events = SpanEvents::default();
    events.events.push(Event::new(
        "exception",
        start + Duration::from_micros(5),
        vec![KeyValue::new("exception.message", "boom")],
        1,
    ));
    events.dropped_count = 2;
    let mut links = SpanLinks::default();
    links.links.push(Link::new(
        context(7, 8, true),
        vec![KeyValue::new("link.kind", 3_i64)],
        0,
    ));
    SpanData {
        span_context: context(0x0af7651916cd43dd8448eb211c80319c, id, false),
        parent_span_id: if id == 1 { SpanId::INVALID } else { SpanId::from(1) },
        parent_span_is_remote: id == 2,
        span_kind: kind,
        name: Cow::Owned(format!("span {id}")),
        start_time: start,
        end_time: start + Duration::from_millis(3),
        attributes: vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("url.path", String::from("/api/v1/todos/42")),
            KeyValue::new("client.address", StringValue::from(std::sync::Arc::<str>::from("::1"))),
            KeyValue::new("empty", ""),
            KeyValue::new("http.response.status_code", 200_i64),
            KeyValue::new("negative", -5_i64),
            KeyValue::new("zero", 0_i64),
            KeyValue::new("ratio", 0.25),
            KeyValue::new("nothing", 0.0),
            KeyValue::new("flag", false),
            KeyValue::new("strings", Value::Array(Array::String(vec!["a".into(), "".into()]))),
            KeyValue::new("numbers", Value::Array(Array::I64(vec![1, 0, -1]))),
            KeyValue::new("floats", Value::Array(Array::F64(vec![1.5]))),
            KeyValue::new("flags", Value::Array(Array::Bool(vec![true, false]))),
            KeyValue::new("long", "x".repeat(300)),
        ],
        dropped_attributes_count: id as u32 % 2,
        events: if id == 3 { events } else { SpanEvents::default() },
        links: if id == 3 { links } else { SpanLinks::default() },
        status: match id {
            2 => Status::error("the database is down"),
            3 => Status::Ok,
            _ => Status::Unset,
        },
        instrumentation_scope: scope,
    }
}

fn resource() -> Resource {
    Resource::builder_empty()
        .with_schema_url(
            [
                KeyValue::new("service.name", "todo-api"),
                KeyValue::new("service.version", "0.1.0"),
            ],
            "https://opentelemetry.io/schemas/1.42.0",
        )
        .build()
}

fn sorted(mut request: ExportTraceServiceRequest) -> ExportTraceServiceRequest {
    // opentelemetry-proto groups scopes through a HashMap: their order is arbitrary.
    for resource_spans in &mut request.resource_spans {
        resource_spans
            .scope_spans
            .sort_by(|a, b| a.scope.as_ref().map(|s| &s.name).cmp(&b.scope.as_ref().map(|s| &s.name)));
    }
    request
}

fn ours(spans: &[SpanData], resource: &Resource) -> ExportTraceServiceRequest {
    let mut out = Vec::new();
    Encoder::default().encode(spans, &EncodedResource::new(resource), &mut out);
    ExportTraceServiceRequest::decode(out.as_slice()).expect("a valid protobuf message")
}

fn theirs(spans: Vec<SpanData>, resource: &Resource) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(
            spans,
            &ResourceAttributesWithSchema::from(resource),
        ),
    }
}

fn batch() -> Vec<SpanData> {
    vec![
        span(1, SpanKind::Server, scope("todo-api")),
        span(2, SpanKind::Client, scope("todo-api")),
        span(3, SpanKind::Internal, scope("another")),
        span(4, SpanKind::Producer, scope("todo-api")),
        span(5, SpanKind::Consumer, InstrumentationScope::builder("bare").build()),
    ]
}

#[test]
fn encodes_what_opentelemetry_proto_encodes() {
    let resource = resource();
    let spans = batch();
    assert_eq!(sorted(ours(&spans, &resource)), sorted(theirs(spans, &resource)));
}

#[test]
fn a_reused_encoder_leaves_nothing_of_the_previous_batch() {
    // One Resource for both sides: its attributes' order is that of its own map.
    let sdk_resource = resource();
    let resource = EncodedResource::new(&sdk_resource);
    let mut encoder = Encoder::default();
    let mut out = Vec::new();
    encoder.encode(&batch(), &resource, &mut out);
    let one = vec![span(9, SpanKind::Server, scope("todo-api"))];
    encoder.encode(&one, &resource, &mut out);
    let decoded = ExportTraceServiceRequest::decode(out.as_slice()).unwrap();
    assert_eq!(decoded, theirs(one, &sdk_resource));
    encoder.encode(&[], &resource, &mut out);
    assert!(out.is_empty());
}

#[test]
fn the_comparison_sees_a_wrong_field() {
    // The broken case: a span whose kind is encoded wrongly must not compare equal.
    let resource = resource();
    let spans = batch();
    let mut decoded = ours(&spans, &resource);
    decoded.resource_spans[0].scope_spans[0].spans[0].kind = 5;
    assert_ne!(sorted(decoded), sorted(theirs(spans, &resource)));
}
