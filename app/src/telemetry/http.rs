//! The HTTP middleware: one SERVER span per request and the
//! `http.server.request.duration` histogram, following the stable HTTP semantic
//! conventions.

use std::{
    sync::{Arc, OnceLock},
    time::Instant,
};

use opentelemetry::{
    KeyValue, global,
    metrics::{Histogram, Meter},
    propagation::Extractor,
    trace::{FutureExt, SpanKind, Status, TraceContextExt, Tracer},
};
use opentelemetry_semantic_conventions::{attribute as semconv, metric as semconv_metric};
use poem::{
    Endpoint, IntoResponse, Middleware, Request, Response, Result,
    http::{HeaderMap, Method, header},
};

use crate::routes::{MatchedRoute, RouteTable};

/// Bucket boundaries the semantic conventions recommend for `http.server.request.duration`.
const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

static REQUEST_DURATION: OnceLock<Histogram<f64>> = OnceLock::new();

pub(super) fn register_metrics(meter: &Meter) {
    let histogram = meter
        .f64_histogram(semconv_metric::HTTP_SERVER_REQUEST_DURATION)
        .with_unit("s")
        .with_description("Duration of HTTP server requests.")
        .with_boundaries(DURATION_BUCKETS.to_vec())
        .build();
    let _ = REQUEST_DURATION.set(histogram);
}

/// Resolves the route of each request, opens its server span (continuing an incoming
/// W3C `traceparent`, with the allow-listed `baggage` entries as attributes), and records
/// its duration.
pub struct HttpTelemetry {
    routes: Arc<RouteTable>,
}

impl HttpTelemetry {
    pub fn new(routes: Arc<RouteTable>) -> Self {
        Self { routes }
    }
}

impl<E: Endpoint> Middleware<E> for HttpTelemetry {
    type Output = HttpTelemetryEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        HttpTelemetryEndpoint {
            inner,
            routes: self.routes.clone(),
        }
    }
}

pub struct HttpTelemetryEndpoint<E> {
    inner: E,
    routes: Arc<RouteTable>,
}

impl<E: Endpoint> Endpoint for HttpTelemetryEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Self::Output> {
        let started = Instant::now();
        let route = self.routes.find(req.uri().path());
        if let Some(route) = route {
            req.extensions_mut().insert(route);
        }
        let method = known_method(req.method());

        let parent = global::get_text_map_propagator(|propagator| {
            propagator.extract(&HeaderExtractor(req.headers()))
        });
        let context = match super::tracer() {
            Some(tracer) => {
                let mut attributes = request_attributes(&req, method, route);
                attributes.extend(super::baggage::span_attributes(&parent));
                let span = tracer
                    .span_builder(span_name(method, route))
                    .with_kind(SpanKind::Server)
                    .with_attributes(attributes)
                    .start_with_context(tracer, &parent);
                parent.with_span(span)
            }
            None => parent,
        };

        let response = match self.inner.call(req).with_context(context.clone()).await {
            Ok(response) => response.into_response(),
            Err(error) => error.into_response(),
        };

        let status = response.status().as_u16();
        let span = context.span();
        span.set_attribute(KeyValue::new(
            semconv::HTTP_RESPONSE_STATUS_CODE,
            i64::from(status),
        ));
        // Server spans: 5xx is an error of this service; 4xx is the client's and stays Unset.
        if status >= 500 {
            span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, status.to_string()));
            span.set_status(Status::error(""));
        }
        span.end();

        if let Some(histogram) = REQUEST_DURATION.get() {
            let mut attributes = vec![
                KeyValue::new(semconv::HTTP_REQUEST_METHOD, method),
                KeyValue::new(semconv::HTTP_RESPONSE_STATUS_CODE, i64::from(status)),
                KeyValue::new(semconv::URL_SCHEME, "http"),
            ];
            if let Some(route) = route {
                attributes.push(KeyValue::new(semconv::HTTP_ROUTE, route.template));
            }
            if status >= 500 {
                attributes.push(KeyValue::new(semconv::ERROR_TYPE, status.to_string()));
            }
            histogram.record(started.elapsed().as_secs_f64(), &attributes);
        }
        Ok(response)
    }
}

