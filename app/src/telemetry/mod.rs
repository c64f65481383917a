//! All of the service's instrumentation lives here: the SDK set-up driven by the standard
//! `OTEL_*` variables, the HTTP middleware (server spans + request duration metric), the
//! database client spans and the OTLP span exporter (`span_export`, `span_encoding`).
//! Handlers contain no telemetry code.

pub mod baggage;
pub mod db;
mod exporters;
pub mod http;
mod logs;
pub mod otlp_env;
mod span_encoding;
mod span_export;
mod transport;

use std::{
    sync::{Arc, OnceLock},
    thread,
    time::{Duration, Instant},
};

use opentelemetry::{
    InstrumentationScope, KeyValue, global, metrics::Meter, trace::TraceContextExt,
};
use opentelemetry_sdk::{
    Resource,
    logs::{BatchLogProcessor, SdkLoggerProvider},
    metrics::SdkMeterProvider,
    trace::{BatchConfig, BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider},
};
use opentelemetry_semantic_conventions::SCHEMA_URL;
use tracing_subscriber::{
    EnvFilter, Layer, filter::filter_fn, layer::SubscriberExt, util::SubscriberInitExt,
};

use crate::config::var;
use exporters::{ExporterKind, WarnOnce, otlp_exporter};
use logs::BridgeFixes;
use otlp_env::{OtlpSettings, Protocol, Signal};
use span_export::OtlpSpanExporter;
use transport::Verdict;

const DEFAULT_SERVICE_NAME: &str = "todo-api";
/// Instrumentation scope of everything the service records itself.
const SCOPE: &str = "todo-api";

static SERVICE_NAME: OnceLock<String> = OnceLock::new();
static SCOPE_WITH_SCHEMA: OnceLock<InstrumentationScope> = OnceLock::new();
static TRACER: OnceLock<SdkTracer> = OnceLock::new();
static EXPORT_RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

/// The Tokio runtime the gRPC exporters run on: one thread of its own, not the request
/// runtime. tonic spawns its channel's worker and HTTP/2 connection on the runtime it is
/// built in, and that connection task encodes each batch (a few milliseconds for 512
/// spans) - on a request worker, every request queued behind it would wait. Kept for
/// the life of the process (a static is never dropped, so it cannot be dropped inside
/// the request runtime either).
fn export_runtime() -> anyhow::Result<&'static tokio::runtime::Runtime> {
    if let Some(runtime) = EXPORT_RUNTIME.get() {
        return Ok(runtime);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otel-export")
        .enable_all()
        .build()?;
    Ok(EXPORT_RUNTIME.get_or_init(|| runtime))
}

/// The SDK providers, kept to flush and shut them down on exit.
#[derive(Default)]
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
    logger_provider: Option<SdkLoggerProvider>,
}

/// Sets up tracing, metrics and logs from the environment and installs the `tracing`
/// subscriber (console output plus, unless disabled, the OTLP log bridge).
pub fn init() -> anyhow::Result<Telemetry> {
    let resource = resource();
    let service_name = resource
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .map(|value| value.to_string())
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
    let _ = SERVICE_NAME.set(service_name);

    // The Rust SDK does not implement OTEL_SDK_DISABLED itself (see the spec's
    // "General SDK Configuration"); honouring it here leaves every API call a no-op.
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut telemetry = Telemetry::default();
    if !disabled {
        // Whatever the exporters spawn (the gRPC ones, their channels) goes there.
        let _export_runtime = export_runtime()?.enter();
        telemetry.tracer_provider = tracer_provider(&resource)?;
        telemetry.meter_provider = meter_provider(&resource)?;
        telemetry.logger_provider = logger_provider(&resource)?;
    }

    global::set_text_map_propagator(baggage::propagator()?);
    baggage::init()?;
    if let Some(provider) = &telemetry.tracer_provider {
        use opentelemetry::trace::TracerProvider as _;
        let _ = TRACER.set(provider.tracer_with_scope(scope()));
        global::set_tracer_provider(provider.clone());
    }
    if let Some(provider) = &telemetry.meter_provider {
        global::set_meter_provider(provider.clone());
        http::register_metrics(&meter());
        db::register_metrics(&meter());
    }

    let rust_log = var("RUST_LOG");
    // Asking for the SDK's own events by name (RUST_LOG=opentelemetry_sdk=debug) shows
    // them all; otherwise only those it says once reach the console.
    let sdk_events_asked = rust_log
        .as_deref()
        .is_some_and(|spec| spec.contains("opentelemetry"));
    // Two stacked filters: an EnvFilter combined with a filter_fn in one `.and()` drops
    // events that carry fields.
    let console = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_filter(filter_fn(move |event| {
            sdk_events_asked || !is_sdk_chatter(event)
        }))
        .with_filter(EnvFilter::new(
            rust_log.as_deref().unwrap_or("info,sqlx=warn"),
        ));
    let otlp_logs = telemetry.logger_provider.as_ref().map(|provider| {
        opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new(provider)
            // Independent of RUST_LOG, and never the exporter's own crates: telemetry
            // about exporting telemetry would feed itself.
            .with_filter(
                EnvFilter::new("info,sqlx=warn,opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off,tonic=off,h2=off,hyper=off,hyper_util=off,reqwest=off,tower=off"),
            )
    });
    tracing_subscriber::registry()
        .with(console)
        .with(otlp_logs)
        .try_init()?;
    Ok(telemetry)
}

