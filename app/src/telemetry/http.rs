//! The HTTP middleware: one SERVER span per request and the
//! `http.server.request.duration` histogram, following the stable HTTP semantic
//! conventions. The route comes from [`crate::routes::ResolveRoute`], which runs first.

use std::{
    cell::RefCell,
    net::IpAddr,
    sync::{Arc, OnceLock, RwLock},
    time::Instant,
};

use opentelemetry::{
    KeyValue, StringValue, global,
    metrics::{Histogram, Meter},
    trace::{FutureExt, SpanKind, Status, TraceContextExt, Tracer},
};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_semantic_conventions::{attribute as semconv, metric as semconv_metric};
use poem::{
    Endpoint, IntoResponse, Middleware, Request, Response, Result,
    http::{Method, header},
};

use crate::routes::MatchedRoute;

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

/// Opens the server span of each request (continuing an incoming W3C `traceparent`, with
/// the allow-listed `baggage` entries as attributes) and records its duration.
pub struct HttpTelemetry;

impl<E: Endpoint> Middleware<E> for HttpTelemetry {
    type Output = HttpTelemetryEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        HttpTelemetryEndpoint { inner }
    }
}

pub struct HttpTelemetryEndpoint<E> {
    inner: E,
}

impl<E: Endpoint> Endpoint for HttpTelemetryEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Self::Output> {
        let started = Instant::now();
        let route = req.extensions().get::<MatchedRoute>().copied();
        let method = known_method(req.method());
        let protocol = protocol_version(&req);

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
            // On the stack rather than in a Vec, and in one order for every request (the
            // SDK finds a stream it has seen by hashing the slice as given).
            let unused = || KeyValue::new("", "");
            let mut attributes = [
                KeyValue::new(semconv::HTTP_REQUEST_METHOD, method),
                KeyValue::new(semconv::HTTP_RESPONSE_STATUS_CODE, i64::from(status)),
                KeyValue::new(semconv::URL_SCHEME, "http"),
                KeyValue::new(semconv::NETWORK_PROTOCOL_VERSION, protocol),
                unused(),
                unused(),
            ];
            let mut len = 4;
            if let Some(route) = route {
                attributes[len] = KeyValue::new(semconv::HTTP_ROUTE, route.template);
                len += 1;
            }
            if status >= 500 {
                attributes[len] = KeyValue::new(semconv::ERROR_TYPE, status.to_string());
                len += 1;
            }
            histogram.record(started.elapsed().as_secs_f64(), &attributes[..len]);
        }
        Ok(response)
    }
}

/// `{method} {route}`, or just `{method}` when no route matched (the conventions forbid
/// putting the raw path in the name: it would explode cardinality). A method outside the
/// known set is named `HTTP`, as the conventions ask, not `_OTHER`.
///
/// Each name is made once and kept: methods are the known ones (else `HTTP`) and routes
/// the service's own templates, so there are a few dozen at most, and a span borrows its
/// name instead of formatting it on every request.
fn span_name(method: &'static str, route: Option<MatchedRoute>) -> &'static str {
    let method = if method == OTHER_METHOD {
        "HTTP"
    } else {
        method
    };
    let Some(route) = route else {
        return method;
    };
    static NAMES: RwLock<Vec<(&str, &str, &str)>> = RwLock::new(Vec::new());
    let find = |names: &[(&str, &'static str, &'static str)]| {
        names
            .iter()
            .find(|(m, template, _)| *m == method && *template == route.template)
            .map(|(_, _, name)| *name)
    };
    if let Some(name) = find(&NAMES.read().unwrap_or_else(|e| e.into_inner())) {
        return name;
    }
    let mut names = NAMES.write().unwrap_or_else(|e| e.into_inner());
    if let Some(name) = find(&names) {
        return name;
    }
    let name: &'static str = Box::leak(format!("{method} {}", route.template).into_boxed_str());
    names.push((method, route.template, name));
    name
}

/// `http.request.method` of a method the conventions do not list.
const OTHER_METHOD: &str = "_OTHER";

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
        _ => OTHER_METHOD,
    }
}

