//! `labctl traffic` as a traced client, service `todo-client`: one CLIENT span per
//! request (the HTTP client semantic conventions), the W3C `traceparent` and `baggage`
//! headers injected so that the API's SERVER span is the child of that span, and a
//! `lab.run.id` baggage entry that the API copies onto its spans.
//!
//! Where the spans go is decided once per run ([`destination`]): the standard
//! `OTEL_EXPORTER_OTLP_*` variables when they are set; otherwise, for traffic aimed at the
//! lab's own API, the endpoint the API exports to in the running lab stage - the lab
//! collector (labs 3-5) or else otel-lgtm (lab 2); otherwise nowhere. `verify` and
//! `check` never trace: they must not add to what they measure.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use opentelemetry::{
    Context, KeyValue,
    baggage::BaggageExt,
    propagation::{Injector, TextMapCompositePropagator, TextMapPropagator},
    trace::{SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _},
};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::{
    Resource,
    propagation::{BaggagePropagator, TraceContextPropagator},
    trace::{SdkTracer, SdkTracerProvider},
};
use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::lab;

/// `service.name` unless `OTEL_SERVICE_NAME` says otherwise.
pub const SERVICE_NAME: &str = "todo-client";
/// The baggage entry every request of a run carries; the API's default allow-list.
pub const RUN_ID_KEY: &str = "lab.run.id";
const SCOPE: &str = "labctl";
/// How long the last spans may take to leave at the end of a run.
const FLUSH_BUDGET: Duration = Duration::from_secs(5);

/// Where a run's spans go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// The `OTEL_EXPORTER_OTLP_*` variables say where (the SDK reads them).
    Environment(String),
    /// Nothing configured, but the lab stage's own endpoint answers: the API exports there.
    Lab {
        endpoint: String,
        name: &'static str,
    },
    /// Not traced, and why.
    Off(String),
}