/// What the SDK says once: the first span or log record dropped because its queue was
/// full, and how many were dropped, at shutdown.
const SDK_EVENTS_KEPT: [&str; 4] = [
    "BatchSpanProcessor.SpanDroppingStarted",
    "BatchSpanProcessor.SpansDropped",
    "BatchLogProcessor.LogDroppingStarted",
    "BatchLogProcessor.LogsDropped",
];

/// Events of the `opentelemetry*` crates (targets `opentelemetry_sdk`,
/// `opentelemetry-otlp`...) other than [`SDK_EVENTS_KEPT`]: they report every failed batch
/// (`BatchSpanProcessor.ExportError`, `Export.Failed.Exhausted`), lines by the second with
/// the collector down, which `WarnOnce` reports once instead.
fn is_sdk_chatter(event: &tracing::Metadata<'_>) -> bool {
    event.target().starts_with("opentelemetry") && !SDK_EVENTS_KEPT.contains(&event.name())
}

/// The service's instrumentation scope. Its schema URL, like the resource's, names the
/// semantic-conventions release the attribute names follow: that of the
/// `opentelemetry-semantic-conventions` crate whose constants name them.
fn scope() -> InstrumentationScope {
    SCOPE_WITH_SCHEMA
        .get_or_init(|| {
            InstrumentationScope::builder(SCOPE)
                .with_version(env!("CARGO_PKG_VERSION"))
                .with_schema_url(SCHEMA_URL)
                .build()
        })
        .clone()
}

/// The service's meter (a no-op one when metrics are off).
fn meter() -> Meter {
    global::meter_with_scope(scope())
}

/// `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` are read by the SDK's default
/// detectors; the lab's defaults only fill what they leave empty, because anything set
/// in code would override the environment.
fn resource() -> Resource {
    let detected = Resource::builder().build();
    let mut builder = Resource::builder().with_schema_url([], SCHEMA_URL);
    let name = detected.get(&opentelemetry::Key::from_static_str("service.name"));
    if name.is_none_or(|name| name.as_str().starts_with("unknown_service")) {
        builder = builder.with_service_name(DEFAULT_SERVICE_NAME);
    }
    if detected
        .get(&opentelemetry::Key::from_static_str("service.version"))
        .is_none()
    {
        builder =
            builder.with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    }
    builder.build()
}

fn tracer_provider(resource: &Resource) -> anyhow::Result<Option<SdkTracerProvider>> {
    let builder = SdkTracerProvider::builder().with_resource(resource.clone());
    Ok(match ExporterKind::from_env("OTEL_TRACES_EXPORTER")? {
        ExporterKind::None => None,
        ExporterKind::Console => Some(
            builder
                .with_simple_exporter(opentelemetry_stdout::SpanExporter::default())
                .build(),
        ),
        ExporterKind::Otlp => {
            // The service's own span exporter (span_export.rs says why); metrics and logs
            // use opentelemetry-otlp's.
            let settings = OtlpSettings::from_env(Signal::Traces)?;
            let verdict = Arc::new(Verdict::default());
            let exporter = match settings.protocol {
                Protocol::HttpProtobuf => OtlpSpanExporter::http(
                    &settings,
                    transport::http_client(&settings, verdict.clone())?,
                )?,
                Protocol::Grpc => OtlpSpanExporter::grpc(
                    &settings,
                    transport::grpc_channel(&settings, verdict.clone())?,
                )?,
            };
            let processor = BatchSpanProcessor::builder(WarnOnce::new("traces", exporter, verdict))
                .with_batch_config(span_batch_config())
                .build();
            Some(builder.with_span_processor(processor).build())
        }
    })
}

/// Spans the batch processor holds while an export is out, unless
/// `OTEL_BSP_MAX_QUEUE_SIZE` says otherwise. The SDK's 2048 hold 117 ms of the service's
/// traffic at 8,700 requests a second (two spans each): one slow answer from a busy
/// collector dropped spans in the bench. 4096 hold twice that, about 4.5 MB when full.
const SPAN_QUEUE: usize = 4096;