fn request_attributes(
    req: &Request,
    method: &'static str,
    route: Option<MatchedRoute>,
) -> Vec<KeyValue> {
    let mut attributes = Vec::with_capacity(14);
    attributes.push(KeyValue::new(semconv::HTTP_REQUEST_METHOD, method));
    if method == OTHER_METHOD {
        attributes.push(KeyValue::new(
            semconv::HTTP_REQUEST_METHOD_ORIGINAL,
            capped(req.method().as_str()),
        ));
    }
    if let Some(route) = route {
        attributes.push(KeyValue::new(semconv::HTTP_ROUTE, route.template));
    }
    attributes.push(KeyValue::new(semconv::URL_PATH, capped(req.uri().path())));
    if let Some(query) = req.uri().query().filter(|query| !query.is_empty()) {
        attributes.push(KeyValue::new(semconv::URL_QUERY, redacted_query(query)));
    }
    attributes.push(KeyValue::new(semconv::URL_SCHEME, "http"));
    let (address, port) = server_address(req);
    if let Some(address) = address {
        attributes.push(KeyValue::new(semconv::SERVER_ADDRESS, address));
    }
    if let Some(port) = port {
        attributes.push(KeyValue::new(semconv::SERVER_PORT, i64::from(port)));
    }
    if let Some(peer) = req.remote_addr().as_socket_addr() {
        // The socket's peer is the client: the service trusts no proxy header
        // (`Forwarded`, `X-Forwarded-For`), which any client could set.
        let ip = RECENT.with(|recent| recent.peer(peer.ip().to_canonical()));
        attributes.push(KeyValue::new(semconv::CLIENT_ADDRESS, ip.clone()));
        attributes.push(KeyValue::new(semconv::NETWORK_PEER_ADDRESS, ip));
        attributes.push(KeyValue::new(
            semconv::NETWORK_PEER_PORT,
            i64::from(peer.port()),
        ));
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
        let agent = RECENT.with(|recent| Recent::text(&recent.user_agent, agent));
        attributes.push(KeyValue::new(semconv::USER_AGENT_ORIGINAL, agent));
    }
    attributes
}

/// The last client address, `Host` and `User-Agent` each request thread saw, as shared
/// strings: one client sends the same ones request after request, and a shared string is
/// neither formatted nor copied again for the next span (a span batch's exporter clones
/// every span it sends over gRPC). One entry per value and thread, so nothing grows.
struct Recent {
    peer: RefCell<Option<(IpAddr, StringValue)>>,
    host: RefCell<Option<StringValue>>,
    user_agent: RefCell<Option<StringValue>>,
}

thread_local! {
    static RECENT: Recent = const {
        Recent {
            peer: RefCell::new(None),
            host: RefCell::new(None),
            user_agent: RefCell::new(None),
        }
    };
}

impl Recent {
    fn peer(&self, ip: IpAddr) -> StringValue {
        let mut slot = self.peer.borrow_mut();
        match &*slot {
            Some((seen, value)) if *seen == ip => value.clone(),
            _ => {
                let value = StringValue::from(Arc::<str>::from(ip.to_string()));
                *slot = Some((ip, value.clone()));
                value
            }
        }
    }

    /// `text`, capped to [`MAX_ATTRIBUTE_CHARS`], from `slot` when it holds the same.
    fn text(slot: &RefCell<Option<StringValue>>, text: &str) -> StringValue {
        let text = capped_str(text);
        let mut slot = slot.borrow_mut();
        match &*slot {
            Some(value) if value.as_str() == text => value.clone(),
            _ => {
                let value = StringValue::from(Arc::<str>::from(text));
                *slot = Some(value.clone());
                value
            }
        }
    }
}

/// Longest value, in characters, of an attribute copied from the request. A client
/// decides these: uncapped, a 100 KiB User-Agent (hyper accepts heads up to ~400 KiB)
/// would ride along in every span it causes, through the collector into storage.
pub const MAX_ATTRIBUTE_CHARS: usize = 1024;

/// `text`, cut to [`MAX_ATTRIBUTE_CHARS`] characters.
fn capped(text: &str) -> String {
    capped_str(text).to_owned()
}