/// Reads an environment variable, empty counting as unset (tests pass their own).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, as [`destination`] reads it.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Decides where the spans of a run at `base_url` go. `answers(port)` says whether
/// something listens on 127.0.0.1:`port`.
pub fn destination(
    no_telemetry: bool,
    base_url: &Url,
    env: Env<'_>,
    answers: &dyn Fn(u16) -> bool,
) -> anyhow::Result<Destination> {
    if no_telemetry {
        return Ok(Destination::Off("--no-telemetry".into()));
    }
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(Destination::Off("OTEL_SDK_DISABLED=true".into()));
    }
    match env("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
        None | Some("otlp") => {}
        Some("none") => return Ok(Destination::Off("OTEL_TRACES_EXPORTER=none".into())),
        Some(other) => bail!(
            "OTEL_TRACES_EXPORTER={other:?} is not supported by labctl traffic (use otlp or none, or --no-telemetry)"
        ),
    }
    for variable in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(protocol) = env(variable) {
            if protocol.trim() != "http/protobuf" {
                bail!(
                    "{variable}={protocol:?}: labctl traffic exports over http/protobuf only (the lab collector \
                     and otel-lgtm take both); set it to http/protobuf, or pass --no-telemetry"
                );
            }
            break;
        }
    }
    for variable in [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ] {
        if let Some(endpoint) = env(variable) {
            return Ok(Destination::Environment(format!("{variable}={endpoint}")));
        }
    }
    let aims_at_the_lab = base_url.port_or_known_default() == Some(lab::port(lab::APP_PORT))
        && matches!(base_url.host_str(), Some("127.0.0.1" | "localhost"));
    if !aims_at_the_lab {
        return Ok(Destination::Off(
            "no OTEL_EXPORTER_OTLP_ENDPOINT set (and --base-url is not the lab's API)".into(),
        ));
    }
    // The API's destination in each stage (`just run collector` / `just run lgtm`).
    for (key, name) in [
        (lab::COLLECTOR_OTLP_HTTP_PORT, "the lab collector"),
        (lab::LGTM_OTLP_HTTP_PORT, "otel-lgtm"),
    ] {
        let port = lab::port(key);
        if answers(port) {
            return Ok(Destination::Lab {
                endpoint: format!("http://127.0.0.1:{port}"),
                name,
            });
        }
    }
    Ok(Destination::Off(
        "neither the lab collector nor otel-lgtm answers (lab 1 has no backend)".into(),
    ))
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`, within half a second.
pub fn port_answers(port: u16) -> bool {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    std::net::TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_ok()
}

/// The propagators `OTEL_PROPAGATORS` names (default `tracecontext,baggage`); `none`
/// sends no context, which splits every request's trace in two - lab 7 shows that.
pub fn propagator(env: Env<'_>) -> anyhow::Result<TextMapCompositePropagator> {
    let value = env("OTEL_PROPAGATORS");
    let names = value.as_deref().unwrap_or("tracecontext,baggage");
    let mut propagators: Vec<Box<dyn TextMapPropagator + Send + Sync>> = Vec::new();
    for name in names.split(',').map(str::trim) {
        match name {
            "tracecontext" => propagators.push(Box::new(TraceContextPropagator::new())),
            "baggage" => propagators.push(Box::new(BaggagePropagator::new())),
            "none" => propagators.clear(),
            other => bail!(
                "OTEL_PROPAGATORS={names:?}: `{other}` is not supported (use tracecontext, baggage or none)"
            ),
        }
    }
    Ok(TextMapCompositePropagator::new(propagators))
}

/// The client's resource: the SDK reads `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`;
/// what they leave unset comes from the lab (`todo-client`, and the API's resource
/// attributes from `stack/lab.env`, so both services carry the same environment).
fn resource(env: Env<'_>) -> Resource {
    let detected = Resource::builder().build();
    let mut builder = Resource::builder();
    let name = detected.get(&opentelemetry::Key::from_static_str("service.name"));
    if name.is_none_or(|name| name.as_str().starts_with("unknown_service")) {
        builder = builder.with_service_name(SERVICE_NAME);
    }
    if env(lab::RESOURCE_ATTRIBUTES).is_none() {
        let attributes = lab::value(lab::RESOURCE_ATTRIBUTES)
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(key, value)| KeyValue::new(key.to_owned(), value.to_owned()));
        builder = builder.with_attributes(attributes);
    }
    builder
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The tracer, the propagators and the run's baggage.
pub struct ClientTelemetry {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TextMapCompositePropagator,
    baggage: Vec<KeyValue>,
    pub run_id: String,
    pub destination: Destination,
}

impl ClientTelemetry {
    /// Sets the exporter up for `destination` (which must not be `Off`). `extra_baggage`
    /// entries ride along with the run id.
    pub fn start(
        destination: Destination,
        env: Env<'_>,
        extra_baggage: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let propagator = propagator(env)?;
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary);
        match &destination {
            Destination::Lab { endpoint, .. } => {
                exporter = exporter.with_endpoint(format!("{endpoint}/v1/traces"));
            }
            Destination::Environment(_) => {}
            Destination::Off(reason) => bail!("telemetry is off ({reason})"),
        }
        let exporter = exporter
            .build()
            .context("setting up the OTLP span exporter")?;
        let provider = SdkTracerProvider::builder()
            .with_resource(resource(env))
            .with_batch_exporter(exporter)
            .build();
        let tracer = provider.tracer(SCOPE);
        let run_id = uuid::Uuid::now_v7().simple().to_string();
        let mut baggage = vec![KeyValue::new(RUN_ID_KEY, run_id.clone())];
        baggage.extend(
            extra_baggage
                .iter()
                .map(|(key, value)| KeyValue::new(key.clone(), value.clone())),
        );
        Ok(Self {
            provider,
            tracer,
            propagator,
            baggage,
            run_id,
            destination,
        })
    }

    /// Opens the CLIENT span of one request to `url` (whose route template is `route`)
    /// and writes the propagation headers into `headers`.
    pub fn start_request(
        &self,
        method: &'static str,
        url: &Url,
        route: &'static str,
        headers: &mut HeaderMap,
    ) -> RequestSpan {
        let mut attributes = request_attributes(method, url, route);
        // The run id on the client's own span too: one TraceQL query finds both sides.
        attributes.push(KeyValue::new(RUN_ID_KEY, self.run_id.clone()));
        let span = self
            .tracer
            .span_builder(method)
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start(&self.tracer);
        let context = Context::new()
            .with_baggage(self.baggage.clone())
            .with_span(span);
        self.propagator
            .inject_context(&context, &mut HeaderInjector(headers));
        RequestSpan {
            context,
            started: Instant::now(),
        }
    }

    /// Exports what is left and stops the exporter, within a few seconds.
    pub async fn shutdown(&self) {
        let provider = self.provider.clone();
        let flushed = tokio::time::timeout(
            FLUSH_BUDGET + Duration::from_secs(1),
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_BUDGET)),
        )
        .await;
        match flushed {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => eprintln!("labctl: exporting the last client spans: {error}"),
            _ => eprintln!("labctl: gave up exporting the last client spans"),
        }
    }
}

/// `http.request.method`, `server.address`, `server.port`, `url.full` (without the
/// user and password an URL could carry) and `url.template`.
fn request_attributes(method: &'static str, url: &Url, route: &'static str) -> Vec<KeyValue> {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    let mut attributes = vec![
        KeyValue::new("http.request.method", method),
        KeyValue::new("url.full", shown.to_string()),
        KeyValue::new("url.template", route),
    ];
    if let Some(host) = url.host_str() {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        attributes.push(KeyValue::new("server.address", host.to_owned()));
    }
    if let Some(port) = url.port_or_known_default() {
        attributes.push(KeyValue::new("server.port", i64::from(port)));
    }
    attributes
}

/// The CLIENT span of one request in flight.
pub struct RequestSpan {
    context: Context,
    started: Instant,
}

impl RequestSpan {
    pub fn trace_id(&self) -> String {
        self.context.span().span_context().trace_id().to_string()
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Ends the span with the answer's status: 4xx and 5xx are errors of a client span
    /// (the conventions leave 4xx unset only on the server side).
    pub fn answered(self, status: u16) {
        let span = self.context.span();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if status >= 400 {
            span.set_attribute(KeyValue::new("error.type", status.to_string()));
            span.set_status(Status::error(""));
        }
        span.end();
    }

    /// Ends the span of a request that got no HTTP answer.
    pub fn failed(self, error: &reqwest::Error) {
        let span = self.context.span();
        let kind = if error.is_timeout() {
            "timeout"
        } else if error.is_connect() {
            "connect_error"
        } else {
            "_OTHER"
        };
        span.set_attribute(KeyValue::new("error.type", kind));
        span.set_status(Status::error(""));
        span.end();
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn lab_url() -> Url {
        Url::parse(&lab::local_url(lab::APP_PORT)).unwrap()
    }

    #[test]
    fn the_flag_and_the_standard_switches_turn_it_off() {
        let nothing = env_of(&[]);
        let everything = |_: u16| true;
        assert!(matches!(
            destination(true, &lab_url(), &nothing, &everything).unwrap(),
            Destination::Off(_)
        ));
        for pair in [
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            let env = env_of(&[pair, ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")]);
            assert!(
                matches!(
                    destination(false, &lab_url(), &env, &everything).unwrap(),
                    Destination::Off(_)
                ),
                "{pair:?}"
            );
        }
    }

    #[test]
    fn the_environment_wins_over_the_lab_stage() {
        let env = env_of(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4999")]);
        assert_eq!(
            destination(false, &lab_url(), &env, &|_| true).unwrap(),
            Destination::Environment("OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4999".into())
        );
    }

    #[test]
    fn the_lab_stage_decides_when_nothing_is_configured() {
        let nothing = env_of(&[]);
        let collector = lab::port(lab::COLLECTOR_OTLP_HTTP_PORT);
        let lgtm = lab::port(lab::LGTM_OTLP_HTTP_PORT);
        let found = |up: &[u16]| {
            let up = up.to_vec();
            destination(false, &lab_url(), &nothing, &move |port| up.contains(&port)).unwrap()
        };
        assert!(
            matches!(found(&[collector, lgtm]), Destination::Lab { endpoint, .. } if endpoint.ends_with(&collector.to_string()))
        );
        assert!(
            matches!(found(&[lgtm]), Destination::Lab { endpoint, .. } if endpoint.ends_with(&lgtm.to_string()))
        );
        assert!(matches!(found(&[]), Destination::Off(_)));
        // A test's own API on another port is not the lab's: no guessing.
        let other = Url::parse("http://127.0.0.1:1/").unwrap();
        assert!(matches!(
            destination(false, &other, &nothing, &|_| true).unwrap(),
            Destination::Off(_)
        ));
    }

    #[test]
    fn unsupported_settings_name_their_variable() {
        for (name, value) in [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_TRACES_EXPORTER", "zipkin"),
        ] {
            let env = env_of(&[(name, value)]);
            let error = destination(false, &lab_url(), &env, &|_| false).unwrap_err();
            assert!(error.to_string().contains(name), "{error}");
        }
        let env = env_of(&[("OTEL_PROPAGATORS", "b3")]);
        assert!(
            propagator(&env)
                .err()
                .unwrap()
                .to_string()
                .contains("OTEL_PROPAGATORS")
        );
    }

    #[test]
    fn url_full_drops_credentials() {
        let url = Url::parse("http://user:secret@127.0.0.1:8000/api/v1/todos?limit=5").unwrap();
        let attributes = request_attributes("GET", &url, "/api/v1/todos");
        let full = attributes
            .iter()
            .find(|kv| kv.key.as_str() == "url.full")
            .unwrap();
        assert_eq!(
            full.value.as_str(),
            "http://127.0.0.1:8000/api/v1/todos?limit=5"
        );
        assert!(
            attributes
                .iter()
                .any(|kv| kv.key.as_str() == "server.port" && kv.value == 8000_i64.into())
        );
    }

    #[test]
    fn propagation_none_injects_nothing() {
        let mut headers = HeaderMap::new();
        let span_context = opentelemetry::trace::SpanContext::new(
            opentelemetry::trace::TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            opentelemetry::trace::SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            opentelemetry::trace::TraceFlags::SAMPLED,
            false,
            Default::default(),
        );
        let context = Context::new()
            .with_baggage([KeyValue::new(RUN_ID_KEY, "r1")])
            .with_remote_span_context(span_context);
        propagator(&env_of(&[("OTEL_PROPAGATORS", "none")]))
            .unwrap()
            .inject_context(&context, &mut HeaderInjector(&mut headers));
        assert!(headers.is_empty(), "{headers:?}");
        propagator(&env_of(&[]))
            .unwrap()
            .inject_context(&context, &mut HeaderInjector(&mut headers));
        assert_eq!(
            headers["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(headers["baggage"], "lab.run.id=r1");
    }
}