/// The SDK's batch settings from the `OTEL_BSP_*` variables, with [`SPAN_QUEUE`] where
/// the queue size is not set.
fn span_batch_config() -> BatchConfig {
    let config = BatchConfigBuilder::default();
    match span_queue_default(var("OTEL_BSP_MAX_QUEUE_SIZE").as_deref()) {
        Some(size) => config.with_max_queue_size(size),
        None => config,
    }
    .build()
}

fn span_queue_default(variable: Option<&str>) -> Option<usize> {
    variable.is_none().then_some(SPAN_QUEUE)
}

fn meter_provider(resource: &Resource) -> anyhow::Result<Option<SdkMeterProvider>> {
    let builder = SdkMeterProvider::builder().with_resource(resource.clone());
    Ok(match ExporterKind::from_env("OTEL_METRICS_EXPORTER")? {
        ExporterKind::None => None,
        ExporterKind::Console => Some(
            builder
                .with_periodic_exporter(opentelemetry_stdout::MetricExporter::default())
                .build(),
        ),
        ExporterKind::Otlp => {
            let settings = OtlpSettings::from_env(Signal::Metrics)?;
            let verdict = Arc::new(Verdict::default());
            let exporter =
                otlp_exporter!(opentelemetry_otlp::MetricExporter::builder(), &settings, &verdict);
            Some(
                builder
                    .with_periodic_exporter(WarnOnce::new("metrics", exporter, verdict))
                    .build(),
            )
        }
    })
}

fn logger_provider(resource: &Resource) -> anyhow::Result<Option<SdkLoggerProvider>> {
    let builder = SdkLoggerProvider::builder().with_resource(resource.clone());
    Ok(match ExporterKind::from_env("OTEL_LOGS_EXPORTER")? {
        ExporterKind::None => None,
        ExporterKind::Console => Some(
            builder
                .with_log_processor(BridgeFixes::new(
                    opentelemetry_sdk::logs::SimpleLogProcessor::new(
                        opentelemetry_stdout::LogExporter::default(),
                    ),
                ))
                .build(),
        ),
        ExporterKind::Otlp => {
            let settings = OtlpSettings::from_env(Signal::Logs)?;
            let verdict = Arc::new(Verdict::default());
            let exporter =
                otlp_exporter!(opentelemetry_otlp::LogExporter::builder(), &settings, &verdict);
            let batch = BatchLogProcessor::builder(WarnOnce::new("logs", exporter, verdict)).build();
            Some(builder.with_log_processor(BridgeFixes::new(batch)).build())
        }
    })
}

impl Telemetry {
    /// Flushes and shuts the providers down in parallel, giving up after `budget`: a
    /// collector that accepts connections but never answers must not hold the exit.
    pub fn shutdown(self, budget: Duration) {
        let deadline = Instant::now() + budget;
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let mut pending = 0;
        let mut spawn = |name: &'static str, job: Box<dyn FnOnce() -> String + Send>| {
            pending += 1;
            let done_tx = done_tx.clone();
            thread::spawn(move || {
                let outcome = job();
                let _ = done_tx.send((name, outcome));
            });
        };
        if let Some(provider) = self.tracer_provider {
            spawn(
                "traces",
                Box::new(move || outcome(provider.shutdown_with_timeout(budget))),
            );
        }
        if let Some(provider) = self.meter_provider {
            spawn(
                "metrics",
                Box::new(move || outcome(provider.shutdown_with_timeout(budget))),
            );
        }
        if let Some(provider) = self.logger_provider {
            spawn(
                "logs",
                Box::new(move || outcome(provider.shutdown_with_timeout(budget))),
            );
        }
        for _ in 0..pending {
            let left = deadline.saturating_duration_since(Instant::now());
            match done_rx.recv_timeout(left) {
                Ok((_, outcome)) if outcome.is_empty() => {}
                Ok((signal, outcome)) => eprintln!("telemetry: {signal} shutdown: {outcome}"),
                Err(_) => {
                    eprintln!(
                        "telemetry: gave up flushing after {budget:?}; some data was not sent"
                    );
                    return;
                }
            }
        }
    }
}

fn outcome(result: opentelemetry_sdk::error::OTelSdkResult) -> String {
    result
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default()
}

/// The value of `service.name`, as the health endpoint reports it.
pub fn service_name() -> &'static str {
    SERVICE_NAME
        .get()
        .map_or(DEFAULT_SERVICE_NAME, String::as_str)
}

/// The trace id of the request being handled, for problem documents.
pub fn current_trace_id() -> Option<String> {
    let context = opentelemetry::Context::current();
    let span = context.span();
    let span_context = span.span_context();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

fn tracer() -> Option<&'static SdkTracer> {
    TRACER.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_span_queue_is_the_services_unless_the_variable_sets_it() {
        assert_eq!(span_queue_default(None), Some(SPAN_QUEUE));
        assert_eq!(span_queue_default(Some("1")), None);
    }
}