fn capped_str(text: &str) -> &str {
    // No more bytes than the limit: no more characters either, without counting them.
    if text.len() <= MAX_ATTRIBUTE_CHARS {
        return text;
    }
    match text.char_indices().nth(MAX_ATTRIBUTE_CHARS) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

/// `server.address`/`server.port` as the client addressed them (the Host header), falling
/// back to the socket the request arrived on.
fn server_address(req: &Request) -> (Option<StringValue>, Option<u16>) {
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
        let address = RECENT.with(|recent| Recent::text(&recent.host, address));
        return (Some(address), port.and_then(|port| port.parse().ok()));
    }
    match req.local_addr().as_socket_addr() {
        Some(addr) => (Some(addr.ip().to_string().into()), Some(addr.port())),
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

/// Query parameters whose values the conventions redact by default (signed URLs carry
/// credentials in them).
const SENSITIVE_QUERY_KEYS: [&str; 4] = ["AWSAccessKeyId", "Signature", "sig", "X-Goog-Signature"];

/// The query for `url.query`, with the values of [`SENSITIVE_QUERY_KEYS`] replaced by
/// `REDACTED` (the keys stay, as the conventions ask), capped like every request value.
fn redacted_query(query: &str) -> String {
    let mut redacted = String::with_capacity(query.len());
    for (index, pair) in query.split('&').enumerate() {
        if index > 0 {
            redacted.push('&');
        }
        match pair.split_once('=') {
            Some((key, _)) if SENSITIVE_QUERY_KEYS.contains(&key) => {
                redacted.push_str(key);
                redacted.push_str("=REDACTED");
            }
            _ => redacted.push_str(pair),
        }
    }
    capped(&redacted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_request_values_on_a_character_boundary() {
        assert_eq!(capped("curl/8.5"), "curl/8.5");
        let long = "é".repeat(MAX_ATTRIBUTE_CHARS + 10);
        assert_eq!(capped(&long).chars().count(), MAX_ATTRIBUTE_CHARS);
        // More bytes than the limit but fewer characters: kept whole.
        let wide = "é".repeat(MAX_ATTRIBUTE_CHARS - 1);
        assert_eq!(capped(&wide), wide);
    }

    #[test]
    fn repeated_request_values_are_shared_and_a_new_one_replaces_them() {
        let slot = RefCell::new(None);
        let first = Recent::text(&slot, "curl/8.5");
        let again = Recent::text(&slot, "curl/8.5");
        assert!(std::ptr::eq(first.as_str(), again.as_str()));
        assert_eq!(Recent::text(&slot, "wrk").as_str(), "wrk");
        let long = "a".repeat(MAX_ATTRIBUTE_CHARS + 5);
        assert_eq!(Recent::text(&slot, &long).as_str().len(), MAX_ATTRIBUTE_CHARS);

        let recent = Recent {
            peer: RefCell::new(None),
            host: RefCell::new(None),
            user_agent: RefCell::new(None),
        };
        let local = IpAddr::from([127, 0, 0, 1]);
        assert_eq!(recent.peer(local).as_str(), "127.0.0.1");
        assert!(std::ptr::eq(recent.peer(local).as_str(), recent.peer(local).as_str()));
        assert_eq!(recent.peer(IpAddr::from([10, 0, 0, 2])).as_str(), "10.0.0.2");
    }

    #[test]
    fn redacts_the_values_of_sensitive_query_parameters() {
        assert_eq!(redacted_query("limit=5&skip=0"), "limit=5&skip=0");
        assert_eq!(
            redacted_query("q=x&sig=abc&Signature=s3cr3t&AWSAccessKeyId=AKIA&X-Goog-Signature=g"),
            "q=x&sig=REDACTED&Signature=REDACTED&AWSAccessKeyId=REDACTED&X-Goog-Signature=REDACTED"
        );
        // Only exact keys: `signature` and `sigma` are not on the list; a bare key has no value.
        assert_eq!(
            redacted_query("signature=1&sigma=2&sig"),
            "signature=1&sigma=2&sig"
        );
        assert_eq!(redacted_query("sig="), "sig=REDACTED");
    }

    #[test]
    fn unknown_methods_are_named_http() {
        let route = MatchedRoute {
            template: "/api/v1/todos",
            allow: "GET, POST",
        };
        assert_eq!(span_name(OTHER_METHOD, Some(route)), "HTTP /api/v1/todos");
        assert_eq!(span_name(OTHER_METHOD, None), "HTTP");
        assert_eq!(span_name("GET", Some(route)), "GET /api/v1/todos");
        // Made once: the second request's span borrows the first one's name.
        assert!(std::ptr::eq(
            span_name("GET", Some(route)),
            span_name("GET", Some(route))
        ));
        assert_eq!(span_name("POST", Some(route)), "POST /api/v1/todos");
        assert_eq!(
            known_method(&Method::from_bytes(b"PURGE").unwrap()),
            OTHER_METHOD
        );
    }
}
