//! Lab 6's gateways refuse what they should: a request without the token, with a wrong
//! token, over plain text (HTTP and gRPC), or from a client that does not trust the
//! gateway's CA never gets in, and the refusals show in the gateway's own metrics; the
//! same request with the lab CA and the token is taken and arrives.
//!
//! The client here is a plain OTLP/HTTP (protobuf) request, as any SDK sends it.

mod gateway_support;

use std::time::Duration;

use gateway_support::{eventually, value};
use lab_tests::app::TestApp;
use lab_tests::gateway::{GatewayStack, Options, make_certs};
use labctl::prom::Prometheus;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, status};
use prost::Message;

/// One error span (kept by the `errors` policy whatever the sampling share) of a fresh
/// trace; its service name tells the test's spans apart.
fn one_span(service: &str) -> (ExportTraceServiceRequest, String) {
    let trace_id: [u8; 16] = *uuid::Uuid::new_v4().as_bytes();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(service.into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: trace_id.to_vec(),
                    span_id: trace_id[..8].to_vec(),
                    name: "security check".into(),
                    kind: 2,
                    start_time_unix_nano: now - 1_000_000,
                    end_time_unix_nano: now,
                    status: Some(Status {
                        code: status::StatusCode::Error as i32,
                        message: String::new(),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let hex: String = trace_id.iter().map(|b| format!("{b:02x}")).collect();
    (request, hex)
}

fn client_trusting(ca_pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).expect("a PEM CA"))
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

/// POSTs one span to `url`/v1/traces; the HTTP status, or the transport error's text.
async fn post(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    service: &str,
) -> Result<u16, String> {
    let (request, _) = one_span(service);
    let mut builder = client
        .post(format!("{url}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec());
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    match builder.send().await {
        Ok(response) => Ok(response.status().as_u16()),
        Err(error) => Err(format!("{error:?}")),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gateways_refuse_clients_without_tls_or_token() {
    let stack = GatewayStack::start(Options::default())
        .await
        .unwrap_or_else(|e| panic!("gateway stack: {e:#}"));
    let gateway = &stack.gateways[0];
    let ca = std::fs::read(stack.certs.join("ca.crt")).unwrap();
    let trusted = client_trusting(&ca);
    let token = stack.token();

    // ---- refused -----------------------------------------------------------------------
    let no_token = post(&trusted, &gateway.https_url, None, "no-token").await;
    let wrong_token = post(
        &trusted,
        &gateway.https_url,
        Some("not-the-token"),
        "wrong-token",
    )
    .await;
    let plain_url = gateway.https_url.replacen("https://", "http://", 1);
    let plain_http = post(&trusted, &plain_url, Some(&token), "plain-http").await;
    let other_ca_dir = stack.dir.join("other-ca");
    make_certs(&other_ca_dir).unwrap();
    let stranger = client_trusting(&std::fs::read(other_ca_dir.join("ca.crt")).unwrap());
    let unknown_ca = post(&stranger, &gateway.https_url, Some(&token), "unknown-ca").await;
    // gRPC over plain text: the TLS listener never completes an HTTP/2 exchange.
    let plain_grpc = async {
        let mut client = TraceServiceClient::connect(format!("http://{}", gateway.grpc_address))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        client
            .export(one_span("plain-grpc").0)
            .await
            .map(|_| ())
            .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
    };
    let plain_grpc = tokio::time::timeout(Duration::from_secs(10), plain_grpc)
        .await
        .unwrap_or_else(|_| Err("timed out".into()));

    // ---- taken -------------------------------------------------------------------------
    let accepted = post(&trusted, &gateway.https_url, Some(&token), "with-token").await;

    eprintln!(
        "gateway 1 answers: no token {no_token:?} | wrong token {wrong_token:?} | plain HTTP {plain_http:?} | \
         untrusted CA {} | plain gRPC {plain_grpc:?} | CA + token {accepted:?}",
        unknown_ca
            .as_ref()
            .map_or_else(|e| shorten(e), |s| s.to_string())
    );
    assert_eq!(no_token, Ok(401), "no token");
    assert_eq!(wrong_token, Ok(401), "wrong token");
    // Go's TLS server answers a plain-text HTTP request with a 400 and closes.
    assert!(
        plain_http.as_ref().is_err() || plain_http.as_ref().is_ok_and(|s| *s == 400),
        "plain HTTP: {plain_http:?}"
    );
    let unknown_ca =
        unknown_ca.expect_err("a client that does not trust the lab CA gets no connection");
    // Both CAs carry the lab's CA name, so rustls finds "the" issuer and then its
    // signature does not match (BadSignature); another name would be UnknownIssuer.
    assert!(
        unknown_ca.contains("InvalidCertificate"),
        "a TLS error about the certificate: {unknown_ca}"
    );
    assert!(plain_grpc.is_err(), "plain gRPC is refused");
    assert_eq!(accepted, Ok(200), "the lab CA and the token get in");

    // ---- what arrived, and what the gateway's metrics say --------------------------------
    let arrived = eventually(Duration::from_secs(30), || async {
        let services: Vec<String> = gateway
            .spans()
            .into_iter()
            .map(|s| s.service_name)
            .collect();
        if services.iter().any(|s| s == "with-token") {
            Ok(services)
        } else {
            Err(format!("{services:?}"))
        }
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "the accepted span never reached the sink: {e}\n{}",
            stack.log_tails(20)
        )
    });
    assert_eq!(
        arrived,
        ["with-token"],
        "only the accepted request's span arrived"
    );

    let prometheus = Prometheus::new(labctl::http::client(), &stack.prometheus_url);
    let unauthorized = r#"sum(http_server_request_duration_seconds_count{job="lab-gateway-1", http_response_status_code="401"})"#;
    let refused = eventually(Duration::from_secs(20), || async {
        let n = value(&prometheus, unauthorized).await;
        if n >= 2.0 { Ok(n) } else { Err(n) }
    })
    .await
    .unwrap_or_else(|n| panic!("the gateway's metrics show {n} requests answered 401, expected 2"));
    let accepted_spans = value(
        &prometheus,
        r#"sum(otelcol_receiver_accepted_spans_total{job="lab-gateway-1"})"#,
    )
    .await;
    eprintln!(
        "gateway 1 metrics: {refused} requests answered 401; {accepted_spans} spans accepted"
    );
    assert_eq!(
        refused, 2.0,
        "the two token failures, and only those, answered 401"
    );
    assert_eq!(
        accepted_spans, 1.0,
        "the receiver took exactly the one authorised span"
    );
}

fn shorten(text: &str) -> String {
    text.chars().take(160).collect()
}

/// The app itself as the client of a gateway, as it would be of a managed backend: OTLP
/// over TLS trusting the lab's private CA (`OTEL_EXPORTER_OTLP_CERTIFICATE`) with the
/// bearer token in `OTEL_EXPORTER_OTLP_HEADERS` - its traces arrive. With another CA it
/// says TLS once per signal and keeps serving at its normal latency.
#[tokio::test(flavor = "multi_thread")]
async fn the_app_exports_to_a_gateway_over_tls_with_the_token() {
    lab_tests::app::use_binary(gateway_support::binary("todo-api").to_str().unwrap());
    let stack = GatewayStack::start(Options::default())
        .await
        .unwrap_or_else(|e| panic!("gateway stack: {e:#}"));
    let gateway = &stack.gateways[0];
    let header = format!("authorization=Bearer%20{}", stack.token());
    let other_ca = stack.dir.join("other-ca");
    make_certs(&other_ca).unwrap();
    let mut results = Vec::new();
    for (case, ca) in [
        ("lab CA", stack.certs.join("ca.crt")),
        ("another CA", other_ca.join("ca.crt")),
    ] {
        let ca = ca.display().to_string();
        let service = format!("todo-api-{}", case.replace(' ', "-"));
        let app = TestApp::spawn_with(&[
            ("OTEL_SERVICE_NAME", service.as_str()),
            ("OTEL_TRACES_EXPORTER", "otlp"),
            ("OTEL_LOGS_EXPORTER", "none"),
            ("OTEL_METRICS_EXPORTER", "none"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &gateway.https_url),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", &ca),
            ("OTEL_EXPORTER_OTLP_HEADERS", &header),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            // Every request an error: kept by the gateways' errors policy.
            ("LAB_FAULT_ERROR_RATE", "1.0"),
        ])
        .await;
        let mut latencies = Vec::new();
        for _ in 0..40 {
            let sent = std::time::Instant::now();
            let status = app
                .client
                .get(app.url("/api/v1/todos"))
                .send()
                .await
                .unwrap()
                .status();
            latencies.push(sent.elapsed());
            assert_eq!(status, 500, "the fault switch answers every request");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        latencies.sort();
        let p95 = latencies[latencies.len() * 95 / 100];
        let arrived = eventually(Duration::from_secs(15), || async {
            let n = gateway
                .spans()
                .iter()
                .filter(|s| s.service_name == service)
                .count();
            if n >= 40 { Ok(n) } else { Err(n) }
        })
        .await;
        let output = app.output();
        let tls_lines = output
            .lines()
            .filter(|l| l.contains("export failing: TLS"))
            .map(str::to_owned)
            .collect::<Vec<_>>();
        let token_shown = output.contains(&stack.token());
        drop(app);
        eprintln!(
            "app -> gateway with the {case}: p95 {p95:?}, spans arrived {arrived:?}, TLS lines {tls_lines:?}"
        );
        results.push((case, p95, arrived, tls_lines, token_shown));
    }
    let (_, p95_ok, arrived_ok, tls_ok, shown_ok) = &results[0];
    assert!(
        arrived_ok.is_ok(),
        "the app's spans reached the gateway: {arrived_ok:?}"
    );
    assert!(
        tls_ok.is_empty(),
        "no TLS failure with the lab CA: {tls_ok:?}"
    );
    let (_, p95_bad, arrived_bad, tls_bad, shown_bad) = &results[1];
    assert!(
        arrived_bad.is_err(),
        "nothing arrives over an untrusted connection"
    );
    assert_eq!(
        tls_bad.len(),
        1,
        "one TLS line for the one exporting signal: {tls_bad:?}"
    );
    assert!(
        *p95_bad <= *p95_ok * 2 + Duration::from_millis(25),
        "the app keeps its latency with a failing exporter: p95 {p95_bad:?} against {p95_ok:?}"
    );
    assert!(
        !shown_ok && !shown_bad,
        "the token never appears in the app's output"
    );
}