/// `{method} {route}`, or just `{method}` when no route matched (the conventions forbid
/// putting the raw path in the name: it would explode cardinality).
fn span_name(method: &'static str, route: Option<MatchedRoute>) -> String {
    match route {
        Some(route) => format!("{method} {}", route.template),
        None => method.to_owned(),
    }
}

/// The conventions' method names; anything else is `_OTHER`.
fn known_method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "_OTHER",
    }
}

fn request_attributes(
    req: &Request,
    method: &'static str,
    route: Option<MatchedRoute>,
) -> Vec<KeyValue> {
    let mut attributes = Vec::with_capacity(10);
    attributes.push(KeyValue::new(semconv::HTTP_REQUEST_METHOD, method));
    if method == "_OTHER" {
        attributes.push(KeyValue::new(
            semconv::HTTP_REQUEST_METHOD_ORIGINAL,
            capped(req.method().as_str()),
        ));
    }
    if let Some(route) = route {
        attributes.push(KeyValue::new(semconv::HTTP_ROUTE, route.template));
    }
    attributes.push(KeyValue::new(semconv::URL_PATH, capped(req.uri().path())));
    attributes.push(KeyValue::new(semconv::URL_SCHEME, "http"));
    let (address, port) = server_address(req);
    if let Some(address) = address {
        attributes.push(KeyValue::new(semconv::SERVER_ADDRESS, address));
    }
    if let Some(port) = port {
        attributes.push(KeyValue::new(semconv::SERVER_PORT, i64::from(port)));
    }
    attributes.push(KeyValue::new(
        semconv::NETWORK_PROTOCOL_VERSION,
        protocol_version(req),
    ));
    if let Some(agent) = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        attributes.push(KeyValue::new(semconv::USER_AGENT_ORIGINAL, capped(agent)));
    }
    attributes
}

/// Longest value, in characters, of an attribute copied from the request. A client
/// decides these: uncapped, a 100 KiB User-Agent (hyper accepts heads up to ~400 KiB)
/// would ride along in every span it causes, through the collector into storage.
const MAX_ATTRIBUTE_CHARS: usize = 1024;

/// `text`, cut to [`MAX_ATTRIBUTE_CHARS`] characters.
fn capped(text: &str) -> String {
    match text.char_indices().nth(MAX_ATTRIBUTE_CHARS) {
        Some((cut, _)) => text[..cut].to_owned(),
        None => text.to_owned(),
    }
}

/// `server.address`/`server.port` as the client addressed them (the Host header), falling
/// back to the socket the request arrived on.
fn server_address(req: &Request) -> (Option<String>, Option<u16>) {
    if let Some(host) = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
    {
        let (address, port) = match host.strip_prefix('[') {
            // An IPv6 literal: `[::1]:8000`.
            Some(rest) => match rest.split_once(']') {
                Some((address, port)) => (address, port.strip_prefix(':')),
                None => (rest, None),
            },
            None => match host.rsplit_once(':') {
                Some((address, port)) => (address, Some(port)),
                None => (host, None),
            },
        };
        return (
            Some(capped(address)),
            port.and_then(|port| port.parse().ok()),
        );
    }
    match req.local_addr().as_socket_addr() {
        Some(addr) => (Some(addr.ip().to_string()), Some(addr.port())),
        None => (None, None),
    }
}

fn protocol_version(req: &Request) -> &'static str {
    match req.version() {
        poem::http::Version::HTTP_09 => "0.9",
        poem::http::Version::HTTP_10 => "1.0",
        poem::http::Version::HTTP_2 => "2",
        poem::http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|key| key.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_request_values_on_a_character_boundary() {
        assert_eq!(capped("curl/8.5"), "curl/8.5");
        let long = "é".repeat(MAX_ATTRIBUTE_CHARS + 10);
        assert_eq!(capped(&long).chars().count(), MAX_ATTRIBUTE_CHARS);
    }
}
